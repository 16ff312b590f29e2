//! The `loki` sink's configuration: what it is told, how it is checked, and how the running
//! sink is built from it (secrets resolved, the pooled client created).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::KeyValue;
use serde::{Deserialize, Serialize};

use super::sink::LokiSink;
use super::stream_cap::StreamCap;
use super::template::LabelTemplate;
use super::timestamps::{Learner, TimestampConfig};
use super::tls;
use crate::config::{ConfigError, duration, join_path, label_name_errors, valid_label_name};
pub use crate::secret::Secret;

/// How the push body is encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LokiEncoding {
    /// Protobuf, raw snappy compressed (what Promtail sends; Loki's preferred form).
    #[default]
    Protobuf,
    /// JSON (`{"streams": [...]}`).
    Json,
}

/// Compression of a JSON body (protobuf is always snappy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonCompression {
    #[default]
    None,
    Gzip,
}

/// Authentication towards Loki (or the proxy in front of it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LokiAuth {
    /// Basic auth user name.
    pub user: Option<String>,
    /// Basic auth password (a [`Secret`]); needs `user`.
    pub password: Option<Secret>,
    /// Bearer token (a [`Secret`]), instead of basic auth.
    pub bearer_token: Option<Secret>,
}

/// TLS towards Loki (`https://` endpoints).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LokiTls {
    /// PEM file of CA certificates trusted in addition to the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; needs `key_file`.
    pub cert_file: Option<std::path::PathBuf>,
    /// PEM private key of the client certificate.
    pub key_file: Option<std::path::PathBuf>,
    /// Accept any server certificate. Only for tests: anyone on the path can read and change
    /// the logs. Logged as an error at start.
    pub insecure_skip_verify: bool,
}

/// Configuration of the `loki` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LokiSinkConfig {
    /// Loki's base URL, e.g. `http://127.0.0.1:3100`. Required.
    pub endpoint: String,
    /// The push path under the endpoint.
    pub path: String,
    /// `protobuf` (snappy) or `json`.
    pub encoding: LokiEncoding,
    /// For `json`: `none` or `gzip`.
    pub compression: JsonCompression,
    /// The tenant (`X-Scope-OrgID`); none sends no header (single-tenant Loki).
    pub tenant_id: Option<String>,
    /// Take each event's tenant from this label (removed from the stream labels); events
    /// without it go to `tenant_id`. One push per tenant.
    pub tenant_label: Option<String>,
    /// Stream labels added to every event's own labels (these win on a clash).
    pub labels: BTreeMap<String, String>,
    /// Basic or bearer authentication.
    pub auth: LokiAuth,
    /// TLS settings for `https://` endpoints.
    pub tls: LokiTls,
    /// Timestamp learning and the policy for too-old entries.
    pub timestamps: TimestampConfig,
    /// Check `GET /ready` at start and log the answer (never fails the start).
    pub healthcheck: bool,
    /// Longest line sent, in bytes; longer ones follow `line_too_long` before they are sent
    /// (Loki refuses lines over its `max_line_size`, 256 KB by default). 0: no limit.
    pub max_line_size: usize,
    /// `truncate` (send the first `max_line_size` bytes, cut at a character boundary, with the
    /// original length in structured metadata `truncated_from`), `dlq` or `drop` (counted).
    pub line_too_long: LineTooLong,
    /// Most label sets (streams) active at once per tenant; a new label set past it follows
    /// `stream_overflow` instead of becoming a stream. 0: no cap (the default).
    pub max_streams: usize,
    /// How long a label set counts as active after its last line (Loki keeps an idle stream
    /// about `chunk_idle_period`, 30m by default). Greater than zero.
    #[serde(with = "duration")]
    pub stream_idle: Duration,
    /// `fold` (the lines go to one stream per tenant, the constant `labels` plus
    /// `overflow="true"`, with the label pairs left out in structured metadata) or `drop`
    /// (counted in `dropped_total{reason="stream_overflow"}`).
    pub stream_overflow: StreamOverflow,
}

/// What the sink does with the lines of a label set past `max_streams`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamOverflow {
    #[default]
    Fold,
    Drop,
}

impl StreamOverflow {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fold => "fold",
            Self::Drop => "drop",
        }
    }
}

/// The label that marks the stream the lines past `max_streams` are folded into, and its value.
pub const OVERFLOW_LABEL: (&str, &str) = ("overflow", "true");

