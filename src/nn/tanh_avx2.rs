//! The primal rows of a tanh hidden layer in `f32`, written with AVX2+FMA intrinsics.
//!
//! The same computation as the generic element loop in `forward.rs` with
//! [`fast_tanh_f32`]: `h += b; y = h⊙g + c; a = tanh y; φ' = 1 − a²; φ'' = −2aφ'`, with
//! the rational form's multiply-adds fused and two vectors in flight per step, so the
//! long dependency chain of one vector overlaps the other's. That makes the loop about a
//! fifth faster than LLVM's vectorisation of the scalar code (which may not fuse `a·b + c`),
//! and the fused multiply-adds round less, so results differ from the scalar form by an
//! ulp or two (tests/nn_tanh.rs compares both with `f64::tanh`).

use std::arch::x86_64::*;

use super::activation::{fast_tanh_f32, TANH_P, TANH_Q};

/// `tanh` of eight lanes: `x·P(x²)/Q(x²)` on `x` clamped to ±9, then clamped to ±1.
#[inline(always)]
unsafe fn tanh8<const L: usize>(y: [__m256; L]) -> [__m256; L] {
    let (lim, neg_lim) = (_mm256_set1_ps(9.0), _mm256_set1_ps(-9.0));
    let mut x = [_mm256_setzero_ps(); L];
    let (mut s, mut p, mut q) = (x, x, x);
    for i in 0..L {
        // `min`/`max` return their second operand when either is NaN, so with the bound
        // first a NaN passes through both clamps (as `f32::clamp` lets it).
        x[i] = _mm256_max_ps(neg_lim, _mm256_min_ps(lim, y[i]));
        s[i] = _mm256_mul_ps(x[i], x[i]);
        p[i] = _mm256_fmadd_ps(_mm256_set1_ps(TANH_P[4]), s[i], _mm256_set1_ps(TANH_P[3]));
        q[i] = _mm256_fmadd_ps(_mm256_set1_ps(TANH_Q[4]), s[i], _mm256_set1_ps(TANH_Q[3]));
    }
    for k in [2, 1, 0] {
        for i in 0..L {
            p[i] = _mm256_fmadd_ps(p[i], s[i], _mm256_set1_ps(TANH_P[k]));
            q[i] = _mm256_fmadd_ps(q[i], s[i], _mm256_set1_ps(TANH_Q[k]));
        }
    }
    let (one, neg_one) = (_mm256_set1_ps(1.0), _mm256_set1_ps(-1.0));
    let mut out = x;
    for i in 0..L {
        let t = _mm256_div_ps(_mm256_mul_ps(x[i], p[i]), q[i]);
        out[i] = _mm256_max_ps(neg_one, _mm256_min_ps(one, t));
    }
    out
}

/// Lanes `j..j + 8·L` of one primal row (`o` is the row's offset), storing `h + b` when
/// `H`, `φ'` when `D1` and `φ''` when `D2`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn lanes<const L: usize, const H: bool, const D1: bool, const D2: bool>(
    o: usize,
    j: usize,
    bias: &[f32],
    g: &[f32],
    c: &[f32],
    h: &mut [f32],
    a: &mut [f32],
    d1: &mut [f32],
    d2: &mut [f32],
) {
    let mut y = [_mm256_setzero_ps(); L];
    for (l, yl) in y.iter_mut().enumerate() {
        let (jj, oo) = (j + 8 * l, o + j + 8 * l);
        let hv = _mm256_add_ps(
            _mm256_loadu_ps(h.as_ptr().add(oo)),
            _mm256_loadu_ps(bias.as_ptr().add(jj)),
        );
        if H {
            _mm256_storeu_ps(h.as_mut_ptr().add(oo), hv);
        }
        *yl = _mm256_fmadd_ps(
            hv,
            _mm256_loadu_ps(g.as_ptr().add(jj)),
            _mm256_loadu_ps(c.as_ptr().add(jj)),
        );
    }
    let av = tanh8::<L>(y);
    let (one, m2) = (_mm256_set1_ps(1.0), _mm256_set1_ps(-2.0));
    for (l, &al) in av.iter().enumerate() {
        let oo = o + j + 8 * l;
        _mm256_storeu_ps(a.as_mut_ptr().add(oo), al);
        if D1 || D2 {
            let p1 = _mm256_fnmadd_ps(al, al, one);
            if D1 {
                _mm256_storeu_ps(d1.as_mut_ptr().add(oo), p1);
            }
            if D2 {
                _mm256_storeu_ps(d2.as_mut_ptr().add(oo), _mm256_mul_ps(_mm256_mul_ps(al, m2), p1));
            }
        }
    }
}

