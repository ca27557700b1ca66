//! Neural vector fields `f(z, t; θ)` with exact first- and second-order derivatives.
//!
//! The field is a small time-conditioned MLP `d → h_1 → … → h_L → d`. Every layer maps
//! a batch `x` (`B × n_in`) and the scalar time `t` to
//!
//! ```text
//! y = (x Wᵀ + b) ⊙ g(t) + c(t)
//! ```
//!
//! where the [`LayerKind`] fixes the gate `g` and the shift `c` (both per output unit):
//!
//! | kind | `g(t)` | `c(t)` |
//! |---|---|---|
//! | [`LayerKind::ConcatSquash`] (FFJORD's default) | `σ(W_g t + b_g)` | `W_b t` |
//! | [`LayerKind::Concat`] (linear over `[t, x]`) | `1` | `w_t t` |
//! | [`LayerKind::Ignore`] (no `t`) | `1` | `0` |
//!
//! and an [`Activation`] `φ` follows every layer except the last.
//!
//! **Forward mode.** Alongside the primal batch each layer carries `K` tangents
//! `ẋ_1..ẋ_K`. The linear part is the same for all of them, so primal and tangents are
//! stacked as one `(K+1)·B`-row matrix and multiplied by `Wᵀ` in a single product:
//!
//! ```text
//! ẏ_k = (ẋ_k Wᵀ) ⊙ g        ȧ_k = φ'(y) ⊙ ẏ_k        (tanh: φ' = 1 − a²)
//! ```
//!
//! With `ẋ_k = e_k` (`K = d`) the tangents at the output are the columns of `J = ∂f/∂z`
//! and `tr J = Σ_k e_kᵀ J e_k` is exact; with caller-supplied probes `ε_k` the
//! Hutchinson estimate is `(1/K) Σ_k ε_kᵀ J ε_k` ([`TraceMode`]). The RNODE regularizers
//! come from the same tangents: `‖f‖²` and `‖J ε‖²` (or `‖J‖_F² = Σ_i ‖J e_i‖²`).
//!
//! **Reverse mode.** Given per-sample cotangents of `f`, of the trace and of the two
//! regularizers ([`Cotangents`]), one reverse pass through the whole
//! forward-with-tangents computation yields the gradients with respect to `z`, the
//! params `θ` and `t`. Through an activation the reverse needs the second derivative:
//!
//! ```text
//! ȳ = ā ⊙ φ'(y) + φ''(y) ⊙ Σ_k ā_k ⊙ ẏ_k        ẏ̄_k = ā_k ⊙ φ'(y)     (tanh: φ'' = −2a(1 − a²))
//! ```
//!
//! so `∂ tr J / ∂(z, θ, t)` — the second-order quantity the continuous adjoint needs —
//! costs about two forward passes.
//!
//! **Use.** Build an [`Mlp`] from an [`MlpConfig`], size a [`Workspace`] once per
//! `(batch, K)` shape, then call [`Mlp::eval_into`] at every ODE evaluation and
//! [`Mlp::eval_into`] followed by [`Mlp::vjp_into`] in the backward pass. The `_into`
//! forms allocate nothing; [`Mlp::eval`] and [`Mlp::vjp`] allocate their outputs.
//!
//! ```
//! use cnflow::nn::{Activation, Cotangents, LayerKind, Mlp, MlpConfig, TraceMode};
//! use rand::SeedableRng;
//!
//! let config = MlpConfig::new(2, &[16, 16], LayerKind::ConcatSquash, Activation::Tanh)?;
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
//! let mlp = Mlp::<f64>::new(config, &mut rng, false);
//! let z = [0.5, -1.0, 2.0, 0.25]; // B = 2 samples in d = 2
//! let mut ws = mlp.workspace(2, 2)?;
//! let out = mlp.eval(0.1, &z, TraceMode::Exact, &mut ws)?;
//! assert_eq!(out.f.len(), 4);
//! let a_tr = [1.0, 1.0];
//! let grads = mlp.vjp(&mut ws, &Cotangents { trace: Some(&a_tr), ..Default::default() })?;
//! assert_eq!(grads.params.len(), mlp.n_params());
//! # Ok::<(), cnflow::nn::NnError>(())
//! ```

mod activation;
mod config;
mod forward;
pub mod gemm;
#[cfg(target_arch = "x86_64")]
mod gemm_x86;
mod mlp;
mod probes;
mod reverse;
mod single;
#[cfg(target_arch = "x86_64")]
mod tanh_x86;
mod thin;
#[cfg(target_arch = "x86_64")]
mod thin_x86;
mod workspace;

pub use activation::{fast_tanh, fast_tanh_f32, fast_tanh_f64, Activation};
pub use config::{LayerKind, LayerShape, MlpConfig};
pub use mlp::{Cotangents, FieldEval, FieldOutputs, Gradients, Mlp, TraceMode};
pub use probes::{fill_probes, probes, ProbeKind};
pub use single::SingleTape;
pub use workspace::Workspace;

