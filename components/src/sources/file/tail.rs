//! Following one file: opening it (within `max_open_files`), reading what it has, cutting
//! lines and handing them to the outbox with the offset they reach.
//!
//! Guarantees:
//! - A file is opened only if the descriptor still names the followed file (device, inode,
//!   birth time); a path that names another file now is looked at afresh.
//! - At most `max_open_files` files are open: the longest-idle file at its end is closed to
//!   open another, and reopened where it was.
//! - A read asks for what the file holds beyond the read position (at least 16 KiB), not the
//!   whole buffer; at most 16 reads of one file per turn (fairness).
//! - Every turn checks a file for truncation before it trusts what it reads: where the bytes
//!   just before the read position are known ([`Behind`]), the first read starts there and
//!   compares them (one `pread` for the check and the data); otherwise a stat and a look at the
//!   head come first ([`Reader::check_truncation`]). Regular files are read with `pread` at the
//!   read position, never through the descriptor's own offset.
//! - The offset a batch's token carries is just past its last whole line, with the marker of
//!   the bytes before it, so a restart resumes exactly there and can check it is the same file.

use std::fs::{File, Metadata};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use super::events::FileReadFailed;
use super::fingerprint::{self, BEHIND_BYTES, Behind, HEAD_BYTES, Head, Marker, born_ns};
use super::lines::LineSplitter;
use super::positions::{FileKey, FilePosition};
use super::reader::Reader;
use super::{AckToken, Entry, metrics, now_rfc3339};
use crate::event::{LogEvent, now_ns};
use crate::telemetry::TelemetryEvent;

/// Most reads of one file before the reader moves on to the next (fairness).
const READS_PER_TURN: usize = 16;
/// The smallest read asked of a regular file.
const MIN_READ_BYTES: usize = 16 * 1024;

/// Opens a file for reading without updating its access time where the kernel allows it
/// (`O_NOATIME`: files the shipper owns, or with CAP_FOWNER): a file being written has an mtime
/// newer than its atime, so under `relatime` every read would otherwise write its inode.
/// Falls back to a plain open where the flag is refused.
pub(super) fn open_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path)
    {
        Err(err) if err.raw_os_error() == Some(libc::EPERM) => File::open(path),
        opened => opened,
    }
}

/// A path as the `file` of the events read from it.
pub(super) fn event_file_name(path: &Path) -> Arc<str> {
    Arc::from(path.to_string_lossy().as_ref())
}

/// The size of a regular file; `None` for pipes, devices and the like, whose size says nothing
/// about what a read returns.
pub(super) fn regular_file_size(meta: &Metadata) -> Option<u64> {
    meta.is_file().then_some(meta.len())
}

