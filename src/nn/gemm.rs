//! Dense products of the layer passes, `C (m × n) = op(A) · op(B)` (or `C += …`), in
//! the three layouts a layer needs (all matrices dense and row-major):
//!
//! | function | product | `A` stored | `B` stored | used for |
//! |---|---|---|---|---|
//! | [`matmul_nt`] | `C = A Bᵀ` | `m × k` | `n × k` | forward `H = X Wᵀ` |
//! | [`matmul_nn`] | `C = A B` | `m × k` | `k × n` | input gradient `X̄ = Ū W` |
//! | [`matmul_tn`] | `C = Aᵀ B` | `k × m` | `k × n` | weight gradient `W̄ += Ūᵀ X` |
//!
//! On x86-64 with AVX2 and FMA (checked at run time) the products run a
//! register-blocked micro-kernel: `B` is copied, `KC` rows of `k` at a time, into
//! zero-padded panels `NR` columns wide (two vectors: 16 for f32 and 8 for f64 with
//! AVX2, twice that when the CPU has AVX-512F and the 512-bit build runs), and every
//! `6 × NR` tile of `C` is accumulated in twelve vector registers — per step of `k`, two
//! loads of the panel row, six broadcasts of `A` and twelve FMAs. `A` is read in place
//! through its strides. Elsewhere (and for scalar types other than `f32`/`f64`) they
//! call ndarray's `general_mat_mul`.
//!
//! The kernels write into caller-owned `C` and take their packing scratch from the
//! caller ([`scratch_len`]); they allocate nothing.

use std::any::TypeId;

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};

use crate::Real;

#[cfg(target_arch = "x86_64")]
use crate::nn::gemm_x86::{self, F32x16, F32x8, F64x4, F64x8};

/// Rows of `k` packed at a time (a chunk of `B` is `KC × ⌈n⌉` scalars).
pub(crate) const KC: usize = 256;

/// Widest panel (f32 on AVX-512: two vectors of sixteen lanes); scratch is padded to it.
pub(crate) const NR_MAX: usize = 32;

/// Shape of a product `C (m × n) = op(A) (m × k) · op(B) (k × n)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Rows of `C`.
    pub m: usize,
    /// Inner (summed) dimension.
    pub k: usize,
    /// Columns of `C`.
    pub n: usize,
}

/// Scalars of scratch a product with inner dimension `k` and `n` columns needs:
/// `min(k, KC) · ⌈n⌉₃₂` plus room to align the panels to 64 bytes.
pub fn scratch_len(k: usize, n: usize) -> usize {
    k.min(KC) * n.next_multiple_of(NR_MAX) + NR_MAX
}

/// Where `A(i, p)` and `B(p, j)` live in their slices: `(row stride, column stride)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Strides {
    pub a: (usize, usize),
    pub b: (usize, usize),
}

/// `C = A Bᵀ` (or `C += A Bᵀ` when `accumulate`), `A` stored `m × k`, `B` stored `n × k`.
///
/// # Panics
/// If a slice length differs from its shape (`a`: `m·k`, `b`: `n·k`, `c`: `m·n`) or
/// `scratch` is shorter than [`scratch_len`]`(k, n)`.
pub fn matmul_nt<T: Real>(dims: Dims, a: &[T], b: &[T], accumulate: bool, scratch: &mut [T], c: &mut [T]) {
    let Dims { m, k, n } = dims;
    check("matmul_nt", dims, a.len(), b.len(), c.len(), scratch.len());
    let st = Strides { a: (k, 1), b: (1, k) };
    if !run_x86(dims, st, a, b, accumulate, scratch, c) {
        let av = ArrayView2::from_shape((m, k), a).expect("checked");
        let bv = ArrayView2::from_shape((n, k), b).expect("checked");
        fallback(&av, &bv.t(), accumulate, c, (m, n));
    }
}

/// `C = A B` (or `C += A B` when `accumulate`), `A` stored `m × k`, `B` stored `k × n`.
///
/// # Panics
/// As [`matmul_nt`] (`b`: `k·n`).
pub fn matmul_nn<T: Real>(dims: Dims, a: &[T], b: &[T], accumulate: bool, scratch: &mut [T], c: &mut [T]) {
    let Dims { m, k, n } = dims;
    check("matmul_nn", dims, a.len(), b.len(), c.len(), scratch.len());
    let st = Strides { a: (k, 1), b: (n, 1) };
    if !run_x86(dims, st, a, b, accumulate, scratch, c) {
        let av = ArrayView2::from_shape((m, k), a).expect("checked");
        let bv = ArrayView2::from_shape((k, n), b).expect("checked");
        fallback(&av, &bv, accumulate, c, (m, n));
    }
}

