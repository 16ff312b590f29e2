//! `log-capturer test`: the `tests:` entries of every shipped configuration pass, and a broken
//! expectation fails naming the test, the event, the field and the stage that set it.

// A failure in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::run_cli_with_env;

/// `log-capturer test --config PATH`: (success, stdout, stderr).
fn run_tests(path: &Path) -> (bool, String, String) {
    let output = run_cli_with_env(&["test", "--config", path.to_str().unwrap()], &[]);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Writes `config` to a temporary directory and runs `test` on it.
fn run_tests_on(config: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    run_tests(&path)
}

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/examples");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
}

#[test]
fn every_shipped_example_has_tests_and_passes_them() {
    let paths = examples();
    assert!(paths.len() >= 2, "{paths:?}");
    for path in paths {
        let (ok, stdout, stderr) = run_tests(&path);
        assert!(ok, "{}:\n{stdout}\n{stderr}", path.display());
        assert!(
            stdout.contains(" 0 failed."),
            "{}:\n{stdout}",
            path.display()
        );
        assert!(!stdout.contains("FAILED"), "{}:\n{stdout}", path.display());
        assert!(
            !stdout.contains(" 0 passed"),
            "{}:\n{stdout}",
            path.display()
        );
    }
}

const PIPELINE: &str = r#"
sources:
  app: {type: generator, labels: {job: app}}
transforms:
  parse: {type: json, inputs: [app]}
  time: {type: timestamp, inputs: [parse], field: ts, format: rfc3339}
  level: {type: labels, inputs: [time], from_fields: {level: level}, metadata: [user]}
  quiet: {type: filter, inputs: [level], pattern: DEBUG, action: drop}
sinks:
  out: {type: blackhole, inputs: [quiet]}
tests:
  - name: good
    input: {line: '{"ts":"2026-12-01T10:00:00Z","level":"warn","user":"ann"}'}
    expect:
      - labels: {job: app, level: warn}
        timestamp: "2026-12-01T10:00:00Z"
        metadata: {user: ann}
        fields: {level: warn, missing: null}
  - name: broken
    input: {line: '{"ts":"2026-12-01T10:00:00Z","level":"warn","user":"ann"}'}
    expect:
      - labels: {job: app, level: error}
        timestamp: "2026-12-01T10:00:01Z"
        line: other
        metadata: {}
  - name: dropped
    input: {line: '{"level":"DEBUG"}'}
    expect: [{line: '{"level":"DEBUG"}'}]
"#;

#[test]
fn a_broken_expectation_fails_naming_the_test_the_stage_and_the_field() {
    let (ok, stdout, stderr) = run_tests_on(PIPELINE);
    assert!(!ok, "passed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("test \"good\" ... ok"), "{stdout}");
    assert!(
        stdout.contains("test \"broken\" ... FAILED (source `app` to sink `out`)"),
        "{stdout}"
    );
    // Every mismatch, each with the test, the field and the stage that gave the value.
    for expected in [
        "test \"broken\": event 1: labels.level: expected \"error\", got \"warn\" (set by stage `level`)",
        "test \"broken\": event 1: timestamp: expected 2026-12-01T10:00:01Z, got 2026-12-01T10:00:00Z (set by stage `time`)",
        "test \"broken\": event 1: line: expected \"other\", got ",
        "(no stage changed it)",
        "test \"broken\": event 1: metadata.user: expected no such entry, got \"ann\" (set by stage `level`)",
        "test \"dropped\": expected 1 event(s) out of quiet, got 0 (stage `quiet` took 1 and gave 0)",
        "3 test(s): 1 passed, 2 failed.",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

#[test]
fn explicit_stages_run_in_their_order_and_path_tests_follow_fan_in() {
    let config = r#"
sources:
  a: {type: generator, labels: {job: a}}
  b: {type: generator, labels: {job: b}}
transforms:
  parse: {type: logfmt, inputs: [a]}
  tag: {type: labels, inputs: [parse, b], from_fields: {level: level}}
sinks:
  out: {type: blackhole, inputs: [tag]}
  raw: {type: blackhole, inputs: [a]}
tests:
  - name: one stage alone sees only the fields it is given
    input: {source: a, line: "level=info", fields: {level: warn}}
    stages: [tag]
    expect: [{labels: {job: a, level: warn}}]
  - name: the whole path from a
    input: {source: a, line: "level=info msg=hi"}
    to: out
    expect: [{labels: {job: a, level: info}, fields: {msg: hi}}]
  - name: the path from b skips the parser
    input: {source: b, line: "level=info"}
    expect: [{labels: {job: b}}]
  - name: a sink reading the source directly sees the input unchanged
    input: {source: a, line: "level=info", labels: {host: h1}}
    to: raw
    expect: [{line: "level=info", labels: {host: h1, job: a}}]
"#;
    let (ok, stdout, stderr) = run_tests_on(config);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("4 test(s): 4 passed, 0 failed."),
        "{stdout}"
    );
}

#[test]
fn stream_stages_are_run_to_the_end_of_their_input() {
    let config = r#"
sources:
  app: {type: generator, labels: {job: app}}
transforms:
  java: {type: multiline, inputs: [app], first_line: '^\d{4}-'}
sinks:
  out: {type: blackhole, inputs: [java]}
tests:
  - name: a stack trace is one event
    input:
      lines:
        - "2026-12-01 10:00:00 ERROR boom"
        - "java.lang.IllegalStateException: x"
        - "    at a.B.c(B.java:1)"
        - "2026-12-01 10:00:01 INFO next"
    expect:
      - line: "2026-12-01 10:00:00 ERROR boom\njava.lang.IllegalStateException: x\n    at a.B.c(B.java:1)"
      - line: "2026-12-01 10:00:01 INFO next"
"#;
    let (ok, stdout, stderr) = run_tests_on(config);
    assert!(ok, "{stdout}\n{stderr}");
}

