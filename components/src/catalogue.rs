//! The catalogue: which `type` names exist, their typed configurations, and how to build them.
//!
//! Adding a component means: a config struct with doc comments and defaults, a variant here, and
//! a line in docs/configuration.md (a test checks that every type here is documented).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{ConfigError, ConfigWarning, parse_validated};
use crate::dispatcher::SinkService;
use crate::sinks::blackhole::{Blackhole, BlackholeConfig};
use crate::sinks::console::ConsoleConfig;
use crate::sinks::file::FileSinkConfig;
use crate::sinks::loki::LokiSinkConfig;
use crate::sources::file::FileSourceConfig;
use crate::sources::generator::GeneratorConfig;
use crate::transforms::dedup::DedupConfig;
use crate::transforms::filter::FilterConfig;
use crate::transforms::{Passthrough, PassthroughConfig};
use crate::{BuildError, EventStream, FunctionTransform, SourceContext};

/// Source type names.
pub const SOURCE_TYPES: &[&str] = &["generator", "file"];
/// Transform type names.
pub const TRANSFORM_TYPES: &[&str] = &["filter", "dedup", "passthrough"];
/// Sink type names.
pub const SINK_TYPES: &[&str] = &["loki", "file", "console", "blackhole"];

/// A source's typed configuration.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceConfig {
    Generator(GeneratorConfig),
    File(FileSourceConfig),
}

/// A transform's typed configuration.
#[derive(Clone, Debug, PartialEq)]
pub enum TransformConfig {
    Filter(FilterConfig),
    Dedup(DedupConfig),
    Passthrough(PassthroughConfig),
}

impl TransformConfig {
    /// The keys of a transform of type `type_name` that a reload applies live (the others need
    /// a restart).
    pub fn hot_reloadable(type_name: &str) -> &'static [&'static str] {
        match type_name {
            "dedup" => DedupConfig::HOT_RELOADABLE,
            _ => &[],
        }
    }
}

/// A sink's typed configuration.
#[derive(Clone, Debug, PartialEq)]
pub enum SinkConfig {
    Loki(Box<LokiSinkConfig>),
    File(FileSinkConfig),
    Console(ConsoleConfig),
    Blackhole(BlackholeConfig),
}

fn unknown_type(prefix: &str, kind: &str, type_name: &str, known: &[&str]) -> Vec<ConfigError> {
    let error = ConfigError::new(
        crate::config::join_path(prefix, "type"),
        format!("unknown {kind} type `{type_name}`"),
    );
    let error = match crate::config::did_you_mean(type_name, known) {
        Some(best) => error.with_hint(format!("did you mean `{best}`?")),
        None => error.with_hint(format!("{kind} types: {}", known.join(", "))),
    };
    vec![error]
}

impl SourceConfig {
    /// Parses the options of a source of type `type_name` (without `type`).
    pub fn parse(
        prefix: &str,
        type_name: &str,
        value: serde_json::Value,
    ) -> Result<Self, Vec<ConfigError>> {
        match type_name {
            "generator" => {
                parse_validated(prefix, value, GeneratorConfig::validate).map(Self::Generator)
            }
            "file" => parse_validated(prefix, value, FileSourceConfig::validate).map(Self::File),
            other => Err(unknown_type(prefix, "source", other, SOURCE_TYPES)),
        }
    }

    pub fn build(&self, cx: SourceContext) -> Result<EventStream, BuildError> {
        match self {
            Self::Generator(config) => Ok(config.build(cx)),
            Self::File(config) => config.build(cx),
        }
    }

    /// The `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Generator(_) => "generator",
            Self::File(_) => "file",
        }
    }

    /// Every setting, defaults included, as it would be written (secrets redacted).
    pub fn settings(&self) -> serde_json::Value {
        match self {
            Self::Generator(config) => settings(config),
            Self::File(config) => settings(config),
        }
    }

    /// The labels every event of this source carries, whatever it reads (labels with empty
    /// values are left out: Loki drops them). Labels a source sets per event only sometimes
    /// are not listed.
    pub fn static_labels(&self) -> BTreeMap<String, String> {
        let labels = match self {
            Self::Generator(config) => &config.labels,
            Self::File(config) => &config.labels,
        };
        labels
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    }

    /// Whether every event of this source names the file it came from (`{{ file }}`).
    pub fn sets_file(&self) -> bool {
        matches!(self, Self::File(_))
    }

    /// Problems that do not stop the start (printed by `validate`, logged by `run`).
    pub fn warnings(&self, prefix: &str) -> Vec<ConfigWarning> {
        match self {
            Self::Generator(_) => Vec::new(),
            Self::File(config) => config.warnings(prefix),
        }
    }
}

/// A config struct as a JSON value; `Null` if it cannot be (it always can: plain data).
fn settings<T: Serialize>(config: &T) -> serde_json::Value {
    serde_json::to_value(config).unwrap_or(serde_json::Value::Null)
}

