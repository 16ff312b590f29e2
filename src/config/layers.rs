//! Reading the configuration layers into one tree, remembering where each value came from.
//!
//! Guarantees:
//! - A YAML file with the same key twice in one map is refused, naming the key path and the line
//!   of the second occurrence (serde_yaml, and so figment, would keep the last one silently).
//!   TOML refuses duplicates itself.
//! - Errors of the file's syntax give the line and column and never quote the file's text (TOML's
//!   own messages show the offending line, which may hold a secret).
//! - Environment variables: every `LOG_CAPTURER_<KEY>[__<KEY>...]` whose first key is a top-level
//!   key is configuration. The variables Kubernetes injects for a Service whose name starts with
//!   `log-capturer` (`LOG_CAPTURER_SERVICE_HOST`, `LOG_CAPTURER_PORT=tcp://...`,
//!   `LOG_CAPTURER_FOO_PORT_8401_TCP_ADDR`, ...) are ignored; any other `LOG_CAPTURER_*` variable
//!   is an unknown key, reported with the variable's name.
//! - Each environment variable and each `--set` argument is a provider of its own, so an error on
//!   a key it set names it ([`Layered::origin`]); a `--set` is named by its key only, never with
//!   its value (which may be a secret).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use figment::providers::{Format, Serialized, Yaml};
use figment::value::{Dict, Map, Value as FigmentValue};
use figment::{Figment, Metadata, Profile, Provider};
use log_capturer_components::config::ConfigError;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{ConfigErrors, ConfigSource, DEFAULT_CONFIG_YAML, ENV_PREFIX, RootConfig};
use log_capturer_components::config::struct_fields;

/// The layers merged, and where each value came from.
pub struct Layered {
    /// The merged tree.
    pub tree: Value,
    figment: Figment,
}

/// What an environment variable's or a `--set` argument's metadata is named after.
const ENV_ORIGIN: &str = "environment variable ";
const SET_ORIGIN: &str = "--set ";

impl Layered {
    /// The environment variable or `--set` argument that set the value at `path`, if one did.
    pub fn origin(&self, path: &str) -> Option<String> {
        if path.is_empty() {
            return None;
        }
        let name = &self.figment.find_metadata(path)?.name;
        (name.starts_with(ENV_ORIGIN) || name.starts_with(SET_ORIGIN)).then(|| name.to_string())
    }

    /// `errors` with the origin of each error's key added to its message, when it was an
    /// environment variable or a `--set` argument.
    pub fn annotate(&self, errors: ConfigErrors) -> ConfigErrors {
        ConfigErrors(
            errors
                .0
                .into_iter()
                .map(|mut error| {
                    if let Some(origin) = self.origin(&error.path) {
                        error.message = format!("{} (from {origin})", error.message);
                    }
                    error
                })
                .collect(),
        )
    }
}

