//! One-step stiff methods: the Rosenbrock method RODAS4 (adaptive) and the fixed-step
//! implicit Euler and trapezoid rules with simplified Newton.
//!
//! RODAS4 in the transformed form of Hairer & Wanner (*Solving ODEs II*, §IV.7, eq. 7.25),
//! with `W = I/(hγ) − J` factored once per step:
//!
//! ```text
//! W k_i = f(t + c_i h, y + Σ_{j<i} a_ij k_j) + Σ_{j<i} (C_ij / h) k_j + h d_i ∂f/∂t
//! y_new = y + Σ_{j<6} a_6j k_j + k_6,     error estimate k_6
//! ```
//!
//! Stages 5 and 6 sit at `c = 1` and the method is stiffly accurate (`a_6j = a_5j`,
//! `a_65 = 1`), so `y_new` is itself a stage value.

use super::linalg::DenseLu;
use super::{h_min, initial_step, wrms, StiffConfig, StiffMethod, StiffSolution, StiffStats};
use crate::ode::{Jacobian, OdeSystem, SolveError};

const S: usize = 6;

/// RODAS4's coefficients (Hairer & Wanner's `rodas`, METH = 1): γ, c, d, a and C by rows,
/// and the dense-output rows h2, h3.
struct Rodas {
    gamma: f64,
    c: [f64; S],
    d: [f64; S],
    a: [[f64; S]; S],
    cc: [[f64; S]; S],
    h: [[f64; 5]; 2],
}

const RODAS4: Rodas = Rodas {
    gamma: 0.25,
    c: [0.0, 0.386, 0.21, 0.63, 1.0, 1.0],
    d: [0.25, -0.1043, 0.1035, -0.0362, 0.0, 0.0],
    a: [
        [0.0; S],
        [1.544, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.9466785280815826, 0.2557011698983284, 0.0, 0.0, 0.0, 0.0],
        [3.314825187068521, 2.896124015972201, 0.9986419139977817, 0.0, 0.0, 0.0],
        [
            1.221224509226641,
            6.019134481288629,
            12.53708332932087,
            -0.687886036105895,
            0.0,
            0.0,
        ],
        [
            1.221224509226641,
            6.019134481288629,
            12.53708332932087,
            -0.687886036105895,
            1.0,
            0.0,
        ],
    ],
    cc: [
        [0.0; S],
        [-5.6688, 0.0, 0.0, 0.0, 0.0, 0.0],
        [-2.430093356833875, -0.2063599157091915, 0.0, 0.0, 0.0, 0.0],
        [
            -0.1073529058151375,
            -9.594562251023355,
            -20.47028614809616,
            0.0,
            0.0,
            0.0,
        ],
        [
            7.496443313967647,
            -10.24680431464352,
            -33.99990352819905,
            11.7089089320616,
            0.0,
            0.0,
        ],
        [
            8.083246795921522,
            -7.981132988064893,
            -31.52159432874371,
            16.31930543123136,
            -6.058818238834054,
            0.0,
        ],
    ],
    h: [
        [
            10.12623508344586,
            -7.487995877610167,
            -34.80091861555747,
            -7.992771707568823,
            1.025137723295662,
        ],
        [
            -0.6762803392801253,
            6.087714651680015,
            16.43084320892478,
            24.76722511418386,
            -6.594389125716872,
        ],
    ],
};

/// `R(z)`: one RODAS4 step of `y' = λy` from `y = 1` with `h λ = z`.
pub(super) fn rodas4_stability(z: f64) -> f64 {
    let m = &RODAS4;
    let w = 1.0 / m.gamma - z;
    let mut k = [0.0; S];
    for i in 0..S {
        let yi = 1.0 + (0..i).map(|j| m.a[i][j] * k[j]).sum::<f64>();
        let rhs = z * yi + (0..i).map(|j| m.cc[i][j] * k[j]).sum::<f64>();
        k[i] = rhs / w;
    }
    1.0 + (0..S - 1).map(|j| m.a[S - 1][j] * k[j]).sum::<f64>() + k[S - 1]
}

/// Buffers of a one-step solve.
pub(super) struct Work {
    n: usize,
    jac: Vec<f64>,
    lu: DenseLu,
    k: Vec<Vec<f64>>,
    ys: Vec<f64>,
    fs: Vec<f64>,
    ft: Vec<f64>,
    rhs: Vec<f64>,
}

