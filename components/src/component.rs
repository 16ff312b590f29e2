//! The component model: what a source, a transform and a sink are, and how each is configured,
//! checked and built.
//!
//! A component is one module whose configuration type implements [`SourceComponent`],
//! [`TransformComponent`] or [`SinkComponent`] (each built on [`Component`]: its `type` name,
//! live keys, checks), and one line in [`crate::registry`]. The engine knows components only
//! through the registry; components know nothing of the engine or of each other.
//!
//! Guarantees the model asks of every component, and that the engine relies on:
//! - Building never reads configuration files and never starts work before the pipeline runs
//!   (a source's stream does nothing until polled; a sink's service until sent to).
//! - Settings a reload may change (`HOT_RELOADABLE`) reach a running transform through its own
//!   typed [`LiveSettings`]: a transform sees only its own configuration type.
//! - Acknowledgements travel with events: a transform that drops events has handled them; one
//!   that holds events across batches (a [`StreamTransform`]) holds their batches' finalizers
//!   until it emits or settles them (see [`crate::ack`]).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::config::{ConfigError, ConfigWarning};
use crate::dispatcher::SinkService;
use crate::event::{ComponentKey, EventBatch};
use crate::telemetry::MetricDef;
use crate::{BuildError, EventStream, SourceContext};

/// What every component's configuration is.
pub trait Component:
    Clone + Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The `type` name in the configuration.
    const TYPE: &'static str;
    /// Keys a reload applies while the component runs; changing any other key needs a restart.
    const HOT_RELOADABLE: &'static [&'static str] = &[];
    /// The metrics this component type declares beyond the model's (see [`crate::telemetry`]).
    const METRICS: &'static [&'static MetricDef] = &[];

    /// Checks serde cannot express, each error named by its key under `prefix`.
    fn validate(&self, _prefix: &str) -> Vec<ConfigError> {
        Vec::new()
    }

    /// What is allowed but probably not meant (printed by `validate`, logged at start).
    fn warnings(&self, _prefix: &str) -> Vec<ConfigWarning> {
        Vec::new()
    }
}

/// A source: a stream of batches, built from its configuration and a context.
pub trait SourceComponent: Component {
    /// Starts nothing until the stream is polled (file sources start their reader here, which
    /// only reads once the pipeline consumes). Must be called inside a tokio runtime.
    fn build(&self, cx: SourceContext) -> Result<EventStream, BuildError>;

    /// Labels every event of this source carries (for the check that a Loki stream always has
    /// one).
    fn static_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// Whether events carry the file they were read from (`{{ file }}` renders).
    fn sets_file(&self) -> bool {
        false
    }
}

/// A transform's live settings: the configuration it was built with, replaced by a reload.
pub type LiveSettings<T> = watch::Receiver<T>;

/// What a transform is given when it is built.
pub struct TransformContext<T> {
    /// The transform's name in the configuration.
    pub key: ComponentKey,
    /// Its own settings, as they change with reloads (only `HOT_RELOADABLE` keys change).
    pub settings: LiveSettings<T>,
}

/// A transform that works on one batch at a time, synchronously.
pub trait FunctionTransform: Send + 'static {
    /// Changes, removes or adds events in place. Removing an event acknowledges it as handled:
    /// a transform that drops an event has handled it.
    fn transform(&mut self, batch: &mut EventBatch);
}

/// A transform that holds state across batches or needs timers (multiline with a wait, rate
/// limits, reordering): it turns the stream of its input batches into the stream of its
/// output batches, and ends when its input has ended and it has emitted what it held.
///
/// It must keep the acknowledgements of what it holds: move a batch's finalizers into the
/// batch that carries its events on, or settle them when the events are dropped on purpose.
pub trait StreamTransform: Send + 'static {
    fn transform(self: Box<Self>, input: EventStream) -> EventStream;
}

