//! Finding the files to follow and where to start each: the globs, the scan, saved positions,
//! files found again.
//!
//! Guarantees:
//! - A file is identified by device and inode, and an offset learnt for it is applied to a file
//!   found later only when [`Remembered`] recognises that file (birth time, head, and the bytes
//!   before the offset): on every path that resumes a file (released and found again, skipped
//!   by `ignore_older` and grown, parked and reopened, saved before a restart), a new file that
//!   got a reused inode is read from its beginning, and counted in `files_inode_reused_total`.
//! - A file is opened before its identity is taken, from the open descriptor: a rename between
//!   a stat and an open cannot make the reader follow the wrong file.
//! - At start, a saved position is used only if the file is still long enough and the bytes
//!   before the committed offset hash to the saved marker; otherwise the file is read from 0
//!   (counted in `position_validation_failures_total`). A saved file no longer at its path is
//!   looked for, by inode, in its directory and drained from its committed offset.
//! - A file that matched but could not be opened is tried again (see [`super::open_retry`]).
//! - `read_from: end` applies only to files that were there while the shipper watched: a file
//!   without a saved position born after the last save (it appeared while the shipper was
//!   down) is read from its beginning.

use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::events::{
    FileOpenFailed, GivenUp, InodeReused, OldFileIgnored, SavedFileGone, SavedPositionMismatch,
};
use super::fingerprint::{self, Head, Marker, Remembered, born_ns};
use super::open_retry::Scheduled;
use super::positions::{FileKey, FilePosition};
use super::reader::Reader;
use super::tail::{event_file_name, open_file};
use super::{FileSourceConfig, ReadFrom};
use crate::telemetry::TelemetryEvent;

/// The `include` and `exclude` patterns.
pub(super) struct Globs {
    include: Vec<glob::Pattern>,
    exclude: Vec<glob::Pattern>,
}

impl Globs {
    /// Compiles the patterns of `config`; an invalid one is named.
    pub(super) fn new(config: &FileSourceConfig) -> Result<Self, String> {
        let compile = |patterns: &[String]| -> Result<Vec<glob::Pattern>, String> {
            patterns
                .iter()
                .map(|p| glob::Pattern::new(p).map_err(|e| format!("invalid glob {p:?}: {e}")))
                .collect()
        };
        Ok(Self {
            include: compile(&config.include)?,
            exclude: compile(&config.exclude)?,
        })
    }

    /// Whether `path` is to be followed: included, and not excluded.
    pub(super) fn included(&self, path: &Path) -> bool {
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
}

impl Reader {
    pub(super) fn scan(&mut self, first: bool) {
        let mut found = Vec::new();
        for pattern in &self.config.include {
            match glob::glob(pattern) {
                Ok(paths) => found.extend(paths.filter_map(Result::ok)),
                Err(err) => tracing::warn!(source = %self.source, error = %err, "Invalid glob."),
            }
        }
        for path in found {
            if self.globs.included(&path) {
                self.consider(&path, first);
            }
        }
        self.report_watched();
    }

