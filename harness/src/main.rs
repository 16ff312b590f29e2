//! `harness`: runs log-capturer under a load profile against the Loki-compatible receiver and
//! reports rate, CPU, memory, latency, lost and duplicated lines. See docs/tuning-guide.md.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use log_capturer_harness::docker_load;
use log_capturer_harness::profile::{self, PROFILES, Profile};
use log_capturer_harness::report;
use log_capturer_harness::run::{LoadKind, ReceiverMode, RunOptions, RunReport, run};
use log_capturer_harness::soak;

#[derive(Parser, Debug)]
#[command(name = "harness", version, about = "Load profiles for log-capturer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs one profile and prints its figures; exits 1 if a line was lost.
    Run {
        #[command(flatten)]
        common: Common,
        /// The shipper's config (default: configs/profiles/<profile>.yaml).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Runs of the profile; with more than one, the medians are printed at the end.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
    },
    /// Runs a profile against two builds or two configs, alternately, and prints the medians and
    /// their ratio B/A.
    Compare {
        #[command(flatten)]
        common: Common,
        /// Side A's config (default: configs/profiles/<profile>.yaml).
        #[arg(long, value_name = "FILE")]
        config_a: Option<PathBuf>,
        /// Side B's config (default: configs/profiles/<profile>.yaml).
        #[arg(long, value_name = "FILE")]
        config_b: Option<PathBuf>,
        /// Side A's binary (default: --shipper).
        #[arg(long, value_name = "FILE")]
        shipper_a: Option<PathBuf>,
        /// Side B's binary (default: --shipper).
        #[arg(long, value_name = "FILE")]
        shipper_b: Option<PathBuf>,
        /// An override for side A only (after --set), e.g. sinks.loki.dispatcher.worker_count=1.
        #[arg(long, value_name = "KEY=VALUE")]
        set_a: Vec<String>,
        /// An override for side B only (after --set).
        #[arg(long, value_name = "KEY=VALUE")]
        set_b: Vec<String>,
        /// Runs of each side (A B A B ...).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Runs soak scenarios (soak-tests/*.yaml): a steady load for minutes while Loki fails,
    /// files rotate and the shipper is killed or stopped and started again, then checks that
    /// nothing was lost, corrupted or (beyond what each restart allows) duplicated; exits 1 if a
    /// scenario failed.
    Soak {
        /// Scenario files (default: every soak-tests/*.yaml of the workspace).
        scenarios: Vec<PathBuf>,
        /// How long each load runs instead of the scenario's, e.g. 60s (outages keep their
        /// place as a fraction of it).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// The log-capturer binary (default: the one next to this executable, which `cargo
        /// run` builds first).
        #[arg(long, value_name = "FILE")]
        shipper: Option<PathBuf>,
        /// Where each scenario's temporary directory goes (default: the system's).
        #[arg(long, value_name = "DIR")]
        work_dir: Option<PathBuf>,
        /// Keep every scenario's directory (a failed scenario's is always kept).
        #[arg(long)]
        keep: bool,
    },
    /// Lists the profiles.
    Profiles,
}

