//! FFJORD's three panels: data, model density on a grid, model samples.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::render::{empty_note, heat, invalid, render, tick_label, with_title, DrawFailure, Figure, FONT};
use super::PlotError;

/// `log p` evaluated on the cell centres of a regular grid over
/// `[x_min, x_max] × [y_min, y_max]`.
///
/// The grid has `nx` columns and `ny` rows of equal cells that tile the rectangle.
/// `log_p` is row-major with `y` outer: `log_p[j * nx + i]` belongs to the cell centre
/// `(x_min + (i + ½)·dx, y_min + (j + ½)·dy)`, `dx = (x_max - x_min)/nx`,
/// `dy = (y_max - y_min)/ny` — the order of [`DensityGrid::points`]. Row 0 is the bottom
/// (smallest `y`). `-∞` (zero density) is allowed; NaN is drawn as zero density.
#[derive(Debug, Clone, PartialEq)]
pub struct DensityGrid {
    /// Left edge of the grid.
    pub x_min: f64,
    /// Right edge of the grid.
    pub x_max: f64,
    /// Bottom edge of the grid.
    pub y_min: f64,
    /// Top edge of the grid.
    pub y_max: f64,
    /// Number of cells along `x` (columns).
    pub nx: usize,
    /// Number of cells along `y` (rows).
    pub ny: usize,
    /// `log p` at the cell centres, `ny × nx`, row-major (see the type's docs).
    pub log_p: Vec<f64>,
}

impl DensityGrid {
    /// A grid over `[x_min, x_max] × [y_min, y_max]` with `nx × ny` cells and no values
    /// yet: fill `log_p` with the model's log-density at [`points`](Self::points).
    pub fn new(x_min: f64, x_max: f64, y_min: f64, y_max: f64, nx: usize, ny: usize) -> Self {
        DensityGrid {
            x_min,
            x_max,
            y_min,
            y_max,
            nx,
            ny,
            log_p: Vec::new(),
        }
    }

    /// A square grid over `[lo, hi]²` with `n × n` cells (FFJORD draws `[-4, 4]²`).
    pub fn square(lo: f64, hi: f64, n: usize) -> Self {
        Self::new(lo, hi, lo, hi, n, n)
    }

    /// Width and height of one cell, `(dx, dy)`.
    pub fn cell_size(&self) -> (f64, f64) {
        (
            (self.x_max - self.x_min) / self.nx.max(1) as f64,
            (self.y_max - self.y_min) / self.ny.max(1) as f64,
        )
    }

    /// The cell centres in the order `log_p` expects: `y` outer, `x` inner,
    /// `ny · nx` points.
    pub fn points(&self) -> Vec<[f64; 2]> {
        let (dx, dy) = self.cell_size();
        let mut out = Vec::with_capacity(self.nx * self.ny);
        for j in 0..self.ny {
            let y = self.y_min + (j as f64 + 0.5) * dy;
            for i in 0..self.nx {
                out.push([self.x_min + (i as f64 + 0.5) * dx, y]);
            }
        }
        out
    }

    /// The midpoint-rule integral `Σ exp(log p) · dx · dy` of the density over the
    /// grid: close to 1 when the grid covers (nearly) all the mass of a normalised
    /// density — a quick check of a model's `log p`.
    pub fn total_mass(&self) -> f64 {
        let (dx, dy) = self.cell_size();
        self.log_p
            .iter()
            .map(|lp| lp.exp())
            .filter(|p| p.is_finite())
            .sum::<f64>()
            * dx
            * dy
    }

    /// Checks the shape and ranges; `path` only names the picture in the error.
    fn validate(&self, path: &Path) -> Result<(), PlotError> {
        let ranges_ok = self.x_min.is_finite()
            && self.x_max.is_finite()
            && self.y_min.is_finite()
            && self.y_max.is_finite()
            && self.x_min < self.x_max
            && (self.x_max - self.x_min).is_finite()
            && (self.y_max - self.y_min).is_finite()
            && self.y_min < self.y_max;
        if !ranges_ok {
            return Err(invalid(
                path,
                format!(
                    "density grid ranges x [{:?}, {:?}], y [{:?}, {:?}] must be finite with min < max (and a finite width)",
                    self.x_min, self.x_max, self.y_min, self.y_max
                ),
            ));
        }
        if self.nx.checked_mul(self.ny) != Some(self.log_p.len()) {
            return Err(invalid(
                path,
                format!(
                    "density grid has nx × ny = {} × {} cells but {} log p values; evaluate log p at grid.points()",
                    self.nx,
                    self.ny,
                    self.log_p.len()
                ),
            ));
        }
        Ok(())
    }
}

