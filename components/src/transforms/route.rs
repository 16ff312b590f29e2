//! The `route` transform: sends each event to the named outputs whose condition it matches
//! (Vector's model). Downstream components read an output as `KEY.NAME`, and `KEY._unmatched`
//! gets the events no route matched. The conditions are [`super::condition`]'s, the same as
//! `filter`'s.
//!
//! Guarantees:
//! - Every route is tried on every event; an event matching several routes goes to each of
//!   them (a copy each: lines and labels are shared, not copied). An event matching none goes
//!   to `_unmatched`. Events keep their order within each output.
//! - Acknowledgements wait for every copy: each output's batch carries a copy of the input
//!   batch's finalizers, as a fan-out's forks do, so the source hears of a batch only once
//!   every output's copy is settled, with the worst status of them.
//! - An event that goes nowhere (it matched only routes nobody reads, or none while nobody
//!   reads `_unmatched`) is dropped, counted in `dropped_total{reason="unrouted"}`, and
//!   acknowledged as handled: file positions advance past it.
//! - `route_events_total{component,output}` counts what each output was given, per batch.

use std::collections::BTreeMap;

use opentelemetry::KeyValue;
use serde::{Deserialize, Serialize};

use super::condition::{Condition, Matcher};
use crate::ack::BatchStatus;
use crate::component::{
    Component, RouteTransform, Transform, TransformComponent, TransformContext, config_build_error,
};
use crate::config::{ConfigError, join_path};
use crate::event::{LogEvent, now_ns};
use crate::telemetry::{ComponentAttrs, Counter, MetricDef};
use crate::{BuildError, EventBatch};

/// The output that gets the events no route matched.
pub const UNMATCHED: &str = "_unmatched";

static ROUTE_EVENTS: Counter = Counter::new(
    "route_events",
    "Events a route transform sent to each of its outputs (an event matching several routes \
     counts once for each).",
    &["component", "output"],
);

/// Every metric of the route transform.
pub static METRICS: &[&MetricDef] = &[&ROUTE_EVENTS.def];

/// Configuration of the `route` transform.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteConfig {
    /// Route name -> the condition an event must meet to go to it (the keys of `filter`:
    /// `pattern`, `older_than`, `longer_than`, `labels`, `fields`). At least one.
    pub routes: BTreeMap<String, Condition>,
}

impl Component for RouteConfig {
    const TYPE: &'static str = "route";
    const METRICS: &'static [&'static MetricDef] = METRICS;

    fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        self.router(prefix).err().unwrap_or_default()
    }
}

impl TransformComponent for RouteConfig {
    fn build(&self, cx: TransformContext<Self>) -> Result<Transform, BuildError> {
        self.router(&cx.key)
            .map(Transform::route)
            .map_err(|errors| config_build_error(&cx.key, errors))
    }

    fn outputs(&self) -> Vec<String> {
        self.routes
            .keys()
            .cloned()
            .chain([UNMATCHED.to_string()])
            .collect()
    }
}

/// A route name is read as part of `KEY.NAME`: the characters of component names, and not
/// the reserved `_unmatched`.
fn route_name_error(prefix: &str, name: &str) -> Option<ConfigError> {
    let path = join_path(&join_path(prefix, "routes"), name);
    if name == UNMATCHED {
        return Some(
            ConfigError::new(path, "`_unmatched` is reserved").with_hint(
                "it is the output of the events no route matched; name the route otherwise",
            ),
        );
    }
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    (!valid).then(|| {
        ConfigError::new(path, format!("{name:?} is not a route name"))
            .with_hint("use letters, digits, `_` and `-`")
    })
}

