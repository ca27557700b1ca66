//! Pieces the commands share: models, solvers, data sources.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use cnflow::cnf::{Cnf, Trace};
use cnflow::data::{read_points, Dataset};
use cnflow::model_file::ModelFile;
use cnflow::nn::Mlp;
use cnflow::ode::SolverConfig;
use cnflow::Real;
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;

use super::args::{EvalSolverArgs, PrecisionArg};

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

/// The float type to evaluate in: `--precision`, else the one the model was trained in.
pub fn precision_of(file: &ModelFile, arg: Option<PrecisionArg>) -> PrecisionArg {
    arg.unwrap_or(if file.precision == "f64" {
        PrecisionArg::F64
    } else {
        PrecisionArg::F32
    })
}

/// The evaluation solver: the model's defaults, overridden by flags.
pub fn eval_solver(file: &ModelFile, args: &EvalSolverArgs) -> Result<SolverConfig> {
    let rtol = args.rtol.unwrap_or(file.eval_solver.rtol);
    let atol = args.atol.unwrap_or(file.eval_solver.atol);
    if let Some(solver) = args.solver {
        return solver.config(args.steps, rtol, atol);
    }
    if let Some(m) = file.eval_solver.implicit {
        let config = match args.steps {
            Some(n) => SolverConfig {
                step: cnflow::ode::StepControl::FixedSteps(n),
                ..SolverConfig::implicit(m, rtol, atol)
            },
            None => SolverConfig::implicit(m, rtol, atol),
        };
        return Ok(config);
    }
    let method = file.eval_solver.method;
    let config = match args.steps {
        Some(n) => SolverConfig::fixed_steps(method, n),
        None => {
            if !method.tableau().is_adaptive() {
                bail!("--solver {method} has no error estimate; give --steps N for fixed steps");
            }
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
    log_density_in(&loaded.model, x, solver, trace, chunk, seed)
}

/// [`log_density`] computed in float type `T` by `model` (its affine block takes the
/// points in the user's units).
pub fn log_density_in<T: Real>(
    model: &Cnf<T, Mlp<T>>,
    x: Vec<f64>,
    solver: &cnflow::ode::SolverConfig,
    trace: Trace,
    chunk: usize,
    seed: u64,
) -> Result<(Vec<f64>, usize)> {
    let lp = model.log_prob_par(&x, solver, trace, chunk, seed)?;
    Ok((lp.log_p.iter().map(|v| v.f64()).collect(), lp.n_evals))
}

/// Chunks in flight (being evaluated or waiting to be written) in a streamed evaluation:
/// two per thread, so a thread never waits for the writer.
pub fn stream_window() -> usize {
    2 * rayon::current_num_threads()
}

/// Progress of a long evaluation on stderr: shown only when stderr is a terminal and
/// the run has taken more than [`Progress::AFTER`].
pub struct Progress {
    bar: Option<ProgressBar>,
    terminal: bool,
    started: Instant,
    total: Option<u64>,
    done: u64,
}

impl Progress {
    /// Runs shorter than this show no progress.
    pub const AFTER: Duration = Duration::from_secs(2);

    /// Progress over `total` points (`None`: not known in advance).
    pub fn new(total: Option<usize>) -> Self {
        Progress {
            bar: None,
            terminal: std::io::stderr().is_terminal(),
            started: Instant::now(),
            total: total.map(|n| n as u64),
            done: 0,
        }
    }

    /// `n` more points are done.
    pub fn advance(&mut self, n: usize) {
        self.done += n as u64;
        if self.bar.is_none() && self.terminal && self.started.elapsed() >= Self::AFTER {
            let (bar, template) = match self.total {
                Some(total) => (
                    ProgressBar::new(total),
                    "{bar:30} {pos}/{len} points [{elapsed_precise} < {eta_precise}] {msg}",
                ),
                None => (
                    ProgressBar::new_spinner(),
                    "{spinner} {pos} points [{elapsed_precise}] {msg}",
                ),
            };
            let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
            let bar = bar.with_style(style).with_elapsed(self.started.elapsed());
            bar.enable_steady_tick(Duration::from_millis(200));
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_position(self.done);
            let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{rate:.0} points/s"));
        }
    }

    /// Removes the bar (if shown) before the final report.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The peak resident memory of this process in kB (`VmHWM` of /proc/self/status), where
/// the system reports it.
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The tail of a one-line report: "(E evaluations, R points/s, SIMD kernels, peak RSS M MB)".
pub fn work_summary(n_points: usize, seconds: f64, n_evals: usize) -> String {
    let rate = n_points as f64 / seconds.max(1e-9);
    let memory = peak_rss_kb().map_or(String::new(), |kb| format!(", peak RSS {:.0} MB", kb as f64 / 1024.0));
    let simd = cnflow::nn::simd_in_use();
    format!("({n_evals} evaluations, {rate:.0} points/s, {simd} kernels{memory})")
}

/// The error and its causes on one line, as `error: {err:#}` would print them, but
/// leaving out a cause whose text the message already contains (most of cnflow's errors
/// quote their underlying reason and also keep it as their source, for library users).
pub fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.is_empty() {
            line = text;
        } else if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
    }
    line
}

/// Refuses points that the model's float type cannot hold once standardised (1e300
/// into an f32 model): `first_row` is the 1-based data row of `x`'s first point.
pub fn check_in_range<T: Real>(model: &Cnf<T, Mlp<T>>, x: &[f64], file: &str, first_row: usize) -> Result<()> {
    let d = model.dim();
    let s = model.standardizer();
    for (k, &v) in x.iter().enumerate() {
        let j = k % d;
        let u = match s {
            Some(s) => (v - s.mean[j]) / s.std[j],
            None => v,
        };
        if !T::c(u).is_finite() {
            let scaled = if s.is_some() { " after standardisation" } else { "" };
            bail!(
                "{file}: data row {}, column {}: {v:e} is beyond the range of the {} model ({:e}{scaled}); \
                 evaluate with --precision f64",
                first_row + k / d,
                j + 1,
                T::NAME,
                if T::NAME == "f32" { f32::MAX as f64 } else { f64::MAX }
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn one_line_keeps_new_causes_and_drops_repeated_ones() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let quoted = anyhow::Error::new(io()).context("m.json: cannot read: no such file");
        assert_eq!(one_line(&quoted), "m.json: cannot read: no such file");
        let bare = anyhow::Error::new(io()).context("m.json: cannot read");
        assert_eq!(one_line(&bare), "m.json: cannot read: no such file");
    }
}
