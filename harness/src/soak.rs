//! Soak scenarios: the shipper under a steady load for minutes while the things production does
//! to it happen together (a Loki that fails, refuses and goes away, files rotated under it, the
//! shipper itself killed or stopped and started again), and the checks of what must hold
//! whatever happened.
//!
//! What a soak guarantees about its verdict:
//! - `lost` is the count of numbers in `1..=lines_written` the receiver never stored, read after
//!   the last instance has shut down; any loss fails the scenario.
//! - `duplicated` (numbers stored more than once) may be at most `checks.max_duplicated_per_restart`
//!   times the number of restarts: 0 for restarts by SIGTERM, which drain and save positions;
//!   for SIGKILL, what was delivered but not yet saved (`flush_interval`) is read again.
//! - Every stored line is compared, byte for byte in its shape, with the line the harness wrote
//!   (its length, `seq=`, `created=`, the padding): a line merged, cut or garbled fails it.
//! - `checks.max_rss_growth_mib` bounds how much the shipper's resident memory may grow between
//!   the second quarter of the load and the last (a leak), when no restart resets it.
//! - The last instance must stop with exit status 0 on SIGTERM (drained in time).
//!
//! Scenarios live in `soak-tests/*.yaml` (see soak-tests/README.md for the format).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::docker_load::DockerLoad;
use crate::load::{FileLoad, LineShape, LoadSource};
use crate::procfs;
use crate::receiver::{Outage, ReceiverHandle, serve};
use crate::run::{ReceiverMode, Shipper, free_port, prepare_config, receiver_config, spawn_writer};

/// A scenario as its file gives it. Durations are written like `90s` or `2m`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// One sentence: what production event this reproduces.
    pub description: String,
    /// The shipper's config, relative to the scenario file: a file source `load` and a Loki sink
    /// `loki` (the harness points them at its files and its receiver).
    pub config: PathBuf,
    /// Lines per second, over all files.
    pub rate: u64,
    /// Where the lines come from: `files` (the default: files the harness writes and rotates)
    /// or `docker` (containers printing them, read through the shipper's docker source).
    #[serde(default)]
    pub load: SoakLoad,
    /// Files written round-robin (or containers, for `load: docker`).
    pub files: usize,
    /// Bytes per line, newline included.
    #[serde(default = "default_line_bytes")]
    pub line_bytes: usize,
    /// Each file is renamed away (`app-N.log.G`) and started again at this size (files only;
    /// none when not given).
    #[serde(default)]
    pub rotate_bytes: Option<u64>,
    /// Follow the rotated files too (`app-N.log*` instead of `app-N.log`), as a host whose
    /// rotation renames files out of `*.log` should (files only).
    #[serde(default)]
    pub include_rotated: bool,
    /// The image the containers of `load: docker` run (busybox with sh, cat and sleep).
    #[serde(default)]
    pub docker_image: Option<String>,
    /// How long the load runs (`--duration` overrides it).
    pub duration: String,
    /// How long the last lines may take to arrive after the load ends.
    #[serde(default = "default_drain")]
    pub drain_timeout: String,
    #[serde(default)]
    pub receiver: ReceiverFaults,
    /// The shipper stopped and started again while the load runs.
    #[serde(default)]
    pub restarts: Option<Restarts>,
    /// The config changed and reloaded while the load runs.
    #[serde(default)]
    pub reloads: Option<Reloads>,
    #[serde(default)]
    pub checks: Checks,
}

/// Where a soak's lines come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoakLoad {
    #[default]
    Files,
    Docker,
}

fn default_line_bytes() -> usize {
    100
}

fn default_drain() -> String {
    "120s".into()
}

/// What the receiver does wrong, on purpose.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverFaults {
    /// Fraction of pushes answered 500 (nothing stored).
    #[serde(default)]
    pub fail_rate: f64,
    /// Fraction of pushes answered 429 with Loki's rate-limit message (nothing stored).
    #[serde(default)]
    pub status_429_rate: f64,
    /// Windows in which every push and `/ready` are answered 503.
    #[serde(default)]
    pub outages: Vec<OutageSpec>,
    /// Delay before each answer, e.g. `50ms`.
    #[serde(default)]
    pub latency: Option<String>,
    /// Seed of the fault draws; the same seed draws the same faults for the same pushes.
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_seed() -> u64 {
    1
}

