//! Text to token rows: where documents come from ([`corpus`], [`documents`]), how they become
//! tokens ([`tokenizer`]) and fixed-length rows ([`rows`]), and Burn's data loaders over them
//! ([`loader`]).

pub mod corpus;
pub mod documents;
pub mod instructions;
pub mod loader;
pub mod rows;
pub mod tokenizer;

use std::path::PathBuf;

/// Why the training data cannot be used. Every variant names the file or pattern at fault.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("no {expected} match `{spec}`")]
    NoFiles { spec: String, expected: &'static str },
    #[error("{}: unsupported file type (expected {expected})", path.display())]
    Unsupported { path: PathBuf, expected: &'static str },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {at}: {reason}", path.display())]
    BadRecord { path: PathBuf, at: String, reason: String },
    #[error("{what} holds no text to train on")]
    Empty { what: String },
    #[error("invalid glob `{pattern}`: {reason}")]
    Pattern { pattern: String, reason: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}
