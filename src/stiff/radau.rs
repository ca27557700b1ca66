//! RADAU5: the three-stage Radau IIA collocation method of order 5 (Hairer & Wanner,
//! *Solving ODEs II*, §IV.5 Table 5.6 for the coefficients, §IV.8 for the implementation:
//! simplified Newton, its stopping rule, the error estimate and the step-size rule).
//!
//! For `Z = (z_1, z_2, z_3)`, `z_i = Y_i − y`:
//!
//! ```text
//! z_i = h Σ_j a_ij f(t + c_j h, y + z_j),        y_new = y + z_3   (stiffly accurate)
//! (I − h A ⊗ J) ΔZ = −Z + h (A ⊗ I) F(Z)          (simplified Newton, J kept across steps)
//! ```
//!
//! The iteration matrix is formed and factored whole (`3n × 3n`, faer's LU) rather than
//! through the eigen-decomposition of `A⁻¹` into a real and a complex `n × n` system:
//! simpler, and for the small systems of the test set the factorisation is not the cost.
//! The error estimate is Hairer's: `(I − h γ₀ J) err = h γ₀ (f(t, y) + Σ e_i z_i / h)`,
//! refined once by a second solve after a rejection or on the first step.

use super::linalg::DenseLu;
use super::{h_min, initial_step, StiffConfig, StiffSolution, StiffStats};
use crate::ode::{Jacobian, OdeSystem, SolveError};

struct Coeffs {
    c: [f64; 3],
    a: [[f64; 3]; 3],
    /// Error-estimate weights e_i (Hairer's DD1..DD3) and γ₀ = 1/u₁.
    e: [f64; 3],
    gamma0: f64,
}

fn coeffs() -> Coeffs {
    let s6 = 6f64.sqrt();
    let u1 = (6.0 + 81f64.cbrt() - 9f64.cbrt()) / 30.0;
    Coeffs {
        c: [(4.0 - s6) / 10.0, (4.0 + s6) / 10.0, 1.0],
        a: [
            [
                (88.0 - 7.0 * s6) / 360.0,
                (296.0 - 169.0 * s6) / 1800.0,
                (-2.0 + 3.0 * s6) / 225.0,
            ],
            [
                (296.0 + 169.0 * s6) / 1800.0,
                (88.0 + 7.0 * s6) / 360.0,
                (-2.0 - 3.0 * s6) / 225.0,
            ],
            [(16.0 - s6) / 36.0, (16.0 + s6) / 36.0, 1.0 / 9.0],
        ],
        e: [-(13.0 + 7.0 * s6) / 3.0, (-13.0 + 7.0 * s6) / 3.0, -1.0 / 3.0],
        gamma0: u1,
    }
}

/// `R(z) = 1 + z bᵀ (I − zA)⁻¹ 1` of Radau IIA (b = the last row of A).
pub(super) fn radau5_stability(z: f64) -> f64 {
    let co = coeffs();
    // Solve (I − zA) k = 1 by Gaussian elimination on the 3 × 3 system.
    let mut m = [[0.0; 4]; 3];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = if i == j { 1.0 } else { 0.0 } - z * co.a[i][j];
        }
        m[i][3] = 1.0;
    }
    for p in 0..3 {
        let piv = (p..3)
            .max_by(|&a, &b| m[a][p].abs().total_cmp(&m[b][p].abs()))
            .unwrap_or(p);
        m.swap(p, piv);
        for r in p + 1..3 {
            let f = m[r][p] / m[p][p];
            for c in p..4 {
                m[r][c] -= f * m[p][c];
            }
        }
    }
    let mut k = [0.0; 3];
    for i in (0..3).rev() {
        let s: f64 = (i + 1..3).map(|j| m[i][j] * k[j]).sum();
        k[i] = (m[i][3] - s) / m[i][i];
    }
    1.0 + z * (0..3).map(|j| co.a[2][j] * k[j]).sum::<f64>()
}

