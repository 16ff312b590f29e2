//! The dispatcher: one per sink. It batches what arrives on the sink's queue, runs up to
//! `worker_count` sends at once, retries with exponential backoff, and settles every batch's
//! acknowledgements.
//!
//! Guarantees:
//! - A batch holds at most `batch_size` events and, unless a single event is larger,
//!   at most `batch_max_bytes`; a partial batch is sent `batch_timeout` after its first event.
//! - Events of one input batch keep their order; with `worker_count > 1` whole batches may
//!   complete out of order (acknowledgements are ordered by the sources, not here).
//! - Every batch ends in exactly one of: delivered (acknowledged `Delivered`); a final failure
//!   (non-retriable outcome or retries exhausted) kept in the sink's dead-letter queue
//!   (acknowledged `Delivered`: the events are safe on disk); or, without a dead-letter queue or
//!   when the queue cannot take them before shutdown, logged, counted in `errors_total{reason}`
//!   and `dropped_total{reason}` and acknowledged `Errored`, so the source does not commit past
//!   it. While the dead-letter queue cannot be written, its store waits (see
//!   [`DeadLetter::store`]): the worker stays busy, and with every worker busy the dispatcher
//!   stops reading its queue, so backpressure reaches the sources; nothing is discarded because
//!   a disk is full.
//! - A sink whose last push was refused for good (a final failure, or every entry of it
//!   rejected) is unhealthy until a push is stored again, exactly as one whose retries are
//!   exhausted.
//! - When its queue closes (shutdown) the dispatcher sends what it holds, waits for its workers
//!   and returns; it never drops a batch silently.
//! - `worker_count`, `batch_size` and `batch_timeout` follow the live settings channel; the other
//!   settings are fixed for the dispatcher's life.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use opentelemetry::KeyValue;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::ack::{BatchStatus, Finalizers};
use crate::config::{ConfigError, duration, join_path};
use crate::event::{EventBatch, LogEvent};
use crate::queue::{QueueReceiver, WhenFull};
use crate::telemetry::{self, ComponentAttrs, HealthHandle, LogThrottle};

/// Tuning of one sink's dispatcher. The global `dispatcher:` block sets the defaults; a sink's own
/// `dispatcher:` block overrides any of them for that sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DispatcherConfig {
    /// Capacity of the sink's queue, in events. Restart required to change.
    pub queue_size: usize,
    /// What a full queue does: `block` (backpressure to the sources) or `drop_newest` (counted).
    pub when_full: WhenFull,
    /// Sends in flight at once. Hot-reloadable.
    pub worker_count: usize,
    /// Most events in one batch. Hot-reloadable.
    pub batch_size: usize,
    /// Most bytes (lines plus labels) in one batch.
    pub batch_max_bytes: usize,
    /// How long a partial batch waits for more events before it is sent. Hot-reloadable.
    #[serde(with = "duration")]
    pub batch_timeout: Duration,
    /// Limit on one send attempt; a timed-out attempt is retried.
    #[serde(with = "duration")]
    pub send_timeout: Duration,
    /// Retries after the first attempt before a batch is a final failure.
    pub max_retries: u32,
    /// Delay before the first retry.
    #[serde(with = "duration")]
    pub retry_base_delay: Duration,
    /// Factor by which the delay grows with each retry.
    pub retry_multiplier: f32,
    /// Largest delay between retries (before jitter).
    #[serde(with = "duration")]
    pub retry_max_delay: Duration,
    /// Adds a random 0-100% to each delay so many senders do not retry in step.
    pub retry_jitter: bool,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            queue_size: 50_000,
            when_full: WhenFull::Block,
            worker_count: 4,
            batch_size: 1_000,
            batch_max_bytes: 1024 * 1024,
            batch_timeout: Duration::from_secs(1),
            send_timeout: Duration::from_secs(30),
            max_retries: 10,
            retry_base_delay: Duration::from_millis(500),
            retry_multiplier: 2.0,
            retry_max_delay: Duration::from_secs(30),
            retry_jitter: true,
        }
    }
}

impl DispatcherConfig {
    /// Keys that change on a live reload; every other key needs a restart.
    pub const HOT_RELOADABLE: &'static [&'static str] =
        &["worker_count", "batch_size", "batch_timeout"];

    /// Value checks serde cannot express.
    pub fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut at_least_one = |key: &str, value: usize| {
            if value == 0 {
                errors.push(
                    ConfigError::new(join_path(prefix, key), "must be at least 1")
                        .with_hint("remove the key to use the default"),
                );
            }
        };
        at_least_one("queue_size", self.queue_size);
        at_least_one("worker_count", self.worker_count);
        at_least_one("batch_size", self.batch_size);
        at_least_one("batch_max_bytes", self.batch_max_bytes);
        if self.queue_size > u32::MAX as usize {
            errors.push(ConfigError::new(
                join_path(prefix, "queue_size"),
                format!("must be at most {}", u32::MAX),
            ));
        }
        if self.send_timeout.is_zero() {
            errors.push(ConfigError::new(
                join_path(prefix, "send_timeout"),
                "must be longer than 0s",
            ));
        }
        if self.retry_multiplier.is_nan() || self.retry_multiplier < 1.0 {
            errors.push(
                ConfigError::new(join_path(prefix, "retry_multiplier"), "must be 1.0 or more")
                    .with_hint("delays grow by this factor; 2.0 doubles them"),
            );
        }
        if self.retry_max_delay < self.retry_base_delay {
            errors.push(ConfigError::new(
                join_path(prefix, "retry_max_delay"),
                "must not be shorter than retry_base_delay",
            ));
        }
        errors
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        let builder = ExponentialBuilder::default()
            .with_min_delay(self.retry_base_delay)
            .with_max_delay(self.retry_max_delay)
            .with_factor(self.retry_multiplier)
            .with_max_times(self.max_retries as usize);
        if self.retry_jitter {
            builder.with_jitter().build()
        } else {
            builder.build()
        }
    }
}

