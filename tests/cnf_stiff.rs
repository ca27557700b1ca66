//! A CNF solved with an implicit method (`SolverConfig::implicit`: TR-BDF2 or KVAERNO5
//! with block-diagonal Newton, one block per point): log-densities, samples and
//! encodings agree with tight explicit solves; on a stiff field the implicit solve
//! takes a fraction of the explicit one's evaluations; the training gradient (the
//! ESDIRK discrete adjoint through the blocks) is the exact gradient of the discrete
//! loss (central differences, fixed steps) and agrees with explicit backprop at tight
//! tolerances, regularizers and Hutchinson probes included.

use cnflow::cnf::{loss_and_grad, Block, Cnf, GradMethod, LinearField, LossConfig, Trace};
use cnflow::nn::{Mlp, MlpConfig};
use cnflow::ode::{Method, SolverConfig, StepControl};
use cnflow::stiff::StiffMethod;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn flow(n_blocks: usize, learn_t: bool) -> Cnf<f64, Mlp<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let arch = MlpConfig::parse(2, "12-12", "concatsquash", "tanh").unwrap();
    let blocks = (0..n_blocks)
        .map(|_| Block {
            field: Mlp::<f64>::new(arch.clone(), &mut rng, false),
            t_end: 0.7,
            learn_t,
        })
        .collect();
    Cnf::new(blocks).unwrap()
}

const X: [f64; 10] = [0.3, -1.2, 2.0, 0.5, -0.7, -0.1, 1.5, 0.9, -1.9, 1.1];

fn explicit() -> SolverConfig {
    SolverConfig::adaptive(Method::Dopri5, 1e-11, 1e-11)
}

#[test]
fn implicit_log_density_matches_the_explicit_one() {
    let model = flow(2, false);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let reference = model.log_prob(&X, &explicit(), Trace::Exact, &mut rng).unwrap();
    for (method, tol, err) in [(StiffMethod::Kvaerno5, 1e-9, 1e-6), (StiffMethod::TrBdf2, 1e-8, 1e-4)] {
        let lp = model
            .log_prob(&X, &SolverConfig::implicit(method, tol, tol), Trace::Exact, &mut rng)
            .unwrap();
        for (a, b) in lp.log_p.iter().zip(&reference.log_p) {
            assert!((a - b).abs() < err, "{method}: log p {a} vs {b}");
        }
        for (a, b) in lp.z.iter().zip(&reference.z) {
            assert!((a - b).abs() < err, "{method}: z {a} vs {b}");
        }
    }
}

#[test]
fn implicit_samples_encodings_and_trajectories_agree_with_explicit_ones() {
    let model = flow(2, false);
    let implicit = SolverConfig::implicit(StiffMethod::Kvaerno5, 1e-10, 1e-10);
    let (x_implicit, stats) = model.decode(&X, &implicit).unwrap();
    let (x_explicit, _) = model.decode(&X, &explicit()).unwrap();
    assert!(stats.n_accepted > 0);
    for (a, b) in x_implicit.iter().zip(&x_explicit) {
        assert!((a - b).abs() < 1e-7, "decode {a} vs {b}");
    }
    let z = model.encode(&x_implicit, &implicit).unwrap();
    for (a, b) in z.iter().zip(&X) {
        assert!((a - b).abs() < 1e-7, "encode(decode(z)) {a} vs {b}");
    }
    let frames = model.trajectories(&X, 5, &implicit).unwrap();
    let reference = model.trajectories(&X, 5, &explicit()).unwrap();
    assert_eq!(frames.len(), reference.len());
    for (a, b) in frames.iter().zip(&reference) {
        assert!((a - b).abs() < 1e-6, "trajectory {a} vs {b}");
    }
    assert_eq!(&frames[frames.len() - X.len()..], &x_implicit[..]);
}

#[test]
fn on_a_stiff_field_the_implicit_solve_needs_far_fewer_evaluations() {
    // f(z) = A z with eigenvalues −1 and −3000: Dopri5 is held to h ≈ 3.3/3000 by
    // stability; the L-stable KVAERNO5 steps over the fast mode.
    let a: [f64; 4] = [-1.0, 0.0, 2.0, -3000.0];
    let field = LinearField::new(&a, &[0.5, 0.0], &[0.0, 0.0]);
    let model: Cnf<f64, LinearField<f64>> = Cnf::new(vec![Block {
        field,
        t_end: 1.0,
        learn_t: false,
    }])
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let tol = 1e-6;
    let lp_explicit = model
        .log_prob(
            &X,
            &SolverConfig::adaptive(Method::Dopri5, tol, tol),
            Trace::Exact,
            &mut rng,
        )
        .unwrap();
    let lp_implicit = model
        .log_prob(
            &X,
            &SolverConfig::implicit(StiffMethod::Kvaerno5, tol, tol),
            Trace::Exact,
            &mut rng,
        )
        .unwrap();
    for (a, b) in lp_implicit.log_p.iter().zip(&lp_explicit.log_p) {
        assert!((a - b).abs() < 1e-4f64, "log p {a} vs {b}");
    }
    eprintln!(
        "evaluations: implicit {}, explicit {}",
        lp_implicit.n_evals, lp_explicit.n_evals
    );
    assert!(
        lp_implicit.n_evals * 5 < lp_explicit.n_evals,
        "implicit {} evaluations vs explicit {}",
        lp_implicit.n_evals,
        lp_explicit.n_evals
    );
}

