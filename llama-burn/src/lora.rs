//! LoRA (Hu et al. 2021, [arXiv 2106.09685](https://arxiv.org/abs/2106.09685)), the paper's
//! fine-tuning setup: next to a frozen projection `W`, a trainable low-rank update
//! `h = x W + dropout(x) A B · α/r` (their Eq. 3, in Burn's `x W` layout), with `A` `[in, r]`
//! drawn at random and `B` `[r, out]` zero, so that training starts from the base model.
//! [`Llama::with_lora`] freezes the model and adds the adapters, [`Llama::merge_lora`] folds them
//! into the weights (`W + A B · α/r`), and [`Llama::save_lora_adapter`] writes them alone in
//! PEFT's layout (`adapter_config.json`, `adapter_model.safetensors`).

use std::path::Path;

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};

use crate::config::LlamaConfig;
use crate::error::LlamaError;
use crate::init::host_normal;
use crate::model::Llama;
use crate::weights::write_atomically;

/// The projections of a layer an adapter can sit beside, by their HF names.
pub const LORA_TARGETS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// Module path of an adapter's matrices → PEFT's tensor names, applied in order.
const BURN_TO_PEFT: &[(&str, &str)] = &[
    (r"^layers\.(\d+)\.attn\.(\w+)_lora\.lora_a\.weight$", "base_model.model.model.layers.$1.self_attn.$2.lora_A.weight"),
    (r"^layers\.(\d+)\.attn\.(\w+)_lora\.lora_b\.weight$", "base_model.model.model.layers.$1.self_attn.$2.lora_B.weight"),
    (r"^layers\.(\d+)\.mlp\.(\w+)_lora\.lora_a\.weight$", "base_model.model.model.layers.$1.mlp.$2.lora_A.weight"),
    (r"^layers\.(\d+)\.mlp\.(\w+)_lora\.lora_b\.weight$", "base_model.model.model.layers.$1.mlp.$2.lora_B.weight"),
];

/// The adapters of a fine-tune.
#[derive(Config, Debug, PartialEq)]
pub struct LoraConfig {
    /// Rank `r` of each update.
    pub rank: usize,
    /// `α`: the update is scaled by `α / r`.
    pub alpha: f64,
    /// Dropout on the adapters' input during training (PEFT's `lora_dropout`).
    pub dropout: f64,
    /// The projections adapted in every layer, among [`LORA_TARGETS`].
    pub targets: Vec<String>,
}

impl LoraConfig {
    /// Checks the numbers and that every target is a projection of the model.
    pub fn validate(&self) -> Result<(), LlamaError> {
        let invalid = |field, reason: String| Err(LlamaError::InvalidConfig { field, reason });
        if self.rank == 0 {
            return invalid("lora rank", "must be at least 1".to_owned());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return invalid("lora alpha", format!("must be a positive number, got {}", self.alpha));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return invalid("lora dropout", format!("must be in [0, 1), got {}", self.dropout));
        }
        if self.targets.is_empty() {
            return invalid("lora targets", "name at least one projection".to_owned());
        }
        if let Some(unknown) = self.targets.iter().find(|t| !LORA_TARGETS.contains(&t.as_str())) {
            return invalid("lora targets", format!("`{unknown}` matches no projection (they are {})", LORA_TARGETS.join(", ")));
        }
        Ok(())
    }

    /// `α / r`.
    pub fn scaling(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// The parameters the adapters of `model` hold, `r · (in + out)` per adapted projection: what
    /// trains.
    pub fn adapter_parameters(&self, model: &LlamaConfig) -> usize {
        let (h, kv, i) = (model.hidden_size, model.kv_heads() * model.head_dim(), model.intermediate_size);
        let per_layer: usize = self
            .targets
            .iter()
            .map(|target| match target.as_str() {
                "q_proj" | "o_proj" => h + h,
                "k_proj" | "v_proj" => h + kv,
                "gate_proj" | "up_proj" | "down_proj" => h + i,
                _ => 0,
            })
            .sum();
        model.num_hidden_layers * self.rank * per_layer
    }
}

/// The trainable low-rank update beside one projection.
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// `A` `[in, r]`.
    pub lora_a: Linear<B>,
    /// `B` `[r, out]`.
    pub lora_b: Linear<B>,
    pub dropout: Dropout,
    /// `α / r`.
    pub scaling: f64,
}

