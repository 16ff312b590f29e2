//! The JSON push body, decoded the way Loki 3.7 decodes it, so that a malformed or cut body gets
//! Loki's error text.
//!
//! Loki reads a JSON push with json-iterator's streaming decoder
//! (`jsoniter.NewDecoder(body).Decode(&loghttp.PushRequest{})`) through a `LimitReader` of
//! `max_recv_msg_size + 1` bytes, and hands each element of `streams` to
//! `loghttp.LogProtoStream.UnmarshalJSON`, which uses jsonparser. An over-limit body is therefore
//! not a 413: the decoder runs out of input in the middle of the document and fails, e.g.
//! `loghttp.PushRequest.Streams: []loghttp.LogProtoStream: readStringSlowPath: unexpected end of
//! input, error found in #10 byte of ...|<10 bytes>|..., bigger context ...|<50 bytes>|...`.
//!
//! This module ports the parts of json-iterator that decide such texts (`Iterator.nextToken`,
//! `Skip`, `ReadString`, `ReadObjectCB`, `ReadArrayCB`, `ReportError`, the struct, slice and
//! unmarshaler decoders and their error prefixes) and the jsonparser checks of a stream.
//!
//! Guarantees:
//! - Valid pushes decode to the same streams and entries as in Loki, including Loki's leniency:
//!   data after the top-level object is ignored, unknown fields are skipped, the `streams` key is
//!   matched case-insensitively, entries may have fewer than two elements (missing line: empty;
//!   missing timestamp: Go's zero time), label values need not be strings.
//! - The first error is reported as json-iterator reports it, with its excerpts taken from a
//!   512-byte read buffer filled from the start of the body (json-iterator's buffer size). Loki's
//!   reads follow the network, so its excerpts can be shorter near a read boundary; the text
//!   before `, error found in` is the same.
//! - Never panics and never recurses on input: nesting is handled with an explicit stack, and
//!   json-iterator's depth limit (10000) applies.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::decode::{PushEntry, PushStream};
use super::gofmt::GO_ZERO_TIME_NS;
use super::labels::format_map;

/// json-iterator's read buffer (`jsoniter.NewDecoder` → `Parse(cfg, reader, 512)`).
const BUFFER: usize = 512;
/// json-iterator's `maxDepth`.
const MAX_DEPTH: i32 = 10_000;

/// jsonparser's error texts, as `LogProtoStream.UnmarshalJSON` returns them.
const MALFORMED_JSON: &str = "Malformed JSON error";
const MALFORMED_STRING: &str = "Value is string, but can't find closing '\"' symbol";
const MALFORMED_ARRAY: &str = "Value is array, but can't find closing ']' symbol";
const MALFORMED_OBJECT: &str = "Value looks like object, but can't find closing '}' symbol";
const MALFORMED_VALUE: &str =
    "Value looks like Number/Boolean/None, but can't find its end: ',' or '}' symbol";
const OVERFLOW_INTEGER: &str = "Value is number, but overflowed while parsing";
const MALFORMED_ESCAPE: &str = "Encountered an invalid escape sequence in a string";

/// What the reader under the decoder reports once the data is used up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// A plain end (`io.EOF`): the body ended, or a `LimitReader` cut it.
    Eof,
    /// A decompressor's error (`unexpected EOF` for a truncated gzip or deflate stream).
    Error(String),
}

/// A decoded push.
#[derive(Debug)]
pub struct Decoded {
    pub streams: Vec<PushStream>,
    /// Bytes the decoder pulled from its reader (whole 512-byte reads), for Loki's final size
    /// check.
    pub bytes_read: usize,
}

/// Decodes `data` (the body as the decoder's reader delivers it), then `ending`.
pub fn decode(data: &[u8], ending: Ending) -> Result<Decoded, String> {
    let mut iter = Iter {
        data,
        start: 0,
        head: 0,
        tail: 0,
        fault: None,
        ending,
        depth: 0,
    };
    // `Decoder.Decode`: an empty reader is `io.EOF` itself, whatever the reader said.
    if !iter.load_more() {
        return Err("EOF".into());
    }
    let mut streams = Vec::new();
    iter.push_request(&mut streams);
    match iter.fault {
        None | Some(Fault::Eof) => Ok(Decoded {
            streams,
            bytes_read: iter.tail,
        }),
        Some(Fault::Reader(message) | Fault::Message(message)) => Err(message),
    }
}

