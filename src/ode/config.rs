//! Solver settings: the method, the step-size control, the output request.
//!
//! Tolerances have no silent defaults: an adaptive solve is built from an explicit
//! `rtol` and `atol`. Everything is validated once, when a [`Solver`](super::Solver) is
//! made or a solve starts; the stepping loop trusts it.

use super::controller::PiController;
use super::error::{ConfigError, SolveError};
use super::tableau::Method;

/// Adaptive step-size control by an embedded error estimate.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adaptive {
    /// Relative tolerance (≥ 0).
    pub rtol: f64,
    /// Absolute tolerance (≥ 0; `rtol` and `atol` not both zero).
    pub atol: f64,
    /// First step size (magnitude); `None` picks it by Hairer's heuristic (two evaluations).
    pub h0: Option<f64>,
    /// Smallest step size allowed before the solve fails (magnitude; 0 = only underflow).
    pub h_min: f64,
    /// Largest step size allowed (magnitude).
    pub h_max: Option<f64>,
    /// The step-size controller's gains (PI by default; I and PID are the same type).
    pub controller: PiController,
}

/// How the step size is chosen.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum StepControl {
    /// Adaptive steps under error control.
    Adaptive(Adaptive),
    /// Fixed steps of this size (magnitude); the last step is shortened to land on `t1`.
    FixedSize(f64),
    /// This many equal fixed steps across the span.
    FixedSteps(usize),
}

/// Everything a solve needs besides the system, the span and the initial state.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SolverConfig {
    /// The Runge–Kutta method.
    pub method: Method,
    /// How the step size is chosen.
    pub step: StepControl,
    /// Most steps (accepted plus rejected) a solve may take.
    pub max_steps: usize,
    /// Components that take part in error control (`true`) — a seminorm when some are
    /// `false`. `None` controls every component.
    pub error_mask: Option<Vec<bool>>,
    /// An implicit method ([`crate::stiff`]: TR-BDF2 or KVAERNO5) to use instead of
    /// `method`, at the same tolerances, where the solve supports one: a CNF's
    /// log-densities, samples and training gradients (block-diagonal Newton, one block
    /// per point: its `z`, `Δ` and regularizer integrals, the integrals out of error
    /// control as in the explicit solves; with `FixedSteps`, Newton converges to 1e-6).
    /// The explicit [`Solver`](super::Solver) refuses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implicit: Option<crate::stiff::StiffMethod>,
}

/// Default step budget of a solve.
pub const DEFAULT_MAX_STEPS: usize = 100_000;

impl SolverConfig {
    /// Adaptive stepping with the given tolerances, PI control and an automatic first step.
    pub fn adaptive(method: Method, rtol: f64, atol: f64) -> Self {
        SolverConfig {
            method,
            step: StepControl::Adaptive(Adaptive {
                rtol,
                atol,
                h0: None,
                h_min: 0.0,
                h_max: None,
                controller: PiController::default(),
            }),
            max_steps: DEFAULT_MAX_STEPS,
            error_mask: None,
            implicit: None,
        }
    }

    /// `n_steps` equal fixed steps across the span.
    pub fn fixed_steps(method: Method, n_steps: usize) -> Self {
        SolverConfig {
            method,
            step: StepControl::FixedSteps(n_steps),
            max_steps: DEFAULT_MAX_STEPS,
            error_mask: None,
            implicit: None,
        }
    }

    /// Fixed steps of size `h` (the last one shortened to land on the end time).
    pub fn fixed_size(method: Method, h: f64) -> Self {
        SolverConfig {
            method,
            step: StepControl::FixedSize(h),
            max_steps: DEFAULT_MAX_STEPS,
            error_mask: None,
            implicit: None,
        }
    }

    /// Adaptive steps of the implicit `method` (TR-BDF2 or KVAERNO5) at the given
    /// tolerances, for the solves that take one (see [`SolverConfig::implicit`]).
    pub fn implicit(method: crate::stiff::StiffMethod, rtol: f64, atol: f64) -> Self {
        SolverConfig {
            implicit: Some(method),
            ..SolverConfig::adaptive(Method::Dopri5, rtol, atol)
        }
    }

    /// The stiff solver's settings of an [`implicit`](SolverConfig::implicit) config
    /// (`None` for an explicit one): the same tolerances, first and largest step, step
    /// budget; `FixedSteps` become equal steps without error control.
    pub fn stiff_config(&self) -> Option<Result<crate::stiff::StiffConfig, SolveError>> {
        use crate::stiff::StiffConfig;
        let method = self.implicit?;
        let config = match &self.step {
            StepControl::Adaptive(a) => StiffConfig {
                h0: a.h0,
                h_max: a.h_max,
                max_steps: self.max_steps,
                ..StiffConfig::adaptive(method, a.rtol, a.atol)
            },
            StepControl::FixedSteps(n) => StiffConfig {
                max_steps: self.max_steps,
                ..StiffConfig::fixed(method, *n, 1e-6, 1e-6)
            },
            StepControl::FixedSize(h) => {
                return Some(Err(ConfigError::Setting {
                    name: "fixed step size",
                    value: *h,
                    need: "is not available with an implicit method; give a number of steps or tolerances",
                }
                .into()))
            }
        };
        Some(Ok(config))
    }

