//! Forward pass with stacked tangents: one matrix product per layer for the primal
//! rows and all `K` tangent rows ([`gemm::matmul_nn`] on the cached `Wᵀ`, or the
//! thin-layer kernels), then a fused element loop (bias, gate, shift, activation and
//! its derivatives).

use crate::nn::activation::{sigmoid, ActFn, Elu, Softplus, Swish, Tanh};
use crate::nn::gemm::{self, Dims};
use crate::nn::thin::{self, THIN};
use crate::nn::{Activation, FieldOutputs, LayerKind, Mlp, Workspace};
use crate::Real;

impl<T: Real> Mlp<T> {
    /// Gate `g(t)` and shift `c(t)` of every layer.
    fn time_terms(&self, t: T, ws: &mut Workspace<T>) {
        for (l, s) in self.shapes.iter().enumerate() {
            let (gate, shift) = (&mut ws.gate[l], &mut ws.shift[l]);
            let tp = &self.params[s.time_offset()..s.offset + s.n_params()];
            let n = s.n_out;
            match s.kind {
                LayerKind::ConcatSquash => {
                    let (wg, rest) = tp.split_at(n);
                    let (bg, wb) = rest.split_at(n);
                    for j in 0..n {
                        gate[j] = sigmoid(wg[j] * t + bg[j]);
                        shift[j] = wb[j] * t;
                    }
                }
                LayerKind::Concat => {
                    gate.fill(T::one());
                    for (c, &w) in shift.iter_mut().zip(tp) {
                        *c = w * t;
                    }
                }
                LayerKind::Ignore => {
                    gate.fill(T::one());
                    shift.fill(T::zero());
                }
            }
        }
    }

    /// Per layer, `Wᵀ` of the wide layers (empty for the thin ones), made once per
    /// change of the params.
    pub(crate) fn transposed_weights(&self) -> &[Vec<T>] {
        self.transposed.get_or_init(|| {
            let mut spare = std::mem::take(&mut *self.spare.0.lock().unwrap_or_else(|e| e.into_inner()));
            spare.resize_with(self.shapes.len(), Vec::new);
            for (s, wt) in self.shapes.iter().zip(spare.iter_mut()) {
                if s.n_in.min(s.n_out) <= THIN {
                    wt.clear();
                    continue;
                }
                let w = &self.params[s.offset..s.bias_offset()];
                wt.resize(w.len(), T::zero());
                transpose(w, s.n_out, s.n_in, wt);
            }
            spare
        })
    }

    /// Builds the cached `Wᵀ` of [`Self::transposed_weights`] if it is not there, the
    /// layers shared out over [`crate::par::for_each_if_warm`] (the same values).
    pub(crate) fn prepare_transposed(&self) {
        if self.transposed.get().is_some() {
            return;
        }
        let mut spare = std::mem::take(&mut *self.spare.0.lock().unwrap_or_else(|e| e.into_inner()));
        spare.resize_with(self.shapes.len(), Vec::new);
        let mut wide = Vec::new();
        for (l, (s, wt)) in self.shapes.iter().zip(spare.iter_mut()).enumerate() {
            if s.n_in.min(s.n_out) <= THIN {
                wt.clear();
            } else {
                wt.resize(s.n_in * s.n_out, T::zero());
                wide.push((l, std::sync::Mutex::new(wt)));
            }
        }
        crate::par::for_each_if_warm(wide.len(), &|k| {
            let (l, slot) = &wide[k];
            let s = &self.shapes[*l];
            let mut wt = slot.lock().unwrap_or_else(|e| e.into_inner());
            transpose(&self.params[s.offset..s.bias_offset()], s.n_out, s.n_in, &mut wt);
        });
        drop(wide);
        // Another thread may have built it meanwhile: the same values either way.
        let _ = self.transposed.set(spare);
    }

