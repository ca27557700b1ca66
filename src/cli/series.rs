//! `cnflow fit-series` and `cnflow predict`.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use cnflow::data::write_atomic;
use cnflow::loss::Reduction;
use cnflow::nn::MlpConfig;
use cnflow::ode::{Method, SolverConfig};
use cnflow::optim::{LrSchedule, Optimizer, OptimizerState};
use cnflow::plot::{metrics as plot_lines, MetricsConfig, Subplot};
use cnflow::sensitivity::{Checkpointing, SensitivityMethod};
use cnflow::series::{
    Equations, FitConfig, InputTransform, Mechanistic, NeuralTerm, SavedSeriesModel, SavedStart, Series, SeriesFit,
    SeriesModel,
};
use cnflow::stiff::{StiffConfig, StiffMethod};
use cnflow::train::{take_step, Problem, StepBuffers, StepFailure};

use super::args::{FitSeriesArgs, LrScheduleArg, PredictArgs, SeriesGradArg, SeriesLossArg, SeriesSolverArg};
use super::run_folder::RunFolder;
use super::{signals, Interrupted};

/// Everything needed to continue a fit.
#[derive(serde::Serialize, serde::Deserialize)]
struct SeriesCheckpoint {
    format: String,
    args: FitSeriesArgs,
    /// Iterations done.
    iter: usize,
    /// Total iterations planned.
    iters: usize,
    params: Vec<f64>,
    optimizer: OptimizerState,
    /// Training time so far, seconds.
    elapsed: f64,
}

const CHECKPOINT_FORMAT: &str = "cnflow-series-checkpoint";
const METRICS_FIXED: &str = "iter,loss,seconds,elapsed,window,nfe_forward,nfe_backward";

/// `name=value,…` → pairs, in order.
pub(super) fn parse_params(spec: &str) -> Result<Vec<(String, f64)>> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| anyhow!("--params: '{item}' has no value: write {item}=…"))?;
        let (name, value) = (name.trim(), value.trim());
        let v: f64 = value
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| anyhow!("--params: the value of {name} ('{value}') is not a finite number"))?;
        if out.iter().any(|(n, _)| n == name) {
            bail!("--params: {name} is given twice");
        }
        out.push((name.to_string(), v));
    }
    Ok(out)
}

/// A comma-separated list of numbers (`what` names it in errors).
pub(super) fn parse_list(spec: &str, what: &str) -> Result<Vec<f64>> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| anyhow!("{what}: '{s}' is not a finite number"))
        })
        .collect()
}

