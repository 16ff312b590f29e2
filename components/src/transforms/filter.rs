//! The `filter` transform: keeps or drops events by their line (a regular expression), their
//! age (`older_than`), their length (`longer_than`), and their labels or fields (equal to a
//! value, or matching a regular expression). The matching is [`super::condition`]'s, shared
//! with the `route` transform.
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

use serde::{Deserialize, Serialize};

pub use super::condition::ValueMatch;
use super::condition::{Condition, Matcher};
use crate::component::{
    Component, FunctionTransform, Transform, TransformComponent, TransformContext,
    config_build_error,
};
use crate::config::{ConfigError, duration_opt};
use crate::event::now_ns;
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

/// Configuration of the `filter` transform: the keys of a [`Condition`], and `action`.
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
        self.filter(prefix).err().unwrap_or_default()
    }
}

impl TransformComponent for FilterConfig {
    fn build(&self, cx: TransformContext<Self>) -> Result<Transform, BuildError> {
        self.filter(&cx.key)
            .map(Transform::function)
            .map_err(|errors| config_build_error(&cx.key, errors))
    }
}

impl FilterConfig {
    /// The condition part of the settings (every key but `action`).
    pub fn condition(&self) -> Condition {
        Condition {
            pattern: self.pattern.clone(),
            older_than: self.older_than,
            longer_than: self.longer_than,
            labels: self.labels.clone(),
            fields: self.fields.clone(),
        }
    }

    /// The running filter; `key` is its name (errors are named by their keys under it).
    pub fn filter(&self, key: &str) -> Result<Filter, Vec<ConfigError>> {
        Ok(Filter {
            matcher: self.condition().compile(key)?,
            keep_matches: self.action == FilterAction::Keep,
            attrs: ComponentAttrs::new(key),
        })
    }
}

/// The running `filter` transform.
#[derive(Debug)]
pub struct Filter {
    matcher: Matcher,
    keep_matches: bool,
    attrs: ComponentAttrs,
}

impl FunctionTransform for Filter {
    fn transform(&mut self, batch: &mut EventBatch) {
        let before = batch.len();
        let now = if self.matcher.reads_clock() {
            now_ns()
        } else {
            0
        };
        batch
            .events
            .retain(|event| self.matcher.matches(event, now) == self.keep_matches);
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
