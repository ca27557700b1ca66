//! Line plots: training curves ([`metrics`], one subplot per series) and named lines on
//! one set of axes ([`curves`]).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::render::{
    empty_note, invalid, padded_range, render, series_color, tick_label, with_title, DrawFailure, Figure, FONT,
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

/// Splits points into runs of drawable `(x, y)` — finite, and positive when `log_y` —
/// mapping `y` to `log10 y` on a log axis.
fn segments(points: &[(f64, f64)], log_y: bool) -> Vec<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    let mut run = Vec::new();
    for &(x, y) in points {
        let y = if log_y {
            if y > 0.0 {
                y.log10()
            } else {
                f64::NAN
            }
        } else {
            y
        };
        if x.is_finite() && y.is_finite() {
            run.push((x, y));
        } else if !run.is_empty() {
            out.push(std::mem::take(&mut run));
        }
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

/// One chart: axes, labels, one coloured line per series, markers on sparse lines, and a
/// legend when there are several lines (always for [`curves`], whose `font` is larger).
fn line_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    sub: &Subplot<'_>,
    font: u32,
) -> Result<(), DrawFailure> {
    let segs: Vec<Vec<Vec<(f64, f64)>>> = sub.lines.iter().map(|(_, pts)| segments(pts, sub.log_y)).collect();
    let all = || segs.iter().flatten().flatten();
    let (x0, x1) = padded_range(all().map(|p| p.0));
    let (y0, y1) = padded_range(all().map(|p| p.1));
    let inner = with_title(area, sub.title, font + 16)?;
    let mut chart = ChartBuilder::on(&inner)
        .margin(10)
        .margin_right(20)
        .x_label_area_size(font * 3)
        .y_label_area_size(font * 4 + 10)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let log_y = sub.log_y;
    let y_fmt = move |v: &f64| {
        if log_y {
            tick_label(10f64.powf(*v))
        } else {
            tick_label(*v)
        }
    };
    chart
        .configure_mesh()
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(220, 220, 220))
        .x_desc(sub.x_label)
        .y_desc(sub.y_label)
        .x_labels(6)
        .y_labels(6)
        .x_label_formatter(&|v| tick_label(*v))
        .y_label_formatter(&y_fmt)
        .label_style((FONT, font))
        .axis_desc_style((FONT, font + 1))
        .draw()?;
    let legend = sub.lines.len() > 1 || sub.lines.first().is_some_and(|(name, _)| *name != sub.title);
    let mut drawn = false;
    for (k, ((name, _), runs)) in sub.lines.iter().zip(&segs).enumerate() {
        let color = series_color(k);
        let n_points: usize = runs.iter().map(Vec::len).sum();
        for (r, run) in runs.iter().enumerate() {
            let line = chart.draw_series(LineSeries::new(run.iter().copied(), color.stroke_width(2)))?;
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
        return empty_note(
            &chart.plotting_area().strip_coord_spec(),
            "no data",
            RGBColor(110, 110, 110),
        );
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