/// One event of a batch the destination refused for good, with why.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    /// Index of the event in the batch that was sent.
    pub index: usize,
    pub reason: &'static str,
    pub detail: String,
}

/// What became of one send attempt, as the sink classifies it.
#[derive(Clone, Debug, PartialEq)]
pub enum SendOutcome {
    /// Stored by the destination.
    Delivered,
    /// Stored, except the listed events, which must not be resent as they are (Loki's partial
    /// 400, or events the sink would not send): they go to the failure path.
    Partial { rejected: Vec<Rejected> },
    /// The request was too large (413): the dispatcher splits the batch and sends the halves.
    TooLarge { detail: String },
    /// Not stored, may succeed later (timeouts, 5xx, 429). `retry_after` is the destination's own
    /// wish and lengthens the backoff delay.
    Retry {
        reason: &'static str,
        detail: String,
        retry_after: Option<Duration>,
    },
    /// Not stored and never will be by resending (malformed request, 4xx).
    Failed {
        reason: &'static str,
        detail: String,
    },
}

/// A sink: turns a batch into one request and classifies the result.
///
/// Implementations must be cancel-safe (the dispatcher drops a send that exceeds
/// `send_timeout`) and must not assume a batch is sent only once.
pub trait SinkService: Send + Sync + 'static {
    fn send<'a>(&'a self, batch: &'a EventBatch) -> BoxFuture<'a, SendOutcome>;

    /// Called once after the last batch, before shutdown completes (flush buffers).
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Why a dead-letter queue did not keep events.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The process is stopping and the queue could not take the events (full, or failing
    /// writes): they stay unacknowledged and are read again after a restart.
    #[error("dead-letter queue unavailable at shutdown: {0}")]
    Stopping(String),
    /// The queue can never take these events (a record that cannot be encoded).
    #[error("dead-letter queue refused the events: {0}")]
    Refused(String),
}

/// Where events that can never be delivered go: a durable dead-letter queue.
pub trait DeadLetter: Send + Sync + 'static {
    /// Stores `events` durably with why they failed. `Ok` means the events are safe and count
    /// as handled for their sources; `Err` means they are not (the caller acknowledges them as
    /// `Errored`, so sources keep them for a restart).
    ///
    /// While the queue cannot be written (a full disk, a full queue under `when_full: block`),
    /// implementations wait and retry rather than fail: the caller's batch stays in flight,
    /// which is the backpressure. They give up only at shutdown ([`DeadLetterError::Stopping`]).
    fn store<'a>(
        &'a self,
        events: Vec<&'a LogEvent>,
        reason: &'a str,
        detail: &'a str,
    ) -> BoxFuture<'a, Result<(), DeadLetterError>>;
}

/// Runs one sink.
pub struct Dispatcher {
    attrs: ComponentAttrs,
    service: Arc<dyn SinkService>,
    settings: watch::Receiver<DispatcherConfig>,
    health: HealthHandle,
    dead_letter: Option<Arc<dyn DeadLetter>>,
    /// One line per this while batches keep going to the dead-letter queue.
    dead_letter_log: Arc<std::sync::Mutex<LogThrottle>>,
}

/// How often "kept in the dead-letter queue" is logged while it goes on.
const DEAD_LETTER_LOG_EVERY: Duration = Duration::from_secs(10);

