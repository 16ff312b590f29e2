//! The running `loki` sink: one push per batch (the dispatcher partitions batches by tenant),
//! built once and resent as it is, classified by Loki's answer.
//!
//! Guarantees:
//! - A batch's events all have one tenant: the `tenant_label` value, else `tenant_id`. A
//!   label value that is not a tenant Loki accepts refuses the batch's events
//!   (`invalid_tenant`, to the dead-letter queue) before anything is sent.
//! - A push resent after a wait is guarded again first when Loki's window has moved past one
//!   of its entries (a dead Loki for longer than its max age): such entries are clamped,
//!   diverted or dropped by the timestamp policy instead of sent to be refused.

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
use super::stream_cap::StreamCap;
use super::streams::Prepared;
use super::template::LabelTemplate;
use super::timestamps::Learner;
use crate::dispatcher::{PartitionKey, Rejected, SendOutcome, SinkRequest, SinkService};
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
    /// The stream cap, with `max_streams`.
    pub(super) cap: Option<StreamCap>,
    pub(super) attrs: Arc<[KeyValue]>,
}

impl LokiSink {
    /// The tenant, for dead-letter records.
    pub fn tenant_id(&self) -> Option<&str> {
        self.config.tenant_id.as_deref()
    }

    /// The `X-Scope-OrgID` of a partition: the `tenant_label` value, or `tenant_id` for events
    /// without that label; `None` when the label's value is not a tenant Loki accepts.
    fn tenant_header(&self, partition: &PartitionKey) -> Result<Option<HeaderValue>, ()> {
        match partition {
            None => Ok(self.tenant.clone()),
            Some(value) => match HeaderValue::from_str(value) {
                Ok(header) if valid_tenant(value) => Ok(Some(header)),
                _ => Err(()),
            },
        }
    }

    /// Groups, guards and encodes `events`: the push, or what became of the events when none
    /// is left to send.
    fn build(
        &self,
        events: &[LogEvent],
        tenant: Option<HeaderValue>,
        replaced: Option<&LokiRequest>,
    ) -> Result<LokiRequest, SendOutcome> {
        let now = now_ns();
        let all: Vec<usize> = (0..events.len()).collect();
        let prepared = self.prepare(events, &all, now);
        self.count_guarded(&prepared, replaced.map(|r| r.prepared.guarded));
        if prepared.entries() == 0 {
            return Err(if prepared.rejected.is_empty() {
                SendOutcome::Delivered
            } else {
                SendOutcome::Partial {
                    rejected: prepared.rejected,
                }
            });
        }
        let (body, content_type, encoding) =
            self.encode(events, &prepared)
                .map_err(|detail| SendOutcome::Failed {
                    reason: "encode_error",
                    detail,
                })?;
        Ok(LokiRequest {
            prepared,
            body,
            content_type,
            encoding,
            tenant,
            built_ns: now,
        })
    }
}

/// One push, built once: streams, what the guards decided, the encoded body, the tenant.
pub(super) struct LokiRequest {
    pub(super) prepared: Prepared,
    body: Bytes,
    content_type: &'static str,
    encoding: Option<&'static str>,
    tenant: Option<HeaderValue>,
    built_ns: i64,
}

/// A request is checked for staleness only once it waited this long: the first attempt follows
/// the build at once.
const STALE_AFTER_NS: i64 = 1_000_000_000;

impl SinkService for LokiSink {
    fn partitioned(&self) -> bool {
        self.config.tenant_label.is_some()
    }

    fn partition(&self, event: &LogEvent) -> PartitionKey {
        let label = self.config.tenant_label.as_deref()?;
        event.labels.get_shared(label).cloned()
    }

    fn request(
        &self,
        batch: &EventBatch,
        partition: &PartitionKey,
    ) -> Result<SinkRequest, SendOutcome> {
        let Ok(tenant) = self.tenant_header(partition) else {
            let label = self.config.tenant_label.as_deref().unwrap_or_default();
            let detail = format!(
                "the {label} label is not a tenant ID Loki accepts (1 to 150 of A-Za-z0-9!-_.*'(), not . or ..)"
            );
            return Err(SendOutcome::Partial {
                rejected: (0..batch.len())
                    .map(|index| Rejected {
                        index,
                        reason: "invalid_tenant",
                        detail: detail.clone(),
                    })
                    .collect(),
            });
        };
        self.build(&batch.events, tenant, None)
            .map(SinkRequest::new)
    }

