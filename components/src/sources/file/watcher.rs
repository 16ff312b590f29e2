//! Telling the reader which files changed: inotify on the fixed directory part of each include
//! pattern (and, under `**`, every directory below it), read in one go after the reader's
//! coalescing wait instead of one wake-up per application write.
//!
//! Guarantees:
//! - Events only make the reader look sooner: every event can be lost (queue overflow, an
//!   unwatchable directory, no inotify at all) and the periodic scan and sweep still find the
//!   change, within `scan_interval` and `poll_interval`. An overflow makes the reader sweep and
//!   rescan at once.
//! - Nothing runs per event outside the reader: the kernel queues the events (merging repeats
//!   of the last one) while the reader waits, and a turn reads all of them with a few
//!   `read(2)` calls, each path handled once per turn.
//! - A rename (`MOVED_FROM` and `MOVED_TO` with one cookie) is reported as a pair, so a file
//!   written and rotated between two turns of the reader is drained, not skipped.
//! - A directory created under a `**` pattern is watched as it appears, and the reader
//!   rescans so that files written before the watch was added are found.
//! - A missing include directory is a warning when it goes missing and a note when it appears,
//!   and the `include_dirs_missing` gauge says how many are missing now; a watched directory
//!   that is removed is watched again when it comes back.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use opentelemetry::KeyValue;

use super::positions::FileKey;
use super::reader::Reader;
use super::tail::open_file;
use super::{FastMap, metrics};

/// Bytes read from inotify at a time: some 2,000 events.
const READ_BUFFER: usize = 64 * 1024;
/// Most reads of the queue in one turn (the rest waits for the next turn).
const READS_PER_TURN: usize = 64;

/// What happened to a path since the last turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Change {
    /// Written to: read it.
    Data,
    /// Created, deleted, renamed, or its metadata changed: check what the path names now.
    Other,
}

/// Everything the watcher saw since the last turn.
#[derive(Debug, Default)]
pub(super) struct Changes {
    /// Each path once, `Other` winning over `Data`.
    pub(super) paths: Vec<(PathBuf, Change)>,
    /// Renames within the watched directories, `(from, to)`.
    pub(super) renames: Vec<(PathBuf, PathBuf)>,
    /// Events were lost (the kernel's queue overflowed): sweep and rescan.
    pub(super) overflowed: bool,
    /// A directory appeared under a `**` pattern: rescan.
    pub(super) new_dirs: bool,
}

/// The directories watched for changes, and those missing.
pub(super) struct DirWatcher {
    inotify: Option<Inotify>,
    /// Watched directories by watch descriptor id.
    dirs: FastMap<i32, PathBuf>,
    watched: FastMap<PathBuf, WatchDescriptor>,
    /// Directories under which every directory is watched (`**`).
    recursive: Vec<PathBuf>,
    /// Include directories found missing at the last look.
    missing: HashSet<PathBuf>,
    buffer: Vec<u8>,
}

fn dir_mask() -> WatchMask {
    WatchMask::MODIFY
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::ATTRIB
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
}

impl DirWatcher {
    /// A watcher with nothing watched yet; without inotify, one that never reports anything:
    /// the reader polls.
    pub(super) fn new(source: &str) -> Self {
        let inotify = match Inotify::init() {
            Ok(inotify) => Some(inotify),
            Err(err) => {
                tracing::warn!(source = %source, error = %err, "File events unavailable; relying on polling.");
                None
            }
        };
        Self {
            inotify,
            dirs: FastMap::default(),
            watched: FastMap::default(),
            recursive: Vec::new(),
            missing: HashSet::new(),
            buffer: vec![0; READ_BUFFER],
        }
    }

    /// Watches the fixed directory part of each include pattern (recursively under `**`), and
    /// says which of them do not exist (yet).
    pub(super) fn watch(&mut self, include: &[String], source: &str, attrs: &[KeyValue]) {
        let mut missing = HashSet::new();
        for pattern in include {
            let (dir, _) = static_prefix(pattern);
            if !dir.is_dir() {
                missing.insert(dir);
            }
        }
        for dir in missing.difference(&self.missing) {
            tracing::warn!(source = %source, dir = %dir.display(), "Include directory does not exist; looking for it again every scan_interval.");
        }
        for dir in self.missing.difference(&missing) {
            tracing::info!(source = %source, dir = %dir.display(), "Include directory appeared; following its files.");
        }
        metrics::INCLUDE_DIRS_MISSING.record(missing.len() as i64, attrs);
        self.missing = missing;
        if self.inotify.is_none() {
            return;
        }
        for pattern in include {
            let (dir, recursive) = static_prefix(pattern);
            if !dir.is_dir() {
                continue;
            }
            if recursive {
                if !self.recursive.contains(&dir) {
                    self.recursive.push(dir.clone());
                }
                self.add_tree(&dir, source);
            } else {
                self.add(&dir, source);
            }
        }
    }

    /// Watches `dir` unless it is watched already.
    fn add(&mut self, dir: &Path, source: &str) {
        if self.watched.contains_key(dir) {
            return;
        }
        let Some(inotify) = self.inotify.as_mut() else {
            return;
        };
        match inotify.watches().add(dir, dir_mask()) {
            Ok(wd) => {
                self.dirs
                    .insert(wd.get_watch_descriptor_id(), dir.to_path_buf());
                self.watched.insert(dir.to_path_buf(), wd);
            }
            Err(err) => {
                tracing::debug!(source = %source, dir = %dir.display(), error = %err, "Cannot watch directory; polling it.");
            }
        }
    }

