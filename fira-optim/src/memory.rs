//! What the optimizer selects and how much state it holds (spec, "Memory").

use std::fmt;

use burn::module::ParamId;

use crate::projector::ProjectionSide;

/// How one parameter is optimized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamRoute {
    /// Low-rank path; the side refers to the `[out, in]` (PyTorch-oriented) matrix.
    Projected {
        /// Side of the projection.
        side: ProjectionSide,
        /// Effective rank `min(r, m, n)`.
        rank: usize,
    },
    /// The HF-style AdamW path on the full tensor.
    Dense,
}

/// One parameter in a [`SelectionReport`] or [`MemoryReport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamReport {
    /// Dotted module path, e.g. `layers.0.attn.q_proj.weight`.
    pub path: String,
    /// The parameter's id in the module.
    pub id: ParamId,
    /// Stored shape.
    pub shape: Vec<usize>,
    /// Route taken.
    pub route: ParamRoute,
    /// Optimizer-state bytes: planned in a [`SelectionReport`], held in a [`MemoryReport`].
    pub state_bytes: usize,
}

/// Per-parameter routing decided when the optimizer is built, with the state each will hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectionReport {
    /// One entry per float parameter that trains (frozen ones hold no state), in module order.
    pub params: Vec<ParamReport>,
}

/// Optimizer-state bytes actually held by a live optimizer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryReport {
    /// One entry per parameter that has state.
    pub params: Vec<ParamReport>,
}

fn total(params: &[ParamReport]) -> usize {
    params.iter().map(|p| p.state_bytes).sum()
}

impl SelectionReport {
    /// Number of projected parameters.
    pub fn projected_count(&self) -> usize {
        self.params.iter().filter(|p| p.route != ParamRoute::Dense).count()
    }

    /// Planned optimizer-state bytes over all parameters.
    pub fn total_state_bytes(&self) -> usize {
        total(&self.params)
    }
}

impl MemoryReport {
    /// Optimizer-state bytes held over all parameters.
    pub fn total_state_bytes(&self) -> usize {
        total(&self.params)
    }
}

fn write_table(f: &mut fmt::Formatter<'_>, params: &[ParamReport], what: &str) -> fmt::Result {
    writeln!(f, "{:<48} {:>16} {:>10} {:>5} {:>14}", "parameter", "shape", "side", "rank", what)?;
    for p in params {
        let shape = p.shape.iter().map(usize::to_string).collect::<Vec<_>>().join("x");
        let (side, rank) = match p.route {
            ParamRoute::Projected { side, rank } => (format!("{side:?}").to_lowercase(), rank.to_string()),
            ParamRoute::Dense => ("adamw".to_owned(), "-".to_owned()),
        };
        writeln!(f, "{:<48} {:>16} {:>10} {:>5} {:>14}", p.path, shape, side, rank, p.state_bytes)?;
    }
    write!(f, "total optimizer state: {} bytes", total(params))
}

impl fmt::Display for SelectionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_table(f, &self.params, "state bytes")
    }
}

impl fmt::Display for MemoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_table(f, &self.params, "held bytes")
    }
}
