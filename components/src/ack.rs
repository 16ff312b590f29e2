//! End-to-end acknowledgements.
//!
//! A source that needs to know when its events are safe (the file source, to advance its
//! committed offset) creates a [`BatchNotifier`] per batch it emits and registers the matching
//! [`BatchStatusReceiver`] with an [`OrderedFinalizer`]. The notifier travels inside the batch's
//! [`Finalizers`]; every fork (fan-out), split (re-batching) and merge keeps a reference.
//!
//! Guarantees:
//! - The receiver resolves exactly once, when the last reference to the notifier is dropped,
//!   with the worst status any holder recorded ([`BatchStatus::Delivered`] if none did).
//! - A batch's events are acknowledged only by someone saying what became of them: a
//!   [`Finalizers`] dropped without [`Finalizers::settle`] records [`BatchStatus::Errored`].
//!   A batch lost on the way (its task aborted at a shutdown timeout, a panic, a queue dropped
//!   with batches in it) therefore never counts as delivered, and its source does not commit
//!   past it.
//! - [`OrderedFinalizer`] yields the sources' tokens in the order they were registered, so a
//!   token is yielded only when it and every earlier token are resolved: a source that commits
//!   the offsets it gets from it never commits past an unacknowledged line.
//! - Counting is per batch: no per-event allocation or atomic beyond one `Arc` per source batch.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use futures::stream::{FuturesOrdered, Stream};
use tokio::sync::oneshot;

/// The fate of a batch, from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum BatchStatus {
    /// Every copy reached its destination (or was intentionally filtered out).
    Delivered = 0,
    /// Dropped by an explicit, counted policy (`when_full: drop_newest`). The source may move on.
    Dropped = 1,
    /// At least one copy could not be delivered and was not kept anywhere durable.
    Errored = 2,
}

impl BatchStatus {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Delivered,
            1 => Self::Dropped,
            _ => Self::Errored,
        }
    }

    /// Whether the source may consider the events handled and move past them.
    pub fn is_handled(self) -> bool {
        matches!(self, Self::Delivered | Self::Dropped)
    }
}

struct NotifierInner {
    status: AtomicU8,
    sender: Option<oneshot::Sender<BatchStatus>>,
}

impl Drop for NotifierInner {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            // The source may have stopped listening (shutdown); nothing is owed to it then.
            let _ = sender.send(BatchStatus::from_u8(self.status.load(Ordering::Acquire)));
        }
    }
}

/// One source batch's acknowledgement, shared by all copies of its events.
#[derive(Clone)]
pub struct BatchNotifier(Arc<NotifierInner>);

impl std::fmt::Debug for BatchNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("BatchNotifier")
            .field(&BatchStatus::from_u8(self.0.status.load(Ordering::Relaxed)))
            .finish()
    }
}

impl BatchNotifier {
    /// A notifier and the receiver that resolves when its last copy is dropped.
    pub fn new_with_receiver() -> (Self, BatchStatusReceiver) {
        let (sender, receiver) = oneshot::channel();
        let notifier = Self(Arc::new(NotifierInner {
            status: AtomicU8::new(BatchStatus::Delivered as u8),
            sender: Some(sender),
        }));
        (notifier, BatchStatusReceiver(receiver))
    }

    /// Records a status; the worst recorded one wins.
    pub fn update_status(&self, status: BatchStatus) {
        self.0.status.fetch_max(status as u8, Ordering::AcqRel);
    }
}

/// Resolves with a batch's final status.
#[derive(Debug)]
pub struct BatchStatusReceiver(oneshot::Receiver<BatchStatus>);

impl Future for BatchStatusReceiver {
    type Output = BatchStatus;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<BatchStatus> {
        // A sender dropped without sending cannot happen (Drop always sends), but a panic while
        // the batch was held would: treat the batch as not delivered.
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(BatchStatus::Errored))
    }
}

/// The notifiers a batch owes. Usually zero (sources without acknowledgements) or one.
///
/// Each copy (clone) owes its own answer: settle it with [`Finalizers::settle`]; dropping it
/// unsettled records `Errored` (see the module's guarantees).
#[derive(Clone, Debug, Default)]
pub struct Finalizers(Vec<BatchNotifier>);

impl Drop for Finalizers {
    fn drop(&mut self) {
        for notifier in &self.0 {
            notifier.update_status(BatchStatus::Errored);
        }
    }
}