    /// Looks at one path: a new file, a known one, or one whose path now names another file.
    pub(super) fn consider(&mut self, path: &Path, first: bool) {
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
                    && open_file(path).is_ok_and(|f| tracked.head.matches(&f)));
            if same {
                if let Some(tracked) = self.files.get_mut(&key) {
                    tracked.path = path.to_path_buf();
                    tracked.name = event_file_name(path);
                }
                self.by_path.insert(path.to_path_buf(), key);
                return;
            }
            self.forget_replaced(key);
        }
        // Open now, and take the identity from the open descriptor: a rename between the stat
        // above and a later open would otherwise make us follow the wrong file.
        let (file, meta) = match open_file(path).and_then(|f| f.metadata().map(|m| (f, m))) {
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
        if let Some(known) = self.released.take(&key) {
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
                OldFileIgnored {
                    source: &self.source,
                    attrs: &self.attrs,
                    path,
                }
                .emit();
                let head = Head::of(file, meta.len());
                self.ignored
                    .insert(key, Remembered::of(file, meta, head, meta.len()));
                return None;
            }
        }
        Some(
            if first && self.config.read_from == ReadFrom::End && !self.appeared_unwatched(meta) {
                meta.len()
            } else {
                0
            },
        )
    }

    /// Whether a file without a saved position was born (or, where the file system keeps no
    /// birth time, last written) after the positions were last saved, less a second: it
    /// appeared while the shipper was down, and every line of it is unread.
    fn appeared_unwatched(&self, meta: &Metadata) -> bool {
        let Some(saved_at) = self.saved_at_ns else {
            return false;
        };
        let changed = born_ns(meta).or_else(|| {
            let modified = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
            i64::try_from(modified.as_nanos()).ok()
        });
        changed.is_some_and(|at| at > saved_at - 1_000_000_000)
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
        SavedPositionMismatch {
            source: &self.source,
            attrs: &self.attrs,
            path,
            committed,
            size: meta.len(),
            head_ok,
            marker_ok,
        }
        .emit();
        self.drain_copy_of(path, known.head, committed);
        0
    }

    /// Counts and logs a file found under the inode of one followed before.
    pub(super) fn count_inode_reuse(&self, path: &Path) {
        InodeReused {
            source: &self.source,
            attrs: &self.attrs,
            path,
        }
        .emit();
    }

    /// Saved positions whose file was not found at its path: look for it by inode in its
    /// directory (rotated while we were down) and drain it; otherwise forget it.
    pub(super) fn adopt_unmatched(&mut self) {
        let unmatched = std::mem::take(&mut self.resume);
        for (key, saved) in unmatched {
            let found = saved.path.parent().and_then(|dir| find_by_inode(dir, key));
            // Only the saved file itself is drained: another one under its inode (created after
            // the saved file was deleted) is not ours to read, unless the globs include it.
            let recognised = found.and_then(|(path, meta)| {
                let file = open_file(&path).ok()?;
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
                    SavedFileGone {
                        source: &self.source,
                        attrs: &self.attrs,
                        path: &saved.path,
                        committed: saved.committed_offset,
                    }
                    .emit();
                    self.shared.with_table(|table| {
                        table.remove(&key);
                    });
                }
            }
        }
    }

    /// A file that matched could not be opened: try again later (see [`super::open_retry`]).
    pub(super) fn schedule_retry(&mut self, path: &Path, error: &str) {
        let given_up = match self.retries.schedule(path, Instant::now()) {
            Scheduled::AlreadyQueued => return,
            Scheduled::Refused => Some(GivenUp::QueueFull),
            Scheduled::Queued => None,
        };
        FileOpenFailed {
            source: &self.source,
            attrs: &self.attrs,
            path,
            error: &error,
            given_up,
        }
        .emit();
        self.report_retries();
    }

    /// Tries the files whose retry is due.
    pub(super) fn process_retries(&mut self) {
        let now = Instant::now();
        for entry in self.retries.take_due(now) {
            match open_file(&entry.path) {
                Ok(_) => self.consider(&entry.path, false),
                Err(err) => {
                    let (path, attempts) = (entry.path.clone(), entry.attempts);
                    if !self.retries.failed_again(entry, now) {
                        FileOpenFailed {
                            source: &self.source,
                            attrs: &self.attrs,
                            path: &path,
                            error: &err,
                            given_up: Some(GivenUp::Attempts(attempts)),
                        }
                        .emit();
                    }
                }
            }
        }
        self.report_retries();
    }
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

#[cfg(test)]
mod tests {
    //! Every path that resumes a file at a remembered offset, given a file that only shares
    //! the inode (the case ext4's inode reuse creates): the offset must not be applied.

    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::sources::file::reader::testing::{Fixture, append, key_of, other_file};

    #[test]
    fn a_file_that_cannot_be_opened_yet_is_read_once_it_can_be() {
        let mut f = Fixture::new(
            FileSourceConfig {
                retry_queue_size: 2,
                retry_max_attempts: 2,
                ..FileSourceConfig::default()
            },
            BTreeMap::new(),
        );
        for name in ["a.log", "b.log", "c.log"] {
            f.reader.schedule_retry(&f.path(name), "permission denied");
        }
        // Bounded: the third was dropped (and counted) rather than queued.
        assert_eq!(f.reader.retries.len(), 2);
        // b.log appears: its retry opens it; a.log never does and is given up after 2 attempts.
        append(&f.path("b.log"), "line\n");
        for _ in 0..2 {
            f.reader.retries.make_due();
            f.reader.process_retries();
        }
        assert!(
            f.reader.retries.len() == 0,
            "{:?}",
            f.reader.retries.paths()
        );
        assert_eq!(f.read_all(), vec!["line"]);
    }

    #[test]
    fn a_released_inode_now_naming_a_new_file_is_read_from_the_start() {
        let mut f = Fixture::new(FileSourceConfig::default(), BTreeMap::new());
        let path = f.path("app.log");
        append(&path, "first line of the new file\nsecond line\n");
        f.reader.released.remember(key_of(&path), other_file(15));
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
        assert!(f.reader.released.contains(&key));
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
        assert!(!f.reader.released.contains(&key));
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
