//! The eight FFJORD toy datasets in two dimensions, seeded, exactly `n` points each.
//!
//! Each generator follows DESIGN.md §4 (FFJORD's `toy_data` and scikit-learn's
//! `make_moons`, `make_circles`, `make_swiss_roll`), with one deliberate change:
//! `2spirals` and `pinwheel` return exactly the `n` points asked for instead of
//! silently dropping up to 1 or 4 of them. The random stream is the caller's
//! generator, so `ChaCha8Rng::seed_from_u64(s)` gives the same points on every run.
//!
//! The true entropies `H = -E[log p(x)]` (nats) are the lowest test NLL any model can
//! reach; `NLL - H` is the KL divergence from the data to the model.

use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

use ndarray::{Array1, Array2, ArrayView2};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::density;
use super::DataError;

/// One of the eight FFJORD toy datasets (all two-dimensional).
///
/// Serialised (e.g. in run metadata) by its [`name`](Dataset::name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dataset {
    /// `8gaussians`: eight Gaussians on a circle of radius `4 / 1.414`.
    #[serde(rename = "8gaussians")]
    EightGaussians,
    /// `checkerboard`: uniform on 8 squares of side 2 in `[-4, 4]²`.
    Checkerboard,
    /// `2spirals`: two interleaved noisy spirals.
    #[serde(rename = "2spirals")]
    TwoSpirals,
    /// `moons`: scikit-learn's two half-moons, scaled by 2 and shifted.
    Moons,
    /// `circles`: two noisy concentric circles, radii 3 and 1.5.
    Circles,
    /// `rings`: four noisy concentric circles, radii 3, 2.25, 1.5, 0.75.
    Rings,
    /// `swissroll`: scikit-learn's swiss roll, seen from above, divided by 5.
    Swissroll,
    /// `pinwheel`: five curved arms.
    Pinwheel,
}

impl Dataset {
    /// All eight datasets, in DESIGN.md's order.
    pub const ALL: [Dataset; 8] = [
        Dataset::EightGaussians,
        Dataset::Checkerboard,
        Dataset::TwoSpirals,
        Dataset::Moons,
        Dataset::Circles,
        Dataset::Rings,
        Dataset::Swissroll,
        Dataset::Pinwheel,
    ];

    /// The dimension of every toy dataset.
    pub const DIM: usize = 2;

