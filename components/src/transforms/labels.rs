//! The `labels` stage: declarative stream labels, in this order: `static` labels, labels from
//! the named groups of `from_path` (a regex on the file path), labels from parsed fields
//! (`from_fields`), then `rename`, then `drop`; `metadata` moves fields into Loki structured
//! metadata (not part of the stream's identity).
//!
//! Guarantees:
//! - Names follow Loki's syntax (`[a-zA-Z_][a-zA-Z0-9_]*`, not `__`-prefixed, at most 1024 bytes)
//!   and static values are non-empty and at most 2048 bytes: checked when the config is validated,
//!   each error naming its key. At most 15 labels can come from one stage.
//! - At run time a value from a field or the path that Loki would refuse (not UTF-8, over 2048
//!   bytes) is not set, and is counted in `label_errors_total{component,reason}`; an empty value
//!   sets no label (Loki drops empty labels). A label past the 15th is not set either (counted,
//!   `too_many_labels`). The event itself is never dropped.
//! - Label sets are shared: events with the same input labels, file and field values get one
//!   label set (a cache of recent combinations), so a batch of one stream allocates once.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use opentelemetry::KeyValue;
use regex::Regex;
use schnellru::{ByLength, LruMap};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use xxhash_rust::xxh3::xxh3_64;

use crate::component::{
    Component, FunctionTransform, Reconfigurable, Reconfigure, Transform, TransformComponent,
    TransformContext, config_build_error,
};
use crate::config::{ConfigError, join_path, valid_label_name};
use crate::event::{Label, Labels, LogEvent};
use crate::telemetry::{ComponentAttrs, Counter, MetricDef};
use crate::{BuildError, EventBatch};

/// Loki's default `max_label_names_per_series`.
pub const MAX_LABELS: usize = 15;
/// Loki's default `max_label_name_length`.
pub const MAX_NAME_BYTES: usize = 1024;
/// Loki's default `max_label_value_length`.
pub const MAX_VALUE_BYTES: usize = 2048;
/// Label combinations remembered.
const CACHE_ENTRIES: u32 = 1024;

static LABEL_ERRORS: Counter = Counter::new(
    "label_errors",
    "Labels a labels stage did not set because Loki would refuse them (invalid_utf8, \
     value_too_long, too_many_labels); the events go on without them.",
    &["component", "reason"],
);

/// Every metric of the labels stage.
pub static METRICS: &[&MetricDef] = &[&LABEL_ERRORS.def];

/// Configuration of the `labels` stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelsConfig {
    /// Labels set on every event.
    #[serde(rename = "static", skip_serializing_if = "BTreeMap::is_empty")]
    pub static_labels: BTreeMap<String, String>,
    /// A regular expression on the file path whose named groups become labels, e.g.
    /// `/var/log/(?P<app>[^/]+)/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_path: Option<String>,
    /// Label name -> field name (set by a parser).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub from_fields: BTreeMap<String, String>,
    /// Old label name -> new label name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
    /// Labels removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
    /// Fields sent as structured metadata (same name).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<String>,
}

impl Component for LabelsConfig {
    const TYPE: &'static str = "labels";
    const METRICS: &'static [&'static MetricDef] = METRICS;
    const HOT_RELOADABLE: &'static [&'static str] = &[
        "static",
        "from_path",
        "from_fields",
        "rename",
        "drop",
        "metadata",
    ];

    fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        self.compile(prefix).err().unwrap_or_default()
    }
}

impl TransformComponent for LabelsConfig {
    fn build(&self, cx: TransformContext<Self>) -> Result<Transform, BuildError> {
        let rules = self
            .compile(&cx.key)
            .map_err(|errors| config_build_error(&cx.key, errors))?;
        let stage = LabelsStage::new(rules, &cx.key);
        Ok(Transform::function(Reconfigurable::new(cx, stage)))
    }
}

fn name_error(key: String, name: &str) -> Option<ConfigError> {
    let message = if !valid_label_name(name) {
        "is not a label name Loki accepts"
    } else if name.starts_with("__") {
        "names starting with __ are reserved by Loki"
    } else if name.len() > MAX_NAME_BYTES {
        "is longer than Loki's 1024 bytes"
    } else {
        return None;
    };
    Some(
        ConfigError::new(key, format!("{name:?} {message}"))
            .with_hint("letters, digits and _, not starting with a digit or __"),
    )
}

