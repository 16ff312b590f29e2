//! Taps: a sample of the events leaving a source or transform, for `GET /tap/COMPONENT` and
//! `log-capturer tap`.
//!
//! Guarantees:
//! - Untapped, a component pays one relaxed atomic load per batch on its output path
//!   ([`TapPoint::offer`]); nothing per line.
//! - A tap never blocks the pipeline: each tapper has a bounded channel of
//!   [`TAP_BUFFER_EVENTS`] events; what does not fit is dropped for that tapper and counted in
//!   `tap_dropped_total{component}`. The events themselves are not touched: a tap sees copies
//!   of line, labels and time, never the acknowledgements.
//! - A tap ends when its `limit` is reached (its channel closes, the HTTP answer ends) or when
//!   the tapper goes away (its channel's receiver is dropped; it is removed at the next batch).
//! - At most [`MAX_TAPS_PER_COMPONENT`] tappers per component at once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use log_capturer_components::EventBatch;
use log_capturer_components::event::LogEvent;
use opentelemetry::KeyValue;
use serde::Serialize;
use tokio::sync::mpsc;

/// Events waiting for one slow tapper before newer ones are dropped.
pub const TAP_BUFFER_EVENTS: usize = 1024;
/// Tappers one component serves at once.
pub const MAX_TAPS_PER_COMPONENT: usize = 8;

/// One tapped event, as `tap` prints it (a JSON line).
#[derive(Clone, Debug, Serialize)]
pub struct TapEvent {
    pub component: String,
    /// The event's own time, RFC 3339 with nanoseconds.
    pub timestamp: String,
    /// The line (invalid UTF-8 replaced).
    pub line: String,
    pub labels: BTreeMap<String, String>,
    /// The source that read it.
    pub source: String,
}

impl TapEvent {
    fn of(component: &str, event: &LogEvent) -> Self {
        let timestamp = jiff::Timestamp::from_nanosecond(i128::from(event.timestamp_ns))
            .map_or_else(|_| event.timestamp_ns.to_string(), |t| t.to_string());
        Self {
            component: component.to_string(),
            timestamp,
            line: String::from_utf8_lossy(&event.line).into_owned(),
            labels: event
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            source: event.source.to_string(),
        }
    }
}

/// How a tapper wants its sample.
#[derive(Clone, Copy, Debug)]
pub struct TapRequest {
    /// Events to send before the tap ends.
    pub limit: u64,
    /// Keep one event in `every` (1: all of them).
    pub every: u64,
}

struct Tapper {
    tx: mpsc::Sender<TapEvent>,
    every: u64,
    seen: u64,
    remaining: u64,
}

/// Why a tap could not start.
#[derive(Debug, PartialEq, Eq)]
pub enum TapRefused {
    UnknownComponent,
    TooManyTaps,
}

/// The tap of one component's output.
#[derive(Default)]
pub struct TapPoint {
    component: String,
    active: AtomicBool,
    tappers: Mutex<Vec<Tapper>>,
}

impl TapPoint {
    fn new(component: &str) -> Self {
        Self {
            component: component.to_string(),
            ..Self::default()
        }
    }

    /// Offers a batch leaving the component to its tappers, if it has any.
    #[inline]
    pub fn offer(&self, batch: &EventBatch) {
        if self.active.load(Ordering::Relaxed) {
            self.offer_tapped(batch);
        }
    }

