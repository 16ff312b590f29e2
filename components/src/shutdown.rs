//! Shutdown signalling: one trigger, any number of cheap signals.
//!
//! Guarantee: once triggered, every existing and future [`ShutdownSignal`] reports it, and
//! [`ShutdownSignal::wait`] returns at once; dropping the trigger counts as triggering.

use tokio::sync::watch;

/// Fires the shutdown.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Observes the shutdown.
#[derive(Clone, Debug)]
pub struct ShutdownSignal(watch::Receiver<bool>);

/// A new trigger and its first signal.
pub fn shutdown_pair() -> (ShutdownTrigger, ShutdownSignal) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), ShutdownSignal(rx))
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl ShutdownSignal {
    /// Whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once shutdown has begun.
    pub async fn wait(&mut self) {
        // An error means the trigger was dropped, which also means shut down.
        let _ = self.0.wait_for(|triggered| *triggered).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signals_see_the_trigger_and_a_dropped_trigger() {
        let (trigger, mut signal) = shutdown_pair();
        let mut other = signal.clone();
        assert!(!signal.is_triggered());
        trigger.trigger();
        signal.wait().await;
        assert!(other.is_triggered());
        other.wait().await;

        let (trigger, mut signal) = shutdown_pair();
        drop(trigger);
        signal.wait().await;
    }
}
