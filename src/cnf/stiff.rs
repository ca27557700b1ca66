//! A CNF block solved with an implicit method: the augmented dynamics as a batch of
//! independent systems for [`crate::stiff`]'s block-diagonal Newton.
//!
//! The stiff solvers work in f64 on a state laid out point after point, so the block's
//! state `(z, Δ, E, R)` (all `z`, then all `Δ`, …) is permuted to
//! `(z₁, Δ₁, E₁, R₁, z₂, Δ₂, …)`: one block of `b = d + 1 (+1 +1)` per point. Point `i`'s
//! dynamics depend on its own `z` alone, so `∂g/∂s` is block-diagonal, each block
//!
//! ```text
//! ⎡ T ∂f/∂z      0 ⎤
//! ⎣ ∂(−T tr J)/∂z 0 ⎦     (and the rows of E, R below)
//! ```
//!
//! formed exactly from `b` vector-Jacobian products (one per row, all points at once),
//! so the discrete adjoint through it ([`crate::stiff::esdirk_gradient_blocks`]) is the
//! exact gradient of the discrete solution. Points of a float type other than f64 are
//! converted at every evaluation.

use super::dynamics::{eval_raw, scale_raw, GradEval, Layout};
use super::field::{Field, TraceMode};
use crate::ode::{OdeSystem, Vjp};
use crate::stiff::BlockJacobian;
use crate::Real;

/// One CNF block as a stiff system of `B` independent blocks.
pub(crate) struct StiffBlock<'a, T: Real, F: Field<T>> {
    field: &'a F,
    t_end: T,
    /// The augmented layout (Δ always carried for the Jacobian's VJPs, even by a plain
    /// flow).
    layout: Layout,
    /// The trace estimator, or `None` for the plain flow `dz/dτ = T f` (sampling).
    mode: Option<TraceMode<'a, T>>,
    ws: F::Workspace,
    eval: GradEval<T>,
    s: Vec<T>,
    raw: Vec<T>,
    cot: Vec<T>,
    grad_params: Vec<T>,
    /// VJPs spent forming Jacobian blocks (the solvers count only their own evaluations).
    pub(crate) jac_evals: usize,
}

impl<'a, T: Real, F: Field<T>> StiffBlock<'a, T, F> {
    /// The augmented dynamics of `layout` (`mode` the trace estimator), or with `mode`
    /// `None` the plain flow of `layout.n_batch` points (no Δ, E, R).
    pub(crate) fn new(field: &'a F, t_end: T, layout: Layout, mode: Option<TraceMode<'a, T>>) -> Self {
        let layout = match mode {
            Some(_) => layout,
            None => Layout {
                kinetic: false,
                jacobian: false,
                ..layout
            },
        };
        let d = layout.dim;
        // The Jacobian's VJPs of a plain flow use the exact trace's d tangents.
        let n_tangents = match mode {
            Some(TraceMode::Hutchinson(p)) => p.len() / layout.n_z(),
            _ => d,
        };
        StiffBlock {
            field,
            t_end,
            layout,
            mode,
            ws: field.workspace(layout.n_batch, n_tangents),
            eval: GradEval::new(layout),
            s: vec![T::zero(); layout.len()],
            raw: vec![T::zero(); layout.len()],
            cot: vec![T::zero(); layout.len()],
            grad_params: vec![T::zero(); field.n_params()],
            jac_evals: 0,
        }
    }

    /// States per point in the stiff layout.
    fn per_point(&self) -> usize {
        match self.mode {
            Some(_) => self.layout.len() / self.layout.n_batch,
            None => self.layout.dim,
        }
    }

    /// Index in the augmented layout of point `i`'s component `c`.
    fn index(&self, i: usize, c: usize) -> usize {
        let (b, d) = (self.layout.n_batch, self.layout.dim);
        if c < d {
            i * d + c
        } else {
            b * d + (c - d) * b + i
        }
    }

    /// The stiff solver's state (f64, point after point) of an augmented-layout state
    /// (or of `z` alone, for a plain flow).
    pub(crate) fn stiff_of(&self, s: &[T]) -> Vec<f64> {
        let bs = self.per_point();
        let mut y = vec![0.0; self.layout.n_batch * bs];
        for (i, yi) in y.chunks_exact_mut(bs).enumerate() {
            for (c, v) in yi.iter_mut().enumerate() {
                *v = s[self.index(i, c)].f64();
            }
        }
        y
    }

