//! The command line: `run` (the default), `validate`, `test`, `health`, `top`, `tap`, `positions`, `dlq`; one module per command family beside this one.

mod dlq;
pub mod health;
pub mod metrics_text;
mod positions;
pub mod tap;
mod test;
pub mod top;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, ConfigSource};

/// A log shipper: files and containers to Grafana Loki, at-least-once.
#[derive(Debug, Parser)]
#[command(name = "log-capturer", version, about)]
pub struct Cli {
    /// Configuration file (.yaml, .yml or .toml). Without it, the embedded default runs.
    #[arg(short, long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override one key, e.g. --set dispatcher.batch_size=200 (repeatable; the value is YAML).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline until SIGTERM or SIGINT (the default command).
    Run,
    /// Check the configuration; exit 0 when valid, 1 with every error otherwise.
    Validate {
        /// Print the resolved, typed configuration: every setting with its default, secrets
        /// redacted.
        #[arg(long)]
        print: bool,
    },
    /// Run the configuration's `tests:` through their stages, in process; exit 0 when all
    /// pass, 1 with every mismatch otherwise.
    Test,
    /// Show, restore or reset the file sources' saved positions.
    Positions {
        #[command(subcommand)]
        action: PositionsAction,
        /// The data directory; by default the configuration's data_dir.
        #[arg(long, global = true, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Only this source (by default: every source with saved positions).
        #[arg(long, global = true, value_name = "NAME")]
        source: Option<String>,
    },
    /// Inspect, replay or purge the sinks' dead-letter queues.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
        /// The data directory; by default the configuration's data_dir.
        #[arg(long, global = true, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Only this sink (by default: every sink with a dead-letter queue).
        #[arg(long, global = true, value_name = "NAME")]
        sink: Option<String>,
    },
    /// Check a running instance: API, every component, queues, error and loss rates,
    /// positions, dead-letter queues, dedup, timestamps, descriptors, memory. Prints a table;
    /// exit 0 when every check is ok, 1 on a warning, 2 on a critical check (named on the
    /// last line). Thresholds: docs/runbook.md.
    Health {
        /// The API's base URL; by default taken from the configuration's api.listen.
        #[arg(long)]
        url: Option<String>,
        /// Bearer token for GET /dlq (the dead-letter age); by default api.token.
        #[arg(long)]
        token: Option<String>,
        /// Time between the two scrapes of /metrics that rates are measured over.
        #[arg(long, default_value = "2s", value_parser = parse_interval)]
        interval: std::time::Duration,
        /// Also write the report as JSON to FILE.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// A live view of a running instance: per component, events in and out per second,
    /// errors, drops, queue fill and send latency, refreshed every --interval (Ctrl-C quits).
    Top {
        /// The API's base URL; by default taken from the configuration's api.listen.
        #[arg(long)]
        url: Option<String>,
        /// Bearer token for GET /config (each component's inputs); by default api.token.
        #[arg(long)]
        token: Option<String>,
        /// Time between frames (and between the two scrapes of the first).
        #[arg(long, default_value = "1s", value_parser = parse_interval)]
        interval: std::time::Duration,
        /// Print one frame and exit.
        #[arg(long)]
        once: bool,
    },
    /// Print a sample of the events leaving a source or transform of a running instance, as
    /// JSON lines (component, timestamp, line, labels, source), until --limit were printed.
    Tap {
        /// The source or transform to tap.
        component: String,
        /// The API's base URL; by default taken from the configuration's api.listen.
        #[arg(long)]
        url: Option<String>,
        /// Bearer token (needed when the API has api.token); by default api.token.
        #[arg(long)]
        token: Option<String>,
        /// Events to print before exiting (1 to 1000000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        limit: u64,
        /// Share of the events to keep, above 0 and at most 1 (0.1: one event in ten).
        #[arg(long, default_value_t = 1.0, value_parser = parse_sample_rate)]
        sample_rate: f64,
    },
}

#[derive(Debug, Subcommand)]
pub enum PositionsAction {
    /// Print each source's positions (offsets per file) and its checkpoints.
    Show,
    /// Replace the positions with checkpoint generation N (0 newest, 2 oldest). Refuses while
    /// an instance runs on the data directory; keeps the replaced file as <source>.json.bak.
    Restore {
        #[arg(long, value_name = "N")]
        generation: usize,
    },
    /// Forget the positions (files are read again as read_from says). Refuses while an
    /// instance runs; keeps a .bak.
    Reset,
}

#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// Records, entries, bytes and age per sink.
    Stats,
    /// Print queued records (oldest first) as JSON lines.
    Inspect {
        /// Most records to print.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print the records refused for good (replayed max_replays times, kept in the
        /// archive with Loki's last answer) instead of the queued ones.
        #[arg(long)]
        refused: bool,
    },
    /// Ask the running instance to replay its queues now (POST /dlq/reprocess).
    Reprocess {
        /// The API's base URL; by default taken from the configuration's api.listen.
        #[arg(long)]
        url: Option<String>,
        /// Bearer token for the API (or LOG_CAPTURER_API__TOKEN).
        #[arg(long)]
        token: Option<String>,
    },
    /// Delete every queued record. Refuses while an instance runs on the data directory.
    Purge,
}

