//! Tables keyed by a hash computed already (xxh3 of a line, of a label set): the table uses the
//! key as its hash instead of hashing it again.
//!
//! Guarantees: a `u64` key is its own hash; any other input still hashes (folded byte by byte),
//! so a table keyed otherwise stays correct, only slower.

use std::hash::{BuildHasher, Hasher};

/// The [`BuildHasher`] of tables whose `u64` keys are hashes already.
#[derive(Clone, Copy, Debug, Default)]
pub struct PrehashedKeys;

impl BuildHasher for PrehashedKeys {
    type Hasher = KeyAsHash;

    fn build_hasher(&self) -> KeyAsHash {
        KeyAsHash(0)
    }
}

/// Passes a `u64` through as the hash.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyAsHash(u64);

impl Hasher for KeyAsHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_u64_key_is_its_own_hash_and_bytes_still_hash() {
        assert_eq!(PrehashedKeys.hash_one(0xdead_beef_u64), 0xdead_beef);
        assert_ne!(PrehashedKeys.hash_one("a"), PrehashedKeys.hash_one("b"));
    }
}
