//! Loki 3.7's log level discovery (`discover_log_levels`, `pkg/distributor/field_detection.go`):
//! each valid entry gets a `detected_level` structured metadata pair, and its bytes count towards
//! the entry's size from then on (rate limits, per-stream limits), as in Loki.
//!
//! The level comes from, in order: an existing `detected_level` (normalised in place, nothing
//! added); a stream label named in `log_level_fields`; a structured metadata pair so named; an
//! OTLP `severity_number`; a level field of a JSON line (objects searched to
//! `log_level_from_json_max_depth` levels) or of a logfmt line; else the first level word in the
//! line (`trace`, `debug`, `fatal`, `critical`, `error`/`err`, `warning`/`warn`, `info`, as whole
//! words); else `unknown`.
//!
//! Guarantees: never panics on any line (bytes, not necessarily UTF-8); linear in the line.

use super::labels::LabelSet;

/// The structured metadata name Loki adds.
pub const DETECTED_LEVEL: &str = "detected_level";
const SEVERITY_NUMBER: &str = "severity_number";
const UNKNOWN: &str = "unknown";

/// Level words in the order Loki tries them; the earliest position in the line wins.
const LEVEL_WORDS: [(&str, &str); 9] = [
    ("trace", "trace"),
    ("debug", "debug"),
    ("fatal", "fatal"),
    ("critical", "critical"),
    ("error", "error"),
    ("err", "error"),
    ("warning", "warn"),
    ("warn", "warn"),
    ("info", "info"),
];

/// The level words' searchers, built once: building one costs more than a search in a line.
static LEVEL_FINDERS: std::sync::LazyLock<Vec<memchr::memmem::Finder<'static>>> =
    std::sync::LazyLock::new(|| {
        LEVEL_WORDS
            .iter()
            .map(|(word, _)| memchr::memmem::Finder::new(word.as_bytes()))
            .collect()
    });

/// Settings of level discovery.
#[derive(Clone, Debug)]
pub struct LevelDetector {
    /// `log_level_fields`.
    pub fields: Vec<String>,
    /// `log_level_from_json_max_depth`; 0 or less for no limit.
    pub max_json_depth: i64,
}

/// `normalizeLogLevel`: known spellings to Loki's names, anything else unchanged.
fn normalize(level: &str) -> String {
    known_level(level.as_bytes())
        .map(str::to_string)
        .unwrap_or_else(|| level.to_string())
}

fn known_level(value: &[u8]) -> Option<&'static str> {
    let is = |words: &[&str]| {
        words
            .iter()
            .any(|w| value.eq_ignore_ascii_case(w.as_bytes()))
    };
    if is(&["trace", "trc"]) {
        Some("trace")
    } else if is(&["debug", "dbg"]) {
        Some("debug")
    } else if is(&["info", "inf", "information"]) {
        Some("info")
    } else if is(&["warn", "wrn", "warning"]) {
        Some("warn")
    } else if is(&["error", "err"]) {
        Some("error")
    } else if is(&["critical"]) {
        Some("critical")
    } else if is(&["fatal"]) {
        Some("fatal")
    } else {
        None
    }
}

impl LevelDetector {
    /// Adds (or normalises) `detected_level` in `metadata`.
    pub fn apply(&self, labels: &LabelSet, metadata: &mut Vec<(String, String)>, line: &[u8]) {
        if let Some((_, value)) = metadata.iter_mut().find(|(n, _)| n == DETECTED_LEVEL) {
            *value = normalize(value);
            return;
        }
        let level = if let Some(value) = self.fields.iter().find_map(|f| labels.get(f)) {
            normalize(value)
        } else if let Some(value) = self.fields.iter().find_map(|f| {
            metadata
                .iter()
                .find(|(n, _)| n == f)
                .map(|(_, v)| v.as_str())
        }) {
            normalize(value)
        } else if let Some((_, number)) = metadata.iter().find(|(n, _)| n == SEVERITY_NUMBER) {
            severity_level(number).to_string()
        } else {
            self.line_level(line).to_string()
        };
        if !level.is_empty() {
            metadata.push((DETECTED_LEVEL.to_string(), level));
        }
    }

    /// `extractLogLevelFromLogLine`.
    fn line_level(&self, line: &[u8]) -> &'static str {
        let value = if is_json(line) {
            json_level(line, &self.fields, self.max_json_depth)
        } else if !line.is_empty() && line.contains(&b'=') {
            logfmt_value(line, &self.fields)
        } else {
            return level_word(line);
        };
        value
            .and_then(known_level)
            .unwrap_or_else(|| level_word(line))
    }
}

