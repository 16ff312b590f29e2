//! The `file` source: follows files matched by globs, at-least-once.
//!
//! Two parts run per source:
//! - the reader ([`reader`]), on a thread of its own because file I/O blocks: discovery (notify
//!   events plus a periodic rescan), reading, line splitting, rotation and truncation handling.
//!   It emits one batch per read, each with a [`BatchNotifier`](crate::ack::BatchNotifier)
//!   and an [`AckToken`] naming the file and the offset just past the batch's last line;
//! - the committer ([`run_committer`]), a task that consumes those tokens in order through an
//!   [`OrderedFinalizer`] and saves positions.
//!
//! Guarantees:
//! - A file's committed offset moves only to the end of a batch that every sink acknowledged as
//!   handled, and only when every earlier batch of the source was too. A batch that was not
//!   delivered nor kept durably (`Errored`: no dead-letter queue, or one that could not take it
//!   before shutdown, or a batch lost when a shutdown timed out) freezes that file's committed
//!   offset for the rest of the run, so a restart reads it again: lines are duplicated, never
//!   lost. A dead-letter queue that cannot be written for a while does not freeze anything:
//!   its writes are retried until they succeed (with backpressure), then the offset moves on.
//! - A failing save or checkpoint is logged once, then at most every 30 s while it keeps
//!   failing (with the count of failures in between), and once more when saves succeed again.
//! - Positions are saved atomically (see [`positions`]) at most `flush_interval` after an offset
//!   was committed, and always at shutdown; checkpoints of them every `checkpoint_interval`.
//!   After `kill -9`, a restart resumes from the last saved committed offsets: what was
//!   delivered since the last save is delivered again (at most one flush window).
//! - When positions cannot be saved for longer than `max(10 * flush_interval, 10s)`, reading
//!   pauses (`position_backpressure` = 1) rather than widen the window of redelivery.

mod discovery;
mod fingerprint;
pub mod lines;
pub mod metrics;
mod open_retry;
mod outbox;
pub mod positions;
mod reader;
mod rotation;
mod tail;
mod watcher;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use opentelemetry::KeyValue;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use self::lines::{InvalidUtf8, Oversize};
use self::positions::{FileKey, FilePosition, LoadOutcome, PositionStore};
use crate::ack::{BatchStatus, BatchStatusReceiver, OrderedFinalizer};
use crate::config::{
    ConfigError, ConfigWarning, duration, duration_opt, join_path, label_name_errors,
};
use crate::shutdown::ShutdownSignal;
use crate::telemetry::LogThrottle;
use crate::{BuildError, EventStream, SourceContext};

/// Where to start in a file that has no saved position and exists when the source starts.
/// Files that appear later are always read from their beginning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    #[default]
    Beginning,
    End,
}

/// Configuration of the `file` source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileSourceConfig {
    /// Glob patterns of files to follow (`*`, `?`, `[...]`, and `**` for any depth). Required.
    pub include: Vec<String>,
    /// Glob patterns of files to leave out, even when included.
    pub exclude: Vec<String>,
    /// `beginning` or `end`: where to start in files present at start-up without a position.
    pub read_from: ReadFrom,
    /// Skip files last modified longer ago than this (counted in `old_logs_ignored_total`).
    /// A skipped file that is written to again is followed from where it was then.
    #[serde(with = "duration_opt")]
    pub ignore_older: Option<Duration>,
    /// Longest line; longer ones follow `oversize`.
    pub max_line_bytes: usize,
    /// `truncate` (keep the first max_line_bytes) or `drop`.
    pub oversize: Oversize,
    /// `keep` (pass the bytes on) or `replace` (U+FFFD) for lines that are not valid UTF-8.
    pub invalid_utf8: InvalidUtf8,
    /// A last line without a newline is emitted after the file is idle this long (or rotated).
    #[serde(with = "duration")]
    pub eof_timeout: Duration,
    /// How long a rotated or deleted file is still read after it stops growing, before release.
    #[serde(with = "duration")]
    pub rotate_wait: Duration,
    /// Most files open at once; idle files beyond it are closed and reopened when they grow.
    pub max_open_files: usize,
    /// Full rescan of the globs (notify events find most files sooner).
    #[serde(with = "duration")]
    pub scan_interval: Duration,
    /// Check of every followed file for growth, rotation and truncation (notify events wake
    /// the reader sooner).
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    /// After an idle spell, how long the reader lets new data accumulate before reading it: fewer,
    /// larger batches for files written line by line, for at most this much added latency.
    /// 0 reads at once.
    #[serde(with = "duration")]
    pub coalesce_interval: Duration,
    /// Bytes read from a file at once; also the most bytes in one emitted batch.
    pub read_buffer_bytes: usize,
    /// Stream labels on every line.
    pub labels: BTreeMap<String, String>,
    /// Files waiting to be retried after an open error (permissions, vanished); more are dropped
    /// and counted in `retry_dropped_total`.
    pub retry_queue_size: usize,
    /// Open attempts per file before it is given up (counted in `retry_dropped_total`).
    pub retry_max_attempts: u32,
    /// Longest time between a committed offset and its save.
    #[serde(with = "duration")]
    pub flush_interval: Duration,
    /// Time between checkpoints of the positions document (three generations are kept).
    #[serde(with = "duration")]
    pub checkpoint_interval: Duration,
}

