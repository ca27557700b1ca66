//! The checkpoint of a training run: everything a resumed run needs to continue exactly
//! where it stopped — the run's settings (`args`, whatever type the caller keeps them
//! in), the iteration, the model, the optimizer's state and the best model so far.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{ModelFile, ModelFileError};
use crate::optim::OptimizerState;

/// The format name written in every checkpoint.
pub const CHECKPOINT_FORMAT: &str = "cnflow-checkpoint";
/// The checkpoint version this build writes. It reads version 1 too, whose best test
/// NLL was of the standardised data (version 2 keeps it in the user's units, as the
/// model's affine block does).
pub const CHECKPOINT_VERSION: u32 = 2;

/// A training run's checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checkpoint<A> {
    /// [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// [`CHECKPOINT_VERSION`].
    pub version: u32,
    /// The run's settings.
    pub args: A,
    /// Iterations done.
    pub iter: usize,
    /// Wall time so far, seconds.
    pub elapsed: f64,
    /// The model after `iter` iterations.
    pub model: ModelFile,
    /// The optimizer's state (named `adam`, and untagged, before there were others).
    #[serde(alias = "adam", deserialize_with = "optimizer_state")]
    pub optimizer: OptimizerState,
    /// The best model by test NLL, with its NLL and iteration.
    pub best: Option<(ModelFile, f64, usize)>,
}

fn optimizer_state<'de, D: serde::Deserializer<'de>>(d: D) -> Result<OptimizerState, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    OptimizerState::from_json_value(v).map_err(serde::de::Error::custom)
}

impl<A: Serialize + DeserializeOwned> Checkpoint<A> {
    /// Reads and checks a checkpoint.
    pub fn load(path: &Path) -> Result<Self, ModelFileError> {
        Self::from_slice(&super::read_bytes(path)?, &path.display().to_string())
    }

    /// Parses and checks a checkpoint's bytes; `file` names it in errors.
    pub fn from_slice(bytes: &[u8], file: &str) -> Result<Self, ModelFileError> {
        let file = file.to_string();
        let mut ck: Checkpoint<A> = serde_json::from_slice(bytes).map_err(|e| ModelFileError::Parse {
            file: file.clone(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        if ck.format != CHECKPOINT_FORMAT || !(1..=CHECKPOINT_VERSION).contains(&ck.version) {
            return Err(ModelFileError::Invalid {
                file,
                problem: format!("not a cnflow checkpoint of version 1 to {CHECKPOINT_VERSION}"),
            });
        }
        if ck.version == 1 {
            if let Some((m, nll, _)) = &mut ck.best {
                *nll -= m.standardizer.as_ref().map_or(0.0, |s| s.log_det());
            }
            ck.version = CHECKPOINT_VERSION;
        }
        Ok(ck)
    }

    /// Writes the checkpoint atomically (a temporary file renamed over `path`).
    pub fn save(&self, path: &Path) -> Result<(), ModelFileError> {
        let json = serde_json::to_vec(self).map_err(|e| ModelFileError::Write {
            file: path.display().to_string(),
            message: e.to_string(),
        })?;
        super::save_bytes(path, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cnf::{Block, Cnf};
    use crate::data::Standardizer;
    use crate::model_file::EvalSolver;
    use crate::nn::{Mlp, MlpConfig};
    use crate::ode::Method;
    use crate::optim::{Adam, AdamConfig, OptimizerState};
    use rand::SeedableRng;

    fn checkpoint(version: u32, best_nll: f64) -> Checkpoint<String> {
        let arch = MlpConfig::parse(2, "4", "concatsquash", "tanh").unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let model = Cnf::new(vec![Block {
            field: Mlp::<f64>::new(arch, &mut rng, false),
            t_end: 0.5,
            learn_t: true,
        }])
        .unwrap()
        .with_standardizer(Standardizer {
            mean: ndarray::arr1(&[1.0, 2.0]),
            std: ndarray::arr1(&[2.0, 4.0]),
        })
        .unwrap();
        let solver = EvalSolver {
            method: Method::Dopri5,
            rtol: 1e-5,
            atol: 1e-5,
            implicit: None,
        };
        let file = ModelFile::new(&model, solver, serde_json::json!({}));
        let adam = Adam::new(AdamConfig::new(1e-3, 0.0), 4);
        Checkpoint {
            format: CHECKPOINT_FORMAT.into(),
            version,
            args: "args".into(),
            iter: 3,
            elapsed: 1.0,
            model: file.clone(),
            optimizer: OptimizerState::Adam(adam),
            best: Some((file, best_nll, 2)),
        }
    }

    #[test]
    fn a_version_1_best_nll_is_moved_to_the_users_units() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        for (version, expected) in [(1, 1.5 + (2.0f64).ln() + (4.0f64).ln()), (2, 1.5)] {
            checkpoint(version, 1.5).save(&path).unwrap();
            let back = Checkpoint::<String>::load(&path).unwrap();
            assert_eq!(back.version, CHECKPOINT_VERSION);
            let nll = back.best.unwrap().1;
            assert!((nll - expected).abs() < 1e-12, "version {version}: {nll} vs {expected}");
        }
        checkpoint(3, 1.5).save(&path).unwrap();
        assert!(Checkpoint::<String>::load(&path).is_err());
    }
}
