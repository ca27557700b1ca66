//! Lotka–Volterra, two ways (the seed material's parameter fit and hybrid model).
//!
//! 1. **Parameter recovery**: `dx = a x − b x y`, `dy = −d y + g x y` with
//!    `(a, b, d, g) = (1.5, 1, 3, 1)` from `(1, 1)`, observed at `t = 0, 0.1, …, 10` with
//!    1 % multiplicative noise; all four parameters fitted from `(2.2, 1.0, 2.0, 0.4)`
//!    (Tsit5 at rtol 1e-6 / atol 1e-8, mean squared error, Adam at 0.05, backprop) until
//!    every one is within 1 % of the truth — the settings of `benches/peers/lv_diffrax.py`.
//! 2. **Hybrid vs pure network**: trained on `[0, 5]` only, extrapolated to `[5, 10]`. The
//!    hybrid knows the linear terms, `dx = a x + NN_x`, `dy = −d y + NN_y`, with `a` and `d`
//!    fitted and a network for the interaction terms; the pure network `dx, dy = NN` has
//!    the same width (32 tanh units). Both train with a growing window (`t ≤ 1.5, 3,
//!    5`, 2000 iterations each, Adam at 0.03 with a cosine schedule); the maximum
//!    extrapolation error on `[5, 10]` is reported per seed.
//!
//! Run: `cargo run --release --example lotka_volterra_fit [-- --seeds 3] [--iters 6000]`

use std::ops::ControlFlow;
use std::time::Instant;

use cnflow::nn::Activation;
use cnflow::ode::{Method, SolverConfig};
use cnflow::optim::{AdamConfig, LrSchedule, OptimizerConfig};
use cnflow::sensitivity::{Checkpointing, SensitivityMethod};
use cnflow::series::{
    Equations, FitConfig, InputTransform, Mechanistic, NeuralTerm, Series, SeriesFit, SeriesModel, Trajectory,
};
use cnflow::train::{minimise, Outcome};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

const TRUTH: [f64; 4] = [1.5, 1.0, 3.0, 1.0];

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn equations(text: &str, params: &[&str]) -> Box<dyn Mechanistic> {
    Box::new(Equations::parse(text, &names(&["x", "y"]), &names(params)).expect("the equations parse"))
}

/// The true solution from (1, 1) at `times`, each value times `1 + noise·N(0, 1)`.
fn observations(times: &[f64], noise: f64, seed: u64) -> anyhow::Result<Series> {
    let lv = equations("dx = a*x - b*x*y; dy = -d*y + g*x*y", &["a", "b", "d", "g"]);
    let model = SeriesModel::new(names(&["x", "y"]), Some((lv, TRUTH.to_vec())), None)?;
    let exact = SolverConfig::adaptive(Method::Dopri5, 1e-11, 1e-11);
    let mut y = model.predict(&[1.0, 1.0], times, &exact)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = Normal::new(0.0, 1.0)?;
    for v in &mut y[2..] {
        *v *= 1.0 + noise * n.sample(&mut rng);
    }
    Ok(Series {
        time_name: "t".into(),
        names: names(&["x", "y"]),
        trajectories: vec![Trajectory::new("1", times.to_vec(), y)],
    })
}

fn config() -> FitConfig {
    FitConfig::new(
        SolverConfig::adaptive(Method::Tsit5, 1e-6, 1e-8),
        SensitivityMethod::Backprop(Checkpointing::All),
    )
}

/// Part 1: iterations and seconds until every parameter is within 1 % of the truth.
fn recover(seed: u64) -> anyhow::Result<(usize, f64, Vec<f64>)> {
    let times: Vec<f64> = (0..=100).map(|i| 0.1 * i as f64).collect();
    let data = observations(&times, 0.01, seed)?;
    let lv = equations("dx = a*x - b*x*y; dy = -d*y + g*x*y", &["a", "b", "d", "g"]);
    let model = SeriesModel::new(data.names.clone(), Some((lv, vec![2.2, 1.0, 2.0, 0.4])), None)?;
    let mut fit = SeriesFit::new(model, None, data, config())?;
    let mut opt = OptimizerConfig::Adam(AdamConfig::new(0.05, 0.0)).build(fit.n_params());
    let started = Instant::now();
    let mut reached = None;
    let outcome = minimise(
        &mut fit,
        &mut opt,
        LrSchedule::Constant,
        1,
        3000,
        |i| ChaCha8Rng::seed_from_u64(i as u64),
        |step, fit| {
            let close = fit
                .model
                .mech_params
                .iter()
                .zip(TRUTH)
                .all(|(p, t)| (p - t).abs() <= 0.01 * t);
            if close {
                reached = Some(step.iter);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        },
    );
    if let Outcome::Failed { iter, failure } = outcome {
        anyhow::bail!("iteration {iter} failed: {failure:?}");
    }
    let iters = reached.ok_or_else(|| anyhow::anyhow!("not within 1 % after 3000 iterations"))?;
    Ok((iters, started.elapsed().as_secs_f64(), fit.model.mech_params.clone()))
}

/// The models of part 2.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// `dx = a x + NN_x`, `dy = −d y + NN_y`.
    Hybrid,
    /// `dx, dy = NN`.
    Pure,
    /// The whole Lotka–Volterra model, all four parameters fitted: the floor no model
    /// trained on these observations is expected to beat.
    Mechanistic,
}

