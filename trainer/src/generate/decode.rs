//! The decoding loop: one prompt continued token by token until an end-of-text token, the
//! token budget or the model's last position.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use llama_burn::{KvCache, Llama};
use serde::Serialize;

use super::sampler::{TokenPicker, log_probability};

/// How the logits of each new position are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caching {
    /// Each new token is one position through the model, attending to the cached keys/values.
    KvCache,
    /// The whole sequence again for every new token (the reference the cache is checked against).
    Recompute,
}

/// Why a completion ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// The model produced one of the stop tokens (kept as the last id).
    EndOfText,
    /// `--max-new-tokens` were generated.
    MaxNewTokens,
    /// The sequence reached the model's `max_position_embeddings`.
    ContextFull,
}

/// One continued prompt.
#[derive(Clone, Debug, Serialize)]
pub struct Completion {
    pub ids: Vec<u32>,
    /// The model's log-probability of each new id (before temperature, top-k and top-p).
    pub log_probabilities: Vec<f64>,
    pub stop: Stop,
}

/// When to stop.
pub struct Limits<'a> {
    pub max_new_tokens: usize,
    pub stop_ids: &'a [u32],
}

/// Continues `prompt` (at least one id, fewer than the model's `max_position_embeddings`); `None` when the
/// model's logits are NaN.
pub fn complete<B: Backend>(
    model: &Llama<B>,
    prompt: &[u32],
    limits: &Limits,
    picker: &mut TokenPicker,
    caching: Caching,
    device: &B::Device,
) -> Option<Completion> {
    let row = |ids: &[u32]| {
        let values: Vec<i64> = ids.iter().map(|&id| i64::from(id)).collect();
        Tensor::<B, 2, Int>::from_data(TensorData::new(values, [1, ids.len()]), device)
    };
    let mut cache = KvCache::new();
    let mut sequence = prompt.to_vec();
    let mut completion = Completion { ids: Vec::new(), log_probabilities: Vec::new(), stop: Stop::MaxNewTokens };
    // The positions fed so far are checked against the model's limit before each forward.
    const CHECKED: &str = "positions checked against max_position_embeddings";
    let mut logits = match caching {
        Caching::KvCache => model.forward_cached(row(prompt), &mut cache).expect(CHECKED),
        Caching::Recompute => model.forward(row(prompt)).expect(CHECKED),
    };
    for _ in 0..limits.max_new_tokens {
        let positions = logits.dims()[1];
        let last: Vec<f32> = logits.narrow(1, positions - 1, 1).into_data().convert::<f32>().to_vec().expect("f32 logits");
        let token = picker.pick(&last)?;
        completion.ids.push(token);
        completion.log_probabilities.push(log_probability(&last, token));
        sequence.push(token);
        if limits.stop_ids.contains(&token) {
            completion.stop = Stop::EndOfText;
            return Some(completion);
        }
        if completion.ids.len() == limits.max_new_tokens {
            break;
        }
        if sequence.len() >= model.max_position_embeddings {
            completion.stop = Stop::ContextFull;
            return Some(completion);
        }
        logits = match caching {
            Caching::KvCache => model.forward_cached(row(&[token]), &mut cache).expect(CHECKED),
            Caching::Recompute => model.forward(row(&sequence)).expect(CHECKED),
        };
    }
    Some(completion)
}
