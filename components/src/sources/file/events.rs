//! What the file source tells operators: one type per event, each logging and counting it
//! together (see [`TelemetryEvent`]). Metric names are in [`super::metrics`]; every one
//! carries `component=<source>` and none a path (paths go to the log only).

use std::path::Path;
use std::time::Duration;

use opentelemetry::KeyValue;

use super::metrics;
use crate::telemetry::{ComponentAttrs, LogThrottle, TelemetryEvent};

/// A read from an open file failed; the file is read again on the next sweep. Rate-limited:
/// a failing disk fails every read.
pub(super) struct FileReadFailed<'a> {
    pub(super) component: &'a ComponentAttrs,
    pub(super) path: &'a Path,
    pub(super) error: &'a std::io::Error,
    pub(super) log: &'a mut LogThrottle,
}

impl TelemetryEvent for FileReadFailed<'_> {
    fn emit(self) {
        self.component.error("read_error");
        if let Some(held_back) = self.log.ready() {
            tracing::warn!(
                source = %self.component.key(),
                file = %self.path.display(),
                error = %self.error,
                failures_since_last_report = held_back,
                "Read failed; will retry (errors_total{{reason=\"read_error\"}} counts them all)."
            );
        }
    }
}

/// A new file found under the inode of one followed before: read from its beginning.
pub(super) struct InodeReused<'a> {
    pub(super) source: &'a str,
    pub(super) attrs: &'a [KeyValue],
    pub(super) path: &'a Path,
}

impl TelemetryEvent for InodeReused<'_> {
    fn emit(self) {
        metrics::FILES_INODE_REUSED.add(1, self.attrs);
        tracing::debug!(source = %self.source, file = %self.path.display(), "New file under a reused inode; reading it from the start.");
    }
}

/// A saved position does not match its file (truncated or replaced while stopped): the file
/// is read from its beginning.
pub(super) struct SavedPositionMismatch<'a> {
    pub(super) source: &'a str,
    pub(super) attrs: &'a [KeyValue],
    pub(super) path: &'a Path,
    pub(super) committed: u64,
    pub(super) size: u64,
    pub(super) head_ok: bool,
    pub(super) marker_ok: bool,
}

impl TelemetryEvent for SavedPositionMismatch<'_> {
    fn emit(self) {
        metrics::POSITION_VALIDATION_FAILURES.add(1, self.attrs);
        tracing::warn!(
            source = %self.source,
            file = %self.path.display(),
            committed = self.committed,
            size = self.size,
            head_ok = self.head_ok,
            marker_ok = self.marker_ok,
            "Saved position does not match the file (truncated or replaced); reading it from the start."
        );
    }
}

/// A file with a saved position is gone: what it held past the committed offset is lost.
pub(super) struct SavedFileGone<'a> {
    pub(super) source: &'a str,
    pub(super) attrs: &'a [KeyValue],
    pub(super) path: &'a Path,
    pub(super) committed: u64,
}

impl TelemetryEvent for SavedFileGone<'_> {
    fn emit(self) {
        metrics::POSITION_VALIDATION_FAILURES.add(1, self.attrs);
        tracing::warn!(
            source = %self.source,
            file = %self.path.display(),
            committed = self.committed,
            "A file with a saved position is gone; what it held after the committed offset cannot be read."
        );
    }
}

/// A followed file was renamed away or deleted: it is drained, then released.
pub(super) struct FileRotated<'a> {
    pub(super) source: &'a str,
    pub(super) attrs: &'a [KeyValue],
    pub(super) path: &'a Path,
}

impl TelemetryEvent for FileRotated<'_> {
    fn emit(self) {
        metrics::FILES_ROTATED.add(1, self.attrs);
        tracing::debug!(source = %self.source, file = %self.path.display(), "File rotated or deleted; draining it.");
    }
}

/// A followed file shrank below what was read, or its head changed: read again from 0.
pub(super) struct FileTruncated<'a> {
    pub(super) source: &'a str,
    pub(super) attrs: &'a [KeyValue],
    pub(super) path: &'a Path,
    pub(super) size: u64,
}

impl TelemetryEvent for FileTruncated<'_> {
    fn emit(self) {
        metrics::FILES_TRUNCATED.add(1, self.attrs);
        tracing::info!(source = %self.source, file = %self.path.display(), size = self.size, "File truncated or replaced in place; reading it again from the start.");
    }
}

/// A file older than `ignore_older` was skipped (read on if it grows).
pub(super) struct OldFileIgnored<'a> {
    pub(super) source: &'a str,
    pub(super) attrs: &'a [KeyValue],
    pub(super) path: &'a Path,
}

