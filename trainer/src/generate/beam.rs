//! Beam search, as HF's `generate(num_beams=n)` without sampling (`length_penalty` 1,
//! `early_stopping=False`), the decoding of LLM-Adapters' evaluation script (4 beams): the
//! `n` most likely continuations grow together as one batch through the KV cache; a beam that
//! produces a stop token among the best `n` candidates becomes a finished hypothesis scored by its
//! summed log-probability over its length; the search ends when no running beam can beat the
//! worst of `n` finished ones, or at the token budget, and the best-scoring hypothesis wins.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use llama_burn::{KvCache, Llama};

use super::decode::{Completion, Limits, Stop};
use super::sampler::log_probability;

/// A continuation: its new ids and the model's log-probability of each.
#[derive(Clone, Debug)]
struct Beam {
    ids: Vec<u32>,
    log_probabilities: Vec<f64>,
    sum: f64,
}

impl Beam {
    /// HF's hypothesis score: the summed log-probability over the generated length (here the
    /// stop token included, so that a stop at the first position has a finite score).
    fn score(&self) -> f64 {
        self.sum / self.ids.len() as f64
    }

    fn extended(&self, token: u32, log_probability: f64) -> Self {
        let mut next = self.clone();
        next.ids.push(token);
        next.log_probabilities.push(log_probability);
        next.sum += log_probability;
        next
    }
}

/// The best of `beams` beams continuing `prompt` (at least one id, fewer than the model's
/// positions); `None` when the model's logits are NaN.
pub fn beam_search<B: Backend>(model: &Llama<B>, prompt: &[u32], limits: &Limits, beams: usize, device: &B::Device) -> Option<Completion> {
    const CHECKED: &str = "positions checked against max_position_embeddings";
    let mut cache = KvCache::new();
    let values: Vec<i64> = prompt.iter().map(|&id| i64::from(id)).collect();
    let mut logits =
        model.forward_cached(Tensor::from_data(TensorData::new(values, [1, prompt.len()]), device), &mut cache).expect(CHECKED);
    let mut running = vec![Beam { ids: Vec::new(), log_probabilities: Vec::new(), sum: 0.0 }];
    let mut finished: Vec<Beam> = Vec::new();
    let mut stop = Stop::MaxNewTokens;
    for step in 1..=limits.max_new_tokens {
        let [rows, positions, vocab] = logits.dims();
        let last: Vec<f32> = logits.narrow(1, positions - 1, 1).into_data().convert::<f32>().to_vec().expect("f32 logits");
        if last.iter().any(|l| l.is_nan()) {
            return None;
        }
        // Every (beam, token) with its summed log-probability; the best 2n, best first (ties:
        // the earlier beam, then the lower id, as a stable sort).
        let mut candidates: Vec<(f64, usize, u32, f64)> = Vec::with_capacity(rows * vocab);
        for (row, beam) in running.iter().enumerate() {
            let row_logits = &last[row * vocab..(row + 1) * vocab];
            let log_total = log_probability(row_logits, 0) - f64::from(row_logits[0]);
            candidates.extend(row_logits.iter().enumerate().map(|(token, &l)| {
                let log_p = f64::from(l) + log_total;
                (beam.sum + log_p, row, token as u32, log_p)
            }));
        }
        let keep = (2 * beams).min(candidates.len());
        candidates.select_nth_unstable_by(keep - 1, |a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
        candidates.truncate(keep);
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));

        let mut next: Vec<(usize, Beam)> = Vec::with_capacity(beams);
        for (rank, &(_, row, token, log_p)) in candidates.iter().enumerate() {
            let beam = running[row].extended(token, log_p);
            if limits.stop_ids.contains(&token) {
                // A stop below the best n candidates is not a hypothesis (HF's rule).
                if rank < beams {
                    add_hypothesis(&mut finished, beam, beams);
                }
            } else {
                next.push((row, beam));
            }
            if next.len() == beams {
                break;
            }
        }
        // HF's `is_done` with early_stopping=False: the best running beam, at this length,
        // cannot reach the worst finished score.
        let best_running = next.first().map_or(f64::NEG_INFINITY, |(_, beam)| beam.sum / step as f64);
        let done = finished.len() >= beams && finished.iter().map(Beam::score).fold(f64::INFINITY, f64::min) >= best_running;
        let full = prompt.len() + step >= model.max_position_embeddings;
        if done || next.is_empty() || step == limits.max_new_tokens || full {
            if full && !done {
                stop = Stop::ContextFull;
            }
            running = next.into_iter().map(|(_, beam)| beam).collect();
            break;
        }
        let rows: Vec<usize> = next.iter().map(|(row, _)| *row).collect();
        cache.select_rows(&rows, device);
        let tokens: Vec<i64> = next.iter().map(|(_, beam)| i64::from(*beam.ids.last().expect("a beam has a new id"))).collect();
        let input = Tensor::<B, 2, Int>::from_data(TensorData::new(tokens, [next.len(), 1]), device);
        logits = model.forward_cached(input, &mut cache).expect(CHECKED);
        running = next.into_iter().map(|(_, beam)| beam).collect();
    }
    // HF's finalize: the running beams join the hypotheses, and the best score wins.
    for beam in running {
        add_hypothesis(&mut finished, beam, beams);
    }
    let best = finished.into_iter().reduce(|best, beam| if beam.score() > best.score() { beam } else { best })?;
    if best.ids.last().is_some_and(|id| limits.stop_ids.contains(id)) {
        stop = Stop::EndOfText;
    }
    Some(Completion { ids: best.ids, log_probabilities: best.log_probabilities, stop })
}

