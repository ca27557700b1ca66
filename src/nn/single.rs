//! One sample through a time-independent network, with a tape for its reverse pass.
//!
//! A neural ODE of a time series or a classifier's ODE block evaluates its network on
//! one state at a time, thousands of times per solve; the batched kernels' set-up
//! (packing, tangent stacks, time terms) then costs more than the arithmetic. These two
//! plain loops do only the arithmetic: `a₀ = x`, `a_l = φ(W_l a_{l−1} + b_l)` (no `φ` on
//! the last layer), and the reverse pass `ḡ_l = (W_{l+1}ᵀ ḡ_{l+1}) ⊙ φ'`, `∂W_l += ḡ_l
//! a_{l−1}ᵀ`, `∂b_l += ḡ_l`. Only layers of kind [`LayerKind::Ignore`] (no `t`).

use super::{LayerKind, Mlp};

/// What a [`Mlp::forward_single`] keeps for [`Mlp::vjp_single`]: each layer's input and
/// the hidden layers' `φ'`.
#[derive(Clone, Debug, Default)]
pub struct SingleTape {
    /// `a₀ … a_{L−1}` (the inputs of layers `0 … L−1`).
    inputs: Vec<Vec<f64>>,
    /// `φ'(y_l)` of hidden layer `l`.
    d1: Vec<Vec<f64>>,
    /// Pre-activations of the current layer, and the gate and shift of a layer that
    /// ignores `t` (ones and zeros).
    h: Vec<f64>,
    ones: Vec<f64>,
    zeros: Vec<f64>,
    /// Scratch for the reverse pass (the widest layer).
    g: Vec<f64>,
    g_next: Vec<f64>,
}

impl Mlp<f64> {
    /// A tape sized for this network, or `None` if a layer takes `t` (only
    /// [`LayerKind::Ignore`] layers are supported here).
    pub fn single_tape(&self) -> Option<SingleTape> {
        if self.shapes.iter().any(|s| s.kind != LayerKind::Ignore) {
            return None;
        }
        let widest = self.shapes.iter().map(|s| s.n_in.max(s.n_out)).max().unwrap_or(0);
        Some(SingleTape {
            inputs: self.shapes.iter().map(|s| vec![0.0; s.n_in]).collect(),
            d1: self.shapes.iter().map(|s| vec![0.0; s.n_out]).collect(),
            h: vec![0.0; widest],
            ones: vec![1.0; widest],
            zeros: vec![0.0; widest],
            g: vec![0.0; widest],
            g_next: vec![0.0; widest],
        })
    }

    /// `f(x)` for one sample `x` (length `d`) into `f`, recording on `tape` what
    /// [`Mlp::vjp_single`] needs. The tape must come from [`Mlp::single_tape`] of a
    /// network of this shape.
    pub fn forward_single(&self, x: &[f64], tape: &mut SingleTape, f: &mut [f64]) {
        let act = self.config.activation();
        let n_layers = self.shapes.len();
        tape.inputs[0].copy_from_slice(x);
        for (l, s) in self.shapes.iter().enumerate() {
            let (n_in, n_out) = (s.n_in, s.n_out);
            let w = &self.params[s.offset..s.bias_offset()];
            let b = &self.params[s.bias_offset()..s.time_offset()];
            let (before, after) = tape.inputs.split_at_mut(l + 1);
            let input = &before[l];
            let h = &mut tape.h[..n_out];
            for j in 0..n_out {
                let row = &w[j * n_in..(j + 1) * n_in];
                h[j] = row.iter().zip(input.iter()).map(|(w, x)| w * x).sum::<f64>();
            }
            if l + 1 < n_layers {
                let (ones, zeros) = (&tape.ones[..n_out], &tape.zeros[..n_out]);
                super::forward::activate_single(act, h, b, ones, zeros, &mut after[0], &mut tape.d1[l]);
            } else {
                for j in 0..n_out {
                    f[j] = h[j] + b[j];
                }
            }
        }
    }

    /// The reverse pass of the last [`Mlp::forward_single`] on `tape` with cotangent `w`
    /// of `f`: writes `wᵀ ∂f/∂x` into `grad_x` and ADDS `wᵀ ∂f/∂θ` into `grad_params`.
    pub fn vjp_single(&self, tape: &mut SingleTape, w: &[f64], grad_x: &mut [f64], grad_params: &mut [f64]) {
        let n_layers = self.shapes.len();
        let SingleTape {
            inputs, d1, g, g_next, ..
        } = tape;
        let d = w.len();
        g[..d].copy_from_slice(w);
        for l in (0..n_layers).rev() {
            let s = &self.shapes[l];
            let (n_in, n_out) = (s.n_in, s.n_out);
            if l + 1 < n_layers {
                for j in 0..n_out {
                    g[j] *= d1[l][j];
                }
            }
            let wt = &self.params[s.offset..s.bias_offset()];
            let (gw, rest) = grad_params[s.offset..s.time_offset()].split_at_mut(n_out * n_in);
            let input = &inputs[l];
            g_next[..n_in].fill(0.0);
            for j in 0..n_out {
                let gj = g[j];
                rest[j] += gj;
                let row = &wt[j * n_in..(j + 1) * n_in];
                let grow = &mut gw[j * n_in..(j + 1) * n_in];
                for i in 0..n_in {
                    grow[i] += gj * input[i];
                    g_next[i] += gj * row[i];
                }
            }
            std::mem::swap(g, g_next);
        }
        grad_x.copy_from_slice(&g[..grad_x.len()]);
    }
}
