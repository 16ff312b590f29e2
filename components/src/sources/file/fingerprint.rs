//! Telling files apart.
//!
//! A device and inode name a file only while it exists: ext4 hands a freed inode to the next
//! file created, often at once, so the `app.log` a logrotate run creates may carry the inode of
//! the `app.log.1` it just replaced. An offset learnt for one file must therefore never be
//! applied to another that merely shares its inode.
//!
//! Guarantees:
//! - [`Remembered::recognises`] accepts a file only when, beyond device and inode, its birth
//!   time (where the filesystem records one) is the remembered one, its first bytes hash to the
//!   remembered head, and the bytes just before the remembered offset hash to the remembered
//!   marker. Two files differing in any of these are never taken for each other; files with the
//!   same birth time, head and bytes before the offset are indistinguishable, and resuming one
//!   at the other's offset skips nothing it did not already hold.
//! - [`Behind`] holds the bytes just before the read position exactly as they were read, so the
//!   next read, started that far back, tells a file that only grew from one truncated (shorter
//!   than them) or rewritten (other bytes there) since, in the same `pread` as the new data.
//! - Nothing here panics on a file that is short, unreadable or gone: it simply does not match.

use std::fs::{File, Metadata};
use std::os::unix::fs::FileExt;
use std::time::UNIX_EPOCH;

use xxhash_rust::xxh3::xxh3_64;

/// Bytes hashed to fingerprint a file's beginning.
pub const HEAD_BYTES: u64 = 256;
/// Bytes before an offset hashed into its marker.
pub const MARKER_BYTES: u64 = 64;

/// xxh3 of `len` bytes at `offset`; `None` if the file is shorter or unreadable.
pub fn hash_range(file: &File, offset: u64, len: u64) -> Option<u64> {
    let len = usize::try_from(len).ok()?;
    // Heads and markers fit on the stack: no allocation for the check made at every read.
    let mut small = [0u8; HEAD_BYTES as usize];
    let mut large = Vec::new();
    let buf = match small.get_mut(..len) {
        Some(buf) => buf,
        None => {
            large.resize(len, 0);
            &mut large[..]
        }
    };
    file.read_exact_at(buf, offset).ok()?;
    Some(xxh3_64(buf))
}

/// The file's birth time in nanoseconds since the epoch, where the filesystem records one
/// (statx on ext4, xfs, btrfs); `None` elsewhere.
pub fn born_ns(meta: &Metadata) -> Option<i64> {
    let created = meta.created().ok()?;
    let since = created.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(since.as_nanos()).ok()
}

/// Whether two birth times may belong to the same file (an unknown one says nothing).
pub fn same_birth(a: Option<i64>, b: Option<i64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// The hash of a file's first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub hash: u64,
    /// Bytes covered: `HEAD_BYTES`, or the whole file when it was shorter.
    pub len: u64,
}

impl Head {
    /// The head of a file that is `size` bytes long (the empty head when unreadable).
    pub fn of(file: &File, size: u64) -> Self {
        let len = size.min(HEAD_BYTES);
        match hash_range(file, 0, len) {
            Some(hash) => Self { hash, len },
            None => Self::empty(),
        }
    }

    /// The head of an empty file.
    pub fn empty() -> Self {
        Self {
            hash: xxh3_64(b""),
            len: 0,
        }
    }

    /// Whether `file` begins with the bytes this head was taken from.
    pub fn matches(&self, file: &File) -> bool {
        hash_range(file, 0, self.len) == Some(self.hash)
    }
}

/// The hash of the bytes just before an offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Marker {
    pub hash: u64,
    /// Bytes covered (0: no marker, as for offset 0).
    pub len: u32,
}

impl Marker {
    /// The marker of `offset` in `file`; the empty marker when unreadable.
    pub fn at(file: &File, offset: u64) -> Self {
        let len = offset.min(MARKER_BYTES);
        if len == 0 {
            return Self::default();
        }
        match hash_range(file, offset - len, len) {
            Some(hash) => Self {
                hash,
                len: len as u32,
            },
            None => Self::default(),
        }
    }

