//! The Loki sink's stream cap (`max_streams`): which label sets may be streams of their own.
//!
//! Loki refuses a new stream past a tenant's active-stream limit (`max_global_streams_per_user`,
//! 5000 by default) with a 429 "maximum active stream limit exceeded", and the push is retried
//! again and again while the stream stays over the limit: a label whose values never repeat (a
//! request id, a dated file name) holds back every line of the tenant. The cap keeps this sink's
//! streams below such a limit and sends what is past it somewhere Loki takes it.
//!
//! Guarantees:
//! - Per tenant, at most `max_streams` label sets are active: seen within `stream_idle` before
//!   the batch being built. A label set already active stays admitted (its time moves on); a new
//!   one is admitted while its tenant has fewer than `max_streams` active, else it overflows. An
//!   active label set is never pushed out by a newer one: the first come keep their streams.
//! - The work is per label set per batch, never per line: grouping a batch (`streams.rs`) asks
//!   once for each label set it finds, one lock and one hash lookup each.
//! - Memory is bounded by the cap: one entry per active label set (a 64-bit hash of tenant and
//!   labels, when it was last seen and its tenant's hash, in schnellru's flat LRU table; about
//!   40 bytes), so at most `max_streams` entries per tenant; the table grows in powers of two,
//!   which is the slack.
//! - Idle label sets are forgotten lazily, without a timer: each admission first removes, from
//!   the least recently seen end, the entries idle for `stream_idle` (amortized O(1): each entry
//!   is removed once). `loki_active_streams` is recorded per batch, so an idle sink shows the
//!   count of its last batch.
//! - Two label sets whose hashes collide (about 2^-64 per pair) share one slot. Harmless: one
//!   stream past the cap.
//!
//! The count is this sink's own. Loki counts the streams of every client of a tenant and keeps a
//! stream until its chunks are flushed (`chunk_idle_period`, 30m by default, the default of
//! `stream_idle`); a cap protects the tenant when it is below the tenant's limit shared among
//! its shippers.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::KeyValue;
use schnellru::{Limiter, LruMap};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::config::StreamOverflow;
use crate::hash_keys::PrehashedKeys;
use crate::telemetry::LogThrottle;

/// The cap of one sink, shared by its workers.
pub(super) struct StreamCap {
    max: usize,
    idle_ns: i64,
    pub(super) policy: StreamOverflow,
    /// The overflow stream's labels (sorted pairs, and in Loki's text form): the sink's constant
    /// `labels` plus `overflow="true"`.
    pub(super) overflow_pairs: Vec<(String, String)>,
    pub(super) overflow_text: String,
    /// `sink=<key>, policy=<fold|drop>`, for `loki_streams_overflow_total`.
    pub(super) overflow_attrs: Arc<[KeyValue]>,
    /// The overflow warning is logged at most once a minute.
    pub(super) log: Mutex<LogThrottle>,
    state: Mutex<State>,
}

struct State {
    /// (tenant, labels) hash -> when last seen; least recently seen first.
    lru: LruMap<u64, Seen, TenantCounts, PrehashedKeys>,
    /// The latest batch time seen. Times only move forward, so that the LRU's order stays the
    /// order of the times (workers may build batches with clocks read a little apart).
    latest_ns: i64,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    at_ns: i64,
    tenant: u64,
}

impl StreamCap {
    pub(super) fn new(
        max: usize,
        idle: Duration,
        policy: StreamOverflow,
        overflow_pairs: Vec<(String, String)>,
        sink: &str,
    ) -> Self {
        let overflow_text = super::proto::format_labels(
            overflow_pairs
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        );
        Self {
            max,
            idle_ns: i64::try_from(idle.as_nanos()).unwrap_or(i64::MAX),
            policy,
            overflow_pairs,
            overflow_text,
            overflow_attrs: Arc::new([
                KeyValue::new("sink", sink.to_string()),
                KeyValue::new("policy", policy.as_str()),
            ]),
            log: Mutex::new(LogThrottle::new(Duration::from_secs(60))),
            state: Mutex::new(State {
                lru: LruMap::with_hasher(TenantCounts::default(), PrehashedKeys),
                latest_ns: i64::MIN,
            }),
        }
    }