impl TelemetryEvent for OldFileIgnored<'_> {
    fn emit(self) {
        metrics::OLD_LOGS_IGNORED.add(1, self.attrs);
        tracing::info!(source = %self.source, file = %self.path.display(), "File older than ignore_older; skipped.");
    }
}

/// Why a file that could not be opened will not be tried again.
pub(super) enum GivenUp {
    /// The retry queue was full.
    QueueFull,
    /// `retry_max_attempts` attempts failed.
    Attempts(u32),
}

/// A file that matched could not be opened.
pub(super) struct FileOpenFailed<'a> {
    pub(super) source: &'a str,
    pub(super) attrs: &'a [KeyValue],
    pub(super) path: &'a Path,
    pub(super) error: &'a dyn std::fmt::Display,
    /// `None`: it will be tried again.
    pub(super) given_up: Option<GivenUp>,
}

impl TelemetryEvent for FileOpenFailed<'_> {
    fn emit(self) {
        let (source, file, error) = (self.source, self.path.display(), self.error);
        match self.given_up {
            None => {
                tracing::warn!(source = %source, file = %file, error = %error, "Cannot open file; will retry.");
            }
            Some(GivenUp::QueueFull) => {
                metrics::RETRY_DROPPED.add(1, self.attrs);
                tracing::error!(source = %source, file = %file, error = %error, "Retry queue full; file dropped (its lines are not read).");
            }
            Some(GivenUp::Attempts(attempts)) => {
                metrics::RETRY_DROPPED.add(1, self.attrs);
                tracing::error!(source = %source, file = %file, error = %error, attempts, "File given up after repeated open errors (its lines are not read).");
            }
        }
    }
}

/// The positions file could not be used at start and a checkpoint was: lines since that
/// checkpoint are read again.
pub(super) struct PositionsRestored<'a> {
    pub(super) source: &'a str,
    pub(super) attrs: &'a [KeyValue],
    pub(super) generation: usize,
    pub(super) reason: &'a dyn std::fmt::Display,
}

impl TelemetryEvent for PositionsRestored<'_> {
    fn emit(self) {
        metrics::POSITION_CORRUPTIONS.add(1, self.attrs);
        metrics::CHECKPOINT_RESTORES.add(1, self.attrs);
        tracing::warn!(
            source = %self.source,
            generation = self.generation,
            reason = %self.reason,
            "Positions file unusable; restored from a checkpoint. Lines since that checkpoint will be read again."
        );
    }
}

/// Neither the positions file nor any checkpoint could be used: the source starts without
/// positions.
pub(super) struct PositionsUnrecoverable<'a> {
    pub(super) source: &'a str,
    pub(super) attrs: &'a [KeyValue],
    pub(super) reasons: &'a [String],
}

impl TelemetryEvent for PositionsUnrecoverable<'_> {
    fn emit(self) {
        metrics::POSITION_CORRUPTIONS.add(1, self.attrs);
        tracing::error!(
            source = %self.source,
            reasons = %self.reasons.join("; "),
            "Positions file and every checkpoint are unusable; starting without positions (read_from applies)."
        );
    }
}

/// A positions save or checkpoint failed; it is retried, and acknowledged offsets are kept
/// in memory meanwhile. Rate-limited: a full disk fails every save.
pub(super) struct PositionSaveFailed<'a> {
    pub(super) source: &'a str,
    pub(super) attrs: &'a [KeyValue],
    /// "Position save" or "Positions checkpoint".
    pub(super) what: &'static str,
    pub(super) error: &'a dyn std::fmt::Display,
    /// `None`: a panic in the store task (a bug), always logged.
    pub(super) log: Option<&'a mut LogThrottle>,
}

impl TelemetryEvent for PositionSaveFailed<'_> {
    fn emit(self) {
        metrics::POSITION_SAVE_FAILURES.add(1, self.attrs);
        let (source, what, error) = (self.source, self.what, self.error);
        match self.log {
            None => tracing::error!(source = %source, error = %error, "{what} task panicked."),
            Some(log) => {
                if let Some(held_back) = log.ready() {
                    tracing::warn!(
                        source = %source,
                        error = %error,
                        failures_since_last_report = held_back,
                        "{what} failed; retrying (acknowledged offsets are kept in memory meanwhile)."
                    );
                }
            }
        }
    }
}

/// Positions could not be saved for too long: reading pauses until they can.
pub(super) struct PositionsBehind<'a> {
    pub(super) source: &'a str,
    pub(super) attrs: &'a [KeyValue],
    pub(super) lag: Duration,
}

impl TelemetryEvent for PositionsBehind<'_> {
    fn emit(self) {
        metrics::POSITION_BACKPRESSURE.record(1, self.attrs);
        tracing::error!(
            source = %self.source,
            lag = ?self.lag,
            "Positions cannot be saved; reading is paused until they can."
        );
    }
}
