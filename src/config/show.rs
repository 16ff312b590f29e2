//! The configuration as it may be shown (`GET /config`, `validate --print`).
//!
//! Built from the typed configuration only, never from the raw tree: every section and every
//! component with its `type`, `inputs`, a sink's resolved `dispatcher` and `dlq`, and all
//! settings with their defaults. Secrets are [`Secret`](log_capturer_components::secret::Secret)s
//! there, which serialize as `<redacted>` (or their `env` / `file` reference): a value is
//! redacted because of its type, whatever its key is called.

use serde::Serialize;
use serde_json::{Map, Value};

use super::Config;

/// `value` as JSON; `Null` if it cannot be (config structs are plain data, so it always can).
fn json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// A component's settings with the engine's keys put in front of them.
fn component(type_name: &str, settings: Value, engine_keys: Vec<(&str, Value)>) -> Value {
    let mut map = Map::new();
    map.insert("type".to_string(), Value::String(type_name.to_string()));
    for (key, value) in engine_keys {
        map.insert(key.to_string(), value);
    }
    if let Value::Object(settings) = settings {
        map.extend(settings);
    }
    Value::Object(map)
}

impl Config {
    /// The running configuration, typed, secrets redacted.
    pub fn shown(&self) -> Value {
        let root = &self.root;
        let sources: Map<String, Value> = self
            .sources
            .iter()
            .map(|(name, spec)| {
                let config = &spec.config;
                (
                    name.clone(),
                    component(config.type_name(), config.settings(), Vec::new()),
                )
            })
            .collect();
        let transforms: Map<String, Value> = self
            .transforms
            .iter()
            .map(|(name, spec)| {
                let config = &spec.config;
                (
                    name.clone(),
                    component(
                        config.type_name(),
                        config.settings(),
                        vec![("inputs", json(&spec.inputs))],
                    ),
                )
            })
            .collect();
        let sinks: Map<String, Value> = self
            .sinks
            .iter()
            .map(|(name, spec)| {
                let config = &spec.config;
                (
                    name.clone(),
                    component(
                        config.type_name(),
                        config.settings(),
                        vec![
                            ("inputs", json(&spec.inputs)),
                            ("dispatcher", json(&spec.dispatcher)),
                            ("dlq", json(&spec.dlq)),
                        ],
                    ),
                )
            })
            .collect();
        let mut shown = Map::new();
        shown.insert("data_dir".into(), json(&root.data_dir));
        shown.insert("api".into(), json(&root.api));
        shown.insert("log".into(), json(&root.log));
        shown.insert("telemetry".into(), json(&root.telemetry));
        shown.insert(
            "shutdown_timeout".into(),
            Value::String(humantime::format_duration(root.shutdown_timeout).to_string()),
        );
        shown.insert("dispatcher".into(), json(&root.dispatcher));
        shown.insert("sources".into(), Value::Object(sources));
        shown.insert("transforms".into(), Value::Object(transforms));
        shown.insert("sinks".into(), Value::Object(sinks));
        Value::Object(shown)
    }
}
