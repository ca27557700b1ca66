//! The floating-point types cnflow computes in.
//!
//! Every numerical routine is generic over [`Real`], implemented for `f32` (speed, as
//! FFJORD trains) and `f64` (accuracy-critical evaluation and derivative tests).

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

use ndarray::{LinalgScalar, ScalarOperand};
use num_traits::{Float, FromPrimitive, ToPrimitive};

/// A floating-point scalar usable throughout cnflow: `f32` or `f64`.
pub trait Real:
    Float
    + FromPrimitive
    + ToPrimitive
    + LinalgScalar
    + ScalarOperand
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + 'static
{
    /// Short name of the type, as written in model files and reports.
    const NAME: &'static str;

    /// Converts an `f64` constant (a tableau coefficient, a tolerance) to this type.
    fn c(x: f64) -> Self;

    /// Widens to `f64` (exact for both implementations).
    fn f64(self) -> f64;
}

impl Real for f32 {
    const NAME: &'static str = "f32";

    #[inline(always)]
    fn c(x: f64) -> Self {
        x as f32
    }

    #[inline(always)]
    fn f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    const NAME: &'static str = "f64";

    #[inline(always)]
    fn c(x: f64) -> Self {
        x
    }

    #[inline(always)]
    fn f64(self) -> f64 {
        self
    }
}
