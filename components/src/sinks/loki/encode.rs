//! Push bodies: protobuf (written straight from the events, raw snappy) or JSON (optionally
//! gzip).

use std::io::Write;

use bytes::Bytes;

use super::config::{JsonCompression, LokiEncoding};
use super::proto::{self, Timestamp};
use super::sink::LokiSink;
use super::streams::Prepared;
use crate::event::LogEvent;

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
            .map(|&(i, _, _)| events[i].line.len())
            .sum::<usize>();
    let mut buf = Vec::with_capacity(estimate);
    let mut bodies: Vec<usize> = Vec::new();
    // The original time of a clamped entry, as structured metadata (empty: not clamped).
    let mut originals: Vec<String> = Vec::new();
    for stream in prepared.streams.iter().filter(|s| !s.entries.is_empty()) {
        bodies.clear();
        originals.clear();
        let mut total = 0;
        for &(i, ts, clamped) in &stream.entries {
            originals.push(if clamped {
                events[i].timestamp_ns.to_string()
            } else {
                String::new()
            });
            let original = originals.last().map_or("", String::as_str);
            let body = proto::direct::entry_body_len(&direct_entry(&events[i], ts, original));
            bodies.push(body);
            total += proto::direct::entry_len(body);
        }
        proto::direct::put_stream_head(&mut buf, &stream.labels_text, total);
        for (k, &(i, ts, _)) in stream.entries.iter().enumerate() {
            let entry = direct_entry(&events[i], ts, &originals[k]);
            proto::direct::put_entry(&mut buf, entry, bodies[k]);
        }
    }
    buf
}

fn direct_entry<'a>(
    event: &'a LogEvent,
    timestamp_ns: i64,
    original: &'a str,
) -> proto::direct::Entry<'a, impl Iterator<Item = (&'a str, &'a str)> + Clone> {
    proto::direct::Entry {
        timestamp: Timestamp::from_nanos(timestamp_ns),
        line: &event.line,
        metadata: event
            .metadata
            .iter()
            .map(|(k, v)| (&**k, &**v))
            .chain((!original.is_empty()).then_some(("original_timestamp", original))),
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
                .map(|&(i, ts, clamped)| {
                    let event = &events[i];
                    let line = String::from_utf8_lossy(&event.line).into_owned();
                    let mut metadata: serde_json::Map<String, serde_json::Value> = event
                        .metadata
                        .iter()
                        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
                        .collect();
                    if clamped {
                        metadata.insert(
                            "original_timestamp".into(),
                            serde_json::Value::String(event.timestamp_ns.to_string()),
                        );
                    }
                    if metadata.is_empty() {
                        serde_json::json!([ts.to_string(), line])
                    } else {
                        serde_json::json!([ts.to_string(), line, metadata])
                    }
                })
                .collect();
            serde_json::json!({"stream": labels, "values": values})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "streams": streams })).unwrap_or_default()
}
