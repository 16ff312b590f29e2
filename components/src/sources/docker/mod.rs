//! The `docker` source: follows containers through the Docker Engine API, at-least-once.
//!
//! Three parts run per source:
//! - the supervisor ([`supervisor`]): connects to the engine (unix socket or `tcp://`, API
//!   version negotiated), lists containers and follows the event stream (start, die, destroy,
//!   rename), reconnecting with backoff when dockerd restarts or its socket goes away, and keeps
//!   one task per followed container;
//! - one task per container ([`container`]): one log stream (follow, timestamps), lines put
//!   together by [`frames`], labelled by [`labels`], sent in batches whose acknowledgements it
//!   consumes in order through an [`OrderedFinalizer`](crate::ack::OrderedFinalizer), moving
//!   the container's committed cursor;
//! - the committer ([`committer`]): saves the cursors in the positions store
//!   ([`crate::positions`]: same format, atomic writes and checkpoints as the file source's).
//!
//! Guarantees:
//! - A container's committed cursor (Docker's nanosecond timestamp of an entry and the hash of
//!   its content) moves only to the end of a batch every sink acknowledged as handled, after
//!   every earlier batch of that container was too. A batch not handled (`Errored`) freezes the
//!   container's cursor for the rest of the run, so a restart reads it again.
//! - After a restart each container resumes from its saved cursor: Docker is asked for the
//!   entries from the cursor's second on, and those up to and including the cursor's own entry
//!   are dropped; lines logged while the shipper was down are delivered. Lines acknowledged in
//!   the last `flush_interval` before a crash are delivered again (with their own timestamps,
//!   so Loki drops them as exact duplicates).
//! - Bounded: one task and at most one connection per container; batches go through a bounded
//!   channel, so a container logging faster than the pipeline takes is read with backpressure
//!   (the engine's stream stops being read), never buffered without bound.
//! - Stopped containers the source has a cursor for are drained (their remaining lines read)
//!   at start-up and after a reconnect; a removed container's cursor is kept for
//!   `removed_retention`, then dropped.
//! - A container that ran while nobody watched (created, run and exited while the shipper was
//!   down or the engine unreachable, and not removed) is read from its first line: at
//!   start-up, stopped containers that finished after the last save of the positions; after a
//!   reconnect, those that finished after the connection was lost. At the very first start
//!   (no positions yet) stopped containers are not read, as with Vector and Promtail.
//! - Health follows the engine: unhealthy, saying why, while it cannot be reached (unless
//!   `require_socket` is off); the source keeps trying and follows containers once it answers.

mod committer;
mod container;
mod events;
pub mod frames;
pub mod labels;
pub mod metrics;
mod supervisor;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::{ConfigError, duration, join_path, label_name_errors};
use crate::positions::{ContainerPosition, LoadOutcome, PositionStore};
use crate::sources::producer;
use crate::telemetry::ComponentAttrs;
use crate::{BuildError, EventStream, SourceContext};

/// The engine's socket when neither `endpoint` nor `DOCKER_HOST` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";

/// Configuration of the `docker` source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DockerSourceConfig {
    /// The Docker engine: `unix:///path/to/docker.sock` or `tcp://host:port`. When unset,
    /// `DOCKER_HOST`, else `unix:///var/run/docker.sock`.
    pub endpoint: Option<String>,
    /// Follow only containers whose name matches one of these globs (all when empty).
    pub include_names: Vec<String>,
    /// Never follow containers whose name matches one of these globs.
    pub exclude_names: Vec<String>,
    /// Follow only containers whose image matches one of these globs (all when empty).
    pub include_images: Vec<String>,
    /// Never follow containers whose image matches one of these globs.
    pub exclude_images: Vec<String>,
    /// Follow only containers with one of these labels: `key` (present) or `key=glob`.
    pub include_labels: Vec<String>,
    /// Never follow containers with one of these labels: `key` or `key=glob`.
    pub exclude_labels: Vec<String>,
    /// Leave out the container log-capturer itself runs in (found from /proc).
    pub exclude_self: bool,
    /// Stream labels of each line: templates with `{{ name }}`, `{{ id }}` (12 digits),
    /// `{{ image }}`, `{{ stream }}` (stdout or stderr), `{{ compose_project }}`,
    /// `{{ compose_service }}` and `{{ label.KEY }}` (a container label); a label that renders
    /// empty is left out. Replaces the default set as a whole.
    pub labels: BTreeMap<String, String>,
    /// Longest line after Docker's 16 KiB pieces are merged; longer ones are cut (never inside
    /// a UTF-8 character) and counted in `lines_truncated_total`.
    pub max_line_bytes: usize,
    /// Whether an unreachable engine makes the source unhealthy (`/health` 503, saying why).
    /// Off, it is only logged: for configurations that run where Docker may not be.
    pub require_socket: bool,
    /// Longest wait between attempts to reach the engine (the wait doubles from 250ms).
    #[serde(with = "duration")]
    pub retry_max_delay: Duration,
    /// How long the cursor of a removed container is kept (its last lines still drain).
    #[serde(with = "duration")]
    pub removed_retention: Duration,
    /// Longest time between a committed cursor and its save.
    #[serde(with = "duration")]
    pub flush_interval: Duration,
    /// Time between checkpoints of the positions document (three generations are kept).
    #[serde(with = "duration")]
    pub checkpoint_interval: Duration,
}

