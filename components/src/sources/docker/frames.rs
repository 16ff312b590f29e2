//! Docker log entries to lines: timestamps split off, 16 KiB partial messages merged, the
//! resume point skipped, the size cap applied.
//!
//! With `timestamps=1` every entry Docker sends starts with its own RFC 3339 timestamp
//! (nanoseconds) and a space. An entry of 16 KiB or more that does not end in `\n` is a *partial
//! message*: Docker cut a longer line into 16 KiB pieces, each an entry of its own with its own
//! timestamp; the last piece is shorter (and ends in `\n` with json-file, not with local). For a
//! TTY container there is no framing at all: entries follow each other in one byte stream, so
//! lines are cut at `\n` and a partial piece is recognised by the timestamp found right after
//! its 16 KiB.
//!
//! Guarantees:
//! - Pieces are merged as bytes, before anything decodes them: a multi-byte character cut by
//!   Docker's 16 KiB boundary comes out whole.
//! - A line longer than `max_line_bytes` is cut to at most that many bytes, never inside a
//!   UTF-8 sequence, and counted once; the rest of its pieces are dropped.
//! - Pieces of stdout and stderr are merged apart (their entries interleave).
//! - [`Assembler::safe`] is a point no open partial line spans: resuming from it (dropping
//!   entries up to and including it) neither loses nor splits a line.
//! - Resuming: entries older than the cursor are dropped, and so is the cursor's own entry
//!   (same nanosecond, same content hash); the first entry after it ends the skipping.

use bytes::{Bytes, BytesMut};
use xxhash_rust::xxh3::xxh3_64;

/// Docker's piece size for partial messages.
pub const PARTIAL_SIZE: usize = 16 * 1024;

/// Which output stream an entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Stdout => 0,
            Self::Stderr => 1,
        }
    }
}

/// A point in a container's log: Docker's timestamp of one entry and the hash of its content.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub ts_ns: i64,
    pub hash: u64,
}

impl Cursor {
    /// The cursor of an entry with this timestamp and content.
    pub fn of(ts_ns: i64, content: &[u8]) -> Self {
        Self {
            ts_ns,
            hash: xxh3_64(content),
        }
    }

    /// Whether this is a real point (0 is "before everything").
    pub fn is_set(&self) -> bool {
        self.ts_ns > 0
    }
}

/// One whole line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Docker's timestamp of the line's first piece (ns since the epoch).
    pub ts_ns: i64,
    pub stream: Stream,
    pub line: Bytes,
}

/// Splits `<RFC 3339 timestamp> <content>` into the timestamp in ns and the content.
pub fn split_timestamp(entry: &Bytes) -> Option<(i64, Bytes)> {
    // "2006-01-02T15:04:05.999999999+07:00" is the longest form Docker writes.
    let space = memchr::memchr(b' ', &entry[..entry.len().min(40)])?;
    let text = std::str::from_utf8(&entry[..space]).ok()?;
    let ts_ns = parse_rfc3339_ns(text)?;
    Some((ts_ns, entry.slice(space + 1..)))
}

/// RFC 3339 with optional fraction and `Z` or `±HH:MM`, to ns since the epoch.
fn parse_rfc3339_ns(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut nanos: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &text[start..i];
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        nanos = digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32);
    }
    let offset_s: i64 = match &text[i..] {
        "Z" | "z" => 0,
        zone if zone.len() == 6 && (zone.starts_with('+') || zone.starts_with('-')) => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            sign * (num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60)
        }
        _ => return None,
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The longest prefix of `bytes` of at most `cap` bytes that does not end inside a UTF-8
/// sequence.
pub fn char_boundary(bytes: &[u8], cap: usize) -> usize {
    if bytes.len() <= cap {
        return bytes.len();
    }
    let mut cut = cap;
    // Back off continuation bytes (10xxxxxx): the cut then falls before a sequence's start.
    while cut > 0 && bytes[cut] & 0xC0 == 0x80 {
        cut -= 1;
    }
    cut
}

/// A line being put together from partial pieces.
#[derive(Debug)]
struct Partial {
    ts_ns: i64,
    buf: BytesMut,
    truncated: bool,
}

/// What the assembler counted since it was last asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub merges: u64,
    pub truncated: u64,
    pub skipped: u64,
}

