//! The pipeline's own telemetry: metric instruments and component health.
//!
//! Every metric the components emit is declared here, once, with its name and meaning;
//! docs/metrics.md lists the same names and a test checks the two agree. Instruments are created
//! from the global OpenTelemetry meter, which the engine installs before it builds the topology
//! (without one they are no-ops, which is what unit tests get).
//!
//! Hot paths count per batch: an `add` with attributes costs far more than handling one line, so
//! callers pass the batch length, never loop over events.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};

/// Instrument names without the `log_capturer_` namespace; the Prometheus exporter adds the
/// namespace and the `_total` suffix of counters.
pub mod names {
    pub const LOGS_PROCESSED: &str = "logs_processed";
    pub const ERRORS: &str = "errors";
    pub const DROPPED: &str = "dropped";
    pub const QUEUE_SIZE: &str = "queue_size";
    pub const QUEUE_CAPACITY: &str = "queue_capacity";
    pub const BATCH_SIZE: &str = "batch_size";
    pub const SEND_DURATION: &str = "send_duration_seconds";
    pub const RETRIES: &str = "retries";
    pub const COMPONENT_HEALTH: &str = "component_health";
    pub const BUILD_INFO: &str = "build_info";
    pub const CONFIG_RELOADS: &str = "config_reloads";
    pub const API_CONNECTIONS_CLOSED: &str = "api_connections_closed";

    // The file source.
    pub const FILES_WATCHED: &str = "files_watched";
    pub const INCLUDE_DIRS_MISSING: &str = "include_dirs_missing";
    pub const FILES_OPENED: &str = "files_opened";
    pub const FILES_ROTATED: &str = "files_rotated";
    pub const FILES_TRUNCATED: &str = "files_truncated";
    pub const FILES_INODE_REUSED: &str = "files_inode_reused";
    pub const READ_BYTES: &str = "read_bytes";
    pub const LINES_READ: &str = "lines_read";
    pub const LINES_TRUNCATED: &str = "lines_truncated";
    /// Shared by the file source and the Loki sink, which both cut lines.
    pub const LINES_TRUNCATED_HELP: &str = "Lines cut to a maximum length (the file source's max_line_bytes, the Loki sink's max_line_size).";
    pub const INVALID_UTF8_LINES: &str = "invalid_utf8_lines";
    pub const RETRY_QUEUE_SIZE: &str = "retry_queue_size";
    pub const RETRY_DROPPED: &str = "retry_dropped";
    pub const OLD_LOGS_IGNORED: &str = "old_logs_ignored";
    pub const POSITION_SAVES: &str = "position_saves";
    pub const POSITION_SAVE_FAILURES: &str = "position_save_failures";
    pub const POSITION_SAVE_DURATION: &str = "position_save_duration_seconds";
    pub const POSITION_SAVE_LAG: &str = "position_save_lag_seconds";
    pub const POSITION_CORRUPTIONS: &str = "position_corruptions";
    pub const POSITION_VALIDATION_FAILURES: &str = "position_validation_failures";
    pub const CHECKPOINT_RESTORES: &str = "checkpoint_restores";
    pub const CHECKPOINT_AGE: &str = "checkpoint_age_seconds";
    pub const POSITION_BACKPRESSURE: &str = "position_backpressure";

    // The Loki sink.
    pub const SENT_ENTRIES: &str = "sent_entries";
    pub const SENT_BYTES: &str = "sent_bytes";
    pub const REQUEST_DURATION: &str = "request_duration_seconds";
    pub const HTTP_RESPONSES: &str = "http_responses";
    pub const TIMESTAMP_REJECTIONS: &str = "timestamp_rejections";
    pub const TIMESTAMP_CLAMPED: &str = "timestamp_clamped";
    pub const TIMESTAMP_MAX_AGE: &str = "timestamp_max_age_seconds";

    // The dead-letter queue.
    pub const DLQ_ENTRIES: &str = "dlq_entries";
    pub const DLQ_QUEUE_SIZE: &str = "dlq_queue_size";
    pub const DLQ_WRITE_FAILURES: &str = "dlq_write_failures";
    pub const DLQ_REPROCESSED: &str = "dlq_reprocessed";
    pub const DLQ_REPROCESS_FAILURES: &str = "dlq_reprocess_failures";
    pub const DLQ_REPLAY_REFUSED: &str = "dlq_replay_refused";
    pub const DLQ_REFUSED: &str = "dlq_refused";
    pub const DLQ_ARCHIVE_BYTES: &str = "dlq_archive_bytes";
    pub const DLQ_ARCHIVE_EVICTED: &str = "dlq_archive_evicted";

    // The dedup transform.
    pub const DEDUP_CHECKS: &str = "dedup_checks";
    pub const DEDUP_DUPLICATES: &str = "dedup_duplicates";
    pub const DEDUP_EVICTIONS: &str = "dedup_evictions";
    pub const DEDUP_CACHE_SIZE: &str = "dedup_cache_size";

