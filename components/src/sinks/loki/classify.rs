//! Loki's answer to a push, turned into what the dispatcher does next.

use opentelemetry::KeyValue;

use super::metrics::instruments;
use super::response::{RejectReason, Rejection};
use super::sink::LokiSink;
use super::streams::{Prepared, StreamBuild};
use crate::dispatcher::Rejected;
use crate::event::LogEvent;

impl LokiSink {
    /// Matches Loki's rejections to the entries that were sent; learns cutoffs on the way.
    pub(super) fn match_rejections(
        &self,
        events: &[LogEvent],
        prepared: &Prepared,
        rejections: &[Rejection],
        now: i64,
    ) -> Vec<Rejected> {
        let mut out: Vec<Rejected> = Vec::new();
        let mut taken = std::collections::HashSet::new();
        let instruments = instruments();
        for rejection in rejections {
            instruments.timestamp_rejections.add(
                1,
                &[
                    self.attrs[0].clone(),
                    KeyValue::new("reason", rejection.reason.as_str()),
                ],
            );
            // Loki may add labels of its own before validating (`service_name`), so a stream
            // matches when all of its labels appear in the one the message names.
            let streams: Vec<&StreamBuild> = match &rejection.stream {
                Some(pairs) => prepared
                    .streams
                    .iter()
                    .filter(|s| s.pairs.iter().all(|p| pairs.contains(p)))
                    .collect(),
                None => prepared.streams.iter().collect(),
            };
            match (rejection.reason, rejection.oldest_acceptable_ns) {
                (RejectReason::TooOld, Some(cutoff)) => self.learner.learn_max_age(cutoff, now),
                (RejectReason::TooFarBehind, Some(cutoff)) => {
                    for stream in &streams {
                        self.learner.learn_stream(&stream.labels_text, cutoff, now);
                    }
                }
                _ => {}
            }
            for stream in streams {
                for &(index, ts, _) in &stream.entries {
                    let hit = match rejection.reason {
                        RejectReason::TooOld | RejectReason::TooFarBehind => match rejection
                            .oldest_acceptable_ns
                        {
                            Some(cutoff) => ts < cutoff,
                            None => rejection.entry_seconds == Some(ts.div_euclid(1_000_000_000)),
                        },
                        // Loki lists one example of each kind ("N errors like: ..."), the first
                        // in time order: every later entry of the stream is past the limit too.
                        RejectReason::TooNew => rejection
                            .entry_seconds
                            .is_some_and(|first| ts.div_euclid(1_000_000_000) >= first),
                        RejectReason::LineTooLong => match rejection.max_line_size {
                            Some(max) => events[index].line.len() > max,
                            None => rejection.line_length == Some(events[index].line.len()),
                        },
                        RejectReason::InvalidLabels => true,
                        RejectReason::Other => rejection.stream.is_some(),
                    };
                    if hit && taken.insert(index) {
                        out.push(Rejected {
                            index,
                            reason: rejection.reason.as_str(),
                            detail: rejection.message.clone(),
                        });
                    }
                }
            }
        }
        if let Some(age) = self.learner.max_age() {
            instruments
                .timestamp_max_age
                .record(age.as_secs_f64(), &self.attrs);
        }
        out
    }
}
