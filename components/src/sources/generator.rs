//! The `generator` source: synthetic lines with a sequence number, at a set rate.
//!
//! Each line reads `seq=<n> <message><padding>`, with `n` counting from 1 and the line padded with
//! `.` up to `line_bytes`. A batch's lines are cut out of one buffer (one allocation per batch).
//! The stream ends after `count` lines (never if 0) or at shutdown.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

use crate::ack::Finalizers;
use crate::config::{ConfigError, join_path};
use crate::event::{EventBatch, Labels, LogEvent, now_ns};
use crate::telemetry::ComponentAttrs;
use crate::{EventStream, SourceContext};

/// Configuration of the `generator` source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GeneratorConfig {
    /// Lines to emit before the source finishes; 0 means no end.
    pub count: u64,
    /// Lines per second; 0 means as fast as the pipeline takes them.
    pub rate: u64,
    /// Most lines per emitted batch.
    pub batch_size: usize,
    /// Text after the sequence number.
    pub message: String,
    /// Pads each line with `.` to at least this many bytes (0: no padding).
    pub line_bytes: usize,
    /// Stream labels on every line.
    pub labels: BTreeMap<String, String>,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            count: 0,
            rate: 10,
            batch_size: 1_000,
            message: "log-capturer generator line".to_string(),
            line_bytes: 0,
            labels: BTreeMap::new(),
        }
    }
}

impl GeneratorConfig {
    pub fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.batch_size == 0 {
            errors.push(ConfigError::new(
                join_path(prefix, "batch_size"),
                "must be at least 1",
            ));
        }
        if self.line_bytes > 16 * 1024 * 1024 {
            errors.push(ConfigError::new(
                join_path(prefix, "line_bytes"),
                "must be at most 16 MiB",
            ));
        }
        errors.extend(crate::config::label_name_errors(prefix, self.labels.keys()));
        errors
    }

    /// Builds the source's stream.
    pub fn build(&self, cx: SourceContext) -> EventStream {
        let labels = Labels::new(self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let batch_lines = match self.rate {
            0 => self.batch_size,
            // About ten batches a second at high rates, one line per tick at low ones.
            rate => (rate / 10).clamp(1, self.batch_size as u64) as usize,
        };
        let state = GeneratorState {
            attrs: ComponentAttrs::new(&cx.key),
            key: cx.key,
            shutdown: cx.shutdown,
            labels,
            message: self.message.clone(),
            line_bytes: self.line_bytes,
            batch_lines,
            remaining: (self.count > 0).then_some(self.count),
            next_seq: 1,
            ticker: (self.rate > 0).then(|| {
                let period = Duration::from_secs_f64(batch_lines as f64 / self.rate as f64);
                let mut ticker = tokio::time::interval(period);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticker
            }),
        };
        Box::pin(futures::stream::unfold(state, |mut state| async move {
            let batch = state.next_batch().await?;
            Some((batch, state))
        }))
    }
}

struct GeneratorState {
    key: crate::ComponentKey,
    attrs: ComponentAttrs,
    shutdown: crate::shutdown::ShutdownSignal,
    labels: Labels,
    message: String,
    line_bytes: usize,
    batch_lines: usize,
    remaining: Option<u64>,
    next_seq: u64,
    ticker: Option<tokio::time::Interval>,
}

