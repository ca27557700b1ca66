//! The model's affine block (the data's standardisation `u = (x − μ)/σ` before block
//! 1): densities in the user's units integrate to one, equal the flow's density of
//! `u` plus `−Σ ln σ`, samples and encodings round trip, the gradient in the
//! parameters is unchanged and the one in `x` is pulled back through `1/σ`, an f32
//! flow keeps its precision on data far from the origin, and model files keep it.

use std::path::Path;

use cnflow::cnf::{loss_and_grad, Block, Cnf, GradMethod, LossConfig, Trace, TAPE_BUDGET};
use cnflow::data::Standardizer;
use cnflow::model_file::{EvalSolver, ModelFile};
use cnflow::nn::{Mlp, MlpConfig};
use cnflow::ode::{Method, SolverConfig};
use cnflow::sensitivity::Checkpointing;
use cnflow::Real;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn flow<T: Real>() -> Cnf<T, Mlp<T>> {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let arch = MlpConfig::parse(2, "16-16", "concatsquash", "tanh").unwrap();
    let blocks = (0..2)
        .map(|_| Block {
            field: Mlp::<T>::new(arch.clone(), &mut rng, false),
            t_end: T::c(0.6),
            learn_t: false,
        })
        .collect();
    Cnf::new(blocks).unwrap()
}

/// μ far from the origin, σ whose product is not 1 (so a missing log-det shows).
fn standardizer(mean: [f64; 2], std: [f64; 2]) -> Standardizer {
    Standardizer {
        mean: ndarray::arr1(&mean),
        std: ndarray::arr1(&std),
    }
}

fn solver() -> SolverConfig {
    SolverConfig::adaptive(Method::Dopri5, 1e-8, 1e-8)
}

fn points(s: &Standardizer) -> Vec<f64> {
    let u = [0.3, -1.2, 2.0, 0.5, -0.7, -0.1, 1.5, 0.9];
    u.chunks(2)
        .flat_map(|p| (0..2).map(move |j| s.mean[j] + s.std[j] * p[j]))
        .collect()
}

#[test]
fn log_density_is_the_flows_of_u_plus_the_log_det() {
    let s = standardizer([3.0, -2.0], [0.5, 0.8]);
    let plain = flow::<f64>();
    let model = plain.clone().with_standardizer(s.clone()).unwrap();
    let x = points(&s);
    let u: Vec<f64> = Standardizer::forward_flat(Some(&s), &x);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let with = model.log_prob(&x, &solver(), Trace::Exact, &mut rng).unwrap();
    let without = plain.log_prob(&u, &solver(), Trace::Exact, &mut rng).unwrap();
    let log_det = -(0.5f64.ln() + 0.8f64.ln());
    assert_eq!(model.log_det_affine(), log_det);
    assert_eq!(with.z, without.z);
    for (a, b) in with.log_p.iter().zip(&without.log_p) {
        assert_eq!(*a, b + log_det);
    }
}

#[test]
fn density_in_the_users_units_integrates_to_one() {
    // Midpoint rule over μ ± 7σ: the flow is close to the identity, so its density
    // has Gaussian tails and the box holds all but ~1e-11 of it.
    let s = standardizer([3.0, -2.0], [0.5, 0.8]);
    let model = flow::<f64>().with_standardizer(s.clone()).unwrap();
    let n = 140;
    let (lo, hi) = ([3.0 - 3.5, -2.0 - 5.6], [3.0 + 3.5, -2.0 + 5.6]);
    let h = [(hi[0] - lo[0]) / n as f64, (hi[1] - lo[1]) / n as f64];
    let mut grid = Vec::with_capacity(2 * n * n);
    for i in 0..n {
        for j in 0..n {
            grid.push(lo[0] + (i as f64 + 0.5) * h[0]);
            grid.push(lo[1] + (j as f64 + 0.5) * h[1]);
        }
    }
    let solver = SolverConfig::adaptive(Method::Dopri5, 1e-6, 1e-6);
    let lp = model.log_prob_par(&grid, &solver, Trace::Exact, 500, 0).unwrap();
    let mass: f64 = lp.log_p.iter().map(|v| v.exp()).sum::<f64>() * h[0] * h[1];
    assert!((mass - 1.0).abs() < 2e-3, "mass {mass}");
}

#[test]
fn samples_encode_back_to_their_base_points() {
    let s = standardizer([3.0, -2.0], [0.5, 0.8]);
    let model = flow::<f64>().with_standardizer(s).unwrap();
    let z: Vec<f64> = vec![0.2, -0.4, 1.1, 0.3, -1.5, 0.8];
    let (x, _) = model.decode(&z, &solver()).unwrap();
    // The samples are in the user's units: near μ, not near the origin.
    assert!(x
        .chunks(2)
        .all(|p| (p[0] - 3.0).abs() < 2.5 && (p[1] + 2.0).abs() < 4.0));
    let back = model.encode(&x, &solver()).unwrap();
    let err = back.iter().zip(&z).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(err < 1e-6, "round trip error {err}");
}

