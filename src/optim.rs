//! Optimizers behind one trait ([`Optimizer`]), each as PyTorch defines it:
//!
//! ```text
//! Adam (Kingma & Ba 2015), L2 decay:   g ← g + λθ;  m ← β1 m + (1 − β1) g;  v ← β2 v + (1 − β2) g²
//!                                      θ ← θ − lr · (m / (1 − β1^t)) / (sqrt(v / (1 − β2^t)) + ε)
//! AdamW (Loshchilov & Hutter 2019):    θ ← θ (1 − lr λ), then Adam's step without λ in g
//! RMSprop (Hinton 2012):               g ← g + λθ;  v ← α v + (1 − α) g²;  b ← μ b + g / (sqrt v + ε);  θ ← θ − lr b
//! SGD with momentum (Polyak 1964):     g ← g + λθ;  b ← μ b + g (b = g at the first step);
//!                                      θ ← θ − lr (g + μ b) with Nesterov, θ − lr b without
//! ```
//!
//! The optimizer knows nothing of ODEs: it sees a flat parameter vector and its gradient.
//! [`OptimizerConfig`] names a choice, [`OptimizerState`] carries its moments (and is
//! what a checkpoint saves).

use crate::Real;

/// A gradient-based optimizer on a flat parameter vector.
pub trait Optimizer {
    /// One update of `params` with gradient `grad` at learning rate `lr` (a schedule's
    /// choice; [`Optimizer::lr`] is the configured one).
    fn step_with_lr<T: Real>(&mut self, params: &mut [T], grad: &[T], lr: f64);
    /// The configured learning rate.
    fn lr(&self) -> f64;
    /// Updates taken.
    fn n_steps(&self) -> u64;
}

/// A setting out of range.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{name} = {value} {need}")]
pub struct OptimError {
    /// The setting.
    pub name: &'static str,
    /// Its value.
    pub value: f64,
    /// What it must be.
    pub need: &'static str,
}

fn check(ok: bool, name: &'static str, value: f64, need: &'static str) -> Result<(), OptimError> {
    if ok {
        Ok(())
    } else {
        Err(OptimError { name, value, need })
    }
}

fn check_lr_decay(lr: f64, weight_decay: f64) -> Result<(), OptimError> {
    check(
        lr > 0.0 && lr.is_finite(),
        "learning rate",
        lr,
        "must be a finite number > 0",
    )?;
    check(
        weight_decay >= 0.0 && weight_decay.is_finite(),
        "weight decay",
        weight_decay,
        "must be a finite number ≥ 0",
    )
}

/// Adam's settings.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay `β1`.
    pub beta1: f64,
    /// Second-moment decay `β2`.
    pub beta2: f64,
    /// `ε` added to the root of the second moment.
    pub eps: f64,
    /// L2 weight decay `λ` (added to the gradient).
    pub weight_decay: f64,
}

impl AdamConfig {
    /// Adam with learning rate `lr`, weight decay `weight_decay` and the usual
    /// `β1 = 0.9, β2 = 0.999, ε = 1e-8`.
    pub fn new(lr: f64, weight_decay: f64) -> Self {
        AdamConfig {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    }

    /// Checks the settings; the error names the bad one.
    pub fn validate(&self) -> Result<(), OptimError> {
        check_lr_decay(self.lr, self.weight_decay)?;
        let in_unit = |b: f64| (0.0..1.0).contains(&b);
        check(in_unit(self.beta1), "Adam beta1", self.beta1, "must lie in [0, 1)")?;
        check(in_unit(self.beta2), "Adam beta2", self.beta2, "must lie in [0, 1)")?;
        check(
            self.eps > 0.0 && self.eps.is_finite(),
            "Adam eps",
            self.eps,
            "must be > 0",
        )
    }
}

/// Adam's state: the moments and the step count (serializable, for resuming).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adam {
    /// Settings.
    pub config: AdamConfig,
    /// First moments.
    pub m: Vec<f64>,
    /// Second moments.
    pub v: Vec<f64>,
    /// Steps taken.
    pub n_steps: u64,
}

