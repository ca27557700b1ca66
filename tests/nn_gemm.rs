//! The layer products of `cnflow::nn::gemm` against a plain triple loop, on shapes that
//! straddle the kernel's blocks: rows 1..=13 (tiles of 6), widths around the panel widths
//! (8 and 16 for f64, 16 and 32 for f32, with AVX2 and with AVX-512) and not multiples of
//! 8, inner dimensions 1..=70 and past the packing chunk (256); overwriting and
//! accumulating; f32 and f64.

mod nn_common;

use cnflow::nn::gemm::{matmul_nn, matmul_nt, matmul_tn, scratch_len, Dims};
use cnflow::Real;
use nn_common::{normal_vec, rng};

#[derive(Debug, Clone, Copy)]
enum Layout {
    /// `C = A Bᵀ`, `A` `m × k`, `B` `n × k`.
    Nt,
    /// `C = A B`, `A` `m × k`, `B` `k × n`.
    Nn,
    /// `C = Aᵀ B`, `A` `k × m`, `B` `k × n`.
    Tn,
}

/// `A(i, p)` and `B(p, j)` in their stored layouts.
fn elements(layout: Layout, d: Dims) -> (impl Fn(usize, usize) -> usize, impl Fn(usize, usize) -> usize) {
    let Dims { m, k, n } = d;
    let a = move |i: usize, p: usize| match layout {
        Layout::Nt | Layout::Nn => i * k + p,
        Layout::Tn => p * m + i,
    };
    let b = move |p: usize, j: usize| match layout {
        Layout::Nt => j * k + p,
        Layout::Nn | Layout::Tn => p * n + j,
    };
    (a, b)
}

/// Runs one product and the triple loop (in f64) on the same data; returns the largest
/// error relative to `Σ_p |A(i,p) B(p,j)|` (the scale of rounding in element `(i, j)`).
fn max_rel_error<T: Real>(layout: Layout, d: Dims, accumulate: bool, seed: u64) -> f64 {
    let Dims { m, k, n } = d;
    let mut r = rng(seed);
    let a64 = normal_vec(&mut r, m * k);
    let b64 = normal_vec(&mut r, k * n);
    let c0 = normal_vec(&mut r, m * n);
    let to_t = |v: &[f64]| v.iter().map(|&x| T::c(x)).collect::<Vec<T>>();
    let (a, b) = (to_t(&a64), to_t(&b64));
    let mut c = to_t(&c0);
    let c_init = c.clone();
    // Scratch longer than needed, and a NaN-filled one: padding must never leak.
    let mut scratch = vec![T::nan(); scratch_len(k, n) + 3];
    let f = match layout {
        Layout::Nt => matmul_nt::<T>,
        Layout::Nn => matmul_nn::<T>,
        Layout::Tn => matmul_tn::<T>,
    };
    f(d, &a, &b, accumulate, &mut scratch, &mut c);

    let (ai, bi) = elements(layout, d);
    let mut worst = 0.0f64;
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut scale) = (if accumulate { c_init[i * n + j].f64() } else { 0.0 }, 0.0);
            for p in 0..k {
                let t = a[ai(i, p)].f64() * b[bi(p, j)].f64();
                s += t;
                scale += t.abs();
            }
            scale += s.abs() + 1.0;
            let err = (c[i * n + j].f64() - s).abs() / scale;
            assert!(err.is_finite(), "{layout:?} {d:?}: non-finite C({i},{j})");
            worst = worst.max(err);
        }
    }
    worst
}

fn check_all<T: Real>(tol: f64) {
    let rows: Vec<usize> = (1..=13).collect();
    let widths = [1usize, 3, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 48, 64];
    let inner = [1usize, 2, 5, 8, 13, 31, 64, 70];
    let mut seed = 0u64;
    for layout in [Layout::Nt, Layout::Nn, Layout::Tn] {
        for &m in &rows {
            for &n in &widths {
                for &k in &inner {
                    for accumulate in [false, true] {
                        seed += 1;
                        let d = Dims { m, k, n };
                        let err = max_rel_error::<T>(layout, d, accumulate, seed);
                        assert!(
                            err < tol,
                            "{} {layout:?} {d:?} accumulate={accumulate}: relative error {err:e} ≥ {tol:e}",
                            T::NAME
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn products_match_triple_loop_f64() {
    check_all::<f64>(1e-14);
}

#[test]
fn products_match_triple_loop_f32() {
    check_all::<f32>(1e-5);
}

/// Inner dimensions past the packing chunk (several chunks, the last ragged), and the
/// reference layer shapes `(K+1)B × 64 · 64 × 64`.
#[test]
fn products_match_triple_loop_long_and_reference_shapes() {
    let shapes = [
        Dims { m: 7, k: 600, n: 19 },
        Dims { m: 64, k: 300, n: 64 },
        Dims { m: 300, k: 64, n: 64 },
        Dims { m: 13, k: 257, n: 40 },
    ];
    for (s, &d) in shapes.iter().enumerate() {
        for layout in [Layout::Nt, Layout::Nn, Layout::Tn] {
            for accumulate in [false, true] {
                let seed = 1000 + s as u64;
                let e64 = max_rel_error::<f64>(layout, d, accumulate, seed);
                assert!(e64 < 1e-14, "f64 {layout:?} {d:?} accumulate={accumulate}: {e64:e}");
                let e32 = max_rel_error::<f32>(layout, d, accumulate, seed);
                assert!(e32 < 1e-5, "f32 {layout:?} {d:?} accumulate={accumulate}: {e32:e}");
            }
        }
    }
}

/// `k = 0` overwrites with zeros or leaves `C` unchanged; empty `C` is fine.
#[test]
fn empty_inner_dimension_gives_zero_or_leaves_c() {
    let d = Dims { m: 3, k: 0, n: 5 };
    let mut scratch = vec![0.0f32; scratch_len(4, 5)];
    let mut c = vec![2.0f32; 15];
    matmul_nt(d, &[], &[], true, &mut scratch, &mut c);
    assert!(c.iter().all(|&v| v == 2.0));
    matmul_tn(d, &[], &[], false, &mut scratch, &mut c);
    assert!(c.iter().all(|&v| v == 0.0));
    matmul_nn(Dims { m: 0, k: 4, n: 5 }, &[], &[0.0; 20], false, &mut scratch, &mut []);
}

#[test]
#[should_panic(expected = "scratch")]
fn short_scratch_is_refused() {
    let d = Dims { m: 2, k: 3, n: 4 };
    let mut scratch = vec![0.0f64; 4];
    let mut c = vec![0.0; 8];
    matmul_nn(d, &[0.0; 6], &[0.0; 12], false, &mut scratch, &mut c);
}
