//! The `loki` sink: pushes batches to Grafana Loki's `/loki/api/v1/push`.
//!
//! A batch becomes one push: events are grouped into streams by their labels (the event's labels
//! plus the sink's `labels`), entries sorted by time within a stream, encoded as protobuf with
//! raw snappy (default) or JSON (optionally gzip). Connections are pooled and kept alive.
//!
//! Guarantees, by Loki's answer:
//! - 2xx except 260: delivered. 260 (ingestion blocked): retried.
//! - 400: a partial success. The entries Loki names are matched (by stream and time, or stream
//!   and length) and reported as rejected with their reason; they go to the dead-letter queue,
//!   the rest counts as delivered. The cutoffs in the messages feed the timestamp learner. The
//!   whole batch is never resent.
//! - 413: the dispatcher splits the batch and sends the halves.
//! - 429 and 5xx except 501: retried with backoff, honouring `Retry-After`.
//! - 501 and other 4xx: a final failure (to the dead-letter queue).
//! - Before sending, entries older than what Loki is known to accept follow the timestamp
//!   policy, and label sets Loki would refuse are reported as rejected without being sent.

pub mod proto;
pub mod response;
pub mod timestamps;
mod tls;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram};
use serde::{Deserialize, Serialize};

use self::proto::Timestamp;
use self::response::{RejectReason, Rejection, parse_rejections, parse_retry_after};
use self::timestamps::{Learner, TimestampConfig, Verdict};
use crate::config::{ConfigError, join_path, label_name_errors, valid_label_name};
use crate::dispatcher::{Rejected, SendOutcome, SinkService};
use crate::event::{EventBatch, LogEvent, now_ns};
pub use crate::secret::Secret;
use crate::telemetry::{meter, names};

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
        let sink = LokiSink {
            key: key.to_string(),
            url,
            ready_url: format!("{}/ready", self.endpoint.trim_end_matches('/')),
            config: self.clone(),
            client,
            authorization,
            tenant,
            learner: Learner::new(self.timestamps.max_age),
            templates: self
                .labels
                .iter()
                .map(|(name, value)| LabelTemplate::parse(value).map(|t| (name.clone(), t)))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("labels: {e}"))?,
            attrs: Arc::new([KeyValue::new("sink", key.to_string())]),
        };
        Ok(sink)
    }
}

fn base64(input: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

/// The Loki sink's own instruments.
struct LokiInstruments {
    sent_entries: Counter<u64>,
    sent_bytes: Counter<u64>,
    request_duration: Histogram<f64>,
    http_responses: Counter<u64>,
    timestamp_rejections: Counter<u64>,
    timestamp_clamped: Counter<u64>,
    timestamp_max_age: Gauge<f64>,
}

fn instruments() -> &'static LokiInstruments {
    static INSTRUMENTS: OnceLock<LokiInstruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let m = meter();
        LokiInstruments {
            sent_entries: m
                .u64_counter(names::SENT_ENTRIES)
                .with_description("Entries Loki accepted.")
                .build(),
            sent_bytes: m
                .u64_counter(names::SENT_BYTES)
                .with_description("Bytes of push bodies sent (after compression).")
                .build(),
            request_duration: m
                .f64_histogram(names::REQUEST_DURATION)
                .with_description("Duration of one push request.")
                .with_boundaries(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ])
                .build(),
            http_responses: m
                .u64_counter(names::HTTP_RESPONSES)
                .with_description("Push responses by status code.")
                .build(),
            timestamp_rejections: m
                .u64_counter(names::TIMESTAMP_REJECTIONS)
                .with_description("Entries Loki rejected, by reason.")
                .build(),
            timestamp_clamped: m
                .u64_counter(names::TIMESTAMP_CLAMPED)
                .with_description("Entries whose time was moved into Loki's window before sending.")
                .build(),
            timestamp_max_age: m
                .f64_gauge(names::TIMESTAMP_MAX_AGE)
                .with_description("The maximum entry age learned from Loki's rejections.")
                .build(),
        }
    })
}

