//! The flow at several times: one small scatter panel per saved time.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::render::{empty_note, invalid, padded_range, render, tick_label, with_title, DrawFailure, Figure, FONT};
use super::PlotError;

/// Options for [`trajectories`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrajectoriesConfig {
    /// Side of one square panel in pixels (its title and labels included).
    pub panel_size: u32,
    /// Panels per row; `0` picks `min(frames, 5)`.
    pub cols: usize,
    /// The square `[lo, hi]²` every panel shows; `None` fits all finite points of all
    /// frames.
    pub extent: Option<(f64, f64)>,
    /// At most this many points are drawn per frame (the same evenly strided subset in
    /// every frame, so a point keeps its colour).
    pub max_points: usize,
    /// Dot radius in pixels.
    pub radius: u32,
    /// A title over all panels; empty for none.
    pub title: String,
    /// How many point paths [`flow_paths`] draws (an evenly strided subset).
    pub n_paths: usize,
}

impl Default for TrajectoriesConfig {
    fn default() -> Self {
        TrajectoriesConfig {
            panel_size: 320,
            cols: 0,
            extent: None,
            max_points: 2000,
            radius: 2,
            title: String::new(),
            n_paths: 150,
        }
    }
}

/// Draws `frames[k]` (the points at time `times[k]`) as one scatter panel each, in a grid
/// of panels, into `path` (`.png` or `.svg`).
///
/// Point `i` has the same colour in every frame: the hue of its angle about the centre of
/// the first frame, so rotations and foldings of the flow show. Frames may have different
/// lengths; points beyond the first frame's length are grey. Non-finite points are left
/// out. No frames give a single panel with a note.
///
/// # Errors
/// [`PlotError::InvalidInput`] when `times.len() != frames.len()` or the extent or sizes
/// are unusable; [`PlotError::UnsupportedFormat`], [`PlotError::Io`], [`PlotError::Draw`]
/// as for every picture.
pub fn trajectories(
    path: impl AsRef<Path>,
    frames: &[Vec<[f64; 2]>],
    times: &[f64],
    config: &TrajectoriesConfig,
) -> Result<(), PlotError> {
    let path = path.as_ref();
    let extent = check_frames(path, frames, times, config)?;
    let n = frames.len().max(1);
    let cols = if config.cols == 0 { n.min(5) } else { config.cols.min(n) };
    let rows = n.div_ceil(cols);
    let title_h = if config.title.is_empty() { 0 } else { 40 };
    let width = cols as u64 * config.panel_size as u64;
    let height = rows as u64 * config.panel_size as u64 + title_h as u64;
    let size = (width.min(u32::MAX as u64) as u32, height.min(u32::MAX as u64) as u32);
    let stride = frames
        .first()
        .map_or(1, |f| f.len().div_ceil(config.max_points.max(1)).max(1));
    let colors = point_colors(frames.first().map_or(&[][..], |f| &f[..]));
    render(
        path,
        size,
        &Trajectories {
            frames,
            times,
            config,
            extent,
            cols,
            rows,
            stride,
            colors,
        },
    )
}

struct Trajectories<'a> {
    frames: &'a [Vec<[f64; 2]>],
    times: &'a [f64],
    config: &'a TrajectoriesConfig,
    extent: (f64, f64),
    cols: usize,
    rows: usize,
    stride: usize,
    colors: Vec<RGBColor>,
}

/// Colour of each point of the first frame: hue = angle about the frame's mean.
fn point_colors(first: &[[f64; 2]]) -> Vec<RGBColor> {
    let finite = first.iter().filter(|p| p[0].is_finite() && p[1].is_finite());
    let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
    for p in finite {
        sx += p[0];
        sy += p[1];
        n += 1.0;
    }
    let (cx, cy) = if n > 0.0 { (sx / n, sy / n) } else { (0.0, 0.0) };
    first
        .iter()
        .map(|&[x, y]| {
            let angle = (y - cy).atan2(x - cx);
            let hue = if angle.is_finite() {
                (angle / std::f64::consts::TAU).rem_euclid(1.0)
            } else {
                0.0
            };
            let (r, g, b) = HSLColor(hue, 0.75, 0.45).to_backend_color().rgb;
            RGBColor(r, g, b)
        })
        .collect()
}

impl Figure for Trajectories<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawFailure> {
        root.fill(&WHITE)?;
        let body = with_title(root, &self.config.title, 40)?;
        let areas = body.split_evenly((self.rows, self.cols));
        if self.frames.is_empty() {
            if let Some(area) = areas.first() {
                empty_note(area, "no frames", RGBColor(110, 110, 110))?;
            }
            return Ok(());
        }
        let (lo, hi) = self.extent;
        for ((frame, &t), area) in self.frames.iter().zip(self.times).zip(&areas) {
            let inner = with_title(area, &format!("t = {}", tick_label(t)), 28)?;
            let mut chart = ChartBuilder::on(&inner)
                .margin(6)
                .x_label_area_size(24)
                .y_label_area_size(40)
                .build_cartesian_2d(lo..hi, lo..hi)?;
            chart
                .configure_mesh()
                .light_line_style(RGBColor(235, 235, 235))
                .bold_line_style(RGBColor(215, 215, 215))
                .x_labels(5)
                .y_labels(5)
                .x_label_formatter(&|v| tick_label(*v))
                .y_label_formatter(&|v| tick_label(*v))
                .label_style((FONT, 12))
                .draw()?;
            let grey = RGBColor(150, 150, 150);
            chart.draw_series(
                frame
                    .iter()
                    .enumerate()
                    .step_by(self.stride)
                    .filter_map(|(i, &[x, y])| {
                        let inside = (lo..=hi).contains(&x) && (lo..=hi).contains(&y);
                        let color = self.colors.get(i).copied().unwrap_or(grey);
                        inside.then(|| Circle::new((x, y), self.config.radius.max(1), color.mix(0.7).filled()))
                    }),
            )?;
            if frame.is_empty() {
                empty_note(
                    &chart.plotting_area().strip_coord_spec(),
                    "no points",
                    RGBColor(110, 110, 110),
                )?;
            }
        }
        Ok(())
    }
}

