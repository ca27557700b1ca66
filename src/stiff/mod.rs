//! Stiff problems: implicit and Rosenbrock methods with Newton's method on dense LU.
//!
//! A stiff system needs its Jacobian `J = ∂f/∂y`: any [`OdeSystem`] that is also a
//! [`Jacobian`] will do — analytic ([`problems`] writes them out), from dual numbers
//! ([`DualSystem`](crate::ode::DualSystem)), or by forward differences ([`FdJacobian`]
//! around a plain closure).
//!
//! | method | kind | order | when to choose it |
//! |---|---|---|---|
//! | [`StiffMethod::Bdf`] | variable-order BDF 1–5 (NDF form) | 1–5 | the default: fewest Jacobians and factorisations, large systems, most tolerances |
//! | [`StiffMethod::Rodas4`] | Rosenbrock, L-stable, stiffly accurate | 4(3) | no Newton iteration at all; loose to moderate tolerances, small systems |
//! | [`StiffMethod::Radau5`] | Radau IIA collocation, L-stable | 5 | tight tolerances (1e-8 and below), where the others need many more steps |
//! | [`StiffMethod::Kvaerno5`] | ESDIRK, L-stable, stiffly accurate | 5(4) | backprop through an adaptive stiff solve ([`esdirk_gradient`]); one `n × n` factorisation per step size; slower than RODAS4 and RADAU5 on the test set |
//! | [`StiffMethod::TrBdf2`] | TR-BDF2, ESDIRK, L-stable | 2(3) | as KVAERNO5 at order 2; comparison and teaching |
//! | [`StiffMethod::Auto`] | Dopri5, switching to RODAS4 or RADAU5 where stiffness is detected | 5 | problems stiff only in places, or not known to be stiff |
//! | [`StiffMethod::BackwardEuler`] | implicit, L-stable, fixed steps | 1 | teaching, and as the sub-flow of a splitting |
//! | [`StiffMethod::Trapezoid`] | implicit, A-stable, fixed steps | 2 | fixed-step work where damping is unwanted |
//!
//! Gradients through stiff solves: [`theta_gradient`] (backward Euler, trapezoid),
//! [`esdirk_gradient`] (the exact gradient of an adaptive TR-BDF2 or KVAERNO5 solution;
//! [`esdirk_gradient_blocks`] for batches of independent blocks, as a CNF batch),
//! [`rosenbrock_gradient`] (the same for RODAS4, with the second derivatives of
//! [`JacobianVjp`](crate::ode::JacobianVjp))
//! and [`adjoint_gradient`] (the continuous adjoint solved backwards with an implicit
//! method, for when the adjoint is stiff).
//!
//! Adaptive methods control the weighted RMS norm
//! `sqrt(mean_i (err_i / (atol + rtol·|y_i|))²)`; output at the save times comes from
//! each method's dense output. Failures are [`SolveError`] values naming `t`, `h` and
//! what to try ([`SolveError::NewtonFailed`], [`SolveError::SingularMatrix`], …).
//!
//! ```
//! use cnflow::stiff::{problems::Robertson, solve, StiffConfig, StiffMethod};
//!
//! let config = StiffConfig::adaptive(StiffMethod::Bdf, 1e-6, 1e-10);
//! let sol = solve(&mut Robertson, &[1.0, 0.0, 0.0], 0.0, 40.0, &[40.0], &config).unwrap();
//! // y1(40) = 0.71582707 (RADAU5 and BDF at rtol 1e-11 agree to 1e-9)
//! assert!((sol.y_at(0)[0] - 0.7158271).abs() < 1e-5);
//! ```

mod adjoint;
mod auto;
mod bdf;
mod esdirk;
mod linalg;
pub mod problems;
mod radau;
mod rosenbrock;
mod split;

pub(crate) use adjoint::BlockTape;
pub use adjoint::{
    adjoint_gradient, esdirk_gradient, esdirk_gradient_blocks, rosenbrock_gradient, theta_gradient,
    theta_gradient_on_grid, ThetaGradient,
};
pub use linalg::{gmres, DenseLu};
pub use split::{expm, split_solve, Flow, LinearFlow, SolverFlow, Splitting};

use crate::ode::{Jacobian, OdeSystem, SolveError};

