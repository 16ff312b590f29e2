//! The dead-letter queue wired into a sink: the dispatcher's [`DeadLetter`] and the replay.
//!
//! Guarantees:
//! - [`QueueDeadLetter::store`] returns `Ok` only after the records are durable (the queue
//!   fsyncs); the dispatcher then acknowledges the events as handled.
//! - With `when_full: block` a full queue makes `store` wait (re-trying once a second) until the
//!   replay has made room or shutdown begins; the batch stays unacknowledged meanwhile, so
//!   backpressure reaches the sources. Nothing is dropped silently: `drop_newest` is counted.
//! - A write that fails (a full disk, an I/O error) is retried with a growing delay (100 ms to
//!   5 s) until it succeeds, counted in `dlq_write_failures_total` each time, logged at most
//!   every 30 s, with the sink unhealthy meanwhile: the batch waits, backpressure reaches the
//!   sources, and once the disk has room the events are stored and their sources commit past
//!   them. Only at shutdown does `store` give up ([`DeadLetterError::Stopping`]): the events
//!   then stay unacknowledged and are read again after a restart. Records of one store already
//!   written are not written again by its retries. A queue operation that panics (a bug) is
//!   not retried: it stops the shipper with an error naming the sink (see `crate::blocking`).
//! - Records keep what makes a stream: the events' labels, their source and file, their
//!   structured metadata, and the lines byte for byte; a replayed event is the event that was
//!   dead-lettered (same time, line, labels, source, file), so it lands in the same stream.
//! - Replay goes through the sink's own queue and dispatcher, like any event: batching,
//!   `send_timeout`, retries with backoff, splits of pushes too large, the timestamp guard. A
//!   record leaves the queue only once the batch replaying it is settled (delivered, or kept
//!   again); a replay is never dropped by the queue's `when_full`.
//! - An entry replayed and refused again `max_replays` times goes to the archive as refused for
//!   good (with Loki's last answer), not back to the queue: nothing is replayed forever.
//! - While the sink is healthy (or when asked through the API) the whole queue is replayed,
//!   `reprocess_batch_records` records at a time; while it is unhealthy, one record per
//!   `reprocess_interval` as a probe.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use opentelemetry::KeyValue;
use tokio::sync::Notify;

use super::events::{
    DlqFullWaiting, DlqRecordDropped, DlqWritableAgain, DlqWriteFailed, DlqWriteGivenUp,
    EntriesArchived, ReplayFailed,
};
use super::metrics;
use super::{AppendOutcome, Dlq, DlqEntry, DlqError, DlqRecord, RecordId};
use crate::ack::{BatchNotifier, BatchStatus, BatchStatusReceiver, Finalizers};
use crate::dispatcher::{DeadLetter, DeadLetterError};
use crate::event::{EventBatch, Labels, LogEvent, now_ns};
use crate::queue::WeakQueueSender;
use crate::shutdown::ShutdownSignal;
use crate::telemetry::{ComponentAttrs, HealthHandle, LogThrottle, TelemetryEvent};

/// First delay before a failed dead-letter write is tried again; it doubles up to the next.
const WRITE_RETRY_MIN: Duration = Duration::from_millis(100);
const WRITE_RETRY_MAX: Duration = Duration::from_secs(5);
/// At most one log line per this while writes keep failing.
const WRITE_FAILURE_LOG_EVERY: Duration = Duration::from_secs(30);
/// The source name given to replayed events of records written before sources were recorded.
const UNKNOWN_SOURCE: &str = "dlq";

/// A sink's dead-letter queue, shared by its dispatcher, its reprocessor and the API.
#[derive(Clone)]
pub struct SinkDlq {
    pub sink: String,
    queue: Arc<Mutex<Dlq>>,
    tenant: Option<String>,
    attrs: Arc<[KeyValue]>,
    /// Wakes the reprocessor at once (API, CLI).
    reprocess_now: Arc<Notify>,
    block_when_full: bool,
    max_replays: u8,
    shutdown: ShutdownSignal,
    /// The sink's health: unhealthy while the queue cannot be written.
    health: HealthHandle,
    write_failures_log: Arc<Mutex<LogThrottle>>,
    /// Refused entries evicted from the archive, as last counted.
    evicted_seen: Arc<AtomicU64>,
}

