//! Tableau identities and fitted convergence orders of every method.

use cnflow::ode::problems::Problem;
use cnflow::ode::{Interpolant, Method, SaveAt, SolverConfig, Tableau};

mod ode_common;
use ode_common::{fitted_slope, max_abs_diff};

/// Step counts that keep each order's errors between truncation and roundoff.
fn step_counts(order: u32) -> [usize; 4] {
    match order {
        1 => [100, 200, 400, 800],
        2 => [50, 100, 200, 400],
        3 => [20, 40, 80, 160],
        4 => [10, 20, 40, 80],
        _ => [16, 32, 64, 128],
    }
}

/// Global error at the end of the damped rotation with `n` fixed steps of `tab`.
fn global_error(method: Method, n: usize) -> f64 {
    let p = Problem::damped_rotation();
    let sol = p
        .solve(&SolverConfig::fixed_steps(method, n), &SaveAt::default())
        .unwrap();
    max_abs_diff(&sol.y_final, &p.exact(p.t1).unwrap())
}

#[test]
fn every_tableau_satisfies_its_identities() {
    for m in Method::ALL {
        let tab = m.tableau();
        tab.check(1e-13).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tab.is_adaptive(), tab.embedded_order.is_some(), "{}", tab.name);
        assert!(!tab.reference.is_empty());
        assert_eq!(m.name().parse::<Method>().unwrap(), m);
    }
}

#[test]
fn tableau_check_catches_a_wrong_coefficient() {
    let mut bad = *Method::Dopri5.tableau();
    bad.b = &[
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 85.0,
        0.0,
    ];
    assert!(bad.check(1e-14).is_err());
    let mut bad = *Method::Rk4.tableau();
    bad.c = &[0.0, 0.5, 0.6, 1.0];
    assert!(bad.check(1e-14).is_err());
}

#[test]
fn unknown_method_name_lists_the_choices() {
    let err = "rk45".parse::<Method>().unwrap_err();
    assert!(err.contains("dopri5") && err.contains("euler"), "{err}");
}

#[test]
fn every_method_converges_at_its_order() {
    for m in Method::ALL {
        let order = m.tableau().order;
        let ns = step_counts(order);
        let hs: Vec<f64> = ns.iter().map(|&n| 4.0 / n as f64).collect();
        let errs: Vec<f64> = ns.iter().map(|&n| global_error(m, n)).collect();
        let slope = fitted_slope(&hs, &errs);
        eprintln!("{m}: fitted order {slope:.3}");
        assert!(
            (slope - order as f64).abs() <= 0.3,
            "{m}: fitted order {slope:.3}, expected {order}; errors {errs:?}"
        );
    }
}

#[test]
fn embedded_solutions_converge_at_their_order() {
    for m in [Method::Bosh3, Method::Dopri5, Method::Tsit5] {
        let tab = m.tableau();
        let e = tab.b_err.unwrap();
        // The embedded weights b̂ = b − e, run as a method of their own (no FSAL).
        let b_hat: Vec<f64> = tab.b.iter().zip(e).map(|(b, e)| b - e).collect();
        let embedded = Tableau {
            b: Box::leak(b_hat.into_boxed_slice()),
            b_err: None,
            fsal: false,
            interpolant: Interpolant::Hermite,
            order: tab.embedded_order.unwrap(),
            embedded_order: None,
            ..*tab
        };
        let order = embedded.order;
        let ns = step_counts(order);
        let mut errs = Vec::new();
        let p = Problem::damped_rotation();
        let exact = p.exact(p.t1).unwrap();
        for &n in &ns {
            // Fixed-step integration by hand with the embedded tableau.
            let h = (p.t1 - p.t0) / n as f64;
            let mut y = p.y0.clone();
            let s = embedded.n_stages();
            let mut k = vec![vec![0.0; 2]; s];
            for step in 0..n {
                let t = p.t0 + step as f64 * h;
                for i in 0..s {
                    let mut ys = y.clone();
                    for (j, a) in embedded.a[i].iter().enumerate() {
                        for c in 0..2 {
                            ys[c] += h * a * k[j][c];
                        }
                    }
                    let mut out = [0.0; 2];
                    p.rhs(t + embedded.c[i] * h, &ys, &mut out);
                    k[i].copy_from_slice(&out);
                }
                for (i, b) in embedded.b.iter().enumerate() {
                    for c in 0..2 {
                        y[c] += h * b * k[i][c];
                    }
                }
            }
            errs.push(max_abs_diff(&y, &exact));
        }
        let hs: Vec<f64> = ns.iter().map(|&n| 4.0 / n as f64).collect();
        let slope = fitted_slope(&hs, &errs);
        assert!(
            (slope - order as f64).abs() <= 0.3,
            "{m} embedded: fitted order {slope:.3}, expected {order}"
        );
    }
}
