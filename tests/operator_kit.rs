//! The operator kit checked against the code and a real Prometheus: the dashboards' structure,
//! the alert rules' annotations and runbook links, promtool's check and unit tests, and every
//! query of dashboards/ and alerts/ evaluated by a `prometheus` process scraping the real binary
//! under load (faults injected, so errors, retries, drops and duplicates have series).
//!
//! Without `prometheus`/`promtool` on PATH the Prometheus tests are skipped with a message, except
//! when `CI` is set: there they fail (scripts/prometheus-setup.sh installs them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::loki::Receiver;
use common::{Instance, free_port, http, wait_for};
use http::{Method, StatusCode};

/// Metrics of components not yet merged: alerts and dashboard rows may name them, and they
/// must be declared once the component lands (then remove them from here). Empty: every
/// component the kit names is merged.
const NOT_YET_MERGED: &[&str] = &[];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn dashboards() -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        out.push((
            path.file_name().unwrap().to_string_lossy().into_owned(),
            json,
        ));
    }
    assert!(out.len() >= 5, "dashboards/*.json: {} found", out.len());
    out
}

/// Every panel that is not a row, with its dashboard's file name.
fn panels(dashboards: &[(String, serde_json::Value)]) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for (file, dash) in dashboards {
        for panel in dash["panels"].as_array().unwrap() {
            if panel["type"] != "row" {
                out.push((file.clone(), panel.clone()));
            }
            for inner in panel["panels"].as_array().into_iter().flatten() {
                out.push((file.clone(), inner.clone()));
            }
        }
    }
    out
}

fn rules() -> Vec<serde_yaml::Value> {
    let doc: serde_yaml::Value = serde_yaml::from_str(&read("alerts/log-capturer.yaml")).unwrap();
    doc["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .collect()
}

/// GitHub's anchors for the headings of a Markdown file.
fn anchors(markdown: &str) -> HashSet<String> {
    markdown
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

#[test]
fn dashboards_are_import_and_provisioning_ready() {
    let dashboards = dashboards();
    let mut uids = HashSet::new();
    for (file, dash) in &dashboards {
        let uid = dash["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no uid"));
        assert!(uids.insert(uid.to_string()), "{file}: uid {uid} used twice");
        assert!(
            uid.len() <= 40,
            "{file}: Grafana uids are at most 40 characters"
        );
        assert!(
            dash["schemaVersion"].as_u64().is_some(),
            "{file}: schemaVersion"
        );
        assert!(
            dash["id"].is_null(),
            "{file}: id must be null to import anywhere"
        );
        assert!(dash["title"].as_str().is_some_and(|t| !t.is_empty()));
        let variables: Vec<&str> = dash["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        for name in ["datasource", "job", "instance"] {
            assert!(variables.contains(&name), "{file}: no ${name} variable");
        }
        let ds = &dash["templating"]["list"][0];
        assert_eq!(ds["type"], "datasource", "{file}");
        assert_eq!(ds["query"], "prometheus", "{file}");
    }
    let mut ids = HashSet::new();
    for (file, panel) in panels(&dashboards) {
        let title = panel["title"].as_str().unwrap_or_default().to_string();
        assert!(
            ids.insert((file.clone(), panel["id"].as_u64().unwrap())),
            "{file}: panel id repeated ({title})"
        );
        assert!(
            panel["description"].as_str().is_some_and(|d| d.len() > 20),
            "{file}: panel {title:?} has no description"
        );
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{file}: {title}"
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{file}: {title} has no query");
        for target in targets {
            assert_eq!(
                target["datasource"]["uid"], "${datasource}",
                "{file}: {title}"
            );
            let expr = target["expr"].as_str().unwrap();
            assert!(
                expr.contains(r#"job=~"$job", instance=~"$instance""#),
                "{file}: {title}: a query does not filter on $job and $instance: {expr}"
            );
        }
    }
    for file in [
        "dashboards/provisioning/datasources/prometheus.yaml",
        "dashboards/provisioning/dashboards/log-capturer.yaml",
    ] {
        let doc: serde_yaml::Value = serde_yaml::from_str(&read(file)).unwrap();
        assert_eq!(doc["apiVersion"].as_u64(), Some(1), "{file}");
    }
}

#[test]
fn every_alert_is_annotated_linked_to_the_runbook_and_unit_tested() {
    let runbook = anchors(&read("docs/runbook.md"));
    let tests: serde_yaml::Value =
        serde_yaml::from_str(&read("alerts/log-capturer_test.yaml")).unwrap();
    let mut firing = HashSet::new();
    let mut silent = HashSet::new();
    for group in tests["tests"].as_sequence().unwrap() {
        let series = group["input_series"].as_sequence().unwrap().len();
        for case in group["alert_rule_test"].as_sequence().unwrap() {
            let name = case["alertname"].as_str().unwrap().to_string();
            let expected = case["exp_alerts"].as_sequence().map_or(0, Vec::len);
            if expected == 0 {
                silent.insert(name.clone());
            } else {
                firing.insert(name.clone());
                // Series beside the firing ones that must stay silent.
                if series > expected {
                    silent.insert(name);
                }
            }
        }
    }
    let mut names = HashSet::new();
    for rule in rules() {
        let name = rule["alert"].as_str().unwrap();
        assert!(names.insert(name.to_string()), "alert {name} defined twice");
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                rule["annotations"][key]
                    .as_str()
                    .is_some_and(|v| !v.is_empty()),
                "{name}: no {key}"
            );
        }
        let url = rule["annotations"]["runbook_url"].as_str().unwrap();
        let anchor = url
            .split_once("docs/runbook.md#")
            .unwrap_or_else(|| panic!("{name}: {url} is not into docs/runbook.md"))
            .1;
        assert!(
            runbook.contains(anchor),
            "{name}: docs/runbook.md has no heading #{anchor}"
        );
        assert!(firing.contains(name), "{name}: no unit test where it fires");
        assert!(
            silent.contains(name),
            "{name}: no unit test where it is silent"
        );
    }
}