/// What the sink does with a line longer than `max_line_size`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineTooLong {
    #[default]
    Truncate,
    Dlq,
    Drop,
}

impl Default for LokiSinkConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            path: "/loki/api/v1/push".to_string(),
            encoding: LokiEncoding::Protobuf,
            compression: JsonCompression::None,
            tenant_id: None,
            tenant_label: None,
            labels: BTreeMap::new(),
            auth: LokiAuth::default(),
            tls: LokiTls::default(),
            timestamps: TimestampConfig::default(),
            healthcheck: true,
            max_line_size: 256_000,
            line_too_long: LineTooLong::Truncate,
            max_streams: 0,
            stream_idle: Duration::from_secs(30 * 60),
            stream_overflow: StreamOverflow::Fold,
        }
    }
}

/// The push path Loki serves; an `endpoint` that ends with it has the path twice.
const PUSH_PATH: &str = "/loki/api/v1/push";

/// Loki's rule for tenant IDs (`X-Scope-OrgID`): 1 to 150 of `A-Za-z0-9!-_.*'()`, and not `.`
/// or `..` (the ID names directories in Loki's storage).
pub fn valid_tenant(tenant: &str) -> bool {
    (1..=150).contains(&tenant.len())
        && tenant != "."
        && tenant != ".."
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!-_.*'()".contains(c))
}

