//! `cnflow train`: fit a CNF, writing a run folder with the model, a checkpoint, the
//! metrics of every iteration and pictures.
//!
//! Nothing is lost on failure or interrupt: the checkpoint and the best model are
//! written (atomically) at every evaluation, Ctrl-C stops after the current iteration
//! and saves a checkpoint that `--resume` continues from, and a NaN or a solver failure
//! stops the run with the last good model kept and the reason said.

use std::fs::{self, File};
use std::io::{BufWriter, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cnflow::cnf::{Block, Cnf, GradMethod, LossConfig, Trace, TAPE_BUDGET};
use cnflow::data::{Dataset, Standardizer};
use cnflow::model_file::{EvalSolver, ModelFile};
use cnflow::nn::{Activation, LayerKind, Mlp, MlpConfig};
use cnflow::ode::{Method, SolverConfig};
use cnflow::optim::{AdamConfig, LrSchedule, OptimizerConfig, OptimizerState, RmsPropConfig, SgdConfig};
use cnflow::train::{test_set_rng, train, EvalMetrics, IterMetrics, Observer, StopReason, TrainConfig, TrainState};
use cnflow::Real;
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::args::{
    ActivationArg, GradArg, LayerArg, LrScheduleArg, OptimizerArg, PrecisionArg, SolverArg, TraceArg, TrainArgs,
};
use super::common::{to_flat, DataSource};

/// Iterations of `cnflow train` without --iters.
const DEFAULT_ITERS: usize = 2000;
const CHECKPOINT_FORMAT: &str = "cnflow-checkpoint";
const METRICS_HEADER: &str =
    "iter,loss,nll,kinetic,jacobian,nfe_forward,nfe_backward,seconds,elapsed,t_end,test_nll,kl_gap,seconds_forward,seconds_backward";

/// Evaluation solver written into every model file.
fn eval_solver() -> EvalSolver {
    EvalSolver {
        method: Method::Dopri5,
        rtol: 1e-6,
        atol: 1e-6,
    }
}

/// Everything needed to continue a run.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    format: String,
    version: u32,
    args: TrainArgs,
    iter: usize,
    elapsed: f64,
    model: ModelFile,
    /// The optimizer's state (named `adam` and untagged before there were others).
    #[serde(alias = "adam", deserialize_with = "optimizer_state")]
    optimizer: OptimizerState,
    best: Option<(ModelFile, f64, usize)>,
}

fn optimizer_state<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<OptimizerState, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    OptimizerState::from_json_value(v).map_err(serde::de::Error::custom)
}

/// The optimizer the flags ask for.
fn optimizer_config(args: &TrainArgs) -> OptimizerConfig {
    let adam = AdamConfig::new(args.lr, args.weight_decay);
    match args.optimizer {
        OptimizerArg::Adam => OptimizerConfig::Adam(adam),
        OptimizerArg::Adamw => OptimizerConfig::AdamW(adam),
        OptimizerArg::Rmsprop => OptimizerConfig::RmsProp(RmsPropConfig {
            momentum: args.momentum.unwrap_or(0.0),
            weight_decay: args.weight_decay,
            ..RmsPropConfig::new(args.lr)
        }),
        OptimizerArg::Sgd => OptimizerConfig::Sgd(SgdConfig {
            weight_decay: args.weight_decay,
            ..SgdConfig::new(args.lr, args.momentum.unwrap_or(0.9))
        }),
    }
}

/// Flags that may change when a run is resumed; every other flag must match the run's.
const RESUMABLE: [&str; 10] = [
    "checkpoints",
    "iters",
    "lr",
    "weight_decay",
    "threads",
    "rtol",
    "atol",
    "eval_every",
    "out",
    "resume",
];

/// The run folder's default name: the dataset's, the file's stem, or "stdin".
fn run_name(spec: &str) -> String {
    match spec.parse::<Dataset>() {
        Ok(d) => d.name().to_string(),
        Err(_) if spec == "-" => "stdin".to_string(),
        Err(_) => Path::new(spec)
            .file_stem()
            .map_or("data".to_string(), |s| s.to_string_lossy().into_owned()),
    }
}

