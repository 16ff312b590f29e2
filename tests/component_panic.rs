//! Process-level tests of a component that panics: the shipper must not go on running with a
//! dead stage (reading and delivering nothing while it answers its API). It stops with exit code
//! 1, naming the component, and a restart delivers every line the panic left unacknowledged.
//! The panics are injected with `LC_TEST_FAULT` (debug builds only; see
//! `components/src/fault.rs`).

// A failure in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use common::{Instance, wait_for};

const CONFIG: &str = r#"
data_dir: "{dir}/data"
api: {listen: "127.0.0.1:{port}"}
sources:
  app: {type: file, include: ["{dir}/in/*.log"], read_from: beginning, poll_interval: 200ms, flush_interval: 200ms}
transforms:
  dedup: {type: dedup, inputs: [app]}
sinks:
  out: {type: file, inputs: [dedup], path: "{dir}/out.log", encoding: text}
"#;

const CHUNK: u64 = 1000;

fn append(instance: &Instance, range: std::ops::RangeInclusive<u64>) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(instance.path("in/app.log"))
        .unwrap();
    let text: String = range.map(|seq| format!("line {seq:06}\n")).collect();
    file.write_all(text.as_bytes()).unwrap();
}

/// The distinct lines the sink wrote so far.
fn delivered(instance: &Instance) -> BTreeSet<String> {
    std::fs::read_to_string(instance.path("out.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Runs the pipeline with `fault` armed, writing a chunk of lines, and another once the first
/// arrived, until the fault fires; then checks the exit and that a restart delivers every line.
fn a_panic_stops_the_shipper_and_a_restart_delivers_the_rest(fault: &str, component: &str) {
    let mut instance = Instance::prepare(CONFIG);
    std::fs::create_dir_all(instance.path("in")).unwrap();
    instance.spawn(&[], &[("LC_TEST_FAULT", fault)]);
    append(&instance, 1..=CHUNK);
    // The fault fires at its second call: during the first chunk or the second.
    let mut status = None;
    wait_for(
        "the first chunk or the exit",
        Duration::from_secs(30),
        || {
            status = instance.wait_exit(Duration::ZERO);
            (status.is_some() || delivered(&instance).len() as u64 >= CHUNK).then_some(())
        },
    );
    append(&instance, CHUNK + 1..=2 * CHUNK);
    if status.is_none() {
        status = instance.wait_exit(Duration::from_secs(30));
    }
    instance.assert_stopped_by_panic(status, fault, component);

    instance.spawn(&[], &[]);
    let expected: BTreeSet<String> = (1..=2 * CHUNK)
        .map(|seq| format!("line {seq:06}"))
        .collect();
    wait_for(
        "every line after the restart",
        Duration::from_secs(30),
        || delivered(&instance).is_superset(&expected).then_some(()),
    );
}

#[test]
fn a_transform_that_panics_stops_the_shipper_and_a_restart_delivers_the_rest() {
    a_panic_stops_the_shipper_and_a_restart_delivers_the_rest("transform:dedup@2", "dedup");
}

#[test]
fn a_file_reader_that_panics_stops_the_shipper_and_a_restart_delivers_the_rest() {
    a_panic_stops_the_shipper_and_a_restart_delivers_the_rest("file_reader:app@2", "app");
}

#[test]
fn a_file_committer_that_panics_stops_the_shipper_and_a_restart_delivers_the_rest() {
    a_panic_stops_the_shipper_and_a_restart_delivers_the_rest("file_committer:app@2", "app");
}

// The work below runs on blocking threads, whose panics tokio hands back as values: before they
// were raised again in the component (`components/src/blocking.rs`), the file sink retried a
// panicked write forever against the lock the panic had poisoned, and the committer took a
// panicked save for a failed one, both with the shipper running on.

#[test]
fn a_file_sink_write_that_panics_stops_the_shipper_and_a_restart_delivers_the_rest() {
    a_panic_stops_the_shipper_and_a_restart_delivers_the_rest("file_sink_write:out@2", "out");
}

#[test]
fn a_positions_save_that_panics_stops_the_shipper_and_a_restart_delivers_the_rest() {
    // The first save follows the start-up scan; the second, the first chunk's commit.
    a_panic_stops_the_shipper_and_a_restart_delivers_the_rest("file_positions_save:app@2", "app");
}

#[test]
fn a_panic_in_the_last_positions_save_at_shutdown_ends_the_process_with_an_error() {
    // No lines: the first save follows the start-up scan, the second is the shutdown's last.
    // Before, the stream had ended when the last save panicked: nobody heard the report, and
    // the shutdown said "Shutdown complete." and exited 0 with the positions not saved.
    let mut instance = Instance::prepare(CONFIG);
    std::fs::create_dir_all(instance.path("in")).unwrap();
    instance.spawn(&[], &[("LC_TEST_FAULT", "file_positions_save:app@2")]);
    wait_for("the first save", Duration::from_secs(30), || {
        let (_, metrics) = instance.get("/metrics");
        metrics
            .lines()
            .any(|line| {
                line.starts_with("log_capturer_position_saves_total{component=\"app\"}")
                    && !line.ends_with(" 0")
            })
            .then_some(())
    });
    let (status, output) = instance.terminate(Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("fault injected at file_positions_save:app")
            && stderr.contains("a component panicked while draining")
            && stderr.contains("component=app"),
        "{stderr}"
    );
    assert!(!stderr.contains("Shutdown complete."), "{stderr}");
}
