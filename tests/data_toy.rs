//! Toy datasets: exact counts, seeding, names, and structural properties derived from
//! each generator's definition (DESIGN.md §4).

use std::f64::consts::PI;

use cnflow::data::{DataError, Dataset};
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn sample(d: Dataset, n: usize, seed: u64) -> Array2<f64> {
    d.sample(n, &mut ChaCha8Rng::seed_from_u64(seed))
}

fn radii(x: &Array2<f64>) -> Vec<f64> {
    x.rows().into_iter().map(|r| r[0].hypot(r[1])).collect()
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    s / n as f64
}

#[test]
fn every_dataset_returns_exactly_n_finite_2d_points() {
    for d in Dataset::ALL {
        for n in [0usize, 1, 2, 3, 5, 7, 101] {
            let x = sample(d, n, 7);
            assert_eq!(x.dim(), (n, 2), "{d} with n = {n}");
            assert!(x.iter().all(|v| v.is_finite()), "{d} with n = {n}");
        }
    }
}

#[test]
fn same_seed_gives_same_points_and_different_seed_different() {
    for d in Dataset::ALL {
        let a = sample(d, 50, 11);
        let b = sample(d, 50, 11);
        let c = sample(d, 50, 12);
        assert_eq!(a, b, "{d} not reproducible");
        assert_ne!(a, c, "{d} ignores the seed");
    }
}

#[test]
fn names_parse_back_and_unknown_name_lists_valid_ones() {
    assert_eq!(Dataset::ALL.len(), 8);
    for d in Dataset::ALL {
        assert_eq!(d.name().parse::<Dataset>().ok(), Some(d));
        assert_eq!(d.to_string(), d.name());
    }
    assert_eq!(" Moons ".parse::<Dataset>().ok(), Some(Dataset::Moons));
    for d in Dataset::ALL {
        let json = serde_json::to_string(&d).expect("serialize");
        assert_eq!(json, format!("\"{}\"", d.name()));
        assert_eq!(serde_json::from_str::<Dataset>(&json).ok(), Some(d));
    }
    let err = "9gaussians".parse::<Dataset>().err();
    assert!(matches!(err, Some(DataError::UnknownDataset { .. })));
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    for d in Dataset::ALL {
        assert!(msg.contains(d.name()), "message `{msg}` lacks {d}");
    }
}

#[test]
fn entropy_table_matches_design() {
    assert!((Dataset::Checkerboard.entropy() - 3.4657).abs() < 1e-4);
    let expected = [
        ("8gaussians", 2.832),
        ("circles", 3.267),
        ("rings", 2.621),
        ("moons", 2.397),
        ("swissroll", 2.668),
        ("2spirals", 2.644),
        ("pinwheel", 2.305),
    ];
    for (name, h) in expected {
        let d: Dataset = name.parse().expect("valid name");
        assert_eq!(d.entropy(), h, "{name}");
    }
}

/// Assigns each radius to the nearest of `centers`; returns counts and the RMS of the
/// radial residuals.
fn nearest_radius(r: &[f64], centers: &[f64]) -> (Vec<usize>, f64) {
    let mut counts = vec![0; centers.len()];
    let mut ss = 0.0;
    for &ri in r {
        let (k, res) = centers
            .iter()
            .map(|c| ri - c)
            .enumerate()
            .min_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .expect("non-empty centers");
        counts[k] += 1;
        ss += res * res;
    }
    (counts, (ss / r.len() as f64).sqrt())
}

/// `count` is within four standard deviations of a Binomial(n, p) draw's mean.
fn binomial_ok(count: usize, n: usize, p: f64) -> bool {
    let (mean, sd) = (n as f64 * p, (n as f64 * p * (1.0 - p)).sqrt());
    (count as f64 - mean).abs() <= 4.0 * sd
}