/// `explicit` names the flags given on the command line (clap ids, i.e. field names).
pub fn run(mut args: TrainArgs, explicit: &[String]) -> Result<()> {
    let source_name = run_name(&args.data);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&source_name));
    let checkpoint_path = out.join("checkpoint.json");
    let mut checkpoint = None;
    if args.resume {
        let text = fs::read_to_string(&checkpoint_path).with_context(|| {
            format!(
                "--resume: cannot read {}; start without --resume",
                checkpoint_path.display()
            )
        })?;
        let ck: Checkpoint = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a valid cnflow checkpoint", checkpoint_path.display()))?;
        if ck.format != CHECKPOINT_FORMAT || ck.version != 1 {
            bail!("{}: not a cnflow checkpoint of version 1", checkpoint_path.display());
        }
        let given = serde_json::to_value(&args)?;
        let saved = serde_json::to_value(&ck.args)?;
        let mut resumed = ck.args.clone();
        for id in explicit {
            let (now, before) = (&given[id.as_str()], &saved[id.as_str()]);
            if RESUMABLE.contains(&id.as_str()) {
                if now != before && id != "out" && id != "resume" && !before.is_null() {
                    eprintln!("resuming with --{} {now} (the run had {before})", id.replace('_', "-"));
                }
            } else if now != before {
                bail!(
                    "--{} cannot change when resuming (the run in {} has {before}); only --iters, --lr, --weight-decay, \
                     --rtol, --atol, --eval-every and --threads can. Start a new run with another --out to change it",
                    id.replace('_', "-"),
                    out.display()
                );
            }
        }
        resumed.iters = args.iters.or(ck.args.iters);
        if ck.args.lr_schedule == LrScheduleArg::Cosine && resumed.iters != ck.args.iters {
            eprintln!(
                "note: the cosine learning-rate schedule spans --iters, so changing it from {} to {} moves the \
                 rate of the remaining iterations (a finished run restarts from a higher rate)",
                ck.args.iters.unwrap_or(0),
                resumed.iters.unwrap_or(0)
            );
        }
        resumed.lr = args.lr;
        resumed.weight_decay = args.weight_decay;
        resumed.rtol = args.rtol;
        resumed.atol = args.atol;
        resumed.eval_every = args.eval_every;
        for (id, keep) in [
            ("lr", ck.args.lr),
            ("weight_decay", ck.args.weight_decay),
            ("rtol", ck.args.rtol),
            ("atol", ck.args.atol),
        ] {
            if !explicit.iter().any(|e| e == id) {
                match id {
                    "lr" => resumed.lr = keep,
                    "weight_decay" => resumed.weight_decay = keep,
                    "rtol" => resumed.rtol = keep,
                    _ => resumed.atol = keep,
                }
            }
        }
        if !explicit.iter().any(|e| e == "eval_every") {
            resumed.eval_every = ck.args.eval_every;
        }
        if resumed.parts == 0 {
            // A checkpoint from before --parts: --threads was the number of parts.
            resumed.parts = ck.args.threads.unwrap_or(1);
        }
        resumed.threads = args.threads;
        // Every policy gives the same gradient: it may change on resume.
        resumed.checkpoints = args.checkpoints;
        args = TrainArgs {
            out: Some(out.clone()),
            resume: true,
            ..resumed
        };
        checkpoint = Some(ck);
    } else if out.join("model.json").exists() && !args.force {
        bail!(
            "{} already holds a run; continue it with --resume, overwrite it with --force, or pick another --out",
            out.display()
        );
    }
    if !args.resume {
        apply_defaults(&mut args, explicit);
    }
    args.iters = Some(args.iters.unwrap_or(DEFAULT_ITERS));
    if let Some(n) = args.threads {
        // Threads only schedule the parts: the result is the same for any count.
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .with_context(|| format!("starting {n} threads"))?;
    }
    fs::create_dir_all(&out).with_context(|| format!("creating the run folder {}", out.display()))?;
    match args.precision {
        PrecisionArg::F32 => run_typed::<f32>(&args, &out, checkpoint),
        PrecisionArg::F64 => run_typed::<f64>(&args, &out, checkpoint),
    }
}

/// Training data: a sampler of batches, a fixed test set, the entropy if known.
struct Problem {
    dim: usize,
    standardizer: Option<Standardizer>,
    train: Option<Vec<f64>>,
    builtin: Option<Dataset>,
    test: Vec<f64>,
}