type InFlight = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Dispatcher {
    pub fn new(
        key: &str,
        service: Arc<dyn SinkService>,
        settings: watch::Receiver<DispatcherConfig>,
        health: HealthHandle,
    ) -> Self {
        Self {
            attrs: ComponentAttrs::new(key),
            service,
            settings,
            health,
            dead_letter: None,
            dead_letter_log: Arc::new(std::sync::Mutex::new(LogThrottle::new(
                DEAD_LETTER_LOG_EVERY,
            ))),
        }
    }

    /// Sends what can never be delivered to `dead_letter` instead of counting it lost.
    pub fn with_dead_letter(mut self, dead_letter: Arc<dyn DeadLetter>) -> Self {
        self.dead_letter = Some(dead_letter);
        self
    }

    /// Drains `input` into the sink until the queue closes and every batch is settled.
    pub async fn run(mut self, mut input: QueueReceiver) {
        let mut config = self.settings.borrow_and_update().clone();
        let mut batcher = Batcher::default();
        let mut ready: VecDeque<EventBatch> = VecDeque::new();
        let mut inflight: FuturesUnordered<InFlight> = FuturesUnordered::new();
        let mut input_open = true;
        let mut settings_open = true;

        loop {
            while inflight.len() < config.worker_count {
                match ready.pop_front() {
                    Some(batch) => inflight.push(Box::pin(self.deliver(batch, &config))),
                    None => break,
                }
            }
            if !input_open && batcher.is_empty() && ready.is_empty() && inflight.is_empty() {
                break;
            }
            let deadline = batcher.deadline;
            tokio::select! {
                biased;
                Some(()) = inflight.next(), if !inflight.is_empty() => {}
                changed = self.settings.changed(), if settings_open => {
                    if changed.is_ok() {
                        let next = self.settings.borrow_and_update().clone();
                        tracing::info!(
                            sink = %self.attrs.key(),
                            worker_count = next.worker_count,
                            batch_size = next.batch_size,
                            batch_timeout = ?next.batch_timeout,
                            "Dispatcher settings reloaded."
                        );
                        config.worker_count = next.worker_count;
                        config.batch_size = next.batch_size;
                        config.batch_timeout = next.batch_timeout;
                    } else {
                        settings_open = false;
                    }
                }
                // Only read more while no full batch is waiting for a worker: that is how
                // backpressure reaches the queue and from there the sources.
                received = input.recv(), if input_open && ready.is_empty() => match received {
                    Some(batch) => batcher.push(batch, &config, &mut ready),
                    None => {
                        input_open = false;
                        batcher.flush(&mut ready);
                    }
                },
                () = sleep_until_or_forever(deadline), if deadline.is_some() => {
                    batcher.flush(&mut ready);
                }
            }
        }
        self.service.close().await;
    }

    fn deliver(
        &self,
        batch: EventBatch,
        config: &DispatcherConfig,
    ) -> impl Future<Output = ()> + Send + use<> {
        let service = self.service.clone();
        let attrs = self.attrs.clone();
        let health = self.health.clone();
        let dead_letter = self.dead_letter.clone();
        let dead_letter_log = self.dead_letter_log.clone();
        let send_timeout = config.send_timeout;
        let config = config.clone();
        async move {
            telemetry::BATCH_SIZE.record(batch.len() as f64, &attrs.sink);
            let settler = Settler {
                attrs: &attrs,
                health: &health,
                dead_letter: dead_letter.as_deref(),
                log: &dead_letter_log,
            };
            // Batches still to send; a 413 replaces one with its two halves.
            let mut work = vec![batch];
            while let Some(batch) = work.pop() {
                let mut backoff = config.backoff();
                let mut batch = batch;
                let status = loop {
                    let started = Instant::now();
                    let outcome =
                        match tokio::time::timeout(send_timeout, service.send(&batch)).await {
                            Ok(outcome) => outcome,
                            Err(_) => SendOutcome::Retry {
                                reason: "timeout",
                                detail: format!("no answer within send_timeout ({send_timeout:?})"),
                                retry_after: None,
                            },
                        };
                    let label = match &outcome {
                        SendOutcome::Delivered => "delivered",
                        SendOutcome::Partial { .. } => "partial",
                        SendOutcome::TooLarge { .. } => "too_large",
                        SendOutcome::Retry { .. } => "retry",
                        SendOutcome::Failed { .. } => "failed",
                    };
                    telemetry::SEND_DURATION.record(
                        started.elapsed().as_secs_f64(),
                        &[attrs.sink[0].clone(), KeyValue::new("outcome", label)],
                    );
                    match outcome {
                        SendOutcome::Delivered => {
                            health.healthy();
                            attrs.processed(batch.len());
                            break Some(BatchStatus::Delivered);
                        }
                        SendOutcome::Partial { rejected } => {
                            break Some(settler.partial(&batch.events, &rejected).await);
                        }
                        SendOutcome::TooLarge { detail } => {
                            if batch.len() > 1 {
                                let EventBatch {
                                    mut events,
                                    finalizers,
                                } = std::mem::take(&mut batch);
                                let second = events.split_off(events.len() / 2);
                                tracing::info!(
                                    sink = %attrs.key(),
                                    events = events.len() + second.len(),
                                    "Request too large; splitting the batch in two."
                                );
                                work.push(EventBatch::new(second, finalizers.clone()));
                                work.push(EventBatch::new(events, finalizers));
                                // The halves carry the obligations now.
                                break None;
                            }
                            let list: Vec<&LogEvent> = batch.events.iter().collect();
                            break Some(settler.failed(list, "too_large", &detail).await);
                        }
                        SendOutcome::Retry {
                            reason,
                            detail,
                            retry_after,
                        } => {
                            attrs.error(reason);
                            health.unhealthy(format!("{reason}: {detail}"));
                            let Some(delay) = backoff.next() else {
                                let list: Vec<&LogEvent> = batch.events.iter().collect();
                                break Some(
                                    settler.failed(list, "retries_exhausted", &detail).await,
                                );
                            };
                            let delay = retry_after.map_or(delay, |after| after.max(delay));
                            telemetry::RETRIES.add(1, &attrs.sink);
                            tracing::warn!(
                                sink = %attrs.key(),
                                reason,
                                error = %detail,
                                retry_in = ?delay,
                                events = batch.len(),
                                "Send failed; retrying."
                            );
                            tokio::time::sleep(delay).await;
                        }
                        SendOutcome::Failed { reason, detail } => {
                            // Refused for good: resending cannot help, and the sink is not
                            // doing its job (wrong endpoint, credentials, tenant).
                            health.unhealthy(format!("{reason}: {detail}"));
                            let list: Vec<&LogEvent> = batch.events.iter().collect();
                            break Some(settler.failed(list, reason, &detail).await);
                        }
                    }
                };
                if let Some(status) = status {
                    batch.finalizers.settle(status);
                }
            }
        }
    }
}

