//! The ODE-Net classifier's gradient (both Linear layers and the field network, through
//! the ODE block) against central finite differences, for backprop through the solver
//! and the continuous adjoint; the tape, the parts and the thread count leave it
//! unchanged.

use cnflow::classifier::{two_spirals, Block, Classifier, ClassifierConfig, ClassifierError, ClassifierScratch};
use cnflow::nn::Workspace;
use cnflow::ode::{Method, SolverConfig};
use cnflow::sensitivity::{Checkpointing, SensitivityMethod};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const BACKPROP: SensitivityMethod = SensitivityMethod::Backprop(Checkpointing::All);

/// 8 points, state width 4, field 4 → 4 tanh → 4.
fn tiny(block: Block, solver: SolverConfig, gradient: SensitivityMethod) -> (Classifier, Vec<f64>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (x, labels) = two_spirals(4, 0.02, &mut rng);
    let mut config = ClassifierConfig::new(4, &[4], block).unwrap();
    config.solver = solver;
    config.gradient = gradient;
    let mut model = Classifier::new(config, &mut rng).unwrap();
    // Larger weights than the initialisation, so the block moves the state a lot.
    let mut p = Vec::new();
    model.params(&mut p);
    p.iter_mut().for_each(|v| *v *= 2.0);
    model.set_params(&p).unwrap();
    (model, x, labels)
}

fn loss(model: &Classifier, x: &[f64], labels: &[usize]) -> f64 {
    let mut g = vec![0.0; model.n_params()];
    model.loss_and_grad(x, labels, &mut g).unwrap().loss
}

/// The largest `|g − g_fd|` over all params, relative to the largest `|g_fd|`, with
/// `g_fd` the central difference of step `eps`; and the gradient itself.
fn worst_relative_error(model: &mut Classifier, x: &[f64], labels: &[usize], eps: f64) -> (f64, Vec<f64>) {
    let mut grad = vec![0.0; model.n_params()];
    model.loss_and_grad(x, labels, &mut grad).unwrap();
    let mut p = Vec::new();
    model.params(&mut p);
    let mut fd = vec![0.0; p.len()];
    for i in 0..p.len() {
        let mut q = p.clone();
        q[i] = p[i] + eps;
        model.set_params(&q).unwrap();
        let up = loss(model, x, labels);
        q[i] = p[i] - eps;
        model.set_params(&q).unwrap();
        let down = loss(model, x, labels);
        fd[i] = (up - down) / (2.0 * eps);
    }
    model.set_params(&p).unwrap();
    let scale = fd.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = grad.iter().zip(&fd).fold(0.0f64, |m, (g, f)| m.max((g - f).abs()));
    (worst / scale, grad)
}

/// Every parameter group (lift, field, read-out) gets a non-zero gradient.
fn assert_all_groups_move(model: &Classifier, grad: &[f64]) {
    let n_lift = 4 * 2 + 4;
    let n_field = model.field().n_params();
    let groups = [
        &grad[..n_lift],
        &grad[n_lift..n_lift + n_field],
        &grad[n_lift + n_field..],
    ];
    assert_eq!(groups[2].len(), 2 * 4 + 2);
    for (name, g) in ["lift", "field", "read-out"].iter().zip(groups) {
        assert!(g.iter().any(|v| v.abs() > 1e-6), "{name} gradient is zero");
    }
}

#[test]
fn backprop_through_fixed_dopri5_steps_matches_central_differences() {
    // Fixed steps: the discrete adjoint is the exact derivative of the discrete solution.
    let solver = SolverConfig::fixed_steps(Method::Dopri5, 5);
    let (mut model, x, labels) = tiny(Block::Ode, solver, BACKPROP);
    let (err, grad) = worst_relative_error(&mut model, &x, &labels, 1e-5);
    assert_all_groups_move(&model, &grad);
    assert!(err < 1e-8, "relative error {err:e}");
}

#[test]
fn backprop_through_adaptive_dopri5_matches_central_differences() {
    let solver = SolverConfig::adaptive(Method::Dopri5, 1e-10, 1e-10);
    let (mut model, x, labels) = tiny(Block::Ode, solver, BACKPROP);
    let (err, grad) = worst_relative_error(&mut model, &x, &labels, 1e-5);
    assert_all_groups_move(&model, &grad);
    assert!(err < 1e-8, "relative error {err:e}");
}

