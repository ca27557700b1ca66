//! Pictures of plain arrays: data/density/samples panels, flow trajectories, training
//! curves.
//!
//! This module draws numbers, not models: it never names a network, a field or a
//! solver (DESIGN.md §3). The caller evaluates `log p` on the points of a
//! [`DensityGrid`], integrates the flow to the times it wants, or reads its metrics, and
//! hands the arrays over. The density panel shows
//!
//! ```text
//! p(x) = exp(log p(x)),   normalised for colour as exp(log p - max log p) ∈ [0, 1]
//! ```
//!
//! on the grid's cells, so the colour scale is the same whatever the normalising
//! constant (or the lack of one).
//!
//! The output format follows the file's extension: `.png` (bitmap) or `.svg` (vector);
//! anything else is a [`PlotError::UnsupportedFormat`]. Text is set in DejaVu Sans,
//! embedded in the binary (`assets/fonts/`, licence beside it), so a machine with no
//! system fonts draws the same pictures.
//!
//! | function | picture |
//! |---|---|
//! | [`panels`] | data, model density, model samples side by side (FFJORD's figure) |
//! | [`trajectories`] | the points at several flow times, one small panel per time |
//! | [`flow_paths`] | the paths of a subset of points through those times, overlaid |
//! | [`metrics`] | one subplot per training series (loss, test NLL, KL gap, …) |
//! | [`curves`] | several named lines on one set of axes, with a legend |
//!
//! ```no_run
//! use cnflow::plot::{panels, DensityGrid, PanelsConfig};
//!
//! let data = vec![[0.0, 0.0], [1.0, -1.0]];
//! let mut grid = DensityGrid::new(-4.0, 4.0, -4.0, 4.0, 100, 100);
//! // Evaluate the model at the cell centres; here a standard normal stands in.
//! grid.log_p = grid
//!     .points()
//!     .iter()
//!     .map(|[x, y]| -0.5 * (x * x + y * y) - (2.0 * std::f64::consts::PI).ln())
//!     .collect();
//! let samples = data.clone();
//! panels("run/panels.png", &data, &grid, &samples, &PanelsConfig::default())?;
//! # Ok::<(), cnflow::plot::PlotError>(())
//! ```

mod density;
mod flow;
mod lines;
mod render;

pub use density::{panel_rows, panels, DensityGrid, PanelRow, PanelsConfig, PointStyle};
pub use flow::{flow_paths, trajectories, TrajectoriesConfig};
pub use lines::{curves, metrics, MetricsConfig, Subplot};

use std::path::PathBuf;

/// What went wrong while drawing a picture; every variant names the output file.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The file's extension names no format this module writes.
    #[error("cannot draw {}: unsupported extension {ext:?}; use .png or .svg", path.display())]
    UnsupportedFormat {
        /// The requested output file.
        path: PathBuf,
        /// Its extension as given (empty when there is none).
        ext: String,
    },
    /// The inputs do not fit together (shapes, sizes, ranges).
    #[error("cannot draw {}: {message}", path.display())]
    InvalidInput {
        /// The requested output file.
        path: PathBuf,
        /// What is wrong with the inputs and how to fix it.
        message: String,
    },
    /// The file (or its folder) could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The requested output file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The drawing library failed (including while saving the bitmap).
    #[error("drawing {} failed: {message}", path.display())]
    Draw {
        /// The requested output file.
        path: PathBuf,
        /// The drawing library's message.
        message: String,
    },
}

/// The file formats this module writes, chosen by the output file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Portable Network Graphics bitmap (`.png`).
    Png,
    /// Scalable Vector Graphics (`.svg`); text stays text.
    Svg,
}

impl Format {
    /// The format for `path`'s extension (case-insensitive `png` or `svg`).
    pub fn from_path(path: impl AsRef<std::path::Path>) -> Result<Self, PlotError> {
        let path = path.as_ref();
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        match ext.to_ascii_lowercase().as_str() {
            "png" => Ok(Format::Png),
            "svg" => Ok(Format::Svg),
            _ => Err(PlotError::UnsupportedFormat {
                path: path.to_path_buf(),
                ext,
            }),
        }
    }
}
