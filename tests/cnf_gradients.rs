//! Gradients of the CNF loss: adjoint and backprop each against central finite
//! differences and against each other — exact trace, Hutchinson with fixed noise,
//! regularizers, one and two blocks, learned end times.

use cnflow::cnf::{loss_and_grad, Block, Cnf, Field, GradMethod, LinearField, LossConfig, Trace, TAPE_BUDGET};
use cnflow::nn::{Activation, LayerKind, Mlp, MlpConfig};
use cnflow::ode::{Method, SolverConfig};
use cnflow::sensitivity::Checkpointing;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const SEED: u64 = 11;

fn batch() -> Vec<f64> {
    vec![0.3, -1.2, 2.0, 0.5, -0.7, -0.1, 1.5, 0.9]
}

fn linear_model(n_blocks: usize) -> Cnf<f64, LinearField<f64>> {
    let blocks = (0..n_blocks)
        .map(|k| {
            let s = 1.0 + 0.3 * k as f64;
            Block {
                field: LinearField::new(&[-0.3 * s, 0.8, -0.5, 0.2 * s], &[0.1, -0.2 * s], &[0.3, 0.1 * s]),
                t_end: 0.5 + 0.2 * k as f64,
                learn_t: true,
            }
        })
        .collect();
    Cnf::new(blocks).unwrap()
}

fn loss<F: Field<f64>>(model: &Cnf<f64, F>, config: &LossConfig) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    loss_and_grad(model, &batch(), config, &mut rng).unwrap().loss
}

/// Central differences of the loss in every param of every block and every end time.
fn finite_difference<F: Field<f64>>(model: &Cnf<f64, F>, config: &LossConfig) -> (Vec<Vec<f64>>, Vec<f64>) {
    let eps = 1e-5;
    let mut g_params = Vec::new();
    let mut g_t = Vec::new();
    for k in 0..model.blocks.len() {
        let mut gk = Vec::new();
        for i in 0..model.blocks[k].field.n_params() {
            let mut plus = model.clone();
            plus.blocks[k].field.params_mut()[i] += eps;
            let mut minus = model.clone();
            minus.blocks[k].field.params_mut()[i] -= eps;
            gk.push((loss(&plus, config) - loss(&minus, config)) / (2.0 * eps));
        }
        g_params.push(gk);
        let mut plus = model.clone();
        plus.blocks[k].t_end += eps;
        let mut minus = model.clone();
        minus.blocks[k].t_end -= eps;
        g_t.push((loss(&plus, config) - loss(&minus, config)) / (2.0 * eps));
    }
    (g_params, g_t)
}

fn max_rel_err(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().map(|v| v.abs()).fold(1e-3, f64::max);
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale
}

