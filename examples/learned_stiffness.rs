//! A neural ODE whose stiffness is learned: training makes the model stiff, and an
//! explicit solver slows down with it while an implicit one does not.
//!
//! The data come from a fast–slow system: `x` relaxes onto `y` at rate 1000 while `y`
//! drifts slowly and nonlinearly,
//!
//! ```text
//! dx/dt = −1000 (x − y),     dy/dt = −x + 0.3 sin 2x,     (x, y)(0) = (2, 1),
//! ```
//!
//! observed at 14 times graded from 10⁻³ to 4 (the transient and the slow drift). The
//! model is a hybrid neural ODE: the relaxation's form with an unknown rate `k = exp θ`
//! (started at 10, not stiff) and a 2-16-1 tanh network for the slow equation,
//!
//! ```text
//! dx/dt = −exp(θ) (x − y),    dy/dt = NN(x, y).
//! ```
//!
//! Both runs train the same model from the same start with Adam (lr 0.02) on the mean
//! squared error, by backprop through the solver (the exact gradient of the discrete
//! solution): one with Dopri5 (`sensitivity::gradient`, every stage kept), one with the
//! L-stable KVAERNO5 (`stiff::esdirk_gradient`), both at rtol 1e-6 / atol 1e-8. As `k`
//! grows towards 1000, Dopri5's step is held to its stability limit (≈ 3.3 / k) over
//! the whole span; KVAERNO5's is not. Printed: per run the time to losses of 1e-3 and
//! 1e-4, the time per iteration at the start and the end, evaluations per iteration,
//! and the learned rate; drawn: loss against time for both (`--out`).
//!
//! ```sh
//! cargo run --release --example learned_stiffness -- --iters 1500 --out learned-stiffness.png
//! ```

use std::time::Instant;

use cnflow::ode::{DualSystem, GenericSystem, Method, SolverConfig};
use cnflow::optim::{Adam, AdamConfig};
use cnflow::sensitivity::{gradient, Checkpointing, SensitivityMethod};
use cnflow::stiff::{esdirk_gradient, solve, StiffConfig, StiffMethod};
use num_dual::DualNum;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

const HIDDEN: usize = 16;
const RATE: f64 = 1000.0;
const TIMES: [f64; 14] = [
    0.0, 1e-3, 2e-3, 4e-3, 8e-3, 0.016, 0.03, 0.06, 0.12, 0.25, 0.5, 1.0, 2.0, 4.0,
];

/// The system the data come from.
struct Truth;
impl GenericSystem for Truth {
    fn dim(&self) -> usize {
        2
    }
    fn n_params(&self) -> usize {
        0
    }
    fn eval<D: DualNum<Primitive = f64> + Copy>(&self, _t: D, y: &[D], _p: &[D], dy: &mut [D]) {
        dy[0] = (y[0] - y[1]) * (-RATE);
        dy[1] = -y[0] + (y[0] * 2.0).sin() * 0.3;
    }
}

/// The hybrid model: parameters `[θ, W1 (16×2), b1 (16), w2 (16), b2]`.
struct Hybrid;
impl GenericSystem for Hybrid {
    fn dim(&self) -> usize {
        2
    }
    fn n_params(&self) -> usize {
        1 + 4 * HIDDEN + 1
    }
    fn eval<D: DualNum<Primitive = f64> + Copy>(&self, _t: D, y: &[D], p: &[D], dy: &mut [D]) {
        dy[0] = -p[0].exp() * (y[0] - y[1]);
        let (w1, rest) = p[1..].split_at(2 * HIDDEN);
        let (b1, rest) = rest.split_at(HIDDEN);
        let (w2, b2) = rest.split_at(HIDDEN);
        let mut out = b2[0];
        for j in 0..HIDDEN {
            out += w2[j] * (w1[2 * j] * y[0] + w1[2 * j + 1] * y[1] + b1[j]).tanh();
        }
        dy[1] = out;
    }
}

struct Run {
    name: &'static str,
    /// (seconds since the start, loss) per iteration.
    curve: Vec<(f64, f64)>,
    /// Evaluations (forward + backward) per iteration.
    evals: Vec<usize>,
    /// Seconds per iteration.
    iter_s: Vec<f64>,
    rate: f64,
    failed: Option<String>,
}

