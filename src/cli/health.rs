//! `log-capturer health`: the predecessor's `health_check.sh` as one command. It asks a running
//! instance's API (`GET /health`, `GET /metrics` twice, `interval` apart, and `GET /dlq`) and
//! prints one row per check with its status, then exits 0 (every check ok), 1 (a warning) or
//! 2 (a critical check, or the API unreachable).
//!
//! Guarantees:
//! - Every threshold is in [`THRESHOLDS`] (and in docs/runbook.md); the ones shared with the
//!   alert rules (alerts/log-capturer.yaml) use the same numbers, so `health` and the pager agree.
//! - Rates come from two scrapes over the measured time between them; a counter that went
//!   down (the instance restarted) counts from zero.
//! - The last line names every failing check; `--output FILE` writes the same report as JSON.
//! - Colour only when standard output is a terminal and `NO_COLOR` is unset or empty.
//! - The command only reads: it never changes the instance.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde::Serialize;

use super::api_target;
use super::metrics_text::{Sample, Scrape, scrape, share};
use crate::config::ConfigSource;

/// The arguments of `health`.
#[derive(Debug, Clone)]
pub struct HealthArgs {
    pub url: Option<String>,
    pub token: Option<String>,
    pub interval: Duration,
    pub output: Option<PathBuf>,
}

/// A check's outcome; the worst decides the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Critical,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "WARN",
            Self::Critical => "CRITICAL",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Self::Ok => "\x1b[32m",
            Self::Warn => "\x1b[33m",
            Self::Critical => "\x1b[1;31m",
        }
    }

    /// The level of `value` against a warn and a critical bound (inclusive).
    fn of(value: f64, warn: f64, critical: f64) -> Self {
        if value >= critical {
            Self::Critical
        } else if value >= warn {
            Self::Warn
        } else {
            Self::Ok
        }
    }
}

/// One row of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Level,
    pub value: String,
    pub detail: String,
}

impl Check {
    fn new(name: impl Into<String>, status: Level, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status,
            value: value.into(),
            detail: String::new(),
        }
    }

    fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// A warn and a critical bound for one measure.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub warn: f64,
    pub critical: f64,
}

/// Every threshold `health` applies.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    /// Sink queue fill, the fuller of `queue_size / queue_capacity` and `queue_bytes /
    /// queue_capacity_bytes` (alert `DispatcherQueueSaturated`: 0.9).
    pub queue_fill: Bound,
    /// Errors per second per component, every reason (alert `HighErrorRate`: 1/s).
    pub error_rate: Bound,
    /// Bytes read but not yet committed, per source.
    pub positions_lag_bytes: Bound,
    /// Age of the oldest committed offset not yet saved (alert `PositionSaveLag`: 10 s).
    pub position_save_lag_seconds: Bound,
    /// Entries in a dead-letter queue (alert `DLQQueueSizeCritical`: 8000).
    pub dlq_entries: Bound,
    /// Age of the oldest dead-letter record, seconds.
    pub dlq_age_seconds: Bound,
    /// Share of checked lines dropped as duplicates (alert `HighDuplicateRate`: 0.3).
    pub duplicate_ratio: Bound,
    /// Entries Loki rejected for their time, per second per sink (alerts
    /// `LokiTimestampErrors`: 1/s, `HighTimestampRejectionRate`: 10/s).
    pub timestamp_rejection_rate: Bound,
    /// Open descriptors over the limit (alert `FileDescriptorsNearLimit`: 0.8).
    pub descriptors: Bound,
    /// Resident memory, bytes (alert `HighMemoryUsage`: 512 MiB).
    pub memory_bytes: Bound,
    /// Threads (alert `ThreadCountHigh`: 256).
    pub threads: Bound,
}

const MIB: f64 = 1024.0 * 1024.0;

