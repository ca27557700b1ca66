//! The field network: params, the public evaluation and gradient methods.

use std::sync::OnceLock;

use rand::Rng;

use crate::nn::workspace::ForwardState;
use crate::nn::{LayerKind, LayerShape, MlpConfig, NnError, Workspace};
use crate::Real;

/// How the forward pass obtains `tr(∂f/∂z)`.
#[derive(Debug, Clone, Copy)]
pub enum TraceMode<'a, T> {
    /// Exact trace from `d` forward tangents `e_1..e_d`; the Jacobian term is `‖J‖_F²`.
    Exact,
    /// Hutchinson estimate `(1/K) Σ_k ε_kᵀ J ε_k` from `K` probes laid out `K × B × d`
    /// (probe `k` of sample `b` starts at `(k·B + b)·d`); the Jacobian term is
    /// `(1/K) Σ_k ‖J ε_k‖²`. Draw them with [`probes`](crate::nn::probes) and keep
    /// them fixed for a whole solve.
    Hutchinson(&'a [T]),
}

/// Caller buffers for [`Mlp::eval_into`]; each per-sample buffer has length `B`.
#[derive(Debug)]
pub struct FieldOutputs<'a, T> {
    /// `f(z, t)`, `B × d` row-major.
    pub f: &'a mut [T],
    /// Exact or estimated `tr J` per sample.
    pub trace: &'a mut [T],
    /// Kinetic energy `‖f‖²` per sample, if wanted.
    pub kinetic: Option<&'a mut [T]>,
    /// Jacobian term `‖J ε‖²` (or `‖J‖_F²` when exact) per sample, if wanted.
    pub jacobian: Option<&'a mut [T]>,
}

/// Allocated outputs of [`Mlp::eval`].
#[derive(Debug, Clone, PartialEq)]
pub struct FieldEval<T> {
    /// `f(z, t)`, `B × d`.
    pub f: Vec<T>,
    /// `tr J` (exact or estimated), `B`.
    pub trace: Vec<T>,
    /// `‖f‖²`, `B`.
    pub kinetic: Vec<T>,
    /// `‖J ε‖²` or `‖J‖_F²`, `B`.
    pub jacobian: Vec<T>,
}

/// Per-sample cotangents of the outputs of the last forward pass; `None` means zero.
///
/// The reverse pass returns the gradient of
/// `S = Σ_b [ f_bᵀ a_f,b + Σ_k (J v_k)_bᵀ a_jv,k,b + a_tr,b tr_b + a_kin,b ‖f_b‖² + a_jac,b jac_b ]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cotangents<'a, T> {
    /// Cotangent of `f`, `B × d`.
    pub f: Option<&'a [T]>,
    /// Cotangents of the raw output tangents `J v_k`, `K × B × d` (for JVP users).
    pub jv: Option<&'a [T]>,
    /// Cotangent of the trace, `B`.
    pub trace: Option<&'a [T]>,
    /// Cotangent of `‖f‖²`, `B`.
    pub kinetic: Option<&'a [T]>,
    /// Cotangent of the Jacobian term, `B`.
    pub jacobian: Option<&'a [T]>,
}

/// Allocated gradients from [`Mlp::vjp`].
#[derive(Debug, Clone, PartialEq)]
pub struct Gradients<T> {
    /// With respect to `z`, `B × d`.
    pub z: Vec<T>,
    /// With respect to the params, laid out like `θ`.
    pub params: Vec<T>,
    /// With respect to `t` (summed over the batch, which shares one `t`).
    pub t: T,
}

