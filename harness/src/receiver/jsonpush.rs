//! The JSON push body (`{"streams":[{"stream":{...},"values":[["<ns>","<line>",{...}]]}]}`):
//! its streams, or the 400 text a Loki 3.7 client would see for it.
//!
//! Loki reads a JSON push with a streaming decoder through a `LimitReader`, so a body over
//! `max_recv_msg_size` is cut and fails to decode: a 400 such as `loghttp.PushRequest.Streams:
//! []loghttp.LogProtoStream: readStringSlowPath: unexpected end of input, error found in #10 byte
//! of ...|<10 bytes>|..., bigger context ...|<50 bytes>|...`. Clients match only the status and
//! the leading `loghttp.PushRequest`; the rest is there for people reading logs.
//!
//! How: one pass over the bytes with a small validating scanner of our own (an explicit stack of
//! open containers, so no recursion), which names the place where it stopped. Each element of
//! `streams` is scanned whole, then read for its labels and entries, so that a type error in an
//! element is reported before anything after it, as in Loki.
//!
//! Guarantees:
//! - Valid pushes give Loki's streams and entries, with Loki's leniency: data after the top-level
//!   object is ignored (the top level may also be `null`), unknown fields are skipped,
//!   `streams` is matched ignoring ASCII case and the last one counts, `null` streams, entries and
//!   `values` are skipped, label values need not be strings (their JSON text is used), entries may
//!   have fewer than two elements (missing line: empty; missing timestamp: Go's zero time) or
//!   more than three (ignored). Numbers are taken as any run of number characters, unvalidated.
//! - A body cut inside a string, number, literal or escape, between tokens, in an array, an
//!   object or the top-level object, gets the operation and message Loki prints there; a body
//!   whose decompressor failed at the cut gets that error (`unexpected EOF`) under the same
//!   prefix. Malformed bodies get a text of the same family (operation words as Loki's) and the
//!   element type errors Loki's stream parser gives (`unmarshalerDecoder: Value is string, but
//!   can't find closing '"' symbol`).
//! - Excerpts are cut from a 512-byte read window (Loki's decoder buffer) counted from the start
//!   of the body; Loki's windows follow its network reads, so near a read boundary its excerpts
//!   can be shorter. The same window decides where a raw control character in a string is
//!   refused: only before the string's first escape and in the read where the string began.
//! - Never panics, never recurses, linear in the body; nesting deeper than 10000 (Loki's limit)
//!   is refused.

use std::collections::BTreeMap;
use std::ops::Range;

use bytes::Bytes;

use super::decode::{PushEntry, PushStream};
use super::gofmt::GO_ZERO_TIME_NS;
use super::labels::format_map;

/// Loki's decoder reads its body this many bytes at a time.
const READ_SIZE: usize = 512;
/// Loki's decoder refuses deeper nesting (the top-level object counts, `streams` does not).
const MAX_DEPTH: usize = 10_000;

/// Loki's stream parser's texts for an element of the wrong shape.
const NOT_JSON: &str = "Malformed JSON error";
const NOT_STRING: &str = "Value is string, but can't find closing '\"' symbol";
const NOT_ARRAY: &str = "Value is array, but can't find closing ']' symbol";
const NOT_OBJECT: &str = "Value looks like object, but can't find closing '}' symbol";
const NOT_INTEGER: &str =
    "Value looks like Number/Boolean/None, but can't find its end: ',' or '}' symbol";
const INTEGER_OVERFLOW: &str = "Value is number, but overflowed while parsing";

const END_IN_STRING: &str = "readStringSlowPath: unexpected end of input";

/// How the data handed to [`decode`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The body ended, or a `LimitReader` cut it.
    Eof,
    /// The decompressor failed there (`unexpected EOF` for a truncated gzip or deflate stream).
    Error(String),
}

/// A decoded push.
#[derive(Debug)]
pub struct Decoded {
    pub streams: Vec<PushStream>,
    /// What Loki's decoder would have read from its body (whole 512-byte reads up to the end of
    /// the document), for Loki's final size check.
    pub bytes_read: usize,
}

/// Decodes `data` (the body, decompressed), which ended as `ending` says.
pub fn decode(data: &[u8], ending: Ending) -> Result<Decoded, String> {
    if data.is_empty() {
        // Loki's decoder says this for an empty body whatever the reader reported.
        return Err("EOF".into());
    }
    let mut scan = Scanner::new(data);
    let mut streams = Vec::new();
    match request(&mut scan, &mut streams) {
        Ok(()) => Ok(Decoded {
            streams,
            bytes_read: read_end(scan.pos, data.len()),
        }),
        Err((scope, stop)) => Err(format!("{}{}", scope.prefix(), stop.text(data, &ending))),
    }
}

/// The end of the read window that holds the byte before `pos`.
fn read_end(pos: usize, len: usize) -> usize {
    (pos.saturating_sub(1) / READ_SIZE + 1)
        .saturating_mul(READ_SIZE)
        .min(len)
}

/// Which of Loki's decoders was running, which decides the prefix of its error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// Before the top-level object began: no prefix.
    Start,
    /// The top-level object's own syntax, or a field other than `streams`.
    Request,
    /// The `streams` value.
    Streams,
}

impl Scope {
    fn prefix(self) -> &'static str {
        match self {
            Scope::Start => "",
            Scope::Request => "loghttp.PushRequest.",
            Scope::Streams => "loghttp.PushRequest.Streams: []loghttp.LogProtoStream: ",
        }
    }
}

/// Where and why scanning stopped.
#[derive(Debug)]
struct Stop {
    /// The decoder's position: just past the byte it objected to, or where it ran out of data.
    head: usize,
    /// The start of the read window the decoder held then.
    window: usize,
    /// The data ran out (rather than holding something wrong).
    cut: bool,
    /// `<operation>: <message>`.
    reason: String,
}

