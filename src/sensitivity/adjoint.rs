//! The continuous adjoint with jumps at the observation times (see the module docs).

use super::{Loss, Sensitivity, SensitivityError};
use crate::ode::{OdeSystem, SaveAt, Solver, SolverConfig, Vjp};
use crate::Real;

/// The adjoint system on `u = (y_d, a_d, a_p)`, where `y_d` are the state's first
/// `n_d = n − n_q` components (those `f` depends on):
///
/// ```text
/// dy_d/dt = f_d(t, y)      da_d/dt = −(a_d, a_q)ᵀ ∂f/∂y_d      da_p/dt = −(a_d, a_q)ᵀ ∂f/∂p
/// ```
///
/// The adjoint `a_q` of the `n_q` quadratures is constant (nothing depends on them), so
/// it is held aside rather than integrated. "Just another system", integrated
/// backwards by the same driver.
pub struct AdjointRhs<'a, T, S: ?Sized> {
    system: &'a mut S,
    n_d: usize,
    /// The full state, its derivative and cotangent, and `wᵀ ∂f/∂y`.
    y: Vec<T>,
    dy: Vec<T>,
    w: Vec<T>,
    grad_y: Vec<T>,
}

impl<T: Real, S: Vjp<T> + ?Sized> OdeSystem<T> for AdjointRhs<'_, T, S> {
    fn rhs(&mut self, t: T, u: &[T], du: &mut [T]) {
        let nd = self.n_d;
        self.y[..nd].copy_from_slice(&u[..nd]);
        self.w[..nd].copy_from_slice(&u[nd..2 * nd]);
        let (dyd, rest) = du.split_at_mut(nd);
        let (dad, dap) = rest.split_at_mut(nd);
        dap.fill(T::zero());
        self.system
            .rhs_and_vjp(t, &self.y, &self.w, &mut self.dy, &mut self.grad_y, dap);
        dyd.copy_from_slice(&self.dy[..nd]);
        for (d, &g) in dad.iter_mut().zip(&self.grad_y) {
            *d = -g;
        }
        for v in dap.iter_mut() {
            *v = -*v;
        }
    }
}

/// What [`adjoint_backward`] returns besides the parameter gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct AdjointBackward<T> {
    /// `dL/dy₀` (its quadrature part is the constant `a_q`).
    pub grad_y0: Vec<T>,
    /// `dL/dy₀` before the jump at `t₀` (for `dL/dt₀`).
    pub a_t0: Vec<T>,
    /// Evaluations of the backward solves.
    pub n_evals: usize,
}

