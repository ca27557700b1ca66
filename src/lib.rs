//! # cnflow — continuous normalizing flows in Rust
//!
//! A continuous normalizing flow (CNF) models a density by carrying data `x` along the
//! flow of a learned ODE `dz/dt = f(z, t; θ)` from `z(0) = x` to `z(T)`, where a
//! standard normal base density lives. The log-density follows from the instantaneous
//! change of variables, integrated alongside the state:
//!
//! ```text
//! dz/dt = f(z, t)        dΔ/dt = -tr(∂f/∂z)(z, t),   Δ(0) = 0
//! log p(x) = log N(z(T); 0, I) - Δ(T)
//! ```
//!
//! Data flows one way through the crate, and the modules' imports follow it:
//!
//! ```text
//! data ──► nn (fields + derivatives) ──► cnf, classifier, series (models among others)
//!      ──► ode (systems in derivative layers, steppers, controllers, the driver)
//!      ──► sensitivity (continuous adjoint with jumps; discrete adjoint with a checkpoint policy)
//!      ──► loss ──► optim ──► train (a generic loop over a Problem, observers)
//! ```
//!
//! | symbol | meaning |
//! |---|---|
//! | `t`, `h` | time, step size |
//! | `y` | ODE state (a batch `B × d` is one flat, row-major system) |
//! | `x`, `z` | data, latent |
//! | `θ` ("params") | network weights |
//! | `rtol`, `atol` | relative and absolute error tolerances |
//!
//! The ODE layer ([`ode`]) knows nothing of networks: a Runge–Kutta method is a
//! Butcher tableau (data), the step-size controller is its own value, and one
//! driver runs every solve, the adjoint's included. [`sensitivity`] computes gradients
//! of losses at any observation times for any system with vector-Jacobian products
//! (a closure with a hand-written VJP, or a system written once and differentiated by
//! dual numbers); the CNF's training gradient is one of its clients.
//!
//! ```
//! use cnflow::ode::{integrate, Method, SaveAt, SolverConfig};
//!
//! // dy/dt = -y, y(0) = 1, solved to t = 1 with Dopri5.
//! let config = SolverConfig::adaptive(Method::Dopri5, 1e-8, 1e-8);
//! let mut f = |_t: f64, y: &[f64], dy: &mut [f64]| dy[0] = -y[0];
//! let sol = integrate(&mut f, &[1.0], 0.0, 1.0, &config, &SaveAt::default()).unwrap();
//! assert!((sol.y_final[0] - (-1.0f64).exp()).abs() < 1e-7);
//! ```
#![warn(missing_docs)]

pub mod classifier;
pub mod cnf;
pub mod data;
pub mod fuzz;
pub mod loss;
pub mod model_file;
pub mod nn;
pub mod ode;
pub mod optim;
pub mod par;
pub mod plot;
pub mod real;
pub mod sensitivity;
pub mod series;
pub mod stiff;
pub mod train;

pub use real::Real;

/// The README's Rust examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
