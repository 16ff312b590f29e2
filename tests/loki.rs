//! The `loki` sink against the harness's Loki-compatible receiver, both as real processes.
//!
//! The receiver binary (`loki-receiver`, harness crate) is built next to `log-capturer` by
//! `cargo nextest run --workspace` / `cargo build --workspace`.

// A failure in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use common::loki::{
    Receiver, SmallDisk, dlq_entries, dlq_sequences, metric, wait_metric, write_lines,
};
use common::{Instance, free_port, wait_for};
use http::StatusCode;

fn loki_config(port: u16) -> String {
    format!(
        r#"
data_dir: "{{dir}}/data"
api: {{listen: "127.0.0.1:{{port}}"}}
sources:
  app: {{type: file, include: ["{{dir}}/in/*.log"], read_from: beginning, poll_interval: 200ms}}
sinks:
  loki:
    type: loki
    inputs: [app]
    endpoint: "http://127.0.0.1:{port}"
    tenant_id: team-a
    labels: {{job: app}}
    dispatcher: {{batch_timeout: 100ms, retry_base_delay: 100ms, retry_max_delay: 1s, max_retries: 100}}
    dlq: {{reprocess_interval: 1s}}
"#
    )
}

fn start_shipper(config: &str) -> Instance {
    let mut instance = Instance::prepare(config);
    std::fs::create_dir_all(instance.path("in")).unwrap();
    instance.spawn(&[], &[]);
    instance
}

#[test]
fn delivers_every_line_as_protobuf_with_tenant_and_labels() {
    let receiver = Receiver::start(&[]);
    let instance = start_shipper(&loki_config(receiver.port));
    write_lines(&instance.path("in/app.log"), 1..=5000);
    let stats = receiver.wait_sequences(5000, Duration::from_secs(60));
    assert_eq!(stats["sequences"]["duplicated"], 0);
    assert_eq!(stats["tenants"]["team-a"]["accepted_entries"], 5000);
    let accepted = receiver.accepted();
    assert!(!accepted.is_empty());
    assert!(accepted.iter().all(|e| e["tenant"] == "team-a"));
    assert!(accepted.iter().all(|e| {
        e["labels"]
            .as_str()
            .is_some_and(|l| l.contains("job=\"app\""))
    }));
    let (_, metrics) = instance.get("/metrics");
    assert!(
        metrics.contains("log_capturer_http_responses_total{code=\"204\",sink=\"loki\"}"),
        "{metrics}"
    );
}

#[test]
fn an_outage_loses_nothing() {
    // 12 s without Loki (several retry cycles at the test's backoff) while lines keep coming.
    let receiver = Receiver::start(&["--outage", "2s:12s"]);
    let instance = start_shipper(&loki_config(receiver.port));
    let input = instance.path("in/app.log");
    for chunk in 0..20u64 {
        write_lines(&input, chunk * 500 + 1..=chunk * 500 + 500);
        std::thread::sleep(Duration::from_millis(800));
    }
    let stats = receiver.wait_sequences(10_000, Duration::from_secs(120));
    assert_eq!(stats["sequences"]["missing"], 0);
    let (_, metrics) = instance.get("/metrics");
    assert!(
        metrics.contains("log_capturer_retries_total{sink=\"loki\"}"),
        "{metrics}"
    );
}

