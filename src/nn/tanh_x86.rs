//! The primal rows of a tanh hidden layer in `f32`, one generic body written with
//! intrinsics and built twice: with AVX2 + FMA (eight lanes) and with AVX-512F (sixteen
//! lanes), chosen at run time.
//!
//! The same computation as the generic element loop in `forward.rs` with
//! [`fast_tanh_f32`]: `h += b; y = h⊙g + c; a = tanh y; φ' = 1 − a²; φ'' = −2aφ'`, with
//! the rational form's multiply-adds fused and two vectors in flight per step, so the
//! long dependency chain of one vector overlaps the other's. That makes the AVX2 loop
//! about a fifth faster than LLVM's vectorisation of the scalar code (which may not fuse
//! `a·b + c`). The AVX-512 build replaces the division, whose throughput per lane does
//! not improve with the wider vectors, by a 14-bit reciprocal estimate refined by one
//! residual step. Results are within a few ulp of the scalar form (up to about seven
//! near ±1; the test below compares every build with it, and tests/nn_tanh.rs the scalar
//! form with `f64::tanh`); the two builds differ by at most an ulp.

use std::arch::x86_64::*;

use super::activation::{fast_tanh_f32, TANH_P, TANH_Q};
use super::gemm_x86::{F32x16, F32x8, Lanes};

/// The `f32` vector operations of the tanh rows beyond those of [`Lanes`].
///
/// # Safety
/// As for [`Lanes`]: every method needs the instruction set of the lanes.
pub(crate) trait TanhLanes: Lanes<S = f32> {
    /// Lanes per vector.
    const W: usize;
    unsafe fn set1(x: f32) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    /// `c − a·b`.
    unsafe fn fnmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `a / b` for `b` in [1, 10⁵] (the denominator of the rational tanh), to within an
    /// ulp or so.
    unsafe fn quotient(a: Self::V, b: Self::V) -> Self::V;
}

/// Implements [`TanhLanes`] for a marker type from its intrinsics and its quotient.
macro_rules! tanh_lanes {
    ($t:ty, $v:ty, $w:expr, $set1:ident, $mul:ident, $min:ident, $max:ident, $fnmadd:ident, $quotient:path) => {
        impl TanhLanes for $t {
            const W: usize = $w;
            #[inline(always)]
            unsafe fn set1(x: f32) -> $v {
                $set1(x)
            }
            #[inline(always)]
            unsafe fn mul(a: $v, b: $v) -> $v {
                $mul(a, b)
            }
            #[inline(always)]
            unsafe fn min(a: $v, b: $v) -> $v {
                $min(a, b)
            }
            #[inline(always)]
            unsafe fn max(a: $v, b: $v) -> $v {
                $max(a, b)
            }
            #[inline(always)]
            unsafe fn fnmadd(a: $v, b: $v, c: $v) -> $v {
                $fnmadd(a, b, c)
            }
            #[inline(always)]
            unsafe fn quotient(a: $v, b: $v) -> $v {
                $quotient(a, b)
            }
        }
    };
}

tanh_lanes!(
    F32x8,
    __m256,
    8,
    _mm256_set1_ps,
    _mm256_mul_ps,
    _mm256_min_ps,
    _mm256_max_ps,
    _mm256_fnmadd_ps,
    _mm256_div_ps
);
tanh_lanes!(
    F32x16,
    __m512,
    16,
    _mm512_set1_ps,
    _mm512_mul_ps,
    _mm512_min_ps,
    _mm512_max_ps,
    _mm512_fnmadd_ps,
    quotient_avx512
);

/// `a / b` on sixteen lanes without the division, whose throughput per lane does not
/// grow with the vector width: `y₀ = a·r` with `r ≈ 1/b` to 14 bits, then
/// `y₀ − r·(b·y₀ − a)`, a residual step that squares the estimate's relative error
/// (2⁻²⁸, below an ulp). Written this way round, `a = −0` gives −0 (as
/// `y₀ + r·(a − b·y₀)` would not), so tanh stays odd.
#[inline(always)]
unsafe fn quotient_avx512(a: __m512, b: __m512) -> __m512 {
    let r = _mm512_rcp14_ps(b);
    let y0 = _mm512_mul_ps(a, r);
    _mm512_fnmadd_ps(r, _mm512_fmsub_ps(b, y0, a), y0)
}

