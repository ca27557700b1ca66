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
use super::{solve, BlockJacobian, StiffConfig, StiffMethod};
use crate::ode::{Jacobian, JacobianVjp, SolveError, Vjp};
use crate::sensitivity::{Loss, Sensitivity, SensitivityError};

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

/// The exact gradient of `L = Σᵢ ℓᵢ(y(tᵢ))` on the discrete solution of an adaptive
/// ESDIRK solve ([`StiffMethod::TrBdf2`] or [`StiffMethod::Kvaerno5`]) — backprop
/// through a stiff solve, the accepted step sizes held fixed, as
/// [`sensitivity::gradient`](crate::sensitivity::gradient) does for explicit methods.
/// `times[0]` is the start; the solve stops at every observation time (the step size
/// carried across), so each `y(tᵢ)` is a step point.
///
/// A step `Zᵢ = yₙ + h Σ_{j≤i} aᵢⱼ kⱼ`, `kᵢ = f(tₙ + cᵢh, Zᵢ)`, `yₙ₊₁ = yₙ + h Σ bⱼkⱼ`
/// with the diagonal `aᵢᵢ = γ` is reversed stage by stage from the last, with
/// `λ = ∂L/∂yₙ₊₁` and `Z̄ᵢ = Jᵢᵀ k̄ᵢ`:
///
/// ```text
/// (I − γh Jᵢ)ᵀ k̄ᵢ = h bᵢ λ + h Σ_{l>i} aₗᵢ Z̄ₗ       (k̄₁ without the solve: a₁₁ = 0)
/// ∂L/∂yₙ = λ + Σᵢ Z̄ᵢ,      ∂L/∂p += Σᵢ f_p(Zᵢ)ᵀ k̄ᵢ
/// ```
///
/// with the Jacobian `Jᵢ` taken exactly at each stage value, so the gradient is that of
/// the solution Newton converged to. Memory: every accepted step's start and stage
/// derivatives.
pub fn esdirk_gradient<S: Vjp<f64> + Jacobian<f64> + ?Sized, L: Loss<f64>>(
    system: &mut S,
    y0: &[f64],
    times: &[f64],
    loss: &mut L,
    config: &StiffConfig,
) -> Result<Sensitivity<f64>, SensitivityError> {
    let fwd = taped_forward(system, y0, times, loss, config, |m, system, y, t0, t1, cfg, tape| {
        super::esdirk::solve_taped(m, system, y, t0, t1, &[], cfg, Some(tape))
    })?;
    let n = y0.len();
    esdirk_sensitivity(system, fwd, times.len(), DenseStage::new(n))
}

/// [`esdirk_gradient`] for a system of independent blocks ([`BlockJacobian`]: a batch of
/// the same model, a CNF batch): the forward solve is [`solve_blocks`]' and the
/// backward pass's transposed stage solves use the exact diagonal blocks, `B` solves
/// with `b × b` factorisations instead of one of `Bb × Bb`. The gradient is that of the
/// discrete solution, as for [`esdirk_gradient`], so the blocks must be exact (not an
/// approximation good enough for Newton).
pub fn esdirk_gradient_blocks<S: Vjp<f64> + BlockJacobian + ?Sized, L: Loss<f64>>(
    system: &mut S,
    y0: &[f64],
    times: &[f64],
    loss: &mut L,
    config: &StiffConfig,
) -> Result<Sensitivity<f64>, SensitivityError> {
    let b = block_size_of(system, y0.len())?;
    let fwd = taped_forward(system, y0, times, loss, config, |m, system, y, t0, t1, cfg, tape| {
        let matrix = super::esdirk::BlockMatrix::new(y.len(), b);
        super::esdirk::solve_with(m, system, matrix, y, t0, t1, &[], cfg, Some(tape))
    })?;
    esdirk_sensitivity(system, fwd, times.len(), BlockStage::new(y0.len(), b))
}

fn block_size_of<S: BlockJacobian + ?Sized>(system: &S, n: usize) -> Result<usize, SensitivityError> {
    let b = system.block_size();
    if b == 0 || !n.is_multiple_of(b) {
        return Err(SensitivityError::Dimension {
            got: n,
            expected: b.max(1) * (n / b.max(1)).max(1),
        });
    }
    Ok(b)
}

