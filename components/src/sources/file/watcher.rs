//! Telling the reader which files changed: notify events on the fixed directory part of each
//! include pattern (recursively under `**`), and the directories that do not exist (yet).
//!
//! Guarantees:
//! - Events only make the reader look sooner: every event can be lost (overflow, an
//!   unwatchable directory, no inotify at all) and the periodic scan and sweep still find the
//!   change, within `scan_interval` and `poll_interval`.
//! - A rename notify pairs (`from`, `to`) is followed even when the file was never opened:
//!   a file written and rotated between two turns of the reader is drained, not skipped.
//! - A missing include directory is a warning when it goes missing and a note when it appears,
//!   and the `include_dirs_missing` gauge says how many are missing now.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use opentelemetry::KeyValue;

use super::metrics;
use super::positions::FileKey;
use super::reader::Reader;

type Event = notify::Result<notify::Event>;

/// The directories watched for changes, and those missing.
pub(super) struct DirWatcher {
    events: Receiver<Event>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    /// Include directories found missing at the last look.
    missing: HashSet<PathBuf>,
}

impl DirWatcher {
    /// A watcher with nothing watched yet; without file events (no inotify), one that never
    /// reports any: the reader polls.
    pub(super) fn new(source: &str) -> Self {
        let (events_tx, events) = std::sync::mpsc::channel();
        let watcher = match notify::recommended_watcher(events_tx) {
            Ok(watcher) => Some(watcher),
            Err(err) => {
                tracing::warn!(source = %source, error = %err, "File events unavailable; relying on polling.");
                None
            }
        };
        Self {
            events,
            watcher,
            watched: HashSet::new(),
            missing: HashSet::new(),
        }
    }

    /// An event already waiting, if any.
    pub(super) fn try_next(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// The next event, waiting at most `timeout`.
    pub(super) fn wait(&self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        self.events.recv_timeout(timeout)
    }

    /// Watches the fixed directory part of each include pattern (recursively under `**`), and
    /// says which of them do not exist (yet): a warning when one goes missing, a note when it
    /// appears, and the `include_dirs_missing` gauge.
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
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        for pattern in include {
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
                    tracing::debug!(source = %source, dir = %dir.display(), error = %err, "Cannot watch directory; polling it.");
                }
            }
        }
    }
}

impl Reader {
    pub(super) fn on_event(&mut self, event: notify::Result<notify::Event>) {
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
