//! The run folder of `cnflow train`, always one consistent run.
//!
//! A new run is built beside its folder, in `.NAME.new-PID`, and takes the folder's
//! place only once it has its first checkpoint: by a rename when there was no folder,
//! and over an old run (`--force`) by one atomic exchange of the two directories
//! (Linux `renameat2(RENAME_EXCHANGE)`; elsewhere two renames), after which the old
//! run is deleted. Until then an old run stays whole and resumable, and a run that
//! fails or is killed before its first checkpoint leaves nothing in the folder (a
//! hidden leftover is removed by the next run). A resumed run, or one in a folder of
//! the user's that holds no file a run writes, is written in place.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Files `cnflow train` and `cnflow fit-series` write into a run folder.
pub const RUN_FILES: [&str; 9] = [
    "checkpoint.json",
    "model.json",
    "metrics.csv",
    "panels.png",
    "flow.png",
    "metrics.png",
    "prediction.csv",
    "fit.png",
    "data.csv",
];

/// Where a run writes and where it ends up.
#[derive(Debug)]
pub struct RunFolder {
    /// The folder written now.
    pub work: PathBuf,
    /// The folder the user named, once `work` has replaced it (`None`: `work` is it).
    pending: Option<PathBuf>,
    /// Whether `pending` held an old run to replace (exchange) rather than nothing
    /// (a rename that refuses to replace anything).
    replace: bool,
    /// Whether this run created `work` (and removes it if it fails early).
    created: bool,
    /// Whether a checkpoint has been saved.
    saved: bool,
    /// The run's lock (held while the process runs).
    _lock: fs::File,
}

/// `out` as an absolute path, symlinks resolved where it exists.
fn absolute(out: &Path) -> Result<PathBuf> {
    let abs = match fs::canonicalize(out) {
        Ok(p) => p,
        Err(_) => std::path::absolute(out).with_context(|| format!("--out {}", out.display()))?,
    };
    if abs.file_name().is_none() {
        bail!(
            "--out {} names no folder a run can be built beside; give a folder such as runs/NAME",
            out.display()
        );
    }
    Ok(abs)
}

/// Takes the run's lock, `.NAME.lock` beside it: one process per run folder.
fn lock(parent: &Path, name: &str, out: &Path) -> Result<fs::File> {
    let path = parent.join(format!(".{name}.lock"));
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("creating the lock {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: a valid open descriptor; flock has no memory effects.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r != 0 {
            bail!(
                "another cnflow train is using {} (lock {}); wait for it, or pick another --out",
                out.display(),
                path.display()
            );
        }
    }
    Ok(file)
}

