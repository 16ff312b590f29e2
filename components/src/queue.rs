//! Bounded queues of batches, counted in events and in bytes, and fan-out.
//!
//! Guarantees:
//! - A queue never holds more than its capacity in events, nor more than its capacity in bytes
//!   (a batch larger than either whole capacity waits until the queue is empty and then passes
//!   alone). A batch's bytes are its lines' lengths plus the size of each event's own record
//!   ([`batch_bytes`]), so the bound holds memory to the configured figure whatever the lines'
//!   length: long lines fill the byte capacity before the event capacity.
//! - `when_full: block` (the default) makes the sender wait: backpressure travels up to the
//!   source, which stops reading. `drop_newest` discards the incoming batch instead, counts it in
//!   `dropped_total{reason="queue_full"}` and acknowledges it as [`BatchStatus::Dropped`].
//! - The receiver yields batches in the order they were sent.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::ack::BatchStatus;
use crate::event::EventBatch;
use crate::fields::Fields;
use crate::telemetry::{self, ComponentAttrs};

/// What a full queue does with the next batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room (backpressure).
    #[default]
    Block,
    /// Discard the incoming batch, counted.
    DropNewest,
}

/// Why a send did not enqueue the batch.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The receiver is gone (the consumer stopped).
    Closed,
}

struct Shared {
    permits: Arc<Semaphore>,
    capacity: usize,
    byte_permits: Arc<Semaphore>,
    capacity_bytes: usize,
    attrs: Option<ComponentAttrs>,
}

impl Shared {
    fn report_size(&self) {
        if let Some(attrs) = &self.attrs {
            let used = self
                .capacity
                .saturating_sub(self.permits.available_permits());
            telemetry::QUEUE_SIZE.record(i64::try_from(used).unwrap_or(i64::MAX), &attrs.sink);
            let used_bytes = self
                .capacity_bytes
                .saturating_sub(self.byte_permits.available_permits());
            telemetry::QUEUE_BYTES
                .record(i64::try_from(used_bytes).unwrap_or(i64::MAX), &attrs.sink);
        }
    }
}

/// What a batch counts against a queue's byte capacity: its lines plus each event's own record
/// (the struct, labels and source are shared, so they are not counted per line).
pub fn batch_bytes(batch: &EventBatch) -> usize {
    let lines: usize = batch.events.iter().map(|event| event.line.len()).sum();
    lines + batch.events.len() * std::mem::size_of::<crate::event::LogEvent>()
}

/// A batch's permits: events and bytes, released together when the receiver takes it.
type Permits = (OwnedSemaphorePermit, OwnedSemaphorePermit);

/// The sending half; cheap to clone.
#[derive(Clone)]
pub struct QueueSender {
    tx: mpsc::UnboundedSender<(EventBatch, Permits)>,
    shared: Arc<Shared>,
    when_full: WhenFull,
}

/// A sender that does not keep the queue open: [`WeakQueueSender::upgrade`] gives a sender
/// while some other sender still exists, `None` once all are gone (the pipeline has drained).
#[derive(Clone)]
pub struct WeakQueueSender {
    tx: mpsc::WeakUnboundedSender<(EventBatch, Permits)>,
    shared: Arc<Shared>,
}

impl WeakQueueSender {
    /// A sender that waits for room whatever the queue's `when_full` (a replay is never
    /// dropped), while the queue still has other senders.
    pub fn upgrade(&self) -> Option<QueueSender> {
        Some(QueueSender {
            tx: self.tx.upgrade()?,
            shared: self.shared.clone(),
            when_full: WhenFull::Block,
        })
    }
}

/// The receiving half; also a [`Stream`] of batches.
pub struct QueueReceiver {
    rx: mpsc::UnboundedReceiver<(EventBatch, Permits)>,
    shared: Arc<Shared>,
}