/// The stiff methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StiffMethod {
    /// Backward Euler, fixed steps, simplified Newton (order 1, L-stable).
    BackwardEuler,
    /// The implicit trapezoid rule, fixed steps, simplified Newton (order 2, A-stable).
    Trapezoid,
    /// RODAS4: Hairer & Wanner, *Solving ODEs II*, §IV.7 (coefficients of their code
    /// `rodas`, METH = 1): 6 stages, order 4 with an embedded order 3, L-stable,
    /// stiffly accurate, dense output of order 3.
    Rodas4,
    /// TR-BDF2 (Bank et al. 1985) as an ESDIRK method (Hosea & Shampine 1996): a
    /// trapezoid stage and a BDF2 stage, order 2 with an embedded order 3, L-stable,
    /// one factorisation of `I − hγJ` per step size.
    TrBdf2,
    /// KVAERNO5: Kværnø's 7-stage ESDIRK 5(4) pair (BIT 44, 2004), γ = 0.26, L-stable,
    /// stiffly accurate, each stage a simplified-Newton solve with the one factorisation
    /// of `I − hγJ`.
    Kvaerno5,
    /// RADAU5: the 3-stage Radau IIA collocation method of order 5 (Hairer & Wanner,
    /// *Solving ODEs II*, §IV.5 and §IV.8), L-stable, simplified Newton on the whole
    /// stage system, dense output from the collocation polynomial.
    Radau5,
    /// Dopri5 while the problem is not stiff, then RODAS4 (rtol ≥ 1e-6) or RADAU5 from
    /// where stiffness is detected: Hairer's test on Dopri5's last two stages,
    /// `h ‖k₇ − k₆‖ / ‖y₇ − y₆‖ > 3.25` (the step is near the stability boundary) on 15
    /// accepted steps, not interrupted by 6 non-stiff ones in a row (Hairer, Nørsett &
    /// Wanner, *Solving ODEs I*, §II.10), or Dopri5's step size collapsing. The switch
    /// time is in [`StiffSolution::switched_at`].
    Auto,
    /// Variable-order, variable-step BDF of orders 1–5 in the quasi-constant-step NDF form
    /// of Shampine & Reichelt, *The MATLAB ODE Suite* (SIAM J. Sci. Comput. 18, 1997).
    Bdf,
}

impl StiffMethod {
    /// Every method, in the order of the table above.
    pub const ALL: [StiffMethod; 8] = [
        StiffMethod::Auto,
        StiffMethod::Bdf,
        StiffMethod::Rodas4,
        StiffMethod::Radau5,
        StiffMethod::Kvaerno5,
        StiffMethod::TrBdf2,
        StiffMethod::BackwardEuler,
        StiffMethod::Trapezoid,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            StiffMethod::BackwardEuler => "backward-euler",
            StiffMethod::Trapezoid => "trapezoid",
            StiffMethod::Rodas4 => "rodas4",
            StiffMethod::Radau5 => "radau5",
            StiffMethod::TrBdf2 => "tr-bdf2",
            StiffMethod::Kvaerno5 => "kvaerno5",
            StiffMethod::Auto => "auto",
            StiffMethod::Bdf => "bdf",
        }
    }

    /// Order of the propagated solution (the largest, for BDF).
    pub fn order(self) -> u32 {
        match self {
            StiffMethod::BackwardEuler => 1,
            StiffMethod::Trapezoid | StiffMethod::TrBdf2 => 2,
            StiffMethod::Rodas4 => 4,
            StiffMethod::Radau5 | StiffMethod::Auto | StiffMethod::Kvaerno5 => 5,
            StiffMethod::Bdf => 5,
        }
    }

    /// Whether the method adapts its step size.
    pub fn is_adaptive(self) -> bool {
        matches!(
            self,
            StiffMethod::Rodas4
                | StiffMethod::Radau5
                | StiffMethod::TrBdf2
                | StiffMethod::Kvaerno5
                | StiffMethod::Bdf
                | StiffMethod::Auto
        )
    }

    /// The stability function `R(z)` of the one-step methods (`None` for BDF, a
    /// multistep method): from the tableau of the Rosenbrock method
    /// (`R(z) = 1 + z bᵀ (I − z B)⁻¹ 1` with `B = α + Γ`).
    pub fn stability(self, z: f64) -> Option<f64> {
        match self {
            StiffMethod::BackwardEuler => Some(1.0 / (1.0 - z)),
            StiffMethod::Trapezoid => Some((1.0 + z / 2.0) / (1.0 - z / 2.0)),
            StiffMethod::Rodas4 => Some(rosenbrock::rodas4_stability(z)),
            StiffMethod::Radau5 => Some(radau::radau5_stability(z)),
            StiffMethod::TrBdf2 => Some(esdirk::stability(&esdirk::tr_bdf2(), z)),
            StiffMethod::Kvaerno5 => Some(esdirk::stability(&esdirk::kvaerno5(), z)),
            StiffMethod::Bdf | StiffMethod::Auto => None,
        }
    }
}

