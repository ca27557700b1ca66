//! Flow matching: the loss's gradient against central differences (both couplings),
//! the exact assignment against brute force, W2's identities, and a short fit whose
//! loss falls.

use cnflow::cnf::{fm_loss_and_grad, ot_assignment, wasserstein2, Block, Cnf, Coupling, FlowMatching};
use cnflow::data::Dataset;
use cnflow::nn::{Mlp, MlpConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn model() -> Cnf<f64, Mlp<f64>> {
    let arch = MlpConfig::parse(2, "8-8", "concatsquash", "tanh").unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    Cnf::new(vec![Block {
        field: Mlp::new(arch, &mut rng, false),
        t_end: 0.7,
        learn_t: true,
    }])
    .unwrap()
}

fn batch() -> Vec<f64> {
    let x = Dataset::Moons.sample(24, &mut ChaCha8Rng::seed_from_u64(9));
    x.iter().copied().collect()
}

#[test]
fn the_gradient_matches_central_differences_for_both_couplings() {
    for coupling in [Coupling::Independent, Coupling::ExactOt] {
        let config = FlowMatching { coupling, n_groups: 5 };
        let m = model();
        let x = batch();
        let lg = fm_loss_and_grad(&m, &x, &config, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        let loss = |m: &Cnf<f64, Mlp<f64>>| {
            fm_loss_and_grad(m, &x, &config, &mut ChaCha8Rng::seed_from_u64(1))
                .unwrap()
                .loss
        };
        let eps = 1e-6;
        let n = m.blocks[0].field.n_params();
        let mut worst: f64 = 0.0;
        for i in (0..n).step_by(7) {
            let (mut plus, mut minus) = (m.clone(), m.clone());
            plus.blocks[0].field.params_mut()[i] += eps;
            minus.blocks[0].field.params_mut()[i] -= eps;
            let fd = (loss(&plus) - loss(&minus)) / (2.0 * eps);
            worst = worst.max((lg.grad_params[0][i] - fd).abs() / fd.abs().max(1e-2));
        }
        assert!(worst < 1e-5, "{coupling:?}: worst relative error {worst}");
    }
}

/// Buffers kept across calls, through batches and group counts of different sizes,
/// give exactly the fresh call's loss and gradient.
#[test]
fn reused_buffers_give_the_fresh_result() {
    use cnflow::cnf::{fm_loss_and_grad_in, FmScratch};
    let m = model();
    let mut scratch = FmScratch::default();
    for (n, groups) in [(24, 5), (17, 5), (24, 3), (24, 5)] {
        let x: Vec<f64> = batch()[..2 * n].to_vec();
        let config = FlowMatching {
            coupling: Coupling::Independent,
            n_groups: groups,
        };
        let fresh = fm_loss_and_grad(&m, &x, &config, &mut ChaCha8Rng::seed_from_u64(n as u64)).unwrap();
        let kept =
            fm_loss_and_grad_in(&m, &x, &config, &mut ChaCha8Rng::seed_from_u64(n as u64), &mut scratch).unwrap();
        assert_eq!(fresh.loss, kept.loss, "{n} points, {groups} groups");
        assert_eq!(fresh.grad_params, kept.grad_params, "{n} points, {groups} groups");
    }
}

#[test]
fn the_ot_assignment_is_the_brute_force_optimum() {
    // Every permutation of 6 points.
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let x = Dataset::Rings.sample(6, &mut rng);
    let e = Dataset::EightGaussians.sample(6, &mut rng);
    let (x, e): (Vec<f64>, Vec<f64>) = (x.iter().copied().collect(), e.iter().copied().collect());
    let cost = |p: &[usize]| -> f64 {
        (0..6)
            .map(|i| (x[2 * i] - e[2 * p[i]]).powi(2) + (x[2 * i + 1] - e[2 * p[i] + 1]).powi(2))
            .sum()
    };
    let sigma = ot_assignment(&x, &e, 2);
    let mut best = f64::INFINITY;
    let mut p: Vec<usize> = (0..6).collect();
    // Heap's algorithm.
    fn heap(k: usize, p: &mut Vec<usize>, f: &mut dyn FnMut(&[usize])) {
        if k == 1 {
            f(p);
            return;
        }
        for i in 0..k {
            heap(k - 1, p, f);
            let j = if k.is_multiple_of(2) { i } else { 0 };
            p.swap(j, k - 1);
        }
    }
    heap(6, &mut p, &mut |q| best = best.min(cost(q)));
    assert!(
        (cost(&sigma) - best).abs() < 1e-9 * best.max(1.0),
        "{} vs {best}",
        cost(&sigma)
    );
}

/// On integer costs (exact in f64) the assignment's cost equals Kuhn–Munkres's
/// (pathfinding), and no random permutation beats it.
#[test]
fn the_assignment_matches_kuhn_munkres_and_beats_random_permutations() {
    use cnflow::cnf::linear_assignment;
    use rand::seq::SliceRandom;
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for &n in &[3usize, 40, 100, 256] {
        for range in [5i64, 1_000_000] {
            let w: Vec<i64> = (0..n * n).map(|_| rng.random_range(0..range)).collect();
            let cost: Vec<f64> = w.iter().map(|&c| c as f64).collect();
            let sigma = linear_assignment(&cost, n);
            let got: i64 = sigma.iter().enumerate().map(|(i, &j)| w[i * n + j]).sum();
            let m = pathfinding::matrix::Matrix::from_vec(n, n, w.clone()).unwrap();
            let (want, _) = pathfinding::kuhn_munkres::kuhn_munkres_min(&m);
            assert_eq!(got, want, "n {n}, costs below {range}");
            let mut p: Vec<usize> = (0..n).collect();
            for _ in 0..200 {
                p.shuffle(&mut rng);
                let other: i64 = p.iter().enumerate().map(|(i, &j)| w[i * n + j]).sum();
                assert!(got <= other);
            }
        }
    }
}

#[test]
fn a_short_fit_lowers_the_loss_and_then_the_exact_nll() {
    use cnflow::cnf::LossConfig;
    use cnflow::optim::AdamConfig;
    use cnflow::train::{train, Objective, StopReason, TrainConfig, TrainState};
    let arch = MlpConfig::parse(2, "32-32", "concatsquash", "tanh").unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let model = Cnf::new(vec![Block {
        field: Mlp::<f64>::new(arch, &mut rng, false),
        t_end: 0.5,
        learn_t: true,
    }])
    .unwrap();
    let fm = FlowMatching::new(Coupling::Independent);
    let val: Vec<f64> = Dataset::EightGaussians.sample(2000, &mut rng).iter().copied().collect();
    let val_loss = |m: &Cnf<f64, Mlp<f64>>| {
        fm_loss_and_grad(
            m,
            &val,
            &FlowMatching { n_groups: 64, ..fm },
            &mut ChaCha8Rng::seed_from_u64(5),
        )
        .unwrap()
        .loss
    };
    let before = val_loss(&model);
    let solver = cnflow::ode::SolverConfig::adaptive(cnflow::ode::Method::Dopri5, 1e-6, 1e-6);
    let untrained = cnflow::train::test_nll(&model, &val[..1000], &solver, cnflow::cnf::Trace::Exact, 0)
        .unwrap()
        .0;
    let adam = AdamConfig::new(5e-3, 1e-5);
    let config = TrainConfig {
        objective: Objective::FlowMatching {
            config: fm,
            mle_from: None,
        },
        eval_every: 0,
        ..TrainConfig::new(
            600,
            128,
            adam,
            LossConfig::new(cnflow::ode::SolverConfig::adaptive(
                cnflow::ode::Method::Dopri5,
                1e-5,
                1e-5,
            )),
        )
    };
    let mut state = TrainState::new(model, adam);
    let test = val[..1000].to_vec();
    let reason = train(
        &mut state,
        &config,
        |n, rng| {
            Dataset::EightGaussians
                .sample(n, rng)
                .iter()
                .copied()
                .collect::<Vec<f64>>()
        },
        &test,
        Some(Dataset::EightGaussians.entropy()),
        &mut [],
    );
    assert_eq!(reason, StopReason::Finished);
    // T is held during flow matching, weight decay or not.
    assert_eq!(state.model.blocks[0].t_end, 0.5);
    let after = val_loss(&state.model);
    assert!(after < 0.7 * before, "flow-matching loss {before} → {after}");
    // The exact likelihood of the flow-matching model: its KL gap is well below the
    // untrained model's.
    let nll = state.best.as_ref().map(|(_, nll, _)| *nll).unwrap();
    let h = Dataset::EightGaussians.entropy();
    assert!(
        nll - h < 0.5 * (untrained - h),
        "KL gap {} vs untrained {}",
        nll - h,
        untrained - h
    );
}

#[test]
fn w2_is_a_distance_and_a_translation_moves_it_by_its_length() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let a = Dataset::EightGaussians
        .sample(200, &mut rng)
        .into_raw_vec_and_offset()
        .0;
    let b = Dataset::Moons.sample(200, &mut rng).into_raw_vec_and_offset().0;
    assert!(wasserstein2(&a, &a, 2) < 1e-12);
    let (ab, ba) = (wasserstein2(&a, &b, 2), wasserstein2(&b, &a, 2));
    assert!(ab > 0.5 && (ab - ba).abs() < 1e-9 * ab, "{ab} vs {ba}");
    // For empirical measures W2(P, P + v) = |v| exactly: the identity pairing is optimal.
    let v = [0.3, -1.1];
    let shifted: Vec<f64> = a.iter().enumerate().map(|(k, x)| x + v[k % 2]).collect();
    let norm = (v[0] * v[0] + v[1] * v[1]).sqrt();
    assert!((wasserstein2(&a, &shifted, 2) - norm).abs() < 1e-6);
    // No better than any of many random pairings.
    use rand::seq::SliceRandom;
    let mut perm: Vec<usize> = (0..200).collect();
    for _ in 0..50 {
        perm.shuffle(&mut rng);
        let cost: f64 = (0..200)
            .map(|i| (0..2).map(|c| (a[2 * i + c] - b[2 * perm[i] + c]).powi(2)).sum::<f64>())
            .sum();
        assert!(ab <= (cost / 200.0).sqrt() + 1e-9);
    }
}

/// `train` pairs each OT-CFM batch with the next iteration's (both assignments at once,
/// on two threads) and keeps the second for its iteration. The run must be the same to
/// the bit as the generic loop taking one batch at a time, also over an odd number of
/// iterations (the last is then paired alone) and across a resume.
#[test]
fn ot_cfm_batches_paired_ahead_give_the_run_of_one_batch_at_a_time() {
    use cnflow::cnf::{FmScratch, LossConfig};
    use cnflow::optim::AdamConfig;
    use cnflow::train::{iteration_rng, minimise, train, CnfProblem, Objective, Outcome, TrainConfig, TrainState};
    let arch = MlpConfig::parse(2, "16-16", "concat", "tanh").unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let model = Cnf::new(vec![Block {
        field: Mlp::<f64>::new(arch, &mut rng, false),
        t_end: 0.5,
        learn_t: false,
    }])
    .unwrap();
    let adam = AdamConfig::new(1e-2, 0.0);
    let solver = cnflow::ode::SolverConfig::adaptive(cnflow::ode::Method::Dopri5, 1e-5, 1e-5);
    // More iterations than one lookahead (eight batches), resumed inside the second.
    let n_iters = 2 * cnflow::train::LOOKAHEAD + 3;
    let config = TrainConfig {
        objective: Objective::FlowMatching {
            config: FlowMatching::new(Coupling::ExactOt),
            mle_from: None,
        },
        eval_every: 0,
        seed: 9,
        ..TrainConfig::new(n_iters, 64, adam, LossConfig::new(solver))
    };
    let sample =
        |n: usize, rng: &mut ChaCha8Rng| -> Vec<f64> { Dataset::Checkerboard.sample(n, rng).iter().copied().collect() };
    // In one go, and stopped partway through the second lookahead then resumed (the
    // batches paired ahead for the iterations after the stop are dropped with the first
    // call and drawn again by the second).
    let mut whole = TrainState::new(model.clone(), adam);
    train(&mut whole, &config, sample, &[] as &[f64], None, &mut []);
    let mut resumed = TrainState::new(model.clone(), adam);
    train(
        &mut resumed,
        &TrainConfig {
            n_iters: cnflow::train::LOOKAHEAD + 3,
            ..config.clone()
        },
        sample,
        &[] as &[f64],
        None,
        &mut [],
    );
    train(&mut resumed, &config, sample, &[] as &[f64], None, &mut []);
    // One batch at a time through the generic loop.
    let mut state = TrainState::new(model, adam);
    let (mut scratch, mut fm_scratch, mut sampler) = (Vec::new(), FmScratch::default(), sample);
    let mut problem = CnfProblem {
        model: &mut state.model,
        loss: &config.loss,
        batch: config.batch,
        n_parts: config.n_parts,
        sample_batch: &mut sampler,
        scratch: &mut scratch,
        fm_scratch: &mut fm_scratch,
        objective: config.objective,
        hold_t: false,
        lookahead: None,
        rng: std::marker::PhantomData,
    };
    let outcome = minimise(
        &mut problem,
        &mut state.optimizer,
        config.lr_schedule,
        1,
        n_iters,
        |i| iteration_rng(config.seed, i),
        |_, _| std::ops::ControlFlow::Continue(()),
    );
    assert_eq!(outcome, Outcome::Finished);
    let params = |m: &Cnf<f64, Mlp<f64>>| m.blocks[0].field.params().to_vec();
    assert_eq!(params(&whole.model), params(&state.model));
    assert_eq!(params(&resumed.model), params(&state.model));
    let start: Vec<f64> = {
        let arch = MlpConfig::parse(2, "16-16", "concat", "tanh").unwrap();
        Mlp::<f64>::new(arch, &mut ChaCha8Rng::seed_from_u64(3), false)
            .params()
            .to_vec()
    };
    assert_ne!(params(&state.model), start, "the runs trained");
}