/// Draws the paths of a subset of points through the frames on one square chart into
/// `path` (`.png` or `.svg`, `2 · panel_size` px a side): a line per point through its
/// positions at `times`, a dot where it starts (first frame) and a ring where it ends
/// (last frame), coloured as in [`trajectories`].
///
/// `config.n_paths` points are drawn (evenly strided); `cols` and `max_points` are not
/// used. A point's path breaks where a frame lacks it or it is not finite.
///
/// # Errors
/// As for [`trajectories`].
pub fn flow_paths(
    path: impl AsRef<Path>,
    frames: &[Vec<[f64; 2]>],
    times: &[f64],
    config: &TrajectoriesConfig,
) -> Result<(), PlotError> {
    let path = path.as_ref();
    let extent = check_frames(path, frames, times, config)?;
    let n_first = frames.first().map_or(0, Vec::len);
    let stride = n_first.div_ceil(config.n_paths.max(1)).max(1);
    let colors = point_colors(frames.first().map_or(&[][..], |f| &f[..]));
    let side = 2 * config.panel_size;
    render(
        path,
        (side, side),
        &Paths {
            frames,
            times,
            config,
            extent,
            stride,
            colors,
        },
    )
}

struct Paths<'a> {
    frames: &'a [Vec<[f64; 2]>],
    times: &'a [f64],
    config: &'a TrajectoriesConfig,
    extent: (f64, f64),
    stride: usize,
    colors: Vec<RGBColor>,
}

impl Figure for Paths<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawFailure> {
        root.fill(&WHITE)?;
        let body = with_title(root, &self.config.title, 40)?;
        let (lo, hi) = self.extent;
        let mut chart = ChartBuilder::on(&body)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(lo..hi, lo..hi)?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(240, 240, 240))
            .bold_line_style(RGBColor(220, 220, 220))
            .x_label_formatter(&|v| tick_label(*v))
            .y_label_formatter(&|v| tick_label(*v))
            .label_style((FONT, 15))
            .draw()?;
        let (Some(first), Some(last)) = (self.frames.first(), self.frames.last()) else {
            return empty_note(
                &chart.plotting_area().strip_coord_spec(),
                "no frames",
                RGBColor(110, 110, 110),
            );
        };
        let usable = |p: Option<&[f64; 2]>| p.filter(|[x, y]| x.is_finite() && y.is_finite()).map(|&[x, y]| (x, y));
        for i in (0..first.len()).step_by(self.stride) {
            let color = self.colors.get(i).copied().unwrap_or(RGBColor(150, 150, 150));
            let mut run: Vec<(f64, f64)> = Vec::new();
            for frame in self.frames {
                match usable(frame.get(i)) {
                    Some(p) => run.push(p),
                    None if run.len() > 1 => {
                        chart.draw_series(LineSeries::new(std::mem::take(&mut run), color.mix(0.6)))?;
                    }
                    None => run.clear(),
                }
            }
            if run.len() > 1 {
                chart.draw_series(LineSeries::new(run, color.mix(0.6)))?;
            }
            if let Some(p) = usable(first.get(i)) {
                chart.draw_series(std::iter::once(Circle::new(p, 3, color.filled())))?;
            }
            if let Some(p) = usable(last.get(i)) {
                chart.draw_series(std::iter::once(Circle::new(p, 4, color.stroke_width(2))))?;
            }
        }
        // The legend names the times of the markers.
        let t0 = self.times.first().copied().unwrap_or(0.0);
        let t1 = self.times.last().copied().unwrap_or(0.0);
        let ink = RGBColor(60, 60, 60);
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
            .label(format!("start, t = {}", tick_label(t0)))
            .legend(move |(x, y)| Circle::new((x + 10, y), 3, ink.filled()));
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
            .label(format!("end, t = {}", tick_label(t1)))
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, ink.stroke_width(2)));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font((FONT, 15))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        Ok(())
    }
}

/// Checks frames, times and sizes shared by [`trajectories`] and [`flow_paths`], and
/// returns the extent to draw.
fn check_frames(
    path: &Path,
    frames: &[Vec<[f64; 2]>],
    times: &[f64],
    config: &TrajectoriesConfig,
) -> Result<(f64, f64), PlotError> {
    if frames.len() != times.len() {
        return Err(invalid(
            path,
            format!(
                "{} frames but {} times; give one time per frame",
                frames.len(),
                times.len()
            ),
        ));
    }
    if !(100..=4000).contains(&config.panel_size) {
        return Err(invalid(
            path,
            format!("panel_size = {} px; use 100..=4000", config.panel_size),
        ));
    }
    match config.extent {
        Some((lo, hi)) if lo < hi && (hi - lo).is_finite() => Ok((lo, hi)),
        Some((lo, hi)) => Err(invalid(
            path,
            format!("extent [{lo:?}, {hi:?}] must be finite with lo < hi"),
        )),
        None => Ok(padded_range(frames.iter().flatten().flat_map(|p| p.iter().copied()))),
    }
}