#[test]
fn rings_radii_cluster_at_three_quarter_steps_each_with_probability_a_quarter() {
    let x = sample(Dataset::Rings, 4003, 1);
    let centers = [3.0, 2.25, 1.5, 0.75];
    let (counts, rms) = nearest_radius(&radii(&x), &centers);
    assert!(counts.iter().all(|&c| binomial_ok(c, 4003, 0.25)), "{counts:?}");
    // Radial residual of isotropic N(0, 0.08²) noise around a circle.
    assert!((rms - 0.08).abs() < 0.006, "rms residual {rms}");
}

#[test]
fn circles_have_radii_three_and_one_and_a_half_with_noise_024() {
    let x = sample(Dataset::Circles, 4001, 2);
    let (counts, rms) = nearest_radius(&radii(&x), &[3.0, 1.5]);
    assert!(counts.iter().all(|&c| binomial_ok(c, 4001, 0.5)), "{counts:?}");
    // Noise 0.08 is added before the scaling by 3.
    assert!((rms - 0.24).abs() < 0.012, "rms residual {rms}");
}

#[test]
fn moons_mean_and_variance_match_definition() {
    let x = sample(Dataset::Moons, 20000, 3);
    let m0 = mean(x.column(0).iter().copied());
    let m1 = mean(x.column(1).iter().copied());
    // Raw means (1/2, 1/4), then ·2 + (-1, -0.2).
    assert!(m0.abs() < 0.02, "mean x {m0}");
    assert!((m1 - 0.3).abs() < 0.02, "mean y {m1}");
    let v0 = mean(x.column(0).iter().map(|v| (v - m0).powi(2)));
    let v1 = mean(x.column(1).iter().map(|v| (v - m1).powi(2)));
    // Raw variances 3/4 and 5/8 - 1/π - 1/16, plus noise 0.1², times 4.
    let v0_true = 4.0 * (0.75 + 0.01);
    let v1_true = 4.0 * (0.625 - 1.0 / PI - 0.0625 + 0.01);
    assert!((v0 / v0_true - 1.0).abs() < 0.03, "var x {v0} vs {v0_true}");
    assert!((v1 / v1_true - 1.0).abs() < 0.03, "var y {v1} vs {v1_true}");
}

#[test]
fn moons_put_half_the_points_on_each_arc() {
    // Upper arc 2(cos θ, sin θ) + (-1, -0.2); lower arc 2(1 - cos θ, 0.5 - sin θ) + (-1, -0.2).
    let arc = |upper: bool| -> Vec<[f64; 2]> {
        (0..=400)
            .map(|i| {
                let t = PI * i as f64 / 400.0;
                if upper {
                    [2.0 * t.cos() - 1.0, 2.0 * t.sin() - 0.2]
                } else {
                    [2.0 * (1.0 - t.cos()) - 1.0, 2.0 * (0.5 - t.sin()) - 0.2]
                }
            })
            .collect()
    };
    let (upper, lower) = (arc(true), arc(false));
    let dist = |arc: &[[f64; 2]], p: [f64; 2]| {
        arc.iter()
            .map(|c| (p[0] - c[0]).hypot(p[1] - c[1]))
            .fold(f64::INFINITY, f64::min)
    };
    let x = sample(Dataset::Moons, 1001, 4);
    let mut n_upper = 0;
    let mut ss = 0.0;
    for r in x.rows() {
        let p = [r[0], r[1]];
        let (du, dl) = (dist(&upper, p), dist(&lower, p));
        if du < dl {
            n_upper += 1;
        }
        ss += du.min(dl).powi(2);
    }
    // Each point is on the upper arc with probability ½; a few cross over near where
    // the arcs approach.
    assert!((n_upper as i64 - 500).abs() <= 80, "upper arc holds {n_upper}");
    // Distance to the curve is about |N(0, 0.2²)| in the normal direction.
    let rms = (ss / 1001.0).sqrt();
    assert!((rms - 0.2).abs() < 0.02, "rms distance {rms}");
}

