//! Buffers a forward-with-tangents pass leaves for its reverse, sized once.

use crate::nn::{gemm, MlpConfig, NnError};
use crate::Real;

/// What the last forward pass on a workspace computed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ForwardState<T> {
    /// Time of the evaluation.
    pub t: T,
    /// Tangents carried (0 for a plain forward).
    pub n_tangents: usize,
    /// Trace weight: 1 for the exact trace, `1/K` for `K` probes.
    pub weight: T,
}

/// Scratch and saved intermediates for one `(batch, K)` shape of one architecture.
///
/// Build it with [`Mlp::workspace`](crate::nn::Mlp::workspace) (or
/// [`Workspace::new`]) once, outside the ODE loop, and pass it to every evaluation: the
/// `_into` methods then allocate nothing. A forward pass stores in it what the reverse
/// pass needs, so [`Mlp::vjp_into`](crate::nn::Mlp::vjp_into) must follow the forward
/// pass it differentiates on the same workspace (and with unchanged params).
///
/// Memory: about `(K+1)·B·Σ widths·2 + B·Σ hidden·2 + 2·(K+1)·B·max width` scalars.
#[derive(Debug, Clone)]
pub struct Workspace<T> {
    pub(crate) n_batch: usize,
    pub(crate) n_tangents: usize,
    pub(crate) widths: Vec<usize>,
    /// Input stack `[z; ẋ_1; …; ẋ_K]`, `(K+1)B × d`.
    pub(crate) x0: Vec<T>,
    /// Per layer: `x Wᵀ + b` (primal rows) and `ẋ Wᵀ` (tangent rows), `(K+1)B × n_out`.
    pub(crate) h: Vec<Vec<T>>,
    /// Per layer: the layer's output after its activation, stacked like `h`.
    pub(crate) a: Vec<Vec<T>>,
    /// Per hidden layer: `φ'(y)` and `φ''(y)` at the primal rows, `B × n_out`.
    pub(crate) d1: Vec<Vec<T>>,
    pub(crate) d2: Vec<Vec<T>>,
    /// Per layer: gate `g(t)` and shift `c(t)`, `n_out` each.
    pub(crate) gate: Vec<Vec<T>>,
    pub(crate) shift: Vec<Vec<T>>,
    /// Reverse-pass cotangent buffers, `(K+1)B × max width` each.
    pub(crate) ga: Vec<T>,
    pub(crate) gb: Vec<T>,
    /// Per-unit accumulators of the reverse pass (`max width` each).
    pub(crate) acc_g: Vec<T>,
    pub(crate) acc_c: Vec<T>,
    pub(crate) acc_b: Vec<T>,
    pub(crate) tmp: Vec<T>,
    /// Scratch of the thin-layer kernels (`max width²`).
    pub(crate) wt: Vec<T>,
    /// Packed panels of the layer products ([`gemm::scratch_len`] for the widest layer).
    pub(crate) pack: Vec<T>,
    pub(crate) state: Option<ForwardState<T>>,
    /// Whether the last forward pass had a time per sample (in `times`;
    /// [`Mlp::forward_times_into`](crate::nn::Mlp::forward_times_into)).
    pub(crate) per_point: bool,
    /// The per-sample times of that pass, `B`.
    pub(crate) times: Vec<T>,
    /// Per layer, its per-sample gates `σ(W_g t_i + b_g)` and `h + b`, `B × n_out`
    /// (ConcatSquash layers only; sized on first use).
    pub(crate) row_gate: Vec<Vec<T>>,
    pub(crate) row_hb: Vec<Vec<T>>,
    /// Ones and zeros, `max width` each (a gate and a shift that change nothing).
    pub(crate) ones: Vec<T>,
    pub(crate) zeros: Vec<T>,
    /// Made by [`Workspace::inference`]: forward passes keep only what the forward pass
    /// itself needs, and the reverse pass is refused.
    pub(crate) inference: bool,
}

