//! Line encodings shared by the `file` and `console` sinks.
//!
//! - `json`: one object per line: `timestamp` (RFC 3339, nanoseconds, UTC), `line`, `labels`,
//!   `source`, and `metadata` when there is any. A line that is not valid UTF-8 is written with
//!   U+FFFD in place of the invalid bytes.
//! - `text`: the line's bytes as they are, then `\n`.

use std::time::{Duration, UNIX_EPOCH};

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::event::{Labels, LogEvent};

/// How a sink writes each event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    #[default]
    Json,
    Text,
}

struct LabelMap<'a>(&'a Labels);

impl Serialize for LabelMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0.iter() {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

struct MetadataMap<'a>(&'a [(std::sync::Arc<str>, std::sync::Arc<str>)]);

impl Serialize for MetadataMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name.as_ref(), value.as_ref())?;
        }
        map.end()
    }
}

struct Timestamp(i64);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let nanos = u64::try_from(self.0).unwrap_or(0);
        let time = UNIX_EPOCH + Duration::from_nanos(nanos);
        s.collect_str(&humantime::format_rfc3339_nanos(time))
    }
}

#[derive(Serialize)]
struct JsonLine<'a> {
    timestamp: Timestamp,
    line: &'a str,
    labels: LabelMap<'a>,
    source: &'a str,
    #[serde(skip_serializing_if = "is_empty")]
    metadata: MetadataMap<'a>,
}

fn is_empty(m: &MetadataMap<'_>) -> bool {
    m.0.is_empty()
}

/// Appends one encoded event, with its trailing newline, to `out`.
pub fn encode(encoding: Encoding, event: &LogEvent, out: &mut Vec<u8>) {
    match encoding {
        Encoding::Text => out.extend_from_slice(&event.line),
        Encoding::Json => {
            let line = String::from_utf8_lossy(&event.line);
            let record = JsonLine {
                timestamp: Timestamp(event.timestamp_ns),
                line: &line,
                labels: LabelMap(&event.labels),
                source: &event.source,
                metadata: MetadataMap(&event.metadata),
            };
            // Writing to a Vec cannot fail, and every field serializes infallibly.
            if serde_json::to_writer(&mut *out, &record).is_err() {
                out.extend_from_slice(b"{}");
            }
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn json_has_timestamp_line_labels_and_replaces_invalid_utf8() {
        let event = LogEvent {
            timestamp_ns: 1_700_000_000_123_456_789,
            observed_ns: 0,
            line: Bytes::from_static(b"caf\xc3\xa9 \xff \"q\""),
            labels: Labels::new([("job", "app")]),
            metadata: Vec::new(),
            source: "gen".into(),
            file: None,
            replays: 0,
            fields: Default::default(),
        };
        let mut out = Vec::new();
        encode(Encoding::Json, &event, &mut out);
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["timestamp"], "2023-11-14T22:13:20.123456789Z");
        assert_eq!(value["line"], "café \u{fffd} \"q\"");
        assert_eq!(value["labels"]["job"], "app");
        assert_eq!(value["source"], "gen");
        assert!(value.get("metadata").is_none());
        assert_eq!(out.last(), Some(&b'\n'));

        let mut text = Vec::new();
        encode(Encoding::Text, &event, &mut text);
        assert_eq!(text, b"caf\xc3\xa9 \xff \"q\"\n");
    }
}
