//! The discrete adjoint of an explicit Runge–Kutta solve, with a checkpoint policy.
//!
//! Step `n` has stages `k_i = f(t_n + c_i h, Y_i)`, `Y_i = y_n + h Σ_j a_ij k_j`, and
//! `y_{n+1} = y_n + h Σ_i b_i k_i`. Given `ȳ = ∂L/∂y_{n+1}`, the stage cotangents are
//! `k̄_i = h (b_i ȳ + Σ_{l>i} a_li Ȳ_l)` with `Ȳ_l = k̄_lᵀ ∂f/∂y (Y_l)`; then
//! `∂L/∂y_n = ȳ + Σ_i Ȳ_i` and `∂L/∂p += Σ_i k̄_iᵀ ∂f/∂p (Y_i)`.

use super::revolve::split_point;
use super::{Checkpointing, Loss, Sensitivity, SensitivityError};
use crate::ode::{OdeSystem, SaveAt, Solver, SolverConfig, StageSlots, StepEvent, StepOutcome, Tableau, Vjp};
use crate::Real;

/// Records the stage inputs `(t_i, Y_i)` of accepted steps, from the driver's
/// [`StepEvent`]s (the [`Checkpointing::All`] policy).
struct StageRecorder<'a, T, S: ?Sized> {
    system: &'a mut S,
    /// Every evaluation kept so far: time and input.
    evals: Vec<(T, Vec<T>)>,
    slots: StageSlots,
}

impl<T: Real, S: OdeSystem<T> + ?Sized> OdeSystem<T> for StageRecorder<'_, T, S> {
    fn rhs(&mut self, t: T, y: &[T], dy: &mut [T]) {
        self.system.rhs(t, y, dy);
        let slot = match self.slots.take() {
            Some(slot) => {
                let e = &mut self.evals[slot];
                e.0 = t;
                e.1.copy_from_slice(y);
                slot
            }
            None => {
                let kept = spare_stage::<T>(y.len()).map(|mut v| {
                    v.copy_from_slice(y);
                    v
                });
                self.evals.push((t, kept.unwrap_or_else(|| y.to_vec())));
                self.evals.len() - 1
            }
        };
        self.slots.record(slot);
    }

    fn step_event(&mut self, event: StepEvent) {
        self.system.step_event(event);
        self.slots.event(event);
    }
}

/// The tableau in the working type, with the stages that matter for the reverse pass.
struct Rk<T> {
    c: Vec<T>,
    a: Vec<Vec<(usize, T)>>,
    b: Vec<(usize, T)>,
    b_full: Vec<T>,
    a_full: Vec<Vec<T>>,
    fsal: bool,
    /// Whether stage `i` feeds the result or a later stage.
    used: Vec<bool>,
}

impl<T: Real> Rk<T> {
    fn new(tab: &Tableau) -> Self {
        let coef = crate::ode::Coefficients::<T>::new(tab);
        let s = tab.n_stages();
        Rk {
            c: coef.c,
            a: coef.a,
            b: coef.b,
            b_full: tab.b.iter().map(|&v| T::c(v)).collect(),
            a_full: (0..s)
                .map(|l| (0..s).map(|i| T::c(tab.a[l].get(i).copied().unwrap_or(0.0))).collect())
                .collect(),
            fsal: tab.fsal,
            used: (0..s)
                .map(|i| tab.b[i] != 0.0 || (i + 1..s).any(|l| tab.a[l][i] != 0.0))
                .collect(),
        }
    }

    fn n_stages(&self) -> usize {
        self.c.len()
    }
}

/// Working buffers of one step's replay and reverse.
struct Work<T> {
    k: Vec<Vec<T>>,
    y_stage: Vec<Vec<T>>,
    stage_cot: Vec<Vec<T>>,
    kbar: Vec<T>,
}

/// Most bytes of [`Work`] a thread keeps between reverse passes.
const WORK_KEPT_MAX: usize = 64 << 20;

