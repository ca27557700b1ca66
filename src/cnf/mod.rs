//! Continuous normalizing flows: the augmented dynamics, log-densities, sampling, and
//! the training gradient.
//!
//! ```text
//! dz/dt = f(z, t)        dΔ/dt = −tr(∂f/∂z)(z, t),   Δ(0) = 0
//! log p(x) = log N(z(T); 0, I) − Δ(T)
//! ```
//!
//! Each block integrates in rescaled time `τ = t/T ∈ [0, 1]` so that its end time `T`
//! is an ordinary parameter (learned, as in FFJORD, or fixed).

mod assignment;
mod dynamics;
mod field;
mod flow_matching;
mod grad;
mod model;
mod stiff;

pub use assignment::{linear_assignment, linear_assignment_with_duals};
pub use dynamics::{Augmented, Flow, GradEval, Layout};
pub use field::{Cotangents, Field, FieldOutputs, LinearField, LinearWorkspace, TraceMode};
pub use flow_matching::{
    fm_loss_and_grad, fm_loss_and_grad_in, fm_loss_and_grad_pairs, fm_pairs_many, ot_assignment, wasserstein2,
    Coupling, FlowMatching, FmPairs, FmScratch,
};
pub use grad::{
    loss_and_grad, loss_and_grad_in, loss_and_grad_par, loss_and_grad_par_in, GradMethod, GradScratch, LossConfig,
    LossGrad, TAPE_BUDGET,
};
pub use model::{log_normal, Block, Cnf, CnfError, LogProb, Trace};