    /// The inverse of [`StiffBlock::stiff_of`].
    pub(crate) fn augmented_of(&self, y: &[f64]) -> Vec<T> {
        let mut s = vec![
            T::zero();
            if self.mode.is_some() {
                self.layout.len()
            } else {
                self.layout.n_z()
            }
        ];
        self.unpack(y, &mut s);
        s
    }

    fn unpack(&self, y: &[f64], s: &mut [T]) {
        let bs = self.per_point();
        for (i, yi) in y.chunks_exact(bs).enumerate() {
            for (c, &v) in yi.iter().enumerate() {
                s[self.index(i, c)] = T::c(v);
            }
        }
    }

    fn pack(&self, s: &[T], y: &mut [f64]) {
        let bs = self.per_point();
        for (i, yi) in y.chunks_exact_mut(bs).enumerate() {
            for (c, v) in yi.iter_mut().enumerate() {
                *v = s[self.index(i, c)].f64();
            }
        }
    }

    /// Loads the stiff state `y` into `self.s` (Δ, E, R zero for a plain flow: nothing
    /// depends on them).
    fn load(&mut self, y: &[f64]) {
        let mut s = std::mem::take(&mut self.s);
        if self.mode.is_none() {
            s.fill(T::zero());
        }
        self.unpack(y, &mut s);
        self.s = s;
    }

    /// Error control as the explicit solves': `z` and `Δ` controlled, the regularizer
    /// integrals not (`None` when there are none, or for a plain flow).
    pub(crate) fn error_mask(&self) -> Option<Vec<bool>> {
        let bs = self.per_point();
        let d = self.layout.dim;
        (self.mode.is_some() && bs > d + 1).then(|| (0..self.layout.n_batch * bs).map(|k| k % bs <= d).collect())
    }

    /// The VJP mode: the estimator, or the exact trace for a plain flow's Jacobian.
    fn vjp_mode(&self) -> TraceMode<'a, T> {
        self.mode.unwrap_or(TraceMode::Exact)
    }
}

impl<T: Real, F: Field<T>> OdeSystem<f64> for StiffBlock<'_, T, F> {
    fn rhs(&mut self, tau: f64, y: &[f64], dy: &mut [f64]) {
        self.load(y);
        let tau = T::c(tau);
        match self.mode {
            Some(mode) => {
                eval_raw(
                    self.field,
                    &mut self.ws,
                    mode,
                    &self.layout,
                    self.t_end,
                    tau,
                    &self.s,
                    &mut self.raw,
                );
                scale_raw(&self.layout, self.t_end, &mut self.raw);
            }
            None => {
                let nz = self.layout.n_z();
                self.field
                    .forward(tau * self.t_end, &self.s[..nz], &mut self.ws, &mut self.raw[..nz]);
                for v in &mut self.raw[..nz] {
                    *v *= self.t_end;
                }
            }
        }
        let raw = std::mem::take(&mut self.raw);
        self.pack(&raw, dy);
        self.raw = raw;
    }
}

impl<T: Real, F: Field<T>> BlockJacobian for StiffBlock<'_, T, F> {
    fn block_size(&self) -> usize {
        self.per_point()
    }

    /// Row `r` of every point's block is `∂g_r/∂z`, from one VJP with the cotangent
    /// `e_r` at every point; the columns of Δ, E and R are zero.
    fn jacobian_blocks(&mut self, tau: f64, y: &[f64], blocks: &mut [f64]) {
        let (b, d, bs) = (self.layout.n_batch, self.layout.dim, self.per_point());
        self.load(y);
        blocks.iter_mut().for_each(|v| *v = 0.0);
        let mode = self.vjp_mode();
        self.jac_evals += bs;
        for r in 0..bs {
            self.cot.fill(T::zero());
            for i in 0..b {
                let at = self.index(i, r);
                self.cot[at] = T::one();
            }
            self.grad_params.fill(T::zero());
            self.eval.run(
                self.field,
                &mut self.ws,
                mode,
                self.t_end,
                T::c(tau),
                &self.s,
                &self.cot,
                &mut self.grad_params,
            );
            let gz = self.eval.grad_z();
            for i in 0..b {
                for c in 0..d {
                    blocks[i * bs * bs + r * bs + c] = gz[i * d + c].f64();
                }
            }
        }
    }
}

