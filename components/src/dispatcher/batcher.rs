//! Cutting a sink's input into batches, one partition per batch.
//!
//! Guarantees:
//! - A batch holds events of one partition only, at most `batch_size` events and, unless a
//!   single event is larger, at most `batch_max_bytes`; a partial batch is ready
//!   `batch_timeout` after its first event.
//! - Events of one partition keep the order they arrived in.
//! - Every event's acknowledgements travel with it: an input batch split over several batches
//!   (by size or by partition) gives each a copy of its finalizers, and its own copy is settled
//!   only once every event has one.

use std::collections::VecDeque;

use tokio::time::Instant;

use super::DispatcherConfig;
use super::service::{PartitionKey, SinkService};
use crate::ack::{BatchStatus, Finalizers};
use crate::event::{EventBatch, LogEvent};

/// A batch ready to be sent, with its partition.
pub(super) struct Ready {
    pub(super) partition: PartitionKey,
    pub(super) batch: EventBatch,
}

/// The batch being filled for one partition.
#[derive(Default)]
struct Pending {
    events: Vec<LogEvent>,
    bytes: usize,
    finalizers: Finalizers,
    deadline: Option<Instant>,
}

/// The batches being filled, one per partition seen since the last flush.
#[derive(Default)]
pub(super) struct Batcher {
    partitions: Vec<(PartitionKey, Pending)>,
}

impl Batcher {
    pub(super) fn is_empty(&self) -> bool {
        self.partitions.iter().all(|(_, p)| p.events.is_empty())
    }

    /// When the earliest partial batch is due.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.partitions.iter().filter_map(|(_, p)| p.deadline).min()
    }

    /// Adds an input batch; `partitioned` names each event's partition (`None`: a sink with
    /// one partition, the fast path).
    pub(super) fn push(
        &mut self,
        batch: EventBatch,
        config: &DispatcherConfig,
        partitioned: Option<&dyn SinkService>,
        ready: &mut VecDeque<Ready>,
    ) {
        let EventBatch {
            events,
            mut finalizers,
        } = batch;
        if events.is_empty() {
            // Nothing in it to deliver.
            finalizers.settle(BatchStatus::Delivered);
            return;
        }
        let Some(service) = partitioned else {
            let pending = self.pending(None);
            pending.push(events, finalizers, config, None, ready);
            return;
        };
        let mut groups: Vec<(PartitionKey, Vec<LogEvent>)> = Vec::new();
        for event in events {
            let key = service.partition(&event);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, list)) => list.push(event),
                None => groups.push((key, vec![event])),
            }
        }
        for (key, events) in groups {
            let copy = finalizers.clone();
            self.pending(key.clone())
                .push(events, copy, config, key, ready);
        }
        // Every event now travels with a copy of `finalizers`; this one has none of its own.
        finalizers.settle(BatchStatus::Delivered);
    }

    /// Makes ready every partial batch whose timeout has passed.
    pub(super) fn flush_due(&mut self, now: Instant, ready: &mut VecDeque<Ready>) {
        for (key, pending) in &mut self.partitions {
            if pending.deadline.is_some_and(|at| at <= now) {
                pending.flush(key.clone(), ready);
            }
        }
        self.partitions.retain(|(_, p)| !p.events.is_empty());
    }

    /// Makes everything ready (the input has closed).
    pub(super) fn flush_all(&mut self, ready: &mut VecDeque<Ready>) {
        for (key, mut pending) in self.partitions.drain(..) {
            pending.flush(key, ready);
        }
    }

    fn pending(&mut self, key: PartitionKey) -> &mut Pending {
        let index = match self.partitions.iter().position(|(k, _)| *k == key) {
            Some(index) => index,
            None => {
                self.partitions.push((key, Pending::default()));
                self.partitions.len() - 1
            }
        };
        &mut self.partitions[index].1
    }
}

impl Pending {
    fn push(
        &mut self,
        events: Vec<LogEvent>,
        mut finalizers: Finalizers,
        config: &DispatcherConfig,
        key: PartitionKey,
        ready: &mut VecDeque<Ready>,
    ) {
        if self.events.is_empty() {
            self.deadline = Some(Instant::now() + config.batch_timeout);
        }
        let incoming_bytes: usize = events.iter().map(LogEvent::estimated_bytes).sum();
        if self.events.len() + events.len() <= config.batch_size
            && self.bytes + incoming_bytes <= config.batch_max_bytes
        {
            // The common case: the whole input batch fits.
            if self.events.is_empty() {
                self.events = events;
            } else {
                self.events.extend(events);
            }
            self.bytes += incoming_bytes;
            self.finalizers.merge(finalizers);
            if self.events.len() >= config.batch_size || self.bytes >= config.batch_max_bytes {
                self.flush(key, ready);
            }
            return;
        }
        self.finalizers.merge(finalizers.clone());
        for event in events {
            let size = event.estimated_bytes();
            if !self.events.is_empty() && self.bytes + size > config.batch_max_bytes {
                self.flush_keeping(key.clone(), ready, &finalizers);
            }
            if self.events.is_empty() && self.deadline.is_none() {
                // The first event of a new batch starts its timeout.
                self.deadline = Some(Instant::now() + config.batch_timeout);
            }
            self.bytes += size;
            self.events.push(event);
            if self.events.len() >= config.batch_size || self.bytes >= config.batch_max_bytes {
                self.flush_keeping(key.clone(), ready, &finalizers);
            }
        }
        if self.events.is_empty() {
            // Cut exactly at the end: the copy taken for the next batch holds no events.
            self.finalizers.settle(BatchStatus::Delivered);
            self.deadline = None;
        }
        // Every event now travels with a copy of `finalizers`; this one has none of its own.
        finalizers.settle(BatchStatus::Delivered);
    }

    /// Cuts a batch mid-input: the events still to come owe to `current` as well.
    fn flush_keeping(
        &mut self,
        key: PartitionKey,
        ready: &mut VecDeque<Ready>,
        current: &Finalizers,
    ) {
        self.flush(key, ready);
        // `flush` left an empty set behind: nothing is dropped unsettled here.
        self.finalizers = current.clone();
        self.deadline = None;
    }

    fn flush(&mut self, key: PartitionKey, ready: &mut VecDeque<Ready>) {
        if !self.events.is_empty() {
            ready.push_back(Ready {
                partition: key,
                batch: EventBatch::new(
                    std::mem::take(&mut self.events),
                    std::mem::take(&mut self.finalizers),
                ),
            });
        }
        self.bytes = 0;
        self.deadline = None;
    }
}
