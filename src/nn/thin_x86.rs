//! x86-64 builds of the thin layers' forward product `h = x Wᵀ` (see `thin.rs`), one
//! generic body over the vector types of [`gemm_x86`](crate::nn::gemm_x86), built for
//! AVX2 + FMA and for AVX-512F and chosen at run time.
//!
//! Two shapes: few outputs (`n_out ≤ THIN`, the last layer of a field on 2-D data:
//! `64 → 2`), where each output is a dot product kept in two vector accumulators and
//! summed across lanes once per row; and few inputs (`n_in ≤ THIN`, the first layer:
//! `2 → 64`), where a vector of outputs is `Σᵢ xᵢ·Wᵀ(i, ·)` in registers, written once.
//! LLVM's own vectorisation of these loops summed across lanes in order, element by
//! element, and zeroed each output row before adding into it.

use std::arch::x86_64::*;

use super::gemm_x86::{F32x16, F32x8, F64x4, F64x8, Lanes};
use super::thin::THIN;

const _: () = assert!(THIN == 4, "the wide kernel is instantiated for 1..=4 inputs");

/// A sum across the lanes of a vector.
///
/// # Safety
/// The instruction set of the lanes.
pub(crate) trait Reduce: Lanes {
    unsafe fn hsum(v: Self::V) -> Self::S;
}

impl Reduce for F32x8 {
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }
}

impl Reduce for F64x4 {
    #[inline(always)]
    unsafe fn hsum(v: __m256d) -> f64 {
        let s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
        _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)))
    }
}

impl Reduce for F32x16 {
    #[inline(always)]
    unsafe fn hsum(v: __m512) -> f32 {
        _mm512_reduce_add_ps(v)
    }
}

impl Reduce for F64x8 {
    #[inline(always)]
    unsafe fn hsum(v: __m512d) -> f64 {
        _mm512_reduce_add_pd(v)
    }
}

/// `h = x Wᵀ` (`rows × n_out`, overwritten) for `x` (`rows × n_in`) and `W`
/// (`n_out × n_in`), with `wt` as room for `Wᵀ`, on lanes `L` when the layer is thin;
/// returns whether it ran (`false`: neither `n_in` nor `n_out` is at most [`THIN`]).
///
/// # Safety
/// The CPU must have `L`'s instruction set: AVX-512F for the wide lanes, AVX2 and FMA
/// otherwise.
///
/// # Panics
/// If a slice is shorter than its shape says (or a shape's size overflows), or `h` is
/// not whole rows of `n_out`.
pub(crate) unsafe fn forward<L: Reduce>(
    x: &[L::S],
    w: &[L::S],
    n_in: usize,
    n_out: usize,
    wt: &mut [L::S],
    h: &mut [L::S],
) -> bool {
    if n_in.min(n_out) > THIN || n_in == 0 || n_out == 0 {
        return false;
    }
    let rows = h.len() / n_out;
    let size = |a: usize, b: usize| a.checked_mul(b).expect("thin forward: shape size overflows");
    let w_len = size(n_in, n_out);
    assert!(h.len() == rows * n_out, "thin forward: h is not whole rows of {n_out}");
    assert!(
        w.len() >= w_len && x.len() >= size(rows, n_in),
        "thin forward: x or W shorter than its shape"
    );
    if n_out > THIN {
        assert!(wt.len() >= w_len);
        for j in 0..n_out {
            for i in 0..n_in {
                wt[i * n_out + j] = w[j * n_in + i];
            }
        }
    }
    let shape = Shape { n_in, n_out, rows };
    // SAFETY: the caller guarantees the instruction set; the asserts above bound every
    // row the kernels touch.
    unsafe {
        if L::WIDE {
            build_avx512::<L>(shape, x, w, wt, h)
        } else {
            build_avx2::<L>(shape, x, w, wt, h)
        }
    }
    true
}

#[derive(Clone, Copy)]
struct Shape {
    n_in: usize,
    n_out: usize,
    rows: usize,
}

/// [`kernels`] compiled for AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn build_avx2<L: Reduce>(shape: Shape, x: &[L::S], w: &[L::S], wt: &[L::S], h: &mut [L::S]) {
    kernels::<L>(shape, x, w, wt, h);
}

/// [`kernels`] compiled for AVX-512F.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn build_avx512<L: Reduce>(shape: Shape, x: &[L::S], w: &[L::S], wt: &[L::S], h: &mut [L::S]) {
    kernels::<L>(shape, x, w, wt, h);
}

/// The narrow kernel for `n_out ≤ THIN`, the wide one (with `n_in` fixed at compile time)
/// otherwise.
#[inline(always)]
unsafe fn kernels<L: Reduce>(shape: Shape, x: &[L::S], w: &[L::S], wt: &[L::S], h: &mut [L::S]) {
    if shape.n_out <= THIN {
        narrow::<L>(shape, x, w, h);
    } else {
        match shape.n_in {
            1 => wide::<L, 1>(shape, x, wt, h),
            2 => wide::<L, 2>(shape, x, wt, h),
            3 => wide::<L, 3>(shape, x, wt, h),
            4 => wide::<L, 4>(shape, x, wt, h),
            n_in => unreachable!("a thin layer with {n_in} inputs and {} outputs", shape.n_out),
        }
    }
}

