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
//!   flushed and renamed over the target, so a failure leaves no partial output.
//! * Every value read must be finite; every error names the file, line and column.
//!
//! For inputs too large to hold as text and array at once,
//! [`csv_chunks`](super::csv_chunks) streams a CSV file as blocks of at most
//! `n_rows_max` rows. The formats themselves live in `csv_io` and `npy_io`.

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Writes `path` atomically: `write` fills a temporary file in the same directory,
/// which is flushed, synced and renamed over `path`. If `write` or any step fails,
/// the temporary file is removed and `path` is left as it was.
pub fn write_atomic<E, F>(path: &Path, write: F) -> Result<(), E>
where
    E: From<DataError>,
    F: FnOnce(&mut BufWriter<File>) -> Result<(), E>,
{
    let file = file_name(path);
    if path.is_dir() {
        return Err(DataError::IsDirectory { file }.into());
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "points".to_string());
    let temp = dir.join(format!(
        ".{base}.{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let io_err = |action: &'static str, source: io::Error| DataError::Io {
        file: file.clone(),
        action,
        error: source,
    };
    let handle = File::options()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(|e| io_err("creating a temporary file beside it", e))?;
    let mut writer = BufWriter::new(handle);
    let result = write(&mut writer).and_then(|()| {
        let handle = writer.into_inner().map_err(|e| io_err("writing", e.into_error()))?;
        handle.sync_all().map_err(|e| io_err("syncing", e))?;
        fs::rename(&temp, path).map_err(|e| io_err("renaming the temporary file", e))?;
        Ok(())
    });
    if result.is_err() {
        // Best effort: the temporary file may already be gone.
        let _ = fs::remove_file(&temp);
    }
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
