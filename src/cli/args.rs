//! Command-line arguments (clap derive): the names and flags are part of the contract.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// cnflow: continuous normalizing flows — fit a density, evaluate it exactly, sample from it.
#[derive(Parser, Debug)]
#[command(name = "cnflow", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fit a CNF to a built-in dataset or your own points; writes a run folder.
    #[command(allow_negative_numbers = true)]
    Train(TrainArgs),
    /// Evaluate log p(x) for every input point (same order).
    #[command(allow_negative_numbers = true)]
    Density(DensityArgs),
    /// Draw samples from a model.
    #[command(allow_negative_numbers = true)]
    Sample(SampleArgs),
    /// Test NLL of a model on data; with a built-in dataset also its entropy and the KL gap.
    #[command(allow_negative_numbers = true)]
    Eval(EvalArgs),
    /// Draw pictures: data, model density and samples; the flow; training curves.
    Plot(PlotArgs),
    /// List the built-in datasets with their entropies, or write points of one.
    Datasets(DatasetsArgs),
    /// Fit a neural, mechanistic or hybrid ODE to a time series; writes a run folder.
    #[command(name = "fit-series", allow_negative_numbers = true)]
    FitSeries(FitSeriesArgs),
    /// Predict (extrapolate) a fitted series model at given times.
    #[command(allow_negative_numbers = true)]
    Predict(PredictArgs),
    /// Integrate a system given as equations (stiff or not); prints the solution as CSV.
    #[command(allow_negative_numbers = true)]
    Solve(SolveArgs),
}

/// ODE methods, as on the command line.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SolverArg {
    /// Dormand–Prince 5(4), adaptive.
    Dopri5,
    /// Tsitouras 5(4), adaptive.
    Tsit5,
    /// Bogacki–Shampine 3(2), adaptive.
    Bosh3,
    /// Classical Runge–Kutta 4, fixed steps.
    Rk4,
    /// Explicit midpoint, fixed steps.
    Midpoint,
    /// Heun, fixed steps.
    Heun,
    /// Forward Euler, fixed steps.
    Euler,
    /// KVAERNO5, ESDIRK 5(4), L-stable, implicit: for stiff flows (block-diagonal
    /// Newton, one block per point; gradient by its discrete adjoint).
    Kvaerno5,
    /// TR-BDF2, ESDIRK 2(3), L-stable, implicit (as kvaerno5, order 2).
    #[value(name = "tr-bdf2")]
    TrBdf2,
}

impl SolverArg {
    /// The implicit method, for kvaerno5 and tr-bdf2.
    pub fn implicit(self) -> Option<cnflow::stiff::StiffMethod> {
        use cnflow::stiff::StiffMethod;
        match self {
            SolverArg::Kvaerno5 => Some(StiffMethod::Kvaerno5),
            SolverArg::TrBdf2 => Some(StiffMethod::TrBdf2),
            _ => None,
        }
    }

    /// The library's explicit method (dopri5 stands for the implicit ones, which
    /// [`SolverArg::config`] sets apart).
    pub fn method(self) -> cnflow::ode::Method {
        use cnflow::ode::Method;
        match self {
            SolverArg::Dopri5 | SolverArg::Kvaerno5 | SolverArg::TrBdf2 => Method::Dopri5,
            SolverArg::Tsit5 => Method::Tsit5,
            SolverArg::Bosh3 => Method::Bosh3,
            SolverArg::Rk4 => Method::Rk4,
            SolverArg::Midpoint => Method::Midpoint,
            SolverArg::Heun => Method::Heun,
            SolverArg::Euler => Method::Euler,
        }
    }

    /// Whether the method has an error estimate (adapts its steps).
    pub fn is_adaptive(self) -> bool {
        self.implicit().is_some() || self.method().tableau().is_adaptive()
    }

