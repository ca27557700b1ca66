//! Dense LU with partial pivoting (faer), sized once and refactored in place: the linear
//! solves of Newton's method and of Rosenbrock stages, and their transposes for the
//! discrete adjoint.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::lu::partial_pivoting::{factor, solve};
use faer::perm::PermRef;
use faer::{Conj, Mat, MatMut, Par};

/// The factorisation `P A = L U` of an `n × n` matrix, kept with its buffers.
pub struct DenseLu {
    n: usize,
    lu: Mat<f64>,
    perm: Vec<usize>,
    perm_inv: Vec<usize>,
    stack: MemBuffer,
    /// Whether the last factorisation met an exactly zero pivot (or a non-finite entry).
    singular: bool,
}

impl DenseLu {
    /// Buffers for `n × n` matrices.
    pub fn new(n: usize) -> Self {
        let req = factor::lu_in_place_scratch::<usize, f64>(n, n, Par::Seq, Default::default())
            .or(solve::solve_in_place_scratch::<usize, f64>(n, 1, Par::Seq))
            .or(solve::solve_transpose_in_place_scratch::<usize, f64>(n, 1, Par::Seq));
        DenseLu {
            n,
            lu: Mat::zeros(n, n),
            perm: vec![0; n],
            perm_inv: vec![0; n],
            stack: MemBuffer::new(req),
            singular: true,
        }
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.n
    }

    /// Factors the matrix with entries `a(i, j)`; returns `false` when it is singular
    /// (a zero pivot) or has a non-finite entry, in which case solves are meaningless.
    pub fn factor(&mut self, mut a: impl FnMut(usize, usize) -> f64) -> bool {
        let n = self.n;
        let mut finite = true;
        for j in 0..n {
            for i in 0..n {
                let v = a(i, j);
                finite &= v.is_finite();
                self.lu[(i, j)] = v;
            }
        }
        if !finite {
            self.singular = true;
            return false;
        }
        factor::lu_in_place(
            self.lu.as_mut(),
            &mut self.perm,
            &mut self.perm_inv,
            Par::Seq,
            MemStack::new(&mut self.stack),
            Default::default(),
        );
        self.singular = (0..n).any(|i| {
            let d = self.lu[(i, i)];
            d == 0.0 || !d.is_finite()
        });
        !self.singular
    }

    /// Whether the last factorisation failed.
    pub fn is_singular(&self) -> bool {
        self.singular
    }

    /// Overwrites `x` with `A⁻¹ x`.
    pub fn solve(&mut self, x: &mut [f64]) {
        let n = self.n;
        let rhs = MatMut::from_column_major_slice_mut(x, n, 1);
        let perm = PermRef::new_checked(&self.perm, &self.perm_inv, n);
        solve::solve_in_place_with_conj(
            self.lu.as_ref(),
            self.lu.as_ref(),
            perm,
            Conj::No,
            rhs,
            Par::Seq,
            MemStack::new(&mut self.stack),
        );
    }

    /// Overwrites `x` with `A⁻ᵀ x` (the discrete adjoint's solves, reusing the forward
    /// factorisation).
    pub fn solve_transpose(&mut self, x: &mut [f64]) {
        let n = self.n;
        let rhs = MatMut::from_column_major_slice_mut(x, n, 1);
        let perm = PermRef::new_checked(&self.perm, &self.perm_inv, n);
        solve::solve_transpose_in_place_with_conj(
            self.lu.as_ref(),
            self.lu.as_ref(),
            perm,
            Conj::No,
            rhs,
            Par::Seq,
            MemStack::new(&mut self.stack),
        );
    }
}

