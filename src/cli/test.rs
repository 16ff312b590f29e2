//! `log-capturer test --config FILE`: runs the configuration's `tests:` entries (see
//! `config/pipeline_tests.rs`) through the stages, in this process, and reports every mismatch.
//!
//! Guarantees:
//! - Nothing outside the process is touched: no source reads, no sink is built, no data
//!   directory is created; each test builds its own stages, so no state (a dedup cache, a
//!   multiline buffer) passes from one test to the next.
//! - Every mismatch of every test is reported, each naming the test, the event, the field and,
//!   where the events can be followed stage by stage, the stage that gave the field its value.
//! - A test that ends at a route stage reports, passed or not, which of the route's outputs
//!   each event reached (every output counts as read there, so an event no route matched
//!   reaches `_unmatched`).
//! - Exit 0 when every test passed; 1 when one failed, the configuration is invalid, or it has
//!   no tests.

use std::collections::BTreeMap;
use std::process::ExitCode;

use bytes::Bytes;
use futures::StreamExt;
use log_capturer_components::ack::Finalizers;
use log_capturer_components::event::{EventBatch, Labels, LogEvent, now_ns};
use log_capturer_components::{EventStream, RouteTransform, Transform};

use crate::config::pipeline_tests::{Expected, PipelineTest, format_time};
use crate::config::{self, Config, ConfigSource};

/// Runs every test of the configuration; prints one line per test and each mismatch.
pub fn run(source: &ConfigSource, runtime: &tokio::runtime::Runtime) -> ExitCode {
    let config = match config::load(source) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    if config.tests.is_empty() {
        eprintln!(
            "No tests: the configuration has no `tests:` entries (see docs/configuration.md, \"Pipeline tests\")."
        );
        return ExitCode::FAILURE;
    }
    let mut failed = 0;
    for test in &config.tests {
        let mut routed = Vec::new();
        match run_one(&config, test, runtime, &mut routed) {
            Ok(()) => println!("test {:?} ... ok", test.name),
            Err(mismatches) => {
                failed += 1;
                println!(
                    "test {:?} ... FAILED ({})",
                    test.name, test.plan.description
                );
                for mismatch in mismatches {
                    println!("  - test {:?}: {mismatch}", test.name);
                }
            }
        }
        for line in routed {
            println!("  {line}");
        }
    }
    let total = config.tests.len();
    println!(
        "{} test(s): {} passed, {failed} failed.",
        total,
        total - failed
    );
    super::exit_code(failed == 0)
}

/// The events after one step of a test: the input, then each stage's output.
struct Step {
    name: String,
    events: Vec<LogEvent>,
}

