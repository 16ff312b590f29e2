//! The lines read, on their way out: gathered into batches, each registered with the committer
//! before it is sent.
//!
//! Guarantees:
//! - Every batch's acknowledgement token reaches the committer before the batch is sent, in
//!   the order the batches are sent: the committer never sees a later offset before an
//!   earlier one.
//! - Small reads of several files in one turn go out as one batch (one wake-up of the
//!   pipeline instead of one per file); a read of half the buffer or more goes out at once.
//! - Sending blocks while the pipeline is full: that is how backpressure reaches the files.
//!   Once the pipeline or the committer is gone (shutdown), the outbox is closed and the
//!   reader stops.

use tokio::sync::mpsc;

use super::AckToken;
use crate::ack::{BatchNotifier, BatchStatusReceiver, Finalizers};
use crate::event::{EventBatch, LogEvent};

pub(super) type AckSender = mpsc::UnboundedSender<(AckToken, BatchStatusReceiver)>;

pub(super) struct Outbox {
    out: mpsc::Sender<EventBatch>,
    acks: AckSender,
    pending: Option<EventBatch>,
    pending_bytes: usize,
    /// Bytes gathered at which the batch goes out at once.
    send_at: usize,
    closed: bool,
}

impl Outbox {
    pub(super) fn new(out: mpsc::Sender<EventBatch>, acks: AckSender, read_buffer: usize) -> Self {
        Self {
            out,
            acks,
            pending: None,
            pending_bytes: 0,
            // Half the buffer: a full read (a whole buffer less a partial line) goes out on
            // its own, never merged with the next one (merging large reads only copies events).
            send_at: read_buffer / 2,
            closed: false,
        }
    }

    /// Whether the pipeline or the committer is gone.
    pub(super) fn closed(&self) -> bool {
        self.closed
    }

    /// Registers `token` with the committer; the notifier to settle once the lines up to it
    /// are handled, or `None` when the committer is gone. A notifier dropped unused settles
    /// at once (bytes skipped without lines).
    pub(super) fn register(&mut self, token: AckToken) -> Option<BatchNotifier> {
        let (notifier, receiver) = BatchNotifier::new_with_receiver();
        if self.acks.send((token, receiver)).is_err() {
            self.closed = true;
            return None;
        }
        Some(notifier)
    }

    /// Adds the lines of one read (`bytes` of the file) owed to `notifier`.
    pub(super) fn add(&mut self, events: Vec<LogEvent>, notifier: BatchNotifier, bytes: usize) {
        self.pending_bytes += bytes;
        match &mut self.pending {
            Some(pending) => {
                pending.events.extend(events);
                pending.finalizers.merge(Finalizers::new(notifier));
            }
            None => self.pending = Some(EventBatch::new(events, Finalizers::new(notifier))),
        }
        if self.pending_bytes >= self.send_at {
            self.flush();
        }
    }

    /// Sends what is gathered as one batch, waiting while the pipeline is full.
    pub(super) fn flush(&mut self) {
        self.pending_bytes = 0;
        let Some(batch) = self.pending.take() else {
            return;
        };
        if self.out.blocking_send(batch).is_err() {
            self.closed = true;
        }
    }
}