/// An executable on PATH, or None (a failure under CI).
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not installed; CI must install it (scripts/prometheus-setup.sh)"
        );
        eprintln!("skipped: {name} is not installed (scripts/prometheus-setup.sh installs it)");
    }
    found
}

#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    for args in [
        &["check", "rules", "alerts/log-capturer.yaml"][..],
        &["test", "rules", "alerts/log-capturer_test.yaml"][..],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A `prometheus` process of the test's own, on loopback, with storage in a temporary directory.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(binary: &Path, target_port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("prometheus.yml");
        // The rules are loaded too: Prometheus itself must accept them.
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 rule_files: [\"{}\"]\n\
                 scrape_configs:\n  - job_name: log-capturer\n    static_configs:\n      - targets: [\"127.0.0.1:{target_port}\"]\n",
                root().join("alerts/log-capturer.yaml").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let prometheus = Self {
            child,
            port,
            _dir: dir,
        };
        wait_for("prometheus to be ready", Duration::from_secs(60), || {
            http(Method::GET, &prometheus.url("/-/ready"), None)
                .ok()
                .filter(|(s, _)| *s == StatusCode::OK)
        });
        prometheus
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// An instant query: Ok(result array) or Err(Prometheus's error).
    fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        let url = self.url(&format!("/api/v1/query?query={}", encode(expr)));
        let (_, body) = http(Method::GET, &url, None)?;
        let answer: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if answer["status"] != "success" {
            return Err(format!("{}: {}", answer["errorType"], answer["error"]));
        }
        Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Grafana's variables as the test's Prometheus sees them: every job and instance, a rate
/// window of a few scrapes.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "15s")
        .replace("$__interval", "5s")
        .replace("$job", ".*")
        .replace("$instance", ".*")
}

/// `log_capturer_*` names an expression refers to.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("log_capturer_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The names the binary declares: what its /metrics can show, histograms with their series.
fn declared_names() -> HashSet<String> {
    let mut names = HashSet::new();
    for def in log_capturer::telemetry::all_metrics() {
        let name = def.exported_name();
        if def.kind.as_str() == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
        names.insert(name);
    }
    names
}

