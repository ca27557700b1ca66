//! CNF invariants with a closed-form field: the zero field gives the base density, an
//! affine field gives the density of a linear map, encode/decode round trips.

use cnflow::cnf::{Block, Cnf, LinearField, Trace};
use cnflow::ode::{Method, SolverConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn tight() -> SolverConfig {
    SolverConfig::adaptive(Method::Dopri5, 1e-10, 1e-10)
}

fn points() -> Vec<f64> {
    vec![0.3, -1.2, 2.0, 0.5, -0.7, -0.1, 1.5, 1.5, 0.0, 0.0]
}

/// `exp(M)` for a 2 × 2 matrix by its Taylor series (M is small here).
fn expm2(m: [f64; 4]) -> [f64; 4] {
    let mut out = [1.0, 0.0, 0.0, 1.0];
    let mut term = [1.0, 0.0, 0.0, 1.0];
    for k in 1..40 {
        let t = term;
        term = [
            (t[0] * m[0] + t[1] * m[2]) / k as f64,
            (t[0] * m[1] + t[1] * m[3]) / k as f64,
            (t[2] * m[0] + t[3] * m[2]) / k as f64,
            (t[2] * m[1] + t[3] * m[3]) / k as f64,
        ];
        for i in 0..4 {
            out[i] += term[i];
        }
    }
    out
}

fn log_normal(z: &[f64]) -> f64 {
    -0.5 * z.iter().map(|v| v * v).sum::<f64>() - 0.5 * z.len() as f64 * (2.0 * std::f64::consts::PI).ln()
}

#[test]
fn zero_field_gives_the_base_density() {
    let field = LinearField::new(&[0.0; 4], &[0.0; 2], &[0.0; 2]);
    let model = Cnf::new(vec![Block {
        field,
        t_end: 0.5,
        learn_t: false,
    }])
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let lp = model.log_prob(&points(), &tight(), Trace::Exact, &mut rng).unwrap();
    for (i, p) in points().chunks(2).enumerate() {
        assert!((lp.log_p[i] - log_normal(p)).abs() < 1e-12);
    }
}

#[test]
fn linear_field_gives_the_density_of_its_flow_map() {
    // dz/dt = A z ⇒ z(T) = exp(AT) x and log p(x) = log N(exp(AT) x) + T tr A.
    let a = [-0.3, 0.8, -0.5, 0.2];
    let t_end = 0.7;
    let field = LinearField::new(&a, &[0.0; 2], &[0.0; 2]);
    let e = expm2(a.map(|v| v * t_end));
    for trace in [Trace::Exact, Trace::Rademacher(1), Trace::Gaussian(3)] {
        let model = Cnf::new(vec![Block {
            field: field.clone(),
            t_end,
            learn_t: false,
        }])
        .unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let lp = model.log_prob(&points(), &tight(), trace, &mut rng).unwrap();
        for (i, x) in points().chunks(2).enumerate() {
            let z = [e[0] * x[0] + e[1] * x[1], e[2] * x[0] + e[3] * x[1]];
            let expected = log_normal(&z) + t_end * (a[0] + a[3]);
            assert!((lp.z[2 * i] - z[0]).abs() < 1e-8 && (lp.z[2 * i + 1] - z[1]).abs() < 1e-8);
            if trace == Trace::Exact {
                assert!((lp.log_p[i] - expected).abs() < 1e-8, "{} vs {expected}", lp.log_p[i]);
            }
        }
        // Hutchinson with a linear field: the estimate εᵀAε is unbiased; with one
        // Rademacher probe in 2-D it is tr A + (a12 + a21) ε1 ε2, so it differs from the
        // exact value by exactly T·|a12 + a21| per point.
        if trace == Trace::Rademacher(1) {
            for (i, x) in points().chunks(2).enumerate() {
                let z = [e[0] * x[0] + e[1] * x[1], e[2] * x[0] + e[3] * x[1]];
                let exact = log_normal(&z) + t_end * (a[0] + a[3]);
                let gap = (lp.log_p[i] - exact).abs();
                assert!((gap - t_end * (a[1] + a[2]).abs()).abs() < 1e-8, "gap {gap}");
            }
        }
    }
}

#[test]
fn two_blocks_compose() {
    let f1 = LinearField::new(&[-0.3, 0.8, -0.5, 0.2], &[0.1, -0.2], &[0.3, 0.0]);
    let f2 = LinearField::new(&[0.2, 0.1, 0.0, -0.4], &[0.0, 0.5], &[-0.2, 0.1]);
    let one = |f: &LinearField<f64>, t| {
        Cnf::new(vec![Block {
            field: f.clone(),
            t_end: t,
            learn_t: false,
        }])
        .unwrap()
    };
    let both = Cnf::new(vec![
        Block {
            field: f1.clone(),
            t_end: 0.5,
            learn_t: false,
        },
        Block {
            field: f2.clone(),
            t_end: 0.8,
            learn_t: false,
        },
    ])
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let lp = both.log_prob(&points(), &tight(), Trace::Exact, &mut rng).unwrap();
    let z1 = one(&f1, 0.5).encode(&points(), &tight()).unwrap();
    let lp2 = one(&f2, 0.8).log_prob(&z1, &tight(), Trace::Exact, &mut rng).unwrap();
    // log p(x) = log p2(z1) + T1 tr A1 (the first block's volume change).
    for i in 0..5 {
        assert!((lp.log_p[i] - (lp2.log_p[i] + 0.5 * (-0.3 + 0.2))).abs() < 1e-8);
    }
}

#[test]
fn encode_then_decode_returns_the_input() {
    let field = LinearField::new(&[-0.3, 0.8, -0.5, 0.2], &[0.1, -0.2], &[0.3, 0.0]);
    let model = Cnf::new(vec![
        Block {
            field: field.clone(),
            t_end: 0.5,
            learn_t: false,
        },
        Block {
            field,
            t_end: 1.1,
            learn_t: false,
        },
    ])
    .unwrap();
    let z = model.encode(&points(), &tight()).unwrap();
    let (x, stats) = model.decode(&z, &tight()).unwrap();
    assert!(stats.n_evals > 0);
    let err = x.iter().zip(points()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(err < 1e-8, "round trip error {err}");
}

#[test]
fn bad_shapes_and_models_are_refused() {
    let field = LinearField::new(&[0.0; 4], &[0.0; 2], &[0.0; 2]);
    assert!(Cnf::<f64, LinearField<f64>>::new(vec![]).is_err());
    assert!(Cnf::new(vec![Block {
        field: field.clone(),
        t_end: 0.0,
        learn_t: false
    }])
    .is_err());
    let model = Cnf::new(vec![Block {
        field,
        t_end: 0.5,
        learn_t: false,
    }])
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let err = model
        .log_prob(&[1.0, 2.0, 3.0], &tight(), Trace::Exact, &mut rng)
        .unwrap_err();
    assert!(err.to_string().contains("2-dimensional"), "{err}");
}

#[test]
fn mlp_sample_then_encode_returns_the_base_points() {
    use cnflow::nn::{Mlp, MlpConfig};
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let arch = MlpConfig::parse(2, "16-16", "concatsquash", "tanh").unwrap();
    let blocks = (0..2).map(|_| Block {
        field: Mlp::<f64>::new(arch.clone(), &mut rng, false),
        t_end: 0.8,
        learn_t: false,
    });
    let model = Cnf::new(blocks.collect()).unwrap();
    let z: Vec<f64> = points();
    let (x, _) = model.decode(&z, &tight()).unwrap();
    let moved = x.iter().zip(&z).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(moved > 0.1, "the random field barely moves the points ({moved})");
    let back = model.log_prob(&x, &tight(), Trace::Exact, &mut rng).unwrap();
    let err = back.z.iter().zip(&z).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(err < 1e-7, "sample → log_prob round trip error {err}");
    // The density of the samples is the base density pushed forward: log p(x) = log N(z) − Δ.
    assert!(back.log_p.iter().all(|v| v.is_finite()));
}
