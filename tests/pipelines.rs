//! Processing stages in a real pipeline: the binary reads a file, parses each line, takes its
//! timestamp and labels from the parsed fields, deduplicates and pushes to the harness's Loki
//! receiver (a real process); a label rule changed by a reload applies without a restart; a
//! route sends each line to exactly the sinks its routes say, and the file's position moves
//! past every line, routed or not.

// A failure in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::loki::{Receiver, metric};
use common::{Instance, wait_for};
use http::StatusCode;

const PIPELINE: &str = r#"
data_dir: "{dir}/data"
api: {listen: "127.0.0.1:{port}"}
sources:
  app: {type: file, include: ["{dir}/in/*.log"], read_from: beginning, poll_interval: 200ms}
transforms:
  parse: {type: json, inputs: [app]}
  time: {type: timestamp, inputs: [parse], field: ts, format: rfc3339}
  level: {type: labels, inputs: [time], from_fields: {LABEL: level}}
  dedup: {type: dedup, inputs: [level]}
sinks:
  loki:
    type: loki
    inputs: [dedup]
    endpoint: "http://127.0.0.1:RECEIVER"
    tenant_id: team-a
    labels: {job: app}
    dispatcher: {batch_timeout: 100ms}
"#;

fn pipeline(receiver: u16, label: &str) -> String {
    PIPELINE
        .replace("RECEIVER", &receiver.to_string())
        .replace("LABEL", label)
}

/// Appends JSON lines `seq` in `range`, each stamped `ts_of(seq)`, with a level by seq.
fn append(instance: &Instance, range: std::ops::RangeInclusive<u64>, ts_of: impl Fn(u64) -> i64) {
    let mut text = String::new();
    for seq in range {
        let level = ["info", "warn", "error"][(seq % 3) as usize];
        let ts = rfc3339(ts_of(seq));
        text.push_str(&format!(
            "{{\"ts\":\"{ts}\",\"level\":\"{level}\",\"msg\":\"seq={seq} hello\"}}\n"
        ));
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(instance.path("in/app.log"))
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

fn rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn now_ns() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap()
}

/// Waits until the receiver has stored `n` entries. (Sequence numbers are tracked per stream,
/// and the labels stage spreads them over one stream per level.)
fn stored(receiver: &Receiver, n: u64) -> serde_json::Value {
    wait_for(
        &format!("{n} entries stored"),
        Duration::from_secs(60),
        || {
            let stats = receiver.stats();
            (stats["stored_entries"].as_u64() >= Some(n)).then_some(stats)
        },
    )
}

fn start(receiver: &Receiver, label: &str) -> Instance {
    let mut instance = Instance::prepare(&pipeline(receiver.port, label));
    std::fs::create_dir_all(instance.path("in")).unwrap();
    instance.spawn(&[], &[]);
    instance
}

#[test]
fn a_parsed_pipeline_delivers_each_distinct_line_once_with_its_label_and_own_time() {
    let receiver = Receiver::start(&[]);
    let instance = start(&receiver, "level");
    // Times a minute in the past, one millisecond apart: not when the lines are read.
    let base = now_ns() - 60_000_000_000;
    let ts_of = |seq: u64| base + i64::try_from(seq).unwrap() * 1_000_000;
    append(&instance, 1..=300, ts_of);
    // The same 300 lines again: duplicates inside dedup's ttl.
    append(&instance, 1..=300, ts_of);
    let stats = stored(&receiver, 300);
    wait_for("the repeats to be counted", Duration::from_secs(30), || {
        (metric(
            &instance,
            "log_capturer_dropped_total{component=\"dedup\",reason=\"duplicate\"}",
        ) >= 300.0)
            .then_some(())
    });
    let stats_after = receiver.stats();
    assert_eq!(stats_after["sequences"]["duplicated"], 0, "{stats}");
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 300);
    for entry in accepted {
        let line = entry["line"].as_str().unwrap();
        let seq: u64 = line
            .split("seq=")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        let level = ["info", "warn", "error"][(seq % 3) as usize];
        let labels = entry["labels"].as_str().unwrap();
        assert!(
            labels.contains(&format!("level=\"{level}\"")),
            "{labels} for {line}"
        );
        assert!(labels.contains("job=\"app\""), "{labels}");
        assert_eq!(entry["ts"], ts_of(seq).to_string(), "{line}");
        assert!(
            line.starts_with("{\"ts\":"),
            "the line is sent as it was read: {line}"
        );
    }
}