/// Runs one test; `Err` holds every mismatch. A test ending at a route stage says in `routed`
/// which outputs each event reached.
fn run_one(
    config: &Config,
    test: &PipelineTest,
    runtime: &tokio::runtime::Runtime,
    routed: &mut Vec<String>,
) -> Result<(), Vec<String>> {
    let plan = &test.plan;
    // What each step emitted, by the name its readers give: a source or transform, or a
    // route's output (`r.NAME`).
    let mut outputs: BTreeMap<String, Vec<LogEvent>> = BTreeMap::new();
    outputs.insert(plan.source.clone(), input_events(config, test));
    let mut steps = vec![Step {
        name: plan.source.clone(),
        events: outputs[&plan.source].clone(),
    }];
    // For the route the test ends at: the outputs each of its events reached.
    let mut reached: Vec<Vec<String>> = Vec::new();
    for stage in &plan.order {
        let Some(spec) = config.transforms.get(stage) else {
            return Err(vec![format!("stage `{stage}` is not in the configuration")]);
        };
        let stage_inputs = plan.inputs.get(stage).cloned().unwrap_or_default();
        let events: Vec<LogEvent> = stage_inputs
            .iter()
            .flat_map(|input| outputs.get(input).cloned().unwrap_or_default())
            .collect();
        if let [input] = stage_inputs.as_slice()
            && input.contains('.')
        {
            // A route's output is a step of its own: what the route gave this stage.
            steps.push(Step {
                name: input.clone(),
                events: events.clone(),
            });
        }
        let transform = match spec.config.build(stage) {
            Ok((transform, _settings)) => transform,
            Err(err) => return Err(vec![format!("stage `{stage}` cannot be built: {err}")]),
        };
        let out = match transform {
            Transform::Route(router) => {
                let names = spec.config.outputs();
                let split = route(router, &names, &events);
                for (name, events) in names.iter().zip(split.per_output) {
                    outputs.insert(format!("{stage}.{name}"), events);
                }
                if plan.route.as_ref() == Some(stage) {
                    reached = split.reached;
                }
                events
            }
            other => runtime.block_on(apply(other, events)),
        };
        steps.push(Step {
            name: stage.clone(),
            events: out.clone(),
        });
        outputs.insert(stage.clone(), out);
    }
    let got: Vec<LogEvent> = plan
        .collect
        .iter()
        .flat_map(|name| outputs.get(name).cloned().unwrap_or_default())
        .collect();
    if let [collected] = plan.collect.as_slice()
        && collected.contains('.')
    {
        steps.push(Step {
            name: collected.clone(),
            events: got.clone(),
        });
    }
    if let Some(route) = &plan.route {
        for (index, names) in reached.iter().enumerate() {
            let names: Vec<String> = names.iter().map(|n| format!("`{route}.{n}`")).collect();
            routed.push(format!("event {}: reached {}", index + 1, names.join(", ")));
        }
    }
    // Events can be followed stage by stage when the stages form one chain and none dropped,
    // split or merged events: then event i of every step is the same event.
    let linear = plan.collect.len() == 1
        && plan.order.iter().all(|stage| {
            plan.inputs
                .get(stage)
                .is_some_and(|inputs| inputs.len() == 1)
        });
    let traceable = linear && steps.iter().all(|step| step.events.len() == got.len());
    let last_stage = steps.last().map_or("the input", |step| step.name.as_str());

    let mut mismatches = Vec::new();
    if got.len() != test.expect.len() {
        let mut changes = Vec::new();
        for pair in steps.windows(2) {
            if pair[0].events.len() != pair[1].events.len() && linear {
                changes.push(format!(
                    "stage `{}` took {} and gave {}",
                    pair[1].name,
                    pair[0].events.len(),
                    pair[1].events.len()
                ));
            }
        }
        let why = if changes.is_empty() {
            String::new()
        } else {
            format!(" ({})", changes.join(", "))
        };
        mismatches.push(format!(
            "expected {} event(s) out of {}, got {}{why}",
            test.expect.len(),
            last_stage,
            got.len()
        ));
    }
    for (index, (expected, event)) in test.expect.iter().zip(&got).enumerate() {
        let culprit = |field: &FieldOf| -> String {
            if !traceable {
                return format!("out of stage `{last_stage}`");
            }
            let value = field(event);
            // The earliest step from which the value stayed what it is at the end.
            let mut setter = steps.len() - 1;
            while setter > 0 && field(&steps[setter - 1].events[index]) == value {
                setter -= 1;
            }
            if setter == 0 {
                "no stage changed it".to_string()
            } else {
                format!("set by stage `{}`", steps[setter].name)
            }
        };
        compare(expected, event, index + 1, &culprit, &mut mismatches);
        if let Some(want) = &expected.outputs {
            let mut want = want.clone();
            want.sort();
            let mut have = reached.get(index).cloned().unwrap_or_default();
            have.sort();
            if want != have {
                mismatches.push(format!(
                    "event {}: outputs: expected [{}], got [{}] (out of stage `{last_stage}`)",
                    index + 1,
                    want.join(", "),
                    have.join(", ")
                ));
            }
        }
    }
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(mismatches)
    }
}

/// The input event(s) as the source would emit them.
fn input_events(config: &Config, test: &PipelineTest) -> Vec<LogEvent> {
    let input = &test.input;
    let mut labels: BTreeMap<String, String> = config
        .sources
        .get(&test.plan.source)
        .map(|spec| spec.config.static_labels())
        .unwrap_or_default();
    labels.extend(input.labels.clone());
    let labels = Labels::new(labels);
    let mut fields = log_capturer_components::fields::Fields::new();
    for (name, value) in &input.fields {
        fields.insert(name.as_str(), Bytes::copy_from_slice(value.as_bytes()));
    }
    let time = input.timestamp.map_or_else(now_ns, |t| t.0);
    let lines: Vec<&String> = input.line.iter().chain(&input.lines).collect();
    lines
        .into_iter()
        .map(|line| LogEvent {
            timestamp_ns: time,
            observed_ns: time,
            line: Bytes::copy_from_slice(line.as_bytes()),
            labels: labels.clone(),
            metadata: Vec::new(),
            source: test.plan.source.as_str().into(),
            file: input.file.as_deref().map(Into::into),
            replays: 0,
            fields: fields.clone(),
        })
        .collect()
}

/// What a route stage did with a test's events.
struct Split {
    /// What each output got, in the order of the route's outputs.
    per_output: Vec<Vec<LogEvent>>,
    /// The outputs each event reached, in the order of the events.
    reached: Vec<Vec<String>>,
}

