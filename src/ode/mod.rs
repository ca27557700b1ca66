//! ODE integration: systems in derivative layers, steppers, step-size controllers and
//! the one driver loop.
//!
//! Solves `dy/dt = f(t, y)`, `y(t0) = y0` up to `t1` (forward or backward in time) for a
//! flat state `y` — a batch of `B × d` points is one system of `B·d` components, as in
//! torchdiffeq. The module knows nothing of networks.
//!
//! - A system is an [`OdeSystem`] (a closure will do), with derivative layers on top
//!   ([`Jvp`], [`Vjp`], [`Jacobian`]); a [`GenericSystem`] gets them all from dual
//!   numbers through [`DualSystem`].
//! - A method is a [`Tableau`] (data), run by the [`ExplicitRk`] [`Stepper`]; [`Method`]
//!   names the shipped ones, and [`Solver::with_tableau`] takes a caller's own.
//! - Adaptive stepping controls the weighted RMS norm
//!   `sqrt(mean_i (err_i / (atol + rtol·max(|y_i|, |y_new_i|)))²)` over the components
//!   of an optional error mask (a seminorm), with a stateful [`StepSizeController`]
//!   (I, PI or PID: [`PidController`]).
//! - [`Solver::solve`] runs the loop; [`Solver::start`] hands it to the caller, one
//!   [`Integration::step`] at a time.
//! - Output at any times comes from the method's dense output and forces no extra steps.
//! - Failures are [`SolveError`] values that carry `t`, `h` and the step count.
//!
//! ```
//! use cnflow::ode::{integrate, Method, SaveAt, SolverConfig};
//!
//! // Harmonic oscillator y'' = -y from (1, 0): y(t) = (cos t, -sin t).
//! let mut f = |_t: f64, y: &[f64], dy: &mut [f64]| {
//!     dy[0] = y[1];
//!     dy[1] = -y[0];
//! };
//! let config = SolverConfig::adaptive(Method::Tsit5, 1e-9, 1e-9);
//! let save = SaveAt::times(vec![0.5, 1.3, 2.0]);
//! let sol = integrate(&mut f, &[1.0, 0.0], 0.0, 2.0, &config, &save).unwrap();
//! assert!((sol.y_at(1)[0] - 1.3f64.cos()).abs() < 1e-7);
//! println!("{} evaluations, {} steps", sol.stats.n_evals, sol.stats.n_accepted);
//! ```

mod config;
mod controller;
mod dual;
mod error;
pub mod problems;
mod solver;
mod stepper;
mod system;
mod tableau;

pub use config::{Adaptive, SaveAt, SolverConfig, StepControl, DEFAULT_MAX_STEPS};
pub use controller::{PiController, PidController, PidState, StepSizeController};
pub use dual::DualSystem;
pub use error::{ConfigError, SolveError};
pub use solver::{integrate, Integration, Solution, Solver, Stats, StepOutcome};
pub(crate) use stepper::Coefficients;
pub use stepper::{ExplicitRk, Stepper};
pub use system::{
    GenericSystem, Jacobian, JacobianShape, JacobianVjp, Jvp, OdeSystem, StageSlots, StepEvent, Vjp, WithVjp,
};
pub use tableau::{Interpolant, Method, Tableau, BOSH3, DOPRI5, EULER, HEUN, MIDPOINT, RK4, TSIT5};
