//! The training loop on a problem with a known optimum: an affine flow fits a
//! correlated Gaussian exactly, so the test NLL must reach the data's entropy.

use std::ops::ControlFlow;

use cnflow::cnf::{Block, Cnf, Field, GradMethod, LinearField, LossConfig, Trace, TAPE_BUDGET};
use cnflow::ode::{Method, SolverConfig};
use cnflow::optim::{AdamConfig, LrSchedule};
use cnflow::sensitivity::Checkpointing;
use cnflow::train::{train, EvalMetrics, IterMetrics, Observer, StopReason, TrainConfig, TrainState};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// x = L u with u ~ N(0, I): entropy = (d/2)(1 + ln 2π) + ln |det L|.
const L: [f64; 4] = [1.2, 0.0, 0.9, 0.4];

fn gaussian_batch(n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    (0..n)
        .flat_map(|_| {
            let u: [f64; 2] = [rng.sample(StandardNormal), rng.sample(StandardNormal)];
            [L[0] * u[0] + L[1] * u[1], L[2] * u[0] + L[3] * u[1]]
        })
        .collect()
}

fn entropy() -> f64 {
    (1.0 + (2.0 * std::f64::consts::PI).ln()) + (L[0] * L[3] - L[1] * L[2]).abs().ln()
}

fn config(n_iters: usize, grad: GradMethod) -> TrainConfig {
    TrainConfig {
        n_iters,
        batch: 256,
        optimizer: AdamConfig::new(0.05, 0.0).into(),
        lr_schedule: LrSchedule::Constant,
        loss: LossConfig {
            solver: SolverConfig::adaptive(Method::Dopri5, 1e-6, 1e-6),
            trace: Trace::Exact,
            kinetic: 0.0,
            jacobian: 0.0,
            grad,
            tape_budget: TAPE_BUDGET,
            checkpointing: Checkpointing::All,
        },
        eval_solver: SolverConfig::adaptive(Method::Dopri5, 1e-8, 1e-8),
        eval_trace: Trace::Exact,
        eval_every: 50,
        seed: 3,
        n_parts: 1,
        eval_at_train_tolerance: false,
        objective: cnflow::train::Objective::Mle,
    }
}

fn fresh_state() -> TrainState<f64, LinearField<f64>> {
    let field = LinearField::new(&[0.0; 4], &[0.0; 2], &[0.0; 2]);
    let model = Cnf::new(vec![Block {
        field,
        t_end: 0.5,
        learn_t: true,
    }])
    .unwrap();
    TrainState::new(model, AdamConfig::new(0.05, 0.0))
}

#[derive(Default)]
struct Record {
    iters: Vec<IterMetrics>,
    evals: Vec<EvalMetrics>,
    stop_at: Option<usize>,
}

