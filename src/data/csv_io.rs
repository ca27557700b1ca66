//! CSV point files: comma separated, header optional, streamed in blocks.
//!
//! The first row is a header when none of its fields is a number; spaces around
//! fields, blank lines and a UTF-8 byte-order mark are ignored. Every row must have as
//! many columns as the first data row, and every value must be finite. Floats are
//! written in the shortest form that reads back to the same `f64`.

use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use ndarray::{Array2, ArrayView2};

use super::io::{file_name, is_std_stream, open_for_reading, write_atomic};
use super::DataError;

/// Reads a whole CSV file of points.
pub fn read_csv(path: &Path) -> Result<Array2<f64>, DataError> {
    let file = open_for_reading(path)?;
    read_csv_from(file, &file_name(path))
}

/// A value as quoted in an error: at most 40 characters, so that one huge cell does not
/// make a huge message.
pub(crate) fn shown(value: &str) -> String {
    const MAX: usize = 40;
    match value.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}… ({} bytes)", &value[..at], value.len()),
        None => value.to_string(),
    }
}

/// A reader that remembers where its newlines are, so that a record's byte offset can
/// be turned into a line number. Records are asked about in order, so only the
/// newlines not yet passed are kept (at most a buffer's worth).
pub struct LineCounter<R> {
    inner: R,
    /// Bytes read so far.
    offset: u64,
    /// Offsets of newlines not yet passed.
    pending: std::collections::VecDeque<u64>,
    /// Newlines passed.
    passed: u64,
}

impl<R> LineCounter<R> {
    fn new(inner: R) -> Self {
        LineCounter {
            inner,
            offset: 0,
            pending: std::collections::VecDeque::new(),
            passed: 0,
        }
    }

    /// The 1-based line of byte `byte` (asked in non-decreasing order).
    fn line_at(&mut self, byte: u64) -> u64 {
        while self.pending.front().is_some_and(|&nl| nl < byte) {
            self.pending.pop_front();
            self.passed += 1;
        }
        self.passed + 1
    }
}

impl<R: Read> Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for (i, &b) in buf[..n].iter().enumerate() {
            if b == b'\n' {
                self.pending.push_back(self.offset + i as u64);
            }
        }
        self.offset += n as u64;
        Ok(n)
    }
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
    reader: csv::Reader<LineCounter<R>>,
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
            .from_reader(LineCounter::new(reader));
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
            let more = match self.reader.read_record(&mut self.record) {
                Ok(more) => more,
                Err(e) => {
                    let byte = e.position().map_or(0, |p| p.byte());
                    return Err(DataError::Csv {
                        file: self.file.clone(),
                        line: self.reader.get_mut().line_at(byte),
                        message: e.to_string(),
                    });
                }
            };
            if !more {
                break;
            }
            // The csv crate's line count (and a record's start) skips blank lines; count
            // the newlines before the record's last byte ourselves.
            let end = self.reader.position().byte();
            let line = self.reader.get_mut().line_at(end.saturating_sub(1));
            if self.record.len() == 1 && self.record[0].trim_start_matches('\u{feff}').is_empty() {
                continue; // a line of nothing but spaces (a line of commas is a row of blanks)
            }
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
                    value: shown(field),
                })?;
                if !v.is_finite() {
                    return Err(DataError::NonFinite {
                        file: self.file.clone(),
                        line,
                        column: j + 1,
                        value: shown(field),
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

/// Formats a float in the shortest text that parses back to the same `f64`.
fn format_f64(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || (1e-5..1e16).contains(&a) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// Writes points as CSV (no header, shortest round-trip floats) to any writer.
///
/// Rows are checked as they are written: a non-finite value stops the write with
/// [`DataError::NonFiniteOutput`] (the rows before it have been written; use
/// [`write_csv`] on a path for all-or-nothing output).
pub fn write_csv_to<W: Write>(writer: &mut W, points: ArrayView2<f64>, file: &str) -> Result<(), DataError> {
    write_csv_rows(writer, points, file, 0)?;
    writer.flush().map_err(|source| DataError::Io {
        file: file.to_string(),
        action: "writing",
        error: source,
    })
}

/// Appends points as CSV rows to a writer without flushing it, for output written block
/// by block; `n_rows_before` rows precede these in the output (for the row numbers of
/// errors). A non-finite value stops the write with [`DataError::NonFiniteOutput`].
pub fn write_csv_rows<W: Write + ?Sized>(
    writer: &mut W,
    points: ArrayView2<f64>,
    file: &str,
    n_rows_before: usize,
) -> Result<(), DataError> {
    let mut line = String::new();
    for (i, row) in points.rows().into_iter().enumerate() {
        line.clear();
        for (j, &v) in row.iter().enumerate() {
            if !v.is_finite() {
                return Err(DataError::NonFiniteOutput {
                    file: file.to_string(),
                    row: n_rows_before + i + 1,
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
        writer.write_all(line.as_bytes()).map_err(|source| DataError::Io {
            file: file.to_string(),
            action: "writing",
            error: source,
        })?;
    }
    Ok(())
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
