//! `cnflow train`: fit a CNF, writing a run folder with the model, a checkpoint, the
//! metrics of every iteration and pictures.
//!
//! Nothing is lost on failure or interrupt: the checkpoint and the best model are
//! written (atomically) at every evaluation, Ctrl-C stops after the current iteration
//! and saves a checkpoint that `--resume` continues from, and a NaN or a solver failure
//! stops the run with the last good model kept and the reason said.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cnflow::cnf::{Block, Cnf, Coupling, FlowMatching, GradMethod, LossConfig, Trace, TAPE_BUDGET};
use cnflow::data::{train_test_split, Dataset, Standardizer};
use cnflow::model_file::EvalSolver;

use super::observers::{Checkpoints, EntropyCheck, Interrupt, Metrics, Progress};
use super::run_folder::RunFolder;
use cnflow::nn::{LayerKind, Mlp, MlpConfig};
use cnflow::ode::{Method, SolverConfig};
use cnflow::optim::{LrSchedule, OptimizerConfig};
use cnflow::train::{test_set_rng, train, Objective, StopReason, TrainConfig, TrainState};
use cnflow::Real;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::args::{GradArg, LayerArg, LrScheduleArg, ObjectiveArg, PrecisionArg, SolverArg, TraceArg, TrainArgs};
use super::common::{to_flat, DataSource};

/// Iterations of `cnflow train` without --iters.
const DEFAULT_ITERS: usize = 2000;

/// Evaluation solver written into every model file: dopri5, or the implicit method
/// the model is trained with.
fn eval_solver(args: &TrainArgs) -> EvalSolver {
    EvalSolver {
        method: Method::Dopri5,
        rtol: 1e-6,
        atol: 1e-6,
        implicit: args.solver.implicit(),
    }
}

/// Everything needed to continue a run.
type Checkpoint = cnflow::model_file::Checkpoint<TrainArgs>;

/// The optimizer the flags ask for.
fn optimizer_config(args: &TrainArgs) -> OptimizerConfig {
    args.optimizer.config(args.lr, args.weight_decay, args.momentum)
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
        if !checkpoint_path.exists() {
            bail!(
                "--resume: {} holds no checkpoint.json; start without --resume",
                out.display()
            );
        }
        // Reads versions 1 and 2 (a version-1 best NLL is moved to the user's units).
        let ck = Checkpoint::load(&checkpoint_path)?;
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
        if let (Some(n), Some(old), Some(new)) = (ck.args.then_mle, ck.args.iters, resumed.iters) {
            // The likelihood starts at the same iteration as before: a longer run
            // lengthens its fine-tuning instead of going back to flow matching.
            let mle_from = old.saturating_sub(n) + 1;
            resumed.then_mle = (new >= mle_from).then(|| new - mle_from + 1);
            if resumed.then_mle != ck.args.then_mle {
                match resumed.then_mle {
                    Some(m) => {
                        eprintln!("resuming with --then-mle {m}: the likelihood still starts at iteration {mle_from}")
                    }
                    None => eprintln!("note: the run now ends before its likelihood iterations (from {mle_from} on)"),
                }
            }
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
    }
    if !args.resume {
        apply_defaults(&mut args, explicit)?;
    }
    args.iters = Some(args.iters.unwrap_or(DEFAULT_ITERS));
    if let Some(n) = args.threads {
        // Threads only schedule the parts: the result is the same for any count.
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .with_context(|| format!("starting {n} threads"))?;
    }
    let folder = RunFolder::prepare(&out, args.resume, args.force)?;
    match args.precision {
        PrecisionArg::F32 => run_typed::<f32>(&args, &out, folder, checkpoint),
        PrecisionArg::F64 => run_typed::<f64>(&args, &out, folder, checkpoint),
    }
}

/// Training data (in the user's units): a sampler of batches, a fixed test set, the
/// entropy if known, and for a file the standardisation the model starts with.
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
                let (train, test) = train_test_split(points.view(), args.test_size, &mut test_set_rng(args.seed));
                // The model's affine block, fitted on the training points.
                let standardizer = Standardizer::fit(train.view())?;
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

    /// A batch in the user's units, f64 (the model's affine block standardises it).
    fn batch(&self, n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
        match (&self.builtin, &self.train) {
            (Some(d), _) => d.sample(n, rng).iter().copied().collect(),
            (None, Some(train)) => {
                let n_rows = train.len() / self.dim;
                let mut out = Vec::with_capacity(n * self.dim);
                for _ in 0..n {
                    let i = rng.random_range(0..n_rows);
                    out.extend_from_slice(&train[i * self.dim..(i + 1) * self.dim]);
                }
                out
            }
            (None, None) => Vec::new(),
        }
    }

    /// The data's entropy, where known (built-in datasets).
    fn entropy(&self) -> Option<f64> {
        self.builtin.map(|d| d.entropy())
    }
}