/// The values `CNFLOW_SIMD` may take, widest first (others are ignored by the library;
/// the `cnflow` program refuses them).
pub const SIMD_CHOICES: [&str; 3] = ["avx512", "avx2", "none"];

/// The widest vector instructions the kernels may use: what the CPU has, narrowed by
/// the environment variable `CNFLOW_SIMD` (`avx2`: no 512-bit builds; `none`: the
/// portable loops only), which exists to compare and test the narrower paths on a
/// machine that has the wider ones. Read once per process.
#[cfg(target_arch = "x86_64")]
fn simd_level() -> u8 {
    static LEVEL: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cpu = if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
            0
        } else if std::is_x86_feature_detected!("avx512f") {
            2
        } else {
            1
        };
        let cap = std::env::var("CNFLOW_SIMD")
            .ok()
            .and_then(|v| SIMD_CHOICES.iter().position(|&c| c == v))
            .map_or(2, |i| 2 - i as u8);
        cpu.min(cap)
    })
}

/// Whether the kernels may use AVX2 and FMA (the CPU has them and `CNFLOW_SIMD` is not
/// `none`).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_avx2() -> bool {
    simd_level() >= 1
}

/// Whether the kernels may use AVX-512F besides AVX2 and FMA (the CPU has it and
/// `CNFLOW_SIMD` is unset or `avx512`).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512() -> bool {
    simd_level() >= 2
}

/// The kernels this process runs: `"AVX-512"`, `"AVX2"` or `"portable"` (see the
/// environment variable `CNFLOW_SIMD`).
pub fn simd_in_use() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        ["portable", "AVX2", "AVX-512"][simd_level() as usize]
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        "portable"
    }
}

/// Errors of the neural-field module: bad configurations and mismatched buffer shapes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NnError {
    /// The data dimension was zero.
    #[error("data dimension must be at least 1, got 0")]
    ZeroDim,
    /// A hidden layer had width zero.
    #[error("hidden layer {layer} has width 0; every width must be at least 1")]
    ZeroWidth {
        /// Index of the offending hidden layer (0-based).
        layer: usize,
    },
    /// A hidden-width specification such as `"64-64-64"` did not parse.
    #[error("cannot parse hidden widths {spec:?}: expected positive integers joined by '-', e.g. \"64-64-64\"")]
    BadHidden {
        /// The text given.
        spec: String,
    },
    /// An activation name was not one of `tanh`, `softplus`, `elu`, `swish`.
    #[error("unknown activation {name:?}; expected one of tanh, softplus, elu, swish")]
    UnknownActivation {
        /// The name given.
        name: String,
    },
    /// A layer-kind name was not one of `concatsquash`, `concat`, `ignore`.
    #[error("unknown layer kind {name:?}; expected one of concatsquash, concat, ignore")]
    UnknownLayer {
        /// The name given.
        name: String,
    },
    /// A flat parameter vector had the wrong length for the architecture.
    #[error("parameter vector has length {got}, but architecture {arch} needs {expected}")]
    ParamLength {
        /// Human-readable architecture, e.g. `2-64-64-2 concatsquash tanh`.
        arch: String,
        /// Length the architecture needs.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// A caller buffer had the wrong length.
    #[error("buffer `{name}` has length {got}, expected {expected} ({shape})")]
    BufferLength {
        /// Which buffer (`z`, `f`, `probes`, `grad_params`, …).
        name: &'static str,
        /// Shape it should have, in words (e.g. `B × d = 100 × 2`).
        shape: String,
        /// Expected length.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// A workspace was built for another architecture.
    #[error("workspace was built for layer widths {workspace:?}, but the network has {network:?}; build a new one with Mlp::workspace")]
    WorkspaceMismatch {
        /// Widths `d, h_1, …, d` of the workspace.
        workspace: Vec<usize>,
        /// Widths of the network.
        network: Vec<usize>,
    },
    /// More tangents were asked for than the workspace holds.
    #[error(
        "{requested} tangents requested but the workspace holds {capacity}; build it with n_tangents >= {requested}"
    )]
    TooManyTangents {
        /// Tangents needed (`d` for the exact trace, `K` for probes).
        requested: usize,
        /// Tangents the workspace was sized for.
        capacity: usize,
    },
    /// Probes or tangents were given with `K = 0`.
    #[error("at least one probe/tangent is needed (got an empty probe buffer)")]
    NoTangents,
    /// The reverse pass was called before a forward pass on this workspace.
    #[error(
        "reverse pass called before any forward pass on this workspace; call eval_into/jvp_into/forward_into first"
    )]
    NoForward,
    /// A reverse pass was asked of a workspace made for forward passes only.
    #[error("reverse pass asked of an inference workspace (Workspace::inference), which keeps nothing for it; use Mlp::workspace")]
    InferenceOnly,
    /// A cotangent was given for an output the last forward pass did not compute.
    #[error("cotangent `{name}` given, but the last forward pass carried no tangents; use eval_into or jvp_into before the reverse")]
    NeedsTangents {
        /// The cotangent's name.
        name: &'static str,
    },
}
