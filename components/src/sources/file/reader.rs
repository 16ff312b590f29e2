//! The file source's reader thread: discovery, reading, rotation, truncation.
//!
//! Guarantees:
//! - A file is identified by device and inode, and an offset learnt for it is applied to a file
//!   found later only when [`fingerprint::Remembered`] recognises that file (birth time, head,
//!   and the bytes before the offset): on every path that resumes a file (released and found
//!   again, skipped by `ignore_older` and grown, parked and reopened, saved before a restart),
//!   a new file that got a reused inode is read from its beginning, and counted in
//!   `files_inode_reused_total`.
//! - Rename rotation: the renamed file keeps being read until it has been at its end and idle
//!   for `rotate_wait`; the new file at the path is read from its beginning. A deleted file is
//!   drained the same way. A released file found again under another included name continues
//!   where it was, it is not read twice.
//! - copytruncate and truncation in place: when a file shrinks below what was read, or its head
//!   changes, it is read again from 0; if a sibling file (same directory, name starting with
//!   the file's name) carries the same head, that copy is read from the file's committed offset
//!   to its end first, so lines written before the truncation are not lost.
//! - At start, a saved position is used only if the file is still long enough and the bytes
//!   before the committed offset hash to the saved marker; otherwise the file is read from 0
//!   (counted in `position_validation_failures_total`). A saved file no longer at its path is
//!   looked for, by inode, in its directory and drained from its committed offset.
//! - Every read batch is registered with the committer before it is sent, in the order sent.
//! - Reading pauses while the committer reports that positions cannot be saved, and while the
//!   pipeline is full (sending blocks): backpressure reaches the files.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{File, Metadata};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use notify::{RecursiveMode, Watcher};
use opentelemetry::KeyValue;
use tokio::sync::mpsc;

use super::fingerprint::{self, HEAD_BYTES, Head, Marker, Remembered, born_ns};
use super::lines::LineSplitter;
use super::positions::{FileKey, FilePosition};
use super::{AckToken, Entry, FileSourceConfig, ReadFrom, Shared, metrics, now_rfc3339};
use crate::ComponentKey;
use crate::ack::{BatchNotifier, BatchStatusReceiver, Finalizers};
use crate::event::{EventBatch, Labels, LogEvent, now_ns};
use crate::shutdown::ShutdownSignal;
use crate::telemetry::ComponentAttrs;

/// Released files remembered at most, oldest forgotten first: only files released while still
/// linked (renamed out of the globs) are kept, in case they are renamed back in.
const RELEASED_REMEMBERED: usize = 4096;
/// Most reads of one file before the reader moves on to the next (fairness).
const READS_PER_TURN: usize = 16;
/// The smallest read asked of a regular file.
const MIN_READ_BYTES: usize = 16 * 1024;
/// Longest wait for a notify event when nothing was read.
const IDLE_WAIT: Duration = Duration::from_millis(100);

struct Tracked {
    path: PathBuf,
    file: Option<File>,
    /// Bytes read from the file so far (the partial line included).
    read_pos: u64,
    /// Offset just past the last handled line: the `read_offset` of the positions.
    emitted: u64,
    buf: BytesMut,
    splitter: LineSplitter,
    head: Head,
    /// Birth time, where the filesystem records one: tells a reused inode apart.
    born: Option<i64>,
    /// The marker of `emitted`, kept for when the file is released.
    marker: Marker,
    epoch: u64,
    dirty: bool,
    at_eof: bool,
    last_activity: Instant,
    /// Set when the file was renamed away or deleted: drain, then release.
    rotated: bool,
}

struct RetryEntry {
    path: PathBuf,
    attempts: u32,
    next_at: Instant,
}

type AckSender = mpsc::UnboundedSender<(AckToken, BatchStatusReceiver)>;

pub(super) struct Reader {
    config: Arc<FileSourceConfig>,
    source: ComponentKey,
    attrs: Arc<[KeyValue]>,
    component: ComponentAttrs,
    shutdown: ShutdownSignal,
    out: mpsc::Sender<EventBatch>,
    acks: AckSender,
    shared: Arc<Shared>,
    labels: Labels,
    include: Vec<glob::Pattern>,
    exclude: Vec<glob::Pattern>,
    files: HashMap<FileKey, Tracked>,
    by_path: HashMap<PathBuf, FileKey>,
    /// Files skipped by `ignore_older`, with their size then (the offset to go on from).
    ignored: HashMap<FileKey, Remembered>,
    /// Files released after rotation while still linked, with the offset reached and when
    /// (a release counter), in case they are found again under an included name.
    released: HashMap<FileKey, (u64, Remembered)>,
    releases: u64,
    retries: VecDeque<RetryEntry>,
    events: std::sync::mpsc::Receiver<notify::Result<notify::Event>>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    /// Include directories found missing at the last scan.
    missing_dirs: HashSet<PathBuf>,
    open_count: usize,
    next_epoch: u64,
    resume: BTreeMap<FileKey, FilePosition>,
    stopped: bool,
    /// Lines of this turn not sent yet: small reads of several files go out as one batch (one
    /// wake-up of the pipeline instead of one per file), large reads go out at once.
    pending: Option<EventBatch>,
    pending_bytes: usize,
}

