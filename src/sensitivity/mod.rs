//! Gradients of a loss on a solution, for any system with vector-Jacobian products.
//!
//! For a loss `L = Σᵢ ℓᵢ(y(tᵢ))` at observation times `t₀ < t₁ < … < t_N` (the solve
//! runs from `t₀` to `t_N`), with `dy/dt = f(t, y; p)`:
//!
//! - **Continuous adjoint** (optimise-then-discretise; Chen et al. 2018): solve
//!
//!   ```text
//!   dy/dt = f,     da/dt = −aᵀ ∂f/∂y,     da_p/dt = −aᵀ ∂f/∂p
//!   ```
//!
//!   backwards from `a(t_N) = ∂ℓ_N/∂y`, adding `∂ℓᵢ/∂y(tᵢ)` to `a` at each earlier `tᵢ`
//!   (a jump) before going on, and restarting `y` there from the forward solution.
//!   Then `dL/dy₀ = a(t₀)`, `dL/dp = a_p(t₀)`, `dL/dt₀ = −a(t₀⁺)ᵀ f(t₀, y₀)` (the
//!   adjoint before its jump at `t₀`, since `y(t₀) = y₀` does not move with `t₀`) and
//!   `dL/dt_N = ∂ℓ_N/∂yᵀ f(t_N, y(t_N))`. Memory is flat in the number of steps; the
//!   gradient is as accurate as the backward solve. With the seminorm (Kidger et al.
//!   2021) `a_p` is left out of step-size control.
//! - **Discrete adjoint** (discretise-then-optimise, "backprop"): reverse mode through
//!   the accepted steps of an explicit Runge–Kutta solve, the step sizes held fixed; the
//!   exact gradient of the discrete solution. Its memory is a [`Checkpointing`] policy:
//!   keep every stage, keep the step starts and recompute each step's stages, or
//!   binomial checkpointing (Griewank 1992; Griewank & Walther 2000, "revolve") under a
//!   budget of stored states, recomputing steps from the nearest checkpoint. All three
//!   give bit-identical gradients.
//!
//! The solve is split at the observation times, so each `y(tᵢ)` is a step point and the
//! discrete adjoint differentiates exactly what the loss saw.

mod adjoint;
mod discrete;
mod revolve;

use crate::ode::{SolveError, Vjp};
use crate::Real;

pub use adjoint::{adjoint_backward, AdjointBackward, AdjointRhs};
pub use discrete::{discrete_forward, DiscreteBackward, DiscreteForward};
pub use revolve::split_point;

/// How the gradient is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SensitivityMethod {
    /// Continuous adjoint; `seminorm` leaves `a_p` out of the backward error control.
    Adjoint {
        /// Use the seminorm.
        seminorm: bool,
    },
    /// Discrete adjoint through the accepted steps, with this memory policy.
    Backprop(Checkpointing),
}

/// What the discrete adjoint keeps of the forward solve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checkpointing {
    /// Every stage's input and derivative (no recomputation).
    All,
    /// The state at every step start; each step's stages are recomputed once.
    StepStarts,
    /// At most `budget` states (besides those at the observation times) at once:
    /// binomial checkpointing, recomputing steps forward from the nearest checkpoint.
    Revolve {
        /// States that may be stored at once within a segment between observations.
        budget: usize,
    },
}

/// A loss at the observation times: `ℓᵢ(y(tᵢ))` and its gradient.
pub trait Loss<T> {
    /// Returns `ℓᵢ` at observation `i` (time `t`, state `y`) and writes `∂ℓᵢ/∂y` into
    /// `grad` (zeroed by the caller).
    fn eval(&mut self, i: usize, t: T, y: &[T], grad: &mut [T]) -> f64;
}

impl<T, F: FnMut(usize, T, &[T], &mut [T]) -> f64> Loss<T> for F {
    fn eval(&mut self, i: usize, t: T, y: &[T], grad: &mut [T]) -> f64 {
        self(i, t, y, grad)
    }
}

/// The loss, its gradients and the work done.
#[derive(Clone, Debug, PartialEq)]
pub struct Sensitivity<T> {
    /// `L = Σᵢ ℓᵢ`.
    pub loss: f64,
    /// States at the observation times, row-major (`times × n`).
    pub y: Vec<T>,
    /// `dL/dy₀`.
    pub grad_y0: Vec<T>,
    /// `dL/dp`.
    pub grad_params: Vec<T>,
    /// `dL/dt₀` and `dL/dt_N` (continuous adjoint only; the discrete adjoint holds the
    /// grid fixed).
    pub grad_t0: Option<T>,
    /// See `grad_t0`.
    pub grad_t1: Option<T>,
    /// Evaluations of the forward solve.
    pub n_evals_forward: usize,
    /// Evaluations of the backward pass: VJPs plus right-hand sides recomputed.
    pub n_evals_backward: usize,
    /// Most states held at once by the discrete adjoint's checkpoints (0 for the
    /// continuous adjoint; every step start for [`Checkpointing::StepStarts`]; every
    /// stage for [`Checkpointing::All`], counted in states of length `n`).
    pub peak_stored_states: usize,
}

/// Why a gradient could not be computed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SensitivityError {
    /// The forward or backward solve failed (its reason quoted, not chained).
    #[error("{direction} solve failed: {error}")]
    Solve {
        /// "forward" or "adjoint".
        direction: &'static str,
        /// What went wrong.
        error: SolveError,
    },
    /// Fewer than two observation times, or times not strictly increasing.
    #[error(
        "observation time #{index} = {t} is invalid: give at least two times (the first is \
         the start), strictly increasing"
    )]
    InvalidTimes {
        /// Position of the offending time.
        index: usize,
        /// Its value.
        t: f64,
    },
    /// The initial state has the wrong length.
    #[error("the initial state has {got} components, the system {expected}")]
    Dimension {
        /// Its length.
        got: usize,
        /// The length the loss and system were given.
        expected: usize,
    },
    /// A revolve budget of zero stored states.
    #[error("checkpoint budget {budget} is too small: revolve needs at least 1 stored state")]
    Budget {
        /// The budget given.
        budget: usize,
    },
}

pub(crate) fn check_times<T: Real>(times: &[T]) -> Result<(), SensitivityError> {
    if times.len() < 2 {
        return Err(SensitivityError::InvalidTimes {
            index: times.len(),
            t: f64::NAN,
        });
    }
    for i in 0..times.len() {
        let ok = times[i].is_finite() && (i == 0 || times[i] > times[i - 1]);
        if !ok {
            return Err(SensitivityError::InvalidTimes {
                index: i,
                t: times[i].f64(),
            });
        }
    }
    Ok(())
}

/// The gradient of `Σᵢ ℓᵢ(y(tᵢ))` for `dy/dt = f(t, y; p)`, `y(t₀) = y₀` with
/// `t₀ = times[0]`, by `method`, solving with `solver` (its method's tableau for the
/// discrete adjoint).
pub fn gradient<T: Real, S: Vjp<T> + ?Sized, L: Loss<T>>(
    system: &mut S,
    y0: &[T],
    times: &[T],
    loss: &mut L,
    solver: &crate::ode::SolverConfig,
    method: SensitivityMethod,
) -> Result<Sensitivity<T>, SensitivityError> {
    check_times(times)?;
    if y0.is_empty() {
        return Err(SensitivityError::Dimension { got: 0, expected: 1 });
    }
    match method {
        SensitivityMethod::Adjoint { seminorm } => adjoint::continuous(system, y0, times, loss, solver, seminorm),
        SensitivityMethod::Backprop(policy) => discrete::backprop(system, y0, times, loss, solver, policy),
    }
}
