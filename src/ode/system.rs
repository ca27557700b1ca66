//! Systems in layers: each trait asks only for what its caller needs (the diffsol
//! pattern).
//!
//! ```text
//! OdeSystem   f(t, y)                               every solve
//! Jvp         J v = ∂f/∂y · v                        implicit solvers (Newton–Krylov)
//! Vjp         wᵀ ∂f/∂y and wᵀ ∂f/∂p                  both adjoints
//! Jacobian    ∂f/∂y, dense or block-diagonal         Newton with a factorisation
//! ```
//!
//! A closure `FnMut(t, y, dy)` is an [`OdeSystem`]; [`WithVjp`] pairs it with a
//! hand-written VJP. A system written once, generic over the number type
//! ([`GenericSystem`]), gets every layer from forward-mode dual numbers through
//! [`DualSystem`](super::DualSystem).

use crate::Real;

/// What the driver tells a system about its evaluations after each attempted step, for
/// systems that keep something per evaluation (a tape of forward passes for backprop).
///
/// The evaluations made since the previous event are the *pending* ones. The first
/// evaluation of a solve, at `(t0, y0)`, is the first stage of the first step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepEvent {
    /// A solve starts: its next evaluation, at `(t0, y0)`, is the first stage of its first
    /// step (told before that evaluation, so a solve split into pieces restarts cleanly).
    Start,
    /// The last evaluation was a probe (the first-step heuristic), not a stage.
    Probe,
    /// The attempt was rejected: its pending evaluations (stages 2..s) are not stages of
    /// any accepted step; the current first stage stays.
    Rejected,
    /// The attempt was accepted: the current first stage and the pending evaluations are
    /// its stages 1..s in order. With `fsal`, the last of them is also the first stage
    /// of the next step; otherwise the next evaluation will be.
    Accepted {
        /// First same as last.
        fsal: bool,
    },
}

/// A first-order system `dy/dt = f(t, y)` on a flat state.
///
/// A batch of `B` points in `d` dimensions is one system of `B·d` components (row-major).
/// Closures `FnMut(t, y, dy)` implement it.
pub trait OdeSystem<T: Real> {
    /// Writes `f(t, y)` into `dy` (same length as `y`).
    fn rhs(&mut self, t: T, y: &[T], dy: &mut [T]);

    /// Told after every attempted step which evaluations were stages (see
    /// [`StepEvent`]). Does nothing unless the system keeps per-evaluation state.
    fn step_event(&mut self, _event: StepEvent) {}
}

impl<T: Real, F: FnMut(T, &[T], &mut [T])> OdeSystem<T> for F {
    fn rhs(&mut self, t: T, y: &[T], dy: &mut [T]) {
        self(t, y, dy)
    }
}

/// Jacobian-vector products in the state: `J v` with `J = ∂f/∂y (t, y)`.
pub trait Jvp<T: Real>: OdeSystem<T> {
    /// Writes `f(t, y)` into `dy` and `J v` into `jv`.
    fn jvp(&mut self, t: T, y: &[T], v: &[T], dy: &mut [T], jv: &mut [T]);
}

/// Vector-Jacobian products in the state and in the parameters `p`: what both adjoints
/// need.
pub trait Vjp<T: Real>: OdeSystem<T> {
    /// Number of parameters `p` the field depends on (0 for none).
    fn n_params(&self) -> usize;

    /// At `(t, y)`: writes `wᵀ ∂f/∂y` into `grad_y` (overwritten) and adds `wᵀ ∂f/∂p`
    /// into `grad_p` (accumulated, length [`Vjp::n_params`]).
    fn vjp(&mut self, t: T, y: &[T], w: &[T], grad_y: &mut [T], grad_p: &mut [T]);

    /// How many trailing components of the state `f` does not depend on (quadratures
    /// integrated alongside the dynamics, such as a CNF's log-density change and
    /// regularizers). The continuous adjoint keeps their adjoints constant instead of
    /// integrating them. 0 by default.
    fn n_quadratures(&self) -> usize {
        0
    }

