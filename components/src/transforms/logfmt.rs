//! The `logfmt` parser: fields from `key=value key="quoted value"` lines.
//!
//! Guarantees (besides those of [`super::parse`]):
//! - Every `key=value` pair becomes a field (all of them, or those named in `fields`); a quoted
//!   value is unescaped (`\"`, `\\`, `\n`, `\t`, `\r`); a bare key without `=` gets the empty
//!   value, as in Go's logfmt.
//! - A line with no `key=value` pair, or with an unterminated quote, adds no field and is
//!   counted; a parse adds all of a line's fields or none.
//! - Unquoted values are slices of the line (no copy).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::parse;
use crate::component::{
    Component, FunctionTransform, Reconfigurable, Reconfigure, Transform, TransformComponent,
    TransformContext,
};
use crate::telemetry::{ComponentAttrs, MetricDef};
use crate::{BuildError, EventBatch};

/// Configuration of the `logfmt` parser.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogfmtParserConfig {
    /// Parse this field (set by an earlier parser) instead of the line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Keep only these keys. Empty: every key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

impl Component for LogfmtParserConfig {
    const TYPE: &'static str = "logfmt";
    const METRICS: &'static [&'static MetricDef] = parse::METRICS;
    const HOT_RELOADABLE: &'static [&'static str] = &["source", "fields"];
}

impl TransformComponent for LogfmtParserConfig {
    fn build(&self, cx: TransformContext<Self>) -> Result<Transform, BuildError> {
        let parser = LogfmtParser {
            config: self.clone(),
            attrs: ComponentAttrs::new(&cx.key),
            pairs: Vec::new(),
        };
        Ok(Transform::function(Reconfigurable::new(cx, parser)))
    }
}

/// The running `logfmt` parser.
#[derive(Debug)]
pub struct LogfmtParser {
    config: LogfmtParserConfig,
    attrs: ComponentAttrs,
    /// Reused between lines: one line's pairs before they are added.
    pairs: Vec<(Bytes, Bytes)>,
}

impl Reconfigure<LogfmtParserConfig> for LogfmtParser {
    fn reconfigure(&mut self, config: &LogfmtParserConfig) {
        self.config = config.clone();
    }
}

impl FunctionTransform for LogfmtParser {
    fn transform(&mut self, batch: &mut EventBatch) {
        let wanted = &self.config.fields;
        let pairs = &mut self.pairs;
        parse::parse_batch(
            batch,
            self.config.source.as_deref(),
            &self.attrs,
            |line, fields| {
                pairs.clear();
                if !split_pairs(line, pairs) {
                    return false;
                }
                for (key, value) in pairs.drain(..) {
                    let Ok(name) = std::str::from_utf8(&key) else {
                        continue;
                    };
                    if wanted.is_empty() || wanted.iter().any(|w| w == name) {
                        fields.insert(name, value);
                    }
                }
                true
            },
        );
    }
}

/// Splits `line` into its pairs; `false` if it has none with `=` or a quote is not closed.
fn split_pairs(line: &Bytes, pairs: &mut Vec<(Bytes, Bytes)>) -> bool {
    let bytes = line.as_ref();
    let mut at = 0;
    let mut any_value = false;
    while at < bytes.len() {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        let key_start = at;
        while at < bytes.len() && !bytes[at].is_ascii_whitespace() && bytes[at] != b'=' {
            at += 1;
        }
        if at == key_start {
            // A `=` with no key before it: skip it.
            at += 1;
            continue;
        }
        let key = line.slice(key_start..at);
        if at >= bytes.len() || bytes[at] != b'=' {
            pairs.push((key, Bytes::new()));
            continue;
        }
        at += 1;
        any_value = true;
        if bytes.get(at) == Some(&b'"') {
            at += 1;
            let mut value = Vec::new();
            let mut closed = false;
            while at < bytes.len() {
                match bytes[at] {
                    b'"' => {
                        closed = true;
                        at += 1;
                        break;
                    }
                    b'\\' if at + 1 < bytes.len() => {
                        value.push(match bytes[at + 1] {
                            b'n' => b'\n',
                            b't' => b'\t',
                            b'r' => b'\r',
                            other => other,
                        });
                        at += 2;
                    }
                    other => {
                        value.push(other);
                        at += 1;
                    }
                }
            }
            if !closed {
                return false;
            }
            pairs.push((key, Bytes::from(value)));
        } else {
            let value_start = at;
            while at < bytes.len() && !bytes[at].is_ascii_whitespace() {
                at += 1;
            }
            pairs.push((key, line.slice(value_start..at)));
        }
    }
    any_value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::testing::{batch, field};

    fn parse(fields: &[&str], lines: &[&[u8]]) -> EventBatch {
        let config = LogfmtParserConfig {
            source: None,
            fields: fields.iter().map(|f| f.to_string()).collect(),
        };
        let mut parser = LogfmtParser {
            config,
            attrs: ComponentAttrs::new("p"),
            pairs: Vec::new(),
        };
        let mut batch = batch(lines);
        parser.transform(&mut batch);
        batch
    }

    #[test]
    fn pairs_quoted_values_and_bare_keys() {
        let batch = parse(
            &[],
            &[br#"level=info msg="user \"ann\" logged in" took=12ms debug"#],
        );
        let event = &batch.events[0];
        assert_eq!(field(event, "level"), Some("info"));
        assert_eq!(field(event, "msg"), Some(r#"user "ann" logged in"#));
        assert_eq!(field(event, "took"), Some("12ms"));
        assert_eq!(field(event, "debug"), Some(""));
    }

    #[test]
    fn only_the_named_keys_are_kept() {
        let batch = parse(&["level"], &[b"level=warn user=bob"]);
        assert_eq!(field(&batch.events[0], "level"), Some("warn"));
        assert_eq!(field(&batch.events[0], "user"), None);
    }

    #[test]
    fn lines_without_pairs_or_with_an_open_quote_add_nothing() {
        let lines: [&[u8]; 3] = [b"just some words", br#"a=1 msg="never closed"#, b""];
        let batch = parse(&[], &lines);
        for (event, line) in batch.events.iter().zip(lines) {
            assert!(event.fields.is_empty(), "{:?}", event.fields);
            assert_eq!(event.line.as_ref(), line);
        }
    }
}