    /// The solver settings: `steps` equal steps, else adaptive at `rtol`/`atol`.
    pub fn config(self, steps: Option<usize>, rtol: f64, atol: f64) -> anyhow::Result<cnflow::ode::SolverConfig> {
        use cnflow::ode::{SolverConfig, StepControl};
        let config = match (self.implicit(), steps) {
            (Some(m), Some(n)) => SolverConfig {
                step: StepControl::FixedSteps(n),
                ..SolverConfig::implicit(m, rtol, atol)
            },
            (Some(m), None) => SolverConfig::implicit(m, rtol, atol),
            (None, Some(n)) => SolverConfig::fixed_steps(self.method(), n),
            (None, None) if !self.is_adaptive() => {
                anyhow::bail!(
                    "--solver {} takes fixed steps: give --steps N (e.g. --steps 8)",
                    self.method()
                )
            }
            (None, None) => SolverConfig::adaptive(self.method(), rtol, atol),
        };
        config.validate()?;
        Ok(config)
    }
}

/// The solvers of `fit-series`: adaptive explicit ones, and the stiff ESDIRK methods
/// whose gradient is their discrete adjoint.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SeriesSolverArg {
    /// Dormand–Prince 5(4), adaptive.
    Dopri5,
    /// Tsitouras 5(4), adaptive.
    Tsit5,
    /// Bogacki–Shampine 3(2), adaptive.
    Bosh3,
    /// KVAERNO5, ESDIRK 5(4), L-stable: for stiff series (backprop only).
    Kvaerno5,
    /// TR-BDF2, ESDIRK 2(3), L-stable: for stiff series (backprop only).
    #[value(name = "tr-bdf2")]
    TrBdf2,
}

/// Layer kinds.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LayerArg {
    /// FFJORD's (W x + b) ⊙ σ(W_g t + b_g) + W_b t.
    Concatsquash,
    /// Linear over [t, x].
    Concat,
    /// Linear, time ignored.
    Ignore,
}

/// Activations.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ActivationArg {
    /// tanh.
    Tanh,
    /// softplus.
    Softplus,
    /// ELU.
    Elu,
    /// swish (x·σ(x)).
    Swish,
}

/// Trace estimators.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TraceArg {
    /// Exact trace from d forward tangents.
    Exact,
    /// Hutchinson's estimator with one Rademacher probe per solve.
    Hutchinson,
}

/// Training objectives.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum ObjectiveArg {
    /// Maximum likelihood through the solver (the CNF's own loss).
    #[default]
    Mle,
    /// Conditional flow matching, independent coupling (simulation-free).
    Cfm,
    /// Conditional flow matching with minibatch exact optimal-transport coupling.
    OtCfm,
}

/// Gradient methods.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GradArg {
    /// Continuous adjoint (memory flat in the number of steps); the parameter adjoints
    /// are left out of step control (seminorm)
    Adjoint,
    /// Continuous adjoint with every component in step control (no seminorm)
    AdjointFullNorm,
    /// Backprop through the solver's steps (exact gradient of the discrete solution).
    Backprop,
}

/// Learning-rate schedules.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LrScheduleArg {
    /// The same rate throughout (FFJORD's choice).
    #[default]
    Constant,
    /// Half a cosine from --lr down to --lr/20 at the last iteration.
    Cosine,
}

/// Float types.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PrecisionArg {
    /// 32-bit floats (fast; FFJORD trains in f32).
    F32,
    /// 64-bit floats.
    F64,
}

/// Picture kinds.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlotKind {
    /// Data, model density and model samples side by side.
    Panels,
    /// The sampling flow at several times.
    Trajectories,
    /// Training curves from a run's metrics.csv.
    Metrics,
}

fn positive_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if v > 0.0 && v.is_finite() {
        Ok(v)
    } else {
        Err(format!("{s} must be a finite number > 0"))
    }
}

fn non_negative_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if v >= 0.0 && v.is_finite() {
        Ok(v)
    } else {
        Err(format!("{s} must be a finite number ≥ 0"))
    }
}

/// `--checkpoints`: backprop's memory policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointsArg {
    /// Every stage, on the tape.
    #[default]
    All,
    /// The step starts.
    Steps,
    /// Binomial checkpointing with this many stored states.
    Revolve(usize),
}

impl CheckpointsArg {
    /// The sensitivity module's policy.
    pub fn policy(self) -> cnflow::sensitivity::Checkpointing {
        use cnflow::sensitivity::Checkpointing;
        match self {
            CheckpointsArg::All => Checkpointing::All,
            CheckpointsArg::Steps => Checkpointing::StepStarts,
            CheckpointsArg::Revolve(budget) => Checkpointing::Revolve { budget },
        }
    }
}

