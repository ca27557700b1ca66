//! The `cnflow` program as a user runs it: every command, and every kind of bad input
//! (exit code, one-line message naming the file/line/flag, no partial output).

mod cli_common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use cli_common::{cnflow, cnflow_stdin, fails, ok, p, small_run, text, trained};
use cnflow::data::read_points;

#[test]
fn datasets_lists_names_and_entropies_and_writes_points() {
    let out = ok(&cnflow(&["datasets"]));
    for name in [
        "8gaussians",
        "checkerboard",
        "2spirals",
        "moons",
        "circles",
        "rings",
        "swissroll",
        "pinwheel",
    ] {
        assert!(out.contains(name), "{out}");
    }
    assert!(out.contains("3.4657"));
    let tmp = tempfile::tempdir().unwrap();
    for file in ["a.csv", "a.npy"] {
        let path = tmp.path().join(file);
        ok(&cnflow(&[
            "datasets",
            "rings",
            "-n",
            "7",
            "--seed",
            "3",
            "--output",
            p(&path),
        ]));
        assert_eq!(read_points(&path, Some(2)).unwrap().nrows(), 7);
    }
    let csv = read_points(&tmp.path().join("a.csv"), None).unwrap();
    let npy = read_points(&tmp.path().join("a.npy"), None).unwrap();
    assert_eq!(csv, npy);
    fails(&cnflow(&["datasets", "spiral"]), &["spiral", "8gaussians"]);
}

#[test]
fn train_writes_a_run_folder_and_refuses_to_overwrite_it() {
    let run = trained();
    for f in ["model.json", "checkpoint.json", "metrics.csv"] {
        assert!(run.dir.join(f).is_file(), "{f} missing");
    }
    let metrics = std::fs::read_to_string(run.dir.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 21);
    assert!(metrics.lines().next().unwrap().starts_with("iter,loss,nll"));
    // Evaluation rows carry the test NLL and the KL gap.
    let row10: Vec<&str> = metrics.lines().nth(10).unwrap().split(',').collect();
    assert!(
        row10[10].parse::<f64>().is_ok() && row10[11].parse::<f64>().is_ok(),
        "{row10:?}"
    );
    fails(&small_run(&run.dir, "20", &[]), &["already holds a run", "--resume"]);
    ok(&small_run(&run.dir, "20", &["--force"]));
}

#[test]
fn resumed_training_equals_uninterrupted_training() {
    let tmp = tempfile::tempdir().unwrap();
    let straight = tmp.path().join("straight");
    let halves = tmp.path().join("halves");
    // The cosine schedule spans --iters, so extending a run changes it; a constant rate
    // makes 10 + 10 iterations the same as 20.
    ok(&small_run(&straight, "20", &["--lr-schedule", "constant"]));
    ok(&small_run(&halves, "10", &["--lr-schedule", "constant"]));
    ok(&cnflow(&["train", "--out", p(&halves), "--resume", "--iters", "20"]));
    let a = std::fs::read_to_string(straight.join("checkpoint.json")).unwrap();
    let b = std::fs::read_to_string(halves.join("checkpoint.json")).unwrap();
    let weights = |s: &str| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(s).unwrap()["model"]["blocks"].clone()
    };
    assert_eq!(weights(&a), weights(&b));
    assert_eq!(
        std::fs::read_to_string(halves.join("metrics.csv"))
            .unwrap()
            .lines()
            .count(),
        21
    );
    fails(
        &cnflow(&["train", "--out", p(&tmp.path().join("none")), "--resume"]),
        &["--resume", "checkpoint.json"],
    );
}