/// The backward half of [`esdirk_gradient`] and [`esdirk_gradient_blocks`].
fn esdirk_sensitivity<S: Vjp<f64> + ?Sized, M: StageTranspose<S>>(
    system: &mut S,
    fwd: TapedForward,
    n_times: usize,
    mut matrix: M,
) -> Result<Sensitivity<f64>, SensitivityError> {
    let n = fwd.ys.len() / n_times;
    let lambda_end = fwd.jumps[(n_times - 1) * n..].to_vec();
    let (grad_y0, grad_params, n_evals_backward) = esdirk_backward(system, &fwd, lambda_end, &mut matrix)?;
    Ok(Sensitivity {
        loss: fwd.loss,
        peak_stored_states: fwd.tape.len() * (fwd.tableau.c.len() + 1),
        y: fwd.ys,
        grad_y0,
        grad_params,
        grad_t0: None,
        grad_t1: None,
        n_evals_forward: fwd.n_evals,
        n_evals_backward,
    })
}

/// The transposed stage solves of the ESDIRK discrete adjoint, `(I − g J(t, z))ᵀ x = r`
/// with the Jacobian exactly at the stage value `z`: dense, or in diagonal blocks.
trait StageTranspose<S: ?Sized> {
    /// Evaluates `J(t, z)` and factors `I − g J`; false when singular.
    fn factor_at(&mut self, system: &mut S, t: f64, z: &[f64], g: f64) -> bool;
    /// Overwrites `r` with `(I − g J)⁻ᵀ r`.
    fn solve_transpose(&mut self, r: &mut [f64]);
}

struct DenseStage {
    jac: Vec<f64>,
    lu: DenseLu,
}

impl DenseStage {
    fn new(n: usize) -> Self {
        DenseStage {
            jac: vec![0.0; n * n],
            lu: DenseLu::new(n),
        }
    }
}

impl<S: Jacobian<f64> + ?Sized> StageTranspose<S> for DenseStage {
    fn factor_at(&mut self, system: &mut S, t: f64, z: &[f64], g: f64) -> bool {
        let n = z.len();
        system.jacobian(t, z, &mut self.jac);
        let jac = &self.jac;
        self.lu
            .factor(|a, b| if a == b { 1.0 } else { 0.0 } - g * jac[a * n + b])
    }
    fn solve_transpose(&mut self, r: &mut [f64]) {
        self.lu.solve_transpose(r);
    }
}

struct BlockStage {
    b: usize,
    jac: Vec<f64>,
    lus: Vec<DenseLu>,
}

impl BlockStage {
    fn new(n: usize, b: usize) -> Self {
        BlockStage {
            b,
            jac: vec![0.0; n * b],
            lus: (0..n / b).map(|_| DenseLu::new(b)).collect(),
        }
    }
}

impl<S: BlockJacobian + ?Sized> StageTranspose<S> for BlockStage {
    fn factor_at(&mut self, system: &mut S, t: f64, z: &[f64], g: f64) -> bool {
        system.jacobian_blocks(t, z, &mut self.jac);
        let (b, bb) = (self.b, self.b * self.b);
        let jac = &self.jac;
        self.lus.iter_mut().enumerate().all(|(k, lu)| {
            let blk = &jac[k * bb..(k + 1) * bb];
            lu.factor(|i, j| if i == j { 1.0 } else { 0.0 } - g * blk[i * b + j])
        })
    }
    fn solve_transpose(&mut self, r: &mut [f64]) {
        for (lu, rk) in self.lus.iter_mut().zip(r.chunks_mut(self.b)) {
            lu.solve_transpose(rk);
        }
    }
}

