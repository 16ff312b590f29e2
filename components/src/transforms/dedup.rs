//! The `dedup` transform: drops lines already seen recently.
//!
//! Guarantees:
//! - A line is a duplicate when its key was seen within `ttl` *and* is still in the cache. The key
//!   is an xxh3-64 hash over the event's source, its file (if any), its stream labels (names and
//!   values, length-prefixed so `("a", "bc")` and `("ab", "c")` differ), the line bytes and, with
//!   `include_timestamp`, its original timestamp. Two different events collide with probability
//!   about 2^-64 per pair; a collision drops a line that was not a duplicate.
//! - The first sighting of a key is always passed on. An entry older than `ttl` counts as absent:
//!   the next sighting passes and restarts the entry's clock. A repeat inside `ttl` does not
//!   restart it, so a line repeated forever passes once per `ttl`.
//! - Memory is bounded: at most `cache_size` entries in one flat table (schnellru's LRU map: the
//!   8-byte key, the 8-byte insertion time and two 4-byte list links inline, no allocation per
//!   entry). The table grows as entries arrive, in powers of two, so a large `cache_size` costs
//!   nothing until it fills; it never grows past the size that holds `cache_size` at half load
//!   (the default 100 000 entries: 262 144 buckets, 6.25 MiB, about 66 bytes an entry), the
//!   room that lets the table clear its removed entries' markers in place. A full cache holds
//!   exactly `cache_size` keys however long the churn (a test holds it there). When full, the
//!   least recently seen key, and only that one, is forgotten (`dedup_evictions_total` counts
//!   those forgotten before their `ttl` ran out: a sign that `cache_size` is too small for the
//!   rate of distinct lines).
//! - Dropped duplicates are removed from the batch, which acknowledges them as handled, and counted
//!   once per batch in `dropped_total{reason="duplicate"}`. Metrics are counted per batch, never per
//!   line; the clock is read once per batch.
//!
//! Trade-off: without `include_timestamp`, a line that an application legitimately repeats within
//! `ttl` (`"connection reset"`, a heartbeat) is dropped as a duplicate. With it, only exact resends
//! (the same line with the same timestamp) are dropped, which Loki would have dropped as well; but
//! the file source stamps lines when it reads them, so a file read again after a crash is caught
//! only without it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use schnellru::{Limiter, LruMap};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::component::{
    Component, FunctionTransform, Reconfigurable, Reconfigure, Transform, TransformComponent,
    TransformContext, build_error,
};
use crate::config::{ConfigError, duration, join_path};
use crate::event::{ComponentKey, Labels, LogEvent};
use crate::hash_keys::PrehashedKeys;
use crate::prefetch::prefetch_address;
use crate::telemetry::{ComponentAttrs, Counter, Gauge, MetricDef};
use crate::{BuildError, EventBatch};

/// Configuration of the `dedup` transform.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DedupConfig {
    /// Most keys remembered (about 66 bytes each when the cache is full). At least 1.
    pub cache_size: usize,
    /// How long a key counts as seen. Greater than zero.
    #[serde(with = "duration")]
    pub ttl: Duration,
    /// Make the line's original timestamp part of the key, so only exact resends are duplicates.
    pub include_timestamp: bool,
}

impl Default for DedupConfig {
    fn default() -> Self {
        Self {
            cache_size: 100_000,
            ttl: Duration::from_secs(300),
            include_timestamp: false,
        }
    }
}

impl Component for DedupConfig {
    const TYPE: &'static str = "dedup";
    const METRICS: &'static [&'static crate::telemetry::MetricDef] = METRICS;
    /// Every setting applies live on reload (see [`Dedup::reconfigure`]).
    const HOT_RELOADABLE: &'static [&'static str] = &["cache_size", "ttl", "include_timestamp"];

    fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.cache_size == 0 {
            errors.push(
                ConfigError::new(
                    join_path(prefix, "cache_size"),
                    "must be at least 1 (keys remembered)",
                )
                .with_hint(
                    "the default is 100000; each entry takes about 66 bytes when the cache is full",
                ),
            );
        }
        if self.ttl.is_zero() {
            errors.push(
                ConfigError::new(join_path(prefix, "ttl"), "must be greater than zero")
                    .with_hint("write a duration like 30s or 5m (the default)"),
            );
        }
        errors
    }
}

impl TransformComponent for DedupConfig {
    fn build(&self, cx: TransformContext<Self>) -> Result<Transform, BuildError> {
        let dedup = self
            .dedup(&cx.key)
            .map_err(|error| build_error(&cx.key, error))?;
        Ok(Transform::function(Reconfigurable::new(cx, dedup)))
    }
}