/// A time-conditioned MLP vector field with its flat parameter vector `θ` (layout:
/// per layer `W`, `b`, then the time params; see [`MlpConfig`]).
///
/// Evaluation methods take `&self`, so one network can serve several threads, each
/// with its own [`Workspace`] (e.g. batch halves under `rayon::join`, each
/// accumulating into its own gradient buffer).
#[derive(Debug, Clone)]
pub struct Mlp<T> {
    pub(crate) config: MlpConfig,
    pub(crate) shapes: Vec<LayerShape>,
    pub(crate) params: Vec<T>,
    /// Per layer, `Wᵀ` (`n_in × n_out`, row-major) for the wide layers' forward product,
    /// which then reads it in place instead of packing `W` at every evaluation; empty for
    /// the thin layers. Made on first use after a change of the params and shared by
    /// every thread evaluating the network; [`Mlp::params_mut`] drops it.
    pub(crate) transposed: OnceLock<Vec<Vec<T>>>,
    /// The buffers of the last `transposed` that [`Mlp::params_mut`] dropped, for the
    /// next one to reuse (an optimizer step then allocates nothing).
    pub(crate) spare: Spare<T>,
}

/// Buffers kept for reuse; a clone starts without any.
#[derive(Debug, Default)]
pub(crate) struct Spare<T>(pub(crate) std::sync::Mutex<Vec<Vec<T>>>);

impl<T> Clone for Spare<T> {
    fn clone(&self) -> Self {
        Spare(std::sync::Mutex::new(Vec::new()))
    }
}

impl<T: PartialEq> PartialEq for Mlp<T> {
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config && self.shapes == other.shapes && self.params == other.params
    }
}

pub(crate) fn check_len(
    name: &'static str,
    buf_len: usize,
    expected: usize,
    shape: impl FnOnce() -> String,
) -> Result<(), NnError> {
    if buf_len == expected {
        Ok(())
    } else {
        Err(NnError::BufferLength {
            name,
            shape: shape(),
            expected,
            got: buf_len,
        })
    }
}

impl<T: Real> Mlp<T> {
    /// A network with PyTorch's default initialisation: every `nn.Linear(fan_in, ·)`
    /// weight and bias uniform on `±1/√fan_in` — `fan_in = n_in` for `W, b`,
    /// `n_in + 1` for all of a Concat layer, and 1 for ConcatSquash's `W_g, b_g, W_b`.
    /// With `zero_last` the last layer's params are all zero, so `f ≡ 0` at the start.
    pub fn new<R: Rng + ?Sized>(config: MlpConfig, rng: &mut R, zero_last: bool) -> Self {
        let shapes = config.layer_shapes();
        let mut params = vec![T::zero(); config.n_params()];
        let n_layers = shapes.len();
        let mut uniform = |bound: f64| T::c(bound * (2.0 * rng.random::<f64>() - 1.0));
        for (l, s) in shapes.iter().enumerate() {
            let p = &mut params[s.offset..s.offset + s.n_params()];
            if zero_last && l + 1 == n_layers {
                continue;
            }
            let n_wb = s.n_out * (s.n_in + 1);
            let bound_x = match s.kind {
                LayerKind::Concat => 1.0 / ((s.n_in + 1) as f64).sqrt(),
                _ => 1.0 / (s.n_in as f64).sqrt(),
            };
            let bound_t = match s.kind {
                LayerKind::Concat => bound_x,
                _ => 1.0,
            };
            for v in &mut p[..n_wb] {
                *v = uniform(bound_x);
            }
            for v in &mut p[n_wb..] {
                *v = uniform(bound_t);
            }
        }
        Mlp {
            config,
            shapes,
            params,
            transposed: OnceLock::new(),
            spare: Spare::default(),
        }
    }

    /// A network with the given params (length [`MlpConfig::n_params`]).
    pub fn from_params(config: MlpConfig, params: Vec<T>) -> Result<Self, NnError> {
        let expected = config.n_params();
        if params.len() != expected {
            return Err(NnError::ParamLength {
                arch: config.describe(),
                expected,
                got: params.len(),
            });
        }
        Ok(Mlp {
            shapes: config.layer_shapes(),
            config,
            params,
            transposed: OnceLock::new(),
            spare: Spare::default(),
        })
    }

    /// The architecture.
    pub fn config(&self) -> &MlpConfig {
        &self.config
    }

    /// Layer shapes and parameter offsets.
    pub fn shapes(&self) -> &[LayerShape] {
        &self.shapes
    }

    /// Data dimension `d`.
    pub fn dim(&self) -> usize {
        self.config.dim()
    }

    /// Length of `θ`.
    pub fn n_params(&self) -> usize {
        self.params.len()
    }

