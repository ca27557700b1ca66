//! One sample through a time-independent network, with a tape for its reverse pass.
//!
//! A neural ODE of a time series or a classifier's ODE block evaluates its network on
//! one state at a time, thousands of times per solve; the batched kernels' set-up
//! (packing, tangent stacks, time terms) then costs more than the arithmetic. These two
//! plain loops do only the arithmetic: `a₀ = x`, `a_l = φ(W_l a_{l−1} + b_l)` (no `φ` on
//! the last layer), and the reverse pass `ḡ_l = (W_{l+1}ᵀ ḡ_{l+1}) ⊙ φ'`, `∂W_l += ḡ_l
//! a_{l−1}ᵀ`, `∂b_l += ḡ_l`. Only layers of kind [`LayerKind::Ignore`] (no `t`).
//!
//! Each product runs along the longer side of its matrix, so the inner loops are long
//! and vectorise: a widening layer (`n_in ≤ n_out`) adds columns of `W` (rows of a copy
//! of `Wᵀ` the tape keeps), a narrowing one takes dot products of rows, each summed in
//! four interleaved partial sums (a fixed order, so results are reproducible).

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
    /// `Wᵀ` (`n_in × n_out`) of each widening layer, copied at [`Mlp::single_tape`]
    /// (empty for the others).
    wt: Vec<Vec<f64>>,
}

/// `Σ a_k b_k` in four interleaved partial sums.
#[inline(always)]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 4];
    let (ac, bc) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3]) + tail
}

/// `y += α x`.
#[inline(always)]
fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

impl SingleTape {
    /// How many values [`SingleTape::save`] writes.
    pub fn saved_len(&self) -> usize {
        self.inputs.iter().chain(&self.d1).map(Vec::len).sum()
    }

    /// Writes what the reverse pass reads (each layer's input and `φ'`) into `out`
    /// ([`SingleTape::saved_len`] values).
    pub fn save(&self, out: &mut [f64]) {
        let mut at = 0;
        for v in self.inputs.iter().chain(&self.d1) {
            out[at..at + v.len()].copy_from_slice(v);
            at += v.len();
        }
    }

    /// Restores what [`SingleTape::save`] saved (from a tape of the same network).
    pub fn restore(&mut self, saved: &[f64]) {
        let mut at = 0;
        for v in self.inputs.iter_mut().chain(self.d1.iter_mut()) {
            let n = v.len();
            v.copy_from_slice(&saved[at..at + n]);
            at += n;
        }
    }
}

impl Mlp<f64> {
    /// A tape sized for this network, or `None` if a layer takes `t` (only
    /// [`LayerKind::Ignore`] layers are supported here). The tape holds a copy of the
    /// weights' transposes: make a new one after the params change.
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
            wt: self
                .shapes
                .iter()
                .map(|s| {
                    if s.n_in > s.n_out {
                        return Vec::new();
                    }
                    let w = &self.params[s.offset..s.bias_offset()];
                    let mut t = vec![0.0; s.n_in * s.n_out];
                    for j in 0..s.n_out {
                        for i in 0..s.n_in {
                            t[i * s.n_out + j] = w[j * s.n_in + i];
                        }
                    }
                    t
                })
                .collect(),
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
            if n_in <= n_out {
                h.fill(0.0);
                let wt = &tape.wt[l];
                for i in 0..n_in {
                    axpy(input[i], &wt[i * n_out..(i + 1) * n_out], h);
                }
            } else {
                for j in 0..n_out {
                    h[j] = dot(&w[j * n_in..(j + 1) * n_in], input);
                }
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
            inputs,
            d1,
            g,
            g_next,
            wt,
            ..
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
            let w = &self.params[s.offset..s.bias_offset()];
            let (gw, gb) = grad_params[s.offset..s.time_offset()].split_at_mut(n_out * n_in);
            let input = &inputs[l];
            axpy(1.0, &g[..n_out], gb);
            for j in 0..n_out {
                axpy(g[j], input, &mut gw[j * n_in..(j + 1) * n_in]);
            }
            if n_in <= n_out {
                let wt = &wt[l];
                for i in 0..n_in {
                    g_next[i] = dot(&wt[i * n_out..(i + 1) * n_out], &g[..n_out]);
                }
            } else {
                g_next[..n_in].fill(0.0);
                for j in 0..n_out {
                    axpy(g[j], &w[j * n_in..(j + 1) * n_in], &mut g_next[..n_in]);
                }
            }
            std::mem::swap(g, g_next);
        }
        grad_x.copy_from_slice(&g[..grad_x.len()]);
    }
}
