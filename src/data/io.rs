//! Reading and writing points: CSV (header optional) and NumPy `.npy`, one row per
//! point; `-` means stdin/stdout (CSV).
//!
//! * CSV: comma separated, spaces around fields ignored, blank lines skipped. The
//!   first row is a header when none of its fields is a number. Every row must have
//!   as many columns as the first data row. Floats are written in the shortest form
//!   that reads back to the same `f64`, so a write–read round trip is bit-exact.
//! * `.npy`: 2-D `f64` or `f32` arrays (either byte order, C or Fortran order); a 1-D
//!   array of length `n` reads as `n × 1`. Written as 2-D little-endian `f64`, C order.
//! * Writing to a path is atomic: a temporary file in the same directory is written,
//!   flushed and renamed over the target, so a failure leaves no partial output. A
//!   symlink's target is what is replaced; devices, FIFOs and sockets (/dev/null,
//!   /dev/stdout, `>(…)`) are written directly.
//! * Every value read must be finite; every error names the file, line and column.
//!
//! For inputs too large to hold as text and array at once,
//! [`csv_chunks`](super::csv_chunks) streams a CSV file as blocks of at most
//! `n_rows_max` rows. The formats themselves live in `csv_io` and `npy_io`.

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use ndarray::{Array2, ArrayView2};

use super::csv_io::{read_csv, read_csv_from, write_csv};
use super::npy_io::{read_npy, write_npy};
use super::DataError;

/// The on-disk format of a points file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointFormat {
    /// Comma-separated text, one point per line, header optional.
    Csv,
    /// NumPy `.npy`, a 2-D array of points.
    Npy,
}

impl PointFormat {
    /// The format implied by a path: `.npy` (any case) is [`PointFormat::Npy`],
    /// everything else, `-` included, is [`PointFormat::Csv`].
    pub fn from_path(path: &Path) -> PointFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("npy") => PointFormat::Npy,
            _ => PointFormat::Csv,
        }
    }
}

/// Whether a path is `-` (stdin or stdout).
pub(crate) fn is_std_stream(path: &Path) -> bool {
    path.as_os_str() == "-"
}

pub(crate) fn file_name(path: &Path) -> String {
    path.display().to_string()
}

/// Maps an error opening or reading `path` to the matching [`DataError`].
pub(crate) fn open_error(path: &Path, err: io::Error) -> DataError {
    let file = file_name(path);
    if path.is_dir() {
        DataError::IsDirectory { file }
    } else if err.kind() == io::ErrorKind::NotFound {
        DataError::NotFound { file }
    } else {
        DataError::Io {
            file,
            action: "reading",
            error: err,
        }
    }
}

pub(crate) fn open_for_reading(path: &Path) -> Result<File, DataError> {
    if path.is_dir() {
        return Err(DataError::IsDirectory { file: file_name(path) });
    }
    File::open(path).map_err(|e| open_error(path, e))
}

/// Reads points from `path` (CSV, `.npy` by extension, or stdin as CSV for `-`).
///
/// With `expected_dim = Some(d)`, points of any other dimension are refused with
/// [`DataError::WrongDimension`].
pub fn read_points(path: &Path, expected_dim: Option<usize>) -> Result<Array2<f64>, DataError> {
    let points = if is_std_stream(path) {
        read_csv_from(io::stdin().lock(), "<stdin>")?
    } else {
        match PointFormat::from_path(path) {
            PointFormat::Csv => read_csv(path)?,
            PointFormat::Npy => read_npy(path)?,
        }
    };
    match expected_dim {
        Some(d) if points.ncols() != d => Err(DataError::WrongDimension {
            file: if is_std_stream(path) {
                "<stdin>".to_string()
            } else {
                file_name(path)
            },
            n_columns: points.ncols(),
            n_expected: d,
        }),
        _ => Ok(points),
    }
}

