//! The on-disk queue of one sink: segments, bounds, replay progress (see the module above for
//! the format and the guarantees).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::archive::{Archive, ArchiveError, Evicted};
use super::cursor::{CURSOR_TMP, Cursor, CursorDocument, read_cursor};
use super::frame::*;
use super::record::{DlqRecord, RecordId, RecordSummary, WrittenAt};
use super::{
    ARCHIVE_DIR, CURSOR_FILE, CURSOR_VERSION, DLQ_DIR, DlqConfig, DlqFullPolicy, now_rfc3339,
};
use crate::durable::{check_name_component, context, remove_if_exists, sync_dir, write_atomic};

/// What [`Dlq::append`] did with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// On disk and fsynced.
    Written,
    /// Not written: the queue is full and `when_full` is `drop_newest`.
    Dropped,
}

/// Why a queue operation failed.
#[derive(Debug)]
pub enum DlqError {
    /// The record does not fit within `max_bytes` / `max_entries`; what the queue holds now.
    Full {
        bytes: u64,
        entries: u64,
    },
    Io(io::Error),
    /// The record cannot be serialized or framed.
    Encode(String),
}

impl fmt::Display for DlqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full { bytes, entries } => write!(
                f,
                "dead-letter queue full ({bytes} bytes on disk, {entries} entries unhandled): record not written"
            ),
            Self::Io(error) => write!(f, "dead-letter queue I/O error: {error}"),
            Self::Encode(message) => write!(f, "cannot encode a dead-letter record: {message}"),
        }
    }
}

impl std::error::Error for DlqError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(error) => Some(error),
            _ => None,
        }
    }
}

impl From<io::Error> for DlqError {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

/// What a queue holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DlqStats {
    /// Live segments (archived ones excluded).
    pub segments: usize,
    /// Unhandled records.
    pub records: u64,
    /// Entries over the unhandled records.
    pub entries: u64,
    /// Bytes on disk of the live segments.
    pub bytes: u64,
    /// `written_at` of the oldest unhandled record.
    pub oldest_written_at: Option<String>,
    /// Records refused by `drop_newest` since open.
    pub dropped_records: u64,
    /// Bytes cut off the newest segment by open (torn write).
    pub recovered_torn_bytes: u64,
    /// Unreadable records (or runs of bytes) skipped since open.
    pub corrupt_records: u64,
    /// Bytes on disk of the archive (replayed segments and refused records).
    pub archive_bytes: u64,
    /// Entries of records refused for good (replayed `max_replays` times), in the archive.
    pub refused_entries: u64,
    /// Entries of refused records removed from the archive to keep it within
    /// `archive_max_bytes`, since open.
    pub refused_evicted: u64,
}

/// The dead-letter queue of one sink.
#[derive(Debug)]
pub struct Dlq {
    /// `<data_dir>/dlq/<sink>`.
    dir: PathBuf,
    sink: String,
    config: DlqConfig,
    /// Live segments by sequence; the last is the newest.
    segments: BTreeMap<u64, Segment>,
    /// The sequence the next segment takes.
    next_sequence: u64,
    /// The newest segment, open for appending; opened on first use.
    active: Option<File>,
    /// The newest segment's tail is in doubt (a failed write could not be cut back): roll.
    must_roll: bool,
    /// Records were marked handled (skipped as corrupt) without the cursor saying so yet.
    cursor_dirty: bool,
    oldest_written_at: Option<String>,
    dropped_records: u64,
    recovered_torn_bytes: u64,
    corrupt_records: u64,
    /// `archive/`: replayed segments and refused records, bounded.
    archive: Archive,
    /// Refused entries the archive's bound removed since open.
    refused_evicted: u64,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// Bytes on disk.
    len: u64,
    /// Every valid record, by offset.
    records: Vec<RecordMeta>,
    /// Index of the first unhandled record (`records.len()` when none).
    first_pending: usize,
    pending: u64,
    pending_entries: u64,
}

#[derive(Clone, Copy, Debug)]
struct RecordMeta {
    offset: u64,
    entries: u32,
    handled: bool,
}

impl Segment {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            len: 0,
            records: Vec::new(),
            first_pending: 0,
            pending: 0,
            pending_entries: 0,
        }
    }

    fn push(&mut self, offset: u64, entries: u32, handled: bool) {
        self.records.push(RecordMeta {
            offset,
            entries,
            handled,
        });
        if !handled {
            self.pending += 1;
            self.pending_entries += u64::from(entries);
        }
        self.advance();
    }

    /// Moves `first_pending` past handled records.
    fn advance(&mut self) {
        while self
            .records
            .get(self.first_pending)
            .is_some_and(|meta| meta.handled)
        {
            self.first_pending += 1;
        }
    }

    fn mark(&mut self, index: usize) -> bool {
        let meta = &mut self.records[index];
        if meta.handled {
            return false;
        }
        meta.handled = true;
        self.pending -= 1;
        self.pending_entries -= u64::from(meta.entries);
        self.advance();
        true
    }

    fn unmark(&mut self, index: usize) {
        let meta = &mut self.records[index];
        if meta.handled {
            meta.handled = false;
            self.pending += 1;
            self.pending_entries += u64::from(meta.entries);
            self.first_pending = self.first_pending.min(index);
        }
    }
}

