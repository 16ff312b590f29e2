//! Formatting that reproduces what Loki's Go code prints, so that response bodies match Loki's
//! byte for byte: `time.Time.Format(time.RFC3339)`, `time.Time.String()`, `strconv.Quote`,
//! `time.Duration.String()`, Loki's `flagext.ByteSize.String()` (c2h5oh/datasize) and
//! go-humanize's `Bytes`.
//!
//! Guarantees:
//! - Times are printed in UTC, which is what Loki prints when it runs with `TZ` unset (its
//!   container images): `2024-05-01T10:00:00Z` and `2024-05-01 10:00:00.5 +0000 UTC`.
//! - Every `i64` nanosecond value formats without panicking (years before 1 or after 9999 are
//!   printed with as many digits as they need, which Go would not produce but never reaches).
//! - [`GO_ZERO_TIME_NS`], what Go's `time.Time{}.UnixNano()` gives (a JSON entry without a
//!   timestamp), prints as Go prints the zero time: `0001-01-01T00:00:00Z`.

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

/// `time.Time{}.UnixNano()` in Go: the zero time (year 1) overflows an `int64` of nanoseconds
/// and wraps to this value. Loki gives it to a JSON entry whose timestamp is missing.
pub const GO_ZERO_TIME_NS: i64 = -6_795_364_578_871_345_152;

/// Go's `t.UTC().Format(time.RFC3339)`: whole seconds, `Z` suffix.
pub fn rfc3339(ns: i64) -> String {
    if ns == GO_ZERO_TIME_NS {
        return "0001-01-01T00:00:00Z".to_string();
    }
    let c = civil(ns);
    let mut out = date_and_time(&c, 'T');
    out.push('Z');
    out
}

/// Go's `t.UTC().String()`: `2006-01-02 15:04:05.999999999 +0000 UTC`, the fraction without
/// trailing zeros and left out when zero.
pub fn go_time_string(ns: i64) -> String {
    if ns == GO_ZERO_TIME_NS {
        return "0001-01-01 00:00:00 +0000 UTC".to_string();
    }
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

/// The digits of `frac` (out of `10^digits`) without trailing zeros, with a leading `.`; empty
/// when `frac` is 0. Go's `fmtFrac`.
fn fraction(frac: u64, digits: usize) -> String {
    if frac == 0 {
        return String::new();
    }
    let text = format!("{frac:0digits$}");
    format!(".{}", text.trim_end_matches('0'))
}

/// Go's `time.Duration.String()`: `0s`, `500ms`, `1.5s`, `2m0s`, `1h0m0s`, `1µs`.
pub fn go_duration(d: std::time::Duration) -> String {
    let u = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    const MICRO: u64 = 1_000;
    const MILLI: u64 = 1_000_000;
    const SECOND: u64 = 1_000_000_000;
    if u == 0 {
        return "0s".to_string();
    }
    if u < MICRO {
        return format!("{u}ns");
    }
    if u < MILLI {
        return format!("{}{}µs", u / MICRO, fraction(u % MICRO, 3));
    }
    if u < SECOND {
        return format!("{}{}ms", u / MILLI, fraction(u % MILLI, 6));
    }
    let seconds = u / SECOND;
    let frac = fraction(u % SECOND, 9);
    let (hours, minutes, secs) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if hours > 0 {
        format!("{hours}h{minutes}m{secs}{frac}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs}{frac}s")
    } else {
        format!("{secs}{frac}s")
    }
}

/// Loki's `flagext.ByteSize.String()` (c2h5oh/datasize): the largest power-of-1024 unit that
/// divides the size exactly, else bytes: `3MB`, `1536KB`, `621B`, `0B`.
pub fn datasize(bytes: u64) -> String {
    const UNITS: [(&str, u32); 6] = [
        ("EB", 60),
        ("PB", 50),
        ("TB", 40),
        ("GB", 30),
        ("MB", 20),
        ("KB", 10),
    ];
    if bytes == 0 {
        return "0B".to_string();
    }
    for (unit, shift) in UNITS {
        let size = 1u64 << shift;
        if bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

/// go-humanize's `Bytes`: powers of 1000 with one decimal below 10, `17 MB`, `9.5 kB`, `42 B`.
pub fn humanize_bytes(bytes: u64) -> String {
    const SIZES: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 10 {
        return format!("{bytes} B");
    }
    let value = bytes as f64;
    let exponent = (value.ln() / 1000f64.ln()).floor();
    let suffix = SIZES[(exponent as usize).min(SIZES.len() - 1)];
    let rounded = (value / 1000f64.powf(exponent) * 10.0 + 0.5).floor() / 10.0;
    if rounded < 10.0 {
        format!("{rounded:.1} {suffix}")
    } else {
        format!("{rounded:.0} {suffix}")
    }
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
    fn zero_time_prints_like_go() {
        assert_eq!(rfc3339(GO_ZERO_TIME_NS), "0001-01-01T00:00:00Z");
        assert_eq!(
            go_time_string(GO_ZERO_TIME_NS),
            "0001-01-01 00:00:00 +0000 UTC"
        );
    }

    #[test]
    fn durations_print_like_go() {
        use std::time::Duration;
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_secs(15)), "15s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(120)), "2m0s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(go_duration(Duration::from_micros(1)), "1µs");
        assert_eq!(go_duration(Duration::from_nanos(7)), "7ns");
    }

    #[test]
    fn byte_sizes_print_like_loki() {
        assert_eq!(datasize(3 << 20), "3MB");
        assert_eq!(datasize(15 << 20), "15MB");
        assert_eq!(datasize(1536 << 10), "1536KB");
        assert_eq!(datasize(2048), "2KB");
        assert_eq!(datasize(621), "621B");
        assert_eq!(datasize(0), "0B");
        assert_eq!(humanize_bytes(1 << 24), "17 MB");
        assert_eq!(humanize_bytes(9_500), "9.5 kB");
        assert_eq!(humanize_bytes(42), "42 B");
        assert_eq!(humanize_bytes(7), "7 B");
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
