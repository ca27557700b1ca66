//! Time-series fitting: gradients of every loss against each other and finite
//! differences (missing values, fitted initial states, multiple shooting), the equation
//! parser's derivatives, parameter recovery, and single vs multiple shooting.

use std::ops::ControlFlow;

use cnflow::nn::Activation;
use cnflow::ode::{Method, SolverConfig};
use cnflow::optim::{AdamConfig, LrSchedule, OptimizerConfig};
use cnflow::sensitivity::{Checkpointing, SensitivityMethod};
use cnflow::series::{
    Equations, FitConfig, InputTransform, Mechanistic, NeuralTerm, Series, SeriesFit, SeriesModel, Trajectory,
};
use cnflow::train::{minimise, Outcome, Problem};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const LV: &str = "dx = a*x - b*x*y; dy = -d*y + g*x*y";
const TRUTH: [f64; 4] = [1.5, 1.0, 3.0, 1.0];

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn lv_equations() -> Box<dyn Mechanistic> {
    Box::new(Equations::parse(LV, &s(&["x", "y"]), &s(&["a", "b", "d", "g"])).unwrap())
}

/// Noise-free Lotka–Volterra observations from (1, 1) at `times`.
fn lv_series(times: &[f64]) -> Series {
    let mut model = SeriesModel::new(s(&["x", "y"]), Some((lv_equations(), TRUTH.to_vec())), None).unwrap();
    model.mech_params = TRUTH.to_vec();
    let exact = SolverConfig::adaptive(Method::Dopri5, 1e-12, 1e-12);
    let y = model.predict(&[1.0, 1.0], times, &exact).unwrap();
    Series {
        time_name: "t".into(),
        names: s(&["x", "y"]),
        trajectories: vec![Trajectory::new("1", times.to_vec(), y)],
    }
}

fn flat(fit: &SeriesFit) -> Vec<f64> {
    let mut p = Vec::new();
    fit.params(&mut p);
    p
}

fn loss_at(fit: &mut SeriesFit, p: &[f64]) -> f64 {
    let keep = flat(fit);
    fit.set_params(p);
    let mut g = Vec::new();
    let (l, _) = fit.loss_and_grad_at(f64::INFINITY, &mut g).unwrap();
    fit.set_params(&keep);
    l
}

/// A hybrid model (LV equations with a network on dy) on two trajectories with missing
/// values, fitted initial states and `shooting` segments.
fn hybrid_fit(gradient: SensitivityMethod, shooting: usize) -> SeriesFit {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let net = NeuralTerm::new(
        2,
        &[5],
        Activation::Tanh,
        InputTransform::Cube,
        Some(vec![false, true]),
        false,
        &mut rng,
    )
    .unwrap();
    let model = SeriesModel::new(
        s(&["x", "y"]),
        Some((lv_equations(), vec![1.2, 0.9, 2.5, 1.1])),
        Some(net),
    )
    .unwrap();
    let mut a = lv_series(&[0.0, 0.3, 0.35, 0.9, 1.4, 2.0]);
    a.trajectories[0].y[3] = f64::NAN;
    a.trajectories[0].y[8] = f64::NAN;
    let mut b = lv_series(&[0.0, 0.5, 1.1, 1.7]);
    for v in &mut b.trajectories[0].y {
        *v *= 0.8;
    }
    b.trajectories[0].y[0] = f64::NAN;
    b.trajectories[0].id = "2".into();
    a.trajectories.push(b.trajectories.remove(0));
    let mut config = FitConfig::new(SolverConfig::adaptive(Method::Tsit5, 1e-11, 1e-11), gradient);
    config.learn_y0 = true;
    config.shooting = shooting;
    config.weights = vec![1.0, 0.5];
    SeriesFit::new(model, Some(vec![true, false, true, true]), a, config).unwrap()
}

fn assert_close(a: &[f64], b: &[f64], rtol: f64, atol: f64, what: &str) {
    assert_eq!(a.len(), b.len());
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= atol + rtol * y.abs(),
            "{what}: component {k}: {x} vs {y}"
        );
    }
}

