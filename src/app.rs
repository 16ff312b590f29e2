//! The running program: start-up, signals, reload and shutdown.
//!
//! Guarantees:
//! - Nothing starts unless the whole configuration is valid and every component builds; the
//!   errors are printed, all of them, and the exit code is 1.
//! - SIGHUP and `POST /config/reload` re-read the same configuration sources. An invalid
//!   configuration changes nothing and is answered with every error. A valid one has its
//!   hot-reloadable keys applied at once; the other changed keys are named as needing a restart
//!   and the running pipeline keeps their old values (`GET /config` shows what runs).
//! - SIGTERM and SIGINT stop the sources and drain the pipeline within `shutdown_timeout`:
//!   exit code 0 when it drained, 1 when the limit passed first.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use log_capturer_components::telemetry::HealthRegistry;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::api;
use crate::config::{self, Config, ConfigErrors, ConfigSource, ReloadPlan};
use crate::telemetry::{ConfigReloadRefused, ConfigReloaded, Telemetry, init_logging};
use crate::topology::{self, ShutdownOutcome, TopologyControls};
use log_capturer_components::telemetry::TelemetryEvent;

/// State shared by the signal handlers and the API.
pub struct App {
    source: ConfigSource,
    config: RwLock<Arc<Config>>,
    controls: Arc<TopologyControls>,
    pub health: HealthRegistry,
    pub telemetry: Arc<Telemetry>,
    ready: AtomicBool,
    reload_lock: tokio::sync::Mutex<()>,
}

/// What a reload did.
#[derive(Clone, Debug, Serialize)]
pub struct ReloadReport {
    /// `applied`, `restart_required` (some keys need a restart) or `unchanged`.
    pub status: &'static str,
    #[serde(flatten)]
    pub plan: ReloadPlan,
    pub message: String,
}

impl App {
    /// The running configuration.
    pub fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The running sinks' dead-letter queues.
    pub fn dlqs(&self) -> &BTreeMap<String, log_capturer_components::dlq::SinkDlq> {
        &self.controls.dlqs
    }

    /// The tap points of the running sources and transforms.
    pub fn taps(&self) -> &crate::tap::Taps {
        &self.controls.taps
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Re-reads the configuration and applies what can change live.
    pub async fn reload(&self) -> Result<ReloadReport, ConfigErrors> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let result = self.reload_inner();
        match &result {
            Ok(report) => ConfigReloaded { report }.emit(),
            Err(errors) => ConfigReloadRefused { errors }.emit(),
        }
        result
    }

    fn reload_inner(&self) -> Result<ReloadReport, ConfigErrors> {
        let next = config::load(&self.source)?;
        log_warnings(&next);
        let running = self.config();
        let plan = config::plan_reload(&running.raw, &next.raw);
        if !plan.applied.is_empty() {
            let effective = config::validate(config::apply_plan(&running.raw, &next.raw, &plan))?;
            let settings: BTreeMap<_, _> = effective
                .sinks
                .iter()
                .map(|(name, sink)| (name.clone(), sink.dispatcher.clone()))
                .collect();
            self.controls.update_dispatchers(&settings);
            let transforms: BTreeMap<_, _> = effective
                .transforms
                .iter()
                .map(|(name, transform)| (name.clone(), transform.config.clone()))
                .collect();
            self.controls.update_transforms(&transforms);
            match self.config.write() {
                Ok(mut guard) => *guard = Arc::new(effective),
                Err(poisoned) => *poisoned.into_inner() = Arc::new(effective),
            }
        }
        let (status, message) = match (plan.applied.len(), plan.restart_required.len()) {
            (0, 0) => ("unchanged", "Nothing changed.".to_string()),
            (_, 0) => (
                "applied",
                format!("Applied live: {}.", plan.applied.join(", ")),
            ),
            (applied, _) => (
                "restart_required",
                format!(
                    "Applied live: {}. Restart required for: {}.{}",
                    if applied == 0 {
                        "nothing".to_string()
                    } else {
                        plan.applied.join(", ")
                    },
                    plan.restart_required.join(", "),
                    topology_changes(&plan),
                ),
            ),
        };
        Ok(ReloadReport {
            status,
            plan,
            message,
        })
    }
}

/// The components a reload would add, remove or replace, said in words: the topology is wired
/// at start-up, so none of them is swapped live (and nothing else of the new file is held
/// back because of them).
fn topology_changes(plan: &ReloadPlan) -> String {
    let parts: Vec<String> = [
        ("added", &plan.added),
        ("removed", &plan.removed),
        ("given another type", &plan.replaced),
    ]
    .into_iter()
    .filter(|(_, components)| !components.is_empty())
    .map(|(what, components)| format!("{} {what}", components.join(", ")))
    .collect();
    if parts.is_empty() {
        return String::new();
    }
    format!(
        " The pipeline's shape changed ({}): components are wired at start-up, so this needs a restart.",
        parts.join("; ")
    )
}

