//! The `loki` sink against answers as Loki 3.7 gives them, from the harness's receiver (a real
//! process): cutoffs stated to the second, grouped counts, ingester listings, replays that
//! keep their stream, refusals no retry can fix, pushes too large in Loki's other words.

// A failure in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::loki::{Receiver, dlq_entries, metric};
use common::{Instance, run_cli, wait_for};
use http::StatusCode;

/// A shipper on `{dir}`: `sources` and the Loki sink's extra settings spliced in.
fn shipper(port: u16, sources: &str, sink_extra: &str) -> Instance {
    let dispatcher = if sink_extra.contains("dispatcher:") {
        ""
    } else {
        "    dispatcher: {batch_timeout: 100ms, retry_base_delay: 100ms, retry_max_delay: 500ms, max_retries: 1000}\n"
    };
    let labels = if sink_extra.contains("labels:") {
        ""
    } else {
        "    labels: {job: app}\n"
    };
    let config = format!(
        r#"
data_dir: "{{dir}}/data"
api: {{listen: "127.0.0.1:{{port}}"}}
sources:
{sources}
sinks:
  loki:
    type: loki
    inputs: [app]
    endpoint: "http://127.0.0.1:{port}"
{labels}{dispatcher}{sink_extra}
"#
    );
    let mut instance = Instance::prepare(&config);
    std::fs::create_dir_all(instance.path("in")).unwrap();
    instance.spawn(&[], &[]);
    instance
}

const FILE_SOURCE: &str =
    r#"  app: {type: file, include: ["{dir}/in/*.log"], poll_interval: 100ms, labels: {team: a}}"#;