impl Adam {
    /// Fresh state for `n_params` params.
    pub fn new(config: AdamConfig, n_params: usize) -> Self {
        Adam {
            config,
            m: vec![0.0; n_params],
            v: vec![0.0; n_params],
            n_steps: 0,
        }
    }

    /// One update of `params` with gradient `grad` (same length as the state).
    pub fn step<T: Real>(&mut self, params: &mut [T], grad: &[T]) {
        self.step_with_lr(params, grad, self.config.lr);
    }

    /// [`Adam::step`] with learning rate `lr` instead of the configured one (for a
    /// schedule).
    pub fn step_with_lr<T: Real>(&mut self, params: &mut [T], grad: &[T], lr: f64) {
        adam_step(
            &self.config,
            &mut self.m,
            &mut self.v,
            &mut self.n_steps,
            params,
            grad,
            lr,
            false,
        );
    }
}

impl Optimizer for Adam {
    fn step_with_lr<T: Real>(&mut self, params: &mut [T], grad: &[T], lr: f64) {
        Adam::step_with_lr(self, params, grad, lr)
    }
    fn lr(&self) -> f64 {
        self.config.lr
    }
    fn n_steps(&self) -> u64 {
        self.n_steps
    }
}

/// Adam's update; `decoupled` applies the weight decay to θ directly (AdamW).
#[allow(clippy::too_many_arguments)]
fn adam_step<T: Real>(
    c: &AdamConfig,
    m: &mut [f64],
    v: &mut [f64],
    n_steps: &mut u64,
    params: &mut [T],
    grad: &[T],
    lr: f64,
    decoupled: bool,
) {
    assert_eq!(params.len(), m.len(), "Adam: params length changed");
    assert_eq!(grad.len(), m.len(), "Adam: gradient length differs from params");
    *n_steps += 1;
    let bias1 = 1.0 - c.beta1.powi(*n_steps as i32);
    let bias2 = 1.0 - c.beta2.powi(*n_steps as i32);
    let step = AdamStep {
        c,
        bias1,
        bias2,
        lr,
        decoupled,
    };
    // Each parameter's update is on its own, so slices of them may go to different
    // threads with the same result (a division and a root per parameter take a few
    // nanoseconds: 29 µs a step for a 3×64 field, most of a flow-matching step's serial part).
    let n = params.len();
    let shares = crate::par::helpers() + 1;
    if n < ADAM_PAR_MIN || shares == 1 {
        adam_slice(&step, m, v, params, grad);
        return;
    }
    let chunk = n.div_ceil(shares);
    type Slices<'a, T> = (&'a mut [f64], &'a mut [f64], &'a mut [T], &'a [T]);
    let parts: Vec<std::sync::Mutex<Slices<'_, T>>> = m
        .chunks_mut(chunk)
        .zip(v.chunks_mut(chunk))
        .zip(params.chunks_mut(chunk))
        .zip(grad.chunks(chunk))
        .map(|(((m, v), p), g)| std::sync::Mutex::new((m, v, p, g)))
        .collect();
    crate::par::for_each_if_warm(parts.len(), &|k| {
        let mut guard = parts[k].lock().unwrap_or_else(|e| e.into_inner());
        let (m, v, p, g) = &mut *guard;
        adam_slice(&step, m, v, p, g);
    });
}

/// Parameters from which an Adam step is shared out over the threads (one share each).
const ADAM_PAR_MIN: usize = 4096;

/// Adam's update of one slice of the parameters, on the widest vectors the CPU has (the
/// same arithmetic in every build: IEEE division and root, no fused multiply-adds).
fn adam_slice<T: Real>(step: &AdamStep<'_>, m: &mut [f64], v: &mut [f64], params: &mut [T], grad: &[T]) {
    #[cfg(target_arch = "x86_64")]
    if crate::nn::has_avx2() {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { adam_slice_avx2(step, m, v, params, grad) };
    }
    adam_slice_portable(step, m, v, params, grad)
}