/// The collocation polynomial of a step, `z(θ) = Σ_i z_i L_i(θ)` on the nodes
/// `{0, c_1, c_2, 1}` (value 0 at θ = 0).
fn lagrange(c: &[f64; 3], theta: f64) -> [f64; 3] {
    let nodes = [0.0, c[0], c[1], c[2]];
    let mut l = [0.0; 3];
    for i in 0..3 {
        let xi = nodes[i + 1];
        let mut v = 1.0;
        for (j, &xj) in nodes.iter().enumerate() {
            if j != i + 1 {
                v *= (theta - xj) / (xi - xj);
            }
        }
        l[i] = v;
    }
    l
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
    // Hairer's radau5 works with rtol' = 0.1 rtol^(2/3) (its tolerances are then comparable
    // to those of explicit codes); the Newton tolerance follows it.
    let (rtol_w, atol_w) = if rtol > 0.0 {
        (0.1 * rtol.powf(2.0 / 3.0), 0.1 * rtol.powf(2.0 / 3.0) * atol / rtol)
    } else {
        (0.0, atol)
    };
    let fnewt = (10.0 * f64::EPSILON / rtol_w.max(1e-300)).max(0.03f64.min(rtol_w.sqrt()));
    const MAX_NEWTON: usize = 7;
    let fixed = config.fixed_steps.map(|k| (t1 - t0).abs() / k as f64);
    let h_max = config.h_max.unwrap_or(f64::INFINITY).min((t1 - t0).abs());

    let mut stats = StiffStats::default();
    let mut out = Vec::with_capacity(save.len() * n);
    let mut next = super::serve_start(save, t0, y0, &mut out);
    let mut y = y0.to_vec();
    let mut f0 = vec![0.0; n];
    system.rhs(t0, &y, &mut f0);
    stats.n_evals += 1;
    let mut h = match fixed {
        Some(h) => h,
        None => config
            .h0
            .unwrap_or_else(|| initial_step(system, t0, &y, &f0, dir, 5, config, &mut stats))
            .min(h_max),
    };
    let mut jac = vec![0.0; n * n];
    system.jacobian(t0, &y, &mut jac);
    stats.n_jacobians += 1;
    let mut jac_fresh = true;
    let mut big = DenseLu::new(3 * n);
    let mut small = DenseLu::new(n);
    let mut lu_h = f64::NAN;

    let mut z = vec![0.0; 3 * n];
    let mut dz = vec![0.0; 3 * n];
    let mut fz = vec![0.0; 3 * n];
    let mut ys = vec![0.0; n];
    let mut scale = vec![0.0; n];
    let mut err = vec![0.0; n];
    let mut tmp = vec![0.0; n];
    let mut y_new = vec![0.0; n];
    // The previous step's stage values, for the starting guess of the next.
    let mut z_prev = vec![0.0; 3 * n];
    let mut h_prev = 0.0;
    let mut have_prev = false;
    let mut first = true;
    let mut rejected_last = false;
    let mut eta_old = 1.0f64;
    let mut t = t0;
    let mut t_comp = 0.0;

    loop {
        let n_steps = stats.n_accepted + stats.n_rejected;
        if n_steps >= config.max_steps {
            return Err(SolveError::MaxStepsExceeded {
                t,
                h,
                n_steps,
                max_steps: config.max_steps,
            });
        }
        // t_comp is how far the summed t is ahead of the exact time (t − t_comp).
        let remaining = ((t1 - t) + t_comp).abs();
        let mut last = false;
        if h >= remaining || remaining - h < h_min(t1) + fixed.map_or(0.0, |hf| 1e-9 * hf) {
            h = remaining;
            last = true;
        }
        if h < h_min(t) {
            return Err(SolveError::StepSizeTooSmall {
                t,
                h,
                h_min: h_min(t),
                n_steps,
            });
        }
        let hs = dir * h;
        for i in 0..n {
            scale[i] = atol_w + rtol_w * y[i].abs();
        }
        // Factorisations for this h (both are redone whenever h or J changes).
        if lu_h != hs {
            stats.n_factorizations += 2;
            let big_ok = big.factor(|r, c| {
                let (bi, i) = (r / n, r % n);
                let (bj, j) = (c / n, c % n);
                let id = if r == c { 1.0 } else { 0.0 };
                id - hs * co.a[bi][bj] * jac[i * n + j]
            });
            let g = hs * co.gamma0;
            let small_ok = small.factor(|i, j| if i == j { 1.0 } else { 0.0 } - g * jac[i * n + j]);
            if !big_ok || !small_ok {
                if h <= 2.0 * h_min(t) {
                    return Err(SolveError::SingularMatrix { t, h, n_steps });
                }
                stats.n_rejected += 1;
                h *= 0.5;
                lu_h = f64::NAN;
                rejected_last = true;
                continue;
            }
            lu_h = hs;
        }
        // Starting guess: the previous collocation polynomial extrapolated, or zero.
        if have_prev && !rejected_last {
            let r = h / h_prev;
            for s in 0..3 {
                let l = lagrange(&co.c, 1.0 + co.c[s] * r);
                for i in 0..n {
                    let p: f64 = (0..3).map(|j| l[j] * z_prev[j * n + i]).sum();
                    z[s * n + i] = p - z_prev[2 * n + i];
                }
            }
        } else {
            z.iter_mut().for_each(|v| *v = 0.0);
        }
        // Simplified Newton.
        let mut converged = false;
        let mut norm_old = 0.0;
        let mut theta = 0.0f64;
        let mut eta = eta_old.max(f64::EPSILON).powf(0.8);
        let mut iterations = 0;
        for k in 0..MAX_NEWTON {
            iterations = k + 1;
            stats.n_newton += 1;
            for s in 0..3 {
                for i in 0..n {
                    ys[i] = y[i] + z[s * n + i];
                }
                system.rhs(t + co.c[s] * hs, &ys, &mut fz[s * n..(s + 1) * n]);
                stats.n_evals += 1;
            }
            if fz.iter().any(|v| !v.is_finite()) {
                break;
            }
            for s in 0..3 {
                for i in 0..n {
                    let af: f64 = (0..3).map(|j| co.a[s][j] * fz[j * n + i]).sum();
                    dz[s * n + i] = -z[s * n + i] + hs * af;
                }
            }
            big.solve(&mut dz);
            stats.n_solves += 1;
            let norm = (dz
                .chunks(n)
                .flat_map(|c| c.iter().zip(&scale).map(|(d, s)| (d / s).powi(2)))
                .sum::<f64>()
                / (3 * n) as f64)
                .sqrt();
            if k > 0 {
                theta = norm / norm_old;
                if theta >= 0.99 {
                    break;
                }
                eta = theta / (1.0 - theta);
                if theta.powi((MAX_NEWTON - 1 - k) as i32) / (1.0 - theta) * norm > fnewt {
                    break;
                }
            }
            norm_old = norm.max(f64::EPSILON);
            for (a, b) in z.iter_mut().zip(&dz) {
                *a += b;
            }
            if eta * norm <= fnewt {
                converged = true;
                break;
            }
        }
        if !converged {
            stats.n_newton_failures += 1;
            if fixed.is_some() && jac_fresh {
                return Err(SolveError::NewtonFailed {
                    t,
                    h,
                    iterations,
                    n_steps,
                });
            }
            if !jac_fresh {
                system.jacobian(t, &y, &mut jac);
                stats.n_jacobians += 1;
                jac_fresh = true;
            } else {
                stats.n_rejected += 1;
                h *= 0.5;
                if h < h_min(t) {
                    return Err(SolveError::NewtonFailed {
                        t,
                        h,
                        iterations,
                        n_steps,
                    });
                }
            }
            lu_h = f64::NAN;
            rejected_last = true;
            continue;
        }
        eta_old = eta;
        // Error estimate.
        for i in 0..n {
            y_new[i] = y[i] + z[2 * n + i];
            scale[i] = atol_w + rtol_w * y[i].abs().max(y_new[i].abs());
        }
        let g = hs * co.gamma0;
        for i in 0..n {
            let ez: f64 = (0..3).map(|s| co.e[s] * z[s * n + i]).sum::<f64>() / hs;
            tmp[i] = ez;
            err[i] = g * (f0[i] + ez);
        }
        small.solve(&mut err);
        stats.n_solves += 1;
        let norm = |e: &[f64]| (e.iter().zip(&scale).map(|(v, s)| (v / s).powi(2)).sum::<f64>() / n as f64).sqrt();
        let mut e = norm(&err);
        if e >= 1.0 && (first || rejected_last) {
            for i in 0..n {
                ys[i] = y[i] + err[i];
            }
            system.rhs(t, &ys, &mut fz[..n]);
            stats.n_evals += 1;
            for i in 0..n {
                err[i] = g * (fz[i] + tmp[i]);
            }
            small.solve(&mut err);
            stats.n_solves += 1;
            e = norm(&err);
        }
        if !e.is_finite() {
            e = 1e10;
        }
        // Hairer's step-size rule: fac = min(safety, (1 + 2·maxit) safety / (iterations + 2·maxit)).
        let safety = 0.9 * (1 + 2 * MAX_NEWTON) as f64 / (iterations + 2 * MAX_NEWTON) as f64;
        let quot = (e.max(1e-10).powf(0.25) / safety).clamp(0.125, 5.0);
        let mut h_new = h / quot;
        if e <= 1.0 || fixed.is_some() {
            stats.n_accepted += 1;
            first = false;
            let t_new = if last { t1 } else { t + (hs - t_comp) };
            // Dense output from the collocation polynomial.
            while next < save.len() && (save[next] - t_new) * dir <= 0.0 {
                let th = ((save[next] - t) / hs).clamp(0.0, 1.0);
                let l = lagrange(&co.c, th);
                for i in 0..n {
                    out.push(y[i] + (0..3).map(|s| l[s] * z[s * n + i]).sum::<f64>());
                }
                next += 1;
            }
            t_comp = if last { 0.0 } else { (t_new - t) - (hs - t_comp) };
            t = t_new;
            std::mem::swap(&mut y, &mut y_new);
            z_prev.copy_from_slice(&z);
            h_prev = h;
            have_prev = true;
            if last {
                break;
            }
            system.rhs(t, &y, &mut f0);
            stats.n_evals += 1;
            if rejected_last {
                h_new = h_new.min(h);
            }
            rejected_last = false;
            if let Some(hf) = fixed {
                h_new = hf;
            }
            h_new = h_new.min(h_max);
            // Keep J (and, for a nearly unchanged h, the factorisations) when Newton
            // converged fast; otherwise a fresh J at the new point.
            let keep_lu = theta <= 1e-3 && (1.0..=1.2).contains(&(h_new / h));
            if keep_lu {
                h_new = h;
            }
            if theta > 1e-3 {
                system.jacobian(t, &y, &mut jac);
                stats.n_jacobians += 1;
                jac_fresh = true;
                lu_h = f64::NAN;
            } else {
                jac_fresh = false;
            }
            h = h_new;
        } else {
            stats.n_rejected += 1;
            rejected_last = true;
            h = if first { h * 0.1 } else { h_new };
            lu_h = f64::NAN;
        }
    }
    Ok(StiffSolution {
        n,
        t: save.to_vec(),
        y: out,
        y_final: y,
        stats,
        switched_at: None,
    })
}
