//! Delivering one batch: its request built once, sent, retried with backoff on the same
//! request, split in two when too large, and settled exactly once.
//!
//! Guarantees:
//! - A retry resends the request built for the first attempt (the sink may rebuild it in
//!   place); a split builds one request per half.
//! - While the batch waits out a retry delay its partition is backing off and the batch is
//!   parked (see [`super::backoff`]).
//! - What is not delivered goes to the dead-letter queue when there is one (then it counts as
//!   handled), else it is logged, counted as dropped and acknowledged `Errored`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::KeyValue;
use tokio::time::Instant;

use super::DispatcherConfig;
use super::backoff::{Backoffs, Holding};
use super::events::{BatchSplit, EventsDeadLettered, EventsLost, SendRefused, SendRetrying};
use super::service::{DeadLetter, PartitionKey, Rejected, SendOutcome, SinkRequest, SinkService};
use crate::ack::BatchStatus;
use crate::event::{EventBatch, LogEvent};
use crate::telemetry::{self, ComponentAttrs, HealthHandle, LogThrottle, TelemetryEvent};

/// What every delivery of one dispatcher shares.
pub(super) struct Delivery {
    pub(super) service: Arc<dyn SinkService>,
    pub(super) attrs: ComponentAttrs,
    pub(super) health: HealthHandle,
    pub(super) dead_letter: Option<Arc<dyn DeadLetter>>,
    /// One line per this while batches keep going to the dead-letter queue.
    pub(super) dead_letter_log: Mutex<LogThrottle>,
    pub(super) backoffs: Arc<Backoffs>,
}

/// What the outcome of one attempt leaves to do.
enum Next {
    Settle(BatchStatus),
    /// The halves carry the batch's obligations now.
    Split,
    RetryAfter(Duration),
}

impl Delivery {
    /// Delivers `batch` of `partition` until it is settled.
    pub(super) async fn deliver(
        self: Arc<Self>,
        partition: PartitionKey,
        batch: EventBatch,
        config: DispatcherConfig,
    ) {
        telemetry::BATCH_SIZE.record(batch.len() as f64, &self.attrs.sink);
        // Batches still to send; a too-large answer replaces one with its two halves.
        let mut work = vec![batch];
        while let Some(mut batch) = work.pop() {
            let mut backoff = config.backoff();
            let mut request: Option<SinkRequest> = None;
            // Set while this batch backs off its partition.
            let mut holding: Option<Holding> = None;
            let status = loop {
                let outcome = match request.as_mut() {
                    Some(request) => self.attempt(&batch, request, config.send_timeout).await,
                    None => match self.service.request(&batch, &partition) {
                        Ok(built) => {
                            request = Some(built);
                            continue;
                        }
                        Err(decided) => decided,
                    },
                };
                match self
                    .next(outcome, &mut batch, &partition, &mut work, &mut backoff)
                    .await
                {
                    Next::Settle(status) => break Some(status),
                    Next::Split => break None,
                    Next::RetryAfter(delay) => {
                        holding.get_or_insert_with(|| self.backoffs.hold(partition.clone()));
                        let _parked = self.backoffs.park(batch.len());
                        tokio::time::sleep(delay).await;
                    }
                }
            };
            drop(holding);
            if let Some(status) = status {
                batch.finalizers.settle(status);
            }
        }
    }

    /// One send of `request`, bounded by `send_timeout`, timed and counted by outcome.
    async fn attempt(
        &self,
        batch: &EventBatch,
        request: &mut SinkRequest,
        send_timeout: Duration,
    ) -> SendOutcome {
        let started = Instant::now();
        let outcome =
            match tokio::time::timeout(send_timeout, self.service.send(batch, request)).await {
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
            &[self.attrs.sink[0].clone(), KeyValue::new("outcome", label)],
        );
        outcome
    }

    /// What `outcome` means for `batch`: settle it, split it into `work`, or retry it.
    async fn next(
        &self,
        outcome: SendOutcome,
        batch: &mut EventBatch,
        partition: &PartitionKey,
        work: &mut Vec<EventBatch>,
        backoff: &mut impl Iterator<Item = Duration>,
    ) -> Next {
        match outcome {
            SendOutcome::Delivered => {
                self.health.healthy();
                self.attrs.processed(batch.len());
                Next::Settle(BatchStatus::Delivered)
            }
            SendOutcome::Partial { rejected } => {
                Next::Settle(self.partial(&batch.events, &rejected).await)
            }
            SendOutcome::TooLarge { detail } => {
                if batch.len() > 1 {
                    let EventBatch {
                        mut events,
                        finalizers,
                    } = std::mem::take(batch);
                    let second = events.split_off(events.len() / 2);
                    BatchSplit {
                        attrs: &self.attrs,
                        events: events.len() + second.len(),
                    }
                    .emit();
                    work.push(EventBatch::new(second, finalizers.clone()));
                    work.push(EventBatch::new(events, finalizers));
                    return Next::Split;
                }
                let all: Vec<&LogEvent> = batch.events.iter().collect();
                Next::Settle(self.failed(all, "too_large", &detail).await)
            }
            SendOutcome::Retry {
                reason,
                detail,
                retry_after,
            } => {
                let Some(delay) = backoff.next() else {
                    self.attrs.error(reason);
                    SendRefused {
                        attrs: &self.attrs,
                        health: &self.health,
                        reason: "retries_exhausted",
                        detail: &detail,
                    }
                    .emit();
                    let all: Vec<&LogEvent> = batch.events.iter().collect();
                    return Next::Settle(self.failed(all, "retries_exhausted", &detail).await);
                };
                let delay = retry_after.map_or(delay, |after| after.max(delay));
                SendRetrying {
                    attrs: &self.attrs,
                    health: &self.health,
                    partition,
                    reason,
                    detail: &detail,
                    delay,
                    events: batch.len(),
                }
                .emit();
                Next::RetryAfter(delay)
            }
            SendOutcome::Failed { reason, detail } => {
                // Refused for good: resending cannot help, and the sink is not doing its job
                // (wrong endpoint, credentials, tenant).
                SendRefused {
                    attrs: &self.attrs,
                    health: &self.health,
                    reason,
                    detail: &detail,
                }
                .emit();
                let all: Vec<&LogEvent> = batch.events.iter().collect();
                Next::Settle(self.failed(all, reason, &detail).await)
            }
        }
    }

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
        let Some(dead_letter) = &self.dead_letter else {
            EventsLost {
                attrs: &self.attrs,
                reason,
                detail: &detail,
                events: count,
                dead_letter_refused: false,
            }
            .emit();
            return BatchStatus::Errored;
        };
        match dead_letter.store(events, reason, detail).await {
            Ok(()) => {
                EventsDeadLettered {
                    attrs: &self.attrs,
                    reason,
                    detail,
                    events: count,
                    log: &mut self
                        .dead_letter_log
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                }
                .emit();
                BatchStatus::Delivered
            }
            Err(error) => {
                EventsLost {
                    attrs: &self.attrs,
                    reason,
                    detail: &error,
                    events: count,
                    dead_letter_refused: true,
                }
                .emit();
                BatchStatus::Errored
            }
        }
    }
}

/// The rejected events grouped by reason (first detail kept), each event once.
fn group_rejected<'a>(
    events: &'a [LogEvent],
    rejected: &[Rejected],
) -> Vec<(&'static str, String, Vec<&'a LogEvent>)> {
    let mut groups: Vec<(&'static str, String, Vec<&LogEvent>)> = Vec::new();
    let mut seen = HashSet::new();
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
