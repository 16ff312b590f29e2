//! What Loki's distributor and ingester decide about a parsed push, and what is kept of it.
//!
//! The steps and their order are Loki 3.7's (`Distributor.PushWithResolver`, `instance.Push`,
//! `stream.Push`), with one distributor, one ingester and replication factor 1:
//! 1. Per stream, in push order: label limits (count, name and value length, duplicate names)
//!    refuse the stream with one message; blocked ingestion (the 260 injection) refuses it
//!    without one; per entry, too old, too new, line too long, structured metadata too large or
//!    too many refuse the entry with a message each. Valid entries get `detected_level` (level
//!    discovery), count towards the push's size, and a stream over the desired rate is split
//!    into `__stream_shard__` streams (stream sharding).
//! 2. The messages are grouped as Loki's `util.GroupedErrors` groups them.
//! 3. Nothing valid left: the grouped messages (400), else the blocked answer (260), else 204.
//! 4. The tenant's rate limiter over the push's size: 429, nothing stored.
//! 5. No ingester in the ring (starting or stopping): `500 empty ring`, nothing stored.
//! 6. Per (sharded) stream: a new stream past the tenant's stream limit is refused (429); then
//!    per entry: a repeat of the stream's last line is dropped (a duplicate); the per-stream rate
//!    limit (entry by entry, or the stream's whole push when sharding is on); too far behind the
//!    stream's newest entry; the rest are stored, or are duplicates of an entry already held.
//! 7. The answer: the last stream's ingester error if it had one (Loki reports only the last
//!    stream's), else the grouped messages (400), else 204.
//!
//! Guarantees:
//! - Valid entries of a partly refused push are stored, as in Loki.
//! - Every entry that reaches step 1 is counted once: stored, duplicate, or refused with a reason
//!   (see [`super::stats`]). A refusal that a 2xx or 400 answer does not mention is also counted
//!   unreported; entries accepted by a push answered otherwise (which a client retries whole) are
//!   also counted unacknowledged.
//! - An entry whose stream already holds the same timestamp and line is answered as accepted,
//!   counted in `duplicates`, and not stored or recorded again. The memory for this is bounded
//!   by `dedup_max_entries` (oldest timestamps forgotten first) and by the out-of-order window
//!   (older entries are refused anyway).
//! - Sequence numbers are tracked per stream as pushed (shards together), so sharding does not
//!   turn into loss; counters, sequences and records follow exactly the entries stored.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use super::config::ReceiverConfig;
use super::decode::{PushEntry, PushStream};
use super::labels::LabelSet;
use super::latency::{LatencyRecorder, SecondSample};
use super::levels::LevelDetector;
use super::messages;
use super::ratelimit::TokenBucket;
use super::seq::{BLOCK_BYTES, SeqBudget, SeqTracker, find_seq};
use super::sharding::{SHARD_LABEL, StreamRate};
use super::stats::{SequenceStats, StatsSnapshot, StreamStats, TenantStats};

/// Loki's discard reasons (`validation.*`), used as keys of `rejected`; `empty_ring` is the
/// receiver's own, for entries of pushes answered `500 empty ring`.
pub mod reason {
    pub const MISSING_LABELS: &str = "missing_labels";
    pub const MAX_LABEL_NAMES: &str = "max_label_names_per_series";
    pub const LABEL_NAME_TOO_LONG: &str = "label_name_too_long";
    pub const LABEL_VALUE_TOO_LONG: &str = "label_value_too_long";
    pub const DUPLICATE_LABEL_NAMES: &str = "duplicate_label_names";
    pub const TOO_OLD: &str = "greater_than_max_sample_age";
    pub const TOO_NEW: &str = "too_far_in_future";
    pub const LINE_TOO_LONG: &str = "line_too_long";
    pub const METADATA_TOO_LARGE: &str = "structured_metadata_too_large";
    pub const METADATA_TOO_MANY: &str = "structured_metadata_too_many";
    pub const BLOCKED: &str = "blocked_ingestion";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const EMPTY_RING: &str = "empty_ring";
    pub const STREAM_LIMIT: &str = "stream_limit";
    pub const PER_STREAM_RATE_LIMIT: &str = "per_stream_rate_limit";
    pub const TOO_FAR_BEHIND: &str = "too_far_behind";
}

/// Entries remembered for exact-duplicate detection, all streams together.
pub const DEDUP_MAX_ENTRIES: usize = 2_000_000;

/// Streams with their own counters per tenant; later ones are added up under [`OTHER_STREAMS`].
pub const MAX_STREAM_STATS: usize = 100_000;
/// The `by_stream` name of the streams past [`MAX_STREAM_STATS`].
pub const OTHER_STREAMS: &str = "(other streams)";

/// The status Loki's blocked ingestion answers with (`block_ingestion_status_code`).
const BLOCKED_STATUS: u16 = 260;

/// The limits of [`ReceiverConfig`] in the units the checks use.
#[derive(Clone, Debug)]
pub struct Limits {
    pub reject_old_samples: bool,
    pub max_age_ns: i64,
    pub grace_ns: i64,
    pub window_ns: i64,
    pub max_line_size: u64,
    pub max_label_names: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    pub max_streams: usize,
    pub rate_bytes: f64,
    pub burst_bytes: f64,
    pub stream_rate_bytes: f64,
    pub stream_burst_bytes: f64,
    pub shard_streams: bool,
    pub desired_rate: u64,
    pub levels: Option<LevelDetector>,
    pub max_metadata_size: u64,
    pub max_metadata_entries: usize,
    pub max_returned_errors: usize,
    pub discover_service_name: Vec<String>,
    pub dedup_max_entries: usize,
    pub seq_max_blocks: u64,
}

fn nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl Limits {
    pub fn from_config(config: &ReceiverConfig) -> Self {
        const MIB: f64 = (1u64 << 20) as f64;
        Self {
            reject_old_samples: config.reject_old_samples,
            max_age_ns: nanos(config.reject_old_samples_max_age),
            grace_ns: nanos(config.creation_grace_period),
            window_ns: nanos(config.max_chunk_age) / 2,
            max_line_size: config.max_line_size,
            max_label_names: config.max_label_names_per_series,
            max_label_name_length: config.max_label_name_length,
            max_label_value_length: config.max_label_value_length,
            max_streams: config.max_streams_per_tenant,
            rate_bytes: config.ingestion_rate_mb * MIB,
            burst_bytes: config.ingestion_burst_size_mb * MIB,
            stream_rate_bytes: config.per_stream_rate_limit as f64,
            stream_burst_bytes: config.per_stream_rate_limit_burst as f64,
            shard_streams: config.shard_streams,
            desired_rate: config.shard_streams_desired_rate,
            levels: config.discover_log_levels.then(|| LevelDetector {
                fields: config.log_level_fields.clone(),
                max_json_depth: config.log_level_from_json_max_depth,
            }),
            max_metadata_size: config.max_structured_metadata_size,
            max_metadata_entries: config.max_structured_metadata_entries,
            max_returned_errors: config.max_returned_stream_errors,
            discover_service_name: config
                .discover_service_name
                .iter()
                .filter(|name| !name.is_empty())
                .cloned()
                .collect(),
            dedup_max_entries: DEDUP_MAX_ENTRIES,
            seq_max_blocks: config.seq_memory_mb.saturating_mul(1 << 20) / BLOCK_BYTES,
        }
    }
}

/// A stream of a push whose labels parsed.
#[derive(Clone, Debug)]
pub struct ParsedStream {
    pub labels: LabelSet,
    /// `labels` in Loki's text form: the stream's identity and how messages name it.
    pub key: String,
    pub entries: Vec<PushEntry>,
}

impl ParsedStream {
    /// Applies Loki's service-name discovery: without a `service_name` label, the first of
    /// `discover` that has a value gives it, else `unknown_service`. An empty list does nothing.
    pub fn new(mut labels: LabelSet, discover: &[String], entries: Vec<PushEntry>) -> Self {
        if !discover.is_empty() && !labels.has("service_name") {
            let service = discover
                .iter()
                .find_map(|name| labels.get(name).filter(|v| !v.is_empty()))
                .unwrap_or("unknown_service")
                .to_string();
            labels.set("service_name", &service);
        }
        let key = labels.to_string();
        Self {
            labels,
            key,
            entries,
        }
    }
}