    /// The name used on the command line and in files (`"8gaussians"`, `"2spirals"`, …).
    pub fn name(self) -> &'static str {
        match self {
            Dataset::EightGaussians => "8gaussians",
            Dataset::Checkerboard => "checkerboard",
            Dataset::TwoSpirals => "2spirals",
            Dataset::Moons => "moons",
            Dataset::Circles => "circles",
            Dataset::Rings => "rings",
            Dataset::Swissroll => "swissroll",
            Dataset::Pinwheel => "pinwheel",
        }
    }

    /// The true differential entropy `-E[log p(x)]` in nats (DESIGN.md §4 table).
    ///
    /// `checkerboard` is exact (`ln 32`); the others were computed by quadrature or
    /// Monte Carlo from the generating density (±0.005).
    pub fn entropy(self) -> f64 {
        match self {
            Dataset::EightGaussians => 2.832,
            Dataset::Checkerboard => 32f64.ln(),
            Dataset::Circles => 3.267,
            Dataset::Rings => 2.621,
            Dataset::Moons => 2.397,
            Dataset::Swissroll => 2.668,
            Dataset::TwoSpirals => 2.644,
            Dataset::Pinwheel => 2.305,
        }
    }

    /// Draws exactly `n_points` points (an `n_points × 2` array) from the dataset.
    ///
    /// Deterministic given the generator's state: a `ChaCha8Rng` seeded with the
    /// same seed yields the same points. Every point is drawn i.i.d. from the density
    /// whose [`Dataset::entropy`] is quoted (`moons`, `circles` and `rings` with
    /// uniformly random angles, unlike FFJORD's evenly spaced ones: see
    /// [`Dataset::sample_grid`]), except that `2spirals` keeps FFJORD's order — the
    /// first `⌈n/2⌉` rows are one arm, the rest the other — and `pinwheel` comes in
    /// whole arms, shuffled.
    pub fn sample<R: Rng + ?Sized>(self, n_points: usize, rng: &mut R) -> Array2<f64> {
        match self {
            Dataset::EightGaussians => eight_gaussians(n_points, rng),
            Dataset::Checkerboard => checkerboard(n_points, rng),
            Dataset::TwoSpirals => two_spirals(n_points, rng),
            Dataset::Moons => moons(n_points, rng),
            Dataset::Circles => circles(n_points, rng),
            Dataset::Rings => rings(n_points, rng),
            Dataset::Swissroll => swissroll(n_points, rng),
            Dataset::Pinwheel => pinwheel(n_points, rng),
        }
    }

    /// FFJORD's and scikit-learn's versions of `moons`, `circles` and `rings`: points
    /// at evenly spaced angles (then shuffled and noised), `None` for the others. Not
    /// i.i.d.: a batch of 100 repeats the same 100 angles every time, and a model
    /// trained on such batches learns those spots instead of the density (its training
    /// NLL falls below the entropy). For comparison with FFJORD's numbers only.
    pub fn sample_grid<R: Rng + ?Sized>(self, n_points: usize, rng: &mut R) -> Option<Array2<f64>> {
        match self {
            Dataset::Moons => Some(moons_grid(n_points, rng)),
            Dataset::Circles => Some(circles_grid(n_points, rng)),
            Dataset::Rings => Some(rings_grid(n_points, rng)),
            _ => None,
        }
    }

    /// The true log-density at each row of `points` (`n × 2`), where it has a closed
    /// form: `Some` for `8gaussians` and `checkerboard`, `None` for the others.
    ///
    /// Returns `None` as well when `points` does not have 2 columns.
    pub fn log_density(self, points: ArrayView2<f64>) -> Option<Array1<f64>> {
        if points.ncols() != Self::DIM {
            return None;
        }
        match self {
            Dataset::EightGaussians => Some(density::eight_gaussians_log_density(points)),
            Dataset::Checkerboard => Some(density::checkerboard_log_density(points)),
            _ => None,
        }
    }

    /// The valid names, comma separated (for messages).
    pub fn valid_names() -> String {
        Self::ALL.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dataset {
    type Err = DataError;

    /// Parses a dataset name (case-insensitive, surrounding spaces ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Self::ALL
            .iter()
            .copied()
            .find(|d| d.name() == wanted)
            .ok_or_else(|| DataError::UnknownDataset {
                name: s.to_string(),
                valid: Self::valid_names(),
            })
    }
}

/// `num` evenly spaced values from 0 to `stop`, like `numpy.linspace`: the end point
/// is included when `endpoint` is true (a single value is then 0).
fn linspace(stop: f64, num: usize, endpoint: bool) -> impl Iterator<Item = f64> {
    let step = match (endpoint, num) {
        (_, 0) => 0.0,
        (true, 1) => 0.0,
        (true, _) => stop / (num - 1) as f64,
        (false, _) => stop / num as f64,
    };
    (0..num).map(move |i| i as f64 * step)
}

fn normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    rng.sample(StandardNormal)
}

/// Rows of `points` in a uniformly random order.
fn shuffled_rows<R: Rng + ?Sized>(points: &Array2<f64>, rng: &mut R) -> Array2<f64> {
    let mut order: Vec<usize> = (0..points.nrows()).collect();
    order.shuffle(rng);
    points.select(ndarray::Axis(0), &order)
}

fn eight_gaussians<R: Rng + ?Sized>(n_points: usize, rng: &mut R) -> Array2<f64> {
    let centers = density::eight_gaussians_raw_centers();
    let mut x = Array2::zeros((n_points, 2));
    for mut row in x.rows_mut() {
        let p0 = normal(rng) * 0.5;
        let p1 = normal(rng) * 0.5;
        let c = centers[rng.random_range(0..8)];
        row[0] = (p0 + c[0]) / density::EIGHT_GAUSSIANS_DIVISOR;
        row[1] = (p1 + c[1]) / density::EIGHT_GAUSSIANS_DIVISOR;
    }
    x
}

fn checkerboard<R: Rng + ?Sized>(n_points: usize, rng: &mut R) -> Array2<f64> {
    let mut x = Array2::zeros((n_points, 2));
    for mut row in x.rows_mut() {
        let x1: f64 = rng.random::<f64>() * 4.0 - 2.0;
        let bernoulli = if rng.random::<bool>() { 1.0 } else { 0.0 };
        let x2_prime = rng.random::<f64>() - 2.0 * bernoulli;
        let x2 = x2_prime + x1.floor().rem_euclid(2.0);
        row[0] = 2.0 * x1;
        row[1] = 2.0 * x2;
    }
    x
}

