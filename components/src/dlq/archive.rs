//! The archive of a sink's queue, `<queue>/archive/`: what left the queue but is kept for an
//! operator to look at.
//!
//! - `segment-<sequence>.dlq`: replayed segments, moved here whole when `archive: true`.
//! - `refused-<sequence>.dlq`: records refused for good, whose entries were replayed
//!   `max_replays` times and refused each time (a line too long, labels Loki will not take),
//!   written as frames like the queue's own segments, each with Loki's last answer in `detail`.
//!
//! Guarantees:
//! - An append returns `Ok` only once the frame is written and fsynced.
//! - The archive's bytes on disk stay within `archive_max_bytes` after every change: the oldest
//!   files (lowest sequence) are removed first; what that removes of refused records is reported
//!   to the caller (to count and log it), never silently. A refused record that is larger than
//!   the whole bound is not written (the caller counts it).
//! - Sequences share the queue's sequence space, so file names never repeat.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::frame::{SEGMENT_PREFIX, SEGMENT_SUFFIX, frame_bytes, scan_segment};
use super::record::{DlqRecord, RecordSummary};
use crate::durable::{context, remove_if_exists, sync_dir};

/// Name prefix of the files holding refused records.
pub const REFUSED_PREFIX: &str = "refused-";
/// A refused-records file is closed and a new one started past this size.
const REFUSED_FILE_MAX: u64 = 8 << 20;

#[derive(Debug)]
struct ArchivedFile {
    path: PathBuf,
    bytes: u64,
    /// Entries of refused records in it (0 for a replayed segment).
    refused_entries: u64,
}

/// What the archive holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchiveTotals {
    pub bytes: u64,
    pub refused_entries: u64,
}

/// What removing old files to stay within the bound took away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evicted {
    pub files: u64,
    pub bytes: u64,
    /// Entries of refused records removed: lines never delivered anywhere.
    pub refused_entries: u64,
}

/// Why a refused record was not archived.
#[derive(Debug)]
pub enum ArchiveError {
    /// The record alone is larger than `archive_max_bytes`.
    TooLarge {
        bytes: u64,
        max: u64,
    },
    Io(io::Error),
}

impl std::fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge { bytes, max } => write!(
                f,
                "a refused record of {bytes} bytes is larger than archive_max_bytes ({max})"
            ),
            Self::Io(error) => write!(f, "archive I/O error: {error}"),
        }
    }
}

