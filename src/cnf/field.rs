//! The seam between a CNF and its vector field: what the augmented dynamics needs.
//!
//! A field evaluates `f(z, t)` on a batch `z` (`B × d`, row-major) together with the
//! exact or Hutchinson trace of `J = ∂f/∂z` and, optionally, the RNODE terms `‖f‖²` and
//! `‖J ε‖²`; then, in reverse, the vector-Jacobian product of all of these with respect
//! to `z`, the params `θ` and `t`. [`crate::nn::Mlp`] is the field cnflow trains;
//! [`LinearField`] is a closed-form one for tests and examples.

use crate::Real;

pub use crate::nn::{Cotangents, FieldOutputs, TraceMode};
use crate::nn::{Mlp, Workspace};

/// A time-dependent vector field with exact first and second derivatives.
///
/// Buffer lengths are the caller's invariant (the CNF sizes everything once per batch
/// shape); implementations may panic on a mismatch, which is a bug, not bad input.
pub trait Field<T: Real>: Clone + Send + Sync {
    /// Reusable scratch for one batch shape.
    type Workspace: Send;

    /// Data dimension `d`.
    fn dim(&self) -> usize;
    /// The flat parameter vector `θ`.
    fn params(&self) -> &[T];
    /// The flat parameter vector `θ`, mutably.
    fn params_mut(&mut self) -> &mut [T];
    /// Number of params.
    fn n_params(&self) -> usize {
        self.params().len()
    }
    /// Scratch for batches of `n_batch` rows and up to `n_tangents` tangents.
    fn workspace(&self, n_batch: usize, n_tangents: usize) -> Self::Workspace;
    /// Scratch for evaluations that no [`Field::vjp`] follows (sampling, log-densities):
    /// it may keep less, and the outputs are the same. By default [`Field::workspace`].
    fn inference_workspace(&self, n_batch: usize, n_tangents: usize) -> Self::Workspace {
        self.workspace(n_batch, n_tangents)
    }
    /// Makes what evaluations share and build on first use (an MLP's transposed
    /// weights), so that threads starting evaluations together do not wait for one
    /// another to build it. Call it after changing the params and before evaluating on
    /// several threads; by default it does nothing.
    fn prepare(&self) {}
    /// `f(z, t)` alone (sampling needs no trace).
    fn forward(&self, t: T, z: &[T], ws: &mut Self::Workspace, f: &mut [T]);
    /// Whether [`Field::forward_per_point`] is supported (by default not: the caller
    /// then groups points by time).
    fn has_per_point_times(&self) -> bool {
        false
    }
    /// `f(z_i, t_i)` with a time per point (`t`, one per row of `z`), remembering what
    /// [`Field::vjp`] needs; returns `false`, computing nothing, when the field only
    /// takes one time per evaluation (the default).
    fn forward_per_point(&self, t: &[T], z: &[T], ws: &mut Self::Workspace, f: &mut [T]) -> bool {
        let _ = (t, z, ws, f);
        false
    }
    /// `f`, the trace and the optional RNODE terms; remembers what [`Field::vjp`] needs.
    fn eval(&self, t: T, z: &[T], mode: TraceMode<'_, T>, ws: &mut Self::Workspace, out: FieldOutputs<'_, T>);
    /// Reverse of the last [`Field::eval`]: writes `∂S/∂z` into `grad_z`, accumulates
    /// `∂S/∂θ` into `grad_params` and returns `∂S/∂t`, where `S` pairs the outputs with
    /// the cotangents.
    fn vjp(&self, ws: &mut Self::Workspace, cot: &Cotangents<'_, T>, grad_z: &mut [T], grad_params: &mut [T]) -> T;
}

// The CNF sizes every buffer from the model and the batch, so a shape error from the
// network is a bug in cnflow, not bad input: it panics with the network's message.
const SHAPE_BUG: &str = "cnflow bug: CNF and network disagree on a buffer shape";

impl<T: Real> Field<T> for Mlp<T> {
    type Workspace = Workspace<T>;

    fn dim(&self) -> usize {
        Mlp::dim(self)
    }

    fn params(&self) -> &[T] {
        Mlp::params(self)
    }

    fn params_mut(&mut self) -> &mut [T] {
        Mlp::params_mut(self)
    }