impl Problem {
    fn new(args: &TrainArgs) -> Result<Self> {
        match DataSource::parse(&args.data, None)? {
            DataSource::Builtin(d) => {
                let test = d.sample(args.test_size, &mut test_set_rng(args.seed));
                Ok(Problem {
                    dim: 2,
                    standardizer: None,
                    train: None,
                    builtin: Some(d),
                    test: to_flat(&test),
                })
            }
            DataSource::File { path, points } => {
                let (n, d) = points.dim();
                if n < 10 {
                    bail!(
                        "{}: {n} points are too few to train on; give at least 10",
                        path.display()
                    );
                }
                // Hold out 10 % (at most --test-size) as the test set, by a seeded shuffle.
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut test_set_rng(args.seed));
                let n_test = (n / 10).clamp(1, args.test_size);
                let pick = |idx: &[usize]| points.select(ndarray::Axis(0), idx);
                let train = pick(&order[n_test..]);
                let test = pick(&order[..n_test]);
                let standardizer = Standardizer::fit(train.view())?;
                let train = standardizer.forward(train.view())?;
                let test = standardizer.forward(test.view())?;
                Ok(Problem {
                    dim: d,
                    standardizer: Some(standardizer),
                    train: Some(to_flat(&train)),
                    builtin: None,
                    test: to_flat(&test),
                })
            }
        }
    }

    fn batch<T: Real>(&self, n: usize, rng: &mut ChaCha8Rng) -> Vec<T> {
        match (&self.builtin, &self.train) {
            (Some(d), _) => d.sample(n, rng).iter().map(|&v| T::c(v)).collect(),
            (None, Some(train)) => {
                let n_rows = train.len() / self.dim;
                let mut out = Vec::with_capacity(n * self.dim);
                for _ in 0..n {
                    let i = rng.random_range(0..n_rows);
                    out.extend(train[i * self.dim..(i + 1) * self.dim].iter().map(|&v| T::c(v)));
                }
                out
            }
            (None, None) => Vec::new(),
        }
    }

    /// What turns a test NLL of the standardised data into one in the user's units.
    fn nll_offset(&self) -> f64 {
        self.standardizer.as_ref().map_or(0.0, |s| -s.log_det())
    }

    /// The data's entropy, where known (built-in datasets).
    fn entropy(&self) -> Option<f64> {
        self.builtin.map(|d| d.entropy())
    }
}

/// Steps of fixed-step methods when --steps is not given.
const DEFAULT_STEPS: usize = 4;

/// Fills in what depends on other flags: FFJORD's settings under `--reference` (for the
/// flags not given explicitly) and the step count of fixed-step methods.
fn apply_defaults(args: &mut TrainArgs, explicit: &[String]) {
    let given = |id: &str| explicit.iter().any(|e| e == id);
    if args.reference {
        if !given("solver") {
            args.solver = SolverArg::Dopri5;
        }
        if !given("steps") {
            args.steps = None;
        }
        if !given("rtol") {
            args.rtol = 1e-5;
        }
        if !given("atol") {
            args.atol = 1e-5;
        }
        if !given("grad") {
            args.grad = GradArg::Adjoint;
        }
        if !given("kinetic") {
            args.kinetic = 0.0;
        }
        if !given("jacobian") {
            args.jacobian = 0.0;
        }
        if !given("lr") {
            args.lr = 1e-3;
        }
        if !given("lr_schedule") {
            args.lr_schedule = LrScheduleArg::Constant;
        }
    }
    if args.steps.is_none() && !args.solver.method().tableau().is_adaptive() {
        args.steps = Some(DEFAULT_STEPS);
    }
}

fn solver_config(args: &TrainArgs) -> Result<SolverConfig> {
    let method = args.solver.method();
    let config = match args.steps {
        Some(n) => SolverConfig::fixed_steps(method, n),
        None if !method.tableau().is_adaptive() => {
            bail!("--solver {method} takes fixed steps: give --steps N (e.g. --steps 8)")
        }
        None => SolverConfig::adaptive(method, args.rtol, args.atol),
    };
    config.validate()?;
    Ok(config)
}

fn mlp_config(args: &TrainArgs, dim: usize) -> Result<MlpConfig> {
    let hidden = MlpConfig::parse_hidden(&args.hidden).context("--hidden")?;
    let layer = match args.layer {
        LayerArg::Concatsquash => LayerKind::ConcatSquash,
        LayerArg::Concat => LayerKind::Concat,
        LayerArg::Ignore => LayerKind::Ignore,
    };
    let activation = match args.activation {
        ActivationArg::Tanh => Activation::Tanh,
        ActivationArg::Softplus => Activation::Softplus,
        ActivationArg::Elu => Activation::Elu,
        ActivationArg::Swish => Activation::Swish,
    };
    Ok(MlpConfig::new(dim, &hidden, layer, activation)?)
}

