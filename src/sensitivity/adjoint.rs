//! The continuous adjoint with jumps at the observation times (see the module docs).

use super::{Loss, Sensitivity, SensitivityError};
use crate::ode::{OdeSystem, SaveAt, Solver, SolverConfig, Vjp};
use crate::Real;

/// The adjoint system on `u = (y, a, a_p)`:
///
/// ```text
/// dy/dt = f(t, y)      da/dt = −aᵀ ∂f/∂y      da_p/dt = −aᵀ ∂f/∂p
/// ```
///
/// "just another system", integrated backwards by the same driver.
pub struct AdjointRhs<'a, T, S: ?Sized> {
    system: &'a mut S,
    n: usize,
    grad_y: Vec<T>,
}

impl<T: Real, S: Vjp<T> + ?Sized> OdeSystem<T> for AdjointRhs<'_, T, S> {
    fn rhs(&mut self, t: T, u: &[T], du: &mut [T]) {
        let n = self.n;
        let (y, a) = (&u[..n], &u[n..2 * n]);
        let (dy, rest) = du.split_at_mut(n);
        let (da, dap) = rest.split_at_mut(n);
        self.system.rhs(t, y, dy);
        dap.fill(T::zero());
        self.system.vjp(t, y, a, &mut self.grad_y, dap);
        for (d, &g) in da.iter_mut().zip(&self.grad_y) {
            *d = -g;
        }
        for v in dap.iter_mut() {
            *v = -*v;
        }
    }
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
    let m = system.n_params();
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

    let mut mask = vec![true; 2 * n + m];
    if seminorm {
        mask[2 * n..].fill(false);
    }
    let back_config = SolverConfig {
        error_mask: Some(mask),
        ..solver.clone()
    };
    let mut back = Solver::new(back_config).map_err(forward_err)?;
    let mut u = vec![T::zero(); 2 * n + m];
    let mut n_evals_backward = 0;
    let mut rhs = AdjointRhs {
        system,
        n,
        grad_y: vec![T::zero(); n],
    };
    for i in (1..n_obs).rev() {
        // Restart y from the forward solution and jump a by ∂ℓᵢ/∂y.
        u[..n].copy_from_slice(fwd.y_at(i));
        for (a, &gi) in u[n..2 * n].iter_mut().zip(&g[i * n..(i + 1) * n]) {
            *a += gi;
        }
        let sol = back
            .solve(&mut rhs, &u, times[i], times[i - 1], &SaveAt::default())
            .map_err(|error| SensitivityError::Solve {
                direction: "adjoint",
                error,
            })?;
        n_evals_backward += sol.stats.n_evals;
        u.copy_from_slice(&sol.y_final);
    }
    // y(t0) = y0 whatever t0 is, so ℓ₀ does not move with t0: dL/dt0 takes a(t0) before
    // its jump by ∂ℓ₀/∂y.
    let mut grad_y0 = u[n..2 * n].to_vec();
    rhs.system.rhs(t0, y0, &mut f);
    let grad_t0: T = -grad_y0.iter().zip(&f).map(|(&a, &b)| a * b).sum::<T>();
    for (a, &gi) in grad_y0.iter_mut().zip(&g[..n]) {
        *a += gi;
    }
    Ok(Sensitivity {
        loss: total,
        y: fwd.y.clone(),
        grad_y0,
        grad_params: u[2 * n..].to_vec(),
        grad_t0: Some(grad_t0),
        grad_t1: Some(grad_t1),
        n_evals_forward: fwd.stats.n_evals,
        n_evals_backward,
        peak_stored_states: 0,
    })
}
