//! Conditional flow matching (Lipman et al. 2023, "Flow Matching for Generative
//! Modeling"; Tong et al. 2024, "Improving and generalizing flow-based generative
//! models with minibatch optimal transport"): simulation-free training of the CNF's
//! field, after which the model's likelihood is exact through the same solver and
//! trace as a maximum-likelihood model's.
//!
//! In this crate's convention data sit at `τ = 0` and the base `N(0, I)` at `τ = 1`
//! (DESIGN.md), with `dz/dτ = T f(z, τT)`. A data point `x` (after the model's affine
//! block) is paired with a base point `ε`, and the path between them is the straight
//! line `z_τ = (1 − τ) x + τ ε` with velocity `u = ε − x`. The loss is
//!
//! ```text
//! L = mean over points and coordinates of (T f(z_τ, τT) − u)²,   τ ~ U[0, 1]
//! ```
//!
//! (torchcfm's mean squared error). With independent coupling the pairs are as drawn;
//! with minibatch optimal transport the batch's `ε` are reordered by an exact
//! assignment minimising `Σ ‖x_i − ε_σ(i)‖²` ([`super::linear_assignment`]).
//!
//! A field that takes a time per point ([`Field::has_per_point_times`], the MLP) gives
//! every point its own `τ ~ U[0, 1]`, and the batch is cut into shares of 128 points
//! only to run on both cores. Any other field shares one time per evaluation, so the
//! batch is split into `n_groups` groups, each at its own stratified time
//! `τ_g = (g + U_g)/G`. Either way each point is evaluated once, the shares in
//! parallel, and their gradients summed in order (the result does not depend on the
//! thread count). `T` is held fixed: it and `f` are redundant in the target.
//!
//! With exact OT coupling, [`fm_pairs_many`] solves several batches' assignments at once
//! (each on one thread, the threads taking the next batch as they finish); the training
//! loop pairs each batch with the next iterations'.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::field::{Cotangents, Field};
use super::grad::LossGrad;
use super::model::{Cnf, CnfError};
use crate::Real;

/// Points per share of the work when every point has its own time.
const POINT_CHUNK: usize = 128;

/// How data points are paired with base points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Coupling {
    /// As drawn (conditional flow matching, CFM).
    Independent,
    /// By an exact optimal-transport assignment within the batch (OT-CFM).
    ExactOt,
}

/// Flow-matching settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlowMatching {
    /// The coupling.
    pub coupling: Coupling,
    /// Time groups per batch (each one field evaluation at its own time).
    pub n_groups: usize,
}

impl FlowMatching {
    /// `coupling` with 16 time groups.
    pub fn new(coupling: Coupling) -> Self {
        FlowMatching { coupling, n_groups: 16 }
    }
}