impl Stop {
    /// The text Loki gives: the decompressor's own error when that is what ended the data, else
    /// the reason and its excerpts.
    fn text(&self, data: &[u8], ending: &Ending) -> String {
        if let (true, Ending::Error(error)) = (self.cut, ending) {
            return error.clone();
        }
        let window = data
            .get(self.window..data.len().min(self.window + READ_SIZE))
            .unwrap_or_default();
        let at = self.head.saturating_sub(self.window).min(window.len());
        let around = |radius: usize| {
            let part = window
                .get(at.saturating_sub(radius)..window.len().min(at + radius))
                .unwrap_or_default();
            String::from_utf8_lossy(part)
        };
        format!(
            "{}, error found in #{} byte of ...|{}|..., bigger context ...|{}|...",
            self.reason,
            at.min(10),
            around(10),
            around(50)
        )
    }
}

/// A byte as Loki's messages show it; the end of the data shows as NUL.
fn shown(byte: Option<u8>) -> String {
    String::from_utf8_lossy(&[byte.unwrap_or(0)]).into_owned()
}

/// What a string is to the scanner, for the words of its errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// A field name of the top-level object.
    FieldName,
    /// A member name inside a value.
    Key,
    Value,
}

/// A JSON value's type, from its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    String,
    Number,
    Object,
    Array,
    Literal,
    Null,
}

fn kind_of(first: u8) -> Kind {
    match first {
        b'"' => Kind::String,
        b'{' => Kind::Object,
        b'[' => Kind::Array,
        b'n' => Kind::Null,
        b't' | b'f' => Kind::Literal,
        _ => Kind::Number,
    }
}

/// A cursor over JSON bytes that checks their syntax as it skips them.
struct Scanner<'a> {
    data: &'a [u8],
    pos: usize,
    depth: usize,
    /// `data` is part of a body already scanned: the control-character rule, whose read windows
    /// count from the body's start, was applied then.
    rescan: bool,
}

impl<'a> Scanner<'a> {
    fn new(data: &'a [u8]) -> Self {
        Scanner {
            data,
            pos: 0,
            depth: 0,
            rescan: false,
        }
    }

    fn rescan(data: &'a [u8]) -> Self {
        Scanner {
            rescan: true,
            ..Scanner::new(data)
        }
    }

    /// Stops at `found`, the byte objected to, or at the end of the data (`None`).
    fn stop(&self, found: Option<u8>, reason: impl Into<String>) -> Stop {
        let (head, window) = match found {
            Some(_) => (self.pos, self.pos.saturating_sub(1) / READ_SIZE * READ_SIZE),
            // Out of data, Loki's decoder holds its last read; its position is `pos` (set back to
            // where a run it had not finished scanning began), or that read's start.
            None => {
                let last = self.data.len().saturating_sub(1) / READ_SIZE * READ_SIZE;
                (self.pos.max(last), last)
            }
        };
        Stop {
            head,
            window,
            cut: found.is_none(),
            reason: reason.into(),
        }
    }

    /// Stops at `found` where `expected` was due.
    fn unexpected(&self, found: Option<u8>, expected: &str) -> Stop {
        self.stop(found, format!("{expected}, but found {}", shown(found)))
    }

    /// Stops for a reason other than a byte.
    fn refuse(&self, reason: impl Into<String>) -> Stop {
        self.stop(Some(0), reason)
    }

    fn byte(&mut self) -> Option<u8> {
        let byte = self.data.get(self.pos).copied();
        if byte.is_some() {
            self.pos += 1;
        }
        byte
    }

    /// The next byte that is not white space, consumed; at the end, the white space is not.
    fn token(&mut self) -> Option<u8> {
        let start = self.pos;
        loop {
            match self.byte() {
                Some(b' ' | b'\t' | b'\n' | b'\r') => {}
                None => {
                    self.pos = start;
                    return None;
                }
                byte => return byte,
            }
        }
    }

    /// The next byte that is not white space, left in place.
    fn peek(&mut self) -> Option<u8> {
        let token = self.token();
        if token.is_some() {
            self.pos -= 1;
        }
        token
    }

    /// Consumes the next token if it is `byte`.
    fn eat(&mut self, byte: u8) -> bool {
        let matched = self.peek() == Some(byte);
        if matched {
            self.pos += 1;
        }
        matched
    }

    fn expect(&mut self, byte: u8, reason: &str) -> Result<(), Stop> {
        match self.token() {
            Some(found) if found == byte => Ok(()),
            found => Err(self.unexpected(found, reason)),
        }
    }

