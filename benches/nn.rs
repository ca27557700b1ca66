//! Vector-field kernels at FFJORD's reference shape: d = 2, 64-64-64 ConcatSquash tanh,
//! exact trace (K = d = 2 tangents), batch 100 and 1000, f32 and f64.
//!
//! Each kernel reports its throughput in GFLOP/s of matrix-product work (2 flops per
//! multiply-add, element-wise work not counted), beside benches of the three layer
//! products at the dominant shape `(K+1)B × 64 · 64 × 64` in the same run, each with
//! matrixmultiply (`general_mat_mul`) and with the crate's AVX2 / AVX-512 kernels
//! (`cnflow::nn::gemm`) — the machine's practical peak for these products.
//!
//! Run: `cargo bench --bench nn` (about two minutes).

use std::hint::black_box;
use std::time::Duration;

use cnflow::nn::gemm::{matmul_nn, matmul_nt, matmul_tn, scratch_len, Dims};
use cnflow::nn::{fast_tanh, Activation, Cotangents, FieldOutputs, LayerKind, Mlp, MlpConfig, TraceMode};
use cnflow::Real;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use ndarray::linalg::general_mat_mul;
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

const D: usize = 2;
const HIDDEN: [usize; 3] = [64, 64, 64];

fn reference_mlp<T: Real>() -> Mlp<T> {
    let config =
        MlpConfig::new(D, &HIDDEN, LayerKind::ConcatSquash, Activation::Tanh).expect("reference config is valid");
    Mlp::new(config, &mut ChaCha8Rng::seed_from_u64(1), false)
}

fn normal<T: Real>(n: usize, seed: u64) -> Vec<T> {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| T::c(StandardNormal.sample(&mut r))).collect()
}

/// Multiply-adds of the forward pass with `K = d` tangents, and of forward + reverse.
fn madds(mlp_madds_per_row: usize, b: usize) -> (u64, u64) {
    let rows = ((D + 1) * b) as u64;
    let per_row = mlp_madds_per_row as u64;
    let fwd = rows * per_row;
    // Reverse: W̄ += ūᵀX over all rows for every layer; X̄ = ūW over all rows except
    // at the first layer (primal rows only).
    let first = (D * HIDDEN[0]) as u64;
    let rev = rows * per_row + rows * (per_row - first) + b as u64 * first;
    (fwd, fwd + rev)
}

fn bench_type<T: Real>(c: &mut Criterion) {
    let mlp = reference_mlp::<T>();
    for b in [100usize, 1000] {
        let (fwd, total) = madds(mlp.n_madds_per_row(), b);
        let z = normal::<T>(b * D, 2);
        let a_f = normal::<T>(b * D, 3);
        let a_tr = normal::<T>(b, 4);
        let mut ws = mlp.workspace(b, D).expect("workspace");
        let mut f = vec![T::zero(); b * D];
        let mut tr = vec![T::zero(); b];
        let mut gz = vec![T::zero(); b * D];
        let mut gp = vec![T::zero(); mlp.n_params()];

        let mut g = c.benchmark_group(format!("nn/{}/B{b}", T::NAME));
        g.sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));

        bench_products::<T>(&mut g, (D + 1) * b);

        g.throughput(Throughput::Elements(2 * fwd));
        g.bench_function("f+exact_trace", |bch| {
            bch.iter(|| {
                let out = FieldOutputs {
                    f: &mut f,
                    trace: &mut tr,
                    kinetic: None,
                    jacobian: None,
                };
                mlp.eval_into(T::c(0.3), black_box(&z), TraceMode::Exact, &mut ws, out)
                    .expect("eval")
            })
        });

        g.throughput(Throughput::Elements(2 * total));
        g.bench_function("f+exact_trace+vjp", |bch| {
            bch.iter(|| {
                let out = FieldOutputs {
                    f: &mut f,
                    trace: &mut tr,
                    kinetic: None,
                    jacobian: None,
                };
                mlp.eval_into(T::c(0.3), black_box(&z), TraceMode::Exact, &mut ws, out)
                    .expect("eval");
                let cot = Cotangents {
                    f: Some(&a_f),
                    trace: Some(&a_tr),
                    ..Default::default()
                };
                mlp.vjp_into(&mut ws, &cot, &mut gz, &mut gp).expect("vjp")
            })
        });
        if T::NAME == "f32" {
            // Coarse parallelism: two batch halves through a whole evaluation + reverse,
            // each with its own workspace and gradient buffer (what the CNF layer could
            // do); measured to decide whether the field itself should use rayon.
            let h = b / 2;
            let mut halves = [
                (mlp.workspace(h, D).expect("ws"), vec![T::zero(); mlp.n_params()]),
                (mlp.workspace(b - h, D).expect("ws"), vec![T::zero(); mlp.n_params()]),
            ];
            let mlp_ref = &mlp;
            let run = |ws: &mut cnflow::nn::Workspace<T>, gp: &mut [T], lo: usize, hi: usize| {
                let n = hi - lo;
                let (mut f, mut tr, mut gz) = (vec![T::zero(); n * D], vec![T::zero(); n], vec![T::zero(); n * D]);
                let out = FieldOutputs {
                    f: &mut f,
                    trace: &mut tr,
                    kinetic: None,
                    jacobian: None,
                };
                mlp_ref
                    .eval_into(T::c(0.3), &z[lo * D..hi * D], TraceMode::Exact, ws, out)
                    .expect("eval");
                let cot = Cotangents {
                    f: Some(&a_f[lo * D..hi * D]),
                    trace: Some(&a_tr[lo..hi]),
                    ..Default::default()
                };
                mlp_ref.vjp_into(ws, &cot, &mut gz, gp).expect("vjp");
            };
            g.bench_function("f+exact_trace+vjp_2halves_rayon", |bch| {
                bch.iter(|| {
                    let [(w1, g1), (w2, g2)] = &mut halves;
                    rayon::join(|| run(w1, g1, 0, h), || run(w2, g2, h, b));
                })
            });
        }
        g.finish();
    }
}