/// Restarted GMRES (Saad & Schultz 1986) for `A x = b`, `A` given by its product
/// `apply(v, out)`: Arnoldi with modified Gram–Schmidt and Givens rotations, restarted
/// every `restart` iterations, at most `max_iters` products; stops when the residual is
/// below `rtol·‖b‖`. `x` holds the start on entry and the solution on return. Returns
/// the products used and whether it converged.
pub fn gmres(
    mut apply: impl FnMut(&[f64], &mut [f64]),
    b: &[f64],
    x: &mut [f64],
    restart: usize,
    max_iters: usize,
    rtol: f64,
) -> (usize, bool) {
    let n = b.len();
    let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
    let target = rtol * norm(b);
    let m = restart.max(1).min(n.max(1));
    let mut products = 0;
    let mut r = vec![0.0; n];
    let mut w = vec![0.0; n];
    let mut basis: Vec<Vec<f64>> = vec![vec![0.0; n]; m + 1];
    let mut h = vec![vec![0.0; m]; m + 1];
    let (mut cs, mut sn, mut g) = (vec![0.0; m], vec![0.0; m], vec![0.0; m + 1]);
    loop {
        apply(x, &mut r);
        products += 1;
        for (ri, bi) in r.iter_mut().zip(b) {
            *ri = bi - *ri;
        }
        let beta = norm(&r);
        if beta <= target || beta == 0.0 {
            return (products, true);
        }
        if products >= max_iters {
            return (products, false);
        }
        for (v, ri) in basis[0].iter_mut().zip(&r) {
            *v = ri / beta;
        }
        g.iter_mut().for_each(|v| *v = 0.0);
        g[0] = beta;
        let mut k = 0;
        for j in 0..m {
            apply(&basis[j], &mut w);
            products += 1;
            for i in 0..=j {
                let hij = w.iter().zip(&basis[i]).map(|(a, b)| a * b).sum::<f64>();
                h[i][j] = hij;
                for (wq, vq) in w.iter_mut().zip(&basis[i]) {
                    *wq -= hij * vq;
                }
            }
            let hnext = norm(&w);
            for i in 0..j {
                let (a, c) = (h[i][j], h[i + 1][j]);
                h[i][j] = cs[i] * a + sn[i] * c;
                h[i + 1][j] = -sn[i] * a + cs[i] * c;
            }
            let d = h[j][j].hypot(hnext);
            let (c, s) = if d == 0.0 { (1.0, 0.0) } else { (h[j][j] / d, hnext / d) };
            cs[j] = c;
            sn[j] = s;
            h[j][j] = d;
            g[j + 1] = -s * g[j];
            g[j] *= c;
            k = j + 1;
            if g[j + 1].abs() <= target || hnext <= 1e-300 || products >= max_iters {
                break;
            }
            for (v, wq) in basis[j + 1].iter_mut().zip(&w) {
                *v = wq / hnext;
            }
        }
        // Back-substitution for the k coefficients, then the update.
        let mut yk = vec![0.0; k];
        for i in (0..k).rev() {
            let s: f64 = (i + 1..k).map(|l| h[i][l] * yk[l]).sum();
            yk[i] = if h[i][i] != 0.0 { (g[i] - s) / h[i][i] } else { 0.0 };
        }
        for (i, yi) in yk.iter().enumerate() {
            for (xq, vq) in x.iter_mut().zip(&basis[i]) {
                *xq += yi * vq;
            }
        }
        if g[k].abs() <= target {
            return (products, true);
        }
        if products >= max_iters {
            return (products, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_and_transposed_solves_invert_the_matrix() {
        let n = 5;
        let a = |i: usize, j: usize| ((i * 7 + j * 3) % 5) as f64 + if i == j { 0.5 } else { 0.0 } - 1.0;
        let mut lu = DenseLu::new(n);
        assert!(lu.factor(a));
        let x: Vec<f64> = (0..n).map(|i| i as f64 - 1.5).collect();
        // b = A x, then A⁻¹ b = x; c = Aᵀ x, then A⁻ᵀ c = x.
        let mut b: Vec<f64> = (0..n).map(|i| (0..n).map(|j| a(i, j) * x[j]).sum()).collect();
        let mut c: Vec<f64> = (0..n).map(|i| (0..n).map(|j| a(j, i) * x[j]).sum()).collect();
        lu.solve(&mut b);
        lu.solve_transpose(&mut c);
        for i in 0..n {
            assert!((b[i] - x[i]).abs() < 1e-12, "{b:?}");
            assert!((c[i] - x[i]).abs() < 1e-12, "{c:?}");
        }
        assert!(!lu.factor(|i, _| i as f64), "a rank-one matrix is singular");
    }
}
