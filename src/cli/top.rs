//! `log-capturer top`: a live view of a running instance, like `vector top`. Every `interval` it
//! scrapes `GET /metrics` and draws one row per component: health, events in and out per
//! second, errors and drops per second, the sink's queue fill, and the send latency (P50 and
//! P99 over the interval, from `send_duration_seconds`).
//!
//! Guarantees:
//! - It only reads (`/health`, `/metrics`, and `/config` for the inputs of each component).
//! - `IN/s` of a transform or sink is the sum of its inputs' `OUT/s` when `GET /config` answers
//!   (it needs the token when `api.token` is set; an input that is a route's output,
//!   `ROUTE.NAME`, counts what the route sent there, `route_events_total`); otherwise
//!   `OUT/s + DROP/s`, what the component passed on or discarded. A source has no `IN/s`.
//! - On a terminal each frame replaces the last (plain ANSI escapes, no TUI library); elsewhere,
//!   and with `--once`, frames are printed one after the other without escapes. `--once` prints
//!   one frame (two scrapes `interval` apart) and exits: 0, or 1 when the API cannot be read.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use http::Method;

use super::api_target;
use super::metrics_text::{Scrape, scrape, share};
use crate::config::ConfigSource;

/// The arguments of `top`.
#[derive(Debug, Clone)]
pub struct TopArgs {
    pub url: Option<String>,
    pub token: Option<String>,
    pub interval: Duration,
    pub once: bool,
}

const M: &str = "log_capturer_";

/// Runs the command until Ctrl-C (or after one frame with `--once`).
pub async fn run(source: &ConfigSource, args: TopArgs) -> ExitCode {
    let (base, token) = api_target(source, args.url.clone(), args.token.clone());
    let live = !args.once && std::io::stdout().is_terminal();
    let mut previous = match scrape(&base).await {
        Ok(scrape) => (scrape, Instant::now()),
        Err(err) => {
            eprintln!("{err} (hint: is log-capturer running? --url)");
            return ExitCode::FAILURE;
        }
    };
    if live {
        // Hide the cursor while frames are drawn; shown again on the way out.
        print!("\x1b[?25l");
    }
    let code = loop {
        tokio::select! {
            () = tokio::time::sleep(args.interval) => {}
            _ = tokio::signal::ctrl_c() => break ExitCode::SUCCESS,
        }
        let now = match scrape(&base).await {
            Ok(scrape) => (scrape, Instant::now()),
            Err(err) => {
                if live {
                    print!("\x1b[?25h");
                }
                eprintln!("{err} (hint: is log-capturer running? --url)");
                break ExitCode::FAILURE;
            }
        };
        let topology = topology(&base, token.as_deref()).await;
        let seconds = now.1.duration_since(previous.1).as_secs_f64();
        let frame = Frame::build(&previous.0, &now.0, seconds, &topology);
        let text = frame.render(&base, args.interval);
        if live {
            // Home, draw, clear what is left of the last frame.
            print!("\x1b[H{}\x1b[J", text.replace('\n', "\x1b[K\n"));
        } else {
            println!("{text}");
        }
        let _ = std::io::stdout().flush();
        previous = now;
        if args.once {
            break ExitCode::SUCCESS;
        }
    };
    if live {
        print!("\x1b[?25h");
        let _ = std::io::stdout().flush();
    }
    code
}

/// What `/health` and `/config` say of each component: its kind, health and inputs.
#[derive(Debug, Default)]
pub struct Topology {
    pub components: BTreeMap<String, Node>,
}

#[derive(Debug, Default, Clone)]
pub struct Node {
    pub kind: String,
    pub healthy: Option<bool>,
    /// `None` when `/config` could not be read.
    pub inputs: Option<Vec<String>>,
}

