//! Derivatives of the neural field against finite differences and transpose
//! identities, for every layer kind and activation (f64).
//!
//! Each proptest case draws a batch size (1, odd, larger), a dimension, hidden widths
//! and a seed, and checks all twelve (layer kind, activation) pairs on it.

mod nn_common;

use cnflow::nn::{Cotangents, Mlp, TraceMode};
use nn_common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

const H: f64 = 1e-5;
const TOL: f64 = 1e-6;

fn config() -> Config {
    Config {
        cases: 4,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x5eed_0003),
        ..Config::default()
    }
}

fn shapes() -> impl Strategy<Value = (usize, usize, Vec<usize>, u64)> {
    (
        prop::sample::select(vec![1usize, 3, 8]),
        1usize..=3,
        prop::sample::select(vec![vec![5usize], vec![4, 6], vec![3, 5, 4]]),
        any::<u64>(),
    )
}

/// Random direction in `(z, θ, t)` and the directional central difference of a
/// scalar function of the three.
struct Direction {
    z: Vec<f64>,
    p: Vec<f64>,
    t: f64,
}

impl Direction {
    fn new(mlp: &Mlp<f64>, n_z: usize, seed: u64) -> Self {
        let mut r = rng(seed ^ 0xd1d1);
        Direction {
            z: normal_vec(&mut r, n_z),
            p: normal_vec(&mut r, mlp.n_params()),
            t: normal_vec(&mut r, 1)[0],
        }
    }

    /// `⟨∇S, δ⟩` from the reverse pass.
    fn apply(&self, grad_z: &[f64], grad_p: &[f64], grad_t: f64) -> [f64; 3] {
        [dot(grad_z, &self.z), dot(grad_p, &self.p), grad_t * self.t]
    }