/// The running `loki` sink.
pub struct LokiSink {
    key: String,
    url: http::Uri,
    ready_url: String,
    config: LokiSinkConfig,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    authorization: Option<HeaderValue>,
    tenant: Option<HeaderValue>,
    learner: Learner,
    /// The `labels` setting, parsed.
    templates: Vec<(String, LabelTemplate)>,
    attrs: Arc<[KeyValue]>,
}

/// A label value of the `labels` setting: text with `{{ source }}`, `{{ file }}` and
/// `{{ label.NAME }}` placeholders, filled in per event.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelTemplate(Vec<TemplatePart>);

#[derive(Clone, Debug, PartialEq)]
enum TemplatePart {
    Text(String),
    Source,
    File,
    Label(String),
}

impl LabelTemplate {
    /// Parses a value; an unknown or unclosed placeholder is an error naming it.
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = value;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(TemplatePart::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed {{{{ in {value:?}"))?;
            let name = after[..end].trim();
            parts.push(match name {
                "source" => TemplatePart::Source,
                "file" => TemplatePart::File,
                _ => match name.strip_prefix("label.") {
                    Some(label) if !label.is_empty() => TemplatePart::Label(label.to_string()),
                    _ => {
                        return Err(format!(
                            "unknown placeholder {{{{ {name} }}}} in {value:?}: use source, file or label.NAME"
                        ));
                    }
                },
            });
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Text(rest.to_string()));
        }
        Ok(Self(parts))
    }

    /// Whether the value is non-empty for every event that carries `labels` (and, with
    /// `has_file`, names its file).
    pub fn always_renders(&self, labels: &BTreeMap<String, String>, has_file: bool) -> bool {
        self.0.iter().any(|part| match part {
            TemplatePart::Text(text) => !text.is_empty(),
            // Component names are never empty.
            TemplatePart::Source => true,
            TemplatePart::File => has_file,
            TemplatePart::Label(name) => labels.get(name).is_some_and(|v| !v.is_empty()),
        })
    }

    /// The value for one event (empty when every placeholder is missing and there is no text).
    pub fn render(&self, event: &LogEvent) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                TemplatePart::Text(text) => out.push_str(text),
                TemplatePart::Source => out.push_str(&event.source),
                TemplatePart::File => out.push_str(event.file.as_deref().unwrap_or("")),
                TemplatePart::Label(name) => out.push_str(event.labels.get(name).unwrap_or("")),
            }
        }
        out
    }
}

/// What Loki's answer to `GET /ready` means for the pushes that follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyVerdict {
    /// 2xx.
    Ready,
    /// 429, 5xx (Loki starting, overloaded) or another answer pushes are retried on.
    NotYet(StatusCode),
    /// A 4xx other than 429: pushes answered alike fail for good (dead-letter queue).
    Refused {
        status: StatusCode,
        /// What it most likely means.
        cause: &'static str,
    },
}

impl ReadyVerdict {
    pub fn of(status: StatusCode) -> Self {
        match status.as_u16() {
            200..=299 => Self::Ready,
            404 => Self::Refused {
                status,
                cause: "the endpoint is wrong: no Loki at this URL, or a wrong path prefix \
                        (or a proxy in front of Loki that does not serve /ready)",
            },
            401 | 403 => Self::Refused {
                status,
                cause: "the credentials were refused: check auth (and tenant_id) for this endpoint",
            },
            429 => Self::NotYet(status),
            400..=499 => Self::Refused {
                status,
                cause: "Loki refused the request: check endpoint, auth and tenant_id",
            },
            _ => Self::NotYet(status),
        }
    }

    /// The log message for a refused check; empty for the others.
    pub fn message(&self) -> String {
        match self {
            Self::Refused { status, cause } => format!(
                "Loki's readiness check answered {status}: {cause}. Pushes answered the same way \
                 will fail and go to the dead-letter queue; they are not retried."
            ),
            _ => String::new(),
        }
    }
}

