//! ESDIRK methods (an explicit first stage, then implicit stages sharing the diagonal
//! γ), each stage solved by simplified Newton on `I − hγJ`: one factorisation per step
//! size, the Jacobian kept across steps and refreshed when Newton fails.
//!
//! TR-BDF2 (Bank et al. 1985; in this ESDIRK form, Hosea & Shampine, *Analysis and
//! implementation of TR-BDF2*, Appl. Numer. Math. 20, 1996): a trapezoid stage to
//! `t + γh`, then a BDF2 stage to `t + h`, γ = 2 − √2:
//!
//! ```text
//! c = (0, γ, 1),  A = [[0, 0, 0], [d, d, 0], [w, w, d]],  d = γ/2,  w = √2/4
//! b = (w, w, d)  (order 2, L-stable, stiffly accurate)
//! b̂ = ((1 − w)/3, (3w + 1)/3, d/3)  (order 3: it meets all four third-order conditions)
//! ```
//!
//! KVAERNO5 (Kværnø, *Singly diagonally implicit Runge–Kutta methods with an explicit
//! first stage*, BIT 44, 2004; the coefficients as tabulated for ARKODE's
//! `KVAERNO_7_4_5`): seven stages, γ = 0.26, order 5 with an embedded order 4. Both
//! weight vectors are rows of A (the method is stiffly accurate, and so is its embedding:
//! b̂ is the sixth row), the method is L-stable.
//!
//! The error estimate `h Σ (b_i − b̂_i) k_i` is filtered through `(I − hγJ)⁻¹`, as Hosea
//! and Shampine do, so that it stays bounded on stiff components. Dense output is the
//! cubic Hermite interpolant of the step's ends (order 3 between steps, as diffrax's
//! ESDIRK methods).

use super::linalg::DenseLu;
use super::{h_min, initial_step, StiffConfig, StiffSolution, StiffStats};
use crate::ode::{Jacobian, Jvp, OdeSystem, SolveError};

pub(super) struct Esdirk {
    pub c: Vec<f64>,
    pub a: Vec<Vec<f64>>,
    pub b: Vec<f64>,
    pub b_hat: Vec<f64>,
    pub gamma: f64,
    /// Order of the error estimate's leading term (local error exponent − 1).
    pub order: u32,
}

pub(super) fn tr_bdf2() -> Esdirk {
    let gamma = 2.0 - 2f64.sqrt();
    let d = gamma / 2.0;
    let w = 2f64.sqrt() / 4.0;
    Esdirk {
        c: vec![0.0, gamma, 1.0],
        a: vec![vec![0.0, 0.0, 0.0], vec![d, d, 0.0], vec![w, w, d]],
        b: vec![w, w, d],
        b_hat: vec![(1.0 - w) / 3.0, (3.0 * w + 1.0) / 3.0, d / 3.0],
        gamma: d,
        order: 2,
    }
}

/// KVAERNO5: Kværnø (2004), the 7-stage ESDIRK 5(4) pair, γ = 0.26.
// The digits as tabulated, some beyond f64 precision.
#[allow(clippy::excessive_precision)]
pub(super) fn kvaerno5() -> Esdirk {
    const G: f64 = 0.26;
    let a = vec![
        vec![0.0; 7],
        vec![0.26, G, 0.0, 0.0, 0.0, 0.0, 0.0],
        vec![0.13, 0.84033320996790809, G, 0.0, 0.0, 0.0, 0.0],
        vec![
            0.22371961478320505,
            0.47675532319799699,
            -0.06470895363112615,
            G,
            0.0,
            0.0,
            0.0,
        ],
        vec![
            0.16648564323248321,
            0.10450018841591720,
            0.03631482272098715,
            -0.13090704451073998,
            G,
            0.0,
            0.0,
        ],
        vec![
            0.13855640231268224,
            0.0,
            -0.04245337201752043,
            0.02446657898003141,
            0.61943039072480676,
            G,
            0.0,
        ],
        vec![
            0.13659751177640291,
            0.0,
            -0.05496908796538376,
            -0.04118626728321046,
            0.62993304899016403,
            0.06962479448202728,
            G,
        ],
    ];
    // c is the row sums (the tabulated c to 15 digits: 0, 0.52, 1.230333209967908,
    // 0.895765984350076, 0.436393609858648, 1, 1).
    let c = a.iter().map(|row| row.iter().sum()).collect();
    Esdirk {
        c,
        b: a[6].clone(),
        b_hat: a[5].clone(),
        a,
        gamma: G,
        order: 4,
    }
}