impl DedupConfig {
    /// The running transform.
    pub fn dedup(&self, key: &str) -> Result<Dedup, ConfigError> {
        if let Some(error) = self.validate(key).into_iter().next() {
            return Err(error);
        }
        let mut limiter = Capacity {
            max_entries: 0,
            ttl_ms: 0,
            now_ms: 0,
            evictions: 0,
        };
        limiter.set(self);
        // The table grows with the entries instead of being allocated for `cache_size` up front.
        Ok(Dedup {
            cache: LruMap::with_hasher(limiter, PrehashedKeys),
            started: Instant::now(),
            include_timestamp: self.include_timestamp,
            scratch: Vec::new(),
            keys: Vec::new(),
            stats: DedupStats::default(),
            attrs: ComponentAttrs::new(key),
        })
    }
}

/// What a [`Dedup`] has done since it was built (the same numbers its metrics count).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DedupStats {
    /// Lines looked up.
    pub checks: u64,
    /// Lines dropped as duplicates.
    pub duplicates: u64,
    /// Entries pushed out by capacity before their `ttl` ran out.
    pub evictions: u64,
    /// Entries in the cache now (expired ones included until reused or pushed out).
    pub cache_size: usize,
}

/// The running `dedup` transform.
pub struct Dedup {
    /// Key -> when it was inserted, in milliseconds since `started`.
    cache: Cache,
    started: Instant,
    include_timestamp: bool,
    /// Reused for the stream part of the key, so hashing allocates nothing per line.
    scratch: Vec<u8>,
    /// Reused for the keys of one batch, computed before any is looked up.
    keys: Vec<u64>,
    stats: DedupStats,
    attrs: ComponentAttrs,
}

impl std::fmt::Debug for Dedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedup")
            .field("cache_size", &self.cache.len())
            .field("capacity", &self.cache.limiter().max_entries)
            .field("ttl_ms", &self.cache.limiter().ttl_ms)
            .field("include_timestamp", &self.include_timestamp)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Dedup {
    /// Bytes the cache's table takes now.
    pub fn memory_bytes(&self) -> usize {
        self.cache.memory_usage()
    }

    /// What it has done so far.
    pub fn stats(&self) -> DedupStats {
        DedupStats {
            cache_size: self.cache.len(),
            ..self.stats
        }
    }

    /// [`FunctionTransform::transform`] with the clock read by the caller: `now` is the time of
    /// the whole batch.
    fn transform_at(&mut self, batch: &mut EventBatch, now: Instant) {
        let checks = batch.len();
        if checks == 0 {
            return;
        }
        let now_ms = u64::try_from(now.saturating_duration_since(self.started).as_millis())
            .unwrap_or(u64::MAX);
        let Self {
            cache,
            include_timestamp,
            scratch,
            keys,
            ..
        } = self;
        let include_timestamp = *include_timestamp;
        let ttl_ms = cache.limiter().ttl_ms;
        cache.limiter_mut().now_ms = now_ms;
        let evictions_before = cache.limiter().evictions;

        // First every line's key (the lines in order, memory read in order), so that the lookups
        // after it can ask for the slot of a key a few lines ahead: at 10k lines/s the table is
        // cold by the next batch, and each lookup and insert would otherwise wait on memory.
        keys.clear();
        keys.reserve(checks);
        // The streams of this batch seen last: lines of a few streams interleaved (labels set
        // from a parsed `level`) are hashed once per stream, not once per line.
        let mut streams: Vec<StreamHash> = Vec::with_capacity(RECENT_STREAMS);
        let mut next_slot = 0usize;
        for event in &batch.events {
            let stream_hash = match streams.iter().find(|known| known.matches(event)) {
                Some(known) => known.hash,
                None => {
                    let known = StreamHash::of(event, scratch);
                    let hash = known.hash;
                    if streams.len() < RECENT_STREAMS {
                        streams.push(known);
                    } else {
                        streams[next_slot] = known;
                        next_slot = (next_slot + 1) % RECENT_STREAMS;
                    }
                    hash
                }
            };
            keys.push(line_key(stream_hash, event, include_timestamp));
        }
        drop(streams);

        let mut hint = SlotHint::of(cache);
        for key in keys.iter().take(LOOKUP_AHEAD) {
            hint.prefetch(*key);
        }
        let mut next_keys = keys.iter();
        let mut keys_ahead = keys.iter().skip(LOOKUP_AHEAD);
        let mut duplicates = 0usize;
        batch.events.retain(|_| {
            let Some(&key) = next_keys.next() else {
                // Not reached (one key per event); passing the line on is the safe side.
                return true;
            };
            if let Some(&ahead) = keys_ahead.next() {
                hint.prefetch(ahead);
            }
            match cache.get(&key) {
                Some(seen) if now_ms.saturating_sub(*seen) < ttl_ms => {
                    duplicates += 1;
                    false
                }
                Some(seen) => {
                    // Expired: a new sighting, not a duplicate.
                    *seen = now_ms;
                    true
                }
                None => {
                    grow_past_the_last_doubling(cache);
                    // Pushes out the least recently seen key when full (counted by `Capacity`).
                    cache.insert(key, now_ms);
                    // Only an insert reallocates the table.
                    hint.refresh(cache);
                    // The next insert pushes out the key that is oldest now: ask for the control
                    // bytes its removal reads.
                    if let Some((oldest, _)) = cache.peek_oldest() {
                        hint.prefetch_controls_of(oldest);
                    }
                    true
                }
            }
        });
        let evictions = self.cache.limiter().evictions - evictions_before;

        self.stats.checks += checks as u64;
        self.stats.duplicates += duplicates as u64;
        self.stats.evictions += evictions;
        let attrs = &self.attrs.component;
        CHECKS.add(checks as u64, attrs);
        if duplicates > 0 {
            DUPLICATES.add(duplicates as u64, attrs);
            self.attrs.dropped(duplicates, "duplicate");
        }
        if evictions > 0 {
            EVICTIONS.add(evictions, attrs);
        }
        CACHE_SIZE.record(i64::try_from(self.cache.len()).unwrap_or(i64::MAX), attrs);
    }
}

