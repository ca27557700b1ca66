//! Configuration, layout, initialisation and error behaviour of the field API, and
//! consistency between its entry points.

mod nn_common;

use cnflow::nn::{Activation, Cotangents, FieldOutputs, LayerKind, Mlp, MlpConfig, NnError, TraceMode};
use nn_common::*;

#[test]
fn reference_field_has_ffjord_param_count() {
    let c = MlpConfig::parse(2, "64-64-64", "concatsquash", "tanh").unwrap();
    assert_eq!(c.n_params(), 9224);
    assert_eq!(c.widths(), vec![2, 64, 64, 64, 2]);
    assert_eq!(c.describe(), "2-64-64-64-2 concatsquash tanh");
    // Concat: Linear(n_in + 1, n_out) per layer; Ignore: Linear(n_in, n_out).
    let concat = MlpConfig::new(3, &[5], LayerKind::Concat, Activation::Elu).unwrap();
    assert_eq!(concat.n_params(), 5 * (3 + 1 + 1) + 3 * (5 + 1 + 1));
    let ignore = MlpConfig::new(3, &[5], LayerKind::Ignore, Activation::Elu).unwrap();
    assert_eq!(ignore.n_params(), 5 * (3 + 1) + 3 * (5 + 1));
    // Layers tile the parameter vector without gaps.
    let shapes = c.layer_shapes();
    for w in shapes.windows(2) {
        assert_eq!(w[0].offset + w[0].n_params(), w[1].offset);
    }
}

#[test]
fn bad_configs_and_names_are_rejected_with_their_values() {
    assert_eq!(
        MlpConfig::new(0, &[4], LayerKind::Ignore, Activation::Tanh),
        Err(NnError::ZeroDim)
    );
    assert_eq!(
        MlpConfig::new(2, &[4, 0], LayerKind::Ignore, Activation::Tanh),
        Err(NnError::ZeroWidth { layer: 1 })
    );
    assert!(matches!(
        "relu".parse::<Activation>(),
        Err(NnError::UnknownActivation { name }) if name == "relu"
    ));
    assert!(matches!(
        "squash".parse::<LayerKind>(),
        Err(NnError::UnknownLayer { name }) if name == "squash"
    ));
    for spec in ["64-x", "64--64", "0-3", "-"] {
        assert!(
            matches!(MlpConfig::parse_hidden(spec), Err(NnError::BadHidden { .. })),
            "{spec}"
        );
    }
    assert_eq!(MlpConfig::parse_hidden("").unwrap(), Vec::<usize>::new());
    assert_eq!(MlpConfig::parse_hidden("8-16").unwrap(), vec![8, 16]);
    for a in Activation::ALL {
        assert_eq!(a.name().parse::<Activation>().unwrap(), a);
    }
    for k in LayerKind::ALL {
        assert_eq!(k.name().parse::<LayerKind>().unwrap(), k);
    }
}