#[test]
fn swissroll_mean_and_second_moment_match_definition() {
    let x = sample(Dataset::Swissroll, 20000, 5);
    let m0 = mean(x.column(0).iter().copied());
    let m1 = mean(x.column(1).iter().copied());
    // u ~ U[1.5π, 4.5π]: E[u cos u] = 2, E[u sin u] = 2/(3π); divided by 5.
    assert!((m0 - 0.4).abs() < 0.04, "mean x {m0}");
    assert!((m1 - 2.0 / (3.0 * PI) / 5.0).abs() < 0.04, "mean y {m1}");
    // E|x|² = (E[u²] + 2) / 25 with E[u²] = (a² + ab + b²)/3.
    let (a, b) = (1.5 * PI, 4.5 * PI);
    let r2_true = ((a * a + a * b + b * b) / 3.0 + 2.0) / 25.0;
    let r2 = mean(radii(&x).iter().map(|r| r * r));
    assert!((r2 / r2_true - 1.0).abs() < 0.02, "E|x|² {r2} vs {r2_true}");
    let r_max = radii(&x).into_iter().fold(0.0, f64::max);
    assert!(r_max < (b + 5.0) / 5.0, "max radius {r_max}");
}

#[test]
fn two_spirals_are_symmetric_under_negation() {
    let n = 20000;
    let x = sample(Dataset::TwoSpirals, n, 6);
    // Row i of the second arm is the negation of row i of the first, plus fresh noise:
    // the sum is N(0, 2·0.1²) per coordinate.
    let half = n / 2;
    let s2 = mean((0..half).flat_map(|i| {
        let a = x.row(i);
        let b = x.row(i + half);
        [(a[0] + b[0]).powi(2), (a[1] + b[1]).powi(2)]
    }));
    assert!((s2.sqrt() - 0.1 * 2f64.sqrt()).abs() < 0.005, "rms {}", s2.sqrt());
    let m0 = mean(x.column(0).iter().copied());
    let m1 = mean(x.column(1).iter().copied());
    assert!(m0.abs() < 0.03 && m1.abs() < 0.03, "mean ({m0}, {m1})");
}

#[test]
fn two_spirals_second_moment_matches_definition() {
    let x = sample(Dataset::TwoSpirals, 20000, 8);
    // t = 3π√U: E t² = 9π²/2, E[t cos t] = -4/(3π), E[t sin t] = 2 - 8/(9π²);
    // U₁, U₂ ~ U[0,1): mean 1/2, second moment 1/3.
    let e_t2 = 9.0 * PI * PI / 2.0;
    let e_tcos = -4.0 / (3.0 * PI);
    let e_tsin = 2.0 - 8.0 / (9.0 * PI * PI);
    let r2_true = (e_t2 - e_tcos * 0.5 + e_tsin * 0.5 + 2.0 / 3.0 / 4.0) / 9.0 + 2.0 * 0.01;
    let r2 = mean(radii(&x).iter().map(|r| r * r));
    assert!((r2 / r2_true - 1.0).abs() < 0.02, "E|x|² {r2} vs {r2_true}");
}

