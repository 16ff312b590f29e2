//! `log-capturer top --once` against a real running instance of the default configuration
//! (its data under a temporary directory, its API on a free port): one frame with a row per
//! component, the demo generator's rate seen, and no terminal escapes on a pipe.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Instance, run_cli_with_env, wait_for};

#[test]
fn top_once_prints_one_frame_of_every_component_of_the_default_configuration() {
    let instance = Instance::start(&common::default_like_config());
    // The demo generator has emitted (its counter exists) before the frame is taken.
    wait_for("the demo source to emit", Duration::from_secs(20), || {
        let (_, metrics) = instance.get("/metrics");
        metrics
            .contains("log_capturer_logs_processed_total{component=\"demo\"}")
            .then_some(())
    });
    let url = instance.url("");
    let output = run_cli_with_env(&["top", "--once", "--url", &url, "--interval", "2s"], &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!stdout.contains('\x1b'), "{stdout:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("log-capturer top"), "{stdout}");
    assert!(lines[1].starts_with("COMPONENT"), "{stdout}");
    for component in [
        "host_logs",
        "containers",
        "demo",
        "host_file",
        "containers_file",
        "console",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.split_whitespace().next() == Some(component)),
            "no row for {component}:\n{stdout}"
        );
    }
    // demo emits two lines a second: its OUT/s column (the fifth) is above zero.
    let demo: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("demo "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(demo[1], "source");
    assert_eq!(demo[3], "-", "a source has no IN/s: {demo:?}");
    assert!(demo[4].parse::<f64>().unwrap() > 0.0, "{stdout}");
    // The console sink reads demo: its IN/s comes from the configuration's inputs.
    let console: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("console "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert!(console[3].parse::<f64>().unwrap() > 0.0, "{stdout}");
    assert!(console[7].ends_with('%'), "queue fill: {console:?}");
}

#[test]
fn top_without_an_instance_fails_with_a_hint() {
    let url = format!("http://127.0.0.1:{}", common::free_port());
    let output = run_cli_with_env(&["top", "--once", "--url", &url], &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is log-capturer running?"), "{stderr}");
}
