//! Hutchinson probes `ε`, drawn from a caller's RNG.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::Real;

/// Distribution of the Hutchinson probes; both have `E[ε εᵀ] = I`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// Entries `±1` with probability ½ each (lowest variance of the estimate).
    Rademacher,
    /// Entries standard normal.
    Gaussian,
}

/// Fills `out` with independent probe entries of the given kind.
pub fn fill_probes<T: Real, R: Rng + ?Sized>(kind: ProbeKind, rng: &mut R, out: &mut [T]) {
    match kind {
        ProbeKind::Rademacher => {
            for v in out.iter_mut() {
                *v = if rng.random::<bool>() { T::one() } else { -T::one() };
            }
        }
        ProbeKind::Gaussian => {
            for v in out.iter_mut() {
                let x: f64 = StandardNormal.sample(rng);
                *v = T::c(x);
            }
        }
    }
}

/// `K` probes for a batch of `B` samples in dimension `d`, laid out `K × B × d` as
/// [`TraceMode::Hutchinson`](crate::nn::TraceMode::Hutchinson) expects.
pub fn probes<T: Real, R: Rng + ?Sized>(
    kind: ProbeKind,
    rng: &mut R,
    n_probes: usize,
    n_batch: usize,
    dim: usize,
) -> Vec<T> {
    let mut out = vec![T::zero(); n_probes * n_batch * dim];
    fill_probes(kind, rng, &mut out);
    out
}