/// Primal rows of a tanh hidden layer: `h`, `a` (and `d1`, `d2` when given) hold
/// `n_batch` rows of `n` values; `bias`, `g`, `c` hold `n`. Four kinds of call, as the
/// forward pass needs them: `h + b`, `φ'` and `φ''` stored (`store_h`, both given: a
/// training pass with tangents), `h + b` and `φ'` (`store_h`, `d1` only: training
/// without tangents), `φ'` only (`d1` only: inference with tangents), or nothing
/// besides `a` (inference without tangents); without `store_h`, `h` is only read.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
///
/// # Panics
/// If a slice is shorter than its shape says, or the call is none of the four kinds.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn primal_rows(
    n_batch: usize,
    n: usize,
    bias: &[f32],
    g: &[f32],
    c: &[f32],
    h: &mut [f32],
    a: &mut [f32],
    d1: Option<&mut [f32]>,
    d2: Option<&mut [f32]>,
    store_h: bool,
) {
    let len = n_batch * n;
    assert!(bias.len() >= n && g.len() >= n && c.len() >= n);
    assert!(h.len() >= len && a.len() >= len);
    assert!(d1.as_ref().is_none_or(|d| d.len() >= len) && d2.as_ref().is_none_or(|d| d.len() >= len));
    let args = (n_batch, n, bias, g, c);
    match (store_h, d1, d2) {
        (true, Some(d1), Some(d2)) => rows::<true, true, true>(args, h, a, d1, d2),
        (true, Some(d1), None) => rows::<true, true, false>(args, h, a, d1, &mut []),
        (false, Some(d1), None) => rows::<false, true, false>(args, h, a, d1, &mut []),
        (false, None, None) => rows::<false, false, false>(args, h, a, &mut [], &mut []),
        (store_h, d1, d2) => panic!(
            "tanh primal rows: store_h = {store_h} with d1 {} and d2 {} is not a kind of call the forward pass makes",
            if d1.is_some() { "given" } else { "absent" },
            if d2.is_some() { "given" } else { "absent" },
        ),
    }
}

