//! Line splitting for the file source.
//!
//! Guarantees:
//! - A line ends at `\n`; a `\r` just before it is removed. Lines are `Bytes` slices of the read
//!   buffer: no per-line allocation or copy (except for `invalid_utf8: replace` of a bad line).
//! - A line longer than `max_line_bytes` is cut to that length (`truncate`) or dropped whole
//!   (`drop`); either way the rest of it, up to its newline, is skipped, never emitted as a line
//!   of its own. The skip state survives across reads.
//! - `consumed` tells how many bytes of the buffer are handled (emitted, cut or skipped): the
//!   partial line after them stays in the buffer for the next read.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::fingerprint::MARKER_BYTES;

/// What to do with a line longer than `max_line_bytes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Oversize {
    /// Keep its first `max_line_bytes` bytes (counted in `lines_truncated_total`).
    #[default]
    Truncate,
    /// Drop it (counted in `dropped_total{reason="oversize"}`).
    Drop,
}

/// What happens to lines that are not valid UTF-8. Both count them in `invalid_utf8_lines_total`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidUtf8 {
    /// Pass the bytes on as they are (Loki's JSON encoding replaces them; protobuf keeps them).
    #[default]
    Keep,
    /// Replace each invalid sequence with U+FFFD.
    Replace,
}

/// The outcome of one split.
#[derive(Debug, Default, PartialEq)]
pub struct Split {
    pub lines: Vec<Bytes>,
    /// Bytes of the buffer handled; the caller's offset moves by this much.
    pub consumed: usize,
    /// The last of the handled bytes (up to [`MARKER_BYTES`]): what the position marker hashes,
    /// without reading it back from the file.
    pub tail: Bytes,
    pub truncated: usize,
    pub dropped: usize,
    pub invalid_utf8: usize,
}

/// Chunks of lines smaller than this are copied out of the read buffer (see
/// [`LineSplitter::split`]): copying 32 KiB costs less than a fresh read buffer and its page
/// faults.
pub const COPY_BELOW_BYTES: usize = 32 * 1024;

/// Splits buffers into lines, remembering state across reads of one file.
#[derive(Debug)]
pub struct LineSplitter {
    max_line_bytes: usize,
    oversize: Oversize,
    invalid_utf8: InvalidUtf8,
    /// Inside an oversize line whose head was already handled: skip to its newline.
    skipping: bool,
    /// How much of the partial line at the front of the buffer has been searched already.
    scanned: usize,
}

impl LineSplitter {
    pub fn new(max_line_bytes: usize, oversize: Oversize, invalid_utf8: InvalidUtf8) -> Self {
        Self {
            max_line_bytes: max_line_bytes.max(1),
            oversize,
            invalid_utf8,
            skipping: false,
            scanned: 0,
        }
    }

    /// Forgets the state (the file was truncated or replaced).
    pub fn reset(&mut self) {
        self.skipping = false;
        self.scanned = 0;
    }

    /// Takes every complete line off the front of `buf`. With `flush_partial`, the trailing
    /// partial line counts as complete (end of a rotated file, or idle past `eof_timeout`).
    pub fn split(&mut self, buf: &mut BytesMut, flush_partial: bool) -> Split {
        let mut ranges: Vec<Range<usize>> = Vec::new();
        let mut split = Split::default();
        let mut start = 0;
        for newline in memchr::memchr_iter(b'\n', &buf[self.scanned.min(buf.len())..]) {
            let end = self.scanned + newline;
            if self.skipping {
                self.skipping = false;
            } else {
                self.push_line(&mut ranges, &mut split, start, end, buf);
            }
            start = end + 1;
        }
        let rest = buf.len() - start;
        if self.skipping {
            // The rest belongs to an oversize line already handled.
            start = buf.len();
            if flush_partial {
                self.skipping = false;
            }
        } else if rest > self.max_line_bytes {
            // A partial line already too long: handle its head now, skip its tail later.
            self.push_line(&mut ranges, &mut split, start, buf.len(), buf);
            start = buf.len();
            self.skipping = !flush_partial;
        } else if flush_partial && rest > 0 {
            self.push_line(&mut ranges, &mut split, start, buf.len(), buf);
            start = buf.len();
        }
        split.consumed = start;
        self.scanned = buf.len() - start;
        let mut chunk = buf.split_to(start).freeze();
        if chunk.len() < COPY_BELOW_BYTES {
            // A small read: give its lines an allocation of their own, so they do not pin the
            // whole read buffer while they travel, and the buffer is reused for the next read.
            chunk = Bytes::copy_from_slice(&chunk);
        }
        split.tail = chunk.slice(chunk.len().saturating_sub(MARKER_BYTES as usize)..);
        split.lines = self.finish(chunk, ranges, &mut split.invalid_utf8);
        split
    }

    fn push_line(
        &self,
        ranges: &mut Vec<Range<usize>>,
        split: &mut Split,
        start: usize,
        mut end: usize,
        buf: &[u8],
    ) {
        if end > start && buf[end - 1] == b'\r' {
            end -= 1;
        }
        if end - start > self.max_line_bytes {
            match self.oversize {
                Oversize::Truncate => {
                    split.truncated += 1;
                    ranges.push(start..start + self.max_line_bytes);
                }
                Oversize::Drop => split.dropped += 1,
            }
        } else {
            ranges.push(start..end);
        }
    }

