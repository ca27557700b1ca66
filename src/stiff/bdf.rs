//! Variable-order, variable-step BDF (orders 1–5) in the quasi-constant-step form with
//! the numerical-differentiation-formula corrections of Shampine & Reichelt, *The MATLAB
//! ODE Suite* (SIAM J. Sci. Comput. 18, 1997, §2), the scheme of MATLAB's `ode15s` and
//! SciPy's `BDF`.
//!
//! The solution is kept as backward differences `D_0 = y_n, D_1 = ∇y_n, …` on an equally
//! spaced grid of spacing `h`; a step-size change re-expresses them on the new grid
//! (`D ← (R(ρ) U)ᵀ D`). A step solves
//!
//! ```text
//! (1 − κ_k) γ_k (y_{n+1} − y⁽⁰⁾) + Σ_{j=1}^k γ_j ∇^j y_n = h f(t_{n+1}, y_{n+1}),
//! γ_j = Σ_{i=1}^j 1/i
//! ```
//!
//! by simplified Newton on `I − h/α_k J` (α_k = (1 − κ_k) γ_k), with the Jacobian kept
//! across steps and refreshed only when Newton fails; the factorisation is redone when
//! `h` or the order changes. The local error is `(κ_k γ_k + 1/(k+1)) · ∇^{k+1} y_{n+1}`;
//! after `k + 1` steps of equal size the order moves by one where the step can grow most.

use super::linalg::DenseLu;
use super::{h_min, initial_step, StiffConfig, StiffSolution, StiffStats};
use crate::ode::{Jacobian, OdeSystem, SolveError};

const MAX_ORDER: usize = 5;
const NEWTON_MAXITER: usize = 4;
const MIN_FACTOR: f64 = 0.2;
const MAX_FACTOR: f64 = 10.0;
/// The NDF corrections κ_k of Shampine & Reichelt, Table 1 (κ_5 = 0: plain BDF5).
const KAPPA: [f64; MAX_ORDER + 1] = [0.0, -0.1850, -1.0 / 9.0, -0.0823, -0.0415, 0.0];

struct Coeffs {
    gamma: [f64; MAX_ORDER + 2],
    alpha: [f64; MAX_ORDER + 2],
    error_const: [f64; MAX_ORDER + 2],
}

fn coeffs() -> Coeffs {
    let mut gamma = [0.0; MAX_ORDER + 2];
    for k in 1..=MAX_ORDER + 1 {
        gamma[k] = gamma[k - 1] + 1.0 / k as f64;
    }
    let mut alpha = [0.0; MAX_ORDER + 2];
    let mut error_const = [0.0; MAX_ORDER + 2];
    for k in 0..=MAX_ORDER + 1 {
        let kappa = if k <= MAX_ORDER { KAPPA[k] } else { 0.0 };
        alpha[k] = (1.0 - kappa) * gamma[k];
        error_const[k] = kappa * gamma[k] + 1.0 / (k as f64 + 1.0);
    }
    Coeffs {
        gamma,
        alpha,
        error_const,
    }
}

/// `R(ρ)`: the `(k+1) × (k+1)` matrix taking differences on a grid of spacing `h` to a
/// grid of spacing `ρh` (Shampine & Reichelt, eq. 2.3), row-major.
fn r_matrix(order: usize, factor: f64, r: &mut [[f64; MAX_ORDER + 1]; MAX_ORDER + 1]) {
    for j in 0..=order {
        r[0][j] = 1.0;
    }
    for i in 1..=order {
        for j in 0..=order {
            let m = if j == 0 {
                0.0
            } else {
                (i as f64 - 1.0 - factor * j as f64) / i as f64
            };
            r[i][j] = r[i - 1][j] * m;
        }
    }
}

