//! Pipeline tests written in the configuration (`tests:`), as `log-capturer test` runs them.
//!
//! Each entry names an input event (a line, or several lines of one stream, with the labels,
//! file and fields it arrives with), the stages it goes through, and what must come out. This
//! module types and checks the entries and resolves which stages each one runs through; the
//! runner is `cli/test.rs`. `run` ignores `tests:`, and a reload never looks at it.
//!
//! Guarantees:
//! - Every entry is checked by `validate` like any other key: unknown keys (with a
//!   did-you-mean), a missing `name`, `line`, an unknown source, stage or sink, each error named
//!   by its path (`tests[2].expect[0].labels`) with a hint.
//! - A resolved [`TestPlan`] lists only transforms that exist, in an order where every stage
//!   comes after the stages it reads from, so the runner never looks a name up and fails.
//!
//! Which stages: `stages: [a, b, c]` runs exactly these, in this order, each on what the one
//! before it emitted (the configured `inputs` are not consulted: a stage can be tested alone);
//! `to: NAME` runs everything on the way from the input's source to the sink or transform
//! `NAME`, as the topology wires it (fan-out and fan-in included), and checks what reaches
//! `NAME` (for a sink: what its inputs emit, before the sink adds its own labels). With
//! neither, `to` is the one sink the source reaches (an error when it reaches several).
//!
//! Route stages: in `stages`, `r.NAME` runs the route `r` and goes on with what its output
//! `NAME` got; a route ending the test (`stages: [.., r]` or `to: r`) gives every event it
//! took, and each `expect` entry may say which of its outputs the event reached (`outputs`).

use std::collections::{BTreeMap, BTreeSet};

use log_capturer_components::config::{ConfigError, did_you_mean, parse, struct_fields};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{SinkSpec, SourceSpec, TransformSpec};

/// A time in a test: RFC 3339 text (`2026-12-01T10:00:00.5Z`, any offset) or integer
/// nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestTime(pub i64);

impl<'de> Deserialize<'de> for TestTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Nanos(i64),
            Text(String),
        }
        match Raw::deserialize(d) {
            Ok(Raw::Nanos(ns)) => Ok(Self(ns)),
            Ok(Raw::Text(text)) => parse_time(&text)
                .map(Self)
                .map_err(serde::de::Error::custom),
            Err(_) => Err(serde::de::Error::custom(
                "expected an RFC 3339 time (2026-12-01T10:00:00Z) or integer nanoseconds",
            )),
        }
    }
}

/// Nanoseconds since the epoch of an RFC 3339 time.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let timestamp: jiff::Timestamp = text.trim().parse().map_err(|err| {
        format!("{text:?} is not an RFC 3339 time with an offset (2026-12-01T10:00:00Z): {err}")
    })?;
    i64::try_from(timestamp.as_nanosecond())
        .map_err(|_| format!("{text:?} is out of the range of nanosecond timestamps"))
}

/// RFC 3339 text of nanoseconds since the epoch (for reports).
pub fn format_time(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(ns))
        .map_or_else(|_| format!("{ns} ns"), |t| t.to_string())
}

/// One entry of `tests:`, as written.
#[derive(Clone, Debug, Deserialize)]
struct RawTest {
    /// What the report calls it. Unique among the tests.
    name: String,
    /// The input event(s).
    input: Value,
    /// Exactly these transforms, in this order.
    #[serde(default)]
    stages: Option<Vec<String>>,
    /// Everything from the input's source to this sink or transform.
    #[serde(default)]
    to: Option<String>,
    /// The events expected out, in order (`[]`: every event is dropped).
    expect: Vec<Value>,
}

/// What goes into a test.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TestInput {
    /// The source the event comes from: its static labels are set, and `to` starts there. By
    /// default the configuration's only source.
    pub source: Option<String>,
    /// The line.
    pub line: Option<String>,
    /// Several lines of one stream, in order (instead of `line`): for multiline stages.
    pub lines: Vec<String>,
    /// The file the line was read from (as the file source sets it).
    pub file: Option<String>,
    /// Labels the event arrives with, besides the source's own (e.g. a Docker source's
    /// `container`).
    pub labels: BTreeMap<String, String>,
    /// Fields the event arrives with (as an earlier parser would have set them).
    pub fields: BTreeMap<String, String>,
    /// The time the line was read (its timestamp until a stage sets another). By default the
    /// time the test runs.
    pub timestamp: Option<TestTime>,
}