impl Default for DockerSourceConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            include_names: Vec::new(),
            exclude_names: Vec::new(),
            include_images: Vec::new(),
            exclude_images: Vec::new(),
            include_labels: Vec::new(),
            exclude_labels: Vec::new(),
            exclude_self: true,
            labels: BTreeMap::from([
                ("container".to_string(), "{{ name }}".to_string()),
                ("stream".to_string(), "{{ stream }}".to_string()),
                (
                    "compose_project".to_string(),
                    "{{ compose_project }}".to_string(),
                ),
                (
                    "compose_service".to_string(),
                    "{{ compose_service }}".to_string(),
                ),
            ]),
            max_line_bytes: 256_000,
            require_socket: true,
            retry_max_delay: Duration::from_secs(10),
            removed_retention: Duration::from_secs(300),
            flush_interval: Duration::from_secs(1),
            checkpoint_interval: Duration::from_secs(60),
        }
    }
}

impl DockerSourceConfig {
    /// The endpoint to use: `endpoint`, else `DOCKER_HOST`, else the default socket.
    pub fn resolved_endpoint(&self) -> String {
        self.endpoint
            .clone()
            .filter(|e| !e.is_empty())
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|e| !e.is_empty()))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
    }

    pub fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if let Some(endpoint) = &self.endpoint
            && !endpoint.is_empty()
            && !endpoint.starts_with("unix://")
            && !endpoint.starts_with("tcp://")
            && !endpoint.starts_with("http://")
        {
            errors.push(
                ConfigError::new(
                    join_path(prefix, "endpoint"),
                    format!("{endpoint:?} is neither unix:// nor tcp://"),
                )
                .with_hint("e.g. unix:///var/run/docker.sock or tcp://127.0.0.1:2375"),
            );
        }
        if let Err(selector_errors) = labels::Selector::new(&DockerSourceConfig {
            exclude_self: false,
            ..self.clone()
        }) {
            for (key, message) in selector_errors {
                errors.push(ConfigError::new(join_path(prefix, &key), message));
            }
        }
        if let Err(template_errors) = labels::LabelRules::parse(&self.labels) {
            for (name, message) in template_errors {
                errors.push(ConfigError::new(
                    join_path(&join_path(prefix, "labels"), &name),
                    message,
                ));
            }
        }
        errors.extend(label_name_errors(prefix, self.labels.keys()));
        if self.max_line_bytes == 0 {
            errors.push(ConfigError::new(
                join_path(prefix, "max_line_bytes"),
                "must be at least 1",
            ));
        }
        for (key, value) in [
            ("retry_max_delay", self.retry_max_delay),
            ("flush_interval", self.flush_interval),
            ("checkpoint_interval", self.checkpoint_interval),
        ] {
            if value.is_zero() {
                errors.push(ConfigError::new(
                    join_path(prefix, key),
                    "must be longer than 0s",
                ));
            }
        }
        errors
    }
}

/// One container's entry in the shared cursor table.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub position: ContainerPosition,
    /// A batch of this container failed for good: its cursor stays where it is.
    pub frozen: bool,
}

/// State shared by the container tasks and the committer.
pub(crate) struct Shared {
    pub table: Mutex<HashMap<String, Entry>>,
    /// A cursor moved since the last save.
    pub dirty: AtomicBool,
    /// The engine is watched: a container list was taken with the event stream open, and the
    /// connection has not been lost since. Positions are saved only then, because a save's
    /// `updated_at` tells the next start that nothing before it went unwatched.
    pub watching: AtomicBool,
}