impl GeneratorState {
    async fn next_batch(&mut self) -> Option<EventBatch> {
        if self.shutdown.is_triggered() || self.remaining == Some(0) {
            return None;
        }
        match &mut self.ticker {
            Some(ticker) => {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = self.shutdown.wait() => return None,
                }
            }
            // Unpaced: still let other tasks run between batches.
            None => tokio::task::yield_now().await,
        }
        let lines = match self.remaining {
            Some(left) => (left.min(self.batch_lines as u64)) as usize,
            None => self.batch_lines,
        };
        let batch = self.make_batch(lines);
        if let Some(left) = &mut self.remaining {
            *left -= lines as u64;
        }
        self.attrs.processed(lines);
        Some(batch)
    }

    fn make_batch(&mut self, lines: usize) -> EventBatch {
        let per_line = self.line_bytes.max(self.message.len() + 24);
        let mut buf = BytesMut::with_capacity(lines * per_line);
        let mut ends = Vec::with_capacity(lines);
        let mut digits = itoa::Buffer::new();
        for _ in 0..lines {
            let start = buf.len();
            buf.put_slice(b"seq=");
            buf.put_slice(digits.format(self.next_seq).as_bytes());
            buf.put_u8(b' ');
            buf.put_slice(self.message.as_bytes());
            let written = buf.len() - start;
            if written < self.line_bytes {
                buf.put_bytes(b'.', self.line_bytes - written);
            }
            ends.push(buf.len());
            self.next_seq += 1;
        }
        let buf = buf.freeze();
        let now = now_ns();
        let mut start = 0;
        let events = ends
            .into_iter()
            .map(|end| {
                let line = buf.slice(start..end);
                start = end;
                LogEvent {
                    timestamp_ns: now,
                    observed_ns: now,
                    line,
                    labels: self.labels.clone(),
                    metadata: Vec::new(),
                    source: self.key.clone(),
                    file: None,
                    replays: 0,
                    fields: Default::default(),
                }
            })
            .collect();
        EventBatch::new(events, Finalizers::default())
    }
}

impl crate::component::Component for GeneratorConfig {
    const TYPE: &'static str = "generator";

    fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        GeneratorConfig::validate(self, prefix)
    }
}

impl crate::component::SourceComponent for GeneratorConfig {
    fn build(&self, cx: SourceContext) -> Result<EventStream, crate::BuildError> {
        Ok(GeneratorConfig::build(self, cx))
    }

    fn static_labels(&self) -> BTreeMap<String, String> {
        self.labels.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown::shutdown_pair;
    use crate::telemetry::{ComponentKind, HealthRegistry};
    use futures::StreamExt;

    fn context(shutdown: crate::shutdown::ShutdownSignal) -> SourceContext {
        SourceContext {
            key: "gen".into(),
            shutdown,
            health: HealthRegistry::default().register("gen", ComponentKind::Source),
            data_dir: std::env::temp_dir(),
            finishing: Default::default(),
        }
    }

    #[tokio::test]
    async fn emits_count_lines_in_sequence_then_ends() {
        let (_trigger, signal) = shutdown_pair();
        let config = GeneratorConfig {
            count: 2_500,
            rate: 0,
            line_bytes: 100,
            labels: BTreeMap::from([("job".to_string(), "gen".to_string())]),
            ..GeneratorConfig::default()
        };
        let batches: Vec<EventBatch> = config.build(context(signal)).collect().await;
        let sizes: Vec<usize> = batches.iter().map(EventBatch::len).collect();
        assert_eq!(sizes, vec![1000, 1000, 500]);
        let lines: Vec<_> = batches.iter().flat_map(|b| b.events.iter()).collect();
        assert!(
            lines[0]
                .line
                .starts_with(b"seq=1 log-capturer generator line")
        );
        assert!(lines[2499].line.starts_with(b"seq=2500 "));
        assert!(lines.iter().all(|e| e.line.len() == 100));
        assert_eq!(lines[7].labels.get("job"), Some("gen"));
        assert_eq!(&*lines[7].source, "gen");
    }

    #[tokio::test(start_paused = true)]
    async fn paced_source_stops_on_shutdown() {
        let (trigger, signal) = shutdown_pair();
        let config = GeneratorConfig {
            rate: 1,
            ..GeneratorConfig::default()
        };
        let mut stream = config.build(context(signal));
        let first = stream.next().await.map(|b| b.len());
        assert_eq!(first, Some(1));
        trigger.trigger();
        assert!(stream.next().await.is_none());
    }
}
