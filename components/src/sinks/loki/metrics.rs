//! The Loki sink's own instruments.

use std::sync::OnceLock;

use opentelemetry::metrics::{Counter, Gauge, Histogram};

use crate::telemetry::{meter, names};

/// The Loki sink's own instruments.
pub(super) struct LokiInstruments {
    pub(super) sent_entries: Counter<u64>,
    pub(super) sent_bytes: Counter<u64>,
    pub(super) request_duration: Histogram<f64>,
    pub(super) http_responses: Counter<u64>,
    pub(super) timestamp_rejections: Counter<u64>,
    pub(super) timestamp_clamped: Counter<u64>,
    pub(super) timestamp_max_age: Gauge<f64>,
    pub(super) lines_truncated: Counter<u64>,
}

pub(super) fn instruments() -> &'static LokiInstruments {
    static INSTRUMENTS: OnceLock<LokiInstruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let m = meter();
        LokiInstruments {
            sent_entries: m
                .u64_counter(names::SENT_ENTRIES)
                .with_description("Entries Loki accepted.")
                .build(),
            sent_bytes: m
                .u64_counter(names::SENT_BYTES)
                .with_description("Bytes of push bodies sent (after compression).")
                .build(),
            request_duration: m
                .f64_histogram(names::REQUEST_DURATION)
                .with_description("Duration of one push request.")
                .with_boundaries(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ])
                .build(),
            http_responses: m
                .u64_counter(names::HTTP_RESPONSES)
                .with_description("Push responses by status code.")
                .build(),
            timestamp_rejections: m
                .u64_counter(names::TIMESTAMP_REJECTIONS)
                .with_description("Entries Loki rejected, by reason.")
                .build(),
            timestamp_clamped: m
                .u64_counter(names::TIMESTAMP_CLAMPED)
                .with_description("Entries whose time was moved into Loki's window before sending.")
                .build(),
            timestamp_max_age: m
                .f64_gauge(names::TIMESTAMP_MAX_AGE)
                .with_description("The maximum entry age learned from Loki's rejections.")
                .build(),
            lines_truncated: m
                .u64_counter(names::LINES_TRUNCATED)
                .with_description(names::LINES_TRUNCATED_HELP)
                .build(),
        }
    })
}