/// The parameters are `(θ, T)`, as for the explicit solves' sensitivities.
impl<T: Real, F: Field<T>> Vjp<f64> for StiffBlock<'_, T, F> {
    fn n_params(&self) -> usize {
        self.field.n_params() + 1
    }

    fn vjp(&mut self, tau: f64, y: &[f64], w: &[f64], grad_y: &mut [f64], grad_p: &mut [f64]) {
        self.load(y);
        let mut cot = std::mem::take(&mut self.cot);
        cot.fill(T::zero());
        self.unpack(w, &mut cot);
        self.grad_params.fill(T::zero());
        let mode = self.vjp_mode();
        let dt_end = self.eval.run(
            self.field,
            &mut self.ws,
            mode,
            self.t_end,
            T::c(tau),
            &self.s,
            &cot,
            &mut self.grad_params,
        );
        self.cot = cot;
        // Only z reaches g: the other components' cotangents are zero.
        let (b, d, bs) = (self.layout.n_batch, self.layout.dim, self.per_point());
        let gz = self.eval.grad_z();
        for i in 0..b {
            for c in 0..bs {
                grad_y[i * bs + c] = if c < d { gz[i * d + c].f64() } else { 0.0 };
            }
        }
        let n_theta = self.grad_params.len();
        for (g, &v) in grad_p[..n_theta].iter_mut().zip(&self.grad_params) {
            *g += v.f64();
        }
        grad_p[n_theta] += dt_end.f64();
    }
}

use super::grad::{loss_and_cotangent, sens_error, LossConfig, LossGrad};
use super::model::{solve_error, BlockPass, Cnf, CnfError, ForwardPass, Trace};
use crate::stiff::{BlockTape, StiffConfig};
use rand::Rng;

impl<T: Real, F: Field<T>> Cnf<T, F> {
    /// The forward pass of [`Cnf::log_prob`] with an implicit method.
    pub(crate) fn forward_pass_stiff<R: Rng + ?Sized>(
        &self,
        x: &[T],
        config: &StiffConfig,
        trace: Trace,
        layout: Layout,
        rng: &mut R,
    ) -> Result<ForwardPass<T>, CnfError> {
        let d = layout.dim;
        let mut s = vec![T::zero(); layout.len()];
        s[..layout.n_z()].copy_from_slice(x);
        let mut pass = ForwardPass::new(layout.n_batch, self.blocks.len());
        for (k, block) in self.blocks.iter().enumerate() {
            s[layout.n_z()..].fill(T::zero());
            let probes = trace.draw::<T, _>(layout.n_batch, d, rng);
            let mut sys = StiffBlock::new(&block.field, block.t_end, layout, Some(Trace::mode(&probes)));
            let y0 = sys.stiff_of(&s);
            let config = StiffConfig {
                error_mask: sys.error_mask(),
                ..config.clone()
            };
            let sol =
                crate::stiff::solve_blocks(&mut sys, &y0, 0.0, 1.0, &[], &config).map_err(solve_error(k, "forward"))?;
            pass.n_evals += sol.stats.n_evals + sys.jac_evals;
            s = sys.augmented_of(&sol.y_final);
            pass.add_block(&layout, &s);
            pass.blocks.push(BlockPass {
                probes,
                s_end: s.clone(),
            });
        }
        pass.s = s;
        Ok(pass)
    }

