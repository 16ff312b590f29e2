//! Loki's answer to a push, turned into what the dispatcher does next.
//!
//! Guarantees, by Loki's answer:
//! - 2xx except 260: delivered. 260 (ingestion blocked): retried.
//! - 400: a partial success; never resent as a whole. The refused entries are found by
//!   reconciling Loki's texts with what was sent, so that no entry Loki may have refused is
//!   counted delivered (`sent_entries_total` never exceeds what Loki accepted):
//!   - a grouped text (`N errors like: ...`) names a stream and, for time limits, the second
//!     of the entries it stands for: of that stream's entries in that second, the `N` earliest
//!     (too old) or latest (too new) are the refused ones, because Loki refuses by comparing
//!     each entry's time, to the nanosecond, with one cutoff per push;
//!   - an ingester listing (`total ignored: X out of Y for stream: ...`) refuses the `X`
//!     earliest entries of the stream (the entries are sent sorted, and an entry too far behind
//!     is followed by none that is not), its listed entries by their exact time; with stream
//!     sharding (`__stream_shard__`) the split is not knowable, so every entry up to the end of
//!     the second of the latest stated cutoff counts as refused as well;
//!   - where the counts do not add up, every entry up to the end of the stated cutoff's second
//!     counts as refused (Loki states cutoffs in whole seconds but applies them to the
//!     nanosecond); where nothing can be matched, every entry sent does. A refused entry
//!     resent but stored after all is an exact duplicate, which Loki drops.
//! - A JSON push over Loki's size limit (its decoder's 400) or a protobuf one over the
//!   decompressed limit: split and sent again, as a 413.
//! - 413: split. 429: retried with backoff, honouring `Retry-After`; a 429 for a push larger
//!   than the tenant's rate limit can never pass whole: split instead.
//! - 5xx except 501: retried. 501 and other 4xx: a final failure (to the dead-letter queue).
//! - Loki's cutoffs feed the timestamp learner, taken at the end of the stated second: the
//!   learned window is never looser than Loki's.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use opentelemetry::KeyValue;

use super::metrics;
use super::response::{Answer, Refusal, RejectReason, parse_400, rate_limit_429};
use super::sink::LokiSink;
use super::streams::{Prepared, StreamBuild};
use crate::dispatcher::{Rejected, SendOutcome};
use crate::event::LogEvent;

const SECOND: i64 = 1_000_000_000;

/// Labels Loki adds to a stream before it names it in a message.
const ADDED_BY_LOKI: &[&str] = &["__stream_shard__", "service_name"];

/// The refused entries found so far: event index to (reason, Loki's text).
type Refused = HashMap<usize, (&'static str, String)>;

/// The ingester's listings of one of our streams, summed over its shards.
struct Listing<'a> {
    ignored: u64,
    listed: Vec<&'a Refusal>,
    sharded: bool,
    /// The latest cutoff the listed entries state.
    cutoff: Option<i64>,
    message: &'a str,
}

