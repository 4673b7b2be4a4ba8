//! Rotary position embedding in HF's rotate-half layout.
//!
//! Burn's `nn::RotaryEncoding` rotates interleaved pairs `(2i, 2i+1)`; HF LLaMA rotates the pairs
//! `(i, i + d/2)` of each head (`rotate_half`). The two differ unless q/k weights are permuted,
//! so this module implements HF's form directly and HF checkpoints load unchanged.

use burn::tensor::{Tensor, TensorData, backend::Backend};

/// The cos/sin tables of a run of consecutive positions, each `[positions, head_dim]`.
#[derive(Clone, Debug)]
pub struct RotaryTables<B: Backend> {
    pub cos: Tensor<B, 2>,
    pub sin: Tensor<B, 2>,
}

impl<B: Backend> RotaryTables<B> {
    /// The tables of positions `0..seq_len`.
    pub fn new(seq_len: usize, head_dim: usize, theta: f64, device: &B::Device) -> Self {
        Self::positions(0, seq_len, head_dim, theta, device)
    }

    /// The tables of positions `start..start + len` (the new tokens of a cached forward),
    /// computed as HF does, in f32: `inv_freq[i] = 1 / θ^(2i/d)`, `angle = t · inv_freq`,
    /// duplicated over both halves of the head (`cos[t, i] = cos[t, i + d/2]`).
    pub fn positions(start: usize, len: usize, head_dim: usize, theta: f64, device: &B::Device) -> Self {
        let (seq_len, half) = (len, head_dim / 2);
        let inv_freq: Vec<f32> = (0..half).map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32)).collect();
        let mut cos = Vec::with_capacity(seq_len * head_dim);
        let mut sin = Vec::with_capacity(seq_len * head_dim);
        for t in start..start + len {
            for _ in 0..2 {
                for f in &inv_freq {
                    let angle = t as f32 * f;
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        let table = |values| Tensor::from_data(TensorData::new(values, [seq_len, head_dim]), device);
        Self { cos: table(cos), sin: table(sin) }
    }

    /// The tables expanded for `batch` rows of `heads` heads ([`RotaryEmbedding`]).
    pub fn for_heads(&self, batch: usize, heads: usize) -> RotaryEmbedding<B> {
        let [seq_len, head_dim] = self.cos.dims();
        let half = head_dim / 2;
        let sin_first = self.sin.clone().narrow(1, 0, half);
        let signed_sin = Tensor::cat(vec![sin_first.neg(), self.sin.clone().narrow(1, half, half)], 1);
        let expand = |table: Tensor<B, 2>| table.reshape([1, seq_len, 1, head_dim]).repeat(&[batch, 1, heads, 1]);
        RotaryEmbedding { cos: expand(self.cos.clone()), signed_sin: expand(signed_sin) }
    }
}

/// The rotation of one forward pass for one head count (query heads, or the key heads of
/// grouped-query attention): `cos` and `sin` with the sign of `rotate_half` folded in
/// (`signed_sin = cat(−sin[.., :d/2], sin[.., d/2:])`), both `[batch, seq, heads, head_dim]`.
///
/// Full-shape tables applied to the projections in their `[batch, seq, heads, head_dim]` layout
/// (contiguous, before the heads are moved forward) make every multiply element-wise on
/// contiguous operands: Flex computes a broadcast or strided operand element by element through
/// a strided iterator, 8 % of a training step when the tables were broadcast over the
/// `[batch, heads, seq, head_dim]` view (docs/benchmarks.md, "RoPE"). Built once per forward and
/// shared by every layer (see [`Positions`](crate::Positions)).
#[derive(Clone, Debug)]
pub struct RotaryEmbedding<B: Backend> {
    cos: Tensor<B, 4>,
    signed_sin: Tensor<B, 4>,
}

impl<B: Backend> RotaryEmbedding<B> {
    /// Rotates `x` `[batch, seq, heads, head_dim]`: `x·cos + rotate_half(x)·sin`, where
    /// `rotate_half(x)·sin = cat(x[.., d/2:], x[.., :d/2]) · signed_sin`.
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let d = x.dims()[3];
        let swapped = Tensor::cat(vec![x.clone().narrow(3, d / 2, d / 2), x.clone().narrow(3, 0, d / 2)], 3);
        x * self.cos.clone() + swapped * self.signed_sin.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    /// Rotating by the angle of position t preserves each pair's norm and maps the unit vector
    /// e_i to cos·e_i + sin·e_{i+d/2}, the rotation HF applies (independent closed form).
    #[test]
    fn rotation_acts_on_first_and_second_half_pairs() {
        let device = Default::default();
        let (t, d) = (5usize, 8usize);
        let tables = RotaryTables::<NdArray>::new(t + 1, d, 10000.0, &device);
        let mut unit = vec![0.0f32; (t + 1) * d];
        unit[t * d + 1] = 1.0; // position t, component i = 1
        let x = Tensor::<NdArray, 4>::from_data(TensorData::new(unit, [1, t + 1, 1, d]), &device);
        let rotated = tables.for_heads(1, 1).apply(x).into_data().to_vec::<f32>().unwrap();
        let angle = t as f32 / 10000f32.powf(2.0 / d as f32);
        let row = &rotated[t * d..(t + 1) * d];
        let mut expected = [0.0f32; 8];
        expected[1] = angle.cos();
        expected[1 + d / 2] = angle.sin();
        for (a, b) in row.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{row:?} vs {expected:?}");
        }
    }
}
