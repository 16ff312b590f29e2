//! The lines read, on their way out: gathered into batches, each registered with the committer
//! before it is sent.
//!
//! Guarantees:
//! - Every batch's acknowledgement tokens (one per read it holds, in read order) reach the
//!   committer before the batch is sent, in the order the batches are sent: the committer never
//!   sees a later offset before an earlier one.
//! - Small reads of several files in one turn go out as one batch (one wake-up of the
//!   pipeline instead of one per file); a read of half the buffer or more goes out at once.
//! - While the pipeline is full, a batch is held (registered, not yet sent) and nothing more is
//!   read: that is how backpressure reaches the files. The reader waits for room in slices
//!   ([`Outbox::send_held`]) and follows new and renamed files in between, so that a file
//!   rotated out of the globs meanwhile is known (and saved) before a crash could forget it.
//!   Once the pipeline or the committer is gone (shutdown), the outbox is closed and the
//!   reader stops. A held batch is never dropped: its acknowledgement would settle it as
//!   delivered.

use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::AckToken;
use crate::ack::{BatchNotifier, BatchStatusReceiver, Finalizers};
use crate::event::{EventBatch, LogEvent};

pub(super) type AckSender = mpsc::UnboundedSender<(Vec<AckToken>, BatchStatusReceiver)>;

pub(super) struct Outbox {
    out: mpsc::Sender<EventBatch>,
    acks: AckSender,
    events: Vec<LogEvent>,
    /// The reads the gathered events came from, in read order: acknowledged together.
    tokens: Vec<AckToken>,
    pending_bytes: usize,
    /// Bytes gathered at which the batch goes out at once.
    send_at: usize,
    closed: bool,
    /// A batch registered with the committer that the full pipeline has not taken yet.
    held: Option<EventBatch>,
    /// The runtime whose timer bounds a wait for room (the reader runs on a thread of its own).
    runtime: Handle,
}

impl Outbox {
    pub(super) fn new(
        out: mpsc::Sender<EventBatch>,
        acks: AckSender,
        read_buffer: usize,
        runtime: Handle,
    ) -> Self {
        Self {
            out,
            acks,
            events: Vec::new(),
            tokens: Vec::new(),
            pending_bytes: 0,
            // Half the buffer: a full read (a whole buffer less a partial line) goes out on
            // its own, never merged with the next one (merging large reads only copies events).
            send_at: read_buffer / 2,
            closed: false,
            held: None,
            runtime,
        }
    }