/// How the data and sample panels show points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PointStyle {
    /// A 2-D histogram with `bins × bins` cells over the extent, coloured like the
    /// density (FFJORD's choice).
    Histogram {
        /// Cells per side.
        bins: usize,
    },
    /// One dot per point, `radius` pixels.
    Scatter {
        /// Dot radius in pixels.
        radius: u32,
    },
}

/// Options for [`panels`].
#[derive(Debug, Clone, PartialEq)]
pub struct PanelsConfig {
    /// Image size in pixels, `(width, height)`.
    pub size: (u32, u32),
    /// The square `[lo, hi]²` all three panels show.
    pub extent: (f64, f64),
    /// Panel titles: data, density, samples.
    pub titles: [String; 3],
    /// A title over all panels (e.g. dataset and iteration); empty for none.
    pub title: String,
    /// How points are drawn in the data and sample panels.
    pub style: PointStyle,
}

impl Default for PanelsConfig {
    fn default() -> Self {
        PanelsConfig {
            size: (1500, 560),
            extent: (-4.0, 4.0),
            titles: ["data".into(), "model density".into(), "model samples".into()],
            title: String::new(),
            style: PointStyle::Histogram { bins: 100 },
        }
    }
}

/// Draws data, model density and model samples side by side into `path` (`.png` or
/// `.svg`), all over the same square `config.extent`.
///
/// The density panel colours each grid cell by `exp(log p - max log p)` (viridis);
/// points outside the extent and non-finite points are left out. Empty point sets and
/// all-`-∞` densities give empty panels with a note, not errors.
///
/// # Errors
/// [`PlotError::UnsupportedFormat`] for other extensions, [`PlotError::InvalidInput`]
/// for a grid whose `log_p` does not have `nx · ny` values or a bad extent,
/// [`PlotError::Io`] / [`PlotError::Draw`] when the file cannot be written.
pub fn panels(
    path: impl AsRef<Path>,
    data: &[[f64; 2]],
    density: &DensityGrid,
    samples: &[[f64; 2]],
    config: &PanelsConfig,
) -> Result<(), PlotError> {
    let path = path.as_ref();
    let (lo, hi) = config.extent;
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Err(invalid(
            path,
            format!("extent [{lo:?}, {hi:?}] must be finite with lo < hi"),
        ));
    }
    if let PointStyle::Histogram { bins } = config.style {
        if !(1..=4096).contains(&bins) {
            return Err(invalid(path, format!("histogram bins = {bins}; use 1..=4096")));
        }
    }
    density.validate(path)?;
    render(
        path,
        config.size,
        &Panels {
            data,
            density,
            samples,
            config,
        },
    )
}

/// One row of [`panel_rows`]: a model's data, density and samples, with its title.
pub struct PanelRow<'a> {
    /// Points of the data.
    pub data: &'a [[f64; 2]],
    /// The model's log-density on a grid.
    pub density: &'a DensityGrid,
    /// The model's samples.
    pub samples: &'a [[f64; 2]],
    /// Title over the row (dataset, KL gap, …).
    pub title: String,
    /// The square all three panels of the row show.
    pub extent: (f64, f64),
}

/// Several models' data, density and samples, one row each, into one picture (`.png` or
/// `.svg`); `config.size` is the size of one row, `config.title` goes over all rows.
///
/// # Errors
/// As [`panels`], for any row; [`PlotError::InvalidInput`] for no rows.
pub fn panel_rows(path: impl AsRef<Path>, rows: &[PanelRow<'_>], config: &PanelsConfig) -> Result<(), PlotError> {
    let path = path.as_ref();
    if rows.is_empty() {
        return Err(invalid(path, "no rows to draw".to_string()));
    }
    let mut configs = Vec::with_capacity(rows.len());
    for row in rows {
        let (lo, hi) = row.extent;
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(invalid(
                path,
                format!("{}: extent [{lo:?}, {hi:?}] must be finite with lo < hi", row.title),
            ));
        }
        row.density.validate(path)?;
        configs.push(PanelsConfig {
            extent: row.extent,
            title: row.title.clone(),
            titles: config.titles.clone(),
            size: config.size,
            style: config.style,
        });
    }
    if let PointStyle::Histogram { bins } = config.style {
        if !(1..=4096).contains(&bins) {
            return Err(invalid(path, format!("histogram bins = {bins}; use 1..=4096")));
        }
    }
    let head = if config.title.is_empty() { 0 } else { 50 };
    let size = (config.size.0, config.size.1 * rows.len() as u32 + head);
    let figure = Rows {
        rows: rows
            .iter()
            .zip(&configs)
            .map(|(r, c)| Panels {
                data: r.data,
                density: r.density,
                samples: r.samples,
                config: c,
            })
            .collect(),
        title: &config.title,
    };
    render(path, size, &figure)
}