/// Reverses the taped ESDIRK steps of `fwd` from `λ = ∂L/∂y(t_N)` (the jumps at the
/// earlier observations added on the way): `(∂L/∂y₀, ∂L/∂p, VJPs made)`.
fn esdirk_backward<S: Vjp<f64> + ?Sized, M: StageTranspose<S>>(
    system: &mut S,
    fwd: &TapedForward,
    mut lambda: Vec<f64>,
    matrix: &mut M,
) -> Result<(Vec<f64>, Vec<f64>, usize), SensitivityError> {
    let (tableau, tape, seg_end) = (&fwd.tableau, &fwd.tape, &fwd.seg_end);
    let n = lambda.len();
    let s = tableau.c.len();
    let m = system.n_params();
    let mut grad_p = vec![0.0; m];
    let mut kbar = vec![vec![0.0; n]; s];
    let mut zbar = vec![vec![0.0; n]; s];
    let mut z = vec![0.0; n];
    let mut n_evals_backward = 0;
    for seg in (1..seg_end.len()).rev() {
        for (index, step) in tape[seg_end[seg - 1]..seg_end[seg]].iter().enumerate().rev() {
            let h = step.h;
            for i in (0..s).rev() {
                let r = &mut kbar[i];
                for q in 0..n {
                    r[q] = h * tableau.b[i] * lambda[q]
                        + h * (i + 1..s).map(|l| tableau.a[l][i] * zbar[l][q]).sum::<f64>();
                }
                for q in 0..n {
                    z[q] = step.y[q] + h * (0..=i).map(|j| tableau.a[i][j] * step.k[j * n + q]).sum::<f64>();
                }
                let ti = step.t + tableau.c[i] * h;
                if i > 0 {
                    if !matrix.factor_at(system, ti, &z, h * tableau.gamma) {
                        return Err(SensitivityError::Solve {
                            direction: "adjoint",
                            error: SolveError::SingularMatrix {
                                t: step.t,
                                h: h.abs(),
                                n_steps: seg_end[seg - 1] + index,
                            },
                        });
                    }
                    matrix.solve_transpose(r);
                }
                system.vjp(ti, &z, &kbar[i], &mut zbar[i], &mut grad_p);
                n_evals_backward += 1;
            }
            for q in 0..n {
                lambda[q] += (0..s).map(|i| zbar[i][q]).sum::<f64>();
            }
        }
        for (l, j) in lambda.iter_mut().zip(fwd.jumps_before(seg)) {
            *l += j;
        }
    }
    Ok((lambda, grad_p, n_evals_backward))
}

/// The taped forward solve of one CNF-like block and its reverse, apart: a chain of
/// systems (the blocks of a CNF) is solved forward block after block, then reversed
/// block after block, each from the cotangent the next one handed back.
pub(crate) struct BlockTape {
    fwd: TapedForward,
    b: usize,
}

impl BlockTape {
    /// Solves `system` from `y0` on `[t0, t1]` with the block-diagonal ESDIRK of
    /// `config`, taping the accepted steps; the final state is [`BlockTape::y_final`].
    pub(crate) fn forward<S: Vjp<f64> + BlockJacobian + ?Sized>(
        system: &mut S,
        y0: &[f64],
        t0: f64,
        t1: f64,
        config: &StiffConfig,
    ) -> Result<Self, SensitivityError> {
        let b = block_size_of(system, y0.len())?;
        let mut none = NoLoss;
        let fwd = taped_forward(
            system,
            y0,
            &[t0, t1],
            &mut none,
            config,
            |m, system, y, t0, t1, cfg, tape| {
                let matrix = super::esdirk::BlockMatrix::new(y.len(), b);
                super::esdirk::solve_with(m, system, matrix, y, t0, t1, &[], cfg, Some(tape))
            },
        )?;
        Ok(BlockTape { fwd, b })
    }

    /// The state at `t1`.
    pub(crate) fn y_final(&self) -> &[f64] {
        let n = self.fwd.ys.len() / 2;
        &self.fwd.ys[n..]
    }

    /// Evaluations of the forward solve.
    pub(crate) fn n_evals(&self) -> usize {
        self.fwd.n_evals
    }