/// The thresholds, documented in docs/runbook.md ("log-capturer health").
pub const THRESHOLDS: Thresholds = Thresholds {
    queue_fill: Bound {
        warn: 0.7,
        critical: 0.9,
    },
    error_rate: Bound {
        warn: f64::MIN_POSITIVE,
        critical: 1.0,
    },
    positions_lag_bytes: Bound {
        warn: 64.0 * MIB,
        critical: 512.0 * MIB,
    },
    position_save_lag_seconds: Bound {
        warn: 10.0,
        critical: 60.0,
    },
    dlq_entries: Bound {
        warn: 1000.0,
        critical: 8000.0,
    },
    dlq_age_seconds: Bound {
        warn: 3600.0,
        critical: 86400.0,
    },
    duplicate_ratio: Bound {
        warn: 0.3,
        critical: 0.8,
    },
    timestamp_rejection_rate: Bound {
        warn: 1.0,
        critical: 10.0,
    },
    descriptors: Bound {
        warn: 0.8,
        critical: 0.95,
    },
    memory_bytes: Bound {
        warn: 512.0 * MIB,
        critical: 1024.0 * MIB,
    },
    threads: Bound {
        warn: 256.0,
        critical: 1024.0,
    },
};

/// Drop reasons that are choices, not losses (as in alert `LinesLost`).
const NOT_LOST: &[&str] = &["filtered", "duplicate", "throttled", "unrouted"];

const M: &str = "log_capturer_";

/// Runs the command.
pub async fn run(source: &ConfigSource, args: HealthArgs) -> ExitCode {
    let (base, token) = api_target(source, args.url.clone(), args.token.clone());
    let report = collect(&base, token.as_deref(), args.interval).await;
    let colour = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    print!("{}", report.table(colour));
    if let Some(path) = &args.output {
        let written = serde_json::to_vec_pretty(&report)
            .map_err(|err| err.to_string())
            .and_then(|json| std::fs::write(path, json).map_err(|err| err.to_string()));
        if let Err(err) = written {
            eprintln!(
                "cannot write the report to {} (--output): {err}",
                path.display()
            );
        }
    }
    match report.status {
        Level::Ok => ExitCode::SUCCESS,
        Level::Warn => ExitCode::from(1),
        Level::Critical => ExitCode::from(2),
    }
}

/// The whole report: what `--output` writes.
#[derive(Debug, Serialize)]
pub struct Report {
    pub url: String,
    pub status: Level,
    /// The checks that are not ok, worst first.
    pub failing: Vec<String>,
    pub interval_seconds: f64,
    pub checks: Vec<Check>,
}

impl Report {
    fn new(url: &str, interval: Duration, checks: Vec<Check>) -> Self {
        let status = checks.iter().map(|c| c.status).max().unwrap_or(Level::Ok);
        let mut failing: Vec<&Check> = checks.iter().filter(|c| c.status > Level::Ok).collect();
        failing.sort_by_key(|c| std::cmp::Reverse(c.status));
        Self {
            url: url.to_string(),
            status,
            failing: failing.iter().map(|c| c.name.clone()).collect(),
            interval_seconds: interval.as_secs_f64(),
            checks,
        }
    }

    /// The table, with a closing verdict line.
    pub fn table(&self, colour: bool) -> String {
        let headers = ["CHECK", "STATUS", "VALUE", "DETAIL"];
        let width = |f: &dyn Fn(&Check) -> usize, header: &str| {
            self.checks
                .iter()
                .map(f)
                .chain([header.len()])
                .max()
                .unwrap_or(0)
        };
        let w_name = width(&|c| c.name.chars().count(), headers[0]);
        let w_status = width(&|c| c.status.word().len(), headers[1]);
        let w_value = width(&|c| c.value.chars().count(), headers[2]);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:w_name$}  {:w_status$}  {:w_value$}  {}",
            headers[0], headers[1], headers[2], headers[3]
        );
        for check in &self.checks {
            let status = format!("{:w_status$}", check.status.word());
            let status = if colour {
                format!("{}{status}\x1b[0m", check.status.colour())
            } else {
                status
            };
            let line = format!(
                "{:w_name$}  {status}  {:w_value$}  {}",
                check.name, check.value, check.detail
            );
            let _ = writeln!(out, "{}", line.trim_end());
        }
        let verdict = match self.status {
            Level::Ok => "ok".to_string(),
            level => format!("{} ({})", level.word(), self.failing.join(", ")),
        };
        let _ = writeln!(out, "log-capturer health at {}: {verdict}", self.url);
        out
    }
}