impl Default for FileSourceConfig {
    fn default() -> Self {
        Self {
            include: Vec::new(),
            exclude: Vec::new(),
            read_from: ReadFrom::Beginning,
            ignore_older: None,
            max_line_bytes: 256_000,
            oversize: Oversize::Truncate,
            invalid_utf8: InvalidUtf8::Keep,
            eof_timeout: Duration::from_secs(5),
            rotate_wait: Duration::from_secs(5),
            max_open_files: 512,
            scan_interval: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            coalesce_interval: Duration::from_millis(20),
            read_buffer_bytes: 256 * 1024,
            labels: BTreeMap::new(),
            retry_queue_size: 50,
            retry_max_attempts: 5,
            flush_interval: Duration::from_secs(1),
            checkpoint_interval: Duration::from_secs(60),
        }
    }
}

impl FileSourceConfig {
    pub fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.include.is_empty() {
            errors.push(
                ConfigError::new(join_path(prefix, "include"), "must list at least one glob")
                    .with_hint("e.g. include: [\"/var/log/*.log\"]"),
            );
        }
        for (key, patterns) in [("include", &self.include), ("exclude", &self.exclude)] {
            for pattern in patterns {
                if let Err(err) = glob::Pattern::new(pattern) {
                    errors.push(ConfigError::new(
                        join_path(prefix, key),
                        format!("invalid glob {pattern:?}: {err}"),
                    ));
                } else if key == "include" && !Path::new(pattern).is_absolute() {
                    errors.push(
                        ConfigError::new(
                            join_path(prefix, key),
                            format!("{pattern:?} is not an absolute path"),
                        )
                        .with_hint("start the pattern with /"),
                    );
                }
            }
        }
        let mut positive = |key: &str, value: usize| {
            if value == 0 {
                errors.push(ConfigError::new(
                    join_path(prefix, key),
                    "must be at least 1",
                ));
            }
        };
        positive("max_line_bytes", self.max_line_bytes);
        positive("max_open_files", self.max_open_files);
        positive("read_buffer_bytes", self.read_buffer_bytes);
        if self.coalesce_interval > Duration::from_secs(1) {
            errors.push(
                ConfigError::new(
                    join_path(prefix, "coalesce_interval"),
                    "must be at most 1s (it delays every line read after an idle spell)",
                )
                .with_hint("20ms is the default; 0 reads new data at once"),
            );
        }
        for (key, value) in [
            ("poll_interval", self.poll_interval),
            ("scan_interval", self.scan_interval),
            ("flush_interval", self.flush_interval),
            ("checkpoint_interval", self.checkpoint_interval),
        ] {
            if value.is_zero() {
                errors.push(ConfigError::new(
                    join_path(prefix, key),
                    "must be longer than 0s",
                ));
            }
        }
        errors.extend(label_name_errors(prefix, self.labels.keys()));
        errors
    }

    /// Problems that do not stop the start: an `include` pattern whose fixed directory (the part
    /// before the first `*`, `?` or `[`) does not exist, so nothing can match it until it does.
    pub fn warnings(&self, prefix: &str) -> Vec<ConfigWarning> {
        let mut warnings = Vec::new();
        for pattern in &self.include {
            let Some(dir) = fixed_directory(pattern) else {
                continue;
            };
            if !dir.is_dir() {
                let what = if dir.exists() {
                    "is not a directory"
                } else {
                    "does not exist"
                };
                warnings.push(
                    ConfigWarning::new(
                        join_path(prefix, "include"),
                        format!(
                            "{} {what}: nothing matches {pattern:?} until it does",
                            dir.display()
                        ),
                    )
                    .with_hint("check the path; files are picked up once it exists"),
                );
            }
        }
        warnings
    }
}