/// An outage placed by its start as a fraction of the load's duration, so that a shorter
/// `--duration` keeps it inside the load.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutageSpec {
    /// Start, as a fraction (0..1) of the duration after the receiver starts.
    pub at: f64,
    /// How long it lasts, e.g. `15s`.
    pub lasts: String,
}

/// How the shipper is stopped and started again.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restarts {
    /// Time between two restarts, from the load's start, e.g. `15s`.
    pub every: String,
    /// `kill` (SIGKILL: a crash, the OOM killer) or `term` (SIGTERM: a deploy).
    pub signal: StopSignal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopSignal {
    Kill,
    Term,
}

/// Live reloads: every `every`, the config file is rewritten with the next value of each key of
/// `toggle` (dotted paths into the shipper's config, each with the values it takes in turn) and
/// `POST /config/reload` must answer `applied`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reloads {
    pub every: String,
    pub toggle: std::collections::BTreeMap<String, Vec<serde_json::Value>>,
}

/// The limits the verdict applies besides "nothing lost, nothing corrupted".
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checks {
    /// Lines stored twice allowed per restart (0 by default).
    #[serde(default)]
    pub max_duplicated_per_restart: u64,
    /// Most growth of resident memory from the load's second quarter to its last, in MiB.
    #[serde(default)]
    pub max_rss_growth_mib: Option<f64>,
}

/// A scenario read from its file, with its durations parsed and its config path resolved.
#[derive(Clone, Debug)]
pub struct LoadedScenario {
    pub name: String,
    pub scenario: Scenario,
    pub config: PathBuf,
    pub duration: Duration,
    pub drain_timeout: Duration,
    pub restart_every: Option<Duration>,
    pub reload_every: Option<Duration>,
    pub outages: Vec<Outage>,
    pub latency: Duration,
}

fn parse_duration(key: &str, text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|err| format!("{key}: {text:?} is not a duration ({err}; e.g. 90s or 2m)"))
}

impl LoadedScenario {
    /// Reads `path`; `duration` replaces the file's. Every error names the file and the key.
    pub fn read(path: &Path, duration: Option<Duration>) -> Result<Self, String> {
        use figment::providers::{Format, Yaml};
        let scenario: Scenario = figment::Figment::from(Yaml::file_exact(path))
            .extract()
            .map_err(|err| format!("{}: {err}", path.display()))?;
        let at = |result: Result<Duration, String>| {
            result.map_err(|err| format!("{}: {err}", path.display()))
        };
        let duration = match duration {
            Some(duration) => duration,
            None => at(parse_duration("duration", &scenario.duration))?,
        };
        let drain_timeout = at(parse_duration("drain_timeout", &scenario.drain_timeout))?;
        let restart_every = match &scenario.restarts {
            Some(restarts) => Some(at(parse_duration("restarts.every", &restarts.every))?)
                .filter(|every| !every.is_zero()),
            None => None,
        };
        let reload_every = match &scenario.reloads {
            Some(reloads) => {
                if let Some((key, _)) = reloads.toggle.iter().find(|(_, values)| values.is_empty())
                {
                    return Err(format!(
                        "{}: reloads.toggle.{key}: give the values it takes in turn",
                        path.display()
                    ));
                }
                Some(at(parse_duration("reloads.every", &reloads.every))?)
                    .filter(|every| !every.is_zero())
            }
            None => None,
        };
        let latency = match &scenario.receiver.latency {
            Some(text) => at(parse_duration("receiver.latency", text))?,
            None => Duration::ZERO,
        };
        let mut outages = Vec::new();
        for (i, spec) in scenario.receiver.outages.iter().enumerate() {
            if !(0.0..1.0).contains(&spec.at) {
                return Err(format!(
                    "{}: receiver.outages[{i}].at: {} is not a fraction of the duration (0 to below 1)",
                    path.display(),
                    spec.at
                ));
            }
            outages.push(Outage {
                start: duration.mul_f64(spec.at),
                duration: at(parse_duration(
                    &format!("receiver.outages[{i}].lasts"),
                    &spec.lasts,
                ))?,
            });
        }
        for (key, value) in [
            ("receiver.fail_rate", scenario.receiver.fail_rate),
            (
                "receiver.status_429_rate",
                scenario.receiver.status_429_rate,
            ),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(format!(
                    "{}: {key}: {value} is not a fraction (0 to 1)",
                    path.display()
                ));
            }
        }
        if scenario.rate == 0 || scenario.files == 0 {
            return Err(format!(
                "{}: rate and files must be at least 1",
                path.display()
            ));
        }
        let config = path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&scenario.config);
        if !config.is_file() {
            return Err(format!(
                "{}: config: {} does not exist",
                path.display(),
                config.display()
            ));
        }
        let name = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .unwrap_or("soak")
            .to_string();
        Ok(Self {
            name,
            scenario,
            config,
            duration,
            drain_timeout,
            restart_every,
            reload_every,
            outages,
            latency,
        })
    }
}

