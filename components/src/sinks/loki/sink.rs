//! The running `loki` sink: one push per tenant for each batch, classified by Loki's answer.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderValue, header};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry::KeyValue;

use super::config::{LokiSinkConfig, valid_tenant};
use super::response::parse_retry_after;
use super::streams::TenantGroup;
use super::template::LabelTemplate;
use super::timestamps::Learner;
use crate::dispatcher::{Rejected, SendOutcome, SinkService};
use crate::event::{EventBatch, LogEvent, now_ns};

/// The running `loki` sink.
pub struct LokiSink {
    pub(super) key: String,
    pub(super) url: http::Uri,
    pub(super) ready_url: String,
    pub(super) config: LokiSinkConfig,
    pub(super) client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    pub(super) authorization: Option<HeaderValue>,
    pub(super) tenant: Option<HeaderValue>,
    pub(super) learner: Learner,
    /// The `labels` setting, parsed.
    pub(super) templates: Vec<(String, LabelTemplate)>,
    pub(super) attrs: Arc<[KeyValue]>,
}

impl LokiSink {
    /// The tenant, for dead-letter records.
    pub fn tenant_id(&self) -> Option<&str> {
        self.config.tenant_id.as_deref()
    }

    /// One push for the events at `indexes`, for one tenant.
    async fn send_group(
        &self,
        events: &[LogEvent],
        indexes: &[usize],
        tenant: Option<&HeaderValue>,
        now: i64,
    ) -> SendOutcome {
        let prepared = self.prepare(events, indexes, now);
        if prepared.dropped > 0 {
            crate::telemetry::ComponentAttrs::new(&self.key)
                .dropped(prepared.dropped, "timestamp_too_old");
        }
        let to_send: usize = prepared.streams.iter().map(|s| s.entries.len()).sum();
        if to_send == 0 {
            return if prepared.rejected.is_empty() {
                SendOutcome::Delivered
            } else {
                SendOutcome::Partial {
                    rejected: prepared.rejected,
                }
            };
        }
        let (body, content_type, encoding) = match self.encode(events, &prepared) {
            Ok(encoded) => encoded,
            Err(detail) => {
                return SendOutcome::Failed {
                    reason: "encode_error",
                    detail,
                };
            }
        };
        let (status, headers, text) = match self.push(body, content_type, encoding, tenant).await {
            Ok(answer) => answer,
            Err(detail) => {
                return SendOutcome::Retry {
                    reason: "connection",
                    detail,
                    retry_after: None,
                };
            }
        };
        let retry_after = headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        self.classify(events, prepared, status.as_u16(), &text, retry_after, now)
    }

    /// The events' indexes by tenant (`tenant_label`, else `tenant_id`); events whose label
    /// is not a valid header value are returned apart.
    fn by_tenant(&self, events: &[LogEvent], label: &str) -> (Vec<TenantGroup>, Vec<usize>) {
        let mut groups: Vec<TenantGroup> = Vec::new();
        let mut invalid = Vec::new();
        for (index, event) in events.iter().enumerate() {
            let tenant = match event.labels.get(label) {
                Some(value) => match HeaderValue::from_str(value) {
                    Ok(header) if valid_tenant(value) => Some(header),
                    _ => {
                        invalid.push(index);
                        continue;
                    }
                },
                None => self.tenant.clone(),
            };
            match groups.iter_mut().find(|(t, _)| *t == tenant) {
                Some((_, list)) => list.push(index),
                None => groups.push((tenant, vec![index])),
            }
        }
        (groups, invalid)
    }
}

impl SinkService for LokiSink {
    fn send<'a>(&'a self, batch: &'a EventBatch) -> BoxFuture<'a, SendOutcome> {
        Box::pin(async move {
            let now = now_ns();
            let events = &batch.events;
            let Some(label) = self.config.tenant_label.as_deref() else {
                let all: Vec<usize> = (0..events.len()).collect();
                return self
                    .send_group(events, &all, self.tenant.as_ref(), now)
                    .await;
            };
            // One push per tenant. A retry resends every tenant's push: those already stored
            // are exact duplicates, which Loki drops.
            let (groups, invalid) = self.by_tenant(events, label);
            let mut rejected: Vec<Rejected> = invalid
                .into_iter()
                .map(|index| Rejected {
                    index,
                    reason: "invalid_tenant",
                    detail: format!(
                        "the {label} label is not a tenant ID Loki accepts (1 to 150 of A-Za-z0-9!-_.*'(), not . or ..)"
                    ),
                })
                .collect();
            let mut retry = None;
            let mut too_large = None;
            for (tenant, indexes) in &groups {
                match self.send_group(events, indexes, tenant.as_ref(), now).await {
                    SendOutcome::Delivered => {}
                    SendOutcome::Partial { rejected: more } => rejected.extend(more),
                    SendOutcome::Failed { reason, detail } => {
                        rejected.extend(indexes.iter().map(|&index| Rejected {
                            index,
                            reason,
                            detail: detail.clone(),
                        }))
                    }
                    outcome @ SendOutcome::Retry { .. } => {
                        retry.get_or_insert(outcome);
                    }
                    SendOutcome::TooLarge { detail } => too_large = Some(detail),
                }
            }
            if let Some(outcome) = retry {
                outcome
            } else if let Some(detail) = too_large {
                SendOutcome::TooLarge { detail }
            } else if rejected.is_empty() {
                SendOutcome::Delivered
            } else {
                SendOutcome::Partial { rejected }
            }
        })
    }
}
