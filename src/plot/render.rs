//! The plumbing every picture shares: the embedded font, the backend chosen by the file
//! extension, colours, and robust axis ranges.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;

use super::{Format, PlotError};

/// DejaVu Sans (Bitstream Vera licence, see `assets/fonts/DejaVuSans-LICENSE.txt`).
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The font family every text element uses; registered once with plotters.
pub(crate) const FONT: &str = "sans-serif";

/// Registers the embedded font under every family name plotters might ask for.
/// Returns `false` if the embedded bytes are not a usable font (never expected).
fn fonts_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        ["sans-serif", "serif", "monospace"].iter().all(|name| {
            [FontStyle::Normal, FontStyle::Bold]
                .into_iter()
                .all(|style| plotters::style::register_font(name, style, DEJAVU_SANS).is_ok())
        })
    })
}

/// A failure inside plotters, reduced to its message so that figures can use `?` on
/// any backend's errors.
pub(crate) struct DrawFailure(pub(crate) String);

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for DrawFailure {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        DrawFailure(e.to_string())
    }
}

/// A picture that can draw itself on any plotters backend.
pub(crate) trait Figure {
    /// Draws onto `root`, which covers the whole image.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawFailure>;
}

/// The smallest and largest image side accepted, in pixels.
const MIN_SIDE: u32 = 50;
const MAX_SIDE: u32 = 20_000;

