//! Fitting a [`SeriesModel`] to observed trajectories: a [`Problem`] for the generic loop.
//!
//! The loss is the weighted squared error over every observed value (NaN = not observed),
//! summed or averaged over the values in the current window:
//!
//! ```text
//! L = s Σ_trajectories Σ_i Σ_j w_j (y_j(t_i) − d_ij)²        s = 1 (sum) or 1/N_observed (mean)
//! ```
//!
//! Each trajectory starts from its own initial state: its first row (fixed), or a fitted
//! one (`learn_y0`, started from the first row, a missing value from the component's
//! mean). With **multiple shooting** (`shooting = K > 1`) each trajectory is cut into `K`
//! segments at observation rows; segment `k > 0` starts from its own fitted state `s_k`
//! (started from the data there) and a continuity penalty `λ s Σ_j (y_j(end of k−1) −
//! s_k,j)²` ties the pieces together, so a long oscillatory series is fitted without the
//! local minima of one long solve (Bock & Plitt 1984; the "multiple shooting" of
//! DiffEqFlux). With a **curriculum** the window of observations used grows over the
//! iterations (`t ≤ w₁`, then `t ≤ w₂`, …), which takes a model along a long series the
//! same way. Gradients are the [`sensitivity`](crate::sensitivity) module's: the
//! continuous adjoint with jumps at the observations, or backprop with checkpointing.
//!
//! Parameters, flat: `[fitted p, w, fitted y0 per trajectory, shooting states]`.

use rayon::prelude::*;

use super::data::Series;
use super::model::SeriesModel;
use crate::loss::Reduction;
use crate::ode::SolverConfig;
use crate::sensitivity::{gradient, Checkpointing, SensitivityError, SensitivityMethod};
use crate::train::Problem;

/// How a series is fitted.
#[derive(Clone, Debug, PartialEq)]
pub struct FitConfig {
    /// The solver of every forward (and continuous-adjoint) solve.
    pub solver: SolverConfig,
    /// How gradients are computed.
    pub gradient: SensitivityMethod,
    /// Sum or mean of the squared errors.
    pub reduction: Reduction,
    /// Weight of each component (all 1 when empty).
    pub weights: Vec<f64>,
    /// Fit each trajectory's initial state.
    pub learn_y0: bool,
    /// Segments per trajectory (1 = single shooting).
    pub shooting: usize,
    /// Weight `λ` of the continuity penalty of multiple shooting.
    pub continuity: f64,
    /// A stiff solver (TR-BDF2 or KVAERNO5) to use instead of `solver` for every solve;
    /// `gradient` then picks between its discrete adjoint
    /// ([`crate::stiff::esdirk_gradient`], for any backprop policy) and the continuous
    /// adjoint solved backwards with the same method ([`crate::stiff::adjoint_gradient`]).
    pub stiff: Option<crate::stiff::StiffConfig>,
}

impl FitConfig {
    /// Mean squared error, single shooting, fixed initial states, the given solver and
    /// gradient.
    pub fn new(solver: SolverConfig, gradient: SensitivityMethod) -> Self {
        FitConfig {
            solver,
            gradient,
            reduction: Reduction::Mean,
            weights: Vec::new(),
            learn_y0: false,
            shooting: 1,
            continuity: 10.0,
            stiff: None,
        }
    }
}

/// Why a fit cannot start or an iteration failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FitError {
    /// The data's states and the model's differ.
    #[error("the data has {data} states ({names}), the model {model}")]
    Dimension {
        /// The data's state count.
        data: usize,
        /// The model's.
        model: usize,
        /// The data's names.
        names: String,
    },
    /// A fixed initial state with a missing value.
    #[error(
        "trajectory '{id}' starts (line {line}) with no value for {name}: initial states must be observed, \
         or fitted (--learn-y0)"
    )]
    MissingInitial {
        /// Trajectory.
        id: String,
        /// Its first row's line.
        line: usize,
        /// The state.
        name: String,
    },
    /// A trajectory's solve or gradient failed.
    #[error("trajectory '{id}': {error}")]
    Solve {
        /// Trajectory.
        id: String,
        /// What failed.
        error: SensitivityError,
    },
    /// Both a curriculum and multiple shooting.
    #[error("a curriculum and multiple shooting are two ways to do the same thing: choose one")]
    CurriculumAndShooting,
    /// A mask of the wrong length.
    #[error("{what} has {got} entries, expected {expected}")]
    Length {
        /// Which.
        what: &'static str,
        /// Given.
        got: usize,
        /// Expected.
        expected: usize,
    },
}

