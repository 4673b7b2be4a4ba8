//! Weight files: HF-layout safetensors (import/export; one file or the shards of
//! `model.safetensors.index.json`; f16/bf16 files converted to the model's float type on load)
//! and Burn checkpoints, through burn-store.
//!
//! HF names differ from this crate's module paths in three places (`model.` prefix, `self_attn`
//! vs `attn`, RMSNorm `weight` vs Burn's `gamma`), and PyTorch stores linear weights `[out, in]`
//! where Burn stores `[in, out]`; burn-store's PyTorch adapters transpose linear weights, the
//! key patterns below rename. Every load checks that the file holds exactly this model's tensors
//! with the right shapes and names what does not fit. Files are written atomically (`atomic-file`), so an
//! interrupted save never leaves a torn file.

use std::path::{Path, PathBuf};

use std::rc::Rc;

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, get_device_settings};
use burn_store::{
    ApplyResult, BurnToPyTorchAdapter, BurnpackStore, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore, TensorSnapshot,
};
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
/// A tied model's output projection is its embedding; some checkpoints still carry a copy,
/// which HF ignores when it loads a tied model, and so does this loader.
const TIED_COPY: &str = "lm_head.weight";
/// The index of a sharded HF checkpoint.
const SHARD_INDEX: &str = "model.safetensors.index.json";

/// The HF name of a module path (e.g. `layers.0.attn.q_proj.weight` →
/// `model.layers.0.self_attn.q_proj.weight`).
pub fn hf_name(module_path: &str) -> String {
    BURN_TO_HF
        .iter()
        .fold(module_path.to_owned(), |name, (from, to)| Regex::new(from).expect("valid pattern").replace(&name, *to).into_owned())
}

impl<B: Backend> Llama<B> {
    /// Loads HF-layout weights (`model.safetensors` of an HF LLaMA) into this model.
    pub fn load_hf_safetensors(self, path: impl AsRef<Path>) -> Result<Self, LlamaError> {
        self.load_hf_files(path.as_ref(), &[path.as_ref().to_owned()])
    }

    /// Loads HF-layout weights spread over `files` (the shards of a checkpoint, or one file),
    /// converted to the model's float type; together they must hold exactly this model's
    /// tensors. `source` names the checkpoint in errors.
    fn load_hf_files(mut self, source: &Path, files: &[PathBuf]) -> Result<Self, LlamaError> {
        // A half-precision file gives half-precision tensors; the model computes in the float
        // type of its device.
        let dtype: DType = get_device_settings::<B>(&self.devices()[0]).float_dtype.into();
        let mut combined: Option<ApplyResult> = None;
        for file in files {
            let mut store = HF_TO_BURN
                .iter()
                .fold(SafetensorsStore::from_file(file), |store, (from, to)| store.with_key_remapping(from, *to))
                .with_from_adapter(PyTorchToBurnAdapter.chain(ToFloatType { dtype }))
                .validate(false)
                .allow_partial(true);
            let result = self.load_from(&mut store).map_err(|e| weight_file_error(file, e))?;
            combined = Some(match combined {
                None => result,
                Some(earlier) => merge(earlier, result),
            });
        }
        let mut result = combined.expect("at least one weight file");
        if self.lm_head.is_none() {
            result.unused.retain(|p| p != TIED_COPY);
        }
        check_complete(source, result, Some(hf_name))?;
        Ok(self)
    }

