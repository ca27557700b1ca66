//! The dense layers around the block: `y = x Wᵀ + b` on a batch, forward and backward
//! by hand (the lift is `2 → width`, the read-out `width → n_classes`: too thin for the
//! matrix kernels to pay).

use rand::Rng;

/// A dense layer `y = x Wᵀ + b` on a batch, `W` row-major `n_out × n_in`.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Linear {
    pub(super) n_in: usize,
    pub(super) n_out: usize,
    /// `W` then `b`.
    pub(super) params: Vec<f64>,
}

impl Linear {
    /// PyTorch's `nn.Linear` initialisation: everything uniform on `±1/√n_in`.
    pub(super) fn new<R: Rng + ?Sized>(n_in: usize, n_out: usize, rng: &mut R) -> Self {
        let bound = 1.0 / (n_in as f64).sqrt();
        let params = (0..n_out * (n_in + 1))
            .map(|_| bound * (2.0 * rng.random::<f64>() - 1.0))
            .collect();
        Linear { n_in, n_out, params }
    }

    pub(super) fn n_params(&self) -> usize {
        self.params.len()
    }

    /// `y = x Wᵀ + b` for `x` (`B × n_in`) into `y` (`B × n_out`).
    pub(super) fn forward(&self, x: &[f64], y: &mut [f64]) {
        let (w, b) = self.params.split_at(self.n_out * self.n_in);
        for (xr, yr) in x.chunks_exact(self.n_in).zip(y.chunks_exact_mut(self.n_out)) {
            for o in 0..self.n_out {
                let wo = &w[o * self.n_in..(o + 1) * self.n_in];
                yr[o] = b[o] + wo.iter().zip(xr).map(|(a, v)| a * v).sum::<f64>();
            }
        }
    }

    /// Given `ȳ` (`B × n_out`): adds `W̄ = ȳᵀ x`, `b̄ = Σ_b ȳ_b` into `grad` (laid out like
    /// the params) and, if asked, writes `x̄ = ȳ W` into `grad_x` (`B × n_in`).
    pub(super) fn backward(&self, x: &[f64], grad_y: &[f64], grad: &mut [f64], mut grad_x: Option<&mut [f64]>) {
        let (n_in, n_out) = (self.n_in, self.n_out);
        let w = &self.params[..n_out * n_in];
        let (gw, gb) = grad.split_at_mut(n_out * n_in);
        for (row, (xr, gy)) in x.chunks_exact(n_in).zip(grad_y.chunks_exact(n_out)).enumerate() {
            for o in 0..n_out {
                gb[o] += gy[o];
                for (g, &v) in gw[o * n_in..(o + 1) * n_in].iter_mut().zip(xr) {
                    *g += gy[o] * v;
                }
            }
            if let Some(gx) = grad_x.as_deref_mut() {
                let gx = &mut gx[row * n_in..(row + 1) * n_in];
                gx.fill(0.0);
                for o in 0..n_out {
                    for (g, &a) in gx.iter_mut().zip(&w[o * n_in..(o + 1) * n_in]) {
                        *g += gy[o] * a;
                    }
                }
            }
        }
    }
}
