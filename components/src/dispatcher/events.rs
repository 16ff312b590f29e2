//! What a sink's dispatcher tells operators: one type per event, each logging, counting and
//! (where it says so) marking the sink's health together (see [`TelemetryEvent`]).

use std::time::Duration;

use super::service::PartitionKey;
use crate::telemetry::{self, ComponentAttrs, HealthHandle, LogThrottle, TelemetryEvent};

/// A send failed and will be retried after `delay`: counted in `errors_total{reason}` and
/// `retries_total`, the sink unhealthy until a push is stored.
pub(super) struct SendRetrying<'a> {
    pub(super) attrs: &'a ComponentAttrs,
    pub(super) health: &'a HealthHandle,
    pub(super) partition: &'a PartitionKey,
    pub(super) reason: &'static str,
    pub(super) detail: &'a str,
    pub(super) delay: Duration,
    pub(super) events: usize,
}

impl TelemetryEvent for SendRetrying<'_> {
    fn emit(self) {
        self.attrs.error(self.reason);
        telemetry::RETRIES.add(1, &self.attrs.sink);
        self.health
            .unhealthy(format!("{}: {}", self.reason, self.detail));
        tracing::warn!(
            sink = %self.attrs.key(),
            partition = self.partition.as_deref().unwrap_or_default(),
            reason = self.reason,
            error = %self.detail,
            retry_in = ?self.delay,
            events = self.events,
            "Send failed; retrying."
        );
    }
}

/// A send failed and retrying cannot help: the destination refused it for good, or its
/// retries are exhausted. The sink is unhealthy until a push is stored; the events go to the
/// failure path ([`EventsDeadLettered`] or [`EventsLost`]).
pub(super) struct SendRefused<'a> {
    pub(super) attrs: &'a ComponentAttrs,
    pub(super) health: &'a HealthHandle,
    pub(super) reason: &'static str,
    pub(super) detail: &'a str,
}

impl TelemetryEvent for SendRefused<'_> {
    fn emit(self) {
        self.health
            .unhealthy(format!("{}: {}", self.reason, self.detail));
        tracing::debug!(sink = %self.attrs.key(), reason = self.reason, error = %self.detail, "Send refused for good.");
    }
}

/// Events that cannot be delivered were kept in the dead-letter queue (they count as
/// handled; `dlq_entries_total` counts them). Rate-limited: an outage refuses every batch.
pub(super) struct EventsDeadLettered<'a> {
    pub(super) attrs: &'a ComponentAttrs,
    pub(super) reason: &'static str,
    pub(super) detail: &'a str,
    pub(super) events: usize,
    pub(super) log: &'a mut LogThrottle,
}

impl TelemetryEvent for EventsDeadLettered<'_> {
    fn emit(self) {
        self.attrs.error(self.reason);
        if let Some(held_back) = self.log.ready() {
            tracing::warn!(
                sink = %self.attrs.key(),
                reason = self.reason,
                error = %self.detail,
                events = self.events,
                batches_since_last_report = held_back,
                "Events not deliverable; kept in the dead-letter queue (dlq_entries_total counts them all)."
            );
        }
    }
}

/// Events that cannot be delivered and were not kept: counted in `errors_total` and
/// `dropped_total{reason}`, acknowledged `Errored` so their sources do not commit past them.
pub(super) struct EventsLost<'a> {
    pub(super) attrs: &'a ComponentAttrs,
    pub(super) reason: &'static str,
    pub(super) detail: &'a dyn std::fmt::Display,
    pub(super) events: usize,
    /// Whether a dead-letter queue was there and could not take them (at shutdown).
    pub(super) dead_letter_refused: bool,
}

impl TelemetryEvent for EventsLost<'_> {
    fn emit(self) {
        self.attrs.error(self.reason);
        self.attrs.dropped(self.events, self.reason);
        if self.dead_letter_refused {
            tracing::error!(
                sink = %self.attrs.key(),
                reason = self.reason,
                error = %self.detail,
                events = self.events,
                "Events not kept in the dead-letter queue; they stay unacknowledged and are read again after a restart."
            );
        } else {
            tracing::error!(
                sink = %self.attrs.key(),
                reason = self.reason,
                error = %self.detail,
                events = self.events,
                "Events not delivered and no dead-letter queue; they are lost to this sink."
            );
        }
    }
}

/// A request was too large: its batch is split in two and each half sent.
pub(super) struct BatchSplit<'a> {
    pub(super) attrs: &'a ComponentAttrs,
    pub(super) events: usize,
}

impl TelemetryEvent for BatchSplit<'_> {
    fn emit(self) {
        tracing::info!(
            sink = %self.attrs.key(),
            events = self.events,
            "Request too large; splitting the batch in two."
        );
    }
}
