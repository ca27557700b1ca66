//! True densities of 8gaussians and checkerboard: normalisation, agreement with
//! samples (chi-square over bins), and Monte-Carlo entropies against the table.

use cnflow::data::density::{eight_gaussians_centers, in_checkerboard};
use cnflow::data::Dataset;
use ndarray::{Array2, ArrayView2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Midpoint-rule integral of `exp(log_density)` over `[lo, hi]²` with `n_cells`² cells.
fn integrate(d: Dataset, lo: f64, hi: f64, n_cells: usize) -> f64 {
    let h = (hi - lo) / n_cells as f64;
    let mut total = 0.0;
    let mut grid = Array2::<f64>::zeros((n_cells, 2));
    for i in 0..n_cells {
        for (j, mut p) in grid.rows_mut().into_iter().enumerate() {
            p[0] = lo + (i as f64 + 0.5) * h;
            p[1] = lo + (j as f64 + 0.5) * h;
        }
        let lp = d.log_density(grid.view()).expect("closed-form density");
        total += lp.iter().map(|v| v.exp()).sum::<f64>();
    }
    total * h * h
}

#[test]
fn eight_gaussians_density_integrates_to_one() {
    let z = integrate(Dataset::EightGaussians, -5.0, 5.0, 1000);
    assert!((z - 1.0).abs() < 0.01, "integral {z}");
}

#[test]
fn checkerboard_density_integrates_to_one() {
    let z = integrate(Dataset::Checkerboard, -4.5, 4.5, 900);
    assert!((z - 1.0).abs() < 0.01, "integral {z}");
}

#[test]
fn eight_gaussians_density_peaks_at_centers_divided_by_1_414() {
    let centers = eight_gaussians_centers();
    let s = 0.5 / 1.414;
    let peak = (1.0 / 8.0) / (2.0 * std::f64::consts::PI * s * s);
    for c in centers {
        assert!(((c[0].hypot(c[1])) - 4.0 / 1.414).abs() < 1e-12);
        let p = ndarray::array![[c[0], c[1]]];
        let lp = Dataset::EightGaussians.log_density(p.view()).expect("closed form")[0];
        // Other components contribute < 1e-6 relative at a center.
        assert!((lp - peak.ln()).abs() < 1e-6, "log p at {c:?} = {lp}");
    }
}

#[test]
fn checkerboard_density_is_uniform_inside_and_minus_infinity_outside() {
    let pts = ndarray::array![[-3.0, -3.0], [-1.0, -3.0], [1.0, 1.0], [3.0, 1.0], [5.0, 0.0]];
    let lp = Dataset::Checkerboard.log_density(pts.view()).expect("closed form");
    let inside = -(32f64).ln();
    assert_eq!(lp[0], inside);
    assert_eq!(lp[1], f64::NEG_INFINITY);
    assert_eq!(lp[2], inside);
    assert_eq!(lp[3], f64::NEG_INFINITY);
    assert_eq!(lp[4], f64::NEG_INFINITY);
}

#[test]
fn log_density_is_none_for_other_datasets_and_wrong_width() {
    let p = Array2::<f64>::zeros((3, 2));
    for d in Dataset::ALL {
        let has = matches!(d, Dataset::EightGaussians | Dataset::Checkerboard);
        assert_eq!(d.log_density(p.view()).is_some(), has, "{d}");
    }
    let p3 = Array2::<f64>::zeros((3, 3));
    assert!(Dataset::EightGaussians.log_density(p3.view()).is_none());
}

/// Pearson chi-square of samples against the density over a `n_bins`² grid on
/// `[lo, hi]²` (expected counts from a midpoint sub-grid); bins with expected count
/// below 5 are pooled with the outside. Returns (statistic, degrees of freedom).
fn chi_square(d: Dataset, x: ArrayView2<f64>, lo: f64, hi: f64, n_bins: usize) -> (f64, usize) {
    let n = x.nrows() as f64;
    let w = (hi - lo) / n_bins as f64;
    let n_sub = 8;
    let hs = w / n_sub as f64;
    let mut expected = vec![0.0; n_bins * n_bins];
    for bi in 0..n_bins {
        for bj in 0..n_bins {
            let mut pts = Array2::<f64>::zeros((n_sub * n_sub, 2));
            for (k, mut p) in pts.rows_mut().into_iter().enumerate() {
                p[0] = lo + bi as f64 * w + ((k / n_sub) as f64 + 0.5) * hs;
                p[1] = lo + bj as f64 * w + ((k % n_sub) as f64 + 0.5) * hs;
            }
            let lp = d.log_density(pts.view()).expect("closed form");
            expected[bi * n_bins + bj] = n * lp.iter().map(|v| v.exp()).sum::<f64>() * hs * hs;
        }
    }
    let mut observed = vec![0.0; n_bins * n_bins];
    let mut observed_rest = 0.0;
    for r in x.rows() {
        let bi = ((r[0] - lo) / w).floor();
        let bj = ((r[1] - lo) / w).floor();
        if bi >= 0.0 && bj >= 0.0 && (bi as usize) < n_bins && (bj as usize) < n_bins {
            observed[bi as usize * n_bins + bj as usize] += 1.0;
        } else {
            observed_rest += 1.0;
        }
    }
    let mut expected_rest = n - expected.iter().sum::<f64>();
    let mut stat = 0.0;
    let mut n_used = 0;
    for (o, e) in observed.iter().zip(&expected) {
        if *e >= 5.0 {
            stat += (o - e).powi(2) / e;
            n_used += 1;
        } else {
            observed_rest += o;
            expected_rest += e;
        }
    }
    if expected_rest >= 5.0 {
        stat += (observed_rest - expected_rest).powi(2) / expected_rest;
        n_used += 1;
    } else {
        assert!(
            observed_rest <= 5.0,
            "{observed_rest} samples where the density has none"
        );
    }
    (stat, n_used - 1)
}

#[test]
fn eight_gaussians_samples_follow_the_density_chi_square() {
    let x = Dataset::EightGaussians.sample(20000, &mut ChaCha8Rng::seed_from_u64(21));
    let (stat, df) = chi_square(Dataset::EightGaussians, x.view(), -4.0, 4.0, 24);
    let bound = df as f64 + 5.0 * (2.0 * df as f64).sqrt();
    assert!(df > 50, "df {df}");
    assert!(stat < bound, "chi2 {stat} with {df} dof (bound {bound})");
}

#[test]
fn checkerboard_samples_follow_the_density_chi_square() {
    let x = Dataset::Checkerboard.sample(20000, &mut ChaCha8Rng::seed_from_u64(22));
    assert!(x.rows().into_iter().all(|r| in_checkerboard(r[0], r[1])));
    let (stat, df) = chi_square(Dataset::Checkerboard, x.view(), -4.0, 4.0, 16);
    assert_eq!(df, 8 * 16 - 1, "half of the 256 bins are in the support");
    let bound = df as f64 + 5.0 * (2.0 * df as f64).sqrt();
    assert!(stat < bound, "chi2 {stat} with {df} dof (bound {bound})");
}

#[test]
fn chi_square_rejects_wrongly_scaled_eight_gaussians() {
    // The test has power: the same samples scaled by 1.1 must fail it.
    let x = Dataset::EightGaussians.sample(20000, &mut ChaCha8Rng::seed_from_u64(23)) * 1.1;
    let (stat, df) = chi_square(Dataset::EightGaussians, x.view(), -4.0, 4.0, 24);
    let bound = df as f64 + 5.0 * (2.0 * df as f64).sqrt();
    assert!(stat > bound, "chi2 {stat} with {df} dof should exceed {bound}");
}

fn monte_carlo_entropy(d: Dataset, n: usize, seed: u64) -> f64 {
    let x = d.sample(n, &mut ChaCha8Rng::seed_from_u64(seed));
    let lp = d.log_density(x.view()).expect("closed form");
    -lp.mean().expect("non-empty")
}

#[test]
fn eight_gaussians_monte_carlo_entropy_matches_table() {
    let h = monte_carlo_entropy(Dataset::EightGaussians, 20000, 31);
    let table = Dataset::EightGaussians.entropy();
    assert!((h - table).abs() < 0.03, "MC entropy {h} vs table {table}");
}

#[test]
fn checkerboard_monte_carlo_entropy_matches_table() {
    let h = monte_carlo_entropy(Dataset::Checkerboard, 20000, 32);
    let table = Dataset::Checkerboard.entropy();
    assert!((h - table).abs() < 0.03, "MC entropy {h} vs table {table}");
}
