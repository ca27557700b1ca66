//! Speed report of training runs made by `cnflow train` (see `benches/speed.sh`): per run,
//! median ms per iteration, NFE and ms per forward and backward evaluation, GFLOP/s of
//! the matrix products against a matrix-product peak measured here, and the wall time
//! to a KL gap of 0.1 and 0.03 nats; then a picture of KL gap against wall time.
//!
//! Run: `cargo run --release --example speed_report -- PLOT.png RUN_DIR...`
//!
//! Iterations before `--skip N` (default 100, the warm-up while NFE settles) are left
//! out of the medians; the time-to-quality figures use the whole run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cnflow::model_file::ModelFile;
use cnflow::nn::gemm;
use ndarray::linalg::general_mat_mul;
use ndarray::Array2;

/// One row of metrics.csv.
struct Row {
    iter: usize,
    nfe_f: f64,
    nfe_b: f64,
    seconds: f64,
    elapsed: f64,
    kl_gap: Option<f64>,
    seconds_f: Option<f64>,
    seconds_b: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn read_rows(path: &Path) -> Result<Vec<Row>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 12 {
            bail!("{}:{}: expected at least 12 columns", path.display(), n + 1);
        }
        let num = |i: usize| -> Result<f64> {
            f[i].parse()
                .with_context(|| format!("{}:{}: column {} is not a number", path.display(), n + 1, i + 1))
        };
        let opt = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
        rows.push(Row {
            iter: num(0)? as usize,
            nfe_f: num(5)?,
            nfe_b: num(6)?,
            seconds: num(7)?,
            elapsed: num(8)?,
            kl_gap: opt(11),
            seconds_f: opt(12),
            seconds_b: opt(13),
        });
    }
    Ok(rows)
}

/// Multiply-add flops of one field evaluation with `k` tangents on `b` points, forward
/// and vector-Jacobian product (the products only; element-wise work is not counted).
fn flops_per_eval(widths: &[usize], b: usize, k: usize) -> (f64, f64) {
    let rows = ((k + 1) * b) as f64;
    let macs: Vec<f64> = widths.windows(2).map(|w| (w[0] * w[1]) as f64).collect();
    let forward = 2.0 * rows * macs.iter().sum::<f64>();
    // W̄ += ūᵀX on every layer; X̄ = ūW on every layer but the first (whose input needs
    // only the primal rows).
    let vjp =
        2.0 * rows * macs.iter().sum::<f64>() + 2.0 * rows * macs[1..].iter().sum::<f64>() + 2.0 * b as f64 * macs[0];
    (forward, vjp)
}

/// Median single-thread GFLOP/s of the f32 matrix product `m × n · (n × n)ᵀ` (the
/// forward product of a layer), the fastest of ndarray's and cnflow's own kernel (on
/// `W` and on `Wᵀ` stored, as the layers do).
fn gemm_peak(m: usize, n: usize) -> f64 {
    let x = Array2::<f32>::from_shape_fn((m, n), |(i, j)| ((i * 7 + j * 3) % 11) as f32 * 0.1 - 0.5);
    let w = Array2::<f32>::from_shape_fn((n, n), |(i, j)| ((i * 5 + j) % 13) as f32 * 0.1 - 0.6);
    let mut out = Array2::<f32>::zeros((m, n));
    let mut scratch = vec![0.0f32; gemm::scratch_len(n, n)];
    let reps = (2_000_000 / m).max(10);
    let rate = |run: &mut dyn FnMut()| {
        let mut rates = Vec::new();
        for _ in 0..9 {
            let started = Instant::now();
            for _ in 0..reps {
                run();
            }
            rates.push(2.0 * (m * n * n * reps) as f64 / started.elapsed().as_secs_f64() / 1e9);
        }
        median(rates)
    };
    let ndarray = rate(&mut || general_mat_mul(1.0, &x, &w.t(), 0.0, &mut out));
    let (xs, ws) = (x.as_slice().unwrap(), w.as_slice().unwrap());
    let mut c = vec![0.0f32; m * n];
    let dims = gemm::Dims { m, k: n, n };
    let ours = rate(&mut || gemm::matmul_nt(dims, xs, ws, false, &mut scratch, &mut c));
    // The layers' forward product reads `Wᵀ` in place (`X · Wᵀ` as `matmul_nn`).
    let wt = w.t().as_standard_layout().to_owned();
    let wts = wt.as_slice().unwrap();
    let ours_nn = rate(&mut || gemm::matmul_nn(dims, xs, wts, false, &mut scratch, &mut c));
    ndarray.max(ours).max(ours_nn)
}

