//! `cnflow density`, `cnflow sample` and `cnflow eval`.
//!
//! `density` and `sample` stream: points are read (or drawn) chunk by chunk, a window of
//! chunks is evaluated in parallel, and results are written in order as they complete,
//! so memory is bounded by the chunk size times the number of threads, not by `n`.
//! Output to a file goes to a temporary file renamed at the end (nothing partial is
//! left on error); `-` streams to stdout.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use cnflow::cnf::{LogProb, Trace};
use cnflow::data::{csv_chunks, write_atomic, write_csv_rows, Dataset, NpyChunks, NpyRowWriter, PointFormat};
use cnflow::model_file::ModelFile;
use cnflow::Real;
use ndarray::{Array2, ArrayView2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::args::{DensityArgs, EvalArgs, PrecisionArg, SampleArgs, TraceArg};
use super::common::{
    check_in_range, eval_solver, log_density_in, precision_of, stream_window, to_flat, work_summary, DataSource,
    Progress,
};

fn trace_of(arg: TraceArg) -> Trace {
    match arg {
        TraceArg::Exact => Trace::Exact,
        TraceArg::Hutchinson => Trace::Rademacher(1),
    }
}

/// Runs `$run::<f32>` or `$run::<f64>` as `--precision` (or the model) says.
macro_rules! in_precision {
    ($precision:expr, $run:ident ( $($arg:expr),* )) => {
        match $precision {
            PrecisionArg::F32 => $run::<f32>($($arg),*),
            PrecisionArg::F64 => $run::<f64>($($arg),*),
        }
    };
}

pub fn density(args: DensityArgs) -> Result<()> {
    let file = ModelFile::load(&args.model)?;
    in_precision!(precision_of(&file, args.solver.precision), density_in(&args, &file))
}

pub fn sample(args: SampleArgs) -> Result<()> {
    let file = ModelFile::load(&args.model)?;
    in_precision!(precision_of(&file, args.solver.precision), sample_in(&args, &file))
}

pub fn eval(args: EvalArgs) -> Result<()> {
    let file = ModelFile::load(&args.model)?;
    in_precision!(precision_of(&file, args.solver.precision), eval_in(&args, &file))
}

/// Blocks of input points: a CSV file (or stdin) or a `.npy` file, `chunk` rows at a time.
enum PointChunks {
    Csv(cnflow::data::CsvChunks<Box<dyn std::io::Read>>),
    Npy(NpyChunks),
}

impl PointChunks {
    fn open(path: &Path, chunk: usize) -> Result<Self> {
        Ok(match PointFormat::from_path(path) {
            PointFormat::Npy if path.as_os_str() != "-" => PointChunks::Npy(NpyChunks::open(path, chunk)?),
            _ => PointChunks::Csv(csv_chunks(path, chunk)?),
        })
    }

    /// The number of points, when the format says it up front.
    fn n_points(&self) -> Option<usize> {
        match self {
            PointChunks::Csv(_) => None,
            PointChunks::Npy(c) => Some(c.header().n_rows()),
        }
    }
}

impl Iterator for PointChunks {
    type Item = Result<Array2<f64>>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            PointChunks::Csv(c) => c.next().map(|r| r.map_err(Into::into)),
            PointChunks::Npy(c) => c.next().map(|r| r.map_err(Into::into)),
        }
    }
}

/// How a CSV output is laid out.
#[derive(Clone, Copy)]
enum CsvLayout {
    /// A `log_p` header line, then one value per line.
    LogP,
    /// Points, no header.
    Points,
}

/// Where rows of results go, block by block.
enum RowSink<'a> {
    Csv {
        writer: &'a mut dyn Write,
        layout: CsvLayout,
        file: String,
        n_rows: usize,
    },
    Npy(NpyRowWriter<'a, BufWriter<File>>),
}

impl RowSink<'_> {
    /// Appends rows of `n_cols` values.
    fn write(&mut self, values: &[f64], n_cols: usize) -> Result<()> {
        match self {
            RowSink::Csv {
                writer,
                layout,
                file,
                n_rows,
            } => {
                let io_err = |source| cnflow::data::DataError::Io {
                    file: file.clone(),
                    action: "writing",
                    error: source,
                };
                match layout {
                    CsvLayout::LogP => {
                        let mut text = String::with_capacity(values.len() * 20);
                        for v in values {
                            text.push_str(&format!("{v}\n"));
                        }
                        writer.write_all(text.as_bytes()).map_err(io_err)?;
                    }
                    CsvLayout::Points => {
                        let rows = ArrayView2::from_shape((values.len() / n_cols, n_cols), values)?;
                        write_csv_rows(*writer, rows, file, *n_rows)?;
                    }
                }
                *n_rows += values.len() / n_cols;
            }
            RowSink::Npy(w) => w.write_rows(values)?,
        }
        Ok(())
    }
}

