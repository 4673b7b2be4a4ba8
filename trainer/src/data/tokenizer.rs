//! Text to token ids with HF `tokenizers` (pure-Rust build): a given `tokenizer.json` (e.g. T5's
//! for C4, as in the paper) or a byte-level BPE trained on the run's own training text.

use std::path::Path;

use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use super::DataError;

/// End-of-text token of the trained BPE, put between packed documents.
pub const END_OF_TEXT: &str = "<|endoftext|>";
/// Padding token of the trained BPE (one-document-per-row batches).
pub const PADDING: &str = "<pad>";
/// Text the BPE is trained on: enough for a 4k–8k vocabulary in seconds.
pub const BPE_TRAINING_BYTES: usize = 8 << 20;
/// Smallest vocabulary worth training: the 256 byte symbols, the specials and some merges.
pub const MIN_VOCAB: usize = 300;

/// A tokenizer with the two ids the data pipeline needs.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    /// Separates packed documents and ends a document row.
    pub end_of_text: u32,
    /// Fills document rows; left out of the loss.
    pub padding: u32,
}

fn tokenizer_error(e: impl std::fmt::Display) -> DataError {
    DataError::Tokenizer(e.to_string())
}

impl TextTokenizer {
    /// Trains a byte-level BPE of `vocab_size` ids (specials included) on the first
    /// [`BPE_TRAINING_BYTES`] of `documents`.
    pub fn train_bpe(documents: impl Iterator<Item = Result<String, DataError>>, vocab_size: usize) -> Result<Self, DataError> {
        if vocab_size < MIN_VOCAB {
            return Err(DataError::Tokenizer(format!("a vocabulary of {vocab_size} is too small (at least {MIN_VOCAB})")));
        }
        let mut text = Vec::new();
        let mut bytes = 0;
        for document in documents {
            let document = document?;
            bytes += document.len();
            text.push(document);
            if bytes >= BPE_TRAINING_BYTES {
                break;
            }
        }
        if bytes == 0 {
            return Err(DataError::Empty { what: "the training data".to_owned() });
        }
        let mut inner = Tokenizer::new(BPE::default());
        inner
            .with_pre_tokenizer(Some(ByteLevel::default()))
            .with_post_processor(Some(ByteLevel::default()))
            .with_decoder(Some(ByteLevel::default()));
        let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(2)
            .show_progress(false)
            .special_tokens(vec![AddedToken::from(END_OF_TEXT, true), AddedToken::from(PADDING, true)])
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build()
            .into();
        inner.train(&mut trainer, text.into_iter()).map_err(tokenizer_error)?;
        Self::with_specials(inner)
    }

    /// Loads a `tokenizer.json`.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let inner = Tokenizer::from_file(path).map_err(|e| DataError::Tokenizer(format!("{}: {e}", path.display())))?;
        Self::with_specials(inner)
    }

    fn with_specials(inner: Tokenizer) -> Result<Self, DataError> {
        let id = |names: &[&str]| names.iter().find_map(|name| inner.token_to_id(name));
        let end_of_text = id(&[END_OF_TEXT, "</s>", "<eos>", "<|end_of_text|>"])
            .ok_or_else(|| DataError::Tokenizer(format!("no end-of-text token ({END_OF_TEXT}, </s> or <eos>) in the vocabulary")))?;
        let padding = id(&[PADDING]).unwrap_or(end_of_text);
        Ok(Self { inner, end_of_text, padding })
    }

    /// Writes `tokenizer.json`, so that a run can be evaluated and resumed with the same ids.
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        atomic_file::write_with(path, |tmp| self.inner.save(tmp, false)).map_err(|e| DataError::Tokenizer(e.to_string()))
    }

    /// The tokenizer as `tokenizer.json` text (node 0 hands it to the other nodes of a run).
    pub fn to_json(&self) -> Result<String, DataError> {
        self.inner.to_string(false).map_err(tokenizer_error)
    }

    /// A tokenizer from `tokenizer.json` text.
    pub fn from_json(text: &str) -> Result<Self, DataError> {
        Self::with_specials(text.parse::<Tokenizer>().map_err(tokenizer_error)?)
    }

    /// Number of ids, special tokens included: the model's `vocab_size`.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, DataError> {
        Ok(self.inner.encode(text, false).map_err(tokenizer_error)?.get_ids().to_vec())
    }

    /// The ids of a prompt with the tokenizer's own special tokens (e.g. the `<s>` that an HF
    /// LLaMA tokenizer's post-processor puts first), as HF's `tokenizer(prompt)` gives them to
    /// `generate`; the trained BPE adds none.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>, DataError> {
        Ok(self.inner.encode(text, true).map_err(tokenizer_error)?.get_ids().to_vec())
    }

    /// The ids of `prompt` followed by `response`, encoded as one text with the tokenizer's
    /// special tokens (as HF's `tokenizer(prompt + response)`: the ids at the seam are those of the
    /// whole text, not of two separate encodings), and how many of them are the prompt's: the
    /// leading ids that end within it (a leading special token among them), so that an id
    /// spanning the seam belongs to the response.
    pub fn encode_prompt_and_response(&self, prompt: &str, response: &str) -> Result<(Vec<u32>, usize), DataError> {
        let encoding = self.inner.encode(format!("{prompt}{response}"), true).map_err(tokenizer_error)?;
        let prompt_ids = encoding.get_offsets().iter().take_while(|&&(_, end)| end <= prompt.len()).count();
        Ok((encoding.get_ids().to_vec(), prompt_ids))
    }

    /// The text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String, DataError> {
        self.inner.decode(ids, true).map_err(tokenizer_error)
    }
}