    /// Every name above; docs/metrics.md is checked against this list.
    pub const ALL: &[&str] = &[
        LOGS_PROCESSED,
        ERRORS,
        DROPPED,
        QUEUE_SIZE,
        QUEUE_CAPACITY,
        BATCH_SIZE,
        SEND_DURATION,
        RETRIES,
        COMPONENT_HEALTH,
        BUILD_INFO,
        CONFIG_RELOADS,
        API_CONNECTIONS_CLOSED,
        FILES_WATCHED,
        INCLUDE_DIRS_MISSING,
        FILES_OPENED,
        FILES_ROTATED,
        FILES_TRUNCATED,
        FILES_INODE_REUSED,
        READ_BYTES,
        LINES_READ,
        LINES_TRUNCATED,
        INVALID_UTF8_LINES,
        RETRY_QUEUE_SIZE,
        RETRY_DROPPED,
        OLD_LOGS_IGNORED,
        POSITION_SAVES,
        POSITION_SAVE_FAILURES,
        POSITION_SAVE_DURATION,
        POSITION_SAVE_LAG,
        POSITION_CORRUPTIONS,
        POSITION_VALIDATION_FAILURES,
        CHECKPOINT_RESTORES,
        CHECKPOINT_AGE,
        POSITION_BACKPRESSURE,
        SENT_ENTRIES,
        SENT_BYTES,
        REQUEST_DURATION,
        HTTP_RESPONSES,
        TIMESTAMP_REJECTIONS,
        TIMESTAMP_CLAMPED,
        TIMESTAMP_MAX_AGE,
        DLQ_ENTRIES,
        DLQ_QUEUE_SIZE,
        DLQ_WRITE_FAILURES,
        DLQ_REPROCESSED,
        DLQ_REPROCESS_FAILURES,
        DLQ_REPLAY_REFUSED,
        DLQ_REFUSED,
        DLQ_ARCHIVE_BYTES,
        DLQ_ARCHIVE_EVICTED,
        DEDUP_CHECKS,
        DEDUP_DUPLICATES,
        DEDUP_EVICTIONS,
        DEDUP_CACHE_SIZE,
    ];
}

/// The meter every component uses.
pub fn meter() -> Meter {
    opentelemetry::global::meter("log-capturer")
}

/// The instruments shared by all components.
pub struct Instruments {
    /// Events a component emitted (sources, transforms) or delivered (sinks), by `component`.
    pub logs_processed: Counter<u64>,
    /// Failures, by `component` and `reason`.
    pub errors: Counter<u64>,
    /// Events discarded on purpose, by `component` and `reason`.
    pub dropped: Counter<u64>,
    /// Events waiting in a sink's queue, by `sink`.
    pub queue_size: Gauge<i64>,
    /// A sink queue's capacity in events, by `sink`.
    pub queue_capacity: Gauge<i64>,
    /// Events per batch handed to a sink, by `sink`.
    pub batch_size: Histogram<u64>,
    /// Time of one send attempt, by `sink` and `outcome`.
    pub send_duration: Histogram<f64>,
    /// Send attempts repeated after a retriable failure, by `sink`.
    pub retries: Counter<u64>,
    /// 1 while a component is healthy, 0 otherwise, by `component`.
    pub component_health: Gauge<i64>,
}

/// The process-wide instruments, created on first use from the global meter.
pub fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = meter();
        Instruments {
            logs_processed: meter
                .u64_counter(names::LOGS_PROCESSED)
                .with_description(
                    "Log events emitted by a source or transform, or delivered by a sink.",
                )
                .build(),
            errors: meter
                .u64_counter(names::ERRORS)
                .with_description("Errors by component and reason.")
                .build(),
            dropped: meter
                .u64_counter(names::DROPPED)
                .with_description("Log events discarded on purpose, by component and reason.")
                .build(),
            queue_size: meter
                .i64_gauge(names::QUEUE_SIZE)
                .with_description("Log events waiting in a sink's queue.")
                .build(),
            queue_capacity: meter
                .i64_gauge(names::QUEUE_CAPACITY)
                .with_description("Capacity of a sink's queue in log events.")
                .build(),
            batch_size: meter
                .u64_histogram(names::BATCH_SIZE)
                .with_description("Log events per batch handed to a sink.")
                .with_boundaries(vec![
                    1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
                ])
                .build(),
            send_duration: meter
                .f64_histogram(names::SEND_DURATION)
                .with_description("Duration of one send attempt of a batch.")
                .with_boundaries(vec![
                    0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0,
                ])
                .build(),
            retries: meter
                .u64_counter(names::RETRIES)
                .with_description("Send attempts repeated after a retriable failure.")
                .build(),
            component_health: meter
                .i64_gauge(names::COMPONENT_HEALTH)
                .with_description("1 while a component is healthy, 0 when it is not.")
                .build(),
        }
    })
}

/// Attribute sets of one component, built once so hot paths do not allocate them.
#[derive(Clone, Debug)]
pub struct ComponentAttrs {
    /// `component=<key>`
    pub component: Arc<[KeyValue]>,
    /// `sink=<key>` (used by the dispatcher's metrics).
    pub sink: Arc<[KeyValue]>,
    key: Arc<str>,
}

