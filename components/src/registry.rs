//! The registry: every component type there is, one line each, and the type-erased
//! configurations the engine handles.
//!
//! Adding a component means one module (its configuration type implements
//! [`SourceComponent`], [`TransformComponent`] or [`SinkComponent`]) and one line in
//! [`SOURCES`], [`TRANSFORMS`] or [`SINKS`]; the type lists, parsing, checks, building and
//! live keys all come from that line. docs/configuration.md is checked against these lists.
//!
//! Guarantees:
//! - A configuration is parsed strictly (unknown keys are errors with a did-you-mean) and
//!   validated by its own type before it is accepted; an unknown `type` names the closest one.
//! - Live settings reach a running transform only as its own configuration type: the sender a
//!   transform is built with takes only configurations of that type (a reload never changes a
//!   component's type while it runs).

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;

use crate::component::{
    Component, SinkComponent, SinkContext, SourceComponent, Transform, TransformComponent,
    TransformContext,
};
use crate::config::{ConfigError, ConfigWarning, did_you_mean, join_path, parse_validated};
use crate::dispatcher::SinkService;
use crate::telemetry::MetricDef;
use crate::{BuildError, EventStream, SourceContext};

/// One registered component type.
pub struct Registration<C> {
    pub type_name: &'static str,
    /// Keys of this type a reload applies live.
    pub hot_reloadable: &'static [&'static str],
    /// The metrics this type declares.
    pub metrics: &'static [&'static MetricDef],
    parse: fn(&str, serde_json::Value) -> Result<C, Vec<ConfigError>>,
}

/// Every source type.
pub static SOURCES: &[Registration<SourceConfig>] = &[
    source::<crate::sources::generator::GeneratorConfig>(),
    #[cfg(feature = "sources-file")]
    source::<crate::sources::file::FileSourceConfig>(),
    #[cfg(feature = "sources-docker")]
    source::<crate::sources::docker::DockerSourceConfig>(),
];

/// Every transform type.
pub static TRANSFORMS: &[Registration<TransformConfig>] = &[
    transform::<crate::transforms::filter::FilterConfig>(),
    transform::<crate::transforms::dedup::DedupConfig>(),
    transform::<crate::transforms::json::JsonParserConfig>(),
    transform::<crate::transforms::logfmt::LogfmtParserConfig>(),
    transform::<crate::transforms::regex_parser::RegexParserConfig>(),
    transform::<crate::transforms::timestamp::TimestampConfig>(),
    transform::<crate::transforms::labels::LabelsConfig>(),
    transform::<crate::transforms::multiline::MultilineConfig>(),
    transform::<crate::transforms::throttle::ThrottleConfig>(),
    transform::<crate::transforms::route::RouteConfig>(),
    transform::<crate::transforms::PassthroughConfig>(),
];

/// Every sink type.
pub static SINKS: &[Registration<SinkConfig>] = &[
    #[cfg(feature = "sinks-loki")]
    sink::<crate::sinks::loki::LokiSinkConfig>(),
    sink::<crate::sinks::file::FileSinkConfig>(),
    sink::<crate::sinks::console::ConsoleConfig>(),
    sink::<crate::sinks::blackhole::BlackholeConfig>(),
];

/// The registration of source type `T`.
pub const fn source<T: SourceComponent>() -> Registration<SourceConfig> {
    Registration {
        type_name: T::TYPE,
        hot_reloadable: T::HOT_RELOADABLE,
        metrics: T::METRICS,
        parse: parse_as::<T, SourceConfig>,
    }
}

/// The registration of transform type `T`.
pub const fn transform<T: TransformComponent>() -> Registration<TransformConfig> {
    Registration {
        type_name: T::TYPE,
        hot_reloadable: T::HOT_RELOADABLE,
        metrics: T::METRICS,
        parse: parse_as::<T, TransformConfig>,
    }
}

