//! An ODE-Net classifier (Chen et al. 2018, §3): a linear lift, one continuous-depth
//! block, a linear read-out and the cross-entropy,
//!
//! ```text
//! h(0) = tanh(x W_inᵀ + b_in)          dh/dt = f(h; θ),  t ∈ [0, 1]
//! logits = h(1) W_outᵀ + b_out          L = (1/B) Σ_b (logsumexp(logits_b) − logits_b,y_b)
//! ```
//!
//! with `f` an [`Mlp`] that ignores time. [`Block::Residual`] replaces the ODE by one
//! discrete residual step `h(1) = h(0) + f(h(0); θ)` with the same network, the
//! comparison of the paper. Both Linear layers are initialised as PyTorch's
//! `nn.Linear` (weights and biases uniform on `±1/√fan_in`).
//!
//! **Gradient.** The read-out and the loss give `∂L/∂h(1)`, the ODE block's loss at
//! its last observation time; [`sensitivity::gradient`] returns `∂L/∂h(0)` and
//! `∂L/∂θ` (backprop through the solver or the continuous adjoint, as configured);
//! then `∂L/∂pre = ∂L/∂h(0) ⊙ (1 − h(0)²)` goes back through the lift by hand. With
//! [`Checkpointing::All`] the block keeps every stage's forward pass on a tape of
//! network workspaces (up to [`ClassifierConfig::tape_bytes`]), so the reverse pass
//! recomputes none of them; [`ClassifierScratch`] keeps the tape from one call to the
//! next.
//!
//! **Parts.** With `n_parts > 1` the batch is cut into that many contiguous parts, each
//! solved as its own system (its own step sizes) on rayon, and the parts' losses and
//! gradients are summed in part order: the result depends on `n_parts`, not on the
//! number of threads.
//!
//! The flat parameter vector is laid out `(W_in, b_in, θ, W_out, b_out)`, `W` row-major
//! `n_out × n_in`.
//!
//! ```
//! use cnflow::classifier::{two_spirals, Block, Classifier, ClassifierConfig};
//! use rand::SeedableRng;
//!
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let (x, labels) = two_spirals(16, 0.02, &mut rng);
//! let config = ClassifierConfig::new(8, &[8], Block::Ode)?;
//! let model = Classifier::new(config, &mut rng)?;
//! let mut grad = vec![0.0; model.n_params()];
//! let eval = model.loss_and_grad(&x, &labels, &mut grad)?;
//! assert!(eval.loss > 0.0 && eval.n_evals_forward > 0);
//! # Ok::<(), cnflow::classifier::ClassifierError>(())
//! ```

mod block;
mod linear;
mod spirals;

use rand::Rng;
use rayon::prelude::*;

pub use block::ClassifierScratch;
use block::{BlockScratch, FieldSystem};
use linear::Linear;
pub use spirals::two_spirals;

use crate::loss::cross_entropy;
use crate::nn::{fast_tanh_f64, Activation, Cotangents, LayerKind, Mlp, MlpConfig, NnError};
use crate::ode::{integrate, Method, SaveAt, SolveError, SolverConfig};
use crate::sensitivity::{self, Checkpointing, SensitivityError, SensitivityMethod};

/// Dimension of the inputs (points in the plane).
pub const N_INPUTS: usize = 2;

/// What sits between the lift and the read-out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// `dh/dt = f(h; θ)` on `[0, 1]`.
    Ode,
    /// `h + f(h; θ)`, one residual step.
    Residual,
}