/// Settles what a send did not deliver.
struct Settler<'a> {
    attrs: &'a ComponentAttrs,
    health: &'a HealthHandle,
    dead_letter: Option<&'a dyn DeadLetter>,
    log: &'a std::sync::Mutex<LogThrottle>,
}

impl Settler<'_> {
    /// A partial success: the rejected events go to the failure path, the rest count as
    /// delivered. Returns the batch's status.
    async fn partial(&self, events: &[LogEvent], rejected: &[Rejected]) -> BatchStatus {
        let groups = group_rejected(events, rejected);
        let failed: usize = groups.iter().map(|(_, _, list)| list.len()).sum();
        if failed > 0 && failed == events.len() {
            let detail = groups.first().map_or("", |(_, detail, _)| detail.as_str());
            self.health.unhealthy(format!(
                "every entry of the last push was refused: {detail}"
            ));
        } else {
            self.health.healthy();
        }
        self.attrs.processed(events.len().saturating_sub(failed));
        let mut status = BatchStatus::Delivered;
        for (reason, detail, list) in groups {
            status = status.max(self.failed(list, reason, &detail).await);
        }
        status
    }

    /// Events that will never be delivered: to the dead-letter queue when there is one (then
    /// they count as handled), else logged at error level and counted as dropped; `Errored`
    /// then, so sources do not commit past them.
    async fn failed(
        &self,
        events: Vec<&LogEvent>,
        reason: &'static str,
        detail: &str,
    ) -> BatchStatus {
        let count = events.len();
        self.attrs.error(reason);
        if let Some(dead_letter) = self.dead_letter {
            match dead_letter.store(events, reason, detail).await {
                Ok(()) => {
                    let held_back = match self.log.lock() {
                        Ok(mut log) => log.ready(),
                        Err(poisoned) => poisoned.into_inner().ready(),
                    };
                    if let Some(held_back) = held_back {
                        tracing::warn!(
                            sink = %self.attrs.key(),
                            reason,
                            error = %detail,
                            events = count,
                            batches_since_last_report = held_back,
                            "Events not deliverable; kept in the dead-letter queue (dlq_entries_total counts them all)."
                        );
                    }
                    return BatchStatus::Delivered;
                }
                Err(error) => {
                    tracing::error!(
                        sink = %self.attrs.key(),
                        reason,
                        %error,
                        events = count,
                        "Events not kept in the dead-letter queue; they stay unacknowledged and are read again after a restart."
                    );
                }
            }
        } else {
            tracing::error!(
                sink = %self.attrs.key(),
                reason,
                error = %detail,
                events = count,
                "Events not delivered and no dead-letter queue; they are lost to this sink."
            );
        }
        self.attrs.dropped(count, reason);
        BatchStatus::Errored
    }
}

/// The rejected events grouped by reason (first detail kept), each event once.
fn group_rejected<'a>(
    events: &'a [LogEvent],
    rejected: &[Rejected],
) -> Vec<(&'static str, String, Vec<&'a LogEvent>)> {
    let mut groups: Vec<(&'static str, String, Vec<&LogEvent>)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in rejected {
        let Some(event) = events.get(r.index) else {
            continue;
        };
        if !seen.insert(r.index) {
            continue;
        }
        match groups.iter_mut().find(|(reason, _, _)| *reason == r.reason) {
            Some((_, _, list)) => list.push(event),
            None => groups.push((r.reason, r.detail.clone(), vec![event])),
        }
    }
    groups
}

async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => futures::future::pending().await,
    }
}

/// Collects events into batches of the configured size.
#[derive(Default)]
struct Batcher {
    events: Vec<LogEvent>,
    bytes: usize,
    finalizers: Finalizers,
    deadline: Option<Instant>,
}

