//! The training loop: problem (a model and a data source), optimizer state, observers.
//!
//! Each iteration draws a batch, computes the loss and its gradient
//! ([`loss_and_grad`]), and takes an optimizer step ([`Optimizer`]) on the flat vector
//! `(θ_1, …, θ_K, √T_k for learned T_k)` — FFJORD's parametrisation of a learned end
//! time. Every `eval_every` iterations the model is scored on a fixed test set with the
//! (tighter) evaluation solver and the best one is kept. Observers see every
//! iteration and evaluation and may stop the run; a non-finite loss or a solver failure
//! stops it too, with the last good model kept and the reason said.
//!
//! Randomness is per iteration — the RNG of iteration `i` is the seed's stream `i` — so
//! a run resumed from a checkpoint continues exactly as the uninterrupted run would.

use std::ops::ControlFlow;
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::cnf::{
    fm_loss_and_grad_in, fm_loss_and_grad_pairs, fm_pairs_many, loss_and_grad_par_in, Cnf, CnfError, Coupling, Field,
    FlowMatching, FmPairs, FmScratch, GradScratch, LossConfig, LossGrad, Trace,
};
use crate::ode::SolverConfig;
use crate::optim::{LrSchedule, Optimizer, OptimizerConfig, OptimizerState};

mod problem;

use crate::Real;
pub use problem::{minimise, take_step, Outcome, Problem, StepBuffers, StepFailure, StepInfo};

/// Settings of a training run.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Iterations to run (in total, counting those of a resumed run).
    pub n_iters: usize,
    /// Batch size.
    pub batch: usize,
    /// Optimizer settings.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule over the `n_iters` iterations (a factor on the state's
    /// optimizer's learning rate).
    pub lr_schedule: LrSchedule,
    /// Loss, training solver, trace estimator, regularizers and gradient method.
    pub loss: LossConfig,
    /// Solver for test-set evaluation (tighter than training).
    pub eval_solver: SolverConfig,
    /// Trace estimator for evaluation.
    pub eval_trace: Trace,
    /// Evaluate every this many iterations (and at the end); 0 = only at the end.
    pub eval_every: usize,
    /// Seed of every random draw of the run.
    pub seed: u64,
    /// Split every batch into this many parts solved in parallel (1 = one solve; the
    /// result depends on it, so keep it fixed across a resumed run).
    pub n_parts: usize,
    /// What the iterations minimise: the likelihood, or flow matching (optionally
    /// followed by likelihood from iteration `mle_from` on).
    pub objective: Objective,
    /// Also score the test set with the training solver (`loss.solver`) at each
    /// evaluation: a model that exploits a loose training tolerance scores better
    /// there than at the accurate evaluation tolerance.
    pub eval_at_train_tolerance: bool,
}

impl TrainConfig {
    /// `n_iters` iterations of batch `batch` with `optimizer` and `loss`; evaluation with
    /// Dopri5 at rtol = atol = 1e-6 and the exact trace at the end only; seed 0; one
    /// solve per batch. Set the public fields to change the rest.
    pub fn new(n_iters: usize, batch: usize, optimizer: impl Into<OptimizerConfig>, loss: LossConfig) -> Self {
        TrainConfig {
            n_iters,
            batch,
            optimizer: optimizer.into(),
            lr_schedule: LrSchedule::Constant,
            loss,
            eval_solver: SolverConfig::adaptive(crate::ode::Method::Dopri5, 1e-6, 1e-6),
            eval_trace: Trace::Exact,
            eval_every: 0,
            seed: 0,
            n_parts: 1,
            eval_at_train_tolerance: false,
            objective: Objective::Mle,
        }
    }
}

/// What a CNF's training iterations minimise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Objective {
    /// The negative log-likelihood (with the loss's regularizers).
    Mle,
    /// Conditional flow matching ([`crate::cnf::fm_loss_and_grad`]); from iteration
    /// `mle_from` on (if any), the likelihood instead: flow-matching pretraining,
    /// likelihood fine-tuning.
    FlowMatching {
        /// The coupling and time groups.
        config: FlowMatching,
        /// The first iteration that maximises the likelihood.
        mle_from: Option<usize>,
    },
}

