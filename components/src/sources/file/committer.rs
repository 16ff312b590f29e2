//! The committer: applies the source's acknowledgements in order and saves positions.
//!
//! Guarantees:
//! - A file's committed offset moves only to the end of a batch that every sink acknowledged
//!   as handled, and only when every earlier batch of the source was too (an
//!   [`OrderedFinalizer`]); an `Errored` batch freezes its file's committed offset for the
//!   rest of the run.
//! - Positions are saved once when the start-up scan has found the files (their start offsets
//!   and the time they were seen survive a crash before any line is read), at most
//!   `flush_interval` after an offset was committed or the reader started following a file
//!   (acknowledged or not: a file rotated out of the globs is found again only through them),
//!   and always at shutdown; checkpoints every `checkpoint_interval`. A failing save is retried, logged
//!   once and then at most every 30 s, and once more when saves succeed again.
//! - When positions cannot be saved for longer than `max(10 * flush_interval, 10s)`, reading
//!   pauses (`position_backpressure` = 1).
//! - A save or checkpoint that panics (a bug) is raised in the committer's task, which the source
//!   raises again: the shipper stops with an error naming the source, and a restart reads again
//!   what the saved positions do not cover.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use opentelemetry::KeyValue;
use tokio::sync::mpsc;

use super::events::{PositionSaveFailed, PositionsBehind};
use super::positions::{FilePosition, PositionStore};
use super::{AckToken, Shared, metrics, now_rfc3339};
use crate::ack::{BatchStatus, BatchStatusReceiver, OrderedFinalizer};
use crate::shutdown::ShutdownSignal;
use crate::telemetry::{LogThrottle, TelemetryEvent};