/// Which of `names` a list such as `dx,dy`, `x`, `all` or `none` selects.
fn select(spec: &str, names: &[String], flag: &str, prefix: &str) -> Result<Vec<bool>> {
    match spec.trim() {
        "all" => return Ok(vec![true; names.len()]),
        "none" | "" => return Ok(vec![false; names.len()]),
        _ => {}
    }
    let mut mask = vec![false; names.len()];
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bare = item
            .strip_prefix(prefix)
            .filter(|b| names.iter().any(|n| n == b))
            .unwrap_or(item);
        match names.iter().position(|n| n == bare) {
            Some(k) => mask[k] = true,
            None => bail!(
                "{flag}: '{item}' is not one of {}",
                names
                    .iter()
                    .map(|n| format!("{prefix}{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    Ok(mask)
}

/// The model the flags describe, with the fitted-parameter mask.
fn build_model(args: &FitSeriesArgs, data: &Series) -> Result<(SeriesModel, Vec<bool>)> {
    let names = &data.names;
    let params = match &args.params {
        Some(p) => parse_params(p)?,
        None => Vec::new(),
    };
    let param_names: Vec<String> = params.iter().map(|(n, _)| n.clone()).collect();
    let mut learn = vec![true; params.len()];
    if let Some(spec) = &args.learn {
        if args.mechanistic.is_none() {
            bail!("--learn names parameters of the equations, but there is no --mechanistic");
        }
        if !matches!(spec.trim(), "all" | "none") {
            for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if !param_names.iter().any(|n| n == item) {
                    bail!("--learn: parameter '{item}' has no value: give it one with --params {item}=…");
                }
            }
        }
        learn = select(spec, &param_names, "--learn", "")?;
    }
    let mechanistic = match &args.mechanistic {
        Some(spec) => {
            let text = match spec.strip_prefix('@') {
                Some(path) => {
                    std::fs::read_to_string(path).with_context(|| format!("reading the equations from {path}"))?
                }
                None => spec.clone(),
            };
            let eq = Equations::parse(&text, names, &param_names).map_err(|e| anyhow!("--mechanistic: {e}"))?;
            for (k, used) in eq.used_params().into_iter().enumerate() {
                if !used {
                    eprintln!("warning: parameter {} is not used by the equations", param_names[k]);
                }
            }
            Some(eq)
        }
        None => {
            if !params.is_empty() {
                bail!("--params gives parameter values, but there is no --mechanistic to use them");
            }
            None
        }
    };
    let outputs = match &args.neural {
        Some(spec) => select(spec, names, "--neural", "d")?,
        None => vec![mechanistic.is_none(); names.len()],
    };
    for (j, name) in names.iter().enumerate() {
        let has_eq = mechanistic.as_ref().is_some_and(|e| e.has_equation(j));
        if !has_eq && !outputs[j] {
            bail!("state {name} has no equation and no neural term: add 'd{name} = …' to --mechanistic or d{name} to --neural");
        }
    }
    let neural = if outputs.iter().any(|&o| o) {
        let hidden = MlpConfig::parse_hidden(&args.hidden).map_err(|e| anyhow!("--hidden: {e}"))?;
        let transform: InputTransform = args
            .input_transform
            .parse()
            .map_err(|e: String| anyhow!("--input-transform: {e}"))?;
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        Some(NeuralTerm::new(
            names.len(),
            &hidden,
            args.activation.activation(),
            transform,
            Some(outputs),
            mechanistic.is_some(),
            &mut rng,
        )?)
    } else {
        None
    };
    let mech = mechanistic.map(|e| {
        (
            Box::new(e) as Box<dyn Mechanistic>,
            params.iter().map(|(_, v)| *v).collect(),
        )
    });
    Ok((SeriesModel::new(names.clone(), mech, neural)?, learn))
}

/// The explicit solver, and the stiff one that replaces it when chosen.
fn solver_of(args: &FitSeriesArgs) -> Result<(SolverConfig, Option<StiffConfig>)> {
    let explicit = |m| SolverConfig::adaptive(m, args.rtol, args.atol);
    let stiff = |m| -> Result<_> {
        Ok((
            explicit(Method::Tsit5),
            Some(StiffConfig::adaptive(m, args.rtol, args.atol)),
        ))
    };
    match args.solver {
        SeriesSolverArg::Dopri5 => Ok((explicit(Method::Dopri5), None)),
        SeriesSolverArg::Tsit5 => Ok((explicit(Method::Tsit5), None)),
        SeriesSolverArg::Bosh3 => Ok((explicit(Method::Bosh3), None)),
        SeriesSolverArg::Kvaerno5 => stiff(StiffMethod::Kvaerno5),
        SeriesSolverArg::TrBdf2 => stiff(StiffMethod::TrBdf2),
    }
}

/// The curriculum's window ends for `spec` on data ending at `t_max`.
fn windows(spec: Option<&str>, t0: f64, t_max: f64) -> Result<Vec<f64>> {
    let Some(spec) = spec else { return Ok(Vec::new()) };
    if let Ok(k) = spec.trim().parse::<usize>() {
        if k == 0 {
            bail!("--curriculum 0: give a number of stages ≥ 1 or the windows' ends");
        }
        return Ok((1..=k).map(|s| t0 + (t_max - t0) * s as f64 / k as f64).collect());
    }
    let w = parse_list(spec, "--curriculum")?;
    if w.windows(2).any(|p| p[1] <= p[0]) {
        bail!("--curriculum: the windows' ends must increase");
    }
    Ok(w)
}

/// Iteration rows of metrics.csv.
struct MetricRows {
    header: String,
    rows: Vec<String>,
}

impl MetricRows {
    fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, |w: &mut BufWriter<File>| -> Result<()> {
            writeln!(w, "{}", self.header)?;
            for r in &self.rows {
                writeln!(w, "{r}")?;
            }
            Ok(())
        })
    }
}

fn read_metrics(path: &Path, header: &str, up_to: usize) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut lines = text.lines();
    if lines.next() != Some(header) {
        return Vec::new();
    }
    lines
        .filter(|l| {
            l.split(',')
                .next()
                .and_then(|i| i.parse::<usize>().ok())
                .is_some_and(|i| i <= up_to)
        })
        .map(str::to_string)
        .collect()
}