    #[cold]
    fn offer_tapped(&self, batch: &EventBatch) {
        let Ok(mut tappers) = self.tappers.lock() else {
            return;
        };
        let mut dropped = 0u64;
        tappers.retain_mut(|tapper| {
            for event in &batch.events {
                tapper.seen += 1;
                if (tapper.seen - 1) % tapper.every != 0 {
                    continue;
                }
                match tapper.tx.try_send(TapEvent::of(&self.component, event)) {
                    Ok(()) => {
                        tapper.remaining -= 1;
                        if tapper.remaining == 0 {
                            return false;
                        }
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => dropped += 1,
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
        if tappers.is_empty() {
            self.active.store(false, Ordering::Relaxed);
        }
        drop(tappers);
        if dropped > 0 {
            crate::telemetry::TAP_DROPPED.add(
                dropped,
                &[KeyValue::new("component", self.component.clone())],
            );
        }
    }

    fn subscribe(&self, request: TapRequest) -> Result<mpsc::Receiver<TapEvent>, TapRefused> {
        let mut tappers = match self.tappers.lock() {
            Ok(tappers) => tappers,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Tappers gone since the last batch free their place now.
        tappers.retain(|t| !t.tx.is_closed());
        if tappers.len() >= MAX_TAPS_PER_COMPONENT {
            return Err(TapRefused::TooManyTaps);
        }
        let (tx, rx) = mpsc::channel(TAP_BUFFER_EVENTS);
        tappers.push(Tapper {
            tx,
            every: request.every.max(1),
            seen: 0,
            remaining: request.limit.max(1),
        });
        self.active.store(true, Ordering::Relaxed);
        Ok(rx)
    }
}

/// Every tappable component (sources and transforms), by name.
#[derive(Default)]
pub struct Taps {
    points: BTreeMap<String, Arc<TapPoint>>,
}

impl Taps {
    /// A tap point for each of `components`.
    pub fn new<'a>(components: impl IntoIterator<Item = &'a String>) -> Self {
        Self {
            points: components
                .into_iter()
                .map(|name| (name.clone(), Arc::new(TapPoint::new(name))))
                .collect(),
        }
    }

    /// The tap point of `component`, for its output path.
    pub fn point(&self, component: &str) -> Option<Arc<TapPoint>> {
        self.points.get(component).cloned()
    }

    /// The names that can be tapped.
    pub fn names(&self) -> Vec<&str> {
        self.points.keys().map(String::as_str).collect()
    }

    /// Starts a tap on `component`.
    pub fn subscribe(
        &self,
        component: &str,
        request: TapRequest,
    ) -> Result<mpsc::Receiver<TapEvent>, TapRefused> {
        self.points
            .get(component)
            .ok_or(TapRefused::UnknownComponent)?
            .subscribe(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log_capturer_components::event::Labels;

    fn batch(lines: std::ops::Range<u32>) -> EventBatch {
        let events = lines
            .map(|i| LogEvent {
                timestamp_ns: i64::from(i) * 1_000_000_000,
                observed_ns: 0,
                line: bytes::Bytes::from(format!("line {i}")),
                labels: Labels::new([("job", "t")]),
                metadata: Vec::new(),
                source: "src".into(),
                file: None,
                replays: 0,
                fields: Default::default(),
            })
            .collect();
        EventBatch {
            events,
            ..EventBatch::default()
        }
    }

    #[test]
    fn untapped_points_stay_inactive_and_a_tap_samples_up_to_its_limit() {
        let taps = Taps::new(&["a".to_string()]);
        let point = taps.point("a").unwrap();
        point.offer(&batch(0..10));
        assert!(!point.active.load(Ordering::Relaxed));
        let mut rx = taps
            .subscribe("a", TapRequest { limit: 3, every: 2 })
            .unwrap();
        point.offer(&batch(0..10));
        let got: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| e.line)
            .collect();
        assert_eq!(got, ["line 0", "line 2", "line 4"]);
        // The limit ended the tap: the channel is closed and the point inactive again.
        assert!(matches!(
            rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert!(!point.active.load(Ordering::Relaxed));
        assert_eq!(
            taps.subscribe("b", TapRequest { limit: 1, every: 1 })
                .unwrap_err(),
            TapRefused::UnknownComponent
        );
    }

    #[test]
    fn a_slow_tapper_loses_events_instead_of_blocking_and_a_gone_one_is_removed() {
        let taps = Taps::new(&["a".to_string()]);
        let point = taps.point("a").unwrap();
        let mut slow = taps
            .subscribe(
                "a",
                TapRequest {
                    limit: u64::MAX,
                    every: 1,
                },
            )
            .unwrap();
        let n = u32::try_from(TAP_BUFFER_EVENTS).unwrap() + 100;
        // Returns at once although nobody reads: the surplus is dropped.
        point.offer(&batch(0..n));
        let mut received = 0;
        while slow.try_recv().is_ok() {
            received += 1;
        }
        assert_eq!(received, TAP_BUFFER_EVENTS);
        drop(slow);
        point.offer(&batch(0..1));
        assert!(!point.active.load(Ordering::Relaxed));
        let _held: Vec<_> = (0..MAX_TAPS_PER_COMPONENT)
            .map(|_| {
                taps.subscribe("a", TapRequest { limit: 1, every: 1 })
                    .unwrap()
            })
            .collect();
        assert_eq!(
            taps.subscribe("a", TapRequest { limit: 1, every: 1 })
                .unwrap_err(),
            TapRefused::TooManyTaps
        );
    }
}