/// `tanh` of one vector per entry: `x·P(x²)/Q(x²)` on `x` clamped to ±9, then clamped
/// to ±1.
#[inline(always)]
unsafe fn tanh_v<V: TanhLanes, const L: usize>(y: [V::V; L]) -> [V::V; L] {
    let (lim, neg_lim) = (V::set1(9.0), V::set1(-9.0));
    let mut x = [V::zero(); L];
    let (mut s, mut p, mut q) = (x, x, x);
    for i in 0..L {
        // `min`/`max` return their second operand when either is NaN, so with the bound
        // first a NaN passes through both clamps (as `f32::clamp` lets it).
        x[i] = V::max(neg_lim, V::min(lim, y[i]));
        s[i] = V::mul(x[i], x[i]);
        p[i] = V::fma(V::set1(TANH_P[4]), s[i], V::set1(TANH_P[3]));
        q[i] = V::fma(V::set1(TANH_Q[4]), s[i], V::set1(TANH_Q[3]));
    }
    for k in [2, 1, 0] {
        for i in 0..L {
            p[i] = V::fma(p[i], s[i], V::set1(TANH_P[k]));
            q[i] = V::fma(q[i], s[i], V::set1(TANH_Q[k]));
        }
    }
    let (one, neg_one) = (V::set1(1.0), V::set1(-1.0));
    let mut out = x;
    for i in 0..L {
        let t = V::quotient(V::mul(x[i], p[i]), q[i]);
        out[i] = V::max(neg_one, V::min(one, t));
    }
    out
}

/// Lanes `j..j + W·L` of one primal row (`o` is the row's offset), storing `h + b` when
/// `H`, `φ'` when `D1` and `φ''` when `D2`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn lanes<V: TanhLanes, const L: usize, const H: bool, const D1: bool, const D2: bool>(
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
    let mut y = [V::zero(); L];
    for (l, yl) in y.iter_mut().enumerate() {
        let (jj, oo) = (j + V::W * l, o + j + V::W * l);
        let hv = V::vadd(V::load(h.as_ptr().add(oo)), V::load(bias.as_ptr().add(jj)));
        if H {
            V::store(h.as_mut_ptr().add(oo), hv);
        }
        *yl = V::fma(hv, V::load(g.as_ptr().add(jj)), V::load(c.as_ptr().add(jj)));
    }
    let av = tanh_v::<V, L>(y);
    let (one, m2) = (V::set1(1.0), V::set1(-2.0));
    for (l, &al) in av.iter().enumerate() {
        let oo = o + j + V::W * l;
        V::store(a.as_mut_ptr().add(oo), al);
        if D1 || D2 {
            let p1 = V::fnmadd(al, al, one);
            if D1 {
                V::store(d1.as_mut_ptr().add(oo), p1);
            }
            if D2 {
                V::store(d2.as_mut_ptr().add(oo), V::mul(V::mul(al, m2), p1));
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
/// Runs the AVX-512 build when the CPU has AVX-512F, the AVX2 build otherwise.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
///
/// # Panics
/// If a slice is shorter than its shape says, or the call is none of the four kinds.
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
    let len = n_batch.checked_mul(n).expect("tanh primal rows: n_batch · n overflows");
    assert!(bias.len() >= n && g.len() >= n && c.len() >= n);
    assert!(h.len() >= len && a.len() >= len);
    assert!(d1.as_ref().is_none_or(|d| d.len() >= len) && d2.as_ref().is_none_or(|d| d.len() >= len));
    let args = (n_batch, n, bias, g, c);
    if crate::nn::has_avx512() {
        // SAFETY: the CPU has AVX-512F (checked just above); the slices were checked.
        unsafe { kinds_avx512(args, h, a, d1, d2, store_h) }
    } else {
        // SAFETY: the caller guarantees AVX2 and FMA; the slices were checked.
        unsafe { kinds_avx2(args, h, a, d1, d2, store_h) }
    }
}

/// The arguments of [`rows`] besides the row slices.
type RowArgs<'a> = (usize, usize, &'a [f32], &'a [f32], &'a [f32]);

/// [`kinds`] built for AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn kinds_avx2(
    args: RowArgs<'_>,
    h: &mut [f32],
    a: &mut [f32],
    d1: Option<&mut [f32]>,
    d2: Option<&mut [f32]>,
    store_h: bool,
) {
    // SAFETY: passed on from the caller.
    unsafe { kinds::<F32x8>(args, h, a, d1, d2, store_h) }
}

/// [`kinds`] built for AVX-512F.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn kinds_avx512(
    args: RowArgs<'_>,
    h: &mut [f32],
    a: &mut [f32],
    d1: Option<&mut [f32]>,
    d2: Option<&mut [f32]>,
    store_h: bool,
) {
    // SAFETY: passed on from the caller.
    unsafe { kinds::<F32x16>(args, h, a, d1, d2, store_h) }
}