/// Errors of the classifier: inconsistent settings, data of the wrong shape, failed
/// solves.
#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    /// A size setting was zero.
    #[error("{name} must be at least {min}, got {got}")]
    Setting {
        /// The setting.
        name: &'static str,
        /// Its smallest allowed value.
        min: usize,
        /// The value given.
        got: usize,
    },
    /// The inputs were not `B × 2` with one label per row, or the batch was empty.
    #[error("inputs have {n_values} values and there are {n_labels} labels; expected B × {N_INPUTS} values and B ≥ 1 labels")]
    Shape {
        /// Values in the input buffer.
        n_values: usize,
        /// Labels given.
        n_labels: usize,
    },
    /// A label was not a class index.
    #[error("label {label} at row {row} is not one of the {n_classes} classes 0..{n_classes}")]
    Label {
        /// The row.
        row: usize,
        /// Its label.
        label: usize,
        /// Classes of the model.
        n_classes: usize,
    },
    /// More parts than points.
    #[error("cannot cut a batch of {n_batch} points into {n_parts} parts; use n_parts ≤ the batch size")]
    Parts {
        /// Parts asked for.
        n_parts: usize,
        /// Batch size.
        n_batch: usize,
    },
    /// A flat parameter vector of the wrong length.
    #[error("parameter vector has length {got}, the classifier needs {expected}")]
    ParamLength {
        /// Length needed.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// The field network refused its configuration or a buffer.
    #[error("field network: {0}")]
    Nn(#[from] NnError),
    /// The gradient's solves failed.
    #[error("gradient of the ODE block: {0}")]
    Sensitivity(#[from] SensitivityError),
    /// A prediction's solve failed.
    #[error("prediction solve of the ODE block: {0}")]
    Solve(#[from] SolveError),
}

/// The classifier's architecture, solver and gradient method.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassifierConfig {
    /// Width of the hidden state `h`.
    pub width: usize,
    /// Hidden widths of the field network `width → hidden… → width` (tanh between).
    pub hidden: Vec<usize>,
    /// Number of classes.
    pub n_classes: usize,
    /// ODE or residual block.
    pub block: Block,
    /// Solver of the ODE block (training and prediction).
    pub solver: SolverConfig,
    /// Gradient of the ODE block.
    pub gradient: SensitivityMethod,
    /// Parts a batch is cut into and solved in parallel (1 = one solve).
    pub n_parts: usize,
    /// Most bytes the tape of forward passes may hold per part under
    /// [`Checkpointing::All`]; past it the reverse pass recomputes each stage's forward
    /// pass (the same gradient, bit for bit).
    pub tape_bytes: usize,
}

impl ClassifierConfig {
    /// Two classes, the field `width → hidden… → width` with tanh, Dopri5 at
    /// `rtol = atol = 1e-3`, backprop through the solver keeping every stage, one part,
    /// a tape of up to 1 GiB. Checks the sizes.
    pub fn new(width: usize, hidden: &[usize], block: Block) -> Result<Self, ClassifierError> {
        let config = ClassifierConfig {
            width,
            hidden: hidden.to_vec(),
            n_classes: 2,
            block,
            solver: SolverConfig::adaptive(Method::Dopri5, 1e-3, 1e-3),
            gradient: SensitivityMethod::Backprop(Checkpointing::All),
            n_parts: 1,
            tape_bytes: 1 << 30,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting (the solver's included).
    pub fn validate(&self) -> Result<(), ClassifierError> {
        for (name, min, got) in [
            ("width", 1, self.width),
            ("n_classes", 2, self.n_classes),
            ("n_parts", 1, self.n_parts),
        ] {
            if got < min {
                return Err(ClassifierError::Setting { name, min, got });
            }
        }
        self.field_config()?;
        self.solver.validate()?;
        Ok(())
    }

    fn field_config(&self) -> Result<MlpConfig, NnError> {
        MlpConfig::new(self.width, &self.hidden, LayerKind::Ignore, Activation::Tanh)
    }
}

/// The loss of a batch, the fraction it got right and the work done.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassifierEval {
    /// Mean cross-entropy, nats.
    pub loss: f64,
    /// Points whose largest logit is their label's (ties count as wrong).
    pub n_correct: usize,
    /// Field evaluations of the forward solves, summed over the parts (1 per part for
    /// the residual block).
    pub n_evals_forward: usize,
    /// Field evaluations of the backward pass (VJPs plus recomputed right-hand sides),
    /// summed over the parts.
    pub n_evals_backward: usize,
}

/// The ODE-Net classifier: lift, block, read-out (see the module docs).
#[derive(Clone, Debug)]
pub struct Classifier {
    config: ClassifierConfig,
    lift: Linear,
    field: Mlp<f64>,
    readout: Linear,
}

impl Classifier {
    /// A classifier with PyTorch's default initialisation, drawn from `rng` in the order
    /// lift, field, read-out.
    pub fn new<R: Rng + ?Sized>(config: ClassifierConfig, rng: &mut R) -> Result<Self, ClassifierError> {
        config.validate()?;
        let lift = Linear::new(N_INPUTS, config.width, rng);
        let field = Mlp::new(config.field_config()?, rng, false);
        let readout = Linear::new(config.width, config.n_classes, rng);
        Ok(Classifier {
            config,
            lift,
            field,
            readout,
        })
    }

    /// The settings.
    pub fn config(&self) -> &ClassifierConfig {
        &self.config
    }

    /// Changes the gradient method, solver or parts (the architecture stays).
    pub fn set_solve(
        &mut self,
        solver: SolverConfig,
        gradient: SensitivityMethod,
        n_parts: usize,
    ) -> Result<(), ClassifierError> {
        let mut config = self.config.clone();
        (config.solver, config.gradient, config.n_parts) = (solver, gradient, n_parts);
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// The field network `f`.
    pub fn field(&self) -> &Mlp<f64> {
        &self.field
    }

    /// Length of the flat parameter vector.
    pub fn n_params(&self) -> usize {
        self.lift.n_params() + self.field.n_params() + self.readout.n_params()
    }

    /// The flat parameters `(W_in, b_in, θ, W_out, b_out)` into `out` (cleared first).
    pub fn params(&self, out: &mut Vec<f64>) {
        out.clear();
        out.extend_from_slice(&self.lift.params);
        out.extend_from_slice(self.field.params());
        out.extend_from_slice(&self.readout.params);
    }

    /// Sets the parameters from a flat vector laid out as [`Classifier::params`].
    pub fn set_params(&mut self, flat: &[f64]) -> Result<(), ClassifierError> {
        if flat.len() != self.n_params() {
            return Err(ClassifierError::ParamLength {
                expected: self.n_params(),
                got: flat.len(),
            });
        }
        let (lift, rest) = flat.split_at(self.lift.n_params());
        let (theta, readout) = rest.split_at(self.field.n_params());
        self.lift.params.copy_from_slice(lift);
        self.field.params_mut().copy_from_slice(theta);
        self.readout.params.copy_from_slice(readout);
        Ok(())
    }

    fn check_batch(&self, x: &[f64], labels: &[usize]) -> Result<(), ClassifierError> {
        if labels.is_empty() || x.len() != labels.len() * N_INPUTS {
            return Err(ClassifierError::Shape {
                n_values: x.len(),
                n_labels: labels.len(),
            });
        }
        let n_classes = self.config.n_classes;
        if let Some((row, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= n_classes) {
            return Err(ClassifierError::Label { row, label, n_classes });
        }
        Ok(())
    }

    /// The rows of each part: `n_parts` contiguous ranges, the first ones a row longer.
    fn parts(&self, n_batch: usize) -> Vec<std::ops::Range<usize>> {
        let n = self.config.n_parts;
        let (q, r) = (n_batch / n, n_batch % n);
        let mut start = 0;
        (0..n)
            .map(|p| {
                let len = q + usize::from(p < r);
                start += len;
                start - len..start
            })
            .collect()
    }

    /// The mean cross-entropy of the batch `x` (`B × 2`, row-major) against `labels`,
    /// and its gradient with respect to the flat parameters ADDED into `grad`.
    /// Allocates its workspaces; [`Classifier::loss_and_grad_in`] reuses them.
    pub fn loss_and_grad(
        &self,
        x: &[f64],
        labels: &[usize],
        grad: &mut [f64],
    ) -> Result<ClassifierEval, ClassifierError> {
        self.loss_and_grad_in(x, labels, grad, &mut ClassifierScratch::default())
    }

    /// [`Classifier::loss_and_grad`] with the workspaces kept in `scratch` between calls.
    pub fn loss_and_grad_in(
        &self,
        x: &[f64],
        labels: &[usize],
        grad: &mut [f64],
        scratch: &mut ClassifierScratch,
    ) -> Result<ClassifierEval, ClassifierError> {
        self.check_batch(x, labels)?;
        if self.config.n_parts > labels.len() {
            return Err(ClassifierError::Parts {
                n_parts: self.config.n_parts,
                n_batch: labels.len(),
            });
        }
        if grad.len() != self.n_params() {
            return Err(ClassifierError::ParamLength {
                expected: self.n_params(),
                got: grad.len(),
            });
        }
        let n_batch = labels.len();
        let parts = self.parts(n_batch);
        scratch.parts.resize_with(parts.len(), BlockScratch::default);
        let run = |(rows, scratch): (&std::ops::Range<usize>, &mut BlockScratch)| {
            let mut g = vec![0.0; self.n_params()];
            let scale = rows.len() as f64 / n_batch as f64;
            let x_part = &x[rows.start * N_INPUTS..rows.end * N_INPUTS];
            self.part_loss_and_grad(x_part, &labels[rows.clone()], scale, &mut g, scratch)
                .map(|eval| (eval, g))
        };
        let results: Vec<_> = if parts.len() == 1 {
            vec![run((&parts[0], &mut scratch.parts[0]))]
        } else {
            parts.par_iter().zip(scratch.parts.par_iter_mut()).map(run).collect()
        };
        let mut total = ClassifierEval {
            loss: 0.0,
            n_correct: 0,
            n_evals_forward: 0,
            n_evals_backward: 0,
        };
        for result in results {
            let (eval, g) = result?;
            total.loss += eval.loss;
            total.n_correct += eval.n_correct;
            total.n_evals_forward += eval.n_evals_forward;
            total.n_evals_backward += eval.n_evals_backward;
            for (a, b) in grad.iter_mut().zip(&g) {
                *a += b;
            }
        }
        Ok(total)
    }

    /// One part: its loss times `scale` (its share of the batch) and the gradient of
    /// that, added into `grad`.
    fn part_loss_and_grad(
        &self,
        x: &[f64],
        labels: &[usize],
        scale: f64,
        grad: &mut [f64],
        scratch: &mut BlockScratch,
    ) -> Result<ClassifierEval, ClassifierError> {
        let (b, width) = (labels.len(), self.config.width);
        let mut h0 = vec![0.0; b * width];
        self.lift.forward(x, &mut h0);
        h0.iter_mut().for_each(|v| *v = fast_tanh_f64(*v));
        let (g_lift, rest) = grad.split_at_mut(self.lift.n_params());
        let (g_theta, g_readout) = rest.split_at_mut(self.field.n_params());
        let mut n_correct = 0;
        let mut logits = vec![0.0; b * self.config.n_classes];
        let mut g_logits = vec![0.0; b * self.config.n_classes];
        let mut head = |h1: &[f64], g_h1: &mut [f64]| {
            let (loss, correct) = self.head(h1, labels, scale, &mut logits, &mut g_logits, g_readout, g_h1);
            n_correct = correct;
            loss
        };
        let mut g_h0 = vec![0.0; b * width];
        let (loss, n_evals_forward, n_evals_backward) = match self.config.block {
            Block::Ode => {
                let taped = self.config.gradient == SensitivityMethod::Backprop(Checkpointing::All);
                let tape_bytes = taped.then_some(self.config.tape_bytes);
                let mut system = FieldSystem::new(&self.field, b, tape_bytes, scratch)?;
                let mut loss = |i: usize, _t: f64, y: &[f64], g: &mut [f64]| if i == 0 { 0.0 } else { head(y, g) };
                let s = sensitivity::gradient(
                    &mut system,
                    &h0,
                    &[0.0, 1.0],
                    &mut loss,
                    &self.config.solver,
                    self.config.gradient,
                )?;
                for (a, v) in g_theta.iter_mut().zip(&s.grad_params) {
                    *a += v;
                }
                g_h0.copy_from_slice(&s.grad_y0);
                (s.loss, s.n_evals_forward, s.n_evals_backward)
            }
            Block::Residual => {
                let ws = scratch.workspace(&self.field, b)?;
                let mut h1 = vec![0.0; b * width];
                self.field.forward_into(0.0, &h0, ws, &mut h1)?;
                h1.iter_mut().zip(&h0).for_each(|(a, v)| *a += v);
                let mut g_h1 = vec![0.0; b * width];
                let loss = head(&h1, &mut g_h1);
                let cot = Cotangents {
                    f: Some(&g_h1),
                    ..Default::default()
                };
                self.field.vjp_into(ws, &cot, &mut g_h0, g_theta)?;
                g_h0.iter_mut().zip(&g_h1).for_each(|(a, v)| *a += v);
                (loss, 1, 1)
            }
        };
        for (g, &h) in g_h0.iter_mut().zip(&h0) {
            *g *= 1.0 - h * h;
        }
        self.lift.backward(x, &g_h0, g_lift, None);
        Ok(ClassifierEval {
            loss,
            n_correct,
            n_evals_forward,
            n_evals_backward,
        })
    }

    /// The read-out and the loss of one part: returns `scale · L` and the points right;
    /// writes `∂(scale · L)/∂h(1)` into `g_h1` and adds the read-out's gradient into
    /// `g_readout`.
    #[allow(clippy::too_many_arguments)]
    fn head(
        &self,
        h1: &[f64],
        labels: &[usize],
        scale: f64,
        logits: &mut [f64],
        g_logits: &mut [f64],
        g_readout: &mut [f64],
        g_h1: &mut [f64],
    ) -> (f64, usize) {
        self.readout.forward(h1, logits);
        let loss = cross_entropy(logits, labels, self.config.n_classes, g_logits);
        g_logits.iter_mut().for_each(|g| *g *= scale);
        self.readout.backward(h1, g_logits, g_readout, Some(g_h1));
        (scale * loss, count_correct(logits, labels, self.config.n_classes))
    }

    /// The logits (`B × n_classes`) of the points `x` (`B × 2`), by one solve of the
    /// whole batch with the configured solver.
    pub fn logits(&self, x: &[f64]) -> Result<Vec<f64>, ClassifierError> {
        let b = x.len() / N_INPUTS;
        if b == 0 || x.len() != b * N_INPUTS {
            return Err(ClassifierError::Shape {
                n_values: x.len(),
                n_labels: b,
            });
        }
        let width = self.config.width;
        let mut h0 = vec![0.0; b * width];
        self.lift.forward(x, &mut h0);
        h0.iter_mut().for_each(|v| *v = fast_tanh_f64(*v));
        let h1 = match self.config.block {
            Block::Ode => {
                let mut scratch = BlockScratch::default();
                let mut system = FieldSystem::new(&self.field, b, None, &mut scratch)?;
                integrate(&mut system, &h0, 0.0, 1.0, &self.config.solver, &SaveAt::default())?.y_final
            }
            Block::Residual => {
                let mut h1 = self.field.forward(0.0, &h0)?;
                h1.iter_mut().zip(&h0).for_each(|(a, v)| *a += v);
                h1
            }
        };
        let mut logits = vec![0.0; b * self.config.n_classes];
        self.readout.forward(&h1, &mut logits);
        Ok(logits)
    }

    /// The fraction of the points `x` whose predicted class is their label.
    pub fn accuracy(&self, x: &[f64], labels: &[usize]) -> Result<f64, ClassifierError> {
        self.check_batch(x, labels)?;
        let logits = self.logits(x)?;
        Ok(count_correct(&logits, labels, self.config.n_classes) as f64 / labels.len() as f64)
    }
}

/// Rows whose label's logit is strictly the largest.
fn count_correct(logits: &[f64], labels: &[usize], n_classes: usize) -> usize {
    logits
        .chunks_exact(n_classes)
        .zip(labels)
        .filter(|(z, &y)| z.iter().enumerate().all(|(c, &v)| c == y || v < z[y]))
        .count()
}
