//! A trained model to sample or to start from: a run directory of `fira train` (its latest
//! complete checkpoint) or an HF model directory (`config.json`, `model.safetensors` or the shards
//! of `model.safetensors.index.json`, `tokenizer.json`), such as a run's `model/` export or a
//! checkpoint downloaded from the Hugging Face Hub.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::tensor::backend::Backend;
use llama_burn::{Llama, LlamaConfig};

use crate::data::tokenizer::TextTokenizer;
use crate::learn::checkpoints::{latest_checkpoint, load_model};
use crate::options::{BackendChoice, DType, TrainOptions};
use crate::prepare::run_shape;
use crate::run_dir::RunFiles;

/// The files of an HF model directory that hold its weights, either of which will do.
const HF_WEIGHTS: [&str; 2] = ["model.safetensors", "model.safetensors.index.json"];

/// Where the weights of a [`Pretrained`] model are.
enum Weights {
    /// Checkpoint `segment` of a run, taken after `step` optimizer steps.
    Checkpoint {
        run: RunFiles,
        segment: usize,
        step: usize,
    },
    HfDir(PathBuf),
}

/// A model, its configuration and its tokenizer, checked to be there before anything is loaded.
pub struct Pretrained {
    pub config: LlamaConfig,
    pub tokenizer: TextTokenizer,
    /// The options of the run it comes from (`None` for an HF directory).
    pub run_options: Option<TrainOptions>,
    /// The ids that end a generated text: the tokenizer's end-of-text token and, for an HF
    /// directory, the `eos_token_id`s of its `generation_config.json` or `config.json` (e.g.
    /// both of Llama 3 Instruct's, `<|end_of_text|>` and `<|eot_id|>`).
    pub stop_ids: Vec<u32>,
    weights: Weights,
}

impl Pretrained {
    /// Opens `dir`; every error is the input's fault (a directory that is neither kind, a missing
    /// or corrupt file, a tokenizer with ids the model has no embedding for) and says what is
    /// wrong.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(dir.is_dir(), "{} is not a directory", dir.display());
        let run = RunFiles::new(dir.to_owned());
        let opened = if run.options().is_file() { Self::open_run(run)? } else { Self::open_hf_dir(dir)? };
        anyhow::ensure!(
            opened.tokenizer.vocab_size() <= opened.config.vocab_size,
            "{}: the tokenizer has {} ids, more than the model's vocab_size {}",
            dir.display(),
            opened.tokenizer.vocab_size(),
            opened.config.vocab_size
        );
        Ok(opened)
    }

    fn open_hf_dir(dir: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(
            dir.join("config.json").is_file(),
            "{} is neither a run directory of fira train (options.json) nor an HF model directory (config.json)",
            dir.display()
        );
        anyhow::ensure!(
            HF_WEIGHTS.iter().any(|file| dir.join(file).is_file()),
            "the HF model directory {} holds no weights ({})",
            dir.display(),
            HF_WEIGHTS.join(" or ")
        );
        let config = LlamaConfig::from_hf_json(dir.join("config.json"))?;
        let tokenizer = open_tokenizer(dir)?;
        let mut stop_ids = vec![tokenizer.end_of_text];
        for id in hf_eos_ids(dir)? {
            if !stop_ids.contains(&id) {
                stop_ids.push(id);
            }
        }
        Ok(Self { config, tokenizer, run_options: None, stop_ids, weights: Weights::HfDir(dir.to_owned()) })
    }

    fn open_run(run: RunFiles) -> anyhow::Result<Self> {
        let options = run.read_options()?;
        let config = run.read_model()?;
        let tokenizer = open_tokenizer(&run.dir)?;
        let segment = latest_checkpoint(&run.dir)?;
        let step = run_shape(&options).steps_after_segment(segment);
        let stop_ids = vec![tokenizer.end_of_text];
        Ok(Self { config, tokenizer, run_options: Some(options), stop_ids, weights: Weights::Checkpoint { run, segment, step } })
    }

    /// The model with its weights, on `device` in the device's float type.
    pub fn load<B: Backend>(&self, device: &B::Device) -> anyhow::Result<Llama<B>> {
        match &self.weights {
            Weights::Checkpoint { run, segment, .. } => {
                let lora = self.run_options.as_ref().and_then(TrainOptions::lora);
                load_model(&run.dir, *segment, &self.config, lora.as_ref(), device)
            }
            Weights::HfDir(dir) => Ok(self.config.load_hf_weights::<B>(dir, device)?),
        }
    }

    /// What was loaded, for the user: the run and step, or the directory.
    pub fn describe(&self) -> String {
        match &self.weights {
            Weights::Checkpoint { run, step, .. } => format!("{} after step {step}", run.dir.display()),
            Weights::HfDir(dir) => dir.display().to_string(),
        }
    }
}

/// `--backend` and `--dtype` of the commands that run a [`Pretrained`] model.
#[derive(clap::Args)]
pub struct ComputeArgs {
    /// Compute backend [default: the run's, or flex for an HF directory].
    #[arg(long)]
    pub backend: Option<BackendChoice>,
    /// Float type of the computation [default: the run's, or f32 for an HF directory].
    #[arg(long)]
    pub dtype: Option<DType>,
}

impl ComputeArgs {
    /// The flags, or the run's (the defaults for an HF directory), checked to run in this build.
    pub fn resolve(&self, model: &Pretrained) -> anyhow::Result<(BackendChoice, DType)> {
        let defaults = model.run_options.clone().unwrap_or_default();
        let (backend, dtype) = (self.backend.unwrap_or(defaults.backend), self.dtype.unwrap_or(defaults.dtype));
        crate::backend::check(backend, dtype)?;
        Ok((backend, dtype))
    }
}

fn open_tokenizer(dir: &Path) -> anyhow::Result<TextTokenizer> {
    let path = dir.join("tokenizer.json");
    anyhow::ensure!(path.is_file(), "{} holds no tokenizer.json (the tokenizer the model was trained with)", dir.display());
    Ok(TextTokenizer::load(&path)?)
}

/// The `eos_token_id` (one id or a list) of `generation_config.json`, else of `config.json`;
/// none when neither gives one.
fn hf_eos_ids(dir: &Path) -> anyhow::Result<Vec<u32>> {
    for file in ["generation_config.json", "config.json"] {
        let path = dir.join(file);
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        let json: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
        let ids = match json.get("eos_token_id") {
            None | Some(serde_json::Value::Null) => continue,
            Some(serde_json::Value::Array(ids)) => ids.iter().map(|id| id.as_u64()).collect::<Option<Vec<u64>>>(),
            Some(id) => id.as_u64().map(|id| vec![id]),
        };
        let ids = ids.with_context(|| format!("{}: eos_token_id is not a token id or a list of them", path.display()))?;
        return ids.into_iter().map(|id| u32::try_from(id).with_context(|| format!("{}: eos_token_id {id}", path.display()))).collect();
    }
    Ok(Vec::new())
}
