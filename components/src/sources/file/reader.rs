//! The file source's reader thread: one per `file` source, following every file its globs
//! match. The roles are split by file: [`super::discovery`] finds files and where to start
//! each, [`super::watcher`] says which changed, [`super::tail`] reads one file,
//! [`super::rotation`] follows renames, deletions and truncations, [`super::outbox`] sends
//! what was read, [`super::open_retry`] tries again what could not be opened. This file holds
//! their shared state and the loop that drives them.
//!
//! Guarantees (the parts' own are in their files):
//! - Every read batch is registered with the committer before it is sent, in the order sent.
//! - Reading pauses while the committer reports that positions cannot be saved, and while the
//!   pipeline is full (a batch is held): backpressure reaches the files. While it is full, new
//!   and renamed files are still followed (nothing of them read), so that positions know them.
//! - A turn reads every file with news, then sends what it read; with nothing to read the
//!   loop waits for a file event (at most 100 ms), then lets `coalesce_interval` pass before
//!   reading, so a file written line by line is read in chunks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;

use super::discovery::Globs;
use super::fingerprint::Remembered;
use super::open_retry::OpenRetries;
use super::outbox::Outbox;
use super::positions::{FileKey, FilePosition};
use super::rotation::ReleasedFiles;
use super::tail::Tracked;
use super::watcher::DirWatcher;
use super::{FastMap, FileSourceConfig, Shared, metrics};
use crate::ComponentKey;
use crate::event::Labels;
use crate::shutdown::ShutdownSignal;
use crate::telemetry::{ComponentAttrs, LogThrottle};

/// How often a read error is logged while reads keep failing.
const READ_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);
/// Longest wait for a notify event when nothing was read.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// Longest wait for room in a full pipeline before new and renamed files are looked at again.
const BLOCKED_WAIT: Duration = Duration::from_millis(100);

/// The state the reader's parts share.
pub(super) struct Reader {
    pub(super) config: Arc<FileSourceConfig>,
    pub(super) source: ComponentKey,
    pub(super) attrs: Arc<[KeyValue]>,
    pub(super) component: ComponentAttrs,
    pub(super) shutdown: ShutdownSignal,
    pub(super) shared: Arc<Shared>,
    /// The source's `labels`, shared by every event.
    pub(super) labels: Labels,
    pub(super) globs: Globs,
    pub(super) watcher: DirWatcher,
    pub(super) outbox: Outbox,
    pub(super) retries: OpenRetries,
    /// The files followed.
    pub(super) files: FastMap<FileKey, Tracked>,
    /// Which followed file each included path names (rotated files have none).
    pub(super) by_path: FastMap<PathBuf, FileKey>,
    /// Files skipped by `ignore_older`, with their size then (the offset to go on from).
    pub(super) ignored: FastMap<FileKey, Remembered>,
    pub(super) released: ReleasedFiles,
    pub(super) open_count: usize,
    /// Numbers each reading of a file from a start; tokens of an older one are ignored.
    pub(super) next_epoch: u64,
    /// Saved positions not matched to a file yet (start-up).
    pub(super) resume: BTreeMap<FileKey, FilePosition>,
    /// When those positions were saved (ns since the epoch); none at a first start.
    pub(super) saved_at_ns: Option<i64>,
    /// Read errors are logged at most this often per source (all are counted).
    pub(super) read_error_log: LogThrottle,
    /// What this turn read, counted in the metrics once at its end.
    pub(super) turn: TurnCounts,
}

/// Bytes and lines read during one turn of the reader: with many files a turn reads hundreds
/// of files a line each, and three counter updates per file read were a cost of their own.
#[derive(Debug, Default)]
pub(super) struct TurnCounts {
    pub(super) read_bytes: u64,
    pub(super) lines: u64,
    /// A file still had data when its reads for the turn ran out: turn again at once.
    pub(super) backlog: bool,
}

/// What the positions store held at start.
pub(super) struct SavedPositions {
    pub(super) positions: BTreeMap<FileKey, FilePosition>,
    /// When they were saved (ns since the epoch); none at a first start.
    pub(super) saved_at_ns: Option<i64>,
}

