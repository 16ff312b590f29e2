//! What the dead-letter queue stores: one record per batch of one stream refused for good.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::event::LogEvent;

/// One log line of a dead-lettered batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DlqEntry {
    /// The line's own time, nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// The line; bytes that are not UTF-8 are replaced with U+FFFD.
    pub line: String,
    /// Loki structured metadata.
    #[serde(default)]
    pub metadata: Vec<(String, String)>,
}

impl DlqEntry {
    /// The entry for an event (its line stored lossily).
    pub fn from_event(event: &LogEvent) -> Self {
        Self {
            timestamp_ns: event.timestamp_ns,
            line: String::from_utf8_lossy(&event.line).into_owned(),
            metadata: event
                .metadata
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        }
    }
}

/// One undeliverable batch of one stream, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DlqRecord {
    pub sink: String,
    pub tenant: Option<String>,
    /// The stream labels.
    pub labels: Vec<(String, String)>,
    /// Why it was dead-lettered, e.g. `timestamp_too_old`, `http_400`, `retries_exhausted`.
    pub reason: String,
    /// The destination's message.
    pub detail: String,
    /// When the record was written (RFC 3339), see [`now_rfc3339`].
    pub written_at: String,
    pub entries: Vec<DlqEntry>,
}

/// Just enough of a payload to rebuild the totals, without keeping the lines.
#[derive(Deserialize)]
pub(super) struct RecordSummary {
    #[serde(deserialize_with = "count_seq")]
    pub(super) entries: u64,
}

#[derive(Deserialize)]
pub(super) struct WrittenAt {
    pub(super) written_at: String,
}

/// Counts the elements of a JSON array without keeping them.
pub(super) fn count_seq<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<u64, D::Error> {
    struct Count;
    impl<'de> serde::de::Visitor<'de> for Count {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
            let mut count = 0;
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                count += 1;
            }
            Ok(count)
        }
    }
    deserializer.deserialize_seq(Count)
}
