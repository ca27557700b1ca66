//! Adaptive stepping: achieved error tracks the tolerance, round trips, masks, counts.

use cnflow::ode::problems::Problem;
use cnflow::ode::{Method, SaveAt, SolverConfig};

mod ode_common;
use ode_common::{fitted_slope, max_abs_diff};

const ADAPTIVE: [Method; 3] = [Method::Bosh3, Method::Dopri5, Method::Tsit5];

/// Lotka–Volterra at `t` by classical RK4 with 200 000 fixed steps: an independent
/// reference accurate to about 1e-13.
fn lotka_volterra_reference(times: &[f64]) -> Vec<Vec<f64>> {
    let p = Problem::lotka_volterra();
    let sol = p
        .solve(
            &SolverConfig::fixed_steps(Method::Rk4, 200_000).with_max_steps(200_000),
            &SaveAt::times(times.to_vec()),
        )
        .unwrap();
    (0..times.len()).map(|i| sol.y_at(i).to_vec()).collect()
}

fn tolerances(m: Method) -> Vec<f64> {
    match m {
        Method::Bosh3 => vec![1e-4, 1e-5, 1e-6, 1e-7],
        _ => vec![1e-6, 1e-7, 1e-8, 1e-9, 1e-10],
    }
}

#[test]
fn lotka_volterra_error_tracks_tolerance() {
    let times: Vec<f64> = (1..=10).map(|i| i as f64).collect();
    let reference = lotka_volterra_reference(&times);
    let p = Problem::lotka_volterra();
    for m in ADAPTIVE {
        let tols = tolerances(m);
        let mut errs = Vec::new();
        for &tol in &tols {
            let sol = p
                .solve(&SolverConfig::adaptive(m, tol, tol), &SaveAt::times(times.clone()))
                .unwrap();
            let err = (0..times.len())
                .map(|i| max_abs_diff(sol.y_at(i), &reference[i]))
                .fold(0.0, f64::max);
            eprintln!("{m} tol {tol:e}: error {err:.3e}, {} steps", sol.stats.n_accepted);
            assert!(err < 200.0 * tol, "{m} at tol {tol:e}: error {err:e}");
            errs.push(err);
        }
        let slope = fitted_slope(&tols, &errs);
        eprintln!("{m}: error ∝ tol^{slope:.2}");
        assert!((0.7..=1.5).contains(&slope), "{m}: error ∝ tol^{slope}");
    }
}

#[test]
fn detest_problems_error_tracks_tolerance() {
    let times: Vec<f64> = (1..=20).map(|i| i as f64).collect();
    for p in Problem::detest() {
        for m in ADAPTIVE {
            let tols = [1e-6, 1e-7, 1e-8, 1e-9];
            let mut errs = Vec::new();
            for tol in tols {
                let sol = p
                    .solve(&SolverConfig::adaptive(m, tol, tol), &SaveAt::times(times.clone()))
                    .unwrap();
                let err = times
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| max_abs_diff(sol.y_at(i), &p.exact(t).unwrap()))
                    .fold(0.0, f64::max);
                eprintln!(
                    "{} {m} tol {tol:e}: error {err:.3e}, {} steps",
                    p.name, sol.stats.n_accepted
                );
                // Orbits accumulate phase error over three revolutions, the most at the
                // highest eccentricity (D5: e = 0.9); the bounds allow for it.
                let bound = match p.name {
                    "D5" => 1e4,
                    "D1" | "D3" => 3e3,
                    _ => 1e2,
                };
                assert!(err < bound * tol, "{} {m} tol {tol:e}: error {err:e}", p.name);
                errs.push(err);
            }
            let slope = fitted_slope(&tols, &errs);
            eprintln!("{} {m}: error ∝ tol^{slope:.2}", p.name);
            assert!(
                (0.6..=1.5).contains(&slope),
                "{} {m}: error ∝ tol^{slope}; errors {errs:?}",
                p.name
            );
        }
    }
}

#[test]
fn reverse_time_round_trip_returns_y0() {
    let p = Problem::lotka_volterra();
    for m in ADAPTIVE {
        let tol = if m == Method::Bosh3 { 1e-9 } else { 1e-11 };
        let config = SolverConfig::adaptive(m, tol, tol);
        let fwd = p.solve::<f64>(&config, &SaveAt::default()).unwrap();
        let back = Problem {
            y0: fwd.y_final.clone(),
            t0: p.t1,
            t1: p.t0,
            ..p.clone()
        };
        let sol = back.solve::<f64>(&config, &SaveAt::default()).unwrap();
        let err = max_abs_diff(&sol.y_final, &p.y0);
        eprintln!("{m}: round trip error {err:.2e}");
        assert!(err < 1e-6, "{m}: round trip error {err:e}");
        assert_eq!(sol.t_final, p.t0);
    }
    for m in [Method::Rk4, Method::Midpoint] {
        let config = SolverConfig::fixed_steps(m, 20_000);
        let fwd = p.solve::<f64>(&config, &SaveAt::default()).unwrap();
        let back = Problem {
            y0: fwd.y_final.clone(),
            t0: p.t1,
            t1: p.t0,
            ..p.clone()
        };
        let err = max_abs_diff(&back.solve::<f64>(&config, &SaveAt::default()).unwrap().y_final, &p.y0);
        assert!(err < 1e-5, "{m}: round trip error {err:e}");
    }
}

