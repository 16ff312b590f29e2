//! The Loki sink's telemetry; every metric carries `sink=<name>`.

use crate::telemetry::{Counter, FloatGauge, Gauge, Histogram, MetricDef};

const S: &[&str] = &["sink"];

pub static SENT_ENTRIES: Counter = Counter::new(
    "sent_entries",
    "Entries Loki accepted (never more than Loki's answers leave accepted).",
    S,
);
pub static SENT_BYTES: Counter = Counter::new(
    "sent_bytes",
    "Bytes of push bodies sent (after compression).",
    S,
);
pub static REQUEST_DURATION: Histogram = Histogram::new(
    "request_duration_seconds",
    "Duration of one push request.",
    S,
    &[
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ],
);
pub static HTTP_RESPONSES: Counter = Counter::new(
    "http_responses",
    "Push responses by status code.",
    &["sink", "code"],
);
pub static TIMESTAMP_REJECTIONS: Counter = Counter::new(
    "timestamp_rejections",
    "Entries Loki refused, by reason (too old, too far behind, line too long, ...).",
    &["sink", "reason"],
);
pub static TIMESTAMP_CLAMPED: Counter = Counter::new(
    "timestamp_clamped",
    "Entries whose time was moved into Loki's window before sending.",
    S,
);
pub static TIMESTAMP_MAX_AGE: FloatGauge = FloatGauge::new(
    "timestamp_max_age_seconds",
    "The maximum entry age learned from Loki's rejections.",
    S,
);
pub static STREAMS_OVERFLOW: Counter = Counter::new(
    "loki_streams_overflow",
    "Entries of label sets past max_streams, by stream_overflow policy (fold: sent in the overflow stream; drop: dropped).",
    &["sink", "policy"],
);
pub static ACTIVE_STREAMS: Gauge = Gauge::new(
    "loki_active_streams",
    "Label sets the stream cap counts as active (seen within stream_idle), all tenants; recorded per push, only with max_streams.",
    S,
);

/// Every metric of the Loki sink (it also counts `lines_truncated_total`, see
/// [`crate::telemetry::LINES_TRUNCATED`]).
pub static METRICS: &[&MetricDef] = &[
    &SENT_ENTRIES.def,
    &SENT_BYTES.def,
    &REQUEST_DURATION.def,
    &HTTP_RESPONSES.def,
    &TIMESTAMP_REJECTIONS.def,
    &TIMESTAMP_CLAMPED.def,
    &TIMESTAMP_MAX_AGE.def,
    &STREAMS_OVERFLOW.def,
    &ACTIVE_STREAMS.def,
];
