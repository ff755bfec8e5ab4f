//! How the controller's memory goes back to the operating system.
//!
//! A rebuild frees what reading, building and translating used. glibc keeps most of it
//! resident: freed blocks in the middle of its heaps, and in the arenas of the threads that
//! parsed the manifests, are not returned until asked. After the first load of 50,000 routes that
//! is half the process's memory (368 MB resident, 177 MB once returned), so every published
//! rebuild gives back what is free beyond a margin ([`return_free_memory`]).
//!
//! A push writes one response per stream, each as large as the route table (2 MB at 10,000
//! destinations), and frees it once sent. glibc's allocator raises its threshold for mapping
//! large blocks on their own after the first such block is freed, so later ones come from its
//! heap and stay there when freed: 1,000 streams then leave 600 MB resident that no stream holds
//! (measured in `make bench-xds`). A fixed threshold keeps every large block mapped on its own
//! and returned when freed.

/// Blocks of at least this many bytes are mapped on their own and returned when freed.
const LARGE_BLOCK: i32 = 128 * 1024;

/// Makes freed large blocks go back to the operating system at once (glibc only; elsewhere
/// the allocator's default stands). One of the project's two `unsafe` calls.
#[allow(unsafe_code)]
pub fn return_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets a tuning parameter of glibc's allocator; it takes the
    // allocator's own locks and is safe to call while other threads allocate.
    unsafe {
        if libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE_BLOCK) == 0 {
            tracing::warn!("the allocator refused a fixed threshold for large blocks");
        }
    }
}

/// Free memory the allocator may keep for the next rebuild; more than this goes back.
const KEPT_FREE: usize = 32 * 1024 * 1024;

/// Returns the memory the allocator holds free, in every arena, to the operating system, when
/// there is more of it than [`KEPT_FREE`] (glibc only). A rebuild's own garbage stays for the
/// next rebuild to reuse, without faulting its pages in again; what a large load freed goes back.
/// Trimming walks the free lists, a few milliseconds, so this runs on a blocking thread.
#[allow(unsafe_code)]
pub fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let started = std::time::Instant::now();
        // SAFETY: `mallinfo2` reads the allocator's counters and `malloc_trim` releases free
        // pages; each takes the arenas' locks and is safe to call while other threads allocate.
        unsafe {
            if libc::mallinfo2().fordblks > KEPT_FREE {
                libc::malloc_trim(0);
            }
        }
        tracing::debug!(elapsed = ?started.elapsed(), "free memory checked");
    }
}
