//! Every failure mode, provoked on purpose: a value with where and what to do, never a
//! panic or a hang.

use cnflow::ode::problems::Problem;
use cnflow::ode::{integrate, Method, PiController, SaveAt, SolveError, SolverConfig};

fn decay(_t: f64, y: &[f64], dy: &mut [f64]) {
    dy[0] = -y[0];
}

fn solve_decay(config: &SolverConfig, t0: f64, t1: f64, save: &SaveAt<f64>) -> Result<(), SolveError> {
    integrate(&mut decay, &[1.0], t0, t1, config, save).map(|_| ())
}

fn adaptive() -> SolverConfig {
    SolverConfig::adaptive(Method::Dopri5, 1e-6, 1e-6)
}

#[test]
fn empty_and_invalid_spans_are_refused() {
    let none = SaveAt::default();
    assert_eq!(
        solve_decay(&adaptive(), 1.0, 1.0, &none),
        Err(SolveError::EmptySpan { t: 1.0 })
    );
    assert!(matches!(
        solve_decay(&adaptive(), 0.0, f64::NAN, &none),
        Err(SolveError::InvalidSpan { .. })
    ));
    assert!(matches!(
        solve_decay(&adaptive(), f64::NEG_INFINITY, 1.0, &none),
        Err(SolveError::InvalidSpan { .. })
    ));
    let msg = solve_decay(&adaptive(), 2.0, 2.0, &none).unwrap_err().to_string();
    assert!(msg.contains("end time different"), "{msg}");
}

#[test]
fn invalid_configurations_are_refused_with_the_field_named() {
    let cases: Vec<(SolverConfig, &str)> = vec![
        (SolverConfig::adaptive(Method::Dopri5, -1e-6, 1e-6), "rtol"),
        (SolverConfig::adaptive(Method::Dopri5, 1e-6, f64::NAN), "atol"),
        (SolverConfig::adaptive(Method::Dopri5, 0.0, 0.0), "both 0"),
        (SolverConfig::adaptive(Method::Rk4, 1e-6, 1e-6), "no error estimate"),
        (SolverConfig::fixed_size(Method::Rk4, 0.0), "fixed step size"),
        (SolverConfig::fixed_size(Method::Rk4, f64::INFINITY), "fixed step size"),
        (SolverConfig::fixed_steps(Method::Rk4, 0), "number of fixed steps"),
        (adaptive().with_max_steps(0), "max_steps"),
        (adaptive().with_h0(-0.1), "h0"),
        (adaptive().with_h_min(0.1).with_h_max(0.01), "h_max"),
        (
            adaptive().with_controller(PiController {
                safety: 1.5,
                ..PiController::default()
            }),
            "safety",
        ),
    ];
    for (config, field) in cases {
        let err = solve_decay(&config, 0.0, 1.0, &SaveAt::default()).unwrap_err();
        assert!(matches!(err, SolveError::InvalidConfig(_)), "{err:?}");
        assert!(err.to_string().contains(field), "'{err}' should name {field}");
    }
}

#[test]
fn wrong_dimensions_are_refused() {
    let config = adaptive().with_error_mask(vec![true, false]);
    let err = solve_decay(&config, 0.0, 1.0, &SaveAt::default()).unwrap_err();
    assert_eq!(
        err,
        SolveError::DimensionMismatch {
            what: "error mask",
            got: 2,
            expected: 1
        }
    );
    let err = integrate(&mut decay, &[], 0.0, 1.0, &adaptive(), &SaveAt::default()).unwrap_err();
    assert!(matches!(
        err,
        SolveError::DimensionMismatch {
            what: "initial state",
            ..
        }
    ));
}

#[test]
fn output_times_outside_the_span_or_out_of_order_are_refused() {
    let cases = [
        (0.0, 1.0, vec![0.5, 1.5]),
        (0.0, 1.0, vec![0.6, 0.5]),
        (1.0, 0.0, vec![0.2, 0.5]),
        (0.0, 1.0, vec![f64::NAN]),
    ];
    for (t0, t1, times) in cases {
        let err = solve_decay(&adaptive(), t0, t1, &SaveAt::times(times.clone())).unwrap_err();
        assert!(
            matches!(
                err,
                SolveError::InvalidOutputTime { index: 1, .. } | SolveError::InvalidOutputTime { index: 0, .. }
            ),
            "{times:?}: {err:?}"
        );
    }
}

