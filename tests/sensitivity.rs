//! Gradients of losses at observation times for a system that is not a CNF
//! (Lotka–Volterra, four parameters, 20 irregular observation times): the continuous
//! adjoint with jumps, the discrete adjoint under every checkpoint policy, and central
//! finite differences.

use cnflow::ode::{DualSystem, Method, OdeSystem, SolverConfig, Vjp, WithVjp};
use cnflow::sensitivity::{gradient, Checkpointing, Sensitivity, SensitivityMethod};

use cnflow::ode::problems::LotkaVolterraModel as LotkaVolterra;

const P: [f64; 4] = [1.5, 1.0, 3.0, 1.0];
const Y0: [f64; 2] = [1.0, 1.0];

/// 20 irregular times in [0, 9.6]: t_i = 0.5 i + 0.1 sin 7i (gaps between 0.3 and 0.7).
fn times() -> Vec<f64> {
    (0..20).map(|i| 0.5 * i as f64 + 0.1 * (7.0 * i as f64).sin()).collect()
}

/// Data from other parameters, and the weighted squared error against it.
fn data() -> Vec<f64> {
    let mut sys = DualSystem::new(LotkaVolterra, vec![1.3, 0.9, 3.2, 1.1]);
    let t = times();
    let config = SolverConfig::adaptive(Method::Dopri5, 1e-12, 1e-12);
    let sol = cnflow::ode::integrate(
        &mut sys,
        &[1.2, 0.8],
        t[0],
        t[19],
        &config,
        &cnflow::ode::SaveAt::times(t.clone()),
    )
    .unwrap();
    sol.y
}

fn loss_fn(data: &[f64]) -> impl FnMut(usize, f64, &[f64], &mut [f64]) -> f64 + '_ {
    let weights = [1.0, 0.5];
    move |i, _t, y, grad| {
        let mut l = 0.0;
        for j in 0..2 {
            let r = y[j] - data[2 * i + j];
            l += weights[j] * r * r;
            grad[j] = 2.0 * weights[j] * r;
        }
        l
    }
}

fn grad_of(p: &[f64], y0: &[f64], times: &[f64], config: &SolverConfig, method: SensitivityMethod) -> Sensitivity<f64> {
    let d = data();
    let mut sys = DualSystem::new(LotkaVolterra, p.to_vec());
    let mut loss = loss_fn(&d);
    gradient(&mut sys, y0, times, &mut loss, config, method).unwrap()
}

fn loss_at(p: &[f64], y0: &[f64], times: &[f64], config: &SolverConfig) -> f64 {
    grad_of(
        p,
        y0,
        times,
        config,
        SensitivityMethod::Backprop(Checkpointing::Revolve { budget: 1 }),
    )
    .loss
}

/// Central differences of the loss in (y0, p).
fn finite_differences(config: &SolverConfig, eps: f64) -> Vec<f64> {
    let t = times();
    let mut out = Vec::new();
    for k in 0..6 {
        let (mut y_plus, mut p_plus) = (Y0.to_vec(), P.to_vec());
        let (mut y_minus, mut p_minus) = (Y0.to_vec(), P.to_vec());
        if k < 2 {
            y_plus[k] += eps;
            y_minus[k] -= eps;
        } else {
            p_plus[k - 2] += eps;
            p_minus[k - 2] -= eps;
        }
        out.push((loss_at(&p_plus, &y_plus, &t, config) - loss_at(&p_minus, &y_minus, &t, config)) / (2.0 * eps));
    }
    out
}

fn flat(s: &Sensitivity<f64>) -> Vec<f64> {
    s.grad_y0.iter().chain(&s.grad_params).copied().collect()
}

fn assert_close(what: &str, got: &[f64], want: &[f64], rel: f64) {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rel * scale,
            "{what}: component {k}: {g} vs {w} (rel. to max |grad| {scale}: {:e})",
            (g - w).abs() / scale
        );
    }
}

#[test]
fn adjoint_with_jumps_backprop_and_finite_differences_agree_on_lotka_volterra() {
    let t = times();
    let config = SolverConfig::adaptive(Method::Dopri5, 1e-12, 1e-12);
    let fd = finite_differences(&config, 1e-5);
    let adjoint = grad_of(&P, &Y0, &t, &config, SensitivityMethod::Adjoint { seminorm: true });
    let backprop = grad_of(&P, &Y0, &t, &config, SensitivityMethod::Backprop(Checkpointing::All));
    assert!(fd.iter().all(|g| g.abs() > 1e-3), "a degenerate test: {fd:?}");
    assert_close("adjoint vs finite differences", &flat(&adjoint), &fd, 1e-6);
    assert_close("backprop vs finite differences", &flat(&backprop), &fd, 1e-6);
    assert_close("adjoint vs backprop", &flat(&adjoint), &flat(&backprop), 1e-6);
    assert!((adjoint.loss - backprop.loss).abs() < 1e-9 * adjoint.loss.abs());
}

