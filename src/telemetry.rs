//! Telemetry set-up: the OpenTelemetry meter provider with its Prometheus exporter (unless
//! `telemetry.prometheus` is false) and its OTLP push (when `telemetry.otlp.endpoint` is set,
//! see `otlp.rs`), and the program's own logs through `tracing`.
//!
//! Guarantees: every instrument is exported as `log_capturer_<name>` (counters with one `_total`),
//! without `otel_scope_*` labels and without a `target_info` series; `build_info` carries the
//! version as a label with the value 1.

use std::io::IsTerminal;

use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder, TextEncoder};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};
use log_capturer_components::telemetry::{Counter, Gauge, MetricDef, TelemetryEvent};

/// Always 1; the `version` label says which build runs.
pub static BUILD_INFO: Gauge = Gauge::new(
    "build_info",
    "Always 1; the labels say which build is running.",
    &["version"],
);
/// Configuration reloads.
pub static CONFIG_RELOADS: Counter = Counter::new(
    "config_reloads",
    "Configuration reloads, by result (success or failure).",
    &["result"],
);
/// A reload applied what it could live.
pub struct ConfigReloaded<'a> {
    pub report: &'a crate::app::ReloadReport,
}

impl TelemetryEvent for ConfigReloaded<'_> {
    fn emit(self) {
        CONFIG_RELOADS.add(1, &[KeyValue::new("result", "success")]);
        tracing::info!(
            applied = ?self.report.plan.applied,
            restart_required = ?self.report.plan.restart_required,
            "Configuration reloaded."
        );
    }
}

/// A reload was refused: the new configuration is invalid and the running one stays.
pub struct ConfigReloadRefused<'a> {
    pub errors: &'a crate::config::ConfigErrors,
}

impl TelemetryEvent for ConfigReloadRefused<'_> {
    fn emit(self) {
        CONFIG_RELOADS.add(1, &[KeyValue::new("result", "failure")]);
        tracing::warn!(
            errors = %self.errors.0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
            "Configuration reload refused; the running configuration is unchanged."
        );
    }
}

/// API connections the server closed.
pub static API_CONNECTIONS_CLOSED: Counter = Counter::new(
    "api_connections_closed",
    "API connections the server closed: limit (new one, all busy), evicted (oldest waiting one, to make room), header_timeout.",
    &["reason"],
);

/// Tapped events a slow tapper did not take in time.
pub static TAP_DROPPED: Counter = Counter::new(
    "tap_dropped",
    "Events a tap (GET /tap, log-capturer tap) did not pass on because the tapper read too slowly; the pipeline never waits for a tap.",
    &["component"],
);

/// OTLP pushes that failed.
pub static OTLP_EXPORT_FAILURES: Counter = Counter::new(
    "otlp_export_failures",
    "OTLP metrics pushes that failed, by reason: connection, timeout, http_status (the collector answered other than 2xx).",
    &["reason"],
);

/// The process's resident memory, sampled at each scrape.
pub static PROCESS_RESIDENT_MEMORY: Gauge = Gauge::new(
    "process_resident_memory_bytes",
    "Resident memory of the process in bytes (from /proc/self/statm, at each scrape).",
    &[],
);
/// Open descriptors, sampled at each scrape.
pub static PROCESS_OPEN_FDS: Gauge = Gauge::new(
    "process_open_fds",
    "Open file descriptors of the process (entries of /proc/self/fd, at each scrape).",
    &[],
);
/// The descriptor limit.
pub static PROCESS_MAX_FDS: Gauge = Gauge::new(
    "process_max_fds",
    "The process's soft limit on open file descriptors (RLIMIT_NOFILE).",
    &[],
);
/// Threads, sampled at each scrape.
pub static PROCESS_THREADS: Gauge = Gauge::new(
    "process_threads",
    "Threads of the process (from /proc/self/status, at each scrape).",
    &[],
);

/// The engine's own metrics (the components' are in `log_capturer_components::telemetry`).
pub static METRICS: &[&MetricDef] = &[
    &BUILD_INFO.def,
    &CONFIG_RELOADS.def,
    &API_CONNECTIONS_CLOSED.def,
    &TAP_DROPPED.def,
    &OTLP_EXPORT_FAILURES.def,
    &PROCESS_RESIDENT_MEMORY.def,
    &PROCESS_OPEN_FDS.def,
    &PROCESS_MAX_FDS.def,
    &PROCESS_THREADS.def,
];

