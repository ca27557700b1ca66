//! The fast tanh against `f64::tanh`, and the activations' derivatives against
//! finite differences.

use cnflow::nn::{fast_tanh, fast_tanh_f32, fast_tanh_f64, Activation};

/// Points spread over `[-lim, lim]`, denser near 0, plus special values.
fn grid(lim: f64, n: usize) -> Vec<f64> {
    let mut xs = Vec::with_capacity(2 * n + 16);
    for i in 0..=n {
        let u = i as f64 / n as f64;
        xs.push(lim * u * u); // quadratic spacing: fine near 0
        xs.push(-lim * u * u);
    }
    xs.extend([
        0.0, -0.0, 1e-300, -1e-300, 5e-324, 1e-20, 1e-8, 0.34657, 0.6932, 20.0, 1e3, 1e300,
    ]);
    xs
}

fn ulp_f64(x: f64) -> f64 {
    let a = x.abs();
    if a == 0.0 {
        f64::from_bits(1)
    } else {
        f64::from_bits(a.to_bits() + 1) - a
    }
}

#[test]
fn fast_tanh_f64_within_few_ulp_of_std() {
    let mut worst = 0.0f64;
    for x in grid(40.0, 200_000) {
        let (got, want) = (fast_tanh_f64(x), x.tanh());
        let err = (got - want).abs() / ulp_f64(want);
        worst = worst.max(err);
        assert!(err <= 4.0, "x={x:e}: {got:e} vs {want:e} ({err} ulp)");
    }
    // Saturation and specials.
    assert_eq!(fast_tanh_f64(f64::INFINITY), 1.0);
    assert_eq!(fast_tanh_f64(f64::NEG_INFINITY), -1.0);
    assert_eq!(fast_tanh_f64(1e300), 1.0);
    assert!(fast_tanh_f64(f64::NAN).is_nan());
    assert!(fast_tanh_f64(-0.0).is_sign_negative());
    eprintln!("fast_tanh_f64: worst error {worst} ulp");
}

#[test]
fn fast_tanh_f32_within_few_ulp_of_f64_tanh() {
    let mut worst = 0.0f64;
    for x in grid(25.0, 200_000) {
        let xf = x as f32;
        let got = fast_tanh_f32(xf) as f64;
        let want = (xf as f64).tanh();
        let ulp = (f32::EPSILON as f64 / 2.0) * want.abs().max(f32::MIN_POSITIVE as f64);
        let err = (got - want).abs() / ulp;
        worst = worst.max(err);
        assert!(err <= 8.0, "x={xf:e}: {got:e} vs {want:e} ({err} half-ulp units)");
        assert!(got.abs() <= 1.0, "x={xf:e}: |tanh| = {got} > 1");
    }
    // Saturation: within one ulp of ±1 (f32 tanh rounds to 1 only beyond 9.01).
    assert!((fast_tanh_f32(f32::INFINITY) - 1.0).abs() <= f32::EPSILON / 2.0);
    assert!((fast_tanh_f32(-1e30) + 1.0).abs() <= f32::EPSILON / 2.0);
    assert!(fast_tanh_f32(f32::NAN).is_nan());
    eprintln!("fast_tanh_f32: worst error {worst} × 2^-24 relative");
}

#[test]
fn fast_tanh_is_odd_and_monotone() {
    // f64: odd exactly, non-decreasing on a dense sorted grid.
    let mut prev = -1.0f64;
    for i in 0..=400_000 {
        let x = -25.0 + 50.0 * i as f64 / 400_000.0;
        let y = fast_tanh_f64(x);
        assert_eq!(fast_tanh_f64(-x), -y, "odd at {x}");
        assert!(y >= prev, "f64 not monotone at {x}: {y} < {prev}");
        prev = y;
    }
    // f32: consecutive floats across [-12, 12] on a stride, and every float in windows
    // spread over the range. Rounding in the rational form's evaluation (within 8
    // half-ulps of the truth, above) can make a float's successor step back by at most
    // twice that; exact oddness has no such slack.
    let back = |y: f32| 8.0 * f32::EPSILON * y.abs().max(f32::MIN_POSITIVE);
    let check_run = |start: f32, n: usize| {
        let mut x = start;
        let mut prev = fast_tanh_f32(x);
        for _ in 0..n {
            let nx = f32::from_bits(if x >= 0.0 { x.to_bits() + 1 } else { x.to_bits() - 1 });
            let nx = if x == -0.0 || (x < 0.0 && nx > 0.0) { 0.0 } else { nx };
            let y = fast_tanh_f32(nx);
            assert!(y >= prev - back(prev), "f32 not monotone at {nx:e}: {y} < {prev}");
            assert_eq!(fast_tanh_f32(-nx), -y, "f32 odd at {nx}");
            prev = y;
            x = nx;
        }
    };
    for m in 0..30 {
        let x = (m as f32 + 0.5) * std::f32::consts::LN_2 / 2.0;
        check_run(x * 0.9999, 4000);
    }
    check_run(1e-6, 200_000);
    let mut prev = -1.0f32;
    for i in 0..=1_000_000 {
        let x = -12.0 + 24.0 * i as f32 / 1_000_000.0;
        let y = fast_tanh_f32(x);
        assert!(y >= prev - back(prev), "f32 not monotone at {x}: {y} < {prev}");
        prev = y;
    }
}

#[test]
fn generic_fast_tanh_dispatches_by_precision() {
    for x in [-3.0, -0.5, 0.0, 1e-4, 0.9, 7.0] {
        assert_eq!(fast_tanh(x), fast_tanh_f64(x));
        assert_eq!(fast_tanh(x as f32), fast_tanh_f32(x as f32));
    }
}

#[test]
fn activation_derivatives_match_central_differences() {
    let h = 1e-5;
    for act in Activation::ALL {
        for i in 0..=200 {
            let y = -8.0 + 16.0 * i as f64 / 200.0 + 0.0123; // avoids ELU's kink at 0
            let (a, d1, d2) = act.eval(y);
            assert_eq!(a, act.value(y));
            let fd1 = (act.value(y + h) - act.value(y - h)) / (2.0 * h);
            let fd2 = (act.eval(y + h).1 - act.eval(y - h).1) / (2.0 * h);
            assert!((d1 - fd1).abs() < 1e-8, "{act} φ' at {y}: {d1} vs {fd1}");
            assert!((d2 - fd2).abs() < 1e-8, "{act} φ'' at {y}: {d2} vs {fd2}");
        }
    }
    // Reference values from the definitions.
    let (y, s) = (0.7f64, 1.0 / (1.0 + (-0.7f64).exp()));
    assert!((Activation::Softplus.value(y) - (1.0 + y.exp()).ln()).abs() < 1e-15);
    assert!((Activation::Swish.value(y) - y * s).abs() < 1e-15);
    assert!((Activation::Elu.value(-y) - ((-y).exp() - 1.0)).abs() < 1e-15);
    assert!((Activation::Tanh.value(y) - y.tanh()).abs() < 1e-15);
}