    /// From `λ = ∂L/∂y(t1)`: `(∂L/∂y0, ∂L/∂p, VJPs made)`.
    pub(crate) fn backward<S: Vjp<f64> + BlockJacobian + ?Sized>(
        &self,
        system: &mut S,
        lambda: Vec<f64>,
    ) -> Result<(Vec<f64>, Vec<f64>, usize), SensitivityError> {
        let mut matrix = BlockStage::new(lambda.len(), self.b);
        esdirk_backward(system, &self.fwd, lambda, &mut matrix)
    }
}

/// The zero loss (a [`BlockTape`] takes its cotangent from outside).
struct NoLoss;

impl Loss<f64> for NoLoss {
    fn eval(&mut self, _i: usize, _t: f64, _y: &[f64], grad: &mut [f64]) -> f64 {
        grad.iter_mut().for_each(|g| *g = 0.0);
        0.0
    }
}

/// The exact gradient of `L = Σᵢ ℓᵢ(y(tᵢ))` on the discrete solution of an adaptive (or
/// fixed-step) RODAS4 solve, the accepted step sizes held fixed: backprop through a
/// Rosenbrock solve. Each step is reversed stage by stage with transposed solves with its
/// `W = I/(hγ) − J(y)` (see the step's adjoint in the module source); since `W` holds
/// `J(y)`, the gradient needs the second-order term `∂/∂(y, p) [wᵀ J v]` of
/// [`JacobianVjp`] (exact for a [`DualSystem`](crate::ode::DualSystem)). `times[0]` is
/// the start; the solve stops at every observation time. Memory: every accepted step's
/// start and six stage increments.
pub fn rosenbrock_gradient<S: JacobianVjp<f64> + ?Sized, L: Loss<f64>>(
    system: &mut S,
    y0: &[f64],
    times: &[f64],
    loss: &mut L,
    config: &StiffConfig,
) -> Result<Sensitivity<f64>, SensitivityError> {
    let forward = |error| SensitivityError::Solve {
        direction: "forward",
        error,
    };
    if config.method != StiffMethod::Rodas4 {
        return Err(forward(
            crate::ode::ConfigError::Setting {
                name: "method",
                value: config.method.order() as f64,
                need: "must be rodas4 for the Rosenbrock discrete adjoint (rosenbrock_gradient)",
            }
            .into(),
        ));
    }
    crate::sensitivity::check_times(times)?;
    let n = y0.len();
    if n == 0 {
        return Err(SensitivityError::Dimension { got: 0, expected: 1 });
    }
    config.validate().map_err(forward)?;
    let Segments {
        tape,
        seg_end,
        ys,
        jumps,
        loss: total,
        n_evals: n_evals_forward,
    } = taped_segments(
        y0,
        times,
        loss,
        config,
        |s: &super::rosenbrock::RodasStep| s.h,
        |y, t0, t1, cfg, tape| super::rosenbrock::solve_rodas_taped(system, y, t0, t1, &[], cfg, Some(tape)),
    )?;
    let mut lambda = jumps[(times.len() - 1) * n..].to_vec();
    let mut grad_p = vec![0.0; system.n_params()];
    let mut work = super::rosenbrock::adjoint_work(n);
    let mut n_evals_backward = 0;
    for seg in (1..times.len()).rev() {
        for (index, step) in tape[seg_end[seg - 1]..seg_end[seg]].iter().enumerate().rev() {
            n_evals_backward +=
                super::rosenbrock::rodas_step_adjoint(system, step, &mut lambda, &mut grad_p, &mut work).map_err(
                    |error| SensitivityError::Solve {
                        direction: "adjoint",
                        error: match error {
                            SolveError::SingularMatrix { t, h, .. } => SolveError::SingularMatrix {
                                t,
                                h,
                                n_steps: seg_end[seg - 1] + index,
                            },
                            e => e,
                        },
                    },
                )?;
        }
        for (l, j) in lambda.iter_mut().zip(&jumps[(seg - 1) * n..seg * n]) {
            *l += j;
        }
    }
    Ok(Sensitivity {
        loss: total,
        y: ys,
        grad_y0: lambda,
        grad_params: grad_p,
        grad_t0: None,
        grad_t1: None,
        n_evals_forward,
        n_evals_backward,
        peak_stored_states: tape.len() * 7,
    })
}

