//! The HTTP API (hyper 1, HTTP/1.1).
//!
//! | method and path        | answer |
//! |------------------------|--------|
//! | `GET /health`          | 200 when every component is healthy, else 503; JSON per component |
//! | `GET /ready`           | 200 while the pipeline runs, 503 during shutdown |
//! | `GET /metrics`         | Prometheus text exposition |
//! | `GET /config`          | the running configuration, typed, as JSON; secrets redacted |
//! | `POST /config/reload`  | re-read the configuration: 200 with what was applied and what needs a restart, 400 with every error |
//! | `GET /dlq`             | each sink's dead-letter queue statistics |
//! | `POST /dlq/reprocess`  | replay the dead-letter queues now (202) |
//! | `GET /tap/COMPONENT`   | a sample of the events leaving a source or transform, streamed as JSON lines (`?limit=N&sample_rate=R`) |
//!
//! Guarantees:
//! - When `api.token` is set (it must be when `api.listen` is not a loopback address), every
//!   request but `GET /health`, `/ready` and `/metrics` needs `Authorization: Bearer <token>`,
//!   whatever its method or path (401 without): an endpoint added later is guarded without
//!   saying so.
//! - A connection must send a request's headers within `api.header_read_timeout`, and a kept-alive
//!   connection is closed after that long idle (hyper's header-read timer runs from the end of
//!   the previous response).
//! - A request declaring a body longer than `api.max_body_bytes` gets 413 and the connection is
//!   closed, the body unread. No endpoint reads a body.
//! - At most `api.max_connections` connections are open. A new one beyond that closes the oldest
//!   connection that is waiting for a request (idle, or its headers incomplete); if every open
//!   connection is handling a request, the new one is closed at once. So half-sent requests can
//!   hold at most that many descriptors, and only until the header timeout, and a health check
//!   still gets through. Each closing is counted in `api_connections_closed_total{reason}`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use log_capturer_components::shutdown::ShutdownSignal;
use opentelemetry::KeyValue;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::app::App;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The endpoints anyone may call: probes and scrapes carry no credentials.
const OPEN: &[&str] = &["/health", "/ready", "/metrics"];

/// Longest wait for an evicted connection to close before the new one is served anyway.
const EVICTION_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Every endpoint, for the 404 answer.
const ENDPOINTS: &[&str] = &[
    "/health",
    "/ready",
    "/metrics",
    "/config",
    "/config/reload",
    "/dlq",
    "/dlq/reprocess",
    "/tap/COMPONENT",
];

/// Events a tap sends when the request does not say (`limit`).
const TAP_DEFAULT_LIMIT: u64 = 100;
/// The most events one tap may ask for.
const TAP_MAX_LIMIT: u64 = 1_000_000;

fn count_closed(reason: &'static str) {
    crate::telemetry::API_CONNECTIONS_CLOSED.add(1, &[KeyValue::new("reason", reason)]);
}

/// The open connections, oldest first, each with whether it is handling a request.
struct Connections {
    max: usize,
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Slot>>,
}

struct Slot {
    busy: Arc<AtomicBool>,
    /// Dropping or sending closes the connection.
    close: oneshot::Sender<()>,
    /// Ends when the connection's socket is closed.
    gone: oneshot::Receiver<()>,
}

/// A connection's place among the open ones; gives it up when dropped, after its socket.
struct Admitted {
    id: u64,
    busy: Arc<AtomicBool>,
    closed: oneshot::Receiver<()>,
    /// Dropped with the place: tells an evicting admission the socket is closed.
    _gone: oneshot::Sender<()>,
    connections: Arc<Connections>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.with_open(|open| open.remove(&self.id));
    }
}

impl Connections {
    fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            next_id: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
        })
    }

    fn with_open<T>(&self, f: impl FnOnce(&mut BTreeMap<u64, Slot>) -> T) -> T {
        match self.open.lock() {
            Ok(mut open) => f(&mut open),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// A place for a new connection, making room by telling the oldest waiting one to close
    /// (then also returned: a receiver that ends once its socket is closed); `None` when every
    /// open connection is busy.
    fn admit(self: &Arc<Self>) -> Option<(Admitted, Option<oneshot::Receiver<()>>)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let busy = Arc::new(AtomicBool::new(false));
        let (close, closed) = oneshot::channel();
        let (gone_tx, gone) = oneshot::channel();
        let evicted = self.with_open(|open| {
            let mut evicted = None;
            if open.len() >= self.max {
                let oldest_waiting = open
                    .iter()
                    .find(|(_, slot)| !slot.busy.load(Ordering::Acquire))
                    .map(|(id, _)| *id);
                let slot = open.remove(&oldest_waiting?)?;
                let _ = slot.close.send(());
                count_closed("evicted");
                evicted = Some(slot.gone);
            }
            open.insert(
                id,
                Slot {
                    busy: busy.clone(),
                    close,
                    gone,
                },
            );
            Some(evicted)
        })?;
        let admitted = Admitted {
            id,
            busy,
            closed,
            _gone: gone_tx,
            connections: self.clone(),
        };
        Some((admitted, evicted))
    }
}

