//! The `multiline` stage (a stream transform): lines of one stream (a file, a container: the
//! same source, file and labels) joined into one event, e.g. a Java or Python stack trace.
//!
//! Guarantees:
//! - Exactly one of `first_line` (a line matching it starts a new event; the others continue the
//!   event before them) or `continuation` (a line matching it continues the event before it) is
//!   set, checked at validation. A continuation with nothing before it starts an event.
//! - Joined lines are separated by `\n`; the event keeps the first line's timestamp, labels,
//!   metadata and fields. No line is lost or reordered within its stream.
//! - An event is emitted when the next event of its stream starts, when it would pass
//!   `max_lines` or `max_bytes` (the line that would pass starts the next event), when its
//!   stream has been quiet for `max_wait`, and when the input ends (shutdown): nothing held is
//!   lost. Each emission is counted in `multiline_events_total{component,reason}`, each joined
//!   line in `multiline_merged_lines_total{component}`.
//! - Acknowledgements: an emitted event carries the acknowledgement of every source batch it
//!   took lines from, so a source commits a line only after the event holding it was
//!   delivered. A batch whose lines are all held is acknowledged with the events that hold them.
//! - Every setting reloads live; events already held keep the rule they were started with until
//!   they are emitted.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use opentelemetry::KeyValue;
use regex::bytes::Regex;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::ack::{BatchStatus, Finalizers};
use crate::component::{
    Component, LiveSettings, StreamTransform, Transform, TransformComponent, TransformContext,
    config_build_error,
};
use crate::config::{ConfigError, duration, join_path};
use crate::event::{ComponentKey, Labels, LogEvent};
use crate::telemetry::{ComponentAttrs, Counter, MetricDef};
use crate::{BuildError, EventBatch, EventStream};

static EVENTS: Counter = Counter::new(
    "multiline_events",
    "Events a multiline stage emitted, by what ended them (next_event, max_lines, max_bytes, \
     max_wait, shutdown).",
    &["component", "reason"],
);
static MERGED: Counter = Counter::new(
    "multiline_merged_lines",
    "Lines a multiline stage joined to the line before them.",
    &["component"],
);

/// Every metric of the multiline stage.
pub static METRICS: &[&MetricDef] = &[&EVENTS.def, &MERGED.def];

/// Configuration of the `multiline` stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultilineConfig {
    /// A line matching this starts a new event (e.g. `^\S` or `^\d{4}-\d{2}-\d{2}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_line: Option<String>,
    /// A line matching this continues the event before it (e.g. `^\s+at |^Caused by:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<String>,
    /// Most lines in one event.
    #[serde(default = "default_max_lines")]
    pub max_lines: usize,
    /// Most bytes in one event's line.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// How long a stream may be quiet before its held event is emitted.
    #[serde(default = "default_max_wait", with = "duration")]
    pub max_wait: Duration,
}

fn default_max_lines() -> usize {
    500
}
fn default_max_bytes() -> usize {
    256 * 1024
}
fn default_max_wait() -> Duration {
    Duration::from_secs(1)
}

/// How lines are told apart.
#[derive(Clone, Debug)]
enum Rule {
    FirstLine(Regex),
    Continuation(Regex),
}

#[derive(Clone, Debug)]
struct Compiled {
    rule: Rule,
    max_lines: usize,
    max_bytes: usize,
    max_wait: Duration,
}

impl MultilineConfig {
    fn compile(&self, prefix: &str) -> Result<Compiled, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let regex = |key: &str, pattern: &str, errors: &mut Vec<ConfigError>| {
            Regex::new(pattern)
                .map_err(|err| {
                    errors.push(ConfigError::new(
                        join_path(prefix, key),
                        format!("invalid regular expression: {err}"),
                    ));
                })
                .ok()
        };
        let rule = match (&self.first_line, &self.continuation) {
            (Some(p), None) => regex("first_line", p, &mut errors).map(Rule::FirstLine),
            (None, Some(p)) => regex("continuation", p, &mut errors).map(Rule::Continuation),
            _ => {
                errors.push(
                    ConfigError::new(
                        prefix.to_string(),
                        "set exactly one of first_line and continuation",
                    )
                    .with_hint(
                        "Java stack traces: continuation: '^\\s+at |^\\s*\\.\\.\\. |^Caused by:'",
                    ),
                );
                None
            }
        };
        for (key, value) in [("max_lines", self.max_lines), ("max_bytes", self.max_bytes)] {
            if value == 0 {
                errors.push(ConfigError::new(
                    join_path(prefix, key),
                    "must be at least 1",
                ));
            }
        }
        if self.max_wait.is_zero() {
            errors.push(
                ConfigError::new(join_path(prefix, "max_wait"), "must be greater than zero")
                    .with_hint("write a duration like 1s"),
            );
        }
        match rule {
            Some(rule) if errors.is_empty() => Ok(Compiled {
                rule,
                max_lines: self.max_lines,
                max_bytes: self.max_bytes,
                max_wait: self.max_wait,
            }),
            _ => Err(errors),
        }
    }
}