impl LokiSink {
    /// What to do after Loki answered `code` with `text` to a push of `prepared`
    /// (`push_bytes` long). Counts the entries delivered.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn classify(
        &self,
        events: &[LogEvent],
        prepared: &Prepared,
        code: u16,
        text: &str,
        retry_after: Option<Duration>,
        now: i64,
    ) -> SendOutcome {
        let to_send = prepared.entries();
        let short = |text: &str| text.trim_end().chars().take(500).collect::<String>();
        match code {
            260 => SendOutcome::Retry {
                reason: "http_260",
                detail: format!("ingestion blocked (260): {}", short(text)),
                retry_after,
            },
            200..=299 => {
                metrics::SENT_ENTRIES.add(to_send as u64, &self.attrs);
                partial_or_delivered(prepared.rejected.clone())
            }
            400 => {
                let answer = parse_400(text);
                if answer.decoder_error || answer.too_large {
                    return SendOutcome::TooLarge {
                        detail: short(text),
                    };
                }
                let mut rejected = self.reconcile(events, prepared, &answer, text, now);
                metrics::SENT_ENTRIES
                    .add(to_send.saturating_sub(rejected.len()) as u64, &self.attrs);
                rejected.extend(prepared.rejected.iter().cloned());
                SendOutcome::Partial { rejected }
            }
            413 => SendOutcome::TooLarge {
                detail: short(text),
            },
            429 => match rate_limit_429(text) {
                // Larger than a second of the tenant's limit: likely past its burst too, so
                // no retry can pass it whole.
                Some((limit, bytes)) if bytes > limit && to_send > 1 => SendOutcome::TooLarge {
                    detail: short(text),
                },
                _ => SendOutcome::Retry {
                    reason: "http_429",
                    detail: short(text),
                    retry_after,
                },
            },
            501 => SendOutcome::Failed {
                reason: "http_501",
                detail: short(text),
            },
            500..=599 => SendOutcome::Retry {
                reason: "http_5xx",
                detail: format!("{code}: {}", short(text)),
                retry_after,
            },
            _ => SendOutcome::Failed {
                reason: "http_4xx",
                detail: format!("{code}: {}", short(text)),
            },
        }
    }

    /// The entries of `prepared` that a 400 says (or may say) were refused; learns Loki's
    /// cutoffs on the way. See the module's guarantees.
    fn reconcile(
        &self,
        events: &[LogEvent],
        prepared: &Prepared,
        answer: &Answer,
        body: &str,
        now: i64,
    ) -> Vec<Rejected> {
        let mut refused: Refused = HashMap::new();
        // Streams (indexes into `prepared.streams`) whose refusals could not be placed exactly,
        // with the latest stated cutoff, if any.
        let mut unsure: HashMap<usize, Option<i64>> = HashMap::new();
        let mut matched_any = false;

        for refusal in &answer.refusals {
            self.learn(refusal, prepared, now);
            let targets = match &refusal.stream {
                Some(pairs) => named(prepared, pairs),
                None => (0..prepared.streams.len()).collect(),
            };
            if targets.is_empty() {
                continue;
            }
            matched_any = true;
            let mut wanted = refusal.count;
            for &s in &targets {
                let stream = &prepared.streams[s];
                wanted -= place(events, stream, refusal, wanted, &mut refused);
                if wanted == 0 {
                    break;
                }
            }
            if wanted > 0 {
                for &s in &targets {
                    let cutoff = unsure.entry(s).or_insert(None);
                    *cutoff = (*cutoff).max(refusal.oldest_acceptable_ns);
                }
            }
        }

        // The ingester's listings, summed over a stream's shards.
        let mut listings: HashMap<usize, Listing<'_>> = HashMap::new();
        for summary in &answer.summaries {
            let targets = named(prepared, &summary.stream);
            let sharded = summary.stream.iter().any(|(k, _)| k == "__stream_shard__");
            for listed in &summary.listed {
                if let Some(cutoff) = listed.oldest_acceptable_ns {
                    for &s in &targets {
                        self.learner.learn_stream(
                            &prepared.streams[s].labels_text,
                            cutoff.saturating_add(SECOND),
                            now,
                        );
                    }
                }
            }
            let Some(&s) = targets.first() else {
                continue;
            };
            matched_any = true;
            let listing = listings.entry(s).or_insert(Listing {
                ignored: 0,
                listed: Vec::new(),
                sharded: false,
                cutoff: None,
                message: &summary.message,
            });
            listing.ignored += summary.ignored;
            listing.listed.extend(summary.listed.iter());
            listing.sharded |= sharded;
            for listed in &summary.listed {
                listing.cutoff = listing.cutoff.max(listed.oldest_acceptable_ns);
            }
        }
        for (s, listing) in listings {
            let Listing {
                ignored,
                listed,
                sharded,
                cutoff,
                message,
            } = listing;
            let stream = &prepared.streams[s];
            let reason_of = |listed: &Refusal| match listed.reason {
                RejectReason::Other => RejectReason::TooFarBehind.as_str(),
                other => other.as_str(),
            };
            let mut placed = 0;
            for entry_line in &listed {
                let hit = stream.entries.iter().find(|e| {
                    Some(e.timestamp_ns) == entry_line.entry_ns && !refused.contains_key(&e.index)
                });
                if let Some(entry) = hit {
                    refused.insert(
                        entry.index,
                        (reason_of(entry_line), entry_line.message.clone()),
                    );
                    placed += 1;
                }
            }
            let reason = listed
                .first()
                .map_or(RejectReason::TooFarBehind.as_str(), |l| reason_of(l));
            let mut rest = ignored.saturating_sub(placed);
            for entry in &stream.entries {
                if rest == 0 {
                    break;
                }
                if let std::collections::hash_map::Entry::Vacant(slot) = refused.entry(entry.index)
                {
                    slot.insert((reason, message.to_string()));
                    rest -= 1;
                }
            }
            if sharded || rest > 0 {
                let at = unsure.entry(s).or_insert(None);
                *at = (*at).max(cutoff);
            }
        }

        // Where the counts could not be placed exactly: everything up to the end of the stated
        // cutoff's second (or, without one, the whole stream) counts as refused.
        for (s, cutoff) in unsure {
            let stream = &prepared.streams[s];
            for entry in &stream.entries {
                let maybe = cutoff.is_none_or(|c| entry.timestamp_ns < c.saturating_add(SECOND));
                if maybe {
                    refused.entry(entry.index).or_insert_with(|| {
                        (
                            RejectReason::Other.as_str(),
                            body.trim_end().chars().take(500).collect(),
                        )
                    });
                }
            }
        }
        if !matched_any {
            // Nothing could be matched: keep every entry sent.
            for entry in prepared.streams.iter().flat_map(|s| s.entries.iter()) {
                refused
                    .entry(entry.index)
                    .or_insert_with(|| ("http_400", body.trim_end().chars().take(500).collect()));
            }
        }
        self.count_refused(&refused);
        let mut rejected: Vec<Rejected> = refused
            .into_iter()
            .map(|(index, (reason, detail))| Rejected {
                index,
                reason,
                detail,
            })
            .collect();
        rejected.sort_by_key(|r| r.index);
        rejected
    }

    /// Learns from a distributor text: the tenant's window from "too old".
    fn learn(&self, refusal: &Refusal, prepared: &Prepared, now: i64) {
        match (refusal.reason, refusal.oldest_acceptable_ns) {
            (RejectReason::TooOld, Some(cutoff)) => self.learner.learn_max_age(cutoff, now),
            (RejectReason::TooFarBehind, Some(cutoff)) => {
                let targets = refusal
                    .stream
                    .as_ref()
                    .map_or_else(Vec::new, |pairs| named(prepared, pairs));
                for s in targets {
                    self.learner.learn_stream(
                        &prepared.streams[s].labels_text,
                        cutoff.saturating_add(SECOND),
                        now,
                    );
                }
            }
            _ => {}
        }
        if let Some(age) = self.learner.max_age() {
            metrics::TIMESTAMP_MAX_AGE.record(age.as_secs_f64(), &self.attrs);
        }
    }

    fn count_refused(&self, refused: &Refused) {
        let mut by_reason: HashMap<&'static str, u64> = HashMap::new();
        for (reason, _) in refused.values() {
            *by_reason.entry(reason).or_default() += 1;
        }
        for (reason, count) in by_reason {
            metrics::TIMESTAMP_REJECTIONS.add(
                count,
                &[self.attrs[0].clone(), KeyValue::new("reason", reason)],
            );
        }
    }
}

