//! Line plots: training curves ([`metrics`], one subplot per series) and named lines on
//! one set of axes ([`curves`]).

use std::path::Path;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::render::{
    empty_note, invalid, padded_range, render, series_color, tick_label, with_title, DrawFailure, Figure, FONT, MAX_ABS,
};
use super::PlotError;

/// One subplot of [`metrics`]: one or more named lines sharing axes.
#[derive(Debug, Clone, PartialEq)]
pub struct Subplot<'a> {
    /// Title above the subplot (e.g. "training loss").
    pub title: &'a str,
    /// Horizontal axis label (e.g. "iteration" or "wall time (s)").
    pub x_label: &'a str,
    /// Vertical axis label (e.g. "NLL (nats)").
    pub y_label: &'a str,
    /// `(name, points)`; points are `(x, y)` in drawing order. A legend is drawn when
    /// there is more than one line.
    pub lines: Vec<(&'a str, &'a [(f64, f64)])>,
    /// Logarithmic vertical axis (non-positive values are left out).
    pub log_y: bool,
}

impl<'a> Subplot<'a> {
    /// A subplot with a single line named after the title, linear axes.
    pub fn single(title: &'a str, x_label: &'a str, y_label: &'a str, points: &'a [(f64, f64)]) -> Self {
        Subplot {
            title,
            x_label,
            y_label,
            lines: vec![(title, points)],
            log_y: false,
        }
    }

    /// The same subplot with a logarithmic vertical axis.
    pub fn log_y(mut self) -> Self {
        self.log_y = true;
        self
    }
}

/// Options for [`metrics`].
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// Size of one subplot in pixels, `(width, height)`.
    pub subplot_size: (u32, u32),
    /// Subplots per row; `0` picks `min(subplots, 3)`.
    pub cols: usize,
    /// A title over all subplots (e.g. the run's name); empty for none.
    pub title: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            subplot_size: (560, 380),
            cols: 0,
            title: String::new(),
        }
    }
}

/// Draws training curves into `path` (`.png` or `.svg`): one subplot per [`Subplot`]
/// (e.g. loss per iteration, test NLL and KL gap at the evaluation points), laid out in
/// rows of `config.cols`.
///
/// Non-finite points break a line rather than end the picture; lines with at most 60
/// points also get a marker at each point, so sparse evaluations stay visible. No
/// subplots, or subplots without points, give a picture with a note.
///
/// # Errors
/// [`PlotError::InvalidInput`] for an unusable subplot size;
/// [`PlotError::UnsupportedFormat`], [`PlotError::Io`], [`PlotError::Draw`] as for every
/// picture.
pub fn metrics(path: impl AsRef<Path>, subplots: &[Subplot<'_>], config: &MetricsConfig) -> Result<(), PlotError> {
    let path = path.as_ref();
    let (w, h) = config.subplot_size;
    if !(150..=4000).contains(&w) || !(120..=4000).contains(&h) {
        return Err(invalid(
            path,
            format!("subplot_size = {w}×{h} px; use 150..=4000 × 120..=4000"),
        ));
    }
    let n = subplots.len().max(1);
    let cols = if config.cols == 0 { n.min(3) } else { config.cols.min(n) };
    let rows = n.div_ceil(cols);
    let title_h = if config.title.is_empty() { 0 } else { 40 };
    let width = (cols as u64 * w as u64).min(u32::MAX as u64) as u32;
    let height = (rows as u64 * h as u64 + title_h).min(u32::MAX as u64) as u32;
    render(
        path,
        (width, height),
        &Metrics {
            subplots,
            config,
            rows,
            cols,
        },
    )
}

struct Metrics<'a> {
    subplots: &'a [Subplot<'a>],
    config: &'a MetricsConfig,
    rows: usize,
    cols: usize,
}

impl Figure for Metrics<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawFailure> {
        root.fill(&WHITE)?;
        let body = with_title(root, &self.config.title, 40)?;
        if self.subplots.is_empty() {
            return empty_note(&body, "no metrics", RGBColor(110, 110, 110));
        }
        for (sub, area) in self.subplots.iter().zip(body.split_evenly((self.rows, self.cols))) {
            line_chart(&area, sub, 15)?;
        }
        Ok(())
    }
}