impl std::fmt::Display for CheckpointsArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointsArg::All => f.write_str("all"),
            CheckpointsArg::Steps => f.write_str("steps"),
            CheckpointsArg::Revolve(n) => write!(f, "{n}"),
        }
    }
}

fn parse_checkpoints(s: &str) -> Result<CheckpointsArg, String> {
    match s {
        "all" => Ok(CheckpointsArg::All),
        "steps" => Ok(CheckpointsArg::Steps),
        _ => match s.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(CheckpointsArg::Revolve(n)),
            _ => Err(format!(
                "'{s}' is not a checkpoint policy: give all, steps, or a number of stored states ≥ 1"
            )),
        },
    }
}

/// `--optimizer`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerArg {
    /// Adam with L2 weight decay.
    #[default]
    Adam,
    /// Adam with decoupled weight decay.
    Adamw,
    /// RMSprop.
    Rmsprop,
    /// SGD with momentum.
    Sgd,
}

impl OptimizerArg {
    /// The optimizer at `lr` with `weight_decay`; `momentum` for RMSprop (default 0)
    /// and SGD (default 0.9).
    pub fn config(self, lr: f64, weight_decay: f64, momentum: Option<f64>) -> cnflow::optim::OptimizerConfig {
        use cnflow::optim::{AdamConfig, OptimizerConfig, RmsPropConfig, SgdConfig};
        let adam = AdamConfig::new(lr, weight_decay);
        match self {
            OptimizerArg::Adam => OptimizerConfig::Adam(adam),
            OptimizerArg::Adamw => OptimizerConfig::AdamW(adam),
            OptimizerArg::Rmsprop => OptimizerConfig::RmsProp(RmsPropConfig {
                momentum: momentum.unwrap_or(0.0),
                weight_decay,
                ..RmsPropConfig::new(lr)
            }),
            OptimizerArg::Sgd => OptimizerConfig::Sgd(SgdConfig {
                weight_decay,
                ..SgdConfig::new(lr, momentum.unwrap_or(0.9))
            }),
        }
    }
}

impl ActivationArg {
    /// The library's activation.
    pub fn activation(self) -> cnflow::nn::Activation {
        use cnflow::nn::Activation;
        match self {
            ActivationArg::Tanh => Activation::Tanh,
            ActivationArg::Softplus => Activation::Softplus,
            ActivationArg::Elu => Activation::Elu,
            ActivationArg::Swish => Activation::Swish,
        }
    }
}

fn unit_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' must be a number in [0, 1)")),
    }
}

fn positive_usize(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(format!("{s} must be a whole number ≥ 1")),
    }
}

/// Parts of a batch by default: two, whatever the machine, so that a seed gives the
/// same model everywhere (the defaults were measured with two on two cores).
pub const DEFAULT_PARTS: usize = 2;

/// Checkpoints written before `--parts` existed: `--threads` was the number of parts
/// (read from it when the checkpoint is loaded), and before that there was one.
fn parts_of_old_checkpoints() -> usize {
    0
}

