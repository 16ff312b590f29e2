//! Turns a push body into streams, as Loki 3.7's `parsePushRequestBody` does, with its size
//! limits and their odd edges.
//!
//! - `Content-Encoding`: none or `snappy` pass the body through (the protobuf form is always
//!   snappy-compressed); `gzip` and `deflate` (raw DEFLATE, as Go's `compress/flate`) are
//!   unwrapped; anything else is refused with Loki's message.
//! - `Content-Type`: `application/json` (parameters ignored) is the JSON form, decoded by
//!   [`super::jsonpush`] with Loki's leniency and error texts; any other media type is the
//!   protobuf form, raw block snappy around a `logproto.PushRequest`. A missing media type is
//!   refused, like Go's `mime.ParseMediaType`.
//! - Sizes (`max_recv_msg_size`, `max_decompressed_size`): the body is read up to the first limit
//!   plus one byte. A protobuf body over it is a 413 (by its `Content-Length` before anything is
//!   read); a JSON body over it is cut there and fails to decode: a 400 with the decoder's text.
//!   A protobuf body that decompresses past the second limit is a 400, as in Loki (which does not
//!   map that error to 413); a gzip/deflate JSON body is cut at the second limit.
//!
//! Guarantees: never panics on input; every refusal is a status (400 or 413) and Loki's text.

use std::io::Read;

use bytes::Bytes;
use flate2::read::{DeflateDecoder, MultiGzDecoder};
use log_capturer_components::sinks::loki::proto::PushRequest;
use prost::Message;

use super::jsonpush::{self, Ending};
use super::messages;

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
    /// 413.
    TooLarge(String),
    /// 400.
    Invalid(String),
}

/// Loki's `distributor.max_recv_msg_size` and `max_decompressed_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeLimits {
    pub max_body: u64,
    pub max_decompressed: u64,
}

/// Loki's limit on one stream's label text (`maxStreamLabelsSize`).
const MAX_STREAM_LABELS_SIZE: usize = 1 << 24;

/// The body's form, from `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Json,
    Protobuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
    Deflate,
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

fn encoding(content_encoding: &str) -> Result<Encoding, String> {
    match content_encoding {
        "" | "snappy" => Ok(Encoding::Identity),
        "gzip" => Ok(Encoding::Gzip),
        "deflate" => Ok(Encoding::Deflate),
        other => Err(messages::unsupported_encoding(other)),
    }
}

/// What can be decided before the body is read: an unsupported encoding or media type (400), or
/// a protobuf body whose `Content-Length` is over the limit (413). `Ok` gives the form.
pub fn before_reading(
    content_type: &str,
    content_encoding: &str,
    declared_length: Option<u64>,
    limits: SizeLimits,
) -> Result<Form, DecodeError> {
    encoding(content_encoding).map_err(DecodeError::Invalid)?;
    let form = media_type(content_type).map_err(DecodeError::Invalid)?;
    if form == Form::Protobuf
        && let Some(length) = declared_length
        && length > limits.max_body
    {
        return Err(DecodeError::TooLarge(messages::body_too_large(
            length,
            limits.max_body,
        )));
    }
    Ok(form)
}

/// A decompressor's output, cut after `limit` bytes plus one, and how its input ended; `Err` for
/// a gzip header Go's `gzip.NewReader` refuses at once (before any decoding).
fn inflate(encoding: Encoding, input: &[u8], limit: u64) -> Result<(Vec<u8>, Ending), String> {
    if encoding == Encoding::Gzip {
        if input.is_empty() {
            return Err("EOF".into());
        }
        if input.len() < 10 {
            return Err("unexpected EOF".into());
        }
        if input[..3] != [0x1f, 0x8b, 8] {
            return Err("gzip: invalid header".into());
        }
    }
    let mut out = Vec::new();
    let take = limit.saturating_add(1);
    let result = match encoding {
        Encoding::Gzip => MultiGzDecoder::new(input).take(take).read_to_end(&mut out),
        Encoding::Deflate => DeflateDecoder::new(input).take(take).read_to_end(&mut out),
        Encoding::Identity => {
            out.extend_from_slice(input);
            Ok(out.len())
        }
    };
    let ending = match result {
        Ok(_) => Ending::Eof,
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => {
            Ending::Error("unexpected EOF".into())
        }
        Err(_) => Ending::Error(format!(
            "flate: corrupt input before offset {}",
            input.len()
        )),
    };
    Ok((out, ending))
}

