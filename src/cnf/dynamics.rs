//! The augmented dynamics of one CNF block, in rescaled time `τ = t / T ∈ [0, 1]`.
//!
//! For a block with end time `T` the state `s = (z, Δ, E, R)` (batch `B × d`, then `B`
//! each for the log-density change and the optional RNODE integrals) follows
//!
//! ```text
//! dz/dτ = T f(z, τT)      dΔ/dτ = −T tr J      dE/dτ = T ‖f‖²      dR/dτ = T ‖J ε‖²
//! ```
//!
//! so `T` is an ordinary parameter of the right-hand side `g(s, τ; θ, T)` and both
//! gradient methods see it. [`GradEval`] evaluates `g` and its vector-Jacobian product,
//! the one second-order kernel that the adjoint and backprop share.

use super::field::{Cotangents, Field, FieldOutputs, TraceMode};
use crate::ode::{OdeSystem, StageSlots, StepEvent, Vjp};
use crate::Real;

/// Where each part of a block's augmented state lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Batch size `B`.
    pub n_batch: usize,
    /// Data dimension `d`.
    pub dim: usize,
    /// Whether the kinetic-energy integral `E` is carried.
    pub kinetic: bool,
    /// Whether the Jacobian integral `R` is carried.
    pub jacobian: bool,
}

impl Layout {
    /// Length of `z`: `B·d`.
    pub fn n_z(&self) -> usize {
        self.n_batch * self.dim
    }

    /// Length of the whole augmented state.
    pub fn len(&self) -> usize {
        self.n_z() + self.n_batch * (1 + self.kinetic as usize + self.jacobian as usize)
    }

    /// Whether the state is empty (never, for a valid batch).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Offset of `Δ`.
    pub fn delta(&self) -> usize {
        self.n_z()
    }

    /// Offset of `E`, if carried.
    pub fn kinetic_at(&self) -> Option<usize> {
        self.kinetic.then(|| self.n_z() + self.n_batch)
    }

    /// Offset of `R`, if carried.
    pub fn jacobian_at(&self) -> Option<usize> {
        self.jacobian
            .then(|| self.n_z() + self.n_batch * (1 + self.kinetic as usize))
    }

    /// Error mask: `z` and `Δ` control the step size, the regularizer integrals do not.
    pub fn error_mask(&self) -> Vec<bool> {
        let mut mask = vec![true; self.len()];
        mask[self.n_z() + self.n_batch..].fill(false);
        mask
    }
}

/// Splits an augmented-state-shaped slice into `(z, Δ, E, R)`.
pub(crate) type StateParts<'a, T> = (&'a mut [T], &'a mut [T], Option<&'a mut [T]>, Option<&'a mut [T]>);

pub(crate) fn split_state<'a, T>(layout: &Layout, s: &'a mut [T]) -> StateParts<'a, T> {
    let (z, rest) = s.split_at_mut(layout.n_z());
    let (delta, rest) = rest.split_at_mut(layout.n_batch);
    let (kin, rest) = if layout.kinetic {
        let (k, r) = rest.split_at_mut(layout.n_batch);
        (Some(k), r)
    } else {
        (None, rest)
    };
    let jac = if layout.jacobian {
        Some(&mut rest[..layout.n_batch])
    } else {
        None
    };
    (z, delta, kin, jac)
}

/// The forward augmented system `ds/dτ = g(s, τ)` of one block.
pub struct Augmented<'a, T: Real, F: Field<T>> {
    /// The block's field.
    pub field: &'a F,
    /// Its scratch.
    pub ws: &'a mut F::Workspace,
    /// The block's end time `T`.
    pub t_end: T,
    /// State layout.
    pub layout: Layout,
    /// Trace estimator (Hutchinson probes are fixed for the whole solve).
    pub mode: TraceMode<'a, T>,
}

impl<T: Real, F: Field<T>> OdeSystem<T> for Augmented<'_, T, F> {
    fn rhs(&mut self, tau: T, s: &[T], ds: &mut [T]) {
        eval_raw(self.field, self.ws, self.mode, &self.layout, self.t_end, tau, s, ds);
        scale_raw(&self.layout, self.t_end, ds);
    }
}

/// One evaluation kept for backprop: the workspace that holds its forward pass (what
/// the field's VJP needs) and its raw outputs.
pub(crate) struct Record<T, W> {
    pub ws: W,
    pub raw: Vec<T>,
}

