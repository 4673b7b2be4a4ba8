//! `scaling.jsonl`: the scaling factors ψ the optimizer's probe measured (`--record-scaling-every`),
//! one line per matrix and recorded step, for `fira analyze scaling`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fira_optim::{ScalingRecorder, ScalingSample};

use super::jsonl::{append_line, append_to, read_lines, retain_lines};

/// Appends the probe's samples to the run's `scaling.jsonl`.
pub struct ScalingLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl ScalingLog {
    /// Appends to `path` after `completed_steps` optimizer steps: the samples of later steps (a
    /// resumed run redoes them) are dropped first.
    pub fn open(path: &Path, completed_steps: usize) -> std::io::Result<Self> {
        retain_lines(path, |s: &ScalingSample| s.step <= completed_steps)?;
        Ok(Self { path: path.to_owned(), file: Mutex::new(append_to(path)?) })
    }
}

impl ScalingRecorder for ScalingLog {
    fn record(&self, sample: ScalingSample) {
        let mut file = self.file.lock().expect("the scaling log is never poisoned");
        if let Err(e) = append_line(&mut file, &sample) {
            log::error!("{}: cannot append the scaling sample: {e}", self.path.display());
        }
    }
}

/// Reads a run's `scaling.jsonl`.
pub fn read_samples(path: &Path) -> std::io::Result<Vec<ScalingSample>> {
    read_lines(path)
}