#[test]
fn pinwheel_has_five_arms_and_radial_second_moment() {
    let x = sample(Dataset::Pinwheel, 10000, 9);
    let angles: Vec<f64> = x.rows().into_iter().map(|r| r[1].atan2(r[0])).collect();
    let harmonic = |k: f64| {
        let c = mean(angles.iter().map(|a| (k * a).cos()));
        let s = mean(angles.iter().map(|a| (k * a).sin()));
        c.hypot(s)
    };
    // Five equal arms: harmonics 1..4 vanish, the fifth is strong.
    for k in 1..=4 {
        let h = harmonic(k as f64);
        assert!(h < 0.04, "harmonic {k} = {h}");
    }
    assert!(harmonic(5.0) > 0.3, "harmonic 5 = {}", harmonic(5.0));
    // Angle histogram over 5 sectors aligned with the arms: equal counts.
    let offset = 0.25 * 1f64.exp(); // arm k sits near angle -(2πk/5 + 0.25·e)
    let mut counts = [0usize; 5];
    for a in &angles {
        let t = (-a - offset + PI / 5.0).rem_euclid(2.0 * PI);
        counts[((t / (2.0 * PI / 5.0)) as usize).min(4)] += 1;
    }
    for c in counts {
        assert!((c as f64 / 2000.0 - 1.0).abs() < 0.08, "sector counts {counts:?}");
    }
    // Within an arm the angle offset follows the radius: -angle ≈ 2πk/5 + 0.25·e^{|x|/2}
    // (|x|/2 ≈ f₀), up to the tangential noise atan(f₁/f₀) ≈ N(0, 0.1²).
    let sector = 2.0 * PI / 5.0;
    let deltas: Vec<f64> = x
        .rows()
        .into_iter()
        .map(|r| {
            let predicted = 0.25 * (0.5 * r[0].hypot(r[1])).exp();
            (-r[1].atan2(r[0]) - predicted + sector / 2.0).rem_euclid(sector) - sector / 2.0
        })
        .collect();
    let mean_delta = mean(deltas.iter().copied());
    let rms_delta = mean(deltas.iter().map(|d| d * d)).sqrt();
    assert!(mean_delta.abs() < 0.02, "mean angle residual {mean_delta}");
    assert!(rms_delta < 0.15, "rms angle residual {rms_delta}");
    // |x|² = 4 |f|², E|f|² = 1 + 0.3² + 0.1².
    let r2 = mean(radii(&x).iter().map(|r| r * r));
    assert!((r2 / 4.4 - 1.0).abs() < 0.02, "E|x|² {r2}");
}

#[test]
fn checkerboard_and_eight_gaussians_scale_constants() {
    // checkerboard lies in [-4, 4)²; 8gaussians' centers at radius 4/1.414.
    let x = sample(Dataset::Checkerboard, 5000, 10);
    assert!(x.iter().all(|v| (-4.0..4.0).contains(v)));
    let x = sample(Dataset::EightGaussians, 20000, 10);
    let r2 = mean(radii(&x).iter().map(|r| r * r));
    // E|x|² = (16 + 2·0.25) / 1.414².
    let r2_true = (16.0 + 0.5) / (1.414f64 * 1.414);
    assert!((r2 / r2_true - 1.0).abs() < 0.01, "E|x|² {r2} vs {r2_true}");
}

#[test]
fn moons_circles_and_rings_are_iid_and_their_grid_versions_are_not() {
    use rand::SeedableRng;
    for d in [
        cnflow::data::Dataset::Moons,
        cnflow::data::Dataset::Circles,
        cnflow::data::Dataset::Rings,
    ] {
        // Two batches of 100 from one stream: i.i.d. points share no angle.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let angles = |x: &ndarray::Array2<f64>| -> Vec<i64> {
            let mut a: Vec<i64> = x
                .rows()
                .into_iter()
                .map(|r| (r[1].atan2(r[0]) * 1e3).round() as i64)
                .collect();
            a.sort();
            a
        };
        let (a, b) = (d.sample(100, &mut rng), d.sample(100, &mut rng));
        let (sa, sb) = (angles(&a), angles(&b));
        let shared = sa.iter().filter(|v| sb.binary_search(v).is_ok()).count();
        assert!(shared < 10, "{d}: {shared} of 100 angles repeat across batches");
        // The grid versions place the same noise-free angles every time: before the
        // noise, the angle set of two batches is the same, so the sorted angles agree
        // closely (the noise moves them by about σ/r).
        let (ga, gb) = (
            d.sample_grid(100, &mut rng).unwrap(),
            d.sample_grid(100, &mut rng).unwrap(),
        );
        let close = angles(&ga)
            .iter()
            .zip(angles(&gb))
            .filter(|(x, y)| (*x - y).abs() < 400)
            .count();
        let close_iid = sa.iter().zip(&sb).filter(|(x, y)| (*x - *y).abs() < 400).count();
        assert!(close > close_iid, "{d}: grid {close} vs iid {close_iid}");
    }
    assert!(cnflow::data::Dataset::Checkerboard
        .sample_grid(10, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0))
        .is_none());
}