impl<T: Real> Workspace<T> {
    /// A workspace for batches of `n_batch` samples carrying up to `n_tangents`
    /// tangents (`d` for the exact trace, `K` for `K` Hutchinson probes; 0 for plain
    /// forward/VJP use). `n_batch` must be at least 1.
    pub fn new(config: &MlpConfig, n_batch: usize, n_tangents: usize) -> Result<Self, NnError> {
        if n_batch == 0 {
            return Err(NnError::BufferLength {
                name: "n_batch",
                shape: "batch size B ≥ 1".to_string(),
                expected: 1,
                got: 0,
            });
        }
        let widths = config.widths();
        let rows = (n_tangents + 1) * n_batch;
        let n_layers = widths.len() - 1;
        let max_w = widths.iter().copied().max().unwrap_or(1);
        let zeros = |n: usize| vec![T::zero(); n];
        let outs = &widths[1..];
        Ok(Workspace {
            n_batch,
            n_tangents,
            x0: zeros(rows * widths[0]),
            h: outs.iter().map(|&w| zeros(rows * w)).collect(),
            a: outs.iter().map(|&w| zeros(rows * w)).collect(),
            d1: outs[..n_layers - 1].iter().map(|&w| zeros(n_batch * w)).collect(),
            d2: outs[..n_layers - 1].iter().map(|&w| zeros(n_batch * w)).collect(),
            gate: outs.iter().map(|&w| zeros(w)).collect(),
            shift: outs.iter().map(|&w| zeros(w)).collect(),
            ga: zeros(rows * max_w),
            gb: zeros(rows * max_w),
            acc_g: zeros(max_w),
            acc_c: zeros(max_w),
            acc_b: zeros(max_w),
            tmp: zeros(max_w),
            wt: zeros(max_w * max_w),
            pack: zeros(gemm::scratch_len(rows.max(max_w), max_w)),
            widths,
            state: None,
            per_point: false,
            times: Vec::new(),
            row_gate: vec![Vec::new(); n_layers],
            row_hb: vec![Vec::new(); n_layers],
            ones: vec![T::one(); max_w],
            zeros: zeros(max_w),
            inference: false,
        })
    }

    /// The bytes [`Workspace::new`] allocates for these sizes, computed without
    /// allocating (and without overflow, in `u128`), so that a caller can refuse a
    /// configuration that cannot fit before it tries.
    pub fn estimate_bytes(config: &MlpConfig, n_batch: usize, n_tangents: usize) -> u128 {
        let widths = config.widths();
        let (b, rows) = (n_batch as u128, (n_tangents as u128 + 1) * n_batch as u128);
        let max_w = widths.iter().copied().max().unwrap_or(1) as u128;
        let outs: Vec<u128> = widths[1..].iter().map(|&w| w as u128).collect();
        let hidden: u128 = outs[..outs.len().saturating_sub(1)].iter().sum();
        let elems = rows * widths[0] as u128
            + 2 * rows * outs.iter().sum::<u128>()
            + 2 * b * hidden
            + 2 * outs.iter().sum::<u128>()
            + 2 * rows * max_w
            + 4 * max_w
            + max_w * max_w
            + gemm::scratch_len(1, 1) as u128
            + rows.max(max_w).min(gemm::KC as u128) * max_w.next_multiple_of(gemm::NR_MAX as u128);
        elems * std::mem::size_of::<T>() as u128
    }

    /// A workspace for forward passes only (sampling, log-density evaluation): the
    /// layers then skip storing the pre-activations and the activation derivatives that
    /// only the reverse pass reads — three of the hidden layer's four output streams
    /// without tangents, two with — and [`Mlp::vjp_into`](crate::nn::Mlp::vjp_into)
    /// returns [`NnError::InferenceOnly`]. Outputs are the same, bit for bit.
    pub fn inference(config: &MlpConfig, n_batch: usize, n_tangents: usize) -> Result<Self, NnError> {
        let mut ws = Self::new(config, n_batch, n_tangents)?;
        ws.inference = true;
        Ok(ws)
    }

    /// Whether this workspace is for forward passes only ([`Workspace::inference`]).
    pub fn is_inference(&self) -> bool {
        self.inference
    }

    /// Batch size `B` this workspace serves.
    pub fn n_batch(&self) -> usize {
        self.n_batch
    }

    /// Largest number of tangents it can carry.
    pub fn n_tangents(&self) -> usize {
        self.n_tangents
    }

    /// Layer widths `d, h_1, …, d` it was built for.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }
}