#[test]
fn continuous_adjoint_matches_central_differences_at_tight_tolerance() {
    let solver = SolverConfig::adaptive(Method::Dopri5, 1e-10, 1e-10);
    let (mut model, x, labels) = tiny(Block::Ode, solver, SensitivityMethod::Adjoint { seminorm: false });
    let (err, grad) = worst_relative_error(&mut model, &x, &labels, 1e-5);
    assert_all_groups_move(&model, &grad);
    assert!(err < 1e-8, "relative error {err:e}");
}

#[test]
fn residual_block_gradient_matches_central_differences() {
    let solver = SolverConfig::adaptive(Method::Dopri5, 1e-3, 1e-3);
    let (mut model, x, labels) = tiny(Block::Residual, solver, BACKPROP);
    let (err, grad) = worst_relative_error(&mut model, &x, &labels, 1e-5);
    assert_all_groups_move(&model, &grad);
    assert!(err < 1e-8, "relative error {err:e}");
}

#[test]
fn taped_and_recomputed_forward_passes_give_bit_identical_gradients() {
    let solver = SolverConfig::adaptive(Method::Dopri5, 1e-6, 1e-6);
    let (model, x, labels) = tiny(Block::Ode, solver.clone(), BACKPROP);
    let mut taped = vec![0.0; model.n_params()];
    let mut scratch = ClassifierScratch::default();
    let a = model.loss_and_grad_in(&x, &labels, &mut taped, &mut scratch).unwrap();
    assert!(
        scratch.n_workspaces() > a.n_evals_forward / 2,
        "the forward passes were taped"
    );
    // A second call reuses the tape's workspaces and gives the same again.
    let mut again = vec![0.0; model.n_params()];
    let n_held = scratch.n_workspaces();
    model.loss_and_grad_in(&x, &labels, &mut again, &mut scratch).unwrap();
    assert_eq!(scratch.n_workspaces(), n_held);
    assert_eq!(taped, again);
    // No tape, and a tape that overflows after 5 forward passes: the reverse pass
    // recomputes what is not on it.
    let per = Workspace::<f64>::estimate_bytes(model.field().config(), 8, 0) as usize;
    let mut p = Vec::new();
    model.params(&mut p);
    for n_records in [0, 5] {
        let mut config = model.config().clone();
        config.tape_bytes = n_records * per;
        let mut short = Classifier::new(config, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        short.set_params(&p).unwrap();
        let mut recomputed = vec![0.0; model.n_params()];
        let mut scratch = ClassifierScratch::default();
        let b = short
            .loss_and_grad_in(&x, &labels, &mut recomputed, &mut scratch)
            .unwrap();
        assert_eq!(scratch.n_workspaces(), 1 + n_records);
        assert_eq!(a.loss, b.loss);
        assert_eq!(taped, recomputed, "tape of {n_records} forward passes");
    }
}

#[test]
fn parts_sum_to_the_whole_batch() {
    // With fixed steps every part takes the steps the whole batch takes, so cutting the
    // batch changes only the order of the sums.
    let solver = SolverConfig::fixed_steps(Method::Dopri5, 4);
    let (mut model, x, labels) = tiny(Block::Ode, solver.clone(), BACKPROP);
    let mut whole = vec![0.0; model.n_params()];
    let a = model.loss_and_grad(&x, &labels, &mut whole).unwrap();
    model.set_solve(solver, BACKPROP, 3).unwrap();
    let mut parts = vec![0.0; model.n_params()];
    let b = model.loss_and_grad(&x, &labels, &mut parts).unwrap();
    assert!((a.loss - b.loss).abs() < 1e-14);
    assert_eq!(a.n_correct, b.n_correct);
    assert_eq!(b.n_evals_forward, 3 * a.n_evals_forward);
    for (g, h) in whole.iter().zip(&parts) {
        assert!((g - h).abs() < 1e-14, "{g} vs {h}");
    }
}

#[test]
fn gradient_with_parts_does_not_depend_on_the_thread_count() {
    let solver = SolverConfig::adaptive(Method::Dopri5, 1e-3, 1e-3);
    let (mut model, x, labels) = tiny(Block::Ode, solver.clone(), BACKPROP);
    model.set_solve(solver, BACKPROP, 2).unwrap();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut g = vec![0.0; model.n_params()];
            let eval = model.loss_and_grad(&x, &labels, &mut g).unwrap();
            (eval.loss, g)
        })
    };
    assert_eq!(run(1), run(2));
}

