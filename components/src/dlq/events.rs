//! What a sink's dead-letter queue tells operators: one type per event, each logging and
//! counting it together (see [`TelemetryEvent`]). Metric names are in [`super::metrics`].

use std::time::Duration;

use opentelemetry::KeyValue;

use super::metrics;
use crate::telemetry::{ComponentAttrs, HealthHandle, LogThrottle, TelemetryEvent};

/// A write to the queue failed; it is retried and the events wait (with backpressure). The
/// sink is unhealthy meanwhile. Rate-limited: a full disk fails every write.
pub(super) struct DlqWriteFailed<'a> {
    pub(super) sink: &'a str,
    pub(super) attrs: &'a [KeyValue],
    pub(super) health: &'a HealthHandle,
    pub(super) error: &'a dyn std::fmt::Display,
    pub(super) retry_in: Duration,
    pub(super) log: &'a mut LogThrottle,
}

impl TelemetryEvent for DlqWriteFailed<'_> {
    fn emit(self) {
        metrics::WRITE_FAILURES.add(1, self.attrs);
        self.health.unhealthy(format!(
            "the dead-letter queue cannot be written: {}",
            self.error
        ));
        if let Some(held_back) = self.log.ready() {
            tracing::error!(
                sink = %self.sink,
                error = %self.error,
                failures_since_last_report = held_back,
                retry_in = ?self.retry_in,
                "Dead-letter queue write failed; retrying, and holding the events (reading waits) until it succeeds."
            );
        }
    }
}

/// A write that failed and is not retried: a record that cannot be encoded, or a failure
/// once shutdown began (the events stay unacknowledged and are read again after a restart).
pub(super) struct DlqWriteGivenUp<'a> {
    pub(super) attrs: &'a [KeyValue],
}

impl TelemetryEvent for DlqWriteGivenUp<'_> {
    fn emit(self) {
        metrics::WRITE_FAILURES.add(1, self.attrs);
    }
}

/// Writes succeed again after failing: the held events are stored.
pub(super) struct DlqWritableAgain<'a> {
    pub(super) sink: &'a str,
    pub(super) log: &'a mut LogThrottle,
}

impl TelemetryEvent for DlqWritableAgain<'_> {
    fn emit(self) {
        tracing::info!(sink = %self.sink, "Dead-letter queue writable again; the held events are stored.");
        self.log.reset();
    }
}

/// The queue is full under `when_full: block`: the store waits for the replay to make room.
/// Rate-limited.
pub(super) struct DlqFullWaiting<'a> {
    pub(super) sink: &'a str,
    pub(super) log: &'a mut LogThrottle,
}

impl TelemetryEvent for DlqFullWaiting<'_> {
    fn emit(self) {
        if self.log.ready().is_some() {
            tracing::warn!(sink = %self.sink, "Dead-letter queue full; waiting for the replay to make room.");
        }
    }
}

/// The queue is full under `when_full: drop_newest`: a record's entries are dropped, counted in
/// `dropped_total{reason="dlq_full"}`. Rate-limited: a full queue drops every record.
pub(super) struct DlqRecordDropped<'a> {
    pub(super) component: &'a ComponentAttrs,
    pub(super) entries: usize,
    pub(super) log: &'a mut LogThrottle,
}

impl TelemetryEvent for DlqRecordDropped<'_> {
    fn emit(self) {
        self.component.dropped(self.entries, "dlq_full");
        if let Some(held_back) = self.log.ready() {
            tracing::error!(
                sink = %self.component.key(),
                entries = self.entries,
                records_since_last_report = held_back,
                "Dead-letter queue full; record dropped (when_full: drop_newest; dropped_total{{reason=\"dlq_full\"}} counts them)."
            );
        }
    }
}

/// Entries refused on every replay went to the archive as refused for good.
pub(super) struct EntriesArchived<'a> {
    pub(super) sink: &'a str,
    pub(super) reason: &'a str,
    pub(super) detail: &'a str,
    pub(super) entries: usize,
    pub(super) replays: u8,
}

impl TelemetryEvent for EntriesArchived<'_> {
    fn emit(self) {
        tracing::warn!(
            sink = %self.sink,
            reason = self.reason,
            error = %self.detail.trim_end(),
            entries = self.entries,
            replays = self.replays,
            "Entries refused on every replay; kept in the dead-letter archive as refused for good."
        );
    }
}

/// A replay round stopped on an error (reading the queue, marking records handled) or left a
/// record unsettled; it is tried again on the next round.
pub(super) struct ReplayFailed<'a> {
    pub(super) sink: &'a str,
    pub(super) attrs: &'a [KeyValue],
    pub(super) what: &'static str,
    pub(super) error: &'a dyn std::fmt::Display,
}

impl TelemetryEvent for ReplayFailed<'_> {
    fn emit(self) {
        metrics::REPROCESS_FAILURES.add(1, self.attrs);
        tracing::warn!(sink = %self.sink, error = %self.error, "{}", self.what);
    }
}