impl Objective {
    /// Whether iteration `iter` is a flow-matching one.
    pub fn is_flow_matching(&self, iter: usize) -> Option<&FlowMatching> {
        match self {
            Objective::FlowMatching { config, mle_from } if mle_from.is_none_or(|m| iter < m) => Some(config),
            _ => None,
        }
    }

    /// Where iteration `iter` (1-based) of `n_iters` stands in its phase's learning-rate
    /// schedule, as `(iteration within the phase, the phase's length)`: a
    /// flow-matching run followed by the likelihood restarts the schedule at the first
    /// likelihood iteration, so fine-tuning starts at the full rate instead of at the
    /// tail of a decay laid out for the whole run.
    pub fn schedule_phase(&self, iter: usize, n_iters: usize) -> (usize, usize) {
        match *self {
            Objective::FlowMatching { mle_from: Some(m), .. } if m > 1 && m <= n_iters => match iter < m {
                true => (iter, m - 1),
                false => (iter - m + 1, n_iters - m + 1),
            },
            _ => (iter, n_iters),
        }
    }
}

/// What one iteration did.
#[derive(Clone, Debug, PartialEq)]
pub struct IterMetrics {
    /// 1-based iteration number.
    pub iter: usize,
    /// Training loss (NLL plus weighted regularizers).
    pub loss: f64,
    /// Training NLL, nats.
    pub nll: f64,
    /// Mean kinetic-energy integral.
    pub kinetic: f64,
    /// Mean Jacobian integral.
    pub jacobian: f64,
    /// Function evaluations of the forward solves.
    pub n_evals_forward: usize,
    /// Function evaluations of the backward pass.
    pub n_evals_backward: usize,
    /// Wall time of the forward solves, seconds.
    pub seconds_forward: f64,
    /// Wall time of the backward pass, seconds.
    pub seconds_backward: f64,
    /// Wall time of the iteration, seconds.
    pub seconds: f64,
    /// Wall time of the run so far (across resumes), seconds.
    pub elapsed: f64,
    /// End times of the blocks after the step.
    pub t_end: Vec<f64>,
}

/// A test-set evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalMetrics {
    /// Iteration after which it ran.
    pub iter: usize,
    /// Test NLL, nats.
    pub test_nll: f64,
    /// `test NLL − entropy`, the KL divergence from data to model, when the entropy is known.
    pub kl_gap: Option<f64>,
    /// Test NLL with the training solver, when asked for
    /// ([`TrainConfig::eval_at_train_tolerance`]).
    pub test_nll_train_solver: Option<f64>,
    /// Function evaluations.
    pub n_evals: usize,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Whether this is the best test NLL so far.
    pub is_best: bool,
}

/// Why a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum StopReason {
    /// All iterations done.
    Finished,
    /// An observer asked to stop (e.g. on Ctrl-C).
    Stopped,
    /// The loss or its gradient was NaN or infinite at this iteration.
    NonFinite {
        /// The iteration.
        iter: usize,
    },
    /// A solve failed at this iteration.
    SolverFailed {
        /// The iteration.
        iter: usize,
        /// Why.
        error: CnfError,
    },
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Finished => write!(f, "finished"),
            StopReason::Stopped => write!(f, "stopped on request"),
            StopReason::NonFinite { iter } => write!(
                f,
                "the loss or its gradient became NaN or infinite at iteration {iter}; the last good model is kept \
                 (try a lower learning rate or tighter solver tolerances)"
            ),
            StopReason::SolverFailed { iter, error } => {
                write!(
                    f,
                    "the ODE solver failed at iteration {iter}: {error}; the last good model is kept"
                )
            }
        }
    }
}

/// Hooks into the loop: logging, progress, checkpoints, early stopping.
pub trait Observer<T: Real, F: Field<T>> {
    /// After every iteration that succeeded.
    fn iteration(&mut self, _metrics: &IterMetrics, _state: &TrainState<T, F>) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    /// After every test-set evaluation.
    fn evaluation(&mut self, _metrics: &EvalMetrics, _state: &TrainState<T, F>) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// Everything a run carries from one iteration to the next (what a checkpoint holds).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainState<T, F> {
    /// The model being trained.
    pub model: Cnf<T, F>,
    /// Optimizer state.
    pub optimizer: OptimizerState,
    /// Iterations done.
    pub iter: usize,
    /// Wall time so far, seconds.
    pub elapsed: f64,
    /// The best model by test NLL, with its NLL and iteration.
    pub best: Option<(Cnf<T, F>, f64, usize)>,
}

