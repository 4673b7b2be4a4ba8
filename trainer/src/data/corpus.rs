//! The embedded corpus: Jane Austen's six novels (see `trainer/data/SOURCES.md` for provenance
//! and licence), compiled into the binary so that `fira train` needs no download.

use std::io::Read;

use flate2::read::GzDecoder;

use super::DataError;

static AUSTEN_GZ: &[u8] = include_bytes!("../../data/austen.txt.gz");

/// Every `VALID_EVERY`-th document is held out for validation: whole chapters spread over the
/// six novels, never random lines, so no validation sentence is seen in training.
pub const VALID_EVERY: usize = 20;

/// Whether document number `index` (0-based, in corpus order) belongs to the validation split.
pub fn is_validation_document(index: usize) -> bool {
    index % VALID_EVERY == VALID_EVERY - 1
}

/// The corpus as documents, one per chapter (the title page joins the first chapter).
pub fn chapters() -> Result<Vec<String>, DataError> {
    let mut text = String::new();
    GzDecoder::new(AUSTEN_GZ)
        .read_to_string(&mut text)
        .map_err(|source| DataError::Io { path: "<embedded austen.txt.gz>".into(), source })?;
    let mut chapters: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut has_heading = false;
    for line in text.lines() {
        let heading = line.len() < 40 && line.to_ascii_lowercase().starts_with("chapter ");
        if heading && has_heading {
            chapters.push(std::mem::take(&mut current));
        }
        has_heading |= heading;
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        chapters.push(current);
    }
    Ok(chapters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_splits_into_its_chapters() {
        let chapters = chapters().unwrap();
        // 269 chapter headings in the text; every one starts a document.
        assert_eq!(chapters.len(), 269);
        assert!(chapters.iter().all(|c| c.lines().any(|l| l.to_ascii_lowercase().starts_with("chapter "))));
        let bytes: usize = chapters.iter().map(String::len).sum();
        assert_eq!(bytes, 4_025_029, "the split loses or adds text");
        let valid = (0..chapters.len()).filter(|&i| is_validation_document(i)).count();
        assert_eq!(valid, 13);
    }
}
