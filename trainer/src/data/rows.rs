//! Token rows of a fixed length, the unit of a batch: documents packed end to end (the default),
//! one document per row, truncated and padded (the GaLore/Fira scripts' C4 batches), or one
//! instruction record per row (LLM-Adapters' fine-tuning batches). Each row says which of its
//! positions are targets of the loss.

use std::ops::Range;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::DataError;
use super::documents::{Document, DocumentSource, DocumentStream, Split};
use super::instructions::InstructionRecord;
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

/// `--loss-on`: which tokens of an instruction row are targets of the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LossOn {
    /// The response and its end-of-text token only: the model learns to answer, not to write
    /// prompts (what most fine-tuning tools do).
    Response,
    /// Prompt and response (LLM-Adapters' `train_on_inputs=True`, the paper's setup).
    All,
}

/// How documents become rows, resolved from the options (`TrainOptions::row_layout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowLayout {
    /// Text documents, packed or one per row.
    Text(RowPacking),
    /// One instruction record per row: its prompt and response encoded as one text (with the
    /// tokenizer's special tokens, as a prompt is fed to generation), end-of-text, truncated to
    /// the row (the end-of-text token lost with the rest, as LLM-Adapters' `tokenize`) and padded.
    Instructions(LossOn),
}

/// A row of token ids and the positions of its ids that are targets of the loss (never 0: no
/// position predicts the first id). Padding is never a target, whatever its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub ids: Vec<u32>,
    pub targets: Range<usize>,
}

impl Row {
    /// A row every position after the first of which is a target (packed text).
    fn full(ids: Vec<u32>) -> Self {
        let targets = 1..ids.len();
        Self { ids, targets }
    }
}

/// The row of one instruction record, `None` when truncation leaves no target in it.
pub fn instruction_row(
    record: &InstructionRecord,
    tokenizer: &TextTokenizer,
    seq_len: usize,
    loss_on: LossOn,
) -> Result<Option<Row>, DataError> {
    let (mut ids, prompt_len) = tokenizer.encode_prompt_and_response(&record.prompt(), record.output.as_deref().unwrap_or(""))?;
    // A tokenizer whose post-processor ends every text with end-of-text has put it there already.
    if ids.last() != Some(&tokenizer.end_of_text) {
        ids.push(tokenizer.end_of_text);
    }
    ids.truncate(seq_len);
    let first = match loss_on {
        LossOn::Response => prompt_len.max(1),
        LossOn::All => 1,
    };
    if first >= ids.len() {
        return Ok(None);
    }
    let targets = first..ids.len();
    ids.resize(seq_len, tokenizer.padding);
    Ok(Some(Row { ids, targets }))
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
    layout: RowLayout,
    shuffle: bool,
    pass: u64,
    documents: DocumentStream,
    rows_in_pass: usize,
    pending: Vec<u32>,
    buffer: Vec<Row>,
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
        layout: RowLayout,
    ) -> Self {
        let documents = source.documents(split, seed, 0);
        Self {
            source,
            split,
            seed,
            tokenizer,
            seq_len,
            layout,
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
        layout: RowLayout,
        limit: usize,
    ) -> Result<Vec<Row>, DataError> {
        let mut stream = Self { shuffle: false, ..Self::training(source, split, 0, tokenizer, seq_len, layout) };
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
    pub fn next_row(&mut self) -> Result<Row, DataError> {
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

    fn next_cycling(&mut self) -> Result<Row, DataError> {
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
    /// row is dropped, and so is an instruction record whose prompt fills the row).
    fn next_unshuffled(&mut self) -> Result<Option<Row>, DataError> {
        loop {
            if self.layout == RowLayout::Text(RowPacking::Pack) && self.pending.len() >= self.seq_len {
                let rest = self.pending.split_off(self.seq_len);
                return Ok(Some(Row::full(std::mem::replace(&mut self.pending, rest))));
            }
            let Some(document) = self.documents.next() else {
                self.pending.clear();
                return Ok(None);
            };
            let text = match (document?, self.layout) {
                (Document::Text(text), RowLayout::Text(_)) => text,
                (Document::Instruction(record), RowLayout::Instructions(loss_on)) => {
                    match instruction_row(&record, &self.tokenizer, self.seq_len, loss_on)? {
                        Some(row) => return Ok(Some(row)),
                        None => continue,
                    }
                }
                (_, layout) => unreachable!("the data format was resolved with the row layout {layout:?}"),
            };
            let mut ids = self.tokenizer.encode(&text)?;
            if ids.is_empty() {
                continue;
            }
            ids.push(self.tokenizer.end_of_text);
            match self.layout {
                RowLayout::Text(RowPacking::Pack) => self.pending.extend(ids),
                _ => {
                    ids.truncate(self.seq_len);
                    let targets = 1..ids.len();
                    ids.resize(self.seq_len, self.tokenizer.padding);
                    return Ok(Some(Row { ids, targets }));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> TextTokenizer {
        let text = "Below is an instruction that describes a task. Write a response. the correct answer is true or false. ";
        TextTokenizer::train_bpe((0..4).map(|_| Ok(text.repeat(20))), 320).unwrap()
    }

    fn record(output: &str) -> InstructionRecord {
        InstructionRecord { instruction: "Is 7 odd?".to_owned(), input: None, output: Some(output.to_owned()), answer: None }
    }

    /// The row is the prompt's ids, the response's and end-of-text, padded; the loss is on the
    /// response and end-of-text (or everything but the first id); truncation drops the end.
    #[test]
    fn an_instruction_row_counts_the_response_or_everything() {
        let tokenizer = tokenizer();
        let prompt = tokenizer.encode_prompt(&record("").prompt()).unwrap();
        // The whole text's ids: those of the prompt (it ends in a line break, a seam the
        // byte-level pre-tokenizer always splits at), then the response's without the space a
        // text of its own would get first.
        let text = tokenizer.encode_prompt(&record("the correct answer is true").text()).unwrap();
        assert_eq!(text[..prompt.len()], prompt[..]);
        assert_ne!(text[prompt.len()..], tokenizer.encode("the correct answer is true").unwrap()[..]);
        let whole = [text, vec![tokenizer.end_of_text]].concat();
        let seq_len = whole.len() + 5;
        let row = instruction_row(&record("the correct answer is true"), &tokenizer, seq_len, LossOn::Response).unwrap().unwrap();
        assert_eq!(row.ids[..whole.len()], whole[..]);
        assert!(row.ids[whole.len()..].iter().all(|&id| id == tokenizer.padding));
        assert_eq!(row.targets, prompt.len()..whole.len());
        let all = instruction_row(&record("the correct answer is true"), &tokenizer, seq_len, LossOn::All).unwrap().unwrap();
        assert_eq!((all.ids, all.targets), (row.ids, 1..whole.len()));

        // Cut two ids short: no end-of-text, no padding, the response's start still counted.
        let cut = instruction_row(&record("the correct answer is true"), &tokenizer, whole.len() - 2, LossOn::Response).unwrap().unwrap();
        assert_eq!((cut.ids.as_slice(), cut.targets), (&whole[..whole.len() - 2], prompt.len()..whole.len() - 2));
        // A prompt that fills the row leaves nothing to learn from it.
        assert_eq!(instruction_row(&record("x"), &tokenizer, prompt.len(), LossOn::Response).unwrap(), None);
        assert!(instruction_row(&record("x"), &tokenizer, prompt.len(), LossOn::All).unwrap().is_some());
    }
}
