//! The `timestamp` stage: the event's timestamp from a field an earlier parser extracted, so that
//! the Loki sink's timestamp guard and learner act on the line's own age, not on when it was read.
//!
//! Guarantees:
//! - `format` (then each of `fallback_formats`, in order) is tried on the field's value: `rfc3339`
//!   (any fraction, `Z` or an offset), `unix`, `unix_ms`, `unix_us`, `unix_ns` (a decimal number;
//!   `unix` may have a fraction), a strftime layout (any format with `%`, e.g. `%d/%b/%Y:%H:%M:%S
//!   %z`) or a Go layout (`2006-01-02 15:04:05.000`). A layout without an offset is read in
//!   `timezone` (an IANA name, default UTC).
//! - A value no format reads, or an event without the field, keeps the time it was read with
//!   (`on_error: keep`, the default) or is dropped (`on_error: drop`, acknowledged as handled),
//!   and is counted: `timestamp_parse_errors_total{component,reason}` (`missing`, `unparsable`),
//!   once per batch.
//! - Only `timestamp_ns` changes: the line, labels and fields stay as they are.
//! - `rfc3339` reads each whole second once and the fractions of the lines within it by hand
//!   (`rfc3339.rs`), with exactly jiff's result.

use bytes::Bytes;
use jiff::civil::DateTime;
use jiff::fmt::strtime;
use jiff::tz::TimeZone;
use opentelemetry::KeyValue;
use serde::{Deserialize, Serialize};

use crate::component::{
    Component, FunctionTransform, Reconfigurable, Reconfigure, Transform, TransformComponent,
    TransformContext, config_build_error,
};
use crate::config::{ConfigError, join_path};
use crate::telemetry::{ComponentAttrs, Counter, MetricDef};
use crate::{BuildError, EventBatch};

mod rfc3339;

use rfc3339::Rfc3339Reader;

static PARSE_ERRORS: Counter = Counter::new(
    "timestamp_parse_errors",
    "Events whose timestamp field was missing or unreadable (kept with their read time, or \
     dropped, as the stage's on_error says).",
    &["component", "reason"],
);

/// Every metric of the timestamp stage.
pub static METRICS: &[&MetricDef] = &[&PARSE_ERRORS.def];

/// What happens to an event whose timestamp cannot be read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Keep the event with the time it was read (counted).
    #[default]
    Keep,
    /// Drop the event (counted, and in `dropped_total{reason="bad_timestamp"}`).
    Drop,
}

/// Configuration of the `timestamp` stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimestampConfig {
    /// The field holding the time (set by a parser). Required.
    pub field: String,
    /// How the value is written. Required: see the module's formats.
    pub format: String,
    /// Formats tried, in order, when `format` does not read the value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback_formats: Vec<String>,
    /// The time zone of layouts without an offset (IANA name, e.g. `Europe/Paris`).
    #[serde(default = "utc")]
    pub timezone: String,
    #[serde(default)]
    pub on_error: OnError,
}

fn utc() -> String {
    "UTC".into()
}

impl Component for TimestampConfig {
    const TYPE: &'static str = "timestamp";
    const METRICS: &'static [&'static MetricDef] = METRICS;
    const HOT_RELOADABLE: &'static [&'static str] = &[
        "field",
        "format",
        "fallback_formats",
        "timezone",
        "on_error",
    ];

    fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        self.compile(prefix).err().unwrap_or_default()
    }
}

impl TransformComponent for TimestampConfig {
    fn build(&self, cx: TransformContext<Self>) -> Result<Transform, BuildError> {
        let compiled = self
            .compile(&cx.key)
            .map_err(|errors| config_build_error(&cx.key, errors))?;
        let stage = TimestampStage {
            compiled,
            rfc3339: Rfc3339Reader::default(),
            attrs: ComponentAttrs::new(&cx.key),
        };
        Ok(Transform::function(Reconfigurable::new(cx, stage)))
    }
}

