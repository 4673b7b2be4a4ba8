//! Checkpoints every `--checkpoint-every` optimizer steps, written so that killing the process at
//! any moment never corrupts the latest one.
//!
//! Burn's `Learner` checkpoints at the end of an epoch, and the trainer's epochs are segments of
//! `--eval-every` steps (see `data::loader`): [`SegmentCheckpoints`] saves at the segments that
//! end on a multiple of `--checkpoint-every` (and the last), keeping the two newest. Each file is
//! written atomically by [`AtomicFileRecorder`], and a
//! checkpoint counts only when its model, optimizer and scheduler files are all there
//! ([`complete_checkpoints`]): Burn writes the three on separate threads.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::record::{FileRecorder, FullPrecisionSettings, NamedMpkFileRecorder, Recorder, RecorderError};
use burn::tensor::backend::Backend;
use burn_train::checkpoint::{CheckpointingAction, CheckpointingStrategy};
use burn_train::metric::store::EventStoreClient;
use serde::Serialize;
use serde::de::DeserializeOwned;

use burn_train::Interrupter;

use llama_burn::{Llama, LlamaConfig, LoraConfig};

use super::health::RunHealth;
use super::language_model::CausalLm;
use crate::data::loader::RunShape;

/// The recorder of the run's checkpoints: full-precision named MessagePack, written atomically.
pub type CheckpointRecorder = AtomicFileRecorder<NamedMpkFileRecorder<FullPrecisionSettings>>;

/// The three files of a checkpoint, as Burn's `FileCheckpointer` names them.
pub const PARTS: [&str; 3] = ["model", "optim", "scheduler"];

/// Wraps a file recorder so that each record is written atomically (`atomic-file`).
#[derive(Clone, Debug, Default)]
pub struct AtomicFileRecorder<R> {
    inner: R,
}

impl<B: Backend, R: FileRecorder<B>> Recorder<B> for AtomicFileRecorder<R> {
    type Settings = R::Settings;
    type RecordArgs = PathBuf;
    type RecordOutput = ();
    type LoadArgs = PathBuf;

    fn save_item<I: Serialize>(&self, item: I, path: PathBuf) -> Result<(), RecorderError> {
        let target = path.with_extension(<R as FileRecorder<B>>::file_extension());
        atomic_file::write_with(&target, |tmp| self.inner.save_item(item, tmp.to_owned())).map_err(|error| match error {
            atomic_file::AtomicWriteError::Write { source, .. } => source,
            io @ atomic_file::AtomicWriteError::Io { .. } => RecorderError::Unknown(io.to_string()),
        })
    }

    fn load_item<I: DeserializeOwned>(&self, path: &mut PathBuf) -> Result<I, RecorderError> {
        self.inner.load_item(path)
    }
}

impl<B: Backend, R: FileRecorder<B>> FileRecorder<B> for AtomicFileRecorder<R> {
    fn file_extension() -> &'static str {
        R::file_extension()
    }
}

/// The model of checkpoint `segment` of the run in `run_dir`, a `config` model (with the adapters
/// of `lora`, which are merged into its weights once loaded), on `device`; an unreadable
/// checkpoint or one of another model is an error naming the file.
pub fn load_model<B: Backend>(
    run_dir: &Path,
    segment: usize,
    config: &LlamaConfig,
    lora: Option<&LoraConfig>,
    device: &B::Device,
) -> anyhow::Result<Llama<B>> {
    // Every weight is then replaced by the checkpoint's (the seeded draws are lazy and never run).
    let llama = config.init::<B>(0, device)?;
    let llama = match lora {
        Some(lora) => llama.with_lora(lora, 0)?,
        None => llama,
    };
    let model = CausalLm::new(llama, 1, RunHealth::default());
    let path = checkpoint_dir(run_dir).join(format!("model-{segment}"));
    let record = Recorder::<B>::load(&CheckpointRecorder::default(), path.clone(), device)
        .map_err(|e| anyhow::anyhow!("{}: cannot load the checkpoint: {e}", path.display()))?;
    Ok(model.load_record(record).llama.merge_lora())
}