impl Batcher {
    fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    fn push(
        &mut self,
        batch: EventBatch,
        config: &DispatcherConfig,
        ready: &mut VecDeque<EventBatch>,
    ) {
        let EventBatch {
            events,
            mut finalizers,
        } = batch;
        if events.is_empty() {
            // Nothing in it to deliver.
            finalizers.settle(BatchStatus::Delivered);
            return;
        }
        if self.events.is_empty() {
            self.deadline = Some(Instant::now() + config.batch_timeout);
        }
        let incoming_bytes: usize = events.iter().map(LogEvent::estimated_bytes).sum();
        if self.events.len() + events.len() <= config.batch_size
            && self.bytes + incoming_bytes <= config.batch_max_bytes
        {
            // The common case: the whole input batch fits.
            if self.events.is_empty() {
                self.events = events;
            } else {
                self.events.extend(events);
            }
            self.bytes += incoming_bytes;
            self.finalizers.merge(finalizers);
            if self.events.len() >= config.batch_size || self.bytes >= config.batch_max_bytes {
                self.flush(ready);
            }
            return;
        }
        self.finalizers.merge(finalizers.clone());
        for event in events {
            let size = event.estimated_bytes();
            if !self.events.is_empty() && self.bytes + size > config.batch_max_bytes {
                self.flush_keeping(ready, &finalizers);
            }
            if self.events.is_empty() && self.deadline.is_none() {
                // The first event of a new batch starts its timeout.
                self.deadline = Some(Instant::now() + config.batch_timeout);
            }
            self.bytes += size;
            self.events.push(event);
            if self.events.len() >= config.batch_size || self.bytes >= config.batch_max_bytes {
                self.flush_keeping(ready, &finalizers);
            }
        }
        if self.events.is_empty() {
            // Cut exactly at the end: the copy taken for the next batch holds no events.
            self.finalizers.settle(BatchStatus::Delivered);
            self.deadline = None;
        }
        // Every event now travels with a copy of `finalizers`; this one has none of its own.
        finalizers.settle(BatchStatus::Delivered);
    }

    /// Cuts a batch mid-input: the events still to come owe to `current` as well.
    fn flush_keeping(&mut self, ready: &mut VecDeque<EventBatch>, current: &Finalizers) {
        self.flush(ready);
        // `flush` left an empty set behind: nothing is dropped unsettled here.
        self.finalizers = current.clone();
        self.deadline = None;
    }

