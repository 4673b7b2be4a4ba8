//! Rotary position embedding in HF's rotate-half layout.
//!
//! Burn's `nn::RotaryEncoding` rotates interleaved pairs `(2i, 2i+1)`; HF LLaMA rotates the pairs
//! `(i, i + d/2)` of each head (`rotate_half`). The two differ unless q/k weights are permuted,
//! so this module implements HF's form directly and HF checkpoints load unchanged.

use burn::tensor::{Tensor, TensorData, backend::Backend};

/// The cos/sin tables of positions `0..seq_len`, each `[seq_len, head_dim]`.
#[derive(Clone, Debug)]
pub struct RotaryTables<B: Backend> {
    pub cos: Tensor<B, 2>,
    pub sin: Tensor<B, 2>,
}

impl<B: Backend> RotaryTables<B> {
    /// Tables computed as HF does, in f32: `inv_freq[i] = 1 / θ^(2i/d)`, `angle = t · inv_freq`,
    /// duplicated over both halves of the head (`cos[t, i] = cos[t, i + d/2]`).
    pub fn new(seq_len: usize, head_dim: usize, theta: f64, device: &B::Device) -> Self {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half).map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32)).collect();
        let mut cos = Vec::with_capacity(seq_len * head_dim);
        let mut sin = Vec::with_capacity(seq_len * head_dim);
        for t in 0..seq_len {
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

    /// Rotates `x` `[batch, heads, seq, head_dim]`: `x·cos + rotate_half(x)·sin`.
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let cos = self.cos.clone().unsqueeze::<4>();
        let sin = self.sin.clone().unsqueeze::<4>();
        x.clone() * cos + rotate_half(x) * sin
    }
}

/// `cat(-x[..., d/2:], x[..., :d/2])`.
fn rotate_half<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let d = x.dims()[3];
    let first = x.clone().narrow(3, 0, d / 2);
    let second = x.narrow(3, d / 2, d / 2);
    Tensor::cat(vec![second.neg(), first], 3)
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
        let x = Tensor::<NdArray, 4>::from_data(TensorData::new(unit, [1, 1, t + 1, d]), &device);
        let rotated = tables.apply(x).into_data().to_vec::<f32>().unwrap();
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