/// The registration of sink type `T`.
pub const fn sink<T: SinkComponent>() -> Registration<SinkConfig> {
    Registration {
        type_name: T::TYPE,
        hot_reloadable: T::HOT_RELOADABLE,
        metrics: T::METRICS,
        parse: parse_as::<T, SinkConfig>,
    }
}

fn parse_as<T: Component, C: From<T>>(
    prefix: &str,
    value: serde_json::Value,
) -> Result<C, Vec<ConfigError>> {
    parse_validated(prefix, value, T::validate).map(C::from)
}

/// Every metric the components declare: the model's, the dead-letter queue's, then each
/// registered type's (each family once, however many types share it). The engine adds its own
/// (`log_capturer::telemetry::METRICS`); docs/metrics.md is checked against the whole list.
pub fn all_metrics() -> Vec<&'static MetricDef> {
    let mut families: Vec<&'static [&'static MetricDef]> =
        vec![crate::telemetry::METRICS, crate::dlq::METRICS];
    let registered = SOURCES
        .iter()
        .map(|r| r.metrics)
        .chain(TRANSFORMS.iter().map(|r| r.metrics))
        .chain(SINKS.iter().map(|r| r.metrics));
    for family in registered {
        if !families.iter().any(|known| std::ptr::eq(*known, family)) {
            families.push(family);
        }
    }
    let mut all: Vec<&'static MetricDef> = Vec::new();
    for def in families.into_iter().flatten().copied() {
        if !all.iter().any(|known| known.name == def.name) {
            all.push(def);
        }
    }
    all
}

/// The type names of a kind, in registration order.
pub fn type_names<C>(registrations: &[Registration<C>]) -> Vec<&'static str> {
    registrations.iter().map(|r| r.type_name).collect()
}

/// The keys a reload applies live for transforms of `type_name`.
pub fn transform_hot_reloadable(type_name: &str) -> &'static [&'static str] {
    TRANSFORMS
        .iter()
        .find(|r| r.type_name == type_name)
        .map_or(&[], |r| r.hot_reloadable)
}

fn parse_kind<C>(
    registrations: &[Registration<C>],
    kind: &str,
    prefix: &str,
    type_name: &str,
    value: serde_json::Value,
) -> Result<C, Vec<ConfigError>> {
    match registrations.iter().find(|r| r.type_name == type_name) {
        Some(registration) => (registration.parse)(prefix, value),
        None => {
            let known = type_names(registrations);
            let error = ConfigError::new(
                join_path(prefix, "type"),
                format!("unknown {kind} type `{type_name}`"),
            );
            Err(vec![match did_you_mean(type_name, &known) {
                Some(best) => error.with_hint(format!("did you mean `{best}`?")),
                None => error.with_hint(format!("{kind} types: {}", known.join(", "))),
            }])
        }
    }
}

/// What every erased configuration can do.
trait Erased: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn as_any(&self) -> &dyn Any;
    fn settings(&self) -> serde_json::Value;
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    fn same(&self, other: &dyn Any) -> bool;
    fn warnings(&self, prefix: &str) -> Vec<ConfigWarning>;
}

impl<T: Component> Erased for T {
    fn type_name(&self) -> &'static str {
        T::TYPE
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }

    fn same(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<T>() == Some(self)
    }

    fn warnings(&self, prefix: &str) -> Vec<ConfigWarning> {
        Component::warnings(self, prefix)
    }
}

/// Implements the common parts of an erased configuration kind.
macro_rules! erased_config {
    ($name:ident, $erased:ident, $component:ident) => {
        impl<T: $component> From<T> for $name {
            fn from(config: T) -> Self {
                Self(Arc::new(config))
            }
        }

        impl $name {
            /// The `type` name.
            pub fn type_name(&self) -> &'static str {
                self.0.type_name()
            }

            /// The settings as written, every key with its value (defaults included).
            pub fn settings(&self) -> serde_json::Value {
                self.0.settings()
            }

            /// What is allowed but probably not meant.
            pub fn warnings(&self, prefix: &str) -> Vec<ConfigWarning> {
                self.0.warnings(prefix)
            }

            /// The configuration as its own type, when it is of type `T`.
            pub fn downcast<T: $component>(&self) -> Option<&T> {
                self.0.as_any().downcast_ref::<T>()
            }
        }

        impl Clone for $name {
            fn clone(&self) -> Self {
                Self(self.0.clone())
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.same(other.0.as_any())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.debug(f)
            }
        }
    };
}