impl FunctionTransform for Dedup {
    fn transform(&mut self, batch: &mut EventBatch) {
        self.transform_at(batch, Instant::now());
    }
}

impl Reconfigure<DedupConfig> for Dedup {
    /// New settings from a reload. The remembered keys are kept: a longer `ttl` covers them at
    /// once, a smaller `cache_size` forgets the least recently seen at once (counted as
    /// evictions), and after an `include_timestamp` change the old keys no longer match and age
    /// out.
    fn reconfigure(&mut self, config: &DedupConfig) {
        if !config.validate("").is_empty() {
            return;
        }
        self.include_timestamp = config.include_timestamp;
        self.cache.limiter_mut().set(config);
        let mut forgotten = 0u64;
        while self.cache.len() > config.cache_size && self.cache.pop_oldest().is_some() {
            forgotten += 1;
        }
        if forgotten > 0 {
            self.stats.evictions += forgotten;
            EVICTIONS.add(forgotten, &self.attrs.component);
        }
    }
}

/// How many lines ahead of its lookup a key's slot is asked for: enough lookups to cover a miss
/// to memory, few enough that the slots are still cached when their turn comes.
const LOOKUP_AHEAD: usize = 8;

/// The cache type: key -> when it was inserted.
type Cache = LruMap<u64, u64, Capacity, PrehashedKeys>;

/// Where a key's lookup will start in the cache's table, for a prefetch before the lookup.
///
/// schnellru keeps its entries in a hashbrown table: one allocation holding `buckets` entries,
/// then `buckets + 16` control bytes; a key's probe starts at control byte `key & (buckets - 1)`
/// (the key is its own hash), and the entry of bucket `i` sits `i + 1` entries below the control
/// bytes. That layout is not schnellru's promise, so the hint checks that the allocation's size
/// fits it and gives no hint otherwise; a hint that is wrong anyway (the table grew) only asks
/// for a cache line that is not needed. A test checks the layout against the table's contents.
struct SlotHint {
    /// The table's size when the hint was taken; another size means it was reallocated.
    table_bytes: usize,
    /// The control bytes and the bucket mask, when the layout fits.
    slots: Option<(*const u8, usize)>,
}

impl SlotHint {
    fn of(cache: &Cache) -> Self {
        let table_bytes = cache.memory_usage();
        let start = cache.allocation_pointer();
        let buckets = table_bytes.saturating_sub(CONTROL_GROUP) / (ENTRY_BYTES + 1);
        let fits = !start.is_null()
            && buckets.is_power_of_two()
            && allocation_bytes(buckets) == table_bytes;
        Self {
            table_bytes,
            slots: fits.then(|| (start.wrapping_add(buckets * ENTRY_BYTES), buckets - 1)),
        }
    }

    /// Takes the hint again if the table was reallocated since.
    fn refresh(&mut self, cache: &Cache) {
        if cache.memory_usage() != self.table_bytes {
            *self = Self::of(cache);
        }
    }

    /// Where `key`'s probe starts: its first control byte and the entry beside it.
    fn slot(&self, key: u64) -> Option<(*const u8, *const u8)> {
        let (control, mask) = self.slots?;
        let bucket = (key as usize) & mask;
        Some((
            control.wrapping_add(bucket),
            control.wrapping_sub((bucket + 1) * ENTRY_BYTES),
        ))
    }

    fn prefetch(&self, key: u64) {
        if let Some((control, entry)) = self.slot(key) {
            prefetch_address(control);
            prefetch_address(entry);
        }
    }

    /// The bucket whose entry holds `key` (a reference into the table), from its address.
    fn bucket_of(&self, key: &u64) -> Option<usize> {
        let (control, mask) = self.slots?;
        let below = (control as usize).checked_sub(std::ptr::from_ref(key) as usize)?;
        let bucket = (below / ENTRY_BYTES).checked_sub(1)?;
        (bucket <= mask).then_some(bucket)
    }