    pub(super) fn max(&self) -> usize {
        self.max
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        match self.state.lock() {
            Ok(mut state) => f(&mut state),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// The hash a tenant's label sets are keyed under.
    pub(super) fn tenant_key(tenant: &str) -> u64 {
        xxh3_64(tenant.as_bytes())
    }

    /// Whether the label set `labels` (Loki's text form) of `tenant` may be a stream of its own
    /// in a batch built at `now_ns`; an admitted label set counts as seen at `now_ns`.
    pub(super) fn admit(&self, tenant: u64, labels: &str, now_ns: i64) -> bool {
        let key = xxh3_64_with_seed(labels.as_bytes(), tenant);
        let (max, idle_ns) = (self.max, self.idle_ns);
        self.with(|state| {
            let now_ns = now_ns.max(state.latest_ns);
            state.latest_ns = now_ns;
            while let Some((_, seen)) = state.lru.peek_oldest() {
                if now_ns.saturating_sub(seen.at_ns) < idle_ns {
                    break;
                }
                state.lru.pop_oldest();
            }
            if let Some(seen) = state.lru.get(&key) {
                seen.at_ns = now_ns;
                return true;
            }
            if state.lru.limiter().active(tenant) >= max {
                return false;
            }
            state.lru.insert(
                key,
                Seen {
                    at_ns: now_ns,
                    tenant,
                },
            )
        })
    }

    /// Label sets active now, all tenants (idle ones not yet forgotten included).
    pub(super) fn active(&self) -> usize {
        self.with(|state| state.lru.len())
    }

    /// Bytes the table takes now.
    #[cfg(test)]
    fn memory_bytes(&self) -> usize {
        self.with(|state| state.lru.memory_usage())
    }
}

/// Counts each tenant's entries as they come and go (the map tells its limiter of every insert
/// and removal). It never pushes an entry out: admission is decided before an insert.
#[derive(Debug, Default)]
struct TenantCounts {
    counts: HashMap<u64, usize>,
}

impl TenantCounts {
    fn active(&self, tenant: u64) -> usize {
        self.counts.get(&tenant).copied().unwrap_or(0)
    }

    fn add(&mut self, tenant: u64) {
        *self.counts.entry(tenant).or_insert(0) += 1;
    }

    fn remove(&mut self, tenant: u64) {
        if let Entry::Occupied(mut count) = self.counts.entry(tenant) {
            *count.get_mut() -= 1;
            if *count.get() == 0 {
                count.remove();
            }
        }
    }
}

impl Limiter<u64, Seen> for TenantCounts {
    type KeyToInsert<'a> = u64;
    type LinkType = u32;

    fn is_over_the_limit(&self, _length: usize) -> bool {
        false
    }

    fn on_insert(&mut self, _length: usize, key: u64, value: Seen) -> Option<(u64, Seen)> {
        self.add(value.tenant);
        Some((key, value))
    }

    fn on_replace(
        &mut self,
        _length: usize,
        _old_key: &mut u64,
        _new_key: u64,
        old_value: &mut Seen,
        new_value: &mut Seen,
    ) -> bool {
        if old_value.tenant != new_value.tenant {
            self.remove(old_value.tenant);
            self.add(new_value.tenant);
        }
        true
    }

    fn on_removed(&mut self, _key: &mut u64, value: &mut Seen) {
        self.remove(value.tenant);
    }

    fn on_cleared(&mut self) {
        self.counts.clear();
    }

    fn on_grow(&mut self, _new_memory_usage: usize) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000_000_000;

    fn cap(max: usize) -> StreamCap {
        StreamCap::new(
            max,
            Duration::from_secs(30 * 60),
            StreamOverflow::Fold,
            vec![("overflow".into(), "true".into())],
            "loki",
        )
    }

    #[test]
    fn the_first_label_sets_keep_their_slots_and_active_ones_stay_admitted() {
        let cap = cap(2);
        let t = StreamCap::tenant_key("team-a");
        assert!(cap.admit(t, "{f=\"a\"}", 0));
        assert!(cap.admit(t, "{f=\"b\"}", MINUTE));
        assert!(!cap.admit(t, "{f=\"c\"}", 2 * MINUTE));
        // Seen again: still admitted, and its time moves on.
        assert!(cap.admit(t, "{f=\"a\"}", 29 * MINUTE));
        // b was last seen at 1m: still active at 30m, idle at 31m; a (29m) is not.
        assert!(!cap.admit(t, "{f=\"c\"}", 30 * MINUTE));
        assert!(cap.admit(t, "{f=\"c\"}", 31 * MINUTE));
        assert!(cap.admit(t, "{f=\"a\"}", 31 * MINUTE));
        assert!(!cap.admit(t, "{f=\"b\"}", 31 * MINUTE));
        assert_eq!(cap.active(), 2);
    }

    #[test]
    fn tenants_have_caps_of_their_own() {
        let cap = cap(1);
        let (a, b) = (StreamCap::tenant_key("a"), StreamCap::tenant_key("b"));
        assert!(cap.admit(a, "{f=\"x\"}", 0));
        assert!(cap.admit(b, "{f=\"x\"}", 0));
        assert!(!cap.admit(a, "{f=\"y\"}", 0));
        assert!(!cap.admit(b, "{f=\"y\"}", 0));
        assert_eq!(cap.active(), 2);
    }

    #[test]
    fn memory_stays_bounded_by_the_cap_whatever_arrives() {
        let cap = cap(3);
        let t = StreamCap::tenant_key("team-a");
        let mut admitted = 0;
        for i in 0..100_000 {
            admitted += usize::from(cap.admit(t, &format!("{{request_id=\"{i}\"}}"), i));
        }
        assert_eq!(admitted, 3);
        assert_eq!(cap.active(), 3);
        // Three entries and the table's slack: far below a kilobyte.
        assert!(cap.memory_bytes() < 1024, "{}", cap.memory_bytes());
        // All idle after stream_idle: the next ones get the slots.
        let later = 100_000 + 30 * MINUTE;
        assert!(cap.admit(t, "{f=\"new\"}", later));
        assert_eq!(cap.active(), 1);
    }
}
