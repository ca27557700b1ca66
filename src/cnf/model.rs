//! A CNF model: stacked blocks, exact or Hutchinson log-density, sampling, trajectories.
//!
//! Data passes block 1, 2, …, K from `τ = 0` to `1`; the base is `N(0, I_d)` after the
//! last block. `log p(x) = log N(z_K; 0, I) − Σ_k Δ_k`. Sampling draws `z_K ~ N(0, I)`
//! and runs the blocks in reverse order from `τ = 1` back to `0`.
//!
//! An optional fixed affine block on the data side, the [`Standardizer`]
//! `u = (x − μ)/σ`, comes before block 1: the flow sees `u`, and every density,
//! sample, encoding and gradient of the model is in the user's units `x`, with the
//! change of variables `log p(x) = log p_u(u) − Σ_i ln σ_i` done here.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::dynamics::{split_state, Augmented, Flow, Layout};
use super::field::{Field, TraceMode};
use crate::data::Standardizer;
use crate::nn::{probes, ProbeKind};
use crate::ode::{SaveAt, SolveError, Solver, SolverConfig, Stats};
use crate::Real;

/// How the trace of the Jacobian is obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Trace {
    /// Exactly, from `d` forward tangents.
    Exact,
    /// Hutchinson's estimator with this many Rademacher probes, drawn once per solve.
    Rademacher(usize),
    /// Hutchinson's estimator with this many Gaussian probes, drawn once per solve.
    Gaussian(usize),
}

impl Trace {
    /// Tangents a field evaluation carries for a field of dimension `d`.
    pub fn n_tangents(self, d: usize) -> usize {
        match self {
            Trace::Exact => d,
            Trace::Rademacher(k) | Trace::Gaussian(k) => k,
        }
    }

    /// Draws the probes of one solve (`K × B × d`); empty for the exact trace.
    pub fn draw<T: Real, R: Rng + ?Sized>(self, n_batch: usize, d: usize, rng: &mut R) -> Vec<T> {
        match self {
            Trace::Exact => Vec::new(),
            Trace::Rademacher(k) => probes(ProbeKind::Rademacher, rng, k, n_batch, d),
            Trace::Gaussian(k) => probes(ProbeKind::Gaussian, rng, k, n_batch, d),
        }
    }

    /// Refuses a Hutchinson estimator without probes.
    pub fn validate(self) -> Result<(), CnfError> {
        match self {
            Trace::Rademacher(0) | Trace::Gaussian(0) => Err(CnfError::NoProbes),
            _ => Ok(()),
        }
    }

    /// The field's trace mode for probes drawn by [`Trace::draw`].
    pub fn mode<T: Real>(probes: &[T]) -> TraceMode<'_, T> {
        if probes.is_empty() {
            TraceMode::Exact
        } else {
            TraceMode::Hutchinson(probes)
        }
    }
}

/// Why a CNF computation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CnfError {
    /// The input's length is not a whole number of points of the model's dimension.
    #[error("input has {len} numbers, not a whole number of {dim}-dimensional points")]
    Shape {
        /// Length of the flat input.
        len: usize,
        /// The model's dimension.
        dim: usize,
    },
    /// An ODE solve failed (its reason is quoted, not chained).
    #[error("block {block} ({direction}): {error}")]
    Solve {
        /// 1-based block index.
        block: usize,
        /// "forward", "adjoint", "sampling".
        direction: &'static str,
        /// The solver's reason.
        error: SolveError,
    },
    /// A model needs at least one block.
    #[error("invalid model: a CNF needs at least one block")]
    NoBlocks,
    /// Blocks of different dimensions.
    #[error("invalid model: block {block} has dimension {dim}, block 1 has {first}")]
    DimensionMismatch {
        /// 1-based block index.
        block: usize,
        /// Its dimension.
        dim: usize,
        /// Block 1's.
        first: usize,
    },
    /// An end time that is not a positive number.
    #[error("invalid model: block {block} has end time {t_end}; it must be > 0")]
    EndTime {
        /// 1-based block index.
        block: usize,
        /// Its end time.
        t_end: f64,
    },
    /// Hutchinson's estimator with no probe.
    #[error("Hutchinson's estimator needs at least one probe")]
    NoProbes,
    /// Flow matching trains one block.
    #[error("flow matching trains a model of one block, this one has {n_blocks}; use --blocks 1")]
    FlowMatchingBlocks {
        /// The model's blocks.
        n_blocks: usize,
    },
    /// A training batch of no points.
    #[error("the training batch is empty")]
    EmptyBatch,
    /// A standardiser whose dimension is not the model's, or whose scales are not
    /// positive and finite.
    #[error("invalid model: the standardiser has {dim} columns for a {model_dim}-dimensional flow, or a std that is not positive and finite")]
    Standardizer {
        /// The standardiser's dimension.
        dim: usize,
        /// The flow's.
        model_dim: usize,
    },
    /// Backprop's setup was refused (a checkpoint budget of 0).
    #[error("block {block} (backprop): {error}")]
    Backprop {
        /// 1-based block index.
        block: usize,
        /// Why.
        error: crate::sensitivity::SensitivityError,
    },
}