    /// Runs all layers on the input stack in `ws.x0` with `n_tan` tangent rows.
    pub(crate) fn forward_stack(&self, t: T, n_tan: usize, ws: &mut Workspace<T>) {
        ws.per_point = false;
        self.time_terms(t, ws);
        let b = ws.n_batch;
        let rows = (n_tan + 1) * b;
        let n_layers = self.shapes.len();
        for (l, s) in self.shapes.iter().enumerate() {
            let n_out = s.n_out;
            let bias = &self.params[s.bias_offset()..s.time_offset()];
            self.layer_product(l, rows, ws);
            let h = &mut ws.h[l][..rows * n_out];
            let a = &mut ws.a[l][..rows * n_out];
            let (g, c) = (&ws.gate[l][..n_out], &ws.shift[l][..n_out]);
            if l + 1 < n_layers {
                let d1 = &mut ws.d1[l][..b * n_out];
                let d2 = &mut ws.d2[l][..b * n_out];
                let keep = match (ws.inference, n_tan) {
                    (false, _) => Keep::All,
                    (true, 0) => Keep::Nothing,
                    (true, _) => Keep::D1,
                };
                let args = HiddenArgs {
                    n_batch: b,
                    n_out,
                    bias,
                    g,
                    c,
                    keep,
                };
                activate(self.config.activation(), &args, h, a, d1, d2);
            } else {
                output_rows(b * n_out, n_out, bias, g, c, h, a);
            }
        }
    }

    /// Runs all layers on the primal rows of `ws.x0`, sample `i` at its own time
    /// `ws.times[i]`: `y = (x Wᵀ + b) ⊙ g(t_i) + c(t_i)` per row, then the activation on
    /// the shared kernels (with a unit gate and no shift, which change nothing).
    pub(crate) fn forward_stack_times(&self, ws: &mut Workspace<T>) {
        ws.per_point = true;
        let b = ws.n_batch;
        let n_layers = self.shapes.len();
        for (l, s) in self.shapes.iter().enumerate() {
            let n_out = s.n_out;
            self.layer_product(l, b, ws);
            let bias = &self.params[s.bias_offset()..s.time_offset()];
            let tp = &self.params[s.time_offset()..s.offset + s.n_params()];
            let h = &mut ws.h[l][..b * n_out];
            let rows = h.chunks_exact_mut(n_out).zip(&ws.times);
            match s.kind {
                LayerKind::Ignore => {
                    for (hr, _) in rows {
                        for (hv, &bv) in hr.iter_mut().zip(bias) {
                            *hv += bv;
                        }
                    }
                }
                LayerKind::Concat => {
                    for (hr, &t) in rows {
                        for ((hv, &bv), &w) in hr.iter_mut().zip(bias).zip(tp) {
                            *hv = (*hv + bv) + w * t;
                        }
                    }
                }
                LayerKind::ConcatSquash => {
                    let (wg, rest) = tp.split_at(n_out);
                    let (bg, wb) = rest.split_at(n_out);
                    ws.row_gate[l].resize(b * n_out, T::zero());
                    ws.row_hb[l].resize(b * n_out, T::zero());
                    let saved = ws.row_gate[l]
                        .chunks_exact_mut(n_out)
                        .zip(ws.row_hb[l].chunks_exact_mut(n_out));
                    for ((hr, &t), (gr, hbr)) in rows.zip(saved) {
                        for j in 0..n_out {
                            let g = sigmoid(wg[j] * t + bg[j]);
                            let hv = hr[j] + bias[j];
                            (gr[j], hbr[j]) = (g, hv);
                            hr[j] = hv * g + wb[j] * t;
                        }
                    }
                }
            }
            let a = &mut ws.a[l][..b * n_out];
            if l + 1 < n_layers {
                let (none, unit) = (&ws.zeros[..n_out], &ws.ones[..n_out]);
                let args = HiddenArgs {
                    n_batch: b,
                    n_out,
                    bias: none,
                    g: unit,
                    c: none,
                    keep: Keep::All,
                };
                let (d1, d2) = (&mut ws.d1[l][..b * n_out], &mut ws.d2[l][..b * n_out]);
                activate(self.config.activation(), &args, h, a, d1, d2);
            } else {
                a.copy_from_slice(h);
            }
        }
    }

