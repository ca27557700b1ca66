//! Standardizer: forward/inverse round trip, log-det against the map's Jacobian,
//! normalisation of a density carried through it, and refusal of constant columns.

use std::f64::consts::PI;

use cnflow::data::{DataError, Dataset, Standardizer};
use ndarray::{array, Array2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Points with distinct, non-trivial column means and scales.
fn data() -> Array2<f64> {
    let x = Dataset::Pinwheel.sample(500, &mut ChaCha8Rng::seed_from_u64(5));
    let mut y = Array2::zeros((500, 3));
    for (i, r) in x.rows().into_iter().enumerate() {
        y[[i, 0]] = 10.0 + 3.0 * r[0];
        y[[i, 1]] = -0.001 * r[1];
        y[[i, 2]] = 1e4 + 250.0 * (r[0] - r[1]);
    }
    y
}

#[test]
fn forward_gives_zero_mean_unit_std_and_inverse_undoes_it() {
    let x = data();
    let s = Standardizer::fit(x.view()).expect("fit");
    let u = s.forward(x.view()).expect("forward");
    for m in u.mean_axis(Axis(0)).expect("rows") {
        assert!(m.abs() < 1e-12, "mean {m}");
    }
    for sd in u.std_axis(Axis(0), 0.0) {
        assert!((sd - 1.0).abs() < 1e-12, "std {sd}");
    }
    let back = s.inverse(u.view()).expect("inverse");
    for (a, b) in back.iter().zip(x.iter()) {
        assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
    }
}

#[test]
fn log_det_matches_log_abs_det_of_the_jacobian() {
    let x = data();
    let s = Standardizer::fit(x.view()).expect("fit");
    let d = s.dim();
    let x0 = x.row(7).to_owned();
    let h = 1e-3;
    let mut jac = Array2::<f64>::zeros((d, d));
    for j in 0..d {
        let mut plus = x0.clone().insert_axis(Axis(0));
        let mut minus = plus.clone();
        plus[[0, j]] += h;
        minus[[0, j]] -= h;
        let col = (s.forward(plus.view()).expect("f") - s.forward(minus.view()).expect("f")) / (2.0 * h);
        jac.column_mut(j).assign(&col.row(0));
    }
    // The map is diagonal: off-diagonal entries vanish, det is the diagonal product.
    for i in 0..d {
        for j in 0..d {
            if i != j {
                assert_eq!(jac[[i, j]], 0.0);
            }
        }
    }
    let log_abs_det: f64 = (0..d).map(|i| jac[[i, i]].abs().ln()).sum();
    assert!(
        (log_abs_det - s.log_det()).abs() < 1e-6,
        "{log_abs_det} vs {}",
        s.log_det()
    );
}

#[test]
fn standard_normal_carried_to_user_units_integrates_to_one() {
    let s = Standardizer {
        mean: array![1.0, -2.0],
        std: array![0.5, 3.0],
    };
    // p_x(x) = N(forward(x); 0, I) · exp(log_det) over a grid covering ±8σ.
    let n = 400;
    let (lo0, hi0) = (1.0 - 4.0, 1.0 + 4.0);
    let (lo1, hi1) = (-2.0 - 24.0, -2.0 + 24.0);
    let (h0, h1) = ((hi0 - lo0) / n as f64, (hi1 - lo1) / n as f64);
    let mut grid = Array2::<f64>::zeros((n * n, 2));
    for (k, mut p) in grid.rows_mut().into_iter().enumerate() {
        p[0] = lo0 + ((k / n) as f64 + 0.5) * h0;
        p[1] = lo1 + ((k % n) as f64 + 0.5) * h1;
    }
    let u = s.forward(grid.view()).expect("forward");
    let log_p_u = u.map_axis(Axis(1), |r| -0.5 * r.dot(&r) - (2.0 * PI).ln());
    let log_p_x = s.log_density_x(&log_p_u);
    let z: f64 = log_p_x.iter().map(|v| v.exp()).sum::<f64>() * h0 * h1;
    assert!((z - 1.0).abs() < 1e-4, "integral {z}");
}

#[test]
fn constant_column_is_refused_naming_the_column() {
    let mut x = data();
    x.column_mut(1).fill(0.1); // 0.1 is not exact in binary: std is tiny, not zero
    let err = Standardizer::fit(x.view()).expect_err("fail");
    assert!(matches!(err, DataError::ZeroVariance { column: 2, .. }), "{err:?}");
    assert!(err.to_string().contains("column 2"), "{err}");
    x.column_mut(1).fill(0.0);
    assert!(matches!(
        Standardizer::fit(x.view()),
        Err(DataError::ZeroVariance { column: 2, .. })
    ));
}

#[test]
fn too_few_points_and_wrong_dimension_are_refused() {
    assert!(matches!(
        Standardizer::fit(array![[1.0, 2.0]].view()),
        Err(DataError::TooFewPoints { n_rows: 1 })
    ));
    let s = Standardizer::fit(data().view()).expect("fit");
    let wrong = Array2::<f64>::zeros((4, 2));
    assert!(matches!(
        s.forward(wrong.view()),
        Err(DataError::DimensionMismatch {
            n_columns: 2,
            n_expected: 3
        })
    ));
    assert!(s.inverse(wrong.view()).is_err());
}

#[test]
fn serde_round_trip_and_validation() {
    let s = Standardizer::fit(data().view()).expect("fit");
    let text = serde_json::to_string(&s).expect("serialize");
    let back: Standardizer = serde_json::from_str(&text).expect("deserialize");
    assert_eq!(back, s);
    assert!(back.validate().is_ok());
    let bad = Standardizer {
        mean: array![0.0, 0.0],
        std: array![1.0, -1.0],
    };
    assert!(matches!(bad.validate(), Err(DataError::InvalidScale { column: 2, .. })));
    assert_eq!(Standardizer::identity(3).log_det(), 0.0);
}
