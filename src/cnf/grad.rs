//! The training loss and its gradient, by the continuous adjoint or by backprop
//! through the solver's steps.
//!
//! `L = −(1/B) Σ_b log p(x_b) + λ_E (1/B) Σ_b Σ_k E_k,b + λ_R (1/B) Σ_b Σ_k R_k,b`, with
//! `∂L/∂z_K = z_K / B`, `∂L/∂Δ_k = 1/B`, `∂L/∂E_k = λ_E / B`, `∂L/∂R_k = λ_R / B`.
//!
//! - **Adjoint** (optimise-then-discretise; Chen et al. 2018): each block's
//!   [`AdjointSystem`] is solved from `τ = 1` back to `0`, starting from the block's
//!   output; memory is flat in the number of steps. `z` is recomputed backwards, which
//!   is approximate (it is only as good as the backward solve). With `seminorm` the
//!   parameter adjoints are left out of step-size control (Kidger et al. 2021).
//! - **Backprop** (discretise-then-optimise): the exact gradient of the discrete solution
//!   for the step sizes taken (they are held fixed), by the discrete adjoint of
//!   [`crate::sensitivity`]. Each block's system keeps the workspace of every stage of an
//!   accepted step on a tape (up to [`TAPE_BUDGET`] sample-evaluations; the driver's
//!   step events say which evaluations were stages), so each stage costs one forward
//!   pass and one VJP; stages past the budget are recomputed for their VJPs (one more
//!   forward pass each).

use rand::Rng;

use super::dynamics::{Layout, Record, Taped};
use super::field::Field;
use super::model::{log_normal, BlockPass, Cnf, CnfError, ForwardPass, Trace};
use crate::ode::SolverConfig;
use crate::sensitivity::{adjoint_backward, discrete_forward, Checkpointing, SensitivityError};
use crate::Real;

/// How the gradient is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GradMethod {
    /// Continuous adjoint; `seminorm` leaves `a_θ, a_T` out of error control.
    Adjoint {
        /// Use the seminorm (on by default).
        seminorm: bool,
    },
    /// Reverse mode through the solver's accepted steps.
    Backprop,
}

/// Everything one loss-and-gradient evaluation needs besides the model and the data.
#[derive(Clone, Debug, PartialEq)]
pub struct LossConfig {
    /// Solver of the forward (and adjoint) solves.
    pub solver: SolverConfig,
    /// Trace estimator.
    pub trace: Trace,
    /// Weight `λ_E` of the kinetic energy `∫ ‖f‖²` (0 = off).
    pub kinetic: f64,
    /// Weight `λ_R` of the Jacobian Frobenius term `∫ ‖J ε‖²` (0 = off).
    pub jacobian: f64,
    /// Gradient method.
    pub grad: GradMethod,
    /// Sample-evaluations (evaluations × batch size, over all blocks) that backprop may
    /// keep on its tape; [`TAPE_BUDGET`] by default, 0 to always recompute the stages.
    pub tape_budget: usize,
    /// What backprop keeps of each block's forward solve: every stage (on the tape, up
    /// to `tape_budget`), the step starts, or binomial checkpoints under a budget of
    /// stored states. Every policy gives the same gradient, bit for bit.
    pub checkpointing: Checkpointing,
}

impl LossConfig {
    /// The plain NLL with `solver`: exact trace, no regularizers, adjoint with seminorm.
    pub fn new(solver: SolverConfig) -> Self {
        LossConfig {
            solver,
            trace: Trace::Exact,
            kinetic: 0.0,
            jacobian: 0.0,
            grad: GradMethod::Adjoint { seminorm: true },
            tape_budget: TAPE_BUDGET,
            checkpointing: Checkpointing::All,
        }
    }
}

