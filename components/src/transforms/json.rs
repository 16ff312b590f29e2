//! The `json` parser: fields from a line that is one JSON object.
//!
//! Guarantees (besides those of [`super::parse`]):
//! - Without `fields`, every top-level key becomes a field; with `fields`, only the named
//!   ones, each found by its path (`a.b.c` walks nested objects; a key containing a dot can only
//!   be reached at the top level, by its whole name).
//! - Values as text: strings unescaped, numbers and booleans as JSON writes them, `null` as the
//!   empty string, objects and arrays as their compact JSON.
//! - A line that is not a JSON object (or not valid UTF-8 JSON) adds no field and is counted.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::parse;
use crate::component::{
    Component, FunctionTransform, Reconfigurable, Reconfigure, Transform, TransformComponent,
    TransformContext,
};
use crate::config::{ConfigError, join_path};
use crate::telemetry::{ComponentAttrs, MetricDef};
use crate::{BuildError, EventBatch};

/// Configuration of the `json` parser.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JsonParserConfig {
    /// Parse this field (set by an earlier parser) instead of the line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Field name -> path in the object (`level`, `http.status`). Empty: every top-level key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

impl Component for JsonParserConfig {
    const TYPE: &'static str = "json";
    const METRICS: &'static [&'static MetricDef] = parse::METRICS;
    const HOT_RELOADABLE: &'static [&'static str] = &["source", "fields"];

    fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        self.fields
            .iter()
            .filter(|(_, path)| path.is_empty() || path.split('.').any(str::is_empty))
            .map(|(name, _)| {
                ConfigError::new(
                    join_path(&join_path(prefix, "fields"), name),
                    "the path is empty or has an empty step",
                )
                .with_hint("write the keys joined by dots, e.g. `http.status`")
            })
            .collect()
    }
}

impl TransformComponent for JsonParserConfig {
    fn build(&self, cx: TransformContext<Self>) -> Result<Transform, BuildError> {
        let parser = JsonParser::new(self, &cx.key);
        Ok(Transform::function(Reconfigurable::new(cx, parser)))
    }
}

/// The running `json` parser.
#[derive(Debug)]
pub struct JsonParser {
    source: Option<String>,
    /// (field name, path steps); empty: every top-level key.
    wanted: Vec<(Arc<str>, Vec<String>)>,
    attrs: ComponentAttrs,
}

impl JsonParser {
    pub fn new(config: &JsonParserConfig, key: &str) -> Self {
        let mut parser = Self {
            source: None,
            wanted: Vec::new(),
            attrs: ComponentAttrs::new(key),
        };
        parser.reconfigure(config);
        parser
    }
}

impl Reconfigure<JsonParserConfig> for JsonParser {
    fn reconfigure(&mut self, config: &JsonParserConfig) {
        self.source = config.source.clone();
        self.wanted = config
            .fields
            .iter()
            .map(|(name, path)| {
                (
                    Arc::from(name.as_str()),
                    path.split('.').map(String::from).collect(),
                )
            })
            .collect();
    }
}

impl FunctionTransform for JsonParser {
    fn transform(&mut self, batch: &mut EventBatch) {
        let wanted = &self.wanted;
        parse::parse_batch(
            batch,
            self.source.as_deref(),
            &self.attrs,
            |bytes, fields| {
                let Ok(object) = serde_json::from_slice::<Map<String, Value>>(bytes) else {
                    return false;
                };
                if wanted.is_empty() {
                    for (name, value) in &object {
                        fields.insert(name.as_str(), as_text(value));
                    }
                } else {
                    for (name, path) in wanted {
                        let whole = object.get(path.join(".").as_str());
                        if let Some(value) = whole.or_else(|| lookup(&object, path)) {
                            fields.insert(name.clone(), as_text(value));
                        }
                    }
                }
                true
            },
        );
    }
}

/// The value at `path` under `object`.
fn lookup<'a>(object: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = object.get(first)?;
    for step in rest {
        value = value.as_object()?.get(step)?;
    }
    Some(value)
}

/// A JSON value as a field's text.
fn as_text(value: &Value) -> Bytes {
    match value {
        Value::String(text) => Bytes::copy_from_slice(text.as_bytes()),
        Value::Null => Bytes::new(),
        other => Bytes::from(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::testing::{batch, field};
    use serde_json::json;

    fn parser(config: serde_json::Value) -> JsonParser {
        let config: JsonParserConfig = serde_json::from_value(config).unwrap();
        assert!(config.validate("p").is_empty());
        JsonParser::new(&config, "p")
    }

    #[test]
    fn every_top_level_key_becomes_a_field_as_text() {
        let mut batch =
            batch(&[br#"{"level":"warn","code":503,"ok":false,"gone":null,"req":{"id":7}}"#]);
        parser(json!({})).transform(&mut batch);
        let event = &batch.events[0];
        assert_eq!(field(event, "level"), Some("warn"));
        assert_eq!(field(event, "code"), Some("503"));
        assert_eq!(field(event, "ok"), Some("false"));
        assert_eq!(field(event, "gone"), Some(""));
        assert_eq!(field(event, "req"), Some(r#"{"id":7}"#));
        assert_eq!(
            event.line.as_ref(),
            br#"{"level":"warn","code":503,"ok":false,"gone":null,"req":{"id":7}}"#
        );
    }

    #[test]
    fn named_fields_follow_their_paths_and_missing_ones_are_absent() {
        let mut batch = batch(&[br#"{"http":{"status":"200"},"a.b":"dotted","msg":"x"}"#]);
        parser(json!({"fields": {"status": "http.status", "dotted": "a.b", "nothing": "no.such"}}))
            .transform(&mut batch);
        let event = &batch.events[0];
        assert_eq!(field(event, "status"), Some("200"));
        assert_eq!(field(event, "dotted"), Some("dotted"));
        assert_eq!(field(event, "nothing"), None);
        assert_eq!(field(event, "msg"), None, "only the named fields");
    }

    #[test]
    fn lines_that_are_not_objects_pass_unchanged_without_fields() {
        let lines: [&[u8]; 4] = [b"plain text", b"[1,2]", b"{\"cut\": ", b"\xff\xfe{}"];
        let mut batch = batch(&lines);
        parser(json!({})).transform(&mut batch);
        assert_eq!(batch.events.len(), 4);
        for (event, line) in batch.events.iter().zip(lines) {
            assert!(event.fields.is_empty());
            assert_eq!(event.line.as_ref(), line);
        }
    }

    #[test]
    fn a_field_of_an_earlier_parser_can_be_parsed() {
        let mut batch = batch(&[br#"{"log":"{\"level\":\"error\"}\n","stream":"stdout"}"#]);
        parser(json!({})).transform(&mut batch);
        parser(json!({"source": "log"})).transform(&mut batch);
        assert_eq!(field(&batch.events[0], "level"), Some("error"));
    }

    #[test]
    fn an_empty_path_step_is_a_config_error_naming_the_field() {
        let config: JsonParserConfig =
            serde_json::from_value(json!({"fields": {"s": "http..status"}})).unwrap();
        let errors = config.validate("transforms.p");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].to_string().contains("transforms.p.fields.s"),
            "{}",
            errors[0]
        );
    }
}
