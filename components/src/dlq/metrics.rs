//! The dead-letter queue's telemetry; every metric carries `sink=<name>`.

use crate::telemetry::{Counter, Gauge, MetricDef};

const S: &[&str] = &["sink"];

pub static ENTRIES: Counter = Counter::new(
    "dlq_entries",
    "Entries written to the dead-letter queue, by reason.",
    &["sink", "reason"],
);
pub static QUEUE_SIZE: Gauge = Gauge::new(
    "dlq_queue_size",
    "Entries in the dead-letter queue not yet replayed.",
    S,
);
pub static WRITE_FAILURES: Counter = Counter::new(
    "dlq_write_failures",
    "Dead-letter writes that failed (each is retried; the events wait meanwhile).",
    S,
);
pub static REPROCESSED: Counter = Counter::new(
    "dlq_reprocessed",
    "Entries replayed from the dead-letter queue whose batch the sink settled.",
    S,
);
pub static REPROCESS_FAILURES: Counter = Counter::new(
    "dlq_reprocess_failures",
    "Replay rounds that stopped on an error.",
    S,
);
pub static REPLAY_REFUSED: Counter = Counter::new(
    "dlq_replay_refused",
    "Replayed entries refused again (queued again or archived).",
    S,
);
pub static REFUSED: Counter = Counter::new(
    "dlq_refused",
    "Entries refused for good after max_replays, moved to the archive, by reason.",
    &["sink", "reason"],
);
pub static ARCHIVE_BYTES: Gauge = Gauge::new(
    "dlq_archive_bytes",
    "Bytes on disk of the dead-letter archive.",
    S,
);
pub static ARCHIVE_EVICTED: Counter = Counter::new(
    "dlq_archive_evicted",
    "Refused entries removed from the archive to keep it within archive_max_bytes.",
    S,
);

/// Every metric of the dead-letter queue.
pub static METRICS: &[&MetricDef] = &[
    &ENTRIES.def,
    &QUEUE_SIZE.def,
    &WRITE_FAILURES.def,
    &REPROCESSED.def,
    &REPROCESS_FAILURES.def,
    &REPLAY_REFUSED.def,
    &REFUSED.def,
    &ARCHIVE_BYTES.def,
    &ARCHIVE_EVICTED.def,
];