    /// Central differences of `s` along `δz`, `δθ`, `δt` separately.
    fn fd(&self, mlp: &Mlp<f64>, t: f64, z: &[f64], s: impl Fn(&Mlp<f64>, f64, &[f64]) -> f64) -> [f64; 3] {
        let dz = (s(mlp, t, &axpy(z, H, &self.z)) - s(mlp, t, &axpy(z, -H, &self.z))) / (2.0 * H);
        let (mp, mm) = (
            with_params(mlp, axpy(mlp.params(), H, &self.p)),
            with_params(mlp, axpy(mlp.params(), -H, &self.p)),
        );
        let dp = (s(&mp, t, z) - s(&mm, t, z)) / (2.0 * H);
        let dt = (s(mlp, t + H * self.t, z) - s(mlp, t - H * self.t, z)) / (2.0 * H);
        [dz, dp, dt]
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn jvp_matches_central_differences((b, d, hidden, seed) in shapes()) {
        for (kind, act) in all_kinds() {
            let mlp = net(kind, act, d, &hidden, seed);
            let mut r = rng(seed.wrapping_add(1));
            let z = normal_vec(&mut r, b * d);
            let n_tan = 2;
            let v = normal_vec(&mut r, n_tan * b * d);
            let t = 0.3;
            let mut ws = mlp.workspace(b, n_tan).unwrap();
            let (mut f, mut jv) = (vec![0.0; b * d], vec![0.0; n_tan * b * d]);
            mlp.jvp_into(t, &z, &v, &mut ws, &mut f, &mut jv).unwrap();
            assert_close("f", &f, &f_of(&mlp, t, &z), 1e-14);
            for k in 0..n_tan {
                let vk = &v[k * b * d..(k + 1) * b * d];
                let fp = f_of(&mlp, t, &axpy(&z, H, vk));
                let fm = f_of(&mlp, t, &axpy(&z, -H, vk));
                let fd: Vec<f64> = fp.iter().zip(&fm).map(|(p, m)| (p - m) / (2.0 * H)).collect();
                assert_close(&format!("{kind} {act} J v_{k}"), &jv[k * b * d..(k + 1) * b * d], &fd, TOL);
            }
        }
    }

    #[test]
    fn vjp_matches_jvp_transpose((b, d, hidden, seed) in shapes()) {
        for (kind, act) in all_kinds() {
            let mlp = net(kind, act, d, &hidden, seed);
            let mut r = rng(seed.wrapping_add(2));
            let z = normal_vec(&mut r, b * d);
            let v = normal_vec(&mut r, b * d);
            let w = normal_vec(&mut r, b * d);
            let t = -0.7;
            let mut ws = mlp.workspace(b, 1).unwrap();
            let (mut f, mut jv) = (vec![0.0; b * d], vec![0.0; b * d]);
            mlp.jvp_into(t, &z, &v, &mut ws, &mut f, &mut jv).unwrap();
            // Reverse of the plain forward pass: Jᵀ w.
            let mut ws0 = mlp.workspace(b, 0).unwrap();
            mlp.forward_into(t, &z, &mut ws0, &mut f).unwrap();
            let g = mlp.vjp(&mut ws0, &Cotangents { f: Some(&w), ..Default::default() }).unwrap();
            let (lhs, rhs) = (dot(&w, &jv), dot(&g.z, &v));
            prop_assert!((lhs - rhs).abs() <= 1e-12 * (1.0 + lhs.abs()), "{kind} {act}: <w,Jv>={lhs} <J^T w,v>={rhs}");
        }
    }

    #[test]
    fn vjp_of_f_matches_central_differences_in_params_and_time((b, d, hidden, seed) in shapes()) {
        for (kind, act) in all_kinds() {
            let mlp = net(kind, act, d, &hidden, seed);
            let mut r = rng(seed.wrapping_add(3));
            let z = normal_vec(&mut r, b * d);
            let w = normal_vec(&mut r, b * d);
            let t = 0.45;
            let mut ws = mlp.workspace(b, 0).unwrap();
            let mut f = vec![0.0; b * d];
            mlp.forward_into(t, &z, &mut ws, &mut f).unwrap();
            let g = mlp.vjp(&mut ws, &Cotangents { f: Some(&w), ..Default::default() }).unwrap();
            let dir = Direction::new(&mlp, b * d, seed);
            let an = dir.apply(&g.z, &g.params, g.t);
            let fd = dir.fd(&mlp, t, &z, |m, t, z| dot(&w, &f_of(m, t, z)));
            assert_close(&format!("{kind} {act} <w, df>"), &an, &fd, TOL);
        }
    }

    #[test]
    fn exact_trace_matches_finite_difference_jacobian((b, d, hidden, seed) in shapes()) {
        for (kind, act) in all_kinds() {
            let mlp = net(kind, act, d, &hidden, seed);
            let mut r = rng(seed.wrapping_add(4));
            let z = normal_vec(&mut r, b * d);
            let t = 0.1;
            let mut ws = mlp.workspace(b, d).unwrap();
            let e = mlp.eval(t, &z, TraceMode::Exact, &mut ws).unwrap();
            let jac = fd_jacobian(&mlp, t, &z, H);
            let tr: Vec<f64> = (0..b).map(|s| (0..d).map(|i| jac[s * d * d + i * d + i]).sum()).collect();
            let frob: Vec<f64> = (0..b).map(|s| jac[s * d * d..(s + 1) * d * d].iter().map(|x| x * x).sum()).collect();
            let kin: Vec<f64> = e.f.chunks(d).map(|r| r.iter().map(|x| x * x).sum()).collect();
            assert_close(&format!("{kind} {act} trace"), &e.trace, &tr, TOL);
            assert_close(&format!("{kind} {act} |J|_F^2"), &e.jacobian, &frob, TOL);
            assert_close(&format!("{kind} {act} |f|^2"), &e.kinetic, &kin, 1e-14);
        }
    }

    #[test]
    fn trace_gradient_matches_finite_differences((b, d, hidden, seed) in shapes()) {
        for (kind, act) in all_kinds() {
            let mlp = net(kind, act, d, &hidden, seed);
            let mut r = rng(seed.wrapping_add(5));
            let z = normal_vec(&mut r, b * d);
            let a_tr = normal_vec(&mut r, b);
            let t = 0.25;
            let mut ws = mlp.workspace(b, d).unwrap();
            mlp.eval(t, &z, TraceMode::Exact, &mut ws).unwrap();
            let g = mlp.vjp(&mut ws, &Cotangents { trace: Some(&a_tr), ..Default::default() }).unwrap();
            let dir = Direction::new(&mlp, b * d, seed);
            let an = dir.apply(&g.z, &g.params, g.t);
            let fd = dir.fd(&mlp, t, &z, |m, t, z| dot(&a_tr, &trace_of(m, t, z)));
            assert_close(&format!("{kind} {act} d(a.tr)"), &an, &fd, TOL);
        }
    }

    #[test]
    fn full_reverse_matches_finite_differences_exact_and_hutchinson((b, d, hidden, seed) in shapes()) {
        for (kind, act) in all_kinds() {
            let mlp = net(kind, act, d, &hidden, seed);
            let mut r = rng(seed.wrapping_add(6));
            let z = normal_vec(&mut r, b * d);
            let n_probes = 3;
            let probes = normal_vec(&mut r, n_probes * b * d);
            let a_f = normal_vec(&mut r, b * d);
            let a_tr = normal_vec(&mut r, b);
            let a_kin = normal_vec(&mut r, b);
            let a_jac = normal_vec(&mut r, b);
            let t = 0.6;
            for exact in [true, false] {
                let mode = if exact { TraceMode::Exact } else { TraceMode::Hutchinson(&probes) };
                let n_tan = if exact { d } else { n_probes };
                let a_jv = normal_vec(&mut r, n_tan * b * d);
                // S = <a_f, f> + <a_jv, Jv> + <a_tr, tr> + <a_kin, |f|^2> + <a_jac, |Jv|^2>
                let s = |m: &Mlp<f64>, t: f64, z: &[f64]| {
                    let mut ws = m.workspace(b, n_tan).unwrap();
                    let e = m.eval(t, z, mode, &mut ws).unwrap();
                    let v: Vec<f64> = if exact {
                        (0..n_tan * b * d).map(|i| if (i % d) == i / (b * d) { 1.0 } else { 0.0 }).collect()
                    } else {
                        probes.clone()
                    };
                    let (mut f, mut jv) = (vec![0.0; b * d], vec![0.0; n_tan * b * d]);
                    m.jvp_into(t, z, &v, &mut ws, &mut f, &mut jv).unwrap();
                    dot(&a_f, &e.f) + dot(&a_jv, &jv) + dot(&a_tr, &e.trace)
                        + dot(&a_kin, &e.kinetic) + dot(&a_jac, &e.jacobian)
                };
                let mut ws = mlp.workspace(b, n_tan).unwrap();
                mlp.eval(t, &z, mode, &mut ws).unwrap();
                let cot = Cotangents {
                    f: Some(&a_f),
                    jv: Some(&a_jv),
                    trace: Some(&a_tr),
                    kinetic: Some(&a_kin),
                    jacobian: Some(&a_jac),
                };
                let g = mlp.vjp(&mut ws, &cot).unwrap();
                let dir = Direction::new(&mlp, b * d, seed);
                let an = dir.apply(&g.z, &g.params, g.t);
                let fd = dir.fd(&mlp, t, &z, s);
                assert_close(&format!("{kind} {act} exact={exact} dS"), &an, &fd, TOL);
            }
        }
    }

    #[test]
    fn regularizer_gradients_match_finite_differences((b, d, hidden, seed) in shapes()) {
        // ‖J ε‖² with fixed Hutchinson probes, and ‖f‖², each on its own.
        for (kind, act) in all_kinds() {
            let mlp = net(kind, act, d, &hidden, seed);
            let mut r = rng(seed.wrapping_add(7));
            let z = normal_vec(&mut r, b * d);
            let probes = normal_vec(&mut r, 2 * b * d);
            let a = normal_vec(&mut r, b);
            let t = -0.2;
            let mode = TraceMode::Hutchinson(&probes);
            for jac in [true, false] {
                let mut ws = mlp.workspace(b, 2).unwrap();
                mlp.eval(t, &z, mode, &mut ws).unwrap();
                let cot = if jac {
                    Cotangents { jacobian: Some(&a), ..Default::default() }
                } else {
                    Cotangents { kinetic: Some(&a), ..Default::default() }
                };
                let g = mlp.vjp(&mut ws, &cot).unwrap();
                let dir = Direction::new(&mlp, b * d, seed);
                let an = dir.apply(&g.z, &g.params, g.t);
                let fd = dir.fd(&mlp, t, &z, |m, t, z| {
                    let mut ws = m.workspace(b, 2).unwrap();
                    let e = m.eval(t, z, mode, &mut ws).unwrap();
                    dot(&a, if jac { &e.jacobian } else { &e.kinetic })
                });
                assert_close(&format!("{kind} {act} jac={jac}"), &an, &fd, TOL);
            }
        }
    }
}