#[test]
fn adjoint_backprop_and_finite_differences_agree_with_missing_values_and_shooting() {
    for shooting in [1, 2] {
        let backprop = SensitivityMethod::Backprop(Checkpointing::All);
        let mut fit = hybrid_fit(backprop, shooting);
        let mut g_bp = Vec::new();
        let (l_bp, _) = fit.loss_and_grad_at(f64::INFINITY, &mut g_bp).unwrap();
        assert!(l_bp > 1e-3, "the starting point is not the optimum: {l_bp}");
        assert_eq!(g_bp.len(), fit.n_params());

        let adjoint = SensitivityMethod::Adjoint { seminorm: false };
        let fit_adj = hybrid_fit(adjoint, shooting);
        let mut g_adj = Vec::new();
        let (l_adj, _) = fit_adj.loss_and_grad_at(f64::INFINITY, &mut g_adj).unwrap();
        assert!((l_adj - l_bp).abs() < 1e-9 * l_bp);
        assert_close(&g_adj, &g_bp, 1e-6, 1e-8, "adjoint vs backprop");

        let revolve = hybrid_fit(
            SensitivityMethod::Backprop(Checkpointing::Revolve { budget: 2 }),
            shooting,
        );
        let mut g_rev = Vec::new();
        revolve.loss_and_grad_at(f64::INFINITY, &mut g_rev).unwrap();
        assert_eq!(g_rev, g_bp, "checkpointing changes no bit");

        let p = flat(&fit);
        let mut fd = vec![0.0; p.len()];
        for k in 0..p.len() {
            let h = 1e-6 * p[k].abs().max(1.0);
            let (mut pp, mut pm) = (p.clone(), p.clone());
            pp[k] += h;
            pm[k] -= h;
            fd[k] = (loss_at(&mut fit, &pp) - loss_at(&mut fit, &pm)) / (2.0 * h);
        }
        assert_close(&g_bp, &fd, 1e-5, 1e-7, "backprop vs finite differences");
    }
}

#[test]
fn equation_derivatives_match_finite_differences() {
    let states = s(&["u", "v", "w"]);
    let params = s(&["k1", "k2"]);
    let text = "du = -k1*u + k2*v*w^2 - sin(t*u)\ndv = exp(-v)*k1/(1 + u^2) + sqrt(w)\ndw = tanh(k2*u) - log(w)*v";
    let mut eq = Equations::parse(text, &states, &params).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for _ in 0..20 {
        let y: Vec<f64> = (0..3).map(|_| 0.2 + rand::Rng::random::<f64>(&mut rng)).collect();
        let p: Vec<f64> = (0..2).map(|_| rand::Rng::random::<f64>(&mut rng) - 0.5).collect();
        let w: Vec<f64> = (0..3).map(|_| rand::Rng::random::<f64>(&mut rng) - 0.5).collect();
        let t = rand::Rng::random::<f64>(&mut rng);
        let (mut gy, mut gp) = (vec![0.0; 3], vec![0.0; 2]);
        eq.vjp(t, &y, &p, &w, &mut gy, &mut gp);
        let mut f = |y: &[f64], p: &[f64]| {
            let mut dy = [0.0; 3];
            eq.rhs(t, y, p, &mut dy);
            dy.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>()
        };
        let h = 1e-6;
        for j in 0..3 {
            let (mut yp, mut ym) = (y.clone(), y.clone());
            yp[j] += h;
            ym[j] -= h;
            let fd = (f(&yp, &p) - f(&ym, &p)) / (2.0 * h);
            assert!((gy[j] - fd).abs() < 1e-7, "∂/∂y{j}: {} vs {fd}", gy[j]);
        }
        for k in 0..2 {
            let (mut pp, mut pm) = (p.clone(), p.clone());
            pp[k] += h;
            pm[k] -= h;
            let fd = (f(&y, &pp) - f(&y, &pm)) / (2.0 * h);
            assert!((gp[k] - fd).abs() < 1e-7, "∂/∂p{k}: {} vs {fd}", gp[k]);
        }
    }
}

fn fit_lv(shooting: usize, start: &[f64], iters: usize, times: &[f64]) -> SeriesFit {
    let model = SeriesModel::new(s(&["x", "y"]), Some((lv_equations(), start.to_vec())), None).unwrap();
    let mut config = FitConfig::new(
        SolverConfig::adaptive(Method::Tsit5, 1e-9, 1e-9),
        SensitivityMethod::Backprop(Checkpointing::All),
    );
    config.shooting = shooting;
    let mut fit = SeriesFit::new(model, None, lv_series(times), config).unwrap();
    let mut opt = OptimizerConfig::Adam(AdamConfig::new(0.02, 0.0)).build(fit.n_params());
    let outcome = minimise(
        &mut fit,
        &mut opt,
        LrSchedule::Cosine { final_frac: 1e-3 },
        1,
        iters,
        |i| ChaCha8Rng::seed_from_u64(i as u64),
        |_, _| ControlFlow::Continue(()),
    );
    assert_eq!(outcome, Outcome::Finished);
    fit
}

