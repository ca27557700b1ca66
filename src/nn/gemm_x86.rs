//! The x86-64 micro-kernels behind [`gemm`](crate::nn::gemm), one generic body built
//! twice: with AVX2 + FMA (256-bit vectors) and with AVX-512F (512-bit vectors, 32
//! registers), chosen at run time. `C (m × n) (+)= A · B` with `A(i, p)` read in place
//! through its strides and `B` packed into zero-padded panels of `NR` columns, `KC` rows
//! of `k` at a time (or read in place when it is row-major and `n` is a multiple of `NR`).
//!
//! A `R × NR` tile of `C` (`R ≤ 6`) lives in `2R` vector registers while the kernel
//! walks `k`: each step loads one panel row (two vectors), broadcasts `A(i0 + r, p)` and
//! issues `2R` FMAs — with `R = 6`, twelve independent accumulators cover the FMA
//! latency of both pipes. Ragged edges cost nothing extra in the loop: rows below 6
//! select a smaller `R`, and columns past `n` are zeros in the panel that the store
//! leaves out.

use std::arch::x86_64::*;

use crate::nn::gemm::{Dims, Strides, KC, NR_MAX};

/// Rows of `C` per tile.
const MR: usize = 6;

/// One vector type and the operations the kernel uses on it; `S` is its scalar.
///
/// # Safety
/// Every method needs the instruction set of [`Lanes::WIDE`] (AVX-512F when set, AVX2
/// and FMA otherwise); the pointer methods need `NR / 2` (or one, for `splat`) readable
/// or writable elements at `p`.
pub(crate) trait Lanes: 'static {
    type S: Copy + Default + std::ops::Add<Output = Self::S> + std::ops::Mul<Output = Self::S> + 'static;
    type V: Copy;
    /// Panel width: two vectors.
    const NR: usize;
    /// Whether the vectors are 512 bits wide (AVX-512F) rather than 256 (AVX2).
    const WIDE: bool;
    unsafe fn zero() -> Self::V;
    unsafe fn splat(p: *const Self::S) -> Self::V;
    unsafe fn load(p: *const Self::S) -> Self::V;
    unsafe fn store(p: *mut Self::S, v: Self::V);
    /// `a·b + c`.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn vadd(a: Self::V, b: Self::V) -> Self::V;
}

/// Eight `f32` lanes (AVX2).
pub(crate) struct F32x8;
/// Four `f64` lanes (AVX2).
pub(crate) struct F64x4;
/// Sixteen `f32` lanes (AVX-512F).
pub(crate) struct F32x16;
/// Eight `f64` lanes (AVX-512F).
pub(crate) struct F64x8;

/// Implements [`Lanes`] for a marker type from its intrinsics.
macro_rules! lanes {
    ($t:ty, $s:ty, $v:ty, $nr:expr, $wide:expr,
     $zero:ident, $splat:ident, $load:ident, $store:ident, $fma:ident, $add:ident) => {
        impl Lanes for $t {
            type S = $s;
            type V = $v;
            const NR: usize = $nr;
            const WIDE: bool = $wide;
            #[inline(always)]
            unsafe fn zero() -> $v {
                $zero()
            }
            #[inline(always)]
            unsafe fn splat(p: *const $s) -> $v {
                $splat(*p)
            }
            #[inline(always)]
            unsafe fn load(p: *const $s) -> $v {
                $load(p)
            }
            #[inline(always)]
            unsafe fn store(p: *mut $s, v: $v) {
                $store(p, v)
            }
            #[inline(always)]
            unsafe fn fma(a: $v, b: $v, c: $v) -> $v {
                $fma(a, b, c)
            }
            #[inline(always)]
            unsafe fn vadd(a: $v, b: $v) -> $v {
                $add(a, b)
            }
        }
    };
}