    fn workspace(&self, n_batch: usize, n_tangents: usize) -> Workspace<T> {
        Mlp::workspace(self, n_batch.max(1), n_tangents).expect(SHAPE_BUG)
    }

    fn inference_workspace(&self, n_batch: usize, n_tangents: usize) -> Workspace<T> {
        Mlp::inference_workspace(self, n_batch.max(1), n_tangents).expect(SHAPE_BUG)
    }

    fn prepare(&self) {
        self.prepare_transposed();
    }

    fn forward(&self, t: T, z: &[T], ws: &mut Workspace<T>, f: &mut [T]) {
        self.forward_into(t, z, ws, f).expect(SHAPE_BUG)
    }

    fn has_per_point_times(&self) -> bool {
        true
    }

    fn forward_per_point(&self, t: &[T], z: &[T], ws: &mut Workspace<T>, f: &mut [T]) -> bool {
        self.forward_times_into(t, z, ws, f).expect(SHAPE_BUG);
        true
    }

    fn eval(&self, t: T, z: &[T], mode: TraceMode<'_, T>, ws: &mut Workspace<T>, out: FieldOutputs<'_, T>) {
        self.eval_into(t, z, mode, ws, out).expect(SHAPE_BUG)
    }

    fn vjp(&self, ws: &mut Workspace<T>, cot: &Cotangents<'_, T>, grad_z: &mut [T], grad_params: &mut [T]) -> T {
        self.vjp_into(ws, cot, grad_z, grad_params).expect(SHAPE_BUG)
    }
}

/// The affine field `f(z, t) = A z + b + t c` with params `θ = (A row-major, b, c)`.
///
/// Its flow and log-density are known in closed form, which makes it the reference for
/// the CNF's invariants: `tr J = tr A`, `‖J ε‖² = ‖A ε‖²`.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearField<T> {
    d: usize,
    params: Vec<T>,
}

/// Scratch of a [`LinearField`]: the last inputs and outputs.
#[derive(Clone, Debug)]
pub struct LinearWorkspace<T> {
    n_batch: usize,
    t: T,
    z: Vec<T>,
    f: Vec<T>,
    fbar: Vec<T>,
    probes: Vec<T>,
    a_eps: Vec<T>,
    n_probes: usize,
    exact: bool,
}

impl<T: Real> LinearField<T> {
    /// The field with `A` (`d × d`, row-major), `b` and `c`.
    pub fn new(a: &[T], b: &[T], c: &[T]) -> Self {
        let d = b.len();
        assert!(
            a.len() == d * d && c.len() == d,
            "LinearField: A must be d × d and b, c of length d"
        );
        LinearField {
            d,
            params: a.iter().chain(b).chain(c).copied().collect(),
        }
    }

    fn a(&self, i: usize, j: usize) -> T {
        self.params[i * self.d + j]
    }
}

impl<T: Real> Field<T> for LinearField<T> {
    type Workspace = LinearWorkspace<T>;

    fn dim(&self) -> usize {
        self.d
    }

    fn params(&self) -> &[T] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [T] {
        &mut self.params
    }

    fn workspace(&self, n_batch: usize, n_tangents: usize) -> LinearWorkspace<T> {
        let n_tangents = n_tangents.max(self.d);
        LinearWorkspace {
            n_batch,
            t: T::zero(),
            z: vec![T::zero(); n_batch * self.d],
            f: vec![T::zero(); n_batch * self.d],
            fbar: vec![T::zero(); self.d],
            probes: vec![T::zero(); n_tangents * n_batch * self.d],
            a_eps: vec![T::zero(); n_tangents * n_batch * self.d],
            n_probes: 0,
            exact: true,
        }
    }

    fn forward(&self, t: T, z: &[T], _ws: &mut LinearWorkspace<T>, f: &mut [T]) {
        let d = self.d;
        for (zr, fr) in z.chunks_exact(d).zip(f.chunks_exact_mut(d)) {
            for i in 0..d {
                let mut acc = self.params[d * d + i] + t * self.params[d * d + d + i];
                for j in 0..d {
                    acc += self.a(i, j) * zr[j];
                }
                fr[i] = acc;
            }
        }
    }