#[test]
fn a_seed_gives_the_same_model_on_any_number_of_threads() {
    // Threads only schedule the batch parts; the parts (default 2) fix the result.
    let tmp = tempfile::tempdir().unwrap();
    let weights = |dir: &Path| -> serde_json::Value {
        let s = std::fs::read_to_string(dir.join("model.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&s).unwrap()["blocks"].clone()
    };
    let runs: Vec<serde_json::Value> = ["1", "2", "4"]
        .iter()
        .map(|threads| {
            let dir = tmp.path().join(format!("threads-{threads}"));
            ok(&small_run(&dir, "12", &["--threads", threads]));
            weights(&dir)
        })
        .collect();
    assert!(!runs[0].is_null());
    assert_eq!(runs[0], runs[1], "1 vs 2 threads");
    assert_eq!(runs[0], runs[2], "1 vs 4 threads");
    // The number of parts is a setting of the run: another one is another model.
    let dir = tmp.path().join("parts-1");
    ok(&small_run(&dir, "12", &["--parts", "1"]));
    assert_ne!(weights(&dir), runs[0], "--parts 1 vs the default 2");
}

#[test]
fn every_optimizer_trains_and_resumes_exactly_and_old_checkpoints_still_load() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = |dir: &Path| -> serde_json::Value {
        let s = std::fs::read_to_string(dir.join("checkpoint.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&s).unwrap()["model"]["blocks"].clone()
    };
    let mut finals = Vec::new();
    for opt in ["adam", "adamw", "rmsprop", "sgd"] {
        let straight = tmp.path().join(format!("{opt}-straight"));
        let halves = tmp.path().join(format!("{opt}-halves"));
        let flags = ["--lr-schedule", "constant", "--optimizer", opt, "--lr", "1e-3"];
        ok(&small_run(&straight, "8", &flags));
        ok(&small_run(&halves, "4", &flags));
        ok(&cnflow(&["train", "--out", p(&halves), "--resume", "--iters", "8"]));
        assert_eq!(weights(&straight), weights(&halves), "{opt}: resumed differs");
        finals.push(weights(&straight));
    }
    for i in 1..finals.len() {
        assert_ne!(finals[0], finals[i], "optimizer {i} trained the same model as adam");
    }
    // A checkpoint written before the optimizers had a kind: "adam" and no tag, and
    // before the model's affine block: version 1.
    let old = tmp.path().join("adam-halves");
    let path = old.join("checkpoint.json");
    let mut ck: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut state = ck["optimizer"].take();
    state.as_object_mut().unwrap().remove("kind");
    let obj = ck.as_object_mut().unwrap();
    obj.remove("optimizer");
    obj.insert("adam".into(), state);
    obj.insert("version".into(), serde_json::json!(1));
    std::fs::write(&path, serde_json::to_string(&ck).unwrap()).unwrap();
    ok(&cnflow(&["train", "--out", p(&old), "--resume", "--iters", "10"]));
    fails(
        &small_run(
            &tmp.path().join("bad"),
            "2",
            &["--optimizer", "sgd", "--momentum", "1.5"],
        ),
        &["--momentum"],
    );
}

#[test]
fn density_reads_csv_npy_and_stdin_and_keeps_the_order() {
    let run = trained();
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("x.csv");
    let npy = tmp.path().join("x.npy");
    ok(&cnflow(&["datasets", "8gaussians", "-n", "25", "--output", p(&csv)]));
    ok(&cnflow(&["datasets", "8gaussians", "-n", "25", "--output", p(&npy)]));
    let from_csv = ok(&cnflow(&["density", "--model", p(&run.model), "--input", p(&csv)]));
    let values: Vec<f64> = from_csv.lines().skip(1).map(|l| l.parse().unwrap()).collect();
    assert_eq!(values.len(), 25);
    assert!(values.iter().all(|v| v.is_finite() && *v < 0.0));
    let out_npy = tmp.path().join("lp.npy");
    ok(&cnflow(&[
        "density",
        "--model",
        p(&run.model),
        "--input",
        p(&npy),
        "--output",
        p(&out_npy),
    ]));
    let from_npy = read_points(&out_npy, Some(1)).unwrap();
    for (a, b) in values.iter().zip(from_npy.iter()) {
        assert!((a - b).abs() < 1e-9);
    }
    // Stdin, and a single point evaluated alone gives the same value (order kept).
    let stdin = ok(&cnflow_stdin(
        &["density", "--model", p(&run.model), "--input", "-"],
        &std::fs::read_to_string(&csv).unwrap(),
    ));
    assert_eq!(stdin, from_csv);
    let third = std::fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .nth(2)
        .unwrap()
        .to_string();
    let alone = ok(&cnflow_stdin(
        &["density", "--model", p(&run.model), "--input", "-"],
        &third,
    ));
    let v: f64 = alone.lines().nth(1).unwrap().parse().unwrap();
    // The adaptive step size is shared by the points solved together, so a point alone
    // takes other steps than in a batch: its value agrees to the solver's tolerance
    // (rtol = atol = 1e-6 by default), not bit for bit, and it is still the third value.
    assert!((v - values[2]).abs() < 1e-4, "{v} vs {}", values[2]);
    let nearest = values
        .iter()
        .enumerate()
        .min_by(|a, b| (a.1 - v).abs().total_cmp(&(b.1 - v).abs()))
        .unwrap()
        .0;
    assert_eq!(nearest, 2, "{v} is nearest to value {nearest} of {values:?}");
}

#[test]
fn sample_and_eval_work_and_eval_prints_json() {
    let run = trained();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("s.npy");
    ok(&cnflow(&[
        "sample",
        "--model",
        p(&run.model),
        "-n",
        "13",
        "--output",
        p(&out),
    ]));
    assert_eq!(read_points(&out, Some(2)).unwrap().nrows(), 13);
    let stdout = ok(&cnflow(&["sample", "--model", p(&run.model), "-n", "4", "--seed", "9"]));
    assert_eq!(stdout.lines().count(), 4);
    let again = ok(&cnflow(&["sample", "--model", p(&run.model), "-n", "4", "--seed", "9"]));
    assert_eq!(stdout, again, "same seed, same samples");
    let json = ok(&cnflow(&[
        "eval",
        "--model",
        p(&run.model),
        "--data",
        "8gaussians",
        "-n",
        "300",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    let nll = v["nll"].as_f64().unwrap();
    assert!((v["kl_gap"].as_f64().unwrap() - (nll - 2.832)).abs() < 1e-9);
    assert!(v["n_evals"].as_u64().unwrap() > 0);
    // W2 on the 300 test points, beside two true samples' W2: both positive, and a
    // trained model's samples not absurdly far from the data.
    let (w2, reference) = (v["w2"].as_f64().unwrap(), v["w2_reference"].as_f64().unwrap());
    assert_eq!(v["w2_points"].as_u64(), Some(300));
    assert!(
        w2 > 0.0 && reference > 0.0 && w2 < 20.0 * reference,
        "W2 {w2}, reference {reference}"
    );
    let skipped: serde_json::Value = serde_json::from_str(
        ok(&cnflow(&[
            "eval",
            "--model",
            p(&run.model),
            "--data",
            "8gaussians",
            "-n",
            "50",
            "--json",
            "--w2-points",
            "0",
        ]))
        .trim(),
    )
    .unwrap();
    assert!(skipped["w2"].is_null());
    let text_out = ok(&cnflow(&[
        "eval",
        "--model",
        p(&run.model),
        "--data",
        "8gaussians",
        "-n",
        "300",
    ]));
    assert!(text_out.contains("KL gap") && text_out.contains("W2") && text_out.contains("a fresh true sample"));
}

#[test]
fn bad_point_files_give_one_line_errors_and_no_output() {
    let run = trained();
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, &[&str]); 5] = [
        ("malformed.csv", "x,y\n1,2\n3,abc\n", &["malformed.csv", ":3"]),
        ("nan.csv", "1,2\nnan,2\n", &["nan.csv", ":2"]),
        ("ragged.csv", "1,2\n3,4,5\n", &["ragged.csv", ":2"]),
        ("wide.csv", "1,2,3\n4,5,6\n", &["wide.csv", "3"]),
        ("empty.csv", "", &["empty.csv", "no data rows"]),
    ];
    for (name, content, needles) in cases {
        let input = tmp.path().join(name);
        std::fs::write(&input, content).unwrap();
        let output = tmp.path().join(format!("{name}.out.csv"));
        let out = cnflow(&[
            "density",
            "--model",
            p(&run.model),
            "--input",
            p(&input),
            "--output",
            p(&output),
        ]);
        fails(&out, needles);
        assert_eq!(text(&out.stderr).trim().lines().count(), 1, "{}", text(&out.stderr));
        assert!(!output.exists(), "{name}: partial output left behind");
    }
    fails(
        &cnflow(&["density", "--model", p(&run.model), "--input", "/no/such.csv"]),
        &["/no/such.csv", "no such file"],
    );
    fails(
        &cnflow(&["density", "--model", p(&run.model), "--input", p(tmp.path())]),
        &["directory"],
    );
    fails(
        &cnflow(&[
            "train",
            "--data",
            p(&tmp.path().join("nan.csv")),
            "--out",
            p(&tmp.path().join("r")),
        ]),
        &["nan.csv"],
    );
    fails(
        &cnflow(&["eval", "--model", p(&run.model), "--data", "nosuchset"]),
        &["nosuchset", "8gaussians"],
    );
}

#[test]
fn bad_model_files_are_refused_naming_the_file_and_the_problem() {
    let run = trained();
    let tmp = tempfile::tempdir().unwrap();
    let good: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&run.model).unwrap()).unwrap();
    let mut future = good.clone();
    future["version"] = serde_json::json!(99);
    let mut short = good.clone();
    short["blocks"][0]["params"].as_array_mut().unwrap().pop();
    let mut foreign = good.clone();
    foreign["format"] = serde_json::json!("something-else");
    let full = serde_json::to_string(&good).unwrap();
    let cases = [
        ("future.json", serde_json::to_string(&future).unwrap(), "newer cnflow"),
        ("short.json", serde_json::to_string(&short).unwrap(), "corrupt"),
        (
            "foreign.json",
            serde_json::to_string(&foreign).unwrap(),
            "not a cnflow model",
        ),
        (
            "truncated.json",
            full[..full.len() / 2].to_string(),
            "not a valid cnflow model file",
        ),
    ];
    for (name, content, needle) in cases {
        let path = tmp.path().join(name);
        std::fs::write(&path, content).unwrap();
        for cmd in [
            vec!["sample", "--model", p(&path), "-n", "2"],
            vec!["eval", "--model", p(&path), "--data", "8gaussians", "-n", "10"],
        ] {
            fails(&cnflow(&cmd), &[name, needle]);
        }
    }
    fails(&cnflow(&["sample", "--model", p(&run.dir)]), &["directory"]);
    // A missing file: named, with the reason given once.
    let missing = tmp.path().join("missing.json");
    let out = cnflow(&["sample", "--model", p(&missing), "-n", "2"]);
    fails(&out, &["missing.json", "cannot read the model file"]);
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.matches("os error").count() == 1, "the reason repeated: {err}");
    // An output that cannot be written: the same.
    let out = cnflow(&[
        "sample",
        "--model",
        p(&run.model),
        "-n",
        "2",
        "--output",
        p(&tmp.path().join("no-such-folder").join("x.csv")),
    ]);
    fails(&out, &["no-such-folder", "x.csv"]);
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.matches("os error").count() == 1, "the reason repeated: {err}");
}

