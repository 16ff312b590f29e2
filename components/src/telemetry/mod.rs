//! The pipeline's own telemetry: metric instruments and component health.
//!
//! Every metric is declared once, as a `static` beside the component that emits it (see
//! [`metric`] for the guarantees); [`all_metrics`] lists them, and docs/metrics.md is checked
//! against that list. Instruments come from the global OpenTelemetry meter, which the engine
//! installs before it builds the topology (without one they are no-ops: unit tests).
//!
//! Hot paths count per batch: an `add` with attributes costs far more than handling one line, so
//! callers pass the batch length, never loop over events.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::KeyValue;

mod metric;

pub use self::metric::{
    Counter, FloatGauge, Gauge, Histogram, MetricDef, MetricKind, SECONDS_BUCKETS,
};

/// Something that happened in a component, told the way operators see it: one type per event,
/// declared beside the component, whose `emit` logs it (rate-limited where it can repeat
/// quickly) and counts it, so the log line and the metric never disagree.
pub trait TelemetryEvent {
    fn emit(self);
}

/// The meter every component uses.
pub fn meter() -> opentelemetry::metrics::Meter {
    opentelemetry::global::meter("log-capturer")
}

/// Events a component emitted (sources, transforms) or delivered (sinks).
pub static LOGS_PROCESSED: Counter = Counter::new(
    "logs_processed",
    "Log events emitted by a source or transform, or delivered by a sink.",
    &["component"],
);
/// Failures.
pub static ERRORS: Counter = Counter::new(
    "errors",
    "Errors by component and reason.",
    &["component", "reason"],
);
/// Events discarded on purpose.
pub static DROPPED: Counter = Counter::new(
    "dropped",
    "Log events discarded on purpose, by component and reason.",
    &["component", "reason"],
);
/// Events waiting in a sink's queue.
pub static QUEUE_SIZE: Gauge = Gauge::new(
    "queue_size",
    "Log events waiting in a sink's queue.",
    &["sink"],
);
/// A sink queue's capacity in events.
pub static QUEUE_CAPACITY: Gauge = Gauge::new(
    "queue_capacity",
    "Capacity of a sink's queue in log events.",
    &["sink"],
);
/// Bytes waiting in a sink's queue (lines plus each event's record; see `queue::batch_bytes`).
pub static QUEUE_BYTES: Gauge = Gauge::new(
    "queue_bytes",
    "Bytes of log events waiting in a sink's queue (lines plus each event's own record).",
    &["sink"],
);
/// A sink queue's capacity in bytes (`queue_max_bytes`).
pub static QUEUE_CAPACITY_BYTES: Gauge = Gauge::new(
    "queue_capacity_bytes",
    "Capacity of a sink's queue in bytes (dispatcher.queue_max_bytes).",
    &["sink"],
);
/// Events per batch handed to a sink.
pub static BATCH_SIZE: Histogram = Histogram::new(
    "batch_size",
    "Log events per batch handed to a sink.",
    &["sink"],
    &[
        1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
    ],
);
/// Time of one send attempt.
pub static SEND_DURATION: Histogram = Histogram::new(
    "send_duration_seconds",
    "Duration of one send attempt of a batch.",
    &["sink", "outcome"],
    SECONDS_BUCKETS,
);
/// Send attempts repeated after a retriable failure.
pub static RETRIES: Counter = Counter::new(
    "retries",
    "Send attempts repeated after a retriable failure.",
    &["sink"],
);
/// 1 while a component is healthy, 0 otherwise.
pub static COMPONENT_HEALTH: Gauge = Gauge::new(
    "component_health",
    "1 while a component is healthy, 0 when it is not.",
    &["component"],
);

/// Lines cut to a maximum length: the file source's `max_line_bytes`, the Loki sink's
/// `max_line_size` (`component` names which).
pub static LINES_TRUNCATED: Counter = Counter::new(
    "lines_truncated",
    "Lines cut to a maximum length (the file source's max_line_bytes, the Loki sink's max_line_size).",
    &["component"],
);

/// The metrics of the component model (pipeline, queues, dispatcher, health).
pub static METRICS: &[&MetricDef] = &[
    &LOGS_PROCESSED.def,
    &ERRORS.def,
    &DROPPED.def,
    &QUEUE_SIZE.def,
    &QUEUE_CAPACITY.def,
    &QUEUE_BYTES.def,
    &QUEUE_CAPACITY_BYTES.def,
    &BATCH_SIZE.def,
    &SEND_DURATION.def,
    &RETRIES.def,
    &COMPONENT_HEALTH.def,
    &LINES_TRUNCATED.def,
];

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
        LOGS_PROCESSED.add(n as u64, &self.component);
    }

    /// Counts an error.
    pub fn error(&self, reason: &'static str) {
        ERRORS.add(1, &self.with_reason(reason));
    }

    /// Counts events dropped on purpose.
    pub fn dropped(&self, n: usize, reason: &'static str) {
        DROPPED.add(n as u64, &self.with_reason(reason));
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
            COMPONENT_HEALTH.record(1, &self.attrs.component);
        }
    }

    /// Marks the component unhealthy and says why.
    pub fn unhealthy(&self, detail: impl Into<String>) {
        self.set_detail(Some(detail.into()));
        if self.state.healthy.swap(false, Ordering::AcqRel) {
            COMPONENT_HEALTH.record(0, &self.attrs.component);
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
        COMPONENT_HEALTH.record(1, &attrs.component);
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
