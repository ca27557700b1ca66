//! The standard stiff test problems, with analytic Jacobians: Robertson's chemical
//! kinetics, Van der Pol's oscillator, HIRES and OREGO, as defined in the *Test Set for
//! IVP Solvers* (Mazzia & Magherini, University of Bari, release 2.4, 2008) and in Hairer
//! & Wanner, *Solving ODEs II*, §IV.1 and §IV.10.

use crate::ode::{Jacobian, OdeSystem};

/// Robertson (1966): `y1' = −0.04 y1 + 10⁴ y2 y3`, `y2' = 0.04 y1 − 10⁴ y2 y3 − 3·10⁷ y2²`,
/// `y3' = 3·10⁷ y2²`, from `(1, 0, 0)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Robertson;

impl OdeSystem<f64> for Robertson {
    fn rhs(&mut self, _t: f64, y: &[f64], dy: &mut [f64]) {
        let (a, b) = (0.04 * y[0], 1e4 * y[1] * y[2]);
        let c = 3e7 * y[1] * y[1];
        dy[0] = -a + b;
        dy[1] = a - b - c;
        dy[2] = c;
    }
}

impl Jacobian<f64> for Robertson {
    fn is_autonomous(&self) -> bool {
        true
    }
    fn jacobian(&mut self, _t: f64, y: &[f64], j: &mut [f64]) {
        j.copy_from_slice(&[
            -0.04,
            1e4 * y[2],
            1e4 * y[1],
            0.04,
            -1e4 * y[2] - 6e7 * y[1],
            -1e4 * y[1],
            0.0,
            6e7 * y[1],
            0.0,
        ]);
    }
}

/// Van der Pol's oscillator `x'' = μ (1 − x²) x' − x` as `y1' = y2`,
/// `y2' = μ (1 − y1²) y2 − y1`, usually from `(2, 0)`.
#[derive(Clone, Copy, Debug)]
pub struct VanDerPol {
    /// The stiffness parameter μ.
    pub mu: f64,
}

impl OdeSystem<f64> for VanDerPol {
    fn rhs(&mut self, _t: f64, y: &[f64], dy: &mut [f64]) {
        dy[0] = y[1];
        dy[1] = self.mu * (1.0 - y[0] * y[0]) * y[1] - y[0];
    }
}

impl Jacobian<f64> for VanDerPol {
    fn is_autonomous(&self) -> bool {
        true
    }
    fn jacobian(&mut self, _t: f64, y: &[f64], j: &mut [f64]) {
        j.copy_from_slice(&[
            0.0,
            1.0,
            -2.0 * self.mu * y[0] * y[1] - 1.0,
            self.mu * (1.0 - y[0] * y[0]),
        ]);
    }
}

/// The test set's scaled Van der Pol problem VDPOL: `y1' = y2`,
/// `y2' = ((1 − y1²) y2 − y1) / ε`, from `(2, 0)` on `[0, 2]`; ε = 10⁻⁶ there.
#[derive(Clone, Copy, Debug)]
pub struct VanDerPolScaled {
    /// ε = 1/μ².
    pub eps: f64,
}

impl OdeSystem<f64> for VanDerPolScaled {
    fn rhs(&mut self, _t: f64, y: &[f64], dy: &mut [f64]) {
        dy[0] = y[1];
        dy[1] = ((1.0 - y[0] * y[0]) * y[1] - y[0]) / self.eps;
    }
}

impl Jacobian<f64> for VanDerPolScaled {
    fn is_autonomous(&self) -> bool {
        true
    }
    fn jacobian(&mut self, _t: f64, y: &[f64], j: &mut [f64]) {
        j.copy_from_slice(&[
            0.0,
            1.0,
            (-2.0 * y[0] * y[1] - 1.0) / self.eps,
            (1.0 - y[0] * y[0]) / self.eps,
        ]);
    }
}

/// HIRES (Schäfer 1975; the test set's 8-component "High Irradiance RESponse" of a plant):
/// from `(1, 0, 0, 0, 0, 0, 0, 0.0057)` on `[0, 321.8122]`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hires;