/// The directory of an absolute glob before its first component with a wildcard; `None` for a
/// relative pattern (an error of its own).
fn fixed_directory(pattern: &str) -> Option<std::path::PathBuf> {
    let path = Path::new(pattern);
    if !path.is_absolute() {
        return None;
    }
    let mut dir = std::path::PathBuf::new();
    let mut components = path.components().peekable();
    while let Some(component) = components.next() {
        let text = component.as_os_str().to_string_lossy();
        // The last component names files, not a directory.
        if text.contains(['*', '?', '[']) || components.peek().is_none() {
            break;
        }
        dir.push(component);
    }
    Some(dir)
}

impl FileSourceConfig {
    /// Loads the source's positions, starts the reader thread and the committer task.
    /// Must be called inside a tokio runtime.
    pub fn build(&self, cx: SourceContext) -> Result<EventStream, BuildError> {
        let fail = |message: String| BuildError {
            component: cx.key.to_string(),
            message,
        };
        let attrs = metrics::attrs(&cx.key);
        let mut store = PositionStore::open(&cx.data_dir, &cx.key).map_err(|err| {
            fail(format!(
                "cannot open the positions directory under {}: {err}",
                cx.data_dir.display()
            ))
        })?;
        let saved = match store.load() {
            LoadOutcome::Fresh => Vec::new(),
            LoadOutcome::Loaded(document) => document.files,
            LoadOutcome::Restored {
                generation,
                document,
                reason,
            } => {
                metrics::POSITION_CORRUPTIONS.add(1, &attrs);
                metrics::CHECKPOINT_RESTORES.add(1, &attrs);
                tracing::warn!(
                    source = %cx.key,
                    generation,
                    reason = %reason,
                    "Positions file unusable; restored from a checkpoint. Lines since that checkpoint will be read again."
                );
                document.files
            }
            LoadOutcome::Unrecoverable { reasons } => {
                metrics::POSITION_CORRUPTIONS.add(1, &attrs);
                tracing::error!(
                    source = %cx.key,
                    reasons = %reasons.join("; "),
                    "Positions file and every checkpoint are unusable; starting without positions (read_from applies)."
                );
                Vec::new()
            }
        };
        let resume: BTreeMap<FileKey, FilePosition> =
            saved.into_iter().map(|p| (p.key(), p)).collect();
        let shared = Arc::new(Shared {
            table: Mutex::new(
                resume
                    .iter()
                    .map(|(key, pos)| {
                        (
                            *key,
                            Entry {
                                position: pos.clone(),
                                epoch: 0,
                                released: false,
                                frozen: false,
                            },
                        )
                    })
                    .collect(),
            ),
            saves_behind: AtomicBool::new(false),
        });

        let (batches_tx, mut batches_rx) = mpsc::channel(4);
        let (acks_tx, acks_rx) = mpsc::unbounded_channel();
        let reader = reader::Reader::new(
            Arc::new(self.clone()),
            cx.key.clone(),
            cx.shutdown.clone(),
            batches_tx,
            acks_tx,
            shared.clone(),
            resume,
        )
        .map_err(fail)?;
        std::thread::Builder::new()
            .name(format!("file-source-{}", cx.key))
            .spawn(move || reader.run())
            .map_err(|err| fail(format!("cannot start the reader thread: {err}")))?;
        let committer = tokio::spawn(run_committer(
            cx.key.to_string(),
            cx.data_dir.clone(),
            store,
            shared,
            acks_rx,
            self.flush_interval,
            self.checkpoint_interval,
            cx.shutdown,
        ));
        // The stream ends only after the committer has saved the final positions, so shutdown
        // waits for them.
        let batches = futures::stream::poll_fn(move |cx| batches_rx.poll_recv(cx));
        let done = futures::stream::once(async move {
            let _ = committer.await;
        })
        .filter_map(|()| std::future::ready(None));
        Ok(Box::pin(batches.chain(done)))
    }
}

/// What the committer needs to know about a batch: whose offset it moves, and to where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckToken {
    pub key: FileKey,
    /// Incremented when a file is read again from 0 (truncation): older tokens no longer apply.
    pub epoch: u64,
    /// The offset just past the batch's last line.
    pub end: u64,
    /// xxh3 of the `marker_len` bytes before `end`.
    pub marker: u64,
    pub marker_len: u32,
}

/// One file's entry in the shared position table.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub position: FilePosition,
    pub epoch: u64,
    /// The reader is done with the file; the entry goes once everything read is committed.
    pub released: bool,
    /// A batch of this file failed for good: its committed offset stays where it is.
    pub frozen: bool,
}