/// A tenant (`None`: no header) and the indexes of its events in a batch.
type TenantGroup = (Option<HeaderValue>, Vec<usize>);

/// One stream of the push being built.
struct StreamBuild {
    labels_text: String,
    /// Sorted label pairs, for matching Loki's messages.
    pairs: Vec<(String, String)>,
    valid: bool,
    /// The oldest time Loki accepts for this stream, looked up once per batch.
    cutoff: Option<i64>,
    /// (event index, timestamp to send).
    entries: Vec<(usize, i64, bool)>,
}

/// The push, with what was decided before sending.
struct Prepared {
    streams: Vec<StreamBuild>,
    /// Events not sent: (index, reason, detail).
    rejected: Vec<Rejected>,
    dropped: usize,
}

impl LokiSink {
    /// The tenant, for dead-letter records.
    pub fn tenant_id(&self) -> Option<&str> {
        self.config.tenant_id.as_deref()
    }

    /// `GET /ready` (with the sink's tenant and credentials); logs what the answer means for
    /// the pushes to come.
    pub async fn healthcheck(&self) {
        let result = async {
            let uri: http::Uri = self.ready_url.parse().map_err(|e| format!("{e}"))?;
            let mut req = Request::get(uri)
                .body(Full::new(Bytes::new()))
                .map_err(|e| e.to_string())?;
            if let Some(tenant) = &self.tenant {
                req.headers_mut().insert("X-Scope-OrgID", tenant.clone());
            }
            if let Some(auth) = &self.authorization {
                req.headers_mut()
                    .insert(header::AUTHORIZATION, auth.clone());
            }
            let response = tokio::time::timeout(Duration::from_secs(5), self.client.request(req))
                .await
                .map_err(|_| "no answer within 5s".to_string())?
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(response.status())
        }
        .await;
        match result.map(ReadyVerdict::of) {
            Ok(ReadyVerdict::Ready) => {
                tracing::info!(sink = %self.key, url = %self.ready_url, "Loki is ready.")
            }
            Ok(ReadyVerdict::NotYet(status)) => {
                tracing::warn!(sink = %self.key, url = %self.ready_url, %status, "Loki is not ready yet; pushes will be retried.")
            }
            Ok(verdict @ ReadyVerdict::Refused { status, .. }) => {
                tracing::error!(sink = %self.key, url = %self.ready_url, %status, "{}", verdict.message())
            }
            Err(error) => {
                tracing::warn!(sink = %self.key, url = %self.ready_url, %error, "Loki is not reachable yet; pushes will be retried.")
            }
        }
    }

    /// Groups, guards and encodes `events` as one push body, without sending it: what `send`
    /// does before the request (also what the encoding benchmark measures). Returns the body,
    /// its content type and content encoding.
    pub fn encode_batch(
        &self,
        events: &[LogEvent],
    ) -> Result<(Bytes, &'static str, Option<&'static str>), String> {
        let all: Vec<usize> = (0..events.len()).collect();
        let prepared = self.prepare(events, &all, now_ns());
        self.encode(events, &prepared)
    }

    /// Groups `events` into streams (labels rendered, merged and formatted) and applies the
    /// timestamp policy, as `send` does before encoding; returns the number of streams. Exposed
    /// for the label-handling benchmark, not an API.
    #[doc(hidden)]
    pub fn group_streams(&self, events: &[LogEvent]) -> usize {
        let all: Vec<usize> = (0..events.len()).collect();
        self.prepare(events, &all, now_ns()).streams.len()
    }

