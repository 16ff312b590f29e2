//! What Loki's distributor and ingester decide about a parsed push, and what is kept of it.
//!
//! The steps and their order are Loki 3.5's (`Distributor.Push`, `instance.Push`,
//! `stream.Push`), with a single ingester and replication factor 1:
//! 1. Per stream, label limits (count, name and value length, duplicate names); per entry, too
//!    old, too new, line too long, structured metadata too large or too many. Refused entries are
//!    dropped and their messages collected; the others go on.
//! 2. Nothing valid left: the collected messages (400), or 204 when there were none.
//! 3. Blocked ingestion (the 260 injection) and the tenant's rate limit (429) refuse the whole
//!    push; nothing is stored.
//! 4. Per stream, in order: a new stream past the tenant's stream limit is refused (429); each
//!    entry that repeats the stream's last line is skipped, one older than the stream's newest
//!    entry minus the out-of-order window is refused ("too far behind"), the rest are stored.
//! 5. The answer: the last stream's ingester error if it had one (Loki reports only the last
//!    stream's), else the collected validation messages (400), else 204.
//!
//! Guarantees:
//! - Valid entries of a partly refused push are stored, as in Loki.
//! - An entry whose stream already holds the same timestamp and line is answered as accepted,
//!   counted in `duplicates`, and not stored or recorded again. The memory for this is bounded
//!   by `dedup_max_entries` (oldest timestamps forgotten first) and by the out-of-order window
//!   (older entries are refused anyway).
//! - Counters, sequences and records follow exactly the entries stored.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_64;

use super::config::ReceiverConfig;
use super::decode::PushEntry;
use super::gofmt::{go_time_string, rfc3339};
use super::labels::LabelSet;
use super::latency::{LatencyRecorder, SecondSample};
use super::ratelimit::TokenBucket;
use super::seq::{BLOCK_BYTES, SeqBudget, SeqTracker, find_seq};
use super::stats::{SequenceStats, StatsSnapshot, TenantStats};

/// Loki's discard reasons (`validation.*`), used as keys of `rejected`.
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
    pub const STREAM_LIMIT: &str = "stream_limit";
    pub const TOO_FAR_BEHIND: &str = "too_far_behind";
}

/// Entries remembered for exact-duplicate detection, all streams together.
pub const DEDUP_MAX_ENTRIES: usize = 2_000_000;

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

impl Outcome {
    fn answer(status: u16, body: String) -> Self {
        Self {
            status,
            body,
            stored: Vec::new(),
        }
    }
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

/// Loki's `util.GroupedErrors`: one part per distinct message, joined by `; `, each prefixed
/// with `N errors like: ` unless it is the only message and occurred once. (Loki's order is
/// that of a Go map; here it is first occurrence.)
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

