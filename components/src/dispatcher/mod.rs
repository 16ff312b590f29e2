//! The dispatcher: one per sink. It batches what arrives on the sink's queue, one partition
//! per batch, runs up to `worker_count` sends at once, retries with exponential backoff per
//! partition, and settles every batch's acknowledgements.
//!
//! Guarantees:
//! - A batch holds events of one partition (for Loki: one tenant), at most `batch_size` events
//!   and, unless a single event is larger, at most `batch_max_bytes`; a partial batch is sent
//!   `batch_timeout` after its first event.
//! - A sink's request is built once per batch and resent as it is on retries.
//! - Partitions back off on their own: while a batch of one partition waits to be retried, no
//!   other batch of that partition is sent, and batches of the other partitions are (its wait
//!   holds no worker). A partitioned sink keeps reading its queue meanwhile, holding at most
//!   `queue_size` events for partitions that back off; then backpressure reaches the sources.
//! - Events of one partition keep their order within a batch; with `worker_count > 1` whole
//!   batches may complete out of order (acknowledgements are ordered by the sources, not here).
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

mod backoff;
mod batcher;
mod config;
mod deliver;
mod events;
mod service;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::watch;
use tokio::time::Instant;

pub use config::DispatcherConfig;
pub use service::{
    DeadLetter, DeadLetterError, PartitionKey, Rejected, SendOutcome, SinkRequest, SinkService,
    send_once,
};

use backoff::Backoffs;
use batcher::{Batcher, Ready};
use deliver::Delivery;

use crate::queue::QueueReceiver;
use crate::telemetry::{ComponentAttrs, HealthHandle, LogThrottle};

/// How often "kept in the dead-letter queue" is logged while it goes on.
const DEAD_LETTER_LOG_EVERY: Duration = Duration::from_secs(10);

type InFlight = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs one sink.
pub struct Dispatcher {
    attrs: ComponentAttrs,
    service: Arc<dyn SinkService>,
    settings: watch::Receiver<DispatcherConfig>,
    health: HealthHandle,
    dead_letter: Option<Arc<dyn DeadLetter>>,
}

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
        let backoffs = Arc::new(Backoffs::default());
        let delivery = Arc::new(Delivery {
            service: self.service.clone(),
            attrs: self.attrs.clone(),
            health: self.health.clone(),
            dead_letter: self.dead_letter.clone(),
            dead_letter_log: Mutex::new(LogThrottle::new(DEAD_LETTER_LOG_EVERY)),
            backoffs: backoffs.clone(),
        });
        let service = self.service.clone();
        let partitioned: Option<&dyn SinkService> =
            service.partitioned().then_some(service.as_ref());
        let mut batcher = Batcher::default();
        let mut ready: VecDeque<Ready> = VecDeque::new();
        // Events in `ready`: waiting for a worker, or for their partition to stop backing off.
        let mut ready_events = 0usize;
        let mut inflight: FuturesUnordered<InFlight> = FuturesUnordered::new();
        let mut input_open = true;
        let mut settings_open = true;

        loop {
            let (parked_batches, parked_events) = backoffs.parked();
            while inflight.len().saturating_sub(parked_batches) < config.worker_count {
                let Some(next) = backoffs.next_sendable(&ready) else {
                    break;
                };
                let Some(Ready { partition, batch }) = ready.remove(next) else {
                    break;
                };
                ready_events -= batch.len();
                inflight.push(Box::pin(delivery.clone().deliver(
                    partition,
                    batch,
                    config.clone(),
                )));
            }
            if !input_open && batcher.is_empty() && ready.is_empty() && inflight.is_empty() {
                break;
            }
            // Read more only while no batch that could be sent waits for a worker: that is how
            // backpressure reaches the queue and from there the sources. Batches held for a
            // partition backing off let a partitioned sink read on (the next events may be
            // another partition's), up to `queue_size` events.
            let readable = if ready.is_empty() {
                true
            } else {
                partitioned.is_some()
                    && backoffs.next_sendable(&ready).is_none()
                    && ready_events + parked_events < config.queue_size
            };
            let deadline = batcher.deadline();
            let before = ready.len();
            tokio::select! {
                biased;
                Some(()) = inflight.next(), if !inflight.is_empty() => {}
                () = backoffs.changed() => {}
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
                received = input.recv(), if input_open && readable => match received {
                    Some(batch) => batcher.push(batch, &config, partitioned, &mut ready),
                    None => {
                        input_open = false;
                        batcher.flush_all(&mut ready);
                    }
                },
                () = sleep_until_or_forever(deadline), if deadline.is_some() => {
                    batcher.flush_due(Instant::now(), &mut ready);
                }
            }
            ready_events += ready
                .iter()
                .skip(before)
                .map(|r| r.batch.len())
                .sum::<usize>();
        }
        self.service.close().await;
    }
}

