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

mod committer;
mod discovery;
mod events;
mod fingerprint;
pub mod lines;
pub mod metrics;
mod open_retry;
mod outbox;
/// The positions store, shared with the docker source (kept here for its old path).
pub use crate::positions;
mod reader;
mod rotation;
mod tail;
mod watcher;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use self::lines::{InvalidUtf8, Oversize};
use self::positions::{FileKey, FilePosition, LoadOutcome, PositionStore};
use crate::config::{
    ConfigError, ConfigWarning, duration, duration_opt, join_path, label_name_errors,
};
use crate::sources::producer;
use crate::telemetry::TelemetryEvent;
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
        // When the positions were last saved: a file born after it appeared while nobody
        // watched, and is read from its beginning whatever `read_from` says.
        let mut saved_at_ns = None;
        let saved = match store.load() {
            LoadOutcome::Fresh => Vec::new(),
            LoadOutcome::Loaded(document) => {
                saved_at_ns = Some(document.saved_at_ns());
                document.files
            }
            LoadOutcome::Restored {
                generation,
                document,
                reason,
            } => {
                events::PositionsRestored {
                    source: &cx.key,
                    attrs: &attrs,
                    generation,
                    reason: &reason,
                }
                .emit();
                saved_at_ns = Some(document.saved_at_ns());
                document.files
            }
            LoadOutcome::Unrecoverable { reasons } => {
                events::PositionsUnrecoverable {
                    source: &cx.key,
                    attrs: &attrs,
                    reasons: &reasons,
                }
                .emit();
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
            scanned: AtomicBool::new(false),
            files_changed: AtomicBool::new(false),
            settled: AtomicBool::new(false),
        });

        let (batches_tx, batches_rx) = mpsc::channel(4);
        let (acks_tx, acks_rx) = mpsc::unbounded_channel();
        let outbox = outbox::Outbox::new(
            batches_tx,
            acks_tx,
            self.read_buffer_bytes,
            tokio::runtime::Handle::current(),
        );
        let reader = reader::Reader::new(
            Arc::new(self.clone()),
            cx.key.clone(),
            cx.shutdown.clone(),
            outbox,
            shared.clone(),
            reader::SavedPositions {
                positions: resume,
                saved_at_ns,
            },
        )
        .map_err(fail)?;
        let (reports, panics) = producer::panic_reports();
        let (reader_end, reader_ended) = tokio::sync::oneshot::channel();
        let source_name = cx.key.clone();
        std::thread::Builder::new()
            .name(format!("file-source-{}", cx.key))
            .spawn(move || {
                let mut stopped = None;
                producer::run_producer(reader_end, || stopped = Some(reader.run()));
                // The stream has ended; following files while the pipeline drains is the last
                // save's help, not the source's work: a panic here is logged, and the positions
                // are saved as they stand (files rotated meanwhile are missed, as before).
                if let Some(reader) = stopped
                    && let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                        move || reader.follow_until_settled(),
                    ))
                {
                    let message = crate::blocking::panic_message(panic.as_ref());
                    tracing::error!(source = %source_name, panic = %message, "The file reader panicked while following files during the drain; files rotated meanwhile may be missed.");
                }
            })
            .map_err(|err| fail(format!("cannot start the reader thread: {err}")))?;
        let committer = tokio::spawn(producer::drive_helper(
            reports,
            committer::run_committer(
                cx.key.to_string(),
                store,
                shared,
                acks_rx,
                self.flush_interval,
                self.checkpoint_interval,
                cx.shutdown,
            ),
        ));
        // Shutdown waits for the committer to save the final positions, after the stream has
        // ended (so that stages holding events until their input ends let go of them first).
        cx.finishing.add(committer);
        Ok(producer::batches_from(batches_rx, reader_ended, panics))
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

/// The file source's hash tables: keyed by inode, path or watch, looked up several times per
/// file read, where SipHash was a tenth of the reader's own CPU with 1,000 files.
pub(crate) type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;

/// State shared by the reader thread and the committer.
pub(crate) struct Shared {
    pub table: Mutex<FastMap<FileKey, Entry>>,
    /// Set by the committer when saves fall behind; the reader pauses while it is set.
    pub saves_behind: AtomicBool,
    /// Set by the reader once its start-up scan has put every file it follows in `table`: the
    /// committer then saves once, so the next start knows these files and when they were seen
    /// even if no line was read before a crash.
    pub scanned: AtomicBool,
    /// Set by the reader when it starts following a file (or follows one under a new path),
    /// cleared by the committer's next save: a file must reach the saved positions within
    /// `flush_interval` even while nothing is acknowledged (Loki down), or a crash forgets a
    /// file rotated out of the globs meanwhile, which a restart finds only through them.
    pub files_changed: AtomicBool,
    /// Set by the committer once shutdown has begun and every batch registered so far is
    /// acknowledged: the reader, which follows new and renamed files while the pipeline
    /// drains, stops then, and the committer's last save names what it found.
    pub settled: AtomicBool,
}

impl Shared {
    pub fn with_table<T>(&self, f: impl FnOnce(&mut FastMap<FileKey, Entry>) -> T) -> T {
        match self.table.lock() {
            Ok(mut table) => f(&mut table),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
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
