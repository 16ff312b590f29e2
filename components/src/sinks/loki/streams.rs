//! Grouping a batch into Loki streams: labels rendered and merged once per label set, the
//! timestamp guard applied once per stream, entries sorted by time within a stream.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use super::config::LineTooLong;
use super::metrics;
use super::proto;
use super::response::RejectReason;
use super::sink::LokiSink;
use super::timestamps::{self, Verdict};
use crate::config::valid_label_name;
use crate::dispatcher::Rejected;
use crate::event::{LogEvent, now_ns};

/// One stream of the push being built.
pub(super) struct StreamBuild {
    pub(super) labels_text: String,
    /// Sorted label pairs, for matching Loki's messages.
    pub(super) pairs: Vec<(String, String)>,
    pub(super) valid: bool,
    /// The oldest time Loki accepts for this stream, looked up once per batch.
    pub(super) cutoff: Option<i64>,
    /// What is sent, sorted by time.
    pub(super) entries: Vec<SendEntry>,
}

/// One entry of a stream as it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SendEntry {
    /// The event's index in the batch.
    pub(super) index: usize,
    /// The time sent: the event's own, or a clamped one.
    pub(super) timestamp_ns: i64,
    /// Whether the time was moved (the original goes into structured metadata).
    pub(super) clamped: bool,
    /// Bytes of the line sent: the whole line, or `max_line_size` of it when truncated (the
    /// original length goes into structured metadata).
    pub(super) line_len: usize,
}

impl SendEntry {
    /// The line as sent.
    pub(super) fn line<'a>(&self, events: &'a [LogEvent]) -> &'a [u8] {
        &events[self.index].line[..self.line_len]
    }

    pub(super) fn truncated(&self, events: &[LogEvent]) -> bool {
        self.line_len < events[self.index].line.len()
    }
}

/// Where a line longer than `max` bytes is cut: at most `max`, never inside a UTF-8 character.
pub(super) fn cut_point(line: &[u8], max: usize) -> usize {
    if line.len() <= max {
        return line.len();
    }
    let mut cut = max;
    // A UTF-8 character is at most 4 bytes: back up over at most 3 continuation bytes.
    for _ in 0..3 {
        if cut > 0 && line[cut] & 0xC0 == 0x80 {
            cut -= 1;
        } else {
            break;
        }
    }
    if line[cut] & 0xC0 == 0x80 { max } else { cut }
}

/// The push, with what was decided before sending.
pub(super) struct Prepared {
    pub(super) streams: Vec<StreamBuild>,
    /// Events not sent: (index, reason, detail).
    pub(super) rejected: Vec<Rejected>,
    /// What the guards did, counted once per request (see [`LokiSink::count_guarded`]).
    pub(super) guarded: Guarded,
}

/// What the line and timestamp guards did to one push.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Guarded {
    /// Too old, under `policy: drop`.
    pub(super) dropped_too_old: u64,
    /// Too long, under `line_too_long: drop`.
    pub(super) dropped_too_long: u64,
    pub(super) truncated: u64,
    pub(super) clamped: u64,
}

impl Prepared {
    /// Entries to send.
    pub(super) fn entries(&self) -> usize {
        self.streams.iter().map(|s| s.entries.len()).sum()
    }

    /// Whether Loki would now refuse an entry this push was built to send: a cutoff learned
    /// (or moved on with time) since is past a stream's oldest entry.
    pub(super) fn stale(
        &self,
        learner: &timestamps::Learner,
        ttl: std::time::Duration,
        now: i64,
    ) -> bool {
        self.streams.iter().any(|stream| {
            let Some(oldest) = stream.entries.first() else {
                return false;
            };
            learner
                .cutoff(&stream.labels_text, now, ttl)
                .is_some_and(|cutoff| cutoff > oldest.timestamp_ns)
        })
    }
}

impl LokiSink {
    /// Groups, guards and encodes `events` as one push body, without sending it: what `send`
    /// does before the request (also what the encoding benchmark measures). Returns the body,
    /// its content type and content encoding.
    pub fn encode_batch(
        &self,
        events: &[LogEvent],
    ) -> Result<(Bytes, &'static str, Option<&'static str>), String> {
        let all: Vec<usize> = (0..events.len()).collect();
        let prepared = self.prepare(events, &all, now_ns());
        self.encode(events, &prepared)
    }

    /// Groups `events` into streams (labels rendered, merged and formatted) and applies the
    /// timestamp policy, as `send` does before encoding; returns the number of streams. Exposed
    /// for the label-handling benchmark, not an API.
    #[doc(hidden)]
    pub fn group_streams(&self, events: &[LogEvent]) -> usize {
        let all: Vec<usize> = (0..events.len()).collect();
        self.prepare(events, &all, now_ns()).streams.len()
    }