/// One way of reading a time.
#[derive(Clone, Debug)]
enum Format {
    Rfc3339,
    /// A decimal number of units of this many nanoseconds.
    Unix(i128),
    /// A strftime layout (Go layouts are translated to one).
    Layout(String),
}

#[derive(Clone, Debug)]
struct Compiled {
    field: String,
    formats: Vec<Format>,
    timezone: TimeZone,
    on_error: OnError,
}

impl TimestampConfig {
    fn compile(&self, prefix: &str) -> Result<Compiled, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if self.field.is_empty() {
            errors.push(
                ConfigError::new(join_path(prefix, "field"), "must name a field")
                    .with_hint("the field a parser (json, logfmt, regex) extracts, e.g. `time`"),
            );
        }
        let mut formats = Vec::new();
        let all = std::iter::once(("format".to_string(), &self.format)).chain(
            self.fallback_formats
                .iter()
                .enumerate()
                .map(|(i, f)| (format!("fallback_formats[{i}]"), f)),
        );
        for (key, text) in all {
            match Format::parse(text) {
                Ok(format) => formats.push(format),
                Err(message) => errors.push(
                    ConfigError::new(join_path(prefix, &key), message).with_hint(
                        "use rfc3339, unix, unix_ms, unix_us, unix_ns, a strftime layout \
                         (%Y-%m-%d %H:%M:%S) or a Go layout (2006-01-02 15:04:05)",
                    ),
                ),
            }
        }
        let timezone = match TimeZone::get(&self.timezone) {
            Ok(tz) => tz,
            Err(err) => {
                errors.push(
                    ConfigError::new(
                        join_path(prefix, "timezone"),
                        format!("unknown time zone {:?}: {err}", self.timezone),
                    )
                    .with_hint("an IANA name such as UTC or Europe/Paris"),
                );
                TimeZone::UTC
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Compiled {
            field: self.field.clone(),
            formats,
            timezone,
            on_error: self.on_error,
        })
    }
}

impl Format {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "rfc3339" | "rfc3339nano" | "RFC3339" | "RFC3339Nano" => Self::Rfc3339,
            "unix" => Self::Unix(1_000_000_000),
            "unix_ms" => Self::Unix(1_000_000),
            "unix_us" => Self::Unix(1_000),
            "unix_ns" => Self::Unix(1),
            layout if layout.contains('%') => Self::Layout(layout.to_string()),
            layout => Self::Layout(go_layout(layout)?),
        })
    }

    /// The time in ns since the epoch, if this format reads `value`.
    fn read(&self, value: &str, tz: &TimeZone, rfc3339: &mut Rfc3339Reader) -> Option<i64> {
        let ns = match self {
            Self::Rfc3339 => rfc3339.read(value.trim())?,
            Self::Unix(unit) => unix(value.trim(), *unit)?,
            Self::Layout(layout) => {
                let parsed = strtime::parse(layout, value.trim()).ok()?;
                match parsed.to_timestamp() {
                    Ok(ts) => ts.as_nanosecond(),
                    Err(_) => {
                        let civil: DateTime = parsed.to_datetime().ok()?;
                        civil.to_zoned(tz.clone()).ok()?.timestamp().as_nanosecond()
                    }
                }
            }
        };
        i64::try_from(ns).ok()
    }
}

/// A decimal number of `unit`-nanosecond units (an optional fraction) as ns.
fn unix(value: &str, unit: i128) -> Option<i128> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) || fraction.len() > 18 {
        return None;
    }
    let mut ns = whole.parse::<i128>().ok()?.checked_mul(unit)?;
    if !fraction.is_empty() {
        let digits: i128 = fraction.parse().ok()?;
        let scale = 10i128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
        ns = ns.checked_add(digits.checked_mul(unit)? / scale)?;
    }
    Some(ns)
}