    /// Groups the events at `indexes` into streams and applies the timestamp policy.
    fn prepare(&self, events: &[LogEvent], indexes: &[usize], now: i64) -> Prepared {
        let mut by_labels: HashMap<(usize, usize, usize), usize> = HashMap::new();
        let mut by_text: HashMap<String, usize> = HashMap::new();
        let mut streams: Vec<StreamBuild> = Vec::new();
        let mut rejected = Vec::new();
        let mut dropped = 0;
        let mut clamped = 0u64;
        // Events of one file come in runs: the previous event's stream is checked first.
        let mut last: Option<((usize, usize, usize), usize)> = None;
        for &index in indexes {
            let event = &events[index];
            // Templates may read the source and the file, so they are part of the cache key.
            let key = (
                event.labels.identity(),
                Arc::as_ptr(&event.source) as *const u8 as usize,
                event
                    .file
                    .as_ref()
                    .map_or(0, |f| Arc::as_ptr(f) as *const u8 as usize),
            );
            let known = match last {
                Some((last_key, i)) if last_key == key => Some(i),
                _ => by_labels.get(&key).copied(),
            };
            let stream_index = match known {
                Some(i) => i,
                None => {
                    let mut merged: BTreeMap<&str, String> = event
                        .labels
                        .iter()
                        .filter(|(k, _)| Some(*k) != self.config.tenant_label.as_deref())
                        .map(|(k, v)| (k, v.to_string()))
                        .collect();
                    for (name, template) in &self.templates {
                        let value = template.render(event);
                        // Loki drops labels with empty values; so do we.
                        if value.is_empty() {
                            merged.remove(name.as_str());
                        } else {
                            merged.insert(name, value);
                        }
                    }
                    let pairs: Vec<(String, String)> = merged
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect();
                    let valid = !pairs.is_empty() && pairs.iter().all(|(k, _)| valid_label_name(k));
                    let text = proto::format_labels(merged.iter().map(|(k, v)| (*k, v.as_str())));
                    let i = *by_text.entry(text.clone()).or_insert_with(|| {
                        let cutoff =
                            self.learner
                                .cutoff(&text, now, self.config.timestamps.learned_ttl);
                        streams.push(StreamBuild {
                            labels_text: text,
                            pairs,
                            valid,
                            cutoff,
                            entries: Vec::new(),
                        });
                        streams.len() - 1
                    });
                    by_labels.insert(key, i);
                    i
                }
            };
            last = Some((key, stream_index));
            let stream = &mut streams[stream_index];
            if !stream.valid {
                rejected.push(Rejected {
                    index,
                    reason: RejectReason::InvalidLabels.as_str(),
                    detail: format!(
                        "stream {} has no labels or a label name Loki refuses ([a-zA-Z_][a-zA-Z0-9_]*)",
                        stream.labels_text
                    ),
                });
                continue;
            }
            match timestamps::verdict(
                &self.config.timestamps,
                stream.cutoff,
                event.timestamp_ns,
                now,
            ) {
                Verdict::Send {
                    timestamp_ns,
                    clamped: was_clamped,
                } => {
                    clamped += u64::from(was_clamped);
                    stream.entries.push((index, timestamp_ns, was_clamped));
                }
                Verdict::Divert => rejected.push(Rejected {
                    index,
                    reason: RejectReason::TooOld.as_str(),
                    detail: "older than the oldest timestamp Loki accepts (learned)".to_string(),
                }),
                Verdict::Drop => dropped += 1,
            }
        }
        if clamped > 0 {
            instruments().timestamp_clamped.add(clamped, &self.attrs);
        }
        for stream in &mut streams {
            stream.entries.sort_by_key(|(_, ts, _)| *ts);
        }
        Prepared {
            streams,
            rejected,
            dropped,
        }
    }

