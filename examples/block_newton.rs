//! Block-diagonal against dense Newton on batches of independent stiff systems: `B`
//! Robertson systems (each with its own rate constant), solved as one system of `3B`
//! states to t = 1e4 with KVAERNO5 at rtol 1e-7 / atol 1e-12, by `stiff::solve` (one
//! dense `3B × 3B` factorisation per step size) and by `stiff::solve_blocks` (`B`
//! factorisations of `3 × 3`). Same steps, same states; the time is the difference.
//! Then matrix-free Newton–Krylov (`stiff::solve_krylov`, GMRES on JVPs) against dense
//! Newton, unpreconditioned and with a band preconditioner (`BandPreconditioner`, half-width 1), on the heat equation with a cubic reaction, `u_t = u_xx − 5u³` on `n` points
//! from `2 sin πx` to t = 0.1, KVAERNO5 at rtol 1e-6 / atol 1e-8; and every stiff
//! method (dense Newton) on that system, for which to choose on a large one.
//!
//! ```sh
//! cargo run --release --example block_newton -- --batches 10,50,200 --points 100,400,1000 --repeats 3
//! ```

use std::time::Instant;

use cnflow::stiff::problems::{HeatReaction, RobertsonBatch};
use cnflow::stiff::{
    solve, solve_blocks, solve_krylov, solve_krylov_preconditioned, BandPreconditioner, StiffConfig, StiffMethod,
    StiffSolution,
};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut batches = vec![10, 50, 200];
    let mut repeats = 3;
    let mut points = vec![100, 400, 1000];
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
            "--points" => {
                points = v
                    .split(',')
                    .map(|s| s.trim().parse().expect("--points: whole numbers"))
                    .collect()
            }
            other => panic!("unknown argument {other} (use --batches B1,…, --points N1,… and --repeats N)"),
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
    let c = StiffConfig::adaptive(StiffMethod::Kvaerno5, 1e-6, 1e-8);
    println!(
        "\n| points n | steps | dense Newton | Newton-Krylov | ratio | evaluations + JVPs (Krylov) | max difference | Newton-Krylov, band preconditioner | ratio | evaluations + JVPs | max difference |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in &points {
        let u0: Vec<f64> = (1..=n)
            .map(|i| 2.0 * (std::f64::consts::PI * i as f64 / (n + 1) as f64).sin())
            .collect();
        let time = |krylov: u8| -> (f64, StiffSolution) {
            let mut times = Vec::new();
            let mut last = None;
            for _ in 0..repeats {
                let mut sys = HeatReaction { n, r: 5.0 };
                let t = Instant::now();
                let sol = match krylov {
                    1 => solve_krylov(&mut sys, &u0, 0.0, 0.1, &[], &c),
                    2 => {
                        solve_krylov_preconditioned(&mut sys, BandPreconditioner::new(n, 1, 1), &u0, 0.0, 0.1, &[], &c)
                    }
                    _ => solve(&mut sys, &u0, 0.0, 0.1, &[], &c),
                }
                .expect("the heat equation solves");
                times.push(t.elapsed().as_secs_f64());
                last = Some(sol);
            }
            (median(times), last.unwrap())
        };
        let (td, sd) = time(0);
        let (tk, sk) = time(1);
        let (tp, sp) = time(2);
        let max_diff = |s: &StiffSolution| {
            sd.y_final
                .iter()
                .zip(&s.y_final)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max)
        };
        println!(
            "| {n} | {} / {} / {} | {:.2} ms | {:.2} ms | {:.1}× | {} | {:.1e} | {:.2} ms | {:.1}× | {} | {:.1e} |",
            sd.stats.n_accepted,
            sk.stats.n_accepted,
            sp.stats.n_accepted,
            td * 1e3,
            tk * 1e3,
            td / tk,
            sk.stats.n_evals,
            max_diff(&sk),
            tp * 1e3,
            td / tp,
            sp.stats.n_evals,
            max_diff(&sp)
        );
    }
    println!(
        "\n| points n | method | steps | Jacobians | factorisations | time | error against radau5 at rtol 1e-10 |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &n in &points {
        let u0: Vec<f64> = (1..=n)
            .map(|i| 2.0 * (std::f64::consts::PI * i as f64 / (n + 1) as f64).sin())
            .collect();
        let reference = solve(
            &mut HeatReaction { n, r: 5.0 },
            &u0,
            0.0,
            0.1,
            &[],
            &StiffConfig::adaptive(StiffMethod::Radau5, 1e-10, 1e-12),
        )
        .expect("the reference solves")
        .y_final;
        for method in [
            StiffMethod::Bdf,
            StiffMethod::Rodas4,
            StiffMethod::Radau5,
            StiffMethod::Kvaerno5,
            StiffMethod::TrBdf2,
        ] {
            let c = StiffConfig::adaptive(method, 1e-6, 1e-8);
            let mut times = Vec::new();
            let mut last = None;
            for _ in 0..repeats {
                let t = Instant::now();
                let sol = solve(&mut HeatReaction { n, r: 5.0 }, &u0, 0.0, 0.1, &[], &c).expect("solves");
                times.push(t.elapsed().as_secs_f64());
                last = Some(sol);
            }
            let sol = last.unwrap();
            let err = sol
                .y_final
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            println!(
                "| {n} | {method} | {} | {} | {} | {:.2} ms | {err:.1e} |",
                sol.stats.n_accepted,
                sol.stats.n_jacobians,
                sol.stats.n_factorizations,
                median(times) * 1e3
            );
        }
    }
}