/// Where Burn's file checkpointer puts the checkpoints of a run.
pub fn checkpoint_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoint")
}

fn part_path(run_dir: &Path, part: &str, segment: usize) -> PathBuf {
    checkpoint_dir(run_dir).join(format!(
        "{part}-{segment}.{}",
        <NamedMpkFileRecorder<FullPrecisionSettings> as FileRecorder<burn::backend::NdArray>>::file_extension()
    ))
}

/// The segments whose three checkpoint files all exist, oldest first.
pub fn complete_checkpoints(run_dir: &Path) -> Vec<usize> {
    let Ok(entries) = std::fs::read_dir(checkpoint_dir(run_dir)) else { return Vec::new() };
    let mut segments: Vec<usize> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("model-")?.split('.').next()?.parse().ok())
        .filter(|&s| PARTS.iter().all(|part| part_path(run_dir, part, s).is_file()))
        .collect();
    segments.sort_unstable();
    segments
}

/// The segment of the latest complete checkpoint of the run in `run_dir`, which `fira eval` and
/// `fira generate` read; an error when there is none.
pub fn latest_checkpoint(run_dir: &Path) -> anyhow::Result<usize> {
    complete_checkpoints(run_dir)
        .last()
        .copied()
        .ok_or_else(|| anyhow::anyhow!("{} holds no complete checkpoint", checkpoint_dir(run_dir).display()))
}

/// The optimizer steps after which a run checkpoints: every multiple of `--checkpoint-every` (a
/// multiple of `--eval-every`, so each ends a segment) and the last.
#[derive(Clone, Copy, Debug)]
pub struct CheckpointSchedule {
    pub every: usize,
    pub total_steps: usize,
}

impl CheckpointSchedule {
    pub fn after(&self, step: usize) -> bool {
        step.is_multiple_of(self.every) || step == self.total_steps
    }
}

/// Saves at the segments ending on a multiple of `every` steps and at the last, keeping the
/// newest `keep`; saves nothing, and stops the run, once [`RunHealth`] reports a failure.
#[derive(Clone)]
pub struct SegmentCheckpoints {
    shape: RunShape,
    schedule: CheckpointSchedule,
    keep: usize,
    saved: Vec<usize>,
    health: RunHealth,
    interrupter: Interrupter,
    /// Off on the nodes but 0 of a `--nodes` run, which read node 0's checkpoints.
    writes: bool,
}

impl SegmentCheckpoints {
    /// `existing`: the segments already checkpointed (a resumed run), oldest first.
    pub fn new(shape: RunShape, every: usize, keep: usize, existing: Vec<usize>, health: RunHealth, interrupter: Interrupter) -> Self {
        let schedule = CheckpointSchedule { every, total_steps: shape.total_steps };
        Self { shape, schedule, keep: keep.max(1), saved: existing, health, interrupter, writes: true }
    }

    /// The same strategy without saving or deleting anything (its failure stop stays).
    pub fn without_saving(self) -> Self {
        Self { writes: false, ..self }
    }

    fn saves(&self, segment: usize) -> bool {
        self.schedule.after(self.shape.steps_after_segment(segment))
    }
}

impl CheckpointingStrategy for SegmentCheckpoints {
    fn checkpointing(&mut self, segment: usize, _store: &EventStoreClient) -> Vec<CheckpointingAction> {
        if let Some(reason) = self.health.failure() {
            self.interrupter.stop(Some(&reason));
            return Vec::new();
        }
        if !self.writes || !self.saves(segment) {
            return Vec::new();
        }
        self.saved.push(segment);
        let mut actions = vec![CheckpointingAction::Save];
        while self.saved.len() > self.keep {
            actions.push(CheckpointingAction::Delete(self.saved.remove(0)));
        }
        actions
    }
}
