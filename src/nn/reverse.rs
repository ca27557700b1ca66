//! Reverse pass through the forward-with-tangents computation.
//!
//! Per layer, with `ā` the cotangent of the output stack and `y = h⊙g + c` (`h`
//! including the bias on primal rows):
//!
//! ```text
//! ȳ   = ā ⊙ φ'(y) + φ''(y) ⊙ Σ_k ā_k ⊙ ẏ_k,   ẏ̄_k = ā_k ⊙ φ'(y),   ẏ_k = h_k ⊙ g
//! ū   = ȳ ⊙ g (all rows)     b̄ = Σ_b ū_b     c̄ = Σ_b ȳ_b     ḡ = Σ_rows ȳ ⊙ h
//! W̄  += ūᵀ X                 X̄ = ū W          (both over all (K+1)B rows)
//! ```
//!
//! and the time params follow from `ḡ`, `c̄` through `g = σ(W_g t + b_g)`, `c = W_b t`.

use crate::nn::gemm::{self, Dims};
use crate::nn::thin::{self, THIN};
use crate::nn::workspace::ForwardState;
use crate::nn::{Cotangents, LayerKind, Mlp, Workspace};
use crate::Real;

impl<T: Real> Mlp<T> {
    /// Writes the cotangent of the output stack into `ws.ga`:
    /// primal rows `a_f + 2 a_kin f`, tangent rows `a_jv,k + w (a_tr v_k + 2 a_jac J v_k)`.
    pub(crate) fn seed_cotangents(&self, state: &ForwardState<T>, cot: &Cotangents<'_, T>, ws: &mut Workspace<T>) {
        let (b, d, k) = (ws.n_batch, self.dim(), state.n_tangents);
        let bd = b * d;
        let w = state.weight;
        let two = T::c(2.0);
        let y = &ws.a[self.shapes.len() - 1];
        let g = &mut ws.ga[..(k + 1) * bd];
        match cot.f {
            Some(af) => g[..bd].copy_from_slice(af),
            None => g[..bd].fill(T::zero()),
        }
        if let Some(akin) = cot.kinetic {
            for ((gr, yr), &ak) in g[..bd].chunks_exact_mut(d).zip(y[..bd].chunks_exact(d)).zip(akin) {
                for (gv, &yv) in gr.iter_mut().zip(yr) {
                    *gv += two * ak * yv;
                }
            }
        }
        if k == 0 {
            return;
        }
        let gt = &mut g[bd..];
        match cot.jv {
            Some(ajv) => gt.copy_from_slice(ajv),
            None => gt.fill(T::zero()),
        }
        let yt = &y[bd..(k + 1) * bd];
        let vt = &ws.x0[bd..(k + 1) * bd];
        let atr = cot.trace;
        let ajac = cot.jacobian;
        for (r, ((gr, yr), vr)) in gt
            .chunks_exact_mut(d)
            .zip(yt.chunks_exact(d))
            .zip(vt.chunks_exact(d))
            .enumerate()
        {
            let i = r % b;
            let ct = atr.map_or(T::zero(), |a| a[i] * w);
            let cj = ajac.map_or(T::zero(), |a| two * a[i] * w);
            for ((gv, &yv), &vv) in gr.iter_mut().zip(yr).zip(vr) {
                *gv += ct * vv + cj * yv;
            }
        }
    }