/// The entries of `dir` that are not among [`RUN_FILES`].
fn foreign_files(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !RUN_FILES.contains(&n.as_str()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

impl RunFolder {
    /// The folder for a run in `out`: in place when resuming or when `out` holds none
    /// of [`RUN_FILES`] but files of the user's, beside it otherwise; refused when
    /// `out` holds files a run would overwrite and neither `resume` nor `force` is
    /// given, when it is a file, or when another process is training in it.
    pub fn prepare(out: &Path, resume: bool, force: bool) -> Result<Self> {
        let given = out;
        let out = absolute(out)?;
        if out.exists() && !out.is_dir() {
            bail!(
                "--out {} is a file, not a folder; pick a folder for the run",
                given.display()
            );
        }
        let name = out
            .file_name()
            .map_or("run".into(), |n| n.to_string_lossy().into_owned());
        let parent = out.parent().map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
        let lock = lock(&parent, &name, given)?;
        let existing: Vec<&str> = RUN_FILES.iter().copied().filter(|f| out.join(f).exists()).collect();
        let foreign = foreign_files(&out);
        if resume || (existing.is_empty() && !foreign.is_empty()) {
            return Ok(RunFolder {
                work: out,
                pending: None,
                replace: false,
                created: false,
                saved: resume,
                _lock: lock,
            });
        }
        if !existing.is_empty() {
            if !force {
                if existing.contains(&"checkpoint.json") || existing.contains(&"model.json") {
                    bail!(
                        "{} already holds a run; continue it with --resume, overwrite it with --force, or pick another --out",
                        given.display()
                    );
                }
                bail!(
                    "{} is not from a cnflow run but a run would overwrite it; give --force to replace it, or pick another --out",
                    given.join(existing[0]).display()
                );
            }
            if let Some(f) = foreign.first() {
                bail!(
                    "--force would delete {}, which cnflow did not write; move it, or pick another --out",
                    given.join(f).display()
                );
            }
        }
        // Leftovers of earlier runs killed before their first checkpoint (no live run
        // owns them: it would hold the lock).
        if let Ok(entries) = fs::read_dir(&parent) {
            let prefix = format!(".{name}.new-");
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let work = parent.join(format!(".{name}.new-{}", std::process::id()));
        fs::create_dir_all(&work).with_context(|| format!("creating the run folder {}", work.display()))?;
        Ok(RunFolder {
            work,
            replace: out.exists(),
            pending: Some(out),
            created: true,
            saved: false,
            _lock: lock,
        })
    }

    /// After a checkpoint was saved in [`RunFolder::work`]: a new run now takes the
    /// folder's place (an old run, exchanged out, is deleted). Returns the folder to
    /// write in; on failure the run stays where it is and the error says where.
    pub fn checkpoint_saved(&mut self) -> Result<&Path> {
        self.saved = true;
        if let Some(out) = self.pending.clone() {
            let here = self.work.clone();
            let context = || format!("moving the new run from {} to {}", here.display(), out.display());
            if self.replace {
                exchange(&self.work, &out).with_context(context)?;
                // `work` now holds what was in the folder: only an old run may go.
                let foreign = foreign_files(&self.work);
                if let Some(f) = foreign.first() {
                    exchange(&self.work, &out).with_context(context)?;
                    bail!(
                        "{} gained {f}, which cnflow did not write, during the run; the new run stays in {}",
                        out.display(),
                        self.work.display()
                    );
                }
                let _ = fs::remove_dir_all(&self.work);
            } else {
                rename_no_replace(&self.work, &out).with_context(context)?;
            }
            self.pending = None;
            self.work = out;
        }
        Ok(&self.work)
    }
}

impl Drop for RunFolder {
    /// A run that ends without any checkpoint leaves nothing: the folder it built
    /// beside the user's is removed.
    fn drop(&mut self) {
        if !self.saved && self.created {
            let _ = fs::remove_dir_all(&self.work);
        }
    }
}

/// `renameat2(a, b, flags)`; `None` where the system or filesystem lacks it (not
/// Linux, EINVAL, ENOSYS), so that the caller falls back.
fn renameat2(a: &Path, b: &Path, flags: u32) -> Option<io::Result<()>> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let (ca, cb) = match (
            CString::new(a.as_os_str().as_bytes()),
            CString::new(b.as_os_str().as_bytes()),
        ) {
            (Ok(ca), Ok(cb)) => (ca, cb),
            _ => return Some(Err(io::Error::other("a path holds a NUL byte"))),
        };
        // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
        let r = unsafe { libc::renameat2(libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), flags) };
        if r == 0 {
            return Some(Ok(()));
        }
        let err = io::Error::last_os_error();
        if matches!(err.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) {
            return None;
        }
        Some(Err(err))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (a, b, flags);
        None
    }
}

#[cfg(target_os = "linux")]
const NOREPLACE: u32 = libc::RENAME_NOREPLACE;
#[cfg(not(target_os = "linux"))]
const NOREPLACE: u32 = 0;
#[cfg(target_os = "linux")]
const EXCHANGE: u32 = libc::RENAME_EXCHANGE;
#[cfg(not(target_os = "linux"))]
const EXCHANGE: u32 = 0;

/// Renames `a` to `b`, failing if `b` exists (a folder made there during the run).
fn rename_no_replace(a: &Path, b: &Path) -> io::Result<()> {
    if let Some(done) = renameat2(a, b, NOREPLACE) {
        return done;
    }
    if b.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} appeared during the run", b.display()),
        ));
    }
    fs::rename(a, b)
}

/// Swaps two directories atomically where the system can (else three renames).
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    if let Some(done) = renameat2(a, b, EXCHANGE) {
        return done;
    }
    let old = a.with_extension("old");
    fs::rename(b, &old)?;
    fs::rename(a, b)?;
    fs::rename(&old, a)
}