/// What a soak found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SoakReport {
    pub name: String,
    pub lines_written: u64,
    pub lines_delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Stored lines that are not the line the harness wrote.
    pub corrupted: u64,
    /// The first few corrupted lines, for the log.
    pub corrupted_examples: Vec<String>,
    /// Records read back from the receiver (one per stored entry).
    pub records: u64,
    pub stored_entries: u64,
    pub restarts: u64,
    /// Reloads answered `applied`.
    pub reloads: u64,
    /// How each instance stopped, in order (the last one by the final SIGTERM).
    pub exits: Vec<String>,
    pub rotations: u64,
    /// Push answers by status code.
    pub responses: Vec<(String, u64)>,
    pub peak_rss_mib: f64,
    /// Growth of resident memory from the load's second quarter to its last (no restarts).
    pub rss_growth_mib: Option<f64>,
    pub complete: bool,
    /// Reloads that did not answer `applied`.
    pub reload_failures: Vec<String>,
    /// Why the scenario failed; empty when it passed.
    pub failures: Vec<String>,
}

impl SoakReport {
    /// The verdict: every check of `checks` against what was found.
    pub fn judge(&mut self, checks: &Checks) {
        let mut failures = Vec::new();
        if self.lost > 0 {
            failures.push(format!(
                "{} of {} lines never arrived",
                self.lost, self.lines_written
            ));
        }
        let allowed = checks.max_duplicated_per_restart * self.restarts;
        if self.duplicated > allowed {
            failures.push(format!(
                "{} lines stored twice, more than the {allowed} allowed ({} per restart, {} restarts)",
                self.duplicated, checks.max_duplicated_per_restart, self.restarts
            ));
        }
        failures.extend(self.reload_failures.iter().cloned());
        if self.corrupted > 0 {
            failures.push(format!(
                "{} stored lines are not the lines written, e.g. {:?}",
                self.corrupted, self.corrupted_examples
            ));
        }
        if self.records != self.stored_entries {
            failures.push(format!(
                "the receiver stored {} entries but recorded {}",
                self.stored_entries, self.records
            ));
        }
        if let (Some(limit), Some(growth)) = (checks.max_rss_growth_mib, self.rss_growth_mib)
            && growth > limit
        {
            failures.push(format!(
                "resident memory grew by {growth:.1} MiB from the second quarter of the load to the last (at most {limit} MiB)"
            ));
        }
        match self.exits.last() {
            Some(exit) if exit == "exit status: 0" => {}
            other => failures.push(format!(
                "the last instance did not drain and exit 0 on SIGTERM: {other:?}"
            )),
        }
        self.failures = failures;
    }

