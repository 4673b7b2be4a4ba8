//! The run directory: what a run writes, and the checks that keep a new run from writing over
//! an existing one and a resumed run from continuing with another model or data order.

use std::path::{Path, PathBuf};

use anyhow::Context;
use llama_burn::LlamaConfig;

use crate::data::tokenizer::TextTokenizer;
use crate::options::TrainOptions;

/// The files of a run.
pub struct RunFiles {
    pub dir: PathBuf,
}

/// Refuses a `--json` file whose directory does not exist, before the work whose result it would
/// hold.
pub fn check_json_path(json: Option<&Path>) -> anyhow::Result<()> {
    if let Some(dir) = json.and_then(Path::parent).filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
        anyhow::bail!("--json: directory {} does not exist", dir.display());
    }
    Ok(())
}

/// Writes `contents` to `path` atomically (`atomic-file`).
pub fn write_atomically(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    Ok(atomic_file::write(path, contents)?)
}

impl RunFiles {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The resolved options (`fira train --resume` and `fira eval` read them).
    pub fn options(&self) -> PathBuf {
        self.dir.join("options.json")
    }

    pub fn tokenizer(&self) -> PathBuf {
        self.dir.join("tokenizer.json")
    }

    /// The model's HF config (with the tokenizer's vocabulary).
    pub fn model_config(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.jsonl")
    }

    /// The scaling factors of `--record-scaling-every`: `fira_optim::ScalingSample` per line.
    pub fn scaling(&self) -> PathBuf {
        self.dir.join("scaling.jsonl")
    }

    /// Node 0's collection of every node's digests after the checkpointed steps of a `--nodes`
    /// run: `cluster::digest::StepDigests` per line.
    pub fn nodes(&self) -> PathBuf {
        self.dir.join("nodes.jsonl")
    }

    /// Written when the run finishes: `train::RunSummary`.
    pub fn summary(&self) -> PathBuf {
        self.dir.join("summary.json")
    }

    pub fn final_model(&self) -> PathBuf {
        self.dir.join("model")
    }

    /// A LoRA run's adapters alone, in PEFT's layout.
    pub fn adapter(&self) -> PathBuf {
        self.dir.join("adapter")
    }

    pub fn read_options(&self) -> anyhow::Result<TrainOptions> {
        let path = self.options();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{} holds no run ({} is missing)", self.dir.display(), path.display()))?;
        TrainOptions::from_json(&text).with_context(|| format!("{}: not a run's options", path.display()))
    }

    pub fn read_model(&self) -> anyhow::Result<LlamaConfig> {
        Ok(LlamaConfig::from_hf_json(self.model_config())?)
    }

    /// A resumed or evaluated checkpoint must be of the model now configured.
    pub fn check_model(&self, model: &LlamaConfig) -> anyhow::Result<()> {
        let saved = self.read_model()?;
        anyhow::ensure!(
            saved.to_hf_json() == model.to_hf_json(),
            "the checkpoint in {} is of another model: it has {}, the options give {}",
            self.dir.display(),
            describe(&saved),
            describe(model)
        );
        Ok(())
    }

    /// Creates the directory and writes the options, tokenizer and model config.
    pub fn create(&self, options: &TrainOptions, tokenizer: &TextTokenizer, model: &LlamaConfig) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| self.dir.display().to_string())?;
        let mut saved = options.clone();
        saved.run_dir = Some(self.dir.clone());
        write_atomically(&self.options(), serde_json::to_string_pretty(&saved)?.as_bytes())?;
        tokenizer.save(&self.tokenizer())?;
        write_atomically(&self.model_config(), serde_json::to_string_pretty(&model.to_hf_json())?.as_bytes())
    }
}

fn describe(config: &LlamaConfig) -> String {
    format!(
        "hidden {}, intermediate {}, {} heads, {} layers, vocab {}",
        config.hidden_size, config.intermediate_size, config.num_attention_heads, config.num_hidden_layers, config.vocab_size
    )
}

/// The directory of a new run: `--run-dir`, which must not hold a run, or
/// `runs/<optimizer>-<model>-s<seed>` with a numeric suffix if that is taken.
pub fn new_run(options: &TrainOptions) -> anyhow::Result<RunFiles> {
    if let Some(dir) = &options.run_dir {
        let occupied = dir.join("options.json").exists() || std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
        anyhow::ensure!(
            !occupied,
            "--run-dir {} is not empty: continue that run with --resume, or choose another directory",
            dir.display()
        );
        return Ok(RunFiles::new(dir.clone()));
    }
    let optimizer = crate::options::value_name(options.optimizer);
    let base = PathBuf::from("runs").join(format!("{optimizer}-{}-s{}", options.model_name(), options.seed));
    let dir = std::iter::once(base.clone())
        .chain((2..).map(|n| PathBuf::from(format!("{}-{n}", base.display()))))
        .find(|d| !d.exists())
        .expect("some suffix is free");
    Ok(RunFiles::new(dir))
}

/// Options a resumed run may not change: they fix the model, the optimizer or the data order.
pub fn check_resume(saved: &TrainOptions, now: &TrainOptions) -> anyhow::Result<()> {
    let fixed = [
        ("model", saved.model != now.model),
        ("init-from", saved.init_from != now.init_from),
        ("optimizer", saved.optimizer != now.optimizer),
        ("rank", saved.rank != now.rank),
        ("target-modules", saved.target_modules != now.target_modules),
        ("seq-len", saved.seq_len != now.seq_len),
        ("batch-size", saved.batch_size != now.batch_size),
        ("grad-accum", saved.grad_accum != now.grad_accum),
        ("devices (their number)", saved.replicas() != now.replicas()),
        ("nodes", saved.nodes != now.nodes),
        ("seed", saved.seed != now.seed),
        ("data", saved.data != now.data),
        ("packing", saved.packing != now.packing),
        ("data-format", saved.data_format != now.data_format),
        ("loss-on", saved.loss_on != now.loss_on),
        ("lora-* (the adapters)", saved.lora() != now.lora()),
        ("tokenizer", saved.tokenizer != now.tokenizer),
        ("vocab-size", saved.vocab_size != now.vocab_size),
        ("eval-every", saved.eval_every != now.eval_every),
        ("dtype", saved.dtype != now.dtype),
    ];
    let changed: Vec<&str> = fixed.iter().filter(|f| f.1).map(|f| f.0).collect();
    anyhow::ensure!(
        changed.is_empty(),
        "a resumed run keeps its model, optimizer and data order; these options differ from the run's: --{}",
        changed.join(", --")
    );
    Ok(())
}
