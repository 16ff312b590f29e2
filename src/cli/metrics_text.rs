//! A reader of the Prometheus text exposition format (version 0.0.4), for the commands that
//! look at a running instance (`health`, `top`) through its `GET /metrics`.
//!
//! Guarantees: every sample line `name{label="value",...} value [timestamp]` becomes a
//! [`Sample`]; comment lines (`# HELP`, `# TYPE`) and blank lines are skipped; label values are
//! unescaped (`\\`, `\"`, `\n`); `+Inf`, `-Inf` and `NaN` are read as floats. A line that does not
//! parse is skipped and counted in [`Scrape::skipped`] rather than failing the whole scrape: an
//! operator's check should report what it can read. The `prometheus` crate in the tree only
//! encodes, and this subset is small, so no parser crate is added.

use std::collections::BTreeMap;

/// One sample: a series and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// The value of `label`, or "" when the series has none.
    pub fn label(&self, label: &str) -> &str {
        self.labels.get(label).map_or("", String::as_str)
    }
}

/// Every sample of one scrape.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    pub samples: Vec<Sample>,
    /// Lines that were neither comments nor samples.
    pub skipped: usize,
}

impl Scrape {
    /// Parses a whole exposition.
    pub fn parse(text: &str) -> Self {
        let mut scrape = Self::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_line(line) {
                Some(sample) => scrape.samples.push(sample),
                None => scrape.skipped += 1,
            }
        }
        scrape
    }

    /// The samples of metric `name` (the full name, e.g. `log_capturer_queue_size`).
    pub fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The values of `name` summed per value of `label` (series without it sum under "").
    pub fn sum_by(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        self.sum_by_where(name, label, |_| true)
    }

    /// As [`Scrape::sum_by`], over the series `keep` accepts.
    pub fn sum_by_where(
        &self,
        name: &str,
        label: &str,
        keep: impl Fn(&Sample) -> bool,
    ) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for sample in self.series(name).filter(|s| keep(s)) {
            *out.entry(sample.label(label).to_string()).or_insert(0.0) += sample.value;
        }
        out
    }

    /// Per value of `label`: how much counter `name` grew since `earlier` over the series `keep`
    /// accepts, and its total now. A series that went down (the instance restarted) counts
    /// from zero; a series new since `earlier` counts all of its value.
    pub fn increase_since(
        &self,
        earlier: &Scrape,
        name: &str,
        label: &str,
        keep: impl Fn(&Sample) -> bool,
    ) -> BTreeMap<String, (f64, f64)> {
        // Series by their whole label set, so a reset of one is seen even when others grow.
        let before: BTreeMap<&BTreeMap<String, String>, f64> = earlier
            .series(name)
            .filter(|s| keep(s))
            .map(|s| (&s.labels, s.value))
            .collect();
        let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for sample in self.series(name).filter(|s| keep(s)) {
            let was = before.get(&sample.labels).copied().unwrap_or(0.0);
            let increase = if sample.value >= was {
                sample.value - was
            } else {
                sample.value
            };
            let entry = out.entry(sample.label(label).to_string()).or_default();
            entry.0 += increase;
            entry.1 += sample.value;
        }
        out
    }

    /// The `q` quantile (0..=1) of histogram `name` (its `_bucket` series) over what was
    /// observed since `earlier`, for the series whose `label` is `value`, estimated by linear
    /// interpolation inside the bucket as Prometheus's `histogram_quantile` does. `None` when
    /// nothing was observed.
    pub fn quantile_since(
        &self,
        earlier: &Scrape,
        name: &str,
        label: &str,
        value: &str,
        q: f64,
    ) -> Option<f64> {
        let buckets = format!("{name}_bucket");
        let increase = self.increase_since(earlier, &buckets, "le", |s| s.label(label) == value);
        let mut cumulative: Vec<(f64, f64)> = increase
            .iter()
            .filter_map(|(le, (count, _))| {
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((bound, *count))
            })
            .collect();
        cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = cumulative.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let mut lower = (0.0, 0.0);
        for &(bound, count) in &cumulative {
            if count >= rank {
                if bound.is_infinite() {
                    // Above the highest finite bound: that bound is all that can be said.
                    return Some(lower.0);
                }
                let in_bucket = count - lower.1;
                let share = if in_bucket > 0.0 {
                    (rank - lower.1) / in_bucket
                } else {
                    1.0
                };
                return Some(lower.0 + (bound - lower.0) * share);
            }
            lower = (bound, count);
        }
        Some(lower.0)
    }

    /// The value of a series without labels (the process gauges), if present.
    pub fn single(&self, name: &str) -> Option<f64> {
        self.series(name).map(|s| s.value).next()
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = parse_labels(after_brace, &mut labels)?;
    }
    // The value, then an optional timestamp we do not need.
    let value = rest.split_ascii_whitespace().next()?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Reads `key="value",...}` and returns what follows the closing brace.
