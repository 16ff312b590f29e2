//! The data model: [`LogEvent`] and [`EventBatch`].
//!
//! Guarantees:
//! - Events travel in batches. No channel in the pipeline carries a single event.
//! - A line is a [`Bytes`] slice: sources cut many lines out of one buffer, and cloning an event
//!   (fan-out, retries) never copies its line.
//! - [`Labels`] are sorted by name and shared behind an `Arc`, so cloning them is one reference
//!   count and two label sets compare by content.
//! - Every batch carries the acknowledgement [`Finalizers`] of the source batches its events came
//!   from; the source learns the fate of its events only through them.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::ack::Finalizers;

/// The name of a component as written in the configuration (`sources.<name>`).
pub type ComponentKey = Arc<str>;

/// A small, sorted, shared set of stream labels (`name -> value`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Option<Arc<[Label]>>);

/// One `name -> value` pair.
pub type Label = (Arc<str>, Arc<str>);

impl Labels {
    /// Builds a label set; later duplicates of a name replace earlier ones.
    pub fn new<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<Arc<str>>,
        V: Into<Arc<str>>,
    {
        let mut list: Vec<Label> = Vec::new();
        for (name, value) in pairs {
            let name = name.into();
            let value = value.into();
            match list.binary_search_by(|(n, _)| n.as_ref().cmp(name.as_ref())) {
                Ok(i) => list[i].1 = value,
                Err(i) => list.insert(i, (name, value)),
            }
        }
        if list.is_empty() {
            Self(None)
        } else {
            Self(Some(list.into()))
        }
    }

    /// The labels in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|(n, v)| (n.as_ref(), v.as_ref()))
    }

    /// The value of one label.
    pub fn get(&self, name: &str) -> Option<&str> {
        let list = self.0.as_deref()?;
        list.binary_search_by(|(n, _)| n.as_ref().cmp(name))
            .ok()
            .map(|i| list[i].1.as_ref())
    }

    /// The value of one label, shared: cloning it is one reference count, not a copy.
    pub fn get_shared(&self, name: &str) -> Option<&Arc<str>> {
        let list = self.0.as_deref()?;
        list.binary_search_by(|(n, _)| n.as_ref().cmp(name))
            .ok()
            .map(|i| &list[i].1)
    }

    pub fn len(&self) -> usize {
        self.0.as_deref().map_or(0, <[_]>::len)
    }

    /// A cheap identity of this shared set (its allocation), for per-batch caches: equal sets
    /// built apart have different identities, so callers must still compare by content.
    pub fn identity(&self) -> usize {
        self.0
            .as_ref()
            .map_or(0, |a| Arc::as_ptr(a) as *const u8 as usize)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One log line and what is known about it.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEvent {
    /// The line's own time in nanoseconds since the Unix epoch, as the source saw it. Resends keep
    /// it, which is what lets Loki drop exact duplicates.
    pub timestamp_ns: i64,
    /// When log-capturer read the line, nanoseconds since the Unix epoch.
    pub observed_ns: i64,
    /// The line, without its line terminator. Not necessarily valid UTF-8.
    pub line: Bytes,
    /// Stream labels.
    pub labels: Labels,
    /// Loki structured metadata (not part of the stream identity); usually empty.
    pub metadata: Vec<Label>,
    /// The source component that produced the event.
    pub source: ComponentKey,
    /// The file the line was read from (file source). Not a label: the Loki sink's `labels`
    /// can use it as `{{ file }}`.
    pub file: Option<Arc<str>>,
    /// How often the event was replayed from a dead-letter queue and refused again (0 for an
    /// event read by a source); past the queue's `max_replays` it is archived, not queued.
    pub replays: u8,
    /// Fields parsers extracted from the line, for later stages (empty, without allocation,
    /// when no parser ran).
    pub fields: crate::fields::Fields,
}

impl LogEvent {
    /// Whether this event shares the very allocations of `labels`, `source` and `file` (not
    /// only equal values): a cheap test that it belongs to a stream whose key was worked out
    /// already, valid while those clones are held.
    pub fn shares_stream(
        &self,
        labels: &Labels,
        source: &ComponentKey,
        file: Option<&Arc<str>>,
    ) -> bool {
        Arc::ptr_eq(source, &self.source)
            && labels.identity() == self.labels.identity()
            && match (file, &self.file) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }

    /// The in-memory size the batch-byte limits count: the line plus its labels and metadata.
    pub fn estimated_bytes(&self) -> usize {
        let labels: usize = self.labels.iter().map(|(n, v)| n.len() + v.len()).sum();
        let metadata: usize = self.metadata.iter().map(|(n, v)| n.len() + v.len()).sum();
        self.line.len() + labels + metadata
    }
}

/// A group of events moving through the pipeline together.
#[derive(Debug, Default)]
pub struct EventBatch {
    pub events: Vec<LogEvent>,
    /// The acknowledgements this batch's events owe to their sources.
    pub finalizers: Finalizers,
}

impl EventBatch {
    pub fn new(events: Vec<LogEvent>, finalizers: Finalizers) -> Self {
        Self { events, finalizers }
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// A copy for a second consumer (fan-out). Lines are shared, and the source is acknowledged
    /// only when every copy is.
    pub fn fork(&self) -> Self {
        Self {
            events: self.events.clone(),
            finalizers: self.finalizers.clone(),
        }
    }
}

/// Nanoseconds since the Unix epoch now; 0 if the clock is before 1970.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_and_last_duplicate_wins() {
        let labels = Labels::new([("job", "a"), ("host", "h"), ("job", "b")]);
        let pairs: Vec<_> = labels.iter().collect();
        assert_eq!(pairs, vec![("host", "h"), ("job", "b")]);
        assert_eq!(labels.get("job"), Some("b"));
        assert_eq!(labels.get("nope"), None);
        assert_eq!(
            Labels::new(Vec::<(String, String)>::new()),
            Labels::default()
        );
    }
}
