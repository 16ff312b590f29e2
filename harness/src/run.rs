//! One harness run: the receiver in this process, the shipper as its own process, the load on a
//! thread of its own, and the figures.
//!
//! What a run guarantees about its figures:
//! - `lost` is the count of numbers in `1..=lines_written` the receiver never stored, read after
//!   the shipper has shut down; `duplicated` the count of numbers stored more than once.
//! - CPU and peak RSS are the shipper's alone (its /proc entry), never the harness's or the
//!   receiver's; they are read before the shipper is stopped, so shutdown is not counted.
//! - The clock runs from the moment the load starts (rated profiles with files) or the shipper is
//!   spawned (`max`, whose lines are written before, and the generator, which starts with the
//!   shipper) to the moment the receiver holds every line.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::docker_load::DockerLoad;
use crate::load::{FileLoad, GeneratorLoad, LineShape, LoadSource};
use crate::procfs;
use crate::profile::Profile;
use crate::receiver::{ReceiverConfig, ReceiverHandle, serve};

/// Where the lines come from: `files[=N]`, `docker[=N]` or `generator`. Without `=N` the
/// profile's number of files (or containers) is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LoadKind {
    /// Files the harness writes and rotates; the shipper's file source reads them.
    Files(Option<usize>),
    /// Containers printing the lines; the shipper's docker source reads them (see
    /// [`crate::docker_load`]).
    Docker(Option<usize>),
    /// The shipper's own generator source (no files).
    Generator,
}

/// What the harness's receiver does with a push.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ReceiverMode {
    /// Answers as Loki 3.7 does: validates labels and limits, deduplicates, detects levels.
    Loki,
    /// Decodes and counts entries and sequence numbers only (`loki-receiver --count-only`):
    /// costs a fraction of `loki`, so the shipper, not the receiver, sets the pace of `max`.
    Count,
}

impl ReceiverMode {
    /// The mode a profile uses unless `--receiver` says otherwise: `count` for `max` (it
    /// measures the shipper's top speed), `loki` for the rated profiles.
    pub fn default_for(profile: &Profile) -> Self {
        if profile.rate.is_none() {
            Self::Count
        } else {
            Self::Loki
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Loki => "loki (validates, deduplicates and detects levels as Loki 3.7)",
            Self::Count => "count (decodes and counts only: the shipper's figures, not Loki's)",
        }
    }
}

impl LoadKind {
    /// The same kind with its count filled in from `profile` when not given.
    pub fn resolved(self, profile: &Profile) -> Self {
        match self {
            Self::Files(n) => Self::Files(Some(n.unwrap_or(profile.files))),
            Self::Docker(n) => Self::Docker(Some(n.unwrap_or(profile.files))),
            Self::Generator => Self::Generator,
        }
    }

    /// Whether the harness makes the lines (files, containers), not the shipper.
    pub fn harness_made(self) -> bool {
        !matches!(self, Self::Generator)
    }
}

impl std::fmt::Display for LoadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Files(None) => f.write_str("files"),
            Self::Files(Some(n)) => write!(f, "files={n}"),
            Self::Docker(None) => f.write_str("docker"),
            Self::Docker(Some(n)) => write!(f, "docker={n}"),
            Self::Generator => f.write_str("generator"),
        }
    }
}

impl std::str::FromStr for LoadKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (kind, count) = match text.split_once('=') {
            Some((kind, count)) => {
                let n = count.trim().parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    format!("`{text}`: the count after `=` must be a whole number of at least 1, e.g. {kind}=100")
                })?;
                (kind.trim(), Some(n))
            }
            None => (text.trim(), None),
        };
        match (kind, count) {
            ("files", n) => Ok(Self::Files(n)),
            ("docker", n) => Ok(Self::Docker(n)),
            ("generator", None) => Ok(Self::Generator),
            ("generator", Some(_)) => Err("`generator` takes no count".into()),
            _ => Err(format!(
                "unknown load `{text}`: use files, files=N, docker, docker=N or generator"
            )),
        }
    }
}