/// What one iteration did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FitReport {
    /// Forward field evaluations, all trajectories.
    pub n_evals_forward: usize,
    /// Backward evaluations (VJPs and recomputed right-hand sides).
    pub n_evals_backward: usize,
    /// The window's end (`∞` when every observation is used).
    pub window: f64,
}

/// One trajectory's share of an iteration.
struct Part {
    loss: f64,
    grad_theta: Vec<f64>,
    grad_y0: Vec<f64>,
    grad_nodes: Vec<f64>,
    n_fwd: usize,
    n_bwd: usize,
}

/// A series model fitted to data (see the module docs).
#[derive(Clone, Debug)]
pub struct SeriesFit {
    /// The model (its parameters are the fit's current values).
    pub model: SeriesModel,
    /// Which mechanistic parameters are fitted (the others stay at their values).
    pub learn: Vec<bool>,
    /// The observations.
    pub data: Series,
    /// How.
    pub config: FitConfig,
    /// Each trajectory's initial state.
    pub y0: Vec<Vec<f64>>,
    /// Per trajectory, the boundary rows of its shooting segments (`0 = b₀ < … < b_K`).
    pub boundaries: Vec<Vec<usize>>,
    /// Per trajectory, the states at the starts of segments `1..K`, flat.
    pub nodes: Vec<Vec<f64>>,
    /// Curriculum: from 1-based iteration `i` on, use observations with `t ≤ w` (sorted
    /// by `i`; empty = every observation always).
    pub stages: Vec<(usize, f64)>,
}

impl SeriesFit {
    /// A fit of `model` to `data`; `learn` picks the fitted mechanistic parameters (all
    /// when `None`).
    pub fn new(
        model: SeriesModel,
        learn: Option<Vec<bool>>,
        data: Series,
        config: FitConfig,
    ) -> Result<Self, FitError> {
        let d = model.dim();
        if data.dim() != d {
            return Err(FitError::Dimension {
                data: data.dim(),
                model: d,
                names: data.names.join(", "),
            });
        }
        let n_p = model.mech_params.len();
        let learn = learn.unwrap_or_else(|| vec![true; n_p]);
        if learn.len() != n_p {
            return Err(FitError::Length {
                what: "the fitted-parameter mask",
                got: learn.len(),
                expected: n_p,
            });
        }
        if !config.weights.is_empty() && config.weights.len() != d {
            return Err(FitError::Length {
                what: "the component weights",
                got: config.weights.len(),
                expected: d,
            });
        }
        let mut y0 = Vec::new();
        let mut boundaries = Vec::new();
        let mut nodes = Vec::new();
        for tr in &data.trajectories {
            let first = tr.row(0, d);
            let mut start = first.to_vec();
            for j in 0..d {
                if start[j].is_nan() {
                    if !config.learn_y0 {
                        return Err(FitError::MissingInitial {
                            id: tr.id.clone(),
                            line: tr.lines[0],
                            name: data.names[j].clone(),
                        });
                    }
                    let seen: Vec<f64> = (0..tr.t.len())
                        .map(|i| tr.y[i * d + j])
                        .filter(|v| !v.is_nan())
                        .collect();
                    start[j] = if seen.is_empty() {
                        0.0
                    } else {
                        seen.iter().sum::<f64>() / seen.len() as f64
                    };
                }
            }
            let n_rows = tr.t.len();
            let k = config.shooting.max(1).min(n_rows.saturating_sub(1).max(1));
            let b: Vec<usize> = (0..=k).map(|s| (s * (n_rows - 1)).div_ceil(k)).collect();
            let mut node = Vec::new();
            let mut prev = start.clone();
            for &row in &b[1..k] {
                for j in 0..d {
                    let v = tr.y[row * d + j];
                    let v = if v.is_nan() { prev[j] } else { v };
                    node.push(v);
                    prev[j] = v;
                }
            }
            y0.push(start);
            boundaries.push(b);
            nodes.push(node);
        }
        Ok(SeriesFit {
            model,
            learn,
            data,
            config,
            y0,
            boundaries,
            nodes,
            stages: Vec::new(),
        })
    }

    /// Grows the window over `n_iters` iterations through `windows` (increasing ends),
    /// spending an equal share of the iterations on each.
    pub fn set_curriculum(&mut self, windows: &[f64], n_iters: usize) -> Result<(), FitError> {
        if self.config.shooting > 1 && !windows.is_empty() {
            return Err(FitError::CurriculumAndShooting);
        }
        let k = windows.len().max(1);
        self.stages = windows
            .iter()
            .enumerate()
            .map(|(s, &w)| (1 + s * n_iters / k, w))
            .collect();
        Ok(())
    }

