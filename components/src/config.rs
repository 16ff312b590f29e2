//! Typed configuration helpers shared by the engine and every component.
//!
//! Components receive their configuration as a [`serde_json::Value`] subtree that the engine has
//! already layered (defaults, file, environment, `--set`); [`parse`] turns it into the typed struct
//! and reports *every* unknown key (with a did-you-mean) plus the first type error, each with its
//! full key path. Components never read configuration files themselves.

use std::fmt;
use std::time::Duration;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

/// One configuration problem, named by its key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `sinks.out.inputs`.
    pub path: String,
    pub message: String,
    /// How to fix it, when we know.
    pub hint: Option<String>,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.path, self.message)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A configuration problem that does not stop the start (a directory that does not exist yet).
/// Same shape as an error; `validate` prints them, `run` logs them.
pub type ConfigWarning = ConfigError;

/// Loki's rule for label names (and Prometheus'): `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An error for every name in a `labels` map (at `prefix.labels`) that Loki would refuse.
pub fn label_name_errors<'a>(
    prefix: &str,
    names: impl IntoIterator<Item = &'a String>,
) -> Vec<ConfigError> {
    names
        .into_iter()
        .filter(|name| !valid_label_name(name))
        .map(|name| {
            ConfigError::new(
                join_path(prefix, &format!("labels.{name}")),
                "invalid label name: Loki accepts [a-zA-Z_][a-zA-Z0-9_]*",
            )
            .with_hint(format!("e.g. `{}`", label_name_suggestion(name)))
        })
        .collect()
}

/// `name` made valid: every other character becomes `_`, and a leading digit gets one before it.
fn label_name_suggestion(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Joins a prefix and a key into a dotted path.
pub fn join_path(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}.{key}"),
    }
}

/// Deserializes `value` into `T`, reporting every unknown key and the first invalid value.
///
/// `prefix` is the path of `value` in the whole configuration. `nested` names the fields of `T`
/// that are themselves structs, with their field names, so unknown keys inside them get a
/// did-you-mean too.
pub fn parse<T: DeserializeOwned>(
    prefix: &str,
    value: serde_json::Value,
    nested: &[(&str, &[&str])],
) -> Result<T, Vec<ConfigError>> {
    let top_fields = struct_fields::<T>();
    let mut unknown = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let result = {
        let tracked = serde_path_to_error::Deserializer::new(value, &mut track);
        serde_ignored::deserialize(tracked, |path| {
            // serde_ignored writes `?` for the inside of an Option; a key path has no such step.
            let path = path.to_string();
            let steps: Vec<&str> = path.split('.').filter(|step| *step != "?").collect();
            unknown.push(steps.join("."));
        })
    };
    let mut errors: Vec<ConfigError> = unknown
        .into_iter()
        .map(|key| {
            let (parent, leaf) = match key.rsplit_once('.') {
                Some((parent, leaf)) => (parent, leaf),
                None => ("", key.as_str()),
            };
            let candidates: &[&str] = if parent.is_empty() {
                top_fields
            } else {
                nested
                    .iter()
                    .find(|(name, _)| *name == parent)
                    .map_or(&[], |(_, fields)| *fields)
            };
            let error = ConfigError::new(join_path(prefix, &key), "unknown key");
            match did_you_mean(leaf, candidates) {
                Some(best) => error.with_hint(format!("did you mean `{best}`?")),
                None if !candidates.is_empty() => {
                    error.with_hint(format!("known keys: {}", candidates.join(", ")))
                }
                None => error,
            }
        })
        .collect();
    match result {
        Ok(parsed) if errors.is_empty() => Ok(parsed),
        Ok(_) => Err(errors),
        Err(err) => {
            let path = track.path().to_string();
            let path = if path == "." { String::new() } else { path };
            errors.push(ConfigError::new(join_path(prefix, &path), err.to_string()));
            Err(errors)
        }
    }
}