/// Draws several named lines on one set of axes with a legend into `path` (`.png` or
/// `.svg`, 1000 × 640 px) — e.g. "KL gap against wall time" for several solvers.
///
/// With `log_y` the vertical axis is logarithmic and non-positive values are left out.
/// Non-finite points break a line. An empty `series` gives axes with a note.
///
/// # Errors
/// [`PlotError::UnsupportedFormat`], [`PlotError::Io`], [`PlotError::Draw`] as for every
/// picture.
pub fn curves(
    path: impl AsRef<Path>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    log_y: bool,
) -> Result<(), PlotError> {
    let lines = series.iter().map(|(name, pts)| (*name, pts.as_slice())).collect();
    let sub = Subplot {
        title,
        x_label,
        y_label,
        lines,
        log_y,
    };
    render(path.as_ref(), (1000, 640), &Curves { sub })
}

struct Curves<'a> {
    sub: Subplot<'a>,
}

impl Figure for Curves<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawFailure> {
        root.fill(&WHITE)?;
        // A lone line gets a legend too: here the name says what the line is.
        line_chart(root, &self.sub, 18)
    }
}

/// Splits points into runs of drawable `(x, y)`: finite, and positive when `log_y`.
fn segments(points: &[(f64, f64)], log_y: bool) -> Vec<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    let mut run = Vec::new();
    for &(x, y) in points {
        if x.is_finite() && y.is_finite() && (!log_y || y > 0.0) {
            let y = if log_y {
                y.clamp(10f64.powf(-LOG_LIMIT), 10f64.powf(LOG_LIMIT))
            } else {
                y
            };
            run.push((x.clamp(-MAX_ABS, MAX_ABS), y.clamp(-MAX_ABS, MAX_ABS)));
        } else if !run.is_empty() {
            out.push(std::mem::take(&mut run));
        }
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

/// Decades a log axis may reach either side of 1.
const LOG_LIMIT: f64 = 200.0;

/// A logarithmic range around the (positive, finite) values: 10 % padding in log space,
/// a decade either side of a single value, `[1, 10]` for none.
fn log_range(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = padded_range(values.into_iter().map(f64::log10));
    let (lo, hi) = if hi - lo < 0.3 {
        ((lo + hi) / 2.0 - 0.5, (lo + hi) / 2.0 + 0.5)
    } else {
        (lo, hi)
    };
    (10f64.powf(lo), 10f64.powf(hi))
}

/// Labelled (bold) and grid-only (light) ticks for a log axis over `[lo, hi]`, `0 < lo < hi`:
/// decades, else 1-2-5 steps, else every digit, whichever first gives three labels; a
/// range narrower than that gets evenly spaced labels.
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let in_range = |mults: &[f64]| -> Vec<f64> {
        let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        let mut out = Vec::new();
        for k in k0..=k1 {
            for m in mults {
                // Divide for negative powers: 3 / 10 is the double nearest 0.3, 3 · 0.1 is not.
                let v = if k < 0 { m / 10f64.powi(-k) } else { m * 10f64.powi(k) };
                if v >= lo * (1.0 - 1e-12) && v <= hi * (1.0 + 1e-12) {
                    out.push(v);
                }
            }
        }
        out
    };
    let digits: Vec<f64> = (1..=9).map(f64::from).collect();
    let light = if hi / lo < 1e6 {
        in_range(&digits)
    } else {
        in_range(&[1.0])
    };
    for mults in [&[1.0][..], &[1.0, 2.0, 5.0][..], &digits[..]] {
        let mut bold = in_range(mults);
        if bold.len() >= 3 {
            let keep = bold.len().div_ceil(8);
            bold = bold.into_iter().step_by(keep).collect();
            return (bold, light);
        }
    }
    let bold = (0..=4).map(|i| lo + (hi - lo) * (0.1 + 0.2 * i as f64)).collect();
    (bold, light)
}