#[test]
fn nonsense_flag_values_are_refused_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("r");
    let cases: [(&[&str], &str); 6] = [
        (&["--rtol", "-1e-5"], "--rtol"),
        (&["--atol", "0"], "--atol"),
        (&["--batch", "0"], "--batch"),
        (&["--iters", "-3"], "--iters"),
        (&["--lr", "nan"], "--lr"),
        (&["--solver", "rk45"], "--solver"),
    ];
    for (flags, needle) in cases {
        let mut args = vec!["train", "--out", p(&out_dir)];
        args.extend_from_slice(flags);
        fails(&cnflow(&args), &[needle]);
    }
    fails(
        &cnflow(&["train", "--solver", "rk4", "--steps", "0", "--out", p(&out_dir)]),
        &["--steps"],
    );
    fails(
        &cnflow(&["train", "--hidden", "64-x", "--iters", "1", "--out", p(&out_dir)]),
        &["64-x"],
    );
    assert!(!out_dir.join("model.json").exists());
}

#[test]
fn every_command_explains_every_flag() {
    for (cmd, flags) in [
        (
            "train",
            &[
                "--data",
                "--iters",
                "--batch",
                "--hidden",
                "--layer",
                "--activation",
                "--blocks",
                "--solver",
                "--rtol",
                "--atol",
                "--steps",
                "--trace",
                "--grad",
                "--kinetic",
                "--jacobian",
                "--lr",
                "--precision",
                "--seed",
                "--out",
                "--resume",
            ][..],
        ),
        ("density", &["--model", "--input", "--output"][..]),
        ("sample", &["--model", "-n", "--seed", "--output"][..]),
        ("eval", &["--model", "--data", "-n", "--json"][..]),
        ("plot", &["--model", "--data", "--output", "--kind"][..]),
        ("datasets", &["-n", "--output"][..]),
    ] {
        let help = ok(&cnflow(&[cmd, "--help"]));
        for f in flags {
            assert!(help.contains(f), "{cmd} --help lacks {f}");
        }
        assert!(
            help.contains("[default:") || cmd == "plot",
            "{cmd} --help shows no defaults"
        );
    }
}

