//! The low-rank projector: an orthonormal basis and the side it acts on (spec, "Projector").

use burn::record::{PrecisionSettings, Record};
use burn::tensor::{DType, Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::config::ProjectionType;
use crate::moments::tensor_bytes;

/// Which side of the `m×n` gradient (PyTorch orientation) the projector acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProjectionSide {
    /// `R = Pᵀ G` with `P` the top-`r'` left singular vectors (`m×r'`): `R` is `r'×n`.
    Left,
    /// `R = G Qᵀ` with `Q` the top-`r'` right singular vectors as rows (`r'×n`): `R` is `m×r'`.
    Right,
    /// `R = Pᵀ G Qᵀ` (`r'×r'`), GaLore's `full`.
    Both,
}

impl ProjectionSide {
    /// The side `proj_type` selects for an `m×n` matrix (PyTorch orientation).
    pub fn for_shape(proj_type: ProjectionType, m: usize, n: usize) -> Self {
        // Square counts as tall, as in the official code.
        let std = if m >= n { Self::Right } else { Self::Left };
        match proj_type {
            ProjectionType::Std => std,
            ProjectionType::ReverseStd => match std {
                Self::Right => Self::Left,
                _ => Self::Right,
            },
            ProjectionType::Left => Self::Left,
            ProjectionType::Right => Self::Right,
            ProjectionType::Full => Self::Both,
        }
    }

    /// Shape of the projected gradient `R` for an `m×n` matrix at effective rank `r`.
    pub fn projected_shape(self, m: usize, n: usize, r: usize) -> [usize; 2] {
        match self {
            Self::Left => [r, n],
            Self::Right => [m, r],
            Self::Both => [r, r],
        }
    }

    /// Elements of the basis for an `m×n` matrix at effective rank `r`.
    pub fn basis_elements(self, m: usize, n: usize, r: usize) -> usize {
        match self {
            Self::Left => m * r,
            Self::Right => r * n,
            Self::Both => (m + n) * r,
        }
    }
}

// The side is stored verbatim in records, never re-derived from shapes on load
// (the official `reverse_std` re-derives it and crashes when r' equals the row count).
impl<B: Backend> Record<B> for ProjectionSide {
    type Item<S: PrecisionSettings> = ProjectionSide;

    fn into_item<S: PrecisionSettings>(self) -> Self::Item<S> {
        self
    }

    fn from_item<S: PrecisionSettings>(item: Self::Item<S>, _device: &B::Device) -> Self {
        item
    }
}

/// An orthonormal low-rank basis together with its side.
#[derive(Record, Clone)]
pub struct Projector<B: Backend> {
    side: ProjectionSide,
    /// `P`, `m×r'`, orthonormal columns (left and both sides).
    left: Option<Tensor<B, 2>>,
    /// `Q`, `r'×n`, orthonormal rows (right and both sides).
    right: Option<Tensor<B, 2>>,
}

impl<B: Backend> Projector<B> {
    /// A left projector from `P` (`m×r'`, orthonormal columns).
    pub fn left(p: Tensor<B, 2>) -> Self {
        Self { side: ProjectionSide::Left, left: Some(p), right: None }
    }

    /// A right projector from `Q` (`r'×n`, orthonormal rows).
    pub fn right(q: Tensor<B, 2>) -> Self {
        Self { side: ProjectionSide::Right, left: None, right: Some(q) }
    }

    /// A two-sided projector from `P` (`m×r'`) and `Q` (`r'×n`).
    pub fn both(p: Tensor<B, 2>, q: Tensor<B, 2>) -> Self {
        Self { side: ProjectionSide::Both, left: Some(p), right: Some(q) }
    }

    /// The same basis in `dtype`.
    pub fn cast(self, dtype: DType) -> Self {
        let cast = |t: Option<Tensor<B, 2>>| t.map(|t| t.cast(dtype));
        Self { side: self.side, left: cast(self.left), right: cast(self.right) }
    }

    /// The side this basis acts on.
    pub fn side(&self) -> ProjectionSide {
        self.side
    }

    /// `P` (`m×r'`), if the projector has a left factor.
    pub fn left_basis(&self) -> Option<&Tensor<B, 2>> {
        self.left.as_ref()
    }

    /// `Q` (`r'×n`), if the projector has a right factor.
    pub fn right_basis(&self) -> Option<&Tensor<B, 2>> {
        self.right.as_ref()
    }

    /// `R = project(G)`: `Pᵀ G`, `G Qᵀ` or `Pᵀ G Qᵀ`.
    pub fn project(&self, grad: Tensor<B, 2>) -> Tensor<B, 2> {
        let grad = match &self.left {
            Some(p) => p.clone().transpose().matmul(grad),
            None => grad,
        };
        match &self.right {
            Some(q) => grad.matmul(q.clone().transpose()),
            None => grad,
        }
    }

    /// The un-scaled back-projection `back₁(X)`: `P X`, `X Q` or `P X Q` (α is applied by the caller).
    pub fn back(&self, low_rank: Tensor<B, 2>) -> Tensor<B, 2> {
        let full = match &self.left {
            Some(p) => p.clone().matmul(low_rank),
            None => low_rank,
        };
        match &self.right {
            Some(q) => full.matmul(q.clone()),
            None => full,
        }
    }

    /// Re-expresses low-rank coordinates of `previous` in this basis: `P_newᵀ P_old X`
    /// (and/or `X Q_old Q_newᵀ`), so that `back(X)` is kept where the two subspaces agree.
    pub fn transport_from(&self, previous: &Projector<B>, low_rank: Tensor<B, 2>) -> Tensor<B, 2> {
        let low_rank = match (&self.left, &previous.left) {
            (Some(new), Some(old)) => new.clone().transpose().matmul(old.clone()).matmul(low_rank),
            _ => low_rank,
        };
        match (&self.right, &previous.right) {
            (Some(new), Some(old)) => low_rank.matmul(old.clone().matmul(new.clone().transpose())),
            _ => low_rank,
        }
    }

    /// Moves the basis to `device`.
    pub fn to_device(self, device: &B::Device) -> Self {
        Self { side: self.side, left: self.left.map(|p| p.to_device(device)), right: self.right.map(|q| q.to_device(device)) }
    }

    /// Bytes held by the basis.
    pub fn bytes(&self) -> usize {
        self.left.iter().chain(&self.right).map(tensor_bytes).sum()
    }
}
