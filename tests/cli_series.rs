//! `cnflow fit-series` and `cnflow predict` as a user runs them.

mod cli_common;

use std::path::Path;

use cli_common::{cnflow, cnflow_stdin, fails, ok, p};
use cnflow::ode::{integrate, Method, SaveAt, SolverConfig};

const LV: &str = "dx = a*x - b*x*y; dy = -d*y + g*x*y";

fn lv_truth(times: &[f64]) -> Vec<f64> {
    let mut f = |_t: f64, y: &[f64], dy: &mut [f64]| {
        dy[0] = 1.5 * y[0] - y[0] * y[1];
        dy[1] = -3.0 * y[1] + y[0] * y[1];
    };
    let exact = SolverConfig::adaptive(Method::Dopri5, 1e-12, 1e-12);
    integrate(
        &mut f,
        &[1.0, 1.0],
        times[0],
        times[times.len() - 1],
        &exact,
        &SaveAt::times(times.to_vec()),
    )
    .unwrap()
    .y
}

/// Noise-free LV observations on [0, 5], every fifth x missing.
fn write_lv(path: &Path) {
    let times: Vec<f64> = (0..=50).map(|i| 0.1 * i as f64).collect();
    let y = lv_truth(&times);
    let mut csv = String::from("t,x,y\n");
    for (i, t) in times.iter().enumerate() {
        let x = if i % 5 == 3 {
            String::new()
        } else {
            y[2 * i].to_string()
        };
        csv.push_str(&format!("{t},{x},{}\n", y[2 * i + 1]));
    }
    std::fs::write(path, csv).unwrap();
}

fn model_params(dir: &Path) -> Vec<f64> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).unwrap()).unwrap();
    v["param_values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn fit_series_recovers_parameters_and_predict_extrapolates() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lv.csv");
    write_lv(&data);
    let out = dir.path().join("run");
    ok(&cnflow(&[
        "fit-series",
        "--data",
        p(&data),
        "--mechanistic",
        LV,
        "--params",
        "a=1.3,b=0.8,d=2.7,g=0.8",
        "--iters",
        "1500",
        "--lr",
        "0.02",
        "--lr-schedule",
        "cosine",
        "--out",
        p(&out),
    ]));
    for f in [
        "model.json",
        "metrics.csv",
        "prediction.csv",
        "fit.png",
        "checkpoint.json",
    ] {
        assert!(out.join(f).exists(), "{f} is written");
    }
    let fitted = model_params(&out);
    for (v, t) in fitted.iter().zip([1.5, 1.0, 3.0, 1.0]) {
        assert!((v - t).abs() < 2e-3, "fitted {fitted:?}");
    }
    // Extrapolation to t = 8 (the data ends at 5) follows the true solution.
    let csv = ok(&cnflow(&["predict", "--model", p(&out), "--t", "6,7,8"]));
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    let truth = lv_truth(&[0.0, 6.0, 7.0, 8.0]);
    for (i, row) in rows.iter().enumerate() {
        for j in 0..2 {
            assert!(
                (row[j + 1] - truth[2 * (i + 1) + j]).abs() < 0.05,
                "t = {}: {row:?}",
                row[0]
            );
        }
    }
    let header = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert!(header.starts_with("iter,loss,seconds,elapsed,window,nfe_forward,nfe_backward,a,b,d,g\n"));
}

