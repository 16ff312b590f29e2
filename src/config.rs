//! Configuration: layering, validation, redaction and reload diffs.
//!
//! Layers, each overriding the one before:
//! 1. the built-in defaults of every setting (the `Default` impls of the config structs);
//! 2. the configuration file given with `--config` (`.yaml`, `.yml` or `.toml`), or, without one,
//!    the embedded default configuration (configs/default.yaml, compiled in). The file *replaces*
//!    the embedded pipeline, it is not merged with it;
//! 3. environment variables `LOG_CAPTURER_<KEY>`, with `__` between nested keys
//!    (`LOG_CAPTURER_DISPATCHER__BATCH_SIZE=200`);
//! 4. `--set key.path=value` arguments (the value is read as YAML: `10`, `true`, `[a, b]`).
//!
//! Validation reports every problem it finds at once, each with its key path and, where it can,
//! a hint: unknown keys (with a did-you-mean), unknown types, bad values, unknown or cyclic
//! inputs, components nothing reads from, sinks without inputs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml, Yaml};
use log_capturer_components::catalogue::{SinkConfig, SourceConfig, TransformConfig};
use log_capturer_components::config::{
    ConfigError, did_you_mean, duration, join_path, parse, parse_validated, struct_fields,
};
use log_capturer_components::dispatcher::DispatcherConfig;
use log_capturer_components::dlq::DlqConfig;
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
    /// Address and port. Loopback by default; any other address requires `token`.
    pub listen: SocketAddr,
    /// Bearer token required by mutating endpoints (`POST`). Required when `listen` is not a
    /// loopback address. Redacted wherever the configuration is shown.
    pub token: Option<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8401)),
            token: None,
        }
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
    /// A `tracing` filter: `info`, `debug`, or per module, `info,log_capturer=debug`.
    /// `RUST_LOG` overrides it.
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

/// The top level of the configuration, as written.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct RootConfig {
    /// Where state is kept (positions, dead-letter queue). Created at start-up.
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    pub log: LogConfig,
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
}

impl Default for RootConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            api: ApiConfig::default(),
            log: LogConfig::default(),
            shutdown_timeout: Duration::from_secs(30),
            dispatcher: DispatcherConfig::default(),
            sources: BTreeMap::new(),
            transforms: BTreeMap::new(),
            sinks: BTreeMap::new(),
        }
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

/// A complete, valid configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub root: RootConfig,
    pub sources: BTreeMap<String, SourceSpec>,
    pub transforms: BTreeMap<String, TransformSpec>,
    pub sinks: BTreeMap<String, SinkSpec>,
    /// The layered configuration as a JSON tree, before typing (what `GET /config` shows, redacted).
    pub raw: Value,
}

/// Reads every layer and validates the result.
pub fn load(source: &ConfigSource) -> Result<Config, ConfigErrors> {
    let raw = layered(source)?;
    validate(raw)
}

/// Reads and merges the layers into one JSON tree.
pub fn layered(source: &ConfigSource) -> Result<Value, ConfigErrors> {
    let mut figment = Figment::from(Serialized::defaults(RootConfig::default()));
    figment = match &source.file {
        Some(path) => merge_file(figment, path)?,
        None => figment.merge(Yaml::string(DEFAULT_CONFIG_YAML)),
    };
    if source.use_env {
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
    }
    for set in &source.sets {
        let (key, value) = parse_set(set)?;
        figment = figment.merge(Serialized::global(&key, value));
    }
    let origin = source.file.as_ref().map_or_else(
        || "embedded default".to_string(),
        |p| p.display().to_string(),
    );
    figment.extract::<Value>().map_err(|err| {
        ConfigErrors(
            err.into_iter()
                .map(|e| {
                    let path = e.path.join(".");
                    let mut message = e.kind.to_string();
                    if let Some(meta) = &e.metadata {
                        message = format!("{message} (from {})", meta.name);
                    }
                    if path.is_empty() {
                        ConfigError::new("", format!("cannot read {origin}: {message}"))
                    } else {
                        ConfigError::new(path, message)
                    }
                })
                .collect(),
        )
    })
}

fn merge_file(figment: Figment, path: &Path) -> Result<Figment, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        ConfigErrors(vec![ConfigError::new(
            "",
            format!("cannot read configuration file {}: {err}", path.display()),
        )])
    })?;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match extension.as_str() {
        "yaml" | "yml" => Ok(figment.merge(Yaml::string(&text))),
        "toml" => Ok(figment.merge(Toml::string(&text))),
        _ => Err(ConfigErrors(vec![
            ConfigError::new(
                "",
                format!(
                    "cannot tell the format of {}: unknown extension",
                    path.display()
                ),
            )
            .with_hint("name the file .yaml, .yml or .toml"),
        ])),
    }
}