lanes!(
    F32x8,
    f32,
    __m256,
    16,
    false,
    _mm256_setzero_ps,
    _mm256_set1_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps
);
lanes!(
    F64x4,
    f64,
    __m256d,
    8,
    false,
    _mm256_setzero_pd,
    _mm256_set1_pd,
    _mm256_loadu_pd,
    _mm256_storeu_pd,
    _mm256_fmadd_pd,
    _mm256_add_pd
);
lanes!(
    F32x16,
    f32,
    __m512,
    32,
    true,
    _mm512_setzero_ps,
    _mm512_set1_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps
);
lanes!(
    F64x8,
    f64,
    __m512d,
    16,
    true,
    _mm512_setzero_pd,
    _mm512_set1_pd,
    _mm512_loadu_pd,
    _mm512_storeu_pd,
    _mm512_fmadd_pd,
    _mm512_add_pd
);

/// `C (+)= A · B` for `A(i, p) = a[i·st.a.0 + p·st.a.1]`, `B(p, j) = b[p·st.b.0 + j·st.b.1]`
/// and row-major `C` (`m × n`).
///
/// # Safety
/// The CPU must support the instruction set of `L` (AVX-512F for the wide lanes, AVX2
/// and FMA otherwise). (Shapes are checked here.)
///
/// # Panics
/// If a stride reaches past its slice, `c` is not `m × n`, or `scratch` is shorter than
/// [`scratch_len`](crate::nn::gemm::scratch_len)`(k, n)`.
pub(crate) unsafe fn gemm<L: Lanes>(
    dims: Dims,
    st: Strides,
    a: &[L::S],
    b: &[L::S],
    accumulate: bool,
    scratch: &mut [L::S],
    c: &mut [L::S],
) {
    let Dims { m, k, n } = dims;
    assert_eq!(c.len(), m * n, "gemm: c is not m × n");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(L::S::default());
        }
        return;
    }
    let last = |(rs, cs): (usize, usize), rows: usize, cols: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(last(st.a, m, k) < a.len(), "gemm: A strides reach past its slice");
    assert!(last(st.b, k, n) < b.len(), "gemm: B strides reach past its slice");
    let need = k.min(KC) * n.next_multiple_of(L::NR);
    let align = scratch.as_ptr().align_offset(64).min(NR_MAX);
    assert!(scratch.len() >= align + need, "gemm: scratch too short");
    let o = Operands {
        dims,
        st,
        a,
        b,
        accumulate,
        pack: &mut scratch[align..align + need],
        c,
    };
    // SAFETY: the caller guarantees `L`'s instruction set; the asserts above bound every
    // index the kernel forms (A and B through their last element, C as m × n, the packed
    // panels within `pack`).
    if L::WIDE {
        gemm_avx512::<L>(o);
    } else {
        gemm_avx2::<L>(o);
    }
}

/// The operands of one product, checked by [`gemm`]: `pack` is the aligned part of the
/// scratch the panels of `B` need.
struct Operands<'a, S> {
    dims: Dims,
    st: Strides,
    a: &'a [S],
    b: &'a [S],
    accumulate: bool,
    pack: &'a mut [S],
    c: &'a mut [S],
}

/// [`blocks`] compiled for AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn gemm_avx2<L: Lanes>(o: Operands<'_, L::S>) {
    blocks::<L>(o);
}

/// [`blocks`] compiled for AVX-512F.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn gemm_avx512<L: Lanes>(o: Operands<'_, L::S>) {
    blocks::<L>(o);
}

