//! Labelled data for the classifier: two interleaved spirals.

use rand::Rng;

/// Two interleaved spirals, `n_per_class` points each, as `(x, labels)` with `x`
/// row-major `2n × 2` and the classes alternating (row `2i + c` is point `i` of class
/// `c`): for each point `θ = √u · 3π` with `u ~ U(0, 1)` and
///
/// ```text
/// x = θ (cos(θ + cπ), sin(θ + cπ)) / (3π) + N(0, noise²) per coordinate
/// ```
///
/// (the radius is `θ`, scaled so the outermost point lies at radius 1). Each point
/// draws `u`, then the two noises.
pub fn two_spirals<R: Rng + ?Sized>(n_per_class: usize, noise: f64, rng: &mut R) -> (Vec<f64>, Vec<usize>) {
    use rand_distr::{Distribution, StandardNormal};
    let three_pi = 3.0 * std::f64::consts::PI;
    let mut x = Vec::with_capacity(4 * n_per_class);
    let mut labels = Vec::with_capacity(2 * n_per_class);
    for _ in 0..n_per_class {
        for c in 0..2 {
            let theta = rng.random::<f64>().sqrt() * three_pi;
            let phase = theta + c as f64 * std::f64::consts::PI;
            let (n0, n1): (f64, f64) = (StandardNormal.sample(rng), StandardNormal.sample(rng));
            x.push(theta * phase.cos() / three_pi + noise * n0);
            x.push(theta * phase.sin() / three_pi + noise * n1);
            labels.push(c);
        }
    }
    (x, labels)
}
