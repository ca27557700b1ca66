//! Memory guards: before a command allocates its buffers it estimates its peak from
//! the configuration and refuses one that cannot fit in the memory available, with the
//! estimate and the flag that lowers it.
//!
//! Available memory is the smaller of `/proc/meminfo`'s MemAvailable and the cgroup's
//! limit less its usage, or `CNFLOW_MEMORY_LIMIT` (bytes, or with a K/M/G suffix) when
//! set. Where none is known, nothing is refused.

use anyhow::{bail, Result};
use cnflow::nn::{MlpConfig, Workspace};
use cnflow::Real;

/// What the program itself holds besides the buffers estimated (code, threads, I/O).
const BASE: u128 = 64 << 20;

/// Bytes as "1.2 GB" / "340 MB".
pub fn human(bytes: u128) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else {
        format!("{:.0} MB", (b / 1e6).max(1.0))
    }
}

fn parse_size(text: &str) -> Option<u128> {
    // "4G", "4GB", "4GiB", "4096M", "1e9" all read.
    let t = text.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (num, mult) = match t.chars().last()? {
        'k' | 'K' => (&t[..t.len() - 1], 1u128 << 10),
        'm' | 'M' => (&t[..t.len() - 1], 1 << 20),
        'g' | 'G' => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| *v >= 0.0)
        .map(|v| (v * mult as f64) as u128)
}

/// The memory this process may still use, if known.
pub fn available() -> Result<Option<u128>> {
    if let Ok(v) = std::env::var("CNFLOW_MEMORY_LIMIT") {
        return match parse_size(&v) {
            Some(b) => Ok(Some(b)),
            None => bail!("CNFLOW_MEMORY_LIMIT={v:?} is not a size; give bytes or a number with K, M or G (e.g. 4G)"),
        };
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u128>().ok())
            .map(|kb| kb * 1024)
    });
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|t| t.trim().parse::<u128>().ok())
    };
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .map(|max| max.saturating_sub(read("/sys/fs/cgroup/memory.current").unwrap_or(0)));
    Ok(match (meminfo, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// Refuses `need` bytes when more than the memory available; `what` says what needs
/// them and `lower` which flags lower it.
pub fn check(need: u128, what: &str, lower: &str) -> Result<()> {
    let need = need + BASE;
    if let Some(have) = available()? {
        if need > have {
            bail!(
                "{what} needs about {} of memory, more than the {} available; {lower}",
                human(need),
                human(have)
            );
        }
    }
    Ok(())
}

/// Peak bytes of training: per part of the batch, the workspaces of the forward pass
/// and of the gradient (two); backprop's tape of up to `tape_samples` sample
/// evaluations; the parameters with their gradient, optimizer state, best copy and
/// flat buffers (about ten copies); the test evaluation's workspaces on every thread.
pub fn train_bytes<T: Real>(
    arch: &MlpConfig,
    n_blocks: usize,
    batch: usize,
    n_parts: usize,
    n_tangents: usize,
    tape_samples: usize,
) -> u128 {
    let per_part = batch.div_ceil(n_parts.max(1)).max(1);
    let ws = Workspace::<T>::estimate_bytes(arch, per_part, n_tangents);
    let per_sample = ws / per_part as u128;
    let params = arch.n_params() as u128 * n_blocks as u128 * std::mem::size_of::<T>() as u128;
    let threads = rayon::current_num_threads() as u128;
    let test = threads * Workspace::<T>::estimate_bytes(arch, 250, arch.dim());
    n_parts.max(1) as u128 * 2 * ws + tape_samples as u128 * per_sample + 10 * params + test
}

/// Peak bytes of a streamed evaluation: `window` chunks of `chunk` points in flight,
/// each with a forward workspace carrying `n_tangents` tangents and its points.
pub fn eval_bytes<T: Real>(arch: &MlpConfig, chunk: usize, n_tangents: usize, window: usize) -> u128 {
    let ws = Workspace::<T>::estimate_bytes(arch, chunk.max(1), n_tangents);
    let points = 4 * chunk as u128 * arch.dim() as u128 * 8;
    window as u128 * (ws + points)
}
