//! The HTTP side: routing, tenants, fault injection, the lifecycle windows, answers, the record
//! file.

use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::config::ReceiverConfig;
use super::decode::{self, DecodeError, SizeLimits};
use super::labels;
use super::latency::SecondSample;
use super::lifecycle::Lifecycle;
use super::messages;
use super::stats::StatsSnapshot;
use super::store::{Conditions, Injection, Limits, ParsedStream, Store, StoredEntry};

type ResponseBody = Full<Bytes>;

/// How long shutdown waits for open connections to finish their current request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// SplitMix64: small, seedable, good enough for fault injection draws.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The random draws of one push.
#[derive(Clone, Copy, Debug)]
struct Draws {
    fail: bool,
    status_429: bool,
    status_260: bool,
    /// The order of grouped validation messages.
    order_seed: u64,
}

#[derive(Serialize)]
struct RecordLine<'a> {
    tenant: &'a str,
    labels: &'a str,
    ts: String,
    line: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    structured_metadata: Vec<(&'a str, &'a str)>,
}

pub(super) struct Shared {
    config: ReceiverConfig,
    lifecycle: Lifecycle,
    store: Mutex<Store>,
    /// Labels for service-name discovery (empty names removed).
    discover: Vec<String>,
    rng: Mutex<Rng>,
    record: Option<Mutex<BufWriter<File>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl Shared {
    pub(super) fn new(config: ReceiverConfig) -> std::io::Result<Self> {
        let record = match &config.record {
            Some(path) => {
                let file = OpenOptions::new().create(true).append(true).open(path)?;
                Some(Mutex::new(BufWriter::new(file)))
            }
            None => None,
        };
        let seed = config.seed.unwrap_or_else(|| now_ns() as u64);
        let limits = Limits::from_config(&config);
        Ok(Self {
            discover: limits.discover_service_name.clone(),
            store: Mutex::new(Store::new(limits)),
            rng: Mutex::new(Rng(seed)),
            lifecycle: Lifecycle::new(&config, Instant::now()),
            record,
            config,
        })
    }

    pub(super) fn stats(&self) -> StatsSnapshot {
        lock(&self.store).snapshot()
    }

    pub(super) fn latency_series(&self) -> Vec<SecondSample> {
        lock(&self.store).latency_series()
    }

    pub(super) fn reset(&self) -> StatsSnapshot {
        let mut store = lock(&self.store);
        let before = store.snapshot();
        store.reset();
        before
    }

    fn size_limits(&self) -> SizeLimits {
        SizeLimits {
            max_body: self.config.max_body_bytes,
            max_decompressed: self.config.max_decompressed_bytes,
        }
    }

    /// Begins the shutdown window; returns when it ends.
    pub(super) fn begin_stopping(&self) -> Instant {
        self.lifecycle.begin_stopping(Instant::now())
    }

    fn draws(&self) -> Draws {
        let mut rng = lock(&self.rng);
        let (a, b, c) = (rng.next_f64(), rng.next_f64(), rng.next_f64());
        Draws {
            fail: a < self.config.fail_rate,
            status_429: b < self.config.status_429_rate,
            status_260: c < self.config.status_260_rate,
            order_seed: rng.next_u64(),
        }
    }

    pub(super) fn flush_record(&self) {
        if let Some(record) = &self.record
            && let Err(err) = lock(record).flush()
        {
            tracing::error!(error = %err, "Flushing the record file failed.");
        }
    }

    fn write_record(&self, tenant: &str, stored: &[StoredEntry]) {
        let Some(record) = &self.record else {
            return;
        };
        if stored.is_empty() {
            return;
        }
        let mut writer = lock(record);
        let mut write = || -> std::io::Result<()> {
            for entry in stored {
                let line = RecordLine {
                    tenant,
                    labels: &entry.labels,
                    ts: entry.ts_ns.to_string(),
                    line: String::from_utf8_lossy(&entry.line),
                    structured_metadata: entry
                        .metadata
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str()))
                        .collect(),
                };
                serde_json::to_writer(&mut *writer, &line)?;
                writer.write_all(b"\n")?;
            }
            writer.flush()
        };
        if let Err(err) = write() {
            tracing::error!(error = %err, entries = stored.len(), "Writing to the record file failed.");
        }
    }
}

