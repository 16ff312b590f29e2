//! The supervisor: the connection to the engine, discovery (the container list plus the event
//! stream), and one task per followed container.
//!
//! Guarantees:
//! - The event stream is asked for from a second before the list is taken, so a container
//!   started between the two is seen (a start seen twice only nudges its task).
//! - A container has at most one task; a start of a container whose task is waiting (stopped)
//!   wakes that task instead of starting another, so its acknowledgements stay in one order.
//! - When the engine goes away (events stream ends, socket gone) the supervisor reconnects
//!   with backoff up to `retry_max_delay`; container tasks retry their own streams meanwhile
//!   and keep their place. After a reconnect the list is taken again: containers removed
//!   meanwhile are told so, new ones followed.
//! - Containers that ran while nobody watched are not missed: running and paused ones are
//!   always followed; a stopped one without a cursor is followed (read from its first line)
//!   when it finished after `unwatched_since` — the last positions save before this start, or
//!   a second before the connection was lost. Once a list was taken with the events stream
//!   open, nothing is unwatched until the next disconnect.
//! - At shutdown it waits for every container task to end (each drains its
//!   acknowledgements).
//! - Memory follows the containers: [`TRIM_AFTER`] after tasks ended, what they freed is given
//!   back to the system once (glibc keeps it in its arenas otherwise).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bollard::query_parameters::{EventsOptions, InspectContainerOptions, ListContainersOptions};
use bollard::{API_DEFAULT_VERSION, Docker};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::container::{Backoff, Command, ContainerTask};
use super::events::{ContainerEventReceived, DockerConnected, DockerUnavailable};
use super::labels::ContainerInfo;
use super::{Settings, metrics};
use crate::event::{EventBatch, now_ns};
use crate::shutdown::ShutdownSignal;
use crate::telemetry::{HealthHandle, LogThrottle, TelemetryEvent};

/// Open log streams of all docker sources' tasks, per source, for the gauge.
static STREAMS: std::sync::Mutex<Option<HashMap<String, Arc<AtomicI64>>>> =
    std::sync::Mutex::new(None);

fn stream_counter(settings: &Settings) -> Arc<AtomicI64> {
    let mut guard = match STREAMS.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    guard
        .get_or_insert_with(HashMap::new)
        .entry(settings.key.to_string())
        .or_default()
        .clone()
}

/// A container task opened (`+1`) or closed (`-1`) its log stream.
pub(super) fn streams_changed(settings: &Settings, delta: i64) {
    let counter = stream_counter(settings);
    let now = counter.fetch_add(delta, Ordering::AcqRel) + delta;
    metrics::CONTAINER_STREAMS_ACTIVE.record(now, &settings.attrs.component);
}

/// Seconds to wait for the engine to answer a request (streams are not bound by it).
const REQUEST_TIMEOUT_S: u64 = 30;

/// Connects to `endpoint` (`unix://…` or `tcp://…`) and negotiates the API version.
async fn connect(endpoint: &str) -> Result<(Docker, String), String> {
    let docker = match endpoint.strip_prefix("unix://") {
        Some(path) => Docker::connect_with_unix(path, REQUEST_TIMEOUT_S, API_DEFAULT_VERSION),
        None => Docker::connect_with_http(endpoint, REQUEST_TIMEOUT_S, API_DEFAULT_VERSION),
    }
    .map_err(|error| match error {
        bollard::errors::Error::SocketNotFoundError(path) => {
            format!("socket {path} not found (is dockerd running?)")
        }
        other => other.to_string(),
    })?;
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|error| error.to_string())?;
    let version = docker.client_version().to_string();
    Ok((docker, version))
}

/// One container's entry in the supervisor's map.
struct Followed {
    commands: mpsc::UnboundedSender<Command>,
}

pub(super) struct Supervisor {
    settings: Arc<Settings>,
    out: mpsc::Sender<EventBatch>,
    health: HealthHandle,
    shutdown: ShutdownSignal,
    tasks: JoinSet<String>,
    followed: HashMap<String, Followed>,
    /// Since when (ns since the epoch) the engine went unwatched; stopped containers that
    /// finished after it may hold lines nobody read. None while watched.
    unwatched_since: Option<i64>,
    /// When to give the memory of ended tasks back to the system (see [`crate::memory`]):
    /// set when a task ends, [`TRIM_AFTER`] later, so a burst of ends trims once.
    trim_at: Option<tokio::time::Instant>,
}

