//! The `throttle` transform: a rate limit per stream, with a burst.
//!
//! Guarantees:
//! - Each stream (the events whose `key` comes out the same; by default one label set) passes
//!   up to `burst` events at once, then `rate` per second on average: a token bucket of
//!   `burst` tokens refilled at `rate` a second. A bucket is kept as the time its stream's
//!   next event is due (the generic cell rate algorithm), in integer nanoseconds of a
//!   monotonic clock, so it neither drifts nor rounds a fraction of a token away.
//! - Events over the limit are removed from the batch, which acknowledges them as handled (a
//!   batch left empty is settled as delivered by the topology, so file positions advance past
//!   them), counted in `dropped_total{reason="throttled"}` once per batch, and logged at most
//!   once per [`LOG_EVERY`] with the number dropped since the last log line.
//! - At most `max_keys` buckets are kept; the least recently used goes first. A bucket that
//!   goes while it still holds its stream back (it is not full) is counted in
//!   `throttle_evictions_total`: that stream starts again with a full burst. A full bucket is
//!   the same as none, so forgetting one changes nothing.
//! - The clock is read once per batch, through a [`Clock`] (the monotonic clock in a pipeline;
//!   tests drive a [`ManualClock`]).
//! - Every setting reloads live. The buckets are kept across a change of `rate`, `burst` or
//!   `max_keys` (a smaller `max_keys` forgets the least recently used at once); a new `key`
//!   means new streams, so the buckets start again full.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use schnellru::{ByLength, LruMap};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::component::{
    Component, FunctionTransform, Reconfigurable, Reconfigure, Transform, TransformComponent,
    TransformContext, config_build_error,
};
use crate::config::{ConfigError, join_path, valid_label_name};
use crate::event::{ComponentKey, Labels, LogEvent};
use crate::telemetry::{ComponentAttrs, Counter, Gauge, LogThrottle, MetricDef, TelemetryEvent};
use crate::{BuildError, EventBatch};

/// How often, at most, a throttle logs that it dropped events.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

static EVICTIONS: Counter = Counter::new(
    "throttle_evictions",
    "Throttle buckets forgotten (max_keys) while they still held their stream back: that stream \
     starts again with a full burst.",
    &["component"],
);
static KEYS: Gauge = Gauge::new(
    "throttle_keys",
    "Streams a throttle transform keeps a bucket for.",
    &["component"],
);

/// Every metric of the throttle transform.
pub static METRICS: &[&MetricDef] = &[&EVICTIONS.def, &KEYS.def];

fn default_max_keys() -> usize {
    10_000
}

/// Configuration of the `throttle` transform.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThrottleConfig {
    /// Events per second a stream passes on average, after its burst. Greater than zero; a
    /// fraction is allowed (`0.5`: one every two seconds). Required.
    pub rate: f64,
    /// Events a stream passes at once (the bucket's size). At least 1; by default `rate`
    /// rounded up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// What a stream is: a template of `{{ NAME }}` (the label NAME, also written
    /// `{{ label.NAME }}`), `{{ file }}` (the file read), `{{ source }}` and text, e.g.
    /// `"{{ container }}/{{ stream }}"`. By default every label of the event (one bucket per
    /// label set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Most buckets kept (about 50 bytes each); the least recently used goes first. At least 1.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

impl Component for ThrottleConfig {
    const TYPE: &'static str = "throttle";
    const METRICS: &'static [&'static MetricDef] = METRICS;
    /// Every setting applies live on reload (see [`Throttle::reconfigure`]).
    const HOT_RELOADABLE: &'static [&'static str] = &["rate", "burst", "key", "max_keys"];

    fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        self.check(prefix).err().unwrap_or_default()
    }
}

impl TransformComponent for ThrottleConfig {
    fn build(&self, cx: TransformContext<Self>) -> Result<Transform, BuildError> {
        let throttle = self
            .throttle(&cx.key, Arc::new(MonotonicClock))
            .map_err(|errors| config_build_error(&cx.key, errors))?;
        Ok(Transform::function(Reconfigurable::new(cx, throttle)))
    }
}

/// The settings checked and worked out.
struct Limits {
    /// Nanoseconds between two events at `rate` (at least 1).
    interval_ns: u64,
    /// How far ahead of now a bucket's due time may be and still pass an event:
    /// `(burst - 1) * interval`.
    tolerance_ns: u64,
    key: StreamKey,
    max_keys: u32,
}

