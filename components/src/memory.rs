//! Giving freed memory back to the system.
//!
//! glibc's malloc keeps what many small, short-lived allocations freed in its per-thread arenas:
//! after 500 containers' tasks and connections ended, the process measured 51 MiB where it had
//! grown from 30 MiB to 50 MiB, and `malloc_trim(0)` brought it to 36 MiB. Components that end
//! many tasks at once (the docker source) call [`release_freed`] once things settle.
//!
//! Guarantees: it only returns pages no allocation uses; it never frees live memory. On other
//! C libraries (musl) it does nothing.

/// Returns the free pages of every malloc arena to the system (glibc); a no-op elsewhere. It
/// walks every arena: call it after a burst of frees, not per event.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory malloc holds as free; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}
