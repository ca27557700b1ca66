//! Entropies of circles, rings and moons by Monte Carlo through densities written in
//! closed form (a noisy circle is a Rice distribution) or as a 1-D quadrature along
//! the curve, against the table in DESIGN.md §4.

use std::f64::consts::PI;

use cnflow::data::Dataset;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// `e^{-x} I₀(x)` for `x ≥ 0` (Abramowitz & Stegun 9.8.1–9.8.2, relative error < 2e-7).
fn bessel_i0e(x: f64) -> f64 {
    if x <= 3.75 {
        let t = (x / 3.75).powi(2);
        let i0 = 1.0
            + t * (3.5156229
                + t * (3.0899424
                    + t * (1.2067492 + t * (0.2659732 + t * (0.0360768 + t * 0.0045813)))));
        i0 * (-x).exp()
    } else {
        let t = 3.75 / x;
        let p = 0.39894228
            + t * (0.01328592
                + t * (0.00225319
                    + t * (-0.00157565
                        + t * (0.00916281
                            + t * (-0.02057706
                                + t * (0.02635537 + t * (-0.01647633 + t * 0.00392377)))))));
        p / x.sqrt()
    }
}

/// Log-density of an equal-weight mixture of uniform circles of `radii`, each blurred
/// by isotropic N(0, σ²): `p = (1/2πσ²) exp(-(r² + R²)/2σ²) I₀(rR/σ²)` per circle.
fn log_density_circles(x: [f64; 2], radii: &[f64], sigma: f64) -> f64 {
    let r = x[0].hypot(x[1]);
    let s2 = sigma * sigma;
    let p: f64 = radii
        .iter()
        .map(|&big_r| {
            let log_p = -(2.0 * PI * s2).ln() - (r - big_r).powi(2) / (2.0 * s2)
                + bessel_i0e(r * big_r / s2).ln();
            log_p.exp()
        })
        .sum();
    (p / radii.len() as f64).ln()
}

fn mc_entropy(d: Dataset, n: usize, seed: u64, log_p: impl Fn([f64; 2]) -> f64) -> f64 {
    let x = d.sample(n, &mut ChaCha8Rng::seed_from_u64(seed));
    -x.rows()
        .into_iter()
        .map(|r| log_p([r[0], r[1]]))
        .sum::<f64>()
        / n as f64
}

#[test]
fn bessel_i0e_matches_series() {
    for x in [0.0f64, 0.5, 2.0, 3.7, 3.8, 10.0, 40.0] {
        // Power series Σ (x/2)^{2k} / (k!)², summed in log space relative to e^x.
        let mut term = 1.0f64;
        let mut sum = 1.0f64;
        for k in 1..400 {
            term *= (x / 2.0).powi(2) / (k as f64 * k as f64);
            sum += term;
        }
        let reference = sum * (-x).exp();
        let got = bessel_i0e(x);
        assert!(
            (got / reference - 1.0).abs() < 1e-6,
            "x = {x}: {got} vs {reference}"
        );
    }
}

#[test]
fn circles_monte_carlo_entropy_matches_table() {
    let h = mc_entropy(Dataset::Circles, 40000, 41, |x| {
        log_density_circles(x, &[3.0, 1.5], 0.24)
    });
    let table = Dataset::Circles.entropy();
    assert!((h - table).abs() < 0.02, "MC entropy {h} vs table {table}");
}

#[test]
fn rings_monte_carlo_entropy_matches_table() {
    let h = mc_entropy(Dataset::Rings, 40000, 42, |x| {
        log_density_circles(x, &[3.0, 2.25, 1.5, 0.75], 0.08)
    });
    let table = Dataset::Rings.entropy();
    assert!((h - table).abs() < 0.02, "MC entropy {h} vs table {table}");
}

/// Moons: half the mass on each arc, θ uniform on [0, π], blurred by N(0, 0.2²);
/// the arc integral by the composite Simpson rule.
fn log_density_moons(x: [f64; 2]) -> f64 {
    const N_INTERVALS: usize = 600;
    let sigma = 0.2f64;
    let s2 = sigma * sigma;
    let h = PI / N_INTERVALS as f64;
    let mut total = 0.0;
    for i in 0..=N_INTERVALS {
        let t = i as f64 * h;
        let w = if i == 0 || i == N_INTERVALS {
            1.0
        } else if i % 2 == 1 {
            4.0
        } else {
            2.0
        };
        let (s, c) = t.sin_cos();
        let upper = [2.0 * c - 1.0, 2.0 * s - 0.2];
        let lower = [2.0 * (1.0 - c) - 1.0, 2.0 * (0.5 - s) - 0.2];
        for m in [upper, lower] {
            let d2 = (x[0] - m[0]).powi(2) + (x[1] - m[1]).powi(2);
            total += w * (-d2 / (2.0 * s2)).exp();
        }
    }
    let integral = total * h / 3.0; // ∫ over θ of the two Gaussian kernels
    (0.5 / PI * integral / (2.0 * PI * s2)).ln()
}

#[test]
fn moons_monte_carlo_entropy_matches_table() {
    let h = mc_entropy(Dataset::Moons, 20000, 43, log_density_moons);
    let table = Dataset::Moons.entropy();
    assert!((h - table).abs() < 0.02, "MC entropy {h} vs table {table}");
}