async fn topology(base: &str, token: Option<&str>) -> Topology {
    let mut topology = Topology::default();
    if let Ok((_, body)) =
        crate::client::request(Method::GET, &format!("{base}/health"), None).await
        && let Ok(json) = serde_json::from_str::<serde_json::Value>(&body)
        && let Some(components) = json.get("components").and_then(|c| c.as_object())
    {
        for (name, entry) in components {
            topology.components.insert(
                name.clone(),
                Node {
                    kind: entry
                        .get("kind")
                        .and_then(|k| k.as_str())
                        .unwrap_or("")
                        .to_string(),
                    healthy: entry.get("healthy").and_then(serde_json::Value::as_bool),
                    inputs: None,
                },
            );
        }
    }
    if let Ok((status, body)) =
        crate::client::request(Method::GET, &format!("{base}/config"), token).await
        && status.is_success()
        && let Ok(json) = serde_json::from_str::<serde_json::Value>(&body)
    {
        for (section, kind) in [
            ("sources", "source"),
            ("transforms", "transform"),
            ("sinks", "sink"),
        ] {
            let Some(entries) = json.get(section).and_then(|s| s.as_object()) else {
                continue;
            };
            for (name, entry) in entries {
                let inputs = entry
                    .get("inputs")
                    .and_then(|i| i.as_array())
                    .map(|inputs| {
                        inputs
                            .iter()
                            .filter_map(|i| i.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let node = topology.components.entry(name.clone()).or_default();
                if node.kind.is_empty() {
                    node.kind = kind.to_string();
                }
                node.inputs = Some(inputs);
            }
        }
    }
    topology
}

/// One row of the view.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub component: String,
    pub kind: String,
    pub health: String,
    pub rate_in: Option<f64>,
    pub rate_out: f64,
    pub errors: f64,
    pub dropped: f64,
    /// `queue_size / queue_capacity`, sinks only.
    pub queue_fill: Option<f64>,
    /// P50 and P99 of one send attempt, seconds, sinks that sent in the interval.
    pub latency: Option<(f64, f64)>,
}

/// One frame: every component's row.
#[derive(Debug)]
pub struct Frame {
    pub rows: Vec<Row>,
}

impl Frame {
    /// The rows from two scrapes `seconds` apart.
    pub fn build(earlier: &Scrape, now: &Scrape, seconds: f64, topology: &Topology) -> Self {
        let seconds = seconds.max(f64::EPSILON);
        let per_component = |name: &str| -> BTreeMap<String, f64> {
            now.increase_since(earlier, &format!("{M}{name}"), "component", |_| true)
                .into_iter()
                .map(|(component, (increase, _))| (component, increase / seconds))
                .collect()
        };
        let out = per_component("logs_processed_total");
        let errors = per_component("errors_total");
        let dropped = per_component("dropped_total");
        let sizes = now.sum_by(&format!("{M}queue_size"), "sink");
        let capacities = now.sum_by(&format!("{M}queue_capacity"), "sink");
        let mut names: Vec<String> = topology.components.keys().cloned().collect();
        names.extend(out.keys().cloned());
        names.extend(capacities.keys().cloned());
        names.sort();
        names.dedup();
        names.retain(|n| !n.is_empty());
        let rows = names
            .into_iter()
            .map(|component| {
                let node = topology
                    .components
                    .get(&component)
                    .cloned()
                    .unwrap_or_default();
                let rate_out = out.get(&component).copied().unwrap_or(0.0);
                let drop_rate = dropped.get(&component).copied().unwrap_or(0.0);
                let rate_in = match (&node.inputs, node.kind.as_str()) {
                    (_, "source") => None,
                    (Some(inputs), _) if !inputs.is_empty() => Some(
                        inputs
                            .iter()
                            .map(|input| match input.split_once('.') {
                                // A route's output: what the route sent there.
                                Some((route, output)) => now
                                    .increase_since(
                                        earlier,
                                        &format!("{M}route_events_total"),
                                        "output",
                                        |s| s.label("component") == route,
                                    )
                                    .get(output)
                                    .map_or(0.0, |(increase, _)| increase / seconds),
                                None => out.get(input).copied().unwrap_or(0.0),
                            })
                            .sum(),
                    ),
                    _ => Some(rate_out + drop_rate),
                };
                let queue_fill = capacities.get(&component).map(|capacity| {
                    share(sizes.get(&component).copied().unwrap_or(0.0), *capacity)
                });
                let name = format!("{M}send_duration_seconds");
                let latency = now
                    .quantile_since(earlier, &name, "sink", &component, 0.5)
                    .zip(now.quantile_since(earlier, &name, "sink", &component, 0.99));
                let error_rate = errors.get(&component).copied().unwrap_or(0.0);
                Row {
                    health: match node.healthy {
                        Some(true) => "ok",
                        Some(false) => "DOWN",
                        None => "?",
                    }
                    .to_string(),
                    kind: node.kind,
                    component,
                    rate_in,
                    rate_out,
                    errors: error_rate,
                    dropped: drop_rate,
                    queue_fill,
                    latency,
                }
            })
            .collect();
        Self { rows }
    }

    /// The frame as text: a title line and a table.
    pub fn render(&self, base: &str, interval: Duration) -> String {
        let headers = [
            "COMPONENT",
            "KIND",
            "HEALTH",
            "IN/s",
            "OUT/s",
            "ERR/s",
            "DROP/s",
            "QUEUE",
            "SEND P50",
            "SEND P99",
        ];
        let cells: Vec<[String; 10]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.component.clone(),
                    r.kind.clone(),
                    r.health.clone(),
                    r.rate_in.map_or_else(|| "-".to_string(), rate),
                    rate(r.rate_out),
                    rate(r.errors),
                    rate(r.dropped),
                    r.queue_fill
                        .map_or_else(|| "-".to_string(), |f| format!("{:.0}%", f * 100.0)),
                    r.latency.map_or_else(|| "-".to_string(), |l| seconds(l.0)),
                    r.latency.map_or_else(|| "-".to_string(), |l| seconds(l.1)),
                ]
            })
            .collect();
        let mut widths = headers.map(str::len);
        for row in &cells {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "log-capturer top  {base}  every {}  {}",
            humantime::format_duration(interval),
            jiff::Timestamp::now().strftime("%H:%M:%S UTC")
        );
        let line = |cells: &[&str]| {
            let mut text = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                // Names and words left, numbers right.
                if i < 3 {
                    let _ = write!(text, "{cell:<w$}  ");
                } else {
                    let _ = write!(text, "{cell:>w$}  ");
                }
            }
            text.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(&headers));
        for row in &cells {
            let refs: Vec<&str> = row.iter().map(String::as_str).collect();
            let _ = writeln!(out, "{}", line(&refs));
        }
        if self.rows.is_empty() {
            let _ = writeln!(out, "(no component reported yet)");
        }
        out
    }
}