/// The backward half of the continuous adjoint: given the states `y` and the
/// cotangents `cot = ∂L/∂y(tᵢ)` at every observation time (both row-major, `times × n`),
/// solves the adjoint from `t_N` back to `t₀` with a jump at each `tᵢ`, restarting
/// `y_d` there from the forward solution; `grad_p` accumulates `dL/dp`. With
/// `seminorm`, `a_p` is left out of step-size control.
pub fn adjoint_backward<T: Real, S: Vjp<T> + ?Sized>(
    system: &mut S,
    times: &[T],
    y: &[T],
    cot: &[T],
    solver: &SolverConfig,
    seminorm: bool,
    grad_p: &mut [T],
) -> Result<AdjointBackward<T>, SensitivityError> {
    super::check_times(times)?;
    let n_obs = times.len();
    let n = y.len() / n_obs;
    let m = system.n_params();
    let nq = system.n_quadratures().min(n);
    let nd = n - nq;
    let mut mask = vec![true; 2 * nd + m];
    if seminorm {
        mask[2 * nd..].fill(false);
    }
    let back_config = SolverConfig {
        error_mask: Some(mask),
        ..solver.clone()
    };
    let mut back = Solver::new(back_config).map_err(|error| SensitivityError::Solve {
        direction: "adjoint",
        error,
    })?;
    let mut u = vec![T::zero(); 2 * nd + m];
    u[2 * nd..].copy_from_slice(grad_p);
    let mut rhs = AdjointRhs {
        system,
        n_d: nd,
        y: vec![T::zero(); n],
        dy: vec![T::zero(); n],
        w: vec![T::zero(); n],
        grad_y: vec![T::zero(); n],
    };
    let mut n_evals = 0;
    for i in (1..n_obs).rev() {
        // Restart y from the forward solution and jump the adjoint by ∂ℓᵢ/∂y.
        let (yi, gi) = (&y[i * n..(i + 1) * n], &cot[i * n..(i + 1) * n]);
        u[..nd].copy_from_slice(&yi[..nd]);
        for (a, &g) in u[nd..2 * nd].iter_mut().zip(&gi[..nd]) {
            *a += g;
        }
        for (a, &g) in rhs.w[nd..].iter_mut().zip(&gi[nd..]) {
            *a += g;
        }
        let sol = back
            .solve(&mut rhs, &u, times[i], times[i - 1], &SaveAt::default())
            .map_err(|error| SensitivityError::Solve {
                direction: "adjoint",
                error,
            })?;
        n_evals += sol.stats.n_evals;
        u.copy_from_slice(&sol.y_final);
    }
    grad_p.copy_from_slice(&u[2 * nd..]);
    let mut a_t0 = u[nd..2 * nd].to_vec();
    a_t0.extend_from_slice(&rhs.w[nd..]);
    let grad_y0 = a_t0.iter().zip(&cot[..n]).map(|(&a, &g)| a + g).collect();
    Ok(AdjointBackward { grad_y0, a_t0, n_evals })
}

pub(super) fn continuous<T: Real, S: Vjp<T> + ?Sized, L: Loss<T>>(
    system: &mut S,
    y0: &[T],
    times: &[T],
    loss: &mut L,
    solver: &SolverConfig,
    seminorm: bool,
) -> Result<Sensitivity<T>, SensitivityError> {
    let forward_err = |error| SensitivityError::Solve {
        direction: "forward",
        error,
    };
    let n = y0.len();
    let n_obs = times.len();
    let t0 = times[0];
    let t1 = times[n_obs - 1];
    let save = SaveAt::times(times.to_vec());
    let fwd = Solver::new(solver.clone())
        .and_then(|mut s| s.solve(system, y0, t0, t1, &save))
        .map_err(forward_err)?;
    // The loss and its cotangents at every observation.
    let mut total = 0.0;
    let mut g = vec![T::zero(); n_obs * n];
    for i in 0..n_obs {
        total += loss.eval(i, times[i], fwd.y_at(i), &mut g[i * n..(i + 1) * n]);
    }
    let mut f = vec![T::zero(); n];
    system.rhs(t1, fwd.y_at(n_obs - 1), &mut f);
    let grad_t1: T = g[(n_obs - 1) * n..].iter().zip(&f).map(|(&a, &b)| a * b).sum();
    let mut grad_p = vec![T::zero(); system.n_params()];
    let back = adjoint_backward(system, times, &fwd.y, &g, solver, seminorm, &mut grad_p)?;
    // y(t0) = y0 whatever t0 is, so ℓ₀ does not move with t0: dL/dt0 takes a(t0) before
    // its jump by ∂ℓ₀/∂y.
    system.rhs(t0, y0, &mut f);
    let grad_t0: T = -back.a_t0.iter().zip(&f).map(|(&a, &b)| a * b).sum::<T>();
    Ok(Sensitivity {
        loss: total,
        y: fwd.y.clone(),
        grad_y0: back.grad_y0,
        grad_params: grad_p,
        grad_t0: Some(grad_t0),
        grad_t1: Some(grad_t1),
        n_evals_forward: fwd.stats.n_evals,
        n_evals_backward: back.n_evals,
        peak_stored_states: 0,
    })
}
