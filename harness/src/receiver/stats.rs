//! The receiver's counters as `GET /stats` shows them and [`super::ReceiverHandle::stats`]
//! returns them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::latency::LatencySummary;

/// Everything counted since the receiver started or since the last reset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Push requests received, whatever their answer.
    pub pushes: u64,
    /// Entries stored.
    pub accepted_entries: u64,
    /// Bytes of the lines stored (structured metadata not included).
    pub accepted_bytes: u64,
    /// Entries answered as accepted but not stored again because the same stream already had
    /// the same timestamp and line.
    pub duplicates: u64,
    /// Streams known, all tenants together (never reset).
    pub streams: u64,
    /// Entries refused, by Loki's discard reason (`greater_than_max_sample_age`,
    /// `too_far_behind`, `rate_limited`, ...).
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

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantStats {
    pub accepted_entries: u64,
    pub accepted_bytes: u64,
    pub duplicates: u64,
    pub rejected_entries: u64,
    pub streams: u64,
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