    /// A table for the terminal.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut row = |name: &str, value: String| {
            out.push_str(&format!("{name:<18} {value}\n"));
        };
        row("scenario", self.name.clone());
        row("lines written", self.lines_written.to_string());
        row("lines delivered", self.lines_delivered.to_string());
        row("lost", self.lost.to_string());
        row("duplicated", self.duplicated.to_string());
        row("corrupted", self.corrupted.to_string());
        row("restarts", self.restarts.to_string());
        row("reloads", self.reloads.to_string());
        row("rotations", self.rotations.to_string());
        row(
            "push answers",
            self.responses
                .iter()
                .map(|(code, n)| format!("{code}: {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        row("peak RSS", format!("{:.1} MiB", self.peak_rss_mib));
        if let Some(growth) = self.rss_growth_mib {
            row(
                "RSS growth",
                format!("{growth:+.1} MiB (Q2 -> Q4 of the load)"),
            );
        }
        row("exits", self.exits.join("; "));
        row(
            "verdict",
            if self.failures.is_empty() {
                "passed".to_string()
            } else {
                format!("FAILED: {}", self.failures.join("; "))
            },
        );
        out
    }
}

/// Whether `line` (without its newline) is a line the file load writes at `line_bytes`.
pub fn is_written_line(line: &[u8], line_bytes: usize) -> bool {
    let digits = |bytes: &[u8]| !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit);
    line.len() + 1 == line_bytes.max(crate::load::MIN_LINE_BYTES)
        && line.starts_with(b"seq=")
        && digits(&line[4..14])
        && &line[14..23] == b" created="
        && digits(&line[23..42])
        && line[42] == b' '
        && line[43..].iter().all(|&b| b == b'.')
}

/// Reads the receiver's record file: how many entries, how many of them not written lines.
fn check_records(path: &Path, line_bytes: usize) -> Result<(u64, u64, Vec<String>), String> {
    use std::io::BufRead;
    let file =
        std::fs::File::open(path).map_err(|err| format!("opening {}: {err}", path.display()))?;
    let (mut records, mut corrupted, mut examples) = (0u64, 0u64, Vec::new());
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(|err| format!("reading {}: {err}", path.display()))?;
        records += 1;
        let stored = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|value| value["line"].as_str().map(str::to_string));
        let intact = stored
            .as_deref()
            .is_some_and(|text| is_written_line(text.as_bytes(), line_bytes));
        if !intact {
            corrupted += 1;
            if examples.len() < 3 {
                examples.push(stored.unwrap_or(line).chars().take(160).collect());
            }
        }
    }
    Ok((records, corrupted, examples))
}

/// One resident-memory sample of the running instance.
struct RssSample {
    /// Since the load started.
    at: Duration,
    rss: u64,
}