impl TryFrom<String> for LoadKind {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<LoadKind> for String {
    fn from(kind: LoadKind) -> Self {
        kind.to_string()
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub profile: Profile,
    /// The shipper's configuration (normally `configs/profiles/<profile>.yaml`).
    pub config: PathBuf,
    /// The `log-capturer` binary.
    pub shipper: PathBuf,
    pub load: LoadKind,
    /// The image the Docker load's containers run (busybox with `sh`, `cat` and `sleep`).
    pub docker_image: String,
    /// Where the run's temporary directory goes (default: the system's).
    pub work_dir: Option<PathBuf>,
    /// Keep the temporary directory (logs, config, shipper output) after the run.
    pub keep_work_dir: bool,
    /// How long to wait, after the load ends, for the last lines to arrive.
    pub drain_timeout: Duration,
    /// How long the receiver waits before answering each push (a slow Loki).
    pub loki_latency: Duration,
    /// What the receiver does with a push.
    pub receiver: ReceiverMode,
    /// `key=value` overrides passed to the shipper as `--set` (after the config file).
    pub sets: Vec<String>,
}

/// Latency figures in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// One second of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the clock started.
    pub t: f64,
    /// Lines the receiver stored in this interval, per second.
    pub lines_per_second: f64,
    /// The shipper's CPU in this interval, in percent of one core.
    pub cpu_percent: f64,
    pub rss_mib: f64,
    /// The fullest sink queue, `queue_size / queue_capacity` from the shipper's /metrics.
    #[serde(default)]
    pub queue_fill: f64,
    /// Latency of the lines stored in this second (zero when none were).
    pub latency_ms: LatencyMs,
}

/// The figures of one run (what `--json` writes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub profile: String,
    pub load: LoadKind,
    pub shipper: String,
    pub config: String,
    /// The `--set` overrides the shipper ran with.
    #[serde(default)]
    pub sets: Vec<String>,
    /// Lines per second asked for (`null` for `max`).
    pub target_rate: Option<u64>,
    pub lines_written: u64,
    /// Distinct numbered lines the receiver stored.
    pub lines_delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Whether every line arrived before the drain timeout.
    pub complete: bool,
    pub wall_seconds: f64,
    pub lines_per_second: f64,
    pub cpu_seconds: f64,
    pub cpu_seconds_per_million_lines: f64,
    pub cpu_percent_of_core: f64,
    pub peak_rss_mib: f64,
    /// The fullest a sink queue was at a sample (0..1): near 1, the sink is the bottleneck.
    #[serde(default)]
    pub peak_queue_fill: f64,
    /// Creation to storage in the receiver.
    pub latency_ms: LatencyMs,
    pub rotations: u64,
    /// How the shipper ended after SIGTERM (`exit status: 0` when it drained cleanly).
    pub shipper_exit: String,
    /// The receiver's delay before each answer (0 unless `--loki-latency`).
    #[serde(default)]
    pub loki_latency_ms: f64,
    /// What the receiver did with pushes (absent in reports written before it was recorded).
    #[serde(default)]
    pub receiver: Option<ReceiverMode>,
    pub samples: Vec<Sample>,
}

const MIB: f64 = (1u64 << 20) as f64;

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Reads a profile's config (YAML, TOML or JSON by extension) and points it at this run: the
/// load source, the receiver, a data directory and API port of its own.
pub fn prepare_config(
    path: &Path,
    load: &dyn LoadSource,
    data_dir: &Path,
    api_port: u16,
    endpoint: &str,
) -> Result<Value, String> {
    use figment::providers::{Format, Toml, Yaml};
    // YAML reads JSON too.
    let figment = match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => figment::Figment::from(Toml::file_exact(path)),
        _ => figment::Figment::from(Yaml::file_exact(path)),
    };
    let mut config: Value = figment
        .extract()
        .map_err(|err| format!("reading {}: {err}", path.display()))?;
    if config.pointer("/sources/load").is_none() {
        return Err(format!(
            "{}: a profile config needs a source called `load` (the harness points it at its load)",
            path.display()
        ));
    }
    if config.pointer("/sinks/loki/type") != Some(&json!("loki")) {
        return Err(format!(
            "{}: a profile config needs a sink `loki` of type loki (the harness points it at its receiver)",
            path.display()
        ));
    }
    if let Some(source) = config.pointer_mut("/sources/load") {
        load.configure_source(source);
    }
    config["data_dir"] = json!(data_dir);
    config["api"] = json!({ "listen": format!("127.0.0.1:{api_port}") });
    config["sinks"]["loki"]["endpoint"] = json!(endpoint);
    Ok(config)
}

