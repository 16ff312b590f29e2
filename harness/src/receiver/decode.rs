//! Turns a push body into streams, as Loki's `ParseLokiRequest` does.
//!
//! - `Content-Encoding`: none or `snappy` pass the body through (the protobuf form is always
//!   snappy-compressed); `gzip` and `deflate` (raw DEFLATE, as Go's `compress/flate`) are
//!   unwrapped; anything else is refused with Loki's message.
//! - `Content-Type`: `application/json` (parameters ignored) is the JSON form
//!   `{"streams":[{"stream":{..},"values":[["<ns>","line"],["<ns>","line",{..}]]}]}`; any other
//!   media type is the protobuf form, raw block snappy around a `logproto.PushRequest`. A
//!   missing media type is refused, like Go's `mime.ParseMediaType`.
//! - The decompressed body is bounded by the size limit too (`request body too large`).
//!
//! Guarantees: never panics on input; every refusal is a message for a 400 (or 413) answer.

use std::collections::BTreeMap;
use std::io::Read;

use bytes::Bytes;
use flate2::read::{DeflateDecoder, MultiGzDecoder};
use log_capturer_components::sinks::loki::proto::PushRequest;
use prost::Message;
use serde::Deserialize;

/// One entry as pushed.
#[derive(Clone, Debug, PartialEq)]
pub struct PushEntry {
    pub ts_ns: i64,
    pub line: Bytes,
    pub metadata: Vec<(String, String)>,
}

/// One stream as pushed: its labels still in text form.
#[derive(Clone, Debug, PartialEq)]
pub struct PushStream {
    pub labels: String,
    pub entries: Vec<PushEntry>,
}

/// Why a body was refused.
#[derive(Clone, Debug, PartialEq)]
pub enum DecodeError {
    /// Over the size limit: 413.
    TooLarge(String),
    /// Malformed: 400.
    Invalid(String),
}

/// Loki's 413 text: `request body too large: message size too large than max (N vs M)`.
pub fn too_large_message(size: u64, max: u64) -> String {
    format!("request body too large: message size too large than max ({size} vs {max})")
}

/// The body's form, from `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    Json,
    Protobuf,
}

/// Go's `mime.ParseMediaType`, as far as it decides acceptance here.
fn media_type(content_type: &str) -> Result<Form, String> {
    let base = content_type.split(';').next().unwrap_or("").trim();
    if base.is_empty() {
        return Err("mime: no media type".into());
    }
    let Some((kind, sub)) = base.split_once('/') else {
        return Err("mime: expected slash after first token".into());
    };
    if kind.trim().is_empty() || sub.trim().is_empty() {
        return Err("mime: expected token after slash".into());
    }
    if base.eq_ignore_ascii_case("application/json") {
        Ok(Form::Json)
    } else {
        Ok(Form::Protobuf)
    }
}

fn read_limited(reader: impl Read, max: u64) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    reader
        .take(max.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Invalid(e.to_string()))?;
    if out.len() as u64 > max {
        return Err(DecodeError::TooLarge(too_large_message(
            out.len() as u64,
            max,
        )));
    }
    Ok(out)
}

/// Decodes a push body. `content_type` and `content_encoding` are the header values (empty when
/// absent); `max` bounds the decompressed size.
pub fn decode(
    content_type: &str,
    content_encoding: &str,
    body: Bytes,
    max: u64,
) -> Result<Vec<PushStream>, DecodeError> {
    let body = match content_encoding {
        "" | "snappy" => body,
        "gzip" => Bytes::from(read_limited(MultiGzDecoder::new(body.as_ref()), max)?),
        "deflate" => Bytes::from(read_limited(DeflateDecoder::new(body.as_ref()), max)?),
        other => {
            return Err(DecodeError::Invalid(format!(
                "Content-Encoding {other:?} not supported"
            )));
        }
    };
    match media_type(content_type).map_err(DecodeError::Invalid)? {
        Form::Json => decode_json(&body),
        Form::Protobuf => decode_protobuf(&body, max),
    }
}

fn decode_protobuf(body: &[u8], max: u64) -> Result<Vec<PushStream>, DecodeError> {
    let corrupt = || DecodeError::Invalid("snappy: corrupt input".into());
    let size = snap::raw::decompress_len(body).map_err(|_| corrupt())? as u64;
    if size > max {
        return Err(DecodeError::TooLarge(too_large_message(size, max)));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|_| corrupt())?;
    let request = PushRequest::decode(Bytes::from(raw))
        .map_err(|e| DecodeError::Invalid(format!("proto: {e}")))?;
    Ok(request
        .streams
        .into_iter()
        .map(|stream| PushStream {
            labels: stream.labels,
            entries: stream
                .entries
                .into_iter()
                .map(|entry| PushEntry {
                    ts_ns: entry.timestamp.map_or(0, |t| t.to_nanos()),
                    line: entry.line,
                    metadata: entry
                        .structured_metadata
                        .into_iter()
                        .map(|pair| (pair.name, pair.value))
                        .collect(),
                })
                .collect(),
        })
        .collect())
}