/// Starts a long `train` in `dir`, waits for some iterations, sends `signal`.
fn train_then_signal(dir: &Path, signal: &str) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_cnflow"))
        .args([
            "train",
            "--iters",
            "100000",
            "--batch",
            "32",
            "--hidden",
            "8",
            "--eval-every",
            "1000",
            "--test-size",
            "100",
        ])
        .args(["--rtol", "1e-3", "--atol", "1e-3", "--out", p(dir)])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until some iterations are done (metrics.csv has rows), then signal.
    let metrics = dir.join("metrics.csv");
    for _ in 0..600 {
        if std::fs::read_to_string(&metrics)
            .map(|s| s.lines().count() > 3)
            .unwrap_or(false)
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let kill = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    child.wait_with_output().unwrap()
}

#[test]
fn sigint_and_sigterm_save_a_checkpoint_exit_128_plus_the_signal_and_resume() {
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let out = train_then_signal(&dir, signal);
        // An unfinished model must not pass for a finished one: `train && next` stops.
        assert_eq!(out.status.code(), Some(code), "{signal}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("--resume"), "{}", text(&out.stderr));
        let ck: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("checkpoint.json")).unwrap()).unwrap();
        let done = ck["iter"].as_u64().unwrap();
        assert!(done > 0 && done < 100000);
        assert!(dir.join("model.json").is_file());
        let total = (done + 5).to_string();
        ok(&cnflow(&["train", "--out", p(&dir), "--resume", "--iters", &total]));
        let ck: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("checkpoint.json")).unwrap()).unwrap();
        assert_eq!(ck["iter"].as_u64().unwrap(), done + 5);
    }
}

