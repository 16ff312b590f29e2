//! The Loki receiver over HTTP: each test starts one in-process on 127.0.0.1:0 and pushes to it
//! with a hyper client, as a Loki client would. One test runs the `loki-receiver` binary.

// A failure in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::CommandFactory;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use log_capturer_harness::components::sinks::loki::proto::{
    EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp,
};
use log_capturer_harness::receiver::{
    Outage, ReceiverConfig, ReceiverHandle, StatsSnapshot, serve,
};
use prost::Message;

const SECOND: i64 = 1_000_000_000;
const HOUR: i64 = 3600 * SECOND;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
}

struct Harness {
    receiver: ReceiverHandle,
    client: Client<HttpConnector, Full<Bytes>>,
}

async fn start(config: ReceiverConfig) -> Harness {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let receiver = serve(config, listener).await.expect("serve");
    let client = Client::builder(TokioExecutor::new()).build_http();
    Harness { receiver, client }
}

impl Harness {
    async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Answer {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.receiver.base_url()));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(body)).expect("request");
        let response = self.client.request(request).await.expect("response");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// A protobuf push (snappy) for tenant `tenant`.
    async fn push_proto(&self, tenant: &str, streams: &[(&str, Vec<(i64, String)>)]) -> Answer {
        self.request(
            Method::POST,
            "/loki/api/v1/push",
            &[
                ("Content-Type", "application/x-protobuf"),
                ("X-Scope-OrgID", tenant),
            ],
            proto_body(streams),
        )
        .await
    }

    async fn http_stats(&self) -> StatsSnapshot {
        let answer = self.request(Method::GET, "/stats", &[], Bytes::new()).await;
        assert_eq!(answer.status, 200);
        serde_json::from_str(&answer.body).expect("stats JSON")
    }
}

fn proto_body(streams: &[(&str, Vec<(i64, String)>)]) -> Bytes {
    let request = PushRequest {
        streams: streams
            .iter()
            .map(|(labels, entries)| StreamAdapter {
                labels: (*labels).to_string(),
                entries: entries
                    .iter()
                    .map(|(ts, line)| EntryAdapter {
                        timestamp: Some(Timestamp::from_nanos(*ts)),
                        line: Bytes::from(line.clone()),
                        structured_metadata: Vec::new(),
                    })
                    .collect(),
                hash: 0,
            })
            .collect(),
    };
    let compressed = snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy");
    Bytes::from(compressed)
}

fn lines(prefix: &str, ts: i64, seqs: impl IntoIterator<Item = u64>) -> Vec<(i64, String)> {
    seqs.into_iter()
        .map(|seq| (ts + seq as i64, format!("{prefix} seq={seq}")))
        .collect()
}

#[tokio::test]
async fn protobuf_snappy_push_is_stored_and_counted() {
    let h = start(ReceiverConfig::for_tests()).await;
    let now = now_ns();
    let answer = h
        .push_proto(
            "team-a",
            &[
                (r#"{job="app", env="prod"}"#, lines("hello", now, 1..=3)),
                (r#"{job="other"}"#, lines("x", now, 1..=2)),
            ],
        )
        .await;
    assert_eq!((answer.status, answer.body.as_str()), (204, ""));
    // Structured metadata travels too.
    let request = PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{job="app", env="prod"}"#.into(),
            entries: vec![EntryAdapter {
                timestamp: Some(Timestamp::from_nanos(now + 10)),
                line: Bytes::from_static(b"with metadata"),
                structured_metadata: vec![LabelPairAdapter {
                    name: "trace_id".into(),
                    value: "abc".into(),
                }],
            }],
            hash: 0,
        }],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy");
    let answer = h
        .request(
            Method::POST,
            "/loki/api/v1/push",
            &[
                ("Content-Type", "application/x-protobuf"),
                ("Content-Encoding", "snappy"),
                ("X-Scope-OrgID", "team-a"),
            ],
            Bytes::from(body),
        )
        .await;
    assert_eq!(answer.status, 204);

    let stats = h.receiver.stats();
    assert_eq!(stats.pushes, 2);
    assert_eq!(stats.accepted_entries, 6);
    assert_eq!(stats.streams, 2);
    assert_eq!(stats.responses, BTreeMap::from([("204".to_string(), 2)]));
    assert_eq!(stats.tenants["team-a"].accepted_entries, 6);
    assert_eq!(
        stats.accepted_bytes,
        ("hello seq=1".len() * 3 + "x seq=1".len() * 2 + "with metadata".len()) as u64
    );
    // What /stats serves is the same snapshot.
    assert_eq!(h.http_stats().await, h.receiver.stats());
    h.receiver.shutdown().await;
}

