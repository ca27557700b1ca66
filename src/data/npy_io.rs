//! NumPy `.npy` point files: 2-D `f64` or `f32` arrays (either byte order, C or
//! Fortran order; 1-D of length `n` reads as `n × 1`), written as 2-D little-endian
//! `f64` in C order.

use std::io::Read;
use std::path::Path;

use ndarray::{Array2, ArrayD, ArrayView2, Ix2};
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};

use super::io::{check_finite_output, file_name, open_error, open_for_reading, write_atomic};
use super::DataError;

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
    read_npy_bytes(&bytes, &file)
}

/// [`read_npy`] of a file's bytes; `file` names it in errors.
pub fn read_npy_bytes(bytes: &[u8], file: &str) -> Result<Array2<f64>, DataError> {
    let file = file.to_string();
    // The header first, with its checks (shape, size, trailing data), so that a lying
    // header is refused before any allocation it announces.
    let (header, data_start) = super::NpyHeader::read(&mut &bytes[..], &file)?;
    let have = bytes.len() as u64 - data_start;
    if have != header.data_len() {
        return Err(DataError::Npy {
            file,
            message: format!(
                "the header announces {} × {} values ({} bytes of data) but the file holds {have} bytes of data; \
                 the header does not describe the file, write it again",
                header.n_rows(),
                header.n_cols(),
                header.data_len()
            ),
        });
    }
    let npy_error = |e: ReadNpyError| DataError::Npy {
        file: file.clone(),
        message: format!(
            "not a usable .npy array ({e}); save the points with numpy.save as a \
             2-D float64 or float32 array"
        ),
    };
    let any: ArrayD<f64> = match ArrayD::<f64>::read_npy(bytes) {
        Ok(a) => a,
        Err(ReadNpyError::WrongDescriptor(_)) => ArrayD::<f32>::read_npy(bytes).map_err(npy_error)?.mapv(f64::from),
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