fn partial_or_delivered(rejected: Vec<Rejected>) -> SendOutcome {
    if rejected.is_empty() {
        SendOutcome::Delivered
    } else {
        SendOutcome::Partial { rejected }
    }
}

/// The streams of `prepared` that Loki's label set names: the same labels once those Loki adds
/// itself (`service_name` when we sent none, `__stream_shard__`) are set aside.
fn named(prepared: &Prepared, loki_pairs: &[(String, String)]) -> Vec<usize> {
    prepared
        .streams
        .iter()
        .enumerate()
        .filter(|(_, stream)| same_stream(&stream.pairs, loki_pairs))
        .map(|(i, _)| i)
        .collect()
}

fn same_stream(ours: &[(String, String)], theirs: &[(String, String)]) -> bool {
    let ours_names: HashSet<&str> = ours.iter().map(|(k, _)| k.as_str()).collect();
    let mut theirs: Vec<&(String, String)> = theirs
        .iter()
        .filter(|(k, _)| !ADDED_BY_LOKI.contains(&k.as_str()) || ours_names.contains(k.as_str()))
        .collect();
    theirs.sort();
    theirs.len() == ours.len() && theirs.iter().zip(ours).all(|(a, b)| *a == b)
}

/// Marks up to `wanted` entries of `stream` that `refusal` stands for; returns how many.
fn place(
    events: &[LogEvent],
    stream: &StreamBuild,
    refusal: &Refusal,
    wanted: u64,
    refused: &mut Refused,
) -> u64 {
    let reason = refusal.reason.as_str();
    let mut take = |candidates: &mut dyn Iterator<Item = usize>| {
        let mut taken = 0;
        for index in candidates {
            if taken == wanted {
                break;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = refused.entry(index) {
                slot.insert((reason, refusal.message.clone()));
                taken += 1;
            }
        }
        taken
    };
    let in_second = |second: i64| {
        stream
            .entries
            .iter()
            .filter(move |e| e.timestamp_ns.div_euclid(SECOND) == second)
    };
    match refusal.reason {
        RejectReason::TooOld | RejectReason::TooFarBehind => match refusal.entry_seconds {
            // The earliest entries of that second: Loki refuses below a cutoff.
            Some(second) => take(&mut in_second(second).map(|e| e.index)),
            None => 0,
        },
        RejectReason::TooNew => match refusal.entry_seconds {
            // The latest: Loki refuses above a limit.
            Some(second) => {
                let latest: Vec<usize> = in_second(second).map(|e| e.index).collect();
                take(&mut latest.into_iter().rev())
            }
            None => 0,
        },
        RejectReason::LineTooLong => {
            let length = refusal.line_length;
            let max = refusal.max_line_size;
            take(
                &mut stream
                    .entries
                    .iter()
                    .filter(|e| match (length, max) {
                        (Some(length), _) => e.line(events).len() == length,
                        (None, Some(max)) => e.line(events).len() > max,
                        (None, None) => false,
                    })
                    .map(|e| e.index),
            )
        }
        RejectReason::InvalidLabels | RejectReason::RateLimited | RejectReason::Other => {
            // The whole stream: every entry, whatever the count says.
            let all = stream.entries.len() as u64;
            let taken = {
                let mut every = stream.entries.iter().map(|e| e.index);
                let mut n = 0;
                for index in &mut every {
                    refused
                        .entry(index)
                        .or_insert((reason, refusal.message.clone()));
                    n += 1;
                }
                n
            };
            debug_assert_eq!(taken, all);
            wanted.min(taken)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Labels;
    use crate::sinks::loki::LokiSinkConfig;
    use bytes::Bytes;
    use std::collections::BTreeMap;

    /// A whole second a long way after the epoch, as Loki's cutoffs are stated.
    const C: i64 = 1_800_000_000 * SECOND;

    fn sink() -> LokiSink {
        LokiSinkConfig {
            endpoint: "http://127.0.0.1:3100".into(),
            healthcheck: false,
            labels: BTreeMap::from([("job".to_string(), "app".to_string())]),
            ..LokiSinkConfig::default()
        }
        .build("loki")
        .unwrap()
    }

    fn event(ts: i64, labels: &[(&str, &str)], line: &str) -> LogEvent {
        LogEvent {
            timestamp_ns: ts,
            observed_ns: ts,
            line: Bytes::from(line.to_string()),
            labels: Labels::new(labels.iter().copied()),
            metadata: Vec::new(),
            source: "app".into(),
            file: None,
            replays: 0,
            fields: Default::default(),
        }
    }

    /// The indexes the sink takes as refused for `body` (a 400), with Loki's "now".
    fn refused(sink: &LokiSink, events: &[LogEvent], body: &str) -> Vec<usize> {
        let all: Vec<usize> = (0..events.len()).collect();
        let now = C + 3_600 * SECOND;
        let prepared = sink.prepare(events, &all, now);
        match sink.classify(events, &prepared, 400, body, None, now) {
            SendOutcome::Partial { rejected } => rejected.into_iter().map(|r| r.index).collect(),
            other => panic!("{other:?}"),
        }
    }

    fn too_old(count: u64, entry_second: i64) -> String {
        let rfc = |ns: i64| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns as u64),
            )
            .to_string()
        };
        format!(
            "{count} errors like: entry for stream '{{job=\"app\", service_name=\"app\"}}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
            rfc(entry_second * SECOND),
            rfc(C)
        )
    }

    #[test]
    fn entries_refused_inside_the_stated_cutoff_second_are_not_counted_delivered() {
        let sink = sink();
        let ms = 1_000_000;
        // Loki's real cutoff is C + 400 ms; it states C.
        let events = [
            event(C - 500 * ms, &[], "a"),
            event(C + 200 * ms, &[], "b"),
            event(C + 600 * ms, &[], "c"),
            event(C + 1_500 * ms, &[], "d"),
        ];
        let body = format!("{}; {}", too_old(1, C / SECOND - 1), too_old(1, C / SECOND));
        assert_eq!(refused(&sink, &events, &body), vec![0, 1]);
    }

    #[test]
    fn counts_that_do_not_add_up_refuse_everything_to_the_end_of_the_stated_second() {
        let sink = sink();
        let ms = 1_000_000;
        let events = [
            event(C + 200 * ms, &[], "b"),
            event(C + 600 * ms, &[], "c"),
            event(C + 1_500 * ms, &[], "d"),
        ];
        // Three entries of second C said refused, two of them sent in that second.
        let body = too_old(3, C / SECOND);
        assert_eq!(refused(&sink, &events, &body), vec![0, 1]);
    }

    #[test]
    fn a_summary_refuses_its_count_not_its_whole_stream() {
        let sink = sink();
        let events: Vec<LogEvent> = (0..5).map(|i| event(C + i * SECOND, &[], "x")).collect();
        let body = format!(
            "entry with timestamp {} ignored, reason: 'entry too far behind, entry timestamp is: 2027-01-15T08:00:00Z, oldest acceptable timestamp is: 2027-01-15T08:00:02Z',\nuser 'fake', total ignored: 2 out of 5 for stream: {{job=\"app\", service_name=\"app\"}}",
            "2027-01-15 08:00:00 +0000 UTC"
        );
        assert_eq!(
            C,
            humantime::parse_rfc3339("2027-01-15T08:00:00Z")
                .map(|t| { t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64 })
                .unwrap(),
            "the test's times agree"
        );
        assert_eq!(refused(&sink, &events, &body), vec![0, 1]);
    }

    #[test]
    fn a_message_names_one_stream_even_when_another_has_a_subset_of_its_labels() {
        let sink = sink();
        let events = [
            event(C - SECOND, &[], "plain"),
            event(C - SECOND, &[("env", "x")], "with env"),
        ];
        let body = "1 errors like: entry for stream '{env=\"x\", job=\"app\", service_name=\"app\"}' has timestamp too old: 2027-01-15T07:59:59Z, oldest acceptable timestamp is: 2027-01-15T08:00:00Z";
        assert_eq!(refused(&sink, &events, body), vec![1]);
    }

    #[test]
    fn an_answer_that_matches_nothing_keeps_every_entry() {
        let sink = sink();
        let events = [event(C, &[], "a"), event(C, &[], "b")];
        assert_eq!(refused(&sink, &events, "something unexpected"), vec![0, 1]);
    }

    #[test]
    fn pushes_too_large_in_other_words_are_split() {
        let sink = sink();
        let events = [event(C, &[], "a"), event(C, &[], "b")];
        let all = [0, 1];
        let classify = |code, body: &str| {
            let prepared = sink.prepare(&events, &all, C);
            sink.classify(&events, &prepared, code, body, None, C)
        };
        assert!(matches!(
            classify(
                400,
                "loghttp.PushRequest.Streams: []loghttp.LogProtoStream: readStringSlowPath: unexpected end of input"
            ),
            SendOutcome::TooLarge { .. }
        ));
        let over_burst = "ingestion rate limit exceeded for user team-a (limit: 10 bytes/sec) while attempting to ingest '2' lines totaling '200' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased";
        assert!(matches!(
            classify(429, over_burst),
            SendOutcome::TooLarge { .. }
        ));
        let within = over_burst.replace("'200' bytes", "'5' bytes");
        assert!(matches!(classify(429, &within), SendOutcome::Retry { .. }));
    }
}
