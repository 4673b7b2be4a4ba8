//! `--backend` and `--dtype` to a Burn backend type: one generic code path, instantiated for the
//! backends compiled in.

use burn::tensor::backend::{Backend, BackendTypes, Device, DeviceId};
use burn::tensor::{Element, FloatDType, IntDType, get_device_settings, set_default_dtypes};

use crate::exit::Failure;
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
        (BackendChoice::Ndarray, DType::Bf16) => anyhow::anyhow!(
            "--dtype bf16 does not run on --backend ndarray (burn-ndarray computes in its element type, f32 here); use --backend flex or cuda, or --dtype f32"
        ),
        (BackendChoice::Wgpu, DType::Bf16) => anyhow::anyhow!(
            "--dtype bf16 does not run on --backend wgpu (WGSL has no bf16 arithmetic); use --backend flex or cuda, or --dtype f32"
        ),
        (backend, dtype) => anyhow::anyhow!("{backend:?} with {dtype:?} is not available"),
    }
}

/// The Flex device with `dtype` as its float dtype: Flex picks the dtype of every new float tensor
/// at run time from its device settings, which must be set before the first tensor exists (a
/// process runs one model, so this is called once, before anything is built).
pub fn flex_device(dtype: DType) -> Result<burn::backend::flex::FlexDevice, Failure> {
    type B = burn::backend::Flex;
    let device = Default::default();
    let wanted = match dtype {
        DType::F32 => FloatDType::F32,
        DType::Bf16 => FloatDType::BF16,
    };
    // The integer dtype stays Flex's own; `AlreadyInitialized` is fine when the earlier setting
    // was the same float dtype.
    let int_dtype: IntDType = <<B as BackendTypes>::IntElem as Element>::dtype().into();
    let set = set_default_dtypes::<B>(&device, wanted, int_dtype);
    let current = get_device_settings::<B>(&device).float_dtype;
    if current == wanted {
        Ok(device)
    } else {
        Err(Failure::Run(anyhow::anyhow!("the Flex device already computes in {current:?}, not {wanted:?} ({set:?})")))
    }
}

/// Runs `$run::<B>(device)` on the autodiff backend `B` chosen by `$backend`/`$dtype`, or
/// evaluates to `Err(unavailable(..))`.
#[macro_export]
macro_rules! dispatch_backend {
    ($backend:expr, $dtype:expr, $run:ident ( $($arg:expr),* )) => {{
        use $crate::options::{BackendChoice, DType};
        match ($backend, $dtype) {
            (BackendChoice::Flex, dtype) => match $crate::backend::flex_device(dtype) {
                Ok(device) => $run::<burn::backend::Autodiff<burn::backend::Flex>>(device, $($arg),*),
                Err(failure) => Err(failure),
            },
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
    let compiled = match backend {
        BackendChoice::Flex => true,
        BackendChoice::Ndarray => dtype == DType::F32,
        BackendChoice::Wgpu => cfg!(feature = "wgpu") && dtype == DType::F32,
        BackendChoice::Cuda => cfg!(feature = "cuda"),
    };
    if compiled { Ok(()) } else { Err(unavailable(backend, dtype)) }
}
