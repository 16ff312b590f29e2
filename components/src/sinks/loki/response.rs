//! Reading Loki's answers.
//!
//! Loki's 400 to a push is a partial success: the valid entries were stored, and the body lists
//! one message per rejected entry (or stream). This module turns a body into [`Rejection`]s the
//! sink can match to its entries. Messages are matched case-insensitively (Loki 3.6 lower-cased
//! some of them). Recognised, as Loki 3.x writes them:
//! - `entry for stream '{..}' has timestamp too old: T, oldest acceptable timestamp is: C`
//! - `entry with timestamp .. ignored, reason: 'entry too far behind, entry timestamp is: T,
//!   oldest acceptable timestamp is: C'` (optionally followed by `for stream: {..}`)
//! - `entry for stream '{..}' has timestamp too new: T`
//! - `Max entry size 'N' bytes exceeded for stream '{..}' while adding an entry with length 'L' bytes`
//! - label errors (`Error parsing labels`, `label names`, `label name too long`,
//!   `label value too long`, `duplicate label name`, `at least one label pair`): the whole stream.
//!
//! Timestamps in these messages are RFC 3339 with second resolution.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why Loki rejected an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    TooOld,
    TooFarBehind,
    TooNew,
    LineTooLong,
    InvalidLabels,
    Other,
}

impl RejectReason {
    /// The metric / DLQ reason word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooOld => "timestamp_too_old",
            Self::TooFarBehind => "too_far_behind",
            Self::TooNew => "timestamp_too_new",
            Self::LineTooLong => "line_too_long",
            Self::InvalidLabels => "invalid_labels",
            Self::Other => "rejected",
        }
    }
}

/// One rejected entry or stream, as far as the message tells.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    pub reason: RejectReason,
    /// The stream's labels as pairs, when the message names the stream.
    pub stream: Option<Vec<(String, String)>>,
    /// The rejected entry's time, in whole seconds since the epoch, when given.
    pub entry_seconds: Option<i64>,
    /// Loki's oldest acceptable time, ns since the epoch (too old / too far behind).
    pub oldest_acceptable_ns: Option<i64>,
    /// The rejected line's length (line too long).
    pub line_length: Option<usize>,
    /// Loki's line size limit (line too long).
    pub max_line_size: Option<usize>,
    /// The message as Loki wrote it.
    pub message: String,
}

/// Splits a 400 body into rejections; lines that are not about an entry are skipped.
pub fn parse_rejections(body: &str) -> Vec<Rejection> {
    // The distributor joins its errors on one line with "; ", each kind once, prefixed
    // "N errors like: " when repeated; the ingester lists entries one per line, ending in ",".
    body.lines()
        .flat_map(|line| line.split("; "))
        .map(|piece| {
            let piece = piece.trim().trim_end_matches(',');
            match piece.find("errors like: ") {
                Some(i) => &piece[i + "errors like: ".len()..],
                None => piece,
            }
        })
        .filter(|piece| !piece.is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Rejection> {
    let lower = line.to_ascii_lowercase();
    let reason = if lower.contains("timestamp too old") {
        RejectReason::TooOld
    } else if lower.contains("too far behind") {
        RejectReason::TooFarBehind
    } else if lower.contains("timestamp too new") {
        RejectReason::TooNew
    } else if lower.contains("max entry size") {
        RejectReason::LineTooLong
    } else if lower.contains("error parsing labels")
        || lower.contains("label names")
        || lower.contains("label name too long")
        || lower.contains("label value too long")
        || lower.contains("duplicate label name")
        || lower.contains("at least one label pair")
    {
        RejectReason::InvalidLabels
    } else if lower.contains("entry") || lower.contains("stream") {
        RejectReason::Other
    } else {
        return None;
    };
    let oldest_acceptable_ns = after(&lower, line, "oldest acceptable timestamp is: ")
        .and_then(|rest| parse_rfc3339(first_token(rest)));
    let entry_seconds = match reason {
        RejectReason::TooOld => after(&lower, line, "timestamp too old: "),
        RejectReason::TooNew => after(&lower, line, "timestamp too new: "),
        RejectReason::TooFarBehind => after(&lower, line, "entry timestamp is: "),
        _ => None,
    }
    .and_then(|rest| parse_rfc3339(first_token(rest)))
    .map(|ns| ns.div_euclid(1_000_000_000));
    let quoted_number = |needle: &str| {
        after(&lower, line, needle)
            .and_then(|rest| rest.split('\'').next())
            .and_then(|n| n.parse().ok())
    };
    let (line_length, max_line_size) = if reason == RejectReason::LineTooLong {
        (
            quoted_number("entry with length '"),
            quoted_number("max entry size '"),
        )
    } else {
        (None, None)
    };
    Some(Rejection {
        reason,
        stream: stream_of(line),
        entry_seconds,
        oldest_acceptable_ns,
        line_length,
        max_line_size,
        message: line.to_string(),
    })
}

/// The part of `original` after `needle` (searched case-insensitively in `lower`).
fn after<'a>(lower: &str, original: &'a str, needle: &str) -> Option<&'a str> {
    lower
        .find(needle)
        .and_then(|i| original.get(i + needle.len()..))
}