/// Re-expresses `D_0..D_k` for a step `factor` times the current one.
fn change_d(d: &mut [Vec<f64>], order: usize, factor: f64, tmp: &mut Vec<Vec<f64>>) {
    let mut r = [[0.0; MAX_ORDER + 1]; MAX_ORDER + 1];
    let mut u = [[0.0; MAX_ORDER + 1]; MAX_ORDER + 1];
    r_matrix(order, factor, &mut r);
    r_matrix(order, 1.0, &mut u);
    // RU = R · U; D_new[i] = Σ_k RU[k][i] D[k].
    let mut ru = [[0.0; MAX_ORDER + 1]; MAX_ORDER + 1];
    for i in 0..=order {
        for j in 0..=order {
            ru[i][j] = (0..=order).map(|k| r[i][k] * u[k][j]).sum();
        }
    }
    let n = d[0].len();
    tmp.resize(order + 1, vec![0.0; n]);
    for i in 0..=order {
        let row = &mut tmp[i];
        row.iter_mut().for_each(|v| *v = 0.0);
        for k in 0..=order {
            let c = ru[k][i];
            if c != 0.0 {
                for (v, &x) in row.iter_mut().zip(&d[k]) {
                    *v += c * x;
                }
            }
        }
    }
    for i in 0..=order {
        std::mem::swap(&mut d[i], &mut tmp[i]);
    }
}

