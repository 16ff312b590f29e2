//! Process-level tests: no secret in any output of the binary.
//!
//! Every secret field (`auth.password`, `auth.bearer_token`, `api.token`) in every form (plain
//! string, `{value}`, `{env}`, `{file}`) goes through `validate --print` and a running instance's
//! `GET /config` and log; the secret's text must appear in none of them.

// A failure in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Instance, validate, wait_for};
use http::{Method, StatusCode};

#[derive(Clone, Copy, Debug)]
enum Field {
    Password,
    BearerToken,
    ApiToken,
}

#[derive(Clone, Copy, Debug)]
enum Form {
    Plain,
    Value,
    Env,
    File,
}

/// The variable an `{env: ...}` secret is read from.
const SECRET_VAR: &str = "LC_TEST_SECRET_VALUE";

struct Case {
    secret: String,
    config: String,
    /// Environment for the process (the secret's variable, for the env form).
    env: Vec<(String, String)>,
    /// The API token the instance needs, if the case sets one.
    api_token: Option<String>,
}

/// A configuration with `field` set to a secret in `form`; the file form's file is written
/// under `dir`.
fn case(field: Field, form: Form, dir: &std::path::Path) -> Case {
    let secret = format!("s3cr3t-{field:?}-{form:?}-Zq7");
    let file = dir.join("secret.txt");
    let written = match form {
        Form::Plain => format!("\"{secret}\""),
        Form::Value => format!("{{value: \"{secret}\"}}"),
        Form::Env => format!("{{env: {SECRET_VAR}}}"),
        Form::File => {
            std::fs::write(&file, format!("{secret}\n")).unwrap();
            format!("{{file: \"{}\"}}", file.display())
        }
    };
    let env = match form {
        Form::Env => vec![(SECRET_VAR.to_string(), secret.clone())],
        _ => Vec::new(),
    };
    let (api, auth) = match field {
        Field::ApiToken => (format!(", token: {written}"), String::new()),
        Field::Password => (
            String::new(),
            format!("auth: {{user: lc, password: {written}}}"),
        ),
        Field::BearerToken => (String::new(), format!("auth: {{bearer_token: {written}}}")),
    };
    let config = format!(
        r#"
data_dir: "{{dir}}/data"
api: {{listen: "127.0.0.1:{{port}}"{api}}}
sources:
  gen: {{type: generator, rate: 50, labels: {{job: secrets, api_key_hint: shown}}}}
sinks:
  loki:
    type: loki
    inputs: [gen]
    endpoint: "http://127.0.0.1:9"
    healthcheck: false
    {auth}
    dispatcher: {{batch_timeout: 50ms, retry_base_delay: 10ms, retry_max_delay: 50ms}}
"#
    );
    let api_token = matches!(field, Field::ApiToken).then(|| secret.clone());
    Case {
        secret,
        config,
        env,
        api_token,
    }
}

fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn no_secret_field_in_any_form_reaches_validate_print_get_config_or_the_log() {
    for field in [Field::Password, Field::BearerToken, Field::ApiToken] {
        for form in [Form::Plain, Form::Value, Form::Env, Form::File] {
            let what = format!("{field:?} as {form:?}");
            let scratch = tempfile::tempdir().unwrap();
            let case = case(field, form, scratch.path());
            let env = env_refs(&case.env);

            let printed = case.config.replace("{port}", "18401");
            let (ok, stdout, stderr) = validate(&printed, &["--print"], &env);
            assert!(ok, "{what}: {stderr}");
            for output in [&stdout, &stderr] {
                assert!(!output.contains(&case.secret), "{what}: {output}");
            }
            let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(
                shown["sources"]["gen"]["labels"]["api_key_hint"], "shown",
                "{what}"
            );
            match form {
                Form::Plain | Form::Value => assert!(stdout.contains("<redacted>"), "{what}"),
                Form::Env => assert!(stdout.contains(SECRET_VAR), "{what}"),
                Form::File => assert!(stdout.contains("secret.txt"), "{what}"),
            }

            let mut instance = Instance::start_with(&case.config, &[], &env);
            let (status, body) = match &case.api_token {
                Some(token) => instance.request_with_token(Method::GET, "/config", token),
                None => instance.get("/config"),
            };
            assert_eq!(status, StatusCode::OK, "{what}: {body}");
            assert!(!body.contains(&case.secret), "{what}: {body}");
            assert!(body.contains("api_key_hint"), "{what}: {body}");
            // The sink's failed pushes are in the log too.
            wait_for("a failed push", Duration::from_secs(30), || {
                let (_, metrics) = instance.get("/metrics");
                metrics
                    .lines()
                    .any(|l| {
                        l.starts_with("log_capturer_errors_total{")
                            && l.contains("component=\"loki\"")
                    })
                    .then_some(())
            });
            let (_, output) = instance.terminate(Duration::from_secs(30));
            let log = String::from_utf8_lossy(&output.stderr);
            assert!(!log.contains(&case.secret), "{what}: {log}");
        }
    }
}

#[test]
fn api_token_from_the_environment_works_as_a_plain_string() {
    let config = r#"
data_dir: "{dir}/data"
api: {listen: "127.0.0.1:{port}"}
sources:
  gen: {type: generator, rate: 10}
sinks:
  out: {type: blackhole, inputs: [gen]}
"#;
    for token in ["tok-from-env-Zq7", "0071234"] {
        let instance = Instance::start_with(config, &[], &[("LOG_CAPTURER_API__TOKEN", token)]);
        assert_eq!(instance.get("/config").0, StatusCode::UNAUTHORIZED);
        let (status, body) = instance.request_with_token(Method::GET, "/config", token);
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(!body.contains(token), "{body}");
    }
}

#[test]
fn errors_about_secrets_do_not_quote_them() {
    let base = r#"
sources:
  gen: {type: generator, labels: {job: x}}
sinks:
  loki: {type: loki, inputs: [gen], endpoint: "http://127.0.0.1:3100"}
"#;
    let secret = "s3cr3t-in-an-error-Zq7";
    // A --set value that is not valid YAML.
    let set = format!("sinks.loki.auth.bearer_token=[{secret}");
    let (ok, stdout, stderr) = validate(base, &["--set", &set], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("--set sinks.loki.auth.bearer_token"),
        "{stderr}"
    );
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "{stderr}"
    );
    // A secret of the wrong type.
    let set = format!("sinks.loki.auth.bearer_token={{value: [{secret}]}}");
    let (ok, _, stderr) = validate(base, &["--set", &set], &[]);
    assert!(!ok);
    assert!(stderr.contains("sinks.loki.auth.bearer_token"), "{stderr}");
    assert!(!stderr.contains(secret), "{stderr}");
    // Credentials in the endpoint's URL.
    let config = base.replace(
        "http://127.0.0.1:3100",
        &format!("http://admin:{secret}@127.0.0.1:3100"),
    );
    let (ok, _, stderr) = validate(&config, &[], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("sinks.loki.endpoint: contains credentials"),
        "{stderr}"
    );
    assert!(stderr.contains("auth.user and auth.password"), "{stderr}");
    assert!(!stderr.contains(secret), "{stderr}");
    // A TOML syntax error on the line of a secret.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, format!("[api]\ntoken = \"{secret}\n")).unwrap();
    let output = common::run_cli(&["validate", "--config", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(!stderr.contains(secret), "{stderr}");
}
