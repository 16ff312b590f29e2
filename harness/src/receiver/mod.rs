//! `loki-receiver`: a stand-in for Grafana Loki's push endpoint, for tests and benchmarks of log
//! pipelines (ours or anyone's). It speaks Loki's wire formats, validates like Loki 3.7 with
//! Loki's default limits, answers with Loki's status codes and message texts, keeps counters of
//! what it stored instead of the data, and can inject faults and Loki's start-up and shutdown
//! states.
//!
//! Endpoints: `POST /loki/api/v1/push`, `GET /ready`, `GET /stats`, `POST /stats/reset`.
//! The behaviour, flags and messages are documented in `docs/loki-receiver.md`.
//!
//! Guarantees:
//! - A push answered 204 stored every entry it carried (or already had it: exact duplicates),
//!   except entries of earlier streams that the ingester refused (Loki reports only the last
//!   stream's refusals; they are counted `rejected_unreported`). A push answered 400 after
//!   validation stored its valid entries, as Loki does. A 429 or 400 from the ingester (per-stream
//!   rate limit, stream limit, too far behind, in the last stream) may come after other streams
//!   were stored, as in Loki (counted `unacknowledged` when not 400). Every other answer (401,
//!   413, 422, 429 of the tenant limit, 260, 500, 503, and 400 for malformed requests) stored
//!   nothing.
//! - Counters change before the answer is sent: a client that reads `/stats` (or
//!   [`ReceiverHandle::stats`]) after its answer arrived sees its push counted.
//! - Memory does not grow with the data: entries are counted, not kept; duplicate detection and
//!   sequence tracking have fixed bounds (see [`store`] and [`seq`]).
//! - With `--record`, every stored entry, and only those, is appended to the file before the
//!   push is answered.
//!
//! In-process use:
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use log_capturer_harness::receiver::{ReceiverConfig, serve};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let receiver = serve(ReceiverConfig::for_tests(), listener).await?;
//! // ... point a Loki client at receiver.push_url() ...
//! let stats = receiver.stats();
//! assert_eq!(stats.sequences.missing, 0);
//! receiver.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod config;
mod decode;
pub mod gofmt;
pub mod jsonpush;
pub mod labels;
pub mod latency;
pub mod levels;
mod lifecycle;
pub mod messages;
mod ratelimit;
pub mod seq;
mod server;
pub mod sharding;
mod stats;
pub mod store;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::{
    DEFAULT_DISCOVER_SERVICE_NAME, DEFAULT_LOG_LEVEL_FIELDS, Outage, ReceiverConfig,
    parse_byte_size,
};
pub use decode::{DecodeError, PushEntry, PushStream, SizeLimits, decode};
pub use latency::{LatencySummary, SecondSample};
pub use server::ReceiverHandle;
pub use stats::{SequenceStats, StatsSnapshot, StreamStats, TenantStats};

/// Starts serving on `listener` and returns at once; the receiver runs on the current tokio
/// runtime until [`ReceiverHandle::shutdown`]. `config.listen` is not used (the listener is).
/// The start-up window (`startup_empty_ring`) and the ready delay count from this call.
///
/// Fails only when the `--record` file cannot be opened.
pub async fn serve(
    config: ReceiverConfig,
    listener: TcpListener,
) -> std::io::Result<ReceiverHandle> {
    let addr = listener.local_addr()?;
    let shared = Arc::new(server::Shared::new(config)?);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(server::accept_loop(listener, shared.clone(), shutdown_rx));
    tracing::info!(addr = %addr, "Loki receiver listening.");
    Ok(ReceiverHandle::new(addr, shared, shutdown_tx, task))
}