#[tokio::test]
async fn json_and_gzip_json_are_accepted() {
    let h = start(ReceiverConfig::for_tests()).await;
    let now = now_ns();
    let json = format!(
        r#"{{"streams":[{{"stream":{{"job":"json"}},"values":[["{}","one"],["{}","two",{{"trace_id":"t1"}}]]}}]}}"#,
        now,
        now + 1
    );
    let answer = h
        .request(
            Method::POST,
            "/loki/api/v1/push",
            &[("Content-Type", "application/json"), ("X-Scope-OrgID", "t")],
            Bytes::from(json.clone()),
        )
        .await;
    assert_eq!((answer.status, answer.body.as_str()), (204, ""));

    let json = json.replace("one", "three").replace("two", "four");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(json.as_bytes()).expect("gzip");
    let gzipped = encoder.finish().expect("gzip");
    let answer = h
        .request(
            Method::POST,
            "/loki/api/v1/push",
            &[
                ("Content-Type", "application/json"),
                ("Content-Encoding", "gzip"),
                ("X-Scope-OrgID", "t"),
            ],
            Bytes::from(gzipped),
        )
        .await;
    assert_eq!((answer.status, answer.body.as_str()), (204, ""));
    assert_eq!(h.receiver.stats().accepted_entries, 4);

    // A body that is not JSON is refused; nothing changes.
    let answer = h
        .request(
            Method::POST,
            "/loki/api/v1/push",
            &[("Content-Type", "application/json"), ("X-Scope-OrgID", "t")],
            Bytes::from_static(b"{nope"),
        )
        .await;
    assert_eq!(answer.status, 400);
    assert_eq!(h.receiver.stats().accepted_entries, 4);
}

#[tokio::test]
async fn mixed_batch_stores_the_valid_and_names_only_the_old() {
    let h = start(ReceiverConfig::for_tests()).await;
    let now = now_ns();
    let old = now - 8 * 24 * HOUR;
    let answer = h
        .push_proto(
            "t",
            &[(
                r#"{job="app"}"#,
                vec![
                    (now, "good seq=1".to_string()),
                    (old, "stale seq=2".to_string()),
                    (now + 1, "good seq=3".to_string()),
                ],
            )],
        )
        .await;
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/plain; charset=utf-8"[..])
    );
    let body = answer.body.as_str();
    assert!(body.ends_with('\n'));
    assert!(
        body.starts_with(
            "entry for stream '{job=\"app\", service_name=\"app\"}' has timestamp too old: "
        ),
        "{body}"
    );
    assert!(body.contains("oldest acceptable timestamp is: "), "{body}");
    // One message, for the one stale entry: good entries are not named.
    assert!(!body.contains("errors like"), "{body}");
    assert_eq!(body.trim_end().lines().count(), 1);

    let stats = h.http_stats().await;
    assert_eq!(stats.accepted_entries, 2);
    assert_eq!(stats.rejected["greater_than_max_sample_age"], 1);
    assert_eq!(stats.responses["400"], 1);
    assert_eq!((stats.sequences.max_seq, stats.sequences.missing), (3, 1));
}