fn rate(value: f64) -> String {
    if value >= 1000.0 {
        format!("{:.1}k", value / 1000.0)
    } else if value >= 10.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn seconds(value: f64) -> String {
    if value >= 1.0 {
        format!("{value:.2}s")
    } else {
        format!("{:.1}ms", value * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_have_rates_over_the_interval_inputs_queue_and_latency() {
        let earlier = Scrape::parse(
            "log_capturer_logs_processed_total{component=\"gen\"} 100\n\
             log_capturer_logs_processed_total{component=\"f\"} 50\n\
             log_capturer_dropped_total{component=\"f\",reason=\"filtered\"} 0\n\
             log_capturer_send_duration_seconds_bucket{sink=\"out\",outcome=\"delivered\",le=\"0.01\"} 0\n\
             log_capturer_send_duration_seconds_bucket{sink=\"out\",outcome=\"delivered\",le=\"+Inf\"} 0\n",
        );
        let now = Scrape::parse(
            "log_capturer_logs_processed_total{component=\"gen\"} 300\n\
             log_capturer_logs_processed_total{component=\"f\"} 150\n\
             log_capturer_logs_processed_total{component=\"out\"} 100\n\
             log_capturer_dropped_total{component=\"f\",reason=\"filtered\"} 100\n\
             log_capturer_errors_total{component=\"out\",reason=\"timeout\"} 4\n\
             log_capturer_queue_size{sink=\"out\"} 25\nlog_capturer_queue_capacity{sink=\"out\"} 100\n\
             log_capturer_send_duration_seconds_bucket{sink=\"out\",outcome=\"delivered\",le=\"0.01\"} 10\n\
             log_capturer_send_duration_seconds_bucket{sink=\"out\",outcome=\"delivered\",le=\"+Inf\"} 10\n",
        );
        let node = |kind: &str, inputs: Option<&[&str]>| Node {
            kind: kind.to_string(),
            healthy: Some(true),
            inputs: inputs.map(|i| i.iter().map(ToString::to_string).collect()),
        };
        let topology = Topology {
            components: BTreeMap::from([
                ("gen".to_string(), node("source", Some(&[]))),
                ("f".to_string(), node("transform", None)),
                ("out".to_string(), node("sink", Some(&["f"]))),
            ]),
        };
        let frame = Frame::build(&earlier, &now, 2.0, &topology);
        let by_name: BTreeMap<&str, &Row> = frame
            .rows
            .iter()
            .map(|r| (r.component.as_str(), r))
            .collect();
        assert_eq!(by_name["gen"].rate_in, None);
        assert!((by_name["gen"].rate_out - 100.0).abs() < 1e-9);
        // Without inputs known: what it passed plus what it dropped.
        assert_eq!(by_name["f"].rate_in, Some(100.0));
        // With inputs known: what its inputs emitted.
        assert_eq!(by_name["out"].rate_in, Some(50.0));
        assert_eq!(by_name["out"].errors, 2.0);
        assert_eq!(by_name["out"].queue_fill, Some(0.25));
        let (p50, p99) = by_name["out"].latency.unwrap();
        assert!(p50 > 0.0 && p50 <= 0.01 && p99 <= 0.01, "{p50} {p99}");
        let text = frame.render("http://x", Duration::from_secs(1));
        assert!(!text.contains('\x1b'));
        let header = text.lines().nth(1).unwrap();
        assert!(
            header.starts_with("COMPONENT") && header.ends_with("SEND P99"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("out ") && l.contains("25%")),
            "{text}"
        );
    }

    #[test]
    fn a_sink_reading_a_route_output_takes_what_the_route_sent_there() {
        let earlier = Scrape::parse(
            "log_capturer_route_events_total{component=\"r\",output=\"errors\"} 10\n\
             log_capturer_route_events_total{component=\"r\",output=\"_unmatched\"} 10\n",
        );
        let now = Scrape::parse(
            "log_capturer_logs_processed_total{component=\"r\"} 500\n\
             log_capturer_route_events_total{component=\"r\",output=\"errors\"} 30\n\
             log_capturer_route_events_total{component=\"r\",output=\"_unmatched\"} 410\n\
             log_capturer_route_events_total{component=\"other\",output=\"errors\"} 999\n",
        );
        let node = |inputs: &[&str]| Node {
            kind: "sink".to_string(),
            healthy: Some(true),
            inputs: Some(inputs.iter().map(ToString::to_string).collect()),
        };
        let topology = Topology {
            components: BTreeMap::from([
                ("alerts".to_string(), node(&["r.errors"])),
                ("rest".to_string(), node(&["r._unmatched", "r.errors"])),
            ]),
        };
        let frame = Frame::build(&earlier, &now, 2.0, &topology);
        let rate_in = |name: &str| {
            frame
                .rows
                .iter()
                .find(|r| r.component == name)
                .unwrap()
                .rate_in
        };
        assert_eq!(rate_in("alerts"), Some(10.0));
        assert_eq!(rate_in("rest"), Some(210.0));
    }
}