fn first_token(s: &str) -> &str {
    s.split(|c: char| c == ',' || c == '\'' || c.is_whitespace())
        .next()
        .unwrap_or("")
}

/// The labels of the stream a message names: `stream '{...}'` or `for stream: {...}`.
fn stream_of(line: &str) -> Option<Vec<(String, String)>> {
    let start = line.find('{')?;
    let text = &line[start..];
    let end = closing_brace(text)?;
    parse_labels(&text[..=end])
}

/// The index of the `}` closing the label set at the start of `text` (quotes respected).
fn closing_brace(text: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

/// Parses `{a="1", b="x\"y"}` into sorted pairs; `None` when malformed.
pub fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut pairs = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let name = rest[..eq].trim().to_string();
        let after_eq = rest[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after_eq.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, other)) => value.push(other),
                    None => return None,
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end?;
        pairs.push((name, value));
        rest = after_eq[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    pairs.sort();
    Some(pairs)
}

/// RFC 3339 (`2024-01-02T03:04:05Z`, offsets and fractions allowed) to ns since the epoch.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339_weak(text.trim_end_matches('Z'))
        .ok()
        .or_else(|| humantime::parse_rfc3339(text).ok())?;
    let ns = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).ok()?,
        Err(e) => -i64::try_from(e.duration().as_nanos()).ok()?,
    };
    Some(ns)
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate_parse(value)?;
    at.duration_since(SystemTime::now()).ok()
}

/// Parses the IMF-fixdate form (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn httpdate_parse(value: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)?
        + 1;
    let text = format!("{year}-{month:02}-{:0>2}T{time}Z", day);
    humantime::parse_rfc3339(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_too_old_with_stream_and_cutoff() {
        let body = "entry for stream '{job=\"app\", env=\"a, b\"}' has timestamp too old: 2024-01-01T00:00:00Z, oldest acceptable timestamp is: 2024-01-08T00:00:00Z\n";
        let r = parse_rejections(body);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].reason, RejectReason::TooOld);
        assert_eq!(
            r[0].stream,
            Some(vec![
                ("env".to_string(), "a, b".to_string()),
                ("job".to_string(), "app".to_string())
            ])
        );
        assert_eq!(r[0].entry_seconds, Some(1_704_067_200));
        assert_eq!(r[0].oldest_acceptable_ns, Some(1_704_672_000_000_000_000));
    }

    #[test]
    fn parses_too_far_behind_lower_cased_and_comma_separated() {
        let body = "ENTRY WITH TIMESTAMP 2022-10-10 13:25:44 +0000 UTC IGNORED, REASON: 'ENTRY TOO FAR BEHIND, ENTRY TIMESTAMP IS: 2022-10-10T13:25:44Z, OLDEST ACCEPTABLE TIMESTAMP IS: 2022-10-28T23:10:16Z' for stream: {job=\"x\"},\nentry with timestamp 2022-10-10 13:25:45 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2022-10-10T13:25:45Z, oldest acceptable timestamp is: 2022-10-28T23:10:16Z',";
        let r = parse_rejections(body);
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|r| r.reason == RejectReason::TooFarBehind));
        assert_eq!(r[0].stream, Some(vec![("job".into(), "x".into())]));
        assert_eq!(r[1].stream, None);
        assert_eq!(r[1].entry_seconds, Some(1_665_408_345));
        assert!(r[0].oldest_acceptable_ns.is_some());
    }

    #[test]
    fn parses_line_too_long_too_new_and_label_errors() {
        let body = "Max entry size '10' bytes exceeded for stream '{job=\"a\"}' while adding an entry with length '25' bytes\n\
                    entry for stream '{job=\"a\"}' has timestamp too new: 2030-01-01T00:00:00Z\n\
                    stream '{job=\"a\"}' has label value too long: 'xxxx'";
        let r = parse_rejections(body);
        assert_eq!(
            r.iter().map(|r| r.reason).collect::<Vec<_>>(),
            vec![
                RejectReason::LineTooLong,
                RejectReason::TooNew,
                RejectReason::InvalidLabels
            ]
        );
        assert_eq!(r[0].line_length, Some(25));
        assert_eq!(r[0].max_line_size, Some(10));
        assert_eq!(r[1].entry_seconds, Some(1_893_456_000));
    }

    #[test]
    fn splits_the_distributors_joined_errors() {
        let body = "2 errors like: entry for stream '{job=\"a\", service_name=\"a\"}' has timestamp too old: 2024-01-01T00:00:00Z, oldest acceptable timestamp is: 2024-01-08T00:00:00Z; Max entry size '10' bytes exceeded for stream '{job=\"a\", service_name=\"a\"}' while adding an entry with length '25' bytes";
        let r = parse_rejections(body);
        assert_eq!(
            r.iter().map(|r| r.reason).collect::<Vec<_>>(),
            vec![RejectReason::TooOld, RejectReason::LineTooLong]
        );
        assert_eq!(r[0].oldest_acceptable_ns, Some(1_704_672_000_000_000_000));
    }

    #[test]
    fn retry_after_seconds_and_date() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), None);
        assert!(parse_retry_after("nonsense").is_none());
    }
}
