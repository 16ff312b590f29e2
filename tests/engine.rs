//! Process-level tests of the engine: the real binary, real files, real HTTP, real signals.

// A failure in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Instance, http, line_count, run_cli, wait_for};
use http::{Method, StatusCode};

const GENERATOR_TO_FILE: &str = r#"
data_dir: "{dir}/data"
api: {listen: "127.0.0.1:{port}"}
sources:
  gen: {type: generator, count: 100000, rate: 0}
sinks:
  out: {type: file, inputs: [gen], path: "{dir}/out/out.jsonl"}
"#;

#[test]
fn generator_to_file_writes_every_line_once_and_exits_zero_on_sigterm() {
    let mut instance = Instance::start(GENERATOR_TO_FILE);
    let out = instance.path("out/out.jsonl");
    wait_for(
        "100000 lines in the output",
        Duration::from_secs(60),
        || (line_count(&out) >= 100_000).then_some(()),
    );
    let (status, output) = instance.terminate(Duration::from_secs(30));
    assert!(
        status.success(),
        "exit status {status}; stderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let text = std::fs::read_to_string(&out).unwrap();
    let mut seen = HashSet::new();
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            record["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
        assert!(record["labels"].is_object());
        let seq: u64 = record["line"]
            .as_str()
            .and_then(|l| l.strip_prefix("seq="))
            .and_then(|l| l.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no sequence number in {line}"));
        assert!(seen.insert(seq), "sequence {seq} written twice");
    }
    assert_eq!(seen.len(), 100_000);
    assert!((1..=100_000).all(|n| seen.contains(&n)));
}

fn validate_errors(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, config).unwrap();
    let output = run_cli(&["validate", "--config", path.to_str().unwrap()]);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn validate_names_the_broken_key_and_exits_nonzero() {
    let base = "
sources:
  gen: {type: generator, count: 10}
sinks:
  out: {type: file, inputs: [gen], path: /tmp/lc-validate/out.jsonl}
";
    let (ok, stderr) = validate_errors(base);
    assert!(ok, "{stderr}");

    let (ok, stderr) = validate_errors(&base.replace("inputs: [gen]", "inputs: [nope]"));
    assert!(!ok);
    assert!(
        stderr.contains("sinks.out.inputs: unknown input `nope`"),
        "{stderr}"
    );

    let (ok, stderr) = validate_errors(&format!("{base}dispatcher: {{batch_sise: 10}}\n"));
    assert!(!ok);
    assert!(
        stderr.contains("dispatcher.batch_sise: unknown key (hint: did you mean `batch_size`?)"),
        "{stderr}"
    );

    let (ok, stderr) = validate_errors(&format!("{base}dispatcher: {{batch_timeout: soon}}\n"));
    assert!(!ok);
    assert!(
        stderr.contains("dispatcher.batch_timeout: invalid duration \"soon\""),
        "{stderr}"
    );

    let (ok, stderr) = validate_errors(
        "
sources:
  gen: {type: generator}
transforms:
  a: {type: filter, pattern: x, inputs: [gen, b]}
  b: {type: filter, pattern: y, inputs: [a]}
sinks:
  out: {type: blackhole, inputs: [b]}
",
    );
    assert!(!ok);
    assert!(stderr.contains("cycle"), "{stderr}");
}

#[test]
fn validate_print_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "api: {listen: '0.0.0.0:18499', token: hunter2}
sources:
  gen: {type: generator}
sinks:
  out: {type: blackhole, inputs: [gen]}
",
    )
    .unwrap();
    let output = run_cli(&["validate", "--print", "--config", path.to_str().unwrap()]);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("<redacted>"), "{stdout}");
    assert!(!stdout.contains("hunter2"), "{stdout}");
}

const RELOADABLE: &str = r#"
data_dir: "{dir}/data"
api: {listen: "127.0.0.1:{port}"}
dispatcher: {batch_size: BATCH, queue_size: QUEUE}
sources:
  gen: {type: generator, rate: 100}
sinks:
  out: {type: file, inputs: [gen], path: "{dir}/out.jsonl"}
"#;

fn reloadable(batch: u32, queue: u32) -> String {
    RELOADABLE
        .replace("BATCH", &batch.to_string())
        .replace("QUEUE", &queue.to_string())
}

