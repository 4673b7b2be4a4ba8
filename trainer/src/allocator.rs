//! The process's memory allocator: mimalloc, keeping the pages it frees.
//!
//! Burn's CPU backends allocate a fresh buffer for nearly every op's output, tens of megabytes at
//! a time. glibc's allocator serves each large one with a new `mmap` whose pages the kernel faults
//! in and zeroes, and unmaps it on free: a quarter of a training step's time (docs/benchmarks.md,
//! "allocator"). mimalloc reuses freed memory; by default it still returns ("purges") idle pages to
//! the system after a second, and a training step frees and reallocates its buffers over a
//! longer cycle than that (a step takes seconds), so that pages were purged and faulted in again
//! at every step (measured: 25-45 % slower steps with the default). Purging is turned off: the
//! resident set stays at its peak, which is what a training process reaches at every step anyway.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (position 15 of `mi_option_e` in mimalloc 3's `mimalloc.h`;
/// libmimalloc-sys does not name it): milliseconds before freed pages are returned, −1 for never.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Stops mimalloc from returning freed pages to the system; call before the first large buffer.
pub fn keep_freed_pages() {
    // SAFETY: setting an option is allowed at any time; it only affects later purges.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option number names the purge delay: its default in mimalloc 3's `options.c` is
    /// 1000 ms, which neither of its neighbours has (the deprecated eager-commit delay 1, the NUMA
    /// node count 0). Setting it is then read back.
    #[test]
    fn purge_delay_is_the_option_set() {
        // SAFETY: reading and setting options is allowed at any time.
        let default = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert_eq!(default, 1000);
        keep_freed_pages();
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }, -1);
    }
}