#[test]
fn lotka_volterra_parameters_are_recovered_from_noise_free_data() {
    let times: Vec<f64> = (0..=40).map(|i| 0.25 * i as f64).collect();
    let fit = fit_lv(1, &[1.3, 0.8, 2.7, 0.8], 3000, &times);
    assert_close(&fit.model.mech_params, &TRUTH, 0.0, 1e-4, "recovered parameters");
}

#[test]
fn multiple_and_single_shooting_reach_the_same_optimum() {
    let times: Vec<f64> = (0..=16).map(|i| 0.25 * i as f64).collect();
    let single = fit_lv(1, &[1.3, 0.8, 2.7, 0.8], 3000, &times);
    let multiple = fit_lv(4, &[1.3, 0.8, 2.7, 0.8], 3000, &times);
    assert_close(&single.model.mech_params, &TRUTH, 0.0, 1e-3, "single shooting");
    assert_close(
        &multiple.model.mech_params,
        &multiple_truth(&single),
        0.0,
        2e-3,
        "multiple vs single",
    );
    // The shooting states sit on the trajectory.
    let truth = lv_series(&times);
    let b = &multiple.boundaries[0];
    for (s, &row) in b[1..b.len() - 1].iter().enumerate() {
        let node = &multiple.nodes[0][2 * s..2 * s + 2];
        assert_close(node, truth.trajectories[0].row(row, 2), 0.0, 1e-3, "shooting state");
    }
}

fn multiple_truth(single: &SeriesFit) -> Vec<f64> {
    single.model.mech_params.clone()
}

#[test]
fn the_curriculum_grows_the_window() {
    let times: Vec<f64> = (0..=10).map(|i| 0.5 * i as f64).collect();
    let mut fit = fit_lv(1, &TRUTH, 1, &times);
    fit.set_curriculum(&[1.5, 3.0, 5.0], 300).unwrap();
    assert_eq!(
        [
            fit.window_at(1),
            fit.window_at(100),
            fit.window_at(101),
            fit.window_at(300)
        ],
        [1.5, 1.5, 3.0, 5.0]
    );
    let mut g = Vec::new();
    let (_, r) = fit
        .loss_and_grad(150, &mut ChaCha8Rng::seed_from_u64(0), &mut g)
        .unwrap();
    assert_eq!(r.window, 3.0);
    fit.config.shooting = 2;
    assert!(fit.set_curriculum(&[1.0], 10).is_err());
}

#[test]
fn a_rust_term_through_dual_numbers_equals_the_same_equations() {
    use cnflow::ode::problems::LotkaVolterraModel;
    use cnflow::series::Generic;
    let mut rust = Generic::new(LotkaVolterraModel, &["a", "b", "d", "g"]);
    let mut text = lv_equations();
    assert_eq!(rust.param_names(), text.param_names());
    let (y, p, w) = ([1.3, 0.7], [1.5, 1.0, 3.0, 1.0], [0.4, -1.2]);
    let (mut f1, mut f2) = ([0.0; 2], [0.0; 2]);
    rust.rhs(0.0, &y, &p, &mut f1);
    text.rhs(0.0, &y, &p, &mut f2);
    assert_close(&f1, &f2, 1e-15, 0.0, "right-hand side");
    // Both ADD into their outputs.
    let (mut gy1, mut gp1, mut gy2, mut gp2) = ([1.0; 2], [1.0; 4], [1.0; 2], [1.0; 4]);
    rust.vjp(0.0, &y, &p, &w, &mut gy1, &mut gp1);
    text.vjp(0.0, &y, &p, &w, &mut gy2, &mut gp2);
    assert_close(&gy1, &gy2, 1e-14, 1e-15, "VJP in y");
    assert_close(&gp1, &gp2, 1e-14, 1e-15, "VJP in p");
    assert!((gp1[0] - (1.0 + w[0] * y[0])).abs() < 1e-15, "∂/∂a = w_x x, added to 1");
}
