//! The OTLP metrics push: an OpenTelemetry periodic reader with the OTLP/HTTP (protobuf)
//! exporter, sending through our own small hyper client.
//!
//! Why our own client: the exporter's periodic reader runs on a thread of its own, outside the
//! tokio runtime, and the stock hyper client needs a runtime's reactor; reqwest would add a
//! second HTTP stack. This client hands each request to the engine's runtime and waits for it.
//!
//! Guarantees: the metric names are the instruments' own (`logs_processed`, ...; Prometheus
//! adds the `log_capturer_` prefix and `_total`), with the same attributes; every failed push is
//! counted in `otlp_export_failures_total{reason}` and logged; a push never takes longer than
//! `telemetry.otlp.timeout`; header values are never logged.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use log_capturer_components::secret::SecretString;
use opentelemetry::KeyValue;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::PeriodicReader;

use crate::config::telemetry::OtlpConfig;
use crate::telemetry::OTLP_EXPORT_FAILURES;

/// Sends the exporter's requests on the engine's runtime.
#[derive(Clone, Debug)]
struct RuntimeClient {
    runtime: tokio::runtime::Handle,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

fn failed(reason: &'static str, error: &str) {
    OTLP_EXPORT_FAILURES.add(1, &[KeyValue::new("reason", reason)]);
    tracing::warn!(reason, error, "OTLP metrics push failed.");
}

impl HttpClient for RuntimeClient {
    // The shape `#[async_trait]` gives the trait's method, written out.
    fn send_bytes<'a, 'b>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        let client = self.client.clone();
        let timeout = self.timeout;
        let task = self.runtime.spawn(async move {
            let (parts, body) = request.into_parts();
            let sent = tokio::time::timeout(timeout, async {
                let response = client
                    .request(Request::from_parts(parts, Full::new(body)))
                    .await?;
                let (parts, body) = response.into_parts();
                let body = body.collect().await?.to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            })
            .await;
            match sent {
                Ok(Ok(response)) => {
                    if !response.status().is_success() {
                        failed(
                            "http_status",
                            &format!("the collector answered {}", response.status()),
                        );
                    }
                    Ok(response)
                }
                Ok(Err(err)) => {
                    failed("connection", &err.to_string());
                    Err(err)
                }
                Err(_) => {
                    failed("timeout", &format!("no answer within {timeout:?}"));
                    Err(HttpError::from(format!("no answer within {timeout:?}")))
                }
            }
        });
        Box::pin(async move { task.await.map_err(|err| HttpError::from(err.to_string()))? })
    }
}

/// The reader that pushes every `interval`, and the resource to describe this process with.
pub fn reader(
    config: &OtlpConfig,
    url: &str,
    headers: &BTreeMap<String, SecretString>,
) -> Result<PeriodicReader<opentelemetry_otlp::MetricExporter>, String> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| "the OTLP push needs the async runtime (internal error)".to_string())?;
    let client = RuntimeClient {
        runtime,
        client: Client::builder(TokioExecutor::new()).build_http(),
        timeout: config.timeout,
    };
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(name, value)| (name.clone(), value.expose().to_string()))
        .collect();
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(config.timeout)
        .with_headers(headers)
        .build()
        .map_err(|err| format!("telemetry.otlp: cannot set up the exporter: {err}"))?;
    Ok(PeriodicReader::builder(exporter)
        .with_interval(config.interval)
        .build())
}

/// `service.name` = `log-capturer` (unless configured), the version, and the configured
/// attributes.
pub fn resource(config: &OtlpConfig) -> Resource {
    let mut builder = Resource::builder_empty()
        .with_service_name("log-capturer")
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    builder = builder.with_attributes(
        config
            .resource
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
    );
    builder.build()
}
