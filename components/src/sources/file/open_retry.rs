//! Files that matched but could not be opened (permissions, a transient error), tried again
//! with growing delays.
//!
//! Guarantees:
//! - A path is queued once however often it fails; the queue holds at most `capacity` paths,
//!   and a path that does not fit is refused (the caller counts and logs it: its lines are not
//!   read).
//! - A path is tried at most `max_attempts` times, 1 s, 2 s, 4 s ... at most 60 s apart; then
//!   it is given up (the caller counts and logs it).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One path waiting to be opened again.
#[derive(Debug)]
pub(super) struct RetryEntry {
    pub(super) path: PathBuf,
    pub(super) attempts: u32,
    pub(super) next_at: Instant,
}

/// What became of a path handed to [`OpenRetries::schedule`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Scheduled {
    Queued,
    AlreadyQueued,
    /// The queue is full: the path is not retried.
    Refused,
}

/// The paths waiting to be opened again.
#[derive(Debug)]
pub(super) struct OpenRetries {
    queue: VecDeque<RetryEntry>,
    capacity: usize,
    max_attempts: u32,
}

impl OpenRetries {
    pub(super) fn new(capacity: usize, max_attempts: u32) -> Self {
        Self {
            queue: VecDeque::new(),
            capacity,
            max_attempts,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Queues `path` after its first failed open.
    pub(super) fn schedule(&mut self, path: &Path, now: Instant) -> Scheduled {
        if self.queue.iter().any(|r| r.path == path) {
            return Scheduled::AlreadyQueued;
        }
        if self.queue.len() >= self.capacity {
            return Scheduled::Refused;
        }
        self.queue.push_back(RetryEntry {
            path: path.to_path_buf(),
            attempts: 1,
            next_at: now + retry_delay(1),
        });
        Scheduled::Queued
    }

    /// Takes the entries whose time has come.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<RetryEntry> {
        let (due, waiting): (Vec<_>, Vec<_>) = self.queue.drain(..).partition(|r| r.next_at <= now);
        self.queue.extend(waiting);
        due
    }

    /// An attempt at `entry` failed: queued for a later one, or `false` when it was the last.
    pub(super) fn failed_again(&mut self, entry: RetryEntry, now: Instant) -> bool {
        if entry.attempts >= self.max_attempts {
            return false;
        }
        let attempts = entry.attempts + 1;
        self.queue.push_back(RetryEntry {
            path: entry.path,
            attempts,
            next_at: now + retry_delay(attempts),
        });
        true
    }

    /// Makes every entry due now.
    #[cfg(test)]
    pub(super) fn make_due(&mut self) {
        let now = Instant::now();
        for entry in &mut self.queue {
            entry.next_at = now;
        }
    }

    #[cfg(test)]
    pub(super) fn paths(&self) -> Vec<&Path> {
        self.queue.iter().map(|r| r.path.as_path()).collect()
    }
}

/// 1 s, 2 s, 4 s ... at most 60 s.
fn retry_delay(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_once_per_path_and_given_up_after_max_attempts() {
        let mut retries = OpenRetries::new(2, 2);
        let now = Instant::now();
        assert_eq!(retries.schedule(Path::new("a"), now), Scheduled::Queued);
        assert_eq!(
            retries.schedule(Path::new("a"), now),
            Scheduled::AlreadyQueued
        );
        assert_eq!(retries.schedule(Path::new("b"), now), Scheduled::Queued);
        assert_eq!(retries.schedule(Path::new("c"), now), Scheduled::Refused);
        assert!(
            retries.take_due(now).is_empty(),
            "the first retry waits 1 s"
        );
        let later = now + Duration::from_secs(1);
        let due = retries.take_due(later);
        assert_eq!(due.len(), 2);
        for entry in due {
            assert!(
                retries.failed_again(entry, later),
                "attempt 2 of 2 is still to come"
            );
        }
        let due = retries.take_due(later + Duration::from_secs(2));
        assert_eq!(due.len(), 2);
        for entry in due {
            assert!(
                !retries.failed_again(entry, later),
                "given up after 2 attempts"
            );
        }
        assert_eq!(retries.len(), 0);
    }

    #[test]
    fn retry_delay_doubles_up_to_a_minute() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(3), Duration::from_secs(4));
        assert_eq!(retry_delay(30), Duration::from_secs(60));
    }
}