/// Records the process gauges from /proc (Linux); a value that cannot be read is left as it
/// was, so a scrape never fails for it.
fn sample_process() {
    let page = {
        // SAFETY: sysconf has no memory effects.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        u64::try_from(size).unwrap_or(4096)
    };
    if let Some(resident) = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
    {
        PROCESS_RESIDENT_MEMORY.record_count(resident.saturating_mul(page), &[]);
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        // The directory handle itself is one of the entries; it is gone after the count.
        PROCESS_OPEN_FDS.record_count(entries.count().saturating_sub(1), &[]);
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } == 0 {
        PROCESS_MAX_FDS.record_count(limit.rlim_cur, &[]);
    }
    if let Some(threads) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))?
                .trim()
                .parse::<u64>()
                .ok()
        })
    {
        PROCESS_THREADS.record_count(threads, &[]);
    }
}

/// Every metric the program exports.
pub fn all_metrics() -> Vec<&'static MetricDef> {
    let mut all = log_capturer_components::registry::all_metrics();
    all.extend(METRICS.iter().copied());
    all
}

/// The installed metrics pipeline.
pub struct Telemetry {
    /// `None` when `telemetry.prometheus` is false.
    registry: Option<prometheus::Registry>,
    provider: SdkMeterProvider,
}

/// Series (label combinations) one instrument keeps before the SDK folds the rest into one
/// `otel.metric.overflow="true"` series. Ours are labelled by component, reason, status or
/// output: a few dozen at most. The SDK's default, 2000, reserves its table up front: about
/// 135 KiB per instrument, 4 MiB of the 15 MiB heap at `standard` (heaptrack, 2026-12-02).
const SERIES_PER_INSTRUMENT: usize = 256;

/// The view every instrument gets: its own name, kind and description, [`SERIES_PER_INSTRUMENT`].
fn bounded_series(
    _instrument: &opentelemetry_sdk::metrics::Instrument,
) -> Option<opentelemetry_sdk::metrics::Stream> {
    opentelemetry_sdk::metrics::Stream::builder()
        .with_cardinality_limit(SERIES_PER_INSTRUMENT)
        .build()
        .ok()
}

impl Telemetry {
    /// Installs the global meter provider with the readers `config.root.telemetry` asks for.
    /// Call once, inside the runtime, before the topology is built.
    /// `headers` are `telemetry.otlp.headers`, resolved.
    pub fn install(
        settings: &crate::config::telemetry::TelemetryConfig,
        headers: &std::collections::BTreeMap<String, log_capturer_components::secret::SecretString>,
    ) -> Result<Self, String> {
        let mut builder = SdkMeterProvider::builder().with_view(bounded_series);
        let registry = if settings.prometheus {
            let registry = prometheus::Registry::new();
            let exporter = opentelemetry_prometheus::exporter()
                .with_registry(registry.clone())
                .with_namespace("log_capturer")
                .without_target_info()
                .scope_info_enabled(false)
                .build()
                .map_err(|err| format!("cannot set up the Prometheus exporter: {err}"))?;
            builder = builder.with_reader(exporter);
            Some(registry)
        } else {
            None
        };
        if let Some(url) = settings.otlp.url() {
            let reader = crate::otlp::reader(&settings.otlp, &url, headers)?;
            builder = builder
                .with_reader(reader)
                .with_resource(crate::otlp::resource(&settings.otlp));
            tracing::info!(endpoint = %url, interval = ?settings.otlp.interval, "Pushing metrics with OTLP.");
        }
        let provider = builder.build();
        opentelemetry::global::set_meter_provider(provider.clone());
        BUILD_INFO.record(1, &[KeyValue::new("version", env!("CARGO_PKG_VERSION"))]);
        Ok(Self { registry, provider })
    }

    /// Whether `GET /metrics` is served (`telemetry.prometheus`).
    pub fn prometheus_enabled(&self) -> bool {
        self.registry.is_some()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, String> {
        let Some(registry) = &self.registry else {
            return Err("telemetry.prometheus is false: metrics are pushed with OTLP only".into());
        };
        sample_process();
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .map_err(|err| format!("cannot encode metrics: {err}"))?;
        String::from_utf8(out).map_err(|err| format!("metrics are not UTF-8: {err}"))
    }

    /// Flushes and stops the provider.
    pub fn shutdown(&self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::debug!(error = %err, "Meter provider shutdown reported an error.");
        }
    }
}

/// Sets up the program's own logs on standard error. `RUST_LOG`, when set, overrides `log.level`.
pub fn init_logging(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // The OpenTelemetry SDK logs its own set-up at info level; that is noise to an operator.
    let filter = match "opentelemetry=warn".parse() {
        Ok(directive) if std::env::var_os("RUST_LOG").is_none() => filter.add_directive(directive),
        _ => filter,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second initialisation (tests running several pipelines) keeps the first subscriber.
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