/// OTLP severity numbers to levels.
fn severity_level(number: &str) -> &'static str {
    match number.parse::<i64>() {
        Err(_) => "info",
        Ok(0) => UNKNOWN,
        Ok(n) if n <= 4 => "trace",
        Ok(n) if n <= 8 => "debug",
        Ok(n) if n <= 12 => "info",
        Ok(n) if n <= 16 => "warn",
        Ok(n) if n <= 20 => "error",
        Ok(n) if n <= 24 => "fatal",
        Ok(_) => UNKNOWN,
    }
}

/// `isJSON`: the first non-space character is `{` and the last `}`.
fn is_json(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line);
    let first = text.chars().find(|c| !c.is_whitespace());
    let last = line.iter().rev().find(|&&b| !char::from(b).is_whitespace());
    first == Some('{') && last == Some(&b'}')
}

/// `detectLevelFromLogLine`: the level word that starts earliest, as a whole word.
fn level_word(line: &[u8]) -> &'static str {
    let lower = line.to_ascii_lowercase();
    let mut best = (lower.len(), UNKNOWN);
    for (finder, (_, level)) in LEVEL_FINDERS.iter().zip(LEVEL_WORDS) {
        if let Some(at) = bounded_position(&lower, finder)
            && at < best.0
        {
            best = (at, level);
            if at == 0 {
                break;
            }
        }
    }
    best.1
}

fn bounded_position(line: &[u8], finder: &memchr::memmem::Finder<'_>) -> Option<usize> {
    let word_len = finder.needle().len();
    let left = |at: usize| {
        at == 0
            || matches!(
                line[at - 1],
                b' ' | b'\t' | b'\n' | b'[' | b'(' | b'{' | b'"' | b'='
            )
    };
    let right = |end: usize| {
        end >= line.len()
            || matches!(
                line[end],
                b' ' | b'\t'
                    | b'\n'
                    | b'['
                    | b']'
                    | b'('
                    | b')'
                    | b'{'
                    | b'}'
                    | b':'
                    | b','
                    | b'!'
                    | b'"'
                    | b'='
            )
    };
    finder
        .find_iter(line)
        .find(|&at| left(at) && right(at + word_len))
}

/// `getValueUsingLogfmtParser`: the value of the first field (in `fields` order) present,
/// keys compared case-insensitively; parsing stops at the first syntax error.
fn logfmt_value<'a>(line: &'a [u8], fields: &[String]) -> Option<&'a [u8]> {
    let mut best: Option<(usize, &[u8])> = None;
    let mut at = 0;
    while at < line.len() {
        // Garbage before the key.
        while at < line.len() && line[at] <= b' ' {
            at += 1;
        }
        if at >= line.len() {
            break;
        }
        let start = at;
        while at < line.len() && line[at] > b' ' && line[at] != b'=' && line[at] != b'"' {
            at += 1;
        }
        if at < line.len() && line[at] == b'"' {
            break;
        }
        let key = &line[start..at];
        let mut value: &[u8] = &[];
        if at < line.len() && line[at] == b'=' {
            if key.is_empty() {
                break;
            }
            at += 1;
            if at < line.len() && line[at] == b'"' {
                let open = at;
                at += 1;
                let mut escaped = false;
                while at < line.len() && (escaped || line[at] != b'"') {
                    escaped = !escaped && line[at] == b'\\';
                    at += 1;
                }
                if at >= line.len() {
                    break;
                }
                value = &line[open + 1..at];
                at += 1;
            } else {
                let begin = at;
                while at < line.len() && line[at] > b' ' {
                    if line[at] == b'=' || line[at] == b'"' {
                        return best.map(|(_, v)| v);
                    }
                    at += 1;
                }
                value = &line[begin..at];
            }
        }
        if let Some(rank) = fields
            .iter()
            .position(|f| f.as_bytes().eq_ignore_ascii_case(key))
            && best.is_none_or(|(r, _)| rank < r)
        {
            best = Some((rank, value));
            if rank == 0 {
                break;
            }
        }
    }
    best.map(|(_, v)| v)
}