/// The ESDIRK tableau of `method` (TR-BDF2 or KVAERNO5); any other method is refused
/// with `need` as the message.
pub(super) fn tableau(method: super::StiffMethod, need: &'static str) -> Result<Esdirk, crate::ode::ConfigError> {
    match method {
        super::StiffMethod::TrBdf2 => Ok(tr_bdf2()),
        super::StiffMethod::Kvaerno5 => Ok(kvaerno5()),
        m => Err(crate::ode::ConfigError::Setting {
            name: "method",
            value: m.order() as f64,
            need,
        }),
    }
}

/// `R(z) = 1 + z bᵀ (I − zA)⁻¹ 1` for a lower-triangular A (forward substitution).
pub(super) fn stability(m: &Esdirk, z: f64) -> f64 {
    let s = m.c.len();
    let mut k = vec![0.0; s];
    for i in 0..s {
        let r = 1.0 + z * (0..i).map(|j| m.a[i][j] * k[j]).sum::<f64>();
        k[i] = r / (1.0 - z * m.a[i][i]);
    }
    1.0 + z * (0..s).map(|j| m.b[j] * k[j]).sum::<f64>()
}

pub(super) fn solve<S: OdeSystem<f64> + Jacobian<f64> + ?Sized>(
    m: &Esdirk,
    system: &mut S,
    y0: &[f64],
    t0: f64,
    t1: f64,
    save: &[f64],
    config: &StiffConfig,
) -> Result<StiffSolution, SolveError> {
    solve_taped(m, system, y0, t0, t1, save, config, None)
}

/// One accepted step as the discrete adjoint needs it: the start `t`, the signed step
/// `h`, the start state `y` and the stage derivatives `k` (`s × n`, row-major), from
/// which every stage value `Zᵢ = y + h Σ_{j≤i} aᵢⱼ kⱼ` follows.
pub(super) struct TapedStep {
    pub t: f64,
    pub h: f64,
    pub y: Vec<f64>,
    pub k: Vec<f64>,
}

/// [`solve`], also pushing every accepted step onto `tape` when one is given.
#[allow(clippy::too_many_arguments)]
pub(super) fn solve_taped<S: OdeSystem<f64> + Jacobian<f64> + ?Sized>(
    m: &Esdirk,
    system: &mut S,
    y0: &[f64],
    t0: f64,
    t1: f64,
    save: &[f64],
    config: &StiffConfig,
    tape: Option<&mut Vec<TapedStep>>,
) -> Result<StiffSolution, SolveError> {
    let matrix = DenseMatrix {
        jac: vec![0.0; y0.len() * y0.len()],
        lu: DenseLu::new(y0.len()),
    };
    solve_with(m, system, matrix, y0, t0, t1, save, config, tape)
}

/// The iteration matrix `I − γh J` of Newton's method: its Jacobian, factorisation and
/// solves, dense or in independent diagonal blocks.
pub(super) trait IterationMatrix<S: ?Sized> {
    /// Evaluates and keeps `J(t, y)`.
    fn jacobian(&mut self, system: &mut S, t: f64, y: &[f64]);
    /// Factors `I − g J`; false when singular.
    fn factor(&mut self, g: f64) -> bool;
    /// Solves `(I − g J) x = b` in place.
    fn solve(&mut self, system: &mut S, x: &mut [f64]);
    /// Evaluations of `f` (or JVPs) the solves made, beyond the driver's own.
    fn evals(&self) -> usize {
        0
    }
}

struct DenseMatrix {
    jac: Vec<f64>,
    lu: DenseLu,
}

impl<S: Jacobian<f64> + ?Sized> IterationMatrix<S> for DenseMatrix {
    fn jacobian(&mut self, system: &mut S, t: f64, y: &[f64]) {
        system.jacobian(t, y, &mut self.jac);
    }
    fn factor(&mut self, g: f64) -> bool {
        let (n, jac) = (self.lu.dim(), &self.jac);
        self.lu
            .factor(|i, j| if i == j { 1.0 } else { 0.0 } - g * jac[i * n + j])
    }
    fn solve(&mut self, _system: &mut S, x: &mut [f64]) {
        self.lu.solve(x);
    }
}

/// `B` independent diagonal blocks of size `b`: `B` factorisations of `b × b` instead of
/// one of `Bb × Bb`.
pub(super) struct BlockMatrix {
    b: usize,
    jac: Vec<f64>,
    lus: Vec<DenseLu>,
}