    /// Asks for the control bytes that removing the entry of `key` reads and writes: its own
    /// and the group before it.
    fn prefetch_controls_of(&self, key: &u64) {
        if let (Some((control, mask)), Some(bucket)) = (self.slots, self.bucket_of(key)) {
            prefetch_address(control.wrapping_add(bucket.wrapping_sub(CONTROL_GROUP) & mask));
            prefetch_address(control.wrapping_add(bucket));
        }
    }
}

/// How many streams' hashes one batch keeps at hand (each match is three pointer compares).
const RECENT_STREAMS: usize = 16;

/// The hash of an event's stream (source, file, labels), remembered for the next events: a
/// source's batch usually shares these between many lines, so it is hashed once per stream in
/// a batch, not once per line. Holding clones keeps the compared allocations alive, so an
/// address match is a content match.
struct StreamHash {
    labels: Labels,
    source: ComponentKey,
    file: Option<Arc<str>>,
    hash: u64,
}

impl StreamHash {
    fn of(event: &LogEvent, scratch: &mut Vec<u8>) -> Self {
        fn put(buf: &mut Vec<u8>, bytes: &[u8]) {
            buf.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            buf.extend_from_slice(bytes);
        }
        scratch.clear();
        put(scratch, event.source.as_bytes());
        match &event.file {
            Some(file) => {
                scratch.push(1);
                put(scratch, file.as_bytes());
            }
            None => scratch.push(0),
        }
        scratch.extend_from_slice(&(event.labels.len() as u64).to_le_bytes());
        for (name, value) in event.labels.iter() {
            put(scratch, name.as_bytes());
            put(scratch, value.as_bytes());
        }
        Self {
            labels: event.labels.clone(),
            source: event.source.clone(),
            file: event.file.clone(),
            hash: xxh3_64(scratch),
        }
    }

    fn matches(&self, event: &LogEvent) -> bool {
        event.shares_stream(&self.labels, &self.source, self.file.as_ref())
    }
}

/// The cache key of one line: xxh3 over (stream hash, timestamp or 0, xxh3 of the line). Hashing
/// the line on its own avoids copying it; the outer hash is over 24 bytes on the stack.
fn line_key(stream_hash: u64, event: &LogEvent, include_timestamp: bool) -> u64 {
    let timestamp = if include_timestamp {
        event.timestamp_ns
    } else {
        0
    };
    let mut parts = [0u8; 24];
    parts[..8].copy_from_slice(&stream_hash.to_le_bytes());
    parts[8..16].copy_from_slice(&timestamp.to_le_bytes());
    parts[16..].copy_from_slice(&xxh3_64(&event.line).to_le_bytes());
    xxh3_64(&parts)
}

/// The cache's bound: at most `max_entries` keys, least recently seen out first. Counts the keys
/// pushed out before their `ttl` ran out (the sign of a cache too small for the line rate).
#[derive(Debug)]
struct Capacity {
    max_entries: u32,
    ttl_ms: u64,
    /// The batch's clock, set before the batch is looked up.
    now_ms: u64,
    evictions: u64,
}

impl Capacity {
    /// Takes the bound and the ttl from the configuration.
    fn set(&mut self, config: &DedupConfig) {
        self.max_entries = u32::try_from(config.cache_size).unwrap_or(u32::MAX);
        // Milliseconds, at least one: a ttl under 1 ms still remembers for 1 ms.
        self.ttl_ms = u64::try_from(config.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
    }
}

impl Limiter<u64, u64> for Capacity {
    type KeyToInsert<'a> = u64;
    type LinkType = u32;

    fn is_over_the_limit(&self, length: usize) -> bool {
        length > self.max_entries as usize
    }

    fn on_insert(&mut self, _length: usize, key: u64, value: u64) -> Option<(u64, u64)> {
        Some((key, value))
    }

    fn on_replace(
        &mut self,
        _length: usize,
        _old_key: &mut u64,
        _new_key: u64,
        _old_value: &mut u64,
        _new_value: &mut u64,
    ) -> bool {
        true
    }

    fn on_removed(&mut self, _key: &mut u64, inserted_ms: &mut u64) {
        if self.now_ms.saturating_sub(*inserted_ms) < self.ttl_ms {
            self.evictions += 1;
        }
    }

    fn on_cleared(&mut self) {}

