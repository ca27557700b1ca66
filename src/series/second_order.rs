//! Second-order systems `x'' = a(t, x, x'; p)` as first-order ones on `y = (x, v)`:
//! `x' = v`, `v' = a(t, x, v; p)`.

use num_dual::DualNum;

use crate::ode::GenericSystem;

/// A second-order system written once, generic over the number type (as
/// [`GenericSystem`]): the acceleration `a(t, x, v; p)` of `dim` positions.
pub trait SecondOrderSystem {
    /// Number of positions (the first-order state has twice as many components).
    fn dim(&self) -> usize;
    /// Number of parameters.
    fn n_params(&self) -> usize;
    /// Writes `a(t, x, v; p)` into `a`.
    fn accel<D: DualNum<Primitive = f64> + Copy>(&self, t: D, x: &[D], v: &[D], p: &[D], a: &mut [D]);
}

/// The first-order system `(x, v)' = (v, a(t, x, v))` of a [`SecondOrderSystem`]; a
/// [`GenericSystem`], so [`DualSystem`](crate::ode::DualSystem) gives it every
/// derivative layer.
///
/// ```
/// use cnflow::ode::{integrate, DualSystem, Method, SaveAt, SolverConfig};
/// use cnflow::series::{SecondOrder, SecondOrderSystem};
/// use num_dual::DualNum;
///
/// /// x'' = −ω² x.
/// struct Spring;
/// impl SecondOrderSystem for Spring {
///     fn dim(&self) -> usize { 1 }
///     fn n_params(&self) -> usize { 1 }
///     fn accel<D: DualNum<Primitive = f64> + Copy>(&self, _t: D, x: &[D], _v: &[D], p: &[D], a: &mut [D]) {
///         a[0] = -(p[0] * p[0]) * x[0];
///     }
/// }
/// let mut sys = DualSystem::new(SecondOrder(Spring), vec![2.0]);
/// let config = SolverConfig::adaptive(Method::Tsit5, 1e-10, 1e-10);
/// let sol = integrate(&mut sys, &[1.0, 0.0], 0.0, 1.0, &config, &SaveAt::default()).unwrap();
/// assert!((sol.y_final[0] - 2f64.cos()).abs() < 1e-8);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SecondOrder<S>(pub S);

impl<S: SecondOrderSystem> GenericSystem for SecondOrder<S> {
    fn dim(&self) -> usize {
        2 * self.0.dim()
    }

    fn n_params(&self) -> usize {
        self.0.n_params()
    }

    fn eval<D: DualNum<Primitive = f64> + Copy>(&self, t: D, y: &[D], p: &[D], dy: &mut [D]) {
        let n = self.0.dim();
        let (x, v) = y.split_at(n);
        let (dx, dv) = dy.split_at_mut(n);
        dx.copy_from_slice(v);
        self.0.accel(t, x, v, p, dv);
    }
}