    /// Runs the reverse pass from the output cotangent in `ws.ga` down to the input;
    /// writes `grad_z`, accumulates `grad_params`, returns `∂S/∂t`.
    pub(crate) fn reverse_stack(
        &self,
        state: &ForwardState<T>,
        ws: &mut Workspace<T>,
        grad_z: &mut [T],
        grad_params: &mut [T],
    ) -> T {
        let (b, n_tan, t) = (ws.n_batch, state.n_tangents, state.t);
        let rows = (n_tan + 1) * b;
        let n_layers = self.shapes.len();
        let mut grad_t = T::zero();
        for l in (0..n_layers).rev() {
            let s = self.shapes[l];
            let (n_in, n_out) = (s.n_in, s.n_out);
            let gate = &ws.gate[l][..n_out];
            let acc = Acc::zeroed(&mut ws.acc_g[..n_out], &mut ws.acc_c[..n_out], &mut ws.acc_b[..n_out]);
            let gbuf = &mut ws.ga[..rows * n_out];
            let h = &ws.h[l][..rows * n_out];
            if l + 1 < n_layers {
                hidden_reverse(
                    b,
                    n_out,
                    gbuf,
                    h,
                    &ws.d1[l][..b * n_out],
                    &ws.d2[l][..b * n_out],
                    gate,
                    acc,
                    &mut ws.tmp[..n_out],
                );
            } else {
                output_reverse(b * n_out, n_out, gbuf, h, gate, acc);
            }
            // ū is now in gbuf.
            let (gp_w, gp_rest) = grad_params[s.offset..s.offset + s.n_params()].split_at_mut(n_out * n_in);
            self.layer_products_reverse(l, rows, ws, grad_z, gp_w);
            // Bias and time params.
            let (gp_b, gp_t) = gp_rest.split_at_mut(n_out);
            for (gv, &a) in gp_b.iter_mut().zip(&ws.acc_b[..n_out]) {
                *gv += a;
            }
            let tp = &self.params[s.time_offset()..s.offset + s.n_params()];
            let (acc_g, acc_c) = (&ws.acc_g[..n_out], &ws.acc_c[..n_out]);
            let gate = &ws.gate[l][..n_out];
            match s.kind {
                LayerKind::ConcatSquash => {
                    let (g_wg, g_rest) = gp_t.split_at_mut(n_out);
                    let (g_bg, g_wb) = g_rest.split_at_mut(n_out);
                    let wg = &tp[..n_out];
                    let wb = &tp[2 * n_out..3 * n_out];
                    for j in 0..n_out {
                        let sb = acc_g[j] * gate[j] * (T::one() - gate[j]);
                        g_wg[j] += sb * t;
                        g_bg[j] += sb;
                        g_wb[j] += acc_c[j] * t;
                        grad_t += sb * wg[j] + acc_c[j] * wb[j];
                    }
                }
                LayerKind::Concat => {
                    for j in 0..n_out {
                        gp_t[j] += acc_c[j] * t;
                        grad_t += acc_c[j] * tp[j];
                    }
                }
                LayerKind::Ignore => {}
            }
            std::mem::swap(&mut ws.ga, &mut ws.gb);
        }
        grad_t
    }

