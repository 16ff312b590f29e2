//! In-process pipeline throughput: generator -> passthrough transform -> blackhole sink,
//! built by the real topology code from a real configuration, with metrics installed.
//!
//! Run: `cargo bench --bench pipeline`. Criterion reports lines/s ("elem/s").

// A failure in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use log_capturer::components::telemetry::HealthRegistry;
use log_capturer::config::validate;
use log_capturer::telemetry::Telemetry;
use log_capturer::topology;
use serde_json::json;

const LINES: u64 = 2_000_000;

fn pipeline(c: &mut Criterion) {
    let telemetry =
        Telemetry::install(&Default::default(), &Default::default()).expect("telemetry");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Positions and dead-letter queues go to a directory of the bench's own.
    let scratch = tempfile::tempdir().expect("temp dir");
    let data_dir = scratch.path().to_path_buf();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(LINES));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    {
        let line_bytes = 100usize;
        let config = validate(json!({
            "sources": {"gen": {"type": "generator", "count": LINES, "rate": 0, "line_bytes": line_bytes, "labels": {"job": "bench"}}},
            "transforms": {"noop": {"type": "passthrough", "inputs": ["gen"]}},
            "sinks": {"out": {"type": "blackhole", "inputs": ["noop"]}},
        }))
        .expect("valid bench configuration");
        group.bench_function(
            format!("generator_passthrough_blackhole_{line_bytes}B"),
            |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let health = HealthRegistry::default();
                        let started = Instant::now();
                        runtime.block_on(async {
                            let mut running = topology::start(&config, &health, &data_dir)
                                .expect("topology starts");
                            running.wait_finished().await;
                        });
                        total += started.elapsed();
                    }
                    total
                });
            },
        );
    }
    group.finish();
    telemetry.shutdown();
}

/// The file source alone: 100-byte lines read, split and batched, batches dropped (acknowledged)
/// as they arrive; the figure is the source's ceiling, without any sink.
fn file_source(c: &mut Criterion) {
    use futures::StreamExt;
    use log_capturer::components::SourceContext;
    use log_capturer::components::registry::SourceConfig;
    use log_capturer::components::shutdown::shutdown_pair;
    use std::io::Write;

    const FILE_LINES: u64 = 1_000_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("input dir");
    {
        let mut writer =
            std::io::BufWriter::new(std::fs::File::create(input.join("bench.log")).expect("file"));
        for seq in 0..FILE_LINES {
            // 99 bytes + newline.
            writeln!(writer, "seq={seq:010} {:.<84}", "").expect("write");
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = SourceConfig::parse(
        "sources.bench",
        "file",
        json!({"include": [format!("{}/*.log", input.display())]}),
    )
    .expect("valid file source");
    let mut group = c.benchmark_group("file_source");
    group.throughput(Throughput::Elements(FILE_LINES));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("read_split_batch_100B_lines", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let data_dir = dir.path().join(format!("data-{i}"));
                let (trigger, signal) = shutdown_pair();
                let health = HealthRegistry::default();
                let started = Instant::now();
                runtime.block_on(async {
                    let cx = SourceContext {
                        key: "bench".into(),
                        shutdown: signal,
                        health: health.register(
                            "bench",
                            log_capturer::components::telemetry::ComponentKind::Source,
                        ),
                        data_dir: data_dir.clone(),
                        finishing: Default::default(),
                    };
                    let mut stream = config.build(cx).expect("file source starts");
                    let mut lines = 0u64;
                    while lines < FILE_LINES {
                        match stream.next().await {
                            Some(batch) => lines += batch.len() as u64,
                            None => break,
                        }
                    }
                    total += started.elapsed();
                    trigger.trigger();
                    while stream.next().await.is_some() {}
                });
                let _ = std::fs::remove_dir_all(&data_dir);
            }
            total
        });
    });
    group.finish();
}

/// Loki push encoding: grouping into streams, sorting, protobuf + snappy or JSON (+ gzip), for
/// batches of 1000 100-byte lines in 4 streams.
fn loki_encode(c: &mut Criterion) {
    use bytes::Bytes;
    use log_capturer::components::event::{Labels, LogEvent};
    use log_capturer::components::sinks::loki::{JsonCompression, LokiEncoding, LokiSinkConfig};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let streams: Vec<Labels> = (0..4)
        .map(|i| Labels::new([("job", "bench".to_string()), ("pod", format!("pod-{i}"))]))
        .collect();
    let now = log_capturer::components::event::now_ns();
    // One source id shared by every event, as a real source shares it (the sink caches a
    // stream's rendered labels by the identity of the labels, source and file).
    let source: std::sync::Arc<str> = "bench".into();
    let events: Vec<LogEvent> = (0..1000u64)
        .map(|i| LogEvent {
            timestamp_ns: now + i as i64,
            observed_ns: now,
            line: Bytes::from(format!("seq={i:010} {:.<84}", "")),
            labels: streams[(i % 4) as usize].clone(),
            metadata: Vec::new(),
            source: source.clone(),
            file: None,
            replays: 0,
            fields: Default::default(),
        })
        .collect();
    let mut group = c.benchmark_group("loki_encode");
    group.throughput(Throughput::Elements(events.len() as u64));
    for (name, encoding, compression) in [
        (
            "protobuf_snappy",
            LokiEncoding::Protobuf,
            JsonCompression::None,
        ),
        ("json", LokiEncoding::Json, JsonCompression::None),
        ("json_gzip", LokiEncoding::Json, JsonCompression::Gzip),
    ] {
        let sink = LokiSinkConfig {
            endpoint: "http://127.0.0.1:3100".into(),
            encoding,
            compression,
            healthcheck: false,
            ..LokiSinkConfig::default()
        }
        .build("bench")
        .expect("sink");
        group.bench_function(name, |b| {
            b.iter(|| {
                sink.encode_batch(std::hint::black_box(&events))
                    .expect("encodes")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline, file_source, loki_encode);
criterion_main!(benches);
