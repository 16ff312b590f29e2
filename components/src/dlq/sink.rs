//! The dead-letter queue wired into a sink: the dispatcher's [`DeadLetter`] and the reprocessor.
//!
//! Guarantees:
//! - [`QueueDeadLetter::store`] returns `Ok` only after the records are durable (the queue
//!   fsyncs); the dispatcher then acknowledges the events as handled.
//! - With `when_full: block` a full queue makes `store` wait (re-trying once a second) until the
//!   reprocessor has made room or shutdown begins; the batch stays unacknowledged meanwhile, so
//!   backpressure reaches the sources. Nothing is dropped silently: `drop_newest` is counted.
//! - A write that fails (a full disk, an I/O error) is retried with a growing delay (100 ms to
//!   5 s) until it succeeds, counted in `dlq_write_failures_total` each time, logged at most
//!   every 30 s, with the sink unhealthy meanwhile: the batch waits, backpressure reaches the
//!   sources, and once the disk has room the events are stored and their sources commit past
//!   them. Only at shutdown does `store` give up ([`DeadLetterError::Stopping`]): the events
//!   then stay unacknowledged and are read again after a restart. Records of one store already
//!   written are not written again by its retries.
//! - The reprocessor replays records, oldest first, every `reprocess_interval` while the sink is
//!   healthy (or when asked through the API), sending them through the sink itself, so the
//!   timestamp learner applies (too-old entries are clamped or diverted again). A record is
//!   removed only after its entries were delivered or written back to the queue.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge};
use tokio::sync::Notify;

use super::{AppendOutcome, Dlq, DlqEntry, DlqError, DlqRecord};
use crate::ack::Finalizers;
use crate::dispatcher::{DeadLetter, DeadLetterError, SendOutcome, SinkService};
use crate::event::{EventBatch, Labels, LogEvent, now_ns};
use crate::shutdown::ShutdownSignal;
use crate::telemetry::{HealthHandle, LogThrottle, meter, names};

/// First delay before a failed dead-letter write is tried again; it doubles up to the next.
const WRITE_RETRY_MIN: Duration = Duration::from_millis(100);
const WRITE_RETRY_MAX: Duration = Duration::from_secs(5);
/// At most one log line per this while writes keep failing.
const WRITE_FAILURE_LOG_EVERY: Duration = Duration::from_secs(30);

struct Instruments {
    entries: Counter<u64>,
    queue_size: Gauge<i64>,
    write_failures: Counter<u64>,
    reprocessed: Counter<u64>,
    reprocess_failures: Counter<u64>,
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: std::sync::OnceLock<Instruments> = std::sync::OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let m = meter();
        Instruments {
            entries: m
                .u64_counter(names::DLQ_ENTRIES)
                .with_description("Entries written to the dead-letter queue, by reason.")
                .build(),
            queue_size: m
                .i64_gauge(names::DLQ_QUEUE_SIZE)
                .with_description("Entries in the dead-letter queue not yet replayed.")
                .build(),
            write_failures: m
                .u64_counter(names::DLQ_WRITE_FAILURES)
                .with_description("Dead-letter writes that failed.")
                .build(),
            reprocessed: m
                .u64_counter(names::DLQ_REPROCESSED)
                .with_description("Entries replayed from the dead-letter queue and delivered.")
                .build(),
            reprocess_failures: m
                .u64_counter(names::DLQ_REPROCESS_FAILURES)
                .with_description("Dead-letter replay attempts that failed.")
                .build(),
        }
    })
}

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
    shutdown: ShutdownSignal,
    /// The sink's health: unhealthy while the queue cannot be written.
    health: HealthHandle,
    write_failures_log: Arc<Mutex<LogThrottle>>,
}