impl<T: Real, F: Field<T>> TrainState<T, F> {
    /// A fresh run of `model`.
    pub fn new(model: Cnf<T, F>, optimizer: impl Into<OptimizerConfig>) -> Self {
        let n = flat_len(&model);
        TrainState {
            model,
            optimizer: optimizer.into().build(n),
            iter: 0,
            elapsed: 0.0,
            best: None,
        }
    }
}

/// One CNF training iteration as a [`Problem`]: the flat parameters are
/// `(θ_1, …, θ_K, √T_k for learned T_k)`, the loss that of a batch drawn from the
/// iteration's RNG (of any type `R`; [`train`] uses [`iteration_rng`]'s ChaCha8
/// streams, [`minimise`] whatever its caller's `rng_of` returns). Batches are in the
/// user's units, in any float type: the model's affine block standardises them.
pub struct CnfProblem<'a, T: Real, F: Field<T>, D, R = ChaCha8Rng> {
    /// The model.
    pub model: &'a mut Cnf<T, F>,
    /// Loss, solver, trace, regularizers, gradient method.
    pub loss: &'a LossConfig,
    /// Batch size.
    pub batch: usize,
    /// Parts the batch is split into.
    pub n_parts: usize,
    /// Draws a batch (flat `n × d`).
    pub sample_batch: &'a mut D,
    /// Backprop's tapes, reused across iterations.
    pub scratch: &'a mut Vec<GradScratch<T, F>>,
    /// Flow matching's buffers, reused across iterations.
    pub fm_scratch: &'a mut FmScratch<T, F>,
    /// Likelihood or flow matching, by iteration.
    pub objective: Objective,
    /// Whether the step being taken holds the end times (a flow-matching step).
    pub hold_t: bool,
    /// With exact optimal-transport coupling, how to pair the next iterations' batches
    /// beside this one's (`None`: one batch at a time; the same result either way).
    pub lookahead: Option<Lookahead<'a, T, R>>,
    /// The RNG type.
    pub rng: std::marker::PhantomData<fn(&mut R)>,
}

/// What a [`CnfProblem`] needs to draw and pair the next iterations' flow-matching
/// batches beside this one's ([`fm_pairs_many`]: their exact assignments at once, on all
/// threads), and where it keeps those batches until their iterations come.
pub struct Lookahead<'a, T, R> {
    /// Iteration `i`'s RNG, as the loop makes it.
    pub rng_of: &'a dyn Fn(usize) -> R,
    /// The run's last iteration (nothing is drawn past it).
    pub n_iters: usize,
    /// Batches paired at once, this iteration's included ([`LOOKAHEAD`] in [`train`]).
    pub depth: usize,
    /// The batches drawn ahead, in iteration order, kept from one iteration to the next.
    pub ahead: &'a mut std::collections::VecDeque<FmAhead<T, R>>,
}

/// Batches [`train`] pairs at once with exact optimal-transport coupling: each thread
/// solves one assignment at a time and takes the next as it finishes, so with more
/// batches than threads a slow assignment (or a thread that the machine slows) leaves
/// the other thread less time idle. Eight measured faster than two, and steadier, on a
/// 2-vCPU machine (BENCHMARKS.md); the batches kept are a few KiB each.
pub const LOOKAHEAD: usize = 8;

/// A flow-matching batch drawn and paired ahead of its iteration (by up to the
/// lookahead's depth less one), with its iteration's RNG as the draws left it (its
/// times are drawn from it when the iteration comes).
pub struct FmAhead<T, R> {
    iter: usize,
    pairs: FmPairs<T>,
    rng: R,
}