impl BlockMatrix {
    pub(super) fn new(n: usize, b: usize) -> Self {
        BlockMatrix {
            b,
            jac: vec![0.0; n * b],
            lus: (0..n / b).map(|_| DenseLu::new(b)).collect(),
        }
    }
}

impl<S: super::BlockJacobian + ?Sized> IterationMatrix<S> for BlockMatrix {
    fn jacobian(&mut self, system: &mut S, t: f64, y: &[f64]) {
        system.jacobian_blocks(t, y, &mut self.jac);
    }
    fn factor(&mut self, g: f64) -> bool {
        let bb = self.b * self.b;
        let b = self.b;
        self.lus.iter_mut().enumerate().all(|(k, lu)| {
            let jac = &self.jac[k * bb..(k + 1) * bb];
            lu.factor(|i, j| if i == j { 1.0 } else { 0.0 } - g * jac[i * b + j])
        })
    }
    fn solve(&mut self, _system: &mut S, x: &mut [f64]) {
        for (lu, xk) in self.lus.iter_mut().zip(x.chunks_mut(self.b)) {
            lu.solve(xk);
        }
    }
}

/// Matrix-free Newton–Krylov: `(I − gJ) x = b` by restarted GMRES on Jacobian-vector
/// products at the Jacobian point (the system's [`Jvp`]), no matrix formed or factored.
pub(super) struct KrylovMatrix<P> {
    t: f64,
    y: Vec<f64>,
    g: f64,
    dy: Vec<f64>,
    jv: Vec<f64>,
    x: Vec<f64>,
    pv: Vec<f64>,
    products: usize,
    /// Right preconditioner `M ≈ I − gJ`: GMRES solves `(I − gJ) M⁻¹ u = b`, `x = M⁻¹ u`.
    precond: P,
    /// Whether the preconditioner needs setting up (a new Jacobian point or `g`) before
    /// the next solve.
    stale: bool,
}

impl<P> KrylovMatrix<P> {
    pub(super) fn new(n: usize, precond: P) -> Self {
        KrylovMatrix {
            t: 0.0,
            y: vec![0.0; n],
            g: 0.0,
            dy: vec![0.0; n],
            jv: vec![0.0; n],
            x: vec![0.0; n],
            pv: vec![0.0; n],
            products: 0,
            precond,
            stale: true,
        }
    }
}

impl<S: Jvp<f64> + ?Sized, P: super::Preconditioner<S>> IterationMatrix<S> for KrylovMatrix<P> {
    fn jacobian(&mut self, _system: &mut S, t: f64, y: &[f64]) {
        self.t = t;
        self.y.copy_from_slice(y);
        self.stale = true;
    }
    fn factor(&mut self, g: f64) -> bool {
        self.g = g;
        self.stale = true;
        true
    }
    fn solve(&mut self, system: &mut S, b: &mut [f64]) {
        let (t, g) = (self.t, self.g);
        if self.stale {
            self.products += self.precond.setup(system, t, &self.y, g);
            self.stale = false;
        }
        let (y, dy, jv, pv, precond) = (&self.y, &mut self.dy, &mut self.jv, &mut self.pv, &mut self.precond);
        self.x.iter_mut().for_each(|v| *v = 0.0);
        let (products, _) = super::linalg::gmres(
            |v, out| {
                pv.copy_from_slice(v);
                precond.apply(pv);
                system.jvp(t, y, pv, dy, jv);
                for ((o, vi), ji) in out.iter_mut().zip(pv.iter()).zip(jv.iter()) {
                    *o = vi - g * ji;
                }
            },
            b,
            &mut self.x,
            30,
            300,
            1e-4,
        );
        self.products += products;
        self.precond.apply(&mut self.x);
        b.copy_from_slice(&self.x);
    }
    fn evals(&self) -> usize {
        self.products
    }
}