/// The first non-finite entry of `points`, as a [`DataError::NonFiniteOutput`].
pub(crate) fn check_finite_output(points: ArrayView2<f64>, file: &str) -> Result<(), DataError> {
    match points.indexed_iter().find(|(_, v)| !v.is_finite()) {
        Some(((i, j), v)) => Err(DataError::NonFiniteOutput {
            file: file.to_string(),
            row: i + 1,
            column: j + 1,
            value: v.to_string(),
        }),
        None => Ok(()),
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Temporary files that exist (or are about to) while an atomic write runs, so that a
/// signal handler can remove them before the process exits ([`remove_temp_files`]).
static LIVE_TEMPS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn live_temps() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    LIVE_TEMPS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers `path` as a temporary file to remove on a signal; call it before the file
/// is created, so that no moment leaves an unregistered temporary file on disk.
pub fn register_temp_file(path: &Path) {
    live_temps().push(path.to_path_buf());
}

/// Creates the temporary file `path` (failing if it exists) with the permissions of
/// the file it will replace, if any, from the start; registered for removal on a
/// signal in the same critical section, so that the signal handler either removes it
/// or finds the registry locked before it exists.
fn create_temp_file(path: &Path, permissions: Option<&fs::Permissions>) -> io::Result<File> {
    let mut registry = live_temps();
    let mut options = File::options();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if let Some(p) = permissions {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(p.mode() & 0o7777);
    }
    let handle = options.open(path)?;
    registry.push(path.to_path_buf());
    drop(registry);
    if let Some(p) = permissions {
        // The umask may have cleared bits the old file had.
        handle.set_permissions(p.clone())?;
    }
    Ok(handle)
}

/// Forgets `path` (after it was renamed into place or removed).
pub fn unregister_temp_file(path: &Path) {
    live_temps().retain(|p| p != path);
}

/// Removes every temporary file of a write still in progress, and keeps the registry
/// locked, so no new one is registered. For a signal handler that then ends the
/// process: the lock is never released.
pub fn remove_temp_files() {
    let guard = live_temps();
    for p in guard.iter() {
        let _ = fs::remove_file(p);
    }
    std::mem::forget(guard);
}

/// Where a write to a path goes.
#[derive(Debug)]
enum Target {
    /// A regular file (or none yet) at this path, the end of any symlinks: written
    /// atomically, keeping the old file's permissions.
    Regular {
        path: PathBuf,
        permissions: Option<fs::Permissions>,
    },
    /// A character or block device, FIFO or socket (e.g. /dev/null, /dev/stdout's
    /// target, a shell's `>(…)`): written directly.
    Special(PathBuf),
}

/// Follows symlinks from `path` (at most 40) to the path that is written.
fn resolve_target(path: &Path, file: &str) -> Result<Target, DataError> {
    // /dev/stdout, /dev/fd/N and the like are the process's own descriptors, whatever
    // they point at (a regular file opened with `>>` must be appended to, not
    // replaced): written directly, as is anything else in /dev.
    if path.starts_with("/dev") {
        return Ok(Target::Special(path.to_path_buf()));
    }
    // What the path finally names: a device, FIFO or socket is opened by the path as
    // given.
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => return Err(DataError::IsDirectory { file: file.to_string() }),
        Ok(m) if !m.is_file() => return Ok(Target::Special(path.to_path_buf())),
        _ => {}
    }
    let mut at = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = fs::read_link(&at).map_err(|e| DataError::Io {
                    file: file.to_string(),
                    action: "reading the symlink",
                    error: e,
                })?;
                at = match at.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
                // A link into /proc/PID/fd or /dev names a descriptor: write through it.
                if at.starts_with("/proc") || at.starts_with("/dev") {
                    return Ok(Target::Special(path.to_path_buf()));
                }
            }
            Ok(m) if m.is_dir() => return Err(DataError::IsDirectory { file: file.to_string() }),
            Ok(m) if m.is_file() => {
                return Ok(Target::Regular {
                    path: at,
                    permissions: Some(m.permissions()),
                })
            }
            Ok(_) => return Ok(Target::Special(at)),
            Err(_) => {
                return Ok(Target::Regular {
                    path: at,
                    permissions: None,
                })
            }
        }
    }
    Err(DataError::Io {
        file: file.to_string(),
        action: "following its symlinks",
        error: io::Error::other("more than 40 levels of symlinks"),
    })
}