fn loss_config(solver: SolverConfig, trace: Trace, kinetic: f64, jacobian: f64) -> LossConfig {
    LossConfig {
        trace,
        kinetic,
        jacobian,
        grad: GradMethod::Backprop,
        ..LossConfig::new(solver)
    }
}

/// The loss at `model` with the probes of seed 7.
fn loss_of(model: &Cnf<f64, Mlp<f64>>, x: &[f64], config: &LossConfig) -> f64 {
    loss_and_grad(model, x, config, &mut ChaCha8Rng::seed_from_u64(7))
        .unwrap()
        .loss
}

#[test]
fn implicit_gradient_is_the_exact_gradient_of_the_discrete_loss() {
    // Fixed steps: the discrete loss is a smooth function of θ, T and x (Newton
    // converged far below the differences' error), so central differences check it.
    let fixed = SolverConfig {
        step: StepControl::FixedSteps(3),
        ..SolverConfig::implicit(StiffMethod::Kvaerno5, 1e-6, 1e-6)
    };
    for (trace, kinetic, jacobian) in [(Trace::Exact, 0.3, 0.0), (Trace::Rademacher(1), 0.1, 0.2)] {
        let model = flow(2, true);
        let config = loss_config(fixed.clone(), trace, kinetic, jacobian);
        let lg = loss_and_grad(&model, &X, &config, &mut ChaCha8Rng::seed_from_u64(7)).unwrap();
        let eps = 1e-5;
        for k in 0..2 {
            for &j in &[0, 7, 40, model.blocks[k].field.params().len() - 1] {
                let (mut up, mut down) = (model.clone(), model.clone());
                up.blocks[k].field.params_mut()[j] += eps;
                down.blocks[k].field.params_mut()[j] -= eps;
                let fd = (loss_of(&up, &X, &config) - loss_of(&down, &X, &config)) / (2.0 * eps);
                let g = lg.grad_params[k][j];
                assert!(
                    (g - fd).abs() < 1e-6 * (1.0 + fd.abs()),
                    "{trace:?} block {k} θ[{j}]: {g} vs {fd}"
                );
            }
            let (mut up, mut down) = (model.clone(), model.clone());
            up.blocks[k].t_end += eps;
            down.blocks[k].t_end -= eps;
            let fd = (loss_of(&up, &X, &config) - loss_of(&down, &X, &config)) / (2.0 * eps);
            let g = lg.grad_t_end[k];
            assert!(
                (g - fd).abs() < 1e-6 * (1.0 + fd.abs()),
                "{trace:?} block {k} T: {g} vs {fd}"
            );
        }
        for i in [0, 3, 8] {
            let (mut up, mut down) = (X, X);
            up[i] += eps;
            down[i] -= eps;
            let fd = (loss_of(&model, &up, &config) - loss_of(&model, &down, &config)) / (2.0 * eps);
            let g = lg.grad_x[i];
            assert!(
                (g - fd).abs() < 1e-6 * (1.0 + fd.abs()),
                "{trace:?} x[{i}]: {g} vs {fd}"
            );
        }
    }
}

#[test]
fn implicit_gradient_agrees_with_explicit_backprop_at_tight_tolerances() {
    let model = flow(2, true);
    let implicit = loss_config(
        SolverConfig::implicit(StiffMethod::Kvaerno5, 1e-10, 1e-10),
        Trace::Exact,
        0.1,
        0.0,
    );
    let explicit = loss_config(explicit(), Trace::Exact, 0.1, 0.0);
    let a = loss_and_grad(&model, &X, &implicit, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
    let b = loss_and_grad(&model, &X, &explicit, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
    assert!((a.loss - b.loss).abs() < 1e-7, "loss {} vs {}", a.loss, b.loss);
    for k in 0..2 {
        let scale = b.grad_params[k].iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (ga, gb) in a.grad_params[k].iter().zip(&b.grad_params[k]) {
            assert!((ga - gb).abs() < 1e-5 * scale, "block {k}: {ga} vs {gb}");
        }
        assert!((a.grad_t_end[k] - b.grad_t_end[k]).abs() < 1e-6 * (1.0 + b.grad_t_end[k].abs()));
    }
    assert!(a.n_evals_backward > 0);
}

#[test]
fn the_explicit_solver_refuses_an_implicit_method() {
    let err = cnflow::ode::Solver::<f64>::new(SolverConfig::implicit(StiffMethod::Kvaerno5, 1e-6, 1e-6))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("kvaerno5"), "{err}");
}
