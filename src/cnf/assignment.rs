//! Exact linear assignment on a dense square cost matrix: the permutation `σ`
//! minimising `Σᵢ c[i][σ(i)]`, by shortest augmenting paths (Jonker & Volgenant 1987,
//! "A shortest augmenting path algorithm for dense and sparse linear assignment
//! problems"; the dual updates as in Crouse 2016, "On implementing 2D rectangular
//! assignment algorithms").
//!
//! It starts from Jonker and Volgenant's column reduction (`v_j = minᵢ c_ij`, each
//! column's cheapest row assigned when still free) and their augmenting row reduction
//! (auction-like bids of the free rows), which assign most rows cheaply, then grows
//! one shortest augmenting path (Dijkstra on the reduced costs
//! `c_ij − u_i − v_j ≥ 0`) per row left free, updating the duals so that the reduced
//! costs stay non-negative and vanish on the assignment. The result is optimal in exact
//! arithmetic; in floating point, to the rounding of the sums along a path.

/// The optimal permutation of the `n × n` row-major `cost` (finite values): entry `i`
/// is row `i`'s column. `O(n³)` at worst, about `O(n²)` per free row in practice.
/// Panics if `cost.len() != n²` (a caller's bug).
pub fn linear_assignment(cost: &[f64], n: usize) -> Vec<usize> {
    linear_assignment_with_duals(cost, n).0
}

/// [`linear_assignment`] with its dual certificate `(u, v)`: `c_ij − u_i − v_j ≥ 0` for
/// every pair, `= 0` on the assignment, so no permutation costs less than `Σu + Σv`.
pub fn linear_assignment_with_duals(cost: &[f64], n: usize) -> (Vec<usize>, Vec<f64>, Vec<f64>) {
    assert_eq!(cost.len(), n * n, "linear_assignment: cost is not n × n");
    const FREE: usize = usize::MAX;
    let mut u = vec![0.0f64; n];
    let mut v = vec![f64::INFINITY; n];
    let mut col4row = vec![FREE; n];
    let mut row4col = vec![FREE; n];
    // Column reduction: v_j = min_i c_ij (u = 0), the argmin row taken if free.
    let mut argmin = vec![0usize; n];
    for (i, row) in cost.chunks_exact(n.max(1)).enumerate().take(n) {
        for (j, &c) in row.iter().enumerate() {
            if c < v[j] {
                v[j] = c;
                argmin[j] = i;
            }
        }
    }
    for j in 0..n {
        let i = argmin[j];
        if col4row[i] == FREE {
            col4row[i] = j;
            row4col[j] = i;
        }
    }
    augmenting_row_reduction(cost, n, &mut v, &mut col4row, &mut row4col);
    // Each assigned row's reduced costs are ≥ 0 and vanish on its column.
    for i in 0..n {
        if col4row[i] != FREE {
            u[i] = cost[i * n + col4row[i]] - v[col4row[i]];
        }
    }
    // Shortest augmenting paths from the free rows.
    let mut shortest = vec![0.0f64; n];
    let mut path = vec![FREE; n];
    let mut remaining: Vec<usize> = Vec::with_capacity(n);
    let mut scanned_rows: Vec<usize> = Vec::with_capacity(n);
    let mut scanned_cols: Vec<usize> = Vec::with_capacity(n);
    for start in 0..n {
        if col4row[start] != FREE {
            continue;
        }
        shortest.fill(f64::INFINITY);
        remaining.clear();
        remaining.extend(0..n);
        scanned_rows.clear();
        scanned_cols.clear();
        let mut min_val = 0.0f64;
        let mut i = start;
        let sink = loop {
            scanned_rows.push(i);
            let row = &cost[i * n..(i + 1) * n];
            let base = min_val - u[i];
            let mut lowest = f64::INFINITY;
            let mut at = 0;
            for (k, &j) in remaining.iter().enumerate() {
                let r = base + row[j] - v[j];
                if r < shortest[j] {
                    path[j] = i;
                    shortest[j] = r;
                }
                // Ties go to a free column, which ends the search.
                if shortest[j] < lowest || (shortest[j] == lowest && row4col[j] == FREE) {
                    lowest = shortest[j];
                    at = k;
                }
            }
            assert!(lowest.is_finite(), "linear_assignment: a cost is not finite");
            min_val = lowest;
            let j = remaining.swap_remove(at);
            scanned_cols.push(j);
            if row4col[j] == FREE {
                break j;
            }
            i = row4col[j];
        };
        // Dual updates keep the reduced costs non-negative and zero on the assignment.
        u[start] += min_val;
        for &r in &scanned_rows[1..] {
            u[r] += min_val - shortest[col4row[r]];
        }
        for &c in &scanned_cols {
            v[c] -= min_val - shortest[c];
        }
        // Augment along the path back to the start row.
        let mut j = sink;
        loop {
            let r = path[j];
            row4col[j] = r;
            let next = std::mem::replace(&mut col4row[r], j);
            if r == start {
                break;
            }
            j = next;
        }
    }
    (col4row, u, v)
}