impl ComponentAttrs {
    pub fn new(key: &str) -> Self {
        let value = opentelemetry::Value::String(key.to_string().into());
        Self {
            component: Arc::new([KeyValue::new("component", value.clone())]),
            sink: Arc::new([KeyValue::new("sink", value)]),
            key: key.into(),
        }
    }

    /// `component=<key>, reason=<reason>`.
    pub fn with_reason(&self, reason: &'static str) -> [KeyValue; 2] {
        [
            KeyValue::new("component", self.key.to_string()),
            KeyValue::new("reason", reason),
        ]
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Counts events a component emitted or delivered.
    pub fn processed(&self, n: usize) {
        instruments().logs_processed.add(n as u64, &self.component);
    }

    /// Counts an error.
    pub fn error(&self, reason: &'static str) {
        instruments().errors.add(1, &self.with_reason(reason));
    }

    /// Counts events dropped on purpose.
    pub fn dropped(&self, n: usize, reason: &'static str) {
        instruments()
            .dropped
            .add(n as u64, &self.with_reason(reason));
    }
}

/// What kind of component a health entry belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    Source,
    Transform,
    Sink,
}

#[derive(Debug)]
struct HealthState {
    kind: ComponentKind,
    healthy: AtomicBool,
    detail: Mutex<Option<String>>,
}

/// A component's handle on its own health entry.
#[derive(Clone, Debug)]
pub struct HealthHandle {
    attrs: ComponentAttrs,
    state: Arc<HealthState>,
}

impl HealthHandle {
    /// Marks the component healthy (clears the detail).
    pub fn healthy(&self) {
        if !self.state.healthy.swap(true, Ordering::AcqRel) {
            self.set_detail(None);
            instruments()
                .component_health
                .record(1, &self.attrs.component);
        }
    }

    /// Marks the component unhealthy and says why.
    pub fn unhealthy(&self, detail: impl Into<String>) {
        self.set_detail(Some(detail.into()));
        if self.state.healthy.swap(false, Ordering::AcqRel) {
            instruments()
                .component_health
                .record(0, &self.attrs.component);
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.state.healthy.load(Ordering::Acquire)
    }

    fn set_detail(&self, detail: Option<String>) {
        if let Ok(mut guard) = self.state.detail.lock() {
            *guard = detail;
        }
    }
}

/// One line of the health report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ComponentHealth {
    pub kind: ComponentKind,
    pub healthy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// All components' health, read by the API.
#[derive(Clone, Debug, Default)]
pub struct HealthRegistry {
    entries: Arc<Mutex<BTreeMap<String, Arc<HealthState>>>>,
}

impl HealthRegistry {
    /// Registers a component, healthy to begin with.
    pub fn register(&self, key: &str, kind: ComponentKind) -> HealthHandle {
        let state = Arc::new(HealthState {
            kind,
            healthy: AtomicBool::new(true),
            detail: Mutex::new(None),
        });
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(key.to_string(), state.clone());
        }
        let attrs = ComponentAttrs::new(key);
        instruments().component_health.record(1, &attrs.component);
        HealthHandle { attrs, state }
    }

    /// A snapshot of every component's health.
    pub fn snapshot(&self) -> BTreeMap<String, ComponentHealth> {
        let Ok(entries) = self.entries.lock() else {
            return BTreeMap::new();
        };
        entries
            .iter()
            .map(|(key, state)| {
                let detail = state.detail.lock().ok().and_then(|d| d.clone());
                (
                    key.clone(),
                    ComponentHealth {
                        kind: state.kind,
                        healthy: state.healthy.load(Ordering::Acquire),
                        detail,
                    },
                )
            })
            .collect()
    }
}

/// Seconds as `f64` for duration histograms.
pub fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Rate-limits a repeated log message: the first occurrence is logged at once, later ones at
/// most once per `every`, each saying how many were held back since. Hot or failing loops
/// (a save retried ten times a second) use it so one cause makes one line, not a flood.
#[derive(Debug)]
pub struct LogThrottle {
    every: Duration,
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl LogThrottle {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(held back since the last logged one)` when this occurrence should be logged.
    pub fn ready(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    /// Forgets the past: the next occurrence is logged at once (after the condition cleared).
    pub fn reset(&mut self) {
        self.last = None;
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_logs_the_first_and_counts_what_it_holds_back() {
        let mut throttle = LogThrottle::new(Duration::from_secs(3600));
        assert_eq!(throttle.ready(), Some(0));
        assert_eq!(throttle.ready(), None);
        assert_eq!(throttle.ready(), None);
        throttle.reset();
        assert_eq!(throttle.ready(), Some(0));
        let mut every_time = LogThrottle::new(Duration::ZERO);
        assert_eq!(every_time.ready(), Some(0));
        assert_eq!(every_time.ready(), Some(0));
    }
}