/// An answer before it becomes a response.
struct Reply {
    status: u16,
    /// Text without its final newline; empty means no body.
    body: String,
    /// Close the connection afterwards (the request body was not read to its end).
    close: bool,
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A plain-text answer the way Go's `http.Error` writes it.
fn text_response(status: u16, body: &str) -> Response<ResponseBody> {
    if body.is_empty() {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = status_code(status);
        return response;
    }
    let mut response = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *response.status_mut() = status_code(status);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn json_response(value: &StatsSnapshot) -> Response<ResponseBody> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// dskit's tenant ID rules.
fn validate_tenant(tenant: &str) -> Result<(), String> {
    if tenant.contains('|') {
        return Err("multiple org IDs present".into());
    }
    let supported = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(b, b'!' | b'-' | b'_' | b'.' | b'*' | b'\'' | b'(' | b')')
    };
    if let Some(pos) = tenant.bytes().position(|b| !supported(b)) {
        return Err(format!(
            "tenant ID '{tenant}' contains unsupported character '{}'",
            char::from(tenant.as_bytes()[pos])
        ));
    }
    if tenant.len() > 150 {
        return Err("tenant ID is too long: max 150 characters".into());
    }
    if tenant == "." || tenant == ".." {
        return Err("tenant ID is '.' or '..'".into());
    }
    Ok(())
}

/// The push body as far as it was read.
enum PushBody {
    /// Refused before reading (unsupported encoding or media type, or too large by its
    /// `Content-Length`).
    Refused(DecodeError),
    /// Read up to the size limit plus one byte; `complete` when that was all of it.
    Read { bytes: Bytes, complete: bool },
    /// The connection failed while reading.
    Failed(String),
}

/// Reads at most `limit` bytes of `body`, as Loki's `LimitReader` does.
async fn read_body(mut body: Incoming, content_length: Option<u64>, limit: u64) -> PushBody {
    let capacity = content_length.unwrap_or(0).min(limit).min(64 << 20) as usize;
    let mut buffer = BytesMut::with_capacity(capacity);
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(err) => return PushBody::Failed(err.to_string()),
        };
        if let Ok(data) = frame.into_data() {
            let room = limit.saturating_sub(buffer.len() as u64) as usize;
            if data.len() > room {
                buffer.extend_from_slice(&data[..room]);
                return PushBody::Read {
                    bytes: buffer.freeze(),
                    complete: false,
                };
            }
            buffer.extend_from_slice(&data);
        }
    }
    PushBody::Read {
        bytes: buffer.freeze(),
        complete: true,
    }
}

fn header_text<'a>(parts: &'a Parts, name: &str) -> &'a str {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn content_length(parts: &Parts) -> Option<u64> {
    parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Everything about a push after its body is read, in Loki's order.
fn answer_push(shared: &Shared, parts: &Parts, body: PushBody, draws: Draws) -> Reply {
    let config = &shared.config;
    // The body was not read to its end: the connection cannot be reused.
    let close = !matches!(body, PushBody::Read { complete: true, .. });
    let reply = |status: u16, text: String| Reply {
        status,
        body: text,
        close,
    };
    if shared.lifecycle.in_outage(Instant::now()) {
        return reply(503, "loki-receiver: injected outage (--outage)".into());
    }
    if draws.fail {
        return reply(500, "loki-receiver: injected failure (--fail-rate)".into());
    }
    let tenant = parts
        .headers
        .get("X-Scope-OrgID")
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let tenant = match tenant {
        Some(tenant) if !tenant.is_empty() => tenant,
        _ if config.require_tenant => return reply(401, messages::NO_ORG_ID.into()),
        _ => "fake".to_string(),
    };
    if let Err(message) = validate_tenant(&tenant) {
        return reply(400, message);
    }
    let bytes = match body {
        PushBody::Read { bytes, .. } => bytes,
        PushBody::Refused(DecodeError::TooLarge(message)) => return reply(413, message),
        PushBody::Refused(DecodeError::Invalid(message)) | PushBody::Failed(message) => {
            return reply(400, message);
        }
    };
    let streams = match decode::decode(
        header_text(parts, "content-type"),
        header_text(parts, "content-encoding"),
        bytes,
        content_length(parts),
        shared.size_limits(),
    ) {
        Ok(streams) => streams,
        Err(DecodeError::TooLarge(message)) => return reply(413, message),
        Err(DecodeError::Invalid(message)) => return reply(400, message),
    };
    if config.count_only {
        let mut store = lock(&shared.store);
        store.count_only(&tenant, &streams, now_ns(), Instant::now());
        drop(store);
        return reply(204, String::new());
    }
    let mut parsed = Vec::with_capacity(streams.len());
    for stream in streams {
        match labels::parse(&stream.labels) {
            Ok(set) => parsed.push(ParsedStream::new(set, &shared.discover, stream.entries)),
            Err(message) => return reply(400, messages::unparsable_labels(&message)),
        }
    }
    if parsed.is_empty() {
        return reply(422, messages::MISSING_STREAMS.into());
    }
    let injection = if draws.status_260 {
        Injection::Blocked
    } else if draws.status_429 {
        Injection::RateLimited
    } else {
        Injection::None
    };
    let now = Instant::now();
    let conditions = Conditions {
        injection,
        ring_empty: shared.lifecycle.ring_empty(now),
        keep_stored: shared.record.is_some(),
        order_seed: draws.order_seed,
    };
    let mut store = lock(&shared.store);
    let outcome = store.push(&tenant, parsed, now_ns(), now, &conditions);
    drop(store);
    shared.write_record(&tenant, &outcome.stored);
    tracing::debug!(
        tenant = %tenant,
        status = outcome.status,
        stored = outcome.stored.len(),
        "Push answered."
    );
    reply(outcome.status, outcome.body)
}

