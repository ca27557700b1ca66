//! Steppers: one attempted step of a method, its error estimate and its dense output.
//! A stepper never picks its step size; the controller does (see [`Solver`](super::Solver)).
//!
//! [`ExplicitRk`] runs any explicit Runge–Kutta [`Tableau`], a user's own included:
//!
//! ```text
//! k_i   = f(t + c_i h, y + h Σ_{j<i} a_ij k_j)      y_new = y + h Σ_i b_i k_i
//! err   = h Σ_i e_i k_i
//! ```

use super::system::OdeSystem;
use super::tableau::{Interpolant, Tableau};
use crate::Real;

/// One method's steps: what the driver needs from it.
pub trait Stepper<T: Real> {
    /// Sizes the buffers for a state of `n` components (a no-op when unchanged).
    fn resize(&mut self, n: usize);
    /// Order of the propagated solution.
    fn order(&self) -> u32;
    /// Exponent order `k` of the error estimate (one more than the lower order of the
    /// pair), or `None` when the method has no error estimate.
    fn error_exponent(&self) -> Option<u32>;
    /// Makes `(t0, y0)` the current point and evaluates its derivative (one evaluation).
    fn init<S: OdeSystem<T> + ?Sized>(&mut self, system: &mut S, t0: T, y0: &[T]);
    /// The current state.
    fn y(&self) -> &[T];
    /// `f` at the current point.
    fn f(&self) -> &[T];
    /// Attempts a step of size `h` from the current point `t`: computes the candidate
    /// [`Stepper::y_new`]; returns the evaluations made.
    fn attempt<S: OdeSystem<T> + ?Sized>(&mut self, system: &mut S, t: T, h: T) -> usize;
    /// The candidate of the last attempt.
    fn y_new(&self) -> &[T];
    /// Weighted RMS norm of the last attempt's error estimate over the components the
    /// mask keeps (0 for a method without an estimate).
    fn error_norm(&mut self, h: T, rtol: T, atol: T, mask: Option<&[bool]>) -> f64;
    /// Whether the last stage of an accepted step is `f(t + h, y_new)` (first same as
    /// last), so accepting costs no evaluation.
    fn fsal(&self) -> bool;
    /// Appends the state at `t + θh` inside the last attempt to `out`; may evaluate
    /// `f(t + h, y_new)` (returns the evaluations made).
    fn interpolate<S: OdeSystem<T> + ?Sized>(
        &mut self,
        system: &mut S,
        t: T,
        h: T,
        theta: T,
        out: &mut Vec<T>,
    ) -> usize;
    /// Makes the last attempt's end `(t_new, y_new)` the current point. `need_f` says
    /// the next step will need `f` there (not at the end of a solve); returns the
    /// evaluations made.
    fn accept<S: OdeSystem<T> + ?Sized>(&mut self, system: &mut S, t_new: T, need_f: bool) -> usize;
    /// Stage derivatives `k_1..k_s` of the last attempt (valid until the next
    /// [`Stepper::accept`]).
    fn stages(&self) -> &[Vec<T>];
}

/// Tableau coefficients in the working float type, zeros left out.
pub(crate) struct Coefficients<T> {
    pub c: Vec<T>,
    pub a: Vec<Vec<(usize, T)>>,
    pub b: Vec<(usize, T)>,
    pub e: Vec<(usize, T)>,
    pub dense: Vec<Vec<T>>,
}

impl<T: Real> Coefficients<T> {
    pub fn new(tab: &Tableau) -> Self {
        let nonzero = |row: &[f64]| -> Vec<(usize, T)> {
            row.iter()
                .enumerate()
                .filter(|(_, &x)| x != 0.0)
                .map(|(j, &x)| (j, T::c(x)))
                .collect()
        };
        let dense = match tab.interpolant {
            Interpolant::Hermite => Vec::new(),
            Interpolant::Polynomial(rows) => rows.iter().map(|r| r.iter().map(|&x| T::c(x)).collect()).collect(),
        };
        Coefficients {
            c: tab.c.iter().map(|&x| T::c(x)).collect(),
            a: tab.a.iter().map(|r| nonzero(r)).collect(),
            b: nonzero(tab.b),
            e: tab.b_err.map(nonzero).unwrap_or_default(),
            dense,
        }
    }
}

/// An explicit Runge–Kutta method from its [`Tableau`], with its stage buffers.
pub struct ExplicitRk<T: Real> {
    tab: &'static Tableau,
    coef: Coefficients<T>,
    n: usize,
    /// Stage derivatives `k_1..k_s`.
    k: Vec<Vec<T>>,
    y: Vec<T>,
    y_new: Vec<T>,
    y_stage: Vec<T>,
    /// `f(t_new, y_new)` for methods without FSAL (next step's `k_1`).
    f_new: Vec<T>,
    have_f_new: bool,
    /// `Σ e_i k_i`, the error estimate divided by `h`.
    err: Vec<T>,
}

impl<T: Real> ExplicitRk<T> {
    /// A stepper for `tab`. Check a tableau of your own with [`Tableau::check`] first.
    pub fn new(tab: &'static Tableau) -> Self {
        ExplicitRk {
            coef: Coefficients::new(tab),
            tab,
            n: 0,
            k: Vec::new(),
            y: Vec::new(),
            y_new: Vec::new(),
            y_stage: Vec::new(),
            f_new: Vec::new(),
            have_f_new: false,
            err: Vec::new(),
        }
    }

    /// The method's tableau.
    pub fn tableau(&self) -> &'static Tableau {
        self.tab
    }
}

