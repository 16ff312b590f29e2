//! `loki-receiver`: a Loki-compatible push receiver for testing log pipelines. See
//! `docs/loki-receiver.md`; the work is done in `log_capturer_harness::receiver`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use log_capturer_harness::receiver::{ReceiverConfig, serve};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let config = ReceiverConfig::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "Starting the runtime failed.");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: ReceiverConfig) -> ExitCode {
    let listener = match TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(addr = %config.listen, error = %err, "Binding the listen address failed.");
            return ExitCode::FAILURE;
        }
    };
    let (mut terminate, mut interrupt) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(err), _) | (_, Err(err)) => {
            tracing::error!(error = %err, "Installing signal handlers failed.");
            return ExitCode::FAILURE;
        }
    };
    let window = config.shutdown_empty_ring;
    let receiver = match serve(config, listener).await {
        Ok(receiver) => receiver,
        Err(err) => {
            tracing::error!(error = %err, "Opening the record file failed.");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down."),
        _ = interrupt.recv() => tracing::info!("SIGINT received; shutting down."),
    }
    if !window.is_zero() {
        tracing::info!(
            window = %humantime::format_duration(window),
            "Answering pushes 500 empty ring until the shutdown window ends."
        );
    }
    let stats = receiver.shutdown().await;
    tracing::info!(
        pushes = stats.pushes,
        stored_entries = stats.stored_entries,
        duplicates = stats.duplicates,
        rejected_entries = stats.rejected_entries,
        "Loki receiver stopped."
    );
    ExitCode::SUCCESS
}
