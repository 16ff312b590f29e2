//! What the Loki sink tells operators beyond its counters: one type per event, each logging
//! and counting together (see [`TelemetryEvent`]).

use super::config::StreamOverflow;
use super::metrics;
use super::stream_cap::StreamCap;
use super::streams::Overflowed;
use crate::telemetry::{ComponentAttrs, TelemetryEvent};

/// Lines of label sets past `max_streams` were folded into the overflow stream or dropped:
/// counted in `loki_streams_overflow_total{policy}` (and, dropped, in
/// `dropped_total{reason="stream_overflow"}`, settled as handled). Logged at most once a
/// minute, naming one label set past the cap: the label that went wrong is usually plain in it.
pub(super) struct StreamsOverflowed<'a> {
    pub(super) sink: &'a str,
    pub(super) cap: &'a StreamCap,
    /// Events of this push past the cap (not counted before, for a rebuilt push).
    pub(super) events: u64,
    pub(super) overflowed: &'a Overflowed,
}

impl TelemetryEvent for StreamsOverflowed<'_> {
    fn emit(self) {
        metrics::STREAMS_OVERFLOW.add(self.events, &self.cap.overflow_attrs);
        if self.cap.policy == StreamOverflow::Drop {
            ComponentAttrs::new(self.sink).dropped(
                usize::try_from(self.events).unwrap_or(usize::MAX),
                "stream_overflow",
            );
        }
        let ready = match self.cap.log.lock() {
            Ok(mut log) => log.ready(),
            Err(poisoned) => poisoned.into_inner().ready(),
        };
        if let Some(held_back) = ready {
            let action = match self.cap.policy {
                StreamOverflow::Fold => "folded into the overflow stream",
                StreamOverflow::Drop => "dropped",
            };
            tracing::warn!(
                sink = %self.sink,
                tenant = %self.overflowed.tenant,
                max_streams = self.cap.max(),
                label_sets = self.overflowed.label_sets,
                events = self.events,
                example = %self.overflowed.first,
                pushes_since_last_report = held_back,
                "Stream cap reached: lines of new label sets {action} (loki_streams_overflow_total counts them all)."
            );
        }
    }
}
