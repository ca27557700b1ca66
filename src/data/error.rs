//! The error type of the data layer.

use std::io;

use thiserror::Error;

/// Everything that can go wrong in [`crate::data`]: bad dataset names, unreadable or
/// malformed point files, and data that cannot be standardised.
///
/// `file` is the path as given (`<stdin>` / `<stdout>` for `-`); `line` and
/// `column` are 1-based. For `.npy` files the "line" is the row of the array.
#[derive(Debug, Error)]
pub enum DataError {
    /// A dataset name that is not one of the eight toy sets.
    #[error("unknown dataset `{name}`: use one of {valid}")]
    UnknownDataset {
        /// The name given.
        name: String,
        /// The valid names, comma separated.
        valid: String,
    },

    /// The input file does not exist.
    #[error("{file}: no such file; check the path (use `-` to read from stdin)")]
    NotFound {
        /// The path given.
        file: String,
    },

    /// A directory was given where a file was expected.
    #[error("{file}: is a directory, not a file; give the path of a CSV or .npy file inside it")]
    IsDirectory {
        /// The path given.
        file: String,
    },

    /// Any other I/O failure (permissions, full disk, broken pipe).
    #[error("{file}: {action} failed: {error}; check permissions and free space")]
    Io {
        /// The path given.
        file: String,
        /// What was being done ("reading", "writing", "renaming the temporary file").
        action: &'static str,
        /// The underlying error.
        error: io::Error,
    },

    /// A field that does not parse as a number.
    #[error(
        "{file}:{line}:{column}: `{value}` is not a number; fix or remove this value \
         (fields are separated by commas, and only the first row may be a header)"
    )]
    Malformed {
        /// The file.
        file: String,
        /// 1-based line.
        line: u64,
        /// 1-based column.
        column: usize,
        /// The text found.
        value: String,
    },

    /// A NaN or infinite value in the input.
    #[error(
        "{file}:{line}:{column}: value `{value}` is not finite; remove or impute \
         NaN/inf entries before fitting"
    )]
    NonFinite {
        /// The file.
        file: String,
        /// 1-based line (row for `.npy`).
        line: u64,
        /// 1-based column.
        column: usize,
        /// The value found, as text.
        value: String,
    },

    /// A row whose number of columns differs from the first data row.
    #[error(
        "{file}:{line}: row has {n_columns} columns but the first row has {n_expected}; \
         every row must have the same number of comma-separated values"
    )]
    Ragged {
        /// The file.
        file: String,
        /// 1-based line.
        line: u64,
        /// Columns in this row.
        n_columns: usize,
        /// Columns in the first data row.
        n_expected: usize,
    },

    /// A file with no data rows (possibly only a header).
    #[error("{file}: no data rows; the file must contain at least one point, one per line")]
    Empty {
        /// The file.
        file: String,
    },

    /// Points of the wrong dimension for their use (e.g. a 3-column file for a 2-D model).
    #[error(
        "{file}: points have {n_columns} columns but {n_expected} are expected; \
         give a file with one {n_expected}-dimensional point per row"
    )]
    WrongDimension {
        /// The file (or a description of the array).
        file: String,
        /// Columns found.
        n_columns: usize,
        /// Columns expected.
        n_expected: usize,
    },

    /// A `.npy` file that cannot be used (bad header, unsupported dtype or rank).
    #[error("{file}: {message}")]
    Npy {
        /// The file.
        file: String,
        /// What is wrong and what to do.
        message: String,
    },

    /// A CSV file that the CSV parser rejects (e.g. invalid UTF-8, unbalanced quotes).
    #[error("{file}:{line}: cannot parse CSV: {message}; save the file as plain UTF-8 comma-separated text")]
    Csv {
        /// The file.
        file: String,
        /// 1-based line (0 if unknown).
        line: u64,
        /// The parser's message.
        message: String,
    },

    /// A non-finite value in points about to be written.
    #[error(
        "{file}: row {row}, column {column} holds `{value}`; refusing to write non-finite \
         points (nothing was written)"
    )]
    NonFiniteOutput {
        /// The output file.
        file: String,
        /// 1-based row.
        row: usize,
        /// 1-based column.
        column: usize,
        /// The value, as text.
        value: String,
    },

    /// Too few points to fit a standardisation.
    #[error("cannot standardise {n_rows} point(s): need at least 2 points")]
    TooFewPoints {
        /// Points given.
        n_rows: usize,
    },

    /// A column with zero (or numerically zero) variance cannot be standardised.
    #[error(
        "column {column} is constant (every value ≈ {value}, std {std:e}); \
         drop this column, it carries no information for a density"
    )]
    ZeroVariance {
        /// 1-based column.
        column: usize,
        /// The column's mean.
        value: f64,
        /// The column's standard deviation.
        std: f64,
    },

    /// A column whose spread overflows f64 (values near ±1e308).
    #[error(
        "column {column} holds values too large to standardise (up to {largest:e}: its variance \
         overflows f64); rescale the column, e.g. to other units"
    )]
    Overflow {
        /// 1-based column.
        column: usize,
        /// The largest magnitude in it.
        largest: f64,
    },

    /// A standardiser fitted on `n_expected` columns applied to `n_columns` columns.
    #[error(
        "standardiser was fitted on {n_expected} columns but the points have {n_columns}; \
         use points of the dimension the model was trained on"
    )]
    DimensionMismatch {
        /// Columns given.
        n_columns: usize,
        /// Columns the standardiser was fitted on.
        n_expected: usize,
    },

    /// A standardiser whose stored std is not positive and finite (e.g. an edited model file).
    #[error("standardiser column {column} has std {std}; every std must be positive and finite")]
    InvalidScale {
        /// 1-based column.
        column: usize,
        /// The stored value.
        std: f64,
    },
}