/// The three layer products at `(K+1)B × 64 · 64 × 64`, matrixmultiply
/// (`general_mat_mul`) beside the crate's kernels (`cnflow::nn::gemm`):
/// `nt` is the forward `X Wᵀ`, `nn` the input gradient `Ū W`, `tn` the weight gradient
/// `W̄ += Ūᵀ X`.
fn bench_products<T: Real>(g: &mut BenchmarkGroup<'_, WallTime>, rows: usize) {
    let n = HIDDEN[0];
    let x = Array2::<T>::from_shape_vec((rows, n), normal::<T>(rows * n, 5)).expect("shape");
    let w = Array2::<T>::from_shape_vec((n, n), normal::<T>(n * n, 6)).expect("shape");
    let mut y = Array2::<T>::zeros((rows, n));
    let mut gw = Array2::<T>::zeros((n, n));
    let mut scratch = vec![T::zero(); scratch_len(rows.max(n), n)];
    let (xs, ws) = (
        x.as_slice().expect("standard layout"),
        w.as_slice().expect("standard layout"),
    );
    let (wide, reduce) = (Dims { m: rows, k: n, n }, Dims { m: n, k: rows, n });
    g.throughput(Throughput::Elements(2 * (rows * n * n) as u64));
    g.bench_function("gemm_peak_(K+1)Bx64.64x64", |bch| {
        bch.iter(|| general_mat_mul(T::one(), &x, &w.t(), T::zero(), &mut y))
    });
    g.bench_function("kernel_nt_(K+1)Bx64.64x64", |bch| {
        bch.iter(|| {
            matmul_nt(
                wide,
                xs,
                ws,
                false,
                &mut scratch,
                y.as_slice_mut().expect("standard layout"),
            )
        })
    });
    g.bench_function("matrixmultiply_nn_(K+1)Bx64.64x64", |bch| {
        bch.iter(|| general_mat_mul(T::one(), &x, &w, T::zero(), &mut y))
    });
    g.bench_function("kernel_nn_(K+1)Bx64.64x64", |bch| {
        bch.iter(|| {
            matmul_nn(
                wide,
                xs,
                ws,
                false,
                &mut scratch,
                y.as_slice_mut().expect("standard layout"),
            )
        })
    });
    g.bench_function("matrixmultiply_tn_64x(K+1)B.(K+1)Bx64", |bch| {
        bch.iter(|| general_mat_mul(T::one(), &x.t(), &x, T::one(), &mut gw))
    });
    g.bench_function("kernel_tn_64x(K+1)B.(K+1)Bx64", |bch| {
        bch.iter(|| {
            matmul_tn(
                reduce,
                xs,
                xs,
                true,
                &mut scratch,
                gw.as_slice_mut().expect("standard layout"),
            )
        })
    });
}

fn bench_tanh(c: &mut Criterion) {
    let n = 64_000;
    let x: Vec<f32> = normal::<f32>(n, 7).iter().map(|v| 3.0 * v).collect();
    let mut y = vec![0.0f32; n];
    let mut g = c.benchmark_group("nn/tanh_f32_64k");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("fast_tanh", |bch| {
        bch.iter(|| {
            for (o, &v) in y.iter_mut().zip(black_box(&x)) {
                *o = fast_tanh(v);
            }
        })
    });
    g.bench_function("libm_tanh", |bch| {
        bch.iter(|| {
            for (o, &v) in y.iter_mut().zip(black_box(&x)) {
                *o = v.tanh();
            }
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_tanh(c);
    bench_type::<f32>(c);
    bench_type::<f64>(c);
}

criterion_group!(nn, benches);
criterion_main!(nn);