fn run_typed<T: Real>(args: &TrainArgs, out: &Path, checkpoint: Option<Checkpoint>) -> Result<()> {
    let problem = Problem::new(args)?;
    let solver = solver_config(args)?;
    let optimizer = optimizer_config(args);
    optimizer.validate()?;
    let config = TrainConfig {
        n_iters: args.iters.unwrap_or(DEFAULT_ITERS),
        batch: args.batch,
        optimizer,
        lr_schedule: match args.lr_schedule {
            LrScheduleArg::Constant => LrSchedule::Constant,
            LrScheduleArg::Cosine => LrSchedule::Cosine { final_frac: 0.05 },
        },
        loss: LossConfig {
            solver,
            trace: match args.trace {
                TraceArg::Exact => Trace::Exact,
                TraceArg::Hutchinson => Trace::Rademacher(1),
            },
            kinetic: args.kinetic,
            jacobian: args.jacobian,
            grad: match args.grad {
                GradArg::Adjoint => GradMethod::Adjoint { seminorm: true },
                GradArg::AdjointFullNorm => GradMethod::Adjoint { seminorm: false },
                GradArg::Backprop => GradMethod::Backprop,
            },
            tape_budget: TAPE_BUDGET,
            checkpointing: args.checkpoints.policy(),
        },
        eval_solver: SolverConfig::adaptive(eval_solver().method, eval_solver().rtol, eval_solver().atol),
        eval_trace: Trace::Exact,
        eval_every: args.eval_every,
        seed: args.seed,
        n_parts: args.parts,
    };
    let mut state = match &checkpoint {
        Some(ck) => {
            let model = ck.model.to_model::<T>(&out.join("checkpoint.json"))?;
            let best = match &ck.best {
                Some((m, nll, it)) => Some((m.to_model::<T>(&out.join("checkpoint.json"))?, *nll, *it)),
                None => None,
            };
            TrainState {
                model,
                optimizer: {
                    let mut o = ck.optimizer.clone();
                    o.set_lr_and_decay(args.lr, args.weight_decay);
                    o
                },
                iter: ck.iter,
                elapsed: ck.elapsed,
                best,
            }
        }
        None => {
            let arch = mlp_config(args, problem.dim)?;
            let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
            let blocks = (0..args.blocks)
                .map(|_| Block {
                    field: Mlp::<T>::new(arch.clone(), &mut rng, false),
                    t_end: T::c(0.5),
                    learn_t: true,
                })
                .collect();
            TrainState::new(Cnf::new(blocks)?, optimizer)
        }
    };
    let test: Vec<T> = problem.test.iter().map(|&v| T::c(v)).collect();
    let started_at = state.iter;

    let metrics_path = out.join("metrics.csv");
    let metrics = MetricsCsv::open(&metrics_path, state.iter)?;
    let interrupted = install_interrupt_handler();
    let mut saver = Saver {
        out: out.to_path_buf(),
        args: args.clone(),
        standardizer: problem.standardizer.clone(),
        nll_offset: problem.nll_offset(),
    };
    let mut observer = RunObserver::new(
        args,
        metrics,
        saver.clone_ref(),
        Arc::clone(&interrupted),
        state.iter,
        problem.nll_offset(),
    );
    eprintln!(
        "training on {} ({} dims) for {} iterations{}; run folder {}",
        args.data,
        problem.dim,
        config.n_iters,
        if started_at > 0 {
            format!(", resuming at iteration {started_at}")
        } else {
            String::new()
        },
        out.display()
    );
    let reason = train(
        &mut state,
        &config,
        |n, rng| problem.batch::<T>(n, rng),
        &test,
        problem.entropy(),
        &mut [&mut observer],
    );
    // Peak memory of training (and its test evaluations), before the pictures.
    let peak_rss = super::common::peak_rss_kb();
    // Save first: a failure to finish metrics.csv must not cost the checkpoint.
    let saved = saver.save(&state, observer.last_eval.as_ref());
    let finished = observer.finish();
    saved?;
    finished?;
    let model_path = out.join("model.json");
    match &reason {
        StopReason::Finished => {}
        StopReason::Stopped => {
            eprintln!(
                "interrupted at iteration {}; continue with: cnflow train --out {} --resume",
                state.iter,
                out.display()
            )
        }
        other => eprintln!("training stopped: {other}"),
    }
    if let Some((_, nll, it)) = &state.best {
        let nll = nll + problem.nll_offset();
        let gap = problem
            .entropy()
            .map(|h| format!(", KL gap {:.4} nats", nll - h))
            .unwrap_or_default();
        let rss = peak_rss.map_or(String::new(), |kb| format!(", peak RSS {:.0} MB", kb as f64 / 1024.0));
        eprintln!(
            "best test NLL {nll:.4} nats at iteration {it}{gap} ({:.1} s of training{rss})",
            state.elapsed
        );
    }
    eprintln!(
        "wrote {}, {}, {}",
        model_path.display(),
        out.join("checkpoint.json").display(),
        metrics_path.display()
    );
    if problem.dim == 2 && state.iter > 0 {
        match draw_run_pictures(out, &model_path, &metrics_path, &problem, args.seed) {
            Ok(files) => eprintln!("pictures: {files}"),
            Err(e) => eprintln!("could not draw the pictures: {}", super::common::one_line(&e)),
        }
    }
    match reason {
        StopReason::Finished | StopReason::Stopped => Ok(()),
        other => bail!("training stopped: {other}"),
    }
}