#[test]
fn a_signal_during_sample_or_density_leaves_no_temporary_file() {
    let run = trained();
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("s.npy");
        let child = Command::new(env!("CARGO_BIN_EXE_cnflow"))
            .args([
                "sample",
                "--model",
                p(&run.model),
                "-n",
                "100000000",
                "--output",
                p(&out),
            ])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the temporary file to grow, then signal.
        let grown = || {
            std::fs::read_dir(tmp.path())
                .unwrap()
                .flatten()
                .any(|e| e.metadata().map(|m| m.len() > 100_000).unwrap_or(false))
        };
        for _ in 0..600 {
            if grown() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(grown(), "no temporary output appeared");
        let kill = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let status = child.wait_with_output().unwrap().status;
        assert_eq!(status.code(), Some(code), "{signal}");
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "{signal} left {left:?}");
    }
}

#[test]
fn train_draws_pictures_and_plot_draws_every_kind() {
    let run = trained();
    for f in ["panels.png", "flow.png", "metrics.png"] {
        let path = run.dir.join(f);
        let bytes = std::fs::read(&path).unwrap_or_else(|_| panic!("{f} missing"));
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{f} is not a picture"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    for (kind, file) in [("panels", "p.svg"), ("trajectories", "t.png"), ("metrics", "m.svg")] {
        let out = tmp.path().join(file);
        ok(&cnflow(&[
            "plot",
            "--model",
            p(&run.model),
            "--kind",
            kind,
            "--output",
            p(&out),
        ]));
        assert!(std::fs::metadata(&out).unwrap().len() > 1000, "{kind}");
    }
    let data = tmp.path().join("d.csv");
    ok(&cnflow(&["datasets", "moons", "-n", "200", "--output", p(&data)]));
    ok(&cnflow(&[
        "plot",
        "--model",
        p(&run.model),
        "--data",
        p(&data),
        "--output",
        p(&tmp.path().join("moons.png")),
    ]));
    fails(
        &cnflow(&[
            "plot",
            "--model",
            p(&run.model),
            "--output",
            p(&tmp.path().join("x.jpg")),
        ]),
        &["x.jpg", ".png"],
    );
    fails(
        &cnflow(&[
            "plot",
            "--model",
            p(&run.model),
            "--output",
            p(&tmp.path().join("no/such/dir/x.png")),
        ]),
        &["no/such/dir/x.png"],
    );
    let svg = std::fs::read_to_string(tmp.path().join("p.svg")).unwrap();
    assert!(svg.contains("model density"));
    // Several models: one row each, in one picture; other kinds take one model.
    let rows = tmp.path().join("rows.svg");
    ok(&cnflow(&[
        "plot",
        "--model",
        p(&run.model),
        p(&run.model),
        p(&run.model),
        "--output",
        p(&rows),
    ]));
    let svg = std::fs::read_to_string(&rows).unwrap();
    assert_eq!(svg.matches("model density").count(), 3, "three rows of panels");
    assert!(svg.contains("height=\"1290\""), "three rows of 430 pixels");
    fails(
        &cnflow(&[
            "plot",
            "--model",
            p(&run.model),
            p(&run.model),
            "--kind",
            "metrics",
            "--output",
            p(&tmp.path().join("m2.png")),
        ]),
        &["one --model"],
    );
}