/// One chart: axes, labels, one coloured line per series, markers on sparse lines, and a
/// legend when a line's name says more than the title.
fn line_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    sub: &Subplot<'_>,
    font: u32,
) -> Result<(), DrawFailure> {
    let segs: Vec<Vec<Vec<(f64, f64)>>> = sub.lines.iter().map(|(_, pts)| segments(pts, sub.log_y)).collect();
    let all = || segs.iter().flatten().flatten();
    let (x0, x1) = padded_range(all().map(|p| p.0));
    let inner = with_title(area, sub.title, font + 16)?;
    let mut builder = ChartBuilder::on(&inner);
    builder
        .margin(10)
        .margin_right(20)
        .x_label_area_size(font * 3)
        .y_label_area_size(font * 4 + 10);
    if sub.log_y {
        let (y0, y1) = log_range(all().map(|p| p.1));
        let (bold, light) = log_ticks(y0, y1);
        let y_axis = (y0..y1).log_scale().with_key_points(bold).with_light_points(light);
        let mut chart = builder.build_cartesian_2d(x0..x1, y_axis)?;
        fill_chart(&mut chart, sub, &segs, font)
    } else {
        let (y0, y1) = padded_range(all().map(|p| p.1));
        let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1)?;
        fill_chart(&mut chart, sub, &segs, font)
    }
}

/// Mesh, lines, markers and legend on a chart whose vertical axis is linear or log.
fn fill_chart<'a, DB: DrawingBackend + 'a, Y: Ranged<ValueType = f64> + ValueFormatter<f64>>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
    sub: &Subplot<'_>,
    segs: &[Vec<Vec<(f64, f64)>>],
    font: u32,
) -> Result<(), DrawFailure> {
    chart
        .configure_mesh()
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(220, 220, 220))
        .x_desc(sub.x_label)
        .y_desc(sub.y_label)
        .x_labels(6)
        .y_labels(6)
        .x_label_formatter(&|v| tick_label(*v))
        .y_label_formatter(&|v| tick_label(*v))
        .label_style((FONT, font))
        .axis_desc_style((FONT, font + 1))
        .draw()?;
    let legend = sub.lines.len() > 1 || sub.lines.first().is_some_and(|(name, _)| *name != sub.title);
    let mut drawn = false;
    for (k, ((name, _), runs)) in sub.lines.iter().zip(segs).enumerate() {
        let color = series_color(k);
        let n_points: usize = runs.iter().map(Vec::len).sum();
        // Thick strokes over hundreds of tiny segments smear; dense lines stay thin.
        let width = if n_points > 200 { 1 } else { 2 };
        for (r, run) in runs.iter().enumerate() {
            let line = chart.draw_series(LineSeries::new(run.iter().copied(), color.stroke_width(width)))?;
            if r == 0 {
                line.label(*name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
            }
            if n_points <= 60 {
                chart.draw_series(run.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            }
            drawn = true;
        }
    }
    if !drawn {
        let any_finite = sub
            .lines
            .iter()
            .flat_map(|(_, pts)| pts.iter())
            .any(|(x, y)| x.is_finite() && y.is_finite());
        let note = if sub.log_y && any_finite {
            "no positive values for a log axis"
        } else {
            "no data"
        };
        return empty_note(&chart.plotting_area().strip_coord_spec(), note, RGBColor(110, 110, 110));
    }
    if legend {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font((FONT, font))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_pick_decades_then_1_2_5_then_digits() {
        assert_eq!(log_ticks(1e-3, 20.0).0, vec![1e-3, 1e-2, 1e-1, 1.0, 10.0]);
        let (bold, _) = log_ticks(0.15, 1.7);
        assert_eq!(bold, vec![0.2, 0.5, 1.0]);
        let (bold, _) = log_ticks(0.25, 0.75);
        assert_eq!(bold, vec![0.3, 0.4, 0.5, 0.6, 0.7]);
        let (bold, _) = log_ticks(1e-30, 1e30);
        assert!(bold.len() <= 8 && bold.len() >= 3, "{bold:?}");
        let (bold, _) = log_ticks(3.1, 3.3);
        assert_eq!(bold.len(), 5);
    }

    #[test]
    fn segments_break_at_unusable_points() {
        let pts = [
            (0.0, 1.0),
            (1.0, f64::NAN),
            (2.0, 2.0),
            (3.0, -1.0),
            (4.0, 3.0),
            (5.0, 4.0),
        ];
        assert_eq!(segments(&pts, false).len(), 2);
        assert_eq!(
            segments(&pts, true),
            vec![vec![(0.0, 1.0)], vec![(2.0, 2.0)], vec![(4.0, 3.0), (5.0, 4.0)]]
        );
    }
}
