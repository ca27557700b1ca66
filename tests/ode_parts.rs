//! The solver's parts on their own: a user's tableau, the controllers, and the driver
//! stepped by hand.

use cnflow::ode::{integrate, Interpolant, Method, PidController, SaveAt, Solver, SolverConfig, StepOutcome, Tableau};

/// Ralston's third-order method (A. Ralston, Runge–Kutta methods with minimum error
/// bounds, Math. Comp. 16 (1962)). It has no embedded pair: fixed steps only.
const RALSTON3: Tableau = Tableau {
    name: "ralston3",
    reference: "A. Ralston, Runge–Kutta methods with minimum error bounds, Math. Comp. 16 (1962)",
    c: &[0.0, 0.5, 0.75],
    a: &[&[], &[0.5], &[0.0, 0.75]],
    b: &[2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0],
    b_err: None,
    order: 3,
    embedded_order: None,
    fsal: false,
    interpolant: Interpolant::Hermite,
    interpolant_order: 3,
};

/// y'' = −y from (1, 0): error at t = 5 against (cos 5, −sin 5).
fn oscillator_error(solver: &mut Solver<f64>) -> f64 {
    let mut f = |_t: f64, y: &[f64], dy: &mut [f64]| {
        dy[0] = y[1];
        dy[1] = -y[0];
    };
    let sol = solver.solve(&mut f, &[1.0, 0.0], 0.0, 5.0, &SaveAt::default()).unwrap();
    ((sol.y_final[0] - 5f64.cos()).powi(2) + (sol.y_final[1] + 5f64.sin()).powi(2)).sqrt()
}

#[test]
fn a_user_tableau_runs_and_converges_at_its_order() {
    RALSTON3.check(1e-15).unwrap();
    let errors: Vec<f64> = [40usize, 80, 160, 320]
        .iter()
        .map(|&n| {
            let mut s = Solver::with_tableau(SolverConfig::fixed_steps(Method::Euler, n), &RALSTON3).unwrap();
            oscillator_error(&mut s)
        })
        .collect();
    for w in errors.windows(2) {
        let order = (w[0] / w[1]).log2();
        assert!((order - 3.0).abs() < 0.1, "observed order {order} from {errors:?}");
    }
}

#[test]
fn a_user_tableau_that_fails_its_identities_or_cannot_adapt_is_refused() {
    const BROKEN: Tableau = Tableau {
        b: &[0.2, 1.0 / 3.0, 4.0 / 9.0],
        ..RALSTON3
    };
    let err = Solver::<f64>::with_tableau(SolverConfig::fixed_steps(Method::Euler, 10), &BROKEN)
        .err()
        .unwrap();
    assert!(err.to_string().contains("Σb"), "{err}");
    let err = Solver::<f64>::with_tableau(SolverConfig::adaptive(Method::Dopri5, 1e-6, 1e-6), &RALSTON3)
        .err()
        .unwrap();
    assert!(err.to_string().contains("no error estimate"), "{err}");
}

#[test]
fn every_controller_meets_the_tolerance_and_pi_beats_i_on_steps() {
    // Error tracks the tolerance with the I, PI and a PID controller (Dopri5, oscillator).
    let mut steps = Vec::new();
    for (name, ctrl) in [
        ("I", PidController::i()),
        ("PI", PidController::pi()),
        ("PID", PidController::pid(0.7, 0.4, 0.1)),
    ] {
        for tol in [1e-5, 1e-8] {
            let config = SolverConfig::adaptive(Method::Dopri5, tol, tol).with_controller(ctrl);
            let mut s = Solver::new(config).unwrap();
            let err = oscillator_error(&mut s);
            assert!(err < 100.0 * tol, "{name} at {tol}: error {err}");
        }
        let config = SolverConfig::adaptive(Method::Dopri5, 1e-8, 1e-8).with_controller(ctrl);
        let mut f = |_t: f64, y: &[f64], dy: &mut [f64]| {
            dy[0] = y[1];
            dy[1] = -y[0];
        };
        let sol = integrate(&mut f, &[1.0, 0.0], 0.0, 50.0, &config, &SaveAt::default()).unwrap();
        steps.push((name, sol.stats));
    }
    // The gains change the step sequence (the controllers are not the same value).
    assert_ne!(steps[0].1, steps[1].1);
    assert_ne!(steps[1].1, steps[2].1);
}

#[test]
fn stepping_by_hand_is_the_same_solve() {
    let config = SolverConfig::adaptive(Method::Tsit5, 1e-7, 1e-7);
    let mut f = |t: f64, y: &[f64], dy: &mut [f64]| {
        dy[0] = y[1];
        dy[1] = -y[0] + 0.3 * t.sin();
    };
    let save = SaveAt::times(vec![0.5, 1.7, 3.0]);
    let whole = integrate(&mut f, &[1.0, 0.0], 0.0, 3.0, &config, &save).unwrap();
    let mut solver = Solver::new(config).unwrap();
    let mut run = solver.start(&mut f, &[1.0, 0.0], 0.0, 3.0, &save).unwrap();
    let (mut accepted, mut rejected, mut t_last) = (0, 0, 0.0);
    while !run.is_done() {
        match run.step(&mut f).unwrap() {
            StepOutcome::Accepted { t_prev, t, .. } => {
                assert_eq!(t_prev, t_last);
                assert!(t > t_prev);
                t_last = t;
                accepted += 1;
            }
            StepOutcome::Rejected { err, .. } => {
                assert!(err > 1.0);
                rejected += 1;
            }
        }
        assert_eq!(run.t(), t_last);
    }
    assert!(run.step(&mut f).is_err(), "a finished solve takes no more steps");
    let by_hand = run.finish();
    assert_eq!(by_hand, whole);
    assert_eq!((accepted, rejected), (whole.stats.n_accepted, whole.stats.n_rejected));
}