impl RouteConfig {
    /// The running transform; `key` is its name (errors are named by their keys under it).
    pub fn router(&self, key: &str) -> Result<Router, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if self.routes.is_empty() {
            errors.push(
                ConfigError::new(join_path(key, "routes"), "no route is given").with_hint(
                    "e.g. `routes: {errors: {pattern: ERROR}}`, read as `inputs: [KEY.errors]`",
                ),
            );
        }
        let mut routes = Vec::new();
        for (name, condition) in &self.routes {
            errors.extend(route_name_error(key, name));
            match condition.compile(&join_path(&join_path(key, "routes"), name)) {
                Ok(matcher) => routes.push(matcher),
                Err(errs) => errors.extend(errs),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let attrs = ComponentAttrs::new(key);
        let output_attrs = self
            .outputs()
            .into_iter()
            .map(|output| {
                [
                    KeyValue::new("component", key.to_string()),
                    KeyValue::new("output", output),
                ]
            })
            .collect();
        Ok(Router {
            reads_clock: routes.iter().any(Matcher::reads_clock),
            routes,
            output_attrs,
            attrs,
            targets: Vec::new(),
        })
    }
}

/// The running `route` transform.
#[derive(Debug)]
pub struct Router {
    /// In the order of the route names; `_unmatched` is the output after the last.
    routes: Vec<Matcher>,
    reads_clock: bool,
    /// `component, output` of each output, built once.
    output_attrs: Vec<[KeyValue; 2]>,
    attrs: ComponentAttrs,
    /// The outputs one event goes to (reused).
    targets: Vec<usize>,
}

impl RouteTransform for Router {
    fn route(&mut self, mut batch: EventBatch, read: &[bool]) -> Vec<EventBatch> {
        let unmatched = self.routes.len();
        // An output the caller did not describe is not read: its events are dropped and
        // acknowledged here rather than lost unsettled downstream.
        let is_read = |output: usize| read.get(output).copied().unwrap_or(false);
        let now = if self.reads_clock { now_ns() } else { 0 };
        let mut outputs: Vec<Vec<LogEvent>> = (0..=unmatched).map(|_| Vec::new()).collect();
        let mut unrouted = 0usize;
        let Self {
            routes, targets, ..
        } = self;
        for event in batch.events.drain(..) {
            targets.clear();
            let mut matched = false;
            for (output, matcher) in routes.iter().enumerate() {
                if matcher.matches(&event, now) {
                    matched = true;
                    if is_read(output) {
                        targets.push(output);
                    }
                }
            }
            if !matched && is_read(unmatched) {
                targets.push(unmatched);
            }
            match targets.split_last() {
                None => unrouted += 1,
                Some((&last, rest)) => {
                    for &output in rest {
                        outputs[output].push(event.clone());
                    }
                    outputs[last].push(event);
                }
            }
        }
        if unrouted > 0 {
            self.attrs.dropped(unrouted, "unrouted");
        }
        let routed = outputs
            .into_iter()
            .zip(&self.output_attrs)
            .map(|(events, attrs)| {
                if events.is_empty() {
                    return EventBatch::default();
                }
                ROUTE_EVENTS.add(events.len() as u64, attrs);
                EventBatch::new(events, batch.finalizers.clone())
            })
            .collect();
        // The input's own share: its events are in the copies above, or were handled here.
        batch.finalizers.settle(BatchStatus::Delivered);
        routed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::{BatchNotifier, Finalizers};
    use crate::registry::TransformConfig;
    use crate::transforms::condition::ValueMatch;
    use crate::transforms::testing::batch;
    use bytes::Bytes;
    use serde_json::json;

    /// `errors` (lines with ERROR), `pay` (field team=pay), then `_unmatched`.
    fn config() -> RouteConfig {
        RouteConfig {
            routes: BTreeMap::from([
                (
                    "errors".to_string(),
                    Condition {
                        pattern: Some("ERROR".into()),
                        ..Condition::default()
                    },
                ),
                (
                    "pay".to_string(),
                    Condition {
                        fields: BTreeMap::from([("team".into(), ValueMatch::Equals("pay".into()))]),
                        ..Condition::default()
                    },
                ),
            ]),
        }
    }

    fn lines(batch: &EventBatch) -> Vec<&[u8]> {
        batch.events.iter().map(|e| &e.line[..]).collect()
    }

    fn input() -> EventBatch {
        let mut b = batch(&[b"ERROR disk", b"info pay ok", b"ERROR pay", b"info"]);
        for i in [1, 2] {
            b.events[i]
                .fields
                .insert("team", Bytes::from_static(b"pay"));
        }
        b
    }

    #[test]
    fn outputs_are_the_routes_then_unmatched() {
        assert_eq!(config().outputs(), ["errors", "pay", "_unmatched"]);
    }

    #[test]
    fn each_event_goes_to_every_route_it_matches_or_to_unmatched() {
        let mut router = config().router("r").unwrap();
        let out = router.route(input(), &[true, true, true]);
        assert_eq!(out.len(), 3);
        assert_eq!(lines(&out[0]), [&b"ERROR disk"[..], b"ERROR pay"]);
        assert_eq!(lines(&out[1]), [&b"info pay ok"[..], b"ERROR pay"]);
        assert_eq!(lines(&out[2]), [&b"info"[..]]);
    }

    #[test]
    fn events_for_no_read_output_are_dropped() {
        let mut router = config().router("r").unwrap();
        // Nobody reads `pay` nor `_unmatched`: "info pay ok" and "info" go nowhere; "ERROR pay"
        // still goes to `errors`.
        let out = router.route(input(), &[true, false, false]);
        assert_eq!(lines(&out[0]), [&b"ERROR disk"[..], b"ERROR pay"]);
        assert!(out[1].is_empty() && out[2].is_empty());
        // An output the caller does not describe counts as not read.
        let out = router.route(input(), &[]);
        assert!(out.iter().all(EventBatch::is_empty));
    }

    #[tokio::test]
    async fn the_source_is_acknowledged_once_every_copy_is() {
        let mut router = config().router("r").unwrap();
        let (notifier, status) = BatchNotifier::new_with_receiver();
        let mut b = input();
        b.finalizers = Finalizers::new(notifier);
        let mut out = router.route(b, &[true, true, true]);
        let status = tokio::spawn(status);
        out[0].finalizers.settle(BatchStatus::Delivered);
        out[2].finalizers.settle(BatchStatus::Delivered);
        drop(out.remove(0));
        tokio::task::yield_now().await;
        assert!(!status.is_finished(), "the `pay` copy is not settled yet");
        // The worst status of the copies wins.
        out[0].finalizers.settle(BatchStatus::Errored);
        drop(out);
        assert_eq!(status.await.unwrap(), BatchStatus::Errored);
    }

    #[tokio::test]
    async fn a_batch_that_goes_nowhere_is_acknowledged_as_handled() {
        let mut router = config().router("r").unwrap();
        let (notifier, status) = BatchNotifier::new_with_receiver();
        let mut b = batch(&[b"info", b"debug"]);
        b.finalizers = Finalizers::new(notifier);
        let out = router.route(b, &[true, true, false]);
        assert!(out.iter().all(EventBatch::is_empty));
        drop(out);
        assert_eq!(status.await, BatchStatus::Delivered);
    }

    #[test]
    fn bad_routes_name_their_keys() {
        let errors = RouteConfig::default().validate("transforms.r");
        assert_eq!(errors[0].path, "transforms.r.routes");

        let errors = TransformConfig::parse(
            "transforms.r",
            "route",
            json!({"routes": {
                "_unmatched": {"pattern": "x"},
                "a.b": {"pattern": "x"},
                "bad": {"pattern": "("},
                "empty": {},
            }}),
        )
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "transforms.r.routes._unmatched",
                "transforms.r.routes.a.b",
                "transforms.r.routes.bad.pattern",
                "transforms.r.routes.empty.pattern",
            ]
        );

        let errors = TransformConfig::parse(
            "transforms.r",
            "route",
            json!({"routes": {"a": {"patern": "x"}}}),
        )
        .unwrap_err();
        assert_eq!(errors[0].path, "transforms.r.routes.a.patern");
    }

    #[test]
    fn the_registry_builds_it_with_its_outputs() {
        let parsed = TransformConfig::parse(
            "transforms.r",
            "route",
            json!({"routes": {"errors": {"pattern": "ERROR"}}}),
        )
        .unwrap();
        assert_eq!(parsed.outputs(), ["errors", "_unmatched"]);
        let (transform, _) = parsed.build("r").unwrap();
        assert!(matches!(transform, Transform::Route(_)));
    }
}
