//! Exact linear assignment on a dense square cost matrix: the permutation `σ`
//! minimising `Σᵢ c[i][σ(i)]`, by shortest augmenting paths (Jonker & Volgenant 1987,
//! "A shortest augmenting path algorithm for dense and sparse linear assignment
//! problems"; the dual updates as in Crouse 2016, "On implementing 2D rectangular
//! assignment algorithms").
//!
//! It starts from Jonker and Volgenant's column reduction (`v_j = minᵢ c_ij`, each
//! column's cheapest row assigned when still free), then grows one shortest augmenting
//! path (Dijkstra on the reduced costs `c_ij − u_i − v_j ≥ 0`) per row left free,
//! updating the duals so that the reduced costs stay non-negative and vanish on the
//! assignment. The result is optimal in exact arithmetic; in floating point, to the
//! rounding of the sums along a path.
//!
//! Each step of a path search relaxes every column through one row in a single pass
//! (scanned columns are marked by a distance of −∞ rather than dropped from a list),
//! which runs on AVX-512 or AVX2 vectors where the CPU has them, with the same
//! arithmetic and the same choice of column as the scalar loop. Jonker and
//! Volgenant's augmenting row reduction is left out: on the batches of flow matching
//! (256 points of each toy dataset against a standard normal sample) it cost more than
//! the path steps it saved.

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
    #[cfg(target_arch = "x86_64")]
    {
        if crate::nn::has_avx512() {
            // SAFETY: the CPU has AVX-512F, AVX2 and FMA (checked just above).
            return unsafe { solve_avx512(cost, n) };
        }
        if crate::nn::has_avx2() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { solve_avx2(cost, n) };
        }
    }
    solve(cost, n)
}

/// [`solve`] built for AVX-512 (the same arithmetic, wider vectors).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn solve_avx512(cost: &[f64], n: usize) -> (Vec<usize>, Vec<f64>, Vec<f64>) {
    solve(cost, n)
}

/// [`solve`] built for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn solve_avx2(cost: &[f64], n: usize) -> (Vec<usize>, Vec<f64>, Vec<f64>) {
    solve(cost, n)
}

const FREE: usize = usize::MAX;

