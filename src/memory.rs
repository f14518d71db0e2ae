//! Handing freed heap back to the operating system.
//!
//! glibc's malloc returns to the kernel only the free space at the top of each arena.
//! After a reconnect storm the freed join and sync buffers sit between live
//! allocations, so RSS stayed near its peak long after every socket had left
//! (BENCHMARKS.md, "Memory comes back"). `malloc_trim(0)` walks every arena and
//! releases their free pages; it takes milliseconds even on a large heap, so a
//! background thread calls it every `MALLOC_TRIM_SECS` (default 30 s). With another
//! libc or allocator this does nothing.

use std::time::Duration;

/// Starts the background thread; call once per process.
pub fn spawn_trimmer(every: Duration) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                // SAFETY: malloc_trim only walks glibc's own free lists, under the
                // arena locks; any thread may call it at any time.
                unsafe {
                    libc::malloc_trim(0);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no malloc-trim thread: freed memory stays with the process");
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = every;
}
