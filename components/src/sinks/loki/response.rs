//! Reading Loki's answers.
//!
//! Loki's 400 to a push is a partial success: the valid entries were stored, and the body says
//! which were refused, in one of two forms (Loki 3.x; texts matched case-insensitively, 3.4
//! capitalises some first words):
//!
//! - The distributor's validation errors, one text per refused entry, grouped by identical
//!   text and joined with `; `, each group prefixed `N errors like: ` (a lone text that
//!   occurred once is bare). Texts name the stream and, for time limits, the entry's second:
//!   `entry for stream '{..}' has timestamp too old: T, oldest acceptable timestamp is: C`,
//!   `... has timestamp too new: T`, `max entry size 'N' bytes exceeded for stream '{..}' while
//!   adding an entry with length 'L' bytes`, label errors.
//! - The ingester's listing for one stream: up to ten lines `entry with timestamp <Go time, to
//!   the nanosecond> ignored, reason: '<reason>',` then `user 'T', total ignored: X out of Y
//!   for stream: {..}` (too far behind, per-stream rate limit).
//!
//! [`parse_400`] turns a body into [`Refusal`]s with their counts and [`Summary`]s, which the
//! sink reconciles with the entries it sent. Times in the texts are whole seconds (RFC 3339)
//! except in the ingester's entry lines.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why Loki refused an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    TooOld,
    TooFarBehind,
    TooNew,
    LineTooLong,
    InvalidLabels,
    RateLimited,
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
            Self::RateLimited => "per_stream_rate_limit",
            Self::Other => "rejected",
        }
    }
}

/// One refusal text: a group of entries refused for the same reason, or one listed entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub reason: RejectReason,
    /// The stream's labels as sorted pairs, when the text names it (as Loki printed it: it
    /// may have added `service_name` or `__stream_shard__`).
    pub stream: Option<Vec<(String, String)>>,
    /// How many entries this text stands for (`N errors like:`; 1 when bare).
    pub count: u64,
    /// The refused entry's time in whole seconds, when the text gives it.
    pub entry_seconds: Option<i64>,
    /// The refused entry's exact time (the ingester's entry lines only).
    pub entry_ns: Option<i64>,
    /// Loki's oldest acceptable time as it stated it (a whole second), ns since the epoch.
    pub oldest_acceptable_ns: Option<i64>,
    /// The refused line's length (line too long).
    pub line_length: Option<usize>,
    /// Loki's line size limit (line too long).
    pub max_line_size: Option<usize>,
    /// The text as Loki wrote it.
    pub message: String,
}

/// The ingester's summary for one stream, with the entry lines listed before it.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub stream: Vec<(String, String)>,
    pub ignored: u64,
    pub total: u64,
    /// The entries listed one by one (at most ten).
    pub listed: Vec<Refusal>,
    pub message: String,
}

/// What a 400 body says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Answer {
    /// Refusal texts not part of an ingester listing (the distributor's).
    pub refusals: Vec<Refusal>,
    pub summaries: Vec<Summary>,
    /// Loki's JSON decoder failed: the body was cut at `max_recv_msg_size` (a JSON push too
    /// large is answered 400, not 413). Split and send again.
    pub decoder_error: bool,
    /// The protobuf body was over the decompressed size limit (400): split and send again.
    pub too_large: bool,
}

/// Reads a 400 body.
pub fn parse_400(body: &str) -> Answer {
    let mut answer = Answer::default();
    let trimmed = body.trim();
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("loghttp.pushrequest") {
        answer.decoder_error = true;
        return answer;
    }
    if lower.contains("decompressed message size too large") {
        answer.too_large = true;
        return answer;
    }
    let mut listed: Vec<Refusal> = Vec::new();
    for line in trimmed.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let lower_line = line.to_ascii_lowercase();
        if lower_line.contains("total ignored:") {
            if let Some(summary) = parse_summary(line, std::mem::take(&mut listed)) {
                answer.summaries.push(summary);
            }
            continue;
        }
        if lower_line.starts_with("entry with timestamp ")
            && lower_line.contains(" ignored, reason:")
        {
            if let Some(refusal) = parse_listed(line) {
                listed.push(refusal);
            }
            continue;
        }
        for part in split_outside_quotes(line, "; ") {
            let part = part.trim().trim_end_matches(',');
            let (count, text) = grouped(part);
            if let Some(mut refusal) = parse_text(text) {
                refusal.count = count;
                answer.refusals.push(refusal);
            }
        }
    }
    // Entry lines without a summary (a cut body): refusals of an unknown stream.
    answer.refusals.extend(listed);
    answer
}

/// `(N, text)` of `N errors like: text`; `(1, part)` otherwise.
fn grouped(part: &str) -> (u64, &str) {
    let lower = part.to_ascii_lowercase();
    if let Some(i) = lower.find(" errors like: ")
        && let Ok(n) = part[..i].trim().parse::<u64>()
    {
        return (n, &part[i + " errors like: ".len()..]);
    }
    (1, part)
}