/// A queue of `capacity` events and `capacity_bytes` bytes (see [`batch_bytes`]).
/// `metrics_key` names the sink for `queue_size{sink}`, `queue_bytes{sink}` and
/// `dropped_total`; `None` keeps the queue out of the metrics (transform inputs).
pub fn queue(
    capacity: usize,
    capacity_bytes: usize,
    when_full: WhenFull,
    metrics_key: Option<&str>,
) -> (QueueSender, QueueReceiver) {
    let most = Semaphore::MAX_PERMITS.min(u32::MAX as usize);
    let capacity = capacity.clamp(1, most);
    let capacity_bytes = capacity_bytes.clamp(1, most);
    let (tx, rx) = mpsc::unbounded_channel();
    let attrs = metrics_key.map(ComponentAttrs::new);
    if let Some(attrs) = &attrs {
        telemetry::QUEUE_CAPACITY.record(i64::try_from(capacity).unwrap_or(i64::MAX), &attrs.sink);
        telemetry::QUEUE_CAPACITY_BYTES.record(
            i64::try_from(capacity_bytes).unwrap_or(i64::MAX),
            &attrs.sink,
        );
        telemetry::QUEUE_SIZE.record(0, &attrs.sink);
        telemetry::QUEUE_BYTES.record(0, &attrs.sink);
    }
    let shared = Arc::new(Shared {
        permits: Arc::new(Semaphore::new(capacity)),
        capacity,
        byte_permits: Arc::new(Semaphore::new(capacity_bytes)),
        capacity_bytes,
        attrs,
    });
    (
        QueueSender {
            tx,
            shared: shared.clone(),
            when_full,
        },
        QueueReceiver { rx, shared },
    )
}

impl QueueSender {
    /// Enqueues a batch, waiting for room or dropping it as `when_full` says.
    pub async fn send(&self, mut batch: EventBatch) -> Result<(), SendError> {
        if batch.is_empty() {
            // Nothing in it to deliver.
            batch.finalizers.settle(BatchStatus::Delivered);
            return Ok(());
        }
        // u32 cannot overflow: both capacities were clamped to u32 above.
        let wanted = batch.len().min(self.shared.capacity) as u32;
        let wanted_bytes = batch_bytes(&batch).min(self.shared.capacity_bytes) as u32;
        let permits = match self.when_full {
            // Events first, then bytes: a sender holding event permits while it waits for bytes
            // cannot block the receiver, which releases both as it takes batches.
            WhenFull::Block => {
                let events = self
                    .shared
                    .permits
                    .clone()
                    .acquire_many_owned(wanted)
                    .await
                    .map_err(|_| SendError::Closed)?;
                let bytes = self
                    .shared
                    .byte_permits
                    .clone()
                    .acquire_many_owned(wanted_bytes)
                    .await
                    .map_err(|_| SendError::Closed)?;
                (events, bytes)
            }
            WhenFull::DropNewest => {
                let events = self.shared.permits.clone().try_acquire_many_owned(wanted);
                let bytes = self
                    .shared
                    .byte_permits
                    .clone()
                    .try_acquire_many_owned(wanted_bytes);
                match (events, bytes) {
                    (Ok(events), Ok(bytes)) => (events, bytes),
                    (Err(tokio::sync::TryAcquireError::Closed), _)
                    | (_, Err(tokio::sync::TryAcquireError::Closed)) => {
                        return Err(SendError::Closed);
                    }
                    _ => {
                        if let Some(attrs) = &self.shared.attrs {
                            attrs.dropped(batch.len(), "queue_full");
                        }
                        batch.finalizers.settle(BatchStatus::Dropped);
                        return Ok(());
                    }
                }
            }
        };
        self.tx
            .send((batch, permits))
            .map_err(|_| SendError::Closed)?;
        self.shared.report_size();
        Ok(())
    }

    /// A handle that does not keep the queue open (see [`WeakQueueSender`]).
    pub fn downgrade(&self) -> WeakQueueSender {
        WeakQueueSender {
            tx: self.tx.downgrade(),
            shared: self.shared.clone(),
        }
    }