impl<T, F, X, D, R> Problem for CnfProblem<'_, T, F, D, R>
where
    T: Real,
    F: Field<T>,
    X: Real,
    R: rand::Rng,
    D: FnMut(usize, &mut R) -> Vec<X>,
{
    type T = T;
    type Report = LossGrad<T>;
    type Error = CnfError;
    type Rng = R;

    fn params(&self, out: &mut Vec<T>) {
        out.clear();
        for block in &self.model.blocks {
            out.extend_from_slice(block.field.params());
            if block.learn_t {
                out.push(block.t_end.sqrt());
            }
        }
    }

    fn set_params(&mut self, flat: &[T]) {
        let mut at = 0;
        for block in self.model.blocks.iter_mut() {
            let n = block.field.n_params();
            block.field.params_mut().copy_from_slice(&flat[at..at + n]);
            at += n;
            if block.learn_t {
                // T = s², kept away from zero so that a block never collapses. Flow
                // matching holds T (it has no gradient there, and an optimizer's
                // normalised step on weight decay alone would shrink it at full speed).
                if !self.hold_t {
                    block.t_end = (flat[at] * flat[at]).max(T::c(1e-4));
                }
                at += 1;
            }
        }
    }

    fn params_in_place(&mut self) -> Option<&mut [T]> {
        match &mut self.model.blocks[..] {
            [block] if !block.learn_t => Some(block.field.params_mut()),
            _ => None,
        }
    }

    fn loss_and_grad(&mut self, iter: usize, rng: &mut R, grad: &mut Vec<T>) -> Result<(f64, LossGrad<T>), CnfError> {
        self.hold_t = self.objective.is_flow_matching(iter).is_some();
        let lg = match self.objective.is_flow_matching(iter) {
            Some(&fm) => self.flow_matching(iter, &fm, rng)?,
            None => {
                let x = (self.sample_batch)(self.batch, rng);
                loss_and_grad_par_in(self.model, &x, self.loss, rng, self.n_parts, self.scratch)?
            }
        };
        // dL/d√T = 2 √T dL/dT.
        grad.clear();
        for (k, block) in self.model.blocks.iter().enumerate() {
            grad.extend_from_slice(&lg.grad_params[k]);
            if block.learn_t {
                grad.push(T::c(2.0) * block.t_end.sqrt() * lg.grad_t_end[k]);
            }
        }
        Ok((lg.loss, lg))
    }
}

impl<T, F, X, D, R> CnfProblem<'_, T, F, D, R>
where
    T: Real,
    F: Field<T>,
    X: Real,
    R: rand::Rng,
    D: FnMut(usize, &mut R) -> Vec<X>,
{
    /// A flow-matching iteration: from the batch drawn ahead for it if there is one;
    /// else with exact optimal-transport coupling and a lookahead, this batch and the
    /// next iterations' (up to the lookahead's depth, within the run and its
    /// flow-matching phase) paired at once; else this batch alone.
    fn flow_matching(&mut self, iter: usize, fm: &FlowMatching, rng: &mut R) -> Result<LossGrad<T>, CnfError> {
        let objective = self.objective;
        let Some(la) = self.lookahead.as_mut().filter(|_| fm.coupling == Coupling::ExactOt) else {
            let x = (self.sample_batch)(self.batch, rng);
            return fm_loss_and_grad_in(self.model, &x, fm, rng, self.fm_scratch);
        };
        if la.ahead.front().is_some_and(|a| a.iter == iter) {
            let mut a = la.ahead.pop_front().expect("just looked");
            return fm_loss_and_grad_pairs(self.model, &a.pairs, fm, &mut a.rng, self.fm_scratch);
        }
        // Batches kept for other iterations (a run resumed elsewhere) are not this run's.
        la.ahead.clear();
        let x = (self.sample_batch)(self.batch, rng);
        let last = (iter..iter + la.depth.max(1))
            .take_while(|&j| j <= la.n_iters && objective.is_flow_matching(j) == Some(fm))
            .last()
            .unwrap_or(iter);
        if last == iter {
            return fm_loss_and_grad_in(self.model, &x, fm, rng, self.fm_scratch);
        }
        let mut later: Vec<(usize, Vec<X>, R)> = (iter + 1..=last)
            .map(|j| {
                let mut rng_j = (la.rng_of)(j);
                let x_j = (self.sample_batch)(self.batch, &mut rng_j);
                (j, x_j, rng_j)
            })
            .collect();
        let mut batches: Vec<(&[X], &mut R)> = vec![(&x, &mut *rng)];
        batches.extend(later.iter_mut().map(|(_, x_j, rng_j)| (x_j.as_slice(), rng_j)));
        let mut pairs = fm_pairs_many(self.model, batches, fm)?.into_iter();
        let now = pairs.next().expect("this iteration's batch");
        for ((j, _, rng_j), pairs_j) in later.into_iter().zip(pairs) {
            la.ahead.push_back(FmAhead {
                iter: j,
                pairs: pairs_j,
                rng: rng_j,
            });
        }
        fm_loss_and_grad_pairs(self.model, &now, fm, rng, self.fm_scratch)
    }
}