/// The rules, checked and compiled.
#[derive(Clone, Debug)]
struct Rules {
    static_labels: Vec<Label>,
    from_path: Option<Regex>,
    from_fields: Vec<(Arc<str>, String)>,
    rename: Vec<(String, Arc<str>)>,
    drop: Vec<String>,
    metadata: Vec<Arc<str>>,
}

impl LabelsConfig {
    fn compile(&self, prefix: &str) -> Result<Rules, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let at = |key: &str, name: &str| join_path(&join_path(prefix, key), name);
        for (name, value) in &self.static_labels {
            errors.extend(name_error(at("static", name), name));
            if value.is_empty() || value.len() > MAX_VALUE_BYTES {
                errors.push(
                    ConfigError::new(at("static", name), "the value must be 1 to 2048 bytes")
                        .with_hint("Loki drops empty labels and refuses longer values"),
                );
            }
        }
        for name in self.from_fields.keys() {
            errors.extend(name_error(at("from_fields", name), name));
        }
        for (old, new) in &self.rename {
            errors.extend(name_error(at("rename", old), new));
        }
        let from_path = match &self.from_path {
            None => None,
            Some(pattern) => match Regex::new(pattern) {
                Ok(regex) => {
                    for name in regex.capture_names().flatten() {
                        errors.extend(name_error(join_path(prefix, "from_path"), name));
                    }
                    if regex.capture_names().flatten().next().is_none() {
                        errors.push(
                            ConfigError::new(join_path(prefix, "from_path"), "no named group")
                                .with_hint("name each label: /var/log/(?P<app>[^/]+)/"),
                        );
                    }
                    Some(regex)
                }
                Err(err) => {
                    errors.push(ConfigError::new(
                        join_path(prefix, "from_path"),
                        format!("invalid regular expression: {err}"),
                    ));
                    None
                }
            },
        };
        let path_labels = from_path
            .as_ref()
            .map_or(0, |r| r.capture_names().flatten().count());
        let total = self.static_labels.len() + self.from_fields.len() + path_labels;
        if total > MAX_LABELS {
            errors.push(
                ConfigError::new(
                    prefix.to_string(),
                    format!("sets {total} labels; Loki accepts at most {MAX_LABELS} per stream"),
                )
                .with_hint("move high-cardinality values to `metadata`"),
            );
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let arc = |s: &String| Arc::<str>::from(s.as_str());
        Ok(Rules {
            static_labels: self
                .static_labels
                .iter()
                .map(|(n, v)| (arc(n), arc(v)))
                .collect(),
            from_path,
            from_fields: self
                .from_fields
                .iter()
                .map(|(label, field)| (arc(label), field.clone()))
                .collect(),
            rename: self
                .rename
                .iter()
                .map(|(old, new)| (old.clone(), arc(new)))
                .collect(),
            drop: self.drop.clone(),
            metadata: self.metadata.iter().map(arc).collect(),
        })
    }
}

/// A remembered combination: what went in, and the label set that came out.
struct Cached {
    labels: Labels,
    file: Option<Arc<str>>,
    values: Vec<Option<Bytes>>,
    out: Labels,
}

/// The running `labels` stage.
pub struct LabelsStage {
    rules: Rules,
    attrs: ComponentAttrs,
    /// Keyed by a hash of the input labels' and file's identities and the field values; the
    /// entry keeps the inputs alive, so an identity cannot be reused while it is cached.
    cache: LruMap<u64, Cached, ByLength, std::hash::RandomState>,
    values: Vec<Option<Bytes>>,
    errors: BTreeMap<&'static str, u64>,
}

impl std::fmt::Debug for LabelsStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelsStage")
            .field("rules", &self.rules)
            .finish()
    }
}

impl LabelsStage {
    fn new(rules: Rules, key: &str) -> Self {
        Self {
            rules,
            attrs: ComponentAttrs::new(key),
            cache: LruMap::with_hasher(ByLength::new(CACHE_ENTRIES), std::hash::RandomState::new()),
            values: Vec::new(),
            errors: BTreeMap::new(),
        }
    }