    /// Events currently queued.
    pub fn len(&self) -> usize {
        self.shared
            .capacity
            .saturating_sub(self.shared.permits.available_permits())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Bytes currently queued (see [`batch_bytes`]).
    pub fn len_bytes(&self) -> usize {
        self.shared
            .capacity_bytes
            .saturating_sub(self.shared.byte_permits.available_permits())
    }
}

impl QueueReceiver {
    /// The next batch; `None` once every sender is dropped and the queue is empty.
    pub async fn recv(&mut self) -> Option<EventBatch> {
        futures::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<EventBatch>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some((batch, permits))) => {
                drop(permits);
                self.shared.report_size();
                Poll::Ready(Some(batch))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for QueueReceiver {
    fn drop(&mut self) {
        // Wakes senders blocked on a full queue: their consumer is gone for good.
        self.shared.permits.close();
        self.shared.byte_permits.close();
    }
}

impl Stream for QueueReceiver {
    type Item = EventBatch;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<EventBatch>> {
        self.poll_recv(cx)
    }
}

/// Sends each batch to every downstream queue; the last one gets the original, the others forks.
#[derive(Clone, Default)]
pub struct Fanout {
    outputs: Vec<(Arc<str>, QueueSender)>,
    /// Whether the events' parsed fields are dropped before sending: set when no consumer
    /// reads them (only sinks downstream).
    drops_fields: bool,
}

impl Fanout {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, key: Arc<str>, sender: QueueSender) {
        self.outputs.push((key, sender));
    }

    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// Drop the events' parsed fields before sending, for a fan-out whose consumers are all
    /// sinks: no sink reads fields, and freeing them here, on the thread of the stage that
    /// parsed them, spares the allocator a free from another thread per event (and a fork
    /// their copies).
    pub fn drop_fields_before_sending(&mut self) {
        self.drops_fields = true;
    }

    /// Delivers the batch to every output. An output whose consumer has stopped is removed
    /// (only happens during shutdown); returns `false` once no output is left.
    pub async fn send(&mut self, mut batch: EventBatch) -> bool {
        if self.drops_fields {
            for event in &mut batch.events {
                if !event.fields.is_empty() {
                    event.fields = Fields::new();
                }
            }
        }
        let mut closed = Vec::new();
        if let Some((last, rest)) = self.outputs.split_last() {
            for (i, (_, sender)) in rest.iter().enumerate() {
                if sender.send(batch.fork()).await.is_err() {
                    closed.push(i);
                }
            }
            if last.1.send(batch).await.is_err() {
                closed.push(rest.len());
            }
        }
        for i in closed.into_iter().rev() {
            let (key, _) = self.outputs.remove(i);
            tracing::debug!(output = %key, "Downstream component stopped; output removed.");
        }
        !self.outputs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::{BatchNotifier, Finalizers};
    use crate::event::{Labels, LogEvent};
    use bytes::Bytes;

    const NO_BYTE_LIMIT: usize = usize::MAX;

    fn batch(n: usize) -> EventBatch {
        batch_of_lines(n, 0)
    }

    /// `n` events whose lines are `len` bytes long (at least `line {i}`).
    fn batch_of_lines(n: usize, len: usize) -> EventBatch {
        let events = (0..n)
            .map(|i| LogEvent {
                timestamp_ns: i as i64,
                observed_ns: 0,
                line: Bytes::from(format!("line {i:0>len$}")),
                labels: Labels::default(),
                metadata: Vec::new(),
                source: "t".into(),
                file: None,
                replays: 0,
                fields: Default::default(),
            })
            .collect();
        EventBatch::new(events, Finalizers::default())
    }

    #[tokio::test]
    async fn block_waits_for_room() {
        let (tx, mut rx) = queue(10, NO_BYTE_LIMIT, WhenFull::Block, None);
        tx.send(batch(8)).await.unwrap();
        assert_eq!(tx.len(), 8);
        let pending = tx.send(batch(5));
        tokio::pin!(pending);
        assert!(futures::poll!(pending.as_mut()).is_pending());
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(8));
        pending.await.unwrap();
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(5));
    }

    #[tokio::test]
    async fn a_fanout_to_sinks_only_drops_parsed_fields_and_keeps_everything_else() {
        fn parsed(n: usize) -> EventBatch {
            let mut batch = batch_of_lines(n, 0);
            for event in &mut batch.events {
                event.fields.insert("level", Bytes::from_static(b"info"));
            }
            batch
        }
        let (to_sink, mut sink) = queue(10, NO_BYTE_LIMIT, WhenFull::Block, None);
        let (to_stage, mut stage) = queue(10, NO_BYTE_LIMIT, WhenFull::Block, None);

        let mut keeps = Fanout::new();
        keeps.add("stage".into(), to_stage);
        assert!(keeps.send(parsed(2)).await);
        let kept = stage.recv().await.expect("a batch");
        assert!(kept.events.iter().all(|e| e.fields.get("level").is_some()));

        let mut drops = Fanout::new();
        drops.add("sink".into(), to_sink.clone());
        drops.add("sink2".into(), to_sink);
        drops.drop_fields_before_sending();
        assert!(drops.send(parsed(3)).await);
        for _ in 0..2 {
            let sent = sink.recv().await.expect("a batch");
            assert_eq!(sent.len(), 3);
            assert!(sent.events.iter().all(|e| e.fields.is_empty()));
            let lines: Vec<&[u8]> = sent.events.iter().map(|e| &e.line[..]).collect();
            assert_eq!(lines, vec![&b"line 0"[..], b"line 1", b"line 2"]);
        }
    }

