//! `.npy` files row block by row block: the header of a float array, a reader that
//! yields blocks of rows without holding the file, and a writer that appends rows and
//! fixes the row count in the header at the end.
//!
//! The format (NumPy's NEP 1): the magic `\x93NUMPY`, a version byte pair, the header
//! length (`u16` for version 1.0, `u32` for 2.0 and 3.0), then an ASCII Python dict
//!
//! ```text
//! {'descr': '<f8', 'fortran_order': False, 'shape': (n, d), }
//! ```
//!
//! padded with spaces and ended by `\n` so that the data starts at a multiple of 64
//! bytes, then the `n·d` values, row after row (C order) or column after column
//! (Fortran order). Only `f4` and `f8` of either byte order are accepted, 1-D (`n`
//! points of dimension 1) or 2-D.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use ndarray::Array2;

use super::io::{file_name, open_error, open_for_reading};
use super::DataError;

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Data starts at a multiple of this many bytes.
const ALIGN: usize = 64;
/// Digits reserved for the row count of a header written before the count is known.
const ROW_DIGITS: usize = 20;

/// The longest header dict read (NumPy itself refuses headers over 10 000 bytes).
const MAX_HEADER_LEN: usize = 1 << 16;

/// The element type of a `.npy` array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NpyDtype {
    /// 32-bit float (`f4`).
    F4,
    /// 64-bit float (`f8`).
    F8,
}

impl NpyDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            NpyDtype::F4 => 4,
            NpyDtype::F8 => 8,
        }
    }
}

/// The header of a float `.npy` array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// Element type.
    pub dtype: NpyDtype,
    /// Byte order of the elements.
    pub little_endian: bool,
    /// Column after column (Fortran) rather than row after row (C).
    pub fortran_order: bool,
    /// The array's shape (1-D or 2-D for points).
    pub shape: Vec<usize>,
}

impl NpyHeader {
    /// A little-endian C-order 2-D header.
    pub fn rows(dtype: NpyDtype, n_rows: usize, n_cols: usize) -> Self {
        NpyHeader {
            dtype,
            little_endian: true,
            fortran_order: false,
            shape: vec![n_rows, n_cols],
        }
    }

    /// Points (rows) in the array: `shape[0]`.
    pub fn n_rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Coordinates per point: `shape[1]`, or 1 for a 1-D array.
    pub fn n_cols(&self) -> usize {
        self.shape.get(1).copied().unwrap_or(1)
    }

    /// Bytes of data the header announces.
    pub fn data_len(&self) -> u64 {
        self.shape.iter().map(|&s| s as u64).product::<u64>() * self.dtype.size() as u64
    }