/// [`Augmented`] that keeps the evaluations that are stages of accepted steps on a
/// tape, each with its own workspace, so that backprop needs no second forward pass.
/// The driver's [`StepEvent`]s say which evaluations were stages; the slots of the
/// others are reused. Past `limit` live records it drops the tape and keeps nothing
/// more (backprop then recomputes).
pub(crate) struct Taped<'a, T: Real, F: Field<T>> {
    pub field: &'a F,
    pub t_end: T,
    pub layout: Layout,
    pub mode: TraceMode<'a, T>,
    pub n_tangents: usize,
    pub tape: Vec<Record<T, F::Workspace>>,
    /// Which tape slots hold the stages of accepted steps.
    pub slots: StageSlots,
    /// Records of earlier solves (same shapes) to reuse before allocating new ones.
    pub free: &'a mut Vec<Record<T, F::Workspace>>,
    pub limit: usize,
    pub overflowed: bool,
    /// Workspace for the evaluations after an overflow.
    pub spare: Option<F::Workspace>,
    /// The VJP kernel, and a full workspace for VJPs of evaluations not on the tape.
    pub eval: GradEval<T>,
    pub recompute: Option<Record<T, F::Workspace>>,
    /// Forward passes recomputed for VJPs of evaluations not on the tape.
    pub n_recomputed: usize,
}

impl<'a, T: Real, F: Field<T>> Taped<'a, T, F> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        field: &'a F,
        t_end: T,
        layout: Layout,
        mode: TraceMode<'a, T>,
        n_tangents: usize,
        free: &'a mut Vec<Record<T, F::Workspace>>,
        limit: usize,
    ) -> Self {
        Taped {
            field,
            t_end,
            layout,
            mode,
            n_tangents,
            tape: Vec::new(),
            slots: StageSlots::default(),
            free,
            limit,
            overflowed: false,
            spare: None,
            eval: GradEval::new(layout),
            recompute: None,
            n_recomputed: 0,
        }
    }

    /// Evaluates `g` at `(s, τ)` into the full workspace kept for evaluations not on
    /// the tape, counting the forward pass.
    fn recompute_at(&mut self, tau: T, s: &[T]) {
        let rec = self.recompute.get_or_insert_with(|| Record {
            ws: self.field.workspace(self.layout.n_batch, self.n_tangents),
            raw: vec![T::zero(); self.layout.len()],
        });
        eval_raw(
            self.field,
            &mut rec.ws,
            self.mode,
            &self.layout,
            self.t_end,
            tau,
            s,
            &mut rec.raw,
        );
        self.n_recomputed += 1;
    }

    /// The tape slot of stage `stage` of accepted step `step`, if it is on the tape.
    fn slot(&self, step: usize, stage: usize) -> Option<usize> {
        if self.overflowed {
            return None;
        }
        self.slots.slot(step, stage)
    }

    /// The VJP of `g` for the evaluation kept in `rec`: `grad_s` gets `cᵀ∂g/∂s` (only
    /// its `z` part is non-zero), `grad_p` accumulates `cᵀ∂g/∂(θ, T)`.
    #[allow(clippy::too_many_arguments)]
    fn vjp_of(
        eval: &mut GradEval<T>,
        field: &F,
        rec: &mut Record<T, F::Workspace>,
        t_end: T,
        tau: T,
        cot: &[T],
        grad_s: &mut [T],
        grad_p: &mut [T],
    ) {
        let n_theta = field.n_params();
        let (gp, gt) = grad_p.split_at_mut(n_theta);
        gt[0] += eval.vjp_recorded(field, &mut rec.ws, t_end, tau, &rec.raw, cot, gp);
        let nz = eval.grad_z().len();
        grad_s[..nz].copy_from_slice(eval.grad_z());
        grad_s[nz..].fill(T::zero());
    }

    fn overflow(&mut self) {
        self.overflowed = true;
        self.free.append(&mut self.tape);
        self.slots.clear();
    }
}

impl<T: Real, F: Field<T>> OdeSystem<T> for Taped<'_, T, F> {
    fn rhs(&mut self, tau: T, s: &[T], ds: &mut [T]) {
        if !self.overflowed && self.slots.none_vacant() && self.tape.len() >= self.limit {
            self.overflow();
        }
        if self.overflowed {
            let ws = self
                .spare
                .get_or_insert_with(|| self.field.inference_workspace(self.layout.n_batch, self.n_tangents));
            eval_raw(self.field, ws, self.mode, &self.layout, self.t_end, tau, s, ds);
            scale_raw(&self.layout, self.t_end, ds);
            return;
        }
        let slot = self.slots.take().unwrap_or_else(|| {
            let rec = self.free.pop().unwrap_or_else(|| Record {
                ws: self.field.workspace(self.layout.n_batch, self.n_tangents),
                raw: vec![T::zero(); self.layout.len()],
            });
            self.tape.push(rec);
            self.tape.len() - 1
        });
        let rec = &mut self.tape[slot];
        eval_raw(
            self.field,
            &mut rec.ws,
            self.mode,
            &self.layout,
            self.t_end,
            tau,
            s,
            &mut rec.raw,
        );
        ds.copy_from_slice(&rec.raw);
        scale_raw(&self.layout, self.t_end, ds);
        self.slots.record(slot);
    }

    fn step_event(&mut self, event: StepEvent) {
        if self.overflowed {
            return;
        }
        self.slots.event(event);
    }
}

