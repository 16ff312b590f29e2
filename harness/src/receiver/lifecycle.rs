//! Start-up, readiness and shutdown as a single-binary Loki goes through them, plus the injected
//! outages.
//!
//! - Start-up (`--startup-empty-ring`): the ingester is not in the ring yet. Pushes that pass
//!   validation and the rate limit are answered `500 empty ring`; `/ready` answers
//!   `503 Ingester not ready: this instance owns no tokens`.
//! - Ready delay (`--ready-delay`, Loki's `min_ready_duration`): pushes are accepted, but
//!   `/ready` answers `503 Ingester not ready: waiting for 15s after being ready` until that long
//!   after the first `/ready` request that found the ring healthy (dskit starts the count at that
//!   request, not at start-up); from then on it answers `200 ready` for good.
//! - Shutdown (`--shutdown-empty-ring`): once requested, pushes are answered `500 empty ring` and
//!   `/ready` `503 Application is stopping`, for that long; then the receiver stops.
//! - Outages (`--outage`): pushes `503`, `/ready` `503`.
//!
//! Guarantees: each state is decided from the monotonic clock at the moment of the request;
//! shutdown, once begun, never ends (a second request keeps the first deadline).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::config::{Outage, ReceiverConfig};
use super::messages;

/// The `/ready` text during an injected outage.
pub const READY_OUTAGE: &str = "not ready: injected outage (--outage)";

#[derive(Debug, Default)]
struct State {
    /// When `/ready` first found the ring healthy.
    ready_since: Option<Instant>,
    /// The ready delay has passed once (dskit's readiness latches).
    ready: bool,
    stopping_since: Option<Instant>,
}

/// Where the receiver is in its life.
#[derive(Debug)]
pub struct Lifecycle {
    started: Instant,
    startup_empty_ring: Duration,
    ready_delay: Duration,
    shutdown_window: Duration,
    outages: Vec<Outage>,
    state: Mutex<State>,
}

impl Lifecycle {
    pub fn new(config: &ReceiverConfig, started: Instant) -> Self {
        Self {
            started,
            startup_empty_ring: config.startup_empty_ring,
            ready_delay: config.ready_delay,
            shutdown_window: config.shutdown_empty_ring,
            outages: config.outages.clone(),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn in_outage(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.started);
        self.outages.iter().any(|o| o.covers(elapsed))
    }

    fn starting(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.started) < self.startup_empty_ring
    }

    pub fn stopping(&self) -> bool {
        self.state().stopping_since.is_some()
    }

    /// No ingester in the ring: starting up or shutting down.
    pub fn ring_empty(&self, now: Instant) -> bool {
        self.stopping() || self.starting(now)
    }

    /// What `/ready` answers now: `Ok` for `200 ready`, else the 503 text.
    pub fn readiness(&self, now: Instant) -> Result<(), String> {
        let mut state = self.state();
        if state.stopping_since.is_some() {
            return Err(messages::READY_STOPPING.into());
        }
        if self.in_outage(now) {
            return Err(READY_OUTAGE.into());
        }
        if self.starting(now) {
            return Err(messages::READY_NO_TOKENS.into());
        }
        if state.ready || self.ready_delay.is_zero() {
            return Ok(());
        }
        let since = *state.ready_since.get_or_insert(now);
        if now.saturating_duration_since(since) < self.ready_delay {
            return Err(messages::ready_waiting(self.ready_delay));
        }
        state.ready = true;
        Ok(())
    }

    /// Begins shutdown (once); returns when the shutdown window ends.
    pub fn begin_stopping(&self, now: Instant) -> Instant {
        let mut state = self.state();
        let since = *state.stopping_since.get_or_insert(now);
        since + self.shutdown_window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifecycle(config: ReceiverConfig) -> (Lifecycle, Instant) {
        let start = Instant::now();
        (Lifecycle::new(&config, start), start)
    }

    #[test]
    fn start_up_then_ready_delay_then_ready() {
        let (life, start) = lifecycle(ReceiverConfig {
            startup_empty_ring: Duration::from_secs(2),
            ready_delay: Duration::from_secs(15),
            ..ReceiverConfig::for_tests()
        });
        let at = |s: u64| start + Duration::from_secs(s);
        assert!(life.ring_empty(at(1)));
        assert_eq!(
            life.readiness(at(1)),
            Err("Ingester not ready: this instance owns no tokens".into())
        );
        assert!(!life.ring_empty(at(3)));
        // The delay counts from the first request that found the ring healthy.
        assert_eq!(
            life.readiness(at(10)),
            Err("Ingester not ready: waiting for 15s after being ready".into())
        );
        assert!(life.readiness(at(24)).is_err());
        assert_eq!(life.readiness(at(25)), Ok(()));
        // Latched.
        assert_eq!(life.readiness(at(25)), Ok(()));
    }

    #[test]
    fn shutdown_empties_the_ring_once() {
        let (life, start) = lifecycle(ReceiverConfig {
            shutdown_empty_ring: Duration::from_secs(3),
            ..ReceiverConfig::for_tests()
        });
        assert_eq!(life.readiness(start), Ok(()));
        assert!(!life.ring_empty(start));
        let deadline = life.begin_stopping(start + Duration::from_secs(5));
        assert_eq!(deadline, start + Duration::from_secs(8));
        assert_eq!(
            life.begin_stopping(start + Duration::from_secs(6)),
            deadline
        );
        assert!(life.ring_empty(start + Duration::from_secs(6)));
        assert_eq!(
            life.readiness(start + Duration::from_secs(6)),
            Err("Application is stopping".into())
        );
    }
}