#[test]
fn error_mask_leaves_components_out_of_step_control() {
    // y0' = −y0 (controlled), y1' = 50 cos(50 t) (fast, left out).
    let config = SolverConfig::adaptive(Method::Dopri5, 1e-6, 1e-6);
    let mut both = |t: f64, y: &[f64], dy: &mut [f64]| {
        dy[0] = -y[0];
        dy[1] = 50.0 * (50.0 * t).cos();
    };
    let mut alone = |_t: f64, y: &[f64], dy: &mut [f64]| dy[0] = -y[0];
    let save = SaveAt::steps();
    let masked = cnflow::ode::integrate(
        &mut both,
        &[1.0, 0.0],
        0.0,
        5.0,
        &config.clone().with_error_mask(vec![true, false]),
        &save,
    )
    .unwrap();
    let single = cnflow::ode::integrate(&mut alone, &[1.0], 0.0, 5.0, &config, &save).unwrap();
    let full = cnflow::ode::integrate(&mut both, &[1.0, 0.0], 0.0, 5.0, &config, &save).unwrap();
    assert_eq!(
        masked.step_t, single.step_t,
        "the masked grid must be the grid of the controlled part alone"
    );
    assert!(
        full.stats.n_accepted > 3 * masked.stats.n_accepted,
        "{:?} vs {:?}",
        full.stats,
        masked.stats
    );
}

#[test]
fn evaluation_counts_follow_from_the_tableau() {
    let p = Problem::lotka_volterra();
    // FSAL dopri5: f(t0), one more for the starting-step heuristic, then 6 per step.
    let sol = p
        .solve::<f64>(&SolverConfig::adaptive(Method::Dopri5, 1e-6, 1e-6), &SaveAt::default())
        .unwrap();
    assert!(sol.stats.n_rejected > 0 || sol.stats.n_accepted > 10);
    assert_eq!(sol.stats.n_evals, 2 + 6 * sol.stats.n_steps());
    // Given h0, the heuristic is skipped.
    let config = SolverConfig::adaptive(Method::Tsit5, 1e-6, 1e-6).with_h0(0.01);
    let sol = p.solve::<f64>(&config, &SaveAt::default()).unwrap();
    assert_eq!(sol.stats.n_evals, 1 + 6 * sol.stats.n_steps());
    // Non-FSAL RK4 with n fixed steps: 4 evaluations a step.
    let sol = p
        .solve::<f64>(&SolverConfig::fixed_steps(Method::Rk4, 37), &SaveAt::default())
        .unwrap();
    assert_eq!(
        (sol.stats.n_evals, sol.stats.n_accepted, sol.stats.n_rejected),
        (4 * 37, 37, 0)
    );
    // Fixed size that does not divide the span: the last step is shortened.
    let p = Problem::damped_rotation();
    let sol = p
        .solve::<f64>(&SolverConfig::fixed_size(Method::Euler, 0.3), &SaveAt::steps())
        .unwrap();
    assert_eq!(sol.stats.n_accepted, 14);
    assert_eq!(*sol.step_t.last().unwrap(), 4.0);
    assert!((sol.step_t[1] - 0.3).abs() < 1e-15);
}

#[test]
fn step_grid_is_monotone_and_ends_on_t1() {
    let p = Problem::lotka_volterra();
    for m in ADAPTIVE {
        let sol = p
            .solve::<f64>(&SolverConfig::adaptive(m, 1e-6, 1e-6), &SaveAt::steps())
            .unwrap();
        assert_eq!(sol.step_t.len(), sol.stats.n_accepted + 1);
        assert_eq!(sol.step_y.len(), sol.step_t.len() * 2);
        assert_eq!(sol.step_t[0], 0.0);
        assert_eq!(*sol.step_t.last().unwrap(), 10.0);
        assert!(sol.step_t.windows(2).all(|w| w[1] > w[0]));
        assert_eq!(sol.step_y_at(sol.step_t.len() - 1), &sol.y_final[..]);
    }
}

#[test]
fn f32_solve_agrees_with_f64() {
    let p = Problem::lotka_volterra();
    let config = SolverConfig::adaptive(Method::Dopri5, 1e-5, 1e-5);
    let s32 = p.solve::<f32>(&config, &SaveAt::default()).unwrap();
    let s64 = p.solve::<f64>(&config, &SaveAt::default()).unwrap();
    let err = s32
        .y_final
        .iter()
        .zip(&s64.y_final)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    assert!(err < 1e-3, "f32 vs f64: {err}");
    let reference = lotka_volterra_reference(&[10.0]);
    let err32 = max_abs_diff(
        &s32.y_final.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        &reference[0],
    );
    assert!(err32 < 1e-3, "f32 vs reference: {err32}");
}