    fn encode(
        &self,
        events: &[LogEvent],
        prepared: &Prepared,
    ) -> Result<(Bytes, &'static str, Option<&'static str>), String> {
        match self.config.encoding {
            LokiEncoding::Protobuf => {
                let raw = protobuf_body(events, prepared);
                let compressed = snap::raw::Encoder::new()
                    .compress_vec(&raw)
                    .map_err(|e| format!("snappy: {e}"))?;
                Ok((Bytes::from(compressed), "application/x-protobuf", None))
            }
            LokiEncoding::Json => {
                let body = json_body(events, prepared);
                match self.config.compression {
                    JsonCompression::None => Ok((Bytes::from(body), "application/json", None)),
                    JsonCompression::Gzip => {
                        let mut encoder =
                            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                        encoder
                            .write_all(&body)
                            .and_then(|()| encoder.finish())
                            .map(|gz| (Bytes::from(gz), "application/json", Some("gzip")))
                            .map_err(|e| format!("gzip: {e}"))
                    }
                }
            }
        }
    }

    async fn push(
        &self,
        body: Bytes,
        content_type: &'static str,
        encoding: Option<&'static str>,
        tenant: Option<&HeaderValue>,
    ) -> Result<(StatusCode, http::HeaderMap, String), String> {
        let length = body.len();
        let mut req = Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let headers = req.headers_mut();
        if let Some(encoding) = encoding {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        if let Some(tenant) = tenant {
            headers.insert("X-Scope-OrgID", tenant.clone());
        }
        if let Some(auth) = &self.authorization {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        let started = std::time::Instant::now();
        let response = self.client.request(req).await.map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            text
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        instruments()
            .request_duration
            .record(started.elapsed().as_secs_f64(), &self.attrs);
        instruments().sent_bytes.add(length as u64, &self.attrs);
        instruments().http_responses.add(
            1,
            &[
                self.attrs[0].clone(),
                KeyValue::new("code", i64::from(status.as_u16())),
            ],
        );
        Ok((status, headers, body))
    }

    /// Matches Loki's rejections to the entries that were sent; learns cutoffs on the way.
    fn match_rejections(
        &self,
        events: &[LogEvent],
        prepared: &Prepared,
        rejections: &[Rejection],
        now: i64,
    ) -> Vec<Rejected> {
        let mut out: Vec<Rejected> = Vec::new();
        let mut taken = std::collections::HashSet::new();
        let instruments = instruments();
        for rejection in rejections {
            instruments.timestamp_rejections.add(
                1,
                &[
                    self.attrs[0].clone(),
                    KeyValue::new("reason", rejection.reason.as_str()),
                ],
            );
            // Loki may add labels of its own before validating (`service_name`), so a stream
            // matches when all of its labels appear in the one the message names.
            let streams: Vec<&StreamBuild> = match &rejection.stream {
                Some(pairs) => prepared
                    .streams
                    .iter()
                    .filter(|s| s.pairs.iter().all(|p| pairs.contains(p)))
                    .collect(),
                None => prepared.streams.iter().collect(),
            };
            match (rejection.reason, rejection.oldest_acceptable_ns) {
                (RejectReason::TooOld, Some(cutoff)) => self.learner.learn_max_age(cutoff, now),
                (RejectReason::TooFarBehind, Some(cutoff)) => {
                    for stream in &streams {
                        self.learner.learn_stream(&stream.labels_text, cutoff, now);
                    }
                }
                _ => {}
            }
            for stream in streams {
                for &(index, ts, _) in &stream.entries {
                    let hit = match rejection.reason {
                        RejectReason::TooOld | RejectReason::TooFarBehind => match rejection
                            .oldest_acceptable_ns
                        {
                            Some(cutoff) => ts < cutoff,
                            None => rejection.entry_seconds == Some(ts.div_euclid(1_000_000_000)),
                        },
                        // Loki lists one example of each kind ("N errors like: ..."), the first
                        // in time order: every later entry of the stream is past the limit too.
                        RejectReason::TooNew => rejection
                            .entry_seconds
                            .is_some_and(|first| ts.div_euclid(1_000_000_000) >= first),
                        RejectReason::LineTooLong => match rejection.max_line_size {
                            Some(max) => events[index].line.len() > max,
                            None => rejection.line_length == Some(events[index].line.len()),
                        },
                        RejectReason::InvalidLabels => true,
                        RejectReason::Other => rejection.stream.is_some(),
                    };
                    if hit && taken.insert(index) {
                        out.push(Rejected {
                            index,
                            reason: rejection.reason.as_str(),
                            detail: rejection.message.clone(),
                        });
                    }
                }
            }
        }
        if let Some(age) = self.learner.max_age() {
            instruments
                .timestamp_max_age
                .record(age.as_secs_f64(), &self.attrs);
        }
        out
    }
}

/// The push request in protobuf, written straight from the events (see [`proto::direct`]).
fn protobuf_body(events: &[LogEvent], prepared: &Prepared) -> Vec<u8> {
    let estimate: usize = prepared
        .streams
        .iter()
        .map(|s| s.labels_text.len() + 8 + s.entries.len() * 24)
        .sum::<usize>()
        + prepared
            .streams
            .iter()
            .flat_map(|s| s.entries.iter())
            .map(|&(i, _, _)| events[i].line.len())
            .sum::<usize>();
    let mut buf = Vec::with_capacity(estimate);
    let mut bodies: Vec<usize> = Vec::new();
    // The original time of a clamped entry, as structured metadata (empty: not clamped).
    let mut originals: Vec<String> = Vec::new();
    for stream in prepared.streams.iter().filter(|s| !s.entries.is_empty()) {
        bodies.clear();
        originals.clear();
        let mut total = 0;
        for &(i, ts, clamped) in &stream.entries {
            originals.push(if clamped {
                events[i].timestamp_ns.to_string()
            } else {
                String::new()
            });
            let original = originals.last().map_or("", String::as_str);
            let body = proto::direct::entry_body_len(&direct_entry(&events[i], ts, original));
            bodies.push(body);
            total += proto::direct::entry_len(body);
        }
        proto::direct::put_stream_head(&mut buf, &stream.labels_text, total);
        for (k, &(i, ts, _)) in stream.entries.iter().enumerate() {
            let entry = direct_entry(&events[i], ts, &originals[k]);
            proto::direct::put_entry(&mut buf, entry, bodies[k]);
        }
    }
    buf
}

fn direct_entry<'a>(
    event: &'a LogEvent,
    timestamp_ns: i64,
    original: &'a str,
) -> proto::direct::Entry<'a, impl Iterator<Item = (&'a str, &'a str)> + Clone> {
    proto::direct::Entry {
        timestamp: Timestamp::from_nanos(timestamp_ns),
        line: &event.line,
        metadata: event
            .metadata
            .iter()
            .map(|(k, v)| (&**k, &**v))
            .chain((!original.is_empty()).then_some(("original_timestamp", original))),
    }
}

