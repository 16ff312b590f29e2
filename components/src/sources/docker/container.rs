//! One container: its log stream read into batches, their acknowledgements applied in order.
//!
//! Guarantees:
//! - At most one log stream (one connection) per container at a time, opened by this task
//!   alone; the task lives while the container exists (a stopped container's task holds no
//!   connection and waits for a start, a removal or the shutdown).
//! - Each batch's acknowledgement is registered before the batch is sent, and the container's
//!   committed cursor moves only as they resolve, in order (see the module docs of the
//!   source). After a failed or ended stream the next read resumes from the last point no
//!   open partial line spans, dropping what was read up to it.
//! - Sending waits while the pipeline is full, and the stream is not read meanwhile: that is
//!   the backpressure on a container that logs faster than the pipeline takes.
//! - At shutdown, the stream is closed and the task waits for the acknowledgements of what it
//!   sent before it ends.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::{InspectContainerOptions, LogsOptionsBuilder};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;

use super::events::{ContainerBatchNotDelivered, ContainerRequestFailed};
use super::frames::{Assembler, Cursor, Line, Stream};
use super::labels::ContainerInfo;
use super::{Entry, Settings, metrics};
use crate::ack::{BatchNotifier, BatchStatus, Finalizers, OrderedFinalizer};
use crate::event::{ComponentKey, EventBatch, Labels, LogEvent, now_ns};
use crate::positions::ContainerPosition;
use crate::shutdown::ShutdownSignal;
use crate::telemetry::{LogThrottle, TelemetryEvent};

/// Lines in one batch at most; a batch also goes out when the stream has nothing more ready.
const BATCH_LINES: usize = 1000;
/// Bytes of lines in one batch at most.
const BATCH_BYTES: usize = 1 << 20;

/// What the supervisor tells a container's task.
#[derive(Debug)]
pub(super) enum Command {
    /// The container (re)started: read its stream again.
    Start,
    /// The container was renamed.
    Renamed(String),
    /// The container was removed.
    Destroyed,
}

/// How a read of the stream ended.
enum ReadEnd {
    /// The stream ended (the container stopped, or the engine went away).
    Ended,
    /// The container does not exist any more.
    Gone,
    /// The request or the stream failed.
    Failed(bollard::errors::Error),
    /// Shutdown, or the pipeline is gone.
    Stop,
}

/// Exponential backoff from 250 ms doubling up to a maximum.
pub(super) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(super) fn new(max: Duration) -> Self {
        Self {
            next: Duration::from_millis(250).min(max),
            max,
        }
    }

    pub(super) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub(super) fn reset(&mut self) {
        self.next = Duration::from_millis(250).min(self.max);
    }
}

pub(super) struct ContainerTask {
    settings: Arc<Settings>,
    docker: Docker,
    info: ContainerInfo,
    commands: mpsc::UnboundedReceiver<Command>,
    out: mpsc::Sender<EventBatch>,
    shutdown: ShutdownSignal,
    finalizer: OrderedFinalizer<Cursor>,
    labels: [Labels; 2],
    source: ComponentKey,
    log: LogThrottle,
}