impl std::fmt::Display for StiffMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for StiffMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        StiffMethod::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            let names: Vec<&str> = StiffMethod::ALL.iter().map(|m| m.name()).collect();
            format!("unknown stiff method '{s}'; choose one of {}", names.join(", "))
        })
    }
}

/// Settings of a stiff solve.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StiffConfig {
    /// The method.
    pub method: StiffMethod,
    /// Relative tolerance (of the error control; of Newton's iteration for fixed steps).
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// First step size; `None` picks it from `f` and its change (Hairer's heuristic).
    pub h0: Option<f64>,
    /// Largest step size.
    pub h_max: Option<f64>,
    /// Number of equal steps: required by the fixed-step methods; RODAS4 and RADAU5 given
    /// it take equal steps without error control; BDF ignores it.
    pub fixed_steps: Option<usize>,
    /// Most steps (accepted plus rejected).
    pub max_steps: usize,
    /// Components that take part in the step-size control of TR-BDF2 and KVAERNO5
    /// (`false`: integrated, not controlled — a CNF's regularizer integrals); `None`
    /// controls every component. The other methods control every component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_mask: Option<Vec<bool>>,
}

impl StiffConfig {
    /// Adaptive stepping at the given tolerances.
    pub fn adaptive(method: StiffMethod, rtol: f64, atol: f64) -> Self {
        StiffConfig {
            method,
            rtol,
            atol,
            h0: None,
            h_max: None,
            fixed_steps: None,
            max_steps: 500_000,
            error_mask: None,
        }
    }

    /// `steps` equal steps of a fixed-step method; Newton converges to `rtol`/`atol`.
    pub fn fixed(method: StiffMethod, steps: usize, rtol: f64, atol: f64) -> Self {
        StiffConfig {
            fixed_steps: Some(steps),
            ..StiffConfig::adaptive(method, rtol, atol)
        }
    }

    fn validate(&self) -> Result<(), SolveError> {
        use crate::ode::ConfigError;
        let bad = |name, value, need| Err(ConfigError::Setting { name, value, need }.into());
        if !(self.rtol >= 0.0 && self.rtol.is_finite()) {
            return bad("rtol", self.rtol, "must be a finite number ≥ 0");
        }
        if !(self.atol >= 0.0 && self.atol.is_finite()) {
            return bad("atol", self.atol, "must be a finite number ≥ 0");
        }
        if self.rtol == 0.0 && self.atol == 0.0 {
            return Err(ConfigError::ZeroTolerances.into());
        }
        if self.method.is_adaptive() && self.rtol < 100.0 * f64::EPSILON && self.atol == 0.0 {
            return bad(
                "rtol",
                self.rtol,
                "is below 100 machine epsilons; give a larger rtol or a positive atol",
            );
        }
        if let Some(h) = self.h0 {
            if !(h > 0.0 && h.is_finite()) {
                return bad("h0", h, "must be a finite number > 0");
            }
        }
        if let Some(h) = self.h_max {
            if h.is_nan() || h <= 0.0 {
                return bad("h_max", h, "must be > 0");
            }
        }
        if !self.method.is_adaptive() {
            match self.fixed_steps {
                Some(n) if n > 0 => {}
                _ => {
                    return bad(
                        "fixed_steps",
                        self.fixed_steps.unwrap_or(0) as f64,
                        "must be given (≥ 1) for a fixed-step method",
                    )
                }
            }
        }
        Ok(())
    }
}

/// Work done by a stiff solve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StiffStats {
    /// Evaluations of `f` (those inside a finite-difference Jacobian not included).
    pub n_evals: usize,
    /// Jacobian evaluations.
    pub n_jacobians: usize,
    /// LU factorisations.
    pub n_factorizations: usize,
    /// Linear solves with a factorisation.
    pub n_solves: usize,
    /// Newton iterations.
    pub n_newton: usize,
    /// Newton iterations that failed to converge (each followed by a fresh Jacobian or a
    /// smaller step).
    pub n_newton_failures: usize,
    /// Accepted steps.
    pub n_accepted: usize,
    /// Steps rejected by the error test.
    pub n_rejected: usize,
}

