//! Text to token rows: where documents come from ([`corpus`], [`documents`]), how they become
//! tokens ([`tokenizer`]) and fixed-length rows ([`rows`]), and Burn's data loaders over them
//! ([`loader`]).

pub mod corpus;
pub mod documents;
pub mod loader;
pub mod rows;
pub mod tokenizer;

use std::path::PathBuf;

/// Why the training data cannot be used. Every variant names the file or pattern at fault.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("no .txt, .jsonl or .json.gz files match `{0}`")]
    NoFiles(String),
    #[error("{}: unsupported file type (expected .txt, .jsonl or .json.gz)", .0.display())]
    Unsupported(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {reason}", path.display())]
    BadRecord { path: PathBuf, line: usize, reason: String },
    #[error("{what} holds no text to train on")]
    Empty { what: String },
    #[error("invalid glob `{pattern}`: {reason}")]
    Pattern { pattern: String, reason: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}