fn train(name: &'static str, stiff: bool, data: &[f64], p0: &[f64], iters: usize, budget_s: f64) -> Run {
    let n_obs = TIMES.len();
    let mut params = p0.to_vec();
    let mut adam = Adam::new(AdamConfig::new(0.02, 0.0), params.len());
    let mut run = Run {
        name,
        curve: Vec::new(),
        evals: Vec::new(),
        iter_s: Vec::new(),
        rate: 0.0,
        failed: None,
    };
    let start = Instant::now();
    for _ in 0..iters {
        let t_iter = Instant::now();
        let mut loss = |i: usize, _t: f64, y: &[f64], g: &mut [f64]| -> f64 {
            let mut l = 0.0;
            for q in 0..2 {
                let r = y[q] - data[i * 2 + q];
                l += r * r / (2 * n_obs) as f64;
                g[q] = 2.0 * r / (2 * n_obs) as f64;
            }
            l
        };
        let mut system = DualSystem::new(Hybrid, params.clone());
        let y0 = [data[0], data[1]];
        let result = if stiff {
            let config = StiffConfig::adaptive(StiffMethod::Kvaerno5, 1e-6, 1e-8);
            esdirk_gradient(&mut system, &y0, &TIMES, &mut loss, &config)
        } else {
            let config = SolverConfig::adaptive(Method::Dopri5, 1e-6, 1e-8);
            gradient(
                &mut system,
                &y0,
                &TIMES,
                &mut loss,
                &config,
                SensitivityMethod::Backprop(Checkpointing::All),
            )
        };
        let s = match result {
            Ok(s) => s,
            Err(e) => {
                run.failed = Some(e.to_string());
                break;
            }
        };
        adam.step(&mut params, &s.grad_params);
        run.iter_s.push(t_iter.elapsed().as_secs_f64());
        run.curve.push((start.elapsed().as_secs_f64(), s.loss));
        run.evals.push(s.n_evals_forward + s.n_evals_backward);
        if start.elapsed().as_secs_f64() > budget_s {
            break;
        }
    }
    run.rate = params[0].exp();
    run
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn time_to(run: &Run, target: f64) -> String {
    match run.curve.iter().find(|(_, l)| *l <= target) {
        Some((t, _)) => format!("{t:.2} s"),
        None => "not reached".into(),
    }
}

fn main() {
    let mut iters = 1500;
    let mut budget_s = 120.0;
    let mut out: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match a.as_str() {
            "--iters" => iters = value("--iters").parse().expect("--iters: a whole number"),
            "--budget" => budget_s = value("--budget").parse().expect("--budget: seconds"),
            "--out" => out = Some(value("--out")),
            other => panic!("unknown argument {other} (use --iters N, --budget SECONDS, --out FILE.png)"),
        }
    }
    // The data: the true system solved tightly at the observation times.
    let mut truth = DualSystem::new(Truth, vec![]);
    let sol = solve(
        &mut truth,
        &[2.0, 1.0],
        0.0,
        4.0,
        &TIMES,
        &StiffConfig::adaptive(StiffMethod::Radau5, 1e-11, 1e-13),
    )
    .expect("the true system solves");
    let data = sol.y;
    // One start for both runs: k = 10, the network's weights N(0, 0.3²), biases 0.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let normal = Normal::new(0.0, 0.3).unwrap();
    let mut p0 = vec![0.0; Hybrid.n_params()];
    p0[0] = 10f64.ln();
    for (j, v) in p0[1..].iter_mut().enumerate() {
        let in_w1 = j < 2 * HIDDEN;
        let in_w2 = (3 * HIDDEN..4 * HIDDEN).contains(&j);
        if in_w1 || in_w2 {
            *v = normal.sample(&mut rng);
        }
    }
    println!(
        "data: dx = -1000 (x - y), dy = -x + 0.3 sin 2x at {} times on [0, 4]",
        TIMES.len()
    );
    println!("model: dx = -exp(theta) (x - y), dy = NN(x, y) (2-16-1 tanh), k = exp(theta) from 10; Adam 0.02; {iters} iterations at most, {budget_s} s per run");
    let runs = [
        train("kvaerno5 (implicit)", true, &data, &p0, iters, budget_s),
        train("dopri5 (explicit)", false, &data, &p0, iters, budget_s),
    ];
    println!(
        "\n{:<20} {:>6} {:>11} {:>11} {:>11} {:>10} {:>10} {:>12} {:>9}",
        "solver", "iters", "final loss", "to 1e-3", "to 1e-4", "ms/it 1st", "ms/it end", "evals/it end", "k learned"
    );
    for r in &runs {
        let n = r.iter_s.len();
        let head = &r.iter_s[..n.min(20)];
        let tail = &r.iter_s[n.saturating_sub(20)..];
        println!(
            "{:<20} {:>6} {:>11.2e} {:>11} {:>11} {:>10.2} {:>10.2} {:>12} {:>9.1}",
            r.name,
            n,
            r.curve.last().map_or(f64::NAN, |c| c.1),
            time_to(r, 1e-3),
            time_to(r, 1e-4),
            1e3 * median(head),
            1e3 * median(tail),
            r.evals.last().copied().unwrap_or(0),
            r.rate
        );
        if let Some(e) = &r.failed {
            println!("  {}: stopped: {e}", r.name);
        }
    }
    if let Some(path) = out {
        let series: Vec<(&str, Vec<(f64, f64)>)> = runs.iter().map(|r| (r.name, r.curve.clone())).collect();
        cnflow::plot::curves(
            &path,
            "Training a neural ODE that becomes stiff: loss against time",
            "wall time (s)",
            "mean squared error",
            &series,
            true,
        )
        .unwrap_or_else(|e| panic!("{path}: {e}"));
        println!("\npicture: {path}");
    }
}
