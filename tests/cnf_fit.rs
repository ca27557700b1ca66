//! A fit small enough for CI: a CNF learns 8gaussians to a small KL gap, and the
//! trained density integrates to one.

use cnflow::cnf::{Block, Cnf, LossConfig, Trace};
use cnflow::data::Dataset;
use cnflow::nn::{Mlp, MlpConfig};
use cnflow::ode::{Method, SolverConfig};
use cnflow::optim::AdamConfig;
use cnflow::train::{test_set_rng, train, StopReason, TrainConfig, TrainState};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn eight_gaussians_fit_reaches_a_small_kl_gap_and_its_density_integrates_to_one() {
    let dataset = Dataset::EightGaussians;
    let arch = MlpConfig::parse(2, "16-16", "concatsquash", "tanh").unwrap();
    let field = Mlp::<f64>::new(arch, &mut ChaCha8Rng::seed_from_u64(0), false);
    let model = Cnf::new(vec![Block {
        field,
        t_end: 0.5,
        learn_t: true,
    }])
    .unwrap();
    let adam = AdamConfig::new(5e-3, 1e-5);
    let loss = LossConfig::new(SolverConfig::adaptive(Method::Dopri5, 1e-4, 1e-4));
    let config = TrainConfig {
        eval_every: 100,
        ..TrainConfig::new(400, 100, adam, loss)
    };
    let test: Vec<f64> = dataset.sample(2000, &mut test_set_rng(0)).iter().copied().collect();
    let mut state = TrainState::new(model, adam);
    let reason = train(
        &mut state,
        &config,
        |n, rng| dataset.sample(n, rng).iter().copied().collect(),
        &test,
        Some(dataset.entropy()),
        &mut [],
    );
    assert_eq!(reason, StopReason::Finished);
    let (best, nll, _) = state.best.unwrap();
    let gap = nll - dataset.entropy();
    assert!(gap < 0.3, "KL gap {gap} after 400 iterations");

    // ∫ p = 1 on [-6, 6]², midpoint rule with spacing 0.08.
    let (lo, h, n) = (-6.0, 0.08, 150);
    let grid: Vec<f64> = (0..n * n)
        .flat_map(|k| [lo + h * ((k % n) as f64 + 0.5), lo + h * ((k / n) as f64 + 0.5)])
        .collect();
    let lp = best
        .log_prob_par(&grid, &config.eval_solver, Trace::Exact, 2000, 0)
        .unwrap();
    let mass: f64 = lp.log_p.iter().map(|v| v.exp() * h * h).sum();
    assert!((mass - 1.0).abs() < 0.01, "the density integrates to {mass}");
}
