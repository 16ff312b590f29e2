//! The `harness` binary end to end: the real shipper as its own process, files written with
//! rotation, the receiver in the harness, and the figures it prints and writes.

// A failure in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The shipper built by the same `cargo` invocation (the workspace's binaries share a directory).
fn shipper() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_harness"))
        .parent()
        .expect("binary directory")
        .to_path_buf();
    let shipper = dir.join("log-capturer");
    assert!(
        shipper.is_file(),
        "{} is missing: run the tests with --workspace so the shipper is built",
        shipper.display()
    );
    shipper
}

fn harness(args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .arg("--shipper")
        .arg(shipper())
        .arg("--out")
        .arg(out)
        .env_remove("CARGO")
        .output()
        .expect("run harness")
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_profile_runs_end_to_end_with_rotation_and_writes_json_and_svg() {
    let out = tempfile::tempdir().unwrap();
    // The standard profile's config at a lower rate and with small files, so it rotates.
    let output = harness(
        &[
            "run",
            "--profile",
            "standard",
            "--rate",
            "4000",
            "--duration",
            "3s",
        ],
        out.path(),
    );
    let all = text(&output);
    assert!(output.status.success(), "{all}");
    assert!(all.contains("lost               0"), "{all}");
    assert!(all.contains("lines delivered    12000"), "{all}");

    let mut files: Vec<PathBuf> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert_eq!(report["lines_written"], 12000);
    assert_eq!(report["lost"], 0);
    assert_eq!(report["complete"], true);
    assert_eq!(report["shipper_exit"], "exit status: 0");
    assert!(report["cpu_seconds"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["peak_rss_mib"].as_f64().unwrap() > 1.0, "{report}");
    assert!(
        report["latency_ms"]["p99"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(
        !report["samples"].as_array().unwrap().is_empty(),
        "{report}"
    );
    let svg = std::fs::read_to_string(&files[1]).unwrap();
    assert!(svg.starts_with("<svg"), "{svg:.100}");
}

#[test]
fn the_generator_load_counts_from_the_shippers_start() {
    let out = tempfile::tempdir().unwrap();
    let output = harness(
        &[
            "run",
            "--profile",
            "low",
            "--load",
            "generator",
            "--duration",
            "2s",
        ],
        out.path(),
    );
    let all = text(&output);
    assert!(output.status.success(), "{all}");
    assert!(all.contains("(generator load)"), "{all}");
    assert!(all.contains("lines delivered    1000"), "{all}");
    assert!(all.contains("lost               0"), "{all}");
}

#[test]
fn a_lost_line_fails_the_run_and_compare_reports_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    // A config that drops line 7: the harness must notice and exit 1.
    let lossy = dir.path().join("lossy.yaml");
    std::fs::write(
        &lossy,
        r#"
sources:
  load: {type: file, include: ["/nowhere/*.log"]}
transforms:
  lose_one: {type: filter, inputs: [load], pattern: "^seq=0000000007 ", action: drop}
sinks:
  loki: {type: loki, inputs: [lose_one], endpoint: "http://127.0.0.1:1", labels: {job: lossy}}
"#,
    )
    .unwrap();
    let output = harness(
        &[
            "run",
            "--profile",
            "low",
            "--duration",
            "2s",
            "--drain-timeout",
            "5s",
            "--config",
            lossy.to_str().unwrap(),
        ],
        dir.path(),
    );
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("lost               1"), "{all}");

    let output = harness(
        &[
            "compare",
            "--profile",
            "low",
            "--duration",
            "1s",
            "--rounds",
            "1",
            "--config-b",
            lossy.to_str().unwrap(),
            "--drain-timeout",
            "5s",
        ],
        dir.path(),
    );
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("B/A"), "{all}");
    assert!(
        all.lines()
            .any(|l| l.starts_with("lost (sum)")
                && l.split_whitespace().eq(["lost", "(sum)", "0", "1"])),
        "{all}"
    );
}

#[test]
fn a_config_without_the_load_source_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(
        &config,
        "sources: {app: {type: generator}}\nsinks: {out: {type: blackhole, inputs: [app]}}\n",
    )
    .unwrap();
    let output = harness(
        &[
            "run",
            "--profile",
            "low",
            "--config",
            config.to_str().unwrap(),
        ],
        dir.path(),
    );
    let all = text(&output);
    assert_eq!(output.status.code(), Some(2), "{all}");
    assert!(all.contains("needs a source called `load`"), "{all}");

    // A misspelt override reaches the shipper, whose refusal names the key and the fix.
    let output = harness(
        &[
            "run",
            "--profile",
            "low",
            "--set",
            "sinks.loki.dispatcher.worker_cont=1",
        ],
        dir.path(),
    );
    let all = text(&output);
    assert_eq!(output.status.code(), Some(2), "{all}");
    assert!(all.contains("the shipper exited early"), "{all}");
    assert!(all.contains("worker_count"), "{all}");
}