/// One block: a field and its end time `T`.
#[derive(Clone, Debug, PartialEq)]
pub struct Block<T, F> {
    /// The vector field.
    pub field: F,
    /// End time `T > 0`.
    pub t_end: T,
    /// Whether training updates `T`.
    pub learn_t: bool,
}

/// A continuous normalizing flow with a standard normal base, after an optional
/// fixed affine block (the data's standardisation).
#[derive(Clone, Debug, PartialEq)]
pub struct Cnf<T, F> {
    /// The blocks, data side first.
    pub blocks: Vec<Block<T, F>>,
    /// The fixed affine block `u = (x − μ)/σ` before block 1, if any
    /// ([`Cnf::with_standardizer`]).
    standardizer: Option<Standardizer>,
}

/// Log-densities of a batch and the work done.
#[derive(Clone, Debug, PartialEq)]
pub struct LogProb<T> {
    /// `log p(x)` per point.
    pub log_p: Vec<T>,
    /// Latent `z_K` per point (`B × d`).
    pub z: Vec<T>,
    /// Function evaluations of all solves.
    pub n_evals: usize,
}

/// What the forward pass keeps of one block.
pub(crate) struct BlockPass<T> {
    /// The block's Hutchinson probes (empty for the exact trace).
    pub probes: Vec<T>,
    /// State at the block's end (`τ = 1`).
    pub s_end: Vec<T>,
}

/// The forward pass through all blocks.
pub(crate) struct ForwardPass<T> {
    pub blocks: Vec<BlockPass<T>>,
    /// Augmented state at the end of the last block.
    pub s: Vec<T>,
    /// `Σ_k Δ_k` per point.
    pub delta_sum: Vec<T>,
    /// `Σ_b Σ_k E_k,b` and `Σ_b Σ_k R_k,b`.
    pub kin_sum: T,
    pub jac_sum: T,
    /// Function evaluations of all solves.
    pub n_evals: usize,
}

impl<T: Real> ForwardPass<T> {
    /// An empty pass for a batch of `n_batch`.
    pub fn new(n_batch: usize, n_blocks: usize) -> Self {
        ForwardPass {
            blocks: Vec::with_capacity(n_blocks),
            s: Vec::new(),
            delta_sum: vec![T::zero(); n_batch],
            kin_sum: T::zero(),
            jac_sum: T::zero(),
            n_evals: 0,
        }
    }

    /// Adds a block's `Δ`, `E` and `R` (from its end state `s`) to the sums.
    pub fn add_block(&mut self, layout: &Layout, s: &[T]) {
        let mut s = s.to_vec();
        let (_, delta, kin, jac) = split_state(layout, &mut s);
        for (acc, &v) in self.delta_sum.iter_mut().zip(delta.iter()) {
            *acc += v;
        }
        self.kin_sum += kin.map_or(T::zero(), |v| v.iter().copied().sum());
        self.jac_sum += jac.map_or(T::zero(), |v| v.iter().copied().sum());
    }
}

/// `log N(z; 0, I)` of one point.
pub fn log_normal<T: Real>(z: &[T]) -> T {
    let d = T::c(z.len() as f64);
    let sq: T = z.iter().map(|&v| v * v).sum();
    -T::c(0.5) * sq - T::c(0.5) * d * T::c((2.0 * std::f64::consts::PI).ln())
}