#[test]
fn wrong_buffer_lengths_are_errors_naming_the_buffer() {
    let mlp = net(LayerKind::ConcatSquash, Activation::Tanh, 2, &[4], 1);
    let err = Mlp::<f64>::from_params(mlp.config().clone(), vec![0.0; 3]).unwrap_err();
    assert!(matches!(err, NnError::ParamLength { expected, got: 3, .. } if expected == mlp.n_params()));
    let mut ws = mlp.workspace(3, 2).unwrap();
    let mut f = vec![0.0; 6];
    let err = mlp.forward_into(0.0, &[0.0; 5], &mut ws, &mut f).unwrap_err();
    assert!(matches!(
        err,
        NnError::BufferLength {
            name: "z",
            expected: 6,
            got: 5,
            ..
        }
    ));
    let msg = err.to_string();
    assert!(msg.contains("3 × 2"), "{msg}");
    let mut tr = vec![0.0; 2];
    let out = FieldOutputs {
        f: &mut f,
        trace: &mut tr,
        kinetic: None,
        jacobian: None,
    };
    let err = mlp
        .eval_into(0.0, &[0.0; 6], TraceMode::Exact, &mut ws, out)
        .unwrap_err();
    assert!(matches!(
        err,
        NnError::BufferLength {
            name: "trace",
            expected: 3,
            got: 2,
            ..
        }
    ));
    // Probes must be a whole number of K × B × d blocks, and fit the workspace.
    let mut tr = vec![0.0; 3];
    let out = FieldOutputs {
        f: &mut f,
        trace: &mut tr,
        kinetic: None,
        jacobian: None,
    };
    let err = mlp
        .eval_into(0.0, &[0.0; 6], TraceMode::Hutchinson(&[1.0; 7]), &mut ws, out)
        .unwrap_err();
    assert!(matches!(err, NnError::BufferLength { name: "probes", .. }));
    let out = FieldOutputs {
        f: &mut f,
        trace: &mut tr,
        kinetic: None,
        jacobian: None,
    };
    let err = mlp
        .eval_into(0.0, &[0.0; 6], TraceMode::Hutchinson(&[1.0; 18]), &mut ws, out)
        .unwrap_err();
    assert_eq!(
        err,
        NnError::TooManyTangents {
            requested: 3,
            capacity: 2
        }
    );
    let out = FieldOutputs {
        f: &mut f,
        trace: &mut tr,
        kinetic: None,
        jacobian: None,
    };
    let err = mlp
        .eval_into(0.0, &[0.0; 6], TraceMode::Hutchinson(&[]), &mut ws, out)
        .unwrap_err();
    assert_eq!(err, NnError::NoTangents);
    // Exact trace needs d tangents.
    let mut ws1 = mlp.workspace(3, 1).unwrap();
    let out = FieldOutputs {
        f: &mut f,
        trace: &mut tr,
        kinetic: None,
        jacobian: None,
    };
    let err = mlp
        .eval_into(0.0, &[0.0; 6], TraceMode::Exact, &mut ws1, out)
        .unwrap_err();
    assert_eq!(
        err,
        NnError::TooManyTangents {
            requested: 2,
            capacity: 1
        }
    );
}

#[test]
fn reverse_needs_a_matching_forward_and_workspace() {
    let mlp = net(LayerKind::Concat, Activation::Swish, 2, &[4], 1);
    let mut ws = mlp.workspace(2, 2).unwrap();
    let (mut gz, mut gp) = (vec![0.0; 4], vec![0.0; mlp.n_params()]);
    let err = mlp
        .vjp_into(&mut ws, &Cotangents::default(), &mut gz, &mut gp)
        .unwrap_err();
    assert_eq!(err, NnError::NoForward);
    let mut f = vec![0.0; 4];
    mlp.forward_into(0.0, &[0.1; 4], &mut ws, &mut f).unwrap();
    let a = [1.0; 2];
    let cot = Cotangents {
        trace: Some(&a),
        ..Default::default()
    };
    let err = mlp.vjp_into(&mut ws, &cot, &mut gz, &mut gp).unwrap_err();
    assert_eq!(err, NnError::NeedsTangents { name: "trace" });
    let err = mlp
        .vjp_into(&mut ws, &Cotangents::default(), &mut gz, &mut gp[1..])
        .unwrap_err();
    assert!(matches!(
        err,
        NnError::BufferLength {
            name: "grad_params",
            ..
        }
    ));
    let other = net(LayerKind::Concat, Activation::Swish, 2, &[5], 1);
    let err = other.forward_into(0.0, &[0.1; 4], &mut ws, &mut f).unwrap_err();
    assert!(matches!(err, NnError::WorkspaceMismatch { .. }));
    assert!(
        Mlp::<f64>::forward(&mlp, 0.0, &[0.0; 3]).is_err(),
        "z not a multiple of d"
    );
}

#[test]
fn init_is_seeded_and_within_pytorch_bounds() {
    for kind in LayerKind::ALL {
        let config = MlpConfig::new(3, &[7, 5], kind, Activation::Tanh).unwrap();
        let a = Mlp::<f64>::new(config.clone(), &mut rng(9), false);
        let b = Mlp::<f64>::new(config.clone(), &mut rng(9), false);
        let c = Mlp::<f64>::new(config.clone(), &mut rng(10), false);
        assert_eq!(a.params(), b.params());
        assert_ne!(a.params(), c.params());
        for s in a.shapes() {
            let p = &a.params()[s.offset..s.offset + s.n_params()];
            let (wb, time) = p.split_at(s.n_out * (s.n_in + 1));
            let bound = match kind {
                LayerKind::Concat => 1.0 / ((s.n_in + 1) as f64).sqrt(),
                _ => 1.0 / (s.n_in as f64).sqrt(),
            };
            assert!(wb.iter().all(|v| v.abs() <= bound), "{kind} W,b within ±{bound}");
            assert!(wb.iter().any(|v| v.abs() > 0.5 * bound), "{kind} W,b use the range");
            let tb = if kind == LayerKind::Concat { bound } else { 1.0 };
            assert!(time.iter().all(|v| v.abs() <= tb));
        }
        let z = Mlp::<f64>::new(config, &mut rng(9), true);
        let last = z.shapes()[z.shapes().len() - 1];
        assert!(z.params()[last.offset..].iter().all(|&v| v == 0.0));
        assert_eq!(z.forward(0.3, &[1.0, 2.0, 3.0]).unwrap(), vec![0.0; 3]);
    }
}