#[derive(Args, Debug)]
struct Common {
    /// low, standard, high, low-latency, max, max-pipeline or many-files.
    #[arg(long, default_value = "standard")]
    profile: String,
    /// Where the lines come from: `files` (rotating files), `files=N` (the same total rate
    /// over N files), `docker` or `docker=N` (containers printing the lines, read through the
    /// shipper's docker source; N defaults to the profile's file count), `generator` (the
    /// shipper's own generator source).
    #[arg(long, default_value = "files", value_parser = parse_load)]
    load: LoadKind,
    /// The image the Docker load's containers run (busybox with sh, cat and sleep).
    #[arg(long, value_name = "IMAGE", default_value = docker_load::DEFAULT_IMAGE)]
    docker_image: String,
    /// Lines per second instead of the profile's (rated profiles).
    #[arg(long)]
    rate: Option<u64>,
    /// How long the load runs instead of the profile's, e.g. 10s.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Lines `max` writes beforehand instead of the profile's.
    #[arg(long)]
    lines: Option<u64>,
    /// Bytes per line (newline included) instead of the profile's 100, e.g. 1000.
    #[arg(long, value_parser = clap::value_parser!(u64).range(64..=1_048_576))]
    line_bytes: Option<u64>,
    /// What the lines look like instead of the profile's: `text`, or `json` (an application's
    /// JSON log object with `ts`, `level`, `service`, `msg`).
    #[arg(long, value_enum)]
    line_format: Option<log_capturer_harness::load::LineFormat>,
    /// How long to wait for the last lines after the load ends.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// The receiver waits this long before answering each push: a slow Loki.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    loki_latency: Duration,
    /// What the receiver does with pushes: `loki` validates as Loki 3.7 does, `count` decodes
    /// and counts only. Default: `count` for `max`, `loki` for the rated profiles.
    #[arg(long, value_enum)]
    receiver: Option<ReceiverMode>,
    /// Where the JSON and SVG go (default: target/harness in the workspace).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Where the run's temporary directory goes (default: the system's).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Keep the temporary directory (logs, config, shipper output).
    #[arg(long)]
    keep: bool,
    /// Overrides one key of the shipper's config, e.g. dispatcher.batch_size=200 (passed to it as
    /// `--set`; the value is YAML). Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// The log-capturer binary (default: the one next to this executable, which `cargo run`
    /// builds first).
    #[arg(long, value_name = "FILE")]
    shipper: Option<PathBuf>,
}

fn parse_load(text: &str) -> Result<LoadKind, String> {
    text.parse()
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

impl Common {
    fn profile(&self) -> Result<Profile, String> {
        let mut profile = profile::find(&self.profile)?;
        if let Some(rate) = self.rate {
            if profile.rate.is_none() {
                return Err("--rate applies to rated profiles; `max` takes --lines".into());
            }
            profile.rate = Some(rate.max(1));
        }
        if let Some(duration) = self.duration {
            profile.duration = duration;
        }
        if let Some(lines) = self.lines {
            profile.prefill_lines = lines.max(1);
        }
        if let Some(bytes) = self.line_bytes {
            profile.line_bytes = usize::try_from(bytes).map_err(|e| e.to_string())?;
        }
        if let Some(format) = self.line_format {
            profile.line_format = format;
        }
        Ok(profile)
    }

    fn options(&self, config: Option<&Path>, shipper: &Path) -> Result<RunOptions, String> {
        let profile = self.profile()?;
        let config = match config {
            Some(path) => path.to_path_buf(),
            None => {
                let relative = PathBuf::from(format!("configs/profiles/{}.yaml", profile.name));
                let in_workspace = workspace_root().join(&relative);
                if in_workspace.is_file() {
                    in_workspace
                } else {
                    relative
                }
            }
        };
        if !config.is_file() {
            return Err(format!(
                "{} does not exist; pass --config FILE",
                config.display()
            ));
        }
        let receiver = self
            .receiver
            .unwrap_or_else(|| ReceiverMode::default_for(&profile));
        Ok(RunOptions {
            profile,
            config,
            shipper: shipper.to_path_buf(),
            load: self.load,
            docker_image: self.docker_image.clone(),
            work_dir: self.work_dir.clone(),
            keep_work_dir: self.keep,
            drain_timeout: self.drain_timeout,
            loki_latency: self.loki_latency,
            receiver,
            sets: self.sets.clone(),
        })
    }

    fn out_dir(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| workspace_root().join("target/harness"))
    }
}

