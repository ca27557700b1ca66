//! `cnflow density`, `cnflow sample` and `cnflow eval`.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use cnflow::cnf::Trace;
use cnflow::data::{csv_chunks, read_points, write_points, Dataset, PointFormat};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::args::{DensityArgs, EvalArgs, SampleArgs, TraceArg};
use super::common::{eval_solver, load_model, log_density, to_array, to_flat, DataSource};

fn trace_of(arg: TraceArg) -> Trace {
    match arg {
        TraceArg::Exact => Trace::Exact,
        TraceArg::Hutchinson => Trace::Rademacher(1),
    }
}

pub fn density(args: DensityArgs) -> Result<()> {
    let loaded = load_model(&args.model)?;
    let solver = eval_solver(&loaded.file, &args.solver)?;
    let d = loaded.file.dim();
    let started = Instant::now();
    let trace = trace_of(args.trace);
    // CSV inputs are streamed in blocks; .npy files are read whole.
    let mut log_p = Vec::new();
    let mut n_evals = 0;
    if PointFormat::from_path(&args.input) == PointFormat::Csv {
        let block = 20 * args.solver.chunk;
        for (i, rows) in csv_chunks(&args.input, block)?.enumerate() {
            let rows = rows?;
            if rows.ncols() != d {
                bail!(
                    "{}: points have {} columns but the model {} has dimension {d}",
                    args.input.display(),
                    rows.ncols(),
                    args.model.display()
                );
            }
            let (lp, n) = log_density(
                &loaded,
                to_flat(&rows),
                &solver,
                trace,
                args.solver.chunk,
                args.seed ^ i as u64,
            )?;
            log_p.extend(lp);
            n_evals += n;
        }
        if log_p.is_empty() {
            bail!(
                "{}: no data rows; give at least one point, one per line",
                args.input.display()
            );
        }
    } else {
        let x = read_points(&args.input, Some(d))?;
        let (lp, n) = log_density(&loaded, to_flat(&x), &solver, trace, args.solver.chunk, args.seed)?;
        log_p = lp;
        n_evals = n;
    }
    let n_points = log_p.len();
    let out = to_array(log_p, 1)?;
    write_points_with_header(&args.output, out)?;
    eprintln!(
        "log p of {n_points} points in {:.2} s ({n_evals} evaluations)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Writes one column named `log_p` (CSV) or an n × 1 .npy array.
fn write_points_with_header(path: &std::path::Path, values: ndarray::Array2<f64>) -> Result<()> {
    if PointFormat::from_path(path) == PointFormat::Npy {
        write_points(path, values.view())?;
        return Ok(());
    }
    let mut text = String::with_capacity(values.len() * 20 + 8);
    text.push_str("log_p\n");
    for v in values.iter() {
        text.push_str(&format!("{v}\n"));
    }
    if path.as_os_str() == "-" {
        use std::io::Write;
        std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .context("writing to stdout")?;
    } else {
        cnflow::data::write_atomic(path, |w: &mut std::io::BufWriter<std::fs::File>| {
            use std::io::Write;
            w.write_all(text.as_bytes())
                .map_err(|source| cnflow::data::DataError::Io {
                    file: path.display().to_string(),
                    action: "writing",
                    source,
                })
        })?;
    }
    Ok(())
}

pub fn sample(args: SampleArgs) -> Result<()> {
    let loaded = load_model(&args.model)?;
    let solver = eval_solver(&loaded.file, &args.solver)?;
    let d = loaded.file.dim();
    let started = Instant::now();
    let (u, stats) = loaded.model.sample_par(args.n, &solver, args.solver.chunk, args.seed)?;
    let u = to_array(u, d)?;
    let x = match &loaded.file.standardizer {
        Some(s) => s.inverse(u.view())?,
        None => u,
    };
    write_points(&args.output, x.view())?;
    eprintln!(
        "{} samples in {:.2} s ({} evaluations)",
        args.n,
        started.elapsed().as_secs_f64(),
        stats.n_evals
    );
    Ok(())
}

pub fn eval(args: EvalArgs) -> Result<()> {
    let loaded = load_model(&args.model)?;
    let solver = eval_solver(&loaded.file, &args.solver)?;
    let d = loaded.file.dim();
    let source = DataSource::parse(&args.data, Some(d))?;
    let (x, entropy) = match &source {
        DataSource::Builtin(ds) => {
            if d != Dataset::DIM {
                bail!("the model has dimension {d}, the built-in datasets 2");
            }
            let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
            (to_flat(&ds.sample(args.n, &mut rng)), Some(ds.entropy()))
        }
        DataSource::File { points, .. } => (to_flat(points), None),
    };
    let n_points = x.len() / d;
    let started = Instant::now();
    let (log_p, n_evals) = log_density(&loaded, x, &solver, Trace::Exact, args.solver.chunk, args.seed)?;
    let seconds = started.elapsed().as_secs_f64();
    let nll = -log_p.iter().sum::<f64>() / n_points as f64;
    let stderr = {
        let var = log_p.iter().map(|v| (v + nll).powi(2)).sum::<f64>() / (n_points.max(2) - 1) as f64;
        (var / n_points as f64).sqrt()
    };
    if args.json {
        let obj = serde_json::json!({
            "model": args.model.display().to_string(),
            "data": source.name(),
            "n_points": n_points,
            "nll": nll,
            "nll_stderr": stderr,
            "entropy": entropy,
            "kl_gap": entropy.map(|h| nll - h),
            "n_evals": n_evals,
            "seconds": seconds,
        });
        println!("{obj}");
    } else {
        println!("data        {} ({n_points} points)", source.name());
        println!("test NLL    {nll:.4} ± {stderr:.4} nats");
        if let Some(h) = entropy {
            println!("entropy     {h:.4} nats");
            println!("KL gap      {:.4} nats", nll - h);
        }
        println!("NFE         {n_evals} (all chunks)");
        println!("time        {seconds:.2} s");
    }
    Ok(())
}