    fn message(&self) -> Option<String> {
        if self.messages.is_empty() {
            return None;
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

/// The last line a stream stored: (timestamp, hash, length).
type LastLine = (i64, u64, usize);

#[derive(Debug, Default)]
struct StreamState {
    last: Option<LastLine>,
    highest_ts: Option<i64>,
    /// (timestamp, line hash) of entries within the out-of-order window.
    seen: BTreeSet<(i64, u64)>,
    seq: SeqTracker,
}

#[derive(Debug)]
struct Tenant {
    streams: HashMap<String, StreamState>,
    limiter: TokenBucket,
    counters: TenantStats,
}

#[derive(Debug, Default)]
struct Totals {
    pushes: u64,
    accepted_entries: u64,
    accepted_bytes: u64,
    duplicates: u64,
    rejected: BTreeMap<&'static str, u64>,
    responses: BTreeMap<u16, u64>,
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
}

/// Bytes of an entry as Loki's limits count them: line plus structured metadata.
fn entry_size(entry: &PushEntry) -> u64 {
    let metadata: usize = entry.metadata.iter().map(|(n, v)| n.len() + v.len()).sum();
    (entry.line.len() + metadata) as u64
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
        }
    }

    pub fn count_push(&mut self) {
        self.totals.pushes += 1;
    }

    pub fn count_response(&mut self, status: u16) {
        *self.totals.responses.entry(status).or_default() += 1;
    }

    fn reject(&mut self, tenant: &str, reason: &'static str, entries: u64) {
        if entries == 0 {
            return;
        }
        *self.totals.rejected.entry(reason).or_default() += entries;
        if let Some(t) = self.tenants.get_mut(tenant) {
            t.counters.rejected_entries += entries;
        }
    }

    fn tenant(&mut self, name: &str) -> &mut Tenant {
        let limits = &self.limits;
        self.tenants
            .entry(name.to_string())
            .or_insert_with(|| Tenant {
                streams: HashMap::new(),
                limiter: TokenBucket::new(limits.rate_bytes, limits.burst_bytes),
                counters: TenantStats::default(),
            })
    }

    /// Label checks of `ValidateLabels`: the reason and message of the first failure.
    fn validate_labels(&self, stream: &ParsedStream) -> Result<(), (&'static str, String)> {
        let limits = &self.limits;
        let labels = &stream.labels;
        let key = &stream.key;
        if labels.is_empty() {
            return Err((
                reason::MISSING_LABELS,
                "error at least one label pair is required per stream".into(),
            ));
        }
        let count = labels.len() - usize::from(labels.has("service_name"));
        if count > limits.max_label_names {
            return Err((
                reason::MAX_LABEL_NAMES,
                format!(
                    "entry for stream '{key}' has {count} label names; limit {}",
                    limits.max_label_names
                ),
            ));
        }
        let mut previous = "";
        for (name, value) in labels.iter() {
            if name.len() > limits.max_label_name_length {
                return Err((
                    reason::LABEL_NAME_TOO_LONG,
                    format!("stream '{key}' has label name too long: '{name}'"),
                ));
            }
            if value.len() > limits.max_label_value_length {
                return Err((
                    reason::LABEL_VALUE_TOO_LONG,
                    format!("stream '{key}' has label value too long: '{value}'"),
                ));
            }
            if name == previous {
                return Err((
                    reason::DUPLICATE_LABEL_NAMES,
                    format!("stream '{key}' has duplicate label name: '{name}'"),
                ));
            }
            previous = name;
        }
        Ok(())
    }

    /// Entry checks of `ValidateEntry`.
    fn validate_entry(
        &self,
        key: &str,
        entry: &PushEntry,
        now_ns: i64,
    ) -> Result<(), (&'static str, String)> {
        let limits = &self.limits;
        let oldest = now_ns.saturating_sub(limits.max_age_ns);
        if limits.reject_old_samples && entry.ts_ns < oldest {
            return Err((
                reason::TOO_OLD,
                format!(
                    "entry for stream '{key}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                    rfc3339(entry.ts_ns),
                    rfc3339(oldest)
                ),
            ));
        }
        if entry.ts_ns > now_ns.saturating_add(limits.grace_ns) {
            return Err((
                reason::TOO_NEW,
                format!(
                    "entry for stream '{key}' has timestamp too new: {}",
                    rfc3339(entry.ts_ns)
                ),
            ));
        }
        let line_len = entry.line.len() as u64;
        if limits.max_line_size != 0 && line_len > limits.max_line_size {
            return Err((
                reason::LINE_TOO_LONG,
                format!(
                    "Max entry size '{}' bytes exceeded for stream '{key}' while adding an entry with length '{line_len}' bytes",
                    limits.max_line_size
                ),
            ));
        }
        if !entry.metadata.is_empty() {
            let size: usize = entry.metadata.iter().map(|(n, v)| n.len() + v.len()).sum();
            if limits.max_metadata_size != 0 && size as u64 > limits.max_metadata_size {
                return Err((
                    reason::METADATA_TOO_LARGE,
                    format!(
                        "stream '{key}' has structured metadata too large: '{size}' bytes, limit: '{}' bytes. Please see `limits_config.max_structured_metadata_size` or contact your Loki administrator to increase it.",
                        limits.max_metadata_size
                    ),
                ));
            }
            let count = entry.metadata.len();
            if limits.max_metadata_entries != 0 && count > limits.max_metadata_entries {
                return Err((
                    reason::METADATA_TOO_MANY,
                    format!(
                        "stream '{key}' has too many structured metadata labels: '{count}', limit: '{}'. Please see `limits_config.max_structured_metadata_entries_count` or contact your Loki administrator to increase it.",
                        limits.max_metadata_entries
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Runs a push through validation, limits and storage. `now_ns` is the wall clock in
    /// nanoseconds since the epoch, `now` the same moment for the rate limiter.
    pub fn push(
        &mut self,
        tenant: &str,
        streams: Vec<ParsedStream>,
        now_ns: i64,
        now: Instant,
        injection: Injection,
        keep_stored: bool,
    ) -> Outcome {
        self.tenant(tenant);
        // 1. Distributor validation.
        let mut errors = GroupedErrors::default();
        let mut valid = Vec::with_capacity(streams.len());
        let mut valid_bytes = 0u64;
        let mut valid_count = 0u64;
        for mut stream in streams {
            if stream.entries.is_empty() {
                continue;
            }
            if let Err((why, message)) = self.validate_labels(&stream) {
                errors.add(message);
                self.reject(tenant, why, stream.entries.len() as u64);
                continue;
            }
            let entries = std::mem::take(&mut stream.entries);
            let mut kept = Vec::with_capacity(entries.len());
            for entry in entries {
                match self.validate_entry(&stream.key, &entry, now_ns) {
                    Ok(()) => {
                        valid_bytes += entry_size(&entry);
                        valid_count += 1;
                        kept.push(entry);
                    }
                    Err((why, message)) => {
                        errors.add(message);
                        self.reject(tenant, why, 1);
                    }
                }
            }
            if !kept.is_empty() {
                stream.entries = kept;
                valid.push(stream);
            }
        }
        let validation_error = errors.message();
        // 2. Nothing left.
        if valid.is_empty() {
            return match validation_error {
                Some(message) => Outcome::answer(400, message),
                None => Outcome::answer(204, String::new()),
            };
        }
        // 3. Whole-push refusals.
        if injection == Injection::Blocked {
            self.reject(tenant, reason::BLOCKED, valid_count);
            return Outcome::answer(
                260,
                format!(
                    "ingestion blocked for user {tenant} until '{}' with status code '260'",
                    rfc3339(now_ns)
                ),
            );
        }
        let rate_bytes = self.limits.rate_bytes;
        let allowed = injection != Injection::RateLimited
            && self.tenant(tenant).limiter.allow_n(now, valid_bytes as f64);
        if !allowed {
            self.reject(tenant, reason::RATE_LIMITED, valid_count);
            return Outcome::answer(
                429,
                format!(
                    "Ingestion rate limit exceeded for user {tenant} (limit: {} bytes/sec) while attempting to ingest '{valid_count}' lines totaling '{valid_bytes}' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased",
                    rate_bytes as i64
                ),
            );
        }
        // 4. Ingester.
        let mut stored = Vec::new();
        let mut append_error = None;
        for stream in valid {
            append_error = self.ingest(tenant, stream, keep_stored, &mut stored, now_ns, now);
        }
        // 5. Answer.
        let (status, body) = match (append_error, validation_error) {
            (Some(error), _) => error,
            (None, Some(message)) => (400, message),
            (None, None) => (204, String::new()),
        };
        Outcome {
            status,
            body,
            stored,
        }
    }

    /// `instance.Push` and `stream.Push` for one stream: the ingester error, if any.
    fn ingest(
        &mut self,
        tenant_name: &str,
        stream: ParsedStream,
        keep_stored: bool,
        stored: &mut Vec<StoredEntry>,
        now_ns: i64,
        now: Instant,
    ) -> Option<(u16, String)> {
        let Limits {
            window_ns,
            max_streams,
            max_returned_errors,
            dedup_max_entries,
            ..
        } = self.limits;
        let total = stream.entries.len();
        let tenant = self.tenants.get_mut(tenant_name)?;
        if !tenant.streams.contains_key(&stream.key) {
            if max_streams > 0 && tenant.streams.len() >= max_streams {
                self.reject(tenant_name, reason::STREAM_LIMIT, total as u64);
                return Some((
                    429,
                    format!(
                        "Maximum active stream limit exceeded when trying to create stream {}, reduce the number of active streams (reduce labels or reduce label values), or contact your Loki administrator to see if the limit can be increased, user: '{tenant_name}'",
                        stream.key
                    ),
                ));
            }
            tenant
                .streams
                .insert(stream.key.clone(), StreamState::default());
            tenant.counters.streams += 1;
        }
        let state = tenant.streams.get_mut(&stream.key)?;
        let labels: Arc<str> = Arc::from(stream.key.as_str());
        let mut failed: Vec<(i64, String)> = Vec::new();
        let mut dedup_added = 0usize;
        for entry in stream.entries {
            let hash = xxh3_64(&entry.line);
            let this = (entry.ts_ns, hash, entry.line.len());
            if state.last == Some(this) {
                self.totals.duplicates += 1;
                tenant.counters.duplicates += 1;
                continue;
            }
            if let Some(highest) = state.highest_ts {
                let cutoff = highest.saturating_sub(window_ns);
                if cutoff > entry.ts_ns {
                    failed.push((
                        entry.ts_ns,
                        format!(
                            "entry too far behind, entry timestamp is: {}, oldest acceptable timestamp is: {}",
                            rfc3339(entry.ts_ns),
                            rfc3339(cutoff)
                        ),
                    ));
                    continue;
                }
            }
            state.last = Some(this);
            state.highest_ts = Some(state.highest_ts.map_or(entry.ts_ns, |h| h.max(entry.ts_ns)));
            if !state.seen.insert((entry.ts_ns, hash)) {
                self.totals.duplicates += 1;
                tenant.counters.duplicates += 1;
                continue;
            }
            dedup_added += 1;
            let bytes = entry.line.len() as u64;
            self.totals.accepted_entries += 1;
            self.totals.accepted_bytes += bytes;
            tenant.counters.accepted_entries += 1;
            tenant.counters.accepted_bytes += bytes;
            if let Some(seq) = find_seq(&entry.line) {
                state.seq.record(seq, &mut self.seq_budget);
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
        // Forget what the window has passed, then the oldest past the memory bound.
        let before = state.seen.len() - dedup_added;
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

        if failed.is_empty() {
            return None;
        }
        let rejected = failed.len() as u64;
        let mut body = String::new();
        let listed = if max_returned_errors == 0 {
            usize::MAX
        } else {
            max_returned_errors
        };
        for (ts, message) in failed.iter().take(listed) {
            body.push_str(&format!(
                "entry with timestamp {} ignored, reason: '{message}',\n",
                go_time_string(*ts)
            ));
        }
        body.push_str(&format!(
            "user '{tenant_name}', total ignored: {} out of {total} for stream: {}",
            failed.len(),
            stream.key
        ));
        self.reject(tenant_name, reason::TOO_FAR_BEHIND, rejected);
        Some((400, body))
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut sequences = SequenceStats::default();
        let mut streams = 0u64;
        let mut tenants = BTreeMap::new();
        for (name, tenant) in &self.tenants {
            streams += tenant.streams.len() as u64;
            for state in tenant.streams.values() {
                let seq = &state.seq;
                sequences.missing += seq.missing();
                sequences.duplicated += seq.duplicated;
                sequences.max_seq = sequences.max_seq.max(seq.max_seq);
                sequences.seen += seq.seen();
                sequences.untracked += seq.untracked;
            }
            tenants.insert(name.clone(), tenant.counters.clone());
        }
        StatsSnapshot {
            pushes: self.totals.pushes,
            accepted_entries: self.totals.accepted_entries,
            accepted_bytes: self.totals.accepted_bytes,
            duplicates: self.totals.duplicates,
            streams,
            rejected: self
                .totals
                .rejected
                .iter()
                .map(|(k, v)| ((*k).to_string(), *v))
                .collect(),
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
    /// duplicate state, and the rate limiters are kept (Loki would keep them too).
    pub fn reset(&mut self) {
        self.totals = Totals::default();
        for tenant in self.tenants.values_mut() {
            let streams = tenant.counters.streams;
            tenant.counters = TenantStats {
                streams,
                ..TenantStats::default()
            };
            for state in tenant.streams.values_mut() {
                state.seq = SeqTracker::default();
            }
        }
        self.seq_budget.used_blocks = 0;
        self.latency = LatencyRecorder::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver::labels;

    const NOW: i64 = 1_714_557_600_000_000_000; // 2024-05-01T10:00:00Z
    const SECOND: i64 = 1_000_000_000;

    fn store() -> Store {
        Store::new(Limits::from_config(&ReceiverConfig::for_tests()))
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

    fn push(store: &mut Store, streams: Vec<ParsedStream>) -> Outcome {
        store.push("t", streams, NOW, Instant::now(), Injection::None, true)
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
        let old = NOW - 8 * 24 * 3600 * SECOND;
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
        assert_eq!(stats.accepted_entries, 2);
        assert_eq!(stats.rejected.get(reason::TOO_OLD), Some(&1));
    }

    #[test]
    fn grouped_errors_count_repeats() {
        let mut store = store();
        let new = NOW + 3600 * SECOND;
        let outcome = push(
            &mut store,
            vec![stream(
                r#"{job="a"}"#,
                vec![
                    entry(new, "a"),
                    entry(new, "b"),
                    entry(NOW, &"x".repeat(300_000)),
                ],
            )],
        );
        assert_eq!(outcome.status, 400);
        assert_eq!(
            outcome.body,
            "2 errors like: entry for stream '{job=\"a\"}' has timestamp too new: 2024-05-01T11:00:00Z; \
             1 errors like: Max entry size '256000' bytes exceeded for stream '{job=\"a\"}' while \
             adding an entry with length '300000' bytes"
        );
        assert!(outcome.stored.is_empty());
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
        // Another stream is not affected.
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
        assert_eq!(store.snapshot().accepted_entries, 2);
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
        assert_eq!(
            store.snapshot().rejected.get(reason::TOO_FAR_BEHIND),
            Some(&1)
        );
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
    fn duplicates_are_not_stored_twice() {
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
        assert_eq!((stats.accepted_entries, stats.duplicates), (2, 2));
        assert_eq!(stats.sequences.duplicated, 0);
        // The same line at another timestamp is a new entry (and a duplicated sequence number).
        push(
            &mut store,
            vec![stream(r#"{job="a"}"#, vec![entry(NOW + 5, "one seq=1")])],
        );
        let stats = store.snapshot();
        assert_eq!((stats.accepted_entries, stats.sequences.duplicated), (3, 1));
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
        let mut config = ReceiverConfig::for_tests();
        config.max_streams_per_tenant = 1;
        config.ingestion_rate_mb = 0.0;
        config.ingestion_burst_size_mb = 100.0 / (1u64 << 20) as f64;
        let mut store = Store::new(Limits::from_config(&config));
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
        assert!(outcome.body.starts_with(
            "Maximum active stream limit exceeded when trying to create stream {job=\"b\"}"
        ));
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
            "Ingestion rate limit exceeded for user t (limit: 0 bytes/sec) while attempting to ingest \
             '1' lines totaling '200' bytes, reduce log volume or contact your Loki administrator to see \
             if the limit can be increased"
        );
    }

    #[test]
    fn blocked_ingestion_stores_nothing() {
        let mut store = store();
        let outcome = store.push(
            "t",
            vec![stream(r#"{job="a"}"#, vec![entry(NOW, "x")])],
            NOW,
            Instant::now(),
            Injection::Blocked,
            true,
        );
        assert_eq!(outcome.status, 260);
        assert_eq!(
            outcome.body,
            "ingestion blocked for user t until '2024-05-01T10:00:00Z' with status code '260'"
        );
        assert_eq!(store.snapshot().accepted_entries, 0);
    }

    #[test]
    fn dedup_memory_is_bounded() {
        let mut config = ReceiverConfig::for_tests();
        config.max_chunk_age = std::time::Duration::from_secs(2);
        let mut store = Store::new(Limits::from_config(&config));
        let entries: Vec<_> = (0..100)
            .map(|i| entry(NOW + i * SECOND / 10, "x"))
            .collect();
        push(&mut store, vec![stream(r#"{job="a"}"#, entries)]);
        // A one-second window holds about ten entries.
        assert!(store.dedup_entries <= 11, "{}", store.dedup_entries);

        let mut store = store_with_dedup_max(5);
        let entries: Vec<_> = (0..20).map(|i| entry(NOW + i, "x")).collect();
        push(&mut store, vec![stream(r#"{job="a"}"#, entries)]);
        assert_eq!(store.dedup_entries, 5);
    }

    fn store_with_dedup_max(max: usize) -> Store {
        let mut limits = Limits::from_config(&ReceiverConfig::for_tests());
        limits.dedup_max_entries = max;
        Store::new(limits)
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
        assert!(stats.responses.is_empty());
    }
}