/// DIR/panels.png (data, model density, samples), DIR/flow.png and DIR/metrics.png.
fn draw_run_pictures(out: &Path, model: &Path, metrics: &Path, problem: &Problem, seed: u64) -> Result<String> {
    let loaded = super::common::load_model(model)?;
    // The test set, in the user's units.
    let test = match &problem.standardizer {
        Some(s) => to_flat(&s.inverse(super::common::to_array(problem.test.clone(), 2)?.view())?),
        None => problem.test.clone(),
    };
    let data: Vec<[f64; 2]> = test.chunks_exact(2).map(|c| [c[0], c[1]]).collect();
    let panels = out.join("panels.png");
    let flow = out.join("flow.png");
    let curves = out.join("metrics.png");
    super::plot::draw_panels(&loaded, &data, problem.builtin.is_some(), &panels, seed)?;
    super::plot::draw_trajectories(&loaded, &flow, seed)?;
    super::plot::draw_metrics(metrics, &curves)?;
    Ok(format!(
        "{}, {}, {}",
        panels.display(),
        flow.display(),
        curves.display()
    ))
}

/// Writes the checkpoint and the best model (both atomically).
struct Saver {
    out: PathBuf,
    args: TrainArgs,
    standardizer: Option<Standardizer>,
    /// Added to the best model's (standardised) test NLL for the model file.
    nll_offset: f64,
}

impl Saver {
    fn clone_ref(&self) -> Saver {
        Saver {
            out: self.out.clone(),
            args: self.args.clone(),
            standardizer: self.standardizer.clone(),
            nll_offset: self.nll_offset,
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
        ModelFile::new(model, self.standardizer.clone(), eval_solver(), training)
    }

    fn save<T: Real>(&mut self, state: &TrainState<T, Mlp<T>>, eval: Option<&EvalMetrics>) -> Result<()> {
        // The entropy is what separates a KL gap from its test NLL.
        let entropy = eval.and_then(|e| e.kl_gap.map(|g| e.test_nll - g));
        let best = state.best.as_ref().map(|(m, nll, it)| {
            (
                self.model_file(m, *it, Some(*nll + self.nll_offset), entropy),
                *nll,
                *it,
            )
        });
        let ck = Checkpoint {
            format: CHECKPOINT_FORMAT.into(),
            version: 1,
            args: self.args.clone(),
            iter: state.iter,
            elapsed: state.elapsed,
            model: self.model_file(&state.model, state.iter, eval.map(|e| e.test_nll), entropy),
            optimizer: state.optimizer.clone(),
            best: best.clone(),
        };
        let path = self.out.join("checkpoint.json");
        let json = serde_json::to_vec(&ck)?;
        cnflow::data::write_atomic(&path, |w: &mut BufWriter<File>| {
            w.write_all(&json).map_err(|source| cnflow::data::DataError::Io {
                file: path.display().to_string(),
                action: "writing",
                source,
            })
        })?;
        // The model users evaluate is the best one seen on the test set.
        let model = match best {
            Some((m, _, _)) => m,
            None => ck.model,
        };
        model.save(&self.out.join("model.json"))?;
        Ok(())
    }
}

/// metrics.csv: one row per iteration; evaluation columns filled where one ran.
struct MetricsCsv {
    writer: BufWriter<File>,
    path: PathBuf,
}

impl MetricsCsv {
    /// Opens the file, keeping the rows of iterations up to `keep_until` (a resumed run).
    fn open(path: &Path, keep_until: usize) -> Result<Self> {
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
        Ok(MetricsCsv {
            writer,
            path: path.to_path_buf(),
        })
    }

