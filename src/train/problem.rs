//! The generic loop: a [`Problem`] (flat parameters → loss and gradient), an
//! [`Optimizer`], a learning-rate schedule and observers. Training a CNF is one client
//! ([`train`](super::train)); fitting a mechanistic model's parameters is another.

use std::ops::ControlFlow;
use std::time::Instant;

use rand::Rng;

use crate::optim::{LrSchedule, Optimizer};
use crate::Real;

/// What the generic loop minimises.
pub trait Problem {
    /// The parameters' number type.
    type T: Real;
    /// What an evaluation reports besides the loss (its parts, the work done, …).
    type Report;
    /// Why an evaluation failed (a solver failure, say).
    type Error: std::fmt::Display;
    /// The random number generator an iteration draws from (batches, noise).
    type Rng: Rng;

    /// The current parameters, flat, into `out` (cleared first).
    fn params(&self, out: &mut Vec<Self::T>);
    /// Sets the parameters from a flat vector (after an optimizer step).
    fn set_params(&mut self, flat: &[Self::T]);
    /// The parameters as the one slice they are stored in, when they are (the flat
    /// vector of [`Problem::params`], in its order), so that a step updates them where
    /// they are instead of through copies; `None` (the default) takes the copies.
    fn params_in_place(&mut self) -> Option<&mut [Self::T]> {
        None
    }
    /// The loss at the current parameters and its gradient (into `grad`, cleared
    /// first), for iteration `iter` whose randomness (batch, noise) comes from `rng`.
    fn loss_and_grad(
        &mut self,
        iter: usize,
        rng: &mut Self::Rng,
        grad: &mut Vec<Self::T>,
    ) -> Result<(f64, Self::Report), Self::Error>;
}

/// Why a step was not taken.
#[derive(Clone, Debug, PartialEq)]
pub enum StepFailure<E> {
    /// The loss or a gradient component was NaN or infinite.
    NonFinite,
    /// The problem could not be evaluated.
    Failed(E),
}

/// Buffers one run of steps reuses.
#[derive(Clone, Debug, Default)]
pub struct StepBuffers<T> {
    flat: Vec<T>,
    grad: Vec<T>,
}

/// One iteration: the loss and gradient at the current parameters, then an optimizer
/// step at learning rate `lr`. The parameters are left unchanged when the evaluation
/// fails or is not finite.
pub fn take_step<P: Problem, O: Optimizer>(
    problem: &mut P,
    optimizer: &mut O,
    lr: f64,
    iter: usize,
    rng: &mut P::Rng,
    buf: &mut StepBuffers<P::T>,
) -> Result<(f64, P::Report), StepFailure<P::Error>> {
    let (loss, report) = problem
        .loss_and_grad(iter, rng, &mut buf.grad)
        .map_err(StepFailure::Failed)?;
    if !loss.is_finite() || !all_finite(&buf.grad) {
        return Err(StepFailure::NonFinite);
    }
    match problem.params_in_place() {
        Some(params) => optimizer.step_with_lr(params, &buf.grad, lr),
        None => {
            problem.params(&mut buf.flat);
            optimizer.step_with_lr(&mut buf.flat, &buf.grad, lr);
            problem.set_params(&buf.flat);
        }
    }
    Ok((loss, report))
}

/// Whether every value is finite, as one pass without an early exit (so that it runs
/// on vectors: a few thousand gradient components are checked every iteration).
fn all_finite<T: Real>(values: &[T]) -> bool {
    values.iter().fold(true, |ok, &v| ok & num_traits::Float::is_finite(v))
}

/// What the loop tells its observers after each step.
pub struct StepInfo<'a, R> {
    /// 1-based iteration.
    pub iter: usize,
    /// The loss before the step.
    pub loss: f64,
    /// The problem's report.
    pub report: &'a R,
    /// Wall time of the step, seconds.
    pub seconds: f64,
}

/// How [`minimise`] ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome<E> {
    /// Every iteration ran.
    Finished,
    /// An observer stopped the loop after this iteration.
    Stopped {
        /// The last iteration done.
        iter: usize,
    },
    /// Iteration `iter` failed; the parameters are those before it.
    Failed {
        /// The iteration.
        iter: usize,
        /// Why.
        failure: StepFailure<E>,
    },
}

