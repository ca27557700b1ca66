//! Activations and their first two derivatives, and a fast vectorisable tanh.
//!
//! See [`fast_tanh`] for how tanh is computed.

use std::str::FromStr;

use crate::nn::NnError;
use crate::Real;

/// An activation function between hidden layers (none follows the last layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `tanh(y)`; `φ' = 1 − a²`, `φ'' = −2a(1 − a²)`.
    Tanh,
    /// `ln(1 + eʸ)`; `φ' = σ(y)`, `φ'' = σ(1 − σ)`.
    Softplus,
    /// `y` for `y > 0`, else `eʸ − 1` (α = 1); `φ' = 1 | eʸ`, `φ'' = 0 | eʸ`.
    Elu,
    /// `y·σ(y)` (SiLU); `φ' = σ(1 + y(1 − σ))`, `φ'' = σ(1 − σ)(2 + y(1 − 2σ))`.
    Swish,
}

impl Activation {
    /// All activations, in a fixed order (for tests and help texts).
    pub const ALL: [Activation; 4] = [
        Activation::Tanh,
        Activation::Softplus,
        Activation::Elu,
        Activation::Swish,
    ];

    /// Lower-case name, as parsed by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            Activation::Tanh => "tanh",
            Activation::Softplus => "softplus",
            Activation::Elu => "elu",
            Activation::Swish => "swish",
        }
    }

    /// `φ(y)` alone.
    pub fn value<T: Real>(self, y: T) -> T {
        match self {
            Activation::Tanh => Tanh::eval(y).0,
            Activation::Softplus => Softplus::eval(y).0,
            Activation::Elu => Elu::eval(y).0,
            Activation::Swish => Swish::eval(y).0,
        }
    }

    /// `(φ(y), φ'(y), φ''(y))`.
    pub fn eval<T: Real>(self, y: T) -> (T, T, T) {
        match self {
            Activation::Tanh => Tanh::eval(y),
            Activation::Softplus => Softplus::eval(y),
            Activation::Elu => Elu::eval(y),
            Activation::Swish => Swish::eval(y),
        }
    }
}

impl std::fmt::Display for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = NnError;

    fn from_str(s: &str) -> Result<Self, NnError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tanh" => Ok(Activation::Tanh),
            "softplus" => Ok(Activation::Softplus),
            "elu" => Ok(Activation::Elu),
            "swish" | "silu" => Ok(Activation::Swish),
            _ => Err(NnError::UnknownActivation { name: s.to_string() }),
        }
    }
}

/// A statically dispatched activation: the layer kernels are monomorphised per
/// implementation so that the element loop has no branch on the activation.
pub(crate) trait ActFn {
    /// Whether this is [`Tanh`], which has an AVX2 / AVX-512 kernel of its own for `f32`.
    const IS_TANH: bool = false;

    /// `(φ(y), φ'(y), φ''(y))`.
    fn eval<T: Real>(y: T) -> (T, T, T);
}

pub(crate) struct Tanh;
pub(crate) struct Softplus;
pub(crate) struct Elu;
pub(crate) struct Swish;

impl ActFn for Tanh {
    const IS_TANH: bool = true;

    #[inline(always)]
    fn eval<T: Real>(y: T) -> (T, T, T) {
        let a = fast_tanh(y);
        let d1 = T::one() - a * a;
        (a, d1, T::c(-2.0) * a * d1)
    }
}

impl ActFn for Softplus {
    #[inline(always)]
    fn eval<T: Real>(y: T) -> (T, T, T) {
        let e = (-y.abs()).exp();
        let a = y.max(T::zero()) + e.ln_1p();
        let s = sigmoid(y);
        (a, s, s * (T::one() - s))
    }
}

impl ActFn for Elu {
    #[inline(always)]
    fn eval<T: Real>(y: T) -> (T, T, T) {
        if y > T::zero() {
            (y, T::one(), T::zero())
        } else {
            let e = y.exp();
            (y.exp_m1(), e, e)
        }
    }
}

impl ActFn for Swish {
    #[inline(always)]
    fn eval<T: Real>(y: T) -> (T, T, T) {
        let s = sigmoid(y);
        let one = T::one();
        let ds = s * (one - s);
        (
            y * s,
            s * (one + y * (one - s)),
            ds * (T::c(2.0) + y * (one - T::c(2.0) * s)),
        )
    }
}

/// Logistic sigmoid `1 / (1 + e⁻ʸ)`, computed without overflow for either sign.
#[inline(always)]
pub(crate) fn sigmoid<T: Real>(y: T) -> T {
    let e = (-y.abs()).exp();
    let one = T::one();
    if y >= T::zero() {
        one / (one + e)
    } else {
        e / (one + e)
    }
}