/// A stored entry, for the record file.
#[derive(Clone, Debug)]
pub struct StoredEntry {
    pub labels: Arc<str>,
    pub ts_ns: i64,
    pub line: Bytes,
    pub metadata: Vec<(String, String)>,
}

/// What to answer to a push, and what it stored.
#[derive(Debug)]
pub struct Outcome {
    pub status: u16,
    /// The text body without its final newline; empty for 204.
    pub body: String,
    pub stored: Vec<StoredEntry>,
}

/// A fault to apply where Loki would apply it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    None,
    /// Answer 260 as Loki's blocked ingestion does.
    Blocked,
    /// Answer 429 as Loki's rate limiter does.
    RateLimited,
}

/// The circumstances of one push besides its content.
#[derive(Clone, Copy, Debug)]
pub struct Conditions {
    pub injection: Injection,
    /// No ingester in the ring: valid pushes are answered `500 empty ring`.
    pub ring_empty: bool,
    /// Keep the stored entries in [`Outcome::stored`] (for the record file).
    pub keep_stored: bool,
    /// Orders the grouped validation messages (Loki's order is a Go map's, i.e. random).
    pub order_seed: u64,
}

impl Default for Conditions {
    fn default() -> Self {
        Self {
            injection: Injection::None,
            ring_empty: false,
            keep_stored: true,
            order_seed: 0,
        }
    }
}

/// Loki's `util.GroupedErrors`: one part per distinct message, joined by `; `, each prefixed
/// with `N errors like: ` unless it is the only message and occurred once. There is no cap on
/// the number of parts. The order is a Go map's: here shuffled by a seed.
#[derive(Default)]
struct GroupedErrors {
    messages: Vec<(String, u64)>,
    index: HashMap<String, usize>,
}

impl GroupedErrors {
    fn add(&mut self, message: String) {
        if let Some(&i) = self.index.get(&message) {
            self.messages[i].1 += 1;
        } else {
            self.index.insert(message.clone(), self.messages.len());
            self.messages.push((message, 1));
        }
    }

    fn message(mut self, seed: u64) -> Option<String> {
        if self.messages.is_empty() {
            return None;
        }
        // Fisher-Yates with SplitMix64 steps.
        let mut state = seed;
        for i in (1..self.messages.len()).rev() {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            self.messages.swap(i, (z % (i as u64 + 1)) as usize);
        }
        let unique = self.messages.len();
        let parts: Vec<String> = self
            .messages
            .iter()
            .map(|(message, n)| {
                if unique > 1 || *n > 1 {
                    format!("{n} errors like: {message}")
                } else {
                    message.clone()
                }
            })
            .collect();
        Some(parts.join("; "))
    }
}

/// The last line a stream stored: (timestamp, line hash, line length, metadata hash).
type LastLine = (i64, u64, usize, u64);

#[derive(Debug)]
struct StreamState {
    last: Option<LastLine>,
    highest_ts: Option<i64>,
    /// (timestamp, line hash) of entries within the out-of-order window.
    seen: BTreeSet<(i64, u64)>,
    limiter: TokenBucket,
}

/// Entry counts at one level (all, a tenant, a stream).
#[derive(Clone, Debug, Default)]
struct Counters {
    received: u64,
    stored: u64,
    stored_bytes: u64,
    duplicates: u64,
    duplicate_bytes: u64,
    rejected: BTreeMap<&'static str, u64>,
    rejected_unreported: u64,
    unacknowledged: u64,
}

impl Counters {
    fn rejected_entries(&self) -> u64 {
        self.rejected.values().sum()
    }

    fn rejected_map(&self) -> BTreeMap<String, u64> {
        self.rejected
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect()
    }
}

#[derive(Debug)]
struct Tenant {
    /// Per Loki stream (sharded streams separately).
    streams: HashMap<String, StreamState>,
    /// Per stream as pushed: sequence numbers and the rate store.
    sequences: HashMap<String, SeqTracker>,
    rates: HashMap<String, StreamRate>,
    limiter: TokenBucket,
    counters: Counters,
    by_stream: HashMap<String, Counters>,
    streams_created: u64,
}

#[derive(Debug, Default)]
struct Totals {
    pushes: u64,
    counters: Counters,
    responses: BTreeMap<u16, u64>,
}

/// Who a refusal is reported by, to tell afterwards whether the answer mentioned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Validation,
    Blocked,
    /// The tenant's rate limit or the empty ring: the whole push's answer.
    Push,
    /// The ingester, for the n-th stream sent to it.
    Ingester(usize),
    /// The ingester, but left out of its answer.
    Unlisted,
}

/// What a push did, applied to the counters once its answer is known.
#[derive(Default)]
struct Ledger {
    refused: Vec<(String, &'static str, u64, Source)>,
    /// Stream, entries stored or deduplicated.
    accepted: HashMap<String, u64>,
}

impl Ledger {
    fn refuse(&mut self, key: &str, reason: &'static str, entries: u64, source: Source) {
        if entries > 0 {
            self.refused
                .push((key.to_string(), reason, entries, source));
        }
    }

    fn accept(&mut self, key: &str, entries: u64) {
        if entries > 0 {
            *self.accepted.entry(key.to_string()).or_default() += entries;
        }
    }
}

/// A stream as the ingester receives it: maybe a shard.
struct KeyedStream {
    key: String,
    /// The stream as pushed (without `__stream_shard__`).
    base: String,
    entries: Vec<PushEntry>,
}

/// An entry refused by the ingester.
enum Failed {
    RateLimited { ts: i64, bytes: u64 },
    TooFarBehind { ts: i64, cutoff: i64 },
}

impl Failed {
    fn ts(&self) -> i64 {
        match self {
            Failed::RateLimited { ts, .. } | Failed::TooFarBehind { ts, .. } => *ts,
        }
    }
}

/// What one stream's ingestion said.
struct Ingested {
    error: Option<(u16, String)>,
    /// Bytes for the rate store, when the stream got that far.
    rate_bytes: Option<u64>,
}

/// All tenants' state and the counters.
#[derive(Debug)]
pub struct Store {
    limits: Limits,
    tenants: HashMap<String, Tenant>,
    totals: Totals,
    seq_budget: SeqBudget,
    dedup_entries: usize,
    latency: LatencyRecorder,
    /// Second 0 of the rate store.
    epoch: Instant,
}

/// Bytes of an entry as Loki's limits count them: line plus structured metadata.
fn entry_size(entry: &PushEntry) -> u64 {
    let metadata: usize = entry.metadata.iter().map(|(n, v)| n.len() + v.len()).sum();
    (entry.line.len() + metadata) as u64
}

fn metadata_hash(metadata: &[(String, String)]) -> u64 {
    let mut hasher = Xxh3::new();
    for (name, value) in metadata {
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
        hasher.update(value.as_bytes());
        hasher.update(&[0]);
    }
    hasher.digest()
}

/// Applies `f` to a tenant's counters for `key`, within the bound on streams with counters.
fn stream_counters<'a>(
    by_stream: &'a mut HashMap<String, Counters>,
    key: &str,
) -> &'a mut Counters {
    if !by_stream.contains_key(key) && by_stream.len() >= MAX_STREAM_STATS {
        return by_stream.entry(OTHER_STREAMS.to_string()).or_default();
    }
    by_stream.entry(key.to_string()).or_default()
}

impl Store {
    pub fn new(limits: Limits) -> Self {
        let seq_budget = SeqBudget {
            max_blocks: limits.seq_max_blocks,
            used_blocks: 0,
        };
        Self {
            limits,
            tenants: HashMap::new(),
            totals: Totals::default(),
            seq_budget,
            dedup_entries: 0,
            latency: LatencyRecorder::new(),
            epoch: Instant::now(),
        }
    }

    pub fn count_push(&mut self) {
        self.totals.pushes += 1;
    }

