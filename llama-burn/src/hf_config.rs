//! Reading an HF transformers / GaLore `config.json` into a [`LlamaConfig`].
//!
//! Unknown keys are ignored (HF writes dozens); keys that change the computation to something
//! this crate does not implement (biases, another activation or `model_type`, RoPE scaling, a head dimension other
//! than hidden / heads) are errors rather than silently different models.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::config::LlamaConfig;
use crate::error::LlamaError;

/// The keys of `config.json` this crate reads. Required ones have no `default`.
#[derive(Deserialize)]
struct HfLlamaConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    /// HF name; GaLore's configs call it `max_sequence_length`.
    max_position_embeddings: Option<usize>,
    max_sequence_length: Option<usize>,
    rms_norm_eps: Option<f64>,
    /// transformers 4.x; transformers 5 moved it into `rope_parameters`.
    rope_theta: Option<f64>,
    rope_parameters: Option<Value>,
    rope_scaling: Option<Value>,
    initializer_range: Option<f64>,
    /// GaLore's configs write `-1` for "no padding token".
    pad_token_id: Option<i64>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    tie_word_embeddings: Option<bool>,
    hidden_act: Option<String>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    model_type: Option<String>,
}

impl LlamaConfig {
    /// Reads an HF/GaLore LLaMA `config.json`.
    pub fn from_hf_json(path: impl AsRef<Path>) -> Result<Self, LlamaError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| LlamaError::Io { path: path.to_owned(), source })?;
        Self::from_hf_json_str(&text).map_err(|reason| LlamaError::ConfigFile { path: path.to_owned(), reason })
    }

    /// Parses the text of an HF/GaLore LLaMA `config.json`; the error says what is wrong with it.
    pub fn from_hf_json_str(text: &str) -> Result<Self, String> {
        let hf: HfLlamaConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let unsupported = |what: String| Err(format!("{what}: not supported by this LLaMA implementation"));
        if let Some(head_dim) = hf.head_dim
            && hf.num_attention_heads > 0
            && head_dim * hf.num_attention_heads != hf.hidden_size
        {
            return unsupported(format!("head_dim {head_dim} with {} heads != hidden_size {}", hf.num_attention_heads, hf.hidden_size));
        }
        if let Some(kind) = hf.model_type.as_deref()
            && kind != "llama"
        {
            return unsupported(format!("model_type {kind:?} (only \"llama\")"));
        }
        if let Some(act) = hf.hidden_act.as_deref()
            && act != "silu"
        {
            return unsupported(format!("hidden_act = {act:?} (only \"silu\")"));
        }
        if hf.attention_bias == Some(true) || hf.mlp_bias == Some(true) {
            return unsupported("attention_bias / mlp_bias = true".into());
        }
        if hf.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return unsupported("rope_scaling".into());
        }
        let mut rope_theta = hf.rope_theta;
        if let Some(params) = &hf.rope_parameters {
            if let Some(kind) = params.get("rope_type").and_then(Value::as_str)
                && kind != "default"
            {
                return unsupported(format!("rope_type {kind:?}"));
            }
            rope_theta = params.get("rope_theta").and_then(Value::as_f64).or(rope_theta);
        }

        let mut config =
            LlamaConfig::new(hf.vocab_size, hf.hidden_size, hf.intermediate_size, hf.num_attention_heads, hf.num_hidden_layers);
        if let Some(max) = hf.max_position_embeddings.or(hf.max_sequence_length) {
            config.max_position_embeddings = max;
        }
        config.rms_norm_eps = hf.rms_norm_eps.unwrap_or(config.rms_norm_eps);
        config.rope_theta = rope_theta.unwrap_or(config.rope_theta);
        config.initializer_range = hf.initializer_range.unwrap_or(config.initializer_range);
        config.pad_token_id = hf.pad_token_id.and_then(|id| usize::try_from(id).ok());
        // One key/value head per query head is plain multi-head attention: kept as "not given".
        config.num_key_value_heads = hf.num_key_value_heads.filter(|&kv| kv != hf.num_attention_heads);
        config.tie_word_embeddings = hf.tie_word_embeddings.unwrap_or(false);
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