/// Decodes a push body. `content_type` and `content_encoding` are the header values (empty when
/// absent); `body` is what was read of it, at most `limits.max_body + 1` bytes (anything past
/// that is ignored, as Loki's `LimitReader` does); `declared_length` is its `Content-Length`.
pub fn decode(
    content_type: &str,
    content_encoding: &str,
    body: Bytes,
    declared_length: Option<u64>,
    limits: SizeLimits,
) -> Result<Vec<PushStream>, DecodeError> {
    let form = before_reading(content_type, content_encoding, declared_length, limits)?;
    let encoding = encoding(content_encoding).map_err(DecodeError::Invalid)?;
    let cut = usize::try_from(limits.max_body.saturating_add(1)).unwrap_or(usize::MAX);
    let body = body.slice(..body.len().min(cut));
    let streams = match form {
        Form::Json => decode_json(encoding, &body, limits)?,
        Form::Protobuf => decode_protobuf(encoding, &body, limits)?,
    };
    if let Some(stream) = streams
        .iter()
        .find(|s| s.labels.len() > MAX_STREAM_LABELS_SIZE)
    {
        return Err(DecodeError::TooLarge(messages::labels_too_large(
            stream.labels.len(),
            MAX_STREAM_LABELS_SIZE,
        )));
    }
    Ok(streams)
}

fn decode_json(
    encoding: Encoding,
    body: &Bytes,
    limits: SizeLimits,
) -> Result<Vec<PushStream>, DecodeError> {
    let (text, ending) = match encoding {
        Encoding::Identity => (body.to_vec(), Ending::Eof),
        _ => {
            let (mut out, ending) =
                inflate(encoding, body, limits.max_decompressed).map_err(DecodeError::Invalid)?;
            let cut =
                usize::try_from(limits.max_decompressed.saturating_add(1)).unwrap_or(usize::MAX);
            if out.len() > cut {
                out.truncate(cut);
            }
            (out, ending)
        }
    };
    let decoded = jsonpush::decode(&text, ending).map_err(DecodeError::Invalid)?;
    // What Loki's size reader counted: for a plain body, the decoder's reads; for a compressed
    // one, the compressed bytes read.
    let read = match encoding {
        Encoding::Identity => decoded.bytes_read as u64,
        _ => body.len() as u64,
    };
    if read > limits.max_body {
        return Err(DecodeError::Invalid(messages::compressed_too_large(
            read,
            limits.max_body,
        )));
    }
    Ok(decoded.streams)
}