thread_local! {
    /// The last reverse pass's [`Work`] of each scalar type, kept by the thread so that
    /// the next pass of the same shape does not map and fault in its buffers afresh
    /// (at a classifier's 64 000-value state, 22 buffers of half a MiB each).
    static WORK_KEPT: std::cell::RefCell<Vec<Box<dyn std::any::Any>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Most bytes of spare stage vectors a thread keeps between forward solves.
const STAGES_KEPT_MAX: usize = 64 << 20;

thread_local! {
    /// Stage vectors of finished forward solves ([`DiscreteForward::recycle`]), one list
    /// per scalar type, all of one length: the next solve of that size records its
    /// stages in them instead of in fresh allocations.
    static STAGES_KEPT: std::cell::RefCell<Vec<Box<dyn std::any::Any>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A spare stage vector of length `n` kept by this thread, if there is one.
fn spare_stage<T: Real>(n: usize) -> Option<Vec<T>> {
    STAGES_KEPT.with(|cell| {
        let mut kept = cell.borrow_mut();
        let list = kept.iter_mut().find_map(|b| b.downcast_mut::<Vec<Vec<T>>>())?;
        match list.last().is_some_and(|v| v.len() == n) {
            true => list.pop(),
            false => None,
        }
    })
}

/// Keeps `stages` (all of one length) for this thread's next solves, up to
/// [`STAGES_KEPT_MAX`] bytes; spares of another length are dropped first.
fn keep_stages<T: Real>(stages: impl Iterator<Item = Vec<T>>) {
    STAGES_KEPT.with(|cell| {
        let mut kept = cell.borrow_mut();
        if !kept.iter().any(|b| b.is::<Vec<Vec<T>>>()) {
            kept.push(Box::new(Vec::<Vec<T>>::new()));
        }
        let list = kept
            .iter_mut()
            .find_map(|b| b.downcast_mut::<Vec<Vec<T>>>())
            .expect("just made");
        for v in stages {
            if list.first().is_some_and(|w| w.len() != v.len()) {
                list.clear();
            }
            let bytes = (list.len() + 1) * v.len() * std::mem::size_of::<T>();
            if bytes > STAGES_KEPT_MAX {
                return;
            }
            list.push(v);
        }
    });
}

impl<T: Real> Work<T> {
    fn new(s: usize, n: usize) -> Self {
        Work {
            k: vec![vec![T::zero(); n]; s],
            y_stage: vec![vec![T::zero(); n]; s],
            stage_cot: vec![vec![T::zero(); n]; s],
            kbar: vec![T::zero(); n],
        }
    }

    /// The thread's kept buffers for `s` stages of `n` values if it has them, else new
    /// ones. Their contents are whatever the last pass left: every step writes each
    /// buffer before it reads it ([`replay`], [`reverse_step`]).
    fn take(s: usize, n: usize) -> Self {
        let kept = WORK_KEPT.with(|cell| {
            let mut kept = cell.borrow_mut();
            let at = kept.iter().position(|b| {
                b.downcast_ref::<Work<T>>()
                    .is_some_and(|w| w.k.len() == s && w.kbar.len() == n && w.y_stage.len() == s)
            })?;
            kept.swap_remove(at).downcast::<Work<T>>().ok()
        });
        kept.map_or_else(|| Work::new(s, n), |w| *w)
    }

    /// Keeps these buffers for the thread's next pass (in place of any of this type),
    /// unless they are larger than [`WORK_KEPT_MAX`].
    fn keep(self) {
        let bytes = (3 * self.k.len() + 1) * self.kbar.len() * std::mem::size_of::<T>();
        if bytes > WORK_KEPT_MAX {
            return;
        }
        WORK_KEPT.with(|cell| {
            let mut kept = cell.borrow_mut();
            kept.retain(|b| !b.is::<Work<T>>());
            kept.push(Box::new(self));
        });
    }
}

/// Recomputes step `(t, h)` from `y` exactly as the stepper computed it: stage inputs
/// into `w.y_stage`, the end state into `y_next`. Returns the evaluations made.
fn replay<T: Real, S: OdeSystem<T> + ?Sized>(
    system: &mut S,
    rk: &Rk<T>,
    t: T,
    h: T,
    y: &[T],
    w: &mut Work<T>,
    y_next: Option<&mut [T]>,
) -> usize {
    let s = rk.n_stages();
    for i in 0..s {
        w.y_stage[i].copy_from_slice(y);
        for &(j, a) in &rk.a[i] {
            let (ks, ys) = (&w.k[j], &mut w.y_stage[i]);
            for (v, &kv) in ys.iter_mut().zip(ks) {
                *v += h * a * kv;
            }
        }
        let ti = if i == 0 { t } else { t + rk.c[i] * h };
        system.rhs(ti, &w.y_stage[i], &mut w.k[i]);
    }
    if let Some(out) = y_next {
        if rk.fsal {
            out.copy_from_slice(&w.y_stage[s - 1]);
        } else {
            out.copy_from_slice(y);
            for &(j, b) in &rk.b {
                for (v, &kv) in out.iter_mut().zip(&w.k[j]) {
                    *v += h * b * kv;
                }
            }
        }
    }
    s
}

/// Reverses one step whose stage inputs are `stage(i)`: `ybar` enters as `∂L/∂y_{n+1}`
/// and leaves as `∂L/∂y_n`; `grad_p` accumulates. `at` is the step's index when the
/// system may answer from a tape of its own ([`Vjp::vjp_stage`]). Returns the VJPs made.
#[allow(clippy::too_many_arguments)]
fn reverse_step<'y, T: Real, S: Vjp<T> + ?Sized>(
    system: &mut S,
    rk: &Rk<T>,
    t: T,
    h: T,
    at: Option<usize>,
    stage: impl Fn(usize) -> &'y [T],
    w: &mut Work<T>,
    ybar: &mut [T],
    grad_p: &mut [T],
) -> usize {
    let s = rk.n_stages();
    let mut n_vjp = 0;
    for i in (0..s).rev() {
        if !rk.used[i] {
            w.stage_cot[i].fill(T::zero());
            continue;
        }
        for (kb, &yb) in w.kbar.iter_mut().zip(ybar.iter()) {
            *kb = h * rk.b_full[i] * yb;
        }
        for l in i + 1..s {
            let ali = rk.a_full[l][i];
            if ali != T::zero() {
                for (kb, &yl) in w.kbar.iter_mut().zip(&w.stage_cot[l]) {
                    *kb += h * ali * yl;
                }
            }
        }
        let ti = if i == 0 { t } else { t + rk.c[i] * h };
        let (kbar, cot) = (&w.kbar, &mut w.stage_cot[i]);
        match at {
            Some(step) => system.vjp_stage(step, i, ti, stage(i), kbar, cot, grad_p),
            None => system.vjp(ti, stage(i), kbar, cot, grad_p),
        };
        n_vjp += 1;
    }
    for i in 0..s {
        for (v, &c) in ybar.iter_mut().zip(&w.stage_cot[i]) {
            *v += c;
        }
    }
    n_vjp
}

/// One segment of the forward solve, between two observation times.
struct Segment<T> {
    /// `(t_n, h_n)` of each accepted step.
    grid: Vec<(T, T)>,
    /// Accepted steps before this segment.
    first_step: usize,
    /// State at the segment's start (an observation).
    y_start: Vec<T>,
    /// [`Checkpointing::StepStarts`]: the state at every step start, row-major.
    starts: Vec<T>,
    /// [`Checkpointing::All`]: the stage inputs, `s` per step.
    stages: Vec<(T, Vec<T>)>,
    stage_slots: Vec<usize>,
}

/// What the forward solve of the discrete adjoint kept, under its [`Checkpointing`]
/// policy: the states at the observation times and what the reverse pass needs.
pub struct DiscreteForward<T> {
    rk: Rk<T>,
    policy: Checkpointing,
    n: usize,
    segments: Vec<Segment<T>>,
    /// States at the observation times, row-major.
    pub y: Vec<T>,
    /// Evaluations of the forward solve.
    pub n_evals: usize,
    /// Accepted steps over all segments.
    pub n_steps: usize,
}

/// What [`DiscreteForward::backward`] returns besides the parameter gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct DiscreteBackward<T> {
    /// `dL/dy₀`.
    pub grad_y0: Vec<T>,
    /// VJPs plus right-hand sides recomputed.
    pub n_evals: usize,
    /// Most states held at once (see [`Sensitivity::peak_stored_states`]).
    pub peak_stored_states: usize,
}