#[test]
fn a_resumed_fit_is_the_uninterrupted_fit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lv.csv");
    write_lv(&data);
    let common = [
        "--mechanistic",
        "dx = a*x - x*y; dy = -d*y + x*y",
        "--params",
        "a=1.2,d=2.5",
        "--neural",
        "dy",
    ];
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    // `a` reads the file; `b` reads the same text from stdin, then resumes with no
    // --data (from the run folder's copy) after the file is gone.
    let text = std::fs::read_to_string(&data).unwrap();
    let run = |out: &Path, iters: &str, resume: bool| {
        let source = if out == a { p(&data) } else { "-" };
        let mut args = vec!["fit-series"];
        if !resume {
            args.extend_from_slice(&["--data", source]);
        }
        args.extend_from_slice(&["--hidden", "8", "--iters", iters, "--out", p(out)]);
        args.extend_from_slice(&common);
        if resume {
            args.push("--resume");
        }
        ok(&cnflow_stdin(&args, &text));
    };
    run(&a, "60", false);
    run(&b, "25", false);
    assert_eq!(std::fs::read_to_string(b.join("data.csv")).unwrap(), text);
    std::fs::remove_file(&data).unwrap();
    run(&b, "60", true);
    assert_eq!(model_params(&a), model_params(&b));
    let weights = |d: &Path| std::fs::read_to_string(d.join("model.json")).unwrap();
    assert_eq!(weights(&a), weights(&b), "network weights and starts are identical too");
    let metrics = std::fs::read_to_string(b.join("metrics.csv")).unwrap();
    let iters: Vec<usize> = metrics
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(iters, (1..=60).collect::<Vec<_>>());
}

#[test]
fn bad_input_names_the_file_line_or_symbol() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let good = write("good.csv", "t,x,y\n0,1,1\n0.5,2,1\n1,1,2\n");
    let fit = |data: &Path, extra: &[&str]| {
        let out = dir.path().join("out");
        let mut args = vec![
            "fit-series",
            "--data",
            p(data),
            "--iters",
            "2",
            "--out",
            p(&out),
            "--force",
        ];
        args.extend_from_slice(extra);
        cnflow(&args)
    };
    fails(
        &fit(&write("unsorted.csv", "t,x,y\n0,1,1\n1,2,1\n0.5,1,2\n"), &[]),
        &["unsorted.csv:4", "is before"],
    );
    fails(
        &fit(&write("dup.csv", "t,x,y\n0,1,1\n0,2,1\n"), &[]),
        &["dup.csv:3", "repeats"],
    );
    fails(
        &fit(&write("nan.csv", "t,x,y\n0,1,1\nnan,2,1\n"), &[]),
        &["nan.csv:3", "time 'nan'"],
    );
    fails(
        &fit(&write("cols.csv", "t,x,y\n0,1,1\n1,2\n"), &[]),
        &["cols.csv:3", "2 columns"],
    );
    fails(
        &fit(&good, &["--mechanistic", "dx = a*x; dz = y", "--params", "a=1"]),
        &["'dz'", "x, y"],
    );
    fails(
        &fit(&good, &["--mechanistic", "dx = a*x - q*y; dy = x", "--params", "a=1"]),
        &["unknown symbol 'q'", "--params q="],
    );
    fails(
        &fit(
            &good,
            &["--mechanistic", "dx = a*x; dy = x", "--params", "a=1", "--learn", "a,q"],
        ),
        &["'q' has no value"],
    );
    fails(
        &fit(&good, &["--mechanistic", "dx = a*x; dy = x", "--params", "a"]),
        &["'a' has no value"],
    );
    fails(
        &fit(&good, &["--mechanistic", "dx = a*x", "--params", "a=1"]),
        &["state y has no equation"],
    );
    fails(
        &fit(&good, &["--mechanistic", "dx = a*x +; dy = x", "--params", "a=1"]),
        &["cannot parse the equation for dx"],
    );
    let out = fit(&good, &["--mechanistic", "dx = a*x - q*y; dy = x", "--params", "a=1"]);
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1, "one line");
}