fn norm_scaled(v: &[f64], scale: &[f64]) -> f64 {
    (v.iter().zip(scale).map(|(x, s)| (x / s).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
}

pub(super) fn solve<S: OdeSystem<f64> + Jacobian<f64> + ?Sized>(
    system: &mut S,
    y0: &[f64],
    t0: f64,
    t1: f64,
    save: &[f64],
    config: &StiffConfig,
) -> Result<StiffSolution, SolveError> {
    let co = coeffs();
    let n = y0.len();
    let dir = (t1 - t0).signum();
    let (rtol, atol) = (config.rtol, config.atol);
    let newton_tol = (10.0 * f64::EPSILON / rtol.max(1e-300)).max(0.03f64.min(rtol.sqrt()));
    let h_max = config.h_max.unwrap_or(f64::INFINITY);
    let mut stats = StiffStats::default();
    let mut out = Vec::with_capacity(save.len() * n);
    let mut next = super::serve_start(save, t0, y0, &mut out);

    let mut f = vec![0.0; n];
    system.rhs(t0, y0, &mut f);
    stats.n_evals += 1;
    let mut h = config
        .h0
        .unwrap_or_else(|| initial_step(system, t0, y0, &f, dir, 1, config, &mut stats))
        .min(h_max)
        .min((t1 - t0).abs());
    let mut d: Vec<Vec<f64>> = vec![vec![0.0; n]; MAX_ORDER + 3];
    d[0].copy_from_slice(y0);
    for i in 0..n {
        d[1][i] = f[i] * h * dir;
    }
    let mut tmp = Vec::new();
    let mut jac = vec![0.0; n * n];
    system.jacobian(t0, y0, &mut jac);
    stats.n_jacobians += 1;
    let mut lu = DenseLu::new(n);
    let mut lu_valid = false;
    let mut order = 1;
    let mut n_equal = 0;
    let mut t = t0;
    // Kahan compensation of t (what was lost when t + h was rounded).
    let mut t_comp = 0.0;

    let mut y_predict = vec![0.0; n];
    let mut y_new = vec![0.0; n];
    let mut psi = vec![0.0; n];
    let mut dd = vec![0.0; n];
    let mut dy = vec![0.0; n];
    let mut scale = vec![0.0; n];
    let mut err = vec![0.0; n];

    while (t1 - t) * dir > 0.0 {
        let n_steps = stats.n_accepted + stats.n_rejected;
        if n_steps >= config.max_steps {
            return Err(SolveError::MaxStepsExceeded {
                t,
                h,
                n_steps,
                max_steps: config.max_steps,
            });
        }
        let hmin = h_min(t);
        if h > h_max {
            change_d(&mut d, order, h_max / h, &mut tmp);
            h = h_max;
            n_equal = 0;
            lu_valid = false;
        } else if h < hmin {
            change_d(&mut d, order, hmin / h, &mut tmp);
            h = hmin;
            n_equal = 0;
            lu_valid = false;
        }
        // The step attempt, shrinking h until Newton converges and the error test passes.
        let mut jac_current = false;
        let mut error_failures = 0;
        let (t_new, n_iter, error_norm) = loop {
            if h < hmin {
                let n_steps = stats.n_accepted + stats.n_rejected;
                return Err(SolveError::StepSizeTooSmall {
                    t,
                    h,
                    h_min: hmin,
                    n_steps,
                });
            }
            // The differences live on a grid of exactly h; t itself is summed with a
            // compensation term, so that a step far below t's spacing (h/t ≈ 1e-13 in a
            // sharp transition) is not rounded into a different step than D assumes.
            let mut t_new = t + (dir * h - t_comp);
            if (t_new - t1) * dir > 0.0 || (t1 - t_new).abs() < hmin {
                t_new = t1;
                let to_end = (t1 - t) + t_comp;
                change_d(&mut d, order, to_end.abs() / h, &mut tmp);
                h = to_end.abs();
                n_equal = 0;
                lu_valid = false;
            }
            let hs = dir * h;
            for i in 0..n {
                y_predict[i] = (0..=order).map(|k| d[k][i]).sum();
                scale[i] = atol + rtol * y_predict[i].abs();
                psi[i] = (1..=order).map(|k| co.gamma[k] * d[k][i]).sum::<f64>() / co.alpha[order];
            }
            let c = hs / co.alpha[order];
            let mut converged = false;
            let mut n_iter = 0;
            let mut singular = false;
            while !converged {
                if !lu_valid {
                    stats.n_factorizations += 1;
                    if !lu.factor(|i, j| {
                        if i == j {
                            1.0 - c * jac[i * n + j]
                        } else {
                            -c * jac[i * n + j]
                        }
                    }) {
                        singular = true;
                        break;
                    }
                    lu_valid = true;
                }
                // Simplified Newton on y − c f(t_new, y) = y_predict − psi.
                y_new.copy_from_slice(&y_predict);
                dd.iter_mut().for_each(|v| *v = 0.0);
                let mut norm_old: Option<f64> = None;
                n_iter = 0;
                for k in 0..NEWTON_MAXITER {
                    n_iter = k + 1;
                    stats.n_newton += 1;
                    system.rhs(t_new, &y_new, &mut f);
                    stats.n_evals += 1;
                    if f.iter().any(|v| !v.is_finite()) {
                        break;
                    }
                    for i in 0..n {
                        dy[i] = c * f[i] - psi[i] - dd[i];
                    }
                    lu.solve(&mut dy);
                    stats.n_solves += 1;
                    let norm = norm_scaled(&dy, &scale);
                    let rate = norm_old.map(|o| norm / o);
                    if let Some(r) = rate {
                        if r >= 1.0 || r.powi((NEWTON_MAXITER - k) as i32) / (1.0 - r) * norm > newton_tol {
                            break;
                        }
                    }
                    for i in 0..n {
                        y_new[i] += dy[i];
                        dd[i] += dy[i];
                    }
                    if norm == 0.0 || rate.is_some_and(|r| r / (1.0 - r) * norm < newton_tol) {
                        converged = true;
                        break;
                    }
                    norm_old = Some(norm);
                }
                if converged {
                    break;
                }
                stats.n_newton_failures += 1;
                if jac_current {
                    break;
                }
                system.jacobian(t_new, &y_predict, &mut jac);
                stats.n_jacobians += 1;
                jac_current = true;
                lu_valid = false;
            }
            if !converged {
                if singular && h <= 2.0 * hmin {
                    let n_steps = stats.n_accepted + stats.n_rejected;
                    return Err(SolveError::SingularMatrix { t, h, n_steps });
                }
                stats.n_rejected += 1;
                h *= 0.5;
                change_d(&mut d, order, 0.5, &mut tmp);
                n_equal = 0;
                lu_valid = false;
                if h < hmin {
                    let n_steps = stats.n_accepted + stats.n_rejected;
                    return Err(SolveError::NewtonFailed {
                        t,
                        h,
                        iterations: n_iter,
                        n_steps,
                    });
                }
                continue;
            }
            let safety = 0.9 * (2 * NEWTON_MAXITER + 1) as f64 / (2 * NEWTON_MAXITER + n_iter) as f64;
            for i in 0..n {
                scale[i] = atol + rtol * y_new[i].abs();
                err[i] = co.error_const[order] * dd[i];
            }
            let error_norm = norm_scaled(&err, &scale);
            if error_norm > 1.0 || !error_norm.is_finite() {
                stats.n_rejected += 1;
                error_failures += 1;
                let factor = if error_norm.is_finite() {
                    MIN_FACTOR.max(safety * error_norm.powf(-1.0 / (order as f64 + 1.0)))
                } else {
                    0.25
                };
                // Repeated error-test failures at one point: the high-order history no
                // longer describes the solution (a sharp transition), so drop the order
                // by one from the second failure on, as CVODE does (NDF/BDF codes that
                // keep the order, SciPy's BDF among them, shrink h to nothing on Van der
                // Pol at μ = 1000 and rtol 1e-9).
                if error_failures >= 2 && order > 1 {
                    order -= 1;
                }
                h *= factor;
                change_d(&mut d, order, factor, &mut tmp);
                n_equal = 0;
                lu_valid = false;
                continue;
            }
            break (t_new, n_iter, error_norm);
        };
        stats.n_accepted += 1;
        n_equal += 1;
        // Differences of the new point: ∇^{k+1} y_{n+1} = d − ∇^{k+1}... (the corrector's
        // total change d is y_{n+1} − y⁽⁰⁾ = ∇^{k+1} y_{n+1}).
        for i in 0..n {
            d[order + 2][i] = dd[i] - d[order + 1][i];
            d[order + 1][i] = dd[i];
        }
        for k in (0..=order).rev() {
            let (lo, hi) = d.split_at_mut(k + 1);
            for (a, b) in lo[k].iter_mut().zip(&hi[0]) {
                *a += b;
            }
        }
        let hs = dir * h;
        // Dense output on [t, t_new]: the polynomial through the last k + 1 points.
        while next < save.len() && (save[next] - t_new) * dir <= 0.0 {
            let ts = save[next];
            let mut p = 1.0;
            let base = out.len();
            out.extend_from_slice(&d[0]);
            for j in 1..=order {
                let shift = t_new - hs * (j - 1) as f64;
                p *= (ts - shift) / (hs * j as f64);
                for i in 0..n {
                    out[base + i] += d[j][i] * p;
                }
            }
            next += 1;
        }
        t_comp = if t_new == t1 { 0.0 } else { (t_new - t) - (hs - t_comp) };
        t = t_new;
        let _ = n_iter;
        if (t1 - t) * dir <= 0.0 {
            break;
        }
        if n_equal < order + 1 {
            continue;
        }
        let safety = 0.9 * (2 * NEWTON_MAXITER + 1) as f64 / (2 * NEWTON_MAXITER + n_iter) as f64;
        let error_m = if order > 1 {
            for i in 0..n {
                err[i] = co.error_const[order - 1] * d[order][i];
            }
            norm_scaled(&err, &scale)
        } else {
            f64::INFINITY
        };
        let error_p = if order < MAX_ORDER {
            for i in 0..n {
                err[i] = co.error_const[order + 1] * d[order + 2][i];
            }
            norm_scaled(&err, &scale)
        } else {
            f64::INFINITY
        };
        let factors = [
            error_m.powf(-1.0 / order as f64),
            error_norm.powf(-1.0 / (order as f64 + 1.0)),
            error_p.powf(-1.0 / (order as f64 + 2.0)),
        ];
        let (best, &fmax) = factors
            .iter()
            .enumerate()
            .fold((1, &factors[1]), |acc, (i, f)| if *f > *acc.1 { (i, f) } else { acc });
        order = (order + best) - 1;
        let factor = MAX_FACTOR.min(safety * fmax);
        h *= factor;
        change_d(&mut d, order, factor, &mut tmp);
        n_equal = 0;
        lu_valid = false;
    }
    Ok(StiffSolution {
        n,
        t: save.to_vec(),
        y: out,
        y_final: d[0].clone(),
        stats,
        switched_at: None,
    })
}