fn parse_labels<'a>(mut rest: &'a str, labels: &mut BTreeMap<String, String>) -> Option<&'a str> {
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Some(after);
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_string();
        rest = rest[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        };
        labels.insert(key, value);
        rest = rest[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// `part / whole`, 0 when `whole` is 0 (a queue with no capacity, a counter that did not move).
pub fn share(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { part / whole } else { 0.0 }
}

/// Fetches and reads `base`/metrics (a running instance's Prometheus endpoint).
pub async fn scrape(base: &str) -> Result<Scrape, String> {
    let url = format!("{base}/metrics");
    match crate::client::request(http::Method::GET, &url, None).await {
        Ok((status, body)) if status.is_success() => Ok(Scrape::parse(&body)),
        Ok((status, _)) => Err(format!("GET {url} answered {status}")),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP log_capturer_queue_size Log events waiting.
# TYPE log_capturer_queue_size gauge
log_capturer_queue_size{sink="loki"} 12
log_capturer_queue_size{sink="file"} 0
log_capturer_logs_processed_total{component="a b",job="x"} 1.5e3
log_capturer_process_open_fds 9 1700000000000
log_capturer_send_duration_seconds_bucket{sink="loki",le="+Inf"} 4
weird{path="C:\\logs\"q\"\nend"} NaN
this is not a sample
"#;

    #[test]
    fn samples_labels_and_values_are_read_and_comments_skipped() {
        let scrape = Scrape::parse(TEXT);
        assert_eq!(scrape.samples.len(), 6);
        assert_eq!(scrape.skipped, 1);
        assert_eq!(
            scrape.sum_by("log_capturer_queue_size", "sink"),
            BTreeMap::from([("file".to_string(), 0.0), ("loki".to_string(), 12.0)])
        );
        let processed = scrape
            .series("log_capturer_logs_processed_total")
            .next()
            .unwrap();
        assert_eq!(processed.label("component"), "a b");
        assert_eq!(processed.label("job"), "x");
        assert!((processed.value - 1500.0).abs() < f64::EPSILON);
        assert_eq!(scrape.single("log_capturer_process_open_fds"), Some(9.0));
        let bucket = scrape
            .series("log_capturer_send_duration_seconds_bucket")
            .next()
            .unwrap();
        assert_eq!(bucket.label("le"), "+Inf");
        let weird = scrape.series("weird").next().unwrap();
        assert_eq!(weird.label("path"), "C:\\logs\"q\"\nend");
        assert!(weird.value.is_nan());
    }

    #[test]
    fn increases_count_resets_from_zero_and_quantiles_interpolate_within_buckets() {
        let earlier = Scrape::parse(
            "c{k=\"a\"} 10\nc{k=\"b\"} 5\n\
             h_bucket{s=\"x\",le=\"0.1\"} 0\nh_bucket{s=\"x\",le=\"1\"} 0\nh_bucket{s=\"x\",le=\"+Inf\"} 0\n",
        );
        let now = Scrape::parse(
            "c{k=\"a\"} 12\nc{k=\"b\"} 2\nc{k=\"c\"} 1\n\
             h_bucket{s=\"x\",le=\"0.1\"} 50\nh_bucket{s=\"x\",le=\"1\"} 100\nh_bucket{s=\"x\",le=\"+Inf\"} 100\n\
             h_bucket{s=\"y\",le=\"+Inf\"} 0\n",
        );
        let increase = now.increase_since(&earlier, "c", "k", |_| true);
        assert_eq!(increase["a"], (2.0, 12.0));
        assert_eq!(increase["b"], (2.0, 2.0));
        assert_eq!(increase["c"], (1.0, 1.0));
        let median = now.quantile_since(&earlier, "h", "s", "x", 0.5).unwrap();
        assert!((median - 0.1).abs() < 1e-9, "{median}");
        let p75 = now.quantile_since(&earlier, "h", "s", "x", 0.75).unwrap();
        assert!((p75 - 0.55).abs() < 1e-9, "{p75}");
        assert_eq!(now.quantile_since(&earlier, "h", "s", "y", 0.5), None);
    }

    #[test]
    fn a_torn_line_is_skipped_not_fatal() {
        let scrape = Scrape::parse("a{x=\"1\" 2\nb 3\nc{x=\"unterminated} 4\n");
        assert_eq!(scrape.single("b"), Some(3.0));
        assert_eq!(scrape.samples.len(), 1);
        assert_eq!(scrape.skipped, 2);
    }
}