impl Shared {
    pub fn with_table<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> T) -> T {
        match self.table.lock() {
            Ok(mut table) => f(&mut table),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

/// What every task of the source shares.
pub(crate) struct Settings {
    pub attrs: ComponentAttrs,
    pub key: crate::ComponentKey,
    pub endpoint: String,
    pub config: DockerSourceConfig,
    pub rules: labels::LabelRules,
    pub selector: labels::Selector,
    pub shared: Arc<Shared>,
}

impl DockerSourceConfig {
    /// Loads the cursors, starts the supervisor and the committer. Must be called inside a
    /// tokio runtime.
    pub fn build(&self, cx: SourceContext) -> Result<EventStream, BuildError> {
        let fail = |message: String| BuildError {
            component: cx.key.to_string(),
            message,
        };
        let attrs = ComponentAttrs::new(&cx.key);
        let mut store = PositionStore::open(&cx.data_dir, &cx.key).map_err(|err| {
            fail(format!(
                "cannot open the positions directory under {}: {err}",
                cx.data_dir.display()
            ))
        })?;
        // `unwatched_since`: from when on nobody watched the engine for this source (see
        // `Supervisor::reconcile`): the last save of the positions, or the epoch when they
        // were lost; none at the very first start.
        let (saved, unwatched_since) = match store.load() {
            LoadOutcome::Fresh => (Vec::new(), None),
            LoadOutcome::Loaded(document) => {
                let since = document.saved_at_ns();
                (document.containers, Some(since))
            }
            LoadOutcome::Restored {
                generation,
                document,
                reason,
            } => {
                tracing::warn!(source = %cx.key, generation, reason = %reason, "Container positions restored from a checkpoint.");
                let since = document.saved_at_ns();
                (document.containers, Some(since))
            }
            LoadOutcome::Unrecoverable { reasons } => {
                attrs.error("positions_unrecoverable");
                tracing::error!(source = %cx.key, reasons = ?reasons, "Container positions and every checkpoint are unusable; following containers from their start, stopped ones too.");
                (Vec::new(), Some(0))
            }
        };
        let rules = labels::LabelRules::parse(&self.labels)
            .map_err(|errors| fail(format!("invalid labels: {errors:?}")))?;
        let selector = labels::Selector::new(self)
            .map_err(|errors| fail(format!("invalid selection: {errors:?}")))?;
        let shared = Arc::new(Shared {
            table: Mutex::new(
                saved
                    .into_iter()
                    .map(|position| {
                        (
                            position.id.clone(),
                            Entry {
                                position,
                                frozen: false,
                            },
                        )
                    })
                    .collect(),
            ),
            dirty: AtomicBool::new(false),
            watching: AtomicBool::new(false),
        });
        let settings = Arc::new(Settings {
            attrs,
            key: cx.key.clone(),
            endpoint: self.resolved_endpoint(),
            config: self.clone(),
            rules,
            selector,
            shared: shared.clone(),
        });
        let (batches_tx, batches_rx) = mpsc::channel(16);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let supervisor = supervisor::Supervisor::new(
            settings.clone(),
            batches_tx,
            cx.health.clone(),
            cx.shutdown.clone(),
            unwatched_since,
        );
        let (reports, panics) = producer::panic_reports();
        let (supervisor_end, supervisor_ended) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            producer::drive_producer(supervisor_end, supervisor.run()).await;
            let _ = done_tx.send(());
        });
        let committer = tokio::spawn(producer::drive_helper(
            reports,
            committer::run_committer(settings, store, done_rx),
        ));
        // Shutdown waits for every container task to drain its acknowledgements and the
        // committer to save the final cursors, after the stream ended (see `Finishing`).
        cx.finishing.add(committer);
        Ok(producer::batches_from(batches_rx, supervisor_ended, panics))
    }
}

impl crate::component::Component for DockerSourceConfig {
    const TYPE: &'static str = "docker";
    const METRICS: &'static [&'static crate::telemetry::MetricDef] = metrics::METRICS;

    fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        DockerSourceConfig::validate(self, prefix)
    }
}

impl crate::component::SourceComponent for DockerSourceConfig {
    fn build(&self, cx: SourceContext) -> Result<EventStream, BuildError> {
        DockerSourceConfig::build(self, cx)
    }

    /// Labels whose template renders for every container (a placeholder value stands in for
    /// what each container fills in).
    fn static_labels(&self) -> BTreeMap<String, String> {
        self.labels
            .iter()
            .filter(|(_, value)| {
                labels::Template::parse(value).is_ok_and(|template| template.always_renders())
            })
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_label_by_container_and_stream_and_validate() {
        let config = DockerSourceConfig::default();
        assert!(config.validate("sources.d").is_empty());
        let labels = crate::component::SourceComponent::static_labels(&config);
        assert!(labels.contains_key("container") && labels.contains_key("stream"));
        assert!(!labels.contains_key("compose_project"));
    }

    #[test]
    fn bad_endpoint_templates_and_globs_are_named() {
        let config = DockerSourceConfig {
            endpoint: Some("ftp://x".into()),
            include_names: vec!["[".into()],
            labels: BTreeMap::from([("x".to_string(), "{{ nope }}".to_string())]),
            ..Default::default()
        };
        let errors: Vec<String> = config
            .validate("sources.d")
            .iter()
            .map(|e| e.path.clone())
            .collect();
        assert_eq!(
            errors,
            [
                "sources.d.endpoint",
                "sources.d.include_names",
                "sources.d.labels.x"
            ]
        );
    }
}