/// Flags of `cnflow train`.
///
/// The defaults are cnflow's fastest reliable route to a good fit (measured in
/// BENCHMARKS.md): Dopri5 at rtol = atol = 1e-3, backprop through the steps, RNODE
/// regularization 0.01, Adam at lr 5e-3 with a cosine schedule. `--reference` selects
/// FFJORD's configuration instead.
#[derive(Args, Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainArgs {
    /// Built-in dataset name (see `cnflow datasets`) or a CSV/.npy file of points.
    #[arg(long, default_value = "8gaussians")]
    pub data: String,
    /// FFJORD's reference configuration: dopri5 at rtol = atol = 1e-5, adjoint gradients,
    /// no regularizers, constant lr 1e-3 (flags given explicitly still win).
    #[arg(long)]
    #[serde(default)]
    pub reference: bool,
    /// Training iterations in total [default: 2000; with --resume, the checkpoint's total].
    #[arg(long, value_parser = positive_usize)]
    pub iters: Option<usize>,
    /// Batch size.
    #[arg(long, value_parser = positive_usize, default_value_t = 100)]
    pub batch: usize,
    /// Hidden widths of the field, joined by '-'.
    #[arg(long, default_value = "64-64-64")]
    pub hidden: String,
    /// Layer kind.
    #[arg(long, value_enum, default_value_t = LayerArg::Concatsquash)]
    pub layer: LayerArg,
    /// Activation between layers.
    #[arg(long, value_enum, default_value_t = ActivationArg::Tanh)]
    pub activation: ActivationArg,
    /// Number of stacked CNF blocks.
    #[arg(long, value_parser = positive_usize, default_value_t = 1)]
    pub blocks: usize,
    /// ODE solver for training.
    #[arg(long, value_enum, default_value_t = SolverArg::Dopri5)]
    pub solver: SolverArg,
    /// Relative tolerance of adaptive solvers.
    #[arg(long, allow_hyphen_values = true, value_parser = positive_f64, default_value_t = 1e-3)]
    pub rtol: f64,
    /// Absolute tolerance of adaptive solvers.
    #[arg(long, allow_hyphen_values = true, value_parser = positive_f64, default_value_t = 1e-3)]
    pub atol: f64,
    /// Fixed number of steps per solve [default: 4 for rk4, midpoint, heun and euler; adaptive methods take
    /// adaptive steps unless it is given].
    #[arg(long, value_parser = positive_usize)]
    pub steps: Option<usize>,
    /// Trace estimator.
    #[arg(long, value_enum, default_value_t = TraceArg::Exact)]
    pub trace: TraceArg,
    /// Gradient method.
    #[arg(long, value_enum, default_value_t = GradArg::Backprop)]
    pub grad: GradArg,
    /// What backprop keeps of the forward solve: `all` (every stage's forward pass, up
    /// to 128 MiB, then recomputed), `steps` (the state at each step start), or a number
    /// N (binomial checkpointing: at most N stored states per block, steps recomputed
    /// from the nearest). The gradient is the same whichever; memory and time are not.
    #[arg(long, default_value_t = CheckpointsArg::All, value_parser = parse_checkpoints)]
    #[serde(default)]
    pub checkpoints: CheckpointsArg,
    /// Weight of the RNODE kinetic-energy regularizer ∫‖f‖² (0 = off).
    #[arg(long, allow_hyphen_values = true, value_parser = non_negative_f64, default_value_t = 0.01)]
    pub kinetic: f64,
    /// Weight of the RNODE Jacobian-Frobenius regularizer ∫‖J ε‖² (0 = off).
    #[arg(long, allow_hyphen_values = true, value_parser = non_negative_f64, default_value_t = 0.01)]
    pub jacobian: f64,
    /// Optimizer (adam: L2 weight decay as PyTorch's Adam; adamw: decoupled decay).
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adam)]
    #[serde(default)]
    pub optimizer: OptimizerArg,
    /// What the iterations minimise: the likelihood (mle), or flow matching (cfm,
    /// ot-cfm: one field evaluation per point, no solve; one block). Flow-matching
    /// models get the same exact likelihood, test NLL and KL gap.
    #[arg(long, value_enum, default_value_t = ObjectiveArg::Mle)]
    #[serde(default)]
    pub objective: ObjectiveArg,
    /// With a flow-matching objective: the last N of --iters iterations maximise the
    /// likelihood instead (flow-matching pretraining, likelihood fine-tuning); the
    /// learning-rate schedule starts again at --lr for them.
    #[arg(long, value_parser = positive_usize)]
    #[serde(default)]
    pub then_mle: Option<usize>,
    /// Momentum of sgd [default: 0.9] and rmsprop [default: 0].
    #[arg(long, value_parser = unit_interval)]
    #[serde(default)]
    pub momentum: Option<f64>,
    /// Learning rate.
    #[arg(long, allow_hyphen_values = true, value_parser = positive_f64, default_value_t = 5e-3)]
    pub lr: f64,
    /// Learning-rate schedule over the --iters iterations.
    #[arg(long, value_enum, default_value_t = LrScheduleArg::Cosine)]
    #[serde(default)]
    pub lr_schedule: LrScheduleArg,
    /// Weight decay.
    #[arg(long, allow_hyphen_values = true, value_parser = non_negative_f64, default_value_t = 1e-5)]
    pub weight_decay: f64,
    /// Float type for training.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    /// Seed of every random draw (initial weights, batches, probes, test set).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run folder (default: runs/<dataset name or file stem>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its checkpoint (after Ctrl-C or to train longer).
    #[arg(long)]
    pub resume: bool,
    /// Overwrite an existing run in --out.
    #[arg(long)]
    pub force: bool,
    /// Evaluate on the test set every this many iterations.
    #[arg(long, value_parser = positive_usize, default_value_t = 100)]
    pub eval_every: usize,
    /// Split every batch into this many parts, each solved with its own adaptive steps
    /// (the result depends on it, not on the machine; kept in the checkpoint so a
    /// resumed run continues identically).
    #[arg(long, value_parser = positive_usize, default_value_t = DEFAULT_PARTS)]
    #[serde(default = "parts_of_old_checkpoints")]
    pub parts: usize,
    /// Threads that schedule the parts and evaluations [default: all cores]; never
    /// changes a result.
    #[arg(long, value_parser = positive_usize)]
    #[serde(default)]
    pub threads: Option<usize>,
    /// Test-set size (built-in datasets; files hold out 10 % up to this many points).
    #[arg(long, value_parser = positive_usize, default_value_t = 5000)]
    pub test_size: usize,
}

