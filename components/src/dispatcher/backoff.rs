//! Which partitions are backing off, and which batches wait out a retry delay.
//!
//! Guarantees:
//! - A partition is backing off from a batch's first retriable answer until that batch is
//!   settled (or split); while it is, the dispatcher sends none of its other batches, so a
//!   destination that refuses one tenant is asked again by one batch, not by all of them.
//! - A batch waiting out its retry delay ("parked") does not hold a worker: the other
//!   partitions keep `worker_count` sends in flight.
//! - Every change wakes the dispatcher; guards undo their counts when dropped, so a delivery
//!   cancelled at shutdown leaves nothing marked.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::batcher::Ready;
use super::service::PartitionKey;

#[derive(Default)]
struct State {
    /// Batches backing off, by partition (absent: none).
    partitions: HashMap<PartitionKey, usize>,
    parked_batches: usize,
    parked_events: usize,
}

/// Shared by a dispatcher and its deliveries.
#[derive(Default)]
pub(super) struct Backoffs {
    state: Mutex<State>,
    changed: Notify,
}

impl Backoffs {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The counts stay consistent under a panic elsewhere: each update is one statement.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Resolves when a partition starts or stops backing off, or a batch parks or resumes.
    pub(super) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Batches and events now waiting out a retry delay.
    pub(super) fn parked(&self) -> (usize, usize) {
        let state = self.lock();
        (state.parked_batches, state.parked_events)
    }

    /// The index of the first batch in `ready` whose partition is not backing off.
    pub(super) fn next_sendable(&self, ready: &VecDeque<Ready>) -> Option<usize> {
        if ready.is_empty() {
            return None;
        }
        let state = self.lock();
        if state.partitions.is_empty() {
            return Some(0);
        }
        ready
            .iter()
            .position(|r| !state.partitions.contains_key(&r.partition))
    }

    /// Whether `partition` is backing off.
    #[cfg(test)]
    pub(super) fn is_backing_off(&self, partition: &PartitionKey) -> bool {
        self.lock().partitions.contains_key(partition)
    }

    /// Marks `partition` backing off until the returned guard is dropped.
    pub(super) fn hold(self: &Arc<Self>, partition: PartitionKey) -> Holding {
        *self.lock().partitions.entry(partition.clone()).or_insert(0) += 1;
        self.changed.notify_one();
        Holding {
            backoffs: self.clone(),
            partition,
        }
    }

    /// Counts a batch of `events` as parked until the returned guard is dropped.
    pub(super) fn park(self: &Arc<Self>, events: usize) -> Parked {
        {
            let mut state = self.lock();
            state.parked_batches += 1;
            state.parked_events += events;
        }
        self.changed.notify_one();
        Parked {
            backoffs: self.clone(),
            events,
        }
    }
}

/// A partition backing off because of one batch.
pub(super) struct Holding {
    backoffs: Arc<Backoffs>,
    partition: PartitionKey,
}

impl Drop for Holding {
    fn drop(&mut self) {
        {
            let mut state = self.backoffs.lock();
            if let Some(count) = state.partitions.get_mut(&self.partition) {
                *count -= 1;
                if *count == 0 {
                    state.partitions.remove(&self.partition);
                }
            }
        }
        self.backoffs.changed.notify_one();
    }
}

/// A batch waiting out its retry delay.
pub(super) struct Parked {
    backoffs: Arc<Backoffs>,
    events: usize,
}

impl Drop for Parked {
    fn drop(&mut self) {
        {
            let mut state = self.backoffs.lock();
            state.parked_batches -= 1;
            state.parked_events -= self.events;
        }
        self.backoffs.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::Finalizers;
    use crate::event::EventBatch;

    fn ready(partition: &str) -> Ready {
        Ready {
            partition: Some(partition.into()),
            batch: EventBatch::new(Vec::new(), Finalizers::default()),
        }
    }

    #[test]
    fn a_held_partition_is_skipped_until_its_batch_settles() {
        let backoffs = Arc::new(Backoffs::default());
        let queue: VecDeque<Ready> = [ready("a"), ready("b")].into_iter().collect();
        assert_eq!(backoffs.next_sendable(&queue), Some(0));
        let first = backoffs.hold(Some("a".into()));
        let second = backoffs.hold(Some("a".into()));
        assert_eq!(backoffs.next_sendable(&queue), Some(1));
        drop(first);
        assert!(backoffs.is_backing_off(&Some("a".into())));
        drop(second);
        assert!(!backoffs.is_backing_off(&Some("a".into())));
        assert_eq!(backoffs.next_sendable(&queue), Some(0));
    }

    #[test]
    fn parked_counts_follow_their_guards() {
        let backoffs = Arc::new(Backoffs::default());
        let one = backoffs.park(10);
        let two = backoffs.park(5);
        assert_eq!(backoffs.parked(), (2, 15));
        drop(one);
        assert_eq!(backoffs.parked(), (1, 5));
        drop(two);
        assert_eq!(backoffs.parked(), (0, 0));
    }
}