/// Fast `tanh` for either float type: [`fast_tanh_f32`] for 4-byte types, otherwise
/// [`fast_tanh_f64`]. The dispatch is resolved at compile time.
///
/// `tanh` dominates the element-wise cost of a field evaluation (libm's `tanh` costs
/// 5–10× the matrix product at the reference shape), so both are written branch-free
/// from plain arithmetic and bit operations, which LLVM vectorises in the layer loops.
///
/// Accuracy against `f64::tanh` (tests/nn_tanh.rs, dense grids plus special values): at
/// most 3 ulp in f64 and 4 ulp in f32.
#[inline(always)]
pub fn fast_tanh<T: Real>(x: T) -> T {
    if std::mem::size_of::<T>() == 4 {
        T::c(fast_tanh_f32(x.f64() as f32) as f64)
    } else {
        T::c(fast_tanh_f64(x.f64()))
    }
}

/// Branch-free `tanh` in `f64`, accurate to a few ulp over the whole line; exactly
/// odd, `±1` beyond `|x| = 20`, NaN in NaN out.
///
/// Computed from `tanh|x| = −u / (2 + u)` with `u = expm1(−2|x|)`. `expm1` uses the
/// usual reduction `y = n·ln2 + r`, `|r| ≤ ln2/2`, a Taylor polynomial for `expm1(r)`,
/// and builds `2ⁿ` from its bits; `expm1(y) = 2ⁿ·expm1(r) + (2ⁿ − 1)`, exact in the
/// `n = 0` branch so small `|x|` keep full relative accuracy. The sign is restored with
/// `copysign`, so the result is exactly odd.
#[inline(always)]
pub fn fast_tanh_f64(x: f64) -> f64 {
    let a = x.abs();
    let a = if a > 20.0 { 20.0 } else { a };
    let u = expm1_neg_f64(-2.0 * a);
    (-u / (2.0 + u)).copysign(x)
}

/// Numerator and denominator of the f32 `tanh` approximation, coefficients of
/// `1, x², x⁴, x⁶, x⁸` (see [`fast_tanh_f32`]).
pub(crate) const TANH_P: [f32; 5] = [1.0, 0.133_810_2, 0.003_495_581_2, 2.060_896_5e-5, 1.335_449_4e-8];
pub(crate) const TANH_Q: [f32; 5] = [1.0, 0.467_143_36, 0.025_876_956, 3.285_623_3e-4, 7.776_491e-7];

/// Branch-free `tanh` in `f32`: within 4 ulp of the true value over the whole line,
/// exactly odd, never above 1 in magnitude, NaN in NaN out.
///
/// `tanh x = x·P(x²)/Q(x²)` on `|x| ≤ 9` (beyond, `tanh` is within half an f32 ulp of
/// ±1), with `P` and `Q` of degree 4 in `x²`: a rational fit made for cnflow by
/// iteratively reweighted least squares (Lawson) on the relative error, whose maximum is
/// 2·10⁻⁸ in exact arithmetic; f32 rounding of the evaluation brings it to a few ulp.
/// Ten multiply-adds and one division, about a third of the cost of the `expm1` route
/// that [`fast_tanh_f64`] takes, with no range reduction and no integer work.
#[inline(always)]
pub fn fast_tanh_f32(x: f32) -> f32 {
    let x = x.clamp(-9.0, 9.0);
    let s = x * x;
    let (p, q) = (TANH_P, TANH_Q);
    let num = (((p[4] * s + p[3]) * s + p[2]) * s + p[1]) * s + p[0];
    let den = (((q[4] * s + q[3]) * s + q[2]) * s + q[1]) * s + q[0];
    (x * num / den).clamp(-1.0, 1.0)
}

/// `eʸ − 1` for `y ∈ [−40, 0]`.
#[inline(always)]
fn expm1_neg_f64(y: f64) -> f64 {
    const SHIFT: f64 = 6_755_399_441_055_744.0; // 1.5·2^52: adding it rounds to an integer
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000); // ln 2 with a short mantissa
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76); // ln 2 − LN2_HI
    let kf = y * std::f64::consts::LOG2_E + SHIFT;
    let n = kf - SHIFT;
    let r = (y - n * LN2_HI) - n * LN2_LO;
    // 2^n from the integer in kf's low mantissa bits.
    let bits = kf.to_bits().wrapping_sub(SHIFT.to_bits()).wrapping_add(1023) << 52;
    let s = f64::from_bits(bits);
    // Taylor polynomial of expm1(r), degree 13 (|r| ≤ 0.347: truncation < 2e-17 relative).
    let mut p = 1.0 / 6_227_020_800.0;
    p = p * r + 1.0 / 479_001_600.0;
    p = p * r + 1.0 / 39_916_800.0;
    p = p * r + 1.0 / 3_628_800.0;
    p = p * r + 1.0 / 362_880.0;
    p = p * r + 1.0 / 40_320.0;
    p = p * r + 1.0 / 5_040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    let em1 = p * r;
    s * em1 + (s - 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expm1_matches_std_on_its_domain() {
        for i in 0..=4000 {
            let y = -40.0 * i as f64 / 4000.0;
            let e = expm1_neg_f64(y);
            let r = y.exp_m1();
            assert!((e - r).abs() <= 4.0 * f64::EPSILON * r.abs(), "y={y} {e} {r}");
        }
    }
}
