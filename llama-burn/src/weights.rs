//! Weight files: HF-layout safetensors (import/export) and Burn checkpoints, through burn-store.
//!
//! HF names differ from this crate's module paths in three places (`model.` prefix, `self_attn`
//! vs `attn`, RMSNorm `weight` vs Burn's `gamma`), and PyTorch stores linear weights `[out, in]`
//! where Burn stores `[in, out]`; burn-store's PyTorch adapters transpose linear weights, the
//! key patterns below rename. Every load checks that the file holds exactly this model's tensors
//! with the right shapes and names what does not fit. Files are written atomically (`atomic-file`), so an
//! interrupted save never leaves a torn file.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn_store::{ApplyResult, BurnToPyTorchAdapter, BurnpackStore, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use regex::Regex;

use crate::config::LlamaConfig;
use crate::error::LlamaError;
use crate::model::Llama;

/// HF name → module path, applied in order.
const HF_TO_BURN: &[(&str, &str)] = &[(r"^model\.", ""), (r"\.self_attn\.", ".attn."), (r"norm\.weight$", "norm.gamma")];
/// Module path → HF name, applied in order.
const BURN_TO_HF: &[(&str, &str)] =
    &[(r"^(embed_tokens|layers|norm)\.", "model.$1."), (r"\.attn\.", ".self_attn."), (r"norm\.gamma$", "norm.weight")];
/// Buffers older transformers versions saved with the weights; they are recomputed, not loaded.
const IGNORED_HF_TENSORS: &str = "rotary_emb.inv_freq";

/// The HF name of a module path (e.g. `layers.0.attn.q_proj.weight` →
/// `model.layers.0.self_attn.q_proj.weight`).
pub fn hf_name(module_path: &str) -> String {
    BURN_TO_HF
        .iter()
        .fold(module_path.to_owned(), |name, (from, to)| Regex::new(from).expect("valid pattern").replace(&name, *to).into_owned())
}

impl<B: Backend> Llama<B> {
    /// Loads HF-layout weights (`model.safetensors` of an HF LLaMA) into this model.
    pub fn load_hf_safetensors(mut self, path: impl AsRef<Path>) -> Result<Self, LlamaError> {
        let path = path.as_ref();
        let mut store = HF_TO_BURN
            .iter()
            .fold(SafetensorsStore::from_file(path), |store, (from, to)| store.with_key_remapping(from, *to))
            .with_from_adapter(PyTorchToBurnAdapter)
            .validate(false)
            .allow_partial(true);
        let result = self.load_from(&mut store).map_err(|e| weight_file_error(path, e))?;
        check_complete(path, result, Some(hf_name))?;
        Ok(self)
    }

    /// Writes the weights as HF-layout safetensors (PyTorch `[out, in]` linear weights, HF names).
    pub fn save_hf_safetensors(&self, path: impl AsRef<Path>) -> Result<(), LlamaError> {
        write_atomically(path.as_ref(), |tmp| {
            let mut store = BURN_TO_HF
                .iter()
                .fold(SafetensorsStore::from_file(tmp), |store, (from, to)| store.with_key_remapping(from, *to))
                .with_to_adapter(BurnToPyTorchAdapter)
                .overwrite(true);
            self.save_into(&mut store).map_err(|e| e.to_string())
        })
    }

    /// Writes an HF model directory: `config.json` and `model.safetensors`, loadable with
    /// `LlamaForCausalLM.from_pretrained(dir)`.
    pub fn save_hf_dir(&self, config: &LlamaConfig, dir: impl AsRef<Path>) -> Result<(), LlamaError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| LlamaError::Io { path: dir.to_owned(), source })?;
        let json = serde_json::to_string_pretty(&config.to_hf_json()).expect("a JSON value serialises");
        write_atomically(&dir.join("config.json"), |tmp| std::fs::write(tmp, json).map_err(|e| e.to_string()))?;
        self.save_hf_safetensors(dir.join("model.safetensors"))
    }

    /// Saves a Burn checkpoint (burnpack format, Burn layout and module paths).
    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> Result<(), LlamaError> {
        write_atomically(path.as_ref(), |tmp| {
            let mut store = BurnpackStore::from_file(tmp).auto_extension(false).overwrite(true);
            self.save_into(&mut store).map_err(|e| e.to_string())
        })
    }

    /// Loads a Burn checkpoint written by [`Llama::save_checkpoint`]; a checkpoint of another
    /// model (other shapes or layers) is an error naming the tensors that do not fit.
    pub fn load_checkpoint(mut self, path: impl AsRef<Path>) -> Result<Self, LlamaError> {
        let path = path.as_ref();
        let mut store = BurnpackStore::from_file(path).auto_extension(false).validate(false).allow_partial(true);
        let result = self.load_from(&mut store).map_err(|e| weight_file_error(path, e))?;
        check_complete(path, result, None)?;
        Ok(self)
    }
}

impl LlamaConfig {
    /// Loads an HF model directory (`config.json` + `model.safetensors`).
    pub fn load_hf_dir<B: Backend>(dir: impl AsRef<Path>, device: &B::Device) -> Result<(Self, Llama<B>), LlamaError> {
        let dir = dir.as_ref();
        let config = Self::from_hf_json(dir.join("config.json"))?;
        let weights = dir.join("model.safetensors");
        if !weights.exists() && dir.join("model.safetensors.index.json").exists() {
            return Err(LlamaError::WeightFile {
                path: dir.to_owned(),
                message: "sharded safetensors checkpoints are not supported; merge the shards into one model.safetensors".into(),
            });
        }
        // The file replaces every weight (a missing one is an error), so the lazy draws never run.
        let model = config.init(0, device)?.load_hf_safetensors(weights)?;
        Ok((config, model))
    }
}

fn weight_file_error(path: &Path, error: impl std::fmt::Display) -> LlamaError {
    let message = if path.exists() { error.to_string() } else { "no such file".to_owned() };
    LlamaError::WeightFile { path: path.to_owned(), message }
}

/// Turns burn-store's report into an error when anything is missing, extra or mis-shaped.
/// `file_name` maps a module path to the name the file uses, for the message.
fn check_complete(path: &Path, result: ApplyResult, file_name: Option<fn(&str) -> String>) -> Result<(), LlamaError> {
    let named = |p: &str| match file_name {
        Some(f) => format!("{} (module path {p})", f(p)),
        None => p.to_owned(),
    };
    let mut problems: Vec<String> = result.errors.iter().map(|e| format!("  {e}")).collect();
    problems.extend(result.missing.iter().map(|(p, _)| format!("  missing from the file: {}", named(p))));
    problems.extend(
        result.unused.iter().filter(|p| !p.ends_with(IGNORED_HF_TENSORS)).map(|p| format!("  not part of this model: {}", named(p))),
    );
    if problems.is_empty() { Ok(()) } else { Err(LlamaError::WeightMismatch { path: path.to_owned(), problems: problems.join("\n") }) }
}

/// Runs `write` on a temporary path beside `path` and publishes it atomically (`atomic-file`).
fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<(), String>) -> Result<(), LlamaError> {
    atomic_file::write_with(path, write).map_err(|error| match error {
        atomic_file::AtomicWriteError::Write { path, source } => LlamaError::WeightFile { path, message: source },
        atomic_file::AtomicWriteError::Io { path, source } => LlamaError::Io { path, source },
    })
}
