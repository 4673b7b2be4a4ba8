//! LLaMA (llama-burn) trained by Fira (fira-optim): the module optimizer routes exactly the
//! paper's matrices, and real steps on a small model lower its loss.

use burn::backend::{Autodiff, NdArray};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{Int, Tensor, TensorData};
use fira_optim::{FiraConfig, ParamRoute, ProjectionSide};
use llama_burn::{LlamaConfig, LossTargets, causal_lm_loss};

type B = Autodiff<NdArray<f32>>;

#[test]
fn default_targets_select_every_attention_and_mlp_matrix_and_nothing_else() {
    let config = LlamaConfig::preset("60m").unwrap();
    // The parameters stay lazy: planning never allocates the 58M weights.
    let model = config.init::<B>(0, &Default::default()).unwrap();
    let optimizer = FiraConfig::new().init::<B, _>(&model).unwrap();
    let selection = optimizer.selection();
    assert_eq!(selection.params.len(), 3 + 9 * 8);
    for p in &selection.params {
        let fira = p.path.contains(".attn.") || p.path.contains(".mlp.");
        match p.route {
            ParamRoute::Projected { side, rank } => {
                assert!(fira, "{} projected", p.path);
                assert_eq!(rank, 128, "{}", p.path);
                // Burn stores [in, out]; the side refers to the PyTorch-oriented [out, in] = m×n
                // matrix, where the official std rule projects on the right when m ≥ n (square
                // matrices included) and on the left otherwise: always the 512-wide dimension.
                let [d_in, d_out] = [p.shape[0], p.shape[1]];
                let expected = if d_out >= d_in { ProjectionSide::Right } else { ProjectionSide::Left };
                assert_eq!(side, expected, "{} {:?}", p.path, p.shape);
            }
            ParamRoute::Dense => assert!(!fira, "{} not projected", p.path),
        }
    }
    assert_eq!(selection.total_state_bytes(), 327_487_712);
}

/// A multi-query model with tied embeddings (one key/value head, as `tied_mqa`): the
/// default targets still select the 7 matrices of every layer, the k/v projections with their own
/// `[H, kv·d]` shape and a rank clamped to their smaller side; the tied embedding is one
/// parameter on the AdamW path, and there is no `lm_head`.
#[test]
fn a_multi_query_tied_model_routes_its_own_shapes() {
    let config = LlamaConfig::preset("60m").unwrap().with_num_key_value_heads(Some(1)).with_tie_word_embeddings(true);
    let model = config.init::<B>(0, &Default::default()).unwrap();
    let optimizer = FiraConfig::new().init::<B, _>(&model).unwrap();
    let selection = optimizer.selection();
    assert_eq!(selection.params.len(), 2 + 9 * 8, "embedding, final norm, 8 layers of 7 matrices and 2 norms");
    assert!(!selection.params.iter().any(|p| p.path.starts_with("lm_head")));
    let embedding = selection.params.iter().find(|p| p.path == "embed_tokens.weight").unwrap();
    assert_eq!((embedding.route, embedding.shape.as_slice()), (ParamRoute::Dense, [32000, 512].as_slice()));
    for p in &selection.params {
        let projected = matches!(p.route, ParamRoute::Projected { .. });
        assert_eq!(projected, p.path.contains(".attn.") || p.path.contains(".mlp."), "{}", p.path);
        if p.path.contains("k_proj") || p.path.contains("v_proj") {
            // One head of 64: [512, 64] in Burn's layout, [64, 512] (wide) at PyTorch orientation,
            // so the rank 128 is clamped to 64.
            assert_eq!(p.shape, [512, 64], "{}", p.path);
            assert_eq!(p.route, ParamRoute::Projected { side: ProjectionSide::Left, rank: 64 }, "{}", p.path);
        }
    }
    assert_eq!(selection.projected_count(), 7 * 8);
}

#[test]
fn fira_steps_lower_the_loss_of_a_small_llama() {
    let device = Default::default();
    let config = LlamaConfig::new(64, 32, 64, 4, 2);
    let mut model = config.init::<B>(0, &device).unwrap();
    let mut optimizer = FiraConfig::new().with_rank(8).with_update_proj_gap(5).init::<B, _>(&model).unwrap();
    // A repeating sequence the model can learn: token t+1 follows token t.
    let ids: Vec<i64> = (0..4 * 24).map(|i| (i % 24) as i64 + (i / 24) as i64 * 3).collect();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [4, 24]), &device);
    let loss_of = |model: &llama_burn::Llama<B>| causal_lm_loss(model.forward(ids.clone()).unwrap(), ids.clone(), &LossTargets::All);
    let initial: f32 = loss_of(&model).into_scalar();
    for _ in 0..30 {
        let loss = loss_of(&model);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(3e-3, model, grads);
    }
    let trained: f32 = loss_of(&model).into_scalar();
    assert!(optimizer.take_skipped().is_empty());
    // ln(64) ≈ 4.16 at init; 30 steps on one memorisable batch must cut it by well over half.
    assert!((initial - 64f32.ln()).abs() < 0.2, "initial loss {initial}");
    assert!(trained < 0.5 * initial, "loss {initial} -> {trained}");
}