    /// The window's end at 1-based iteration `iter` (`∞` for all observations).
    pub fn window_at(&self, iter: usize) -> f64 {
        self.stages
            .iter()
            .rev()
            .find(|(from, _)| *from <= iter)
            .map_or(f64::INFINITY, |&(_, w)| w)
    }

    /// Number of flat parameters.
    pub fn n_params(&self) -> usize {
        let d = self.model.dim();
        self.learn.iter().filter(|&&l| l).count()
            + self.model.n_weights()
            + if self.config.learn_y0 { d * self.y0.len() } else { 0 }
            + self.nodes.iter().map(Vec::len).sum::<usize>()
    }

    fn part(&self, k: usize, window: f64, scale: f64) -> Result<Part, FitError> {
        let tr = &self.data.trajectories[k];
        let d = self.model.dim();
        let n_theta = self.model.mech_params.len() + self.model.n_weights();
        let weights = &self.config.weights;
        let w = |j: usize| weights.get(j).copied().unwrap_or(1.0) * scale;
        let mut part = Part {
            loss: 0.0,
            grad_theta: vec![0.0; n_theta],
            grad_y0: vec![0.0; d],
            grad_nodes: vec![0.0; self.nodes[k].len()],
            n_fwd: 0,
            n_bwd: 0,
        };
        let n_rows = tr.t.iter().take_while(|&&t| t <= window).count();
        let b = &self.boundaries[k];
        let full = n_rows == tr.t.len();
        // A partial window is one segment; nodes are used only with the whole series.
        let bounds: Vec<usize> = if full {
            b.clone()
        } else {
            vec![0, n_rows.saturating_sub(1)]
        };
        let data_term = |row: usize, y: &[f64], g: &mut [f64]| -> f64 {
            let mut l = 0.0;
            for j in 0..d {
                let v = tr.y[row * d + j];
                if v.is_nan() {
                    g[j] = 0.0;
                } else {
                    let r = y[j] - v;
                    l += w(j) * r * r;
                    g[j] = 2.0 * w(j) * r;
                }
            }
            l
        };
        if n_rows == 0 {
            return Ok(part);
        }
        if n_rows == 1 {
            let mut g = vec![0.0; d];
            part.loss = data_term(0, &self.y0[k], &mut g);
            part.grad_y0 = g;
            return Ok(part);
        }
        let n_seg = bounds.len() - 1;
        let lambda = self.config.continuity * scale;
        for s in 0..n_seg {
            // A new system per solve: a taped one numbers its steps from the solve's start.
            let mut sys = match self.config.gradient {
                SensitivityMethod::Backprop(Checkpointing::All) if self.config.stiff.is_none() => {
                    self.model.system_taped()
                }
                _ => self.model.system(),
            };
            let (lo, hi) = (bounds[s], bounds[s + 1]);
            let start: &[f64] = if s == 0 {
                &self.y0[k]
            } else {
                &self.nodes[k][(s - 1) * d..s * d]
            };
            let next: Option<&[f64]> = (s + 1 < n_seg).then(|| &self.nodes[k][s * d..(s + 1) * d]);
            let mut gap_grad = vec![0.0; d];
            let mut loss = |i: usize, _t: f64, y: &[f64], g: &mut [f64]| -> f64 {
                let row = lo + i;
                match next {
                    Some(target) if row == hi => {
                        let mut l = 0.0;
                        for j in 0..d {
                            let r = y[j] - target[j];
                            l += lambda * r * r;
                            g[j] = 2.0 * lambda * r;
                            gap_grad[j] = -g[j];
                        }
                        l
                    }
                    _ => data_term(row, y, g),
                }
            };
            let sens = match &self.config.stiff {
                Some(stiff) => match self.config.gradient {
                    SensitivityMethod::Adjoint { .. } => {
                        crate::stiff::adjoint_gradient(&mut sys, start, &tr.t[lo..=hi], &mut loss, stiff, stiff)
                    }
                    SensitivityMethod::Backprop(_) => {
                        crate::stiff::esdirk_gradient(&mut sys, start, &tr.t[lo..=hi], &mut loss, stiff)
                    }
                },
                None => gradient(
                    &mut sys,
                    start,
                    &tr.t[lo..=hi],
                    &mut loss,
                    &self.config.solver,
                    self.config.gradient,
                ),
            }
            .map_err(|error| FitError::Solve {
                id: tr.id.clone(),
                error,
            })?;
            part.loss += sens.loss;
            part.n_fwd += sens.n_evals_forward;
            part.n_bwd += sens.n_evals_backward;
            for (a, b) in part.grad_theta.iter_mut().zip(&sens.grad_params) {
                *a += b;
            }
            let g0 = if s == 0 {
                &mut part.grad_y0[..]
            } else {
                &mut part.grad_nodes[(s - 1) * d..s * d]
            };
            for (a, b) in g0.iter_mut().zip(&sens.grad_y0) {
                *a += b;
            }
            if next.is_some() {
                for (a, b) in part.grad_nodes[s * d..(s + 1) * d].iter_mut().zip(&gap_grad) {
                    *a += b;
                }
            }
        }
        Ok(part)
    }

