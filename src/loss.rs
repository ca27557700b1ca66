//! Losses as values, each with its gradient.
//!
//! - [`SquaredError`] on a trajectory observed at times `tᵢ`:
//!   `L = Σᵢ Σⱼ wⱼ (yⱼ(tᵢ) − dᵢⱼ)²`, divided by the number of observed values for the
//!   mean; a NaN in the data means "not observed" and contributes nothing. It is a
//!   [`Loss`](crate::sensitivity::Loss) for the sensitivity module.
//! - [`cross_entropy`] of logits against class labels, for classifiers:
//!   `L = (1/B) Σ_b (logsumexp(z_b) − z_b,y_b)`, `∂L/∂z_b = (softmax(z_b) − e_y_b)/B`.
//! - The negative log-likelihood of a density is the CNF's own
//!   ([`cnf::loss_and_grad`](crate::cnf::loss_and_grad)).

use crate::sensitivity::Loss;
use crate::Real;

/// Sum or mean of a loss's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Reduction {
    /// The sum of the terms.
    Sum,
    /// The sum divided by the number of observed values.
    Mean,
}

/// Weighted squared error against observations `data` (`times × d`, row-major, NaN =
/// not observed).
#[derive(Clone, Debug, PartialEq)]
pub struct SquaredError<'a> {
    /// Observations, one row per observation time.
    pub data: &'a [f64],
    /// Components per row.
    pub dim: usize,
    /// Weight of each component (all 1 when empty).
    pub weights: &'a [f64],
    /// Sum or mean.
    pub reduction: Reduction,
}

impl<'a> SquaredError<'a> {
    /// The unweighted mean squared error against `data` with `dim` components a row.
    pub fn mean(data: &'a [f64], dim: usize) -> Self {
        SquaredError {
            data,
            dim,
            weights: &[],
            reduction: Reduction::Mean,
        }
    }

    /// Number of observed (non-NaN) values.
    pub fn n_observed(&self) -> usize {
        self.data.iter().filter(|v| !v.is_nan()).count()
    }

    fn scale(&self) -> f64 {
        match self.reduction {
            Reduction::Sum => 1.0,
            Reduction::Mean => 1.0 / self.n_observed().max(1) as f64,
        }
    }
}

impl<T: Real> Loss<T> for SquaredError<'_> {
    fn eval(&mut self, i: usize, _t: T, y: &[T], grad: &mut [T]) -> f64 {
        let row = &self.data[i * self.dim..(i + 1) * self.dim];
        let scale = self.scale();
        let mut l = 0.0;
        for j in 0..self.dim {
            if row[j].is_nan() {
                grad[j] = T::zero();
                continue;
            }
            let w = self.weights.get(j).copied().unwrap_or(1.0) * scale;
            let r = y[j].f64() - row[j];
            l += w * r * r;
            grad[j] = T::c(2.0 * w * r);
        }
        l
    }
}

/// Mean cross-entropy of `logits` (`B × n_classes`, row-major) against `labels`
/// (`B` class indices); writes `∂L/∂logits` into `grad` and returns `L` in nats.
/// Panics if a label is out of range (a caller's bug, checked at the data boundary).
pub fn cross_entropy<T: Real>(logits: &[T], labels: &[usize], n_classes: usize, grad: &mut [T]) -> f64 {
    let b = labels.len();
    assert_eq!(logits.len(), b * n_classes, "cross_entropy: logits shape");
    let inv_b = 1.0 / b.max(1) as f64;
    let mut total = 0.0;
    for (k, &y) in labels.iter().enumerate() {
        assert!(y < n_classes, "cross_entropy: label {y} of {n_classes} classes");
        let z = &logits[k * n_classes..(k + 1) * n_classes];
        let g = &mut grad[k * n_classes..(k + 1) * n_classes];
        let max = z.iter().fold(f64::NEG_INFINITY, |m, v| m.max(v.f64()));
        let sum: f64 = z.iter().map(|v| (v.f64() - max).exp()).sum();
        let lse = max + sum.ln();
        total += lse - z[y].f64();
        for c in 0..n_classes {
            let p = (z[c].f64() - lse).exp();
            g[c] = T::c((p - if c == y { 1.0 } else { 0.0 }) * inv_b);
        }
    }
    total * inv_b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squared_error_skips_missing_values_and_its_gradient_is_exact() {
        let data = [1.0, f64::NAN, 0.5, 2.0];
        let weights = [2.0, 0.5];
        let mut loss = SquaredError {
            data: &data,
            dim: 2,
            weights: &weights,
            reduction: Reduction::Mean,
        };
        assert_eq!(loss.n_observed(), 3);
        let y = [1.5f64, 7.0];
        let mut g = [9.0; 2];
        let l = Loss::<f64>::eval(&mut loss, 0, 0.0, &y, &mut g);
        // Only the first component is observed at row 0: 2·0.5² / 3.
        assert!((l - 2.0 * 0.25 / 3.0).abs() < 1e-15);
        assert_eq!(g[1], 0.0, "a missing value has no gradient");
        let eps = 1e-6;
        let mut gp = [0.0; 2];
        let lp = Loss::<f64>::eval(&mut loss, 0, 0.0, &[1.5 + eps, 7.0], &mut gp);
        let lm = Loss::<f64>::eval(&mut loss, 0, 0.0, &[1.5 - eps, 7.0], &mut gp);
        assert!((g[0] - (lp - lm) / (2.0 * eps)).abs() < 1e-8);
    }

    #[test]
    fn cross_entropy_is_log_n_at_equal_logits_and_its_gradient_is_exact() {
        let n = 4;
        let logits = [0.3f64; 8];
        let mut g = [0.0; 8];
        let l = cross_entropy(&logits, &[1, 3], n, &mut g);
        assert!((l - (n as f64).ln()).abs() < 1e-14);
        // Finite differences at uneven logits; each row's gradient sums to zero.
        let z = [0.2f64, -1.0, 3.0, 0.5, 1.0, 1.1, -0.4, 2.0];
        let labels = [2, 0];
        let mut g = [0.0; 8];
        cross_entropy(&z, &labels, n, &mut g);
        for k in 0..8 {
            let (mut zp, mut zm) = (z, z);
            zp[k] += 1e-6;
            zm[k] -= 1e-6;
            let mut scratch = [0.0; 8];
            let fd =
                (cross_entropy(&zp, &labels, n, &mut scratch) - cross_entropy(&zm, &labels, n, &mut scratch)) / 2e-6;
            assert!((g[k] - fd).abs() < 1e-8, "logit {k}: {} vs {fd}", g[k]);
        }
        assert!(g[..4].iter().sum::<f64>().abs() < 1e-15);
        // Large logits do not overflow.
        let big = [1000.0f64, 0.0];
        let mut g2 = [0.0; 2];
        assert!((cross_entropy(&big, &[0], 2, &mut g2)).abs() < 1e-12);
    }
}