/// Serves the API until `shutdown` fires.
pub async fn serve(listener: TcpListener, app: Arc<App>, mut shutdown: ShutdownSignal) {
    let limits = app.config().root.api.clone();
    let connections = Connections::new(limits.max_connections);
    let timer = TokioTimer::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.wait() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "API accept failed.");
                // Out of descriptors: give the ones in use a moment to close rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some((admitted, evicted)) = connections.admit() else {
            drop(stream);
            count_closed("limit");
            tracing::debug!("API connection refused: every connection is busy.");
            continue;
        };
        if let Some(gone) = evicted {
            // Accept no faster than evicted sockets close, so the descriptors in use stay
            // bounded by the limit however fast connections arrive.
            let _ = tokio::time::timeout(EVICTION_WAIT, gone).await;
        }
        let app = app.clone();
        let mut builder = http1::Builder::new();
        builder
            .timer(timer.clone())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        tokio::spawn(async move {
            let mut admitted = admitted;
            let busy = admitted.busy.clone();
            let service = service_fn(move |req| {
                let app = app.clone();
                let busy = busy.clone();
                async move {
                    busy.store(true, Ordering::Release);
                    let response = handle(&app, req).await;
                    busy.store(false, Ordering::Release);
                    Ok::<_, Infallible>(response)
                }
            });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            // The sender is sent on or dropped only when the slot is taken away: both mean close.
            let closed = async {
                let _ = (&mut admitted.closed).await;
            };
            tokio::select! {
                result = connection => match result {
                    Err(err) if err.is_timeout() => {
                        count_closed("header_timeout");
                        tracing::debug!("API connection closed: no complete request in time.");
                    }
                    Err(err) => tracing::debug!(error = %err, "API connection ended with an error."),
                    Ok(()) => {}
                },
                () = closed => tracing::debug!("API connection closed to make room for a new one."),
            }
            drop(admitted);
        });
    }
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn authorized(app: &App, req: &Request<Incoming>) -> bool {
    let config = app.config();
    let Some(token) = &config.api_token else {
        return true;
    };
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, given) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(given)
        })
        .is_some_and(|given| token.matches(given.trim().as_bytes()))
}

/// Refusals that come before routing: a body too large, a missing or wrong token.
fn refusal(app: &App, req: &Request<Incoming>) -> Option<Response<Body>> {
    let max_body = app.config().root.api.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_body) {
        let mut response = json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &json!({"error": format!("the request body is larger than api.max_body_bytes ({max_body})")}),
        );
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return Some(response);
    }
    if !OPEN.contains(&req.uri().path()) && !authorized(app, req) {
        let mut response = json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "missing or wrong bearer token (api.token)"}),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return Some(response);
    }
    None
}

async fn handle(app: &App, req: Request<Incoming>) -> Response<Body> {
    if let Some(response) = refusal(app, &req) {
        return response;
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => {
            let components = app.health.snapshot();
            let healthy = components.values().all(|c| c.healthy);
            let status = if healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_response(
                status,
                &json!({
                    "status": if healthy { "ok" } else { "unhealthy" },
                    "components": components,
                }),
            )
        }
        (&Method::GET, "/ready") => {
            if app.is_ready() {
                json_response(StatusCode::OK, &json!({"ready": true}))
            } else {
                json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"ready": false}))
            }
        }
        (&Method::GET, "/metrics") if !app.telemetry.prometheus_enabled() => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "telemetry.prometheus is false: metrics are pushed with OTLP only"}),
        ),
        (&Method::GET, "/metrics") => match app.telemetry.render() {
            Ok(text) => {
                let mut response = Response::new(Full::new(Bytes::from(text)).boxed_unsync());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                response
            }
            Err(err) => json_response(StatusCode::INTERNAL_SERVER_ERROR, &json!({"error": err})),
        },
        (&Method::GET, "/config") => json_response(StatusCode::OK, &app.config().shown()),
        (&Method::POST, "/config/reload") => match app.reload().await {
            Ok(report) => json_response(
                StatusCode::OK,
                &serde_json::to_value(&report).unwrap_or_default(),
            ),
            Err(errors) => json_response(
                StatusCode::BAD_REQUEST,
                &json!({
                    "status": "invalid",
                    "message": "The new configuration is invalid; the running one is unchanged.",
                    "errors": errors.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
                }),
            ),
        },
        (&Method::GET, "/dlq") => {
            let stats: serde_json::Map<String, serde_json::Value> = app
                .dlqs()
                .iter()
                .map(|(name, dlq)| {
                    (
                        name.clone(),
                        serde_json::to_value(dlq.stats()).unwrap_or_default(),
                    )
                })
                .collect();
            json_response(StatusCode::OK, &json!({ "sinks": stats }))
        }
        (&Method::POST, "/dlq/reprocess") => {
            for dlq in app.dlqs().values() {
                dlq.trigger_reprocess();
            }
            json_response(
                StatusCode::ACCEPTED,
                &json!({"status": "reprocessing", "sinks": app.dlqs().keys().collect::<Vec<_>>()}),
            )
        }
        (&Method::GET, path) if path.starts_with("/tap/") => tap(app, path, req.uri().query()),
        (_, path) if ENDPOINTS.contains(&path) => json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": format!("{} is not allowed here", req.method())}),
        ),
        (_, path) => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("no such endpoint: {path}"), "endpoints": ENDPOINTS}),
        ),
    }
}

