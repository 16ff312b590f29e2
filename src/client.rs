//! A minimal HTTP client for the `health` command and for tests: one request, whole body.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Sends one request and returns the status and body. `url` is `http://host:port/path`.
pub async fn request(
    method: Method,
    url: &str,
    bearer: Option<&str>,
) -> Result<(StatusCode, String), String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut builder = Request::builder().method(method).uri(url);
    if let Some(token) = bearer {
        builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = builder
        .body(Full::new(Bytes::new()))
        .map_err(|err| format!("bad request for {url}: {err}"))?;
    let response = client
        .request(req)
        .await
        .map_err(|err| format!("cannot reach {url}: {err}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|err| format!("reading the answer of {url} failed: {err}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