/// Splits on `separator` where it is not inside a double-quoted label value.
fn split_outside_quotes<'a>(text: &'a str, separator: &str) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if escaped {
            escaped = false;
        } else if in_quotes && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            in_quotes = !in_quotes;
        } else if !in_quotes && text[i..].starts_with(separator) {
            parts.push(&text[start..i]);
            i += separator.len();
            start = i;
            continue;
        }
        i += 1;
    }
    parts.push(&text[start..]);
    parts
}

/// `user 'T', total ignored: X out of Y for stream: {..}`.
fn parse_summary(line: &str, listed: Vec<Refusal>) -> Option<Summary> {
    let lower = line.to_ascii_lowercase();
    let rest = after(&lower, line, "total ignored: ")?;
    let mut words = rest.split_whitespace();
    let ignored = words.next()?.parse().ok()?;
    if words.next()? != "out" || words.next()? != "of" {
        return None;
    }
    let total = words.next()?.parse().ok()?;
    let stream = stream_of(after(&lower, line, "for stream: ")?)?;
    Some(Summary {
        stream,
        ignored,
        total,
        listed,
        message: line.to_string(),
    })
}

/// `entry with timestamp 2026-12-01 19:36:39.053668864 +0000 UTC ignored, reason: '...',`
fn parse_listed(line: &str) -> Option<Refusal> {
    let lower = line.to_ascii_lowercase();
    let time = after(&lower, line, "entry with timestamp ")?;
    let end = time.to_ascii_lowercase().find(" ignored, reason:")?;
    let entry_ns = parse_go_time(&time[..end])?;
    let reason_text = after(&lower, line, "reason: '")?;
    let reason_text = reason_text.trim_end_matches(',').trim_end_matches('\'');
    let mut refusal = parse_text(reason_text).unwrap_or(Refusal {
        reason: RejectReason::Other,
        stream: None,
        count: 1,
        entry_seconds: None,
        entry_ns: None,
        oldest_acceptable_ns: None,
        line_length: None,
        max_line_size: None,
        message: String::new(),
    });
    refusal.entry_ns = Some(entry_ns);
    refusal.entry_seconds = Some(entry_ns.div_euclid(1_000_000_000));
    refusal.message = line.to_string();
    Some(refusal)
}

/// One refusal text (without a count).
fn parse_text(line: &str) -> Option<Refusal> {
    let lower = line.to_ascii_lowercase();
    let reason = if lower.contains("timestamp too old") {
        RejectReason::TooOld
    } else if lower.contains("too far behind") {
        RejectReason::TooFarBehind
    } else if lower.contains("timestamp too new") {
        RejectReason::TooNew
    } else if lower.contains("max entry size") {
        RejectReason::LineTooLong
    } else if lower.contains("per stream rate limit exceeded") {
        RejectReason::RateLimited
    } else if lower.contains("error parsing labels")
        || lower.contains("couldn't parse labels")
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
    // The rate-limit text names its stream inside the reason; the others after "stream".
    let stream = stream_of(line);
    Some(Refusal {
        reason,
        stream,
        count: 1,
        entry_seconds,
        entry_ns: None,
        oldest_acceptable_ns,
        line_length,
        max_line_size,
        message: line.to_string(),
    })
}

/// Go's `Time.String()`: `2006-01-02 15:04:05.999999999 -0700 MST` to ns since the epoch.
pub fn parse_go_time(text: &str) -> Option<i64> {
    let mut parts = text.split_whitespace();
    let date = parts.next()?;
    let time = parts.next()?;
    let offset = parts.next()?;
    let base = parse_rfc3339(&format!("{date}T{time}Z"))?;
    let sign = match offset.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits = offset.get(1..)?;
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i64 = digits[..2].parse().ok()?;
    let minutes: i64 = digits[2..].parse().ok()?;
    Some(base - sign * (hours * 3600 + minutes * 60) * 1_000_000_000)
}

