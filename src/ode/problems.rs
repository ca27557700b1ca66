//! Test problems with known answers, shared by tests, benches and examples.
//!
//! The `A` and `D` problems are from Hull, Enright, Fellen & Sedgwick, "Comparing
//! numerical methods for ordinary differential equations", SIAM J. Numer. Anal. 9
//! (1972) (the DETEST set), each with its closed-form solution.

use super::config::{SaveAt, SolverConfig};
use super::error::SolveError;
use super::solver::{integrate, Solution};
use super::system::OdeSystem;
use crate::Real;

/// Which right-hand side a [`Problem`] has.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// `y' = A y`, `A = [[-0.1, -1], [1, -0.1]]`: a damped rotation.
    DampedRotation,
    /// Lotka–Volterra `x' = αx − βxy, y' = δxy − γy` with `(α, β, δ, γ) = (1.5, 1, 1, 3)`.
    LotkaVolterra,
    /// DETEST A1: `y' = −y`.
    A1,
    /// DETEST A2: `y' = −y³/2`.
    A2,
    /// DETEST A3: `y' = y cos t`.
    A3,
    /// DETEST A4: `y' = (y/4)(1 − y/20)`.
    A4,
    /// DETEST D1–D5: the two-body orbit `x'' = −x/r³`, `y'' = −y/r³` with this eccentricity.
    Orbit(f64),
}

/// An initial value problem, with its exact solution where one is known.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// Name of the problem.
    pub name: &'static str,
    /// The right-hand side.
    pub kind: Kind,
    /// Start time.
    pub t0: f64,
    /// End time.
    pub t1: f64,
    /// Initial state.
    pub y0: Vec<f64>,
}

impl Problem {
    /// The damped rotation on `[0, 4]` from `(1, 0)`.
    pub fn damped_rotation() -> Self {
        Problem {
            name: "damped rotation",
            kind: Kind::DampedRotation,
            t0: 0.0,
            t1: 4.0,
            y0: vec![1.0, 0.0],
        }
    }

    /// Lotka–Volterra on `[0, 10]` from `(1, 1)`.
    pub fn lotka_volterra() -> Self {
        Problem {
            name: "Lotka–Volterra",
            kind: Kind::LotkaVolterra,
            t0: 0.0,
            t1: 10.0,
            y0: vec![1.0, 1.0],
        }
    }

    /// DETEST A1–A4 and D1 (eccentricity 0.1), D3 (0.5), D5 (0.9), on `[0, 20]`.
    pub fn detest() -> Vec<Self> {
        let scalar = |name, kind| Problem {
            name,
            kind,
            t0: 0.0,
            t1: 20.0,
            y0: vec![1.0],
        };
        let orbit = |name, e: f64| Problem {
            name,
            kind: Kind::Orbit(e),
            t0: 0.0,
            t1: 20.0,
            y0: vec![1.0 - e, 0.0, 0.0, ((1.0 + e) / (1.0 - e)).sqrt()],
        };
        vec![
            scalar("A1", Kind::A1),
            scalar("A2", Kind::A2),
            scalar("A3", Kind::A3),
            scalar("A4", Kind::A4),
            orbit("D1", 0.1),
            orbit("D3", 0.5),
            orbit("D5", 0.9),
        ]
    }

    /// Solves the problem over its span in the float type `T`.
    pub fn solve<T: Real>(&self, config: &SolverConfig, save: &SaveAt<T>) -> Result<Solution<T>, SolveError> {
        let y0: Vec<T> = self.y0.iter().map(|&v| T::c(v)).collect();
        integrate(&mut self.clone(), &y0, T::c(self.t0), T::c(self.t1), config, save)
    }

    /// Evaluates the right-hand side.
    pub fn rhs<T: Real>(&self, t: T, y: &[T], dy: &mut [T]) {
        let c = T::c;
        match self.kind {
            Kind::DampedRotation => {
                dy[0] = c(-0.1) * y[0] - y[1];
                dy[1] = y[0] - c(0.1) * y[1];
            }
            Kind::LotkaVolterra => {
                dy[0] = c(1.5) * y[0] - y[0] * y[1];
                dy[1] = y[0] * y[1] - c(3.0) * y[1];
            }
            Kind::A1 => dy[0] = -y[0],
            Kind::A2 => dy[0] = c(-0.5) * y[0] * y[0] * y[0],
            Kind::A3 => dy[0] = y[0] * t.cos(),
            Kind::A4 => dy[0] = c(0.25) * y[0] * (T::one() - y[0] / c(20.0)),
            Kind::Orbit(_) => {
                let r2 = y[0] * y[0] + y[1] * y[1];
                let r3 = r2 * r2.sqrt();
                dy[0] = y[2];
                dy[1] = y[3];
                dy[2] = -y[0] / r3;
                dy[3] = -y[1] / r3;
            }
        }
    }

    /// The exact solution at `t`, where known (all but Lotka–Volterra).
    pub fn exact(&self, t: f64) -> Option<Vec<f64>> {
        Some(match self.kind {
            Kind::DampedRotation => {
                let d = (-0.1 * t).exp();
                vec![d * t.cos(), d * t.sin()]
            }
            Kind::LotkaVolterra => return None,
            Kind::A1 => vec![(-t).exp()],
            Kind::A2 => vec![1.0 / (1.0 + t).sqrt()],
            Kind::A3 => vec![t.sin().exp()],
            Kind::A4 => vec![20.0 / (1.0 + 19.0 * (-t / 4.0).exp())],
            Kind::Orbit(e) => {
                // Kepler's equation E − e sin E = t, by Newton's method.
                let mut big_e = t;
                for _ in 0..50 {
                    let step = (big_e - e * big_e.sin() - t) / (1.0 - e * big_e.cos());
                    big_e -= step;
                    if step.abs() < 1e-15 {
                        break;
                    }
                }
                let (s, co) = big_e.sin_cos();
                let q = (1.0 - e * e).sqrt();
                let denom = 1.0 - e * co;
                vec![co - e, q * s, -s / denom, q * co / denom]
            }
        })
    }
}

impl<T: Real> OdeSystem<T> for Problem {
    fn rhs(&mut self, t: T, y: &[T], dy: &mut [T]) {
        Problem::rhs(self, t, y, dy)
    }
}

/// Lotka–Volterra with its four parameters as parameters, written once for dual
/// numbers ([`DualSystem`](super::DualSystem)): `p = (a, b, c, d)` in
/// `x' = a x − b x y` (prey), `y' = −c y + d x y` (predators).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LotkaVolterraModel;

impl super::system::GenericSystem for LotkaVolterraModel {
    fn dim(&self) -> usize {
        2
    }
    fn n_params(&self) -> usize {
        4
    }
    fn eval<D: num_dual::DualNum<Primitive = f64> + Copy>(&self, _t: D, y: &[D], p: &[D], dy: &mut [D]) {
        dy[0] = p[0] * y[0] - p[1] * y[0] * y[1];
        dy[1] = -p[2] * y[1] + p[3] * y[0] * y[1];
    }
}