fn flat_len<T: Real, F: Field<T>>(model: &Cnf<T, F>) -> usize {
    model
        .blocks
        .iter()
        .map(|b| b.field.n_params() + b.learn_t as usize)
        .sum()
}

/// The RNG of iteration `iter ≥ 1` of a run seeded `seed`: stream `iter` of the seed.
///
/// Streams of one seed: 0 initialises the weights (`ChaCha8Rng::seed_from_u64(seed)`),
/// `1..` are the iterations, `u64::MAX` draws the test set ([`test_set_rng`]) and
/// `u64::MAX − 1` the probes of test evaluations.
pub fn iteration_rng(seed: u64, iter: usize) -> ChaCha8Rng {
    stream(seed, (iter as u64).clamp(1, u64::MAX - 2))
}

/// The RNG that draws a run's test set (a stream no iteration reaches).
pub fn test_set_rng(seed: u64) -> ChaCha8Rng {
    stream(seed, u64::MAX)
}

fn stream(seed: u64, n: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(n);
    rng
}

/// Points per chunk of a test-set evaluation.
const TEST_CHUNK: usize = 250;

/// Test NLL of `model` on `test` (flat `n × d`), in nats, evaluated in chunks of 250
/// points on all cores (each chunk with its own adaptive steps); the evaluations
/// returned are summed over the chunks.
pub fn test_nll<T: Real, F: Field<T>, X: Real>(
    model: &Cnf<T, F>,
    test: &[X],
    solver: &SolverConfig,
    trace: Trace,
    seed: u64,
) -> Result<(f64, usize), CnfError> {
    // Chunks of the test set on all cores, each with its own steps (and probes).
    let lp = model.log_prob_par(test, solver, trace, TEST_CHUNK, seed ^ (u64::MAX - 1))?;
    let n = lp.log_p.len().max(1) as f64;
    Ok((-lp.log_p.iter().map(|v| v.f64()).sum::<f64>() / n, lp.n_evals))
}