    #[tokio::test]
    async fn oversize_batch_passes_alone() {
        let (tx, mut rx) = queue(4, NO_BYTE_LIMIT, WhenFull::Block, None);
        tx.send(batch(9)).await.unwrap();
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(9));
    }

    #[tokio::test]
    async fn drop_newest_drops_and_acknowledges_as_dropped() {
        let (tx, mut rx) = queue(10, NO_BYTE_LIMIT, WhenFull::DropNewest, Some("q"));
        tx.send(batch(8)).await.unwrap();
        let (notifier, status) = BatchNotifier::new_with_receiver();
        let mut overflow = batch(5);
        overflow.finalizers = Finalizers::new(notifier);
        tx.send(overflow).await.unwrap();
        assert_eq!(status.await, BatchStatus::Dropped);
        drop(tx);
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(8));
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn fanout_forks_to_every_output_and_survives_a_closed_one() {
        let (a_tx, mut a_rx) = queue(100, NO_BYTE_LIMIT, WhenFull::Block, None);
        let (b_tx, b_rx) = queue(100, NO_BYTE_LIMIT, WhenFull::Block, None);
        let mut fanout = Fanout::new();
        fanout.add("a".into(), a_tx);
        fanout.add("b".into(), b_tx);
        drop(b_rx);
        assert!(fanout.send(batch(3)).await);
        assert_eq!(a_rx.recv().await.map(|b| b.len()), Some(3));
        assert!(fanout.send(batch(2)).await);
        assert_eq!(a_rx.recv().await.map(|b| b.len()), Some(2));
    }

    #[tokio::test]
    async fn long_lines_fill_the_byte_capacity_first() {
        let one = batch_bytes(&batch_of_lines(1, 1000));
        // Room for 1000 events but only three of these lines' bytes.
        let (tx, mut rx) = queue(1000, 3 * one, WhenFull::Block, None);
        tx.send(batch_of_lines(2, 1000)).await.unwrap();
        assert_eq!((tx.len(), tx.len_bytes()), (2, 2 * one));
        let pending = tx.send(batch_of_lines(2, 1000));
        tokio::pin!(pending);
        assert!(futures::poll!(pending.as_mut()).is_pending());
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(2));
        pending.await.unwrap();
        assert_eq!(tx.len_bytes(), 2 * one);
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(2));
        assert_eq!((tx.len(), tx.len_bytes()), (0, 0));
    }

    #[tokio::test]
    async fn a_batch_over_the_byte_capacity_passes_alone() {
        let (tx, mut rx) = queue(1000, 100, WhenFull::Block, None);
        tx.send(batch_of_lines(3, 1000)).await.unwrap();
        let pending = tx.send(batch(1));
        tokio::pin!(pending);
        assert!(futures::poll!(pending.as_mut()).is_pending());
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(3));
        pending.await.unwrap();
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(1));
    }

    #[tokio::test]
    async fn drop_newest_drops_when_the_bytes_are_full() {
        let one = batch_bytes(&batch_of_lines(1, 1000));
        let (tx, mut rx) = queue(1000, 2 * one, WhenFull::DropNewest, Some("q"));
        tx.send(batch_of_lines(2, 1000)).await.unwrap();
        let (notifier, status) = BatchNotifier::new_with_receiver();
        let mut overflow = batch_of_lines(1, 1000);
        overflow.finalizers = Finalizers::new(notifier);
        tx.send(overflow).await.unwrap();
        assert_eq!(status.await, BatchStatus::Dropped);
        // The refused batch holds no event permits either.
        assert_eq!(tx.len(), 2);
        drop(tx);
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(2));
        assert!(rx.recv().await.is_none());
    }
}
