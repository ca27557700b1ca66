//! Helpers of the tests that run the `cnflow` program as a user does.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn cnflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cnflow"))
        .args(args)
        .output()
        .expect("cnflow runs")
}

pub fn cnflow_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_cnflow"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cnflow runs");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}\n{}", out.status, text(&out.stderr));
    text(&out.stdout)
}

/// The command fails with exit code ≠ 0 and a one-line error containing every `needle`.
pub fn fails(out: &Output, needles: &[&str]) {
    assert!(!out.status.success(), "should fail: {}", text(&out.stdout));
    let err = text(&out.stderr);
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A small, fast training run into `dir`.
pub fn small_run(dir: &Path, iters: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--iters",
        iters,
        "--batch",
        "64",
        "--hidden",
        "16-16",
        "--eval-every",
        "10",
        "--test-size",
        "300",
        "--rtol",
        "1e-4",
        "--atol",
        "1e-4",
        "--out",
        p(dir),
    ];
    args.extend_from_slice(extra);
    cnflow(&args)
}

pub struct Run {
    pub _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub model: PathBuf,
}

pub fn trained() -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    ok(&small_run(&dir, "20", &[]));
    let model = dir.join("model.json");
    Run { _tmp: tmp, dir, model }
}