/// The loss, its parts, its gradient and the work done.
#[derive(Clone, Debug, PartialEq)]
pub struct LossGrad<T> {
    /// The loss `L` (NLL plus weighted regularizers).
    pub loss: f64,
    /// Negative log-likelihood per point, in nats.
    pub nll: f64,
    /// Mean kinetic-energy integral (summed over blocks), if on.
    pub kinetic: f64,
    /// Mean Jacobian integral (summed over blocks), if on.
    pub jacobian: f64,
    /// `∂L/∂θ` per block.
    pub grad_params: Vec<Vec<T>>,
    /// `∂L/∂T` per block.
    pub grad_t_end: Vec<T>,
    /// `∂L/∂x` (`B × d`).
    pub grad_x: Vec<T>,
    /// Function evaluations of the forward solves.
    pub n_evals_forward: usize,
    /// Work of the backward pass: vector-Jacobian products plus the forward passes it
    /// recomputed (the adjoint recomputes one per VJP, taped backprop none).
    pub n_evals_backward: usize,
    /// Wall time of the forward solves, seconds.
    pub seconds_forward: f64,
    /// Wall time of the backward pass, seconds.
    pub seconds_backward: f64,
}

/// Buffers that [`loss_and_grad_in`] keeps between calls: backprop's tape of field
/// workspaces, per block, reused by the next batch of the same shape instead of
/// allocated anew. Keep one per model (it is cleared when the batch size, trace
/// estimator, regularizers or any block's parameter count change).
pub struct GradScratch<T: Real, F: Field<T>> {
    /// Batch size, tangents, state length and each block's parameter count.
    shape: (usize, usize, usize, Vec<usize>),
    records: Vec<Vec<Record<T, F::Workspace>>>,
}

impl<T: Real, F: Field<T>> Default for GradScratch<T, F> {
    fn default() -> Self {
        GradScratch {
            shape: (0, 0, 0, Vec::new()),
            records: Vec::new(),
        }
    }
}

