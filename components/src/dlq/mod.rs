//! The dead-letter queue (DLQ) of a sink: batches the sink could not deliver for good (Loki 4xx,
//! rejected entries, exhausted retries) are kept on disk until a reprocessor replays them. A
//! record written here counts as acknowledged for the sources, so it is on disk before
//! [`Dlq::append`] returns `Ok`.
//!
//! # On-disk format
//!
//! Everything of one sink lives in `<data_dir>/dlq/<sink>/`:
//!
//! ```text
//! segment-00000000000000000000.dlq   oldest live segment
//! segment-00000000000000000001.dlq
//! segment-00000000000000000002.dlq   newest segment: the one appended to
//! cursor                             replay progress, replaced on every ack
//! cursor.tmp                         a cursor write in progress; never read, removed by open
//! archive/segment-<sequence>.dlq     replayed segments (`archive: true`)
//! archive/refused-<sequence>.dlq     records refused for good (after `max_replays` replays)
//! ```
//!
//! - The sequence is 20 decimal digits, so names sort like numbers. It only grows: a new segment
//!   takes one above every live or archived segment and above the cursor's.
//! - A segment is a run of records, each framed as
//!   `[u32 LE payload length][u32 LE CRC-32 (IEEE) of the payload][payload]`, where the payload is
//!   the compact JSON of one [`DlqRecord`] (never empty, always starting with `{`, never
//!   containing a raw NUL):
//!
//!   ```json
//!   {"sink":"loki","tenant":null,"labels":[["job","app"]],"source":"app",
//!    "file":"/var/log/app.log","reason":"http_400","detail":"entry too far behind",
//!    "written_at":"2026-05-01T10:00:00.123Z",
//!    "entries":[{"timestamp_ns":1777629600000000000,"line":"GET /","metadata":[]},
//!               {"timestamp_ns":1777629600000000001,"line_base64":"/w==","metadata":[],
//!                "replays":2}]}
//!   ```
//!
//!   A line is `line` when it is valid UTF-8 and `line_base64` otherwise (kept byte for byte);
//!   `replays` (absent: 0) counts the replays that were refused again; `source` and `file`
//!   (absent in records of older versions) are given back to the replayed events.
//!
//! - A new segment is started when the next record would take the newest one past
//!   `segment_max_bytes`; a record larger than that gets a segment of its own.
//! - A record is named by a [`RecordId`]: its segment's sequence and the byte offset of its frame.
//! - `cursor` is one pretty-printed JSON document:
//!
//!   ```json
//!   {
//!     "version": 1,
//!     "sink": "loki",
//!     "segment": 2,
//!     "offset": 4096,
//!     "handled": [{ "segment": 2, "offset": 8192 }],
//!     "updated_at": "2026-05-01T10:00:00.123Z"
//!   }
//!   ```
//!
//!   Every record before `(segment, offset)` is handled, and so is every record listed in
//!   `handled` (acknowledged out of order; empty while the reprocessor acknowledges in order,
//!   which keeps the file small). A missing or invalid cursor means nothing is handled.
//!
//! # Guarantees
//!
//! - Durable append: the frame is written with one `write` and fsynced (`fdatasync`) before
//!   [`Dlq::append`] returns `Ok`; creating a segment fsyncs the directory. A failed write is cut
//!   back off the segment; if even that fails, the next append starts a new segment.
//! - Torn writes: [`Dlq::open`] truncates the newest segment after its last frame whose CRC
//!   matches (a crash mid-append, zero-filled blocks), counts the cut bytes in
//!   [`DlqStats::recovered_torn_bytes`] and logs a warning. Frames that fail their CRC but are
//!   followed by valid ones (in any segment), and unreadable bytes at the end of an older segment,
//!   are skipped, counted in [`DlqStats::corrupt_records`] and logged; never a panic. A record
//!   that goes bad after open is skipped the same way when [`Dlq::peek`] meets it.
//! - Bounds: an append is accepted only if afterwards the live segments' bytes on disk stay within
//!   `max_bytes` and the unhandled entries within `max_entries` (a single record over either limit
//!   can never fit). Otherwise `when_full` applies: `block` returns [`DlqError::Full`] and changes
//!   nothing (the caller keeps its batch unacknowledged: backpressure), `drop_newest` drops the
//!   record, counts it and returns [`AppendOutcome::Dropped`]. Before refusing, a newest segment
//!   whose records are all handled is archived or deleted to make room.
//! - The archive (see [`archive`]) stays within `archive_max_bytes`, oldest files first; the
//!   refused entries that removes are counted ([`DlqStats::refused_evicted`]) and logged.
//! - Replay is at-least-once: [`Dlq::peek`] never removes anything; [`Dlq::ack`] writes the cursor
//!   atomically (`cursor.tmp`, fsync, rename, directory fsync) before returning `Ok`. After a
//!   crash, every record acknowledged by a successful `ack` stays handled; records peeked but not
//!   yet acknowledged (at most the last `peek` batch) are replayed again. A failed `ack` changes
//!   nothing.
//! - A segment leaves the queue (moved to `archive/`, or deleted with `archive: false`) only once
//!   every record in it is handled and the cursor saying so is on disk, and never while it is the
//!   newest one being appended to (except to make room, see Bounds).
//! - Memory: an index of 16 bytes per record in live segments; record contents stay on disk.
//! - One process per data directory (see [`crate::lock`]); changes take `&mut self`.
//!   [`Dlq::inspect`] and [`Dlq::list_sinks`] only read, and create nothing.