/// `C = Aᵀ B` (or `C += Aᵀ B` when `accumulate`), `A` stored `k × m`, `B` stored `k × n`:
/// a reduction over the `k` rows both share.
///
/// # Panics
/// As [`matmul_nt`] (`a`: `k·m`, `b`: `k·n`).
pub fn matmul_tn<T: Real>(dims: Dims, a: &[T], b: &[T], accumulate: bool, scratch: &mut [T], c: &mut [T]) {
    let Dims { m, k, n } = dims;
    check("matmul_tn", dims, a.len(), b.len(), c.len(), scratch.len());
    let st = Strides { a: (1, m), b: (n, 1) };
    if !run_x86(dims, st, a, b, accumulate, scratch, c) {
        let av = ArrayView2::from_shape((k, m), a).expect("checked");
        let bv = ArrayView2::from_shape((k, n), b).expect("checked");
        fallback(&av.t(), &bv, accumulate, c, (m, n));
    }
}

fn check(op: &str, dims: Dims, a: usize, b: usize, c: usize, scratch: usize) {
    let Dims { m, k, n } = dims;
    assert!(
        a == m * k && b == k * n && c == m * n,
        "{op}: slices of lengths a = {a}, b = {b}, c = {c} do not fit m × k × n = {m} × {k} × {n}"
    );
    let need = scratch_len(k, n);
    assert!(
        scratch >= need,
        "{op}: scratch has length {scratch}, needs scratch_len({k}, {n}) = {need}"
    );
}

fn fallback<T: Real>(a: &ArrayView2<'_, T>, b: &ArrayView2<'_, T>, accumulate: bool, c: &mut [T], mn: (usize, usize)) {
    let mut cv = ArrayViewMut2::from_shape(mn, c).expect("checked");
    let beta = if accumulate { T::one() } else { T::zero() };
    general_mat_mul(T::one(), a, b, beta, &mut cv);
}

/// Runs the x86-64 kernel when the CPU has AVX2 and FMA (the AVX-512 build when it has
/// AVX-512F too) and `T` is `f32` or `f64`; returns whether it ran.
#[allow(unused_variables)]
fn run_x86<T: Real>(
    dims: Dims,
    st: Strides,
    a: &[T],
    b: &[T],
    accumulate: bool,
    scratch: &mut [T],
    c: &mut [T],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if crate::nn::has_avx2() {
        let wide = crate::nn::has_avx512();
        if let (Some(a), Some(b), Some(s), Some(c)) = (cast::<T, f32>(a), cast(b), cast_mut(scratch), cast_mut(c)) {
            // SAFETY: the CPU supports AVX2 and FMA, and AVX-512F when `wide` (checked above).
            unsafe {
                if wide {
                    gemm_x86::gemm::<F32x16>(dims, st, a, b, accumulate, s, c)
                } else {
                    gemm_x86::gemm::<F32x8>(dims, st, a, b, accumulate, s, c)
                }
            };
            return true;
        }
        if let (Some(a), Some(b), Some(s), Some(c)) = (cast::<T, f64>(a), cast(b), cast_mut(scratch), cast_mut(c)) {
            // SAFETY: as above.
            unsafe {
                if wide {
                    gemm_x86::gemm::<F64x8>(dims, st, a, b, accumulate, s, c)
                } else {
                    gemm_x86::gemm::<F64x4>(dims, st, a, b, accumulate, s, c)
                }
            };
            return true;
        }
    }
    false
}

/// `s` as a slice of `U` when `T` is `U` (the check folds away after monomorphization).
pub(crate) fn cast<T: 'static, U: 'static>(s: &[T]) -> Option<&[U]> {
    if TypeId::of::<T>() == TypeId::of::<U>() {
        // SAFETY: `T` and `U` are the same type, so the pointer, length and lifetime
        // describe a valid `[U]`.
        Some(unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<U>(), s.len()) })
    } else {
        None
    }
}

/// Mutable form of [`cast`].
pub(crate) fn cast_mut<T: 'static, U: 'static>(s: &mut [T]) -> Option<&mut [U]> {
    if TypeId::of::<T>() == TypeId::of::<U>() {
        // SAFETY: `T` and `U` are the same type; the borrow of `s` moves into the result.
        Some(unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<U>(), s.len()) })
    } else {
        None
    }
}
