//! The processing stages one by one, in lines per second ("elem/s") on 1000-line batches of
//! 100-byte lines, each stage built from its configuration as the topology builds it:
//!
//! - parsers: `json` (three named fields, and every key), `logfmt`, `regex` (an nginx-like
//!   access line);
//! - `timestamp` (RFC 3339 with nanoseconds, from a parsed field);
//! - `labels` (two labels from fields: 12 label sets interleaved line by line);
//! - `filter` (a pattern), `throttle` (a rate no line reaches, so all pass);
//! - `dedup` (all new lines);
//! - `chain`: json + timestamp + labels + dedup, the harness's `max-pipeline` stages.
//!
//! `multiline` is a stream transform (it holds lines across batches) and is measured by the
//! process tests and the harness, not here.
//!
//! Metrics are installed (as in the running binary), so per-batch metric updates are measured.
//! Run: `cargo bench --bench stages`; quick: `-- --warm-up-time 1 --measurement-time 2`.

// A failure in a bench helper is a failed bench.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::{Arc, Once};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use log_capturer::components::FunctionTransform;
use log_capturer::components::Transform;
use log_capturer::components::ack::Finalizers;
use log_capturer::components::event::{EventBatch, Labels, LogEvent, now_ns};
use log_capturer::components::registry::TransformConfig;
use log_capturer::telemetry::Telemetry;
use serde_json::json;

/// Events per batch.
const BATCH: usize = 1000;

const LEVELS: [&str; 4] = ["info", "warn", "error", "debug"];

/// Installs the metrics pipeline once for the whole run.
fn install_metrics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let telemetry =
            Telemetry::install(&Default::default(), &Default::default()).expect("telemetry");
        // Kept for the life of the process.
        std::mem::forget(telemetry);
    });
}

/// A stage of type `type_name` built from `settings`, as the topology builds it.
fn stage(type_name: &str, settings: serde_json::Value) -> Box<dyn FunctionTransform> {
    let config = TransformConfig::parse("bench", type_name, settings).expect("valid settings");
    match config.build("bench").expect("builds").0 {
        Transform::Function(function) => function,
        _ => panic!("{type_name} is not a function transform"),
    }
}

/// Pads `text` with dots to 99 bytes (a 100-byte line without its newline).
fn padded(mut text: String, close: &str) -> Bytes {
    let room = 99usize.saturating_sub(text.len() + close.len());
    text.extend(std::iter::repeat_n('.', room));
    text.push_str(close);
    Bytes::from(text)
}

/// The line `seq` in `format`: a JSON object, logfmt, or an nginx-like access line.
fn line(format: &str, seq: u64) -> Bytes {
    let level = LEVELS[(seq % 4) as usize];
    let service = (seq / 4) % 3;
    match format {
        "json" => padded(
            format!(
                r#"{{"ts":"2026-12-02T10:00:00.{:09}Z","level":"{level}","service":"s{service}","msg":"{seq} "#,
                seq % 1_000_000_000
            ),
            "\"}",
        ),
        "logfmt" => padded(
            format!("ts=2026-12-02T10:00:00Z level={level} service=s{service} msg=\"{seq} "),
            "\"",
        ),
        _ => padded(
            format!(
                "10.0.0.{} - - [02/Dec/2026:10:00:00 +0000] \"GET /item/{seq} HTTP/1.1\" 200 512 ",
                seq % 250
            ),
            "",
        ),
    }
}

/// `BATCH` events of lines in `format` from `first`, as the file source makes them.
fn events(format: &str, first: u64) -> Vec<LogEvent> {
    let labels = Labels::new([("job", "bench")]);
    let source: Arc<str> = "bench".into();
    let file: Arc<str> = "/var/log/app/bench.log".into();
    let now = now_ns();
    (first..first + BATCH as u64)
        .map(|seq| LogEvent {
            timestamp_ns: now,
            observed_ns: now,
            line: line(format, seq),
            labels: labels.clone(),
            metadata: Vec::new(),
            source: source.clone(),
            file: Some(file.clone()),
            replays: 0,
            fields: Default::default(),
        })
        .collect()
}

/// Benchmarks `stages` applied in order to fresh batches of `format` lines, after `before` ran
/// on them outside the measurement (to give a later stage its input fields).
fn bench(
    c: &mut Criterion,
    name: &str,
    format: &'static str,
    mut before: Vec<Box<dyn FunctionTransform>>,
    mut stages: Vec<Box<dyn FunctionTransform>>,
) {
    let mut group = c.benchmark_group("stages");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut seq = 0u64;
    group.bench_function(name, |b| {
        b.iter_batched(
            || {
                let mut batch = EventBatch::new(events(format, seq), Finalizers::default());
                seq += BATCH as u64;
                for stage in &mut before {
                    stage.transform(&mut batch);
                }
                batch
            },
            |mut batch| {
                for stage in &mut stages {
                    stage.transform(black_box(&mut batch));
                }
                batch
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn json_fields() -> serde_json::Value {
    json!({"fields": {"ts": "ts", "level": "level", "service": "service"}})
}

fn timestamp() -> serde_json::Value {
    json!({"field": "ts", "format": "rfc3339"})
}

fn labels() -> serde_json::Value {
    json!({"from_fields": {"level": "level", "service": "service"}})
}

fn stages(c: &mut Criterion) {
    install_metrics();
    bench(
        c,
        "json_3_fields",
        "json",
        vec![],
        vec![stage("json", json_fields())],
    );
    bench(
        c,
        "json_every_key",
        "json",
        vec![],
        vec![stage("json", json!({}))],
    );
    bench(
        c,
        "logfmt",
        "logfmt",
        vec![],
        vec![stage("logfmt", json!({}))],
    );
    bench(
        c,
        "regex_access_line",
        "access",
        vec![],
        vec![stage(
            "regex",
            json!({"pattern": r#"^(?P<addr>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) [^"]*" (?P<status>\d{3})"#}),
        )],
    );
    bench(
        c,
        "timestamp_rfc3339",
        "json",
        vec![stage("json", json_fields())],
        vec![stage("timestamp", timestamp())],
    );
    bench(
        c,
        "labels_2_from_fields",
        "json",
        vec![stage("json", json_fields())],
        vec![stage("labels", labels())],
    );
    bench(
        c,
        "filter_pattern",
        "json",
        vec![],
        vec![stage(
            "filter",
            json!({"pattern": "error", "action": "drop"}),
        )],
    );
    bench(
        c,
        "throttle_all_pass",
        "json",
        vec![],
        vec![stage("throttle", json!({"rate": 1.0e12}))],
    );
    bench(
        c,
        "dedup_unique",
        "json",
        vec![],
        vec![stage("dedup", json!({}))],
    );
    bench(
        c,
        "chain_json_timestamp_labels_dedup",
        "json",
        vec![],
        vec![
            stage("json", json_fields()),
            stage("timestamp", timestamp()),
            stage("labels", labels()),
            stage("dedup", json!({})),
        ],
    );
}

criterion_group!(benches, stages);
criterion_main!(benches);
