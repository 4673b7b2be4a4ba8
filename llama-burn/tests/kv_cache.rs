//! Incremental decoding: the logits of [`Llama::forward_cached`], fed a sequence chunk by chunk
//! (a prompt, single tokens, a few at once), equal those of [`Llama::forward`] of the whole
//! sequence, for multi-head, grouped-query and multi-query attention with tied embeddings, on
//! the test backend (`FIRA_TEST_DEVICE`); a chunk past the model's positions is refused and
//! leaves the cache as it was.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use fira_testkit::with_test_backend;
use llama_burn::{KvCache, Llama, LlamaConfig, LlamaError};

/// Chunk lengths of one sequence: a prompt, then single tokens, then several at once.
const CHUNKS: [usize; 6] = [4, 1, 1, 3, 1, 1];

/// Tolerance relative to the largest logit: the cached attention sums over the same keys in
/// other matmul shapes, so the two differ by float rounding only (measured on ndarray: 6e-7 of
/// the largest logit at most).
const TOLERANCE: f32 = 2e-5;

fn configs() -> Vec<(&'static str, LlamaConfig)> {
    // Weights larger than the default 0.02 make the attention far from uniform, so that a
    // position or mask error changes the logits.
    let base = LlamaConfig::new(61, 48, 64, 4, 3).with_initializer_range(0.3).with_max_position_embeddings(16);
    vec![
        ("multi-head", base.clone()),
        ("grouped-query", base.clone().with_num_key_value_heads(Some(2)).with_rope_theta(5e5)),
        ("multi-query, tied", base.with_num_key_value_heads(Some(1)).with_tie_word_embeddings(true)),
    ]
}

fn ids<B: Backend>(values: &[i64], device: &B::Device) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(values.to_vec(), [1, values.len()]), device)
}

fn host<B: Backend>(t: Tensor<B, 3>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

/// Two rows, fed chunk by chunk through one cache; the logits of every position, in order.
fn cached_logits<B: Backend>(model: &Llama<B>, rows: &[Vec<i64>], device: &B::Device) -> Vec<f32> {
    let batch: Vec<i64> = rows.concat();
    let seq = rows[0].len();
    let all = Tensor::<B, 2, Int>::from_data(TensorData::new(batch, [rows.len(), seq]), device);
    let mut cache = KvCache::new();
    let mut chunks = Vec::new();
    for len in CHUNKS {
        let start = cache.len();
        chunks.push(model.forward_cached(all.clone().narrow(1, start, len), &mut cache).unwrap());
        assert_eq!(cache.len(), start + len);
    }
    host(Tensor::cat(chunks, 1))
}

#[test]
fn cached_decoding_gives_the_logits_of_the_whole_sequence() {
    with_test_backend!(|device: B| {
        let seq: usize = CHUNKS.iter().sum();
        for (name, config) in configs() {
            let model = config.init::<B>(7, &device).unwrap();
            let rows: Vec<Vec<i64>> =
                (0..2).map(|r| (0..seq).map(|i| ((i * 13 + r * 5 + 1) % config.vocab_size) as i64).collect()).collect();
            let whole = Tensor::<B, 2, Int>::from_data(TensorData::new(rows.concat(), [2, seq]), &device);
            let full = host(model.forward(whole).unwrap());
            let cached = cached_logits(&model, &rows, &device);
            let scale = full.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = full.iter().zip(&cached).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            println!("{name}: largest logit {scale:.3}, worst difference {worst:.2e}");
            assert!(scale > 0.5, "{name}: logits too small to tell positions apart ({scale})");
            assert!(worst <= TOLERANCE * scale, "{name}: cached logits differ by {worst} (largest logit {scale})");
        }
    });
}

#[test]
fn a_chunk_past_the_model_positions_is_refused_and_keeps_the_cache() {
    with_test_backend!(|device: B| {
        let (_, config) = configs().remove(1);
        let model = config.init::<B>(7, &device).unwrap();
        let mut cache = KvCache::new();
        model.forward_cached(ids::<B>(&[1; 12], &device), &mut cache).unwrap();
        match model.forward_cached(ids::<B>(&[2; 5], &device), &mut cache) {
            Err(LlamaError::SequenceTooLong { len: 17, max: 16 }) => {}
            other => panic!("expected SequenceTooLong 17 > 16, got {:?}", other.map(|t| t.dims())),
        }
        assert_eq!(cache.len(), 12);
        // The cache still serves the positions that fit.
        let logits = model.forward_cached(ids::<B>(&[2; 4], &device), &mut cache).unwrap();
        assert_eq!((logits.dims(), cache.len()), ([1, 4, config.vocab_size], 16));
    });
}