    /// The flat params `θ`.
    pub fn params(&self) -> &[T] {
        &self.params
    }

    /// The flat params, for an optimizer to update in place.
    pub fn params_mut(&mut self) -> &mut [T] {
        if let Some(old) = self.transposed.take() {
            *self.spare.0.get_mut().unwrap_or_else(|e| e.into_inner()) = old;
        }
        &mut self.params
    }

    /// Multiply-adds of one forward pass per sample and carried row (primal or
    /// tangent): `Σ_l n_in·n_out`. Used to report GFLOP/s.
    pub fn n_madds_per_row(&self) -> usize {
        self.shapes.iter().map(|s| s.n_in * s.n_out).sum()
    }

    /// A workspace for this network (see [`Workspace::new`]).
    pub fn workspace(&self, n_batch: usize, n_tangents: usize) -> Result<Workspace<T>, NnError> {
        Workspace::new(&self.config, n_batch, n_tangents)
    }

    /// A workspace for forward passes only (see [`Workspace::inference`]).
    pub fn inference_workspace(&self, n_batch: usize, n_tangents: usize) -> Result<Workspace<T>, NnError> {
        Workspace::inference(&self.config, n_batch, n_tangents)
    }

    fn check_workspace(&self, ws: &Workspace<T>) -> Result<(), NnError> {
        let same = ws.widths.len() == self.shapes.len() + 1
            && ws.widths[0] == self.dim()
            && self.shapes.iter().zip(&ws.widths[1..]).all(|(s, &w)| s.n_out == w);
        if same {
            Ok(())
        } else {
            Err(NnError::WorkspaceMismatch {
                workspace: ws.widths.clone(),
                network: self.config.widths(),
            })
        }
    }

    fn check_z(&self, z: &[T], ws: &Workspace<T>) -> Result<(), NnError> {
        self.check_workspace(ws)?;
        let (b, d) = (ws.n_batch, self.dim());
        check_len("z", z.len(), b * d, || format!("B × d = {b} × {d}"))
    }

    /// `f(z, t)` for a batch `z` (`B × d`) into `f` (`B × d`), carrying no tangents.
    /// A following [`Mlp::vjp_into`] may use the `f` and `kinetic` cotangents.
    pub fn forward_into(&self, t: T, z: &[T], ws: &mut Workspace<T>, f: &mut [T]) -> Result<(), NnError> {
        self.check_z(z, ws)?;
        let (b, d) = (ws.n_batch, self.dim());
        check_len("f", f.len(), b * d, || format!("B × d = {b} × {d}"))?;
        ws.x0[..b * d].copy_from_slice(z);
        self.forward_stack(t, 0, ws);
        f.copy_from_slice(&ws.a[self.shapes.len() - 1][..b * d]);
        ws.state = Some(ForwardState {
            t,
            n_tangents: 0,
            weight: T::one(),
        });
        Ok(())
    }

    /// `f(z_i, t_i)` for a batch `z` (`B × d`) with a time per sample (`t`, `B`) into
    /// `f`, carrying no tangents: one pass for points at different times (flow matching
    /// draws one per point). A following [`Mlp::vjp_into`] may use the `f` and `kinetic`
    /// cotangents; the `t` it returns is `Σ_i ∂S/∂t_i`.
    pub fn forward_times_into(&self, t: &[T], z: &[T], ws: &mut Workspace<T>, f: &mut [T]) -> Result<(), NnError> {
        self.check_z(z, ws)?;
        let (b, d) = (ws.n_batch, self.dim());
        check_len("t", t.len(), b, || format!("B = {b}"))?;
        check_len("f", f.len(), b * d, || format!("B × d = {b} × {d}"))?;
        ws.x0[..b * d].copy_from_slice(z);
        ws.times.clear();
        ws.times.extend_from_slice(t);
        self.forward_stack_times(ws);
        f.copy_from_slice(&ws.a[self.shapes.len() - 1][..b * d]);
        ws.state = Some(ForwardState {
            t: T::zero(),
            n_tangents: 0,
            weight: T::one(),
        });
        Ok(())
    }