impl From<io::Error> for ArchiveError {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

/// The archive directory of one sink's queue.
#[derive(Debug)]
pub struct Archive {
    dir: PathBuf,
    max_bytes: u64,
    files: BTreeMap<u64, ArchivedFile>,
    /// The refused-records file being appended to.
    active: Option<(u64, File)>,
}

impl Archive {
    /// Reads what `dir` holds (it may not exist yet: it is created on first use).
    pub fn open(dir: PathBuf, max_bytes: u64) -> io::Result<Self> {
        let mut archive = Self {
            dir,
            max_bytes,
            files: BTreeMap::new(),
            active: None,
        };
        let entries = match fs::read_dir(&archive.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(archive),
            Err(error) => return Err(context("list", &archive.dir)(error)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some((sequence, refused)) = parse_name(name) else {
                continue;
            };
            let path = entry.path();
            let bytes = entry.metadata().map_or(0, |m| m.len());
            let refused_entries = if refused { count_entries(&path) } else { 0 };
            archive.files.insert(
                sequence,
                ArchivedFile {
                    path,
                    bytes,
                    refused_entries,
                },
            );
        }
        Ok(archive)
    }

    /// The highest sequence of a file here, if any.
    pub fn highest_sequence(&self) -> Option<u64> {
        self.files.keys().next_back().copied()
    }

    pub fn totals(&self) -> ArchiveTotals {
        ArchiveTotals {
            bytes: self.files.values().map(|f| f.bytes).sum(),
            refused_entries: self.files.values().map(|f| f.refused_entries).sum(),
        }
    }

    /// Moves a replayed segment (`from`, sequence `sequence`) into the archive, then removes
    /// the oldest files beyond the bound.
    pub fn take_segment(&mut self, from: &Path, sequence: u64) -> io::Result<Evicted> {
        self.ensure_dir()?;
        let target = self
            .dir
            .join(format!("{SEGMENT_PREFIX}{sequence:020}{SEGMENT_SUFFIX}"));
        let bytes = fs::metadata(from).map_or(0, |m| m.len());
        fs::rename(from, &target).map_err(context("archive", from))?;
        sync_dir(&self.dir)?;
        self.files.insert(
            sequence,
            ArchivedFile {
                path: target,
                bytes,
                refused_entries: 0,
            },
        );
        self.enforce_bound()
    }

    /// Appends a refused record durably; `next_sequence` names a new file when one is needed.
    pub fn append_refused(
        &mut self,
        record: &DlqRecord,
        next_sequence: &mut u64,
    ) -> Result<Evicted, ArchiveError> {
        let payload = serde_json::to_vec(record).map_err(io::Error::other)?;
        let frame = frame_bytes(&payload)?;
        let frame_len = frame.len() as u64;
        if frame_len > self.max_bytes {
            return Err(ArchiveError::TooLarge {
                bytes: frame_len,
                max: self.max_bytes,
            });
        }
        self.ensure_dir()?;
        let reuse = match &self.active {
            Some((sequence, _)) => self.files.get(sequence).is_some_and(|f| {
                f.bytes + frame_len <= REFUSED_FILE_MAX
                    && self.files.keys().next_back() == Some(sequence)
            }),
            None => false,
        };
        if !reuse {
            let sequence = *next_sequence;
            *next_sequence = sequence.saturating_add(1);
            let path = self
                .dir
                .join(format!("{REFUSED_PREFIX}{sequence:020}{SEGMENT_SUFFIX}"));
            let file = OpenOptions::new()
                .append(true)
                .create_new(true)
                .open(&path)
                .map_err(context("create", &path))?;
            sync_dir(&self.dir)?;
            self.files.insert(
                sequence,
                ArchivedFile {
                    path,
                    bytes: 0,
                    refused_entries: 0,
                },
            );
            self.active = Some((sequence, file));
        }
        let Some((sequence, file)) = self.active.as_mut() else {
            return Err(io::Error::other("no archive file open").into());
        };
        let sequence = *sequence;
        let before = self.files.get(&sequence).map_or(0, |f| f.bytes);
        if let Err(error) = file.write_all(&frame).and_then(|()| file.sync_data()) {
            // Cut back what was written; if even that fails, start a new file next time.
            if file
                .set_len(before)
                .and_then(|()| file.sync_data())
                .is_err()
            {
                self.active = None;
            }
            return Err(ArchiveError::Io(error));
        }
        if let Some(archived) = self.files.get_mut(&sequence) {
            archived.bytes = before + frame_len;
            archived.refused_entries += record.entries.len() as u64;
        }
        Ok(self.enforce_bound()?)
    }

    /// Every refused record, oldest first, up to `limit`; reads only.
    pub fn refused_records(dir: &Path, limit: usize) -> io::Result<Vec<DlqRecord>> {
        let mut names: Vec<(u64, PathBuf)> = match fs::read_dir(dir) {
            Ok(entries) => entries
                .flatten()
                .filter_map(|entry| {
                    let name = entry.file_name();
                    let (sequence, refused) = parse_name(name.to_str()?)?;
                    refused.then(|| (sequence, entry.path()))
                })
                .collect(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(context("list", dir)(error)),
        };
        names.sort();
        let mut records = Vec::new();
        for (_, path) in names {
            scan_segment(&path, |_, payload| {
                if let Ok(record) = serde_json::from_slice::<DlqRecord>(payload) {
                    records.push(record);
                }
                if records.len() >= limit {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
            if records.len() >= limit {
                break;
            }
        }
        Ok(records)
    }

    fn ensure_dir(&self) -> io::Result<()> {
        if !self.dir.is_dir() {
            fs::create_dir_all(&self.dir).map_err(context("create", &self.dir))?;
            if let Some(parent) = self.dir.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(())
    }

    /// Removes the oldest files until the archive is within its bound.
    fn enforce_bound(&mut self) -> io::Result<Evicted> {
        let mut evicted = Evicted::default();
        while self.totals().bytes > self.max_bytes {
            let Some((&sequence, _)) = self.files.first_key_value() else {
                break;
            };
            let Some(file) = self.files.remove(&sequence) else {
                break;
            };
            if self.active.as_ref().is_some_and(|(s, _)| *s == sequence) {
                self.active = None;
            }
            remove_if_exists(&file.path)?;
            evicted.files += 1;
            evicted.bytes += file.bytes;
            evicted.refused_entries += file.refused_entries;
        }
        if evicted.files > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(evicted)
    }
}

/// `(sequence, refused)` of an archive file name.
fn parse_name(name: &str) -> Option<(u64, bool)> {
    let (rest, refused) = match name.strip_prefix(REFUSED_PREFIX) {
        Some(rest) => (rest, true),
        None => (name.strip_prefix(SEGMENT_PREFIX)?, false),
    };
    let digits = rest.strip_suffix(SEGMENT_SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
        .map(|sequence| (sequence, refused))
}

/// Entries of the records in a refused-records file (unreadable frames count nothing).
fn count_entries(path: &Path) -> u64 {
    let mut entries = 0;
    let _ = scan_segment(path, |_, payload| {
        if let Ok(summary) = serde_json::from_slice::<RecordSummary>(payload) {
            entries += summary.entries;
        }
        ControlFlow::Continue(())
    });
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::DlqEntry;
    use bytes::Bytes;

    fn refused(n: usize) -> DlqRecord {
        DlqRecord {
            sink: "loki".into(),
            tenant: None,
            labels: vec![("job".into(), "app".into())],
            source: Some("app".into()),
            file: None,
            reason: "line_too_long".into(),
            detail: "max entry size '10' bytes exceeded".into(),
            written_at: "2026-12-01T00:00:00.000Z".into(),
            entries: (0..n)
                .map(|i| DlqEntry {
                    timestamp_ns: i as i64,
                    line: Bytes::from(format!("line {i} {}", "x".repeat(100))),
                    metadata: Vec::new(),
                    replays: 5,
                })
                .collect(),
        }
    }

    #[test]
    fn refused_records_are_kept_within_the_bound_oldest_removed_first() {
        let dir = tempfile::tempdir().unwrap();
        let archive_dir = dir.path().join("archive");
        let one = frame_bytes(&serde_json::to_vec(&refused(10)).unwrap())
            .unwrap()
            .len() as u64;
        let mut archive = Archive::open(archive_dir.clone(), one * 3).unwrap();
        let mut next = 0;
        let mut evicted_entries = 0;
        for _ in 0..5 {
            // One file per record, so that eviction has whole files to take.
            archive.active = None;
            let evicted = archive.append_refused(&refused(10), &mut next).unwrap();
            evicted_entries += evicted.refused_entries;
        }
        assert!(archive.totals().bytes <= one * 3);
        assert_eq!(archive.totals().refused_entries, 30);
        assert_eq!(evicted_entries, 20, "the oldest two records went, counted");
        let kept = Archive::refused_records(&archive_dir, usize::MAX).unwrap();
        assert_eq!(kept.len(), 3);
        assert_eq!(kept[0].detail, "max entry size '10' bytes exceeded");
        // Reopened, the totals are read back from the files.
        let reopened = Archive::open(archive_dir, one * 3).unwrap();
        assert_eq!(reopened.totals(), archive.totals());
        assert_eq!(reopened.highest_sequence(), Some(4));
    }

    #[test]
    fn a_record_larger_than_the_whole_archive_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut archive = Archive::open(dir.path().join("archive"), 100).unwrap();
        let mut next = 0;
        assert!(matches!(
            archive.append_refused(&refused(10), &mut next),
            Err(ArchiveError::TooLarge { .. })
        ));
        assert_eq!(archive.totals(), ArchiveTotals::default());
    }
}