impl ThrottleConfig {
    fn check(&self, prefix: &str) -> Result<Limits, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if !(self.rate.is_finite() && self.rate > 0.0) {
            errors.push(
                ConfigError::new(join_path(prefix, "rate"), "must be greater than zero")
                    .with_hint("events per second, e.g. 100 or 0.5 (one every two seconds)"),
            );
        }
        if self.burst == Some(0) {
            errors.push(ConfigError::new(
                join_path(prefix, "burst"),
                "must be at least 1",
            ));
        }
        if self.max_keys == 0 {
            errors.push(
                ConfigError::new(join_path(prefix, "max_keys"), "must be at least 1")
                    .with_hint("the default is 10000"),
            );
        }
        let key =
            match self.key.as_deref().map(StreamKey::parse).transpose() {
                Ok(key) => key.unwrap_or(StreamKey::Labels),
                Err(message) => {
                    errors.push(ConfigError::new(join_path(prefix, "key"), message).with_hint(
                    "e.g. \"{{ file }}\" or \"{{ container }}/{{ stream }}\" (labels by name)",
                ));
                    StreamKey::Labels
                }
            };
        if !errors.is_empty() {
            return Err(errors);
        }
        // Saturating float-to-integer casts: a tiny rate waits "forever", a huge one 1 ns.
        let interval_ns = ((1e9 / self.rate).round() as u64).max(1);
        let burst = self.burst.unwrap_or((self.rate.ceil() as u64).max(1));
        Ok(Limits {
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(burst - 1),
            key,
            max_keys: u32::try_from(self.max_keys).unwrap_or(u32::MAX),
        })
    }

    /// The running transform, reading the time from `clock`.
    pub fn throttle(&self, key: &str, clock: Arc<dyn Clock>) -> Result<Throttle, Vec<ConfigError>> {
        let limits = self.check(key)?;
        let started = clock.now();
        Ok(Throttle {
            buckets: LruMap::with_hasher(
                ByLength::new(limits.max_keys),
                std::hash::RandomState::new(),
            ),
            limits,
            clock,
            started,
            last_stream: None,
            scratch: Vec::new(),
            stats: ThrottleStats::default(),
            attrs: ComponentAttrs::new(key),
            log: LogThrottle::new(LOG_EVERY),
            unlogged: 0,
        })
    }
}

/// Where a throttle reads the time.
pub trait Clock: Send + Sync + 'static {
    /// Now, on a clock that never goes back.
    fn now(&self) -> Instant;
}

/// The monotonic clock ([`Instant::now`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to: for tests, which then never sleep.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    elapsed_ns: AtomicU64,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            elapsed_ns: AtomicU64::new(0),
        }
    }
}

impl ManualClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ns = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.elapsed_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + Duration::from_nanos(self.elapsed_ns.load(Ordering::Relaxed))
    }
}

/// What makes two events the same stream.
#[derive(Clone, Debug, PartialEq)]
enum StreamKey {
    /// Every label, name and value.
    Labels,
    Template(Vec<KeyPart>),
}

#[derive(Clone, Debug, PartialEq)]
enum KeyPart {
    Text(String),
    Source,
    File,
    Label(String),
}

