//! The `filter` transform: keeps or drops lines that match a regular expression.
//!
//! Matching runs on the raw line bytes, so lines that are not valid UTF-8 are matched too.
//! Dropped lines are counted in `dropped_total{reason="filtered"}` and acknowledged as handled.

use regex::bytes::Regex;
use serde::{Deserialize, Serialize};

use crate::component::{
    Component, FunctionTransform, Transform, TransformComponent, TransformContext, build_error,
};
use crate::config::{ConfigError, join_path};
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

/// Configuration of the `filter` transform.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilterConfig {
    /// A regular expression (Rust `regex` syntax) searched for anywhere in the line. Required.
    pub pattern: String,
    /// `keep` (default) or `drop` the matching lines.
    #[serde(default)]
    pub action: FilterAction,
}

impl Component for FilterConfig {
    const TYPE: &'static str = "filter";

    fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        match Regex::new(&self.pattern) {
            Ok(_) => Vec::new(),
            Err(err) => vec![ConfigError::new(
                join_path(prefix, "pattern"),
                format!("invalid regular expression: {err}"),
            )],
        }
    }
}

impl TransformComponent for FilterConfig {
    fn build(&self, cx: TransformContext<Self>) -> Result<Transform, BuildError> {
        self.filter(&cx.key)
            .map(Transform::function)
            .map_err(|error| build_error(&cx.key, error))
    }
}

impl FilterConfig {
    /// The running filter.
    pub fn filter(&self, key: &str) -> Result<Filter, ConfigError> {
        let regex = Regex::new(&self.pattern).map_err(|err| {
            ConfigError::new(
                join_path(key, "pattern"),
                format!("invalid regular expression: {err}"),
            )
        })?;
        Ok(Filter {
            regex,
            keep_matches: self.action == FilterAction::Keep,
            attrs: ComponentAttrs::new(key),
        })
    }
}

/// The running `filter` transform.
#[derive(Debug)]
pub struct Filter {
    regex: Regex,
    keep_matches: bool,
    attrs: ComponentAttrs,
}

impl FunctionTransform for Filter {
    fn transform(&mut self, batch: &mut EventBatch) {
        let before = batch.len();
        batch
            .events
            .retain(|event| self.regex.is_match(&event.line) == self.keep_matches);
        let dropped = before - batch.len();
        if dropped > 0 {
            self.attrs.dropped(dropped, "filtered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::Finalizers;
    use crate::event::{Labels, LogEvent};
    use bytes::Bytes;

    fn batch(lines: &[&[u8]]) -> EventBatch {
        EventBatch::new(
            lines
                .iter()
                .map(|l| LogEvent {
                    timestamp_ns: 0,
                    observed_ns: 0,
                    line: Bytes::copy_from_slice(l),
                    labels: Labels::default(),
                    metadata: Vec::new(),
                    source: "s".into(),
                    file: None,
                    replays: 0,
                    fields: Default::default(),
                })
                .collect(),
            Finalizers::default(),
        )
    }

    fn lines(batch: &EventBatch) -> Vec<&[u8]> {
        batch.events.iter().map(|e| &e.line[..]).collect()
    }

    #[test]
    fn keeps_or_drops_matches_including_invalid_utf8() {
        let input: &[&[u8]] = &[b"ERROR disk", b"info ok", b"ERROR \xff\xfe bad bytes"];
        let mut keep = FilterConfig {
            pattern: "^ERROR".into(),
            action: FilterAction::Keep,
        }
        .filter("f")
        .unwrap();
        let mut b = batch(input);
        keep.transform(&mut b);
        assert_eq!(
            lines(&b),
            vec![&b"ERROR disk"[..], &b"ERROR \xff\xfe bad bytes"[..]]
        );

        let mut drop = FilterConfig {
            pattern: "^ERROR".into(),
            action: FilterAction::Drop,
        }
        .filter("f")
        .unwrap();
        let mut b = batch(input);
        drop.transform(&mut b);
        assert_eq!(lines(&b), vec![&b"info ok"[..]]);
    }

    #[test]
    fn invalid_pattern_names_the_key() {
        let errors = FilterConfig {
            pattern: "(".into(),
            action: FilterAction::Keep,
        }
        .validate("transforms.f");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "transforms.f.pattern");
    }
}
