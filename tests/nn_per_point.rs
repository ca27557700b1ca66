//! A time per sample ([`Mlp::forward_times_into`], flow matching's one pass over points at
//! different times): the outputs and every gradient equal those of evaluating each
//! sample alone at its own time and summing, for every layer kind, on the thin and the
//! wide kernels, in f64 and f32; and a shared-time pass on the same workspace after it is
//! unaffected.

use cnflow::nn::{Activation, Cotangents, LayerKind, Mlp, MlpConfig};
use cnflow::Real;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Case {
    f: Vec<f64>,
    grad_z: Vec<f64>,
    grad_p: Vec<f64>,
    grad_t: f64,
}

/// The per-sample pass and its reverse under the cotangents `af` (of `f`) and `ak` (of ‖f‖²).
fn per_point<T: Real>(mlp: &Mlp<T>, t: &[T], z: &[T], af: &[T], ak: &[T]) -> Case {
    let (b, d) = (t.len(), mlp.dim());
    let mut ws = mlp.workspace(b, 0).unwrap();
    let mut f = vec![T::zero(); b * d];
    mlp.forward_times_into(t, z, &mut ws, &mut f).unwrap();
    let (mut gz, mut gp) = (vec![T::zero(); b * d], vec![T::zero(); mlp.n_params()]);
    let cot = Cotangents {
        f: Some(af),
        kinetic: Some(ak),
        ..Cotangents::default()
    };
    let gt = mlp.vjp_into(&mut ws, &cot, &mut gz, &mut gp).unwrap();
    let to64 = |v: &[T]| v.iter().map(|x| x.f64()).collect::<Vec<f64>>();
    Case {
        f: to64(&f),
        grad_z: to64(&gz),
        grad_p: to64(&gp),
        grad_t: gt.f64(),
    }
}

/// Each sample alone at its own time (a batch of one, the shared-time pass), summed.
fn one_by_one<T: Real>(mlp: &Mlp<T>, t: &[T], z: &[T], af: &[T], ak: &[T]) -> Case {
    let d = mlp.dim();
    let mut ws = mlp.workspace(1, 0).unwrap();
    let mut out = Case {
        f: Vec::new(),
        grad_z: Vec::new(),
        grad_p: vec![0.0; mlp.n_params()],
        grad_t: 0.0,
    };
    for (i, &ti) in t.iter().enumerate() {
        let zi = &z[i * d..(i + 1) * d];
        let mut f = vec![T::zero(); d];
        mlp.forward_into(ti, zi, &mut ws, &mut f).unwrap();
        let (mut gz, mut gp) = (vec![T::zero(); d], vec![T::zero(); mlp.n_params()]);
        let cot = Cotangents {
            f: Some(&af[i * d..(i + 1) * d]),
            kinetic: Some(&ak[i..i + 1]),
            ..Cotangents::default()
        };
        out.grad_t += mlp.vjp_into(&mut ws, &cot, &mut gz, &mut gp).unwrap().f64();
        out.f.extend(f.iter().map(|x| x.f64()));
        out.grad_z.extend(gz.iter().map(|x| x.f64()));
        for (a, g) in out.grad_p.iter_mut().zip(&gp) {
            *a += g.f64();
        }
    }
    out
}

fn close(name: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: lengths");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "{name}[{k}]: {g} against {w} (tolerance {tol} × {scale})"
        );
    }
}

fn check<T: Real>(kind: LayerKind, act: Activation, hidden: &[usize], tol: f64, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = 3;
    let mlp: Mlp<T> = Mlp::new(MlpConfig::new(d, hidden, kind, act).unwrap(), &mut rng, false);
    let b = 11;
    let mut draw = |n: usize, s: f64| {
        (0..n)
            .map(|_| T::c(s * (2.0 * rng.random::<f64>() - 1.0)))
            .collect::<Vec<T>>()
    };
    let (t, z, af, ak) = (draw(b, 1.0), draw(b * d, 1.5), draw(b * d, 1.0), draw(b, 0.5));
    let got = per_point(&mlp, &t, &z, &af, &ak);
    let want = one_by_one(&mlp, &t, &z, &af, &ak);
    let what = format!("{kind:?} {act:?} {hidden:?} {}", std::any::type_name::<T>());
    close(&format!("{what}: f"), &got.f, &want.f, tol);
    close(&format!("{what}: grad z"), &got.grad_z, &want.grad_z, tol);
    close(&format!("{what}: grad params"), &got.grad_p, &want.grad_p, tol);
    close(&format!("{what}: grad t"), &[got.grad_t], &[want.grad_t], tol);
    // The times matter: the same points at one time give another field.
    if kind != LayerKind::Ignore {
        let shared = per_point(&mlp, &vec![t[0]; b], &z, &af, &ak);
        assert!(
            shared.f.iter().zip(&got.f).any(|(a, b)| (a - b).abs() > 1e3 * tol),
            "{what}: times ignored"
        );
    }
}

#[test]
fn a_time_per_sample_equals_each_sample_alone_at_its_time() {
    for (s, kind) in LayerKind::ALL.into_iter().enumerate() {
        for act in [Activation::Tanh, Activation::Softplus, Activation::Swish] {
            for hidden in [&[5usize, 7][..], &[40, 40][..]] {
                check::<f64>(kind, act, hidden, 1e-12, s as u64);
            }
        }
        // f32 on the wide layers runs the hand-written tanh kernel.
        check::<f32>(kind, Activation::Tanh, &[64, 64], 2e-5, 10 + s as u64);
    }
}

#[test]
fn a_shared_time_pass_after_a_per_sample_one_is_unchanged() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mlp: Mlp<f64> = Mlp::new(
        MlpConfig::new(2, &[16], LayerKind::ConcatSquash, Activation::Tanh).unwrap(),
        &mut rng,
        false,
    );
    let (b, d) = (4, 2);
    let z: Vec<f64> = (0..b * d).map(|k| 0.3 * k as f64 - 1.0).collect();
    let af = vec![1.0; b * d];
    let run = |ws: &mut cnflow::nn::Workspace<f64>| {
        let mut f = vec![0.0; b * d];
        mlp.forward_into(0.4, &z, ws, &mut f).unwrap();
        let (mut gz, mut gp) = (vec![0.0; b * d], vec![0.0; mlp.n_params()]);
        let gt = mlp
            .vjp_into(
                ws,
                &Cotangents {
                    f: Some(&af),
                    ..Cotangents::default()
                },
                &mut gz,
                &mut gp,
            )
            .unwrap();
        (f, gz, gp, gt)
    };
    let fresh = run(&mut mlp.workspace(b, 0).unwrap());
    let mut ws = mlp.workspace(b, 0).unwrap();
    let mut f = vec![0.0; b * d];
    mlp.forward_times_into(&[0.1, 0.5, 0.9, 0.2], &z, &mut ws, &mut f)
        .unwrap();
    assert_eq!(run(&mut ws), fresh);
}