    /// The loss at the current parameters over observations with `t ≤ window`, with its
    /// gradient in the flat layout.
    pub fn loss_and_grad_at(&self, window: f64, grad: &mut Vec<f64>) -> Result<(f64, FitReport), FitError> {
        let d = self.model.dim();
        let scale = match self.config.reduction {
            Reduction::Sum => 1.0,
            Reduction::Mean => {
                let n: usize = self
                    .data
                    .trajectories
                    .iter()
                    .map(|tr| {
                        let rows = tr.t.iter().take_while(|&&t| t <= window).count();
                        tr.y[..rows * d].iter().filter(|v| !v.is_nan()).count()
                    })
                    .sum();
                1.0 / n.max(1) as f64
            }
        };
        let n_tr = self.data.trajectories.len();
        let parts: Vec<Result<Part, FitError>> = if n_tr > 1 {
            (0..n_tr).into_par_iter().map(|k| self.part(k, window, scale)).collect()
        } else {
            vec![self.part(0, window, scale)]
        };
        let n_mech = self.model.mech_params.len();
        let n_theta = n_mech + self.model.n_weights();
        let mut theta = vec![0.0; n_theta];
        let mut loss = 0.0;
        let mut report = FitReport {
            window,
            ..Default::default()
        };
        let mut tail = Vec::new();
        let mut node_grads = Vec::new();
        for p in parts {
            let p = p?;
            loss += p.loss;
            report.n_evals_forward += p.n_fwd;
            report.n_evals_backward += p.n_bwd;
            for (a, b) in theta.iter_mut().zip(&p.grad_theta) {
                *a += b;
            }
            if self.config.learn_y0 {
                tail.extend_from_slice(&p.grad_y0);
            }
            node_grads.extend_from_slice(&p.grad_nodes);
        }
        grad.clear();
        grad.extend(
            theta[..n_mech]
                .iter()
                .zip(&self.learn)
                .filter(|(_, &l)| l)
                .map(|(g, _)| *g),
        );
        grad.extend_from_slice(&theta[n_mech..]);
        grad.extend(tail);
        grad.extend(node_grads);
        Ok((loss, report))
    }

    /// The fitted model's solution for trajectory `k` from its initial state at `times`
    /// (dense output).
    pub fn predict(&self, k: usize, times: &[f64]) -> Result<Vec<f64>, crate::ode::SolveError> {
        match &self.config.stiff {
            Some(stiff) => self.model.predict_stiff(&self.y0[k], times, stiff),
            None => self.model.predict(&self.y0[k], times, &self.config.solver),
        }
    }
}

impl Problem for SeriesFit {
    type T = f64;
    type Report = FitReport;
    type Error = FitError;
    type Rng = rand_chacha::ChaCha8Rng;

    fn params(&self, out: &mut Vec<f64>) {
        out.clear();
        out.extend(
            self.model
                .mech_params
                .iter()
                .zip(&self.learn)
                .filter(|(_, &l)| l)
                .map(|(p, _)| *p),
        );
        if let Some(n) = &self.model.neural {
            out.extend_from_slice(n.mlp.params());
        }
        if self.config.learn_y0 {
            for y in &self.y0 {
                out.extend_from_slice(y);
            }
        }
        for n in &self.nodes {
            out.extend_from_slice(n);
        }
    }

    fn set_params(&mut self, flat: &[f64]) {
        let mut at = 0;
        for (p, &l) in self.model.mech_params.iter_mut().zip(&self.learn) {
            if l {
                *p = flat[at];
                at += 1;
            }
        }
        if let Some(n) = &mut self.model.neural {
            let m = n.mlp.n_params();
            n.mlp.params_mut().copy_from_slice(&flat[at..at + m]);
            at += m;
        }
        if self.config.learn_y0 {
            for y in &mut self.y0 {
                let d = y.len();
                y.copy_from_slice(&flat[at..at + d]);
                at += d;
            }
        }
        for n in &mut self.nodes {
            let m = n.len();
            n.copy_from_slice(&flat[at..at + m]);
            at += m;
        }
    }

    fn loss_and_grad(
        &mut self,
        iter: usize,
        _rng: &mut Self::Rng,
        grad: &mut Vec<f64>,
    ) -> Result<(f64, FitReport), FitError> {
        let window = self.window_at(iter);
        self.loss_and_grad_at(window, grad)
    }
}