/// Single-thread GFLOP/s of a loop of nothing but independent f32 FMAs (twelve chains,
/// enough to cover the latency of two FMA pipes) on 256-bit and, when the CPU has
/// AVX-512F, 512-bit vectors: the ceiling any kernel on this core can reach.
#[cfg(target_arch = "x86_64")]
fn fma_peaks() -> (f64, Option<f64>) {
    use std::arch::x86_64::*;
    const N: usize = 20_000_000;
    #[target_feature(enable = "avx2,fma")]
    unsafe fn ymm() -> f32 {
        let mut acc = [_mm256_set1_ps(0.5); 12];
        let (b, c) = (_mm256_set1_ps(0.999_9), _mm256_set1_ps(1e-6));
        for _ in 0..N {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, b, c);
            }
        }
        acc.iter().map(|&v| _mm256_cvtss_f32(v)).sum()
    }
    #[target_feature(enable = "avx512f")]
    unsafe fn zmm() -> f32 {
        let mut acc = [_mm512_set1_ps(0.5); 12];
        let (b, c) = (_mm512_set1_ps(0.999_9), _mm512_set1_ps(1e-6));
        for _ in 0..N {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, b, c);
            }
        }
        acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
    }
    let rate = |lanes: usize, run: &dyn Fn() -> f32| {
        median(
            (0..5)
                .map(|_| {
                    let started = Instant::now();
                    std::hint::black_box(run());
                    (2 * lanes * 12 * N) as f64 / started.elapsed().as_secs_f64() / 1e9
                })
                .collect(),
        )
    };
    if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
        return (f64::NAN, None);
    }
    // SAFETY: the features were detected just above (and below for AVX-512F).
    let y = rate(8, &|| unsafe { ymm() });
    let z = std::is_x86_feature_detected!("avx512f").then(|| rate(16, &|| unsafe { zmm() }));
    (y, z)
}