/// Draws `figure` into `path` (PNG or SVG by extension) at `size` = (width, height) pixels.
pub(crate) fn render(path: &Path, size: (u32, u32), figure: &impl Figure) -> Result<(), PlotError> {
    let format = Format::from_path(path)?;
    if !(MIN_SIDE..=MAX_SIDE).contains(&size.0) || !(MIN_SIDE..=MAX_SIDE).contains(&size.1) {
        return Err(invalid(
            path,
            format!(
                "image size {}×{} px is outside {MIN_SIDE}..={MAX_SIDE} px per side",
                size.0, size.1
            ),
        ));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        let source = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("folder {} does not exist; create it first", parent.display()),
        );
        return Err(PlotError::Io {
            path: path.to_path_buf(),
            source,
        });
    }
    if !fonts_ready() {
        return Err(draw_error(path, "the embedded font could not be loaded".into()));
    }
    // Draw in memory first: a failed drawing leaves no file behind, and the finished
    // picture replaces any old one atomically (temporary file in the same folder, then
    // rename), so a viewer watching a run folder never sees half a picture.
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = if format == Format::Png { "png" } else { "svg" };
    let tmp = parent.join(format!(".{file_name}.{}.tmp.{ext}", std::process::id()));
    crate::data::register_temp_file(&tmp);
    let written = match format {
        Format::Png => {
            let (w, h) = (size.0 as usize, size.1 as usize);
            let mut pixels = vec![0u8; w * h * 3];
            {
                let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
                figure.draw(&root).map_err(|e| draw_error(path, e.0))?;
                root.present().map_err(|e| draw_error(path, e.to_string()))?;
            }
            let mut out = BitMapBackend::new(&tmp, size);
            out.blit_bitmap((0, 0), size, &pixels)
                .and_then(|()| out.present())
                .map_err(|e| e.to_string())
        }
        Format::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
                figure.draw(&root).map_err(|e| draw_error(path, e.0))?;
                root.present().map_err(|e| draw_error(path, e.to_string()))?;
            }
            std::fs::write(&tmp, svg).map_err(|e| e.to_string())
        }
    };
    // The encoded picture goes where every output goes: atomically over a regular file
    // (a symlink's target, permissions kept), directly into a device or FIFO.
    let bytes = written.and_then(|()| std::fs::read(&tmp).map_err(|e| e.to_string()));
    let _ = std::fs::remove_file(&tmp);
    crate::data::unregister_temp_file(&tmp);
    let renamed = bytes.and_then(|bytes| {
        use std::io::Write;
        crate::data::write_atomic(path, |w| {
            w.write_all(&bytes).map_err(|e| crate::data::DataError::Io {
                file: path.display().to_string(),
                action: "writing",
                error: e,
            })
        })
        .map_err(|e: crate::data::DataError| e.to_string())
    });
    if let Err(message) = renamed {
        let source = std::io::Error::other(message);
        return Err(PlotError::Io {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}

/// A [`PlotError::InvalidInput`] for `path`.
pub(crate) fn invalid(path: &Path, message: String) -> PlotError {
    PlotError::InvalidInput {
        path: path.to_path_buf(),
        message,
    }
}

fn draw_error(path: &Path, message: String) -> PlotError {
    PlotError::Draw {
        path: path.to_path_buf(),
        message,
    }
}

/// Colour for a value `v ∈ [0, 1]` (clamped; NaN → 0) on the viridis scale.
pub(crate) fn heat(v: f64) -> RGBColor {
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    ViridisRGB::get_color(v as f32)
}

/// Line colours for series, distinct and readable on white (the "tab10" hues).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The `i`-th series colour (cycling).
pub(crate) fn series_color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Largest magnitude a plotted value keeps; beyond it values are clamped so that ranges
/// and their padding stay finite.
pub(crate) const MAX_ABS: f64 = 1e300;

/// A plotting range `[lo, hi)` covering the finite values of `values` (clamped to
/// `±MAX_ABS`), padded by 5 % on each side; a single value gets ±(5 % of itself, at least
/// 0.5); no finite values give `[0, 1)`.
pub(crate) fn padded_range(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        let v = v.clamp(-MAX_ABS, MAX_ABS);
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    if span <= 1e-9 * lo.abs().max(hi.abs()).max(1e-300) {
        let pad = (0.05 * lo.abs()).max(0.5);
        return (lo - pad, hi + pad);
    }
    (lo - 0.05 * span, hi + 0.05 * span)
}

/// A short tick label: plain for moderate magnitudes, scientific otherwise.
pub(crate) fn tick_label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 || (v - v.round()).abs() < 1e-9 * a.max(1.0) {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim_zeros(format!("{v:.2}"))
    } else {
        trim_zeros(format!("{v:.3}"))
    }
}

fn trim_zeros(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A title drawn centred across the top `height` pixels of `area`; returns the rest.
pub(crate) fn with_title<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    height: u32,
) -> Result<DrawingArea<DB, Shift>, DrawFailure> {
    if title.is_empty() {
        return Ok(area.clone());
    }
    let (top, rest) = area.split_vertically(height);
    let (w, h) = top.dim_in_pixel();
    let style = TextStyle::from((FONT, (height as f64 * 0.6).max(8.0)).into_font())
        .color(&BLACK)
        .pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        ));
    top.draw_text(title, &style, ((w / 2) as i32, (h / 2) as i32))?;
    Ok(rest)
}

/// A "nothing to draw" note centred in `area`.
pub(crate) fn empty_note<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    note: &str,
    color: RGBColor,
) -> Result<(), DrawFailure> {
    let (w, h) = area.dim_in_pixel();
    let style = TextStyle::from((FONT, 18).into_font())
        .color(&color)
        .pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        ));
    area.draw_text(note, &style, ((w / 2) as i32, (h / 2) as i32))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_range_handles_degenerate_inputs() {
        assert_eq!(padded_range([]), (0.0, 1.0));
        assert_eq!(padded_range([f64::NAN, f64::INFINITY]), (0.0, 1.0));
        let (lo, hi) = padded_range([2.0]);
        assert!(lo < 2.0 && hi > 2.0);
        let (lo, hi) = padded_range([0.0, 10.0]);
        assert!((lo + 0.5).abs() < 1e-12 && (hi - 10.5).abs() < 1e-12);
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(2000.0), "2000");
        assert_eq!(tick_label(2.5), "2.5");
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(1e-5), "1.0e-5");
    }
}