fn check<F: Field<f64>>(model: &Cnf<f64, F>, trace: Trace, kinetic: f64, jacobian: f64, tol: f64) {
    // Fixed RK4 steps: the discrete loss is smooth in the params, and backprop is its
    // exact gradient. The adjoint solves the continuous problem at tight tolerance.
    let fixed = SolverConfig::fixed_steps(Method::Rk4, 40);
    let backprop = LossConfig {
        solver: fixed.clone(),
        trace,
        kinetic,
        jacobian,
        grad: GradMethod::Backprop,
        tape_budget: TAPE_BUDGET,
        checkpointing: Checkpointing::All,
    };
    let (fd_p, fd_t) = finite_difference(model, &backprop);
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let bp = loss_and_grad(model, &batch(), &backprop, &mut rng).unwrap();
    for k in 0..model.blocks.len() {
        let e = max_rel_err(&bp.grad_params[k], &fd_p[k]);
        assert!(
            e < 1e-7,
            "backprop vs FD, block {k}: {e:e}\n{:?}\n{:?}",
            bp.grad_params[k],
            fd_p[k]
        );
        let e = (bp.grad_t_end[k] - fd_t[k]).abs() / fd_t[k].abs().max(1e-3);
        assert!(
            e < 1e-7,
            "backprop dL/dT vs FD, block {k}: {} vs {}",
            bp.grad_t_end[k],
            fd_t[k]
        );
    }
    for seminorm in [true, false] {
        let adjoint = LossConfig {
            solver: SolverConfig::adaptive(Method::Dopri5, 1e-11, 1e-11),
            grad: GradMethod::Adjoint { seminorm },
            ..backprop.clone()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(SEED);
        let adj = loss_and_grad(model, &batch(), &adjoint, &mut rng).unwrap();
        assert!((adj.loss - bp.loss).abs() < tol, "loss {} vs {}", adj.loss, bp.loss);
        for k in 0..model.blocks.len() {
            let e = max_rel_err(&adj.grad_params[k], &bp.grad_params[k]);
            assert!(e < tol, "adjoint vs backprop, block {k}, seminorm {seminorm}: {e:e}");
            let e = (adj.grad_t_end[k] - bp.grad_t_end[k]).abs() / bp.grad_t_end[k].abs().max(1e-3);
            assert!(e < tol, "adjoint vs backprop dL/dT, block {k}: {e:e}");
        }
        let e = max_rel_err(&adj.grad_x, &bp.grad_x);
        assert!(e < tol, "dL/dx: {e:e}");
        assert!(adj.n_evals_backward > 0 && adj.n_evals_forward > 0);
    }
}

#[test]
fn linear_field_gradients_exact_trace_one_block() {
    check(&linear_model(1), Trace::Exact, 0.0, 0.0, 1e-6);
}

#[test]
fn linear_field_gradients_hutchinson_with_regularizers_two_blocks() {
    check(&linear_model(2), Trace::Rademacher(2), 0.1, 0.05, 1e-6);
    check(&linear_model(2), Trace::Gaussian(1), 0.0, 0.2, 1e-6);
}

#[test]
fn linear_field_gradients_exact_trace_with_regularizers() {
    check(&linear_model(1), Trace::Exact, 0.3, 0.1, 1e-6);
}

fn mlp_model(n_blocks: usize, activation: Activation, layer: LayerKind) -> Cnf<f64, Mlp<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let blocks = (0..n_blocks)
        .map(|k| {
            let config = MlpConfig::new(2, &[8, 8], layer, activation).unwrap();
            Block {
                field: Mlp::new(config, &mut rng, false),
                t_end: 0.5 + 0.25 * k as f64,
                learn_t: true,
            }
        })
        .collect();
    Cnf::new(blocks).unwrap()
}

#[test]
fn mlp_gradients_exact_trace_one_block() {
    check(
        &mlp_model(1, Activation::Tanh, LayerKind::ConcatSquash),
        Trace::Exact,
        0.0,
        0.0,
        1e-5,
    );
}

#[test]
fn mlp_gradients_hutchinson_two_blocks() {
    check(
        &mlp_model(2, Activation::Tanh, LayerKind::ConcatSquash),
        Trace::Rademacher(1),
        0.0,
        0.0,
        1e-5,
    );
}

#[test]
fn mlp_gradients_with_regularizers() {
    check(
        &mlp_model(1, Activation::Softplus, LayerKind::Concat),
        Trace::Exact,
        0.5,
        0.2,
        1e-5,
    );
    check(
        &mlp_model(1, Activation::Swish, LayerKind::ConcatSquash),
        Trace::Gaussian(2),
        0.3,
        0.3,
        1e-5,
    );
}

