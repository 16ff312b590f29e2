//! The `telemetry` block: where the metrics go (the Prometheus endpoint, an OTLP push).
//!
//! Guarantees: an OTLP endpoint is an `http://` URL (checked at load, with the fix named);
//! header values are [`Secret`]s (redacted wherever the configuration is shown) resolved once
//! at load; every error names its key (`telemetry.otlp.headers.NAME`).

use std::collections::BTreeMap;
use std::time::Duration;

use log_capturer_components::config::{ConfigError, duration};
use log_capturer_components::secret::{Secret, SecretString};
use serde::{Deserialize, Serialize};

/// Where the metrics go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetryConfig {
    /// Serve the metrics in the Prometheus text format at `GET /metrics`.
    pub prometheus: bool,
    /// Push the metrics with OTLP (HTTP/protobuf) as well, or instead.
    pub otlp: OtlpConfig,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            prometheus: true,
            otlp: OtlpConfig::default(),
        }
    }
}

/// The OTLP metrics push.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OtlpConfig {
    /// The collector's OTLP/HTTP metrics URL, e.g. `http://127.0.0.1:4318/v1/metrics` (a URL
    /// without a path gets `/v1/metrics`). None: no push.
    pub endpoint: Option<String>,
    /// Time between pushes.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Longest time one push may take.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Extra request headers (e.g. `authorization`); values are secrets.
    pub headers: BTreeMap<String, Secret>,
    /// Resource attributes sent with every push (`service.name` is `log-capturer` unless
    /// given here).
    pub resource: BTreeMap<String, String>,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            headers: BTreeMap::new(),
            resource: BTreeMap::new(),
        }
    }
}

impl OtlpConfig {
    /// The URL pushes go to, `/v1/metrics` added to a URL without a path.
    pub fn url(&self) -> Option<String> {
        let endpoint = self.endpoint.as_deref()?.trim();
        let uri: http::Uri = endpoint.parse().ok()?;
        Some(if matches!(uri.path(), "" | "/") {
            format!("{}/v1/metrics", endpoint.trim_end_matches('/'))
        } else {
            endpoint.to_string()
        })
    }
}

/// Checks the block; returns the header values, resolved.
pub fn check(
    config: &TelemetryConfig,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, SecretString> {
    let otlp = &config.otlp;
    if let Some(endpoint) = &otlp.endpoint {
        match endpoint.trim().parse::<http::Uri>() {
            Ok(uri) if uri.scheme_str() == Some("http") && uri.host().is_some() => {}
            Ok(uri) if uri.scheme_str() == Some("https") => errors.push(
                ConfigError::new("telemetry.otlp.endpoint", "https is not supported")
                    .with_hint("push to a collector on this machine or network over http://, e.g. http://127.0.0.1:4318/v1/metrics"),
            ),
            _ => errors.push(
                ConfigError::new(
                    "telemetry.otlp.endpoint",
                    format!("{endpoint:?} is not an http:// URL"),
                )
                .with_hint("write e.g. http://127.0.0.1:4318/v1/metrics"),
            ),
        }
    }
    if otlp.interval.is_zero() {
        errors.push(
            ConfigError::new("telemetry.otlp.interval", "must be longer than 0s")
                .with_hint("e.g. 10s"),
        );
    }
    if otlp.timeout.is_zero() {
        errors.push(
            ConfigError::new("telemetry.otlp.timeout", "must be longer than 0s")
                .with_hint("e.g. 10s"),
        );
    }
    if !config.prometheus && otlp.endpoint.is_none() {
        errors.push(
            ConfigError::new(
                "telemetry.prometheus",
                "is false and no telemetry.otlp.endpoint is set: the metrics would go nowhere",
            )
            .with_hint("set telemetry.otlp.endpoint, or leave telemetry.prometheus true"),
        );
    }
    let mut headers = BTreeMap::new();
    for (name, value) in &otlp.headers {
        let key = format!("telemetry.otlp.headers.{name}");
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            errors.push(
                ConfigError::new(&key, "is not a valid HTTP header name")
                    .with_hint("letters, digits and - only, e.g. authorization or x-scope-orgid"),
            );
            continue;
        }
        match value.resolve() {
            Ok(secret) => {
                if http::HeaderValue::from_str(secret.expose()).is_err() {
                    errors.push(ConfigError::new(
                        &key,
                        "is not a valid HTTP header value (control characters?)",
                    ));
                } else {
                    headers.insert(name.clone(), secret);
                }
            }
            Err(err) => errors.push(ConfigError::new(&key, err.to_string()).with_hint(err.hint())),
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> TelemetryConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn endpoints_intervals_and_headers_are_checked_by_key() {
        let mut errors = Vec::new();
        let config = parse(
            "{otlp: {endpoint: 'https://c:4318', interval: 0s, headers: {'bad name': x, ok: {env: LC_TEST_UNSET_OTLP_HEADER}}}}",
        );
        check(&config, &mut errors);
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "telemetry.otlp.endpoint",
                "telemetry.otlp.interval",
                "telemetry.otlp.headers.bad name",
                "telemetry.otlp.headers.ok",
            ]
        );
        let mut errors = Vec::new();
        check(&parse("{prometheus: false}"), &mut errors);
        assert_eq!(errors[0].path, "telemetry.prometheus");
    }

    #[test]
    fn a_url_without_a_path_gets_the_metrics_path_and_headers_resolve() {
        let config =
            parse("{otlp: {endpoint: 'http://c:4318', headers: {authorization: 'Bearer t'}}}");
        assert_eq!(config.otlp.url().unwrap(), "http://c:4318/v1/metrics");
        let mut errors = Vec::new();
        let headers = check(&config, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(headers["authorization"].expose(), "Bearer t");
        let config = parse("{otlp: {endpoint: 'http://c:4318/otlp/v1/metrics'}}");
        assert_eq!(config.otlp.url().unwrap(), "http://c:4318/otlp/v1/metrics");
    }
}
