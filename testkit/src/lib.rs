//! Test support shared by the workspace's crates: reading golden safetensors files into host
//! tensors, error measures, and [`with_test_backend!`] (the backend named by `FIRA_TEST_DEVICE`).

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// One tensor of a golden file, as f32 (integer tensors converted exactly up to 2^24).
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl HostTensor {
    /// The `k`-th slice along the first axis.
    pub fn index(&self, k: usize) -> HostTensor {
        let inner: usize = self.shape[1..].iter().product();
        HostTensor { shape: self.shape[1..].to_vec(), values: self.values[k * inner..(k + 1) * inner].to_vec() }
    }
}

/// A safetensors file: its tensors and its `__metadata__`.
pub struct SafetensorsFile {
    pub tensors: HashMap<String, HostTensor>,
    pub metadata: HashMap<String, String>,
}

impl SafetensorsFile {
    /// Reads every tensor of `path` (F32, I32, I64) into host memory.
    pub fn read(path: &Path) -> Result<Self, String> {
        let context = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let bytes = std::fs::read(path).map_err(|e| context(&e))?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| context(&e))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let file = SafeTensors::deserialize(&bytes).map_err(|e| context(&e))?;
        let mut tensors = HashMap::new();
        for (name, view) in file.tensors() {
            let data = view.data();
            let values = match view.dtype() {
                Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
                Dtype::I32 => data.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
                Dtype::I64 => data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
                other => return Err(context(&format!("tensor {name} has unsupported dtype {other:?}"))),
            };
            tensors.insert(name.to_string(), HostTensor { shape: view.shape().to_vec(), values });
        }
        Ok(Self { tensors, metadata })
    }

    /// The tensor `name`, or a panic naming the file's problem.
    pub fn tensor(&self, name: &str) -> &HostTensor {
        self.tensors.get(name).unwrap_or_else(|| panic!("golden file has no tensor `{name}`"))
    }
}

/// How [`write_safetensors`] stores float values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StoredFloat {
    F32,
    F16,
    BF16,
}

impl StoredFloat {
    /// `v` as this type stores it (round to nearest even), read back as f32.
    pub fn round(self, v: f32) -> f32 {
        match self {
            Self::F32 => v,
            Self::F16 => half::f16::from_f32(v).to_f32(),
            Self::BF16 => half::bf16::from_f32(v).to_f32(),
        }
    }

    fn encode(self, values: &[f32]) -> (Dtype, Vec<u8>) {
        match self {
            Self::F32 => (Dtype::F32, values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            Self::F16 => (Dtype::F16, values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect()),
            Self::BF16 => (Dtype::BF16, values.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect()),
        }
    }
}

/// Writes `tensors` as a safetensors file with PyTorch's `{"format": "pt"}` metadata, every
/// value stored as `stored` (weight files as HF writes them in half precision, or shards).
pub fn write_safetensors(path: &Path, tensors: &[(String, HostTensor)], stored: StoredFloat) -> Result<(), String> {
    let encoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let (dtype, bytes) = stored.encode(&t.values);
            (name.clone(), dtype, t.shape.clone(), bytes)
        })
        .collect();
    let views = encoded
        .iter()
        .map(|(name, dtype, shape, bytes)| TensorView::new(*dtype, shape.clone(), bytes).map(|view| (name.clone(), view)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    safetensors::serialize_to_file(views, Some(metadata), path).map_err(|e| format!("{}: {e}", path.display()))
}

/// `ulp(x)` of an f32 magnitude.
pub fn ulp(x: f32) -> f32 {
    let x = x.abs().max(f32::MIN_POSITIVE);
    f32::from_bits(x.to_bits() + 1) - x
}

/// Largest `|v|`.
pub fn max_abs(values: &[f32]) -> f32 {
    values.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// Largest `|a - b|`.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// Runs `$body` with `B` bound to the backend named by `FIRA_TEST_DEVICE`
/// (`ndarray` default, `flex`; `wgpu` and `cuda` when the calling crate is compiled with those
/// features).
#[macro_export]
macro_rules! with_test_backend {
    (|$device:ident: $backend:ident| $body:block) => {{
        let name = std::env::var("FIRA_TEST_DEVICE").unwrap_or_else(|_| "ndarray".to_owned());
        $crate::with_backend!(name.as_str(), |$device: $backend| $body)
    }};
}

/// Runs `$body` with `B` bound to the backend named `$name` (`ndarray`, `flex`; `wgpu` and
/// `cuda` when the calling crate is compiled with those features: the `cfg`s expand in the
/// caller). Panics on any other name, saying which feature enables it.
#[macro_export]
macro_rules! with_backend {
    ($name:expr, |$device:ident: $backend:ident| $body:block) => {{
        match $name {
            "ndarray" => {
                type $backend = burn::backend::NdArray<f32>;
                let $device = Default::default();
                $body
            }
            "flex" => {
                type $backend = burn::backend::Flex;
                let $device = Default::default();
                $body
            }
            #[cfg(feature = "wgpu")]
            "wgpu" => {
                type $backend = burn::backend::Wgpu;
                let $device = Default::default();
                $body
            }
            #[cfg(feature = "cuda")]
            "cuda" => {
                type $backend = burn::backend::Cuda;
                let $device = Default::default();
                $body
            }
            other => panic!(
                "backend {other} is not available: use ndarray or flex, or build with \
                 `--features wgpu` / `--features cuda` for those backends"
            ),
        }
    }};
}