#[tokio::test]
async fn too_far_behind_is_judged_per_stream() {
    let h = start(ReceiverConfig::for_tests()).await;
    let now = now_ns();
    assert_eq!(
        h.push_proto("t", &[(r#"{job="a"}"#, lines("new", now, [1]))])
            .await
            .status,
        204
    );
    let behind = now - 2 * HOUR;
    let answer = h
        .push_proto(
            "t",
            &[(
                r#"{job="a"}"#,
                vec![(behind, "late".into()), (now - SECOND, "in window".into())],
            )],
        )
        .await;
    assert_eq!(answer.status, 400);
    let mut body = answer.body.lines();
    let first = body.next().unwrap_or_default();
    assert!(first.starts_with("entry with timestamp "), "{first}");
    assert!(
        first.contains("ignored, reason: 'entry too far behind, entry timestamp is: "),
        "{first}"
    );
    assert_eq!(
        body.next(),
        Some("user 't', total ignored: 1 out of 2 for stream: {job=\"a\", service_name=\"a\"}")
    );
    // Another stream has its own window.
    assert_eq!(
        h.push_proto("t", &[(r#"{job="b"}"#, vec![(behind, "fine".into())])])
            .await
            .status,
        204
    );
    let stats = h.receiver.stats();
    assert_eq!(stats.accepted_entries, 3);
    assert_eq!(stats.rejected["too_far_behind"], 1);
}

#[tokio::test]
async fn too_new_and_too_long_lines_are_refused() {
    let h = start(ReceiverConfig {
        max_line_size: 100,
        ..ReceiverConfig::for_tests()
    })
    .await;
    let now = now_ns();
    let answer = h
        .push_proto(
            "t",
            &[(r#"{job="a"}"#, vec![(now + HOUR, "future".into())])],
        )
        .await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.body.starts_with(
            "entry for stream '{job=\"a\", service_name=\"a\"}' has timestamp too new: "
        ),
        "{}",
        answer.body
    );
    let answer = h
        .push_proto("t", &[(r#"{job="a"}"#, vec![(now, "x".repeat(150))])])
        .await;
    // Loki 3.7 lower-cased the first word (3.5: `Max entry size`).
    assert_eq!(
        answer.body,
        "max entry size '100' bytes exceeded for stream '{job=\"a\", service_name=\"a\"}' while \
         adding an entry with length '150' bytes\n"
    );
    let stats = h.receiver.stats();
    assert_eq!(stats.accepted_entries, 0);
    assert_eq!(stats.rejected["too_far_in_future"], 1);
    assert_eq!(stats.rejected["line_too_long"], 1);
}

#[tokio::test]
async fn malformed_labels_refuse_the_whole_push() {
    let h = start(ReceiverConfig::for_tests()).await;
    let now = now_ns();
    let answer = h
        .push_proto(
            "t",
            &[
                (r#"{job="fine"}"#, vec![(now, "kept?".into())]),
                (r#"{app-name="x"}"#, vec![(now, "bad".into())]),
            ],
        )
        .await;
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.body,
        "couldn't parse labels: 1:5: parse error: unexpected character inside braces: '-'\n"
    );
    assert_eq!(h.receiver.stats().accepted_entries, 0);
}

#[tokio::test]
async fn tenant_is_required_unless_disabled() {
    let h = start(ReceiverConfig::for_tests()).await;
    let body = proto_body(&[(r#"{job="a"}"#, vec![(now_ns(), "x".into())])]);
    let answer = h
        .request(
            Method::POST,
            "/loki/api/v1/push",
            &[("Content-Type", "application/x-protobuf")],
            body.clone(),
        )
        .await;
    assert_eq!((answer.status, answer.body.as_str()), (401, "no org id\n"));
    assert_eq!(h.receiver.stats().accepted_entries, 0);

    let h = start(ReceiverConfig {
        require_tenant: false,
        ..ReceiverConfig::for_tests()
    })
    .await;
    let answer = h
        .request(
            Method::POST,
            "/loki/api/v1/push",
            &[("Content-Type", "application/x-protobuf")],
            body,
        )
        .await;
    assert_eq!(answer.status, 204);
    assert_eq!(h.receiver.stats().tenants["fake"].accepted_entries, 1);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let h = start(ReceiverConfig {
        ingestion_rate_mb: 0.0,
        ingestion_burst_size_mb: 1000.0 / (1u64 << 20) as f64,
        retry_after: Some(2),
        ..ReceiverConfig::for_tests()
    })
    .await;
    let now = now_ns();
    let batch = |ts: i64| vec![(ts, "y".repeat(600))];
    assert_eq!(
        h.push_proto("t", &[(r#"{job="a"}"#, batch(now))])
            .await
            .status,
        204
    );
    let answer = h.push_proto("t", &[(r#"{job="a"}"#, batch(now + 1))]).await;
    assert_eq!(answer.status, 429);
    // Lower-case since Loki 3.6; the size includes `detected_level="unknown"` (21 bytes), which
    // level discovery added.
    assert_eq!(
        answer.body,
        "ingestion rate limit exceeded for user t (limit: 0 bytes/sec) while attempting to ingest \
         '1' lines totaling '621' bytes, reduce log volume or contact your Loki administrator to \
         see if the limit can be increased\n"
    );
    assert_eq!(
        answer.headers.get("retry-after").map(|v| v.as_bytes()),
        Some(&b"2"[..])
    );
    let stats = h.receiver.stats();
    assert_eq!(stats.stored_entries, 1);
    assert_eq!(stats.rejected["rate_limited"], 1);
}

#[tokio::test]
async fn injected_260_stores_nothing() {
    let h = start(ReceiverConfig {
        status_260_rate: 1.0,
        ..ReceiverConfig::for_tests()
    })
    .await;
    let answer = h
        .push_proto("team-b", &[(r#"{job="a"}"#, vec![(now_ns(), "x".into())])])
        .await;
    assert_eq!(answer.status, 260);
    assert!(
        answer
            .body
            .starts_with("ingestion blocked for user 'team-b' until '"),
        "{}",
        answer.body
    );
    assert!(answer.body.ends_with("' with status code '260'\n"));
    let stats = h.receiver.stats();
    assert_eq!(stats.accepted_entries, 0);
    assert_eq!(stats.responses["260"], 1);
}

#[tokio::test]
async fn injected_failures_store_nothing() {
    let h = start(ReceiverConfig {
        fail_rate: 1.0,
        ..ReceiverConfig::for_tests()
    })
    .await;
    let answer = h
        .push_proto("t", &[(r#"{job="a"}"#, vec![(now_ns(), "x".into())])])
        .await;
    assert_eq!(answer.status, 500);
    let h2 = start(ReceiverConfig {
        status_429_rate: 1.0,
        ..ReceiverConfig::for_tests()
    })
    .await;
    let answer = h2
        .push_proto("t", &[(r#"{job="a"}"#, vec![(now_ns(), "x".into())])])
        .await;
    assert_eq!(answer.status, 429);
    assert!(
        answer
            .body
            .starts_with("ingestion rate limit exceeded for user t ")
    );
    assert_eq!(h.receiver.stats().accepted_entries, 0);
    assert_eq!(h2.receiver.stats().accepted_entries, 0);
}

#[tokio::test]
async fn outage_answers_503_then_recovers() {
    let h = start(ReceiverConfig {
        outages: vec![Outage {
            start: Duration::ZERO,
            duration: Duration::from_secs(3),
        }],
        retry_after: Some(1),
        ..ReceiverConfig::for_tests()
    })
    .await;
    let now = now_ns();
    let answer = h
        .push_proto("t", &[(r#"{job="a"}"#, lines("x", now, [1]))])
        .await;
    assert_eq!(answer.status, 503);
    assert_eq!(
        answer.headers.get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    assert_eq!(
        h.request(Method::GET, "/ready", &[], Bytes::new())
            .await
            .status,
        503
    );
    assert_eq!(h.receiver.stats().accepted_entries, 0);

    // Poll readiness until the window ends.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = h.request(Method::GET, "/ready", &[], Bytes::new()).await;
        if ready.status == 200 {
            assert_eq!(ready.body, "ready\n");
            break;
        }
        assert!(Instant::now() < deadline, "still in the outage after 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = h
        .push_proto("t", &[(r#"{job="a"}"#, lines("x", now, [1]))])
        .await;
    assert_eq!(answer.status, 204);
    let stats = h.receiver.stats();
    assert_eq!(stats.accepted_entries, 1);
    assert_eq!(stats.responses["503"], 1);
}

#[tokio::test]
async fn protobuf_over_the_limit_gets_413_but_json_gets_the_decoders_400() {
    let h = start(ReceiverConfig {
        max_body_bytes: 1000,
        max_decompressed_bytes: 3000,
        ..ReceiverConfig::for_tests()
    })
    .await;
    let json = format!(
        r#"{{"streams":[{{"stream":{{"job":"a"}},"values":[["{}","{}"]]}}]}}"#,
        now_ns(),
        "x".repeat(5000)
    );
    let answer = h
        .request(
            Method::POST,
            "/loki/api/v1/push",
            &[("Content-Type", "application/json"), ("X-Scope-OrgID", "t")],
            Bytes::from(json),
        )
        .await;
    // Loki cuts the body at the limit and json-iterator runs out of input inside the line.
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(
        answer.body,
        format!(
            "loghttp.PushRequest.Streams: []loghttp.LogProtoStream: readStringSlowPath: unexpected \
             end of input, error found in #10 byte of ...|{}|..., bigger context ...|{}|...\n",
            "x".repeat(10),
            "x".repeat(50)
        )
    );
    // A protobuf body over the limit: 413, by its Content-Length.
    let mut state = 1u64;
    let noise: String = (0..3000)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            char::from(b'a' + (state >> 60) as u8)
        })
        .collect();
    let big = proto_body(&[(r#"{job="a"}"#, vec![(now_ns(), noise)])]);
    assert!(big.len() > 1000);
    let answer = h
        .request(
            Method::POST,
            "/loki/api/v1/push",
            &[
                ("Content-Type", "application/x-protobuf"),
                ("X-Scope-OrgID", "t"),
            ],
            big.clone(),
        )
        .await;
    assert_eq!(answer.status, 413);
    assert_eq!(
        answer.body,
        format!(
            "request body too large: message size too large than max ({} vs 1000)\n",
            big.len()
        )
    );
    // A small body that decompresses past max_decompressed_bytes: Loki answers 400, not 413.
    let inflating = proto_body(&[(r#"{job="a"}"#, vec![(now_ns(), "z".repeat(4000))])]);
    assert!(inflating.len() < 1000);
    let answer = h
        .request(
            Method::POST,
            "/loki/api/v1/push",
            &[
                ("Content-Type", "application/x-protobuf"),
                ("X-Scope-OrgID", "t"),
            ],
            inflating,
        )
        .await;
    assert_eq!(answer.status, 400);
    assert!(
        answer
            .body
            .starts_with("decompressed message size too large than max ("),
        "{}",
        answer.body
    );
    assert!(answer.body.ends_with(" vs 3000)\n"), "{}", answer.body);
    // The receiver still answers afterwards.
    let answer = h
        .push_proto("t", &[(r#"{job="a"}"#, vec![(now_ns(), "small".into())])])
        .await;
    assert_eq!(answer.status, 204);
    let stats = h.receiver.stats();
    assert_eq!(stats.stored_entries, 1);
    assert_eq!((stats.responses["400"], stats.responses["413"]), (2, 1));
}

#[tokio::test]
async fn duplicates_and_sequences_are_counted() {
    let h = start(ReceiverConfig::for_tests()).await;
    let now = now_ns();
    // 1..=10 without 4 and 7.
    let batch = lines("line", now, [1, 2, 3, 5, 6, 8, 9, 10]);
    assert_eq!(
        h.push_proto("t", &[(r#"{job="a"}"#, batch.clone())])
            .await
            .status,
        204
    );
    // An exact resend is accepted and not stored again.
    assert_eq!(
        h.push_proto("t", &[(r#"{job="a"}"#, batch)]).await.status,
        204
    );
    // A resend with new timestamps is stored again: duplicated sequence numbers.
    let resent = lines("line", now + SECOND, [2, 3]);
    assert_eq!(
        h.push_proto("t", &[(r#"{job="a"}"#, resent)]).await.status,
        204
    );
    // Another stream has its own numbers.
    assert_eq!(
        h.push_proto("t", &[(r#"{job="b"}"#, lines("b", now, [1, 3]))])
            .await
            .status,
        204
    );

    let stats = h.http_stats().await;
    assert_eq!(stats.stored_entries, 8 + 2 + 2);
    assert_eq!(stats.duplicates, 8);
    // What Loki answered as accepted: stored plus exact duplicates.
    assert_eq!(stats.accepted_entries, 8 + 2 + 2 + 8);
    assert_eq!(stats.tenants["t"].accepted_entries, 20);
    let a = &stats.tenants["t"].by_stream[r#"{job="a", service_name="a"}"#];
    assert_eq!(
        (a.stored_entries, a.duplicates, a.accepted_entries),
        (10, 8, 18)
    );
    assert_eq!(
        stats.received_entries,
        stats.stored_entries + stats.duplicates + stats.rejected_entries
    );
    assert_eq!(stats.sequences.max_seq, 10);
    assert_eq!(stats.sequences.missing, 2 + 1);
    assert_eq!(stats.sequences.duplicated, 2);

    // Reset zeroes the counters and the sequences.
    let reset = h
        .request(Method::POST, "/stats/reset", &[], Bytes::new())
        .await;
    assert_eq!(reset.status, 200);
    let before: StatsSnapshot = serde_json::from_str(&reset.body).expect("JSON");
    assert_eq!(before.stored_entries, 12);
    let after = h.receiver.stats();
    assert_eq!((after.accepted_entries, after.pushes), (0, 0));
    assert_eq!(after.sequences.max_seq, 0);
    assert_eq!(after.streams, 2);
}

#[tokio::test]
async fn record_file_gets_every_stored_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("record.jsonl");
    let h = start(ReceiverConfig {
        record: Some(path.clone()),
        ..ReceiverConfig::for_tests()
    })
    .await;
    let now = now_ns();
    let old = now - 30 * 24 * HOUR;
    let answer = h
        .push_proto(
            "team-a",
            &[(
                r#"{job="a"}"#,
                vec![
                    (now, "first".into()),
                    (old, "refused".into()),
                    (now + 1, "second".into()),
                ],
            )],
        )
        .await;
    assert_eq!(answer.status, 400);
    // Recorded before the answer: readable now.
    let text = std::fs::read_to_string(&path).expect("record");
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["tenant"], "team-a");
    assert_eq!(records[0]["labels"], r#"{job="a", service_name="a"}"#);
    assert_eq!(records[0]["ts"], now.to_string());
    assert_eq!(records[1]["line"], "second");
    h.receiver.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let h = start(ReceiverConfig::for_tests()).await;
    assert_eq!(
        h.request(Method::GET, "/loki/api/v1/push", &[], Bytes::new())
            .await
            .status,
        405
    );
    assert_eq!(
        h.request(Method::GET, "/nope", &[], Bytes::new())
            .await
            .status,
        404
    );
    let answer = h
        .request(
            Method::POST,
            "/loki/api/v1/push",
            &[
                ("Content-Type", "application/x-protobuf"),
                ("X-Scope-OrgID", "t"),
            ],
            proto_body(&[]),
        )
        .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (
            422,
            "error at least one valid stream is required for ingestion\n"
        )
    );
}

/// Polls `/ready` until `done` holds for its answer, with a deadline.
async fn wait_ready(h: &Harness, done: impl Fn(&Answer) -> bool) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = h.request(Method::GET, "/ready", &[], Bytes::new()).await;
        if done(&ready) {
            return ready;
        }
        assert!(
            Instant::now() < deadline,
            "/ready still says {:?}",
            ready.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn too_old_refuses_entries_within_the_stated_second() {
    let h = start(ReceiverConfig {
        reject_old_samples_max_age: Duration::from_secs(3600),
        ..ReceiverConfig::for_tests()
    })
    .await;
    // Push early in a second, so that the receiver's cutoff is in the same second as ours.
    let deadline = Instant::now() + Duration::from_secs(10);
    while now_ns() % SECOND > SECOND / 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cutoff = now_ns() - HOUR;
    let stated = cutoff - cutoff % SECOND;
    let answer = h
        .push_proto(
            "t",
            &[(
                r#"{job="app"}"#,
                vec![
                    (stated, "at the stated cutoff".into()),
                    (stated + SECOND, "a second later".into()),
                ],
            )],
        )
        .await;
    assert_eq!(answer.status, 400);
    let body = answer.body.trim_end();
    let (entry_time, cutoff_time) = body
        .strip_prefix(
            "entry for stream '{job=\"app\", service_name=\"app\"}' has timestamp too old: ",
        )
        .and_then(|rest| rest.split_once(", oldest acceptable timestamp is: "))
        .unwrap_or_else(|| panic!("{body}"));
    // The entry is refused although it is not older than the cutoff the message states.
    assert_eq!(entry_time, cutoff_time, "{body}");
    assert!(!entry_time.contains('.'), "whole seconds: {body}");
    let stats = h.receiver.stats();
    assert_eq!(stats.stored_entries, 1);
    assert_eq!(stats.rejected["greater_than_max_sample_age"], 1);
}

#[tokio::test]
async fn distinct_validation_texts_are_grouped_in_no_fixed_order() {
    let h = start(ReceiverConfig {
        max_line_size: 1024,
        ..ReceiverConfig::for_tests()
    })
    .await;
    let now = now_ns();
    let mut entries: Vec<(i64, String)> = (0..20).map(|i| (now + HOUR + i, "new".into())).collect();
    entries.extend((0..7).map(|i| (now + i, "l".repeat(2048))));
    let mut orders = std::collections::BTreeSet::new();
    for _ in 0..8 {
        let answer = h
            .push_proto("t", &[(r#"{job="app"}"#, entries.clone())])
            .await;
        assert_eq!(answer.status, 400);
        let parts: Vec<&str> = answer.body.trim_end().split("; ").collect();
        assert_eq!(parts.len(), 2, "{}", answer.body);
        let too_new = parts
            .iter()
            .find(|p| p.starts_with("20 errors like: entry for stream '{job=\"app\", service_name=\"app\"}' has timestamp too new: "));
        let too_long = parts.iter().find(|p| {
            **p == "7 errors like: max entry size '1024' bytes exceeded for stream \
                    '{job=\"app\", service_name=\"app\"}' while adding an entry with length '2048' bytes"
        });
        assert!(too_new.is_some() && too_long.is_some(), "{}", answer.body);
        orders.insert(parts[0].to_string());
    }
    // With the clock's seed, eight pushes all in the same order are as likely as 1 in 128.
    assert!(orders.len() > 1, "always {orders:?}");
    assert_eq!(h.receiver.stats().rejected_entries, 8 * 27);
}

#[tokio::test]
async fn the_per_stream_rate_limit_answers_429_listing_the_entries() {
    let h = start(ReceiverConfig {
        per_stream_rate_limit: 1024,
        per_stream_rate_limit_burst: 2000,
        ..ReceiverConfig::for_tests()
    })
    .await;
    let now = now_ns();
    let big: Vec<(i64, String)> = (0..12).map(|i| (now + i, "b".repeat(1000))).collect();
    let answer = h
        .push_proto(
            "team-a",
            &[
                (r#"{job="other"}"#, vec![(now, "stored".into())]),
                (r#"{job="app"}"#, big),
            ],
        )
        .await;
    assert_eq!(answer.status, 429);
    let lines: Vec<&str> = answer.body.lines().collect();
    assert_eq!(lines.len(), 11, "{}", answer.body);
    for line in &lines[..10] {
        assert!(line.starts_with("entry with timestamp "), "{line}");
        // 1000 bytes of line and 21 of `detected_level="unknown"`.
        assert!(
            line.ends_with(
                " ignored, reason: 'Per stream rate limit exceeded (limit: 1KB/sec) while \
                 attempting to ingest for stream '{job=\"app\", service_name=\"app\"}' totaling \
                 1021B, consider splitting a stream via additional labels or contact your Loki \
                 administrator to see if the limit can be increased',"
            ),
            "{line}"
        );
    }
    assert_eq!(
        lines[10],
        "user 'team-a', total ignored: 12 out of 12 for stream: {job=\"app\", service_name=\"app\"}"
    );
    let stats = h.http_stats().await;
    assert_eq!(stats.rejected["per_stream_rate_limit"], 12);
    // The other stream was stored although the answer was 429: a client resends it.
    assert_eq!(stats.stored_entries, 1);
    assert_eq!(stats.unacknowledged, 1);
    let tenant = &stats.tenants["team-a"];
    assert_eq!(
        tenant.by_stream[r#"{job="app", service_name="app"}"#].rejected["per_stream_rate_limit"],
        12
    );
    // The resend: the stored entry is an exact duplicate, answered as accepted.
    let answer = h
        .push_proto(
            "team-a",
            &[(r#"{job="other"}"#, vec![(now, "stored".into())])],
        )
        .await;
    assert_eq!(answer.status, 204);
    let stats = h.receiver.stats();
    assert_eq!(
        (
            stats.stored_entries,
            stats.duplicates,
            stats.accepted_entries
        ),
        (1, 1, 2)
    );
}

#[tokio::test]
async fn a_push_over_the_tenant_burst_is_refused_whole() {
    let h = start(ReceiverConfig {
        ingestion_rate_mb: 1000.0,
        ingestion_burst_size_mb: 0.001,
        ..ReceiverConfig::for_tests()
    })
    .await;
    let now = now_ns();
    let entries: Vec<(i64, String)> = (0..4).map(|i| (now + i, "c".repeat(300))).collect();
    // 4 × 321 bytes against a burst of 1048: never allowed, however long one waits.
    for _ in 0..3 {
        let answer = h
            .push_proto("t", &[(r#"{job="a"}"#, entries.clone())])
            .await;
        assert_eq!(answer.status, 429);
        assert!(
            answer.body.starts_with(
                "ingestion rate limit exceeded for user t (limit: 1048576000 bytes/sec) while \
                 attempting to ingest '4' lines totaling '1284' bytes"
            ),
            "{}",
            answer.body
        );
    }
    let answer = h
        .push_proto("t", &[(r#"{job="a"}"#, entries[..3].to_vec())])
        .await;
    assert_eq!(answer.status, 204);
    let stats = h.receiver.stats();
    assert_eq!(
        (stats.stored_entries, stats.rejected["rate_limited"]),
        (3, 12)
    );
}

#[tokio::test]
async fn start_up_answers_empty_ring_then_accepts_before_ready() {
    let h = start(ReceiverConfig {
        startup_empty_ring: Duration::from_secs(2),
        ready_delay: Duration::from_secs(1),
        ..ReceiverConfig::for_tests()
    })
    .await;
    let now = now_ns();
    let answer = h
        .push_proto("t", &[(r#"{job="a"}"#, lines("x", now, [1]))])
        .await;
    assert_eq!((answer.status, answer.body.as_str()), (500, "empty ring\n"));
    let ready = h.request(Method::GET, "/ready", &[], Bytes::new()).await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (503, "Ingester not ready: this instance owns no tokens\n")
    );
    // The ring fills: pushes are accepted while /ready still waits.
    let ready = wait_ready(&h, |a| !a.body.contains("owns no tokens")).await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (
            503,
            "Ingester not ready: waiting for 1s after being ready\n"
        )
    );
    let answer = h
        .push_proto("t", &[(r#"{job="a"}"#, lines("x", now, [1]))])
        .await;
    assert_eq!(answer.status, 204);
    let ready = wait_ready(&h, |a| a.status == 200).await;
    assert_eq!(ready.body, "ready\n");
    let stats = h.receiver.stats();
    assert_eq!(stats.stored_entries, 1);
    assert_eq!(stats.rejected["empty_ring"], 1);
    assert_eq!((stats.responses["500"], stats.responses["204"]), (1, 1));
}

#[tokio::test]
async fn shutdown_through_the_handle_answers_empty_ring_for_its_window() {
    let h = start(ReceiverConfig {
        shutdown_empty_ring: Duration::from_millis(500),
        ..ReceiverConfig::for_tests()
    })
    .await;
    let now = now_ns();
    assert_eq!(
        h.push_proto("t", &[(r#"{job="a"}"#, lines("x", now, [1]))])
            .await
            .status,
        204
    );
    h.receiver.begin_shutdown();
    let answer = h
        .push_proto("t", &[(r#"{job="a"}"#, lines("x", now, [2]))])
        .await;
    assert_eq!((answer.status, answer.body.as_str()), (500, "empty ring\n"));
    let ready = h.request(Method::GET, "/ready", &[], Bytes::new()).await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (503, "Application is stopping\n")
    );
    // Validation still answers first, as in Loki.
    let answer = h
        .push_proto(
            "t",
            &[(r#"{job="a"}"#, vec![(now - 30 * 24 * HOUR, "old".into())])],
        )
        .await;
    assert_eq!(answer.status, 400);
    let url = h.receiver.push_url();
    let stats = h.receiver.shutdown().await;
    assert_eq!(stats.stored_entries, 1);
    assert_eq!(stats.rejected["empty_ring"], 1);
    // Stopped: the port no longer answers.
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let request = Request::post(url)
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert!(client.request(request).await.is_err());
}

#[tokio::test]
async fn levels_and_shards_are_added_as_loki_adds_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("record.jsonl");
    let h = start(ReceiverConfig {
        record: Some(path.clone()),
        shard_streams_desired_rate: 1000,
        ..ReceiverConfig::for_tests()
    })
    .await;
    let now = now_ns();
    // Push 2 KB at a time until the rate store knows the stream's rate and shards it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seq = 0u64;
    loop {
        let batch: Vec<(i64, String)> = (0..10)
            .map(|_| {
                seq += 1;
                (
                    now + seq as i64,
                    format!("level=warn seq={seq} {}", "w".repeat(200)),
                )
            })
            .collect();
        assert_eq!(
            h.push_proto("t", &[(r#"{job="a"}"#, batch)]).await.status,
            204
        );
        let stats = h.receiver.stats();
        if stats.tenants["t"]
            .by_stream
            .keys()
            .any(|k| k.contains("__stream_shard__"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "never sharded: {stats:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = h.http_stats().await;
    assert!(
        stats.tenants["t"]
            .by_stream
            .contains_key(r#"{__stream_shard__="0", job="a", service_name="a"}"#),
        "{:?}",
        stats.tenants["t"].by_stream.keys()
    );
    // Sequence numbers are counted per stream as pushed: no loss from sharding.
    assert_eq!((stats.sequences.max_seq, stats.sequences.missing), (seq, 0));
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .expect("record")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(records.len() as u64, seq);
    assert!(
        records
            .iter()
            .all(|r| r["structured_metadata"] == serde_json::json!([["detected_level", "warn"]]))
    );
    assert!(
        records
            .iter()
            .any(|r| r["labels"] == r#"{__stream_shard__="1", job="a", service_name="a"}"#)
    );

    // Both can be turned off.
    let h = start(ReceiverConfig {
        discover_log_levels: false,
        shard_streams: false,
        record: Some(dir.path().join("plain.jsonl")),
        ..ReceiverConfig::for_tests()
    })
    .await;
    assert_eq!(
        h.push_proto("t", &[(r#"{job="a"}"#, vec![(now, "level=warn x".into())])])
            .await
            .status,
        204
    );
    let text = std::fs::read_to_string(dir.path().join("plain.jsonl")).expect("record");
    assert!(!text.contains("detected_level"), "{text}");
}

#[test]
fn docs_describe_every_flag() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/loki-receiver.md"
    ))
    .expect("docs/loki-receiver.md");
    let missing: Vec<String> = ReceiverConfig::command()
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .filter(|long| !["help", "version"].contains(long))
        .map(|long| format!("--{long}"))
        .filter(|flag| !doc.contains(&format!("`{flag}")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in docs/loki-receiver.md: {missing:?}"
    );
}

/// A `loki-receiver` process and the thread collecting its log.
struct Binary {
    child: std::process::Child,
    addr: String,
    log: Option<std::thread::JoinHandle<String>>,
}

impl Drop for Binary {
    /// A test that failed early does not leave the process behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn_binary(args: &[&str]) -> Binary {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_loki-receiver"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn loki-receiver");
    let stderr = child.stderr.take().expect("stderr");
    // The address is in the start-up log line.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut sent = false;
        let mut log = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && let Some(at) = line.find("addr=") {
                let addr = line[at + 5..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let _ = addr_tx.send(addr);
                sent = true;
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the receiver logs its address");
    Binary {
        child,
        addr,
        log: Some(log),
    }
}

impl Binary {
    async fn send(&self, request: Request<Full<Bytes>>) -> (u16, String) {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let response = client.request(request).await.expect("request");
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn push(&self, line: &str) -> (u16, String) {
        let request = Request::post(format!("http://{}/loki/api/v1/push", self.addr))
            .header("Content-Type", "application/x-protobuf")
            .header("X-Scope-OrgID", "t")
            .body(Full::new(proto_body(&[(
                r#"{job="a"}"#,
                vec![(now_ns(), line.into())],
            )])))
            .expect("request");
        self.send(request).await
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let request = Request::get(format!("http://{}{path}", self.addr))
            .body(Full::new(Bytes::new()))
            .expect("request");
        self.send(request).await
    }

    fn terminate(&self) {
        // SAFETY: kill(2) on the pid of a child this test spawned and has not yet reaped.
        let signalled = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(signalled, 0);
    }

    /// Waits for the exit; returns whether it succeeded, and the log.
    async fn wait(mut self) -> (bool, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("loki-receiver did not exit within 30 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let log = self
            .log
            .take()
            .map(|log| log.join().unwrap_or_default())
            .unwrap_or_default();
        (status.success(), log)
    }
}

/// The binary: listens, stores, and exits 0 on SIGTERM.
#[tokio::test]
async fn binary_serves_and_exits_cleanly_on_sigterm() {
    let binary = spawn_binary(&["--ingestion-rate-mb", "100"]);
    assert_eq!(binary.push("x").await.0, 204);
    let (_, body) = binary.get("/stats").await;
    let stats: StatsSnapshot = serde_json::from_str(&body).expect("JSON");
    assert_eq!(stats.accepted_entries, 1);
    binary.terminate();
    let (success, log) = binary.wait().await;
    assert!(success, "log:\n{log}");
    assert!(log.contains("Loki receiver stopped."), "{log}");
}

/// After SIGTERM, `--shutdown-empty-ring` keeps the binary answering `500 empty ring`, as Loki
/// does while it stops, then it exits 0.
#[tokio::test]
async fn binary_answers_empty_ring_during_its_shutdown_window() {
    let binary = spawn_binary(&["--shutdown-empty-ring", "5s"]);
    assert_eq!(binary.push("before").await.0, 204);
    assert_eq!(binary.get("/ready").await, (200, "ready\n".to_string()));
    binary.terminate();
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let ready = binary.get("/ready").await;
        if ready.0 == 503 {
            assert_eq!(ready.1, "Application is stopping\n");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/ready never said it was stopping"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        binary.push("during").await,
        (500, "empty ring\n".to_string())
    );
    let (success, log) = binary.wait().await;
    assert!(success, "log:\n{log}");
    assert!(log.contains("Answering pushes 500 empty ring"), "{log}");
    assert!(log.contains("stored_entries=1"), "{log}");
}

#[tokio::test]
async fn count_only_counts_entries_and_sequences_without_validating() {
    let h = start(ReceiverConfig {
        count_only: true,
        ..ReceiverConfig::for_tests()
    })
    .await;
    let now = now_ns();
    // Labels Loki refuses (400 in the default mode) and a line a week old: counted all the same.
    let answer = h
        .push_proto(
            "t",
            &[
                (r#"{job="fine"}"#, lines("a", now, 1..=3)),
                (r#"{app-name="x"}"#, lines("b", now - 200 * HOUR, 1..=2)),
            ],
        )
        .await;
    assert_eq!((answer.status, answer.body.as_str()), (204, ""));
    // The same numbers again on one stream: duplicated, as in the default mode.
    let answer = h
        .push_proto("t", &[(r#"{job="fine"}"#, lines("a", now, [2, 4]))])
        .await;
    assert_eq!(answer.status, 204);
    let stats = h.receiver.stats();
    assert_eq!(stats.stored_entries, 7);
    assert_eq!(stats.received_entries, 7);
    assert_eq!(stats.sequences.max_seq, 4);
    assert_eq!(stats.sequences.duplicated, 1);
    assert_eq!(stats.sequences.missing, 0);
    // A body that is not a push still fails to decode: the wire format is checked.
    let answer = h
        .request(
            Method::POST,
            "/loki/api/v1/push",
            &[
                ("Content-Type", "application/x-protobuf"),
                ("X-Scope-OrgID", "t"),
            ],
            Bytes::from_static(b"not snappy"),
        )
        .await;
    assert_eq!(answer.status, 400);
    h.receiver.shutdown().await;
}
