//! Talking to Loki: the push request and the start-up `GET /ready` check.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use opentelemetry::KeyValue;

use super::metrics;
use super::sink::LokiSink;

/// What Loki's answer to `GET /ready` means for the pushes that follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyVerdict {
    /// 2xx.
    Ready,
    /// 429, 5xx (Loki starting, overloaded) or another answer pushes are retried on.
    NotYet(StatusCode),
    /// A 4xx other than 429: pushes answered alike fail for good (dead-letter queue).
    Refused {
        status: StatusCode,
        /// What it most likely means.
        cause: &'static str,
    },
}

impl ReadyVerdict {
    pub fn of(status: StatusCode) -> Self {
        match status.as_u16() {
            200..=299 => Self::Ready,
            404 => Self::Refused {
                status,
                cause: "the endpoint is wrong: no Loki at this URL, or a wrong path prefix \
                        (or a proxy in front of Loki that does not serve /ready)",
            },
            401 | 403 => Self::Refused {
                status,
                cause: "the credentials were refused: check auth (and tenant_id) for this endpoint",
            },
            429 => Self::NotYet(status),
            400..=499 => Self::Refused {
                status,
                cause: "Loki refused the request: check endpoint, auth and tenant_id",
            },
            _ => Self::NotYet(status),
        }
    }

    /// The log message for a refused check; empty for the others.
    pub fn message(&self) -> String {
        match self {
            Self::Refused { status, cause } => format!(
                "Loki's readiness check answered {status}: {cause}. Pushes answered the same way \
                 will fail and go to the dead-letter queue; they are not retried."
            ),
            _ => String::new(),
        }
    }
}

impl LokiSink {
    /// `GET /ready` (with the sink's tenant and credentials); logs what the answer means for
    /// the pushes to come.
    pub async fn healthcheck(&self) {
        let result = async {
            let uri: http::Uri = self.ready_url.parse().map_err(|e| format!("{e}"))?;
            let mut req = Request::get(uri)
                .body(Full::new(Bytes::new()))
                .map_err(|e| e.to_string())?;
            if let Some(tenant) = &self.tenant {
                req.headers_mut().insert("X-Scope-OrgID", tenant.clone());
            }
            if let Some(auth) = &self.authorization {
                req.headers_mut()
                    .insert(header::AUTHORIZATION, auth.clone());
            }
            let response = tokio::time::timeout(Duration::from_secs(5), self.client.request(req))
                .await
                .map_err(|_| "no answer within 5s".to_string())?
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(response.status())
        }
        .await;
        match result.map(ReadyVerdict::of) {
            Ok(ReadyVerdict::Ready) => {
                tracing::info!(sink = %self.key, url = %self.ready_url, "Loki is ready.")
            }
            Ok(ReadyVerdict::NotYet(status)) => {
                tracing::warn!(sink = %self.key, url = %self.ready_url, %status, "Loki is not ready yet; pushes will be retried.")
            }
            Ok(verdict @ ReadyVerdict::Refused { status, .. }) => {
                tracing::error!(sink = %self.key, url = %self.ready_url, %status, "{}", verdict.message())
            }
            Err(error) => {
                tracing::warn!(sink = %self.key, url = %self.ready_url, %error, "Loki is not reachable yet; pushes will be retried.")
            }
        }
    }

    pub(super) async fn push(
        &self,
        body: Bytes,
        content_type: &'static str,
        encoding: Option<&'static str>,
        tenant: Option<&HeaderValue>,
    ) -> Result<(StatusCode, http::HeaderMap, String), String> {
        let length = body.len();
        let mut req = Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let headers = req.headers_mut();
        if let Some(encoding) = encoding {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        if let Some(tenant) = tenant {
            headers.insert("X-Scope-OrgID", tenant.clone());
        }
        if let Some(auth) = &self.authorization {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        let started = std::time::Instant::now();
        let response = self.client.request(req).await.map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            text
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        metrics::REQUEST_DURATION.record(started.elapsed().as_secs_f64(), &self.attrs);
        metrics::SENT_BYTES.add(length as u64, &self.attrs);
        metrics::HTTP_RESPONSES.add(
            1,
            &[
                self.attrs[0].clone(),
                KeyValue::new("code", i64::from(status.as_u16())),
            ],
        );
        Ok((status, headers, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_check_says_what_a_refusal_means() {
        assert_eq!(
            ReadyVerdict::of(StatusCode::NO_CONTENT),
            ReadyVerdict::Ready
        );
        assert!(matches!(
            ReadyVerdict::of(StatusCode::SERVICE_UNAVAILABLE),
            ReadyVerdict::NotYet(_)
        ));
        let not_found = ReadyVerdict::of(StatusCode::NOT_FOUND).message();
        assert!(not_found.contains("the endpoint is wrong"), "{not_found}");
        assert!(not_found.contains("not retried"), "{not_found}");
        let denied = ReadyVerdict::of(StatusCode::UNAUTHORIZED).message();
        assert!(denied.contains("credentials were refused"), "{denied}");
    }
}
