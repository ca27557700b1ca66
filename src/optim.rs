//! Adam (Kingma & Ba 2015) with L2 weight decay as in PyTorch's `Adam(weight_decay=…)`:
//!
//! ```text
//! g ← g + λ θ
//! m ← β1 m + (1 − β1) g          v ← β2 v + (1 − β2) g²
//! θ ← θ − lr · (m / (1 − β1^t)) / (sqrt(v / (1 − β2^t)) + ε)
//! ```
//!
//! The optimizer knows nothing of ODEs: it sees a flat parameter vector and its gradient.

use crate::Real;

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

    /// Checks the settings; the message names the bad one.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(format!("learning rate {} must be a finite number > 0", self.lr));
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return Err(format!(
                "Adam betas ({}, {}) must lie in [0, 1)",
                self.beta1, self.beta2
            ));
        }
        let eps_ok = self.eps > 0.0 && self.eps.is_finite();
        if !(eps_ok && self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(format!(
                "Adam eps {} must be > 0 and weight decay {} ≥ 0",
                self.eps, self.weight_decay
            ));
        }
        Ok(())
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
        assert_eq!(params.len(), self.m.len(), "Adam: params length changed");
        assert_eq!(grad.len(), self.m.len(), "Adam: gradient length differs from params");
        let c = self.config;
        self.n_steps += 1;
        let bias1 = 1.0 - c.beta1.powi(self.n_steps as i32);
        let bias2 = 1.0 - c.beta2.powi(self.n_steps as i32);
        for ((p, &g), (m, v)) in params
            .iter_mut()
            .zip(grad)
            .zip(self.m.iter_mut().zip(self.v.iter_mut()))
        {
            let pf = p.f64();
            let g = g.f64() + c.weight_decay * pf;
            *m = c.beta1 * *m + (1.0 - c.beta1) * g;
            *v = c.beta2 * *v + (1.0 - c.beta2) * g * g;
            let update = lr * (*m / bias1) / ((*v / bias2).sqrt() + c.eps);
            *p = T::c(pf - update);
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
        assert!(AdamConfig::new(-1.0, 0.0)
            .validate()
            .unwrap_err()
            .contains("learning rate"));
        assert!(AdamConfig::new(1e-3, -1.0)
            .validate()
            .unwrap_err()
            .contains("weight decay"));
        assert!(AdamConfig::new(1e-3, 1e-5).validate().is_ok());
    }
}