/// Where a store writes records.
#[derive(Clone, Copy)]
enum Destination {
    Queue,
    Archive,
}

impl SinkDlq {
    pub fn new(
        sink: &str,
        queue: Dlq,
        tenant: Option<String>,
        shutdown: ShutdownSignal,
        health: HealthHandle,
    ) -> Self {
        let config = queue.config().clone();
        let this = Self {
            sink: sink.to_string(),
            queue: Arc::new(Mutex::new(queue)),
            tenant,
            attrs: Arc::new([KeyValue::new("sink", sink.to_string())]),
            reprocess_now: Arc::new(Notify::new()),
            block_when_full: config.when_full == super::DlqFullPolicy::Block,
            max_replays: config.max_replays,
            shutdown,
            health,
            write_failures_log: Arc::new(Mutex::new(LogThrottle::new(WRITE_FAILURE_LOG_EVERY))),
            evicted_seen: Arc::new(AtomicU64::new(0)),
        };
        this.report_size();
        this
    }

    fn with_queue<T>(&self, f: impl FnOnce(&mut Dlq) -> T) -> T {
        match self.queue.lock() {
            Ok(mut queue) => f(&mut queue),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Runs `f` on the queue on a blocking thread (queue operations fsync).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Dlq) -> T + Send + 'static,
    ) -> Result<T, String> {
        let queue = self.queue.clone();
        // A panic inside the queue (a bug) is raised in the sink's task, which stops the shipper
        // (see `crate::blocking`): going on from the state it left would risk the records.
        crate::blocking::run(move || {
            let mut queue = match queue.lock() {
                Ok(q) => q,
                Err(poisoned) => poisoned.into_inner(),
            };
            f(&mut queue)
        })
        .await
        .map_err(|cancelled| format!("dead-letter task failed: {cancelled}"))
    }

    /// The queue's statistics.
    pub fn stats(&self) -> crate::dlq::DlqStats {
        self.with_queue(|q| q.stats())
    }

    /// Asks the reprocessor to run now.
    pub fn trigger_reprocess(&self) {
        self.reprocess_now.notify_one();
    }

    fn report_size(&self) {
        let stats = self.stats();
        metrics::QUEUE_SIZE.record(
            i64::try_from(stats.entries).unwrap_or(i64::MAX),
            &self.attrs,
        );
        metrics::ARCHIVE_BYTES.record(
            i64::try_from(stats.archive_bytes).unwrap_or(i64::MAX),
            &self.attrs,
        );
        let before = self
            .evicted_seen
            .swap(stats.refused_evicted, Ordering::AcqRel);
        if stats.refused_evicted > before {
            metrics::ARCHIVE_EVICTED.add(stats.refused_evicted - before, &self.attrs);
        }
    }

    /// Records of `events`, one per stream (labels, source and file).
    fn records(&self, events: &[&LogEvent], reason: &str, detail: &str) -> Vec<DlqRecord> {
        type StreamKey = (Vec<(String, String)>, String, Option<String>);
        let mut by_stream: BTreeMap<StreamKey, Vec<DlqEntry>> = BTreeMap::new();
        for event in events {
            let labels: Vec<(String, String)> = event
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let key = (
                labels,
                event.source.to_string(),
                event.file.as_deref().map(str::to_string),
            );
            by_stream
                .entry(key)
                .or_default()
                .push(DlqEntry::from_event(event));
        }
        let written_at = super::now_rfc3339();
        by_stream
            .into_iter()
            .map(|((labels, source, file), entries)| DlqRecord {
                sink: self.sink.clone(),
                tenant: self.tenant.clone(),
                labels,
                source: Some(source),
                file,
                reason: reason.to_string(),
                detail: detail.trim_end().chars().take(2000).collect(),
                written_at: written_at.clone(),
                entries,
            })
            .collect()
    }