#[test]
fn adaptive_backprop_agrees_with_the_adjoint_for_every_embedded_pair() {
    // At tight tolerances the exact gradient of the discrete solution (backprop through
    // adaptive steps) and the continuous adjoint approximate the same gradient.
    let m = mlp_model(2, Activation::Tanh, LayerKind::ConcatSquash);
    for method in [Method::Dopri5, Method::Tsit5, Method::Bosh3] {
        for (trace, kinetic, jacobian) in [(Trace::Exact, 0.0, 0.0), (Trace::Rademacher(1), 0.3, 0.2)] {
            let base = LossConfig {
                solver: SolverConfig::adaptive(method, 1e-10, 1e-10),
                trace,
                kinetic,
                jacobian,
                grad: GradMethod::Backprop,
                tape_budget: TAPE_BUDGET,
                checkpointing: Checkpointing::All,
            };
            let adjoint = LossConfig {
                grad: GradMethod::Adjoint { seminorm: true },
                ..base.clone()
            };
            let bp = loss_and_grad(&m, &batch(), &base, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
            let adj = loss_and_grad(&m, &batch(), &adjoint, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
            for k in 0..2 {
                let e = max_rel_err(&bp.grad_params[k], &adj.grad_params[k]);
                assert!(e < 1e-5, "{method} {trace:?}: block {k} params differ by {e:e}");
                let e = (bp.grad_t_end[k] - adj.grad_t_end[k]).abs() / adj.grad_t_end[k].abs().max(1e-3);
                assert!(e < 1e-5, "{method} {trace:?}: block {k} dL/dT differs by {e:e}");
            }
            assert!(max_rel_err(&bp.grad_x, &adj.grad_x) < 1e-5);
        }
    }
}

#[test]
fn hutchinson_without_probes_is_refused() {
    let config = LossConfig {
        solver: SolverConfig::fixed_steps(Method::Rk4, 4),
        trace: Trace::Rademacher(0),
        kinetic: 0.0,
        jacobian: 0.0,
        grad: GradMethod::Backprop,
        tape_budget: TAPE_BUDGET,
        checkpointing: Checkpointing::All,
    };
    let err = loss_and_grad(&linear_model(1), &batch(), &config, &mut ChaCha8Rng::seed_from_u64(0)).unwrap_err();
    assert!(err.to_string().contains("at least one probe"), "{err}");
}

#[test]
fn taped_and_recomputed_backprop_agree_for_every_tableau() {
    // The tape keeps the forward pass of every stage of an accepted step (the driver's
    // step events say which evaluations those were); with no tape budget each stage's
    // forward pass is recomputed for its VJP. Both are the gradient of one discrete solution.
    let m = mlp_model(2, Activation::Tanh, LayerKind::ConcatSquash);
    let methods = [
        (Method::Euler, false),
        (Method::Midpoint, false),
        (Method::Heun, false),
        (Method::Rk4, false),
        (Method::Bosh3, false),
        (Method::Dopri5, false),
        (Method::Tsit5, false),
        (Method::Bosh3, true),
        (Method::Dopri5, true),
        (Method::Tsit5, true),
    ];
    for (method, adaptive) in methods {
        for (trace, kinetic, jacobian) in [(Trace::Exact, 0.0, 0.0), (Trace::Rademacher(2), 0.3, 0.2)] {
            let solver = if adaptive {
                // Loose enough that some steps are rejected.
                SolverConfig::adaptive(method, 1e-5, 1e-5)
            } else {
                SolverConfig::fixed_steps(method, 5)
            };
            let taped = LossConfig {
                solver,
                trace,
                kinetic,
                jacobian,
                grad: GradMethod::Backprop,
                tape_budget: TAPE_BUDGET,
                checkpointing: Checkpointing::All,
            };
            let recomputed = LossConfig {
                tape_budget: 0,
                checkpointing: Checkpointing::All,
                ..taped.clone()
            };
            let a = loss_and_grad(&m, &batch(), &taped, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
            let b = loss_and_grad(&m, &batch(), &recomputed, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
            assert_eq!(a.loss, b.loss, "{method}: the forward solves differ");
            for k in 0..2 {
                let e = max_rel_err(&a.grad_params[k], &b.grad_params[k]);
                assert!(e < 1e-12, "{method} {trace:?}: block {k} params differ by {e:e}");
                let e = (a.grad_t_end[k] - b.grad_t_end[k]).abs();
                assert!(e < 1e-12, "{method} {trace:?}: block {k} dL/dT differs by {e:e}");
            }
            assert!(max_rel_err(&a.grad_x, &b.grad_x) < 1e-12, "{method}: dL/dx differs");
            // The tape saves one forward pass per reversed stage.
            assert!(
                a.n_evals_backward < b.n_evals_backward,
                "{method}: taped {} vs recomputed {} backward evaluations",
                a.n_evals_backward,
                b.n_evals_backward
            );
        }
    }
    // The taped gradient is also the finite-difference gradient for an FSAL method.
    let fsal = LossConfig {
        grad: GradMethod::Backprop,
        ..LossConfig::new(SolverConfig::fixed_steps(Method::Dopri5, 6))
    };
    let (fd_p, fd_t) = finite_difference(&m, &fsal);
    let bp = loss_and_grad(&m, &batch(), &fsal, &mut ChaCha8Rng::seed_from_u64(SEED)).unwrap();
    for k in 0..2 {
        let e = max_rel_err(&bp.grad_params[k], &fd_p[k]);
        assert!(e < 1e-6, "dopri5 taped backprop vs FD, block {k}: {e:e}");
        assert!((bp.grad_t_end[k] - fd_t[k]).abs() / fd_t[k].abs().max(1e-3) < 1e-6);
    }
}

#[test]
fn reused_scratch_gives_the_same_gradient_as_a_fresh_one() {
    use cnflow::cnf::{loss_and_grad_in, GradScratch};
    let two = mlp_model(2, Activation::Tanh, LayerKind::ConcatSquash);
    let other = mlp_model(1, Activation::Tanh, LayerKind::Concat);
    let config = LossConfig {
        grad: GradMethod::Backprop,
        kinetic: 0.1,
        jacobian: 0.1,
        ..LossConfig::new(SolverConfig::adaptive(Method::Dopri5, 1e-6, 1e-6))
    };
    let mut scratch = GradScratch::new();
    let long: Vec<f64> = batch().iter().chain(&batch()).map(|v| v * 0.9).collect();
    // Same shape twice, another batch size, another model, then the first again: every
    // call equals a fresh one.
    for (m, x) in [
        (&two, batch()),
        (&two, batch()),
        (&two, long),
        (&other, batch()),
        (&two, batch()),
    ] {
        let fresh = loss_and_grad(m, &x, &config, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
        let reused = loss_and_grad_in(m, &x, &config, &mut ChaCha8Rng::seed_from_u64(5), &mut scratch).unwrap();
        assert_eq!(fresh.loss, reused.loss);
        assert_eq!(fresh.grad_params, reused.grad_params);
        assert_eq!(fresh.grad_t_end, reused.grad_t_end);
        assert_eq!(fresh.grad_x, reused.grad_x);
    }
}

#[test]
fn every_checkpoint_policy_gives_the_taped_gradient_bit_for_bit() {
    // An MLP field, two blocks, Hutchinson with regularizers, adaptive steps with
    // rejections: the tape, the step starts and binomial checkpoints at several budgets
    // reverse the same discrete solution.
    let m = mlp_model(2, Activation::Tanh, LayerKind::ConcatSquash);
    for method in [Method::Dopri5, Method::Bosh3] {
        let taped = LossConfig {
            solver: SolverConfig::adaptive(method, 1e-6, 1e-6),
            trace: Trace::Rademacher(1),
            kinetic: 0.2,
            jacobian: 0.1,
            grad: GradMethod::Backprop,
            tape_budget: TAPE_BUDGET,
            checkpointing: Checkpointing::All,
        };
        let a = loss_and_grad(&m, &batch(), &taped, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        for policy in [
            Checkpointing::StepStarts,
            Checkpointing::Revolve { budget: 1 },
            Checkpointing::Revolve { budget: 3 },
        ] {
            let config = LossConfig {
                checkpointing: policy,
                ..taped.clone()
            };
            let b = loss_and_grad(&m, &batch(), &config, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
            assert_eq!(a.loss, b.loss, "{method} {policy:?}");
            assert_eq!(a.grad_params, b.grad_params, "{method} {policy:?}");
            assert_eq!(a.grad_t_end, b.grad_t_end, "{method} {policy:?}");
            assert_eq!(a.grad_x, b.grad_x, "{method} {policy:?}");
            assert!(
                b.n_evals_backward > a.n_evals_backward,
                "{method} {policy:?} recomputes"
            );
        }
    }
}
