//! The `filter` transform: keeps or drops events by their line (a regular expression), their
//! age (`older_than`), their length (`longer_than`), and their labels or fields (equal to a
//! value, or matching a regular expression).
//!
//! Guarantees:
//! - An event *matches* when it meets every condition given (at least one is required); `keep`
//!   keeps the matching events, `drop` drops them.
//! - Matching runs on the raw bytes of lines and fields, so invalid UTF-8 is matched too. An
//!   absent label or field never matches its condition.
//! - Dropped events are counted in `dropped_total{reason="filtered"}` and acknowledged as
//!   handled: removed from the batch, they leave its acknowledgements to the events that go on,
//!   and a batch left empty is settled as delivered by the topology, so file positions advance
//!   past filtered lines.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::bytes::Regex;
use serde::{Deserialize, Serialize};

use crate::component::{
    Component, FunctionTransform, Transform, TransformComponent, TransformContext,
    config_build_error,
};
use crate::config::{ConfigError, duration_opt, join_path};
use crate::event::{LogEvent, now_ns};
use crate::telemetry::ComponentAttrs;
use crate::{BuildError, EventBatch};

/// What to do with matching lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterAction {
    /// Keep matching lines, drop the rest.
    #[default]
    Keep,
    /// Drop matching lines, keep the rest.
    Drop,
}

/// A condition on one label or field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueMatch {
    /// The value is exactly this.
    Equals(String),
    /// The value matches this regular expression (searched anywhere in it).
    Regex(String),
}

/// Configuration of the `filter` transform.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FilterConfig {
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
    /// `keep` (default) or `drop` the matching lines.
    pub action: FilterAction,
}

impl Component for FilterConfig {
    const TYPE: &'static str = "filter";

    fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        self.compile(prefix).err().unwrap_or_default()
    }
}

impl TransformComponent for FilterConfig {
    fn build(&self, cx: TransformContext<Self>) -> Result<Transform, BuildError> {
        self.filter(&cx.key)
            .map(Transform::function)
            .map_err(|errors| config_build_error(&cx.key, errors))
    }
}

/// A compiled label or field condition.
#[derive(Debug)]
enum Matcher {
    Equals(Vec<u8>),
    Regex(Regex),
}

impl Matcher {
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

fn compile_matchers(
    prefix: &str,
    key: &str,
    map: &BTreeMap<String, ValueMatch>,
    errors: &mut Vec<ConfigError>,
) -> Vec<(String, Matcher)> {
    map.iter()
        .filter_map(|(name, spec)| {
            let matcher = match spec {
                ValueMatch::Equals(value) => Matcher::Equals(value.as_bytes().to_vec()),
                ValueMatch::Regex(pattern) => Matcher::Regex(compile_regex(
                    join_path(&join_path(&join_path(prefix, key), name), "regex"),
                    pattern,
                    errors,
                )?),
            };
            Some((name.clone(), matcher))
        })
        .collect()
}

impl FilterConfig {
    fn compile(&self, prefix: &str) -> Result<Filter, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let regex = self
            .pattern
            .as_ref()
            .and_then(|p| compile_regex(join_path(prefix, "pattern"), p, &mut errors));
        let labels = compile_matchers(prefix, "labels", &self.labels, &mut errors);
        let fields = compile_matchers(prefix, "fields", &self.fields, &mut errors);
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
        Ok(Filter {
            regex,
            older_than_ns: self
                .older_than
                .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
            longer_than: self.longer_than,
            labels,
            fields,
            keep_matches: self.action == FilterAction::Keep,
            attrs: ComponentAttrs::new(prefix),
        })
    }

    /// The running filter; `key` is its name.
    pub fn filter(&self, key: &str) -> Result<Filter, Vec<ConfigError>> {
        self.compile(key)
    }
}

/// The running `filter` transform.
#[derive(Debug)]
pub struct Filter {
    regex: Option<Regex>,
    older_than_ns: Option<i64>,
    longer_than: Option<usize>,
    labels: Vec<(String, Matcher)>,
    fields: Vec<(String, Matcher)>,
    keep_matches: bool,
    attrs: ComponentAttrs,
}