/// Solver overrides shared by the evaluation commands.
#[derive(Args, Debug, Clone)]
pub struct EvalSolverArgs {
    /// ODE solver (default: the model's evaluation solver, dopri5).
    #[arg(long, value_enum)]
    pub solver: Option<SolverArg>,
    /// Relative tolerance (default: the model's evaluation tolerance).
    #[arg(long, allow_hyphen_values = true, value_parser = positive_f64)]
    pub rtol: Option<f64>,
    /// Absolute tolerance (default: the model's evaluation tolerance).
    #[arg(long, allow_hyphen_values = true, value_parser = positive_f64)]
    pub atol: Option<f64>,
    /// Fixed number of steps per solve instead of adaptive steps.
    #[arg(long, value_parser = positive_usize)]
    pub steps: Option<usize>,
    /// Points per chunk: chunks are evaluated in parallel, two per thread at a time, so
    /// memory is bounded by the chunk size, not by the number of points. Per-point cost
    /// is flat from 50 to 500 and rises above (cache); samples depend on it for a seed.
    #[arg(long, value_parser = positive_usize, default_value_t = 200)]
    pub chunk: usize,
    /// Float type of the computation [default: the one the model was trained in].
    #[arg(long, value_enum)]
    pub precision: Option<PrecisionArg>,
}

/// Flags of `cnflow density`.
#[derive(Args, Debug)]
pub struct DensityArgs {
    /// Model file written by `cnflow train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Points: a CSV or .npy file, or - for CSV on stdin.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write log p(x): a CSV (one column `log_p`) or .npy file, or - for stdout.
    #[arg(long, default_value = "-")]
    pub output: PathBuf,
    /// Trace estimator (exact by default, as a density should be).
    #[arg(long, value_enum, default_value_t = TraceArg::Exact)]
    pub trace: TraceArg,
    /// Seed of the Hutchinson probes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Solver settings.
    #[command(flatten)]
    pub solver: EvalSolverArgs,
}

/// Flags of `cnflow sample`.
#[derive(Args, Debug)]
pub struct SampleArgs {
    /// Model file written by `cnflow train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Number of samples.
    #[arg(short = 'n', long = "n", value_parser = positive_usize, default_value_t = 1000)]
    pub n: usize,
    /// Seed of the base draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to write the samples: CSV or .npy file, or - for stdout.
    #[arg(long, default_value = "-")]
    pub output: PathBuf,
    /// Solver settings.
    #[command(flatten)]
    pub solver: EvalSolverArgs,
}