/// How long after a container task ended the freed memory is given back.
const TRIM_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits until `at`, or forever when there is nothing to wait for.
async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Supervisor {
    pub(super) fn new(
        settings: Arc<Settings>,
        out: mpsc::Sender<EventBatch>,
        health: HealthHandle,
        shutdown: ShutdownSignal,
        unwatched_since: Option<i64>,
    ) -> Self {
        Self {
            settings,
            out,
            health,
            shutdown,
            tasks: JoinSet::new(),
            followed: HashMap::new(),
            unwatched_since,
            trim_at: None,
        }
    }

    /// Gives the memory of the tasks that ended back to the system.
    async fn trim(&mut self) {
        self.trim_at = None;
        let _ = tokio::task::spawn_blocking(crate::memory::release_freed).await;
    }

    /// The engine is no longer watched from a second before now (events are whole seconds).
    fn lost_sight(&mut self) {
        self.settings
            .shared
            .watching
            .store(false, Ordering::Release);
        let since = now_ns() - 1_000_000_000;
        self.unwatched_since = Some(self.unwatched_since.map_or(since, |old| old.min(since)));
    }

    pub(super) async fn run(mut self) {
        let settings = self.settings.clone();
        let endpoint = settings.endpoint.as_str();
        let mut backoff = Backoff::new(settings.config.retry_max_delay);
        let mut log = LogThrottle::new(std::time::Duration::from_secs(60));
        let mut connected_before = false;
        'connect: while !self.shutdown.is_triggered() {
            let (docker, version) = match connect(endpoint).await {
                Ok(connected) => connected,
                Err(error) => {
                    DockerUnavailable {
                        attrs: &settings.attrs,
                        health: &self.health,
                        endpoint,
                        error: &error,
                        required: settings.config.require_socket,
                        log: &mut log,
                    }
                    .emit();
                    if !self.wait(backoff.next_delay()).await {
                        break;
                    }
                    continue;
                }
            };
            DockerConnected {
                attrs: &settings.attrs,
                health: &self.health,
                endpoint,
                api_version: &version,
                reconnect: connected_before,
            }
            .emit();
            log.reset();
            connected_before = true;
            let since = now_ns() / 1_000_000_000 - 1;
            let filters = HashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                (
                    "event".to_string(),
                    ["start", "die", "destroy", "rename"]
                        .map(String::from)
                        .to_vec(),
                ),
            ]);
            let mut events = docker.events(Some(EventsOptions {
                since: Some(since.to_string()),
                until: None,
                filters: Some(filters),
            }));
            if let Err(error) = self.reconcile(&docker).await {
                metrics::DOCKER_ERRORS.add(1, &settings.attrs.with_reason("list"));
                tracing::warn!(source = %settings.key, error = %error, "Cannot list containers; reconnecting.");
                if !self.wait(backoff.next_delay()).await {
                    break;
                }
                continue;
            }
            self.unwatched_since = None;
            // Watched from now on: saved at once (even with no container), so that the next
            // start knows nothing before this went unwatched.
            self.settings.shared.watching.store(true, Ordering::Release);
            self.settings.shared.dirty.store(true, Ordering::Release);
            backoff.reset();
            loop {
                tokio::select! {
                    () = self.shutdown.wait() => break 'connect,
                    Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                        self.joined(joined);
                    }
                    () = until(self.trim_at) => self.trim().await,
                    event = events.next() => match event {
                        Some(Ok(message)) => self.on_event(&docker, message).await,
                        Some(Err(error)) => {
                            metrics::DOCKER_ERRORS.add(1, &settings.attrs.with_reason("events"));
                            tracing::info!(source = %settings.key, error = %error, "Docker event stream ended; reconnecting.");
                            break;
                        }
                        None => {
                            metrics::DOCKER_ERRORS.add(1, &settings.attrs.with_reason("events"));
                            tracing::info!(source = %settings.key, "Docker event stream closed; reconnecting.");
                            break;
                        }
                    }
                }
            }
            self.lost_sight();
            if !self.wait(backoff.next_delay()).await {
                break;
            }
        }
        // Shutdown: every task sees the signal, closes its stream and drains its
        // acknowledgements.
        self.followed.clear();
        while let Some(joined) = self.tasks.join_next().await {
            self.joined(joined);
        }
    }

    /// Waits `delay` while reaping finished tasks; false at shutdown.
    async fn wait(&mut self, delay: std::time::Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return true,
                () = self.shutdown.wait() => return false,
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => self.joined(joined),
                () = until(self.trim_at) => self.trim().await,
            }
        }
    }

    fn joined(&mut self, joined: Result<String, tokio::task::JoinError>) {
        self.trim_at
            .get_or_insert_with(|| tokio::time::Instant::now() + TRIM_AFTER);
        match joined {
            Ok(id) => {
                self.followed.remove(&id);
            }
            Err(error) => {
                // A task that panicked (a bug): forget every entry whose sender is closed.
                tracing::error!(source = %self.settings.key, error = %error, "A container task failed.");
                self.followed.retain(|_, f| !f.commands.is_closed());
            }
        }
        self.watched_changed();
    }

    fn watched_changed(&self) {
        metrics::CONTAINERS_WATCHED.record(
            i64::try_from(self.followed.len()).unwrap_or(i64::MAX),
            &self.settings.attrs.component,
        );
    }

    /// Takes the container list: follows new containers (running and paused ones, stopped ones
    /// with a cursor, to drain them, and stopped ones that ran while unwatched), wakes the
    /// tasks of running ones, and tells tasks whose container is gone.
    async fn reconcile(&mut self, docker: &Docker) -> Result<(), bollard::errors::Error> {
        let list = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await?;
        let mut present = std::collections::HashSet::new();
        for summary in list {
            let Some(id) = summary.id else { continue };
            present.insert(id.clone());
            use bollard::models::ContainerSummaryStateEnum as State;
            // A paused container is alive: its log stream can be followed, and no start
            // event comes when it is unpaused.
            let running = matches!(summary.state, Some(State::RUNNING | State::PAUSED));
            let stopped = matches!(summary.state, Some(State::EXITED | State::DEAD));
            if let Some(followed) = self.followed.get(&id) {
                if running {
                    let _ = followed.commands.send(Command::Start);
                }
                continue;
            }
            let known = self
                .settings
                .shared
                .with_table(|table| table.contains_key(&id));
            if running || known {
                self.follow(docker, &id, None).await;
            } else if stopped && let Some(since) = self.unwatched_since {
                self.follow(docker, &id, Some(since)).await;
            }
        }
        let gone: Vec<String> = self
            .followed
            .keys()
            .filter(|id| !present.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(followed) = self.followed.get(&id) {
                let _ = followed.commands.send(Command::Destroyed);
            }
        }
        // Cursors of containers removed while nobody watched: kept for the retention, then
        // dropped by the committer.
        let now = now_ns();
        self.settings.shared.with_table(|table| {
            for (id, entry) in table.iter_mut() {
                if !present.contains(id) {
                    entry.position.removed_ns.get_or_insert(now);
                }
            }
        });
        Ok(())
    }

    /// Inspects a container and starts its task if the selection takes it (and, with
    /// `finished_after`, only if it stopped after that time, ns since the epoch).
    async fn follow(&mut self, docker: &Docker, id: &str, finished_after: Option<i64>) {
        let inspect = match docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(inspect) => inspect,
            Err(error) => {
                metrics::DOCKER_ERRORS.add(1, &self.settings.attrs.with_reason("inspect"));
                tracing::debug!(source = %self.settings.key, container = %id, error = %error, "Cannot inspect a container.");
                return;
            }
        };
        if let Some(after) = finished_after {
            let finished_ns = inspect
                .state
                .as_ref()
                .and_then(|state| state.finished_at.as_deref())
                .and_then(|at| at.parse::<jiff::Timestamp>().ok())
                .map_or(i64::MIN, |at| {
                    i64::try_from(at.as_nanosecond()).unwrap_or(i64::MIN)
                });
            if finished_ns <= after {
                return;
            }
            tracing::info!(source = %self.settings.key, container = %id, "Reading a container that ran while the engine was not watched.");
        }
        let config = inspect.config.unwrap_or_default();
        let info = ContainerInfo {
            id: inspect.id.unwrap_or_else(|| id.to_string()),
            name: inspect
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            image: config.image.unwrap_or_default(),
            labels: config.labels.unwrap_or_default(),
            tty: config.tty.unwrap_or(false),
            running: inspect.state.and_then(|s| s.running).unwrap_or(false),
        };
        if !self.settings.selector.selects(&info) {
            tracing::debug!(source = %self.settings.key, container = %info.name, "Container not selected.");
            return;
        }
        // After the selector: the engine's events name every container on the host, and a
        // test's fault must not fire on another test's container.
        crate::fault::point("docker_supervisor", &self.settings.key);
        tracing::debug!(source = %self.settings.key, container = %info.name, tty = info.tty, "Following a container.");
        let (commands, receiver) = mpsc::unbounded_channel();
        let id = info.id.clone();
        let task = ContainerTask::new(
            self.settings.clone(),
            docker.clone(),
            info,
            receiver,
            self.out.clone(),
            self.shutdown.clone(),
        );
        self.tasks.spawn(task.run());
        self.followed.insert(id, Followed { commands });
        self.watched_changed();
    }

    async fn on_event(&mut self, docker: &Docker, message: bollard::models::EventMessage) {
        let Some(actor) = message.actor else { return };
        let Some(id) = actor.id else { return };
        let action: &'static str = match message.action.as_deref() {
            Some("start") => "start",
            Some("die") => "die",
            Some("destroy") => "destroy",
            Some("rename") => "rename",
            _ => return,
        };
        ContainerEventReceived {
            attrs: &self.settings.attrs,
            action,
            id: &id,
        }
        .emit();
        match action {
            "start" => match self.followed.get(&id) {
                Some(followed) => {
                    let _ = followed.commands.send(Command::Start);
                }
                None => self.follow(docker, &id, None).await,
            },
            "destroy" => {
                if let Some(followed) = self.followed.get(&id) {
                    let _ = followed.commands.send(Command::Destroyed);
                }
            }
            "rename" => {
                let name = actor
                    .attributes
                    .and_then(|mut a| a.remove("name"))
                    .map(|n| n.trim_start_matches('/').to_string());
                if let (Some(followed), Some(name)) = (self.followed.get(&id), name) {
                    let _ = followed.commands.send(Command::Renamed(name));
                }
            }
            _ => {}
        }
    }
}