    /// The header as written to a file (magic to the closing `\n`), version 1.0 when
    /// it fits and 2.0 otherwise, padded so the data starts at a multiple of 64 bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode(0)
    }

    /// Like [`NpyHeader::to_bytes`], with room for the dict to grow by `reserve` bytes
    /// without moving the data (so a row count can be rewritten in place).
    fn encode(&self, reserve: usize) -> Vec<u8> {
        let descr = format!(
            "{}{}",
            if self.little_endian { '<' } else { '>' },
            match self.dtype {
                NpyDtype::F4 => "f4",
                NpyDtype::F8 => "f8",
            }
        );
        let shape = match self.shape.as_slice() {
            [n] => format!("({n},)"),
            dims => format!(
                "({})",
                dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
            ),
        };
        let order = if self.fortran_order { "True" } else { "False" };
        let mut dict = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
        let (version, len_bytes) = if dict.len() + reserve + 11 < usize::from(u16::MAX) {
            (1u8, 2)
        } else {
            (2u8, 4)
        };
        let prefix = MAGIC.len() + 2 + len_bytes;
        let total = (prefix + dict.len() + reserve + 1).div_ceil(ALIGN) * ALIGN;
        dict.extend(std::iter::repeat_n(' ', total - prefix - dict.len() - 1));
        dict.push('\n');
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(dict.as_bytes());
        out
    }

    /// Reads a header from the start of `reader`; `file` names the source in errors.
    /// Returns the header and its length in bytes (where the data starts).
    pub fn read<R: Read>(reader: &mut R, file: &str) -> Result<(NpyHeader, u64), DataError> {
        let bad = |message: String| DataError::Npy {
            file: file.to_string(),
            message,
        };
        let short = |_| bad("truncated .npy header; the file is incomplete, write it again".into());
        let mut start = [0u8; 8];
        reader.read_exact(&mut start).map_err(short)?;
        if &start[..6] != MAGIC {
            return Err(bad(
                "not a .npy file (no \\x93NUMPY magic); save the points with numpy.save".into(),
            ));
        }
        let dict_len = match start[6] {
            1 => {
                let mut b = [0u8; 2];
                reader.read_exact(&mut b).map_err(short)?;
                usize::from(u16::from_le_bytes(b))
            }
            2 | 3 => {
                let mut b = [0u8; 4];
                reader.read_exact(&mut b).map_err(short)?;
                u32::from_le_bytes(b) as usize
            }
            v => {
                return Err(bad(format!(
                    ".npy format version {v}.{} is not supported (1.0–3.0 are)",
                    start[7]
                )))
            }
        };
        let prefix = if start[6] == 1 { 10 } else { 12 };
        // NumPy's own headers are a few hundred bytes; a huge length is a corrupt file.
        if dict_len > MAX_HEADER_LEN {
            return Err(bad(format!(
                "the .npy header claims {dict_len} bytes (at most {MAX_HEADER_LEN} are read); the file is corrupt"
            )));
        }
        let mut dict = vec![0u8; dict_len];
        reader.read_exact(&mut dict).map_err(short)?;
        let text = std::str::from_utf8(&dict).map_err(|_| bad("the .npy header is not text".into()))?;
        let header = parse_dict(text).map_err(|m| bad(format!("bad .npy header `{}`: {m}", text.trim())))?;
        Ok((header, (prefix + dict_len) as u64))
    }
}

/// A value of the header dict.
#[derive(Debug, PartialEq)]
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// Parses the header dict and checks it describes a 1-D or 2-D `f4`/`f8` array.
fn parse_dict(text: &str) -> Result<NpyHeader, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    p.expect(b'{')?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        if p.peek() == Some(b'}') {
            break;
        }
        let key = match p.value()? {
            Value::Str(k) => k,
            v => return Err(format!("expected a key, found {v:?}")),
        };
        p.expect(b':')?;
        let value = p.value()?;
        match (key.as_str(), value) {
            ("descr", Value::Str(s)) => descr = Some(s),
            ("fortran_order", Value::Bool(b)) => fortran = Some(b),
            ("shape", Value::Tuple(t)) => shape = Some(t),
            ("descr" | "fortran_order" | "shape", v) => return Err(format!("`{key}` cannot be {v:?}")),
            _ => {}
        }
        if p.peek() == Some(b',') {
            p.i += 1;
        } else {
            break;
        }
    }
    p.expect(b'}')?;
    let descr = descr.ok_or("no `descr` (dtype)")?;
    let fortran_order = fortran.ok_or("no `fortran_order`")?;
    let shape = shape.ok_or("no `shape`")?;
    let (little_endian, dtype) = match descr.as_str() {
        "<f8" => (true, NpyDtype::F8),
        "<f4" => (true, NpyDtype::F4),
        ">f8" => (false, NpyDtype::F8),
        ">f4" => (false, NpyDtype::F4),
        "=f8" => (cfg!(target_endian = "little"), NpyDtype::F8),
        "=f4" => (cfg!(target_endian = "little"), NpyDtype::F4),
        other => {
            return Err(format!(
                "dtype `{other}` is not supported; save the points as float64 or float32 \
                 (x.astype('float64'))"
            ))
        }
    };
    if !(1..=2).contains(&shape.len()) {
        return Err(format!(
            "array has {} dimensions; save a 2-D array of shape (points, dimensions)",
            shape.len()
        ));
    }
    // The data must be addressable: a shape whose byte count overflows is no file's.
    let bytes = shape
        .iter()
        .try_fold(dtype.size() as u64, |acc, &n| acc.checked_mul(n as u64))
        .filter(|&b| b <= i64::MAX as u64);
    if bytes.is_none() {
        return Err(format!(
            "shape {shape:?} announces more data than any file can hold; the header is corrupt"
        ));
    }
    Ok(NpyHeader {
        dtype,
        little_endian,
        fortran_order,
        shape,
    })
}