impl Reader {
    pub(super) fn new(
        config: Arc<FileSourceConfig>,
        source: ComponentKey,
        shutdown: ShutdownSignal,
        out: mpsc::Sender<EventBatch>,
        acks: AckSender,
        shared: Arc<Shared>,
        resume: BTreeMap<FileKey, FilePosition>,
    ) -> Result<Self, String> {
        let compile = |patterns: &[String]| -> Result<Vec<glob::Pattern>, String> {
            patterns
                .iter()
                .map(|p| glob::Pattern::new(p).map_err(|e| format!("invalid glob {p:?}: {e}")))
                .collect()
        };
        let include = compile(&config.include)?;
        let exclude = compile(&config.exclude)?;
        let (events_tx, events) = std::sync::mpsc::channel();
        let watcher = match notify::recommended_watcher(events_tx) {
            Ok(watcher) => Some(watcher),
            Err(err) => {
                tracing::warn!(source = %source, error = %err, "File events unavailable; relying on polling.");
                None
            }
        };
        let labels = Labels::new(config.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Ok(Self {
            attrs: metrics::attrs(&source),
            component: ComponentAttrs::new(&source),
            config,
            source,
            shutdown,
            out,
            acks,
            shared,
            labels,
            include,
            exclude,
            files: HashMap::new(),
            by_path: HashMap::new(),
            ignored: HashMap::new(),
            released: HashMap::new(),
            releases: 0,
            retries: VecDeque::new(),
            events,
            watcher,
            watched: HashSet::new(),
            missing_dirs: HashSet::new(),
            open_count: 0,
            next_epoch: 1,
            resume,
            stopped: false,
            pending: None,
            pending_bytes: 0,
        })
    }

    pub(super) fn run(mut self) {
        self.watch_dirs();
        self.scan(true);
        self.adopt_unmatched();
        let mut last_scan = Instant::now();
        let mut last_sweep = Instant::now();
        while !self.shutdown.is_triggered() && !self.stopped {
            if self.shared.saves_behind.load(Ordering::Acquire) {
                std::thread::sleep(IDLE_WAIT);
                continue;
            }
            while let Ok(event) = self.events.try_recv() {
                self.on_event(event);
            }
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
            let mut progressed = false;
            let dirty: Vec<FileKey> = self
                .files
                .iter()
                .filter(|(_, t)| t.dirty)
                .map(|(k, _)| *k)
                .collect();
            for key in dirty {
                if self.shutdown.is_triggered() || self.stopped {
                    break;
                }
                progressed |= self.read_file(key);
            }
            self.finish_idle();
            self.send_pending();
            if !progressed {
                let idle_since = Instant::now();
                match self.events.recv_timeout(IDLE_WAIT) {
                    Ok(event) => {
                        self.on_event(event);
                        // New data after an idle spell: let more of it arrive before reading,
                        // so a file written line by line is read in chunks (fewer, larger
                        // batches) at the cost of at most `coalesce_interval` of latency.
                        let waited = idle_since.elapsed();
                        if waited < self.config.coalesce_interval {
                            std::thread::sleep(self.config.coalesce_interval - waited);
                        }
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        std::thread::sleep(IDLE_WAIT);
                    }
                }
            }
        }
        self.send_pending();
        tracing::debug!(source = %self.source, "File reader stopped.");
    }

    fn included(&self, path: &Path) -> bool {
        let options = glob::MatchOptions {
            require_literal_separator: true,
            ..glob::MatchOptions::new()
        };
        self.include
            .iter()
            .any(|p| p.matches_path_with(path, options))
            && !self
                .exclude
                .iter()
                .any(|p| p.matches_path_with(path, options))
    }

    /// Watches the fixed directory part of each include pattern (recursively under `**`), and
    /// says which of them do not exist (yet): a warning when one goes missing, a note when it
    /// appears, and the `include_dirs_missing` gauge.
    fn watch_dirs(&mut self) {
        let mut missing = HashSet::new();
        for pattern in &self.config.include {
            let (dir, _) = static_prefix(pattern);
            if !dir.is_dir() {
                missing.insert(dir);
            }
        }
        for dir in missing.difference(&self.missing_dirs) {
            tracing::warn!(source = %self.source, dir = %dir.display(), "Include directory does not exist; looking for it again every scan_interval.");
        }
        for dir in self.missing_dirs.difference(&missing) {
            tracing::info!(source = %self.source, dir = %dir.display(), "Include directory appeared; following its files.");
        }
        metrics::INCLUDE_DIRS_MISSING.record(missing.len() as i64, &self.attrs);
        self.missing_dirs = missing;
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        for pattern in &self.config.include {
            let (dir, recursive) = static_prefix(pattern);
            if self.watched.contains(&dir) || !dir.is_dir() {
                continue;
            }
            let mode = if recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            match watcher.watch(&dir, mode) {
                Ok(()) => {
                    self.watched.insert(dir);
                }
                Err(err) => {
                    tracing::debug!(source = %self.source, dir = %dir.display(), error = %err, "Cannot watch directory; polling it.");
                }
            }
        }
    }

    fn on_event(&mut self, event: notify::Result<notify::Event>) {
        let Ok(event) = event else {
            // Event overflow or watcher error: a rescan on the next turn finds what was missed.
            self.sweep();
            return;
        };
        if let notify::EventKind::Modify(notify::event::ModifyKind::Name(
            notify::event::RenameMode::Both,
        )) = event.kind
            && let [from, to] = event.paths.as_slice()
        {
            self.on_rename(from, to);
        }
        for path in event.paths {
            if let Some(key) = self.by_path.get(&path).copied() {
                if let Some(tracked) = self.files.get_mut(&key) {
                    tracked.dirty = true;
                }
                if !matches!(
                    event.kind,
                    notify::EventKind::Modify(notify::event::ModifyKind::Data(_))
                ) {
                    self.check_identity(key);
                }
            } else if self.included(&path) {
                self.consider(&path, false);
            }
        }
    }

    /// An included file renamed away before it was ever opened (written and rotated between
    /// two turns of the reader): follow it under its new name, from its beginning.
    fn on_rename(&mut self, from: &Path, to: &Path) {
        if !self.included(from) || self.included(to) {
            return;
        }
        let Ok(file) = File::open(to) else {
            return;
        };
        let Ok(meta) = file.metadata() else {
            return;
        };
        let key = FileKey {
            dev: meta.dev(),
            inode: meta.ino(),
        };
        let seen_before = self
            .released
            .get(&key)
            .is_some_and(|(_, known)| known.recognises(&file, &meta));
        if !meta.is_file() || self.files.contains_key(&key) || seen_before {
            return;
        }
        tracing::debug!(source = %self.source, from = %from.display(), to = %to.display(), "File rotated before it was opened; draining it.");
        self.track_open(to, key, 0, &meta, true, Some(file));
    }

    fn scan(&mut self, first: bool) {
        let mut found = Vec::new();
        for pattern in &self.config.include {
            match glob::glob(pattern) {
                Ok(paths) => found.extend(paths.filter_map(Result::ok)),
                Err(err) => tracing::warn!(source = %self.source, error = %err, "Invalid glob."),
            }
        }
        for path in found {
            if self.included(&path) {
                self.consider(&path, first);
            }
        }
        self.report_watched();
    }

    /// Looks at one path: a new file, a known one, or one whose path now names another file.
    fn consider(&mut self, path: &Path, first: bool) {
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                if let Some(key) = self.by_path.get(path).copied() {
                    self.mark_rotated(key);
                }
                return;
            }
            Err(err) => {
                self.schedule_retry(path, &err.to_string());
                return;
            }
        };
        if !meta.is_file() {
            return;
        }
        let key = FileKey {
            dev: meta.dev(),
            inode: meta.ino(),
        };
        match self.by_path.get(path).copied() {
            Some(known) if known == key => return,
            Some(other) => self.mark_rotated(other),
            None => {}
        }
        if let Some(tracked) = self.files.get(&key) {
            // The same file under a new included name (renamed within the globs) while it is
            // open: an open file's inode cannot be reused. A parked (closed) one's can: it is
            // the same file only if its birth time and head say so.
            let same = tracked.file.is_some()
                || (fingerprint::same_birth(tracked.born, born_ns(&meta))
                    && File::open(path).is_ok_and(|f| tracked.head.matches(&f)));
            if same {
                if let Some(tracked) = self.files.get_mut(&key) {
                    tracked.path = path.to_path_buf();
                }
                self.by_path.insert(path.to_path_buf(), key);
                return;
            }
            self.forget_replaced(key);
        }
        // Open now, and take the identity from the open descriptor: a rename between the stat
        // above and a later open would otherwise make us follow the wrong file.
        let (file, meta) = match File::open(path).and_then(|f| f.metadata().map(|m| (f, m))) {
            Ok(opened) => opened,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
            Err(err) => {
                self.schedule_retry(path, &err.to_string());
                return;
            }
        };
        let key = FileKey {
            dev: meta.dev(),
            inode: meta.ino(),
        };
        if self.files.contains_key(&key) {
            return;
        }
        let start = match self.start_offset(path, key, &file, &meta, first) {
            Some(start) => start,
            None => return,
        };
        self.track_open(path, key, start, &meta, false, Some(file));
    }

    /// Where to start reading a newly found file; `None` to skip it.
    fn start_offset(
        &mut self,
        path: &Path,
        key: FileKey,
        file: &File,
        meta: &Metadata,
        first: bool,
    ) -> Option<u64> {
        if let Some(saved) = self.resume.remove(&key) {
            return Some(self.validate_saved(path, &saved, file, meta));
        }
        if let Some((_, known)) = self.released.remove(&key) {
            if known.recognises(file, meta) {
                return Some(known.offset);
            }
            // A new file under the inode of one read before: read it from its beginning.
            self.count_inode_reuse(path);
            return Some(0);
        }
        if let Some(known) = self.ignored.get(&key).copied() {
            if known.recognises(file, meta) {
                if meta.len() <= known.offset {
                    return None;
                }
                self.ignored.remove(&key);
                return Some(known.offset);
            }
            // Not the file that was skipped: judge it afresh.
            self.ignored.remove(&key);
            self.count_inode_reuse(path);
        }
        if let Some(limit) = self.config.ignore_older {
            let old = meta
                .modified()
                .ok()
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .is_some_and(|age| age > limit);
            if old {
                metrics::OLD_LOGS_IGNORED.add(1, &self.attrs);
                tracing::info!(source = %self.source, file = %path.display(), "File older than ignore_older; skipped.");
                let head = Head::of(file, meta.len());
                self.ignored
                    .insert(key, Remembered::of(file, meta, head, meta.len()));
                return None;
            }
        }
        Some(if first && self.config.read_from == ReadFrom::End {
            meta.len()
        } else {
            0
        })
    }

    /// The committed offset of a saved position if `file` is the file it was saved for, else 0.
    fn validate_saved(
        &mut self,
        path: &Path,
        saved: &FilePosition,
        file: &File,
        meta: &Metadata,
    ) -> u64 {
        let committed = saved.committed_offset;
        let known = saved_identity(saved);
        if known.recognises(file, meta) {
            return committed;
        }
        if !fingerprint::same_birth(saved.born_ns, born_ns(meta)) {
            // Another file under the saved inode: not a damaged position.
            self.count_inode_reuse(path);
            return 0;
        }
        let head_ok = known.head.matches(file);
        let marker_ok = known.marker.matches(file, committed, meta.len());
        metrics::POSITION_VALIDATION_FAILURES.add(1, &self.attrs);
        tracing::warn!(
            source = %self.source,
            file = %path.display(),
            committed,
            size = meta.len(),
            head_ok,
            marker_ok,
            "Saved position does not match the file (truncated or replaced); reading it from the start."
        );
        self.drain_copy_of(path, known.head, committed);
        0
    }

    /// Counts and logs a file found under the inode of one followed before.
    fn count_inode_reuse(&self, path: &Path) {
        metrics::FILES_INODE_REUSED.add(1, &self.attrs);
        tracing::debug!(source = %self.source, file = %path.display(), "New file under a reused inode; reading it from the start.");
    }

    /// Saved positions whose file was not found at its path: look for it by inode in its
    /// directory (rotated while we were down) and drain it; otherwise forget it.
    fn adopt_unmatched(&mut self) {
        let unmatched = std::mem::take(&mut self.resume);
        for (key, saved) in unmatched {
            let found = saved.path.parent().and_then(|dir| find_by_inode(dir, key));
            // Only the saved file itself is drained: another one under its inode (created after
            // the saved file was deleted) is not ours to read, unless the globs include it.
            let recognised = found.and_then(|(path, meta)| {
                let file = File::open(&path).ok()?;
                saved_identity(&saved)
                    .recognises(&file, &meta)
                    .then_some((path, meta))
            });
            match recognised {
                Some((path, meta)) => {
                    let start = saved.committed_offset;
                    tracing::info!(source = %self.source, file = %path.display(), from = start, "Draining a file rotated while stopped.");
                    self.track(&path, key, start, &meta, true);
                }
                None => {
                    tracing::warn!(
                        source = %self.source,
                        file = %saved.path.display(),
                        committed = saved.committed_offset,
                        "A file with a saved position is gone; what it held after the committed offset cannot be read."
                    );
                    metrics::POSITION_VALIDATION_FAILURES.add(1, &self.attrs);
                    self.shared.with_table(|table| {
                        table.remove(&key);
                    });
                }
            }
        }
    }

    /// After a copytruncate: find the copy (same head, name starting with the file's name) and
    /// drain it from `from`.
    fn drain_copy_of(&mut self, path: &Path, head: Head, from: u64) {
        if head.len == 0 {
            return;
        }
        let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let candidate = entry.path();
            let Some(candidate_name) = candidate.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if candidate == path || !candidate_name.starts_with(name) {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&candidate) else {
                continue;
            };
            let key = FileKey {
                dev: meta.dev(),
                inode: meta.ino(),
            };
            if !meta.is_file() || meta.len() < from || self.files.contains_key(&key) {
                continue;
            }
            if File::open(&candidate).is_ok_and(|f| head.matches(&f)) {
                tracing::info!(source = %self.source, file = %path.display(), copy = %candidate.display(), from, "Draining the copy left by copytruncate.");
                self.track(&candidate, key, from, &meta, true);
                return;
            }
        }
    }

    fn track(&mut self, path: &Path, key: FileKey, start: u64, meta: &Metadata, rotated: bool) {
        let file = File::open(path).ok().filter(|f| {
            f.metadata()
                .is_ok_and(|m| m.dev() == key.dev && m.ino() == key.inode)
        });
        self.track_open(path, key, start, meta, rotated, file);
    }

    /// Starts following a file, keeping `file` open when a descriptor slot is free.
    fn track_open(
        &mut self,
        path: &Path,
        key: FileKey,
        start: u64,
        meta: &Metadata,
        rotated: bool,
        file: Option<File>,
    ) {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let (head, marker) = match &file {
            Some(file) => (Head::of(file, meta.len()), Marker::at(file, start)),
            None => (
                File::open(path).map_or_else(|_| Head::empty(), |f| Head::of(&f, meta.len())),
                Marker::default(),
            ),
        };
        let born = born_ns(meta);
        let tracked = Tracked {
            path: path.to_path_buf(),
            file: None,
            read_pos: start,
            emitted: start,
            buf: BytesMut::new(),
            splitter: LineSplitter::new(
                self.config.max_line_bytes,
                self.config.oversize,
                self.config.invalid_utf8,
            ),
            head,
            born,
            marker,
            epoch,
            dirty: true,
            at_eof: false,
            last_activity: Instant::now(),
            rotated,
        };
        self.shared.with_table(|table| {
            let entry = table.entry(key).or_insert_with(|| Entry {
                position: FilePosition {
                    path: path.to_path_buf(),
                    dev: key.dev,
                    inode: key.inode,
                    born_ns: born,
                    head_hash: head.hash,
                    head_len: head.len as u32,
                    read_offset: start,
                    committed_offset: start,
                    marker: 0,
                    marker_len: 0,
                    updated_at: now_rfc3339(),
                },
                epoch,
                released: false,
                frozen: false,
            });
            entry.epoch = epoch;
            entry.released = false;
            entry.position.path = path.to_path_buf();
            entry.position.born_ns = born;
            entry.position.head_hash = head.hash;
            entry.position.head_len = head.len as u32;
            entry.position.read_offset = start;
            if entry.position.committed_offset > start || entry.frozen {
                // Restarting below the committed offset (read again from 0): commit anew.
                entry.position.committed_offset = start;
                entry.position.marker = 0;
                entry.position.marker_len = 0;
                entry.frozen = false;
            }
        });
        if !rotated {
            self.by_path.insert(path.to_path_buf(), key);
        }
        self.files.insert(key, tracked);
        if let Some(mut file) = file
            && (self.open_count < self.config.max_open_files || self.park_idle(key))
            && file.seek(SeekFrom::Start(start)).is_ok()
            && let Some(tracked) = self.files.get_mut(&key)
        {
            tracked.file = Some(file);
            self.open_count += 1;
            metrics::FILES_OPENED.add(1, &self.attrs);
        }
        tracing::debug!(source = %self.source, file = %path.display(), from = start, "Following file.");
    }

    /// Opens a tracked file if a descriptor is free (closing an idle one if need be).
    fn ensure_open(&mut self, key: FileKey) -> bool {
        match self.files.get(&key) {
            Some(t) if t.file.is_some() => return true,
            Some(_) => {}
            None => return false,
        }
        if self.open_count >= self.config.max_open_files && !self.park_idle(key) {
            return false;
        }
        let Some(tracked) = self.files.get_mut(&key) else {
            return false;
        };
        let opened = File::open(&tracked.path).and_then(|mut file| {
            let meta = file.metadata()?;
            if meta.ino() != key.inode
                || meta.dev() != key.dev
                || !fingerprint::same_birth(tracked.born, born_ns(&meta))
            {
                return Err(std::io::Error::other("the path names another file now"));
            }
            file.seek(SeekFrom::Start(tracked.read_pos))?;
            Ok(file)
        });
        match opened {
            Ok(file) => {
                tracked.file = Some(file);
                self.open_count += 1;
                metrics::FILES_OPENED.add(1, &self.attrs);
                true
            }
            Err(err) => {
                let path = tracked.path.clone();
                tracing::debug!(source = %self.source, file = %path.display(), error = %err, "Cannot open file.");
                if err.kind() == std::io::ErrorKind::Other {
                    // Replaced while closed (perhaps under the same, reused, inode): the old
                    // file is gone; look at the path afresh.
                    self.forget_replaced(key);
                    self.consider(&path, false);
                } else if err.kind() == std::io::ErrorKind::NotFound {
                    self.release(key);
                    self.consider(&path, false);
                } else {
                    self.release(key);
                    self.schedule_retry(&path, &err.to_string());
                }
                false
            }
        }
    }

    /// Closes the longest-idle open file at its end to free a descriptor for `wanted`.
    fn park_idle(&mut self, wanted: FileKey) -> bool {
        let victim = self
            .files
            .iter()
            .filter(|(k, t)| {
                **k != wanted && t.file.is_some() && t.at_eof && !t.dirty && !t.rotated
            })
            .min_by_key(|(_, t)| t.last_activity)
            .map(|(k, _)| *k);
        match victim.and_then(|k| self.files.get_mut(&k)) {
            Some(tracked) => {
                tracked.file = None;
                self.open_count -= 1;
                true
            }
            None => false,
        }
    }

    /// Reads what a file has; returns whether anything was read.
    fn read_file(&mut self, key: FileKey) -> bool {
        if !self.ensure_open(key) {
            return false;
        }
        self.check_truncation(key);
        let read_buffer = self.config.read_buffer_bytes;
        let mut progressed = false;
        for _ in 0..READS_PER_TURN {
            let Some(tracked) = self.files.get_mut(&key) else {
                return progressed;
            };
            let Some(file) = tracked.file.as_mut() else {
                return progressed;
            };
            // Ask for what the file holds beyond the read position (at least 16 KiB, so a file
            // that grew since the stat is read on), not for the whole buffer: the buffer is
            // zero-filled before each read, and a trickle of lines should not cost 256 KiB of
            // memset each time.
            let want = match file.metadata() {
                Ok(meta) if meta.is_file() => {
                    let available = meta.len().saturating_sub(tracked.read_pos);
                    usize::try_from(available)
                        .unwrap_or(usize::MAX)
                        .clamp(MIN_READ_BYTES.min(read_buffer), read_buffer)
                }
                _ => read_buffer,
            };
            let filled = tracked.buf.len();
            tracked.buf.resize(filled + want, 0);
            let read = file.read(&mut tracked.buf[filled..]);
            let n = match read {
                Ok(n) => n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => 0,
                Err(err) => {
                    tracked.buf.truncate(filled);
                    self.component.error("read_error");
                    tracing::warn!(source = %self.source, file = %tracked.path.display(), error = %err, "Read failed; will retry.");
                    tracked.dirty = false;
                    return progressed;
                }
            };
            tracked.buf.truncate(filled + n);
            if n == 0 {
                tracked.at_eof = true;
                tracked.dirty = false;
                break;
            }
            progressed = true;
            tracked.at_eof = false;
            tracked.read_pos += n as u64;
            tracked.last_activity = Instant::now();
            metrics::READ_BYTES.add(n as u64, &self.attrs);
            self.emit_lines(key, false);
            if self.stopped {
                break;
            }
        }
        progressed
    }

    /// Splits what is buffered and sends the lines as one batch.
    fn emit_lines(&mut self, key: FileKey, flush_partial: bool) {
        let Some(tracked) = self.files.get_mut(&key) else {
            return;
        };
        let split = tracked.splitter.split(&mut tracked.buf, flush_partial);
        if split.consumed == 0 {
            return;
        }
        tracked.emitted += split.consumed as u64;
        if split.truncated > 0 {
            metrics::LINES_TRUNCATED.add(split.truncated as u64, &self.attrs);
        }
        if split.dropped > 0 {
            self.component.dropped(split.dropped, "oversize");
        }
        if split.invalid_utf8 > 0 {
            metrics::INVALID_UTF8_LINES.add(split.invalid_utf8 as u64, &self.attrs);
        }
        let end = tracked.emitted;
        // The marker: the bytes just before `end`, taken from the lines themselves when they
        // reach that far back, else read from the file.
        let marker = match &tracked.file {
            Some(file) => Marker::at(file, end),
            None => Marker::default(),
        };
        tracked.marker = marker;
        let token = AckToken {
            key,
            epoch: tracked.epoch,
            end,
            marker: marker.hash,
            marker_len: marker.len,
        };
        let path = tracked.path.clone();
        let lines = split.lines;
        self.shared.with_table(|table| {
            if let Some(entry) = table.get_mut(&key) {
                entry.position.read_offset = end;
            }
        });
        // Registered before the batch is sent, so the committer sees tokens in send order.
        let (notifier, receiver) = BatchNotifier::new_with_receiver();
        if self.acks.send((token, receiver)).is_err() {
            self.stopped = true;
            return;
        }
        if lines.is_empty() {
            // Only skipped bytes (oversize tail, dropped line): the notifier is dropped unused,
            // so the committed offset may move past them once earlier batches are done.
            return;
        }
        // One allocation per batch; every event of it shares the path.
        let file: Arc<str> = Arc::from(path.to_string_lossy().as_ref());
        let now = now_ns();
        let count = lines.len();
        let events: Vec<LogEvent> = lines
            .into_iter()
            .map(|line| LogEvent {
                timestamp_ns: now,
                observed_ns: now,
                line,
                labels: self.labels.clone(),
                metadata: Vec::new(),
                source: self.source.clone(),
                file: Some(file.clone()),
                replays: 0,
                fields: Default::default(),
            })
            .collect();
        metrics::LINES_READ.add(count as u64, &self.attrs);
        self.component.processed(count);
        self.pending_bytes += split.consumed;
        match &mut self.pending {
            Some(pending) => {
                pending.events.extend(events);
                pending.finalizers.merge(Finalizers::new(notifier));
            }
            None => self.pending = Some(EventBatch::new(events, Finalizers::new(notifier))),
        }
        // Half the buffer: a full read (a whole buffer less a partial line) goes out on its own,
        // never merged with the next one (merging large reads only copies events around).
        if self.pending_bytes >= self.config.read_buffer_bytes / 2 {
            self.send_pending();
        }
    }

    /// Sends the lines gathered so far as one batch.
    fn send_pending(&mut self) {
        self.pending_bytes = 0;
        let Some(batch) = self.pending.take() else {
            return;
        };
        if self.out.blocking_send(batch).is_err() {
            // The pipeline is gone (shutdown): stop reading.
            self.stopped = true;
        }
    }

    /// A file that shrank below what was read, or whose head changed, is read again from 0,
    /// after draining the copy copytruncate left, if any.
    fn check_truncation(&mut self, key: FileKey) {
        let Some(tracked) = self.files.get(&key) else {
            return;
        };
        let Some(file) = tracked.file.as_ref() else {
            return;
        };
        let Ok(meta) = file.metadata() else {
            return;
        };
        let shrank = meta.len() < tracked.read_pos;
        let head_changed = tracked.head.len > 0 && !tracked.head.matches(file);
        if !shrank && !head_changed {
            if tracked.head.len < HEAD_BYTES && meta.len() > tracked.head.len {
                // The file has grown past a short head: fingerprint more of it.
                let head = Head::of(file, meta.len());
                if let Some(tracked) = self.files.get_mut(&key) {
                    tracked.head = head;
                    self.shared.with_table(|table| {
                        if let Some(entry) = table.get_mut(&key) {
                            entry.position.head_hash = head.hash;
                            entry.position.head_len = head.len as u32;
                        }
                    });
                }
            }
            return;
        }
        let path = tracked.path.clone();
        let old_head = tracked.head;
        let committed = self
            .shared
            .with_table(|table| table.get(&key).map(|e| e.position.committed_offset))
            .unwrap_or(0);
        metrics::FILES_TRUNCATED.add(1, &self.attrs);
        tracing::info!(source = %self.source, file = %path.display(), size = meta.len(), "File truncated or replaced in place; reading it again from the start.");
        self.drain_copy_of(&path, old_head, committed);
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let Some(tracked) = self.files.get_mut(&key) else {
            return;
        };
        let new_head = tracked
            .file
            .as_ref()
            .map_or_else(Head::empty, |f| Head::of(f, meta.len()));
        tracked.read_pos = 0;
        tracked.emitted = 0;
        tracked.buf.clear();
        tracked.splitter.reset();
        tracked.epoch = epoch;
        tracked.head = new_head;
        tracked.marker = Marker::default();
        tracked.dirty = true;
        if let Some(file) = tracked.file.as_mut()
            && file.seek(SeekFrom::Start(0)).is_err()
        {
            tracked.file = None;
            self.open_count -= 1;
        }
        self.shared.with_table(|table| {
            if let Some(entry) = table.get_mut(&key) {
                entry.epoch = epoch;
                entry.frozen = false;
                entry.position.read_offset = 0;
                entry.position.committed_offset = 0;
                entry.position.marker = 0;
                entry.position.marker_len = 0;
                entry.position.head_hash = new_head.hash;
                entry.position.head_len = new_head.len as u32;
            }
        });
    }

    /// Checks that a tracked path still names the tracked file.
    fn check_identity(&mut self, key: FileKey) {
        let Some(tracked) = self.files.get(&key) else {
            return;
        };
        if tracked.rotated {
            return;
        }
        let path = tracked.path.clone();
        match std::fs::metadata(&path) {
            Ok(meta)
                if meta.dev() == key.dev
                    && meta.ino() == key.inode
                    && fingerprint::same_birth(tracked.born, born_ns(&meta)) => {}
            Ok(_) => {
                self.mark_rotated(key);
                self.consider(&path, false);
            }
            Err(_) => self.mark_rotated(key),
        }
    }

    fn mark_rotated(&mut self, key: FileKey) {
        let Some(tracked) = self.files.get_mut(&key) else {
            return;
        };
        if tracked.rotated {
            return;
        }
        tracked.rotated = true;
        tracked.dirty = true;
        tracked.last_activity = Instant::now();
        if self.by_path.get(&tracked.path) == Some(&key) {
            self.by_path.remove(&tracked.path);
        }
        metrics::FILES_ROTATED.add(1, &self.attrs);
        tracing::debug!(source = %self.source, file = %tracked.path.display(), "File rotated or deleted; draining it.");
    }

    /// Periodic check of every followed file.
    fn sweep(&mut self) {
        let keys: Vec<FileKey> = self.files.keys().copied().collect();
        for key in keys {
            self.check_identity(key);
            let Some(tracked) = self.files.get_mut(&key) else {
                continue;
            };
            let (size, deleted) = match &tracked.file {
                Some(file) => match file.metadata() {
                    Ok(m) => (Some(m.len()), m.nlink() == 0),
                    Err(_) => (None, false),
                },
                None => (
                    std::fs::metadata(&tracked.path)
                        .ok()
                        .filter(|m| m.ino() == key.inode && m.dev() == key.dev)
                        .map(|m| m.len()),
                    false,
                ),
            };
            if size.is_some_and(|s| s != tracked.read_pos) {
                tracked.dirty = true;
            }
            if deleted {
                self.mark_rotated(key);
            }
        }
        self.report_watched();
    }

    /// Emits partial last lines of idle files, releases drained rotated files.
    fn finish_idle(&mut self) {
        let now = Instant::now();
        let mut to_flush = Vec::new();
        let mut to_release = Vec::new();
        for (key, tracked) in &self.files {
            if !tracked.at_eof || tracked.dirty {
                continue;
            }
            let idle = now.duration_since(tracked.last_activity);
            if !tracked.buf.is_empty() && (idle >= self.config.eof_timeout || tracked.rotated) {
                to_flush.push(*key);
            }
            if tracked.rotated && idle >= self.config.rotate_wait {
                to_release.push(*key);
            }
        }
        for key in to_flush {
            self.emit_lines(key, true);
        }
        for key in to_release {
            self.release(key);
        }
    }

    fn release(&mut self, key: FileKey) {
        let Some(tracked) = self.files.remove(&key) else {
            return;
        };
        if tracked.file.is_some() {
            self.open_count -= 1;
        }
        if self.by_path.get(&tracked.path) == Some(&key) {
            self.by_path.remove(&tracked.path);
        }
        // A deleted file can never be found again; its inode will name some other file. Only a
        // file still linked (renamed out of the globs) is remembered, in case it comes back.
        let deleted = tracked
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .is_some_and(|m| m.nlink() == 0);
        if !deleted {
            self.remember_released(key, &tracked);
        }
        self.shared.with_table(|table| {
            if let Some(entry) = table.get_mut(&key) {
                entry.released = true;
            }
        });
        tracing::debug!(source = %self.source, file = %tracked.path.display(), "File released.");
        self.report_watched();
    }

    fn remember_released(&mut self, key: FileKey, tracked: &Tracked) {
        if self.released.len() >= RELEASED_REMEMBERED
            && let Some(oldest) = self
                .released
                .iter()
                .min_by_key(|(_, (order, _))| *order)
                .map(|(k, _)| *k)
        {
            self.released.remove(&oldest);
        }
        self.releases += 1;
        let known = Remembered {
            head: tracked.head,
            born: tracked.born,
            offset: tracked.emitted,
            marker: tracked.marker,
        };
        self.released.insert(key, (self.releases, known));
    }

    /// A parked file whose inode now names another file: it was deleted while closed, so
    /// nothing more can be read from it. Dropped without being remembered.
    fn forget_replaced(&mut self, key: FileKey) {
        let Some(tracked) = self.files.remove(&key) else {
            return;
        };
        if tracked.file.is_some() {
            self.open_count -= 1;
        }
        if self.by_path.get(&tracked.path) == Some(&key) {
            self.by_path.remove(&tracked.path);
        }
        self.released.remove(&key);
        self.count_inode_reuse(&tracked.path);
        self.shared.with_table(|table| {
            if let Some(entry) = table.get_mut(&key) {
                entry.released = true;
            }
        });
        self.report_watched();
    }

    fn schedule_retry(&mut self, path: &Path, error: &str) {
        if self.retries.iter().any(|r| r.path == path) {
            return;
        }
        if self.retries.len() >= self.config.retry_queue_size {
            metrics::RETRY_DROPPED.add(1, &self.attrs);
            tracing::error!(source = %self.source, file = %path.display(), error, "Retry queue full; file dropped (its lines are not read).");
            return;
        }
        tracing::warn!(source = %self.source, file = %path.display(), error, "Cannot open file; will retry.");
        self.retries.push_back(RetryEntry {
            path: path.to_path_buf(),
            attempts: 1,
            next_at: Instant::now() + retry_delay(1),
        });
        self.report_retries();
    }

    fn process_retries(&mut self) {
        let now = Instant::now();
        let due: Vec<RetryEntry> = {
            let (due, waiting): (Vec<_>, Vec<_>) =
                self.retries.drain(..).partition(|r| r.next_at <= now);
            self.retries.extend(waiting);
            due
        };
        for entry in due {
            match File::open(&entry.path) {
                Ok(_) => self.consider(&entry.path, false),
                Err(err) if entry.attempts >= self.config.retry_max_attempts => {
                    metrics::RETRY_DROPPED.add(1, &self.attrs);
                    tracing::error!(source = %self.source, file = %entry.path.display(), error = %err, attempts = entry.attempts, "File given up after repeated open errors (its lines are not read).");
                }
                Err(_) => self.retries.push_back(RetryEntry {
                    path: entry.path,
                    attempts: entry.attempts + 1,
                    next_at: now + retry_delay(entry.attempts + 1),
                }),
            }
        }
        self.report_retries();
    }

    fn report_retries(&self) {
        metrics::RETRY_QUEUE_SIZE.record(self.retries.len() as i64, &self.attrs);
    }

    fn report_watched(&self) {
        metrics::FILES_WATCHED.record(self.files.len() as i64, &self.attrs);
    }
}

