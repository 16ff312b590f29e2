//! Push bodies: protobuf (written straight from the events, raw snappy) or JSON (optionally
//! gzip).

use std::io::Write;

use bytes::Bytes;

use super::config::{JsonCompression, LokiEncoding};
use super::proto::{self, Timestamp};
use super::sink::LokiSink;
use super::streams::{Prepared, SendEntry};
use crate::event::LogEvent;
use crate::prefetch::prefetch_read;

/// How many entries ahead of the one being copied the encoder asks for its line.
const PREFETCH_AHEAD: usize = 8;

impl LokiSink {
    pub(super) fn encode(
        &self,
        events: &[LogEvent],
        prepared: &Prepared,
    ) -> Result<(Bytes, &'static str, Option<&'static str>), String> {
        match self.config.encoding {
            LokiEncoding::Protobuf => {
                let raw = protobuf_body(events, prepared);
                let compressed = snap::raw::Encoder::new()
                    .compress_vec(&raw)
                    .map_err(|e| format!("snappy: {e}"))?;
                Ok((Bytes::from(compressed), "application/x-protobuf", None))
            }
            LokiEncoding::Json => {
                let body = json_body(events, prepared);
                match self.config.compression {
                    JsonCompression::None => Ok((Bytes::from(body), "application/json", None)),
                    JsonCompression::Gzip => {
                        let mut encoder =
                            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                        encoder
                            .write_all(&body)
                            .and_then(|()| encoder.finish())
                            .map(|gz| (Bytes::from(gz), "application/json", Some("gzip")))
                            .map_err(|e| format!("gzip: {e}"))
                    }
                }
            }
        }
    }
}

/// Structured metadata the sink adds to an entry: the label pairs of an entry folded into the
/// overflow stream that the stream leaves out, the original time of a clamped entry, the
/// original length of a truncated line (empty strings: not added).
#[derive(Default)]
struct Added<'a> {
    moved: &'a [(String, String)],
    original_timestamp: String,
    truncated_from: String,
}

impl<'a> Added<'a> {
    fn of(events: &[LogEvent], prepared: &'a Prepared, entry: &SendEntry) -> Self {
        let event = &events[entry.index];
        Self {
            moved: entry
                .moved
                .and_then(|i| prepared.moved.get(i as usize))
                .map_or(&[], Vec::as_slice),
            original_timestamp: if entry.clamped {
                event.timestamp_ns.to_string()
            } else {
                String::new()
            },
            truncated_from: if entry.truncated(events) {
                event.line.len().to_string()
            } else {
                String::new()
            },
        }
    }

    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.moved
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .chain(
                [
                    ("original_timestamp", self.original_timestamp.as_str()),
                    ("truncated_from", self.truncated_from.as_str()),
                ]
                .into_iter()
                .filter(|(_, value)| !value.is_empty()),
            )
    }
}

/// The push request in protobuf, written straight from the events (see [`proto::direct`]).
fn protobuf_body(events: &[LogEvent], prepared: &Prepared) -> Vec<u8> {
    let estimate: usize = prepared
        .streams
        .iter()
        .map(|s| s.labels_text.len() + 8 + s.entries.len() * 24)
        .sum::<usize>()
        + prepared
            .streams
            .iter()
            .flat_map(|s| s.entries.iter())
            .map(|e| e.line_len)
            .sum::<usize>();
    let mut buf = Vec::with_capacity(estimate);
    let mut bodies: Vec<usize> = Vec::new();
    let mut added: Vec<Added> = Vec::new();
    for stream in prepared.streams.iter().filter(|s| !s.entries.is_empty()) {
        bodies.clear();
        added.clear();
        let mut total = 0;
        for entry in &stream.entries {
            added.push(
                if entry.clamped || entry.truncated(events) || entry.moved.is_some() {
                    Added::of(events, prepared, entry)
                } else {
                    Added::default()
                },
            );
            let extra = added.last().map(Added::pairs);
            let body = proto::direct::entry_body_len(&direct_entry(events, entry, extra));
            bodies.push(body);
            total += proto::direct::entry_len(body);
        }
        proto::direct::put_stream_head(&mut buf, &stream.labels_text, total);
        for (k, entry) in stream.entries.iter().enumerate() {
            if let Some(ahead) = stream.entries.get(k + PREFETCH_AHEAD) {
                prefetch_read(ahead.line(events));
            }
            let proto_entry = direct_entry(events, entry, Some(added[k].pairs()));
            proto::direct::put_entry(&mut buf, proto_entry, bodies[k]);
        }
    }
    buf
}

fn direct_entry<'a, A>(
    events: &'a [LogEvent],
    entry: &SendEntry,
    added: Option<A>,
) -> proto::direct::Entry<'a, impl Iterator<Item = (&'a str, &'a str)> + Clone>
where
    A: Iterator<Item = (&'a str, &'a str)> + Clone,
{
    let event = &events[entry.index];
    proto::direct::Entry {
        timestamp: Timestamp::from_nanos(entry.timestamp_ns),
        line: entry.line(events),
        metadata: event
            .metadata
            .iter()
            .map(|(k, v)| (&**k, &**v))
            .chain(added.into_iter().flatten()),
    }
}

fn json_body(events: &[LogEvent], prepared: &Prepared) -> Vec<u8> {
    let streams: Vec<serde_json::Value> = prepared
        .streams
        .iter()
        .filter(|s| !s.entries.is_empty())
        .map(|s| {
            let labels: serde_json::Map<String, serde_json::Value> = s
                .pairs
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            let values: Vec<serde_json::Value> = s
                .entries
                .iter()
                .map(|entry| {
                    let event = &events[entry.index];
                    // JSON carries text only: bytes that are not UTF-8 are replaced.
                    let line = String::from_utf8_lossy(entry.line(events)).into_owned();
                    let mut metadata: serde_json::Map<String, serde_json::Value> = event
                        .metadata
                        .iter()
                        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
                        .collect();
                    let added = Added::of(events, prepared, entry);
                    for (name, value) in added.pairs() {
                        metadata.insert(name.into(), serde_json::Value::String(value.into()));
                    }
                    if metadata.is_empty() {
                        serde_json::json!([entry.timestamp_ns.to_string(), line])
                    } else {
                        serde_json::json!([entry.timestamp_ns.to_string(), line, metadata])
                    }
                })
                .collect();
            serde_json::json!({"stream": labels, "values": values})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "streams": streams })).unwrap_or_default()
}