fn exposed_names(metrics: &str) -> HashSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Appends lines until stopped: unique ones, some the filter drops, some repeated for dedup.
fn write_load(path: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap();
            let mut text = String::new();
            for _ in 0..200 {
                seq += 1;
                text.push_str(&format!("seq={seq} level=info request served\n"));
                if seq.is_multiple_of(5) {
                    text.push_str("noise: health probe\n");
                }
                if seq.is_multiple_of(4) {
                    text.push_str("level=warn the same warning again\n");
                }
            }
            file.write_all(text.as_bytes()).unwrap();
            drop(file);
            // Pacing of the load generator, not synchronisation: the test waits on Prometheus.
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

#[test]
fn every_dashboard_and_alert_query_runs_on_prometheus_against_the_real_binary() {
    let (Some(prometheus_bin), Some(_)) = (tool("prometheus"), tool("promtool")) else {
        return;
    };
    // Loki answers some pushes 500 and some 429: errors, retries and response codes get series.
    let receiver = Receiver::start(&["--fail-rate", "0.15", "--status-429-rate", "0.1"]);
    let config = format!(
        r#"
data_dir: "{{dir}}/data"
api: {{listen: "127.0.0.1:{{port}}"}}
sources:
  app: {{type: file, include: ["{{dir}}/in/*.log"], read_from: beginning, poll_interval: 200ms}}
transforms:
  quiet: {{type: filter, inputs: [app], pattern: "^noise", action: drop}}
  dedup: {{type: dedup, inputs: [quiet], cache_size: 500}}
sinks:
  loki:
    type: loki
    inputs: [dedup]
    endpoint: "{}"
    tenant_id: team-a
    labels: {{job: app}}
    dispatcher: {{batch_timeout: 100ms, retry_base_delay: 50ms, retry_max_delay: 200ms, max_retries: 100}}
"#,
        receiver.url("")
    );
    let mut instance = Instance::prepare(&config);
    std::fs::create_dir_all(instance.path("in")).unwrap();
    instance.spawn(&[], &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = write_load(instance.path("in/app.log"), stop.clone());
    let prometheus = Prometheus::start(&prometheus_bin, instance.port);

    let dashboards = dashboards();
    let mut queries: Vec<(String, String)> = Vec::new();
    let mut overview = Vec::new();
    for (file, panel) in panels(&dashboards) {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().to_string();
            let what = format!("{file}: {}", panel["title"].as_str().unwrap());
            if file == "overview.json" {
                overview.push((what.clone(), expr.clone()));
            }
            queries.push((what, expr));
        }
    }
    for var in dashboards[0].1["templating"]["list"].as_array().unwrap() {
        if let Some(definition) = var["definition"].as_str() {
            // label_values(metric, label) is Grafana's; Prometheus runs the metric part.
            let inner = definition
                .trim_start_matches("label_values(")
                .rsplit_once(',')
                .unwrap()
                .0;
            queries.push((format!("variable {}", var["name"]), inner.to_string()));
        }
    }
    for rule in rules() {
        queries.push((
            format!("alert {}", rule["alert"].as_str().unwrap()),
            rule["expr"].as_str().unwrap().to_string(),
        ));
    }

    // Overview panels return data once a few scrapes saw the load, errors and drops.
    for (what, expr) in &overview {
        let expr = substitute(expr);
        wait_for(
            &format!("{what} to return data: {expr}"),
            Duration::from_secs(90),
            || match prometheus.query(&expr) {
                Ok(result) if !result.is_empty() => Some(()),
                Ok(_) => None,
                Err(err) => panic!("{what}: {expr}: {err}"),
            },
        );
    }
    for (what, expr) in &queries {
        let expr = substitute(expr);
        if let Err(err) = prometheus.query(&expr) {
            panic!("{what}: Prometheus refused {expr}: {err}");
        }
    }
    let rules_loaded = prometheus.query("ALERTS or vector(1)");
    assert!(rules_loaded.is_ok(), "{rules_loaded:?}");

    let (_, metrics) = instance.get("/metrics");
    let exposed = exposed_names(&metrics);
    let declared = declared_names();
    // What this load must make the binary expose: every name the overview reads.
    let mut not_exposed = Vec::new();
    for (what, expr) in &overview {
        for name in metric_names(expr) {
            if !exposed.contains(&name) {
                not_exposed.push(format!("{what}: {name}"));
            }
        }
    }
    assert!(
        not_exposed.is_empty(),
        "overview metrics missing from /metrics: {not_exposed:#?}\n{metrics}"
    );
    // Every other name: exposed now, or declared by the binary (a series appears with its first
    // value: a corrupt positions file, a full disk), or a component of another branch.
    let mut unknown = Vec::new();
    for (what, expr) in &queries {
        for name in metric_names(expr) {
            if !exposed.contains(&name)
                && !declared.contains(&name)
                && !NOT_YET_MERGED.contains(&name.as_str())
            {
                unknown.push(format!("{what}: {name}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "names the binary neither exposes nor declares: {unknown:#?}"
    );
    // The allow-list holds only names this build does not have.
    for name in NOT_YET_MERGED {
        assert!(
            !declared.contains(*name),
            "{name} is declared now: remove it from NOT_YET_MERGED"
        );
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}
