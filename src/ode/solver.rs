//! The one integration loop that drives every solve.
//!
//! [`Solver`] owns a [`Stepper`] (its buffers sized once per state dimension, reused
//! across solves); [`Solver::solve`] steps an [`OdeSystem`] from `t0` to `t1` (either
//! direction) under fixed or adaptive step-size control, serves output times by dense
//! output and counts its work in [`Stats`]. [`Solver::start`] hands the loop to the
//! caller instead: [`Integration::step`] takes one attempted step at a time (splitting
//! and multiple shooting drive solves this way).

use super::config::{SaveAt, SolverConfig, StepControl};
use super::controller::{PidState, StepSizeController};
use super::error::{ConfigError, SolveError};
use super::stepper::{rms, ExplicitRk, Stepper};
use super::system::{OdeSystem, StepEvent};
use super::tableau::Tableau;
use crate::Real;

/// Work done by one solve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Evaluations of the vector field.
    pub n_evals: usize,
    /// Accepted steps.
    pub n_accepted: usize,
    /// Rejected steps.
    pub n_rejected: usize,
}

impl Stats {
    /// Steps attempted (accepted plus rejected).
    pub fn n_steps(&self) -> usize {
        self.n_accepted + self.n_rejected
    }
}

/// The result of a solve.
#[derive(Clone, Debug, PartialEq)]
pub struct Solution<T> {
    /// Dimension of the state.
    pub n: usize,
    /// The requested output times.
    pub t: Vec<T>,
    /// States at the output times, row-major (`t.len() × n`).
    pub y: Vec<T>,
    /// End time (equal to `t1`).
    pub t_final: T,
    /// State at the end time.
    pub y_final: Vec<T>,
    /// Accepted step grid, `t0` first (when requested).
    pub step_t: Vec<T>,
    /// States on the step grid, row-major (when requested).
    pub step_y: Vec<T>,
    /// Work done.
    pub stats: Stats,
}

impl<T> Solution<T> {
    /// State at the `i`-th output time.
    pub fn y_at(&self, i: usize) -> &[T] {
        &self.y[i * self.n..(i + 1) * self.n]
    }

    /// State at the `i`-th point of the step grid.
    pub fn step_y_at(&self, i: usize) -> &[T] {
        &self.step_y[i * self.n..(i + 1) * self.n]
    }
}

/// A solver: a [`Stepper`] and a [`SolverConfig`]; the loop lives in [`Integration`].
pub struct Solver<T: Real, St: Stepper<T> = ExplicitRk<T>> {
    config: SolverConfig,
    stepper: St,
    tab: Option<&'static Tableau>,
    /// Buffers of the first-step heuristic.
    probe_y: Vec<T>,
    probe_f: Vec<T>,
    /// The first step of the next [`Solver::start`], if set ([`Solver::set_first_step`]).
    first_step: Option<T>,
}

/// Where the loop is.
struct Cursor<T> {
    t: T,
    h: T,
    stats: Stats,
}

impl<T: Real> Solver<T, ExplicitRk<T>> {
    /// Validates the configuration and prepares a solver for its method.
    pub fn new(config: SolverConfig) -> Result<Self, SolveError> {
        config.validate()?;
        reject_implicit(&config)?;
        let tab = config.method.tableau();
        Ok(Solver {
            config,
            stepper: ExplicitRk::new(tab),
            tab: Some(tab),
            probe_y: Vec::new(),
            probe_f: Vec::new(),
            first_step: None,
        })
    }

    /// A solver for a tableau of the caller's own (checked with [`Tableau::check`]);
    /// `config.method` is not used.
    pub fn with_tableau(config: SolverConfig, tab: &'static Tableau) -> Result<Self, SolveError> {
        tab.check(1e-12).map_err(ConfigError::Tableau)?;
        if matches!(config.step, StepControl::Adaptive(_)) && !tab.is_adaptive() {
            return Err(ConfigError::NotAdaptive { method: tab.name }.into());
        }
        config.validate_steps()?;
        reject_implicit(&config)?;
        Ok(Solver {
            config,
            stepper: ExplicitRk::new(tab),
            tab: Some(tab),
            probe_y: Vec::new(),
            probe_f: Vec::new(),
            first_step: None,
        })
    }
}