pub(crate) fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|err| format!("finding a free port: {err}"))
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A receiver configured like Loki but without the per-tenant and per-stream rate limits, which
/// would measure the limits instead of the shipper.
pub(crate) fn receiver_config(latency: Duration, mode: ReceiverMode) -> ReceiverConfig {
    ReceiverConfig {
        latency,
        count_only: mode == ReceiverMode::Count,
        require_tenant: false,
        ingestion_rate_mb: 1_000_000.0,
        ingestion_burst_size_mb: 1_000_000.0,
        per_stream_rate_limit: 1 << 40,
        per_stream_rate_limit_burst: 1 << 40,
        ..ReceiverConfig::default()
    }
}

pub(crate) struct Shipper {
    child: Child,
    api: String,
    stderr: PathBuf,
}

impl Shipper {
    pub(crate) fn spawn(
        binary: &Path,
        config: &Path,
        sets: &[String],
        dir: &Path,
        api_port: u16,
    ) -> Result<Self, String> {
        // Appended to: a soak starts the shipper again in the same directory and keeps every
        // instance's output.
        let open = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(name))
                .map_err(|err| format!("creating {name} in {}: {err}", dir.display()))
        };
        let child = Command::new(binary)
            .arg("run")
            .arg("--config")
            .arg(config)
            .args(sets.iter().flat_map(|set| ["--set", set.as_str()]))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(open("shipper.stdout")?)
            .stderr(open("shipper.stderr")?)
            .spawn()
            .map_err(|err| format!("starting {}: {err}", binary.display()))?;
        Ok(Self {
            child,
            api: format!("http://127.0.0.1:{api_port}"),
            stderr: dir.join("shipper.stderr"),
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error with the end of its standard error if it has exited.
    pub(crate) fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "the shipper exited early ({status}); the end of its standard error:\n{}",
                tail(&self.stderr)
            )),
            Err(err) => Err(format!("waiting for the shipper: {err}")),
        }
    }

    pub(crate) async fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let url = format!("{}/ready", self.api);
        loop {
            self.check_alive()?;
            if let Ok((StatusCode::OK, _)) =
                log_capturer::client::request(Method::GET, &url, None).await
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the shipper was not ready after {limit:?}; the end of its standard error:\n{}",
                    tail(&self.stderr)
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The fullest sink queue now, from its /metrics.
    async fn queue_fill(&self) -> Option<f64> {
        let url = format!("{}/metrics", self.api);
        match log_capturer::client::request(Method::GET, &url, None).await {
            Ok((StatusCode::OK, text)) => parse_queue_fill(&text),
            _ => None,
        }
    }

    /// SIGKILL, as a crash or the OOM killer ends it, and its exit status.
    pub(crate) fn kill(mut self) -> String {
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(status) => status.to_string(),
            Err(err) => format!("waiting for the killed shipper: {err}"),
        }
    }

    /// SIGTERM, then SIGKILL if it has not drained within `limit`.
    pub(crate) async fn stop(mut self, limit: Duration) -> String {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill() with a valid signal has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.to_string(),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return format!("killed after not stopping within {limit:?}");
                }
            }
        }
    }
}