    /// The reverse pass of [`Mlp::forward_stack_times`] from the output cotangent in
    /// `ws.ga`: writes `grad_z`, accumulates `grad_params`, returns `Σ_i ∂S/∂t_i`.
    pub(crate) fn reverse_stack_times(&self, ws: &mut Workspace<T>, grad_z: &mut [T], grad_params: &mut [T]) -> T {
        let b = ws.n_batch;
        let n_layers = self.shapes.len();
        let mut grad_t = T::zero();
        for l in (0..n_layers).rev() {
            let s = self.shapes[l];
            let (n_in, n_out) = (s.n_in, s.n_out);
            let acc = Acc::zeroed(&mut ws.acc_g[..n_out], &mut ws.acc_c[..n_out], &mut ws.acc_b[..n_out]);
            let gbuf = &mut ws.ga[..b * n_out];
            let h = &ws.h[l][..b * n_out];
            let unit = &ws.ones[..n_out];
            // With a unit gate these leave ȳ in gbuf and Σ_i ȳ_i in acc_b.
            if l + 1 < n_layers {
                let (d1, d2) = (&ws.d1[l][..b * n_out], &ws.d2[l][..b * n_out]);
                hidden_reverse(b, n_out, gbuf, h, d1, d2, unit, acc, &mut ws.tmp[..n_out]);
            } else {
                output_reverse(b * n_out, n_out, gbuf, h, unit, acc);
            }
            let (gp_w, gp_rest) = grad_params[s.offset..s.offset + s.n_params()].split_at_mut(n_out * n_in);
            let (gp_b, gp_t) = gp_rest.split_at_mut(n_out);
            let tp = &self.params[s.time_offset()..s.offset + s.n_params()];
            let rows = gbuf.chunks_exact_mut(n_out).zip(&ws.times);
            match s.kind {
                LayerKind::Ignore => {
                    for (gv, &a) in gp_b.iter_mut().zip(&ws.acc_b[..n_out]) {
                        *gv += a;
                    }
                }
                LayerKind::Concat => {
                    for (gv, &a) in gp_b.iter_mut().zip(&ws.acc_b[..n_out]) {
                        *gv += a;
                    }
                    // t̄ = Σ_i Σ_j ȳ_ij w_j = Σ_j w_j c̄_j (c̄ = Σ_i ȳ_i with a unit gate).
                    for (gr, &t) in rows {
                        for (gv, &yb) in gp_t.iter_mut().zip(gr.iter()) {
                            *gv += yb * t;
                        }
                    }
                    for (&c, &w) in ws.acc_c[..n_out].iter().zip(tp) {
                        grad_t += c * w;
                    }
                }
                LayerKind::ConcatSquash => {
                    let (g_wg, g_rest) = gp_t.split_at_mut(n_out);
                    let (g_bg, g_wb) = g_rest.split_at_mut(n_out);
                    let (wg, wb) = (&tp[..n_out], &tp[2 * n_out..3 * n_out]);
                    let saved = ws.row_gate[l].chunks_exact(n_out).zip(ws.row_hb[l].chunks_exact(n_out));
                    // Σ_i s̄_i in tmp, so that t̄ = Σ_j (wg_j Σ_i s̄_ij + wb_j c̄_j) is one
                    // sum per unit rather than a chain through every element.
                    let sb_sum = &mut ws.tmp[..n_out];
                    sb_sum.fill(T::zero());
                    for ((gr, &t), (gate, hb)) in rows.zip(saved) {
                        for j in 0..n_out {
                            let yb = gr[j];
                            let sb = yb * hb[j] * gate[j] * (T::one() - gate[j]);
                            g_wg[j] += sb * t;
                            g_bg[j] += sb;
                            g_wb[j] += yb * t;
                            sb_sum[j] += sb;
                            let ub = yb * gate[j];
                            gp_b[j] += ub;
                            gr[j] = ub;
                        }
                    }
                    for j in 0..n_out {
                        grad_t += wg[j] * sb_sum[j] + wb[j] * ws.acc_c[j];
                    }
                }
            }
            // ū is now in ws.ga.
            self.layer_products_reverse(l, b, ws, grad_z, gp_w);
            std::mem::swap(&mut ws.ga, &mut ws.gb);
        }
        grad_t
    }

    /// From `ū` of layer `l` in `ws.ga` (its first `rows` rows): `W̄ += ūᵀ X` into `gp_w`,
    /// and `X̄ = ū W` into `ws.gb` below the first layer, into `grad_z` (primal rows only)
    /// at it.
    pub(crate) fn layer_products_reverse(
        &self,
        l: usize,
        rows: usize,
        ws: &mut Workspace<T>,
        grad_z: &mut [T],
        gp_w: &mut [T],
    ) {
        let s = self.shapes[l];
        let (n_in, n_out, b) = (s.n_in, s.n_out, ws.n_batch);
        let x_buf: &[T] = if l == 0 { &ws.x0 } else { &ws.a[l - 1] };
        let x = &x_buf[..rows * n_in];
        let w = &self.params[s.offset..s.bias_offset()];
        let u = &ws.ga[..rows * n_out];
        // X̄ is needed on all rows below the first layer, on the primal rows at it.
        let (u_rows, gx) = if l > 0 {
            (u, &mut ws.gb[..rows * n_in])
        } else {
            (&u[..b * n_out], &mut *grad_z)
        };
        if n_in.min(n_out) <= THIN {
            thin::weight_grad(u, x, n_in, n_out, &mut ws.wt, gp_w);
            thin::input_grad(u_rows, w, n_in, n_out, &mut ws.wt, gx);
        } else {
            let reduce = Dims {
                m: n_out,
                k: rows,
                n: n_in,
            };
            gemm::matmul_tn(reduce, u, x, true, &mut ws.pack, gp_w);
            let wide = Dims {
                m: u_rows.len() / n_out,
                k: n_out,
                n: n_in,
            };
            gemm::matmul_nn(wide, u_rows, w, false, &mut ws.pack, gx);
        }
    }
}

/// Per-unit accumulators `ḡ`, `c̄`, `b̄` of one layer.
struct Acc<'a, T> {
    g: &'a mut [T],
    c: &'a mut [T],
    b: &'a mut [T],
}

