//! The hot paths one by one, each in lines per second ("elem/s"):
//!
//! - `line_split`: the file source's line splitter over a 1 MiB read of 100-byte lines.
//! - `dedup`: 1000-line batches through the `dedup` transform, all new lines (the common case)
//!   and all duplicates.
//! - `labels`: the Loki sink grouping 1000 events into streams with a `{{ file }}` label template
//!   (labels rendered, merged and formatted), and rendering the template alone.
//! - `batching`: 1000-event batches through a sink queue, and through queue + dispatcher +
//!   `blackhole` sink (batch building, sending and acknowledging).
//!
//! Metrics are installed (as in the running binary), so per-batch metric updates are measured.
//! Run: `cargo bench --bench hot_paths`; quick: `-- --warm-up-time 1 --measurement-time 2`.

// A failure in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use log_capturer::components::FunctionTransform;
use log_capturer::components::ack::{BatchNotifier, BatchStatusReceiver, Finalizers};
use log_capturer::components::dispatcher::{Dispatcher, DispatcherConfig};
use log_capturer::components::event::{EventBatch, Labels, LogEvent, now_ns};
use log_capturer::components::queue::{WhenFull, queue};
use log_capturer::components::sinks::blackhole::Blackhole;
use log_capturer::components::sinks::loki::{LabelTemplate, LokiSinkConfig};
use log_capturer::components::sources::file::lines::{InvalidUtf8, LineSplitter, Oversize};
use log_capturer::components::telemetry::{ComponentKind, HealthRegistry};
use log_capturer::components::transforms::dedup::DedupConfig;
use log_capturer::telemetry::Telemetry;

/// Events per batch in every group but `line_split`.
const BATCH: usize = 1000;

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

/// A 100-byte line (99 bytes and the newline left out) with a sequence number.
fn line(seq: u64) -> Bytes {
    Bytes::from(format!("seq={seq:010} {:.<84}", ""))
}

/// `n` events from one file source: source, file and labels shared, as the file source makes them.
fn events(first_seq: u64, n: usize) -> Vec<LogEvent> {
    let labels = Labels::new([("job", "bench"), ("host", "h1")]);
    let source: Arc<str> = "bench".into();
    let file: Arc<str> = "/var/log/app/bench.log".into();
    let now = now_ns();
    (0..n as u64)
        .map(|i| LogEvent {
            timestamp_ns: now + i as i64,
            observed_ns: now,
            line: line(first_seq + i),
            labels: labels.clone(),
            metadata: Vec::new(),
            source: source.clone(),
            file: Some(file.clone()),
            replays: 0,
            fields: Default::default(),
        })
        .collect()
}

