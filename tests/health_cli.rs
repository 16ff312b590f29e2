//! `log-capturer health` against real running instances: a healthy one exits 0, one whose Loki
//! is down (its sink pointing at a closed loopback port) exits 2 naming the failing check, and
//! no instance at all exits 2 naming `api`. The JSON report of `--output` says the same.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Instance, free_port, run_cli_with_env, wait_for};

fn health(instance_url: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["health", "--url", instance_url, "--interval", "500ms"];
    args.extend_from_slice(extra);
    let output = run_cli_with_env(&args, &[("NO_COLOR", "")]);
    (
        output.status.code().expect("exit code"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_healthy_shipper_passes_every_check() {
    let mut instance = Instance::prepare(
        r#"
data_dir: "{dir}/data"
api: {listen: "127.0.0.1:{port}"}
sources:
  gen: {type: generator, rate: 50, message: hello, labels: {job: t}}
  files: {type: file, include: ["{dir}/in/*.log"], read_from: beginning, labels: {job: f}}
transforms:
  dedup: {type: dedup, inputs: [gen, files]}
sinks:
  out: {type: file, inputs: [dedup], path: "{dir}/out.jsonl"}
"#,
    );
    std::fs::create_dir(instance.path("in")).unwrap();
    std::fs::write(instance.path("in/app.log"), "one\ntwo\nthree\n").unwrap();
    instance.spawn(&[], &[]);
    wait_for("lines delivered", Duration::from_secs(20), || {
        (common::line_count(&instance.path("out.jsonl")) > 10).then_some(())
    });
    let report = instance.path("report.json");
    let (code, stdout, stderr) = health(&instance.url(""), &["--output", report.to_str().unwrap()]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    for check in [
        "api",
        "ready",
        "component gen",
        "component dedup",
        "component out",
        "throughput",
        "queue out",
        "errors",
        "lost",
        "positions files",
        "dlq",
        "dedup dedup",
        "timestamps",
        "descriptors",
        "memory",
        "threads",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(check)),
            "no {check:?} row:\n{stdout}"
        );
    }
    assert!(
        stdout.trim_end().ends_with(": ok"),
        "verdict line:\n{stdout}"
    );
    // A pipe is not a terminal: no colour codes.
    assert!(!stdout.contains('\x1b'), "{stdout:?}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["failing"], serde_json::json!([]));
    assert!(json["checks"].as_array().unwrap().len() >= 10);
}

#[test]
fn a_shipper_whose_loki_is_down_is_critical_naming_the_sink() {
    // A port that was free a moment ago and that nothing listens on: Loki is down.
    let closed = free_port();
    let instance = Instance::start(&format!(
        r#"
data_dir: "{{dir}}/data"
api: {{listen: "127.0.0.1:{{port}}"}}
sources:
  gen: {{type: generator, rate: 50, message: hello, labels: {{job: t}}}}
sinks:
  loki:
    type: loki
    inputs: [gen]
    endpoint: "http://127.0.0.1:{closed}"
    healthcheck: false
    dispatcher: {{batch_timeout: 100ms, retry_max_delay: 500ms, max_retries: 1000}}
"#
    ));
    wait_for("the sink to fail a send", Duration::from_secs(20), || {
        let (_, body) = instance.get("/health");
        body.contains("\"healthy\": false").then_some(())
    });
    let report = instance.path("report.json");
    let (code, stdout, stderr) = health(&instance.url(""), &["--output", report.to_str().unwrap()]);
    assert_eq!(code, 2, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let verdict = stdout.lines().last().unwrap();
    assert!(
        verdict.contains("CRITICAL") && verdict.contains("component loki"),
        "verdict: {verdict}\n{stdout}"
    );
    let row = stdout
        .lines()
        .find(|l| l.starts_with("component loki"))
        .unwrap();
    assert!(
        row.contains("CRITICAL") && row.contains("connection"),
        "{row}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("errors loki")),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["status"], "critical");
    assert_eq!(json["failing"][0], "component loki");
}

#[test]
fn no_instance_is_critical_naming_the_api() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let (code, stdout, _) = health(&url, &[]);
    assert_eq!(code, 2, "{stdout}");
    let verdict = stdout.lines().last().unwrap();
    assert!(verdict.ends_with("CRITICAL (api)"), "{stdout}");
    assert!(stdout.contains("unreachable"), "{stdout}");
}