fn loss_config() -> LossConfig {
    LossConfig {
        solver: SolverConfig::fixed_steps(Method::Rk4, 20),
        trace: Trace::Exact,
        kinetic: 0.0,
        jacobian: 0.0,
        grad: GradMethod::Backprop,
        tape_budget: TAPE_BUDGET,
        checkpointing: Checkpointing::All,
    }
}

#[test]
fn gradient_in_the_parameters_is_unchanged_and_in_x_pulled_back() {
    let s = standardizer([3.0, -2.0], [0.5, 0.8]);
    let plain = flow::<f64>();
    let model = plain.clone().with_standardizer(s.clone()).unwrap();
    let x = points(&s);
    let u: Vec<f64> = Standardizer::forward_flat(Some(&s), &x);
    let config = loss_config();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let with = loss_and_grad(&model, &x, &config, &mut rng).unwrap();
    let without = loss_and_grad(&plain, &u, &config, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
    assert_eq!(with.grad_params, without.grad_params);
    assert!((with.nll - (without.nll - s.log_det())).abs() < 1e-12);
    // ∂L/∂x by central differences of the loss in each coordinate of each point.
    let nll = |x: &[f64]| {
        loss_and_grad(&model, x, &config, &mut ChaCha8Rng::seed_from_u64(1))
            .unwrap()
            .loss
    };
    let eps = 1e-6;
    for i in 0..x.len() {
        let (mut plus, mut minus) = (x.clone(), x.clone());
        plus[i] += eps;
        minus[i] -= eps;
        let fd = (nll(&plus) - nll(&minus)) / (2.0 * eps);
        assert!(
            (with.grad_x[i] - fd).abs() < 1e-6 * fd.abs().max(1.0),
            "∂L/∂x[{i}]: {} vs FD {fd}",
            with.grad_x[i]
        );
    }
}

#[test]
fn an_f32_flow_keeps_its_precision_on_data_far_from_the_origin() {
    // x ≈ 10⁵ with σ = 10⁻²: rounding x to f32 first would move u by ~0.4.
    let s = standardizer([1.0e5, -3.0e4], [1.0e-2, 2.0e-2]);
    let m64 = flow::<f64>().with_standardizer(s.clone()).unwrap();
    let m32 = flow::<f32>().with_standardizer(s.clone()).unwrap();
    let x = points(&s);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let solver = SolverConfig::adaptive(Method::Dopri5, 1e-6, 1e-6);
    let lp64 = m64.log_prob(&x, &solver, Trace::Exact, &mut rng).unwrap();
    let lp32 = m32.log_prob(&x, &solver, Trace::Exact, &mut rng).unwrap();
    for (a, b) in lp32.log_p.iter().zip(&lp64.log_p) {
        assert!((a.f64() - b).abs() < 1e-4 * b.abs(), "{a} vs {b}");
    }
    // And back: the f32 flow's samples in f64, within σ·1e-5 of the f64 flow's.
    let z = [0.2f64, -0.4, 1.1, 0.3];
    let z32: Vec<f32> = z.iter().map(|&v| v as f32).collect();
    let (x64, _) = m64.decode(&z, &solver).unwrap();
    let (x32, _) = m32.decode(&z32, &solver).unwrap();
    for (k, (a, b)) in x32.iter().zip(&x64).enumerate() {
        assert!((a - b).abs() < 1e-5 * s.std[k % 2], "{a} vs {b}");
    }
}

#[test]
fn a_standardiser_of_another_dimension_is_refused() {
    let s = Standardizer::identity(3);
    assert!(flow::<f64>().with_standardizer(s).is_err());
    let bad = standardizer([0.0, 0.0], [1.0, 0.0]);
    assert!(flow::<f64>().with_standardizer(bad).is_err());
}

#[test]
fn a_model_file_keeps_the_affine_block() {
    let s = standardizer([3.0, -2.0], [0.5, 0.8]);
    let model = flow::<f64>().with_standardizer(s.clone()).unwrap();
    let solver_file = EvalSolver {
        method: Method::Dopri5,
        rtol: 1e-8,
        atol: 1e-8,
        implicit: None,
    };
    let file = ModelFile::new(&model, solver_file, serde_json::json!({}));
    assert_eq!(file.standardizer.as_ref(), Some(&s));
    let back = file.to_model::<f64>(Path::new("m")).unwrap();
    assert_eq!(back, model);
}