fn line_split(c: &mut Criterion) {
    const LINE_BYTES: usize = 100;
    const BUFFER_BYTES: usize = 1024 * 1024;
    let lines = BUFFER_BYTES / LINE_BYTES;
    let mut buffer = Vec::with_capacity(BUFFER_BYTES);
    for seq in 0..lines as u64 {
        buffer.extend_from_slice(&line(seq)[..LINE_BYTES - 1]);
        buffer.push(b'\n');
    }
    let mut group = c.benchmark_group("line_split");
    group.throughput(Throughput::Elements(lines as u64));
    group.bench_function("1MiB_of_100B_lines", |b| {
        // The file source's defaults: 256 KiB lines at most, truncate, keep invalid UTF-8.
        let mut splitter = LineSplitter::new(256 * 1024, Oversize::Truncate, InvalidUtf8::Keep);
        b.iter_batched(
            || BytesMut::from(&buffer[..]),
            |mut buf| {
                let split = splitter.split(&mut buf, false);
                assert_eq!(split.lines.len(), lines);
                split
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn dedup(c: &mut Criterion) {
    install_metrics();
    let mut group = c.benchmark_group("dedup");
    group.throughput(Throughput::Elements(BATCH as u64));

    group.bench_function("unique_1000x100B", |b| {
        // Default settings: 100 000 entries, 5m ttl. After 100 batches the cache is full and
        // every new line pushes out the oldest one (the steady state).
        let mut dedup = DedupConfig::default().dedup("bench").expect("dedup");
        let mut seq = 0u64;
        b.iter_batched(
            || {
                let batch = EventBatch::new(events(seq, BATCH), Finalizers::default());
                seq += BATCH as u64;
                batch
            },
            |mut batch| {
                dedup.transform(&mut batch);
                assert_eq!(batch.len(), BATCH);
                batch
            },
            BatchSize::SmallInput,
        );
    });

    group.bench_function("duplicates_1000x100B", |b| {
        let mut dedup = DedupConfig::default().dedup("bench").expect("dedup");
        let seen = events(0, BATCH);
        dedup.transform(&mut EventBatch::new(seen.clone(), Finalizers::default()));
        b.iter_batched(
            || EventBatch::new(seen.clone(), Finalizers::default()),
            |mut batch| {
                dedup.transform(&mut batch);
                assert!(batch.is_empty());
                batch
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn labels(c: &mut Criterion) {
    install_metrics();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let sink = LokiSinkConfig {
        endpoint: "http://127.0.0.1:3100".into(),
        labels: BTreeMap::from([
            ("job".to_string(), "app".to_string()),
            ("file".to_string(), "{{ file }}".to_string()),
        ]),
        healthcheck: false,
        ..LokiSinkConfig::default()
    }
    .build("bench")
    .expect("sink");
    let now = now_ns();
    let files: Vec<Arc<str>> = (0..10)
        .map(|i| format!("/var/log/app/app-{i}.log").into())
        .collect();
    let source: Arc<str> = "bench".into();
    let host = Labels::new([("host", "h1")]);
    // As the file source makes them: ten files, each file's name and labels shared.
    let shared: Vec<LogEvent> = (0..BATCH)
        .map(|i| LogEvent {
            timestamp_ns: now + i as i64,
            observed_ns: now,
            line: line(i as u64),
            labels: host.clone(),
            metadata: Vec::new(),
            source: source.clone(),
            file: Some(files[i % files.len()].clone()),
            replays: 0,
            fields: Default::default(),
        })
        .collect();
    // The worst case: every event with labels and a file name of its own (equal contents, other
    // allocations), so the per-batch cache by identity never hits.
    let apart: Vec<LogEvent> = shared
        .iter()
        .map(|e| LogEvent {
            labels: Labels::new([("host", "h1")]),
            file: e.file.as_deref().map(Arc::from),
            replays: 0,
            fields: Default::default(),
            ..e.clone()
        })
        .collect();

    let mut group = c.benchmark_group("labels");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("group_streams_10_files_shared", |b| {
        b.iter(|| {
            let streams = sink.group_streams(black_box(&shared));
            assert_eq!(streams, files.len());
        })
    });
    group.bench_function("group_streams_10_files_apart", |b| {
        b.iter(|| {
            let streams = sink.group_streams(black_box(&apart));
            assert_eq!(streams, files.len());
        })
    });
    let template = LabelTemplate::parse("{{ file }}").expect("template");
    group.bench_function("render_file_template", |b| {
        b.iter(|| {
            for event in black_box(&shared) {
                black_box(template.render(event));
            }
        })
    });
    group.finish();
}

/// Batches built outside the timed part, in chunks of this many.
const CHUNK: u64 = 64;

/// `n` batches of [`BATCH`] events, each with an acknowledgement its receiver waits for.
fn batches(n: u64, template: &[LogEvent]) -> (Vec<EventBatch>, Vec<BatchStatusReceiver>) {
    (0..n)
        .map(|_| {
            let (notifier, receiver) = BatchNotifier::new_with_receiver();
            (
                EventBatch::new(template.to_vec(), Finalizers::new(notifier)),
                receiver,
            )
        })
        .unzip()
}

fn batching(c: &mut Criterion) {
    install_metrics();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let template = events(0, BATCH);
    let mut group = c.benchmark_group("batching");
    group.throughput(Throughput::Elements(BATCH as u64));

    group.bench_function("queue_send_recv_1000", |b| {
        // A sink queue (counted in the metrics) at its default capacity.
        let (tx, mut rx) = queue(50_000, usize::MAX, WhenFull::Block, Some("bench"));
        b.iter_custom(|iters| {
            in_chunks(iters, |n| {
                let (input, acks) = batches(n, &template);
                let mut output = Vec::with_capacity(input.len());
                let started = Instant::now();
                runtime.block_on(async {
                    for batch in input {
                        tx.send(batch).await.expect("queue open");
                        output.push(rx.recv().await.expect("a batch"));
                    }
                });
                let elapsed = started.elapsed();
                drop((output, acks));
                elapsed
            })
        });
    });

    group.bench_function("queue_dispatcher_blackhole_1000", |b| {
        // Default dispatcher settings: batches of 1000, 4 workers.
        let config = DispatcherConfig::default();
        let health = HealthRegistry::default();
        b.iter_custom(|iters| {
            in_chunks(iters, |n| {
                let (input, acks) = batches(n, &template);
                let (settings_tx, settings) = tokio::sync::watch::channel(config.clone());
                let dispatcher = Dispatcher::new(
                    "bench",
                    Arc::new(Blackhole),
                    settings,
                    health.register("bench", ComponentKind::Sink),
                );
                let started = Instant::now();
                runtime.block_on(async {
                    let (tx, rx) = queue(
                        config.queue_size,
                        config.queue_max_bytes,
                        config.when_full,
                        Some("bench"),
                    );
                    let running = tokio::spawn(dispatcher.run(rx));
                    for batch in input {
                        tx.send(batch).await.expect("queue open");
                    }
                    drop(tx);
                    running.await.expect("dispatcher finishes");
                });
                let elapsed = started.elapsed();
                drop((settings_tx, acks));
                elapsed
            })
        });
    });
    group.finish();
}

/// Runs `iters` iterations in chunks of at most [`CHUNK`] (so the batches prepared for a chunk
/// fit in memory) and adds up the time each chunk reports.
fn in_chunks(iters: u64, mut chunk: impl FnMut(u64) -> Duration) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        left -= n;
        total += chunk(n);
    }
    total
}

criterion_group!(benches, line_split, dedup, labels, batching);
criterion_main!(benches);