/// Go's reference-time layout translated to strftime. Errors when it names nothing Go knows.
fn go_layout(layout: &str) -> Result<String, String> {
    // Longest tokens first, so `2006` is not read as `2` + `006`.
    const TOKENS: &[(&str, &str)] = &[
        ("January", "%B"),
        ("Monday", "%A"),
        ("Z07:00", "%:z"),
        ("-07:00", "%:z"),
        ("-0700", "%z"),
        ("2006", "%Y"),
        ("Jan", "%b"),
        ("Mon", "%a"),
        ("MST", "%Z"),
        ("PM", "%p"),
        ("01", "%m"),
        ("02", "%d"),
        ("_2", "%e"),
        ("15", "%H"),
        ("03", "%I"),
        ("04", "%M"),
        ("05", "%S"),
        ("06", "%y"),
    ];
    let mut out = String::new();
    let mut rest = layout;
    let mut known = false;
    'outer: while !rest.is_empty() {
        // Fractional seconds: `.000`, `.999999999` (and `,` in place of `.`).
        if let Some(tail) = rest.strip_prefix('.').or_else(|| rest.strip_prefix(',')) {
            let digits = tail.chars().take_while(|c| *c == '0' || *c == '9').count();
            if digits > 0 {
                out.push_str("%.f");
                rest = &tail[digits..];
                known = true;
                continue;
            }
        }
        for (token, spec) in TOKENS {
            if let Some(tail) = rest.strip_prefix(token) {
                out.push_str(spec);
                rest = tail;
                known = true;
                continue 'outer;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            if c == '%' {
                out.push_str("%%");
            } else {
                out.push(c);
            }
        }
        rest = chars.as_str();
    }
    if known {
        Ok(out)
    } else {
        Err(format!(
            "{layout:?} is no format name, strftime layout or Go layout"
        ))
    }
}

/// The running `timestamp` stage.
#[derive(Debug)]
pub struct TimestampStage {
    compiled: Compiled,
    /// The last whole second an `rfc3339` format read.
    rfc3339: Rfc3339Reader,
    attrs: ComponentAttrs,
}

impl Reconfigure<TimestampConfig> for TimestampStage {
    fn reconfigure(&mut self, config: &TimestampConfig) {
        // A reload is validated before it is applied.
        if let Ok(compiled) = config.compile("") {
            self.compiled = compiled;
        }
    }
}

impl FunctionTransform for TimestampStage {
    fn transform(&mut self, batch: &mut EventBatch) {
        let Compiled {
            field,
            formats,
            timezone,
            on_error,
        } = &self.compiled;
        let (mut missing, mut unparsable) = (0u64, 0u64);
        batch.events.retain_mut(|event| {
            let read = match event.fields.get(field) {
                None => {
                    missing += 1;
                    None
                }
                Some(value) => {
                    let found = read_any(formats, value, timezone, &mut self.rfc3339);
                    if found.is_none() {
                        unparsable += 1;
                    }
                    found
                }
            };
            match read {
                Some(ns) => {
                    event.timestamp_ns = ns;
                    true
                }
                None => *on_error == OnError::Keep,
            }
        });
        for (n, reason) in [(missing, "missing"), (unparsable, "unparsable")] {
            if n > 0 {
                let mut attrs = self.attrs.component.to_vec();
                attrs.push(KeyValue::new("reason", reason));
                PARSE_ERRORS.add(n, &attrs);
            }
        }
        if *on_error == OnError::Drop && missing + unparsable > 0 {
            self.attrs
                .dropped((missing + unparsable) as usize, "bad_timestamp");
        }
    }
}

