//! Architecture of a field network and the layout of its flat parameter vector
//! (documented on [`MlpConfig`]).

use std::str::FromStr;

use crate::nn::{Activation, NnError};

/// How a layer takes the time `t` (see the table in the [module docs](crate::nn)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    /// `y = (W x + b) ⊙ σ(W_g t + b_g) + W_b t` (FFJORD's default).
    ConcatSquash,
    /// `y = W x + b + w_t t`: a linear layer over `[t, x]`.
    Concat,
    /// `y = W x + b`: the layer ignores `t`.
    Ignore,
}

impl LayerKind {
    /// All kinds, in a fixed order (for tests and help texts).
    pub const ALL: [LayerKind; 3] = [LayerKind::ConcatSquash, LayerKind::Concat, LayerKind::Ignore];

    /// Lower-case name, as parsed by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            LayerKind::ConcatSquash => "concatsquash",
            LayerKind::Concat => "concat",
            LayerKind::Ignore => "ignore",
        }
    }

    /// Number of time params per output unit (3, 1 or 0).
    pub fn n_time_params_per_unit(self) -> usize {
        match self {
            LayerKind::ConcatSquash => 3,
            LayerKind::Concat => 1,
            LayerKind::Ignore => 0,
        }
    }
}

impl std::fmt::Display for LayerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LayerKind {
    type Err = NnError;

    fn from_str(s: &str) -> Result<Self, NnError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "concatsquash" | "concat_squash" | "concat-squash" => Ok(LayerKind::ConcatSquash),
            "concat" => Ok(LayerKind::Concat),
            "ignore" => Ok(LayerKind::Ignore),
            _ => Err(NnError::UnknownLayer { name: s.to_string() }),
        }
    }
}

/// Shape and position of one layer inside the flat parameter vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerShape {
    /// Input width.
    pub n_in: usize,
    /// Output width.
    pub n_out: usize,
    /// Offset of `W` in `θ`; `b` follows at `offset + n_out·n_in`.
    pub offset: usize,
    /// How the layer takes `t`.
    pub kind: LayerKind,
}

impl LayerShape {
    /// Offset of the bias `b`.
    pub fn bias_offset(&self) -> usize {
        self.offset + self.n_out * self.n_in
    }

    /// Offset of the first time param (`W_g` or `w_t`).
    pub fn time_offset(&self) -> usize {
        self.bias_offset() + self.n_out
    }

    /// Number of params of this layer.
    pub fn n_params(&self) -> usize {
        self.n_out * (self.n_in + 1 + self.kind.n_time_params_per_unit())
    }
}

/// Architecture of a field network `d → hidden… → d`; validated by [`MlpConfig::new`].
///
/// # Parameter layout
///
/// Layers are stored one after another in the flat vector `θ`. Layer `l` maps
/// `n_in → n_out` and occupies, in this order (matrices row-major):
///
/// ```text
/// W    n_out × n_in     weight of x
/// b    n_out            bias
/// then, by kind:
///   ConcatSquash:  W_g (n_out), b_g (n_out), W_b (n_out)   gate σ(W_g t + b_g), shift W_b t
///   Concat:        w_t (n_out)                              the t column of Linear([t, x])
///   Ignore:        nothing
/// ```
///
/// [`MlpConfig::layer_shapes`] gives each layer's offset. The reference field
/// 2-64-64-64-2 ConcatSquash has 9 224 params.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MlpConfig {
    dim: usize,
    hidden: Vec<usize>,
    layer: LayerKind,
    activation: Activation,
}

/// The widest hidden layer [`MlpConfig::parse_hidden`] accepts (2^26).
pub const MAX_WIDTH: usize = 1 << 26;

impl MlpConfig {
    /// Validates and builds a config: `dim ≥ 1` and every hidden width `≥ 1`. An empty
    /// `hidden` gives a single layer `d → d` with no activation.
    pub fn new(dim: usize, hidden: &[usize], layer: LayerKind, activation: Activation) -> Result<Self, NnError> {
        if dim == 0 {
            return Err(NnError::ZeroDim);
        }
        if let Some(&w) = hidden.iter().chain([&dim]).find(|&&w| w > MAX_WIDTH) {
            return Err(NnError::BadHidden {
                spec: format!("{w} (a width or dimension above {MAX_WIDTH})"),
            });
        }
        if let Some(layer) = hidden.iter().position(|&w| w == 0) {
            return Err(NnError::ZeroWidth { layer });
        }
        Ok(MlpConfig {
            dim,
            hidden: hidden.to_vec(),
            layer,
            activation,
        })
    }

    /// Builds a config from text: hidden widths like `"64-64-64"` (empty for none),
    /// a layer kind and an activation name.
    pub fn parse(dim: usize, hidden: &str, layer: &str, activation: &str) -> Result<Self, NnError> {
        let hidden = Self::parse_hidden(hidden)?;
        Self::new(dim, &hidden, layer.parse()?, activation.parse()?)
    }

    /// Parses hidden widths `"64-64-64"` into `[64, 64, 64]`; `""` gives `[]`. Each
    /// width is at least 1 and at most [`MAX_WIDTH`].
    pub fn parse_hidden(spec: &str) -> Result<Vec<usize>, NnError> {
        let spec_t = spec.trim();
        if spec_t.is_empty() {
            return Ok(Vec::new());
        }
        spec_t
            .split('-')
            .map(|w| match w.trim().parse::<usize>() {
                // Widths beyond 2^26 are no network's (and would overflow counts).
                Ok(n) if n > 0 && n <= MAX_WIDTH => Ok(n),
                _ => Err(NnError::BadHidden { spec: spec.to_string() }),
            })
            .collect()
    }

    /// Data dimension `d`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Hidden widths.
    pub fn hidden(&self) -> &[usize] {
        &self.hidden
    }

    /// Layer kind (the same for every layer).
    pub fn layer(&self) -> LayerKind {
        self.layer
    }

    /// Activation between layers.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// All widths `d, h_1, …, h_L, d`.
    pub fn widths(&self) -> Vec<usize> {
        let mut w = Vec::with_capacity(self.hidden.len() + 2);
        w.push(self.dim);
        w.extend_from_slice(&self.hidden);
        w.push(self.dim);
        w
    }

    /// Number of layers (`hidden.len() + 1`).
    pub fn n_layers(&self) -> usize {
        self.hidden.len() + 1
    }

    /// Shapes and parameter offsets of all layers, in order.
    pub fn layer_shapes(&self) -> Vec<LayerShape> {
        let widths = self.widths();
        let mut offset = 0;
        widths
            .windows(2)
            .map(|w| {
                let shape = LayerShape {
                    n_in: w[0],
                    n_out: w[1],
                    offset,
                    kind: self.layer,
                };
                offset += shape.n_params();
                shape
            })
            .collect()
    }

    /// Length of the flat parameter vector.
    pub fn n_params(&self) -> usize {
        self.layer_shapes().iter().map(LayerShape::n_params).sum()
    }

    /// Short description, e.g. `2-64-64-2 concatsquash tanh`.
    pub fn describe(&self) -> String {
        let widths: Vec<String> = self.widths().iter().map(usize::to_string).collect();
        format!("{} {} {}", widths.join("-"), self.layer, self.activation)
    }
}