impl Reader {
    pub(super) fn new(
        config: Arc<FileSourceConfig>,
        source: ComponentKey,
        shutdown: ShutdownSignal,
        outbox: Outbox,
        shared: Arc<Shared>,
        saved: SavedPositions,
    ) -> Result<Self, String> {
        let globs = Globs::new(&config)?;
        let labels = Labels::new(config.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Ok(Self {
            attrs: metrics::attrs(&source),
            component: ComponentAttrs::new(&source),
            watcher: DirWatcher::new(&source),
            outbox,
            turn: TurnCounts::default(),
            retries: OpenRetries::new(config.retry_queue_size, config.retry_max_attempts),
            config,
            source,
            shutdown,
            shared,
            labels,
            globs,
            files: FastMap::default(),
            by_path: FastMap::default(),
            ignored: FastMap::default(),
            released: ReleasedFiles::default(),
            open_count: 0,
            next_epoch: 1,
            resume: saved.positions,
            saved_at_ns: saved.saved_at_ns,
            read_error_log: LogThrottle::new(READ_ERROR_LOG_EVERY),
        })
    }

    /// Follows and reads until shutdown, then sends what it read and ends the stream of
    /// batches; returns itself for [`Reader::follow_until_settled`].
    pub(super) fn run(mut self) -> Self {
        self.watch_dirs();
        self.scan(true);
        self.adopt_unmatched();
        self.shared.scanned.store(true, Ordering::Release);
        let mut last_scan = Instant::now();
        let mut last_sweep = Instant::now();
        while !self.shutdown.is_triggered() && !self.outbox.closed() {
            if self.shared.saves_behind.load(Ordering::Acquire) {
                std::thread::sleep(IDLE_WAIT);
                continue;
            }
            let changes = self.watcher.drain(&self.source);
            self.on_changes(changes);
            if last_scan.elapsed() >= self.config.scan_interval {
                self.watch_dirs();
                self.scan(false);
                last_scan = Instant::now();
            }
            if last_sweep.elapsed() >= self.config.poll_interval {
                self.sweep();
                last_sweep = Instant::now();
            }
            self.process_retries();
            if self.outbox.blocked() {
                // The pipeline is full: read nothing, but keep following new and renamed files
                // (above) while waiting for room, so that one rotated out of the globs meanwhile
                // reaches the saved positions.
                self.outbox.send_held(Some(BLOCKED_WAIT));
                continue;
            }
            let turn_started = Instant::now();
            let mut progressed = false;
            let dirty: Vec<FileKey> = self
                .files
                .iter()
                .filter(|(_, t)| t.dirty)
                .map(|(k, _)| *k)
                .collect();
            for key in dirty {
                if self.shutdown.is_triggered() || self.outbox.closed() || self.outbox.blocked() {
                    break;
                }
                progressed |= self.read_file(key);
            }
            let backlog = self.turn.backlog;
            if !self.outbox.blocked() {
                self.finish_idle();
            }
            self.end_turn();
            if progressed && !backlog {
                // Every dirty file was read to its end: what comes next is a trickle (with many
                // files, a line here and there all the time). Let it gather until
                // `coalesce_interval` after this turn began, as after an idle spell, instead of
                // turning again at once for the few files written meanwhile.
                let spent = turn_started.elapsed();
                if spent < self.config.coalesce_interval {
                    std::thread::sleep(self.config.coalesce_interval - spent);
                }
            } else if !progressed {
                let idle_since = Instant::now();
                if self.watcher.wait(IDLE_WAIT) {
                    // New data after an idle spell: let more of it arrive before reading, so a
                    // file written line by line is read in chunks (fewer, larger batches) at
                    // the cost of at most `coalesce_interval` of latency. The events queue up
                    // meanwhile and are read in one go at the top of the next turn.
                    let waited = idle_since.elapsed();
                    if waited < self.config.coalesce_interval {
                        std::thread::sleep(self.config.coalesce_interval - waited);
                    }
                }
            }
        }
        // What was read goes out (a held batch first, following files while it waits).
        loop {
            self.end_turn();
            if !self.outbox.blocked() || self.outbox.closed() {
                break;
            }
            let changes = self.watcher.drain(&self.source);
            self.on_changes(changes);
            self.outbox.send_held(Some(BLOCKED_WAIT));
        }
        self.outbox.close_output();
        tracing::debug!(source = %self.source, "File reader stopped reading.");
        self
    }

    /// After [`Reader::run`], while the pipeline drains: new and renamed files are still
    /// followed, not read, until every batch sent is acknowledged, so that the committer's last
    /// save names the files rotated out of the globs meanwhile, which the next start finds only
    /// through the positions. Runs after the source's stream has ended (stages that hold events
    /// until their input ends let go of them first).
    pub(super) fn follow_until_settled(mut self) {
        // A committer that is gone (a panic) settles nothing: stop then too.
        while !self.shared.settled.load(Ordering::Acquire) && !self.outbox.committer_gone() {
            let changes = self.watcher.drain(&self.source);
            self.on_changes(changes);
            self.watcher.wait(IDLE_WAIT);
        }
        tracing::debug!(source = %self.source, "File reader stopped.");
    }

    /// Sends what the turn gathered and counts what it read.
    pub(super) fn end_turn(&mut self) {
        self.outbox.flush();
        let turn = std::mem::take(&mut self.turn);
        if turn.read_bytes > 0 {
            crate::fault::point("file_reader", &self.source);
            metrics::READ_BYTES.add(turn.read_bytes, &self.attrs);
        }
        if turn.lines > 0 {
            metrics::LINES_READ.add(turn.lines, &self.attrs);
            self.component
                .processed(usize::try_from(turn.lines).unwrap_or(usize::MAX));
        }
    }

    /// Watches the include patterns' directories (those that exist now).
    fn watch_dirs(&mut self) {
        self.watcher
            .watch(&self.config.include, &self.source, &self.attrs);
    }

    pub(super) fn report_retries(&self) {
        metrics::RETRY_QUEUE_SIZE.record(self.retries.len() as i64, &self.attrs);
    }

    pub(super) fn report_watched(&self) {
        metrics::FILES_WATCHED.record(self.files.len() as i64, &self.attrs);
    }
}

#[cfg(test)]
pub(super) mod testing {
    //! A reader on a temporary directory, driven by hand.

