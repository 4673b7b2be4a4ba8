//! Shared helpers of the integration tests: golden-file loading and backend selection.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

/// One tensor of a golden file, as f32 (int tensors converted).
#[derive(Clone, Debug)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl HostTensor {
    /// The `k`-th slice along the first axis.
    pub fn index(&self, k: usize) -> HostTensor {
        let inner: usize = self.shape[1..].iter().product();
        HostTensor {
            shape: self.shape[1..].to_vec(),
            values: self.values[k * inner..(k + 1) * inner].to_vec(),
        }
    }
}

/// A golden case: its config and tensors.
pub struct GoldenCase {
    pub name: String,
    pub config: Value,
    pub tensors: HashMap<String, HostTensor>,
}

impl GoldenCase {
    pub fn load(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (_, metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        let config = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get("config"))
            .ok_or_else(|| format!("{}: no `config` metadata", path.display()))?;
        let config: Value = serde_json::from_str(config).map_err(|e| format!("{}: config: {e}", path.display()))?;
        let file = SafeTensors::deserialize(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut tensors = HashMap::new();
        for (name, view) in file.tensors() {
            let data = view.data();
            let values = match view.dtype() {
                Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
                Dtype::I32 => data.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
                Dtype::I64 => data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
                other => return Err(format!("{}: tensor {name} has unsupported dtype {other:?}", path.display())),
            };
            tensors.insert(name.to_string(), HostTensor { shape: view.shape().to_vec(), values });
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        Ok(Self { name, config, tensors })
    }

    pub fn tensor(&self, name: &str) -> &HostTensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("case {}: missing tensor `{name}`", self.name))
    }

    pub fn f64(&self, key: &str) -> f64 {
        self.config[key]
            .as_f64()
            .unwrap_or_else(|| panic!("case {}: config `{key}` is not a number", self.name))
    }

    pub fn usize(&self, key: &str) -> usize {
        self.config[key]
            .as_u64()
            .unwrap_or_else(|| panic!("case {}: config `{key}` is not an integer", self.name)) as usize
    }

    /// Learning rate of step `k` (1-based): `lr_schedule[k-1]` when present, else `lr`.
    pub fn lr(&self, k: usize) -> f64 {
        match self.config.get("lr_schedule").and_then(Value::as_array) {
            Some(schedule) => schedule[k - 1].as_f64().expect("lr_schedule holds numbers"),
            None => self.f64("lr"),
        }
    }

    pub fn variants(&self) -> Vec<String> {
        self.config["variants"]
            .as_array()
            .unwrap_or_else(|| panic!("case {}: no `variants` list", self.name))
            .iter()
            .map(|v| v.as_str().expect("variant names are strings").to_owned())
            .collect()
    }
}

/// The golden directory: `FIRA_GOLDEN_DIR` or the repository's committed copy.
pub fn golden_dir() -> PathBuf {
    std::env::var_os("FIRA_GOLDEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden"))
}

/// Every `*.safetensors` case of the golden directory, sorted by name.
pub fn golden_cases() -> Vec<GoldenCase> {
    let dir = golden_dir();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("golden directory {}: {e}", dir.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no golden case (*.safetensors) in {}", dir.display());
    paths.iter().map(|p| GoldenCase::load(p).unwrap_or_else(|e| panic!("{e}"))).collect()
}

/// `ulp(x)` of an f32 magnitude.
pub fn ulp(x: f32) -> f32 {
    let x = x.abs().max(f32::MIN_POSITIVE);
    f32::from_bits(x.to_bits() + 1) - x
}

pub fn max_abs(values: &[f32]) -> f32 {
    values.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// Largest `|a - b|`.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// Runs `$body` with `B` bound to the backend named by `FIRA_TEST_DEVICE`
/// (`ndarray` default, `flex`; `wgpu` and `cuda` when compiled with those features).
#[macro_export]
macro_rules! with_test_backend {
    (|$device:ident: $backend:ident| $body:block) => {{
        let name = std::env::var("FIRA_TEST_DEVICE").unwrap_or_else(|_| "ndarray".to_owned());
        match name.as_str() {
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
                "FIRA_TEST_DEVICE={other} is not available: use ndarray or flex, or build with \
                 `--features wgpu` / `--features cuda` for those backends"
            ),
        }
    }};
}