/// Turns a container's entries into lines (see the module docs).
#[derive(Debug)]
pub struct Assembler {
    tty: bool,
    max_line_bytes: usize,
    partial: [Option<Partial>; 2],
    /// Entries up to and including this one are dropped (a resume).
    skip: Option<Cursor>,
    /// TTY bytes after the last `\n`.
    carry: BytesMut,
    /// The last entry seen with no partial line open after it.
    safe: Cursor,
    /// The last entry seen.
    last: Cursor,
    /// The last entry seen.
    last_ts: i64,
    counts: Counts,
}

impl Assembler {
    /// An assembler resuming after `resume` (when set).
    pub fn new(tty: bool, max_line_bytes: usize, resume: Cursor) -> Self {
        Self {
            tty,
            max_line_bytes: max_line_bytes.max(1),
            partial: [None, None],
            skip: resume.is_set().then_some(resume),
            carry: BytesMut::new(),
            safe: resume,
            last: resume,
            last_ts: resume.ts_ns,
            counts: Counts::default(),
        }
    }

    /// The last point no open partial line spans.
    pub fn safe(&self) -> Cursor {
        self.safe
    }

    /// Timestamp of the last entry seen.
    pub fn last_ts(&self) -> i64 {
        self.last_ts
    }

    /// Takes the counts gathered since the last call.
    pub fn take_counts(&mut self) -> Counts {
        std::mem::take(&mut self.counts)
    }

    /// Handles one message of the log stream: a framed entry (`stream` known) or, for a TTY
    /// container, a run of the raw byte stream. Whole lines are appended to `out`.
    pub fn push(&mut self, stream: Stream, message: Bytes, out: &mut Vec<Line>) {
        if !self.tty {
            self.entry(stream, message, out);
            return;
        }
        // TTY: one byte stream, cut at '\n' here (the transport may cut it anywhere).
        let mut data = if self.carry.is_empty() {
            message
        } else {
            self.carry.extend_from_slice(&message);
            self.carry.split().freeze()
        };
        while let Some(nl) = memchr::memchr(b'\n', &data) {
            let chunk = data.split_to(nl + 1);
            self.tty_chunk(chunk, out);
        }
        if !data.is_empty() {
            self.carry.extend_from_slice(&data);
        }
    }

    /// One `\n`-terminated run of a TTY stream: one entry, or several when Docker cut a long
    /// line (each piece then follows the previous one's 16 KiB directly).
    fn tty_chunk(&mut self, mut chunk: Bytes, out: &mut Vec<Line>) {
        loop {
            let Some(space) = memchr::memchr(b' ', &chunk[..chunk.len().min(40)]) else {
                self.entry(Stream::Stdout, chunk, out);
                return;
            };
            let piece_end = space + 1 + PARTIAL_SIZE;
            if chunk.len() > piece_end && split_timestamp(&chunk.slice(piece_end..)).is_some() {
                let piece = chunk.split_to(piece_end);
                self.entry(Stream::Stdout, piece, out);
            } else {
                self.entry(Stream::Stdout, chunk, out);
                return;
            }
        }
    }

    /// One entry: timestamp, skip, merge, cap.
    fn entry(&mut self, stream: Stream, entry: Bytes, out: &mut Vec<Line>) {
        let (ts_ns, content) = match split_timestamp(&entry) {
            Some(parsed) => parsed,
            // Without a timestamp (should not happen with timestamps=1): the time it was read.
            None => (crate::event::now_ns(), entry),
        };
        if let Some(cursor) = self.skip {
            if ts_ns < cursor.ts_ns {
                self.counts.skipped += 1;
                return;
            }
            if ts_ns == cursor.ts_ns {
                // The cursor's own entry (and any of the same nanosecond before it, read
                // before the cursor was taken) was delivered already.
                if Cursor::of(ts_ns, &content) == cursor {
                    self.skip = None;
                }
                self.counts.skipped += 1;
                return;
            }
            self.skip = None;
        }
        self.last_ts = ts_ns;
        // A piece of a longer line is 16 KiB without a newline (json-file may make it a few
        // bytes longer: it stores a character cut at the boundary as U+FFFD). The json-file
        // driver ends the last piece with '\n'; the local driver does not, so a shorter entry
        // without one also ends its line (as does a last line without newline at exit).
        let newline = content.last() == Some(&b'\n');
        let complete = newline || content.len() < PARTIAL_SIZE;
        let mut body = content.clone();
        if newline {
            body.truncate(body.len() - 1);
            if self.tty && body.last() == Some(&b'\r') {
                body.truncate(body.len() - 1);
            }
        }
        let slot = &mut self.partial[stream.index()];
        match (slot.take(), complete) {
            (None, true) => {
                let line = self.cap(body);
                out.push(Line {
                    ts_ns,
                    stream,
                    line,
                });
            }
            (None, false) => {
                let mut partial = Partial {
                    ts_ns,
                    buf: BytesMut::with_capacity(body.len() * 2),
                    truncated: false,
                };
                append_capped(&mut partial, &body, self.max_line_bytes);
                self.partial[stream.index()] = Some(partial);
            }
            (Some(mut partial), false) => {
                append_capped(&mut partial, &body, self.max_line_bytes);
                self.partial[stream.index()] = Some(partial);
            }
            (Some(mut partial), true) => {
                append_capped(&mut partial, &body, self.max_line_bytes);
                self.counts.merges += 1;
                if partial.truncated {
                    self.counts.truncated += 1;
                }
                out.push(Line {
                    ts_ns: partial.ts_ns,
                    stream,
                    line: partial.buf.freeze(),
                });
            }
        }
        self.last = Cursor::of(ts_ns, &content);
        if self.partial.iter().all(Option::is_none) {
            self.safe = self.last;
        }
    }