#[test]
fn batched_tangents_equal_per_sample_evaluation() {
    for (kind, act) in all_kinds() {
        let mlp = net(kind, act, 3, &[6, 4], 3);
        let b = 5;
        let z = normal_vec(&mut rng(4), b * 3);
        let mut ws = mlp.workspace(b, 3).unwrap();
        let all = mlp.eval(0.4, &z, TraceMode::Exact, &mut ws).unwrap();
        for s in 0..b {
            let mut ws1 = mlp.workspace(1, 3).unwrap();
            let one = mlp
                .eval(0.4, &z[s * 3..(s + 1) * 3], TraceMode::Exact, &mut ws1)
                .unwrap();
            assert_close("f", &all.f[s * 3..(s + 1) * 3], &one.f, 1e-13);
            assert_close("trace", &all.trace[s..=s], &one.trace, 1e-13);
            assert_close("jac", &all.jacobian[s..=s], &one.jacobian, 1e-13);
        }
    }
}

#[test]
fn param_gradient_accumulates_and_z_gradient_overwrites() {
    let mlp = net(LayerKind::ConcatSquash, Activation::Softplus, 2, &[5], 2);
    let z = normal_vec(&mut rng(1), 6);
    let a = normal_vec(&mut rng(2), 3);
    let mut ws = mlp.workspace(3, 2).unwrap();
    mlp.eval(0.1, &z, TraceMode::Exact, &mut ws).unwrap();
    let cot = Cotangents {
        trace: Some(&a),
        ..Default::default()
    };
    let once = mlp.vjp(&mut ws, &cot).unwrap();
    assert!(once.params.iter().any(|&g| g != 0.0));
    let mut gz = vec![7.0; 6];
    let mut gp = once.params.clone();
    let gt = mlp.vjp_into(&mut ws, &cot, &mut gz, &mut gp).unwrap();
    assert_close("z", &gz, &once.z, 1e-15);
    let twice: Vec<f64> = once.params.iter().map(|g| 2.0 * g).collect();
    assert_close("params", &gp, &twice, 1e-15);
    assert_eq!(gt, once.t);
}

#[test]
fn f32_field_agrees_with_f64() {
    for (kind, act) in all_kinds() {
        let m64 = net(kind, act, 2, &[16, 16], 5);
        let p32: Vec<f32> = m64.params().iter().map(|&v| v as f32).collect();
        let m32 = Mlp::<f32>::from_params(m64.config().clone(), p32).unwrap();
        let z64 = normal_vec(&mut rng(6), 14);
        let z32: Vec<f32> = z64.iter().map(|&v| v as f32).collect();
        let mut w64 = m64.workspace(7, 2).unwrap();
        let mut w32 = m32.workspace(7, 2).unwrap();
        let e64 = m64.eval(0.3, &z64, TraceMode::Exact, &mut w64).unwrap();
        let e32 = m32.eval(0.3, &z32, TraceMode::Exact, &mut w32).unwrap();
        let a = [1.0f64; 7];
        let a32 = [1.0f32; 7];
        let g64 = m64
            .vjp(
                &mut w64,
                &Cotangents {
                    trace: Some(&a),
                    ..Default::default()
                },
            )
            .unwrap();
        let g32 = m32
            .vjp(
                &mut w32,
                &Cotangents {
                    trace: Some(&a32),
                    ..Default::default()
                },
            )
            .unwrap();
        let up = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
        assert_close("f", &up(&e32.f), &e64.f, 1e-5);
        assert_close("trace", &up(&e32.trace), &e64.trace, 1e-5);
        assert_close("grad z", &up(&g32.z), &g64.z, 1e-4);
        assert_close("grad params", &up(&g32.params), &g64.params, 1e-4);
    }
}

