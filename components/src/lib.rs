//! The component model and catalogue of log-capturer.
//!
//! - [`event`]: [`event::LogEvent`] and [`event::EventBatch`], the data model.
//! - [`ack`]: end-to-end acknowledgements a source consumes in order.
//! - [`queue`]: bounded queues counted in events, `when_full`, fan-out.
//! - [`dispatcher`]: batching, workers, retries with backoff, per sink.
//! - [`component`]: what a source, a transform and a sink are; [`registry`]: every component
//!   type, one line each, mapping a configuration `type` to its typed configuration and builder.
//! - [`sources`], [`transforms`], [`sinks`]: the components.
//! - [`config`]: typed-configuration helpers (durations, key-path errors, did-you-mean).
//! - [`positions`]: the durable positions store of the file and docker sources.
//! - [`secret`]: [`secret::Secret`], a configuration value that never prints in clear.
//! - [`telemetry`]: every metric the components emit, and component health.
//!
//! Components take typed configuration structs and never read configuration files; the engine
//! (the `log-capturer` crate) layers the configuration and assembles the topology.

pub mod ack;
pub mod blocking;
pub mod component;
pub mod config;
pub mod dispatcher;
pub mod dlq;
pub mod durable;
pub mod event;
pub mod fault;
pub mod fields;
pub mod hash_keys;
pub mod lock;
pub mod memory;
pub mod positions;
pub mod prefetch;
pub mod queue;
pub mod registry;
pub mod secret;
pub mod shutdown;
pub mod sinks;
pub mod sources;
pub mod telemetry;
pub mod transforms;

use std::path::PathBuf;
use std::pin::Pin;

use futures::Stream;

pub use event::{ComponentKey, EventBatch, Labels, LogEvent};

/// What a source produces: batches until it is done or shut down.
pub type EventStream = Pin<Box<dyn Stream<Item = EventBatch> + Send>>;

/// What a source is given when it is built.
#[derive(Clone, Debug)]
pub struct SourceContext {
    /// The source's name in the configuration; stamped on every event as its `source`.
    pub key: ComponentKey,
    /// Fires when the source must stop reading and end its stream.
    pub shutdown: shutdown::ShutdownSignal,
    pub health: telemetry::HealthHandle,
    /// Where the source may keep state (positions).
    pub data_dir: PathBuf,
    /// Work the source leaves running after its stream ended, which shutdown waits for.
    pub finishing: Finishing,
}

/// Work a source leaves running after its stream has ended (the file source's committer
/// saving the final positions once the last batches are acknowledged). The topology waits for
/// it only after the source's downstream has seen the stream end, so a stage that holds events
/// until its input ends (`multiline`) emits them, and their acknowledgements can arrive.
#[derive(Clone, Debug, Default)]
pub struct Finishing(std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>);

impl Finishing {
    /// Adds a task to wait for.
    pub fn add(&self, task: tokio::task::JoinHandle<()>) {
        if let Ok(mut tasks) = self.0.lock() {
            tasks.push(task);
        }
    }

    /// Waits for every task added so far. The first of them that panicked (a committer's last
    /// save) is raised again here, in the source's task, once all have ended: the shutdown
    /// then reports it with the source's name and ends with an error.
    pub async fn wait(&self) {
        let tasks = match self.0.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(_) => Vec::new(),
        };
        let mut panicked = None;
        for task in tasks {
            if let Err(err) = task.await
                && err.is_panic()
                && panicked.is_none()
            {
                panicked = err.try_into_panic().ok();
            }
        }
        if let Some(payload) = panicked {
            std::panic::resume_unwind(payload);
        }
    }
}

pub use component::{FunctionTransform, RouteTransform, StreamTransform, Transform};

/// An error that prevents a component from starting.
#[derive(Debug)]
pub struct BuildError {
    pub component: String,
    pub message: String,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.component, self.message)
    }
}

impl std::error::Error for BuildError {}