/// Streams rows of `n_cols` columns into `path` (`.npy`, CSV, or `-` for CSV on stdout)
/// as `body` produces them. A file is written atomically: on any error nothing is left.
/// `n_rows`, when known, goes into a `.npy` header at once, so that a pipe can take it.
fn write_rows<R>(
    path: &Path,
    n_cols: usize,
    n_rows: Option<usize>,
    layout: CsvLayout,
    body: impl FnOnce(&mut RowSink) -> Result<R>,
) -> Result<R> {
    let header = |w: &mut dyn Write, file: &str| -> Result<()> {
        if let CsvLayout::LogP = layout {
            w.write_all(b"log_p\n").map_err(|source| cnflow::data::DataError::Io {
                file: file.to_string(),
                action: "writing",
                error: source,
            })?;
        }
        Ok(())
    };
    let file = path.display().to_string();
    if path.as_os_str() == "-" {
        let mut out = BufWriter::new(std::io::stdout().lock());
        header(&mut out, "<stdout>")?;
        let result = body(&mut RowSink::Csv {
            writer: &mut out,
            layout,
            file: "<stdout>".into(),
            n_rows: 0,
        })?;
        out.flush().map_err(|source| cnflow::data::DataError::Io {
            file: "<stdout>".into(),
            action: "writing",
            error: source,
        })?;
        return Ok(result);
    }
    let mut result = None;
    write_atomic(path, |w: &mut BufWriter<File>| -> Result<()> {
        if PointFormat::from_path(path) == PointFormat::Npy {
            let mut sink = RowSink::Npy(NpyRowWriter::with_rows(w, n_cols, n_rows, &file)?);
            result = Some(body(&mut sink)?);
            if let RowSink::Npy(npy) = sink {
                npy.finish()?;
            }
        } else {
            header(w, &file)?;
            result = Some(body(&mut RowSink::Csv {
                writer: w,
                layout,
                file: file.clone(),
                n_rows: 0,
            })?);
        }
        Ok(())
    })?;
    result.ok_or_else(|| anyhow::anyhow!("internal: {file} written without a result"))
}

fn density_in<T: Real>(args: &DensityArgs, file: &ModelFile) -> Result<()> {
    let n_tangents = trace_of(args.trace).n_tangents(file.dim());
    let need = super::memory::eval_bytes::<T>(&file.architecture, args.solver.chunk, n_tangents, stream_window());
    super::memory::check(
        need,
        &format!(
            "evaluating chunks of {} points ({} in flight)",
            args.solver.chunk,
            stream_window()
        ),
        "lower --chunk or --threads",
    )?;
    let model = file.to_model::<T>(&args.model)?;
    let solver = eval_solver(file, &args.solver)?;
    let d = file.dim();
    let started = Instant::now();
    let input = PointChunks::open(&args.input, args.solver.chunk)?;
    let n_input = input.n_points();
    let mut progress = Progress::new(n_input);
    let input_name = if args.input.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        args.input.display().to_string()
    };
    // Points in f64, the user's units: the model's affine block standardises them.
    let mut rows_before = 0;
    let chunks = input.map(|block| -> Result<Vec<f64>> {
        let block = block?;
        if block.ncols() != d {
            bail!(
                "{input_name}: points have {} columns but the model {} has dimension {d}; \
                 give one {d}-dimensional point per row",
                block.ncols(),
                args.model.display()
            );
        }
        let x: Vec<f64> = block.as_standard_layout().iter().copied().collect();
        check_in_range(&model, &x, &input_name, rows_before + 1)?;
        rows_before += block.nrows();
        Ok(x)
    });
    let mut n_points = 0;
    let n_evals = write_rows(&args.output, 1, n_input, CsvLayout::LogP, |out| {
        let sink = |lp: LogProb<T>| -> Result<()> {
            let values: Vec<f64> = lp.log_p.iter().map(|v| v.f64()).collect();
            out.write(&values, 1)?;
            n_points += values.len();
            progress.advance(values.len());
            Ok(())
        };
        model.log_prob_stream(chunks, &solver, trace_of(args.trace), args.seed, stream_window(), sink)
    })?;
    progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "log p of {n_points} points in {seconds:.3} s {}",
        work_summary(n_points, seconds, n_evals)
    );
    Ok(())
}