impl Work {
    fn new(n: usize, stages: usize) -> Self {
        Work {
            n,
            jac: vec![0.0; n * n],
            lu: DenseLu::new(n),
            k: vec![vec![0.0; n]; stages],
            ys: vec![0.0; n],
            fs: vec![0.0; n],
            ft: vec![0.0; n],
            rhs: vec![0.0; n],
        }
    }

    /// Factors `diag · I − J`; false when singular.
    fn factor(&mut self, diag: f64, stats: &mut StiffStats) -> bool {
        let (n, jac) = (self.n, &self.jac);
        stats.n_factorizations += 1;
        self.lu
            .factor(|i, j| if i == j { diag - jac[i * n + j] } else { -jac[i * n + j] })
    }
}

/// Serves the save times inside `(t, t_new]` from an interpolant `y(θ)` on the step.
fn serve(
    save: &[f64],
    next: &mut usize,
    t: f64,
    t_new: f64,
    dir: f64,
    out: &mut Vec<f64>,
    mut at: impl FnMut(f64, &mut Vec<f64>),
) {
    let h = t_new - t;
    while *next < save.len() && (save[*next] - t_new) * dir <= 0.0 {
        let theta = if h == 0.0 {
            1.0
        } else {
            ((save[*next] - t) / h).clamp(0.0, 1.0)
        };
        at(theta, out);
        *next += 1;
    }
}

fn non_finite(what: &'static str, t: f64, h: f64, stats: &StiffStats) -> SolveError {
    SolveError::NonFinite {
        what,
        t,
        h,
        n_steps: stats.n_accepted + stats.n_rejected,
    }
}

pub(super) fn solve_rodas<Sys: OdeSystem<f64> + Jacobian<f64> + ?Sized>(
    system: &mut Sys,
    y0: &[f64],
    t0: f64,
    t1: f64,
    save: &[f64],
    config: &StiffConfig,
) -> Result<StiffSolution, SolveError> {
    solve_rodas_taped(system, y0, t0, t1, save, config, None)
}

/// One accepted RODAS4 step as its discrete adjoint needs it: the start `t`, the
/// signed step `h`, the start state `y` and the stage increments `k` (`6 × n`).
pub(super) struct RodasStep {
    pub t: f64,
    pub h: f64,
    pub y: Vec<f64>,
    pub k: Vec<f64>,
}

