//! The `loki` sink: pushes batches to Grafana Loki's `/loki/api/v1/push`.
//!
//! A batch becomes one push: events are grouped into streams by their labels (the event's labels
//! plus the sink's `labels`), entries sorted by time within a stream, encoded as protobuf with
//! raw snappy (default) or JSON (optionally gzip). Connections are pooled and kept alive.
//!
//! Guarantees, by Loki's answer:
//! - 2xx except 260: delivered. 260 (ingestion blocked): retried.
//! - 400: a partial success. The entries Loki names are matched (by stream and time, or stream
//!   and length) and reported as rejected with their reason; they go to the dead-letter queue,
//!   the rest counts as delivered. The cutoffs in the messages feed the timestamp learner. The
//!   whole batch is never resent.
//! - 413: the dispatcher splits the batch and sends the halves.
//! - 429 and 5xx except 501: retried with backoff, honouring `Retry-After`.
//! - 501 and other 4xx: a final failure (to the dead-letter queue).
//! - Before sending, entries older than what Loki is known to accept follow the timestamp
//!   policy, and label sets Loki would refuse are reported as rejected without being sent.
//! - With `max_streams`, a tenant's label sets past the cap are folded into one overflow stream
//!   (their labels kept in structured metadata) or dropped, counted; never retried or
//!   dead-lettered for it.

mod classify;
mod config;
mod encode;
mod events;
pub mod metrics;
pub mod proto;
pub mod response;
mod service;
mod sink;
mod stream_cap;
mod streams;
mod template;
pub mod timestamps;
mod tls;

pub use self::config::{
    JsonCompression, LineTooLong, LokiAuth, LokiEncoding, LokiSinkConfig, LokiTls, OVERFLOW_LABEL,
    Secret, StreamOverflow, valid_tenant,
};
pub use self::service::ReadyVerdict;
pub use self::sink::LokiSink;
pub use self::template::LabelTemplate;
