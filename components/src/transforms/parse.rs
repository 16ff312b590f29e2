//! What the parsers (`json`, `logfmt`, `regex`) share: where their input comes from (the line,
//! or a field an earlier parser extracted) and how a line that does not parse is handled.
//!
//! Guarantees:
//! - A parser never changes the line and never drops an event: a line that does not parse passes
//!   on unchanged, with no field added, and is counted in `parse_errors_total{component}` (once
//!   per batch, never per line).
//! - Fields are added to the event's [`crate::fields::Fields`]; a name already there is replaced,
//!   so a later parser can refine an earlier one's field.

use bytes::Bytes;

use crate::EventBatch;
use crate::telemetry::{ComponentAttrs, Counter, MetricDef};

static PARSE_ERRORS: Counter = Counter::new(
    "parse_errors",
    "Lines a parser could not parse; they pass on unchanged, without the parser's fields.",
    &["component"],
);

/// The metrics every parser declares.
pub static METRICS: &[&MetricDef] = &[&PARSE_ERRORS.def];

/// Runs `parse` over every event of `batch`, counting the events it could not parse (`parse`
/// returns `false`, or the source field is missing).
pub fn parse_batch(
    batch: &mut EventBatch,
    source: Option<&str>,
    attrs: &ComponentAttrs,
    mut parse: impl FnMut(&Bytes, &mut crate::fields::Fields) -> bool,
) {
    let mut failed = 0u64;
    for event in &mut batch.events {
        // A field as the input is cloned (a reference count) so that the fields can be written
        // while it is read; the line is borrowed beside them.
        let source_field;
        let bytes = match source {
            None => &event.line,
            Some(name) => match event.fields.get(name) {
                Some(value) => {
                    source_field = value.clone();
                    &source_field
                }
                None => {
                    failed += 1;
                    continue;
                }
            },
        };
        if !parse(bytes, &mut event.fields) {
            failed += 1;
        }
    }
    if failed > 0 {
        PARSE_ERRORS.add(failed, &attrs.component);
    }
}