impl<T: Real, F: Field<T>> GradScratch<T, F> {
    /// Empty scratch.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Computes the loss of `model` on the batch `x` and its gradient.
pub fn loss_and_grad<T: Real, F: Field<T>, X: Real, R: Rng + ?Sized>(
    model: &Cnf<T, F>,
    x: &[X],
    config: &LossConfig,
    rng: &mut R,
) -> Result<LossGrad<T>, CnfError> {
    loss_and_grad_in(model, x, config, rng, &mut GradScratch::new())
}

/// [`loss_and_grad`] reusing `scratch` from earlier calls (a training loop keeps one).
pub fn loss_and_grad_in<T: Real, F: Field<T>, X: Real, R: Rng + ?Sized>(
    model: &Cnf<T, F>,
    x: &[X],
    config: &LossConfig,
    rng: &mut R,
    scratch: &mut GradScratch<T, F>,
) -> Result<LossGrad<T>, CnfError> {
    let n_batch = model.n_points(x)?;
    let d = model.dim();
    if n_batch == 0 {
        return Err(CnfError::EmptyBatch);
    }
    config.trace.validate()?;
    let layout = Layout {
        n_batch,
        dim: d,
        kinetic: config.kinetic > 0.0,
        jacobian: config.jacobian > 0.0,
    };
    let n_tangents = config.trace.n_tangents(d);
    let shape = (
        n_batch,
        n_tangents,
        layout.len(),
        model.blocks.iter().map(|b| b.field.n_params()).collect(),
    );
    if scratch.shape != shape {
        *scratch = GradScratch {
            shape,
            records: Vec::new(),
        };
    }
    // The affine block: the flow trains on u = (x − μ)/σ; the NLL gains −Σ ln σ and
    // ∂L/∂x = ∂L/∂u / σ. Neither changes the gradient in the parameters.
    let u: Vec<T> = model.flow_input(x);
    let mut lg = match config.solver.stiff_config() {
        Some(stiff) => {
            let stiff = stiff.map_err(super::model::solve_error(0, "forward"))?;
            super::stiff::stiff_loss(model, &u, config, &stiff, layout, rng)
        }
        None => match config.grad {
            GradMethod::Adjoint { seminorm } => adjoint_loss(model, &u, config, layout, seminorm, rng),
            GradMethod::Backprop => backprop_loss(model, &u, config, layout, rng, scratch),
        },
    }?;
    if let Some(s) = model.standardizer() {
        lg.nll -= s.log_det();
        lg.loss -= s.log_det();
        s.pull_back_flat(&mut lg.grad_x);
    }
    Ok(lg)
}

/// The loss of a forward pass and its cotangent at the end of the last block:
/// `(loss, nll, kinetic, jacobian, ∂L/∂s)`.
pub(crate) fn loss_and_cotangent<T: Real>(
    layout: &Layout,
    config: &LossConfig,
    s: &[T],
    delta_sum: &[T],
    kin_sum: T,
    jac_sum: T,
) -> (f64, f64, f64, f64, Vec<T>) {
    let (n_batch, d) = (layout.n_batch, layout.dim);
    let inv_b = T::one() / T::c(n_batch as f64);
    let z_end = &s[..layout.n_z()];
    let log_p_sum: T = z_end
        .chunks_exact(d)
        .zip(delta_sum)
        .map(|(zb, &dl)| log_normal(zb) - dl)
        .sum();
    let nll = -(log_p_sum * inv_b).f64();
    let kinetic = (kin_sum * inv_b).f64();
    let jacobian = (jac_sum * inv_b).f64();
    let loss = nll + config.kinetic * kinetic + config.jacobian * jacobian;
    let mut cot = vec![T::zero(); layout.len()];
    for (c, &z) in cot.iter_mut().zip(z_end) {
        *c = z * inv_b;
    }
    cot[layout.delta()..layout.delta() + n_batch].fill(inv_b);
    if let Some(at) = layout.kinetic_at() {
        cot[at..at + n_batch].fill(T::c(config.kinetic) * inv_b);
    }
    if let Some(at) = layout.jacobian_at() {
        cot[at..at + n_batch].fill(T::c(config.jacobian) * inv_b);
    }
    (loss, nll, kinetic, jacobian, cot)
}

/// The continuous adjoint: each block's [`AdjointSystem`] from `τ = 1` back to `0`.
fn adjoint_loss<T: Real, F: Field<T>, R: Rng + ?Sized>(
    model: &Cnf<T, F>,
    x: &[T],
    config: &LossConfig,
    layout: Layout,
    seminorm: bool,
    rng: &mut R,
) -> Result<LossGrad<T>, CnfError> {
    let n_tangents = config.trace.n_tangents(layout.dim);
    let started = std::time::Instant::now();
    let pass = model.forward_pass(x, &config.solver, config.trace, layout, rng)?;
    let seconds_forward = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let (loss, nll, kinetic, jacobian, mut cot) =
        loss_and_cotangent(&layout, config, &pass.s, &pass.delta_sum, pass.kin_sum, pass.jac_sum);
    let n_blocks = model.blocks.len();
    let mut grad_params: Vec<Vec<T>> = model
        .blocks
        .iter()
        .map(|b| vec![T::zero(); b.field.n_params()])
        .collect();
    let mut grad_t_end = vec![T::zero(); n_blocks];
    let mut n_evals_backward = 0;
    let len = layout.len();
    let (mut y_both, mut cot_both) = (vec![T::zero(); 2 * len], vec![T::zero(); 2 * len]);
    for k in (0..n_blocks).rev() {
        let block = &model.blocks[k];
        let BlockPass { probes, s_end } = &pass.blocks[k];
        let n_theta = block.field.n_params();
        // No tape: the adjoint evaluates each point once, forward and reverse together.
        let mut free = Vec::new();
        let mode = Trace::mode(probes);
        let mut sys = Taped::new(&block.field, block.t_end, layout, mode, n_tangents, &mut free, 0);
        y_both[len..].copy_from_slice(s_end);
        cot_both[len..].copy_from_slice(&cot);
        let mut grad_p = vec![T::zero(); n_theta + 1];
        let back = adjoint_backward(
            &mut sys,
            &[T::zero(), T::one()],
            &y_both,
            &cot_both,
            &config.solver,
            seminorm,
            &mut grad_p,
        )
        .map_err(sens_error(k))?;
        n_evals_backward += back.n_evals;
        cot = back.grad_y0;
        grad_params[k].copy_from_slice(&grad_p[..n_theta]);
        grad_t_end[k] = grad_p[n_theta];
    }
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

/// Backprop: each block is solved by the sensitivity module's discrete adjoint, the
/// block's [`Taped`] system keeping each stage's forward pass for its VJP.
fn backprop_loss<T: Real, F: Field<T>, R: Rng + ?Sized>(
    model: &Cnf<T, F>,
    x: &[T],
    config: &LossConfig,
    layout: Layout,
    rng: &mut R,
    scratch: &mut GradScratch<T, F>,
) -> Result<LossGrad<T>, CnfError> {
    let (n_batch, d) = (layout.n_batch, layout.dim);
    let n_blocks = model.blocks.len();
    let n_tangents = config.trace.n_tangents(d);
    let started = std::time::Instant::now();
    // Probes are drawn block by block before any solve, as the forward pass draws them.
    let probes: Vec<Vec<T>> = (0..n_blocks)
        .map(|_| config.trace.draw::<T, _>(n_batch, d, rng))
        .collect();
    let fwd_config = SolverConfig {
        error_mask: Some(layout.error_mask()),
        ..config.solver.clone()
    };
    // Only the all-stages policy keeps a tape; the others recompute for every VJP.
    let limit = match config.checkpointing {
        Checkpointing::All => config.tape_budget / (n_batch * n_blocks),
        _ => 0,
    };
    scratch.records.resize_with(n_blocks, Vec::new);
    let mut systems = Vec::with_capacity(n_blocks);
    let mut forwards = Vec::with_capacity(n_blocks);
    let mut pass = ForwardPass::new(n_batch, n_blocks);
    let mut s = vec![T::zero(); layout.len()];
    s[..layout.n_z()].copy_from_slice(x);
    let span = [T::zero(), T::one()];
    for (k, (block, (probes, free))) in model
        .blocks
        .iter()
        .zip(probes.iter().zip(scratch.records.iter_mut()))
        .enumerate()
    {
        s[layout.n_z()..].fill(T::zero());
        let mode = Trace::mode(probes);
        let mut sys = Taped::new(&block.field, block.t_end, layout, mode, n_tangents, free, limit);
        let fwd = discrete_forward(&mut sys, &s, &span, &fwd_config, config.checkpointing).map_err(sens_error(k))?;
        pass.n_evals += fwd.n_evals;
        s.copy_from_slice(fwd.y_at(1));
        pass.add_block(&layout, &s);
        systems.push(sys);
        forwards.push(fwd);
    }
    let seconds_forward = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let (loss, nll, kinetic, jacobian, mut cot) =
        loss_and_cotangent(&layout, config, &s, &pass.delta_sum, pass.kin_sum, pass.jac_sum);
    let mut grad_params = Vec::with_capacity(n_blocks);
    let mut grad_t_end = vec![T::zero(); n_blocks];
    let mut n_evals_backward = 0;
    let len = layout.len();
    let mut cot_both = vec![T::zero(); 2 * len];
    for k in (0..n_blocks).rev() {
        let sys = &mut systems[k];
        let n_theta = sys.field.n_params();
        let mut grad_p = vec![T::zero(); n_theta + 1];
        cot_both[len..].copy_from_slice(&cot);
        let back = forwards[k].backward(sys, &cot_both, &mut grad_p);
        n_evals_backward += back.n_evals + sys.n_recomputed;
        cot = back.grad_y0;
        grad_t_end[k] = grad_p[n_theta];
        grad_p.truncate(n_theta);
        grad_params.push(grad_p);
    }
    grad_params.reverse();
    for sys in &mut systems {
        sys.free.append(&mut sys.tape);
    }
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

/// Most sample-evaluations (evaluations × batch size, over all blocks) that backprop
/// keeps on its tape: about 8 KiB each for the reference field in f32, so 128 MiB. The
/// stages of a solve that needs more are recomputed for their VJPs instead.
pub const TAPE_BUDGET: usize = 1 << 14;

pub(crate) fn sens_error(block: usize) -> impl FnOnce(SensitivityError) -> CnfError {
    move |e| match e {
        SensitivityError::Solve { direction, error } => CnfError::Solve {
            block: block + 1,
            direction,
            error,
        },
        error => CnfError::Backprop {
            block: block + 1,
            error,
        },
    }
}

/// [`loss_and_grad`] with the batch split into `n_parts` contiguous parts that are solved
/// independently, in parallel on rayon's pool, and combined with weights `n_i / B`.
///
/// The samples of a CNF batch do not interact, so each part is an exact solve of its
/// own samples; only the adaptive step sizes differ (each part gets its own). Part `i`
/// draws its Hutchinson probes from a seed taken from `rng`. The NFE and times reported
/// are the largest of the parts' (the critical path).
pub fn loss_and_grad_par<T: Real, F: Field<T>, X: Real, R: Rng + ?Sized>(
    model: &Cnf<T, F>,
    x: &[X],
    config: &LossConfig,
    rng: &mut R,
    n_parts: usize,
) -> Result<LossGrad<T>, CnfError> {
    let mut scratch: Vec<GradScratch<T, F>> = Vec::new();
    loss_and_grad_par_in(model, x, config, rng, n_parts, &mut scratch)
}

/// [`loss_and_grad_par`] reusing one [`GradScratch`] per part from earlier calls.
pub fn loss_and_grad_par_in<T: Real, F: Field<T>, X: Real, R: Rng + ?Sized>(
    model: &Cnf<T, F>,
    x: &[X],
    config: &LossConfig,
    rng: &mut R,
    n_parts: usize,
    scratch: &mut Vec<GradScratch<T, F>>,
) -> Result<LossGrad<T>, CnfError> {
    scratch.resize_with(n_parts.max(1), GradScratch::new);
    // The tape budget is for the whole batch: each part gets its share.
    let config = &LossConfig {
        tape_budget: config.tape_budget / n_parts.max(1),
        ..config.clone()
    };
    use rand::SeedableRng;
    use rayon::prelude::*;
    let n = model.n_points(x)?;
    if n_parts <= 1 || n < 2 * n_parts {
        return loss_and_grad_in(model, x, config, rng, &mut scratch[0]);
    }
    model.prepare();
    let d = model.dim();
    let per_part = n.div_ceil(n_parts);
    let seeds: Vec<u64> = (0..n.div_ceil(per_part)).map(|_| rng.random()).collect();
    let parts: Vec<(f64, LossGrad<T>)> = x
        .par_chunks(per_part * d)
        .zip(seeds.par_iter())
        .zip(scratch.par_iter_mut())
        .map(|((part, &seed), scratch)| {
            let mut part_rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            loss_and_grad_in(model, part, config, &mut part_rng, scratch)
                .map(|lg| ((part.len() / d) as f64 / n as f64, lg))
        })
        .collect::<Result<_, _>>()?;
    let mut out = LossGrad {
        loss: 0.0,
        nll: 0.0,
        kinetic: 0.0,
        jacobian: 0.0,
        grad_params: model
            .blocks
            .iter()
            .map(|b| vec![T::zero(); b.field.n_params()])
            .collect(),
        grad_t_end: vec![T::zero(); model.blocks.len()],
        grad_x: Vec::with_capacity(x.len()),
        n_evals_forward: 0,
        n_evals_backward: 0,
        seconds_forward: 0.0,
        seconds_backward: 0.0,
    };
    for (w, lg) in parts {
        let wt = T::c(w);
        out.loss += w * lg.loss;
        out.nll += w * lg.nll;
        out.kinetic += w * lg.kinetic;
        out.jacobian += w * lg.jacobian;
        for (acc, g) in out.grad_params.iter_mut().zip(&lg.grad_params) {
            for (a, &v) in acc.iter_mut().zip(g) {
                *a += wt * v;
            }
        }
        for (a, &v) in out.grad_t_end.iter_mut().zip(&lg.grad_t_end) {
            *a += wt * v;
        }
        out.grad_x.extend(lg.grad_x.iter().map(|&v| wt * v));
        out.n_evals_forward = out.n_evals_forward.max(lg.n_evals_forward);
        out.n_evals_backward = out.n_evals_backward.max(lg.n_evals_backward);
        out.seconds_forward = out.seconds_forward.max(lg.seconds_forward);
        out.seconds_backward = out.seconds_backward.max(lg.seconds_backward);
    }
    Ok(out)
}