    fn open(&mut self) -> Result<(), Stop> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.refuse("incrementDepth: exceeded max depth"));
        }
        Ok(())
    }

    fn close(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Skips one value, checking it.
    fn value(&mut self) -> Result<(), Stop> {
        // The closing byte of each container still open.
        let mut open: Vec<u8> = Vec::new();
        loop {
            // A value is due.
            match self.token() {
                Some(b'"') => {
                    self.string(Role::Value)?;
                }
                Some(b'n') => self.literal(b"ull")?,
                Some(b't') => self.literal(b"rue")?,
                Some(b'f') => self.literal(b"alse")?,
                Some(b'-' | b'0'..=b'9') => self.number(),
                Some(b'[') => {
                    self.open()?;
                    if self.eat(b']') {
                        self.close();
                    } else {
                        open.push(b']');
                        continue;
                    }
                }
                Some(b'{') => {
                    self.open()?;
                    match self.token() {
                        Some(b'}') => self.close(),
                        Some(b'"') => {
                            self.member_name()?;
                            open.push(b'}');
                            continue;
                        }
                        found => {
                            return Err(self.unexpected(found, "ReadObjectCB: expect \" after {"));
                        }
                    }
                }
                found => {
                    let reason = format!("Skip: do not know how to skip: {}", found.unwrap_or(0));
                    return Err(self.stop(found, reason));
                }
            }
            // A value ended: a separator comes, or the containers it completes close.
            loop {
                let Some(&closer) = open.last() else {
                    return Ok(());
                };
                let found = self.token();
                if found == Some(closer) {
                    open.pop();
                    self.close();
                } else if found == Some(b',') {
                    if closer == b'}' {
                        self.next_member_name()?;
                    }
                    break;
                } else if closer == b']' {
                    return Err(self.unexpected(found, "ReadArrayCB: expect ] in the end"));
                } else {
                    return Err(self.stop(found, "ReadObjectCB: object not ended with }"));
                }
            }
        }
    }

    /// A member name inside a value (its opening quote read) and the colon after it.
    fn member_name(&mut self) -> Result<(), Stop> {
        self.string(Role::Key)?;
        self.expect(b':', "ReadObject: expect : after object field")
    }

    /// A member name after a comma, and the colon after it (Loki's decoder also takes `null`
    /// there).
    fn next_member_name(&mut self) -> Result<(), Stop> {
        match self.token() {
            Some(b'"') => self.member_name(),
            Some(b'n') => {
                self.literal(b"ull")?;
                self.expect(b':', "ReadObject: expect : after object field")
            }
            found => Err(self.unexpected(found, "ReadString: expects \" or n")),
        }
    }

    /// The rest of a string whose opening quote was just read: the range of its raw contents.
    fn string(&mut self, role: Role) -> Result<Range<usize>, Stop> {
        let start = self.pos;
        let window = (start - 1) / READ_SIZE;
        let mut escaped = false;
        // Loki's decoder takes the escape after a `\u` surrogate as its partner, and the end of
        // the data right after that backslash as the end of the input.
        let mut after_surrogate = false;
        loop {
            let check_controls = !escaped
                && !self.rescan
                && role != Role::FieldName
                && self.pos / READ_SIZE == window;
            if !check_controls {
                // Nothing but a quote or an escape matters here.
                let rest = self.data.get(self.pos..).unwrap_or_default();
                let plain = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
                if plain > 0 {
                    self.pos += plain;
                    after_surrogate = false;
                }
            }
            match self.byte() {
                Some(b'"') => return Ok(start..self.pos - 1),
                Some(b'\\') if after_surrogate && self.pos == self.data.len() => {
                    return Err(self.stop(None, END_IN_STRING));
                }
                Some(b'\\') => {
                    escaped = true;
                    let surrogate = self.escape()?;
                    after_surrogate = surrogate && !after_surrogate;
                }
                Some(control @ 0..0x20) if check_controls => {
                    let operation = if role == Role::Value {
                        "trySkipString"
                    } else {
                        "ReadString"
                    };
                    // Loki points at the string's start, not at the character.
                    self.pos = start;
                    let reason = format!("{operation}: invalid control character found: {control}");
                    return Err(self.stop(Some(control), reason));
                }
                Some(_) => after_surrogate = false,
                None if role == Role::FieldName && !escaped => {
                    // Loki's decoder had not moved past the name's start.
                    self.pos = start;
                    return Err(self.stop(None, "readFieldHash: incomplete field name"));
                }
                None => return Err(self.stop(None, END_IN_STRING)),
            }
        }
    }

    /// The rest of an escape whose backslash was just read: whether it is a `\u` surrogate.
    fn escape(&mut self) -> Result<bool, Stop> {
        match self.byte() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(false),
            Some(b'u') => {
                let mut code = 0;
                for _ in 0..4 {
                    match self.byte() {
                        Some(digit) if digit.is_ascii_hexdigit() => {
                            code = code * 16 + char::from(digit).to_digit(16).unwrap_or(0);
                        }
                        None => return Err(self.stop(None, END_IN_STRING)),
                        found => return Err(self.unexpected(found, "readU4: expects 0~9 or a~f")),
                    }
                }
                Ok((0xd800..0xe000).contains(&code))
            }
            found => Err(self.stop(found, "readEscapedChar: invalid escape char after \\")),
        }
    }

    /// The rest of `null`, `true` or `false` after its first letter.
    fn literal(&mut self, rest: &'static [u8]) -> Result<(), Stop> {
        for &expected in rest {
            let found = self.byte();
            if found != Some(expected) {
                let operation = if rest.len() == 3 {
                    "skipThreeBytes"
                } else {
                    "skipFourBytes"
                };
                let reason = format!("{operation}: expect {}", String::from_utf8_lossy(rest));
                return Err(self.stop(found, reason));
            }
        }
        Ok(())
    }

    /// The rest of a number after its first character (Loki does not check a skipped number).
    fn number(&mut self) {
        while let Some(byte) = self.data.get(self.pos)
            && matches!(byte, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
        {
            self.pos += 1;
        }
    }
}