#[test]
fn a_reloaded_label_rule_applies_without_a_restart_or_a_lost_line() {
    let receiver = Receiver::start(&[]);
    let mut instance = start(&receiver, "level");
    let base = now_ns() - 60_000_000_000;
    let ts_of = |seq: u64| base + i64::try_from(seq).unwrap() * 1_000_000;
    append(&instance, 1..=200, ts_of);
    stored(&receiver, 200);
    let pid = instance.pid();

    instance.write_config(&pipeline(receiver.port, "severity"));
    let (status, body) = instance.post("/config/reload");
    assert_eq!(status, StatusCode::OK, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["status"], "applied", "{body}");
    append(&instance, 201..=400, ts_of);
    let stats = stored(&receiver, 400);
    assert_eq!(stats["sequences"]["duplicated"], 0, "{stats}");
    assert!(instance.is_running());
    assert_eq!(instance.pid(), pid, "no restart");
    for entry in receiver.accepted() {
        let line = entry["line"].as_str().unwrap();
        let seq: u64 = line
            .split("seq=")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        let labels = entry["labels"].as_str().unwrap();
        let wanted = if seq <= 200 { "level=" } else { "severity=" };
        assert!(labels.contains(wanted), "{labels} for seq {seq}");
    }
}

const MULTILINE: &str = r#"
data_dir: "{dir}/data"
api: {listen: "127.0.0.1:{port}"}
sources:
  app: {type: file, include: ["{dir}/in/*.log"], read_from: beginning, poll_interval: 200ms}
transforms:
  traces: {type: multiline, inputs: [app], first_line: '^\d{4}-\d{2}-\d{2} ', max_wait: WAIT}
sinks:
  out: {type: file, inputs: [traces], path: "{dir}/out/events.jsonl"}
"#;

/// A Java error with its stack trace: six lines, one event.
fn java_trace(n: u64) -> String {
    format!(
        "2026-12-02 08:00:00 ERROR request {n} failed\n\
         java.lang.IllegalStateException: boom {n}\n\
         \tat com.shop.Cart.add(Cart.java:42)\n\
         \tat com.shop.Api.post(Api.java:7)\n\
         Caused by: java.io.IOException: disk\n\
         \t... 12 more\n"
    )
}

