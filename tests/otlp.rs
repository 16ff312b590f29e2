//! The OTLP metrics push against a receiver in the test that decodes OTLP/HTTP protobuf
//! (opentelemetry-proto): the real binary pushes `logs_processed` with its attributes, the
//! configured resource attributes and headers (a secret, redacted by `validate --print`), beside
//! the Prometheus endpoint or instead of it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use common::{Instance, wait_for};
use http::StatusCode;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use prost::Message;

/// One push as the receiver saw it.
struct Push {
    path: String,
    headers: Vec<(String, String)>,
    request: ExportMetricsServiceRequest,
}

/// An OTLP/HTTP receiver on a loopback port: every request is decoded and passed on.
fn receiver() -> (u16, mpsc::Receiver<Push>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                // Keep-alive: several requests per connection.
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request_line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("")
                        .to_string();
                    let mut headers = Vec::new();
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        reader.read_line(&mut line).unwrap();
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        let (name, value) = line.split_once(':').unwrap();
                        let (name, value) =
                            (name.trim().to_ascii_lowercase(), value.trim().to_string());
                        if name == "content-length" {
                            length = value.parse().unwrap();
                        }
                        headers.push((name, value));
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let request = ExportMetricsServiceRequest::decode(body.as_slice())
                        .expect("an OTLP protobuf metrics request");
                    writer
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
                        .unwrap();
                    if tx
                        .send(Push {
                            path,
                            headers,
                            request,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, rx)
}

fn string(value: Option<&AnyValue>) -> Option<&str> {
    match value?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| string(kv.value.as_ref()))
}

/// The value of counter `name` for `component`, if the push has it.
fn counter(push: &Push, name: &str, component: &str) -> Option<i64> {
    push.request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == name)
        .find_map(|m| match m.data.as_ref()? {
            metric::Data::Sum(sum) => sum
                .data_points
                .iter()
                .find(|p| attribute(&p.attributes, "component") == Some(component))
                .and_then(|p| match p.value? {
                    number_data_point::Value::AsInt(v) => Some(v),
                    number_data_point::Value::AsDouble(v) => Some(v as i64),
                }),
            _ => None,
        })
}

fn config(otlp_port: u16, prometheus: bool) -> String {
    format!(
        r#"
data_dir: "{{dir}}/data"
api: {{listen: "127.0.0.1:{{port}}"}}
telemetry:
  prometheus: {prometheus}
  otlp:
    endpoint: "http://127.0.0.1:{otlp_port}"
    interval: 300ms
    headers: {{x-scope-orgid: {{env: LC_OTLP_TEST_TENANT}}}}
    resource: {{deployment.environment: otlp-test}}
sources:
  gen: {{type: generator, rate: 100, labels: {{job: t}}}}
sinks:
  out: {{type: blackhole, inputs: [gen]}}
"#
    )
}

/// Waits for a push in which `gen` has processed lines.
fn push_with_lines(rx: &mpsc::Receiver<Push>) -> Push {
    wait_for(
        "an OTLP push with logs_processed",
        Duration::from_secs(30),
        || {
            let push = rx.recv_timeout(Duration::from_millis(200)).ok()?;
            (counter(&push, "logs_processed", "gen").unwrap_or(0) > 0).then_some(push)
        },
    )
}

#[test]
fn metrics_are_pushed_with_otlp_beside_prometheus_with_the_same_names() {
    let (otlp_port, rx) = receiver();
    let instance = Instance::start_with(
        &config(otlp_port, true),
        &[],
        &[("LC_OTLP_TEST_TENANT", "tenant-otlp-secret")],
    );
    let push = push_with_lines(&rx);
    assert_eq!(push.path, "/v1/metrics");
    assert!(
        push.headers
            .iter()
            .any(|(n, v)| n == "content-type" && v == "application/x-protobuf"),
        "{:?}",
        push.headers
    );
    assert!(
        push.headers
            .iter()
            .any(|(n, v)| n == "x-scope-orgid" && v == "tenant-otlp-secret"),
        "{:?}",
        push.headers
    );
    let resource = push.request.resource_metrics[0].resource.as_ref().unwrap();
    assert_eq!(
        attribute(&resource.attributes, "service.name"),
        Some("log-capturer")
    );
    assert_eq!(
        attribute(&resource.attributes, "deployment.environment"),
        Some("otlp-test")
    );
    assert!(
        counter(&push, "logs_processed", "out").is_some()
            || counter(&push, "logs_processed", "gen").is_some()
    );
    // The same instrument at /metrics, with Prometheus's prefix and suffix.
    let (status, metrics) = instance.get("/metrics");
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.contains("log_capturer_logs_processed_total{component=\"gen\"}"),
        "{metrics}"
    );
    // The header is a secret: shown redacted.
    let (ok, stdout, stderr) = common::validate(
        &config(otlp_port, true).replace("{port}", "8401"),
        &["--print"],
        &[("LC_OTLP_TEST_TENANT", "tenant-otlp-secret")],
    );
    assert!(ok, "{stderr}");
    assert!(!stdout.contains("tenant-otlp-secret"), "{stdout}");
    assert!(stdout.contains("LC_OTLP_TEST_TENANT"), "{stdout}");
}

#[test]
fn with_prometheus_off_metrics_are_only_pushed() {
    let (otlp_port, rx) = receiver();
    let instance = Instance::start_with(
        &config(otlp_port, false),
        &[],
        &[("LC_OTLP_TEST_TENANT", "t")],
    );
    push_with_lines(&rx);
    let (status, body) = instance.get("/metrics");
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("telemetry.prometheus"), "{body}");
}

#[test]
fn a_bad_otlp_endpoint_or_header_is_refused_naming_the_key() {
    let (ok, _, stderr) = common::validate(
        r#"
data_dir: "{dir}/data"
telemetry:
  otlp: {endpoint: "collector:4318", headers: {authorization: {env: LC_OTLP_UNSET_VAR}}}
sources:
  gen: {type: generator}
sinks:
  out: {type: blackhole, inputs: [gen]}
"#,
        &[],
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("telemetry.otlp.endpoint"), "{stderr}");
    assert!(
        stderr.contains("http://127.0.0.1:4318/v1/metrics"),
        "{stderr}"
    );
    assert!(
        stderr.contains("telemetry.otlp.headers.authorization"),
        "{stderr}"
    );
}