/// Reads and merges the layers.
pub fn read(source: &ConfigSource) -> Result<Layered, ConfigErrors> {
    let mut figment = Figment::from(Serialized::defaults(RootConfig::default()));
    figment = match &source.file {
        Some(path) => merge_file(figment, path)?,
        None => figment.merge(Yaml::string(DEFAULT_CONFIG_YAML)),
    };
    let mut errors = Vec::new();
    if source.use_env {
        for (name, value) in std::env::vars_os() {
            let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
                continue;
            };
            match env_entry(name, value) {
                EnvEntry::NotOurs => {}
                EnvEntry::ServiceLink => {
                    tracing::debug!(variable = %name, "Ignoring a Kubernetes service variable.");
                }
                EnvEntry::Invalid(error) => errors.push(error),
                EnvEntry::Key(key, value) => {
                    figment = figment.merge(Origin {
                        name: format!("{ENV_ORIGIN}{name}"),
                        key,
                        value,
                    });
                }
            }
        }
    }
    for (index, set) in source.sets.iter().enumerate() {
        match parse_set(index + 1, set) {
            Ok((key, value)) => {
                figment = figment.merge(Origin {
                    name: format!("{SET_ORIGIN}{key}"),
                    key,
                    value,
                });
            }
            Err(error) => errors.push(error),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let origin = source.file.as_ref().map_or_else(
        || "the embedded default".to_string(),
        |p| p.display().to_string(),
    );
    match figment.extract::<Value>() {
        Ok(tree) => Ok(Layered { tree, figment }),
        Err(err) => Err(ConfigErrors(
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
        )),
    }
}

/// One key set by one environment variable or `--set` argument, named after it.
struct Origin {
    name: String,
    key: String,
    value: FigmentValue,
}

impl Provider for Origin {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::global(&self.key, &self.value).data()
    }
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
        "yaml" | "yml" => {
            check_yaml(&text).map_err(|error| ConfigErrors(vec![error.in_file(path)]))?;
            Ok(figment.merge(Yaml::string(&text)))
        }
        "toml" => {
            check_toml(&text).map_err(|error| ConfigErrors(vec![error.in_file(path)]))?;
            Ok(figment.merge(figment::providers::Toml::string(&text)))
        }
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

/// A problem with a file's text, before it is merged.
struct FileError {
    /// The key path, when known.
    path: String,
    message: String,
    hint: Option<&'static str>,
}

impl FileError {
    fn in_file(self, file: &Path) -> ConfigError {
        let error = ConfigError::new(
            self.path,
            format!("in {}: {}", file.display(), self.message),
        );
        match self.hint {
            Some(hint) => error.with_hint(hint),
            None => error,
        }
    }
}

/// Parses YAML once to find what figment would hide: a key given twice in one map.
fn check_yaml(text: &str) -> Result<(), FileError> {
    let duplicate = RefCell::new(None);
    let result = Node {
        path: Vec::new(),
        duplicate: &duplicate,
    }
    .deserialize(serde_yaml::Deserializer::from_str(text));
    let Err(err) = result else {
        return Ok(());
    };
    let at = err
        .location()
        .map(|l| format!("line {} column {}", l.line(), l.column()))
        .unwrap_or_else(|| "an unknown line".to_string());
    match duplicate.into_inner() {
        Some(path) => Err(FileError {
            path,
            message: format!(
                "the key is given twice (again at {at}); the later one would replace the earlier"
            ),
            hint: Some("remove or rename one of them"),
        }),
        // serde_yaml's syntax messages give the position and do not quote the text.
        None => Err(FileError {
            path: String::new(),
            message: format!("invalid YAML: {err}"),
            hint: None,
        }),
    }
}

/// TOML's own error messages show the line they are about: only its message and position are
/// kept.
fn check_toml(text: &str) -> Result<(), FileError> {
    let Err(err) = toml::from_str::<toml::Table>(text) else {
        return Ok(());
    };
    let at = err.span().map_or_else(String::new, |span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!(" at line {line} column {column}")
    });
    Err(FileError {
        path: String::new(),
        message: format!("invalid TOML{at}: {}", err.message()),
        hint: None,
    })
}

/// Walks a YAML document, failing at the first key given twice in one map; the failure is
/// raised while reading that key, so serde_yaml gives its position.
struct Node<'a> {
    path: Vec<String>,
    duplicate: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i128<E>(self, _: i128) -> Result<(), E> {
        Ok(())
    }
    fn visit_u128<E>(self, _: u128) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            let mut path = self.path.clone();
            path.push(index.to_string());
            let node = Node {
                path,
                duplicate: self.duplicate,
            };
            if seq.next_element_seed(node)?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = BTreeSet::new();
        loop {
            let key = Key {
                seen: &mut seen,
                path: &self.path,
                duplicate: self.duplicate,
            };
            let Some(name) = map.next_key_seed(key)? else {
                return Ok(());
            };
            let mut path = self.path.clone();
            path.push(name);
            map.next_value_seed(Node {
                path,
                duplicate: self.duplicate,
            })?;
        }
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        use de::VariantAccess;
        let (_, variant): (de::IgnoredAny, _) = data.variant()?;
        variant.newtype_variant_seed(self)
    }
}

/// A map key; fails when it was seen before in the same map.
struct Key<'a, 'b> {
    seen: &'a mut BTreeSet<String>,
    path: &'a [String],
    duplicate: &'b RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Key<'_, '_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Key<'_, '_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        if !self.seen.insert(v.to_string()) {
            let mut path = self.path.to_vec();
            path.push(v.to_string());
            *self.duplicate.borrow_mut() = Some(path.join("."));
            return Err(E::custom(format!("duplicate key `{v}`")));
        }
        Ok(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        self.visit_str("null")
    }
    // A list or map as a key (`? [a, b]: x`): never a configuration key; the typing reports it.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<String, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(String::new())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
        while map
            .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
            .is_some()
        {}
        Ok(String::new())
    }
}

