//! Initialisation of the GaLore/Fira scripts (HF `_init_weights`): linear and embedding weights
//! `N(0, initializer_range)`, no biases, RMSNorm weights 1.
//!
//! The normal draws are ours, not the backend's: every weight is drawn on the host from its own
//! stream, seeded by (seed, parameter path), and uploaded. Burn's CPU backends draw from one host
//! RNG in first-use order and WGPU/CUDA from a device generator whose streams follow the thread
//! layout, so the same seed gave a different model on each; this way one seed gives bit-identical
//! initial weights on every backend, whatever the order in which parameters are constructed or
//! first used. The draws stay lazy (Burn's `Param::uninitialized`): a model whose weights are
//! loaded from a file never draws them.

use burn::module::{Initializer, Module, ModuleMapper, Param};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

/// Elements drawn from one stream: the streams of a large matrix are drawn in parallel, and a fixed
/// chunk keeps the values independent of the number of threads.
const STREAM_CHUNK: usize = 1 << 16;

/// A bias-free linear layer whose weight [`seeded_normal`] draws.
pub(crate) fn linear<B: Backend>(config: LinearConfig, device: &B::Device) -> Linear<B> {
    config.with_bias(false).with_initializer(Initializer::Zeros).init(device)
}

/// An embedding whose weight [`seeded_normal`] draws.
pub(crate) fn embedding<B: Backend>(vocab: usize, hidden: usize, device: &B::Device) -> Embedding<B> {
    EmbeddingConfig::new(vocab, hidden).with_initializer(Initializer::Zeros).init(device)
}

/// RMSNorm with weights 1 and the model's epsilon (Burn's default 1e-5 is not HF's 1e-6).
pub(crate) fn rms_norm<B: Backend>(hidden: usize, eps: f64, device: &B::Device) -> RmsNorm<B> {
    RmsNormConfig::new(hidden).with_epsilon(eps).init(device)
}

/// Replaces the weight of every `Linear` and `Embedding` of `module` with a lazy draw from
/// `N(0, std)` on the host, seeded by `seed` and the weight's dotted module path.
pub(crate) fn seeded_normal<B: Backend, M: Module<B>>(module: M, seed: u64, std: f64) -> M {
    module.map(&mut SeededNormal { seed, std, path: Vec::new() })
}

struct SeededNormal {
    seed: u64,
    std: f64,
    /// (field name, type of the module that owns the field) from the root to the current field.
    path: Vec<(String, String)>,
}

impl<B: Backend> ModuleMapper<B> for SeededNormal {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push((name.to_owned(), container_type.to_owned()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let owner = self.path.last().map(|(_, owner)| owner.as_str());
        if !matches!(owner, Some("Struct:Linear" | "Struct:Embedding")) {
            return param;
        }
        let path = self.path.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(".");
        let (seed, std, shape) = (self.seed, self.std, param.lazy_shape());
        let draw = move |device: &B::Device, require_grad: bool| {
            let values = host_normal(seed, &path, shape.num_elements(), std);
            let tensor = Tensor::<B, D>::from_data(TensorData::new(values, shape.clone()), device);
            if require_grad { tensor.require_grad() } else { tensor }
        };
        // Parameters of a freshly built module require gradients (Burn's `Param::from_tensor`).
        Param::uninitialized(param.id, draw, param.lazy_device(), true, param.lazy_shape())
    }
}

/// `len` values of `N(0, std)` from the streams of (`seed`, `path`), [`STREAM_CHUNK`] per stream.
pub(crate) fn host_normal(seed: u64, path: &str, len: usize, std: f64) -> Vec<f32> {
    // `std` is validated finite and non-negative with the configuration.
    let normal = Normal::new(0.0, std).expect("a finite, non-negative standard deviation");
    let mut values = vec![0.0f32; len];
    values.par_chunks_mut(STREAM_CHUNK).enumerate().for_each(|(chunk, values)| {
        let mut rng = StdRng::seed_from_u64(stream_seed(seed, path, chunk as u64));
        values.iter_mut().for_each(|v| *v = normal.sample(&mut rng) as f32);
    });
    values
}

/// FNV-1a (64 bit) of the seed, the path and the chunk index: a seed per stream that depends on
/// nothing else (not on the platform's hasher nor on the order of construction).
fn stream_seed(seed: u64, path: &str, chunk: u64) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let bytes = seed.to_le_bytes().into_iter().chain(path.bytes()).chain(chunk.to_le_bytes());
    bytes.fold(OFFSET, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_depend_on_seed_path_and_chunk_only() {
        assert_eq!(stream_seed(7, "layers.0.attn.q_proj.weight", 0), stream_seed(7, "layers.0.attn.q_proj.weight", 0));
        let seeds = [
            stream_seed(7, "layers.0.attn.q_proj.weight", 0),
            stream_seed(8, "layers.0.attn.q_proj.weight", 0),
            stream_seed(7, "layers.0.attn.k_proj.weight", 0),
            stream_seed(7, "layers.0.attn.q_proj.weight", 1),
        ];
        for (i, a) in seeds.iter().enumerate() {
            assert!(seeds[i + 1..].iter().all(|b| a != b), "stream seeds collide: {seeds:?}");
        }
    }

    #[test]
    fn draws_have_the_requested_moments() {
        // 3 streams and a short last one; mean within 4 standard errors of 0 (σ/√n = 1.1e-4),
        // the standard deviation within 1 % of 0.02 (its standard error is 0.3 %).
        let values = host_normal(3, "w", 2 * STREAM_CHUNK + 1000, 0.02);
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let std = (values.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(mean.abs() < 4.0 * 0.02 / n.sqrt(), "mean {mean}");
        assert!((std / 0.02 - 1.0).abs() < 0.01, "std {std}");
        assert_ne!(values[..1000], values[STREAM_CHUNK..STREAM_CHUNK + 1000], "chunks repeat one stream");
    }
}
