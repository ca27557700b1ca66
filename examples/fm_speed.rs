//! Flow matching's loss and gradient alone, without the training loop: batches of
//! 8gaussians, a 3×64 tanh field on `[x, t]` in f32 (the field of the torchcfm
//! comparison, `benches/cfm_peer.sh`), and the median milliseconds of `--iters` calls,
//! each followed by a plain gradient step so that the field changes as in training.
//!
//! Run: `cargo run --release --example fm_speed -- [--iters 4000] [--batch 256] [--ot]`
//! (`RAYON_NUM_THREADS=1` for one thread).

use clap::Parser;
use cnflow::cnf::{fm_loss_and_grad_in, Block, Cnf, Coupling, FlowMatching, FmScratch};
use cnflow::data::Dataset;
use cnflow::nn::{Mlp, MlpConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[derive(Parser, Debug)]
#[command(about = "Time flow matching's loss and gradient on 8gaussians batches")]
struct Args {
    /// Calls to time.
    #[arg(long, default_value_t = 4000)]
    iters: usize,
    /// Points per batch.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Exact optimal-transport coupling (OT-CFM) instead of independent pairs.
    #[arg(long)]
    ot: bool,
}

fn main() {
    let args = Args::parse();
    let arch = MlpConfig::parse(2, "64-64-64", "concat", "tanh").expect("a valid architecture");
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut model: Cnf<f32, Mlp<f32>> = Cnf::new(vec![Block {
        field: Mlp::new(arch, &mut rng, false),
        t_end: 0.5,
        learn_t: false,
    }])
    .expect("one block");
    let coupling = if args.ot {
        Coupling::ExactOt
    } else {
        Coupling::Independent
    };
    let config = FlowMatching::new(coupling);
    let mut scratch = FmScratch::default();
    let mut times = Vec::with_capacity(args.iters);
    let mut last = f64::NAN;
    for _ in 0..args.iters {
        let x: Vec<f64> = Dataset::EightGaussians
            .sample(args.batch, &mut rng)
            .iter()
            .copied()
            .collect();
        let started = std::time::Instant::now();
        let lg = fm_loss_and_grad_in(&model, &x, &config, &mut rng, &mut scratch).expect("a valid batch");
        for (p, g) in model.blocks[0].field.params_mut().iter_mut().zip(&lg.grad_params[0]) {
            *p -= 1e-3 * g;
        }
        times.push(started.elapsed().as_secs_f64());
        last = lg.loss;
    }
    times.sort_by(f64::total_cmp);
    let threads = cnflow::par::helpers() + 1;
    println!(
        "{} iterations of batch {} on {threads} threads: median {:.4} ms (last loss {last:.4})",
        args.iters,
        args.batch,
        1e3 * times[times.len() / 2]
    );
}