#[derive(Deserialize)]
struct JsonPush {
    #[serde(default)]
    streams: Vec<JsonStream>,
}

#[derive(Deserialize)]
struct JsonStream {
    #[serde(default)]
    stream: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<Vec<serde_json::Value>>,
}

fn decode_json(body: &[u8]) -> Result<Vec<PushStream>, DecodeError> {
    let push: JsonPush = serde_json::from_slice(body)
        .map_err(|e| DecodeError::Invalid(format!("loghttp.PushRequest: {e}")))?;
    let mut streams = Vec::with_capacity(push.streams.len());
    for stream in push.streams {
        let labels = super::labels::format_map(
            stream
                .stream
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        );
        let mut entries = Vec::with_capacity(stream.values.len());
        for value in stream.values {
            entries.push(json_entry(value).map_err(DecodeError::Invalid)?);
        }
        streams.push(PushStream { labels, entries });
    }
    Ok(streams)
}

fn json_entry(value: Vec<serde_json::Value>) -> Result<PushEntry, String> {
    let mut items = value.into_iter();
    let ts_ns = match items.next() {
        Some(serde_json::Value::String(ts)) => ts
            .parse::<i64>()
            .map_err(|e| format!("loghttp.Entry: timestamp {ts:?}: {e}"))?,
        Some(_) => return Err("loghttp.Entry: timestamp must be a string of nanoseconds".into()),
        None => return Err("loghttp.Entry: missing timestamp".into()),
    };
    let line = match items.next() {
        Some(serde_json::Value::String(line)) => Bytes::from(line),
        Some(_) => return Err("loghttp.Entry: line must be a string".into()),
        None => return Err("loghttp.Entry: missing line".into()),
    };
    let metadata = match items.next() {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Object(map)) => {
            let mut pairs = Vec::with_capacity(map.len());
            for (name, value) in map {
                match value {
                    serde_json::Value::String(value) => pairs.push((name, value)),
                    _ => {
                        return Err(format!(
                            "loghttp.Entry: structured metadata {name:?} must be a string"
                        ));
                    }
                }
            }
            pairs
        }
        Some(_) => return Err("loghttp.Entry: structured metadata must be an object".into()),
    };
    Ok(PushEntry {
        ts_ns,
        line,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use log_capturer_components::sinks::loki::proto::{EntryAdapter, StreamAdapter, Timestamp};

    fn protobuf_body() -> Bytes {
        let request = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{job="a"}"#.into(),
                entries: vec![EntryAdapter {
                    timestamp: Some(Timestamp::from_nanos(5)),
                    line: Bytes::from_static(b"hello"),
                    structured_metadata: Vec::new(),
                }],
                hash: 0,
            }],
        };
        let raw = request.encode_to_vec();
        Bytes::from(
            snap::raw::Encoder::new()
                .compress_vec(&raw)
                .unwrap_or_default(),
        )
    }

    #[test]
    fn decodes_protobuf_with_any_non_json_type() {
        for content_type in ["application/x-protobuf", "text/plain"] {
            let streams = decode(content_type, "snappy", protobuf_body(), 1 << 20);
            let Ok(streams) = streams else {
                panic!("{streams:?}");
            };
            assert_eq!(streams[0].labels, r#"{job="a"}"#);
            assert_eq!(streams[0].entries[0].ts_ns, 5);
            assert_eq!(streams[0].entries[0].line, Bytes::from_static(b"hello"));
        }
    }

    #[test]
    fn decodes_json_with_structured_metadata() {
        let body = br#"{"streams":[{"stream":{"job":"a","env":"p"},"values":[["7","one"],["8","two",{"trace_id":"x"}]]}]}"#;
        let streams = decode(
            "application/json; charset=utf-8",
            "",
            Bytes::from_static(body),
            1 << 20,
        );
        let Ok(streams) = streams else {
            panic!("{streams:?}");
        };
        assert_eq!(streams[0].labels, r#"{env="p", job="a"}"#);
        assert_eq!(streams[0].entries[1].ts_ns, 8);
        assert_eq!(
            streams[0].entries[1].metadata,
            vec![("trace_id".to_string(), "x".to_string())]
        );
    }

    #[test]
    fn refusals_use_loki_messages() {
        let invalid = |r: Result<Vec<PushStream>, DecodeError>| match r {
            Err(DecodeError::Invalid(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            invalid(decode("application/json", "br", Bytes::new(), 10)),
            "Content-Encoding \"br\" not supported"
        );
        assert_eq!(
            invalid(decode("", "", protobuf_body(), 1 << 20)),
            "mime: no media type"
        );
        assert_eq!(
            invalid(decode(
                "application/x-protobuf",
                "",
                Bytes::from_static(b"\xff\xff\xff\xff\xff"),
                1 << 20
            )),
            "snappy: corrupt input"
        );
        assert!(matches!(
            decode("application/x-protobuf", "", protobuf_body(), 3),
            Err(DecodeError::TooLarge(m)) if m.starts_with("request body too large: message size too large than max (")
        ));
    }
}
