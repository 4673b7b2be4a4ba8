//! What `fira train` and `fira eval` settle before touching the run directory: the data
//! sources, the tokenizer, the model configuration and the validation rows. Every failure here
//! is the input's fault (exit 2) and nothing has been written yet.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use llama_burn::{LlamaConfig, PRESETS};

use crate::data::documents::{DocumentSource, Split};
use crate::data::loader::RunShape;
use crate::data::rows::{RowPacking, RowStream};
use crate::data::tokenizer::TextTokenizer;
use crate::options::TrainOptions;

/// The data of a run.
pub struct RunData {
    pub train: DocumentSource,
    pub train_split: Split,
    pub valid: DocumentSource,
    pub valid_split: Split,
}

impl RunData {
    /// `--data` (or the embedded corpus) and `--valid-data` (or the held-out documents).
    pub fn open(options: &TrainOptions) -> anyhow::Result<Self> {
        let train = match &options.data {
            Some(spec) => DocumentSource::from_spec(spec).context("--data")?,
            None => DocumentSource::embedded()?,
        };
        Ok(match &options.valid_data {
            Some(spec) => Self { train, train_split: Split::All, valid: DocumentSource::from_spec(spec).context("--valid-data")?, valid_split: Split::All },
            None => Self { valid: train.clone(), train, train_split: Split::Train, valid_split: Split::Valid },
        })
    }

    /// The validation rows (the first `--valid-rows` of the validation documents).
    pub fn valid_rows(&self, options: &TrainOptions, tokenizer: &Arc<TextTokenizer>) -> anyhow::Result<Vec<Vec<u32>>> {
        let rows = RowStream::first_rows(
            self.valid.clone(),
            self.valid_split,
            Arc::clone(tokenizer),
            options.seq_len,
            options.packing,
            options.valid_rows,
        )?;
        anyhow::ensure!(
            !rows.is_empty(),
            "the validation data ({}) holds no row of {} tokens",
            self.valid.describe(),
            options.seq_len
        );
        Ok(rows)
    }
}

/// `--tokenizer`, or a byte-level BPE trained on the training documents.
pub fn tokenizer(options: &TrainOptions, data: &RunData) -> anyhow::Result<TextTokenizer> {
    Ok(match &options.tokenizer {
        Some(path) => TextTokenizer::load(path).context("--tokenizer")?,
        None => TextTokenizer::train_bpe(data.train.documents(data.train_split, options.seed, 0), options.vocab_size)?,
    })
}

/// The model of `--model` with the tokenizer's vocabulary: a preset takes it, a config file
/// must already have it. Checks the sequence length and the rank against the model.
pub fn model_config(options: &TrainOptions, tokenizer: &TextTokenizer) -> anyhow::Result<LlamaConfig> {
    let mut config = LlamaConfig::from_preset_or_file(&options.model).context("--model")?;
    let is_preset = PRESETS.iter().any(|p| p.0.eq_ignore_ascii_case(&options.model)) && !Path::new(&options.model).is_file();
    if is_preset {
        config.vocab_size = tokenizer.vocab_size();
    } else {
        anyhow::ensure!(
            config.vocab_size == tokenizer.vocab_size(),
            "--model {}: vocab_size {} does not match the tokenizer's {} ids",
            options.model,
            config.vocab_size,
            tokenizer.vocab_size()
        );
    }
    config.pad_token_id = Some(tokenizer.padding as usize);
    config.validate().context("--model")?;
    anyhow::ensure!(
        options.seq_len <= config.max_position_embeddings,
        "--seq-len {} exceeds the model's max_position_embeddings {}",
        options.seq_len,
        config.max_position_embeddings
    );
    let smallest = config.hidden_size.min(config.intermediate_size);
    anyhow::ensure!(
        rank(options, &config) <= smallest,
        "--rank {} is larger than the matrices it projects (their smaller side is {smallest})",
        rank(options, &config)
    );
    Ok(config)
}

/// The id left out of the loss: only one-document rows are padded.
pub fn loss_padding(options: &TrainOptions, tokenizer: &TextTokenizer) -> Option<u32> {
    (options.packing == RowPacking::Document).then_some(tokenizer.padding)
}

/// The run in micro-batches, segments and steps.
pub fn run_shape(options: &TrainOptions) -> RunShape {
    let total_steps = options.total_steps();
    RunShape {
        batch_size: options.batch_size,
        grad_accum: options.grad_accum,
        replicas: options.devices.len().max(1),
        segment_steps: options.eval_every.min(total_steps.max(1)),
        total_steps,
        seq_len: options.seq_len,
    }
}

/// `--rank`, or a quarter of the hidden size.
pub fn rank(options: &TrainOptions, config: &LlamaConfig) -> usize {
    if options.rank == 0 { (config.hidden_size / 4).max(1) } else { options.rank }
}

/// Perplexity of the validation targets under the training text's unigram distribution
/// (add-one smoothed): what a model that ignores context achieves, the bar a trained model
/// must clear by far.
pub fn unigram_perplexity(train_rows: &[Vec<u32>], valid_rows: &[Vec<u32>], vocab: usize, padding: Option<u32>) -> f64 {
    let mut counts = vec![1.0f64; vocab];
    for &id in train_rows.iter().flat_map(|r| &r[1..]) {
        if Some(id) != padding {
            counts[id as usize] += 1.0;
        }
    }
    let total: f64 = counts.iter().sum();
    let (mut nll, mut n) = (0.0, 0usize);
    for &id in valid_rows.iter().flat_map(|r| &r[1..]) {
        if Some(id) != padding {
            nll -= (counts[id as usize] / total).ln();
            n += 1;
        }
    }
    (nll / n.max(1) as f64).exp()
}

#[cfg(test)]
mod tests {
    use super::unigram_perplexity;

    #[test]
    fn unigram_perplexity_of_a_uniform_text_is_the_vocabulary() {
        // Training text uses ids 0..4 equally (plus add-one): p = 1/4 each, so perplexity 4.
        let train = vec![(0..401u32).map(|i| i % 4).collect::<Vec<_>>()];
        let valid = vec![vec![0, 1, 2, 3, 0]];
        let ppl = unigram_perplexity(&train, &valid, 4, None);
        assert!((ppl - 4.0).abs() < 1e-9, "{ppl}");
        // Padding targets are left out.
        let ppl_pad = unigram_perplexity(&train, &[vec![0, 1, 9, 9]], 10, Some(9));
        assert!(ppl_pad.is_finite() && ppl_pad > 1.0);
    }
}
