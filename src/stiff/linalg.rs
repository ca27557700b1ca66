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
