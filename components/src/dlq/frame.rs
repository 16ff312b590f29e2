//! Segment files: frames of `[u32 LE length][u32 LE CRC-32][payload]`, and their names.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use crate::durable::context;

/// Length of a frame header: payload length and CRC-32, both `u32` little-endian.
pub(super) const HEADER_LEN: u64 = 8;

/// The shortest payload a frame can carry (`{}`); rejects zero-filled blocks, whose CRC matches.
pub(super) const MIN_PAYLOAD: u64 = 2;

pub(super) const SEGMENT_PREFIX: &str = "segment-";
pub(super) const SEGMENT_SUFFIX: &str = ".dlq";

/// A frame around `payload`: length, CRC-32, payload.
pub(super) fn frame_bytes(payload: &[u8]) -> io::Result<Vec<u8>> {
    let len = u32::try_from(payload.len()).map_err(|_| {
        io::Error::other(format!(
            "record of {} bytes exceeds the 4 GiB frame limit",
            payload.len()
        ))
    })?;
    let mut frame = Vec::with_capacity(payload.len() + HEADER_LEN as usize);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    frame.extend_from_slice(payload);
    Ok(frame)
}

/// What a scan of one segment found besides its records.
pub(super) struct ScanReport {
    pub(super) file_len: u64,
    /// Runs of bad bytes followed by a valid frame: `(start, end)`.
    pub(super) skipped: Vec<(u64, u64)>,
    /// Start of bad bytes that run to the end of the file.
    pub(super) tail: Option<u64>,
}

/// Calls `on_frame(offset, payload)` for every frame whose CRC matches, in order, skipping bad
/// bytes by searching for the next valid frame. Errors are I/O errors only.
pub(super) fn scan_segment(
    path: &Path,
    mut on_frame: impl FnMut(u64, &[u8]) -> ControlFlow<()>,
) -> io::Result<ScanReport> {
    let file = File::open(path).map_err(context("open", path))?;
    let file_len = file.metadata().map_err(context("stat", path))?.len();
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut report = ScanReport {
        file_len,
        skipped: Vec::new(),
        tail: None,
    };
    let mut payload = Vec::new();
    let mut pos = 0;
    while pos < file_len {
        if read_frame(&mut reader, file_len - pos, &mut payload).map_err(context("read", path))? {
            if on_frame(pos, &payload).is_break() {
                break;
            }
            pos += HEADER_LEN + payload.len() as u64;
            continue;
        }
        match resync(reader.get_mut(), pos + 1, file_len).map_err(context("read", path))? {
            Some(next) => {
                report.skipped.push((pos, next));
                reader
                    .seek(SeekFrom::Start(next))
                    .map_err(context("seek", path))?;
                pos = next;
            }
            None => {
                report.tail = Some(pos);
                break;
            }
        }
    }
    Ok(report)
}

/// Reads the frame at the reader's position into `payload`; `false` when it is not a valid frame.
pub(super) fn read_frame(
    reader: &mut impl Read,
    remaining: u64,
    payload: &mut Vec<u8>,
) -> io::Result<bool> {
    if remaining < HEADER_LEN {
        return Ok(false);
    }
    let mut header = [0u8; HEADER_LEN as usize];
    reader.read_exact(&mut header)?;
    let (len, crc) = parse_header(&header);
    if len < MIN_PAYLOAD || len > remaining - HEADER_LEN {
        return Ok(false);
    }
    payload.clear();
    payload.resize(len as usize, 0);
    reader.read_exact(payload)?;
    Ok(valid_payload(payload, crc))
}

pub(super) fn parse_header(header: &[u8; HEADER_LEN as usize]) -> (u64, u32) {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    (u64::from(len), crc)
}

pub(super) fn valid_payload(payload: &[u8], crc: u32) -> bool {
    payload.first() == Some(&b'{') && crc32fast::hash(payload) == crc
}

/// The offset of the first valid frame at or after `from`, if any. Reads the rest of the file:
/// only corruption leads here.
pub(super) fn resync(file: &mut File, from: u64, file_len: u64) -> io::Result<Option<u64>> {
    if from >= file_len {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(from))?;
    let mut rest = Vec::new();
    Read::take(&mut *file, file_len - from).read_to_end(&mut rest)?;
    let header = HEADER_LEN as usize;
    let mut start = 0;
    while start + header + MIN_PAYLOAD as usize <= rest.len() {
        // Every payload starts with `{`: look only where one could begin.
        let Some(brace) = rest[start + header..].iter().position(|&b| b == b'{') else {
            break;
        };
        let candidate = start + brace;
        let mut head = [0u8; HEADER_LEN as usize];
        head.copy_from_slice(&rest[candidate..candidate + header]);
        let (len, crc) = parse_header(&head);
        let body = candidate + header;
        if len >= MIN_PAYLOAD
            && len <= (rest.len() - body) as u64
            && valid_payload(&rest[body..body + len as usize], crc)
        {
            return Ok(Some(from + candidate as u64));
        }
        start = candidate + 1;
    }
    Ok(None)
}

/// The payload of the frame at `offset`, or why it is not a valid frame.
pub(super) fn read_payload_at(
    file: &mut File,
    offset: u64,
    segment_len: u64,
) -> io::Result<Result<Vec<u8>, String>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut payload = Vec::new();
    let remaining = segment_len.saturating_sub(offset);
    if read_frame(file, remaining, &mut payload)? {
        Ok(Ok(payload))
    } else {
        Ok(Err("frame fails its CRC or length check".to_owned()))
    }
}

pub(super) fn segment_name(sequence: u64) -> String {
    format!("{SEGMENT_PREFIX}{sequence:020}{SEGMENT_SUFFIX}")
}

pub(super) fn segment_path(dir: &Path, sequence: u64) -> PathBuf {
    dir.join(segment_name(sequence))
}

pub(super) fn sequence_of(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Sequences of the segment files in `dir`, ascending; a missing directory has none.
pub(super) fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(context("list", dir)(error)),
    };
    let mut sequences = Vec::new();
    for entry in entries {
        let entry = entry.map_err(context("list", dir))?;
        if entry.file_type().is_ok_and(|kind| kind.is_file())
            && let Some(sequence) = entry.file_name().to_str().and_then(sequence_of)
        {
            sequences.push(sequence);
        }
    }
    sequences.sort_unstable();
    Ok(sequences)
}