/// `getLevelUsingJSONParser`: the first string value, in document order, whose key is one of
/// `fields`, searching nested objects up to `max_depth` levels. Malformed JSON ends the search.
fn json_level<'a>(line: &'a [u8], fields: &[String], max_depth: i64) -> Option<&'a [u8]> {
    let mut at = line.iter().position(|&b| b == b'{')? + 1;
    // Objects open above the cursor, less one: the top object is depth 0.
    let mut object_depth: i64 = 0;
    let skip_space = |at: &mut usize| {
        while *at < line.len() && line[*at].is_ascii_whitespace() {
            *at += 1;
        }
    };
    let string_end = |from: usize| -> Option<usize> {
        let mut i = from;
        while i < line.len() {
            match line[i] {
                b'\\' => i += 2,
                b'"' => return Some(i),
                _ => i += 1,
            }
        }
        None
    };
    // Skips the value at `i` (one not searched); the index after it.
    let skip_value = |mut i: usize| -> Option<usize> {
        match *line.get(i)? {
            b'"' => Some(string_end(i + 1)? + 1),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match *line.get(i)? {
                        b'"' => i = string_end(i + 1)?,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return Some(i + 1);
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => {
                while i < line.len()
                    && !matches!(line[i], b',' | b'}' | b']')
                    && !line[i].is_ascii_whitespace()
                {
                    i += 1;
                }
                Some(i)
            }
        }
    };
    loop {
        skip_space(&mut at);
        match line.get(at)? {
            b'}' => {
                object_depth -= 1;
                at += 1;
                if object_depth < 0 {
                    return None;
                }
                skip_space(&mut at);
                if line.get(at) == Some(&b',') {
                    at += 1;
                }
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let key_end = string_end(at + 1)?;
        let key = &line[at + 1..key_end];
        at = key_end + 1;
        skip_space(&mut at);
        if line.get(at) != Some(&b':') {
            return None;
        }
        at += 1;
        skip_space(&mut at);
        match line.get(at)? {
            b'"' => {
                let end = string_end(at + 1)?;
                if fields.iter().any(|f| f.as_bytes() == key) {
                    return Some(&line[at + 1..end]);
                }
                at = end + 1;
            }
            b'{' if max_depth <= 0 || object_depth + 1 < max_depth => {
                at += 1;
                object_depth += 1;
                continue;
            }
            _ => at = skip_value(at)?,
        }
        skip_space(&mut at);
        match line.get(at)? {
            b',' => at += 1,
            b'}' => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver::labels;

    fn detector() -> LevelDetector {
        LevelDetector {
            fields: crate::receiver::config::DEFAULT_LOG_LEVEL_FIELDS
                .map(String::from)
                .to_vec(),
            max_json_depth: 2,
        }
    }

    fn level(labels_text: &str, metadata: &[(&str, &str)], line: &str) -> Vec<(String, String)> {
        let set = labels::parse(labels_text).unwrap_or_default();
        let mut metadata: Vec<(String, String)> = metadata
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        detector().apply(&set, &mut metadata, line.as_bytes());
        metadata
    }

    fn detected(line: &str) -> String {
        level("{job=\"a\"}", &[], line)
            .into_iter()
            .find(|(n, _)| n == DETECTED_LEVEL)
            .map(|(_, v)| v)
            .unwrap_or_default()
    }

    #[test]
    fn levels_come_from_lokis_sources_in_order() {
        assert_eq!(
            level("{level=\"WARNING\"}", &[], "error here"),
            vec![("detected_level".to_string(), "warn".to_string())]
        );
        assert_eq!(
            level("{job=\"a\"}", &[("lvl", "dbg")], "error here")[1],
            ("detected_level".to_string(), "debug".to_string())
        );
        assert_eq!(
            level("{job=\"a\"}", &[("detected_level", "ERR")], "x"),
            vec![("detected_level".to_string(), "error".to_string())]
        );
        assert_eq!(
            level("{job=\"a\"}", &[("severity_number", "17")], "x")[1].1,
            "error"
        );
    }

    #[test]
    fn levels_from_lines() {
        assert_eq!(detected("plain words, no level"), "unknown");
        assert_eq!(detected("2024 [ERROR] disk full"), "error");
        assert_eq!(detected("an info line with a later error"), "info");
        assert_eq!(detected("misc:error is not a word"), "unknown");
        assert_eq!(detected("seq=1 a line for loki"), "unknown");
        assert_eq!(detected("ts=1 level=warn msg=\"x error\""), "warn");
        assert_eq!(detected("ts=1 lvl=\"fatal\""), "fatal");
        assert_eq!(detected(r#"{"msg":"error soon","level":"debug"}"#), "debug");
        assert_eq!(detected(r#"{"a":{"severity":"inf"}}"#), "info");
        // Deeper than two levels is not searched; the words decide.
        assert_eq!(
            detected(r#"{"a":{"b":{"level":"dbg"}},"m":"warn"}"#),
            "warn"
        );
        assert_eq!(detected(r#"{"a":{"level":"dbg"},"m":"warn"}"#), "debug");
        assert_eq!(detected(r#"{"level": 5, "m":"x"}"#), "unknown");
        assert_eq!(detected("{broken json error"), "error");
    }
}
