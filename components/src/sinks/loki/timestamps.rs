//! Timestamp learning and guarding for the Loki sink.
//!
//! Loki rejects entries older than `now - reject_old_samples_max_age` (per tenant) and, per
//! stream, entries more than half of `max_chunk_age` behind the stream's newest entry. Neither
//! limit is known to a client up front; both are written in Loki's rejections as
//! `oldest acceptable timestamp is: T`. The learner remembers them:
//! - the tenant's maximum age, `now - T` at the time of a "too old" rejection, which keeps
//!   applying as time moves on;
//! - a stream's cutoff `T` from a "too far behind" rejection, forgotten after `learned_ttl`
//!   (the stream's window moves with its newest entry, so an old cutoff only grows stale).
//!
//! Before sending, an entry older than the learned cutoff follows the policy: `clamp` (moved to
//! just inside the window, the original time kept in structured metadata
//! `original_timestamp`), `dlq` (kept in the dead-letter queue) or `drop` (counted). An entry
//! more than `creation_grace_period` in the future is clamped to now.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::duration;

const SECOND_NS: i64 = 1_000_000_000;

/// What to do with an entry older than the learned cutoff.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TooOldPolicy {
    /// Rewrite the time to just inside the window; keep the original in structured metadata.
    #[default]
    Clamp,
    /// Keep the entry in the dead-letter queue.
    Dlq,
    /// Drop the entry (counted in `dropped_total{reason="timestamp_too_old"}`).
    Drop,
}

/// Timestamp handling of the Loki sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TimestampConfig {
    /// `clamp`, `dlq` or `drop`, for entries older than what Loki is known to accept.
    pub policy: TooOldPolicy,
    /// Entries further in the future than this are clamped to now (Loki's default is 10m).
    #[serde(with = "duration")]
    pub creation_grace_period: Duration,
    /// How far inside the window a clamped entry lands.
    #[serde(with = "duration")]
    pub clamp_margin: Duration,
    /// A learned per-stream cutoff is forgotten after this long.
    #[serde(with = "duration")]
    pub learned_ttl: Duration,
    /// A maximum age to assume before Loki has said anything (none by default).
    #[serde(with = "crate::config::duration_opt")]
    pub max_age: Option<Duration>,
}

impl Default for TimestampConfig {
    fn default() -> Self {
        Self {
            policy: TooOldPolicy::Clamp,
            creation_grace_period: Duration::from_secs(600),
            clamp_margin: Duration::from_secs(60),
            learned_ttl: Duration::from_secs(3600),
            max_age: None,
        }
    }
}

/// The verdict on one entry's time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send with this time (the original, or a clamped one when `clamped`).
    Send { timestamp_ns: i64, clamped: bool },
    /// Do not send: keep it in the DLQ.
    Divert,
    /// Do not send: drop it.
    Drop,
}

/// What has been learned from Loki's rejections.
#[derive(Debug, Default)]
pub struct Learner {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    max_age_ns: Option<i64>,
    /// Stream (label text) -> (cutoff, learned at).
    streams: HashMap<String, (i64, i64)>,
}