fn parse_set(set: &str) -> Result<(String, figment::value::Value), ConfigErrors> {
    let Some((key, value)) = set.split_once('=') else {
        return Err(ConfigErrors(vec![
            ConfigError::new("", format!("--set {set:?} has no `=`"))
                .with_hint("write --set key.path=value, e.g. --set dispatcher.batch_size=200"),
        ]));
    };
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(ConfigErrors(vec![ConfigError::new(
            "",
            format!("--set {set:?}: `{key}` is not a key path"),
        )]));
    }
    let parsed: figment::value::Value = Yaml::from_str(value).map_err(|err| {
        ConfigErrors(vec![ConfigError::new(
            key,
            format!("--set value {value:?} is not valid YAML: {err}"),
        )])
    })?;
    Ok((key.to_string(), parsed))
}

/// Types and checks a layered configuration tree.
pub fn validate(raw: Value) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let root = parse_root(&raw, &mut errors);
    errors.extend(root.dispatcher.validate("dispatcher"));
    if !root.api.listen.ip().is_loopback() && root.api.token.as_deref().is_none_or(str::is_empty) {
        errors.push(
            ConfigError::new(
                "api.token",
                format!(
                    "required because api.listen ({}) is not a loopback address",
                    root.api.listen
                ),
            )
            .with_hint("set a token (LOG_CAPTURER_API__TOKEN) or listen on 127.0.0.1"),
        );
    }
    if let Err(err) = tracing_subscriber::EnvFilter::try_new(&root.log.level) {
        errors.push(
            ConfigError::new("log.level", format!("invalid filter: {err}"))
                .with_hint("use error, warn, info, debug or trace"),
        );
    }

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

    check_cycles(&root, &mut errors);
    check_consumers(&root, &mut errors);

    if errors.is_empty() {
        Ok(Config {
            root,
            sources,
            transforms,
            sinks,
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
        if input == own_name {
            errors.push(ConfigError::new(
                &path,
                format!("`{input}` is this component itself: a cycle"),
            ));
        } else if sinks.contains_key(input) {
            errors.push(ConfigError::new(
                &path,
                format!("`{input}` is a sink; inputs must be sources or transforms"),
            ));
        } else if !names.contains(input.as_str()) {
            let error = ConfigError::new(&path, format!("unknown input `{input}`"));
            errors.push(match did_you_mean(input, &candidates) {
                Some(best) => error.with_hint(format!("did you mean `{best}`?")),
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
            if input != name && root.transforms.contains_key(&input) {
                visit(&input, root, marks, stack, errors);
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

/// Key names whose values are secrets.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "token",
        "secret",
        "api_key",
        "apikey",
        "credential",
        "authorization",
    ]
    .iter()
    .any(|s| key.contains(s))
}

/// A copy with every secret value replaced by `"<redacted>"`.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) && !v.is_null() && !v.is_object() {
                        Value::String("<redacted>".to_string())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
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
        ["transforms", name, key] => running
            .pointer(&format!("/transforms/{name}/type"))
            .and_then(Value::as_str)
            .is_some_and(|type_name| TransformConfig::hot_reloadable(type_name).contains(key)),
        _ => false,
    }
}

/// The outcome of comparing the running configuration with a newly read one.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ReloadPlan {
    /// Keys whose new values are applied live.
    pub applied: Vec<String>,
    /// Keys whose new values take effect only after a restart.
    pub restart_required: Vec<String>,
}

/// Compares two layered trees and splits the changed keys into live and restart-required.
pub fn plan_reload(running: &Value, next: &Value) -> ReloadPlan {
    let mut old = BTreeMap::new();
    let mut new = BTreeMap::new();
    flatten(running, "", &mut old);
    flatten(next, "", &mut new);
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut plan = ReloadPlan::default();
    for key in keys {
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

    #[test]
    fn redacts_secrets() {
        let value = json!({"api": {"token": "abc", "listen": "x"}, "sinks": {"l": {"password": "p", "basic_auth": {"user": "u"}}}});
        let redacted = redact(&value);
        assert_eq!(redacted["api"]["token"], "<redacted>");
        assert_eq!(redacted["api"]["listen"], "x");
        assert_eq!(redacted["sinks"]["l"]["password"], "<redacted>");
        assert_eq!(redacted["sinks"]["l"]["basic_auth"]["user"], "u");
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
    }
}