trait ErasedSource: Erased {
    fn build(&self, cx: SourceContext) -> Result<EventStream, BuildError>;
    fn static_labels(&self) -> BTreeMap<String, String>;
    fn sets_file(&self) -> bool;
}

impl<T: SourceComponent> ErasedSource for T {
    fn build(&self, cx: SourceContext) -> Result<EventStream, BuildError> {
        SourceComponent::build(self, cx)
    }

    fn static_labels(&self) -> BTreeMap<String, String> {
        SourceComponent::static_labels(self)
    }

    fn sets_file(&self) -> bool {
        SourceComponent::sets_file(self)
    }
}

/// A source's configuration, whatever its type.
pub struct SourceConfig(Arc<dyn ErasedSource>);
erased_config!(SourceConfig, ErasedSource, SourceComponent);

impl SourceConfig {
    /// Parses the options of a source of type `type_name` (without `type`).
    pub fn parse(
        prefix: &str,
        type_name: &str,
        value: serde_json::Value,
    ) -> Result<Self, Vec<ConfigError>> {
        parse_kind(SOURCES, "source", prefix, type_name, value)
    }

    pub fn build(&self, cx: SourceContext) -> Result<EventStream, BuildError> {
        self.0.build(cx)
    }

    /// Labels every event of this source carries, without empty values.
    pub fn static_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.0.static_labels();
        labels.retain(|_, value| !value.is_empty());
        labels
    }

    pub fn sets_file(&self) -> bool {
        self.0.sets_file()
    }
}

/// Hands new settings to a running transform; built with it, of its own type.
pub struct SettingsSender(Box<dyn Fn(&TransformConfig) -> bool + Send + Sync>);

impl SettingsSender {
    /// Sends `config` if it is of the transform's type and differs from what it has; returns
    /// whether it was sent.
    pub fn update(&self, config: &TransformConfig) -> bool {
        (self.0)(config)
    }
}

trait ErasedTransform: Erased {
    fn build(&self, key: &str) -> Result<(Transform, SettingsSender), BuildError>;
    fn added_labels(&self) -> BTreeMap<String, String>;
    fn outputs(&self) -> Vec<String>;
}

impl<T: TransformComponent> ErasedTransform for T {
    fn build(&self, key: &str) -> Result<(Transform, SettingsSender), BuildError> {
        let (tx, rx) = watch::channel(self.clone());
        let cx = TransformContext {
            key: key.into(),
            settings: rx,
        };
        let transform = TransformComponent::build(self, cx)?;
        let sender = SettingsSender(Box::new(move |config: &TransformConfig| {
            let Some(config) = config.downcast::<T>() else {
                return false;
            };
            tx.send_if_modified(|current| {
                if current == config {
                    false
                } else {
                    *current = config.clone();
                    true
                }
            })
        }));
        Ok((transform, sender))
    }

    fn added_labels(&self) -> BTreeMap<String, String> {
        TransformComponent::added_labels(self)
    }

    fn outputs(&self) -> Vec<String> {
        TransformComponent::outputs(self)
    }
}

/// A transform's configuration, whatever its type.
pub struct TransformConfig(Arc<dyn ErasedTransform>);
erased_config!(TransformConfig, ErasedTransform, TransformComponent);

impl TransformConfig {
    /// Parses the options of a transform of type `type_name` (without `type` and `inputs`).
    pub fn parse(
        prefix: &str,
        type_name: &str,
        value: serde_json::Value,
    ) -> Result<Self, Vec<ConfigError>> {
        parse_kind(TRANSFORMS, "transform", prefix, type_name, value)
    }

