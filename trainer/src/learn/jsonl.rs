//! The run directory's line logs (`metrics.jsonl`, `scaling.jsonl`): one JSON object per line,
//! appended and flushed as the run goes, so that a killed run keeps what it logged.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Reads a line log; a missing file holds nothing, a torn last line (the process was killed
/// mid-write) is dropped.
pub fn read_lines<T: DeserializeOwned>(path: &Path) -> std::io::Result<Vec<T>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut records = Vec::new();
    for line in BufReader::new(file).lines() {
        match serde_json::from_str(&line?) {
            Ok(record) => records.push(record),
            Err(_) => break,
        }
    }
    Ok(records)
}

/// Keeps the lines `keep` accepts (a resumed run continues from its checkpoint, and the steps
/// logged after it are redone), rewriting the file atomically.
pub fn retain_lines<T: DeserializeOwned + Serialize>(path: &Path, keep: impl Fn(&T) -> bool) -> std::io::Result<()> {
    let kept: String =
        read_lines::<T>(path)?.into_iter().filter(keep).map(|r| serde_json::to_string(&r).expect("log lines serialise") + "\n").collect();
    atomic_file::write(path, kept.as_bytes())
}

/// Opens a line log for appending, creating it.
pub fn append_to(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Appends one record and flushes it.
pub fn append_line(file: &mut File, record: &impl Serialize) -> std::io::Result<()> {
    let line = serde_json::to_string(record).expect("log lines serialise");
    writeln!(file, "{line}").and_then(|()| file.flush())
}