    pub fn count_response(&mut self, status: u16) {
        *self.totals.responses.entry(status).or_default() += 1;
    }

    fn tenant(&mut self, name: &str) -> &mut Tenant {
        let limits = &self.limits;
        self.tenants
            .entry(name.to_string())
            .or_insert_with(|| Tenant {
                streams: HashMap::new(),
                sequences: HashMap::new(),
                rates: HashMap::new(),
                limiter: TokenBucket::new(limits.rate_bytes, limits.burst_bytes),
                counters: Counters::default(),
                by_stream: HashMap::new(),
                streams_created: 0,
            })
    }

    /// Counts at every level: all, the tenant, the stream.
    fn count(&mut self, tenant: &str, key: &str, f: impl Fn(&mut Counters)) {
        f(&mut self.totals.counters);
        let t = self.tenant(tenant);
        f(&mut t.counters);
        f(stream_counters(&mut t.by_stream, key));
    }

    /// Label checks of `ValidateLabels`: the reason and message of the first failure.
    fn validate_labels(&self, stream: &ParsedStream) -> Result<(), (&'static str, String)> {
        let limits = &self.limits;
        let labels = &stream.labels;
        let key = &stream.key;
        if labels.is_empty() {
            return Err((reason::MISSING_LABELS, messages::MISSING_LABELS.into()));
        }
        let count = labels.len() - usize::from(labels.has("service_name"));
        if count > limits.max_label_names {
            return Err((
                reason::MAX_LABEL_NAMES,
                messages::max_label_names(key, count, limits.max_label_names),
            ));
        }
        let mut previous = "";
        for (name, value) in labels.iter() {
            if name.len() > limits.max_label_name_length {
                return Err((
                    reason::LABEL_NAME_TOO_LONG,
                    messages::label_name_too_long(key, name),
                ));
            }
            if value.len() > limits.max_label_value_length {
                return Err((
                    reason::LABEL_VALUE_TOO_LONG,
                    messages::label_value_too_long(key, value),
                ));
            }
            if name == previous {
                return Err((
                    reason::DUPLICATE_LABEL_NAMES,
                    messages::duplicate_label_name(key, name),
                ));
            }
            previous = name;
        }
        Ok(())
    }

    /// Entry checks of `ValidateEntry`. The age check is to the nanosecond, although its message
    /// states the cutoff to the second.
    fn validate_entry(
        &self,
        key: &str,
        entry: &PushEntry,
        now_ns: i64,
    ) -> Result<(), (&'static str, String)> {
        let limits = &self.limits;
        let oldest = now_ns.saturating_sub(limits.max_age_ns);
        if limits.reject_old_samples && entry.ts_ns < oldest {
            return Err((reason::TOO_OLD, messages::too_old(key, entry.ts_ns, oldest)));
        }
        if entry.ts_ns > now_ns.saturating_add(limits.grace_ns) {
            return Err((reason::TOO_NEW, messages::too_new(key, entry.ts_ns)));
        }
        if limits.max_line_size != 0 && entry.line.len() as u64 > limits.max_line_size {
            return Err((
                reason::LINE_TOO_LONG,
                messages::line_too_long(limits.max_line_size, key, entry.line.len()),
            ));
        }
        if !entry.metadata.is_empty() {
            let size: usize = entry.metadata.iter().map(|(n, v)| n.len() + v.len()).sum();
            if limits.max_metadata_size != 0 && size as u64 > limits.max_metadata_size {
                return Err((
                    reason::METADATA_TOO_LARGE,
                    messages::metadata_too_large(key, size, limits.max_metadata_size),
                ));
            }
            let count = entry.metadata.len();
            if limits.max_metadata_entries != 0 && count > limits.max_metadata_entries {
                return Err((
                    reason::METADATA_TOO_MANY,
                    messages::metadata_too_many(key, count, limits.max_metadata_entries),
                ));
            }
        }
        Ok(())
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs()
    }

    /// The counting-only mode (`--count-only`): records each entry's sequence number, latency
    /// and size as stored, per stream as pushed, with no validation, limits or deduplication.
    pub fn count_only(&mut self, tenant: &str, streams: &[PushStream], now_ns: i64, now: Instant) {
        for stream in streams {
            let stored_count = stream.entries.len() as u64;
            let stored_bytes: u64 = stream.entries.iter().map(|e| e.line.len() as u64).sum();
            self.tenant(tenant);
            let Some(sequences) = self
                .tenants
                .get_mut(tenant)
                .map(|t| t.sequences.entry(stream.labels.clone()).or_default())
            else {
                continue;
            };
            for entry in &stream.entries {
                if let Some(seq) = find_seq(&entry.line) {
                    sequences.record(seq, &mut self.seq_budget);
                }
                self.latency.record(now_ns, now, &entry.line, entry.ts_ns);
            }
            self.totals.counters.received += stored_count;
            self.tenant(tenant).counters.received += stored_count;
            self.count(tenant, &stream.labels, |c| {
                c.stored += stored_count;
                c.stored_bytes += stored_bytes;
            });
        }
    }

    /// Runs a push through validation, limits and storage. `now_ns` is the wall clock in
    /// nanoseconds since the epoch, `now` the same moment for the rate limiters.
    pub fn push(
        &mut self,
        tenant: &str,
        streams: Vec<ParsedStream>,
        now_ns: i64,
        now: Instant,
        conditions: &Conditions,
    ) -> Outcome {
        self.tenant(tenant);
        let second = self.second(now);
        let mut ledger = Ledger::default();
        let mut errors = GroupedErrors::default();
        let mut keyed: Vec<KeyedStream> = Vec::new();
        let mut blocked = false;
        let mut total_bytes = 0u64;
        let mut total_lines = 0u64;
        // 1. Distributor validation, level discovery and sharding.
        for stream in streams {
            if stream.entries.is_empty() {
                continue;
            }
            let received = stream.entries.len() as u64;
            self.totals.counters.received += received;
            self.tenant(tenant).counters.received += received;
            if let Err((why, message)) = self.validate_labels(&stream) {
                errors.add(message);
                ledger.refuse(&stream.key, why, received, Source::Validation);
                continue;
            }
            if conditions.injection == Injection::Blocked {
                blocked = true;
                ledger.refuse(&stream.key, reason::BLOCKED, received, Source::Blocked);
                continue;
            }
            let ParsedStream {
                labels,
                key,
                entries,
            } = stream;
            let mut kept = Vec::with_capacity(entries.len());
            let mut stream_bytes = 0u64;
            for mut entry in entries {
                if let Err((why, message)) = self.validate_entry(&key, &entry, now_ns) {
                    errors.add(message);
                    ledger.refuse(&key, why, 1, Source::Validation);
                    continue;
                }
                if let Some(levels) = &self.limits.levels {
                    levels.apply(&labels, &mut entry.metadata, &entry.line);
                }
                stream_bytes += entry_size(&entry);
                kept.push(entry);
            }
            if kept.is_empty() {
                continue;
            }
            total_bytes += stream_bytes;
            total_lines += kept.len() as u64;
            self.shard(tenant, labels, key, kept, stream_bytes, second, &mut keyed);
        }
        let validation_error = errors.message(conditions.order_seed);
        // 3. Nothing left.
        if keyed.is_empty() {
            let (status, body, answer) = match validation_error {
                Some(message) => (400, message, Some(Source::Validation)),
                None if blocked => (
                    BLOCKED_STATUS,
                    messages::blocked(tenant, now_ns, BLOCKED_STATUS),
                    Some(Source::Blocked),
                ),
                None => (204, String::new(), None),
            };
            return self.finish(tenant, ledger, status, body, answer, Vec::new());
        }
        // 4. The tenant's rate limit.
        let allowed = conditions.injection != Injection::RateLimited
            && self.tenant(tenant).limiter.allow_n(now, total_bytes as f64);
        if !allowed {
            for stream in &keyed {
                ledger.refuse(
                    &stream.key,
                    reason::RATE_LIMITED,
                    stream.entries.len() as u64,
                    Source::Push,
                );
            }
            let body = messages::rate_limited(
                tenant,
                self.limits.rate_bytes as i64,
                total_lines,
                total_bytes,
            );
            return self.finish(tenant, ledger, 429, body, Some(Source::Push), Vec::new());
        }
        // 5. The ring.
        if conditions.ring_empty {
            for stream in &keyed {
                ledger.refuse(
                    &stream.key,
                    reason::EMPTY_RING,
                    stream.entries.len() as u64,
                    Source::Push,
                );
            }
            let body = messages::EMPTY_RING.to_string();
            return self.finish(tenant, ledger, 500, body, Some(Source::Push), Vec::new());
        }
        // 6. The ingester.
        let mut stored = Vec::new();
        let mut last_error = None;
        let mut rate_bytes: HashMap<String, u64> = HashMap::new();
        for (index, stream) in keyed.into_iter().enumerate() {
            let base = stream.base.clone();
            let ingested = self.ingest(
                tenant,
                stream,
                index,
                conditions.keep_stored,
                &mut stored,
                &mut ledger,
                now_ns,
                now,
            );
            if let Some(bytes) = ingested.rate_bytes {
                *rate_bytes.entry(base).or_default() += bytes;
            }
            last_error = ingested.error.map(|e| (index, e));
        }
        if self.limits.shard_streams {
            let t = self.tenant(tenant);
            for (base, bytes) in rate_bytes {
                t.rates.entry(base).or_default().record(second, bytes);
            }
        }
        // 7. The answer.
        let (status, body, answer) = match (last_error, validation_error) {
            (Some((index, (status, body))), _) => (status, body, Some(Source::Ingester(index))),
            (None, Some(message)) => (400, message, Some(Source::Validation)),
            (None, None) => (204, String::new(), None),
        };
        self.finish(tenant, ledger, status, body, answer, stored)
    }

