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

/// Files `cnflow train` writes into a run folder.
pub const RUN_FILES: [&str; 6] = [
    "checkpoint.json",
    "model.json",
    "metrics.csv",
    "panels.png",
    "flow.png",
    "metrics.png",
];

/// Where a run writes and where it ends up.
#[derive(Debug)]
pub struct RunFolder {
    /// The folder written now.
    pub work: PathBuf,
    /// The folder the user named, once `work` has replaced it (`None`: `work` is it).
    pending: Option<PathBuf>,
    /// Whether this run created `work` (and removes it if it fails early).
    created: bool,
    /// Whether a checkpoint has been saved.
    saved: bool,
}

impl RunFolder {
    /// The folder for a run in `out`: in place when resuming or when `out` holds none
    /// of [`RUN_FILES`], beside it with `force`; refused when `out` holds files a run
    /// would overwrite and neither `resume` nor `force` is given.
    pub fn prepare(out: &Path, resume: bool, force: bool) -> Result<Self> {
        let existing: Vec<&str> = RUN_FILES.iter().copied().filter(|f| out.join(f).exists()).collect();
        let foreign: Vec<String> = match fs::read_dir(out) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !RUN_FILES.contains(&n.as_str()))
                .collect(),
            Err(_) => Vec::new(),
        };
        if resume || (existing.is_empty() && !foreign.is_empty()) {
            return Ok(RunFolder {
                work: out.to_path_buf(),
                pending: None,
                created: false,
                saved: resume,
            });
        }
        if !existing.is_empty() {
            if !force {
                if existing.contains(&"checkpoint.json") || existing.contains(&"model.json") {
                    bail!(
                        "{} already holds a run; continue it with --resume, overwrite it with --force, or pick another --out",
                        out.display()
                    );
                }
                bail!(
                    "{} is not from a cnflow run but a run would overwrite it; give --force to replace it, or pick another --out",
                    out.join(existing[0]).display()
                );
            }
            if let Some(f) = foreign.first() {
                bail!(
                    "--force would delete {}, which cnflow did not write; move it, or pick another --out",
                    out.join(f).display()
                );
            }
        }
        let name = out
            .file_name()
            .map_or("run".into(), |n| n.to_string_lossy().into_owned());
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
        // Leftovers of earlier runs killed before their first checkpoint.
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
            pending: Some(out.to_path_buf()),
            created: true,
            saved: false,
        })
    }

    /// After a checkpoint was saved in [`RunFolder::work`]: a forced run now takes the
    /// folder's place (and the old run is deleted). Returns the folder to write in.
    pub fn checkpoint_saved(&mut self) -> Result<&Path> {
        self.saved = true;
        if let Some(out) = self.pending.take() {
            if out.exists() {
                exchange(&self.work, &out).with_context(|| {
                    format!(
                        "replacing {} with the new run in {}",
                        out.display(),
                        self.work.display()
                    )
                })?;
                // `work` now holds the old run.
                let _ = fs::remove_dir_all(&self.work);
            } else {
                fs::rename(&self.work, &out)
                    .with_context(|| format!("moving the new run from {} to {}", self.work.display(), out.display()))?;
            }
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

/// Swaps two directories atomically where the system can.
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let ca = CString::new(a.as_os_str().as_bytes()).map_err(io::Error::other)?;
        let cb = CString::new(b.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        // EINVAL / ENOSYS: a filesystem or kernel without the exchange.
        if !matches!(err.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) {
            return Err(err);
        }
    }
    let old = a.with_extension("old");
    fs::rename(b, &old)?;
    fs::rename(a, b)?;
    fs::rename(&old, a)
}
