//! Pieces the commands share: models, solvers, data sources.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cnflow::cnf::{Cnf, Trace};
use cnflow::data::{read_points, Dataset};
use cnflow::model_file::ModelFile;
use cnflow::nn::Mlp;
use cnflow::ode::SolverConfig;
use ndarray::Array2;

use super::args::EvalSolverArgs;

/// A model file loaded for evaluation (in f64, whatever it was trained in).
pub struct Loaded {
    pub file: ModelFile,
    pub model: Cnf<f64, Mlp<f64>>,
}

pub fn load_model(path: &Path) -> Result<Loaded> {
    let file = ModelFile::load(path)?;
    let model = file.to_model::<f64>(path)?;
    Ok(Loaded { file, model })
}

/// The evaluation solver: the model's defaults, overridden by flags.
pub fn eval_solver(file: &ModelFile, args: &EvalSolverArgs) -> Result<SolverConfig> {
    let method = args.solver.map_or(file.eval_solver.method, |s| s.method());
    let config = match args.steps {
        Some(n) => SolverConfig::fixed_steps(method, n),
        None => {
            if !method.tableau().is_adaptive() {
                bail!("--solver {method} has no error estimate; give --steps N for fixed steps");
            }
            let rtol = args.rtol.unwrap_or(file.eval_solver.rtol);
            let atol = args.atol.unwrap_or(file.eval_solver.atol);
            SolverConfig::adaptive(method, rtol, atol)
        }
    };
    config.validate()?;
    Ok(config)
}

/// Where training or evaluation data comes from.
pub enum DataSource {
    /// A built-in dataset.
    Builtin(Dataset),
    /// Points read from a file (n × d).
    File { path: PathBuf, points: Array2<f64> },
}

impl DataSource {
    /// A dataset name, else a file path; a name that is neither says both.
    pub fn parse(spec: &str, expected_dim: Option<usize>) -> Result<Self> {
        if let Ok(d) = spec.parse::<Dataset>() {
            return Ok(DataSource::Builtin(d));
        }
        let path = PathBuf::from(spec);
        if !path.exists() && spec != "-" && !spec.contains('.') && !spec.contains('/') {
            bail!(
                "--data {spec}: no such dataset or file; use one of {} or a CSV/.npy file",
                Dataset::valid_names()
            );
        }
        let points = read_points(&path, expected_dim)?;
        Ok(DataSource::File { path, points })
    }

    /// A short name for run folders and reports.
    pub fn name(&self) -> String {
        match self {
            DataSource::Builtin(d) => d.name().to_string(),
            DataSource::File { path, .. } => path
                .file_stem()
                .map_or("data".to_string(), |s| s.to_string_lossy().into_owned()),
        }
    }
}

/// Rows of a flat `n × d` vector as an array.
pub fn to_array(flat: Vec<f64>, d: usize) -> Result<Array2<f64>> {
    let n = flat.len() / d.max(1);
    Array2::from_shape_vec((n, d), flat).context("internal: shape of a result")
}

/// The flat row-major values of an array (standard layout).
pub fn to_flat(a: &Array2<f64>) -> Vec<f64> {
    a.iter().copied().collect()
}

/// log p(x) in the user's units for the flat points `x` (n × d).
pub fn log_density(
    loaded: &Loaded,
    x: Vec<f64>,
    solver: &cnflow::ode::SolverConfig,
    trace: Trace,
    chunk: usize,
    seed: u64,
) -> Result<(Vec<f64>, usize)> {
    let d = loaded.file.dim();
    let (u, log_det) = match &loaded.file.standardizer {
        Some(s) => (to_flat(&s.forward(to_array(x, d)?.view())?), s.log_det()),
        None => (x, 0.0),
    };
    let lp = loaded.model.log_prob_par(&u, solver, trace, chunk, seed)?;
    Ok((lp.log_p.iter().map(|v| v + log_det).collect(), lp.n_evals))
}