/// 1 s, 2 s, 4 s ... at most 60 s.
fn retry_delay(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

/// The identity a saved position was taken from.
fn saved_identity(saved: &FilePosition) -> Remembered {
    Remembered {
        head: Head {
            hash: saved.head_hash,
            len: u64::from(saved.head_len),
        },
        born: saved.born_ns,
        offset: saved.committed_offset,
        marker: Marker {
            hash: saved.marker,
            len: saved.marker_len,
        },
    }
}

/// The file in `dir` with the given identity, if any.
fn find_by_inode(dir: &Path, key: FileKey) -> Option<(PathBuf, Metadata)> {
    std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let meta = entry.metadata().ok()?;
        (meta.is_file() && meta.ino() == key.inode && meta.dev() == key.dev)
            .then(|| (entry.path(), meta))
    })
}

/// The directory before the first glob character, and whether the pattern descends (`**`).
fn static_prefix(pattern: &str) -> (PathBuf, bool) {
    let mut dir = PathBuf::new();
    let mut recursive = false;
    let components: Vec<&str> = pattern.split('/').collect();
    for (i, part) in components.iter().enumerate() {
        if part.contains(['*', '?', '[']) {
            recursive =
                components[i..].iter().any(|p| p.contains("**")) || i + 1 < components.len();
            return (dir, recursive);
        }
        if i + 1 == components.len() {
            break;
        }
        if part.is_empty() && i == 0 {
            dir.push("/");
        } else {
            dir.push(part);
        }
    }
    (dir, recursive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_prefix_finds_the_directory_to_watch() {
        assert_eq!(
            static_prefix("/var/log/*.log"),
            (PathBuf::from("/var/log"), false)
        );
        assert_eq!(
            static_prefix("/var/log/**/*.log"),
            (PathBuf::from("/var/log"), true)
        );
        assert_eq!(
            static_prefix("/a/b/app.log"),
            (PathBuf::from("/a/b"), false)
        );
        assert_eq!(static_prefix("/a/*/x.log"), (PathBuf::from("/a"), true));
    }

    fn reader(config: FileSourceConfig) -> Reader {
        let (out, _rx) = mpsc::channel(1);
        let (acks, _acks_rx) = mpsc::unbounded_channel();
        let (_trigger, signal) = crate::shutdown::shutdown_pair();
        let shared = Arc::new(Shared {
            table: std::sync::Mutex::new(HashMap::new()),
            saves_behind: std::sync::atomic::AtomicBool::new(false),
        });
        Reader::new(
            Arc::new(config),
            "test".into(),
            signal,
            out,
            acks,
            shared,
            BTreeMap::new(),
        )
        .unwrap()
    }

    #[test]
    fn retry_queue_is_bounded_and_gives_up_after_max_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let mut reader = reader(FileSourceConfig {
            include: vec![format!("{}/*.log", dir.path().display())],
            retry_queue_size: 2,
            retry_max_attempts: 2,
            ..FileSourceConfig::default()
        });
        for name in ["a.log", "b.log", "c.log"] {
            reader.schedule_retry(&dir.path().join(name), "permission denied");
        }
        // Bounded: the third was dropped (and counted) rather than queued.
        assert_eq!(reader.retries.len(), 2);
        // Scheduling the same path again does not duplicate it.
        reader.schedule_retry(&dir.path().join("a.log"), "permission denied");
        assert_eq!(reader.retries.len(), 2);

        // b.log appears: its retry opens it; a.log never does and is given up after 2 attempts.
        std::fs::write(dir.path().join("b.log"), "line\n").unwrap();
        for _ in 0..2 {
            for entry in reader.retries.iter_mut() {
                entry.next_at = Instant::now();
            }
            reader.process_retries();
        }
        assert!(
            reader.retries.is_empty(),
            "{:?}",
            reader.retries.iter().map(|r| &r.path).collect::<Vec<_>>()
        );
        assert_eq!(reader.files.len(), 1);
        assert!(reader.by_path.contains_key(&dir.path().join("b.log")));
    }

    #[test]
    fn retry_delay_doubles_up_to_a_minute() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(3), Duration::from_secs(4));
        assert_eq!(retry_delay(30), Duration::from_secs(60));
    }
}