/// Runs one scenario with `shipper` and returns what it found (judged).
pub async fn soak(
    loaded: &LoadedScenario,
    shipper_binary: &Path,
    work_dir: Option<&Path>,
    keep: bool,
) -> Result<SoakReport, String> {
    let scenario = &loaded.scenario;
    let mut builder = tempfile::Builder::new();
    builder.prefix("harness-soak-");
    let work = match work_dir {
        Some(dir) => builder.tempdir_in(dir),
        None => builder.tempdir(),
    }
    .map_err(|err| format!("creating a work directory: {err}"))?;
    let dir = work.path().to_path_buf();
    let record = dir.join("received.jsonl");

    let mut receiver_settings = receiver_config(loaded.latency, ReceiverMode::Loki);
    receiver_settings.fail_rate = scenario.receiver.fail_rate;
    receiver_settings.status_429_rate = scenario.receiver.status_429_rate;
    receiver_settings.outages = loaded.outages.clone();
    receiver_settings.seed = Some(scenario.receiver.seed);
    receiver_settings.record = Some(record.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|err| format!("binding the receiver: {err}"))?;
    let receiver = serve(receiver_settings, listener)
        .await
        .map_err(|err| format!("starting the receiver: {err}"))?;

    let shape = LineShape::text(scenario.line_bytes);
    let load: Box<dyn LoadSource> = match scenario.load {
        SoakLoad::Files => Box::new(
            FileLoad::new(
                &dir.join("logs"),
                scenario.files,
                shape,
                scenario.rotate_bytes.unwrap_or(u64::MAX),
            )
            .map_err(|err| format!("creating the load files: {err}"))?,
        ),
        SoakLoad::Docker => Box::new(DockerLoad::start(
            &dir.join("fifos"),
            scenario.files,
            shape,
            scenario
                .docker_image
                .as_deref()
                .unwrap_or(crate::docker_load::DEFAULT_IMAGE),
        )?),
    };
    let api_port = free_port()?;
    let config = prepare_config(
        &loaded.config,
        load.as_ref(),
        &dir.join("data"),
        api_port,
        &receiver.base_url(),
    )?;
    let mut config = config;
    if scenario.include_rotated && scenario.load == SoakLoad::Files {
        config["sources"]["load"]["include"] =
            serde_json::json!([format!("{}/*.log*", dir.join("logs").display())]);
    }
    let config_path = dir.join("config.yaml");
    let text = serde_json::to_string_pretty(&config).map_err(|err| err.to_string())?;
    std::fs::write(&config_path, text)
        .map_err(|err| format!("writing {}: {err}", config_path.display()))?;

    let start_shipper = || Shipper::spawn(shipper_binary, &config_path, &[], &dir, api_port);
    let mut shipper = Some(start_shipper()?);
    let reloading = Reloading {
        config,
        path: config_path.clone(),
        api: format!("http://127.0.0.1:{api_port}"),
    };
    let outcome = drive(
        loaded,
        &receiver,
        &mut shipper,
        &start_shipper,
        load,
        &reloading,
    )
    .await;
    let final_exit = match shipper.take() {
        Some(last) => last.stop(Duration::from_secs(90)).await,
        None => "not running".to_string(),
    };
    // The load (containers) goes only after the shipper has stopped reading it.
    let outcome = outcome.map(|mut driven| {
        drop(driven.load.take());
        driven
    });
    let stats = receiver.shutdown().await;
    let mut driven = match outcome {
        Ok(driven) => driven,
        Err(err) => {
            let kept = work.keep();
            return Err(format!(
                "{err}\n(work directory kept: {}; the shipper's output is in shipper.stderr)",
                kept.display()
            ));
        }
    };
    driven.exits.push(final_exit);
    let (records, corrupted, corrupted_examples) = check_records(&record, scenario.line_bytes)?;

    let written = driven.written;
    let delivered = stats.sequences.seen;
    let mut report = SoakReport {
        name: loaded.name.clone(),
        lines_written: written,
        lines_delivered: delivered,
        lost: written.saturating_sub(delivered),
        duplicated: stats.sequences.duplicated,
        corrupted,
        corrupted_examples,
        records,
        stored_entries: stats.stored_entries,
        restarts: driven.restarts,
        reloads: driven.reloads,
        reload_failures: driven.reload_failures,
        exits: driven.exits,
        rotations: driven.rotations,
        responses: stats.responses.into_iter().collect(),
        peak_rss_mib: driven.peak_rss as f64 / f64::from(1u32 << 20),
        rss_growth_mib: driven.rss_growth,
        complete: driven.complete,
        failures: Vec::new(),
    };
    report.judge(&scenario.checks);
    if !report.complete {
        report.failures.push(format!(
            "the last lines had not arrived {:?} after the load ended",
            loaded.drain_timeout
        ));
    }
    if !report.failures.is_empty() || keep {
        let kept = work.keep();
        eprintln!(
            "work directory kept: {} (config.yaml, shipper.stderr, received.jsonl, logs/)",
            kept.display()
        );
    }
    Ok(report)
}

/// What driving the load and the restarts left.
struct Driven {
    written: u64,
    restarts: u64,
    reloads: u64,
    reload_failures: Vec<String>,
    exits: Vec<String>,
    rotations: u64,
    peak_rss: u64,
    rss_growth: Option<f64>,
    complete: bool,
    /// The load, kept until the last instance has stopped.
    load: Option<Box<dyn LoadSource>>,
}

