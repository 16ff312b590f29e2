//! What the dead-letter queue stores: one record per batch of one stream refused for good.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::event::LogEvent;

/// Where a record is: its segment's sequence and its frame's byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordId {
    pub segment: u64,
    pub offset: u64,
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.segment, self.offset)
    }
}

/// One log line of a dead-lettered batch.
///
/// The line is kept byte for byte: as `"line"` when it is valid UTF-8 (readable with `jq`),
/// else as `"line_base64"`, so a replay sends exactly the bytes that were read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "EntryRepr", try_from = "EntryRepr")]
pub struct DlqEntry {
    /// The line's own time, nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// The line as read (not necessarily UTF-8).
    pub line: Bytes,
    /// Loki structured metadata.
    pub metadata: Vec<(String, String)>,
    /// How often the entry was replayed and refused again; at `max_replays` it goes to the
    /// archive instead of the queue.
    pub replays: u8,
}

impl DlqEntry {
    /// The entry for an event.
    pub fn from_event(event: &LogEvent) -> Self {
        Self {
            timestamp_ns: event.timestamp_ns,
            line: event.line.clone(),
            metadata: event
                .metadata
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            replays: event.replays,
        }
    }
}

/// The on-disk form of [`DlqEntry`].
#[derive(Serialize, Deserialize)]
struct EntryRepr {
    timestamp_ns: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    line: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    line_base64: Option<String>,
    #[serde(default)]
    metadata: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "is_zero")]
    replays: u8,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

impl From<DlqEntry> for EntryRepr {
    fn from(entry: DlqEntry) -> Self {
        let (line, line_base64) = match std::str::from_utf8(&entry.line) {
            Ok(text) => (Some(text.to_string()), None),
            Err(_) => {
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD.encode(&entry.line);
                (None, Some(encoded))
            }
        };
        Self {
            timestamp_ns: entry.timestamp_ns,
            line,
            line_base64,
            metadata: entry.metadata,
            replays: entry.replays,
        }
    }
}

impl TryFrom<EntryRepr> for DlqEntry {
    type Error = String;

    fn try_from(repr: EntryRepr) -> Result<Self, String> {
        let line = match (repr.line, repr.line_base64) {
            (Some(text), None) => Bytes::from(text),
            (None, Some(encoded)) => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.as_bytes())
                    .map(Bytes::from)
                    .map_err(|error| format!("line_base64 is not base64: {error}"))?
            }
            (None, None) => Bytes::new(),
            (Some(_), Some(_)) => return Err("an entry has both line and line_base64".into()),
        };
        Ok(Self {
            timestamp_ns: repr.timestamp_ns,
            line,
            metadata: repr.metadata,
            replays: repr.replays,
        })
    }
}

/// One undeliverable batch of one stream, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DlqRecord {
    pub sink: String,
    pub tenant: Option<String>,
    /// The stream labels (the events' own; the sink adds its `labels` again on replay).
    pub labels: Vec<(String, String)>,
    /// The source that read the lines and the file they came from: replayed events carry them
    /// again, so label templates (`{{ source }}`, `{{ file }}`) give the same stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Why it was dead-lettered, e.g. `timestamp_too_old`, `http_400`, `retries_exhausted`.
    pub reason: String,
    /// The destination's message, as it wrote it.
    pub detail: String,
    /// When the record was written (RFC 3339), see [`super::now_rfc3339`].
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_their_bytes_utf8_or_not() {
        for line in [&b"plain text"[..], b"bad \xff\xfe bytes", b""] {
            let entry = DlqEntry {
                timestamp_ns: 7,
                line: Bytes::copy_from_slice(line),
                metadata: vec![("trace_id".into(), "abc".into())],
                replays: 2,
            };
            let json = serde_json::to_string(&entry).unwrap();
            let back: DlqEntry = serde_json::from_str(&json).unwrap();
            assert_eq!(back, entry, "{json}");
        }
        let readable = serde_json::to_string(&DlqEntry {
            timestamp_ns: 1,
            line: Bytes::from_static(b"GET /"),
            metadata: Vec::new(),
            replays: 0,
        })
        .unwrap();
        assert_eq!(
            readable,
            r#"{"timestamp_ns":1,"line":"GET /","metadata":[]}"#
        );
    }

    #[test]
    fn records_of_older_versions_still_read() {
        let old = r#"{"sink":"loki","tenant":null,"labels":[["job","app"]],"reason":"http_400","detail":"x","written_at":"2026-05-01T10:00:00.123Z","entries":[{"timestamp_ns":1,"line":"GET /","metadata":[]}]}"#;
        let record: DlqRecord = serde_json::from_str(old).unwrap();
        assert_eq!(record.entries[0].line, Bytes::from_static(b"GET /"));
        assert_eq!(record.entries[0].replays, 0);
        assert_eq!(record.source, None);
    }
}