pub(crate) fn solve_error(block: usize, direction: &'static str) -> impl FnOnce(SolveError) -> CnfError {
    move |error| CnfError::Solve {
        block: block + 1,
        direction,
        error,
    }
}

impl<T: Real, F: Field<T>> Cnf<T, F> {
    /// A model from its blocks; all fields must share one dimension and `T > 0`.
    pub fn new(blocks: Vec<Block<T, F>>) -> Result<Self, CnfError> {
        let Some(first) = blocks.first() else {
            return Err(CnfError::NoBlocks);
        };
        let d = first.field.dim();
        for (k, b) in blocks.iter().enumerate() {
            if b.field.dim() != d {
                return Err(CnfError::DimensionMismatch {
                    block: k + 1,
                    dim: b.field.dim(),
                    first: d,
                });
            }
            if !(b.t_end > T::zero() && b.t_end.is_finite()) {
                return Err(CnfError::EndTime {
                    block: k + 1,
                    t_end: b.t_end.f64(),
                });
            }
        }
        Ok(Cnf {
            blocks,
            standardizer: None,
        })
    }

    /// The model with the fixed affine block `s` before its first block, so that it
    /// takes and returns points in the units `s` was fitted in.
    pub fn with_standardizer(mut self, s: Standardizer) -> Result<Self, CnfError> {
        if s.dim() != self.dim() || s.validate().is_err() {
            return Err(CnfError::Standardizer {
                dim: s.dim(),
                model_dim: self.dim(),
            });
        }
        self.standardizer = Some(s);
        Ok(self)
    }

    /// The affine block before block 1, if any.
    pub fn standardizer(&self) -> Option<&Standardizer> {
        self.standardizer.as_ref()
    }

    /// `log |det ∂u/∂x|` of the affine block (0 without one).
    pub fn log_det_affine(&self) -> f64 {
        self.standardizer.as_ref().map_or(0.0, |s| s.log_det())
    }

    /// Points in the user's units (any float type) mapped to the flow's input `u`.
    pub(crate) fn flow_input<X: Real>(&self, x: &[X]) -> Vec<T> {
        Standardizer::forward_flat(self.standardizer.as_ref(), x)
    }

    /// The flow's data-side points `u` mapped to the user's units, in f64 (so that an
    /// f32 flow's samples far from the origin keep f32 precision relative to σ).
    fn flow_output(&self, u: &[T]) -> Vec<f64> {
        Standardizer::inverse_flat(self.standardizer.as_ref(), u)
    }

    /// Makes what the blocks' fields build on first use after a change of their
    /// params ([`Field::prepare`]), so that threads starting evaluations together do not
    /// wait for one of them to build it.
    pub fn prepare(&self) {
        for b in &self.blocks {
            b.field.prepare();
        }
    }

    /// Data dimension `d`.
    pub fn dim(&self) -> usize {
        self.blocks[0].field.dim()
    }

    /// Number of points in a flat batch, or a shape error.
    pub fn n_points<X>(&self, x: &[X]) -> Result<usize, CnfError> {
        let d = self.dim();
        if !x.len().is_multiple_of(d) {
            return Err(CnfError::Shape { len: x.len(), dim: d });
        }
        Ok(x.len() / d)
    }

    /// `log p(x)` for a batch `x` (`B × d`, the user's units, in any float type:
    /// f64 points reach an f32 flow through the affine block at full precision),
    /// integrating each block with `solver`. Hutchinson probes, if any, are drawn from
    /// `rng` once per block.
    pub fn log_prob<X: Real, R: Rng + ?Sized>(
        &self,
        x: &[X],
        solver: &SolverConfig,
        trace: Trace,
        rng: &mut R,
    ) -> Result<LogProb<T>, CnfError> {
        let n_batch = self.n_points(x)?;
        trace.validate()?;
        let d = self.dim();
        if n_batch == 0 {
            return Ok(LogProb {
                log_p: Vec::new(),
                z: Vec::new(),
                n_evals: 0,
            });
        }
        let layout = Layout {
            n_batch,
            dim: d,
            kinetic: false,
            jacobian: false,
        };
        let pass = self.forward_pass(&self.flow_input(x), solver, trace, layout, rng)?;
        let z = pass.s[..layout.n_z()].to_vec();
        let log_det = self.log_det_affine();
        let log_p = z
            .chunks_exact(d)
            .zip(&pass.delta_sum)
            .map(|(zb, &dl)| match self.standardizer {
                Some(_) => T::c((log_normal(zb) - dl).f64() + log_det),
                None => log_normal(zb) - dl,
            })
            .collect();
        Ok(LogProb {
            log_p,
            z,
            n_evals: pass.n_evals,
        })
    }