impl<'a, T: Real> Acc<'a, T> {
    /// The three accumulators, zeroed.
    fn zeroed(g: &'a mut [T], c: &'a mut [T], b: &'a mut [T]) -> Self {
        for acc in [&mut *g, &mut *c, &mut *b] {
            acc.fill(T::zero());
        }
        Acc { g, c, b }
    }
}

/// Hidden layer: turns `ā` (in `gbuf`) into `ū` in place and accumulates `ḡ, c̄, b̄`.
/// Dispatches to an AVX2 build when the CPU has it, like the forward loop.
#[allow(clippy::too_many_arguments)]
fn hidden_reverse<T: Real>(
    b: usize,
    n: usize,
    gbuf: &mut [T],
    h: &[T],
    d1: &[T],
    d2: &[T],
    gate: &[T],
    acc: Acc<'_, T>,
    tmp: &mut [T],
) {
    #[cfg(target_arch = "x86_64")]
    if crate::nn::has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        unsafe { hidden_reverse_avx2(b, n, gbuf, h, d1, d2, gate, acc, tmp) };
        return;
    }
    hidden_reverse_impl(b, n, gbuf, h, d1, d2, gate, acc, tmp);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn hidden_reverse_avx2<T: Real>(
    b: usize,
    n: usize,
    gbuf: &mut [T],
    h: &[T],
    d1: &[T],
    d2: &[T],
    gate: &[T],
    acc: Acc<'_, T>,
    tmp: &mut [T],
) {
    hidden_reverse_impl(b, n, gbuf, h, d1, d2, gate, acc, tmp);
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn hidden_reverse_impl<T: Real>(
    b: usize,
    n: usize,
    gbuf: &mut [T],
    h: &[T],
    d1: &[T],
    d2: &[T],
    gate: &[T],
    acc: Acc<'_, T>,
    tmp: &mut [T],
) {
    let bn = b * n;
    let n_tan = gbuf.len() / bn - 1;
    let (gp, gt) = gbuf.split_at_mut(bn);
    let (hp, ht) = h.split_at(bn);
    let (ag, ac, ab) = (&mut acc.g[..n], &mut acc.c[..n], &mut acc.b[..n]);
    let gate = &gate[..n];
    let tmp = &mut tmp[..n];
    for i in 0..b {
        let r = i * n..(i + 1) * n;
        let (d1r, d2r) = (&d1[r.clone()], &d2[r.clone()]);
        if n_tan > 0 {
            tmp.fill(T::zero());
        }
        for k in 0..n_tan {
            let rk = k * bn + i * n..k * bn + (i + 1) * n;
            let (gk, hk) = (&mut gt[rk.clone()], &ht[rk]);
            for j in 0..n {
                let gv = gk[j];
                tmp[j] += gv * hk[j];
                let yb = gv * d1r[j];
                ag[j] += yb * hk[j];
                gk[j] = yb * gate[j];
            }
        }
        let (gr, hr) = (&mut gp[r.clone()], &hp[r]);
        for j in 0..n {
            // φ'' is written by the forward pass only when there are tangents.
            let second = if n_tan == 0 {
                T::zero()
            } else {
                d2r[j] * tmp[j] * gate[j]
            };
            let yb = gr[j] * d1r[j] + second;
            ac[j] += yb;
            ag[j] += yb * hr[j];
            let ub = yb * gate[j];
            ab[j] += ub;
            gr[j] = ub;
        }
    }
}

/// Output layer (no activation): `ū = ȳ ⊙ g` in place, accumulating `ḡ, c̄, b̄`.
fn output_reverse<T: Real>(bn: usize, n: usize, gbuf: &mut [T], h: &[T], gate: &[T], acc: Acc<'_, T>) {
    let (gp, gt) = gbuf.split_at_mut(bn);
    let (hp, ht) = h.split_at(bn);
    for (gr, hr) in gp.chunks_exact_mut(n).zip(hp.chunks_exact(n)) {
        for j in 0..n {
            let yb = gr[j];
            acc.c[j] += yb;
            acc.g[j] += yb * hr[j];
            let ub = yb * gate[j];
            acc.b[j] += ub;
            gr[j] = ub;
        }
    }
    for (gr, hr) in gt.chunks_exact_mut(n).zip(ht.chunks_exact(n)) {
        for j in 0..n {
            let yb = gr[j];
            acc.g[j] += yb * hr[j];
            gr[j] = yb * gate[j];
        }
    }
}
