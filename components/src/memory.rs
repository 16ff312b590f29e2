//! Giving freed memory back to the system, and keeping what malloc holds in one arena.
//!
//! glibc's malloc keeps what many small, short-lived allocations freed in its per-thread arenas:
//! after 500 containers' tasks and connections ended, the process measured 51 MiB where it had
//! grown from 30 MiB to 50 MiB, and `malloc_trim(0)` brought it to 36 MiB. Components that end
//! many tasks at once (the docker source) call [`release_freed`] once things settle.
//!
//! glibc also gives each thread that allocates under contention an arena of its own (up to
//! eight per core), each keeping its own free memory: at `max` the runtime's workers, the
//! reader and the blocking threads held 3.5 MiB more than one shared arena does (35.0 against
//! 31.5 MiB peak, the same lines per second and CPU per line within noise). The shipper's
//! threads hand batches to each other rather than allocating side by side, so one arena is
//! what [`use_one_malloc_arena`] asks for, unless the operator chose otherwise.
//!
//! Guarantees: [`release_freed`] only returns pages no allocation uses; it never frees live
//! memory. [`use_one_malloc_arena`] changes where memory is kept, never what is allocated, and
//! leaves `MALLOC_ARENA_MAX` and `GLIBC_TUNABLES`, when set, in charge. On other C libraries
//! (musl) both do nothing.

/// Returns the free pages of every malloc arena to the system (glibc); a no-op elsewhere. It
/// walks every arena: call it after a burst of frees, not per event.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory malloc holds as free; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Asks glibc's malloc to keep one arena for every thread (`M_ARENA_MAX` = 1), unless the
/// environment sets the arena count (`MALLOC_ARENA_MAX`, `GLIBC_TUNABLES`). Call it first
/// thing in `main`, before threads start: arenas made before stay in use. Returns whether the
/// limit was set.
pub fn use_one_malloc_arena() -> bool {
    let chosen_by_operator = ["MALLOC_ARENA_MAX", "GLIBC_TUNABLES"]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
    if chosen_by_operator {
        return false;
    }
    limit_arenas(1)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_arenas(arenas: i32) -> bool {
    // SAFETY: mallopt only changes malloc's own tuning; it takes no pointers.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_arenas(_arenas: i32) -> bool {
    false
}

#[cfg(test)]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// How many arenas glibc's malloc has, from `malloc_info`'s report.
    fn arenas() -> usize {
        let mut text: *mut libc::c_char = std::ptr::null_mut();
        let mut len: libc::size_t = 0;
        // SAFETY: open_memstream hands back a stream writing into a buffer it allocates;
        // malloc_info writes its XML report into it; fclose settles `text` and `len`, and the
        // buffer is freed once read.
        unsafe {
            let stream = libc::open_memstream(&mut text, &mut len);
            assert!(!stream.is_null());
            assert_eq!(libc::malloc_info(0, stream), 0);
            libc::fclose(stream);
            let report = std::ffi::CStr::from_ptr(text)
                .to_string_lossy()
                .into_owned();
            libc::free(text.cast());
            report.matches("<heap nr=").count()
        }
    }

    /// Threads that allocate at the same time, each holding what it allocated until all have.
    fn allocate_on_threads(threads: usize) {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    let held: Vec<Vec<u8>> = (0..1000).map(|i| vec![1u8; 64 + i]).collect();
                    barrier.wait();
                    held.len()
                })
            })
            .collect();
        for handle in handles {
            assert_eq!(handle.join().unwrap(), 1000);
        }
    }

    #[test]
    fn threads_started_after_the_limit_make_no_arena_of_their_own() {
        // Arenas made before the limit stay; what is asserted is that none are added.
        // (nextest runs each test in a process of its own.)
        if std::env::var_os("MALLOC_ARENA_MAX").is_some()
            || std::env::var_os("GLIBC_TUNABLES").is_some()
        {
            assert!(!use_one_malloc_arena(), "the operator's choice stays");
            return;
        }
        assert!(use_one_malloc_arena());
        let before = arenas();
        allocate_on_threads(8);
        assert_eq!(arenas(), before);
    }
}
