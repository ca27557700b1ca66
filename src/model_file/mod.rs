//! Model files: versioned, self-describing JSON, written atomically.
//!
//! A file holds the architecture, every block's end time and weights, the float type
//! it was trained in, the standardisation of the user's data (so densities come out in
//! the user's units), the default evaluation solver and what is known of the training
//! run. Loading checks the format name, the version, the architecture against the
//! weights, and every number, and names the file in every error.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cnf::{Block, Cnf};
use std::io::Write;

use crate::data::{write_atomic, DataError, Standardizer};
use crate::nn::{Mlp, MlpConfig};
use crate::ode::Method;
use crate::Real;

mod checkpoint;

pub use checkpoint::{Checkpoint, CHECKPOINT_FORMAT, CHECKPOINT_VERSION};

/// The format name written in every model file.
pub const FORMAT: &str = "cnflow-model";
/// The newest format version this build reads and the one it writes.
pub const VERSION: u32 = 1;

/// Why a model file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// The file could not be opened or read.
    #[error("{file}: cannot read the model file: {error}")]
    Read {
        /// The file.
        file: String,
        /// The reason.
        error: std::io::Error,
    },
    /// The file is not valid JSON or misses fields.
    #[error("{file}: not a valid cnflow model file (line {line}, column {column}: {message}); is it a model written by `cnflow train`?")]
    Parse {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// The JSON is fine but the content is not a usable model.
    #[error("{file}: {problem}")]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// Writing failed.
    #[error("{file}: cannot write the model file: {message}")]
    Write {
        /// The file.
        file: String,
        /// The reason.
        message: String,
    },
}

/// One block as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockFile {
    /// End time `T`.
    pub t_end: f64,
    /// Whether `T` was learned.
    pub learn_t: bool,
    /// The field's flat params.
    pub params: Vec<f64>,
}

/// Default solver for evaluating the model (density, eval, sample).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalSolver {
    /// Method.
    pub method: Method,
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// The implicit method the model was trained with, if any (TR-BDF2 or KVAERNO5),
    /// used instead of `method` so that a stiff model is evaluated as it was trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implicit: Option<crate::stiff::StiffMethod>,
}

impl EvalSolver {
    /// The solver settings at these tolerances: the implicit method when there is one.
    pub fn config(&self, rtol: f64, atol: f64) -> crate::ode::SolverConfig {
        match self.implicit {
            Some(m) => crate::ode::SolverConfig::implicit(m, rtol, atol),
            None => crate::ode::SolverConfig::adaptive(self.method, rtol, atol),
        }
    }
}

/// A model file's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// Format version.
    pub version: u32,
    /// Float type the model was trained in: "f32" or "f64".
    pub precision: String,
    /// The field architecture (shared by all blocks).
    pub architecture: MlpConfig,
    /// The blocks, data side first.
    pub blocks: Vec<BlockFile>,
    /// The model's affine block: the standardisation of the user's data before the
    /// flow, if any.
    pub standardizer: Option<Standardizer>,
    /// Default evaluation solver.
    pub eval_solver: EvalSolver,
    /// Free-form facts about the training run (dataset, iterations, seed, test NLL, …).
    pub training: serde_json::Value,
}

impl ModelFile {
    /// Describes `model`, its affine block included (all blocks must share
    /// `architecture`).
    pub fn new<T: Real>(model: &Cnf<T, Mlp<T>>, eval_solver: EvalSolver, training: serde_json::Value) -> Self {
        ModelFile {
            format: FORMAT.to_string(),
            version: VERSION,
            precision: T::NAME.to_string(),
            architecture: model.blocks[0].field.config().clone(),
            blocks: model
                .blocks
                .iter()
                .map(|b| BlockFile {
                    t_end: b.t_end.f64(),
                    learn_t: b.learn_t,
                    params: b.field.params().iter().map(|p| p.f64()).collect(),
                })
                .collect(),
            standardizer: model.standardizer().cloned(),
            eval_solver,
            training,
        }
    }

    /// Data dimension.
    pub fn dim(&self) -> usize {
        self.architecture.dim()
    }

    /// The model in float type `T` (any precision loads in either).
    pub fn to_model<T: Real>(&self, file: &Path) -> Result<Cnf<T, Mlp<T>>, ModelFileError> {
        let invalid = |problem: String| ModelFileError::Invalid {
            file: file.display().to_string(),
            problem,
        };
        let blocks = self
            .blocks
            .iter()
            .enumerate()
            .map(|(k, b)| {
                let params: Vec<T> = b.params.iter().map(|&p| T::c(p)).collect();
                if let Some(i) = params.iter().position(|p| !p.is_finite()) {
                    return Err(invalid(format!(
                        "block {} weight #{i} ({:e}) is beyond the range of {}; load it with --precision f64",
                        k + 1,
                        b.params[i],
                        T::NAME
                    )));
                }
                let field = Mlp::from_params(self.architecture.clone(), params).map_err(|e| invalid(e.to_string()))?;
                Ok(Block {
                    field,
                    t_end: T::c(b.t_end),
                    learn_t: b.learn_t,
                })
            })
            .collect::<Result<Vec<_>, ModelFileError>>()?;
        let model = Cnf::new(blocks).map_err(|e| invalid(e.to_string()))?;
        match &self.standardizer {
            Some(s) => model.with_standardizer(s.clone()).map_err(|e| invalid(e.to_string())),
            None => Ok(model),
        }
    }