#[test]
fn sigint_saves_the_fit_exits_130_and_the_fit_resumes() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lv.csv");
    write_lv(&data);
    let out = dir.path().join("run");
    let child = Command::new(env!("CARGO_BIN_EXE_cnflow"))
        .args([
            "fit-series",
            "--data",
            p(&data),
            "--mechanistic",
            LV,
            "--params",
            "a=1.3,b=0.8,d=2.7,g=0.8",
        ])
        .args(["--iters", "1000000", "--out", p(&out)])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let done = child.wait_with_output().unwrap();
    assert_eq!(
        done.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let ck: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("checkpoint.json")).unwrap()).unwrap();
    let iter = ck["iter"].as_u64().unwrap() as usize;
    assert!(iter > 0);
    let rows = |d: &Path| -> Vec<usize> {
        let m = std::fs::read_to_string(d.join("metrics.csv")).unwrap();
        m.lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().parse().unwrap())
            .collect()
    };
    assert_eq!(rows(&out), (1..=iter).collect::<Vec<_>>());
    let more = (iter + 5).to_string();
    ok(&cnflow(&[
        "fit-series",
        "--out",
        p(&out),
        "--resume",
        "--iters",
        &more,
        "--data",
        p(&data),
    ]));
    assert_eq!(rows(&out), (1..=iter + 5).collect::<Vec<_>>());
}

/// A stiff series (x relaxes onto y at rate 1000, y decays at rate 0.5; closed form):
/// `--solver kvaerno5` fits the rate from 10 through the discrete adjoint of the implicit
/// solve, saves the stiff solver in the model, and `predict` uses it; `--gradient
/// adjoint` (the continuous adjoint solved backwards with the implicit method) fits too.
#[test]
fn fit_series_with_a_stiff_solver_learns_a_stiff_rate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("stiff.csv");
    let (k, c) = (1000.0f64, 0.5f64);
    let x = |t: f64| {
        let b = k / (k - c);
        (2.0 - b) * (-k * t).exp() + b * (-c * t).exp()
    };
    let times = [
        0.0, 1e-3, 2e-3, 4e-3, 8e-3, 0.016, 0.03, 0.06, 0.12, 0.25, 0.5, 1.0, 2.0, 4.0,
    ];
    let mut csv = String::from("t,x,y\n");
    for &t in &times {
        csv.push_str(&format!("{t},{},{}\n", x(t), (-c * t).exp()));
    }
    std::fs::write(&data, csv).unwrap();
    let out = dir.path().join("run");
    let eqs = "dx = -exp(lk)*(x - y); dy = -c*y";
    let args = |solver: &'static str, gradient: &'static str| -> Vec<String> {
        [
            "fit-series",
            "--data",
            p(&data),
            "--mechanistic",
            eqs,
            "--params",
            "lk=2.3,c=1",
            "--iters",
            "400",
            "--solver",
            solver,
            "--gradient",
            gradient,
            "--out",
            p(&out),
            "--force",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |a: Vec<String>| cnflow(&a.iter().map(String::as_str).collect::<Vec<_>>());
    ok(&run(args("kvaerno5", "backprop")));
    let fitted = model_params(&out);
    assert!(
        (fitted[0] - k.ln()).abs() < 1e-3 && (fitted[1] - c).abs() < 1e-4,
        "fitted {fitted:?}"
    );
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("model.json")).unwrap()).unwrap();
    assert_eq!(model["stiff"]["method"], "Kvaerno5");
    let csv = ok(&cnflow(&["predict", "--model", p(&out), "--t", "0.5,3"]));
    for line in csv.lines().skip(1) {
        let v: Vec<f64> = line.split(',').map(|s| s.parse().unwrap()).collect();
        assert!(
            (v[1] - x(v[0])).abs() < 1e-4 && (v[2] - (-c * v[0]).exp()).abs() < 1e-4,
            "{line}"
        );
    }
    // The continuous adjoint, solved backwards with TR-BDF2, reaches the same fit.
    ok(&run(args("tr-bdf2", "adjoint")));
    let fitted = model_params(&out);
    assert!(
        (fitted[0] - k.ln()).abs() < 1e-3 && (fitted[1] - c).abs() < 1e-4,
        "adjoint: fitted {fitted:?}"
    );
}