/// Runs the load, restarts the shipper on schedule, samples its memory, and waits for the
/// last lines.
async fn drive(
    loaded: &LoadedScenario,
    receiver: &ReceiverHandle,
    shipper: &mut Option<Shipper>,
    start_shipper: &dyn Fn() -> Result<Shipper, String>,
    load: Box<dyn LoadSource>,
    reloading: &Reloading,
) -> Result<Driven, String> {
    let ready_within = Duration::from_secs(60);
    let mut running = shipper
        .take()
        .ok_or_else(|| "no shipper to drive".to_string())?;
    running.wait_ready(ready_within).await?;
    *shipper = Some(running);
    let made = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(
        load,
        loaded.scenario.rate,
        loaded.duration,
        made.clone(),
        done.clone(),
    );
    let started = Instant::now();
    let mut next_restart = loaded.restart_every.map(|every| started + every);
    let (mut restarts, mut exits) = (0u64, Vec::new());
    let mut next_reload = loaded.reload_every.map(|every| started + every);
    let (mut reloads, mut reload_failures) = (0u64, Vec::new());
    let mut samples: Vec<RssSample> = Vec::new();
    let mut peak_rss = 0u64;
    let mut next_sample = started;
    let mut drain_deadline: Option<Instant> = None;
    let complete = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = Instant::now();
        let loaded_all = done.load(Ordering::Acquire);
        let written = made.load(Ordering::Acquire);
        if loaded_all && receiver.stats().sequences.seen >= written {
            break true;
        }
        let Some(running) = shipper.as_mut() else {
            return Err("the shipper is gone".into());
        };
        if let Err(err) = running.check_alive() {
            return Err(format!(
                "{err}\n(after {restarts} restarts, {:?} into the load)",
                now.duration_since(started)
            ));
        }
        if now >= next_sample {
            if let Ok(memory) = procfs::memory(running.pid()) {
                peak_rss = peak_rss.max(memory.peak_rss);
                if !loaded_all && restarts == 0 {
                    samples.push(RssSample {
                        at: now.duration_since(started),
                        rss: memory.rss,
                    });
                }
            }
            next_sample += Duration::from_secs(1);
        }
        if let Some(at) = next_restart
            && now >= at
            && !loaded_all
        {
            // The old instance goes first: it holds the data directory and the API port.
            let exit = match (shipper.take(), loaded.scenario.restarts.as_ref()) {
                (
                    Some(old),
                    Some(Restarts {
                        signal: StopSignal::Term,
                        ..
                    }),
                ) => old.stop(Duration::from_secs(90)).await,
                (Some(old), _) => old.kill(),
                (None, _) => "not running".to_string(),
            };
            exits.push(exit);
            let mut next = start_shipper()?;
            next.wait_ready(ready_within).await?;
            *shipper = Some(next);
            restarts += 1;
            next_restart = loaded.restart_every.map(|every| at + every);
        }
        if let (Some(at), Some(spec)) = (next_reload, loaded.scenario.reloads.as_ref())
            && now >= at
            && !loaded_all
        {
            match reloading.reload(spec, reloads).await {
                Ok(()) => reloads += 1,
                Err(err) => reload_failures.push(err),
            }
            next_reload = loaded.reload_every.map(|every| at + every);
        }
        if loaded_all {
            let deadline = *drain_deadline.get_or_insert(now + loaded.drain_timeout);
            if now >= deadline {
                break false;
            }
        }
    };
    let load = writer
        .join()
        .map_err(|_| "the load writer panicked".to_string())??;
    let rss_growth = if loaded.restart_every.is_none() {
        rss_growth_mib(&samples, loaded.duration)
    } else {
        None
    };
    Ok(Driven {
        written: load.made(),
        restarts,
        reloads,
        reload_failures,
        exits,
        rotations: load.rotations(),
        peak_rss,
        rss_growth,
        complete,
        load: Some(load),
    })
}

