//! The discrete adjoint of the θ-method (backward Euler θ = 1, the implicit trapezoid
//! rule θ = ½): the exact gradient of a loss on the discrete solution, by transposed
//! solves with `I − θh J(y_{k+1})`.
//!
//! A step solves `y_{k+1} = y_k + h [(1 − θ) f(t_k, y_k) + θ f(t_{k+1}, y_{k+1})]`.
//! Differentiating it, `(I − θh J_{k+1}) dy_{k+1} = (I + (1 − θ)h J_k) dy_k +
//! h [(1 − θ) f_p(k) + θ f_p(k+1)] dp`, so with `λ_{k+1} = ∂L/∂y_{k+1}`:
//!
//! ```text
//! μ      = (I − θh J_{k+1})⁻ᵀ λ_{k+1}
//! λ_k    = μ + (1 − θ) h J_kᵀ μ
//! ∂L/∂p += h [(1 − θ) f_p(k)ᵀ μ + θ f_p(k+1)ᵀ μ]
//! ```
//!
//! The Jacobian is taken exactly at each `y_{k+1}` (not Newton's reused one), so the
//! gradient is that of the solution Newton converged to.

use super::linalg::DenseLu;
use super::{solve, StiffConfig, StiffMethod};
use crate::ode::{Jacobian, SolveError, Vjp};

/// The final state of a fixed-step backward-Euler or trapezoid solve from `y0` on
/// `[t0, t1]` and the gradients of `L = ⟨w, y(t1)⟩` — any loss of the final state, with
/// `w = ∂L/∂y(t1)` — with respect to `y0` and to the system's parameters.
pub struct ThetaGradient {
    /// The final state.
    pub y_final: Vec<f64>,
    /// `∂L/∂y0`.
    pub grad_y0: Vec<f64>,
    /// `∂L/∂p` ([`Vjp::n_params`] entries).
    pub grad_p: Vec<f64>,
}

/// Solves with `config` (backward Euler or the trapezoid rule, fixed steps) and
/// backpropagates `w = ∂L/∂y(t1)` through every step (see the module's formulas).
pub fn theta_gradient<S: Vjp<f64> + Jacobian<f64> + ?Sized>(
    system: &mut S,
    y0: &[f64],
    t0: f64,
    t1: f64,
    config: &StiffConfig,
    w: &[f64],
) -> Result<ThetaGradient, SolveError> {
    let n = y0.len();
    if w.len() != n {
        return Err(SolveError::DimensionMismatch {
            what: "loss gradient w",
            got: w.len(),
            expected: n,
        });
    }
    let steps = config.fixed_steps.unwrap_or(0);
    theta_gradient_on_grid(system, y0, t0, t1, config, |k, _t, _y, g| {
        if k == steps {
            g.copy_from_slice(w)
        }
    })
    .map(|(g, _)| g)
}

/// As [`theta_gradient`] for a loss of the whole discrete trajectory
/// `L = Σ_k ℓ_k(y_k)` on the step grid `t_k = t0 + k h` (observations at grid times, as
/// in fitting a series): `dl_dy(k, t_k, y_k, g)` writes `∂ℓ_k/∂y_k` into `g` (zeroed
/// before each call; leave it for a point without a loss term), and is called for
/// `k = N, N−1, …, 0`, each `∂ℓ_k/∂y_k` added to the adjoint as a jump. Also returns the
/// trajectory on the grid (`(N + 1) × n`, row-major).
pub fn theta_gradient_on_grid<S: Vjp<f64> + Jacobian<f64> + ?Sized>(
    system: &mut S,
    y0: &[f64],
    t0: f64,
    t1: f64,
    config: &StiffConfig,
    mut dl_dy: impl FnMut(usize, f64, &[f64], &mut [f64]),
) -> Result<(ThetaGradient, Vec<f64>), SolveError> {
    let theta = match config.method {
        StiffMethod::BackwardEuler => 1.0,
        StiffMethod::Trapezoid => 0.5,
        m => {
            return Err(crate::ode::ConfigError::Setting {
                name: "method",
                value: m.order() as f64,
                need: "must be backward-euler or trapezoid for the discrete adjoint (theta_gradient)",
            }
            .into())
        }
    };
    let n = y0.len();
    let steps = config.fixed_steps.unwrap_or(0);
    // The forward pass, keeping every step's state (dense output at the step grid).
    let h = (t1 - t0) / steps.max(1) as f64;
    let grid: Vec<f64> = (0..=steps)
        .map(|k| if k == steps { t1 } else { t0 + k as f64 * h })
        .collect();
    let sol = solve(system, y0, t0, t1, &grid, config)?;
    let m = system.n_params();
    let mut lambda = vec![0.0; n];
    let mut grad_p = vec![0.0; m];
    let mut jac = vec![0.0; n * n];
    let mut lu = DenseLu::new(n);
    let mut gy = vec![0.0; n];
    let mut gp = vec![0.0; m];
    let mut jump = vec![0.0; n];
    for k in (0..=steps).rev() {
        jump.iter_mut().for_each(|v| *v = 0.0);
        dl_dy(k, grid[k], sol.y_at(k), &mut jump);
        for (l, j) in lambda.iter_mut().zip(&jump) {
            *l += j;
        }
        if k == 0 {
            break;
        }
        let k = k - 1;
        let (tk, tk1) = (grid[k], grid[k + 1]);
        let hk = tk1 - tk;
        let (yk, yk1) = (sol.y_at(k), sol.y_at(k + 1));
        system.jacobian(tk1, yk1, &mut jac);
        if !lu.factor(|i, j| if i == j { 1.0 } else { 0.0 } - theta * hk * jac[i * n + j]) {
            return Err(SolveError::SingularMatrix {
                t: tk,
                h: hk,
                n_steps: k,
            });
        }
        lu.solve_transpose(&mut lambda);
        // λ now holds μ.
        gp.iter_mut().for_each(|v| *v = 0.0);
        system.vjp(tk1, yk1, &lambda, &mut gy, &mut gp);
        for (g, v) in grad_p.iter_mut().zip(&gp) {
            *g += theta * hk * v;
        }
        if theta < 1.0 {
            gp.iter_mut().for_each(|v| *v = 0.0);
            system.vjp(tk, yk, &lambda, &mut gy, &mut gp);
            for (g, v) in grad_p.iter_mut().zip(&gp) {
                *g += (1.0 - theta) * hk * v;
            }
            for (l, g) in lambda.iter_mut().zip(&gy) {
                *l += (1.0 - theta) * hk * g;
            }
        }
    }
    let y_final = sol.y_final.clone();
    Ok((
        ThetaGradient {
            y_final,
            grad_y0: lambda,
            grad_p,
        },
        sol.y,
    ))
}
