//! The HTTP API (hyper 1, HTTP/1.1).
//!
//! | method and path        | answer |
//! |------------------------|--------|
//! | `GET /health`          | 200 when every component is healthy, else 503; JSON per component |
//! | `GET /ready`           | 200 while the pipeline runs, 503 during shutdown |
//! | `GET /metrics`         | Prometheus text exposition |
//! | `GET /config`          | the running configuration as JSON, secrets redacted |
//! | `POST /config/reload`  | re-read the configuration: 200 with what was applied and what needs a restart, 400 with every error |
//! | `GET /dlq`             | each sink's dead-letter queue statistics |
//! | `POST /dlq/reprocess`  | replay the dead-letter queues now (202) |
//!
//! When `api.token` is set, `POST` requests need `Authorization: Bearer <token>` (401 without).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use log_capturer_components::shutdown::ShutdownSignal;
use serde_json::json;
use tokio::net::TcpListener;

use crate::app::App;
use crate::config::redact;

type Body = Full<Bytes>;

/// Serves the API until `shutdown` fires.
pub async fn serve(listener: TcpListener, app: Arc<App>, mut shutdown: ShutdownSignal) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.wait() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "API accept failed.");
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(&app, req).await) }
            });
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %err, "API connection ended with an error.");
            }
        });
    }
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn authorized(app: &App, req: &Request<Incoming>) -> bool {
    let config = app.config();
    let Some(token) = config.root.api.token.as_deref().filter(|t| !t.is_empty()) else {
        return true;
    };
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| given.trim() == token)
}

async fn handle(app: &App, req: Request<Incoming>) -> Response<Body> {
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
        (&Method::GET, "/metrics") => match app.telemetry.render() {
            Ok(text) => {
                let mut response = Response::new(Full::new(Bytes::from(text)));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                response
            }
            Err(err) => json_response(StatusCode::INTERNAL_SERVER_ERROR, &json!({"error": err})),
        },
        (&Method::GET, "/config") => json_response(StatusCode::OK, &redact(&app.config().raw)),
        (&Method::POST, "/config/reload") => {
            if !authorized(app, &req) {
                return json_response(
                    StatusCode::UNAUTHORIZED,
                    &json!({"error": "missing or wrong bearer token (api.token)"}),
                );
            }
            match app.reload().await {
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
            }
        }
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
            if !authorized(app, &req) {
                return json_response(
                    StatusCode::UNAUTHORIZED,
                    &json!({"error": "missing or wrong bearer token (api.token)"}),
                );
            }
            for dlq in app.dlqs().values() {
                dlq.trigger_reprocess();
            }
            json_response(
                StatusCode::ACCEPTED,
                &json!({"status": "reprocessing", "sinks": app.dlqs().keys().collect::<Vec<_>>()}),
            )
        }
        (
            _,
            "/health" | "/ready" | "/metrics" | "/config" | "/config/reload" | "/dlq"
            | "/dlq/reprocess",
        ) => json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": format!("{} is not allowed here", req.method())}),
        ),
        (_, path) => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("no such endpoint: {path}"),
                    "endpoints": ["/health", "/ready", "/metrics", "/config", "/config/reload", "/dlq", "/dlq/reprocess"]}),
        ),
    }
}