/// The limit and the push size of a tenant rate-limit 429 (`ingestion rate limit exceeded for
/// user T (limit: N bytes/sec) while attempting to ingest 'L' lines totaling 'B' bytes`).
pub fn rate_limit_429(body: &str) -> Option<(u64, u64)> {
    let lower = body.to_ascii_lowercase();
    if !lower.contains("ingestion rate limit exceeded") {
        return None;
    }
    let limit = after(&lower, body, "(limit: ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let bytes = after(&lower, body, "totaling '")?
        .split('\'')
        .next()?
        .parse()
        .ok()?;
    Some((limit, bytes))
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

    const S: i64 = 1_000_000_000;

    #[test]
    fn parses_too_old_with_stream_count_and_cutoff() {
        let body = "3 errors like: entry for stream '{job=\"app\", env=\"a; b\", service_name=\"app\"}' has timestamp too old: 2024-01-01T00:00:00Z, oldest acceptable timestamp is: 2024-01-08T00:00:00Z; 1 errors like: entry for stream '{job=\"app\"}' has timestamp too old: 2024-01-07T23:59:59Z, oldest acceptable timestamp is: 2024-01-08T00:00:00Z\n";
        let answer = parse_400(body);
        assert_eq!(answer.refusals.len(), 2, "{answer:?}");
        let first = &answer.refusals[0];
        assert_eq!(first.reason, RejectReason::TooOld);
        assert_eq!(first.count, 3);
        assert_eq!(
            first.stream,
            Some(vec![
                ("env".to_string(), "a; b".to_string()),
                ("job".to_string(), "app".to_string()),
                ("service_name".to_string(), "app".to_string()),
            ])
        );
        assert_eq!(first.entry_seconds, Some(1_704_067_200));
        assert_eq!(first.oldest_acceptable_ns, Some(1_704_672_000 * S));
        assert_eq!(answer.refusals[1].count, 1);
        assert!(answer.summaries.is_empty());
    }

    #[test]
    fn a_lone_text_counts_one() {
        let body = "max entry size '10' bytes exceeded for stream '{job=\"a\"}' while adding an entry with length '25' bytes";
        let answer = parse_400(body);
        assert_eq!(answer.refusals.len(), 1);
        assert_eq!(answer.refusals[0].count, 1);
        assert_eq!(answer.refusals[0].reason, RejectReason::LineTooLong);
        assert_eq!(answer.refusals[0].line_length, Some(25));
        assert_eq!(answer.refusals[0].max_line_size, Some(10));
    }

    #[test]
    fn the_ingester_listing_gives_exact_times_and_the_summary_counts() {
        let body = "entry with timestamp 2026-12-01 19:36:39.053668864 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2026-12-01T19:36:39Z, oldest acceptable timestamp is: 2026-12-01T19:40:00Z',\n\
                    entry with timestamp 2026-12-01 19:36:40 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2026-12-01T19:36:40Z, oldest acceptable timestamp is: 2026-12-01T19:40:00Z',\n\
                    user 'team-a', total ignored: 3010 out of 5000 for stream: {job=\"app\", service_name=\"app\"}\n";
        let answer = parse_400(body);
        assert!(answer.refusals.is_empty(), "{answer:?}");
        let summary = &answer.summaries[0];
        assert_eq!((summary.ignored, summary.total), (3010, 5000));
        assert_eq!(summary.listed.len(), 2);
        assert_eq!(summary.listed[0].reason, RejectReason::TooFarBehind);
        let base = parse_rfc3339("2026-12-01T19:36:39Z").unwrap();
        assert_eq!(summary.listed[0].entry_ns, Some(base + 53_668_864));
        assert_eq!(summary.listed[1].entry_ns, Some(base + S));
        assert!(summary.listed[0].oldest_acceptable_ns.is_some());
    }

    #[test]
    fn decoder_and_size_errors_ask_for_a_split() {
        let json = parse_400(
            "loghttp.PushRequest.Streams: []loghttp.LogProtoStream: readStringSlowPath: unexpected end of input, error found in #10 byte of ...|abc|..., bigger context ...|abc|...",
        );
        assert!(json.decoder_error);
        let protobuf = parse_400("decompressed message size too large than max (600 vs 500)");
        assert!(protobuf.too_large);
    }

    #[test]
    fn upper_case_texts_of_older_lokis_are_read_too() {
        let body = "Max entry size '10' bytes exceeded for stream '{job=\"a\"}' while adding an entry with length '25' bytes; 2 errors like: entry for stream '{job=\"a\"}' has timestamp too new: 2030-01-01T00:00:00Z";
        let answer = parse_400(body);
        let reasons: Vec<_> = answer.refusals.iter().map(|r| r.reason).collect();
        assert_eq!(
            reasons,
            vec![RejectReason::LineTooLong, RejectReason::TooNew]
        );
        assert_eq!(answer.refusals[1].count, 2);
        assert_eq!(answer.refusals[1].entry_seconds, Some(1_893_456_000));
    }

    #[test]
    fn go_times_with_offsets() {
        assert_eq!(
            parse_go_time("1970-01-01 01:00:00.5 +0100 CET"),
            Some(500_000_000)
        );
        assert_eq!(parse_go_time("nonsense"), None);
    }

    #[test]
    fn tenant_rate_limit_gives_limit_and_push_size() {
        let body = "ingestion rate limit exceeded for user team-a (limit: 1024 bytes/sec) while attempting to ingest '50' lines totaling '4096' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased";
        assert_eq!(rate_limit_429(body), Some((1024, 4096)));
        assert_eq!(rate_limit_429("too many requests"), None);
    }

    #[test]
    fn retry_after_seconds_and_date() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), None);
        assert!(parse_retry_after("nonsense").is_none());
    }
}