impl Learner {
    pub fn new(initial_max_age: Option<Duration>) -> Self {
        Self {
            state: Mutex::new(State {
                max_age_ns: initial_max_age.map(|d| d.as_nanos().min(i64::MAX as u128) as i64),
                streams: HashMap::new(),
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        match self.state.lock() {
            Ok(mut state) => f(&mut state),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Learns the tenant's maximum age from a "too old" rejection's cutoff, as Loki stated
    /// it. Loki states the cutoff cut to the whole second, so the one it applied lies in
    /// `[stated, stated + 1s)` and its maximum age in `(now - stated - 1s, now - stated]`. The
    /// age learned is the largest lower bound seen since the last answer that contradicted it:
    /// never looser than Loki's (no entry inside the learned window is refused as too old),
    /// at most a second stricter, and closer with every rejection. An answer whose upper bound
    /// is below the learned age (Loki's limit was made shorter) starts again from it.
    pub fn learn_max_age(&self, stated_cutoff_ns: i64, now_ns: i64) {
        let upper = now_ns.saturating_sub(stated_cutoff_ns).max(0);
        let lower = upper.saturating_sub(SECOND_NS).max(0);
        self.with(|s| {
            s.max_age_ns = Some(match s.max_age_ns {
                Some(current) if current <= upper => current.max(lower),
                _ => lower,
            });
        });
    }

    /// Learns a stream's cutoff from a "too far behind" rejection.
    pub fn learn_stream(&self, stream: &str, cutoff_ns: i64, now_ns: i64) {
        self.with(|s| {
            let entry = s
                .streams
                .entry(stream.to_string())
                .or_insert((cutoff_ns, now_ns));
            if cutoff_ns >= entry.0 {
                *entry = (cutoff_ns, now_ns);
            }
        });
    }

    /// The learned maximum age, for the gauge.
    pub fn max_age(&self) -> Option<Duration> {
        self.with(|s| s.max_age_ns)
            .map(|ns| Duration::from_nanos(u64::try_from(ns).unwrap_or(0)))
    }

    /// The oldest time Loki is known to accept for `stream` now.
    pub fn cutoff(&self, stream: &str, now_ns: i64, ttl: Duration) -> Option<i64> {
        let ttl_ns = i64::try_from(ttl.as_nanos()).unwrap_or(i64::MAX);
        self.with(|s| {
            let tenant = s.max_age_ns.map(|age| now_ns.saturating_sub(age));
            let stream_cutoff = match s.streams.get(stream) {
                Some(&(cutoff, learned)) if now_ns.saturating_sub(learned) <= ttl_ns => {
                    Some(cutoff)
                }
                Some(_) => {
                    s.streams.remove(stream);
                    None
                }
                None => None,
            };
            match (tenant, stream_cutoff) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            }
        })
    }
}

/// Decides what to do with an entry at `timestamp_ns` given its stream's `cutoff` (from
/// [`Learner::cutoff`], looked up once per stream and batch rather than once per line).
pub fn verdict(
    config: &TimestampConfig,
    cutoff: Option<i64>,
    timestamp_ns: i64,
    now_ns: i64,
) -> Verdict {
    let grace = i64::try_from(config.creation_grace_period.as_nanos()).unwrap_or(i64::MAX);
    if timestamp_ns > now_ns.saturating_add(grace) {
        return Verdict::Send {
            timestamp_ns: now_ns,
            clamped: true,
        };
    }
    let Some(cutoff) = cutoff else {
        return Verdict::Send {
            timestamp_ns,
            clamped: false,
        };
    };
    if timestamp_ns >= cutoff {
        return Verdict::Send {
            timestamp_ns,
            clamped: false,
        };
    }
    match config.policy {
        TooOldPolicy::Clamp => {
            let margin = i64::try_from(config.clamp_margin.as_nanos()).unwrap_or(0);
            Verdict::Send {
                timestamp_ns: cutoff.saturating_add(margin).min(now_ns),
                clamped: true,
            }
        }
        TooOldPolicy::Dlq => Verdict::Divert,
        TooOldPolicy::Drop => Verdict::Drop,
    }
}

#[cfg(test)]
mod tests {
    impl Learner {
        /// The cutoff lookup and the verdict together, as the sink applies them.
        fn check(
            &self,
            config: &TimestampConfig,
            stream: &str,
            timestamp_ns: i64,
            now_ns: i64,
        ) -> Verdict {
            verdict(
                config,
                self.cutoff(stream, now_ns, config.learned_ttl),
                timestamp_ns,
                now_ns,
            )
        }
    }

    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn learned_max_age_moves_with_time_and_clamps() {
        let learner = Learner::new(None);
        let config = TimestampConfig::default();
        let now = 1_000_000 * S;
        assert_eq!(
            learner.check(&config, "{a=\"1\"}", now - 100 * S, now),
            Verdict::Send {
                timestamp_ns: now - 100 * S,
                clamped: false
            }
        );
        learner.learn_max_age(now - 50 * S, now);
        // Stated to the second: the real age is within (49 s, 50 s]; the stricter bound is kept.
        assert_eq!(learner.max_age(), Some(Duration::from_secs(49)));
        // Later, the window has moved on with the clock.
        let later = now + 1000 * S;
        match learner.check(&config, "{a=\"1\"}", later - 51 * S, later) {
            Verdict::Send {
                timestamp_ns,
                clamped: true,
            } => {
                assert!(timestamp_ns >= later - 50 * S && timestamp_ns <= later)
            }
            other => panic!("{other:?}"),
        }
        let dlq = TimestampConfig {
            policy: TooOldPolicy::Dlq,
            ..config.clone()
        };
        assert_eq!(
            learner.check(&dlq, "s", later - 60 * S, later),
            Verdict::Divert
        );
        let drop = TimestampConfig {
            policy: TooOldPolicy::Drop,
            ..config
        };
        assert_eq!(
            learner.check(&drop, "s", later - 60 * S, later),
            Verdict::Drop
        );
    }

    #[test]
    fn the_learned_age_closes_in_on_lokis_from_below_and_follows_a_shorter_limit() {
        let learner = Learner::new(None);
        // Loki's real max age: 3600.4 s. Its cutoffs are stated cut to the second.
        let real = 3_600 * S + 400_000_000;
        let stated = |now: i64| (now - real).div_euclid(S) * S;
        let mut now = 1_800_000_000 * S + 123_000_000;
        for _ in 0..50 {
            learner.learn_max_age(stated(now), now);
            let learned = learner.max_age().unwrap().as_nanos() as i64;
            assert!(
                learned <= real,
                "never looser than Loki: {learned} > {real}"
            );
            assert!(real - learned < S, "within a second: {learned}");
            now += 37_777_777;
        }
        let learned = learner.max_age().unwrap().as_nanos() as i64;
        assert!(
            real - learned < 100_000_000,
            "close after many answers: {learned}"
        );
        // The limit is cut to 1800 s: the next answer contradicts the learned age.
        let shorter = 1_800 * S;
        learner.learn_max_age((now - shorter).div_euclid(S) * S, now);
        let learned = learner.max_age().unwrap().as_nanos() as i64;
        assert!(learned <= shorter && shorter - learned < S, "{learned}");
    }

    #[test]
    fn stream_cutoff_applies_to_its_stream_until_ttl() {
        let learner = Learner::new(None);
        let config = TimestampConfig {
            policy: TooOldPolicy::Dlq,
            ..TimestampConfig::default()
        };
        let now = 1_000_000 * S;
        learner.learn_stream("{job=\"a\"}", now - 10 * S, now);
        assert_eq!(
            learner.check(&config, "{job=\"a\"}", now - 20 * S, now),
            Verdict::Divert
        );
        assert!(matches!(
            learner.check(&config, "{job=\"b\"}", now - 20 * S, now),
            Verdict::Send { clamped: false, .. }
        ));
        let after_ttl = now + 3601 * S;
        assert!(matches!(
            learner.check(&config, "{job=\"a\"}", now - 20 * S, after_ttl),
            Verdict::Send { clamped: false, .. }
        ));
    }

    #[test]
    fn future_entries_are_clamped_to_now() {
        let learner = Learner::new(None);
        let now = 1_000_000 * S;
        assert_eq!(
            learner.check(&TimestampConfig::default(), "s", now + 3600 * S, now),
            Verdict::Send {
                timestamp_ns: now,
                clamped: true
            }
        );
    }
}