    fn eval(&self, t: T, z: &[T], mode: TraceMode<'_, T>, ws: &mut LinearWorkspace<T>, out: FieldOutputs<'_, T>) {
        let (d, nb) = (self.d, ws.n_batch);
        self.forward(t, z, ws, out.f);
        ws.f.copy_from_slice(out.f);
        ws.z.copy_from_slice(z);
        ws.t = t;
        let trace_a: T = (0..d).map(|i| self.a(i, i)).sum();
        match mode {
            TraceMode::Exact => {
                ws.exact = true;
                ws.n_probes = d;
                // Probe k is e_k for every sample.
                for k in 0..d {
                    for b in 0..nb {
                        for i in 0..d {
                            ws.probes[(k * nb + b) * d + i] = if i == k { T::one() } else { T::zero() };
                        }
                    }
                }
                out.trace.fill(trace_a);
            }
            TraceMode::Hutchinson(p) => {
                ws.exact = false;
                ws.n_probes = p.len() / (nb * d);
                ws.probes[..p.len()].copy_from_slice(p);
            }
        }
        let k_n = ws.n_probes;
        for k in 0..k_n {
            for b in 0..nb {
                let base = (k * nb + b) * d;
                for i in 0..d {
                    let mut acc = T::zero();
                    for j in 0..d {
                        acc += self.a(i, j) * ws.probes[base + j];
                    }
                    ws.a_eps[base + i] = acc;
                }
            }
        }
        let weight = if ws.exact {
            T::one()
        } else {
            T::one() / T::c(k_n as f64)
        };
        if !ws.exact {
            for b in 0..nb {
                let mut acc = T::zero();
                for k in 0..k_n {
                    let base = (k * nb + b) * d;
                    for i in 0..d {
                        acc += ws.probes[base + i] * ws.a_eps[base + i];
                    }
                }
                out.trace[b] = weight * acc;
            }
        }
        if let Some(kin) = out.kinetic {
            for (b, fr) in ws.f.chunks_exact(d).enumerate() {
                kin[b] = fr.iter().map(|&v| v * v).sum();
            }
        }
        if let Some(jac) = out.jacobian {
            for (b, jb) in jac.iter_mut().enumerate() {
                let mut acc = T::zero();
                for k in 0..k_n {
                    let base = (k * nb + b) * d;
                    acc += ws.a_eps[base..base + d].iter().map(|&v| v * v).sum::<T>();
                }
                *jb = weight * acc;
            }
        }
    }

    fn vjp(&self, ws: &mut LinearWorkspace<T>, cot: &Cotangents<'_, T>, grad_z: &mut [T], grad_params: &mut [T]) -> T {
        let (d, nb) = (self.d, ws.n_batch);
        let (ga, rest) = grad_params.split_at_mut(d * d);
        let (gb, gc) = rest.split_at_mut(d);
        grad_z.fill(T::zero());
        let mut gt = T::zero();
        let two = T::c(2.0);
        let weight = if ws.exact {
            T::one()
        } else {
            T::one() / T::c(ws.n_probes as f64)
        };
        for b in 0..nb {
            // Cotangent of f_b: a_f + 2 a_kin f.
            let fbar = &mut ws.fbar;
            fbar.fill(T::zero());
            if let Some(af) = cot.f {
                fbar.copy_from_slice(&af[b * d..(b + 1) * d]);
            }
            if let Some(ak) = cot.kinetic {
                for i in 0..d {
                    fbar[i] += two * ak[b] * ws.f[b * d + i];
                }
            }
            for i in 0..d {
                for j in 0..d {
                    grad_z[b * d + j] += self.a(i, j) * fbar[i];
                    ga[i * d + j] += fbar[i] * ws.z[b * d + j];
                }
            }
            for i in 0..d {
                gb[i] += fbar[i];
                gc[i] += ws.t * fbar[i];
                gt += self.params[d * d + d + i] * fbar[i];
            }
            // Trace terms: tr = w Σ_k ε_kᵀ A ε_k, jac = w Σ_k ‖A ε_k‖².
            for k in 0..ws.n_probes {
                let base = (k * nb + b) * d;
                let eps = &ws.probes[base..base + d];
                let a_eps = &ws.a_eps[base..base + d];
                let at = cot.trace.map_or(T::zero(), |a| a[b]) * weight;
                let aj = cot.jacobian.map_or(T::zero(), |a| a[b]) * weight;
                for i in 0..d {
                    for j in 0..d {
                        ga[i * d + j] += at * eps[i] * eps[j] + aj * two * a_eps[i] * eps[j];
                    }
                }
            }
        }
        gt
    }
}