impl Cli {
    fn source(&self) -> ConfigSource {
        ConfigSource {
            file: self.config.clone(),
            sets: self.set.clone(),
            use_env: true,
        }
    }
}

/// Parses the arguments and runs the chosen command.
pub fn main() -> ExitCode {
    // Before any thread starts: see the module's notes.
    log_capturer_components::memory::use_one_malloc_arena();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("log-capturer")
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let source = cli.source();
    if !matches!(cli.command, None | Some(Command::Run)) {
        // The one-shot commands print reports: `log-capturer positions show | head` should end
        // quietly when the pipe closes, as any Unix tool does. `run` keeps Rust's default
        // (SIGPIPE ignored) so a closed stdout is an error its console sink handles.
        // SAFETY: setting a signal's disposition to its default has no memory effects.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cli.command {
        None | Some(Command::Run) => runtime.block_on(crate::app::run(source)),
        Some(Command::Validate { print }) => validate(&source, print),
        Some(Command::Test) => test::run(&source, &runtime),
        Some(Command::Health {
            url,
            token,
            interval,
            output,
        }) => runtime.block_on(health::run(
            &source,
            health::HealthArgs {
                url,
                token,
                interval,
                output,
            },
        )),
        Some(Command::Top {
            url,
            token,
            interval,
            once,
        }) => runtime.block_on(top::run(
            &source,
            top::TopArgs {
                url,
                token,
                interval,
                once,
            },
        )),
        Some(Command::Tap {
            component,
            url,
            token,
            limit,
            sample_rate,
        }) => runtime.block_on(tap::run(
            &source,
            tap::TapArgs {
                component,
                url,
                token,
                limit,
                sample_rate,
            },
        )),
        Some(Command::Dlq {
            action,
            data_dir,
            sink,
        }) => runtime.block_on(dlq::run(&source, action, data_dir, sink)),
        Some(Command::Positions {
            action,
            data_dir,
            source: only,
        }) => positions::run(&source, action, data_dir, only),
    }
}

fn validate(source: &ConfigSource, print: bool) -> ExitCode {
    match config::load(source) {
        Ok(config) => {
            if print {
                match serde_json::to_string_pretty(&config.shown()) {
                    Ok(text) => println!("{text}"),
                    Err(err) => eprintln!("cannot print the configuration: {err}"),
                }
            }
            for warning in &config.warnings {
                eprintln!("warning: {warning}");
            }
            eprintln!(
                "Configuration valid: {} source(s), {} transform(s), {} sink(s), {} test(s).",
                config.sources.len(),
                config.transforms.len(),
                config.sinks.len(),
                config.tests.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{errors}");
            ExitCode::FAILURE
        }
    }
}

/// A share above 0 and at most 1.
fn parse_sample_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate <= 1.0 => Ok(rate),
        _ => Err("give a number above 0 and at most 1, e.g. 0.1 for one event in ten".into()),
    }
}

/// A positive duration in humantime form (`500ms`, `2s`), for rate intervals.
fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let interval = humantime::parse_duration(text)
        .map_err(|err| format!("{err} (write it like 2s or 500ms)"))?;
    if interval.is_zero() {
        return Err("must be more than 0 (rates need two scrapes apart), e.g. 2s".into());
    }
    Ok(interval)
}

/// The API's base URL: `url` if given, else the configuration's `api.listen`.
pub fn api_base(url: Option<String>, config: Option<&config::Config>) -> String {
    let base = url.unwrap_or_else(|| {
        let listen = config.map_or_else(
            || config::ApiConfig::default().listen,
            |c| c.root.api.listen,
        );
        format!("http://{listen}")
    });
    base.trim_end_matches('/').to_string()
}

/// Where a client command (`health`, `top`, `tap`) finds the running instance: its API's base
/// URL ([`api_base`]) and the bearer token, `token` if given, else the configuration's
/// `api.token`. A configuration that does not load leaves the defaults (the API may still answer).
pub fn api_target(
    source: &ConfigSource,
    url: Option<String>,
    token: Option<String>,
) -> (String, Option<String>) {
    let config = config::load(source).ok();
    let base = api_base(url, config.as_ref());
    let token = token.or_else(|| {
        config
            .as_ref()?
            .api_token
            .as_ref()
            .map(|t| t.expose().to_string())
    });
    (base, token)
}

/// Calls the running instance's API, prints the answer; exit 0 on a 2xx.
pub async fn print_api_answer(
    method: http::Method,
    url: &str,
    bearer: Option<&str>,
    hint: &str,
) -> ExitCode {
    match crate::client::request(method, url, bearer).await {
        Ok((status, body)) => {
            println!("{body}");
            exit_code(status.is_success())
        }
        Err(err) => {
            eprintln!("{err} (hint: {hint})");
            ExitCode::FAILURE
        }
    }
}

/// 0 for success, 1 otherwise.
pub fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
