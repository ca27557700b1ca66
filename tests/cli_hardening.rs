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
    let sample = |out: &Path| ok(&cnflow(&["sample", "--model", p(&run.model), "-n", "50", "--output", p(out)]));
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
    let out = ok(&cnflow(&["sample", "--model", p(&run.model), "-n", "50", "--output", "/dev/stdout"]));
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
    ok(&cnflow(&["datasets", "8gaussians", "-n", "2000000", "--output", p(&input)]));
    let out = tmp.path().join("lp.csv");
    let child = Command::new(env!("CARGO_BIN_EXE_cnflow"))
        .args(["density", "--model", p(&run.model), "--input", p(&input), "--output", p(&out)])
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
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
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
    fails(&cnflow(&["train", "--data", p(&bad), "--out", p(&dir), "--iters", "2"]), &["constant"]);
    assert!(!dir.exists(), "the failed run left {}", dir.display());
}

#[test]
fn files_that_are_not_a_run_are_not_overwritten_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mine");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("metrics.csv"), "my own data\n").unwrap();
    fails(&small_run(&dir, "2", &[]), &["metrics.csv", "--force"]);
    assert_eq!(std::fs::read_to_string(dir.join("metrics.csv")).unwrap(), "my own data\n");
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
    for (k, delay_ms) in [0u64, 30, 60, 90, 120, 160, 200, 260, 330, 420, 600, 1500].into_iter().enumerate() {
        let dir = tmp.path().join(format!("run{k}"));
        ok(&small_run(&dir, "10", &["--seed", "1"]));
        let mut child = Command::new(env!("CARGO_BIN_EXE_cnflow"))
            .args(["train", "--iters", "400", "--batch", "64", "--hidden", "16-16", "--eval-every", "3"])
            .args(["--test-size", "300", "--rtol", "1e-4", "--atol", "1e-4", "--seed", "2", "--force"])
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
        assert_eq!(model["training"]["seed"].as_u64().unwrap(), seed, "kill at {delay_ms} ms");
        let done = ck["iter"].as_u64().unwrap();
        let iters = metric_iters(&dir);
        assert_eq!(iters, (1..=iters.len() as u64).collect::<Vec<_>>(), "kill at {delay_ms} ms");
        assert!(iters.len() as u64 >= done, "kill at {delay_ms} ms: metrics end before the checkpoint");
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
            .filter(|n| n.starts_with('.'))
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