/// `/dev/stdout`, `/dev/stderr`, `/dev/fd/N` and `/proc/self/fd/N` as a duplicate of
/// the process's own descriptor, so that writes share its offset and mode (a shell's
/// `>>` appends, and a script's later writes to the same file follow ours); `None`
/// for other paths.
fn own_descriptor(path: &Path) -> Option<io::Result<File>> {
    #[cfg(unix)]
    {
        use std::os::unix::io::FromRawFd;
        let text = path.to_str()?;
        let fd: i32 = match text {
            "/dev/stdout" => 1,
            "/dev/stderr" => 2,
            _ => text
                .strip_prefix("/dev/fd/")
                .or_else(|| text.strip_prefix("/proc/self/fd/"))?
                .parse()
                .ok()?,
        };
        // SAFETY: dup returns a new descriptor (or -1), which the File then owns.
        let new = unsafe { libc::dup(fd) };
        if new < 0 {
            return Some(Err(io::Error::last_os_error()));
        }
        Some(Ok(unsafe { File::from_raw_fd(new) }))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Whether writes to `path` go to a device, FIFO or socket (directly, unseekable for a
/// pipe) rather than to a regular file.
pub fn is_special_output(path: &Path) -> bool {
    matches!(resolve_target(path, ""), Ok(Target::Special(_)))
}

/// Writes `path` atomically: `write` fills a temporary file in the same directory,
/// which is flushed, synced and renamed over `path`. If `write` or any step fails,
/// the temporary file is removed and `path` is left as it was.
///
/// A symlink is followed and its target replaced (the link stays a link); a regular
/// file keeps its permissions. A character or block device, FIFO or socket
/// (/dev/null, /dev/stdout, a shell's `>(…)`) is written directly, as a shell's `>`
/// would.
pub fn write_atomic<E, F>(path: &Path, write: F) -> Result<(), E>
where
    E: From<DataError>,
    F: FnOnce(&mut BufWriter<File>) -> Result<(), E>,
{
    let file = file_name(path);
    let io_err = |action: &'static str, source: io::Error| DataError::Io {
        file: file.clone(),
        action,
        error: source,
    };
    let (target, permissions) = match resolve_target(path, &file)? {
        Target::Special(at) => {
            let handle = match own_descriptor(&at) {
                Some(h) => h,
                None => File::options().write(true).open(&at),
            }
            .map_err(|e| io_err("opening for writing", e))?;
            let mut writer = BufWriter::new(handle);
            write(&mut writer)?;
            writer.into_inner().map_err(|e| io_err("writing", e.into_error()))?;
            return Ok(());
        }
        Target::Regular { path, permissions } => (path, permissions),
    };
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut base = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "points".to_string());
    // Room for the prefix and suffix within the 255 bytes a file name may have.
    if base.len() > 200 {
        let mut cut = 200;
        while !base.is_char_boundary(cut) {
            cut -= 1;
        }
        base.truncate(cut);
    }
    let temp = dir.join(format!(
        ".{base}.{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let handle = create_temp_file(&temp, permissions.as_ref())
            .map_err(|e| io_err("creating a temporary file beside it", e))?;
        let mut writer = BufWriter::new(handle);
        write(&mut writer)?;
        let handle = writer.into_inner().map_err(|e| io_err("writing", e.into_error()))?;
        handle.sync_all().map_err(|e| io_err("syncing", e))?;
        fs::rename(&temp, &target).map_err(|e| io_err("renaming the temporary file", e))?;
        // The rename itself reaches the disk with the folder's entry (best effort: not
        // every filesystem lets a directory be synced).
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        // Best effort: the temporary file may not exist.
        let _ = fs::remove_file(&temp);
    }
    unregister_temp_file(&temp);
    result
}

/// Writes points to `path` in the format its extension implies (`.npy` or CSV), or
/// as CSV to stdout for `-`.
pub fn write_points(path: &Path, points: ArrayView2<f64>) -> Result<(), DataError> {
    match PointFormat::from_path(path) {
        PointFormat::Npy if !is_std_stream(path) => write_npy(path, points),
        _ => write_csv(path, points),
    }
}