#[inline(always)]
fn solve(cost: &[f64], n: usize) -> (Vec<usize>, Vec<f64>, Vec<f64>) {
    let mut u = vec![0.0f64; n];
    let mut v = vec![f64::INFINITY; n];
    let mut col4row = vec![FREE; n];
    let mut row4col = vec![FREE; n];
    // Column reduction: v_j = min_i c_ij (u = 0), the argmin row taken if free.
    let mut argmin = vec![0usize; n];
    for (i, row) in cost.chunks_exact(n.max(1)).enumerate().take(n) {
        for ((vj, am), &c) in v.iter_mut().zip(argmin.iter_mut()).zip(row) {
            let lower = c < *vj;
            *vj = if lower { c } else { *vj };
            *am = if lower { i } else { *am };
        }
    }
    for j in 0..n {
        let i = argmin[j];
        if col4row[i] == FREE {
            col4row[i] = j;
            row4col[j] = i;
        }
    }
    // Each assigned row's reduced costs are ≥ 0 and vanish on its column.
    for i in 0..n {
        if col4row[i] != FREE {
            u[i] = cost[i * n + col4row[i]] - v[col4row[i]];
        }
    }
    // Shortest augmenting paths from the free rows. `dist` holds the tentative
    // distances of the columns not yet scanned and −∞ for the scanned ones, whose final
    // distances are in `fin`.
    let mut dist = vec![0.0f64; n];
    let mut fin = vec![0.0f64; n];
    let mut path = vec![FREE; n];
    let mut scanned_rows: Vec<usize> = Vec::with_capacity(n);
    let mut scanned_cols: Vec<usize> = Vec::with_capacity(n);
    for start in 0..n {
        if col4row[start] != FREE {
            continue;
        }
        dist.fill(f64::INFINITY);
        scanned_rows.clear();
        scanned_cols.clear();
        let mut min_val = 0.0f64;
        let mut i = start;
        let sink = loop {
            scanned_rows.push(i);
            let row = &cost[i * n..(i + 1) * n];
            let j = relax(row, &v, min_val - u[i], i, &mut dist, &mut path);
            assert!(j != FREE, "linear_assignment: a cost is not finite");
            let lowest = dist[j];
            min_val = lowest;
            fin[j] = lowest;
            dist[j] = f64::NEG_INFINITY;
            scanned_cols.push(j);
            if row4col[j] == FREE {
                break j;
            }
            i = row4col[j];
        };
        // Dual updates keep the reduced costs non-negative and zero on the assignment.
        u[start] += min_val;
        for &r in &scanned_rows[1..] {
            u[r] += min_val - fin[col4row[r]];
        }
        for &c in &scanned_cols {
            v[c] -= min_val - fin[c];
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

/// Relaxes the unscanned columns through row `i`: `dist_j ← min(dist_j, base + c_ij −
/// v_j)`, `path_j ← i` where it fell; returns the first unscanned column at the lowest
/// tentative distance (`FREE` if every column is scanned or no distance is finite).
#[inline(always)]
fn relax(row: &[f64], v: &[f64], base: f64, i: usize, dist: &mut [f64], path: &mut [usize]) -> usize {
    assert!(v.len() == row.len() && dist.len() == row.len() && path.len() == row.len());
    #[cfg(target_arch = "x86_64")]
    if crate::nn::has_avx512() {
        // SAFETY: the CPU has AVX-512F (checked just above); the lengths were checked.
        return unsafe { relax_avx512(row, v, base, i, dist, path) };
    }
    #[cfg(target_arch = "x86_64")]
    if crate::nn::has_avx2() {
        // SAFETY: the CPU has AVX2 (checked just above); the lengths were checked.
        return unsafe { relax_avx2(row, v, base, i, dist, path) };
    }
    relax_from(0, (f64::INFINITY, FREE), row, v, base, i, dist, path)
}

/// [`relax`] from column `from` on, `best` the lowest distance so far and its column.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn relax_from(
    from: usize,
    best: (f64, usize),
    row: &[f64],
    v: &[f64],
    base: f64,
    i: usize,
    dist: &mut [f64],
    path: &mut [usize],
) -> usize {
    let (mut low, mut at) = best;
    for j in from..row.len() {
        let r = base + row[j] - v[j];
        if r < dist[j] {
            dist[j] = r;
            path[j] = i;
        }
        if dist[j] != f64::NEG_INFINITY && dist[j] < low {
            (low, at) = (dist[j], j);
        }
    }
    at
}

/// [`relax`] four columns at a time, in two interleaved chains of running minima (so
/// that one chain's compare and blend overlap the other's): the same arithmetic and
/// the same column.
///
/// # Safety
/// The CPU must have AVX2, and `v`, `dist` and `path` be as long as `row`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn relax_avx2(row: &[f64], v: &[f64], base: f64, i: usize, dist: &mut [f64], path: &mut [usize]) -> usize {
    use std::arch::x86_64::*;
    let split = row.len() - row.len() % 8;
    let vb = _mm256_set1_pd(base);
    let vi = _mm256_castsi256_pd(_mm256_set1_epi64x(i as i64));
    let (ninf, inf) = (_mm256_set1_pd(f64::NEG_INFINITY), _mm256_set1_pd(f64::INFINITY));
    let never = _mm256_castsi256_pd(_mm256_set1_epi64x(i64::MAX));
    // Per chain and lane, the lowest distance and the first column at it.
    let (mut low0, mut low1, mut at0, mut at1) = (inf, inf, never, never);
    let mut cols = _mm256_setr_epi64x(0, 1, 2, 3);
    let four = _mm256_set1_epi64x(4);
    let (dp, pp) = (dist.as_mut_ptr(), path.as_mut_ptr().cast::<f64>());
    // Relaxes the four columns from `k` and folds them into one chain's minima.
    macro_rules! block {
        ($k:expr, $low:ident, $at:ident) => {{
            let k = $k;
            // SAFETY: k + 4 ≤ split ≤ the length of every slice, and `dp`, `pp` are the
            // only accesses to `dist` and `path` while the loop runs.
            unsafe {
                let c = _mm256_loadu_pd(row.as_ptr().add(k));
                let r = _mm256_sub_pd(_mm256_add_pd(vb, c), _mm256_loadu_pd(v.as_ptr().add(k)));
                let d = _mm256_loadu_pd(dp.add(k));
                let better = _mm256_cmp_pd::<_CMP_LT_OQ>(r, d);
                let d = _mm256_blendv_pd(d, r, better);
                _mm256_storeu_pd(dp.add(k), d);
                _mm256_storeu_pd(pp.add(k), _mm256_blendv_pd(_mm256_loadu_pd(pp.add(k)), vi, better));
                let open = _mm256_cmp_pd::<_CMP_NEQ_OQ>(d, ninf);
                let lower = _mm256_and_pd(open, _mm256_cmp_pd::<_CMP_LT_OQ>(d, $low));
                $low = _mm256_blendv_pd($low, d, lower);
                $at = _mm256_blendv_pd($at, _mm256_castsi256_pd(cols), lower);
            }
            cols = _mm256_add_epi64(cols, four);
        }};
    }
    for k in (0..split).step_by(8) {
        block!(k, low0, at0);
        block!(k + 4, low1, at1);
    }
    let (mut lows, mut ats) = ([0.0f64; 8], [0i64; 8]);
    // SAFETY: both arrays hold two chains of four lanes.
    unsafe {
        _mm256_storeu_pd(lows.as_mut_ptr(), low0);
        _mm256_storeu_pd(lows.as_mut_ptr().add(4), low1);
        _mm256_storeu_pd(ats.as_mut_ptr().cast::<f64>(), at0);
        _mm256_storeu_pd(ats.as_mut_ptr().add(4).cast::<f64>(), at1);
    }
    let mut best = (f64::INFINITY, FREE);
    for (&l, &a) in lows.iter().zip(&ats) {
        if l < best.0 || (l == best.0 && l < f64::INFINITY && (a as usize) < best.1) {
            best = (l, a as usize);
        }
    }
    relax_from(split, best, row, v, base, i, dist, path)
}

/// [`relax`] eight columns at a time: the same arithmetic and the same column.
///
/// # Safety
/// The CPU must have AVX-512F, and `v`, `dist` and `path` be as long as `row`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn relax_avx512(row: &[f64], v: &[f64], base: f64, i: usize, dist: &mut [f64], path: &mut [usize]) -> usize {
    use std::arch::x86_64::*;
    let split = row.len() - row.len() % 8;
    let vb = _mm512_set1_pd(base);
    let vi = _mm512_set1_epi64(i as i64);
    let (ninf, inf) = (_mm512_set1_pd(f64::NEG_INFINITY), _mm512_set1_pd(f64::INFINITY));
    let mut low = inf;
    // Per lane, the first column at its lowest distance.
    let mut at = _mm512_set1_epi64(i64::MAX);
    let mut cols = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
    let eight = _mm512_set1_epi64(8);
    for k in (0..split).step_by(8) {
        // SAFETY: k + 8 ≤ split ≤ the length of every slice.
        unsafe {
            let c = _mm512_loadu_pd(row.as_ptr().add(k));
            let r = _mm512_sub_pd(_mm512_add_pd(vb, c), _mm512_loadu_pd(v.as_ptr().add(k)));
            let d = _mm512_loadu_pd(dist.as_ptr().add(k));
            let better = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(r, d);
            let d = _mm512_mask_blend_pd(better, d, r);
            _mm512_storeu_pd(dist.as_mut_ptr().add(k), d);
            _mm512_mask_storeu_epi64(path.as_mut_ptr().add(k).cast::<i64>(), better, vi);
            let open = _mm512_cmp_pd_mask::<_CMP_NEQ_OQ>(d, ninf);
            let lower = _mm512_mask_cmp_pd_mask::<_CMP_LT_OQ>(open, d, low);
            low = _mm512_mask_blend_pd(lower, low, d);
            at = _mm512_mask_blend_epi64(lower, at, cols);
        }
        cols = _mm512_add_epi64(cols, eight);
    }
    let lowest = _mm512_reduce_min_pd(low);
    let best = match lowest < f64::INFINITY {
        true => {
            let tied = _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(low, _mm512_set1_pd(lowest));
            let first = _mm512_mask_reduce_min_epi64(tied, at);
            (lowest, first as usize)
        }
        false => (f64::INFINITY, FREE),
    };
    relax_from(split, best, row, v, base, i, dist, path)
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

    /// The vector relaxations change the same distances and paths and pick the same
    /// column as the scalar loop, ties and scanned columns included.
    #[test]
    fn vector_relaxations_match_the_scalar_loop() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for trial in 0..300 {
            let n = 1 + trial % 37;
            // Coarse values, so that ties are common.
            let draw = |rng: &mut ChaCha8Rng| f64::from(rng.random_range(0..6u8)) * 0.5;
            let row: Vec<f64> = (0..n).map(|_| draw(&mut rng)).collect();
            let v: Vec<f64> = (0..n).map(|_| draw(&mut rng)).collect();
            let dist0: Vec<f64> = (0..n)
                .map(|_| match rng.random_range(0..4u8) {
                    0 => f64::NEG_INFINITY,
                    1 => f64::INFINITY,
                    _ => draw(&mut rng),
                })
                .collect();
            let path0: Vec<usize> = (0..n).map(|j| j + 100).collect();
            let base = draw(&mut rng) - 1.0;
            let (mut dist, mut path) = (dist0.clone(), path0.clone());
            let want = relax_from(0, (f64::INFINITY, FREE), &row, &v, base, 7, &mut dist, &mut path);
            if dist0.iter().any(|&d| d != f64::NEG_INFINITY) {
                assert_ne!(want, FREE);
                assert_eq!(
                    dist[want],
                    dist.iter()
                        .copied()
                        .filter(|&d| d != f64::NEG_INFINITY)
                        .fold(f64::INFINITY, f64::min)
                );
            }
            #[cfg(target_arch = "x86_64")]
            {
                type Relax = unsafe fn(&[f64], &[f64], f64, usize, &mut [f64], &mut [usize]) -> usize;
                let mut kernels: Vec<(&str, Relax)> = Vec::new();
                if is_x86_feature_detected!("avx2") {
                    kernels.push(("avx2", relax_avx2));
                }
                if is_x86_feature_detected!("avx512f") {
                    kernels.push(("avx512", relax_avx512));
                }
                for (name, kernel) in kernels {
                    let (mut d, mut p) = (dist0.clone(), path0.clone());
                    // SAFETY: the CPU has the kernel's features; the slices share a length.
                    let got = unsafe { kernel(&row, &v, base, 7, &mut d, &mut p) };
                    assert_eq!((got, &d, &p), (want, &dist, &path), "{name}, n = {n}");
                }
            }
        }
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