    /// Ends the stream of batches (the source's output); nothing is sent after it. Call it only
    /// with nothing held: a held batch would be dropped.
    pub(super) fn close_output(&mut self) {
        debug_assert!(self.held.is_none(), "a held batch would be dropped");
        // The receiver sees the end once this, the only sender, is gone.
        let (detached, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.out, detached));
        self.closed = true;
    }

    /// Whether the committer no longer takes registrations.
    pub(super) fn committer_gone(&self) -> bool {
        self.acks.is_closed()
    }

    /// Whether a batch waits for room in the full pipeline: read nothing more until it went.
    pub(super) fn blocked(&self) -> bool {
        self.held.is_some()
    }

    /// Hands the held batch to the pipeline, waiting for room at most `limit` (`None`: as long
    /// as it takes). Returns whether nothing is held any more (sent, or the pipeline is gone).
    pub(super) fn send_held(&mut self, limit: Option<Duration>) -> bool {
        let Some(batch) = self.held.take() else {
            return true;
        };
        let Some(limit) = limit else {
            if self.out.blocking_send(batch).is_err() {
                self.closed = true;
            }
            return true;
        };
        let out = &self.out;
        let room = self
            .runtime
            .block_on(async { tokio::time::timeout(limit, out.reserve()).await });
        match room {
            Ok(Ok(permit)) => {
                permit.send(batch);
                true
            }
            Ok(Err(_closed)) => {
                self.closed = true;
                true
            }
            Err(_elapsed) => {
                self.held = Some(batch);
                false
            }
        }
    }

    /// Whether the pipeline or the committer is gone.
    pub(super) fn closed(&self) -> bool {
        self.closed
    }

    /// Adds the lines of one read (`bytes` of the file) that `token` acknowledges. A read with
    /// no lines (only skipped bytes) still gives its token, settled with the batch it joins.
    pub(super) fn add(&mut self, events: Vec<LogEvent>, token: AckToken, bytes: usize) {
        self.pending_bytes += bytes;
        if self.events.is_empty() {
            self.events = events;
        } else {
            self.events.extend(events);
        }
        self.tokens.push(token);
        if self.pending_bytes >= self.send_at {
            self.flush();
        }
    }

    /// Registers the gathered reads' tokens with the committer, then sends their lines as one
    /// batch, or holds it while the pipeline is full (see [`Outbox::blocked`]). One
    /// acknowledgement per batch, not per read: with many files, a turn reads many files a
    /// line or two each.
    pub(super) fn flush(&mut self) {
        self.pending_bytes = 0;
        if self.tokens.is_empty() {
            return;
        }
        // Batches leave in the order they were registered: a held one goes first.
        self.send_held(None);
        if self.closed {
            return;
        }
        let tokens = std::mem::take(&mut self.tokens);
        let events = std::mem::take(&mut self.events);
        let (notifier, receiver) = BatchNotifier::new_with_receiver();
        if self.acks.send((tokens, receiver)).is_err() {
            self.closed = true;
            return;
        }
        if events.is_empty() {
            // Only skipped bytes: the notifier is dropped unused and settles at once, so the
            // committed offsets may move past them once earlier batches are done.
            return;
        }
        match self
            .out
            .try_send(EventBatch::new(events, Finalizers::new(notifier)))
        {
            Ok(()) => {}
            Err(TrySendError::Full(batch)) => self.held = Some(batch),
            Err(TrySendError::Closed(_)) => self.closed = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;
    use crate::ack::BatchStatus;
    use crate::positions::FileKey;

    /// A runtime for the outbox's bounded waits, kept alive by the caller.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap()
    }

    fn token(inode: u64, end: u64) -> AckToken {
        AckToken {
            key: FileKey { dev: 1, inode },
            epoch: 0,
            end,
            marker: 0,
            marker_len: 0,
        }
    }

    fn lines(n: usize) -> Vec<LogEvent> {
        (0..n)
            .map(|i| crate::transforms::testing::event(format!("line {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn the_reads_of_a_turn_go_out_as_one_batch_acknowledged_once_for_all_of_them() {
        let (out, mut batches) = mpsc::channel(4);
        let (acks, mut registrations) = mpsc::unbounded_channel();
        let rt = runtime();
        let mut outbox = Outbox::new(out, acks, 1 << 20, rt.handle().clone());

        outbox.add(lines(2), token(1, 20), 20);
        outbox.add(lines(1), token(2, 10), 10);
        // A read that only skipped bytes (the tail of an oversize line) adds its token alone.
        outbox.add(Vec::new(), token(1, 90), 70);
        assert!(
            registrations.try_recv().is_err(),
            "nothing goes out before the turn ends"
        );
        outbox.flush();

        let (tokens, receiver) = registrations.try_recv().unwrap();
        assert_eq!(tokens, vec![token(1, 20), token(2, 10), token(1, 90)]);
        let mut batch = batches.try_recv().unwrap();
        assert_eq!(batch.events.len(), 3);
        assert!(batches.try_recv().is_err() && registrations.try_recv().is_err());

        // The batch's one acknowledgement settles every read in it.
        let mut receiver = Box::pin(receiver);
        assert!(receiver.as_mut().now_or_never().is_none());
        batch.finalizers.settle(BatchStatus::Delivered);
        assert_eq!(receiver.now_or_never(), Some(BatchStatus::Delivered));

        // An empty turn sends nothing.
        outbox.flush();
        assert!(batches.try_recv().is_err() && registrations.try_recv().is_err());
    }

    #[test]
    fn a_turn_of_skipped_bytes_only_is_registered_and_settles_at_once() {
        let (out, mut batches) = mpsc::channel(4);
        let (acks, mut registrations) = mpsc::unbounded_channel();
        let rt = runtime();
        let mut outbox = Outbox::new(out, acks, 1 << 20, rt.handle().clone());
        outbox.add(Vec::new(), token(1, 4096), 4096);
        outbox.flush();
        let (tokens, receiver) = registrations.try_recv().unwrap();
        assert_eq!(tokens, vec![token(1, 4096)]);
        assert!(batches.try_recv().is_err());
        assert_eq!(receiver.now_or_never(), Some(BatchStatus::Delivered));
    }

    #[test]
    fn a_read_of_half_the_buffer_goes_out_at_once_and_a_gone_pipeline_closes_the_outbox() {
        let (out, mut batches) = mpsc::channel(4);
        let (acks, mut registrations) = mpsc::unbounded_channel();
        let rt = runtime();
        let mut outbox = Outbox::new(out, acks, 1000, rt.handle().clone());
        outbox.add(lines(1), token(1, 500), 500);
        assert_eq!(registrations.try_recv().unwrap().0, vec![token(1, 500)]);
        assert_eq!(batches.try_recv().unwrap().events.len(), 1);

        drop(batches);
        outbox.add(lines(1), token(1, 1000), 500);
        assert!(outbox.closed());
    }

    #[test]
    fn a_full_pipeline_holds_the_batch_until_there_is_room_and_keeps_the_order() {
        let (out, mut batches) = mpsc::channel(1);
        let (acks, mut registrations) = mpsc::unbounded_channel();
        let rt = runtime();
        let mut outbox = Outbox::new(out, acks, 1000, rt.handle().clone());
        outbox.add(lines(1), token(1, 500), 500);
        assert!(!outbox.blocked(), "the first batch fits");
        outbox.add(lines(2), token(1, 1000), 500);
        assert!(outbox.blocked(), "the second waits for room");
        assert_eq!(registrations.try_recv().unwrap().0, vec![token(1, 500)]);
        assert_eq!(
            registrations.try_recv().unwrap().0,
            vec![token(1, 1000)],
            "a held batch is registered already"
        );
        // No room within the wait: still held, nothing lost.
        assert!(!outbox.send_held(Some(Duration::from_millis(20))));
        assert!(outbox.blocked());

        assert_eq!(batches.try_recv().unwrap().events.len(), 1);
        assert!(outbox.send_held(Some(Duration::from_secs(30))));
        assert!(!outbox.blocked());
        assert_eq!(batches.try_recv().unwrap().events.len(), 2);

        // A flush while a batch is held sends the held one first.
        outbox.add(lines(3), token(1, 1500), 500);
        outbox.add(lines(4), token(1, 2000), 500);
        assert!(outbox.blocked());
        let taker = std::thread::spawn(move || {
            let first = batches.blocking_recv().unwrap().events.len();
            let second = batches.blocking_recv().unwrap().events.len();
            (first, second)
        });
        outbox.add(Vec::new(), token(1, 2100), 100);
        outbox.flush();
        outbox.send_held(None);
        assert_eq!(taker.join().unwrap(), (3, 4));
    }
}