fn starts(fit: &SeriesFit) -> Vec<SavedStart> {
    fit.data
        .trajectories
        .iter()
        .zip(&fit.y0)
        .map(|(tr, y0)| SavedStart {
            id: tr.id.clone(),
            t0: tr.t[0],
            y0: y0.clone(),
            t_end: *tr.t.last().unwrap_or(&tr.t[0]),
        })
        .collect()
}

/// Writes checkpoint.json, model.json and metrics.csv into `dir`.
fn save(dir: &Path, ck: &SeriesCheckpoint, fit: &SeriesFit, rows: &MetricRows) -> Result<()> {
    let saved = SavedSeriesModel::new(
        &fit.model,
        &fit.data.time_name,
        &fit.learn,
        &fit.config.solver,
        fit.config.stiff.as_ref(),
        starts(fit),
    )?;
    write_atomic(&dir.join("model.json"), |w: &mut BufWriter<File>| -> Result<()> {
        serde_json::to_writer_pretty(&mut *w, &saved)?;
        writeln!(w)?;
        Ok(())
    })?;
    rows.write(&dir.join("metrics.csv"))?;
    write_atomic(&dir.join("checkpoint.json"), |w: &mut BufWriter<File>| -> Result<()> {
        serde_json::to_writer(&mut *w, ck)?;
        Ok(())
    })
}

/// A grid of `n` times from `a` to `b`, inclusive.
fn grid(a: f64, b: f64, n: usize) -> Vec<f64> {
    (0..n).map(|i| a + (b - a) * i as f64 / (n - 1) as f64).collect()
}