    /// Splits a validated stream into shards when its rate calls for it.
    #[allow(clippy::too_many_arguments)]
    fn shard(
        &mut self,
        tenant: &str,
        labels: LabelSet,
        key: String,
        entries: Vec<PushEntry>,
        bytes: u64,
        second: u64,
        keyed: &mut Vec<KeyedStream>,
    ) {
        if !self.limits.shard_streams {
            keyed.push(KeyedStream {
                base: key.clone(),
                key,
                entries,
            });
            return;
        }
        let desired = self.limits.desired_rate;
        let rate = self.tenant(tenant).rates.entry(key.clone()).or_default();
        let shards = rate.shard_count(second, bytes, desired);
        if shards <= 1 {
            keyed.push(KeyedStream {
                base: key.clone(),
                key,
                entries,
            });
            return;
        }
        for (number, entries) in rate.divide(entries, shards) {
            let mut shard_labels = labels.clone();
            shard_labels.set(SHARD_LABEL, &number.to_string());
            keyed.push(KeyedStream {
                key: shard_labels.to_string(),
                base: key.clone(),
                entries,
            });
        }
    }

    /// Applies the push's ledger now that its answer is known.
    fn finish(
        &mut self,
        tenant: &str,
        ledger: Ledger,
        status: u16,
        body: String,
        answer: Option<Source>,
        stored: Vec<StoredEntry>,
    ) -> Outcome {
        // A client retries a push answered other than 2xx or 400 whole; otherwise it takes the
        // answer's word for what was accepted.
        let retried = !(200..300).contains(&status) && status != 400;
        for (key, why, entries, source) in ledger.refused {
            let hidden = !retried && (answer != Some(source) || source == Source::Unlisted);
            self.count(tenant, &key, |c| {
                *c.rejected.entry(why).or_default() += entries;
                if hidden {
                    c.rejected_unreported += entries;
                }
            });
        }
        if retried {
            for (key, entries) in ledger.accepted {
                self.count(tenant, &key, |c| c.unacknowledged += entries);
            }
        }
        Outcome {
            status,
            body,
            stored,
        }
    }

    /// `instance.Push` and `stream.Push` for one stream.
    #[allow(clippy::too_many_arguments)]
    fn ingest(
        &mut self,
        tenant_name: &str,
        stream: KeyedStream,
        index: usize,
        keep_stored: bool,
        stored: &mut Vec<StoredEntry>,
        ledger: &mut Ledger,
        now_ns: i64,
        now: Instant,
    ) -> Ingested {
        let Limits {
            window_ns,
            max_streams,
            max_returned_errors,
            dedup_max_entries,
            stream_rate_bytes,
            stream_burst_bytes,
            shard_streams: whole_stream,
            ..
        } = self.limits;
        let KeyedStream { key, base, entries } = stream;
        let total = entries.len();
        let Some(tenant) = self.tenants.get_mut(tenant_name) else {
            return Ingested {
                error: None,
                rate_bytes: None,
            };
        };
        if !tenant.streams.contains_key(&key) {
            if max_streams > 0 && tenant.streams.len() >= max_streams {
                ledger.refuse(
                    &key,
                    reason::STREAM_LIMIT,
                    total as u64,
                    Source::Ingester(index),
                );
                return Ingested {
                    error: Some((429, messages::stream_limit(&key, tenant_name))),
                    rate_bytes: None,
                };
            }
            tenant.streams.insert(
                key.clone(),
                StreamState {
                    last: None,
                    highest_ts: None,
                    seen: BTreeSet::new(),
                    limiter: TokenBucket::new(stream_rate_bytes, stream_burst_bytes),
                },
            );
            tenant.streams_created += 1;
        }
        let Some(state) = tenant.streams.get_mut(&key) else {
            return Ingested {
                error: None,
                rate_bytes: None,
            };
        };
        // `validateEntries`.
        let mut last = state.last;
        let mut highest = state.highest_ts;
        let mut failed: Vec<Failed> = Vec::new();
        let mut to_store: Vec<(PushEntry, u64)> = Vec::with_capacity(total);
        let mut repeats: Vec<u64> = Vec::new();
        let mut rate_bytes = 0u64;
        let mut valid_bytes = 0u64;
        for entry in entries {
            let hash = xxh3_64(&entry.line);
            let this = (
                entry.ts_ns,
                hash,
                entry.line.len(),
                metadata_hash(&entry.metadata),
            );
            if last == Some(this) {
                repeats.push(entry.line.len() as u64);
                continue;
            }
            let bytes = entry_size(&entry);
            rate_bytes += bytes;
            if !whole_stream && !state.limiter.allow_n(now, bytes as f64) {
                failed.push(Failed::RateLimited {
                    ts: entry.ts_ns,
                    bytes,
                });
                continue;
            }
            if let Some(highest) = highest {
                let cutoff = highest.saturating_sub(window_ns);
                if cutoff > entry.ts_ns {
                    failed.push(Failed::TooFarBehind {
                        ts: entry.ts_ns,
                        cutoff,
                    });
                    continue;
                }
            }
            valid_bytes += bytes;
            last = Some(this);
            highest = Some(highest.map_or(entry.ts_ns, |h| h.max(entry.ts_ns)));
            to_store.push((entry, hash));
        }
        let mut duplicates = repeats.len() as u64;
        let mut duplicate_bytes: u64 = repeats.iter().sum();
        let labels_text = key.clone();
        if whole_stream && !state.limiter.allow_n(now, valid_bytes as f64) {
            // The whole stream is refused; Loki's answer lists only the rate-limited entries.
            ledger.refuse(
                &key,
                reason::TOO_FAR_BEHIND,
                failed.len() as u64,
                Source::Unlisted,
            );
            ledger.refuse(
                &key,
                reason::PER_STREAM_RATE_LIMIT,
                to_store.len() as u64,
                Source::Ingester(index),
            );
            let failed: Vec<Failed> = to_store
                .iter()
                .map(|(entry, _)| Failed::RateLimited {
                    ts: entry.ts_ns,
                    bytes: entry_size(entry),
                })
                .collect();
            self.count(tenant_name, &key, |c| {
                c.duplicates += duplicates;
                c.duplicate_bytes += duplicate_bytes;
            });
            ledger.accept(&key, duplicates);
            let error = self.failure_answer(
                tenant_name,
                &labels_text,
                &failed,
                total,
                max_returned_errors,
            );
            return Ingested {
                error,
                rate_bytes: Some(rate_bytes),
            };
        }
        // `storeEntries`.
        state.last = last;
        state.highest_ts = highest;
        let labels: Arc<str> = Arc::from(key.as_str());
        let before = state.seen.len();
        let mut new_entries = Vec::with_capacity(to_store.len());
        for (entry, hash) in to_store {
            if !state.seen.insert((entry.ts_ns, hash)) {
                duplicates += 1;
                duplicate_bytes += entry.line.len() as u64;
                continue;
            }
            new_entries.push(entry);
        }
        // Forget what the window has passed, then the oldest past the memory bound.
        if let Some(highest) = state.highest_ts {
            let cutoff = highest.saturating_sub(window_ns);
            if state.seen.first().is_some_and(|&(ts, _)| ts < cutoff) {
                state.seen = state.seen.split_off(&(cutoff, 0));
            }
        }
        let mut total_seen = (self.dedup_entries + state.seen.len()).saturating_sub(before);
        while total_seen > dedup_max_entries && state.seen.pop_first().is_some() {
            total_seen -= 1;
        }
        self.dedup_entries = total_seen;

        let stored_count = new_entries.len() as u64;
        let stored_bytes: u64 = new_entries.iter().map(|e| e.line.len() as u64).sum();
        let sequences = tenant.sequences.entry(base).or_default();
        for entry in new_entries {
            if let Some(seq) = find_seq(&entry.line) {
                sequences.record(seq, &mut self.seq_budget);
            }
            self.latency.record(now_ns, now, &entry.line, entry.ts_ns);
            if keep_stored {
                stored.push(StoredEntry {
                    labels: labels.clone(),
                    ts_ns: entry.ts_ns,
                    line: entry.line,
                    metadata: entry.metadata,
                });
            }
        }
        self.count(tenant_name, &key, |c| {
            c.stored += stored_count;
            c.stored_bytes += stored_bytes;
            c.duplicates += duplicates;
            c.duplicate_bytes += duplicate_bytes;
        });
        ledger.accept(&key, stored_count + duplicates);
        let rate_limited = failed
            .iter()
            .filter(|f| matches!(f, Failed::RateLimited { .. }))
            .count() as u64;
        ledger.refuse(
            &key,
            reason::PER_STREAM_RATE_LIMIT,
            rate_limited,
            Source::Ingester(index),
        );
        ledger.refuse(
            &key,
            reason::TOO_FAR_BEHIND,
            failed.len() as u64 - rate_limited,
            Source::Ingester(index),
        );
        let error = self.failure_answer(
            tenant_name,
            &labels_text,
            &failed,
            total,
            max_returned_errors,
        );
        Ingested {
            error,
            rate_bytes: Some(rate_bytes),
        }
    }

