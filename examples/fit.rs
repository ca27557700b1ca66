//! Fits a CNF to a built-in 2-D dataset with the library alone, reports the KL gap
//! (test NLL − the dataset's true entropy) as training goes, and writes samples.
//!
//! Run: `cargo run --release --example fit -- --data 8gaussians --iters 1000 --out samples.csv`

use std::ops::ControlFlow;
use std::path::PathBuf;

use clap::Parser;
use cnflow::cnf::{Block, Cnf, LossConfig};
use cnflow::data::{write_csv, Dataset};
use cnflow::nn::{Mlp, MlpConfig};
use cnflow::ode::{Method, SolverConfig};
use cnflow::optim::AdamConfig;
use cnflow::train::{test_set_rng, train, EvalMetrics, IterMetrics, Observer, TrainConfig, TrainState};
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[derive(Parser)]
struct Args {
    /// Dataset: 8gaussians, checkerboard, 2spirals, moons, circles, rings, swissroll, pinwheel.
    #[arg(long, default_value = "8gaussians")]
    data: String,
    /// Training iterations.
    #[arg(long, default_value_t = 1000)]
    iters: usize,
    /// Batch size.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Hidden widths.
    #[arg(long, default_value = "64-64-64")]
    hidden: String,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write 2000 samples (CSV).
    #[arg(long, default_value = "samples.csv")]
    out: PathBuf,
}

/// Prints a line every 50 iterations and at every evaluation.
struct Log;

impl Observer<f32, Mlp<f32>> for Log {
    fn iteration(&mut self, m: &IterMetrics, _: &TrainState<f32, Mlp<f32>>) -> ControlFlow<()> {
        if m.iter.is_multiple_of(50) {
            println!(
                "iter {:5}  loss {:.4}  NFE {:3}/{:3}  {:6.1} ms/iter  T = {:.3}",
                m.iter,
                m.loss,
                m.n_evals_forward,
                m.n_evals_backward,
                1e3 * m.seconds,
                m.t_end[0]
            );
        }
        ControlFlow::Continue(())
    }

    fn evaluation(&mut self, m: &EvalMetrics, s: &TrainState<f32, Mlp<f32>>) -> ControlFlow<()> {
        println!(
            "eval at {:5}: test NLL {:.4}, KL gap {:.4} nats ({:.1} s elapsed)",
            m.iter,
            m.test_nll,
            m.kl_gap.unwrap_or(f64::NAN),
            s.elapsed
        );
        ControlFlow::Continue(())
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dataset: Dataset = args.data.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = MlpConfig::parse(2, &args.hidden, "concatsquash", "tanh")?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let field = Mlp::<f32>::new(config, &mut rng, false);
    let model = Cnf::new(vec![Block {
        field,
        t_end: 0.5,
        learn_t: true,
    }])?;
    let adam = AdamConfig::new(1e-3, 1e-5);
    let loss = LossConfig::new(SolverConfig::adaptive(Method::Dopri5, 1e-5, 1e-5));
    let train_config = TrainConfig {
        eval_every: 200,
        seed: args.seed,
        n_parts: 2,
        eval_at_train_tolerance: false,
        objective: cnflow::train::Objective::Mle,
        ..TrainConfig::new(args.iters, args.batch, adam, loss)
    };
    let to_f32 = |a: Array2<f64>| a.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    let test = to_f32(dataset.sample(2000, &mut test_set_rng(args.seed)));
    let mut state = TrainState::new(model, adam);
    let reason = train(
        &mut state,
        &train_config,
        |n, rng| to_f32(dataset.sample(n, rng)),
        &test,
        Some(dataset.entropy()),
        &mut [&mut Log],
    );
    println!(
        "training {reason} after {} iterations, {:.1} s",
        state.iter, state.elapsed
    );
    let model = state.best.map(|(m, _, _)| m).unwrap_or(state.model);
    let (samples, _) = model.sample(2000, &train_config.eval_solver, &mut rng)?;
    let samples = Array2::from_shape_vec((2000, 2), samples)?;
    write_csv(&args.out, samples.view())?;
    println!("wrote 2000 samples to {}", args.out.display());
    Ok(())
}