fn running_config(instance: &Instance) -> serde_json::Value {
    let (status, body) = instance.get("/config");
    assert_eq!(status, StatusCode::OK);
    serde_json::from_str(&body).unwrap()
}

#[test]
fn reload_applies_live_keys_names_restart_keys_and_keeps_running_on_bad_config() {
    let mut instance = Instance::start(&reloadable(100, 1000));

    instance.write_config(&reloadable(250, 1000));
    let (status, body) = instance.post("/config/reload");
    assert_eq!(status, StatusCode::OK, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["status"], "applied", "{body}");
    assert_eq!(
        report["applied"],
        serde_json::json!(["dispatcher.batch_size"])
    );
    assert_eq!(running_config(&instance)["dispatcher"]["batch_size"], 250);

    instance.write_config(&reloadable(250, 2000));
    let (status, body) = instance.post("/config/reload");
    assert_eq!(status, StatusCode::OK, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["status"], "restart_required", "{body}");
    assert_eq!(
        report["restart_required"],
        serde_json::json!(["dispatcher.queue_size"])
    );
    assert!(
        report["message"]
            .as_str()
            .unwrap()
            .contains("Restart required")
    );
    assert_eq!(running_config(&instance)["dispatcher"]["queue_size"], 1000);

    instance.write_config("sources: [this is: not: valid yaml");
    let (status, body) = instance.post("/config/reload");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["status"], "invalid");
    assert!(!report["errors"].as_array().unwrap().is_empty());
    // Still running the old configuration, and still delivering.
    assert_eq!(running_config(&instance)["dispatcher"]["batch_size"], 250);
    let out = instance.path("out.jsonl");
    let before = line_count(&out);
    wait_for(
        "more lines after the refused reload",
        Duration::from_secs(20),
        || (line_count(&out) > before).then_some(()),
    );
    let (status, _) = instance.get("/health");
    assert_eq!(status, StatusCode::OK);

    // A stage added in front of the sink: the answer names it as a change of the pipeline's
    // shape that needs a restart, and the running pipeline goes on unchanged.
    let with_stage = reloadable(250, 1000).replace(
        "sinks:\n  out: {type: file, inputs: [gen],",
        "transforms:\n  f: {type: filter, inputs: [gen], pattern: x}\nsinks:\n  out: {type: file, inputs: [f],",
    );
    assert!(with_stage.contains("inputs: [f]"), "{with_stage}");
    instance.write_config(&with_stage);
    let (status, body) = instance.post("/config/reload");
    assert_eq!(status, StatusCode::OK, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["status"], "restart_required", "{body}");
    assert_eq!(
        report["added"],
        serde_json::json!(["transforms.f"]),
        "{body}"
    );
    assert_eq!(
        report["restart_required"],
        serde_json::json!(["transforms.f", "sinks.out.inputs"]),
        "{body}"
    );
    assert!(
        report["message"]
            .as_str()
            .unwrap()
            .contains("transforms.f added"),
        "{body}"
    );
    assert!(running_config(&instance)["transforms"].get("f").is_none());

    // SIGHUP reloads the same way.
    instance.write_config(&reloadable(300, 1000));
    instance.signal(libc::SIGHUP);
    wait_for("SIGHUP reload applied", Duration::from_secs(20), || {
        (running_config(&instance)["dispatcher"]["batch_size"] == 300).then_some(())
    });
    let (status, output) = instance.terminate(Duration::from_secs(30));
    assert!(
        status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

const DEDUP_RELOAD: &str = r#"
data_dir: "{dir}/data"
api: {listen: "127.0.0.1:{port}"}
sources:
  app: {type: file, include: ["{dir}/in/*.log"]}
transforms:
  d: {type: dedup, inputs: [app], ttl: 1h, include_timestamp: INCLUDE}
sinks:
  out: {type: file, inputs: [d], path: "{dir}/out.jsonl", dispatcher: {batch_timeout: 50ms}}
"#;

/// Appends `text` to `path` (created if missing).
fn append(path: &std::path::Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn delivered_lines(instance: &Instance) -> Vec<String> {
    std::fs::read_to_string(instance.path("out.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["line"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[test]
fn dedup_settings_reload_live() {
    let mut instance = Instance::prepare(&DEDUP_RELOAD.replace("INCLUDE", "false"));
    std::fs::create_dir_all(instance.path("in")).unwrap();
    instance.spawn(&[], &[]);
    let log = instance.path("in/app.log");
    let wait_marker = |instance: &Instance, marker: &str| {
        wait_for(marker, Duration::from_secs(30), || {
            let lines = delivered_lines(instance);
            lines.iter().any(|l| l == marker).then_some(lines)
        })
    };

    append(&log, "same line\nsame line\nmarker 1\n");
    assert_eq!(
        wait_marker(&instance, "marker 1"),
        ["same line", "marker 1"]
    );

    // The timestamp joins the key: the line read again later is no longer a duplicate.
    instance.write_config(&DEDUP_RELOAD.replace("INCLUDE", "true"));
    let (status, body) = instance.post("/config/reload");
    assert_eq!(status, StatusCode::OK, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["status"], "applied", "{body}");
    assert_eq!(
        report["applied"],
        serde_json::json!(["transforms.d.include_timestamp"])
    );
    append(&log, "same line\nmarker 2\n");
    assert_eq!(
        wait_marker(&instance, "marker 2"),
        ["same line", "marker 1", "same line", "marker 2"]
    );
    let (status, output) = instance.terminate(Duration::from_secs(30));
    assert!(
        status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn embedded_default_runs_reports_health_and_counts_lines() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let listen = format!("api.listen=127.0.0.1:{port}");
    // The default configuration writes under ./data: run it where that is a scratch directory.
    let child = std::process::Command::new(common::binary())
        .args(["--set", &listen])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let series = "log_capturer_logs_processed_total{component=\"console\"}";
    let first = wait_for(
        "the console sink to deliver",
        Duration::from_secs(30),
        || {
            let (_, metrics) = http(Method::GET, &url("/metrics"), None).ok()?;
            metric_value(&metrics, series).filter(|v| *v > 0.0)
        },
    );
    wait_for(
        "logs_processed_total to grow",
        Duration::from_secs(30),
        || {
            let (_, metrics) = http(Method::GET, &url("/metrics"), None).ok()?;
            metric_value(&metrics, series).filter(|v| *v > first)
        },
    );
    let (status, body) = http(Method::GET, &url("/health"), None).unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, metrics) = http(Method::GET, &url("/metrics"), None).unwrap();
    assert!(!metrics.contains("otel_scope"), "{metrics}");
    assert!(!metrics.contains("_total_total"), "{metrics}");
    assert!(metrics.contains("log_capturer_build_info{"), "{metrics}");

    // SAFETY: kill(2) on our own child with a valid signal.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.lines().any(|l| l.starts_with("seq=1 ")), "{stdout}");
}

#[test]
fn environment_and_set_override_the_file() {
    let instance = Instance::start_with(
        &reloadable(100, 1000),
        &["--set", "dispatcher.worker_count=3"],
        &[("LOG_CAPTURER_DISPATCHER__BATCH_SIZE", "77")],
    );
    let config = running_config(&instance);
    assert_eq!(config["dispatcher"]["batch_size"], 77);
    assert_eq!(config["dispatcher"]["worker_count"], 3);
}

#[test]
fn unopenable_sink_file_fails_start_naming_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "a file where a directory should be").unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {}/data
api: {{enabled: false}}
sources:
  gen: {{type: generator}}
sinks:
  out: {{type: file, inputs: [gen], path: {}/out.jsonl}}
",
            dir.path().display(),
            blocker.display()
        ),
    )
    .unwrap();
    let output = run_cli(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("out: cannot open"), "{stderr}");
}

#[test]
fn api_answers_unknown_paths_and_methods_clearly() {
    let instance = Instance::start(&reloadable(100, 1000));
    let (status, body) = instance.get("/nope");
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("/health"));
    let (status, _) = instance.post("/health");
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, body) = instance.get("/ready");
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[test]
fn token_guards_reload() {
    let config = reloadable(100, 1000).replace(
        "api: {listen: \"127.0.0.1:{port}\"}",
        "api: {listen: \"127.0.0.1:{port}\", token: s3cret}",
    );
    let instance = Instance::start(&config);
    let (status, _) = instance.post("/config/reload");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = http(
        Method::POST,
        &instance.url("/config/reload"),
        Some("s3cret"),
    )
    .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = instance.get("/config");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = instance.request_with_token(Method::GET, "/config", "s3cret");
    assert_eq!(status, StatusCode::OK, "{body}");
    let config: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(config["api"]["token"], "<redacted>");
}