impl Component for MultilineConfig {
    const TYPE: &'static str = "multiline";
    const METRICS: &'static [&'static MetricDef] = METRICS;
    const HOT_RELOADABLE: &'static [&'static str] = &[
        "first_line",
        "continuation",
        "max_lines",
        "max_bytes",
        "max_wait",
    ];

    fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        self.compile(prefix).err().unwrap_or_default()
    }
}

impl TransformComponent for MultilineConfig {
    fn build(&self, cx: TransformContext<Self>) -> Result<Transform, BuildError> {
        let compiled = self
            .compile(&cx.key)
            .map_err(|errors| config_build_error(&cx.key, errors))?;
        Ok(Transform::stream(Multiline {
            merger: Merger::new(compiled, &cx.key),
            settings: cx.settings,
        }))
    }
}

/// The stream an event belongs to.
type StreamKey = (ComponentKey, Option<std::sync::Arc<str>>, Labels);

/// An event being joined.
struct Held {
    event: LogEvent,
    /// The joined line, once a second line came.
    joined: Option<BytesMut>,
    lines: usize,
    last_line_at: Instant,
    /// The acknowledgements of the batches its lines came from.
    finalizers: Finalizers,
}

impl Held {
    fn bytes(&self) -> usize {
        self.joined
            .as_ref()
            .map_or(self.event.line.len(), BytesMut::len)
    }

    fn into_event(mut self) -> (LogEvent, Finalizers) {
        if let Some(joined) = self.joined.take() {
            self.event.line = joined.freeze();
        }
        (self.event, std::mem::take(&mut self.finalizers))
    }
}

/// The joining, without the stream plumbing (tested on its own).
struct Merger {
    rule: Compiled,
    held: HashMap<StreamKey, Held>,
    attrs: ComponentAttrs,
    emitted: HashMap<&'static str, u64>,
    merged: u64,
}

impl Merger {
    fn new(rule: Compiled, key: &str) -> Self {
        Self {
            rule,
            held: HashMap::new(),
            attrs: ComponentAttrs::new(key),
            emitted: HashMap::new(),
            merged: 0,
        }
    }

    /// Whether `line` continues the event before it.
    fn continues(&self, line: &Bytes) -> bool {
        match &self.rule.rule {
            Rule::FirstLine(regex) => !regex.is_match(line),
            Rule::Continuation(regex) => regex.is_match(line),
        }
    }

    /// Takes a batch in; returns the events it completes.
    fn push(&mut self, mut batch: EventBatch, now: Instant) -> EventBatch {
        let mut out = Vec::new();
        let mut out_finalizers = Finalizers::default();
        let mut from_this_batch = false;
        for event in std::mem::take(&mut batch.events) {
            let key: StreamKey = (
                event.source.clone(),
                event.file.clone(),
                event.labels.clone(),
            );
            let continues = self.continues(&event.line);
            if let Some(held) = self.held.get_mut(&key) {
                let fits = held.lines < self.rule.max_lines
                    && held.bytes() + 1 + event.line.len() <= self.rule.max_bytes;
                if continues && fits {
                    let joined = held.joined.get_or_insert_with(|| {
                        let mut joined = BytesMut::with_capacity(held.event.line.len() * 4);
                        joined.extend_from_slice(&held.event.line);
                        joined
                    });
                    joined.extend_from_slice(b"\n");
                    joined.extend_from_slice(&event.line);
                    held.lines += 1;
                    held.last_line_at = now;
                    held.finalizers.merge(batch.finalizers.clone());
                    self.merged += 1;
                    continue;
                }
                let reason = if !continues {
                    "next_event"
                } else if held.lines >= self.rule.max_lines {
                    "max_lines"
                } else {
                    "max_bytes"
                };
                if let Some(done) = self.held.remove(&key) {
                    self.emit(done, reason, &mut out, &mut out_finalizers);
                }
            }
            self.held.insert(
                key,
                Held {
                    event,
                    joined: None,
                    lines: 1,
                    last_line_at: now,
                    finalizers: batch.finalizers.clone(),
                },
            );
            from_this_batch = true;
        }
        if !from_this_batch && out.is_empty() {
            // An empty batch: nothing is held for it.
            out_finalizers.merge(batch.finalizers.clone());
        }
        // The held events keep their own copies; this batch's copy is done.
        batch.finalizers.settle(BatchStatus::Delivered);
        self.count();
        EventBatch::new(out, out_finalizers)
    }

