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
/// The checkpoint version this build reads and writes.
pub const CHECKPOINT_VERSION: u32 = 1;

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
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| ModelFileError::Read {
            file: file.clone(),
            error: source,
        })?;
        let ck: Checkpoint<A> = serde_json::from_slice(&bytes).map_err(|e| ModelFileError::Parse {
            file: file.clone(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        if ck.format != CHECKPOINT_FORMAT || ck.version != CHECKPOINT_VERSION {
            return Err(ModelFileError::Invalid {
                file,
                problem: format!("not a cnflow checkpoint of version {CHECKPOINT_VERSION}"),
            });
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