/// The result of a stiff solve.
#[derive(Clone, Debug, PartialEq)]
pub struct StiffSolution {
    /// State dimension.
    pub n: usize,
    /// The save times.
    pub t: Vec<f64>,
    /// States at the save times, row-major.
    pub y: Vec<f64>,
    /// State at the end time.
    pub y_final: Vec<f64>,
    /// Work done.
    pub stats: StiffStats,
    /// Where [`StiffMethod::Auto`] switched from Dopri5 to the implicit method (`None`
    /// when it did not, and for every other method).
    pub switched_at: Option<f64>,
}

impl StiffSolution {
    /// State at the `i`-th save time.
    pub fn y_at(&self, i: usize) -> &[f64] {
        &self.y[i * self.n..(i + 1) * self.n]
    }
}

/// Solves `dy/dt = f(t, y)`, `y(t0) = y0` to `t1` (either direction) with a stiff method;
/// the states at `save` (within the span, ordered in the direction of integration) are
/// served by dense output.
pub fn solve<S: OdeSystem<f64> + Jacobian<f64> + ?Sized>(
    system: &mut S,
    y0: &[f64],
    t0: f64,
    t1: f64,
    save: &[f64],
    config: &StiffConfig,
) -> Result<StiffSolution, SolveError> {
    config.validate()?;
    check_span(y0, t0, t1, save)?;
    match config.method {
        StiffMethod::Bdf => bdf::solve(system, y0, t0, t1, save, config),
        StiffMethod::Rodas4 => rosenbrock::solve_rodas(system, y0, t0, t1, save, config),
        StiffMethod::Radau5 => radau::solve(system, y0, t0, t1, save, config),
        StiffMethod::TrBdf2 => esdirk::solve(&esdirk::tr_bdf2(), system, y0, t0, t1, save, config),
        StiffMethod::Kvaerno5 => esdirk::solve(&esdirk::kvaerno5(), system, y0, t0, t1, save, config),
        StiffMethod::Auto => auto::solve(system, y0, t0, t1, save, config),
        StiffMethod::BackwardEuler | StiffMethod::Trapezoid => {
            rosenbrock::solve_fixed(system, y0, t0, t1, save, config)
        }
    }
}

/// A system made of independent subsystems of `block_size()` states each — a batch of
/// the same model at different starts or parameters, a CNF batch (one block per
/// sample): `∂f/∂y` is block-diagonal, and Newton's method factors `B` blocks of
/// `b × b` (`B b³/3` operations) instead of one `Bb × Bb` matrix (`B³b³/3`).
pub trait BlockJacobian {
    /// States per block `b`; the state's length is a multiple of it.
    fn block_size(&self) -> usize;
    /// The diagonal blocks of `∂f/∂y` at `(t, y)`, block after block, each `b × b`
    /// row-major (`n · b` values in all).
    fn jacobian_blocks(&mut self, t: f64, y: &[f64], blocks: &mut [f64]);
}

/// [`solve`] for a system of independent blocks ([`BlockJacobian`]), with block-diagonal
/// Newton matrices: TR-BDF2 and KVAERNO5 (the methods whose iteration matrix is
/// `I − γhJ`). The steps are those of one solve of the whole system (one step size
/// for all blocks, the error norm over all of them).
pub fn solve_blocks<S: OdeSystem<f64> + BlockJacobian + ?Sized>(
    system: &mut S,
    y0: &[f64],
    t0: f64,
    t1: f64,
    save: &[f64],
    config: &StiffConfig,
) -> Result<StiffSolution, SolveError> {
    config.validate()?;
    check_span(y0, t0, t1, save)?;
    let b = system.block_size();
    if b == 0 || !y0.len().is_multiple_of(b) {
        return Err(SolveError::DimensionMismatch {
            what: "initial state (a whole number of blocks of block_size())",
            got: y0.len(),
            expected: b.max(1) * (y0.len() / b.max(1)).max(1),
        });
    }
    let tableau = esdirk::tableau(
        config.method,
        "must be tr-bdf2 or kvaerno5 for block-diagonal Newton (solve_blocks)",
    )?;
    let matrix = esdirk::BlockMatrix::new(y0.len(), b);
    esdirk::solve_with(&tableau, system, matrix, y0, t0, t1, save, config, None)
}