fn append_traces(instance: &Instance, file: &str, range: std::ops::RangeInclusive<u64>) {
    let text: String = range.map(java_trace).collect();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(instance.path(file))
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// The events the file sink wrote, as lines.
fn written_events(instance: &Instance) -> Vec<String> {
    std::fs::read_to_string(instance.path("out/events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let value: serde_json::Value = serde_json::from_str(l).unwrap();
            value["line"].as_str().unwrap().to_string()
        })
        .collect()
}

fn assert_whole_traces(events: &[String], n: u64) {
    let mut numbers: Vec<u64> = events
        .iter()
        .map(|event| {
            assert_eq!(event.lines().count(), 6, "not one whole trace: {event:?}");
            event
                .split("request ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=n).collect::<Vec<_>>());
}

#[test]
fn java_stack_traces_arrive_whole_across_a_rotation() {
    let mut instance = Instance::prepare(&MULTILINE.replace("WAIT", "500ms"));
    std::fs::create_dir_all(instance.path("in")).unwrap();
    instance.spawn(&[], &[]);
    append_traces(&instance, "in/app.log", 1..=50);
    wait_for("the first traces", Duration::from_secs(30), || {
        (written_events(&instance).len() >= 10).then_some(())
    });
    // logrotate's pattern: rename, then a new file under the old name.
    std::fs::rename(instance.path("in/app.log"), instance.path("in/app.log.1")).unwrap();
    append_traces(&instance, "in/app.log", 51..=100);
    let events = wait_for("100 traces", Duration::from_secs(30), || {
        let events = written_events(&instance);
        (events.len() >= 100).then_some(events)
    });
    assert_whole_traces(&events, 100);
    assert!(
        metric(
            &instance,
            "log_capturer_multiline_merged_lines_total{component=\"traces\"}"
        ) >= 500.0
    );
}

#[test]
fn a_trace_held_at_shutdown_is_emitted_not_lost() {
    // The stage would hold the last trace for an hour; the shutdown must emit it.
    let mut instance = Instance::prepare(&MULTILINE.replace("WAIT", "1h"));
    std::fs::create_dir_all(instance.path("in")).unwrap();
    instance.spawn(&[], &[]);
    append_traces(&instance, "in/app.log", 1..=20);
    wait_for(
        "19 traces out, the last one held",
        Duration::from_secs(30),
        || (written_events(&instance).len() >= 19).then_some(()),
    );
    let (status, _) = instance.terminate(Duration::from_secs(30));
    assert!(status.success());
    assert_whole_traces(&written_events(&instance), 20);
}

#[test]
fn lines_a_filter_drops_are_acknowledged_so_the_file_position_passes_them() {
    let config = r#"
data_dir: "{dir}/data"
api: {listen: "127.0.0.1:{port}"}
sources:
  app: {type: file, include: ["{dir}/in/*.log"], read_from: beginning, poll_interval: 200ms, flush_interval: 200ms}
transforms:
  parse: {type: logfmt, inputs: [app]}
  quiet: {type: filter, inputs: [parse], fields: {level: {equals: debug}}, action: drop}
  short: {type: filter, inputs: [quiet], longer_than: 40, action: drop}
sinks:
  out: {type: file, inputs: [short], path: "{dir}/out.log", encoding: text}
"#;
    let mut instance = Instance::prepare(config);
    std::fs::create_dir_all(instance.path("in")).unwrap();
    // Kept lines first, then a tail of dropped ones: only acknowledgements of the dropped lines
    // can move the committed offset to the end of the file.
    let mut text = String::from("level=info msg=one\nlevel=warn msg=two\n");
    for i in 0..50 {
        text.push_str(&format!("level=debug msg=noise-{i}\n"));
        text.push_str(&format!("level=info msg={}\n", "x".repeat(40 + i)));
    }
    std::fs::write(instance.path("in/app.log"), &text).unwrap();
    instance.spawn(&[], &[]);
    let size = text.len() as u64;
    let positions = instance.path("data/positions/app.json");
    wait_for(
        "the committed offset at the end of the file",
        Duration::from_secs(30),
        || {
            let doc: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&positions).ok()?).ok()?;
            let committed = doc
                .to_string()
                .contains(&format!("\"committed_offset\":{size}"));
            committed.then_some(())
        },
    );
    let out = std::fs::read_to_string(instance.path("out.log")).unwrap();
    assert_eq!(out, "level=info msg=one\nlevel=warn msg=two\n");
    for stage in ["quiet", "short"] {
        let series =
            format!("log_capturer_dropped_total{{component=\"{stage}\",reason=\"filtered\"}}");
        assert_eq!(metric(&instance, &series), 50.0, "{series}");
    }
}

const ROUTED: &str = r#"
data_dir: "{dir}/data"
api: {listen: "127.0.0.1:{port}"}
sources:
  app: {type: file, include: ["{dir}/in/*.log"], read_from: beginning, poll_interval: 200ms, flush_interval: 200ms}
transforms:
  parse: {type: logfmt, inputs: [app]}
  split:
    type: route
    inputs: [parse]
    routes:
      errors: {fields: {level: {equals: error}}}
      audit: {pattern: 'audit=yes'}
sinks:
  errors: {type: file, inputs: [split.errors], path: "{dir}/out/errors.log", encoding: text}
  audit: {type: file, inputs: [split.audit], path: "{dir}/out/audit.log", encoding: text}
"#;

/// Line `seq`: an error when `seq` is a multiple of 3, audited when of 4 (both for 12, 24, …,
/// neither for the rest, which no sink reads: `_unmatched` goes nowhere).
fn routed_line(seq: u64) -> String {
    let level = if seq.is_multiple_of(3) {
        "error"
    } else {
        "info"
    };
    let audit = if seq.is_multiple_of(4) { "yes" } else { "no" };
    format!("seq={seq} level={level} audit={audit}\n")
}

fn append_routed(instance: &Instance, range: std::ops::RangeInclusive<u64>) -> u64 {
    let text: String = range.map(routed_line).collect();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(instance.path("in/app.log"))
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file.metadata().unwrap().len()
}

/// The sequence numbers a sink wrote, sorted (several workers may write batches out of order);
/// a line written twice is there twice.
fn sequences(instance: &Instance, sink: &str) -> Vec<u64> {
    let mut seqs: Vec<u64> = std::fs::read_to_string(instance.path(&format!("out/{sink}.log")))
        .unwrap_or_default()
        .lines()
        .map(|line| {
            line.strip_prefix("seq=")
                .and_then(|rest| rest.split(' ').next())
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    seqs.sort_unstable();
    seqs
}

/// Waits until the source's committed offset is `size`, the end of the file.
fn committed_to(instance: &Instance, size: u64) {
    let positions = instance.path("data/positions/app.json");
    wait_for(
        &format!("the committed offset at {size}, the end of the file"),
        Duration::from_secs(30),
        || {
            let doc: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&positions).ok()?).ok()?;
            doc.to_string()
                .contains(&format!("\"committed_offset\":{size}"))
                .then_some(())
        },
    );
}

#[test]
fn a_route_sends_every_line_to_exactly_its_sinks_and_commits_past_the_unrouted() {
    let mut instance = Instance::prepare(ROUTED);
    std::fs::create_dir_all(instance.path("in")).unwrap();
    let size = append_routed(&instance, 1..=300);
    instance.spawn(&[], &[]);
    // The file ends with lines no sink reads (299, 298 ...): only their acknowledgement, and
    // that of both copies of the lines going to both sinks, can move the offset to the end.
    committed_to(&instance, size);
    let errors_of = |range: std::ops::RangeInclusive<u64>| -> Vec<u64> {
        range.filter(|seq| seq.is_multiple_of(3)).collect()
    };
    let audits_of = |range: std::ops::RangeInclusive<u64>| -> Vec<u64> {
        range.filter(|seq| seq.is_multiple_of(4)).collect()
    };
    assert_eq!(sequences(&instance, "errors"), errors_of(1..=300));
    assert_eq!(sequences(&instance, "audit"), audits_of(1..=300));
    let unrouted = (1..=300u64)
        .filter(|s| !s.is_multiple_of(3) && !s.is_multiple_of(4))
        .count() as f64;
    assert_eq!(
        metric(
            &instance,
            "log_capturer_dropped_total{component=\"split\",reason=\"unrouted\"}"
        ),
        unrouted
    );
    assert_eq!(
        metric(
            &instance,
            "log_capturer_route_events_total{component=\"split\",output=\"audit\"}"
        ),
        75.0
    );

    // A restart reads on from the committed offset: nothing of the first 300 lines again.
    let (status, _) = instance.terminate(Duration::from_secs(30));
    assert!(status.success());
    let size = append_routed(&instance, 301..=400);
    instance.spawn(&[], &[]);
    committed_to(&instance, size);
    assert_eq!(sequences(&instance, "errors"), errors_of(1..=400));
    assert_eq!(sequences(&instance, "audit"), audits_of(1..=400));
}