/// Flags of `cnflow eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model file written by `cnflow train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Built-in dataset name or a CSV/.npy file of points.
    #[arg(long)]
    pub data: String,
    /// Number of test points drawn from a built-in dataset.
    #[arg(short = 'n', long = "n", value_parser = positive_usize, default_value_t = 5000)]
    pub n: usize,
    /// Seed of the test draw.
    #[arg(long, default_value_t = 12345)]
    pub seed: u64,
    /// Points of the W2 distance between model samples and test points (exact optimal
    /// transport, about a second at 1000; its cost grows as the cube); 0 skips it.
    #[arg(long, default_value_t = 1000)]
    pub w2_points: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Solver settings.
    #[command(flatten)]
    pub solver: EvalSolverArgs,
}

/// Flags of `cnflow plot`.
#[derive(Args, Debug)]
pub struct PlotArgs {
    /// Model file written by `cnflow train` (its run folder's metrics.csv for --kind
    /// metrics). Several (`--model a.json b.json …`, panels only) draw one row each, to
    /// compare models or datasets in one picture.
    #[arg(long, required = true, num_args = 1..)]
    pub model: Vec<PathBuf>,
    /// Data to show beside the model: a built-in dataset name or a CSV/.npy file
    /// (default: the dataset the model was trained on, when built in).
    #[arg(long)]
    pub data: Option<String>,
    /// Picture file: .png or .svg.
    #[arg(long)]
    pub output: PathBuf,
    /// What to draw.
    #[arg(long, value_enum, default_value_t = PlotKind::Panels)]
    pub kind: PlotKind,
    /// Seed of the samples drawn for the picture.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Flags of `cnflow datasets`.
#[derive(Args, Debug)]
pub struct DatasetsArgs {
    /// Dataset to write points of (omit to list all datasets).
    pub name: Option<String>,
    /// Number of points.
    #[arg(short = 'n', long = "n", value_parser = positive_usize, default_value_t = 1000)]
    pub n: usize,
    /// Seed of the draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to write the points: CSV or .npy file, or - for stdout.
    #[arg(long, default_value = "-")]
    pub output: PathBuf,
    /// FFJORD's version of moons, circles or rings: evenly spaced angles, not i.i.d.
    /// (a model trained on its batches learns the spots, not the density).
    #[arg(long)]
    pub grid: bool,
}

/// Squared-error reductions.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SeriesLossArg {
    /// Mean over the observed values.
    Mean,
    /// Sum over the observed values.
    Sum,
}

/// Gradients of a series fit.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SeriesGradArg {
    /// Backprop through the solver's steps (exact gradient of the discrete solution).
    Backprop,
    /// Continuous adjoint with jumps at the observations (memory flat in the steps).
    Adjoint,
}

