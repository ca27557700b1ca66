//! Failures of a solve, as values: each carries where it happened and says what to try.

/// Why a solve failed. Times and step sizes are widened to `f64` for reporting.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SolveError {
    /// A start or end time is NaN or infinite.
    #[error("invalid time span: t0 = {t0}, t1 = {t1}; both ends must be finite numbers")]
    InvalidSpan {
        /// Start time.
        t0: f64,
        /// End time.
        t1: f64,
    },
    /// Start and end times are equal.
    #[error("empty time span: t0 = t1 = {t}; give an end time different from the start time")]
    EmptySpan {
        /// The common time.
        t: f64,
    },
    /// The solver configuration is unusable; the error names the field.
    #[error("invalid solver configuration: {0}")]
    InvalidConfig(#[from] ConfigError),
    /// The initial state or the error mask has the wrong length, or the state is empty.
    #[error("state dimension mismatch: {what} has {got} components, expected {expected}")]
    DimensionMismatch {
        /// What was checked.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The length required.
        expected: usize,
    },
    /// A requested output time lies outside the span or out of order.
    #[error(
        "output time #{index} = {t} is invalid: output times must be finite, lie within \
         [{t0}, {t1}] and be ordered in the direction of integration"
    )]
    InvalidOutputTime {
        /// Position in the requested list.
        index: usize,
        /// The offending time.
        t: f64,
        /// Start time.
        t0: f64,
        /// End time.
        t1: f64,
    },
    /// The step size had to shrink below `h_min` (or underflowed against `t`).
    #[error(
        "step size {h:e} at t = {t} fell below the minimum {h_min:e} after {n_steps} steps; \
         loosen rtol/atol, lower h_min, or check the vector field for blow-up or stiffness near t = {t}"
    )]
    StepSizeTooSmall {
        /// Time reached.
        t: f64,
        /// The step size that was too small.
        h: f64,
        /// The smallest step allowed (the explicit `h_min`, or the floating-point limit at `t`).
        h_min: f64,
        /// Steps taken (accepted and rejected).
        n_steps: usize,
    },
    /// The solve needed more steps than allowed.
    #[error(
        "reached max_steps = {max_steps} at t = {t} (h = {h:e}) after {n_steps} steps; \
         raise max_steps, loosen rtol/atol, or check the vector field for stiffness or blow-up"
    )]
    MaxStepsExceeded {
        /// Time reached.
        t: f64,
        /// Current step size.
        h: f64,
        /// Steps taken (accepted and rejected).
        n_steps: usize,
        /// The limit.
        max_steps: usize,
    },
    /// The state or the vector field became NaN or infinite.
    #[error(
        "non-finite value (NaN or inf) in the {what} at t = {t} (h = {h:e}) after {n_steps} steps; \
         check the vector field for blow-up or invalid operations, or use a smaller step"
    )]
    NonFinite {
        /// Where the value appeared: "initial state", "vector field" or "state".
        what: &'static str,
        /// Time reached.
        t: f64,
        /// Current step size.
        h: f64,
        /// Steps taken (accepted and rejected).
        n_steps: usize,
    },
    /// Newton's iteration of an implicit step did not converge, even with a fresh
    /// Jacobian (fixed steps), or only at step sizes below the minimum (adaptive).
    #[error(
        "Newton's iteration did not converge at t = {t} (h = {h:e}) after {iterations} iterations \
         ({n_steps} steps); use smaller steps or an adaptive method, loosen the tolerances, \
         check the Jacobian, or check the vector field for blow-up near t = {t}"
    )]
    NewtonFailed {
        /// Time of the step's start.
        t: f64,
        /// Step size tried.
        h: f64,
        /// Iterations of the last attempt.
        iterations: usize,
        /// Steps taken (accepted and rejected).
        n_steps: usize,
    },
    /// The iteration matrix `I − hγJ` of an implicit step is singular at every step size tried.
    #[error(
        "the iteration matrix I - h*gamma*J is singular at t = {t} (h = {h:e}) after {n_steps} steps; \
         check the Jacobian for NaN or for rows of zeros in a component with no dynamics"
    )]
    SingularMatrix {
        /// Time of the step's start.
        t: f64,
        /// Step size tried.
        h: f64,
        /// Steps taken (accepted and rejected).
        n_steps: usize,
    },
    /// [`Integration::step`](super::Integration::step) was called after the end time.
    #[error("the solve already reached its end time t = {t}; start a new one")]
    Finished {
        /// The end time.
        t: f64,
    },
}

/// What is wrong with a solver configuration.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A numeric setting out of its range.
    #[error("{name} = {value} {need}")]
    Setting {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: f64,
        /// What it must be.
        need: &'static str,
    },
    /// Both tolerances are zero.
    #[error("rtol and atol are both 0; give at least one positive tolerance")]
    ZeroTolerances,
    /// Adaptive steps asked of a method without an error estimate.
    #[error(
        "method {method} has no error estimate, so it cannot adapt its step size; \
         use fixed steps, or choose bosh3, dopri5 or tsit5"
    )]
    NotAdaptive {
        /// The method's name.
        method: &'static str,
    },
    /// An implicit method given to the explicit solver.
    #[error(
        "the implicit method {method} is not available for this solve (explicit Runge-Kutta only); \
         choose dopri5, tsit5 or bosh3 here"
    )]
    ImplicitNotSupported {
        /// The method's name.
        method: &'static str,
    },
    /// Controller gains out of range.
    #[error(
        "controller safety = {safety}, factor_min = {factor_min}, factor_max = {factor_max}, \
         beta1 = {beta1}: need 0 < safety ≤ 1, 0 < factor_min < 1 < factor_max, beta1 > 0 and finite gains"
    )]
    Controller {
        /// Safety factor.
        safety: f64,
        /// Smallest shrink factor.
        factor_min: f64,
        /// Largest growth factor.
        factor_max: f64,
        /// Integral gain.
        beta1: f64,
    },
    /// A tableau that fails its identities ([`Tableau::check`](super::Tableau::check)).
    #[error("tableau fails its identities: {0}")]
    Tableau(String),
}