impl Dlq {
    /// Opens (creating) the queue of `sink` under `data_dir/dlq/`. The sink name becomes a
    /// directory name, so it must not be empty, `.`, `..`, or contain `/`, `\` or NUL.
    ///
    /// Scans every live segment to rebuild the totals: truncates a torn write off the newest one
    /// (counted in `recovered_torn_bytes`, logged), skips and counts corrupt records anywhere,
    /// applies the cursor, and archives or deletes older segments found fully handled (a crash
    /// between an `ack` and its clean-up).
    pub fn open(data_dir: &Path, sink: &str, config: DlqConfig) -> Result<Self, DlqError> {
        check_sink_name(sink)?;
        let root = data_dir.join(DLQ_DIR);
        let dir = root.join(sink);
        fs::create_dir_all(&dir).map_err(context("create", &dir))?;
        sync_dir(data_dir)?;
        sync_dir(&root)?;
        remove_if_exists(&dir.join(CURSOR_TMP))?;
        let cursor = read_cursor(&dir, sink);
        let sequences = list_segments(&dir)?;
        let archive = Archive::open(dir.join(ARCHIVE_DIR), config.archive_max_bytes)?;
        let highest = [
            sequences.last().copied(),
            archive.highest_sequence(),
            cursor.before.map(|id| id.segment),
        ]
        .into_iter()
        .flatten()
        .max();
        let mut dlq = Self {
            dir,
            sink: sink.to_owned(),
            config,
            segments: BTreeMap::new(),
            next_sequence: highest.map_or(0, |sequence| sequence.saturating_add(1)),
            active: None,
            must_roll: false,
            cursor_dirty: false,
            oldest_written_at: None,
            dropped_records: 0,
            recovered_torn_bytes: 0,
            corrupt_records: 0,
            archive,
            refused_evicted: 0,
        };
        let newest = sequences.last().copied();
        for sequence in sequences {
            let segment = dlq.load_segment(sequence, Some(sequence) == newest, &cursor)?;
            dlq.segments.insert(sequence, segment);
        }
        dlq.reclaim_handled();
        dlq.refresh_oldest();
        let stats = dlq.stats();
        if stats.records > 0 {
            tracing::info!(
                sink = %dlq.sink,
                records = stats.records,
                entries = stats.entries,
                bytes = stats.bytes,
                segments = stats.segments,
                "Dead-letter queue holds records waiting for replay."
            );
        }
        Ok(dlq)
    }

