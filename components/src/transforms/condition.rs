//! Conditions on an event: its line (a regular expression), its age (`older_than`), its length
//! (`longer_than`), and its labels or fields (equal to a value, or matching a regular
//! expression). One implementation, used by the `filter` transform (keep or drop what matches)
//! and the `route` transform (send what matches to a named output).
//!
//! Guarantees:
//! - An event *matches* a condition when it meets every part given; a condition has at least
//!   one part (checked when it is compiled, like every regular expression in it, each error
//!   named by its key).
//! - Matching runs on the raw bytes of lines and fields, so invalid UTF-8 is matched too. An
//!   absent label or field never matches its part.
//! - Only `older_than` reads the clock, and it is given the time by the caller (once per batch).

use std::collections::BTreeMap;
use std::time::Duration;

use regex::bytes::Regex;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, duration_opt, join_path};
use crate::event::LogEvent;

/// A condition on one label or field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueMatch {
    /// The value is exactly this.
    Equals(String),
    /// The value matches this regular expression (searched anywhere in it).
    Regex(String),
}

/// A condition as written: every part given must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Condition {
    /// A regular expression (Rust `regex` syntax) searched for anywhere in the line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Events whose timestamp is older than this (now minus the timestamp) match.
    #[serde(with = "duration_opt", skip_serializing_if = "Option::is_none")]
    pub older_than: Option<Duration>,
    /// Events whose line is longer than this many bytes match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longer_than: Option<usize>,
    /// Label name -> `{equals: VALUE}` or `{regex: PATTERN}`; each must hold.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, ValueMatch>,
    /// Field name (set by a parser) -> `{equals: VALUE}` or `{regex: PATTERN}`; each must hold.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, ValueMatch>,
}

impl Condition {
    /// The compiled condition; every error is named by its key under `prefix`.
    pub fn compile(&self, prefix: &str) -> Result<Matcher, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let regex = self
            .pattern
            .as_ref()
            .and_then(|p| compile_regex(join_path(prefix, "pattern"), p, &mut errors));
        let labels = compile_values(prefix, "labels", &self.labels, &mut errors);
        let fields = compile_values(prefix, "fields", &self.fields, &mut errors);
        if self.pattern.is_none()
            && self.older_than.is_none()
            && self.longer_than.is_none()
            && self.labels.is_empty()
            && self.fields.is_empty()
        {
            errors.push(
                ConfigError::new(join_path(prefix, "pattern"), "no condition is given").with_hint(
                    "give at least one of pattern, older_than, longer_than, labels, fields",
                ),
            );
        }
        if self.older_than.is_some_and(|d| d.is_zero()) {
            errors.push(ConfigError::new(
                join_path(prefix, "older_than"),
                "must be longer than 0s",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Matcher {
            regex,
            older_than_ns: self
                .older_than
                .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
            longer_than: self.longer_than,
            labels,
            fields,
        })
    }
}

/// A compiled label or field part.
#[derive(Debug)]
enum ValueMatcher {
    Equals(Vec<u8>),
    Regex(Regex),
}

impl ValueMatcher {
    fn is_match(&self, value: &[u8]) -> bool {
        match self {
            Self::Equals(want) => value == want.as_slice(),
            Self::Regex(regex) => regex.is_match(value),
        }
    }
}

fn compile_regex(path: String, pattern: &str, errors: &mut Vec<ConfigError>) -> Option<Regex> {
    match Regex::new(pattern) {
        Ok(regex) => Some(regex),
        Err(err) => {
            errors.push(ConfigError::new(
                path,
                format!("invalid regular expression: {err}"),
            ));
            None
        }
    }
}

fn compile_values(
    prefix: &str,
    key: &str,
    map: &BTreeMap<String, ValueMatch>,
    errors: &mut Vec<ConfigError>,
) -> Vec<(String, ValueMatcher)> {
    map.iter()
        .filter_map(|(name, spec)| {
            let matcher = match spec {
                ValueMatch::Equals(value) => ValueMatcher::Equals(value.as_bytes().to_vec()),
                ValueMatch::Regex(pattern) => ValueMatcher::Regex(compile_regex(
                    join_path(&join_path(&join_path(prefix, key), name), "regex"),
                    pattern,
                    errors,
                )?),
            };
            Some((name.clone(), matcher))
        })
        .collect()
}

/// A compiled [`Condition`].
#[derive(Debug)]
pub struct Matcher {
    regex: Option<Regex>,
    older_than_ns: Option<i64>,
    longer_than: Option<usize>,
    labels: Vec<(String, ValueMatcher)>,
    fields: Vec<(String, ValueMatcher)>,
}

impl Matcher {
    /// Whether matching needs the time (`older_than`): callers read the clock only then.
    pub fn reads_clock(&self) -> bool {
        self.older_than_ns.is_some()
    }

