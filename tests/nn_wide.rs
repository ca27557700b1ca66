//! Derivative identities on networks wide enough that every inner layer runs the dense
//! layer products (`cnflow::nn::gemm`) rather than the thin-layer kernels: widths that
//! straddle the kernels' tiles (6 rows) and panels (8/16 columns), batches 1 and 7.

mod nn_common;

use cnflow::nn::{Cotangents, Mlp, MlpConfig, TraceMode};
use nn_common::*;

const H: f64 = 1e-5;

/// `(d, hidden)`: with `d = 2` the first and last layers are thin; with `d = 5` none is.
const SHAPES: [(usize, &[usize]); 3] = [(2, &[9, 17, 13]), (5, &[7]), (3, &[24, 33])];

fn rel_close(what: &str, a: f64, b: f64, tol: f64) {
    assert!(
        (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs())),
        "{what}: {a} vs {b}"
    );
}

#[test]
fn vjp_matches_jvp_transpose_on_wide_layers() {
    for (s, &(d, hidden)) in SHAPES.iter().enumerate() {
        for b in [1usize, 7] {
            for (kind, act) in all_kinds() {
                let seed = 40 + s as u64;
                let mlp = net(kind, act, d, hidden, seed);
                let mut r = rng(seed ^ 0x77);
                let (z, v, w) = (
                    normal_vec(&mut r, b * d),
                    normal_vec(&mut r, b * d),
                    normal_vec(&mut r, b * d),
                );
                let t = -0.4;
                let mut ws = mlp.workspace(b, 1).unwrap();
                let (mut f, mut jv) = (vec![0.0; b * d], vec![0.0; b * d]);
                mlp.jvp_into(t, &z, &v, &mut ws, &mut f, &mut jv).unwrap();
                let mut ws0 = mlp.workspace(b, 0).unwrap();
                mlp.forward_into(t, &z, &mut ws0, &mut f).unwrap();
                let cot = Cotangents {
                    f: Some(&w),
                    ..Default::default()
                };
                let g = mlp.vjp(&mut ws0, &cot).unwrap();
                rel_close(
                    &format!("{kind} {act} d={d} B={b}: <w,Jv> vs <Jᵀw,v>"),
                    dot(&w, &jv),
                    dot(&g.z, &v),
                    1e-12,
                );
            }
        }
    }
}

/// The second-order path (reverse through the exact trace) against central
/// differences along a random direction in `(z, θ, t)`.
#[test]
fn trace_gradient_matches_finite_differences_on_wide_layers() {
    for (s, &(d, hidden)) in SHAPES.iter().enumerate() {
        for b in [1usize, 7] {
            for (kind, act) in all_kinds() {
                let seed = 50 + s as u64;
                let mlp = net(kind, act, d, hidden, seed);
                let mut r = rng(seed ^ 0x99);
                let z = normal_vec(&mut r, b * d);
                let a_tr = normal_vec(&mut r, b);
                let (dz, dp, dt) = (normal_vec(&mut r, b * d), normal_vec(&mut r, mlp.n_params()), 0.8);
                let t = 0.25;
                let mut ws = mlp.workspace(b, d).unwrap();
                mlp.eval(t, &z, TraceMode::Exact, &mut ws).unwrap();
                let cot = Cotangents {
                    trace: Some(&a_tr),
                    ..Default::default()
                };
                let g = mlp.vjp(&mut ws, &cot).unwrap();
                let an = dot(&g.z, &dz) + dot(&g.params, &dp) + g.t * dt;
                let s_of = |m: &Mlp<f64>, t: f64, z: &[f64]| dot(&a_tr, &trace_of(m, t, z));
                let mp = with_params(&mlp, axpy(mlp.params(), H, &dp));
                let mm = with_params(&mlp, axpy(mlp.params(), -H, &dp));
                let fd =
                    (s_of(&mp, t + H * dt, &axpy(&z, H, &dz)) - s_of(&mm, t - H * dt, &axpy(&z, -H, &dz))) / (2.0 * H);
                rel_close(&format!("{kind} {act} d={d} B={b}: d(a·tr)"), an, fd, 1e-6);
            }
        }
    }
}

/// The f32 kernels agree with f64 on the same network.
#[test]
fn f32_field_matches_f64_on_wide_layers() {
    for (s, &(d, hidden)) in SHAPES.iter().enumerate() {
        let b = 13;
        let (kind, act) = all_kinds()[s];
        let m64 = net(kind, act, d, hidden, 60 + s as u64);
        let config: MlpConfig = m64.config().clone();
        let p32: Vec<f32> = m64.params().iter().map(|&x| x as f32).collect();
        let m32 = Mlp::<f32>::from_params(config, p32).unwrap();
        let z64 = normal_vec(&mut rng(61), b * d);
        let z32: Vec<f32> = z64.iter().map(|&x| x as f32).collect();
        let mut w64 = m64.workspace(b, d).unwrap();
        let mut w32 = m32.workspace(b, d).unwrap();
        let e64 = m64.eval(0.3, &z64, TraceMode::Exact, &mut w64).unwrap();
        let e32 = m32.eval(0.3, &z32, TraceMode::Exact, &mut w32).unwrap();
        for (name, a, c) in [("f", &e64.f, &e32.f), ("trace", &e64.trace, &e32.trace)] {
            for (&x, &y) in a.iter().zip(c.iter()) {
                rel_close(&format!("{kind} {act} d={d} {name}"), x, y as f64, 1e-4);
            }
        }
    }
}