async fn push(shared: &Shared, req: Request<Incoming>) -> Response<ResponseBody> {
    lock(&shared.store).count_push();
    let (parts, body) = req.into_parts();
    let length = content_length(&parts);
    let limits = shared.size_limits();
    let body = match decode::before_reading(
        header_text(&parts, "content-type"),
        header_text(&parts, "content-encoding"),
        length,
        limits,
    ) {
        Err(refusal) => PushBody::Refused(refusal),
        Ok(_) => read_body(body, length, limits.max_body.saturating_add(1)).await,
    };
    let draws = shared.draws();
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }
    let reply = answer_push(shared, &parts, body, draws);
    lock(&shared.store).count_response(reply.status);
    if reply.status >= 400 {
        tracing::debug!(status = reply.status, body = %reply.body, "Push refused.");
    }
    let mut response = text_response(reply.status, &reply.body);
    if let Some(seconds) = shared.config.retry_after
        && matches!(reply.status, 429 | 503)
    {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if reply.close {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<ResponseBody> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/loki/api/v1/push") => push(shared, req).await,
        (&Method::GET, "/ready") => match shared.lifecycle.readiness(Instant::now()) {
            Ok(()) => text_response(200, "ready"),
            Err(message) => text_response(503, &message),
        },
        (&Method::GET, "/stats") => json_response(&shared.stats()),
        (&Method::POST, "/stats/reset") => json_response(&shared.reset()),
        (_, "/loki/api/v1/push" | "/ready" | "/stats" | "/stats/reset") => {
            text_response(405, "method not allowed")
        }
        _ => text_response(404, "404 page not found"),
    }
}

async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
    });
    let connection = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(error = %err, "Connection ended with an error.");
    }
}

pub(super) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(stream, shared.clone(), shutdown.clone()));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "Accepting a connection failed.");
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "Connections still open after the shutdown grace period; closing them."
        );
        connections.abort_all();
    }
    shared.flush_record();
}

/// A running receiver: its address, its counters, and its shutdown.
pub struct ReceiverHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ReceiverHandle {
    pub(super) fn new(
        addr: SocketAddr,
        shared: Arc<Shared>,
        shutdown: watch::Sender<bool>,
        task: JoinHandle<()>,
    ) -> Self {
        Self {
            addr,
            shared,
            shutdown,
            task,
        }
    }

    /// The address it listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://<addr>/loki/api/v1/push`, what a Loki client is pointed at.
    pub fn push_url(&self) -> String {
        format!("{}/loki/api/v1/push", self.base_url())
    }

    /// The counters now (what `GET /stats` shows).
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats()
    }

    /// Stored entries and their end-to-end latency, per second since the start or last reset.
    pub fn latency_series(&self) -> Vec<SecondSample> {
        self.shared.latency_series()
    }

    /// Zeroes the counters (as `POST /stats/reset`); returns them as they were.
    pub fn reset_stats(&self) -> StatsSnapshot {
        self.shared.reset()
    }

    /// Begins shutting down without waiting: from now on pushes that pass validation are
    /// answered `500 empty ring` and `/ready` `503 Application is stopping`, as while Loki stops.
    /// [`ReceiverHandle::shutdown`] then stops at the end of the `shutdown_empty_ring` window.
    pub fn begin_shutdown(&self) {
        self.shared.begin_stopping();
    }

    /// Begins shutting down if not begun, keeps serving (pushes `500 empty ring`) until the
    /// `shutdown_empty_ring` window from that moment ends, then stops accepting, lets open
    /// connections finish their request (up to 5 s) and flushes the record file. Returns the
    /// counters as they were at the end.
    pub async fn shutdown(self) -> StatsSnapshot {
        let deadline = self.shared.begin_stopping();
        tokio::time::sleep_until(deadline.into()).await;
        let _ = self.shutdown.send(true);
        if let Err(err) = self.task.await {
            tracing::error!(error = %err, "The receiver task failed.");
        }
        self.shared.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_follow_dskit() {
        assert_eq!(validate_tenant("team-a"), Ok(()));
        assert_eq!(
            validate_tenant("a|b"),
            Err("multiple org IDs present".into())
        );
        assert_eq!(
            validate_tenant("a/b"),
            Err("tenant ID 'a/b' contains unsupported character '/'".into())
        );
        assert_eq!(
            validate_tenant(".."),
            Err("tenant ID is '.' or '..'".into())
        );
        assert!(validate_tenant(&"a".repeat(151)).is_err());
    }

    #[test]
    fn draws_are_uniform_enough_and_seeded() {
        let mut a = Rng(7);
        let mut b = Rng(7);
        let values: Vec<f64> = (0..10_000).map(|_| a.next_f64()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let below = values.iter().filter(|&&v| v < 0.1).count();
        assert!((800..1200).contains(&below), "{below}");
        assert_eq!(b.next_f64(), values[0]);
    }
}