impl Drop for Shipper {
    /// A run that ends early (an error, Ctrl-C) leaves no shipper behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The largest `queue_size / queue_capacity` over the sinks in a Prometheus text exposition.
pub fn parse_queue_fill(text: &str) -> Option<f64> {
    let series = |name: &str| -> Vec<(String, f64)> {
        text.lines()
            .filter_map(|line| line.strip_prefix(name))
            .filter_map(|rest| {
                let (labels, value) = rest.rsplit_once(' ')?;
                Some((labels.to_string(), value.parse().ok()?))
            })
            .collect()
    };
    let capacities = series("log_capturer_queue_capacity");
    series("log_capturer_queue_size")
        .into_iter()
        .filter_map(|(labels, size)| {
            let (_, capacity) = capacities.iter().find(|(l, _)| *l == labels)?;
            (*capacity > 0.0).then(|| size / capacity)
        })
        .reduce(f64::max)
}

/// Paces a load source at `rate` lines/s for `duration` on a thread of its own.
pub(crate) fn spawn_writer(
    mut load: Box<dyn LoadSource>,
    rate: u64,
    duration: Duration,
    made: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<Box<dyn LoadSource>, String>> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let total = (rate as f64 * duration.as_secs_f64()) as u64;
        let result = loop {
            let elapsed = start.elapsed();
            let due = if elapsed >= duration {
                total
            } else {
                (rate as f64 * elapsed.as_secs_f64()) as u64
            };
            if let Err(err) = load.make_until(due) {
                break Err(format!("writing the load: {err}"));
            }
            made.store(load.made(), Ordering::Release);
            if due >= total {
                break Ok(());
            }
            // Pacing, not synchronisation: a tick of 5 ms bounds how bursty the load is.
            std::thread::sleep(Duration::from_millis(5));
        };
        done.store(true, Ordering::Release);
        result.map(|()| load)
    })
}

/// Runs one profile end to end and returns its figures.
pub async fn run(options: &RunOptions) -> Result<RunReport, String> {
    let profile = &options.profile;
    let prefix = format!("harness-{}-", profile.name);
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix);
    let work = match &options.work_dir {
        Some(dir) => builder.tempdir_in(dir),
        None => builder.tempdir(),
    }
    .map_err(|err| format!("creating a work directory: {err}"))?;
    let dir = work.path().to_path_buf();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|err| format!("binding the receiver: {err}"))?;
    let receiver = serve(
        receiver_config(options.loki_latency, options.receiver),
        listener,
    )
    .await
    .map_err(|err| format!("starting the receiver: {err}"))?;

    let shape = LineShape {
        line_bytes: profile.line_bytes,
        format: profile.line_format,
    };
    let total = match profile.rate {
        Some(rate) => (rate as f64 * profile.duration.as_secs_f64()) as u64,
        None => profile.prefill_lines,
    };
    let load_kind = options.load.resolved(profile);
    let mut load: Box<dyn LoadSource> = match load_kind {
        LoadKind::Files(n) => Box::new(
            FileLoad::new(
                &dir.join("logs"),
                n.unwrap_or(profile.files),
                shape,
                profile.rotate_bytes,
            )
            .map_err(|err| format!("creating the load files: {err}"))?,
        ),
        LoadKind::Docker(n) => Box::new(DockerLoad::start(
            &dir.join("fifos"),
            n.unwrap_or(profile.files),
            shape,
            &options.docker_image,
        )?),
        LoadKind::Generator => Box::new(GeneratorLoad {
            rate: profile.rate.unwrap_or(0),
            count: total,
            line_bytes: profile.line_bytes,
        }),
    };
    let api_port = free_port()?;
    let config = prepare_config(
        &options.config,
        load.as_ref(),
        &dir.join("data"),
        api_port,
        &receiver.base_url(),
    )?;
    let config_path = dir.join("config.yaml");
    let text = serde_json::to_string_pretty(&config).map_err(|err| err.to_string())?;
    std::fs::write(&config_path, text)
        .map_err(|err| format!("writing {}: {err}", config_path.display()))?;

    let made = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    if profile.rate.is_none() && load_kind.harness_made() {
        load.make_until(total)
            .map_err(|err| format!("writing the load: {err}"))?;
        load.settle(Duration::from_secs(600))?;
    }

    let spawned = Instant::now();
    let mut shipper = Shipper::spawn(
        &options.shipper,
        &config_path,
        &options.sets,
        &dir,
        api_port,
    )?;
    let result = measure(
        options,
        &receiver,
        &mut shipper,
        load,
        total,
        made,
        done,
        spawned,
    )
    .await;
    let exit = shipper.stop(Duration::from_secs(60)).await;
    // The load (containers) goes only after the shipper has stopped reading it.
    let result = result.map(|mut measured| {
        drop(measured.load.take());
        measured
    });
    let final_stats = receiver.stats();
    let series = receiver.latency_series();
    receiver.shutdown().await;
    if options.keep_work_dir {
        let kept = work.keep();
        eprintln!("work directory kept: {}", kept.display());
    }
    let mut measured = result?;

    let delivered = final_stats.sequences.seen;
    let wall = measured.wall.as_secs_f64().max(1e-9);
    for sample in &mut measured.samples {
        let second = sample.t.ceil() as usize;
        if let Some(s) = series.get(second.saturating_sub(1)) {
            sample.latency_ms = LatencyMs {
                p50: ms(s.latency.p50_us),
                p99: ms(s.latency.p99_us),
                max: ms(s.latency.max_us),
            };
        }
    }
    Ok(RunReport {
        profile: profile.name.to_string(),
        load: load_kind,
        shipper: options.shipper.display().to_string(),
        config: options.config.display().to_string(),
        sets: options.sets.clone(),
        target_rate: profile.rate,
        lines_written: measured.written,
        lines_delivered: delivered,
        lost: measured.written.saturating_sub(delivered),
        duplicated: final_stats.sequences.duplicated,
        complete: measured.complete,
        wall_seconds: wall,
        lines_per_second: measured.delivered_at_end as f64 / wall,
        cpu_seconds: measured.cpu_seconds,
        cpu_seconds_per_million_lines: measured.cpu_seconds
            / (measured.delivered_at_end.max(1) as f64 / 1e6),
        cpu_percent_of_core: measured.cpu_seconds / wall * 100.0,
        peak_rss_mib: measured.peak_rss as f64 / MIB,
        peak_queue_fill: measured
            .samples
            .iter()
            .map(|s| s.queue_fill)
            .fold(0.0, f64::max),
        latency_ms: LatencyMs {
            p50: ms(final_stats.latency.p50_us),
            p99: ms(final_stats.latency.p99_us),
            max: ms(final_stats.latency.max_us),
        },
        rotations: measured.rotations,
        shipper_exit: exit,
        loki_latency_ms: options.loki_latency.as_secs_f64() * 1000.0,
        receiver: Some(options.receiver),
        samples: measured.samples,
    })
}