    /// The marker of `offset` from the bytes just before it (`tail`, as read), when they reach
    /// back as far as the marker does; `None` when the file must be read for it.
    pub fn of_tail(tail: &[u8], offset: u64) -> Option<Self> {
        let len = usize::try_from(offset.min(MARKER_BYTES)).ok()?;
        if len == 0 {
            return Some(Self::default());
        }
        let bytes = tail.get(tail.len().checked_sub(len)?..)?;
        Some(Self {
            hash: xxh3_64(bytes),
            len: len as u32,
        })
    }

    /// Whether the bytes before `offset` in `file` are the ones this marker was taken from.
    /// An empty marker matches any file at least `offset` bytes long.
    pub fn matches(&self, file: &File, offset: u64, size: u64) -> bool {
        if offset > size {
            return false;
        }
        if self.len == 0 {
            return true;
        }
        let len = u64::from(self.len).min(offset);
        hash_range(file, offset - len, len) == Some(self.hash)
    }
}

/// Bytes before the read position a read starts with, to compare (see [`Behind`]).
pub const BEHIND_BYTES: usize = 64;

/// The last bytes read before a file's read position: `min(BEHIND_BYTES, position)` of them.
/// Kept per followed file (64 bytes), so the truncation check of a read costs no system call
/// of its own: a file truncated and rewritten past the position between two reads differs in
/// these bytes (and is caught even when it begins with the same bytes as before, which a
/// comparison of the heads misses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Behind {
    bytes: [u8; BEHIND_BYTES],
    len: u8,
}

impl Behind {
    /// The window of position 0: nothing before it.
    pub fn start() -> Self {
        Self {
            bytes: [0; BEHIND_BYTES],
            len: 0,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The window of the position `position` after `read` more bytes were read onto
    /// `buffered`, the file's bytes that end at `position` (the partial line kept from before
    /// and `read`'s bytes, `read` being its last `read` bytes); `before` is the window of the
    /// position before the read, where known. `None` when these do not reach back far enough.
    pub fn advanced(
        before: Option<&Self>,
        buffered: &[u8],
        read: usize,
        position: u64,
    ) -> Option<Self> {
        let need = usize::try_from(position)
            .unwrap_or(usize::MAX)
            .min(BEHIND_BYTES);
        let mut window = Self::start();
        if let Some(from) = buffered.len().checked_sub(need) {
            let tail = &buffered[from..];
            window.bytes[..need].copy_from_slice(tail);
        } else {
            // Fewer bytes buffered than the window holds: the old window's end, then the read.
            let fresh = buffered.get(buffered.len().checked_sub(read)?..)?;
            let old = before?.as_slice();
            let from_old = need.checked_sub(fresh.len())?;
            window.bytes[..from_old].copy_from_slice(old.get(old.len().checked_sub(from_old)?..)?);
            window.bytes[from_old..need].copy_from_slice(fresh);
        }
        window.len = need as u8;
        Some(window)
    }
}

/// What is kept of a file the source stopped following (released after rotation, or skipped
/// as too old), so that it is recognised, and only it, if it is found again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remembered {
    pub head: Head,
    pub born: Option<i64>,
    /// Where reading would go on.
    pub offset: u64,
    pub marker: Marker,
}

impl Remembered {
    /// Takes what identifies `file`, to go on at `offset`.
    pub fn of(file: &File, meta: &Metadata, head: Head, offset: u64) -> Self {
        Self {
            head,
            born: born_ns(meta),
            offset,
            marker: Marker::at(file, offset),
        }
    }

