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
//! For inputs too large to hold as text and array at once, [`csv_chunks`] streams a
//! CSV file as blocks of at most `n_rows_max` rows.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::{Array2, ArrayD, ArrayView2, Ix2};
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};

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
fn is_std_stream(path: &Path) -> bool {
    path.as_os_str() == "-"
}

fn file_name(path: &Path) -> String {
    path.display().to_string()
}

/// Maps an error opening or reading `path` to the matching [`DataError`].
fn open_error(path: &Path, err: io::Error) -> DataError {
    let file = file_name(path);
    if path.is_dir() {
        DataError::IsDirectory { file }
    } else if err.kind() == io::ErrorKind::NotFound {
        DataError::NotFound { file }
    } else {
        DataError::Io {
            file,
            action: "reading",
            source: err,
        }
    }
}

fn open_for_reading(path: &Path) -> Result<File, DataError> {
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

/// Reads a whole CSV file of points.
pub fn read_csv(path: &Path) -> Result<Array2<f64>, DataError> {
    let file = open_for_reading(path)?;
    read_csv_from(file, &file_name(path))
}

/// Reads CSV points from any reader; `file` names the source in errors.
pub fn read_csv_from<R: Read>(reader: R, file: &str) -> Result<Array2<f64>, DataError> {
    let mut chunks = CsvChunks::new(reader, file, usize::MAX);
    match chunks.next() {
        Some(result) => result,
        None => Err(DataError::Empty { file: file.to_string() }),
    }
}

/// Streams a CSV file (or stdin for `-`) as blocks of at most `n_rows_max` rows.
///
/// `n_rows_max = 0` is taken as 1.
pub fn csv_chunks(path: &Path, n_rows_max: usize) -> Result<CsvChunks<Box<dyn Read>>, DataError> {
    if is_std_stream(path) {
        return Ok(CsvChunks::new(
            Box::new(io::stdin()) as Box<dyn Read>,
            "<stdin>",
            n_rows_max,
        ));
    }
    let file = open_for_reading(path)?;
    Ok(CsvChunks::new(
        Box::new(file) as Box<dyn Read>,
        &file_name(path),
        n_rows_max,
    ))
}

/// An iterator over blocks of CSV points, each an `n × d` array with `1 ≤ n ≤ n_rows_max`.
///
/// The header rule and every check of [`read_csv`] apply across blocks (the column
/// count is fixed by the first data row of the file). A file with no data rows
/// yields one [`DataError::Empty`]; after any error the iterator ends.
pub struct CsvChunks<R: Read> {
    reader: csv::Reader<R>,
    file: String,
    n_rows_max: usize,
    n_columns: Option<usize>,
    n_rows_read: u64,
    first_record_seen: bool,
    done: bool,
    record: csv::StringRecord,
}

impl<R: Read> CsvChunks<R> {
    /// Wraps a reader; `file` names the source in errors.
    pub fn new(reader: R, file: &str, n_rows_max: usize) -> Self {
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(reader);
        CsvChunks {
            reader,
            file: file.to_string(),
            n_rows_max: n_rows_max.max(1),
            n_columns: None,
            n_rows_read: 0,
            first_record_seen: false,
            done: false,
            record: csv::StringRecord::new(),
        }
    }

    /// Data rows read so far (the header excluded).
    pub fn n_rows_read(&self) -> u64 {
        self.n_rows_read
    }

    /// Reads up to `n_rows_max` rows into a block; `Ok(None)` at the end of input.
    fn read_block(&mut self) -> Result<Option<Array2<f64>>, DataError> {
        let mut values: Vec<f64> = Vec::new();
        let mut n_rows = 0usize;
        while n_rows < self.n_rows_max {
            let more = self.reader.read_record(&mut self.record).map_err(|e| DataError::Csv {
                file: self.file.clone(),
                line: e.position().map_or(0, |p| p.line()),
                message: e.to_string(),
            })?;
            if !more {
                break;
            }
            let line = self.record.position().map_or(0, |p| p.line());
            if !self.first_record_seen {
                self.first_record_seen = true;
                let is_number = |f: &str| f.trim_start_matches('\u{feff}').parse::<f64>().is_ok();
                if !self.record.iter().any(is_number) {
                    continue; // header
                }
            }
            let n_expected = *self.n_columns.get_or_insert(self.record.len());
            if self.record.len() != n_expected {
                return Err(DataError::Ragged {
                    file: self.file.clone(),
                    line,
                    n_columns: self.record.len(),
                    n_expected,
                });
            }
            for (j, field) in self.record.iter().enumerate() {
                let field = field.trim_start_matches('\u{feff}'); // a UTF-8 byte-order mark
                let v: f64 = field.parse().map_err(|_| DataError::Malformed {
                    file: self.file.clone(),
                    line,
                    column: j + 1,
                    value: field.to_string(),
                })?;
                if !v.is_finite() {
                    return Err(DataError::NonFinite {
                        file: self.file.clone(),
                        line,
                        column: j + 1,
                        value: field.to_string(),
                    });
                }
                values.push(v);
            }
            n_rows += 1;
            self.n_rows_read += 1;
        }
        if n_rows == 0 {
            return Ok(None);
        }
        let n_columns = self.n_columns.unwrap_or(0);
        Array2::from_shape_vec((n_rows, n_columns), values)
            .map(Some)
            .map_err(|e| DataError::Csv {
                file: self.file.clone(),
                line: 0,
                message: e.to_string(),
            })
    }
}

impl<R: Read> Iterator for CsvChunks<R> {
    type Item = Result<Array2<f64>, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.read_block() {
            Ok(Some(block)) => Some(Ok(block)),
            Ok(None) => {
                self.done = true;
                if self.n_rows_read == 0 {
                    Some(Err(DataError::Empty {
                        file: self.file.clone(),
                    }))
                } else {
                    None
                }
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Reads a NumPy `.npy` file of points: 2-D `f64` or `f32` (C or Fortran order), or
/// 1-D of length `n` as `n × 1`.
pub fn read_npy(path: &Path) -> Result<Array2<f64>, DataError> {
    let file = file_name(path);
    let bytes = {
        let mut f = open_for_reading(path)?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(|e| open_error(path, e))?;
        bytes
    };
    let npy_error = |e: ReadNpyError| DataError::Npy {
        file: file.clone(),
        message: format!(
            "not a usable .npy array ({e}); save the points with numpy.save as a \
             2-D float64 or float32 array"
        ),
    };
    let any: ArrayD<f64> = match ArrayD::<f64>::read_npy(&bytes[..]) {
        Ok(a) => a,
        Err(ReadNpyError::WrongDescriptor(_)) => {
            ArrayD::<f32>::read_npy(&bytes[..]).map_err(npy_error)?.mapv(f64::from)
        }
        Err(e) => return Err(npy_error(e)),
    };
    let points: Array2<f64> = match any.ndim() {
        1 => {
            let n = any.len();
            any.into_shape_with_order((n, 1)).map_err(|e| DataError::Npy {
                file: file.clone(),
                message: e.to_string(),
            })?
        }
        2 => any.into_dimensionality::<Ix2>().map_err(|e| DataError::Npy {
            file: file.clone(),
            message: e.to_string(),
        })?,
        ndim => {
            return Err(DataError::Npy {
                file,
                message: format!(
                    "array has {ndim} dimensions; save a 2-D array of shape \
                     (points, dimensions)"
                ),
            })
        }
    };
    if points.nrows() == 0 || points.ncols() == 0 {
        return Err(DataError::Empty { file });
    }
    if let Some(((i, j), v)) = points.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(DataError::NonFinite {
            file,
            line: i as u64 + 1,
            column: j + 1,
            value: v.to_string(),
        });
    }
    Ok(points)
}

/// Formats a float in the shortest text that parses back to the same `f64`.
fn format_f64(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || (1e-5..1e16).contains(&a) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// The first non-finite entry of `points`, as a [`DataError::NonFiniteOutput`].
fn check_finite_output(points: ArrayView2<f64>, file: &str) -> Result<(), DataError> {
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

/// Writes points as CSV (no header, shortest round-trip floats) to any writer.
///
/// Rows are checked as they are written: a non-finite value stops the write with
/// [`DataError::NonFiniteOutput`] (the rows before it have been written; use
/// [`write_csv`] on a path for all-or-nothing output).
pub fn write_csv_to<W: Write>(writer: &mut W, points: ArrayView2<f64>, file: &str) -> Result<(), DataError> {
    let io_err = |source| DataError::Io {
        file: file.to_string(),
        action: "writing",
        source,
    };
    let mut line = String::new();
    for (i, row) in points.rows().into_iter().enumerate() {
        line.clear();
        for (j, &v) in row.iter().enumerate() {
            if !v.is_finite() {
                return Err(DataError::NonFiniteOutput {
                    file: file.to_string(),
                    row: i + 1,
                    column: j + 1,
                    value: v.to_string(),
                });
            }
            if j > 0 {
                line.push(',');
            }
            line.push_str(&format_f64(v));
        }
        line.push('\n');
        writer.write_all(line.as_bytes()).map_err(io_err)?;
    }
    writer.flush().map_err(io_err)
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
        source,
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

/// Writes points as CSV to `path` atomically, or to stdout for `-`.
pub fn write_csv(path: &Path, points: ArrayView2<f64>) -> Result<(), DataError> {
    if is_std_stream(path) {
        let stdout = io::stdout();
        let mut w = BufWriter::new(stdout.lock());
        return write_csv_to(&mut w, points, "<stdout>");
    }
    let file = file_name(path);
    write_atomic(path, |w| write_csv_to(w, points, &file))
}

/// Writes points as a 2-D little-endian `f64` `.npy` file, atomically.
pub fn write_npy(path: &Path, points: ArrayView2<f64>) -> Result<(), DataError> {
    let file = file_name(path);
    check_finite_output(points, &file)?;
    write_atomic(path, |w| {
        points.as_standard_layout().write_npy(w).map_err(|e| DataError::Npy {
            file: file.clone(),
            message: format!("cannot write .npy: {e}"),
        })
    })
}

/// Writes points to `path` in the format its extension implies (`.npy` or CSV), or
/// as CSV to stdout for `-`.
pub fn write_points(path: &Path, points: ArrayView2<f64>) -> Result<(), DataError> {
    match PointFormat::from_path(path) {
        PointFormat::Npy if !is_std_stream(path) => write_npy(path, points),
        _ => write_csv(path, points),
    }
}
