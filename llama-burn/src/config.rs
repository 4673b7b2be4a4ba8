//! [`LlamaConfig`]: the architecture hyper-parameters, the GaLore/Fira presets and validation.

use burn::config::Config;

use crate::error::LlamaError;

/// Configuration of HF's `LlamaForCausalLM`: the LLaMA of the GaLore and Fira experiments (untied
/// `lm_head`, multi-head attention) and today's LLaMA-family checkpoints (grouped-query attention,
/// tied embeddings, other RoPE bases); no biases, SwiGLU, rotate-half RoPE.
///
/// Field names follow HF's `config.json`, so a user reads them the way they know them. Build one
/// from a preset ([`LlamaConfig::preset`]), from an HF/GaLore `config.json`
/// ([`LlamaConfig::from_hf_json`](crate::LlamaConfig::from_hf_json)), or field by field.
#[derive(Config, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Size of the token vocabulary (rows of the embedding and of `lm_head`).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Attention heads; `hidden_size / num_attention_heads` is the head dimension.
    pub num_attention_heads: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Longest sequence the model accepts (GaLore's `max_sequence_length`, 1024 in every preset).
    #[config(default = 1024)]
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon; HF LLaMA and the GaLore configs use 1e-6 (Burn's default is 1e-5).
    #[config(default = 1e-6)]
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    #[config(default = 10000.0)]
    pub rope_theta: f64,
    /// Standard deviation of the normal initialisation of linear and embedding weights.
    #[config(default = 0.02)]
    pub initializer_range: f64,
    /// Target token id excluded from the loss (HF's label `-100` masking); `None` counts every target.
    #[config(default = "None")]
    pub pad_token_id: Option<usize>,
    /// Key/value heads of grouped-query attention, each serving a contiguous group of
    /// `num_attention_heads / num_key_value_heads` query heads (1: multi-query attention);
    /// `None`: one per query head (multi-head attention, every preset).
    #[config(default = "None")]
    pub num_key_value_heads: Option<usize>,
    /// The output projection is the transposed embedding matrix, one parameter (HF's
    /// `tie_word_embeddings`); its gradient sums both uses.
    #[config(default = false)]
    pub tie_word_embeddings: bool,
}

/// The presets of the GaLore/Fira `configs/llama_*.json` files:
/// (name, hidden, intermediate, heads, layers, vocab).
pub const PRESETS: &[(&str, usize, usize, usize, usize, usize)] = &[
    ("9m", 128, 352, 4, 4, 32000),
    ("20m", 256, 688, 4, 4, 32000),
    ("35m", 384, 1024, 8, 6, 32000),
    ("40m", 416, 1024, 8, 8, 32000),
    ("60m", 512, 1376, 8, 8, 32000),
    ("71m", 512, 1368, 8, 12, 32000),
    ("100m", 640, 1708, 10, 12, 32100),
    ("130m", 768, 2048, 12, 12, 32000),
    ("250m", 768, 2560, 16, 24, 32000),
    ("350m", 1024, 2736, 16, 24, 32000),
    ("1b", 2048, 5461, 32, 24, 32000),
    ("3b", 2560, 6848, 32, 32, 32000),
    ("7b", 4096, 11008, 32, 32, 32000),
];

/// What a model argument names: a preset (by name, case-insensitive; a name wins over a file of
/// that name) or an HF/GaLore `config.json`. Anything that is neither a preset, nor an existing
/// path, nor a `.json` name is taken for a misspelt preset, so its error lists the presets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSpec {
    Preset(String),
    File(std::path::PathBuf),
}

impl ModelSpec {
    pub fn parse(spec: &str) -> Self {
        let is_preset = PRESETS.iter().any(|p| p.0.eq_ignore_ascii_case(spec));
        if is_preset || !(spec.ends_with(".json") || std::path::Path::new(spec).exists()) {
            Self::Preset(spec.to_owned())
        } else {
            Self::File(spec.into())
        }
    }

    /// The configuration it names (a preset with its own vocabulary).
    pub fn config(&self) -> Result<LlamaConfig, LlamaError> {
        match self {
            Self::Preset(name) => LlamaConfig::preset(name),
            Self::File(path) => LlamaConfig::from_hf_json(path),
        }
    }
}

/// Parameter counts of a configuration, split the way the optimizer routes them: attention and
/// MLP matrices get Fira, the rest the AdamW path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ParameterCount {
    /// Token embedding `[V, H]`.
    pub embedding: u64,
    /// Output projection `[H, V]` (untied).
    pub lm_head: u64,
    /// q/k/v/o projections of every layer.
    pub attention: u64,
    /// gate/up/down projections of every layer.
    pub mlp: u64,
    /// RMSNorm weights: two per layer and the final one.
    pub norms: u64,
}

impl ParameterCount {
    /// Every parameter.
    pub fn total(&self) -> u64 {
        self.embedding + self.lm_head + self.attention + self.mlp + self.norms
    }
}