impl TransformConfig {
    /// Parses the options of a transform of type `type_name` (without `type` and `inputs`).
    pub fn parse(
        prefix: &str,
        type_name: &str,
        value: serde_json::Value,
    ) -> Result<Self, Vec<ConfigError>> {
        match type_name {
            "filter" => parse_validated(prefix, value, FilterConfig::validate).map(Self::Filter),
            "dedup" => parse_validated(prefix, value, DedupConfig::validate).map(Self::Dedup),
            "passthrough" => parse_validated(prefix, value, |_: &PassthroughConfig, _| Vec::new())
                .map(Self::Passthrough),
            other => Err(unknown_type(prefix, "transform", other, TRANSFORM_TYPES)),
        }
    }

    pub fn build(&self, key: &str) -> Result<Box<dyn FunctionTransform>, BuildError> {
        match self {
            Self::Filter(config) => config
                .build(key)
                .map(|f| Box::new(f) as Box<dyn FunctionTransform>)
                .map_err(|err| BuildError {
                    component: key.to_string(),
                    message: err.to_string(),
                }),
            Self::Dedup(config) => config
                .build(key)
                .map(|d| Box::new(d) as Box<dyn FunctionTransform>)
                .map_err(|err| BuildError {
                    component: key.to_string(),
                    message: err.to_string(),
                }),
            Self::Passthrough(_) => Ok(Box::new(Passthrough)),
        }
    }

    /// The `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Filter(_) => "filter",
            Self::Dedup(_) => "dedup",
            Self::Passthrough(_) => "passthrough",
        }
    }

    /// Every setting, defaults included, as it would be written.
    pub fn settings(&self) -> serde_json::Value {
        match self {
            Self::Filter(config) => settings(config),
            Self::Dedup(config) => settings(config),
            Self::Passthrough(config) => settings(config),
        }
    }

    /// Labels this transform sets on every event it passes on (none of today's transforms
    /// changes labels).
    pub fn added_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
}

impl SinkConfig {
    /// Parses the options of a sink of type `type_name` (without `type`, `inputs`, `dispatcher`).
    pub fn parse(
        prefix: &str,
        type_name: &str,
        value: serde_json::Value,
    ) -> Result<Self, Vec<ConfigError>> {
        match type_name {
            "loki" => parse_validated(prefix, value, LokiSinkConfig::validate)
                .map(|c| Self::Loki(Box::new(c))),
            "file" => parse_validated(prefix, value, FileSinkConfig::validate).map(Self::File),
            "console" => {
                parse_validated(prefix, value, |_: &ConsoleConfig, _| Vec::new()).map(Self::Console)
            }
            "blackhole" => parse_validated(prefix, value, |_: &BlackholeConfig, _| Vec::new())
                .map(Self::Blackhole),
            other => Err(unknown_type(prefix, "sink", other, SINK_TYPES)),
        }
    }

    /// The tenant the sink writes for, recorded with dead-letter records.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Self::Loki(config) => config.tenant_id.as_deref(),
            _ => None,
        }
    }

    pub fn build(&self, key: &str) -> Result<Arc<dyn SinkService>, BuildError> {
        match self {
            Self::Loki(config) => {
                let sink = Arc::new(config.build(key).map_err(|message| BuildError {
                    component: key.to_string(),
                    message,
                })?);
                if config.healthcheck {
                    let check = sink.clone();
                    tokio::spawn(async move { check.healthcheck().await });
                }
                Ok(sink)
            }
            Self::File(config) => config
                .build()
                .map(|s| Arc::new(s) as Arc<dyn SinkService>)
                .map_err(|message| BuildError {
                    component: key.to_string(),
                    message,
                }),
            Self::Console(config) => Ok(Arc::new(config.build())),
            Self::Blackhole(_) => Ok(Arc::new(Blackhole)),
        }
    }

    /// The `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Loki(_) => "loki",
            Self::File(_) => "file",
            Self::Console(_) => "console",
            Self::Blackhole(_) => "blackhole",
        }
    }

    /// Every setting, defaults included, as it would be written (secrets redacted).
    pub fn settings(&self) -> serde_json::Value {
        match self {
            Self::Loki(config) => settings(config),
            Self::File(config) => settings(config),
            Self::Console(config) => settings(config),
            Self::Blackhole(config) => settings(config),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_type_suggests_the_closest() {
        let errors = SinkConfig::parse("sinks.out", "fiel", json!({})).unwrap_err();
        assert_eq!(errors[0].path, "sinks.out.type");
        assert!(errors[0].to_string().contains("`file`"), "{}", errors[0]);
    }

    #[test]
    fn sources_report_their_static_labels_and_settings() {
        let source = SourceConfig::parse(
            "sources.gen",
            "generator",
            json!({"labels": {"job": "x", "empty": ""}}),
        )
        .unwrap();
        assert_eq!(source.type_name(), "generator");
        assert_eq!(
            source.static_labels(),
            BTreeMap::from([("job".to_string(), "x".to_string())])
        );
        assert!(!source.sets_file());
        // Every setting, defaults included.
        assert_eq!(source.settings()["rate"], 10);
        let files =
            SourceConfig::parse("sources.f", "file", json!({"include": ["/var/log/*.log"]}))
                .unwrap();
        assert!(files.sets_file() && files.static_labels().is_empty());
    }

    #[test]
    fn missing_required_field_is_reported() {
        let errors = SinkConfig::parse("sinks.out", "file", json!({})).unwrap_err();
        assert!(
            errors[0].to_string().contains("missing field `path`"),
            "{}",
            errors[0]
        );
    }
}