impl<T: Real, St: Stepper<T>> Solver<T, St> {
    /// A solver on any stepper; the configuration's step control and budget apply,
    /// `config.method` is not used.
    pub fn with_stepper(config: SolverConfig, stepper: St) -> Result<Self, SolveError> {
        config.validate_steps()?;
        if matches!(config.step, StepControl::Adaptive(_)) && stepper.error_exponent().is_none() {
            return Err(ConfigError::NotAdaptive { method: "this stepper" }.into());
        }
        Ok(Solver {
            config,
            stepper,
            tab: None,
            probe_y: Vec::new(),
            probe_f: Vec::new(),
            first_step: None,
        })
    }

    /// The next [`Solver::start`] (and only that one) tries `h` as its first step
    /// instead of the configured `h0` or the first-step heuristic: a solve split into
    /// pieces carries its step size across the joins.
    pub fn set_first_step(&mut self, h: Option<T>) {
        self.first_step = h.map(|h| h.abs());
    }

    /// The configuration this solver was made with.
    pub fn config(&self) -> &SolverConfig {
        &self.config
    }

    /// The method's tableau, for a Runge–Kutta stepper.
    pub fn tableau(&self) -> Option<&'static Tableau> {
        self.tab
    }

    /// The stepper (its stages hold the last attempt's).
    pub fn stepper(&self) -> &St {
        &self.stepper
    }

    /// Integrates `system` from `(t0, y0)` to `t1` (forward or backward in time).
    pub fn solve<S: OdeSystem<T> + ?Sized>(
        &mut self,
        system: &mut S,
        y0: &[T],
        t0: T,
        t1: T,
        save: &SaveAt<T>,
    ) -> Result<Solution<T>, SolveError> {
        let mut run = self.start(system, y0, t0, t1, save)?;
        while !run.is_done() {
            run.step(system)?;
        }
        Ok(run.finish())
    }

    /// Starts a solve and hands its loop to the caller: [`Integration::step`] takes one
    /// attempted step at a time until [`Integration::is_done`]; [`Integration::finish`]
    /// returns the [`Solution`]. [`Solver::solve`] is this loop.
    pub fn start<'s, S: OdeSystem<T> + ?Sized>(
        &'s mut self,
        system: &mut S,
        y0: &[T],
        t0: T,
        t1: T,
        save: &'s SaveAt<T>,
    ) -> Result<Integration<'s, T, St>, SolveError> {
        self.check_problem(y0, t0, t1, save)?;
        let n = y0.len();
        self.stepper.resize(n);
        let mut sol = Solution {
            n,
            t: save.t.clone(),
            y: Vec::with_capacity(save.t.len() * n),
            t_final: t1,
            y_final: Vec::new(),
            step_t: Vec::new(),
            step_y: Vec::new(),
            stats: Stats::default(),
        };
        let mut cur = Cursor {
            t: t0,
            h: T::zero(),
            stats: Stats::default(),
        };
        if !all_finite(y0) {
            return Err(non_finite("initial state", &cur));
        }
        // Output times equal to t0 are served now.
        let mut next_out = 0;
        while next_out < save.t.len() && save.t[next_out] == t0 {
            sol.y.extend_from_slice(y0);
            next_out += 1;
        }
        if save.steps {
            sol.step_t.push(t0);
            sol.step_y.extend_from_slice(y0);
        }
        system.step_event(StepEvent::Start);
        self.stepper.init(system, t0, y0);
        cur.stats.n_evals += 1;
        if !all_finite(self.stepper.f()) {
            return Err(non_finite("vector field", &cur));
        }
        let dir = if t1 > t0 { T::one() } else { -T::one() };
        let span = (t1 - t0).abs();
        let mode = match self.config.step.clone() {
            StepControl::Adaptive(a) => {
                let h_max = a.h_max.map_or(span, |h| T::c(h).min(span));
                let (rtol, atol) = (T::c(a.rtol), T::c(a.atol));
                let h_abs = match self.first_step.take().or(a.h0.map(T::c)) {
                    Some(h0) => h0,
                    None => {
                        let h = self.initial_step(system, t0, dir, span, rtol, atol, &mut cur.stats);
                        system.step_event(StepEvent::Probe);
                        h
                    }
                };
                cur.h = dir * h_abs.min(h_max);
                Mode::Adaptive {
                    h_max,
                    rtol,
                    atol,
                    h_min: T::c(a.h_min),
                    k_exp: self.stepper.error_exponent().unwrap_or(1),
                    controller: a.controller.state(),
                    non_finite_last: false,
                }
            }
            StepControl::FixedSize(h) => {
                let ratio = span.f64() / h;
                // A span that is a whole number of steps up to rounding takes that many.
                let n_steps = if (ratio - ratio.round()).abs() < 1e-9 * ratio.max(1.0) {
                    ratio.round().max(1.0)
                } else {
                    ratio.ceil()
                } as usize;
                Mode::Fixed {
                    n_steps,
                    h_fixed: Some(h),
                    i: 0,
                }
            }
            StepControl::FixedSteps(n_steps) => Mode::Fixed {
                n_steps,
                h_fixed: None,
                i: 0,
            },
        };
        if let Mode::Fixed { n_steps, h_fixed, .. } = mode {
            if n_steps > self.config.max_steps {
                cur.h = h_fixed.map_or((t1 - t0) / T::c(n_steps as f64), |h| dir * T::c(h));
                return Err(max_steps_error(&cur, self.config.max_steps));
            }
        }
        Ok(Integration {
            solver: self,
            save,
            sol,
            cur,
            next_out,
            t0,
            t1,
            dir,
            span,
            mode,
            done: false,
        })
    }

    fn check_problem(&self, y0: &[T], t0: T, t1: T, save: &SaveAt<T>) -> Result<(), SolveError> {
        let (t0f, t1f) = (t0.f64(), t1.f64());
        if !t0f.is_finite() || !t1f.is_finite() {
            return Err(SolveError::InvalidSpan { t0: t0f, t1: t1f });
        }
        if t0 == t1 {
            return Err(SolveError::EmptySpan { t: t0f });
        }
        if y0.is_empty() {
            return Err(SolveError::DimensionMismatch {
                what: "initial state",
                got: 0,
                expected: 1,
            });
        }
        if let Some(mask) = &self.config.error_mask {
            if mask.len() != y0.len() {
                return Err(SolveError::DimensionMismatch {
                    what: "error mask",
                    got: mask.len(),
                    expected: y0.len(),
                });
            }
        }
        let dir = if t1 > t0 { 1.0 } else { -1.0 };
        let mut prev = t0f;
        for (index, &t) in save.t.iter().enumerate() {
            let tf = t.f64();
            let inside = tf.is_finite() && dir * (tf - t0f) >= 0.0 && dir * (t1f - tf) >= 0.0;
            if !inside || dir * (tf - prev) < 0.0 {
                return Err(SolveError::InvalidOutputTime {
                    index,
                    t: tf,
                    t0: t0f,
                    t1: t1f,
                });
            }
            prev = tf;
        }
        Ok(())
    }

    /// Hairer's starting step (Solving ODEs I, §II.4): a step whose explicit Euler error
    /// is about 1 % of the tolerance, refined by a second derivative estimate.
    #[allow(clippy::too_many_arguments)]
    fn initial_step<S: OdeSystem<T> + ?Sized>(
        &mut self,
        system: &mut S,
        t0: T,
        dir: T,
        span: T,
        rtol: T,
        atol: T,
        stats: &mut Stats,
    ) -> T {
        let mask = self.config.error_mask.as_deref();
        let (y, f0) = (self.stepper.y(), self.stepper.f());
        let n = y.len();
        self.probe_y.resize(n, T::zero());
        self.probe_f.resize(n, T::zero());
        let scale = |y: T| atol + rtol * y.abs();
        let d0 = rms(mask, y.iter().map(|&y| y / scale(y)));
        let d1 = rms(mask, y.iter().zip(f0).map(|(&y, &f)| f / scale(y)));
        let tiny = T::c(1e-5);
        let mut h0 = if d0 < tiny || d1 < tiny {
            T::c(1e-6)
        } else {
            T::c(0.01) * d0 / d1
        };
        h0 = h0.min(span);
        for j in 0..n {
            self.probe_y[j] = y[j] + dir * h0 * f0[j];
        }
        system.rhs(t0 + dir * h0, &self.probe_y, &mut self.probe_f);
        stats.n_evals += 1;
        let (y, f0) = (self.stepper.y(), self.stepper.f());
        let d2 = rms(
            mask,
            y.iter()
                .zip(f0)
                .zip(&self.probe_f)
                .map(|((&y, &f0), &f1)| (f1 - f0) / scale(y)),
        ) / h0;
        if !d2.is_finite() {
            return h0;
        }
        let dmax = d1.max(d2);
        let h1 = if dmax <= T::c(1e-15) {
            (h0 * T::c(1e-3)).max(T::c(1e-6))
        } else {
            (T::c(0.01) / dmax).powf(T::one() / T::c(self.stepper.order() as f64 + 1.0))
        };
        (T::c(100.0) * h0).min(h1).min(span)
    }
}