impl LokiSinkConfig {
    pub fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        errors.extend(self.endpoint_errors(prefix));
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            errors.push(ConfigError::new(
                join_path(prefix, "tls"),
                "cert_file and key_file go together",
            ));
        }
        if let Some(tenant) = &self.tenant_id
            && !valid_tenant(tenant)
        {
            errors.push(
                ConfigError::new(
                    join_path(prefix, "tenant_id"),
                    format!("{tenant:?} is not a tenant ID Loki accepts"),
                )
                .with_hint(
                    "use 1 to 150 of the characters A-Z a-z 0-9 ! - _ . * ' ( ), not `.` or `..`; \
                     remove tenant_id for a single-tenant Loki",
                ),
            );
        }
        if let Some(label) = &self.tenant_label
            && !valid_label_name(label)
        {
            errors.push(ConfigError::new(
                join_path(prefix, "tenant_label"),
                "invalid label name: Loki accepts [a-zA-Z_][a-zA-Z0-9_]*",
            ));
        }
        errors.extend(label_name_errors(prefix, self.labels.keys()));
        for (name, value) in &self.labels {
            if let Err(err) = LabelTemplate::parse(value) {
                errors.push(ConfigError::new(
                    join_path(prefix, &format!("labels.{name}")),
                    err,
                ));
            }
        }
        if self.max_streams > 0 {
            if self.stream_idle.is_zero() {
                errors.push(
                    ConfigError::new(
                        join_path(prefix, "stream_idle"),
                        "must be greater than zero",
                    )
                    .with_hint("the default is 30m, Loki's chunk_idle_period"),
                );
            }
            if self.stream_overflow == StreamOverflow::Fold
                && self.labels.contains_key(OVERFLOW_LABEL.0)
            {
                errors.push(
                    ConfigError::new(
                        join_path(prefix, &format!("labels.{}", OVERFLOW_LABEL.0)),
                        "is the label of the overflow stream (max_streams with stream_overflow: fold)",
                    )
                    .with_hint("rename this label, or use stream_overflow: drop"),
                );
            }
        }
        let auth = join_path(prefix, "auth");
        if self.auth.user.is_some() && self.auth.bearer_token.is_some() {
            errors.push(ConfigError::new(
                &auth,
                "use either user/password or bearer_token, not both",
            ));
        }
        if self.auth.password.is_some() && self.auth.user.is_none() {
            errors.push(
                ConfigError::new(join_path(&auth, "password"), "given without `user`")
                    .with_hint("basic authentication needs auth.user too"),
            );
        }
        for (key, secret) in [
            ("password", &self.auth.password),
            ("bearer_token", &self.auth.bearer_token),
        ] {
            if let Some(Err(err)) = secret.as_ref().map(Secret::resolve) {
                errors.push(
                    ConfigError::new(join_path(&auth, key), err.to_string()).with_hint(err.hint()),
                );
            }
        }
        errors
    }

    /// `endpoint` must be an http(s) base URL without credentials and without the push path.
    fn endpoint_errors(&self, prefix: &str) -> Vec<ConfigError> {
        let path = join_path(prefix, "endpoint");
        // URLs are logged: credentials in one would end up in the logs, so it is never echoed.
        let shown = if self.endpoint.contains('@') {
            "the endpoint".to_string()
        } else {
            format!("{:?}", self.endpoint)
        };
        let uri = match self.endpoint.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() =>
            {
                uri
            }
            _ => {
                return vec![
                    ConfigError::new(path, format!("{shown} is not an http:// or https:// URL"))
                        .with_hint("e.g. endpoint: \"http://127.0.0.1:3100\""),
                ];
            }
        };
        let mut errors = Vec::new();
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            errors.push(
                ConfigError::new(&path, "contains credentials (user:password@host)")
                    .with_hint(
                        "put them in auth.user and auth.password (a secret), and give the URL without them; \
                         URLs are logged, secrets are not",
                    ),
            );
            return errors;
        }
        let endpoint_path = uri.path().trim_end_matches('/');
        let push_path = self.path.trim_end_matches('/');
        for suffix in [PUSH_PATH, push_path] {
            if !suffix.is_empty() && endpoint_path.ends_with(suffix) {
                let base = format!(
                    "{}://{}{}",
                    uri.scheme_str().unwrap_or("http"),
                    uri.authority().map_or("", |a| a.as_str()),
                    &endpoint_path[..endpoint_path.len() - suffix.len()]
                );
                errors.push(
                    ConfigError::new(
                        &path,
                        format!(
                            "{shown} includes the push path {suffix}; the sink adds `path` to it"
                        ),
                    )
                    .with_hint(format!("give Loki's base URL: endpoint: \"{base}\"")),
                );
                break;
            }
        }
        errors
    }

    /// Whether every stream this sink makes from a source's events has at least one label (Loki
    /// refuses a stream without labels, and with it the whole push). `source_labels` are the
    /// labels every event of the source carries (non-empty values); `has_file` says whether
    /// every event names its file (so `{{ file }}` renders).
    pub fn streams_have_labels(
        &self,
        source_labels: &BTreeMap<String, String>,
        has_file: bool,
    ) -> bool {
        let tenant_label = self.tenant_label.as_deref();
        let mut present: std::collections::BTreeSet<&str> = source_labels
            .iter()
            .filter(|(name, value)| !value.is_empty() && Some(name.as_str()) != tenant_label)
            .map(|(name, _)| name.as_str())
            .collect();
        for (name, value) in &self.labels {
            // A value that may render empty removes the label of that name.
            match LabelTemplate::parse(value) {
                Ok(template) if template.always_renders(source_labels, has_file) => {
                    present.insert(name)
                }
                _ => present.remove(name.as_str()),
            };
        }
        !present.is_empty()
    }

    /// Builds the sink: resolves secrets, creates the pooled client.
    pub fn build(&self, key: &str) -> Result<LokiSink, String> {
        let resolve = |key: &str, secret: &Secret| {
            secret.resolve().map_err(|err| format!("auth.{key}: {err}"))
        };
        let authorization = if let Some(token) = &self.auth.bearer_token {
            Some(format!(
                "Bearer {}",
                resolve("bearer_token", token)?.expose()
            ))
        } else if let Some(user) = &self.auth.user {
            let password = match &self.auth.password {
                Some(password) => resolve("password", password)?,
                None => crate::secret::SecretString::default(),
            };
            Some(format!(
                "Basic {}",
                base64(&format!("{user}:{}", password.expose()))
            ))
        } else {
            None
        };
        let authorization = authorization
            .map(|v| {
                HeaderValue::from_str(&v)
                    .map(|mut value| {
                        // Keeps the value out of Debug output (and out of HTTP/2 header tables).
                        value.set_sensitive(true);
                        value
                    })
                    .map_err(|_| {
                        "auth: the credentials contain characters not allowed in a header"
                            .to_string()
                    })
            })
            .transpose()?;
        let tenant = self
            .tenant_id
            .as_deref()
            .map(|t| {
                HeaderValue::from_str(t)
                    .map_err(|_| format!("tenant_id {t:?} is not a valid header value"))
            })
            .transpose()?;
        let url = format!("{}{}", self.endpoint.trim_end_matches('/'), self.path);
        let url: http::Uri = url.parse().map_err(|e| format!("endpoint: {e}"))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        connector.enforce_http(false);
        let tls = tls::client_config(&self.tls, key)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(32)
            .build(connector);
        let templates: Vec<(String, LabelTemplate)> = self
            .labels
            .iter()
            .map(|(name, value)| LabelTemplate::parse(value).map(|t| (name.clone(), t)))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("labels: {e}"))?;
        let cap = (self.max_streams > 0).then(|| {
            // The overflow stream keeps what every stream of the sink has: its constant labels.
            let mut pairs: BTreeMap<String, String> = templates
                .iter()
                .filter_map(|(name, template)| Some((name.clone(), template.constant()?)))
                .filter(|(_, value)| !value.is_empty())
                .collect();
            pairs.insert(OVERFLOW_LABEL.0.to_string(), OVERFLOW_LABEL.1.to_string());
            StreamCap::new(
                self.max_streams,
                self.stream_idle,
                self.stream_overflow,
                pairs.into_iter().collect(),
                key,
            )
        });
        let sink = LokiSink {
            key: key.to_string(),
            url,
            ready_url: format!("{}/ready", self.endpoint.trim_end_matches('/')),
            config: self.clone(),
            client,
            authorization,
            tenant,
            learner: Learner::new(self.timestamps.max_age),
            templates,
            cap,
            attrs: Arc::new([KeyValue::new("sink", key.to_string())]),
        };
        Ok(sink)
    }
}