/// A route stage over the events, one event at a time so each event's outputs are known, every
/// output taken as read (so an event matching no route shows as reaching `_unmatched`).
fn route(mut router: Box<dyn RouteTransform>, names: &[String], events: &[LogEvent]) -> Split {
    let read = vec![true; names.len()];
    let mut split = Split {
        per_output: vec![Vec::new(); names.len()],
        reached: Vec::new(),
    };
    for event in events {
        let batch = EventBatch::new(vec![event.clone()], Finalizers::default());
        let parts = router.route(batch, &read);
        let mut reached = Vec::new();
        for ((part, name), out) in parts.into_iter().zip(names).zip(&mut split.per_output) {
            if !part.is_empty() {
                reached.push(name.clone());
                out.extend(part.events);
            }
        }
        split.reached.push(reached);
    }
    split
}

/// One stage over the events, as the topology drives it; a stream stage sees its input end.
async fn apply(transform: Transform, events: Vec<LogEvent>) -> Vec<LogEvent> {
    let batch = EventBatch::new(events, Finalizers::default());
    match transform {
        Transform::Function(mut function) => {
            let mut batch = batch;
            function.transform(&mut batch);
            batch.events
        }
        Transform::Stream(stream) => {
            let input: EventStream = Box::pin(futures::stream::iter([batch]));
            stream
                .transform(input)
                .flat_map(|batch| futures::stream::iter(batch.events))
                .collect()
                .await
        }
        // A route changes no event; `run_one` splits them over its outputs with [`route`].
        Transform::Route(_) => batch.events,
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn shown(value: Option<&String>) -> String {
    value.map_or_else(|| "nothing".to_string(), |v| format!("{v:?}"))
}

/// Reads one field of an event, as text (`None`: absent).
type FieldOf = dyn Fn(&LogEvent) -> Option<String>;

/// Every difference between `expected` and `event`, one line each; `culprit` names the stage
/// that gave a field its value.
fn compare(
    expected: &Expected,
    event: &LogEvent,
    number: usize,
    culprit: &dyn Fn(&FieldOf) -> String,
    out: &mut Vec<String>,
) {
    let mut report = |field: &str, want: String, got: String, who: String| {
        out.push(format!(
            "event {number}: {field}: expected {want}, got {got} ({who})"
        ));
    };
    if let Some(line) = &expected.line {
        let got = text(&event.line);
        if *line != got {
            report(
                "line",
                format!("{line:?}"),
                format!("{got:?}"),
                culprit(&|e| Some(text(&e.line))),
            );
        }
    }
    if let Some(labels) = &expected.labels {
        let got: BTreeMap<String, String> = event
            .labels
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        for name in labels
            .keys()
            .chain(got.keys().filter(|n| !labels.contains_key(*n)))
        {
            let (want, have) = (labels.get(name), got.get(name));
            if want != have {
                let name_owned = name.clone();
                report(
                    &format!("labels.{name}"),
                    want.map_or_else(|| "no such label".to_string(), |v| format!("{v:?}")),
                    shown(have),
                    culprit(&move |e| e.labels.get(&name_owned).map(str::to_string)),
                );
            }
        }
    }
    if let Some(metadata) = &expected.metadata {
        let got: BTreeMap<String, String> = event
            .metadata
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        for name in metadata
            .keys()
            .chain(got.keys().filter(|n| !metadata.contains_key(*n)))
        {
            let (want, have) = (metadata.get(name), got.get(name));
            if want != have {
                let name_owned = name.clone();
                report(
                    &format!("metadata.{name}"),
                    want.map_or_else(|| "no such entry".to_string(), |v| format!("{v:?}")),
                    shown(have),
                    culprit(&move |e| {
                        e.metadata
                            .iter()
                            .find(|(n, _)| n.as_ref() == name_owned)
                            .map(|(_, v)| v.to_string())
                    }),
                );
            }
        }
    }
    for (name, want) in &expected.fields {
        let have = event.fields.get(name).map(|v| text(v));
        if *want != have {
            let name_owned = name.clone();
            report(
                &format!("fields.{name}"),
                want.as_ref()
                    .map_or_else(|| "no such field".to_string(), |v| format!("{v:?}")),
                shown(have.as_ref()),
                culprit(&move |e| e.fields.get(&name_owned).map(|v| text(v))),
            );
        }
    }
    if let Some(want) = expected.timestamp
        && want.0 != event.timestamp_ns
    {
        report(
            "timestamp",
            format_time(want.0),
            format_time(event.timestamp_ns),
            culprit(&|e| Some(e.timestamp_ns.to_string())),
        );
    }
}