#[test]
fn adjoint_without_the_seminorm_agrees_too_and_the_seminorm_saves_work() {
    let t = times();
    let config = SolverConfig::adaptive(Method::Tsit5, 1e-10, 1e-10);
    let semi = grad_of(&P, &Y0, &t, &config, SensitivityMethod::Adjoint { seminorm: true });
    let full = grad_of(&P, &Y0, &t, &config, SensitivityMethod::Adjoint { seminorm: false });
    assert_close("seminorm vs full norm", &flat(&semi), &flat(&full), 1e-6);
    assert!(
        semi.n_evals_backward <= full.n_evals_backward,
        "{} > {}",
        semi.n_evals_backward,
        full.n_evals_backward
    );
}

#[test]
fn backprop_is_the_exact_gradient_of_a_fixed_step_solution() {
    // With fixed steps the discrete solution is a smooth function of (y0, p): its
    // finite differences match backprop to the differences' own truncation error.
    let t = times();
    let config = SolverConfig::fixed_size(Method::Rk4, 0.05);
    let fd = finite_differences(&config, 1e-5);
    let bp = grad_of(
        &P,
        &Y0,
        &t,
        &config,
        SensitivityMethod::Backprop(Checkpointing::StepStarts),
    );
    assert_close("backprop vs finite differences (rk4, h = 0.05)", &flat(&bp), &fd, 1e-7);
}

#[test]
fn every_checkpoint_policy_gives_bit_identical_gradients_within_its_budget() {
    let t = times();
    for method in [Method::Dopri5, Method::Bosh3, Method::Tsit5] {
        let config = SolverConfig::adaptive(method, 1e-9, 1e-9);
        let all = grad_of(&P, &Y0, &t, &config, SensitivityMethod::Backprop(Checkpointing::All));
        let starts = grad_of(
            &P,
            &Y0,
            &t,
            &config,
            SensitivityMethod::Backprop(Checkpointing::StepStarts),
        );
        assert_eq!(flat(&all), flat(&starts), "{method}: step starts");
        for budget in [1, 2, 3, 8] {
            let rev = grad_of(
                &P,
                &Y0,
                &t,
                &config,
                SensitivityMethod::Backprop(Checkpointing::Revolve { budget }),
            );
            assert_eq!(flat(&all), flat(&rev), "{method}: revolve with budget {budget}");
            assert!(
                rev.peak_stored_states <= budget,
                "{method}: revolve held {} states, budget {budget}",
                rev.peak_stored_states
            );
            assert!(rev.peak_stored_states >= 1);
            // Less memory is paid for in recomputation.
            assert!(rev.n_evals_backward >= starts.n_evals_backward);
        }
        assert!(
            starts.peak_stored_states > 8,
            "the budget test needs more steps than checkpoints"
        );
    }
}

#[test]
fn revolve_recomputes_less_with_a_larger_budget() {
    let t = [0.0, 10.0];
    let config = SolverConfig::fixed_steps(Method::Rk4, 200);
    let evals: Vec<usize> = [1, 2, 4, 16]
        .iter()
        .map(|&budget| {
            grad_of(
                &P,
                &Y0,
                &t,
                &config,
                SensitivityMethod::Backprop(Checkpointing::Revolve { budget }),
            )
            .n_evals_backward
        })
        .collect();
    assert!(evals.windows(2).all(|w| w[1] < w[0]), "{evals:?}");
    // With 16 checkpoints and 200 steps no step is advanced more than r = 3 times
    // (C(18, 16) = 153 < 200 ≤ C(19, 16) = 969), then replayed once and reversed:
    // at most (3 + 1)·200·4 stage evaluations plus 200·4 VJPs for RK4.
    assert!(evals[3] <= (3 + 1) * 200 * 4 + 200 * 4, "{evals:?}");
}

