//! Block-diagonal against dense Newton on batches of independent stiff systems: `B`
//! Robertson systems (each with its own rate constant), solved as one system of `3B`
//! states to t = 1e4 with KVAERNO5 at rtol 1e-7 / atol 1e-12, by `stiff::solve` (one
//! dense `3B × 3B` factorisation per step size) and by `stiff::solve_blocks` (`B`
//! factorisations of `3 × 3`). Same steps, same states; the time is the difference.
//!
//! ```sh
//! cargo run --release --example block_newton -- --batches 10,50,200 --repeats 3
//! ```

use std::time::Instant;

use cnflow::stiff::problems::RobertsonBatch;
use cnflow::stiff::{solve, solve_blocks, StiffConfig, StiffMethod, StiffSolution};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut batches = vec![10, 50, 200];
    let mut repeats = 3;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--batches" => {
                batches = v
                    .split(',')
                    .map(|s| s.trim().parse().expect("--batches: whole numbers"))
                    .collect()
            }
            "--repeats" => repeats = v.parse().expect("--repeats: a whole number"),
            other => panic!("unknown argument {other} (use --batches B1,B2,… and --repeats N)"),
        }
    }
    let c = StiffConfig::adaptive(StiffMethod::Kvaerno5, 1e-7, 1e-12);
    println!("| systems B | states | steps | factorisations | dense Newton | block Newton | ratio | max difference |");
    println!("|---|---|---|---|---|---|---|---|");
    for &blocks in &batches {
        let y0: Vec<f64> = (0..blocks).flat_map(|_| [1.0, 0.0, 0.0]).collect();
        let time = |dense: bool| -> (f64, StiffSolution) {
            let mut times = Vec::new();
            let mut last = None;
            for _ in 0..repeats {
                let mut sys = RobertsonBatch { blocks };
                let t = Instant::now();
                let sol = if dense {
                    solve(&mut sys, &y0, 0.0, 1e4, &[], &c)
                } else {
                    solve_blocks(&mut sys, &y0, 0.0, 1e4, &[], &c)
                }
                .expect("the batch solves");
                times.push(t.elapsed().as_secs_f64());
                last = Some(sol);
            }
            (median(times), last.unwrap())
        };
        let (td, sd) = time(true);
        let (tb, sb) = time(false);
        let diff = sd
            .y_final
            .iter()
            .zip(&sb.y_final)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        println!(
            "| {blocks} | {} | {} | {} | {:.2} ms | {:.2} ms | {:.1}× | {diff:.1e} |",
            3 * blocks,
            sb.stats.n_accepted,
            sb.stats.n_factorizations,
            td * 1e3,
            tb * 1e3,
            td / tb
        );
    }
}