/// Jonker and Volgenant's augmenting row reduction, two passes: each free row takes
/// its cheapest column under the reduced costs `c_ij − v_j`, lowering that column's
/// `v` to the gap to the row's second cheapest (an auction step) and freeing the row
/// that held it, which bids next. Every assigned row keeps its column at the minimum
/// of its reduced costs, and `v` only falls, so the reduced costs stay non-negative;
/// stopping early is safe (the rows still free go to the augmenting paths), and a cap
/// on the bids bounds the work.
fn augmenting_row_reduction(cost: &[f64], n: usize, v: &mut [f64], col4row: &mut [usize], row4col: &mut [usize]) {
    const FREE: usize = usize::MAX;
    for _pass in 0..2 {
        let mut free: Vec<usize> = (0..n).filter(|&i| col4row[i] == FREE).collect();
        if free.is_empty() {
            return;
        }
        let mut next = Vec::new();
        let mut bids = 0usize;
        while let Some(i) = free.pop() {
            bids += 1;
            if bids > 4 * n {
                next.push(i);
                next.append(&mut free);
                break;
            }
            let row = &cost[i * n..(i + 1) * n];
            let (mut u1, mut u2) = (f64::INFINITY, f64::INFINITY);
            let (mut j1, mut j2) = (0usize, FREE);
            for (j, (&c, &vj)) in row.iter().zip(v.iter()).enumerate() {
                let r = c - vj;
                if r < u2 {
                    if r < u1 {
                        (u2, j2) = (u1, j1);
                        (u1, j1) = (r, j);
                    } else {
                        (u2, j2) = (r, j);
                    }
                }
            }
            let mut i0 = row4col[j1];
            let strict = u1 < u2;
            if strict {
                v[j1] -= u2 - u1;
            } else if i0 != FREE && j2 != FREE {
                // A tie: take the second column instead, if that frees no one, or its holder.
                j1 = j2;
                i0 = row4col[j1];
            }
            col4row[i] = j1;
            row4col[j1] = i;
            if i0 != FREE {
                col4row[i0] = FREE;
                match strict {
                    true => free.push(i0),
                    false => next.push(i0),
                }
            }
        }
        if next.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn total(cost: &[f64], n: usize, sigma: &[usize]) -> f64 {
        sigma.iter().enumerate().map(|(i, &j)| cost[i * n + j]).sum()
    }

    fn brute_force(cost: &[f64], n: usize) -> f64 {
        fn rec(cost: &[f64], n: usize, i: usize, used: &mut Vec<bool>, acc: f64, best: &mut f64) {
            if i == n {
                *best = best.min(acc);
                return;
            }
            for j in 0..n {
                if !used[j] {
                    used[j] = true;
                    rec(cost, n, i + 1, used, acc + cost[i * n + j], best);
                    used[j] = false;
                }
            }
        }
        let mut best = f64::INFINITY;
        rec(cost, n, 0, &mut vec![false; n], 0.0, &mut best);
        best
    }

    fn is_permutation(sigma: &[usize]) -> bool {
        let mut seen = vec![false; sigma.len()];
        sigma
            .iter()
            .all(|&j| j < seen.len() && !std::mem::replace(&mut seen[j], true))
    }

    #[test]
    fn tiny_problems_reach_the_brute_force_optimum_ties_included() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for trial in 0..400 {
            let n = 1 + trial % 7;
            // Small integer costs make many ties; real ones none.
            let cost: Vec<f64> = (0..n * n)
                .map(|_| match trial % 2 {
                    0 => rng.random_range(0..4) as f64,
                    _ => rng.random::<f64>() * 10.0 - 5.0,
                })
                .collect();
            let sigma = linear_assignment(&cost, n);
            assert!(is_permutation(&sigma), "{sigma:?}");
            let (got, want) = (total(&cost, n, &sigma), brute_force(&cost, n));
            assert!(
                (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                "n {n}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn the_duals_certify_optimality_on_point_clouds() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for &n in &[2usize, 17, 100, 256] {
            let x: Vec<[f64; 2]> = (0..n)
                .map(|_| [rng.random_range(-4.0..4.0), rng.random_range(-4.0..4.0)])
                .collect();
            let e: Vec<[f64; 2]> = (0..n)
                .map(|_| [rng.random_range(-1.0..1.0), rng.random_range(-2.0..2.0)])
                .collect();
            let cost: Vec<f64> = (0..n * n)
                .map(|k| {
                    let (a, b) = (x[k / n], e[k % n]);
                    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)
                })
                .collect();
            let (sigma, u, v) = linear_assignment_with_duals(&cost, n);
            assert!(is_permutation(&sigma));
            let scale = cost.iter().fold(0.0f64, |a, &b| a.max(b.abs()));
            for i in 0..n {
                for j in 0..n {
                    let r = cost[i * n + j] - u[i] - v[j];
                    assert!(r >= -1e-9 * scale, "n {n}: reduced cost {r} at ({i}, {j})");
                }
                let r = cost[i * n + sigma[i]] - u[i] - v[sigma[i]];
                assert!(r.abs() <= 1e-9 * scale, "n {n}: assigned reduced cost {r}");
            }
            // Weak duality: the assignment's cost equals the dual bound.
            let dual: f64 = u.iter().sum::<f64>() + v.iter().sum::<f64>();
            let primal = total(&cost, n, &sigma);
            assert!((primal - dual).abs() <= 1e-9 * primal.max(1.0), "{primal} vs {dual}");
        }
    }
}