/// The block's parameters for the sensitivity module are `(θ, T)`.
impl<T: Real, F: Field<T>> Vjp<T> for Taped<'_, T, F> {
    fn n_params(&self) -> usize {
        self.field.n_params() + 1
    }

    fn vjp(&mut self, tau: T, s: &[T], cot: &[T], grad_s: &mut [T], grad_p: &mut [T]) {
        self.recompute_at(tau, s);
        let rec = self.recompute.as_mut().expect("made by recompute_at");
        Self::vjp_of(&mut self.eval, self.field, rec, self.t_end, tau, cot, grad_s, grad_p);
    }

    fn n_quadratures(&self) -> usize {
        self.layout.len() - self.layout.n_z()
    }

    fn rhs_and_vjp(&mut self, tau: T, s: &[T], cot: &[T], ds: &mut [T], grad_s: &mut [T], grad_p: &mut [T]) {
        self.recompute_at(tau, s);
        let rec = self.recompute.as_mut().expect("made by recompute_at");
        ds.copy_from_slice(&rec.raw);
        scale_raw(&self.layout, self.t_end, ds);
        Self::vjp_of(&mut self.eval, self.field, rec, self.t_end, tau, cot, grad_s, grad_p);
    }

    fn vjp_stage(&mut self, step: usize, stage: usize, tau: T, s: &[T], cot: &[T], grad_s: &mut [T], grad_p: &mut [T]) {
        match self.slot(step, stage) {
            Some(slot) => {
                let rec = &mut self.tape[slot];
                Self::vjp_of(&mut self.eval, self.field, rec, self.t_end, tau, cot, grad_s, grad_p);
            }
            None => self.vjp(tau, s, cot, grad_s, grad_p),
        }
    }
}

/// Evaluates the field's outputs at `(z, τT)` into the augmented-state-shaped `raw`:
/// `(f, tr J, ‖f‖², ‖Jε‖²)`, unscaled (see [`scale_raw`]). `z` is read from the front
/// of `s`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn eval_raw<T: Real, F: Field<T>>(
    field: &F,
    ws: &mut F::Workspace,
    mode: TraceMode<'_, T>,
    layout: &Layout,
    t_end: T,
    tau: T,
    s: &[T],
    raw: &mut [T],
) {
    let (f, trace, kinetic, jacobian) = split_state(layout, raw);
    let out = FieldOutputs {
        f,
        trace,
        kinetic,
        jacobian,
    };
    field.eval(tau * t_end, &s[..layout.n_z()], mode, ws, out);
}

/// Turns raw outputs into `g = T·(f, −tr J, ‖f‖², ‖Jε‖²)` in place.
pub(crate) fn scale_raw<T: Real>(layout: &Layout, t_end: T, v: &mut [T]) {
    let (lo, hi) = (layout.delta(), layout.delta() + layout.n_batch);
    for (i, x) in v.iter_mut().enumerate() {
        // Δ integrates −tr J; everything else is scaled by T as is.
        *x = if (lo..hi).contains(&i) { -t_end * *x } else { t_end * *x };
    }
}

/// The plain flow `dz/dτ = T f(z, τT)` of one block (sampling needs no trace).
pub struct Flow<'a, T: Real, F: Field<T>> {
    /// The block's field.
    pub field: &'a F,
    /// Its scratch.
    pub ws: &'a mut F::Workspace,
    /// The block's end time `T`.
    pub t_end: T,
}

impl<T: Real, F: Field<T>> OdeSystem<T> for Flow<'_, T, F> {
    fn rhs(&mut self, tau: T, z: &[T], dz: &mut [T]) {
        self.field.forward(tau * self.t_end, z, self.ws, dz);
        for v in dz.iter_mut() {
            *v *= self.t_end;
        }
    }
}

/// Evaluates `g` and the vector-Jacobian product `cᵀ ∂g/∂(z, θ, T)` for a cotangent
/// `c = (c_z, c_Δ, c_E, c_R)` of `g`; owns its buffers.
pub struct GradEval<T> {
    layout: Layout,
    /// Raw field outputs of the last [`GradEval::run`] (see [`eval_raw`]).
    raw: Vec<T>,
    bufs: VjpBufs<T>,
}