/// A cursor over the header dict (Python literal syntax, the subset NumPy writes).
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected `{}` at byte {}", c as char, self.i))
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => {
                let start = self.i + 1;
                let len = self.s[start..]
                    .iter()
                    .position(|&c| c == q)
                    .ok_or("unterminated string")?;
                self.i = start + len + 1;
                Ok(Value::Str(
                    String::from_utf8_lossy(&self.s[start..start + len]).into_owned(),
                ))
            }
            Some(b'(') => {
                self.i += 1;
                let mut dims = Vec::new();
                while self.peek() != Some(b')') {
                    let start = self.i;
                    while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                        self.i += 1;
                    }
                    let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                    dims.push(
                        digits
                            .parse::<usize>()
                            .map_err(|_| format!("expected a dimension at byte {start}"))?,
                    );
                    if self.peek() == Some(b',') {
                        self.i += 1;
                    } else if self.peek() != Some(b')') {
                        return Err(format!("expected `,` or `)` at byte {}", self.i));
                    }
                }
                self.i += 1;
                Ok(Value::Tuple(dims))
            }
            Some(b'T') if self.s[self.i..].starts_with(b"True") => {
                self.i += 4;
                Ok(Value::Bool(true))
            }
            Some(b'F') if self.s[self.i..].starts_with(b"False") => {
                self.i += 5;
                Ok(Value::Bool(false))
            }
            Some(b'[') => Err("structured dtypes are not supported; save a plain float array".into()),
            _ => Err(format!("unexpected text at byte {}", self.i)),
        }
    }
}

/// Blocks of at most `n_rows_max` points of a `.npy` file, read as they are needed.
///
/// The header is checked when the file is opened (dtype `f4`/`f8`, 1-D or 2-D, at least
/// one point, and a file long enough for the data it announces); every value is checked
/// to be finite as it is read. After an error the iterator ends.
pub struct NpyChunks {
    reader: BufReader<File>,
    file: String,
    header: NpyHeader,
    data_start: u64,
    n_rows_max: usize,
    n_rows_read: usize,
    done: bool,
    bytes: Vec<u8>,
}

impl NpyChunks {
    /// Opens `path` and reads its header; `n_rows_max = 0` is taken as 1.
    pub fn open(path: &Path, n_rows_max: usize) -> Result<Self, DataError> {
        let file = file_name(path);
        let handle = open_for_reading(path)?;
        let file_len = handle.metadata().map_err(|e| open_error(path, e))?.len();
        let mut reader = BufReader::new(handle);
        let (header, data_start) = NpyHeader::read(&mut reader, &file)?;
        if header.n_rows() == 0 || header.n_cols() == 0 {
            return Err(DataError::Empty { file });
        }
        let needed = data_start + header.data_len();
        if file_len > needed {
            return Err(DataError::Npy {
                file,
                message: format!(
                    "the header announces {} × {} values ({} bytes of data) but the file holds {} \
                     bytes of data; the header does not describe the file, write it again",
                    header.n_rows(),
                    header.n_cols(),
                    header.data_len(),
                    file_len - data_start
                ),
            });
        }
        if file_len < needed {
            return Err(DataError::Npy {
                file,
                message: format!(
                    "truncated: the header announces {} × {} values ({} bytes of data) but the \
                     file holds {} bytes of data; the file is incomplete, write it again",
                    header.n_rows(),
                    header.n_cols(),
                    header.data_len(),
                    file_len.saturating_sub(data_start)
                ),
            });
        }
        Ok(NpyChunks {
            reader,
            file,
            header,
            data_start,
            n_rows_max: n_rows_max.max(1),
            n_rows_read: 0,
            done: false,
            bytes: Vec::new(),
        })
    }