/// Part 2: the maximum error on [5, 10] of a model trained on [0, 5].
fn extrapolation_error(kind: Kind, seed: u64, iters: usize) -> anyhow::Result<(f64, f64)> {
    let train_t: Vec<f64> = (0..=50).map(|i| 0.1 * i as f64).collect();
    let data = observations(&train_t, 0.01, 100 + seed)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let hybrid = kind == Kind::Hybrid;
    let net = match kind {
        Kind::Mechanistic => None,
        _ => Some(NeuralTerm::new(
            2,
            &[32],
            Activation::Tanh,
            InputTransform::None,
            None,
            hybrid,
            &mut rng,
        )?),
    };
    let mech = match kind {
        Kind::Hybrid => Some((equations("dx = a*x; dy = -d*y", &["a", "d"]), vec![1.0, 2.0])),
        Kind::Pure => None,
        Kind::Mechanistic => Some((
            equations("dx = a*x - b*x*y; dy = -d*y + g*x*y", &["a", "b", "d", "g"]),
            vec![2.2, 1.0, 2.0, 0.4],
        )),
    };
    let model = SeriesModel::new(data.names.clone(), mech, net)?;
    let mut fit = SeriesFit::new(model, None, data, config())?;
    fit.set_curriculum(&[1.5, 3.0, 5.0], iters)?;
    let mut opt = OptimizerConfig::Adam(AdamConfig::new(0.03, 0.0)).build(fit.n_params());
    let started = Instant::now();
    let outcome = minimise(
        &mut fit,
        &mut opt,
        LrSchedule::Cosine { final_frac: 0.05 },
        1,
        iters,
        |i| ChaCha8Rng::seed_from_u64(i as u64),
        |_, _| ControlFlow::Continue(()),
    );
    if let Outcome::Failed { iter, failure } = outcome {
        anyhow::bail!("iteration {iter} failed: {failure:?}");
    }
    let seconds = started.elapsed().as_secs_f64();
    let test_t: Vec<f64> = (0..=100).map(|i| 0.1 * i as f64).collect();
    let truth = observations(&test_t, 0.0, 0)?;
    let pred = fit.predict(0, &test_t)?;
    let err = (50..=100)
        .flat_map(|i| (0..2).map(move |j| (i, j)))
        .map(|(i, j)| (pred[2 * i + j] - truth.trajectories[0].y[2 * i + j]).abs())
        .fold(0.0, f64::max);
    Ok((if err.is_nan() { f64::INFINITY } else { err }, seconds))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let seeds: u64 = args
        .iter()
        .position(|a| a == "--seeds")
        .map_or(Ok(3), |i| args[i + 1].parse())?;
    let iters: usize = args
        .iter()
        .position(|a| a == "--iters")
        .map_or(Ok(6000), |i| args[i + 1].parse())?;
    println!("1. parameter recovery from 1 %-noisy data, start (2.2, 1.0, 2.0, 0.4)");
    let mut secs = Vec::new();
    for seed in 0..seeds {
        let (it, s, p) = recover(seed)?;
        println!("   seed {seed}: within 1 % after {it} iterations, {s:.3} s; fitted {p:.4?}");
        secs.push(s);
    }
    println!("   median {:.3} s", median(secs));
    println!("2. trained on [0, 5], max |error| on [5, 10] ({iters} iterations, window 1.5 → 3 → 5)");
    let (mut h, mut n, mut m) = (Vec::new(), Vec::new(), Vec::new());
    for seed in 0..seeds {
        let (eh, sh) = extrapolation_error(Kind::Hybrid, seed, iters)?;
        let (en, sn) = extrapolation_error(Kind::Pure, seed, iters)?;
        let (em, sm) = extrapolation_error(Kind::Mechanistic, seed, iters)?;
        println!(
            "   seed {seed}: hybrid {eh:.4} ({sh:.2} s)   pure network {en:.4} ({sn:.2} s)   \
             mechanistic {em:.4} ({sm:.2} s)"
        );
        h.push(eh);
        n.push(en);
        m.push(em);
    }
    let (mh, mn, mm) = (median(h), median(n), median(m));
    println!(
        "   median: hybrid {mh:.4}, pure network {mn:.4}: the hybrid is {:.1}× better; \
         the whole mechanistic model, fitted the same way: {mm:.4}",
        mn / mh
    );
    Ok(())
}
