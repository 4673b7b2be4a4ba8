//! One seed, one initial model: the weights drawn on the host per (seed, parameter path) are
//! bit-identical on ndarray, flex and the backend of `FIRA_TEST_DEVICE` (wgpu, cuda), whatever the
//! order in which the parameters are first used, and follow the scripts' initialisation.

use std::collections::BTreeMap;

use burn::backend::{Flex, NdArray};
use burn::tensor::backend::Backend;
use burn_store::ModuleSnapshot;
use fira_testkit::with_test_backend;
use llama_burn::{Llama, LlamaConfig};

/// Two layers, and an embedding and lm_head of 1100 × 64 = 70,400 elements: more than one of the
/// initialiser's 65,536-element streams, so the chunked draw is covered.
fn config() -> LlamaConfig {
    LlamaConfig::new(1100, 64, 96, 4, 2)
}

/// Every parameter's values as bit patterns, by path.
fn weights<B: Backend>(model: &Llama<B>) -> BTreeMap<String, Vec<u32>> {
    model
        .collect(None, None, false)
        .iter()
        .map(|snapshot| {
            let values: Vec<f32> = snapshot.to_data().unwrap().convert::<f32>().to_vec().unwrap();
            (snapshot.full_path(), values.iter().map(|v| v.to_bits()).collect())
        })
        .collect()
}

fn initial<B: Backend>(seed: u64, device: &B::Device) -> BTreeMap<String, Vec<u32>> {
    weights(&config().init::<B>(seed, device).unwrap())
}

fn assert_same(a: &BTreeMap<String, Vec<u32>>, b: &BTreeMap<String, Vec<u32>>, what: &str) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{what}: other parameters");
    for (path, values) in a {
        let differing = values.iter().zip(&b[path]).filter(|(x, y)| x != y).count();
        assert_eq!(differing, 0, "{what}: {path} differs in {differing} of {} values", values.len());
    }
}

#[test]
fn one_seed_gives_bit_identical_weights_on_every_backend() {
    let ndarray = initial::<NdArray<f32>>(7, &Default::default());
    assert_same(&ndarray, &initial::<Flex>(7, &Default::default()), "flex vs ndarray");
    with_test_backend!(|device: T| {
        assert_same(&ndarray, &initial::<T>(7, &device), "FIRA_TEST_DEVICE vs ndarray");
    });
}

#[test]
fn the_order_of_first_use_does_not_change_the_weights() {
    let device = Default::default();
    let model: Llama<Flex> = config().init(7, &device).unwrap();
    // lm_head and the last layer drawn first, the embedding last.
    let _ = (model.output_weight(), model.layers[1].mlp.down_proj.weight.val(), model.layers[0].attn.q_proj.weight.val());
    assert_same(&initial::<Flex>(7, &device), &weights(&model), "lm_head first vs in order");
}

#[test]
fn weights_follow_the_scripts_initialisation_and_the_seed() {
    let device = Default::default();
    let (seven, eight) = (initial::<Flex>(7, &device), initial::<Flex>(8, &device));
    let std = config().initializer_range as f32;
    for (path, bits) in &seven {
        let values: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
        if path.ends_with("gamma") {
            assert!(values.iter().all(|&v| v == 1.0), "{path}: RMSNorm weights are 1");
            continue;
        }
        // N(0, 0.02): the sample standard deviation of ≥ 4,096 values within 5 % (its standard
        // error is ≤ 1.1 %).
        let n = values.len() as f32;
        let sample_std = (values.iter().map(|v| v * v).sum::<f32>() / n).sqrt();
        assert!((sample_std / std - 1.0).abs() < 0.05, "{path}: std {sample_std}, expected {std}");
        assert_ne!(bits, &eight[path], "{path}: seeds 7 and 8 drew the same values");
    }
    // Matrices of one shape in one layer are drawn from their own streams.
    assert_ne!(seven["layers.0.attn.q_proj.weight"], seven["layers.0.attn.k_proj.weight"]);
    assert_ne!(seven["layers.0.attn.q_proj.weight"], seven["layers.1.attn.q_proj.weight"]);
}