/// The `log-capturer` binary: the one given, or the one next to this executable, which cargo
/// builds first (with this executable's profile) when the harness was started by `cargo run`.
fn locate_shipper(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(format!("--shipper {} does not exist", path.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|err| format!("finding this executable: {err}"))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let shipper = dir.join("log-capturer");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
        let mut command = std::process::Command::new(cargo);
        command.current_dir(workspace_root()).args([
            "build",
            "--quiet",
            "-p",
            "log-capturer",
            "--bin",
            "log-capturer",
        ]);
        match profile {
            "debug" => {}
            "release" => {
                command.arg("--release");
            }
            other => {
                command.args(["--profile", other]);
            }
        }
        eprintln!("building log-capturer ({profile}) ...");
        let status = command
            .status()
            .map_err(|err| format!("running cargo build: {err}"))?;
        if !status.success() {
            return Err(format!("cargo build of log-capturer failed ({status})"));
        }
    }
    if shipper.is_file() {
        Ok(shipper)
    } else {
        Err(format!(
            "{} does not exist: build it with `cargo build --release -p log-capturer` or pass --shipper FILE",
            shipper.display()
        ))
    }
}

fn stamp() -> String {
    let now = std::time::SystemTime::now();
    humantime::format_rfc3339_seconds(now)
        .to_string()
        .replace(':', "")
}

async fn run_one(options: &RunOptions, common: &Common, name: &str) -> Result<RunReport, String> {
    eprintln!(
        "running profile {} ({}) with {} ...",
        options.profile.name,
        options.profile.summary,
        options.config.display()
    );
    let report = run(options).await?;
    print!("{}", report::table(&report));
    let stem = format!("{name}-{}", stamp());
    for path in report::write_files(&report, &common.out_dir(), &stem)? {
        println!("{:<18} {}", "wrote", path.display());
    }
    Ok(report)
}

