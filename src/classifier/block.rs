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

use std::sync::Mutex;

use crate::nn::{Cotangents, Mlp, NnError, Workspace};
use crate::ode::{OdeSystem, StageSlots, StepEvent, Vjp};

/// Rows from which a share of the batch is worth a thread of its own.
const SHARE_MIN_ROWS: usize = 256;

/// How many contiguous shares a batch of `n` rows is cut into: two from
/// `2 · SHARE_MIN_ROWS` rows, else one. Fixed by `n` alone, so that the gradient (whose
/// parameter part is summed share by share) does not depend on the thread count.
fn n_shares(n: usize) -> usize {
    if n >= 2 * SHARE_MIN_ROWS {
        2
    } else {
        1
    }
}

/// The network's workspaces for one evaluation of the batch, one per share of its rows;
/// the shares run on [`crate::par::for_each`], on both cores.
#[derive(Debug)]
pub(super) struct SharedWs {
    /// `(first row, workspace)` of each share.
    shares: Vec<(usize, Workspace<f64>)>,
    /// The parameter gradients of the shares after the first, summed into the caller's
    /// in share order.
    grad_p: Vec<Vec<f64>>,
}

impl SharedWs {
    fn new(field: &Mlp<f64>, n_batch: usize) -> Result<Self, NnError> {
        let k = n_shares(n_batch);
        let mut shares = Vec::with_capacity(k);
        for s in 0..k {
            let (a, b) = (s * n_batch / k, (s + 1) * n_batch / k);
            shares.push((a, field.workspace(b - a, 0)?));
        }
        let grad_p = vec![vec![0.0; field.n_params()]; k - 1];
        Ok(SharedWs { shares, grad_p })
    }

    fn fits(&self, field: &Mlp<f64>, n_batch: usize) -> bool {
        self.rows() == n_batch
            && self.shares.len() == n_shares(n_batch)
            && self.shares.iter().all(|(_, ws)| ws.widths() == field.config().widths())
    }

    /// Bytes one of these holds for `field` and `n_batch` rows.
    fn estimate_bytes(field: &Mlp<f64>, n_batch: usize) -> u128 {
        let k = n_shares(n_batch);
        let grad_p = ((k - 1) * field.n_params() * std::mem::size_of::<f64>()) as u128;
        (0..k)
            .map(|s| Workspace::<f64>::estimate_bytes(field.config(), (s + 1) * n_batch / k - s * n_batch / k, 0))
            .sum::<u128>()
            + grad_p
    }

    fn rows(&self) -> usize {
        self.shares.iter().map(|(_, ws)| ws.n_batch()).sum()
    }

    /// `dy = f(y)`, share by share.
    fn forward(&mut self, field: &Mlp<f64>, t: f64, y: &[f64], dy: &mut [f64]) {
        let d = field.dim();
        assert!(y.len() == self.rows() * d && dy.len() == y.len(), "{CHECKED}");
        if let [(_, ws)] = &mut self.shares[..] {
            return field.forward_into(t, y, ws, dy).expect(CHECKED);
        }
        let mut jobs = Vec::with_capacity(self.shares.len());
        let mut rest = dy;
        for (a, ws) in self.shares.iter_mut() {
            let (mine, tail) = rest.split_at_mut(ws.n_batch() * d);
            rest = tail;
            jobs.push(Mutex::new((&y[*a * d..(*a + ws.n_batch()) * d], ws, mine)));
        }
        crate::par::for_each(jobs.len(), &|k| {
            let mut job = jobs[k].lock().unwrap_or_else(|e| e.into_inner());
            let (y, ws, dy) = &mut *job;
            field.forward_into(t, y, ws, dy).expect(CHECKED);
        });
    }

