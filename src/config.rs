//! Configuration: layering, validation, display and reload diffs.
//!
//! Layers, each overriding the one before:
//! 1. the built-in defaults of every setting (the `Default` impls of the config structs);
//! 2. the configuration file given with `--config` (`.yaml`, `.yml` or `.toml`), or, without one,
//!    the embedded default configuration (configs/default.yaml, compiled in). The file *replaces*
//!    the embedded pipeline, it is not merged with it;
//! 3. environment variables `LOG_CAPTURER_<KEY>`, with `__` between nested keys
//!    (`LOG_CAPTURER_DISPATCHER__BATCH_SIZE=200`); the variables Kubernetes sets for a Service
//!    named `log-capturer...` are ignored (see [`layers`]);
//! 4. `--set key.path=value` arguments (the value is read as YAML: `10`, `true`, `[a, b]`).
//!
//! Validation reports every problem it finds at once, each with its key path, where the value
//! came from when that was an environment variable or a `--set` argument, and, where it can, a
//! hint: unknown keys (with a did-you-mean), keys given twice in a YAML file, unknown types, bad
//! values, unknown or cyclic inputs, components nothing reads from, sinks without inputs, Loki
//! sinks whose streams would have no labels, secrets that cannot be read.
//!
//! Display: [`Config::shown`] is the typed configuration (every setting with its default) as
//! JSON; secrets are [`Secret`]s, which serialize redacted, so nothing printed through it holds
//! one. [`Config::raw`], the layered tree before typing, holds secrets in clear: it is kept for
//! reload diffs only and never printed.

mod layers;
pub mod pipeline_tests;
mod show;
pub mod telemetry;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use log_capturer_components::config::{
    ConfigError, ConfigWarning, did_you_mean, duration, join_path, parse, parse_validated,
    struct_fields,
};
use log_capturer_components::dispatcher::DispatcherConfig;
use log_capturer_components::dlq::DlqConfig;
use log_capturer_components::registry::{self, SinkConfig, SourceConfig, TransformConfig};
use log_capturer_components::secret::{Secret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The embedded default configuration.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("../configs/default.yaml");

/// The prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "LOG_CAPTURER_";

/// Where a configuration comes from; kept so a reload reads the same places again.
#[derive(Clone, Debug, Default)]
pub struct ConfigSource {
    /// `--config FILE`; `None` means the embedded default.
    pub file: Option<PathBuf>,
    /// `--set key=value` arguments, in order.
    pub sets: Vec<String>,
    /// Whether `LOG_CAPTURER_*` environment variables are read (always, outside tests).
    pub use_env: bool,
}

/// All problems found in a configuration.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} configuration error{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for error in &self.0 {
            writeln!(f, "  - {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<Vec<ConfigError>> for ConfigErrors {
    fn from(errors: Vec<ConfigError>) -> Self {
        Self(errors)
    }
}

/// The HTTP API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiConfig {
    /// Serve the API at all.
    pub enabled: bool,
    /// IP address and port. Loopback by default; any other address requires `token`. A host
    /// name (`localhost:8401`) is refused: it is not resolved.
    #[serde(with = "listen_address")]
    pub listen: SocketAddr,
    /// Bearer token (a [`Secret`]) required by every endpoint but `/health`, `/ready` and
    /// `/metrics`. Required when `listen` is not a loopback address.
    pub token: Option<Secret>,
    /// Most connections open at once. When all are open, a new connection closes the oldest
    /// one waiting for a request; if every one is busy with a request, the new one is closed.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how long a kept-alive
    /// connection may stay idle; then the connection is closed.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// Largest request body accepted (by its `Content-Length`); larger ones get 413 unread.
    pub max_body_bytes: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8401)),
            token: None,
            max_connections: 128,
            header_read_timeout: Duration::from_secs(10),
            max_body_bytes: 64 * 1024,
        }
    }
}

/// Serde adapter for `api.listen`: an IP address and port, with an error that says what to
/// write instead of a host name.
mod listen_address {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(addr: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(addr)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        let text = String::deserialize(d)?;
        text.trim().parse().map_err(|_| {
            let port = text
                .rsplit_once(':')
                .filter(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
                .map(|(_, port)| port);
            de::Error::custom(match port {
                Some(port) => format!(
                    "{text:?} names a host, not an IP address (host names are not resolved): \
                     write 127.0.0.1:{port} (this machine only) or 0.0.0.0:{port} (every interface)"
                ),
                None => format!(
                    "{text:?} is not an IP address and port: write e.g. 127.0.0.1:8401 or [::1]:8401"
                ),
            })
        })
    }
}

/// Format of the program's own log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The program's own logs (to standard error).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// Comma-separated level names (`off`, `error`, `warn`, `info`, `debug`, `trace`) and
    /// `target=level` directives: `info`, `warn,log_capturer=debug`. `RUST_LOG` overrides it.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_string(),
            format: LogFormat::Text,
        }
    }
}

/// The top level of the configuration, as written. Its `Debug` names the components without
/// their raw settings (which may hold secrets).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RootConfig {
    /// Where state is kept (positions, dead-letter queue). Created at start-up.
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    pub log: LogConfig,
    /// Where the metrics go: the Prometheus endpoint, an OTLP push.
    pub telemetry: telemetry::TelemetryConfig,
    /// How long a shutdown may take to drain the pipeline before it gives up.
    #[serde(with = "duration")]
    pub shutdown_timeout: Duration,
    /// Defaults for every sink's dispatcher.
    pub dispatcher: DispatcherConfig,
    /// Sources by name.
    pub sources: BTreeMap<String, Value>,
    /// Transforms by name.
    pub transforms: BTreeMap<String, Value>,
    /// Sinks by name.
    pub sinks: BTreeMap<String, Value>,
    /// Pipeline tests for `log-capturer test` (see [`pipeline_tests`]); `run` ignores them.
    pub tests: Vec<Value>,
}

impl Default for RootConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            api: ApiConfig::default(),
            log: LogConfig::default(),
            telemetry: telemetry::TelemetryConfig::default(),
            shutdown_timeout: Duration::from_secs(30),
            dispatcher: DispatcherConfig::default(),
            sources: BTreeMap::new(),
            transforms: BTreeMap::new(),
            sinks: BTreeMap::new(),
            tests: Vec::new(),
        }
    }
}

impl fmt::Debug for RootConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootConfig")
            .field("data_dir", &self.data_dir)
            .field("api", &self.api)
            .field("log", &self.log)
            .field("telemetry", &self.telemetry)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("dispatcher", &self.dispatcher)
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .field("transforms", &self.transforms.keys().collect::<Vec<_>>())
            .field("sinks", &self.sinks.keys().collect::<Vec<_>>())
            .field("tests", &self.tests.len())
            .finish()
    }
}

/// A validated source.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceSpec {
    pub config: SourceConfig,
}