/// The row loop of [`primal_rows`]: two vectors at a time, then one, then scalars.
///
/// # Safety
/// AVX2 and FMA; the slices as long as the asserts of [`primal_rows`] say (`d1`, `d2`
/// only when `D1`, `D2`).
#[inline(always)]
unsafe fn rows<const H: bool, const D1: bool, const D2: bool>(
    (n_batch, n, bias, g, c): (usize, usize, &[f32], &[f32], &[f32]),
    h: &mut [f32],
    a: &mut [f32],
    d1: &mut [f32],
    d2: &mut [f32],
) {
    for i in 0..n_batch {
        let o = i * n;
        let mut j = 0;
        while j + 16 <= n {
            // SAFETY: lanes o + j .. o + j + 16 are inside every row slice (asserted by
            // the caller).
            unsafe { lanes::<2, H, D1, D2>(o, j, bias, g, c, h, a, d1, d2) };
            j += 16;
        }
        if j + 8 <= n {
            // SAFETY: as above, for eight lanes.
            unsafe { lanes::<1, H, D1, D2>(o, j, bias, g, c, h, a, d1, d2) };
            j += 8;
        }
        for jj in j..n {
            let hv = h[o + jj] + bias[jj];
            if H {
                h[o + jj] = hv;
            }
            let av = fast_tanh_f32(hv * g[jj] + c[jj]);
            a[o + jj] = av;
            let p1 = 1.0 - av * av;
            if D1 {
                d1[o + jj] = p1;
            }
            if D2 {
                d2[o + jj] = -2.0 * av * p1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel against the scalar form (and so, through tests/nn_tanh.rs, against
    /// `f64::tanh`) at widths that exercise the two-vector, one-vector and scalar paths.
    #[test]
    fn kernel_matches_scalar_form() {
        if !crate::nn::has_avx2() {
            return;
        }
        for n in [64, 37, 16, 8, 5] {
            let b = 7;
            let bias: Vec<f32> = (0..n).map(|j| 0.1 * (j as f32 - 3.0)).collect();
            let g: Vec<f32> = (0..n).map(|j| 0.5 + 0.07 * j as f32).collect();
            let c: Vec<f32> = (0..n).map(|j| -0.3 + 0.02 * j as f32).collect();
            let mut h: Vec<f32> = (0..b * n).map(|i| ((i * 7919) % 2001) as f32 / 100.0 - 10.0).collect();
            h[3] = f32::NAN;
            h[n + 1] = 1e30;
            h[2 * n + 2] = -f32::INFINITY;
            let h0 = h.clone();
            let (mut a, mut d1, mut d2) = (vec![0.0; b * n], vec![0.0; b * n], vec![0.0; b * n]);
            unsafe { primal_rows(b, n, &bias, &g, &c, &mut h, &mut a, Some(&mut d1), Some(&mut d2), true) };
            let mut a_nod2 = vec![0.0; b * n];
            let (mut h2, mut d1b) = (h0.clone(), vec![0.0; b * n]);
            unsafe { primal_rows(b, n, &bias, &g, &c, &mut h2, &mut a_nod2, Some(&mut d1b), None, true) };
            // Inference: `h` only read, `φ'` alone or nothing stored; the same values.
            let (mut h3, mut a3, mut d1c) = (h0.clone(), vec![0.0; b * n], vec![0.0; b * n]);
            unsafe { primal_rows(b, n, &bias, &g, &c, &mut h3, &mut a3, Some(&mut d1c), None, false) };
            let (mut h4, mut a4) = (h0.clone(), vec![0.0; b * n]);
            unsafe { primal_rows(b, n, &bias, &g, &c, &mut h4, &mut a4, None, None, false) };
            assert!(h3
                .iter()
                .chain(&h4)
                .zip(h0.iter().chain(&h0))
                .all(|(x, y)| x.to_bits() == y.to_bits()));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!((bits(&a3), bits(&a4), bits(&d1c)), (bits(&a), bits(&a), bits(&d1)));
            for i in 0..b * n {
                let j = i % n;
                let hv = h0[i] + bias[j];
                let want = fast_tanh_f32(hv * g[j] + c[j]);
                if want.is_nan() {
                    assert!(a[i].is_nan() && d1[i].is_nan(), "n={n} i={i}: NaN must pass through");
                    continue;
                }
                assert_eq!(h[i], hv);
                assert!(
                    (a[i] - want).abs() <= 4.0 * f32::EPSILON * want.abs().max(1e-30),
                    "n={n} i={i}: {} vs {want}",
                    a[i]
                );
                assert!(a[i].abs() <= 1.0);
                // Rounded once when fused (vector lanes), twice in the scalar tail.
                let exact = 1.0 - (a[i] as f64).powi(2);
                let tol = 0.5 * f32::EPSILON as f64 * if j >= n / 8 * 8 { exact + 1.0 } else { exact };
                assert!(
                    (d1[i] as f64 - exact).abs() <= tol,
                    "n={n} i={i}: a={} d1={} exact={exact}",
                    a[i],
                    d1[i]
                );
                assert!((d2[i] - (-2.0 * a[i] * d1[i])).abs() <= f32::EPSILON * d2[i].abs());
                assert_eq!((a_nod2[i], d1b[i]), (a[i], d1[i]));
            }
        }
    }
}