/// The loop over blocks of `k`, tiles of rows and panels of columns.
#[inline(always)]
unsafe fn blocks<L: Lanes>(o: Operands<'_, L::S>) {
    let Operands {
        dims,
        st,
        a,
        b,
        accumulate,
        pack,
        c,
    } = o;
    let Dims { m, k, n } = dims;
    let nr = L::NR;
    let n_panels = n.div_ceil(nr);
    // A row-major B whose width fills whole panels is read in place (row stride
    // `st.b.0`); otherwise it is packed (row stride `NR`).
    let in_place = st.b.1 == 1 && n % nr == 0;
    for p0 in (0..k).step_by(KC) {
        let kc = KC.min(k - p0);
        let (b_blk, ldb, panel_step) = if in_place {
            (b.as_ptr().add(p0 * st.b.0), st.b.0, nr)
        } else {
            pack_b::<L>(b, st.b, p0, kc, n, pack);
            (pack.as_ptr(), nr, kc * nr)
        };
        let add = accumulate || p0 > 0;
        for i0 in (0..m).step_by(MR) {
            let rows = MR.min(m - i0);
            // A(i0, p0); in bounds by the asserts in `gemm`.
            let a_blk = a.as_ptr().add(i0 * st.a.0 + p0 * st.a.1);
            for jp in 0..n_panels {
                let j0 = jp * nr;
                let t = Tile {
                    k: kc,
                    a: a_blk,
                    rs: st.a.0,
                    cs: st.a.1,
                    panel: b_blk.add(jp * panel_step),
                    ldb,
                    c: c.as_mut_ptr().add(i0 * n + j0),
                    ldc: n,
                    n_cols: nr.min(n - j0),
                    add,
                };
                match rows {
                    6 => tile::<L, 6>(&t),
                    5 => tile::<L, 5>(&t),
                    4 => tile::<L, 4>(&t),
                    3 => tile::<L, 3>(&t),
                    2 => tile::<L, 2>(&t),
                    _ => tile::<L, 1>(&t),
                }
            }
        }
    }
}

/// Copies `B(p0..p0 + kc, 0..n)` into panels: panel `jp` holds columns
/// `jp·NR..(jp+1)·NR` as `kc` rows of `NR`, zero past column `n`.
#[inline(always)]
fn pack_b<L: Lanes>(b: &[L::S], (rs, cs): (usize, usize), p0: usize, kc: usize, n: usize, pack: &mut [L::S]) {
    let nr = L::NR;
    for (jp, panel) in pack[..kc * n.next_multiple_of(nr)]
        .chunks_exact_mut(kc * nr)
        .enumerate()
    {
        let j0 = jp * nr;
        let n_cols = nr.min(n - j0);
        if cs == 1 {
            for (p, row) in panel.chunks_exact_mut(nr).enumerate() {
                let src = &b[(p0 + p) * rs + j0..];
                for (jj, v) in row.iter_mut().enumerate() {
                    *v = if jj < n_cols { src[jj] } else { L::S::default() };
                }
            }
        } else {
            for jj in 0..nr {
                if jj < n_cols {
                    let col = (j0 + jj) * cs;
                    for p in 0..kc {
                        panel[p * nr + jj] = b[col + (p0 + p) * rs];
                    }
                } else {
                    for p in 0..kc {
                        panel[p * nr + jj] = L::S::default();
                    }
                }
            }
        }
    }
}

/// One tile's operands: `C[0..R, 0..n_cols] (+)= Σ_p A(r, p) · panel[p, ..]`.
struct Tile<S> {
    k: usize,
    a: *const S,
    rs: usize,
    cs: usize,
    panel: *const S,
    ldb: usize,
    c: *mut S,
    ldc: usize,
    n_cols: usize,
    add: bool,
}

