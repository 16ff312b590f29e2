//! Formatting that reproduces what Loki's Go code prints, so that response bodies match Loki's
//! byte for byte: `time.Time.Format(time.RFC3339)`, `time.Time.String()` and `strconv.Quote`.
//!
//! Guarantees:
//! - Times are printed in UTC, which is what Loki prints when it runs with `TZ` unset (its
//!   container images): `2024-05-01T10:00:00Z` and `2024-05-01 10:00:00.5 +0000 UTC`.
//! - Every `i64` nanosecond value formats without panicking (years before 1 or after 9999 are
//!   printed with as many digits as they need, which Go would not produce but never reaches).

/// A broken-down UTC time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
}

const NANOS_PER_SECOND: i64 = 1_000_000_000;

fn civil(ns: i64) -> Civil {
    let seconds = ns.div_euclid(NANOS_PER_SECOND);
    let nanos = ns.rem_euclid(NANOS_PER_SECOND) as u32;
    let days = seconds.div_euclid(86_400);
    let in_day = seconds.rem_euclid(86_400) as u32;
    // Howard Hinnant's `civil_from_days`, valid for the whole i64 range we can reach here.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: in_day / 3_600,
        minute: in_day % 3_600 / 60,
        second: in_day % 60,
        nanos,
    }
}

fn date_and_time(c: &Civil, separator: char) -> String {
    format!(
        "{:04}-{:02}-{:02}{separator}{:02}:{:02}:{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// Go's `t.UTC().Format(time.RFC3339)`: whole seconds, `Z` suffix.
pub fn rfc3339(ns: i64) -> String {
    let c = civil(ns);
    let mut out = date_and_time(&c, 'T');
    out.push('Z');
    out
}

/// Go's `t.UTC().String()`: `2006-01-02 15:04:05.999999999 +0000 UTC`, the fraction without
/// trailing zeros and left out when zero.
pub fn go_time_string(ns: i64) -> String {
    let c = civil(ns);
    let mut out = date_and_time(&c, ' ');
    if c.nanos != 0 {
        let fraction = format!("{:09}", c.nanos);
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    out
}

/// Whether Go's `unicode.IsPrint` holds, closely enough for label values: letters, marks,
/// numbers, punctuation, symbols and the ASCII space; not controls, other spaces, format
/// characters or private-use characters.
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(u32::from(c),
        0xAD
        | 0x600..=0x605
        | 0x61C
        | 0x6DD
        | 0x70F
        | 0x180E
        | 0x200B..=0x200F
        | 0x202A..=0x202E
        | 0x2060..=0x206F
        | 0xE000..=0xF8FF
        | 0xFEFF
        | 0xFFF9..=0xFFFB
        | 0xF0000..=0x10FFFF)
}

/// Go's `strconv.Quote`: a double-quoted string with Go escapes.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_go_printable(c) => out.push(c),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Go's `%q` for a rune: `'-'`, `'\n'`, `'\''`.
pub fn go_quote_rune(c: char) -> String {
    match c {
        '\'' => "'\\''".to_string(),
        '"' => "'\"'".to_string(),
        c => {
            let quoted = go_quote(&c.to_string());
            format!("'{}'", &quoted[1..quoted.len() - 1])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_like_go() {
        // 2024-05-01T10:00:00Z
        let ns = 1_714_557_600 * NANOS_PER_SECOND;
        assert_eq!(rfc3339(ns), "2024-05-01T10:00:00Z");
        assert_eq!(go_time_string(ns), "2024-05-01 10:00:00 +0000 UTC");
        assert_eq!(
            go_time_string(ns + 500_000_000),
            "2024-05-01 10:00:00.5 +0000 UTC"
        );
        assert_eq!(
            go_time_string(ns + 1),
            "2024-05-01 10:00:00.000000001 +0000 UTC"
        );
        // The fraction is dropped by RFC3339.
        assert_eq!(rfc3339(ns + 999_999_999), "2024-05-01T10:00:00Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        // A leap day.
        assert_eq!(
            rfc3339(951_782_400 * NANOS_PER_SECOND),
            "2000-02-29T00:00:00Z"
        );
        // Extremes do not panic.
        let _ = rfc3339(i64::MIN);
        let _ = go_time_string(i64::MAX);
    }

    #[test]
    fn quotes_like_go_strconv() {
        assert_eq!(go_quote("plain"), "\"plain\"");
        assert_eq!(go_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(go_quote("tab\there\n"), "\"tab\\there\\n\"");
        assert_eq!(go_quote("\u{1}\u{7f}"), "\"\\x01\\x7f\"");
        assert_eq!(go_quote("é世"), "\"é世\"");
        assert_eq!(go_quote("\u{a0}"), "\"\\u00a0\"");
        assert_eq!(go_quote_rune('-'), "'-'");
        assert_eq!(go_quote_rune('\''), "'\\''");
        assert_eq!(go_quote_rune('\n'), "'\\n'");
    }
}
