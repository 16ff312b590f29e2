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
    // Both sides run from fresh copies of the binary, alike in the page cache.
    assert_eq!(all.matches("(a fresh copy)").count(), 2, "{all}");
    assert!(
        all.lines()
            .any(|l| l.starts_with("lost (sum)")
                && l.split_whitespace().eq(["lost", "(sum)", "0", "1"])),
        "{all}"
    );
}

/// `harness soak` on one scenario written into `dir`, with the shipper config `shipper_config`.
fn soak(dir: &Path, scenario: &str, shipper_config: &str) -> Output {
    std::fs::write(dir.join("shipper.yaml"), shipper_config).unwrap();
    let path = dir.join("scenario.yaml");
    std::fs::write(&path, scenario).unwrap();
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("soak")
        .arg("--shipper")
        .arg(shipper())
        .arg("--work-dir")
        .arg(dir)
        .arg(&path)
        .env_remove("CARGO")
        .output()
        .expect("run harness soak")
}

const SOAK_SHIPPER: &str = r#"
sources:
  load: {type: file, include: ["/nowhere/*.log"]}
sinks:
  loki:
    type: loki
    inputs: [load]
    endpoint: "http://127.0.0.1:1"
    labels: {job: soak}
    dispatcher: {batch_size: 100, batch_timeout: 200ms, retry_base_delay: 50ms}
"#;

#[test]
fn a_soak_restarts_the_shipper_on_schedule_and_passes_when_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let output = soak(
        dir.path(),
        "description: two deploys under 500s\nconfig: shipper.yaml\nrate: 500\nfiles: 2\n\
         rotate_bytes: 20000\nduration: 3s\nreceiver: {fail_rate: 0.5}\n\
         restarts: {every: 1s, signal: term}\n",
        SOAK_SHIPPER,
    );
    let all = text(&output);
    assert!(output.status.success(), "{all}");
    for expected in [
        "lines written      1500",
        "lost               0",
        "duplicated         0",
        "corrupted          0",
        "restarts           2",
        "exit status: 0; exit status: 0; exit status: 0",
        "verdict            passed",
    ] {
        assert!(all.contains(expected), "{expected}: {all}");
    }
    assert!(all.contains("500: "), "the faults were injected: {all}");
}

#[test]
fn a_soak_that_loses_a_line_fails_and_keeps_its_work_directory() {
    let dir = tempfile::tempdir().unwrap();
    let lossy = SOAK_SHIPPER.replace(
        "sinks:",
        "transforms:\n  lose_one: {type: filter, inputs: [load], pattern: \"^seq=0000000007 \", action: drop}\nsinks:",
    )
    .replace("inputs: [load]\n    endpoint", "inputs: [lose_one]\n    endpoint");
    let output = soak(
        dir.path(),
        "description: one line dropped\nconfig: shipper.yaml\nrate: 200\nfiles: 1\n\
         rotate_bytes: 1000000\nduration: 2s\ndrain_timeout: 3s\n",
        &lossy,
    );
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(
        all.contains("FAILED: 1 of 400 lines never arrived"),
        "{all}"
    );
    let kept = all
        .lines()
        .find_map(|line| line.strip_prefix("work directory kept: "))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no kept directory: {all}"));
    for file in ["config.yaml", "shipper.stderr", "received.jsonl", "logs"] {
        assert!(Path::new(kept).join(file).exists(), "{file} in {kept}");
    }
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

/// Whether a Docker engine with the load's image answers; under `CI` a missing one fails.
fn docker_available() -> bool {
    let ok = Command::new("docker")
        .args(["image", "inspect", "lc-busybox"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but no Docker engine with image lc-busybox answers: run scripts/docker-setup.sh"
        );
        eprintln!("note: no Docker engine with image lc-busybox; skipping");
    }
    ok
}

/// Containers whose name starts with `prefix`.
fn containers(prefix: &str) -> Vec<String> {
    let output = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("name=^{prefix}"),
            "--format",
            "{{.Names}}",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "docker ps failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_docker_load_delivers_every_containers_lines_and_removes_its_containers() {
    if !docker_available() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "run",
            "--profile",
            "standard",
            "--load",
            "docker=3",
            "--rate",
            "900",
            "--duration",
            "3s",
        ])
        .arg("--shipper")
        .arg(shipper())
        .arg("--out")
        .arg(out.path())
        .env_remove("CARGO")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = format!("lc-harness-{}-", child.id());
    let output = child.wait_with_output().unwrap();
    let all = text(&output);
    assert!(output.status.success(), "{all}");
    assert!(all.contains("(docker=3 load)"), "{all}");
    assert!(all.contains("lines delivered    2700"), "{all}");
    assert!(all.contains("lost               0"), "{all}");
    assert!(all.contains("duplicated         0"), "{all}");
    assert!(all.contains("shipper exit       exit status: 0"), "{all}");
    assert_eq!(containers(&prefix), Vec::<String>::new(), "left behind");
}

#[test]
fn ctrl_c_during_a_docker_load_removes_the_containers_and_stops_the_shipper() {
    if !docker_available() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "run",
            "--profile",
            "low",
            "--load",
            "docker=2",
            "--duration",
            "120s",
        ])
        .arg("--shipper")
        .arg(shipper())
        .arg("--out")
        .arg(out.path())
        .env_remove("CARGO")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = format!("lc-harness-{}-", child.id());
    // The shipper runs once the containers do and its ready probe answered: wait for both.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let shipper_pid = loop {
        let running = containers(&prefix).len() == 2;
        let shipper =
            std::fs::read_to_string(format!("/proc/{}/task/{}/children", child.id(), child.id()))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .find(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim() == "log-capturer")
                });
        if let (true, Some(pid)) = (running, shipper) {
            break pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no containers and shipper"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // SIGINT to the harness alone (not its process group): it must stop the rest itself.
    // SAFETY: kill(2) on the child this test started.
    let rc = unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGINT) };
    assert_eq!(rc, 0);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert_eq!(
        containers(&prefix),
        Vec::<String>::new(),
        "left behind:\n{stderr}"
    );
    // The harness kills the shipper as it exits; the kernel tears a killed process down a
    // moment later, and a busy machine makes that moment longer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{shipper_pid}/stat"))
        .is_ok_and(|stat| !stat.contains(") Z"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the shipper is still running:\n{stderr}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
