//! The neural-ODE model of a time series: `dy/dt = f_mech(t, y; p) + m ⊙ NN(φ(y); w)`.

use ndarray::Array1;
use rand::Rng;

use crate::nn::{Activation, LayerKind, Mlp, MlpConfig, NnError, SingleTape};
use crate::ode::{
    integrate, DualSystem, GenericSystem, Jacobian, OdeSystem, SaveAt, SolveError, SolverConfig, StageSlots, StepEvent,
    Vjp,
};

/// A mechanistic term `f_mech(t, y; p)` with its VJP; the model's other parts do not
/// care how it is written. Implemented by [`Equations`](super::Equations) (typed at the
/// command line) and by [`Generic`] (a [`GenericSystem`] written in Rust, differentiated
/// with dual numbers).
pub trait Mechanistic: Send + Sync {
    /// State dimension.
    fn dim(&self) -> usize;
    /// The parameters' names, in the order of `p`.
    fn param_names(&self) -> Vec<String>;
    /// Writes `f_mech(t, y; p)` into `dy`.
    fn rhs(&mut self, t: f64, y: &[f64], p: &[f64], dy: &mut [f64]);
    /// ADDS `wᵀ ∂f/∂y` into `grad_y` and `wᵀ ∂f/∂p` into `grad_p`.
    fn vjp(&mut self, t: f64, y: &[f64], p: &[f64], w: &[f64], grad_y: &mut [f64], grad_p: &mut [f64]);
    /// A copy behind a new box.
    fn box_clone(&self) -> Box<dyn Mechanistic>;
    /// The equations' text, when the term came from equations (saved in model files).
    fn equations(&self) -> Option<&str> {
        None
    }
}

impl Clone for Box<dyn Mechanistic> {
    fn clone(&self) -> Self {
        self.box_clone()
    }
}

impl std::fmt::Debug for dyn Mechanistic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mechanistic(dim {}, params {:?})", self.dim(), self.param_names())
    }
}

/// A [`GenericSystem`] as a mechanistic term, its derivatives from dual numbers.
#[derive(Clone, Debug)]
pub struct Generic<S> {
    inner: DualSystem<S>,
    names: Vec<String>,
    /// Scratch for `wᵀ ∂f/∂y` (the dual system overwrites, the term adds).
    gy: Vec<f64>,
}

impl<S: GenericSystem> Generic<S> {
    /// The system with its parameters' names (one per parameter).
    pub fn new(system: S, names: &[&str]) -> Self {
        assert_eq!(names.len(), system.n_params(), "Generic: one name per parameter");
        let p = vec![0.0; system.n_params()];
        let gy = vec![0.0; system.dim()];
        Generic {
            inner: DualSystem::new(system, p),
            names: names.iter().map(|s| s.to_string()).collect(),
            gy,
        }
    }
}

impl<S: GenericSystem + Clone + Send + Sync + 'static> Mechanistic for Generic<S> {
    fn dim(&self) -> usize {
        self.inner.system.dim()
    }

    fn param_names(&self) -> Vec<String> {
        self.names.clone()
    }

    fn rhs(&mut self, t: f64, y: &[f64], p: &[f64], dy: &mut [f64]) {
        self.inner.params.copy_from_slice(p);
        self.inner.rhs(t, y, dy);
    }

    fn vjp(&mut self, t: f64, y: &[f64], p: &[f64], w: &[f64], grad_y: &mut [f64], grad_p: &mut [f64]) {
        self.inner.params.copy_from_slice(p);
        self.inner.vjp(t, y, w, &mut self.gy, grad_p);
        for (g, v) in grad_y.iter_mut().zip(&self.gy) {
            *g += v;
        }
    }

    fn box_clone(&self) -> Box<dyn Mechanistic> {
        Box::new(self.clone())
    }
}

/// What the network sees of the state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputTransform {
    /// `y` itself.
    #[default]
    None,
    /// `y³` componentwise (the spiral demo's `u ↦ u³`).
    Cube,
}

impl std::str::FromStr for InputTransform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(InputTransform::None),
            "cube" => Ok(InputTransform::Cube),
            _ => Err(format!("unknown input transform '{s}': use cube or none")),
        }
    }
}

impl InputTransform {
    fn apply(self, y: &[f64], u: &mut [f64]) {
        match self {
            InputTransform::None => u.copy_from_slice(y),
            InputTransform::Cube => {
                for (u, &y) in u.iter_mut().zip(y) {
                    *u = y * y * y;
                }
            }
        }
    }