/// What one environment variable is to the configuration.
#[derive(Debug, PartialEq)]
enum EnvEntry {
    /// No `LOG_CAPTURER_` prefix.
    NotOurs,
    /// A variable Kubernetes sets for a Service named `log-capturer...`: ignored.
    ServiceLink,
    /// A key path and its value.
    Key(String, FigmentValue),
    /// Prefixed but not a key path (`LOG_CAPTURER_A____B`).
    Invalid(ConfigError),
}

fn env_entry(name: &str, value: &str) -> EnvEntry {
    let name = name.trim();
    let Some(rest) = name
        .get(..ENV_PREFIX.len())
        .filter(|prefix| prefix.eq_ignore_ascii_case(ENV_PREFIX))
        .map(|_| &name[ENV_PREFIX.len()..])
    else {
        return EnvEntry::NotOurs;
    };
    let steps: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    let top_level = struct_fields::<RootConfig>();
    if !top_level.contains(&steps[0].as_str()) && is_service_link(rest) {
        return EnvEntry::ServiceLink;
    }
    if steps.iter().any(String::is_empty) {
        return EnvEntry::Invalid(
            ConfigError::new("", format!("environment variable {name} is not a key path"))
                .with_hint("write LOG_CAPTURER_<KEY>, with __ between nested keys, e.g. LOG_CAPTURER_DISPATCHER__BATCH_SIZE"),
        );
    }
    EnvEntry::Key(steps.join("."), env_value(value))
}

/// Whether `rest` (a variable's name after `LOG_CAPTURER_`) has the shape of a Kubernetes
/// service link of a Service whose name is `log-capturer` or starts with `log-capturer-`:
/// `[<S>_]SERVICE_HOST`, `[<S>_]SERVICE_PORT[_<PORT NAME>]`, `[<S>_]PORT`,
/// `[<S>_]PORT_<N>_<TCP|UDP|SCTP>[_PROTO|_PORT|_ADDR]`.
fn is_service_link(rest: &str) -> bool {
    let upper = rest.to_ascii_uppercase();
    let w: Vec<&str> = upper.split('_').collect();
    let n = w.len();
    if w.ends_with(&["SERVICE", "HOST"])
        || w.ends_with(&["SERVICE", "PORT"])
        || w.ends_with(&["PORT"])
    {
        return true;
    }
    // <S>_SERVICE_PORT_<NAME>: a named port, its name in one or more words.
    if (0..n.saturating_sub(2)).any(|i| w[i] == "SERVICE" && w[i + 1] == "PORT") {
        return true;
    }
    // <S>_PORT_<N>_<PROTO>, and the same with _PROTO, _PORT or _ADDR after it.
    let tail = match w.last() {
        Some(&("PROTO" | "PORT" | "ADDR")) => &w[..n - 1],
        _ => &w[..],
    };
    let m = tail.len();
    m >= 3
        && matches!(tail[m - 1], "TCP" | "UDP" | "SCTP")
        && !tail[m - 2].is_empty()
        && tail[m - 2].bytes().all(|b| b.is_ascii_digit())
        && tail[m - 3] == "PORT"
}

/// An environment value read as figment reads it (`10`, `true`, `[a, b]`, text), except that a
/// number is kept as text when reading it would change its digits (`007`, `1.50`): a secret or
/// a name must reach the configuration as written.
fn env_value(raw: &str) -> FigmentValue {
    let parsed: FigmentValue = raw
        .parse()
        .unwrap_or_else(|_| FigmentValue::from(raw.to_string()));
    if let FigmentValue::Num(_, _) = parsed {
        let text = raw.trim();
        let canonical = text.parse::<i128>().is_ok_and(|n| n.to_string() == text)
            || text.parse::<f64>().is_ok_and(|f| f.to_string() == text);
        if !canonical {
            return FigmentValue::from(raw.to_string());
        }
    }
    parsed
}