    /// Integrates the augmented state of the flow's input `x` (after the affine block)
    /// through every block (the forward pass of [`Cnf::log_prob`] and of the adjoint's
    /// gradient). Hutchinson probes are drawn
    /// from `rng` once per block.
    pub(crate) fn forward_pass<R: Rng + ?Sized>(
        &self,
        x: &[T],
        solver: &SolverConfig,
        trace: Trace,
        layout: Layout,
        rng: &mut R,
    ) -> Result<ForwardPass<T>, CnfError> {
        if let Some(stiff) = solver.stiff_config() {
            let stiff = stiff.map_err(solve_error(0, "forward"))?;
            return self.forward_pass_stiff(x, &stiff, trace, layout, rng);
        }
        let (n_batch, d) = (layout.n_batch, layout.dim);
        let config = SolverConfig {
            error_mask: Some(layout.error_mask()),
            ..solver.clone()
        };
        let mut ode = Solver::new(config).map_err(solve_error(0, "forward"))?;
        let mut s = vec![T::zero(); layout.len()];
        s[..layout.n_z()].copy_from_slice(x);
        let mut pass = ForwardPass::new(n_batch, self.blocks.len());
        for (k, block) in self.blocks.iter().enumerate() {
            s[layout.n_z()..].fill(T::zero());
            let probes = trace.draw::<T, _>(n_batch, d, rng);
            let n_tangents = trace.n_tangents(d);
            let mode = Trace::mode(&probes);
            // Nothing differentiates this pass's evaluations (the adjoint solves its own
            // backward problem), so they keep only what the forward needs.
            let mut ws = block.field.inference_workspace(n_batch, n_tangents);
            let mut sys = Augmented {
                field: &block.field,
                ws: &mut ws,
                t_end: block.t_end,
                layout,
                mode,
            };
            let sol = ode
                .solve(&mut sys, &s, T::zero(), T::one(), &SaveAt::default())
                .map_err(solve_error(k, "forward"))?;
            pass.n_evals += sol.stats.n_evals;
            s = sol.y_final;
            pass.add_block(&layout, &s);
            pass.blocks.push(BlockPass {
                probes,
                s_end: s.clone(),
            });
        }
        pass.s = s;
        Ok(pass)
    }

    /// Maps latent points `z` (`B × d`) to data space: the blocks in reverse, `τ: 1 → 0`,
    /// then the affine block's inverse. Points in the user's units come out in f64
    /// whatever the flow's float type.
    pub fn decode(&self, z: &[T], solver: &SolverConfig) -> Result<(Vec<f64>, Stats), CnfError> {
        let n_batch = self.n_points(z)?;
        let mut x = z.to_vec();
        let mut stats = Stats::default();
        if n_batch == 0 {
            return Ok((Vec::new(), stats));
        }
        if let Some(stiff) = solver.stiff_config() {
            let stiff = stiff.map_err(solve_error(0, "sampling"))?;
            let (x, stats) = self.flow_stiff(&x, &stiff, false, &[], None)?;
            return Ok((self.flow_output(&x), stats));
        }
        let mut ode = Solver::new(solver.clone()).map_err(solve_error(0, "sampling"))?;
        for (k, block) in self.blocks.iter().enumerate().rev() {
            let mut ws = block.field.inference_workspace(n_batch, 0);
            let mut sys = Flow {
                field: &block.field,
                ws: &mut ws,
                t_end: block.t_end,
            };
            let sol = ode
                .solve(&mut sys, &x, T::one(), T::zero(), &SaveAt::default())
                .map_err(solve_error(k, "sampling"))?;
            stats.n_evals += sol.stats.n_evals;
            stats.n_accepted += sol.stats.n_accepted;
            stats.n_rejected += sol.stats.n_rejected;
            x = sol.y_final;
        }
        Ok((self.flow_output(&x), stats))
    }

