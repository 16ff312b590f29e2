//! The receiver's counters as `GET /stats` shows them and [`super::ReceiverHandle::stats`]
//! returns them.
//!
//! Entries are counted when a push reaches validation (a push refused before that, malformed or
//! by fault injection, counts no entries). Each such entry ends exactly once as stored, as an
//! exact duplicate, or refused for one reason, so per tenant and in total
//! `received_entries = stored_entries + duplicates + rejected_entries`, and what Loki answered as
//! accepted is `accepted_entries = stored_entries + duplicates`. Counts are per push: an entry
//! pushed twice is counted twice (once stored, then once a duplicate, say).
//!
//! A client that counts, answer by answer, the entries it was told were accepted (all of a 2xx
//! push; a 400 push's less the refusals its body counts; nothing of a push it must retry) ends
//! with `accepted_entries - unacknowledged + rejected_unreported`, per tenant or per stream.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::latency::LatencySummary;

/// Everything counted since the receiver started or since the last reset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Push requests received, whatever their answer.
    pub pushes: u64,
    /// Entries of pushes that reached validation.
    #[serde(default)]
    pub received_entries: u64,
    /// Entries Loki would have answered as accepted: stored plus exact duplicates.
    pub accepted_entries: u64,
    /// Line bytes of the accepted entries (structured metadata not included).
    pub accepted_bytes: u64,
    /// Entries stored.
    #[serde(default)]
    pub stored_entries: u64,
    /// Line bytes of the stored entries.
    #[serde(default)]
    pub stored_bytes: u64,
    /// Entries answered as accepted but not stored again because their stream already had the
    /// same timestamp and line.
    pub duplicates: u64,
    /// Line bytes of the duplicates.
    #[serde(default)]
    pub duplicate_bytes: u64,
    /// Entries refused, all reasons together.
    #[serde(default)]
    pub rejected_entries: u64,
    /// Refused entries that a 2xx or 400 answer did not report (earlier streams' ingester
    /// refusals, validation refusals under an ingester answer, entries left out of a listing):
    /// a client that trusts the answer counts them as accepted.
    #[serde(default)]
    pub rejected_unreported: u64,
    /// Accepted entries of pushes answered neither 2xx nor 400 (a 429 or 500 after some streams
    /// were stored): a client is told to retry them, and the retry comes back as duplicates.
    #[serde(default)]
    pub unacknowledged: u64,
    /// Streams known, all tenants together (never reset).
    pub streams: u64,
    /// Entries refused, by Loki's discard reason (`greater_than_max_sample_age`,
    /// `too_far_behind`, `per_stream_rate_limit`, ...).
    pub rejected: BTreeMap<String, u64>,
    /// Push answers by status code.
    pub responses: BTreeMap<String, u64>,
    /// Per tenant.
    pub tenants: BTreeMap<String, TenantStats>,
    /// From `seq=<n>` in stored lines, all streams together.
    pub sequences: SequenceStats,
    /// Creation (`created=<ns>` in the line, else the entry timestamp) to storage, all entries.
    #[serde(default)]
    pub latency: LatencySummary,
}

/// One tenant's counters; the fields mean what the same fields of [`StatsSnapshot`] mean.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantStats {
    #[serde(default)]
    pub received_entries: u64,
    pub accepted_entries: u64,
    pub accepted_bytes: u64,
    #[serde(default)]
    pub stored_entries: u64,
    #[serde(default)]
    pub stored_bytes: u64,
    pub duplicates: u64,
    #[serde(default)]
    pub duplicate_bytes: u64,
    pub rejected_entries: u64,
    #[serde(default)]
    pub rejected: BTreeMap<String, u64>,
    #[serde(default)]
    pub rejected_unreported: u64,
    #[serde(default)]
    pub unacknowledged: u64,
    /// Streams of this tenant (never reset).
    pub streams: u64,
    /// Per stream, named as Loki names it (with `service_name` and, when sharded,
    /// `__stream_shard__`). Refusals of streams that were never created are here too, under the
    /// name their labels give. At most 100000 streams per tenant; the rest are added up under
    /// `(other streams)`.
    #[serde(default)]
    pub by_stream: BTreeMap<String, StreamStats>,
}

/// One stream's counters; the fields mean what the same fields of [`StatsSnapshot`] mean.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStats {
    pub accepted_entries: u64,
    pub stored_entries: u64,
    pub duplicates: u64,
    pub rejected_entries: u64,
    pub rejected: BTreeMap<String, u64>,
    pub rejected_unreported: u64,
    pub unacknowledged: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceStats {
    /// Numbers in `1..=max_seq` of a stream never stored, summed over streams.
    pub missing: u64,
    /// Numbers stored more than once (each extra time counts), summed over streams.
    pub duplicated: u64,
    /// The largest number stored in any stream.
    pub max_seq: u64,
    /// Distinct numbers of at least 1 stored, summed over streams.
    pub seen: u64,
    /// Numbers not tracked because the `--seq-memory-mb` budget was used up.
    pub untracked: u64,
}