/// State shared by the reader thread and the committer.
pub(crate) struct Shared {
    pub table: Mutex<HashMap<FileKey, Entry>>,
    /// Set by the committer when saves fall behind; the reader pauses while it is set.
    pub saves_behind: AtomicBool,
}

impl Shared {
    pub fn with_table<T>(&self, f: impl FnOnce(&mut HashMap<FileKey, Entry>) -> T) -> T {
        match self.table.lock() {
            Ok(mut table) => f(&mut table),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Applies acknowledgements in order and saves positions.
#[allow(clippy::too_many_arguments)]
async fn run_committer(
    source: String,
    data_dir: std::path::PathBuf,
    mut store: PositionStore,
    shared: Arc<Shared>,
    mut registrations: mpsc::UnboundedReceiver<(AckToken, BatchStatusReceiver)>,
    flush_interval: Duration,
    checkpoint_interval: Duration,
    mut shutdown: ShutdownSignal,
) {
    let attrs: [KeyValue; 1] = [KeyValue::new("component", source.clone())];
    let mut finalizer: OrderedFinalizer<AckToken> = OrderedFinalizer::new();
    let mut registering = true;
    let mut unsaved_since: Option<Instant> = None;
    let mut last_save = Instant::now();
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

    loop {
        tokio::select! {
            registration = registrations.recv(), if registering => match registration {
                Some((token, receiver)) => finalizer.add(token, receiver),
                None => registering = false,
            },
            Some((token, status)) = finalizer.next(), if !finalizer.is_empty() => {
                commit(&shared, &source, token, status);
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
        let finished = !registering && finalizer.is_empty();
        let due = unsaved_since.is_some() && last_save.elapsed() >= flush_interval;
        if due || (shutting_down && unsaved_since.is_some()) || finished {
            let (returned, saved) = save(store, &shared, &source, &attrs, &mut failures).await;
            let Some(kept) = keep_store(returned, &data_dir, &source, &shared, &attrs) else {
                return;
            };
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
                metrics::POSITION_BACKPRESSURE.record(1, &attrs);
                tracing::error!(
                    source = %source,
                    lag = ?lag,
                    "Positions cannot be saved; reading is paused until they can."
                );
            }
        } else {
            metrics::POSITION_SAVE_LAG.record(0.0, &attrs);
        }
        if last_checkpoint.elapsed() >= checkpoint_interval || finished {
            let (returned, ok) = checkpoint(store, &source, &attrs, &mut failures).await;
            let Some(kept) = keep_store(returned, &data_dir, &source, &shared, &attrs) else {
                return;
            };
            store = kept;
            if ok {
                last_checkpoint = Instant::now();
            }
        }
        if let Some(age) = store.checkpoint_age() {
            metrics::CHECKPOINT_AGE.record(age.as_secs_f64(), &attrs);
        }
        if finished {
            tracing::debug!(source = %source, "Positions committer finished.");
            return;
        }
    }
}

fn commit(shared: &Shared, source: &str, token: AckToken, status: BatchStatus) {
    shared.with_table(|table| {
        let Some(entry) = table.get_mut(&token.key) else {
            return;
        };
        if entry.epoch != token.epoch || entry.frozen {
            return;
        }
        if !status.is_handled() {
            entry.frozen = true;
            tracing::warn!(
                source = %source,
                file = %entry.position.path.display(),
                offset = entry.position.committed_offset,
                "A batch of this file was not delivered; its committed offset stays here until a restart reads it again."
            );
            return;
        }
        if token.end > entry.position.committed_offset {
            entry.position.committed_offset = token.end;
            entry.position.marker = token.marker;
            entry.position.marker_len = token.marker_len;
            entry.position.updated_at = now_rfc3339();
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
    fn failed(&mut self, source: &str, what: &'static str, error: &dyn std::fmt::Display) {
        self.failing = true;
        if let Some(held_back) = self.log.ready() {
            tracing::warn!(
                source = %source,
                error = %error,
                failures_since_last_report = held_back,
                "{what} failed; retrying (acknowledged offsets are kept in memory meanwhile)."
            );
        }
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
    let files: Vec<FilePosition> = shared.with_table(|table| {
        // A released file leaves the table once all it read is committed. A frozen one stays,
        // so that a restart finds it and reads again what was not delivered.
        table.retain(|_, e| {
            !(e.released && !e.frozen && e.position.committed_offset >= e.position.read_offset)
        });
        let mut files: Vec<FilePosition> = table.values().map(|e| e.position.clone()).collect();
        files.sort_by(|a, b| a.path.cmp(&b.path).then(a.inode.cmp(&b.inode)));
        files
    });
    let started = Instant::now();
    let result = tokio::task::spawn_blocking(move || {
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
            metrics::POSITION_SAVE_FAILURES.add(1, attrs);
            failures.failed(source, "Position save", &err);
            (Some(store), false)
        }
        Err(join) if join.is_cancelled() => {
            // The runtime is going away (the end of a shutdown): the last save already ran or
            // was never due.
            tracing::debug!(source = %source, "Position save cancelled at exit.");
            (None, false)
        }
        Err(join) => {
            metrics::POSITION_SAVE_FAILURES.add(1, attrs);
            tracing::error!(source = %source, error = %join, "Position save task panicked.");
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
    let result = tokio::task::spawn_blocking(move || {
        let result = store.checkpoint();
        (store, result)
    })
    .await;
    match result {
        Ok((store, Ok(()))) => (Some(store), true),
        Ok((store, Err(err))) => {
            // No positions file yet (nothing committed) is not a failure.
            if err.kind() != std::io::ErrorKind::NotFound {
                metrics::POSITION_SAVE_FAILURES.add(1, attrs);
                failures.failed(source, "Positions checkpoint", &err);
            }
            (Some(store), false)
        }
        Err(join) if join.is_cancelled() => {
            tracing::debug!(source = %source, "Positions checkpoint cancelled at exit.");
            (None, false)
        }
        Err(join) => {
            metrics::POSITION_SAVE_FAILURES.add(1, attrs);
            tracing::error!(source = %source, error = %join, "Positions checkpoint task panicked.");
            (None, false)
        }
    }
}

/// The store handed back by a save or checkpoint, or, after a panic inside the store (a bug), a
/// fresh handle on the same directory. Without either, reading stays paused for good
/// (`position_backpressure` = 1): nothing read could be committed any more.
fn keep_store(
    returned: Option<PositionStore>,
    data_dir: &Path,
    source: &str,
    shared: &Shared,
    attrs: &[KeyValue; 1],
) -> Option<PositionStore> {
    let store = returned.or_else(|| match PositionStore::open(data_dir, source) {
        Ok(store) => Some(store),
        Err(err) => {
            tracing::error!(source = %source, error = %err, "Cannot reopen the positions store.");
            None
        }
    });
    if store.is_none() {
        shared.saves_behind.store(true, Ordering::Release);
        metrics::POSITION_BACKPRESSURE.record(1, attrs);
    }
    store
}

impl crate::component::Component for FileSourceConfig {
    const TYPE: &'static str = "file";
    const METRICS: &'static [&'static crate::telemetry::MetricDef] = metrics::METRICS;

    fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        FileSourceConfig::validate(self, prefix)
    }

    fn warnings(&self, prefix: &str) -> Vec<ConfigWarning> {
        FileSourceConfig::warnings(self, prefix)
    }
}

impl crate::component::SourceComponent for FileSourceConfig {
    fn build(&self, cx: SourceContext) -> Result<EventStream, BuildError> {
        FileSourceConfig::build(self, cx)
    }

    fn static_labels(&self) -> BTreeMap<String, String> {
        self.labels.clone()
    }

    fn sets_file(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(include: &[&str]) -> FileSourceConfig {
        FileSourceConfig {
            include: include.iter().map(|p| p.to_string()).collect(),
            ..FileSourceConfig::default()
        }
    }

    #[test]
    fn missing_include_directory_is_a_warning_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let present = format!("{}/*.log", dir.path().display());
        let absent = format!("{}/nope/**/*.log", dir.path().display());
        let source = config(&[&present, &absent]);
        assert!(source.validate("sources.app").is_empty());
        let warnings = source.warnings("sources.app");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].path, "sources.app.include");
        assert!(
            warnings[0]
                .message
                .starts_with(&format!("{}/nope does not exist", dir.path().display())),
            "{}",
            warnings[0]
        );
        assert_eq!(fixed_directory("/var/log/app.log"), Some("/var/log".into()));
        assert_eq!(fixed_directory("/var/*/x/*.log"), Some("/var".into()));
    }

    #[test]
    fn label_names_follow_lokis_rule() {
        let mut source = config(&["/var/log/*.log"]);
        source.labels = BTreeMap::from([("app-name".to_string(), "x".to_string())]);
        let errors = source.validate("sources.app");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "sources.app.labels.app-name");
    }
}