impl<T: Real> Stepper<T> for ExplicitRk<T> {
    fn resize(&mut self, n: usize) {
        if self.n == n {
            return;
        }
        self.n = n;
        self.k = vec![vec![T::zero(); n]; self.tab.n_stages()];
        self.y = vec![T::zero(); n];
        self.y_new = vec![T::zero(); n];
        self.y_stage = vec![T::zero(); n];
        self.f_new = vec![T::zero(); n];
        self.err = vec![T::zero(); n];
    }

    fn order(&self) -> u32 {
        self.tab.order
    }

    fn error_exponent(&self) -> Option<u32> {
        self.tab
            .embedded_order
            .filter(|_| self.tab.is_adaptive())
            .map(|e| self.tab.order.min(e) + 1)
    }

    fn init<S: OdeSystem<T> + ?Sized>(&mut self, system: &mut S, t0: T, y0: &[T]) {
        self.y.copy_from_slice(y0);
        system.rhs(t0, &self.y, &mut self.k[0]);
    }

    fn y(&self) -> &[T] {
        &self.y
    }

    fn f(&self) -> &[T] {
        &self.k[0]
    }

    fn attempt<S: OdeSystem<T> + ?Sized>(&mut self, system: &mut S, t: T, h: T) -> usize {
        self.have_f_new = false;
        for i in 1..self.tab.n_stages() {
            self.y_stage.copy_from_slice(&self.y);
            for &(j, a) in &self.coef.a[i] {
                axpy(h * a, &self.k[j], &mut self.y_stage);
            }
            system.rhs(t + self.coef.c[i] * h, &self.y_stage, &mut self.k[i]);
        }
        if self.tab.fsal {
            self.y_new.copy_from_slice(&self.y_stage);
        } else {
            self.y_new.copy_from_slice(&self.y);
            for &(j, b) in &self.coef.b {
                axpy(h * b, &self.k[j], &mut self.y_new);
            }
        }
        self.tab.n_stages() - 1
    }

    fn y_new(&self) -> &[T] {
        &self.y_new
    }

    fn error_norm(&mut self, h: T, rtol: T, atol: T, mask: Option<&[bool]>) -> f64 {
        self.err.fill(T::zero());
        for &(i, w) in &self.coef.e {
            axpy(w, &self.k[i], &mut self.err);
        }
        let terms = self
            .err
            .iter()
            .zip(self.y.iter().zip(&self.y_new))
            .map(|(&e, (&y, &y_new))| {
                let scale = atol + rtol * y.abs().max(y_new.abs());
                h * e / scale
            });
        rms(mask, terms).f64()
    }

    fn fsal(&self) -> bool {
        self.tab.fsal
    }

    fn interpolate<S: OdeSystem<T> + ?Sized>(
        &mut self,
        system: &mut S,
        t: T,
        h: T,
        theta: T,
        out: &mut Vec<T>,
    ) -> usize {
        let mut n_evals = 0;
        let start = out.len();
        if self.coef.dense.is_empty() && !self.tab.fsal && !self.have_f_new {
            system.rhs(t + h, &self.y_new, &mut self.f_new);
            self.have_f_new = true;
            n_evals = 1;
        }
        out.extend_from_slice(&self.y);
        let out = &mut out[start..];
        if self.coef.dense.is_empty() {
            // Cubic Hermite on (y, f(t, y), y_new, f(t + h, y_new)).
            let th2 = theta * theta;
            let th3 = th2 * theta;
            let two = T::c(2.0);
            let three = T::c(3.0);
            let h01 = three * th2 - two * th3;
            let h10 = th3 - two * th2 + theta;
            let h11 = th3 - th2;
            let f1 = if self.tab.fsal {
                &self.k[self.tab.n_stages() - 1]
            } else {
                &self.f_new
            };
            for j in 0..self.n {
                out[j] += h01 * (self.y_new[j] - self.y[j]) + h * (h10 * self.k[0][j] + h11 * f1[j]);
            }
        } else {
            for (i, row) in self.coef.dense.iter().enumerate() {
                // b_i(θ) = Σ_m row[m] θ^(m+1), by Horner.
                let mut bi = T::zero();
                for &cm in row.iter().rev() {
                    bi = (bi + cm) * theta;
                }
                if bi != T::zero() {
                    axpy(h * bi, &self.k[i], out);
                }
            }
        }
        n_evals
    }

    fn accept<S: OdeSystem<T> + ?Sized>(&mut self, system: &mut S, t_new: T, need_f: bool) -> usize {
        let s = self.tab.n_stages();
        std::mem::swap(&mut self.y, &mut self.y_new);
        let mut n_evals = 0;
        if self.tab.fsal {
            self.k.swap(0, s - 1);
        } else if need_f {
            if !self.have_f_new {
                system.rhs(t_new, &self.y, &mut self.f_new);
                n_evals = 1;
            }
            std::mem::swap(&mut self.k[0], &mut self.f_new);
        }
        self.have_f_new = false;
        n_evals
    }

    fn stages(&self) -> &[Vec<T>] {
        &self.k
    }
}

#[inline]
pub(crate) fn axpy<T: Real>(alpha: T, x: &[T], y: &mut [T]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// Root mean square over the components the mask keeps (all when `None`); 0 if none.
pub(crate) fn rms<T: Real>(mask: Option<&[bool]>, terms: impl Iterator<Item = T>) -> T {
    let mut sum = T::zero();
    let mut count = 0usize;
    match mask {
        None => {
            for x in terms {
                sum += x * x;
                count += 1;
            }
        }
        Some(m) => {
            for (x, &keep) in terms.zip(m) {
                if keep {
                    sum += x * x;
                    count += 1;
                }
            }
        }
    }
    if count == 0 {
        T::zero()
    } else {
        (sum / T::c(count as f64)).sqrt()
    }
}
