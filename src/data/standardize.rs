//! Per-column standardisation, the affine map `u = (x - μ) / σ`, and its log-det.
//!
//! A model is trained on `u` and reports densities of `x`, the user's units, by the
//! change of variables through this diagonal map:
//!
//! ```text
//! log p_x(x) = log p_u(u) + log_det,     log_det = log |det ∂u/∂x| = -Σ_i ln σ_i
//! ```
//!
//! `μ` is the column mean and `σ` the population standard deviation (divisor `n`,
//! as scikit-learn's `StandardScaler`). The fitted values are serialisable so that a
//! model file records them.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use super::DataError;
use crate::real::Real;

/// A fitted per-column standardisation `u = (x - mean) / std`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Column means `μ_i`.
    pub mean: Array1<f64>,
    /// Column standard deviations `σ_i > 0`.
    pub std: Array1<f64>,
}

impl Standardizer {
    /// Fits the column means and standard deviations of `x` (`n × d`, `n ≥ 2`, all
    /// entries finite).
    ///
    /// Refuses columns whose standard deviation is zero or below `1e-12·|μ|`
    /// (numerically constant) with [`DataError::ZeroVariance`] naming the column.
    pub fn fit(x: ArrayView2<f64>) -> Result<Self, DataError> {
        let n_rows = x.nrows();
        if n_rows < 2 {
            return Err(DataError::TooFewPoints { n_rows });
        }
        if let Some(((i, j), v)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(DataError::NonFinite {
                file: "points to standardise".to_string(),
                line: i as u64 + 1,
                column: j + 1,
                value: v.to_string(),
            });
        }
        let n = n_rows as f64;
        let mean = x.sum_axis(Axis(0)) / n;
        let mut var = Array1::<f64>::zeros(x.ncols());
        for row in x.rows() {
            for ((v, &xi), &mi) in var.iter_mut().zip(row.iter()).zip(mean.iter()) {
                let d = xi - mi;
                *v += d * d;
            }
        }
        let std = var.mapv(|v| (v / n).sqrt());
        for (j, (&s, &m)) in std.iter().zip(mean.iter()).enumerate() {
            if !(s.is_finite() && m.is_finite()) {
                let largest = x.column(j).iter().fold(0.0f64, |a, v| a.max(v.abs()));
                return Err(DataError::Overflow { column: j + 1, largest });
            }
            let informative = s.is_finite() && s > 0.0 && s > 1e-12 * m.abs();
            if !informative {
                return Err(DataError::ZeroVariance {
                    column: j + 1,
                    value: m,
                    std: s,
                });
            }
        }
        Ok(Standardizer { mean, std })
    }

    /// The identity map in `d` dimensions (mean 0, std 1).
    pub fn identity(d: usize) -> Self {
        Standardizer {
            mean: Array1::zeros(d),
            std: Array1::ones(d),
        }
    }

    /// The dimension `d` the standardiser was fitted on.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Checks a standardiser read from a file: equal lengths, finite means, and
    /// positive finite standard deviations.
    pub fn validate(&self) -> Result<(), DataError> {
        if self.std.len() != self.mean.len() {
            return Err(DataError::DimensionMismatch {
                n_columns: self.std.len(),
                n_expected: self.mean.len(),
            });
        }
        for (j, (&s, &m)) in self.std.iter().zip(self.mean.iter()).enumerate() {
            if !(s > 0.0 && s.is_finite() && m.is_finite()) {
                return Err(DataError::InvalidScale { column: j + 1, std: s });
            }
        }
        Ok(())
    }

    fn check_dim(&self, x: &ArrayView2<f64>) -> Result<(), DataError> {
        if x.ncols() != self.dim() {
            return Err(DataError::DimensionMismatch {
                n_columns: x.ncols(),
                n_expected: self.dim(),
            });
        }
        Ok(())
    }

    /// The standardised points `u = (x - μ) / σ` (row-wise).
    pub fn forward(&self, x: ArrayView2<f64>) -> Result<Array2<f64>, DataError> {
        self.check_dim(&x)?;
        Ok((&x - &self.mean) / &self.std)
    }

    /// The points in the user's units, `x = μ + σ ⊙ u` (row-wise).
    pub fn inverse(&self, u: ArrayView2<f64>) -> Result<Array2<f64>, DataError> {
        self.check_dim(&u)?;
        Ok(&u * &self.std + &self.mean)
    }

    /// `log |det ∂u/∂x| = -Σ_i ln σ_i`, so that `log p_x(x) = log p_u(u) + log_det()`.
    pub fn log_det(&self) -> f64 {
        -self.std.iter().map(|s| s.ln()).sum::<f64>()
    }

    /// [`Self::forward`] of a flat batch (`n × d`, row-major) from float type `X` to
    /// `T`, computed in f64: `u = T((x − μ) / σ)`, so that an f32 flow sees data far
    /// from the origin at full f32 precision. Without `self`, the same cast.
    pub fn forward_flat<X: Real, T: Real>(this: Option<&Self>, x: &[X]) -> Vec<T> {
        match this {
            None => x.iter().map(|v| T::c(v.f64())).collect(),
            Some(s) => x
                .chunks_exact(s.dim())
                .flat_map(|row| {
                    row.iter()
                        .zip(&s.mean)
                        .zip(&s.std)
                        .map(|((v, m), sd)| T::c((v.f64() - m) / sd))
                })
                .collect(),
        }
    }

    /// [`Self::inverse`] of a flat batch from float type `T` to `X`: `x = X(u·σ + μ)`,
    /// computed in f64. Without `self`, the same cast.
    pub fn inverse_flat<T: Real, X: Real>(this: Option<&Self>, u: &[T]) -> Vec<X> {
        match this {
            None => u.iter().map(|v| X::c(v.f64())).collect(),
            Some(s) => u
                .chunks_exact(s.dim())
                .flat_map(|row| {
                    row.iter()
                        .zip(&s.std)
                        .zip(&s.mean)
                        .map(|((v, sd), m)| X::c(v.f64() * sd + m))
                })
                .collect(),
        }
    }

    /// Pulls a gradient with respect to `u` back to one with respect to `x`:
    /// `∂L/∂x_i = ∂L/∂u_i / σ_i` (in place, flat `n × d`).
    pub fn pull_back_flat<T: Real>(&self, grad_u: &mut [T]) {
        for row in grad_u.chunks_exact_mut(self.dim()) {
            for (g, sd) in row.iter_mut().zip(&self.std) {
                *g = T::c(g.f64() / sd);
            }
        }
    }

    /// Converts log-densities of standardised points to log-densities in the user's
    /// units: adds [`Self::log_det`] to each entry.
    pub fn log_density_x(&self, log_p_u: &Array1<f64>) -> Array1<f64> {
        let ld = self.log_det();
        log_p_u.mapv(|v| v + ld)
    }
}