impl LlamaConfig {
    /// The HF `config.json` of this model (transformers 4.x and 5 keys), so an exported directory
    /// loads with `LlamaForCausalLM.from_pretrained`.
    pub fn to_hf_json(&self) -> Value {
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.kv_heads(),
            "num_hidden_layers": self.num_hidden_layers,
            "head_dim": self.head_dim(),
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_parameters": {"rope_type": "default", "rope_theta": self.rope_theta},
            "initializer_range": self.initializer_range,
            "pad_token_id": self.pad_token_id,
            "hidden_act": "silu",
            "attention_bias": false,
            "mlp_bias": false,
            "tie_word_embeddings": self.tie_word_embeddings,
            "torch_dtype": "float32",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GaLore's `configs/llama_60m.json` as the GaLore repository ships it.
    const GALORE_60M: &str = r#"{
        "architectures": ["LLaMAForCausalLM"], "bos_token_id": 0, "eos_token_id": 1,
        "hidden_act": "silu", "hidden_size": 512, "intermediate_size": 1376,
        "initializer_range": 0.02, "max_sequence_length": 1024, "model_type": "llama",
        "num_attention_heads": 8, "num_hidden_layers": 8, "pad_token_id": -1,
        "rms_norm_eps": 1e-06, "transformers_version": "4.28.1", "use_cache": true,
        "vocab_size": 32000
    }"#;

    #[test]
    fn galore_config_equals_the_preset() {
        let config = LlamaConfig::from_hf_json_str(GALORE_60M).unwrap();
        assert_eq!(config, LlamaConfig::preset("60m").unwrap());
    }

    #[test]
    fn hf_json_round_trips() {
        let config = LlamaConfig::preset("100m").unwrap().with_pad_token_id(Some(0)).with_rope_theta(5e5);
        let text = config.to_hf_json().to_string();
        assert_eq!(LlamaConfig::from_hf_json_str(&text).unwrap(), config);
        let llama3 = config.with_num_key_value_heads(Some(2)).with_tie_word_embeddings(true);
        assert_eq!(LlamaConfig::from_hf_json_str(&llama3.to_hf_json().to_string()).unwrap(), llama3);
    }

    #[test]
    fn transformers_5_rope_parameters_are_read() {
        let text = GALORE_60M.replace("\"use_cache\": true", "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 500000.0}");
        assert_eq!(LlamaConfig::from_hf_json_str(&text).unwrap().rope_theta, 500000.0);
    }

    #[test]
    fn llama_family_keys_are_read() {
        let text = GALORE_60M.replace("\"use_cache\": true", "\"num_key_value_heads\": 2, \"tie_word_embeddings\": true");
        let config = LlamaConfig::from_hf_json_str(&text).unwrap();
        assert_eq!((config.num_key_value_heads, config.kv_heads(), config.tie_word_embeddings), (Some(2), 2, true));
        let mha = GALORE_60M.replace("\"use_cache\": true", "\"num_key_value_heads\": 8, \"tie_word_embeddings\": false");
        assert_eq!(LlamaConfig::from_hf_json_str(&mha).unwrap(), LlamaConfig::preset("60m").unwrap());
    }

    #[test]
    fn missing_or_unsupported_keys_are_errors() {
        let missing = GALORE_60M.replace("\"hidden_size\": 512,", "");
        assert!(LlamaConfig::from_hf_json_str(&missing).unwrap_err().contains("hidden_size"));
        let gqa = GALORE_60M.replace("\"use_cache\": true", "\"num_key_value_heads\": 3");
        assert!(LlamaConfig::from_hf_json_str(&gqa).unwrap_err().contains("num_key_value_heads"));
        let scaled = GALORE_60M.replace("\"use_cache\": true", "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}");
        assert!(LlamaConfig::from_hf_json_str(&scaled).unwrap_err().contains("rope_scaling"));
        let mistral = GALORE_60M.replace("\"model_type\": \"llama\"", "\"model_type\": \"mistral\"");
        assert!(LlamaConfig::from_hf_json_str(&mistral).unwrap_err().contains("model_type \"mistral\""));
        let biased = GALORE_60M.replace("\"use_cache\": true", "\"attention_bias\": true");
        assert!(LlamaConfig::from_hf_json_str(&biased).unwrap_err().contains("attention_bias"));
        let odd = GALORE_60M.replace("\"num_attention_heads\": 8", "\"num_attention_heads\": 7");
        assert!(LlamaConfig::from_hf_json_str(&odd).unwrap_err().contains("divisible"));
    }
}