impl OdeSystem<f64> for Hires {
    fn rhs(&mut self, _t: f64, y: &[f64], dy: &mut [f64]) {
        dy[0] = -1.71 * y[0] + 0.43 * y[1] + 8.32 * y[2] + 0.0007;
        dy[1] = 1.71 * y[0] - 8.75 * y[1];
        dy[2] = -10.03 * y[2] + 0.43 * y[3] + 0.035 * y[4];
        dy[3] = 8.32 * y[1] + 1.71 * y[2] - 1.12 * y[3];
        dy[4] = -1.745 * y[4] + 0.43 * y[5] + 0.43 * y[6];
        dy[5] = -280.0 * y[5] * y[7] + 0.69 * y[3] + 1.71 * y[4] - 0.43 * y[5] + 0.69 * y[6];
        dy[6] = 280.0 * y[5] * y[7] - 1.81 * y[6];
        dy[7] = -dy[6];
    }
}

impl Jacobian<f64> for Hires {
    fn is_autonomous(&self) -> bool {
        true
    }
    fn jacobian(&mut self, _t: f64, y: &[f64], j: &mut [f64]) {
        j.iter_mut().for_each(|v| *v = 0.0);
        let mut set = |r: usize, c: usize, v: f64| j[r * 8 + c] = v;
        set(0, 0, -1.71);
        set(0, 1, 0.43);
        set(0, 2, 8.32);
        set(1, 0, 1.71);
        set(1, 1, -8.75);
        set(2, 2, -10.03);
        set(2, 3, 0.43);
        set(2, 4, 0.035);
        set(3, 1, 8.32);
        set(3, 2, 1.71);
        set(3, 3, -1.12);
        set(4, 4, -1.745);
        set(4, 5, 0.43);
        set(4, 6, 0.43);
        set(5, 3, 0.69);
        set(5, 4, 1.71);
        set(5, 5, -0.43 - 280.0 * y[7]);
        set(5, 6, 0.69);
        set(5, 7, -280.0 * y[5]);
        set(6, 5, 280.0 * y[7]);
        set(6, 6, -1.81);
        set(6, 7, 280.0 * y[5]);
        set(7, 5, -280.0 * y[7]);
        set(7, 6, 1.81);
        set(7, 7, -280.0 * y[5]);
    }
}

/// OREGO, the Oregonator of Field & Noyes (1974) as in the test set: from `(1, 2, 3)` on
/// `[0, 360]`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Orego;

impl OdeSystem<f64> for Orego {
    fn rhs(&mut self, _t: f64, y: &[f64], dy: &mut [f64]) {
        dy[0] = 77.27 * (y[1] + y[0] * (1.0 - 8.375e-6 * y[0] - y[1]));
        dy[1] = (y[2] - (1.0 + y[0]) * y[1]) / 77.27;
        dy[2] = 0.161 * (y[0] - y[2]);
    }
}

impl Jacobian<f64> for Orego {
    fn is_autonomous(&self) -> bool {
        true
    }
    fn jacobian(&mut self, _t: f64, y: &[f64], j: &mut [f64]) {
        j.copy_from_slice(&[
            77.27 * (1.0 - 2.0 * 8.375e-6 * y[0] - y[1]),
            77.27 * (1.0 - y[0]),
            0.0,
            -y[1] / 77.27,
            -(1.0 + y[0]) / 77.27,
            1.0 / 77.27,
            0.161,
            0.0,
            -0.161,
        ]);
    }
}