    /// Writes the weights as HF-layout safetensors (PyTorch `[out, in]` linear weights, HF names).
    pub fn save_hf_safetensors(&self, path: impl AsRef<Path>) -> Result<(), LlamaError> {
        // An HF checkpoint has no adapters: they are merged into the weights they adapt.
        let merged;
        let model = if self.has_lora() {
            merged = self.clone().merge_lora();
            &merged
        } else {
            self
        };
        write_atomically(path.as_ref(), |tmp| {
            let mut store = BURN_TO_HF
                .iter()
                .fold(SafetensorsStore::from_file(tmp), |store, (from, to)| store.with_key_remapping(from, *to))
                .with_to_adapter(BurnToPyTorchAdapter)
                .overwrite(true);
            model.save_into(&mut store).map_err(|e| e.to_string())
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
    /// Loads an HF model directory: `config.json` and `model.safetensors`, or the shards that
    /// `model.safetensors.index.json` lists.
    pub fn load_hf_dir<B: Backend>(dir: impl AsRef<Path>, device: &B::Device) -> Result<(Self, Llama<B>), LlamaError> {
        let dir = dir.as_ref();
        let config = Self::from_hf_json(dir.join("config.json"))?;
        let model = config.load_hf_weights(dir, device)?;
        Ok((config, model))
    }

    /// This model with the weights of the HF model directory `dir` (`model.safetensors`, or the
    /// shards that `model.safetensors.index.json` lists), for a config already read from it.
    pub fn load_hf_weights<B: Backend>(&self, dir: impl AsRef<Path>, device: &B::Device) -> Result<Llama<B>, LlamaError> {
        let dir = dir.as_ref();
        let single = dir.join("model.safetensors");
        let (source, files) = if single.exists() || !dir.join(SHARD_INDEX).exists() {
            (single.clone(), vec![single])
        } else {
            let index = dir.join(SHARD_INDEX);
            let files = shard_files(&index)?;
            (index, files.into_iter().map(|f| dir.join(f)).collect())
        };
        // The files replace every weight (a missing one is an error), so the lazy draws never run.
        self.init(0, device)?.load_hf_files(&source, &files)
    }
}

/// The shard files of an HF index (`weight_map`: tensor name → file), each once, in order.
fn shard_files(index: &Path) -> Result<Vec<String>, LlamaError> {
    let invalid = |message: String| LlamaError::WeightFile { path: index.to_owned(), message };
    let text = std::fs::read_to_string(index).map_err(|source| LlamaError::Io { path: index.to_owned(), source })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let map = json.get("weight_map").and_then(serde_json::Value::as_object).ok_or_else(|| invalid("no `weight_map` object".into()))?;
    let mut files: Vec<String> = Vec::new();
    for (name, file) in map {
        let file = file.as_str().ok_or_else(|| invalid(format!("`weight_map.{name}` is not a file name")))?;
        if file.contains('/') || file.contains('\\') || file == ".." {
            return Err(invalid(format!("`weight_map.{name}`: shard {file:?} is not a file of this directory")));
        }
        if !files.iter().any(|f| f == file) {
            files.push(file.to_owned());
        }
    }
    if files.is_empty() {
        return Err(invalid("`weight_map` lists no shard".into()));
    }
    files.sort();
    Ok(files)
}

/// The report of several partial loads into one model: applied anywhere, missing everywhere.
fn merge(mut earlier: ApplyResult, later: ApplyResult) -> ApplyResult {
    earlier.applied.extend(later.applied);
    earlier.missing.retain(|(path, _)| later.missing.iter().any(|(p, _)| p == path));
    earlier.unused.extend(later.unused);
    earlier.errors.extend(later.errors);
    earlier
}

/// Converts the float tensors of a file to the model's float type before they become tensors
/// (f16/bf16 checkpoints into an f32 model, or f32 into a bf16 one).
#[derive(Clone)]
struct ToFloatType {
    dtype: DType,
}

impl ModuleAdapter for ToFloatType {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        if !snapshot.dtype.is_float() || snapshot.dtype == self.dtype {
            return snapshot.clone();
        }
        let (data, dtype) = (snapshot.clone_data_fn(), self.dtype);
        TensorSnapshot::from_closure(
            Rc::new(move || data().map(|d| d.convert_dtype(dtype))),
            dtype,
            snapshot.shape.clone(),
            snapshot.path_stack.clone().unwrap_or_default(),
            snapshot.container_stack.clone().unwrap_or_default(),
            snapshot.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
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
pub(crate) fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<(), String>) -> Result<(), LlamaError> {
    atomic_file::write_with(path, write).map_err(|error| match error {
        atomic_file::AtomicWriteError::Write { path, source } => LlamaError::WeightFile { path, message: source },
        atomic_file::AtomicWriteError::Io { path, source } => LlamaError::Io { path, source },
    })
}
