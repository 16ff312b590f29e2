//! Test fixtures shared by the transforms' unit tests.

use bytes::Bytes;

use crate::EventBatch;
use crate::ack::Finalizers;
use crate::event::{Labels, LogEvent};

/// An event of `line`, from source `app`, read at 1 s after the epoch.
pub fn event(line: &[u8]) -> LogEvent {
    LogEvent {
        timestamp_ns: 1_000_000_000,
        observed_ns: 1_000_000_000,
        line: Bytes::copy_from_slice(line),
        labels: Labels::default(),
        metadata: Vec::new(),
        source: "app".into(),
        file: None,
        replays: 0,
        fields: Default::default(),
    }
}

/// A batch of one event per line.
pub fn batch(lines: &[&[u8]]) -> EventBatch {
    EventBatch::new(
        lines.iter().map(|line| event(line)).collect(),
        Finalizers::default(),
    )
}

/// A field's value as text (`None` when absent or not UTF-8).
pub fn field<'a>(event: &'a LogEvent, name: &str) -> Option<&'a str> {
    event
        .fields
        .get(name)
        .and_then(|value| std::str::from_utf8(value).ok())
}