/// `blocks` independent Robertson systems (a batch for block-diagonal Newton), block `k`
/// with its second rate constant scaled by `1 + k/blocks`.
pub struct RobertsonBatch {
    /// Number of systems.
    pub blocks: usize,
}
impl RobertsonBatch {
    /// Block `k`'s rate constants.
    pub fn rates(&self, k: usize) -> (f64, f64, f64) {
        (0.04, 1e4 * (1.0 + k as f64 / self.blocks as f64), 3e7)
    }
    fn block_jacobian(&self, k: usize, y: &[f64], jac: &mut [f64]) {
        let (a, b, c) = self.rates(k);
        let (y2, y3) = (y[1], y[2]);
        jac.copy_from_slice(&[
            -a,
            b * y3,
            b * y2,
            a,
            -b * y3 - 2.0 * c * y2,
            -b * y2,
            0.0,
            2.0 * c * y2,
            0.0,
        ]);
    }
}
impl crate::ode::OdeSystem<f64> for RobertsonBatch {
    fn rhs(&mut self, _t: f64, y: &[f64], dy: &mut [f64]) {
        for k in 0..self.blocks {
            let (a, b, c) = self.rates(k);
            let (y, dy) = (&y[3 * k..3 * k + 3], &mut dy[3 * k..3 * k + 3]);
            dy[0] = -a * y[0] + b * y[1] * y[2];
            dy[2] = c * y[1] * y[1];
            dy[1] = -dy[0] - dy[2];
        }
    }
}
impl crate::ode::Jacobian<f64> for RobertsonBatch {
    fn jacobian(&mut self, _t: f64, y: &[f64], jac: &mut [f64]) {
        let n = 3 * self.blocks;
        jac.iter_mut().for_each(|v| *v = 0.0);
        let mut block = [0.0; 9];
        for k in 0..self.blocks {
            self.block_jacobian(k, &y[3 * k..3 * k + 3], &mut block);
            for i in 0..3 {
                for j in 0..3 {
                    jac[(3 * k + i) * n + 3 * k + j] = block[3 * i + j];
                }
            }
        }
    }
}
impl super::BlockJacobian for RobertsonBatch {
    fn block_size(&self) -> usize {
        3
    }
    fn jacobian_blocks(&mut self, _t: f64, y: &[f64], blocks: &mut [f64]) {
        for k in 0..self.blocks {
            self.block_jacobian(k, &y[3 * k..3 * k + 3], &mut blocks[9 * k..9 * k + 9]);
        }
    }
}

/// The heat equation on (0, 1) with a cubic reaction, `u_t = u_xx − r u³`, by central
/// differences on `n` interior points with zero boundary values (largest eigenvalue
/// `≈ 4(n + 1)²`, so stiff): its JVP and its tridiagonal Jacobian.
pub struct HeatReaction {
    /// Interior points.
    pub n: usize,
    /// Reaction coefficient.
    pub r: f64,
}
impl HeatReaction {
    fn c(&self) -> f64 {
        ((self.n + 1) as f64).powi(2)
    }
}
impl crate::ode::OdeSystem<f64> for HeatReaction {
    fn rhs(&mut self, _t: f64, u: &[f64], du: &mut [f64]) {
        let (n, c) = (self.n, self.c());
        for i in 0..n {
            let l = if i > 0 { u[i - 1] } else { 0.0 };
            let r = if i + 1 < n { u[i + 1] } else { 0.0 };
            du[i] = c * (l - 2.0 * u[i] + r) - self.r * u[i].powi(3);
        }
    }
}
impl crate::ode::Jvp<f64> for HeatReaction {
    fn jvp(&mut self, t: f64, u: &[f64], v: &[f64], du: &mut [f64], jv: &mut [f64]) {
        self.rhs(t, u, du);
        let (n, c) = (self.n, self.c());
        for i in 0..n {
            let l = if i > 0 { v[i - 1] } else { 0.0 };
            let r = if i + 1 < n { v[i + 1] } else { 0.0 };
            jv[i] = c * (l - 2.0 * v[i] + r) - 3.0 * self.r * u[i] * u[i] * v[i];
        }
    }
}
impl crate::ode::Jacobian<f64> for HeatReaction {
    fn jacobian(&mut self, _t: f64, u: &[f64], jac: &mut [f64]) {
        let (n, c) = (self.n, self.c());
        jac.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..n {
            jac[i * n + i] = -2.0 * c - 3.0 * self.r * u[i] * u[i];
            if i > 0 {
                jac[i * n + i - 1] = c;
            }
            if i + 1 < n {
                jac[i * n + i + 1] = c;
            }
        }
    }
}
