//! Loki's push protocol (`logproto.PushRequest`, package `logproto`, as in Loki's
//! `pkg/push/push.proto`), declared with prost derives so no `protoc` is needed.
//!
//! The wire format: `POST /loki/api/v1/push`, `Content-Type: application/x-protobuf`, body a
//! raw (block format, not framed) snappy compression of an encoded [`PushRequest`].
//! `line` is declared `bytes` here: it has the same wire encoding as proto3 `string`, and Loki
//! does not reject lines that are not valid UTF-8.

use bytes::Bytes;

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    /// From nanoseconds since the Unix epoch.
    pub fn from_nanos(ns: i64) -> Self {
        Self {
            seconds: ns.div_euclid(1_000_000_000),
            nanos: ns.rem_euclid(1_000_000_000) as i32,
        }
    }

    /// Nanoseconds since the Unix epoch (saturating).
    pub fn to_nanos(self) -> i64 {
        self.seconds
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(self.nanos))
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PushResponse {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// The stream's labels in Prometheus text form: `{job="app", env="prod"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPairAdapter {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(bytes = "bytes", tag = "2")]
    pub line: Bytes,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

/// Encodes a [`PushRequest`] straight from borrowed parts, without building the adapter
/// structs (no per-line allocation, no reference-count traffic on the lines' buffers). The
/// output is byte for byte what prost's derived encoding of the same request gives; a test holds
/// the two equal.
pub mod direct {
    use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

    use super::Timestamp;

    /// One entry: time, line and structured metadata pairs.
    pub struct Entry<'a, M> {
        pub timestamp: Timestamp,
        pub line: &'a [u8],
        pub metadata: M,
    }

    fn delimited_len(tag: u32, len: usize) -> usize {
        key_len(tag) + encoded_len_varint(len as u64) + len
    }

    fn put_delimited(buf: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(bytes.len() as u64, buf);
        buf.extend_from_slice(bytes);
    }

    /// A proto3 string or bytes field: absent when empty.
    fn field_len(tag: u32, len: usize) -> usize {
        if len == 0 { 0 } else { delimited_len(tag, len) }
    }

    fn put_field(buf: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
        if !bytes.is_empty() {
            put_delimited(buf, tag, bytes);
        }
    }

    fn timestamp_body_len(ts: Timestamp) -> usize {
        let mut len = 0;
        if ts.seconds != 0 {
            len += key_len(1) + encoded_len_varint(ts.seconds as u64);
        }
        if ts.nanos != 0 {
            len += key_len(2) + encoded_len_varint(i64::from(ts.nanos) as u64);
        }
        len
    }

    fn pair_body_len(name: &str, value: &str) -> usize {
        field_len(1, name.len()) + field_len(2, value.len())
    }

    /// The encoded length of an entry's body.
    pub fn entry_body_len<'a, M>(entry: &Entry<'a, M>) -> usize
    where
        M: Iterator<Item = (&'a str, &'a str)> + Clone,
    {
        delimited_len(1, timestamp_body_len(entry.timestamp))
            + field_len(2, entry.line.len())
            + entry
                .metadata
                .clone()
                .map(|(n, v)| delimited_len(3, pair_body_len(n, v)))
                .sum::<usize>()
    }

    /// Writes one entry as field `tag` of its stream, given its body length.
    pub fn put_entry<'a, M>(buf: &mut Vec<u8>, entry: Entry<'a, M>, body_len: usize)
    where
        M: Iterator<Item = (&'a str, &'a str)> + Clone,
    {
        encode_key(2, WireType::LengthDelimited, buf);
        encode_varint(body_len as u64, buf);
        let ts = entry.timestamp;
        encode_key(1, WireType::LengthDelimited, buf);
        encode_varint(timestamp_body_len(ts) as u64, buf);
        if ts.seconds != 0 {
            encode_key(1, WireType::Varint, buf);
            encode_varint(ts.seconds as u64, buf);
        }
        if ts.nanos != 0 {
            encode_key(2, WireType::Varint, buf);
            encode_varint(i64::from(ts.nanos) as u64, buf);
        }
        put_field(buf, 2, entry.line);
        for (name, value) in entry.metadata {
            encode_key(3, WireType::LengthDelimited, buf);
            encode_varint(pair_body_len(name, value) as u64, buf);
            put_field(buf, 1, name.as_bytes());
            put_field(buf, 2, value.as_bytes());
        }
    }

    /// Starts a stream (field 1 of the request) whose entries take `entries_len` bytes
    /// (each entry's `delimited_len(2, body)` summed), and writes its labels.
    pub fn put_stream_head(buf: &mut Vec<u8>, labels: &str, entries_len: usize) {
        let body = field_len(1, labels.len()) + entries_len;
        encode_key(1, WireType::LengthDelimited, buf);
        encode_varint(body as u64, buf);
        put_field(buf, 1, labels.as_bytes());
    }

    /// What an entry with a body of `body_len` adds to its stream.
    pub fn entry_len(body_len: usize) -> usize {
        delimited_len(2, body_len)
    }
}