    /// Whether `file` (with `meta`) is the file remembered: see the module's guarantees.
    pub fn recognises(&self, file: &File, meta: &Metadata) -> bool {
        same_birth(self.born, born_ns(meta))
            && meta.len() >= self.head.len
            && self.head.matches(file)
            && self.marker.matches(file, self.offset, meta.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    fn write(path: &std::path::Path, text: &str) -> (File, Metadata) {
        let mut file = File::create(path).unwrap();
        file.write_all(text.as_bytes()).unwrap();
        let file = File::open(path).unwrap();
        let meta = file.metadata().unwrap();
        (file, meta)
    }

    #[test]
    fn a_marker_taken_from_what_was_read_is_the_one_read_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let content: String = (0..40).map(|i| format!("line {i}\n")).collect();
        let (file, _) = write(&dir.path().join("a.log"), &content);
        let bytes = content.as_bytes();
        for offset in [0, 1, 7, 63, 64, 65, 200, bytes.len()] {
            let read = &bytes[..offset];
            assert_eq!(
                Marker::of_tail(read, offset as u64),
                Some(Marker::at(&file, offset as u64)),
                "offset {offset}"
            );
            // Only the last 64 bytes are needed; fewer (a read shorter than the marker) are
            // not enough, and the file must be read.
            let last = &read[read.len().saturating_sub(64)..];
            assert_eq!(
                Marker::of_tail(last, offset as u64),
                Some(Marker::at(&file, offset as u64))
            );
            if offset > 10 {
                assert_eq!(Marker::of_tail(&read[offset - 10..], offset as u64), None);
            }
        }
        // Ranges longer than a head are hashed too.
        assert_eq!(hash_range(&file, 0, 300), Some(xxh3_64(&bytes[..300])));
        assert_eq!(hash_range(&file, 0, bytes.len() as u64 + 1), None);
    }

    #[test]
    fn a_new_file_on_a_reused_inode_is_not_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let (old, old_meta) = write(&path, "first generation line one\nline two\n");
        let remembered = Remembered::of(&old, &old_meta, Head::of(&old, old_meta.len()), 20);
        assert!(remembered.recognises(&old, &old_meta));
        drop(old);
        std::fs::remove_file(&path).unwrap();
        let (new, new_meta) = write(&path, "second generation, a longer first line\nand more\n");
        // ext4 usually hands the inode straight back; the identity must not depend on it.
        eprintln!(
            "inode reused: {}",
            old_meta.ino() == new_meta.ino() && old_meta.dev() == new_meta.dev()
        );
        assert!(!remembered.recognises(&new, &new_meta));
    }

    #[test]
    fn the_same_file_grown_is_recognised_and_a_rewritten_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let (file, meta) = write(&path, "line one\nline two\n");
        let remembered = Remembered::of(&file, &meta, Head::of(&file, meta.len()), meta.len());
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"line three\n")
            .unwrap();
        let grown = std::fs::metadata(&path).unwrap();
        assert!(remembered.recognises(&file, &grown));
        // Same head, same length, other bytes before the offset: rewritten in place.
        std::fs::write(&path, "line one\nline 2!!\nline three\n").unwrap();
        let rewritten = std::fs::metadata(&path).unwrap();
        assert!(!remembered.recognises(&file, &rewritten));
    }

    #[test]
    fn the_window_behind_a_position_follows_reads_of_any_size() {
        let content: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
        // Reads of 1, 5, 70 and 3 bytes with partial lines of various lengths kept before them.
        let mut window = Some(Behind::start());
        let mut position = 0usize;
        for (read, kept) in [(1, 0), (5, 3), (70, 10), (3, 0), (2, 2), (64, 0), (1, 65)] {
            let end = position + read;
            let buffered = &content[end - read - kept.min(position)..end];
            window = Behind::advanced(window.as_ref(), buffered, read, end as u64);
            let expected = &content[end.saturating_sub(BEHIND_BYTES)..end];
            assert_eq!(
                window.map(|w| w.as_slice().to_vec()),
                Some(expected.to_vec())
            );
            position = end;
        }
        // Without the window before, a short read does not reach back far enough.
        assert_eq!(Behind::advanced(None, &content[100..110], 10, 110), None);
        assert!(Behind::advanced(None, &content[..110], 10, 110).is_some());
    }

    #[test]
    fn empty_files_match_their_empty_head_and_marker() {
        let dir = tempfile::tempdir().unwrap();
        let (file, meta) = write(&dir.path().join("empty.log"), "");
        let head = Head::of(&file, meta.len());
        assert_eq!(head, Head::empty());
        let remembered = Remembered::of(&file, &meta, head, 0);
        assert_eq!(remembered.marker, Marker::default());
        assert!(remembered.recognises(&file, &meta));
        assert!(!Marker::default().matches(&file, 10, meta.len()));
    }
}