fn decode_protobuf(
    encoding: Encoding,
    body: &Bytes,
    limits: SizeLimits,
) -> Result<Vec<PushStream>, DecodeError> {
    let snappy = match encoding {
        Encoding::Identity => body.clone(),
        _ => {
            let (out, ending) =
                inflate(encoding, body, limits.max_decompressed).map_err(DecodeError::Invalid)?;
            if let Ending::Error(message) = ending {
                return Err(DecodeError::Invalid(message));
            }
            Bytes::from(out)
        }
    };
    // `decompressFromReader` reads the snappy bytes through its own `LimitReader`.
    if snappy.len() as u64 > limits.max_body {
        let read = (snappy.len() as u64).min(limits.max_body.saturating_add(1));
        return Err(DecodeError::TooLarge(messages::body_too_large(
            read,
            limits.max_body,
        )));
    }
    let corrupt = || DecodeError::Invalid("snappy: corrupt input".into());
    let size = snap::raw::decompress_len(&snappy).map_err(|_| corrupt())? as u64;
    if size > limits.max_decompressed {
        return Err(DecodeError::Invalid(messages::decompressed_too_large(
            size,
            limits.max_decompressed,
        )));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&snappy)
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

#[cfg(test)]
mod tests {
    use super::*;
    use log_capturer_components::sinks::loki::proto::{EntryAdapter, StreamAdapter, Timestamp};
    use std::io::Write;

    fn limits(max_body: u64, max_decompressed: u64) -> SizeLimits {
        SizeLimits {
            max_body,
            max_decompressed,
        }
    }

    fn protobuf_body(line: &str) -> Bytes {
        let request = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{job="a"}"#.into(),
                entries: vec![EntryAdapter {
                    timestamp: Some(Timestamp::from_nanos(5)),
                    line: Bytes::from(line.to_string()),
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

    fn gzip(data: &[u8]) -> Bytes {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = encoder.write_all(data);
        Bytes::from(encoder.finish().unwrap_or_default())
    }

    fn json_body(line: &str) -> String {
        format!(r#"{{"streams":[{{"stream":{{"job":"a"}},"values":[["7","{line}"]]}}]}}"#)
    }

    #[test]
    fn decodes_protobuf_with_any_non_json_type() {
        for content_type in ["application/x-protobuf", "text/plain"] {
            let streams = decode(
                content_type,
                "snappy",
                protobuf_body("hello"),
                None,
                limits(1 << 20, 1 << 20),
            );
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
            None,
            limits(1 << 20, 1 << 20),
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
        let big = limits(1 << 20, 1 << 20);
        assert_eq!(
            invalid(decode("application/json", "br", Bytes::new(), None, big)),
            "Content-Encoding \"br\" not supported"
        );
        assert_eq!(
            invalid(decode("", "", protobuf_body("x"), None, big)),
            "mime: no media type"
        );
        assert_eq!(
            invalid(decode(
                "application/x-protobuf",
                "",
                Bytes::from_static(b"\xff\xff\xff\xff\xff"),
                None,
                big
            )),
            "snappy: corrupt input"
        );
        assert_eq!(
            invalid(decode("application/json", "", Bytes::new(), None, big)),
            "EOF"
        );
    }

    #[test]
    fn protobuf_over_the_limits() {
        let body = protobuf_body(&"z".repeat(4000));
        assert!(body.len() < 1000);
        // By Content-Length, before anything is read.
        assert_eq!(
            before_reading(
                "application/x-protobuf",
                "",
                Some(5000),
                limits(1000, 1 << 20)
            ),
            Err(DecodeError::TooLarge(
                "request body too large: message size too large than max (5000 vs 1000)".into()
            ))
        );
        // Streamed without a length: what was read, the limit plus one.
        let long = Bytes::from(vec![0u8; 2000]);
        assert_eq!(
            decode(
                "application/x-protobuf",
                "",
                long,
                None,
                limits(1000, 1 << 20)
            ),
            Err(DecodeError::TooLarge(
                "request body too large: message size too large than max (1001 vs 1000)".into()
            ))
        );
        // Decompressing past the second limit is a 400 in Loki 3.7.
        let decoded = snap::raw::decompress_len(&body).unwrap_or_default();
        assert_eq!(
            decode(
                "application/x-protobuf",
                "",
                body.clone(),
                None,
                limits(1000, 1000)
            ),
            Err(DecodeError::Invalid(format!(
                "decompressed message size too large than max ({decoded} vs 1000)"
            )))
        );
        assert!(
            decode(
                "application/x-protobuf",
                "",
                body,
                None,
                limits(1000, 1 << 20)
            )
            .is_ok()
        );
    }

    #[test]
    fn json_over_the_limit_fails_to_decode() {
        let body = json_body(&"x".repeat(5000));
        let answer = decode(
            "application/json",
            "",
            Bytes::from(body.clone()),
            Some(body.len() as u64),
            limits(1000, 1 << 20),
        );
        let Err(DecodeError::Invalid(message)) = answer else {
            panic!("{answer:?}");
        };
        assert!(
            message.starts_with(
                "loghttp.PushRequest.Streams: []loghttp.LogProtoStream: readStringSlowPath: \
                 unexpected end of input, error found in #10 byte of ...|xxxxxxxxxx|..."
            ),
            "{message}"
        );
        // Over the limit by trailing spaces only: the JSON decodes; the size check counts what
        // the decoder read (512-byte reads), so a short document passes and one that ends in
        // the last read does not.
        let padded = format!("{}{}", json_body("ok"), " ".repeat(2000));
        assert!(
            decode(
                "application/json",
                "",
                Bytes::from(padded),
                None,
                limits(1000, 1 << 20)
            )
            .is_ok()
        );
        let padded = format!("{}{}", json_body(&"y".repeat(600)), " ".repeat(2000));
        assert_eq!(
            decode(
                "application/json",
                "",
                Bytes::from(padded),
                None,
                limits(1000, 1 << 20)
            ),
            Err(DecodeError::Invalid(
                "compressed message size 1001 exceeds limit 1000".into()
            ))
        );
        // gzip: cut at the decompressed limit, or cut compressed (the decompressor's error).
        let gzipped = gzip(body.as_bytes());
        let answer = decode(
            "application/json",
            "gzip",
            gzipped.clone(),
            None,
            limits(1 << 20, 1000),
        );
        assert!(
            matches!(&answer, Err(DecodeError::Invalid(m)) if m.contains("readStringSlowPath: unexpected end of input")),
            "{answer:?}"
        );
        let mut state = 7u64;
        let noise: String = (0..5000)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                char::from(b'a' + (state >> 60) as u8)
            })
            .collect();
        let noisy = gzip(json_body(&noise).as_bytes());
        let half = noisy.len() / 2;
        let answer = decode(
            "application/json",
            "gzip",
            noisy.slice(..half),
            None,
            limits(1 << 20, 1 << 20),
        );
        assert_eq!(
            answer,
            Err(DecodeError::Invalid(
                "loghttp.PushRequest.Streams: []loghttp.LogProtoStream: unexpected EOF".into()
            ))
        );
        assert_eq!(
            decode(
                "application/json",
                "gzip",
                Bytes::from_static(b"nope, not gzip"),
                None,
                limits(1 << 20, 1 << 20)
            ),
            Err(DecodeError::Invalid("gzip: invalid header".into()))
        );
    }
}
