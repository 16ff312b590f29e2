//! The `json` parser: fields from a line that is one JSON object.
//!
//! Guarantees (besides those of [`super::parse`]):
//! - Without `fields`, every top-level key becomes a field; with `fields`, only the named
//!   ones, each found by its path (`a.b.c` walks nested objects; a key containing a dot can only
//!   be reached at the top level, by its whole name).
//! - Values as text: strings unescaped, numbers and booleans as JSON writes them, `null` as the
//!   empty string, objects and arrays as their compact JSON.
//! - A line that is not a JSON object (or not valid UTF-8 JSON) adds no field and is counted.
//! - The line is read once and never built into a tree: unwanted values are skipped, wanted
//!   ones are slices of the line (a copy only for a string with escapes). Of a key given twice,
//!   the last value counts.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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
    /// The named fields; empty: every top-level key.
    wanted: Vec<Wanted>,
    /// Scratch for one line's fields, kept between lines.
    found: Found,
    attrs: ComponentAttrs,
}

impl JsonParser {
    pub fn new(config: &JsonParserConfig, key: &str) -> Self {
        let mut parser = Self {
            source: None,
            wanted: Vec::new(),
            found: Vec::new(),
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
                let steps: Vec<String> = path.split('.').map(String::from).collect();
                Wanted {
                    name: Arc::from(name.as_str()),
                    dotted: (steps.len() > 1).then(|| path.clone()),
                    steps,
                }
            })
            .collect();
    }
}

impl FunctionTransform for JsonParser {
    fn transform(&mut self, batch: &mut EventBatch) {
        let (wanted, found) = (&self.wanted, &mut self.found);
        parse::parse_batch(
            batch,
            self.source.as_deref(),
            &self.attrs,
            |bytes, fields| {
                found.clear();
                if extract(bytes, wanted, found).is_err() {
                    return false;
                }
                fields.insert_all(found.drain(..).map(|(name, value, _)| (name, value)));
                true
            },
        );
    }
}

/// One wanted field: its name, the keys leading to it, and (when there are several) those keys
/// joined by dots, which a top-level key of that whole name takes precedence over.
#[derive(Debug)]
struct Wanted {
    name: Arc<str>,
    steps: Vec<String>,
    dotted: Option<String>,
}

/// What one line gave: (field, value, taken from a whole dotted top-level key). Applied to the
/// event only when the whole line parsed.
type Found = Vec<(Arc<str>, Bytes, bool)>;

/// Reads the object in `line` once, without building it: the values of wanted keys are taken
/// as written (slices of `line`, no copy, unless a string has escapes), every other value is
/// skipped. Fails when `line` is not exactly one JSON object; `found` is then to be discarded.
fn extract(line: &Bytes, wanted: &[Wanted], found: &mut Found) -> Result<(), serde_json::Error> {
    let mut reader = serde_json::Deserializer::from_slice(line);
    let level = Level {
        line,
        wanted,
        path: &[],
        found,
    };
    serde::de::DeserializeSeed::deserialize(level, &mut reader)?;
    reader.end()
}

/// One object being read: `path` holds the keys from the top level down to it.
struct Level<'a, 'p> {
    line: &'a Bytes,
    wanted: &'a [Wanted],
    path: &'p [&'p str],
    found: &'a mut Found,
}

impl Level<'_, '_> {
    /// Whether `w`'s path goes through this object's `key`.
    fn passes(&self, w: &Wanted, key: &str) -> bool {
        let depth = self.path.len();
        w.steps.len() > depth
            && w.steps[depth] == key
            && w.steps[..depth].iter().zip(self.path).all(|(a, b)| a == b)
    }