    fn emit(
        &mut self,
        held: Held,
        reason: &'static str,
        out: &mut Vec<LogEvent>,
        finalizers: &mut Finalizers,
    ) {
        let (event, owed) = held.into_event();
        out.push(event);
        finalizers.merge(owed);
        *self.emitted.entry(reason).or_default() += 1;
    }

    /// The events whose streams have been quiet for `max_wait` (all of them with `None`).
    fn flush(&mut self, now: Option<Instant>) -> EventBatch {
        let max_wait = self.rule.max_wait;
        let due: Vec<StreamKey> = self
            .held
            .iter()
            .filter(|(_, held)| now.is_none_or(|now| held.last_line_at + max_wait <= now))
            .map(|(key, _)| key.clone())
            .collect();
        let reason = if now.is_some() {
            "max_wait"
        } else {
            "shutdown"
        };
        let mut out = Vec::new();
        let mut finalizers = Finalizers::default();
        for key in due {
            if let Some(held) = self.held.remove(&key) {
                self.emit(held, reason, &mut out, &mut finalizers);
            }
        }
        self.count();
        EventBatch::new(out, finalizers)
    }

    /// When the next held event is due.
    fn next_due(&self) -> Option<Instant> {
        self.held
            .values()
            .map(|held| held.last_line_at + self.rule.max_wait)
            .min()
    }

    fn count(&mut self) {
        for (reason, n) in std::mem::take(&mut self.emitted) {
            let mut attrs = self.attrs.component.to_vec();
            attrs.push(KeyValue::new("reason", reason));
            EVENTS.add(n, &attrs);
        }
        if self.merged > 0 {
            MERGED.add(std::mem::take(&mut self.merged), &self.attrs.component);
        }
    }
}

/// The running `multiline` stage.
pub struct Multiline {
    merger: Merger,
    settings: LiveSettings<MultilineConfig>,
}

impl StreamTransform for Multiline {
    fn transform(self: Box<Self>, input: EventStream) -> EventStream {
        let state = (*self, Some(input));
        Box::pin(futures::stream::unfold(
            state,
            |(mut stage, mut input)| async move {
                loop {
                    let Some(stream) = input.as_mut() else {
                        // The input ended: emit everything held, once.
                        let rest = stage.merger.flush(None);
                        return (!rest.is_empty()).then_some((rest, (stage, None)));
                    };
                    let due = stage.merger.next_due();
                    tokio::select! {
                        next = stream.next() => match next {
                            Some(batch) => {
                                stage.apply_settings();
                                let out = stage.merger.push(batch, Instant::now());
                                return Some((out, (stage, input)));
                            }
                            None => input = None,
                        },
                        () = sleep_until(due) => {
                            let out = stage.merger.flush(Some(Instant::now()));
                            if !out.is_empty() {
                                return Some((out, (stage, input)));
                            }
                        }
                    }
                }
            },
        ))
    }
}