/// What one event coming out must be; only the keys given are checked.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Expected {
    /// The line, exactly.
    pub line: Option<String>,
    /// The stream labels, exactly (every label, none more).
    pub labels: Option<BTreeMap<String, String>>,
    /// The structured metadata, exactly.
    pub metadata: Option<BTreeMap<String, String>>,
    /// These fields have these values (`null`: the field is absent); other fields are not
    /// checked.
    pub fields: BTreeMap<String, Option<String>>,
    /// The event's timestamp.
    pub timestamp: Option<TestTime>,
    /// The outputs the event reached, exactly (`[_unmatched]` when it matched no route): only
    /// in a test that ends at a route stage.
    pub outputs: Option<Vec<String>>,
}

/// Which stages a test runs, resolved against the configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct TestPlan {
    /// The source the input comes from.
    pub source: String,
    /// Transforms in running order: each after every stage it reads from.
    pub order: Vec<String>,
    /// Each transform's inputs within the plan (the source or earlier transforms).
    pub inputs: BTreeMap<String, Vec<String>>,
    /// What is checked: the concatenated output of these (the source, transforms, or a route's
    /// outputs as `ROUTE.OUTPUT`).
    pub collect: Vec<String>,
    /// The route stage the test ends at, when it does: the report says which of its outputs
    /// each event reached.
    pub route: Option<String>,
    /// What the report says was run: `stages [a, b]` or `source app to sink loki`.
    pub description: String,
}

/// A checked test.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineTest {
    pub name: String,
    pub input: TestInput,
    pub plan: TestPlan,
    pub expect: Vec<Expected>,
}

/// Types and checks `tests:` against the typed components; every problem goes to `errors`.
pub fn check(
    tests: &[Value],
    sources: &BTreeMap<String, SourceSpec>,
    transforms: &BTreeMap<String, TransformSpec>,
    sinks: &BTreeMap<String, SinkSpec>,
    errors: &mut Vec<ConfigError>,
) -> Vec<PipelineTest> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for (index, value) in tests.iter().enumerate() {
        let prefix = format!("tests[{index}]");
        let raw: RawTest = match parse(&prefix, value.clone(), &[]) {
            Ok(raw) => raw,
            Err(errs) => {
                errors.extend(errs);
                continue;
            }
        };
        let before = errors.len();
        if raw.name.trim().is_empty() {
            errors.push(ConfigError::new(format!("{prefix}.name"), "is empty"));
        } else if !names.insert(raw.name.clone()) {
            errors.push(
                ConfigError::new(
                    format!("{prefix}.name"),
                    format!("another test is named {:?}", raw.name),
                )
                .with_hint("give every test its own name, so a report points at one"),
            );
        }
        let input_prefix = format!("{prefix}.input");
        let input: Option<TestInput> = match parse(&input_prefix, raw.input.clone(), &[]) {
            Ok(input) => Some(input),
            Err(errs) => {
                errors.extend(errs);
                None
            }
        };
        let indexed: Vec<(usize, Expected)> = raw
            .expect
            .iter()
            .enumerate()
            .filter_map(|(i, value)| {
                match parse::<Expected>(&format!("{prefix}.expect[{i}]"), value.clone(), &[]) {
                    Ok(expected) => Some((i, expected)),
                    Err(errs) => {
                        errors.extend(errs);
                        None
                    }
                }
            })
            .collect();
        let Some(input) = input else {
            // Still name unknown stages: the input's errors are not the only ones.
            if let Some(stages) = &raw.stages {
                explicit_plan(&prefix, "", stages, transforms, errors);
            }
            continue;
        };
        check_input(&input_prefix, &input, errors);
        let Some(source) = input_source(&input_prefix, &input, sources, errors) else {
            continue;
        };
        let plan = match (&raw.stages, &raw.to) {
            (Some(_), Some(_)) => {
                errors.push(
                    ConfigError::new(format!("{prefix}.to"), "`stages` and `to` are both given")
                        .with_hint("list the stages to run, or name the sink to run up to"),
                );
                None
            }
            (Some(stages), None) => explicit_plan(&prefix, &source, stages, transforms, errors),
            (None, to) => path_plan(&prefix, &source, to.as_deref(), transforms, sinks, errors),
        };
        if let Some(plan) = &plan {
            check_expected_outputs(&prefix, &indexed, plan, transforms, errors);
        }
        let expect: Vec<Expected> = indexed.into_iter().map(|(_, e)| e).collect();
        if let Some(plan) = plan
            && errors.len() == before
        {
            out.push(PipelineTest {
                name: raw.name,
                input,
                plan,
                expect,
            });
        }
    }
    out
}