/// Adds `beam` to the `beams` best hypotheses, dropping the worst when there are more.
fn add_hypothesis(finished: &mut Vec<Beam>, beam: Beam, beams: usize) {
    finished.push(beam);
    if finished.len() > beams {
        let worst = (0..finished.len()).min_by(|&a, &b| finished[a].score().total_cmp(&finished[b].score())).expect("not empty");
        finished.remove(worst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::decode::{Caching, complete};
    use crate::generate::sampler::{Decoding, TokenPicker};
    use burn::tensor::activation::log_softmax;
    use burn_ndarray::NdArray;
    use llama_burn::LlamaConfig;

    type B = NdArray<f32>;

    fn model(vocab: usize) -> Llama<B> {
        LlamaConfig::new(vocab, 32, 64, 2, 4)
            .with_initializer_range(0.5)
            .with_max_position_embeddings(32)
            .init::<B>(5, &Default::default())
            .unwrap()
    }

    /// `Σ log p` of `new` after `prompt`, from one forward of the whole sequence.
    fn sequence_log_probability(model: &Llama<B>, prompt: &[u32], new: &[u32]) -> f64 {
        let ids: Vec<i64> = prompt.iter().chain(new).map(|&id| i64::from(id)).collect();
        let len = ids.len();
        let logits = model.forward(Tensor::from_data(TensorData::new(ids.clone(), [1, len]), &Default::default())).unwrap();
        let log_p: Vec<f32> = log_softmax(logits, 2).into_data().to_vec().unwrap();
        let vocab = log_p.len() / len;
        (prompt.len()..len).map(|t| f64::from(log_p[(t - 1) * vocab + ids[t] as usize])).sum()
    }

    /// With as many beams as there are prefixes, beam search is exhaustive: it returns the most
    /// likely of all 6³ continuations of 3 tokens, found here by scoring every one; each of its
    /// log-probabilities is the model's.
    #[test]
    fn enough_beams_find_the_most_likely_continuation() {
        let (model, prompt) = (model(6), [1u32, 4, 2]);
        let limits = Limits { max_new_tokens: 3, stop_ids: &[] };
        let found = beam_search(&model, &prompt, &limits, 36, &Default::default()).unwrap();
        let all = (0..216u32).map(|i| vec![i / 36, i / 6 % 6, i % 6]);
        let best = all
            .map(|new| (sequence_log_probability(&model, &prompt, &new), new))
            .fold((f64::NEG_INFINITY, vec![]), |a, b| if b.0 > a.0 { b } else { a });
        assert_eq!(found.ids, best.1);
        let sum: f64 = found.log_probabilities.iter().sum();
        assert!((sum - best.0).abs() < 1e-4, "{sum} vs {}", best.0);
        assert_eq!(found.stop, Stop::MaxNewTokens);
    }

    /// One beam without stop tokens is greedy decoding.
    #[test]
    fn one_beam_is_greedy() {
        let (model, prompt) = (model(11), [3u32, 7]);
        let limits = Limits { max_new_tokens: 8, stop_ids: &[] };
        let beam = beam_search(&model, &prompt, &limits, 1, &Default::default()).unwrap();
        let greedy = complete(&model, &prompt, &limits, &mut TokenPicker::new(Decoding::Greedy, 0), Caching::KvCache, &Default::default());
        assert_eq!(beam.ids, greedy.unwrap().ids);
    }

    /// A stop token ends a hypothesis, which is kept with its stop id and wins when no running
    /// beam can beat it.
    #[test]
    fn a_stopped_hypothesis_keeps_its_stop_token() {
        let (model, prompt) = (model(6), [1u32, 4, 2]);
        let mut stopped = 0;
        for stop in 0..6u32 {
            let limits = Limits { max_new_tokens: 6, stop_ids: &[stop] };
            let found = beam_search(&model, &prompt, &limits, 4, &Default::default()).unwrap();
            let stops = found.ids.iter().filter(|&&id| id == stop).count();
            match found.stop {
                Stop::EndOfText => {
                    assert!(stops == 1 && found.ids.last() == Some(&stop), "{found:?}");
                    stopped += 1;
                }
                _ => assert!(stops == 0 && found.ids.len() == 6, "{found:?}"),
            }
            let sum: f64 = found.log_probabilities.iter().sum();
            assert!((sum - sequence_log_probability(&model, &prompt, &found.ids)).abs() < 1e-4);
        }
        assert!(stopped > 0, "no stop token ended the best hypothesis");
    }
}