/// The top-level object.
fn request(scan: &mut Scanner, streams: &mut Vec<PushStream>) -> Result<(), (Scope, Stop)> {
    let in_request = |stop| (Scope::Request, stop);
    match scan.token() {
        Some(b'{') => {}
        Some(b'n') => return scan.literal(b"ull").map_err(|stop| (Scope::Start, stop)),
        found => {
            let stop = scan.unexpected(found, "readObjectStart: expect { or n");
            return Err((Scope::Start, stop));
        }
    }
    if scan.eat(b'}') {
        return Ok(());
    }
    scan.open().map_err(in_request)?;
    loop {
        scan.expect(b'"', "readFieldHash: expect \"")
            .map_err(in_request)?;
        let name = scan.string(Role::FieldName).map_err(in_request)?;
        let is_streams =
            unescape(scan.data.get(name).unwrap_or_default()).eq_ignore_ascii_case(b"streams");
        scan.expect(b':', "readFieldHash: expect :")
            .map_err(in_request)?;
        if is_streams {
            read_streams(scan, streams).map_err(|stop| (Scope::Streams, stop))?;
        } else {
            scan.value().map_err(in_request)?;
        }
        match scan.token() {
            Some(b',') => {}
            Some(b'}') => return Ok(()),
            found => {
                let reason = format!(
                    "isObjectEnd: object ended prematurely, unexpected char {}",
                    shown(found)
                );
                return Err(in_request(scan.stop(found, reason)));
            }
        }
    }
}

/// The `streams` value: `null` or an array of stream objects; it replaces any earlier one.
fn read_streams(scan: &mut Scanner, streams: &mut Vec<PushStream>) -> Result<(), Stop> {
    streams.clear();
    match scan.token() {
        Some(b'[') => {}
        Some(b'n') => return scan.literal(b"ull"),
        found => return Err(scan.unexpected(found, "decode slice: expect [ or n")),
    }
    if scan.eat(b']') {
        return Ok(());
    }
    loop {
        scan.peek();
        let start = scan.pos;
        scan.value()?;
        let element = scan.data.get(start..scan.pos).unwrap_or_default();
        let stream = read_stream(element)
            .map_err(|error| scan.refuse(format!("unmarshalerDecoder: {error}")))?;
        streams.push(stream);
        match scan.token() {
            Some(b',') => {}
            Some(b']') => return Ok(()),
            found => return Err(scan.unexpected(found, "decode slice: expect ]")),
        }
    }
}

/// A member or element of a checked value: its kind and raw text (a string's without quotes).
type Part<'a> = (Kind, &'a [u8]);

/// Calls `each` with the name (raw; empty for an array) and the value of every member or element
/// of the checked object or array `container`.
fn for_each_part<'a>(
    container: &'a [u8],
    mut each: impl FnMut(&'a [u8], Part<'a>) -> Result<(), &'static str>,
) -> Result<(), &'static str> {
    let mut scan = Scanner::rescan(container);
    let is_object = scan.token() == Some(b'{');
    if scan.eat(b'}') || scan.eat(b']') {
        return Ok(());
    }
    loop {
        let mut name: &[u8] = &[];
        if is_object {
            let (kind, text) = part(&mut scan)?;
            if kind != Kind::String {
                return Err(NOT_OBJECT);
            }
            name = text;
            scan.token();
        }
        each(name, part(&mut scan)?)?;
        if scan.token() != Some(b',') {
            return Ok(());
        }
    }
}

fn part<'a>(scan: &mut Scanner<'a>) -> Result<Part<'a>, &'static str> {
    let kind = kind_of(scan.peek().ok_or(NOT_JSON)?);
    let start = scan.pos;
    scan.value().map_err(|_| NOT_JSON)?;
    let raw = scan.data.get(start..scan.pos).unwrap_or_default();
    let text = match kind {
        Kind::String => raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default(),
        _ => raw,
    };
    Ok((kind, text))
}

/// One element of `streams`: `{"stream": {labels}, "values": [entries]}`, other members ignored.
fn read_stream(element: &[u8]) -> Result<PushStream, &'static str> {
    if element.first().copied().map(kind_of) != Some(Kind::Object) {
        return Err(NOT_OBJECT);
    }
    let mut stream = PushStream {
        labels: String::new(),
        entries: Vec::new(),
    };
    for_each_part(element, |name, (kind, value)| {
        match (name, kind) {
            (b"stream", Kind::Object) => stream.labels = read_labels(value)?,
            (b"stream", _) => return Err(NOT_OBJECT),
            (b"values", Kind::Null) => {}
            (b"values", Kind::Array) => stream.entries = read_entries(value)?,
            (b"values", _) => return Err(NOT_ARRAY),
            _ => {}
        }
        Ok(())
    })?;
    Ok(stream)
}

/// The `stream` object as label text; a later duplicate name wins.
fn read_labels(object: &[u8]) -> Result<String, &'static str> {
    let mut labels = BTreeMap::new();
    for_each_part(object, |name, (kind, value)| {
        let value = match kind {
            Kind::String => unescape(value),
            _ => value.to_vec(),
        };
        labels.insert(lossy(&unescape(name)), lossy(&value));
        Ok(())
    })?;
    Ok(format_map(
        labels
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
    ))
}

fn read_entries(array: &[u8]) -> Result<Vec<PushEntry>, &'static str> {
    let mut entries = Vec::new();
    for_each_part(array, |_, (kind, value)| {
        match kind {
            Kind::Null => {}
            Kind::Array => entries.push(read_entry(value)?),
            _ => return Err(NOT_ARRAY),
        }
        Ok(())
    })?;
    Ok(entries)
}

/// `["<unix ns>", "<line>", {"<name>": "<value>", ...}]`; elements past the third are ignored.
fn read_entry(array: &[u8]) -> Result<PushEntry, &'static str> {
    let mut entry = PushEntry {
        ts_ns: GO_ZERO_TIME_NS,
        line: Bytes::new(),
        metadata: Vec::new(),
    };
    let mut index = 0;
    for_each_part(array, |_, (kind, value)| {
        match (index, kind) {
            (0, Kind::String) => entry.ts_ns = parse_timestamp(value)?,
            (1, Kind::String) => entry.line = Bytes::from(unescape(value)),
            (0 | 1, _) => return Err(NOT_STRING),
            (2, Kind::Object) => {
                for_each_part(value, |name, (kind, value)| {
                    if kind != Kind::String {
                        return Err(NOT_STRING);
                    }
                    // The name is taken as written, escapes and all, as Loki does.
                    entry.metadata.push((lossy(name), lossy(&unescape(value))));
                    Ok(())
                })?;
            }
            (2, _) => return Err(NOT_OBJECT),
            _ => {}
        }
        index += 1;
        Ok(())
    })?;
    Ok(entry)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A base-10 integer as Loki's stream parser reads one: optional `-`, no leading zeros, no