/// The forward half of the discrete adjoint: solves from `times[0]` through every
/// observation time, keeping what `policy` asks. A system that keeps a tape of its own
/// hears every [`StepEvent`] (under [`Checkpointing::All`]).
pub fn discrete_forward<T: Real, S: OdeSystem<T> + ?Sized>(
    system: &mut S,
    y0: &[T],
    times: &[T],
    solver: &SolverConfig,
    policy: Checkpointing,
) -> Result<DiscreteForward<T>, SensitivityError> {
    super::check_times(times)?;
    if let Checkpointing::Revolve { budget: 0 } = policy {
        return Err(SensitivityError::Budget { budget: 0 });
    }
    let forward_err = |error| SensitivityError::Solve {
        direction: "forward",
        error,
    };
    let n = y0.len();
    let mut ode = Solver::new(solver.clone()).map_err(forward_err)?;
    let tab = ode.tableau().expect("a Runge–Kutta solver has a tableau");
    let rk = Rk::<T>::new(tab);
    let none = SaveAt::default();
    let mut segments: Vec<Segment<T>> = Vec::with_capacity(times.len() - 1);
    let mut y = y0.to_vec();
    let mut y_obs = y0.to_vec();
    let mut n_evals = 0;
    let mut n_steps = 0;
    let keep_all = policy == Checkpointing::All;
    // The largest step of a segment starts the next, so the joins at the observations
    // cost no first-step probes and no regrowth of the step size.
    let mut carry: Option<T> = None;
    for i in 1..times.len() {
        let mut seg = Segment {
            grid: Vec::new(),
            first_step: n_steps,
            y_start: y.clone(),
            starts: Vec::new(),
            stages: Vec::new(),
            stage_slots: Vec::new(),
        };
        let mut rec = StageRecorder {
            system: &mut *system,
            evals: Vec::new(),
            slots: StageSlots::default(),
        };
        let stats;
        ode.set_first_step(carry.take());
        let mut h_big = T::zero();
        {
            let run = if keep_all {
                ode.start(&mut rec, &y, times[i - 1], times[i], &none)
            } else {
                ode.start(&mut *rec.system, &y, times[i - 1], times[i], &none)
            };
            let mut run = run.map_err(forward_err)?;
            while !run.is_done() {
                if policy == Checkpointing::StepStarts && seg.starts.len() == seg.grid.len() * n {
                    seg.starts.extend_from_slice(run.y());
                }
                let outcome = if keep_all {
                    run.step(&mut rec)
                } else {
                    run.step(&mut *rec.system)
                }
                .map_err(forward_err)?;
                if let StepOutcome::Accepted { t_prev, h, .. } = outcome {
                    seg.grid.push((t_prev, h));
                    h_big = h_big.max(h.abs());
                }
            }
            stats = run.stats();
            y = run.finish().y_final;
        }
        if matches!(solver.step, crate::ode::StepControl::Adaptive(_)) && h_big > T::zero() {
            carry = Some(h_big);
        }
        n_evals += stats.n_evals;
        n_steps += seg.grid.len();
        if keep_all {
            seg.stages = rec.evals;
            seg.stage_slots = rec.slots.steps;
        }
        y_obs.extend_from_slice(&y);
        segments.push(seg);
    }
    Ok(DiscreteForward {
        rk,
        policy,
        n,
        segments,
        y: y_obs,
        n_evals,
        n_steps,
    })
}

