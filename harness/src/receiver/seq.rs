//! Sequence tracking: the harness writes `seq=<n>` into its lines; the receiver records, per
//! stream, which numbers were stored, so a run can tell lines lost (never stored) from lines
//! stored twice (e.g. resent with a new timestamp, which exact-duplicate detection cannot see).
//!
//! Guarantees:
//! - Memory is one bit per number in blocks of 4096 numbers allocated on first use, and all
//!   streams together never hold more blocks than the budget; a number that would need a block
//!   past the budget is counted as `untracked` and does not move `max_seq`.
//! - `missing` is the count of numbers in `1..=max_seq` never stored; `seq=0` is recorded but
//!   never counted missing.

use std::collections::HashMap;

use memchr::memmem;

/// Numbers per block.
const BLOCK_BITS: u64 = 4096;
const BLOCK_WORDS: usize = (BLOCK_BITS / 64) as usize;
/// Bytes per block, for turning a memory budget into a block count.
pub const BLOCK_BYTES: u64 = BLOCK_BITS / 8;

/// The first `seq=<digits>` of a line whose `seq` is not the tail of a longer word.
pub fn find_seq(line: &[u8]) -> Option<u64> {
    find_number(line, b"seq=")
}

/// The number after the first `key` (e.g. `seq=`) that starts a word (not preceded by a letter,
/// a digit or `_`) and is followed by digits; `None` if there is none or it overflows a `u64`.
pub fn find_number(line: &[u8], key: &[u8]) -> Option<u64> {
    for at in memmem::find_iter(line, key) {
        let word_before = at > 0 && {
            let b = line[at - 1];
            b.is_ascii_alphanumeric() || b == b'_'
        };
        if word_before {
            continue;
        }
        let digits = &line[at + key.len()..];
        let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 {
            continue;
        }
        let mut value: u64 = 0;
        for &d in &digits[..len] {
            value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        }
        return Some(value);
    }
    None
}

/// Blocks shared by every stream's tracker.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeqBudget {
    pub max_blocks: u64,
    pub used_blocks: u64,
}

/// What became of one recorded number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqOutcome {
    First,
    Duplicate,
    Untracked,
}

/// One stream's numbers.
#[derive(Debug, Default)]
pub struct SeqTracker {
    blocks: HashMap<u64, Box<[u64; BLOCK_WORDS]>>,
    /// Distinct numbers of at least 1.
    seen: u64,
    pub duplicated: u64,
    pub max_seq: u64,
    pub untracked: u64,
}

impl SeqTracker {
    pub fn record(&mut self, seq: u64, budget: &mut SeqBudget) -> SeqOutcome {
        let block_index = seq / BLOCK_BITS;
        if !self.blocks.contains_key(&block_index) {
            if budget.used_blocks >= budget.max_blocks {
                self.untracked += 1;
                return SeqOutcome::Untracked;
            }
            budget.used_blocks += 1;
            self.blocks
                .insert(block_index, Box::new([0u64; BLOCK_WORDS]));
        }
        let Some(block) = self.blocks.get_mut(&block_index) else {
            self.untracked += 1;
            return SeqOutcome::Untracked;
        };
        let bit = seq % BLOCK_BITS;
        let word = &mut block[(bit / 64) as usize];
        let mask = 1u64 << (bit % 64);
        self.max_seq = self.max_seq.max(seq);
        if *word & mask != 0 {
            self.duplicated += 1;
            return SeqOutcome::Duplicate;
        }
        *word |= mask;
        if seq > 0 {
            self.seen += 1;
        }
        SeqOutcome::First
    }

    /// Distinct numbers of at least 1 that were stored.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Numbers in `1..=max_seq` never stored.
    pub fn missing(&self) -> u64 {
        self.max_seq - self.seen
    }

    /// Blocks this tracker holds (returned to the budget when it is reset).
    pub fn blocks(&self) -> u64 {
        self.blocks.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_seq_only_as_a_word() {
        assert_eq!(find_seq(b"msg=hello seq=42 x=1"), Some(42));
        assert_eq!(find_seq(b"seq=7"), Some(7));
        assert_eq!(find_seq(b"myseq=3 seq=9"), Some(9));
        assert_eq!(find_seq(b"{\"seq=\":1} seq=x"), None);
        assert_eq!(find_seq(b"no number here"), None);
        assert_eq!(find_seq(b"seq=99999999999999999999999"), None);
    }

    #[test]
    fn counts_missing_and_duplicates() {
        let mut budget = SeqBudget {
            max_blocks: 10,
            used_blocks: 0,
        };
        let mut tracker = SeqTracker::default();
        for seq in [1, 2, 4, 4, 7, 2] {
            tracker.record(seq, &mut budget);
        }
        assert_eq!(tracker.max_seq, 7);
        assert_eq!(tracker.duplicated, 2);
        // 3, 5 and 6.
        assert_eq!(tracker.missing(), 3);
        assert_eq!(budget.used_blocks, 1);
        // Far apart numbers take a block each.
        assert_eq!(tracker.record(1_000_000, &mut budget), SeqOutcome::First);
        assert_eq!(budget.used_blocks, 2);
    }

    #[test]
    fn the_budget_bounds_memory() {
        let mut budget = SeqBudget {
            max_blocks: 1,
            used_blocks: 0,
        };
        let mut tracker = SeqTracker::default();
        assert_eq!(tracker.record(1, &mut budget), SeqOutcome::First);
        assert_eq!(
            tracker.record(BLOCK_BITS * 5, &mut budget),
            SeqOutcome::Untracked
        );
        assert_eq!(tracker.untracked, 1);
        assert_eq!(tracker.max_seq, 1);
        assert_eq!(tracker.missing(), 0);
    }
}