#[test]
fn time_gradients_of_the_adjoint_match_finite_differences_in_the_span() {
    let config = SolverConfig::adaptive(Method::Dopri5, 1e-12, 1e-12);
    let d = data();
    // A loss at the two ends only: ℓ(y(t0)) + ℓ(y(t1)).
    let loss_two = |t0: f64, t1: f64| {
        let mut sys = DualSystem::new(LotkaVolterra, P.to_vec());
        let mut l = |i: usize, t: f64, y: &[f64], g: &mut [f64]| loss_fn(&d)(if i == 0 { 0 } else { 19 }, t, y, g);
        gradient(
            &mut sys,
            &Y0,
            &[t0, t1],
            &mut l,
            &config,
            SensitivityMethod::Adjoint { seminorm: true },
        )
        .unwrap()
    };
    let s = loss_two(0.0, 3.0);
    let eps = 1e-5;
    let fd_t0 = (loss_two(eps, 3.0).loss - loss_two(-eps, 3.0).loss) / (2.0 * eps);
    let fd_t1 = (loss_two(0.0, 3.0 + eps).loss - loss_two(0.0, 3.0 - eps).loss) / (2.0 * eps);
    let (g0, g1) = (s.grad_t0.unwrap(), s.grad_t1.unwrap());
    assert!(
        (g0 - fd_t0).abs() < 1e-6 * fd_t0.abs().max(1.0),
        "dL/dt0 {g0} vs {fd_t0}"
    );
    assert!(
        (g1 - fd_t1).abs() < 1e-6 * fd_t1.abs().max(1.0),
        "dL/dt1 {g1} vs {fd_t1}"
    );
}

#[test]
fn a_hand_written_vjp_and_the_dual_number_one_give_the_same_gradient() {
    let t = times();
    let config = SolverConfig::adaptive(Method::Dopri5, 1e-10, 1e-10);
    let d = data();
    let p = P;
    let mut hand = WithVjp {
        rhs: move |_t: f64, y: &[f64], dy: &mut [f64]| {
            dy[0] = p[0] * y[0] - p[1] * y[0] * y[1];
            dy[1] = -p[2] * y[1] + p[3] * y[0] * y[1];
        },
        vjp: move |_t: f64, y: &[f64], w: &[f64], gy: &mut [f64], gp: &mut [f64]| {
            gy[0] = w[0] * (p[0] - p[1] * y[1]) + w[1] * p[3] * y[1];
            gy[1] = -w[0] * p[1] * y[0] + w[1] * (-p[2] + p[3] * y[0]);
            gp[0] += w[0] * y[0];
            gp[1] -= w[0] * y[0] * y[1];
            gp[2] -= w[1] * y[1];
            gp[3] += w[1] * y[0] * y[1];
        },
        n_params: 4,
    };
    for method in [
        SensitivityMethod::Adjoint { seminorm: true },
        SensitivityMethod::Backprop(Checkpointing::All),
    ] {
        let by_hand = gradient(&mut hand, &Y0, &t, &mut loss_fn(&d), &config, method).unwrap();
        let by_duals = grad_of(&P, &Y0, &t, &config, method);
        assert_close("hand-written vs dual VJP", &flat(&by_hand), &flat(&by_duals), 1e-12);
    }
}

#[test]
fn dual_number_vjp_jvp_and_jacobian_match_finite_differences() {
    use cnflow::ode::{Jacobian, Jvp};
    let mut sys = DualSystem::new(LotkaVolterra, P.to_vec());
    let (t, y) = (0.3, [0.7, 1.9]);
    let w = [0.4, -1.1];
    let v = [0.25, 0.6];
    let mut gy = [0.0; 2];
    let mut gp = [0.0; 4];
    sys.vjp(t, &y, &w, &mut gy, &mut gp);
    let eps = 1e-6;
    let f_at = |sys: &mut DualSystem<LotkaVolterra>, y: &[f64]| {
        let mut dy = [0.0; 2];
        sys.rhs(t, y, &mut dy);
        dy
    };
    // wᵀ ∂f/∂y_j and wᵀ ∂f/∂p_j by central differences.
    for j in 0..2 {
        let (mut yp, mut ym) = (y, y);
        yp[j] += eps;
        ym[j] -= eps;
        let (fp, fm) = (f_at(&mut sys, &yp), f_at(&mut sys, &ym));
        let fd: f64 = (0..2).map(|i| w[i] * (fp[i] - fm[i]) / (2.0 * eps)).sum();
        assert!((gy[j] - fd).abs() < 1e-8, "∂/∂y_{j}: {} vs {fd}", gy[j]);
    }
    for j in 0..4 {
        let mut pp = DualSystem::new(LotkaVolterra, P.to_vec());
        let mut pm = DualSystem::new(LotkaVolterra, P.to_vec());
        pp.params[j] += eps;
        pm.params[j] -= eps;
        let (fp, fm) = (f_at(&mut pp, &y), f_at(&mut pm, &y));
        let fd: f64 = (0..2).map(|i| w[i] * (fp[i] - fm[i]) / (2.0 * eps)).sum();
        assert!((gp[j] - fd).abs() < 1e-8, "∂/∂p_{j}: {} vs {fd}", gp[j]);
    }
    // ⟨w, J v⟩ = ⟨Jᵀ w, v⟩, and the Jacobian holds both.
    let (mut dy, mut jv) = ([0.0; 2], [0.0; 2]);
    sys.jvp(t, &y, &v, &mut dy, &mut jv);
    let lhs = w[0] * jv[0] + w[1] * jv[1];
    let rhs = gy[0] * v[0] + gy[1] * v[1];
    assert!((lhs - rhs).abs() < 1e-14, "{lhs} vs {rhs}");
    let mut jac = [0.0; 4];
    sys.jacobian(t, &y, &mut jac);
    for i in 0..2 {
        assert!((jac[2 * i] * v[0] + jac[2 * i + 1] * v[1] - jv[i]).abs() < 1e-14);
    }
    assert_eq!(dy, f_at(&mut sys, &y));
}

