//! Grouping a batch into Loki streams: labels rendered and merged once per label set, the
//! stream cap asked once per label set, the timestamp guard applied once per stream, entries
//! sorted by time within a stream.
//!
//! With `max_streams`, a label set the cap does not admit (see [`super::stream_cap`]) is not
//! made a stream: under `fold` its lines go to the tenant's overflow stream (the sink's constant
//! `labels` plus `overflow="true"`), each entry carrying the label pairs left out as structured
//! metadata; under `drop` they are not sent, counted, and settled as handled (never retried,
//! never dead-lettered).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use super::config::{LineTooLong, StreamOverflow};
use super::metrics;
use super::proto;
use super::response::RejectReason;
use super::sink::LokiSink;
use super::stream_cap::StreamCap;
use super::timestamps::{self, Verdict};
use crate::config::valid_label_name;
use crate::dispatcher::Rejected;
use crate::event::{LogEvent, now_ns};
use crate::telemetry::TelemetryEvent as _;

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
    /// For an entry folded into the overflow stream: its label pairs left out of that stream
    /// (an index into [`Prepared::moved`]), sent as structured metadata.
    pub(super) moved: Option<u32>,
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
    /// Per label set folded into the overflow stream, the pairs that stream leaves out.
    pub(super) moved: Vec<Vec<(String, String)>>,
    /// Label sets past the stream cap, and the first of them (for the log).
    pub(super) overflowed: Option<Overflowed>,
}

/// The label sets of one push past the stream cap.
#[derive(Clone, Debug)]
pub(super) struct Overflowed {
    pub(super) tenant: String,
    pub(super) label_sets: usize,
    pub(super) first: String,
}

/// What one push did with the label sets past the stream cap.
#[derive(Default)]
struct PastCap {
    /// The overflow stream's index, once added.
    stream: Option<usize>,
    moved: Vec<Vec<(String, String)>>,
    overflowed: Option<Overflowed>,
}

/// Where the events of one label set go.
#[derive(Clone, Copy, Debug)]
enum Route {
    /// A stream of their own (or a stream refused for its labels).
    Own(usize),
    /// The overflow stream, with these pairs ([`Prepared::moved`]) as structured metadata.
    Folded { stream: usize, moved: u32 },
    /// Past the cap under `stream_overflow: drop`.
    Dropped,
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
    /// Past the stream cap, into the overflow stream (`fold`).
    pub(super) folded: u64,
    /// Past the stream cap, under `stream_overflow: drop`.
    pub(super) dropped_overflow: u64,
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