    /// `f(t, y)` into `dy` and [`Vjp::vjp`] at once, for systems whose VJP has to redo
    /// the forward pass (the continuous adjoint needs both at every evaluation). The
    /// default calls one after the other.
    fn rhs_and_vjp(&mut self, t: T, y: &[T], w: &[T], dy: &mut [T], grad_y: &mut [T], grad_p: &mut [T]) {
        self.rhs(t, y, dy);
        self.vjp(t, y, w, grad_y, grad_p);
    }

    /// [`Vjp::vjp`] at stage `stage` of accepted step `step` (counted from 0 over the
    /// whole forward solve) whose input was `(t, y)`. A system that kept that
    /// evaluation's intermediate values on a tape of its own (told which evaluations
    /// were stages by [`StepEvent`]s) answers from them without recomputing; the
    /// default recomputes.
    #[allow(clippy::too_many_arguments)]
    fn vjp_stage(&mut self, step: usize, stage: usize, t: T, y: &[T], w: &[T], grad_y: &mut [T], grad_p: &mut [T]) {
        let _ = (step, stage);
        self.vjp(t, y, w, grad_y, grad_p)
    }
}

/// The shape of a system's Jacobian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JacobianShape {
    /// One dense `n × n` matrix.
    Dense,
    /// `n / block` independent systems of `block` components each (a CNF batch): the
    /// Jacobian is block-diagonal with `block × block` blocks.
    BlockDiagonal {
        /// Size of each block.
        block: usize,
    },
}

/// The Jacobian `∂f/∂y` itself, for Newton's method with a factorisation.
pub trait Jacobian<T: Real>: OdeSystem<T> {
    /// The Jacobian's structure.
    fn jacobian_shape(&self, n: usize) -> JacobianShape {
        let _ = n;
        JacobianShape::Dense
    }

    /// Whether `f` does not depend on `t` (so `∂f/∂t = 0`: a Rosenbrock step then skips
    /// its finite difference in `t`). `false` unless a system says so.
    fn is_autonomous(&self) -> bool {
        false
    }

    /// Writes `∂f/∂y (t, y)` into `jac`, row-major: `n × n` when dense, the blocks one
    /// after another (`n / b` blocks of `b × b`) when block-diagonal.
    fn jacobian(&mut self, t: T, y: &[T], jac: &mut [T]);
}

/// The derivative of a Jacobian-vector product inside a vector-Jacobian product,
/// `∂/∂(y, p) [wᵀ J(t, y; p) v]`: the second-order term of the discrete adjoint of a
/// Rosenbrock step, whose matrix `I/(hγ) − J(y)` depends on the state
/// ([`crate::stiff::rosenbrock_gradient`]). [`DualSystem`](super::DualSystem) has it
/// exactly from hyper-dual numbers.
pub trait JacobianVjp<T: Real>: Vjp<T> + Jacobian<T> {
    /// Writes `∂/∂y [wᵀ J v]` into `grad_y` and adds `∂/∂p [wᵀ J v]` to `grad_p`.
    fn jacobian_vjp(&mut self, t: T, y: &[T], w: &[T], v: &[T], grad_y: &mut [T], grad_p: &mut [T]);
}

/// A right-hand side with a hand-written VJP, from two closures:
/// `rhs(t, y, dy)` and `vjp(t, y, w, grad_y, grad_p)` (see [`Vjp::vjp`]).
pub struct WithVjp<R, V> {
    /// The right-hand side.
    pub rhs: R,
    /// Its vector-Jacobian product (see [`Vjp::vjp`]).
    pub vjp: V,
    /// Number of parameters the VJP reports on.
    pub n_params: usize,
}

impl<T, R, V> OdeSystem<T> for WithVjp<R, V>
where
    T: Real,
    R: FnMut(T, &[T], &mut [T]),
    V: FnMut(T, &[T], &[T], &mut [T], &mut [T]),
{
    fn rhs(&mut self, t: T, y: &[T], dy: &mut [T]) {
        (self.rhs)(t, y, dy)
    }
}

impl<T, R, V> Vjp<T> for WithVjp<R, V>
where
    T: Real,
    R: FnMut(T, &[T], &mut [T]),
    V: FnMut(T, &[T], &[T], &mut [T], &mut [T]),
{
    fn n_params(&self) -> usize {
        self.n_params
    }

    fn vjp(&mut self, t: T, y: &[T], w: &[T], grad_y: &mut [T], grad_p: &mut [T]) {
        (self.vjp)(t, y, w, grad_y, grad_p)
    }
}