    /// `f(z, t)` and the JVPs `J v_k` for `K` tangents `v` (`K × B × d`, like the
    /// probes of [`TraceMode::Hutchinson`]) into `f` (`B × d`) and `jv` (`K × B × d`).
    pub fn jvp_into(
        &self,
        t: T,
        z: &[T],
        v: &[T],
        ws: &mut Workspace<T>,
        f: &mut [T],
        jv: &mut [T],
    ) -> Result<(), NnError> {
        let n_tan = self.load_inputs(t, z, TraceMode::Hutchinson(v), ws)?;
        let (b, d) = (ws.n_batch, self.dim());
        check_len("f", f.len(), b * d, || format!("B × d = {b} × {d}"))?;
        check_len("jv", jv.len(), n_tan * b * d, || {
            format!("K × B × d = {n_tan} × {b} × {d}")
        })?;
        self.forward_stack(t, n_tan, ws);
        let out = &ws.a[self.shapes.len() - 1];
        f.copy_from_slice(&out[..b * d]);
        jv.copy_from_slice(&out[b * d..(n_tan + 1) * b * d]);
        Ok(())
    }

    /// Checks shapes, fills the input stack `[z; v_1; …; v_K]` and records the forward
    /// state; returns `K`.
    fn load_inputs(&self, t: T, z: &[T], mode: TraceMode<'_, T>, ws: &mut Workspace<T>) -> Result<usize, NnError> {
        self.check_z(z, ws)?;
        let (b, d) = (ws.n_batch, self.dim());
        let (n_tan, weight) = match mode {
            TraceMode::Exact => (d, T::one()),
            TraceMode::Hutchinson(p) => {
                if p.is_empty() {
                    return Err(NnError::NoTangents);
                }
                let n = p.len() / (b * d);
                check_len("probes", p.len(), n * b * d, || {
                    format!("K × B × d with B × d = {b} × {d}")
                })?;
                (n, T::one() / T::c(n as f64))
            }
        };
        if n_tan > ws.n_tangents {
            return Err(NnError::TooManyTangents {
                requested: n_tan,
                capacity: ws.n_tangents,
            });
        }
        ws.x0[..b * d].copy_from_slice(z);
        match mode {
            TraceMode::Exact => {
                let tang = &mut ws.x0[b * d..(d + 1) * b * d];
                tang.fill(T::zero());
                for (k, block) in tang.chunks_exact_mut(b * d).enumerate() {
                    for row in block.chunks_exact_mut(d) {
                        row[k] = T::one();
                    }
                }
            }
            TraceMode::Hutchinson(p) => ws.x0[b * d..(n_tan + 1) * b * d].copy_from_slice(p),
        }
        ws.state = Some(ForwardState {
            t,
            n_tangents: n_tan,
            weight,
        });
        Ok(n_tan)
    }

    /// One field evaluation for the CNF: `f`, the trace (exact or Hutchinson), and
    /// optionally the RNODE terms `‖f‖²` and `‖J ε‖²` (from the same tangents), for a
    /// batch `z` (`B × d`) at time `t`. Saves in `ws` what [`Mlp::vjp_into`] needs.
    pub fn eval_into(
        &self,
        t: T,
        z: &[T],
        mode: TraceMode<'_, T>,
        ws: &mut Workspace<T>,
        out: FieldOutputs<'_, T>,
    ) -> Result<(), NnError> {
        let (b, d) = (ws.n_batch, self.dim());
        check_len("f", out.f.len(), b * d, || format!("B × d = {b} × {d}"))?;
        check_len("trace", out.trace.len(), b, || format!("B = {b}"))?;
        if let Some(k) = &out.kinetic {
            check_len("kinetic", k.len(), b, || format!("B = {b}"))?;
        }
        if let Some(j) = &out.jacobian {
            check_len("jacobian", j.len(), b, || format!("B = {b}"))?;
        }
        let n_tan = self.load_inputs(t, z, mode, ws)?;
        self.forward_stack(t, n_tan, ws);
        self.collect_outputs(n_tan, ws, out);
        Ok(())
    }