impl LlamaConfig {
    /// The preset `name` (case-insensitive, e.g. `60m`, `1B`).
    pub fn preset(name: &str) -> Result<Self, LlamaError> {
        let key = name.to_ascii_lowercase();
        PRESETS
            .iter()
            .find(|p| p.0 == key)
            .map(|&(_, hidden, intermediate, heads, layers, vocab)| Self::new(vocab, hidden, intermediate, heads, layers))
            .ok_or_else(|| LlamaError::UnknownPreset {
                name: name.to_owned(),
                known: PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", "),
            })
    }

    /// A preset name or the path of an HF/GaLore `config.json`: what `--model` accepts
    /// ([`ModelSpec`]).
    pub fn from_preset_or_file(spec: &str) -> Result<Self, LlamaError> {
        ModelSpec::parse(spec).config()
    }

    /// Dimension of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Key/value heads: [`LlamaConfig::num_key_value_heads`], or one per query head.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Checks that the configuration describes a model that can be built.
    pub fn validate(&self) -> Result<(), LlamaError> {
        let invalid = |field: &'static str, reason: String| Err(LlamaError::InvalidConfig { field, reason });
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_attention_heads", self.num_attention_heads),
            ("num_hidden_layers", self.num_hidden_layers),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if value == 0 {
                return invalid(field, "must be at least 1".into());
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return invalid(
                "num_attention_heads",
                format!("hidden_size {} is not divisible by num_attention_heads {}", self.hidden_size, self.num_attention_heads),
            );
        }
        if let Some(kv) = self.num_key_value_heads
            && (kv == 0 || !self.num_attention_heads.is_multiple_of(kv))
        {
            return invalid(
                "num_key_value_heads",
                format!("{kv} key/value heads do not divide the {} query heads into equal groups", self.num_attention_heads),
            );
        }
        if !self.head_dim().is_multiple_of(2) {
            return invalid("num_attention_heads", format!("head dimension {} must be even for rotary embeddings", self.head_dim()));
        }
        if !(self.rms_norm_eps > 0.0 && self.rms_norm_eps.is_finite()) {
            return invalid("rms_norm_eps", format!("{} is not a positive number", self.rms_norm_eps));
        }
        if !(self.rope_theta > 0.0 && self.rope_theta.is_finite()) {
            return invalid("rope_theta", format!("{} is not a positive number", self.rope_theta));
        }
        if !(self.initializer_range >= 0.0 && self.initializer_range.is_finite()) {
            return invalid("initializer_range", format!("{} is not a non-negative number", self.initializer_range));
        }
        if let Some(pad) = self.pad_token_id
            && pad >= self.vocab_size
        {
            return invalid("pad_token_id", format!("{pad} is outside the vocabulary of {}", self.vocab_size));
        }
        Ok(())
    }

    /// Exact parameter counts, computed without allocating the model.
    pub fn parameter_count(&self) -> ParameterCount {
        let (v, h, i, l) = (self.vocab_size as u64, self.hidden_size as u64, self.intermediate_size as u64, self.num_hidden_layers as u64);
        let kv = (self.kv_heads() * self.head_dim()) as u64;
        ParameterCount {
            embedding: v * h,
            lm_head: if self.tie_word_embeddings { 0 } else { h * v },
            attention: l * (2 * h * h + 2 * h * kv),
            mlp: l * 3 * h * i,
            norms: (2 * l + 1) * h,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counts of the GaLore/Fira papers' model sizes (issue #3), computed by hand from the
    /// architecture: 2VH + L(4H² + 3HI + 2H) + H.
    #[test]
    fn preset_parameter_counts_match_the_papers_models() {
        for (name, expected) in
            [("60m", 58_073_600u64), ("130m", 134_105_856), ("350m", 367_969_280), ("1b", 1_339_082_752), ("7b", 6_738_415_616)]
        {
            let config = LlamaConfig::preset(name).unwrap();
            config.validate().unwrap();
            assert_eq!(config.parameter_count().total(), expected, "preset {name}");
        }
    }

    /// Llama 3.2 1B (16 layers, H 2048, I 8192, 32 heads over 8 key/value heads, vocabulary
    /// 128256, tied): 1,235,814,400 parameters, as its model card counts them.
    #[test]
    fn grouped_query_attention_and_tied_embeddings_count_their_parameters() {
        let config = LlamaConfig::new(128_256, 2048, 8192, 32, 16).with_num_key_value_heads(Some(8)).with_tie_word_embeddings(true);
        config.validate().unwrap();
        let count = config.parameter_count();
        assert_eq!((count.lm_head, count.total()), (0, 1_235_814_400));
    }

    #[test]
    fn every_preset_is_valid() {
        for preset in PRESETS {
            LlamaConfig::preset(preset.0).unwrap().validate().unwrap();
        }
        assert_eq!(LlamaConfig::preset("100M").unwrap().vocab_size, 32100);
    }

    #[test]
    fn invalid_configs_name_the_field() {
        let base = LlamaConfig::new(100, 64, 128, 4, 2);
        let cases = [
            (LlamaConfig { num_attention_heads: 5, ..base.clone() }, "num_attention_heads"),
            (LlamaConfig { num_attention_heads: 64, ..base.clone() }, "num_attention_heads"), // head_dim 1
            (LlamaConfig { num_hidden_layers: 0, ..base.clone() }, "num_hidden_layers"),
            (LlamaConfig { vocab_size: 0, ..base.clone() }, "vocab_size"),
            (base.clone().with_rms_norm_eps(0.0), "rms_norm_eps"),
            (base.clone().with_pad_token_id(Some(100)), "pad_token_id"),
            (base.clone().with_num_key_value_heads(Some(3)), "num_key_value_heads"),
            (base.clone().with_num_key_value_heads(Some(0)), "num_key_value_heads"),
        ];
        for (config, expected) in cases {
            match config.validate() {
                Err(LlamaError::InvalidConfig { field, .. }) => assert_eq!(field, expected),
                other => panic!("{config:?}: expected an invalid {expected}, got {other:?}"),
            }
        }
        assert!(matches!(LlamaConfig::preset("61m"), Err(LlamaError::UnknownPreset { .. })));
    }
}