    /// `h = x Wᵀ` of layer `l` on the first `rows` rows of its input stack (`ws.x0` for
    /// the first layer, the previous layer's output after it).
    pub(crate) fn layer_product(&self, l: usize, rows: usize, ws: &mut Workspace<T>) {
        let s = &self.shapes[l];
        let (n_in, n_out) = (s.n_in, s.n_out);
        let w = &self.params[s.offset..s.bias_offset()];
        let x_buf: &[T] = if l == 0 { &ws.x0 } else { &ws.a[l - 1] };
        let x = &x_buf[..rows * n_in];
        let h = &mut ws.h[l][..rows * n_out];
        if n_in.min(n_out) <= THIN {
            thin::forward(x, w, n_in, n_out, &mut ws.wt, h);
        } else {
            let dims = Dims {
                m: rows,
                k: n_in,
                n: n_out,
            };
            gemm::matmul_nn(dims, x, &self.transposed_weights()[l], false, &mut ws.pack, h);
        }
    }

    /// Reduces the output stack to `f`, trace and regularizers.
    pub(crate) fn collect_outputs(&self, n_tan: usize, ws: &Workspace<T>, out: FieldOutputs<'_, T>) {
        let (b, d) = (ws.n_batch, self.dim());
        let bd = b * d;
        let weight = ws.state.map_or(T::one(), |s| s.weight);
        let y = &ws.a[self.shapes.len() - 1];
        let v = &ws.x0;
        out.f.copy_from_slice(&y[..bd]);
        for (i, tr) in out.trace.iter_mut().enumerate() {
            let mut s = T::zero();
            for k in 1..=n_tan {
                let o = k * bd + i * d;
                for (&yv, &vv) in y[o..o + d].iter().zip(&v[o..o + d]) {
                    s += yv * vv;
                }
            }
            *tr = s * weight;
        }
        if let Some(kin) = out.kinetic {
            for (kv, row) in kin.iter_mut().zip(y[..bd].chunks_exact(d)) {
                *kv = row.iter().map(|&x| x * x).sum();
            }
        }
        if let Some(jac) = out.jacobian {
            for (i, jv) in jac.iter_mut().enumerate() {
                let mut s = T::zero();
                for k in 1..=n_tan {
                    let o = k * bd + i * d;
                    s += y[o..o + d].iter().map(|&x| x * x).sum::<T>();
                }
                *jv = s * weight;
            }
        }
    }
}

/// `out (cols × rows) = inᵀ` for a row-major `input (rows × cols)`, in tiles of 16 × 16
/// so that the reads and the writes both stay within a few cache lines.
fn transpose<T: Copy>(input: &[T], rows: usize, cols: usize, out: &mut [T]) {
    const TILE: usize = 16;
    for i0 in (0..rows).step_by(TILE) {
        for j0 in (0..cols).step_by(TILE) {
            for i in i0..(i0 + TILE).min(rows) {
                for j in j0..(j0 + TILE).min(cols) {
                    out[j * rows + i] = input[i * cols + j];
                }
            }
        }
    }
}

/// What the primal rows of a hidden layer store besides the activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// `h + b`, `φ'` and, with tangent rows, `φ''`: everything the reverse pass reads.
    All,
    /// Only `φ'`, which the tangent rows read (an inference workspace with tangents).
    D1,
    /// Nothing (an inference workspace without tangents).
    Nothing,
}

struct HiddenArgs<'a, T> {
    n_batch: usize,
    n_out: usize,
    bias: &'a [T],
    g: &'a [T],
    c: &'a [T],
    keep: Keep,
}