    /// Whether `event` meets every part; `now_ns` is the batch's clock (nanoseconds since the
    /// epoch; unused unless [`Matcher::reads_clock`]).
    pub fn matches(&self, event: &LogEvent, now_ns: i64) -> bool {
        self.regex.as_ref().is_none_or(|r| r.is_match(&event.line))
            && self
                .older_than_ns
                .is_none_or(|age| now_ns.saturating_sub(event.timestamp_ns) > age)
            && self.longer_than.is_none_or(|max| event.line.len() > max)
            && self.labels.iter().all(|(name, m)| {
                event
                    .labels
                    .get(name)
                    .is_some_and(|v| m.is_match(v.as_bytes()))
            })
            && self
                .fields
                .iter()
                .all(|(name, m)| event.fields.get(name).is_some_and(|v| m.is_match(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Labels, now_ns};
    use crate::transforms::testing::event;
    use bytes::Bytes;

    fn pattern(p: &str) -> Matcher {
        Condition {
            pattern: Some(p.into()),
            ..Condition::default()
        }
        .compile("c")
        .unwrap()
    }

    #[test]
    fn a_pattern_matches_raw_bytes_including_invalid_utf8() {
        let m = pattern("^ERROR");
        assert!(m.matches(&event(b"ERROR \xff\xfe bad bytes"), 0));
        assert!(!m.matches(&event(b"info ok"), 0));
        assert!(!m.reads_clock());
    }

    #[test]
    fn every_part_must_hold_and_absent_values_never_match() {
        let m = Condition {
            labels: BTreeMap::from([("team".into(), ValueMatch::Equals("pay".into()))]),
            fields: BTreeMap::from([("status".into(), ValueMatch::Regex("^5".into()))]),
            longer_than: Some(1),
            ..Condition::default()
        }
        .compile("c")
        .unwrap();
        let mut e = event(b"ab");
        e.labels = Labels::new([("team", "pay")]);
        assert!(!m.matches(&e, 0), "no status field");
        e.fields.insert("status", Bytes::from_static(b"503"));
        assert!(m.matches(&e, 0));
        e.line = Bytes::from_static(b"a");
        assert!(!m.matches(&e, 0), "not longer than 1 byte");
    }

    #[test]
    fn older_than_compares_with_the_given_clock() {
        let m = Condition {
            older_than: Some(Duration::from_secs(3600)),
            ..Condition::default()
        }
        .compile("c")
        .unwrap();
        assert!(m.reads_clock());
        let mut e = event(b"x");
        e.timestamp_ns = now_ns() - 60_000_000_000;
        assert!(!m.matches(&e, now_ns()));
        assert!(m.matches(&e, e.timestamp_ns + 3_601_000_000_000));
    }

    #[test]
    fn bad_parts_name_their_keys() {
        let errors = Condition::default().compile("routes.a").unwrap_err();
        assert_eq!(errors[0].path, "routes.a.pattern");
        assert!(errors[0].to_string().contains("no condition"));
        let errors = Condition {
            pattern: Some("(".into()),
            labels: BTreeMap::from([("app".into(), ValueMatch::Regex("[".into()))]),
            older_than: Some(Duration::ZERO),
            ..Condition::default()
        }
        .compile("routes.a")
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "routes.a.pattern",
                "routes.a.labels.app.regex",
                "routes.a.older_than"
            ]
        );
    }
}