fn main() -> Result<()> {
    #[cfg(target_arch = "x86_64")]
    {
        let (y, z) = fma_peaks();
        let z = z.map_or("no AVX-512F".to_string(), |z| {
            format!("{z:.1} GFLOP/s on 512-bit vectors")
        });
        println!("FMA-only loop, f32, one core: {y:.1} GFLOP/s on 256-bit vectors, {z}");
        println!();
    }
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut skip = 100;
    if let Some(i) = args.iter().position(|a| a == "--skip") {
        skip = args.get(i + 1).context("--skip needs a number")?.parse()?;
        args.drain(i..i + 2);
    }
    if args.len() < 2 {
        bail!("usage: speed_report [--skip N] PLOT.png RUN_DIR...");
    }
    let plot = PathBuf::from(&args[0]);
    let mut series = Vec::new();
    let mut peak_cache: Vec<((usize, usize), f64)> = Vec::new();
    println!(
        "| run | ms/iter | NFE fwd / bwd | ms per fwd / bwd eval | GFLOP/s (per core) | GEMM peak, 1 core | \
         time to KL ≤ 0.1 | time to KL ≤ 0.03 | best KL gap |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for dir in &args[1..] {
        let dir = PathBuf::from(dir);
        let name = dir
            .file_name()
            .map_or("run".into(), |n| n.to_string_lossy().to_string());
        let rows = read_rows(&dir.join("metrics.csv"))?;
        let model = ModelFile::load(&dir.join("model.json"))?;
        let checkpoint: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("checkpoint.json")).context("reading checkpoint.json")?,
        )?;
        let run_args = &checkpoint["args"];
        let batch = run_args["batch"].as_u64().unwrap_or(100) as usize;
        let threads = run_args["threads"].as_u64().unwrap_or(1).max(1) as usize;
        let exact = run_args["trace"].as_str() == Some("Exact");
        let adjoint = run_args["grad"].as_str().is_some_and(|g| g.starts_with("Adjoint"));
        let widths = model.architecture.widths();
        let d = model.architecture.dim();
        let k = if exact { d } else { 1 };
        let (fwd_flops, vjp_flops) = flops_per_eval(&widths, batch, k);
        // A backward evaluation is a forward pass and a VJP for the adjoint, a VJP on the
        // tape for fixed-step backprop.
        let taped = !adjoint && !run_args["steps"].is_null();
        let bwd_flops = if taped { vjp_flops } else { fwd_flops + vjp_flops };

        let steady: Vec<&Row> = rows.iter().filter(|r| r.iter > skip).collect();
        let ms_iter = 1e3 * median(steady.iter().map(|r| r.seconds).collect());
        let nfe_f = median(steady.iter().map(|r| r.nfe_f).collect());
        let nfe_b = median(steady.iter().map(|r| r.nfe_b).collect());
        let per_eval = |sel: fn(&Row) -> Option<f64>, nfe: fn(&Row) -> f64| {
            median(
                steady
                    .iter()
                    .filter_map(|r| sel(r).map(|s| 1e3 * s / nfe(r).max(1.0)))
                    .collect(),
            )
        };
        let ms_f = per_eval(|r| r.seconds_f, |r| r.nfe_f);
        let ms_b = per_eval(|r| r.seconds_b, |r| r.nfe_b);
        let gflops = (nfe_f * fwd_flops + nfe_b * bwd_flops) / (ms_iter * 1e-3) / 1e9;
        let shape = ((k + 1) * batch.div_ceil(threads), widths[1]);
        let peak = match peak_cache.iter().find(|(s, _)| *s == shape) {
            Some(&(_, p)) => p,
            None => {
                let p = gemm_peak(shape.0, shape.1);
                peak_cache.push((shape, p));
                p
            }
        };
        let reach = |gap: f64| {
            rows.iter()
                .find(|r| r.kl_gap.is_some_and(|g| g <= gap))
                .map_or("not reached".to_string(), |r| {
                    format!("{:.1} s (it {})", r.elapsed, r.iter)
                })
        };
        let best = rows.iter().filter_map(|r| r.kl_gap).fold(f64::INFINITY, f64::min);
        println!(
            "| {name} | {ms_iter:.1} | {nfe_f:.0} / {nfe_b:.0} | {ms_f:.3} / {ms_b:.3} | {gflops:.1} ({:.1}) | \
             {peak:.1} ({}×{}·{}×{}) | {} | {} | {best:.3} |",
            gflops / threads as f64,
            shape.0,
            shape.1,
            shape.1,
            shape.1,
            reach(0.1),
            reach(0.03),
        );
        let curve: Vec<(f64, f64)> = rows.iter().filter_map(|r| r.kl_gap.map(|g| (r.elapsed, g))).collect();
        series.push((name, curve));
    }
    let named: Vec<(&str, Vec<(f64, f64)>)> = series.iter().map(|(n, c)| (n.as_str(), c.clone())).collect();
    cnflow::plot::curves(
        &plot,
        "8gaussians: KL gap against training wall time",
        "wall time (s)",
        "KL gap (nats)",
        &named,
        true,
    )?;
    println!("\nwrote {}", plot.display());
    Ok(())
}