    /// `∂L/∂y` from `∂L/∂u`, in place.
    fn back(self, y: &[f64], g: &mut [f64]) {
        if self == InputTransform::Cube {
            for (g, &y) in g.iter_mut().zip(y) {
                *g *= 3.0 * y * y;
            }
        }
    }
}

/// The neural term `m ⊙ NN(φ(y))`: an MLP `d → … → d` (no time input) on the
/// transformed state, its output kept only in the components `m` selects.
#[derive(Clone, Debug)]
pub struct NeuralTerm {
    /// The network.
    pub mlp: Mlp<f64>,
    /// `φ`.
    pub transform: InputTransform,
    /// `m`: which equations get the network's output.
    pub outputs: Vec<bool>,
}

impl NeuralTerm {
    /// A network of hidden widths `hidden` and activation `activation` on `dim` states,
    /// PyTorch's default initialisation from `rng`; `outputs` all true when `None`.
    /// With `zero_last` the last layer starts at zero, so the term starts at `0` (a
    /// hybrid model then starts as its mechanistic part).
    pub fn new<R: Rng + ?Sized>(
        dim: usize,
        hidden: &[usize],
        activation: Activation,
        transform: InputTransform,
        outputs: Option<Vec<bool>>,
        zero_last: bool,
        rng: &mut R,
    ) -> Result<Self, NnError> {
        let config = MlpConfig::new(dim, hidden, LayerKind::Ignore, activation)?;
        Ok(NeuralTerm {
            mlp: Mlp::new(config, rng, zero_last),
            transform,
            outputs: outputs.unwrap_or_else(|| vec![true; dim]),
        })
    }
}

/// A neural-ODE model of a `d`-dimensional series:
/// `dy/dt = f_mech(t, y; p) + m ⊙ NN(φ(y); w)`, either part optional.
///
/// Its parameters, flat, are `[p, w]` ([`SeriesModel::params`]).
#[derive(Clone, Debug)]
pub struct SeriesModel {
    /// The states' names (the data's column names).
    pub names: Vec<String>,
    /// The mechanistic term, if any.
    pub mechanistic: Option<Box<dyn Mechanistic>>,
    /// Its parameter values `p`.
    pub mech_params: Vec<f64>,
    /// The neural term, if any.
    pub neural: Option<NeuralTerm>,
}

/// Why a model cannot be built.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// Neither part.
    #[error("the model has no terms: give a mechanistic part, a network, or both")]
    Empty,
    /// Parts of different dimensions.
    #[error("the {part} has {got} states, the model {expected}")]
    Dimension {
        /// Which part.
        part: &'static str,
        /// Its dimension.
        got: usize,
        /// The model's.
        expected: usize,
    },
    /// Parameter values of the wrong count.
    #[error("the mechanistic part has {expected} parameters, {got} values were given")]
    ParamCount {
        /// Expected.
        expected: usize,
        /// Given.
        got: usize,
    },
}

impl SeriesModel {
    /// A model from its parts, checked for matching dimensions.
    pub fn new(
        names: Vec<String>,
        mechanistic: Option<(Box<dyn Mechanistic>, Vec<f64>)>,
        neural: Option<NeuralTerm>,
    ) -> Result<Self, ModelError> {
        let d = names.len();
        if mechanistic.is_none() && neural.is_none() {
            return Err(ModelError::Empty);
        }
        let (mechanistic, mech_params) = match mechanistic {
            Some((m, p)) => {
                if m.dim() != d {
                    return Err(ModelError::Dimension {
                        part: "mechanistic part",
                        got: m.dim(),
                        expected: d,
                    });
                }
                if m.param_names().len() != p.len() {
                    return Err(ModelError::ParamCount {
                        expected: m.param_names().len(),
                        got: p.len(),
                    });
                }
                (Some(m), p)
            }
            None => (None, Vec::new()),
        };
        if let Some(nt) = &neural {
            if nt.mlp.dim() != d || nt.outputs.len() != d {
                return Err(ModelError::Dimension {
                    part: "network",
                    got: nt.mlp.dim(),
                    expected: d,
                });
            }
        }
        Ok(SeriesModel {
            names,
            mechanistic,
            mech_params,
            neural,
        })
    }