impl Multiline {
    fn apply_settings(&mut self) {
        if self.settings.has_changed().unwrap_or(false) {
            let config = self.settings.borrow_and_update().clone();
            // A reload is validated before it is applied.
            if let Ok(rule) = config.compile("") {
                self.merger.rule = rule;
                tracing::info!("Multiline settings applied.");
            }
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::{BatchNotifier, BatchStatusReceiver};
    use crate::transforms::testing::event;
    use serde_json::json;

    const JAVA: &[&str] = &[
        "2026-12-02 08:00:00 ERROR request failed",
        "java.lang.IllegalStateException: boom",
        "\tat com.shop.Cart.add(Cart.java:42)",
        "\tat com.shop.Api.post(Api.java:7)",
        "Caused by: java.io.IOException: disk",
        "\t... 12 more",
        "2026-12-02 08:00:01 INFO next request",
    ];

    fn merger(config: serde_json::Value) -> Merger {
        let config: MultilineConfig = serde_json::from_value(config).unwrap();
        Merger::new(config.compile("m").unwrap(), "m")
    }

    fn acked(lines: &[&str]) -> (EventBatch, BatchStatusReceiver) {
        let (notifier, receiver) = BatchNotifier::new_with_receiver();
        let events = lines.iter().map(|l| event(l.as_bytes())).collect();
        (EventBatch::new(events, Finalizers::new(notifier)), receiver)
    }

    fn lines(batch: &EventBatch) -> Vec<String> {
        batch
            .events
            .iter()
            .map(|e| String::from_utf8_lossy(&e.line).into_owned())
            .collect()
    }

    #[test]
    fn a_java_stack_trace_is_one_event_by_its_first_line() {
        let mut m = merger(json!({"first_line": r"^\d{4}-\d{2}-\d{2} "}));
        let now = Instant::now();
        let (batch, _) = acked(JAVA);
        let out = m.push(batch, now);
        assert_eq!(lines(&out), [JAVA[..6].join("\n")]);
        let rest = m.flush(None);
        assert_eq!(lines(&rest), [JAVA[6]]);
    }

    #[test]
    fn a_python_traceback_is_one_event_by_its_continuation_lines() {
        let python = [
            "Traceback (most recent call last):",
            "  File \"app.py\", line 3, in <module>",
            "    main()",
            "ZeroDivisionError: division by zero",
            "next line",
        ];
        let mut m = merger(json!({"continuation": r"^\s|^[A-Za-z]+Error: "}));
        let (batch, _) = acked(&python);
        let out = m.push(batch, Instant::now());
        assert_eq!(lines(&out), [python[..4].join("\n")]);
        assert_eq!(lines(&m.flush(None)), [python[4]]);
    }

    #[test]
    fn an_event_split_across_batches_acknowledges_both_only_when_emitted() {
        let mut m = merger(json!({"first_line": r"^\d{4}-"}));
        let now = Instant::now();
        let (first, mut first_ack) = acked(&JAVA[..3]);
        let (second, mut second_ack) = acked(&JAVA[3..]);
        let out = m.push(first, now);
        assert!(out.is_empty());
        drop(out);
        let mut out = m.push(second, now);
        assert_eq!(lines(&out), [JAVA[..6].join("\n")]);
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let pending = |r: &mut BatchStatusReceiver, cx: &mut std::task::Context<'_>| {
            std::pin::Pin::new(r).poll(cx).is_pending()
        };
        // The last line is still held, so the second batch is not done; the first is held by
        // the emitted event until it is settled.
        assert!(pending(&mut first_ack, &mut cx));
        out.finalizers.settle(BatchStatus::Delivered);
        drop(out);
        assert!(!pending(&mut first_ack, &mut cx));
        assert!(pending(&mut second_ack, &mut cx));
        let mut rest = m.flush(None);
        rest.finalizers.settle(BatchStatus::Delivered);
        drop(rest);
        assert!(!pending(&mut second_ack, &mut cx));
    }

    #[test]
    fn limits_and_quiet_streams_end_events_and_streams_do_not_mix() {
        let mut m = merger(json!({"first_line": "^start", "max_lines": 3, "max_wait": "1s"}));
        let now = Instant::now();
        let mut a = event(b"start a");
        a.file = Some("/a.log".into());
        let mut b = event(b"start b");
        b.file = Some("/b.log".into());
        let mut events = vec![a, b];
        for i in 0..4 {
            let mut line = event(format!("a{i}").as_bytes());
            line.file = Some("/a.log".into());
            events.push(line);
        }
        let out = m.push(EventBatch::new(events, Finalizers::default()), now);
        assert_eq!(lines(&out), ["start a\na0\na1"], "max_lines ends the first");
        assert!(m.flush(Some(now)).is_empty(), "not quiet yet");
        let later = m.flush(Some(now + Duration::from_secs(1)));
        let mut got = lines(&later);
        got.sort();
        assert_eq!(got, ["a2\na3", "start b"]);
        assert_eq!(m.next_due(), None);
    }

    #[test]
    fn exactly_one_rule_is_required() {
        let config: MultilineConfig = serde_json::from_value(json!({})).unwrap();
        let errors = config.validate("transforms.m");
        assert!(
            errors[0].to_string().contains("exactly one"),
            "{}",
            errors[0]
        );
        let config: MultilineConfig =
            serde_json::from_value(json!({"first_line": "(", "max_wait": "0s"})).unwrap();
        let errors: Vec<String> = config
            .validate("transforms.m")
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("transforms.m.first_line")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("transforms.m.max_wait")),
            "{errors:?}"
        );
    }
}