    /// `errorForFailedEntries`: the status follows the last failed entry (429 for the rate
    /// limit, 400 for too far behind); at most `max_returned` entries are listed (0: all).
    fn failure_answer(
        &self,
        tenant: &str,
        labels: &str,
        failed: &[Failed],
        total: usize,
        max_returned: usize,
    ) -> Option<(u16, String)> {
        let last = failed.last()?;
        let status = match last {
            Failed::RateLimited { .. } => 429,
            Failed::TooFarBehind { .. } => 400,
        };
        let listed = if max_returned == 0 {
            failed.len()
        } else {
            max_returned.min(failed.len())
        };
        let mut body = String::new();
        for entry in &failed[..listed] {
            let reason = match entry {
                Failed::RateLimited { bytes, .. } => messages::per_stream_rate_limit(
                    self.limits.stream_rate_bytes as u64,
                    labels,
                    *bytes,
                ),
                Failed::TooFarBehind { ts, cutoff } => messages::too_far_behind(*ts, *cutoff),
            };
            body.push_str(&messages::entry_ignored(entry.ts(), &reason));
        }
        body.push_str(&messages::total_ignored(
            tenant,
            failed.len(),
            total,
            labels,
        ));
        Some((status, body))
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut sequences = SequenceStats::default();
        let mut streams = 0u64;
        let mut tenants = BTreeMap::new();
        for (name, tenant) in &self.tenants {
            streams += tenant.streams.len() as u64;
            for seq in tenant.sequences.values() {
                sequences.missing += seq.missing();
                sequences.duplicated += seq.duplicated;
                sequences.max_seq = sequences.max_seq.max(seq.max_seq);
                sequences.seen += seq.seen();
                sequences.untracked += seq.untracked;
            }
            let c = &tenant.counters;
            tenants.insert(
                name.clone(),
                TenantStats {
                    received_entries: c.received,
                    accepted_entries: c.stored + c.duplicates,
                    accepted_bytes: c.stored_bytes + c.duplicate_bytes,
                    stored_entries: c.stored,
                    stored_bytes: c.stored_bytes,
                    duplicates: c.duplicates,
                    duplicate_bytes: c.duplicate_bytes,
                    rejected_entries: c.rejected_entries(),
                    rejected: c.rejected_map(),
                    rejected_unreported: c.rejected_unreported,
                    unacknowledged: c.unacknowledged,
                    streams: tenant.streams_created,
                    by_stream: tenant
                        .by_stream
                        .iter()
                        .map(|(key, c)| {
                            (
                                key.clone(),
                                StreamStats {
                                    accepted_entries: c.stored + c.duplicates,
                                    stored_entries: c.stored,
                                    duplicates: c.duplicates,
                                    rejected_entries: c.rejected_entries(),
                                    rejected: c.rejected_map(),
                                    rejected_unreported: c.rejected_unreported,
                                    unacknowledged: c.unacknowledged,
                                },
                            )
                        })
                        .collect(),
                },
            );
        }
        let c = &self.totals.counters;
        StatsSnapshot {
            pushes: self.totals.pushes,
            received_entries: c.received,
            accepted_entries: c.stored + c.duplicates,
            accepted_bytes: c.stored_bytes + c.duplicate_bytes,
            stored_entries: c.stored,
            stored_bytes: c.stored_bytes,
            duplicates: c.duplicates,
            duplicate_bytes: c.duplicate_bytes,
            rejected_entries: c.rejected_entries(),
            rejected_unreported: c.rejected_unreported,
            unacknowledged: c.unacknowledged,
            streams,
            rejected: c.rejected_map(),
            responses: self
                .totals
                .responses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            tenants,
            sequences,
            latency: self.latency.summary(),
        }
    }

    /// Latency per second since the start or the last reset.
    pub fn latency_series(&self) -> Vec<SecondSample> {
        self.latency.series()
    }