    /// State dimension.
    pub fn dim(&self) -> usize {
        self.names.len()
    }

    /// The mechanistic parameters' names.
    pub fn param_names(&self) -> Vec<String> {
        self.mechanistic.as_ref().map(|m| m.param_names()).unwrap_or_default()
    }

    /// Number of network weights.
    pub fn n_weights(&self) -> usize {
        self.neural.as_ref().map_or(0, |n| n.mlp.n_params())
    }

    /// All parameters, flat: `[p, w]`.
    pub fn params(&self) -> Vec<f64> {
        let mut v = self.mech_params.clone();
        if let Some(n) = &self.neural {
            v.extend_from_slice(n.mlp.params());
        }
        v
    }

    /// Sets `[p, w]` from a flat vector.
    pub fn set_params(&mut self, flat: &[f64]) {
        let m = self.mech_params.len();
        self.mech_params.copy_from_slice(&flat[..m]);
        if let Some(n) = &mut self.neural {
            n.mlp.params_mut().copy_from_slice(&flat[m..]);
        }
    }

    /// The model as an ODE system with VJPs in `y` and `[p, w]`.
    pub fn system(&self) -> SeriesSystem<'_> {
        let d = self.dim();
        SeriesSystem {
            mech: self.mechanistic.clone(),
            mech_params: &self.mech_params,
            neural: self.neural.as_ref().map(|n| {
                let tape = n.mlp.single_tape().expect("a series network ignores t");
                (n, tape)
            }),
            u: vec![0.0; d],
            f: vec![0.0; d],
            w: vec![0.0; d],
            tape: None,
        }
    }

    /// [`SeriesModel::system`] that keeps the network's forward pass of every stage of
    /// accepted steps, so that backprop through the steps
    /// ([`Checkpointing::All`](crate::sensitivity::Checkpointing::All)) does not evaluate
    /// the network a second time. Use one per gradient: its steps are numbered from its
    /// creation.
    pub fn system_taped(&self) -> SeriesSystem<'_> {
        let mut sys = self.system();
        if let Some((_, tape)) = &sys.neural {
            let len = tape.saved_len();
            sys.tape = Some(Tape {
                records: Vec::with_capacity(1024 * len),
                len,
                slots: StageSlots::default(),
            });
        }
        sys
    }

    /// The model's solution from `y0` at `times[0]`, at every time of `times` (increasing,
    /// from dense output: no step is forced), `times × d` row-major.
    pub fn predict(&self, y0: &[f64], times: &[f64], solver: &SolverConfig) -> Result<Vec<f64>, SolveError> {
        if times.len() < 2 {
            return Ok(if times.is_empty() { Vec::new() } else { y0.to_vec() });
        }
        let mut sys = self.system();
        let save = SaveAt::times(times.to_vec());
        let sol = integrate(&mut sys, y0, times[0], times[times.len() - 1], solver, &save)?;
        Ok(sol.y)
    }

    /// As [`SeriesModel::predict`] with a stiff solver (its dense output).
    pub fn predict_stiff(
        &self,
        y0: &[f64],
        times: &[f64],
        solver: &crate::stiff::StiffConfig,
    ) -> Result<Vec<f64>, SolveError> {
        if times.len() < 2 {
            return Ok(if times.is_empty() { Vec::new() } else { y0.to_vec() });
        }
        let mut sys = self.system();
        let sol = crate::stiff::solve(&mut sys, y0, times[0], times[times.len() - 1], times, solver)?;
        Ok(sol.y)
    }

    /// The right-hand side at one point (for plots of the field and tests).
    pub fn field(&self, t: f64, y: &[f64]) -> Array1<f64> {
        let mut dy = vec![0.0; self.dim()];
        self.system().rhs(t, y, &mut dy);
        Array1::from(dy)
    }
}

/// A [`SeriesModel`] borrowed as an [`OdeSystem`] + [`Vjp`] (its own scratch, so one
/// per thread).
pub struct SeriesSystem<'a> {
    mech: Option<Box<dyn Mechanistic>>,
    mech_params: &'a [f64],
    neural: Option<(&'a NeuralTerm, SingleTape)>,
    u: Vec<f64>,
    f: Vec<f64>,
    w: Vec<f64>,
    tape: Option<Tape>,
}

/// The network's saved forward passes, one record of `len` values per evaluation slot,
/// one after another.
#[derive(Default)]
struct Tape {
    records: Vec<f64>,
    len: usize,
    slots: StageSlots,
}

