//! Atomic file writes, the one implementation every writer of the workspace uses (model weights,
//! checkpoints, run options, metrics rewrites, reports).
//!
//! The contents go to a hidden temporary file in the target's directory, which is synced to disk
//! and renamed over the target; the directory is then synced so that the rename itself survives a
//! crash. A reader therefore sees the old file or the new one, never a torn one, and a failed
//! write leaves the old file as it was and removes the temporary file.

use std::fs::File;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why an atomic write failed; the target is unchanged either way.
#[derive(Debug, Error)]
pub enum AtomicWriteError<E> {
    /// The caller's writer failed on the temporary file.
    #[error("{}: {source}", path.display())]
    Write { path: PathBuf, source: E },
    /// Syncing or renaming failed.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// The temporary path for `target`: hidden, in the same directory (a rename across file systems
/// is not atomic), unique per process, and ending in the target's extension, so that writers
/// which normalise the extension (Burn's file recorders) write exactly there.
pub fn temporary_path(target: &Path) -> PathBuf {
    let stem = target.file_stem().map(|s| s.to_string_lossy().replace('.', "_")).unwrap_or_default();
    let extension = target.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    target.with_file_name(format!(".{stem}.tmp-{}{extension}", std::process::id()))
}

/// Runs `write` on a temporary path beside `target`, then syncs it and renames it over `target`.
pub fn write_with<E>(target: &Path, write: impl FnOnce(&Path) -> Result<(), E>) -> Result<(), AtomicWriteError<E>> {
    let tmp = temporary_path(target);
    let outcome = match write(&tmp) {
        Err(source) => Err(AtomicWriteError::Write { path: target.to_owned(), source }),
        Ok(()) => publish(&tmp, target).map_err(|source| AtomicWriteError::Io { path: target.to_owned(), source }),
    };
    if outcome.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    outcome
}

/// Writes `contents` to `target` atomically.
pub fn write(target: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_with(target, |tmp| std::fs::write(tmp, contents)).map_err(|error| match error {
        AtomicWriteError::Write { path, source } | AtomicWriteError::Io { path, source } => {
            std::io::Error::new(source.kind(), format!("{}: {source}", path.display()))
        }
    })
}

fn publish(tmp: &Path, target: &Path) -> std::io::Result<()> {
    File::open(tmp)?.sync_all()?;
    std::fs::rename(tmp, target)?;
    sync_directory(target)
}

/// Makes the rename durable: on Unix a directory can be opened and synced.
#[cfg(unix)]
fn sync_directory(target: &Path) -> std::io::Result<()> {
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_directory(_target: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("atomic-file-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_the_target_and_leaves_no_temporary_file() {
        let dir = scratch("replace");
        let target = dir.join("options.json");
        write(&target, b"old").unwrap();
        write(&target, b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(entries(&dir), ["options.json"]);
    }

    #[test]
    fn a_failed_writer_keeps_the_old_file_and_cleans_up() {
        let dir = scratch("fail");
        let target = dir.join("model.safetensors");
        write(&target, b"old").unwrap();
        let result = write_with(&target, |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            Err("disk full")
        });
        assert!(matches!(result, Err(AtomicWriteError::Write { source: "disk full", .. })), "{result:?}");
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(entries(&dir), ["model.safetensors"]);
    }

    #[test]
    fn the_temporary_path_is_hidden_beside_the_target_with_its_extension() {
        let tmp = temporary_path(Path::new("run/checkpoint/model-3.mpk"));
        assert_eq!(tmp.parent(), Some(Path::new("run/checkpoint")));
        let name = tmp.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(name, format!(".model-3.tmp-{}.mpk", std::process::id()));
        // A writer that sets the extension itself writes exactly there.
        assert_eq!(tmp.with_extension("mpk"), tmp);
        let dotted = temporary_path(Path::new("metrics.v2.jsonl"));
        assert_eq!(dotted.with_extension("jsonl"), dotted);
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_target() {
        let target = scratch("missing").join("no-such-dir").join("summary.json");
        let error = write(&target, b"x").unwrap_err();
        assert!(error.to_string().contains("summary.json"), "{error}");
    }
}