/// [`solve_rodas`], also pushing every accepted step onto `tape` when one is given.
pub(super) fn solve_rodas_taped<Sys: OdeSystem<f64> + Jacobian<f64> + ?Sized>(
    system: &mut Sys,
    y0: &[f64],
    t0: f64,
    t1: f64,
    save: &[f64],
    config: &StiffConfig,
    mut tape: Option<&mut Vec<RodasStep>>,
) -> Result<StiffSolution, SolveError> {
    let m = &RODAS4;
    let n = y0.len();
    let dir = (t1 - t0).signum();
    let (rtol, atol) = (config.rtol, config.atol);
    let mut stats = StiffStats::default();
    let mut w = Work::new(n, S);
    let mut y = y0.to_vec();
    let mut y_new = vec![0.0; n];
    let mut f0 = vec![0.0; n];
    let mut err = vec![0.0; n];
    let (mut dense1, mut dense2) = (vec![0.0; n], vec![0.0; n]);
    let mut out = Vec::with_capacity(save.len() * n);
    let mut next = super::serve_start(save, t0, y0, &mut out);
    let mut t = t0;
    system.rhs(t, &y, &mut f0);
    stats.n_evals += 1;
    // Fixed steps (`fixed_steps`): equal steps, every one accepted.
    let fixed = config.fixed_steps.map(|k| (t1 - t0).abs() / k as f64);
    let mut h = match fixed {
        Some(h) => h,
        None => config
            .h0
            .unwrap_or_else(|| initial_step(system, t0, &y, &f0, dir, 4, config, &mut stats)),
    };
    let h_max = config.h_max.unwrap_or(f64::INFINITY).min((t1 - t0).abs());
    h = h.min(h_max);
    let mut rejected_last = false;
    let autonomous = system.is_autonomous();
    let mut jac_current = false;
    loop {
        if stats.n_accepted + stats.n_rejected >= config.max_steps {
            return Err(SolveError::MaxStepsExceeded {
                t,
                h,
                n_steps: config.max_steps,
                max_steps: config.max_steps,
            });
        }
        let mut last = false;
        if (t + dir * h - t1) * dir >= 0.0 || (t1 - t).abs() - h < h_min(t1) + fixed.map_or(0.0, |hf| 1e-9 * hf) {
            h = (t1 - t).abs();
            last = true;
        }
        if h < h_min(t) {
            return Err(SolveError::StepSizeTooSmall {
                t,
                h,
                h_min: h_min(t),
                n_steps: stats.n_accepted + stats.n_rejected,
            });
        }
        let hs = dir * h;
        // A fresh Jacobian at every new point (a Rosenbrock method's order needs the exact
        // J); a rejected step retries from the same point with the same J.
        if !jac_current {
            system.jacobian(t, &y, &mut w.jac);
            stats.n_jacobians += 1;
            if !autonomous {
                let delta = f64::EPSILON.sqrt() * t.abs().max(1e-5);
                system.rhs(t + delta, &y, &mut w.ft);
                stats.n_evals += 1;
                for i in 0..n {
                    w.ft[i] = (w.ft[i] - f0[i]) / delta;
                }
            }
            jac_current = true;
        }
        if !w.factor(1.0 / (hs * m.gamma), &mut stats) {
            stats.n_rejected += 1;
            h *= 0.25;
            rejected_last = true;
            continue;
        }
        for s in 0..S {
            let fs: &[f64] = if s == 0 {
                &f0
            } else {
                w.ys.copy_from_slice(&y);
                for j in 0..s {
                    let a = m.a[s][j];
                    if a != 0.0 {
                        for (yi, kj) in w.ys.iter_mut().zip(&w.k[j]) {
                            *yi += a * kj;
                        }
                    }
                }
                system.rhs(t + m.c[s] * hs, &w.ys, &mut w.fs);
                stats.n_evals += 1;
                &w.fs
            };
            for i in 0..n {
                let mut r = fs[i] + hs * m.d[s] * w.ft[i];
                for j in 0..s {
                    r += m.cc[s][j] / hs * w.k[j][i];
                }
                w.rhs[i] = r;
            }
            w.lu.solve(&mut w.rhs);
            stats.n_solves += 1;
            std::mem::swap(&mut w.k[s], &mut w.rhs);
        }
        for i in 0..n {
            y_new[i] = w.ys[i] + w.k[S - 1][i];
            err[i] = w.k[S - 1][i] / (atol + rtol * y[i].abs().max(y_new[i].abs()));
        }
        let e = (err.iter().map(|e| e * e).sum::<f64>() / n as f64).sqrt();
        if !e.is_finite() {
            stats.n_rejected += 1;
            h *= 0.25;
            rejected_last = true;
            if h < h_min(t) {
                return Err(non_finite("vector field", t, h, &stats));
            }
            continue;
        }
        let mut fac = (0.9 * e.max(1e-10).powf(-0.25)).clamp(0.2, 6.0);
        if let Some(hf) = fixed {
            fac = hf / h;
        }
        if e <= 1.0 || fixed.is_some() {
            stats.n_accepted += 1;
            let t_new = if last { t1 } else { t + hs };
            for i in 0..n {
                let mut a = 0.0;
                let mut b = 0.0;
                for j in 0..5 {
                    a += m.h[0][j] * w.k[j][i];
                    b += m.h[1][j] * w.k[j][i];
                }
                dense1[i] = a;
                dense2[i] = b;
            }
            serve(save, &mut next, t, t_new, dir, &mut out, |th, out| {
                for i in 0..n {
                    out.push((1.0 - th) * y[i] + th * (y_new[i] + (1.0 - th) * (dense1[i] + th * dense2[i])));
                }
            });
            if let Some(tape) = tape.as_deref_mut() {
                tape.push(RodasStep {
                    t,
                    h: hs,
                    y: y.clone(),
                    k: w.k.concat(),
                });
            }
            std::mem::swap(&mut y, &mut y_new);
            t = t_new;
            if last {
                break;
            }
            system.rhs(t, &y, &mut f0);
            stats.n_evals += 1;
            jac_current = false;
            if rejected_last {
                fac = fac.min(1.0);
            }
            rejected_last = false;
            h = (h * fac).min(h_max);
        } else {
            stats.n_rejected += 1;
            rejected_last = true;
            h *= fac.min(1.0);
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

/// Reverses one taped RODAS4 step: `lambda` from `∂L/∂y_new` to `∂L/∂y`, adding the
/// parameters' part to `grad_p`; returns the VJPs made. With `W = I/(hγ) − J(y)` and
/// `W kᵢ = rᵢ = f(Yᵢ) + h dᵢ f_t + Σ_{j<i} (Cᵢⱼ/h) kⱼ`, the stages are reversed from the
/// last with `r̄ᵢ = W⁻ᵀ k̄ᵢ`:
///
/// ```text
/// k̄ⱼ += (Cᵢⱼ/h) r̄ᵢ,   Ȳᵢ = J(Yᵢ)ᵀ r̄ᵢ → ȳ, k̄ⱼ += aᵢⱼ Ȳᵢ,   p̄ += f_p(Yᵢ)ᵀ r̄ᵢ,
/// (ȳ, p̄) += ∂/∂(y, p) [r̄ᵢᵀ J(y) kᵢ]        (W holds J(y): the second-order term)
/// ```
///
/// and `f_t`, a forward difference in `t` when the system is not autonomous, is
/// reversed as the same difference of VJPs — so the gradient is that of the discrete
/// solution the forward solve computed.
pub(super) fn rodas_step_adjoint<Sys: crate::ode::JacobianVjp<f64> + ?Sized>(
    system: &mut Sys,
    step: &RodasStep,
    lambda: &mut [f64],
    grad_p: &mut [f64],
    w: &mut Work,
) -> Result<usize, SolveError> {
    let m = &RODAS4;
    let n = lambda.len();
    let np = grad_p.len();
    let (t, hs, y) = (step.t, step.h, &step.y);
    let k = |s: usize| &step.k[s * n..(s + 1) * n];
    system.jacobian(t, y, &mut w.jac);
    let mut stats = StiffStats::default();
    if !w.factor(1.0 / (hs * m.gamma), &mut stats) {
        return Err(SolveError::SingularMatrix {
            t,
            h: hs.abs(),
            n_steps: 0,
        });
    }
    let mut ybar = lambda.to_vec();
    let mut kbar = vec![vec![0.0; n]; S];
    for q in 0..n {
        kbar[S - 1][q] = lambda[q];
        for j in 0..S - 1 {
            kbar[j][q] = m.a[S - 1][j] * lambda[q];
        }
    }
    let mut ftbar = vec![0.0; n];
    let mut g = vec![0.0; n];
    let mut n_vjp = 0;
    for s in (0..S).rev() {
        let mut rbar = std::mem::take(&mut kbar[s]);
        w.lu.solve_transpose(&mut rbar);
        for j in 0..s {
            let c = m.cc[s][j] / hs;
            for q in 0..n {
                kbar[j][q] += c * rbar[q];
            }
        }
        for q in 0..n {
            ftbar[q] += hs * m.d[s] * rbar[q];
        }
        // The stage's evaluation f(t + cᵢh, Yᵢ) (Y₀ = y).
        w.ys.copy_from_slice(y);
        for j in 0..s {
            for (yi, kj) in w.ys.iter_mut().zip(k(j)) {
                *yi += m.a[s][j] * kj;
            }
        }
        system.vjp(t + m.c[s] * hs, &w.ys, &rbar, &mut g, grad_p);
        n_vjp += 1;
        for q in 0..n {
            ybar[q] += g[q];
            for j in 0..s {
                kbar[j][q] += m.a[s][j] * g[q];
            }
        }
        // W's J(y).
        system.jacobian_vjp(t, y, &rbar, k(s), &mut g, grad_p);
        for q in 0..n {
            ybar[q] += g[q];
        }
    }
    if !system.is_autonomous() {
        let delta = f64::EPSILON.sqrt() * t.abs().max(1e-5);
        let (mut g1, mut p1, mut p0) = (vec![0.0; n], vec![0.0; np], vec![0.0; np]);
        system.vjp(t + delta, y, &ftbar, &mut g1, &mut p1);
        system.vjp(t, y, &ftbar, &mut g, &mut p0);
        n_vjp += 2;
        for q in 0..n {
            ybar[q] += (g1[q] - g[q]) / delta;
        }
        for j in 0..np {
            grad_p[j] += (p1[j] - p0[j]) / delta;
        }
    }
    lambda.copy_from_slice(&ybar);
    Ok(n_vjp)
}

/// Buffers for [`rodas_step_adjoint`].
pub(super) fn adjoint_work(n: usize) -> Work {
    Work::new(n, 1)
}

/// Backward Euler or the trapezoid rule on equal steps, each implicit stage solved by
/// simplified Newton with the Jacobian at the step's start (refreshed at the current
/// iterate once if Newton stalls).
pub(super) fn solve_fixed<Sys: OdeSystem<f64> + Jacobian<f64> + ?Sized>(
    system: &mut Sys,
    y0: &[f64],
    t0: f64,
    t1: f64,
    save: &[f64],
    config: &StiffConfig,
) -> Result<StiffSolution, SolveError> {
    let n = y0.len();
    let steps = config.fixed_steps.unwrap_or(1);
    let dir = (t1 - t0).signum();
    let hs = (t1 - t0) / steps as f64;
    // θ: the weight of f(t + h, z) — 1 for backward Euler, 1/2 for the trapezoid rule.
    let theta = if config.method == StiffMethod::BackwardEuler {
        1.0
    } else {
        0.5
    };
    let mut stats = StiffStats::default();
    let mut w = Work::new(n, 1);
    let mut y = y0.to_vec();
    let mut z = vec![0.0; n];
    let mut f0 = vec![0.0; n];
    let mut f1 = vec![0.0; n];
    let mut out = Vec::with_capacity(save.len() * n);
    let mut next = super::serve_start(save, t0, y0, &mut out);
    system.rhs(t0, &y, &mut f0);
    stats.n_evals += 1;
    let tol = (10.0 * f64::EPSILON / config.rtol.max(1e-300))
        .max(0.03f64.min(config.rtol.sqrt()))
        .min(0.03);
    for step in 0..steps {
        let t = t0 + step as f64 * hs;
        let t_new = if step + 1 == steps {
            t1
        } else {
            t0 + (step + 1) as f64 * hs
        };
        let h = t_new - t;
        // Predictor: explicit Euler.
        for i in 0..n {
            z[i] = y[i] + h * f0[i];
        }
        let mut converged = false;
        let mut iterations = 0;
        // Simplified Newton with J at the step's start; if it stalls, full Newton from
        // the start value, J refreshed at every iterate (a fixed-step method cannot
        // shrink its step instead).
        for attempt in 0..2 {
            let full = attempt == 1;
            if full {
                stats.n_newton_failures += 1;
                for i in 0..n {
                    z[i] = y[i] + h * f0[i];
                }
            }
            let mut norm_old = f64::INFINITY;
            let mut norm_first = f64::INFINITY;
            iterations = 0;
            let max_iter = if full { 30 } else { 10 };
            for it in 0..max_iter {
                if it == 0 || full {
                    let (tj, at) = if full { (t_new, &z) } else { (t, &y) };
                    system.jacobian(tj, at, &mut w.jac);
                    stats.n_jacobians += 1;
                    if !w.factor(1.0 / (theta * h), &mut stats) {
                        return Err(SolveError::SingularMatrix { t, h, n_steps: step });
                    }
                }
                iterations = it + 1;
                stats.n_newton += 1;
                system.rhs(t_new, &z, &mut f1);
                stats.n_evals += 1;
                // G(z) = (z − y)/(θh) − f(z) − (1−θ)/θ f0 ;  (I/(θh) − J) Δ = −G.
                for i in 0..n {
                    w.rhs[i] = -((z[i] - y[i]) / (theta * h) - f1[i] - (1.0 - theta) / theta * f0[i]);
                }
                w.lu.solve(&mut w.rhs);
                stats.n_solves += 1;
                for i in 0..n {
                    z[i] += w.rhs[i];
                }
                let norm = wrms(&w.rhs, &z, config.rtol, config.atol);
                if !norm.is_finite() {
                    break;
                }
                if it == 0 {
                    norm_first = norm;
                }
                let rate = norm / norm_old;
                if norm == 0.0 || (it > 0 && rate < 1.0 && rate / (1.0 - rate) * norm < tol) || norm < 1e-3 * tol {
                    converged = true;
                    break;
                }
                if (!full && it > 0 && rate >= 1.0) || norm > 1e6 * norm_first {
                    break;
                }
                norm_old = norm;
            }
            if converged {
                break;
            }
        }
        if !converged {
            return Err(SolveError::NewtonFailed {
                t,
                h,
                iterations,
                n_steps: step,
            });
        }
        system.rhs(t_new, &z, &mut f1);
        stats.n_evals += 1;
        if z.iter().any(|v| !v.is_finite()) {
            return Err(non_finite("state", t, h, &stats));
        }
        stats.n_accepted += 1;
        // Cubic Hermite dense output from (y, f0) and (z, f1).
        serve(save, &mut next, t, t_new, dir, &mut out, |th, out| {
            super::hermite(th, h, &y, &f0, &z, &f1, out);
        });
        std::mem::swap(&mut y, &mut z);
        std::mem::swap(&mut f0, &mut f1);
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