#[test]
fn bad_test_entries_are_refused_by_validate_naming_their_keys() {
    let config = r#"
sources:
  app: {type: generator, labels: {job: a}}
  other: {type: generator, labels: {job: b}}
transforms:
  f: {type: filter, inputs: [app, other], pattern: x}
sinks:
  out: {type: blackhole, inputs: [f]}
  out2: {type: blackhole, inputs: [app]}
tests:
  - name: t
    input: {line: x, lables: {}}
    stages: [f, g]
    expect: [{lin: x}]
  - name: t
    input: {source: ap}
    expect: []
  - name: u
    input: {source: app, line: y}
    expect: []
  - name: v
    input: {source: other, line: y, timestamp: yesterday}
    to: out2
    expect: []
"#;
    let (ok, _, stderr) = common::validate(config, &[], &[]);
    assert!(!ok);
    for expected in [
        "tests[0].input.lables: unknown key (hint: did you mean `labels`?)",
        "tests[0].stages[1]: unknown transform `g`",
        "tests[0].expect[0].lin: unknown key (hint: did you mean `line`?)",
        "tests[1].name: another test is named \"t\"",
        "tests[1].input.line: missing",
        "tests[1].input.source: unknown source `ap` (hint: did you mean `app`?)",
        "tests[2].to: missing; source `app` reaches 2 sinks (hint: name the sink to test up to (out, out2)",
        "tests[3].input.timestamp: \"yesterday\" is not an RFC 3339 time",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    // `test` refuses it the same way, and a configuration without tests fails.
    let (ok, _, stderr) = run_tests_on(config);
    assert!(!ok && stderr.contains("tests[0].stages[1]"), "{stderr}");
    let (ok, _, stderr) = run_tests_on(
        "sources:\n  app: {type: generator}\nsinks:\n  out: {type: blackhole, inputs: [app]}\n",
    );
    assert!(!ok && stderr.contains("No tests"), "{stderr}");
}

#[test]
fn route_stages_report_the_outputs_each_event_reached() {
    let config = r#"
sources:
  app: {type: generator, labels: {job: app}}
transforms:
  parse: {type: logfmt, inputs: [app]}
  split:
    type: route
    inputs: [parse]
    routes:
      errors: {fields: {level: {equals: error}}}
      pay: {labels: {team: {equals: pay}}}
  tag: {type: labels, inputs: [split.pay], static: {dest: pay}}
sinks:
  alerts: {type: blackhole, inputs: [split.errors]}
  pay: {type: blackhole, inputs: [tag]}
  rest: {type: blackhole, inputs: [split._unmatched]}
tests:
  - name: an error of team pay reaches both routes
    input: {line: "level=error msg=x", labels: {team: pay}}
    to: split
    expect: [{outputs: [pay, errors]}]
  - name: a line no route matches reaches _unmatched
    input: {line: "level=info"}
    stages: [parse, split]
    expect: [{outputs: [_unmatched]}]
  - name: the path to a sink behind one route
    input: {line: "level=error", labels: {team: pay}}
    to: pay
    expect: [{labels: {job: app, team: pay, dest: pay}}]
  - name: a stage after a route reads one of its outputs
    input: {line: "level=info", labels: {team: pay}}
    stages: [parse, split.pay, tag]
    expect: [{labels: {job: app, team: pay, dest: pay}}]
  - name: a line that misses the route it is sent to
    input: {line: "level=info"}
    to: alerts
    expect: []
  - name: broken on purpose
    input: {line: "level=error"}
    to: split
    expect: [{outputs: [pay]}]
"#;
    let (ok, stdout, stderr) = run_tests_on(config);
    assert!(!ok, "passed:\n{stdout}\n{stderr}");
    for expected in [
        "test \"an error of team pay reaches both routes\" ... ok\n  event 1: reached `split.errors`, `split.pay`\n",
        "test \"a line no route matches reaches _unmatched\" ... ok\n  event 1: reached `split._unmatched`\n",
        "test \"the path to a sink behind one route\" ... ok\n",
        "test \"a stage after a route reads one of its outputs\" ... ok\n",
        "test \"a line that misses the route it is sent to\" ... ok\n",
        "test \"broken on purpose\": event 1: outputs: expected [pay], got [errors] (out of stage `split`)",
        "6 test(s): 5 passed, 1 failed.",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }

    // `outputs` needs a test ending at a route; a route inside `stages` names its output.
    let bad = config.replace(
        "    to: pay\n    expect: [{labels: {job: app, team: pay, dest: pay}}]",
        "    to: pay\n    expect: [{outputs: [pay]}]",
    );
    let bad = bad.replace(
        "stages: [parse, split.pay, tag]",
        "stages: [parse, split, tag]",
    );
    let bad = bad.replace(
        "    to: split\n    expect: [{outputs: [pay]}]",
        "    to: split\n    expect: [{outputs: [nope]}]",
    );
    let (ok, _, stderr) = run_tests_on(&bad);
    assert!(!ok);
    for expected in [
        "tests[2].expect[0].outputs: only a test that ends at a route stage sees outputs",
        "tests[3].stages[1]: `split` is a route: say which of its outputs the next stage reads",
        "tests[5].expect[0].outputs: `nope` is not an output of `split` (hint: its outputs: errors, pay, _unmatched)",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}