/// [`solve`] with matrix-free Newton–Krylov: TR-BDF2 or KVAERNO5 whose Newton solves
/// `(I − γhJ) x = b` by restarted GMRES (restart 30, relative residual 1e-4) on the
/// system's Jacobian-vector products at the step's Jacobian point. No `n × n` matrix is
/// formed, stored or factored — for large systems (a discretised PDE) whose Jacobian is
/// expensive to form or to factor densely. Without a preconditioner GMRES needs more
/// products as `γh‖J‖` grows; the JVPs are counted in the statistics' evaluations.
pub fn solve_krylov<S: crate::ode::Jvp<f64> + ?Sized>(
    system: &mut S,
    y0: &[f64],
    t0: f64,
    t1: f64,
    save: &[f64],
    config: &StiffConfig,
) -> Result<StiffSolution, SolveError> {
    solve_krylov_preconditioned(system, NoPreconditioner, y0, t0, t1, save, config)
}

/// [`solve_krylov`] with a right preconditioner `M ≈ I − γhJ` for GMRES (set up when
/// Newton would form its matrix, applied at every product): with a good one GMRES needs a
/// few products per Newton iteration however stiff the system, so Newton–Krylov pays
/// where a dense factorisation does not — e.g. [`BandPreconditioner`] for a system whose
/// coupling is local (a discretised PDE).
pub fn solve_krylov_preconditioned<S: crate::ode::Jvp<f64> + ?Sized, P: Preconditioner<S>>(
    system: &mut S,
    preconditioner: P,
    y0: &[f64],
    t0: f64,
    t1: f64,
    save: &[f64],
    config: &StiffConfig,
) -> Result<StiffSolution, SolveError> {
    config.validate()?;
    check_span(y0, t0, t1, save)?;
    let tableau = esdirk::tableau(
        config.method,
        "must be tr-bdf2 or kvaerno5 for Newton-Krylov (solve_krylov)",
    )?;
    let matrix = esdirk::KrylovMatrix::new(y0.len(), preconditioner);
    esdirk::solve_with(&tableau, system, matrix, y0, t0, t1, save, config, None)
}

/// A right preconditioner for Newton–Krylov ([`solve_krylov_preconditioned`]): an
/// approximation `M` of `I − g J(t, y)` that is cheap to set up and to invert.
pub trait Preconditioner<S: ?Sized> {
    /// Prepares `M ≈ I − g J(t, y)`; returns the system evaluations (JVPs) it used.
    fn setup(&mut self, system: &mut S, t: f64, y: &[f64], g: f64) -> usize;
    /// Overwrites `x` with `M⁻¹ x`.
    fn apply(&mut self, x: &mut [f64]);
}

/// No preconditioning (`M = I`).
pub struct NoPreconditioner;

impl<S: ?Sized> Preconditioner<S> for NoPreconditioner {
    fn setup(&mut self, _system: &mut S, _t: f64, _y: &[f64], _g: f64) -> usize {
        0
    }
    fn apply(&mut self, _x: &mut [f64]) {}
}

/// `M = I − g J_band`: the band of `J` with `lower` sub- and `upper` superdiagonals, from
/// `lower + upper + 1` JVPs (columns `j ≡ k` modulo the bandwidth share one, Curtis,
/// Powell & Reid 1974), factored by banded LU without pivoting (`I − gJ` of a
/// dissipative system is diagonally dominant). Exact when `J` is banded within that
/// band; an approximation (and still a preconditioner) when it is not — the entries
/// outside the band fold into the band's ones, as CVODE's band preconditioner does.
pub struct BandPreconditioner {
    n: usize,
    lower: usize,
    upper: usize,
    /// Row-major band storage: row `i`, column `j` at `i·w + (j + lower − i)`.
    band: Vec<f64>,
    seed: Vec<f64>,
    f: Vec<f64>,
    jv: Vec<f64>,
    ok: bool,
}

impl BandPreconditioner {
    /// For `n` states with the given half-bandwidths.
    pub fn new(n: usize, lower: usize, upper: usize) -> Self {
        let w = lower + upper + 1;
        BandPreconditioner {
            n,
            lower,
            upper,
            band: vec![0.0; n * w],
            seed: vec![0.0; n],
            f: vec![0.0; n],
            jv: vec![0.0; n],
            ok: false,
        }
    }

    fn width(&self) -> usize {
        self.lower + self.upper + 1
    }
}