    /// Groups the events at `indexes` into streams and applies the stream cap and the
    /// timestamp policy.
    pub(super) fn prepare(&self, events: &[LogEvent], indexes: &[usize], now: i64) -> Prepared {
        let mut by_labels: HashMap<(usize, usize, usize), Route> = HashMap::new();
        let mut by_text: HashMap<String, Route> = HashMap::new();
        let mut streams: Vec<StreamBuild> = Vec::new();
        let mut rejected = Vec::new();
        let mut guarded = Guarded::default();
        let mut past_cap = PastCap::default();
        let max_line = self.config.max_line_size;
        // A batch has one tenant (the dispatcher partitions by it): its first event names it.
        let tenant_name = match (&self.cap, indexes.first()) {
            (Some(_), Some(&first)) => self.tenant_of(&events[first]),
            _ => "",
        };
        let tenant = StreamCap::tenant_key(tenant_name);
        // Events of one file come in runs: the previous event's stream is checked first.
        // The source and the file are part of an event's stream only through templates that
        // read them; otherwise 1,000 files with the same labels would cost 1,000 label
        // merges per batch.
        let reads_source = self.templates.iter().any(|(_, t)| t.reads_source());
        let reads_file = self.templates.iter().any(|(_, t)| t.reads_file());
        let mut last: Option<((usize, usize, usize), Route)> = None;
        for &index in indexes {
            let event = &events[index];
            let key = (
                event.labels.identity(),
                if reads_source {
                    Arc::as_ptr(&event.source) as *const u8 as usize
                } else {
                    0
                },
                match &event.file {
                    Some(file) if reads_file => Arc::as_ptr(file) as *const u8 as usize,
                    _ => 0,
                },
            );
            let known = match last {
                Some((last_key, route)) if last_key == key => Some(route),
                _ => by_labels.get(&key).copied(),
            };
            let route = match known {
                Some(route) => route,
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
                    let route = match by_text.get(&text) {
                        Some(route) => *route,
                        None => {
                            // The cap is asked once per label set per batch; a set Loki would
                            // refuse for its labels takes no slot.
                            let route = match &self.cap {
                                Some(cap) if valid && !cap.admit(tenant, &text, now) => self
                                    .route_past_cap(
                                        cap,
                                        &mut past_cap,
                                        &mut streams,
                                        &text,
                                        pairs,
                                        tenant_name,
                                        now,
                                    ),
                                _ => Route::Own(self.new_stream(
                                    &mut streams,
                                    text.clone(),
                                    pairs,
                                    valid,
                                    now,
                                )),
                            };
                            by_text.insert(text, route);
                            route
                        }
                    };
                    by_labels.insert(key, route);
                    route
                }
            };
            last = Some((key, route));
            let (stream_index, moved_index) = match route {
                Route::Own(i) => (i, None),
                Route::Folded { stream, moved } => {
                    guarded.folded += 1;
                    (stream, Some(moved))
                }
                Route::Dropped => {
                    guarded.dropped_overflow += 1;
                    continue;
                }
            };
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
                        moved: moved_index,
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
        if let Some(cap) = &self.cap {
            metrics::ACTIVE_STREAMS
                .record(i64::try_from(cap.active()).unwrap_or(i64::MAX), &self.attrs);
        }
        Prepared {
            streams,
            rejected,
            guarded,
            moved: past_cap.moved,
            overflowed: past_cap.overflowed,
        }
    }

    /// Adds a stream to the push; its index.
    fn new_stream(
        &self,
        streams: &mut Vec<StreamBuild>,
        labels_text: String,
        pairs: Vec<(String, String)>,
        valid: bool,
        now: i64,
    ) -> usize {
        let cutoff = self
            .learner
            .cutoff(&labels_text, now, self.config.timestamps.learned_ttl);
        streams.push(StreamBuild {
            labels_text,
            pairs,
            valid,
            cutoff,
            entries: Vec::new(),
        });
        streams.len() - 1
    }

    /// Where the events of a label set past the cap go: the overflow stream (added to the push
    /// when first needed) with the pairs it leaves out, or nowhere under `drop`.
    #[allow(clippy::too_many_arguments)]
    fn route_past_cap(
        &self,
        cap: &StreamCap,
        past: &mut PastCap,
        streams: &mut Vec<StreamBuild>,
        labels_text: &str,
        pairs: Vec<(String, String)>,
        tenant: &str,
        now: i64,
    ) -> Route {
        match &mut past.overflowed {
            Some(overflowed) => overflowed.label_sets += 1,
            None => {
                past.overflowed = Some(Overflowed {
                    tenant: tenant.to_string(),
                    label_sets: 1,
                    first: labels_text.to_string(),
                })
            }
        }
        if cap.policy == StreamOverflow::Drop {
            return Route::Dropped;
        }
        let stream = match past.stream {
            Some(stream) => stream,
            None => {
                let stream = self.new_stream(
                    streams,
                    cap.overflow_text.clone(),
                    cap.overflow_pairs.clone(),
                    true,
                    now,
                );
                past.stream = Some(stream);
                stream
            }
        };
        past.moved.push(
            pairs
                .into_iter()
                .filter(|pair| !cap.overflow_pairs.contains(pair))
                .collect(),
        );
        Route::Folded {
            stream,
            moved: u32::try_from(past.moved.len() - 1).unwrap_or(u32::MAX),
        }
    }

