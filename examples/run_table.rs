//! Summarises a training run's metrics.csv as a Markdown table: KL gap (or test NLL)
//! against iterations and wall time, NFE forward/backward and median ms per iteration
//! over each stretch.
//!
//! Run: `cargo run --release --example run_table -- runs/8gaussians/metrics.csv`

use anyhow::{bail, Context, Result};

struct Row {
    iter: usize,
    nfe_f: f64,
    nfe_b: f64,
    seconds: f64,
    elapsed: f64,
    test_nll: Option<f64>,
    kl_gap: Option<f64>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn main() -> Result<()> {
    let Some(path) = std::env::args().nth(1) else {
        bail!("usage: run_table METRICS.csv");
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let mut rows = Vec::new();
    let n_lines = text.lines().count();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 12 && i + 1 == n_lines {
            break; // a run still writing its last line
        }
        if f.len() < 12 {
            bail!("{path}:{}: expected 12 columns", i + 1);
        }
        let num = |s: &str| {
            s.parse::<f64>()
                .with_context(|| format!("{path}:{}: bad number {s:?}", i + 1))
        };
        rows.push(Row {
            iter: f[0].parse().with_context(|| format!("{path}:{}", i + 1))?,
            nfe_f: num(f[5])?,
            nfe_b: num(f[6])?,
            seconds: num(f[7])?,
            elapsed: num(f[8])?,
            test_nll: f[10].parse().ok(),
            kl_gap: f[11].parse().ok(),
        });
    }
    println!("| iteration | wall time (s) | test NLL | KL gap (nats) | NFE fwd / bwd (median since last row) | ms/iter (median) |");
    println!("|---|---|---|---|---|---|");
    let mut start = 0;
    for (i, r) in rows.iter().enumerate() {
        if r.test_nll.is_none() {
            continue;
        }
        let stretch = &rows[start..=i];
        let mut f: Vec<f64> = stretch.iter().map(|r| r.nfe_f).collect();
        let mut b: Vec<f64> = stretch.iter().map(|r| r.nfe_b).collect();
        let mut ms: Vec<f64> = stretch.iter().map(|r| 1e3 * r.seconds).collect();
        println!(
            "| {} | {:.1} | {:.4} | {} | {:.0} / {:.0} | {:.1} |",
            r.iter,
            r.elapsed,
            r.test_nll.unwrap_or(f64::NAN),
            r.kl_gap.map_or("–".to_string(), |g| format!("{g:.4}")),
            median(&mut f),
            median(&mut b),
            median(&mut ms)
        );
        start = i + 1;
    }
    Ok(())
}