fn append(instance: &Instance, lines: impl IntoIterator<Item = String>) {
    use std::io::Write;
    let mut text = String::new();
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(instance.path("in/app.log"))
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

fn numbered(range: std::ops::RangeInclusive<u64>) -> impl Iterator<Item = String> {
    range.map(|seq| format!("seq={seq} a line for loki"))
}

fn sent_entries(instance: &Instance) -> f64 {
    metric(instance, "log_capturer_sent_entries_total{sink=\"loki\"}")
}

/// Loki accepts entries at most 2 s old and is away for 3 s while a generator keeps logging
/// (500 distinct timestamps a second). Afterwards, the queued entries are refused as too old,
/// and Loki states its cutoff cut to the second while it applies it to the nanosecond: some
/// entries of the stated second are refused too. Every line must still be stored exactly once,
/// and the sink must never count as delivered what Loki refused: its `sent_entries_total`
/// ends equal to what the receiver accepted.
#[test]
fn an_outage_longer_than_the_max_age_stores_every_line_once_and_counts_agree() {
    let receiver = Receiver::start(&[
        "--require-tenant",
        "false",
        "--reject-old-samples-max-age",
        "2s",
        "--outage",
        "1s:3s",
    ]);
    let instance = shipper(
        receiver.port,
        "  app: {type: generator, rate: 5000, batch_size: 10, count: 30000, labels: {team: a}}",
        "    dlq: {reprocess_interval: 500ms}",
    );
    let stats = receiver.wait_sequences(30_000, Duration::from_secs(120));
    assert_eq!(stats["sequences"]["duplicated"], 0, "{stats}");
    wait_for(
        "an empty dead-letter queue",
        Duration::from_secs(60),
        || (dlq_entries(&instance) == Some(0)).then_some(()),
    );
    let stats = receiver.stats();
    let refused_too_old = stats["rejected"]["greater_than_max_sample_age"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        refused_too_old > 0,
        "the outage made entries too old: {stats}"
    );
    let accepted = stats["accepted_entries"].as_f64().unwrap();
    assert_eq!(
        sent_entries(&instance),
        accepted,
        "sent_entries_total must equal what Loki accepted: {stats}"
    );
    assert!(
        metric(
            &instance,
            "log_capturer_timestamp_clamped_total{sink=\"loki\"}"
        ) > 0.0,
        "the learner moves the replayed entries into the window"
    );
}

/// A stream moved on while its oldest lines waited in the dead-letter queue. Replayed, the
/// lines more than Loki's out-of-order window behind the stream's newest are refused and the
/// others stored, in the same push, and Loki answers with its ingester listing (`total
/// ignored: X out of Y for stream: ...`). Only those X are refused: the stored lines must not be
/// dead-lettered and sent again.
#[test]
fn a_stream_that_moved_on_refuses_only_the_entries_loki_counts() {
    // First Loki refuses every push (no tenant): 2 s of lines at a time wait in the queue.
    let refusing = Receiver::start(&["--require-tenant", "true"]);
    let port = refusing.port;
    let instance = shipper(
        port,
        "  app: {type: generator, rate: 500, batch_size: 25, count: 10000, labels: {team: a}}",
        "    dlq: {reprocess_interval: 1h}\n    dispatcher: {batch_size: 100000, batch_timeout: 2s, retry_base_delay: 100ms, retry_max_delay: 500ms, max_retries: 1000}",
    );
    wait_for("12 s of lines kept", Duration::from_secs(60), || {
        dlq_entries(&instance).filter(|&n| n >= 6000).map(|_| ())
    });
    // Then a Loki with a 10 s out-of-order window accepts: the queued lines reach back more
    // than 10 s behind the new ones.
    drop(refusing);
    let receiver = Receiver::start_on(
        port,
        &["--require-tenant", "false", "--max-chunk-age", "20s"],
    );
    wait_for("new lines stored", Duration::from_secs(30), || {
        (receiver.stats()["stored_entries"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    let (status, _) = instance.post("/dlq/reprocess");
    assert_eq!(status, StatusCode::ACCEPTED);
    wait_for("a too-far-behind answer", Duration::from_secs(60), || {
        (receiver.stats()["rejected"]["too_far_behind"]
            .as_u64()
            .unwrap_or(0)
            > 0)
        .then_some(())
    });
    // The refused lines are queued again; replayed, the learner moves them into the window.
    let stats = wait_for("every line stored", Duration::from_secs(120), || {
        instance.post("/dlq/reprocess");
        let stats = receiver.stats();
        let seq = &stats["sequences"];
        (seq["max_seq"] == 10000 && seq["missing"] == 0).then_some(stats)
    });
    assert_eq!(
        stats["sequences"]["duplicated"], 0,
        "stored lines were sent again: {stats}"
    );
}

/// Lines kept in the dead-letter queue and replayed land in the stream they were meant for:
/// the sink's labels made from `{{ source }}` and `{{ file }}` come out the same.
#[test]
fn replayed_lines_keep_their_stream() {
    // First Loki refuses every push (no tenant): the lines wait in the dead-letter queue.
    let refusing = Receiver::start(&["--require-tenant", "true"]);
    let port = refusing.port;
    let instance = shipper(
        port,
        FILE_SOURCE,
        "    dlq: {reprocess_interval: 1h}\n    labels: {job: app, source: \"{{ source }}\", filename: \"{{ file }}\"}",
    );
    append(&instance, numbered(1..=200));
    wait_for("200 entries kept", Duration::from_secs(60), || {
        (dlq_entries(&instance) == Some(200)).then_some(())
    });
    // Then Loki accepts: the replayed lines must land in the stream they were meant for.
    drop(refusing);
    let receiver = Receiver::start_on(port, &["--require-tenant", "false"]);
    let (status, _) = instance.post("/dlq/reprocess");
    assert_eq!(status, StatusCode::ACCEPTED);
    receiver.wait_sequences(200, Duration::from_secs(60));
    let file = instance.path("in/app.log").display().to_string();
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 200);
    for entry in accepted {
        let labels = entry["labels"].to_string();
        assert!(
            labels.contains("source=\\\"app\\\"")
                && labels.contains(&format!("filename=\\\"{file}\\\"")),
            "a replayed line changed stream: {labels}"
        );
    }
}

/// Loki refuses lines longer than its limit, and no retry changes that: each entry is
/// replayed `max_replays` times, then kept in the archive as refused for good, with Loki's
/// own text; nothing is replayed forever and the queue empties.
#[test]
fn entries_refused_on_every_replay_go_to_the_archive_with_lokis_text() {
    let receiver = Receiver::start(&["--require-tenant", "false", "--max-line-size", "100"]);
    let instance = shipper(
        receiver.port,
        FILE_SOURCE,
        "    max_line_size: 0\n    dlq: {reprocess_interval: 200ms, max_replays: 2}",
    );
    append(
        &instance,
        (1..=20u64).map(|seq| format!("seq={seq} {}", "x".repeat(200))),
    );
    wait_for(
        "20 entries refused for good",
        Duration::from_secs(60),
        || {
            (metric(
                &instance,
                "log_capturer_dlq_refused_total{reason=\"line_too_long\",sink=\"loki\"}",
            ) >= 20.0)
                .then_some(())
        },
    );
    wait_for("an empty queue", Duration::from_secs(30), || {
        (dlq_entries(&instance) == Some(0)).then_some(())
    });
    let data_dir = instance.path("data");
    let inspect = run_cli(&[
        "dlq",
        "inspect",
        "--refused",
        "--limit",
        "100",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&inspect.stdout);
    let entries: usize = text
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(
                record["detail"]
                    .as_str()
                    .unwrap()
                    .contains("max entry size '100' bytes exceeded"),
                "Loki's own text is kept: {record}"
            );
            record["entries"].as_array().unwrap().len()
        })
        .sum();
    assert_eq!(entries, 20, "{text}");
}

/// Lines longer than the sink's `max_line_size` are cut (at a character boundary) before they
/// are sent, so Loki stores them instead of refusing them; the original length goes along.
#[test]
fn lines_over_max_line_size_are_truncated_before_sending() {
    let receiver = Receiver::start(&["--require-tenant", "false", "--max-line-size", "1000"]);
    let instance = shipper(receiver.port, FILE_SOURCE, "    max_line_size: 500");
    append(
        &instance,
        (1..=10u64).map(|seq| format!("seq={seq} {}", "é".repeat(400))),
    );
    receiver.wait_sequences(10, Duration::from_secs(60));
    for entry in receiver.accepted() {
        let line = entry["line"].as_str().unwrap();
        assert!(line.len() <= 500, "{} bytes", line.len());
        assert!(!line.ends_with('\u{fffd}'), "cut inside a character");
        let metadata = entry["structured_metadata"].to_string();
        assert!(metadata.contains("truncated_from"), "{metadata}");
    }
    assert!(
        metric(
            &instance,
            "log_capturer_lines_truncated_total{component=\"loki\"}"
        ) >= 10.0
    );
}

/// A JSON push over Loki's size limit is answered 400 by its JSON decoder, not 413; a push
/// larger than the tenant's rate can only ever get 429. Both are split and delivered.
#[test]
fn json_pushes_over_the_size_limit_and_pushes_over_the_rate_are_split() {
    let receiver = Receiver::start(&["--require-tenant", "false", "--max-body-bytes", "8KB"]);
    let instance = shipper(
        receiver.port,
        FILE_SOURCE,
        "    encoding: json\n    dispatcher: {batch_size: 5000, batch_timeout: 500ms, retry_base_delay: 100ms, retry_max_delay: 500ms, max_retries: 1000}",
    );
    append(&instance, numbered(1..=2000));
    let stats = receiver.wait_sequences(2000, Duration::from_secs(60));
    assert_eq!(stats["sequences"]["duplicated"], 0, "{stats}");
    drop(instance);

    let receiver = Receiver::start(&[
        "--require-tenant",
        "false",
        "--ingestion-rate-mb",
        "0.02",
        "--ingestion-burst-size-mb",
        "0.03",
    ]);
    let instance = shipper(
        receiver.port,
        FILE_SOURCE,
        "    dispatcher: {batch_size: 5000, batch_timeout: 500ms, retry_base_delay: 100ms, retry_max_delay: 500ms, max_retries: 1000}",
    );
    append(&instance, numbered(1..=2000));
    let stats = receiver.wait_sequences(2000, Duration::from_secs(120));
    assert_eq!(stats["sequences"]["duplicated"], 0, "{stats}");
    assert_eq!(dlq_entries(&instance), Some(0));
}
