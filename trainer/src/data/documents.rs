//! Where documents come from: the embedded corpus or `--data` files (`.txt`, `.jsonl`,
//! `.json.gz` as in C4's `c4-train.NNNNN-of-01024.json.gz`), streamed a line at a time.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::DataError;
use super::corpus::{self, is_validation_document};

/// Which documents of a source a stream yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Every document but the held-out ones.
    Train,
    /// The held-out documents (every 20th, see [`corpus::VALID_EVERY`]).
    Valid,
    /// Every document (a source given only for validation, or training with `--valid-data`).
    All,
}

impl Split {
    fn keeps(self, index: usize) -> bool {
        match self {
            Split::Train => !is_validation_document(index),
            Split::Valid => is_validation_document(index),
            Split::All => true,
        }
    }
}

/// A source of documents.
#[derive(Clone, Debug)]
pub enum DocumentSource {
    /// The Austen corpus compiled into the binary, one document per chapter.
    Embedded(Arc<Vec<String>>),
    /// Text files, sorted by path.
    Files(Vec<PathBuf>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    JsonLines,
    GzJsonLines,
}

fn format_of(path: &Path) -> Option<Format> {
    let name = path.file_name()?.to_str()?;
    if name.ends_with(".json.gz") || name.ends_with(".jsonl.gz") {
        Some(Format::GzJsonLines)
    } else if name.ends_with(".jsonl") {
        Some(Format::JsonLines)
    } else if name.ends_with(".txt") {
        Some(Format::Text)
    } else {
        None
    }
}

impl DocumentSource {
    /// The embedded corpus.
    pub fn embedded() -> Result<Self, DataError> {
        Ok(Self::Embedded(Arc::new(corpus::chapters()?)))
    }

    /// `--data`: a file, a directory (its supported files, recursively) or a glob pattern.
    /// Every file is opened and its first record parsed here, so a missing, unreadable or corrupt
    /// file is reported before anything is written.
    pub fn from_spec(spec: &str) -> Result<Self, DataError> {
        let path = Path::new(spec);
        let mut files = if path.is_file() {
            if format_of(path).is_none() {
                return Err(DataError::Unsupported(path.to_owned()));
            }
            vec![path.to_owned()]
        } else if path.is_dir() {
            let mut found = Vec::new();
            collect_dir(path, &mut found)?;
            found
        } else {
            let paths = glob::glob(spec).map_err(|e| DataError::Pattern { pattern: spec.to_owned(), reason: e.to_string() })?;
            let mut found = Vec::new();
            for entry in paths {
                let entry = entry.map_err(|e| DataError::Io { path: e.path().to_owned(), source: e.into() })?;
                if entry.is_file() && format_of(&entry).is_some() {
                    found.push(entry);
                }
            }
            found
        };
        files.sort();
        if files.is_empty() {
            return Err(DataError::NoFiles(spec.to_owned()));
        }
        for file in &files {
            if let Some(first) = FileDocuments::open(file)?.next() {
                first?;
            }
        }
        Ok(Self::Files(files))
    }

    /// What the source is, for the run's log and config.
    pub fn describe(&self) -> String {
        match self {
            Self::Embedded(chapters) => format!("embedded Austen corpus ({} chapters)", chapters.len()),
            Self::Files(files) if files.len() == 1 => files[0].display().to_string(),
            Self::Files(files) => format!("{} files from {}", files.len(), files[0].display()),
        }
    }

    /// The documents of `split` in pass `pass` over the data. Files are read in an order
    /// shuffled by `(seed, pass)`; documents keep their order within a file.
    pub fn documents(&self, split: Split, seed: u64, pass: u64) -> DocumentStream {
        let mut rng = StdRng::seed_from_u64(seed ^ pass.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        match self {
            Self::Embedded(chapters) => {
                let chapters = Arc::clone(chapters);
                let mut kept: Vec<usize> = (0..chapters.len()).filter(|&i| split.keeps(i)).collect();
                if split != Split::Valid {
                    kept.shuffle(&mut rng);
                }
                Box::new(kept.into_iter().map(move |i| Ok(chapters[i].clone())))
            }
            Self::Files(files) => {
                let mut files = files.clone();
                if split != Split::Valid {
                    files.shuffle(&mut rng);
                }
                Box::new(files.into_iter().flat_map(move |file| match FileDocuments::open(&file) {
                    // The held-out documents are counted within each file, so they stay the
                    // same whatever order a pass reads the files in.
                    Ok(docs) => {
                        Box::new(docs.enumerate().filter(move |(i, d)| d.is_err() || split.keeps(*i)).map(|(_, d)| d)) as DocumentStream
                    }
                    Err(e) => Box::new(std::iter::once(Err(e))),
                }))
            }
        }
    }
}

fn collect_dir(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), DataError> {
    let io = |source| DataError::Io { path: dir.to_owned(), source };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            collect_dir(&path, found)?;
        } else if format_of(&path).is_some() {
            found.push(path);
        }
    }
    Ok(())
}

/// The documents of one split, in order; an `Err` item is a file that failed mid-stream.
pub type DocumentStream = Box<dyn Iterator<Item = Result<String, DataError>> + Send>;

/// The documents of one file: a JSON record's `text` per line, or a `.txt` file's paragraphs
/// (separated by blank lines).
struct FileDocuments {
    path: PathBuf,
    lines: Box<dyn BufRead + Send>,
    format: Format,
    line: usize,
    failed: bool,
}

impl FileDocuments {
    fn open(path: &Path) -> Result<Self, DataError> {
        let format = format_of(path).ok_or_else(|| DataError::Unsupported(path.to_owned()))?;
        let file = File::open(path).map_err(|source| DataError::Io { path: path.to_owned(), source })?;
        let lines: Box<dyn BufRead + Send> = match format {
            Format::GzJsonLines => Box::new(BufReader::new(MultiGzDecoder::new(file))),
            _ => Box::new(BufReader::new(file)),
        };
        Ok(Self { path: path.to_owned(), lines, format, line: 0, failed: false })
    }

    fn read_line(&mut self, buffer: &mut String) -> Result<bool, DataError> {
        buffer.clear();
        self.line += 1;
        match self.lines.read_line(buffer) {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(source) => Err(DataError::Io { path: self.path.clone(), source }),
        }
    }

    fn next_document(&mut self) -> Result<Option<String>, DataError> {
        let mut line = String::new();
        match self.format {
            Format::Text => {
                let mut paragraph = String::new();
                while self.read_line(&mut line)? {
                    if line.trim().is_empty() {
                        if !paragraph.is_empty() {
                            return Ok(Some(paragraph));
                        }
                    } else {
                        paragraph.push_str(&line);
                    }
                }
                Ok((!paragraph.is_empty()).then_some(paragraph))
            }
            Format::JsonLines | Format::GzJsonLines => {
                while self.read_line(&mut line)? {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let bad = |reason: String| DataError::BadRecord { path: self.path.clone(), line: self.line, reason };
                    let record: serde_json::Value = serde_json::from_str(&line).map_err(|e| bad(format!("not JSON: {e}")))?;
                    return match record.get("text").and_then(|t| t.as_str()) {
                        Some(text) => Ok(Some(text.to_owned())),
                        None => Err(bad("no string field `text`".to_owned())),
                    };
                }
                Ok(None)
            }
        }
    }
}

impl Iterator for FileDocuments {
    type Item = Result<String, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.next_document().transpose();
        self.failed = matches!(next, Some(Err(_)));
        next
    }
}