async fn main_async(cli: Cli) -> Result<bool, String> {
    match cli.command {
        Command::Profiles => {
            for p in PROFILES {
                println!("{:<12} {}", p.name, p.summary);
            }
            Ok(true)
        }
        Command::Soak {
            scenarios,
            duration,
            shipper,
            work_dir,
            keep,
        } => {
            let shipper = locate_shipper(shipper.as_deref())?;
            let scenarios = if scenarios.is_empty() {
                default_scenarios()?
            } else {
                scenarios
            };
            let loaded = scenarios
                .iter()
                .map(|path| soak::LoadedScenario::read(path, duration))
                .collect::<Result<Vec<_>, String>>()?;
            let mut passed = true;
            for scenario in &loaded {
                if scenario.scenario.load == soak::SoakLoad::Docker {
                    let image = scenario
                        .scenario
                        .docker_image
                        .as_deref()
                        .unwrap_or(docker_load::DEFAULT_IMAGE);
                    if let Err(err) = docker_load::check_engine(image) {
                        // As the Docker tests do: a note on a developer's machine, a failure in CI.
                        if std::env::var_os("CI").is_some() {
                            return Err(err);
                        }
                        eprintln!("soak {}: skipped: {err}", scenario.name);
                        continue;
                    }
                }
                eprintln!(
                    "soak {}: {} ({:?} of load)",
                    scenario.name, scenario.scenario.description, scenario.duration
                );
                let report = soak::soak(scenario, &shipper, work_dir.as_deref(), keep).await?;
                print!("{}", report.table());
                println!();
                passed &= report.failures.is_empty();
            }
            Ok(passed)
        }
        Command::Run {
            common,
            config,
            repeat,
        } => {
            let shipper = locate_shipper(common.shipper.as_deref())?;
            let options = common.options(config.as_deref(), &shipper)?;
            let mut reports = Vec::new();
            for _ in 0..repeat.max(1) {
                reports.push(run_one(&options, &common, options.profile.name).await?);
            }
            if reports.len() > 1 {
                println!();
                print!("{}", report::median_table(&reports));
            }
            Ok(reports.iter().all(|r| r.lost == 0 && r.complete))
        }
        Command::Compare {
            common,
            config_a,
            config_b,
            shipper_a,
            shipper_b,
            set_a,
            set_b,
            rounds,
        } => {
            let default = if shipper_a.is_none() || shipper_b.is_none() {
                Some(locate_shipper(common.shipper.as_deref())?)
            } else {
                None
            };
            let pick = |explicit: Option<PathBuf>| -> Result<PathBuf, String> {
                match explicit {
                    Some(path) => locate_shipper(Some(&path)),
                    None => default.clone().ok_or_else(|| "no shipper".to_string()),
                }
            };
            // Fresh copies of both binaries, so that their pages stand alike in the page cache:
            // the same binary shows up to 1 MiB more resident code when just written than when
            // written long ago (the kernel maps the pages around each fault that it holds).
            let copies = tempfile::tempdir()
                .map_err(|err| format!("a directory for the binaries: {err}"))?;
            let (original_a, original_b) = (pick(shipper_a)?, pick(shipper_b)?);
            let mut a = common.options(
                config_a.as_deref(),
                &fresh_copy(&original_a, &copies.path().join("a"))?,
            )?;
            let mut b = common.options(
                config_b.as_deref(),
                &fresh_copy(&original_b, &copies.path().join("b"))?,
            )?;
            a.sets.extend(set_a);
            b.sets.extend(set_b);
            for (side, original, options) in [("A", &original_a, &a), ("B", &original_b, &b)] {
                println!(
                    "{side}: {} (a fresh copy) with {} {}",
                    original.display(),
                    options.config.display(),
                    options.sets.join(" ")
                );
            }
            let (mut runs_a, mut runs_b) = (Vec::new(), Vec::new());
            for round in 1..=rounds.max(1) {
                let name = format!("{}-compare", a.profile.name);
                eprintln!("round {round}: A");
                runs_a.push(run_one(&a, &common, &format!("{name}-a{round}")).await?);
                eprintln!("round {round}: B");
                runs_b.push(run_one(&b, &common, &format!("{name}-b{round}")).await?);
            }
            println!();
            print!("{}", report::compare_table(&runs_a, &runs_b));
            Ok(runs_a
                .iter()
                .chain(&runs_b)
                .all(|r| r.lost == 0 && r.complete))
        }
    }
}

/// Every `soak-tests/*.yaml` of the workspace, in name order.
fn default_scenarios() -> Result<Vec<PathBuf>, String> {
    let dir = workspace_root().join("soak-tests");
    let entries =
        std::fs::read_dir(&dir).map_err(|err| format!("reading {}: {err}", dir.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().and_then(|e| e.to_str()) == Some("yaml"))
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(format!("no scenario (*.yaml) in {}", dir.display()));
    }
    Ok(found)
}

/// Copies the binary `shipper` into `dir` (created), under its own file name.
fn fresh_copy(shipper: &Path, dir: &Path) -> Result<PathBuf, String> {
    let name = shipper
        .file_name()
        .ok_or_else(|| format!("{}: not a file", shipper.display()))?;
    std::fs::create_dir_all(dir).map_err(|err| format!("creating {}: {err}", dir.display()))?;
    let copy = dir.join(name);
    std::fs::copy(shipper, &copy)
        .map_err(|err| format!("copying {} to {}: {err}", shipper.display(), copy.display()))?;
    Ok(copy)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: starting the runtime: {err}");
            return ExitCode::from(2);
        }
    };
    // Ctrl-C ends the run (the shipper and the receiver with it) and removes the containers
    // of a Docker load, which would otherwise outlive the harness.
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = main_async(cli) => outcome,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
        }
    });
    // Tasks, and a load writer's thread, may still hold a run's parts: the containers go
    // whatever they hold.
    runtime.shutdown_timeout(Duration::from_secs(5));
    docker_load::remove_all();
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!(
                "FAILED: lines were lost or did not arrive, or a soak check failed (see the table)"
            );
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}
