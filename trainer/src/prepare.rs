//! What `fira train` and `fira eval` settle before touching the run directory: the data
//! sources, the tokenizer, the model configuration and the validation rows. Every failure here
//! is the input's fault (exit 2) and nothing has been written yet.

use std::sync::Arc;

use anyhow::Context;
use fira_optim::{Algorithm, FiraConfig, FiraError, ScalingMode, TargetModules};
use llama_burn::{LlamaConfig, ModelSpec};

use crate::data::documents::{DocumentSource, Split};
use crate::data::loader::RunShape;
use crate::data::rows::{Row, RowStream};
use crate::data::tokenizer::TextTokenizer;
use crate::options::{OptimizerChoice, TrainOptions};

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
            Some(spec) => DocumentSource::from_spec(spec, options.data_format).context("--data")?,
            None => DocumentSource::embedded()?,
        };
        Ok(match &options.valid_data {
            Some(spec) => Self {
                train,
                train_split: Split::All,
                valid: DocumentSource::from_spec(spec, options.data_format).context("--valid-data")?,
                valid_split: Split::All,
            },
            None => Self { valid: train.clone(), train, train_split: Split::Train, valid_split: Split::Valid },
        })
    }

    /// The validation rows (the first `--valid-rows` of the validation documents).
    pub fn valid_rows(&self, options: &TrainOptions, tokenizer: &Arc<TextTokenizer>) -> anyhow::Result<Vec<Row>> {
        let rows = RowStream::first_rows(
            self.valid.clone(),
            self.valid_split,
            Arc::clone(tokenizer),
            options.seq_len,
            options.row_layout(),
            options.valid_rows,
        )?;
        anyhow::ensure!(!rows.is_empty(), "the validation data ({}) holds no row of {} tokens", self.valid.describe(), options.seq_len);
        Ok(rows)
    }
}

/// `--tokenizer`, or a byte-level BPE trained on the training documents.
pub fn tokenizer(options: &TrainOptions, data: &RunData) -> anyhow::Result<TextTokenizer> {
    Ok(match &options.tokenizer {
        Some(path) => TextTokenizer::load(path).context("--tokenizer")?,
        None => {
            let texts = data.train.documents(data.train_split, options.seed, 0).map(|document| document.map(|d| d.text()));
            TextTokenizer::train_bpe(texts, options.vocab_size)?
        }
    })
}

/// The model of `--model` (or of `--init-from`: `pretrained`) with the tokenizer's vocabulary and
/// padding id: a preset takes the vocabulary, a config file must already have it, a pretrained
/// model has its own. Checks the sequence length
/// against the model (the rank is checked where it is resolved, `options::projection_rank`).
pub fn model_config(options: &TrainOptions, tokenizer: &TextTokenizer, pretrained: Option<&LlamaConfig>) -> anyhow::Result<LlamaConfig> {
    let (mut config, flag) = match pretrained {
        // `Pretrained::open` checked that the model has a row for every id of its tokenizer.
        Some(config) => (config.clone(), "--init-from"),
        None => {
            let spec = ModelSpec::parse(options.model());
            let mut config = spec.config().context("--model")?;
            match spec {
                ModelSpec::Preset(_) => config.vocab_size = tokenizer.vocab_size(),
                ModelSpec::File(_) => anyhow::ensure!(
                    config.vocab_size == tokenizer.vocab_size(),
                    "--model {}: vocab_size {} does not match the tokenizer's {} ids",
                    options.model(),
                    config.vocab_size,
                    tokenizer.vocab_size()
                ),
            }
            (config, "--model")
        }
    };
    config.pad_token_id = Some(tokenizer.padding as usize);
    config.validate().context(flag)?;
    anyhow::ensure!(
        options.seq_len <= config.max_position_embeddings,
        "--seq-len {} exceeds the model's max_position_embeddings {}",
        options.seq_len,
        config.max_position_embeddings
    );
    Ok(config)
}

/// The run in micro-batches, segments and steps.
pub fn run_shape(options: &TrainOptions) -> RunShape {
    let mut shape = RunShape {
        batch_size: options.batch_size,
        grad_accum: options.grad_accum,
        replicas: options.replicas(),
        nodes: options.nodes,
        seq_len: options.seq_len,
        segment_steps: 1,
        total_steps: 1,
    };
    // The budget in steps depends on the tokens per step, which the shape owns.
    shape.total_steps = options.total_steps(shape.tokens_per_step());
    shape.segment_steps = options.eval_every.min(shape.total_steps);
    shape
}