mod archive;
mod cursor;
mod events;
mod frame;
mod metrics;
mod queue;
mod record;
mod sink;

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::config::{ConfigError, join_path};

pub use self::metrics::METRICS;
pub use self::queue::{AppendOutcome, Dlq, DlqError, DlqStats};
pub use self::record::RecordId;
pub use self::record::{DlqEntry, DlqRecord};
pub use self::sink::{QueueDeadLetter, SinkDlq};

/// The current time as RFC 3339 with milliseconds, for [`DlqRecord::written_at`].
pub use crate::durable::now_rfc3339;

/// Directory under the data directory that holds every sink's queue.
pub const DLQ_DIR: &str = "dlq";

/// Directory inside a sink's queue that receives replayed segments.
pub const ARCHIVE_DIR: &str = "archive";

/// Name of the replay-progress file inside a sink's queue.
pub const CURSOR_FILE: &str = "cursor";

/// The cursor format version this code reads and writes.
pub const CURSOR_VERSION: u32 = 1;

/// What [`Dlq::append`] does when a record does not fit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DlqFullPolicy {
    /// Refuse with [`DlqError::Full`]; the caller keeps the batch unacknowledged (backpressure).
    #[default]
    Block,
    /// Drop the record, count it, return [`AppendOutcome::Dropped`].
    DropNewest,
}

/// Configuration of a sink's dead-letter queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DlqConfig {
    pub enabled: bool,
    /// Bytes on disk over all live segments (handled records included until their segment goes).
    pub max_bytes: u64,
    /// Entries over all unhandled records.
    pub max_entries: u64,
    /// Size at which the newest segment is closed and a new one started.
    pub segment_max_bytes: u64,
    pub when_full: DlqFullPolicy,
    /// `true`: replayed segments move to `archive/`; `false`: they are deleted.
    pub archive: bool,
    /// Bytes on disk of `archive/` (replayed segments and records refused for good); the
    /// oldest files are removed beyond it (refused entries removed are counted).
    pub archive_max_bytes: u64,
    /// Replays of an entry that is refused again each time before it is moved to the archive
    /// as refused for good (with Loki's last answer), instead of being queued once more.
    pub max_replays: u8,
    /// How often the caller replays the queue.
    #[serde(with = "crate::config::duration")]
    pub reprocess_interval: Duration,
    /// How many records the caller peeks per replay step.
    pub reprocess_batch_records: usize,
}

impl Default for DlqConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_bytes: 1 << 30,
            max_entries: 1_000_000,
            segment_max_bytes: 64 << 20,
            when_full: DlqFullPolicy::Block,
            archive: true,
            archive_max_bytes: 256 << 20,
            max_replays: 5,
            reprocess_interval: Duration::from_secs(30),
            reprocess_batch_records: 100,
        }
    }
}

impl DlqConfig {
    /// Every problem with the values, each named by its key under `prefix`.
    pub fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let counts = [
            ("max_bytes", self.max_bytes),
            ("max_entries", self.max_entries),
            ("segment_max_bytes", self.segment_max_bytes),
            ("archive_max_bytes", self.archive_max_bytes),
            ("max_replays", u64::from(self.max_replays)),
            (
                "reprocess_batch_records",
                u64::try_from(self.reprocess_batch_records).unwrap_or(u64::MAX),
            ),
        ];
        for (key, value) in counts {
            if value == 0 {
                errors.push(ConfigError::new(
                    join_path(prefix, key),
                    "must be greater than 0",
                ));
            }
        }
        if self.reprocess_interval.is_zero() {
            errors.push(
                ConfigError::new(
                    join_path(prefix, "reprocess_interval"),
                    "must be greater than 0",
                )
                .with_hint("for example 30s"),
            );
        }
        if self.max_bytes > 0 && self.segment_max_bytes > self.max_bytes {
            errors.push(
                ConfigError::new(
                    join_path(prefix, "segment_max_bytes"),
                    format!("must not exceed max_bytes ({})", self.max_bytes),
                )
                .with_hint(
                    "a segment is the unit that replay frees; keep several within max_bytes",
                ),
            );
        }
        errors
    }
}