#[test]
fn blow_up_gives_step_size_too_small_near_the_singularity() {
    // y' = y², y(0) = 1 has y = 1/(1 − t): it blows up at t = 1.
    let mut blow_up = |_t: f64, y: &[f64], dy: &mut [f64]| dy[0] = y[0] * y[0];
    let config = adaptive().with_h_min(1e-6);
    let err = integrate(&mut blow_up, &[1.0], 0.0, 2.0, &config, &SaveAt::default()).unwrap_err();
    match err {
        SolveError::StepSizeTooSmall { t, h, h_min, n_steps } => {
            assert!(t > 0.99 && t < 1.0, "t = {t}");
            assert!(h.abs() < h_min && h_min == 1e-6 && n_steps > 0);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("blow-up"));
    // Without h_min the solve still ends, at the singularity, by underflow or overflow.
    let err = integrate(&mut blow_up, &[1.0], 0.0, 2.0, &adaptive(), &SaveAt::default()).unwrap_err();
    match err {
        SolveError::StepSizeTooSmall { t, .. } | SolveError::NonFinite { t, .. } => {
            assert!((t - 1.0).abs() < 1e-3, "{err:?}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn max_steps_is_enforced_for_adaptive_and_fixed_steps() {
    let p = Problem::lotka_volterra();
    let err = p
        .solve::<f64>(
            &SolverConfig::adaptive(Method::Dopri5, 1e-10, 1e-10).with_max_steps(10),
            &SaveAt::default(),
        )
        .unwrap_err();
    match err {
        SolveError::MaxStepsExceeded {
            t, n_steps, max_steps, ..
        } => {
            assert_eq!((n_steps, max_steps), (10, 10));
            assert!(t > 0.0 && t < 10.0);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("raise max_steps"));
    let err = p
        .solve::<f64>(
            &SolverConfig::fixed_steps(Method::Rk4, 50).with_max_steps(49),
            &SaveAt::default(),
        )
        .unwrap_err();
    assert!(
        matches!(err, SolveError::MaxStepsExceeded { max_steps: 49, .. }),
        "{err:?}"
    );
}

#[test]
fn non_finite_values_are_reported_where_they_appear() {
    let err = integrate(&mut decay, &[f64::NAN], 0.0, 1.0, &adaptive(), &SaveAt::default()).unwrap_err();
    assert!(
        matches!(
            err,
            SolveError::NonFinite {
                what: "initial state",
                ..
            }
        ),
        "{err:?}"
    );
    // A field that is NaN from the start.
    let mut nan_field = |_t: f64, _y: &[f64], dy: &mut [f64]| dy[0] = f64::NAN;
    let err = integrate(&mut nan_field, &[1.0], 0.0, 1.0, &adaptive(), &SaveAt::default()).unwrap_err();
    assert!(
        matches!(err, SolveError::NonFinite { what: "vector field", t, .. } if t == 0.0),
        "{err:?}"
    );
    // A field that turns NaN after t = 0.5: fixed steps stop at the first bad step...
    let mut late_nan = |t: f64, y: &[f64], dy: &mut [f64]| dy[0] = if t > 0.5 { f64::NAN } else { -y[0] };
    let err = integrate(
        &mut late_nan,
        &[1.0],
        0.0,
        1.0,
        &SolverConfig::fixed_steps(Method::Rk4, 10),
        &SaveAt::default(),
    )
    .unwrap_err();
    match err {
        SolveError::NonFinite {
            what: "state",
            t,
            n_steps,
            ..
        } => assert!((t - 0.5).abs() < 1e-12 && n_steps == 5, "{err:?}"),
        other => panic!("{other:?}"),
    }
    // ...and adaptive steps shrink towards it, then say so.
    let err = integrate(&mut late_nan, &[1.0], 0.0, 1.0, &adaptive(), &SaveAt::default()).unwrap_err();
    match &err {
        SolveError::NonFinite {
            what: "vector field",
            t,
            ..
        } => assert!((t - 0.5).abs() < 1e-9, "{err:?}"),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("check the vector field"));
}

#[test]
fn a_failed_solve_leaves_the_solver_reusable() {
    let mut solver = cnflow::ode::Solver::new(adaptive()).unwrap();
    let mut nan_field = |_t: f64, _y: &[f64], dy: &mut [f64]| dy[0] = f64::NAN;
    assert!(solver
        .solve(&mut nan_field, &[1.0], 0.0, 1.0, &SaveAt::default())
        .is_err());
    let sol = solver.solve(&mut decay, &[1.0], 0.0, 1.0, &SaveAt::default()).unwrap();
    assert!((sol.y_final[0] - (-1.0f64).exp()).abs() < 1e-6);
}
