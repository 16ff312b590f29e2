//! Process-level tests of configuration checks: each mistake is an error naming its key, with a
//! hint, from `validate` (and so from `run`); warnings do not stop the start.

// A failure in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::{Instance, line_count, run_cli_with_env, validate, wait_for};

const GENERATOR: &str = r#"
sources:
  gen: {type: generator, labels: {job: app}}
sinks:
  out: {type: blackhole, inputs: [gen]}
"#;

const LOKI: &str = r#"
sources:
  gen: {type: generator, labels: {job: app}}
sinks:
  loki: {type: loki, inputs: [gen], endpoint: "http://127.0.0.1:3100"}
"#;

/// `validate` fails and its output has every one of `expected`.
fn assert_refused(config: &str, expected: &[&str]) {
    let (ok, _, stderr) = validate(config, &[], &[]);
    assert!(!ok, "accepted:\n{config}");
    for text in expected {
        assert!(stderr.contains(text), "missing {text:?} in:\n{stderr}");
    }
}

#[test]
fn loki_sink_whose_streams_have_no_labels_is_refused() {
    let config = r#"
sources:
  bare: {type: generator}
transforms:
  only_errors: {type: filter, inputs: [bare], pattern: ERROR}
sinks:
  loki: {type: loki, inputs: [only_errors], endpoint: "http://127.0.0.1:3100"}
"#;
    assert_refused(
        config,
        &[
            "sinks.loki.labels: streams from source `bare` would have no labels",
            "hint: give the sink a label",
        ],
    );
    // A sink label that is always set fixes it, as does a source label.
    let fixed = config.replace("endpoint:", "labels: {job: app}, endpoint:");
    assert!(validate(&fixed, &[], &[]).0);
    let fixed = config.replace("{type: generator}", "{type: generator, labels: {job: app}}");
    assert!(validate(&fixed, &[], &[]).0);
}

#[test]
fn invalid_tenant_is_refused() {
    assert_refused(
        &LOKI.replace("endpoint:", "tenant_id: team/a, endpoint:"),
        &[
            "sinks.loki.tenant_id: \"team/a\" is not a tenant ID Loki accepts",
            "hint: use 1 to 150 of the characters",
        ],
    );
}

#[test]
fn invalid_label_names_on_sources_are_refused() {
    assert_refused(
        &GENERATOR.replace("job: app", "app-name: x"),
        &[
            "sources.gen.labels.app-name: invalid label name",
            "hint: e.g. `app_name`",
        ],
    );
    assert_refused(
        r#"
sources:
  files: {type: file, include: ["/var/log/*.log"], labels: {1st: x}}
sinks:
  out: {type: blackhole, inputs: [files]}
"#,
        &[
            "sources.files.labels.1st: invalid label name",
            "hint: e.g. `_1st`",
        ],
    );
}

#[test]
fn loki_endpoint_with_the_push_path_is_refused_with_the_base_url() {
    assert_refused(
        &LOKI.replace("3100\"", "3100/loki/api/v1/push\""),
        &[
            "sinks.loki.endpoint: \"http://127.0.0.1:3100/loki/api/v1/push\" includes the push path",
            "hint: give Loki's base URL: endpoint: \"http://127.0.0.1:3100\"",
        ],
    );
}

#[test]
fn duplicate_keys_in_yaml_are_refused_naming_key_and_line() {
    let config = r#"
sources:
  gen: {type: generator, labels: {job: app}}
  gen: {type: generator, count: 1}
sinks:
  out: {type: blackhole, inputs: [gen]}
"#;
    assert_refused(
        config,
        &[
            "sources.gen: in ",
            "the key is given twice (again at line 4",
            "hint: remove or rename one of them",
        ],
    );
}

#[test]
fn empty_data_dir_is_refused() {
    assert_refused(
        &format!("data_dir: \"\"\n{GENERATOR}"),
        &["data_dir: is empty (hint: give the directory"],
    );
}

#[test]
fn unresolvable_secrets_are_reported_by_validate() {
    assert_refused(
        &LOKI.replace(
            "endpoint:",
            "auth: {bearer_token: {env: LC_TEST_NEVER_SET_VAR}}, endpoint:",
        ),
        &[
            "sinks.loki.auth.bearer_token: environment variable LC_TEST_NEVER_SET_VAR is not set",
            "hint: set the variable",
        ],
    );
    assert_refused(
        &LOKI.replace(
            "endpoint:",
            "auth: {user: u, password: {file: /nonexistent/lc-password}}, endpoint:",
        ),
        &["sinks.loki.auth.password: cannot read /nonexistent/lc-password"],
    );
    assert_refused(
        &format!("api: {{token: {{file: /nonexistent/lc-token}}}}\n{GENERATOR}"),
        &["api.token: cannot read /nonexistent/lc-token"],
    );
}