/// What a reload needs: the config as prepared, where the shipper reads it, its API.
struct Reloading {
    config: serde_json::Value,
    path: PathBuf,
    api: String,
}

impl Reloading {
    /// Reload number `n`: the config with the `n`-th value of every toggled key (in turn),
    /// written in place of the old one, and `POST /config/reload`, which must answer `applied`.
    async fn reload(&self, spec: &Reloads, n: u64) -> Result<(), String> {
        let mut config = self.config.clone();
        // Reload 0 sets each key's second value (the first is usually what the file says).
        for (key, values) in &spec.toggle {
            let index = usize::try_from((n + 1) % values.len() as u64).unwrap_or(0);
            set_path(&mut config, key, values[index].clone())
                .map_err(|err| format!("reloads.toggle.{key}: {err}"))?;
        }
        let text = serde_json::to_string_pretty(&config).map_err(|err| err.to_string())?;
        // Written beside and renamed over, so the shipper never reads half a file.
        let partial = self.path.with_extension("yaml.partial");
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, &self.path))
            .map_err(|err| format!("rewriting {}: {err}", self.path.display()))?;
        let url = format!("{}/config/reload", self.api);
        let (status, body) = log_capturer::client::request(http::Method::POST, &url, None).await?;
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if status == http::StatusCode::OK && answer["status"] == "applied" {
            Ok(())
        } else {
            let said = match (answer["status"].as_str(), answer["message"].as_str()) {
                (Some(state), Some(message)) => format!("{state}: {message}"),
                _ => body.trim().to_string(),
            };
            Err(format!("reload {} answered {status}, {said}", n + 1))
        }
    }
}

/// Sets the value at `dotted` (`sinks.loki.dispatcher.batch_size`) in `config`, making the maps
/// on the way.
fn set_path(
    config: &mut serde_json::Value,
    dotted: &str,
    value: serde_json::Value,
) -> Result<(), String> {
    let mut at = config;
    let mut keys = dotted.split('.').peekable();
    while let Some(key) = keys.next() {
        if !at.is_object() {
            return Err(format!("{key}: its parent is not a map"));
        }
        if keys.peek().is_none() {
            at[key] = value;
            return Ok(());
        }
        at = &mut at[key];
        if at.is_null() {
            *at = serde_json::json!({});
        }
    }
    Err("an empty key".into())
}

