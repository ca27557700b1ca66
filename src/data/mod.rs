//! The data layer: toy datasets, their true densities and entropies, point files, and
//! per-column standardisation.
//!
//! Everything the rest of the crate trains on or evaluates enters here, as an
//! `n × d` array of `f64` points, one row per point:
//!
//! ```text
//! Dataset::sample(n, rng) ─┐
//! read_points(file)  ──────┴─► x ──► Standardizer::forward ──► u = (x - μ) / σ ──► nn / cnf
//!
//! log p_x(x) = log p_u(u) + Standardizer::log_det(),   log_det = -Σ_i ln σ_i
//! ```
//!
//! * [`toy`]: the eight FFJORD toy sets ([`Dataset`]), seeded, exactly `n` points.
//! * [`density`]: the closed-form densities of `8gaussians` and `checkerboard`.
//! * [`io`]: reading and writing points by path (format from the extension, `-` for
//!   stdin/stdout), atomically; [`csv_io`] and [`npy_io`] hold the two formats, and
//!   [`npy_stream`] reads and writes `.npy` files block by block.
//! * [`standardize`]: the affine map to zero mean and unit variance, and its log-det.
//!
//! ```
//! use cnflow::data::{Dataset, Standardizer};
//! use rand::SeedableRng;
//! use rand_chacha::ChaCha8Rng;
//!
//! let data: Dataset = "8gaussians".parse()?;
//! let x = data.sample(1000, &mut ChaCha8Rng::seed_from_u64(0));
//! let log_p = data.log_density(x.view()).expect("8gaussians has a closed form");
//! let nll = -log_p.mean().unwrap_or(f64::NAN);
//! assert!((nll - data.entropy()).abs() < 0.1); // the true density attains the entropy
//!
//! let s = Standardizer::fit(x.view())?;
//! let u = s.forward(x.view())?; // train on u; report log p_u(u) + s.log_det()
//! assert_eq!(u.dim(), (1000, 2));
//! # Ok::<(), cnflow::data::DataError>(())
//! ```
//!
//! Every fallible operation returns a [`DataError`] naming the file, the line and
//! column, the offending value, and what to do about it.

pub mod csv_io;
pub mod density;
mod error;
pub mod io;
pub mod npy_io;
pub mod npy_stream;
mod split;
pub mod standardize;
pub mod toy;

pub use csv_io::{csv_chunks, read_csv, read_csv_from, write_csv, write_csv_rows, write_csv_to, CsvChunks};
pub use error::DataError;
pub use io::{
    is_special_output, read_points, register_temp_file, remove_temp_files, unregister_temp_file, write_atomic,
    write_points, PointFormat,
};
pub use npy_io::{read_npy, read_npy_bytes, write_npy};
pub use npy_stream::{NpyChunks, NpyDtype, NpyHeader, NpyRowWriter};
pub use split::train_test_split;
pub use standardize::Standardizer;
pub use toy::Dataset;