    /// The event's new labels, from the cache or built. A hit reads the field values where
    /// they are: only a miss copies them (a reference count each) into the cache.
    fn relabel(&mut self, event: &LogEvent) -> Labels {
        let values: SmallVec<[Option<&Bytes>; 8]> = self
            .rules
            .from_fields
            .iter()
            .map(|(_, field)| event.fields.get(field))
            .collect();
        // One-shot hash of a small key written out on the stack: a streaming `Xxh3` would
        // initialise its state (a copy of the secret and a buffer) for every event.
        let mut key_bytes: SmallVec<[u8; 128]> = SmallVec::new();
        key_bytes.extend_from_slice(&event.labels.identity().to_le_bytes());
        let file_id = event
            .file
            .as_ref()
            .map_or(0, |f| Arc::as_ptr(f) as *const u8 as usize);
        key_bytes.extend_from_slice(&file_id.to_le_bytes());
        for value in &values {
            match value {
                Some(bytes) => {
                    key_bytes.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                    key_bytes.extend_from_slice(bytes);
                }
                None => key_bytes.extend_from_slice(&[0xff; 8]),
            }
        }
        let key = xxh3_64(&key_bytes);
        if let Some(hit) = self.cache.get(&key)
            && hit.labels == event.labels
            && hit.file == event.file
            && hit
                .values
                .iter()
                .map(Option::as_ref)
                .eq(values.iter().copied())
        {
            return hit.out.clone();
        }
        self.values.clear();
        self.values.extend(values.iter().map(|v| v.cloned()));
        let out = self.build(event);
        self.cache.insert(
            key,
            Cached {
                labels: event.labels.clone(),
                file: event.file.clone(),
                values: self.values.clone(),
                out: out.clone(),
            },
        );
        out
    }

    fn build(&mut self, event: &LogEvent) -> Labels {
        let mut labels: BTreeMap<Arc<str>, Arc<str>> = event
            .labels
            .iter()
            .map(|(n, v)| (Arc::from(n), Arc::from(v)))
            .collect();
        let mut added = 0usize;
        let mut set = |labels: &mut BTreeMap<Arc<str>, Arc<str>>,
                       errors: &mut BTreeMap<&'static str, u64>,
                       name: &Arc<str>,
                       value: &[u8]| {
            if value.is_empty() {
                return;
            }
            let reason = match std::str::from_utf8(value) {
                Err(_) => Some("invalid_utf8"),
                Ok(_) if value.len() > MAX_VALUE_BYTES => Some("value_too_long"),
                Ok(_) if added >= MAX_LABELS => Some("too_many_labels"),
                Ok(text) => {
                    added += 1;
                    labels.insert(name.clone(), Arc::from(text));
                    None
                }
            };
            if let Some(reason) = reason {
                *errors.entry(reason).or_default() += 1;
            }
        };
        for (name, value) in &self.rules.static_labels {
            set(&mut labels, &mut self.errors, name, value.as_bytes());
        }
        if let (Some(regex), Some(path)) = (&self.rules.from_path, &event.file)
            && let Some(captures) = regex.captures(path)
        {
            for name in regex.capture_names().flatten() {
                if let Some(group) = captures.name(name) {
                    set(
                        &mut labels,
                        &mut self.errors,
                        &Arc::from(name),
                        group.as_str().as_bytes(),
                    );
                }
            }
        }
        for ((name, _), value) in self.rules.from_fields.iter().zip(&self.values) {
            if let Some(value) = value {
                set(&mut labels, &mut self.errors, name, value);
            }
        }
        for (old, new) in &self.rules.rename {
            if let Some(value) = labels.remove(old.as_str()) {
                labels.insert(new.clone(), value);
            }
        }
        for name in &self.rules.drop {
            labels.remove(name.as_str());
        }
        Labels::new(labels)
    }
}

impl Reconfigure<LabelsConfig> for LabelsStage {
    fn reconfigure(&mut self, config: &LabelsConfig) {
        // A reload is validated before it is applied.
        if let Ok(rules) = config.compile("") {
            self.rules = rules;
            self.cache.clear();
        }
    }
}