/// A validated transform.
#[derive(Clone, Debug, PartialEq)]
pub struct TransformSpec {
    pub inputs: Vec<String>,
    pub config: TransformConfig,
}

/// A validated sink with its resolved dispatcher settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SinkSpec {
    pub inputs: Vec<String>,
    pub dispatcher: DispatcherConfig,
    /// The sink's dead-letter queue (`sinks.<name>.dlq`).
    pub dlq: DlqConfig,
    pub config: SinkConfig,
}

/// A complete, valid configuration. Its `Debug` leaves out `raw`.
#[derive(Clone)]
pub struct Config {
    pub root: RootConfig,
    pub sources: BTreeMap<String, SourceSpec>,
    pub transforms: BTreeMap<String, TransformSpec>,
    pub sinks: BTreeMap<String, SinkSpec>,
    /// `api.token`, read (from its environment variable or file) when the configuration was.
    pub api_token: Option<SecretString>,
    /// `telemetry.otlp.headers`, read when the configuration was.
    pub otlp_headers: BTreeMap<String, SecretString>,
    /// Problems that do not stop the start: `validate` prints them, `run` logs them.
    pub warnings: Vec<ConfigWarning>,
    /// The checked `tests:` entries (`log-capturer test`; `run` ignores them).
    pub tests: Vec<pipeline_tests::PipelineTest>,
    /// The layered configuration as a JSON tree, before typing, secrets in clear: for reload
    /// diffs only. Never print it; [`Config::shown`] is what may be shown.
    pub raw: Value,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("root", &self.root)
            .field("sources", &self.sources)
            .field("transforms", &self.transforms)
            .field("sinks", &self.sinks)
            .field("api_token", &self.api_token)
            .field("otlp_headers", &self.otlp_headers)
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

/// Reads every layer and validates the result. An error on a key set by an environment
/// variable or a `--set` argument names it.
pub fn load(source: &ConfigSource) -> Result<Config, ConfigErrors> {
    let layered = layers::read(source)?;
    validate(layered.tree.clone()).map_err(|errors| layered.annotate(errors))
}

/// Reads and merges the layers into one JSON tree (secrets in clear: never print it).
pub fn layered(source: &ConfigSource) -> Result<Value, ConfigErrors> {
    layers::read(source).map(|layered| layered.tree)
}

/// Level names `log.level` accepts.
const LOG_LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// `log.level` must be level names and `target=level` directives: `EnvFilter` would take a
/// word it does not know (`warning`) as a target and then log nothing at all.
fn check_log_level(level: &str) -> Option<ConfigError> {
    let error = |message: String, hint: String| {
        Some(ConfigError::new("log.level", message).with_hint(hint))
    };
    let directives: Vec<&str> = level
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return error(
            "is empty".to_string(),
            "use error, warn, info, debug or trace".to_string(),
        );
    }
    let is_level = |word: &str| LOG_LEVELS.contains(&word.to_ascii_lowercase().as_str());
    for directive in directives {
        let (target, word) = match directive.split_once('=') {
            Some((target, word)) => (Some(target.trim()), word.trim()),
            None => (None, directive),
        };
        if let Some(target) = target
            && (target.is_empty()
                || !target
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-'))
        {
            return error(
                format!("`{directive}`: `{target}` is not a module path"),
                "write target=level, e.g. log_capturer=debug".to_string(),
            );
        }
        if !is_level(word) {
            let hint = match did_you_mean(&word.to_ascii_lowercase(), LOG_LEVELS) {
                Some(best) => format!("did you mean `{best}`?"),
                None => format!(
                    "levels are {}; per module write target=level, e.g. info,log_capturer=debug",
                    LOG_LEVELS.join(", ")
                ),
            };
            return error(format!("`{word}` is not a log level"), hint);
        }
    }
    if let Err(err) = tracing_subscriber::EnvFilter::try_new(level) {
        return error(
            format!("invalid filter: {err}"),
            "use error, warn, info, debug or trace".to_string(),
        );
    }
    None
}

/// Checks of the top-level sections beyond their types.
fn check_root(root: &RootConfig, errors: &mut Vec<ConfigError>) -> Option<SecretString> {
    if root.data_dir.as_os_str().is_empty() {
        errors.push(
            ConfigError::new("data_dir", "is empty")
                .with_hint("give the directory for positions and the dead-letter queue, e.g. /var/lib/log-capturer"),
        );
    }
    let api = &root.api;
    if api.max_connections == 0 {
        errors.push(ConfigError::new(
            "api.max_connections",
            "must be at least 1",
        ));
    }
    if api.header_read_timeout.is_zero() {
        errors.push(ConfigError::new(
            "api.header_read_timeout",
            "must be longer than 0s",
        ));
    }
    let token = match &api.token {
        None => None,
        Some(secret) => match secret.resolve() {
            Ok(token) => Some(token),
            Err(err) => {
                errors.push(ConfigError::new("api.token", err.to_string()).with_hint(err.hint()));
                None
            }
        },
    };
    if api.enabled && !api.listen.ip().is_loopback() && api.token.is_none() {
        errors.push(
            ConfigError::new(
                "api.token",
                format!(
                    "required because api.listen ({}) is not a loopback address",
                    api.listen
                ),
            )
            .with_hint(
                "set a token (LOG_CAPTURER_API__TOKEN, or {file: PATH}) or listen on 127.0.0.1",
            ),
        );
    }
    errors.extend(check_log_level(&root.log.level));
    token
}

/// Loki refuses a push with a stream without labels, so a Loki sink must give every stream one:
/// for every source it reads (through transforms), the source's static labels, what the
/// transforms add and the sink's `labels` must leave at least one label that is never empty.
fn check_loki_labels(
    sources: &BTreeMap<String, SourceSpec>,
    transforms: &BTreeMap<String, TransformSpec>,
    sinks: &BTreeMap<String, SinkSpec>,
    errors: &mut Vec<ConfigError>,
) {
    /// Every source upstream of `inputs`, with the labels the transforms on the way add.
    fn upstream(
        inputs: &[String],
        added: &BTreeMap<String, String>,
        sources: &BTreeMap<String, SourceSpec>,
        transforms: &BTreeMap<String, TransformSpec>,
        visiting: &mut BTreeSet<String>,
        out: &mut Vec<(String, BTreeMap<String, String>)>,
    ) {
        for input in inputs {
            if let Some(source) = sources.get(input) {
                let mut labels = source.config.static_labels();
                labels.extend(added.clone());
                out.push((input.clone(), labels));
            } else if let Some(transform) = transforms.get(input_component(input))
                && visiting.insert(input_component(input).to_string())
            {
                let mut added = added.clone();
                // Labels set nearer the sink win: they are applied later.
                for (name, value) in transform.config.added_labels() {
                    added.entry(name).or_insert(value);
                }
                upstream(
                    &transform.inputs,
                    &added,
                    sources,
                    transforms,
                    visiting,
                    out,
                );
                visiting.remove(input_component(input));
            }
        }
    }
    for (name, sink) in sinks {
        let mut reached = Vec::new();
        upstream(
            &sink.inputs,
            &BTreeMap::new(),
            sources,
            transforms,
            &mut BTreeSet::new(),
            &mut reached,
        );
        let mut bare: Vec<String> = reached
            .into_iter()
            .filter(|(source, labels)| {
                let has_file = sources.get(source).is_some_and(|s| s.config.sets_file());
                !sink.config.streams_have_labels(labels, has_file)
            })
            .map(|(source, _)| source)
            .collect();
        bare.sort();
        bare.dedup();
        if !bare.is_empty() {
            errors.push(
                ConfigError::new(
                    format!("sinks.{name}.labels"),
                    format!(
                        "streams from {} would have no labels, and Loki refuses every push holding such a stream",
                        bare.iter().map(|s| format!("source `{s}`")).collect::<Vec<_>>().join(", ")
                    ),
                )
                .with_hint(format!(
                    "give the sink a label that is never empty, e.g. `labels: {{job: {name}}}`, or give the source `labels`"
                )),
            );
        }
    }
}

/// Types and checks a layered configuration tree.
pub fn validate(raw: Value) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let root = parse_root(&raw, &mut errors);
    errors.extend(root.dispatcher.validate("dispatcher"));
    let api_token = check_root(&root, &mut errors);
    let otlp_headers = telemetry::check(&root.telemetry, &mut errors);
    let names: BTreeSet<&str> = root
        .sources
        .keys()
        .chain(root.transforms.keys())
        .chain(root.sinks.keys())
        .map(String::as_str)
        .collect();
    let mut seen = BTreeSet::new();
    for (section, map) in [
        ("sources", &root.sources),
        ("transforms", &root.transforms),
        ("sinks", &root.sinks),
    ] {
        for name in map.keys() {
            if !seen.insert(name.as_str()) {
                errors.push(ConfigError::new(
                    format!("{section}.{name}"),
                    "this name is used by another component; names must be unique",
                ));
            }
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                errors.push(
                    ConfigError::new(format!("{section}.{name}"), "invalid component name")
                        .with_hint("use letters, digits, `_` and `-`"),
                );
            }
        }
    }
    if root.sources.is_empty() {
        errors.push(ConfigError::new(
            "sources",
            "at least one source is required",
        ));
    }
    if root.sinks.is_empty() {
        errors.push(ConfigError::new("sinks", "at least one sink is required"));
    }

    let mut sources = BTreeMap::new();
    for (name, value) in &root.sources {
        let prefix = format!("sources.{name}");
        let Some((type_name, rest)) = split_component(&prefix, value, &mut errors) else {
            continue;
        };
        match SourceConfig::parse(&prefix, &type_name, rest.into()) {
            Ok(config) => {
                sources.insert(name.clone(), SourceSpec { config });
            }
            Err(errs) => errors.extend(errs),
        }
    }

    let mut transforms = BTreeMap::new();
    for (name, value) in &root.transforms {
        let prefix = format!("transforms.{name}");
        let Some((type_name, mut rest)) = split_component(&prefix, value, &mut errors) else {
            continue;
        };
        let inputs = take_inputs(&prefix, &mut rest, &names, &root.sinks, name, &mut errors);
        match TransformConfig::parse(&prefix, &type_name, rest.into()) {
            Ok(config) => {
                transforms.insert(name.clone(), TransformSpec { inputs, config });
            }
            Err(errs) => errors.extend(errs),
        }
    }

    let global_dispatcher = serde_json::to_value(&root.dispatcher).unwrap_or(Value::Null);
    let mut sinks = BTreeMap::new();
    for (name, value) in &root.sinks {
        let prefix = format!("sinks.{name}");
        let Some((type_name, mut rest)) = split_component(&prefix, value, &mut errors) else {
            continue;
        };
        let inputs = take_inputs(&prefix, &mut rest, &names, &root.sinks, name, &mut errors);
        let dispatcher = sink_dispatcher(&prefix, &mut rest, &global_dispatcher, &mut errors);
        let dlq = sink_dlq(&prefix, &mut rest, &mut errors);
        match SinkConfig::parse(&prefix, &type_name, rest.into()) {
            Ok(config) => {
                if let (Some(dispatcher), Some(dlq)) = (dispatcher, dlq) {
                    sinks.insert(
                        name.clone(),
                        SinkSpec {
                            inputs,
                            dispatcher,
                            dlq,
                            config,
                        },
                    );
                }
            }
            Err(errs) => errors.extend(errs),
        }
    }

    check_outputs(&root, &transforms, &mut errors);
    check_cycles(&root, &mut errors);
    check_consumers(&root, &mut errors);
    check_loki_labels(&sources, &transforms, &sinks, &mut errors);
    let tests = pipeline_tests::check(&root.tests, &sources, &transforms, &sinks, &mut errors);

    if errors.is_empty() {
        let mut warnings: Vec<ConfigWarning> = sources
            .iter()
            .flat_map(|(name, spec)| spec.config.warnings(&format!("sources.{name}")))
            .collect();
        warnings.extend(unread_outputs(&root, &transforms));
        Ok(Config {
            root,
            sources,
            transforms,
            sinks,
            api_token,
            otlp_headers,
            warnings,
            tests,
            raw,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Types the top level section by section, so one bad section does not hide the others' errors.
/// A section with errors keeps its default here; the errors make validation fail anyway.
fn parse_root(raw: &Value, errors: &mut Vec<ConfigError>) -> RootConfig {
    let mut root = RootConfig::default();
    let Value::Object(map) = raw else {
        errors.push(ConfigError::new("", "the configuration must be a map"));
        return root;
    };
    let known = struct_fields::<RootConfig>();
    for key in map.keys() {
        if !known.contains(&key.as_str()) {
            let error = ConfigError::new(key, "unknown key");
            errors.push(match did_you_mean(key, known) {
                Some(best) => error.with_hint(format!("did you mean `{best}`?")),
                None => error.with_hint(format!("known keys: {}", known.join(", "))),
            });
        }
    }
    fn section<T: serde::de::DeserializeOwned>(
        map: &serde_json::Map<String, Value>,
        key: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Option<T> {
        let value = map.get(key)?.clone();
        let nested: &[(&str, &[&str])] = &[];
        match parse::<T>(key, value, nested) {
            Ok(parsed) => Some(parsed),
            Err(errs) => {
                errors.extend(errs);
                None
            }
        }
    }
    #[derive(Deserialize)]
    struct Timeout(#[serde(with = "duration")] Duration);

    if let Some(v) = section(map, "data_dir", errors) {
        root.data_dir = v;
    }
    if let Some(v) = section(map, "api", errors) {
        root.api = v;
    }
    if let Some(v) = section(map, "log", errors) {
        root.log = v;
    }
    if let Some(v) = section(map, "telemetry", errors) {
        root.telemetry = v;
    }
    if let Some(Timeout(v)) = section(map, "shutdown_timeout", errors) {
        root.shutdown_timeout = v;
    }
    if let Some(v) = section(map, "dispatcher", errors) {
        root.dispatcher = v;
    }
    if let Some(v) = section(map, "sources", errors) {
        root.sources = v;
    }
    if let Some(v) = section(map, "transforms", errors) {
        root.transforms = v;
    }
    if let Some(v) = section(map, "sinks", errors) {
        root.sinks = v;
    }
    if let Some(v) = section(map, "tests", errors) {
        root.tests = v;
    }
    root
}

/// Splits a component's map into its `type` and the rest. Keys the engine reads itself
/// (`inputs`, `dispatcher`) stay in the rest for the caller to take.
fn split_component(
    prefix: &str,
    value: &Value,
    errors: &mut Vec<ConfigError>,
) -> Option<(String, serde_json::Map<String, Value>)> {
    let Value::Object(map) = value else {
        errors.push(
            ConfigError::new(prefix, "must be a map with a `type` key")
                .with_hint("e.g. `{type: generator}`"),
        );
        return None;
    };
    let mut rest = map.clone();
    match rest.remove("type") {
        Some(Value::String(type_name)) => Some((type_name, rest)),
        Some(_) => {
            errors.push(ConfigError::new(
                join_path(prefix, "type"),
                "must be a string",
            ));
            None
        }
        None => {
            errors.push(ConfigError::new(
                join_path(prefix, "type"),
                "missing; every component needs a `type`",
            ));
            None
        }
    }
}

/// The component an input names: `X` for `X`, and for `X.OUTPUT` (a named output of the
/// route transform `X`). Component names have no `.`, so the first one splits.
pub fn input_component(input: &str) -> &str {
    input
        .split_once('.')
        .map_or(input, |(component, _)| component)
}

fn take_inputs(
    prefix: &str,
    rest: &mut serde_json::Map<String, Value>,
    names: &BTreeSet<&str>,
    sinks: &BTreeMap<String, Value>,
    own_name: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<String> {
    let path = join_path(prefix, "inputs");
    let inputs: Vec<String> = match rest.remove("inputs") {
        None => {
            errors.push(
                ConfigError::new(&path, "missing; this component needs at least one input")
                    .with_hint("list the sources or transforms it reads, e.g. `inputs: [app]`"),
            );
            return Vec::new();
        }
        Some(Value::Array(items)) => {
            let mut inputs = Vec::new();
            for item in items {
                match item {
                    Value::String(s) => inputs.push(s),
                    other => errors.push(ConfigError::new(
                        &path,
                        format!("inputs must be component names, not {other}"),
                    )),
                }
            }
            inputs
        }
        Some(Value::String(s)) => vec![s],
        Some(other) => {
            errors.push(ConfigError::new(
                &path,
                format!("must be a list of component names, not {other}"),
            ));
            return Vec::new();
        }
    };
    if inputs.is_empty() {
        errors.push(
            ConfigError::new(&path, "is empty; this component needs at least one input")
                .with_hint("list the sources or transforms it reads, e.g. `inputs: [app]`"),
        );
    }
    let candidates: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !sinks.contains_key(*n))
        .collect();
    for input in &inputs {
        // Whether `X.OUTPUT` names an output of `X` is checked once every transform is typed
        // (`check_outputs`).
        let component = input_component(input);
        if component == own_name {
            errors.push(ConfigError::new(
                &path,
                format!("`{input}` is this component itself: a cycle"),
            ));
        } else if sinks.contains_key(component) {
            errors.push(ConfigError::new(
                &path,
                format!("`{input}` is a sink; inputs must be sources or transforms"),
            ));
        } else if !names.contains(component) {
            let error = ConfigError::new(&path, format!("unknown input `{input}`"));
            // The output part, if any, is kept: `splat.errors` suggests `split.errors`.
            let output = &input[component.len()..];
            errors.push(match did_you_mean(component, &candidates) {
                Some(best) => error.with_hint(format!("did you mean `{best}{output}`?")),
                None => {
                    error.with_hint(format!("sources and transforms: {}", candidates.join(", ")))
                }
            });
        }
    }
    let mut unique = BTreeSet::new();
    inputs
        .into_iter()
        .filter(|i| unique.insert(i.clone()))
        .collect()
}

fn sink_dispatcher(
    prefix: &str,
    rest: &mut serde_json::Map<String, Value>,
    global: &Value,
    errors: &mut Vec<ConfigError>,
) -> Option<DispatcherConfig> {
    let path = join_path(prefix, "dispatcher");
    let mut merged = global.clone();
    match rest.remove("dispatcher") {
        None | Some(Value::Null) => {}
        Some(Value::Object(overrides)) => {
            if let Value::Object(base) = &mut merged {
                base.extend(overrides);
            }
        }
        Some(_) => {
            errors.push(ConfigError::new(
                &path,
                "must be a map of dispatcher settings",
            ));
            return None;
        }
    }
    match parse_validated(&path, merged, DispatcherConfig::validate) {
        Ok(config) => Some(config),
        Err(errs) => {
            errors.extend(errs);
            None
        }
    }
}

fn sink_dlq(
    prefix: &str,
    rest: &mut serde_json::Map<String, Value>,
    errors: &mut Vec<ConfigError>,
) -> Option<DlqConfig> {
    let path = join_path(prefix, "dlq");
    let value = match rest.remove("dlq") {
        None | Some(Value::Null) => Value::Object(serde_json::Map::new()),
        Some(value) => value,
    };
    match parse_validated(&path, value, DlqConfig::validate) {
        Ok(config) => Some(config),
        Err(errs) => {
            errors.extend(errs);
            None
        }
    }
}

fn inputs_of(value: &Value) -> Vec<String> {
    match value.get("inputs") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn check_cycles(root: &RootConfig, errors: &mut Vec<ConfigError>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        name: &str,
        root: &RootConfig,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
        errors: &mut Vec<ConfigError>,
    ) {
        match marks.get(name) {
            Some(Mark::Done) => return,
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|n| n == name).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(name.to_string());
                errors.push(
                    ConfigError::new(
                        format!("transforms.{name}.inputs"),
                        format!("cycle: {}", cycle.join(" -> ")),
                    )
                    .with_hint("a transform must not read, directly or not, its own output"),
                );
                return;
            }
            None => {}
        }
        let Some(value) = root.transforms.get(name) else {
            return;
        };
        marks.insert(name.to_string(), Mark::Visiting);
        stack.push(name.to_string());
        for input in inputs_of(value) {
            let input = input_component(&input);
            if input != name && root.transforms.contains_key(input) {
                visit(input, root, marks, stack, errors);
            }
        }
        stack.pop();
        marks.insert(name.to_string(), Mark::Done);
    }
    let mut marks = BTreeMap::new();
    for name in root.transforms.keys() {
        visit(name, root, &mut marks, &mut Vec::new(), errors);
    }
}

fn check_consumers(root: &RootConfig, errors: &mut Vec<ConfigError>) {
    let consumed: BTreeSet<String> = root
        .transforms
        .values()
        .chain(root.sinks.values())
        .flat_map(inputs_of)
        .map(|input| input_component(&input).to_string())
        .collect();
    for (section, map) in [("sources", &root.sources), ("transforms", &root.transforms)] {
        for name in map.keys() {
            if !consumed.contains(name) {
                errors.push(
                    ConfigError::new(format!("{section}.{name}"), "nothing reads from it")
                        .with_hint(format!(
                            "add `{name}` to the inputs of a sink or transform, or remove it"
                        )),
                );
            }
        }
    }
}

/// Every input that names an output (`X.OUTPUT`) names one `X` has, and a transform with named
/// outputs (a route) is read through one of them, never as a whole. A transform whose settings
/// did not parse is skipped (its own errors are reported).
fn check_outputs(
    root: &RootConfig,
    transforms: &BTreeMap<String, TransformSpec>,
    errors: &mut Vec<ConfigError>,
) {
    let consumers = root
        .transforms
        .iter()
        .map(|(name, value)| (format!("transforms.{name}.inputs"), value))
        .chain(
            root.sinks
                .iter()
                .map(|(name, value)| (format!("sinks.{name}.inputs"), value)),
        );
    for (path, value) in consumers {
        for input in inputs_of(value) {
            let (component, output) = match input.split_once('.') {
                Some((component, output)) => (component, Some(output)),
                None => (input.as_str(), None),
            };
            let named: Vec<String> = match transforms.get(component) {
                Some(spec) => spec.config.outputs(),
                None if root.sources.contains_key(component) => Vec::new(),
                // Unknown, a sink, or a transform that did not parse: reported elsewhere.
                None => continue,
            };
            let listed = || {
                named
                    .iter()
                    .map(|o| format!("`{component}.{o}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            match output {
                None if !named.is_empty() => errors.push(
                    ConfigError::new(
                        &path,
                        format!("`{component}` has named outputs: read one of them"),
                    )
                    .with_hint(format!("the outputs of `{component}`: {}", listed())),
                ),
                Some(_) if named.is_empty() => errors.push(
                    ConfigError::new(
                        &path,
                        format!(
                            "`{input}`: `{component}` has no named outputs (only a route's outputs are read as NAME.OUTPUT)"
                        ),
                    )
                    .with_hint(format!("read it as `{component}`")),
                ),
                Some(output) if !named.iter().any(|o| o == output) => {
                    let candidates: Vec<&str> = named.iter().map(String::as_str).collect();
                    let error = ConfigError::new(
                        &path,
                        format!("`{input}`: `{component}` has no output `{output}`"),
                    );
                    errors.push(match did_you_mean(output, &candidates) {
                        Some(best) => error.with_hint(format!(
                            "did you mean `{component}.{best}`? The outputs of `{component}`: {}",
                            listed()
                        )),
                        None => {
                            error.with_hint(format!("the outputs of `{component}`: {}", listed()))
                        }
                    });
                }
                _ => {}
            }
        }
    }
}

/// A warning for each named output nothing reads, of a transform something does read
/// (nothing reading it at all is an error of its own). `_unmatched` may go unread: that is how
/// a route drops what matches no route.
fn unread_outputs(
    root: &RootConfig,
    transforms: &BTreeMap<String, TransformSpec>,
) -> Vec<ConfigWarning> {
    let read: BTreeSet<String> = root
        .transforms
        .values()
        .chain(root.sinks.values())
        .flat_map(inputs_of)
        .collect();
    let mut warnings = Vec::new();
    for (name, spec) in transforms {
        let outputs = spec.config.outputs();
        let unread: Vec<&String> = outputs
            .iter()
            .filter(|output| !read.contains(&format!("{name}.{output}")))
            .collect();
        if unread.len() == outputs.len() {
            continue;
        }
        for output in unread {
            if output == log_capturer_components::transforms::route::UNMATCHED {
                continue;
            }
            warnings.push(
                ConfigWarning::new(
                    format!("transforms.{name}.routes.{output}"),
                    format!(
                        "nothing reads `{name}.{output}`: events that match only this route are dropped (dropped_total{{reason=\"unrouted\"}})"
                    ),
                )
                .with_hint(format!(
                    "add `{name}.{output}` to the inputs of a sink or transform, or remove the route"
                )),
            );
        }
    }
    warnings
}

/// Leaf values by dotted path; arrays are leaves.
fn flatten(value: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                flatten(v, &join_path(prefix, k), out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// Whether a changed key can be applied to the running pipeline.
pub fn is_hot_reloadable(path: &str, running: &Value) -> bool {
    let steps: Vec<&str> = path.split('.').collect();
    match steps.as_slice() {
        ["dispatcher", key] | ["sinks", _, "dispatcher", key] => {
            DispatcherConfig::HOT_RELOADABLE.contains(key)
        }
        // A key holding a map (a labels stage's `from_fields`) changes as its entries' paths.
        ["transforms", name, key, ..] => running
            .pointer(&format!("/transforms/{name}/type"))
            .and_then(Value::as_str)
            .is_some_and(|type_name| registry::transform_hot_reloadable(type_name).contains(key)),
        _ => false,
    }
}

/// The outcome of comparing the running configuration with a newly read one.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ReloadPlan {
    /// Keys whose new values are applied live.
    pub applied: Vec<String>,
    /// Keys whose new values take effect only after a restart; a component added, removed or
    /// given another type is named once (`transforms.NAME`), not by its keys.
    pub restart_required: Vec<String>,
    /// Components (`sources.NAME`, `transforms.NAME`, `sinks.NAME`) in the new configuration
    /// only. The topology is wired at start-up, so each needs a restart.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
    /// Components in the running configuration only; each needs a restart.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// Components whose `type` changed; each needs a restart.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replaced: Vec<String>,
}

/// The component kinds whose entries are wired into the topology at start-up.
const COMPONENT_KINDS: [&str; 3] = ["sources", "transforms", "sinks"];

/// `kind.NAME` of every component in `tree`, with its type.
fn components_of(tree: &Value) -> BTreeMap<String, Option<&str>> {
    COMPONENT_KINDS
        .iter()
        .filter_map(|kind| Some((kind, tree.get(kind)?.as_object()?)))
        .flat_map(|(kind, map)| {
            map.iter().map(move |(name, body)| {
                (
                    format!("{kind}.{name}"),
                    body.get("type").and_then(Value::as_str),
                )
            })
        })
        .collect()
}

/// Compares two layered trees and splits the changed keys into live and restart-required.
pub fn plan_reload(running: &Value, next: &Value) -> ReloadPlan {
    let mut old = BTreeMap::new();
    let mut new = BTreeMap::new();
    flatten(running, "", &mut old);
    flatten(next, "", &mut new);
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut plan = ReloadPlan::default();
    let (old_components, new_components) = (components_of(running), components_of(next));
    let mut whole: BTreeSet<&String> = BTreeSet::new();
    for (component, old_type) in &old_components {
        match new_components.get(component) {
            None => plan.removed.push(component.clone()),
            Some(new_type) if new_type != old_type => plan.replaced.push(component.clone()),
            Some(_) => continue,
        }
        whole.insert(component);
    }
    for component in new_components.keys() {
        if !old_components.contains_key(component) {
            plan.added.push(component.clone());
            whole.insert(component);
        }
    }
    plan.restart_required
        .extend(whole.iter().map(|c| (*c).clone()));
    for key in keys {
        // Tests are not part of the running pipeline (`log-capturer test` reads them).
        if key == "tests" || key.starts_with("tests.") {
            continue;
        }
        // Keys of a component added, removed or replaced are that one change; so is an empty
        // section (`transforms: {}`) that gained or lost its only components.
        let within = |outer: &str, inner: &str| {
            inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.starts_with('.'))
        };
        if whole
            .iter()
            .any(|c| within(c, key) || (COMPONENT_KINDS.contains(&key.as_str()) && within(key, c)))
        {
            continue;
        }
        if old.get(key) != new.get(key) {
            if is_hot_reloadable(key, running) {
                plan.applied.push(key.clone());
            } else {
                plan.restart_required.push(key.clone());
            }
        }
    }
    plan
}

/// The running tree with the live keys of `plan` taken from `next`.
pub fn apply_plan(running: &Value, next: &Value, plan: &ReloadPlan) -> Value {
    let mut result = running.clone();
    for key in &plan.applied {
        let pointer = format!("/{}", key.replace('.', "/"));
        let value = next.pointer(&pointer).cloned();
        set_pointer(&mut result, key, value);
    }
    result
}

fn set_pointer(root: &mut Value, key: &str, value: Option<Value>) {
    let steps: Vec<&str> = key.split('.').collect();
    let Some((last, parents)) = steps.split_last() else {
        return;
    };
    let mut node = root;
    for step in parents {
        let Value::Object(map) = node else {
            return;
        };
        node = map
            .entry(step.to_string())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
    if let Value::Object(map) = node {
        match value {
            Some(v) => {
                map.insert(last.to_string(), v);
            }
            None => {
                map.remove(*last);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors_of(yaml: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, yaml).unwrap();
        let source = ConfigSource {
            file: Some(path),
            ..ConfigSource::default()
        };
        match load(&source) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
        }
    }

    const GOOD: &str = "
sources:
  gen: {type: generator, count: 10}
sinks:
  out: {type: file, inputs: [gen], path: /tmp/x.jsonl}
";

    #[test]
    fn good_config_loads_with_defaults_and_resolved_dispatcher() {
        assert!(errors_of(GOOD).is_empty());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            GOOD.replace(
                "path: /tmp/x.jsonl}",
                "path: /tmp/x.jsonl, dispatcher: {batch_size: 7}}",
            ) + "dispatcher: {worker_count: 3}\n",
        )
        .unwrap();
        let config = load(&ConfigSource {
            file: Some(path),
            ..ConfigSource::default()
        })
        .unwrap();
        let sink = &config.sinks["out"];
        assert_eq!(sink.dispatcher.batch_size, 7);
        assert_eq!(sink.dispatcher.worker_count, 3);
        assert_eq!(sink.inputs, vec!["gen"]);
    }

    #[test]
    fn unknown_input_names_the_key() {
        let errors = errors_of(&GOOD.replace("inputs: [gen]", "inputs: [nope]"));
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("sinks.out.inputs: unknown input `nope`")),
            "{errors:?}"
        );
    }

    #[test]
    fn typo_in_dispatcher_suggests_the_key() {
        let errors = errors_of(&format!("{GOOD}dispatcher: {{batch_sise: 10}}\n"));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("dispatcher.batch_sise")
                    && e.contains("did you mean `batch_size`")),
            "{errors:?}"
        );
    }

    #[test]
    fn bad_duration_names_the_key() {
        let errors = errors_of(&format!("{GOOD}dispatcher: {{batch_timeout: soon}}\n"));
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("dispatcher.batch_timeout: invalid duration \"soon\"")),
            "{errors:?}"
        );
    }

    #[test]
    fn cycle_between_filters_is_reported() {
        let errors = errors_of(
            "
sources:
  gen: {type: generator}
transforms:
  a: {type: filter, pattern: x, inputs: [gen, b]}
  b: {type: filter, pattern: y, inputs: [a]}
sinks:
  out: {type: blackhole, inputs: [b]}
",
        );
        assert!(
            errors.iter().any(|e| e.contains("cycle: a -> b -> a")),
            "{errors:?}"
        );
    }

    #[test]
    fn reports_many_errors_at_once() {
        let errors = errors_of(
            "
api: {listen: 'not an address'}
sources:
  gen: {type: generatr}
  idle: {type: generator}
sinks:
  out: {type: file, inputs: []}
  other: {type: blackhole}
",
        );
        let joined = errors.join("\n");
        for expected in [
            "api.listen",
            "sources.gen.type: unknown source type `generatr` (hint: did you mean `generator`?)",
            "sinks.out.inputs: is empty",
            "sinks.other.inputs: missing",
        ] {
            assert!(
                joined.contains(expected),
                "missing {expected:?} in:\n{joined}"
            );
        }
    }

    #[test]
    fn source_without_consumer_and_non_loopback_without_token_are_errors() {
        let errors = errors_of(&format!(
            "{GOOD}  idle: {{type: blackhole, inputs: [gen]}}\napi: {{listen: '0.0.0.0:8401'}}\n"
        ));
        assert!(
            errors.iter().any(|e| e.starts_with("api.token")),
            "{errors:?}"
        );
        let errors = errors_of(
            "
sources:
  gen: {type: generator}
  lonely: {type: generator}
sinks:
  out: {type: blackhole, inputs: [gen]}
",
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("sources.lonely: nothing reads from it")),
            "{errors:?}"
        );
    }

    #[test]
    fn set_overrides_file_and_is_typed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, GOOD).unwrap();
        let config = load(&ConfigSource {
            file: Some(path),
            sets: vec![
                "dispatcher.batch_size=25".into(),
                "sinks.out.dispatcher.worker_count=2".into(),
            ],
            use_env: false,
        })
        .unwrap();
        assert_eq!(config.root.dispatcher.batch_size, 25);
        assert_eq!(config.sinks["out"].dispatcher.worker_count, 2);

        let err = load(&ConfigSource {
            sets: vec!["nonsense".into()],
            ..ConfigSource::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("has no `=`"));
    }

    #[test]
    fn toml_files_load_and_unknown_extensions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[sources.gen]\ntype = \"generator\"\n[sinks.out]\ntype = \"blackhole\"\ninputs = [\"gen\"]\n",
        )
        .unwrap();
        let config = load(&ConfigSource {
            file: Some(path),
            ..ConfigSource::default()
        })
        .unwrap();
        assert!(config.sinks.contains_key("out"));

        let path = dir.path().join("c.conf");
        std::fs::write(&path, GOOD).unwrap();
        let err = load(&ConfigSource {
            file: Some(path),
            ..ConfigSource::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains(".yaml, .yml or .toml"), "{err}");
    }

    #[test]
    fn embedded_default_is_valid() {
        let config = load(&ConfigSource::default()).unwrap();
        assert!(!config.sources.is_empty());
    }

    fn load_yaml(yaml: &str) -> Result<Config, ConfigErrors> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, yaml).unwrap();
        load(&ConfigSource {
            file: Some(path),
            ..ConfigSource::default()
        })
    }

    #[test]
    fn shown_config_is_typed_and_redacts_secrets_by_type() {
        let config = load_yaml(
            "
api: {token: tok-hunter2}
sources:
  gen: {type: generator, labels: {api_key_hint: visible, job: x}}
sinks:
  l:
    type: loki
    inputs: [gen]
    endpoint: http://127.0.0.1:3100
    auth: {user: u, password: {value: pw-hunter2}}
",
        )
        .unwrap();
        let shown = config.shown();
        let text = shown.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(shown["api"]["token"], "<redacted>");
        assert_eq!(shown["sinks"]["l"]["auth"]["password"], "<redacted>");
        assert_eq!(shown["sinks"]["l"]["auth"]["user"], "u");
        // A label is shown whatever its name.
        assert_eq!(shown["sources"]["gen"]["labels"]["api_key_hint"], "visible");
        // Types, inputs, resolved dispatcher and dlq, defaults.
        assert_eq!(shown["sources"]["gen"]["type"], "generator");
        assert_eq!(shown["sources"]["gen"]["rate"], 10);
        assert_eq!(shown["sinks"]["l"]["type"], "loki");
        assert_eq!(shown["sinks"]["l"]["inputs"], json!(["gen"]));
        assert_eq!(shown["sinks"]["l"]["dispatcher"]["batch_size"], 1000);
        assert_eq!(shown["sinks"]["l"]["dlq"]["enabled"], true);
        assert_eq!(shown["sinks"]["l"]["path"], "/loki/api/v1/push");
        assert_eq!(shown["api"]["max_connections"], 128);
        assert_eq!(shown["shutdown_timeout"], "30s");
        // Neither the typed config nor its Debug holds the secrets.
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(config.api_token.as_ref().unwrap().expose(), "tok-hunter2");
    }

    #[test]
    fn log_level_takes_levels_and_directives_only() {
        for good in [
            "info",
            "WARN",
            "warn,log_capturer=debug",
            "off",
            "log_capturer::api=trace",
        ] {
            assert!(check_log_level(good).is_none(), "{good}");
        }
        let error = check_log_level("warning").unwrap();
        assert_eq!(
            error.to_string(),
            "log.level: `warning` is not a log level (hint: did you mean `warn`?)"
        );
        assert!(check_log_level("info,log_capturer=loud").is_some());
        assert!(check_log_level("").is_some());
        assert!(check_log_level("x[span]=info").is_some());
    }

    #[test]
    fn root_checks_name_their_keys() {
        let errors = errors_of(&format!(
            "{GOOD}data_dir: ''\napi: {{listen: 'localhost:8401'}}\nlog: {{level: warning}}\n"
        ));
        let joined = errors.join("\n");
        for expected in [
            "data_dir: is empty",
            "api.listen: \"localhost:8401\" names a host, not an IP address",
            "127.0.0.1:8401",
            "log.level: `warning` is not a log level (hint: did you mean `warn`?)",
        ] {
            assert!(
                joined.contains(expected),
                "missing {expected:?} in:\n{joined}"
            );
        }
    }

    #[test]
    fn unresolvable_api_token_names_the_variable() {
        let errors = errors_of(&format!(
            "{GOOD}api: {{token: {{env: LOG_CAPTURER_TEST_UNSET_TOKEN_VAR}}}}\n"
        ));
        assert!(
            errors.iter().any(|e| e.starts_with(
                "api.token: environment variable LOG_CAPTURER_TEST_UNSET_TOKEN_VAR is not set"
            )),
            "{errors:?}"
        );
    }

    #[test]
    fn loki_sink_without_labels_names_the_sources() {
        let config = "
sources:
  bare: {type: generator}
  labelled: {type: generator, labels: {job: x}}
transforms:
  f: {type: filter, inputs: [bare], pattern: x}
sinks:
  l: {type: loki, inputs: [f, labelled], endpoint: 'http://127.0.0.1:3100'}
";
        let errors = errors_of(config);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .starts_with("sinks.l.labels: streams from source `bare` would have no labels"),
            "{errors:?}"
        );
        assert!(errors[0].contains("labels: {job: l}"), "{errors:?}");
        let fixed = config.replace("endpoint:", "labels: {job: app}, endpoint:");
        assert!(errors_of(&fixed).is_empty());
    }

    #[test]
    fn duplicate_keys_are_refused_with_their_line() {
        let errors = errors_of(
            "
sources:
  gen: {type: generator}
  gen: {type: generator, count: 5}
sinks:
  out: {type: blackhole, inputs: [gen]}
",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("sources.gen: in ") && errors[0].contains("line 4"),
            "{errors:?}"
        );
    }

    #[test]
    fn missing_include_directory_is_a_warning() {
        let config = load_yaml(
            "
sources:
  app: {type: file, include: ['/nonexistent-lc-dir/*.log']}
sinks:
  out: {type: blackhole, inputs: [app]}
",
        )
        .unwrap();
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
        assert_eq!(config.warnings[0].path, "sources.app.include");
    }

    const ROUTED: &str = "
