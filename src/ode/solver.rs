//! The one integration loop that drives every solve.
//!
//! [`Solver`] owns the stage buffers (sized once per state dimension, reused across
//! solves); [`Solver::solve`] steps a [`OdeSystem`] from `t0` to `t1` (either direction)
//! under fixed or adaptive step-size control, serves output times by dense output and
//! counts its work in [`Stats`].

use super::config::{Adaptive, SaveAt, SolverConfig, StepControl};
use super::error::SolveError;
use super::tableau::{Interpolant, Tableau};
use crate::Real;

/// A first-order system `dy/dt = f(t, y)` on a flat state.
///
/// A batch of `B` points in `d` dimensions is one system of `B·d` components (row-major).
/// Closures `FnMut(t, y, dy)` implement it.
pub trait OdeSystem<T: Real> {
    /// Writes `f(t, y)` into `dy` (same length as `y`).
    fn rhs(&mut self, t: T, y: &[T], dy: &mut [T]);
}

impl<T: Real, F: FnMut(T, &[T], &mut [T])> OdeSystem<T> for F {
    fn rhs(&mut self, t: T, y: &[T], dy: &mut [T]) {
        self(t, y, dy)
    }
}

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
    /// Per accepted step (when the grid is requested): which calls of the right-hand
    /// side, counted from 0 in the order made, computed its stages — `(k_1's call,
    /// k_2's call)`, with `k_3, …, k_s` in the calls after `k_2`'s. Lets a caller that
    /// records every call (backprop) find each accepted stage among rejected attempts.
    pub step_evals: Vec<(usize, usize)>,
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

/// Tableau coefficients converted to the working float type.
struct Coefficients<T> {
    c: Vec<T>,
    a: Vec<Vec<(usize, T)>>,
    b: Vec<(usize, T)>,
    e: Vec<(usize, T)>,
    dense: Vec<Vec<T>>,
}

impl<T: Real> Coefficients<T> {
    fn new(tab: &Tableau) -> Self {
        let nonzero = |row: &[f64]| -> Vec<(usize, T)> {
            row.iter()
                .enumerate()
                .filter(|(_, &x)| x != 0.0)
                .map(|(j, &x)| (j, T::c(x)))
                .collect()
        };
        let dense = match tab.interpolant {
            Interpolant::Hermite => Vec::new(),
            Interpolant::Polynomial(rows) => rows.iter().map(|r| r.iter().map(|&x| T::c(x)).collect()).collect(),
        };
        Coefficients {
            c: tab.c.iter().map(|&x| T::c(x)).collect(),
            a: tab.a.iter().map(|r| nonzero(r)).collect(),
            b: nonzero(tab.b),
            e: tab.b_err.map(nonzero).unwrap_or_default(),
            dense,
        }
    }
}

/// An explicit Runge–Kutta solver with its reusable workspace.
pub struct Solver<T: Real> {
    config: SolverConfig,
    tab: &'static Tableau,
    coef: Coefficients<T>,
    n: usize,
    /// Stage derivatives `k_1..k_s`.
    k: Vec<Vec<T>>,
    y: Vec<T>,
    y_new: Vec<T>,
    y_stage: Vec<T>,
    /// `f(t_new, y_new)` for methods without FSAL (next step's `k_1`).
    f_new: Vec<T>,
    /// `Σ e_i k_i`, the error estimate divided by `h`.
    err: Vec<T>,
    /// Call numbers of the current `k_1` and of the current step's `k_2`.
    k1_call: usize,
    stage_call: usize,
}

/// Where the loop is.
struct Cursor<T> {
    t: T,
    h: T,
    stats: Stats,
}

impl<T: Real> Solver<T> {
    /// Validates the configuration and prepares a solver.
    pub fn new(config: SolverConfig) -> Result<Self, SolveError> {
        config.validate()?;
        let tab = config.method.tableau();
        Ok(Solver {
            coef: Coefficients::new(tab),
            tab,
            config,
            n: 0,
            k: Vec::new(),
            y: Vec::new(),
            y_new: Vec::new(),
            y_stage: Vec::new(),
            f_new: Vec::new(),
            err: Vec::new(),
            k1_call: 0,
            stage_call: 0,
        })
    }

    /// The configuration this solver was made with.
    pub fn config(&self) -> &SolverConfig {
        &self.config
    }