impl<T: Real> DiscreteForward<T> {
    /// Hands the recorded stage vectors to this thread's next forward solves (which
    /// would otherwise allocate and fault in as many afresh).
    pub(crate) fn recycle(self) {
        keep_stages(
            self.segments
                .into_iter()
                .flat_map(|seg| seg.stages.into_iter().map(|(_, v)| v)),
        );
    }

    /// The state at observation `i`.
    pub fn y_at(&self, i: usize) -> &[T] {
        &self.y[i * self.n..(i + 1) * self.n]
    }

    /// The reverse pass: `cot` holds `∂L/∂y(tᵢ)` for every observation (row-major, as
    /// [`DiscreteForward::y`]); `grad_p` accumulates `dL/dp`.
    pub fn backward<S: Vjp<T> + ?Sized>(&self, system: &mut S, cot: &[T], grad_p: &mut [T]) -> DiscreteBackward<T> {
        let n = self.n;
        let rk = &self.rk;
        let s = rk.n_stages();
        let mut ybar = vec![T::zero(); n];
        let mut w = Work::take(s, n);
        let mut n_evals = 0;
        let mut peak = 0usize;
        for (k, seg) in self.segments.iter().enumerate().rev() {
            for (v, &gi) in ybar.iter_mut().zip(&cot[(k + 1) * n..(k + 2) * n]) {
                *v += gi;
            }
            match self.policy {
                Checkpointing::All => {
                    peak = peak.max(seg.stages.len());
                    for (step, &(t, h)) in seg.grid.iter().enumerate().rev() {
                        let slots = &seg.stage_slots[step * s..(step + 1) * s];
                        let stage = |i: usize| seg.stages[slots[i]].1.as_slice();
                        let at = Some(seg.first_step + step);
                        n_evals += reverse_step(system, rk, t, h, at, stage, &mut w, &mut ybar, grad_p);
                    }
                }
                Checkpointing::StepStarts => {
                    peak = peak.max(seg.grid.len());
                    for (step, &(t, h)) in seg.grid.iter().enumerate().rev() {
                        let y_n = &seg.starts[step * n..(step + 1) * n];
                        n_evals += replay(system, rk, t, h, y_n, &mut w, None);
                        let stages = std::mem::take(&mut w.y_stage);
                        n_evals += reverse_step(
                            system,
                            rk,
                            t,
                            h,
                            None,
                            |i| stages[i].as_slice(),
                            &mut w,
                            &mut ybar,
                            grad_p,
                        );
                        w.y_stage = stages;
                    }
                }
                Checkpointing::Revolve { budget } => {
                    let mut ctx = Revolve {
                        system: &mut *system,
                        rk,
                        grid: &seg.grid,
                        w: &mut w,
                        ybar: &mut ybar,
                        grad_p: &mut *grad_p,
                        n_evals: 0,
                        held: 0,
                        peak: 0,
                    };
                    ctx.reverse(0, seg.grid.len(), &seg.y_start, budget);
                    n_evals += ctx.n_evals;
                    peak = peak.max(ctx.peak);
                }
            }
        }
        for (v, &gi) in ybar.iter_mut().zip(&cot[..n]) {
            *v += gi;
        }
        w.keep();
        DiscreteBackward {
            grad_y0: ybar,
            n_evals,
            peak_stored_states: peak,
        }
    }
}

