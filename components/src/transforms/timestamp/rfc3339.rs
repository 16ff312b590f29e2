//! RFC 3339 times read with the whole second looked up once: lines logged in the same second
//! share their date, time of day and offset, and only the fraction differs.
//!
//! Guarantees: [`Rfc3339Reader::read`] gives exactly what jiff's `Timestamp` parser gives for
//! the same text, for every text (the tests compare the two across second, day, month and year
//! edges and offsets). Only a value shaped `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|z|+HH:MM|-HH:MM)`
//! with a second below 60 takes the short way; its whole second (the text without the
//! fraction) is read by jiff the first time it is seen, so jiff alone decides what is valid.
//! Anything else is handed to jiff whole.

use jiff::Timestamp;

/// `YYYY-MM-DDTHH:MM:SS`
const DATE_TIME_LEN: usize = 19;

/// The last whole second read (its text without the fraction) and its time in ns.
#[derive(Clone, Debug, Default)]
pub(super) struct Rfc3339Reader {
    /// The date-time part and the offset, as written.
    second_text: Vec<u8>,
    second_ns: i64,
}

impl Rfc3339Reader {
    /// The time in ns since the epoch `text` names, if jiff reads it.
    pub(super) fn read(&mut self, text: &str) -> Option<i128> {
        let Some((date_time, fraction_ns, offset)) = split(text.as_bytes()) else {
            return Some(text.parse::<Timestamp>().ok()?.as_nanosecond());
        };
        let cached = self.second_text.len() == date_time.len() + offset.len()
            && self.second_text.starts_with(date_time)
            && self.second_text.ends_with(offset);
        if !cached {
            let mut second_text = Vec::with_capacity(date_time.len() + offset.len());
            second_text.extend_from_slice(date_time);
            second_text.extend_from_slice(offset);
            // Both parts are ASCII (checked by `split`), so this never fails.
            let whole = std::str::from_utf8(&second_text)
                .ok()
                .and_then(|s| s.parse::<Timestamp>().ok());
            let Some(whole) = whole else {
                // Not a valid second: jiff says so (or reads it some other way) on the text.
                return Some(text.parse::<Timestamp>().ok()?.as_nanosecond());
            };
            let Ok(second_ns) = i64::try_from(whole.as_nanosecond()) else {
                return Some(text.parse::<Timestamp>().ok()?.as_nanosecond());
            };
            self.second_text = second_text;
            self.second_ns = second_ns;
        }
        Some(i128::from(self.second_ns) + i128::from(fraction_ns))
    }
}

