//! `--backend` and `--dtype` to a Burn backend type: one generic code path, instantiated for the
//! backends compiled in.

use burn::tensor::backend::{Backend, Device, DeviceId};

use crate::options::{BackendChoice, DType};

/// The devices of `--devices`: index `i` is the backend's device `(type 0, i)`, i.e. CUDA device
/// `i`, WGPU discrete GPU `i`, or the CPU on the CPU backends; none given: `default`.
pub fn devices<B: Backend>(indices: Option<&[usize]>, default: B::Device) -> Vec<B::Device> {
    match indices {
        None => vec![default],
        Some(indices) => indices.iter().map(|&i| <B::Device as Device>::from_id(DeviceId::new(0, i as u16))).collect(),
    }
}

/// Why a backend/dtype pair cannot run in this build.
pub fn unavailable(backend: BackendChoice, dtype: DType) -> anyhow::Error {
    match (backend, dtype) {
        (BackendChoice::Wgpu, DType::F32) => {
            anyhow::anyhow!("--backend wgpu is not compiled in: build with `cargo build --release -p trainer --features wgpu`")
        }
        (BackendChoice::Cuda, _) => anyhow::anyhow!(
            "--backend cuda is not compiled in: build with `CUDARC_CUDA_VERSION=<e.g. 13000> cargo build --release -p trainer --features cuda`"
        ),
        (backend, DType::Bf16) => anyhow::anyhow!(
            "--dtype bf16 runs on --backend cuda only: {backend:?} has no bf16 matmul here (burn 0.21's CPU backends and WGPU compute in f32); use --dtype f32"
        ),
        (backend, dtype) => anyhow::anyhow!("{backend:?} with {dtype:?} is not available"),
    }
}

/// Runs `$run::<B>(device)` on the autodiff backend `B` chosen by `$backend`/`$dtype`, or
/// evaluates to `Err(unavailable(..))`.
#[macro_export]
macro_rules! dispatch_backend {
    ($backend:expr, $dtype:expr, $run:ident ( $($arg:expr),* )) => {{
        use $crate::options::{BackendChoice, DType};
        match ($backend, $dtype) {
            (BackendChoice::Flex, DType::F32) => {
                $run::<burn::backend::Autodiff<burn::backend::Flex>>(Default::default(), $($arg),*)
            }
            (BackendChoice::Ndarray, DType::F32) => {
                $run::<burn::backend::Autodiff<burn::backend::NdArray<f32>>>(Default::default(), $($arg),*)
            }
            #[cfg(feature = "wgpu")]
            (BackendChoice::Wgpu, DType::F32) => {
                $run::<burn::backend::Autodiff<burn::backend::Wgpu>>(Default::default(), $($arg),*)
            }
            #[cfg(feature = "cuda")]
            (BackendChoice::Cuda, DType::F32) => {
                $run::<burn::backend::Autodiff<burn::backend::Cuda>>(Default::default(), $($arg),*)
            }
            #[cfg(feature = "cuda")]
            (BackendChoice::Cuda, DType::Bf16) => {
                $run::<burn::backend::Autodiff<burn::backend::Cuda<burn::tensor::bf16>>>(Default::default(), $($arg),*)
            }
            (backend, dtype) => Err($crate::exit::Failure::Input($crate::backend::unavailable(backend, dtype))),
        }
    }};
}

/// Whether the pair can run in this build (checked before anything is written).
pub fn check(backend: BackendChoice, dtype: DType) -> anyhow::Result<()> {
    let compiled = match (backend, dtype) {
        (BackendChoice::Flex | BackendChoice::Ndarray, DType::F32) => true,
        (BackendChoice::Wgpu, DType::F32) => cfg!(feature = "wgpu"),
        (BackendChoice::Cuda, _) => cfg!(feature = "cuda"),
        _ => false,
    };
    if compiled { Ok(()) } else { Err(unavailable(backend, dtype)) }
}