impl SinkDlq {
    pub fn new(
        sink: &str,
        queue: Dlq,
        tenant: Option<String>,
        block_when_full: bool,
        shutdown: ShutdownSignal,
        health: HealthHandle,
    ) -> Self {
        let this = Self {
            sink: sink.to_string(),
            queue: Arc::new(Mutex::new(queue)),
            tenant,
            attrs: Arc::new([KeyValue::new("sink", sink.to_string())]),
            reprocess_now: Arc::new(Notify::new()),
            block_when_full,
            shutdown,
            health,
            write_failures_log: Arc::new(Mutex::new(LogThrottle::new(WRITE_FAILURE_LOG_EVERY))),
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

    /// The queue's statistics.
    pub fn stats(&self) -> crate::dlq::DlqStats {
        self.with_queue(|q| q.stats())
    }

    /// Asks the reprocessor to run now.
    pub fn trigger_reprocess(&self) {
        self.reprocess_now.notify_one();
    }

    fn report_size(&self) {
        let entries = self.stats().entries;
        instruments()
            .queue_size
            .record(i64::try_from(entries).unwrap_or(i64::MAX), &self.attrs);
    }

    fn records(&self, events: &[&LogEvent], reason: &str, detail: &str) -> Vec<DlqRecord> {
        let mut by_labels: BTreeMap<Vec<(String, String)>, Vec<DlqEntry>> = BTreeMap::new();
        for event in events {
            let labels: Vec<(String, String)> = event
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            by_labels.entry(labels).or_default().push(DlqEntry {
                timestamp_ns: event.timestamp_ns,
                line: String::from_utf8_lossy(&event.line).into_owned(),
                metadata: event
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            });
        }
        let written_at = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        by_labels
            .into_iter()
            .map(|(labels, entries)| DlqRecord {
                sink: self.sink.clone(),
                tenant: self.tenant.clone(),
                labels,
                reason: reason.to_string(),
                detail: detail.chars().take(2000).collect(),
                written_at: written_at.clone(),
                entries,
            })
            .collect()
    }

    /// Appends records durably, waiting for room when full and `block` is the policy, and
    /// retrying failed writes until they succeed or shutdown begins (see the module's
    /// guarantees).
    async fn append_all(
        &self,
        records: Vec<DlqRecord>,
        reason: &str,
    ) -> Result<(), DeadLetterError> {
        let mut delay = WRITE_RETRY_MIN;
        let mut failing = false;
        for record in records {
            let entries = record.entries.len() as u64;
            let record = Arc::new(record);
            loop {
                let queue = self.queue.clone();
                let to_write = record.clone();
                let result = tokio::task::spawn_blocking(move || {
                    let mut queue = match queue.lock() {
                        Ok(q) => q,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                    queue.append(&to_write)
                })
                .await
                .unwrap_or_else(|join| {
                    Err(DlqError::Io(std::io::Error::other(format!(
                        "dead-letter write task failed: {join}"
                    ))))
                });
                match result {
                    Ok(AppendOutcome::Written) => {
                        instruments().entries.add(
                            entries,
                            &[
                                self.attrs[0].clone(),
                                KeyValue::new("reason", reason.to_string()),
                            ],
                        );
                        break;
                    }
                    Ok(AppendOutcome::Dropped) => {
                        tracing::error!(sink = %self.sink, entries, "Dead-letter queue full; record dropped (when_full: drop_newest).");
                        break;
                    }
                    Err(DlqError::Full { .. }) if self.block_when_full => {
                        if self.shutdown.is_triggered() {
                            return Err(DeadLetterError::Stopping(
                                "dead-letter queue full".to_string(),
                            ));
                        }
                        if self.throttled_log().is_some() {
                            tracing::warn!(sink = %self.sink, "Dead-letter queue full; waiting for the reprocessor to make room.");
                        }
                        self.trigger_reprocess();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(DlqError::Encode(message)) => {
                        instruments().write_failures.add(1, &self.attrs);
                        return Err(DeadLetterError::Refused(message));
                    }
                    Err(err) => {
                        instruments().write_failures.add(1, &self.attrs);
                        if self.shutdown.is_triggered() {
                            return Err(DeadLetterError::Stopping(err.to_string()));
                        }
                        failing = true;
                        self.health
                            .unhealthy(format!("the dead-letter queue cannot be written: {err}"));
                        if let Some(held_back) = self.throttled_log() {
                            tracing::error!(
                                sink = %self.sink,
                                error = %err,
                                failures_since_last_report = held_back,
                                retry_in = ?delay,
                                "Dead-letter queue write failed; retrying, and holding the events (reading waits) until it succeeds."
                            );
                        }
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
            tracing::info!(sink = %self.sink, "Dead-letter queue writable again; the held events are stored.");
            self.with_throttle(LogThrottle::reset);
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

    fn throttled_log(&self) -> Option<u64> {
        self.with_throttle(LogThrottle::ready)
    }

    /// Replays up to `max_records` records through `service`. Returns how many entries were
    /// delivered.
    pub async fn reprocess_once(&self, service: &dyn SinkService, max_records: usize) -> u64 {
        let peeked = {
            let queue = self.queue.clone();
            tokio::task::spawn_blocking(move || {
                let mut queue = match queue.lock() {
                    Ok(q) => q,
                    Err(poisoned) => poisoned.into_inner(),
                };
                queue.peek(max_records)
            })
            .await
        };
        let records = match peeked {
            Ok(Ok(records)) => records,
            Ok(Err(err)) => {
                instruments().reprocess_failures.add(1, &self.attrs);
                tracing::warn!(sink = %self.sink, error = %err, "Cannot read the dead-letter queue.");
                return 0;
            }
            Err(err) => {
                instruments().reprocess_failures.add(1, &self.attrs);
                tracing::warn!(sink = %self.sink, error = %err, "Dead-letter read task failed.");
                return 0;
            }
        };
        let mut delivered = 0u64;
        for (id, record) in records {
            let batch = record_to_batch(&record);
            let outcome = service.send(&batch).await;
            let requeue: Vec<&LogEvent> = match &outcome {
                SendOutcome::Delivered => Vec::new(),
                SendOutcome::Partial { rejected } => rejected
                    .iter()
                    .filter_map(|r| batch.events.get(r.index))
                    .collect(),
                SendOutcome::Retry { detail, .. }
                | SendOutcome::Failed { detail, .. }
                | SendOutcome::TooLarge { detail } => {
                    instruments().reprocess_failures.add(1, &self.attrs);
                    tracing::info!(sink = %self.sink, error = %detail, "Dead-letter replay stopped; will try again later.");
                    break;
                }
            };
            let sent = batch.len() - requeue.len();
            if !requeue.is_empty() {
                instruments().reprocess_failures.add(1, &self.attrs);
                let records = self.records(&requeue, &record.reason, "rejected again on replay");
                if let Err(err) = self.append_all(records, &record.reason).await {
                    tracing::warn!(sink = %self.sink, error = %err, "Cannot write back rejected entries; the record stays queued.");
                    break;
                }
            }
            let queue = self.queue.clone();
            let acked = tokio::task::spawn_blocking(move || {
                let mut queue = match queue.lock() {
                    Ok(q) => q,
                    Err(poisoned) => poisoned.into_inner(),
                };
                queue.ack(&[id])
            })
            .await;
            if !matches!(acked, Ok(Ok(()))) {
                instruments().reprocess_failures.add(1, &self.attrs);
                tracing::warn!(sink = %self.sink, "Cannot mark a replayed record handled; it may be replayed again.");
                break;
            }
            delivered += sent as u64;
            instruments().reprocessed.add(sent as u64, &self.attrs);
        }
        self.report_size();
        delivered
    }

    /// Replays periodically until shutdown: the whole queue (in steps of `batch_records`)
    /// while the sink is healthy or when asked; while it is unhealthy, one record per
    /// `interval` as a probe, because a sink refused for good sends nothing else that could
    /// show it works again. A replay stored marks the sink healthy.
    pub async fn run_reprocessor(
        self,
        service: Arc<dyn SinkService>,
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
            if self.stats().records == 0 {
                continue;
            }
            let limit = if asked || health.is_healthy() {
                batch_records
            } else {
                1
            };
            let delivered = self.reprocess_once(service.as_ref(), limit).await;
            if delivered > 0 {
                health.healthy();
                tracing::info!(sink = %self.sink, delivered, "Replayed entries from the dead-letter queue.");
            }
        }
    }
}

fn record_to_batch(record: &DlqRecord) -> EventBatch {
    let labels = Labels::new(record.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let now = now_ns();
    let source: crate::ComponentKey = "dlq".into();
    let events = record
        .entries
        .iter()
        .map(|e| LogEvent {
            timestamp_ns: e.timestamp_ns,
            observed_ns: now,
            line: Bytes::from(e.line.clone()),
            labels: labels.clone(),
            metadata: e
                .metadata
                .iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
            source: source.clone(),
            file: None,
        })
        .collect();
    EventBatch::new(events, Finalizers::default())
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
        Box::pin(async move {
            let records = self.0.records(&events, reason, detail);
            self.0.append_all(records, reason).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::DlqConfig;
    use crate::shutdown::shutdown_pair;
    use crate::telemetry::{ComponentKind, HealthRegistry};

    fn event(line: &str) -> LogEvent {
        LogEvent {
            timestamp_ns: 1,
            observed_ns: 1,
            line: Bytes::from(line.to_string()),
            labels: Labels::new([("job", "app")]),
            metadata: Vec::new(),
            source: "app".into(),
            file: None,
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
        let dlq = SinkDlq::new("loki", queue, None, true, signal, health.clone());
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
        let dlq = SinkDlq::new("loki", queue, None, true, signal, health.clone());
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
}