    /// Groups the events at `indexes` into streams and applies the timestamp policy.
    pub(super) fn prepare(&self, events: &[LogEvent], indexes: &[usize], now: i64) -> Prepared {
        let mut by_labels: HashMap<(usize, usize, usize), usize> = HashMap::new();
        let mut by_text: HashMap<String, usize> = HashMap::new();
        let mut streams: Vec<StreamBuild> = Vec::new();
        let mut rejected = Vec::new();
        let mut guarded = Guarded::default();
        let max_line = self.config.max_line_size;
        // Events of one file come in runs: the previous event's stream is checked first.
        let mut last: Option<((usize, usize, usize), usize)> = None;
        for &index in indexes {
            let event = &events[index];
            // Templates may read the source and the file, so they are part of the cache key.
            let key = (
                event.labels.identity(),
                Arc::as_ptr(&event.source) as *const u8 as usize,
                event
                    .file
                    .as_ref()
                    .map_or(0, |f| Arc::as_ptr(f) as *const u8 as usize),
            );
            let known = match last {
                Some((last_key, i)) if last_key == key => Some(i),
                _ => by_labels.get(&key).copied(),
            };
            let stream_index = match known {
                Some(i) => i,
                None => {
                    let mut merged: BTreeMap<&str, String> = event
                        .labels
                        .iter()
                        .filter(|(k, _)| Some(*k) != self.config.tenant_label.as_deref())
                        .map(|(k, v)| (k, v.to_string()))
                        .collect();
                    for (name, template) in &self.templates {
                        let value = template.render(event);
                        // Loki drops labels with empty values; so do we.
                        if value.is_empty() {
                            merged.remove(name.as_str());
                        } else {
                            merged.insert(name, value);
                        }
                    }
                    let pairs: Vec<(String, String)> = merged
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect();
                    let valid = !pairs.is_empty() && pairs.iter().all(|(k, _)| valid_label_name(k));
                    let text = proto::format_labels(merged.iter().map(|(k, v)| (*k, v.as_str())));
                    let i = *by_text.entry(text.clone()).or_insert_with(|| {
                        let cutoff =
                            self.learner
                                .cutoff(&text, now, self.config.timestamps.learned_ttl);
                        streams.push(StreamBuild {
                            labels_text: text,
                            pairs,
                            valid,
                            cutoff,
                            entries: Vec::new(),
                        });
                        streams.len() - 1
                    });
                    by_labels.insert(key, i);
                    i
                }
            };
            last = Some((key, stream_index));
            let stream = &mut streams[stream_index];
            if !stream.valid {
                rejected.push(Rejected {
                    index,
                    reason: RejectReason::InvalidLabels.as_str(),
                    detail: format!(
                        "stream {} has no labels or a label name Loki refuses ([a-zA-Z_][a-zA-Z0-9_]*)",
                        stream.labels_text
                    ),
                });
                continue;
            }
            let mut line_len = event.line.len();
            if max_line > 0 && line_len > max_line {
                match self.config.line_too_long {
                    LineTooLong::Truncate => {
                        line_len = cut_point(&event.line, max_line);
                        guarded.truncated += 1;
                    }
                    LineTooLong::Dlq => {
                        rejected.push(Rejected {
                            index,
                            reason: RejectReason::LineTooLong.as_str(),
                            detail: format!(
                                "line of {line_len} bytes is longer than max_line_size ({max_line})"
                            ),
                        });
                        continue;
                    }
                    LineTooLong::Drop => {
                        guarded.dropped_too_long += 1;
                        continue;
                    }
                }
            }
            match timestamps::verdict(
                &self.config.timestamps,
                stream.cutoff,
                event.timestamp_ns,
                now,
            ) {
                Verdict::Send {
                    timestamp_ns,
                    clamped: was_clamped,
                } => {
                    guarded.clamped += u64::from(was_clamped);
                    stream.entries.push(SendEntry {
                        index,
                        timestamp_ns,
                        clamped: was_clamped,
                        line_len,
                    });
                }
                Verdict::Divert => rejected.push(Rejected {
                    index,
                    reason: RejectReason::TooOld.as_str(),
                    detail: "older than the oldest timestamp Loki accepts (learned)".to_string(),
                }),
                Verdict::Drop => guarded.dropped_too_old += 1,
            }
        }
        for stream in &mut streams {
            stream.entries.sort_by_key(|e| e.timestamp_ns);
        }
        Prepared {
            streams,
            rejected,
            guarded,
        }
    }

    /// Counts what the guards did to a push; for a push rebuilt, only what they did more than
    /// to the push it replaces (each event is counted once however often it is rebuilt).
    pub(super) fn count_guarded(&self, guarded: Guarded, replaced: Option<Guarded>) {
        let before = replaced.unwrap_or_default();
        let more = |now: u64, then: u64| now.saturating_sub(then);
        let clamped = more(guarded.clamped, before.clamped);
        if clamped > 0 {
            metrics::TIMESTAMP_CLAMPED.add(clamped, &self.attrs);
        }
        let truncated = more(guarded.truncated, before.truncated);
        let too_long = more(guarded.dropped_too_long, before.dropped_too_long);
        let too_old = more(guarded.dropped_too_old, before.dropped_too_old);
        if truncated + too_long + too_old == 0 {
            return;
        }
        let component = crate::telemetry::ComponentAttrs::new(&self.key);
        if truncated > 0 {
            crate::telemetry::LINES_TRUNCATED.add(truncated, &component.component);
        }
        if too_long > 0 {
            component.dropped(too_long as usize, "line_too_long");
        }
        if too_old > 0 {
            component.dropped(too_old as usize, "timestamp_too_old");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_at_the_limit_but_never_inside_a_character() {
        assert_eq!(cut_point(b"short", 10), 5);
        assert_eq!(cut_point(b"exactly10!", 10), 10);
        assert_eq!(cut_point(b"0123456789abc", 10), 10);
        // "é" is 2 bytes (c3 a9) at 9..11: cutting at 10 would split it.
        let line = "012345678éxyz".as_bytes();
        assert_eq!(cut_point(line, 10), 9);
        assert!(std::str::from_utf8(&line[..cut_point(line, 10)]).is_ok());
        // A 4-byte character across the limit.
        let line = "0123456🦀tail".as_bytes();
        let cut = cut_point(line, 9);
        assert_eq!(cut, 7);
        // Not UTF-8 at all: cut at the limit.
        assert_eq!(cut_point(&[0x80u8; 20], 10), 10);
    }
}