#[test]
fn resume_takes_new_iters_and_lr_but_refuses_other_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    ok(&small_run(&dir, "10", &[]));
    // The same command line plus --resume is fine; a different architecture is not.
    ok(&small_run(&dir, "12", &["--resume"]));
    fails(
        &cnflow(&["train", "--out", p(&dir), "--resume", "--hidden", "8"]),
        &["--hidden", "cannot change when resuming"],
    );
    fails(
        &cnflow(&["train", "--out", p(&dir), "--resume", "--data", "moons"]),
        &["--data"],
    );
    let out = cnflow(&["train", "--out", p(&dir), "--resume", "--iters", "14", "--lr", "0.0005"]);
    ok(&out);
    assert!(text(&out.stderr).contains("--lr 0.0005"), "{}", text(&out.stderr));
    let ck: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("checkpoint.json")).unwrap()).unwrap();
    assert_eq!(ck["iter"].as_u64(), Some(14));
    assert_eq!(ck["optimizer"]["config"]["lr"].as_f64(), Some(0.0005));
}

#[test]
fn training_on_a_file_reports_nll_in_the_files_units() {
    // Moons scaled by 100: the standardised NLL differs from the user's by 2 ln(100·σ).
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw.csv");
    ok(&cnflow(&["datasets", "moons", "-n", "3000", "--output", p(&raw)]));
    let scaled: String = std::fs::read_to_string(&raw)
        .unwrap()
        .lines()
        .map(|l| {
            l.split(',')
                .map(|v| (100.0 * v.parse::<f64>().unwrap()).to_string())
                .collect::<Vec<_>>()
                .join(",")
                + "\n"
        })
        .collect();
    let data = tmp.path().join("big.csv");
    std::fs::write(&data, scaled).unwrap();
    let dir = tmp.path().join("run");
    ok(&small_run(&dir, "30", &["--data", p(&data)]));
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).unwrap()).unwrap();
    let train_nll = model["training"]["test_nll"].as_f64().unwrap();
    let eval = ok(&cnflow(&[
        "eval",
        "--model",
        p(&dir.join("model.json")),
        "--data",
        p(&data),
        "--json",
    ]));
    let eval_nll = serde_json::from_str::<serde_json::Value>(eval.trim()).unwrap()["nll"]
        .as_f64()
        .unwrap();
    assert!(
        (train_nll - eval_nll).abs() < 0.5,
        "train reports {train_nll}, eval {eval_nll}"
    );
    // Training reads points from stdin too.
    let out = cnflow_stdin(
        &[
            "train",
            "--data",
            "-",
            "--iters",
            "3",
            "--hidden",
            "8",
            "--out",
            p(&tmp.path().join("stdin")),
        ],
        &std::fs::read_to_string(&data).unwrap(),
    );
    ok(&out);
}