/// `outputs` in an `expect` entry needs a test ending at a route, and names its outputs.
fn check_expected_outputs(
    prefix: &str,
    expect: &[(usize, Expected)],
    plan: &TestPlan,
    transforms: &BTreeMap<String, TransformSpec>,
    errors: &mut Vec<ConfigError>,
) {
    for (index, expected) in expect {
        let Some(outputs) = &expected.outputs else {
            continue;
        };
        let path = format!("{prefix}.expect[{index}].outputs");
        let Some(route) = &plan.route else {
            errors.push(
                ConfigError::new(path, "only a test that ends at a route stage sees outputs")
                    .with_hint("end `stages` with the route, or give `to: ROUTE`"),
            );
            continue;
        };
        let known = transforms
            .get(route)
            .map(|spec| spec.config.outputs())
            .unwrap_or_default();
        for output in outputs.iter().filter(|output| !known.contains(output)) {
            errors.push(
                ConfigError::new(&path, format!("`{output}` is not an output of `{route}`"))
                    .with_hint(format!("its outputs: {}", known.join(", "))),
            );
        }
    }
}

fn check_input(prefix: &str, input: &TestInput, errors: &mut Vec<ConfigError>) {
    match (&input.line, input.lines.is_empty()) {
        (None, true) => errors.push(
            ConfigError::new(format!("{prefix}.line"), "missing")
                .with_hint("give the input `line: \"...\"`, or `lines: [...]` for several"),
        ),
        (Some(_), false) => errors.push(
            ConfigError::new(
                format!("{prefix}.lines"),
                "`line` and `lines` are both given",
            )
            .with_hint("use `line` for one event, `lines` for several of one stream"),
        ),
        _ => {}
    }
    for name in input.labels.keys() {
        if !log_capturer_components::config::valid_label_name(name) {
            errors.push(
                ConfigError::new(
                    format!("{prefix}.labels.{name}"),
                    "is not a label name Loki accepts",
                )
                .with_hint("letters, digits and _, not starting with a digit"),
            );
        }
    }
}

fn input_source(
    prefix: &str,
    input: &TestInput,
    sources: &BTreeMap<String, SourceSpec>,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    let known: Vec<&str> = sources.keys().map(String::as_str).collect();
    match &input.source {
        Some(name) if sources.contains_key(name) => Some(name.clone()),
        Some(name) => {
            let error = ConfigError::new(
                format!("{prefix}.source"),
                format!("unknown source `{name}`"),
            );
            errors.push(match did_you_mean(name, &known) {
                Some(best) => error.with_hint(format!("did you mean `{best}`?")),
                None => error.with_hint(format!("sources: {}", known.join(", "))),
            });
            None
        }
        None if sources.len() == 1 => sources.keys().next().cloned(),
        None => {
            errors.push(
                ConfigError::new(
                    format!("{prefix}.source"),
                    "missing; the configuration has several sources",
                )
                .with_hint(format!("one of: {}", known.join(", "))),
            );
            None
        }
    }
}