    /// The method's tableau.
    pub fn tableau(&self) -> &'static Tableau {
        self.tab
    }

    fn resize(&mut self, n: usize) {
        if self.n == n {
            return;
        }
        self.n = n;
        self.k = vec![vec![T::zero(); n]; self.tab.n_stages()];
        self.y = vec![T::zero(); n];
        self.y_new = vec![T::zero(); n];
        self.y_stage = vec![T::zero(); n];
        self.f_new = vec![T::zero(); n];
        self.err = vec![T::zero(); n];
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
        self.check_problem(y0, t0, t1, save)?;
        self.resize(y0.len());
        let n = y0.len();
        let mut sol = Solution {
            n,
            t: save.t.clone(),
            y: Vec::with_capacity(save.t.len() * n),
            t_final: t1,
            y_final: Vec::new(),
            step_t: Vec::new(),
            step_y: Vec::new(),
            step_evals: Vec::new(),
            stats: Stats::default(),
        };
        self.k1_call = 0;
        self.y.copy_from_slice(y0);
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
        system.rhs(t0, &self.y, &mut self.k[0]);
        cur.stats.n_evals += 1;
        if !all_finite(&self.k[0]) {
            return Err(non_finite("vector field", &cur));
        }
        match self.config.step.clone() {
            StepControl::Adaptive(a) => self.run_adaptive(system, &a, t1, &mut cur, save, &mut sol, &mut next_out)?,
            StepControl::FixedSize(h) => {
                let span = (t1 - t0).abs().f64();
                let ratio = span / h;
                // A span that is a whole number of steps up to rounding takes that many.
                let n_steps = if (ratio - ratio.round()).abs() < 1e-9 * ratio.max(1.0) {
                    ratio.round().max(1.0)
                } else {
                    ratio.ceil()
                };
                self.run_fixed(
                    system,
                    n_steps as usize,
                    Some(h),
                    t1,
                    &mut cur,
                    save,
                    &mut sol,
                    &mut next_out,
                )?
            }
            StepControl::FixedSteps(n_steps) => {
                self.run_fixed(system, n_steps, None, t1, &mut cur, save, &mut sol, &mut next_out)?
            }
        }
        sol.y_final = self.y.clone();
        sol.stats = cur.stats;
        Ok(sol)
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

    #[allow(clippy::too_many_arguments)]
    fn run_fixed<S: OdeSystem<T> + ?Sized>(
        &mut self,
        system: &mut S,
        n_steps: usize,
        h_fixed: Option<f64>,
        t1: T,
        cur: &mut Cursor<T>,
        save: &SaveAt<T>,
        sol: &mut Solution<T>,
        next_out: &mut usize,
    ) -> Result<(), SolveError> {
        let t0 = cur.t;
        let dir = if t1 > t0 { T::one() } else { -T::one() };
        let h_equal = (t1 - t0) / T::c(n_steps as f64);
        if n_steps > self.config.max_steps {
            cur.h = h_fixed.map_or(h_equal, |h| dir * T::c(h));
            return Err(max_steps_error(cur, self.config.max_steps));
        }
        for i in 1..=n_steps {
            // Grid points are computed from t0, not accumulated.
            let t_next = if i == n_steps {
                t1
            } else {
                match h_fixed {
                    Some(h) => t0 + dir * T::c(h * i as f64),
                    None => t0 + h_equal * T::c(i as f64),
                }
            };
            cur.h = t_next - cur.t;
            self.stage_call = cur.stats.n_evals;
            self.stages(system, cur.t, cur.h);
            cur.stats.n_evals += self.tab.n_stages() - 1;
            self.finish_step(cur.h);
            if !all_finite(&self.y_new) {
                return Err(non_finite("state", cur));
            }
            self.accept(system, cur, t_next, i == n_steps, save, sol, next_out);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn run_adaptive<S: OdeSystem<T> + ?Sized>(
        &mut self,
        system: &mut S,
        a: &Adaptive,
        t1: T,
        cur: &mut Cursor<T>,
        save: &SaveAt<T>,
        sol: &mut Solution<T>,
        next_out: &mut usize,
    ) -> Result<(), SolveError> {
        let t0 = cur.t;
        let dir = if t1 > t0 { T::one() } else { -T::one() };
        let span = (t1 - t0).abs();
        let h_max = a.h_max.map_or(span, |h| T::c(h).min(span));
        let (rtol, atol) = (T::c(a.rtol), T::c(a.atol));
        let k_exp = self.tab.order.min(self.tab.embedded_order.unwrap_or(self.tab.order)) + 1;
        let h_abs = match a.h0 {
            Some(h0) => T::c(h0),
            None => self.initial_step(system, t0, dir, span, rtol, atol, &mut cur.stats),
        };
        cur.h = dir * h_abs.min(h_max);
        let h_min = T::c(a.h_min);
        let mut err_prev = 1.0;
        let mut rejected_last = false;
        let mut non_finite_last = false;
        loop {
            if cur.stats.n_steps() >= self.config.max_steps {
                return Err(max_steps_error(cur, self.config.max_steps));
            }
            let remaining = t1 - cur.t;
            let last = (cur.h - remaining) * dir >= T::zero();
            if last {
                cur.h = remaining;
            }
            // Smallest meaningful step at this time: a few ulps of the time scale.
            let h_floor = T::c(4.0) * T::epsilon() * cur.t.abs().max(span);
            if !last && (cur.h.abs() < h_min || cur.h.abs() <= h_floor) {
                if non_finite_last {
                    return Err(non_finite("vector field", cur));
                }
                return Err(SolveError::StepSizeTooSmall {
                    t: cur.t.f64(),
                    h: cur.h.f64(),
                    h_min: h_min.max(h_floor).f64(),
                    n_steps: cur.stats.n_steps(),
                });
            }
            self.stage_call = cur.stats.n_evals;
            self.stages(system, cur.t, cur.h);
            cur.stats.n_evals += self.tab.n_stages() - 1;
            self.finish_step(cur.h);
            let err = self.error_norm(cur.h, rtol, atol);
            if !err.is_finite() || !all_finite(&self.y_new) {
                cur.stats.n_rejected += 1;
                non_finite_last = true;
                rejected_last = true;
                cur.h *= T::c(a.controller.factor_min);
                continue;
            }
            non_finite_last = false;
            if err <= 1.0 {
                let t_new = if last { t1 } else { cur.t + cur.h };
                let mut factor = a.controller.accept_factor(err, err_prev, k_exp);
                if rejected_last {
                    factor = factor.min(1.0);
                }
                err_prev = err.max(1e-4);
                rejected_last = false;
                let h_used = cur.h;
                self.accept(system, cur, t_new, last, save, sol, next_out);
                if last {
                    return Ok(());
                }
                cur.h = dir * (h_used.abs() * T::c(factor)).min(h_max);
            } else {
                cur.stats.n_rejected += 1;
                rejected_last = true;
                cur.h *= T::c(a.controller.reject_factor(err, k_exp));
            }
        }
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
        let scale = |y: T| atol + rtol * y.abs();
        let d0 = rms(mask, self.y.iter().map(|&y| y / scale(y)));
        let d1 = rms(mask, self.y.iter().zip(&self.k[0]).map(|(&y, &f)| f / scale(y)));
        let tiny = T::c(1e-5);
        let mut h0 = if d0 < tiny || d1 < tiny {
            T::c(1e-6)
        } else {
            T::c(0.01) * d0 / d1
        };
        h0 = h0.min(span);
        for j in 0..self.n {
            self.y_stage[j] = self.y[j] + dir * h0 * self.k[0][j];
        }
        system.rhs(t0 + dir * h0, &self.y_stage, &mut self.f_new);
        stats.n_evals += 1;
        let d2 = rms(
            mask,
            self.y
                .iter()
                .zip(&self.k[0])
                .zip(&self.f_new)
                .map(|((&y, &f0), &f1)| (f1 - f0) / scale(y)),
        ) / h0;
        if !d2.is_finite() {
            return h0;
        }
        let dmax = d1.max(d2);
        let h1 = if dmax <= T::c(1e-15) {
            (h0 * T::c(1e-3)).max(T::c(1e-6))
        } else {
            (T::c(0.01) / dmax).powf(T::one() / T::c(self.tab.order as f64 + 1.0))
        };
        (T::c(100.0) * h0).min(h1).min(span)
    }

    /// Computes stages `k_2..k_s` of a step of size `h` from `(t, y)`; `k_1` is given.
    fn stages<S: OdeSystem<T> + ?Sized>(&mut self, system: &mut S, t: T, h: T) {
        for i in 1..self.tab.n_stages() {
            self.y_stage.copy_from_slice(&self.y);
            for &(j, a) in &self.coef.a[i] {
                axpy(h * a, &self.k[j], &mut self.y_stage);
            }
            system.rhs(t + self.coef.c[i] * h, &self.y_stage, &mut self.k[i]);
        }
    }

    /// Forms `y_new = y + h Σ b_i k_i` (for FSAL methods it is the last stage's input).
    fn finish_step(&mut self, h: T) {
        if self.tab.fsal {
            self.y_new.copy_from_slice(&self.y_stage);
        } else {
            self.y_new.copy_from_slice(&self.y);
            for &(j, b) in &self.coef.b {
                axpy(h * b, &self.k[j], &mut self.y_new);
            }
        }
    }

    /// Weighted RMS norm of the error estimate `h Σ e_i k_i`, over the masked components.
    fn error_norm(&mut self, h: T, rtol: T, atol: T) -> f64 {
        self.err.fill(T::zero());
        for &(i, w) in &self.coef.e {
            axpy(w, &self.k[i], &mut self.err);
        }
        let mask = self.config.error_mask.as_deref();
        let terms = self
            .err
            .iter()
            .zip(self.y.iter().zip(&self.y_new))
            .map(|(&e, (&y, &y_new))| {
                let scale = atol + rtol * y.abs().max(y_new.abs());
                h * e / scale
            });
        rms(mask, terms).f64()
    }

    /// Accepts the step to `t_new`: serves output times inside it, records the grid,
    /// and makes `(t_new, y_new)` the current point with its derivative in `k_1`.
    #[allow(clippy::too_many_arguments)]
    fn accept<S: OdeSystem<T> + ?Sized>(
        &mut self,
        system: &mut S,
        cur: &mut Cursor<T>,
        t_new: T,
        last: bool,
        save: &SaveAt<T>,
        sol: &mut Solution<T>,
        next_out: &mut usize,
    ) {
        let s = self.tab.n_stages();
        let dir = if t_new > cur.t { T::one() } else { -T::one() };
        let h = t_new - cur.t;
        let mut have_f_new = self.tab.fsal;
        // For FSAL methods the next k_1 is this step's last stage, the last call made.
        let mut f_new_call = cur.stats.n_evals.wrapping_sub(1);
        while *next_out < save.t.len() && (save.t[*next_out] - t_new) * dir <= T::zero() {
            let tau = save.t[*next_out];
            if tau == t_new {
                sol.y.extend_from_slice(&self.y_new);
            } else {
                let theta = (tau - cur.t) / h;
                if self.coef.dense.is_empty() && !have_f_new {
                    f_new_call = cur.stats.n_evals;
                    system.rhs(t_new, &self.y_new, &mut self.f_new);
                    cur.stats.n_evals += 1;
                    have_f_new = true;
                }
                self.interpolate(theta, h, sol);
            }
            *next_out += 1;
        }
        if save.steps {
            sol.step_t.push(t_new);
            sol.step_y.extend_from_slice(&self.y_new);
            sol.step_evals.push((self.k1_call, self.stage_call));
        }
        cur.stats.n_accepted += 1;
        cur.t = t_new;
        std::mem::swap(&mut self.y, &mut self.y_new);
        if self.tab.fsal {
            self.k.swap(0, s - 1);
        } else if !last {
            if !have_f_new {
                f_new_call = cur.stats.n_evals;
                system.rhs(t_new, &self.y, &mut self.f_new);
                cur.stats.n_evals += 1;
            }
            std::mem::swap(&mut self.k[0], &mut self.f_new);
        }
        self.k1_call = f_new_call;
    }

    /// Appends the dense-output state at `t + θh` of the step just taken to `sol.y`.
    fn interpolate(&self, theta: T, h: T, sol: &mut Solution<T>) {
        let start = sol.y.len();
        sol.y.extend_from_slice(&self.y);
        let out = &mut sol.y[start..];
        if self.coef.dense.is_empty() {
            // Cubic Hermite on (y, f(t, y), y_new, f(t + h, y_new)).
            let th2 = theta * theta;
            let th3 = th2 * theta;
            let two = T::c(2.0);
            let three = T::c(3.0);
            let h01 = three * th2 - two * th3;
            let h10 = th3 - two * th2 + theta;
            let h11 = th3 - th2;
            let f1 = if self.tab.fsal {
                &self.k[self.tab.n_stages() - 1]
            } else {
                &self.f_new
            };
            for j in 0..self.n {
                out[j] += h01 * (self.y_new[j] - self.y[j]) + h * (h10 * self.k[0][j] + h11 * f1[j]);
            }
        } else {
            for (i, row) in self.coef.dense.iter().enumerate() {
                // b_i(θ) = Σ_m row[m] θ^(m+1), by Horner.
                let mut bi = T::zero();
                for &cm in row.iter().rev() {
                    bi = (bi + cm) * theta;
                }
                if bi != T::zero() {
                    axpy(h * bi, &self.k[i], out);
                }
            }
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

#[inline]
fn axpy<T: Real>(alpha: T, x: &[T], y: &mut [T]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

fn all_finite<T: Real>(x: &[T]) -> bool {
    x.iter().all(|v| v.is_finite())
}

/// Root mean square over the components the mask keeps (all when `None`); 0 if none.
fn rms<T: Real>(mask: Option<&[bool]>, terms: impl Iterator<Item = T>) -> T {
    let mut sum = T::zero();
    let mut count = 0usize;
    match mask {
        None => {
            for x in terms {
                sum += x * x;
                count += 1;
            }
        }
        Some(m) => {
            for (x, &keep) in terms.zip(m) {
                if keep {
                    sum += x * x;
                    count += 1;
                }
            }
        }
    }
    if count == 0 {
        T::zero()
    } else {
        (sum / T::c(count as f64)).sqrt()
    }
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
