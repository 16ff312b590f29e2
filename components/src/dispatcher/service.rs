//! The contract between the dispatcher and a sink: partitions, requests built once, outcomes.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::event::{EventBatch, LogEvent};

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

/// Which partition an event belongs to. Events of different partitions never share a request,
/// and each partition backs off on its own (for Loki: the tenant). `None` is the partition of a
/// sink that has only one.
pub type PartitionKey = Option<Arc<str>>;

/// A request built from one batch of one partition, once: a retry sends it again as it is
/// (grouped, guarded, encoded and compressed already). What it holds is the sink's own business.
pub struct SinkRequest(Box<dyn Any + Send + Sync>);

impl SinkRequest {
    pub fn new(request: impl Any + Send + Sync) -> Self {
        Self(Box::new(request))
    }

    /// The request as the sink built it.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }

    /// The request as the sink built it, to rebuild in place (a request gone stale while it
    /// waited to be retried).
    pub fn get_mut<T: Any>(&mut self) -> Option<&mut T> {
        self.0.downcast_mut::<T>()
    }
}

/// A sink: turns a batch into a request, sends it, and classifies the answer.
///
/// Implementations must be cancel-safe (the dispatcher drops a send that exceeds
/// `send_timeout`) and must not assume a request is sent only once: a retry sends the same
/// request again, which the sink may rebuild in place when what it decided at build time no
/// longer holds (Loki: an entry that has since become too old).
pub trait SinkService: Send + Sync + 'static {
    /// Whether events go to different partitions; when `false` (the default) [`partition`] is
    /// never called and every batch is one partition.
    ///
    /// [`partition`]: SinkService::partition
    fn partitioned(&self) -> bool {
        false
    }

    /// The partition of one event (called once per event of a partitioned sink).
    fn partition(&self, _event: &LogEvent) -> PartitionKey {
        None
    }

    /// Builds the request for `batch`, whose events all belong to `partition`; or, when there
    /// is nothing to send (every event decided before sending), what became of the batch.
    fn request(
        &self,
        batch: &EventBatch,
        partition: &PartitionKey,
    ) -> Result<SinkRequest, SendOutcome>;

    /// Sends a request built by [`SinkService::request`] for `batch`, and classifies the answer.
    fn send<'a>(
        &'a self,
        batch: &'a EventBatch,
        request: &'a mut SinkRequest,
    ) -> BoxFuture<'a, SendOutcome>;

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

/// Builds the request for `batch` (its partition taken from its first event) and sends it
/// once, without the dispatcher: for tests and benchmarks of one sink.
pub async fn send_once(service: &dyn SinkService, batch: &EventBatch) -> SendOutcome {
    let partition = match batch.events.first() {
        Some(event) if service.partitioned() => service.partition(event),
        _ => None,
    };
    match service.request(batch, &partition) {
        Ok(mut request) => service.send(batch, &mut request).await,
        Err(decided) => decided,
    }
}