#[test]
fn reference_selects_ffjords_configuration_and_explicit_flags_win() {
    let tmp = tempfile::tempdir().unwrap();
    let args_of = |dir: &Path| -> serde_json::Value {
        let ck = std::fs::read_to_string(dir.join("checkpoint.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&ck).unwrap()["args"].clone()
    };
    let fast = tmp.path().join("fast");
    ok(&small_run(&fast, "2", &[]));
    let a = args_of(&fast);
    assert_eq!(a["solver"], "Dopri5");
    assert_eq!(a["grad"], "Backprop");
    assert_eq!(a["lr_schedule"], "Cosine");
    assert!(a["kinetic"].as_f64().unwrap() > 0.0 && a["jacobian"].as_f64().unwrap() > 0.0);

    let reference = tmp.path().join("reference");
    ok(&small_run(&reference, "2", &["--reference", "--lr", "0.002"]));
    let r = args_of(&reference);
    assert_eq!(r["solver"], "Dopri5");
    assert_eq!(r["grad"], "Adjoint");
    assert_eq!(r["lr_schedule"], "Constant");
    assert_eq!(r["kinetic"].as_f64(), Some(0.0));
    assert_eq!(r["jacobian"].as_f64(), Some(0.0));
    assert_eq!(r["lr"].as_f64(), Some(0.002), "an explicit --lr wins over --reference");
    // small_run gives --rtol/--atol 1e-4 explicitly; those win too.
    assert_eq!(r["rtol"].as_f64(), Some(1e-4));

    // A fixed-step method without --steps takes 4 steps.
    let rk4 = tmp.path().join("rk4");
    ok(&small_run(&rk4, "2", &["--solver", "rk4"]));
    assert_eq!(args_of(&rk4)["steps"].as_u64(), Some(4));
}

/// The portable loops and the AVX2 and AVX-512 kernels (as far as the CPU has them;
/// `CNFLOW_SIMD` narrows the choice) train, sample and evaluate alike, on a field whose
/// products are wide (64) and ragged against both vector widths (48).
#[test]
fn every_kernel_level_gives_the_same_results() {
    let tmp = tempfile::tempdir().unwrap();
    let with = |level: &str, args: &[&str]| -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_cnflow"))
            .env("CNFLOW_SIMD", level)
            .args(args)
            .output()
            .expect("cnflow runs");
        ok(&out)
    };
    let numbers = |s: &str| -> Vec<f64> { s.split([',', '\n']).filter_map(|v| v.trim().parse().ok()).collect() };
    let levels = ["none", "avx2", "avx512"];
    let bad = Command::new(env!("CARGO_BIN_EXE_cnflow"))
        .env("CNFLOW_SIMD", "AVX2")
        .args(["datasets"])
        .output()
        .unwrap();
    fails(&bad, &["CNFLOW_SIMD=AVX2", "avx512, avx2, none"]);
    let mut losses = Vec::new();
    for level in levels {
        let dir = tmp.path().join(level);
        with(
            level,
            &[
                "train",
                "--iters",
                "5",
                "--batch",
                "64",
                "--hidden",
                "64-48",
                "--eval-every",
                "5",
                "--test-size",
                "200",
                "--out",
                p(&dir),
            ],
        );
        let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
        let last = metrics.lines().last().unwrap();
        losses.push(last.split(',').nth(1).unwrap().parse::<f64>().unwrap());
    }
    for (level, loss) in levels.iter().zip(&losses) {
        assert!(
            (loss - losses[2]).abs() <= 1e-6 * losses[2].abs(),
            "{level}: loss {loss} vs {}",
            losses[2]
        );
    }
    let model = tmp.path().join("avx512").join("model.json");
    let sample = |level| {
        numbers(&with(
            level,
            &["sample", "--model", p(&model), "-n", "30", "--seed", "3"],
        ))
    };
    let nll = |level| {
        let json = with(
            level,
            &[
                "eval",
                "--model",
                p(&model),
                "--data",
                "8gaussians",
                "-n",
                "200",
                "--json",
            ],
        );
        serde_json::from_str::<serde_json::Value>(json.trim()).unwrap()["nll"]
            .as_f64()
            .unwrap()
    };
    let (want_s, want_nll) = (sample("avx512"), nll("avx512"));
    assert_eq!(want_s.len(), 60);
    for level in ["none", "avx2"] {
        let got = sample(level);
        let worst = got.iter().zip(&want_s).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(got.len() == 60 && worst <= 1e-5, "{level}: samples differ by {worst}");
        let got = nll(level);
        assert!((got - want_nll).abs() <= 1e-6, "{level}: NLL {got} vs {want_nll}");
    }
}

#[test]
fn flow_matching_objectives_train_and_get_an_exact_kl_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let gap = |dir: &Path| -> f64 {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).unwrap()).unwrap();
        m["training"]["kl_gap"].as_f64().unwrap()
    };
    let mut gaps = Vec::new();
    for (name, extra) in [
        ("cfm", vec!["--objective", "cfm"]),
        ("ot", vec!["--objective", "ot-cfm"]),
        ("then", vec!["--objective", "cfm", "--then-mle", "20"]),
    ] {
        let dir = tmp.path().join(name);
        let mut args = vec![
            "train",
            "--iters",
            "200",
            "--eval-every",
            "100",
            "--test-size",
            "300",
            "--out",
            p(&dir),
        ];
        args.extend(extra);
        ok(&cnflow(&args));
        gaps.push(gap(&dir));
    }
    // 200 flow-matching iterations reach a finite, positive KL gap well under the
    // untrained model's (about 1.9 nats for 8gaussians).
    assert!(gaps.iter().all(|g| *g > 0.0 && *g < 1.2), "{gaps:?}");
    fails(
        &small_run(&tmp.path().join("b"), "2", &["--objective", "cfm", "--blocks", "2"]),
        &["--blocks 1"],
    );
    fails(
        &small_run(&tmp.path().join("c"), "2", &["--then-mle", "5"]),
        &["--objective"],
    );
}