fn two_spirals<R: Rng + ?Sized>(n_points: usize, rng: &mut R) -> Array2<f64> {
    // One arm of ceil(n/2) points; the second arm negates the first n/2 of them.
    let n_first = n_points.div_ceil(2);
    let mut arm = Vec::with_capacity(n_first);
    for _ in 0..n_first {
        let t = rng.random::<f64>().sqrt() * 540.0 * (2.0 * PI) / 360.0;
        let a = -t.cos() * t + rng.random::<f64>() * 0.5;
        let b = t.sin() * t + rng.random::<f64>() * 0.5;
        arm.push([a, b]);
    }
    let mut x = Array2::zeros((n_points, 2));
    for (i, mut row) in x.rows_mut().into_iter().enumerate() {
        let (p, sign) = if i < n_first {
            (arm[i], 1.0)
        } else {
            (arm[i - n_first], -1.0)
        };
        row[0] = sign * p[0] / 3.0 + 0.1 * normal(rng);
        row[1] = sign * p[1] / 3.0 + 0.1 * normal(rng);
    }
    x
}

fn moons_grid<R: Rng + ?Sized>(n_points: usize, rng: &mut R) -> Array2<f64> {
    let n_outer = n_points / 2;
    let n_inner = n_points - n_outer;
    let mut x = Array2::zeros((n_points, 2));
    let outer = linspace(PI, n_outer, true).map(|t| [t.cos(), t.sin()]);
    let inner = linspace(PI, n_inner, true).map(|t| [1.0 - t.cos(), 0.5 - t.sin()]);
    for (mut row, p) in x.rows_mut().into_iter().zip(outer.chain(inner)) {
        row[0] = p[0];
        row[1] = p[1];
    }
    let mut x = shuffled_rows(&x, rng);
    for mut row in x.rows_mut() {
        row[0] = (row[0] + 0.1 * normal(rng)) * 2.0 - 1.0;
        row[1] = (row[1] + 0.1 * normal(rng)) * 2.0 - 0.2;
    }
    x
}

/// Points on concentric circles: `(radius, count)` pairs, angles evenly spaced on
/// `[0, 2π)`, in order.
fn circle_points(parts: &[(f64, usize)]) -> Array2<f64> {
    let n_points = parts.iter().map(|p| p.1).sum();
    let mut x = Array2::zeros((n_points, 2));
    let pts = parts
        .iter()
        .flat_map(|&(r, k)| linspace(2.0 * PI, k, false).map(move |t| [r * t.cos(), r * t.sin()]));
    for (mut row, p) in x.rows_mut().into_iter().zip(pts) {
        row[0] = p[0];
        row[1] = p[1];
    }
    x
}

fn circles_grid<R: Rng + ?Sized>(n_points: usize, rng: &mut R) -> Array2<f64> {
    let n_outer = n_points / 2;
    let x = circle_points(&[(1.0, n_outer), (0.5, n_points - n_outer)]);
    let mut x = shuffled_rows(&x, rng);
    for v in x.iter_mut() {
        *v = (*v + 0.08 * normal(rng)) * 3.0;
    }
    x
}

fn rings_grid<R: Rng + ?Sized>(n_points: usize, rng: &mut R) -> Array2<f64> {
    let n_each = n_points / 4;
    let n_smallest = n_points - 3 * n_each;
    let x = circle_points(&[(1.0, n_each), (0.75, n_each), (0.5, n_each), (0.25, n_smallest)]) * 3.0;
    let mut x = shuffled_rows(&x, rng);
    for v in x.iter_mut() {
        *v += 0.08 * normal(rng);
    }
    x
}

/// Moons, i.i.d.: each point on the upper arc `(cos θ, sin θ)` or the lower
/// `(1 − cos θ, 0.5 − sin θ)` with probability ½, `θ ~ U[0, π]`, plus `N(0, 0.1²)`,
/// then `·2 + (−1, −0.2)`.
fn moons<R: Rng + ?Sized>(n_points: usize, rng: &mut R) -> Array2<f64> {
    let mut x = Array2::zeros((n_points, 2));
    for mut row in x.rows_mut() {
        let upper = rng.random::<bool>();
        let t = PI * rng.random::<f64>();
        let (a, b) = if upper {
            (t.cos(), t.sin())
        } else {
            (1.0 - t.cos(), 0.5 - t.sin())
        };
        row[0] = (a + 0.1 * normal(rng)) * 2.0 - 1.0;
        row[1] = (b + 0.1 * normal(rng)) * 2.0 - 0.2;
    }
    x
}