#[test]
fn too_old_entries_are_diverted_and_replayed_never_resent_as_a_whole() {
    // Loki accepts entries at most 3 s old; a 6 s outage makes the queued lines too old. The
    // 400 names only those; the learner then clamps them when the DLQ replays them.
    let receiver = Receiver::start(&["--reject-old-samples-max-age", "3s", "--outage", "1s:6s"]);
    let instance = start_shipper(&loki_config(receiver.port));
    let input = instance.path("in/app.log");
    for chunk in 0..10u64 {
        write_lines(&input, chunk * 100 + 1..=chunk * 100 + 100);
        std::thread::sleep(Duration::from_millis(800));
    }
    let stats = receiver.wait_sequences(1000, Duration::from_secs(90));
    assert_eq!(stats["sequences"]["missing"], 0);
    // The replay's acknowledgement moves the DLQ's counters after the receiver stored it.
    let diverted = metric(
        &instance,
        "log_capturer_dlq_entries_total{reason=\"timestamp_too_old\",sink=\"loki\"}",
    );
    assert!(diverted > 0.0, "no entry was diverted");
    wait_metric(
        &instance,
        "log_capturer_dlq_reprocessed_total{sink=\"loki\"}",
        Duration::from_secs(30),
        |replayed| replayed >= diverted,
    );
    wait_metric(
        &instance,
        "log_capturer_dlq_queue_size{sink=\"loki\"}",
        Duration::from_secs(30),
        |waiting| waiting == 0.0,
    );
    let (_, metrics) = instance.get("/metrics");
    for series in [
        "log_capturer_timestamp_rejections_total{reason=\"timestamp_too_old\",sink=\"loki\"}",
        "log_capturer_timestamp_max_age_seconds{sink=\"loki\"}",
        // The learner pre-empts: replayed entries are moved into the window before sending.
        "log_capturer_timestamp_clamped_total{sink=\"loki\"}",
    ] {
        assert!(metrics.contains(series), "missing {series} in\n{metrics}");
    }
    // The accepted entries of each 400 were stored once: resending a whole batch would show
    // up as duplicated sequence numbers (counted after the replay was acknowledged).
    let stats = receiver.stats();
    assert_eq!(stats["sequences"]["duplicated"], 0, "{stats}");
}

#[test]
fn a_429_storm_and_260_answers_lose_nothing() {
    // A fixed seed makes the injected answers the same on every run.
    let receiver = Receiver::start(&[
        "--status-429-rate",
        "0.5",
        "--status-260-rate",
        "0.2",
        "--retry-after",
        "1",
        "--seed",
        "7",
    ]);
    // Batches of 50: about 60 pushes, so both answers are certain to come up.
    let config = loki_config(receiver.port).replace(
        "batch_timeout: 100ms,",
        "batch_timeout: 100ms, batch_size: 50,",
    );
    let instance = start_shipper(&config);
    write_lines(&instance.path("in/app.log"), 1..=3000);
    let stats = receiver.wait_sequences(3000, Duration::from_secs(180));
    assert_eq!(stats["sequences"]["missing"], 0);
    let (_, metrics) = instance.get("/metrics");
    for code in ["429", "260"] {
        assert!(
            metrics.contains(&format!(
                "log_capturer_http_responses_total{{code=\"{code}\",sink=\"loki\"}}"
            )),
            "no {code} seen"
        );
    }
}

#[test]
fn a_413_splits_the_batch() {
    let receiver = Receiver::start(&["--max-body-bytes", "4000"]);
    let instance = start_shipper(&loki_config(receiver.port));
    write_lines(&instance.path("in/app.log"), 1..=2000);
    let stats = receiver.wait_sequences(2000, Duration::from_secs(60));
    assert_eq!(stats["sequences"]["missing"], 0);
    assert!(
        stats["responses"]["413"].as_u64().unwrap_or(0) > 0,
        "{stats}"
    );
}

#[test]
fn ten_thousand_requests_leak_no_sockets_or_tasks() {
    let receiver = Receiver::start(&[]);
    // One entry per request: 10,000 lines make 10,000 pushes over pooled connections.
    let config = loki_config(receiver.port).replace(
        "batch_timeout: 100ms,",
        "batch_timeout: 100ms, batch_size: 1,",
    );
    let instance = start_shipper(&config);
    write_lines(&instance.path("in/app.log"), 1..=10_000);
    receiver.wait_sequences(10_000, Duration::from_secs(240));
    let stats = receiver.stats();
    assert!(stats["pushes"].as_u64().unwrap_or(0) >= 10_000, "{stats}");
    let pid = instance_pid(&instance);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    assert!(fds < 64, "{fds} descriptors open after 10,000 requests");
    assert!(threads < 32, "{threads} threads after 10,000 requests");
}

