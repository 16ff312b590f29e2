//! What happens to a followed file over its life: renamed away, deleted, truncated in place,
//! copied and truncated, replaced; and what is remembered of it once it is let go.
//!
//! Guarantees:
//! - Rename rotation: the renamed file keeps being read until it has been at its end and idle
//!   for `rotate_wait`; the new file at the path is read from its beginning. A deleted file is
//!   drained the same way.
//! - A file released while still linked (renamed out of the globs) is remembered (at most
//!   4096, least recently released forgotten first), so that found again under an included
//!   name it goes on where it was instead of being read twice; a deleted one is not, since its
//!   inode will name some other file.
//! - copytruncate and truncation in place: when a file shrinks below what was read, or its
//!   head changes, or the bytes just before the read position are not the ones read there (a
//!   file truncated and written past the position between two reads), it is read again from 0;
//!   if a sibling file (same directory, name starting with the file's name) carries the same
//!   head, that copy is read from the file's committed offset to its end first, so lines
//!   written before the truncation are not lost.
//! - A closed file whose inode now names another file was deleted while closed: it is dropped
//!   and not remembered, and the new file is judged afresh.

use std::collections::hash_map::RandomState;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use schnellru::{ByLength, LruMap};

use super::events::{FileRotated, FileTruncated};
use super::fingerprint::{self, Behind, HEAD_BYTES, Head, Marker, Remembered, born_ns};
use super::positions::FileKey;
use super::reader::Reader;
use super::tail::{open_file, regular_file_size};
use crate::telemetry::TelemetryEvent;

/// Released files remembered at most: only files released while still linked (renamed out of
/// the globs) are kept, in case they are renamed back in.
const RELEASED_REMEMBERED: u32 = 4096;

/// Files released while still linked, with the offset reached.
pub(super) struct ReleasedFiles(LruMap<FileKey, Remembered, ByLength, RandomState>);

impl Default for ReleasedFiles {
    fn default() -> Self {
        Self(LruMap::with_hasher(
            ByLength::new(RELEASED_REMEMBERED),
            RandomState::new(),
        ))
    }
}

impl ReleasedFiles {
    pub(super) fn remember(&mut self, key: FileKey, known: Remembered) {
        self.0.insert(key, known);
    }

    pub(super) fn get(&self, key: &FileKey) -> Option<&Remembered> {
        self.0.peek(key)
    }

    pub(super) fn take(&mut self, key: &FileKey) -> Option<Remembered> {
        self.0.remove(key)
    }

    #[cfg(test)]
    pub(super) fn contains(&self, key: &FileKey) -> bool {
        self.0.peek(key).is_some()
    }
}

impl Reader {
    /// A file that shrank below what was read, or whose head changed, or whose bytes before the
    /// read position a read found changed (`rewritten`), is read again from 0, after draining
    /// the copy copytruncate left, if any. Returns the size the check saw, for a regular file
    /// still open (the caller's next read may rely on it).
    pub(super) fn check_truncation(&mut self, key: FileKey, rewritten: bool) -> Option<u64> {
        let tracked = self.files.get(&key)?;
        let file = tracked.file.as_ref()?;
        let meta = file.metadata().ok()?;
        let size = regular_file_size(&meta);
        let shrank = meta.len() < tracked.read_pos;
        let head_changed = tracked.head.len > 0 && !tracked.head.matches(file);
        if !shrank && !head_changed && !rewritten {
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
            return size;
        }
        let path = tracked.path.clone();
        let old_head = tracked.head;
        let committed = self
            .shared
            .with_table(|table| table.get(&key).map(|e| e.position.committed_offset))
            .unwrap_or(0);
        FileTruncated {
            source: &self.source,
            attrs: &self.attrs,
            path: &path,
            size: meta.len(),
        }
        .emit();
        self.drain_copy_of(&path, old_head, committed);
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let tracked = self.files.get_mut(&key)?;
        let new_head = tracked
            .file
            .as_ref()
            .map_or_else(Head::empty, |f| Head::of(f, meta.len()));
        tracked.read_pos = 0;
        tracked.emitted = 0;
        tracked.behind = Some(Behind::start());
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
        // Read again from 0: the next read takes its own look at the size.
        None
    }