/// The ESDIRK driver on any iteration matrix.
#[allow(clippy::too_many_arguments)]
pub(super) fn solve_with<S: OdeSystem<f64> + ?Sized, M: IterationMatrix<S>>(
    m: &Esdirk,
    system: &mut S,
    mut matrix: M,
    y0: &[f64],
    t0: f64,
    t1: f64,
    save: &[f64],
    config: &StiffConfig,
    mut tape: Option<&mut Vec<TapedStep>>,
) -> Result<StiffSolution, SolveError> {
    if let Some(mask) = &config.error_mask {
        if mask.len() != y0.len() {
            return Err(SolveError::DimensionMismatch {
                what: "error mask",
                got: mask.len(),
                expected: y0.len(),
            });
        }
    }
    let n = y0.len();
    let s = m.c.len();
    let dir = (t1 - t0).signum();
    let (rtol, atol) = (config.rtol, config.atol);
    let newton_tol = (10.0 * f64::EPSILON / rtol.max(1e-300)).max(0.03f64.min(rtol.sqrt()));
    let fixed = config.fixed_steps.map(|k| (t1 - t0).abs() / k as f64);
    // Fixed steps cannot shrink when Newton is slow, so they may iterate longer.
    let max_newton = if fixed.is_some() { 25 } else { 6 };
    let h_max = config.h_max.unwrap_or(f64::INFINITY).min((t1 - t0).abs());
    let mut stats = StiffStats::default();
    let mut out = Vec::with_capacity(save.len() * n);
    let mut next = super::serve_start(save, t0, y0, &mut out);
    let mut y = y0.to_vec();
    let mut k: Vec<Vec<f64>> = vec![vec![0.0; n]; s];
    system.rhs(t0, &y, &mut k[0]);
    stats.n_evals += 1;
    let mut h = match fixed {
        Some(h) => h,
        None => config
            .h0
            .unwrap_or_else(|| initial_step(system, t0, &y, &k[0], dir, m.order, config, &mut stats))
            .min(h_max),
    };
    let mut jac_current = false;
    let mut have_jac = false;
    let mut lu_h = f64::NAN;
    let mut z = vec![0.0; n];
    let mut base = vec![0.0; n];
    let mut dz = vec![0.0; n];
    let mut fz = vec![0.0; n];
    let mut err = vec![0.0; n];
    let mut t = t0;
    let mut t_comp = 0.0;
    let mut rejected_last = false;
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
        if !have_jac {
            matrix.jacobian(system, t, &y);
            stats.n_jacobians += 1;
            have_jac = true;
            jac_current = true;
            lu_h = f64::NAN;
        }
        if lu_h != hs {
            stats.n_factorizations += 1;
            let g = hs * m.gamma;
            if !matrix.factor(g) {
                if h <= 2.0 * h_min(t) {
                    return Err(SolveError::SingularMatrix { t, h, n_steps });
                }
                stats.n_rejected += 1;
                h *= 0.5;
                continue;
            }
            lu_h = hs;
        }
        // The implicit stages.
        let mut converged = true;
        let mut iterations = 0;
        for i in 1..s {
            for q in 0..n {
                base[q] = y[q] + hs * (0..i).map(|j| m.a[i][j] * k[j][q]).sum::<f64>();
                // Predictor: the stage's explicit part plus γh times the last derivative.
                z[q] = base[q] + hs * m.gamma * k[i - 1][q];
            }
            let ti = t + m.c[i] * hs;
            let mut norm_old: Option<f64> = None;
            converged = false;
            for it in 0..max_newton {
                iterations = it + 1;
                stats.n_newton += 1;
                system.rhs(ti, &z, &mut fz);
                stats.n_evals += 1;
                if fz.iter().any(|v| !v.is_finite()) {
                    break;
                }
                for q in 0..n {
                    dz[q] = base[q] + hs * m.gamma * fz[q] - z[q];
                }
                matrix.solve(system, &mut dz);
                stats.n_solves += 1;
                let norm = (dz
                    .iter()
                    .zip(&z)
                    .map(|(d, zq)| (d / (atol + rtol * zq.abs())).powi(2))
                    .sum::<f64>()
                    / n as f64)
                    .sqrt();
                for q in 0..n {
                    z[q] += dz[q];
                }
                let rate = norm_old.map(|o| norm / o);
                if let Some(r) = rate {
                    if r >= 1.0 {
                        break;
                    }
                }
                if norm == 0.0 || rate.is_some_and(|r| r / (1.0 - r) * norm < newton_tol) || norm < 1e-3 * newton_tol {
                    converged = true;
                    break;
                }
                norm_old = Some(norm);
            }
            if !converged {
                break;
            }
            // k_i from the converged stage: (z − base)/(γh), consistent with the stage
            // equation (no extra evaluation).
            for q in 0..n {
                k[i][q] = (z[q] - base[q]) / (hs * m.gamma);
            }
        }
        if !converged {
            stats.n_newton_failures += 1;
            if fixed.is_some() && jac_current {
                return Err(SolveError::NewtonFailed {
                    t,
                    h,
                    iterations,
                    n_steps,
                });
            }
            if !jac_current {
                have_jac = false;
            } else {
                stats.n_rejected += 1;
                h *= 0.5;
                lu_h = f64::NAN;
                if h < h_min(t) {
                    return Err(SolveError::NewtonFailed {
                        t,
                        h,
                        iterations,
                        n_steps,
                    });
                }
            }
            rejected_last = true;
            continue;
        }
        // z is the last stage = y_new (stiffly accurate). Error estimate, filtered.
        for q in 0..n {
            err[q] = hs * (0..s).map(|j| (m.b[j] - m.b_hat[j]) * k[j][q]).sum::<f64>();
        }
        matrix.solve(system, &mut err);
        stats.n_solves += 1;
        let controlled = |q: usize| config.error_mask.as_ref().is_none_or(|m| m[q]);
        let n_controlled = (0..n).filter(|&q| controlled(q)).count().max(1);
        let e = ((0..n)
            .filter(|&q| controlled(q))
            .map(|q| (err[q] / (atol + rtol * y[q].abs().max(z[q].abs()))).powi(2))
            .sum::<f64>()
            / n_controlled as f64)
            .sqrt();
        let e = if e.is_finite() { e } else { 1e10 };
        let fac = (0.9 * e.max(1e-10).powf(-1.0 / (m.order as f64 + 1.0))).clamp(0.2, 5.0);
        if e <= 1.0 || fixed.is_some() {
            stats.n_accepted += 1;
            if let Some(tape) = tape.as_deref_mut() {
                tape.push(TapedStep {
                    t,
                    h: hs,
                    y: y.clone(),
                    k: k.concat(),
                });
            }
            let t_new = if last { t1 } else { t + (hs - t_comp) };
            // Cubic Hermite dense output from (y, k_1) and (y_new, k_s).
            while next < save.len() && (save[next] - t_new) * dir <= 0.0 {
                let th = ((save[next] - t) / hs).clamp(0.0, 1.0);
                super::hermite(th, hs, &y, &k[0], &z, &k[s - 1], &mut out);
                next += 1;
            }
            t_comp = if last { 0.0 } else { (t_new - t) - (hs - t_comp) };
            t = t_new;
            y.copy_from_slice(&z);
            if last {
                break;
            }
            // First same as last: k_1 of the next step is f(t, y_new).
            system.rhs(t, &y, &mut fz);
            stats.n_evals += 1;
            k[0].copy_from_slice(&fz);
            jac_current = false;
            let mut h_new = h * if rejected_last { fac.min(1.0) } else { fac };
            if let Some(hf) = fixed {
                h_new = hf;
            }
            // Keep h (and the factorisation) when it would change by less than 20 %.
            if fixed.is_none() && (1.0..1.2).contains(&(h_new / h)) {
                h_new = h;
            }
            h = h_new.min(h_max);
            rejected_last = false;
        } else {
            stats.n_rejected += 1;
            rejected_last = true;
            h *= fac.min(0.9);
        }
    }
    stats.n_evals += matrix.evals();
    Ok(StiffSolution {
        n,
        t: save.to_vec(),
        y: out,
        y_final: y,
        stats,
        switched_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TR-BDF2's main weights meet the conditions of order 2 and not 3; the embedded ones
    /// all four of order 3; rows sum to c.
    #[test]
    fn tr_bdf2_order_conditions() {
        let m = tr_bdf2();
        let s = m.c.len();
        let ac: Vec<f64> = (0..s).map(|i| (0..s).map(|j| m.a[i][j] * m.c[j]).sum()).collect();
        for i in 0..s {
            assert!((m.a[i].iter().sum::<f64>() - m.c[i]).abs() < 1e-15);
        }
        let cond = |w: &[f64]| -> [f64; 4] {
            [
                w.iter().sum::<f64>() - 1.0,
                (0..s).map(|i| w[i] * m.c[i]).sum::<f64>() - 0.5,
                (0..s).map(|i| w[i] * m.c[i] * m.c[i]).sum::<f64>() - 1.0 / 3.0,
                (0..s).map(|i| w[i] * ac[i]).sum::<f64>() - 1.0 / 6.0,
            ]
        };
        let main = cond(&m.b);
        assert!(main[0].abs() < 1e-15 && main[1].abs() < 1e-15);
        assert!(main[2].abs() > 1e-3, "the main method is of order 2 only");
        for (k, v) in cond(&m.b_hat).iter().enumerate() {
            assert!(v.abs() < 1e-15, "embedded condition {k}: {v}");
        }
    }

    /// The residuals of the 17 order conditions of orders 1–5 (one per rooted tree) for
    /// weights `w` with the stage matrix `a` and nodes `c`, in order of the trees' sizes.
    fn order_conditions(m: &Esdirk, w: &[f64]) -> Vec<(usize, f64)> {
        let s = m.c.len();
        let av = |v: &[f64]| -> Vec<f64> { (0..s).map(|i| (0..s).map(|j| m.a[i][j] * v[j]).sum()).collect() };
        let hadamard = |u: &[f64], v: &[f64]| -> Vec<f64> { u.iter().zip(v).map(|(a, b)| a * b).collect() };
        let dot = |v: &[f64]| -> f64 { w.iter().zip(v).map(|(a, b)| a * b).sum() };
        let one = vec![1.0; s];
        let c = m.c.clone();
        let c2 = hadamard(&c, &c);
        let c3 = hadamard(&c2, &c);
        let c4 = hadamard(&c3, &c);
        let ac = av(&c);
        let ac2 = av(&c2);
        let aac = av(&ac);
        vec![
            (1, dot(&one) - 1.0),
            (2, dot(&c) - 1.0 / 2.0),
            (3, dot(&c2) - 1.0 / 3.0),
            (3, dot(&ac) - 1.0 / 6.0),
            (4, dot(&c3) - 1.0 / 4.0),
            (4, dot(&hadamard(&c, &ac)) - 1.0 / 8.0),
            (4, dot(&ac2) - 1.0 / 12.0),
            (4, dot(&aac) - 1.0 / 24.0),
            (5, dot(&c4) - 1.0 / 5.0),
            (5, dot(&hadamard(&c2, &ac)) - 1.0 / 10.0),
            (5, dot(&hadamard(&c, &ac2)) - 1.0 / 15.0),
            (5, dot(&hadamard(&c, &aac)) - 1.0 / 30.0),
            (5, dot(&hadamard(&ac, &ac)) - 1.0 / 20.0),
            (5, dot(&av(&c3)) - 1.0 / 20.0),
            (5, dot(&av(&hadamard(&c, &ac))) - 1.0 / 40.0),
            (5, dot(&av(&ac2)) - 1.0 / 60.0),
            (5, dot(&av(&aac)) - 1.0 / 120.0),
        ]
    }

    /// KVAERNO5's weights meet all 17 conditions of order 5; its embedded weights the 8
    /// of order 4 and not all of order 5; the tabulated nodes are the row sums; the
    /// method is stiffly accurate and L-stable.
    #[test]
    fn kvaerno5_order_conditions() {
        let m = kvaerno5();
        let tabulated = [
            0.0,
            0.52,
            1.230333209967908,
            0.895765984350076,
            0.436393609858648,
            1.0,
            1.0,
        ];
        for (c, t) in m.c.iter().zip(tabulated) {
            assert!((c - t).abs() < 1e-14, "c {c} vs tabulated {t}");
        }
        for (order, r) in order_conditions(&m, &m.b) {
            assert!(
                r.abs() < 1e-13,
                "main method, a condition of order {order}: residual {r:e}"
            );
        }
        let embedded = order_conditions(&m, &m.b_hat);
        for &(order, r) in &embedded {
            if order <= 4 {
                assert!(
                    r.abs() < 1e-13,
                    "embedded, a condition of order {order}: residual {r:e}"
                );
            }
        }
        let worst5 = embedded
            .iter()
            .filter(|(o, _)| *o == 5)
            .map(|(_, r)| r.abs())
            .fold(0.0, f64::max);
        assert!(worst5 > 1e-4, "the embedded method is of order 4 only: {worst5:e}");
        assert_eq!(m.b, m.a[6], "stiffly accurate");
        assert!(stability(&m, -1e10).abs() < 1e-8, "R(-inf) = 0");
        // R(z) − e^z = O(z⁶): halving z divides the difference by ≈ 64.
        let d = |z: f64| (stability(&m, z) - z.exp()).abs();
        let ratio = d(0.2) / d(0.1);
        assert!((50.0..80.0).contains(&ratio), "ratio {ratio}");
    }

    /// The same check catches a wrong coefficient.
    #[test]
    fn order_conditions_detect_a_perturbed_tableau() {
        let mut m = kvaerno5();
        m.a[4][2] += 1e-5;
        let b = m.a[6].clone();
        let worst = order_conditions(&m, &b)
            .iter()
            .map(|(_, r)| r.abs())
            .fold(0.0, f64::max);
        assert!(worst > 1e-8, "{worst:e}");
    }
}