impl Filter {
    /// Whether `event` meets every condition; `now_ns` is the batch's clock.
    fn matches(&self, event: &LogEvent, now_ns: i64) -> bool {
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

impl FunctionTransform for Filter {
    fn transform(&mut self, batch: &mut EventBatch) {
        let before = batch.len();
        let now = if self.older_than_ns.is_some() {
            now_ns()
        } else {
            0
        };
        batch
            .events
            .retain(|event| self.matches(event, now) == self.keep_matches);
        let dropped = before - batch.len();
        if dropped > 0 {
            self.attrs.dropped(dropped, "filtered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Labels;
    use crate::transforms::testing::batch;
    use bytes::Bytes;

    fn lines(batch: &EventBatch) -> Vec<&[u8]> {
        batch.events.iter().map(|e| &e.line[..]).collect()
    }

    fn config(pattern: &str, action: FilterAction) -> FilterConfig {
        FilterConfig {
            pattern: Some(pattern.into()),
            action,
            ..FilterConfig::default()
        }
    }

    #[test]
    fn keeps_or_drops_matches_including_invalid_utf8() {
        let input: &[&[u8]] = &[b"ERROR disk", b"info ok", b"ERROR \xff\xfe bad bytes"];
        let mut keep = config("^ERROR", FilterAction::Keep).filter("f").unwrap();
        let mut b = batch(input);
        keep.transform(&mut b);
        assert_eq!(
            lines(&b),
            vec![&b"ERROR disk"[..], &b"ERROR \xff\xfe bad bytes"[..]]
        );

        let mut drop = config("^ERROR", FilterAction::Drop).filter("f").unwrap();
        let mut b = batch(input);
        drop.transform(&mut b);
        assert_eq!(lines(&b), vec![&b"info ok"[..]]);
    }

    #[test]
    fn drops_by_age_and_by_length() {
        let mut old = FilterConfig {
            older_than: Some(Duration::from_secs(3600)),
            action: FilterAction::Drop,
            ..FilterConfig::default()
        }
        .filter("f")
        .unwrap();
        let mut b = batch(&[b"ancient", b"fresh"]);
        // `ancient` keeps the fixture's time (1970); `fresh` is a minute old.
        b.events[1].timestamp_ns = now_ns() - 60_000_000_000;
        old.transform(&mut b);
        assert_eq!(lines(&b), vec![&b"fresh"[..]]);

        let mut long = FilterConfig {
            longer_than: Some(5),
            action: FilterAction::Drop,
            ..FilterConfig::default()
        }
        .filter("f")
        .unwrap();
        let mut b = batch(&[b"12345", b"123456"]);
        long.transform(&mut b);
        assert_eq!(lines(&b), vec![&b"12345"[..]]);
    }

    #[test]
    fn matches_labels_and_fields_every_condition_together() {
        let mut filter = FilterConfig {
            labels: BTreeMap::from([("team".into(), ValueMatch::Equals("pay".into()))]),
            fields: BTreeMap::from([("status".into(), ValueMatch::Regex("^5".into()))]),
            ..FilterConfig::default()
        }
        .filter("f")
        .unwrap();
        let mut b = batch(&[b"a", b"b", b"c", b"d"]);
        let pay = Labels::new([("team", "pay")]);
        for (i, (labels, status)) in [
            (pay.clone(), Some("503")),
            (pay.clone(), Some("200")),
            (Labels::new([("team", "web")]), Some("500")),
            (pay, None),
        ]
        .into_iter()
        .enumerate()
        {
            b.events[i].labels = labels;
            if let Some(status) = status {
                b.events[i]
                    .fields
                    .insert("status", Bytes::copy_from_slice(status.as_bytes()));
            }
        }
        filter.transform(&mut b);
        assert_eq!(lines(&b), vec![&b"a"[..]]);
    }

    #[test]
    fn bad_conditions_name_their_keys() {
        let errors = config("(", FilterAction::Keep).validate("transforms.f");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "transforms.f.pattern");

        let errors = FilterConfig::default().validate("transforms.f");
        assert!(errors[0].to_string().contains("no condition"), "{errors:?}");

        let errors = FilterConfig {
            fields: BTreeMap::from([("status".into(), ValueMatch::Regex("[".into()))]),
            older_than: Some(Duration::ZERO),
            ..FilterConfig::default()
        }
        .validate("transforms.f");
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "transforms.f.fields.status.regex",
                "transforms.f.older_than"
            ]
        );
    }
}