fn json_body(events: &[LogEvent], prepared: &Prepared) -> Vec<u8> {
    let streams: Vec<serde_json::Value> = prepared
        .streams
        .iter()
        .filter(|s| !s.entries.is_empty())
        .map(|s| {
            let labels: serde_json::Map<String, serde_json::Value> = s
                .pairs
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            let values: Vec<serde_json::Value> = s
                .entries
                .iter()
                .map(|&(i, ts, clamped)| {
                    let event = &events[i];
                    let line = String::from_utf8_lossy(&event.line).into_owned();
                    let mut metadata: serde_json::Map<String, serde_json::Value> = event
                        .metadata
                        .iter()
                        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
                        .collect();
                    if clamped {
                        metadata.insert(
                            "original_timestamp".into(),
                            serde_json::Value::String(event.timestamp_ns.to_string()),
                        );
                    }
                    if metadata.is_empty() {
                        serde_json::json!([ts.to_string(), line])
                    } else {
                        serde_json::json!([ts.to_string(), line, metadata])
                    }
                })
                .collect();
            serde_json::json!({"stream": labels, "values": values})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "streams": streams })).unwrap_or_default()
}

impl LokiSink {
    /// One push for the events at `indexes`, for one tenant.
    async fn send_group(
        &self,
        events: &[LogEvent],
        indexes: &[usize],
        tenant: Option<&HeaderValue>,
        now: i64,
    ) -> SendOutcome {
        let prepared = self.prepare(events, indexes, now);
        if prepared.dropped > 0 {
            crate::telemetry::ComponentAttrs::new(&self.key)
                .dropped(prepared.dropped, "timestamp_too_old");
        }
        let to_send: usize = prepared.streams.iter().map(|s| s.entries.len()).sum();
        if to_send == 0 {
            return if prepared.rejected.is_empty() {
                SendOutcome::Delivered
            } else {
                SendOutcome::Partial {
                    rejected: prepared.rejected,
                }
            };
        }
        let (body, content_type, encoding) = match self.encode(events, &prepared) {
            Ok(encoded) => encoded,
            Err(detail) => {
                return SendOutcome::Failed {
                    reason: "encode_error",
                    detail,
                };
            }
        };
        let (status, headers, text) = match self.push(body, content_type, encoding, tenant).await {
            Ok(answer) => answer,
            Err(detail) => {
                return SendOutcome::Retry {
                    reason: "connection",
                    detail,
                    retry_after: None,
                };
            }
        };
        let retry_after = headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let code = status.as_u16();
        let short = |text: &str| text.chars().take(500).collect::<String>();
        match code {
            260 => SendOutcome::Retry {
                reason: "http_260",
                detail: format!("ingestion blocked (260): {}", short(&text)),
                retry_after,
            },
            200..=299 => {
                instruments().sent_entries.add(to_send as u64, &self.attrs);
                if prepared.rejected.is_empty() {
                    SendOutcome::Delivered
                } else {
                    SendOutcome::Partial {
                        rejected: prepared.rejected,
                    }
                }
            }
            400 => {
                let rejections = parse_rejections(&text);
                let mut rejected = self.match_rejections(events, &prepared, &rejections, now);
                if rejected.is_empty() {
                    // Nothing could be matched: Loki stored what it could; keep every sent
                    // entry (resending is harmless: Loki drops exact duplicates).
                    rejected = prepared
                        .streams
                        .iter()
                        .flat_map(|s| s.entries.iter().map(|&(i, _, _)| i))
                        .map(|index| Rejected {
                            index,
                            reason: "http_400",
                            detail: short(&text),
                        })
                        .collect();
                }
                instruments()
                    .sent_entries
                    .add(to_send.saturating_sub(rejected.len()) as u64, &self.attrs);
                rejected.extend(prepared.rejected);
                SendOutcome::Partial { rejected }
            }
            413 => SendOutcome::TooLarge {
                detail: short(&text),
            },
            429 => SendOutcome::Retry {
                reason: "http_429",
                detail: short(&text),
                retry_after,
            },
            501 => SendOutcome::Failed {
                reason: "http_501",
                detail: short(&text),
            },
            500..=599 => SendOutcome::Retry {
                reason: "http_5xx",
                detail: format!("{code}: {}", short(&text)),
                retry_after,
            },
            _ => SendOutcome::Failed {
                reason: "http_4xx",
                detail: format!("{code}: {}", short(&text)),
            },
        }
    }

