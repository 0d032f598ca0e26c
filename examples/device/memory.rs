//! Peak GPU memory of a measured region.
//!
//! cudarc allocates with `cuMemAllocAsync` from the device's default memory pool, whose
//! `USED_MEM_HIGH` attribute is the exact high-water mark of live allocations (the analogue
//! of `torch.cuda.max_memory_allocated`); it is reset at the start of a region. As a
//! cross-check a thread samples the device-wide used memory (`cuMemGetInfo`, what
//! nvidia-smi shows, CUDA context included) every millisecond. Both are `None` on the CPU.
//! On every device the live host-heap bytes are reported too ([`crate::host_memory`]): the
//! CPU's analogue of the pool's high-water mark.

use candle_core::Device;
use serde_json::{json, Value};

/// `(free, total)` bytes of a CUDA device.
pub fn device_memory(device: &Device) -> Option<(usize, usize)> {
    imp::device_memory(device)
}

/// Keeps freed memory in the pool instead of returning it at every synchronisation
/// (`CU_MEMPOOL_ATTR_RELEASE_THRESHOLD` = max), like PyTorch's caching allocator.
pub fn keep_pool_memory(device: &Device) -> bool {
    imp::keep_pool_memory(device)
}

/// A measured region; [`PeakMemory::finish`] reports its peaks.
pub struct PeakMemory {
    inner: Option<imp::Probe>,
    host_before: usize,
}

impl PeakMemory {
    pub fn start(device: &Device) -> Self {
        let host_before = crate::host_memory::reset_peak();
        Self {
            inner: imp::Probe::start(device),
            host_before,
        }
    }

    /// `{"pool_peak_bytes", "device_used_peak_bytes", "device_used_before_bytes"}` (nulls on
    /// CPU) and `{"host_live_peak_bytes", "host_live_before_bytes"}`.
    pub fn finish(self) -> Value {
        let mut out = match self.inner {
            Some(probe) => probe.finish(),
            None => json!({"pool_peak_bytes": null, "device_used_peak_bytes": null,
                           "device_used_before_bytes": null}),
        };
        if let Some(map) = out.as_object_mut() {
            map.insert(
                "host_live_peak_bytes".into(),
                crate::host_memory::peak_bytes().into(),
            );
            map.insert("host_live_before_bytes".into(), self.host_before.into());
        }
        out
    }
}

#[cfg(feature = "cuda")]
mod imp {
    use candle_core::cuda::cudarc::driver::{sys, CudaContext};
    use candle_core::Device;
    use serde_json::{json, Value};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread::JoinHandle;
    use std::time::Duration;

    fn context(device: &Device) -> Option<Arc<CudaContext>> {
        let cuda = device.as_cuda_device().ok()?;
        Some(cuda.cuda_stream().context().clone())
    }

    pub fn device_memory(device: &Device) -> Option<(usize, usize)> {
        context(device)?.mem_get_info().ok()
    }

    fn default_pool(ctx: &CudaContext) -> Option<sys::CUmemoryPool> {
        ctx.bind_to_thread().ok()?;
        let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
        // SAFETY: the out-pointer is valid for the call; the device handle is the context's.
        let rc = unsafe { sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) };
        (rc == sys::CUresult::CUDA_SUCCESS && !pool.is_null()).then_some(pool)
    }

    fn set_pool_attribute(
        ctx: &CudaContext,
        attr: sys::CUmemPool_attribute,
        mut value: u64,
    ) -> bool {
        let Some(pool) = default_pool(ctx) else {
            return false;
        };
        // SAFETY: both attributes take a cuuint64_t, which `value` is.
        let rc = unsafe {
            sys::cuMemPoolSetAttribute(pool, attr, &mut value as *mut u64 as *mut std::ffi::c_void)
        };
        rc == sys::CUresult::CUDA_SUCCESS
    }

    fn pool_used_high(ctx: &CudaContext) -> Option<u64> {
        let pool = default_pool(ctx)?;
        let mut value: u64 = 0;
        // SAFETY: USED_MEM_HIGH is a cuuint64_t.
        let rc = unsafe {
            sys::cuMemPoolGetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
                &mut value as *mut u64 as *mut std::ffi::c_void,
            )
        };
        (rc == sys::CUresult::CUDA_SUCCESS).then_some(value)
    }

    pub fn keep_pool_memory(device: &Device) -> bool {
        code2nl::train::device::keep_freed_memory_in_pool(device)
    }

    pub struct Probe {
        ctx: Arc<CudaContext>,
        device: Device,
        before: Option<usize>,
        stop: Arc<AtomicBool>,
        peak: Arc<AtomicUsize>,
        sampler: Option<JoinHandle<()>>,
    }

    impl Probe {
        pub fn start(device: &Device) -> Option<Self> {
            let ctx = context(device)?;
            let _ = device.synchronize();
            // Only 0 may be written: it resets the high-water mark to the current use.
            set_pool_attribute(
                &ctx,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
                0,
            );
            let used = |c: &CudaContext| c.mem_get_info().ok().map(|(free, total)| total - free);
            let before = used(&ctx);
            let stop = Arc::new(AtomicBool::new(false));
            let peak = Arc::new(AtomicUsize::new(before.unwrap_or(0)));
            let sampler = {
                let (ctx, stop, peak) = (ctx.clone(), stop.clone(), peak.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(u) = used(&ctx) {
                            peak.fetch_max(u, Ordering::Relaxed);
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
            };
            Some(Self {
                ctx,
                device: device.clone(),
                before,
                stop,
                peak,
                sampler: Some(sampler),
            })
        }

        pub fn finish(mut self) -> Value {
            let _ = self.device.synchronize();
            self.stop.store(true, Ordering::Relaxed);
            if let Some(handle) = self.sampler.take() {
                let _ = handle.join();
            }
            json!({
                "pool_peak_bytes": pool_used_high(&self.ctx),
                "device_used_peak_bytes": self.peak.load(Ordering::Relaxed),
                "device_used_before_bytes": self.before,
            })
        }
    }
}

#[cfg(not(feature = "cuda"))]
mod imp {
    use candle_core::Device;
    use serde_json::Value;

    pub fn device_memory(_: &Device) -> Option<(usize, usize)> {
        None
    }

    pub fn keep_pool_memory(_: &Device) -> bool {
        false
    }

    pub struct Probe;

    impl Probe {
        pub fn start(_: &Device) -> Option<Self> {
            None
        }

        pub fn finish(self) -> Value {
            Value::Null
        }
    }
}