/// `GET /tap/COMPONENT?limit=N&sample_rate=R`: streams what the tap passes, one JSON object per
/// line, until `limit` events were sent or the client goes away.
fn tap(app: &App, path: &str, query: Option<&str>) -> Response<Body> {
    let component = path.trim_start_matches("/tap/");
    let request = match tap_request(query) {
        Ok(request) => request,
        Err(message) => return json_response(StatusCode::BAD_REQUEST, &json!({"error": message})),
    };
    let rx = match app.taps().subscribe(component, request) {
        Ok(rx) => rx,
        Err(crate::tap::TapRefused::UnknownComponent) => {
            return json_response(
                StatusCode::NOT_FOUND,
                &json!({
                    "error": format!("no source or transform named {component:?} (sinks cannot be tapped)"),
                    "components": app.taps().names(),
                }),
            );
        }
        Err(crate::tap::TapRefused::TooManyTaps) => {
            return json_response(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({"error": format!(
                    "{component} already has {} taps; try again when one ends",
                    crate::tap::MAX_TAPS_PER_COMPONENT
                )}),
            );
        }
    };
    let lines = futures::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Some((
            Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(line))),
            rx,
        ))
    });
    let mut response = Response::new(StreamBody::new(lines).boxed_unsync());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

/// Reads `limit` (1 to [`TAP_MAX_LIMIT`], default [`TAP_DEFAULT_LIMIT`]) and `sample_rate`
/// (above 0, at most 1, default 1: one event in `round(1 / rate)` is kept).
fn tap_request(query: Option<&str>) -> Result<crate::tap::TapRequest, String> {
    let mut request = crate::tap::TapRequest {
        limit: TAP_DEFAULT_LIMIT,
        every: 1,
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "limit" => {
                request.limit = value
                    .parse()
                    .ok()
                    .filter(|l| (1..=TAP_MAX_LIMIT).contains(l))
                    .ok_or_else(|| {
                        format!("limit={value:?}: give a whole number from 1 to {TAP_MAX_LIMIT}")
                    })?;
            }
            "sample_rate" => {
                let rate: f64 = value
                    .parse()
                    .ok()
                    .filter(|r: &f64| *r > 0.0 && *r <= 1.0)
                    .ok_or_else(|| {
                        format!(
                            "sample_rate={value:?}: give a number above 0 and at most 1, e.g. 0.1"
                        )
                    })?;
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let every = (1.0 / rate).round().max(1.0) as u64;
                request.every = every;
            }
            other => {
                return Err(format!(
                    "unknown parameter {other:?}: the tap takes limit and sample_rate"
                ));
            }
        }
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_parameters_are_checked_and_name_the_fix() {
        let request = tap_request(Some("limit=5&sample_rate=0.25")).unwrap();
        assert_eq!((request.limit, request.every), (5, 4));
        let request = tap_request(None).unwrap();
        assert_eq!((request.limit, request.every), (TAP_DEFAULT_LIMIT, 1));
        assert!(tap_request(Some("limit=0")).unwrap_err().contains("limit"));
        assert!(
            tap_request(Some("sample_rate=2"))
                .unwrap_err()
                .contains("at most 1")
        );
        assert!(
            tap_request(Some("rate=1"))
                .unwrap_err()
                .contains("unknown parameter")
        );
    }

    #[test]
    fn a_full_table_makes_room_by_closing_the_oldest_waiting_connection() {
        let connections = Connections::new(2);
        let (mut first, none) = connections.admit().unwrap();
        assert!(none.is_none());
        let (second, _) = connections.admit().unwrap();
        second.busy.store(true, Ordering::Release);
        // Full: the oldest waiting one (first) is told to close, and the admission learns when
        // it has.
        let (third, evicted) = connections.admit().unwrap();
        let mut evicted = evicted.unwrap();
        assert_eq!(first.closed.try_recv(), Ok(()));
        assert_eq!(evicted.try_recv(), Err(oneshot::error::TryRecvError::Empty));
        drop(first);
        assert_eq!(
            evicted.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        );
        third.busy.store(true, Ordering::Release);
        // Full of busy connections: the new one is refused.
        assert!(connections.admit().is_none());
        drop(second);
        assert!(connections.admit().is_some());
    }
}
