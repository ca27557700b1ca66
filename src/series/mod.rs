//! Neural ODEs of time series: hybrid mechanistic + neural models fitted to trajectories
//! observed at irregular times.
//!
//! A [`SeriesModel`] of state dimension `d` has the field
//!
//! ```text
//! dy/dt = f_mech(t, y; p) + m ⊙ NN(φ(y); w)
//! ```
//!
//! - `f_mech` is a [`Mechanistic`] term with named parameters `p`: [`Equations`] typed as
//!   text (`"dx = a*x - b*x*y; dy = -d*y + g*x*y"`, parsed and differentiated by exmex),
//!   or a [`GenericSystem`](crate::ode::GenericSystem) written once in Rust, generic over
//!   the number type, through [`Generic`] (derivatives from dual numbers).
//! - `NN` is an MLP `d → … → d` on the state or on `φ(y) = y³` ([`InputTransform`]),
//!   its output kept in the components `m` selects ([`NeuralTerm`]): a hybrid model
//!   learns only the equations it is given.
//!
//! [`Series`] holds the observations: trajectories with their own times and initial
//! values, NaN where a value was not observed. [`SeriesFit`] is the fit as a
//! [`Problem`](crate::train::Problem) for [`minimise`](crate::train::minimise): a
//! weighted squared error, gradients by the continuous adjoint with jumps at the
//! observations or by backprop with checkpointing, optional fitted initial states,
//! multiple shooting and a growing-window curriculum. [`SecondOrder`] turns
//! `x'' = a(t, x, x')` into a first-order system.
//!
//! Predictions at any times ([`SeriesModel::predict`]) come from the solver's dense
//! output. In the gradients every observation time is a step point, so backprop
//! differentiates exactly the states the loss saw.

mod data;
mod equations;
mod file;
mod fit;
mod model;
mod second_order;
mod tape;

pub use data::{Series, SeriesError, Trajectory};
pub use equations::{EquationError, EquationSystem, Equations};
pub use file::{SavedModelError, SavedNetwork, SavedSeriesModel, SavedStart, SERIES_FORMAT, SERIES_VERSION};
pub use fit::{FitConfig, FitError, FitReport, SeriesFit};
pub use model::{Generic, InputTransform, Mechanistic, ModelError, NeuralTerm, SeriesModel, SeriesSystem};
pub use second_order::{SecondOrder, SecondOrderSystem};