#[cfg(test)]
mod identity_tests {
    //! Every path that resumes a file at a remembered offset, given a file that only shares
    //! the inode (the case ext4's inode reuse creates): the offset must not be applied.

    use super::*;
    use std::io::Write;

    /// A reader on `dir/*.log` that keeps what it sends.
    struct Fixture {
        reader: Reader,
        out: mpsc::Receiver<EventBatch>,
        _acks: mpsc::UnboundedReceiver<(AckToken, BatchStatusReceiver)>,
        _trigger: crate::shutdown::ShutdownTrigger,
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new(config: FileSourceConfig, resume: BTreeMap<FileKey, FilePosition>) -> Self {
            let dir = tempfile::tempdir().unwrap();
            Self::in_dir(dir, config, resume)
        }

        fn in_dir(
            dir: tempfile::TempDir,
            config: FileSourceConfig,
            resume: BTreeMap<FileKey, FilePosition>,
        ) -> Self {
            let (out_tx, out) = mpsc::channel(1024);
            let (acks_tx, acks) = mpsc::unbounded_channel();
            let (trigger, signal) = crate::shutdown::shutdown_pair();
            let shared = Arc::new(Shared {
                table: std::sync::Mutex::new(HashMap::new()),
                saves_behind: std::sync::atomic::AtomicBool::new(false),
            });
            let config = FileSourceConfig {
                include: vec![format!("{}/*.log", dir.path().display())],
                coalesce_interval: Duration::ZERO,
                ..config
            };
            let reader = Reader::new(
                Arc::new(config),
                "test".into(),
                signal,
                out_tx,
                acks_tx,
                shared,
                resume,
            )
            .unwrap();
            Self {
                reader,
                out,
                _acks: acks,
                _trigger: trigger,
                dir,
            }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// Reads every tracked file to its end and returns the lines sent.
        fn read_all(&mut self) -> Vec<String> {
            let keys: Vec<FileKey> = self.reader.files.keys().copied().collect();
            for key in keys {
                self.reader.read_file(key);
            }
            self.reader.send_pending();
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

    fn key_of(path: &Path) -> FileKey {
        let meta = std::fs::metadata(path).unwrap();
        FileKey {
            dev: meta.dev(),
            inode: meta.ino(),
        }
    }

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    /// What the source would remember of some other file that had this inode.
    fn other_file(offset: u64) -> Remembered {
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

    #[test]
    fn a_released_inode_now_naming_a_new_file_is_read_from_the_start() {
        let mut f = Fixture::new(FileSourceConfig::default(), BTreeMap::new());
        let path = f.path("app.log");
        append(&path, "first line of the new file\nsecond line\n");
        f.reader.released.insert(key_of(&path), (1, other_file(15)));
        f.reader.consider(&path, false);
        assert_eq!(
            f.read_all(),
            vec!["first line of the new file", "second line"]
        );
    }

    #[test]
    fn a_released_file_found_again_goes_on_where_it_was() {
        let mut f = Fixture::new(FileSourceConfig::default(), BTreeMap::new());
        let path = f.path("app.log");
        append(&path, "one\ntwo\n");
        f.reader.consider(&path, false);
        assert_eq!(f.read_all(), vec!["one", "two"]);
        // Renamed out of the globs and released (still linked, so remembered)...
        let key = key_of(&path);
        let away = f.path("app.old");
        std::fs::rename(&path, &away).unwrap();
        f.reader.release(key);
        assert!(f.reader.released.contains_key(&key));
        // ...then renamed back in under another name, and written to.
        let back = f.path("again.log");
        std::fs::rename(&away, &back).unwrap();
        append(&back, "three\n");
        f.reader.consider(&back, false);
        assert_eq!(f.read_all(), vec!["three"]);
    }

    #[test]
    fn a_deleted_file_is_not_remembered_after_release() {
        let mut f = Fixture::new(FileSourceConfig::default(), BTreeMap::new());
        let path = f.path("app.log");
        append(&path, "one\n");
        f.reader.consider(&path, false);
        f.read_all();
        let key = key_of(&path);
        std::fs::remove_file(&path).unwrap();
        f.reader.release(key);
        assert!(!f.reader.released.contains_key(&key));
    }

    #[test]
    fn an_ignored_inode_now_naming_a_new_file_is_judged_afresh() {
        let config = FileSourceConfig {
            ignore_older: Some(Duration::from_secs(3600)),
            ..FileSourceConfig::default()
        };
        let mut f = Fixture::new(config, BTreeMap::new());
        let path = f.path("app.log");
        append(&path, "a new line\n");
        f.reader.ignored.insert(key_of(&path), other_file(5));
        f.reader.consider(&path, false);
        assert_eq!(f.read_all(), vec!["a new line"]);
    }

    #[test]
    fn an_ignored_file_that_grows_goes_on_from_its_size_then() {
        let config = FileSourceConfig {
            ignore_older: Some(Duration::from_secs(3600)),
            ..FileSourceConfig::default()
        };
        let mut f = Fixture::new(config, BTreeMap::new());
        let path = f.path("app.log");
        append(&path, "old line\n");
        let file = File::options().append(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(7200))
            .unwrap();
        f.reader.consider(&path, false);
        assert!(f.reader.files.is_empty(), "skipped as too old");
        append(&path, "new line\n");
        f.reader.consider(&path, false);
        assert_eq!(f.read_all(), vec!["new line"]);
    }

    #[test]
    fn a_parked_file_replaced_under_its_inode_is_read_from_the_start() {
        let config = FileSourceConfig {
            max_open_files: 1,
            ..FileSourceConfig::default()
        };
        let mut f = Fixture::new(config, BTreeMap::new());
        let path = f.path("app.log");
        append(&path, "old file line\n");
        f.reader.consider(&path, false);
        assert_eq!(f.read_all(), vec!["old file line"]);
        let key = key_of(&path);
        // Closed for lack of descriptors; meanwhile the file is replaced by one that (as
        // ext4 may arrange) has the same inode: a different birth time stands for that.
        if let Some(tracked) = f.reader.files.get_mut(&key) {
            tracked.file = None;
            tracked.born = Some(1);
        }
        f.reader.open_count -= 1;
        append(&path, "line after\n");
        f.reader.read_file(key);
        assert_eq!(f.read_all(), vec!["old file line", "line after"]);
    }

    #[test]
    fn a_saved_position_is_drained_only_from_the_file_it_was_saved_for() {
        let dir = tempfile::tempdir().unwrap();
        // The saved file, rotated out of the globs while the shipper was down...
        let rotated = dir.path().join("app.log.1");
        append(&rotated, "one\ntwo\nthree\n");
        let rotated_file = File::open(&rotated).unwrap();
        let meta = rotated_file.metadata().unwrap();
        let saved = |path: &Path, key: FileKey, committed: u64, head: Head| FilePosition {
            path: path.to_path_buf(),
            dev: key.dev,
            inode: key.inode,
            born_ns: born_ns(&meta),
            head_hash: head.hash,
            head_len: head.len as u32,
            read_offset: committed,
            committed_offset: committed,
            marker: Marker::at(&rotated_file, committed).hash,
            marker_len: Marker::at(&rotated_file, committed).len,
            updated_at: String::new(),
        };
        let rotated_key = key_of(&rotated);
        let mut resume = BTreeMap::new();
        resume.insert(
            rotated_key,
            saved(
                &dir.path().join("app.log"),
                rotated_key,
                4,
                Head::of(&rotated_file, meta.len()),
            ),
        );
        // ...and an unrelated file outside the globs under the inode of another saved one.
        let unrelated = dir.path().join("notes.txt");
        append(&unrelated, "not a log of ours\n");
        let unrelated_key = key_of(&unrelated);
        resume.insert(
            unrelated_key,
            FilePosition {
                head_hash: 0xdead_beef,
                ..saved(
                    &dir.path().join("gone.log"),
                    unrelated_key,
                    4,
                    Head::empty(),
                )
            },
        );
        let mut f = Fixture::in_dir(dir, FileSourceConfig::default(), resume);
        f.reader.adopt_unmatched();
        assert!(f.reader.files.contains_key(&rotated_key));
        assert!(!f.reader.files.contains_key(&unrelated_key));
        assert_eq!(f.read_all(), vec!["two", "three"]);
    }

    #[test]
    fn an_empty_file_with_a_saved_position_validates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.log");
        append(&path, "");
        let key = key_of(&path);
        let meta = std::fs::metadata(&path).unwrap();
        let head = Head::empty();
        let mut resume = BTreeMap::new();
        resume.insert(
            key,
            FilePosition {
                path: path.clone(),
                dev: key.dev,
                inode: key.inode,
                born_ns: born_ns(&meta),
                head_hash: head.hash,
                head_len: 0,
                read_offset: 0,
                committed_offset: 0,
                marker: 0,
                marker_len: 0,
                updated_at: String::new(),
            },
        );
        let mut f = Fixture::in_dir(dir, FileSourceConfig::default(), resume);
        let file = File::open(&path).unwrap();
        let saved = f.reader.resume.get(&key).cloned().unwrap();
        let recognised = saved_identity(&saved).recognises(&file, &meta);
        assert!(
            recognised,
            "an empty file must match its own saved position"
        );
        f.reader.consider(&path, true);
        assert!(f.reader.files.contains_key(&key));
    }
}