async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => futures::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::{BatchNotifier, BatchStatus, Finalizers};
    use crate::event::{EventBatch, Labels, LogEvent};
    use crate::queue::{WhenFull, queue};
    use crate::telemetry::{ComponentKind, HealthRegistry};
    use bytes::Bytes;
    use futures::future::BoxFuture;
    use std::sync::atomic::{AtomicBool, Ordering};

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
        requests_built: Mutex<usize>,
    }

    impl SinkService for ScriptedSink {
        fn request(
            &self,
            batch: &EventBatch,
            _partition: &PartitionKey,
        ) -> Result<SinkRequest, SendOutcome> {
            *self.requests_built.lock().unwrap() += 1;
            Ok(SinkRequest::new(batch.len()))
        }

        fn send<'a>(
            &'a self,
            batch: &'a EventBatch,
            request: &'a mut SinkRequest,
        ) -> BoxFuture<'a, SendOutcome> {
            assert_eq!(
                request.get::<usize>(),
                Some(&batch.len()),
                "built for this batch"
            );
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
        let (tx, rx) = queue(1000, usize::MAX, WhenFull::Block, None);
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
        assert_eq!(
            *sink.requests_built.lock().unwrap(),
            1,
            "a retry resends the request built for the first attempt"
        );
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
        let (tx, rx) = queue(1000, usize::MAX, WhenFull::Block, None);
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
        let (tx, rx) = queue(1000, usize::MAX, WhenFull::Block, None);
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
            fn request(
                &self,
                _batch: &EventBatch,
                _partition: &PartitionKey,
            ) -> Result<SinkRequest, SendOutcome> {
                Ok(SinkRequest::new(()))
            }
            fn send<'a>(
                &'a self,
                _batch: &'a EventBatch,
                _request: &'a mut SinkRequest,
            ) -> BoxFuture<'a, SendOutcome> {
                Box::pin(futures::future::pending())
            }
        }
        let (_settings_tx, settings) = watch::channel(DispatcherConfig {
            batch_timeout: Duration::from_millis(1),
            ..fast_config()
        });
        let health = HealthRegistry::default().register("s", ComponentKind::Sink);
        let (tx, rx) = queue(1000, usize::MAX, WhenFull::Block, None);
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
        let (tx, rx) = queue(1000, usize::MAX, WhenFull::Block, None);
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
        // One request per batch sent: each half gets its own.
        assert_eq!(*sink.requests_built.lock().unwrap(), 5);
    }

    /// Partitions by the `tenant` label (when `partitioned`); tenant `a` is answered 429 until
    /// `a_open`, every other push is stored. Records each send: partition and event times.
    #[derive(Default)]
    struct TenantSink {
        partitioned: bool,
        a_open: AtomicBool,
        sent: Mutex<Vec<(String, Vec<i64>)>>,
    }

    impl SinkService for TenantSink {
        fn partitioned(&self) -> bool {
            self.partitioned
        }

        fn partition(&self, event: &LogEvent) -> PartitionKey {
            event.labels.get("tenant").map(Arc::from)
        }

        fn request(
            &self,
            batch: &EventBatch,
            partition: &PartitionKey,
        ) -> Result<SinkRequest, SendOutcome> {
            if self.partitioned {
                assert!(batch.events.iter().all(|e| self.partition(e) == *partition));
            }
            Ok(SinkRequest::new(partition.clone()))
        }

        fn send<'a>(
            &'a self,
            batch: &'a EventBatch,
            request: &'a mut SinkRequest,
        ) -> BoxFuture<'a, SendOutcome> {
            let tenant = batch.events[0]
                .labels
                .get("tenant")
                .unwrap_or("")
                .to_string();
            let times = batch.events.iter().map(|e| e.timestamp_ns).collect();
            let held = tenant == "a" && !self.a_open.load(Ordering::SeqCst);
            if self.partitioned {
                let partition = request.get::<PartitionKey>().unwrap().clone();
                assert_eq!(partition.as_deref(), Some(tenant.as_str()));
            }
            self.sent.lock().unwrap().push((tenant, times));
            Box::pin(async move {
                if held {
                    SendOutcome::Retry {
                        reason: "http_429",
                        detail: "ingestion rate limit exceeded".into(),
                        retry_after: None,
                    }
                } else {
                    SendOutcome::Delivered
                }
            })
        }
    }

    fn tenant_events(tenant: &str, times: std::ops::Range<i64>) -> Vec<LogEvent> {
        times
            .map(|ts| LogEvent {
                timestamp_ns: ts,
                labels: Labels::new([("tenant", tenant)]),
                ..events(1).remove(0)
            })
            .collect()
    }

    fn backing_off_config() -> DispatcherConfig {
        DispatcherConfig {
            // One worker: a batch waiting out its retry delay must not hold it.
            worker_count: 1,
            batch_size: 2,
            max_retries: 1000,
            retry_base_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(1),
            ..fast_config()
        }
    }

    fn sends_of(sink: &TenantSink, tenant: &str) -> Vec<Vec<i64>> {
        sink.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == tenant)
            .map(|(_, times)| times.clone())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_partition_backing_off_neither_delays_nor_resends_another() {
        let sink = Arc::new(TenantSink {
            partitioned: true,
            ..Default::default()
        });
        let (settings_tx, settings) = watch::channel(backing_off_config());
        let health = HealthRegistry::default().register("s", ComponentKind::Sink);
        let (tx, rx) = queue(1000, usize::MAX, WhenFull::Block, None);
        let task = tokio::spawn(Dispatcher::new("s", sink.clone(), settings, health).run(rx));
        let (a_notifier, a_status) = BatchNotifier::new_with_receiver();
        // One input batch with both tenants: each gets its own batch.
        let mut mixed = tenant_events("a", 0..2);
        mixed.extend(tenant_events("b", 100..102));
        tx.send(EventBatch::new(mixed, Finalizers::new(a_notifier)))
            .await
            .unwrap();
        // Tenant a's second batch arrives while a backs off; then b's.
        let (a2_notifier, a2_status) = BatchNotifier::new_with_receiver();
        tx.send(EventBatch::new(
            tenant_events("a", 2..4),
            Finalizers::new(a2_notifier),
        ))
        .await
        .unwrap();
        let (b_notifier, b_status) = BatchNotifier::new_with_receiver();
        tx.send(EventBatch::new(
            tenant_events("b", 102..104),
            Finalizers::new(b_notifier),
        ))
        .await
        .unwrap();
        // Paused time runs a's retries while the test waits: b must not wait for them.
        assert_eq!(b_status.await, BatchStatus::Delivered);
        assert_eq!(sends_of(&sink, "b"), vec![vec![100, 101], vec![102, 103]]);
        let a_sends = sends_of(&sink, "a");
        assert!(
            a_sends.iter().all(|times| *times == vec![0, 1]),
            "only a's first batch is sent while a backs off: {a_sends:?}"
        );
        tokio::pin!(a_status);
        assert!(futures::poll!(a_status.as_mut()).is_pending());

        sink.a_open.store(true, Ordering::SeqCst);
        assert_eq!(a2_status.await, BatchStatus::Delivered);
        // The mixed input batch is settled once a's part is stored as well.
        assert_eq!(a_status.await, BatchStatus::Delivered);
        let a_sends = sends_of(&sink, "a");
        assert_eq!(a_sends.last(), Some(&vec![2, 3]));
        assert_eq!(a_sends.iter().filter(|t| **t == vec![2, 3]).count(), 1);
        // b's pushes were never resent.
        assert_eq!(sends_of(&sink, "b").len(), 2);
        drop(tx);
        task.await.unwrap();
        drop(settings_tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sink_without_partitions_sends_nothing_else_while_a_batch_backs_off() {
        let sink = Arc::new(TenantSink::default());
        let config = DispatcherConfig {
            worker_count: 4,
            ..backing_off_config()
        };
        let (settings_tx, settings) = watch::channel(config);
        let health = HealthRegistry::default().register("s", ComponentKind::Sink);
        let (tx, rx) = queue(1000, usize::MAX, WhenFull::Block, None);
        let task = tokio::spawn(Dispatcher::new("s", sink.clone(), settings, health).run(rx));
        let (first, first_status) = BatchNotifier::new_with_receiver();
        tx.send(EventBatch::new(
            tenant_events("a", 0..2),
            Finalizers::new(first),
        ))
        .await
        .unwrap();
        let (second, second_status) = BatchNotifier::new_with_receiver();
        tx.send(EventBatch::new(
            tenant_events("b", 2..4),
            Finalizers::new(second),
        ))
        .await
        .unwrap();
        // Let the first batch be retried a few times (paused time advances by itself).
        while sink.sent.lock().unwrap().len() < 5 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(
            sends_of(&sink, "b").is_empty(),
            "the whole sink backs off with its one partition"
        );
        sink.a_open.store(true, Ordering::SeqCst);
        assert_eq!(first_status.await, BatchStatus::Delivered);
        assert_eq!(second_status.await, BatchStatus::Delivered);
        assert_eq!(sends_of(&sink, "b"), vec![vec![2, 3]]);
        drop(tx);
        task.await.unwrap();
        drop(settings_tx);
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