/// Hidden layer: primal rows `h += b; y = h⊙g + c; a = φ(y)` keeping `φ'`, and `φ''`
/// when there are tangent rows; tangent rows `a = φ'(y) ⊙ h ⊙ g`.
///
/// Dispatches at run time to an AVX2 build of the same loop when the CPU has it (the
/// crate is compiled for baseline x86-64, whose SSE2 vectors are half as wide), and for
/// tanh in `f32` to the hand-written kernel of [`tanh_x86`](crate::nn::tanh_x86).
fn hidden_rows<A: ActFn, T: Real>(args: &HiddenArgs<'_, T>, h: &mut [T], a: &mut [T], d1: &mut [T], d2: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if crate::nn::has_avx2() {
        if A::IS_TANH && tanh_f32_primal_rows(args, h, a, d1, d2) {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            unsafe { tangent_rows_avx2(args, h, a, d1) };
        } else {
            // SAFETY: as above.
            unsafe { hidden_rows_avx2::<A, T>(args, h, a, d1, d2) };
        }
        return;
    }
    primal_rows::<A, T>(args, h, a, d1, d2);
    tangent_rows(args, h, a, d1);
}

/// [`hidden_rows`] for the activation `act`.
fn activate<T: Real>(act: Activation, args: &HiddenArgs<'_, T>, h: &mut [T], a: &mut [T], d1: &mut [T], d2: &mut [T]) {
    match act {
        Activation::Tanh => hidden_rows::<Tanh, T>(args, h, a, d1, d2),
        Activation::Softplus => hidden_rows::<Softplus, T>(args, h, a, d1, d2),
        Activation::Elu => hidden_rows::<Elu, T>(args, h, a, d1, d2),
        Activation::Swish => hidden_rows::<Swish, T>(args, h, a, d1, d2),
    }
}