/// Few outputs: per row and output, a dot product in two accumulators (so that two
/// chains of multiply-adds overlap), their sum across lanes, then the scalar tail.
#[inline(always)]
unsafe fn narrow<L: Reduce>(Shape { n_in, n_out, rows }: Shape, x: &[L::S], w: &[L::S], h: &mut [L::S]) {
    let wv = L::NR / 2;
    let split = n_in / wv * wv;
    for r in 0..rows {
        let xr = x.as_ptr().add(r * n_in);
        for j in 0..n_out {
            let wr = w.as_ptr().add(j * n_in);
            let (mut a0, mut a1) = (L::zero(), L::zero());
            let mut c = 0;
            while c + 2 * wv <= split {
                a0 = L::fma(L::load(xr.add(c)), L::load(wr.add(c)), a0);
                a1 = L::fma(L::load(xr.add(c + wv)), L::load(wr.add(c + wv)), a1);
                c += 2 * wv;
            }
            if c < split {
                a0 = L::fma(L::load(xr.add(c)), L::load(wr.add(c)), a0);
            }
            let mut s = L::hsum(L::vadd(a0, a1));
            for i in split..n_in {
                s = s + *xr.add(i) * *wr.add(i);
            }
            *h.get_unchecked_mut(r * n_out + j) = s;
        }
    }
}

/// `N` inputs: a vector of outputs is `Σᵢ xᵢ·Wᵀ(i, j..j + W)`, the `xᵢ` broadcast once
/// per row; the last `n_out mod W` outputs are scalars.
#[inline(always)]
unsafe fn wide<L: Reduce, const N: usize>(Shape { n_out, rows, .. }: Shape, x: &[L::S], wt: &[L::S], h: &mut [L::S]) {
    let wv = L::NR / 2;
    let split = n_out / wv * wv;
    for r in 0..rows {
        let xr = x.as_ptr().add(r * N);
        let hr = h.as_mut_ptr().add(r * n_out);
        let xs: [L::V; N] = std::array::from_fn(|i| L::splat(xr.add(i)));
        let mut j = 0;
        while j < split {
            let mut s = L::zero();
            for (i, &xi) in xs.iter().enumerate() {
                s = L::fma(xi, L::load(wt.as_ptr().add(i * n_out + j)), s);
            }
            L::store(hr.add(j), s);
            j += wv;
        }
        for j in split..n_out {
            let mut s = L::S::default();
            for i in 0..N {
                s = s + *xr.add(i) * *wt.get_unchecked(i * n_out + j);
            }
            *hr.add(j) = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every build the CPU has against a plain product in `f64`, for every narrow and
    /// wide width up to [`THIN`], with lengths that leave vector and scalar tails.
    fn check<L: Reduce>(to: fn(f64) -> L::S, back: fn(L::S) -> f64, tol: f64) {
        let rows = 5;
        for t in 1..=THIN {
            for other in [64, 53, 40, 13, 8, 5, 3, 1] {
                for (n_in, n_out) in [(other, t), (t, other)] {
                    let x: Vec<f64> = (0..rows * n_in).map(|i| ((i * 37) % 23) as f64 / 7.0 - 1.5).collect();
                    let w: Vec<f64> = (0..n_out * n_in).map(|i| ((i * 53) % 29) as f64 / 11.0 - 1.2).collect();
                    let (xs, ws): (Vec<L::S>, Vec<L::S>) =
                        (x.iter().map(|&v| to(v)).collect(), w.iter().map(|&v| to(v)).collect());
                    let mut wt = vec![to(f64::NAN); n_in * n_out];
                    let mut h = vec![to(f64::NAN); rows * n_out];
                    // SAFETY: the callers run this only when the CPU has `L`'s instruction set.
                    assert!(unsafe { forward::<L>(&xs, &ws, n_in, n_out, &mut wt, &mut h) });
                    for r in 0..rows {
                        for j in 0..n_out {
                            let want: f64 = (0..n_in).map(|i| x[r * n_in + i] * w[j * n_in + i]).sum();
                            let got = back(h[r * n_out + j]);
                            let bound = tol * (1.0 + want.abs()) * n_in as f64;
                            assert!(
                                (got - want).abs() <= bound,
                                "NR={} {n_in}→{n_out} [{r},{j}]: {got} vs {want}",
                                L::NR
                            );
                        }
                    }
                }
            }
        }
        let mut h = vec![to(0.0); 5];
        // SAFETY: as above; a layer that is not thin is refused before anything is read.
        assert!(!unsafe { forward::<L>(&[], &[], 5, 5, &mut [], &mut h) });
        // No rows: nothing is read or written but `Wᵀ`.
        let (w, mut wt) = (vec![to(1.0); 2 * 7], vec![to(0.0); 2 * 7]);
        // SAFETY: as above.
        assert!(unsafe { forward::<L>(&[], &w, 2, 7, &mut wt, &mut []) });
    }

    #[test]
    fn every_build_matches_the_plain_product() {
        if crate::nn::has_avx2() {
            check::<F32x8>(|v| v as f32, f64::from, 1e-6);
            check::<F64x4>(|v| v, |v| v, 1e-14);
        }
        if crate::nn::has_avx512() {
            check::<F32x16>(|v| v as f32, f64::from, 1e-6);
            check::<F64x8>(|v| v, |v| v, 1e-14);
        }
    }
}