    /// Zeroes the counters and forgets the sequence numbers; streams, their out-of-order and
    /// duplicate state, the rate store and the rate limiters are kept (Loki would keep them too).
    pub fn reset(&mut self) {
        self.totals = Totals::default();
        for tenant in self.tenants.values_mut() {
            tenant.counters = Counters::default();
            tenant.by_stream.clear();
            tenant.sequences.clear();
        }
        self.seq_budget.used_blocks = 0;
        self.latency = LatencyRecorder::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver::labels;
    use std::time::Duration;

    const NOW: i64 = 1_714_557_600_000_000_000; // 2024-05-01T10:00:00Z
    const SECOND: i64 = 1_000_000_000;
    const DAY: i64 = 24 * 3600 * SECOND;

    fn config() -> ReceiverConfig {
        ReceiverConfig {
            discover_log_levels: false,
            ..ReceiverConfig::for_tests()
        }
    }

    fn store() -> Store {
        Store::new(Limits::from_config(&config()))
    }

    fn store_with(config: ReceiverConfig) -> Store {
        Store::new(Limits::from_config(&config))
    }

    fn entry(ts_ns: i64, line: &str) -> PushEntry {
        PushEntry {
            ts_ns,
            line: Bytes::from(line.to_string()),
            metadata: Vec::new(),
        }
    }

    fn stream(labels_text: &str, entries: Vec<PushEntry>) -> ParsedStream {
        let set = labels::parse(labels_text).unwrap_or_default();
        ParsedStream::new(set, &[], entries)
    }

    fn push_at(
        store: &mut Store,
        now_ns: i64,
        now: Instant,
        streams: Vec<ParsedStream>,
    ) -> Outcome {
        store.push("t", streams, now_ns, now, &Conditions::default())
    }

    fn push(store: &mut Store, streams: Vec<ParsedStream>) -> Outcome {
        let epoch = store.epoch;
        push_at(store, NOW, epoch, streams)
    }

    /// received = stored + duplicates + rejected, in total and for the tenant.
    fn assert_balanced(stats: &StatsSnapshot) {
        assert_eq!(
            stats.received_entries,
            stats.stored_entries + stats.duplicates + stats.rejected_entries,
            "{stats:?}"
        );
        assert_eq!(
            stats.accepted_entries,
            stats.stored_entries + stats.duplicates
        );
        for tenant in stats.tenants.values() {
            assert_eq!(
                tenant.received_entries,
                tenant.stored_entries + tenant.duplicates + tenant.rejected_entries
            );
        }
    }

    #[test]
    fn service_name_discovery_follows_loki() {
        let discover: Vec<String> = vec!["service".into(), "app".into(), "job".into()];
        let with = |text: &str| {
            ParsedStream::new(
                labels::parse(text).unwrap_or_default(),
                &discover,
                Vec::new(),
            )
            .key
        };
        assert_eq!(
            with(r#"{job="j", app="a"}"#),
            r#"{app="a", job="j", service_name="a"}"#
        );
        assert_eq!(
            with(r#"{x="1"}"#),
            r#"{service_name="unknown_service", x="1"}"#
        );
        assert_eq!(
            with(r#"{service_name="s", app="a"}"#),
            r#"{app="a", service_name="s"}"#
        );
    }

    #[test]
    fn partial_success_stores_the_valid_and_lists_the_rest() {
        let mut store = store();
        let old = NOW - 8 * DAY;
        let outcome = push(
            &mut store,
            vec![stream(
                r#"{job="a"}"#,
                vec![
                    entry(NOW, "good 1"),
                    entry(old, "old"),
                    entry(NOW + SECOND, "good 2"),
                ],
            )],
        );
        assert_eq!(outcome.status, 400);
        assert_eq!(
            outcome.body,
            "entry for stream '{job=\"a\"}' has timestamp too old: 2024-04-23T10:00:00Z, \
             oldest acceptable timestamp is: 2024-04-24T10:00:00Z"
        );
        assert_eq!(outcome.stored.len(), 2);
        let stats = store.snapshot();
        assert_eq!(stats.stored_entries, 2);
        assert_eq!(stats.rejected.get(reason::TOO_OLD), Some(&1));
        assert_eq!(stats.rejected_unreported, 0);
        assert_balanced(&stats);
    }

    #[test]
    fn too_old_is_judged_to_the_nanosecond_but_stated_to_the_second() {
        let mut store = store();
        // Now is 10:00:00.7, so the cutoff is 10:00:00.7 seven days ago.
        let now = NOW + 700_000_000;
        let cutoff = now - 7 * DAY;
        let stated_second = NOW - 7 * DAY;
        let epoch = store.epoch;
        let outcome = push_at(
            &mut store,
            now,
            epoch,
            vec![stream(
                r#"{job="a"}"#,
                vec![
                    entry(stated_second, "at the stated cutoff"),
                    entry(cutoff - 1, "one nanosecond too old"),
                    entry(cutoff, "exactly at the cutoff"),
                ],
            )],
        );
        assert_eq!(outcome.status, 400);
        // Refused although not older than the cutoff the message states.
        assert_eq!(
            outcome.body,
            "2 errors like: entry for stream '{job=\"a\"}' has timestamp too old: \
             2024-04-24T10:00:00Z, oldest acceptable timestamp is: 2024-04-24T10:00:00Z"
        );
        assert_eq!(outcome.stored.len(), 1);
        assert_eq!(&outcome.stored[0].line[..], b"exactly at the cutoff");
    }

    #[test]
    fn grouped_errors_prefix_every_part_and_have_no_fixed_order() {
        let mut store = store_with(ReceiverConfig {
            max_line_size: 10,
            ..config()
        });
        let new = NOW + 3600 * SECOND;
        let entries = || {
            vec![
                entry(new, "a"),
                entry(new, "b"),
                entry(NOW, &"x".repeat(20)),
                entry(NOW - 8 * DAY, "old"),
            ]
        };
        let mut orders = BTreeSet::new();
        for seed in 0..16 {
            let outcome = store.push(
                "t",
                vec![stream(r#"{job="a"}"#, entries())],
                NOW,
                store.epoch,
                &Conditions {
                    order_seed: seed,
                    ..Conditions::default()
                },
            );
            assert_eq!(outcome.status, 400);
            let parts: BTreeSet<&str> = outcome.body.split("; ").collect();
            assert_eq!(
                parts,
                BTreeSet::from([
                    "2 errors like: entry for stream '{job=\"a\"}' has timestamp too new: 2024-05-01T11:00:00Z",
                    "1 errors like: max entry size '10' bytes exceeded for stream '{job=\"a\"}' while adding an entry with length '20' bytes",
                    "1 errors like: entry for stream '{job=\"a\"}' has timestamp too old: 2024-04-23T10:00:00Z, oldest acceptable timestamp is: 2024-04-24T10:00:00Z",
                ])
            );
            orders.insert(outcome.body);
        }
        assert!(orders.len() > 1, "the order never changed");
        // One message once: no prefix.
        let outcome = push(
            &mut store,
            vec![stream(r#"{job="a"}"#, vec![entry(NOW, &"x".repeat(20))])],
        );
        assert_eq!(
            outcome.body,
            "max entry size '10' bytes exceeded for stream '{job=\"a\"}' while adding an entry \
             with length '20' bytes"
        );
    }

    #[test]
    fn too_far_behind_is_per_stream_and_listed_one_per_line() {
        let mut store = store();
        assert_eq!(
            push(
                &mut store,
                vec![stream(r#"{job="a"}"#, vec![entry(NOW, "new")])]
            )
            .status,
            204
        );
        let behind = NOW - 2 * 3600 * SECOND;
        let outcome = push(
            &mut store,
            vec![stream(
                r#"{job="a"}"#,
                vec![entry(behind, "late"), entry(NOW - SECOND, "ok")],
            )],
        );
        assert_eq!(outcome.status, 400);
        assert_eq!(
            outcome.body,
            "entry with timestamp 2024-05-01 08:00:00 +0000 UTC ignored, reason: 'entry too far behind, \
             entry timestamp is: 2024-05-01T08:00:00Z, oldest acceptable timestamp is: 2024-05-01T09:00:00Z',\n\
             user 't', total ignored: 1 out of 2 for stream: {job=\"a\"}"
        );
        assert_eq!(store.snapshot().stored_entries, 2);
        // Another stream is not affected.
        let other = push(
            &mut store,
            vec![stream(r#"{job="b"}"#, vec![entry(behind, "fine")])],
        );
        assert_eq!(other.status, 204);
    }

    #[test]
    fn only_the_last_streams_ingester_error_is_reported() {
        let mut store = store();
        push(
            &mut store,
            vec![stream(r#"{job="a"}"#, vec![entry(NOW, "new")])],
        );
        let behind = NOW - 2 * 3600 * SECOND;
        let outcome = push(
            &mut store,
            vec![
                stream(r#"{job="a"}"#, vec![entry(behind, "late")]),
                stream(r#"{job="b"}"#, vec![entry(NOW, "fine")]),
            ],
        );
        assert_eq!(outcome.status, 204);
        let stats = store.snapshot();
        assert_eq!(stats.rejected.get(reason::TOO_FAR_BEHIND), Some(&1));
        assert_eq!(stats.rejected_unreported, 1);
        let streams = &stats.tenants["t"].by_stream;
        assert_eq!(streams["{job=\"a\"}"].rejected_unreported, 1);
        assert_eq!(streams["{job=\"a\"}"].stored_entries, 1);
        assert_eq!(streams["{job=\"b\"}"].stored_entries, 1);
        assert_balanced(&stats);
    }

    #[test]
    fn the_listing_is_capped() {
        let mut store = store();
        push(
            &mut store,
            vec![stream(r#"{job="a"}"#, vec![entry(NOW, "new")])],
        );
        let behind = NOW - 2 * 3600 * SECOND;
        let late: Vec<_> = (0..15).map(|i| entry(behind + i, "late")).collect();
        let outcome = push(&mut store, vec![stream(r#"{job="a"}"#, late)]);
        assert_eq!(outcome.body.lines().count(), 11);
        assert!(
            outcome
                .body
                .ends_with("total ignored: 15 out of 15 for stream: {job=\"a\"}")
        );
    }

    #[test]
    fn the_per_stream_rate_limit_refuses_entry_by_entry_without_sharding() {
        let mut store = store_with(ReceiverConfig {
            shard_streams: false,
            per_stream_rate_limit: 0,
            per_stream_rate_limit_burst: 25,
            ..config()
        });
        let epoch = store.epoch;
        // 10 bytes each: two fit the burst, the third does not, nor the too-far-behind one.
        push_at(
            &mut store,
            NOW,
            epoch,
            vec![stream(r#"{job="a"}"#, vec![entry(NOW, "0123456789")])],
        );
        let outcome = push_at(
            &mut store,
            NOW,
            epoch,
            vec![stream(
                r#"{job="a"}"#,
                vec![
                    entry(NOW - 2 * 3600 * SECOND, "late567890"),
                    entry(NOW + 1, "abcdefghij"),
                ],
            )],
        );
        assert_eq!(outcome.status, 429);
        assert_eq!(
            outcome.body,
            "entry with timestamp 2024-05-01 08:00:00 +0000 UTC ignored, reason: 'entry too far behind, \
             entry timestamp is: 2024-05-01T08:00:00Z, oldest acceptable timestamp is: 2024-05-01T09:00:00Z',\n\
             entry with timestamp 2024-05-01 10:00:00.000000001 +0000 UTC ignored, reason: 'Per stream \
             rate limit exceeded (limit: 0B/sec) while attempting to ingest for stream '{job=\"a\"}' \
             totaling 10B, consider splitting a stream via additional labels or contact your Loki \
             administrator to see if the limit can be increased',\n\
             user 't', total ignored: 2 out of 2 for stream: {job=\"a\"}"
        );
        let stats = store.snapshot();
        assert_eq!(stats.rejected.get(reason::PER_STREAM_RATE_LIMIT), Some(&1));
        assert_eq!(stats.rejected.get(reason::TOO_FAR_BEHIND), Some(&1));
        assert_balanced(&stats);
    }

    #[test]
    fn the_per_stream_rate_limit_refuses_the_whole_push_with_sharding() {
        let mut store = store_with(ReceiverConfig {
            per_stream_rate_limit: 3 << 20,
            per_stream_rate_limit_burst: 100,
            ..config()
        });
        let epoch = store.epoch;
        push_at(
            &mut store,
            NOW,
            epoch,
            vec![stream(r#"{job="a"}"#, vec![entry(NOW, "first")])],
        );
        let mut entries: Vec<_> = (1..=12).map(|i| entry(NOW + i, "0123456789")).collect();
        entries.push(entry(NOW - 2 * 3600 * SECOND, "too far behind"));
        let outcome = push_at(
            &mut store,
            NOW,
            epoch,
            vec![
                stream(r#"{job="b"}"#, vec![entry(NOW, "stored")]),
                stream(r#"{job="a"}"#, entries),
            ],
        );
        assert_eq!(outcome.status, 429);
        let lines: Vec<&str> = outcome.body.lines().collect();
        assert_eq!(lines.len(), 11);
        assert!(lines[0].contains("reason: 'Per stream rate limit exceeded (limit: 3MB/sec)"));
        // The too-far-behind entry is neither listed nor counted in the answer.
        assert_eq!(
            lines[10],
            "user 't', total ignored: 12 out of 13 for stream: {job=\"a\"}"
        );
        let stats = store.snapshot();
        assert_eq!(stats.rejected.get(reason::PER_STREAM_RATE_LIMIT), Some(&12));
        assert_eq!(stats.rejected.get(reason::TOO_FAR_BEHIND), Some(&1));
        // Not listed, but the client resends the whole push (429), so nothing is hidden from it.
        assert_eq!(stats.rejected_unreported, 0);
        // Stored by a push answered 429: the client will resend it.
        assert_eq!(stats.unacknowledged, 1);
        assert_eq!(
            stats.tenants["t"].by_stream["{job=\"b\"}"].unacknowledged,
            1
        );
        assert_balanced(&stats);
    }

    #[test]
    fn duplicates_are_accepted_not_stored_twice() {
        let mut store = store();
        let batch = || {
            vec![stream(
                r#"{job="a"}"#,
                vec![entry(NOW, "one seq=1"), entry(NOW + 1, "two seq=2")],
            )]
        };
        assert_eq!(push(&mut store, batch()).stored.len(), 2);
        let again = push(&mut store, batch());
        assert_eq!(again.status, 204);
        assert!(again.stored.is_empty());
        let stats = store.snapshot();
        assert_eq!(
            (
                stats.stored_entries,
                stats.duplicates,
                stats.accepted_entries
            ),
            (2, 2, 4)
        );
        assert_eq!(
            stats.tenants["t"].by_stream["{job=\"a\"}"].accepted_entries,
            4
        );
        assert_eq!(stats.sequences.duplicated, 0);
        // The same line at another timestamp is a new entry (and a duplicated sequence number).
        push(
            &mut store,
            vec![stream(r#"{job="a"}"#, vec![entry(NOW + 5, "one seq=1")])],
        );
        let stats = store.snapshot();
        assert_eq!((stats.stored_entries, stats.sequences.duplicated), (3, 1));
        assert_balanced(&stats);
    }

    #[test]
    fn label_limits_use_loki_messages() {
        let mut store = store();
        let many: Vec<String> = (0..16).map(|i| format!("l{i:02}=\"v\"")).collect();
        let outcome = push(
            &mut store,
            vec![stream(
                &format!("{{{}}}", many.join(",")),
                vec![entry(NOW, "x")],
            )],
        );
        assert_eq!(outcome.status, 400);
        assert!(
            outcome.body.ends_with("has 16 label names; limit 15"),
            "{}",
            outcome.body
        );
        let outcome = push(
            &mut store,
            vec![stream(r#"{a="1", a="2"}"#, vec![entry(NOW, "x")])],
        );
        assert_eq!(
            outcome.body,
            "stream '{a=\"1\", a=\"2\"}' has duplicate label name: 'a'"
        );
        let outcome = push(&mut store, vec![stream("{}", vec![entry(NOW, "x")])]);
        assert_eq!(
            outcome.body,
            "error at least one label pair is required per stream"
        );
    }

    #[test]
    fn stream_limit_and_rate_limit_refuse_with_429() {
        let mut store = store_with(ReceiverConfig {
            max_streams_per_tenant: 1,
            ingestion_rate_mb: 0.0,
            ingestion_burst_size_mb: 100.0 / (1u64 << 20) as f64,
            ..config()
        });
        assert_eq!(
            push(
                &mut store,
                vec![stream(r#"{job="a"}"#, vec![entry(NOW, "x")])]
            )
            .status,
            204
        );
        let outcome = push(
            &mut store,
            vec![stream(r#"{job="b"}"#, vec![entry(NOW, "y")])],
        );
        assert_eq!(outcome.status, 429);
        assert_eq!(
            outcome.body,
            "maximum active stream limit exceeded when trying to create stream {job=\"b\"}, reduce \
             the number of active streams (reduce labels or reduce label values), or contact your \
             Loki administrator to see if the limit can be increased, user: 't'"
        );
        let outcome = push(
            &mut store,
            vec![stream(
                r#"{job="a"}"#,
                vec![entry(NOW + 1, &"z".repeat(200))],
            )],
        );
        assert_eq!(outcome.status, 429);
        assert_eq!(
            outcome.body,
            "ingestion rate limit exceeded for user t (limit: 0 bytes/sec) while attempting to ingest \
             '1' lines totaling '200' bytes, reduce log volume or contact your Loki administrator to see \
             if the limit can be increased"
        );
        assert_balanced(&store.snapshot());
    }

    #[test]
    fn a_push_over_the_burst_is_refused_whole_even_with_a_full_bucket() {
        let mut store = store_with(ReceiverConfig {
            ingestion_rate_mb: 1000.0,
            ingestion_burst_size_mb: 1000.0 / (1u64 << 20) as f64,
            ..config()
        });
        let outcome = push(
            &mut store,
            vec![stream(
                r#"{job="a"}"#,
                vec![
                    entry(NOW, &"z".repeat(600)),
                    entry(NOW + 1, &"z".repeat(600)),
                ],
            )],
        );
        assert_eq!(outcome.status, 429);
        assert!(
            outcome.body.contains("'2' lines totaling '1200' bytes"),
            "{}",
            outcome.body
        );
        assert_eq!(store.snapshot().stored_entries, 0);
        // Half of it passes.
        let outcome = push(
            &mut store,
            vec![stream(r#"{job="a"}"#, vec![entry(NOW, &"z".repeat(600))])],
        );
        assert_eq!(outcome.status, 204);
    }

    #[test]
    fn level_discovery_adds_detected_level_and_its_bytes() {
        let mut store = store_with(ReceiverConfig {
            ingestion_rate_mb: 0.0,
            ingestion_burst_size_mb: 5000.0 / (1u64 << 20) as f64,
            ..ReceiverConfig::for_tests()
        });
        let outcome = push(
            &mut store,
            vec![stream(r#"{job="a"}"#, vec![entry(NOW, "level=error boom")])],
        );
        assert_eq!(
            outcome.stored[0].metadata,
            vec![("detected_level".to_string(), "error".to_string())]
        );
        let outcome = push(
            &mut store,
            vec![stream(
                r#"{job="a"}"#,
                vec![entry(NOW + 1, &"y".repeat(6000))],
            )],
        );
        // 6000 + len("detected_level") + len("unknown").
        assert!(
            outcome.body.contains("totaling '6021' bytes"),
            "{}",
            outcome.body
        );
    }

    #[test]
    fn blocked_ingestion_stores_nothing_and_validation_wins() {
        let mut store = store();
        let blocked = Conditions {
            injection: Injection::Blocked,
            ..Conditions::default()
        };
        let outcome = store.push(
            "t",
            vec![stream(
                r#"{job="a"}"#,
                vec![entry(NOW, "x"), entry(NOW - 8 * DAY, "old")],
            )],
            NOW,
            store.epoch,
            &blocked,
        );
        assert_eq!(outcome.status, 260);
        assert_eq!(
            outcome.body,
            "ingestion blocked for user 't' until '2024-05-01T10:00:00Z' with status code '260'"
        );
        let stats = store.snapshot();
        assert_eq!(stats.stored_entries, 0);
        assert_eq!(stats.rejected.get(reason::BLOCKED), Some(&2));
        // A label error elsewhere in the push takes precedence.
        let outcome = store.push(
            "t",
            vec![
                stream(r#"{job="a"}"#, vec![entry(NOW, "x")]),
                stream("{}", vec![entry(NOW, "x")]),
            ],
            NOW,
            store.epoch,
            &blocked,
        );
        assert_eq!(outcome.status, 400);
        assert_eq!(store.snapshot().rejected_unreported, 1);
    }

    #[test]
    fn an_empty_ring_answers_500_after_validation() {
        let mut store = store();
        let ring = Conditions {
            ring_empty: true,
            ..Conditions::default()
        };
        let outcome = store.push(
            "t",
            vec![stream(r#"{job="a"}"#, vec![entry(NOW, "x")])],
            NOW,
            store.epoch,
            &ring,
        );
        assert_eq!((outcome.status, outcome.body.as_str()), (500, "empty ring"));
        // Nothing valid: validation answers, as Loki's distributor does before the ring.
        let outcome = store.push(
            "t",
            vec![stream(r#"{job="a"}"#, vec![entry(NOW - 8 * DAY, "old")])],
            NOW,
            store.epoch,
            &ring,
        );
        assert_eq!(outcome.status, 400);
        let stats = store.snapshot();
        assert_eq!(stats.rejected.get(reason::EMPTY_RING), Some(&1));
        assert_eq!(stats.stored_entries, 0);
        assert_balanced(&stats);
    }

    #[test]
    fn a_fast_stream_is_sharded_and_its_sequences_stay_whole() {
        let mut store = store_with(ReceiverConfig {
            shard_streams_desired_rate: 1000,
            ..config()
        });
        let epoch = store.epoch;
        let line = |seq: u64| format!("seq={seq} {}", "p".repeat(100));
        let entries = |from: u64, ts: i64| -> Vec<PushEntry> {
            (from..from + 20)
                .map(|seq| entry(ts + seq as i64, &line(seq)))
                .collect()
        };
        // Second 0: no rate known yet, one stream.
        let outcome = push_at(
            &mut store,
            NOW,
            epoch,
            vec![stream(r#"{job="a"}"#, entries(1, NOW))],
        );
        assert_eq!(outcome.status, 204);
        assert!(outcome.stored.iter().all(|e| &*e.labels == "{job=\"a\"}"));
        // Second 1: about 2 KB/s against 1000 B/s desired: sharded.
        let outcome = push_at(
            &mut store,
            NOW,
            epoch + Duration::from_secs(1),
            vec![stream(r#"{job="a"}"#, entries(21, NOW))],
        );
        assert_eq!(outcome.status, 204);
        let shards: BTreeSet<&str> = outcome.stored.iter().map(|e| &*e.labels).collect();
        assert!(shards.len() > 1, "{shards:?}");
        assert!(
            shards.contains("{__stream_shard__=\"0\", job=\"a\"}"),
            "{shards:?}"
        );
        let stats = store.snapshot();
        assert_eq!(stats.sequences.max_seq, 40);
        assert_eq!(stats.sequences.missing, 0);
        assert!(
            stats.tenants["t"]
                .by_stream
                .contains_key("{__stream_shard__=\"1\", job=\"a\"}")
        );
        assert_eq!(stats.streams, 1 + shards.len() as u64);
    }

    #[test]
    fn dedup_memory_is_bounded() {
        let mut store = store_with(ReceiverConfig {
            max_chunk_age: std::time::Duration::from_secs(2),
            ..config()
        });
        let entries: Vec<_> = (0..100)
            .map(|i| entry(NOW + i * SECOND / 10, "x"))
            .collect();
        push(&mut store, vec![stream(r#"{job="a"}"#, entries)]);
        // A one-second window holds about ten entries.
        assert!(store.dedup_entries <= 11, "{}", store.dedup_entries);

        let mut limits = Limits::from_config(&config());
        limits.dedup_max_entries = 5;
        let mut store = Store::new(limits);
        let entries: Vec<_> = (0..20).map(|i| entry(NOW + i, "x")).collect();
        push(&mut store, vec![stream(r#"{job="a"}"#, entries)]);
        assert_eq!(store.dedup_entries, 5);
    }

    #[test]
    fn reset_zeroes_counters_but_keeps_streams() {
        let mut store = store();
        push(
            &mut store,
            vec![stream(r#"{job="a"}"#, vec![entry(NOW, "seq=3")])],
        );
        store.count_push();
        store.count_response(204);
        store.reset();
        let stats = store.snapshot();
        assert_eq!(stats.accepted_entries, 0);
        assert_eq!(stats.sequences, SequenceStats::default());
        assert_eq!(stats.streams, 1);
        assert_eq!(stats.tenants["t"].streams, 1);
        assert!(stats.tenants["t"].by_stream.is_empty());
        assert!(stats.responses.is_empty());
    }
}