/// The continuous adjoint of a stiff solve, itself solved with a stiff method: for
/// `L = Σᵢ ℓᵢ(y(tᵢ))`,
///
/// ```text
/// da/dt = −J(y(t))ᵀ a,     da_p/dt = −f_p(y(t))ᵀ a
/// ```
///
/// backwards from `a(t_N) = ∂ℓ_N/∂y`, with the jumps `∂ℓᵢ/∂y` added at the earlier
/// observations; `dL/dy₀ = a(t₀)`, `dL/dp = a_p(t₀)`. The adjoint of a stiff problem is
/// stiff too (−Jᵀ has J's eigenvalues, and backwards in time they decay), and
/// re-integrating `y` backwards would blow its decaying modes up, so `y(t)` is read
/// from the forward solve instead (cubic Hermite on each accepted step of `forward`,
/// which must be TR-BDF2 or KVAERNO5) and the backward solve (`backward`: TR-BDF2,
/// KVAERNO5, RADAU5 or BDF, whose Newton iterations tolerate the approximate Jacobian
/// `diag(−Jᵀ, 0)`) carries `(a, a_p)` only. The gradient is as accurate as the two
/// solves and the interpolation, not exact for the discrete solution as
/// [`esdirk_gradient`] is; its memory is the forward solve's step points.
pub fn adjoint_gradient<S: Vjp<f64> + Jacobian<f64> + ?Sized, L: Loss<f64>>(
    system: &mut S,
    y0: &[f64],
    times: &[f64],
    loss: &mut L,
    forward: &StiffConfig,
    backward: &StiffConfig,
) -> Result<Sensitivity<f64>, SensitivityError> {
    if !matches!(
        backward.method,
        StiffMethod::TrBdf2 | StiffMethod::Kvaerno5 | StiffMethod::Radau5 | StiffMethod::Bdf
    ) {
        return Err(SensitivityError::Solve {
            direction: "adjoint",
            error: crate::ode::ConfigError::Setting {
                name: "backward method",
                value: backward.method.order() as f64,
                need: "must be tr-bdf2, kvaerno5, radau5 or bdf (Newton-based) for the stiff adjoint",
            }
            .into(),
        });
    }
    let fwd = taped_forward(system, y0, times, loss, forward, |m, system, y, t0, t1, cfg, tape| {
        super::esdirk::solve_taped(m, system, y, t0, t1, &[], cfg, Some(tape))
    })?;
    let n = y0.len();
    let m = system.n_params();
    let mut state = vec![0.0; n + m];
    state[..n].copy_from_slice(&fwd.jumps[(times.len() - 1) * n..]);
    let mut n_evals_backward = 0;
    for seg in (1..times.len()).rev() {
        let mut adj = StiffAdjointRhs {
            system: &mut *system,
            steps: &fwd.tape[fwd.seg_end[seg - 1]..fwd.seg_end[seg]],
            tableau: &fwd.tableau,
            n,
            y: vec![0.0; n],
            y1: vec![0.0; n],
            gy: vec![0.0; n],
            gp: vec![0.0; m],
            jac: vec![0.0; n * n],
        };
        let sol = solve(&mut adj, &state, times[seg], times[seg - 1], &[], backward).map_err(|error| {
            SensitivityError::Solve {
                direction: "adjoint",
                error,
            }
        })?;
        n_evals_backward += sol.stats.n_evals;
        state = sol.y_final;
        for (a, j) in state[..n].iter_mut().zip(&fwd.jumps[(seg - 1) * n..seg * n]) {
            *a += j;
        }
    }
    let grad_params = state.split_off(n);
    Ok(Sensitivity {
        loss: fwd.loss,
        y: fwd.ys,
        grad_y0: state,
        grad_params,
        grad_t0: None,
        grad_t1: None,
        n_evals_forward: fwd.n_evals,
        n_evals_backward,
        peak_stored_states: fwd.tape.len() * (fwd.tableau.c.len() + 1),
    })
}