/// `Iterator.Error`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fault {
    /// `io.EOF`: replaced by the next reported error, and no error if none follows.
    Eof,
    /// The reader's own error (not `io.EOF`): kept, and prefixed like a message.
    Reader(String),
    Message(String),
}

/// The open containers of a value being skipped.
#[derive(Clone, Copy, Debug)]
enum Frame {
    Array,
    Object,
}

/// json-iterator's `Iterator` over a reader, with absolute positions: the buffer is
/// `data[start..tail]` and `head` is the next byte to read.
struct Iter<'a> {
    data: &'a [u8],
    start: usize,
    head: usize,
    tail: usize,
    fault: Option<Fault>,
    ending: Ending,
    depth: i32,
}

/// `string([]byte{c})`, as Go builds the texts (a lone byte over 0x7f is not valid UTF-8).
fn byte_text(c: u8) -> String {
    String::from_utf8_lossy(&[c]).into_owned()
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\t' | b'\r')
}

impl Iter<'_> {
    /// An error other than `io.EOF` is set: nothing can change the message any more.
    fn failed(&self) -> bool {
        matches!(self.fault, Some(Fault::Reader(_) | Fault::Message(_)))
    }

    fn load_more(&mut self) -> bool {
        if self.tail < self.data.len() {
            self.start = self.tail;
            self.head = self.tail;
            self.tail = (self.tail + BUFFER).min(self.data.len());
            return true;
        }
        if self.fault.is_none() {
            self.fault = Some(match &self.ending {
                Ending::Eof => Fault::Eof,
                Ending::Error(message) => Fault::Reader(message.clone()),
            });
        }
        false
    }

    fn next_token(&mut self) -> u8 {
        loop {
            if let Some(at) = (self.head..self.tail).find(|&i| !is_space(self.data[i])) {
                self.head = at + 1;
                return self.data[at];
            }
            if !self.load_more() {
                return 0;
            }
        }
    }

    fn read_byte(&mut self) -> u8 {
        if self.head == self.tail && !self.load_more() {
            return 0;
        }
        let c = self.data[self.head];
        self.head += 1;
        c
    }

    fn unread_byte(&mut self) {
        if self.fault.is_some() {
            return;
        }
        self.head = self.head.saturating_sub(1).max(self.start);
    }

    /// `ReportError`: the first error wins, except that it replaces `io.EOF`.
    fn report(&mut self, operation: &str, message: &str) {
        if !matches!(self.fault, None | Some(Fault::Eof)) {
            return;
        }
        let buffer = &self.data[self.start..self.tail];
        let head = self.head - self.start;
        let peek_start = head.saturating_sub(10);
        let peek_end = (head + 10).min(buffer.len());
        let context_start = head.saturating_sub(50);
        let context_end = (head + 50).min(buffer.len());
        self.fault = Some(Fault::Message(format!(
            "{operation}: {message}, error found in #{} byte of ...|{}|..., bigger context ...|{}|...",
            head - peek_start,
            String::from_utf8_lossy(&buffer[peek_start..peek_end]),
            String::from_utf8_lossy(&buffer[context_start..context_end]),
        )));
    }

    /// The prefix a decoder adds to an error (other than `io.EOF`) when it returns.
    fn wrap(&mut self, prefix: &str) {
        let message = match &self.fault {
            Some(Fault::Reader(m) | Fault::Message(m)) => format!("{prefix}{m}"),
            _ => return,
        };
        self.fault = Some(Fault::Message(message));
    }

    fn increment_depth(&mut self) -> bool {
        self.depth += 1;
        if self.depth <= MAX_DEPTH {
            return true;
        }
        self.report("incrementDepth", "exceeded max depth");
        false
    }

    fn decrement_depth(&mut self) {
        self.depth -= 1;
        if self.depth < 0 {
            self.report("decrementDepth", "unexpected negative nesting");
        }
    }

    /// The `oneFieldStructDecoder` of `loghttp.PushRequest`.
    fn push_request(&mut self, streams: &mut Vec<PushStream>) {
        if !self.read_object_start() || !self.increment_depth() {
            return;
        }
        loop {
            match self.read_field_hash() {
                Some(true) => {
                    self.streams(streams);
                    // `structFieldDecoder`.
                    self.wrap("Streams: ");
                }
                _ => self.skip(),
            }
            // Once failed, going on can only repeat prefixes (a body that repeats `streams`
            // after its error); the first error is what Loki reports.
            if self.failed() || self.is_object_end() {
                break;
            }
        }
        self.wrap("loghttp.PushRequest.");
        self.decrement_depth();
    }

    fn read_object_start(&mut self) -> bool {
        match self.next_token() {
            b'{' => {
                if self.next_token() == b'}' {
                    return false;
                }
                self.unread_byte();
                true
            }
            b'n' => {
                self.skip_three(b'u', b'l', b'l');
                false
            }
            c => {
                self.report(
                    "readObjectStart",
                    &format!("expect {{ or n, but found {}", byte_text(c)),
                );
                false
            }
        }
    }

    /// `readFieldHash`: whether the field is `streams` (case-insensitive); `None` on error.
    fn read_field_hash(&mut self) -> Option<bool> {
        let c = self.next_token();
        if c != b'"' {
            self.report(
                "readFieldHash",
                &format!("expect \", but found {}", byte_text(c)),
            );
            return None;
        }
        let mut name = Vec::new();
        loop {
            let mut at = self.head;
            while at < self.tail {
                let b = self.data[at];
                if b == b'\\' {
                    self.head = at;
                    name.extend(self.read_string_slow_path());
                    return self.field_colon(&name);
                }
                if b == b'"' {
                    self.head = at + 1;
                    return self.field_colon(&name);
                }
                name.push(b);
                at += 1;
            }
            if !self.load_more() {
                self.report("readFieldHash", "incomplete field name");
                return None;
            }
        }
    }

    fn field_colon(&mut self, name: &[u8]) -> Option<bool> {
        let c = self.next_token();
        if c != b':' {
            self.report(
                "readFieldHash",
                &format!("expect :, but found {}", byte_text(c)),
            );
            return None;
        }
        Some(name.eq_ignore_ascii_case(b"streams"))
    }

    fn is_object_end(&mut self) -> bool {
        match self.next_token() {
            b',' => false,
            b'}' => true,
            c => {
                self.report(
                    "isObjectEnd",
                    &format!("object ended prematurely, unexpected char {}", byte_text(c)),
                );
                true
            }
        }
    }

    /// The `sliceDecoder` of `[]loghttp.LogProtoStream`; each decode replaces the slice.
    fn streams(&mut self, streams: &mut Vec<PushStream>) {
        streams.clear();
        self.stream_slice(streams);
        self.wrap("[]loghttp.LogProtoStream: ");
    }

    fn stream_slice(&mut self, streams: &mut Vec<PushStream>) {
        match self.next_token() {
            b'n' => {
                self.skip_three(b'u', b'l', b'l');
                return;
            }
            b'[' => {}
            c => {
                self.report(
                    "decode slice",
                    &format!("expect [ or n, but found {}", byte_text(c)),
                );
                return;
            }
        }
        if self.next_token() == b']' {
            return;
        }
        self.unread_byte();
        self.stream_element(streams);
        loop {
            if self.failed() {
                return;
            }
            match self.next_token() {
                b',' => self.stream_element(streams),
                b']' => return,
                c => {
                    self.report(
                        "decode slice",
                        &format!("expect ], but found {}", byte_text(c)),
                    );
                    return;
                }
            }
        }
    }

    /// The `unmarshalerDecoder` of `LogProtoStream`: skip the value, then let
    /// `UnmarshalJSON` judge the bytes skipped.
    fn stream_element(&mut self, streams: &mut Vec<PushStream>) {
        self.next_token();
        self.unread_byte();
        let start = self.head;
        self.skip();
        if self.failed() {
            return;
        }
        match parse_stream(&self.data[start..self.head]) {
            Ok(stream) => streams.push(stream),
            Err(message) => self.report("unmarshalerDecoder", message),
        }
    }

    /// `Iterator.Skip` with its callbacks unrolled onto a stack.
    fn skip(&mut self) {
        let mut stack: Vec<Frame> = Vec::new();
        'value: loop {
            if self.failed() {
                return;
            }
            match self.next_token() {
                b'"' => self.skip_string(),
                b'n' => self.skip_three(b'u', b'l', b'l'),
                b't' => self.skip_three(b'r', b'u', b'e'),
                b'f' => self.skip_four(b'a', b'l', b's', b'e'),
                b'0' => {
                    self.unread_byte();
                    self.skip_number();
                }
                b'-' | b'1'..=b'9' => self.skip_number(),
                b'[' => {
                    if !self.increment_depth() {
                        return;
                    }
                    if self.next_token() != b']' {
                        self.unread_byte();
                        stack.push(Frame::Array);
                        continue 'value;
                    }
                    self.decrement_depth();
                }
                b'{' => {
                    if !self.increment_depth() {
                        return;
                    }
                    match self.next_token() {
                        b'"' => {
                            self.unread_byte();
                            self.read_string();
                            self.object_colon();
                            stack.push(Frame::Object);
                            continue 'value;
                        }
                        b'}' => self.decrement_depth(),
                        c => {
                            self.report(
                                "ReadObjectCB",
                                &format!("expect \" after {{, but found {}", byte_text(c)),
                            );
                            return;
                        }
                    }
                }
                c => {
                    self.report("Skip", &format!("do not know how to skip: {c}"));
                    return;
                }
            }
            // A value ended: close the containers that end with it.
            while let Some(&frame) = stack.last() {
                if self.failed() {
                    return;
                }
                let c = self.next_token();
                match (frame, c) {
                    (Frame::Array, b',') => continue 'value,
                    (Frame::Array, b']') | (Frame::Object, b'}') => {
                        self.decrement_depth();
                        stack.pop();
                    }
                    (Frame::Object, b',') => {
                        self.read_string();
                        self.object_colon();
                        continue 'value;
                    }
                    (Frame::Array, c) => {
                        self.report(
                            "ReadArrayCB",
                            &format!("expect ] in the end, but found {}", byte_text(c)),
                        );
                        return;
                    }
                    (Frame::Object, _) => {
                        self.report("ReadObjectCB", "object not ended with }");
                        return;
                    }
                }
            }
            return;
        }
    }

    fn object_colon(&mut self) {
        let c = self.next_token();
        if c != b':' {
            self.report(
                "ReadObject",
                &format!("expect : after object field, but found {}", byte_text(c)),
            );
        }
    }

    fn skip_three(&mut self, b1: u8, b2: u8, b3: u8) {
        for b in [b1, b2, b3] {
            if self.read_byte() != b {
                let word = String::from_utf8_lossy(&[b1, b2, b3]).into_owned();
                self.report("skipThreeBytes", &format!("expect {word}"));
                return;
            }
        }
    }

    fn skip_four(&mut self, b1: u8, b2: u8, b3: u8, b4: u8) {
        for b in [b1, b2, b3, b4] {
            if self.read_byte() != b {
                let word = String::from_utf8_lossy(&[b1, b2, b3, b4]).into_owned();
                self.report("skipFourBytes", &format!("expect {word}"));
                return;
            }
        }
    }

    /// Numbers: what can follow the first character of a JSON number is consumed. (json-iterator
    /// validates further; numbers do not occur in a Loki push, so its texts for malformed
    /// numbers are not reproduced.)
    fn skip_number(&mut self) {
        loop {
            while self.head < self.tail {
                let c = self.data[self.head];
                if !(c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-')) {
                    return;
                }
                self.head += 1;
            }
            if !self.load_more() {
                return;
            }
        }
    }

    fn skip_string(&mut self) {
        if !self.try_skip_string() {
            self.unread_byte();
            self.read_string();
        }
    }

    /// The fast path within the buffer: `false` when it meets an escape or the buffer's end.
    fn try_skip_string(&mut self) -> bool {
        for at in self.head..self.tail {
            let c = self.data[at];
            if c == b'"' {
                self.head = at + 1;
                return true;
            }
            if c == b'\\' {
                return false;
            }
            if c < b' ' {
                self.report(
                    "trySkipString",
                    &format!("invalid control character found: {c}"),
                );
                return true;
            }
        }
        false
    }

    fn read_string(&mut self) -> Vec<u8> {
        match self.next_token() {
            b'"' => {
                for at in self.head..self.tail {
                    let c = self.data[at];
                    if c == b'"' {
                        let value = self.data[self.head..at].to_vec();
                        self.head = at + 1;
                        return value;
                    }
                    if c == b'\\' {
                        break;
                    }
                    if c < b' ' {
                        self.report(
                            "ReadString",
                            &format!("invalid control character found: {c}"),
                        );
                        return Vec::new();
                    }
                }
                self.read_string_slow_path()
            }
            b'n' => {
                self.skip_three(b'u', b'l', b'l');
                Vec::new()
            }
            c => {
                self.report(
                    "ReadString",
                    &format!("expects \" or n, but found {}", byte_text(c)),
                );
                Vec::new()
            }
        }
    }

    fn read_string_slow_path(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.fault.is_none() {
            let c = self.read_byte();
            if c == b'"' {
                return out;
            }
            if c == b'\\' {
                let escaped = self.read_byte();
                self.read_escaped_char(escaped, &mut out);
            } else {
                out.push(c);
            }
        }
        self.report("readStringSlowPath", "unexpected end of input");
        Vec::new()
    }

    fn read_escaped_char(&mut self, c: u8, out: &mut Vec<u8>) {
        let plain = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                self.read_unicode_escape(out);
                return;
            }
            _ => {
                self.report("readEscapedChar", "invalid escape char after \\");
                return;
            }
        };
        out.push(plain);
    }

    fn read_unicode_escape(&mut self, out: &mut Vec<u8>) {
        let first = self.read_u4();
        if !(0xD800..0xE000).contains(&first) {
            push_rune(out, first);
            return;
        }
        let c = self.read_byte();
        if self.fault.is_some() {
            return;
        }
        if c != b'\\' {
            self.unread_byte();
            push_rune(out, first);
            return;
        }
        let c = self.read_byte();
        if self.fault.is_some() {
            return;
        }
        if c != b'u' {
            push_rune(out, first);
            self.read_escaped_char(c, out);
            return;
        }
        let second = self.read_u4();
        if self.fault.is_some() {
            return;
        }
        if (0xD800..0xDC00).contains(&first) && (0xDC00..0xE000).contains(&second) {
            push_rune(out, 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00));
        } else {
            push_rune(out, first);
            push_rune(out, second);
        }
    }

    fn read_u4(&mut self) -> u32 {
        let mut value = 0u32;
        for _ in 0..4 {
            let c = self.read_byte();
            if self.fault.is_some() {
                return value;
            }
            let digit = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => {
                    self.report(
                        "readU4",
                        &format!("expects 0~9 or a~f, but found {}", byte_text(c)),
                    );
                    return value;
                }
            };
            value = value * 16 + u32::from(digit);
        }
        value
    }
}