    /// After a copytruncate: find the copy (same head, name starting with the file's name) and
    /// drain it from `from`.
    pub(super) fn drain_copy_of(&mut self, path: &Path, head: Head, from: u64) {
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
            if open_file(&candidate).is_ok_and(|f| head.matches(&f)) {
                tracing::info!(source = %self.source, file = %path.display(), copy = %candidate.display(), from, "Draining the copy left by copytruncate.");
                self.track(&candidate, key, from, &meta, true);
                return;
            }
        }
    }

    /// Checks that a tracked path still names the tracked file.
    pub(super) fn check_identity(&mut self, key: FileKey) {
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

    pub(super) fn mark_rotated(&mut self, key: FileKey) {
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
        FileRotated {
            source: &self.source,
            attrs: &self.attrs,
            path: &tracked.path,
        }
        .emit();
    }

    /// Periodic check of every followed file.
    pub(super) fn sweep(&mut self) {
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
    pub(super) fn finish_idle(&mut self) {
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

    pub(super) fn release(&mut self, key: FileKey) {
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
            self.released.remember(
                key,
                Remembered {
                    head: tracked.head,
                    born: tracked.born,
                    offset: tracked.emitted,
                    marker: tracked.marker,
                },
            );
        }
        self.shared.with_table(|table| {
            if let Some(entry) = table.get_mut(&key) {
                entry.released = true;
            }
        });
        tracing::debug!(source = %self.source, file = %tracked.path.display(), "File released.");
        self.report_watched();
    }

    /// A parked file whose inode now names another file: it was deleted while closed, so
    /// nothing more can be read from it. Dropped without being remembered.
    pub(super) fn forget_replaced(&mut self, key: FileKey) {
        let Some(tracked) = self.files.remove(&key) else {
            return;
        };
        if tracked.file.is_some() {
            self.open_count -= 1;
        }
        if self.by_path.get(&tracked.path) == Some(&key) {
            self.by_path.remove(&tracked.path);
        }
        self.released.take(&key);
        self.count_inode_reuse(&tracked.path);
        self.shared.with_table(|table| {
            if let Some(entry) = table.get_mut(&key) {
                entry.released = true;
            }
        });
        self.report_watched();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use crate::sources::file::FileSourceConfig;
    use crate::sources::file::reader::testing::{Fixture, append, key_of};

    fn fixture() -> Fixture {
        Fixture::new(
            FileSourceConfig {
                rotate_wait: Duration::ZERO,
                ..FileSourceConfig::default()
            },
            BTreeMap::new(),
        )
    }

    fn sorted(mut lines: Vec<String>) -> Vec<String> {
        lines.sort();
        lines
    }

    #[test]
    fn a_renamed_file_is_drained_and_the_new_file_read_from_its_start() {
        let mut f = fixture();
        let path = f.path("app.log");
        append(&path, "one\n");
        f.reader.consider(&path, false);
        assert_eq!(f.read_all(), vec!["one"]);
        let old = key_of(&path);
        // Written to after the last read, then rotated; the application opens a new file.
        append(&path, "two\n");
        std::fs::rename(&path, f.path("app.log.1")).unwrap();
        append(&path, "new\n");
        f.reader.check_identity(old);
        assert!(f.reader.files[&old].rotated);
        assert_eq!(sorted(f.read_all()), vec!["new", "two"]);
        // Drained and idle past rotate_wait: let go, remembered (it is still linked).
        f.reader.finish_idle();
        assert!(!f.reader.files.contains_key(&old));
        assert!(f.reader.released.contains(&old));
        assert_eq!(f.reader.files.len(), 1);
        assert_eq!(f.reader.by_path.get(&path), Some(&key_of(&path)));
    }

    #[test]
    fn a_deleted_file_is_drained_then_released_and_forgotten() {
        let mut f = fixture();
        let path = f.path("app.log");
        append(&path, "one\n");
        f.reader.consider(&path, false);
        assert_eq!(f.read_all(), vec!["one"]);
        let key = key_of(&path);
        append(&path, "last words\n");
        std::fs::remove_file(&path).unwrap();
        // The open descriptor still reads what was written before the delete.
        f.reader.sweep();
        assert!(f.reader.files[&key].rotated);
        assert_eq!(f.read_all(), vec!["last words"]);
        f.reader.finish_idle();
        assert!(f.reader.files.is_empty());
        assert!(
            !f.reader.released.contains(&key),
            "its inode will name another file"
        );
    }

    #[test]
    fn a_file_truncated_in_place_is_read_again_from_its_start() {
        let mut f = fixture();
        let path = f.path("app.log");
        append(&path, "one\ntwo\n");
        f.reader.consider(&path, false);
        assert_eq!(f.read_all(), vec!["one", "two"]);
        std::fs::write(&path, "three\n").unwrap();
        assert_eq!(f.read_all(), vec!["three"]);
        let key = key_of(&path);
        assert_eq!(f.reader.files[&key].read_pos, 6);
    }

    #[test]
    fn a_file_rewritten_in_place_to_the_same_length_is_read_again() {
        let mut f = fixture();
        let path = f.path("app.log");
        append(&path, "one\n");
        f.reader.consider(&path, false);
        assert_eq!(f.read_all(), vec!["one"]);
        // Not shorter than what was read, but its head changed.
        std::fs::write(&path, "uno\ndos\n").unwrap();
        assert_eq!(f.read_all(), vec!["uno", "dos"]);
    }

    #[test]
    fn a_file_rewritten_past_the_read_position_with_the_same_head_is_read_again() {
        let mut f = fixture();
        let path = f.path("app.log");
        // A banner longer than the head: a file truncated and written again begins the same.
        let banner = format!("{}\n", "=".repeat(300));
        append(&path, &format!("{banner}old one\nold two\n"));
        f.reader.consider(&path, false);
        assert_eq!(f.read_all().len(), 3);
        // Truncated and written again, past the read position, between two reads.
        std::fs::write(
            &path,
            format!("{banner}new one, longer than before\nnew two\n"),
        )
        .unwrap();
        assert_eq!(
            f.read_all(),
            vec![banner.trim_end(), "new one, longer than before", "new two"]
        );
    }

    #[test]
    fn copytruncate_drains_the_copy_from_the_committed_offset_first() {
        let mut f = fixture();
        let path = f.path("app.log");
        append(&path, "one\n");
        f.reader.consider(&path, false);
        assert_eq!(f.read_all(), vec!["one"]);
        let key = key_of(&path);
        f.reader.shared.with_table(|table| {
            if let Some(entry) = table.get_mut(&key) {
                entry.position.committed_offset = 4;
            }
        });
        // Written after the last read, then copied away and truncated (logrotate copytruncate).
        append(&path, "two\n");
        std::fs::copy(&path, f.path("app.log.1")).unwrap();
        std::fs::write(&path, "").unwrap();
        append(&path, "three\n");
        // "one" was committed: only what followed it is read from the copy.
        assert_eq!(sorted(f.read_all()), vec!["three", "two"]);
    }
}