impl FunctionTransform for LabelsStage {
    fn transform(&mut self, batch: &mut EventBatch) {
        let mut events = std::mem::take(&mut batch.events);
        for event in &mut events {
            event.labels = self.relabel(event);
            for name in &self.rules.metadata {
                let Some(value) = event.fields.get(name) else {
                    continue;
                };
                match std::str::from_utf8(value) {
                    Ok(text) => event.metadata.push((name.clone(), Arc::from(text))),
                    Err(_) => *self.errors.entry("invalid_utf8").or_default() += 1,
                }
            }
        }
        batch.events = events;
        for (reason, n) in std::mem::take(&mut self.errors) {
            let mut attrs = self.attrs.component.to_vec();
            attrs.push(KeyValue::new("reason", reason));
            LABEL_ERRORS.add(n, &attrs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::testing::batch;
    use serde_json::json;

    fn stage(config: serde_json::Value) -> LabelsStage {
        let config: LabelsConfig = serde_json::from_value(config).unwrap();
        LabelsStage::new(config.compile("l").unwrap(), "l")
    }

    fn labels(event: &LogEvent) -> Vec<(String, String)> {
        event
            .labels
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn static_path_and_field_labels_then_rename_and_drop() {
        let mut batch = batch(&[b"a", b"b"]);
        for (event, level) in batch.events.iter_mut().zip(["warn", "info"]) {
            event.labels = Labels::new([("host", "h1"), ("tmp", "x")]);
            event.file = Some("/var/log/shop/app.log".into());
            event
                .fields
                .insert("level", Bytes::copy_from_slice(level.as_bytes()));
            event.fields.insert("trace", Bytes::from_static(b"abc"));
        }
        stage(json!({
            "static": {"env": "prod"},
            "from_path": "/var/log/(?P<app>[^/]+)/",
            "from_fields": {"level": "level"},
            "rename": {"host": "hostname"},
            "drop": ["tmp"],
            "metadata": ["trace"],
        }))
        .transform(&mut batch);
        let expected = |level| {
            pairs(&[
                ("app", "shop"),
                ("env", "prod"),
                ("hostname", "h1"),
                ("level", level),
            ])
        };
        assert_eq!(labels(&batch.events[0]), expected("warn"));
        assert_eq!(labels(&batch.events[1]), expected("info"));
        assert_eq!(
            batch.events[0].metadata,
            vec![("trace".into(), "abc".into())]
        );
    }

    #[test]
    fn events_of_one_combination_share_one_label_set() {
        let mut batch = batch(&[b"a", b"b", b"c"]);
        for event in &mut batch.events {
            event.fields.insert("level", Bytes::from_static(b"info"));
        }
        stage(json!({"from_fields": {"level": "level"}})).transform(&mut batch);
        let ids: Vec<usize> = batch.events.iter().map(|e| e.labels.identity()).collect();
        assert_eq!(ids[0], ids[1]);
        assert_eq!(ids[1], ids[2]);
    }

    #[test]
    fn interleaved_and_missing_values_each_get_their_own_cached_label_set() {
        let levels = [
            Some("warn"),
            Some("info"),
            Some("warn"),
            None,
            Some("info"),
            None,
        ];
        let mut batch = batch(&[b"a".as_slice(); 6]);
        for (event, level) in batch.events.iter_mut().zip(levels) {
            if let Some(level) = level {
                let value = Bytes::copy_from_slice(level.as_bytes());
                event.fields.insert("level", value);
            }
        }
        let mut stage = stage(json!({"static": {"job": "j"}, "from_fields": {"level": "level"}}));
        stage.transform(&mut batch);
        for (event, level) in batch.events.iter().zip(levels) {
            let mut want = vec![("job", "j")];
            want.extend(level.map(|level| ("level", level)));
            assert_eq!(labels(event), pairs(&want));
        }
        let id = |i: usize| batch.events[i].labels.identity();
        assert_eq!((id(0), id(1), id(3)), (id(2), id(4), id(5)));
        assert_ne!(id(0), id(1));
    }

    #[test]
    fn values_loki_would_refuse_are_not_set_and_the_event_goes_on() {
        let mut batch = batch(&[b"a", b"b", b"c"]);
        batch.events[0]
            .fields
            .insert("v", Bytes::from_static(b"\xff\xfe"));
        batch.events[1]
            .fields
            .insert("v", Bytes::from(vec![b'x'; 3000]));
        batch.events[2].fields.insert("v", Bytes::new());
        stage(json!({"from_fields": {"value": "v"}})).transform(&mut batch);
        assert_eq!(batch.events.len(), 3);
        assert!(batch.events.iter().all(|e| e.labels.get("value").is_none()));
    }

    #[test]
    fn bad_names_values_and_counts_are_config_errors_naming_the_key() {
        let config: LabelsConfig = serde_json::from_value(json!({
            "static": {"9lives": "x", "empty": ""},
            "from_fields": {"__meta": "m"},
            "rename": {"a": "b-c"},
        }))
        .unwrap();
        let errors: Vec<String> = config
            .validate("transforms.l")
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("transforms.l.static.9lives")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("transforms.l.static.empty")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("transforms.l.from_fields.__meta")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("transforms.l.rename.a")),
            "{errors:?}"
        );

        let many: BTreeMap<String, String> = (0..16)
            .map(|i| (format!("l{i}"), "v".to_string()))
            .collect();
        let config = LabelsConfig {
            static_labels: many,
            ..Default::default()
        };
        let errors = config.validate("transforms.l");
        assert!(
            errors[0].to_string().contains("at most 15"),
            "{}",
            errors[0]
        );
    }
}
