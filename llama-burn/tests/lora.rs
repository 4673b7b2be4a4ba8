//! LoRA adapters: a fresh adapter leaves the model's function unchanged and trains alone (the
//! base frozen, `B` zero so only `B` gets a gradient at first), a trained one merges into the
//! weights (`W + A B · α/r`, checked element by element on the host and by the logits), the HF
//! export holds the merged weights without adapter tensors, PEFT's adapter file holds `A`ᵀ and
//! `B`ᵀ under PEFT's names, and configurations that adapt nothing are refused.

use burn::backend::{Autodiff, NdArray};
use burn::module::Param;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use fira_testkit::SafetensorsFile;
use llama_burn::{Llama, LlamaConfig, LlamaError, LoraConfig, LossTargets};

type B = NdArray<f32>;
type AD = Autodiff<NdArray<f32>>;

fn config() -> LlamaConfig {
    LlamaConfig::new(40, 32, 48, 4, 2).with_num_key_value_heads(Some(2)).with_initializer_range(0.2)
}

fn lora(targets: &[&str]) -> LoraConfig {
    LoraConfig::new(4, 8.0, 0.0, targets.iter().map(|t| t.to_string()).collect())
}

fn ids<Bk: burn::tensor::backend::Backend>(device: &Bk::Device) -> Tensor<Bk, 2, Int> {
    let values: Vec<i64> = (0..2 * 7).map(|i| (i * 11 % 40) as i64).collect();
    Tensor::from_data(TensorData::new(values, [2, 7]), device)
}

fn host<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

/// Every adapter's `B` replaced by random values, as after training.
fn trained(mut model: Llama<B>) -> Llama<B> {
    let device = Default::default();
    for layer in &mut model.layers {
        for adapter in [&mut layer.attn.q_proj_lora, &mut layer.attn.v_proj_lora, &mut layer.mlp.down_proj_lora].into_iter().flatten() {
            let shape = adapter.lora_b.weight.dims();
            adapter.lora_b.weight = Param::from_tensor(Tensor::random(shape, Distribution::Normal(0.0, 0.3), &device));
        }
    }
    model
}

#[test]
fn a_fresh_adapter_changes_nothing_and_only_the_adapters_train() {
    let device = Default::default();
    let base: Llama<AD> = config().init(1, &device).unwrap();
    let before = base.forward(ids(&device)).unwrap().into_data();
    let adapted = base.with_lora(&lora(&["q_proj", "v_proj", "down_proj"]), 3).unwrap();
    assert!(adapted.has_lora());
    assert_eq!(adapted.forward(ids(&device)).unwrap().into_data(), before);

    let grads = adapted.training_loss(ids(&device), &LossTargets::All).unwrap().backward();
    let layer = &adapted.layers[1];
    assert!(layer.attn.q_proj.weight.grad(&grads).is_none() && adapted.embed_tokens.weight.grad(&grads).is_none());
    assert!(layer.attn.k_proj_lora.is_none() && layer.mlp.up_proj_lora.is_none());
    let adapter = layer.attn.q_proj_lora.as_ref().unwrap();
    assert_eq!((adapter.lora_a.weight.dims(), adapter.lora_b.weight.dims()), ([32, 4], [4, 32]));
    let max = |t: Tensor<NdArray, 2>| t.abs().max().into_scalar();
    // dL/dA = xᵀ (dL/dh) Bᵀ is zero while B is; dL/dB = (x A)ᵀ dL/dh is not.
    assert_eq!(max(adapter.lora_a.weight.grad(&grads).unwrap()), 0.0);
    assert!(max(adapter.lora_b.weight.grad(&grads).unwrap()) > 0.0);
    let down = layer.mlp.down_proj_lora.as_ref().unwrap();
    assert_eq!((down.lora_a.weight.dims(), down.lora_b.weight.dims()), ([48, 4], [4, 32]));
    // Two layers of q (32 + 32), v (32 + 16: two key/value heads of 8) and down (48 + 32), rank 4.
    let counted: usize = adapted
        .layers
        .iter()
        .flat_map(|l| [&l.attn.q_proj_lora, &l.attn.v_proj_lora, &l.mlp.down_proj_lora])
        .map(|a| {
            let a = a.as_ref().unwrap();
            a.lora_a.weight.dims().iter().product::<usize>() + a.lora_b.weight.dims().iter().product::<usize>()
        })
        .sum();
    assert_eq!(counted, 2 * 4 * (64 + 48 + 80));
    assert_eq!(lora(&["q_proj", "v_proj", "down_proj"]).adapter_parameters(&config()), counted);
}