#[test]
fn single_layer_field_is_affine_with_constant_jacobian() {
    // No hidden layers: f = W z + b (+ time terms), so J = W and tr J = tr W.
    let mlp = net(LayerKind::Ignore, Activation::Tanh, 3, &[], 8);
    let w = &mlp.params()[..9];
    let z = normal_vec(&mut rng(3), 6);
    let mut ws = mlp.workspace(2, 3).unwrap();
    let e = mlp.eval(0.0, &z, TraceMode::Exact, &mut ws).unwrap();
    let tr_w = w[0] + w[4] + w[8];
    let frob: f64 = w.iter().map(|x| x * x).sum();
    assert_close("trace", &e.trace, &[tr_w, tr_w], 1e-14);
    assert_close("frobenius", &e.jacobian, &[frob, frob], 1e-14);
}

/// An inference workspace stores less but computes the same outputs, bit for bit, for
/// every layer kind and activation, in f64 and (through the f32 tanh kernel) in f32,
/// with and without tangents; the reverse pass is refused on it.
#[test]
fn inference_workspace_gives_the_same_outputs_and_refuses_the_reverse() {
    fn same<T: cnflow::Real>(mlp: &Mlp<T>, b: usize, z: &[T], probes: &[T], what: &str) {
        let d = mlp.dim();
        let mut train = mlp.workspace(b, d.max(2)).unwrap();
        let mut inf = mlp.inference_workspace(b, d.max(2)).unwrap();
        assert!(inf.is_inference() && !train.is_inference());
        for (t, mode) in [(0.3, TraceMode::Exact), (0.7, TraceMode::Hutchinson(probes))] {
            let t = T::c(t);
            let want = mlp.eval(t, z, mode, &mut train).unwrap();
            let got = mlp.eval(t, z, mode, &mut inf).unwrap();
            assert_eq!(got, want, "{what}: eval at t = {t:?}");
        }
        let (mut f_train, mut f_inf) = (vec![T::zero(); b * d], vec![T::zero(); b * d]);
        mlp.forward_into(T::c(0.5), z, &mut train, &mut f_train).unwrap();
        mlp.forward_into(T::c(0.5), z, &mut inf, &mut f_inf).unwrap();
        assert_eq!(f_inf, f_train, "{what}: forward");
        let cot_f = vec![T::one(); b * d];
        let cot = Cotangents {
            f: Some(&cot_f),
            jv: None,
            trace: None,
            kinetic: None,
            jacobian: None,
        };
        assert!(mlp.vjp(&mut train, &cot).is_ok());
        assert!(matches!(mlp.vjp(&mut inf, &cot), Err(NnError::InferenceOnly)), "{what}");
    }
    let b = 5;
    for (i, (kind, act)) in all_kinds().into_iter().enumerate() {
        let mlp = net(kind, act, 2, &[64, 37], 40 + i as u64);
        let mut r = rng(7 + i as u64);
        let z = normal_vec(&mut r, b * 2);
        let probes = normal_vec(&mut r, 2 * b * 2);
        same(&mlp, b, &z, &probes, &format!("f64 {kind:?} {act:?}"));
        let config = mlp.config().clone();
        let m32 = Mlp::<f32>::from_params(config, mlp.params().iter().map(|&p| p as f32).collect()).unwrap();
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        same(&m32, b, &f32s(&z), &f32s(&probes), &format!("f32 {kind:?} {act:?}"));
    }
}

/// The network keeps derived copies of its weights for the forward product; changing
/// the params (in place, or on a clone) must never leave a stale copy in use.
#[test]
fn changed_params_take_effect_at_the_next_evaluation() {
    let mut mlp = net(LayerKind::ConcatSquash, Activation::Tanh, 2, &[64, 48], 3);
    let mut r = rng(11);
    let z = normal_vec(&mut r, 4 * 2);
    let mut ws = mlp.workspace(4, 2).unwrap();
    let before = mlp.eval(0.2, &z, TraceMode::Exact, &mut ws).unwrap();
    let copy = mlp.clone();
    for p in mlp.params_mut().iter_mut() {
        *p *= 1.1;
    }
    let fresh = Mlp::from_params(mlp.config().clone(), mlp.params().to_vec()).unwrap();
    let after = mlp.eval(0.2, &z, TraceMode::Exact, &mut ws).unwrap();
    assert_ne!(after, before);
    assert_eq!(after, fresh.eval(0.2, &z, TraceMode::Exact, &mut ws).unwrap());
    // The clone made before the change still evaluates its own (old) params.
    assert_eq!(copy.eval(0.2, &z, TraceMode::Exact, &mut ws).unwrap(), before);
}
