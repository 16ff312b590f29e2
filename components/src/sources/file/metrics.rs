//! The file source's telemetry. Every metric carries `component=<source name>`; none carries a
//! path (paths would make the series count grow without bound).

use std::sync::Arc;

use opentelemetry::KeyValue;

use crate::telemetry::{Counter, FloatGauge, Gauge, Histogram, MetricDef};

const C: &[&str] = &["component"];

pub static FILES_WATCHED: Gauge = Gauge::new(
    "files_watched",
    "Files the file source follows now (open, parked for lack of descriptors, or draining after rotation).",
    C,
);
pub static INCLUDE_DIRS_MISSING: Gauge = Gauge::new(
    "include_dirs_missing",
    "Directories of include patterns that do not exist (nothing can be found there).",
    C,
);
pub static FILES_OPENED: Counter = Counter::new(
    "files_opened",
    "Files opened for reading (reopening a parked file counts).",
    C,
);
pub static FILES_ROTATED: Counter = Counter::new(
    "files_rotated",
    "Files found rotated (renamed or removed) and drained before release.",
    C,
);
pub static FILES_TRUNCATED: Counter = Counter::new(
    "files_truncated",
    "Files found truncated or replaced in place; read again from the start.",
    C,
);
pub static FILES_INODE_REUSED: Counter = Counter::new(
    "files_inode_reused",
    "New files found under the inode of a file followed before (read from their start).",
    C,
);
pub static READ_BYTES: Counter = Counter::new("read_bytes", "Bytes read from files.", C);
pub static LINES_READ: Counter = Counter::new("lines_read", "Lines read from files.", C);
/// Lines cut to `max_line_bytes` (shared with the Loki sink).
pub use crate::telemetry::LINES_TRUNCATED;
pub static INVALID_UTF8_LINES: Counter = Counter::new(
    "invalid_utf8_lines",
    "Lines that were not valid UTF-8 (kept as they are or replaced, per invalid_utf8).",
    C,
);
pub static RETRY_QUEUE_SIZE: Gauge = Gauge::new(
    "retry_queue_size",
    "Files waiting to be opened again after an error.",
    C,
);
pub static RETRY_DROPPED: Counter = Counter::new(
    "retry_dropped",
    "Files given up after open errors (full retry queue or attempts exhausted): data loss.",
    C,
);
pub static OLD_LOGS_IGNORED: Counter = Counter::new(
    "old_logs_ignored",
    "Files skipped because they were last modified before ignore_older.",
    C,
);
pub static POSITION_SAVES: Counter =
    Counter::new("position_saves", "Positions documents written.", C);
pub static POSITION_SAVE_FAILURES: Counter = Counter::new(
    "position_save_failures",
    "Positions or checkpoint writes that failed (each is retried).",
    C,
);
pub static POSITION_SAVE_DURATION: Histogram = Histogram::new(
    "position_save_duration_seconds",
    "Time to write the positions document atomically.",
    C,
    &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    ],
);
pub static POSITION_SAVE_LAG: FloatGauge = FloatGauge::new(
    "position_save_lag_seconds",
    "Age of the oldest acknowledged offset not yet saved (0 when all are saved).",
    C,
);
pub static POSITION_CORRUPTIONS: Counter = Counter::new(
    "position_corruptions",
    "Positions documents found corrupt or torn at start.",
    C,
);
pub static POSITION_VALIDATION_FAILURES: Counter = Counter::new(
    "position_validation_failures",
    "Saved positions that no longer matched their file (offset past the end, marker mismatch).",
    C,
);
pub static CHECKPOINT_RESTORES: Counter = Counter::new(
    "checkpoint_restores",
    "Starts that restored positions from a checkpoint generation.",
    C,
);
pub static CHECKPOINT_AGE: FloatGauge = FloatGauge::new(
    "checkpoint_age_seconds",
    "Age of the newest positions checkpoint.",
    C,
);
pub static POSITION_BACKPRESSURE: Gauge = Gauge::new(
    "position_backpressure",
    "1 while reading is paused because positions cannot be saved, else 0.",
    C,
);

pub static POSITIONS_LAG_BYTES: Gauge = Gauge::new(
    "positions_lag_bytes",
    "Bytes read from files but not yet committed (acknowledged by every sink): read offset minus committed offset, summed over files.",
    C,
);
pub static FILES_FROZEN: Gauge = Gauge::new(
    "files_frozen",
    "Files whose committed offset stays put until a restart because a batch of theirs was not delivered (lost or refused by the dead-letter queue).",
    C,
);

/// Every metric of the file source.
pub static METRICS: &[&MetricDef] = &[
    &FILES_WATCHED.def,
    &INCLUDE_DIRS_MISSING.def,
    &FILES_OPENED.def,
    &FILES_ROTATED.def,
    &FILES_TRUNCATED.def,
    &FILES_INODE_REUSED.def,
    &READ_BYTES.def,
    &LINES_READ.def,
    &INVALID_UTF8_LINES.def,
    &RETRY_QUEUE_SIZE.def,
    &RETRY_DROPPED.def,
    &OLD_LOGS_IGNORED.def,
    &POSITION_SAVES.def,
    &POSITION_SAVE_FAILURES.def,
    &POSITION_SAVE_DURATION.def,
    &POSITION_SAVE_LAG.def,
    &POSITION_CORRUPTIONS.def,
    &POSITION_VALIDATION_FAILURES.def,
    &CHECKPOINT_RESTORES.def,
    &CHECKPOINT_AGE.def,
    &POSITION_BACKPRESSURE.def,
    &POSITIONS_LAG_BYTES.def,
    &FILES_FROZEN.def,
];

/// `component=<name>`, built once.
pub fn attrs(source: &str) -> Arc<[KeyValue]> {
    Arc::new([KeyValue::new("component", source.to_string())])
}