    /// Watches `root` and every directory below it (symbolic links are not followed).
    fn add_tree(&mut self, root: &Path, source: &str) {
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            self.add(&dir, source);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    pending.push(entry.path());
                }
            }
        }
    }

    fn in_recursive_tree(&self, dir: &Path) -> bool {
        self.recursive.iter().any(|root| dir.starts_with(root))
    }

    /// Waits at most `timeout` for an event; `true` when one is waiting (it is read by the
    /// next [`DirWatcher::drain`]).
    pub(super) fn wait(&self, timeout: Duration) -> bool {
        let Some(inotify) = self.inotify.as_ref() else {
            std::thread::sleep(timeout);
            return false;
        };
        let mut fd = libc::pollfd {
            fd: inotify.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `fd` is one valid pollfd for the count of 1, and lives across the call.
        let ready = unsafe { libc::poll(&mut fd, 1, millis) };
        ready > 0
    }

    /// What happened since the last call, without waiting.
    pub(super) fn drain(&mut self, source: &str) -> Changes {
        let mut changes = Changes::default();
        let Some(inotify) = self.inotify.as_mut() else {
            return changes;
        };
        let mut seen: FastMap<PathBuf, Change> = FastMap::default();
        let mut moved_from: FastMap<u32, PathBuf> = FastMap::default();
        let mut gone: Vec<i32> = Vec::new();
        let mut new_dirs: Vec<PathBuf> = Vec::new();
        for _ in 0..READS_PER_TURN {
            let events = match inotify.read_events(&mut self.buffer) {
                Ok(events) => events,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(err) => {
                    tracing::debug!(source = %source, error = %err, "Reading file events failed; rescanning.");
                    changes.overflowed = true;
                    break;
                }
            };
            // Paths of this read, each once: an application writing line by line queues one
            // event per write.
            let mut this_read: FastMap<(i32, &OsStr), EventMask> = FastMap::default();
            let mut ordered: Vec<(i32, &OsStr)> = Vec::new();
            for event in events {
                let id = event.wd.get_watch_descriptor_id();
                if event.mask.contains(EventMask::Q_OVERFLOW) {
                    changes.overflowed = true;
                    continue;
                }
                if event
                    .mask
                    .intersects(EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF)
                {
                    gone.push(id);
                    continue;
                }
                let Some(name) = event.name else {
                    continue;
                };
                if event
                    .mask
                    .intersects(EventMask::MOVED_FROM | EventMask::MOVED_TO)
                {
                    // Pairs are matched by cookie, in order: kept apart from the merging.
                    let Some(dir) = self.dirs.get(&id) else {
                        continue;
                    };
                    let path = dir.join(name);
                    if event.mask.contains(EventMask::ISDIR) {
                        if event.mask.contains(EventMask::MOVED_TO) {
                            new_dirs.push(path);
                        }
                        continue;
                    }
                    if event.mask.contains(EventMask::MOVED_FROM) {
                        moved_from.insert(event.cookie, path.clone());
                    } else if let Some(from) = moved_from.remove(&event.cookie) {
                        changes.renames.push((from, path.clone()));
                    }
                    seen.insert(path, Change::Other);
                    continue;
                }
                if event.mask.contains(EventMask::ISDIR) {
                    if event.mask.contains(EventMask::CREATE)
                        && let Some(dir) = self.dirs.get(&id)
                    {
                        new_dirs.push(dir.join(name));
                    }
                    continue;
                }
                let key = (id, name);
                match this_read.get_mut(&key) {
                    Some(mask) => *mask |= event.mask,
                    None => {
                        this_read.insert(key, event.mask);
                        ordered.push(key);
                    }
                }
            }
            for key in ordered {
                let Some(dir) = self.dirs.get(&key.0) else {
                    continue;
                };
                let Some(&mask) = this_read.get(&key) else {
                    continue;
                };
                let change = if mask == EventMask::MODIFY {
                    Change::Data
                } else {
                    Change::Other
                };
                let entry = seen.entry(dir.join(key.1)).or_insert(change);
                if change == Change::Other {
                    *entry = Change::Other;
                }
            }
        }
        for id in gone {
            if let Some(dir) = self.dirs.remove(&id) {
                // Removed or moved away: watched again by `watch` if it comes back.
                self.watched.remove(&dir);
            }
        }
        for dir in new_dirs {
            if self.in_recursive_tree(&dir) {
                self.add_tree(&dir, source);
                changes.new_dirs = true;
            }
        }
        changes.paths = seen.into_iter().collect();
        changes
    }
}

impl Reader {
    /// Acts on what the watcher saw: renames first, then each path.
    pub(super) fn on_changes(&mut self, changes: Changes) {
        if changes.overflowed {
            // Events were lost: look at everything now rather than at the next scan.
            self.sweep();
            self.scan(false);
        } else if changes.new_dirs {
            self.scan(false);
        }
        for (from, to) in &changes.renames {
            self.on_rename(from, to);
        }
        for (path, change) in changes.paths {
            if let Some(key) = self.by_path.get(&path).copied() {
                if let Some(tracked) = self.files.get_mut(&key) {
                    tracked.dirty = true;
                }
                if change == Change::Other {
                    self.check_identity(key);
                }
            } else if self.globs.included(&path) {
                self.consider(&path, false);
            }
        }
    }

    /// An included file renamed away before it was ever opened (written and rotated between
    /// two turns of the reader): follow it under its new name, from its beginning.
    fn on_rename(&mut self, from: &Path, to: &Path) {
        if !self.globs.included(from) || self.globs.included(to) {
            return;
        }
        let Ok(file) = open_file(to) else {
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
            .is_some_and(|known| known.recognises(&file, &meta));
        if !meta.is_file() || self.files.contains_key(&key) || seen_before {
            return;
        }
        tracing::debug!(source = %self.source, from = %from.display(), to = %to.display(), "File rotated before it was opened; draining it.");
        self.track_open(to, key, 0, &meta, true, Some(file));
    }
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
}