    fn cap(&mut self, line: Bytes) -> Bytes {
        if line.len() <= self.max_line_bytes {
            return line;
        }
        self.counts.truncated += 1;
        line.slice(..char_boundary(&line, self.max_line_bytes))
    }

    /// The stream ended (the container stopped): lines still open are emitted as they are.
    pub fn finish(&mut self, out: &mut Vec<Line>) {
        if !self.carry.is_empty() {
            let rest = self.carry.split().freeze();
            self.tty_chunk(rest, out);
        }
        for index in 0..2 {
            if let Some(partial) = self.partial[index].take() {
                if partial.truncated {
                    self.counts.truncated += 1;
                }
                out.push(Line {
                    ts_ns: partial.ts_ns,
                    stream: if index == 0 {
                        Stream::Stdout
                    } else {
                        Stream::Stderr
                    },
                    line: partial.buf.freeze(),
                });
            }
        }
        self.safe = self.last;
    }
}

/// Appends a piece within the cap, never cutting a character; past the cap the line is marked
/// truncated and the rest dropped.
fn append_capped(partial: &mut Partial, piece: &[u8], cap: usize) {
    if partial.truncated {
        return;
    }
    let room = cap.saturating_sub(partial.buf.len());
    if piece.len() <= room {
        partial.buf.extend_from_slice(piece);
        return;
    }
    // The cut is judged on the whole line so far plus the piece: the piece may begin with the
    // continuation bytes of a character the previous piece started.
    let mut joined = Vec::with_capacity(partial.buf.len() + room + 4);
    joined.extend_from_slice(&partial.buf);
    joined.extend_from_slice(&piece[..piece.len().min(room + 4)]);
    let cut = char_boundary(&joined, cap);
    partial.buf.truncate(cut.min(partial.buf.len()));
    if cut > partial.buf.len() {
        let extra = cut - partial.buf.len();
        partial.buf.extend_from_slice(&piece[..extra]);
    }
    partial.truncated = true;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ts: &str, content: &str) -> Bytes {
        Bytes::from(format!("{ts} {content}"))
    }

    const T1: &str = "2026-12-02T07:25:28.277522658Z";
    const T2: &str = "2026-12-02T07:25:28.277522659Z";
    const T3: &str = "2026-12-02T07:25:29.000000001Z";

    #[test]
    fn timestamps_parse_to_the_nanosecond() {
        let (ts, rest) = split_timestamp(&entry(T1, "hello\n")).unwrap();
        assert_eq!(ts, 1_796_196_328_277_522_658);
        assert_eq!(&rest[..], b"hello\n");
        let (plus, _) =
            split_timestamp(&entry("2026-12-02T08:25:28.277522658+01:00", "x")).unwrap();
        assert_eq!(plus, ts);
        let (short, _) = split_timestamp(&entry("1970-01-01T00:00:01.5Z", "x")).unwrap();
        assert_eq!(short, 1_500_000_000);
        assert!(split_timestamp(&Bytes::from_static(b"hello world")).is_none());
        assert!(split_timestamp(&Bytes::from_static(b"2026-13-02T07:25:28Z x")).is_none());
    }

    #[test]
    fn whole_lines_pass_without_newline_and_streams_are_told_apart() {
        let mut a = Assembler::new(false, 1000, Cursor::default());
        let mut out = Vec::new();
        a.push(Stream::Stdout, entry(T1, "one\n"), &mut out);
        a.push(Stream::Stderr, entry(T2, "two\n"), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(&out[0].line[..], b"one");
        assert_eq!(out[1].stream, Stream::Stderr);
        assert_eq!(a.safe(), Cursor::of(out[1].ts_ns, b"two\n"));
    }

    #[test]
    fn partial_pieces_merge_and_a_character_across_the_boundary_stays_whole() {
        // "é" is 0xC3 0xA9: the first piece ends with 0xC3, the second starts with 0xA9.
        let text = format!("{}é{}", "a".repeat(PARTIAL_SIZE - 1), "b".repeat(100));
        let bytes = text.as_bytes();
        let mut first = format!("{T1} ").into_bytes();
        first.extend_from_slice(&bytes[..PARTIAL_SIZE]);
        let mut second = format!("{T2} ").into_bytes();
        second.extend_from_slice(&bytes[PARTIAL_SIZE..]);
        second.push(b'\n');
        let mut a = Assembler::new(false, 1_000_000, Cursor::default());
        let mut out = Vec::new();
        a.push(Stream::Stdout, Bytes::from(first), &mut out);
        assert!(out.is_empty());
        // A stderr line in between does not move the safe point past the open stdout line.
        a.push(Stream::Stderr, entry(T2, "err\n"), &mut out);
        assert_eq!(a.safe(), Cursor::default());
        a.push(Stream::Stdout, Bytes::from(second), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(std::str::from_utf8(&out[1].line).unwrap(), text);
        assert_eq!(a.take_counts().merges, 1);
    }

    #[test]
    fn the_cap_never_cuts_a_character_and_counts_once() {
        let mut a = Assembler::new(false, PARTIAL_SIZE + 3, Cursor::default());
        let mut out = Vec::new();
        // The cap falls inside "é" (bytes PARTIAL_SIZE + 2 and + 3 of the merged line).
        a.push(
            Stream::Stdout,
            entry(T1, &"a".repeat(PARTIAL_SIZE)),
            &mut out,
        );
        a.push(Stream::Stdout, entry(T2, "bcéfgh\n"), &mut out);
        assert_eq!(out[0].line.len(), PARTIAL_SIZE + 2);
        assert!(out[0].line.ends_with(b"abc"));
        // The local driver's last piece has no newline: a short entry ends the line.
        a.push(
            Stream::Stdout,
            entry(T1, &"a".repeat(PARTIAL_SIZE)),
            &mut out,
        );
        a.push(Stream::Stdout, entry(T2, "end"), &mut out);
        a.push(Stream::Stdout, entry(T3, "next\n"), &mut out);
        assert_eq!(out[1].line.len(), PARTIAL_SIZE + 3);
        assert_eq!(&out[2].line[..], b"next");
        let counts = a.take_counts();
        assert_eq!((counts.truncated, counts.merges), (1, 2));
        assert_eq!(char_boundary("xyzéé".as_bytes(), 5), 5);
        assert_eq!(char_boundary("xyzéé".as_bytes(), 4), 3);
    }

    #[test]
    fn resume_drops_up_to_and_including_the_cursor() {
        let cursor = Cursor::of(split_timestamp(&entry(T2, "")).unwrap().0, b"two\n");
        let mut a = Assembler::new(false, 100, cursor);
        let mut out = Vec::new();
        a.push(Stream::Stdout, entry(T1, "one\n"), &mut out);
        a.push(Stream::Stdout, entry(T2, "two\n"), &mut out);
        a.push(Stream::Stdout, entry(T3, "three\n"), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].line[..], b"three");
        assert_eq!(a.take_counts().skipped, 2);
    }

    #[test]
    fn tty_lines_are_cut_at_newlines_and_lose_their_carriage_return() {
        let mut a = Assembler::new(true, 1_000_000, Cursor::default());
        let mut out = Vec::new();
        let stream = format!("{T1} one\r\n{T2} tw");
        a.push(Stream::Stdout, Bytes::from(stream), &mut out);
        a.push(Stream::Stdout, Bytes::from("o\r\n"), &mut out);
        let lines: Vec<&[u8]> = out.iter().map(|l| &l.line[..]).collect();
        assert_eq!(lines, [b"one".as_slice(), b"two"]);
        // A long TTY line: the second piece's timestamp follows the first's 16 KiB.
        let long = "x".repeat(PARTIAL_SIZE + 10);
        let raw = format!(
            "{T1} {}{T2} {}\r\n",
            &long[..PARTIAL_SIZE],
            &long[PARTIAL_SIZE..]
        );
        out.clear();
        a.push(Stream::Stdout, Bytes::from(raw), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].line.len(), PARTIAL_SIZE + 10);
    }
}