    fn send<'a>(
        &'a self,
        batch: &'a EventBatch,
        request: &'a mut SinkRequest,
    ) -> BoxFuture<'a, SendOutcome> {
        Box::pin(async move {
            let Some(request) = request.get_mut::<LokiRequest>() else {
                return SendOutcome::Failed {
                    reason: "encode_error",
                    detail: "a request the loki sink did not build".to_string(),
                };
            };
            let events = &batch.events;
            let now = now_ns();
            if now - request.built_ns > STALE_AFTER_NS
                && request
                    .prepared
                    .stale(&self.learner, self.config.timestamps.learned_ttl, now)
            {
                // It waited for a retry while Loki's window moved past some of its entries:
                // guard them again rather than send what Loki would refuse.
                match self.build(events, request.tenant.clone(), Some(request)) {
                    Ok(rebuilt) => *request = rebuilt,
                    Err(decided) => return decided,
                }
            }
            let answer = self
                .push(
                    request.body.clone(),
                    request.content_type,
                    request.encoding,
                    request.tenant.as_ref(),
                )
                .await;
            let (status, headers, text) = match answer {
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
            self.classify(
                events,
                &request.prepared,
                status.as_u16(),
                &text,
                retry_after,
                now_ns(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Labels;
    use crate::sinks::loki::LokiSinkConfig;
    use std::collections::BTreeMap;

    const SECOND: i64 = 1_000_000_000;

    fn event(ts: i64) -> LogEvent {
        LogEvent {
            timestamp_ns: ts,
            observed_ns: ts,
            line: Bytes::from_static(b"a line"),
            labels: Labels::new([("team", "a")]),
            metadata: Vec::new(),
            source: "app".into(),
            file: None,
            replays: 0,
            fields: Default::default(),
        }
    }

    #[test]
    fn a_push_loki_would_now_refuse_is_guarded_again_before_it_is_resent() {
        let sink = LokiSinkConfig {
            endpoint: "http://127.0.0.1:3100".into(),
            healthcheck: false,
            labels: BTreeMap::from([("job".to_string(), "app".to_string())]),
            ..LokiSinkConfig::default()
        }
        .build("loki")
        .unwrap();
        let ttl = sink.config.timestamps.learned_ttl;
        let now = now_ns();
        let events = vec![event(now - 10 * SECOND), event(now - SECOND)];
        let request = sink.build(&events, None, None).unwrap();
        assert!(!request.prepared.stale(&sink.learner, ttl, now));
        // While the push waited, Loki said it accepts nothing older than 5 s.
        sink.learner.learn_max_age(now - 5 * SECOND, now);
        assert!(request.prepared.stale(&sink.learner, ttl, now));
        let rebuilt = sink.build(&events, None, Some(&request)).unwrap();
        let entries = &rebuilt.prepared.streams[0].entries;
        assert_eq!(
            entries.iter().filter(|e| e.clamped).count(),
            1,
            "the old entry is clamped into the window by the default policy: {entries:?}"
        );
        assert!(entries.iter().all(|e| e.timestamp_ns >= now - 5 * SECOND));
        assert!(!rebuilt.prepared.stale(&sink.learner, ttl, now));
        assert_ne!(rebuilt.body, request.body);
    }

    #[test]
    fn an_invalid_tenant_label_refuses_the_batch_before_sending() {
        let sink = LokiSinkConfig {
            endpoint: "http://127.0.0.1:3100".into(),
            healthcheck: false,
            tenant_label: Some("org".into()),
            ..LokiSinkConfig::default()
        }
        .build("loki")
        .unwrap();
        let batch = EventBatch::new(
            vec![event(now_ns()), event(now_ns())],
            crate::ack::Finalizers::default(),
        );
        match sink.request(&batch, &Some("a/b".into())) {
            Err(SendOutcome::Partial { rejected }) => {
                assert_eq!(rejected.len(), 2);
                assert!(rejected.iter().all(|r| r.reason == "invalid_tenant"));
            }
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("built a request for an invalid tenant"),
        }
    }
}