/// `cnflow fit-series`: a neural ODE, a mechanistic model given as equations, or a
/// hybrid of both, fitted to one or more trajectories observed at irregular times.
///
/// The data is a CSV with a header: the time (first column, or --time), an optional
/// trajectory id (a column named id or trajectory, or --id) and one column per state;
/// an empty cell or nan is a value not observed.
#[derive(Args, Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FitSeriesArgs {
    /// The observations (CSV; `-` reads them from stdin). A copy is kept in the run
    /// folder as data.csv, so `--resume` needs no --data.
    #[arg(long, required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// Name of the time column [default: the first column].
    #[arg(long)]
    pub time: Option<String>,
    /// Name of the trajectory-id column [default: a column named id or trajectory].
    #[arg(long)]
    pub id: Option<String>,
    /// Mechanistic equations, e.g. "dx = a*x - b*x*y; dy = -d*y + g*x*y" (state names are
    /// the data's column names), or @FILE to read them from a file.
    #[arg(long)]
    pub mechanistic: Option<String>,
    /// Parameter values, e.g. a=1.5,b=1,d=3,g=1 (every parameter the equations use).
    #[arg(long)]
    pub params: Option<String>,
    /// Parameters to fit, e.g. a,d; "all" or "none" [default: all].
    #[arg(long)]
    pub learn: Option<String>,
    /// Equations that get a neural term, e.g. dx,dy; "all" or "none" [default: all
    /// without --mechanistic, none with it].
    #[arg(long)]
    pub neural: Option<String>,
    /// Hidden widths of the network, joined by '-'.
    #[arg(long, default_value = "50")]
    pub hidden: String,
    /// Activation between layers.
    #[arg(long, value_enum, default_value_t = ActivationArg::Tanh)]
    pub activation: ActivationArg,
    /// What the network sees: the state, or its cube (the spiral demo's u ↦ u³).
    #[arg(long, default_value = "none")]
    pub input_transform: String,
    /// ODE solver: explicit for most series; kvaerno5 or tr-bdf2 when the model is (or
    /// becomes) stiff, so that an explicit solver's steps collapse.
    #[arg(long, value_enum, default_value_t = SeriesSolverArg::Tsit5)]
    pub solver: SeriesSolverArg,
    /// Relative tolerance.
    #[arg(long, allow_hyphen_values = true, value_parser = positive_f64, default_value_t = 1e-6)]
    pub rtol: f64,
    /// Absolute tolerance.
    #[arg(long, allow_hyphen_values = true, value_parser = positive_f64, default_value_t = 1e-8)]
    pub atol: f64,
    /// How gradients are computed.
    #[arg(long, value_enum, default_value_t = SeriesGradArg::Backprop)]
    pub gradient: SeriesGradArg,
    /// Iterations in total [default: 1000; with --resume, the checkpoint's total].
    #[arg(long, value_parser = positive_usize)]
    pub iters: Option<usize>,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adam)]
    pub optimizer: OptimizerArg,
    /// Learning rate.
    #[arg(long, allow_hyphen_values = true, value_parser = positive_f64, default_value_t = 0.05)]
    pub lr: f64,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value_t = LrScheduleArg::Constant)]
    pub lr_schedule: LrScheduleArg,
    /// Mean or sum of the squared errors.
    #[arg(long, value_enum, default_value_t = SeriesLossArg::Mean)]
    pub loss: SeriesLossArg,
    /// Weight of each state in the loss, comma-separated (e.g. 1,0.5).
    #[arg(long)]
    pub weights: Option<String>,
    /// Fit each trajectory's initial state too (needed when a first row has a missing value).
    #[arg(long)]
    pub learn_y0: bool,
    /// Multiple shooting: cut each trajectory into this many segments.
    #[arg(long, value_parser = positive_usize, default_value_t = 1)]
    pub shooting: usize,
    /// Weight of multiple shooting's continuity penalty.
    #[arg(long, allow_hyphen_values = true, value_parser = positive_f64, default_value_t = 10.0)]
    pub continuity: f64,
    /// Growing training window: a count of equal stages (e.g. 3), or the windows' ends
    /// (e.g. 1.5,3,5); the iterations are shared equally [default: 1, the whole series].
    #[arg(long)]
    pub curriculum: Option<String>,
    /// End of the prediction and picture [default: the last observation + 50 % of the span].
    #[arg(long, allow_hyphen_values = true)]
    pub extrapolate: Option<f64>,
    /// Seed of the network's initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run folder (default: runs/series-<data file stem>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace an existing run in the folder.
    #[arg(long)]
    #[serde(skip)]
    pub force: bool,
    /// Continue the run in the folder (up to --iters in total).
    #[arg(long)]
    #[serde(skip)]
    pub resume: bool,
    /// Threads for several trajectories [default: all cores]; never changes a result.
    #[arg(long, value_parser = positive_usize)]
    pub threads: Option<usize>,
}

/// `cnflow predict`: a fitted series model's solution at given times.
#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    /// The model (model.json of a fit-series run, or its folder).
    #[arg(long)]
    pub model: PathBuf,
    /// Times: a range START:STEP:END or START:END (100 steps), or a comma-separated list.
    #[arg(long, allow_hyphen_values = true)]
    pub t: String,
    /// Initial state at the first time, comma-separated [default: the fitted start of
    /// --trajectory, solved on to the first time].
    #[arg(long, allow_hyphen_values = true)]
    pub y0: Option<String>,
    /// Which fitted trajectory's start to use [default: the first].
    #[arg(long)]
    pub trajectory: Option<String>,
    /// Where to write the CSV (t and one column per state), or - for stdout.
    #[arg(long, default_value = "-")]
    pub output: PathBuf,
}