fn unknown_stage(path: String, name: &str, candidates: &[&str], what: &str) -> ConfigError {
    let error = ConfigError::new(path, format!("unknown {what} `{name}`"));
    match did_you_mean(name, candidates) {
        Some(best) => error.with_hint(format!("did you mean `{best}`?")),
        None => error.with_hint(format!("{what}s: {}", candidates.join(", "))),
    }
}

fn explicit_plan(
    prefix: &str,
    source: &str,
    stages: &[String],
    transforms: &BTreeMap<String, TransformSpec>,
    errors: &mut Vec<ConfigError>,
) -> Option<TestPlan> {
    let known: Vec<&str> = transforms.keys().map(String::as_str).collect();
    let mut ok = true;
    let mut seen = BTreeSet::new();
    for (i, entry) in stages.iter().enumerate() {
        let path = format!("{prefix}.stages[{i}]");
        // `r.NAME`: the route `r`, going on with its output `NAME`.
        let (stage, output) = match entry.split_once('.') {
            Some((stage, output)) => (stage, Some(output)),
            None => (entry.as_str(), None),
        };
        let Some(spec) = transforms.get(stage) else {
            errors.push(unknown_stage(path, stage, &known, "transform"));
            ok = false;
            continue;
        };
        let outputs = spec.config.outputs();
        let last = i + 1 == stages.len();
        if !seen.insert(stage) {
            errors.push(
                ConfigError::new(path, format!("`{stage}` is listed twice"))
                    .with_hint("a stage runs once per test"),
            );
            ok = false;
        } else if let Some(output) = output
            && !outputs.iter().any(|o| o == output)
        {
            let message = if outputs.is_empty() {
                format!("`{stage}` has no named outputs")
            } else {
                format!("`{stage}` has no output `{output}`")
            };
            let hint = if outputs.is_empty() {
                format!("write `{stage}`")
            } else {
                format!("its outputs: {}", outputs.join(", "))
            };
            errors.push(ConfigError::new(path, message).with_hint(hint));
            ok = false;
        } else if output.is_none() && !outputs.is_empty() && !last {
            errors.push(
                ConfigError::new(
                    path,
                    format!("`{stage}` is a route: say which of its outputs the next stage reads"),
                )
                .with_hint(format!(
                    "write `{stage}.NAME`, NAME one of {}",
                    outputs.join(", ")
                )),
            );
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    let mut inputs = BTreeMap::new();
    let mut order = Vec::new();
    let mut previous = source.to_string();
    for entry in stages {
        let stage = super::input_component(entry).to_string();
        inputs.insert(stage.clone(), vec![previous.clone()]);
        previous.clone_from(entry);
        order.push(stage);
    }
    let route = transforms
        .get(&previous)
        .filter(|spec| !spec.config.outputs().is_empty())
        .map(|_| previous.clone());
    Some(TestPlan {
        source: source.to_string(),
        order,
        inputs,
        collect: vec![previous],
        route,
        description: format!("stages [{}]", stages.join(", ")),
    })
}

fn path_plan(
    prefix: &str,
    source: &str,
    to: Option<&str>,
    transforms: &BTreeMap<String, TransformSpec>,
    sinks: &BTreeMap<String, SinkSpec>,
    errors: &mut Vec<ConfigError>,
) -> Option<TestPlan> {
    // Everything downstream of the source (transforms only; sinks are ends).
    // A route reached reaches each of its outputs (`r.NAME`).
    let mut reached: BTreeSet<String> = BTreeSet::from([source.to_string()]);
    loop {
        let before = reached.len();
        for (name, spec) in transforms {
            if spec.inputs.iter().any(|i| reached.contains(i)) {
                reached.insert(name.clone());
                for output in spec.config.outputs() {
                    reached.insert(format!("{name}.{output}"));
                }
            }
        }
        if reached.len() == before {
            break;
        }
    }
    let reached_sinks: Vec<&str> = sinks
        .iter()
        .filter(|(_, spec)| spec.inputs.iter().any(|i| reached.contains(i)))
        .map(|(name, _)| name.as_str())
        .collect();
    let path = format!("{prefix}.to");
    let target = match to {
        Some(target) => target.to_string(),
        None if reached_sinks.len() == 1 => reached_sinks[0].to_string(),
        None => {
            errors.push(
                ConfigError::new(
                    &path,
                    format!(
                        "missing; source `{source}` reaches {} sinks",
                        reached_sinks.len()
                    ),
                )
                .with_hint(format!(
                    "name the sink to test up to ({}), or list `stages`",
                    reached_sinks.join(", ")
                )),
            );
            return None;
        }
    };
    let target_inputs: Vec<String> = if let Some(sink) = sinks.get(&target) {
        sink.inputs.clone()
    } else if transforms.contains_key(&target) {
        vec![target.clone()]
    } else {
        let candidates: Vec<&str> = sinks
            .keys()
            .chain(transforms.keys())
            .map(String::as_str)
            .collect();
        errors.push(unknown_stage(
            path,
            &target,
            &candidates,
            "sink or transform",
        ));
        return None;
    };
    // Upstream of the target, restricted to what the source reaches.
    let mut needed: BTreeSet<String> = BTreeSet::new();
    let mut stack: Vec<String> = target_inputs
        .iter()
        .filter(|i| reached.contains(*i))
        .cloned()
        .collect();
    let collect = stack.clone();
    if collect.is_empty() {
        errors.push(
            ConfigError::new(
                &path,
                format!("`{target}` is not downstream of source `{source}`"),
            )
            .with_hint("name a sink or transform that reads from the source, or list `stages`"),
        );
        return None;
    }
    while let Some(input) = stack.pop() {
        let name = super::input_component(&input);
        if name == source || !needed.insert(name.to_string()) {
            continue;
        }
        if let Some(spec) = transforms.get(name) {
            stack.extend(spec.inputs.iter().filter(|i| reached.contains(*i)).cloned());
        }
    }
    let within = |input: &String| {
        let component = super::input_component(input);
        needed.contains(component) || component == source
    };
    // Running order: a stage once every input within the plan has run (the graph has no cycles:
    // validation refused them).
    let mut order: Vec<String> = Vec::new();
    let mut done: BTreeSet<String> = BTreeSet::from([source.to_string()]);
    let mut inputs = BTreeMap::new();
    while order.len() < needed.len() {
        let ready: Vec<String> = needed
            .iter()
            .filter(|n| !done.contains(*n))
            .filter(|n| {
                transforms[*n]
                    .inputs
                    .iter()
                    .filter(|i| within(i))
                    .all(|i| done.contains(super::input_component(i)))
            })
            .cloned()
            .collect();
        if ready.is_empty() {
            break;
        }
        for name in ready {
            let from: Vec<String> = transforms[&name]
                .inputs
                .iter()
                .filter(|i| within(i))
                .cloned()
                .collect();
            inputs.insert(name.clone(), from);
            done.insert(name.clone());
            order.push(name);
        }
    }
    let kind = if sinks.contains_key(&target) {
        "sink"
    } else {
        "transform"
    };
    let route = transforms
        .get(&target)
        .filter(|spec| !spec.config.outputs().is_empty())
        .map(|_| target.clone());
    Some(TestPlan {
        source: source.to_string(),
        order,
        inputs,
        collect,
        route,
        description: format!("source `{source}` to {kind} `{target}`"),
    })
}

/// The keys of a test entry (for docs and did-you-mean).
pub fn test_keys() -> [&'static [&'static str]; 3] {
    [
        struct_fields::<RawTest>(),
        struct_fields::<TestInput>(),
        struct_fields::<Expected>(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_rfc3339_or_nanoseconds() {
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z"), Ok(1_500_000_000));
        assert_eq!(parse_time("1970-01-01T01:00:01+01:00"), Ok(1_000_000_000));
        assert!(parse_time("yesterday").is_err());
        assert_eq!(format_time(1_500_000_000), "1970-01-01T00:00:01.5Z");
        let t: TestTime = serde_json::from_value(serde_json::json!(42)).unwrap();
        assert_eq!(t, TestTime(42));
    }
}