    /// The tenant of an event: its `tenant_label` value, else `tenant_id` (empty: none).
    fn tenant_of<'a>(&'a self, event: &'a LogEvent) -> &'a str {
        self.config
            .tenant_label
            .as_deref()
            .and_then(|label| event.labels.get(label))
            .or(self.config.tenant_id.as_deref())
            .unwrap_or("")
    }

    /// Counts what the guards and the stream cap did to a push; for a push rebuilt, only what
    /// they did more than to the push it replaces (each event is counted once however often it
    /// is rebuilt).
    pub(super) fn count_guarded(&self, prepared: &Prepared, replaced: Option<Guarded>) {
        let guarded = prepared.guarded;
        let before = replaced.unwrap_or_default();
        let more = |now: u64, then: u64| now.saturating_sub(then);
        let clamped = more(guarded.clamped, before.clamped);
        if clamped > 0 {
            metrics::TIMESTAMP_CLAMPED.add(clamped, &self.attrs);
        }
        let folded = more(guarded.folded, before.folded);
        let dropped_overflow = more(guarded.dropped_overflow, before.dropped_overflow);
        if let (Some(cap), Some(overflowed)) = (&self.cap, &prepared.overflowed)
            && folded + dropped_overflow > 0
        {
            super::events::StreamsOverflowed {
                sink: &self.key,
                cap,
                events: folded + dropped_overflow,
                overflowed,
            }
            .emit();
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
    use crate::dispatcher::{SendOutcome, SinkService};
    use crate::event::{EventBatch, Labels};
    use crate::sinks::loki::{LokiEncoding, LokiSinkConfig};
    use prost::Message;

    const SECOND: i64 = 1_000_000_000;
    const MINUTE: i64 = 60 * SECOND;
    /// A whole second a long way after the epoch: the batches' "now".
    const C: i64 = 1_800_000_000 * SECOND;

    /// A sink whose streams are one per file (`{{ file }}`), at most 3 of them.
    fn capped(policy: StreamOverflow, encoding: LokiEncoding) -> LokiSink {
        LokiSinkConfig {
            endpoint: "http://127.0.0.1:3100".into(),
            healthcheck: false,
            encoding,
            labels: BTreeMap::from([
                ("job".to_string(), "app".to_string()),
                ("file".to_string(), "{{ file }}".to_string()),
            ]),
            max_streams: 3,
            stream_overflow: policy,
            ..LokiSinkConfig::default()
        }
        .build("loki")
        .unwrap()
    }

    /// Two lines from each of `files` (`/var/log/<name>.log`), at time `ts`.
    fn lines_of(files: &[&str], ts: i64) -> Vec<LogEvent> {
        files
            .iter()
            .flat_map(|name| {
                let file: Arc<str> = format!("/var/log/{name}.log").into();
                (0..2).map(move |n| LogEvent {
                    timestamp_ns: ts + n,
                    observed_ns: ts,
                    line: Bytes::from(format!("{name} line {n}")),
                    labels: Labels::new([("env", "prod")]),
                    metadata: Vec::new(),
                    source: "app".into(),
                    file: Some(file.clone()),
                    replays: 0,
                    fields: Default::default(),
                })
            })
            .collect()
    }

    fn prepare_at(sink: &LokiSink, events: &[LogEvent], now: i64) -> Prepared {
        let all: Vec<usize> = (0..events.len()).collect();
        sink.prepare(events, &all, now)
    }

    /// The files of the streams of a push that have one of their own.
    fn own_files(prepared: &Prepared) -> Vec<String> {
        prepared
            .streams
            .iter()
            .filter(|s| !s.labels_text.contains("overflow="))
            .filter(|s| !s.entries.is_empty())
            .filter_map(|s| s.pairs.iter().find(|(k, _)| k == "file"))
            .map(|(_, v)| v.clone())
            .collect()
    }

    const OVERFLOW: &str = r#"{job="app", overflow="true"}"#;

    #[test]
    fn label_sets_past_the_cap_fold_into_one_overflow_stream_with_their_labels_as_metadata() {
        let sink = capped(StreamOverflow::Fold, LokiEncoding::Protobuf);
        let events = lines_of(&["a", "b", "c", "d", "e"], C);
        let prepared = prepare_at(&sink, &events, C);
        assert_eq!(
            own_files(&prepared),
            ["/var/log/a.log", "/var/log/b.log", "/var/log/c.log"]
        );
        assert_eq!(prepared.streams.len(), 4);
        let overflow = &prepared.streams[3];
        // The sink's constant labels plus the marker; the event's `env` and the templated
        // `file` are left out of it.
        assert_eq!(overflow.labels_text, OVERFLOW);
        assert_eq!(overflow.entries.len(), 4);
        assert!(prepared.rejected.is_empty());
        assert_eq!(prepared.guarded.folded, 4);
        assert_eq!(prepared.guarded.dropped_overflow, 0);
        let overflowed = prepared.overflowed.as_ref().unwrap();
        assert_eq!(overflowed.label_sets, 2);
        assert!(overflowed.first.contains("/var/log/d.log"));

        // What Loki receives: the left-out pairs as each entry's structured metadata.
        let (body, _, _) = sink.encode(&events, &prepared).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let push = proto::PushRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(push.streams.len(), 4);
        let overflow = push.streams.iter().find(|s| s.labels == OVERFLOW).unwrap();
        let mut seen: Vec<(String, Vec<(String, String)>)> = overflow
            .entries
            .iter()
            .map(|e| {
                (
                    String::from_utf8_lossy(&e.line).into_owned(),
                    e.structured_metadata
                        .iter()
                        .map(|p| (p.name.clone(), p.value.clone()))
                        .collect(),
                )
            })
            .collect();
        seen.sort();
        let moved = |file: &str| {
            vec![
                ("env".to_string(), "prod".to_string()),
                ("file".to_string(), format!("/var/log/{file}.log")),
            ]
        };
        assert_eq!(
            seen,
            vec![
                ("d line 0".to_string(), moved("d")),
                ("d line 1".to_string(), moved("d")),
                ("e line 0".to_string(), moved("e")),
                ("e line 1".to_string(), moved("e")),
            ]
        );
        // The streams of their own carry no added metadata.
        assert!(
            push.streams
                .iter()
                .filter(|s| s.labels != OVERFLOW)
                .flat_map(|s| &s.entries)
                .all(|e| e.structured_metadata.is_empty())
        );

        // The same in JSON.
        let sink = capped(StreamOverflow::Fold, LokiEncoding::Json);
        let prepared = prepare_at(&sink, &events, C);
        let (body, _, _) = sink.encode(&events, &prepared).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let overflow = json["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stream"]["overflow"] == "true")
            .unwrap();
        assert_eq!(overflow["stream"].as_object().unwrap().len(), 2);
        let values = overflow["values"].as_array().unwrap();
        assert_eq!(values.len(), 4);
        assert_eq!(values[0][2]["file"], "/var/log/d.log");
        assert_eq!(values[0][2]["env"], "prod");
    }

    #[test]
    fn label_sets_past_the_cap_under_drop_are_counted_and_settled_never_rejected() {
        let sink = capped(StreamOverflow::Drop, LokiEncoding::Protobuf);
        let events = lines_of(&["a", "b", "c", "d", "e"], C);
        let prepared = prepare_at(&sink, &events, C);
        assert_eq!(
            own_files(&prepared),
            ["/var/log/a.log", "/var/log/b.log", "/var/log/c.log"]
        );
        assert_eq!(prepared.streams.len(), 3, "no overflow stream under drop");
        assert_eq!(prepared.entries(), 6);
        assert_eq!(prepared.guarded.dropped_overflow, 4);
        assert_eq!(prepared.guarded.folded, 0);
        // Not rejected: a rejection would go to the dead-letter queue.
        assert!(prepared.rejected.is_empty());

        // A batch with nothing but label sets past the cap is settled as handled at once:
        // nothing to send, nothing to retry or to dead-letter.
        let sink = capped(StreamOverflow::Drop, LokiEncoding::Protobuf);
        let now = now_ns();
        let first = EventBatch::new(
            lines_of(&["a", "b", "c"], now),
            crate::ack::Finalizers::default(),
        );
        assert!(sink.request(&first, &None).is_ok());
        let past = EventBatch::new(
            lines_of(&["d", "e"], now),
            crate::ack::Finalizers::default(),
        );
        match sink.request(&past, &None) {
            Err(SendOutcome::Delivered) => {}
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("built a push for label sets past the cap"),
        }
    }

    #[test]
    fn an_idle_label_set_frees_its_slot_and_an_active_one_keeps_it() {
        let sink = capped(StreamOverflow::Fold, LokiEncoding::Protobuf);
        let idle = 30 * MINUTE;
        let t0 = C;
        prepare_at(&sink, &lines_of(&["a", "b", "c"], t0), t0);
        // a is seen again halfway; b and c are not.
        let halfway = prepare_at(&sink, &lines_of(&["a"], t0 + idle / 2), t0 + idle / 2);
        assert_eq!(own_files(&halfway), ["/var/log/a.log"]);
        // Just before b and c are idle, d still overflows.
        let before = prepare_at(&sink, &lines_of(&["d"], t0 + idle - 1), t0 + idle - 1);
        assert!(own_files(&before).is_empty());
        assert_eq!(before.guarded.folded, 2);
        // Once they are, their slots are free: d and e get streams, f does not (a is active).
        let after = prepare_at(
            &sink,
            &lines_of(&["d", "e", "f", "a"], t0 + idle),
            t0 + idle,
        );
        assert_eq!(
            own_files(&after),
            ["/var/log/d.log", "/var/log/e.log", "/var/log/a.log"]
        );
        assert_eq!(after.guarded.folded, 2);
        assert_eq!(sink.cap.as_ref().unwrap().active(), 3);
    }

    #[test]
    fn each_tenant_has_a_cap_of_its_own_and_no_cap_means_no_overflow() {
        let sink = LokiSinkConfig {
            endpoint: "http://127.0.0.1:3100".into(),
            healthcheck: false,
            tenant_label: Some("org".into()),
            labels: BTreeMap::from([("file".to_string(), "{{ file }}".to_string())]),
            max_streams: 2,
            ..LokiSinkConfig::default()
        }
        .build("loki")
        .unwrap();
        let of_tenant = |org: &str| {
            let mut events = lines_of(&["a", "b", "c"], C);
            for event in &mut events {
                event.labels = Labels::new([("org", org)]);
            }
            events
        };
        for org in ["team-a", "team-b"] {
            let prepared = prepare_at(&sink, &of_tenant(org), C);
            assert_eq!(own_files(&prepared).len(), 2, "{org}");
            assert_eq!(prepared.guarded.folded, 2, "{org}");
            // No constant label: the overflow stream has only its marker.
            assert_eq!(prepared.streams[2].labels_text, r#"{overflow="true"}"#);
        }

        let uncapped = LokiSinkConfig {
            max_streams: 0,
            ..capped(StreamOverflow::Fold, LokiEncoding::Protobuf)
                .config
                .clone()
        }
        .build("loki")
        .unwrap();
        let files: Vec<String> = (0..50).map(|i| format!("f{i}")).collect();
        let names: Vec<&str> = files.iter().map(String::as_str).collect();
        let prepared = prepare_at(&uncapped, &lines_of(&names, C), C);
        assert_eq!(own_files(&prepared).len(), 50);
        assert!(prepared.overflowed.is_none());
    }

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