/// Runs iterations `first..=n_iters` of `problem` with `optimizer`; iteration `i` draws
/// from `rng_of(i)` and steps at `optimizer.lr() · schedule.factor(i, n_iters)`.
/// `observe` sees each step and the problem after it, and may stop the loop.
pub fn minimise<P, O, G, V>(
    problem: &mut P,
    optimizer: &mut O,
    schedule: LrSchedule,
    first: usize,
    n_iters: usize,
    mut rng_of: G,
    mut observe: V,
) -> Outcome<P::Error>
where
    P: Problem,
    O: Optimizer,
    G: FnMut(usize) -> P::Rng,
    V: FnMut(&StepInfo<'_, P::Report>, &P) -> ControlFlow<()>,
{
    let mut buf = StepBuffers::default();
    for iter in first..=n_iters {
        let started = Instant::now();
        let mut rng = rng_of(iter);
        let lr = optimizer.lr() * schedule.factor(iter, n_iters);
        match take_step(problem, optimizer, lr, iter, &mut rng, &mut buf) {
            Ok((loss, report)) => {
                let info = StepInfo {
                    iter,
                    loss,
                    report: &report,
                    seconds: started.elapsed().as_secs_f64(),
                };
                if observe(&info, problem).is_break() {
                    return Outcome::Stopped { iter };
                }
            }
            Err(failure) => return Outcome::Failed { iter, failure },
        }
    }
    Outcome::Finished
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::{Adam, AdamConfig};

    /// `Σ (θ_i − i)²` with a gradient scaled by `scale` (NaN makes it non-finite),
    /// stepped in place or through the copies.
    struct Quadratic {
        theta: Vec<f64>,
        in_place: bool,
        scale: f64,
    }

    impl Problem for Quadratic {
        type T = f64;
        type Report = ();
        type Error = String;
        type Rng = rand_chacha::ChaCha8Rng;

        fn params(&self, out: &mut Vec<f64>) {
            out.clear();
            out.extend_from_slice(&self.theta);
        }
        fn set_params(&mut self, flat: &[f64]) {
            self.theta.copy_from_slice(flat);
        }
        fn params_in_place(&mut self) -> Option<&mut [f64]> {
            self.in_place.then_some(&mut self.theta[..])
        }
        fn loss_and_grad(&mut self, _: usize, _: &mut Self::Rng, grad: &mut Vec<f64>) -> Result<(f64, ()), String> {
            grad.clear();
            grad.extend(
                self.theta
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| 2.0 * (t - i as f64) * self.scale),
            );
            Ok((
                self.theta
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| (t - i as f64).powi(2))
                    .sum(),
                (),
            ))
        }
    }

    /// A step on the parameters where they are gives the step through the copies, and
    /// a gradient with a NaN in it leaves them as they were either way.
    #[test]
    fn stepping_in_place_matches_stepping_through_copies() {
        let run = |in_place: bool, nan_at: Option<usize>| {
            let mut p = Quadratic {
                theta: (0..9).map(|i| (i as f64).sin()).collect(),
                in_place,
                scale: 1.0,
            };
            let mut adam = Adam::new(AdamConfig::new(0.1, 0.0), 9);
            let (mut buf, mut rng) = (
                StepBuffers::default(),
                <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0),
            );
            let mut failures = Vec::new();
            for iter in 1..=20 {
                p.scale = if Some(iter) == nan_at { f64::NAN } else { 1.0 };
                let before = p.theta.clone();
                if let Err(f) = take_step(&mut p, &mut adam, 0.1, iter, &mut rng, &mut buf) {
                    assert_eq!(p.theta, before, "a failed step changed the parameters");
                    failures.push((iter, f));
                }
            }
            (p.theta, failures)
        };
        let (copied, none) = run(false, None);
        let (in_place, none_too) = run(true, None);
        assert_eq!(copied, in_place);
        assert!(none.is_empty() && none_too.is_empty());
        assert!(copied[5] > 0.5, "the steps went nowhere: {copied:?}");
        for in_place in [false, true] {
            let (_, failures) = run(in_place, Some(7));
            assert_eq!(failures, vec![(7, StepFailure::NonFinite)]);
        }
    }
}