sources:
  app: {type: generator}
transforms:
  split:
    type: route
    inputs: [app]
    routes:
      errors: {pattern: ERROR}
      audit: {fields: {kind: {equals: audit}}}
  tag: {type: labels, inputs: [split.audit], static: {job: audit}}
sinks:
  alerts: {type: blackhole, inputs: [split.errors]}
  rest: {type: blackhole, inputs: [split._unmatched, tag]}
";

    #[test]
    fn inputs_read_the_outputs_of_a_route() {
        let config = load_yaml(ROUTED).unwrap();
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        assert_eq!(config.sinks["alerts"].inputs, ["split.errors"]);
        assert_eq!(
            config.transforms["split"].config.outputs(),
            ["audit", "errors", "_unmatched"]
        );
    }

    #[test]
    fn an_input_naming_no_output_of_a_route_names_the_key_and_the_outputs() {
        let errors = errors_of(&ROUTED.replace("[split.errors]", "[split.error]"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0],
            "sinks.alerts.inputs: `split.error`: `split` has no output `error` (hint: did you \
             mean `split.errors`? The outputs of `split`: `split.audit`, `split.errors`, \
             `split._unmatched`)"
        );
        let errors = errors_of(&ROUTED.replace("[split.audit]", "[split]"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .starts_with("transforms.tag.inputs: `split` has named outputs: read one of them")
                && errors[0].contains("`split._unmatched`"),
            "{errors:?}"
        );
        // `X.Y` where X is not a route.
        let errors = errors_of(&ROUTED.replace("[split._unmatched, tag]", "[tag.audit]"));
        assert!(
            errors.iter().any(|e| e
                .starts_with("sinks.rest.inputs: `tag.audit`: `tag` has no named outputs")
                && e.contains("read it as `tag`")),
            "{errors:?}"
        );
        let errors = errors_of(&ROUTED.replace("[app]", "[app.x]"));
        assert!(
            errors
                .iter()
                .any(|e| e
                    .starts_with("transforms.split.inputs: `app.x`: `app` has no named outputs")),
            "{errors:?}"
        );
        // An unknown component before the dot is an unknown input, as ever.
        let errors = errors_of(&ROUTED.replace("[split.errors]", "[splat.errors]"));
        assert!(
            errors.iter().any(|e| e.starts_with(
                "sinks.alerts.inputs: unknown input `splat.errors` (hint: did you mean `split.errors`?)"
            )),
            "{errors:?}"
        );
    }

    #[test]
    fn a_route_nobody_reads_is_a_warning_and_a_cycle_through_a_route_an_error() {
        let config =
            load_yaml(&ROUTED.replace("  alerts: {type: blackhole, inputs: [split.errors]}\n", ""))
                .unwrap();
        let warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("transforms.split.routes.errors: nothing reads `split.errors`"),
            "{warnings:?}"
        );
        // `_unmatched` may go unread; a route nothing reads at all is an error, like any
        // transform.
        let config = load_yaml(&ROUTED.replace("[split._unmatched, tag]", "[tag]")).unwrap();
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        let errors = errors_of(
            "
sources:
  app: {type: generator}
transforms:
  split: {type: route, inputs: [app, again.x], routes: {x: {pattern: x}}}
  again: {type: route, inputs: [split.x], routes: {x: {pattern: y}}}
sinks:
  out: {type: blackhole, inputs: [split._unmatched]}
",
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("cycle: again -> split -> again")
                    || e.contains("cycle: split -> again -> split")),
            "{errors:?}"
        );
    }

    #[test]
    fn reload_plan_separates_live_and_restart_keys() {
        let old = json!({"dispatcher": {"batch_size": 1, "queue_size": 5}, "sinks": {"o": {"dispatcher": {"worker_count": 1}}}});
        let new = json!({"dispatcher": {"batch_size": 2, "queue_size": 6}, "sinks": {"o": {"dispatcher": {"worker_count": 3}}}});
        let plan = plan_reload(&old, &new);
        assert_eq!(
            plan.applied,
            vec!["dispatcher.batch_size", "sinks.o.dispatcher.worker_count"]
        );
        assert_eq!(plan.restart_required, vec!["dispatcher.queue_size"]);
        let merged = apply_plan(&old, &new, &plan);
        assert_eq!(merged["dispatcher"]["batch_size"], 2);
        assert_eq!(merged["dispatcher"]["queue_size"], 5);
        assert_eq!(merged["sinks"]["o"]["dispatcher"]["worker_count"], 3);

        // A dedup transform's settings are live; another transform's are not.
        let old = json!({"transforms": {
            "d": {"type": "dedup", "inputs": ["a"], "ttl": "5m"},
            "f": {"type": "filter", "inputs": ["a"], "pattern": "x"}}});
        let new = json!({"transforms": {
            "d": {"type": "dedup", "inputs": ["b"], "ttl": "10m", "cache_size": 5},
            "f": {"type": "filter", "inputs": ["a"], "pattern": "y"}}});
        let plan = plan_reload(&old, &new);
        assert_eq!(
            plan.applied,
            vec!["transforms.d.cache_size", "transforms.d.ttl"]
        );
        assert_eq!(
            plan.restart_required,
            vec!["transforms.d.inputs", "transforms.f.pattern"]
        );

        // A live key holding a map: its entries change, are applied, and one removed is gone.
        let old = json!({"transforms": {"l": {"type": "labels", "inputs": ["a"],
            "from_fields": {"level": "level"}}}});
        let new = json!({"transforms": {"l": {"type": "labels", "inputs": ["a"],
            "from_fields": {"severity": "level"}}}});
        let plan = plan_reload(&old, &new);
        assert!(plan.restart_required.is_empty(), "{plan:?}");
        let merged = apply_plan(&old, &new, &plan);
        assert_eq!(
            merged["transforms"]["l"]["from_fields"],
            json!({"severity": "level"})
        );

        // A stage added, one removed, one whose type changed: each named once, as a restart.
        let old = json!({"transforms": {
            "a": {"type": "dedup", "inputs": ["src"], "ttl": "5m"},
            "b": {"type": "filter", "inputs": ["src"], "pattern": "x"}},
            "sinks": {"o": {"type": "file", "inputs": ["a"]}}});
        let new = json!({"transforms": {
            "b": {"type": "json", "inputs": ["src"]},
            "c": {"type": "throttle", "inputs": ["src"], "rate": 5}},
            "sinks": {"o": {"type": "file", "inputs": ["c"]}}});
        let plan = plan_reload(&old, &new);
        assert_eq!(plan.added, ["transforms.c"]);
        assert_eq!(plan.removed, ["transforms.a"]);
        assert_eq!(plan.replaced, ["transforms.b"]);
        assert_eq!(
            plan.restart_required,
            [
                "transforms.a",
                "transforms.b",
                "transforms.c",
                "sinks.o.inputs"
            ]
        );
        assert!(plan.applied.is_empty(), "{plan:?}");

        // Pipeline tests are not part of the running pipeline: a changed test asks nothing.
        let old = json!({"tests": [{"name": "a"}]});
        let new = json!({"tests": [{"name": "b"}, {"name": "c"}]});
        assert_eq!(plan_reload(&old, &new), ReloadPlan::default());
    }
}
