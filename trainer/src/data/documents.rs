//! Where documents come from: the embedded corpus or `--data` files, either text (`.txt`,
//! `.jsonl`, `.json.gz` as in C4's `c4-train.NNNNN-of-01024.json.gz`, streamed a line at a time)
//! or instruction records ([`instructions`](super::instructions), read whole: such sets are small).

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
use super::instructions::{InstructionRecord, is_record_file, read_records};

/// `--data-format`: what the files of `--data` hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DataFormat {
    /// Text to model: `.txt` paragraphs, or the `text` field of `.jsonl` / `.json.gz` records.
    Text,
    /// Alpaca / LLM-Adapters instruction records (`instruction`, `input`, `output`) in `.json`
    /// arrays or `.jsonl` lines, one record per row.
    Instructions,
}

impl DataFormat {
    /// The files of this format, for messages.
    fn expected(self) -> &'static str {
        match self {
            Self::Text => ".txt, .jsonl or .json.gz files",
            Self::Instructions => ".json or .jsonl files of instruction records",
        }
    }

    fn accepts(self, path: &Path) -> bool {
        match self {
            Self::Text => format_of(path).is_some(),
            Self::Instructions => is_record_file(path),
        }
    }
}

/// One document of a source.
#[derive(Clone, Debug, PartialEq)]
pub enum Document {
    Text(String),
    Instruction(Arc<InstructionRecord>),
}

impl Document {
    /// Its text, as a tokenizer is trained on it.
    pub fn text(&self) -> String {
        match self {
            Self::Text(text) => text.clone(),
            Self::Instruction(record) => record.text(),
        }
    }
}

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
    /// The instruction records of files sorted by path, in order, and what they are.
    Records { records: Arc<Vec<Arc<InstructionRecord>>>, description: String },
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

    /// `--data`: a file, a directory (its files of `format`, recursively) or a glob pattern.
    /// Every text file is opened and its first record parsed here, every instruction file read
    /// whole, so a missing, unreadable or corrupt file (or a record without `output`) is reported
    /// before anything is written.
    pub fn from_spec(spec: &str, format: DataFormat) -> Result<Self, DataError> {
        let files = find_files(spec, format)?;
        if format == DataFormat::Instructions {
            let mut records = Vec::new();
            for file in &files {
                records.extend(read_records(file, true)?.into_iter().map(Arc::new));
            }
            let description = format!("{} ({} instruction records)", describe_files(&files), records.len());
            return Ok(Self::Records { records: Arc::new(records), description });
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
            Self::Files(files) => describe_files(files),
            Self::Records { description, .. } => description.clone(),
        }
    }

    /// The documents of `split` in pass `pass` over the data. Files are read in an order
    /// shuffled by `(seed, pass)`; documents keep their order within a file. Chapters and
    /// instruction records, which are in memory, are shuffled one by one.
    pub fn documents(&self, split: Split, seed: u64, pass: u64) -> DocumentStream {
        let mut rng = StdRng::seed_from_u64(seed ^ pass.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut kept = |count: usize| {
            let mut kept: Vec<usize> = (0..count).filter(|&i| split.keeps(i)).collect();
            if split != Split::Valid {
                kept.shuffle(&mut rng);
            }
            kept
        };
        match self {
            Self::Embedded(chapters) => {
                let chapters = Arc::clone(chapters);
                Box::new(kept(chapters.len()).into_iter().map(move |i| Ok(Document::Text(chapters[i].clone()))))
            }
            Self::Records { records, .. } => {
                let records = Arc::clone(records);
                Box::new(kept(records.len()).into_iter().map(move |i| Ok(Document::Instruction(Arc::clone(&records[i])))))
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
                        Box::new(docs.enumerate().filter(move |(i, d)| d.is_err() || split.keeps(*i)).map(|(_, d)| d.map(Document::Text)))
                            as DocumentStream
                    }
                    Err(e) => Box::new(std::iter::once(Err(e))),
                }))
            }
        }
    }
}

fn describe_files(files: &[PathBuf]) -> String {
    match files {
        [file] => file.display().to_string(),
        _ => format!("{} files from {}", files.len(), files[0].display()),
    }
}

/// The files of `spec` (a file, a directory searched recursively, or a glob) in `format`, sorted.
fn find_files(spec: &str, format: DataFormat) -> Result<Vec<PathBuf>, DataError> {
    let path = Path::new(spec);
    let mut files = if path.is_file() {
        if !format.accepts(path) {
            return Err(DataError::Unsupported { path: path.to_owned(), expected: format.expected() });
        }
        vec![path.to_owned()]
    } else if path.is_dir() {
        let mut found = Vec::new();
        collect_dir(path, format, &mut found)?;
        found
    } else {
        let paths = glob::glob(spec).map_err(|e| DataError::Pattern { pattern: spec.to_owned(), reason: e.to_string() })?;
        let mut found = Vec::new();
        for entry in paths {
            let entry = entry.map_err(|e| DataError::Io { path: e.path().to_owned(), source: e.into() })?;
            if entry.is_file() && format.accepts(&entry) {
                found.push(entry);
            }
        }
        found
    };
    files.sort();
    if files.is_empty() {
        return Err(DataError::NoFiles { spec: spec.to_owned(), expected: format.expected() });
    }
    Ok(files)
}

fn collect_dir(dir: &Path, format: DataFormat, found: &mut Vec<PathBuf>) -> Result<(), DataError> {
    let io = |source| DataError::Io { path: dir.to_owned(), source };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            collect_dir(&path, format, found)?;
        } else if format.accepts(&path) {
            found.push(path);
        }
    }
    Ok(())
}

/// The documents of one split, in order; an `Err` item is a file that failed mid-stream.
pub type DocumentStream = Box<dyn Iterator<Item = Result<Document, DataError>> + Send>;

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
        let format =
            format_of(path).ok_or_else(|| DataError::Unsupported { path: path.to_owned(), expected: DataFormat::Text.expected() })?;
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
                    let bad = |reason: String| DataError::BadRecord { path: self.path.clone(), at: format!("line {}", self.line), reason };
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