/// Applies acknowledgements in order and saves positions.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_committer(
    source: String,
    mut store: PositionStore,
    shared: Arc<Shared>,
    mut registrations: mpsc::UnboundedReceiver<(Vec<AckToken>, BatchStatusReceiver)>,
    flush_interval: Duration,
    checkpoint_interval: Duration,
    mut shutdown: ShutdownSignal,
) {
    let attrs: [KeyValue; 1] = [KeyValue::new("component", source.clone())];
    let mut finalizer: OrderedFinalizer<Vec<AckToken>> = OrderedFinalizer::new();
    let mut registering = true;
    let mut unsaved_since: Option<Instant> = None;
    let mut last_save = Instant::now();
    // The files found at start are saved once even before a line of them is read: their
    // offsets (`read_from: end`) and the time they were seen must survive a crash.
    let mut saved_once = false;
    let mut last_checkpoint = Instant::now();
    let behind_after = (flush_interval * 10).max(Duration::from_secs(10));
    let mut ticker = tokio::time::interval(flush_interval.min(Duration::from_millis(250)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutting_down = false;
    let mut failures = SaveFailures {
        log: LogThrottle::new(SAVE_FAILURE_LOG_EVERY),
        failing: false,
    };
    metrics::POSITION_BACKPRESSURE.record(0, &attrs);
    let mut last_lag_report: Option<Instant> = None;
    // Kept in memory: asking the file system for the checkpoint's age on every acknowledgement
    // was a stat call per batch.
    let mut checkpoint_written: Option<Instant> = store
        .checkpoint_age()
        .and_then(|age| Instant::now().checked_sub(age));

    loop {
        tokio::select! {
            registration = registrations.recv(), if registering => match registration {
                Some((tokens, receiver)) => finalizer.add(tokens, receiver),
                None => registering = false,
            },
            Some((tokens, status)) = finalizer.next(), if !finalizer.is_empty() => {
                commit(&shared, &source, &tokens, status);
                crate::fault::point("file_committer", &source);
                unsaved_since.get_or_insert_with(Instant::now);
            }
            _ = ticker.tick() => {
                if shutting_down {
                    tracing::debug!(source = %source, pending = finalizer.len(), registering, "Committer waiting for acknowledgements.");
                }
            }
            () = shutdown.wait(), if !shutting_down => {
                shutting_down = true;
            }
        }
        if shutting_down && finalizer.is_empty() {
            // The reader follows files until then (see `Shared::settled`).
            shared.settled.store(true, Ordering::Release);
        }
        let finished = !registering && finalizer.is_empty();
        // A file newly followed is saved too, acknowledged or not (see `Shared::files_changed`).
        let files_changed = shared.files_changed.load(Ordering::Acquire);
        let due =
            (unsaved_since.is_some() || files_changed) && last_save.elapsed() >= flush_interval;
        let first_after_scan = !saved_once && shared.scanned.load(Ordering::Acquire);
        if due || first_after_scan || (shutting_down && unsaved_since.is_some()) || finished {
            let (returned, saved) = save(store, &shared, &source, &attrs, &mut failures).await;
            if first_after_scan {
                // Tried once; a failure is retried like any unsaved change.
                saved_once = true;
                if !saved {
                    unsaved_since.get_or_insert_with(Instant::now);
                }
            }
            // Without a store the runtime is going away: nothing more can be saved.
            let Some(kept) = returned else { return };
            store = kept;
            if saved {
                unsaved_since = None;
                last_save = Instant::now();
                shared.saves_behind.store(false, Ordering::Release);
                metrics::POSITION_BACKPRESSURE.record(0, &attrs);
            }
        }
        if let Some(since) = unsaved_since {
            let lag = since.elapsed();
            metrics::POSITION_SAVE_LAG.record(lag.as_secs_f64(), &attrs);
            if lag > behind_after && !shared.saves_behind.swap(true, Ordering::AcqRel) {
                PositionsBehind {
                    source: &source,
                    attrs: &attrs,
                    lag,
                }
                .emit();
            }
        } else {
            metrics::POSITION_SAVE_LAG.record(0.0, &attrs);
        }
        if last_checkpoint.elapsed() >= checkpoint_interval || finished {
            let (returned, ok) = checkpoint(store, &source, &attrs, &mut failures).await;
            let Some(kept) = returned else { return };
            store = kept;
            if ok {
                last_checkpoint = Instant::now();
                checkpoint_written = Some(last_checkpoint);
            }
        }
        // The table walk is O(files); once a second is enough for gauges scraped every 15 s.
        if last_lag_report.is_none_or(|at| at.elapsed() >= LAG_REPORT_EVERY) {
            if let Some(written) = checkpoint_written {
                metrics::CHECKPOINT_AGE.record(written.elapsed().as_secs_f64(), &attrs);
            }
            report_lag(&shared, &attrs);
            last_lag_report = Some(Instant::now());
        }
        if finished {
            tracing::debug!(source = %source, "Positions committer finished.");
            return;
        }
    }
}

/// How often the positions lag and frozen files are measured.
const LAG_REPORT_EVERY: Duration = Duration::from_secs(1);

/// Bytes read but not yet committed (every sink's acknowledgement outstanding), and files
/// whose committed offset is frozen by an undelivered batch until a restart.
fn report_lag(shared: &Shared, attrs: &[KeyValue]) {
    let (lag, frozen) = shared.with_table(|table| {
        table.values().fold((0u64, 0u64), |(lag, frozen), e| {
            let behind = e
                .position
                .read_offset
                .saturating_sub(e.position.committed_offset);
            (lag.saturating_add(behind), frozen + u64::from(e.frozen))
        })
    });
    metrics::POSITIONS_LAG_BYTES.record_count(lag, attrs);
    metrics::FILES_FROZEN.record_count(frozen, attrs);
}

/// Moves the committed offsets of one batch's reads (one table lock for all of them).
fn commit(shared: &Shared, source: &str, tokens: &[AckToken], status: BatchStatus) {
    // One clock read and formatting per batch, not per file in it.
    let mut updated_at: Option<String> = None;
    shared.with_table(|table| {
        for token in tokens {
            let Some(entry) = table.get_mut(&token.key) else {
                continue;
            };
            if entry.epoch != token.epoch || entry.frozen {
                continue;
            }
            if !status.is_handled() {
                entry.frozen = true;
                tracing::warn!(
                    source = %source,
                    file = %entry.position.path.display(),
                    offset = entry.position.committed_offset,
                    "A batch of this file was not delivered; its committed offset stays here until a restart reads it again."
                );
                continue;
            }
            if token.end > entry.position.committed_offset {
                entry.position.committed_offset = token.end;
                entry.position.marker = token.marker;
                entry.position.marker_len = token.marker_len;
                entry.position.updated_at = updated_at.get_or_insert_with(now_rfc3339).clone();
            }
        }
    });
}

/// How often a positions write that keeps failing is logged.
const SAVE_FAILURE_LOG_EVERY: Duration = Duration::from_secs(30);

/// Failed positions writes, for logging them without a flood.
struct SaveFailures {
    log: LogThrottle,
    failing: bool,
}

impl SaveFailures {
    fn failed(
        &mut self,
        source: &str,
        attrs: &[KeyValue],
        what: &'static str,
        error: &dyn std::fmt::Display,
    ) {
        self.failing = true;
        PositionSaveFailed {
            source,
            attrs,
            what,
            error,
            log: Some(&mut self.log),
        }
        .emit();
    }

    fn succeeded(&mut self, source: &str) {
        if std::mem::take(&mut self.failing) {
            tracing::info!(source = %source, "Positions saved again.");
            self.log.reset();
        }
    }
}

async fn save(
    mut store: PositionStore,
    shared: &Shared,
    source: &str,
    attrs: &[KeyValue; 1],
    failures: &mut SaveFailures,
) -> (Option<PositionStore>, bool) {
    let (files, files_changed): (Vec<FilePosition>, bool) = shared.with_table(|table| {
        let files_changed = shared.files_changed.swap(false, Ordering::AcqRel);
        // A released file leaves the table once all it read is committed. A frozen one stays,
        // so that a restart finds it and reads again what was not delivered.
        table.retain(|_, e| {
            !(e.released && !e.frozen && e.position.committed_offset >= e.position.read_offset)
        });
        let mut files: Vec<FilePosition> = table.values().map(|e| e.position.clone()).collect();
        files.sort_by(|a, b| a.path.cmp(&b.path).then(a.inode.cmp(&b.inode)));
        (files, files_changed)
    });
    let started = Instant::now();
    // A panic inside the store (a bug) is raised here, in the committer's task: the source
    // raises it again and the shipper stops with an error (see `crate::sources::producer`).
    let fault_name = source.to_string();
    let result = crate::blocking::run(move || {
        crate::fault::point("file_positions_save", &fault_name);
        let result = store.save(&files);
        (store, result)
    })
    .await;
    match result {
        Ok((store, Ok(()))) => {
            metrics::POSITION_SAVES.add(1, attrs);
            metrics::POSITION_SAVE_DURATION.record(started.elapsed().as_secs_f64(), attrs);
            failures.succeeded(source);
            (Some(store), true)
        }
        Ok((store, Err(err))) => {
            if files_changed {
                // Not saved: the next save must still include them.
                shared.files_changed.store(true, Ordering::Release);
            }
            failures.failed(source, attrs, "Position save", &err);
            (Some(store), false)
        }
        Err(crate::blocking::Cancelled) => {
            // The runtime is going away (the end of a shutdown): the last save already ran or
            // was never due.
            tracing::debug!(source = %source, "Position save cancelled at exit.");
            (None, false)
        }
    }
}

async fn checkpoint(
    mut store: PositionStore,
    source: &str,
    attrs: &[KeyValue; 1],
    failures: &mut SaveFailures,
) -> (Option<PositionStore>, bool) {
    let result = crate::blocking::run(move || {
        let result = store.checkpoint();
        (store, result)
    })
    .await;
    match result {
        Ok((store, Ok(()))) => (Some(store), true),
        Ok((store, Err(err))) => {
            // No positions file yet (nothing committed) is not a failure.
            if err.kind() != std::io::ErrorKind::NotFound {
                failures.failed(source, attrs, "Positions checkpoint", &err);
            }
            (Some(store), false)
        }
        Err(crate::blocking::Cancelled) => {
            tracing::debug!(source = %source, "Positions checkpoint cancelled at exit.");
            (None, false)
        }
    }
}
