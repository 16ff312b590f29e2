//! A hint to the CPU to start loading bytes that a loop will read a few steps later.
//!
//! Guarantees: a hint only. It never reads or writes the bytes from Rust's point of view, cannot
//! fault (the CPU drops a prefetch of an unmapped address), and is a no-op off x86-64.
//!
//! Why: by the time a batch reaches a sink, its lines were written by the file source and read by
//! the transforms on the other core a while ago, so copying each into the push body waits on
//! memory once per line; asking for the next lines while copying this one overlaps those waits.
//! The same holds for a table looked up at random (dedup's keys): asking for the slot of a key a
//! few lines ahead overlaps its cache miss with the lookups before it.

/// How many cache lines of a line's start are asked for (a typical line is 100-200 bytes).
const CACHE_LINES: usize = 2;
const CACHE_LINE: usize = 64;

/// Ask for the first bytes of `bytes` to be loaded into the cache.
#[inline(always)]
pub fn prefetch_read(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let start = bytes.as_ptr();
        for i in 0..CACHE_LINES.min(bytes.len().div_ceil(CACHE_LINE)) {
            // SAFETY: a prefetch never dereferences its address in the Rust sense and cannot
            // fault; the address is inside the slice anyway (i * 64 < len).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(i * CACHE_LINE).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Ask for the cache line holding `address` to be loaded. Any address will do, inside an
/// allocation or not: a hint computed from a table's layout that turns out stale (the table grew)
/// only wastes the hint.
#[inline(always)]
pub fn prefetch_address(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch never dereferences its address in the Rust sense and cannot fault.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(address.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_on_any_slice_leaves_its_bytes_as_they_were() {
        let bytes = vec![7u8; 300];
        for slice in [
            &bytes[..0],
            &bytes[..1],
            &bytes[..64],
            &bytes[..65],
            &bytes[..],
        ] {
            prefetch_read(slice);
        }
        assert!(bytes.iter().all(|b| *b == 7));
    }

    #[test]
    fn a_hint_on_an_address_outside_any_allocation_does_not_fault() {
        let bytes = [7u8; 8];
        prefetch_address(bytes.as_ptr().wrapping_add(1 << 40));
        prefetch_address(std::ptr::null());
        assert_eq!(bytes, [7u8; 8]);
    }
}