    fn finish(&self, chunk: Bytes, ranges: Vec<Range<usize>>, invalid: &mut usize) -> Vec<Bytes> {
        // One validation pass over the whole chunk; lines are checked one by one only when the
        // chunk as a whole is not valid UTF-8 (rare).
        if std::str::from_utf8(&chunk).is_ok() {
            return ranges.into_iter().map(|r| chunk.slice(r)).collect();
        }
        ranges
            .into_iter()
            .map(|r| {
                let line = chunk.slice(r);
                if std::str::from_utf8(&line).is_ok() {
                    return line;
                }
                *invalid += 1;
                match self.invalid_utf8 {
                    InvalidUtf8::Keep => line,
                    InvalidUtf8::Replace => {
                        Bytes::from(String::from_utf8_lossy(&line).into_owned().into_bytes())
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(
        splitter: &mut LineSplitter,
        input: &[&[u8]],
        flush: bool,
    ) -> (Vec<Vec<u8>>, usize) {
        let mut buf = BytesMut::new();
        let mut lines = Vec::new();
        let mut consumed = 0;
        for (i, piece) in input.iter().enumerate() {
            buf.extend_from_slice(piece);
            let s = splitter.split(&mut buf, flush && i == input.len() - 1);
            consumed += s.consumed;
            lines.extend(s.lines.iter().map(|l| l.to_vec()));
        }
        (lines, consumed)
    }

    #[test]
    fn splits_across_reads_and_strips_crlf() {
        let mut s = LineSplitter::new(100, Oversize::Truncate, InvalidUtf8::Keep);
        let (lines, consumed) = split_all(&mut s, &[b"a\r\nb", b"c\n\nd"], false);
        assert_eq!(lines, vec![b"a".to_vec(), b"bc".to_vec(), b"".to_vec()]);
        assert_eq!(consumed, 7);
        let (lines, _) = split_all(&mut s, &[b""], true);
        assert!(lines.is_empty(), "the partial `d` was in the other buffer");
    }

    #[test]
    fn small_reads_do_not_pin_the_read_buffer_and_large_ones_are_not_copied() {
        let mut s = LineSplitter::new(1 << 20, Oversize::Truncate, InvalidUtf8::Keep);
        let capacity = 256 * 1024;
        let mut buf = BytesMut::with_capacity(capacity);
        let base = buf.as_ptr() as usize;
        // Reads of 10 KB whose lines are all still in flight: the lines live elsewhere, so the
        // reader's reservation for its next read reclaims the same allocation every time.
        let mut in_flight = Vec::new();
        for _ in 0..20 {
            buf.reserve(200 * 1024);
            let at = buf.as_ptr() as usize;
            assert!((base..base + capacity).contains(&at), "a new read buffer");
            for _ in 0..100 {
                buf.extend_from_slice(&[b'y'; 99]);
                buf.extend_from_slice(b"\n");
            }
            let split = s.split(&mut buf, false);
            assert_eq!(split.lines.len(), 100);
            in_flight.extend(split.lines);
        }
        assert_eq!(in_flight.len(), 2000);

        // A large chunk is handed on as it is: the lines are slices of the read buffer.
        let mut big = BytesMut::with_capacity(COPY_BELOW_BYTES * 2);
        let start = big.as_ptr();
        for _ in 0..(COPY_BELOW_BYTES / 100 + 1) {
            big.extend_from_slice(&[b'x'; 99]);
            big.extend_from_slice(b"\n");
        }
        let large = s.split(&mut big, false);
        assert_eq!(large.lines[0].as_ptr(), start);
    }

    #[test]
    fn partial_line_is_flushed_on_request() {
        let mut s = LineSplitter::new(100, Oversize::Truncate, InvalidUtf8::Keep);
        let (lines, consumed) = split_all(&mut s, &[b"x\ntail"], true);
        assert_eq!(lines, vec![b"x".to_vec(), b"tail".to_vec()]);
        assert_eq!(consumed, 6);
    }

    #[test]
    fn oversize_lines_are_truncated_or_dropped_and_their_tail_skipped() {
        let mut s = LineSplitter::new(4, Oversize::Truncate, InvalidUtf8::Keep);
        let mut buf = BytesMut::from(&b"ok\n123456"[..]);
        let first = s.split(&mut buf, false);
        assert_eq!(first.lines, vec![Bytes::from("ok"), Bytes::from("1234")]);
        assert_eq!(first.truncated, 1);
        assert_eq!(first.consumed, 9);
        buf.extend_from_slice(b"789\nnext\n");
        let second = s.split(&mut buf, false);
        assert_eq!(second.lines, vec![Bytes::from("next")]);

        let mut s = LineSplitter::new(4, Oversize::Drop, InvalidUtf8::Keep);
        let mut buf = BytesMut::from(&b"123456789\nok\n"[..]);
        let out = s.split(&mut buf, false);
        assert_eq!(out.lines, vec![Bytes::from("ok")]);
        assert_eq!(out.dropped, 1);
        assert_eq!(out.consumed, 13);
    }

    #[test]
    fn invalid_utf8_is_kept_or_replaced_and_counted() {
        let mut keep = LineSplitter::new(100, Oversize::Truncate, InvalidUtf8::Keep);
        let mut buf = BytesMut::from(&b"good\nb\xffd\n"[..]);
        let out = keep.split(&mut buf, false);
        assert_eq!(out.invalid_utf8, 1);
        assert_eq!(out.lines[1], Bytes::from_static(b"b\xffd"));

        let mut replace = LineSplitter::new(100, Oversize::Truncate, InvalidUtf8::Replace);
        let mut buf = BytesMut::from(&b"good\nb\xffd\n"[..]);
        let out = replace.split(&mut buf, false);
        assert_eq!(out.invalid_utf8, 1);
        assert_eq!(out.lines[1], Bytes::from("b\u{fffd}d"));
    }
}