fn base64(input: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

impl crate::component::Component for LokiSinkConfig {
    const TYPE: &'static str = "loki";
    const METRICS: &'static [&'static crate::telemetry::MetricDef] = super::metrics::METRICS;

    fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        LokiSinkConfig::validate(self, prefix)
    }
}

impl crate::component::SinkComponent for LokiSinkConfig {
    fn build(
        &self,
        cx: &crate::component::SinkContext,
    ) -> Result<Arc<dyn crate::dispatcher::SinkService>, crate::BuildError> {
        let sink = Arc::new(
            LokiSinkConfig::build(self, &cx.key)
                .map_err(|message| crate::component::build_error(&cx.key, message))?,
        );
        if self.healthcheck {
            let check = sink.clone();
            tokio::spawn(async move { check.healthcheck().await });
        }
        Ok(sink)
    }

    fn tenant(&self) -> Option<&str> {
        self.tenant_id.as_deref()
    }

    fn streams_have_labels(&self, labels: &BTreeMap<String, String>, has_file: bool) -> bool {
        LokiSinkConfig::streams_have_labels(self, labels, has_file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64("user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64("a"), "YQ==");
        assert_eq!(base64("ab"), "YWI=");
    }

    #[tokio::test]
    async fn credentials_come_from_value_env_or_file_and_stay_out_of_debug() {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "s3cret\n").unwrap();
        let base = LokiSinkConfig {
            endpoint: "http://127.0.0.1:3100".into(),
            healthcheck: false,
            ..LokiSinkConfig::default()
        };
        let basic = LokiSinkConfig {
            auth: LokiAuth {
                user: Some("user".into()),
                password: Some(Secret::value("pass")),
                ..LokiAuth::default()
            },
            ..base.clone()
        }
        .build("l")
        .unwrap();
        let header = basic.authorization.unwrap();
        assert_eq!(header, "Basic dXNlcjpwYXNz");
        assert!(header.is_sensitive());
        assert!(!format!("{header:?}").contains("dXNlcjpwYXNz"));
        let bearer = LokiSinkConfig {
            auth: LokiAuth {
                bearer_token: Some(Secret::file(token_file)),
                ..LokiAuth::default()
            },
            ..base.clone()
        }
        .build("l")
        .unwrap();
        assert_eq!(bearer.authorization.unwrap(), "Bearer s3cret");
        let missing = LokiSinkConfig {
            auth: LokiAuth {
                bearer_token: Some(Secret::env("LOG_CAPTURER_TEST_SURELY_UNSET")),
                ..LokiAuth::default()
            },
            ..base
        };
        assert!(
            missing
                .build("l")
                .err()
                .unwrap()
                .contains("LOG_CAPTURER_TEST_SURELY_UNSET is not set")
        );
        // validate says so before anything starts.
        let errors = missing.validate("sinks.loki");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "sinks.loki.auth.bearer_token");
        assert!(
            errors[0]
                .message
                .contains("environment variable LOG_CAPTURER_TEST_SURELY_UNSET is not set"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn endpoint_with_credentials_or_push_path_is_refused_without_echoing_it() {
        let config = |endpoint: &str| LokiSinkConfig {
            endpoint: endpoint.into(),
            ..LokiSinkConfig::default()
        };
        let errors = config("http://admin:hunter2@loki:3100").validate("sinks.loki");
        assert_eq!(errors.len(), 1, "{errors:?}");
        let text = errors[0].to_string();
        assert!(
            text.starts_with("sinks.loki.endpoint: contains credentials"),
            "{text}"
        );
        assert!(text.contains("auth.user and auth.password"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");

        let errors = config("http://loki:3100/loki/api/v1/push").validate("sinks.loki");
        assert_eq!(errors.len(), 1, "{errors:?}");
        let text = errors[0].to_string();
        assert!(
            text.contains("includes the push path /loki/api/v1/push"),
            "{text}"
        );
        assert!(text.contains("endpoint: \"http://loki:3100\""), "{text}");
        // A path prefix in front of Loki (a proxy) is kept.
        assert!(config("http://gw:80/tenant-a").validate("x").is_empty());
        assert!(
            config("http://gw:80/tenant-a/loki/api/v1/push/").validate("x")[0]
                .to_string()
                .contains("endpoint: \"http://gw:80/tenant-a\"")
        );
    }

    #[test]
    fn tenant_ids_follow_lokis_rule() {
        for good in ["team-a", "A_b.c*!'()", &"x".repeat(150)] {
            assert!(valid_tenant(good), "{good}");
        }
        for bad in ["team/a", "", ".", "..", "a b", "é", &"x".repeat(151)] {
            assert!(!valid_tenant(bad), "{bad}");
        }
        let errors = LokiSinkConfig {
            endpoint: "http://loki:3100".into(),
            tenant_id: Some("team/a".into()),
            ..LokiSinkConfig::default()
        }
        .validate("sinks.loki");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "sinks.loki.tenant_id");
        assert!(errors[0].hint.as_deref().unwrap_or("").contains("150"));
    }

    #[test]
    fn streams_have_labels_only_when_some_label_always_renders() {
        let sink = |labels: &[(&str, &str)], tenant_label: Option<&str>| LokiSinkConfig {
            endpoint: "http://loki:3100".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tenant_label: tenant_label.map(str::to_string),
            ..LokiSinkConfig::default()
        };
        let none = BTreeMap::new();
        let job = BTreeMap::from([("job".to_string(), "app".to_string())]);
        assert!(!sink(&[], None).streams_have_labels(&none, true));
        assert!(sink(&[], None).streams_have_labels(&job, false));
        // The tenant label is taken out of the stream's labels.
        assert!(!sink(&[], Some("job")).streams_have_labels(&job, false));
        assert!(sink(&[("src", "{{ source }}")], None).streams_have_labels(&none, false));
        assert!(sink(&[("f", "{{ file }}")], None).streams_have_labels(&none, true));
        assert!(!sink(&[("f", "{{ file }}")], None).streams_have_labels(&none, false));
        assert!(!sink(&[("a", "{{ label.app }}")], None).streams_have_labels(&none, true));
        // A sink label that may render empty removes the source's label of that name.
        assert!(!sink(&[("job", "{{ label.app }}")], None).streams_have_labels(&job, false));
    }

    #[test]
    fn a_stream_cap_needs_an_idle_time_and_the_overflow_label_to_itself() {
        let config = LokiSinkConfig {
            endpoint: "http://loki:3100".into(),
            labels: BTreeMap::from([("overflow".to_string(), "no".to_string())]),
            max_streams: 100,
            stream_idle: Duration::ZERO,
            ..LokiSinkConfig::default()
        };
        let errors = config.validate("sinks.loki");
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["sinks.loki.stream_idle", "sinks.loki.labels.overflow"]
        );
        // Without a cap (or when nothing is folded) neither matters.
        assert!(
            LokiSinkConfig {
                max_streams: 0,
                ..config.clone()
            }
            .validate("x")
            .is_empty()
        );
        assert_eq!(
            LokiSinkConfig {
                stream_overflow: StreamOverflow::Drop,
                ..config
            }
            .validate("x")
            .len(),
            1
        );
    }

    #[test]
    fn validation_names_bad_endpoint_and_labels() {
        let config = LokiSinkConfig {
            endpoint: "ftp://x".into(),
            labels: BTreeMap::from([("bad-name".to_string(), "v".to_string())]),
            ..LokiSinkConfig::default()
        };
        let errors = config.validate("sinks.loki");
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["sinks.loki.endpoint", "sinks.loki.labels.bad-name"]
        );
    }
}