    /// The file's header.
    pub fn header(&self) -> &NpyHeader {
        &self.header
    }

    /// Reads the next block of rows.
    fn read_block(&mut self) -> Result<Array2<f64>, DataError> {
        let (n_rows, n_cols) = (self.header.n_rows(), self.header.n_cols());
        let size = self.header.dtype.size();
        let first = self.n_rows_read;
        let m = self.n_rows_max.min(n_rows - first);
        let io_err = |source| DataError::Io {
            file: self.file.clone(),
            action: "reading",
            error: source,
        };
        self.bytes.resize(m * n_cols * size, 0);
        if self.header.fortran_order && n_cols > 1 {
            // Column j of the block is one run of m values inside column j of the file.
            for j in 0..n_cols {
                let at = self.data_start + ((j * n_rows + first) * size) as u64;
                self.reader.seek(SeekFrom::Start(at)).map_err(io_err)?;
                let run = &mut self.bytes[j * m * size..(j + 1) * m * size];
                self.reader.read_exact(run).map_err(io_err)?;
            }
        } else {
            self.reader.read_exact(&mut self.bytes).map_err(io_err)?;
        }
        let value = |k: usize| -> f64 {
            let b = &self.bytes[k * size..(k + 1) * size];
            match (self.header.dtype, self.header.little_endian) {
                (NpyDtype::F8, true) => f64::from_le_bytes(b.try_into().unwrap_or_default()),
                (NpyDtype::F8, false) => f64::from_be_bytes(b.try_into().unwrap_or_default()),
                (NpyDtype::F4, true) => f64::from(f32::from_le_bytes(b.try_into().unwrap_or_default())),
                (NpyDtype::F4, false) => f64::from(f32::from_be_bytes(b.try_into().unwrap_or_default())),
            }
        };
        let fortran = self.header.fortran_order && n_cols > 1;
        let mut values = Vec::with_capacity(m * n_cols);
        for i in 0..m {
            for j in 0..n_cols {
                let v = value(if fortran { j * m + i } else { i * n_cols + j });
                if !v.is_finite() {
                    return Err(DataError::NonFinite {
                        file: self.file.clone(),
                        line: (first + i + 1) as u64,
                        column: j + 1,
                        value: v.to_string(),
                    });
                }
                values.push(v);
            }
        }
        self.n_rows_read += m;
        Array2::from_shape_vec((m, n_cols), values).map_err(|e| DataError::Npy {
            file: self.file.clone(),
            message: e.to_string(),
        })
    }
}

impl Iterator for NpyChunks {
    type Item = Result<Array2<f64>, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.n_rows_read >= self.header.n_rows() {
            return None;
        }
        let block = self.read_block();
        self.done = block.is_err();
        Some(block)
    }
}

/// Appends rows of `f8` values to a `.npy` file. When the row count is not known in
/// advance the header is written with room for any count and rewritten by
/// [`NpyRowWriter::finish`] (the writer must seek); when it is
/// ([`NpyRowWriter::with_rows`]) the final header is written first and nothing seeks,
/// so the output may be a pipe.
pub struct NpyRowWriter<'a, W: Write + Seek> {
    writer: &'a mut W,
    file: String,
    n_cols: usize,
    n_rows: usize,
    /// Where the provisional header starts; `None` when the count was given.
    start: Option<u64>,
    /// The row count promised in the header, if given.
    expected: Option<usize>,
    bytes: Vec<u8>,
}

impl<'a, W: Write + Seek> NpyRowWriter<'a, W> {
    /// Writes a provisional header for `n_cols`-column little-endian `f8` rows at the
    /// writer's position; `file` names the target in errors.
    pub fn new(writer: &'a mut W, n_cols: usize, file: &str) -> Result<Self, DataError> {
        Self::with_rows(writer, n_cols, None, file)
    }

