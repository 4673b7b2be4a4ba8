//! Token rows of a fixed length, the unit of a batch: documents packed end to end (the default)
//! or one document per row, truncated and padded (the GaLore/Fira scripts' C4 batches).

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::DataError;
use super::documents::{DocumentSource, DocumentStream, Split};
use super::tokenizer::TextTokenizer;

/// How documents become rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RowPacking {
    /// Documents joined by end-of-text and cut into rows: no padding, every position trains.
    Pack,
    /// One document per row, truncated to the sequence length and padded (padding is left out
    /// of the loss).
    Document,
}

/// Rows kept for shuffling: a streamed corpus cannot be shuffled whole.
pub const SHUFFLE_ROWS: usize = 2048;

/// An endless, deterministic stream of rows: passes over the source follow each other, each
/// with its own file order, and rows go through a seeded shuffle buffer. The same seed gives the
/// same rows in the same order, which is what makes a resumed run continue the data order.
pub struct RowStream {
    source: DocumentSource,
    split: Split,
    seed: u64,
    tokenizer: Arc<TextTokenizer>,
    seq_len: usize,
    packing: RowPacking,
    shuffle: bool,
    pass: u64,
    documents: DocumentStream,
    rows_in_pass: usize,
    pending: Vec<u32>,
    buffer: Vec<Vec<u32>>,
    rng: StdRng,
}

impl RowStream {
    /// Training rows: shuffled, cycling over the source.
    pub fn training(
        source: DocumentSource,
        split: Split,
        seed: u64,
        tokenizer: Arc<TextTokenizer>,
        seq_len: usize,
        packing: RowPacking,
    ) -> Self {
        let documents = source.documents(split, seed, 0);
        Self {
            source,
            split,
            seed,
            tokenizer,
            seq_len,
            packing,
            shuffle: true,
            pass: 0,
            documents,
            rows_in_pass: 0,
            pending: Vec::new(),
            buffer: Vec::new(),
            rng: StdRng::seed_from_u64(seed.wrapping_add(0x5EED)),
        }
    }

    /// The first `limit` rows of one pass, in order: a fixed validation set.
    pub fn first_rows(
        source: DocumentSource,
        split: Split,
        tokenizer: Arc<TextTokenizer>,
        seq_len: usize,
        packing: RowPacking,
        limit: usize,
    ) -> Result<Vec<Vec<u32>>, DataError> {
        let mut stream = Self { shuffle: false, ..Self::training(source, split, 0, tokenizer, seq_len, packing) };
        let mut rows = Vec::new();
        while rows.len() < limit {
            match stream.next_unshuffled()? {
                Some(row) => rows.push(row),
                None => break,
            }
        }
        Ok(rows)
    }

    /// The next row; an error is a file that failed or a source with no complete row.
    pub fn next_row(&mut self) -> Result<Vec<u32>, DataError> {
        if !self.shuffle {
            return self.next_cycling();
        }
        while self.buffer.len() < SHUFFLE_ROWS {
            let row = self.next_cycling()?;
            self.buffer.push(row);
        }
        let pick = self.rng.random_range(0..self.buffer.len());
        let incoming = self.next_cycling()?;
        Ok(std::mem::replace(&mut self.buffer[pick], incoming))
    }

    /// Skips `rows` rows (resuming a run).
    pub fn skip(&mut self, rows: usize) -> Result<(), DataError> {
        for _ in 0..rows {
            self.next_row()?;
        }
        Ok(())
    }

    fn next_cycling(&mut self) -> Result<Vec<u32>, DataError> {
        loop {
            if let Some(row) = self.next_unshuffled()? {
                self.rows_in_pass += 1;
                return Ok(row);
            }
            if self.rows_in_pass == 0 {
                let what =
                    format!("the {} split of {} at sequence length {}", split_name(self.split), self.source.describe(), self.seq_len);
                return Err(DataError::Empty { what });
            }
            self.pass += 1;
            self.rows_in_pass = 0;
            self.documents = self.source.documents(self.split, self.seed, self.pass);
        }
    }

    /// The next row of the current pass, `None` at its end (a packed remainder shorter than a
    /// row is dropped).
    fn next_unshuffled(&mut self) -> Result<Option<Vec<u32>>, DataError> {
        loop {
            if self.packing == RowPacking::Pack && self.pending.len() >= self.seq_len {
                let rest = self.pending.split_off(self.seq_len);
                return Ok(Some(std::mem::replace(&mut self.pending, rest)));
            }
            let Some(document) = self.documents.next() else {
                self.pending.clear();
                return Ok(None);
            };
            let mut ids = self.tokenizer.encode(&document?)?;
            if ids.is_empty() {
                continue;
            }
            ids.push(self.tokenizer.end_of_text);
            match self.packing {
                RowPacking::Pack => self.pending.extend(ids),
                RowPacking::Document => {
                    ids.resize(self.seq_len, self.tokenizer.padding);
                    return Ok(Some(ids));
                }
            }
        }
    }
}

fn split_name(split: Split) -> &'static str {
    match split {
        Split::Train => "training",
        Split::Valid => "validation",
        Split::All => "whole",
    }
}