/// The primal rows on the `f32` tanh kernel when `T` is `f32`; returns whether it ran.
/// Only called once AVX2 and FMA are known to be there.
#[cfg(target_arch = "x86_64")]
fn tanh_f32_primal_rows<T: Real>(
    args: &HiddenArgs<'_, T>,
    h: &mut [T],
    a: &mut [T],
    d1: &mut [T],
    d2: &mut [T],
) -> bool {
    use crate::nn::gemm::{cast, cast_mut};
    let bn = args.n_batch * args.n_out;
    let with_d2 = h.len() > bn;
    let (Some(bias), Some(g), Some(c)) = (
        cast::<T, f32>(args.bias),
        cast::<T, f32>(args.g),
        cast::<T, f32>(args.c),
    ) else {
        return false;
    };
    let (Some(h), Some(a), Some(d1), Some(d2)) = (cast_mut(h), cast_mut(a), cast_mut(d1), cast_mut(d2)) else {
        return false;
    };
    let (d1, d2, store_h) = match args.keep {
        Keep::All => (Some(d1), with_d2.then_some(d2), true),
        Keep::D1 => (Some(d1), None, false),
        Keep::Nothing => (None, None, false),
    };
    // SAFETY: the caller checked AVX2 and FMA.
    unsafe { crate::nn::tanh_x86::primal_rows(args.n_batch, args.n_out, bias, g, c, h, a, d1, d2, store_h) };
    true
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn hidden_rows_avx2<A: ActFn, T: Real>(
    args: &HiddenArgs<'_, T>,
    h: &mut [T],
    a: &mut [T],
    d1: &mut [T],
    d2: &mut [T],
) {
    primal_rows::<A, T>(args, h, a, d1, d2);
    tangent_rows(args, h, a, d1);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tangent_rows_avx2<T: Real>(args: &HiddenArgs<'_, T>, h: &[T], a: &mut [T], d1: &[T]) {
    tangent_rows(args, h, a, d1);
}

/// Primal rows: `h += b; y = h⊙g + c; a = φ(y)`, `φ'`, and `φ''` when there are tangent
/// rows (the reverse pass reads it only for tangents).
#[inline(always)]
fn primal_rows<A: ActFn, T: Real>(args: &HiddenArgs<'_, T>, h: &mut [T], a: &mut [T], d1: &mut [T], d2: &mut [T]) {
    match args.keep {
        Keep::All if h.len() > args.n_batch * args.n_out => primal_rows_k::<A, T, true, true, true>(args, h, a, d1, d2),
        Keep::All => primal_rows_k::<A, T, true, true, false>(args, h, a, d1, d2),
        Keep::D1 => primal_rows_k::<A, T, false, true, false>(args, h, a, d1, d2),
        Keep::Nothing => primal_rows_k::<A, T, false, false, false>(args, h, a, d1, d2),
    }
}

/// [`primal_rows`] storing `h + b` when `H`, `φ'` when `D1` and `φ''` when `D2`.
#[inline(always)]
fn primal_rows_k<A: ActFn, T: Real, const H: bool, const D1: bool, const D2: bool>(
    args: &HiddenArgs<'_, T>,
    h: &mut [T],
    a: &mut [T],
    d1: &mut [T],
    d2: &mut [T],
) {
    let n = args.n_out;
    let (bias, g, c) = (&args.bias[..n], &args.g[..n], &args.c[..n]);
    let bn = args.n_batch * n;
    let (d1, d2) = (&mut d1[..if D1 { bn } else { 0 }], &mut d2[..if D2 { bn } else { 0 }]);
    for i in 0..args.n_batch {
        let (hr, ar) = (&mut h[i * n..(i + 1) * n], &mut a[i * n..(i + 1) * n]);
        for j in 0..n {
            let hv = hr[j] + bias[j];
            if H {
                hr[j] = hv;
            }
            let (av, p1, p2) = A::eval(hv * g[j] + c[j]);
            ar[j] = av;
            if D1 {
                d1[i * n + j] = p1;
            }
            if D2 {
                d2[i * n + j] = p2;
            }
        }
    }
}

/// Tangent rows: `a = φ'(y) ⊙ h ⊙ g`.
#[inline(always)]
fn tangent_rows<T: Real>(args: &HiddenArgs<'_, T>, h: &[T], a: &mut [T], d1: &[T]) {
    let n = args.n_out;
    let g = &args.g[..n];
    let bn = args.n_batch * n;
    for (hk, ak) in h[bn..].chunks_exact(bn).zip(a[bn..].chunks_exact_mut(bn)) {
        for ((hr, ar), d1r) in hk.chunks_exact(n).zip(ak.chunks_exact_mut(n)).zip(d1.chunks_exact(n)) {
            for j in 0..n {
                ar[j] = d1r[j] * hr[j] * g[j];
            }
        }
    }
}

/// Output layer (no activation): primal rows `h += b; y = h⊙g + c`, tangent rows
/// `y = h⊙g`; `y` is stored in `a`.
fn output_rows<T: Real>(bn: usize, n: usize, bias: &[T], g: &[T], c: &[T], h: &mut [T], a: &mut [T]) {
    let (hp, ht) = h.split_at_mut(bn);
    let (ap, at) = a.split_at_mut(bn);
    for (hr, ar) in hp.chunks_exact_mut(n).zip(ap.chunks_exact_mut(n)) {
        for j in 0..n {
            let hv = hr[j] + bias[j];
            hr[j] = hv;
            ar[j] = hv * g[j] + c[j];
        }
    }
    for (hr, ar) in ht.chunks_exact(n).zip(at.chunks_exact_mut(n)) {
        for j in 0..n {
            ar[j] = hr[j] * g[j];
        }
    }
}

/// One sample's hidden layer with no time terms: `a = φ(h + b)` and `φ'` into `d1` (all
/// of length `n`), on the same dispatched loops as the batched layers; `ones` and
/// `zeros` are at least `n` long (the gate and shift of a layer that ignores `t`).
#[allow(clippy::too_many_arguments)]
pub(super) fn activate_single(
    act: Activation,
    h: &mut [f64],
    bias: &[f64],
    ones: &[f64],
    zeros: &[f64],
    a: &mut [f64],
    d1: &mut [f64],
) {
    let args = HiddenArgs {
        n_batch: 1,
        n_out: h.len(),
        bias,
        g: ones,
        c: zeros,
        keep: Keep::D1,
    };
    let d2: &mut [f64] = &mut [];
    match act {
        Activation::Tanh => hidden_rows::<Tanh, f64>(&args, h, a, d1, d2),
        Activation::Softplus => hidden_rows::<Softplus, f64>(&args, h, a, d1, d2),
        Activation::Elu => hidden_rows::<Elu, f64>(&args, h, a, d1, d2),
        Activation::Swish => hidden_rows::<Swish, f64>(&args, h, a, d1, d2),
    }
}