fn instance_pid(instance: &Instance) -> u32 {
    std::fs::read_to_string(instance.path("data/lock"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn tenant_from_a_label_splits_pushes_per_tenant() {
    let receiver = Receiver::start(&[]);
    let config = format!(
        r#"
data_dir: "{{dir}}/data"
api: {{listen: "127.0.0.1:{{port}}"}}
sources:
  a: {{type: file, include: ["{{dir}}/in/a.log"], labels: {{org: team-a}}}}
  b: {{type: file, include: ["{{dir}}/in/b.log"], labels: {{org: team-b}}}}
sinks:
  loki:
    type: loki
    inputs: [a, b]
    endpoint: "http://127.0.0.1:{}"
    tenant_label: org
    labels: {{job: app, from: "{{{{ source }}}}"}}
    dispatcher: {{batch_timeout: 100ms}}
"#,
        receiver.port
    );
    let instance = start_shipper(&config);
    // Sequences are counted per stream: each stream numbers its own lines from 1.
    write_lines(&instance.path("in/a.log"), 1..=300);
    write_lines(&instance.path("in/b.log"), 1..=200);
    let stats = wait_for("both tenants' lines", Duration::from_secs(60), || {
        let stats = receiver.stats();
        (stats["tenants"]["team-a"]["accepted_entries"] == 300
            && stats["tenants"]["team-b"]["accepted_entries"] == 200)
            .then_some(stats)
    });
    assert_eq!(stats["sequences"]["missing"], 0, "{stats}");
    // The tenant label picks the tenant; it is not a stream label. `from` is templated.
    let accepted = receiver.accepted();
    assert!(
        accepted
            .iter()
            .all(|e| !e["labels"].as_str().unwrap_or("").contains("org="))
    );
    for (tenant, source) in [("team-a", "a"), ("team-b", "b")] {
        assert!(
            accepted
                .iter()
                .filter(|e| e["tenant"] == tenant)
                .all(|e| e["labels"]
                    .as_str()
                    .unwrap_or("")
                    .contains(&format!("from=\"{source}\""))),
            "{tenant}"
        );
    }
}

/// A label from the file name over more files than `max_streams`: the first three label sets
/// get streams of their own, the rest of the lines go to the one overflow stream with their
/// file in structured metadata. Loki (limited here to 4 streams, so one stream more would be
/// refused with a 429) stores every line once: nothing lost, nothing refused.
#[test]
fn a_stream_cap_folds_the_files_past_it_into_one_overflow_stream_and_loses_nothing() {
    let receiver = Receiver::start(&["--max-streams-per-tenant", "4"]);
    let config = loki_config(receiver.port).replace(
        "labels: {job: app}",
        "labels: {job: app, file: \"{{ file }}\"}\n    max_streams: 3",
    );
    let instance = start_shipper(&config);
    const FILES: usize = 10;
    const LINES: usize = 40;
    for file in 0..FILES {
        let text: String = (0..LINES)
            .map(|n| format!("file={file} n={n} a line\n"))
            .collect();
        std::fs::write(instance.path(&format!("in/f{file}.log")), text).unwrap();
    }
    let stats = wait_for("every line stored", Duration::from_secs(60), || {
        let stats = receiver.stats();
        (stats["tenants"]["team-a"]["stored_entries"] == FILES * LINES).then_some(stats)
    });
    assert_eq!(stats["rejected_entries"], 0, "{stats}");
    assert!(stats["responses"].get("429").is_none(), "{stats}");

    let records = receiver.accepted();
    assert_eq!(records.len(), FILES * LINES, "each line stored once");
    let mut lines = std::collections::BTreeSet::new();
    let mut streams: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for record in &records {
        let line = record["line"].as_str().unwrap();
        assert!(lines.insert(line.to_string()), "{line} stored twice");
        let file = line
            .split(' ')
            .next()
            .unwrap()
            .strip_prefix("file=")
            .unwrap();
        let path = instance
            .path(&format!("in/f{file}.log"))
            .display()
            .to_string();
        let labels = record["labels"].as_str().unwrap().to_string();
        // The file is in the stream's labels, or (overflow) in the entry's metadata.
        if labels.contains("overflow=\"true\"") {
            assert!(!labels.contains("file="), "{labels}");
            let metadata = record["structured_metadata"].as_array().unwrap();
            assert!(
                metadata.contains(&serde_json::json!(["file", path])),
                "{record}"
            );
        } else {
            assert!(labels.contains(&format!("file=\"{path}\"")), "{record}");
        }
        streams.entry(labels).or_default().insert(path);
    }
    assert_eq!(
        streams.len(),
        4,
        "3 streams and the overflow stream: {streams:#?}"
    );
    let overflow = streams
        .iter()
        .find(|(labels, _)| labels.contains("overflow="))
        .map(|(_, files)| files.len());
    assert_eq!(overflow, Some(FILES - 3), "{streams:#?}");

    let folded = records
        .iter()
        .filter(|r| r["labels"].as_str().unwrap().contains("overflow="))
        .count() as f64;
    wait_metric(
        &instance,
        "log_capturer_loki_streams_overflow_total{policy=\"fold\",sink=\"loki\"}",
        Duration::from_secs(10),
        |n| n == folded,
    );
    assert_eq!(
        metric(&instance, "log_capturer_loki_active_streams{sink=\"loki\"}"),
        3.0
    );
    assert_eq!(dlq_entries(&instance), Some(0));
    assert!(instance.stderr().contains("Stream cap reached"));
}

/// Loki holds tenant team-a at its ingestion rate (429) while team-b is far under its own.
/// team-b's lines must be stored while most of team-a's still wait, each sent once: one
/// tenant's backoff neither delays nor resends another's pushes. team-a loses nothing.
#[test]
fn a_tenant_held_at_429_neither_delays_nor_duplicates_another() {
    // 0.1 MiB/s per tenant: team-a's 2 MB take some 18 s to be let through.
    let receiver = Receiver::start(&[
        "--ingestion-rate-mb",
        "0.1",
        "--ingestion-burst-size-mb",
        "0.2",
    ]);
    let config = format!(
        r#"
data_dir: "{{dir}}/data"
api: {{listen: "127.0.0.1:{{port}}"}}
sources:
  a: {{type: file, include: ["{{dir}}/in/a.log"], poll_interval: 100ms, labels: {{org: team-a}}}}
  b: {{type: file, include: ["{{dir}}/in/b.log"], poll_interval: 100ms, labels: {{org: team-b}}}}
sinks:
  loki:
    type: loki
    inputs: [a, b]
    endpoint: "http://127.0.0.1:{}"
    tenant_label: org
    labels: {{job: app}}
    dispatcher: {{batch_size: 100, batch_timeout: 100ms, retry_base_delay: 200ms, retry_max_delay: 1s, max_retries: 1000}}
"#,
        receiver.port
    );
    let instance = start_shipper(&config);
    // 20 batches of team-a's lines: more than the sink's 4 workers.
    const A_LINES: u64 = 2000;
    let padding = "x".repeat(1000);
    let mut text = String::new();
    for seq in 1..=A_LINES {
        text.push_str(&format!("seq={seq} {padding}\n"));
    }
    std::fs::write(instance.path("in/a.log"), text).unwrap();
    wait_for("team-a held at 429", Duration::from_secs(30), || {
        (receiver.stats()["responses"]["429"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    write_lines(&instance.path("in/b.log"), 1..=200);
    let stats = wait_for("team-b's lines", Duration::from_secs(30), || {
        let stats = receiver.stats();
        (stats["tenants"]["team-b"]["accepted_entries"] == 200).then_some(stats)
    });
    let a_accepted = stats["tenants"]["team-a"]["accepted_entries"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        a_accepted < A_LINES / 2,
        "team-b must be stored while team-a is still held, but {a_accepted} of {A_LINES} of team-a's lines were in by then"
    );
    assert_eq!(
        stats["tenants"]["team-b"]["received_entries"], 200,
        "each of team-b's lines sent once: {stats}"
    );
    assert_eq!(stats["tenants"]["team-b"]["duplicates"], 0, "{stats}");
    let stats = wait_for("team-a's lines", Duration::from_secs(90), || {
        let stats = receiver.stats();
        (stats["tenants"]["team-a"]["accepted_entries"] == A_LINES).then_some(stats)
    });
    assert_eq!(stats["sequences"]["missing"], 0, "{stats}");
    assert_eq!(stats["sequences"]["duplicated"], 0, "{stats}");
}

/// A dead-letter queue with `when_full: drop_newest` that fills drops what does not fit, as
/// asked; every line it drops is counted in `dropped_total{reason="dlq_full"}`, so what was
/// read is all accounted for: queued or counted.
#[test]
fn a_full_dead_letter_queue_that_drops_counts_every_line_it_drops() {
    // Every push refused for good (401: no tenant): every batch goes to the queue.
    let receiver = Receiver::start(&["--require-tenant", "true"]);
    let config = loki_config(receiver.port)
        .replace("    tenant_id: team-a\n", "")
        .replace(
            "    dlq: {reprocess_interval: 1s}",
            "    dlq: {max_entries: 100, when_full: drop_newest, reprocess_interval: 1h}",
        );
    let instance = start_shipper(&config);
    write_lines(&instance.path("in/app.log"), 1..=500);
    let dropped = r#"log_capturer_dropped_total{component="loki",reason="dlq_full"}"#;
    let (queued, dropped) = wait_for(
        "every line queued or counted",
        Duration::from_secs(60),
        || {
            let queued = dlq_entries(&instance)?;
            let dropped = metric(&instance, dropped) as u64;
            (queued + dropped == 500).then_some((queued, dropped))
        },
    );
    assert!(queued <= 100, "the queue keeps its bound: {queued}");
    assert!(dropped >= 400, "{dropped}");
}

#[test]
fn final_failures_wait_in_the_dlq_and_replay_when_loki_accepts_again() {
    // First Loki refuses every push (401: no tenant) — a final answer, so batches go to the
    // dead-letter queue instead of being retried or lost.
    let refusing = Receiver::start(&["--require-tenant", "true"]);
    let port = refusing.port;
    let config = loki_config(port).replace("    tenant_id: team-a\n", "");
    let instance = start_shipper(&config);
    write_lines(&instance.path("in/app.log"), 1..=500);
    wait_for(
        "500 entries in the dead-letter queue",
        Duration::from_secs(60),
        || {
            let (_, body) = instance.get("/dlq");
            let stats: serde_json::Value = serde_json::from_str(&body).ok()?;
            (stats["sinks"]["loki"]["entries"] == 500).then_some(())
        },
    );
    let data_dir = instance.path("data");
    let data_dir = data_dir.to_str().unwrap();
    let stats = common::run_cli(&["dlq", "stats", "--data-dir", data_dir]);
    let text = String::from_utf8_lossy(&stats.stdout);
    assert!(
        text.contains("500 entries queued") && text.contains("http_4xx: 500"),
        "{text}"
    );
    let inspect = common::run_cli(&["dlq", "inspect", "--limit", "1", "--data-dir", data_dir]);
    let record: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&inspect.stdout)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(record["reason"], "http_4xx");
    let purge = common::run_cli(&["dlq", "purge", "--data-dir", data_dir]);
    assert_eq!(
        purge.status.code(),
        Some(1),
        "purge must refuse while running"
    );

    // Loki comes back accepting: a replay (asked for through the API) delivers everything.
    drop(refusing);
    let accepting = Receiver::start_on(port, &["--require-tenant", "false"]);
    let (status, _) = instance.post("/dlq/reprocess");
    assert_eq!(status, StatusCode::ACCEPTED);
    accepting.wait_sequences(500, Duration::from_secs(60));
    wait_for(
        "an empty dead-letter queue",
        Duration::from_secs(30),
        || {
            let (_, body) = instance.get("/dlq");
            let stats: serde_json::Value = serde_json::from_str(&body).ok()?;
            (stats["sinks"]["loki"]["entries"] == 0).then_some(())
        },
    );
}

/// A TLS-terminating proxy in front of a receiver, with a CA of its own (rcgen), on a thread.
struct TlsFront {
    port: u16,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

impl TlsFront {
    fn start(backend: u16) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server_params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();

        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![server_cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut plain) =
                        tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                    else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Self {
            port,
            ca_file,
            _dir: dir,
            _runtime: runtime,
        }
    }
}

#[test]
fn https_with_a_custom_ca_delivers_and_an_unknown_ca_is_refused() {
    let receiver = Receiver::start(&[]);
    let front = TlsFront::start(receiver.port);
    let https = |extra: &str| {
        loki_config(receiver.port)
            .replace(
                &format!("http://127.0.0.1:{}", receiver.port),
                &format!("https://127.0.0.1:{}", front.port),
            )
            .replace(
                "    tenant_id: team-a\n",
                &format!("    tenant_id: team-a\n{extra}"),
            )
    };

    // Trusting the proxy's CA: delivered over TLS.
    let config = https(&format!(
        "    tls: {{ca_file: \"{}\"}}\n",
        front.ca_file.display()
    ));
    let instance = start_shipper(&config);
    write_lines(&instance.path("in/app.log"), 1..=500);
    receiver.wait_sequences(500, Duration::from_secs(60));
    drop(instance);

    // Without it, the certificate is refused: nothing is sent, the sink reports why and retries.
    let instance = start_shipper(&https(""));
    write_lines(&instance.path("in/app.log"), 1..=10);
    wait_for(
        "the sink to report the TLS failure",
        Duration::from_secs(30),
        || {
            let (status, body) = instance.get("/health");
            (status == StatusCode::SERVICE_UNAVAILABLE
                && body.to_lowercase().contains("certificate"))
            .then_some(())
        },
    );
}

/// Loki refuses every push for good (401), so every line goes to the dead-letter queue; then
/// the disk holding the queue and the positions fills up, and frees again. While it is full,
/// nothing may be discarded: reading waits (backpressure), the sink is unhealthy, failed writes
/// are retried. Once it frees, the held lines are stored and committed: a restart then sends
/// nothing again (seen before: a full disk for 8 s turned 40,000 lines into 77,000 deliveries).
#[test]
fn a_full_disk_holds_reading_back_and_loses_or_repeats_nothing() {
    let refusing = Receiver::start(&["--require-tenant", "true"]);
    let config = loki_config(refusing.port)
        .replace("    tenant_id: team-a\n", "")
        .replace(
            "dlq: {reprocess_interval: 1s}",
            "dlq: {reprocess_interval: 1h}",
        )
        .replace(
            "dispatcher: {batch_timeout: 100ms,",
            "dispatcher: {queue_size: 1000, worker_count: 1, batch_size: 500, batch_timeout: 100ms,",
        );
    let mut instance = Instance::prepare(&config);
    let Some(disk) = SmallDisk::mount(&instance.path("data"), "32m") else {
        return;
    };
    std::fs::create_dir_all(instance.path("in")).unwrap();
    instance.spawn(&[], &[]);
    let input = instance.path("in/app.log");
    // Long lines, so that what the pipeline may hold in its bounded buffers (a few reads of
    // 256 KiB, a queue, a batch) is far less than what is written while the disk is full.
    let write_lines = |path: &std::path::Path, range: std::ops::RangeInclusive<u64>| {
        let mut text = String::new();
        for seq in range {
            text.push_str(&format!("seq={seq} {}\n", "x".repeat(150)));
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    };

    write_lines(&input, 1..=10_000);
    wait_for("10,000 entries kept", Duration::from_secs(60), || {
        (dlq_entries(&instance) == Some(10_000)).then_some(())
    });

    let filler = disk.fill();
    write_lines(&input, 10_001..=40_000);
    let failures = |n: f64| {
        wait_for("failed dead-letter writes", Duration::from_secs(60), || {
            (metric(
                &instance,
                "log_capturer_dlq_write_failures_total{sink=\"loki\"}",
            ) >= n)
                .then_some(())
        });
        metric(
            &instance,
            "log_capturer_lines_read_total{component=\"app\"}",
        )
    };
    let read = failures(5.0);
    let read_later = failures(7.0);
    eprintln!("lines read while the disk was full: {read}, then {read_later}, of 40000");
    assert!(
        read_later == read && read < 40_000.0,
        "reading must wait while nothing can be stored: {read}, then {read_later} of 40000 lines read"
    );
    let (status, health) = instance.get("/health");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert!(
        health.contains("dead-letter queue cannot be written"),
        "{health}"
    );
    let (_, metrics) = instance.get("/metrics");
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("log_capturer_dropped_total") && l.contains("loki")),
        "nothing may be dropped because a disk is full:\n{metrics}"
    );

    std::fs::remove_file(&filler).unwrap();
    wait_for("all 40,000 entries kept", Duration::from_secs(120), || {
        (dlq_entries(&instance) == Some(40_000)).then_some(())
    });
    let (status, _) = instance.terminate(Duration::from_secs(30));
    assert!(status.success());
    // One cause, one line (and one when it clears): not a line per retry.
    let stderr = instance.stderr();
    for noisy in [
        "Position save failed",
        "Dead-letter queue write failed",
        "task was cancelled",
    ] {
        let count = stderr.matches(noisy).count();
        assert!(count <= 2, "{count} times {noisy:?}:\n{stderr}");
    }
    assert!(stderr.contains("Positions saved again"), "{stderr}");

    // After a restart, one more line: everything read before it would be re-sent first.
    instance.spawn(&[], &[]);
    write_lines(&input, 40_001..=40_001);
    wait_for("the new line kept", Duration::from_secs(60), || {
        dlq_entries(&instance).filter(|&n| n >= 40_001).map(|_| ())
    });
    let counts = dlq_sequences(&instance);
    let mut repeated: Vec<u64> = counts
        .iter()
        .filter(|&(_, &n)| n > 1)
        .map(|(&seq, _)| seq)
        .collect();
    repeated.sort_unstable();
    let missing: Vec<u64> = (1..=40_001).filter(|s| !counts.contains_key(s)).collect();
    assert!(
        repeated.is_empty() && missing.is_empty(),
        "{} kept twice (first {:?}), {} missing (first {:?})\n{}",
        repeated.len(),
        &repeated[..repeated.len().min(10)],
        missing.len(),
        &missing[..missing.len().min(10)],
        instance.stderr()
    );
    assert_eq!(dlq_entries(&instance), Some(40_001));
    drop(instance);
    drop(disk);
}

/// Loki is down for longer than the shutdown may take: the shutdown gives up (exit 1) with
/// batches still being retried. Those batches were never delivered; they must not count as
/// delivered because their tasks were stopped, so the restart, with Loki back, sends them.
#[test]
fn a_shutdown_that_times_out_with_loki_down_loses_nothing() {
    let port = free_port();
    let config = loki_config(port).replace("api: {listen", "shutdown_timeout: 2s\napi: {listen");
    let mut instance = start_shipper(&config);
    write_lines(&instance.path("in/app.log"), 1..=1000);
    wait_for("every line read", Duration::from_secs(30), || {
        (metric(
            &instance,
            "log_capturer_lines_read_total{component=\"app\"}",
        ) >= 1000.0)
            .then_some(())
    });
    let (status, _) = instance.terminate(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "the shutdown could not drain");
    let receiver = Receiver::start_on(port, &[]);
    instance.spawn(&[], &[]);
    receiver.wait_sequences(1000, Duration::from_secs(60));
}

#[test]
fn a_dead_letter_append_that_panics_stops_the_shipper_and_a_restart_keeps_every_line() {
    // Every push refused for good (401: no tenant), so every batch goes to the queue; the
    // second append panics (LC_TEST_FAULT, debug builds only). Before the panic was raised in
    // the sink (`components/src/blocking.rs`) it was retried as an I/O error from whatever
    // state it left the queue in, and the shipper ran on.
    let receiver = Receiver::start(&["--require-tenant", "true"]);
    let config = loki_config(receiver.port).replace("    tenant_id: team-a\n", "");
    let mut instance = Instance::prepare(&config);
    std::fs::create_dir_all(instance.path("in")).unwrap();
    instance.spawn(&[], &[("LC_TEST_FAULT", "dlq_write:loki@2")]);
    let input = instance.path("in/app.log");
    write_lines(&input, 1..=250);
    let mut status = None;
    wait_for(
        "the first lines queued or the exit",
        Duration::from_secs(60),
        || {
            status = instance.wait_exit(Duration::ZERO);
            (status.is_some() || dlq_entries(&instance).is_some_and(|n| n >= 250)).then_some(())
        },
    );
    write_lines(&input, 251..=500);
    if status.is_none() {
        status = instance.wait_exit(Duration::from_secs(30));
    }
    instance.assert_stopped_by_panic(status, "dlq_write:loki@2", "loki");

    instance.spawn(&[], &[]);
    wait_for(
        "every line in the dead-letter queue",
        Duration::from_secs(60),
        || {
            let sequences = dlq_sequences(&instance);
            (1..=500)
                .all(|seq| sequences.contains_key(&seq))
                .then_some(())
        },
    );
}