/// How the steps of a running solve are chosen.
enum Mode<T> {
    Adaptive {
        h_max: T,
        rtol: T,
        atol: T,
        h_min: T,
        k_exp: u32,
        controller: PidState,
        non_finite_last: bool,
    },
    Fixed {
        n_steps: usize,
        h_fixed: Option<f64>,
        /// Steps taken.
        i: usize,
    },
}

/// What one call of [`Integration::step`] did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepOutcome<T> {
    /// The step from `t_prev` to `t` was accepted; `last` when `t` is the end time.
    Accepted {
        /// Start of the step.
        t_prev: T,
        /// The step size used (stage `i` was at `t_prev + c_i h`); `t_prev + h` may differ
        /// from `t` by rounding on the last step, which lands on the end time exactly.
        h: T,
        /// End of the step (the new current time).
        t: T,
        /// Whether the solve has reached its end time.
        last: bool,
    },
    /// The attempt of size `h` from `t` was rejected (error `err` > 1, or not finite).
    Rejected {
        /// Current time.
        t: T,
        /// The step size tried.
        h: T,
        /// Its weighted error norm.
        err: f64,
    },
}

/// A solve in progress, stepped by the caller (see [`Solver::start`]).
pub struct Integration<'s, T: Real, St: Stepper<T>> {
    solver: &'s mut Solver<T, St>,
    save: &'s SaveAt<T>,
    sol: Solution<T>,
    cur: Cursor<T>,
    next_out: usize,
    t0: T,
    t1: T,
    dir: T,
    span: T,
    mode: Mode<T>,
    done: bool,
}