#[test]
fn unknown_log_level_is_refused_with_a_did_you_mean() {
    assert_refused(
        &format!("log: {{level: warning}}\n{GENERATOR}"),
        &["log.level: `warning` is not a log level (hint: did you mean `warn`?)"],
    );
    assert!(
        validate(
            &format!("log: {{level: \"warn,log_capturer=debug\"}}\n{GENERATOR}"),
            &[],
            &[]
        )
        .0
    );
}

#[test]
fn host_name_as_api_listen_is_refused_with_the_address_to_write() {
    assert_refused(
        &format!("api: {{listen: \"localhost:8401\"}}\n{GENERATOR}"),
        &[
            "api.listen: \"localhost:8401\" names a host, not an IP address",
            "127.0.0.1:8401",
        ],
    );
}

#[test]
fn missing_include_directory_is_a_warning_from_validate_and_in_the_start_up_log() {
    let config = r#"
data_dir: "{dir}/data"
api: {listen: "127.0.0.1:{port}"}
sources:
  app: {type: file, include: ["{dir}/not-yet/*.log"], labels: {job: app}, scan_interval: 1s}
sinks:
  out: {type: file, inputs: [app], path: "{dir}/out.jsonl", dispatcher: {batch_timeout: 50ms}}
"#;
    let (ok, _, stderr) = validate(&config.replace("{port}", "18402"), &[], &[]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("warning: sources.app.include: ")
            && stderr.contains("/not-yet does not exist"),
        "{stderr}"
    );
    let mut instance = Instance::start(config);
    wait_for("the warning in the log", Duration::from_secs(10), || {
        let log = instance.stderr();
        (log.contains("Configuration warning.") && log.contains("not-yet does not exist"))
            .then_some(())
    });
    // The source still picks the directory up once it exists.
    std::fs::create_dir_all(instance.path("not-yet")).unwrap();
    std::fs::write(instance.path("not-yet/a.log"), "hello\n").unwrap();
    let out = instance.path("out.jsonl");
    wait_for("the line delivered", Duration::from_secs(30), || {
        (line_count(&out) >= 1).then_some(())
    });
    let (status, _) = instance.terminate(Duration::from_secs(30));
    assert!(status.success());
}

/// The variables Kubernetes injects for Services named `log-capturer` and `log-capturer-foo`.
const SERVICE_LINKS: &[(&str, &str)] = &[
    ("LOG_CAPTURER_SERVICE_HOST", "10.0.0.1"),
    ("LOG_CAPTURER_SERVICE_PORT", "8401"),
    ("LOG_CAPTURER_SERVICE_PORT_HTTP", "8401"),
    ("LOG_CAPTURER_PORT", "tcp://10.0.0.1:8401"),
    ("LOG_CAPTURER_PORT_8401_TCP", "tcp://10.0.0.1:8401"),
    ("LOG_CAPTURER_PORT_8401_TCP_ADDR", "10.0.0.1"),
    ("LOG_CAPTURER_PORT_8401_TCP_PORT", "8401"),
    ("LOG_CAPTURER_PORT_8401_TCP_PROTO", "tcp"),
    ("LOG_CAPTURER_FOO_SERVICE_HOST", "10.0.0.2"),
    ("LOG_CAPTURER_FOO_SERVICE_PORT", "9000"),
    ("LOG_CAPTURER_FOO_PORT", "tcp://10.0.0.2:9000"),
    ("LOG_CAPTURER_FOO_PORT_9000_TCP", "tcp://10.0.0.2:9000"),
    ("LOG_CAPTURER_FOO_PORT_9000_TCP_ADDR", "10.0.0.2"),
    ("LOG_CAPTURER_FOO_PORT_9000_TCP_PORT", "9000"),
    ("LOG_CAPTURER_FOO_PORT_9000_TCP_PROTO", "tcp"),
];

#[test]
fn kubernetes_service_variables_do_not_stop_the_start() {
    let config = r#"
data_dir: "{dir}/data"
api: {listen: "127.0.0.1:{port}"}
sources:
  gen: {type: generator, rate: 10}
sinks:
  out: {type: blackhole, inputs: [gen]}
"#;
    let mut env: Vec<(&str, &str)> = SERVICE_LINKS.to_vec();
    // Configuration through the environment still works beside them.
    env.push(("LOG_CAPTURER_DISPATCHER__BATCH_SIZE", "77"));
    let mut instance = Instance::start_with(config, &[], &env);
    let (_, body) = instance.get("/config");
    let shown: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(shown["dispatcher"]["batch_size"], 77);
    let (status, _) = instance.terminate(Duration::from_secs(30));
    assert!(status.success());
}

