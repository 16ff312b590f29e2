//! A source's batches, handed over from the thread or task that produces them.
//!
//! The file source reads on a thread of its own and the docker source supervises its
//! containers in a task of its own; both send batches over a channel that the source's stream
//! reads. Should the producer panic (a bug), the channel closes, and a stream that merely ended
//! there would look like a source that finished: the shipper would go on running, reading
//! nothing more. [`batches_from`] ends the stream the way its producer ended instead: after the
//! last batch, a panic of the producer is raised again in the source's own task, where the
//! topology reports it and the shipper stops with an error (see `log_capturer::tasks`).
//!
//! Guarantees: every batch sent before the producer ended is yielded first; a producer that ends
//! without panicking (shutdown) ends the stream, as before.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

use crate::{EventBatch, EventStream};

/// What a producer that panicked hands to its stream: the panic's payload.
pub type Panicked = oneshot::Sender<Box<dyn Any + Send>>;

/// Runs `produce` on this thread, handing its panic, if any, to the stream (`panicked`).
pub fn run_producer(panicked: Panicked, produce: impl FnOnce()) {
    if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(produce)) {
        let _ = panicked.send(payload);
    }
}

/// Runs `produce` to its end, handing its panic, if any, to the stream (`panicked`).
pub async fn drive_producer(panicked: Panicked, produce: impl Future<Output = ()>) {
    if let Err(payload) = AssertUnwindSafe(produce).catch_unwind().await {
        let _ = panicked.send(payload);
    }
}

/// The batches of `rx`, then the producer's panic raised again when it panicked.
pub fn batches_from(
    mut rx: mpsc::Receiver<EventBatch>,
    producer_panicked: oneshot::Receiver<Box<dyn Any + Send>>,
) -> EventStream {
    let batches = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let end = futures::stream::once(async move {
        if let Ok(payload) = producer_panicked.await {
            std::panic::resume_unwind(payload);
        }
    })
    .filter_map(|()| std::future::ready(None::<EventBatch>));
    Box::pin(batches.chain(end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::Finalizers;

    fn empty_batch() -> EventBatch {
        EventBatch::new(Vec::new(), Finalizers::default())
    }

    #[tokio::test]
    async fn a_producer_that_panics_makes_its_stream_panic_after_the_last_batch() {
        let (tx, rx) = mpsc::channel(4);
        let (panicked, producer_panicked) = oneshot::channel();
        let mut stream = batches_from(rx, producer_panicked);
        std::thread::spawn(move || {
            run_producer(panicked, move || {
                tx.blocking_send(empty_batch()).unwrap();
                panic!("reader broke");
            });
        });
        let reading = tokio::spawn(async move {
            let mut batches = 0;
            while stream.next().await.is_some() {
                batches += 1;
            }
            batches
        });
        let error = reading
            .await
            .expect_err("the stream raises the producer's panic");
        let payload = error.into_panic();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"reader broke"));
    }

    #[tokio::test]
    async fn a_producer_that_ends_ends_its_stream_after_every_batch() {
        let (tx, rx) = mpsc::channel(4);
        let (panicked, producer_panicked) = oneshot::channel();
        let mut stream = batches_from(rx, producer_panicked);
        tokio::spawn(drive_producer(panicked, async move {
            tx.send(empty_batch()).await.unwrap();
            tx.send(empty_batch()).await.unwrap();
        }));
        let mut batches = 0;
        while stream.next().await.is_some() {
            batches += 1;
        }
        assert_eq!(batches, 2);
    }

    #[tokio::test]
    async fn a_task_that_panics_makes_its_stream_panic() {
        let (_tx, rx) = mpsc::channel::<EventBatch>(4);
        let (panicked, producer_panicked) = oneshot::channel();
        let mut stream = batches_from(rx, producer_panicked);
        tokio::spawn(drive_producer(panicked, async move {
            let _keep_open = _tx;
            panic!("supervisor broke");
        }));
        let reading = tokio::spawn(async move { while stream.next().await.is_some() {} });
        let payload = reading.await.expect_err("a panic").into_panic();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"supervisor broke"));
    }
}
