//! `fira info`: what a model holds and what the optimizer would select and store, computed
//! without allocating the model (its parameters stay lazy), so a 7B preset answers instantly.

use std::io::Write;

use burn::backend::{Autodiff, NdArray};
use clap::Args;
use fira_optim::{Algorithm, FiraConfig, ParamRoute};
use llama_burn::LlamaConfig;
use serde_json::json;

use crate::exit::{Failure, InputContext};
use crate::options::{projection_rank, rank_rule};
use crate::units::mib;

#[derive(Args)]
pub struct InfoArgs {
    /// Model: a preset (9m, 20m, 35m, 40m, 60m, 71m, 100m, 130m, 250m, 350m, 1b, 3b, 7b) or the
    /// path of an HF/GaLore config.json.
    #[arg(long, default_value = "60m")]
    model: String,
    #[arg(long, help = format!("Rank of the low-rank projection for the optimizer-state figures [default: {}, as fira train]", rank_rule()))]
    rank: Option<usize>,
    /// Module-path patterns (regex) whose 2-D weights get Fira; the rest get AdamW.
    #[arg(long, value_delimiter = ',', default_value = "attn,mlp")]
    target_modules: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also list every parameter with its route and state bytes.
    #[arg(long)]
    params: bool,
}

type PlanBackend = Autodiff<NdArray<f32>>;

pub fn run(args: &InfoArgs) -> Result<(), Failure> {
    let config = LlamaConfig::from_preset_or_file(&args.model).input_error(|| "--model".to_owned())?;
    let count = config.parameter_count();
    // Only shapes and paths are read: the seeded draws are lazy and never run.
    let model = config.init::<PlanBackend>(0, &Default::default()).input_error(|| "--model".to_owned())?;
    let rank = projection_rank(args.rank, &config, None).map_err(Failure::Input)?;
    let plan = |config: FiraConfig| config.init::<PlanBackend, _>(&model).input_error(|| "optimizer settings".to_owned());
    let optimizer = plan(FiraConfig::new().with_rank(rank).with_target_modules(args.target_modules.clone()))?;
    let selection = optimizer.selection();
    let fira_bytes = selection.total_state_bytes();
    // The same report for full-rank AdamW (nothing projected), so both figures come from one count.
    let adamw_bytes = plan(FiraConfig::new().with_algorithm(Algorithm::AdamW))?.selection().total_state_bytes();

    let text = if args.json {
        let params: Vec<_> = selection
            .params
            .iter()
            .map(|p| {
                let (side, rank) = match p.route {
                    ParamRoute::Projected { side, rank } => (format!("{side:?}").to_lowercase(), Some(rank)),
                    ParamRoute::Dense => ("adamw".to_owned(), None),
                };
                json!({"path": p.path, "shape": p.shape, "route": side, "rank": rank, "state_bytes": p.state_bytes})
            })
            .collect();
        let mut report = json!({
            "model": args.model,
            "config": config,
            "parameters": count.total(),
            "split": count,
            "optimizer": {
                "algorithm": "fira",
                "rank": rank,
                "target_modules": args.target_modules,
                "projected_matrices": selection.projected_count(),
                "state_bytes": fira_bytes,
                "adamw_state_bytes": adamw_bytes,
            },
        });
        if args.params {
            report["optimizer"]["params"] = json!(params);
        }
        serde_json::to_string_pretty(&report).expect("a JSON value serialises")
    } else {
        let mut lines = vec![
            format!(
                "model {}: hidden {}, intermediate {}, heads {}, layers {}, vocab {}",
                args.model,
                config.hidden_size,
                config.intermediate_size,
                config.num_attention_heads,
                config.num_hidden_layers,
                config.vocab_size
            ),
            format!("parameters: {}", count.total()),
            format!("  embedding  {:>14}", count.embedding),
            format!("  lm_head    {:>14}", count.lm_head),
            format!("  attention  {:>14}", count.attention),
            format!("  mlp        {:>14}", count.mlp),
            format!("  norms      {:>14}", count.norms),
            format!(
                "optimizer state, rank {} on {} matrices ({}): Fira {:.1} MiB vs full-rank AdamW {:.1} MiB",
                rank,
                selection.projected_count(),
                args.target_modules.join(","),
                mib(fira_bytes as u64),
                mib(adamw_bytes as u64)
            ),
        ];
        if args.params {
            lines.push(selection.to_string());
        }
        lines.join("\n")
    };
    writeln!(std::io::stdout(), "{text}").map_err(|e| Failure::Run(e.into()))
}