    /// The reverse pass of the last [`SharedWs::forward`]: writes `wᵀ ∂f/∂y` into
    /// `grad_y` and adds `wᵀ ∂f/∂θ` into `grad_p` (the first share's directly, then the
    /// others' in order).
    fn vjp(&mut self, field: &Mlp<f64>, w: &[f64], grad_y: &mut [f64], grad_p: &mut [f64]) {
        let d = field.dim();
        let vjp = |ws: &mut Workspace<f64>, w: &[f64], gy: &mut [f64], gp: &mut [f64]| {
            let cot = Cotangents {
                f: Some(w),
                ..Default::default()
            };
            field.vjp_into(ws, &cot, gy, gp).expect(CHECKED);
        };
        assert!(w.len() == self.rows() * d && grad_y.len() == w.len(), "{CHECKED}");
        if let [(_, ws)] = &mut self.shares[..] {
            return vjp(ws, w, grad_y, grad_p);
        }
        let mut jobs = Vec::with_capacity(self.shares.len());
        let (mut rest, mut gps) = (grad_y, self.grad_p.iter_mut());
        let mut first = Some(&mut *grad_p);
        for (a, ws) in self.shares.iter_mut() {
            let rows = *a * d..(*a + ws.n_batch()) * d;
            let (mine, tail) = rest.split_at_mut(rows.len());
            rest = tail;
            let gp: &mut [f64] = match first.take() {
                Some(gp) => gp,
                None => {
                    let gp = gps.next().expect("one buffer per later share");
                    gp.fill(0.0);
                    gp
                }
            };
            jobs.push(Mutex::new((&w[rows], ws, mine, gp)));
        }
        crate::par::for_each(jobs.len(), &|k| {
            let mut job = jobs[k].lock().unwrap_or_else(|e| e.into_inner());
            let (w, ws, gy, gp) = &mut *job;
            vjp(ws, w, gy, gp);
        });
        drop(jobs);
        for gp in &self.grad_p {
            for (a, v) in grad_p.iter_mut().zip(gp) {
                *a += v;
            }
        }
    }
}

/// Workspaces one part's solves reuse from one call to the next.
#[derive(Debug, Default)]
pub(super) struct BlockScratch {
    /// For the residual block.
    pub(super) ws: Option<Workspace<f64>>,
    /// For the ODE block's evaluations that are not taped.
    pub(super) shared: Option<SharedWs>,
    /// The tape's workspaces.
    pub(super) records: Vec<SharedWs>,
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
        if !self.ws.as_ref().is_some_and(fits) {
            self.ws = Some(field.workspace(n_batch, 0)?);
        }
        Ok(self.ws.as_mut().expect("made above"))
    }

    /// The ODE block's workspaces for evaluations off the tape, made anew if they do not
    /// fit; drops the tape's that do not fit.
    fn shared(&mut self, field: &Mlp<f64>, n_batch: usize) -> Result<(), NnError> {
        self.records.retain(|r| r.fits(field, n_batch));
        if !self.shared.as_ref().is_some_and(|s| s.fits(field, n_batch)) {
            self.shared = Some(SharedWs::new(field, n_batch)?);
        }
        Ok(())
    }
}

impl ClassifierScratch {
    /// Workspaces held (each of [`Workspace::estimate_bytes`] for the field network and
    /// its part's batch).
    pub fn n_workspaces(&self) -> usize {
        self.parts
            .iter()
            .map(|p| usize::from(p.ws.is_some()) + usize::from(p.shared.is_some()) + p.records.len())
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
    ws: &'a mut SharedWs,
    f: Vec<f64>,
    tape: Option<Tape<'a>>,
}

/// Forward passes kept for the reverse pass (the bookkeeping of the discrete adjoint's
/// stage recorder, with workspaces for states).
struct Tape<'a> {
    /// Workspaces of the forward passes; `n_used` of them hold records, the rest are
    /// spares kept from earlier solves.
    records: &'a mut Vec<SharedWs>,
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
        scratch.shared(field, n_batch)?;
        let BlockScratch { shared, records, .. } = scratch;
        let ws = shared.as_mut().expect("made by BlockScratch::shared");
        let tape = tape_bytes.map(|bytes| {
            let per = SharedWs::estimate_bytes(field, n_batch).max(1);
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
    fn record(&mut self, step: usize, stage: usize) -> Option<&mut SharedWs> {
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
            _ => return self.ws.forward(self.field, t, y, dy),
        };
        if tape.slots.none_vacant() && tape.n_used >= tape.limit {
            tape.overflowed = true;
            tape.records.truncate(tape.limit);
            return self.ws.forward(self.field, t, y, dy);
        }
        let slot = match tape.slots.take() {
            Some(slot) => slot,
            None => {
                if tape.n_used == tape.records.len() {
                    tape.records
                        .push(SharedWs::new(self.field, self.n_batch).expect(CHECKED));
                }
                tape.n_used += 1;
                tape.n_used - 1
            }
        };
        tape.records[slot].forward(self.field, t, y, dy);
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
        self.ws.forward(self.field, t, y, &mut self.f);
        self.ws.vjp(self.field, w, grad_y, grad_p);
    }

    fn rhs_and_vjp(&mut self, t: f64, y: &[f64], w: &[f64], dy: &mut [f64], grad_y: &mut [f64], grad_p: &mut [f64]) {
        self.ws.forward(self.field, t, y, dy);
        self.ws.vjp(self.field, w, grad_y, grad_p);
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
            Some(ws) => ws.vjp(field, w, grad_y, grad_p),
            None => self.vjp(t, y, w, grad_y, grad_p),
        }
    }
}