/// Asks the instance and evaluates every check.
pub async fn collect(base: &str, token: Option<&str>, interval: Duration) -> Report {
    let started = Instant::now();
    let health = crate::client::request(Method::GET, &format!("{base}/health"), None).await;
    let took = started.elapsed();
    let health = match health {
        Ok((status, body)) => match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(json) if status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE => {
                json
            }
            _ => {
                let check = Check::new("api", Level::Critical, status.as_str()).detail(format!(
                    "GET {base}/health answered {status}, not a log-capturer health report"
                ));
                return Report::new(base, interval, vec![check]);
            }
        },
        Err(err) => {
            let check = Check::new("api", Level::Critical, "unreachable")
                .detail(format!("{err} (is log-capturer running? --url)"));
            return Report::new(base, interval, vec![check]);
        }
    };
    let mut checks = vec![
        Check::new("api", Level::Ok, format!("{} ms", took.as_millis())).detail(format!(
            "GET /health answered in {:.1} ms",
            took.as_secs_f64() * 1000.0
        )),
    ];
    checks.push(
        match crate::client::request(Method::GET, &format!("{base}/ready"), None).await {
            Ok((StatusCode::OK, _)) => Check::new("ready", Level::Ok, "ready"),
            Ok((status, _)) => Check::new("ready", Level::Warn, status.as_str())
                .detail("GET /ready: not ready (shutting down)"),
            Err(err) => Check::new("ready", Level::Warn, "unknown").detail(err),
        },
    );
    checks.extend(component_checks(&health));
    let first = scrape(base).await;
    let first_at = Instant::now();
    tokio::time::sleep(interval).await;
    let second = scrape(base).await;
    let elapsed = first_at.elapsed().as_secs_f64();
    let (first, second) = match (first, second) {
        (Ok(first), Ok(second)) => (first, second),
        (Err(err), _) | (_, Err(err)) => {
            checks.push(Check::new("metrics", Level::Critical, "unreadable").detail(err));
            return Report::new(base, interval, checks);
        }
    };
    let dlq = crate::client::request(Method::GET, &format!("{base}/dlq"), token).await;
    let rates = Rates {
        first: &first,
        second: &second,
        seconds: elapsed.max(f64::EPSILON),
    };
    let kinds = component_kinds(&health);
    checks.push(throughput(&rates, &kinds));
    checks.extend(or_none(queues(&second), "queue", "no sink queue"));
    checks.extend(errors(&rates));
    checks.extend(lost(&rates));
    checks.extend(or_none(positions(&second), "positions", "no file source"));
    checks.extend(or_none(dlqs(&second, dlq), "dlq", "no dead-letter queue"));
    checks.extend(or_none(dedup(&rates), "dedup", "no dedup transform"));
    checks.extend(or_none(
        timestamps(&rates),
        "timestamps",
        "no entry rejected or clamped",
    ));
    checks.extend(process(&second));
    Report::new(base, interval, checks)
}

/// `checks`, or one ok row saying there was nothing to check, so every check shows it ran.
fn or_none(checks: Vec<Check>, name: &str, detail: &str) -> Vec<Check> {
    if checks.is_empty() {
        vec![Check::new(name, Level::Ok, "-").detail(detail)]
    } else {
        checks
    }
}

