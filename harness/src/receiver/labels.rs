//! Stream labels: parsing the Prometheus text form `{a="b", c="d"}` the way Loki does
//! (`syntax.ParseLabels`, i.e. Prometheus' `parser.ParseMetric`), and printing them the way Loki
//! prints them in its messages (`labels.Labels.String()`).
//!
//! Guarantees:
//! - Accepts what `ParseMetric` accepts: an optional metric name (`__name__`), a brace-enclosed
//!   list of `name="value"` pairs with an optional trailing comma, single, double or backtick
//!   quotes, Go escapes, and quoted label names (`{"a.b"="c"}`).
//! - On malformed input the error reads like Prometheus' first parse error,
//!   `1:5: parse error: unexpected character inside braces: '-'`; positions are byte columns.
//! - The parsed set is sorted by name and has no empty values (Loki drops them), but keeps
//!   duplicate names so that validation can reject them with Loki's message.

use super::gofmt::{go_quote, go_quote_rune};

/// The name Prometheus gives the metric name when it is written before the braces.
const METRIC_NAME: &str = "__name__";

/// A parsed, normalised label set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSet(Vec<(String, String)>);

impl LabelSet {
    /// Sorted by name, without empty values.
    fn normalised(mut pairs: Vec<(String, String)>) -> Self {
        pairs.retain(|(_, value)| !value.is_empty());
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        Self(pairs)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The value of the first label called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name` (replacing every label of that name), keeping the order.
    pub fn set(&mut self, name: &str, value: &str) {
        self.0.retain(|(n, _)| n != name);
        let at = self.0.partition_point(|(n, _)| n.as_str() < name);
        self.0.insert(at, (name.to_string(), value.to_string()));
    }
}

impl std::fmt::Display for LabelSet {
    /// Prometheus' `labels.Labels.String()`: `{a="b", c="d"}`, values quoted as Go does, names
    /// quoted only when they are not valid legacy names.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("{")?;
        for (i, (name, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if is_legacy_name(name) {
                f.write_str(name)?;
            } else {
                f.write_str(&go_quote(name))?;
            }
            f.write_str("=")?;
            f.write_str(&go_quote(value))?;
        }
        f.write_str("}")
    }
}

fn is_legacy_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Writes a label map (as a JSON push carries it) in the text form Loki builds from it before
/// parsing: sorted by name, values quoted.
pub fn format_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut pairs: Vec<_> = pairs.into_iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::from("{");
    for (i, (name, value)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push('=');
        out.push_str(&go_quote(value));
    }
    out.push('}');
    out
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    LeftBrace,
    RightBrace,
    Comma,
    Eql,
    EqlRegex,
    Neq,
    NeqRegex,
    Identifier(String),
    MetricIdentifier(String),
    /// The raw literal, quotes included.
    Str(String),
    Eof,
}

impl Tok {
    /// How Prometheus names a token in "unexpected ..." messages (`Item.desc()`).
    fn describe(&self) -> String {
        match self {
            Tok::LeftBrace => "\"{\"".into(),
            Tok::RightBrace => "\"}\"".into(),
            Tok::Comma => "\",\"".into(),
            Tok::Eql => "\"=\"".into(),
            Tok::EqlRegex => "<op:=~>".into(),
            Tok::Neq => "<op:!=>".into(),
            Tok::NeqRegex => "<op:!~>".into(),
            Tok::Identifier(v) => format!("identifier {}", go_quote(v)),
            Tok::MetricIdentifier(v) => format!("metric_identifier {}", go_quote(v)),
            Tok::Str(raw) => {
                if raw.chars().count() > 10 {
                    let head: String = raw.chars().take(10).collect();
                    format!("string {}...", go_quote(&head))
                } else {
                    format!("string {}", go_quote(raw))
                }
            }
            Tok::Eof => "end of input".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Token {
    tok: Tok,
    pos: usize,
}

/// A parse error at a byte offset of the input.
#[derive(Clone, Debug, PartialEq)]
struct ParseErr {
    pos: usize,
    message: String,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn is_alpha(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_alphanumeric(c: char) -> bool {
    is_alpha(c) || c.is_ascii_digit()
}

/// `%#U` of Go's fmt: `U+0071 'q'`.
fn sharp_u(c: char) -> String {
    format!("U+{:04X} {}", c as u32, go_quote_rune(c))
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn err(&self, pos: usize, message: impl Into<String>) -> ParseErr {
        ParseErr {
            pos,
            message: message.into(),
        }
    }

    /// Reads a quoted string opened by `quote` at `start`; returns the raw literal.
    fn string(&mut self, start: usize, quote: char) -> Result<String, ParseErr> {
        if quote == '`' {
            loop {
                match self.next() {
                    None => return Err(self.err(start, "unterminated raw string")),
                    Some('`') => break,
                    Some(_) => {}
                }
            }
            return Ok(self.input[start..self.pos].to_string());
        }
        loop {
            match self.next() {
                Some('\\') => self.escape(start, quote)?,
                None | Some('\n') => return Err(self.err(start, "unterminated quoted string")),
                Some(c) if c == quote => break,
                Some(_) => {}
            }
        }
        Ok(self.input[start..self.pos].to_string())
    }

    fn escape(&mut self, start: usize, quote: char) -> Result<(), ParseErr> {
        let (digits, base, max) = match self.next() {
            Some('a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '\\') => return Ok(()),
            Some(c) if c == quote => return Ok(()),
            Some('0'..='7') => {
                // The first digit is already read.
                self.pos -= 1;
                (3, 8, 255)
            }
            Some('x') => (2, 16, 255),
            Some('u') => (4, 16, 0x10FFFF),
            Some('U') => (8, 16, 0x10FFFF),
            None => return Err(self.err(start, "escape sequence not terminated")),
            Some(c) => {
                return Err(self.err(start, format!("unknown escape sequence {}", sharp_u(c))));
            }
        };
        let mut value: u32 = 0;
        for _ in 0..digits {
            match self.next() {
                None => return Err(self.err(start, "escape sequence not terminated")),
                Some(c) => match c.to_digit(base) {
                    Some(d) => value = value.saturating_mul(base).saturating_add(d),
                    None => {
                        return Err(self.err(
                            start,
                            format!("illegal character {} in escape sequence", sharp_u(c)),
                        ));
                    }
                },
            }
        }
        if value > max || (0xD800..0xE000).contains(&value) {
            return Err(self.err(start, "escape sequence is an invalid Unicode code point"));
        }
        Ok(())
    }

    /// Tokens up to the end of input, or up to the first lexical error.
    fn tokens(mut self) -> (Vec<Token>, Option<ParseErr>) {
        let mut out = Vec::new();
        let mut in_braces = false;
        loop {
            let start = self.pos;
            let Some(c) = self.next() else {
                if in_braces {
                    return (
                        out,
                        Some(self.err(start, "unexpected end of input inside braces")),
                    );
                }
                out.push(Token {
                    tok: Tok::Eof,
                    pos: start,
                });
                return (out, None);
            };
            let tok = match c {
                c if is_space(c) => continue,
                '"' | '\'' | '`' => match self.string(start, c) {
                    Ok(raw) => Tok::Str(raw),
                    Err(e) => return (out, Some(e)),
                },
                ',' => Tok::Comma,
                '{' if in_braces => {
                    return (out, Some(self.err(start, "unexpected left brace '{'")));
                }
                '{' => {
                    in_braces = true;
                    Tok::LeftBrace
                }
                '}' if in_braces => {
                    in_braces = false;
                    Tok::RightBrace
                }
                '}' => return (out, Some(self.err(start, "unexpected right bracket '}'"))),
                '=' if in_braces => {
                    if self.peek() == Some('~') {
                        self.pos += 1;
                        Tok::EqlRegex
                    } else {
                        Tok::Eql
                    }
                }
                '=' => Tok::Eql,
                '!' => match self.next() {
                    Some('~') if in_braces => Tok::NeqRegex,
                    Some('=') => Tok::Neq,
                    other => {
                        let what = other.map_or_else(|| "EOF".to_string(), go_quote_rune);
                        let context = if in_braces { " inside braces" } else { "" };
                        return (
                            out,
                            Some(self.err(
                                start,
                                format!("unexpected character after '!'{context}: {what}"),
                            )),
                        );
                    }
                },
                c if in_braces && is_alpha(c) => {
                    while self.peek().is_some_and(is_alphanumeric) {
                        self.pos += 1;
                    }
                    Tok::Identifier(self.input[start..self.pos].to_string())
                }
                c if !in_braces && (is_alpha(c) || c == ':') => {
                    while self.peek().is_some_and(|c| is_alphanumeric(c) || c == ':') {
                        self.pos += 1;
                    }
                    let word = self.input[start..self.pos].to_string();
                    if word.contains(':') {
                        Tok::MetricIdentifier(word)
                    } else {
                        Tok::Identifier(word)
                    }
                }
                c if in_braces => {
                    let message =
                        format!("unexpected character inside braces: {}", go_quote_rune(c));
                    return (out, Some(self.err(start, message)));
                }
                c => {
                    let message = format!("unexpected character: {}", go_quote_rune(c));
                    return (out, Some(self.err(start, message)));
                }
            };
            out.push(Token { tok, pos: start });
        }
    }
}

/// Go's `strconv.Unquote` for a literal the lexer accepted (escapes already checked).
fn unquote(raw: &str) -> String {
    let mut chars = raw.chars();
    let quote = chars.next();
    let body = &raw[1..raw.len().saturating_sub(1).max(1)];
    if quote == Some('`') {
        return body.to_string();
    }
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut it = body.chars().peekable();
    let push_char = |out: &mut Vec<u8>, c: char| {
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    };
    while let Some(c) = it.next() {
        if c != '\\' {
            push_char(&mut out, c);
            continue;
        }
        let Some(e) = it.next() else { break };
        let mut read = |n: usize, base: u32, first: Option<char>| {
            let mut value = 0u32;
            let mut remaining = n;
            if let Some(d) = first.and_then(|c| c.to_digit(base)) {
                value = d;
                remaining -= 1;
            }
            for _ in 0..remaining {
                let d = it.next().and_then(|c| c.to_digit(base)).unwrap_or(0);
                value = value.saturating_mul(base).saturating_add(d);
            }
            value
        };
        match e {
            'a' => out.push(0x07),
            'b' => out.push(0x08),
            'f' => out.push(0x0c),
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            't' => out.push(b'\t'),
            'v' => out.push(0x0b),
            '0'..='7' => out.push(read(3, 8, Some(e)) as u8),
            'x' => out.push(read(2, 16, None) as u8),
            'u' => push_char(
                &mut out,
                char::from_u32(read(4, 16, None)).unwrap_or('\u{fffd}'),
            ),
            'U' => push_char(
                &mut out,
                char::from_u32(read(8, 16, None)).unwrap_or('\u{fffd}'),
            ),
            other => push_char(&mut out, other),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Renders a parse error as Prometheus' `ParseErr.Error()`: `line:column: parse error: ...`.
fn render(input: &str, e: &ParseErr) -> String {
    let pos = e.pos.min(input.len());
    let before = &input.as_bytes()[..pos];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let column = match before.iter().rposition(|&b| b == b'\n') {
        Some(newline) => pos - newline,
        None => pos + 1,
    };
    format!("{line}:{column}: parse error: {}", e.message)
}

/// Parses a stream's labels as Loki does. The error is the text Loki puts after
/// `couldn't parse labels: `.
pub fn parse(input: &str) -> Result<LabelSet, String> {
    parse_pairs(input)
        .map(LabelSet::normalised)
        .map_err(|e| render(input, &e))
}

fn parse_pairs(input: &str) -> Result<Vec<(String, String)>, ParseErr> {
    let (tokens, lex_error) = Lexer { input, pos: 0 }.tokens();
    let mut i = 0;
    // The next token; running into the lexical error reports it.
    let mut next = || -> Result<Token, ParseErr> {
        let token = tokens.get(i).cloned();
        i += 1;
        match token {
            Some(t) => Ok(t),
            None => Err(lex_error.clone().unwrap_or(ParseErr {
                pos: input.len(),
                message: "unexpected end of input".into(),
            })),
        }
    };
    let unexpected = |t: &Token, context: &str, expected: &str| {
        let mut message = format!("unexpected {}", t.tok.describe());
        if !context.is_empty() {
            message.push_str(" in ");
            message.push_str(context);
        }
        if !expected.is_empty() {
            message.push_str(", expected ");
            message.push_str(expected);
        }
        ParseErr {
            pos: t.pos,
            message,
        }
    };
    const SET: &str = "label set";

    let mut pairs = Vec::new();
    let mut metric_name = None;
    let mut t = next()?;
    if let Tok::Identifier(name) | Tok::MetricIdentifier(name) = &t.tok {
        metric_name = Some(name.clone());
        t = next()?;
    }
    if t.tok == Tok::LeftBrace {
        t = next()?;
        if t.tok == Tok::RightBrace {
            t = next()?;
        } else {
            loop {
                match t.tok.clone() {
                    Tok::Identifier(name) => {
                        t = next()?;
                        if t.tok != Tok::Eql {
                            return Err(unexpected(&t, SET, "\"=\""));
                        }
                        t = next()?;
                        let Tok::Str(raw) = &t.tok else {
                            return Err(unexpected(&t, SET, "string"));
                        };
                        pairs.push((name, unquote(raw)));
                        t = next()?;
                    }
                    Tok::Str(raw_name) => {
                        let name = unquote(&raw_name);
                        t = next()?;
                        if t.tok == Tok::Eql {
                            t = next()?;
                            let Tok::Str(raw) = &t.tok else {
                                return Err(unexpected(&t, SET, "string"));
                            };
                            pairs.push((name, unquote(raw)));
                            t = next()?;
                        } else {
                            pairs.push((METRIC_NAME.to_string(), name));
                        }
                    }
                    _ => return Err(unexpected(&t, SET, "identifier or \"}\"")),
                }
                match t.tok {
                    Tok::Comma => {
                        t = next()?;
                        if t.tok == Tok::RightBrace {
                            t = next()?;
                            break;
                        }
                    }
                    Tok::RightBrace => {
                        t = next()?;
                        break;
                    }
                    _ => return Err(unexpected(&t, SET, "\",\" or \"}\"")),
                }
            }
        }
    }
    if t.tok != Tok::Eof {
        return Err(unexpected(&t, "", ""));
    }
    if let Some(name) = metric_name {
        pairs.retain(|(n, _)| n != METRIC_NAME);
        pairs.push((METRIC_NAME.to_string(), name));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> String {
        parse(input)
            .unwrap_or_else(|e| panic!("{input}: {e}"))
            .to_string()
    }

    fn err(input: &str) -> String {
        match parse(input) {
            Ok(set) => panic!("{input} parsed as {set}"),
            Err(e) => e,
        }
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(
            ok(r#"{job="app", env="prod"}"#),
            r#"{env="prod", job="app"}"#
        );
        assert_eq!(ok(r#"{ a = "1" , }"#), r#"{a="1"}"#);
        assert_eq!(ok(r#"{a='x', b=`y\n`}"#), r#"{a="x", b="y\\n"}"#);
        assert_eq!(ok(r#"{a="q\"\u00e9\x41\101"}"#), r#"{a="q\"éAA"}"#);
        assert_eq!(ok(r#"{empty="", a="1"}"#), r#"{a="1"}"#);
        assert_eq!(ok("{}"), "{}");
        assert_eq!(ok(""), "{}");
        assert_eq!(ok(r#"up{a="1"}"#), r#"{__name__="up", a="1"}"#);
        assert_eq!(ok(r#"{"a.b"="1"}"#), r#"{"a.b"="1"}"#);
        // Duplicates are kept for validation to reject.
        assert_eq!(parse(r#"{a="1", a="2"}"#).map(|s| s.len()), Ok(2));
    }

    #[test]
    fn errors_read_like_prometheus() {
        assert_eq!(
            err(r#"{app-name="x"}"#),
            "1:5: parse error: unexpected character inside braces: '-'"
        );
        assert_eq!(
            err(r#"{codexlb.record_type="x"}"#),
            "1:9: parse error: unexpected character inside braces: '.'"
        );
        assert_eq!(
            err(r#"{a="b" foo="c"}"#),
            r#"1:8: parse error: unexpected identifier "foo" in label set, expected "," or "}""#
        );
        assert_eq!(
            err(r#"{a="b""#),
            "1:7: parse error: unexpected end of input inside braces"
        );
        assert_eq!(
            err(r#"{a=b}"#),
            r#"1:4: parse error: unexpected identifier "b" in label set, expected string"#
        );
        assert_eq!(
            err(r#"{a}"#),
            r#"1:3: parse error: unexpected "}" in label set, expected "=""#
        );
        assert_eq!(
            err(r#"{a!="b"}"#),
            r#"1:3: parse error: unexpected <op:!=> in label set, expected "=""#
        );
        assert_eq!(
            err(r#"{a="b}"#),
            "1:4: parse error: unterminated quoted string"
        );
        assert_eq!(
            err(r#"{a="\q"}"#),
            "1:4: parse error: unknown escape sequence U+0071 'q'"
        );
        assert_eq!(
            err(r#"{,}"#),
            r#"1:2: parse error: unexpected "," in label set, expected identifier or "}""#
        );
        assert_eq!(
            err(r#"{a="b"} x"#),
            r#"1:9: parse error: unexpected identifier "x""#
        );
    }

    #[test]
    fn set_and_format() {
        let mut set = parse(r#"{z="1", a="2"}"#).unwrap_or_default();
        set.set("service_name", "svc");
        assert_eq!(set.to_string(), r#"{a="2", service_name="svc", z="1"}"#);
        assert_eq!(set.get("z"), Some("1"));
        assert_eq!(
            format_map([("b", "x\"y"), ("a", "1")]),
            r#"{a="1", b="x\"y"}"#
        );
    }
}