/// Go's `utf8.AppendRune`: invalid code points (lone surrogates) become U+FFFD.
fn push_rune(out: &mut Vec<u8>, code: u32) {
    let c = char::from_u32(code).unwrap_or('\u{fffd}');
    let mut buffer = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
}

/// jsonparser's value types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    String,
    Number,
    Object,
    Array,
    Boolean,
    Null,
}

/// An object member: its key (as written), its value's kind and text.
type Member<'a> = (&'a [u8], Kind, &'a [u8]);

/// A cursor over one stream's bytes, which json-iterator already found well formed.
struct Raw<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Raw<'a> {
    fn space(&mut self) {
        while self.at < self.b.len() && is_space(self.b[self.at]) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.space();
        self.b.get(self.at).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// The next value: its kind and its text (a string's without the quotes).
    fn value(&mut self) -> Result<(Kind, &'a [u8]), &'static str> {
        let Some(first) = self.peek() else {
            return Err(MALFORMED_JSON);
        };
        let start = self.at;
        match first {
            b'"' => {
                let end = self.string_end(start + 1)?;
                self.at = end + 1;
                Ok((Kind::String, &self.b[start + 1..end]))
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                let mut at = start;
                while at < self.b.len() {
                    match self.b[at] {
                        b'"' => at = self.string_end(at + 1)?,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at = at + 1;
                                let kind = if first == b'{' {
                                    Kind::Object
                                } else {
                                    Kind::Array
                                };
                                return Ok((kind, &self.b[start..=at]));
                            }
                        }
                        _ => {}
                    }
                    at += 1;
                }
                Err(MALFORMED_JSON)
            }
            _ => {
                let mut end = start;
                while end < self.b.len()
                    && !matches!(self.b[end], b',' | b'}' | b']')
                    && !is_space(self.b[end])
                {
                    end += 1;
                }
                self.at = end;
                let kind = match first {
                    b't' | b'f' => Kind::Boolean,
                    b'n' => Kind::Null,
                    _ => Kind::Number,
                };
                Ok((kind, &self.b[start..end]))
            }
        }
    }

    /// The index of the quote that closes a string whose contents start at `from`.
    fn string_end(&self, from: usize) -> Result<usize, &'static str> {
        let mut at = from;
        while at < self.b.len() {
            match self.b[at] {
                b'\\' => at += 2,
                b'"' => return Ok(at),
                _ => at += 1,
            }
        }
        Err(MALFORMED_STRING)
    }

    /// The members of the object at the cursor, in order (jsonparser's `ObjectEach`).
    fn members(&mut self) -> Result<Vec<Member<'a>>, &'static str> {
        if !self.eat(b'{') {
            return Err(MALFORMED_OBJECT);
        }
        let mut members = Vec::new();
        if self.eat(b'}') {
            return Ok(members);
        }
        loop {
            let (kind, key) = self.value()?;
            if kind != Kind::String || !self.eat(b':') {
                return Err(MALFORMED_OBJECT);
            }
            let (kind, value) = self.value()?;
            members.push((key, kind, value));
            if self.eat(b'}') {
                return Ok(members);
            }
            if !self.eat(b',') {
                return Err(MALFORMED_OBJECT);
            }
        }
    }

    /// The elements of the array at the cursor, in order (jsonparser's `ArrayEach`).
    fn elements(&mut self) -> Result<Vec<(Kind, &'a [u8])>, &'static str> {
        if !self.eat(b'[') {
            return Err(MALFORMED_ARRAY);
        }
        let mut elements = Vec::new();
        if self.eat(b']') {
            return Ok(elements);
        }
        loop {
            elements.push(self.value()?);
            if self.eat(b']') {
                return Ok(elements);
            }
            if !self.eat(b',') {
                return Err(MALFORMED_ARRAY);
            }
        }
    }
}

