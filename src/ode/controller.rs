//! Step-size controllers: values of their own, with their own state.
//!
//! After an attempted step with weighted RMS error `err_n` (accept when `err_n ≤ 1`), a
//! PID controller (Söderlind 2003; Hairer, Nørsett & Wanner, Solving ODEs I, §IV.2 for
//! the PI case) proposes
//!
//! ```text
//! h_new = h · clamp(safety · err_n^(−β1/k) · err_{n−1}^(β2/k) · err_{n−2}^(−β3/k), factor_min, factor_max)
//! ```
//!
//! where `k` is one more than the lower order of the embedded pair and `err_{n−1}`,
//! `err_{n−2}` are the errors of the previous accepted steps. `β2 = β3 = 0` is the
//! classical I controller, `β3 = 0` the PI controller. After a rejection the step never
//! grows until a step is accepted. Fixed steps are the constant controller
//! ([`StepControl::FixedSize`](super::StepControl), `FixedSteps`).

use super::error::{ConfigError, SolveError};

/// A stateful step-size controller: told each attempt's error, it decides whether the
/// step is accepted and by what factor the next step size changes.
pub trait StepSizeController {
    /// Forgets the history (a new solve starts).
    fn reset(&mut self);
    /// Decides on an attempt with weighted error `err` (non-finite when the attempt
    /// produced NaN or inf) for error exponent `k`: `(accepted, factor on h)`.
    fn decide(&mut self, err: f64, k: u32) -> (bool, f64);
}

/// The gains of a PID step-size controller (see the module docs); `PiController` is
/// the same type, named for its default use.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PidController {
    /// Safety factor, in (0, 1].
    pub safety: f64,
    /// Smallest factor a step may shrink by, in (0, 1).
    pub factor_min: f64,
    /// Largest factor a step may grow by, > 1.
    pub factor_max: f64,
    /// Integral gain `β1`.
    pub beta1: f64,
    /// Proportional gain `β2` (0 gives the classical I controller).
    pub beta2: f64,
    /// Derivative gain `β3` (0 gives the PI controller).
    #[serde(default)]
    pub beta3: f64,
}

/// The PI controller: a [`PidController`] with `β3 = 0`.
pub type PiController = PidController;

impl Default for PidController {
    /// The PI gains `β1 = 0.85, β2 = 0.2` of Hairer's DOPRI5 code written per unit order
    /// (there `α = 0.17, β = 0.04` at `k = 5`).
    fn default() -> Self {
        PidController {
            safety: 0.9,
            factor_min: 0.2,
            factor_max: 10.0,
            beta1: 0.85,
            beta2: 0.2,
            beta3: 0.0,
        }
    }
}

impl PidController {
    /// The classical I controller (`β1 = 1`, no memory).
    pub fn i() -> Self {
        PidController {
            beta1: 1.0,
            beta2: 0.0,
            ..Self::default()
        }
    }

    /// The default PI controller.
    pub fn pi() -> Self {
        Self::default()
    }

    /// A PID controller with gains `(β1, β2, β3)` per unit of the exponent order `k`
    /// (the module docs give the formula); the other settings as in the default.
    pub fn pid(beta1: f64, beta2: f64, beta3: f64) -> Self {
        PidController {
            beta1,
            beta2,
            beta3,
            ..Self::default()
        }
    }

    /// Step-size factor after an accepted step with error `err`, the two previous
    /// accepted steps having had `err_prev` and `err_prev2`; `k` is the exponent order.
    pub fn accept_factor(&self, err: f64, err_prev: f64, err_prev2: f64, k: u32) -> f64 {
        if err == 0.0 {
            return self.factor_max;
        }
        let k = k as f64;
        let mut f = self.safety * err.powf(-self.beta1 / k) * err_prev.powf(self.beta2 / k);
        if self.beta3 != 0.0 {
            f *= err_prev2.powf(-self.beta3 / k);
        }
        f.clamp(self.factor_min, self.factor_max)
    }

    /// Step-size factor after a rejected step with error `err > 1`.
    pub fn reject_factor(&self, err: f64, k: u32) -> f64 {
        if !err.is_finite() {
            return self.factor_min;
        }
        (self.safety * err.powf(-1.0 / k as f64)).clamp(self.factor_min, 1.0)
    }

    /// The controller with its history, ready for a solve.
    pub fn state(self) -> PidState {
        PidState {
            gains: self,
            err_prev: 1.0,
            err_prev2: 1.0,
            rejected_last: false,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), SolveError> {
        let ok = self.safety > 0.0
            && self.safety <= 1.0
            && self.factor_min > 0.0
            && self.factor_min < 1.0
            && self.factor_max > 1.0
            && self.factor_max.is_finite()
            && self.beta1 > 0.0
            && self.beta1.is_finite()
            && self.beta2.is_finite()
            && self.beta3.is_finite();
        if ok {
            Ok(())
        } else {
            Err(ConfigError::Controller {
                safety: self.safety,
                factor_min: self.factor_min,
                factor_max: self.factor_max,
                beta1: self.beta1,
            }
            .into())
        }
    }
}

/// A [`PidController`] with the errors of the last accepted steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PidState {
    /// The gains.
    pub gains: PidController,
    err_prev: f64,
    err_prev2: f64,
    rejected_last: bool,
}

impl StepSizeController for PidState {
    fn reset(&mut self) {
        *self = self.gains.state();
    }

    fn decide(&mut self, err: f64, k: u32) -> (bool, f64) {
        if !err.is_finite() {
            self.rejected_last = true;
            return (false, self.gains.factor_min);
        }
        if err <= 1.0 {
            let mut factor = self.gains.accept_factor(err, self.err_prev, self.err_prev2, k);
            if self.rejected_last {
                factor = factor.min(1.0);
            }
            self.err_prev2 = self.err_prev;
            self.err_prev = err.max(1e-4);
            self.rejected_last = false;
            (true, factor)
        } else {
            self.rejected_last = true;
            (false, self.gains.reject_factor(err, k))
        }
    }
}