    /// Maps data points `x` to latent space (the affine block, then the blocks in
    /// order, `τ: 0 → 1`), no trace.
    pub fn encode<X: Real>(&self, x: &[X], solver: &SolverConfig) -> Result<Vec<T>, CnfError> {
        let n_batch = self.n_points(x)?;
        let mut z = self.flow_input(x);
        if n_batch == 0 {
            return Ok(z);
        }
        if let Some(stiff) = solver.stiff_config() {
            let stiff = stiff.map_err(solve_error(0, "forward"))?;
            return Ok(self.flow_stiff(&z, &stiff, true, &[], None)?.0);
        }
        let mut ode = Solver::new(solver.clone()).map_err(solve_error(0, "forward"))?;
        for (k, block) in self.blocks.iter().enumerate() {
            let mut ws = block.field.inference_workspace(n_batch, 0);
            let mut sys = Flow {
                field: &block.field,
                ws: &mut ws,
                t_end: block.t_end,
            };
            z = ode
                .solve(&mut sys, &z, T::zero(), T::one(), &SaveAt::default())
                .map_err(solve_error(k, "forward"))?
                .y_final;
        }
        Ok(z)
    }

    /// Draws `n` samples: `z ~ N(0, I)` from `rng`, then [`Cnf::decode`].
    pub fn sample<R: Rng + ?Sized>(
        &self,
        n: usize,
        solver: &SolverConfig,
        rng: &mut R,
    ) -> Result<(Vec<f64>, Stats), CnfError> {
        let z: Vec<T> = (0..n * self.dim()).map(|_| T::c(StandardNormal.sample(rng))).collect();
        self.decode(&z, solver)
    }

    /// The sampling flow of the points `z` from the base (frame 0) to data space (the
    /// last frame). Each of the `K` blocks contributes `⌈(n_frames − 1)/K⌉` frames equally
    /// spaced in its own time, so `1 + K·⌈(n_frames − 1)/K⌉` frames come back (exactly
    /// `n_frames` for one block), laid out `frames × B × d`. Every frame after the first
    /// is mapped through the affine block's inverse, so the last is in the user's units.
    pub fn trajectories(&self, z: &[T], n_frames: usize, solver: &SolverConfig) -> Result<Vec<f64>, CnfError> {
        let n_batch = self.n_points(z)?;
        if n_batch == 0 {
            return Ok(Vec::new());
        }
        let n_blocks = self.blocks.len();
        let frames_per_block = (n_frames.max(2) - 1).div_ceil(n_blocks);
        let mut frames: Vec<f64> = Standardizer::inverse_flat(None, z);
        if let Some(stiff) = solver.stiff_config() {
            let stiff = stiff.map_err(solve_error(0, "sampling"))?;
            let save: Vec<f64> = (1..=frames_per_block)
                .map(|i| 1.0 - i as f64 / frames_per_block as f64)
                .collect();
            let mut latent = Vec::new();
            self.flow_stiff(z, &stiff, false, &save, Some(&mut latent))?;
            frames.extend(self.flow_output(&latent));
            return Ok(frames);
        }
        let mut x = z.to_vec();
        let mut ode = Solver::new(solver.clone()).map_err(solve_error(0, "sampling"))?;
        for (k, block) in self.blocks.iter().enumerate().rev() {
            let times: Vec<T> = (1..=frames_per_block)
                .map(|i| T::one() - T::c(i as f64 / frames_per_block as f64))
                .collect();
            let mut ws = block.field.inference_workspace(n_batch, 0);
            let mut sys = Flow {
                field: &block.field,
                ws: &mut ws,
                t_end: block.t_end,
            };
            let sol = ode
                .solve(&mut sys, &x, T::one(), T::zero(), &SaveAt::times(times))
                .map_err(solve_error(k, "sampling"))?;
            frames.extend(self.flow_output(&sol.y));
            x = sol.y_final;
        }
        Ok(frames)
    }
}

/// Seed of the Hutchinson probes of chunk `i` in a parallel evaluation seeded `seed`.
fn chunk_rng(seed: u64, i: usize) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(i as u64);
    rng
}