/// [`adam_slice`] built for AVX2: four divisions and roots at a time, which halves the
/// step against SSE2's two (28 against 14 µs for a 3×64 field's 8836 parameters, on one
/// core of an AMD EPYC; AVX-512 gained 1 µs more, its divider being no wider).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn adam_slice_avx2<T: Real>(step: &AdamStep<'_>, m: &mut [f64], v: &mut [f64], params: &mut [T], grad: &[T]) {
    adam_slice_portable(step, m, v, params, grad)
}

#[inline(always)]
fn adam_slice_portable<T: Real>(step: &AdamStep<'_>, m: &mut [f64], v: &mut [f64], params: &mut [T], grad: &[T]) {
    match step.decoupled {
        true => adam_loop::<T, true>(step, m, v, params, grad),
        false => adam_loop::<T, false>(step, m, v, params, grad),
    }
}

/// The settings of one Adam update.
struct AdamStep<'a> {
    c: &'a AdamConfig,
    bias1: f64,
    bias2: f64,
    lr: f64,
    decoupled: bool,
}

/// Adam's update with the kind of weight decay fixed and its settings in locals, so
/// that the loop has no branch. (Its cost is the three divisions and the root per
/// parameter.)
#[inline(always)]
fn adam_loop<T: Real, const DECOUPLED: bool>(
    s: &AdamStep<'_>,
    m: &mut [f64],
    v: &mut [f64],
    params: &mut [T],
    grad: &[T],
) {
    let (beta1, beta2, eps, wd) = (s.c.beta1, s.c.beta2, s.c.eps, s.c.weight_decay);
    let (bias1, bias2, lr) = (s.bias1, s.bias2, s.lr);
    let n = params.len();
    let (m, v, grad) = (&mut m[..n], &mut v[..n], &grad[..n]);
    for i in 0..n {
        let mut pf = params[i].f64();
        let g = if DECOUPLED {
            pf *= 1.0 - lr * wd;
            grad[i].f64()
        } else {
            grad[i].f64() + wd * pf
        };
        let mi = beta1 * m[i] + (1.0 - beta1) * g;
        let vi = beta2 * v[i] + (1.0 - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        let update = lr * (mi / bias1) / ((vi / bias2).sqrt() + eps);
        params[i] = T::c(pf - update);
    }
}

/// AdamW: Adam with decoupled weight decay (its `weight_decay` multiplies θ by
/// `1 − lr λ` each step instead of entering the gradient).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamW {
    /// Settings (the same fields as Adam's).
    pub config: AdamConfig,
    /// First moments.
    pub m: Vec<f64>,
    /// Second moments.
    pub v: Vec<f64>,
    /// Steps taken.
    pub n_steps: u64,
}

impl Optimizer for AdamW {
    fn step_with_lr<T: Real>(&mut self, params: &mut [T], grad: &[T], lr: f64) {
        adam_step(
            &self.config,
            &mut self.m,
            &mut self.v,
            &mut self.n_steps,
            params,
            grad,
            lr,
            true,
        );
    }
    fn lr(&self) -> f64 {
        self.config.lr
    }
    fn n_steps(&self) -> u64 {
        self.n_steps
    }
}

/// RMSprop's settings (PyTorch's defaults: `α = 0.99`, `ε = 1e-8`, no momentum).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RmsPropConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the squared-gradient average `α`.
    pub alpha: f64,
    /// `ε` added to its root.
    pub eps: f64,
    /// Momentum `μ` (0 = none).
    pub momentum: f64,
    /// L2 weight decay `λ` (added to the gradient).
    pub weight_decay: f64,
}