/// prediction.csv and fit.png: every trajectory on a fine grid to `t_stop`.
fn write_predictions(dir: &Path, fit: &SeriesFit, t_stop: f64) -> Result<()> {
    let d = fit.model.dim();
    let names = &fit.data.names;
    let many = fit.data.trajectories.len() > 1;
    let mut preds = Vec::new();
    for (k, tr) in fit.data.trajectories.iter().enumerate() {
        let t0 = tr.t[0];
        let end = t_stop.max(*tr.t.last().unwrap_or(&t0));
        let times = grid(t0, end, 301);
        let y = fit
            .predict(k, &times)
            .with_context(|| format!("predicting trajectory '{}' to t = {end}", tr.id))?;
        preds.push((times, y));
    }
    write_atomic(&dir.join("prediction.csv"), |w: &mut BufWriter<File>| -> Result<()> {
        let mut head = String::new();
        if many {
            head.push_str("id,");
        }
        head.push_str(&fit.data.time_name);
        for n in names {
            write!(head, ",{n}")?;
        }
        writeln!(w, "{head}")?;
        for (tr, (times, y)) in fit.data.trajectories.iter().zip(&preds) {
            for (i, t) in times.iter().enumerate() {
                if many {
                    write!(w, "{},", tr.id)?;
                }
                write!(w, "{t}")?;
                for v in &y[i * d..(i + 1) * d] {
                    write!(w, ",{v}")?;
                }
                writeln!(w)?;
            }
        }
        Ok(())
    })?;
    // One subplot per state: data, fit and extrapolation of (at most five) trajectories.
    let shown = fit.data.trajectories.len().min(5);
    let mut labels = Vec::new();
    let mut points: Vec<Vec<Vec<(f64, f64)>>> = vec![Vec::new(); d];
    for (k, tr) in fit.data.trajectories.iter().take(shown).enumerate() {
        let (times, y) = &preds[k];
        let t_end = *tr.t.last().unwrap_or(&tr.t[0]);
        let suffix = if many { format!(" {}", tr.id) } else { String::new() };
        labels.push(format!("data{suffix}"));
        labels.push(format!("fit{suffix}"));
        labels.push(format!("extrapolation{suffix}"));
        for j in 0..d {
            let data: Vec<(f64, f64)> =
                tr.t.iter()
                    .enumerate()
                    .map(|(i, &t)| (t, tr.y[i * d + j]))
                    .filter(|p| !p.1.is_nan())
                    .collect();
            let all: Vec<(f64, f64)> = times.iter().enumerate().map(|(i, &t)| (t, y[i * d + j])).collect();
            let (inside, outside): (Vec<_>, Vec<_>) = all.iter().partition(|p| p.0 <= t_end);
            let mut outside = outside;
            if let Some(&last) = inside.last() {
                outside.insert(0, last);
            }
            points[j].push(data);
            points[j].push(inside);
            points[j].push(outside);
        }
    }
    let subplots: Vec<Subplot<'_>> = names
        .iter()
        .enumerate()
        .map(|(j, name)| Subplot {
            title: name,
            x_label: &fit.data.time_name,
            y_label: name,
            lines: labels
                .iter()
                .map(String::as_str)
                .zip(points[j].iter().map(Vec::as_slice))
                .collect(),
            log_y: false,
        })
        .collect();
    let config = MetricsConfig {
        cols: d.min(2),
        title: "data, fit and extrapolation".into(),
        ..MetricsConfig::default()
    };
    plot_lines(dir.join("fit.png"), &subplots, &config)?;
    Ok(())
}

/// The run folder's copy of the observations, read by `--resume`.
const DATA_COPY: &str = "data.csv";

fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// The whole text of a file, or of stdin for `-`.
fn read_text(path: &Path) -> Result<String> {
    let mut text = String::new();
    if is_stdin(path) {
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)?;
    } else {
        if path.is_dir() {
            bail!("it is a directory; give the CSV file of observations");
        }
        std::io::Read::read_to_string(&mut File::open(path)?, &mut text)?;
    }
    Ok(text)
}

