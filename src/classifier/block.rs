//! The ODE block as a system for the solver and the sensitivity module:
//!
//! ```text
//! dh/dt = f(h; θ)        vjp:  (wᵀ ∂f/∂h, wᵀ ∂f/∂θ)  from one reverse pass of the network
//! ```
//!
//! for a batch of states, one flat system. Under backprop the network's forward pass at
//! every stage is kept on a tape of workspaces, so the reverse pass only runs the
//! network's reverse; the continuous adjoint (and a tape past its budget) redoes the
//! forward pass before each reverse.

use crate::nn::{Cotangents, Mlp, NnError, Workspace};
use crate::ode::{OdeSystem, StageSlots, StepEvent, Vjp};

/// Workspaces one part's solves reuse from one call to the next.
#[derive(Debug, Default)]
pub(super) struct BlockScratch {
    /// For evaluations that are not taped (and the residual block).
    pub(super) ws: Option<Workspace<f64>>,
    /// The tape's workspaces.
    pub(super) records: Vec<Workspace<f64>>,
}

/// Buffers [`Classifier::loss_and_grad_in`](super::Classifier::loss_and_grad_in) keeps
/// between calls: per part, the field network's workspaces, the tape's included, so
/// that a training loop allocates them once.
#[derive(Debug, Default)]
pub struct ClassifierScratch {
    pub(super) parts: Vec<BlockScratch>,
}

impl BlockScratch {
    /// The workspace for evaluations off the tape, made anew if it does not fit `field`
    /// and `n_batch`; drops the tape's workspaces that do not fit.
    pub(super) fn workspace(&mut self, field: &Mlp<f64>, n_batch: usize) -> Result<&mut Workspace<f64>, NnError> {
        let fits = |ws: &Workspace<f64>| ws.n_batch() == n_batch && ws.widths() == field.config().widths();
        self.records.retain(fits);
        if !self.ws.as_ref().is_some_and(fits) {
            self.ws = Some(field.workspace(n_batch, 0)?);
        }
        Ok(self.ws.as_mut().expect("made above"))
    }
}

impl ClassifierScratch {
    /// Workspaces held (each of [`Workspace::estimate_bytes`] for the field network and
    /// its part's batch).
    pub fn n_workspaces(&self) -> usize {
        self.parts
            .iter()
            .map(|p| usize::from(p.ws.is_some()) + p.records.len())
            .sum()
    }
}

/// The ODE block `dh/dt = f(h; θ)` on a batch of `B` states of `width` components, one
/// system of `B·width` components. Under backprop it keeps each stage's forward pass on
/// a tape, told which evaluations were stages by the driver's [`StepEvent`]s.
pub(super) struct FieldSystem<'a> {
    field: &'a Mlp<f64>,
    n_batch: usize,
    /// Scratch of the evaluations that are not taped.
    ws: &'a mut Workspace<f64>,
    f: Vec<f64>,
    tape: Option<Tape<'a>>,
}

/// Forward passes kept for the reverse pass (the bookkeeping of the discrete adjoint's
/// stage recorder, with workspaces for states).
struct Tape<'a> {
    /// Workspaces of the forward passes; `n_used` of them hold records, the rest are
    /// spares kept from earlier solves.
    records: &'a mut Vec<Workspace<f64>>,
    n_used: usize,
    /// Most records held.
    limit: usize,
    overflowed: bool,
    /// Which records hold the stages of accepted steps.
    slots: StageSlots,
}

