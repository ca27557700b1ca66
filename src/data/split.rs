//! Holding out a test set from a user's points.

use ndarray::{Array2, ArrayView2, Axis};
use rand::seq::SliceRandom;
use rand::Rng;

/// Splits `points` (one row per point) into a training and a test set by a seeded
/// shuffle: 10 % of the rows (at least 1, at most `max_test`) are held out.
pub fn train_test_split<R: Rng + ?Sized>(
    points: ArrayView2<'_, f64>,
    max_test: usize,
    rng: &mut R,
) -> (Array2<f64>, Array2<f64>) {
    let n = points.nrows();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let n_test = (n / 10).clamp(1, max_test.max(1)).min(n);
    let pick = |idx: &[usize]| points.select(Axis(0), idx);
    (pick(&order[n_test..]), pick(&order[..n_test]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_split_holds_out_a_tenth_and_loses_no_row() {
        let points = Array2::from_shape_fn((95, 2), |(i, j)| (2 * i + j) as f64);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let (train, test) = train_test_split(points.view(), 1000, &mut rng);
        assert_eq!((train.nrows(), test.nrows()), (86, 9));
        let mut firsts: Vec<f64> = train.column(0).iter().chain(test.column(0).iter()).copied().collect();
        firsts.sort_by(f64::total_cmp);
        assert_eq!(firsts, (0..95).map(|i| (2 * i) as f64).collect::<Vec<_>>());
        let (_, capped) = train_test_split(points.view(), 3, &mut rng);
        assert_eq!(capped.nrows(), 3);
    }
}