/// `cnflow fit-series`.
pub fn fit(cli: FitSeriesArgs) -> Result<()> {
    let out = match (&cli.out, &cli.data) {
        (Some(out), _) => out.clone(),
        (None, Some(data)) => {
            let stem = if is_stdin(data) {
                "stdin".to_string()
            } else {
                data.file_stem()
                    .map_or("series".into(), |s| s.to_string_lossy().into_owned())
            };
            PathBuf::from("runs").join(format!("series-{stem}"))
        }
        (None, None) => bail!("--resume without --data needs --out, the run folder to continue"),
    };
    let resumed: Option<SeriesCheckpoint> = if cli.resume {
        let path = out.join("checkpoint.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "--resume: reading {} (is there a fit-series run in {}?)",
                path.display(),
                out.display()
            )
        })?;
        let ck: SeriesCheckpoint = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a fit-series checkpoint", path.display()))?;
        if ck.format != CHECKPOINT_FORMAT {
            bail!("{} is not a fit-series checkpoint", path.display());
        }
        Some(ck)
    } else {
        None
    };
    let args = match &resumed {
        Some(ck) => FitSeriesArgs {
            iters: cli.iters.or(Some(ck.iters)),
            threads: cli.threads,
            ..ck.args.clone()
        },
        None => cli.clone(),
    };
    let n_iters = args.iters.unwrap_or(1000);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .build()?;

    // The data: as given, or on resume the run's own copy (or the file it was read from).
    let saved = out.join(DATA_COPY);
    let source = match (&cli.data, &resumed) {
        (Some(data), _) => data.clone(),
        (None, Some(_)) if saved.is_file() => saved.clone(),
        (None, Some(ck)) => ck.args.data.clone().unwrap_or(saved.clone()),
        (None, None) => bail!("--data is required"),
    };
    let label = if is_stdin(&source) {
        "<stdin>".to_string()
    } else {
        source.display().to_string()
    };
    let text = read_text(&source).with_context(|| format!("reading the observations from {label}"))?;
    let data = Series::parse_csv(&text, &label, args.time.as_deref(), args.id.as_deref())?;
    let (model, learn) = build_model(&args, &data)?;
    let gradient = match args.gradient {
        SeriesGradArg::Backprop => SensitivityMethod::Backprop(Checkpointing::All),
        SeriesGradArg::Adjoint => SensitivityMethod::Adjoint { seminorm: true },
    };
    let (solver, stiff) = solver_of(&args)?;
    let mut config = FitConfig::new(solver, gradient);
    config.stiff = stiff;
    config.reduction = match args.loss {
        SeriesLossArg::Mean => Reduction::Mean,
        SeriesLossArg::Sum => Reduction::Sum,
    };
    if let Some(w) = &args.weights {
        config.weights = parse_list(w, "--weights")?;
    }
    config.learn_y0 = args.learn_y0;
    config.shooting = args.shooting;
    config.continuity = args.continuity;
    let t0 = data.trajectories.iter().map(|tr| tr.t[0]).fold(f64::INFINITY, f64::min);
    let t_max = data.t_max();
    let mut fit = SeriesFit::new(model, Some(learn), data, config).map_err(|e| anyhow!("{label}: {e}"))?;
    fit.set_curriculum(&windows(args.curriculum.as_deref(), t0, t_max)?, n_iters)?;

    let mut opt = args.optimizer.config(args.lr, 0.0, None).build(fit.n_params());
    let (mut first, mut elapsed) = (1, 0.0);
    let param_names = fit.model.param_names();
    let mut header = METRICS_FIXED.to_string();
    for n in &param_names {
        write!(header, ",{n}")?;
    }
    let mut rows = MetricRows {
        header,
        rows: Vec::new(),
    };
    if let Some(ck) = &resumed {
        if ck.params.len() != fit.n_params() {
            bail!(
                "the checkpoint in {} does not match its own settings; start again with --force",
                out.display()
            );
        }
        fit.set_params(&ck.params);
        opt = ck.optimizer.clone();
        first = ck.iter + 1;
        elapsed = ck.elapsed;
        rows.rows = read_metrics(&out.join("metrics.csv"), &rows.header, ck.iter);
    }
    let mut folder = RunFolder::prepare(&out, cli.resume, cli.force)?;
    if source != saved {
        write_atomic(&folder.work.join(DATA_COPY), |w: &mut BufWriter<File>| -> Result<()> {
            Ok(w.write_all(text.as_bytes())?)
        })?;
    }
    let schedule = match args.lr_schedule {
        LrScheduleArg::Constant => LrSchedule::Constant,
        LrScheduleArg::Cosine => LrSchedule::Cosine { final_frac: 0.05 },
    };
    let describe = |fit: &SeriesFit| -> String {
        param_names
            .iter()
            .zip(&fit.model.mech_params)
            .map(|(n, v)| format!("{n}={v:.5}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    eprintln!(
        "fitting {} trajectories ({} observed values, {} states) with {} parameters, {} iterations",
        fit.data.trajectories.len(),
        fit.data.n_observed(),
        fit.data.dim(),
        fit.n_params(),
        n_iters
    );
    signals::set_graceful(true);
    let started = Instant::now();
    let log_every = (n_iters / 20).max(1);
    let save_every = (n_iters / 10).max(1);
    let mut last_loss = f64::NAN;
    let mut done = first - 1;
    let mut buf = StepBuffers::default();
    let mut failed: Option<(usize, StepFailure<cnflow::series::FitError>)> = None;
    let checkpoint = |fit: &SeriesFit, opt: &OptimizerState, done: usize| -> SeriesCheckpoint {
        let mut flat = Vec::new();
        fit.params(&mut flat);
        SeriesCheckpoint {
            format: CHECKPOINT_FORMAT.into(),
            args: args.clone(),
            iter: done,
            iters: n_iters,
            params: flat,
            optimizer: opt.clone(),
            elapsed: elapsed + started.elapsed().as_secs_f64(),
        }
    };
    pool.install(|| -> Result<()> {
        for iter in first..=n_iters {
            let t_step = Instant::now();
            let mut rng = ChaCha8Rng::seed_from_u64(iter as u64);
            let lr = opt.lr() * schedule.factor(iter, n_iters);
            let (loss, r) = match take_step(&mut fit, &mut opt, lr, iter, &mut rng, &mut buf) {
                Ok(v) => v,
                Err(f) => {
                    failed = Some((iter, f));
                    break;
                }
            };
            let seconds = t_step.elapsed().as_secs_f64();
            let total = elapsed + started.elapsed().as_secs_f64();
            let mut row = format!(
                "{iter},{loss},{seconds},{total},{},{},{}",
                r.window, r.n_evals_forward, r.n_evals_backward
            );
            for v in &fit.model.mech_params {
                write!(row, ",{v}")?;
            }
            rows.rows.push(row);
            last_loss = loss;
            done = iter;
            if iter % log_every == 0 || iter == first {
                eprintln!(
                    "iter {iter:6}  loss {loss:.6e}  {}  NFE {}/{}  {:.2} ms/iter{}",
                    describe(&fit),
                    r.n_evals_forward,
                    r.n_evals_backward,
                    1e3 * seconds,
                    if r.window.is_finite() {
                        format!("  window t ≤ {:.4}", r.window)
                    } else {
                        String::new()
                    }
                );
            }
            if signals::received().is_some() {
                break;
            }
            if iter % save_every == 0 && iter < n_iters {
                save(&folder.work, &checkpoint(&fit, &opt, done), &fit, &rows)?;
                folder.checkpoint_saved()?;
            }
        }
        Ok(())
    })?;
    let interrupted = signals::received();
    if let (Some((iter, failure)), 0) = (&failed, done) {
        let why = match failure {
            StepFailure::NonFinite => "the loss or its gradient is not finite (lower --lr?)".to_string(),
            StepFailure::Failed(e) => e.to_string(),
        };
        bail!("iteration {iter} failed: {why}");
    }
    let ck = checkpoint(&fit, &opt, done);
    save(&folder.work, &ck, &fit, &rows)?;
    let dir = folder.checkpoint_saved()?.to_path_buf();
    if let Some((iter, failure)) = failed {
        let why = match failure {
            StepFailure::NonFinite => "the loss or its gradient is not finite (lower --lr?)".to_string(),
            StepFailure::Failed(e) => e.to_string(),
        };
        bail!(
            "iteration {iter} failed: {why}; the fit up to iteration {} is saved in {}",
            iter - 1,
            dir.display()
        );
    }
    let t_stop = args.extrapolate.unwrap_or(t_max + 0.5 * (t_max - t0));
    write_predictions(&dir, &fit, t_stop)?;
    eprintln!(
        "done: loss {:.6e} after {} iterations ({:.2} s){}",
        last_loss,
        done,
        ck.elapsed,
        if param_names.is_empty() {
            String::new()
        } else {
            format!("; {}", describe(&fit))
        }
    );
    eprintln!(
        "wrote {}/{{model.json, metrics.csv, prediction.csv, fit.png}}",
        dir.display()
    );
    if let Some(sig) = interrupted {
        eprintln!(
            "{}: stopped at iteration {done}; continue with --resume",
            signals::name(sig)
        );
        return Err(Interrupted(signals::exit_code(sig)).into());
    }
    Ok(())
}

/// `START:STEP:END`, `START:END` (100 steps) or `a,b,c`.
pub(super) fn parse_times(spec: &str) -> Result<Vec<f64>> {
    let bad = || anyhow!("--t '{spec}': give START:STEP:END, START:END or a comma-separated list of increasing times");
    let times: Vec<f64> = if spec.contains(':') {
        let parts = parse_list(&spec.replace(':', ","), "--t")?;
        let (a, step, b) = match parts.as_slice() {
            [a, b] => (*a, (b - a) / 100.0, *b),
            [a, s, b] => (*a, *s, *b),
            _ => return Err(bad()),
        };
        if step.is_nan() || step <= 0.0 || b <= a {
            return Err(bad());
        }
        let n = ((b - a) / step + 1e-9).floor() as usize;
        if n > 10_000_000 {
            bail!("--t '{spec}' asks for {n} times; use a larger step");
        }
        (0..=n).map(|k| a + step * k as f64).collect()
    } else {
        parse_list(spec, "--t")?
    };
    if times.is_empty() || times.windows(2).any(|w| w[1] <= w[0]) {
        return Err(bad());
    }
    Ok(times)
}

/// `cnflow predict`.
pub fn predict(args: PredictArgs) -> Result<()> {
    let path = if args.model.is_dir() {
        args.model.join("model.json")
    } else {
        args.model.clone()
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let saved: SavedSeriesModel = serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "{}: not a series model file ({e}); give the model.json of a fit-series run",
            path.display()
        )
    })?;
    let model = saved.model().map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let times = parse_times(&args.t)?;
    let d = model.dim();
    let (t_start, y0) = match &args.y0 {
        Some(spec) => {
            let y0 = parse_list(spec, "--y0")?;
            if y0.len() != d {
                bail!(
                    "--y0 has {} values, the model {d} states ({})",
                    y0.len(),
                    saved.names.join(", ")
                );
            }
            (times[0], y0)
        }
        None => {
            let start = match &args.trajectory {
                Some(id) => saved.trajectories.iter().find(|s| &s.id == id).ok_or_else(|| {
                    anyhow!(
                        "--trajectory {id}: the model has trajectories {}",
                        saved
                            .trajectories
                            .iter()
                            .map(|s| s.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?,
                None => saved
                    .trajectories
                    .first()
                    .ok_or_else(|| anyhow!("the model has no fitted start: give --y0"))?,
            };
            if times[0] < start.t0 {
                bail!(
                    "the first time {} is before trajectory '{}' starts ({}): give --y0 for a start at {}",
                    times[0],
                    start.id,
                    start.t0,
                    times[0]
                );
            }
            (start.t0, start.y0.clone())
        }
    };
    let mut solve_at = times.clone();
    let prepended = t_start < times[0];
    if prepended {
        solve_at.insert(0, t_start);
    }
    let y = match &saved.stiff {
        Some(stiff) => model.predict_stiff(&y0, &solve_at, stiff),
        None => model.predict(&y0, &solve_at, &saved.solver),
    }
    .map_err(|e| anyhow!("the solve failed: {e}; try another --t range"))?;
    let y = if prepended { &y[d..] } else { &y[..] };
    let write = |w: &mut dyn Write| -> Result<()> {
        write!(w, "{}", saved.time_name)?;
        for n in &saved.names {
            write!(w, ",{n}")?;
        }
        writeln!(w)?;
        for (i, t) in times.iter().enumerate() {
            write!(w, "{t}")?;
            for v in &y[i * d..(i + 1) * d] {
                write!(w, ",{v}")?;
            }
            writeln!(w)?;
        }
        Ok(())
    };
    if args.output.as_os_str() == "-" {
        let mut out = BufWriter::new(std::io::stdout().lock());
        write(&mut out)?;
        out.flush()?;
    } else {
        write_atomic(&args.output, |w: &mut BufWriter<File>| -> Result<()> { write(w) })?;
    }
    Ok(())
}