#[test]
fn errors_from_the_environment_and_set_name_their_origin() {
    let (ok, _, stderr) = validate(
        GENERATOR,
        &[],
        &[("LOG_CAPTURER_DISPATCHER__BATCH_SIZE", "lots")],
    );
    assert!(!ok);
    assert!(
        stderr.contains("dispatcher.batch_size: ")
            && stderr.contains("(from environment variable LOG_CAPTURER_DISPATCHER__BATCH_SIZE)"),
        "{stderr}"
    );
    // A variable that looks like configuration but is no key is reported by name.
    let (ok, _, stderr) = validate(
        GENERATOR,
        &[],
        &[("LOG_CAPTURER_DISPATCHER_BATCH_SIZE", "5")],
    );
    assert!(!ok);
    assert!(
        stderr.contains("dispatcher_batch_size: unknown key (from environment variable LOG_CAPTURER_DISPATCHER_BATCH_SIZE)"),
        "{stderr}"
    );
    let (ok, _, stderr) = validate(GENERATOR, &["--set", "dispatcher.batch_size=lots"], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("dispatcher.batch_size: ")
            && stderr.contains("(from --set dispatcher.batch_size)"),
        "{stderr}"
    );
}

fn run_with_data_dir(data_dir: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        format!("data_dir: {data_dir}\napi: {{enabled: false}}\n{GENERATOR}"),
    )
    .unwrap();
    let output = run_cli_with_env(&["run", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(1));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn data_dir_errors_tell_a_running_holder_from_an_unwritable_directory() {
    // A directory where files cannot be created (sysfs refuses even root).
    let stderr = run_with_data_dir("/sys/kernel");
    assert!(
        stderr.contains("(permission denied;") || stderr.contains("(read-only file system;"),
        "{stderr}"
    );
    assert!(!stderr.contains("other instance"), "{stderr}");
    // A directory that cannot be created (procfs has no such entry and takes none).
    let stderr = run_with_data_dir("/proc/lc-no-such-dir/data");
    assert!(stderr.contains("(directory missing;"), "{stderr}");
    assert!(stderr.contains("is missing"), "{stderr}");
    assert!(!stderr.contains("other instance"), "{stderr}");

    // Held by a running instance: its pid is named.
    let config =
        format!("data_dir: \"{{dir}}/data\"\napi: {{listen: \"127.0.0.1:{{port}}\"}}\n{GENERATOR}");
    let first = Instance::start(&config);
    let pid = first.pid().unwrap();
    let path = first.path("second.yaml");
    std::fs::write(
        &path,
        format!(
            "data_dir: {}/data\napi: {{enabled: false}}\n{GENERATOR}",
            first.dir.path().display()
        ),
    )
    .unwrap();
    let output = run_cli_with_env(&["run", "--config", path.to_str().unwrap()], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("stop the other instance (pid {pid})")),
        "{stderr}"
    );
}

/// A server answering every request with `status`, until the test ends.
fn answering(status: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    port
}

#[test]
fn loki_ready_check_says_what_a_404_or_401_means() {
    for (status, meaning) in [
        ("404 Not Found", "the endpoint is wrong"),
        ("401 Unauthorized", "the credentials were refused"),
    ] {
        let loki = answering(status);
        let config = format!(
            r#"
data_dir: "{{dir}}/data"
api: {{listen: "127.0.0.1:{{port}}"}}
sources:
  gen: {{type: generator, count: 1, labels: {{job: app}}}}
sinks:
  loki: {{type: loki, inputs: [gen], endpoint: "http://127.0.0.1:{loki}"}}
"#
        );
        let instance = Instance::start(&config);
        let log = wait_for("the ready check's verdict", Duration::from_secs(10), || {
            let log = instance.stderr();
            log.contains("readiness check answered").then_some(log)
        });
        assert!(log.contains(meaning), "{log}");
        assert!(log.contains("they are not retried"), "{log}");
        assert!(!log.contains("pushes will be retried"), "{log}");
    }
}

#[test]
fn every_shipped_config_validates() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut checked = 0;
    for dir in [root.clone(), root.join("examples"), root.join("profiles")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let output =
                    run_cli_with_env(&["validate", "--config", path.to_str().unwrap()], &[]);
                assert!(
                    output.status.success(),
                    "{}: {}",
                    path.display(),
                    String::from_utf8_lossy(&output.stderr)
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 7, "only {checked} configs found");
}

#[test]
fn a_broken_stage_names_its_key_and_the_fix() {
    let config = r#"
sources:
  gen: {type: generator, labels: {job: app}}
transforms:
  time: {type: timestamp, inputs: [gen], field: ts, format: sometime, timezone: Mars/Olympus}
  labels: {type: labels, inputs: [time], from_fields: {"bad-name": level}}
sinks:
  out: {type: blackhole, inputs: [labels]}
"#;
    let (ok, _, stderr) = validate(config, &[], &[]);
    assert!(!ok);
    for key in [
        "transforms.time.format",
        "transforms.time.timezone",
        "transforms.labels.from_fields.bad-name",
    ] {
        assert!(stderr.contains(key), "{key} not named in:\n{stderr}");
    }
    assert!(stderr.contains("hint"), "{stderr}");
}
