//! An ODE-Net classifier on two interleaved spirals, and the same network with the ODE
//! block replaced by one residual block (`--residual`).
//!
//! Linear(2, 32) → tanh → `dh/dt = MLP(h)` on `[0, 1]` (MLP 32 → 32 tanh → 32, no
//! time input) → Linear(32, 2) → cross-entropy; Dopri5 at rtol = atol = 1e-3, the
//! gradient by backprop through the solver keeping every stage (`--adjoint`: the
//! continuous adjoint); Adam at lr 0.01 on the full batch of 2000 points. The training
//! points, the 2000 test points and the initialisation are streams 0, 1 and 2 of
//! ChaCha8 seeded with `--seed`.
//!
//! Every 50 iterations (`--log-every`) it prints the loss, the training accuracy, the forward
//! evaluations and the time per iteration; at the end the test accuracy and one JSON
//! line for comparison with the Python peer.
//!
//! Run: `cargo run --release --example spirals_classifier -- [--seed 0] [--iters 300] [--residual] [--adjoint] [--parts 2] [--tape-mib 0]`

use std::ops::ControlFlow;

use anyhow::Context;
use clap::Parser;
use cnflow::classifier::{
    two_spirals, Block, Classifier, ClassifierConfig, ClassifierError, ClassifierEval, ClassifierScratch,
};
use cnflow::nn::Workspace;
use cnflow::ode::{Method, SolverConfig};
use cnflow::optim::{AdamConfig, LrSchedule, OptimizerConfig};
use cnflow::sensitivity::{Checkpointing, SensitivityMethod};
use cnflow::train::{minimise, Outcome, Problem};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Points per class, in the training set and in the test set.
const N_PER_CLASS: usize = 1000;
/// Standard deviation of the noise on each coordinate.
const NOISE: f64 = 0.02;
/// Width of the hidden state and of the field's hidden layer.
const WIDTH: usize = 32;

#[derive(Parser, Debug)]
#[command(about = "ODE-Net (or residual-block) classifier on two interleaved spirals")]
struct Args {
    /// Seed of the data and the initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Adam iterations on the full batch.
    #[arg(long, default_value_t = 300)]
    iters: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// One residual block h + MLP(h) instead of the ODE block.
    #[arg(long)]
    residual: bool,
    /// The continuous adjoint instead of backprop through the solver.
    #[arg(long)]
    adjoint: bool,
    /// Cut the batch into this many parts solved in parallel (each its own solve).
    #[arg(long, default_value_t = 1)]
    parts: usize,
    /// Most MiB of forward passes backprop keeps per part (past it, the reverse pass
    /// recomputes them; the gradient is the same).
    #[arg(long, default_value_t = 1024)]
    tape_mib: usize,
    /// Relative tolerance of the Dopri5 solves (training and test).
    #[arg(long, default_value_t = 1e-3)]
    rtol: f64,
    /// Absolute tolerance of the Dopri5 solves.
    #[arg(long, default_value_t = 1e-3)]
    atol: f64,
    /// Print a line every this many iterations.
    #[arg(long, default_value_t = 50)]
    log_every: usize,
}

/// The full-batch fit, for the generic training loop.
struct Fit {
    model: Classifier,
    x: Vec<f64>,
    labels: Vec<usize>,
    scratch: ClassifierScratch,
}

impl Problem for Fit {
    type T = f64;
    type Report = ClassifierEval;
    type Error = ClassifierError;
    type Rng = ChaCha8Rng;

    fn params(&self, out: &mut Vec<f64>) {
        self.model.params(out);
    }

    fn set_params(&mut self, flat: &[f64]) {
        self.model
            .set_params(flat)
            .expect("the optimizer keeps the parameter count");
    }

    fn loss_and_grad(
        &mut self,
        _iter: usize,
        _rng: &mut ChaCha8Rng,
        grad: &mut Vec<f64>,
    ) -> Result<(f64, ClassifierEval), ClassifierError> {
        grad.clear();
        grad.resize(self.model.n_params(), 0.0);
        let eval = self
            .model
            .loss_and_grad_in(&self.x, &self.labels, grad, &mut self.scratch)?;
        Ok((eval.loss, eval))
    }
}

fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn main() -> anyhow::Result<()> {
    // A gradient allocates several states of 2000 × 32 values (512 KB each); glibc maps
    // and unmaps each one. The library keeps the reverse pass's work area and the stage
    // vectors per thread (which took this example from 391 000 to 173 000 page faults
    // in 100 iterations without this call); raising glibc's thresholds keeps the rest of
    // the freed blocks for reuse too (45 000 page faults; BENCHMARKS.md).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation thresholds.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
    let args = Args::parse();
    let block = if args.residual { Block::Residual } else { Block::Ode };
    let mut config = ClassifierConfig::new(WIDTH, &[WIDTH], block).context("classifier settings")?;
    config.n_parts = args.parts;
    config.solver = SolverConfig::adaptive(Method::Dopri5, args.rtol, args.atol);
    config.tape_bytes = args.tape_mib.saturating_mul(1 << 20);
    if args.adjoint {
        config.gradient = SensitivityMethod::Adjoint { seminorm: false };
    }
    config.validate().context("classifier settings")?;
    let gradient = config.gradient;
    let (x, labels) = two_spirals(N_PER_CLASS, NOISE, &mut stream(args.seed, 0));
    let (x_test, labels_test) = two_spirals(N_PER_CLASS, NOISE, &mut stream(args.seed, 1));
    let model = Classifier::new(config, &mut stream(args.seed, 2)).context("building the classifier")?;
    let n_params = model.n_params();
    let block_name = match block {
        Block::Ode => "ode",
        Block::Residual => "residual",
    };
    let gradient_name = match (block, gradient) {
        (Block::Residual, _) => "exact (no solve)",
        (_, SensitivityMethod::Backprop(Checkpointing::All)) => "backprop through the solver",
        (_, SensitivityMethod::Backprop(_)) => "backprop with checkpoints",
        (_, SensitivityMethod::Adjoint { .. }) => "continuous adjoint",
    };
    println!(
        "block {block_name}, {n_params} params, {} training and {} test points, gradient: {gradient_name}, \
         {} part(s), {} rayon threads",
        labels.len(),
        labels_test.len(),
        args.parts,
        rayon::current_num_threads()
    );
    let mut fit = Fit {
        model,
        x,
        labels,
        scratch: ClassifierScratch::default(),
    };
    let adam = AdamConfig::new(args.lr, 0.0);
    adam.validate().context("Adam settings")?;
    let mut opt = OptimizerConfig::Adam(adam).build(n_params);
    let mut ms = Vec::with_capacity(args.iters);
    let mut nfe_forward = Vec::with_capacity(args.iters);
    let mut final_loss = f64::NAN;
    let n_train = fit.labels.len() as f64;
    let outcome = minimise(
        &mut fit,
        &mut opt,
        LrSchedule::Constant,
        1,
        args.iters,
        |i| stream(args.seed, 3 + i as u64),
        |step, _| {
            let nfe = step.report.n_evals_forward as f64 / args.parts as f64;
            ms.push(1e3 * step.seconds);
            nfe_forward.push(nfe);
            final_loss = step.loss;
            if step.iter % args.log_every.max(1) == 0 || step.iter == 1 {
                println!(
                    "iter {:4}  loss {:.5}  train acc {:.4}  nfe fwd {:5.1}  bwd {:5.1}  {:7.2} ms",
                    step.iter,
                    step.loss,
                    step.report.n_correct as f64 / n_train,
                    nfe,
                    step.report.n_evals_backward as f64 / args.parts as f64,
                    1e3 * step.seconds
                );
            }
            ControlFlow::Continue(())
        },
    );
    if let Outcome::Failed { iter, failure } = outcome {
        anyhow::bail!("iteration {iter} failed: {failure:?}");
    }
    let test_accuracy = fit
        .model
        .accuracy(&x_test, &labels_test)
        .context("scoring the test set")?;
    let nfe_mean = nfe_forward.iter().sum::<f64>() / nfe_forward.len().max(1) as f64;
    let ms_median = median(&mut ms);
    let per_workspace = Workspace::<f64>::estimate_bytes(fit.model.field().config(), fit.labels.len() / args.parts, 0);
    let held_mib = (fit.scratch.n_workspaces() as u128 * per_workspace) as f64 / (1u64 << 20) as f64;
    println!(
        "test accuracy {test_accuracy:.4}  median {ms_median:.2} ms/iter  mean forward nfe {nfe_mean:.1}/iter  \
         ({} field workspaces kept, {held_mib:.0} MiB)",
        fit.scratch.n_workspaces()
    );
    let line = serde_json::json!({
        "peer": "cnflow",
        "seed": args.seed,
        "block": block_name,
        "iters": args.iters,
        "ms_per_iter_median": (ms_median * 1e3).round() / 1e3,
        "nfe_forward_per_iter": (nfe_mean * 10.0).round() / 10.0,
        "test_accuracy": test_accuracy,
        "final_loss": final_loss,
    });
    println!("{line}");
    Ok(())
}