/// Fira's config with every optimizer flag set, whichever optimizer uses it.
fn optimizer_flags(options: &TrainOptions) -> FiraConfig {
    FiraConfig::new()
        .with_update_proj_gap(options.update_proj_gap)
        .with_alpha(options.alpha)
        .with_limiter(Some(options.gamma))
        .with_weight_decay(options.weight_decay)
        .with_target_modules(options.target_modules.clone())
}

/// The optimizer of `--optimizer` and its flags, projecting at `rank`.
pub fn optimizer_config(options: &TrainOptions, rank: usize) -> FiraConfig {
    let config = optimizer_flags(options).with_rank(rank);
    match options.optimizer {
        OptimizerChoice::Fira => config,
        OptimizerChoice::Galore => config.with_algorithm(Algorithm::GaLore),
        OptimizerChoice::GaloreAdd => config.with_algorithm(Algorithm::GaLoreAdd),
        OptimizerChoice::Adamw => config.with_algorithm(Algorithm::AdamW),
        OptimizerChoice::FiraMatrix => config.with_scaling(ScalingMode::Matrix),
        OptimizerChoice::FiraNoScaling => config.with_scaling(ScalingMode::None),
        OptimizerChoice::FiraNoLimiter | OptimizerChoice::FiraClip => config.with_limiter(None),
    }
}

/// Checks every optimizer flag with fira-optim's own rules, whichever optimizer uses it, and
/// names the flag at fault.
pub fn check_optimizer_flags(options: &TrainOptions) -> anyhow::Result<()> {
    optimizer_flags(options).validate().and_then(|()| TargetModules::new(&options.target_modules).map(drop)).map_err(|error| {
        let flag = match error {
            FiraError::ZeroProjectionGap => "--update-proj-gap",
            FiraError::InvalidAlpha(_) => "--alpha",
            FiraError::InvalidGamma(_) => "--gamma",
            FiraError::InvalidWeightDecay(_) => "--weight-decay",
            FiraError::InvalidTargetPattern { .. } => "--target-modules",
            _ => "optimizer options",
        };
        anyhow::Error::from(error).context(flag)
    })
}

/// Perplexity of the validation targets under the training text's unigram distribution
/// (add-one smoothed): what a model that ignores context achieves, the bar a trained model
/// must clear by far.
pub fn unigram_perplexity(train_rows: &[Row], valid_rows: &[Row], vocab: usize) -> f64 {
    let targets = |rows: &[Row]| rows.iter().flat_map(|row| row.ids[row.targets.clone()].to_vec()).collect::<Vec<u32>>();
    let mut counts = vec![1.0f64; vocab];
    for id in targets(train_rows) {
        counts[id as usize] += 1.0;
    }
    let total: f64 = counts.iter().sum();
    let valid = targets(valid_rows);
    let nll: f64 = valid.iter().map(|&id| -(counts[id as usize] / total).ln()).sum();
    (nll / valid.len().max(1) as f64).exp()
}

#[cfg(test)]
mod tests {
    use super::unigram_perplexity;
    use crate::data::rows::Row;

    #[test]
    fn unigram_perplexity_of_a_uniform_text_is_the_vocabulary() {
        // Training targets use ids 0..4 equally (plus add-one): p = 1/4 each, so perplexity 4.
        let train = vec![Row { ids: (0..401u32).map(|i| i % 4).collect(), targets: 1..401 }];
        let valid = vec![Row { ids: vec![0, 1, 2, 3, 0], targets: 1..5 }];
        let ppl = unigram_perplexity(&train, &valid, 4);
        assert!((ppl - 4.0).abs() < 1e-9, "{ppl}");
        // Only the rows' targets count: of [0, 1, 9, 9] the one target 1, with p = 101 / 410 in a
        // vocabulary of 10 (ids 4..9 seen 0 times, 1 with add-one).
        let ppl_one = unigram_perplexity(&train, &[Row { ids: vec![0, 1, 9, 9], targets: 1..2 }], 10);
        assert!((ppl_one - 410.0 / 101.0).abs() < 1e-9, "{ppl_one}");
    }
}