/// jsonparser's `Unescape` of a string's contents.
fn unescape(raw: &[u8]) -> Result<Vec<u8>, &'static str> {
    if !raw.contains(&b'\\') {
        return Ok(raw.to_vec());
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    let hex4 = |at: usize| -> Result<u32, &'static str> {
        let digits = raw.get(at..at + 4).ok_or(MALFORMED_ESCAPE)?;
        let text = std::str::from_utf8(digits).map_err(|_| MALFORMED_ESCAPE)?;
        u32::from_str_radix(text, 16).map_err(|_| MALFORMED_ESCAPE)
    };
    while at < raw.len() {
        let c = raw[at];
        if c != b'\\' {
            out.push(c);
            at += 1;
            continue;
        }
        let escaped = *raw.get(at + 1).ok_or(MALFORMED_ESCAPE)?;
        at += 2;
        let plain = match escaped {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let first = hex4(at)?;
                at += 4;
                let mut code = first;
                if (0xD800..0xDC00).contains(&first)
                    && raw.get(at..at + 2) == Some(b"\\u")
                    && let Ok(second) = hex4(at + 2)
                    && (0xDC00..0xE000).contains(&second)
                {
                    code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                    at += 6;
                }
                push_rune(&mut out, code);
                continue;
            }
            _ => return Err(MALFORMED_ESCAPE),
        };
        out.push(plain);
    }
    Ok(out)
}

