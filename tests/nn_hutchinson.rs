//! The Hutchinson estimator: unbiased for the trace and for `‖J‖_F²`, with an error
//! that shrinks like `1/√K`.

mod nn_common;

use cnflow::nn::{probes, Activation, LayerKind, ProbeKind, TraceMode};
use nn_common::*;

/// Mean and standard error of the mean.
fn mean_se(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

fn rms_error(x: &[f64], target: f64) -> f64 {
    (x.iter().map(|v| (v - target).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

/// `B` copies of one point so that each row gives an independent estimate.
fn setup(d: usize, b: usize, seed: u64) -> (cnflow::nn::Mlp<f64>, Vec<f64>, f64, f64) {
    let mlp = net(LayerKind::ConcatSquash, Activation::Tanh, d, &[16, 16], seed);
    let mut r = rng(seed + 100);
    let point = normal_vec(&mut r, d);
    let z: Vec<f64> = (0..b).flat_map(|_| point.iter().copied()).collect();
    let mut ws = mlp.workspace(b, d).unwrap();
    let e = mlp.eval(0.2, &z, TraceMode::Exact, &mut ws).unwrap();
    (mlp, z, e.trace[0], e.jacobian[0])
}

#[test]
fn hutchinson_mean_converges_to_exact_trace_and_frobenius_norm() {
    let (d, b) = (4, 2000);
    let (mlp, z, tr, frob) = setup(d, b, 11);
    for kind in [ProbeKind::Rademacher, ProbeKind::Gaussian] {
        let mut r = rng(12);
        let eps = probes::<f64, _>(kind, &mut r, 1, b, d);
        let mut ws = mlp.workspace(b, 1).unwrap();
        let e = mlp.eval(0.2, &z, TraceMode::Hutchinson(&eps), &mut ws).unwrap();
        let (m, se) = mean_se(&e.trace);
        assert!(se > 0.0, "{kind:?}: estimates should vary");
        assert!(
            (m - tr).abs() < 4.0 * se,
            "{kind:?} trace: mean {m} ± {se} vs exact {tr}"
        );
        let (mj, sej) = mean_se(&e.jacobian);
        assert!(
            (mj - frob).abs() < 4.0 * sej,
            "{kind:?} |Jε|²: mean {mj} ± {sej} vs |J|_F² {frob}"
        );
    }
}

#[test]
fn hutchinson_error_shrinks_like_inverse_sqrt_k() {
    let (d, b) = (3, 1500);
    let (mlp, z, tr, frob) = setup(d, b, 21);
    let mut r = rng(22);
    let mut rms = Vec::new();
    for n_probes in [1usize, 16] {
        let eps = probes::<f64, _>(ProbeKind::Gaussian, &mut r, n_probes, b, d);
        let mut ws = mlp.workspace(b, n_probes).unwrap();
        let e = mlp.eval(0.2, &z, TraceMode::Hutchinson(&eps), &mut ws).unwrap();
        rms.push((rms_error(&e.trace, tr), rms_error(&e.jacobian, frob)));
    }
    // 16× the probes: error 4× smaller (sampling noise of the RMS itself ~ 5 %).
    let ratio_tr = rms[0].0 / rms[1].0;
    let ratio_jac = rms[0].1 / rms[1].1;
    assert!(
        (3.2..5.0).contains(&ratio_tr),
        "trace RMS ratio {ratio_tr}, expected ≈ 4"
    );
    assert!(
        (3.2..5.0).contains(&ratio_jac),
        "|Jε|² RMS ratio {ratio_jac}, expected ≈ 4"
    );
}

#[test]
fn probes_are_seeded_and_have_unit_second_moment() {
    for kind in [ProbeKind::Rademacher, ProbeKind::Gaussian] {
        let a = probes::<f64, _>(kind, &mut rng(5), 4, 1000, 2);
        let b = probes::<f64, _>(kind, &mut rng(5), 4, 1000, 2);
        assert_eq!(a, b, "same seed, same probes");
        let (m, se) = mean_se(&a);
        assert!(m.abs() < 4.0 * se, "{kind:?} mean {m}");
        let m2 = a.iter().map(|x| x * x).sum::<f64>() / a.len() as f64;
        assert!((m2 - 1.0).abs() < 0.05, "{kind:?} second moment {m2}");
        if kind == ProbeKind::Rademacher {
            assert!(a.iter().all(|&x| x == 1.0 || x == -1.0));
        }
    }
}