/// A transform with named outputs (the `route` stage): it splits each batch over its outputs,
/// which downstream components read as `KEY.OUTPUT`.
///
/// It must keep the acknowledgements: every batch it returns carries a copy of the input
/// batch's finalizers (as a fan-out's forks do), and the input's own share is settled, so the
/// source hears of its events only once every copy is settled. An event that goes to no read
/// output has been handled: dropped, counted and acknowledged.
pub trait RouteTransform: Send + 'static {
    /// Splits `batch`: one batch per output, in the order of [`TransformComponent::outputs`]
    /// (empty where no event went). `read[i]` says whether anything reads output `i`; an event
    /// only for outputs nobody reads goes nowhere.
    fn route(&mut self, batch: EventBatch, read: &[bool]) -> Vec<EventBatch>;
}

/// A built transform.
pub enum Transform {
    Function(Box<dyn FunctionTransform>),
    Stream(Box<dyn StreamTransform>),
    Route(Box<dyn RouteTransform>),
}

impl Transform {
    pub fn function(transform: impl FunctionTransform) -> Self {
        Self::Function(Box::new(transform))
    }

    pub fn stream(transform: impl StreamTransform) -> Self {
        Self::Stream(Box::new(transform))
    }

    pub fn route(transform: impl RouteTransform) -> Self {
        Self::Route(Box::new(transform))
    }
}

/// A transform: built from its configuration and a context holding its live settings.
pub trait TransformComponent: Component {
    fn build(&self, cx: TransformContext<Self>) -> Result<Transform, BuildError>;

    /// Labels this transform sets on every event (for the Loki label check).
    fn added_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// Its named outputs, read as `KEY.OUTPUT` (a [`RouteTransform`]'s, in the order its
    /// batches come out); empty for the one unnamed output, read as `KEY`.
    fn outputs(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Applies new settings to a running function transform before its next batch.
pub trait Reconfigure<T> {
    fn reconfigure(&mut self, config: &T);
}

/// A function transform whose settings follow a reload: before each batch, settings that
/// changed are handed to its [`Reconfigure::reconfigure`].
pub struct Reconfigurable<T, F> {
    settings: LiveSettings<T>,
    inner: F,
    key: ComponentKey,
}

impl<T: Clone + Send + Sync + 'static, F: FunctionTransform + Reconfigure<T>> Reconfigurable<T, F> {
    pub fn new(cx: TransformContext<T>, inner: F) -> Self {
        Self {
            settings: cx.settings,
            inner,
            key: cx.key,
        }
    }
}

impl<T: Clone + Send + Sync + 'static, F: FunctionTransform + Reconfigure<T>> FunctionTransform
    for Reconfigurable<T, F>
{
    fn transform(&mut self, batch: &mut EventBatch) {
        if self.settings.has_changed().unwrap_or(false) {
            let config = self.settings.borrow_and_update().clone();
            self.inner.reconfigure(&config);
            tracing::info!(transform = %self.key, "Transform settings applied.");
        }
        self.inner.transform(batch);
    }
}

/// What a sink is given when it is built.
#[derive(Clone, Debug)]
pub struct SinkContext {
    /// The sink's name in the configuration.
    pub key: ComponentKey,
}

/// A sink: a request/response service the dispatcher drives.
pub trait SinkComponent: Component {
    fn build(&self, cx: &SinkContext) -> Result<Arc<dyn SinkService>, BuildError>;

    /// The tenant the sink writes for, recorded with dead-letter records.
    fn tenant(&self) -> Option<&str> {
        None
    }

    /// Whether events with these labels (and a file, or not) make streams the destination
    /// takes; `false` fails the configuration (Loki refuses streams without labels).
    fn streams_have_labels(&self, _labels: &BTreeMap<String, String>, _has_file: bool) -> bool {
        true
    }
}

/// A build error naming the component.
pub fn build_error(key: &str, message: impl std::fmt::Display) -> BuildError {
    BuildError {
        component: key.to_string(),
        message: message.to_string(),
    }
}

/// The build error for a configuration that `validate` would have refused: its first error,
/// all of them joined when there are several.
pub fn config_build_error(key: &str, errors: Vec<crate::config::ConfigError>) -> BuildError {
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    build_error(
        key,
        if text.is_empty() {
            "invalid configuration".into()
        } else {
            text.join("; ")
        },
    )
}
