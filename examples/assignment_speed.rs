//! Exact assignment on flow-matching batches: for each built-in dataset, `n` points
//! (default 256, the flow-matching batch) against `n` standard-normal points, squared
//! Euclidean costs, the median time of [`cnflow::cnf::linear_assignment`] over 100
//! batches, and the summed optimal cost of the first ten (so two builds can be checked
//! to give the same assignments). `--standardize` divides each batch by its RMS first
//! (as a data file's standardisation would); the built-in datasets train unscaled.
//!
//! Run: `cargo run --release --example assignment_speed -- [--n 256] [--standardize]`
//! (`CNFLOW_SIMD=avx2` or `none` picks narrower kernels).

use clap::Parser;
use cnflow::cnf::linear_assignment;
use cnflow::data::Dataset;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

#[derive(Parser, Debug)]
#[command(about = "Time the exact assignment on flow-matching batches of every built-in dataset")]
struct Args {
    /// Points per batch.
    #[arg(long, default_value_t = 256)]
    n: usize,
    /// Divide each batch by its RMS before pairing it with the normal sample.
    #[arg(long)]
    standardize: bool,
}

fn main() {
    let args = Args::parse();
    let n = args.n;
    let mut medians = Vec::new();
    println!("kernels: {}", cnflow::nn::simd_in_use());
    for ds in Dataset::ALL {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (mut times, mut total) = (Vec::new(), 0.0);
        for rep in 0..100 {
            let x = ds.sample(n, &mut rng);
            let scale = match args.standardize {
                true => (x.iter().map(|v| v * v).sum::<f64>() / (2 * n) as f64).sqrt(),
                false => 1.0,
            };
            let e: Vec<f64> = (0..2 * n).map(|_| StandardNormal.sample(&mut rng)).collect();
            let cost: Vec<f64> = (0..n * n)
                .map(|k| {
                    (0..2)
                        .map(|c| (x[[k / n, c]] / scale - e[(k % n) * 2 + c]).powi(2))
                        .sum()
                })
                .collect();
            let started = std::time::Instant::now();
            let sigma = linear_assignment(&cost, n);
            times.push(started.elapsed().as_secs_f64());
            if rep < 10 {
                total += sigma.iter().enumerate().map(|(i, &j)| cost[i * n + j]).sum::<f64>();
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{:<12} median {:8.1} µs   cost of the first ten {total:.9}",
            ds.name(),
            1e6 * median
        );
        medians.push(median);
    }
    medians.sort_by(f64::total_cmp);
    println!(
        "median over the datasets {:.1} µs",
        1e6 * (medians[3] + medians[4]) / 2.0
    );
}