/// The date-time part, the fraction in ns and the offset (`Z`, `z` or `±HH:MM`), when `text`
/// has exactly the short way's shape.
fn split(text: &[u8]) -> Option<(&[u8], i64, &[u8])> {
    if text.len() < DATE_TIME_LEN + 1 || !text.is_ascii() {
        return None;
    }
    let (date_time, rest) = text.split_at(DATE_TIME_LEN);
    let digits_at = |range: &[usize]| range.iter().all(|&i| date_time[i].is_ascii_digit());
    let shaped = digits_at(&[0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
        && date_time[4] == b'-'
        && date_time[7] == b'-'
        && date_time[13] == b':'
        && date_time[16] == b':'
        // A leap second (`:60`) is jiff's to read in full.
        && date_time[17] < b'6';
    if !shaped {
        return None;
    }
    let (fraction_ns, offset) = match rest.strip_prefix(b".") {
        Some(after_dot) => {
            let digits = after_dot.iter().take_while(|b| b.is_ascii_digit()).count();
            if !(1..=9).contains(&digits) {
                return None;
            }
            let mut ns: i64 = 0;
            for &digit in &after_dot[..digits] {
                ns = ns * 10 + i64::from(digit - b'0');
            }
            (ns * 10i64.pow(9 - digits as u32), &after_dot[digits..])
        }
        None => (0, rest),
    };
    let offset_shaped = match offset {
        [b'Z' | b'z'] => true,
        [sign, h1, h2, b':', m1, m2] => {
            matches!(sign, b'+' | b'-') && [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit())
        }
        _ => false,
    };
    offset_shaped.then_some((date_time, fraction_ns, offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::{Offset, TimeZone};

    fn jiff(text: &str) -> Option<i128> {
        text.parse::<Timestamp>().ok().map(|t| t.as_nanosecond())
    }

    /// Reads every text with one reader (so hits and misses both happen) and with jiff.
    fn assert_same(texts: &[String]) {
        let mut reader = Rfc3339Reader::default();
        for text in texts {
            assert_eq!(reader.read(text), jiff(text), "{text:?}");
        }
    }

    #[test]
    fn the_edges_of_a_second_read_as_jiff_reads_them() {
        let texts: Vec<String> = [
            "2026-12-05T07:34:41.999999999Z",
            "2026-12-05T07:34:42Z",
            "2026-12-05T07:34:42.000000000Z",
            "2026-12-05T07:34:42.000000001Z",
            "2026-12-05T07:34:42.5Z",
            "2026-12-05T07:34:42.05Z",
            "2026-12-05T07:34:41.999999999Z",
            "2026-12-05T07:34:42.123456789z",
            "2026-12-05t07:34:42.1Z",
            "2026-12-05 07:34:42.1Z",
            "2026-12-31T23:59:59.999999999Z",
            "2027-01-01T00:00:00Z",
            "2028-02-29T12:00:00.25Z",
            "2027-02-29T12:00:00.25Z",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-12-05T24:00:00Z",
            "2016-12-31T23:59:60Z",
            "2016-12-31T23:59:60.5Z",
            "1969-12-31T23:59:59.999999999Z",
            "1970-01-01T00:00:00.000000001Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_same(&texts);
    }

    #[test]
    fn offsets_read_as_jiff_reads_them() {
        let texts: Vec<String> = [
            "2026-12-05T08:34:42.5+01:00",
            "2026-12-05T08:34:42.5+01:00",
            "2026-12-05T08:34:42.5+01:30",
            "2026-12-05T08:34:42.5-01:00",
            "2026-12-05T08:34:42.5-00:00",
            "2026-12-05T08:34:42.5+00:00",
            "2026-12-05T08:34:42.5+14:00",
            "2026-12-05T08:34:42.5-12:00",
            "2026-12-05T08:34:42.5+25:00",
            "2026-12-05T08:34:42.5+01:60",
            "2026-12-05T08:34:42.5+0100",
            "2026-12-05T08:34:42.5+01",
            "2026-12-05T08:34:42.5+01:00:00",
            "2026-01-01T00:30:00-01:00",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_same(&texts);
    }

    #[test]
    fn texts_off_the_short_way_read_as_jiff_reads_them() {
        let texts: Vec<String> = [
            "",
            "Z",
            "2026-12-05T07:34:42",
            "2026-12-05T07:34:42.Z",
            "2026-12-05T07:34:42.1234567890Z",
            "2026-12-05T07:34:42,5Z",
            "2026-12-05T07:34:42.5ZZ",
            "2026-12-05T07:34:42.5 Z",
            "2026-12-05T07:34Z",
            "+2026-12-05T07:34:42Z",
            "2026-12-05T07:34:42.5Z ",
            "20261205T073442Z",
            "2026-12-05T07:34:4x.5Z",
            "2026-12-05T07:34:42.5é",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_same(&texts);
    }

    #[test]
    fn a_run_of_times_across_midnight_and_offsets_reads_as_jiff_reads_it() {
        // Steps of a little under a second, so most seconds are hit twice and some once.
        let start: Timestamp = "2026-12-31T23:59:50Z".parse().unwrap();
        let zones = [
            TimeZone::UTC,
            TimeZone::fixed(Offset::constant(1)),
            TimeZone::fixed(Offset::constant(-5)),
        ];
        let mut texts = Vec::new();
        for step in 0..40i64 {
            let t = start
                .checked_add(jiff::SignedDuration::from_nanos(step * 499_999_999))
                .unwrap();
            for zone in &zones {
                let zoned = t.to_zoned(zone.clone());
                texts.push(zoned.strftime("%Y-%m-%dT%H:%M:%S%.f%:z").to_string());
                texts.push(zoned.strftime("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string());
            }
            texts.push(t.to_string());
        }
        assert_same(&texts);
    }
}