/// A system written once, generic over the number type, so that its derivatives come
/// from dual numbers ([`DualSystem`](super::DualSystem)): a mechanistic model such as
/// Lotka–Volterra needs no hand-written derivative.
///
/// ```
/// use cnflow::ode::GenericSystem;
/// use num_dual::DualNum;
///
/// /// dx = a x − b x y,  dy = −c y + d x y.
/// struct LotkaVolterra;
/// impl GenericSystem for LotkaVolterra {
///     fn dim(&self) -> usize { 2 }
///     fn n_params(&self) -> usize { 4 }
///     fn eval<D: DualNum<Primitive = f64> + Copy>(&self, _t: D, y: &[D], p: &[D], dy: &mut [D]) {
///         dy[0] = p[0] * y[0] - p[1] * y[0] * y[1];
///         dy[1] = -p[2] * y[1] + p[3] * y[0] * y[1];
///     }
/// }
/// ```
pub trait GenericSystem {
    /// State dimension.
    fn dim(&self) -> usize;
    /// Number of parameters.
    fn n_params(&self) -> usize;
    /// Writes `f(t, y; p)` into `dy`, in any number type (`f64` or a dual number).
    fn eval<D: num_dual::DualNum<Primitive = f64> + Copy>(&self, t: D, y: &[D], p: &[D], dy: &mut [D]);
}

/// Which of a system's evaluations are stages of accepted steps, from the driver's
/// [`StepEvent`]s: the bookkeeping of a system (or wrapper) that keeps something per
/// evaluation in slots of its own and answers [`Vjp::vjp_stage`] from them.
///
/// At each evaluation take a slot with [`StageSlots::take`] (a vacant one, or a new one
/// the caller makes), store the evaluation there, and report it with
/// [`StageSlots::record`]; pass every event on to [`StageSlots::event`]. Slots of
/// evaluations that were not stages become vacant and are handed out again.
#[derive(Clone, Debug, Default)]
pub struct StageSlots {
    /// The slots of every accepted step's stages `k_1..k_s`, one step after another.
    pub steps: Vec<usize>,
    /// Where each accepted step's slots start in `steps`.
    starts: Vec<usize>,
    vacant: Vec<usize>,
    pending: Vec<usize>,
    first: Option<usize>,
}

impl StageSlots {
    /// A vacant slot, if any (otherwise the caller makes a new one).
    pub fn take(&mut self) -> Option<usize> {
        self.vacant.pop()
    }

    /// Whether no slot is vacant.
    pub fn none_vacant(&self) -> bool {
        self.vacant.is_empty()
    }

    /// The evaluation just made is in `slot`.
    pub fn record(&mut self, slot: usize) {
        if self.first.is_none() {
            self.first = Some(slot);
        } else {
            self.pending.push(slot);
        }
    }

    /// The driver's event after an attempted step.
    pub fn event(&mut self, event: StepEvent) {
        match event {
            StepEvent::Start => {
                self.vacant.append(&mut self.pending);
                self.first = None;
            }
            StepEvent::Probe => self.vacant.extend(self.pending.pop()),
            StepEvent::Rejected => self.vacant.append(&mut self.pending),
            StepEvent::Accepted { fsal } => {
                self.starts.push(self.steps.len());
                self.steps.extend(self.first);
                self.steps.append(&mut self.pending);
                self.first = if fsal { self.steps.last().copied() } else { None };
            }
        }
    }

    /// The slot of stage `stage` of accepted step `step` (counted from 0 since the slots
    /// were made or cleared).
    pub fn slot(&self, step: usize, stage: usize) -> Option<usize> {
        let at = self.starts.get(step)? + stage;
        let end = self.starts.get(step + 1).copied().unwrap_or(self.steps.len());
        (at < end).then(|| self.steps[at])
    }

    /// Forgets everything (a new solve).
    pub fn clear(&mut self) {
        *self = StageSlots::default();
    }
}