/// The four kinds of call of [`primal_rows`] on lanes `V`.
///
/// # Safety
/// `V`'s instruction set; the slices as [`primal_rows`] asserts them.
#[inline(always)]
unsafe fn kinds<V: TanhLanes>(
    args: RowArgs<'_>,
    h: &mut [f32],
    a: &mut [f32],
    d1: Option<&mut [f32]>,
    d2: Option<&mut [f32]>,
    store_h: bool,
) {
    match (store_h, d1, d2) {
        (true, Some(d1), Some(d2)) => rows::<V, true, true, true>(args, h, a, d1, d2),
        (true, Some(d1), None) => rows::<V, true, true, false>(args, h, a, d1, &mut []),
        (false, Some(d1), None) => rows::<V, false, true, false>(args, h, a, d1, &mut []),
        (false, None, None) => rows::<V, false, false, false>(args, h, a, &mut [], &mut []),
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
/// `V`'s instruction set; the slices as long as the asserts of [`primal_rows`] say
/// (`d1`, `d2` only when `D1`, `D2`).
#[inline(always)]
unsafe fn rows<V: TanhLanes, const H: bool, const D1: bool, const D2: bool>(
    (n_batch, n, bias, g, c): RowArgs<'_>,
    h: &mut [f32],
    a: &mut [f32],
    d1: &mut [f32],
    d2: &mut [f32],
) {
    for i in 0..n_batch {
        let o = i * n;
        let mut j = 0;
        while j + 2 * V::W <= n {
            // SAFETY: lanes o + j .. o + j + 2W are inside every row slice (asserted by
            // the caller).
            unsafe { lanes::<V, 2, H, D1, D2>(o, j, bias, g, c, h, a, d1, d2) };
            j += 2 * V::W;
        }
        if j + V::W <= n {
            // SAFETY: as above, for one vector.
            unsafe { lanes::<V, 1, H, D1, D2>(o, j, bias, g, c, h, a, d1, d2) };
            j += V::W;
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

    type Build = unsafe fn(RowArgs<'_>, &mut [f32], &mut [f32], Option<&mut [f32]>, Option<&mut [f32]>, bool);

    /// Each build the CPU supports against the scalar form (and so, through
    /// tests/nn_tanh.rs, against `f64::tanh`) at widths that exercise the two-vector,
    /// one-vector and scalar paths of both.
    #[test]
    fn every_build_matches_scalar_form() {
        if crate::nn::has_avx2() {
            check(kinds_avx2, F32x8::W);
        }
        if crate::nn::has_avx512() {
            check(kinds_avx512, F32x16::W);
        }
    }

    /// `w`: the build's lanes per vector (columns from `n / w · w` on take the scalar tail).
    fn check(build: Build, w: usize) {
        #[allow(clippy::too_many_arguments)]
        fn primal_rows(
            build: Build,
            b: usize,
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
            // SAFETY: the caller checked the build's instruction set; every slice holds
            // `b` rows of `n`.
            unsafe { build((b, n, bias, g, c), h, a, d1, d2, store_h) }
        }
        for n in [64, 53, 37, 32, 16, 8, 5] {
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
            primal_rows(
                build,
                b,
                n,
                &bias,
                &g,
                &c,
                &mut h,
                &mut a,
                Some(&mut d1),
                Some(&mut d2),
                true,
            );
            let mut a_nod2 = vec![0.0; b * n];
            let (mut h2, mut d1b) = (h0.clone(), vec![0.0; b * n]);
            primal_rows(
                build,
                b,
                n,
                &bias,
                &g,
                &c,
                &mut h2,
                &mut a_nod2,
                Some(&mut d1b),
                None,
                true,
            );
            // Inference: `h` only read, `φ'` alone or nothing stored; the same values.
            let (mut h3, mut a3, mut d1c) = (h0.clone(), vec![0.0; b * n], vec![0.0; b * n]);
            primal_rows(
                build,
                b,
                n,
                &bias,
                &g,
                &c,
                &mut h3,
                &mut a3,
                Some(&mut d1c),
                None,
                false,
            );
            let (mut h4, mut a4) = (h0.clone(), vec![0.0; b * n]);
            primal_rows(build, b, n, &bias, &g, &c, &mut h4, &mut a4, None, None, false);
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
                let tol = 0.5 * f32::EPSILON as f64 * if j >= n / w * w { exact + 1.0 } else { exact };
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
        // tanh is odd down to the sign of zero, in the vector lanes and the scalar tail.
        for zero in [0.0f32, -0.0] {
            let n = 37;
            let (bias, g, c) = (vec![zero; n], vec![1.0; n], vec![zero; n]);
            let (mut h, mut a) = (vec![zero; n], vec![f32::NAN; n]);
            primal_rows(build, 1, n, &bias, &g, &c, &mut h, &mut a, None, None, false);
            assert!(a.iter().all(|v| v.to_bits() == zero.to_bits()), "tanh({zero:?}): {a:?}");
        }
    }
}
