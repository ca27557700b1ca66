//! Closed-form true densities of the `8gaussians` and `checkerboard` toy sets.
//!
//! `8gaussians` is the equal-weight mixture
//!
//! ```text
//! p(x) = (1/8) Σ_k N(x; c_k / 1.414, s² I),   s = 0.5 / 1.414,
//! c_k ∈ 4·{(±1, 0), (0, ±1), (±1/√2, ±1/√2)}
//! ```
//!
//! (FFJORD divides the whole set by 1.414, not √2, and so do we). `checkerboard` is
//! uniform on eight squares of side 2 in `[-4, 4]²`:
//!
//! ```text
//! p(x) = 1/32  if x ∈ [-4, 4)² and ⌊x₁/2⌋ + ⌊x₂/2⌋ is even,  else 0
//! ```

use std::f64::consts::{FRAC_1_SQRT_2, PI};

use ndarray::{Array1, ArrayView2};

/// The divisor FFJORD applies to the whole `8gaussians` set (1.414, not √2).
pub const EIGHT_GAUSSIANS_DIVISOR: f64 = 1.414;

/// Scale of the `8gaussians` centers before the division.
pub const EIGHT_GAUSSIANS_SCALE: f64 = 4.0;

/// Standard deviation of each `8gaussians` component before the division.
pub const EIGHT_GAUSSIANS_RAW_STD: f64 = 0.5;

/// The eight centers `4·dir` before the division by 1.414, in FFJORD's order.
pub fn eight_gaussians_raw_centers() -> [[f64; 2]; 8] {
    let s = EIGHT_GAUSSIANS_SCALE;
    let d = FRAC_1_SQRT_2;
    [
        [s, 0.0],
        [-s, 0.0],
        [0.0, s],
        [0.0, -s],
        [s * d, s * d],
        [s * d, -s * d],
        [-s * d, s * d],
        [-s * d, -s * d],
    ]
}

/// The eight mixture centers of the `8gaussians` density, `4·dir / 1.414`.
pub fn eight_gaussians_centers() -> [[f64; 2]; 8] {
    eight_gaussians_raw_centers().map(|c| c.map(|v| v / EIGHT_GAUSSIANS_DIVISOR))
}

/// Log-density of the `8gaussians` mixture at each row of `points` (`n × 2`),
/// computed with a log-sum-exp over the components (finite everywhere).
pub fn eight_gaussians_log_density(points: ArrayView2<f64>) -> Array1<f64> {
    let centers = eight_gaussians_centers();
    let std = EIGHT_GAUSSIANS_RAW_STD / EIGHT_GAUSSIANS_DIVISOR;
    let var = std * std;
    // log of (1/8) · 1/(2π s²)
    let log_norm = -(8f64).ln() - (2.0 * PI * var).ln();
    points
        .rows()
        .into_iter()
        .map(|p| {
            let mut exps = [0.0; 8];
            for (e, c) in exps.iter_mut().zip(centers.iter()) {
                let d0 = p[0] - c[0];
                let d1 = p[1] - c[1];
                *e = -(d0 * d0 + d1 * d1) / (2.0 * var);
            }
            let m = exps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = exps.iter().map(|e| (e - m).exp()).sum();
            log_norm + m + s.ln()
        })
        .collect()
}

/// Whether `(x1, x2)` lies in the support of `checkerboard`.
///
/// With `a = x1/2 ∈ [-2, 2)` and `b = x2/2`, the generator puts `b` in
/// `[-2,-1) ∪ [0,1)` when `⌊a⌋` is even and in `[-1,0) ∪ [1,2)` when it is odd: the
/// support is `⌊a⌋ + ⌊b⌋` even, inside `[-2, 2)²`.
pub fn in_checkerboard(x1: f64, x2: f64) -> bool {
    let a = x1 / 2.0;
    let b = x2 / 2.0;
    if !((-2.0..2.0).contains(&a) && (-2.0..2.0).contains(&b)) {
        return false;
    }
    (a.floor() + b.floor()).rem_euclid(2.0) == 0.0
}

/// Log-density of `checkerboard` at each row of `points` (`n × 2`): `ln(1/32)` inside
/// the eight squares, `-∞` outside.
pub fn checkerboard_log_density(points: ArrayView2<f64>) -> Array1<f64> {
    let inside = -(32f64).ln();
    points
        .rows()
        .into_iter()
        .map(|p| {
            if in_checkerboard(p[0], p[1]) {
                inside
            } else {
                f64::NEG_INFINITY
            }
        })
        .collect()
}