/// Cotangents handed to the field and the `z` part of the result.
struct VjpBufs<T> {
    cot_f: Vec<T>,
    cot_tr: Vec<T>,
    cot_kin: Vec<T>,
    cot_jac: Vec<T>,
    grad_z: Vec<T>,
}

impl<T: Real> GradEval<T> {
    /// Buffers for one layout.
    pub fn new(layout: Layout) -> Self {
        let (nz, nb) = (layout.n_z(), layout.n_batch);
        GradEval {
            layout,
            raw: vec![T::zero(); layout.len()],
            bufs: VjpBufs {
                cot_f: vec![T::zero(); nz],
                cot_tr: vec![T::zero(); nb],
                cot_kin: vec![T::zero(); nb],
                cot_jac: vec![T::zero(); nb],
                grad_z: vec![T::zero(); nz],
            },
        }
    }

    /// `f` of the last [`GradEval::run`] (unscaled field value).
    pub fn f(&self) -> &[T] {
        &self.raw[..self.layout.n_z()]
    }

    /// `c_zᵀ ∂g/∂z` of the last [`GradEval::run`] or [`GradEval::vjp_recorded`].
    pub fn grad_z(&self) -> &[T] {
        &self.bufs.grad_z
    }

    /// Evaluates the block's `g` at `(z, τ)`, writes `c_zᵀ∂g/∂z` into `grad_z`,
    /// accumulates `cᵀ∂g/∂θ` into `grad_params` and returns `cᵀ∂g/∂T`. `c` is the
    /// augmented-state-shaped cotangent `cot`.
    #[allow(clippy::too_many_arguments)]
    pub fn run<F: Field<T>>(
        &mut self,
        field: &F,
        ws: &mut F::Workspace,
        mode: TraceMode<'_, T>,
        t_end: T,
        tau: T,
        z: &[T],
        cot: &[T],
        grad_params: &mut [T],
    ) -> T {
        eval_raw(field, ws, mode, &self.layout, t_end, tau, z, &mut self.raw);
        let raw = std::mem::take(&mut self.raw);
        let dg_dt_end = self.vjp_recorded(field, ws, t_end, tau, &raw, cot, grad_params);
        self.raw = raw;
        dg_dt_end
    }

    /// The reverse half of [`GradEval::run`] for an evaluation made earlier: `ws` holds
    /// its forward pass (untouched since) and `raw` its outputs from [`eval_raw`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn vjp_recorded<F: Field<T>>(
        &mut self,
        field: &F,
        ws: &mut F::Workspace,
        t_end: T,
        tau: T,
        raw: &[T],
        cot: &[T],
        grad_params: &mut [T],
    ) -> T {
        let (l, bufs) = (&self.layout, &mut self.bufs);
        let (nz, nb) = (l.n_z(), l.n_batch);
        // g = T·(f, −tr, ‖f‖², ‖Jε‖²): the field sees the cotangents scaled by T, and
        // cᵀ∂g/∂T picks up cᵀ(f, −tr, ‖f‖², ‖Jε‖²).
        let mut dg_dt_end = T::zero();
        for i in 0..nz {
            bufs.cot_f[i] = t_end * cot[i];
            dg_dt_end += cot[i] * raw[i];
        }
        for b in 0..nb {
            bufs.cot_tr[b] = -t_end * cot[nz + b];
            dg_dt_end -= cot[nz + b] * raw[nz + b];
        }
        if let Some(at) = l.kinetic_at() {
            for b in 0..nb {
                bufs.cot_kin[b] = t_end * cot[at + b];
                dg_dt_end += cot[at + b] * raw[at + b];
            }
        }
        if let Some(at) = l.jacobian_at() {
            for b in 0..nb {
                bufs.cot_jac[b] = t_end * cot[at + b];
                dg_dt_end += cot[at + b] * raw[at + b];
            }
        }
        let field_cot = Cotangents {
            f: Some(&bufs.cot_f),
            jv: None,
            trace: Some(&bufs.cot_tr),
            kinetic: if l.kinetic { Some(&bufs.cot_kin) } else { None },
            jacobian: if l.jacobian { Some(&bufs.cot_jac) } else { None },
        };
        let grad_t = field.vjp(ws, &field_cot, &mut bufs.grad_z, grad_params);
        // ∂/∂T of T·F(z, τT) = F + τ T ∂F/∂t; the field returned T cᵀ∂F/∂t.
        dg_dt_end + tau * grad_t
    }
}