impl<T: Real, St: Stepper<T>> Integration<'_, T, St> {
    /// The current time.
    pub fn t(&self) -> T {
        self.cur.t
    }

    /// The current state.
    pub fn y(&self) -> &[T] {
        self.solver.stepper.y()
    }

    /// The step size the next attempt will try (adaptive), or took (fixed).
    pub fn h(&self) -> T {
        self.cur.h
    }

    /// Work done so far.
    pub fn stats(&self) -> Stats {
        self.cur.stats
    }

    /// Whether the end time has been reached.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The stepper, whose stages are those of the last attempt.
    pub fn stepper(&self) -> &St {
        &self.solver.stepper
    }

    /// The solution, once [`Integration::is_done`] (or what was reached so far).
    pub fn finish(mut self) -> Solution<T> {
        self.sol.y_final = self.solver.stepper.y().to_vec();
        self.sol.stats = self.cur.stats;
        self.sol
    }

    /// Takes one attempted step (accepted or rejected), serves the output times it
    /// passes and tells the system which evaluations were stages ([`StepEvent`]).
    pub fn step<S: OdeSystem<T> + ?Sized>(&mut self, system: &mut S) -> Result<StepOutcome<T>, SolveError> {
        if self.done {
            return Err(SolveError::Finished { t: self.cur.t.f64() });
        }
        let max_steps = self.solver.config.max_steps;
        let t1 = self.t1;
        let dir = self.dir;
        match &mut self.mode {
            Mode::Fixed { n_steps, h_fixed, i } => {
                *i += 1;
                let (i, n_steps, h_fixed) = (*i, *n_steps, *h_fixed);
                let t0 = self.t0;
                // Grid points are computed from t0, not accumulated.
                let t_next = if i == n_steps {
                    t1
                } else {
                    match h_fixed {
                        Some(h) => t0 + dir * T::c(h * i as f64),
                        None => t0 + (t1 - t0) / T::c(n_steps as f64) * T::c(i as f64),
                    }
                };
                self.cur.h = t_next - self.cur.t;
                self.cur.stats.n_evals += self.solver.stepper.attempt(system, self.cur.t, self.cur.h);
                if !all_finite(self.solver.stepper.y_new()) {
                    return Err(non_finite("state", &self.cur));
                }
                Ok(self.accept(system, t_next, i == n_steps))
            }
            Mode::Adaptive {
                h_max,
                rtol,
                atol,
                h_min,
                k_exp,
                controller,
                non_finite_last,
            } => {
                let cur = &mut self.cur;
                if cur.stats.n_steps() >= max_steps {
                    return Err(max_steps_error(cur, max_steps));
                }
                let remaining = t1 - cur.t;
                let last = (cur.h - remaining) * dir >= T::zero();
                if last {
                    cur.h = remaining;
                }
                // Smallest meaningful step at this time: a few ulps of the time scale.
                let h_floor = T::c(4.0) * T::epsilon() * cur.t.abs().max(self.span);
                if !last && (cur.h.abs() < *h_min || cur.h.abs() <= h_floor) {
                    if *non_finite_last {
                        return Err(non_finite("vector field", cur));
                    }
                    return Err(SolveError::StepSizeTooSmall {
                        t: cur.t.f64(),
                        h: cur.h.f64(),
                        h_min: h_min.max(h_floor).f64(),
                        n_steps: cur.stats.n_steps(),
                    });
                }
                let stepper = &mut self.solver.stepper;
                cur.stats.n_evals += stepper.attempt(system, cur.t, cur.h);
                let mask = self.solver.config.error_mask.as_deref();
                let mut err = stepper.error_norm(cur.h, *rtol, *atol, mask);
                if !all_finite(stepper.y_new()) {
                    err = f64::NAN;
                }
                *non_finite_last = !err.is_finite();
                let (accepted, factor) = controller.decide(err, *k_exp);
                if !accepted {
                    cur.stats.n_rejected += 1;
                    system.step_event(StepEvent::Rejected);
                    let (t, h) = (cur.t, cur.h);
                    cur.h *= T::c(factor);
                    return Ok(StepOutcome::Rejected { t, h, err });
                }
                let h_max = *h_max;
                let t_new = if last { t1 } else { cur.t + cur.h };
                let h_used = cur.h;
                let outcome = self.accept(system, t_new, last);
                if !last {
                    self.cur.h = dir * (h_used.abs() * T::c(factor)).min(h_max);
                }
                Ok(outcome)
            }
        }
    }

    /// Accepts the attempt ending at `t_new`: tells the system, serves output times
    /// inside the step, records the grid and moves the stepper on.
    fn accept<S: OdeSystem<T> + ?Sized>(&mut self, system: &mut S, t_new: T, last: bool) -> StepOutcome<T> {
        let stepper = &mut self.solver.stepper;
        system.step_event(StepEvent::Accepted { fsal: stepper.fsal() });
        let cur = &mut self.cur;
        let dir = self.dir;
        let h = t_new - cur.t;
        let save = self.save;
        let h_used = cur.h;
        while self.next_out < save.t.len() && (save.t[self.next_out] - t_new) * dir <= T::zero() {
            let tau = save.t[self.next_out];
            if tau == t_new {
                self.sol.y.extend_from_slice(stepper.y_new());
            } else {
                let theta = (tau - cur.t) / h;
                cur.stats.n_evals += stepper.interpolate(system, cur.t, h, theta, &mut self.sol.y);
            }
            self.next_out += 1;
        }
        if save.steps {
            self.sol.step_t.push(t_new);
            self.sol.step_y.extend_from_slice(stepper.y_new());
        }
        cur.stats.n_accepted += 1;
        let t_prev = cur.t;
        cur.t = t_new;
        cur.stats.n_evals += stepper.accept(system, t_new, !last);
        self.done = last;
        StepOutcome::Accepted {
            t_prev,
            h: h_used,
            t: t_new,
            last,
        }
    }
}