/// Circles, i.i.d.: the unit circle or radius 0.5 with probability ½, angle
/// `~ U[0, 2π)`, plus `N(0, 0.08²)`, then `·3`.
fn circles<R: Rng + ?Sized>(n_points: usize, rng: &mut R) -> Array2<f64> {
    let mut x = Array2::zeros((n_points, 2));
    for mut row in x.rows_mut() {
        let r = if rng.random::<bool>() { 1.0 } else { 0.5 };
        let t = 2.0 * PI * rng.random::<f64>();
        row[0] = (r * t.cos() + 0.08 * normal(rng)) * 3.0;
        row[1] = (r * t.sin() + 0.08 * normal(rng)) * 3.0;
    }
    x
}

/// Rings, i.i.d.: radius 1, .75, .5 or .25 with probability ¼ each, angle
/// `~ U[0, 2π)`, `·3`, then `+ N(0, 0.08²)`.
fn rings<R: Rng + ?Sized>(n_points: usize, rng: &mut R) -> Array2<f64> {
    const RADII: [f64; 4] = [1.0, 0.75, 0.5, 0.25];
    let mut x = Array2::zeros((n_points, 2));
    for mut row in x.rows_mut() {
        let r = RADII[rng.random_range(0..4)];
        let t = 2.0 * PI * rng.random::<f64>();
        row[0] = 3.0 * r * t.cos() + 0.08 * normal(rng);
        row[1] = 3.0 * r * t.sin() + 0.08 * normal(rng);
    }
    x
}

fn swissroll<R: Rng + ?Sized>(n_points: usize, rng: &mut R) -> Array2<f64> {
    let mut x = Array2::zeros((n_points, 2));
    for mut row in x.rows_mut() {
        let u = 1.5 * PI * (1.0 + 2.0 * rng.random::<f64>());
        // The height 21·U and its noise are drawn, as in make_swiss_roll, then dropped.
        let _height: f64 = 21.0 * rng.random::<f64>();
        let e0 = normal(rng);
        let _e1 = normal(rng);
        let e2 = normal(rng);
        row[0] = (u * u.cos() + e0) / 5.0;
        row[1] = (u * u.sin() + e2) / 5.0;
    }
    x
}

fn pinwheel<R: Rng + ?Sized>(n_points: usize, rng: &mut R) -> Array2<f64> {
    const N_ARMS: usize = 5;
    const RADIAL_STD: f64 = 0.3;
    const TANGENTIAL_STD: f64 = 0.1;
    const RATE: f64 = 0.25;
    let mut x = Array2::zeros((n_points, 2));
    // Arm k holds points i with i mod 5 = k, so arm sizes differ by at most one.
    for (i, mut row) in x.rows_mut().into_iter().enumerate() {
        let arm = (i % N_ARMS) as f64;
        let f0 = 1.0 + RADIAL_STD * normal(rng);
        let f1 = TANGENTIAL_STD * normal(rng);
        let a = 2.0 * PI * arm / N_ARMS as f64 + RATE * f0.exp();
        let (s, c) = a.sin_cos();
        row[0] = 2.0 * (f0 * c + f1 * s);
        row[1] = 2.0 * (-f0 * s + f1 * c);
    }
    shuffled_rows(&x, rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_includes_or_excludes_the_end_like_numpy() {
        let v: Vec<f64> = linspace(PI, 3, true).collect();
        assert_eq!(v, vec![0.0, PI / 2.0, PI]);
        let v: Vec<f64> = linspace(2.0 * PI, 4, false).collect();
        assert_eq!(v, vec![0.0, PI / 2.0, PI, 1.5 * PI]);
        assert_eq!(linspace(PI, 1, true).collect::<Vec<_>>(), vec![0.0]);
        assert_eq!(linspace(PI, 0, true).count(), 0);
    }

    #[test]
    fn noise_free_circles_split_half_and_half_with_remainder_on_the_last() {
        let x = circle_points(&[(1.0, 2), (0.5, 3)]);
        let r: Vec<f64> = x.rows().into_iter().map(|p| p[0].hypot(p[1])).collect();
        for (got, want) in r.iter().zip([1.0, 1.0, 0.5, 0.5, 0.5]) {
            assert!((got - want).abs() < 1e-15);
        }
        assert!((x[[1, 0]] + 1.0).abs() < 1e-15, "second of 2 angles is π");
    }
}