impl RmsPropConfig {
    /// RMSprop at `lr` with PyTorch's other defaults.
    pub fn new(lr: f64) -> Self {
        RmsPropConfig {
            lr,
            alpha: 0.99,
            eps: 1e-8,
            momentum: 0.0,
            weight_decay: 0.0,
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), OptimError> {
        check_lr_decay(self.lr, self.weight_decay)?;
        check(
            (0.0..1.0).contains(&self.alpha),
            "RMSprop alpha",
            self.alpha,
            "must lie in [0, 1)",
        )?;
        check(
            self.eps > 0.0 && self.eps.is_finite(),
            "RMSprop eps",
            self.eps,
            "must be > 0",
        )?;
        check(
            (0.0..1.0).contains(&self.momentum),
            "momentum",
            self.momentum,
            "must lie in [0, 1)",
        )
    }
}

/// RMSprop's state.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RmsProp {
    /// Settings.
    pub config: RmsPropConfig,
    /// Average of the squared gradients.
    pub v: Vec<f64>,
    /// Momentum buffer.
    pub buf: Vec<f64>,
    /// Steps taken.
    pub n_steps: u64,
}

impl Optimizer for RmsProp {
    fn step_with_lr<T: Real>(&mut self, params: &mut [T], grad: &[T], lr: f64) {
        assert_eq!(params.len(), self.v.len(), "RMSprop: params length changed");
        let c = self.config;
        self.n_steps += 1;
        for (((p, &g), v), b) in params
            .iter_mut()
            .zip(grad)
            .zip(self.v.iter_mut())
            .zip(self.buf.iter_mut())
        {
            let pf = p.f64();
            let g = g.f64() + c.weight_decay * pf;
            *v = c.alpha * *v + (1.0 - c.alpha) * g * g;
            let step = g / (v.sqrt() + c.eps);
            let update = if c.momentum > 0.0 {
                *b = c.momentum * *b + step;
                *b
            } else {
                step
            };
            *p = T::c(pf - lr * update);
        }
    }
    fn lr(&self) -> f64 {
        self.config.lr
    }
    fn n_steps(&self) -> u64 {
        self.n_steps
    }
}

/// SGD's settings.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum `μ` (0 = plain SGD).
    pub momentum: f64,
    /// Nesterov's form of momentum.
    pub nesterov: bool,
    /// L2 weight decay `λ` (added to the gradient).
    pub weight_decay: f64,
}

impl SgdConfig {
    /// SGD at `lr` with momentum `momentum`.
    pub fn new(lr: f64, momentum: f64) -> Self {
        SgdConfig {
            lr,
            momentum,
            nesterov: false,
            weight_decay: 0.0,
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), OptimError> {
        check_lr_decay(self.lr, self.weight_decay)?;
        check(
            (0.0..1.0).contains(&self.momentum),
            "momentum",
            self.momentum,
            "must lie in [0, 1)",
        )?;
        check(
            !self.nesterov || self.momentum > 0.0,
            "momentum",
            self.momentum,
            "must be > 0 for Nesterov's form",
        )
    }
}

/// SGD's state.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sgd {
    /// Settings.
    pub config: SgdConfig,
    /// Momentum buffer.
    pub buf: Vec<f64>,
    /// Steps taken.
    pub n_steps: u64,
}

impl Optimizer for Sgd {
    fn step_with_lr<T: Real>(&mut self, params: &mut [T], grad: &[T], lr: f64) {
        assert_eq!(params.len(), self.buf.len(), "SGD: params length changed");
        let c = self.config;
        let first = self.n_steps == 0;
        self.n_steps += 1;
        for ((p, &g), b) in params.iter_mut().zip(grad).zip(self.buf.iter_mut()) {
            let pf = p.f64();
            let g = g.f64() + c.weight_decay * pf;
            let update = if c.momentum > 0.0 {
                *b = if first { g } else { c.momentum * *b + g };
                if c.nesterov {
                    g + c.momentum * *b
                } else {
                    *b
                }
            } else {
                g
            };
            *p = T::c(pf - lr * update);
        }
    }
    fn lr(&self) -> f64 {
        self.config.lr
    }
    fn n_steps(&self) -> u64 {
        self.n_steps
    }
}

/// Which optimizer, with its settings.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// Adam with L2 weight decay.
    Adam(AdamConfig),
    /// Adam with decoupled weight decay.
    AdamW(AdamConfig),
    /// RMSprop.
    RmsProp(RmsPropConfig),
    /// SGD with momentum.
    Sgd(SgdConfig),
}