struct Measured {
    written: u64,
    delivered_at_end: u64,
    complete: bool,
    wall: Duration,
    cpu_seconds: f64,
    peak_rss: u64,
    rotations: u64,
    samples: Vec<Sample>,
    /// The load, kept until the shipper has stopped.
    load: Option<Box<dyn LoadSource>>,
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    options: &RunOptions,
    receiver: &ReceiverHandle,
    shipper: &mut Shipper,
    load: Box<dyn LoadSource>,
    total: u64,
    made: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    spawned: Instant,
) -> Result<Measured, String> {
    let profile = &options.profile;
    let pid = shipper.pid();
    shipper.wait_ready(Duration::from_secs(60)).await?;
    // Rated profiles with files time the load; `max` (lines already written) and the generator
    // time the shipper from its spawn, start-up included.
    let (start, cpu_at_start, writer, mut kept) = match profile.rate {
        Some(rate) if options.load.harness_made() => {
            receiver.reset_stats();
            let cpu = procfs::cpu_seconds(pid).map_err(|e| format!("reading /proc: {e}"))?;
            let writer = spawn_writer(load, rate, profile.duration, made.clone(), done.clone());
            (Instant::now(), cpu, Some(writer), None)
        }
        // The generator starts with the shipper: its clock and counts start at the spawn too.
        _ => {
            made.store(load.made(), Ordering::Release);
            done.store(true, Ordering::Release);
            (spawned, 0.0, None, Some(load))
        }
    };

    let mut samples = Vec::new();
    let mut last = (start, cpu_at_start, receiver.stats().stored_entries);
    let mut drain_deadline: Option<Instant> = None;
    let mut next_sample = start + Duration::from_secs(1);
    let complete = loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        shipper.check_alive()?;
        let now = Instant::now();
        let stats = receiver.stats();
        let loaded = done.load(Ordering::Acquire);
        if loaded && stats.sequences.seen >= total {
            break true;
        }
        if now >= next_sample {
            let cpu = procfs::cpu_seconds(pid).map_err(|e| format!("reading /proc: {e}"))?;
            let memory = procfs::memory(pid).map_err(|e| format!("reading /proc: {e}"))?;
            let dt = now.duration_since(last.0).as_secs_f64().max(1e-9);
            samples.push(Sample {
                t: now.duration_since(start).as_secs_f64(),
                lines_per_second: stats.stored_entries.saturating_sub(last.2) as f64 / dt,
                cpu_percent: (cpu - last.1) / dt * 100.0,
                rss_mib: memory.rss as f64 / MIB,
                queue_fill: shipper.queue_fill().await.unwrap_or(0.0),
                latency_ms: LatencyMs::default(),
            });
            last = (now, cpu, stats.stored_entries);
            next_sample += Duration::from_secs(1);
        }
        if loaded {
            let deadline = *drain_deadline.get_or_insert(now + options.drain_timeout);
            if now >= deadline {
                break false;
            }
        }
    };
    let wall = start.elapsed();
    let cpu = procfs::cpu_seconds(pid).map_err(|e| format!("reading /proc: {e}"))?;
    let memory = procfs::memory(pid).map_err(|e| format!("reading /proc: {e}"))?;
    let delivered_at_end = receiver.stats().sequences.seen;
    if let Some(handle) = writer {
        let load = handle
            .join()
            .map_err(|_| "the load writer panicked".to_string())??;
        kept = Some(load);
    }
    let rotations = kept.as_ref().map_or(0, |load| load.rotations());
    Ok(Measured {
        written: made.load(Ordering::Acquire),
        delivered_at_end,
        complete,
        wall,
        cpu_seconds: cpu - cpu_at_start,
        peak_rss: memory.peak_rss,
        rotations,
        samples,
        load: kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_fill_is_the_fullest_sinks() {
        let text = "# TYPE log_capturer_queue_size gauge\n\
            log_capturer_queue_size{sink=\"a\"} 50\n\
            log_capturer_queue_size{sink=\"b\"} 900\n\
            log_capturer_queue_capacity{sink=\"a\"} 100\n\
            log_capturer_queue_capacity{sink=\"b\"} 1000\n";
        assert_eq!(parse_queue_fill(text), Some(0.9));
        assert_eq!(parse_queue_fill("nothing"), None);
    }

    #[test]
    fn load_kinds_parse_show_and_resolve_their_counts() {
        let standard = crate::profile::find("standard").unwrap();
        for (text, kind) in [
            ("files", LoadKind::Files(None)),
            ("files=1000", LoadKind::Files(Some(1000))),
            ("docker", LoadKind::Docker(None)),
            ("docker=100", LoadKind::Docker(Some(100))),
            ("generator", LoadKind::Generator),
        ] {
            assert_eq!(text.parse::<LoadKind>().unwrap(), kind);
            assert_eq!(kind.to_string(), text);
        }
        assert_eq!(
            LoadKind::Docker(None).resolved(&standard),
            LoadKind::Docker(Some(standard.files))
        );
        assert!(
            "files=0"
                .parse::<LoadKind>()
                .unwrap_err()
                .contains("at least 1, e.g. files=100")
        );
        assert!(
            "dockr"
                .parse::<LoadKind>()
                .unwrap_err()
                .contains("use files, files=N, docker, docker=N or generator")
        );
        assert!("generator=2".parse::<LoadKind>().is_err());
        // Reports keep the kind as text.
        let json = serde_json::to_string(&LoadKind::Files(Some(10))).unwrap();
        assert_eq!(json, "\"files=10\"");
        assert_eq!(
            serde_json::from_str::<LoadKind>("\"files\"").unwrap(),
            LoadKind::Files(None)
        );
    }
}
