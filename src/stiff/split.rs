//! Operator splitting for `dy/dt = A(t, y) + B(t, y)`: each part advanced by its own
//! flow, Lie `φ_B(h) ∘ φ_A(h)` (order 1) or Strang `φ_A(h/2) ∘ φ_B(h) ∘ φ_A(h/2)`
//! (order 2), with the exact flow `exp(hA)` of a linear part.
//!
//! A [`Flow`] advances a state over `[t, t + h]`: [`LinearFlow`] exactly through the
//! matrix exponential (Padé (6, 6) with scaling and squaring, Higham, *Functions of
//! Matrices*, §10.3), [`SolverFlow`] by a stiff solve with any [`StiffMethod`] —
//! so a stiff linear part can take the exact exponential while a non-stiff nonlinear
//! part takes a cheap method, or each part its own implicit method.

use super::linalg::DenseLu;
use super::{solve, StiffConfig};
use crate::ode::{Jacobian, OdeSystem, SolveError};

/// The flow of one part of a split system.
pub trait Flow {
    /// Advances `y` from `t` to `t + h` under this part alone.
    fn advance(&mut self, t: f64, h: f64, y: &mut [f64]) -> Result<(), SolveError>;
}

/// Which splitting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Splitting {
    /// `φ_B(h) ∘ φ_A(h)`: order 1.
    Lie,
    /// `φ_A(h/2) ∘ φ_B(h) ∘ φ_A(h/2)`: order 2.
    Strang,
}

/// Integrates `A + B` from `y0` over `[t0, t1]` in `steps` equal split steps; returns the
/// final state.
pub fn split_solve(
    a: &mut dyn Flow,
    b: &mut dyn Flow,
    splitting: Splitting,
    y0: &[f64],
    t0: f64,
    t1: f64,
    steps: usize,
) -> Result<Vec<f64>, SolveError> {
    if steps == 0 {
        return Err(crate::ode::ConfigError::Setting {
            name: "steps",
            value: 0.0,
            need: "must be ≥ 1",
        }
        .into());
    }
    let h = (t1 - t0) / steps as f64;
    let mut y = y0.to_vec();
    for k in 0..steps {
        let t = t0 + k as f64 * h;
        match splitting {
            Splitting::Lie => {
                a.advance(t, h, &mut y)?;
                b.advance(t, h, &mut y)?;
            }
            Splitting::Strang => {
                a.advance(t, 0.5 * h, &mut y)?;
                b.advance(t, h, &mut y)?;
                a.advance(t + 0.5 * h, 0.5 * h, &mut y)?;
            }
        }
    }
    Ok(y)
}

/// `exp(M)` of a row-major `n × n` matrix: Padé (6, 6) after scaling `M` by `2^-s` so
/// that its ∞-norm is at most ½, then `s` squarings.
pub fn expm(m: &[f64], n: usize) -> Vec<f64> {
    let norm = (0..n)
        .map(|i| m[i * n..(i + 1) * n].iter().map(|v| v.abs()).sum::<f64>())
        .fold(0.0, f64::max);
    let s = if norm > 0.5 {
        (norm / 0.5).log2().ceil() as i32
    } else {
        0
    };
    let scale = 0.5f64.powi(s);
    let x: Vec<f64> = m.iter().map(|v| v * scale).collect();
    let mul = |a: &[f64], b: &[f64]| -> Vec<f64> {
        let mut c = vec![0.0; n * n];
        for i in 0..n {
            for k in 0..n {
                let aik = a[i * n + k];
                if aik != 0.0 {
                    for j in 0..n {
                        c[i * n + j] += aik * b[k * n + j];
                    }
                }
            }
        }
        c
    };
    // Padé coefficients c_k = (2q − k)! q! / ((2q)! k! (q − k)!), q = 6.
    let q = 6usize;
    let fact = |k: usize| (1..=k).map(|v| v as f64).product::<f64>();
    let c: Vec<f64> = (0..=q)
        .map(|k| fact(2 * q - k) * fact(q) / (fact(2 * q) * fact(k) * fact(q - k)))
        .collect();
    let mut num = vec![0.0; n * n];
    let mut den = vec![0.0; n * n];
    let mut power: Vec<f64> = (0..n * n).map(|i| if i % (n + 1) == 0 { 1.0 } else { 0.0 }).collect();
    for (k, &ck) in c.iter().enumerate() {
        let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
        for i in 0..n * n {
            num[i] += ck * power[i];
            den[i] += sign * ck * power[i];
        }
        if k < q {
            power = mul(&power, &x);
        }
    }
    // R = D⁻¹ N, column by column.
    let mut lu = DenseLu::new(n);
    lu.factor(|i, j| den[i * n + j]);
    let mut r = vec![0.0; n * n];
    let mut col = vec![0.0; n];
    for j in 0..n {
        for i in 0..n {
            col[i] = num[i * n + j];
        }
        lu.solve(&mut col);
        for i in 0..n {
            r[i * n + j] = col[i];
        }
    }
    for _ in 0..s {
        r = mul(&r, &r);
    }
    r
}

/// The exact flow of `y' = A y` (`A` row-major `n × n`), `exp(hA)` cached for the last `h`.
pub struct LinearFlow {
    a: Vec<f64>,
    n: usize,
    cached: Option<(f64, Vec<f64>)>,
    tmp: Vec<f64>,
}

impl LinearFlow {
    /// The flow of `y' = A y`.
    pub fn new(a: Vec<f64>, n: usize) -> Self {
        assert_eq!(a.len(), n * n, "A must be n × n");
        LinearFlow {
            a,
            n,
            cached: None,
            tmp: vec![0.0; n],
        }
    }
}

impl Flow for LinearFlow {
    fn advance(&mut self, _t: f64, h: f64, y: &mut [f64]) -> Result<(), SolveError> {
        let n = self.n;
        if self.cached.as_ref().is_none_or(|(hc, _)| *hc != h) {
            let ha: Vec<f64> = self.a.iter().map(|v| v * h).collect();
            self.cached = Some((h, expm(&ha, n)));
        }
        let e = &self.cached.as_ref().expect("set above").1;
        for i in 0..n {
            self.tmp[i] = (0..n).map(|j| e[i * n + j] * y[j]).sum();
        }
        y.copy_from_slice(&self.tmp);
        Ok(())
    }
}

/// A part advanced by a stiff solve (any [`StiffMethod`](super::StiffMethod), adaptive
/// or fixed-step).
pub struct SolverFlow<S> {
    /// The part's system.
    pub system: S,
    /// How it is solved over each sub-step.
    pub config: StiffConfig,
}

impl<S: OdeSystem<f64> + Jacobian<f64>> Flow for SolverFlow<S> {
    fn advance(&mut self, t: f64, h: f64, y: &mut [f64]) -> Result<(), SolveError> {
        let sol = solve(&mut self.system, y, t, t + h, &[], &self.config)?;
        y.copy_from_slice(&sol.y_final);
        Ok(())
    }
}