impl<S: crate::ode::Jvp<f64> + ?Sized> Preconditioner<S> for BandPreconditioner {
    fn setup(&mut self, system: &mut S, t: f64, y: &[f64], g: f64) -> usize {
        let (n, lo, up, w) = (self.n, self.lower, self.upper, self.width());
        self.band.iter_mut().for_each(|v| *v = 0.0);
        // Column j of the band lies in rows j − up ..= j + lo: columns w apart do not
        // overlap, so one JVP with all of them seeded gives them all.
        for k in 0..w.min(n) {
            for (j, s) in self.seed.iter_mut().enumerate() {
                *s = if j % w == k { 1.0 } else { 0.0 };
            }
            system.jvp(t, y, &self.seed, &mut self.f, &mut self.jv);
            for j in (k..n).step_by(w) {
                for i in j.saturating_sub(up)..(j + lo + 1).min(n) {
                    self.band[i * w + (j + lo - i)] = -g * self.jv[i];
                }
            }
        }
        for i in 0..n {
            self.band[i * w + lo] += 1.0;
        }
        // Banded LU without pivoting, in place (L below the diagonal, unit diagonal).
        self.ok = true;
        for k in 0..n {
            let piv = self.band[k * w + lo];
            if !(piv.abs() > 1e-300 && piv.is_finite()) {
                self.ok = false;
                break;
            }
            for i in k + 1..(k + lo + 1).min(n) {
                let l = self.band[i * w + (k + lo - i)] / piv;
                self.band[i * w + (k + lo - i)] = l;
                for j in k + 1..(k + up + 1).min(n) {
                    self.band[i * w + (j + lo - i)] -= l * self.band[k * w + (j + lo - k)];
                }
            }
        }
        w.min(n)
    }

    fn apply(&mut self, x: &mut [f64]) {
        if !self.ok {
            return;
        }
        let (n, lo, up, w) = (self.n, self.lower, self.upper, self.width());
        for i in 0..n {
            let mut s = x[i];
            for j in i.saturating_sub(lo)..i {
                s -= self.band[i * w + (j + lo - i)] * x[j];
            }
            x[i] = s;
        }
        for i in (0..n).rev() {
            let mut s = x[i];
            for j in i + 1..(i + up + 1).min(n) {
                s -= self.band[i * w + (j + lo - i)] * x[j];
            }
            x[i] = s / self.band[i * w + lo];
        }
    }
}

fn check_span(y0: &[f64], t0: f64, t1: f64, save: &[f64]) -> Result<(), SolveError> {
    if !t0.is_finite() || !t1.is_finite() {
        return Err(SolveError::InvalidSpan { t0, t1 });
    }
    if t0 == t1 {
        return Err(SolveError::EmptySpan { t: t0 });
    }
    if y0.is_empty() {
        return Err(SolveError::DimensionMismatch {
            what: "initial state",
            got: 0,
            expected: 1,
        });
    }
    if y0.iter().any(|v| !v.is_finite()) {
        return Err(SolveError::NonFinite {
            what: "initial state",
            t: t0,
            h: 0.0,
            n_steps: 0,
        });
    }
    let dir = (t1 - t0).signum();
    let mut last = t0;
    for (index, &t) in save.iter().enumerate() {
        if !t.is_finite() || (t - t0) * dir < 0.0 || (t1 - t) * dir < 0.0 || (t - last) * dir < 0.0 {
            return Err(SolveError::InvalidOutputTime { index, t, t0, t1 });
        }
        last = t;
    }
    Ok(())
}

/// A system whose Jacobian comes from forward differences of `f` (n evaluations each):
/// for a closure with no derivative of its own.
pub struct FdJacobian<F> {
    /// The right-hand side `f(t, y, dy)`.
    pub f: F,
    /// Evaluations spent in Jacobians.
    pub n_evals: usize,
    work: Vec<f64>,
    f0: Vec<f64>,
    f1: Vec<f64>,
}

impl<F: FnMut(f64, &[f64], &mut [f64])> FdJacobian<F> {
    /// Wraps a right-hand side.
    pub fn new(f: F) -> Self {
        FdJacobian {
            f,
            n_evals: 0,
            work: Vec::new(),
            f0: Vec::new(),
            f1: Vec::new(),
        }
    }
}