/// [`parse`], then the type's own value checks (`validate(&parsed, prefix)`).
pub fn parse_validated<T: DeserializeOwned>(
    prefix: &str,
    value: serde_json::Value,
    validate: impl FnOnce(&T, &str) -> Vec<ConfigError>,
) -> Result<T, Vec<ConfigError>> {
    let parsed: T = parse(prefix, value, &[])?;
    let errors = validate(&parsed, prefix);
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

/// The closest candidate to `key`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(key: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(key, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// The field names of a struct deserialized with `#[derive(Deserialize)]`.
///
/// Works by asking `T` to deserialize itself from a deserializer that records the field list
/// serde passes to `deserialize_struct` and then fails; types that are not structs give `&[]`.
pub fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Introspect<'a>(&'a mut &'static [&'static str]);

    #[derive(Debug)]
    struct Stop;
    impl fmt::Display for Stop {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("introspection")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: fmt::Display>(_: M) -> Self {
            Stop
        }
    }

    impl<'de> Deserializer<'de> for Introspect<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Introspect(&mut fields));
    fields
}

/// Serde adapter for durations written as `500ms`, `10s`, `5m`, `1h 30m` (or whole seconds).
pub mod duration {
    use super::*;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like 500ms, 10s or 5m")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                humantime::parse_duration(v.trim()).map_err(|_| {
                    E::custom(format!(
                        "invalid duration {v:?}: write a number and a unit, like 500ms, 10s, 5m or 1h"
                    ))
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v).map(Duration::from_secs).map_err(|_| {
                    E::custom(format!("invalid duration {v}: it must not be negative"))
                })
            }
        }
        d.deserialize_any(DurationVisitor)
    }
}

/// Serde adapter for optional durations (`null` or absent means none).
pub mod duration_opt {
    use super::*;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(&humantime::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(serde::Deserialize)]
        struct Wrapper(#[serde(with = "super::duration")] Duration);
        Ok(Option::<Wrapper>::deserialize(d)?.map(|Wrapper(d)| d))
    }

    use serde::Deserialize;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        batch_size: usize,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        #[serde(default)]
        count: u64,
        #[serde(default, with = "duration")]
        wait: Duration,
        inner: Option<Inner>,
    }

    #[test]
    fn reports_every_unknown_key_with_suggestions() {
        let errors = parse::<Outer>(
            "sources.gen",
            json!({"cuont": 1, "inner": {"batch_sise": 2}, "aaa": 1}),
            &[("inner", &["batch_size"])],
        )
        .unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|e| e.contains("sources.gen.cuont") && e.contains("`count`")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|e| e.contains("sources.gen.inner.batch_sise") && e.contains("`batch_size`")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|e| e.contains("sources.gen.aaa")),
            "{text:?}"
        );
    }

    #[test]
    fn bad_duration_names_its_path() {
        let errors = parse::<Outer>("x", json!({"wait": "soon"}), &[]).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "x.wait");
        assert!(errors[0].message.contains("invalid duration \"soon\""));
        let ok: Outer = parse("x", json!({"wait": "1m 30s"}), &[]).unwrap();
        assert_eq!(ok.wait, Duration::from_secs(90));
    }

    #[test]
    fn label_names_follow_lokis_rule_with_a_suggestion() {
        assert!(valid_label_name("job") && valid_label_name("_x1"));
        assert!(!valid_label_name("1x") && !valid_label_name("a-b") && !valid_label_name(""));
        let names = ["job".to_string(), "app-name".to_string()];
        let errors = label_name_errors("sources.app", &names);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "sources.app.labels.app-name: invalid label name: Loki accepts [a-zA-Z_][a-zA-Z0-9_]* (hint: e.g. `app_name`)"
        );
    }

    #[test]
    fn introspects_struct_fields() {
        assert_eq!(struct_fields::<Outer>(), &["count", "wait", "inner"]);
        assert!(struct_fields::<u64>().is_empty());
    }
}