/// Writes labels in Loki's text form, `{a="1", b="x\"y"}`, sorted by name as given.
pub fn format_labels<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in labels.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn the_direct_encoding_equals_prosts_derived_one() {
        let pairs: Vec<(&str, &str)> = vec![("trace_id", "abc"), ("", "x"), ("k", "")];
        // Times before 1970, at zero, with and without nanoseconds; empty and binary lines.
        let entries: Vec<(i64, &[u8], usize)> = vec![
            (1_700_000_000_000_000_001, b"hello \xff", 0),
            (0, b"", 1),
            (-1_500_000_000, b"before the epoch", 3),
            (5_000_000_000, &[b'x'; 300], 2),
        ];
        let labels = format_labels([("job", "app")]);
        let expected = PushRequest {
            streams: vec![
                StreamAdapter {
                    labels: labels.clone(),
                    entries: entries
                        .iter()
                        .map(|&(ts, line, n)| EntryAdapter {
                            timestamp: Some(Timestamp::from_nanos(ts)),
                            line: Bytes::copy_from_slice(line),
                            structured_metadata: pairs[..n]
                                .iter()
                                .map(|(k, v)| LabelPairAdapter {
                                    name: k.to_string(),
                                    value: v.to_string(),
                                })
                                .collect(),
                        })
                        .collect(),
                    hash: 0,
                },
                StreamAdapter {
                    labels: String::new(),
                    entries: Vec::new(),
                    hash: 0,
                },
            ],
        }
        .encode_to_vec();

        let mut buf = Vec::new();
        let make = |&(ts, line, n): &(i64, &'static [u8], usize)| direct::Entry {
            timestamp: Timestamp::from_nanos(ts),
            line,
            metadata: pairs[..n].iter().copied(),
        };
        let total: usize = entries
            .iter()
            .map(|e| direct::entry_len(direct::entry_body_len(&make(e))))
            .sum();
        direct::put_stream_head(&mut buf, &labels, total);
        for e in &entries {
            let entry = make(e);
            let body = direct::entry_body_len(&entry);
            direct::put_entry(&mut buf, entry, body);
        }
        direct::put_stream_head(&mut buf, "", 0);
        assert_eq!(buf, expected);
    }

    #[test]
    fn round_trips_and_formats_labels() {
        let request = PushRequest {
            streams: vec![StreamAdapter {
                labels: format_labels([("job", "a\"b"), ("z", "1")]),
                entries: vec![EntryAdapter {
                    timestamp: Some(Timestamp::from_nanos(1_700_000_000_000_000_001)),
                    line: Bytes::from_static(b"hello \xff"),
                    structured_metadata: vec![LabelPairAdapter {
                        name: "trace_id".into(),
                        value: "abc".into(),
                    }],
                }],
                hash: 0,
            }],
        };
        let bytes = request.encode_to_vec();
        let decoded = PushRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded, request);
        assert_eq!(decoded.streams[0].labels, r#"{job="a\"b", z="1"}"#);
        let ts = decoded.streams[0].entries[0].timestamp.unwrap();
        assert_eq!(ts.to_nanos(), 1_700_000_000_000_000_001);
        assert_eq!(
            Timestamp::from_nanos(-1),
            Timestamp {
                seconds: -1,
                nanos: 999_999_999
            }
        );
    }
}
