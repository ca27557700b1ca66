//! The `cnflow` program against a hostile but realistic user: outputs that are not
//! regular files, interrupted and forced runs, malformed inputs, resource limits.

mod cli_common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use cli_common::{cnflow, fails, ok, p, small_run, text, trained};

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

/// Reads a FIFO to its end on a thread (so that a writer can open it).
fn read_fifo(path: &Path) -> std::thread::JoinHandle<Vec<u8>> {
    let path = path.to_path_buf();
    std::thread::spawn(move || std::fs::read(path).unwrap())
}

#[test]
fn special_files_are_written_directly_and_symlinks_followed() {
    let run = trained();
    let tmp = tempfile::tempdir().unwrap();
    let sample = |out: &Path| {
        ok(&cnflow(&[
            "sample",
            "--model",
            p(&run.model),
            "-n",
            "50",
            "--output",
            p(out),
        ]))
    };
    let regular_csv = tmp.path().join("r.csv");
    let regular_npy = tmp.path().join("r.npy");
    sample(&regular_csv);
    sample(&regular_npy);

    // /dev/null stays a character device.
    sample(Path::new("/dev/null"));
    let meta = std::fs::metadata("/dev/null").unwrap();
    assert!(!meta.is_file(), "/dev/null became a regular file");

    // A FIFO gets the bytes a regular file gets, CSV and .npy (whose row count is known).
    for (name, regular) in [("f.csv", &regular_csv), ("f.npy", &regular_npy)] {
        let fifo = tmp.path().join(name);
        mkfifo(&fifo);
        let reader = read_fifo(&fifo);
        sample(&fifo);
        assert_eq!(reader.join().unwrap(), std::fs::read(regular).unwrap(), "{name}");
        assert!(!std::fs::metadata(&fifo).unwrap().is_file(), "{name} was replaced");
    }

    // /dev/stdout is the process's stdout (a pipe here).
    let out = sample(Path::new("/dev/stdout"));
    assert_eq!(out.as_bytes(), std::fs::read(&regular_csv).unwrap());

    // A symlink stays a link; its target is replaced, keeping its permissions.
    let target = tmp.path().join("target.csv");
    std::fs::write(&target, "old").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = tmp.path().join("link.csv");
    std::os::unix::fs::symlink("target.csv", &link).unwrap();
    sample(&link);
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(&target).unwrap(), std::fs::read(&regular_csv).unwrap());
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    // Nothing else was left beside them.
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn a_signal_during_density_leaves_no_temporary_file() {
    let run = trained();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("x.npy");
    ok(&cnflow(&[
        "datasets",
        "8gaussians",
        "-n",
        "2000000",
        "--output",
        p(&input),
    ]));
    let out = tmp.path().join("lp.csv");
    let child = Command::new(env!("CARGO_BIN_EXE_cnflow"))
        .args([
            "density",
            "--model",
            p(&run.model),
            "--input",
            p(&input),
            "--output",
            p(&out),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let temp_exists = || {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
    };
    for _ in 0..1000 {
        if temp_exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(temp_exists(), "no temporary output appeared");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait_with_output().unwrap().status;
    assert_eq!(status.code(), Some(143));
    assert!(!temp_exists() && !out.exists());
}

#[test]
fn a_failed_run_leaves_no_empty_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let bad = tmp.path().join("bad.csv");
    std::fs::write(&bad, "1,2\n1,2\n1,2\n1,2\n1,2\n1,2\n1,2\n1,2\n1,2\n1,2\n1,2\n1,2\n").unwrap();
    fails(
        &cnflow(&["train", "--data", p(&bad), "--out", p(&dir), "--iters", "2"]),
        &["constant"],
    );
    assert!(!dir.exists(), "the failed run left {}", dir.display());
}

#[test]
fn files_that_are_not_a_run_are_not_overwritten_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mine");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("metrics.csv"), "my own data\n").unwrap();
    fails(&small_run(&dir, "2", &[]), &["metrics.csv", "--force"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("metrics.csv")).unwrap(),
        "my own data\n"
    );
    ok(&small_run(&dir, "2", &["--force"]));
    assert!(dir.join("checkpoint.json").is_file());
    let _ = text;
}

/// The iterations in a run folder's metrics.csv.
fn metric_iters(dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(dir.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn sigkill_during_a_forced_run_always_leaves_one_consistent_resumable_run() {
    let tmp = tempfile::tempdir().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for (k, delay_ms) in [0u64, 30, 60, 90, 120, 160, 200, 260, 330, 420, 600, 1500]
        .into_iter()
        .enumerate()
    {
        let dir = tmp.path().join(format!("run{k}"));
        ok(&small_run(&dir, "10", &["--seed", "1"]));
        let mut child = Command::new(env!("CARGO_BIN_EXE_cnflow"))
            .args([
                "train",
                "--iters",
                "400",
                "--batch",
                "64",
                "--hidden",
                "16-16",
                "--eval-every",
                "3",
            ])
            .args([
                "--test-size",
                "300",
                "--rtol",
                "1e-4",
                "--atol",
                "1e-4",
                "--seed",
                "2",
                "--force",
            ])
            .args(["--out", p(&dir)])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // One run: its checkpoint, model and metrics agree, whichever run it is.
        let ck = json(&dir.join("checkpoint.json"));
        let model = json(&dir.join("model.json"));
        let seed = ck["args"]["seed"].as_u64().unwrap();
        seen.insert(seed);
        assert_eq!(
            model["training"]["seed"].as_u64().unwrap(),
            seed,
            "kill at {delay_ms} ms"
        );
        let done = ck["iter"].as_u64().unwrap();
        let iters = metric_iters(&dir);
        assert_eq!(
            iters,
            (1..=iters.len() as u64).collect::<Vec<_>>(),
            "kill at {delay_ms} ms"
        );
        assert!(
            iters.len() as u64 >= done,
            "kill at {delay_ms} ms: metrics end before the checkpoint"
        );
        if seed == 1 {
            assert_eq!(done, 10, "kill at {delay_ms} ms: the old run is not whole");
        }
        // And it resumes, with its metrics continuing where the checkpoint is.
        let total = (done + 2).to_string();
        ok(&cnflow(&["train", "--out", p(&dir), "--resume", "--iters", &total]));
        assert_eq!(metric_iters(&dir), (1..=done + 2).collect::<Vec<_>>());
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.') && !n.ends_with(".lock"))
            .collect();
        // A hidden half-built run may remain after a SIGKILL; the next run removes it.
        assert!(leftovers.len() <= 1, "{leftovers:?}");
        for l in leftovers {
            let _ = std::fs::remove_dir_all(tmp.path().join(l));
        }
    }
    // The kills fell both before and after the new run took the folder's place.
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [1, 2]);
}

/// A .npy file with the header dict `dict` (padded, version 1.0) over `data`.
fn raw_npy(path: &Path, dict: &str, data: &[f64]) {
    let mut header = dict.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// Every command that reads points fails with one line naming `file` and the needles,
/// without a panic and without leaving output.
fn every_reader_refuses(model: &Path, file: &Path, needles: &[&str]) {
    let dir = file.parent().unwrap();
    let out = dir.join("out.csv");
    let mut all = vec![p(file)];
    all.extend_from_slice(needles);
    for args in [
        vec!["density", "--model", p(model), "--input", p(file), "--output", p(&out)],
        vec!["eval", "--model", p(model), "--data", p(file)],
    ] {
        let o = cnflow(&args);
        assert_ne!(o.status.code(), Some(101), "{args:?} panicked: {}", text(&o.stderr));
        fails(&o, &all);
        assert_eq!(text(&o.stderr).trim().lines().count(), 1, "{}", text(&o.stderr));
        assert!(!out.exists());
    }
}

#[test]
fn npy_headers_that_overflow_or_lie_are_refused_by_every_reader() {
    let run = trained();
    let tmp = tempfile::tempdir().unwrap();
    let huge = tmp.path().join("huge.npy");
    raw_npy(
        &huge,
        "{'descr': '<f8', 'fortran_order': False, 'shape': (9223372036854775807, 9223372036854775807), }",
        &[1.0, 2.0],
    );
    every_reader_refuses(&run.model, &huge, &[]);
    // A header saying (5, 2) over 20 × 2 values: both readers refuse it.
    let long = tmp.path().join("long.npy");
    let data: Vec<f64> = (0..40).map(|i| i as f64 * 0.1).collect();
    raw_npy(
        &long,
        "{'descr': '<f8', 'fortran_order': False, 'shape': (5, 2), }",
        &data,
    );
    every_reader_refuses(&run.model, &long, &[]);
}

#[test]
fn values_beyond_the_models_float_range_name_the_file_and_row() {
    let run = trained();
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big.csv");
    std::fs::write(&big, "0.5,0.5\n1,2\n1e300,3\n").unwrap();
    every_reader_refuses(&run.model, &big, &["row 3", "column 1", "f32", "--precision f64"]);
    // In f64 the same points are fine (and give a very small density).
    let o = cnflow(&[
        "density",
        "--model",
        p(&run.model),
        "--input",
        p(&big),
        "--precision",
        "f64",
    ]);
    assert!(o.status.success() || !text(&o.stderr).contains("panicked"));
    // Training data of that size: a clear word, not "constant (std inf)".
    let mut rows = String::new();
    for i in 0..40 {
        rows.push_str(&format!("{}e307,{}\n", 1 + i % 9, i));
    }
    let huge = tmp.path().join("huge.csv");
    std::fs::write(&huge, rows).unwrap();
    let o = cnflow(&[
        "train",
        "--data",
        p(&huge),
        "--out",
        p(&tmp.path().join("r")),
        "--iters",
        "1",
    ]);
    fails(&o, &["column 1", "too large"]);
    assert!(!text(&o.stderr).contains("constant"));
}

#[test]
fn csv_errors_count_blank_lines_and_quote_values_briefly() {
    let run = trained();
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("blank.csv");
    std::fs::write(&f, "1,2\n\n\n3,abc\n").unwrap();
    every_reader_refuses(&run.model, &f, &["blank.csv:4:2", "abc"]);
    let f = tmp.path().join("crlf.csv");
    std::fs::write(&f, "x,y\r\n1,2\r\n\r\n  \r\n3,4\r\n5,zz\r\n").unwrap();
    every_reader_refuses(&run.model, &f, &["crlf.csv:6:2", "zz"]);
    let f = tmp.path().join("spaces.csv");
    std::fs::write(&f, "   \n \t \n\n").unwrap();
    every_reader_refuses(&run.model, &f, &["no data"]);
    let f = tmp.path().join("longcell.csv");
    let cell = "9".repeat(50) + &"x".repeat(1_000_000);
    std::fs::write(&f, format!("1,2\n3,{cell}\n")).unwrap();
    let o = cnflow(&["density", "--model", p(&run.model), "--input", p(&f)]);
    fails(&o, &["longcell.csv:2:2"]);
    assert!(
        text(&o.stderr).len() < 400,
        "the error echoes {} bytes",
        text(&o.stderr).len()
    );
}

#[test]
fn corrupt_model_files_and_empty_flags_are_refused() {
    let run = trained();
    let tmp = tempfile::tempdir().unwrap();
    let original: serde_json::Value = json(&run.model);
    let x = tmp.path().join("x.csv");
    std::fs::write(&x, "0.1,0.2\n").unwrap();
    let density = |m: &Path| cnflow(&["density", "--model", p(m), "--input", p(&x)]);
    // A weight beyond f32 in an f32 model.
    let mut m = original.clone();
    m["blocks"][0]["params"][3] = serde_json::json!(1e39);
    let f = tmp.path().join("inf.json");
    std::fs::write(&f, m.to_string()).unwrap();
    fails(&density(&f), &["weight #3", "f32"]);
    // Format version 0, and one that wraps around u32.
    for v in [0u64, (1u64 << 32) + 1] {
        let mut m = original.clone();
        m["version"] = serde_json::json!(v);
        let f = tmp.path().join(format!("v{v}.json"));
        std::fs::write(&f, m.to_string()).unwrap();
        fails(&density(&f), &["version"]);
    }
    // --hidden "".
    fails(&small_run(&tmp.path().join("h"), "2", &["--hidden", ""]), &["--hidden"]);
    assert!(!tmp.path().join("h").exists());
}

#[test]
fn a_resume_with_nothing_left_to_do_keeps_the_kl_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    ok(&small_run(&dir, "10", &[]));
    let before = json(&dir.join("model.json"));
    assert!(before["training"]["kl_gap"].is_f64());
    ok(&cnflow(&["train", "--out", p(&dir), "--resume"]));
    let after = json(&dir.join("model.json"));
    assert_eq!(after["training"]["kl_gap"], before["training"]["kl_gap"]);
}

/// `cnflow ARGS` with the memory the guard sees set to `limit`.
fn with_memory(limit: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cnflow"))
        .env("CNFLOW_MEMORY_LIMIT", limit)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn configurations_that_cannot_fit_are_refused_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    // A batch of 10⁶ on a 2 GB machine: refused with the estimate and the flag.
    let o = with_memory("2G", &["train", "--batch", "1000000", "--iters", "1", "--out", p(&out)]);
    fails(&o, &["needs about", "GB", "2.1 GB available", "--batch"]);
    assert!(!out.exists());
    // Widths of 10⁵: 10¹⁰ weights, refused on any machine.
    let o = cnflow(&["train", "--hidden", "100000-100000", "--iters", "1", "--out", p(&out)]);
    fails(&o, &["needs about", "--hidden"]);
    // The default run fits in 2 GB.
    ok(&with_memory(
        "2G",
        &["train", "--iters", "2", "--out", p(&out), "--test-size", "100"],
    ));
    // Exact trace in 200 dimensions: what it costs, and Hutchinson suggested.
    let data = tmp.path().join("d200.csv");
    let mut text = String::new();
    for i in 0..50 {
        let row: Vec<String> = (0..200)
            .map(|j| format!("{}", ((i * 7 + j * 13) % 17) as f64 * 0.1))
            .collect();
        text.push_str(&row.join(","));
        text.push('\n');
    }
    std::fs::write(&data, text).unwrap();
    let o = with_memory(
        "100M",
        &[
            "train",
            "--data",
            p(&data),
            "--batch",
            "5000",
            "--iters",
            "1",
            "--out",
            p(&tmp.path().join("d")),
        ],
    );
    fails(&o, &["200 tangents", "--trace hutchinson"]);
    // density and sample: the chunk is what sets the memory.
    let run = trained();
    let o = with_memory(
        "200M",
        &["sample", "--model", p(&run.model), "-n", "10", "--chunk", "10000000"],
    );
    fails(&o, &["needs about", "--chunk"]);
    ok(&with_memory("200M", &["sample", "--model", p(&run.model), "-n", "10"]));
}

#[test]
fn dev_stdout_appends_where_the_shell_points_it() {
    let run = trained();
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log.txt");
    std::fs::write(&log, "before\n").unwrap();
    let file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_cnflow"))
        .args(["sample", "--model", p(&run.model), "-n", "5", "--output", "/dev/stdout"])
        .stdout(file)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("before\n"), "{text}");
    assert_eq!(text.lines().count(), 1 + 5, "{text}");
}

#[test]
fn run_folders_are_locked_and_odd_out_paths_handled() {
    let tmp = tempfile::tempdir().unwrap();
    // --out . in an empty folder: the run lands there.
    let here = tmp.path().join("here");
    std::fs::create_dir(&here).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cnflow"))
        .current_dir(&here)
        .args([
            "train",
            "--iters",
            "3",
            "--batch",
            "32",
            "--hidden",
            "8",
            "--test-size",
            "50",
            "--out",
            ".",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(here.join("checkpoint.json").is_file() && here.join("model.json").is_file());
    // --out naming a file.
    let f = tmp.path().join("afile");
    std::fs::write(&f, "mine").unwrap();
    fails(&small_run(&f, "2", &[]), &["is a file"]);
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "mine");
    // A second process on a run folder in use is refused.
    let dir = tmp.path().join("busy");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cnflow"))
        .args([
            "train",
            "--iters",
            "100000",
            "--batch",
            "32",
            "--hidden",
            "8",
            "--eval-every",
            "5",
        ])
        .args(["--test-size", "50", "--out", p(&dir)])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..500 {
        if dir.join("checkpoint.json").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let second = cnflow(&["train", "--out", p(&dir), "--resume", "--iters", "100"]);
    let _ = child.kill();
    let _ = child.wait();
    fails(&second, &["another cnflow train"]);
    // A row of commas is a row of missing values, not a blank line.
    let run = trained();
    let commas = tmp.path().join("commas.csv");
    std::fs::write(&commas, "1,2\n,\n3,4\n").unwrap();
    fails(
        &cnflow(&["density", "--model", p(&run.model), "--input", p(&commas)]),
        &["commas.csv:2"],
    );
    // An unreadable memory budget is an error, not "no limit".
    let o = Command::new(env!("CARGO_BIN_EXE_cnflow"))
        .env("CNFLOW_MEMORY_LIMIT", "lots")
        .args(["sample", "--model", p(&run.model), "-n", "3"])
        .output()
        .unwrap();
    fails(&o, &["CNFLOW_MEMORY_LIMIT"]);
}
