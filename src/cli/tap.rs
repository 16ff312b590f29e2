//! `log-capturer tap COMPONENT`: prints a sample of the events leaving a source or transform
//! of a running instance, one JSON object per line (`component`, `timestamp`, `line`,
//! `labels`, `source`), as the API's `GET /tap/COMPONENT` streams them.
//!
//! Guarantees: lines are printed as they arrive (flushed each time); the command ends with 0
//! once `--limit` events were printed, and with 1 when the API refuses (unknown component,
//! missing token, bad flag: its message on standard error) or cannot be reached. The
//! pipeline never waits for the tapper (see `src/tap.rs`): a slow terminal loses events,
//! counted in `tap_dropped_total`.

use std::io::Write as _;
use std::process::ExitCode;

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::api_target;
use crate::config::ConfigSource;

/// The arguments of `tap`.
#[derive(Debug, Clone)]
pub struct TapArgs {
    pub component: String,
    pub url: Option<String>,
    pub token: Option<String>,
    pub limit: u64,
    pub sample_rate: f64,
}

/// Runs the command.
pub async fn run(source: &ConfigSource, args: TapArgs) -> ExitCode {
    let (base, token) = api_target(source, args.url.clone(), args.token.clone());
    let url = format!(
        "{base}/tap/{}?limit={}&sample_rate={}",
        args.component, args.limit, args.sample_rate
    );
    match stream(&url, token.as_deref()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}

async fn stream(url: &str, token: Option<&str>) -> Result<(), String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut builder = Request::builder().method(Method::GET).uri(url);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = builder
        .body(Full::new(Bytes::new()))
        .map_err(|err| format!("bad request for {url}: {err}"))?;
    let response = client.request(request).await.map_err(|err| {
        format!("cannot reach {url}: {err} (hint: is log-capturer running? --url)")
    })?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        let hint = if status == http::StatusCode::UNAUTHORIZED {
            " (hint: --token, or api.token in the configuration)"
        } else {
            ""
        };
        return Err(format!(
            "the tap was refused ({status}): {}{hint}",
            text.trim()
        ));
    }
    let mut stdout = std::io::stdout().lock();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| format!("the tap stream broke: {err}"))?;
        if let Some(data) = frame.data_ref() {
            stdout
                .write_all(data)
                .and_then(|()| stdout.flush())
                .map_err(|err| format!("cannot write to standard output: {err}"))?;
        }
    }
    Ok(())
}