/// The training objective the flags ask for.
fn objective(args: &TrainArgs) -> Result<Objective> {
    let coupling = match args.objective {
        ObjectiveArg::Mle => {
            if args.then_mle.is_some() {
                bail!("--then-mle follows a flow-matching objective; give --objective cfm or ot-cfm");
            }
            return Ok(Objective::Mle);
        }
        ObjectiveArg::Cfm => Coupling::Independent,
        ObjectiveArg::OtCfm => Coupling::ExactOt,
    };
    if args.blocks != 1 {
        let name = clap::ValueEnum::to_possible_value(&args.objective).map(|v| v.get_name().to_string());
        bail!(
            "--objective {} trains one block; give --blocks 1",
            name.unwrap_or_default()
        );
    }
    let iters = args.iters.unwrap_or(DEFAULT_ITERS);
    if let Some(n) = args.then_mle {
        if n > iters {
            bail!("--then-mle {n} is more than --iters {iters}: give a larger --iters or a smaller --then-mle");
        }
    }
    Ok(Objective::FlowMatching {
        config: FlowMatching::new(coupling),
        mle_from: args.then_mle.map(|n| iters - n + 1),
    })
}

/// Refuses a configuration whose buffers cannot fit in the memory available, before
/// any is allocated; says what the exact trace costs in high dimension.
fn guard_memory<T: Real>(
    args: &TrainArgs,
    config: &TrainConfig,
    problem: &Problem,
    checkpoint: Option<&Checkpoint>,
) -> Result<()> {
    let arch = match checkpoint {
        Some(ck) => ck.model.architecture.clone(),
        None => mlp_config(args, problem.dim)?,
    };
    let n_tangents = config.loss.trace.n_tangents(problem.dim);
    let backprop_tape = matches!(config.loss.grad, GradMethod::Backprop)
        && matches!(config.loss.checkpointing, cnflow::sensitivity::Checkpointing::All);
    let tape = if backprop_tape { config.loss.tape_budget } else { 0 };
    let need = super::memory::train_bytes::<T>(&arch, args.blocks, config.batch, config.n_parts, n_tangents, tape);
    let exact_high = matches!(config.loss.trace, Trace::Exact) && problem.dim > 16;
    if exact_high {
        eprintln!(
            "note: the exact trace carries {} tangents per point in {} dimensions (training needs about {}); \
             --trace hutchinson carries 1",
            n_tangents,
            problem.dim,
            super::memory::human(need)
        );
    }
    let mut lower = "lower --batch or --hidden".to_string();
    if exact_high {
        lower.push_str(", or use --trace hutchinson");
    }
    if backprop_tape {
        lower.push_str(", or use --checkpoints steps");
    }
    super::memory::check(
        need,
        &format!(
            "training a {} field ({} parameters per block) on batches of {} with {} tangents per point",
            arch.describe(),
            arch.n_params(),
            config.batch,
            n_tangents
        ),
        &lower,
    )
}

/// Steps of fixed-step methods when --steps is not given.
const DEFAULT_STEPS: usize = 4;

/// Fills in what depends on other flags: FFJORD's settings under `--reference` (for the
/// flags not given explicitly), a built-in dataset's measured recipe, and the step count
/// of fixed-step methods.
fn apply_defaults(args: &mut TrainArgs, explicit: &[String]) -> Result<()> {
    let given = |id: &str| explicit.iter().any(|e| e == id);
    if let Some(recipe) = super::recipes::recipe(&args.data).filter(|_| !args.reference) {
        // Flow matching trains one block: with more blocks asked for, the likelihood's
        // recipe.
        let typed = match given("objective") {
            true => Some(args.objective),
            false if args.blocks != 1 => Some(ObjectiveArg::Mle),
            false => None,
        };
        let set = recipe.apply(typed, args, given)?;
        if !set.is_empty() {
            eprintln!(
                "{}: its measured recipe sets {} (BENCHMARKS.md; flags you give win)",
                recipe.dataset,
                set.join(" ")
            );
        }
    }
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
    if args.solver.implicit().is_some() && given("grad") && !matches!(args.grad, GradArg::Backprop) {
        bail!(
            "--solver {} takes its gradient by backprop (the exact discrete adjoint of its steps); \
             drop --grad, or choose an explicit solver for the continuous adjoint",
            args.solver.implicit().map_or("", |m| m.name())
        );
    }
    if args.steps.is_none() && !args.solver.is_adaptive() {
        args.steps = Some(DEFAULT_STEPS);
    }
    Ok(())
}