pub(super) fn backprop<T: Real, S: Vjp<T> + ?Sized, L: Loss<T>>(
    system: &mut S,
    y0: &[T],
    times: &[T],
    loss: &mut L,
    solver: &SolverConfig,
    policy: Checkpointing,
) -> Result<Sensitivity<T>, SensitivityError> {
    let mut fwd = discrete_forward(system, y0, times, solver, policy)?;
    let n = y0.len();
    let n_obs = times.len();
    let mut total = 0.0;
    let mut g = vec![T::zero(); n_obs * n];
    for i in 0..n_obs {
        total += loss.eval(i, times[i], fwd.y_at(i), &mut g[i * n..(i + 1) * n]);
    }
    let mut grad_p = vec![T::zero(); system.n_params()];
    let back = fwd.backward(system, &g, &mut grad_p);
    let (y, n_evals_forward) = (std::mem::take(&mut fwd.y), fwd.n_evals);
    fwd.recycle();
    Ok(Sensitivity {
        loss: total,
        y,
        grad_y0: back.grad_y0,
        grad_params: grad_p,
        grad_t0: None,
        grad_t1: None,
        n_evals_forward,
        n_evals_backward: back.n_evals,
        peak_stored_states: back.peak_stored_states,
    })
}

/// Binomial checkpointing over one segment's steps.
struct Revolve<'a, T, S: ?Sized> {
    system: &'a mut S,
    rk: &'a Rk<T>,
    grid: &'a [(T, T)],
    w: &'a mut Work<T>,
    ybar: &'a mut [T],
    grad_p: &'a mut [T],
    n_evals: usize,
    /// Checkpoints held now, and at most.
    held: usize,
    peak: usize,
}

impl<T: Real, S: Vjp<T> + ?Sized> Revolve<'_, T, S> {
    /// The state after steps `from..to`, starting from `y` at step `from`.
    fn advance(&mut self, from: usize, to: usize, y: &[T]) -> Vec<T> {
        let mut cur = y.to_vec();
        let mut next = vec![T::zero(); y.len()];
        for step in from..to {
            let (t, h) = self.grid[step];
            self.n_evals += replay(self.system, self.rk, t, h, &cur, self.w, Some(&mut next));
            std::mem::swap(&mut cur, &mut next);
        }
        cur
    }

    /// Reverses steps `a..b`, given the state `y_a` at step `a`, with `c` free checkpoints.
    fn reverse(&mut self, a: usize, b: usize, y_a: &[T], c: usize) {
        let len = b - a;
        if len == 0 {
            return;
        }
        if len == 1 {
            let (t, h) = self.grid[a];
            self.n_evals += replay(self.system, self.rk, t, h, y_a, self.w, None);
            let stages = std::mem::take(&mut self.w.y_stage);
            self.n_evals += reverse_step(
                self.system,
                self.rk,
                t,
                h,
                None,
                |i| stages[i].as_slice(),
                self.w,
                self.ybar,
                self.grad_p,
            );
            self.w.y_stage = stages;
            return;
        }
        if c == 0 {
            for j in (a..b).rev() {
                let y_j = self.advance(a, j, y_a);
                self.reverse(j, j + 1, &y_j, 0);
            }
            return;
        }
        let mid = a + split_point(len, c);
        let y_mid = self.advance(a, mid, y_a);
        self.held += 1;
        self.peak = self.peak.max(self.held);
        self.reverse(mid, b, &y_mid, c - 1);
        drop(y_mid);
        self.held -= 1;
        self.reverse(a, mid, y_a, c);
    }
}