    /// Builds the transform, and the sender its live settings arrive through.
    pub fn build(&self, key: &str) -> Result<(Transform, SettingsSender), BuildError> {
        self.0.build(key)
    }

    pub fn added_labels(&self) -> BTreeMap<String, String> {
        self.0.added_labels()
    }

    /// Its named outputs (read as `KEY.OUTPUT`); empty for the one unnamed output.
    pub fn outputs(&self) -> Vec<String> {
        self.0.outputs()
    }
}

trait ErasedSink: Erased {
    fn build(&self, cx: &SinkContext) -> Result<Arc<dyn SinkService>, BuildError>;
    fn tenant(&self) -> Option<&str>;
    fn streams_have_labels(&self, labels: &BTreeMap<String, String>, has_file: bool) -> bool;
}

impl<T: SinkComponent> ErasedSink for T {
    fn build(&self, cx: &SinkContext) -> Result<Arc<dyn SinkService>, BuildError> {
        SinkComponent::build(self, cx)
    }

    fn tenant(&self) -> Option<&str> {
        SinkComponent::tenant(self)
    }

    fn streams_have_labels(&self, labels: &BTreeMap<String, String>, has_file: bool) -> bool {
        SinkComponent::streams_have_labels(self, labels, has_file)
    }
}

/// A sink's configuration, whatever its type.
pub struct SinkConfig(Arc<dyn ErasedSink>);
erased_config!(SinkConfig, ErasedSink, SinkComponent);

impl SinkConfig {
    /// Parses the options of a sink of type `type_name` (without `type`, `inputs`,
    /// `dispatcher`, `dlq`).
    pub fn parse(
        prefix: &str,
        type_name: &str,
        value: serde_json::Value,
    ) -> Result<Self, Vec<ConfigError>> {
        parse_kind(SINKS, "sink", prefix, type_name, value)
    }

    pub fn build(&self, key: &str) -> Result<Arc<dyn SinkService>, BuildError> {
        self.0.build(&SinkContext { key: key.into() })
    }

    /// The tenant the sink writes for, recorded with dead-letter records.
    pub fn tenant(&self) -> Option<&str> {
        self.0.tenant()
    }

    /// Whether events with these labels make streams the destination takes.
    pub fn streams_have_labels(&self, labels: &BTreeMap<String, String>, has_file: bool) -> bool {
        self.0.streams_have_labels(labels, has_file)
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
        assert_eq!(source.settings()["rate"], 10);
        #[cfg(feature = "sources-file")]
        {
            let files =
                SourceConfig::parse("sources.f", "file", json!({"include": ["/var/log/*.log"]}))
                    .unwrap();
            assert!(files.sets_file() && files.static_labels().is_empty());
        }
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

    #[test]
    fn configurations_compare_by_type_and_content() {
        let a = TransformConfig::parse("t", "dedup", json!({"cache_size": 10})).unwrap();
        let b = TransformConfig::parse("t", "dedup", json!({"cache_size": 10})).unwrap();
        let c = TransformConfig::parse("t", "dedup", json!({"cache_size": 11})).unwrap();
        let d = TransformConfig::parse("t", "passthrough", json!({})).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn a_transform_takes_live_settings_of_its_own_type_only() {
        let dedup = TransformConfig::parse("t", "dedup", json!({})).unwrap();
        let (_transform, sender) = dedup.build("t").unwrap();
        let bigger = TransformConfig::parse("t", "dedup", json!({"cache_size": 5})).unwrap();
        assert!(sender.update(&bigger));
        assert!(!sender.update(&bigger), "unchanged: not sent again");
        let other = TransformConfig::parse("t", "passthrough", json!({})).unwrap();
        assert!(!sender.update(&other));
    }

    #[test]
    fn every_type_name_is_registered_once() {
        for names in [
            type_names(SOURCES),
            type_names(TRANSFORMS),
            type_names(SINKS),
        ] {
            let mut sorted = names.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), names.len(), "{names:?}");
        }
    }
}