struct Rows<'a> {
    rows: Vec<Panels<'a>>,
    title: &'a str,
}

impl Figure for Rows<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawFailure> {
        root.fill(&WHITE)?;
        let body = with_title(root, self.title, 50)?;
        for (row, area) in self.rows.iter().zip(body.split_evenly((self.rows.len(), 1))) {
            row.draw(&area)?;
        }
        Ok(())
    }
}

struct Panels<'a> {
    data: &'a [[f64; 2]],
    density: &'a DensityGrid,
    samples: &'a [[f64; 2]],
    config: &'a PanelsConfig,
}

impl Figure for Panels<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawFailure> {
        root.fill(&WHITE)?;
        let body = with_title(root, &self.config.title, 40)?;
        let cols = body.split_evenly((1, 3));
        let extent = self.config.extent;
        for (k, area) in cols.iter().enumerate() {
            let inner = with_title(area, &self.config.titles[k], 34)?;
            let cells = match k {
                1 => density_cells(self.density),
                _ => {
                    let points = if k == 0 { self.data } else { self.samples };
                    match self.config.style {
                        PointStyle::Histogram { bins } => histogram_cells(points, extent, bins),
                        PointStyle::Scatter { .. } => Cells::default(),
                    }
                }
            };
            let points = match (k, self.config.style) {
                (0, PointStyle::Scatter { radius }) => Some((self.data, radius)),
                (2, PointStyle::Scatter { radius }) => Some((self.samples, radius)),
                _ => None,
            };
            draw_square_panel(&inner, extent, &cells, points)?;
        }
        Ok(())
    }
}

/// Rectangles of uniform value in `[0, 1]` to paint, plus a note when there is nothing.
#[derive(Default)]
struct Cells {
    /// `(x0, y0, x1, y1, value)`.
    rects: Vec<(f64, f64, f64, f64, f64)>,
    note: Option<&'static str>,
}

/// Colour levels: neighbouring cells of the same level merge into one rectangle, which
/// keeps SVG files small without visible banding.
const LEVELS: f64 = 255.0;

/// Merges runs of equal quantised level along each row of a `ny × nx` value array.
fn merge_rows(values: &[f64], nx: usize, ny: usize, x: (f64, f64), y: (f64, f64), skip_zero: bool) -> Vec<Rect5> {
    let dx = (x.1 - x.0) / nx as f64;
    let dy = (y.1 - y.0) / ny as f64;
    let mut rects = Vec::new();
    for j in 0..ny {
        let row = &values[j * nx..(j + 1) * nx];
        let mut i = 0;
        while i < nx {
            let level = (row[i].clamp(0.0, 1.0) * LEVELS).round();
            let start = i;
            while i < nx && (row[i].clamp(0.0, 1.0) * LEVELS).round() == level {
                i += 1;
            }
            if skip_zero && level == 0.0 {
                continue;
            }
            let y0 = y.0 + j as f64 * dy;
            rects.push((
                x.0 + start as f64 * dx,
                y0,
                x.0 + i as f64 * dx,
                y0 + dy,
                level / LEVELS,
            ));
        }
    }
    rects
}

type Rect5 = (f64, f64, f64, f64, f64);

fn density_cells(grid: &DensityGrid) -> Cells {
    if grid.log_p.is_empty() {
        return Cells {
            rects: Vec::new(),
            note: Some("no density values"),
        };
    }
    let max = grid
        .log_p
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return Cells {
            rects: Vec::new(),
            note: Some("log p is -inf or NaN everywhere"),
        };
    }
    let values: Vec<f64> = grid
        .log_p
        .iter()
        .map(|&lp| if lp.is_nan() { 0.0 } else { (lp - max).exp() })
        .collect();
    let rects = merge_rows(
        &values,
        grid.nx,
        grid.ny,
        (grid.x_min, grid.x_max),
        (grid.y_min, grid.y_max),
        true,
    );
    Cells { rects, note: None }
}