    fn flush(&mut self, ready: &mut VecDeque<EventBatch>) {
        if !self.events.is_empty() {
            ready.push_back(EventBatch::new(
                std::mem::take(&mut self.events),
                std::mem::take(&mut self.finalizers),
            ));
        }
        self.bytes = 0;
        self.deadline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::{BatchNotifier, Finalizers};
    use crate::event::Labels;
    use crate::queue::queue;
    use crate::telemetry::{ComponentKind, HealthRegistry};
    use bytes::Bytes;
    use std::sync::Mutex;

    fn events(n: usize) -> Vec<LogEvent> {
        (0..n)
            .map(|i| LogEvent {
                timestamp_ns: i as i64,
                observed_ns: 0,
                line: Bytes::from(format!("line {i}")),
                labels: Labels::default(),
                metadata: Vec::new(),
                source: "t".into(),
                file: None,
                replays: 0,
                fields: Default::default(),
            })
            .collect()
    }

    /// Records batch sizes; answers from a script of outcomes, then `Delivered`.
    #[derive(Default)]
    struct ScriptedSink {
        script: Mutex<VecDeque<SendOutcome>>,
        sent: Mutex<Vec<usize>>,
    }

    impl SinkService for ScriptedSink {
        fn send<'a>(&'a self, batch: &'a EventBatch) -> BoxFuture<'a, SendOutcome> {
            let outcome = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(SendOutcome::Delivered);
            self.sent.lock().unwrap().push(batch.len());
            Box::pin(async move { outcome })
        }
    }

    fn fast_config() -> DispatcherConfig {
        DispatcherConfig {
            batch_size: 4,
            batch_timeout: Duration::from_secs(3600),
            retry_base_delay: Duration::from_millis(1),
            retry_max_delay: Duration::from_millis(2),
            retry_jitter: false,
            max_retries: 2,
            ..DispatcherConfig::default()
        }
    }

    /// A dispatcher for sink `s` running on its own task, fed by the returned queue; its
    /// settings change through the returned sender.
    fn start(
        sink: Arc<ScriptedSink>,
        config: DispatcherConfig,
    ) -> (
        crate::queue::QueueSender,
        tokio::task::JoinHandle<()>,
        watch::Sender<DispatcherConfig>,
    ) {
        let (settings_tx, settings) = watch::channel(config);
        let health = HealthRegistry::default().register("s", ComponentKind::Sink);
        let (tx, rx) = queue(1000, WhenFull::Block, None);
        let task = tokio::spawn(Dispatcher::new("s", sink, settings, health).run(rx));
        (tx, task, settings_tx)
    }

    async fn run_with(sink: Arc<ScriptedSink>, config: DispatcherConfig, batches: Vec<EventBatch>) {
        let (tx, task, settings_tx) = start(sink, config);
        for batch in batches {
            tx.send(batch).await.unwrap();
        }
        drop(tx);
        task.await.unwrap();
        drop(settings_tx);
    }

    #[tokio::test]
    async fn rebatches_to_batch_size_and_flushes_the_rest_on_close() {
        let sink = Arc::new(ScriptedSink::default());
        let batches = vec![
            EventBatch::new(events(3), Finalizers::default()),
            EventBatch::new(events(3), Finalizers::default()),
            EventBatch::new(events(3), Finalizers::default()),
        ];
        run_with(sink.clone(), fast_config(), batches).await;
        let mut sent = sink.sent.lock().unwrap().clone();
        sent.sort_unstable();
        assert_eq!(sent, vec![1, 4, 4]);
    }

    #[tokio::test]
    async fn acknowledges_after_retries_succeed() {
        let sink = Arc::new(ScriptedSink::default());
        sink.script.lock().unwrap().extend([
            SendOutcome::Retry {
                reason: "http_503",
                detail: "unavailable".into(),
                retry_after: None,
            },
            SendOutcome::Retry {
                reason: "http_503",
                detail: "unavailable".into(),
                retry_after: None,
            },
        ]);
        let (notifier, status) = BatchNotifier::new_with_receiver();
        let batch = EventBatch::new(events(2), Finalizers::new(notifier));
        run_with(sink.clone(), fast_config(), vec![batch]).await;
        assert_eq!(status.await, BatchStatus::Delivered);
        assert_eq!(sink.sent.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn exhausted_retries_and_final_failures_are_errored() {
        let retry = SendOutcome::Retry {
            reason: "http_503",
            detail: "unavailable".into(),
            retry_after: None,
        };
        let sink = Arc::new(ScriptedSink::default());
        sink.script
            .lock()
            .unwrap()
            .extend([retry.clone(), retry.clone(), retry]);
        let (notifier, status) = BatchNotifier::new_with_receiver();
        let batch = EventBatch::new(events(2), Finalizers::new(notifier));
        run_with(sink.clone(), fast_config(), vec![batch]).await;
        assert_eq!(status.await, BatchStatus::Errored);
        // One attempt plus max_retries (2).
        assert_eq!(sink.sent.lock().unwrap().len(), 3);

        let sink = Arc::new(ScriptedSink::default());
        sink.script.lock().unwrap().push_back(SendOutcome::Failed {
            reason: "http_400",
            detail: "bad".into(),
        });
        let (notifier, status) = BatchNotifier::new_with_receiver();
        let batch = EventBatch::new(events(2), Finalizers::new(notifier));
        run_with(sink.clone(), fast_config(), vec![batch]).await;
        assert_eq!(status.await, BatchStatus::Errored);
        assert_eq!(sink.sent.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_split_input_batch_is_acknowledged_only_when_all_parts_are() {
        let sink = Arc::new(ScriptedSink::default());
        // The second part (events 4..6) fails for good.
        sink.script.lock().unwrap().extend([
            SendOutcome::Delivered,
            SendOutcome::Failed {
                reason: "http_400",
                detail: "bad".into(),
            },
        ]);
        let config = DispatcherConfig {
            worker_count: 1,
            ..fast_config()
        };
        let (notifier, status) = BatchNotifier::new_with_receiver();
        let batch = EventBatch::new(events(6), Finalizers::new(notifier));
        run_with(sink.clone(), config, vec![batch]).await;
        assert_eq!(status.await, BatchStatus::Errored);
        assert_eq!(*sink.sent.lock().unwrap(), vec![4, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn partial_batch_is_sent_after_batch_timeout() {
        let sink = Arc::new(ScriptedSink::default());
        let config = DispatcherConfig {
            batch_timeout: Duration::from_millis(200),
            ..fast_config()
        };
        let (tx, task, _settings_tx) = start(sink.clone(), config);
        let (notifier, status) = BatchNotifier::new_with_receiver();
        tx.send(EventBatch::new(events(1), Finalizers::new(notifier)))
            .await
            .unwrap();
        // The queue stays open: only the timeout can flush this batch. With the clock paused,
        // tokio advances time exactly to the dispatcher's deadline.
        assert_eq!(status.await, BatchStatus::Delivered);
        assert_eq!(*sink.sent.lock().unwrap(), vec![1]);
        drop(tx);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn remainder_of_a_split_input_batch_is_sent_after_batch_timeout() {
        let sink = Arc::new(ScriptedSink::default());
        let config = DispatcherConfig {
            batch_timeout: Duration::from_millis(200),
            ..fast_config()
        };
        let (tx, task, _settings_tx) = start(sink.clone(), config);
        let (notifier, status) = BatchNotifier::new_with_receiver();
        // 6 events with batch_size 4: one full batch at once, the other 2 by the timeout, while
        // the queue stays open.
        tx.send(EventBatch::new(events(6), Finalizers::new(notifier)))
            .await
            .unwrap();
        // Paused time jumps to the next timer: a missing batch deadline fails here, not hangs.
        let status = tokio::time::timeout(Duration::from_secs(60), status).await;
        assert_eq!(status, Ok(BatchStatus::Delivered));
        assert_eq!(*sink.sent.lock().unwrap(), vec![4, 2]);
        drop(tx);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn batch_size_follows_live_settings() {
        let sink = Arc::new(ScriptedSink::default());
        let (tx, task, settings_tx) = start(sink.clone(), fast_config());
        let (notifier, first) = BatchNotifier::new_with_receiver();
        tx.send(EventBatch::new(events(4), Finalizers::new(notifier)))
            .await
            .unwrap();
        assert_eq!(first.await, BatchStatus::Delivered);
        settings_tx.send_modify(|c| c.batch_size = 2);
        // The dispatcher polls its settings before its input (`biased`), so the change is seen
        // before the next batch is read.
        let (notifier, second) = BatchNotifier::new_with_receiver();
        tx.send(EventBatch::new(events(4), Finalizers::new(notifier)))
            .await
            .unwrap();
        drop(tx);
        task.await.unwrap();
        assert_eq!(second.await, BatchStatus::Delivered);
        assert_eq!(*sink.sent.lock().unwrap(), vec![4, 2, 2]);
    }

    /// Records what was handed to the dead-letter queue.
    #[derive(Default)]
    struct RecordingDeadLetter {
        stored: Mutex<Vec<(String, Vec<i64>)>>,
        fail: bool,
        /// When set, a store waits for a permit: a dead-letter queue that cannot be written.
        gate: Option<Arc<tokio::sync::Notify>>,
    }

    impl DeadLetter for RecordingDeadLetter {
        fn store<'a>(
            &'a self,
            events: Vec<&'a LogEvent>,
            reason: &'a str,
            _detail: &'a str,
        ) -> BoxFuture<'a, Result<(), DeadLetterError>> {
            self.stored.lock().unwrap().push((
                reason.to_string(),
                events.iter().map(|e| e.timestamp_ns).collect(),
            ));
            let result = if self.fail {
                Err(DeadLetterError::Stopping("disk full".to_string()))
            } else {
                Ok(())
            };
            let gate = self.gate.clone();
            Box::pin(async move {
                if let Some(gate) = gate {
                    gate.notified().await;
                }
                result
            })
        }
    }

    async fn run_with_dead_letter(
        sink: Arc<ScriptedSink>,
        dead_letter: Arc<RecordingDeadLetter>,
        batch: EventBatch,
    ) {
        let (_settings_tx, settings) = watch::channel(fast_config());
        let health = HealthRegistry::default().register("s", ComponentKind::Sink);
        let (tx, rx) = queue(1000, WhenFull::Block, None);
        let dispatcher = Dispatcher::new("s", sink, settings, health).with_dead_letter(dead_letter);
        let task = tokio::spawn(dispatcher.run(rx));
        tx.send(batch).await.unwrap();
        drop(tx);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn partial_rejections_go_to_the_dead_letter_queue_and_count_as_handled() {
        let sink = Arc::new(ScriptedSink::default());
        sink.script.lock().unwrap().push_back(SendOutcome::Partial {
            rejected: vec![
                Rejected {
                    index: 0,
                    reason: "timestamp_too_old",
                    detail: "old".into(),
                },
                Rejected {
                    index: 2,
                    reason: "timestamp_too_old",
                    detail: "old".into(),
                },
                Rejected {
                    index: 2,
                    reason: "timestamp_too_old",
                    detail: "again".into(),
                },
            ],
        });
        let dead_letter = Arc::new(RecordingDeadLetter::default());
        let (notifier, status) = BatchNotifier::new_with_receiver();
        let batch = EventBatch::new(events(3), Finalizers::new(notifier));
        run_with_dead_letter(sink.clone(), dead_letter.clone(), batch).await;
        assert_eq!(status.await, BatchStatus::Delivered);
        assert_eq!(
            *dead_letter.stored.lock().unwrap(),
            vec![("timestamp_too_old".to_string(), vec![0, 2])]
        );
        // Sent once: a partial success is never resent as a whole.
        assert_eq!(*sink.sent.lock().unwrap(), vec![3]);
    }

    #[tokio::test]
    async fn a_failed_dead_letter_write_leaves_the_batch_errored() {
        let sink = Arc::new(ScriptedSink::default());
        sink.script.lock().unwrap().push_back(SendOutcome::Failed {
            reason: "http_4xx",
            detail: "403".into(),
        });
        let dead_letter = Arc::new(RecordingDeadLetter {
            fail: true,
            ..Default::default()
        });
        let (notifier, status) = BatchNotifier::new_with_receiver();
        let batch = EventBatch::new(events(2), Finalizers::new(notifier));
        run_with_dead_letter(sink, dead_letter, batch).await;
        assert_eq!(status.await, BatchStatus::Errored);
    }

    #[tokio::test]
    async fn a_waiting_dead_letter_store_holds_the_batch_and_stops_the_dispatcher_reading() {
        let sink = Arc::new(ScriptedSink::default());
        sink.script.lock().unwrap().push_back(SendOutcome::Failed {
            reason: "http_4xx",
            detail: "401 no org id".into(),
        });
        let gate = Arc::new(tokio::sync::Notify::new());
        let dead_letter = Arc::new(RecordingDeadLetter {
            gate: Some(gate.clone()),
            ..Default::default()
        });
        let config = DispatcherConfig {
            worker_count: 1,
            batch_size: 2,
            ..fast_config()
        };
        let (_settings_tx, settings) = watch::channel(config);
        let health = HealthRegistry::default().register("s", ComponentKind::Sink);
        let (tx, rx) = queue(1000, WhenFull::Block, None);
        let dispatcher = Dispatcher::new("s", sink.clone(), settings, health.clone())
            .with_dead_letter(dead_letter.clone());
        let task = tokio::spawn(dispatcher.run(rx));
        let (notifier, status) = BatchNotifier::new_with_receiver();
        tx.send(EventBatch::new(events(2), Finalizers::new(notifier)))
            .await
            .unwrap();
        for _ in 0..5 {
            tx.send(EventBatch::new(events(2), Finalizers::default()))
                .await
                .unwrap();
        }
        // The store is waiting: the one worker is busy, so nothing else is sent, the batch is
        // not settled, and the queue keeps what it was given.
        while dead_letter.stored.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        tokio::pin!(status);
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(futures::poll!(status.as_mut()).is_pending());
        assert_eq!(*sink.sent.lock().unwrap(), vec![2]);
        assert!(
            tx.len() >= 6,
            "the dispatcher stopped reading its queue: {}",
            tx.len()
        );
        assert!(
            !health.is_healthy(),
            "a final failure makes the sink unhealthy"
        );
        // The queue is writable again: the batch counts as handled, the rest flows.
        gate.notify_one();
        assert_eq!(status.await, BatchStatus::Delivered);
        drop(tx);
        task.await.unwrap();
        assert_eq!(sink.sent.lock().unwrap().len(), 6);
        assert!(health.is_healthy(), "healthy again once a push is stored");
    }

    #[tokio::test]
    async fn a_batch_dropped_in_flight_is_errored_not_delivered() {
        // A sink that never answers, and a dispatcher aborted as a shutdown timeout does.
        struct Hang;
        impl SinkService for Hang {
            fn send<'a>(&'a self, _batch: &'a EventBatch) -> BoxFuture<'a, SendOutcome> {
                Box::pin(futures::future::pending())
            }
        }
        let (_settings_tx, settings) = watch::channel(DispatcherConfig {
            batch_timeout: Duration::from_millis(1),
            ..fast_config()
        });
        let health = HealthRegistry::default().register("s", ComponentKind::Sink);
        let (tx, rx) = queue(1000, WhenFull::Block, None);
        let task = tokio::spawn(Dispatcher::new("s", Arc::new(Hang), settings, health).run(rx));
        let (sending, sending_rx) = BatchNotifier::new_with_receiver();
        let (queued, queued_rx) = BatchNotifier::new_with_receiver();
        tx.send(EventBatch::new(events(4), Finalizers::new(sending)))
            .await
            .unwrap();
        while !tx.is_empty() {
            tokio::task::yield_now().await;
        }
        tx.send(EventBatch::new(events(4), Finalizers::new(queued)))
            .await
            .unwrap();
        task.abort();
        let _ = task.await;
        drop(tx);
        assert_eq!(sending_rx.await, BatchStatus::Errored);
        assert_eq!(queued_rx.await, BatchStatus::Errored);
    }

    #[tokio::test]
    async fn every_entry_rejected_makes_the_sink_unhealthy() {
        let sink = Arc::new(ScriptedSink::default());
        let all = (0..2)
            .map(|index| Rejected {
                index,
                reason: "line_too_long",
                detail: "max entry size '10' bytes exceeded".into(),
            })
            .collect();
        sink.script
            .lock()
            .unwrap()
            .push_back(SendOutcome::Partial { rejected: all });
        let (_settings_tx, settings) = watch::channel(fast_config());
        let health = HealthRegistry::default().register("s", ComponentKind::Sink);
        let (tx, rx) = queue(1000, WhenFull::Block, None);
        let dispatcher = Dispatcher::new("s", sink, settings, health.clone())
            .with_dead_letter(Arc::new(RecordingDeadLetter::default()));
        let task = tokio::spawn(dispatcher.run(rx));
        tx.send(EventBatch::new(events(2), Finalizers::default()))
            .await
            .unwrap();
        drop(tx);
        task.await.unwrap();
        assert!(!health.is_healthy());
    }

    #[tokio::test]
    async fn too_large_splits_until_it_fits() {
        let sink = Arc::new(ScriptedSink::default());
        let too_large = || SendOutcome::TooLarge {
            detail: "413".into(),
        };
        // 4 events: too large; halves of 2: the first too large again, then fine.
        sink.script
            .lock()
            .unwrap()
            .extend([too_large(), too_large()]);
        let (notifier, status) = BatchNotifier::new_with_receiver();
        let batch = EventBatch::new(events(4), Finalizers::new(notifier));
        run_with(sink.clone(), fast_config(), vec![batch]).await;
        assert_eq!(status.await, BatchStatus::Delivered);
        assert_eq!(*sink.sent.lock().unwrap(), vec![4, 2, 1, 1, 2]);
    }

    #[test]
    fn validation_names_each_bad_key() {
        let config = DispatcherConfig {
            worker_count: 0,
            retry_multiplier: 0.5,
            ..DispatcherConfig::default()
        };
        let paths: Vec<String> = config
            .validate("dispatcher")
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            vec!["dispatcher.worker_count", "dispatcher.retry_multiplier"]
        );
    }
}