impl OdeSystem<f64> for SeriesSystem<'_> {
    fn rhs(&mut self, t: f64, y: &[f64], dy: &mut [f64]) {
        match &mut self.mech {
            Some(m) => m.rhs(t, y, self.mech_params, dy),
            None => dy.fill(0.0),
        }
        if let Some((nt, tape)) = &mut self.neural {
            nt.transform.apply(y, &mut self.u);
            nt.mlp.forward_single(&self.u, tape, &mut self.f);
            for ((d, &f), &on) in dy.iter_mut().zip(&self.f).zip(&nt.outputs) {
                if on {
                    *d += f;
                }
            }
            if let Some(rec) = &mut self.tape {
                let slot = rec.slots.take().unwrap_or_else(|| {
                    rec.records.resize(rec.records.len() + rec.len, 0.0);
                    rec.records.len() / rec.len - 1
                });
                tape.save(&mut rec.records[slot * rec.len..(slot + 1) * rec.len]);
                rec.slots.record(slot);
            }
        }
    }

    fn step_event(&mut self, event: StepEvent) {
        if let Some(rec) = &mut self.tape {
            rec.slots.event(event);
        }
    }
}

impl SeriesSystem<'_> {
    /// `grad_y = wᵀ ∂f/∂y`, `grad_p += wᵀ ∂f/∂p`, the network's forward pass either
    /// restored from the tape (`saved`) or recomputed.
    fn vjp_from(&mut self, t: f64, y: &[f64], w: &[f64], grad_y: &mut [f64], grad_p: &mut [f64], saved: Option<usize>) {
        grad_y.fill(0.0);
        let m = self.mech_params.len();
        if let Some(mech) = &mut self.mech {
            mech.vjp(t, y, self.mech_params, w, grad_y, &mut grad_p[..m]);
        }
        if let Some((nt, tape)) = &mut self.neural {
            match (saved, &self.tape) {
                (Some(slot), Some(rec)) => tape.restore(&rec.records[slot * rec.len..(slot + 1) * rec.len]),
                _ => {
                    nt.transform.apply(y, &mut self.u);
                    nt.mlp.forward_single(&self.u, tape, &mut self.f);
                }
            }
            for ((wm, &wi), &on) in self.w.iter_mut().zip(w).zip(&nt.outputs) {
                *wm = if on { wi } else { 0.0 };
            }
            nt.mlp.vjp_single(tape, &self.w, &mut self.f, &mut grad_p[m..]);
            nt.transform.back(y, &mut self.f);
            for (g, &v) in grad_y.iter_mut().zip(&self.f) {
                *g += v;
            }
        }
    }
}

/// `∂f/∂y` row by row, each row `eᵢᵀ ∂f/∂y` one VJP (the network's reverse pass): `d`
/// passes for a `d`-state model, which the stiff solvers' Newton iterations reuse.
impl Jacobian<f64> for SeriesSystem<'_> {
    fn jacobian(&mut self, t: f64, y: &[f64], jac: &mut [f64]) {
        let d = y.len();
        let mut e = vec![0.0; d];
        let mut row = vec![0.0; d];
        let mut scratch = vec![0.0; self.n_params()];
        for i in 0..d {
            e.fill(0.0);
            e[i] = 1.0;
            self.vjp_from(t, y, &e, &mut row, &mut scratch, None);
            jac[i * d..(i + 1) * d].copy_from_slice(&row);
        }
    }
}

impl Vjp<f64> for SeriesSystem<'_> {
    fn n_params(&self) -> usize {
        self.mech_params.len() + self.neural.as_ref().map_or(0, |(n, _)| n.mlp.n_params())
    }

    fn vjp(&mut self, t: f64, y: &[f64], w: &[f64], grad_y: &mut [f64], grad_p: &mut [f64]) {
        self.vjp_from(t, y, w, grad_y, grad_p, None);
    }

    fn vjp_stage(
        &mut self,
        step: usize,
        stage: usize,
        t: f64,
        y: &[f64],
        w: &[f64],
        grad_y: &mut [f64],
        grad_p: &mut [f64],
    ) {
        let saved = self.tape.as_ref().and_then(|rec| rec.slots.slot(step, stage));
        self.vjp_from(t, y, w, grad_y, grad_p, saved);
    }
}