impl<T: Real, F: Field<T>> Cnf<T, F> {
    /// [`Cnf::log_prob`] over chunks of at most `chunk` points, in parallel on rayon's
    /// pool; memory is bounded by the chunk size times the number of threads. Chunk `i`
    /// draws its probes from stream `i` of `seed`, so results do not depend on the
    /// number of threads.
    pub fn log_prob_par<X: Real>(
        &self,
        x: &[X],
        solver: &SolverConfig,
        trace: Trace,
        chunk: usize,
        seed: u64,
    ) -> Result<LogProb<T>, CnfError> {
        use rayon::prelude::*;
        self.n_points(x)?;
        self.prepare();
        let d = self.dim();
        let parts: Vec<LogProb<T>> = x
            .par_chunks(chunk.max(1) * d)
            .enumerate()
            .map(|(i, c)| self.log_prob(c, solver, trace, &mut chunk_rng(seed, i)))
            .collect::<Result<_, _>>()?;
        let mut out = LogProb {
            log_p: Vec::with_capacity(x.len() / d),
            z: Vec::with_capacity(x.len()),
            n_evals: 0,
        };
        for p in parts {
            out.log_p.extend(p.log_p);
            out.z.extend(p.z);
            out.n_evals += p.n_evals;
        }
        Ok(out)
    }

    /// [`Cnf::sample`] of `n` points over chunks of at most `chunk`, in parallel; chunk
    /// `i` draws its base points from stream `i` of `seed`.
    pub fn sample_par(
        &self,
        n: usize,
        solver: &SolverConfig,
        chunk: usize,
        seed: u64,
    ) -> Result<(Vec<f64>, Stats), CnfError> {
        use rayon::prelude::*;
        self.prepare();
        let chunk = chunk.max(1);
        let n_chunks = n.div_ceil(chunk);
        let parts: Vec<(Vec<f64>, Stats)> = (0..n_chunks)
            .into_par_iter()
            .map(|i| self.sample(chunk.min(n - i * chunk), solver, &mut chunk_rng(seed, i)))
            .collect::<Result<_, _>>()?;
        let mut x = Vec::with_capacity(n * self.dim());
        let mut stats = Stats::default();
        for (p, s) in parts {
            x.extend(p);
            stats.n_evals += s.n_evals;
            stats.n_accepted += s.n_accepted;
            stats.n_rejected += s.n_rejected;
        }
        Ok((x, stats))
    }
}

impl<T: Real, F: Field<T>> Cnf<T, F> {
    /// [`Cnf::log_prob`] over a stream of chunks, in bounded memory: chunks are read from
    /// `chunks` as they are needed, at most `window` of them are evaluated or waiting at
    /// a time (in parallel on rayon's pool, one chunk per task), and each result is handed
    /// to `sink` in input order as soon as the ones before it are done. Chunk `i` draws
    /// its Hutchinson probes from stream `i` of `seed`, so when every chunk but the last
    /// holds `chunk` points the results equal [`Cnf::log_prob_par`]`(x, …, chunk, seed)`
    /// whatever the number of threads. Returns the function evaluations of all solves.
    ///
    /// The first error (from `chunks`, a solve or `sink`) stops the stream: no further
    /// chunk is started and the error is returned once the running ones have finished.
    pub fn log_prob_stream<X, I, S, E>(
        &self,
        chunks: I,
        solver: &SolverConfig,
        trace: Trace,
        seed: u64,
        window: usize,
        mut sink: S,
    ) -> Result<usize, E>
    where
        X: Real,
        I: Iterator<Item = Result<Vec<X>, E>>,
        S: FnMut(LogProb<T>) -> Result<(), E>,
        E: From<CnfError> + Send,
    {
        trace.validate()?;
        let mut n_evals = 0;
        ordered_par_map(
            chunks,
            window,
            |i, x: Vec<X>| Ok(self.log_prob(&x, solver, trace, &mut chunk_rng(seed, i))?),
            |lp: LogProb<T>| {
                n_evals += lp.n_evals;
                sink(lp)
            },
        )?;
        Ok(n_evals)
    }

