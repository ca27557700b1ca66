//! `cnflow plot`, and the pictures `cnflow train` leaves in its run folder.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cnflow::cnf::Trace;
use cnflow::data::{read_points, Dataset};
use cnflow::plot::{self, DensityGrid, MetricsConfig, PanelsConfig, Subplot, TrajectoriesConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::args::{PlotArgs, PlotKind};
use super::common::{load_model, log_density, Loaded};

pub fn run(args: PlotArgs) -> Result<()> {
    plot::Format::from_path(&args.output)?;
    if args.model.len() > 1 && args.kind != PlotKind::Panels {
        bail!(
            "--kind {:?} draws one model; give one --model (several models are drawn only as panels)",
            args.kind
        );
    }
    let load_2d = |path: &Path| -> Result<Loaded> {
        let loaded = load_model(path)?;
        if loaded.file.dim() != 2 {
            bail!(
                "{}: the model has dimension {}; pictures need 2-D data",
                path.display(),
                loaded.file.dim()
            );
        }
        Ok(loaded)
    };
    let data_for = |loaded: &Loaded, path: &Path| -> Result<(Vec<[f64; 2]>, bool)> {
        match args.data.clone().or_else(|| training_data(loaded)) {
            Some(s) => points_of(&s, args.seed),
            None => bail!(
                "{}: --data is needed: the model was not trained on a built-in dataset",
                path.display()
            ),
        }
    };
    match args.kind {
        PlotKind::Metrics => {
            let csv = metrics_path(&args.model[0]);
            draw_metrics(&csv, &args.output)?;
        }
        PlotKind::Trajectories => {
            draw_trajectories(&load_2d(&args.model[0])?, &args.output, args.seed)?;
        }
        PlotKind::Panels if args.model.len() == 1 => {
            let loaded = load_2d(&args.model[0])?;
            let (data, builtin) = data_for(&loaded, &args.model[0])?;
            draw_panels(&loaded, &data, builtin, &args.output, args.seed)?;
        }
        PlotKind::Panels => {
            let mut shown = Vec::with_capacity(args.model.len());
            for (k, path) in args.model.iter().enumerate() {
                eprintln!("model {}/{}: {}", k + 1, args.model.len(), path.display());
                let loaded = load_2d(path)?;
                let (data, builtin) = data_for(&loaded, path)?;
                let (grid, samples, extent) = panel_contents(&loaded, &data, builtin, args.seed)?;
                shown.push((title_of(&loaded), data, grid, samples, extent));
            }
            let rows: Vec<plot::PanelRow> = shown
                .iter()
                .map(|(title, data, grid, samples, extent)| plot::PanelRow {
                    data,
                    density: grid,
                    samples,
                    title: title.clone(),
                    extent: *extent,
                })
                .collect();
            let config = PanelsConfig {
                size: (1200, 430),
                ..PanelsConfig::default()
            };
            plot::panel_rows(&args.output, &rows, &config)?;
        }
    }
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

/// The run folder's metrics.csv beside a model file (or inside a folder given as --model).
fn metrics_path(model: &Path) -> PathBuf {
    if model.is_dir() {
        model.join("metrics.csv")
    } else {
        model.parent().unwrap_or(Path::new(".")).join("metrics.csv")
    }
}

fn training_data(loaded: &Loaded) -> Option<String> {
    let name = loaded.file.training.get("data")?.as_str()?;
    name.parse::<Dataset>().ok().map(|_| name.to_string())
}

/// 2000 points of a built-in dataset, or the points of a file; and whether built in.
fn points_of(spec: &str, seed: u64) -> Result<(Vec<[f64; 2]>, bool)> {
    let (points, builtin) = match spec.parse::<Dataset>() {
        Ok(d) => (d.sample(5000, &mut ChaCha8Rng::seed_from_u64(seed)), true),
        Err(_) => (read_points(Path::new(spec), Some(2))?, false),
    };
    Ok((points.rows().into_iter().map(|r| [r[0], r[1]]).collect(), builtin))
}

/// Data, model density and samples side by side.
pub fn draw_panels(loaded: &Loaded, data: &[[f64; 2]], builtin: bool, out: &Path, seed: u64) -> Result<()> {
    let (grid, samples, extent) = panel_contents(loaded, data, builtin, seed)?;
    let config = PanelsConfig {
        extent,
        title: title_of(loaded),
        ..PanelsConfig::default()
    };
    plot::panels(out, data, &grid, &samples, &config)?;
    Ok(())
}

/// A model's density grid, its samples and the square they show.
type PanelContents = (DensityGrid, Vec<[f64; 2]>, (f64, f64));

/// The model's density on a grid over the data's square, and samples as many as the
/// data's points (1000 to 5000).
fn panel_contents(loaded: &Loaded, data: &[[f64; 2]], builtin: bool, seed: u64) -> Result<PanelContents> {
    let extent = if builtin { (-4.0, 4.0) } else { extent_of(data) };
    let mut grid = DensityGrid::square(extent.0, extent.1, 120);
    let pts: Vec<f64> = grid.points().iter().flat_map(|p| [p[0], p[1]]).collect();
    let solver = loaded.file.eval_solver.config(1e-5, 1e-5);
    grid.log_p = log_density(loaded, pts, &solver, Trace::Exact, 2000, seed)?.0;
    let samples = samples(loaded, data.len().clamp(1000, 5000), seed)?;
    Ok((grid, samples, extent))
}

fn samples(loaded: &Loaded, n: usize, seed: u64) -> Result<Vec<[f64; 2]>> {
    let solver = loaded.file.eval_solver.config(1e-5, 1e-5);
    let (x, _) = loaded.model.sample_par(n, &solver, 1000, seed)?;
    Ok(x.chunks_exact(2).map(|c| [c[0], c[1]]).collect())
}

fn title_of(loaded: &Loaded) -> String {
    let t = &loaded.file.training;
    let data = t.get("data").and_then(|v| v.as_str()).unwrap_or("data");
    let iters = t.get("iterations").and_then(|v| v.as_u64()).unwrap_or(0);
    match t.get("kl_gap").and_then(|v| v.as_f64()) {
        Some(g) => format!("{data}: {iters} iterations, KL gap {g:.3} nats"),
        None => format!("{data}: {iters} iterations"),
    }
}

/// A square around the data: its bounding box, padded by 10 %.
fn extent_of(data: &[[f64; 2]]) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for p in data {
        for v in p {
            lo = lo.min(*v);
            hi = hi.max(*v);
        }
    }
    if !lo.is_finite() || !hi.is_finite() || lo >= hi {
        return (-4.0, 4.0);
    }
    let pad = 0.1 * (hi - lo);
    (lo - pad, hi + pad)
}

/// The sampling flow from the base (t = T) to data space (t = 0), in 6 frames.
pub fn draw_trajectories(loaded: &Loaded, out: &Path, seed: u64) -> Result<()> {
    use rand_distr::{Distribution, StandardNormal};
    let n_frames = 6;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let z: Vec<f64> = (0..2 * 1500).map(|_| StandardNormal.sample(&mut rng)).collect();
    let solver = loaded.file.eval_solver.config(1e-5, 1e-5);
    // The first frame is the base itself; the model maps later ones to data space.
    let flat: Vec<f64> = loaded.model.trajectories(&z, n_frames, &solver)?;
    let per_frame = z.len();
    let n_got = flat.len() / per_frame;
    let mut frames = Vec::with_capacity(n_got);
    for k in 0..n_got {
        let f = &flat[k * per_frame..(k + 1) * per_frame];
        frames.push(f.chunks_exact(2).map(|c| [c[0], c[1]]).collect::<Vec<_>>());
    }
    let times: Vec<f64> = (0..n_got).map(|k| 1.0 - k as f64 / (n_got - 1).max(1) as f64).collect();
    let config = TrajectoriesConfig {
        title: format!("{} — sampling flow, τ from 1 (base) to 0 (data)", title_of(loaded)),
        ..Default::default()
    };
    plot::trajectories(out, &frames, &times, &config)?;
    Ok(())
}

/// Training curves from a run's metrics.csv.
pub fn draw_metrics(csv: &Path, out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(csv).with_context(|| {
        format!(
            "{}: cannot read the run's metrics (give --model a run's model.json)",
            csv.display()
        )
    })?;
    let (mut loss, mut nll, mut gap, mut gap_t, mut nfe) = (vec![], vec![], vec![], vec![], vec![]);
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 12 {
            continue;
        }
        let num = |s: &str| s.parse::<f64>().ok();
        let (Some(it), Some(l), Some(elapsed)) = (num(f[0]), num(f[1]), num(f[8])) else {
            bail!("{}:{}: malformed metrics row", csv.display(), i + 1);
        };
        loss.push((it, l));
        if let (Some(a), Some(b)) = (num(f[5]), num(f[6])) {
            nfe.push((it, a + b));
        }
        if let Some(v) = num(f[10]) {
            nll.push((it, v));
        }
        if let Some(g) = num(f[11]) {
            gap.push((it, g));
            gap_t.push((elapsed, g));
        }
    }
    if loss.is_empty() {
        bail!("{}: no iterations recorded yet", csv.display());
    }
    let mut subplots = vec![
        Subplot::single("training loss", "iteration", "nats", &loss),
        Subplot::single("NFE forward + backward", "iteration", "evaluations", &nfe),
        Subplot::single("test NLL", "iteration", "nats", &nll),
    ];
    if !gap.is_empty() {
        subplots.push(Subplot::single("KL gap", "iteration", "nats", &gap).log_y());
        subplots.push(Subplot::single("KL gap against time", "wall time (s)", "nats", &gap_t).log_y());
    }
    plot::metrics(out, &subplots, &MetricsConfig::default())?;
    Ok(())
}
