//! `log-capturer tap` and `GET /tap/COMPONENT` against real running instances: events of the
//! default configuration's demo source as JSON lines, sampling, the API token, refusals, and a
//! tapper that never reads costing the pipeline nothing but counted drops.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Instance, run_cli_with_env, wait_for};

fn tap(instance: &Instance, args: &[&str]) -> (i32, String, String) {
    let url = instance.url("");
    let mut all = vec!["tap"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--url", &url]);
    let output = run_cli_with_env(&all, &[]);
    (
        output.status.code().expect("exit code"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn seq(event: &serde_json::Value) -> u64 {
    let line = event["line"].as_str().unwrap();
    line.strip_prefix("seq=")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn tap_prints_the_demo_sources_events_of_the_default_configuration_as_json_lines() {
    let instance = Instance::start(&common::default_like_config());
    let (code, stdout, stderr) = tap(&instance, &["demo", "--limit", "3"]);
    assert_eq!(code, 0, "{stderr}");
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3, "{stdout}");
    for event in &events {
        assert_eq!(event["component"], "demo");
        assert_eq!(event["source"], "demo");
        assert_eq!(event["labels"]["job"], "demo");
        assert!(
            event["line"]
                .as_str()
                .unwrap()
                .contains("hello from log-capturer")
        );
        event["timestamp"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap();
    }
    // Consecutive events, as the source emitted them.
    assert_eq!(seq(&events[1]), seq(&events[0]) + 1);
    // One in two with --sample-rate 0.5.
    let (code, stdout, _) = tap(&instance, &["demo", "--limit", "2", "--sample-rate", "0.5"]);
    assert_eq!(code, 0);
    let sampled: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(seq(&sampled[1]), seq(&sampled[0]) + 2, "{stdout}");
    // A sink cannot be tapped; the answer lists what can.
    let (code, _, stderr) = tap(&instance, &["console"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("404") && stderr.contains("\"demo\""),
        "{stderr}"
    );
    let (status, body) = instance.get("/tap/demo?limit=0");
    assert_eq!(status, http::StatusCode::BAD_REQUEST);
    assert!(body.contains("limit"), "{body}");
}

#[test]
fn with_an_api_token_the_tap_needs_it() {
    let instance = Instance::start(
        r#"
data_dir: "{dir}/data"
api: {listen: "127.0.0.1:{port}", token: "tap-secret-1"}
sources:
  gen: {type: generator, rate: 20, labels: {job: t}}
sinks:
  out: {type: blackhole, inputs: [gen]}
"#,
    );
    let (code, stdout, stderr) = tap(&instance, &["gen", "--limit", "1"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stderr.contains("401") && stderr.contains("--token"),
        "{stderr}"
    );
    let (code, stdout, stderr) = tap(
        &instance,
        &["gen", "--limit", "1", "--token", "tap-secret-1"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 1);
}

#[test]
fn a_tapper_that_never_reads_does_not_slow_the_pipeline() {
    let instance = Instance::start(
        r#"
data_dir: "{dir}/data"
api: {listen: "127.0.0.1:{port}"}
sources:
  gen: {type: generator, rate: 0, count: 200000, line_bytes: 200, labels: {job: t}}
sinks:
  out: {type: blackhole, inputs: [gen]}
"#,
    );
    // A tap asked for and never read: its socket buffers fill, then its channel, then it drops.
    let mut stuck = std::net::TcpStream::connect(("127.0.0.1", instance.port)).unwrap();
    write!(
        stuck,
        "GET /tap/gen?limit=1000000 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    let metric = |metrics: &str, name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or(0.0)
    };
    wait_for(
        "every generated line delivered past the stuck tap",
        Duration::from_secs(60),
        || {
            let (_, metrics) = instance.get("/metrics");
            (metric(
                &metrics,
                "log_capturer_logs_processed_total{component=\"out\"}",
            ) >= 200_000.0)
                .then_some(())
        },
    );
    let (_, metrics) = instance.get("/metrics");
    assert!(
        metric(
            &metrics,
            "log_capturer_tap_dropped_total{component=\"gen\"}"
        ) > 0.0,
        "the stuck tap's drops are counted:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("tap"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(stuck);
}
