//! The file source's telemetry. Every instrument carries `component=<source name>`; none carries
//! a path (paths would make the series count grow without bound).

use std::sync::{Arc, OnceLock};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram};

use crate::telemetry::{meter, names};

/// The instruments, created once per process.
pub struct FileInstruments {
    pub files_watched: Gauge<i64>,
    pub include_dirs_missing: Gauge<i64>,
    pub files_opened: Counter<u64>,
    pub files_rotated: Counter<u64>,
    pub files_truncated: Counter<u64>,
    pub files_inode_reused: Counter<u64>,
    pub read_bytes: Counter<u64>,
    pub lines_read: Counter<u64>,
    pub lines_truncated: Counter<u64>,
    pub invalid_utf8_lines: Counter<u64>,
    pub retry_queue_size: Gauge<i64>,
    pub retry_dropped: Counter<u64>,
    pub old_logs_ignored: Counter<u64>,
    pub position_saves: Counter<u64>,
    pub position_save_failures: Counter<u64>,
    pub position_save_duration: Histogram<f64>,
    pub position_save_lag: Gauge<f64>,
    pub position_corruptions: Counter<u64>,
    pub position_validation_failures: Counter<u64>,
    pub checkpoint_restores: Counter<u64>,
    pub checkpoint_age: Gauge<f64>,
    pub position_backpressure: Gauge<i64>,
}

pub fn instruments() -> &'static FileInstruments {
    static INSTRUMENTS: OnceLock<FileInstruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let m = meter();
        let counter = |name: &'static str, help: &'static str| {
            m.u64_counter(name).with_description(help).build()
        };
        FileInstruments {
            files_watched: m
                .i64_gauge(names::FILES_WATCHED)
                .with_description("Files the file source currently follows (open or parked).")
                .build(),
            include_dirs_missing: m
                .i64_gauge(names::INCLUDE_DIRS_MISSING)
                .with_description(
                    "Directories of include patterns that do not exist (nothing can be found there).",
                )
                .build(),
            files_opened: counter(names::FILES_OPENED, "Files opened for reading."),
            files_rotated: counter(
                names::FILES_ROTATED,
                "Files found rotated (renamed or removed) and drained before release.",
            ),
            files_truncated: counter(
                names::FILES_TRUNCATED,
                "Files found truncated or replaced in place; read again from the start.",
            ),
            files_inode_reused: counter(
                names::FILES_INODE_REUSED,
                "New files found under the inode of a file followed before (read from their start).",
            ),
            read_bytes: counter(names::READ_BYTES, "Bytes read from files."),
            lines_read: counter(names::LINES_READ, "Lines read from files."),
            lines_truncated: counter(names::LINES_TRUNCATED, names::LINES_TRUNCATED_HELP),
            invalid_utf8_lines: counter(
                names::INVALID_UTF8_LINES,
                "Lines that were not valid UTF-8 (kept as they are or replaced, per invalid_utf8).",
            ),
            retry_queue_size: m
                .i64_gauge(names::RETRY_QUEUE_SIZE)
                .with_description("Files waiting to be opened again after an error.")
                .build(),
            retry_dropped: counter(
                names::RETRY_DROPPED,
                "Files given up after open errors (full retry queue or attempts exhausted): data loss.",
            ),
            old_logs_ignored: counter(
                names::OLD_LOGS_IGNORED,
                "Files skipped because they were last modified before ignore_older.",
            ),
            position_saves: counter(names::POSITION_SAVES, "Positions documents written."),
            position_save_failures: counter(
                names::POSITION_SAVE_FAILURES,
                "Positions or checkpoint writes that failed.",
            ),
            position_save_duration: m
                .f64_histogram(names::POSITION_SAVE_DURATION)
                .with_description("Time to write the positions document atomically.")
                .with_boundaries(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ])
                .build(),
            position_save_lag: m
                .f64_gauge(names::POSITION_SAVE_LAG)
                .with_description(
                    "Age of the oldest acknowledged offset not yet saved (0 when all are saved).",
                )
                .build(),
            position_corruptions: counter(
                names::POSITION_CORRUPTIONS,
                "Positions documents found corrupt or torn at start.",
            ),
            position_validation_failures: counter(
                names::POSITION_VALIDATION_FAILURES,
                "Saved positions that no longer matched their file (offset past the end, marker mismatch).",
            ),
            checkpoint_restores: counter(
                names::CHECKPOINT_RESTORES,
                "Starts that restored positions from a checkpoint generation.",
            ),
            checkpoint_age: m
                .f64_gauge(names::CHECKPOINT_AGE)
                .with_description("Age of the newest positions checkpoint.")
                .build(),
            position_backpressure: m
                .i64_gauge(names::POSITION_BACKPRESSURE)
                .with_description(
                    "1 while reading is paused because positions cannot be saved, else 0.",
                )
                .build(),
        }
    })
}

/// `component=<name>`, built once.
pub fn attrs(source: &str) -> Arc<[KeyValue]> {
    Arc::new([KeyValue::new("component", source.to_string())])
}