/// # Safety
/// AVX2 and FMA; `A(r, p)` readable for `r < R`, `p < k`; the panel readable for
/// `k` rows of `NR` at stride `ldb`; `C` writable for `R` rows of `n_cols ≤ NR` at stride `ldc`.
#[inline(always)]
unsafe fn tile<L: Lanes, const R: usize>(t: &Tile<L::S>) {
    let h = L::NR / 2;
    let mut acc = [[L::zero(); 2]; R];
    // Rows 0..3 from `ap`, rows 3..6 from `ap3`, each at 0, 1 or 2 row strides: every
    // broadcast address is a base plus a scaled index (as `[base + 2·rs]`), so no
    // chain of additions runs through the rows at each step.
    let (mut ap, mut ap3, mut bp) = (t.a, t.a.wrapping_add(3 * t.rs), t.panel);
    for _ in 0..t.k {
        let b0 = L::load(bp);
        let b1 = L::load(bp.add(h));
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let base = if r < 3 { ap } else { ap3 };
            let x = L::splat(base.add((r % 3) * t.rs));
            acc_r[0] = L::fma(x, b0, acc_r[0]);
            acc_r[1] = L::fma(x, b1, acc_r[1]);
        }
        // Past the last step these point one step beyond the data; never read.
        ap = ap.wrapping_add(t.cs);
        ap3 = ap3.wrapping_add(t.cs);
        bp = bp.wrapping_add(t.ldb);
    }
    if t.n_cols == L::NR {
        for (r, acc_r) in acc.iter().enumerate() {
            let cp = t.c.add(r * t.ldc);
            let (mut v0, mut v1) = (acc_r[0], acc_r[1]);
            if t.add {
                v0 = L::vadd(v0, L::load(cp));
                v1 = L::vadd(v1, L::load(cp.add(h)));
            }
            L::store(cp, v0);
            L::store(cp.add(h), v1);
        }
    } else {
        let mut buf = [L::S::default(); NR_MAX];
        for (r, acc_r) in acc.iter().enumerate() {
            L::store(buf.as_mut_ptr(), acc_r[0]);
            L::store(buf.as_mut_ptr().add(h), acc_r[1]);
            let row = std::slice::from_raw_parts_mut(t.c.add(r * t.ldc), t.n_cols);
            for (cv, &v) in row.iter_mut().zip(&buf) {
                *cv = if t.add { *cv + v } else { v };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `C (+)= A·B` by a plain loop in f64, for the strides of [`gemm`].
    fn plain(d: Dims, st: Strides, a: &[f64], b: &[f64], c: &mut [f64], accumulate: bool) {
        for i in 0..d.m {
            for j in 0..d.n {
                let s: f64 = (0..d.k)
                    .map(|p| a[i * st.a.0 + p * st.a.1] * b[p * st.b.0 + j * st.b.1])
                    .sum();
                c[i * d.n + j] = if accumulate { c[i * d.n + j] + s } else { s };
            }
        }
    }

    /// Every build of the kernel the CPU can run (not only the one `gemm.rs` picks)
    /// against the plain loop, in the three layouts of the layer products, on shapes
    /// ragged against both panel widths and past the packing chunk.
    fn check<L: Lanes>(to: fn(f64) -> L::S, back: fn(L::S) -> f64, tol: f64) {
        let shapes = [
            (1, 1, 1),
            (7, 5, 9),
            (13, 31, 33),
            (6, 64, 64),
            (12, 64, 48),
            (5, 300, 17),
            (300, 64, 64),
        ];
        let mut seed = 1u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        for &(m, k, n) in &shapes {
            let d = Dims { m, k, n };
            for st in [
                Strides { a: (k, 1), b: (1, k) },
                Strides { a: (k, 1), b: (n, 1) },
                Strides { a: (1, m), b: (n, 1) },
            ] {
                for accumulate in [false, true] {
                    let a: Vec<f64> = (0..m * k).map(|_| next()).collect();
                    let b: Vec<f64> = (0..k * n).map(|_| next()).collect();
                    let c0: Vec<f64> = (0..m * n).map(|_| next()).collect();
                    let mut want = c0.clone();
                    plain(d, st, &a, &b, &mut want, accumulate);
                    let (a, b): (Vec<L::S>, Vec<L::S>) =
                        (a.iter().map(|&x| to(x)).collect(), b.iter().map(|&x| to(x)).collect());
                    let mut c: Vec<L::S> = c0.iter().map(|&x| to(x)).collect();
                    let mut scratch = vec![to(f64::NAN); crate::nn::gemm::scratch_len(k, n)];
                    // SAFETY: the callers run this only when the CPU has `L`'s instruction set.
                    unsafe { gemm::<L>(d, st, &a, &b, accumulate, &mut scratch, &mut c) };
                    for (i, (&got, &w)) in c.iter().zip(&want).enumerate() {
                        let err = (back(got) - w).abs();
                        assert!(
                            err <= tol * (1.0 + k as f64),
                            "NR={} {d:?} {st:?} acc={accumulate} [{i}]: {} vs {w}",
                            L::NR,
                            back(got)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_build_matches_the_plain_product() {
        if crate::nn::has_avx2() {
            check::<F32x8>(|x| x as f32, f64::from, 1e-6);
            check::<F64x4>(|x| x, |x| x, 1e-14);
        }
        if crate::nn::has_avx512() {
            check::<F32x16>(|x| x as f32, f64::from, 1e-6);
            check::<F64x8>(|x| x, |x| x, 1e-14);
        }
    }
}