/// A built-in dataset's recipe: flow-matching pretraining with the likelihood's share
/// of a typed --iters, the likelihood's own recipe with --objective mle typed, and the
/// likelihood's when more blocks than flow matching trains are asked for.
#[test]
fn recipes_apply_to_the_flags_not_given() {
    let tmp = tempfile::tempdir().unwrap();
    let objective = |dir: &Path| -> serde_json::Value {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("checkpoint.json")).unwrap()).unwrap();
        m["args"]["objective"].clone()
    };
    let dir = tmp.path().join("rings");
    let out = small_run(&dir, "14", &["--data", "rings"]);
    ok(&out);
    let err = text(&out.stderr);
    assert!(
        err.contains("rings: its measured recipe sets --objective cfm --then-mle 4"),
        "{err}"
    );
    assert_eq!(objective(&dir), "Cfm");
    // Forward evaluations per iteration, from metrics.csv.
    let nfes = |dir: &Path| -> Vec<usize> {
        std::fs::read_to_string(dir.join("metrics.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(5).unwrap().parse().unwrap())
            .collect()
    };
    // 10 flow-matching iterations (one evaluation each), then 4 solves.
    let nfe = nfes(&dir);
    assert_eq!(nfe.len(), 14);
    assert!(
        nfe[..10].iter().all(|&n| n == 1) && nfe[10..].iter().all(|&n| n > 1),
        "{nfe:?}"
    );
    // Resumed for longer, the fine-tuning lengthens: no flow matching after it.
    let out = cnflow(&["train", "--out", p(&dir), "--resume", "--iters", "18"]);
    ok(&out);
    assert!(text(&out.stderr).contains("--then-mle 8"), "{}", text(&out.stderr));
    let nfe = nfes(&dir);
    assert!(nfe.len() == 18 && nfe[10..].iter().all(|&n| n > 1), "{nfe:?}");
    for (name, extra) in [
        ("mle", vec!["--data", "rings", "--objective", "mle"]),
        ("blocks", vec!["--data", "rings", "--blocks", "2"]),
    ] {
        let dir = tmp.path().join(name);
        let out = small_run(&dir, "3", &extra);
        ok(&out);
        assert!(!text(&out.stderr).contains("--objective cfm"), "{name}");
        assert_eq!(objective(&dir), "Mle", "{name}");
    }
}

#[test]
fn an_implicit_solver_trains_evaluates_and_samples_from_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    ok(&small_run(
        &dir,
        "4",
        &[
            "--data",
            "moons",
            "--objective",
            "mle",
            "--solver",
            "kvaerno5",
            "--seed",
            "2",
        ],
    ));
    let model = dir.join("model.json");
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&model).unwrap()).unwrap();
    assert_eq!(file["eval_solver"]["implicit"], "Kvaerno5", "{}", file["eval_solver"]);
    let points = "x,y\n0.5,0.2\n-1.0,0.4\n1.8,-0.3\n";
    let logp = |extra: &[&str]| -> Vec<f64> {
        let mut args = vec!["density", "--model", p(&model), "--input", "-"];
        args.extend_from_slice(extra);
        ok(&cnflow_stdin(&args, points))
            .lines()
            .skip(1)
            .map(|l| l.parse().unwrap())
            .collect()
    };
    // The model's own (implicit) solver, another implicit one and dopri5 agree.
    let tight = |solver: &[&str]| {
        let mut args = solver.to_vec();
        args.extend(["--rtol", "1e-8", "--atol", "1e-8", "--precision", "f64"]);
        logp(&args)
    };
    let own = tight(&[]);
    let trbdf2 = tight(&["--solver", "tr-bdf2"]);
    let dopri5 = tight(&["--solver", "dopri5"]);
    assert_eq!(own.len(), 3);
    for i in 0..3 {
        assert!((own[i] - dopri5[i]).abs() < 1e-5, "{own:?} vs {dopri5:?}");
        assert!((trbdf2[i] - dopri5[i]).abs() < 1e-4, "{trbdf2:?} vs {dopri5:?}");
    }
    let samples = ok(&cnflow(&[
        "sample",
        "--model",
        p(&model),
        "-n",
        "5",
        "--solver",
        "tr-bdf2",
    ]));
    assert_eq!(samples.lines().count(), 5, "{samples}");
    let err = cnflow(&[
        "sample",
        "--model",
        p(&model),
        "-n",
        "5",
        "--solver",
        "kvaerno5",
        "--steps",
        "0",
    ]);
    fails(&err, &["--steps"]);
}
