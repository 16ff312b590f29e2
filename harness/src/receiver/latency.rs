//! End-to-end latency of stored entries: from the moment a line was created to the moment the
//! receiver stored it.
//!
//! The creation time is the `created=<unix nanoseconds>` word of the line when it has one (the
//! harness writes it into every line of its files), else the entry's own timestamp (right for
//! sources that stamp a line when they make it, such as the generator). Both clocks are this
//! machine's wall clock, so the figure is only meaningful on loopback.
//!
//! Guarantees:
//! - Every stored entry is recorded once, in the whole-run histogram and in the histogram of the
//!   second (since the recorder was created or reset) in which it was stored.
//! - Memory is bounded: histograms have fixed size (about 20 KiB each at 2 significant figures)
//!   and at most [`MAX_SECONDS`] per-second buckets are kept; later seconds go to the total only.
//! - Latencies are clamped to `1 µs ..= 1 hour`; a creation time in the future counts as 1 µs.

use std::time::Instant;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::seq::find_number;

/// Per-second buckets kept (two hours).
pub const MAX_SECONDS: usize = 7200;
const HIGHEST_US: u64 = 3_600_000_000;

/// The first `created=<digits>` of a line whose `created` is not the tail of a longer word.
pub fn find_created(line: &[u8]) -> Option<i64> {
    find_number(line, b"created=").and_then(|ns| i64::try_from(ns).ok())
}

/// A latency summary, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// One second of the run: entries stored in it and their latency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondSample {
    /// Seconds since the recorder started (or was reset).
    pub second: u64,
    pub latency: LatencySummary,
}

#[derive(Debug)]
pub struct LatencyRecorder {
    started: Instant,
    total: Histogram<u64>,
    seconds: Vec<Histogram<u64>>,
}

#[expect(
    clippy::expect_used,
    reason = "constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5)"
)]
fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, sigfig).expect("constant histogram bounds are valid")
}

fn summarize(histogram: &Histogram<u64>) -> LatencySummary {
    if histogram.is_empty() {
        return LatencySummary::default();
    }
    LatencySummary {
        count: histogram.len(),
        p50_us: histogram.value_at_quantile(0.50),
        p99_us: histogram.value_at_quantile(0.99),
        max_us: histogram.max(),
    }
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyRecorder {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            total: histogram(3),
            seconds: Vec::new(),
        }
    }

    /// Records one stored line with its entry timestamp, stored at `now_ns` (wall clock) and
    /// `now` (monotonic, for the per-second bucket).
    pub fn record(&mut self, now_ns: i64, now: Instant, line: &[u8], ts_ns: i64) {
        let created = find_created(line).unwrap_or(ts_ns);
        let micros = (now_ns.saturating_sub(created) / 1_000).clamp(1, HIGHEST_US as i64) as u64;
        self.total.saturating_record(micros);
        let second = now.saturating_duration_since(self.started).as_secs() as usize;
        if second < MAX_SECONDS {
            while self.seconds.len() <= second {
                self.seconds.push(histogram(2));
            }
            self.seconds[second].saturating_record(micros);
        }
    }

    pub fn summary(&self) -> LatencySummary {
        summarize(&self.total)
    }

    /// Every second from the start up to the last second anything was stored in.
    pub fn series(&self) -> Vec<SecondSample> {
        self.seconds
            .iter()
            .enumerate()
            .map(|(second, h)| SecondSample {
                second: second as u64,
                latency: summarize(h),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn finds_created_only_as_a_word() {
        assert_eq!(find_created(b"seq=1 created=123 x"), Some(123));
        assert_eq!(find_created(b"xcreated=5 created=7"), Some(7));
        assert_eq!(find_created(b"created=abc"), None);
        assert_eq!(find_created(b"nothing"), None);
    }

    #[test]
    fn records_from_the_line_or_the_timestamp_per_second() {
        let mut recorder = LatencyRecorder::new();
        let start = recorder.started;
        let now_ns = 10_000_000_000;
        // 2 ms from the line's created=, 5 ms from the entry timestamp.
        let line_a = format!("seq=1 created={}", now_ns - 2_000_000);
        recorder.record(now_ns, start, line_a.as_bytes(), 0);
        recorder.record(now_ns, start, b"seq=2", now_ns - 5_000_000);
        // A future creation time counts as 1 µs, in second 2.
        recorder.record(
            now_ns,
            start + Duration::from_millis(2500),
            b"x",
            now_ns + 1_000,
        );
        let summary = recorder.summary();
        assert_eq!(summary.count, 3);
        assert!((4_990..=5_010).contains(&summary.max_us), "{summary:?}");
        let series = recorder.series();
        assert_eq!(series.len(), 3);
        assert_eq!(series[0].latency.count, 2);
        assert_eq!(series[1].latency.count, 0);
        assert_eq!(series[2].latency.count, 1);
        assert_eq!(series[2].latency.max_us, 1);
    }
}