fn solver_config(args: &TrainArgs) -> Result<SolverConfig> {
    args.solver.config(args.steps, args.rtol, args.atol)
}

fn mlp_config(args: &TrainArgs, dim: usize) -> Result<MlpConfig> {
    if args.hidden.trim().is_empty() {
        bail!("--hidden is empty; give the hidden widths, e.g. --hidden 64-64-64");
    }
    let hidden = MlpConfig::parse_hidden(&args.hidden).context("--hidden")?;
    let layer = match args.layer {
        LayerArg::Concatsquash => LayerKind::ConcatSquash,
        LayerArg::Concat => LayerKind::Concat,
        LayerArg::Ignore => LayerKind::Ignore,
    };
    Ok(MlpConfig::new(dim, &hidden, layer, args.activation.activation())?)
}

fn run_typed<T: Real>(args: &TrainArgs, out: &Path, folder: RunFolder, checkpoint: Option<Checkpoint>) -> Result<()> {
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
        eval_solver: {
            let e = eval_solver(args);
            e.config(e.rtol, e.atol)
        },
        eval_trace: Trace::Exact,
        eval_every: args.eval_every,
        seed: args.seed,
        n_parts: args.parts,
        eval_at_train_tolerance: true,
        objective: objective(args)?,
    };
    guard_memory::<T>(args, &config, &problem, checkpoint.as_ref())?;
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
            let model = Cnf::new(blocks)?;
            let model = match &problem.standardizer {
                Some(s) => model.with_standardizer(s.clone())?,
                None => model,
            };
            TrainState::new(model, optimizer)
        }
    };
    let started_at = state.iter;

    let metrics_path = folder.work.join("metrics.csv");
    let mut metrics = Metrics::open(&metrics_path, state.iter)?;
    let mut interrupt = Interrupt::install();
    let mut progress = Progress::new(config.n_iters, state.iter);
    let mut checkpoints = Checkpoints::new(folder, args, eval_solver(args), problem.entropy());
    checkpoints.bar = progress.bar.clone();
    let mut entropy_check = EntropyCheck::new(problem.entropy());
    entropy_check.bar = progress.bar.clone();
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
        |n, rng| problem.batch(n, rng),
        &problem.test,
        problem.entropy(),
        &mut [
            &mut progress,
            &mut entropy_check,
            &mut metrics,
            &mut checkpoints,
            &mut interrupt,
        ],
    );
    // Peak memory of training (and its test evaluations), before the pictures.
    let peak_rss = super::common::peak_rss_kb();
    // Save first: a failure to finish metrics.csv must not cost the checkpoint.
    let last_eval = checkpoints.last_eval.clone();
    let saved = checkpoints.save(&state, last_eval.as_ref());
    let finished = metrics.finish();
    progress.finish();
    saved?;
    finished?;
    // The run's folder: the one the user named, once the run has a checkpoint.
    let dir = checkpoints.folder().to_path_buf();
    let model_path = dir.join("model.json");
    let metrics_path = dir.join("metrics.csv");
    match &reason {
        StopReason::Finished => {}
        StopReason::Stopped => {
            eprintln!(
                "stopped at iteration {} by {}; continue with: cnflow train --out {} --resume",
                state.iter,
                super::signals::received().map_or("a request", super::signals::name),
                out.display()
            )
        }
        other => eprintln!("training stopped: {other}"),
    }
    if let Some((_, nll, it)) = &state.best {
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
        dir.join("checkpoint.json").display(),
        metrics_path.display()
    );
    if problem.dim == 2 && state.iter > 0 && super::signals::received().is_none() {
        match draw_run_pictures(&dir, &model_path, &metrics_path, &problem, args.seed) {
            Ok(files) => eprintln!("pictures: {files}"),
            Err(e) => eprintln!("could not draw the pictures: {}", super::common::one_line(&e)),
        }
    }
    if let Some(failure) = &checkpoints.failure {
        bail!("training stopped: {failure}");
    }
    if let Some(sig) = super::signals::received() {
        // An unfinished model must not pass for a finished one (`train && next-step`).
        return Err(super::Interrupted(super::signals::exit_code(sig)).into());
    }
    match reason {
        StopReason::Finished | StopReason::Stopped => Ok(()),
        other => bail!("training stopped: {other}"),
    }
}

/// DIR/panels.png (data, model density, samples), DIR/flow.png and DIR/metrics.png.
fn draw_run_pictures(out: &Path, model: &Path, metrics: &Path, problem: &Problem, seed: u64) -> Result<String> {
    let loaded = super::common::load_model(model)?;
    let data: Vec<[f64; 2]> = problem.test.chunks_exact(2).map(|c| [c[0], c[1]]).collect();
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
