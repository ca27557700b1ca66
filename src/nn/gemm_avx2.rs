//! The AVX2 + FMA micro-kernel behind [`gemm`](crate::nn::gemm): `C (m × n) (+)= A · B`
//! with `A(i, p)` read in place through its strides and `B` packed into zero-padded
//! panels of `NR` columns, `KC` rows of `k` at a time (or read in place when it is
//! row-major and `n` is a multiple of `NR`).
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

/// One SIMD scalar type: a vector of `NR / 2` lanes and the operations the kernel uses.
///
/// # Safety
/// Every method needs AVX2 and FMA; the pointer methods need `NR / 2` (or one, for
/// `splat`) readable or writable elements at `p`.
pub(crate) trait Lanes: Copy + Default + std::ops::Add<Output = Self> + 'static {
    type V: Copy;
    /// Panel width: two vectors.
    const NR: usize;
    unsafe fn zero() -> Self::V;
    unsafe fn splat(p: *const Self) -> Self::V;
    unsafe fn load(p: *const Self) -> Self::V;
    unsafe fn store(p: *mut Self, v: Self::V);
    /// `a·b + c`.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn vadd(a: Self::V, b: Self::V) -> Self::V;
}

impl Lanes for f32 {
    type V = __m256;
    const NR: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> __m256 {
        _mm256_broadcast_ss(&*p)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        _mm256_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn vadd(a: __m256, b: __m256) -> __m256 {
        _mm256_add_ps(a, b)
    }
}

impl Lanes for f64 {
    type V = __m256d;
    const NR: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> __m256d {
        _mm256_setzero_pd()
    }
    #[inline(always)]
    unsafe fn splat(p: *const f64) -> __m256d {
        _mm256_broadcast_sd(&*p)
    }
    #[inline(always)]
    unsafe fn load(p: *const f64) -> __m256d {
        _mm256_loadu_pd(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f64, v: __m256d) {
        _mm256_storeu_pd(p, v)
    }
    #[inline(always)]
    unsafe fn fma(a: __m256d, b: __m256d, c: __m256d) -> __m256d {
        _mm256_fmadd_pd(a, b, c)
    }
    #[inline(always)]
    unsafe fn vadd(a: __m256d, b: __m256d) -> __m256d {
        _mm256_add_pd(a, b)
    }
}

/// `C (+)= A · B` for `A(i, p) = a[i·st.a.0 + p·st.a.1]`, `B(p, j) = b[p·st.b.0 + j·st.b.1]`
/// and row-major `C` (`m × n`).
///
/// # Safety
/// The CPU must support AVX2 and FMA. (Shapes are checked here.)
///
/// # Panics
/// If a stride reaches past its slice, `c` is not `m × n`, or `scratch` is shorter than
/// [`scratch_len`](crate::nn::gemm::scratch_len)`(k, n)`.
pub(crate) unsafe fn gemm<S: Lanes>(
    dims: Dims,
    st: Strides,
    a: &[S],
    b: &[S],
    accumulate: bool,
    scratch: &mut [S],
    c: &mut [S],
) {
    let Dims { m, k, n } = dims;
    assert_eq!(c.len(), m * n, "gemm: c is not m × n");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(S::default());
        }
        return;
    }
    let last = |(rs, cs): (usize, usize), rows: usize, cols: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(last(st.a, m, k) < a.len(), "gemm: A strides reach past its slice");
    assert!(last(st.b, k, n) < b.len(), "gemm: B strides reach past its slice");
    let need = k.min(KC) * n.next_multiple_of(S::NR);
    let align = scratch.as_ptr().align_offset(32).min(NR_MAX);
    assert!(scratch.len() >= align + need, "gemm: scratch too short");
    // SAFETY: the caller guarantees AVX2 and FMA; the asserts above bound every index
    // the kernel forms (A and B through their last element, C as m × n, the packed
    // panels within `scratch[align..align + need]`).
    gemm_avx2(dims, st, a, b, accumulate, &mut scratch[align..align + need], c);
}

#[target_feature(enable = "avx2,fma")]
unsafe fn gemm_avx2<S: Lanes>(
    dims: Dims,
    st: Strides,
    a: &[S],
    b: &[S],
    accumulate: bool,
    pack: &mut [S],
    c: &mut [S],
) {
    let Dims { m, k, n } = dims;
    let nr = S::NR;
    let n_panels = n.div_ceil(nr);
    // A row-major B whose width fills whole panels is read in place (row stride
    // `st.b.0`); otherwise it is packed (row stride `NR`).
    let in_place = st.b.1 == 1 && n % nr == 0;
    for p0 in (0..k).step_by(KC) {
        let kc = KC.min(k - p0);
        let (b_blk, ldb, panel_step) = if in_place {
            (b.as_ptr().add(p0 * st.b.0), st.b.0, nr)
        } else {
            pack_b(b, st.b, p0, kc, n, pack);
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
                    6 => tile::<S, 6>(&t),
                    5 => tile::<S, 5>(&t),
                    4 => tile::<S, 4>(&t),
                    3 => tile::<S, 3>(&t),
                    2 => tile::<S, 2>(&t),
                    _ => tile::<S, 1>(&t),
                }
            }
        }
    }
}

/// Copies `B(p0..p0 + kc, 0..n)` into panels: panel `jp` holds columns
/// `jp·NR..(jp+1)·NR` as `kc` rows of `NR`, zero past column `n`.
#[inline(always)]
fn pack_b<S: Lanes>(b: &[S], (rs, cs): (usize, usize), p0: usize, kc: usize, n: usize, pack: &mut [S]) {
    let nr = S::NR;
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
                    *v = if jj < n_cols { src[jj] } else { S::default() };
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
                        panel[p * nr + jj] = S::default();
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
unsafe fn tile<S: Lanes, const R: usize>(t: &Tile<S>) {
    let h = S::NR / 2;
    let mut acc = [[S::zero(); 2]; R];
    let (mut ap, mut bp) = (t.a, t.panel);
    for _ in 0..t.k {
        let b0 = S::load(bp);
        let b1 = S::load(bp.add(h));
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let x = S::splat(ap.add(r * t.rs));
            acc_r[0] = S::fma(x, b0, acc_r[0]);
            acc_r[1] = S::fma(x, b1, acc_r[1]);
        }
        // Past the last step these point one step beyond the data; never read.
        ap = ap.wrapping_add(t.cs);
        bp = bp.wrapping_add(t.ldb);
    }
    if t.n_cols == S::NR {
        for (r, acc_r) in acc.iter().enumerate() {
            let cp = t.c.add(r * t.ldc);
            let (mut v0, mut v1) = (acc_r[0], acc_r[1]);
            if t.add {
                v0 = S::vadd(v0, S::load(cp));
                v1 = S::vadd(v1, S::load(cp.add(h)));
            }
            S::store(cp, v0);
            S::store(cp.add(h), v1);
        }
    } else {
        let mut buf = [S::default(); NR_MAX];
        for (r, acc_r) in acc.iter().enumerate() {
            S::store(buf.as_mut_ptr(), acc_r[0]);
            S::store(buf.as_mut_ptr().add(h), acc_r[1]);
            let row = std::slice::from_raw_parts_mut(t.c.add(r * t.ldc), t.n_cols);
            for (cv, &v) in row.iter_mut().zip(&buf) {
                *cv = if t.add { *cv + v } else { v };
            }
        }
    }
}