fn histogram_cells(points: &[[f64; 2]], (lo, hi): (f64, f64), bins: usize) -> Cells {
    let mut counts = vec![0u32; bins * bins];
    let scale = bins as f64 / (hi - lo);
    let mut n_in = 0usize;
    for &[x, y] in points {
        let (u, v) = ((x - lo) * scale, (y - lo) * scale);
        // NaN fails both comparisons and is skipped with the out-of-range points.
        if u >= 0.0 && u < bins as f64 && v >= 0.0 && v < bins as f64 {
            counts[v as usize * bins + u as usize] += 1;
            n_in += 1;
        }
    }
    if n_in == 0 {
        let note = if points.is_empty() {
            "no points"
        } else {
            "no points inside the extent"
        };
        return Cells {
            rects: Vec::new(),
            note: Some(note),
        };
    }
    let max = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let values: Vec<f64> = counts.iter().map(|&c| c as f64 / max).collect();
    // A cell with a single point must not vanish into the background: lift non-empty
    // cells to at least one colour level.
    let values: Vec<f64> = values
        .iter()
        .map(|&v| if v > 0.0 { v.max(1.0 / LEVELS) } else { 0.0 })
        .collect();
    Cells {
        rects: merge_rows(&values, bins, bins, (lo, hi), (lo, hi), true),
        note: None,
    }
}

/// One square chart over `extent²`: background at zero colour, then the cells (clipped to
/// the extent), then any scatter points.
fn draw_square_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (lo, hi): (f64, f64),
    cells: &Cells,
    points: Option<(&[[f64; 2]], u32)>,
) -> Result<(), DrawFailure> {
    const X_LABELS: u32 = 30;
    const Y_LABELS: u32 = 50;
    const MARGIN: u32 = 8;
    let (w, h) = area.dim_in_pixel();
    let plot_w = w.saturating_sub(Y_LABELS + 2 * MARGIN);
    let plot_h = h.saturating_sub(X_LABELS + 2 * MARGIN);
    let side = plot_w.min(plot_h);
    let (extra_x, extra_y) = ((plot_w - side) / 2, (plot_h - side) / 2);
    let mut chart = ChartBuilder::on(area)
        .margin_left(MARGIN + extra_x)
        .margin_right(MARGIN + extra_x)
        .margin_top(MARGIN + extra_y)
        .margin_bottom(MARGIN + extra_y)
        .x_label_area_size(X_LABELS)
        .y_label_area_size(Y_LABELS)
        .build_cartesian_2d(lo..hi, lo..hi)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(5)
        .y_labels(5)
        .x_label_formatter(&|v| tick_label(*v))
        .y_label_formatter(&|v| tick_label(*v))
        .label_style((FONT, 16))
        .draw()?;
    let scatter = points.is_some();
    let background = if scatter { WHITE } else { heat(0.0) };
    chart.draw_series(std::iter::once(Rectangle::new(
        [(lo, lo), (hi, hi)],
        background.filled(),
    )))?;
    let clip = |v: f64| v.clamp(lo, hi);
    chart.draw_series(cells.rects.iter().filter_map(|&(x0, y0, x1, y1, v)| {
        let (x0, y0, x1, y1) = (clip(x0), clip(y0), clip(x1), clip(y1));
        (x0 < x1 && y0 < y1).then(|| Rectangle::new([(x0, y0), (x1, y1)], heat(v).filled()))
    }))?;
    if let Some((pts, radius)) = points {
        let color = RGBColor(31, 119, 180).mix(0.5).filled();
        let inside = |&&[x, y]: &&[f64; 2]| (lo..=hi).contains(&x) && (lo..=hi).contains(&y);
        chart.draw_series(
            pts.iter()
                .filter(inside)
                .map(|&[x, y]| Circle::new((x, y), radius.max(1), color)),
        )?;
        if !pts.iter().any(|p| inside(&p)) {
            let note = if pts.is_empty() {
                "no points"
            } else {
                "no points inside the extent"
            };
            empty_note(&chart.plotting_area().strip_coord_spec(), note, RGBColor(110, 110, 110))?;
        }
    }
    if let Some(note) = cells.note {
        empty_note(&chart.plotting_area().strip_coord_spec(), note, WHITE)?;
    }
    Ok(())
}