impl<F: FnMut(f64, &[f64], &mut [f64])> OdeSystem<f64> for FdJacobian<F> {
    fn rhs(&mut self, t: f64, y: &[f64], dy: &mut [f64]) {
        (self.f)(t, y, dy)
    }
}

impl<F: FnMut(f64, &[f64], &mut [f64])> Jacobian<f64> for FdJacobian<F> {
    fn jacobian(&mut self, t: f64, y: &[f64], jac: &mut [f64]) {
        let n = y.len();
        self.work.clear();
        self.work.extend_from_slice(y);
        self.f0.resize(n, 0.0);
        self.f1.resize(n, 0.0);
        (self.f)(t, y, &mut self.f0);
        for j in 0..n {
            let h = f64::EPSILON.sqrt() * y[j].abs().max(1.0);
            self.work[j] = y[j] + h;
            let h = self.work[j] - y[j];
            (self.f)(t, &self.work, &mut self.f1);
            for i in 0..n {
                jac[i * n + j] = (self.f1[i] - self.f0[i]) / h;
            }
            self.work[j] = y[j];
        }
        self.n_evals += n + 1;
    }
}

/// Weighted RMS norm of `v` with weights `1 / (atol + rtol·|y|)`.
pub(crate) fn wrms(v: &[f64], y: &[f64], rtol: f64, atol: f64) -> f64 {
    let n = v.len();
    let s: f64 = v
        .iter()
        .zip(y)
        .map(|(&e, &y)| (e / (atol + rtol * y.abs())).powi(2))
        .sum();
    (s / n as f64).sqrt()
}

/// Hairer's first-step heuristic for a method of order `p` (one extra evaluation).
#[allow(clippy::too_many_arguments)]
pub(crate) fn initial_step<S: OdeSystem<f64> + ?Sized>(
    system: &mut S,
    t0: f64,
    y0: &[f64],
    f0: &[f64],
    dir: f64,
    p: u32,
    config: &StiffConfig,
    stats: &mut StiffStats,
) -> f64 {
    let (rtol, atol) = (config.rtol, config.atol);
    let d0 = wrms(y0, y0, rtol, atol);
    let d1 = wrms(f0, y0, rtol, atol);
    let h0 = if d0 < 1e-5 || d1 < 1e-5 { 1e-6 } else { 0.01 * d0 / d1 };
    let y1: Vec<f64> = y0.iter().zip(f0).map(|(&y, &f)| y + dir * h0 * f).collect();
    let mut f1 = vec![0.0; y0.len()];
    system.rhs(t0 + dir * h0, &y1, &mut f1);
    stats.n_evals += 1;
    let diff: Vec<f64> = f1.iter().zip(f0).map(|(a, b)| a - b).collect();
    let d2 = wrms(&diff, y0, rtol, atol) / h0;
    let h1 = if d1.max(d2) <= 1e-15 {
        (h0 * 1e-3).max(1e-6)
    } else {
        (0.01 / d1.max(d2)).powf(1.0 / (p as f64 + 1.0))
    };
    let mut h = (100.0 * h0).min(h1);
    if let Some(hm) = config.h_max {
        h = h.min(hm);
    }
    h
}

/// Appends `y0` for every leading save time equal to `t0`; returns how many.
pub(crate) fn serve_start(save: &[f64], t0: f64, y0: &[f64], out: &mut Vec<f64>) -> usize {
    let k = save.iter().take_while(|&&t| t == t0).count();
    for _ in 0..k {
        out.extend_from_slice(y0);
    }
    k
}

/// Appends the cubic Hermite interpolant at `θ` of a step of size `h` from `(y0, f0)`
/// to `(y1, f1)`.
pub(crate) fn hermite(th: f64, h: f64, y0: &[f64], f0: &[f64], y1: &[f64], f1: &[f64], out: &mut Vec<f64>) {
    let (h00, h10, h01, h11) = (
        (1.0 + 2.0 * th) * (1.0 - th).powi(2),
        th * (1.0 - th).powi(2),
        th * th * (3.0 - 2.0 * th),
        th * th * (th - 1.0),
    );
    for i in 0..y0.len() {
        out.push(h00 * y0[i] + h10 * h * f0[i] + h01 * y1[i] + h11 * h * f1[i]);
    }
}

/// Smallest step magnitude allowed at `t` before the solve fails.
pub(crate) fn h_min(t: f64) -> f64 {
    16.0 * f64::EPSILON * t.abs().max(f64::MIN_POSITIVE.sqrt())
}