impl StreamKey {
    /// Parses a `key` template; an unclosed or invalid placeholder is an error naming it.
    fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(KeyPart::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed {{{{ in {template:?}"))?;
            let name = after[..end].trim();
            parts.push(match name {
                "source" => KeyPart::Source,
                "file" => KeyPart::File,
                _ => {
                    let label = name.strip_prefix("label.").unwrap_or(name);
                    if !valid_label_name(label) {
                        return Err(format!(
                            "{{{{ {name} }}}} in {template:?} is neither source, file nor a label name"
                        ));
                    }
                    KeyPart::Label(label.to_string())
                }
            });
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(KeyPart::Text(rest.to_string()));
        }
        Ok(Self::Template(parts))
    }

    /// The key's hash for one event: every part length-prefixed, so `("a", "bc")` and
    /// `("ab", "c")` differ.
    fn hash(&self, event: &LogEvent, scratch: &mut Vec<u8>) -> u64 {
        fn put(buf: &mut Vec<u8>, bytes: &[u8]) {
            buf.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            buf.extend_from_slice(bytes);
        }
        scratch.clear();
        match self {
            Self::Labels => {
                for (name, value) in event.labels.iter() {
                    put(scratch, name.as_bytes());
                    put(scratch, value.as_bytes());
                }
            }
            Self::Template(parts) => {
                for part in parts {
                    let bytes = match part {
                        KeyPart::Text(text) => text.as_bytes(),
                        KeyPart::Source => event.source.as_bytes(),
                        KeyPart::File => event.file.as_deref().unwrap_or("").as_bytes(),
                        KeyPart::Label(name) => event.labels.get(name).unwrap_or("").as_bytes(),
                    };
                    put(scratch, bytes);
                }
            }
        }
        xxh3_64(scratch)
    }
}

/// The key hash of the last run of events: a source's batch usually shares labels, source and
/// file between many lines, so the key is worked out once per run, not once per line. Holding
/// clones keeps the compared allocations alive, so an address match is a content match.
struct LastStream {
    labels: Labels,
    source: ComponentKey,
    file: Option<Arc<str>>,
    hash: u64,
}

impl LastStream {
    fn matches(&self, event: &LogEvent) -> bool {
        event.shares_stream(&self.labels, &self.source, self.file.as_ref())
    }
}

/// What a [`Throttle`] has done since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThrottleStats {
    /// Events passed on.
    pub passed: u64,
    /// Events dropped over the limit.
    pub throttled: u64,
    /// Buckets forgotten while they still held their stream back.
    pub evictions: u64,
    /// Buckets kept now.
    pub keys: usize,
}

/// The running `throttle` transform.
pub struct Throttle {
    /// Key hash -> when the stream's next event is due, in nanoseconds since `started`.
    buckets: LruMap<u64, u64, ByLength, std::hash::RandomState>,
    limits: Limits,
    clock: Arc<dyn Clock>,
    started: Instant,
    last_stream: Option<LastStream>,
    /// Reused for the key's bytes, so hashing allocates nothing per line.
    scratch: Vec<u8>,
    stats: ThrottleStats,
    attrs: ComponentAttrs,
    log: LogThrottle,
    /// Events dropped since the last log line.
    unlogged: u64,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("interval_ns", &self.limits.interval_ns)
            .field("tolerance_ns", &self.limits.tolerance_ns)
            .field("key", &self.limits.key)
            .field("max_keys", &self.limits.max_keys)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Throttle {
    /// What it has done so far.
    pub fn stats(&self) -> ThrottleStats {
        ThrottleStats {
            keys: self.buckets.len(),
            ..self.stats
        }
    }

    /// Forgets the least recently used buckets beyond `max_keys`, counting those that still
    /// held their stream back.
    fn shrink_to(&mut self, max_keys: u32, now_ns: u64) -> u64 {
        let mut held_back = 0;
        while self.buckets.len() > max_keys as usize {
            match self.buckets.pop_oldest() {
                Some((_, due)) if due > now_ns => held_back += 1,
                Some(_) => {}
                None => break,
            }
        }
        held_back
    }
}

impl FunctionTransform for Throttle {
    fn transform(&mut self, batch: &mut EventBatch) {
        if batch.is_empty() {
            return;
        }
        let now = u64::try_from(
            self.clock
                .now()
                .saturating_duration_since(self.started)
                .as_nanos(),
        )
        .unwrap_or(u64::MAX);
        let before = batch.len();
        let Self {
            buckets,
            limits,
            last_stream,
            scratch,
            ..
        } = self;
        let mut evictions = 0u64;
        batch.events.retain(|event| {
            let key = match last_stream {
                Some(last) if last.matches(event) => last.hash,
                _ => {
                    let hash = limits.key.hash(event, scratch);
                    *last_stream = Some(LastStream {
                        labels: event.labels.clone(),
                        source: event.source.clone(),
                        file: event.file.clone(),
                        hash,
                    });
                    hash
                }
            };
            let due = match buckets.get(&key) {
                Some(due) => (*due).max(now),
                None => {
                    if buckets.len() >= limits.max_keys as usize
                        && buckets.peek_oldest().is_some_and(|(_, due)| *due > now)
                    {
                        evictions += 1;
                    }
                    now
                }
            };
            if due - now > limits.tolerance_ns {
                return false;
            }
            // Inserting a known key replaces its value; a new one pushes out the least
            // recently used when full.
            buckets.insert(key, due.saturating_add(limits.interval_ns));
            true
        });
        let throttled = before - batch.len();
        self.stats.passed += batch.len() as u64;
        self.stats.throttled += throttled as u64;
        self.stats.evictions += evictions;
        if evictions > 0 {
            EVICTIONS.add(evictions, &self.attrs.component);
        }
        KEYS.record(
            i64::try_from(self.buckets.len()).unwrap_or(i64::MAX),
            &self.attrs.component,
        );
        if throttled > 0 {
            EventsThrottled {
                attrs: &self.attrs,
                count: throttled,
                unlogged: &mut self.unlogged,
                log: &mut self.log,
            }
            .emit();
        }
    }
}

impl Reconfigure<ThrottleConfig> for Throttle {
    /// New settings from a reload (invalid ones are ignored: a reload validates first).
    fn reconfigure(&mut self, config: &ThrottleConfig) {
        let Ok(limits) = config.check(self.attrs.key()) else {
            return;
        };
        if limits.key != self.limits.key {
            // The old buckets were other streams.
            self.buckets.clear();
            self.last_stream = None;
        }
        *self.buckets.limiter_mut() = ByLength::new(limits.max_keys);
        let now = u64::try_from(
            self.clock
                .now()
                .saturating_duration_since(self.started)
                .as_nanos(),
        )
        .unwrap_or(u64::MAX);
        let evictions = self.shrink_to(limits.max_keys, now);
        if evictions > 0 {
            self.stats.evictions += evictions;
            EVICTIONS.add(evictions, &self.attrs.component);
        }
        self.limits = limits;
    }
}

/// Events over the limit were dropped: counted at once, logged at most every [`LOG_EVERY`]
/// with the number dropped since the last line.
struct EventsThrottled<'a> {
    attrs: &'a ComponentAttrs,
    count: usize,
    unlogged: &'a mut u64,
    log: &'a mut LogThrottle,
}

impl TelemetryEvent for EventsThrottled<'_> {
    fn emit(self) {
        self.attrs.dropped(self.count, "throttled");
        *self.unlogged += self.count as u64;
        if self.log.ready().is_some() {
            tracing::warn!(
                transform = %self.attrs.key(),
                dropped = std::mem::take(self.unlogged),
                "Events over the rate limit dropped (dropped_total{{reason=\"throttled\"}} counts them all)."
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::TransformConfig;
    use crate::transforms::testing::event;
    use serde_json::json;

    fn config(rate: f64, burst: Option<u64>) -> ThrottleConfig {
        ThrottleConfig {
            rate,
            burst,
            key: None,
            max_keys: 10_000,
        }
    }

    fn labelled(line: &str, labels: &[(&str, &str)]) -> LogEvent {
        let mut e = event(line.as_bytes());
        e.labels = Labels::new(labels.iter().copied());
        e
    }

    fn app(line: &str) -> LogEvent {
        labelled(line, &[("app", "a")])
    }

    fn run(throttle: &mut Throttle, events: Vec<LogEvent>) -> Vec<String> {
        let mut batch = EventBatch::new(events, Default::default());
        throttle.transform(&mut batch);
        batch
            .events
            .iter()
            .map(|e| String::from_utf8_lossy(&e.line).into_owned())
            .collect()
    }

    fn numbered(n: usize) -> Vec<LogEvent> {
        (0..n).map(|i| app(&i.to_string())).collect()
    }

    #[test]
    fn a_burst_passes_then_the_rest_is_dropped_and_counted() {
        let clock = Arc::new(ManualClock::default());
        let mut t = config(10.0, Some(3)).throttle("t", clock).unwrap();
        assert_eq!(run(&mut t, numbered(5)), ["0", "1", "2"]);
        // Same instant, next batch: the bucket is still empty.
        assert_eq!(run(&mut t, numbered(2)), Vec::<String>::new());
        assert_eq!(
            t.stats(),
            ThrottleStats {
                passed: 3,
                throttled: 4,
                evictions: 0,
                keys: 1,
            }
        );
    }

    #[test]
    fn the_bucket_refills_at_the_rate_up_to_the_burst() {
        let clock = Arc::new(ManualClock::default());
        let mut t = config(2.0, Some(4)).throttle("t", clock.clone()).unwrap();
        assert_eq!(run(&mut t, numbered(10)).len(), 4);
        // 2 a second: one more every 500 ms, none before.
        clock.advance(Duration::from_millis(499));
        assert_eq!(run(&mut t, numbered(3)).len(), 0);
        clock.advance(Duration::from_millis(1));
        assert_eq!(run(&mut t, numbered(3)).len(), 1);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(run(&mut t, numbered(10)).len(), 3);
        // A long quiet time refills to the burst, not beyond.
        clock.advance(Duration::from_secs(3600));
        assert_eq!(run(&mut t, numbered(10)).len(), 4);

        // A fractional rate: one event every 4 s (the default burst is 1).
        let mut slow = config(0.25, None).throttle("t", clock.clone()).unwrap();
        assert_eq!(run(&mut slow, numbered(3)).len(), 1);
        clock.advance(Duration::from_millis(3999));
        assert_eq!(run(&mut slow, numbered(3)).len(), 0);
        clock.advance(Duration::from_millis(1));
        assert_eq!(run(&mut slow, numbered(3)).len(), 1);
    }

    #[test]
    fn streams_have_their_own_buckets() {
        let clock = Arc::new(ManualClock::default());
        // By default a stream is a label set.
        let mut t = config(1.0, Some(2)).throttle("t", clock.clone()).unwrap();
        let events = vec![
            labelled("a1", &[("app", "a")]),
            labelled("b1", &[("app", "b")]),
            labelled("a2", &[("app", "a")]),
            labelled("a3", &[("app", "a")]),
            labelled("ab1", &[("app", "a"), ("env", "b")]),
            labelled("b2", &[("app", "b")]),
        ];
        assert_eq!(run(&mut t, events), ["a1", "b1", "a2", "ab1", "b2"]);
        assert_eq!(t.stats().keys, 3);

        // With a key template, only what it names tells streams apart.
        let mut by_file = ThrottleConfig {
            key: Some("{{ file }}".into()),
            ..config(1.0, Some(1))
        }
        .throttle("t", clock)
        .unwrap();
        let mut events = vec![
            labelled("x1", &[("app", "a")]),
            labelled("x2", &[("app", "b")]),
            labelled("y1", &[("app", "a")]),
        ];
        events[0].file = Some("/x.log".into());
        events[1].file = Some("/x.log".into());
        events[2].file = Some("/y.log".into());
        assert_eq!(run(&mut by_file, events), ["x1", "y1"]);
    }

    #[test]
    fn a_key_template_reads_labels_source_and_file_framed() {
        let key = StreamKey::parse("{{ container }}/{{ label.stream }}:{{source}}").unwrap();
        let mut scratch = Vec::new();
        let a = labelled("", &[("container", "api"), ("stream", "stdout")]);
        let b = labelled("", &[("container", "api"), ("stream", "stderr")]);
        let a_other_labels = labelled(
            "",
            &[("container", "api"), ("stream", "stdout"), ("x", "y")],
        );
        assert_ne!(key.hash(&a, &mut scratch), key.hash(&b, &mut scratch));
        assert_eq!(
            key.hash(&a, &mut scratch),
            key.hash(&a_other_labels, &mut scratch)
        );
        assert!(
            StreamKey::parse("{{ file")
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(StreamKey::parse("{{ 9x }}").unwrap_err().contains("label"));
        // Framed: ("a", "bc") is not ("ab", "c").
        let labels = StreamKey::Labels;
        assert_ne!(
            labels.hash(&labelled("", &[("a", "bc")]), &mut scratch),
            labels.hash(&labelled("", &[("ab", "c")]), &mut scratch)
        );
    }

    #[test]
    fn max_keys_forgets_the_least_recently_used_and_counts_held_back_ones() {
        let clock = Arc::new(ManualClock::default());
        let mut t = ThrottleConfig {
            max_keys: 2,
            ..config(1.0, Some(1))
        }
        .throttle("t", clock.clone())
        .unwrap();
        let s = |name: &str| labelled(name, &[("app", name)]);
        assert_eq!(run(&mut t, vec![s("a"), s("b")]), ["a", "b"]);
        // `c` pushes out `a` (the least recently used), which still held its stream back.
        assert_eq!(run(&mut t, vec![s("c")]), ["c"]);
        assert_eq!((t.stats().keys, t.stats().evictions), (2, 1));
        // Forgotten, `a` starts again with a full bucket; `b` and `c` are still limited.
        assert_eq!(run(&mut t, vec![s("a"), s("c")]), ["a"]);
        assert_eq!(t.stats().evictions, 2, "`b` went while holding back");

        // A bucket that has refilled is the same as none: forgetting it is not counted.
        clock.advance(Duration::from_secs(10));
        assert_eq!(run(&mut t, vec![s("d")]), ["d"]);
        assert_eq!(t.stats().evictions, 2);
    }

    #[test]
    fn reloads_keep_buckets_unless_the_key_changes() {
        let clock = Arc::new(ManualClock::default());
        let mut t = config(1.0, Some(2)).throttle("t", clock.clone()).unwrap();
        assert_eq!(run(&mut t, numbered(5)).len(), 2);
        // A bigger burst applies to the bucket as it is: one more passes now.
        t.reconfigure(&config(1.0, Some(3)));
        assert_eq!(run(&mut t, numbered(5)).len(), 1);
        // A new key: new streams, full buckets.
        t.reconfigure(&ThrottleConfig {
            key: Some("{{ source }}".into()),
            ..config(1.0, Some(3))
        });
        assert_eq!(t.stats().keys, 0);
        assert_eq!(run(&mut t, numbered(5)).len(), 3);
        // A smaller max_keys forgets at once; invalid settings are ignored.
        let mut many = config(1.0, Some(1)).throttle("t", clock).unwrap();
        let events = (0..4)
            .map(|i| labelled("x", &[("n", &i.to_string())]))
            .collect();
        run(&mut many, events);
        many.reconfigure(&ThrottleConfig {
            max_keys: 1,
            ..config(1.0, Some(1))
        });
        assert_eq!((many.stats().keys, many.stats().evictions), (1, 3));
        many.reconfigure(&config(0.0, None));
        assert_eq!(many.limits.interval_ns, 1_000_000_000);
    }

    #[tokio::test]
    async fn dropped_events_leave_the_batch_acknowledgements_to_what_goes_on() {
        use crate::ack::{BatchNotifier, BatchStatus, Finalizers};
        let clock = Arc::new(ManualClock::default());
        let mut t = config(1.0, Some(1)).throttle("t", clock).unwrap();
        let (notifier, status) = BatchNotifier::new_with_receiver();
        let mut batch = EventBatch::new(numbered(3), Finalizers::new(notifier));
        t.transform(&mut batch);
        // The dropped events took nothing with them: the batch still owes its source, and is
        // settled as a whole by whoever settles what went on (the topology settles an emptied
        // batch as delivered; see `topology.rs`).
        assert_eq!(batch.len(), 1);
        assert!(!batch.finalizers.is_empty());
        batch.finalizers.settle(BatchStatus::Delivered);
        drop(batch);
        assert_eq!(status.await, BatchStatus::Delivered);
    }

    #[test]
    fn bad_settings_name_their_keys() {
        let errors = ThrottleConfig {
            rate: -1.0,
            burst: Some(0),
            key: Some("{{ nope".into()),
            max_keys: 0,
        }
        .validate("transforms.t");
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "transforms.t.rate",
                "transforms.t.burst",
                "transforms.t.max_keys",
                "transforms.t.key"
            ]
        );
        let errors = TransformConfig::parse("transforms.t", "throttle", json!({})).unwrap_err();
        assert!(
            errors[0].to_string().contains("missing field `rate`"),
            "{errors:?}"
        );
        let errors =
            TransformConfig::parse("transforms.t", "throttle", json!({"rate": 1, "burts": 2}))
                .unwrap_err();
        assert!(
            errors[0].to_string().contains("did you mean `burst`?"),
            "{errors:?}"
        );
        let parsed =
            TransformConfig::parse("transforms.t", "throttle", json!({"rate": 5})).unwrap();
        assert_eq!(
            parsed.downcast::<ThrottleConfig>(),
            Some(&config(5.0, None))
        );
        assert!(parsed.build("t").is_ok());
    }
}