/// The largest resident memory of the load's last quarter less the largest of its second
/// quarter (the first is start-up and the caches filling), in MiB; `None` without samples in
/// both.
fn rss_growth_mib(samples: &[RssSample], duration: Duration) -> Option<f64> {
    let peak_in = |from: f64, to: f64| {
        samples
            .iter()
            .filter(|s| {
                let f = s.at.as_secs_f64() / duration.as_secs_f64().max(1e-9);
                (from..to).contains(&f)
            })
            .map(|s| s.rss)
            .max()
    };
    let (second, last) = (peak_in(0.25, 0.5)?, peak_in(0.75, 1.0)?);
    Some((last as f64 - second as f64) / f64::from(1u32 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_line_is_told_from_a_cut_merged_or_garbled_one() {
        let mut out = Vec::new();
        crate::load::format_line(&mut out, 7, 1_700_000_000_000_000_000, LineShape::text(100));
        let line = &out[..out.len() - 1];
        assert!(is_written_line(line, 100));
        assert!(!is_written_line(&line[..98], 100), "cut");
        let mut merged = line[..50].to_vec();
        merged.extend_from_slice(&line[..49]);
        assert!(!is_written_line(&merged, 100), "two halves");
        let mut garbled = line.to_vec();
        garbled[60] = b'x';
        assert!(
            !is_written_line(&garbled, 100),
            "a changed byte in the padding"
        );
        garbled = line.to_vec();
        garbled[8] = b'a';
        assert!(!is_written_line(&garbled, 100), "a changed digit");
        assert!(!is_written_line(b"", 100));
    }

    fn report() -> SoakReport {
        SoakReport {
            lines_written: 1000,
            lines_delivered: 1000,
            records: 1000,
            stored_entries: 1000,
            exits: vec!["exit status: 0".into()],
            complete: true,
            ..SoakReport::default()
        }
    }

    #[test]
    fn the_verdict_fails_on_loss_corruption_excess_duplicates_growth_or_a_bad_exit() {
        let checks = Checks {
            max_duplicated_per_restart: 10,
            max_rss_growth_mib: Some(4.0),
        };
        let mut ok = report();
        ok.restarts = 2;
        ok.duplicated = 20;
        ok.rss_growth_mib = Some(3.9);
        ok.judge(&checks);
        assert!(ok.failures.is_empty(), "{:?}", ok.failures);

        type Spoil = Box<dyn Fn(&mut SoakReport)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("never arrived", Box::new(|r| r.lost = 1)),
            ("stored twice", Box::new(|r| r.duplicated = 1)),
            ("not the lines written", Box::new(|r| r.corrupted = 1)),
            ("recorded", Box::new(|r| r.records = 999)),
            ("grew by", Box::new(|r| r.rss_growth_mib = Some(4.1))),
            (
                "exit 0",
                Box::new(|r| r.exits = vec!["exit status: 1".into()]),
            ),
        ];
        for (expected, spoil) in cases {
            let mut spoilt = report();
            spoil(&mut spoilt);
            spoilt.judge(&checks);
            assert!(
                spoilt.failures.iter().any(|f| f.contains(expected)),
                "{expected}: {:?}",
                spoilt.failures
            );
        }
    }

    #[test]
    fn a_toggled_key_is_set_at_its_dotted_path() {
        let mut config = serde_json::json!({"sinks": {"loki": {"type": "loki"}}});
        set_path(&mut config, "sinks.loki.dispatcher.batch_size", 300.into()).unwrap();
        assert_eq!(config["sinks"]["loki"]["dispatcher"]["batch_size"], 300);
        assert_eq!(config["sinks"]["loki"]["type"], "loki");
        assert!(set_path(&mut config, "sinks.loki.type.x", 1.into()).is_err());
    }

    #[test]
    fn growth_compares_the_last_quarter_with_the_second() {
        let mib = 1u64 << 20;
        let samples: Vec<RssSample> = [(1, 30), (3, 10), (5, 12), (8, 13), (9, 14)]
            .iter()
            .map(|&(s, m)| RssSample {
                at: Duration::from_secs(s),
                rss: m * mib,
            })
            .collect();
        // The start-up peak (30 MiB in the first quarter) does not count.
        assert_eq!(rss_growth_mib(&samples, Duration::from_secs(10)), Some(4.0));
        assert_eq!(rss_growth_mib(&samples[..2], Duration::from_secs(10)), None);
    }

    #[test]
    fn every_shipped_scenario_reads_and_names_its_errors() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../soak-tests");
        let mut found = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) == Some("yaml") {
                LoadedScenario::read(&path, None).unwrap();
                found += 1;
            }
        }
        assert!(found >= 3, "{found} scenarios in {}", dir.display());

        let bad = tempfile::tempdir().unwrap();
        let write = |text: &str| {
            let path = bad.path().join("bad.yaml");
            std::fs::write(&path, text).unwrap();
            std::fs::write(bad.path().join("shipper.yaml"), "{}").unwrap();
            LoadedScenario::read(&path, None).unwrap_err()
        };
        let base = "description: d\nconfig: shipper.yaml\nrate: 10\nfiles: 1\n";
        let err = write(&format!("{base}duration: soon\n"));
        assert!(
            err.contains("duration: \"soon\" is not a duration"),
            "{err}"
        );
        let err = write(&format!(
            "{base}duration: 10s\nreceiver: {{outages: [{{at: 1.5, lasts: 5s}}]}}\n"
        ));
        assert!(err.contains("receiver.outages[0].at"), "{err}");
        let err = write(&format!(
            "{base}duration: 10s\nrestart: {{every: 5s, signal: kill}}\n"
        ));
        assert!(err.contains("restart"), "{err}");
    }
}