impl Finalizers {
    pub fn new(notifier: BatchNotifier) -> Self {
        Self(vec![notifier])
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Takes on another batch's obligations (when batches are merged): `other` is settled by
    /// whatever settles `self`.
    pub fn merge(&mut self, mut other: Finalizers) {
        for notifier in std::mem::take(&mut other.0) {
            if !self.0.iter().any(|n| Arc::ptr_eq(&n.0, &notifier.0)) {
                self.0.push(notifier);
            }
        }
    }

    /// Says what became of this copy's events and lets go of its notifiers: `Delivered`
    /// (stored, or filtered out on purpose), `Dropped` (an explicit, counted policy) or
    /// `Errored` (not delivered and not kept durably).
    pub fn settle(&mut self, status: BatchStatus) {
        for notifier in std::mem::take(&mut self.0) {
            notifier.update_status(status);
        }
    }
}

/// Yields each registered token once its batch and all batches registered before it resolved.
pub struct OrderedFinalizer<T: Unpin> {
    pending: FuturesOrdered<TokenFuture<T>>,
}

struct TokenFuture<T> {
    token: Option<T>,
    receiver: BatchStatusReceiver,
}

impl<T: Unpin> Future for TokenFuture<T> {
    type Output = (T, BatchStatus);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let status = futures::ready!(Pin::new(&mut self.receiver).poll(cx));
        match self.token.take() {
            Some(token) => Poll::Ready((token, status)),
            // Polled again after completion: FuturesOrdered never does this.
            None => Poll::Pending,
        }
    }
}

impl<T: Unpin> Default for OrderedFinalizer<T> {
    fn default() -> Self {
        Self {
            pending: FuturesOrdered::new(),
        }
    }
}

impl<T: Unpin> OrderedFinalizer<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the receiver of the next batch with the token to yield for it.
    pub fn add(&mut self, token: T, receiver: BatchStatusReceiver) {
        self.pending.push_back(TokenFuture {
            token: Some(token),
            receiver,
        });
    }

    /// Batches registered and not yet yielded.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

impl<T: Unpin> Stream for OrderedFinalizer<T> {
    type Item = (T, BatchStatus);

    /// Ends (`None`) whenever nothing is pending; poll again after the next `add`.
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.pending).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn receiver_resolves_when_last_copy_settles_with_worst_status() {
        let (notifier, mut receiver) = BatchNotifier::new_with_receiver();
        let mut copy = Finalizers::new(notifier.clone());
        let mut second = copy.clone();
        drop(notifier);
        copy.settle(BatchStatus::Dropped);
        assert!(
            futures::poll!(&mut receiver).is_pending(),
            "one copy is still out"
        );
        second.settle(BatchStatus::Delivered);
        assert_eq!(receiver.await, BatchStatus::Dropped);

        let (notifier, receiver) = BatchNotifier::new_with_receiver();
        let mut a = Finalizers::new(notifier);
        let mut b = a.clone();
        a.settle(BatchStatus::Errored);
        b.settle(BatchStatus::Delivered);
        assert_eq!(receiver.await, BatchStatus::Errored);
    }

    #[tokio::test]
    async fn a_copy_dropped_unsettled_is_errored_even_when_the_others_were_delivered() {
        let (notifier, receiver) = BatchNotifier::new_with_receiver();
        let mut delivered = Finalizers::new(notifier);
        let lost = delivered.clone();
        delivered.settle(BatchStatus::Delivered);
        // A task aborted while holding its copy (shutdown timeout): nobody said it arrived.
        drop(lost);
        assert_eq!(receiver.await, BatchStatus::Errored);
    }

    #[tokio::test]
    async fn merged_obligations_are_settled_by_the_batch_they_joined() {
        let (first, first_rx) = BatchNotifier::new_with_receiver();
        let (second, second_rx) = BatchNotifier::new_with_receiver();
        let mut merged = Finalizers::new(first);
        merged.merge(Finalizers::new(second));
        merged.settle(BatchStatus::Delivered);
        assert_eq!(first_rx.await, BatchStatus::Delivered);
        assert_eq!(second_rx.await, BatchStatus::Delivered);
    }

    #[tokio::test]
    async fn ordered_finalizer_waits_for_earlier_tokens() {
        let mut finalizer = OrderedFinalizer::new();
        let (first, first_rx) = BatchNotifier::new_with_receiver();
        let (second, second_rx) = BatchNotifier::new_with_receiver();
        finalizer.add(1u64, first_rx);
        finalizer.add(2u64, second_rx);

        drop(second);
        // The second batch is done but the first is not: nothing may be yielded yet.
        assert!(futures::poll!(finalizer.next()).is_pending());

        drop(first);
        assert_eq!(finalizer.next().await, Some((1, BatchStatus::Delivered)));
        assert_eq!(finalizer.next().await, Some((2, BatchStatus::Delivered)));
        assert_eq!(finalizer.next().await, None);
    }

    #[test]
    fn merge_keeps_each_notifier_once() {
        let (notifier, _rx) = BatchNotifier::new_with_receiver();
        let mut a = Finalizers::new(notifier.clone());
        a.merge(Finalizers::new(notifier));
        assert_eq!(a.0.len(), 1);
    }
}