    /// [`NpyRowWriter::new`], or with `Some(n)` the final header of `n` rows at once
    /// (then [`NpyRowWriter::finish`] checks that `n` rows came and never seeks).
    pub fn with_rows(writer: &'a mut W, n_cols: usize, n_rows: Option<usize>, file: &str) -> Result<Self, DataError> {
        let io_err = |source| DataError::Io {
            file: file.to_string(),
            action: "writing",
            error: source,
        };
        let start = match n_rows {
            Some(_) => None,
            None => Some(writer.stream_position().map_err(io_err)?),
        };
        let header = match n_rows {
            Some(n) => NpyHeader::rows(NpyDtype::F8, n, n_cols).encode(ROW_DIGITS - (n.to_string().len() - 1)),
            None => NpyHeader::rows(NpyDtype::F8, 0, n_cols).encode(ROW_DIGITS),
        };
        writer.write_all(&header).map_err(io_err)?;
        Ok(NpyRowWriter {
            writer,
            file: file.to_string(),
            n_cols,
            n_rows: 0,
            start,
            expected: n_rows,
            bytes: Vec::new(),
        })
    }

    /// Appends whole rows (`values.len()` a multiple of the column count); a non-finite
    /// value is refused with [`DataError::NonFiniteOutput`].
    pub fn write_rows(&mut self, values: &[f64]) -> Result<(), DataError> {
        let n_cols = self.n_cols.max(1);
        if !values.len().is_multiple_of(n_cols) {
            return Err(DataError::WrongDimension {
                file: self.file.clone(),
                n_columns: values.len(),
                n_expected: n_cols,
            });
        }
        if let Some(k) = values.iter().position(|v| !v.is_finite()) {
            return Err(DataError::NonFiniteOutput {
                file: self.file.clone(),
                row: self.n_rows + k / n_cols + 1,
                column: k % n_cols + 1,
                value: values[k].to_string(),
            });
        }
        self.bytes.clear();
        for v in values {
            self.bytes.extend_from_slice(&v.to_le_bytes());
        }
        self.writer.write_all(&self.bytes).map_err(|source| DataError::Io {
            file: self.file.clone(),
            action: "writing",
            error: source,
        })?;
        self.n_rows += values.len() / n_cols;
        Ok(())
    }

    /// Rewrites the header with the number of rows written (or checks the count given
    /// to [`NpyRowWriter::with_rows`]) and returns that number.
    pub fn finish(self) -> Result<usize, DataError> {
        let io_err = |source| DataError::Io {
            file: self.file.clone(),
            action: "writing",
            error: source,
        };
        let Some(start) = self.start else {
            if self.expected != Some(self.n_rows) {
                return Err(DataError::Npy {
                    file: self.file.clone(),
                    message: format!(
                        "internal: the header promised {:?} rows, {} were written",
                        self.expected, self.n_rows
                    ),
                });
            }
            self.writer.flush().map_err(io_err)?;
            return Ok(self.n_rows);
        };
        let provisional = NpyHeader::rows(NpyDtype::F8, 0, self.n_cols).encode(ROW_DIGITS);
        let digits = self.n_rows.to_string().len() - 1;
        let header = NpyHeader::rows(NpyDtype::F8, self.n_rows, self.n_cols).encode(ROW_DIGITS - digits);
        if header.len() != provisional.len() {
            return Err(DataError::Npy {
                file: self.file.clone(),
                message: format!(
                    "internal: header grew from {} to {} bytes",
                    provisional.len(),
                    header.len()
                ),
            });
        }
        let end = self.writer.stream_position().map_err(io_err)?;
        self.writer.seek(SeekFrom::Start(start)).map_err(io_err)?;
        self.writer.write_all(&header).map_err(io_err)?;
        self.writer.seek(SeekFrom::Start(end)).map_err(io_err)?;
        self.writer.flush().map_err(io_err)?;
        Ok(self.n_rows)
    }
}