impl<'a> FieldSystem<'a> {
    /// The block for batches of `n_batch`, evaluating in `scratch`'s workspaces; with
    /// `tape_bytes` it keeps its forward passes (in `scratch.records`) up to that many
    /// bytes.
    pub(super) fn new(
        field: &'a Mlp<f64>,
        n_batch: usize,
        tape_bytes: Option<usize>,
        scratch: &'a mut BlockScratch,
    ) -> Result<Self, NnError> {
        scratch.workspace(field, n_batch)?;
        let BlockScratch { ws, records } = scratch;
        let ws = ws.as_mut().expect("made by BlockScratch::workspace");
        let tape = tape_bytes.map(|bytes| {
            let per = Workspace::<f64>::estimate_bytes(field.config(), n_batch, 0).max(1);
            Tape {
                records,
                n_used: 0,
                limit: usize::try_from(bytes as u128 / per).unwrap_or(usize::MAX),
                overflowed: false,
                slots: StageSlots::default(),
            }
        });
        Ok(FieldSystem {
            field,
            n_batch,
            ws,
            f: vec![0.0; n_batch * field.dim()],
            tape,
        })
    }

    /// The taped workspace of stage `stage` of accepted step `step`, if it is on the tape.
    fn record(&mut self, step: usize, stage: usize) -> Option<&mut Workspace<f64>> {
        let tape = self.tape.as_mut().filter(|t| !t.overflowed)?;
        let slot = tape.slots.slot(step, stage)?;
        tape.records[..tape.n_used].get_mut(slot)
    }
}

const CHECKED: &str = "buffer shapes are checked when the block is built";

impl OdeSystem<f64> for FieldSystem<'_> {
    fn rhs(&mut self, t: f64, y: &[f64], dy: &mut [f64]) {
        let tape = match self.tape.as_mut() {
            Some(tape) if !tape.overflowed => tape,
            _ => return self.field.forward_into(t, y, self.ws, dy).expect(CHECKED),
        };
        if tape.slots.none_vacant() && tape.n_used >= tape.limit {
            tape.overflowed = true;
            tape.records.truncate(tape.limit);
            return self.field.forward_into(t, y, self.ws, dy).expect(CHECKED);
        }
        let slot = match tape.slots.take() {
            Some(slot) => slot,
            None => {
                if tape.n_used == tape.records.len() {
                    tape.records.push(self.field.workspace(self.n_batch, 0).expect(CHECKED));
                }
                tape.n_used += 1;
                tape.n_used - 1
            }
        };
        self.field
            .forward_into(t, y, &mut tape.records[slot], dy)
            .expect(CHECKED);
        tape.slots.record(slot);
    }

    fn step_event(&mut self, event: StepEvent) {
        let Some(tape) = self.tape.as_mut().filter(|t| !t.overflowed) else {
            return;
        };
        tape.slots.event(event);
    }
}

impl Vjp<f64> for FieldSystem<'_> {
    fn n_params(&self) -> usize {
        self.field.n_params()
    }

    fn vjp(&mut self, t: f64, y: &[f64], w: &[f64], grad_y: &mut [f64], grad_p: &mut [f64]) {
        self.field.forward_into(t, y, self.ws, &mut self.f).expect(CHECKED);
        let cot = Cotangents {
            f: Some(w),
            ..Default::default()
        };
        self.field.vjp_into(self.ws, &cot, grad_y, grad_p).expect(CHECKED);
    }

    fn rhs_and_vjp(&mut self, t: f64, y: &[f64], w: &[f64], dy: &mut [f64], grad_y: &mut [f64], grad_p: &mut [f64]) {
        self.field.forward_into(t, y, self.ws, dy).expect(CHECKED);
        let cot = Cotangents {
            f: Some(w),
            ..Default::default()
        };
        self.field.vjp_into(self.ws, &cot, grad_y, grad_p).expect(CHECKED);
    }

    fn vjp_stage(
        &mut self,
        step: usize,
        stage: usize,
        t: f64,
        y: &[f64],
        w: &[f64],
        grad_y: &mut [f64],
        grad_p: &mut [f64],
    ) {
        let field = self.field;
        match self.record(step, stage) {
            Some(ws) => {
                let cot = Cotangents {
                    f: Some(w),
                    ..Default::default()
                };
                field.vjp_into(ws, &cot, grad_y, grad_p).expect(CHECKED);
            }
            None => self.vjp(t, y, w, grad_y, grad_p),
        }
    }
}
