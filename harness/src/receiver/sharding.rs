//! Loki 3.7's automatic stream sharding (`shard_streams`), for one distributor and one ingester.
//!
//! - The ingester adds up, per stream and per second, the bytes of the entries pushed to it (all
//!   but exact repeats of the stream's last line, whether stored or refused) and the pushes; the
//!   distributor's rate store takes each finished second and smooths it (`0.4 × new + 0.6 × old`;
//!   a second without pushes counts as 0). Shards of one stream are added together.
//! - A push of `n` bytes to a stream whose smoothed rate is `r` and push rate `p` (pushes per
//!   second, at most 1 counted) is split into `ceil((r + n·p) / desired_rate)` shards when that is
//!   more than one; never on a stream's first second (no rate yet).
//! - Shards are the stream's labels plus `__stream_shard__="<n>"`; entries go to them in turn,
//!   and each push starts at the shard after the last one the previous push used.
//!
//! Loki polls its ingesters' rates about once a second, so it may see a second later than here;
//! apart from that timing, the shard counts and labels are Loki's.

use super::decode::PushEntry;

/// The label Loki adds to a stream's shards.
pub const SHARD_LABEL: &str = "__stream_shard__";

/// The rate store's `smoothingFactor`.
const SMOOTHING: f64 = 0.4;
/// Idle seconds decayed one by one; after that many the rate is 0 anyway.
const MAX_DECAY_STEPS: u64 = 128;

/// What the rate store knows of one stream (all its shards together).
#[derive(Clone, Debug, Default)]
pub struct StreamRate {
    /// The second being added up, counted from the receiver's start.
    second: u64,
    bytes: i64,
    pushes: u32,
    /// The smoothed rate in bytes per second and pushes per second, once known.
    rate: i64,
    push_rate: f64,
    known: bool,
    /// The shard tracker's counter: the next push starts at this shard (modulo the count).
    next_shard: u64,
}

fn smooth(next: f64, last: f64) -> f64 {
    SMOOTHING * next + (1.0 - SMOOTHING) * last
}

impl StreamRate {
    /// Takes in the seconds that ended before `second`.
    fn roll(&mut self, second: u64) {
        if second <= self.second {
            return;
        }
        if self.pushes > 0 {
            if self.known {
                self.rate = smooth(self.bytes as f64, self.rate as f64) as i64;
                self.push_rate = smooth(f64::from(self.pushes), self.push_rate);
            } else {
                self.rate = self.bytes;
                self.push_rate = f64::from(self.pushes);
                self.known = true;
            }
        } else {
            self.decay();
        }
        for _ in 0..(second - self.second - 1).min(MAX_DECAY_STEPS) {
            self.decay();
        }
        self.second = second;
        self.bytes = 0;
        self.pushes = 0;
    }

    fn decay(&mut self) {
        if self.known {
            self.rate = smooth(0.0, self.rate as f64) as i64;
            self.push_rate = smooth(0.0, self.push_rate);
        }
    }

    /// `rateStore.RateFor` at `second`: (bytes per second, pushes per second).
    pub fn rate_for(&mut self, second: u64) -> (i64, f64) {
        self.roll(second);
        (self.rate, self.push_rate)
    }

    /// `StreamRateCalculator.Record`: one push of `bytes` to the stream at `second`.
    pub fn record(&mut self, second: u64, bytes: u64) {
        self.roll(second);
        self.bytes = self
            .bytes
            .saturating_add(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.pushes = self.pushes.saturating_add(1);
    }

    /// `shardCountFor` for a push of `push_bytes` at `second`.
    pub fn shard_count(&mut self, second: u64, push_bytes: u64, desired_rate: u64) -> usize {
        let (rate, push_rate) = self.rate_for(second);
        shard_count(rate, push_rate, push_bytes, desired_rate)
    }

    /// `divideEntriesBetweenShards`: the shard numbers and their entries.
    pub fn divide(&mut self, entries: Vec<PushEntry>, shards: usize) -> Vec<(u64, Vec<PushEntry>)> {
        let count = shards.min(entries.len()).max(1);
        let start = self.next_shard;
        let mut derived: Vec<(u64, Vec<PushEntry>)> = (0..count as u64)
            .map(|i| ((start.wrapping_add(i)) % shards as u64, Vec::new()))
            .collect();
        self.next_shard = start.wrapping_add(count as u64);
        for (i, entry) in entries.into_iter().enumerate() {
            derived[i % count].1.push(entry);
        }
        derived
    }
}

/// `shardCountFor` and `calculateShards`.
pub fn shard_count(rate: i64, push_rate: f64, push_bytes: u64, desired_rate: u64) -> usize {
    if desired_rate == 0 || push_rate == 0.0 {
        return 1;
    }
    let push = (push_bytes as f64 * push_rate.min(1.0)) as i64;
    let shards = rate.saturating_add(push) as f64 / desired_rate as f64;
    if shards <= 1.0 {
        1
    } else {
        shards.ceil() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const KB: u64 = 1024;

    #[test]
    fn shards_follow_lokis_formula() {
        assert_eq!(shard_count(0, 0.0, 10 << 20, 1536 * KB), 1);
        assert_eq!(shard_count(1_000_000, 1.0, 1_000_000, 1536 * KB), 2);
        assert_eq!(shard_count(4 << 20, 5.0, 1 << 20, 1536 * KB), 4);
        assert_eq!(shard_count(100, 1.0, 100, 1536 * KB), 1);
        assert_eq!(shard_count(100, 1.0, 100, 0), 1);
    }

    #[test]
    fn the_rate_is_known_from_the_next_second_and_smoothed() {
        let mut rate = StreamRate::default();
        rate.record(0, 3 << 20);
        assert_eq!(
            rate.rate_for(0),
            (0, 0.0),
            "no rate within the first second"
        );
        assert_eq!(rate.rate_for(1), (3 << 20, 1.0));
        assert_eq!(rate.shard_count(1, 1 << 20, 1536 * KB), 3);
        rate.record(1, 1 << 20);
        // 0.4 × 1 MiB + 0.6 × 3 MiB.
        assert_eq!(
            rate.rate_for(2).0,
            ((0.4 + 1.8) * (1u64 << 20) as f64) as i64
        );
        // Idle seconds decay it.
        let (after, _) = rate.rate_for(10);
        assert!(after < 1 << 20, "{after}");
    }

    #[test]
    fn entries_are_dealt_in_turn_from_the_next_shard() {
        let entries = |n: i64| -> Vec<PushEntry> {
            (0..n)
                .map(|ts| PushEntry {
                    ts_ns: ts,
                    line: Bytes::new(),
                    metadata: Vec::new(),
                })
                .collect()
        };
        let mut rate = StreamRate::default();
        let first = rate.divide(entries(5), 3);
        let numbers: Vec<u64> = first.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, vec![0, 1, 2]);
        let timestamps: Vec<Vec<i64>> = first
            .iter()
            .map(|(_, e)| e.iter().map(|e| e.ts_ns).collect())
            .collect();
        assert_eq!(timestamps, vec![vec![0, 3], vec![1, 4], vec![2]]);
        // Two entries use two shards, starting after the last one used.
        let second = rate.divide(entries(2), 3);
        let numbers: Vec<u64> = second.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, vec![0, 1]);
        let third = rate.divide(entries(1), 3);
        assert_eq!(third[0].0, 2);
    }
}
