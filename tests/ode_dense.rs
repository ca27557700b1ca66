//! Dense output: accurate between steps, at its order, without extra steps.

use cnflow::ode::problems::Problem;
use cnflow::ode::{Method, SaveAt, SolverConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod ode_common;
use ode_common::max_abs_diff;

#[test]
fn dense_output_converges_at_its_order_inside_one_step() {
    // One step of size h; the output at θ = 0.37 carries the step's local error
    // O(h^(p+1)) and the interpolant's O(h^(q+1)): the slope is min(p, q) + 1.
    let p = Problem::damped_rotation();
    for m in Method::ALL {
        let tab = m.tableau();
        let expected = tab.order.min(tab.interpolant_order) as f64 + 1.0;
        let hs = [0.4, 0.2, 0.1, 0.05];
        let errs: Vec<f64> = hs
            .iter()
            .map(|&h| {
                let one_step = Problem { t1: h, ..p.clone() };
                let tau = 0.37 * h;
                let sol = one_step
                    .solve(&SolverConfig::fixed_steps(m, 1), &SaveAt::times(vec![tau]))
                    .unwrap();
                assert_eq!(sol.stats.n_accepted, 1);
                max_abs_diff(sol.y_at(0), &p.exact(tau).unwrap())
            })
            .collect();
        let slope = (errs[0] / errs[3]).ln() / (hs[0] / hs[3]).ln();
        assert!(
            (slope - expected).abs() < 0.4,
            "{m}: dense order {slope:.2}, expected {expected}; {errs:?}"
        );
    }
}

#[test]
fn dense_output_at_irregular_times_matches_the_exact_solution() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for p in Problem::detest().into_iter().chain([Problem::damped_rotation()]) {
        let mut times: Vec<f64> = (0..200).map(|_| rng.random_range(p.t0..p.t1)).collect();
        times.sort_by(f64::total_cmp);
        for m in [Method::Bosh3, Method::Dopri5, Method::Tsit5] {
            let config = SolverConfig::adaptive(m, 1e-8, 1e-8);
            let dense = p
                .solve(
                    &config,
                    &SaveAt {
                        t: times.clone(),
                        steps: true,
                    },
                )
                .unwrap();
            let plain = p.solve::<f64>(&config, &SaveAt::default()).unwrap();
            // Output times cost no extra steps and no extra evaluations.
            assert_eq!(dense.stats, plain.stats, "{} {m}", p.name);
            // Off-grid error, in units of the tolerance, is of the order of the error on the
            // step grid (the order-4 interpolants of the order-5 pairs may add a little).
            let scaled = |y: &[f64], t: f64| {
                let exact = p.exact(t).unwrap();
                y.iter()
                    .zip(&exact)
                    .map(|(a, b)| (a - b).abs() / (1e-8 + 1e-8 * b.abs()))
                    .fold(0.0, f64::max)
            };
            let grid_err = dense
                .step_t
                .iter()
                .enumerate()
                .map(|(i, &t)| scaled(dense.step_y_at(i), t))
                .fold(0.0, f64::max);
            let dense_err = times
                .iter()
                .enumerate()
                .map(|(i, &t)| scaled(dense.y_at(i), t))
                .fold(0.0, f64::max);
            eprintln!("{} {m}: dense {dense_err:.2}, grid {grid_err:.2} (× tolerance)", p.name);
            assert!(
                dense_err <= 3.0 * grid_err + 10.0,
                "{} {m}: dense {dense_err}, grid {grid_err}",
                p.name
            );
        }
    }
}

#[test]
fn output_times_work_backward_in_time_and_at_the_ends() {
    let p = Problem::damped_rotation();
    let back = Problem {
        t0: 4.0,
        t1: 0.0,
        y0: p.exact(4.0).unwrap(),
        ..p.clone()
    };
    let times = vec![4.0, 3.5, 2.2, 2.2, 1.0, 0.0];
    for config in [
        SolverConfig::adaptive(Method::Tsit5, 1e-9, 1e-9),
        SolverConfig::fixed_steps(Method::Rk4, 400),
    ] {
        let sol = back.solve(&config, &SaveAt::times(times.clone())).unwrap();
        assert_eq!(sol.t, times);
        for (i, &t) in times.iter().enumerate() {
            let err = max_abs_diff(sol.y_at(i), &p.exact(t).unwrap());
            assert!(err < 1e-7, "t = {t}: {err:e}");
        }
        assert_eq!(sol.y_at(5), &sol.y_final[..]);
        assert_eq!(sol.y_at(0), &back.y0[..]);
    }
}

#[test]
fn hermite_methods_serve_times_inside_the_last_step_with_one_evaluation() {
    let p = Problem::damped_rotation();
    let config = SolverConfig::fixed_steps(Method::Rk4, 10);
    let plain = p.solve::<f64>(&config, &SaveAt::default()).unwrap();
    let inside_last = p.solve(&config, &SaveAt::times(vec![3.9])).unwrap();
    assert_eq!(inside_last.stats.n_evals, plain.stats.n_evals + 1);
    let end_err = max_abs_diff(&plain.y_final, &p.exact(4.0).unwrap());
    let err = max_abs_diff(inside_last.y_at(0), &p.exact(3.9).unwrap());
    assert!(err < 3.0 * end_err + 1e-6, "{err:e} vs {end_err:e} at the end");
    let inside_first = p.solve(&config, &SaveAt::times(vec![0.1])).unwrap();
    assert_eq!(inside_first.stats.n_evals, plain.stats.n_evals);
}
