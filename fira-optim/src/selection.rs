//! Which parameters get the low-rank path: module-path patterns, as the paper's scripts
//! (`target_modules_list = ["attn", "mlp"]`) and HF's `optim_target_modules`.

use burn::module::{ModuleVisitor, Param, ParamId};
use burn::tensor::{DType, Tensor, backend::Backend, get_device_settings};
use regex::Regex;

use crate::error::FiraError;

/// Compiled target-module patterns; a parameter is selected when any pattern matches
/// anywhere in its dotted module path (`layers.3.attn.q_proj.weight`).
#[derive(Clone, Debug)]
pub struct TargetModules {
    patterns: Vec<Regex>,
}

impl TargetModules {
    /// Compiles the patterns (plain words are regular expressions that match as substrings).
    pub fn new(patterns: &[String]) -> Result<Self, FiraError> {
        let patterns = patterns
            .iter()
            .map(|pattern| {
                Regex::new(pattern)
                    .map_err(|error| FiraError::InvalidTargetPattern { pattern: pattern.clone(), message: error.to_string() })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    /// Whether the parameter at `path` is a target.
    pub fn matches(&self, path: &str) -> bool {
        self.patterns.iter().any(|pattern| pattern.is_match(path))
    }

    /// The patterns as written.
    pub fn patterns(&self) -> Vec<String> {
        self.patterns.iter().map(|p| p.as_str().to_owned()).collect()
    }
}

/// Tracks the dotted module path while Burn walks a module (`enter_module` / `exit_module`).
#[derive(Default, Clone, Debug)]
pub(crate) struct ModulePath(Vec<String>);

impl ModulePath {
    pub(crate) fn enter(&mut self, name: &str) {
        self.0.push(name.to_owned());
    }

    pub(crate) fn exit(&mut self) {
        self.0.pop();
    }

    pub(crate) fn current(&self) -> String {
        self.0.join(".")
    }
}

/// A float parameter of a module as the optimizer sees it before training.
#[derive(Clone, Debug)]
pub(crate) struct ParamInfo {
    pub path: String,
    pub id: ParamId,
    pub shape: Vec<usize>,
    pub element_bytes: usize,
}

/// Lists every float parameter of a module that trains, with its path. A frozen parameter
/// (`require_grad` off, e.g. the base weights of a LoRA fine-tune) never gets a gradient, so it
/// holds no state and is left out; a lazy one not yet drawn trains (Burn builds parameters
/// requiring gradients).
#[derive(Default)]
pub(crate) struct ParamCollector {
    path: ModulePath,
    pub params: Vec<ParamInfo>,
}

impl<B: Backend> ModuleVisitor<B> for ParamCollector {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if param.is_initialized() && !param.val().is_require_grad() {
            return;
        }
        // Shape and dtype without initialising a lazy parameter, so that planning the optimizer
        // of a model that was never materialised (e.g. `fira info` on a 7B preset) costs nothing.
        let element_bytes = if param.is_initialized() {
            param.val().dtype().size()
        } else {
            DType::from(get_device_settings::<B>(&param.lazy_device()).float_dtype).size()
        };
        self.params.push(ParamInfo { path: self.path.current(), id: param.id, shape: param.lazy_shape().to_vec(), element_bytes });
    }
}
