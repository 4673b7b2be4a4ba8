//! Peak memory of a benchmark: the process's resident set on the CPU backends, the device
//! memory pool on the CubeCL backends (WGPU, CUDA), which is what runs out first there.

use crate::options::BackendChoice;

/// Peak resident memory of this process in bytes (Linux `VmHWM`); `None` where the kernel does
/// not report it.
pub fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Bytes the device's memory pool has reserved now (CubeCL keeps freed pages for reuse, so
/// sampled after every step its maximum is the run's peak, as torch's `max_memory_reserved`);
/// `None` on the CPU backends, whose tensors live in [`peak_resident_bytes`].
pub fn device_reserved_bytes(backend: BackendChoice) -> Option<u64> {
    match backend {
        BackendChoice::Flex | BackendChoice::Ndarray => None,
        #[cfg(feature = "wgpu")]
        BackendChoice::Wgpu => reserved::<burn::cubecl::wgpu::WgpuRuntime>(&Default::default()),
        #[cfg(feature = "cuda")]
        BackendChoice::Cuda => reserved::<burn::cubecl::cuda::CudaRuntime>(&Default::default()),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn reserved<R: burn::cubecl::Runtime>(device: &R::Device) -> Option<u64> {
    R::client(device).memory_usage().ok().map(|usage| usage.bytes_reserved)
}
