//! Shared helpers of the integration tests: the optimizer golden cases (generic file reading,
//! error measures and backend selection come from `fira-testkit`).
#![allow(dead_code, unused_imports)] // each test binary uses its own subset

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::tensor::{Tensor, TensorData, backend::Backend};
use fira_testkit::SafetensorsFile;
pub use fira_testkit::{HostTensor, max_abs, max_abs_diff, ulp, with_test_backend};
use serde_json::Value;

/// A golden case: its config and tensors.
pub struct GoldenCase {
    pub name: String,
    pub config: Value,
    pub tensors: HashMap<String, HostTensor>,
}

impl GoldenCase {
    pub fn load(path: &Path) -> Result<Self, String> {
        let file = SafetensorsFile::read(path)?;
        let config = file.metadata.get("config").ok_or_else(|| format!("{}: no `config` metadata", path.display()))?;
        let config: Value = serde_json::from_str(config).map_err(|e| format!("{}: config: {e}", path.display()))?;
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        Ok(Self { name, config, tensors: file.tensors })
    }

    pub fn tensor(&self, name: &str) -> &HostTensor {
        self.tensors.get(name).unwrap_or_else(|| panic!("case {}: missing tensor `{name}`", self.name))
    }

    pub fn f64(&self, key: &str) -> f64 {
        self.config[key].as_f64().unwrap_or_else(|| panic!("case {}: config `{key}` is not a number", self.name))
    }

    pub fn usize(&self, key: &str) -> usize {
        self.config[key].as_u64().unwrap_or_else(|| panic!("case {}: config `{key}` is not an integer", self.name)) as usize
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

/// A row-major host matrix.
#[derive(Clone, Debug)]
pub struct HostMatrix {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<f64>,
}

impl HostMatrix {
    pub fn of<Bk: Backend>(t: &Tensor<Bk, 2>) -> Self {
        let [rows, cols] = t.dims();
        Self { rows, cols, values: t.to_data().iter::<f64>().collect() }
    }
    pub fn at(&self, i: usize, j: usize) -> f64 {
        self.values[i * self.cols + j]
    }
    pub fn matmul(&self, other: &Self) -> Self {
        assert_eq!(self.cols, other.rows);
        let values = (0..self.rows * other.cols)
            .map(|k| (0..self.cols).map(|l| self.at(k / other.cols, l) * other.at(l, k % other.cols)).sum())
            .collect();
        Self { rows: self.rows, cols: other.cols, values }
    }
    pub fn transpose(&self) -> Self {
        let values = (0..self.rows * self.cols).map(|k| self.at(k % self.rows, k / self.rows)).collect();
        Self { rows: self.cols, cols: self.rows, values }
    }
    pub fn zip(&self, other: &Self, f: impl Fn(f64, f64) -> f64) -> Self {
        assert_eq!((self.rows, self.cols), (other.rows, other.cols));
        let values = self.values.iter().zip(&other.values).map(|(a, b)| f(*a, *b)).collect();
        Self { values, ..*self }
    }
    pub fn map(&self, f: impl Fn(f64) -> f64) -> Self {
        Self { values: self.values.iter().map(|v| f(*v)).collect(), ..*self }
    }
    pub fn frobenius(&self) -> f64 {
        self.values.iter().map(|v| v * v).sum::<f64>().sqrt()
    }
    pub fn max_abs_diff(&self, other: &Self) -> f64 {
        self.zip(other, |a, b| (a - b).abs()).values.into_iter().fold(0.0, f64::max)
    }
    pub fn tensor(&self) -> Tensor<NdArray<f32>, 2> {
        let values: Vec<f32> = self.values.iter().map(|v| *v as f32).collect();
        Tensor::from_data(TensorData::new(values, [self.rows, self.cols]), &Default::default())
    }
}