    /// The plain flow of every block in turn with an implicit method, `τ: 0 → 1`
    /// (`forward`) or `1 → 0`, blocks in reverse; the states at `save` (per block, in
    /// its own time) are appended to `frames` when given.
    pub(crate) fn flow_stiff(
        &self,
        z: &[T],
        config: &StiffConfig,
        forward: bool,
        save: &[f64],
        mut frames: Option<&mut Vec<T>>,
    ) -> Result<(Vec<T>, crate::ode::Stats), CnfError> {
        let n_batch = self.n_points(z)?;
        let layout = Layout {
            n_batch,
            dim: self.dim(),
            kinetic: false,
            jacobian: false,
        };
        let direction = if forward { "forward" } else { "sampling" };
        let (t0, t1) = if forward { (0.0, 1.0) } else { (1.0, 0.0) };
        let mut x = z.to_vec();
        let mut stats = crate::ode::Stats::default();
        let order: Vec<usize> = if forward {
            (0..self.blocks.len()).collect()
        } else {
            (0..self.blocks.len()).rev().collect()
        };
        for k in order {
            let block = &self.blocks[k];
            let mut sys = StiffBlock::new(&block.field, block.t_end, layout, None);
            let y0 = sys.stiff_of(&x);
            let sol =
                crate::stiff::solve_blocks(&mut sys, &y0, t0, t1, save, config).map_err(solve_error(k, direction))?;
            stats.n_evals += sol.stats.n_evals + sys.jac_evals;
            stats.n_accepted += sol.stats.n_accepted;
            stats.n_rejected += sol.stats.n_rejected;
            if let Some(frames) = frames.as_deref_mut() {
                for frame in sol.y.chunks_exact(y0.len()) {
                    frames.extend(sys.augmented_of(frame));
                }
            }
            x = sys.augmented_of(&sol.y_final);
        }
        Ok((x, stats))
    }
}

/// The loss and gradient of [`super::loss_and_grad`] with an implicit method: each
/// block's forward solve taped by the block-diagonal ESDIRK, then reversed by its
/// discrete adjoint (the exact gradient of the discrete solution; `config.grad` and the
/// checkpointing settings do not apply).
pub(crate) fn stiff_loss<T: Real, F: Field<T>, R: Rng + ?Sized>(
    model: &Cnf<T, F>,
    x: &[T],
    config: &LossConfig,
    stiff: &StiffConfig,
    layout: Layout,
    rng: &mut R,
) -> Result<LossGrad<T>, CnfError> {
    let started = std::time::Instant::now();
    let d = layout.dim;
    let n_blocks = model.blocks.len();
    let probes: Vec<Vec<T>> = (0..n_blocks)
        .map(|_| config.trace.draw::<T, _>(layout.n_batch, d, rng))
        .collect();
    let mut s = vec![T::zero(); layout.len()];
    s[..layout.n_z()].copy_from_slice(x);
    let mut pass = ForwardPass::new(layout.n_batch, n_blocks);
    let mut tapes = Vec::with_capacity(n_blocks);
    for (k, block) in model.blocks.iter().enumerate() {
        s[layout.n_z()..].fill(T::zero());
        let mut sys = StiffBlock::new(&block.field, block.t_end, layout, Some(Trace::mode(&probes[k])));
        let y0 = sys.stiff_of(&s);
        let config = StiffConfig {
            error_mask: sys.error_mask(),
            ..stiff.clone()
        };
        let tape = BlockTape::forward(&mut sys, &y0, 0.0, 1.0, &config).map_err(sens_error(k))?;
        pass.n_evals += tape.n_evals() + sys.jac_evals;
        s = sys.augmented_of(tape.y_final());
        pass.add_block(&layout, &s);
        tapes.push(tape);
    }
    let seconds_forward = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let (loss, nll, kinetic, jacobian, mut cot) =
        loss_and_cotangent(&layout, config, &s, &pass.delta_sum, pass.kin_sum, pass.jac_sum);
    let mut grad_params = Vec::with_capacity(n_blocks);
    let mut grad_t_end = vec![T::zero(); n_blocks];
    let mut n_evals_backward = 0;
    for k in (0..n_blocks).rev() {
        let block = &model.blocks[k];
        let mut sys = StiffBlock::new(&block.field, block.t_end, layout, Some(Trace::mode(&probes[k])));
        let lambda = sys.stiff_of(&cot);
        let (grad_y0, grad_p, n_vjp) = tapes[k].backward(&mut sys, lambda).map_err(sens_error(k))?;
        n_evals_backward += n_vjp + sys.jac_evals;
        cot = sys.augmented_of(&grad_y0);
        let n_theta = block.field.n_params();
        grad_params.push(grad_p[..n_theta].iter().map(|&v| T::c(v)).collect::<Vec<T>>());
        grad_t_end[k] = T::c(grad_p[n_theta]);
    }
    grad_params.reverse();
    Ok(LossGrad {
        loss,
        nll,
        kinetic,
        jacobian,
        grad_params,
        grad_t_end,
        grad_x: cot[..layout.n_z()].to_vec(),
        n_evals_forward: pass.n_evals,
        n_evals_backward,
        seconds_forward,
        seconds_backward: started.elapsed().as_secs_f64(),
    })
}