impl Observer<f64, LinearField<f64>> for Record {
    fn iteration(&mut self, m: &IterMetrics, _s: &TrainState<f64, LinearField<f64>>) -> ControlFlow<()> {
        self.iters.push(m.clone());
        if Some(m.iter) == self.stop_at {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
    fn evaluation(&mut self, m: &EvalMetrics, _s: &TrainState<f64, LinearField<f64>>) -> ControlFlow<()> {
        self.evals.push(m.clone());
        ControlFlow::Continue(())
    }
}

#[test]
fn affine_flow_reaches_the_entropy_of_a_gaussian() {
    let mut rng = cnflow::train::test_set_rng(3);
    let test = gaussian_batch(4000, &mut rng);
    for grad in [GradMethod::Adjoint { seminorm: true }, GradMethod::Backprop] {
        let mut state = fresh_state();
        let tight = SolverConfig::adaptive(Method::Dopri5, 1e-8, 1e-8);
        let (initial_nll, _) = cnflow::train::test_nll(&state.model, &test, &tight, Trace::Exact, 3).unwrap();
        let mut rec = Record::default();
        let reason = train(
            &mut state,
            &config(300, grad),
            gaussian_batch,
            &test,
            Some(entropy()),
            &mut [&mut rec],
        );
        assert_eq!(reason, StopReason::Finished);
        assert_eq!(rec.iters.len(), 300);
        assert_eq!(rec.evals.len(), 6);
        let last = rec.evals.last().unwrap();
        // Sampling noise of a 4000-point test set is about 0.01 nats.
        assert!(last.kl_gap.unwrap() < 0.03, "{grad:?}: KL gap {:?}", last.kl_gap);
        assert!(
            initial_nll - entropy() > 0.3,
            "the untrained model is already good: {initial_nll}"
        );
        assert!(rec
            .iters
            .iter()
            .all(|m| m.n_evals_forward > 0 && m.n_evals_backward > 0));
        let (_, best_nll, _) = state.best.as_ref().unwrap();
        assert!(rec.evals.iter().all(|e| e.test_nll >= *best_nll));
    }
}

#[test]
fn resumed_run_matches_the_uninterrupted_run() {
    let test: Vec<f64> = Vec::new();
    let cfg = config(20, GradMethod::Adjoint { seminorm: true });
    let mut straight = fresh_state();
    assert_eq!(
        train(&mut straight, &cfg, gaussian_batch, &test, None, &mut []),
        StopReason::Finished
    );
    let mut halves = fresh_state();
    let mut rec = Record {
        stop_at: Some(8),
        ..Record::default()
    };
    assert_eq!(
        train(&mut halves, &cfg, gaussian_batch, &test, None, &mut [&mut rec]),
        StopReason::Stopped
    );
    assert_eq!(halves.iter, 8);
    let mut resumed = halves.clone();
    assert_eq!(
        train(&mut resumed, &cfg, gaussian_batch, &test, None, &mut []),
        StopReason::Finished
    );
    assert_eq!(resumed.model, straight.model);
    assert_eq!(resumed.optimizer, straight.optimizer);
}

#[test]
fn batch_split_across_threads_gives_the_same_gradient_with_fixed_steps() {
    use cnflow::cnf::{loss_and_grad, loss_and_grad_par};
    // Fixed steps: each part runs the same grid, so splitting changes nothing but the
    // order of summation.
    let mut cfg = config(1, GradMethod::Backprop).loss;
    cfg.solver = SolverConfig::fixed_steps(Method::Rk4, 10);
    cfg.kinetic = 0.1;
    let state = fresh_state();
    let mut model = state.model.clone();
    model.blocks[0]
        .field
        .params_mut()
        .iter_mut()
        .enumerate()
        .for_each(|(i, p)| *p = 0.1 * (i as f64).sin());
    let x = gaussian_batch(101, &mut cnflow::train::iteration_rng(1, 1));
    let serial = loss_and_grad(&model, &x, &cfg, &mut cnflow::train::iteration_rng(1, 2)).unwrap();
    for n_parts in [2, 3] {
        let par = loss_and_grad_par(&model, &x, &cfg, &mut cnflow::train::iteration_rng(1, 2), n_parts).unwrap();
        assert!((par.loss - serial.loss).abs() < 1e-12);
        for (a, b) in par.grad_params[0].iter().zip(&serial.grad_params[0]) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        assert!((par.grad_t_end[0] - serial.grad_t_end[0]).abs() < 1e-12);
        for (a, b) in par.grad_x.iter().zip(&serial.grad_x) {
            assert!((a - b).abs() < 1e-12);
        }
    }
}

#[test]
fn a_nan_batch_stops_the_run_and_keeps_the_last_good_model() {
    let test: Vec<f64> = Vec::new();
    let cfg = config(20, GradMethod::Backprop);
    let mut calls = 0;
    let poisoned = |n: usize, rng: &mut ChaCha8Rng| {
        calls += 1;
        let mut x = gaussian_batch(n, rng);
        if calls == 5 {
            x[3] = f64::NAN;
        }
        x
    };
    let mut state = fresh_state();
    let reason = train(&mut state, &cfg, poisoned, &test, None, &mut []);
    assert!(
        matches!(
            reason,
            StopReason::NonFinite { iter: 5 } | StopReason::SolverFailed { iter: 5, .. }
        ),
        "{reason:?}"
    );
    assert_eq!(state.iter, 4);
    assert!(state.model.blocks[0].field.params().iter().all(|p| p.is_finite()));
    assert!(reason.to_string().contains("last good model"));
}

#[test]
fn a_stop_request_still_runs_the_evaluation_that_is_due() {
    let test = gaussian_batch(200, &mut cnflow::train::test_set_rng(3));
    let mut state = fresh_state();
    let mut rec = Record {
        stop_at: Some(50),
        ..Record::default()
    };
    let reason = train(
        &mut state,
        &config(300, GradMethod::Backprop),
        gaussian_batch,
        &test,
        None,
        &mut [&mut rec],
    );
    assert_eq!(reason, StopReason::Stopped);
    assert_eq!(state.iter, 50);
    assert_eq!(rec.evals.iter().map(|e| e.iter).collect::<Vec<_>>(), vec![50]);
    assert_eq!(state.best.as_ref().map(|b| b.2), Some(50));
}