    /// The events' indexes by tenant (`tenant_label`, else `tenant_id`); events whose label
    /// is not a valid header value are returned apart.
    fn by_tenant(&self, events: &[LogEvent], label: &str) -> (Vec<TenantGroup>, Vec<usize>) {
        let mut groups: Vec<TenantGroup> = Vec::new();
        let mut invalid = Vec::new();
        for (index, event) in events.iter().enumerate() {
            let tenant = match event.labels.get(label) {
                Some(value) => match HeaderValue::from_str(value) {
                    Ok(header) if valid_tenant(value) => Some(header),
                    _ => {
                        invalid.push(index);
                        continue;
                    }
                },
                None => self.tenant.clone(),
            };
            match groups.iter_mut().find(|(t, _)| *t == tenant) {
                Some((_, list)) => list.push(index),
                None => groups.push((tenant, vec![index])),
            }
        }
        (groups, invalid)
    }
}

impl SinkService for LokiSink {
    fn send<'a>(&'a self, batch: &'a EventBatch) -> BoxFuture<'a, SendOutcome> {
        Box::pin(async move {
            let now = now_ns();
            let events = &batch.events;
            let Some(label) = self.config.tenant_label.as_deref() else {
                let all: Vec<usize> = (0..events.len()).collect();
                return self
                    .send_group(events, &all, self.tenant.as_ref(), now)
                    .await;
            };
            // One push per tenant. A retry resends every tenant's push: those already stored
            // are exact duplicates, which Loki drops.
            let (groups, invalid) = self.by_tenant(events, label);
            let mut rejected: Vec<Rejected> = invalid
                .into_iter()
                .map(|index| Rejected {
                    index,
                    reason: "invalid_tenant",
                    detail: format!(
                        "the {label} label is not a tenant ID Loki accepts (1 to 150 of A-Za-z0-9!-_.*'(), not . or ..)"
                    ),
                })
                .collect();
            let mut retry = None;
            let mut too_large = None;
            for (tenant, indexes) in &groups {
                match self.send_group(events, indexes, tenant.as_ref(), now).await {
                    SendOutcome::Delivered => {}
                    SendOutcome::Partial { rejected: more } => rejected.extend(more),
                    SendOutcome::Failed { reason, detail } => {
                        rejected.extend(indexes.iter().map(|&index| Rejected {
                            index,
                            reason,
                            detail: detail.clone(),
                        }))
                    }
                    outcome @ SendOutcome::Retry { .. } => {
                        retry.get_or_insert(outcome);
                    }
                    SendOutcome::TooLarge { detail } => too_large = Some(detail),
                }
            }
            if let Some(outcome) = retry {
                outcome
            } else if let Some(detail) = too_large {
                SendOutcome::TooLarge { detail }
            } else if rejected.is_empty() {
                SendOutcome::Delivered
            } else {
                SendOutcome::Partial { rejected }
            }
        })
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

    #[test]
    fn label_templates_fill_in_source_file_and_labels() {
        let event = LogEvent {
            timestamp_ns: 0,
            observed_ns: 0,
            line: Bytes::new(),
            labels: crate::event::Labels::new([("app", "api")]),
            metadata: Vec::new(),
            source: "nginx".into(),
            file: Some("/var/log/nginx/access.log".into()),
        };
        let t = LabelTemplate::parse("{{ source }}-{{label.app}}:{{ file }}").unwrap();
        assert_eq!(t.render(&event), "nginx-api:/var/log/nginx/access.log");
        assert_eq!(
            LabelTemplate::parse("plain").unwrap().render(&event),
            "plain"
        );
        assert_eq!(
            LabelTemplate::parse("{{ label.missing }}")
                .unwrap()
                .render(&event),
            ""
        );
        assert!(
            LabelTemplate::parse("{{ nope }}")
                .unwrap_err()
                .contains("unknown placeholder")
        );
        assert!(
            LabelTemplate::parse("{{ source")
                .unwrap_err()
                .contains("unclosed")
        );
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
    fn ready_check_says_what_a_refusal_means() {
        assert_eq!(
            ReadyVerdict::of(StatusCode::NO_CONTENT),
            ReadyVerdict::Ready
        );
        assert!(matches!(
            ReadyVerdict::of(StatusCode::SERVICE_UNAVAILABLE),
            ReadyVerdict::NotYet(_)
        ));
        let not_found = ReadyVerdict::of(StatusCode::NOT_FOUND).message();
        assert!(not_found.contains("the endpoint is wrong"), "{not_found}");
        assert!(not_found.contains("not retried"), "{not_found}");
        let denied = ReadyVerdict::of(StatusCode::UNAUTHORIZED).message();
        assert!(denied.contains("credentials were refused"), "{denied}");
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