    /// Keeps `events` refused with `reason`: in the queue, or, for those replayed
    /// `max_replays` times already, in the archive as refused for good.
    async fn store_events(
        &self,
        events: &[&LogEvent],
        reason: &str,
        detail: &str,
    ) -> Result<(), DeadLetterError> {
        let (spent, queued): (Vec<&LogEvent>, Vec<&LogEvent>) = events
            .iter()
            .partition(|event| event.replays >= self.max_replays);
        let replayed = events.iter().filter(|event| event.replays > 0).count();
        if replayed > 0 {
            metrics::REPLAY_REFUSED.add(replayed as u64, &self.attrs);
        }
        if !queued.is_empty() {
            let records = self.records(&queued, reason, detail);
            self.write_all(records, reason, Destination::Queue).await?;
        }
        if !spent.is_empty() {
            let records = self.records(&spent, reason, detail);
            EntriesArchived {
                sink: &self.sink,
                reason,
                detail,
                entries: spent.len(),
                replays: self.max_replays,
            }
            .emit();
            self.write_all(records, reason, Destination::Archive)
                .await?;
        }
        Ok(())
    }

    /// Writes records durably, waiting for room when the queue is full and `block` is the
    /// policy, and retrying failed writes until they succeed or shutdown begins (see the
    /// module's guarantees).
    async fn write_all(
        &self,
        records: Vec<DlqRecord>,
        reason: &str,
        destination: Destination,
    ) -> Result<(), DeadLetterError> {
        let mut delay = WRITE_RETRY_MIN;
        let mut failing = false;
        for record in records {
            let entries = record.entries.len() as u64;
            let record = Arc::new(record);
            loop {
                let to_write = record.clone();
                let replacing = record.entries.iter().all(|e| e.replays > 0);
                let fault_name = self.sink.clone();
                let result = self
                    .blocking(move |queue| {
                        crate::fault::point("dlq_write", &fault_name);
                        match destination {
                            Destination::Queue if replacing => queue.append_replacing(&to_write),
                            Destination::Queue => queue.append(&to_write),
                            Destination::Archive => queue
                                .archive_refused(&to_write)
                                .map(|()| AppendOutcome::Written),
                        }
                    })
                    .await
                    .unwrap_or_else(|error| Err(DlqError::Io(std::io::Error::other(error))));
                let labels = [
                    self.attrs[0].clone(),
                    KeyValue::new("reason", reason.to_string()),
                ];
                match result {
                    Ok(AppendOutcome::Written) => {
                        match destination {
                            Destination::Queue => metrics::ENTRIES.add(entries, &labels),
                            Destination::Archive => metrics::REFUSED.add(entries, &labels),
                        }
                        break;
                    }
                    Ok(AppendOutcome::Dropped) => {
                        self.with_throttle(|log| {
                            DlqRecordDropped {
                                component: &ComponentAttrs::new(&self.sink),
                                entries: record.entries.len(),
                                log,
                            }
                            .emit();
                        });
                        break;
                    }
                    Err(DlqError::Full { .. }) if self.block_when_full => {
                        if self.shutdown.is_triggered() {
                            return Err(DeadLetterError::Stopping(
                                "dead-letter queue full".to_string(),
                            ));
                        }
                        self.with_throttle(|log| {
                            DlqFullWaiting {
                                sink: &self.sink,
                                log,
                            }
                            .emit();
                        });
                        self.trigger_reprocess();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(DlqError::Encode(message)) => {
                        DlqWriteGivenUp { attrs: &self.attrs }.emit();
                        return Err(DeadLetterError::Refused(message));
                    }
                    Err(err) => {
                        if self.shutdown.is_triggered() {
                            DlqWriteGivenUp { attrs: &self.attrs }.emit();
                            return Err(DeadLetterError::Stopping(err.to_string()));
                        }
                        failing = true;
                        self.with_throttle(|log| {
                            DlqWriteFailed {
                                sink: &self.sink,
                                attrs: &self.attrs,
                                health: &self.health,
                                error: &err,
                                retry_in: delay,
                                log,
                            }
                            .emit();
                        });
                        let mut shutdown = self.shutdown.clone();
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = shutdown.wait() => {}
                        }
                        delay = (delay * 2).min(WRITE_RETRY_MAX);
                    }
                }
            }
        }
        if failing {
            self.with_throttle(|log| {
                DlqWritableAgain {
                    sink: &self.sink,
                    log,
                }
                .emit();
            });
        }
        self.report_size();
        Ok(())
    }