    /// Writes the file atomically (a temporary file renamed over `path`).
    pub fn save(&self, path: &Path) -> Result<(), ModelFileError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| ModelFileError::Write {
            file: path.display().to_string(),
            message: e.to_string(),
        })?;
        save_bytes(path, &json)
    }

    /// Reads and checks a model file.
    pub fn load(path: &Path) -> Result<Self, ModelFileError> {
        let file = path.display().to_string();
        if path.is_dir() {
            return Err(ModelFileError::Invalid {
                file,
                problem: "is a directory; give the model file inside it (e.g. DIR/model.json)".into(),
            });
        }
        Self::from_slice(&read_bytes(path)?, &file)
    }

    /// Parses and checks a model file's bytes; `file` names it in errors.
    pub fn from_slice(bytes: &[u8], file: &str) -> Result<Self, ModelFileError> {
        let path = Path::new(file);
        let file = file.to_string();
        // Look at the header first, so that a newer format is reported as such.
        let header: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| ModelFileError::Parse {
            file: file.clone(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        let invalid = |problem: String| ModelFileError::Invalid {
            file: file.clone(),
            problem,
        };
        if header.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(invalid(format!(
                "not a cnflow model file (no \"format\": \"{FORMAT}\")"
            )));
        }
        match header.get("version").and_then(|v| v.as_u64()) {
            Some(0) => {
                return Err(invalid(
                    "has format version 0, which no cnflow writes; the file is corrupt".into(),
                ))
            }
            Some(v) if v > u64::from(VERSION) => {
                return Err(invalid(format!(
                    "written by a newer cnflow (format version {v}; this cnflow reads up to {VERSION}); upgrade cnflow"
                )))
            }
            Some(_) => {}
            None => return Err(invalid("has no format version".into())),
        }
        let model: ModelFile = serde_json::from_value(header).map_err(|e| ModelFileError::Parse {
            file: file.clone(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        model.check(path)?;
        Ok(model)
    }

    fn check(&self, path: &Path) -> Result<(), ModelFileError> {
        let invalid = |problem: String| ModelFileError::Invalid {
            file: path.display().to_string(),
            problem,
        };
        if self.precision != "f32" && self.precision != "f64" {
            return Err(invalid(format!(
                "precision \"{}\" is neither f32 nor f64",
                self.precision
            )));
        }
        let a = &self.architecture;
        MlpConfig::new(a.dim(), a.hidden(), a.layer(), a.activation()).map_err(|e| invalid(e.to_string()))?;
        if self.blocks.is_empty() {
            return Err(invalid("has no blocks".into()));
        }
        for (k, b) in self.blocks.iter().enumerate() {
            if !(b.t_end > 0.0 && b.t_end.is_finite()) {
                return Err(invalid(format!(
                    "block {} has end time {}; it must be > 0",
                    k + 1,
                    b.t_end
                )));
            }
            if b.params.len() != a.n_params() {
                return Err(invalid(format!(
                    "block {} has {} weights but the architecture {} needs {}; the file is corrupt",
                    k + 1,
                    b.params.len(),
                    a.describe(),
                    a.n_params()
                )));
            }
            if let Some(i) = b.params.iter().position(|p| !p.is_finite()) {
                return Err(invalid(format!(
                    "block {} weight #{i} is not finite; the file is corrupt",
                    k + 1
                )));
            }
        }
        if let Some(s) = &self.standardizer {
            s.validate().map_err(|e| invalid(e.to_string()))?;
            if s.dim() != self.dim() {
                return Err(invalid(format!(
                    "standardiser has {} columns, the model {} dimensions",
                    s.dim(),
                    self.dim()
                )));
            }
        }
        if !(self.eval_solver.rtol >= 0.0 && self.eval_solver.atol >= 0.0) {
            return Err(invalid("evaluation tolerances must be ≥ 0".into()));
        }
        Ok(())
    }
}

/// The bytes of the file at `path`, or [`ModelFileError::Read`].
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>, ModelFileError> {
    std::fs::read(path).map_err(|error| ModelFileError::Read {
        file: path.display().to_string(),
        error,
    })
}

/// Writes `bytes` to `path` atomically (a temporary file renamed over it).
pub(crate) fn save_bytes(path: &Path, bytes: &[u8]) -> Result<(), ModelFileError> {
    let file = path.display().to_string();
    let write = |w: &mut std::io::BufWriter<std::fs::File>| {
        w.write_all(bytes).map_err(|source| DataError::Io {
            file: file.clone(),
            action: "writing",
            error: source,
        })
    };
    write_atomic(path, write).map_err(|e: DataError| ModelFileError::Write {
        file: file.clone(),
        message: e.to_string(),
    })
}