fn sample_in<T: Real>(args: &SampleArgs, file: &ModelFile) -> Result<()> {
    let need = super::memory::eval_bytes::<T>(&file.architecture, args.solver.chunk, 0, stream_window());
    super::memory::check(
        need,
        &format!(
            "sampling chunks of {} points ({} in flight)",
            args.solver.chunk,
            stream_window()
        ),
        "lower --chunk or --threads",
    )?;
    let model = file.to_model::<T>(&args.model)?;
    let solver = eval_solver(file, &args.solver)?;
    let d = file.dim();
    let started = Instant::now();
    let mut progress = Progress::new(Some(args.n));
    let stats = write_rows(&args.output, d, Some(args.n), CsvLayout::Points, |out| {
        let sink = |x: Vec<f64>| -> Result<()> {
            out.write(&x, d)?;
            progress.advance(x.len() / d);
            Ok(())
        };
        model.sample_stream(args.n, &solver, args.solver.chunk, args.seed, stream_window(), sink)
    })?;
    progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{} samples in {seconds:.3} s {}",
        args.n,
        work_summary(args.n, seconds, stats.n_evals)
    );
    Ok(())
}

fn eval_in<T: Real>(args: &EvalArgs, file: &ModelFile) -> Result<()> {
    let model = file.to_model::<T>(&args.model)?;
    let solver = eval_solver(file, &args.solver)?;
    let d = file.dim();
    let source = DataSource::parse(&args.data, Some(d))?;
    let (x, entropy) = match &source {
        DataSource::Builtin(ds) => {
            if d != Dataset::DIM {
                bail!("the model has dimension {d}, the built-in datasets 2");
            }
            let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
            (to_flat(&ds.sample(args.n, &mut rng)), Some(ds.entropy()))
        }
        DataSource::File { points, path } => {
            let x = to_flat(points);
            check_in_range(&model, &x, &path.display().to_string(), 1)?;
            (x, None)
        }
    };
    let n_points = x.len() / d;
    let x_w2 = x.clone();
    let started = Instant::now();
    let (log_p, n_evals) = log_density_in(&model, x, &solver, Trace::Exact, args.solver.chunk, args.seed)?;
    let seconds = started.elapsed().as_secs_f64();
    let nll = -log_p.iter().sum::<f64>() / n_points as f64;
    let stderr = {
        let var = log_p.iter().map(|v| (v + nll).powi(2)).sum::<f64>() / (n_points.max(2) - 1) as f64;
        (var / n_points as f64).sqrt()
    };
    // Sample quality beside likelihood: W2 between model samples and test points, and
    // the same figure for two true samples (its noise floor at this many points).
    let m = args.w2_points.min(n_points);
    let (w2, w2_reference, reference_kind) = if m > 0 {
        let (samples, _) = model.sample_par(m, &solver, args.solver.chunk, args.seed ^ 0x5eed)?;
        let test = &x_w2[..m * d];
        let w2 = cnflow::cnf::wasserstein2(&samples, test, d);
        let reference = match &source {
            DataSource::Builtin(ds) => {
                let mut rng = ChaCha8Rng::seed_from_u64(args.seed.wrapping_add(1));
                let fresh = to_flat(&ds.sample(m, &mut rng));
                Some((cnflow::cnf::wasserstein2(&fresh, test, d), "a fresh true sample"))
            }
            DataSource::File { .. } if x_w2.len() >= 2 * m * d => Some((
                cnflow::cnf::wasserstein2(&x_w2[m * d..2 * m * d], test, d),
                "the next test points",
            )),
            DataSource::File { .. } => None,
        };
        (Some(w2), reference.map(|r| r.0), reference.map(|r| r.1))
    } else {
        (None, None, None)
    };
    if args.json {
        let obj = serde_json::json!({
            "model": args.model.display().to_string(),
            "data": source.name(),
            "n_points": n_points,
            "precision": T::NAME,
            "nll": nll,
            "nll_stderr": stderr,
            "entropy": entropy,
            "kl_gap": entropy.map(|h| nll - h),
            "n_evals": n_evals,
            "seconds": seconds,
            "w2": w2,
            "w2_reference": w2_reference,
            "w2_points": if m > 0 { Some(m) } else { None },
        });
        println!("{obj}");
    } else {
        println!("data        {} ({n_points} points)", source.name());
        println!("test NLL    {nll:.4} ± {stderr:.4} nats");
        if let Some(h) = entropy {
            println!("entropy     {h:.4} nats");
            println!("KL gap      {:.4} nats", nll - h);
        }
        if let Some(w2) = w2 {
            let reference = match (w2_reference, reference_kind) {
                (Some(r), Some(kind)) => format!("; {kind}: {r:.4}"),
                _ => String::new(),
            };
            println!("W2          {w2:.4} ({m} model samples vs {m} test points{reference})");
        }
        println!("NFE         {n_evals} (all chunks, {})", T::NAME);
        println!("time        {seconds:.3} s");
    }
    Ok(())
}
