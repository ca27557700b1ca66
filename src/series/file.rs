//! Saved series models: JSON with the equations' text, the parameters by name, the
//! network, the solver and each trajectory's initial state, enough to predict again.

use super::equations::Equations;
use super::model::{InputTransform, NeuralTerm, SeriesModel};
use crate::nn::{Activation, LayerKind, Mlp, MlpConfig};
use crate::ode::SolverConfig;

/// The `format` field of a series model file.
pub const SERIES_FORMAT: &str = "cnflow-series";
/// Its version.
pub const SERIES_VERSION: u32 = 1;

/// A saved network term.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedNetwork {
    /// Hidden widths.
    pub hidden: Vec<usize>,
    /// Activation name.
    pub activation: String,
    /// Input transform.
    pub transform: InputTransform,
    /// Which equations get the network's output.
    pub outputs: Vec<bool>,
    /// The weights, in the network's flat layout.
    pub weights: Vec<f64>,
}

/// A trajectory's start.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedStart {
    /// Trajectory id.
    pub id: String,
    /// Its first time.
    pub t0: f64,
    /// Its (fitted or observed) initial state.
    pub y0: Vec<f64>,
    /// Its last observation time.
    pub t_end: f64,
}

/// A series model as saved by `cnflow fit-series` (and read by `cnflow predict`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedSeriesModel {
    /// Always [`SERIES_FORMAT`].
    pub format: String,
    /// [`SERIES_VERSION`].
    pub version: u32,
    /// The time column's name.
    pub time_name: String,
    /// The states' names.
    pub names: Vec<String>,
    /// The mechanistic equations, if any.
    pub equations: Option<String>,
    /// Parameter names.
    pub param_names: Vec<String>,
    /// Parameter values.
    pub param_values: Vec<f64>,
    /// Which parameters were fitted.
    pub param_learned: Vec<bool>,
    /// The network, if any.
    pub network: Option<SavedNetwork>,
    /// The solver predictions use.
    pub solver: SolverConfig,
    /// The stiff solver predictions use instead of `solver`, if the fit used one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stiff: Option<crate::stiff::StiffConfig>,
    /// Each trajectory's start.
    pub trajectories: Vec<SavedStart>,
}

/// Why a saved model cannot be used.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SavedModelError {
    /// Not a series model file.
    #[error("not a cnflow series model (format '{0}'): give a model.json written by cnflow fit-series")]
    Format(String),
    /// A newer version.
    #[error("series model version {0} is newer than this cnflow reads ({SERIES_VERSION}): update cnflow")]
    Version(u32),
    /// A mechanistic term that cannot be saved.
    #[error("the mechanistic term was written in Rust, not as equations, so it cannot be saved")]
    NotEquations,
    /// Inconsistent content.
    #[error("the model file is inconsistent: {0}")]
    Invalid(String),
}

impl SavedSeriesModel {
    /// The saved form of `model` with `learned`, `solver` (or `stiff`) and the trajectories'
    /// starts.
    pub fn new(
        model: &SeriesModel,
        time_name: &str,
        learned: &[bool],
        solver: &SolverConfig,
        stiff: Option<&crate::stiff::StiffConfig>,
        trajectories: Vec<SavedStart>,
    ) -> Result<Self, SavedModelError> {
        let equations = match &model.mechanistic {
            Some(m) => Some(m.equations().ok_or(SavedModelError::NotEquations)?.to_string()),
            None => None,
        };
        let network = model.neural.as_ref().map(|n| SavedNetwork {
            hidden: n.mlp.config().hidden().to_vec(),
            activation: n.mlp.config().activation().name().to_string(),
            transform: n.transform,
            outputs: n.outputs.clone(),
            weights: n.mlp.params().to_vec(),
        });
        Ok(SavedSeriesModel {
            format: SERIES_FORMAT.into(),
            version: SERIES_VERSION,
            time_name: time_name.into(),
            names: model.names.clone(),
            equations,
            param_names: model.param_names(),
            param_values: model.mech_params.clone(),
            param_learned: learned.to_vec(),
            network,
            solver: solver.clone(),
            stiff: stiff.cloned(),
            trajectories,
        })
    }

    /// The model again.
    pub fn model(&self) -> Result<SeriesModel, SavedModelError> {
        if self.format != SERIES_FORMAT {
            return Err(SavedModelError::Format(self.format.clone()));
        }
        if self.version > SERIES_VERSION || self.version == 0 {
            return Err(SavedModelError::Version(self.version));
        }
        let invalid = |m: String| SavedModelError::Invalid(m);
        if self.param_values.len() != self.param_names.len() {
            return Err(invalid(format!(
                "{} parameter names, {} values",
                self.param_names.len(),
                self.param_values.len()
            )));
        }
        let mechanistic = match &self.equations {
            Some(text) => {
                let eq = Equations::parse(text, &self.names, &self.param_names).map_err(|e| invalid(e.to_string()))?;
                Some((Box::new(eq) as Box<dyn super::Mechanistic>, self.param_values.clone()))
            }
            None => None,
        };
        let neural = match &self.network {
            Some(n) => {
                let act: Activation = n
                    .activation
                    .parse()
                    .map_err(|e: crate::nn::NnError| invalid(e.to_string()))?;
                let config = MlpConfig::new(self.names.len(), &n.hidden, LayerKind::Ignore, act)
                    .map_err(|e| invalid(e.to_string()))?;
                let mlp = Mlp::from_params(config, n.weights.clone()).map_err(|e| invalid(e.to_string()))?;
                if n.outputs.len() != self.names.len() {
                    return Err(invalid(format!(
                        "the network's output mask has {} entries for {} states",
                        n.outputs.len(),
                        self.names.len()
                    )));
                }
                Some(NeuralTerm {
                    mlp,
                    transform: n.transform,
                    outputs: n.outputs.clone(),
                })
            }
            None => None,
        };
        for tr in &self.trajectories {
            if tr.y0.len() != self.names.len() || tr.y0.iter().any(|v| !v.is_finite()) || !tr.t0.is_finite() {
                return Err(invalid(format!("trajectory '{}' has an unusable start", tr.id)));
            }
        }
        SeriesModel::new(self.names.clone(), mechanistic, neural).map_err(|e| invalid(e.to_string()))
    }
}
