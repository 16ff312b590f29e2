//! The `regex` parser: fields from the named capture groups of a regular expression.
//!
//! Guarantees (besides those of [`super::parse`]):
//! - Each named group that took part in the match becomes a field, a slice of the line (no
//!   copy); groups that did not take part add nothing.
//! - Matching runs on bytes, so lines that are not valid UTF-8 can match too (a class such as
//!   `\S` matches only UTF-8 characters unless Unicode is off for it: `(?-u:\S)`).
//! - A line the expression does not match adds no field and is counted.
//! - The pattern must have at least one named group (checked when the config is validated).

use regex::bytes::Regex;
use serde::{Deserialize, Serialize};

use super::parse;
use crate::component::{
    Component, FunctionTransform, Reconfigurable, Reconfigure, Transform, TransformComponent,
    TransformContext, build_error,
};
use crate::config::{ConfigError, join_path};
use crate::telemetry::{ComponentAttrs, MetricDef};
use crate::{BuildError, EventBatch};

/// Configuration of the `regex` parser.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RegexParserConfig {
    /// A regular expression (Rust `regex` syntax) with named groups: `(?P<status>\d{3})`.
    pub pattern: String,
    /// Parse this field (set by an earlier parser) instead of the line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl RegexParserConfig {
    fn compile(&self, prefix: &str) -> Result<Regex, ConfigError> {
        let at = join_path(prefix, "pattern");
        let regex = Regex::new(&self.pattern).map_err(|err| {
            ConfigError::new(at.clone(), format!("invalid regular expression: {err}"))
        })?;
        if regex.capture_names().flatten().next().is_none() {
            return Err(ConfigError::new(at, "the pattern has no named group")
                .with_hint("name what you want as a field: (?P<status>\\d{3})"));
        }
        Ok(regex)
    }
}

impl Component for RegexParserConfig {
    const TYPE: &'static str = "regex";
    const METRICS: &'static [&'static MetricDef] = parse::METRICS;
    const HOT_RELOADABLE: &'static [&'static str] = &["pattern", "source"];

    fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        self.compile(prefix).err().into_iter().collect()
    }
}

impl TransformComponent for RegexParserConfig {
    fn build(&self, cx: TransformContext<Self>) -> Result<Transform, BuildError> {
        let regex = self
            .compile(&cx.key)
            .map_err(|error| build_error(&cx.key, error))?;
        let parser = RegexParser {
            regex,
            source: self.source.clone(),
            attrs: ComponentAttrs::new(&cx.key),
        };
        Ok(Transform::function(Reconfigurable::new(cx, parser)))
    }
}

/// The running `regex` parser.
#[derive(Debug)]
pub struct RegexParser {
    regex: Regex,
    source: Option<String>,
    attrs: ComponentAttrs,
}

impl Reconfigure<RegexParserConfig> for RegexParser {
    fn reconfigure(&mut self, config: &RegexParserConfig) {
        // A reload is validated before it is applied, so the pattern compiles.
        if let Ok(regex) = config.compile("") {
            self.regex = regex;
        }
        self.source = config.source.clone();
    }
}

impl FunctionTransform for RegexParser {
    fn transform(&mut self, batch: &mut EventBatch) {
        let regex = &self.regex;
        parse::parse_batch(
            batch,
            self.source.as_deref(),
            &self.attrs,
            |line, fields| {
                let Some(captures) = regex.captures(line) else {
                    return false;
                };
                for name in regex.capture_names().flatten() {
                    if let Some(group) = captures.name(name) {
                        fields.insert(name, line.slice(group.range()));
                    }
                }
                true
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::testing::{batch, field};

    fn parser(pattern: &str) -> RegexParser {
        let config = RegexParserConfig {
            pattern: pattern.into(),
            source: None,
        };
        RegexParser {
            regex: config.compile("p").unwrap(),
            source: None,
            attrs: ComponentAttrs::new("p"),
        }
    }

    #[test]
    fn named_groups_become_fields_and_unmatched_lines_pass_unchanged() {
        let mut batch = batch(&[
            b"GET /index.html 200 512",
            b"not a request",
            b"POST /\xff 500 -",
        ]);
        parser(r"^(?P<method>[A-Z]+) (?P<path>(?-u:\S)+) (?P<status>\d{3}) (?:(?P<bytes>\d+)|-)$")
            .transform(&mut batch);
        let [get, other, post] = &batch.events[..] else {
            panic!("three events")
        };
        assert_eq!(field(get, "method"), Some("GET"));
        assert_eq!(field(get, "status"), Some("200"));
        assert_eq!(field(get, "bytes"), Some("512"));
        assert!(other.fields.is_empty());
        assert_eq!(other.line.as_ref(), b"not a request");
        assert_eq!(field(post, "status"), Some("500"));
        assert_eq!(
            post.fields.get("bytes"),
            None,
            "a group that took no part adds nothing"
        );
        assert_eq!(
            post.fields.get("path").map(|p| p.as_ref()),
            Some(&b"/\xff"[..])
        );
    }

    #[test]
    fn a_pattern_without_named_groups_is_refused_with_a_hint() {
        let config = RegexParserConfig {
            pattern: r"\d+".into(),
            source: None,
        };
        let errors = config.validate("transforms.access");
        assert_eq!(errors.len(), 1);
        let text = errors[0].to_string();
        assert!(text.contains("transforms.access.pattern"), "{text}");
        assert!(text.contains("no named group"), "{text}");
    }
}