    /// The reverse pass of the last forward pass on `ws`: writes `∂S/∂z` into `grad_z`
    /// (`B × d`), ADDS `∂S/∂θ` into `grad_params` (length [`Mlp::n_params`]) and
    /// returns `∂S/∂t`, where `S` is the cotangent-weighted sum documented on
    /// [`Cotangents`]. The params must be those of the forward pass.
    pub fn vjp_into(
        &self,
        ws: &mut Workspace<T>,
        cot: &Cotangents<'_, T>,
        grad_z: &mut [T],
        grad_params: &mut [T],
    ) -> Result<T, NnError> {
        self.check_workspace(ws)?;
        if ws.inference {
            return Err(NnError::InferenceOnly);
        }
        let state = ws.state.ok_or(NnError::NoForward)?;
        let (b, d, k) = (ws.n_batch, self.dim(), state.n_tangents);
        check_len("grad_z", grad_z.len(), b * d, || format!("B × d = {b} × {d}"))?;
        let n_p = self.n_params();
        check_len("grad_params", grad_params.len(), n_p, || {
            format!("n_params of {}", self.config.describe())
        })?;
        if let Some(a) = cot.f {
            check_len("cotangent f", a.len(), b * d, || format!("B × d = {b} × {d}"))?;
        }
        for (name, c) in [
            ("cotangent trace", cot.trace),
            ("cotangent kinetic", cot.kinetic),
            ("cotangent jacobian", cot.jacobian),
        ] {
            if let Some(a) = c {
                check_len(name, a.len(), b, || format!("B = {b}"))?;
            }
        }
        if k == 0 {
            for (name, c) in [("jv", cot.jv), ("trace", cot.trace), ("jacobian", cot.jacobian)] {
                if c.is_some() {
                    return Err(NnError::NeedsTangents { name });
                }
            }
        }
        if let Some(a) = cot.jv {
            check_len("cotangent jv", a.len(), k * b * d, || {
                format!("K × B × d = {k} × {b} × {d}")
            })?;
        }
        self.seed_cotangents(&state, cot, ws);
        if ws.per_point {
            return Ok(self.reverse_stack_times(ws, grad_z, grad_params));
        }
        Ok(self.reverse_stack(&state, ws, grad_z, grad_params))
    }

    /// `f(z, t)` for a batch `z` (`B × d`, `B = z.len() / d`), allocating everything.
    pub fn forward(&self, t: T, z: &[T]) -> Result<Vec<T>, NnError> {
        let d = self.dim();
        let b = z.len() / d;
        check_len("z", z.len(), b.max(1) * d, || format!("B × d with d = {d}"))?;
        let mut ws = self.workspace(b, 0)?;
        let mut f = vec![T::zero(); b * d];
        self.forward_into(t, z, &mut ws, &mut f)?;
        Ok(f)
    }

    /// [`Mlp::eval_into`] with allocated outputs (all four terms).
    pub fn eval(&self, t: T, z: &[T], mode: TraceMode<'_, T>, ws: &mut Workspace<T>) -> Result<FieldEval<T>, NnError> {
        let (b, d) = (ws.n_batch, self.dim());
        let mut e = FieldEval {
            f: vec![T::zero(); b * d],
            trace: vec![T::zero(); b],
            kinetic: vec![T::zero(); b],
            jacobian: vec![T::zero(); b],
        };
        self.eval_into(
            t,
            z,
            mode,
            ws,
            FieldOutputs {
                f: &mut e.f,
                trace: &mut e.trace,
                kinetic: Some(&mut e.kinetic),
                jacobian: Some(&mut e.jacobian),
            },
        )?;
        Ok(e)
    }

    /// [`Mlp::vjp_into`] with allocated, zero-initialised gradients.
    pub fn vjp(&self, ws: &mut Workspace<T>, cot: &Cotangents<'_, T>) -> Result<Gradients<T>, NnError> {
        let mut z = vec![T::zero(); ws.n_batch * self.dim()];
        let mut params = vec![T::zero(); self.n_params()];
        let t = self.vjp_into(ws, cot, &mut z, &mut params)?;
        Ok(Gradients { z, params, t })
    }
}