impl From<AdamConfig> for OptimizerConfig {
    fn from(c: AdamConfig) -> Self {
        OptimizerConfig::Adam(c)
    }
}

impl OptimizerConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), OptimError> {
        match self {
            OptimizerConfig::Adam(c) | OptimizerConfig::AdamW(c) => c.validate(),
            OptimizerConfig::RmsProp(c) => c.validate(),
            OptimizerConfig::Sgd(c) => c.validate(),
        }
    }

    /// Fresh state for `n_params` parameters.
    pub fn build(&self, n_params: usize) -> OptimizerState {
        let zeros = || vec![0.0; n_params];
        match *self {
            OptimizerConfig::Adam(config) => OptimizerState::Adam(Adam::new(config, n_params)),
            OptimizerConfig::AdamW(config) => OptimizerState::AdamW(AdamW {
                config,
                m: zeros(),
                v: zeros(),
                n_steps: 0,
            }),
            OptimizerConfig::RmsProp(config) => OptimizerState::RmsProp(RmsProp {
                config,
                v: zeros(),
                buf: zeros(),
                n_steps: 0,
            }),
            OptimizerConfig::Sgd(config) => OptimizerState::Sgd(Sgd {
                config,
                buf: zeros(),
                n_steps: 0,
            }),
        }
    }
}

/// The state of any of the optimizers (what a checkpoint saves).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerState {
    /// Adam.
    Adam(Adam),
    /// AdamW.
    AdamW(AdamW),
    /// RMSprop.
    RmsProp(RmsProp),
    /// SGD.
    Sgd(Sgd),
}

impl OptimizerState {
    /// Reads a state from JSON: tagged with its `kind`, or a bare Adam state as
    /// checkpoints before the other optimizers held.
    pub fn from_json_value(v: serde_json::Value) -> Result<Self, serde_json::Error> {
        if v.get("kind").is_some() {
            serde_json::from_value(v)
        } else {
            serde_json::from_value::<Adam>(v).map(OptimizerState::Adam)
        }
    }

    /// The settings this state runs with.
    pub fn config(&self) -> OptimizerConfig {
        match self {
            OptimizerState::Adam(o) => OptimizerConfig::Adam(o.config),
            OptimizerState::AdamW(o) => OptimizerConfig::AdamW(o.config),
            OptimizerState::RmsProp(o) => OptimizerConfig::RmsProp(o.config),
            OptimizerState::Sgd(o) => OptimizerConfig::Sgd(o.config),
        }
    }

    /// Sets the learning rate and weight decay (a resumed run may change them).
    pub fn set_lr_and_decay(&mut self, lr: f64, weight_decay: f64) {
        match self {
            OptimizerState::Adam(o) => (o.config.lr, o.config.weight_decay) = (lr, weight_decay),
            OptimizerState::AdamW(o) => (o.config.lr, o.config.weight_decay) = (lr, weight_decay),
            OptimizerState::RmsProp(o) => (o.config.lr, o.config.weight_decay) = (lr, weight_decay),
            OptimizerState::Sgd(o) => (o.config.lr, o.config.weight_decay) = (lr, weight_decay),
        }
    }
}

impl Optimizer for OptimizerState {
    fn step_with_lr<T: Real>(&mut self, params: &mut [T], grad: &[T], lr: f64) {
        match self {
            OptimizerState::Adam(o) => Optimizer::step_with_lr(o, params, grad, lr),
            OptimizerState::AdamW(o) => o.step_with_lr(params, grad, lr),
            OptimizerState::RmsProp(o) => o.step_with_lr(params, grad, lr),
            OptimizerState::Sgd(o) => o.step_with_lr(params, grad, lr),
        }
    }
    fn lr(&self) -> f64 {
        self.config().lr()
    }
    fn n_steps(&self) -> u64 {
        match self {
            OptimizerState::Adam(o) => o.n_steps,
            OptimizerState::AdamW(o) => o.n_steps,
            OptimizerState::RmsProp(o) => o.n_steps,
            OptimizerState::Sgd(o) => o.n_steps,
        }
    }
}