#[test]
fn bad_observation_times_are_refused() {
    let config = SolverConfig::adaptive(Method::Dopri5, 1e-6, 1e-6);
    let d = data();
    let mut sys = DualSystem::new(LotkaVolterra, P.to_vec());
    for (times, index) in [(vec![0.0], 1usize), (vec![0.0, 1.0, 1.0], 2), (vec![0.0, f64::NAN], 1)] {
        let err = gradient(
            &mut sys,
            &Y0,
            &times,
            &mut loss_fn(&d),
            &config,
            SensitivityMethod::Adjoint { seminorm: true },
        )
        .unwrap_err();
        assert!(
            matches!(err, cnflow::sensitivity::SensitivityError::InvalidTimes { index: i, .. } if i == index),
            "{times:?}: {err}"
        );
    }
    let err = gradient(
        &mut sys,
        &Y0,
        &[0.0, 1.0],
        &mut loss_fn(&d),
        &config,
        SensitivityMethod::Backprop(Checkpointing::Revolve { budget: 0 }),
    )
    .unwrap_err();
    assert!(err.to_string().contains("budget"), "{err}");
}

/// `dy/dt = −p y` in five components (one parameter), with its hand-written VJP.
struct Decay {
    p: f64,
}

impl OdeSystem<f64> for Decay {
    fn rhs(&mut self, _t: f64, y: &[f64], dy: &mut [f64]) {
        for (d, &v) in dy.iter_mut().zip(y) {
            *d = -self.p * v;
        }
    }
}

impl Vjp<f64> for Decay {
    fn n_params(&self) -> usize {
        1
    }
    fn vjp(&mut self, _t: f64, y: &[f64], w: &[f64], grad_y: &mut [f64], grad_p: &mut [f64]) {
        for (g, &wv) in grad_y.iter_mut().zip(w) {
            *g = -self.p * wv;
        }
        grad_p[0] -= w.iter().zip(y).map(|(a, b)| a * b).sum::<f64>();
    }
}

/// The buffers that a thread keeps from one gradient to the next (the reverse pass's
/// work area, the stage vectors of the forward solve) change no result: two problems of
/// different sizes and tableaus, each run twice in a row and then the other, on one
/// thread, give each one's gradient on a fresh thread, to the last bit.
#[test]
fn buffers_kept_between_gradients_change_nothing() {
    fn lotka_volterra() -> Vec<f64> {
        let config = SolverConfig::adaptive(Method::Dopri5, 1e-9, 1e-9);
        flat(&grad_of(
            &P,
            &Y0,
            &times(),
            &config,
            SensitivityMethod::Backprop(Checkpointing::All),
        ))
    }
    fn decay() -> Vec<f64> {
        let config = SolverConfig::adaptive(Method::Bosh3, 1e-8, 1e-8);
        let y0: Vec<f64> = (0..5).map(|i| 1.0 + i as f64).collect();
        let mut loss = |_: usize, _t: f64, y: &[f64], g: &mut [f64]| {
            g.iter_mut().zip(y).for_each(|(g, &v)| *g = 2.0 * v);
            y.iter().map(|v| v * v).sum::<f64>()
        };
        let s = gradient(
            &mut Decay { p: 0.7 },
            &y0,
            &[0.0, 0.4, 1.3],
            &mut loss,
            &config,
            SensitivityMethod::Backprop(Checkpointing::All),
        )
        .unwrap();
        flat(&s)
    }
    let fresh = |f: fn() -> Vec<f64>| std::thread::spawn(f).join().unwrap();
    let (lv, dc) = (fresh(lotka_volterra), fresh(decay));
    assert!(dc.iter().all(|v| v.is_finite()) && dc.iter().any(|&v| v != 0.0));
    std::thread::spawn(move || {
        // Each twice in a row (the second call runs on the first one's buffers), then
        // the other size.
        for round in 0..2 {
            for again in 0..2 {
                assert_eq!(lotka_volterra(), lv, "Lotka–Volterra, round {round}, call {again}");
            }
            for again in 0..2 {
                assert_eq!(decay(), dc, "decay, round {round}, call {again}");
            }
        }
    })
    .join()
    .unwrap();
}