/// The permutation `σ` minimising `Σ_i ‖x_i − ε_σ(i)‖²` over a batch of `n` points of
/// dimension `d` (flat `n × d` each), by exact linear assignment on the squared
/// distances ([`linear_assignment`](super::linear_assignment): shortest augmenting
/// paths from a column reduction).
pub fn ot_assignment<T: Real>(x: &[T], eps: &[T], d: usize) -> Vec<usize> {
    let n = x.len() / d.max(1);
    if n <= 1 || d == 0 {
        return (0..n).collect();
    }
    let (x, eps): (Vec<f64>, Vec<f64>) = (
        x.iter().map(|v| v.f64()).collect(),
        eps.iter().map(|v| v.f64()).collect(),
    );
    let solve = |cost: &mut [f64]| {
        for (row, xi) in cost.chunks_exact_mut(n).zip(x.chunks_exact(d)) {
            for (c, ej) in row.iter_mut().zip(eps.chunks_exact(d)) {
                let mut s = 0.0;
                for (&a, &b) in xi.iter().zip(ej) {
                    s += (a - b) * (a - b);
                }
                *c = s;
            }
        }
        super::linear_assignment(cost, n)
    };
    // A flow-matching batch's cost matrix (512 KiB at 256 points) is kept by the thread
    // from one call to the next, which the allocator would otherwise map and fault in
    // afresh every time; a larger one (W2 on thousands of points) is not kept.
    const KEPT_MAX: usize = 1 << 20;
    thread_local! {
        static COST: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    if n * n > KEPT_MAX {
        return solve(&mut vec![0.0; n * n]);
    }
    COST.with(|cell| {
        let mut kept = cell.borrow_mut();
        kept.resize(n * n, 0.0);
        solve(&mut kept[..n * n])
    })
}

/// The 2-Wasserstein distance between two equally sized point sets `a` and `b` (flat,
/// `n × d`) by exact optimal transport: `W2 = sqrt(min_σ (1/n) Σᵢ ‖aᵢ − b_σ(i)‖²)` over
/// permutations `σ`, from the assignment of [`ot_assignment`]. Panics if the sets differ in size (a caller's bug).
///
/// ```
/// use cnflow::cnf::wasserstein2;
/// let a = [0.0, 0.0, 1.0, 0.0, 0.0, 2.0];
/// let b: Vec<f64> = a.iter().enumerate().map(|(k, v)| v + if k % 2 == 0 { 0.3 } else { -0.4 }).collect();
/// assert!((wasserstein2(&a, &b, 2) - 0.5).abs() < 1e-6); // a translation by (0.3, −0.4)
/// ```
pub fn wasserstein2(a: &[f64], b: &[f64], d: usize) -> f64 {
    assert_eq!(a.len(), b.len(), "wasserstein2: the sets differ in size");
    let n = a.len() / d.max(1);
    if n == 0 {
        return 0.0;
    }
    let sigma = ot_assignment(a, b, d);
    let cost: f64 = sigma
        .iter()
        .enumerate()
        .map(|(i, &j)| (0..d).map(|c| (a[i * d + c] - b[j * d + c]).powi(2)).sum::<f64>())
        .sum();
    (cost / n as f64).sqrt()
}

/// One time group's buffers, kept across iterations by [`FmScratch`].
struct GroupScratch<T, W> {
    m: usize,
    ws: W,
    /// The points' times, with per-point times.
    t: Vec<T>,
    z: Vec<T>,
    f: Vec<T>,
    cot: Vec<T>,
    grad_z: Vec<T>,
    grad_p: Vec<T>,
    loss: f64,
}

/// The time groups' workspaces and buffers of [`fm_loss_and_grad_in`], reused from one
/// iteration to the next (a group's are made again only when its size changes).
pub struct FmScratch<T: Real, F: Field<T>> {
    groups: Vec<GroupScratch<T, F::Workspace>>,
}

impl<T: Real, F: Field<T>> Default for FmScratch<T, F> {
    fn default() -> Self {
        FmScratch { groups: Vec::new() }
    }
}

/// The flow-matching loss of `model` (one block) on the batch `x` (the user's units,
/// flat `B × d`) and its gradient in the block's parameters, with base points, times
/// and groups drawn from `rng`.
pub fn fm_loss_and_grad<T, F, X, R>(
    model: &Cnf<T, F>,
    x: &[X],
    config: &FlowMatching,
    rng: &mut R,
) -> Result<LossGrad<T>, CnfError>
where
    T: Real,
    F: Field<T> + Sync,
    F::Workspace: Send,
    X: Real,
    R: Rng + ?Sized,
{
    fm_loss_and_grad_in(model, x, config, rng, &mut FmScratch::default())
}

/// [`fm_loss_and_grad`] in the buffers of `scratch` (the same result).
pub fn fm_loss_and_grad_in<T, F, X, R>(
    model: &Cnf<T, F>,
    x: &[X],
    config: &FlowMatching,
    rng: &mut R,
    scratch: &mut FmScratch<T, F>,
) -> Result<LossGrad<T>, CnfError>
where
    T: Real,
    F: Field<T> + Sync,
    F::Workspace: Send,
    X: Real,
    R: Rng + ?Sized,
{
    let mut pairs = fm_draw(model, x, rng)?;
    if config.coupling == Coupling::ExactOt {
        pairs.couple(model.dim());
    }
    fm_loss_and_grad_pairs(model, &pairs, config, rng, scratch)
}

/// A flow-matching batch: data points (after the model's affine block) and their base
/// points, flat `B × d` each, paired row by row.
#[derive(Clone, Debug, PartialEq)]
pub struct FmPairs<T> {
    x: Vec<T>,
    eps: Vec<T>,
}

impl<T: Real> FmPairs<T> {
    /// Reorders the base points by the exact optimal-transport assignment.
    fn couple(&mut self, d: usize) {
        let sigma = ot_assignment(&self.x, &self.eps, d);
        let drawn = self.eps.clone();
        for (i, &j) in sigma.iter().enumerate() {
            self.eps[i * d..(i + 1) * d].copy_from_slice(&drawn[j * d..(j + 1) * d]);
        }
    }
}

/// The batch `x` (the user's units) through the model's affine block, with base points
/// drawn from `rng` (as independent pairs), after checking the batch and the model.
fn fm_draw<T, F, X, R>(model: &Cnf<T, F>, x: &[X], rng: &mut R) -> Result<FmPairs<T>, CnfError>
where
    T: Real,
    F: Field<T>,
    X: Real,
    R: Rng + ?Sized,
{
    let n = model.n_points(x)?;
    if n == 0 {
        return Err(CnfError::EmptyBatch);
    }
    if model.blocks.len() != 1 {
        return Err(CnfError::FlowMatchingBlocks {
            n_blocks: model.blocks.len(),
        });
    }
    let x: Vec<T> = model.flow_input(x);
    let eps: Vec<T> = (0..n * model.dim()).map(|_| T::c(StandardNormal.sample(rng))).collect();
    Ok(FmPairs { x, eps })
}

/// The pairs of several batches for [`fm_loss_and_grad_pairs`], each drawn from its own
/// RNG exactly as [`fm_loss_and_grad_in`] draws them, their assignments (with
/// [`Coupling::ExactOt`]) solved on all threads, each batch's on one thread and the next
/// batch going to whichever thread is free. An exact assignment of a batch of 256 takes
/// about a millisecond, several times the rest of an iteration, and does not depend on
/// the model: so the training loop pairs the next iterations' batches beside this one's,
/// and the result is the same as one batch at a time.
pub fn fm_pairs_many<T, F, X, R>(
    model: &Cnf<T, F>,
    batches: Vec<(&[X], &mut R)>,
    config: &FlowMatching,
) -> Result<Vec<FmPairs<T>>, CnfError>
where
    T: Real,
    F: Field<T>,
    X: Real,
    R: Rng + ?Sized,
{
    let mut pairs = Vec::with_capacity(batches.len());
    for (x, rng) in batches {
        pairs.push(fm_draw(model, x, rng)?);
    }
    if config.coupling == Coupling::ExactOt {
        let d = model.dim();
        let slots: Vec<std::sync::Mutex<&mut FmPairs<T>>> = pairs.iter_mut().map(std::sync::Mutex::new).collect();
        crate::par::for_each(slots.len(), &|k| {
            slots[k].lock().unwrap_or_else(|e| e.into_inner()).couple(d)
        });
    }
    Ok(pairs)
}

/// [`fm_loss_and_grad_in`] on pairs already drawn (and coupled) by [`fm_pairs_many`],
/// the times drawn from `rng`, the RNG their batch's base points came from (the same
/// result as drawing everything in one call).
pub fn fm_loss_and_grad_pairs<T, F, R>(
    model: &Cnf<T, F>,
    pairs: &FmPairs<T>,
    config: &FlowMatching,
    rng: &mut R,
    scratch: &mut FmScratch<T, F>,
) -> Result<LossGrad<T>, CnfError>
where
    T: Real,
    F: Field<T> + Sync,
    F::Workspace: Send,
    R: Rng + ?Sized,
{
    let started = std::time::Instant::now();
    if model.blocks.len() != 1 {
        return Err(CnfError::FlowMatchingBlocks {
            n_blocks: model.blocks.len(),
        });
    }
    let d = model.dim();
    let (x, eps) = (&pairs.x, &pairs.eps);
    let n = model.n_points(x)?;
    if n == 0 || eps.len() != x.len() {
        return Err(CnfError::EmptyBatch);
    }
    let block = &model.blocks[0];
    // With per-point times every point draws its own τ ~ U(0, 1) and the batch is cut
    // into chunks of about POINT_CHUNK points only to share the work out; otherwise
    // group k shares the stratified time (k + U_k)/g.
    let per_point = block.field.has_per_point_times();
    let (g, taus): (usize, Vec<f64>) = match per_point {
        true => (n.div_ceil(POINT_CHUNK), (0..n).map(|_| rng.random::<f64>()).collect()),
        false => {
            let g = config.n_groups.clamp(1, n);
            (g, (0..g).map(|k| (k as f64 + rng.random::<f64>()) / g as f64).collect())
        }
    };
    // Group k holds the points k·n/g .. (k+1)·n/g (contiguous, sizes differ by ≤ 1).
    let bounds: Vec<(usize, usize)> = (0..g).map(|k| (k * n / g, (k + 1) * n / g)).collect();
    let n_params = block.field.n_params();
    scratch.groups.truncate(g);
    for (k, &(a, b)) in bounds.iter().enumerate() {
        let m = b - a;
        if scratch.groups.get(k).is_none_or(|s| s.m != m) {
            let fresh = GroupScratch {
                m,
                ws: block.field.workspace(m, 0),
                t: vec![T::zero(); m],
                z: vec![T::zero(); m * d],
                f: vec![T::zero(); m * d],
                cot: vec![T::zero(); m * d],
                grad_z: vec![T::zero(); m * d],
                grad_p: vec![T::zero(); n_params],
                loss: 0.0,
            };
            match k < scratch.groups.len() {
                true => scratch.groups[k] = fresh,
                false => scratch.groups.push(fresh),
            }
        }
    }
    let t_end = block.t_end;
    let scale = T::c(1.0 / (n * d) as f64);
    // Each share's buffers behind an uncontended lock, so that any thread may run it.
    let shares: Vec<std::sync::Mutex<&mut GroupScratch<T, F::Workspace>>> =
        scratch.groups.iter_mut().map(std::sync::Mutex::new).collect();
    model.prepare();
    crate::par::for_each(g, &|k| {
        let mut guard = shares[k].lock().unwrap_or_else(|e| e.into_inner());
        let gs = &mut **guard;
        let (a, b) = bounds[k];
        let (xs, es) = (&x[a * d..b * d], &eps[a * d..b * d]);
        if per_point {
            for (i, ((zr, xr), er)) in
                gs.z.chunks_exact_mut(d)
                    .zip(xs.chunks_exact(d))
                    .zip(es.chunks_exact(d))
                    .enumerate()
            {
                let tau_t = T::c(taus[a + i]);
                for ((z, &xi), &ei) in zr.iter_mut().zip(xr).zip(er) {
                    *z = (T::one() - tau_t) * xi + tau_t * ei;
                }
                gs.t[i] = tau_t * t_end;
            }
            block.field.forward_per_point(&gs.t, &gs.z, &mut gs.ws, &mut gs.f);
        } else {
            let tau_t = T::c(taus[k]);
            for ((z, &xi), &ei) in gs.z.iter_mut().zip(xs).zip(es) {
                *z = (T::one() - tau_t) * xi + tau_t * ei;
            }
            block.field.forward(tau_t * t_end, &gs.z, &mut gs.ws, &mut gs.f);
        }
        let mut loss = 0.0;
        for ((c, &fi), (&xi, &ei)) in gs.cot.iter_mut().zip(&gs.f).zip(xs.iter().zip(es)) {
            let r = t_end * fi - (ei - xi);
            loss += r.f64() * r.f64();
            *c = T::c(2.0) * t_end * r * scale;
        }
        gs.loss = loss;
        gs.grad_p.fill(T::zero());
        let cotangents = Cotangents {
            f: Some(&gs.cot),
            jv: None,
            trace: None,
            kinetic: None,
            jacobian: None,
        };
        block.field.vjp(&mut gs.ws, &cotangents, &mut gs.grad_z, &mut gs.grad_p);
    });
    drop(shares);
    // The groups' gradients summed in group order, each thread over its own range of
    // the parameters.
    let mut grad = vec![T::zero(); n_params];
    let groups: Vec<&[T]> = scratch.groups.iter().map(|gs| gs.grad_p.as_slice()).collect();
    let chunk = n_params.div_ceil(crate::par::helpers() + 1).max(1);
    let ranges: Vec<std::sync::Mutex<&mut [T]>> = grad.chunks_mut(chunk).map(std::sync::Mutex::new).collect();
    crate::par::for_each_if_warm(ranges.len(), &|r| {
        let mut out = ranges[r].lock().unwrap_or_else(|e| e.into_inner());
        let at = r * chunk;
        for gp in &groups {
            for (a, &v) in out.iter_mut().zip(&gp[at..]) {
                *a += v;
            }
        }
    });
    drop(ranges);
    let loss = scratch.groups.iter().map(|gs| gs.loss).sum::<f64>() / (n * d) as f64;
    Ok(LossGrad {
        loss,
        nll: f64::NAN,
        kinetic: 0.0,
        jacobian: 0.0,
        grad_params: vec![grad],
        grad_t_end: vec![T::zero()],
        grad_x: Vec::new(),
        n_evals_forward: 1,
        n_evals_backward: 1,
        seconds_forward: started.elapsed().as_secs_f64(),
        seconds_backward: 0.0,
    })
}
