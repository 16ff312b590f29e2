//! What a run leaves behind: a table on standard output, a JSON document and an SVG chart of
//! throughput and latency over time.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::run::{ReceiverMode, RunReport};

/// The figures of one run as an aligned two-column table.
pub fn table(report: &RunReport) -> String {
    let mut out = String::new();
    let target = report.target_rate.map_or_else(
        || "as fast as it goes".to_string(),
        |r| format!("{r} lines/s"),
    );
    let rows: Vec<(&str, String)> = vec![
        (
            "profile",
            format!("{} ({} load)", report.profile, report.load),
        ),
        ("target", target),
        ("config", report.config.clone()),
        (
            "overrides",
            if report.sets.is_empty() {
                "none".to_string()
            } else {
                report.sets.join(" ")
            },
        ),
        ("lines written", report.lines_written.to_string()),
        ("lines delivered", report.lines_delivered.to_string()),
        ("lost", report.lost.to_string()),
        ("duplicated", report.duplicated.to_string()),
        ("wall", format!("{:.2} s", report.wall_seconds)),
        (
            "achieved",
            format!("{:.0} lines/s", report.lines_per_second),
        ),
        (
            "shipper CPU",
            format!(
                "{:.2} s = {:.1}% of one core, {:.3} CPU-s per million lines",
                report.cpu_seconds,
                report.cpu_percent_of_core,
                report.cpu_seconds_per_million_lines
            ),
        ),
        (
            "shipper peak RSS",
            format!("{:.1} MiB", report.peak_rss_mib),
        ),
        (
            "peak queue fill",
            format!(
                "{:.0}% (the fullest sink queue at a sample)",
                report.peak_queue_fill * 100.0
            ),
        ),
        (
            "latency",
            format!(
                "P50 {:.1} ms, P99 {:.1} ms, max {:.1} ms",
                report.latency_ms.p50, report.latency_ms.p99, report.latency_ms.max
            ),
        ),
        ("rotations", report.rotations.to_string()),
        (
            "Loki answers after",
            format!("{} ms", report.loki_latency_ms),
        ),
        (
            "receiver",
            report
                .receiver
                .map_or("loki (not recorded)", ReceiverMode::describe)
                .to_string(),
        ),
        ("shipper exit", report.shipper_exit.clone()),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "{name:<18} {value}");
    }
    if !report.complete {
        let _ = writeln!(
            out,
            "NOT COMPLETE: the receiver did not hold every line when the drain timeout passed"
        );
    }
    out
}

/// Writes `<stem>.json` and `<stem>.svg` into `dir`; returns their paths.
pub fn write_files(report: &RunReport, dir: &Path, stem: &str) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|err| format!("creating {}: {err}", dir.display()))?;
    let json = dir.join(format!("{stem}.json"));
    let text = serde_json::to_string_pretty(report).map_err(|err| err.to_string())?;
    std::fs::write(&json, text).map_err(|err| format!("writing {}: {err}", json.display()))?;
    let svg = dir.join(format!("{stem}.svg"));
    chart(report, &svg)?;
    Ok(vec![json, svg])
}