fn component_checks(health: &serde_json::Value) -> Vec<Check> {
    let Some(components) = health.get("components").and_then(|c| c.as_object()) else {
        return vec![
            Check::new("components", Level::Critical, "unknown")
                .detail("GET /health has no \"components\""),
        ];
    };
    components
        .iter()
        .map(|(name, entry)| {
            let healthy = entry
                .get("healthy")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
            let kind = entry.get("kind").and_then(|k| k.as_str()).unwrap_or("?");
            let detail = entry.get("detail").and_then(|d| d.as_str()).unwrap_or("");
            let (level, value) = if healthy {
                (Level::Ok, "healthy")
            } else {
                (Level::Critical, "unhealthy")
            };
            Check::new(format!("component {name}"), level, value).detail(if detail.is_empty() {
                kind.to_string()
            } else {
                format!("{kind}: {detail}")
            })
        })
        .collect()
}

fn component_kinds(health: &serde_json::Value) -> BTreeMap<String, String> {
    health
        .get("components")
        .and_then(|c| c.as_object())
        .map(|components| {
            components
                .iter()
                .map(|(name, entry)| {
                    let kind = entry.get("kind").and_then(|k| k.as_str()).unwrap_or("");
                    (name.clone(), kind.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Two scrapes and the seconds between them.
struct Rates<'a> {
    first: &'a Scrape,
    second: &'a Scrape,
    seconds: f64,
}

impl Rates<'_> {
    /// Per `label` value: the increase of counter `name` between the scrapes over the series
    /// `keep` accepts, and its total in the second.
    fn increase_by(
        &self,
        name: &str,
        label: &str,
        keep: impl Fn(&Sample) -> bool,
    ) -> BTreeMap<String, (f64, f64)> {
        self.second.increase_since(self.first, name, label, keep)
    }
}

fn per_second(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}/s")
    } else {
        format!("{value:.2}/s")
    }
}

fn bytes(value: f64) -> String {
    if value >= MIB {
        format!("{:.1} MiB", value / MIB)
    } else if value >= 1024.0 {
        format!("{:.1} KiB", value / 1024.0)
    } else {
        format!("{value:.0} B")
    }
}

fn duration(seconds: f64) -> String {
    if seconds >= 3600.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else if seconds >= 60.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{seconds:.1} s")
    }
}

/// Events delivered by the sinks per second: information, always ok.
fn throughput(rates: &Rates<'_>, kinds: &BTreeMap<String, String>) -> Check {
    let processed = rates.increase_by(&format!("{M}logs_processed_total"), "component", |_| true);
    let mut sinks = 0.0;
    let mut parts = Vec::new();
    for (component, (increase, _)) in &processed {
        if kinds.get(component).is_some_and(|k| k == "sink") {
            sinks += increase;
            parts.push(format!(
                "{component} {}",
                per_second(increase / rates.seconds)
            ));
        }
    }
    Check::new("throughput", Level::Ok, per_second(sinks / rates.seconds)).detail(
        if parts.is_empty() {
            "no sink has delivered yet".to_string()
        } else {
            format!("delivered: {}", parts.join(", "))
        },
    )
}

/// A queue is as full as the fuller of its two bounds: with long lines (or the default
/// `queue_max_bytes`) the bytes fill first, and an events-only share would never warn.
fn queues(scrape: &Scrape) -> Vec<Check> {
    let sizes = scrape.sum_by(&format!("{M}queue_size"), "sink");
    let capacities = scrape.sum_by(&format!("{M}queue_capacity"), "sink");
    let bytes = scrape.sum_by(&format!("{M}queue_bytes"), "sink");
    let byte_capacities = scrape.sum_by(&format!("{M}queue_capacity_bytes"), "sink");
    capacities
        .iter()
        .map(|(sink, capacity)| {
            let size = sizes.get(sink).copied().unwrap_or(0.0);
            let held = bytes.get(sink).copied().unwrap_or(0.0);
            let byte_capacity = byte_capacities.get(sink).copied().unwrap_or(0.0);
            let fill = share(size, *capacity).max(share(held, byte_capacity));
            let b = THRESHOLDS.queue_fill;
            let mut detail = format!("{size:.0} of {capacity:.0} events waiting");
            if byte_capacity > 0.0 {
                detail.push_str(&format!(", {held:.0} of {byte_capacity:.0} bytes"));
            }
            Check::new(
                format!("queue {sink}"),
                Level::of(fill, b.warn, b.critical),
                format!("{:.0}%", fill * 100.0),
            )
            .detail(detail)
        })
        .collect()
}

fn errors(rates: &Rates<'_>) -> Vec<Check> {
    let name = format!("{M}errors_total");
    let by_component = rates.increase_by(&name, "component", |_| true);
    if by_component.is_empty() {
        return vec![Check::new("errors", Level::Ok, per_second(0.0)).detail("no errors counted")];
    }
    by_component
        .iter()
        .map(|(component, (increase, total))| {
            let rate = increase / rates.seconds;
            let b = THRESHOLDS.error_rate;
            let reasons: Vec<String> = rates
                .increase_by(&name, "reason", |s| s.label("component") == component)
                .into_iter()
                .filter(|(_, (increase, _))| *increase > 0.0)
                .map(|(reason, (increase, _))| format!("{reason} +{increase:.0}"))
                .collect();
            Check::new(
                format!("errors {component}"),
                Level::of(rate, b.warn, b.critical),
                per_second(rate),
            )
            .detail(if reasons.is_empty() {
                format!("{total:.0} since start, none now")
            } else {
                format!("{total:.0} since start; now: {}", reasons.join(", "))
            })
        })
        .collect()
}

/// Lines discarded for a reason other than a filter or deduplication: critical while it
/// happens, a warning once it happened.
fn lost(rates: &Rates<'_>) -> Vec<Check> {
    let name = format!("{M}dropped_total");
    let lost = |s: &Sample| !NOT_LOST.contains(&s.label("reason"));
    let by_component = rates.increase_by(&name, "component", lost);
    if by_component.values().all(|(_, total)| *total == 0.0) {
        return vec![Check::new("lost", Level::Ok, "0").detail("no line lost since start")];
    }
    by_component
        .iter()
        .filter(|(_, (_, total))| *total > 0.0)
        .map(|(component, (increase, total))| {
            let reasons: Vec<String> = rates
                .increase_by(&name, "reason", |s| {
                    lost(s) && s.label("component") == component
                })
                .into_iter()
                .filter(|(_, (_, total))| *total > 0.0)
                .map(|(reason, (_, total))| format!("{reason} {total:.0}"))
                .collect();
            let level = if *increase > 0.0 {
                Level::Critical
            } else {
                Level::Warn
            };
            Check::new(format!("lost {component}"), level, format!("{total:.0}")).detail(format!(
                "lines lost since start ({}); {} now",
                reasons.join(", "),
                per_second(increase / rates.seconds)
            ))
        })
        .collect()
}

fn positions(scrape: &Scrape) -> Vec<Check> {
    let lag = scrape.sum_by(&format!("{M}positions_lag_bytes"), "component");
    let save_lag = scrape.sum_by(&format!("{M}position_save_lag_seconds"), "component");
    let frozen = scrape.sum_by(&format!("{M}files_frozen"), "component");
    let paused = scrape.sum_by(&format!("{M}position_backpressure"), "component");
    let mut sources: Vec<&String> = lag.keys().chain(save_lag.keys()).collect();
    sources.sort();
    sources.dedup();
    sources
        .into_iter()
        .map(|source| {
            let lag = lag.get(source).copied().unwrap_or(0.0);
            let save_lag = save_lag.get(source).copied().unwrap_or(0.0);
            let frozen = frozen.get(source).copied().unwrap_or(0.0);
            let paused = paused.get(source).copied().unwrap_or(0.0);
            let b = THRESHOLDS.positions_lag_bytes;
            let s = THRESHOLDS.position_save_lag_seconds;
            let mut level =
                Level::of(lag, b.warn, b.critical).max(Level::of(save_lag, s.warn, s.critical));
            let mut detail = vec![
                format!("read, not yet committed: {}", bytes(lag)),
                format!("save lag {}", duration(save_lag)),
            ];
            if frozen > 0.0 {
                level = level.max(Level::Warn);
                detail.push(format!("{frozen:.0} file(s) stuck (files_frozen)"));
            }
            if paused > 0.0 {
                level = Level::Critical;
                detail.push("reading paused: positions cannot be saved".to_string());
            }
            Check::new(format!("positions {source}"), level, bytes(lag)).detail(detail.join("; "))
        })
        .collect()
}

fn dlqs(scrape: &Scrape, answer: Result<(StatusCode, String), String>) -> Vec<Check> {
    let entries = scrape.sum_by(&format!("{M}dlq_queue_size"), "sink");
    let stats: Option<serde_json::Value> = match &answer {
        Ok((status, body)) if status.is_success() => serde_json::from_str(body).ok(),
        _ => None,
    };
    let age_note = match &answer {
        Ok((StatusCode::UNAUTHORIZED, _)) => Some("age unknown: GET /dlq needs --token"),
        Ok((status, _)) if !status.is_success() => Some("age unknown: GET /dlq failed"),
        Err(_) => Some("age unknown: GET /dlq failed"),
        _ => None,
    };
    let now = jiff::Timestamp::now();
    entries
        .iter()
        .map(|(sink, entries)| {
            let b = THRESHOLDS.dlq_entries;
            let mut level = Level::of(*entries, b.warn, b.critical);
            let sink_stats = stats.as_ref().and_then(|s| s.get("sinks")?.get(sink));
            let oldest = sink_stats
                .and_then(|s| s.get("oldest_written_at")?.as_str())
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            let mut detail = vec![format!("{entries:.0} entries queued")];
            if let Some(bytes_on_disk) = sink_stats
                .and_then(|s| s.get("bytes")?.as_u64())
                .map(|b| bytes(b as f64))
            {
                detail.push(bytes_on_disk);
            }
            match (oldest, age_note) {
                (Some(oldest), _) => {
                    let age = now.duration_since(oldest).as_secs_f64().max(0.0);
                    let a = THRESHOLDS.dlq_age_seconds;
                    level = level.max(Level::of(age, a.warn, a.critical));
                    detail.push(format!("oldest {} old", duration(age)));
                }
                (None, Some(note)) => detail.push(note.to_string()),
                (None, None) => {}
            }
            Check::new(format!("dlq {sink}"), level, format!("{entries:.0}"))
                .detail(detail.join(", "))
        })
        .collect()
}

fn dedup(rates: &Rates<'_>) -> Vec<Check> {
    let checks = rates.increase_by(&format!("{M}dedup_checks_total"), "component", |_| true);
    let duplicates =
        rates.increase_by(&format!("{M}dedup_duplicates_total"), "component", |_| true);
    checks
        .iter()
        .map(|(component, (checked, _))| {
            let dropped = duplicates.get(component).map_or(0.0, |d| d.0);
            let ratio = share(dropped, *checked);
            let b = THRESHOLDS.duplicate_ratio;
            Check::new(
                format!("dedup {component}"),
                Level::of(ratio, b.warn, b.critical),
                format!("{:.0}%", ratio * 100.0),
            )
            .detail(format!(
                "{dropped:.0} of {checked:.0} lines checked were duplicates"
            ))
        })
        .collect()
}

fn timestamps(rates: &Rates<'_>) -> Vec<Check> {
    let time = ["timestamp_too_old", "too_far_behind", "timestamp_too_new"];
    let rejected = rates.increase_by(&format!("{M}timestamp_rejections_total"), "sink", |s| {
        time.contains(&s.label("reason"))
    });
    let clamped = rates.increase_by(&format!("{M}timestamp_clamped_total"), "sink", |_| true);
    let mut sinks: Vec<&String> = rejected.keys().chain(clamped.keys()).collect();
    sinks.sort();
    sinks.dedup();
    sinks
        .into_iter()
        .map(|sink| {
            let (increase, total) = rejected.get(sink).copied().unwrap_or_default();
            let rate = increase / rates.seconds;
            let clamped = clamped.get(sink).map_or(0.0, |c| c.0) / rates.seconds;
            let b = THRESHOLDS.timestamp_rejection_rate;
            Check::new(
                format!("timestamps {sink}"),
                Level::of(rate, b.warn, b.critical),
                per_second(rate),
            )
            .detail(format!(
                "rejected for their time: {total:.0} since start; clamped {}",
                per_second(clamped)
            ))
        })
        .collect()
}

fn process(scrape: &Scrape) -> Vec<Check> {
    let mut checks = Vec::new();
    if let (Some(open), Some(max)) = (
        scrape.single(&format!("{M}process_open_fds")),
        scrape.single(&format!("{M}process_max_fds")),
    ) {
        let used = share(open, max);
        let b = THRESHOLDS.descriptors;
        checks.push(
            Check::new(
                "descriptors",
                Level::of(used, b.warn, b.critical),
                format!("{:.0}%", used * 100.0),
            )
            .detail(format!("{open:.0} open of a limit of {max:.0}")),
        );
    }
    if let Some(resident) = scrape.single(&format!("{M}process_resident_memory_bytes")) {
        let b = THRESHOLDS.memory_bytes;
        checks.push(
            Check::new(
                "memory",
                Level::of(resident, b.warn, b.critical),
                bytes(resident),
            )
            .detail(format!(
                "resident; warn at {}, critical at {}",
                bytes(b.warn),
                bytes(b.critical)
            )),
        );
    }
    if let Some(threads) = scrape.single(&format!("{M}process_threads")) {
        let b = THRESHOLDS.threads;
        checks.push(Check::new(
            "threads",
            Level::of(threads, b.warn, b.critical),
            format!("{threads:.0}"),
        ));
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates_of<'a>(first: &'a Scrape, second: &'a Scrape) -> Rates<'a> {
        Rates {
            first,
            second,
            seconds: 2.0,
        }
    }

    #[test]
    fn levels_follow_the_bounds_inclusively() {
        assert_eq!(Level::of(0.69, 0.7, 0.9), Level::Ok);
        assert_eq!(Level::of(0.7, 0.7, 0.9), Level::Warn);
        assert_eq!(Level::of(0.9, 0.7, 0.9), Level::Critical);
        // Any error at all is a warning.
        let b = THRESHOLDS.error_rate;
        assert_eq!(Level::of(0.0, b.warn, b.critical), Level::Ok);
        assert_eq!(Level::of(0.01, b.warn, b.critical), Level::Warn);
    }

    #[test]
    fn a_counter_reset_counts_from_zero_and_rates_use_the_interval() {
        let first = Scrape::parse(
            "log_capturer_errors_total{component=\"loki\",reason=\"timeout\"} 10\n\
             log_capturer_errors_total{component=\"loki\",reason=\"connection\"} 1\n",
        );
        let second = Scrape::parse(
            "log_capturer_errors_total{component=\"loki\",reason=\"timeout\"} 3\n\
             log_capturer_errors_total{component=\"loki\",reason=\"connection\"} 2\n",
        );
        let checks = errors(&rates_of(&first, &second));
        assert_eq!(checks.len(), 1);
        // 3 (reset) + 1, over 2 s.
        assert_eq!(checks[0].value, "2.00/s");
        assert_eq!(checks[0].status, Level::Critical);
        assert!(checks[0].detail.contains("timeout +3"), "{:?}", checks[0]);
    }

    #[test]
    fn lines_lost_now_are_critical_and_filtered_ones_are_not_lost() {
        let first = Scrape::parse(
            "log_capturer_dropped_total{component=\"f\",reason=\"filtered\"} 5\n\
             log_capturer_dropped_total{component=\"s\",reason=\"queue_full\"} 4\n",
        );
        let same = Scrape::parse(
            "log_capturer_dropped_total{component=\"f\",reason=\"filtered\"} 50\n\
             log_capturer_dropped_total{component=\"s\",reason=\"queue_full\"} 4\n",
        );
        let more =
            Scrape::parse("log_capturer_dropped_total{component=\"s\",reason=\"queue_full\"} 6\n");
        let past = lost(&rates_of(&first, &same));
        assert_eq!(past.len(), 1);
        assert_eq!(past[0].name, "lost s");
        assert_eq!(past[0].status, Level::Warn);
        let now = lost(&rates_of(&first, &more));
        assert_eq!(now[0].status, Level::Critical);
        let none = lost(&rates_of(
            &Scrape::parse("log_capturer_dropped_total{component=\"f\",reason=\"duplicate\"} 5\n"),
            &Scrape::parse("log_capturer_dropped_total{component=\"f\",reason=\"duplicate\"} 9\n"),
        ));
        assert_eq!(none[0].status, Level::Ok);
        // A throttle's and a route's drops are configured choices too.
        let chosen = lost(&rates_of(
            &Scrape::parse(
                "log_capturer_dropped_total{component=\"t\",reason=\"throttled\"} 5\n\
                 log_capturer_dropped_total{component=\"r\",reason=\"unrouted\"} 5\n",
            ),
            &Scrape::parse(
                "log_capturer_dropped_total{component=\"t\",reason=\"throttled\"} 9\n\
                 log_capturer_dropped_total{component=\"r\",reason=\"unrouted\"} 9\n",
            ),
        ));
        assert!(chosen.iter().all(|c| c.status == Level::Ok), "{chosen:?}");
    }

    #[test]
    fn queue_fill_and_duplicate_share_are_checked_per_component() {
        let scrape = Scrape::parse(
            "log_capturer_queue_size{sink=\"loki\"} 95\nlog_capturer_queue_capacity{sink=\"loki\"} 100\n\
             log_capturer_queue_capacity{sink=\"file\"} 100\n",
        );
        let checks = queues(&scrape);
        assert_eq!(checks[0].name, "queue file");
        assert_eq!(checks[0].status, Level::Ok);
        assert_eq!(checks[1].name, "queue loki");
        assert_eq!(checks[1].status, Level::Critical);
        // Few events but the byte bound reached (long lines): as full as its bytes.
        let scrape = Scrape::parse(
            "log_capturer_queue_size{sink=\"loki\"} 3500\nlog_capturer_queue_capacity{sink=\"loki\"} 50000\n\
             log_capturer_queue_bytes{sink=\"loki\"} 4100000\nlog_capturer_queue_capacity_bytes{sink=\"loki\"} 4194304\n",
        );
        let checks = queues(&scrape);
        assert_eq!(checks[0].status, Level::Critical, "{checks:?}");
        assert_eq!(checks[0].value, "98%");
        let first = Scrape::parse(
            "log_capturer_dedup_checks_total{component=\"d\"} 0\nlog_capturer_dedup_duplicates_total{component=\"d\"} 0\n",
        );
        let second = Scrape::parse(
            "log_capturer_dedup_checks_total{component=\"d\"} 100\nlog_capturer_dedup_duplicates_total{component=\"d\"} 40\n",
        );
        let checks = dedup(&rates_of(&first, &second));
        assert_eq!(checks[0].value, "40%");
        assert_eq!(checks[0].status, Level::Warn);
    }

    #[test]
    fn the_verdict_names_the_failing_checks_worst_first_and_colour_is_optional() {
        let report = Report::new(
            "http://127.0.0.1:1",
            Duration::from_secs(1),
            vec![
                Check::new("api", Level::Ok, "1 ms"),
                Check::new("queue loki", Level::Warn, "75%"),
                Check::new("component loki", Level::Critical, "unhealthy"),
            ],
        );
        assert_eq!(report.status, Level::Critical);
        assert_eq!(report.failing, ["component loki", "queue loki"]);
        let plain = report.table(false);
        assert!(!plain.contains('\x1b'));
        assert!(
            plain.ends_with("CRITICAL (component loki, queue loki)\n"),
            "{plain}"
        );
        assert!(report.table(true).contains("\x1b[1;31mCRITICAL"));
    }
}