/// The forward half of [`esdirk_gradient`] and [`adjoint_gradient`].
fn taped_forward<S: Vjp<f64> + ?Sized, L: Loss<f64>, G>(
    system: &mut S,
    y0: &[f64],
    times: &[f64],
    loss: &mut L,
    config: &StiffConfig,
    mut solve_segment: G,
) -> Result<TapedForward, SensitivityError>
where
    G: FnMut(
        &super::esdirk::Esdirk,
        &mut S,
        &[f64],
        f64,
        f64,
        &StiffConfig,
        &mut Vec<super::esdirk::TapedStep>,
    ) -> Result<super::StiffSolution, SolveError>,
{
    let tableau = super::esdirk::tableau(
        config.method,
        "must be tr-bdf2 or kvaerno5: the stiff gradients tape an ESDIRK forward solve",
    )
    .map_err(|e| SensitivityError::Solve {
        direction: "forward",
        error: e.into(),
    })?;
    crate::sensitivity::check_times(times)?;
    let n = y0.len();
    if n == 0 {
        return Err(SensitivityError::Dimension { got: 0, expected: 1 });
    }
    let forward = |error| SensitivityError::Solve {
        direction: "forward",
        error,
    };
    config.validate().map_err(forward)?;
    let seg = taped_segments(
        y0,
        times,
        loss,
        config,
        |s: &super::esdirk::TapedStep| s.h,
        |y, t0, t1, cfg, tape| solve_segment(&tableau, system, y, t0, t1, cfg, tape),
    )?;
    Ok(TapedForward {
        tableau,
        tape: seg.tape,
        seg_end: seg.seg_end,
        ys: seg.ys,
        jumps: seg.jumps,
        loss: seg.loss,
        n_evals: seg.n_evals,
    })
}

/// A forward solve split at the observation times, its accepted steps taped, and the
/// loss with its jumps.
struct Segments<Step> {
    tape: Vec<Step>,
    /// `tape[seg_end[i − 1]..seg_end[i]]` are the steps from `times[i − 1]` to `times[i]`.
    seg_end: Vec<usize>,
    /// States at the observation times (`times × n`).
    ys: Vec<f64>,
    /// `∂ℓᵢ/∂y` at each observation (`times × n`).
    jumps: Vec<f64>,
    loss: f64,
    n_evals: usize,
}

/// Solves from observation to observation with `solve_segment`, taping its steps; each
/// segment after the first starts from the second-to-last step size of the one before
/// (the last was clipped to the observation time).
fn taped_segments<Step, L: Loss<f64>>(
    y0: &[f64],
    times: &[f64],
    loss: &mut L,
    config: &StiffConfig,
    step_h: impl Fn(&Step) -> f64,
    mut solve_segment: impl FnMut(
        &[f64],
        f64,
        f64,
        &StiffConfig,
        &mut Vec<Step>,
    ) -> Result<super::StiffSolution, SolveError>,
) -> Result<Segments<Step>, SensitivityError> {
    let forward = |error| SensitivityError::Solve {
        direction: "forward",
        error,
    };
    let n = y0.len();
    let mut tape = Vec::new();
    let mut seg_end = Vec::with_capacity(times.len());
    let mut y = y0.to_vec();
    let mut ys = y0.to_vec();
    let mut n_evals = 0;
    let mut cfg = config.clone();
    seg_end.push(0);
    for w in times.windows(2) {
        super::check_span(&y, w[0], w[1], &[]).map_err(forward)?;
        let sol = solve_segment(&y, w[0], w[1], &cfg, &mut tape).map_err(forward)?;
        n_evals += sol.stats.n_evals;
        seg_end.push(tape.len());
        y = sol.y_final;
        ys.extend_from_slice(&y);
        let recent = &tape[seg_end[seg_end.len() - 2]..];
        if config.h0.is_none() && config.fixed_steps.is_none() {
            cfg.h0 = recent.iter().rev().nth(1).or(recent.last()).map(|s| step_h(s).abs());
        }
    }
    let mut total = 0.0;
    let mut jumps = vec![0.0; times.len() * n];
    for (i, &t) in times.iter().enumerate() {
        total += loss.eval(i, t, &ys[i * n..(i + 1) * n], &mut jumps[i * n..(i + 1) * n]);
    }
    Ok(Segments {
        tape,
        seg_end,
        ys,
        jumps,
        loss: total,
        n_evals,
    })
}