    /// The directory of this queue, `<data_dir>/dlq/<sink>`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &DlqConfig {
        &self.config
    }

    /// Writes `record` durably (write + fsync) when it fits within the bounds; otherwise applies
    /// `when_full` (see the module's guarantees).
    pub fn append(&mut self, record: &DlqRecord) -> Result<AppendOutcome, DlqError> {
        self.append_checked(record, true)
    }

    /// Writes `record` whatever the bounds: for entries replayed and refused again, whose
    /// own records are acknowledged right after (so the queue does not grow), and which must
    /// never wait for room that only their acknowledgement would make.
    pub fn append_replacing(&mut self, record: &DlqRecord) -> Result<AppendOutcome, DlqError> {
        self.append_checked(record, false)
    }

    fn append_checked(
        &mut self,
        record: &DlqRecord,
        check_bounds: bool,
    ) -> Result<AppendOutcome, DlqError> {
        let payload = serde_json::to_vec(record).map_err(|e| DlqError::Encode(e.to_string()))?;
        let frame = frame_bytes(&payload).map_err(|error| DlqError::Encode(error.to_string()))?;
        let frame_len = frame.len() as u64;
        let entries = u32::try_from(record.entries.len()).unwrap_or(u32::MAX);

        if check_bounds && !self.fits(frame_len, entries) {
            self.reclaim_handled_newest();
            if !self.fits(frame_len, entries) {
                let (bytes, entries) = self.totals();
                return match self.config.when_full {
                    DlqFullPolicy::Block => Err(DlqError::Full { bytes, entries }),
                    DlqFullPolicy::DropNewest => {
                        // The caller tells and counts it (the queue does not know the events).
                        self.dropped_records += 1;
                        Ok(AppendOutcome::Dropped)
                    }
                };
            }
        }

        let roll = match self.segments.last_key_value() {
            None => true,
            Some((_, newest)) => {
                self.must_roll
                    || (newest.len > 0 && newest.len + frame_len > self.config.segment_max_bytes)
            }
        };
        if roll {
            self.create_segment()?;
        }
        let Some((&sequence, segment)) = self.segments.last_key_value() else {
            return Err(io::Error::other("no segment to append to").into());
        };
        let path = segment.path.clone();
        let old_len = segment.len;
        if self.active.is_none() {
            let file = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(context("open", &path))?;
            self.active = Some(file);
        }
        let Some(file) = self.active.as_mut() else {
            return Err(io::Error::other("segment not open").into());
        };

        if let Err(error) = file.write_all(&frame).and_then(|()| file.sync_data()) {
            let error = context("append to", &path)(error);
            let cut = file.set_len(old_len).and_then(|()| file.sync_data());
            if let Err(cut_error) = cut {
                tracing::warn!(
                    sink = %self.sink,
                    path = %path.display(),
                    error = %cut_error,
                    "Cannot cut a failed dead-letter write back off its segment; the next append starts a new one."
                );
                self.active = None;
                self.must_roll = true;
                let len = fs::metadata(&path).map_or(old_len, |meta| meta.len().max(old_len));
                if let Some(segment) = self.segments.get_mut(&sequence) {
                    segment.len = len;
                }
            }
            return Err(error.into());
        }

        let had_pending = self.segments.values().any(|segment| segment.pending > 0);
        if let Some(segment) = self.segments.get_mut(&sequence) {
            segment.push(old_len, entries, false);
            segment.len = old_len + frame_len;
        }
        if !had_pending {
            self.oldest_written_at = Some(record.written_at.clone());
        }
        Ok(AppendOutcome::Written)
    }

    /// Keeps a record refused for good in the archive (see [`super::archive`]).
    pub fn archive_refused(&mut self, record: &DlqRecord) -> Result<(), DlqError> {
        let mut next = self.next_sequence;
        let result = self.archive.append_refused(record, &mut next);
        self.next_sequence = next;
        match result {
            Ok(evicted) => {
                self.count_evicted(evicted);
                Ok(())
            }
            Err(ArchiveError::TooLarge { bytes, max }) => Err(DlqError::Encode(format!(
                "a refused record of {bytes} bytes is larger than archive_max_bytes ({max})"
            ))),
            Err(ArchiveError::Io(error)) => Err(DlqError::Io(error)),
        }
    }

    fn count_evicted(&mut self, evicted: Evicted) {
        if evicted.refused_entries > 0 {
            tracing::warn!(
                sink = %self.sink,
                entries = evicted.refused_entries,
                files = evicted.files,
                "Refused dead-letter entries removed from the archive to keep it within archive_max_bytes."
            );
        }
        self.refused_evicted += evicted.refused_entries;
    }

    /// The records of `sink` refused for good (archived after `max_replays`), oldest first, up
    /// to `limit`; reads only, like [`Dlq::inspect`].
    pub fn inspect_refused(
        data_dir: &Path,
        sink: &str,
        limit: usize,
    ) -> Result<Vec<DlqRecord>, DlqError> {
        check_sink_name(sink)?;
        let dir = data_dir.join(DLQ_DIR).join(sink).join(ARCHIVE_DIR);
        Ok(Archive::refused_records(&dir, limit)?)
    }

    /// What the queue holds now.
    pub fn stats(&self) -> DlqStats {
        DlqStats {
            segments: self.segments.len(),
            records: self.segments.values().map(|s| s.pending).sum(),
            entries: self.segments.values().map(|s| s.pending_entries).sum(),
            bytes: self.segments.values().map(|s| s.len).sum(),
            oldest_written_at: self.oldest_written_at.clone(),
            dropped_records: self.dropped_records,
            recovered_torn_bytes: self.recovered_torn_bytes,
            corrupt_records: self.corrupt_records,
            archive_bytes: self.archive.totals().bytes,
            refused_entries: self.archive.totals().refused_entries,
            refused_evicted: self.refused_evicted,
        }
    }

    /// Reads up to `max` records starting at the oldest unhandled one, in order, without removing
    /// them: calling it again returns the same records until they are acknowledged. A record
    /// found corrupt is skipped, counted and logged.
    pub fn peek(&mut self, max: usize) -> Result<Vec<(RecordId, DlqRecord)>, DlqError> {
        let mut found = Vec::new();
        let mut corrupt = Vec::new();
        'segments: for (&sequence, segment) in &self.segments {
            if segment.pending == 0 {
                continue;
            }
            if found.len() >= max {
                break;
            }
            let mut file = File::open(&segment.path).map_err(context("open", &segment.path))?;
            for (index, meta) in segment
                .records
                .iter()
                .enumerate()
                .skip(segment.first_pending)
            {
                if found.len() >= max {
                    break 'segments;
                }
                if meta.handled {
                    continue;
                }
                let id = RecordId {
                    segment: sequence,
                    offset: meta.offset,
                };
                let read = read_payload_at(&mut file, meta.offset, segment.len)
                    .map_err(context("read", &segment.path))?
                    .and_then(|payload| {
                        serde_json::from_slice::<DlqRecord>(&payload)
                            .map_err(|error| format!("not a dead-letter record: {error}"))
                    });
                match read {
                    Ok(record) => found.push((id, record)),
                    Err(reason) => corrupt.push((id, index, reason)),
                }
            }
        }
        if !corrupt.is_empty() {
            for (id, index, reason) in corrupt {
                tracing::warn!(
                    sink = %self.sink,
                    record = %id,
                    reason = %reason,
                    "Corrupt dead-letter record skipped."
                );
                self.corrupt_records += 1;
                if let Some(segment) = self.segments.get_mut(&id.segment) {
                    segment.mark(index);
                }
            }
            self.cursor_dirty = true;
            self.refresh_oldest();
        }
        Ok(found)
    }

    /// Marks records handled (replayed or given up) and makes that durable (the cursor file)
    /// before returning `Ok`. Ids of records already handled, or of segments already gone, are
    /// ignored; an id naming no record of a live segment fails the whole call. Segments left
    /// fully handled, other than the newest, are then archived or deleted (a failure there is
    /// logged and retried on the next call: the acknowledgement itself is durable).
    pub fn ack(&mut self, ids: &[RecordId]) -> Result<(), DlqError> {
        let mut targets = Vec::new();
        for &id in ids {
            let Some(segment) = self.segments.get(&id.segment) else {
                if id.segment < self.next_sequence {
                    continue;
                }
                return Err(no_record(id));
            };
            match segment
                .records
                .binary_search_by_key(&id.offset, |meta| meta.offset)
            {
                Ok(index) => targets.push((id.segment, index)),
                Err(_) => return Err(no_record(id)),
            }
        }
        let mut marked = Vec::new();
        for (sequence, index) in targets {
            if let Some(segment) = self.segments.get_mut(&sequence)
                && segment.mark(index)
            {
                marked.push((sequence, index));
            }
        }
        if marked.is_empty() && !self.cursor_dirty {
            return Ok(());
        }
        if let Err(error) = self.save_cursor() {
            for (sequence, index) in marked {
                if let Some(segment) = self.segments.get_mut(&sequence) {
                    segment.unmark(index);
                }
            }
            return Err(error.into());
        }
        self.cursor_dirty = false;
        self.reclaim_handled();
        self.refresh_oldest();
        Ok(())
    }

    /// Removes every live segment and the cursor (the archive stays); returns what was removed.
    pub fn purge(&mut self) -> Result<DlqStats, DlqError> {
        let removed = self.stats();
        self.active = None;
        while let Some((_, segment)) = self.segments.pop_first() {
            remove_if_exists(&segment.path)?;
        }
        sync_dir(&self.dir)?;
        remove_if_exists(&self.dir.join(CURSOR_FILE))?;
        sync_dir(&self.dir)?;
        self.must_roll = false;
        self.cursor_dirty = false;
        self.oldest_written_at = None;
        tracing::info!(
            sink = %self.sink,
            records = removed.records,
            entries = removed.entries,
            bytes = removed.bytes,
            "Dead-letter queue purged."
        );
        Ok(removed)
    }

    /// Every unhandled record of `sink`, in order, up to `limit`, reading the files only: nothing
    /// is created, truncated or changed, so it may run beside the process that owns the queue. A
    /// missing queue is empty; corrupt records and a torn tail are skipped.
    pub fn inspect(data_dir: &Path, sink: &str, limit: usize) -> Result<Vec<DlqRecord>, DlqError> {
        check_sink_name(sink)?;
        let dir = data_dir.join(DLQ_DIR).join(sink);
        let mut records = Vec::new();
        if limit == 0 || !dir.is_dir() {
            return Ok(records);
        }
        let cursor = read_cursor(&dir, sink);
        for sequence in list_segments(&dir)? {
            let path = segment_path(&dir, sequence);
            scan_segment(&path, |offset, payload| {
                let id = RecordId {
                    segment: sequence,
                    offset,
                };
                if !cursor.covers(id)
                    && let Ok(record) = serde_json::from_slice::<DlqRecord>(payload)
                {
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

    /// Names of the sinks that have a queue directory in `data_dir`, sorted. An unreadable or
    /// missing directory lists nothing.
    pub fn list_sinks(data_dir: &Path) -> Vec<String> {
        let Ok(entries) = fs::read_dir(data_dir.join(DLQ_DIR)) else {
            return Vec::new();
        };
        let mut sinks: Vec<String> = entries
            .flatten()
            .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
            .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
            .filter(|name| check_sink_name(name).is_ok())
            .collect();
        sinks.sort();
        sinks
    }

    fn segment_path(&self, sequence: u64) -> PathBuf {
        segment_path(&self.dir, sequence)
    }

    /// Bytes on disk and unhandled entries.
    fn totals(&self) -> (u64, u64) {
        self.segments.values().fold((0, 0), |(bytes, entries), s| {
            (bytes + s.len, entries + s.pending_entries)
        })
    }

    fn fits(&self, frame_len: u64, entries: u32) -> bool {
        let (bytes, pending_entries) = self.totals();
        bytes.saturating_add(frame_len) <= self.config.max_bytes
            && pending_entries.saturating_add(u64::from(entries)) <= self.config.max_entries
    }

    /// Scans one segment at open; see [`Dlq::open`].
    fn load_segment(
        &mut self,
        sequence: u64,
        newest: bool,
        cursor: &Cursor,
    ) -> Result<Segment, DlqError> {
        let path = self.segment_path(sequence);
        let mut segment = Segment::new(path.clone());
        let mut unreadable = Vec::new();
        let report = scan_segment(&path, |offset, payload| {
            match serde_json::from_slice::<RecordSummary>(payload) {
                Ok(summary) => {
                    let id = RecordId {
                        segment: sequence,
                        offset,
                    };
                    let entries = u32::try_from(summary.entries).unwrap_or(u32::MAX);
                    segment.push(offset, entries, cursor.covers(id));
                }
                Err(error) => unreadable.push((offset, error.to_string())),
            }
            ControlFlow::Continue(())
        })?;
        for (offset, reason) in unreadable {
            self.corrupt(
                &path,
                offset,
                &format!("not a dead-letter record: {reason}"),
            );
        }
        for (start, end) in &report.skipped {
            self.corrupt(
                &path,
                *start,
                &format!("{} bytes fail their CRC or framing", end - start),
            );
        }
        segment.len = report.file_len;
        if let Some(tail) = report.tail {
            let cut = report.file_len - tail;
            if newest {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(context("open", &path))?;
                file.set_len(tail)
                    .and_then(|()| file.sync_all())
                    .map_err(context("truncate", &path))?;
                segment.len = tail;
                self.recovered_torn_bytes += cut;
                tracing::warn!(
                    sink = %self.sink,
                    path = %path.display(),
                    offset = tail,
                    bytes = cut,
                    "Torn write cut off the newest dead-letter segment (a crash during an append)."
                );
            } else {
                self.corrupt(
                    &path,
                    tail,
                    &format!("{cut} unreadable bytes at the end of an older segment"),
                );
            }
        }
        Ok(segment)
    }

    fn corrupt(&mut self, path: &Path, offset: u64, reason: &str) {
        self.corrupt_records += 1;
        tracing::warn!(
            sink = %self.sink,
            path = %path.display(),
            offset,
            reason,
            "Corrupt dead-letter record skipped."
        );
    }

    fn create_segment(&mut self) -> Result<(), DlqError> {
        self.active = None;
        let sequence = self.next_sequence;
        self.next_sequence = sequence.saturating_add(1);
        let path = self.segment_path(sequence);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(context("create", &path))?;
        sync_dir(&self.dir)?;
        self.segments.insert(sequence, Segment::new(path));
        self.active = Some(file);
        self.must_roll = false;
        // The previous newest may have been fully handled while it was being appended to.
        self.reclaim_handled();
        Ok(())
    }

    /// Archives or deletes every fully handled segment but the newest. Best effort: failures are
    /// logged and retried later.
    fn reclaim_handled(&mut self) {
        let newest = self
            .segments
            .last_key_value()
            .map(|(&sequence, _)| sequence);
        let done: Vec<u64> = self
            .segments
            .iter()
            .filter(|(sequence, segment)| Some(**sequence) != newest && segment.pending == 0)
            .map(|(&sequence, _)| sequence)
            .collect();
        for sequence in done {
            self.retire_logged(sequence);
        }
    }

    /// Makes room: archives or deletes the newest segment when it holds records, all handled.
    fn reclaim_handled_newest(&mut self) {
        if let Some((&sequence, segment)) = self.segments.last_key_value()
            && segment.pending == 0
            && segment.len > 0
        {
            self.retire_logged(sequence);
        }
    }

    fn retire_logged(&mut self, sequence: u64) {
        if let Err(error) = self.retire(sequence) {
            tracing::warn!(
                sink = %self.sink,
                segment = sequence,
                error = %error,
                "Cannot remove a replayed dead-letter segment; will retry."
            );
        }
    }

    /// Moves a fully handled segment to the archive, or deletes it, once the cursor is durable.
    fn retire(&mut self, sequence: u64) -> io::Result<()> {
        if self.cursor_dirty {
            self.save_cursor()?;
            self.cursor_dirty = false;
        }
        let Some(segment) = self.segments.get(&sequence) else {
            return Ok(());
        };
        if self.segments.last_key_value().map(|(&s, _)| s) == Some(sequence) {
            self.active = None;
        }
        let path = segment.path.clone();
        if self.config.archive {
            let evicted = self.archive.take_segment(&path, sequence)?;
            self.count_evicted(evicted);
        } else {
            remove_if_exists(&path)?;
        }
        sync_dir(&self.dir)?;
        self.segments.remove(&sequence);
        tracing::debug!(
            sink = %self.sink,
            segment = sequence,
            archived = self.config.archive,
            "Replayed dead-letter segment removed from the queue."
        );
        Ok(())
    }

    /// The cursor as it should be on disk now.
    fn cursor_document(&self) -> CursorDocument {
        let mut before = None;
        let mut handled = Vec::new();
        for (&sequence, segment) in &self.segments {
            match before {
                None => {
                    let Some(first) = segment.records.get(segment.first_pending) else {
                        continue;
                    };
                    before = Some(RecordId {
                        segment: sequence,
                        offset: first.offset,
                    });
                    let rest = &segment.records[segment.first_pending..];
                    handled.extend(
                        rest.iter()
                            .filter(|meta| meta.handled)
                            .map(|meta| RecordId {
                                segment: sequence,
                                offset: meta.offset,
                            }),
                    );
                }
                Some(_) => {
                    if segment.records.len() as u64 != segment.pending {
                        handled.extend(segment.records.iter().filter(|m| m.handled).map(|meta| {
                            RecordId {
                                segment: sequence,
                                offset: meta.offset,
                            }
                        }));
                    }
                }
            }
        }
        // Nothing pending: everything up to the end of the newest segment is handled.
        let before = before.unwrap_or_else(|| match self.segments.last_key_value() {
            Some((&sequence, segment)) => RecordId {
                segment: sequence,
                offset: segment.len,
            },
            None => RecordId {
                segment: self.next_sequence,
                offset: 0,
            },
        });
        CursorDocument {
            version: CURSOR_VERSION,
            sink: self.sink.clone(),
            segment: before.segment,
            offset: before.offset,
            handled,
            updated_at: now_rfc3339(),
        }
    }

    fn save_cursor(&self) -> io::Result<()> {
        let mut bytes =
            serde_json::to_vec_pretty(&self.cursor_document()).map_err(io::Error::other)?;
        bytes.push(b'\n');
        write_atomic(
            &self.dir.join(CURSOR_FILE),
            &self.dir.join(CURSOR_TMP),
            &bytes,
        )
    }

    /// Reads the `written_at` of the oldest unhandled record.
    fn refresh_oldest(&mut self) {
        self.oldest_written_at = None;
        let Some((sequence, segment)) = self.segments.iter().find(|(_, s)| s.pending > 0) else {
            return;
        };
        let Some(meta) = segment.records.get(segment.first_pending) else {
            return;
        };
        let read = File::open(&segment.path)
            .and_then(|mut file| read_payload_at(&mut file, meta.offset, segment.len))
            .map_err(|error| error.to_string())
            .and_then(|payload| payload)
            .and_then(|payload| {
                serde_json::from_slice::<WrittenAt>(&payload).map_err(|error| error.to_string())
            });
        match read {
            Ok(record) => self.oldest_written_at = Some(record.written_at),
            Err(reason) => tracing::debug!(
                sink = %self.sink,
                segment = sequence,
                offset = meta.offset,
                reason = %reason,
                "Cannot read the oldest dead-letter record's time."
            ),
        }
    }
}

pub(super) fn no_record(id: RecordId) -> DlqError {
    DlqError::Io(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("no dead-letter record at {id}"),
    ))
}

pub(super) fn check_sink_name(sink: &str) -> io::Result<()> {
    check_name_component("sink", sink, "a dead-letter directory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::DlqEntry;
    use std::time::Duration;

    fn record(n: usize, entries: usize) -> DlqRecord {
        DlqRecord {
            sink: "loki".to_owned(),
            tenant: Some("team-a".to_owned()),
            labels: vec![("job".to_owned(), "app".to_owned())],
            source: Some("app".to_owned()),
            file: None,
            reason: "http_400".to_owned(),
            detail: "entry too far behind".to_owned(),
            written_at: format!("2026-05-01T10:00:{:02}.000Z", n % 60),
            entries: (0..entries)
                .map(|k| DlqEntry {
                    timestamp_ns: 1_000 + k as i64,
                    line: format!("line {n:04}-{k}").into(),
                    metadata: vec![("trace".to_owned(), "abc".to_owned())],
                    replays: 0,
                })
                .collect(),
        }
    }

    fn frame_len(record: &DlqRecord) -> u64 {
        HEADER_LEN + serde_json::to_vec(record).expect("json").len() as u64
    }

    fn open(dir: &Path, config: DlqConfig) -> Dlq {
        Dlq::open(dir, "loki", config).expect("open")
    }

    fn queue_dir(dir: &Path) -> PathBuf {
        dir.join(DLQ_DIR).join("loki")
    }

    fn peek_all(dlq: &mut Dlq) -> Vec<(RecordId, DlqRecord)> {
        dlq.peek(usize::MAX).expect("peek")
    }

    fn lines(records: &[(RecordId, DlqRecord)]) -> Vec<String> {
        records
            .iter()
            .map(|(_, record)| String::from_utf8_lossy(&record.entries[0].line).into_owned())
            .collect()
    }

    fn flip(path: &Path, offset: u64) {
        let mut bytes = fs::read(path).expect("read");
        bytes[offset as usize] ^= 0x20;
        fs::write(path, bytes).expect("write");
    }

    #[test]
    fn dlq_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Dlq>();
    }

    #[test]
    fn append_and_reopen_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut dlq = open(dir.path(), DlqConfig::default());
        let records = [record(1, 2), record(2, 1), record(3, 3)];
        for r in &records {
            assert_eq!(dlq.append(r).expect("append"), AppendOutcome::Written);
        }
        let stats = dlq.stats();
        assert_eq!(stats.segments, 1);
        assert_eq!(stats.records, 3);
        assert_eq!(stats.entries, 6);
        assert_eq!(stats.bytes, records.iter().map(frame_len).sum::<u64>());
        assert_eq!(
            stats.oldest_written_at.as_deref(),
            Some("2026-05-01T10:00:01.000Z")
        );
        assert!(queue_dir(dir.path()).join(segment_name(0)).is_file());
        drop(dlq);

        let mut reopened = open(dir.path(), DlqConfig::default());
        assert_eq!(reopened.stats(), stats);
        let peeked = peek_all(&mut reopened);
        let got: Vec<DlqRecord> = peeked.iter().map(|(_, r)| r.clone()).collect();
        assert_eq!(got, records);
        assert_eq!(
            peeked[0].0,
            RecordId {
                segment: 0,
                offset: 0
            }
        );
        // Peeking does not remove.
        assert_eq!(peek_all(&mut reopened).len(), 3);
        assert_eq!(reopened.peek(2).expect("peek").len(), 2);
    }

    #[test]
    fn many_records_roll_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let frame = frame_len(&record(0, 1));
        let config = DlqConfig {
            segment_max_bytes: 3 * frame,
            ..DlqConfig::default()
        };
        let mut dlq = open(dir.path(), config.clone());
        for n in 0..10 {
            dlq.append(&record(n, 1)).expect("append");
        }
        assert_eq!(dlq.stats().segments, 4);
        for sequence in 0..4 {
            let len = fs::metadata(queue_dir(dir.path()).join(segment_name(sequence)))
                .expect("segment")
                .len();
            assert!(len <= 3 * frame, "segment {sequence} has {len} bytes");
        }
        drop(dlq);
        let mut reopened = open(dir.path(), config);
        let peeked = peek_all(&mut reopened);
        let expected: Vec<String> = (0..10).map(|n| format!("line {n:04}-0")).collect();
        assert_eq!(lines(&peeked), expected);
        let ids: Vec<RecordId> = peeked.iter().map(|(id, _)| *id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(ids[9].segment, 3);
        // Appends continue in the newest segment, then roll.
        reopened.append(&record(10, 1)).expect("append");
        reopened.append(&record(11, 1)).expect("append");
        reopened.append(&record(12, 1)).expect("append");
        assert_eq!(reopened.stats().segments, 5);
    }

    #[test]
    fn torn_write_is_cut_on_open_and_appends_continue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut dlq = open(dir.path(), DlqConfig::default());
        dlq.append(&record(1, 1)).expect("append");
        dlq.append(&record(2, 1)).expect("append");
        let good_len = dlq.stats().bytes;
        drop(dlq);
        let segment = queue_dir(dir.path()).join(segment_name(0));

        // Half a frame of a third record.
        let payload = serde_json::to_vec(&record(3, 1)).expect("json");
        let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        let half = &frame[..frame.len() / 2];
        let mut file = OpenOptions::new()
            .append(true)
            .open(&segment)
            .expect("open");
        file.write_all(half).expect("write");
        drop(file);

        let mut dlq = open(dir.path(), DlqConfig::default());
        let stats = dlq.stats();
        assert_eq!(stats.recovered_torn_bytes, half.len() as u64);
        assert_eq!(stats.records, 2);
        assert_eq!(stats.corrupt_records, 0);
        assert_eq!(fs::metadata(&segment).expect("stat").len(), good_len);
        dlq.append(&record(4, 1)).expect("append after recovery");
        drop(dlq);

        // Zero-filled blocks (a crash with the size updated but not the data) are cut too.
        let mut file = OpenOptions::new()
            .append(true)
            .open(&segment)
            .expect("open");
        file.write_all(&[0u8; 4096]).expect("write");
        drop(file);
        let mut dlq = open(dir.path(), DlqConfig::default());
        assert_eq!(dlq.stats().recovered_torn_bytes, 4096);
        assert_eq!(
            lines(&peek_all(&mut dlq)),
            ["line 0001-0", "line 0002-0", "line 0004-0"]
        );
        drop(dlq);
        let dlq = open(dir.path(), DlqConfig::default());
        assert_eq!(dlq.stats().recovered_torn_bytes, 0);
        assert_eq!(dlq.stats().records, 3);
    }

    #[test]
    fn flipped_payload_byte_is_detected_and_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let frame = frame_len(&record(0, 1));
        let config = DlqConfig {
            segment_max_bytes: 3 * frame,
            ..DlqConfig::default()
        };
        let mut dlq = open(dir.path(), config.clone());
        for n in 0..6 {
            dlq.append(&record(n, 1)).expect("append");
        }
        let ids: Vec<RecordId> = peek_all(&mut dlq).iter().map(|(id, _)| *id).collect();
        drop(dlq);
        // Older segment 0: a payload byte of its middle record. Newest segment 1: a length byte of
        // its middle record, so that the frame boundary itself is lost.
        flip(
            &queue_dir(dir.path()).join(segment_name(0)),
            ids[1].offset + HEADER_LEN + 20,
        );
        let newest = queue_dir(dir.path()).join(segment_name(1));
        let newest_len = fs::metadata(&newest).expect("stat").len();
        flip(&newest, ids[4].offset);

        let mut dlq = open(dir.path(), config);
        let stats = dlq.stats();
        assert_eq!(stats.corrupt_records, 2);
        assert_eq!(stats.records, 4);
        assert_eq!(stats.recovered_torn_bytes, 0);
        // Valid records after the bad one: the newest segment is not truncated.
        assert_eq!(fs::metadata(&newest).expect("stat").len(), newest_len);
        assert_eq!(
            lines(&peek_all(&mut dlq)),
            ["line 0000-0", "line 0002-0", "line 0003-0", "line 0005-0"]
        );
        assert_eq!(
            Dlq::inspect(dir.path(), "loki", 10).expect("inspect").len(),
            4
        );
    }

    #[test]
    fn full_with_block_refuses_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = DlqConfig {
            max_entries: 3,
            ..DlqConfig::default()
        };
        let mut dlq = open(dir.path(), config);
        dlq.append(&record(1, 2)).expect("append");
        let before = dlq.stats();
        match dlq.append(&record(2, 2)) {
            Err(DlqError::Full { bytes, entries }) => {
                assert_eq!(bytes, before.bytes);
                assert_eq!(entries, 2);
            }
            other => panic!("expected Full, got {other:?}"),
        }
        assert_eq!(dlq.stats(), before);
        assert_eq!(peek_all(&mut dlq).len(), 1);
        let message = DlqError::Full {
            bytes: 1,
            entries: 2,
        }
        .to_string();
        assert!(message.contains("full"), "{message}");

        // A single record larger than max_bytes never fits.
        let tiny = tempfile::tempdir().expect("tempdir");
        let mut dlq = open(
            tiny.path(),
            DlqConfig {
                max_bytes: 100,
                segment_max_bytes: 100,
                ..DlqConfig::default()
            },
        );
        assert!(matches!(
            dlq.append(&record(1, 5)),
            Err(DlqError::Full {
                bytes: 0,
                entries: 0
            })
        ));
        assert_eq!(dlq.stats(), DlqStats::default());
    }

    #[test]
    fn full_with_drop_newest_drops_and_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let frame = frame_len(&record(1, 1));
        let config = DlqConfig {
            max_bytes: 2 * frame,
            segment_max_bytes: 2 * frame,
            when_full: DlqFullPolicy::DropNewest,
            ..DlqConfig::default()
        };
        let mut dlq = open(dir.path(), config);
        dlq.append(&record(1, 1)).expect("append");
        dlq.append(&record(2, 1)).expect("append");
        let before = dlq.stats();
        assert_eq!(
            dlq.append(&record(3, 1)).expect("append"),
            AppendOutcome::Dropped
        );
        let after = dlq.stats();
        assert_eq!(after.dropped_records, 1);
        assert_eq!(
            DlqStats {
                dropped_records: 0,
                ..after
            },
            before
        );
        assert_eq!(lines(&peek_all(&mut dlq)), ["line 0001-0", "line 0002-0"]);
    }

    #[test]
    fn replayed_newest_segment_makes_room() {
        let dir = tempfile::tempdir().expect("tempdir");
        let frame = frame_len(&record(1, 1));
        let config = DlqConfig {
            max_bytes: 2 * frame,
            segment_max_bytes: 2 * frame,
            ..DlqConfig::default()
        };
        let mut dlq = open(dir.path(), config);
        dlq.append(&record(1, 1)).expect("append");
        dlq.append(&record(2, 1)).expect("append");
        assert!(matches!(
            dlq.append(&record(3, 1)),
            Err(DlqError::Full { .. })
        ));
        let ids: Vec<RecordId> = peek_all(&mut dlq).iter().map(|(id, _)| *id).collect();
        dlq.ack(&ids).expect("ack");
        // Segment 0 is handled but still the newest: it stays until room is needed.
        assert_eq!(dlq.stats().segments, 1);
        assert_eq!(
            dlq.append(&record(3, 1)).expect("append"),
            AppendOutcome::Written
        );
        let stats = dlq.stats();
        assert_eq!((stats.segments, stats.records, stats.bytes), (1, 1, frame));
        assert!(
            queue_dir(dir.path())
                .join(ARCHIVE_DIR)
                .join(segment_name(0))
                .is_file()
        );
        assert_eq!(lines(&peek_all(&mut dlq)), ["line 0003-0"]);
    }

    fn peek_ack_retires_segments(archive: bool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let frame = frame_len(&record(0, 1));
        let config = DlqConfig {
            segment_max_bytes: 2 * frame,
            archive,
            ..DlqConfig::default()
        };
        let mut dlq = open(dir.path(), config.clone());
        for n in 0..5 {
            dlq.append(&record(n, 1)).expect("append");
        }
        assert_eq!(dlq.stats().segments, 3);
        let batch = dlq.peek(3).expect("peek");
        assert_eq!(lines(&batch), ["line 0000-0", "line 0001-0", "line 0002-0"]);
        let ids: Vec<RecordId> = batch.iter().map(|(id, _)| *id).collect();
        dlq.ack(&ids).expect("ack");
        // Acknowledging again is harmless.
        dlq.ack(&ids).expect("ack twice");

        let queue = queue_dir(dir.path());
        let archived = queue.join(ARCHIVE_DIR).join(segment_name(0));
        assert!(!queue.join(segment_name(0)).exists());
        assert_eq!(archived.is_file(), archive);
        assert!(queue.join(segment_name(1)).is_file());
        let stats = dlq.stats();
        assert_eq!((stats.segments, stats.records), (2, 2));
        assert_eq!(
            stats.oldest_written_at.as_deref(),
            Some("2026-05-01T10:00:03.000Z")
        );
        drop(dlq);

        let mut reopened = open(dir.path(), config);
        assert_eq!(reopened.stats().records, 2);
        assert_eq!(
            lines(&peek_all(&mut reopened)),
            ["line 0003-0", "line 0004-0"]
        );
        // New segments never reuse an archived or deleted number.
        for n in 5..9 {
            reopened.append(&record(n, 1)).expect("append");
        }
        let ids: Vec<RecordId> = peek_all(&mut reopened).iter().map(|(id, _)| *id).collect();
        assert!(ids.iter().all(|id| id.segment >= 1));
        reopened.ack(&ids).expect("ack");
        let stats = reopened.stats();
        assert_eq!((stats.segments, stats.records, stats.entries), (1, 0, 0));
        assert_eq!(stats.oldest_written_at, None);
        assert_eq!(
            list_segments(&queue.join(ARCHIVE_DIR)).expect("list").len(),
            if archive { 4 } else { 0 }
        );
    }

    #[test]
    fn peek_ack_archives_a_fully_handled_segment() {
        peek_ack_retires_segments(true);
    }

    #[test]
    fn peek_ack_deletes_a_fully_handled_segment_without_archive() {
        peek_ack_retires_segments(false);
    }

    #[test]
    fn out_of_order_acks_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut dlq = open(dir.path(), DlqConfig::default());
        for n in 0..3 {
            dlq.append(&record(n, 2)).expect("append");
        }
        let ids: Vec<RecordId> = peek_all(&mut dlq).iter().map(|(id, _)| *id).collect();
        dlq.ack(&ids[1..2]).expect("ack");
        assert_eq!(dlq.stats().entries, 4);
        drop(dlq);

        let mut dlq = open(dir.path(), DlqConfig::default());
        assert_eq!(lines(&peek_all(&mut dlq)), ["line 0000-0", "line 0002-0"]);
        dlq.ack(&ids[..1]).expect("ack");
        let cursor: CursorDocument = serde_json::from_slice(
            &fs::read(queue_dir(dir.path()).join(CURSOR_FILE)).expect("cursor"),
        )
        .expect("json");
        assert_eq!(
            (cursor.segment, cursor.offset),
            (ids[2].segment, ids[2].offset)
        );
        assert!(cursor.handled.is_empty());

        // An id that names no record fails and changes nothing.
        let bogus = RecordId {
            segment: 0,
            offset: ids[2].offset + 1,
        };
        let error = dlq.ack(&[ids[2], bogus]).expect_err("bogus id");
        assert!(
            error.to_string().contains("no dead-letter record"),
            "{error}"
        );
        assert_eq!(lines(&peek_all(&mut dlq)), ["line 0002-0"]);
    }

    #[test]
    fn record_corrupted_after_open_is_skipped_by_peek() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut dlq = open(dir.path(), DlqConfig::default());
        for n in 0..3 {
            dlq.append(&record(n, 1)).expect("append");
        }
        let ids: Vec<RecordId> = peek_all(&mut dlq).iter().map(|(id, _)| *id).collect();
        flip(
            &queue_dir(dir.path()).join(segment_name(0)),
            ids[1].offset + HEADER_LEN + 20,
        );
        let batch = peek_all(&mut dlq);
        assert_eq!(lines(&batch), ["line 0000-0", "line 0002-0"]);
        let stats = dlq.stats();
        assert_eq!((stats.records, stats.corrupt_records), (2, 1));
        dlq.ack(&[ids[0]]).expect("ack");
        // The skip is made durable with the acknowledgement.
        let cursor: CursorDocument = serde_json::from_slice(
            &fs::read(queue_dir(dir.path()).join(CURSOR_FILE)).expect("cursor"),
        )
        .expect("json");
        assert_eq!((cursor.segment, cursor.offset), (0, ids[2].offset));
    }

    #[test]
    fn purge_removes_segments_and_cursor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut dlq = open(dir.path(), DlqConfig::default());
        for n in 0..3 {
            dlq.append(&record(n, 2)).expect("append");
        }
        let first = peek_all(&mut dlq)[0].0;
        dlq.ack(&[first]).expect("ack");
        let removed = dlq.purge().expect("purge");
        assert_eq!(
            (removed.records, removed.entries, removed.segments),
            (2, 4, 1)
        );
        let queue = queue_dir(dir.path());
        assert!(list_segments(&queue).expect("list").is_empty());
        assert!(!queue.join(CURSOR_FILE).exists());
        assert_eq!(dlq.stats(), DlqStats::default());
        assert!(peek_all(&mut dlq).is_empty());

        dlq.append(&record(9, 1)).expect("append after purge");
        drop(dlq);
        let mut dlq = open(dir.path(), DlqConfig::default());
        assert_eq!(lines(&peek_all(&mut dlq)), ["line 0009-0"]);
    }

    #[test]
    fn list_sinks_names_queue_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(Dlq::list_sinks(dir.path()).is_empty());
        Dlq::open(dir.path(), "loki_b", DlqConfig::default()).expect("open");
        Dlq::open(dir.path(), "loki.a", DlqConfig::default()).expect("open");
        fs::write(dir.path().join(DLQ_DIR).join("stray.txt"), b"x").expect("write");
        assert_eq!(Dlq::list_sinks(dir.path()), ["loki.a", "loki_b"]);
    }

    #[test]
    fn inspect_reads_unhandled_records_without_changing_anything() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(
            Dlq::inspect(dir.path(), "loki", 10)
                .expect("inspect")
                .is_empty()
        );
        assert!(!dir.path().join(DLQ_DIR).exists());

        let mut dlq = open(dir.path(), DlqConfig::default());
        for n in 0..4 {
            dlq.append(&record(n, 1)).expect("append");
        }
        let first = peek_all(&mut dlq)[0].0;
        dlq.ack(&[first]).expect("ack");
        // A write in progress at the end is skipped, not cut.
        let segment = queue_dir(dir.path()).join(segment_name(0));
        let mut file = OpenOptions::new()
            .append(true)
            .open(&segment)
            .expect("open");
        file.write_all(&[7, 0, 0, 0, 1]).expect("write");
        drop(file);
        let len = fs::metadata(&segment).expect("stat").len();

        let all = Dlq::inspect(dir.path(), "loki", 100).expect("inspect");
        let got: Vec<String> = all
            .iter()
            .map(|r| String::from_utf8_lossy(&r.entries[0].line).into_owned())
            .collect();
        assert_eq!(got, ["line 0001-0", "line 0002-0", "line 0003-0"]);
        assert_eq!(
            Dlq::inspect(dir.path(), "loki", 2).expect("inspect").len(),
            2
        );
        assert_eq!(fs::metadata(&segment).expect("stat").len(), len);
        assert!(Dlq::inspect(dir.path(), "../x", 1).is_err());
    }

    #[test]
    fn sink_names_that_escape_the_directory_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["", ".", "..", "../x", "a/b", "a\\b", "a\0b"] {
            match Dlq::open(dir.path(), name, DlqConfig::default()) {
                Err(DlqError::Io(error)) => assert_eq!(error.kind(), io::ErrorKind::InvalidInput),
                other => panic!("{name:?}: expected InvalidInput, got {other:?}"),
            }
        }
    }

    #[test]
    fn config_defaults_and_validation() {
        let config: DlqConfig =
            serde_json::from_str(r#"{"when_full": "drop_newest"}"#).expect("json");
        assert_eq!(
            config,
            DlqConfig {
                when_full: DlqFullPolicy::DropNewest,
                ..DlqConfig::default()
            }
        );
        assert_eq!(config.reprocess_interval, Duration::from_secs(30));
        assert!(DlqConfig::default().validate("sinks.loki.dlq").is_empty());

        let bad = DlqConfig {
            max_bytes: 0,
            max_entries: 0,
            reprocess_interval: Duration::ZERO,
            reprocess_batch_records: 0,
            ..DlqConfig::default()
        };
        let paths: Vec<String> = bad
            .validate("sinks.loki.dlq")
            .into_iter()
            .map(|error| error.path)
            .collect();
        assert_eq!(
            paths,
            [
                "sinks.loki.dlq.max_bytes",
                "sinks.loki.dlq.max_entries",
                "sinks.loki.dlq.reprocess_batch_records",
                "sinks.loki.dlq.reprocess_interval",
            ]
        );
        let errors = DlqConfig {
            max_bytes: 10,
            segment_max_bytes: 20,
            ..DlqConfig::default()
        }
        .validate("dlq");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "dlq.segment_max_bytes");
    }
}