    fn row(&mut self, m: &IterMetrics, eval: Option<&EvalMetrics>) -> std::io::Result<()> {
        let t_end: Vec<String> = m.t_end.iter().map(|t| format!("{t:.5}")).collect();
        writeln!(
            self.writer,
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
}

fn install_interrupt_handler() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let presses = Arc::new(AtomicUsize::new(0));
    let (f, p) = (Arc::clone(&flag), Arc::clone(&presses));
    // A second Ctrl-C ends the program at once; the last checkpoint stays on disk.
    let _ = ctrlc::set_handler(move || {
        if p.fetch_add(1, Ordering::SeqCst) > 0 {
            eprintln!("\nsecond interrupt: exiting without a new checkpoint");
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: stopping after this iteration and saving a checkpoint (Ctrl-C again to quit now)");
        f.store(true, Ordering::SeqCst);
    });
    flag
}

/// Progress, metrics, checkpoints and Ctrl-C, as one observer.
struct RunObserver {
    bar: Option<ProgressBar>,
    log_every: usize,
    metrics: MetricsCsv,
    pending: Option<IterMetrics>,
    saver: Saver,
    interrupted: Arc<AtomicBool>,
    last_eval: Option<EvalMetrics>,
    /// Added to test NLL to report it in the user's units (−log-det of the standardisation).
    nll_offset: f64,
}

impl RunObserver {
    fn new(
        args: &TrainArgs,
        metrics: MetricsCsv,
        saver: Saver,
        interrupted: Arc<AtomicBool>,
        start: usize,
        nll_offset: f64,
    ) -> Self {
        let n_iters = args.iters.unwrap_or(DEFAULT_ITERS);
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(n_iters as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_position(start as u64);
            bar
        });
        RunObserver {
            bar,
            log_every: (n_iters / 20).max(10),
            metrics,
            pending: None,
            saver,
            interrupted,
            last_eval: None,
            nll_offset,
        }
    }

    fn flush_pending(&mut self, eval: Option<&EvalMetrics>) -> Result<()> {
        if let Some(m) = self.pending.take() {
            self.metrics
                .row(&m, eval)
                .with_context(|| format!("writing {}", self.metrics.path.display()))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.flush_pending(None)?;
        self.metrics
            .writer
            .flush()
            .with_context(|| format!("writing {}", self.metrics.path.display()))?;
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        Ok(())
    }

    fn say(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

impl<T: Real> Observer<T, Mlp<T>> for RunObserver {
    fn iteration(&mut self, m: &IterMetrics, _state: &TrainState<T, Mlp<T>>) -> ControlFlow<()> {
        if self.flush_pending(None).is_err() {
            return ControlFlow::Break(());
        }
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
        self.pending = Some(m.clone());
        if self.interrupted.load(Ordering::SeqCst) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn evaluation(&mut self, e: &EvalMetrics, state: &TrainState<T, Mlp<T>>) -> ControlFlow<()> {
        // The loop scores standardised data; report NLL in the user's units.
        let e = &EvalMetrics {
            test_nll: e.test_nll + self.nll_offset,
            ..e.clone()
        };
        if self.flush_pending(Some(e)).is_err() {
            return ControlFlow::Break(());
        }
        let gap = e.kl_gap.map(|g| format!("  KL gap {g:.4}")).unwrap_or_default();
        self.say(format!(
            "eval {:6}  test NLL {:.4}{gap}{}  ({:.1} s)",
            e.iter,
            e.test_nll,
            if e.is_best { "  (best)" } else { "" },
            state.elapsed
        ));
        self.last_eval = Some(e.clone());
        let saved = self.metrics.writer.flush().is_ok() && self.saver.save(state, Some(e)).is_ok();
        if !saved {
            self.say("could not write the checkpoint; stopping".into());
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}