    /// Sets the step budget.
    pub fn with_max_steps(mut self, max_steps: usize) -> Self {
        self.max_steps = max_steps;
        self
    }

    /// Sets the error mask (a seminorm): `false` components are integrated but left out
    /// of step-size control.
    pub fn with_error_mask(mut self, mask: Vec<bool>) -> Self {
        self.error_mask = Some(mask);
        self
    }

    /// Sets the first step size (adaptive stepping only; ignored for fixed steps).
    pub fn with_h0(mut self, h0: f64) -> Self {
        if let StepControl::Adaptive(a) = &mut self.step {
            a.h0 = Some(h0);
        }
        self
    }

    /// Sets the smallest step size (adaptive stepping only).
    pub fn with_h_min(mut self, h_min: f64) -> Self {
        if let StepControl::Adaptive(a) = &mut self.step {
            a.h_min = h_min;
        }
        self
    }

    /// Sets the largest step size (adaptive stepping only).
    pub fn with_h_max(mut self, h_max: f64) -> Self {
        if let StepControl::Adaptive(a) = &mut self.step {
            a.h_max = Some(h_max);
        }
        self
    }

    /// Sets the step-size controller (adaptive stepping only).
    pub fn with_controller(mut self, controller: PiController) -> Self {
        if let StepControl::Adaptive(a) = &mut self.step {
            a.controller = controller;
        }
        self
    }

    /// Checks every setting that does not depend on the state's dimension.
    pub fn validate(&self) -> Result<(), SolveError> {
        if matches!(self.step, StepControl::Adaptive(_)) && !self.method.tableau().is_adaptive() {
            return Err(ConfigError::NotAdaptive {
                method: self.method.name(),
            }
            .into());
        }
        self.validate_steps()
    }

    /// [`SolverConfig::validate`] without the method (for a stepper or tableau of the
    /// caller's own).
    pub fn validate_steps(&self) -> Result<(), SolveError> {
        let bad = |name: &'static str, value: f64, need: &'static str| {
            Err(SolveError::InvalidConfig(ConfigError::Setting { name, value, need }))
        };
        if self.max_steps == 0 {
            return bad("max_steps", 0.0, "must be at least 1");
        }
        match &self.step {
            StepControl::Adaptive(a) => {
                if !(a.rtol >= 0.0 && a.rtol.is_finite()) {
                    return bad("rtol", a.rtol, "must be a finite number ≥ 0");
                }
                if !(a.atol >= 0.0 && a.atol.is_finite()) {
                    return bad("atol", a.atol, "must be a finite number ≥ 0");
                }
                if a.rtol == 0.0 && a.atol == 0.0 {
                    return Err(ConfigError::ZeroTolerances.into());
                }
                if let Some(h0) = a.h0 {
                    if !(h0 > 0.0 && h0.is_finite()) {
                        return bad("h0", h0, "must be a finite number > 0 (its sign follows the span)");
                    }
                }
                if !(a.h_min >= 0.0 && a.h_min.is_finite()) {
                    return bad("h_min", a.h_min, "must be a finite number ≥ 0");
                }
                if let Some(h_max) = a.h_max {
                    if h_max.is_nan() || h_max <= 0.0 || h_max < a.h_min {
                        return bad("h_max", h_max, "must be > 0 and ≥ h_min");
                    }
                }
                a.controller.validate()?;
            }
            StepControl::FixedSize(h) => {
                if !(*h > 0.0 && h.is_finite()) {
                    return bad("fixed step size", *h, "must be a finite number > 0");
                }
            }
            StepControl::FixedSteps(n) => {
                if *n == 0 {
                    return bad("the number of fixed steps", 0.0, "must be at least 1");
                }
            }
        }
        Ok(())
    }
}

/// What a solve returns besides the final state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SaveAt<T> {
    /// Times at which to report the state, in the direction of integration, within the
    /// span; served by the method's dense output, so they force no extra steps.
    pub t: Vec<T>,
    /// Also report every accepted step: its end time and state (the grid, `t0` included).
    pub steps: bool,
}

impl<T> SaveAt<T> {
    /// Report the state at these times.
    pub fn times(t: Vec<T>) -> Self {
        SaveAt { t, steps: false }
    }

    /// Report the accepted step grid.
    pub fn steps() -> Self {
        SaveAt {
            t: Vec::new(),
            steps: true,
        }
    }
}