/// Reads up to `want` bytes of `file` onto the end of `buf`, into its spare capacity: unlike
/// `Read::read` into a resized buffer, the memory is not zero-filled first (that memset was a
/// tenth of the file source's CPU at 10k lines/s). Reads at offset `at` (`pread`) where given,
/// else from the descriptor's offset (pipes). Returns the bytes read; `buf` grows by them.
fn read_appending(
    file: &File,
    buf: &mut BytesMut,
    want: usize,
    at: Option<u64>,
) -> std::io::Result<usize> {
    buf.reserve(want);
    let spare = &mut buf.spare_capacity_mut()[..want];
    let read = match at {
        // SAFETY (both calls): read(2) and pread(2) write at most `spare.len()` bytes into
        // memory that `buf` owns and has reserved, and report how many they wrote.
        Some(offset) => unsafe {
            libc::pread(
                file.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
                file_offset(offset)?,
            )
        },
        None => unsafe { libc::read(file.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) },
    };
    let n = usize::try_from(read).map_err(|_| std::io::Error::last_os_error())?;
    // SAFETY: the `n <= want` bytes after the old length were just written by read(2).
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

fn file_offset(offset: u64) -> std::io::Result<libc::off_t> {
    libc::off_t::try_from(offset)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
}

/// What a read that began with the bytes before the read position found.
#[derive(Debug, PartialEq)]
enum ReadOn {
    /// They were as read before: this many new bytes were appended.
    Read(usize),
    /// The file is shorter than the read position now, or holds other bytes before it: it was
    /// truncated (and perhaps written again) since the last read. Nothing was appended.
    Changed,
}

/// Reads up to `want` bytes of `file` at `position` onto the end of `buf` in one `preadv` that
/// starts `behind`'s length earlier, into a scratch buffer first, and compares those bytes.
fn read_on(
    file: &File,
    behind: &Behind,
    buf: &mut BytesMut,
    want: usize,
    position: u64,
) -> std::io::Result<ReadOn> {
    let expected = behind.as_slice();
    let mut seen = [0u8; BEHIND_BYTES];
    buf.reserve(want);
    let spare = &mut buf.spare_capacity_mut()[..want];
    let parts = [
        libc::iovec {
            iov_base: seen.as_mut_ptr().cast(),
            iov_len: expected.len(),
        },
        libc::iovec {
            iov_base: spare.as_mut_ptr().cast(),
            iov_len: spare.len(),
        },
    ];
    let from = file_offset(position.saturating_sub(expected.len() as u64))?;
    // SAFETY: preadv(2) writes at most each iovec's length into its memory: `seen`, a local
    // array of at least `expected.len()` bytes, and the spare capacity `buf` reserved; both
    // outlive the call. It reports how many bytes it wrote in all.
    let read = unsafe { libc::preadv(file.as_raw_fd(), parts.as_ptr(), 2, from) };
    let n = usize::try_from(read).map_err(|_| std::io::Error::last_os_error())?;
    if n < expected.len() || seen[..expected.len()] != *expected {
        return Ok(ReadOn::Changed);
    }
    let fresh = n - expected.len();
    // SAFETY: the `fresh <= want` bytes after the old length were just written by preadv(2).
    unsafe { buf.set_len(buf.len() + fresh) };
    Ok(ReadOn::Read(fresh))
}

/// What one read's result means for the turn.
#[derive(Debug)]
enum ReadStep {
    /// This many bytes were read; 0 is the end of what the file holds now.
    Read(usize),
    /// A signal arrived before anything was read (EINTR, seen on NFS and FUSE mounts): read
    /// again. Taking it for the end would leave the file's tail unread until its next write.
    Again,
    Failed(std::io::Error),
}

impl ReadStep {
    fn of(read: std::io::Result<usize>) -> Self {
        match read {
            Ok(n) => Self::Read(n),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => Self::Again,
            Err(err) => Self::Failed(err),
        }
    }
}

/// One followed file.
pub(super) struct Tracked {
    pub(super) path: PathBuf,
    /// `path` as the events' `file`, made once (and again on rename), not once per read.
    pub(super) name: Arc<str>,
    pub(super) file: Option<File>,
    /// Bytes read from the file so far (the partial line included).
    pub(super) read_pos: u64,
    /// Offset just past the last handled line: the `read_offset` of the positions.
    pub(super) emitted: u64,
    pub(super) buf: BytesMut,
    pub(super) splitter: LineSplitter,
    pub(super) head: Head,
    /// Birth time, where the filesystem records one: tells a reused inode apart.
    pub(super) born: Option<i64>,
    /// The marker of `emitted`, kept for when the file is released.
    pub(super) marker: Marker,
    /// The bytes just before `read_pos` as read, where known: the next turn's truncation check.
    pub(super) behind: Option<Behind>,
    /// A regular file: read with `pread` at `read_pos`; its short read is its end.
    pub(super) seekable: bool,
    pub(super) epoch: u64,
    pub(super) dirty: bool,
    pub(super) at_eof: bool,
    pub(super) last_activity: Instant,
    /// Set when the file was renamed away or deleted: drain, then release.
    pub(super) rotated: bool,
}

impl Tracked {
    /// Whether this turn's truncation check can be made inside the first read: a regular file
    /// whose bytes before the read position are known, with its head complete or not yet read
    /// past (a head still growing is taken again by the stat-first check).
    fn checks_in_read(&self) -> bool {
        self.seekable
            && self.behind.is_some()
            && (self.head.len >= HEAD_BYTES || self.read_pos <= self.head.len)
    }
}

impl Reader {
    pub(super) fn track(
        &mut self,
        path: &Path,
        key: FileKey,
        start: u64,
        meta: &Metadata,
        rotated: bool,
    ) {
        let file = open_file(path).ok().filter(|f| {
            f.metadata()
                .is_ok_and(|m| m.dev() == key.dev && m.ino() == key.inode)
        });
        self.track_open(path, key, start, meta, rotated, file);
    }

    /// Starts following a file, keeping `file` open when a descriptor slot is free.
    pub(super) fn track_open(
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
                open_file(path).map_or_else(|_| Head::empty(), |f| Head::of(&f, meta.len())),
                Marker::default(),
            ),
        };
        let born = born_ns(meta);
        let tracked = Tracked {
            path: path.to_path_buf(),
            name: event_file_name(path),
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
            behind: (start == 0).then(Behind::start),
            seekable: meta.is_file(),
            epoch,
            dirty: true,
            at_eof: false,
            last_activity: Instant::now(),
            rotated,
        };
        self.shared.with_table(|table| {
            // Under the table's lock, so that the committer's save that clears it sees the file.
            self.shared
                .files_changed
                .store(true, std::sync::atomic::Ordering::Release);
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
    pub(super) fn ensure_open(&mut self, key: FileKey) -> bool {
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
        let opened = open_file(&tracked.path).and_then(|mut file| {
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
    pub(super) fn read_file(&mut self, key: FileKey) -> bool {
        if !self.ensure_open(key) {
            return false;
        }
        // The turn's truncation check: inside the first read where the bytes before the read
        // position are known, else a stat and a look at the head first, whose size then serves
        // the first read (one stat per turn).
        let mut check_in_read = self.files.get(&key).is_some_and(Tracked::checks_in_read);
        let mut size_seen = None;
        if !check_in_read {
            size_seen = self.check_truncation(key, false);
        }
        let read_buffer = self.config.read_buffer_bytes;
        let mut progressed = false;
        let mut drained = false;
        for _ in 0..READS_PER_TURN {
            let Some(tracked) = self.files.get_mut(&key) else {
                return progressed;
            };
            let Some(file) = tracked.file.as_mut() else {
                return progressed;
            };
            let checked_here = check_in_read;
            let (read, want, regular) = if std::mem::take(&mut check_in_read) {
                // What the file holds is unknown without a stat: ask for the least a regular
                // read asks for; a read that fills it is followed by stat-sized ones.
                let want = MIN_READ_BYTES.min(read_buffer);
                let behind = tracked.behind.unwrap_or_else(Behind::start);
                match read_on(file, &behind, &mut tracked.buf, want, tracked.read_pos) {
                    Ok(ReadOn::Read(n)) => (Ok(n), want, true),
                    Ok(ReadOn::Changed) => {
                        // Truncated or rewritten since the last read: read it again from 0.
                        self.check_truncation(key, true);
                        continue;
                    }
                    Err(err) => (Err(err), want, true),
                }
            } else {
                let size = size_seen
                    .take()
                    .or_else(|| regular_file_size(&file.metadata().ok()?));
                // Ask for what the file holds beyond the read position and one byte more (at
                // least 16 KiB, so a file that grew since the stat is read on), not for the whole
                // buffer: a trickle of lines should not reserve 256 KiB each time, and a read
                // that returns less than it asked for has reached the end without a second read
                // to find out.
                let want = match size {
                    Some(size) => usize::try_from(size.saturating_sub(tracked.read_pos))
                        .unwrap_or(usize::MAX)
                        .saturating_add(1)
                        .clamp(MIN_READ_BYTES.min(read_buffer), read_buffer),
                    None => read_buffer,
                };
                let at = tracked.seekable.then_some(tracked.read_pos);
                (
                    read_appending(file, &mut tracked.buf, want, at),
                    want,
                    size.is_some(),
                )
            };
            let n = match ReadStep::of(read) {
                ReadStep::Read(n) => n,
                ReadStep::Again => {
                    // Nothing was read: the turn's truncation check has not been made yet if
                    // this read was to make it.
                    check_in_read = checked_here;
                    continue;
                }
                ReadStep::Failed(err) => {
                    tracked.dirty = false;
                    FileReadFailed {
                        component: &self.component,
                        path: &tracked.path,
                        error: &err,
                        log: &mut self.read_error_log,
                    }
                    .emit();
                    return progressed;
                }
            };
            if n == 0 {
                tracked.at_eof = true;
                tracked.dirty = false;
                drained = true;
                break;
            }
            progressed = true;
            // A regular file read short is at its end: what is written next comes with an event
            // of its own. Pipes and other files read short at any time, so they read until 0.
            let at_end = regular && n < want;
            tracked.at_eof = at_end;
            if at_end {
                tracked.dirty = false;
            }
            tracked.read_pos += n as u64;
            if tracked.seekable {
                tracked.behind =
                    Behind::advanced(tracked.behind.as_ref(), &tracked.buf, n, tracked.read_pos);
            }
            tracked.last_activity = Instant::now();
            self.turn.read_bytes += n as u64;
            self.emit_lines(key, false);
            if at_end || self.outbox.closed() {
                drained = true;
                break;
            }
            if self.outbox.blocked() {
                // More to read once the pipeline has room: a backlog, not a trickle to wait for.
                break;
            }
        }
        if !drained {
            self.turn.backlog = true;
        }
        progressed
    }

    /// Splits what is buffered and sends the lines as one batch.
    pub(super) fn emit_lines(&mut self, key: FileKey, flush_partial: bool) {
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
        // The marker: the bytes just before `end`, taken from what was just read when it
        // reaches that far back, else read from the file.
        let marker = match (Marker::of_tail(&split.tail, end), &tracked.file) {
            (Some(marker), _) => marker,
            (None, Some(file)) => Marker::at(file, end),
            (None, None) => Marker::default(),
        };
        tracked.marker = marker;
        let token = AckToken {
            key,
            epoch: tracked.epoch,
            end,
            marker: marker.hash,
            marker_len: marker.len,
        };
        let file = tracked.name.clone();
        let lines = split.lines;
        self.shared.with_table(|table| {
            if let Some(entry) = table.get_mut(&key) {
                entry.position.read_offset = end;
            }
        });
        if lines.is_empty() {
            // Only skipped bytes (oversize tail, dropped line): the token alone, so the
            // committed offset may move past them.
            self.outbox.add(Vec::new(), token, split.consumed);
            return;
        }
        // Every event of the read shares the file's name.
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
        self.turn.lines += count as u64;
        self.outbox.add(events, token, split.consumed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::file::reader::testing::append;

    #[test]
    fn reads_append_to_what_is_buffered_and_stop_at_the_end_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"second\nthird").unwrap();
        let file = File::open(&path).unwrap();
        let mut buf = BytesMut::from(&b"first\n"[..]);

        assert_eq!(read_appending(&file, &mut buf, 4, None).unwrap(), 4);
        assert_eq!(&buf[..], b"first\nseco");
        assert_eq!(read_appending(&file, &mut buf, 1024, None).unwrap(), 8);
        assert_eq!(&buf[..], b"first\nsecond\nthird");
        assert_eq!(read_appending(&file, &mut buf, 1024, None).unwrap(), 0);
        assert_eq!(&buf[..], b"first\nsecond\nthird");

        append(&path, "\nfourth\n");
        assert_eq!(read_appending(&file, &mut buf, 1024, None).unwrap(), 8);
        assert_eq!(&buf[..], b"first\nsecond\nthird\nfourth\n");
    }

    #[test]
    fn a_pread_reads_at_its_offset_and_leaves_the_descriptors_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"0123456789").unwrap();
        let file = File::open(&path).unwrap();
        let mut buf = BytesMut::new();
        assert_eq!(read_appending(&file, &mut buf, 4, Some(3)).unwrap(), 4);
        assert_eq!(&buf[..], b"3456");
        assert_eq!(read_appending(&file, &mut buf, 100, Some(7)).unwrap(), 3);
        assert_eq!(&buf[..], b"3456789");
        assert_eq!(read_appending(&file, &mut buf, 4, None).unwrap(), 4);
        assert_eq!(&buf[..], b"34567890123");
    }

    #[test]
    fn a_read_on_appends_only_when_the_bytes_before_the_position_are_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let first = b"first line\nsecond line\n";
        std::fs::write(&path, first).unwrap();
        let file = File::open(&path).unwrap();
        let position = first.len() as u64;
        let behind = Behind::advanced(None, first, first.len(), position).unwrap();
        let mut buf = BytesMut::from(&b"kept"[..]);

        // Nothing new: the bytes before match, nothing is appended.
        assert_eq!(
            read_on(&file, &behind, &mut buf, 64, position).unwrap(),
            ReadOn::Read(0)
        );
        append(&path, "third\n");
        assert_eq!(
            read_on(&file, &behind, &mut buf, 64, position).unwrap(),
            ReadOn::Read(6)
        );
        assert_eq!(&buf[..], b"keptthird\n");

        // Truncated below the position, then rewritten past it (same length and head).
        std::fs::write(&path, b"first line\nSECOND line\nthird\n").unwrap();
        assert_eq!(
            read_on(&file, &behind, &mut buf, 64, position).unwrap(),
            ReadOn::Changed
        );
        std::fs::write(&path, b"first").unwrap();
        assert_eq!(
            read_on(&file, &behind, &mut buf, 64, position).unwrap(),
            ReadOn::Changed
        );
        assert_eq!(&buf[..], b"keptthird\n");

        // At position 0 there is nothing to compare.
        let mut fresh = BytesMut::new();
        assert_eq!(
            read_on(&file, &Behind::start(), &mut fresh, 64, 0).unwrap(),
            ReadOn::Read(5)
        );
        assert_eq!(&fresh[..], b"first");
    }

    #[test]
    fn an_interrupted_read_is_read_again_not_taken_for_the_end_of_the_file() {
        let interrupted = std::io::Error::from(std::io::ErrorKind::Interrupted);
        assert!(matches!(ReadStep::of(Err(interrupted)), ReadStep::Again));
        assert!(matches!(ReadStep::of(Ok(0)), ReadStep::Read(0)));
        assert!(matches!(ReadStep::of(Ok(7)), ReadStep::Read(7)));
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(matches!(ReadStep::of(Err(denied)), ReadStep::Failed(_)));
    }

    #[test]
    fn a_read_error_leaves_the_buffer_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        // A directory opens but does not read (EISDIR).
        let file = File::open(dir.path()).unwrap();
        let mut buf = BytesMut::from(&b"kept"[..]);
        assert!(read_appending(&file, &mut buf, 16, None).is_err());
        assert_eq!(&buf[..], b"kept");
    }
}