    use std::collections::BTreeMap;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::Reader;
    use crate::ack::BatchStatusReceiver;
    use crate::event::EventBatch;
    use crate::sources::file::fingerprint::{Head, Marker, Remembered};
    use crate::sources::file::positions::{FileKey, FilePosition};
    use crate::sources::file::{AckToken, FileSourceConfig, Shared};

    /// A reader on `dir/*.log` that keeps what it sends.
    pub(crate) struct Fixture {
        pub(crate) reader: Reader,
        out: mpsc::Receiver<EventBatch>,
        _acks: mpsc::UnboundedReceiver<(Vec<AckToken>, BatchStatusReceiver)>,
        _trigger: crate::shutdown::ShutdownTrigger,
        dir: tempfile::TempDir,
        /// For the outbox's bounded waits (its channel never fills here).
        _runtime: tokio::runtime::Runtime,
    }

    impl Fixture {
        pub(crate) fn new(
            config: FileSourceConfig,
            resume: BTreeMap<FileKey, FilePosition>,
        ) -> Self {
            let dir = tempfile::tempdir().unwrap();
            Self::in_dir(dir, config, resume)
        }

        pub(crate) fn in_dir(
            dir: tempfile::TempDir,
            config: FileSourceConfig,
            resume: BTreeMap<FileKey, FilePosition>,
        ) -> Self {
            let (out_tx, out) = mpsc::channel(1024);
            let (acks_tx, acks) = mpsc::unbounded_channel();
            let (trigger, signal) = crate::shutdown::shutdown_pair();
            let shared = Arc::new(Shared {
                table: std::sync::Mutex::new(Default::default()),
                saves_behind: std::sync::atomic::AtomicBool::new(false),
                scanned: std::sync::atomic::AtomicBool::new(false),
                files_changed: std::sync::atomic::AtomicBool::new(false),
                settled: std::sync::atomic::AtomicBool::new(false),
            });
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_time()
                .build()
                .unwrap();
            let config = FileSourceConfig {
                include: vec![format!("{}/*.log", dir.path().display())],
                coalesce_interval: Duration::ZERO,
                ..config
            };
            let outbox = super::Outbox::new(
                out_tx,
                acks_tx,
                config.read_buffer_bytes,
                runtime.handle().clone(),
            );
            let reader = Reader::new(
                Arc::new(config),
                "test".into(),
                signal,
                outbox,
                shared,
                super::SavedPositions {
                    positions: resume,
                    saved_at_ns: None,
                },
            )
            .unwrap();
            Self {
                reader,
                out,
                _acks: acks,
                _trigger: trigger,
                dir,
                _runtime: runtime,
            }
        }

        pub(crate) fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// Reads every tracked file to its end, as turns of the reader do until none has news
        /// (a file found while reading another is read on the next turn), and returns the
        /// lines sent.
        pub(crate) fn read_all(&mut self) -> Vec<String> {
            for _ in 0..10 {
                let keys: Vec<FileKey> = self.reader.files.keys().copied().collect();
                let mut progressed = false;
                for key in keys {
                    progressed |= self.reader.read_file(key);
                }
                if !progressed {
                    break;
                }
            }
            self.reader.end_turn();
            let mut lines = Vec::new();
            while let Ok(batch) = self.out.try_recv() {
                lines.extend(
                    batch
                        .events
                        .iter()
                        .map(|e| String::from_utf8_lossy(&e.line).into_owned()),
                );
            }
            lines
        }
    }

    pub(crate) fn key_of(path: &Path) -> FileKey {
        let meta = std::fs::metadata(path).unwrap();
        FileKey {
            dev: meta.dev(),
            inode: meta.ino(),
        }
    }

    pub(crate) fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    /// What the source would remember of some other file that had this inode.
    pub(crate) fn other_file(offset: u64) -> Remembered {
        Remembered {
            head: Head {
                hash: 0x1234_5678,
                len: 12,
            },
            born: None,
            offset,
            marker: Marker::default(),
        }
    }
}