    fn with_throttle<T>(&self, f: impl FnOnce(&mut LogThrottle) -> T) -> T {
        match self.write_failures_log.lock() {
            Ok(mut throttle) => f(&mut throttle),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn replay_failed(&self, what: &'static str, error: &dyn std::fmt::Display) {
        ReplayFailed {
            sink: &self.sink,
            attrs: &self.attrs,
            what,
            error,
        }
        .emit();
    }

    /// Replays up to `max_records` records through the sink's queue (`input`) and waits until
    /// each replay batch is settled; marks the settled ones handled. Returns how many entries
    /// were replayed and settled, or `None` when the sink's queue is gone (shutdown).
    pub async fn replay_once(&self, input: &WeakQueueSender, max_records: usize) -> Option<u64> {
        let records = match self.blocking(move |queue| queue.peek(max_records)).await {
            Ok(Ok(records)) => records,
            Ok(Err(err)) => {
                self.replay_failed("Cannot read the dead-letter queue.", &err);
                return Some(0);
            }
            Err(err) => {
                self.replay_failed("Cannot read the dead-letter queue.", &err);
                return Some(0);
            }
        };
        if records.is_empty() {
            return Some(0);
        }
        let mut pending: Vec<(RecordId, u64, BatchStatusReceiver)> = Vec::new();
        {
            let sender = input.upgrade()?;
            for (id, record) in records {
                let (batch, receiver) = replay_batch(&record);
                let entries = batch.len() as u64;
                if sender.send(batch).await.is_err() {
                    return None;
                }
                pending.push((id, entries, receiver));
            }
            // The sender is dropped here: the replay never keeps the sink's queue open.
        }
        let mut settled = Vec::new();
        let mut replayed = 0;
        let mut shutdown = self.shutdown.clone();
        for (id, entries, receiver) in pending {
            let status = tokio::select! {
                status = receiver => status,
                () = shutdown.wait() => break,
            };
            if status == BatchStatus::Errored {
                self.replay_failed(
                    "A replayed record was not settled; it stays queued.",
                    &format_args!("record {id}"),
                );
                continue;
            }
            settled.push(id);
            replayed += entries;
        }
        if !settled.is_empty() {
            match self.blocking(move |queue| queue.ack(&settled)).await {
                Ok(Ok(())) => metrics::REPROCESSED.add(replayed, &self.attrs),
                Ok(Err(err)) => self.replay_failed(
                    "Cannot mark replayed records handled; they may be replayed again.",
                    &err,
                ),
                Err(err) => self.replay_failed(
                    "Cannot mark replayed records handled; they may be replayed again.",
                    &err,
                ),
            }
        }
        self.report_size();
        Some(replayed)
    }

    /// Replays until shutdown or until the sink's queue is gone: the whole queue (in steps of
    /// `batch_records`) while the sink is healthy or when asked; while it is unhealthy, one
    /// record per `interval` as a probe, because a sink refused for good sends nothing else
    /// that could show it works again.
    pub async fn run_reprocessor(
        self,
        input: WeakQueueSender,
        health: HealthHandle,
        interval: Duration,
        batch_records: usize,
    ) {
        let mut shutdown = self.shutdown.clone();
        loop {
            let asked = tokio::select! {
                () = tokio::time::sleep(interval) => false,
                () = self.reprocess_now.notified() => true,
                () = shutdown.wait() => return,
            };
            let mut probe = !(asked || health.is_healthy());
            // Drain the queue while it makes progress and the sink stays healthy.
            loop {
                if self.stats().records == 0 || shutdown.is_triggered() {
                    break;
                }
                let limit = if probe { 1 } else { batch_records };
                let Some(replayed) = self.replay_once(&input, limit).await else {
                    return;
                };
                if replayed > 0 {
                    tracing::info!(sink = %self.sink, replayed, "Replayed entries from the dead-letter queue.");
                }
                if replayed == 0 || probe || !health.is_healthy() {
                    break;
                }
                probe = false;
            }
        }
    }
}

/// The events of a record, as they were when they were dead-lettered, with one replay more,
/// and the receiver that tells when the sink has settled them.
fn replay_batch(record: &DlqRecord) -> (EventBatch, BatchStatusReceiver) {
    let labels = Labels::new(record.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let now = now_ns();
    let source: crate::ComponentKey = record.source.as_deref().unwrap_or(UNKNOWN_SOURCE).into();
    let file: Option<Arc<str>> = record.file.as_deref().map(Into::into);
    let events = record
        .entries
        .iter()
        .map(|e| LogEvent {
            timestamp_ns: e.timestamp_ns,
            observed_ns: now,
            line: e.line.clone(),
            labels: labels.clone(),
            metadata: e
                .metadata
                .iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
            source: source.clone(),
            file: file.clone(),
            replays: e.replays.saturating_add(1),
            fields: Default::default(),
        })
        .collect();
    let (notifier, receiver) = BatchNotifier::new_with_receiver();
    (EventBatch::new(events, Finalizers::new(notifier)), receiver)
}

/// The dispatcher's side.
pub struct QueueDeadLetter(pub SinkDlq);

impl DeadLetter for QueueDeadLetter {
    fn store<'a>(
        &'a self,
        events: Vec<&'a LogEvent>,
        reason: &'a str,
        detail: &'a str,
    ) -> BoxFuture<'a, Result<(), DeadLetterError>> {
        Box::pin(async move { self.0.store_events(&events, reason, detail).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::BatchStatus;
    use crate::dlq::DlqConfig;
    use crate::shutdown::shutdown_pair;
    use crate::telemetry::{ComponentKind, HealthRegistry};
    use bytes::Bytes;

    fn event(line: &str) -> LogEvent {
        LogEvent {
            timestamp_ns: 1,
            observed_ns: 1,
            line: Bytes::from(line.to_string()),
            labels: Labels::new([("job", "app")]),
            metadata: Vec::new(),
            source: "app".into(),
            file: None,
            replays: 0,
            fields: Default::default(),
        }
    }

    /// Polls `check` every 10 ms for at most 10 s.
    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_failing_write_is_retried_until_it_succeeds_with_the_sink_unhealthy_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Dlq::open(dir.path(), "loki", DlqConfig::default()).unwrap();
        let queue_dir = queue.dir().to_path_buf();
        let (_trigger, signal) = shutdown_pair();
        let health = HealthRegistry::default().register("loki", ComponentKind::Sink);
        let dlq = SinkDlq::new("loki", queue, None, signal, health.clone());
        // The queue's directory vanishes: every write fails (as on a full disk) until it is back.
        std::fs::remove_dir_all(&queue_dir).unwrap();
        let dead_letter = QueueDeadLetter(dlq.clone());
        let store = tokio::spawn(async move {
            let events = [event("one"), event("two")];
            dead_letter
                .store(events.iter().collect(), "http_4xx", "401 no org id")
                .await
        });
        eventually("the sink to turn unhealthy", || !health.is_healthy()).await;
        assert!(!store.is_finished(), "the store waits instead of failing");
        std::fs::create_dir_all(&queue_dir).unwrap();
        store.await.unwrap().unwrap();
        assert_eq!(dlq.stats().entries, 2);
    }

    #[tokio::test]
    async fn at_shutdown_a_failing_write_gives_up_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Dlq::open(dir.path(), "loki", DlqConfig::default()).unwrap();
        std::fs::remove_dir_all(queue.dir()).unwrap();
        let (trigger, signal) = shutdown_pair();
        let health = HealthRegistry::default().register("loki", ComponentKind::Sink);
        let dlq = SinkDlq::new("loki", queue, None, signal, health.clone());
        let dead_letter = QueueDeadLetter(dlq);
        let store = tokio::spawn(async move {
            let events = [event("one")];
            dead_letter
                .store(events.iter().collect(), "http_4xx", "401")
                .await
        });
        eventually("the write to fail once", || !health.is_healthy()).await;
        trigger.trigger();
        let result = store.await.unwrap();
        assert!(
            matches!(result, Err(DeadLetterError::Stopping(_))),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_replay_gives_back_the_events_byte_for_byte_and_clears_them_once_settled() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Dlq::open(dir.path(), "loki", DlqConfig::default()).unwrap();
        let (_trigger, signal) = shutdown_pair();
        let health = HealthRegistry::default().register("loki", ComponentKind::Sink);
        let dlq = SinkDlq::new("loki", queue, None, signal, health);
        let original = LogEvent {
            timestamp_ns: 1_777_000_000_123_456_789,
            observed_ns: 1,
            line: Bytes::from_static(b"bad \xff\xfe bytes"),
            labels: Labels::new([("job", "app"), ("team", "a")]),
            metadata: vec![("trace_id".into(), "abc".into())],
            source: "app".into(),
            file: Some("/var/log/app.log".into()),
            replays: 0,
            fields: Default::default(),
        };
        QueueDeadLetter(dlq.clone())
            .store(vec![&original], "http_4xx", "401 no org id\n")
            .await
            .unwrap();
        let (tx, mut rx) =
            crate::queue::queue(1000, usize::MAX, crate::queue::WhenFull::DropNewest, None);
        let weak = tx.downgrade();
        let replay = tokio::spawn({
            let dlq = dlq.clone();
            async move { dlq.replay_once(&weak, 100).await }
        });
        let mut batch = rx.recv().await.unwrap();
        let replayed = &batch.events[0];
        assert_eq!(replayed.line, original.line, "the bytes, not U+FFFD");
        assert_eq!(replayed.timestamp_ns, original.timestamp_ns);
        assert_eq!(replayed.labels, original.labels);
        assert_eq!(replayed.metadata, original.metadata);
        assert_eq!(&*replayed.source, "app");
        assert_eq!(replayed.file.as_deref(), Some("/var/log/app.log"));
        assert_eq!(replayed.replays, 1);
        // Not cleared before the sink settles it.
        assert_eq!(dlq.stats().entries, 1);
        batch.finalizers.settle(BatchStatus::Delivered);
        drop(batch);
        assert_eq!(replay.await.unwrap(), Some(1));
        assert_eq!(dlq.stats().entries, 0);
        drop(tx);
    }

    #[tokio::test]
    async fn entries_past_max_replays_are_archived_not_queued() {
        let dir = tempfile::tempdir().unwrap();
        let config = DlqConfig {
            max_replays: 2,
            ..DlqConfig::default()
        };
        let queue = Dlq::open(dir.path(), "loki", config).unwrap();
        let (_trigger, signal) = shutdown_pair();
        let health = HealthRegistry::default().register("loki", ComponentKind::Sink);
        let dlq = SinkDlq::new("loki", queue, None, signal, health);
        let mut spent = event("refused again and again");
        spent.replays = 2;
        let fresh = event("first refusal");
        QueueDeadLetter(dlq.clone())
            .store(
                vec![&spent, &fresh],
                "line_too_long",
                "max entry size '10' bytes exceeded",
            )
            .await
            .unwrap();
        let stats = dlq.stats();
        assert_eq!(stats.entries, 1, "only the fresh one is queued");
        assert_eq!(stats.refused_entries, 1);
        let refused = Dlq::inspect_refused(dir.path(), "loki", 10).unwrap();
        assert_eq!(refused[0].detail, "max entry size '10' bytes exceeded");
        assert_eq!(
            refused[0].entries[0].line,
            Bytes::from_static(b"refused again and again")
        );
    }
}