    /// [`Cnf::sample`] of `n` points in chunks of at most `chunk`, in bounded memory: at
    /// most `window` chunks are drawn or waiting at a time (in parallel, one per task) and
    /// each chunk's points (`≤ chunk × d`) go to `sink` in order. Chunk `i` draws its base
    /// points from stream `i` of `seed`, so the points equal [`Cnf::sample_par`]`(n, …,
    /// chunk, seed)` whatever the number of threads. Returns the solver statistics.
    pub fn sample_stream<S, E>(
        &self,
        n: usize,
        solver: &SolverConfig,
        chunk: usize,
        seed: u64,
        window: usize,
        mut sink: S,
    ) -> Result<Stats, E>
    where
        S: FnMut(Vec<f64>) -> Result<(), E>,
        E: From<CnfError> + Send,
    {
        let chunk = chunk.max(1);
        let sizes = (0..n.div_ceil(chunk)).map(|i| Ok(chunk.min(n - i * chunk)));
        let mut stats = Stats::default();
        ordered_par_map(
            sizes,
            window,
            |i, size: usize| Ok(self.sample(size, solver, &mut chunk_rng(seed, i))?),
            |(x, s): (Vec<f64>, Stats)| {
                stats.n_evals += s.n_evals;
                stats.n_accepted += s.n_accepted;
                stats.n_rejected += s.n_rejected;
                sink(x)
            },
        )?;
        Ok(stats)
    }
}

/// Applies `f(i, item)` to the items of `input` on rayon's pool, with at most `window`
/// items started but not yet handed to `sink`, and hands the results to `sink` in input
/// order. `input` is read and `sink` called on the calling thread, overlapping the work.
/// The first error stops the reading; a panic in `f` is resumed on the calling thread.
fn ordered_par_map<A, B, E, I, M, S>(input: I, window: usize, f: M, mut sink: S) -> Result<(), E>
where
    A: Send,
    B: Send,
    E: Send,
    I: Iterator<Item = Result<A, E>>,
    M: Fn(usize, A) -> Result<B, E> + Sync,
    S: FnMut(B) -> Result<(), E>,
{
    use std::collections::BTreeMap;
    use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;

    type Done<B, E> = (usize, std::thread::Result<Result<B, E>>);
    let window = window.max(1);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<Done<B, E>>();
    // On a pool thread (a caller inside `install`), waiting must run pool work, or a
    // one-thread pool would wait for itself.
    let receive = |rx: &mpsc::Receiver<Done<B, E>>| -> Done<B, E> {
        if rayon::current_thread_index().is_none() {
            return rx.recv().expect("every started task sends its result");
        }
        loop {
            if let Ok(done) = rx.try_recv() {
                return done;
            }
            if rayon::yield_now() != Some(rayon::Yield::Executed) {
                std::thread::yield_now();
            }
        }
    };
    rayon::in_place_scope_fifo(|scope| {
        let mut input = input.fuse();
        let mut waiting: BTreeMap<usize, std::thread::Result<Result<B, E>>> = BTreeMap::new();
        let (mut n_started, mut n_done) = (0usize, 0usize);
        let mut run = || -> Result<(), E> {
            loop {
                while n_started - n_done < window {
                    let Some(item) = input.next() else { break };
                    let a = item?;
                    let (tx, f, stop, i) = (tx.clone(), &f, &stop, n_started);
                    scope.spawn_fifo(move |_| {
                        if !stop.load(Ordering::Relaxed) {
                            let out = catch_unwind(AssertUnwindSafe(|| f(i, a)));
                            // The receiver outlives the scope, so the send cannot fail.
                            let _ = tx.send((i, out));
                        }
                    });
                    n_started += 1;
                }
                if n_done == n_started {
                    return Ok(());
                }
                while !waiting.contains_key(&n_done) {
                    let (i, out) = receive(&rx);
                    waiting.insert(i, out);
                }
                while let Some(out) = waiting.remove(&n_done) {
                    n_done += 1;
                    match out {
                        Ok(r) => sink(r?)?,
                        Err(panic) => {
                            stop.store(true, Ordering::Relaxed);
                            resume_unwind(panic)
                        }
                    }
                }
            }
        };
        let result = run();
        if result.is_err() {
            // Chunks not yet started are skipped; the scope waits for the running ones.
            stop.store(true, Ordering::Relaxed);
        }
        result
    })
}
