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
    "iter,loss,nll,kinetic,jacobian,nfe_forward,nfe_backward,seconds,elapsed,t_end,test_nll,kl_gap,seconds_forward,seconds_backward,test_nll_train_solver";

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
    /// When the bar's message was last set (it is set at most every
    /// [`MESSAGE_EVERY`], not at every iteration of a few microseconds).
    message_at: Option<std::time::Instant>,
}

/// The least time between two updates of the bar's message.
const MESSAGE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

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
            message_at: None,
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
        let summary = || {
            let per_eval = |s: f64, n: usize| 1e3 * s / n.max(1) as f64;
            format!(
                "loss {:.4}  NFE {}/{}  {:.1} ms/iter ({:.2}/{:.2} ms per fwd/bwd eval)",
                m.loss,
                m.n_evals_forward,
                m.n_evals_backward,
                1e3 * m.seconds,
                per_eval(m.seconds_forward, m.n_evals_forward),
                per_eval(m.seconds_backward, m.n_evals_backward),
            )
        };
        match &self.bar {
            Some(bar) => {
                bar.set_position(m.iter as u64);
                let now = std::time::Instant::now();
                if self.message_at.is_none_or(|at| now.duration_since(at) >= MESSAGE_EVERY) {
                    bar.set_message(summary());
                    self.message_at = Some(now);
                }
            }
            None if m.iter.is_multiple_of(self.log_every) => {
                eprintln!("iter {:6}  {}  ({:.1} s)", m.iter, summary(), m.elapsed)
            }
            None => {}
        }
        ControlFlow::Continue(())
    }

    fn evaluation(&mut self, e: &EvalMetrics, state: &TrainState<T, Mlp<T>>) -> ControlFlow<()> {
        let gap = e.kl_gap.map(|g| format!("  KL gap {g:.4}")).unwrap_or_default();
        let at_train = e
            .test_nll_train_solver
            .map(|v| format!(" ({v:.4} at the training tolerance)"))
            .unwrap_or_default();
        let line = format!(
            "eval {:6}  test NLL {:.4}{at_train}{gap}{}  ({:.1} s)",
            e.iter,
            e.test_nll,
            if e.is_best { "  (best)" } else { "" },
            state.elapsed
        );
        say(self.bar.as_ref(), &line);
        ControlFlow::Continue(())
    }
}

/// Iterations over which the training NLL is averaged before it is compared with
/// the data's entropy.
const ENTROPY_WINDOW: usize = 100;

/// The training NLL against the data's entropy: no density has a lower expected NLL,
/// so a mean over the last [`ENTROPY_WINDOW`] batches clearly below it (by more than
/// three standard errors) means the batches are not i.i.d. or the model exploits the
/// training solver's tolerance. Said once, with what to do.
pub struct EntropyCheck {
    entropy: Option<f64>,
    recent: std::collections::VecDeque<f64>,
    said: bool,
    /// Where to print (the progress bar, if any).
    pub bar: Option<ProgressBar>,
}

impl EntropyCheck {
    /// A check against `entropy` (none: nothing to check).
    pub fn new(entropy: Option<f64>) -> Self {
        EntropyCheck {
            entropy,
            recent: std::collections::VecDeque::with_capacity(ENTROPY_WINDOW),
            said: false,
            bar: None,
        }
    }

    /// The warning for training NLLs `recent` against `entropy`, if they are clearly
    /// below it.
    pub fn verdict(recent: &[f64], entropy: f64) -> Option<String> {
        let n = recent.len() as f64;
        let mean = recent.iter().sum::<f64>() / n;
        let var = recent.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        let se = (var / n).sqrt();
        (mean + 3.0 * se < entropy).then(|| {
            format!(
                "warning: the training NLL ({mean:.3} ± {se:.3}, mean of the last {} batches) is below the data's \
                 entropy {entropy:.3}, which no density can reach: the batches are not i.i.d. (a grid or a small \
                 file sampled with replacement), or the model exploits the training tolerance (compare the test NLL \
                 at the training tolerance with the accurate one; lower --rtol/--atol)",
                recent.len()
            )
        })
    }
}

impl<T: Real> Observer<T, Mlp<T>> for EntropyCheck {
    fn iteration(&mut self, m: &IterMetrics, _state: &TrainState<T, Mlp<T>>) -> ControlFlow<()> {
        let Some(entropy) = self.entropy else {
            return ControlFlow::Continue(());
        };
        if self.said {
            return ControlFlow::Continue(());
        }
        if self.recent.len() == ENTROPY_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(m.nll);
        if self.recent.len() == ENTROPY_WINDOW {
            let recent: Vec<f64> = self.recent.iter().copied().collect();
            if let Some(line) = Self::verdict(&recent, entropy) {
                say(self.bar.as_ref(), &line);
                self.said = true;
            }
        }
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
        // The kept rows replace the file atomically (a kill now cannot cost the rows of
        // the iterations the checkpoint has), then new rows are appended.
        cnflow::data::write_atomic(path, |w| -> Result<()> {
            for line in &kept {
                writeln!(w, "{line}")?;
            }
            Ok(())
        })?;
        let file = fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let writer = BufWriter::new(file);
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
        "{},{},{},{},{},{},{},{:.6},{:.3},{},{},{},{:.6},{:.6},{}",
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
        eval.and_then(|e| e.test_nll_train_solver)
            .map_or(String::new(), |v| v.to_string()),
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
    /// Why a checkpoint could not be written, if one could not.
    pub failure: Option<String>,
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
            failure: None,
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
        let saved = self.save(state, Some(e));
        self.last_eval = Some(e.clone());
        if let Err(error) = saved {
            let message = format!("could not write the checkpoint: {}", super::common::one_line(&error));
            say(self.bar.as_ref(), &format!("{message}; stopping"));
            self.failure = Some(message);
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

#[cfg(test)]
mod tests {
    use super::EntropyCheck;

    #[test]
    fn a_training_nll_clearly_below_the_entropy_is_called_out() {
        // Noisy batch NLLs around a mean: clearly below 2.62, just below, above.
        let around = |mean: f64| -> Vec<f64> { (0..100).map(|i| mean + 0.05 * ((i * 37 % 11) as f64 - 5.0)).collect() };
        assert!(EntropyCheck::verdict(&around(2.39), 2.621).is_some());
        assert!(EntropyCheck::verdict(&around(2.615), 2.621).is_none());
        assert!(EntropyCheck::verdict(&around(2.80), 2.621).is_none());
        let line = EntropyCheck::verdict(&around(2.39), 2.621).unwrap();
        assert!(
            line.contains("± 0.016") && line.contains("entropy 2.621") && line.contains("i.i.d."),
            "{line}"
        );
    }
}