/// jsonparser's `ParseInt`: base 10, optional minus, no leading zeros.
fn parse_int(raw: &[u8]) -> Result<i64, &'static str> {
    let (negative, digits) = match raw.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, raw),
    };
    if digits.is_empty() {
        return Err(MALFORMED_VALUE);
    }
    let mut n: u64 = 0;
    for (i, &c) in digits.iter().enumerate() {
        if !c.is_ascii_digit() || (n == 0 && i != 0) {
            return Err(MALFORMED_VALUE);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(c - b'0')))
            .ok_or(OVERFLOW_INTEGER)?;
    }
    if negative {
        if n == 1 << 63 {
            return Ok(i64::MIN);
        }
        i64::try_from(n).map(|v| -v).map_err(|_| OVERFLOW_INTEGER)
    } else {
        i64::try_from(n).map_err(|_| OVERFLOW_INTEGER)
    }
}

/// `LogProtoStream.UnmarshalJSON`.
fn parse_stream(bytes: &[u8]) -> Result<PushStream, &'static str> {
    let mut raw = Raw { b: bytes, at: 0 };
    let mut labels = String::new();
    let mut entries = Vec::new();
    for (key, kind, value) in raw.members()? {
        match key {
            b"stream" => {
                if kind != Kind::Object {
                    return Err(MALFORMED_OBJECT);
                }
                labels = parse_labels(value)?;
            }
            b"values" => {
                if kind == Kind::Null {
                    continue;
                }
                entries = parse_entries(value)?;
            }
            _ => {}
        }
    }
    Ok(PushStream { labels, entries })
}