/// Solves `dy/dt = f(t, y)` from `(t0, y0)` to `t1` in one call (see [`Solver::solve`]).
pub fn integrate<T: Real, S: OdeSystem<T> + ?Sized>(
    system: &mut S,
    y0: &[T],
    t0: T,
    t1: T,
    config: &SolverConfig,
    save: &SaveAt<T>,
) -> Result<Solution<T>, SolveError> {
    Solver::new(config.clone())?.solve(system, y0, t0, t1, save)
}

fn all_finite<T: Real>(x: &[T]) -> bool {
    x.iter().all(|v| v.is_finite())
}

fn non_finite<T: Real>(what: &'static str, cur: &Cursor<T>) -> SolveError {
    SolveError::NonFinite {
        what,
        t: cur.t.f64(),
        h: cur.h.f64(),
        n_steps: cur.stats.n_steps(),
    }
}

fn max_steps_error<T: Real>(cur: &Cursor<T>, max_steps: usize) -> SolveError {
    SolveError::MaxStepsExceeded {
        t: cur.t.f64(),
        h: cur.h.f64(),
        n_steps: cur.stats.n_steps(),
        max_steps,
    }
}

/// The explicit solver cannot run an [`implicit`](SolverConfig::implicit) method.
fn reject_implicit(config: &SolverConfig) -> Result<(), SolveError> {
    match config.implicit {
        Some(m) => Err(ConfigError::ImplicitNotSupported { method: m.name() }.into()),
        None => Ok(()),
    }
}
