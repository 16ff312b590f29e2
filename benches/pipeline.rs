//! In-process pipeline throughput: generator -> passthrough transform -> blackhole sink,
//! built by the real topology code from a real configuration, with metrics installed.
//!
//! Run: `cargo bench --bench pipeline`. Criterion reports lines/s ("elem/s").

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use log_capturer::components::telemetry::HealthRegistry;
use log_capturer::config::validate;
use log_capturer::telemetry::Telemetry;
use log_capturer::topology;
use serde_json::json;

const LINES: u64 = 2_000_000;

fn pipeline(c: &mut Criterion) {
    let telemetry = Telemetry::install().expect("telemetry");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let data_dir = std::env::temp_dir();
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

criterion_group!(benches, pipeline);
criterion_main!(benches);