/// `loghttp.LabelSet.UnmarshalJSON` then `String()`.
fn parse_labels(object: &[u8]) -> Result<String, &'static str> {
    let mut raw = Raw { b: object, at: 0 };
    let mut set = BTreeMap::new();
    for (key, kind, value) in raw.members()? {
        let value = if kind == Kind::String {
            unescape(value)?
        } else {
            value.to_vec()
        };
        let key = unescape(key)?;
        set.insert(
            String::from_utf8_lossy(&key).into_owned(),
            String::from_utf8_lossy(&value).into_owned(),
        );
    }
    Ok(format_map(
        set.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ))
}

fn parse_entries(array: &[u8]) -> Result<Vec<PushEntry>, &'static str> {
    let mut raw = Raw { b: array, at: 0 };
    let mut entries = Vec::new();
    for (kind, value) in raw.elements()? {
        match kind {
            Kind::Null => {}
            Kind::Array => entries.push(parse_entry(value)?),
            _ => return Err(MALFORMED_ARRAY),
        }
    }
    Ok(entries)
}

/// `unmarshalHTTPToLogProtoEntry`: `["<ns>", "<line>", {<metadata>}]`, extra elements ignored.
fn parse_entry(array: &[u8]) -> Result<PushEntry, &'static str> {
    let mut raw = Raw { b: array, at: 0 };
    let mut entry = PushEntry {
        ts_ns: GO_ZERO_TIME_NS,
        line: Bytes::new(),
        metadata: Vec::new(),
    };
    for (i, (kind, value)) in raw.elements()?.into_iter().enumerate() {
        match i {
            0 | 1 if kind != Kind::String => return Err(MALFORMED_STRING),
            0 => entry.ts_ns = parse_int(value)?,
            1 => entry.line = Bytes::from(unescape(value)?),
            2 => {
                if kind != Kind::Object {
                    return Err(MALFORMED_OBJECT);
                }
                let mut object = Raw { b: value, at: 0 };
                for (name, kind, value) in object.members()? {
                    if kind != Kind::String {
                        return Err(MALFORMED_STRING);
                    }
                    entry.metadata.push((
                        String::from_utf8_lossy(name).into_owned(),
                        String::from_utf8_lossy(&unescape(value)?).into_owned(),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Vec<PushStream> {
        match decode(body.as_bytes(), Ending::Eof) {
            Ok(decoded) => decoded.streams,
            Err(e) => panic!("{body}: {e}"),
        }
    }

    fn err(body: &[u8], ending: Ending) -> String {
        match decode(body, ending) {
            Ok(decoded) => panic!("decoded {:?}", decoded.streams),
            Err(e) => e,
        }
    }

    #[test]
    fn decodes_like_loki() {
        let streams = ok(
            r#" {"streams":[{"stream":{"job":"a","n":1},"values":[["7","one"],["8","t\u00e9\nx",{"trace_id":"x"}],null]}], "other": [1, {"a": true}]} trailing"#,
        );
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[0].labels, r#"{job="a", n="1"}"#);
        assert_eq!(streams[0].entries.len(), 2);
        assert_eq!(streams[0].entries[0].ts_ns, 7);
        assert_eq!(streams[0].entries[1].line, Bytes::from("té\nx"));
        assert_eq!(
            streams[0].entries[1].metadata,
            vec![("trace_id".to_string(), "x".to_string())]
        );
        // The key is matched like a Go struct field; short entries are accepted.
        let streams = ok(r#"{"Streams":[{"values":[["5"],[]]}]}"#);
        assert_eq!(streams[0].labels, "");
        assert_eq!(streams[0].entries[0].line, Bytes::new());
        assert_eq!(streams[0].entries[1].ts_ns, GO_ZERO_TIME_NS);
        assert!(ok(r#"{"streams":null}"#).is_empty());
        assert!(ok("{}").is_empty());
    }

    #[test]
    fn a_cut_line_reads_like_jsoniter() {
        let body = format!(
            r#"{{"streams":[{{"stream":{{"job":"a"}},"values":[["1","{}"]]}}]}}"#,
            "x".repeat(2000)
        );
        let cut = &body.as_bytes()[..1001];
        assert_eq!(
            err(cut, Ending::Eof),
            format!(
                "loghttp.PushRequest.Streams: []loghttp.LogProtoStream: readStringSlowPath: \
                 unexpected end of input, error found in #10 byte of ...|{}|..., bigger context \
                 ...|{}|...",
                "x".repeat(10),
                "x".repeat(50)
            )
        );
        // A truncated gzip stream: the reader's own error, with the same prefixes.
        assert_eq!(
            err(cut, Ending::Error("unexpected EOF".into())),
            "loghttp.PushRequest.Streams: []loghttp.LogProtoStream: unexpected EOF"
        );
    }

    #[test]
    fn cuts_between_tokens_read_like_jsoniter() {
        let body = br#"{"streams":[{"stream":{"job":"a"},"values":[["1","a"],["2","b"]]}]}"#;
        let at = |marker: &str| {
            let text = std::str::from_utf8(body).unwrap_or_default();
            text.find(marker).map_or(0, |i| i + marker.len())
        };
        let message = |cut: usize| err(&body[..cut], Ending::Eof);
        let prefix = "loghttp.PushRequest.Streams: []loghttp.LogProtoStream: ";
        assert!(
            message(at(r#"["1","a"],"#)).starts_with(&format!(
                "{prefix}Skip: do not know how to skip: 0, error found in #10 byte of ...|"
            )),
            "{}",
            message(at(r#"["1","a"],"#))
        );
        assert!(message(at(r#"["1","a"]"#)).starts_with(&format!(
            "{prefix}ReadArrayCB: expect ] in the end, but found \0, error found in"
        )));
        assert!(
            message(at(r#"{"job":"a""#))
                .starts_with(&format!("{prefix}ReadObjectCB: object not ended with }}"))
        );
        assert!(message(at(r#"]}]"#)).starts_with(
            "loghttp.PushRequest.isObjectEnd: object ended prematurely, unexpected char \0"
        ));
        assert!(
            message(at(r#"]}"#))
                .starts_with(&format!("{prefix}decode slice: expect ], but found \0"))
        );
        assert!(
            err(br#"{"streams":[{"values":[["1","a\"#, Ending::Eof).starts_with(&format!(
                "{prefix}readEscapedChar: invalid escape char after \\"
            ))
        );
        assert_eq!(err(b"", Ending::Eof), "EOF");
        assert!(err(b"[]", Ending::Eof).starts_with("readObjectStart: expect { or n, but found ["));
    }

    #[test]
    fn stream_errors_are_jsonparsers() {
        let message = |body: &str| err(body.as_bytes(), Ending::Eof);
        assert!(
            message(r#"{"streams":[{"values":[[1,"a"]]}]}"#).starts_with(
                "loghttp.PushRequest.Streams: []loghttp.LogProtoStream: unmarshalerDecoder: \
             Value is string, but can't find closing '\"' symbol, error found in #10 byte of"
            )
        );
        assert!(
            message(r#"{"streams":[{"values":[["x1","a"]]}]}"#).contains(
                "unmarshalerDecoder: Value looks like Number/Boolean/None, but can't find its end"
            )
        );
        assert!(
            message(r#"{"streams":[{"values":[["1","a",[]]]}]}"#)
                .contains("unmarshalerDecoder: Value looks like object, but can't find closing")
        );
        assert!(
            message(r#"{"streams":[null]}"#)
                .contains("unmarshalerDecoder: Value looks like object, but can't find closing")
        );
        assert!(
            message("{\"streams\":[{\"values\":[[\"1\",\"a\tb\"]]}]}")
                .contains("trySkipString: invalid control character found: 9")
        );
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let mut body = String::from(r#"{"x":"#);
        body.push_str(&"[".repeat(20_000));
        let message = err(body.as_bytes(), Ending::Eof);
        assert!(
            message.starts_with("loghttp.PushRequest.incrementDepth: exceeded max depth"),
            "{}",
            &message[..80.min(message.len())]
        );
    }

    #[test]
    fn integers_follow_jsonparser() {
        assert_eq!(parse_int(b"123"), Ok(123));
        assert_eq!(parse_int(b"-5"), Ok(-5));
        assert_eq!(parse_int(b"0"), Ok(0));
        assert_eq!(parse_int(b"012"), Err(MALFORMED_VALUE));
        assert_eq!(parse_int(b""), Err(MALFORMED_VALUE));
        assert_eq!(parse_int(b"99999999999999999999"), Err(OVERFLOW_INTEGER));
        assert_eq!(parse_int(b"-9223372036854775808"), Ok(i64::MIN));
    }
}
