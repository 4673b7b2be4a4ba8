//! [`LlamaError`]: everything that can go wrong building, loading or saving a model.

use std::path::PathBuf;

/// Errors of configuration, weight loading and saving.
#[derive(Debug, thiserror::Error)]
pub enum LlamaError {
    /// `--model` named neither a preset nor an existing file.
    #[error("unknown model preset `{name}` (presets: {known}; or give the path of a config.json)")]
    UnknownPreset { name: String, known: String },
    /// A field of the configuration makes no model.
    #[error("invalid model config: {field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    /// A `config.json` that cannot be read as an HF LLaMA config.
    #[error("{}: {reason}", path.display())]
    ConfigFile { path: PathBuf, reason: String },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The weight file could not be read or written (not a valid file of its format).
    #[error("{}: {message}", path.display())]
    WeightFile { path: PathBuf, message: String },
    /// The weight file does not hold this model's tensors: what is missing, extra or mis-shaped.
    #[error("{}: the weights do not fit this model:\n{problems}", path.display())]
    WeightMismatch { path: PathBuf, problems: String },
    /// A batch longer than the model's `max_position_embeddings`.
    #[error("sequence length {len} exceeds the model's max_position_embeddings {max}")]
    SequenceTooLong { len: usize, max: usize },
}