/// Methods of `cnflow solve`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SolveMethodArg {
    /// Variable-order BDF 1–5 (NDF form), adaptive, implicit: fewest Jacobians and factorisations.
    Bdf,
    /// RODAS4, a 4(3) Rosenbrock method, adaptive, L-stable: no Newton iteration.
    Rodas4,
    /// RADAU5, Radau IIA of order 5, adaptive, L-stable: for tight tolerances.
    Radau5,
    /// TR-BDF2, an L-stable 2(3) ESDIRK method: loose tolerances.
    #[value(name = "tr-bdf2")]
    TrBdf2,
    /// KVAERNO5, an L-stable 5(4) ESDIRK method: one n × n factorisation per step size.
    Kvaerno5,
    /// Dopri5 until stiffness is detected, then rodas4 (rtol ≥ 1e-6) or radau5.
    Auto,
    /// Backward Euler, fixed steps (--steps), implicit.
    BackwardEuler,
    /// Implicit trapezoid rule, fixed steps (--steps).
    Trapezoid,
    /// Dormand–Prince 5(4), explicit: for non-stiff problems.
    Dopri5,
    /// Tsitouras 5(4), explicit.
    Tsit5,
    /// Bogacki–Shampine 3(2), explicit.
    Bosh3,
}

/// Splittings of `cnflow solve --split`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplittingArg {
    /// Half a step of --equations, a step of --split, half a step of --equations: order 2.
    Strang,
    /// A step of --equations, then a step of --split: order 1.
    Lie,
}

/// `cnflow solve`: integrate equations and print the solution at the save times.
#[derive(Args, Debug, Clone)]
pub struct SolveArgs {
    /// The system, `dNAME = expression` statements separated by ';' or new lines (the
    /// states are the NAMEs, in order), or @FILE to read them from a file.
    #[arg(long, allow_hyphen_values = true)]
    pub equations: String,
    /// Parameter values used by the equations, `name=value,…`.
    #[arg(long, allow_hyphen_values = true)]
    pub params: Option<String>,
    /// Initial state, comma-separated, one value per equation.
    #[arg(long, allow_hyphen_values = true)]
    pub y0: String,
    /// Time span T0:T1 (T1 < T0 integrates backwards).
    #[arg(long, allow_hyphen_values = true)]
    pub t: String,
    /// Save times: a comma-separated list, or START:STEP:END [default: T0 and T1].
    #[arg(long, allow_hyphen_values = true)]
    pub save: Option<String>,
    /// Method [default: rodas4 when rtol ≥ 1e-6, radau5 below: the fastest at equal
    /// accuracy on the stiff test problems (BENCHMARKS.md)].
    #[arg(long, value_enum)]
    pub solver: Option<SolveMethodArg>,
    /// Relative tolerance.
    #[arg(long, default_value_t = 1e-6)]
    pub rtol: f64,
    /// Absolute tolerance.
    #[arg(long, default_value_t = 1e-10)]
    pub atol: f64,
    /// Number of equal steps (fixed-step methods, and the split steps of --split).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Operator splitting: the system is --equations + --split, the second part given as
    /// equations the same way (states missing from it have a zero right-hand side), each
    /// part advanced over every split step by its own method (--solver for
    /// --equations, --split-solver for --split); --steps N split steps.
    #[arg(long, allow_hyphen_values = true)]
    pub split: Option<String>,
    /// Which splitting of --split: strang (order 2) or lie (order 1).
    #[arg(long, value_enum, default_value_t = SplittingArg::Strang)]
    pub splitting: SplittingArg,
    /// Method of the --split part [default: --solver's].
    #[arg(long, value_enum)]
    pub split_solver: Option<SolveMethodArg>,
    /// Most steps before giving up.
    #[arg(long, default_value_t = 500_000)]
    pub max_steps: usize,
    /// Print one JSON object (states, times, solution, statistics, seconds) instead of CSV.
    #[arg(long)]
    pub json: bool,
    /// Where to write the CSV or JSON, or - for stdout.
    #[arg(long, default_value = "-")]
    pub output: PathBuf,
}