/// Runs the shipper until SIGTERM or SIGINT.
pub async fn run(source: ConfigSource) -> ExitCode {
    let config = match config::load(&source) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config.root.log);
    log_warnings(&config);
    let telemetry = match Telemetry::install(&config.root.telemetry, &config.otlp_headers) {
        Ok(t) => Arc::new(t),
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let data_dir = config.root.data_dir.clone();
    // One process per data directory: positions and the DLQ assume a single writer. Acquiring
    // creates the directory; its errors tell a running holder from a directory that cannot be
    // written.
    let _data_dir_lock = match log_capturer_components::lock::DataDirLock::acquire(&data_dir) {
        Ok(lock) => lock,
        Err(err) => {
            eprintln!("data_dir: {err} (hint: {})", err.hint());
            return ExitCode::FAILURE;
        }
    };
    let listener = if config.root.api.enabled {
        match bind(config.root.api.listen) {
            Ok(listener) => Some(listener),
            Err(message) => {
                eprintln!("{message}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };

    let health = HealthRegistry::default();
    let mut topology = match topology::start(&config, &health, &data_dir) {
        Ok(topology) => topology,
        Err(errors) => {
            eprintln!("{} component(s) could not start:", errors.len());
            for error in errors {
                eprintln!("  - {error}");
            }
            return ExitCode::FAILURE;
        }
    };
    let shutdown_timeout = config.root.shutdown_timeout;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        sources = config.sources.len(),
        transforms = config.transforms.len(),
        sinks = config.sinks.len(),
        config = %source.file.as_ref().map_or_else(|| "embedded default".to_string(), |p| p.display().to_string()),
        "log-capturer started."
    );
    let app = Arc::new(App {
        source,
        config: RwLock::new(Arc::new(config)),
        controls: topology.controls(),
        health,
        telemetry: telemetry.clone(),
        ready: AtomicBool::new(true),
        reload_lock: tokio::sync::Mutex::new(()),
    });
    let (api_stop, api_signal) = log_capturer_components::shutdown::shutdown_pair();
    let api_task = listener.map(|listener| {
        let local = listener.local_addr().ok();
        tracing::info!(address = ?local, "API listening.");
        tokio::spawn(api::serve(listener, app.clone(), api_signal))
    });

    let failure = tokio::select! {
        () = wait_for_stop(&app) => None,
        failure = topology.failure() => Some(failure),
    };
    if let Some(failure) = &failure {
        tracing::error!(
            component = %failure.component,
            error = %failure.message,
            "A component panicked: the pipeline cannot go on. Shutting down with an error so that the supervisor restarts the shipper; lines not acknowledged are read again from the saved positions."
        );
    }
    app.ready.store(false, Ordering::Release);
    tracing::info!(limit = ?shutdown_timeout, "Shutting down: stopping sources and draining.");
    let outcome = topology.shutdown(shutdown_timeout).await;
    api_stop.trigger();
    if let Some(task) = api_task {
        let _ = task.await;
    }
    telemetry.shutdown();
    match outcome {
        ShutdownOutcome::Drained if failure.is_some() => {
            tracing::error!("Shutdown complete after a component failure.");
            ExitCode::FAILURE
        }
        ShutdownOutcome::DrainedAfterPanic(during) => {
            tracing::error!(component = %during.component, "Shutdown complete, but a component panicked while draining; what it held is read again after a restart.");
            ExitCode::FAILURE
        }
        ShutdownOutcome::Drained => {
            tracing::info!("Shutdown complete.");
            ExitCode::SUCCESS
        }
        ShutdownOutcome::TimedOut => {
            tracing::error!(
                limit = ?shutdown_timeout,
                "Shutdown timed out; events still in flight were not acknowledged and will be read again after a restart."
            );
            ExitCode::FAILURE
        }
    }
}

/// Logs the configuration's warnings (problems that do not stop the start).
fn log_warnings(config: &Config) {
    for warning in &config.warnings {
        tracing::warn!(key = %warning.path, warning = %warning, "Configuration warning.");
    }
}

/// Connections the kernel may hold for the API before it accepts them. They cost no descriptor
/// of ours; a longer queue absorbs bursts that the default of 128 would turn into dropped SYNs
/// (and one-second client retries).
const LISTEN_BACKLOG: u32 = 1024;

fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    let listen = || {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    listen().map_err(|err: std::io::Error| {
        format!(
            "api.listen: cannot listen on {addr}: {err} (hint: choose another port with --set api.listen=127.0.0.1:PORT, or --set api.enabled=false)"
        )
    })
}

/// Returns on SIGTERM or SIGINT; reloads on SIGHUP meanwhile.
async fn wait_for_stop(app: &App) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("Cannot install signal handlers; stopping on Ctrl-C only.");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received."); return; }
            _ = int.recv() => { tracing::info!("SIGINT received."); return; }
            _ = hup.recv() => {
                tracing::info!("SIGHUP received: reloading the configuration.");
                // The outcome is logged by reload itself.
                let _ = app.reload().await;
            }
        }
    }
}