    fn take(&mut self, name: &Arc<str>, value: Bytes, whole: bool) {
        // Named fields are the parser's own `Arc`s, one per name: the pointer tells them apart.
        let named = !self.wanted.is_empty();
        match self
            .found
            .iter_mut()
            .find(|(n, _, _)| Arc::ptr_eq(n, name) || (!named && n == name))
        {
            // A nested path never replaces the whole dotted key of the same name.
            Some((_, _, true)) if !whole => {}
            Some(entry) => *entry = (name.clone(), value, whole),
            None => self.found.push((name.clone(), value, whole)),
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Level<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Level<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(mut self, mut map: M) -> Result<(), M::Error> {
        let top = self.path.is_empty();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if top && self.wanted.is_empty() {
                let raw: &RawValue = map.next_value()?;
                let value = as_text(self.line, raw);
                self.take(&Arc::from(key.as_ref()), value, false);
                continue;
            }
            let mut leads_anywhere = false;
            let mut nested = false;
            for w in self.wanted {
                let whole = top && w.dotted.as_deref() == Some(key.as_ref());
                if whole || self.passes(w, &key) {
                    leads_anywhere = true;
                    nested |= !whole && w.steps.len() > self.path.len() + 1;
                }
            }
            if !leads_anywhere {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            }
            let raw: &RawValue = map.next_value()?;
            for w in self.wanted {
                let whole = top && w.dotted.as_deref() == Some(key.as_ref());
                if whole || (self.passes(w, &key) && w.steps.len() == self.path.len() + 1) {
                    let value = as_text(self.line, raw);
                    self.take(&w.name, value, whole);
                }
            }
            if nested && raw.get().starts_with('{') {
                let mut path: Vec<&str> = self.path.to_vec();
                path.push(&key);
                let below = Level {
                    line: self.line,
                    wanted: self.wanted,
                    path: &path,
                    found: &mut *self.found,
                };
                let mut reader = serde_json::Deserializer::from_str(raw.get());
                serde::de::DeserializeSeed::deserialize(below, &mut reader)
                    .map_err(serde::de::Error::custom)?;
            }
        }
        Ok(())
    }
}

/// An object key, borrowed from the line unless it has escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }

            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(key)))
            }

            fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(key.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A JSON value as a field's text: a string unescaped, `null` empty, an object or array as its
/// compact JSON, a number or boolean as written.
fn as_text(line: &Bytes, raw: &RawValue) -> Bytes {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => {
            let inner = &text[1..text.len() - 1];
            if inner.contains('\\') {
                serde_json::from_str::<String>(text)
                    .map(Bytes::from)
                    .unwrap_or_default()
            } else {
                slice_of(line, inner.as_bytes())
            }
        }
        Some(b'n') => Bytes::new(),
        Some(b'{' | b'[') => serde_json::from_str::<serde_json::Value>(text)
            .map(|value| Bytes::from(value.to_string()))
            .unwrap_or_default(),
        _ => slice_of(line, text.as_bytes()),
    }
}

/// `part` as a slice of `line` when it lies inside it (no copy), else a copy.
fn slice_of(line: &Bytes, part: &[u8]) -> Bytes {
    let range = line.as_ptr_range();
    if range.start <= part.as_ptr() && part.as_ptr_range().end <= range.end {
        line.slice_ref(part)
    } else {
        Bytes::copy_from_slice(part)
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
    fn values_are_slices_of_the_line_escapes_are_read_and_the_last_duplicate_counts() {
        let line =
            br#"{"level":"info","msg":"a \"quoted\" \u00e9","level":"warn","n":1.5e3,"t":true}"#;
        let mut batch = batch(&[line]);
        parser(json!({})).transform(&mut batch);
        let event = &batch.events[0];
        assert_eq!(field(event, "level"), Some("warn"));
        assert_eq!(field(event, "msg"), Some("a \"quoted\" \u{e9}"));
        assert_eq!(field(event, "n"), Some("1.5e3"), "numbers as written");
        assert_eq!(field(event, "t"), Some("true"));
        // No copy: the plain value points into the line.
        let level = event.fields.get("level").unwrap();
        let range = event.line.as_ptr_range();
        assert!(range.contains(&level.as_ptr()));
    }

    #[test]
    fn a_whole_dotted_key_wins_over_the_nested_path_in_either_order() {
        for line in [
            br#"{"a.b":"whole","a":{"b":"nested"}}"#.as_slice(),
            br#"{"a":{"b":"nested"},"a.b":"whole"}"#.as_slice(),
        ] {
            let mut batch = batch(&[line]);
            parser(json!({"fields": {"x": "a.b", "deep": "a.c.d"}})).transform(&mut batch);
            assert_eq!(field(&batch.events[0], "x"), Some("whole"), "{line:?}");
        }
        let mut batch = batch(&[br#"{"a":{"c":{"d":[1, 2]},"b":"nested"},"z":{"a":{"b":1}}}"#]);
        parser(json!({"fields": {"x": "a.b", "deep": "a.c.d"}})).transform(&mut batch);
        assert_eq!(field(&batch.events[0], "x"), Some("nested"));
        assert_eq!(
            field(&batch.events[0], "deep"),
            Some("[1,2]"),
            "compact JSON"
        );
    }

    #[test]
    fn a_line_with_trailing_bytes_or_a_broken_tail_gets_no_field() {
        let lines: [&[u8]; 3] = [
            br#"{"level":"info"} trailing"#,
            br#"{"level":"info","msg":"#,
            br#"{"level":"info","n":01}"#,
        ];
        let mut batch = batch(&lines);
        parser(json!({"fields": {"level": "level"}})).transform(&mut batch);
        for event in &batch.events {
            assert!(event.fields.is_empty(), "{:?}", event.line);
        }
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