/// escapes.
fn parse_timestamp(text: &[u8]) -> Result<i64, &'static str> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    let well_formed = !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits.len() == 1 || digits[0] != b'0');
    if !well_formed {
        return Err(NOT_INTEGER);
    }
    let magnitude = digits
        .iter()
        .try_fold(0u64, |n, &digit| {
            n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })
        .ok_or(INTEGER_OVERFLOW)?;
    let value = if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    };
    value.ok_or(INTEGER_OVERFLOW)
}

/// The contents of a checked string with its escapes resolved. A `\u` pair of surrogates makes
/// one character; any other surrogate becomes U+FFFD.
fn unescape(raw: &[u8]) -> Vec<u8> {
    if !raw.contains(&b'\\') {
        return raw.to_vec();
    }
    let hex = |at: usize| {
        let digits = std::str::from_utf8(raw.get(at..at + 4)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    };
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    while let Some(&byte) = raw.get(at) {
        at += 1;
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        let escaped = raw.get(at).copied().unwrap_or(b'\\');
        at += 1;
        let plain = match escaped {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let mut code = hex(at).unwrap_or(0xfffd);
                at += 4;
                if (0xd800..0xdc00).contains(&code)
                    && raw.get(at..at + 2) == Some(b"\\u")
                    && let Some(low) = hex(at + 2)
                    && (0xdc00..0xe000).contains(&low)
                {
                    code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
                    at += 6;
                }
                let character = char::from_u32(code).unwrap_or('\u{fffd}');
                out.extend_from_slice(character.encode_utf8(&mut [0; 4]).as_bytes());
                continue;
            }
            other => other,
        };
        out.push(plain);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "loghttp.PushRequest.Streams: []loghttp.LogProtoStream: ";

    fn ok(body: &str) -> Vec<PushStream> {
        match decode(body.as_bytes(), Ending::Eof) {
            Ok(decoded) => decoded.streams,
            Err(e) => panic!("{body}: {e}"),
        }
    }

    fn err(body: &[u8]) -> String {
        match decode(body, Ending::Eof) {
            Ok(decoded) => panic!("decoded {:?}", decoded.streams),
            Err(e) => e,
        }
    }

    /// The reason before the excerpts, checking the excerpts' shape on the way.
    fn reason(text: &str) -> &str {
        let Some((reason, rest)) = text.split_once(", error found in #") else {
            panic!("no excerpt: {text:?}");
        };
        assert!(
            rest.contains(" byte of ...|")
                && rest.contains("|..., bigger context ...|")
                && rest.ends_with("|..."),
            "{text:?}"
        );
        reason
    }

    /// The error for `body` cut just after the first occurrence of `marker`.
    fn cut_after(body: &str, marker: &str) -> String {
        let end = body.find(marker).map(|i| i + marker.len());
        let Some(end) = end else {
            panic!("{marker} not in {body}");
        };
        err(&body.as_bytes()[..end])
    }

    #[test]
    fn decodes_valid_pushes_with_lokis_leniency() {
        let streams = ok(concat!(
            r#" {"streams":[{"stream":{"job":"a","n":1,"b":true},"values":"#,
            r#"[["7","one"],["8","t\u00e9\n\ud83d\ude00x",{"trace_id":"x\/y"}],null]}],"#,
            r#" "other": [1.5e3, -2, {"a": [true, false, null]}, "s\"q"]} trailing {"#
        ));
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[0].labels, r#"{b="true", job="a", n="1"}"#);
        assert_eq!(streams[0].entries.len(), 2);
        assert_eq!(streams[0].entries[0].ts_ns, 7);
        assert_eq!(streams[0].entries[0].line, Bytes::from("one"));
        assert_eq!(streams[0].entries[1].line, Bytes::from("té\n😀x"));
        assert_eq!(
            streams[0].entries[1].metadata,
            vec![("trace_id".to_string(), "x/y".to_string())]
        );
        // `streams` in any case, the last one counting; short and long entries; a lone surrogate.
        let streams = ok(concat!(
            r#"{"streams":[{"values":[["1","dropped"]]}],"#,
            r#""STREAMS":[{"values":[["5"],[],["6","a\ud800b",{},"extra"]],"x":{}}]}"#
        ));
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[0].labels, "");
        assert_eq!(streams[0].entries[0].ts_ns, 5);
        assert_eq!(streams[0].entries[0].line, Bytes::new());
        assert_eq!(streams[0].entries[1].ts_ns, GO_ZERO_TIME_NS);
        assert_eq!(streams[0].entries[2].line, Bytes::from("a\u{fffd}b"));
        assert!(ok(r#"{"streams":null}"#).is_empty());
        assert!(ok(r#"{"streams":[{"values":null}]}"#)[0].entries.is_empty());
        assert!(ok("{}").is_empty());
        assert!(ok(" null ").is_empty());
        // A label value that is not a string is its JSON text; a later duplicate name wins.
        assert_eq!(
            ok(r#"{"streams":[{"stream":{"a":{"b": [1]},"c":"1","c":"2"}}]}"#)[0].labels,
            r#"{a="{\"b\": [1]}", c="2"}"#
        );
    }

    #[test]
    fn reports_what_the_decoder_read() {
        let bytes_read = |body: &str| match decode(body.as_bytes(), Ending::Eof) {
            Ok(decoded) => decoded.bytes_read,
            Err(e) => panic!("{e}"),
        };
        let body = format!(
            r#"{{"streams":[{{"values":[["1","{}"]]}}]}}"#,
            "x".repeat(600)
        );
        assert_eq!(bytes_read(&body), body.len());
        assert_eq!(bytes_read(&format!("{body}{}", " ".repeat(1000))), 1024);
        assert_eq!(bytes_read(&format!("{}{{}}", " ".repeat(510))), 512);
        assert_eq!(
            bytes_read(&format!("{}{{}}{}", " ".repeat(511), " ".repeat(1000))),
            1024
        );
    }

    #[test]
    fn a_cut_line_gets_lokis_full_text() {
        let body = format!(
            r#"{{"streams":[{{"stream":{{"job":"a"}},"values":[["1","{}"]]}}]}}"#,
            "x".repeat(2000)
        );
        assert_eq!(
            err(&body.as_bytes()[..1001]),
            format!(
                "{PREFIX}readStringSlowPath: unexpected end of input, error found in #10 byte of \
                 ...|{}|..., bigger context ...|{}|...",
                "x".repeat(10),
                "x".repeat(50)
            )
        );
        // The excerpts come from the last 512-byte read: here it holds 3 bytes.
        assert_eq!(
            err(&body.as_bytes()[..1027]),
            format!(
                "{PREFIX}readStringSlowPath: unexpected end of input, error found in #3 byte of \
                 ...|xxx|..., bigger context ...|xxx|..."
            )
        );
        // A truncated gzip stream: the decompressor's error, under the same prefix.
        let text = decode(
            &body.as_bytes()[..1001],
            Ending::Error("unexpected EOF".into()),
        );
        assert_eq!(text.err(), Some(format!("{PREFIX}unexpected EOF")));
        let text = decode(b"{\"streams\":[]", Ending::Error("unexpected EOF".into()));
        assert_eq!(
            text.err().as_deref(),
            Some("loghttp.PushRequest.unexpected EOF")
        );
        // A complete document does not need the rest, and an empty body is `EOF` whatever the end.
        assert!(decode(b"{} ", Ending::Error("unexpected EOF".into())).is_ok());
        assert_eq!(
            decode(b"", Ending::Error("unexpected EOF".into()))
                .err()
                .as_deref(),
            Some("EOF")
        );
    }

    #[test]
    fn a_cut_in_white_space_or_a_field_name_points_where_it_began() {
        let excerpts = |text: &str| {
            text.split_once(", error found in ")
                .map(|(_, e)| e.to_string())
        };
        let text = err(br#"{"streams":[{"values":[["1","a"],   "#);
        assert_eq!(
            excerpts(&text).as_deref(),
            Some(
                r#"#10 byte of ...|["1","a"],   |..., bigger context ...|{"streams":[{"values":[["1","a"],   |..."#
            )
        );
        let text = err(br#"{"strea"#);
        assert_eq!(
            excerpts(&text).as_deref(),
            Some(r#"#2 byte of ...|{"strea|..., bigger context ...|{"strea|..."#)
        );
        // White space running into the last read: the position is that read's start.
        let body = format!(r#"{{"streams":[{}"#, " ".repeat(600));
        assert_eq!(
            excerpts(&err(body.as_bytes())),
            Some(format!(
                "#0 byte of ...|{}|..., bigger context ...|{}|...",
                " ".repeat(10),
                " ".repeat(50)
            ))
        );
        // A cut after the backslash that follows a `\u` surrogate is the end of the input.
        let text = err(br#"{"streams":[{"values":[["1","\ud83d\"#);
        assert_eq!(reason(&text), format!("{PREFIX}{END_IN_STRING}"));
        let text = err(br#"{"streams":[{"values":[["1","\ud83dx\"#);
        assert_eq!(
            reason(&text),
            format!("{PREFIX}readEscapedChar: invalid escape char after \\")
        );
        let text = err(br#"{"streams":[{"values":[["1","\ud83d\ude00\"#);
        assert_eq!(
            reason(&text),
            format!("{PREFIX}readEscapedChar: invalid escape char after \\")
        );
    }

    #[test]
    fn cut_points_get_lokis_operation_and_message() {
        let body = concat!(
            r#"{"streams": [{"stream": {"job": "a", "n": 12, "f": false}, "values": "#,
            r#"[["1", "a\n"], ["2", "b", {"k": "v"}]]}], "tail": [true, null]}"#
        );
        let cases = [
            // Top-level object.
            (
                "{",
                "loghttp.PushRequest.readFieldHash: expect \", but found \0",
            ),
            (
                "{\"stre",
                "loghttp.PushRequest.readFieldHash: incomplete field name",
            ),
            (
                "{\"streams\"",
                "loghttp.PushRequest.readFieldHash: expect :, but found \0",
            ),
            (
                "]}]",
                "loghttp.PushRequest.isObjectEnd: object ended prematurely, unexpected char \0",
            ),
            (
                "]}], ",
                "loghttp.PushRequest.readFieldHash: expect \", but found \0",
            ),
            (
                "\"tail\":",
                "loghttp.PushRequest.Skip: do not know how to skip: 0",
            ),
            (
                "\"tail\": [",
                "loghttp.PushRequest.Skip: do not know how to skip: 0",
            ),
            (
                "\"tail\": [tr",
                "loghttp.PushRequest.skipThreeBytes: expect rue",
            ),
            ("true, nu", "loghttp.PushRequest.skipThreeBytes: expect ull"),
            // The streams array.
            (
                "\"streams\":",
                &format!("{PREFIX}decode slice: expect [ or n, but found \0"),
            ),
            (
                "\"streams\": [",
                &format!("{PREFIX}Skip: do not know how to skip: 0"),
            ),
            (
                "]}",
                &format!("{PREFIX}decode slice: expect ], but found \0"),
            ),
            // Inside a stream: objects.
            (
                "[{",
                &format!("{PREFIX}ReadObjectCB: expect \" after {{, but found \0"),
            ),
            ("[{\"str", &format!("{PREFIX}{END_IN_STRING}")),
            (
                "[{\"stream\"",
                &format!("{PREFIX}ReadObject: expect : after object field, but found \0"),
            ),
            (
                "\"job\": ",
                &format!("{PREFIX}Skip: do not know how to skip: 0"),
            ),
            (
                "\"job\": \"a\"",
                &format!("{PREFIX}ReadObjectCB: object not ended with }}"),
            ),
            (
                "\"job\": \"a\", ",
                &format!("{PREFIX}ReadString: expects \" or n, but found \0"),
            ),
            (
                "\"n\": 1",
                &format!("{PREFIX}ReadObjectCB: object not ended with }}"),
            ),
            // Arrays, strings, escapes, literals.
            (
                "\"values\": [",
                &format!("{PREFIX}Skip: do not know how to skip: 0"),
            ),
            (
                "[\"1\"",
                &format!("{PREFIX}ReadArrayCB: expect ] in the end, but found \0"),
            ),
            (
                "[\"1\",",
                &format!("{PREFIX}Skip: do not know how to skip: 0"),
            ),
            (
                "\"a\\n\"]",
                &format!("{PREFIX}ReadArrayCB: expect ] in the end, but found \0"),
            ),
            ("\"a", &format!("{PREFIX}{END_IN_STRING}")),
            (
                "\"a\\",
                &format!("{PREFIX}readEscapedChar: invalid escape char after \\"),
            ),
            ("\"f\": fa", &format!("{PREFIX}skipFourBytes: expect alse")),
        ];
        for (marker, expected) in cases {
            let text = cut_after(body, marker);
            assert_eq!(reason(&text), expected, "cut after {marker:?}");
        }
        let text = err(br#"{"streams":[{"values":[["1","\u00"#);
        assert_eq!(reason(&text), format!("{PREFIX}{END_IN_STRING}"));
        assert_eq!(
            reason(&err(b"  ")),
            "readObjectStart: expect { or n, but found \0"
        );
        assert_eq!(reason(&err(b"nu")), "skipThreeBytes: expect ull");
    }

    #[test]
    fn every_cut_of_a_push_is_a_lokis_400_text() {
        let body = format!(
            concat!(
                r#"{{"streams":[{{"stream":{{"job":"a","env":"p"}},"values":[["{}","{}"],"#,
                r#"["2","\"q\"\t\u00e9",{{"trace_id":"t"}}]]}},{{"stream":{{"job":"b"}},"#,
                r#""values":[["3","c"]]}}],"x":[-1.5e3,true,false,null,{{}}]}}"#
            ),
            1_700_000_000_000_000_000u64,
            "y".repeat(700)
        );
        for end in 1..body.len() {
            let text = err(&body.as_bytes()[..end]);
            assert!(
                reason(&text).starts_with("loghttp.PushRequest."),
                "{end}: {text}"
            );
            let text = decode(
                &body.as_bytes()[..end],
                Ending::Error("unexpected EOF".into()),
            );
            let text = text.err().unwrap_or_default();
            assert!(
                text.starts_with("loghttp.PushRequest.") && text.ends_with("unexpected EOF"),
                "{end}: {text}"
            );
        }
        assert_eq!(ok(&body).len(), 2);
    }

    #[test]
    fn malformed_bodies_get_decoder_texts() {
        let message = |body: &str| err(body.as_bytes());
        assert_eq!(
            message("{nope"),
            "loghttp.PushRequest.readFieldHash: expect \", but found n, error found in #2 byte \
             of ...|{nope|..., bigger context ...|{nope|..."
        );
        assert!(message("[]").starts_with("readObjectStart: expect { or n, but found ["));
        let cases = [
            (
                r#"{"streams":{}}"#,
                format!("{PREFIX}decode slice: expect [ or n, but found {{"),
            ),
            (
                r#"{"streams":[{}}"#,
                format!("{PREFIX}decode slice: expect ], but found }}"),
            ),
            (
                r#"{"streams":[x]}"#,
                format!("{PREFIX}Skip: do not know how to skip: 120"),
            ),
            (
                r#"{"streams":[[1 2]]}"#,
                format!("{PREFIX}ReadArrayCB: expect ] in the end, but found 2"),
            ),
            (
                r#"{"streams":[{"a" 1}]}"#,
                format!("{PREFIX}ReadObject: expect : after object field, but found 1"),
            ),
            (
                r#"{"streams":[{"a":1,2}]}"#,
                format!("{PREFIX}ReadString: expects \" or n, but found 2"),
            ),
            (
                r#"{"streams":[["\x"]]}"#,
                format!("{PREFIX}readEscapedChar: invalid escape char after \\"),
            ),
            (
                r#"{"streams":[["\u12g4"]]}"#,
                format!("{PREFIX}readU4: expects 0~9 or a~f, but found g"),
            ),
            (
                r#"{"streams":[nul]}"#,
                format!("{PREFIX}skipThreeBytes: expect ull"),
            ),
            (
                r#"{"a":1 "b":2}"#,
                "loghttp.PushRequest.isObjectEnd: object ended prematurely, unexpected char \""
                    .into(),
            ),
            (
                r#"{"a":fals}"#,
                "loghttp.PushRequest.skipFourBytes: expect alse".into(),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(reason(&message(body)), expected, "{body}");
        }
        // Where Loki's decoder only skips, it takes `null` for a member name after a comma; the
        // stream parser does not.
        assert!(ok(r#"{"x":{"a":1,null:2},"streams":[]}"#).is_empty());
        assert_eq!(
            reason(&message(r#"{"streams":[{"a":1,null:2}]}"#)),
            format!("{PREFIX}unmarshalerDecoder: {NOT_OBJECT}")
        );
    }

    #[test]
    fn control_characters_are_refused_where_loki_refuses_them() {
        // Before any escape, in the read where the string began: refused, excerpt at its start.
        assert_eq!(
            err(b"{\"streams\":[{\"values\":[[\"1\",\"a\tb\"]]}]}"),
            format!(
                "{PREFIX}trySkipString: invalid control character found: 9, error found in #10 \
                 byte of ...|s\":[[\"1\",\"a\tb\"]]}}]}}|..., bigger context \
                 ...|{{\"streams\":[{{\"values\":[[\"1\",\"a\tb\"]]}}]}}|..."
            )
        );
        assert!(
            reason(&err(b"{\"streams\":[{\"a\nb\":1}]}"))
                .ends_with("ReadString: invalid control character found: 10")
        );
        // After an escape, or past the read where the string began: kept as they are.
        let streams = ok("{\"streams\":[{\"values\":[[\"1\",\"\\\"a\tb\"]]}]}");
        assert_eq!(streams[0].entries[0].line, Bytes::from("\"a\tb"));
        let start = r#"{"streams":[{"values":[["1",""#;
        let body = format!("{start}{}\tz\"]]}}]}}", "y".repeat(READ_SIZE - start.len()));
        assert!(ok(&body)[0].entries[0].line.ends_with(b"y\tz"));
    }

    #[test]
    fn element_type_errors_are_the_stream_parsers() {
        let reason_of = |body: &str| reason(&err(body.as_bytes())).to_string();
        let cases = [
            (r#"{"streams":[{"values":[[1,"a"]]}]}"#, NOT_STRING),
            (r#"{"streams":[{"values":[["1",2]]}]}"#, NOT_STRING),
            (r#"{"streams":[{"values":[["x1","a"]]}]}"#, NOT_INTEGER),
            (r#"{"streams":[{"values":[["01","a"]]}]}"#, NOT_INTEGER),
            (
                r#"{"streams":[{"values":[["99999999999999999999","a"]]}]}"#,
                INTEGER_OVERFLOW,
            ),
            (r#"{"streams":[{"values":[["1","a",[]]]}]}"#, NOT_OBJECT),
            (
                r#"{"streams":[{"values":[["1","a",{"k":1}]]}]}"#,
                NOT_STRING,
            ),
            (r#"{"streams":[{"values":{}}]}"#, NOT_ARRAY),
            (r#"{"streams":[{"values":["1"]}]}"#, NOT_ARRAY),
            (r#"{"streams":[{"stream":"job"}]}"#, NOT_OBJECT),
            (r#"{"streams":[null]}"#, NOT_OBJECT),
        ];
        for (body, expected) in cases {
            assert_eq!(
                reason_of(body),
                format!("{PREFIX}unmarshalerDecoder: {expected}"),
                "{body}"
            );
        }
        // Reported at the end of the element, before any later error.
        let text = err(br#"{"streams":[{"values":[[1]]},{"#);
        assert!(text.contains("byte of ...|es\":[[1]]},{|..."), "{text}");
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let mut body = String::from(r#"{"x":"#);
        body.push_str(&"[".repeat(100_000));
        let text = err(body.as_bytes());
        assert_eq!(
            reason(&text),
            "loghttp.PushRequest.incrementDepth: exceeded max depth"
        );
        let nested = |depth: usize| {
            format!(
                r#"{{"streams":[{{"x":{}{}}}]}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        // The top-level object and the element count; the streams array does not.
        assert!(decode(nested(MAX_DEPTH - 2).as_bytes(), Ending::Eof).is_ok());
        assert_eq!(
            reason(&err(nested(MAX_DEPTH - 1).as_bytes())),
            format!("{PREFIX}incrementDepth: exceeded max depth")
        );
    }

    #[test]
    fn garbage_never_panics() {
        let seed = br#"{"streams":[{"stream":{"a":"b"},"values":[["1","x\u00e9\n",{"k":"v"}]]}],"z":[1,{"q":null}]}"#;
        let alphabet = b"{}[]\",:\\ntfu0-9e. \t\x01\xff";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut body = seed.to_vec();
            for _ in 0..1 + next() % 4 {
                let at = (next() % body.len() as u64) as usize;
                let byte = alphabet[(next() % alphabet.len() as u64) as usize];
                match next() % 3 {
                    0 => body[at] = byte,
                    1 => body.insert(at, byte),
                    _ => {
                        body.remove(at);
                    }
                }
            }
            if let Err(text) = decode(&body, Ending::Eof) {
                assert!(!text.is_empty());
            }
        }
    }

    #[test]
    fn timestamps_are_strict_integers() {
        assert_eq!(parse_timestamp(b"123"), Ok(123));
        assert_eq!(parse_timestamp(b"-5"), Ok(-5));
        assert_eq!(parse_timestamp(b"0"), Ok(0));
        assert_eq!(parse_timestamp(b"-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(
            parse_timestamp(b"9223372036854775808"),
            Err(INTEGER_OVERFLOW)
        );
        for bad in [&b""[..], b"-", b"012", b"1.5", b"+1", b" 1", b"\\u0031"] {
            assert_eq!(parse_timestamp(bad), Err(NOT_INTEGER), "{bad:?}");
        }
    }
}
