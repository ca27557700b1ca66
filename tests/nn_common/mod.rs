//! Helpers shared by the `nn_*` test files.
#![allow(dead_code)]

use cnflow::nn::{Activation, LayerKind, Mlp, MlpConfig, TraceMode};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Every (layer kind, activation) pair.
pub fn all_kinds() -> Vec<(LayerKind, Activation)> {
    LayerKind::ALL
        .iter()
        .flat_map(|&k| Activation::ALL.iter().map(move |&a| (k, a)))
        .collect()
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn normal_vec(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| StandardNormal.sample(rng)).collect()
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `x + s·v`.
pub fn axpy(x: &[f64], s: f64, v: &[f64]) -> Vec<f64> {
    x.iter().zip(v).map(|(a, b)| a + s * b).collect()
}

/// A random network; `t`-params are perturbed away from PyTorch's init so every
/// time path is exercised, and the last layer is not zero.
pub fn net(kind: LayerKind, act: Activation, d: usize, hidden: &[usize], seed: u64) -> Mlp<f64> {
    let config = MlpConfig::new(d, hidden, kind, act).expect("valid test config");
    let mut r = rng(seed);
    Mlp::new(config, &mut r, false)
}

/// Same architecture with other params.
pub fn with_params(mlp: &Mlp<f64>, params: Vec<f64>) -> Mlp<f64> {
    Mlp::from_params(mlp.config().clone(), params).expect("same length")
}

/// `f(z, t)`.
pub fn f_of(mlp: &Mlp<f64>, t: f64, z: &[f64]) -> Vec<f64> {
    mlp.forward(t, z).expect("forward")
}

/// Exact trace, via the library's exact mode.
pub fn trace_of(mlp: &Mlp<f64>, t: f64, z: &[f64]) -> Vec<f64> {
    let b = z.len() / mlp.dim();
    let mut ws = mlp.workspace(b, mlp.dim()).expect("ws");
    mlp.eval(t, z, TraceMode::Exact, &mut ws).expect("eval").trace
}

/// Per-sample Jacobians `B × d × d` (row i = ∂f_i/∂z) by central differences.
pub fn fd_jacobian(mlp: &Mlp<f64>, t: f64, z: &[f64], h: f64) -> Vec<f64> {
    let d = mlp.dim();
    let b = z.len() / d;
    let mut jac = vec![0.0; b * d * d];
    for j in 0..d {
        let mut zp = z.to_vec();
        let mut zm = z.to_vec();
        for s in 0..b {
            zp[s * d + j] += h;
            zm[s * d + j] -= h;
        }
        let (fp, fm) = (f_of(mlp, t, &zp), f_of(mlp, t, &zm));
        for s in 0..b {
            for i in 0..d {
                jac[s * d * d + i * d + j] = (fp[s * d + i] - fm[s * d + i]) / (2.0 * h);
            }
        }
    }
    jac
}

/// Asserts `|a − b| ≤ tol·(1 + |b|)` element-wise, naming the quantity.
pub fn assert_close(what: &str, a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y} (diff {:e})",
            (x - y).abs()
        );
    }
}
