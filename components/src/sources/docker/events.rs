//! What the docker source tells operators: one type per event, each logging, counting and
//! marking health together (see [`TelemetryEvent`]). Container names and ids go to the log
//! only, never to a metric label.

use opentelemetry::KeyValue;

use super::metrics;
use crate::telemetry::{ComponentAttrs, HealthHandle, LogThrottle, TelemetryEvent};

/// The Docker engine cannot be reached (socket missing, refused, dockerd restarting). Marks the
/// source unhealthy with the reason unless the socket is optional; rate-limited.
pub(super) struct DockerUnavailable<'a> {
    pub(super) attrs: &'a ComponentAttrs,
    pub(super) health: &'a HealthHandle,
    pub(super) endpoint: &'a str,
    pub(super) error: &'a str,
    pub(super) required: bool,
    pub(super) log: &'a mut LogThrottle,
}

impl TelemetryEvent for DockerUnavailable<'_> {
    fn emit(self) {
        metrics::DOCKER_ERRORS.add(1, &self.attrs.with_reason("unavailable"));
        let detail = format!(
            "Docker engine unavailable at {}: {}; retrying (containers are followed once it answers)",
            self.endpoint, self.error
        );
        if self.required {
            self.health.unhealthy(detail.clone());
        }
        if let Some(held_back) = self.log.ready() {
            if self.required {
                tracing::warn!(source = %self.attrs.key(), endpoint = %self.endpoint, error = %self.error, failures_since_last_report = held_back, "Docker engine unavailable; retrying with backoff.");
            } else {
                tracing::info!(source = %self.attrs.key(), endpoint = %self.endpoint, error = %self.error, "No Docker engine here; containers are followed once one answers.");
            }
        }
    }
}

/// Connected to the engine (again, when `reconnect`).
pub(super) struct DockerConnected<'a> {
    pub(super) attrs: &'a ComponentAttrs,
    pub(super) health: &'a HealthHandle,
    pub(super) endpoint: &'a str,
    pub(super) api_version: &'a str,
    pub(super) reconnect: bool,
}

impl TelemetryEvent for DockerConnected<'_> {
    fn emit(self) {
        self.health.healthy();
        if self.reconnect {
            metrics::DOCKER_RECONNECTS.add(1, &self.attrs.component);
            tracing::info!(source = %self.attrs.key(), endpoint = %self.endpoint, api_version = %self.api_version, "Connected to the Docker engine again.");
        } else {
            tracing::info!(source = %self.attrs.key(), endpoint = %self.endpoint, api_version = %self.api_version, "Connected to the Docker engine.");
        }
    }
}

/// A container event from the engine's event stream.
pub(super) struct ContainerEventReceived<'a> {
    pub(super) attrs: &'a ComponentAttrs,
    /// One of the actions subscribed to (a fixed set: the label stays bounded).
    pub(super) action: &'static str,
    pub(super) id: &'a str,
}

impl TelemetryEvent for ContainerEventReceived<'_> {
    fn emit(self) {
        metrics::DOCKER_EVENTS.add(
            1,
            &[
                KeyValue::new("component", self.attrs.key().to_string()),
                KeyValue::new("action", self.action),
            ],
        );
        tracing::debug!(source = %self.attrs.key(), container = %self.id, action = self.action, "Container event.");
    }
}

/// A request about one container failed (inspect, logs); it is tried again with backoff.
pub(super) struct ContainerRequestFailed<'a> {
    pub(super) attrs: &'a ComponentAttrs,
    pub(super) reason: &'static str,
    pub(super) container: &'a str,
    pub(super) error: &'a dyn std::fmt::Display,
    pub(super) log: &'a mut LogThrottle,
}

impl TelemetryEvent for ContainerRequestFailed<'_> {
    fn emit(self) {
        metrics::DOCKER_ERRORS.add(1, &self.attrs.with_reason(self.reason));
        if let Some(held_back) = self.log.ready() {
            tracing::warn!(source = %self.attrs.key(), container = %self.container, reason = self.reason, error = %self.error, failures_since_last_report = held_back, "Docker request failed; retrying with backoff.");
        }
    }
}

/// A batch of a container was not delivered: its cursor stays where it is for the rest of the
/// run, so a restart reads those lines again.
pub(super) struct ContainerBatchNotDelivered<'a> {
    pub(super) attrs: &'a ComponentAttrs,
    pub(super) container: &'a str,
    pub(super) committed_ns: i64,
}

impl TelemetryEvent for ContainerBatchNotDelivered<'_> {
    fn emit(self) {
        self.attrs.error("not_delivered");
        tracing::warn!(source = %self.attrs.key(), container = %self.container, committed_ns = self.committed_ns, "A batch of this container was not delivered; its cursor stays here until a restart reads it again.");
    }
}

/// Saving the containers' positions failed; retried at the next flush. Rate-limited.
pub(super) struct PositionsSaveFailed<'a> {
    pub(super) attrs: &'a ComponentAttrs,
    pub(super) what: &'static str,
    pub(super) error: &'a dyn std::fmt::Display,
    pub(super) log: &'a mut LogThrottle,
}

impl TelemetryEvent for PositionsSaveFailed<'_> {
    fn emit(self) {
        self.attrs.error("position_save");
        if let Some(held_back) = self.log.ready() {
            tracing::error!(source = %self.attrs.key(), what = self.what, error = %self.error, failures_since_last_report = held_back, "Container positions could not be saved; retrying.");
        }
    }
}