#[test]
fn bad_batches_are_refused_with_their_numbers() {
    let solver = SolverConfig::adaptive(Method::Dopri5, 1e-3, 1e-3);
    let (mut model, x, mut labels) = tiny(Block::Ode, solver.clone(), BACKPROP);
    let mut g = vec![0.0; model.n_params()];
    assert!(matches!(
        model.loss_and_grad(&x[..15], &labels, &mut g),
        Err(ClassifierError::Shape {
            n_values: 15,
            n_labels: 8
        })
    ));
    model.set_solve(solver.clone(), BACKPROP, 9).unwrap();
    assert!(matches!(
        model.loss_and_grad(&x, &labels, &mut g),
        Err(ClassifierError::Parts { n_parts: 9, n_batch: 8 })
    ));
    model.set_solve(solver, BACKPROP, 1).unwrap();
    labels[5] = 2;
    let err = model.loss_and_grad(&x, &labels, &mut g).unwrap_err();
    assert!(matches!(
        err,
        ClassifierError::Label {
            row: 5,
            label: 2,
            n_classes: 2
        }
    ));
    assert!(err.to_string().contains("row 5"));
    assert!(matches!(
        model.set_params(&[0.0; 3]),
        Err(ClassifierError::ParamLength { got: 3, .. })
    ));
}

#[test]
fn spirals_are_interleaved_balanced_and_inside_the_unit_disc_up_to_noise() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (x, labels) = two_spirals(500, 0.0, &mut rng);
    assert_eq!(x.len(), 2000);
    assert!(labels.iter().enumerate().all(|(i, &c)| c == i % 2));
    for (p, &c) in x.chunks_exact(2).zip(&labels) {
        let r = p[0].hypot(p[1]);
        assert!(r <= 1.0 + 1e-12);
        // Without noise the angle is the radius's: θ = 3π r, shifted by π for class 1.
        let theta = 3.0 * std::f64::consts::PI * r + c as f64 * std::f64::consts::PI;
        assert!((p[0] - r * theta.cos()).abs() < 1e-12 && (p[1] - r * theta.sin()).abs() < 1e-12);
    }
}

/// A batch of 600 points: the whole batch's evaluations are cut into two shares of 300
/// rows for the two cores, each of three parts of 200 is evaluated whole. With fixed
/// steps every solve takes the same steps, so only the order of the sums differs; the
/// taped and the recomputed reverse passes agree to the bit.
#[test]
fn a_batch_shared_over_the_cores_gives_the_gradient_of_its_parts() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (x, labels) = two_spirals(300, 0.02, &mut rng);
    let solver = SolverConfig::fixed_steps(Method::Dopri5, 3);
    let mut config = ClassifierConfig::new(6, &[6], Block::Ode).unwrap();
    config.solver = solver.clone();
    config.gradient = BACKPROP;
    let mut model = Classifier::new(config, &mut rng).unwrap();
    let mut whole = vec![0.0; model.n_params()];
    let a = model.loss_and_grad(&x, &labels, &mut whole).unwrap();
    let mut p = Vec::new();
    model.params(&mut p);
    let mut no_tape = model.config().clone();
    no_tape.tape_bytes = 0;
    let mut untaped = Classifier::new(no_tape, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    untaped.set_params(&p).unwrap();
    let mut recomputed = vec![0.0; model.n_params()];
    untaped.loss_and_grad(&x, &labels, &mut recomputed).unwrap();
    assert_eq!(whole, recomputed);
    model.set_solve(solver, BACKPROP, 3).unwrap();
    let mut parts = vec![0.0; model.n_params()];
    let b = model.loss_and_grad(&x, &labels, &mut parts).unwrap();
    assert!((a.loss - b.loss).abs() < 1e-13);
    let scale = whole.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(scale > 0.0);
    for (g, h) in whole.iter().zip(&parts) {
        assert!((g - h).abs() < 1e-12 * scale, "{g} vs {h}");
    }
}
