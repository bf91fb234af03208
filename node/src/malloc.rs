//! How a node asks glibc's malloc to give memory back to the kernel.
//!
//! glibc's defaults suit short programs, not a node that holds a large
//! state for months while it builds and frees buffers of tens of MiB (a
//! snapshot, a module's bytes, a batch of entries):
//!
//! - An allocation of at least the *mmap threshold* that no free chunk of
//!   the heap can hold gets pages of its own, which go back to the kernel
//!   when it is freed. The threshold starts at 128 KiB, but glibc raises it
//!   to the size of each such block freed, up to 32 MiB. After a node's
//!   first snapshot, every later one was built in the heap's arenas, and
//!   the holes it left there stayed resident.
//! - Freed memory inside an arena goes back only from the arena's top.
//!
//! So the node fixes the threshold, and [`release_free_memory`] hands back
//! the whole free pages inside the arenas after the moments that free the
//! most: a snapshot built or installed. With 10,000 tasks ticking every
//! second for 120 s, a fixed threshold alone (set through
//! `GLIBC_TUNABLES`) took each node's growth from 16-21 KiB per task to
//! 8-13; BENCHMARKS.md ("Memory handed back") has the runs, and those of
//! the threshold, the trim, redb's smaller cache and one read of a module
//! together.

/// Allocations of this size or more that no free chunk can hold get pages
/// of their own (a threshold set here also stops glibc from raising it).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 256 << 10;

/// Sets how malloc gives memory back. It overrides the same setting in
/// `GLIBC_TUNABLES`, and does nothing where glibc's malloc is not the
/// allocator (another target, or a `#[global_allocator]`).
///
/// # Safety
///
/// glibc's `mallopt` is not thread-safe: call this first thing in `main`,
/// before any other thread starts.
pub unsafe fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc's parameters, and the caller
    // promises no other thread exists yet.
    unsafe {
        if libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 {
            eprintln!("warning: malloc did not take the mmap threshold; memory freed may stay resident");
        }
    }
}

/// Hands the whole free pages of malloc's arenas back to the kernel. It
/// walks every arena under its lock: call it after freeing much, not often.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes malloc's own locks; it frees nothing in use.
    unsafe {
        libc::malloc_trim(0);
    }
}
