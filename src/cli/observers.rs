//! The observers of `cnflow train`, one job each, plugged into the training loop in
//! this order: progress on the terminal, metrics.csv, the checkpoint and best model,
//! and Ctrl-C / SIGTERM.
//!
//! The model carries the data's standardisation as its affine block, so every NLL the
//! loop reports is already in the user's units.

use std::fs::{self, File};
use std::io::{BufWriter, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cnflow::cnf::Cnf;
use cnflow::model_file::{Checkpoint, EvalSolver, ModelFile, CHECKPOINT_FORMAT, CHECKPOINT_VERSION};
use cnflow::nn::Mlp;
use cnflow::train::{EvalMetrics, IterMetrics, Observer, TrainState};
use cnflow::Real;
use indicatif::{ProgressBar, ProgressStyle};

use super::args::TrainArgs;
use super::run_folder::RunFolder;

/// The columns of metrics.csv.
pub const METRICS_HEADER: &str =
    "iter,loss,nll,kinetic,jacobian,nfe_forward,nfe_backward,seconds,elapsed,t_end,test_nll,kl_gap,seconds_forward,seconds_backward";

/// Prints `line` on stderr without tearing the progress bar.
fn say(bar: Option<&ProgressBar>, line: &str) {
    match bar {
        Some(bar) => bar.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

/// Progress: a bar on a terminal, a log line every 5 % otherwise; evaluation lines.
pub struct Progress {
    /// The bar (on a terminal only).
    pub bar: Option<ProgressBar>,
    log_every: usize,
}

impl Progress {
    /// Progress of `n_iters` iterations starting after `start`.
    pub fn new(n_iters: usize, start: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(n_iters as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_position(start as u64);
            bar
        });
        Progress {
            bar,
            log_every: (n_iters / 20).max(10),
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl<T: Real> Observer<T, Mlp<T>> for Progress {
    fn iteration(&mut self, m: &IterMetrics, _state: &TrainState<T, Mlp<T>>) -> ControlFlow<()> {
        let per_eval = |s: f64, n: usize| 1e3 * s / n.max(1) as f64;
        let summary = format!(
            "loss {:.4}  NFE {}/{}  {:.1} ms/iter ({:.2}/{:.2} ms per fwd/bwd eval)",
            m.loss,
            m.n_evals_forward,
            m.n_evals_backward,
            1e3 * m.seconds,
            per_eval(m.seconds_forward, m.n_evals_forward),
            per_eval(m.seconds_backward, m.n_evals_backward),
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(m.iter as u64);
                bar.set_message(summary);
            }
            None if m.iter.is_multiple_of(self.log_every) => {
                eprintln!("iter {:6}  {summary}  ({:.1} s)", m.iter, m.elapsed)
            }
            None => {}
        }
        ControlFlow::Continue(())
    }

    fn evaluation(&mut self, e: &EvalMetrics, state: &TrainState<T, Mlp<T>>) -> ControlFlow<()> {
        let gap = e.kl_gap.map(|g| format!("  KL gap {g:.4}")).unwrap_or_default();
        let line = format!(
            "eval {:6}  test NLL {:.4}{gap}{}  ({:.1} s)",
            e.iter,
            e.test_nll,
            if e.is_best { "  (best)" } else { "" },
            state.elapsed
        );
        say(self.bar.as_ref(), &line);
        ControlFlow::Continue(())
    }
}

/// metrics.csv: one row per iteration; evaluation columns filled where one ran. A row
/// is written when the next iteration or evaluation arrives, so that an evaluation
/// lands on its iteration's row.
pub struct Metrics {
    writer: BufWriter<File>,
    path: PathBuf,
    pending: Option<IterMetrics>,
}

impl Metrics {
    /// Opens the file, keeping the rows of iterations up to `keep_until` (a resumed run).
    pub fn open(path: &Path, keep_until: usize) -> Result<Self> {
        let mut kept = vec![METRICS_HEADER.to_string()];
        if keep_until > 0 {
            if let Ok(text) = fs::read_to_string(path) {
                kept.extend(
                    text.lines()
                        .skip(1)
                        .filter(|l| {
                            l.split(',')
                                .next()
                                .and_then(|i| i.parse::<usize>().ok())
                                .is_some_and(|i| i <= keep_until)
                        })
                        // Rows from before a column was added get empty cells.
                        .map(|l| {
                            let missing = METRICS_HEADER.split(',').count().saturating_sub(l.split(',').count());
                            format!("{l}{}", ",".repeat(missing))
                        }),
                );
            }
        }
        let mut writer = BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?);
        for line in kept {
            writeln!(writer, "{line}")?;
        }
        Ok(Metrics {
            writer,
            path: path.to_path_buf(),
            pending: None,
        })
    }

    fn flush_pending(&mut self, eval: Option<&EvalMetrics>) -> Result<()> {
        if let Some(m) = self.pending.take() {
            row(&mut self.writer, &m, eval).with_context(|| format!("writing {}", self.path.display()))?;
        }
        Ok(())
    }

    /// Writes the last row and flushes the file.
    pub fn finish(&mut self) -> Result<()> {
        self.flush_pending(None)?;
        self.writer
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

fn row(w: &mut impl Write, m: &IterMetrics, eval: Option<&EvalMetrics>) -> std::io::Result<()> {
    let t_end: Vec<String> = m.t_end.iter().map(|t| format!("{t:.5}")).collect();
    writeln!(
        w,
        "{},{},{},{},{},{},{},{:.6},{:.3},{},{},{},{:.6},{:.6}",
        m.iter,
        m.loss,
        m.nll,
        m.kinetic,
        m.jacobian,
        m.n_evals_forward,
        m.n_evals_backward,
        m.seconds,
        m.elapsed,
        t_end.join(";"),
        eval.map_or(String::new(), |e| e.test_nll.to_string()),
        eval.and_then(|e| e.kl_gap).map_or(String::new(), |g| g.to_string()),
        m.seconds_forward,
        m.seconds_backward,
    )
}

impl<T: Real> Observer<T, Mlp<T>> for Metrics {
    fn iteration(&mut self, m: &IterMetrics, _state: &TrainState<T, Mlp<T>>) -> ControlFlow<()> {
        if self.flush_pending(None).is_err() {
            return ControlFlow::Break(());
        }
        self.pending = Some(m.clone());
        ControlFlow::Continue(())
    }

    fn evaluation(&mut self, e: &EvalMetrics, _state: &TrainState<T, Mlp<T>>) -> ControlFlow<()> {
        // The rows so far reach the disk before the checkpoint that follows them.
        if self.flush_pending(Some(e)).is_err() || self.writer.flush().is_err() {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

/// The checkpoint and the best model, both written atomically at every evaluation.
pub struct Checkpoints {
    folder: RunFolder,
    /// The data's entropy, where known.
    entropy: Option<f64>,
    args: TrainArgs,
    eval_solver: EvalSolver,
    /// The last evaluation, in the user's units.
    pub last_eval: Option<EvalMetrics>,
    /// Where to print a failure (the progress bar, if any).
    pub bar: Option<ProgressBar>,
}

impl Checkpoints {
    /// Checkpoints of the run `args` in `out`.
    pub fn new(folder: RunFolder, args: &TrainArgs, eval_solver: EvalSolver, entropy: Option<f64>) -> Self {
        Checkpoints {
            folder,
            entropy,
            args: args.clone(),
            eval_solver,
            last_eval: None,
            bar: None,
        }
    }

    /// The model file of `model` after `iter` iterations, with its test NLL if known;
    /// `entropy` turns that into a KL gap.
    fn model_file<T: Real>(
        &self,
        model: &Cnf<T, Mlp<T>>,
        iter: usize,
        test_nll: Option<f64>,
        entropy: Option<f64>,
    ) -> ModelFile {
        let training = serde_json::json!({
            "data": self.args.data,
            "iterations": iter,
            "seed": self.args.seed,
            "test_nll": test_nll,
            "kl_gap": test_nll.zip(entropy).map(|(nll, h)| nll - h),
            "args": self.args,
            "cnflow_version": env!("CARGO_PKG_VERSION"),
        });
        ModelFile::new(model, self.eval_solver.clone(), training)
    }

    /// Writes checkpoint.json and model.json (the best model so far, else the current
    /// one); `eval` is the last evaluation, in the user's units.
    pub fn save<T: Real>(&mut self, state: &TrainState<T, Mlp<T>>, eval: Option<&EvalMetrics>) -> Result<()> {
        // The data's entropy turns a test NLL into a KL gap (also when no evaluation ran
        // in this process, as in a resume with nothing left to do).
        let entropy = self.entropy;
        let best = state
            .best
            .as_ref()
            .map(|(m, nll, it)| (self.model_file(m, *it, Some(*nll), entropy), *nll, *it));
        let ck = Checkpoint {
            format: CHECKPOINT_FORMAT.into(),
            version: CHECKPOINT_VERSION,
            args: self.args.clone(),
            iter: state.iter,
            elapsed: state.elapsed,
            model: self.model_file(&state.model, state.iter, eval.map(|e| e.test_nll), entropy),
            optimizer: state.optimizer.clone(),
            best: best.clone(),
        };
        // The model first: a checkpoint always has its model beside it.
        // The model users evaluate is the best one seen on the test set.
        let model = match &best {
            Some((m, _, _)) => m,
            None => &ck.model,
        };
        model.save(&self.folder.work.join("model.json"))?;
        ck.save(&self.folder.work.join("checkpoint.json"))?;
        self.folder.checkpoint_saved()?;
        Ok(())
    }

    /// The folder the run is in now (the user's, once it has a checkpoint).
    pub fn folder(&self) -> &Path {
        &self.folder.work
    }
}

impl<T: Real> Observer<T, Mlp<T>> for Checkpoints {
    fn evaluation(&mut self, e: &EvalMetrics, state: &TrainState<T, Mlp<T>>) -> ControlFlow<()> {
        let saved = self.save(state, Some(e)).is_ok();
        self.last_eval = Some(e.clone());
        if !saved {
            say(self.bar.as_ref(), "could not write the checkpoint; stopping");
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

/// SIGINT / SIGTERM: the first stops the run after the current iteration (its
/// checkpoint is then written); a second ends the program at once ([`super::signals`]).
pub struct Interrupt;

impl Interrupt {
    /// Makes the first signal a graceful stop.
    pub fn install() -> Self {
        super::signals::set_graceful(true);
        Interrupt
    }
}

impl<T: Real> Observer<T, Mlp<T>> for Interrupt {
    fn iteration(&mut self, _m: &IterMetrics, _state: &TrainState<T, Mlp<T>>) -> ControlFlow<()> {
        if super::signals::received().is_some() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}