/// Throughput (lines/s) and latency (P50, P99 in ms) per second, one above the other.
pub fn chart(report: &RunReport, path: &Path) -> Result<(), String> {
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (960, 640)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(320);
        let samples = &report.samples;
        let t_max = samples.last().map_or(1.0, |s| s.t).max(1.0);

        let rate_max = samples
            .iter()
            .map(|s| s.lines_per_second)
            .chain(report.target_rate.map(|r| r as f64))
            .fold(1.0, f64::max)
            * 1.1;
        let mut rate = ChartBuilder::on(&top)
            .caption(
                format!("{}: lines stored per second", report.profile),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..t_max, 0.0..rate_max)?;
        rate.configure_mesh().x_desc("seconds").draw()?;
        rate.draw_series(LineSeries::new(
            samples.iter().map(|s| (s.t, s.lines_per_second)),
            &BLUE,
        ))?
        .label("stored")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        if let Some(target) = report.target_rate {
            rate.draw_series(LineSeries::new(
                [(0.0, target as f64), (t_max, target as f64)],
                &BLACK.mix(0.4),
            ))?
            .label("target")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
        }
        rate.configure_series_labels().border_style(BLACK).draw()?;

        let latency_max = samples.iter().map(|s| s.latency_ms.p99).fold(1.0, f64::max) * 1.1;
        let mut latency = ChartBuilder::on(&bottom)
            .caption("end-to-end latency (ms)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..t_max, 0.0..latency_max)?;
        latency.configure_mesh().x_desc("seconds").draw()?;
        let stored = samples.iter().filter(|s| s.lines_per_second > 0.0);
        latency
            .draw_series(LineSeries::new(
                stored.clone().map(|s| (s.t, s.latency_ms.p50)),
                &GREEN,
            ))?
            .label("P50")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
        latency
            .draw_series(LineSeries::new(
                stored.map(|s| (s.t, s.latency_ms.p99)),
                &RED,
            ))?
            .label("P99")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        latency
            .configure_series_labels()
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|err| format!("drawing {}: {err}", path.display()))
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// A figure `compare` sets side by side: its name, how to read it from a run, and whether more
/// is better.
pub type Compared = (&'static str, fn(&RunReport) -> f64, bool);

/// The figures `compare` sets side by side.
pub const COMPARED: &[Compared] = &[
    ("lines/s", |r| r.lines_per_second, true),
    (
        "CPU-s per M lines",
        |r| r.cpu_seconds_per_million_lines,
        false,
    ),
    ("CPU % of a core", |r| r.cpu_percent_of_core, false),
    ("peak RSS MiB", |r| r.peak_rss_mib, false),
    ("P50 ms", |r| r.latency_ms.p50, false),
    ("P99 ms", |r| r.latency_ms.p99, false),
];

/// The median, lowest and highest of each compared figure over repeated runs of one setting.
pub fn median_table(runs: &[RunReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:>14} {:>14} {:>14}  ({} runs)",
        "figure",
        "median",
        "lowest",
        "highest",
        runs.len()
    );
    for (name, read, _) in COMPARED {
        let mut values: Vec<f64> = runs.iter().map(read).collect();
        let m = median(&mut values);
        let (lo, hi) = (values[0], values[values.len() - 1]);
        let _ = writeln!(out, "{name:<20} {m:>14.3} {lo:>14.3} {hi:>14.3}");
    }
    let lost: u64 = runs.iter().map(|r| r.lost).sum();
    let _ = writeln!(out, "{:<20} {lost:>14}", "lost (sum)");
    out
}

/// Medians of A and B and the ratio B/A for each compared figure.
pub fn compare_table(a: &[RunReport], b: &[RunReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:>14} {:>14} {:>8}  (medians of {} and {} runs)",
        "figure",
        "A",
        "B",
        "B/A",
        a.len(),
        b.len()
    );
    for (name, read, more_is_better) in COMPARED {
        let ma = median(&mut a.iter().map(read).collect::<Vec<_>>());
        let mb = median(&mut b.iter().map(read).collect::<Vec<_>>());
        let ratio = if ma > 0.0 { mb / ma } else { f64::NAN };
        let better = if ratio.is_nan() || (ratio - 1.0).abs() < 0.02 {
            ""
        } else if (ratio > 1.0) == *more_is_better {
            "  B better"
        } else {
            "  A better"
        };
        let _ = writeln!(out, "{name:<20} {ma:>14.3} {mb:>14.3} {ratio:>8.3}{better}");
    }
    let lost_a: u64 = a.iter().map(|r| r.lost).sum();
    let lost_b: u64 = b.iter().map(|r| r.lost).sum();
    let _ = writeln!(out, "{:<20} {lost_a:>14} {lost_b:>14}", "lost (sum)");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{LatencyMs, LoadKind, Sample};

    pub(crate) fn report(rate: f64, lost: u64) -> RunReport {
        RunReport {
            profile: "standard".into(),
            load: LoadKind::Files(Some(4)),
            shipper: "log-capturer".into(),
            config: "configs/profiles/standard.yaml".into(),
            sets: Vec::new(),
            target_rate: Some(10_000),
            lines_written: 300_000,
            lines_delivered: 300_000 - lost,
            lost,
            duplicated: 0,
            complete: lost == 0,
            wall_seconds: 30.0,
            lines_per_second: rate,
            cpu_seconds: 0.3,
            cpu_seconds_per_million_lines: 1.0,
            cpu_percent_of_core: 1.0,
            peak_rss_mib: 20.0,
            peak_queue_fill: 0.0,
            latency_ms: LatencyMs {
                p50: 3.0,
                p99: 9.0,
                max: 20.0,
            },
            rotations: 2,
            shipper_exit: "exit status: 0".into(),
            loki_latency_ms: 0.0,
            receiver: None,
            samples: (1..=30)
                .map(|t| Sample {
                    t: f64::from(t),
                    lines_per_second: rate,
                    cpu_percent: 1.0,
                    rss_mib: 20.0,
                    queue_fill: 0.0,
                    latency_ms: LatencyMs {
                        p50: 3.0,
                        p99: 9.0,
                        max: 20.0,
                    },
                })
                .collect(),
        }
    }

    #[test]
    fn writes_json_that_reads_back_and_an_svg() {
        let dir = tempfile::tempdir().unwrap();
        let report = report(10_000.0, 0);
        let files = write_files(&report, dir.path(), "standard").unwrap();
        let json: RunReport = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
        assert_eq!(json, report);
        let svg = std::fs::read_to_string(&files[1]).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("P99"), "{svg:.200}");
        let text = table(&report);
        assert!(text.contains("lost               0"), "{text}");
        assert!(text.contains("peak queue fill    0%"), "{text}");
    }

    #[test]
    fn compares_medians_and_says_which_side_is_better() {
        let a = [report(100.0, 0), report(110.0, 0), report(90.0, 0)];
        let b = [report(200.0, 0), report(190.0, 1), report(210.0, 0)];
        let text = compare_table(&a, &b);
        let line = text.lines().find(|l| l.starts_with("lines/s")).unwrap();
        assert!(
            line.contains("100.000") && line.contains("200.000"),
            "{line}"
        );
        assert!(line.contains("2.000  B better"), "{line}");
        assert!(
            text.contains("lost (sum)                        0              1"),
            "{text}"
        );
        assert_eq!(median(&mut [3.0, 1.0, 2.0, 10.0]), 2.5);
        let summary = median_table(&a);
        let line = summary.lines().find(|l| l.starts_with("lines/s")).unwrap();
        assert!(
            line.split_whitespace()
                .eq(["lines/s", "100.000", "90.000", "110.000"]),
            "{line}"
        );
    }
}