impl<B: Backend> LoraAdapter<B> {
    /// `A` from `N(0, 1/(3·in))`, the variance of PEFT's `kaiming_uniform_(a=√5)`, drawn on the
    /// host from (`seed`, `path`) as the model's weights are; `B` zero.
    fn new(d_in: usize, d_out: usize, config: &LoraConfig, seed: u64, path: &str, device: &B::Device) -> Self {
        let r = config.rank;
        let std = (1.0 / (3.0 * d_in as f64)).sqrt();
        let a = host_normal(seed, &format!("{path}.lora_a.weight"), d_in * r, std);
        let mut lora_a = LinearConfig::new(d_in, r).with_bias(false).init(device);
        lora_a.weight = Param::from_tensor(Tensor::from_data(TensorData::new(a, [d_in, r]), device));
        let lora_b = LinearConfig::new(r, d_out).with_bias(false).with_initializer(burn::nn::Initializer::Zeros).init(device);
        Self { lora_a, lora_b, dropout: DropoutConfig::new(config.dropout).init(), scaling: config.scaling() }
    }

    /// The update of `x` (`[…, in]` → `[…, out]`); dropout only under autodiff.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        self.lora_b.forward(self.lora_a.forward(self.dropout.forward(x))) * self.scaling
    }

    /// `A B · α/r` `[in, out]`: what merging adds to the projection's weight.
    pub fn delta(&self) -> Tensor<B, 2> {
        self.lora_a.weight.val().matmul(self.lora_b.weight.val()) * self.scaling
    }
}

/// `x W`, plus the update of the adapter when there is one.
pub(crate) fn adapted<B: Backend, const D: usize>(linear: &Linear<B>, lora: &Option<LoraAdapter<B>>, x: Tensor<B, D>) -> Tensor<B, D> {
    match lora {
        Some(adapter) => linear.forward(x.clone()) + adapter.forward(x),
        None => linear.forward(x),
    }
}

/// One adaptable projection of a layer: its name, its weight and the adapter slot beside it.
pub(crate) type Slot<'a, B> = (&'static str, &'a mut Linear<B>, &'a mut Option<LoraAdapter<B>>);

impl<B: Backend> Llama<B> {
    /// This model frozen (no parameter requires a gradient any more) with a fresh adapter beside
    /// every targeted projection of every layer, seeded by `seed`: only the adapters train.
    pub fn with_lora(self, config: &LoraConfig, seed: u64) -> Result<Self, LlamaError> {
        config.validate()?;
        let mut model = self.no_grad();
        let device = model.devices()[0].clone();
        for (i, layer) in model.layers.iter_mut().enumerate() {
            for (module, (name, linear, slot)) in layer.projection_slots() {
                if !config.targets.iter().any(|t| t == name) {
                    continue;
                }
                let [d_in, d_out] = linear.weight.lazy_shape().dims();
                if config.rank > d_in.min(d_out) {
                    return Err(LlamaError::InvalidConfig {
                        field: "lora rank",
                        reason: format!("{} is larger than {name}'s smaller side {}", config.rank, d_in.min(d_out)),
                    });
                }
                *slot = Some(LoraAdapter::new(d_in, d_out, config, seed, &format!("layers.{i}.{module}.{name}_lora"), &device));
            }
        }
        Ok(model)
    }

    /// Whether any projection has an adapter.
    pub fn has_lora(&self) -> bool {
        self.layers.iter().any(|layer| layer.adapters().iter().any(|adapter| adapter.is_some()))
    }

    /// The model with every adapter folded into its projection (`W + A B · α/r`) and removed:
    /// the same function (without dropout), as plain weights.
    pub fn merge_lora(mut self) -> Self {
        for layer in &mut self.layers {
            for (_, (_, linear, slot)) in layer.projection_slots() {
                if let Some(adapter) = slot.take() {
                    let weight = linear.weight.val() + adapter.delta();
                    linear.weight = Param::initialized(linear.weight.id, weight.detach());
                }
            }
        }
        self
    }

    /// Writes the adapters alone as PEFT does (`adapter_config.json`, `adapter_model.safetensors`
    /// with `lora_A` `[r, in]` and `lora_B` `[out, r]` per projection), loadable with
    /// `PeftModel.from_pretrained(base, dir)` over the base model named `base_model`.
    pub fn save_lora_adapter(&self, config: &LoraConfig, base_model: &str, dir: impl AsRef<Path>) -> Result<(), LlamaError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| LlamaError::Io { path: dir.to_owned(), source })?;
        let peft = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": config.rank,
            "lora_alpha": config.alpha,
            "lora_dropout": config.dropout,
            "target_modules": config.targets,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
        });
        let json = serde_json::to_string_pretty(&peft).expect("a JSON value serialises");
        write_atomically(&dir.join("adapter_config.json"), |tmp| std::fs::write(tmp, json).map_err(|e| e.to_string()))?;
        write_atomically(&dir.join("adapter_model.safetensors"), |tmp| {
            let mut store = BURN_TO_PEFT
                .iter()
                .fold(SafetensorsStore::from_file(tmp).with_regex(r"_lora\.lora_[ab]\.weight$"), |store, (from, to)| {
                    store.with_key_remapping(from, *to)
                })
                .with_to_adapter(BurnToPyTorchAdapter)
                .overwrite(true);
            self.save_into(&mut store).map_err(|e| e.to_string())
        })
    }
}