/// Whether an error says the container does not exist.
fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl ContainerTask {
    pub(super) fn new(
        settings: Arc<Settings>,
        docker: Docker,
        info: ContainerInfo,
        commands: mpsc::UnboundedReceiver<Command>,
        out: mpsc::Sender<EventBatch>,
        shutdown: ShutdownSignal,
    ) -> Self {
        let labels = settings.rules.render(&info);
        let source = settings.key.clone();
        Self {
            settings,
            docker,
            info,
            commands,
            out,
            shutdown,
            finalizer: OrderedFinalizer::new(),
            labels,
            source,
            log: LogThrottle::new(Duration::from_secs(30)),
        }
    }

    /// Follows the container until it is removed or shutdown; returns its id.
    pub(super) async fn run(mut self) -> String {
        let resume = self.entry_cursor();
        let mut read_from = resume;
        let mut backoff = Backoff::new(self.settings.config.retry_max_delay);
        let mut want_read = true;
        let mut removed = false;
        loop {
            if self.shutdown.is_triggered() {
                break;
            }
            if want_read {
                let (end, safe) = self.read(read_from).await;
                read_from = safe;
                match end {
                    ReadEnd::Stop => break,
                    ReadEnd::Gone => {
                        removed = true;
                        break;
                    }
                    ReadEnd::Ended => match self.running().await {
                        Ok(true) => {
                            // Still running: the stream was cut (engine restarting); again.
                            if !self.pause(backoff.next_delay()).await {
                                break;
                            }
                        }
                        Ok(false) => {
                            backoff.reset();
                            want_read = false;
                        }
                        Err(error) if is_not_found(&error) => {
                            removed = true;
                            break;
                        }
                        Err(error) => {
                            self.failed("inspect", &error);
                            if !self.pause(backoff.next_delay()).await {
                                break;
                            }
                        }
                    },
                    ReadEnd::Failed(error) => {
                        self.failed("logs", &error);
                        if !self.pause(backoff.next_delay()).await {
                            break;
                        }
                    }
                }
                continue;
            }
            // Stopped: wait for a start, a removal, acknowledgements or the shutdown.
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Start) => want_read = true,
                    Some(Command::Renamed(name)) => self.rename(name),
                    Some(Command::Destroyed) | None => {
                        removed = true;
                        break;
                    }
                },
                Some((cursor, status)) = self.finalizer.next(), if !self.finalizer.is_empty() => {
                    self.commit(cursor, status);
                }
                () = self.shutdown.wait() => break,
            }
        }
        // What was sent is acknowledged before the task ends (a shutdown that times out
        // aborts it, and those batches count as not delivered).
        while let Some((cursor, status)) = self.finalizer.next().await {
            self.commit(cursor, status);
        }
        if removed {
            let now = now_ns();
            self.settings.shared.with_table(|table| {
                if let Some(entry) = table.get_mut(&self.info.id) {
                    entry.position.removed_ns.get_or_insert(now);
                }
            });
            self.settings.shared.dirty.store(true, Ordering::Release);
        }
        self.info.id
    }

    /// The committed cursor of the container, creating its entry (so that a restart knows
    /// the container, even before a line of it was acknowledged).
    fn entry_cursor(&self) -> Cursor {
        let info = &self.info;
        let cursor = self.settings.shared.with_table(|table| {
            let entry = table.entry(info.id.clone()).or_insert_with(|| Entry {
                position: ContainerPosition {
                    id: info.id.clone(),
                    name: info.name.clone(),
                    image: info.image.clone(),
                    read_ns: 0,
                    committed_ns: 0,
                    committed_hash: 0,
                    removed_ns: None,
                    updated_at: crate::durable::now_rfc3339(),
                },
                frozen: false,
            });
            entry.position.name.clone_from(&info.name);
            entry.position.removed_ns = None;
            Cursor {
                ts_ns: entry.position.committed_ns,
                hash: entry.position.committed_hash,
            }
        });
        self.settings.shared.dirty.store(true, Ordering::Release);
        cursor
    }

    fn rename(&mut self, name: String) {
        self.info.name = name;
        self.labels = self.settings.rules.render(&self.info);
        let info = &self.info;
        self.settings.shared.with_table(|table| {
            if let Some(entry) = table.get_mut(&info.id) {
                entry.position.name.clone_from(&info.name);
            }
        });
    }

    fn failed(&mut self, reason: &'static str, error: &bollard::errors::Error) {
        ContainerRequestFailed {
            attrs: &self.settings.attrs,
            reason,
            container: &self.info.name,
            error,
            log: &mut self.log,
        }
        .emit();
    }

    /// Waits `delay` while applying acknowledgements and renames; false at shutdown.
    async fn pause(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return true,
                () = self.shutdown.wait() => return false,
                Some((cursor, status)) = self.finalizer.next(), if !self.finalizer.is_empty() => {
                    self.commit(cursor, status);
                }
            }
        }
    }

    async fn running(&self) -> Result<bool, bollard::errors::Error> {
        let inspect = self
            .docker
            .inspect_container(&self.info.id, None::<InspectContainerOptions>)
            .await?;
        Ok(inspect.state.and_then(|s| s.running).unwrap_or(false))
    }

    /// Applies one acknowledgement: the committed cursor moves, or freezes.
    fn commit(&mut self, cursor: Cursor, status: BatchStatus) {
        let id = &self.info.id;
        let mut not_delivered = None;
        self.settings.shared.with_table(|table| {
            let Some(entry) = table.get_mut(id) else {
                return;
            };
            if entry.frozen {
                return;
            }
            if !status.is_handled() {
                entry.frozen = true;
                not_delivered = Some(entry.position.committed_ns);
                return;
            }
            if cursor.ts_ns > entry.position.committed_ns
                || (cursor.ts_ns == entry.position.committed_ns
                    && cursor.hash != entry.position.committed_hash)
            {
                entry.position.committed_ns = cursor.ts_ns;
                entry.position.committed_hash = cursor.hash;
                entry.position.updated_at = crate::durable::now_rfc3339();
            }
        });
        self.settings.shared.dirty.store(true, Ordering::Release);
        if let Some(committed_ns) = not_delivered {
            ContainerBatchNotDelivered {
                attrs: &self.settings.attrs,
                container: &self.info.name,
                committed_ns,
            }
            .emit();
        }
    }

    /// Reads the log stream from `from` until it ends; returns how, and the point to resume
    /// from.
    async fn read(&mut self, from: Cursor) -> (ReadEnd, Cursor) {
        // Docker's `since` is whole seconds: ask from the cursor's second, drop up to it.
        let since = i32::try_from(from.ts_ns.div_euclid(1_000_000_000)).unwrap_or(0);
        let options = LogsOptionsBuilder::new()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .since(since)
            .build();
        let mut stream = self.docker.logs(&self.info.id, Some(options));
        let mut assembler =
            Assembler::new(self.info.tty, self.settings.config.max_line_bytes, from);
        let mut lines: Vec<Line> = Vec::new();
        let mut streaming = false;
        let end = loop {
            let item = tokio::select! {
                biased;
                () = self.shutdown.wait() => break ReadEnd::Stop,
                Some((cursor, status)) = self.finalizer.next(), if !self.finalizer.is_empty() => {
                    self.commit(cursor, status);
                    continue;
                }
                item = stream.next() => item,
            };
            if !streaming {
                streaming = true;
                super::supervisor::streams_changed(&self.settings, 1);
            }
            let mut failure = None;
            let mut ended = false;
            let mut next = match item {
                Some(Ok(output)) => Some(output),
                Some(Err(error)) => {
                    failure = Some(error);
                    None
                }
                None => {
                    ended = true;
                    None
                }
            };
            // Take what is ready now, up to a batch, then send it.
            let mut bytes = 0usize;
            while let Some(output) = next.take() {
                let (stream_kind, message) = split_output(output);
                let before = lines.len();
                assembler.push(stream_kind, message, &mut lines);
                bytes += lines[before..].iter().map(|l| l.line.len()).sum::<usize>();
                if lines.len() >= BATCH_LINES || bytes >= BATCH_BYTES {
                    break;
                }
                match stream.next().now_or_never() {
                    Some(Some(Ok(more))) => next = Some(more),
                    Some(Some(Err(error))) => failure = Some(error),
                    Some(None) => ended = true,
                    None => {}
                }
            }
            if ended {
                assembler.finish(&mut lines);
            }
            if !self.send(&mut lines, &mut assembler).await {
                break ReadEnd::Stop;
            }
            if let Some(error) = failure {
                break if is_not_found(&error) {
                    ReadEnd::Gone
                } else {
                    ReadEnd::Failed(error)
                };
            }
            if ended {
                break ReadEnd::Ended;
            }
        };
        drop(stream);
        if streaming {
            super::supervisor::streams_changed(&self.settings, -1);
        }
        (end, assembler.safe())
    }

    /// Sends the gathered lines as one batch (registering its acknowledgement first), waiting
    /// while the pipeline is full; false when shutdown came first or the pipeline is gone.
    async fn send(&mut self, lines: &mut Vec<Line>, assembler: &mut Assembler) -> bool {
        let counts = assembler.take_counts();
        if counts.merges > 0 {
            metrics::PARTIAL_MERGES.add(counts.merges, &self.settings.attrs.component);
        }
        if counts.truncated > 0 {
            crate::telemetry::LINES_TRUNCATED.add(counts.truncated, &self.settings.attrs.component);
        }
        let read_ns = assembler.last_ts();
        self.settings.shared.with_table(|table| {
            if let Some(entry) = table.get_mut(&self.info.id) {
                entry.position.read_ns = entry.position.read_ns.max(read_ns);
            }
        });
        if lines.is_empty() {
            return true;
        }
        let observed = now_ns();
        let events: Vec<LogEvent> = lines
            .drain(..)
            .map(|line| LogEvent {
                timestamp_ns: line.ts_ns,
                observed_ns: observed,
                line: line.line,
                labels: self.labels[match line.stream {
                    Stream::Stdout => 0,
                    Stream::Stderr => 1,
                }]
                .clone(),
                metadata: Vec::new(),
                source: self.source.clone(),
                file: None,
                replays: 0,
                fields: Default::default(),
            })
            .collect();
        let (notifier, receiver) = BatchNotifier::new_with_receiver();
        self.finalizer.add(assembler.safe(), receiver);
        self.settings.attrs.processed(events.len());
        let batch = EventBatch::new(events, Finalizers::new(notifier));
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            sent = self.out.send(batch) => sent.is_ok(),
            // The batch is dropped unsent: its acknowledgement resolves as not delivered.
            () = shutdown.wait() => false,
        }
    }
}

/// The stream and bytes of one message of the log stream (a TTY's raw output is stdout).
fn split_output(output: LogOutput) -> (Stream, Bytes) {
    match output {
        LogOutput::StdErr { message } => (Stream::Stderr, message),
        LogOutput::StdOut { message }
        | LogOutput::Console { message }
        | LogOutput::StdIn { message } => (Stream::Stdout, message),
    }
}