/// `key.path=value`, the value read as YAML. Errors name the key, never the value.
fn parse_set(number: usize, set: &str) -> Result<(String, FigmentValue), ConfigError> {
    let Some((key, value)) = set.split_once('=') else {
        return Err(
            ConfigError::new("", format!("--set argument {number} has no `=`"))
                .with_hint("write --set key.path=value, e.g. --set dispatcher.batch_size=200"),
        );
    };
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(
            ConfigError::new("", format!("--set {key}=...: `{key}` is not a key path"))
                .with_hint("write --set key.path=value, e.g. --set dispatcher.batch_size=200"),
        );
    }
    let parsed: FigmentValue = Yaml::from_str(value).map_err(|err| {
        ConfigError::new(
            key,
            format!("the value of --set {key}=... is not valid YAML: {err}"),
        )
    })?;
    Ok((key.to_string(), parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_service_links_are_not_configuration() {
        for name in [
            "LOG_CAPTURER_SERVICE_HOST",
            "LOG_CAPTURER_SERVICE_PORT",
            "LOG_CAPTURER_SERVICE_PORT_HTTP_API",
            "LOG_CAPTURER_PORT",
            "LOG_CAPTURER_PORT_8401_TCP",
            "LOG_CAPTURER_PORT_8401_TCP_ADDR",
            "LOG_CAPTURER_PORT_8401_TCP_PORT",
            "LOG_CAPTURER_PORT_8401_TCP_PROTO",
            "LOG_CAPTURER_PORT_53_UDP",
            "LOG_CAPTURER_FOO_SERVICE_HOST",
            "LOG_CAPTURER_FOO_BAR_SERVICE_PORT",
            "LOG_CAPTURER_FOO_PORT",
            "LOG_CAPTURER_FOO_PORT_8401_TCP_ADDR",
            "LOG_CAPTURER_API_SERVICE_HOST",
        ] {
            assert_eq!(
                env_entry(name, "tcp://10.0.0.1:8401"),
                EnvEntry::ServiceLink,
                "{name}"
            );
        }
        assert_eq!(env_entry("PATH", "/bin"), EnvEntry::NotOurs);
        assert!(matches!(
            env_entry("LOG_CAPTURER_DISPATCHER__BATCH_SIZE", "200"),
            EnvEntry::Key(key, _) if key == "dispatcher.batch_size"
        ));
        // Not a service link: an unknown key, so a typo is still reported.
        assert!(matches!(
            env_entry("LOG_CAPTURER_DISPATCHER_BATCH_SIZE", "200"),
            EnvEntry::Key(key, _) if key == "dispatcher_batch_size"
        ));
        assert!(matches!(
            env_entry("LOG_CAPTURER_API____TOKEN", "x"),
            EnvEntry::Invalid(_)
        ));
    }

    #[test]
    fn env_numbers_keep_their_digits() {
        assert_eq!(env_value("200"), FigmentValue::from(200u8));
        assert_eq!(env_value("007"), FigmentValue::from("007".to_string()));
        assert_eq!(env_value("1.50"), FigmentValue::from("1.50".to_string()));
        assert_eq!(env_value("true"), FigmentValue::from(true));
    }

    #[test]
    fn duplicate_yaml_keys_name_the_key_and_line() {
        let error =
            check_yaml("a: 1\nsources:\n  gen: {type: x}\n  other: 2\n  gen:\n    type: y\n")
                .err()
                .unwrap();
        assert_eq!(error.path, "sources.gen");
        assert!(
            error.message.contains("again at line 5 column 3"),
            "{}",
            error.message
        );
        let error = check_yaml("a: 1\nb: [{x: 1, x: 2}]\n").err().unwrap();
        assert_eq!(error.path, "b.0.x");
        assert!(check_yaml("a: 1\nb: {c: 2}\nd: [1, 1]\n").is_ok());
    }

    #[test]
    fn toml_errors_do_not_quote_the_file() {
        let error = check_toml("[a]\npassword = \"hunter2\npassword = 1\n")
            .err()
            .unwrap();
        assert!(!error.message.contains("hunter2"), "{}", error.message);
        assert!(error.message.contains("line 2"), "{}", error.message);
        let error = check_toml("[a]\nx = \"hunter2\"\nx = 2\n").err().unwrap();
        assert!(!error.message.contains("hunter2"), "{}", error.message);
        assert!(error.message.contains("duplicate key"), "{}", error.message);
    }

    #[test]
    fn set_errors_name_the_key_not_the_value() {
        let error = parse_set(1, "sinks.l.auth.password=[hunter2").unwrap_err();
        assert_eq!(error.path, "sinks.l.auth.password");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        let error = parse_set(2, "hunter2").unwrap_err();
        assert!(
            error.to_string().contains("--set argument 2 has no `=`"),
            "{error}"
        );
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