#[test]
fn a_trained_adapter_merges_into_its_weight() {
    let device = Default::default();
    let model = trained(config().init::<B>(1, &device).unwrap().with_lora(&lora(&["q_proj", "v_proj", "down_proj"]), 3).unwrap());
    let adapter = model.layers[0].attn.q_proj_lora.as_ref().unwrap();
    let (a, b, w) = (host(adapter.lora_a.weight.val()), host(adapter.lora_b.weight.val()), host(model.layers[0].attn.q_proj.weight.val()));
    let logits = host(model.forward(ids(&device)).unwrap());

    let merged = model.merge_lora();
    assert!(!merged.has_lora());
    // W + A B · α/r, with α/r = 8 / 4, summed on the host.
    let merged_w = host(merged.layers[0].attn.q_proj.weight.val());
    for i in 0..32 {
        for j in 0..32 {
            let delta: f32 = (0..4).map(|k| a[i * 4 + k] * b[k * 32 + j]).sum::<f32>() * 2.0;
            assert!((merged_w[i * 32 + j] - (w[i * 32 + j] + delta)).abs() < 1e-5, "({i}, {j})");
        }
    }
    let merged_logits = host(merged.forward(ids(&device)).unwrap());
    let scale = logits.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = logits.iter().zip(&merged_logits).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(worst <= 1e-5 * scale, "merged logits differ by {worst} (scale {scale})");
}

#[test]
fn exports_hold_the_merged_weights_and_the_adapters_in_peft_layout() {
    let device = Default::default();
    let dir = std::env::temp_dir().join(format!("llama-burn-lora-{}", std::process::id()));
    let targets = lora(&["q_proj", "v_proj", "down_proj"]);
    let model = trained(config().init::<B>(1, &device).unwrap().with_lora(&targets, 3).unwrap());

    model.save_hf_dir(&config(), dir.join("hf")).unwrap();
    let (_, reloaded) = LlamaConfig::load_hf_dir::<B>(dir.join("hf"), &device).unwrap();
    let merged = model.clone().merge_lora();
    assert_eq!(host(reloaded.layers[1].mlp.down_proj.weight.val()), host(merged.layers[1].mlp.down_proj.weight.val()));
    let hf = SafetensorsFile::read(&dir.join("hf/model.safetensors")).unwrap();
    assert!(hf.tensors.keys().all(|name| !name.contains("lora")), "{:?}", hf.tensors.keys());

    model.save_lora_adapter(&targets, "base", dir.join("adapter")).unwrap();
    let peft = SafetensorsFile::read(&dir.join("adapter/adapter_model.safetensors")).unwrap();
    assert_eq!(peft.tensors.len(), 2 * 3 * 2, "{:?}", peft.tensors.keys());
    let adapter = model.layers[1].mlp.down_proj_lora.as_ref().unwrap();
    let a = peft.tensor("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight");
    let b = peft.tensor("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight");
    assert_eq!((a.shape.as_slice(), b.shape.as_slice()), (&[4, 48][..], &[16, 4][..]));
    // lora_A is Aᵀ: its row k is column k of A.
    let ours = host(adapter.lora_a.weight.val());
    assert!((0..4).all(|k| (0..48).all(|i| a.values[k * 48 + i] == ours[i * 4 + k])));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("adapter/adapter_config.json")).unwrap()).unwrap();
    assert_eq!((config["r"].as_u64(), config["lora_alpha"].as_f64(), config["peft_type"].as_str()), (Some(4), Some(8.0), Some("LORA")));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn adapters_that_fit_nothing_are_refused() {
    let model = || config().init::<B>(1, &Default::default()).unwrap();
    let refused = |config: LoraConfig, expected: &str| match model().with_lora(&config, 0) {
        Err(LlamaError::InvalidConfig { reason, .. }) => assert!(reason.contains(expected), "{reason}"),
        other => panic!("{config:?} gave {:?}", other.map(|m| m.has_lora())),
    };
    refused(lora(&["q_proj", "qkv"]), "`qkv` matches no projection");
    refused(lora(&[]), "at least one projection");
    refused(LoraConfig::new(0, 8.0, 0.0, vec!["q_proj".into()]), "at least 1");
    refused(LoraConfig::new(20, 8.0, 0.0, vec!["k_proj".into()]), "larger than k_proj's smaller side 16");
    refused(LoraConfig::new(4, 8.0, 1.0, vec!["q_proj".into()]), "[0, 1)");
}