/// A forward ESDIRK solve split at the observation times, its accepted steps taped, and
/// the loss with its jumps.
struct TapedForward {
    tableau: super::esdirk::Esdirk,
    tape: Vec<super::esdirk::TapedStep>,
    /// `tape[seg_end[i − 1]..seg_end[i]]` are the steps from `times[i − 1]` to `times[i]`.
    seg_end: Vec<usize>,
    /// States at the observation times (`times × n`).
    ys: Vec<f64>,
    /// `∂ℓᵢ/∂y` at each observation (`times × n`).
    jumps: Vec<f64>,
    loss: f64,
    n_evals: usize,
}

impl TapedForward {
    /// The jumps `∂ℓ/∂y` at the observation that starts segment `seg` (`times[seg − 1]`).
    fn jumps_before(&self, seg: usize) -> &[f64] {
        let n = self.ys.len() / self.seg_end.len();
        &self.jumps[(seg - 1) * n..seg * n]
    }
}

/// The `(a, a_p)` system of [`adjoint_gradient`], `y(t)` from the taped steps.
struct StiffAdjointRhs<'a, S: ?Sized> {
    system: &'a mut S,
    steps: &'a [super::esdirk::TapedStep],
    tableau: &'a super::esdirk::Esdirk,
    n: usize,
    y: Vec<f64>,
    y1: Vec<f64>,
    gy: Vec<f64>,
    gp: Vec<f64>,
    jac: Vec<f64>,
}

impl<S: Vjp<f64> + ?Sized> StiffAdjointRhs<'_, S> {
    /// `y(t)` into `self.y` by cubic Hermite on the step holding `t`.
    fn interpolate(&mut self, t: f64) {
        let n = self.n;
        // Steps go forward in time; find the last one starting at or before t.
        let i = self.steps.partition_point(|s| (s.t - t) * s.h.signum() <= 0.0).max(1) - 1;
        let st = &self.steps[i];
        let s = self.tableau.c.len();
        // y_{n+1} = Z_s; f(y_{n+1}) = k_s (stiffly accurate).
        // self.y1 = y_{n+1}, then self.y = the Hermite value at t (no allocation: this
        // runs at every evaluation of the backward solve).
        for q in 0..n {
            self.y1[q] = st.y[q] + st.h * (0..s).map(|j| self.tableau.a[s - 1][j] * st.k[j * n + q]).sum::<f64>();
        }
        let th = ((t - st.t) / st.h).clamp(0.0, 1.0);
        self.y.clear();
        super::hermite(
            th,
            st.h,
            &st.y,
            &st.k[..n],
            &self.y1,
            &st.k[(s - 1) * n..s * n],
            &mut self.y,
        );
    }
}

impl<S: Vjp<f64> + ?Sized> crate::ode::OdeSystem<f64> for StiffAdjointRhs<'_, S> {
    fn rhs(&mut self, t: f64, state: &[f64], dstate: &mut [f64]) {
        let n = self.n;
        self.interpolate(t);
        self.gp.iter_mut().for_each(|v| *v = 0.0);
        self.system.vjp(t, &self.y, &state[..n], &mut self.gy, &mut self.gp);
        for (d, g) in dstate[..n].iter_mut().zip(&self.gy) {
            *d = -g;
        }
        for (d, g) in dstate[n..].iter_mut().zip(&self.gp) {
            *d = -g;
        }
    }
}

impl<S: Vjp<f64> + Jacobian<f64> + ?Sized> Jacobian<f64> for StiffAdjointRhs<'_, S> {
    fn jacobian(&mut self, t: f64, _state: &[f64], jac: &mut [f64]) {
        let n = self.n;
        let total = n + self.gp.len();
        self.interpolate(t);
        self.system.jacobian(t, &self.y, &mut self.jac);
        jac.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..n {
            for j in 0..n {
                jac[i * total + j] = -self.jac[j * n + i];
            }
        }
    }
}
