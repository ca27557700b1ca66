//! Every derivative layer of a [`GenericSystem`] from forward-mode dual numbers
//! (`num-dual`): a JVP is one evaluation in `Dual64` seeded with the direction; a VJP
//! or a Jacobian is one evaluation per column of `∂f/∂(y, p, t)`. Exact to rounding,
//! and cheap for the small mechanistic systems this is for.

use num_dual::{Dual64, HyperDual64};

use super::system::{GenericSystem, Jacobian, JacobianVjp, Jvp, OdeSystem, Vjp};

/// A [`GenericSystem`] with its parameter values: an [`OdeSystem`], [`Jvp`], [`Vjp`] and
/// [`Jacobian`] in `f64`.
#[derive(Clone, Debug)]
pub struct DualSystem<S> {
    /// The system.
    pub system: S,
    /// Its parameter values (length `system.n_params()`).
    pub params: Vec<f64>,
    y: Vec<Dual64>,
    p: Vec<Dual64>,
    dy: Vec<Dual64>,
}

impl<S: GenericSystem> DualSystem<S> {
    /// Pairs `system` with parameter values; panics if their count is not
    /// `system.n_params()` (a programming error, not a user input).
    pub fn new(system: S, params: Vec<f64>) -> Self {
        assert_eq!(
            params.len(),
            system.n_params(),
            "DualSystem: wrong number of parameters"
        );
        let (n, m) = (system.dim(), system.n_params());
        DualSystem {
            system,
            params,
            y: vec![Dual64::from(0.0); n],
            p: vec![Dual64::from(0.0); m],
            dy: vec![Dual64::from(0.0); n],
        }
    }

    /// Loads `(t, y, p)` as duals with no derivative part; returns the time.
    fn load(&mut self, y: &[f64]) {
        for (d, &v) in self.y.iter_mut().zip(y) {
            *d = Dual64::from(v);
        }
        for (d, &v) in self.p.iter_mut().zip(&self.params) {
            *d = Dual64::from(v);
        }
    }

    /// One column of `∂f/∂(y, p, t)`: the derivative along seed `j` (state `j < n`,
    /// parameter `j − n`, time `j = n + m`), with `f` itself in the real parts.
    fn column(&mut self, t: f64, j: usize) {
        let (n, m) = (self.y.len(), self.p.len());
        let mut td = Dual64::from(t);
        if j < n {
            self.y[j].eps = 1.0;
        } else if j < n + m {
            self.p[j - n].eps = 1.0;
        } else {
            td.eps = 1.0;
        }
        self.system.eval(td, &self.y, &self.p, &mut self.dy);
        if j < n {
            self.y[j].eps = 0.0;
        } else if j < n + m {
            self.p[j - n].eps = 0.0;
        }
    }
}

impl<S: GenericSystem> OdeSystem<f64> for DualSystem<S> {
    fn rhs(&mut self, t: f64, y: &[f64], dy: &mut [f64]) {
        let p = std::mem::take(&mut self.params);
        self.system.eval(t, y, &p, dy);
        self.params = p;
    }
}

impl<S: GenericSystem> Jvp<f64> for DualSystem<S> {
    fn jvp(&mut self, t: f64, y: &[f64], v: &[f64], dy: &mut [f64], jv: &mut [f64]) {
        self.load(y);
        for (d, &vi) in self.y.iter_mut().zip(v) {
            d.eps = vi;
        }
        self.system.eval(Dual64::from(t), &self.y, &self.p, &mut self.dy);
        for ((f, j), d) in dy.iter_mut().zip(jv.iter_mut()).zip(&self.dy) {
            *f = d.re;
            *j = d.eps;
        }
    }
}

impl<S: GenericSystem> Vjp<f64> for DualSystem<S> {
    fn n_params(&self) -> usize {
        self.params.len()
    }

    fn vjp(&mut self, t: f64, y: &[f64], w: &[f64], grad_y: &mut [f64], grad_p: &mut [f64]) {
        let (n, m) = (self.y.len(), self.p.len());
        self.load(y);
        let dot = |dy: &[Dual64]| dy.iter().zip(w).map(|(d, &wi)| d.eps * wi).sum::<f64>();
        for j in 0..n {
            self.column(t, j);
            grad_y[j] = dot(&self.dy);
        }
        for j in 0..m {
            self.column(t, n + j);
            grad_p[j] += dot(&self.dy);
        }
    }
}

impl<S: GenericSystem> Jacobian<f64> for DualSystem<S> {
    fn jacobian(&mut self, t: f64, y: &[f64], jac: &mut [f64]) {
        let n = self.y.len();
        self.load(y);
        for j in 0..n {
            self.column(t, j);
            for i in 0..n {
                jac[i * n + j] = self.dy[i].eps;
            }
        }
    }
}

/// One hyper-dual evaluation per state and parameter: `y + ε₁v + ε₂eⱼ` (or `p + ε₂eⱼ`),
/// whose `ε₁ε₂` part is `∂(J v)/∂yⱼ` (or `∂(J v)/∂pⱼ`), dotted with `w`.
impl<S: GenericSystem> JacobianVjp<f64> for DualSystem<S> {
    fn jacobian_vjp(&mut self, t: f64, y: &[f64], w: &[f64], v: &[f64], grad_y: &mut [f64], grad_p: &mut [f64]) {
        let (n, m) = (self.y.len(), self.p.len());
        let zero = HyperDual64::from(0.0);
        let mut yh: Vec<HyperDual64> = y
            .iter()
            .zip(v)
            .map(|(&yi, &vi)| HyperDual64::new(yi, vi, 0.0, 0.0))
            .collect();
        let mut ph: Vec<HyperDual64> = self.params.iter().map(|&p| HyperDual64::from(p)).collect();
        let mut dy = vec![zero; n];
        let th = HyperDual64::from(t);
        let dot = |dy: &[HyperDual64]| dy.iter().zip(w).map(|(d, &wi)| d.eps1eps2 * wi).sum::<f64>();
        for j in 0..n {
            yh[j].eps2 = 1.0;
            self.system.eval(th, &yh, &ph, &mut dy);
            yh[j].eps2 = 0.0;
            grad_y[j] = dot(&dy);
        }
        for j in 0..m {
            ph[j].eps2 = 1.0;
            self.system.eval(th, &yh, &ph, &mut dy);
            ph[j].eps2 = 0.0;
            grad_p[j] += dot(&dy);
        }
    }
}
