//! A source's batches, handed over from the threads and tasks that work for it.
//!
//! The file source reads on a thread of its own and saves positions in a task of its own; the
//! docker source supervises its containers in one task and saves cursors in another. Should one
//! of them panic (a bug), the source would look alive while reading nothing more (a dead
//! reader closes the batch channel, and a stream that merely ended there looks like a source
//! that finished) or while saving nothing more (a dead committer leaves every acknowledgement
//! queued in memory and the positions where they were). [`batches_from`] raises such a panic
//! again in the source's own task instead, at the next poll, where the topology reports it and
//! the shipper stops with an error (see `log_capturer::tasks`); what was not acknowledged is
//! read again after the restart.
//!
//! Guarantees: a panic of a helper run with [`drive_helper`] reaches the stream's task at its
//! next poll (batches still in the channel are dropped unacknowledged), or, once the stream has
//! ended, the task that waits for the helper to finish; a panic of the producer
//! run with [`run_producer`] or [`drive_producer`] is raised after its last batch, never taken
//! for the end of the source; helpers and producers that end without panicking change nothing:
//! the stream ends when its channel does.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::task::Poll;

use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};

use crate::{EventBatch, EventStream};

type Payload = Box<dyn Any + Send>;

/// Where a source's helpers report their panics; one per source, cloned for each helper.
#[derive(Clone)]
pub struct PanicReports(mpsc::UnboundedSender<Payload>);

/// The receiving end of [`PanicReports`], read by [`batches_from`].
pub struct PanicReceiver(mpsc::UnboundedReceiver<Payload>);

/// A source's panic reports and their receiver.
pub fn panic_reports() -> (PanicReports, PanicReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    (PanicReports(tx), PanicReceiver(rx))
}

/// How the thread or task that sends a source's batches ended: resolved with the panic's
/// payload, or dropped when it ended without one.
pub type ProducerEnd = oneshot::Receiver<Payload>;

/// Runs the batches' producer on this thread; `end` learns how it ended.
pub fn run_producer(end: oneshot::Sender<Payload>, producer: impl FnOnce()) {
    if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(producer)) {
        let _ = end.send(payload);
    }
}

/// Runs the batches' producer to its end; `end` learns how it ended.
pub async fn drive_producer(end: oneshot::Sender<Payload>, producer: impl Future<Output = ()>) {
    if let Err(payload) = AssertUnwindSafe(producer).catch_unwind().await {
        let _ = end.send(payload);
    }
}

/// Runs a helper (a committer) to its end, reporting its panic, if any. With nobody left to
/// report to (the source's stream has ended: a shutdown's last save), the panic goes on
/// unwinding this task, for whoever waits for it ([`crate::Finishing`]).
pub async fn drive_helper(reports: PanicReports, helper: impl Future<Output = ()>) {
    if let Err(payload) = AssertUnwindSafe(helper).catch_unwind().await
        && let Err(mpsc::error::SendError(payload)) = reports.0.send(payload)
    {
        std::panic::resume_unwind(payload);
    }
}

/// The batches of `rx`. A helper's panic is raised again at the next poll; when `rx` ends, the
/// stream waits for `producer` to say how it ended (its batch sender is dropped while it
/// unwinds, a moment before the panic is handed over) and raises its panic, if any.
pub fn batches_from(
    mut rx: mpsc::Receiver<EventBatch>,
    producer: ProducerEnd,
    helpers: PanicReceiver,
) -> EventStream {
    let mut helpers = Some(helpers.0);
    // Taken once it has answered: a oneshot must not be polled again after that.
    let mut producer = Some(producer);
    Box::pin(futures::stream::poll_fn(move |cx| {
        let Some(end) = producer.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(reports) = helpers.as_mut() {
            match reports.poll_recv(cx) {
                Poll::Ready(Some(payload)) => std::panic::resume_unwind(payload),
                // Every helper ended without a panic.
                Poll::Ready(None) => helpers = None,
                Poll::Pending => {}
            }
        }
        match rx.poll_recv(cx) {
            Poll::Ready(None) => match end.poll_unpin(cx) {
                Poll::Ready(Ok(payload)) => std::panic::resume_unwind(payload),
                Poll::Ready(Err(_)) => {
                    producer = None;
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::Finalizers;
    use futures::StreamExt;

    fn empty_batch() -> EventBatch {
        EventBatch::new(Vec::new(), Finalizers::default())
    }

    /// Reads `stream` to its end in a task; its panic's message, or the batches read.
    async fn read_all(mut stream: EventStream) -> Result<usize, String> {
        let reading = tokio::spawn(async move {
            let mut batches = 0;
            while stream.next().await.is_some() {
                batches += 1;
            }
            batches
        });
        reading.await.map_err(|error| {
            let payload = error.into_panic();
            payload
                .downcast_ref::<&str>()
                .map_or_else(|| "?".to_string(), |text| (*text).to_string())
        })
    }

    #[tokio::test]
    async fn a_reader_thread_that_panics_makes_its_stream_panic() {
        let (tx, rx) = mpsc::channel(4);
        let (_reports, panics) = panic_reports();
        let (end, producer) = oneshot::channel();
        let stream = batches_from(rx, producer, panics);
        std::thread::spawn(move || {
            run_producer(end, move || {
                tx.blocking_send(empty_batch()).unwrap();
                // The batch sender is dropped while this unwinds, before the panic is handed
                // over: the stream must not take the closed channel for the source's end.
                panic!("reader broke");
            });
        });
        assert_eq!(read_all(stream).await, Err("reader broke".to_string()));
    }

    #[tokio::test]
    async fn a_committer_that_panics_makes_the_stream_panic_while_batches_still_flow() {
        let (tx, rx) = mpsc::channel(4);
        let (reports, panics) = panic_reports();
        let (end, producer) = oneshot::channel();
        let stream = batches_from(rx, producer, panics);
        tokio::spawn(drive_helper(reports, async {
            panic!("committer broke");
        }));
        // The reader goes on sending (and keeps its end of the channel open) all along.
        let reader = tokio::spawn(drive_producer(end, async move {
            while tx.send(empty_batch()).await.is_ok() {}
        }));
        assert_eq!(read_all(stream).await, Err("committer broke".to_string()));
        reader.await.unwrap();
    }

    #[tokio::test]
    async fn helpers_that_end_leave_the_stream_to_end_after_every_batch() {
        let (tx, rx) = mpsc::channel(4);
        let (reports, panics) = panic_reports();
        let (end, producer) = oneshot::channel();
        let stream = batches_from(rx, producer, panics);
        // A committer that is still running when the batches end does not hold the end up.
        let committer = tokio::spawn(drive_helper(reports, std::future::pending()));
        tokio::spawn(drive_producer(end, async move {
            tx.send(empty_batch()).await.unwrap();
            tx.send(empty_batch()).await.unwrap();
        }));
        assert_eq!(read_all(stream).await, Ok(2));
        committer.abort();
    }

    #[tokio::test]
    async fn an_ended_stream_polled_again_stays_ended() {
        let (tx, rx) = mpsc::channel::<EventBatch>(1);
        let (_reports, panics) = panic_reports();
        let (end, producer) = oneshot::channel();
        let mut stream = batches_from(rx, producer, panics);
        drop((tx, end));
        assert!(stream.next().await.is_none());
        assert!(stream.next().await.is_none());
    }
}
