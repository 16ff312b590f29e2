//! The docker source's telemetry. Every metric carries `component=<source name>`; none carries
//! a container id or name (containers come and go: the series count would grow without bound).
//! Names follow the predecessor's container monitor where it had them.

use crate::telemetry::{Counter, Gauge, MetricDef};

pub static CONTAINERS_WATCHED: Gauge = Gauge::new(
    "containers_watched",
    "Containers the docker source follows now (running, or stopped with lines still to drain or acknowledge).",
    &["component"],
);
pub static CONTAINER_STREAMS_ACTIVE: Gauge = Gauge::new(
    "container_streams_active",
    "Log streams the docker source has open to the Docker engine now (one per running container).",
    &["component"],
);
pub static DOCKER_EVENTS: Counter = Counter::new(
    "docker_events",
    "Container events received from the Docker engine, by action (start, die, destroy, rename).",
    &["component", "action"],
);
pub static DOCKER_RECONNECTS: Counter = Counter::new(
    "docker_reconnects",
    "Connections to the Docker engine made again after it went away (dockerd restarted, socket gone).",
    &["component"],
);
pub static DOCKER_ERRORS: Counter = Counter::new(
    "docker_errors",
    "Failures talking to the Docker engine, by reason (unavailable, events, list, inspect, logs).",
    &["component", "reason"],
);
pub static PARTIAL_MERGES: Counter = Counter::new(
    "partial_merges",
    "Lines put back together from Docker's 16 KiB partial messages.",
    &["component"],
);

/// The docker source's metrics, for its registration.
pub static METRICS: &[&MetricDef] = &[
    &CONTAINERS_WATCHED.def,
    &CONTAINER_STREAMS_ACTIVE.def,
    &DOCKER_EVENTS.def,
    &DOCKER_RECONNECTS.def,
    &DOCKER_ERRORS.def,
    &PARTIAL_MERGES.def,
    &crate::telemetry::LINES_TRUNCATED.def,
];