fn read_any(
    formats: &[Format],
    value: &Bytes,
    tz: &TimeZone,
    rfc3339: &mut Rfc3339Reader,
) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?;
    formats
        .iter()
        .find_map(|format| format.read(text, tz, rfc3339))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::testing::batch;
    use serde_json::json;

    const SECOND: i64 = 1_000_000_000;

    fn stage(config: serde_json::Value) -> TimestampStage {
        let config: TimestampConfig = serde_json::from_value(config).unwrap();
        TimestampStage {
            compiled: config.compile("t").unwrap(),
            rfc3339: Rfc3339Reader::default(),
            attrs: ComponentAttrs::new("t"),
        }
    }

    fn read(config: serde_json::Value, value: &str) -> Option<i64> {
        let mut batch = batch(&[b"line"]);
        batch.events[0]
            .fields
            .insert("time", Bytes::copy_from_slice(value.as_bytes()));
        let before = batch.events[0].timestamp_ns;
        stage(config).transform(&mut batch);
        let after = batch.events[0].timestamp_ns;
        (after != before).then_some(after)
    }

    #[test]
    fn every_format_reads_its_own_kind_of_value() {
        // 2026-12-01T21:58:24.123456789Z
        let t = 1_796_162_304 * SECOND + 123_456_789;
        let f = |format: &str| json!({"field": "time", "format": format});
        assert_eq!(
            read(f("rfc3339"), "2026-12-01T21:58:24.123456789Z"),
            Some(t)
        );
        assert_eq!(
            read(f("rfc3339"), "2026-12-01T22:58:24.123456789+01:00"),
            Some(t)
        );
        assert_eq!(read(f("unix"), "1796162304.123456789"), Some(t));
        assert_eq!(read(f("unix"), "1796162304"), Some(t - 123_456_789));
        assert_eq!(read(f("unix_ms"), "1796162304123"), Some(t - 456_789));
        assert_eq!(read(f("unix_us"), "1796162304123456"), Some(t - 789));
        assert_eq!(read(f("unix_ns"), "1796162304123456789"), Some(t));
        assert_eq!(
            read(f("%d/%b/%Y:%H:%M:%S %z"), "01/Dec/2026:21:58:24 +0000"),
            Some(t - 123_456_789)
        );
        assert_eq!(
            read(f("2006-01-02 15:04:05.000"), "2026-12-01 21:58:24.123"),
            Some(t - 456_789)
        );
    }

    #[test]
    fn layouts_without_an_offset_are_read_in_the_configured_zone() {
        let t = 1_796_162_304 * SECOND;
        let config =
            json!({"field": "time", "format": "%Y-%m-%d %H:%M:%S", "timezone": "Europe/Paris"});
        // Paris is UTC+1 in December.
        assert_eq!(read(config, "2026-12-01 22:58:24"), Some(t));
    }

    #[test]
    fn fallback_formats_are_tried_in_order() {
        let config = json!({"field": "time", "format": "rfc3339", "fallback_formats": ["unix"]});
        assert_eq!(read(config, "12"), Some(12 * SECOND));
    }

    #[test]
    fn unreadable_or_missing_values_keep_the_read_time_or_drop_as_configured() {
        let mut batch = batch(&[b"no field", b"bad value", b"good"]);
        batch.events[1]
            .fields
            .insert("time", Bytes::from_static(b"yesterday"));
        batch.events[2]
            .fields
            .insert("time", Bytes::from_static(b"5"));
        stage(json!({"field": "time", "format": "unix"})).transform(&mut batch);
        let times: Vec<i64> = batch.events.iter().map(|e| e.timestamp_ns).collect();
        assert_eq!(times, [SECOND, SECOND, 5 * SECOND]);

        let mut batch = crate::transforms::testing::batch(&[b"no field", b"good"]);
        batch.events[1]
            .fields
            .insert("time", Bytes::from_static(b"5"));
        stage(json!({"field": "time", "format": "unix", "on_error": "drop"})).transform(&mut batch);
        assert_eq!(batch.events.len(), 1);
        assert_eq!(batch.events[0].line.as_ref(), b"good");
    }

    #[test]
    fn bad_formats_and_zones_are_config_errors_naming_the_key() {
        let config: TimestampConfig = serde_json::from_value(json!({
            "field": "time", "format": "sometime", "fallback_formats": ["unix", "later"],
            "timezone": "Mars/Olympus"
        }))
        .unwrap();
        let errors: Vec<String> = config
            .validate("transforms.t")
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("transforms.t.format"), "{errors:?}");
        assert!(
            errors[1].starts_with("transforms.t.fallback_formats[1]"),
            "{errors:?}"
        );
        assert!(errors[2].starts_with("transforms.t.timezone"), "{errors:?}");
    }
}