impl OptimizerConfig {
    /// The configured learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerConfig::Adam(c) | OptimizerConfig::AdamW(c) => c.lr,
            OptimizerConfig::RmsProp(c) => c.lr,
            OptimizerConfig::Sgd(c) => c.lr,
        }
    }
}

/// How the learning rate moves over a run of `n` iterations: a factor on Adam's `lr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum LrSchedule {
    /// The same rate throughout.
    #[default]
    Constant,
    /// Half a cosine from `lr` at the first iteration down to `final_frac · lr` at the
    /// last (Loshchilov & Hutter 2017, without restarts).
    Cosine {
        /// The last iteration's rate as a fraction of `lr`.
        final_frac: f64,
    },
}

impl LrSchedule {
    /// The factor on `lr` at 1-based iteration `iter` of `n_iters`.
    pub fn factor(&self, iter: usize, n_iters: usize) -> f64 {
        match *self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine { final_frac } => {
                let progress = if n_iters <= 1 {
                    0.0
                } else {
                    (iter.clamp(1, n_iters) - 1) as f64 / (n_iters - 1) as f64
                };
                final_frac + (1.0 - final_frac) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector build of Adam's update gives the portable loop's values to the last
    /// bit, with either kind of weight decay, in f32 and f64.
    #[test]
    fn the_vector_update_matches_the_portable_loop() {
        fn check<T: Real>(decoupled: bool) {
            let n = 1037;
            let c = AdamConfig::new(3e-3, 1e-2);
            let (bias1, bias2) = (1.0 - c.beta1.powi(4), 1.0 - c.beta2.powi(4));
            let step = AdamStep {
                c: &c,
                bias1,
                bias2,
                lr: 3e-3,
                decoupled,
            };
            let p0: Vec<T> = (0..n).map(|i| T::c((i as f64 * 0.37).sin())).collect();
            let g: Vec<T> = (0..n)
                .map(|i| T::c((i as f64 * 0.11).cos() * 10f64.powi(i % 7 - 4)))
                .collect();
            let m0: Vec<f64> = (0..n).map(|i| (i as f64 * 0.7).sin() * 1e-3).collect();
            let v0: Vec<f64> = (0..n).map(|i| (i as f64 * 0.3).cos().powi(2) * 1e-5).collect();
            let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
            adam_slice(&step, &mut m, &mut v, &mut p, &g);
            let (mut q, mut mq, mut vq) = (p0.clone(), m0, v0);
            adam_slice_portable(&step, &mut mq, &mut vq, &mut q, &g);
            let bits = |x: &[T]| x.iter().map(|v| v.f64().to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&p), bits(&q), "decoupled {decoupled}");
            assert_eq!((m, v), (mq, vq));
            assert_ne!(bits(&p), bits(&p0), "the step moved nothing");
        }
        for decoupled in [false, true] {
            check::<f32>(decoupled);
            check::<f64>(decoupled);
        }
    }

    /// A step shared out over the threads gives every parameter and moment the value a
    /// step of each slice alone gives, to the last bit.
    #[test]
    fn a_shared_step_matches_steps_of_its_slices() {
        let n = 3 * ADAM_PAR_MIN + 17;
        let p0: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        let g: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos() * 1e-2).collect();
        let config = AdamConfig::new(1e-2, 1e-3);
        let mut whole = Adam::new(config, n);
        let mut p = p0.clone();
        for _ in 0..3 {
            whole.step(&mut p, &g);
        }
        let cut = 1001;
        let mut q = p0.clone();
        let (q1, q2) = q.split_at_mut(cut);
        let (mut a1, mut a2) = (Adam::new(config, cut), Adam::new(config, n - cut));
        for _ in 0..3 {
            a1.step(q1, &g[..cut]);
            a2.step(q2, &g[cut..]);
        }
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&p), bits(&q));
        assert_eq!([a1.m.clone(), a2.m.clone()].concat(), whole.m);
        assert_eq!([a1.v.clone(), a2.v.clone()].concat(), whole.v);
        assert_ne!(bits(&p), bits(&p0), "the steps moved nothing");
    }

    #[test]
    fn cosine_schedule_runs_from_one_to_the_final_fraction_monotonically() {
        let s = LrSchedule::Cosine { final_frac: 0.05 };
        assert_eq!(s.factor(1, 100), 1.0);
        assert!((s.factor(100, 100) - 0.05).abs() < 1e-15);
        assert!(
            (s.factor(50, 99) - 0.525).abs() < 1e-12,
            "midpoint is the mean of the ends"
        );
        let f: Vec<f64> = (1..=100).map(|i| s.factor(i, 100)).collect();
        assert!(f.windows(2).all(|w| w[1] < w[0]));
        assert_eq!(LrSchedule::Constant.factor(7, 10), 1.0);
        assert_eq!(s.factor(1, 1), 1.0, "a one-iteration run starts (and ends) at lr");
    }

    #[test]
    fn first_step_moves_each_param_by_lr_against_the_gradient_sign() {
        let mut adam = Adam::new(AdamConfig::new(0.01, 0.0), 3);
        let mut p = [1.0f64, -2.0, 0.5];
        adam.step(&mut p, &[3.0, -0.001, 40.0]);
        let moved = [1.0 - p[0], -2.0 - p[1], 0.5 - p[2]];
        assert!((moved[0] - 0.01).abs() < 1e-8 && (moved[1] + 0.01).abs() < 1e-6 && (moved[2] - 0.01).abs() < 1e-8);
    }

    #[test]
    fn converges_on_an_ill_conditioned_quadratic() {
        // L = ½ Σ_i s_i (θ_i − c_i)², scales 1e-2..1e2.
        let scales = [1e-2, 1.0, 1e2];
        let target = [1.0, -3.0, 0.25];
        let mut p = [0.0f64; 3];
        let mut adam = Adam::new(AdamConfig::new(0.05, 0.0), 3);
        for _ in 0..5000 {
            let g: Vec<f64> = (0..3).map(|i| scales[i] * (p[i] - target[i])).collect();
            adam.step(&mut p, &g);
        }
        for i in 0..3 {
            assert!((p[i] - target[i]).abs() < 1e-2, "{p:?}");
        }
    }

    #[test]
    fn weight_decay_shrinks_the_minimizer() {
        // L = ½ (θ − 2)² with decay λ has its fixed point where (θ − 2) + λθ = 0.
        let mut p = [0.0f32];
        let mut adam = Adam::new(AdamConfig::new(0.01, 0.5), 1);
        for _ in 0..4000 {
            let g = [p[0] - 2.0];
            adam.step(&mut p, &g);
        }
        assert!((p[0] as f64 - 2.0 / 1.5).abs() < 1e-2, "{}", p[0]);
    }

    #[test]
    fn bad_settings_are_named() {
        let named = |r: Result<(), OptimError>, name: &str| r.unwrap_err().to_string().contains(name);
        assert!(named(AdamConfig::new(-1.0, 0.0).validate(), "learning rate"));
        assert!(named(AdamConfig::new(1e-3, -1.0).validate(), "weight decay"));
        assert!(AdamConfig::new(1e-3, 1e-5).validate().is_ok());
        assert!(named(SgdConfig::new(0.1, 1.0).validate(), "momentum"));
        assert!(named(RmsPropConfig::new(f64::NAN).validate(), "learning rate"));
    }

    /// ½ Σ s_i (θ_i − c_i)² from 0 with `opt`, `n` steps: the final params.
    fn minimise(opt: &mut impl Optimizer, lr: f64, n: usize) -> [f64; 3] {
        let scales = [0.5, 1.0, 2.0];
        let target = [1.0, -3.0, 0.25];
        let mut p = [0.0f64; 3];
        for _ in 0..n {
            let g: Vec<f64> = (0..3).map(|i| scales[i] * (p[i] - target[i])).collect();
            opt.step_with_lr(&mut p, &g, lr);
        }
        p
    }

    #[test]
    fn every_optimizer_converges_on_a_quadratic() {
        let target = [1.0, -3.0, 0.25];
        let configs = [
            OptimizerConfig::Adam(AdamConfig::new(0.05, 0.0)),
            OptimizerConfig::AdamW(AdamConfig::new(0.05, 0.0)),
            OptimizerConfig::RmsProp(RmsPropConfig::new(0.01)),
            OptimizerConfig::RmsProp(RmsPropConfig {
                momentum: 0.5,
                ..RmsPropConfig::new(0.005)
            }),
            OptimizerConfig::Sgd(SgdConfig::new(0.1, 0.0)),
            OptimizerConfig::Sgd(SgdConfig::new(0.1, 0.9)),
            OptimizerConfig::Sgd(SgdConfig {
                nesterov: true,
                ..SgdConfig::new(0.1, 0.9)
            }),
        ];
        for config in configs {
            config.validate().unwrap();
            let mut opt = config.build(3);
            let p = minimise(&mut opt, config.lr(), 3000);
            for i in 0..3 {
                assert!((p[i] - target[i]).abs() < 2e-2, "{config:?}: {p:?}");
            }
            assert_eq!(opt.n_steps(), 3000);
        }
    }

    #[test]
    fn sgd_momentum_takes_the_heavy_ball_steps() {
        // g = θ (L = ½θ²) from θ = 1, lr 0.1, μ = 0.5: b1 = 1, θ1 = 0.9; b2 = 0.5 + 0.9,
        // θ2 = 0.9 − 0.14 = 0.76. Nesterov: θ1 = 1 − 0.1 (1 + 0.5) = 0.85.
        let mut heavy = OptimizerConfig::Sgd(SgdConfig::new(0.1, 0.5)).build(1);
        let mut p = [1.0f64];
        for want in [0.9, 0.76] {
            let g = [p[0]];
            heavy.step_with_lr(&mut p, &g, 0.1);
            assert!((p[0] - want).abs() < 1e-15, "{} vs {want}", p[0]);
        }
        let mut nesterov = OptimizerConfig::Sgd(SgdConfig {
            nesterov: true,
            ..SgdConfig::new(0.1, 0.5)
        })
        .build(1);
        let mut p = [1.0f64];
        nesterov.step_with_lr(&mut p, &[1.0], 0.1);
        assert!((p[0] - 0.85).abs() < 1e-15);
    }

    #[test]
    fn adamw_decays_the_weights_apart_from_the_gradient() {
        // With a zero gradient Adam's L2 decay is normalised into a step of lr against
        // sign(θ); AdamW multiplies θ by 1 − lr λ.
        let (lr, decay) = (0.1, 0.5);
        let mut adam = OptimizerConfig::Adam(AdamConfig::new(lr, decay)).build(1);
        let mut adamw = OptimizerConfig::AdamW(AdamConfig::new(lr, decay)).build(1);
        let (mut a, mut w) = ([2.0f64], [2.0f64]);
        adam.step_with_lr(&mut a, &[0.0], lr);
        adamw.step_with_lr(&mut w, &[0.0], lr);
        assert!((a[0] - 1.9).abs() < 1e-6, "{}", a[0]);
        assert!((w[0] - 2.0 * (1.0 - lr * decay)).abs() < 1e-15, "{}", w[0]);
    }

    #[test]
    fn optimizer_states_round_trip_through_json_and_old_adam_states_still_load() {
        let mut s = OptimizerConfig::Sgd(SgdConfig::new(0.1, 0.9)).build(2);
        s.step_with_lr(&mut [1.0f64, 2.0], &[0.5, -0.5], 0.1);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"kind\":\"sgd\""), "{json}");
        let back: OptimizerState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let old = serde_json::to_string(&Adam::new(AdamConfig::new(1e-3, 0.0), 2)).unwrap();
        let loaded = OptimizerState::from_json_value(serde_json::from_str(&old).unwrap()).unwrap();
        assert!(matches!(loaded, OptimizerState::Adam(_)));
    }
}
