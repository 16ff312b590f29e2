//! Metric declarations: every metric is one `static` beside the component that emits it, with
//! its name, meaning and labels, created from the global meter on first use.
//!
//! Guarantees:
//! - A metric's name, type, help and labels are stated once, in its declaration; the list of
//!   every metric ([`super::all_metrics`]) is built from the declarations, and
//!   docs/metrics.md is checked against that list by a test.
//! - Declaring costs nothing until the metric is first recorded; recording after that is the
//!   OpenTelemetry call alone (the instrument is kept). Without an installed meter provider
//!   (unit tests) instruments are no-ops.
//! - Names are given without the `log_capturer_` namespace; the Prometheus exporter adds it and
//!   the `_total` suffix of counters ([`MetricDef::exported_name`]).

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics;

use super::meter;

/// What kind of instrument a metric is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    /// As docs/metrics.md writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// A metric's declaration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricDef {
    /// The name without the namespace, e.g. `files_rotated`.
    pub name: &'static str,
    pub kind: MetricKind,
    /// What it counts or shows, for `/metrics` and the reference.
    pub help: &'static str,
    /// The attribute names it carries; never a path or an id that grows without bound.
    pub labels: &'static [&'static str],
}

impl MetricDef {
    /// The name Prometheus shows: `log_capturer_<name>`, `_total` added to counters.
    pub fn exported_name(&self) -> String {
        match self.kind {
            MetricKind::Counter => format!("log_capturer_{}_total", self.name),
            _ => format!("log_capturer_{}", self.name),
        }
    }
}

/// A counter of `u64`.
pub struct Counter {
    pub def: MetricDef,
    instrument: OnceLock<metrics::Counter<u64>>,
}

impl Counter {
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self {
            def: MetricDef {
                name,
                kind: MetricKind::Counter,
                help,
                labels,
            },
            instrument: OnceLock::new(),
        }
    }

    pub fn add(&self, value: u64, attributes: &[KeyValue]) {
        self.instrument
            .get_or_init(|| {
                meter()
                    .u64_counter(self.def.name)
                    .with_description(self.def.help)
                    .build()
            })
            .add(value, attributes);
    }
}

/// A gauge of `i64` (sizes, states) or, with [`FloatGauge`], of `f64` (ages, seconds).
pub struct Gauge {
    pub def: MetricDef,
    instrument: OnceLock<metrics::Gauge<i64>>,
}

impl Gauge {
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self {
            def: MetricDef {
                name,
                kind: MetricKind::Gauge,
                help,
                labels,
            },
            instrument: OnceLock::new(),
        }
    }

    pub fn record(&self, value: i64, attributes: &[KeyValue]) {
        self.instrument
            .get_or_init(|| {
                meter()
                    .i64_gauge(self.def.name)
                    .with_description(self.def.help)
                    .build()
            })
            .record(value, attributes);
    }

    /// Records a count that may not fit an `i64` (saturating).
    pub fn record_count(&self, value: impl TryInto<i64>, attributes: &[KeyValue]) {
        self.record(value.try_into().unwrap_or(i64::MAX), attributes);
    }
}

/// A gauge of `f64`.
pub struct FloatGauge {
    pub def: MetricDef,
    instrument: OnceLock<metrics::Gauge<f64>>,
}

impl FloatGauge {
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self {
            def: MetricDef {
                name,
                kind: MetricKind::Gauge,
                help,
                labels,
            },
            instrument: OnceLock::new(),
        }
    }

    pub fn record(&self, value: f64, attributes: &[KeyValue]) {
        self.instrument
            .get_or_init(|| {
                meter()
                    .f64_gauge(self.def.name)
                    .with_description(self.def.help)
                    .build()
            })
            .record(value, attributes);
    }
}

/// A histogram of `f64` with fixed bucket boundaries.
pub struct Histogram {
    pub def: MetricDef,
    boundaries: &'static [f64],
    instrument: OnceLock<metrics::Histogram<f64>>,
}

impl Histogram {
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        boundaries: &'static [f64],
    ) -> Self {
        Self {
            def: MetricDef {
                name,
                kind: MetricKind::Histogram,
                help,
                labels,
            },
            boundaries,
            instrument: OnceLock::new(),
        }
    }

    pub fn record(&self, value: f64, attributes: &[KeyValue]) {
        self.instrument
            .get_or_init(|| {
                meter()
                    .f64_histogram(self.def.name)
                    .with_description(self.def.help)
                    .with_boundaries(self.boundaries.to_vec())
                    .build()
            })
            .record(value, attributes);
    }
}

/// Bucket boundaries for durations in seconds, from half a millisecond to a minute.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[cfg(test)]
mod tests {
    use super::*;

    static TEST_COUNTER: Counter = Counter::new("test_things", "Things.", &["component"]);

    #[test]
    fn declarations_name_what_prometheus_shows() {
        assert_eq!(
            TEST_COUNTER.def.exported_name(),
            "log_capturer_test_things_total"
        );
        // Recording without a meter provider is a no-op, never a panic.
        TEST_COUNTER.add(1, &[KeyValue::new("component", "x")]);
        let gauge = Gauge::new("queue_size", "Events queued.", &["sink"]);
        assert_eq!(gauge.def.exported_name(), "log_capturer_queue_size");
    }
}