    /// Grows the table up to the size that holds `max_entries` at half its load, and no
    /// further. Removed entries leave markers that use up a table's free slots; schnellru clears
    /// them by rehashing in place, but only in a table at most half full. A table sized for
    /// `max_entries` at full load (3.1 MiB for 100 000 instead of 6.25) runs out of free slots
    /// after a few times `max_entries` inserts, and schnellru then forgets the oldest entries
    /// until half are gone (a test holds the cache at `max_entries` under long churn).
    fn on_grow(&mut self, new_memory_usage: usize) -> bool {
        new_memory_usage <= table_bytes_for(final_capacity(self.max_entries as usize))
    }
}

/// When the table is about to grow and already holds more than half of `cache_size`, grows it
/// to its final size at once. A cache that gets this far fills up in practice (entries leave
/// only when pushed out), and a full cache under churn ends at the final size anyway; going
/// there in one step skips the doubling before it, whose old and new tables would otherwise be
/// held together (4.7 MiB at the default: the peak is one quarter plus the final table, 7.8
/// MiB, instead of one half plus it, 9.4 MiB).
fn grow_past_the_last_doubling(cache: &mut Cache) {
    let len = cache.len();
    let max_entries = cache.limiter().max_entries as usize;
    if len < cache.guaranteed_capacity() || len.saturating_mul(2) <= max_entries {
        return;
    }
    let final_entries = final_capacity(max_entries);
    // Only a table smaller than the final one grows here. The final table (or a larger one
    // left by a reload that lowered `cache_size`) runs out of free slots too, to its removed
    // entries' markers, and schnellru then rehashes it in place; asking it to grow would be
    // refused.
    if cache.memory_usage() >= allocation_bytes(buckets_for(final_entries)) {
        return;
    }
    // Never refused: the limiter allows the table of `buckets_for(final_entries)` buckets, and
    // only a failed allocation (which aborts the process anyway) would make it panic.
    cache.reserve_or_panic(final_entries - len);
}

/// Entries the table may be sized for: `max_entries` at half its load, where schnellru clears
/// removed entries' markers in place. The two extra entries keep `max_entries + 1` (an insert
/// into a full cache) under the half.
fn final_capacity(max_entries: usize) -> usize {
    max_entries.saturating_mul(2).saturating_add(2)
}

/// Bytes of one bucket's entry in the table: key, insertion time, two links.
const ENTRY_BYTES: usize = std::mem::size_of::<(u64, u64, u32, u32)>();
/// hashbrown's control bytes are read 16 at a time; the table keeps one group more.
const CONTROL_GROUP: usize = 16;

/// Bytes of hashbrown's allocation for `buckets`: each bucket one entry (key, insertion time,
/// two links) and one control byte, plus one group of trailing control bytes.
fn allocation_bytes(buckets: usize) -> usize {
    buckets
        .saturating_mul(ENTRY_BYTES + 1)
        .saturating_add(CONTROL_GROUP)
}

/// Buckets of the smallest table that holds `entries` at hashbrown's load of 7/8 (a power of
/// two).
fn buckets_for(entries: usize) -> usize {
    entries
        .saturating_mul(8)
        .div_ceil(7)
        .max(4)
        .checked_next_power_of_two()
        .unwrap_or(usize::MAX)
}

/// Bytes of the smallest table that holds `entries` at hashbrown's load of 7/8 (a power of two
/// of buckets). One spare byte per bucket and one spare group absorb rounding, far below the
/// next doubling.
fn table_bytes_for(entries: usize) -> usize {
    let buckets = buckets_for(entries);
    allocation_bytes(buckets)
        .saturating_add(buckets)
        .saturating_add(CONTROL_GROUP)
}

static CHECKS: Counter = Counter::new(
    "dedup_checks",
    "Lines a dedup transform looked up.",
    &["component"],
);
static DUPLICATES: Counter = Counter::new(
    "dedup_duplicates",
    "Lines a dedup transform dropped as duplicates.",
    &["component"],
);
static EVICTIONS: Counter = Counter::new(
    "dedup_evictions",
    "Dedup cache entries pushed out by capacity before their ttl ran out.",
    &["component"],
);
static CACHE_SIZE: Gauge = Gauge::new(
    "dedup_cache_size",
    "Entries in a dedup transform's cache.",
    &["component"],
);

/// Every metric of the dedup transform.
pub static METRICS: &[&MetricDef] = &[
    &CHECKS.def,
    &DUPLICATES.def,
    &EVICTIONS.def,
    &CACHE_SIZE.def,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::Finalizers;
    use crate::registry::TransformConfig;
    use bytes::Bytes;
    use serde_json::json;

    fn event(source: &str, file: Option<&str>, labels: &[(&str, &str)], line: &str) -> LogEvent {
        LogEvent {
            timestamp_ns: 0,
            observed_ns: 0,
            line: Bytes::copy_from_slice(line.as_bytes()),
            labels: Labels::new(labels.iter().copied()),
            metadata: Vec::new(),
            source: source.into(),
            file: file.map(Into::into),
            replays: 0,
            fields: Default::default(),
        }
    }

    fn plain(line: &str) -> LogEvent {
        event("s", None, &[("job", "app")], line)
    }

    fn batch(events: Vec<LogEvent>) -> EventBatch {
        EventBatch::new(events, Finalizers::default())
    }

    fn lines(batch: &EventBatch) -> Vec<&[u8]> {
        batch.events.iter().map(|e| &e.line[..]).collect()
    }

    /// Batch `chunk` of a run of distinct lines: 1,000 lines no other batch has.
    fn distinct_lines(chunk: usize) -> EventBatch {
        batch(
            (0..1000)
                .map(|i| plain(&format!("line {chunk} {i}")))
                .collect(),
        )
    }

    fn dedup(cache_size: usize, ttl: Duration, include_timestamp: bool) -> Dedup {
        DedupConfig {
            cache_size,
            ttl,
            include_timestamp,
        }
        .dedup("d")
        .unwrap()
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn duplicates_within_and_across_batches_are_dropped_and_counted() {
        let mut d = dedup(100, MINUTE, false);
        let now = Instant::now();
        let mut b = batch(vec![plain("a"), plain("b"), plain("a"), plain("a")]);
        d.transform_at(&mut b, now);
        assert_eq!(lines(&b), vec![&b"a"[..], &b"b"[..]]);

        let mut b = batch(vec![plain("b"), plain("c")]);
        d.transform_at(&mut b, now + Duration::from_secs(1));
        assert_eq!(lines(&b), vec![&b"c"[..]]);

        assert_eq!(
            d.stats(),
            DedupStats {
                checks: 6,
                duplicates: 3,
                evictions: 0,
                cache_size: 3,
            }
        );
    }

    #[test]
    fn different_labels_source_or_file_are_not_duplicates() {
        let mut d = dedup(100, MINUTE, false);
        let mut b = batch(vec![
            event("s", None, &[("job", "app")], "x"),
            event("s", None, &[("job", "other")], "x"),
            event("s", None, &[], "x"),
            // Names and values are framed: ("a", "bc") is not ("ab", "c").
            event("s", None, &[("a", "bc")], "x"),
            event("s", None, &[("ab", "c")], "x"),
            event("t", None, &[("job", "app")], "x"),
            event("s", Some("/var/log/a.log"), &[("job", "app")], "x"),
            event("s", Some("/var/log/b.log"), &[("job", "app")], "x"),
            event("s", Some(""), &[("job", "app")], "x"),
            // The same as the first, built apart (other allocations): a duplicate.
            event("s", None, &[("job", "app")], "x"),
        ]);
        d.transform_at(&mut b, Instant::now());
        assert_eq!(b.len(), 9);
        assert_eq!(d.stats().duplicates, 1);
    }

    #[test]
    fn include_timestamp_tells_equal_lines_with_different_times_apart() {
        let at = |ts: i64| LogEvent {
            timestamp_ns: ts,
            ..plain("same")
        };
        let mut with_ts = dedup(100, MINUTE, true);
        let mut b = batch(vec![at(1), at(2), at(1)]);
        with_ts.transform_at(&mut b, Instant::now());
        let kept: Vec<i64> = b.events.iter().map(|e| e.timestamp_ns).collect();
        assert_eq!(kept, vec![1, 2]);

        let mut without_ts = dedup(100, MINUTE, false);
        let mut b = batch(vec![at(1), at(2), at(1)]);
        without_ts.transform_at(&mut b, Instant::now());
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn capacity_forgets_the_least_recently_seen_key_and_counts_it() {
        let mut d = dedup(2, MINUTE, false);
        let now = Instant::now();
        let mut b = batch(vec![plain("a"), plain("b"), plain("c")]);
        d.transform_at(&mut b, now);
        assert_eq!(b.len(), 3);
        assert_eq!(d.stats().evictions, 1);
        assert_eq!(d.stats().cache_size, 2);

        // `a` was forgotten, so it passes again (and pushes out `b`); `c` is still known.
        let mut b = batch(vec![plain("c"), plain("a")]);
        d.transform_at(&mut b, now);
        assert_eq!(lines(&b), vec![&b"a"[..]]);
        assert_eq!(d.stats().evictions, 2);
    }

    #[test]
    fn reconfigure_applies_ttl_size_and_key_at_once() {
        let mut d = dedup(10, MINUTE, false);
        let now = Instant::now();
        d.transform_at(&mut batch(vec![plain("a"), plain("b"), plain("c")]), now);

        // A smaller cache forgets the least recently seen at once.
        d.reconfigure(
            &(DedupConfig {
                cache_size: 2,
                ttl: Duration::from_secs(600),
                include_timestamp: false,
            }),
        );
        assert_eq!(d.stats().cache_size, 2);
        assert_eq!(d.stats().evictions, 1);
        // The longer ttl covers the remembered keys: `b` two minutes later is still a duplicate.
        let mut b = batch(vec![plain("b"), plain("a")]);
        d.transform_at(&mut b, now + 2 * MINUTE);
        assert_eq!(lines(&b), vec![&b"a"[..]]);

        // With the timestamp in the key, the same line at another time is new.
        d.reconfigure(
            &(DedupConfig {
                cache_size: 2,
                ttl: Duration::from_secs(600),
                include_timestamp: true,
            }),
        );
        let mut b = batch(vec![plain("a")]);
        b.events[0].timestamp_ns = 42;
        d.transform_at(&mut b, now + 2 * MINUTE);
        assert_eq!(b.len(), 1);

        // Invalid settings are ignored (a reload validates first).
        d.reconfigure(
            &(DedupConfig {
                cache_size: 0,
                ttl: MINUTE,
                include_timestamp: false,
            }),
        );
        assert_eq!(d.stats().cache_size, 2);
    }

    #[test]
    fn a_full_default_cache_stays_within_its_memory_bound() {
        let mut d = DedupConfig::default().dedup("d").unwrap();
        let now = Instant::now();
        for chunk in 0..250 {
            d.transform_at(&mut distinct_lines(chunk), now);
        }
        assert_eq!(d.stats().cache_size, 100_000);
        // Pushed out by capacity: exactly the 150 000 lines over the bound.
        assert_eq!(d.stats().evictions, 150_000);
        // 262 144 buckets of 25 bytes: the table that holds 100 000 entries at half load, and
        // not the next doubling.
        assert!(d.memory_bytes() <= 6_600_000, "{} bytes", d.memory_bytes());
    }

    #[test]
    fn a_full_cache_keeps_every_key_it_may_hold_however_long_the_churn() {
        // Distinct lines, ten times the cache's size: every insert into the full cache forgets
        // the one least recently seen key and no more, so the cache stays full and the last
        // `cache_size` lines are all still known.
        let cache_size = 10_000;
        let mut d = dedup(cache_size, MINUTE, false);
        let now = Instant::now();
        for chunk in 0..100 {
            d.transform_at(&mut distinct_lines(chunk), now);
            if chunk >= 9 {
                assert_eq!(d.stats().cache_size, cache_size, "after batch {chunk}");
            }
        }
        assert_eq!(d.stats().evictions, 100_000 - cache_size as u64);
        let mut again = batch(
            (90..100)
                .flat_map(|chunk| distinct_lines(chunk).events)
                .collect(),
        );
        d.transform_at(&mut again, now);
        assert!(
            again.is_empty(),
            "{} of the last {cache_size} lines were forgotten",
            again.len()
        );
        assert!(d.memory_bytes() <= table_bytes_for(final_capacity(cache_size)));
    }

    #[test]
    fn the_final_table_is_rehashed_in_place_however_long_the_churn() {
        // A million distinct lines through 1,000 keys: removed keys' markers use up the final
        // table's free slots again and again, and each time it is cleared in place, neither
        // grown nor asked to grow.
        let cache_size = 1_000;
        let mut d = dedup(cache_size, MINUTE, false);
        let now = Instant::now();
        let final_table = d.cache.memory_usage();
        for chunk in 0..1_000 {
            d.transform_at(&mut distinct_lines(chunk), now);
        }
        assert_eq!(d.stats().cache_size, cache_size);
        assert_eq!(d.stats().evictions, 1_000_000 - cache_size as u64);
        assert_eq!(
            d.memory_bytes(),
            allocation_bytes(buckets_for(final_capacity(cache_size)))
        );
        assert!(final_table <= d.memory_bytes());
    }

    #[test]
    fn a_cache_past_half_its_size_grows_to_its_final_table_in_one_step() {
        // The default size: 65,536 buckets hold 57,344 keys, more than half of 100,000, so the
        // table goes from there to its final 262,144 buckets without the 131,072 between.
        let cache_size = 100_000;
        let mut d = dedup(cache_size, MINUTE, false);
        let now = Instant::now();
        let mut sizes = vec![d.memory_bytes()];
        for chunk in 0..150 {
            for event in distinct_lines(chunk).events {
                d.transform_at(&mut batch(vec![event]), now);
                if sizes.last() != Some(&d.memory_bytes()) {
                    sizes.push(d.memory_bytes());
                }
            }
        }
        let final_table = allocation_bytes(262_144);
        assert_eq!(sizes.last(), Some(&final_table), "sizes {sizes:?}");
        assert_eq!(
            sizes[sizes.len() - 2],
            allocation_bytes(65_536),
            "sizes {sizes:?}"
        );
        assert_eq!(d.stats().cache_size, cache_size);
        assert_eq!(d.stats().evictions, 150_000 - cache_size as u64);
    }

    #[test]
    fn the_slot_hint_finds_each_key_where_the_table_keeps_it() {
        let mut d = dedup(1000, MINUTE, false);
        let events = (0..1000).map(|i| plain(&format!("line {i}"))).collect();
        d.transform_at(&mut batch(events), Instant::now());
        let hint = SlotHint::of(&d.cache);
        let (control, mask) = hint
            .slots
            .expect("the table's layout is the one the hint reads");
        let mut in_first_group = 0;
        for (key, _) in d.cache.iter() {
            let (first_control, _) = hint.slot(*key).expect("a hint");
            assert_eq!(first_control, control.wrapping_add((*key as usize) & mask));
            // The bucket the entry is really in, from its address below the control bytes.
            let bucket = hint.bucket_of(key).expect("an entry of the table");
            // SAFETY: bucket <= mask, so its control byte is inside the table's allocation.
            let tag = unsafe { *control.add(bucket) };
            assert_eq!(tag, (*key >> 57) as u8, "control byte of bucket {bucket}");
            if (bucket.wrapping_sub(*key as usize & mask) & mask) < CONTROL_GROUP {
                in_first_group += 1;
            }
        }
        // At half load nearly every key sits in the group its probe starts at.
        assert!(in_first_group >= 990, "{in_first_group} of 1000");

        // A grown table is seen as reallocated, and the hint follows it.
        let mut stale = SlotHint::of(&d.cache);
        let events = (0..5000).map(|i| plain(&format!("more {i}"))).collect();
        let mut bigger = dedup(10_000, MINUTE, false);
        bigger.transform_at(&mut batch(events), Instant::now());
        stale.refresh(&bigger.cache);
        assert_eq!(stale.table_bytes, bigger.memory_bytes());
        assert!(stale.slots.is_some());
    }

    #[test]
    fn expired_entries_are_not_duplicates_and_are_not_counted_as_evictions() {
        let mut d = dedup(2, MINUTE, false);
        let start = Instant::now();
        let mut b = batch(vec![plain("a")]);
        d.transform_at(&mut b, start);

        // Within the ttl (a repeat does not restart the entry's clock).
        let mut b = batch(vec![plain("a")]);
        d.transform_at(&mut b, start + Duration::from_secs(59));
        assert!(b.is_empty());

        // At the ttl the entry counts as absent: the line passes and its clock restarts.
        let later = start + MINUTE;
        let mut b = batch(vec![plain("a")]);
        d.transform_at(&mut b, later);
        assert_eq!(b.len(), 1);
        let mut b = batch(vec![plain("a")]);
        d.transform_at(&mut b, later + Duration::from_secs(1));
        assert!(b.is_empty());

        // Pushing out an entry whose ttl had run out is not an eviction.
        let mut b = batch(vec![plain("b")]);
        d.transform_at(&mut b, later);
        let mut b = batch(vec![plain("c"), plain("d")]);
        d.transform_at(&mut b, later + 2 * MINUTE);
        assert_eq!(b.len(), 2);
        assert_eq!(d.stats().evictions, 0);
        assert_eq!(d.stats().duplicates, 2);
    }

    #[test]
    fn invalid_cache_size_and_ttl_name_the_key() {
        let errors = DedupConfig {
            cache_size: 0,
            ttl: Duration::ZERO,
            include_timestamp: false,
        }
        .validate("transforms.d");
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["transforms.d.cache_size", "transforms.d.ttl"]);
        assert!(errors.iter().all(|e| e.hint.is_some()), "{errors:?}");

        let errors =
            TransformConfig::parse("transforms.d", "dedup", json!({"cache_size": 0})).unwrap_err();
        assert_eq!(errors[0].path, "transforms.d.cache_size");
        let errors =
            TransformConfig::parse("transforms.d", "dedup", json!({"ttl": "0s"})).unwrap_err();
        assert_eq!(errors[0].path, "transforms.d.ttl");
        let errors =
            TransformConfig::parse("transforms.d", "dedup", json!({"ttl": "soon"})).unwrap_err();
        assert_eq!(errors[0].path, "transforms.d.ttl");
        assert!(
            DedupConfig {
                cache_size: 0,
                ..DedupConfig::default()
            }
            .dedup("d")
            .is_err()
        );
    }

    #[test]
    fn catalogue_parses_defaults_and_rejects_unknown_keys_with_a_suggestion() {
        let parsed = TransformConfig::parse("transforms.d", "dedup", json!({})).unwrap();
        assert_eq!(
            parsed.downcast::<DedupConfig>(),
            Some(&DedupConfig::default())
        );
        let parsed = TransformConfig::parse(
            "transforms.d",
            "dedup",
            json!({"cache_size": 10, "ttl": "30s", "include_timestamp": true}),
        )
        .unwrap();
        assert_eq!(
            parsed.downcast::<DedupConfig>(),
            Some(&DedupConfig {
                cache_size: 10,
                ttl: Duration::from_secs(30),
                include_timestamp: true,
            })
        );
        assert!(parsed.build("d").is_ok());

        let errors =
            TransformConfig::parse("transforms.d", "dedup", json!({"cache_sise": 10})).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "transforms.d.cache_sise");
        assert!(
            errors[0].to_string().contains("did you mean `cache_size`?"),
            "{}",
            errors[0]
        );
    }
}