/// Runs the loop from `state` up to `config.n_iters` iterations. `sample_batch(n, rng)`
/// returns `n` points (flat `n × d`, the user's units, any float type); `entropy`
/// (nats) turns test NLL into a KL gap. Iteration `i` draws from
/// [`iteration_rng`]`(config.seed, i)`, so a run resumes exactly; drive a
/// [`CnfProblem`] with [`minimise`] for another RNG.
pub fn train<T, F, X, D>(
    state: &mut TrainState<T, F>,
    config: &TrainConfig,
    mut sample_batch: D,
    test: &[X],
    entropy: Option<f64>,
    observers: &mut [&mut dyn Observer<T, F>],
) -> StopReason
where
    T: Real,
    F: Field<T>,
    X: Real,
    D: FnMut(usize, &mut ChaCha8Rng) -> Vec<X>,
{
    // Backprop's tape of field workspaces, reused from one iteration to the next.
    let mut scratch: Vec<GradScratch<T, F>> = Vec::new();
    let mut fm_scratch = FmScratch::default();
    let rng_of = |i: usize| iteration_rng(config.seed, i);
    let mut ahead = std::collections::VecDeque::new();
    let mut buf = StepBuffers::default();
    while state.iter < config.n_iters {
        let iter = state.iter + 1;
        let started = Instant::now();
        let mut rng = iteration_rng(config.seed, iter);
        let (phase_iter, phase_len) = config.objective.schedule_phase(iter, config.n_iters);
        let lr = state.optimizer.lr() * config.lr_schedule.factor(phase_iter, phase_len);
        let mut problem = CnfProblem {
            model: &mut state.model,
            loss: &config.loss,
            batch: config.batch,
            n_parts: config.n_parts,
            sample_batch: &mut sample_batch,
            scratch: &mut scratch,
            fm_scratch: &mut fm_scratch,
            objective: config.objective,
            hold_t: false,
            lookahead: Some(Lookahead {
                rng_of: &rng_of,
                n_iters: config.n_iters,
                depth: LOOKAHEAD,
                ahead: &mut ahead,
            }),
            rng: std::marker::PhantomData,
        };
        let lg = match take_step(&mut problem, &mut state.optimizer, lr, iter, &mut rng, &mut buf) {
            Ok((_, lg)) => lg,
            Err(StepFailure::NonFinite) => return StopReason::NonFinite { iter },
            Err(StepFailure::Failed(error)) => return StopReason::SolverFailed { iter, error },
        };
        state.iter = iter;
        let seconds = started.elapsed().as_secs_f64();
        state.elapsed += seconds;
        let metrics = IterMetrics {
            iter,
            loss: lg.loss,
            nll: lg.nll,
            kinetic: lg.kinetic,
            jacobian: lg.jacobian,
            n_evals_forward: lg.n_evals_forward,
            n_evals_backward: lg.n_evals_backward,
            seconds_forward: lg.seconds_forward,
            seconds_backward: lg.seconds_backward,
            seconds,
            elapsed: state.elapsed,
            t_end: state.model.blocks.iter().map(|b| b.t_end.f64()).collect(),
        };
        // A stop request still lets an evaluation that is due run first.
        let mut stop = false;
        for obs in observers.iter_mut() {
            stop |= obs.iteration(&metrics, state).is_break();
        }
        let eval_now = iter == config.n_iters || (config.eval_every > 0 && iter.is_multiple_of(config.eval_every));
        if eval_now && !test.is_empty() {
            let started = Instant::now();
            let (nll, n_evals) = match test_nll(&state.model, test, &config.eval_solver, config.eval_trace, config.seed)
            {
                Ok(v) => v,
                Err(error) => return StopReason::SolverFailed { iter, error },
            };
            let is_best = nll.is_finite() && state.best.as_ref().is_none_or(|(_, b, _)| nll < *b);
            if is_best {
                state.best = Some((state.model.clone(), nll, iter));
            }
            let test_nll_train_solver = match config.eval_at_train_tolerance {
                true => match test_nll(&state.model, test, &config.loss.solver, config.eval_trace, config.seed) {
                    Ok((v, _)) => Some(v),
                    Err(error) => return StopReason::SolverFailed { iter, error },
                },
                false => None,
            };
            let metrics = EvalMetrics {
                iter,
                test_nll: nll,
                kl_gap: entropy.map(|h| nll - h),
                test_nll_train_solver,
                n_evals,
                seconds: started.elapsed().as_secs_f64(),
                is_best,
            };
            for obs in observers.iter_mut() {
                stop |= obs.evaluation(&metrics, state).is_break();
            }
        }
        if stop {
            return StopReason::Stopped;
        }
    }
    StopReason::Finished
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cnf::{Coupling, FlowMatching};
    use crate::optim::LrSchedule;

    #[test]
    fn likelihood_fine_tuning_restarts_the_schedule_at_its_first_iteration() {
        let then_mle = |m| Objective::FlowMatching {
            config: FlowMatching::new(Coupling::Independent),
            mle_from: Some(m),
        };
        let o = then_mle(801);
        assert_eq!(o.schedule_phase(1, 1000), (1, 800));
        assert_eq!(o.schedule_phase(800, 1000), (800, 800));
        assert_eq!(o.schedule_phase(801, 1000), (1, 200));
        assert_eq!(o.schedule_phase(1000, 1000), (200, 200));
        let cosine = LrSchedule::Cosine { final_frac: 0.05 };
        let factor = |i| {
            let (k, n) = o.schedule_phase(i, 1000);
            cosine.factor(k, n)
        };
        assert!(
            (factor(800) - 0.05).abs() < 1e-12 && factor(801) == 1.0,
            "{} {}",
            factor(800),
            factor(801)
        );
        assert!((factor(1000) - 0.05).abs() < 1e-12);
        // One phase: the schedule spans the run.
        for o in [
            Objective::Mle,
            Objective::FlowMatching {
                config: FlowMatching::new(Coupling::ExactOt),
                mle_from: None,
            },
            then_mle(1),
            then_mle(1001),
        ] {
            assert_eq!(o.schedule_phase(900, 1000), (900, 1000), "{o:?}");
        }
    }
}
