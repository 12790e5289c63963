//! The policy's JSON reader: a `serde::Deserializer` over a payload's text, and the
//! skipper that finds where a raw part ([`Raw`]) ends.
//!
//! Why our own (issue 24): a pod request is mostly text the policy keeps raw
//! (`managedFields`' many short keys above all), and serde_json's skipping of it, token
//! by token and string by string, was 37% of `validate`. [`Reader::skip_value`] checks a
//! raw part in one loop, without recursion (a bit per open list or object), and scans
//! plain string bytes eight at a time. Every parse of the module at admission and at
//! settings time goes through this reader, so serde_json's `Deserializer` is not in it.
//!
//! What it accepts is what serde_json 1.0 accepts (RFC 8259): whitespace is space, tab,
//! `\n` and `\r`; strings hold no control character (below U+0020) raw, and only the
//! escapes `\" \\ \/ \b \f \n \r \t \uXXXX`; numbers without a leading zero, `+`, or a
//! bare `.` or `e`; nothing after the value but whitespace. Two differences, both
//! documented in the tests:
//! - Nesting: like serde_json building a value, at most 127 lists and objects inside each
//!   other, counted across raw parts too (serde_json skips a raw part of any depth).
//! - Floats: exact where their digits fit 53 bits and their exponent is within 15 (every
//!   float a pod usually has), else a few units in the last place off at most
//!   ([`float_of`]); serde_json's default parser is not correctly rounded either, and the
//!   two may differ there. A number beyond `f64`'s range is refused, as serde_json
//!   refuses it.
//!
//! Strings are read as serde_json reads them for a `String`: `\u` surrogates must come in
//! pairs. A raw part is checked as serde_json skips a value: a lone surrogate escape is
//! kept there, and refused only if the policy comes to read it.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};
use std::fmt;

/// The name under which [`Raw`] asks [`Reader`] for a value's text (not a Rust name, so
/// no other type asks for it).
const RAW: &str = "$agent-mount::json::Raw";

/// How many lists and objects may be open, plus one: serde_json's recursion limit, so
/// that the reader accepts the depths it accepts (127), and the wasm stack stays small.
const DEPTH: u8 = 128;

/// Eight bytes, each 0x01.
const ONES: u64 = u64::MAX / 255;
/// Eight bytes, each 0x80: a byte's flag bit in the string scan.
const HIGH_BITS: u64 = ONES << 7;

/// A value's JSON text as the payload spells it, checked by [`Reader`] and kept unparsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Raw<'a>(&'a str);

impl<'a> Raw<'a> {
    /// The text, without the whitespace around it.
    pub fn get(&self) -> &'a str {
        self.0
    }
}

impl<'de> de::Deserialize<'de> for Raw<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Raw<'de>, D::Error> {
        deserializer.deserialize_newtype_struct(RAW, RawVisitor)
    }
}

/// Takes the text [`Reader`] hands to a [`Raw`]; any other deserializer is refused.
struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value's JSON text, which only agent-mount's reader gives")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Raw<'de>, E> {
        Ok(Raw(text))
    }
}

/// What is wrong with a text that is not JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
enum Syntax {
    /// The text ends where a value should start.
    #[error("the text ends where a value should start")]
    EndBeforeValue,
    /// The text ends inside a string.
    #[error("the text ends inside a string")]
    EndInString,
    /// The text ends inside a list.
    #[error("the text ends inside a list, before its `]`")]
    EndInList,
    /// The text ends inside an object.
    #[error("the text ends inside an object, before its `}}`")]
    EndInObject,
    /// No value starts here.
    #[error(
        "found {0:?} where a value should start (an object, list, string, number, true, false or null)"
    )]
    ExpectedValue(char),
    /// A misspelt `true`, `false` or `null`.
    #[error("expected `{0}`")]
    ExpectedLiteral(&'static str),
    /// A list's element is followed by something else than `,` or `]`.
    #[error("found {0:?} after a list's element, where `,` or `]` should be")]
    ExpectedListCommaOrEnd(char),
    /// An object's entry is followed by something else than `,` or `}`.
    #[error("found {0:?} after an object's entry, where `,` or `}}` should be")]
    ExpectedObjectCommaOrEnd(char),
    /// An object's key is not a string.
    #[error("found {0:?} where an object's key should start: keys are strings")]
    KeyMustBeAString(char),
    /// A key is not followed by `:`.
    #[error("found {0:?} after an object's key, where `:` should be")]
    ExpectedColon(char),
    /// A raw control character in a string.
    #[error("control character U+{0:04X} in a string: it must be escaped (\\n, \\t, \\u0001)")]
    ControlCharacter(u8),
    /// An escape JSON does not have.
    #[error(
        "invalid escape `\\{0}` in a string: allowed are \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX"
    )]
    InvalidEscape(char),
    /// `\u` without four hex digits.
    #[error("`\\u` in a string must be followed by four hex digits")]
    InvalidHexEscape,
    /// A `\u` surrogate escape without its pair.
    #[error(
        "lone surrogate `\\u{0:04X}` in a string: \\uD800-\\uDBFF must be followed by \\uDC00-\\uDFFF"
    )]
    LoneSurrogate(u16),
    /// A number JSON does not have (`01`, `1.`, `-`, `1e`).
    #[error(
        "invalid number: a JSON number has no leading zero and has digits after `-`, `.` and the exponent's `e`"
    )]
    InvalidNumber,
    /// A number beyond `f64`'s range.
    #[error("number out of range: beyond a 64-bit float's")]
    NumberOutOfRange,
    /// Lists and objects nested deeper than serde_json reads.
    #[error("lists and objects nested deeper than 127")]
    TooDeep,
    /// Something after the value.
    #[error("found {0:?} after the value: only whitespace may follow it")]
    TrailingText(char),
}

/// A text that is not JSON, or JSON that its reader (a visitor) refuses. Boxed: a
/// `Result<(), Error>` is then one pointer, returned in a register; unboxed, every
/// fallible step of the reader returned it through memory (wasm has no larger returns).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error(Box<Problem>);

/// What an [`Error`] says.
#[derive(Debug, thiserror::Error)]
enum Problem {
    /// Not JSON; `at` is the byte offset in the text.
    #[error("{syntax} at byte {at}")]
    Syntax {
        /// What is wrong.
        syntax: Syntax,
        /// Where, as a byte offset in the text.
        at: usize,
    },
    /// JSON, but not what was expected (a visitor's message: a wrong type, a missing field).
    #[error("{message}{}", at.map(|at| format!(" at byte {at}")).unwrap_or_default())]
    Data {
        /// The visitor's message.
        message: String,
        /// Where the reader was when the visitor refused, if known.
        at: Option<usize>,
    },
}

impl Error {
    /// `syntax` at byte `at`.
    #[cold]
    fn syntax(syntax: Syntax, at: usize) -> Error {
        Error(Box::new(Problem::Syntax { syntax, at }))
    }

    /// The error with a place, if it has none yet: `here`.
    fn located(mut self, here: usize) -> Error {
        if let Problem::Data { at: at @ None, .. } = &mut *self.0 {
            *at = Some(here);
        }
        self
    }
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Error(Box::new(Problem::Data {
            message: message.to_string(),
            at: None,
        }))
    }

    // serde_json's wording (its error's code is in the module already): serde's own
    // formats a float with `core::fmt`, whose float code was 16 KB of the module.
    fn invalid_type(unexpected: Unexpected, expected: &dyn de::Expected) -> Self {
        Error::custom(serde_json::Error::invalid_type(unexpected, expected))
    }

    fn invalid_value(unexpected: Unexpected, expected: &dyn de::Expected) -> Self {
        Error::custom(serde_json::Error::invalid_value(unexpected, expected))
    }
}

/// `bytes` as text, checked as UTF-8. A payload is nearly always ASCII: that is checked
/// eight bytes a step (`u64`, native on wasm, where core's check steps by a 32-bit word and
/// was 2% of a typical `validate`); anything else gets core's full check.
pub fn text(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    let (words, tail) = bytes.as_chunks::<8>();
    let high = words
        .iter()
        .fold(0, |high, word| high | u64::from_le_bytes(*word))
        | tail.iter().fold(0, |high, byte| high | u64::from(*byte));
    if high & HIGH_BITS == 0 {
        // SAFETY: every byte is below 0x80, so the bytes are ASCII, which is UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes)
}

/// Reads `T` from `text`, which must hold one JSON value and nothing else but whitespace.
pub fn from_str<'de, T: de::Deserialize<'de>>(text: &'de str) -> Result<T, Error> {
    from_str_seed(text, std::marker::PhantomData)
}

/// Reads `seed`'s value from `text`, which must hold one JSON value and nothing else but
/// whitespace.
pub fn from_str_seed<'de, S: DeserializeSeed<'de>>(
    text: &'de str,
    seed: S,
) -> Result<S::Value, Error> {
    let mut reader = Reader::new(text);
    let value = seed.deserialize(&mut reader)?;
    reader.end()?;
    Ok(value)
}

/// A number as serde_json gives it to a visitor.
enum Number {
    /// A non-negative integer that fits.
    Unsigned(u64),
    /// A negative integer that fits.
    Signed(i64),
    /// Any other number: a fraction, an exponent, too large an integer, or `-0`.
    Float(f64),
}

/// A string as read: borrowed from the text when it held no escape, else in the scratch.
enum Text<'de> {
    /// Spelt in the text as it reads.
    Borrowed(&'de str),
    /// Unescaped into [`Reader`]'s scratch.
    Scratch,
}

/// A value's first token: a whole scalar, or where a list or an object opens.
enum Token<'de> {
    /// A string.
    Str(Text<'de>),
    /// A number.
    Number(Number),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// `[`, read: the elements follow.
    List,
    /// `{`, read: the entries follow.
    Object,
}

/// Reads JSON from a text, as a `serde::Deserializer` (`&mut Reader`).
pub struct Reader<'de> {
    /// The whole text.
    text: &'de str,
    /// The byte offset of the next byte to read.
    at: usize,
    /// How many lists and objects may still open, plus one.
    depth_left: u8,
    /// A string with escapes, unescaped.
    scratch: String,
}

impl<'de> Reader<'de> {
    /// A reader at the start of `text`.
    pub fn new(text: &'de str) -> Self {
        Reader {
            text,
            at: 0,
            depth_left: DEPTH,
            scratch: String::new(),
        }
    }

    /// The byte offset the reader has reached: just after the last value read.
    pub fn offset(&self) -> usize {
        self.at
    }

    /// Checks that nothing but whitespace is left.
    pub fn end(&mut self) -> Result<(), Error> {
        match self.skip_whitespace() {
            None => Ok(()),
            Some(_) => Err(self.error_found(Syntax::TrailingText)),
        }
    }

    /// Skips one value, checked as serde_json checks a value it skips: strings' escapes,
    /// numbers' grammar, literals, commas and colons. Iterative: one bit per open list
    /// (0) or object (1), within the reader's depth left.
    ///
    /// Shaped for cranelift, which compiles the module as LLVM hands it over: the position
    /// is a local, stored back once (on return, or before an error), not `self.at` in
    /// linear memory at every step; a value's first byte is tested for `"`, `{` and `[`
    /// by plain compares (a `match` became a jump table and an indirect jump per token),
    /// and the rest (numbers, literals, errors) is one rarer path; an empty `{}` or `[]`
    /// (managedFields' leaves) never opens; an object's key and its `:` are read in the
    /// same step as the value after them. Together 3% fewer wasm instructions per typical
    /// `validate` (virtual-device 184.1k -> 178.8k). Inline into [`Reader::raw`], its one
    /// caller in the module: a call less per raw part (55 in a typical request).
    #[inline(always)]
    pub fn skip_value(&mut self) -> Result<(), Error> {
        let bytes = self.text.as_bytes();
        let mut at = self.at;
        // Bit `n` is the `n`th innermost open container; at most 127 are open.
        let mut open_objects: u128 = 0;
        let mut open: u8 = 0;
        // Whether the next value is an object's, after its key.
        let mut key = false;
        loop {
            if key {
                if !next_is(bytes, &mut at, b'"') {
                    self.at = at;
                    return Err(self.unexpected(Syntax::KeyMustBeAString, Syntax::EndInObject));
                }
                at = self.skip_string(bytes, at + 1)?;
                if !next_is(bytes, &mut at, b':') {
                    self.at = at;
                    return Err(self.unexpected(Syntax::ExpectedColon, Syntax::EndInObject));
                }
                at += 1;
            }
            let byte = token_byte(bytes, &mut at);
            if byte == b'"' {
                at = self.skip_string(bytes, at + 1)?;
            } else if byte == b'{' || byte == b'[' {
                if open + 1 >= self.depth_left {
                    self.at = at;
                    return Err(self.error(Syntax::TooDeep));
                }
                at += 1;
                // `}` is `]` + 0x20.
                let object = byte == b'{';
                let close = b']' + u8::from(object) * 0x20;
                if token_byte(bytes, &mut at) == close {
                    at += 1;
                } else {
                    open += 1;
                    open_objects = (open_objects << 1) | u128::from(object);
                    key = object;
                    continue;
                }
            } else {
                self.at = at;
                self.skip_scalar(byte)?;
                at = self.at;
            }
            // After a value: close what it ends, until a `,` asks for the next one.
            loop {
                if open == 0 {
                    self.at = at;
                    return Ok(());
                }
                let object = open_objects & 1 == 1;
                if next_is(bytes, &mut at, b',') {
                    at += 1;
                    key = object;
                    break;
                }
                if !next_is(bytes, &mut at, b']' + u8::from(object) * 0x20) {
                    self.at = at;
                    return Err(if object {
                        self.unexpected(Syntax::ExpectedObjectCommaOrEnd, Syntax::EndInObject)
                    } else {
                        self.unexpected(Syntax::ExpectedListCommaOrEnd, Syntax::EndInList)
                    });
                }
                at += 1;
                open -= 1;
                open_objects >>= 1;
            }
        }
    }

    /// Skips a value that is neither a string, a list nor an object, `byte` its first:
    /// a number or a literal, else the error. The skipper's rarer path, out of its loop.
    fn skip_scalar(&mut self, byte: u8) -> Result<(), Error> {
        match byte {
            b'-' | b'0'..=b'9' => self.scan_number().map(drop),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            _ if self.byte().is_none() => Err(self.error(Syntax::EndBeforeValue)),
            _ => Err(self.error_found(Syntax::ExpectedValue)),
        }
    }

    /// Reads a value's first token (a whole scalar, or a list's or object's opening) and
    /// the offset where it starts. Not generic, and kept out of line: the one copy of the
    /// reading code, which each visitor's `deserialize_any` only dispatches from (inlined
    /// into each, it made the module 18 KB larger).
    #[inline(never)]
    fn token(&mut self) -> Result<(usize, Token<'de>), Error> {
        let byte = self.skip_whitespace();
        let start = self.at;
        let token = match byte {
            None => return Err(self.error(Syntax::EndBeforeValue)),
            Some(b'"') => {
                self.at += 1;
                Token::Str(self.string()?)
            }
            Some(b'-' | b'0'..=b'9') => Token::Number(self.number()?),
            Some(b'[') => {
                self.enter()?;
                Token::List
            }
            Some(b'{') => {
                self.enter()?;
                Token::Object
            }
            Some(b't') => {
                self.literal("true")?;
                Token::Bool(true)
            }
            Some(b'f') => {
                self.literal("false")?;
                Token::Bool(false)
            }
            Some(b'n') => {
                self.literal("null")?;
                Token::Null
            }
            Some(_) => return Err(self.error_found(Syntax::ExpectedValue)),
        };
        Ok((start, token))
    }

    /// Skips a value (after whitespace) and gives its text, for a [`Raw`] and for
    /// `IgnoredAny`. Out of line: the one copy of the skipper, whatever the visitor.
    #[inline(never)]
    fn raw(&mut self) -> Result<&'de str, Error> {
        self.skip_whitespace();
        let start = self.at;
        self.skip_value()?;
        Ok(self.text.get(start..self.at).unwrap_or_default())
    }

    /// Checks that a key starts here (after whitespace): a `"`, not yet read.
    #[inline]
    fn key_start(&mut self) -> Result<(), Error> {
        if self.skip_whitespace() == Some(b'"') {
            return Ok(());
        }
        Err(self.unexpected(Syntax::KeyMustBeAString, Syntax::EndInObject))
    }

    /// Reads the `:` after a key.
    #[inline]
    fn colon(&mut self) -> Result<(), Error> {
        if self.skip_whitespace() == Some(b':') {
            self.at += 1;
            return Ok(());
        }
        Err(self.unexpected(Syntax::ExpectedColon, Syntax::EndInObject))
    }

    /// Skips a string's rest from `at`, after its `"`, and gives where it ends: escapes
    /// checked as serde_json skips them (`\u` needs four hex digits, its surrogates are
    /// not paired). Inline into [`Reader::skip_value`], its one caller: a call per string
    /// cost a third of the scan. The position is the caller's local, stored into the
    /// reader only at an error.
    #[inline(always)]
    fn skip_string(&mut self, bytes: &[u8], mut at: usize) -> Result<usize, Error> {
        loop {
            at = string_stop(bytes, at);
            match bytes.get(at) {
                Some(b'"') => return Ok(at + 1),
                // Checked here, not by `escape`: a call per escape cost as much as the
                // scan (managedFields' keys are full of `\"`).
                Some(b'\\') => match bytes.get(at + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => at += 2,
                    Some(b'u') => {
                        at += 2;
                        if hex_value(bytes.get(at..at + 4)).is_none() {
                            self.at = at;
                            return Err(self.hex_error());
                        }
                        at += 4;
                    }
                    _ => {
                        self.at = at + 1;
                        return Err(self.unexpected(Syntax::InvalidEscape, Syntax::EndInString));
                    }
                },
                Some(&byte) => {
                    self.at = at;
                    return Err(self.error(Syntax::ControlCharacter(byte)));
                }
                None => {
                    self.at = at;
                    return Err(self.error(Syntax::EndInString));
                }
            }
        }
    }

    /// Reads a string's rest, after its `"`: borrowed when it holds no escape. Inline for
    /// the usual string, plain ([`Reader::escaped_string`] reads the others).
    #[inline(always)]
    fn string(&mut self) -> Result<Text<'de>, Error> {
        let start = self.at;
        let stop = string_stop(self.text.as_bytes(), start);
        if self.text.as_bytes().get(stop) != Some(&b'"') {
            return self.escaped_string(start, stop);
        }
        self.at = stop + 1;
        // Between ASCII bytes of a `str`: always on a char boundary.
        Ok(Text::Borrowed(
            self.text.get(start..stop).unwrap_or_default(),
        ))
    }

    /// Reads a string from `start` that holds an escape (or a control character, or no
    /// end) at `stop`, unescaped into the scratch.
    #[inline(never)]
    fn escaped_string(&mut self, mut start: usize, stop: usize) -> Result<Text<'de>, Error> {
        self.scratch.clear();
        self.at = stop;
        loop {
            let plain = self.text.get(start..self.at).unwrap_or_default();
            self.scratch.push_str(plain);
            match self.byte() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(Text::Scratch);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let unescaped = match self.escape()? {
                        Escape::Char(c) => c,
                        Escape::Unicode => self.unicode()?,
                    };
                    self.scratch.push(unescaped);
                    start = self.at;
                }
                Some(byte) => return Err(self.error(Syntax::ControlCharacter(byte))),
                None => return Err(self.error(Syntax::EndInString)),
            }
            self.at = string_stop(self.text.as_bytes(), self.at);
        }
    }

    /// Reads an escape's letter, after its `\`.
    fn escape(&mut self) -> Result<Escape, Error> {
        let escape = match self.byte() {
            Some(b'"') => Escape::Char('"'),
            Some(b'\\') => Escape::Char('\\'),
            Some(b'/') => Escape::Char('/'),
            Some(b'b') => Escape::Char('\u{8}'),
            Some(b'f') => Escape::Char('\u{c}'),
            Some(b'n') => Escape::Char('\n'),
            Some(b'r') => Escape::Char('\r'),
            Some(b't') => Escape::Char('\t'),
            Some(b'u') => Escape::Unicode,
            Some(_) => return Err(self.error_found(Syntax::InvalidEscape)),
            None => return Err(self.error(Syntax::EndInString)),
        };
        self.at += 1;
        Ok(escape)
    }

    /// Reads a `\u` escape's character, after its `u`: a surrogate must be a leading one
    /// followed by a `\u` trailing one, as serde_json reads a string.
    fn unicode(&mut self) -> Result<char, Error> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            let bytes = self.text.as_bytes();
            let second = match bytes.get(self.at..self.at + 2) {
                Some(b"\\u") => {
                    self.at += 2;
                    self.hex4()?
                }
                _ => return Err(self.error(Syntax::LoneSurrogate(first))),
            };
            if !(0xDC00..0xE000).contains(&second) {
                return Err(self.error(Syntax::LoneSurrogate(first)));
            }
            0x1_0000 + ((u32::from(first) - 0xD800) << 10) + (u32::from(second) - 0xDC00)
        } else {
            u32::from(first)
        };
        char::from_u32(code).ok_or_else(|| self.error(Syntax::LoneSurrogate(first)))
    }

    /// Reads four hex digits.
    fn hex4(&mut self) -> Result<u16, Error> {
        let code = hex_value(self.text.as_bytes().get(self.at..self.at + 4))
            .ok_or_else(|| self.hex_error())?;
        self.at += 4;
        Ok(code)
    }

    /// Why no four hex digits follow a `\u` here: the text ends, or one is not hex.
    #[cold]
    #[inline(never)]
    fn hex_error(&mut self) -> Error {
        if self.at + 4 > self.text.len() {
            self.at = self.text.len();
            return self.error(Syntax::EndInString);
        }
        self.error(Syntax::InvalidHexEscape)
    }

    /// Checks a number's grammar and moves past it; returns its magnitude if it is an
    /// integer that fits a `u64` (`None`: read as a float). Inline: a call in the
    /// skipper's loop made it load the reader's fields again at every step.
    #[inline(always)]
    fn scan_number(&mut self) -> Result<Option<u64>, Error> {
        let negative = self.byte() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let mut integer = match self.byte() {
            Some(b'0') => {
                self.at += 1;
                if matches!(self.byte(), Some(b'0'..=b'9')) {
                    return Err(self.error(Syntax::InvalidNumber));
                }
                Some(0)
            }
            Some(b'1'..=b'9') => {
                let mut value = Some(0u64);
                while let Some(digit @ b'0'..=b'9') = self.byte() {
                    let digit = u64::from(digit - b'0');
                    // Not `checked_mul`: on wasm32 it is a 128-bit multiplication call.
                    value = value.filter(|value| {
                        *value < u64::MAX / 10
                            || (*value == u64::MAX / 10 && digit <= u64::MAX % 10)
                    });
                    value = value.map(|value| value * 10 + digit);
                    self.at += 1;
                }
                value
            }
            _ => return Err(self.error(Syntax::InvalidNumber)),
        };
        if self.byte() == Some(b'.') {
            self.at += 1;
            self.digits()?;
            integer = None;
        }
        if let Some(b'e' | b'E') = self.byte() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.byte() {
                self.at += 1;
            }
            self.digits()?;
            integer = None;
        }
        Ok(integer)
    }

    /// Reads one digit or more.
    #[inline(always)]
    fn digits(&mut self) -> Result<(), Error> {
        if !matches!(self.byte(), Some(b'0'..=b'9')) {
            return Err(self.error(Syntax::InvalidNumber));
        }
        while let Some(b'0'..=b'9') = self.byte() {
            self.at += 1;
        }
        Ok(())
    }

    /// Reads a number as serde_json gives it: `u64` when a non-negative integer fits,
    /// `i64` when a negative one does, else `f64`.
    fn number(&mut self) -> Result<Number, Error> {
        let start = self.at;
        let negative = self.byte() == Some(b'-');
        let number = match self.scan_number()? {
            Some(value) if !negative => Number::Unsigned(value),
            // `-0` is a float in serde_json too.
            Some(magnitude) if magnitude > 0 => match 0i64.checked_sub_unsigned(magnitude) {
                Some(value) => Number::Signed(value),
                None => self.float(start)?,
            },
            _ => self.float(start)?,
        };
        Ok(number)
    }

    /// The number from `start` to here, read as a float ([`float_of`]).
    fn float(&self, start: usize) -> Result<Number, Error> {
        let value = float_of(self.text.get(start..self.at).unwrap_or_default());
        if value.is_finite() {
            Ok(Number::Float(value))
        } else {
            Err(Error::syntax(Syntax::NumberOutOfRange, start))
        }
    }

    /// Reads `literal` (`true`, `false` or `null`).
    #[inline(always)]
    fn literal(&mut self, literal: &'static str) -> Result<(), Error> {
        let end = self.at + literal.len();
        if self.text.as_bytes().get(self.at..end) != Some(literal.as_bytes()) {
            return Err(self.error(Syntax::ExpectedLiteral(literal)));
        }
        self.at = end;
        Ok(())
    }

    /// Opens a list or an object: one level deeper, within serde_json's limit.
    fn enter(&mut self) -> Result<(), Error> {
        self.depth_left -= 1;
        if self.depth_left == 0 {
            return Err(self.error(Syntax::TooDeep));
        }
        self.at += 1;
        Ok(())
    }

    /// Closes a list or an object whose visitor is done: `close` must come next.
    fn leave(&mut self, close: u8) -> Result<(), Error> {
        self.depth_left += 1;
        match self.skip_whitespace() {
            Some(byte) if byte == close => {
                self.at += 1;
                Ok(())
            }
            Some(_) if close == b'}' => Err(self.error_found(Syntax::ExpectedObjectCommaOrEnd)),
            Some(_) => Err(self.error_found(Syntax::ExpectedListCommaOrEnd)),
            None if close == b'}' => Err(self.error(Syntax::EndInObject)),
            None => Err(self.error(Syntax::EndInList)),
        }
    }

    /// Whether a list or an object has another entry: after its first, a `,`; `close`
    /// (left for [`Reader::leave`]) ends it.
    #[inline]
    fn more(&mut self, close: u8, first: bool) -> Result<bool, Error> {
        match self.skip_whitespace() {
            Some(byte) if byte == close => Ok(false),
            Some(b',') if !first => {
                self.at += 1;
                Ok(true)
            }
            Some(_) if first => Ok(true),
            _ if close == b'}' => {
                Err(self.unexpected(Syntax::ExpectedObjectCommaOrEnd, Syntax::EndInObject))
            }
            _ => Err(self.unexpected(Syntax::ExpectedListCommaOrEnd, Syntax::EndInList)),
        }
    }

    /// Moves past whitespace; the byte there, if any ([`past_whitespace`]).
    #[inline(always)]
    fn skip_whitespace(&mut self) -> Option<u8> {
        past_whitespace(self.text.as_bytes(), &mut self.at)
    }

    /// The byte here, if any.
    fn byte(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// `syntax` here.
    #[cold]
    fn error(&self, syntax: Syntax) -> Error {
        Error::syntax(syntax, self.at)
    }

    /// What was found here instead of what `syntax` names, or `end` at the text's end.
    #[cold]
    #[inline(never)]
    fn unexpected(&self, syntax: fn(char) -> Syntax, end: Syntax) -> Error {
        if self.byte().is_none() {
            return self.error(end);
        }
        self.error_found(syntax)
    }

    /// The error `syntax` names with the character found here.
    #[cold]
    #[inline(never)]
    fn error_found(&self, syntax: fn(char) -> Syntax) -> Error {
        let found = self
            .text
            .get(self.at..)
            .and_then(|rest| rest.chars().next())
            .unwrap_or_default();
        self.error(syntax(found))
    }
}

/// An escape's meaning, its letter read.
enum Escape {
    /// A one-letter escape.
    Char(char),
    /// `\u`, its four hex digits still to read.
    Unicode,
}

/// Where the whitespace from `at` on ends. Out of line, and not a method: a call that
/// could change the reader made the skipper's loop load its fields again at every step.
#[inline(never)]
fn whitespace_end(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\t' | b'\r') = bytes.get(at) {
        at += 1;
    }
    at
}

/// Moves `at` past whitespace; the byte there, if any. Inline for the usual case, no
/// whitespace (every byte above a space is none).
#[inline(always)]
fn past_whitespace(bytes: &[u8], at: &mut usize) -> Option<u8> {
    match bytes.get(*at) {
        Some(&byte) if byte > b' ' => Some(byte),
        _ => {
            *at = whitespace_end(bytes, *at);
            bytes.get(*at).copied()
        }
    }
}

/// [`past_whitespace`]'s byte, or 0 at the text's end (0 starts no token, and an error
/// tells the two apart): the skipper's form, one compare per test.
#[inline(always)]
fn token_byte(bytes: &[u8], at: &mut usize) -> u8 {
    past_whitespace(bytes, at).unwrap_or_default()
}

/// Whether `expected` comes next, after whitespace (`at` moved past it): compared
/// directly first, for the usual text, which has none (two instructions less than
/// [`token_byte`]'s test for whitespace, then the compare).
#[inline(always)]
fn next_is(bytes: &[u8], at: &mut usize, expected: u8) -> bool {
    bytes.get(*at) == Some(&expected) || token_byte(bytes, at) == expected
}

/// The value of four hex digits, if `digits` are four.
fn hex_value(digits: Option<&[u8]>) -> Option<u16> {
    let digits: &[u8; 4] = digits?.try_into().ok()?;
    digits.iter().try_fold(0u16, |code, digit| {
        let value = u16::try_from(char::from(*digit).to_digit(16)?).ok()?;
        Some(code << 4 | value)
    })
}

/// 10⁰ to 10¹⁵: exact in a `f64`, and each below 2⁵³.
const SMALL_POWERS_OF_TEN: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// 10⁰, 10¹⁶, 10³² … 10³⁰⁴, each the nearest `f64`: with [`SMALL_POWERS_OF_TEN`], every
/// power of ten a `f64` reaches, in 36 numbers instead of 309.
const LARGE_POWERS_OF_TEN: [f64; 20] = [
    1e0, 1e16, 1e32, 1e48, 1e64, 1e80, 1e96, 1e112, 1e128, 1e144, 1e160, 1e176, 1e192, 1e208,
    1e224, 1e240, 1e256, 1e272, 1e288, 1e304,
];

/// The largest mantissa kept: one more digit could overflow a `u64`.
const MAX_MANTISSA: u64 = (u64::MAX - 9) / 10;

/// The float a JSON number spells (its grammar checked already). Exact, that is
/// correctly rounded, when its significant digits fit 53 bits and its exponent is within
/// 15 (Clinger's fast path: one exact operation), which holds for every float a pod
/// usually has; else two or three roundings, a few units in the last place off at most,
/// as serde_json's default parser is too (it is not correctly rounded either). Not
/// `str::parse`: its tables and code were 27 KB of the module (issue 24's size goal).
/// Infinite when the number is beyond `f64`'s range.
fn float_of(digits: &str) -> f64 {
    let mut bytes = digits.bytes().peekable();
    let negative = bytes.next_if_eq(&b'-').is_some();
    // The first 19 significant digits, and the power of ten they are to be scaled by.
    let (mut mantissa, mut exponent) = (0u64, 0i64);
    let mut fraction = false;
    for byte in bytes.by_ref() {
        match byte {
            b'0'..=b'9' if mantissa <= MAX_MANTISSA => {
                mantissa = mantissa * 10 + u64::from(byte - b'0');
                exponent -= i64::from(fraction);
            }
            // A digit past the 19th: dropped, but in the integer part it counts.
            b'0'..=b'9' => exponent += i64::from(!fraction),
            b'.' => fraction = true,
            _ => break,
        }
    }
    let exponent_negative = bytes.next_if(|b| matches!(b, b'+' | b'-')) == Some(b'-');
    // Saturated: far past any float, so still infinite or zero.
    let written = bytes.fold(0i64, |n, digit| {
        (n * 10 + i64::from(digit - b'0')).min(1_000_000)
    });
    exponent += if exponent_negative { -written } else { written };
    let mut value = mantissa as f64;
    if mantissa != 0 {
        // Beyond 10^±319 (10^308 and 19 digits), only infinity or zero.
        let mut left = exponent.unsigned_abs().min(400);
        while left > 0 {
            // At most 10^319 a step, in two exact-or-nearest factors.
            let step = left.min(319);
            left -= step;
            let step = usize::try_from(step).unwrap_or_default();
            let small = SMALL_POWERS_OF_TEN.get(step % 16).copied().unwrap_or(1.0);
            let large = LARGE_POWERS_OF_TEN
                .get(step / 16)
                .copied()
                .unwrap_or(f64::INFINITY);
            if exponent < 0 {
                value = value / small / large;
            } else {
                value = value * small * large;
            }
        }
    }
    if negative { -value } else { value }
}

/// The bytes of `word` that end a string's plain run, for the reader and the writer
/// ([`crate::write`]) alike: `"`, `\` or a control character, each flagged by its high bit,
/// the lowest flag exact (a borrow may flag a byte after a flagged one, never before).
/// Mycroft's test for a byte below a bound, native `u64` arithmetic on wasm32 too; two
/// tests, not three: XOR with 0x02 moves `"` (0x22) to 0x20 and keeps the control
/// characters below it, so one test for "below 0x21" finds both.
#[inline(always)]
pub(crate) fn string_stops(word: u64) -> u64 {
    let quote_or_control = (word ^ (ONES * 0x02)).wrapping_sub(ONES * 0x21);
    let backslash = (word ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES);
    // `!word`: a byte from 0x80 up (UTF-8's multi-byte sequences) is none of them.
    (quote_or_control | backslash) & !word & HIGH_BITS
}

/// The offset of the first `"`, `\` or control character in `bytes` from `from` on, or
/// `bytes`' length: eight bytes a step ([`string_stops`]).
#[inline(always)]
fn string_stop(bytes: &[u8], from: usize) -> usize {
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let Ok(chunk) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let flagged = string_stops(u64::from_le_bytes(chunk));
        if flagged != 0 {
            return at + (flagged.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&byte) = bytes.get(at) {
        if byte == b'"' || byte == b'\\' || byte < 0x20 {
            return at;
        }
        at += 1;
    }
    at
}

impl<'de> Deserializer<'de> for &mut Reader<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let (start, token) = self.token()?;
        let value = match token {
            Token::Str(Text::Borrowed(text)) => visitor.visit_borrowed_str(text),
            Token::Str(Text::Scratch) => visitor.visit_str(&self.scratch),
            Token::Number(Number::Unsigned(value)) => visitor.visit_u64(value),
            Token::Number(Number::Signed(value)) => visitor.visit_i64(value),
            Token::Number(Number::Float(value)) => visitor.visit_f64(value),
            Token::Bool(value) => visitor.visit_bool(value),
            Token::Null => visitor.visit_unit(),
            Token::List => visitor
                .visit_seq(Entries {
                    reader: &mut *self,
                    first: true,
                })
                .and_then(|list| self.leave(b']').map(|()| list)),
            Token::Object => visitor
                .visit_map(Entries {
                    reader: &mut *self,
                    first: true,
                })
                .and_then(|object| self.leave(b'}').map(|()| object)),
        };
        // A visitor's error says where the value it refused starts.
        value.map_err(|e| e.located(start))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.skip_whitespace() == Some(b'n') {
            self.literal("null")?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        // The same constant is usually the same pointer: no comparison of its bytes.
        if !std::ptr::eq(name, RAW) && name != RAW {
            return visitor.visit_newtype_struct(self);
        }
        visitor.visit_borrowed_str(self.raw()?)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // Through `raw`, which holds the skipper: its text is not needed.
        self.raw()?;
        visitor.visit_unit()
    }

    // Enums are read as anything else (a visitor expecting one refuses it): nothing the
    // policy reads with this reader is an enum.
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct enum identifier
    }
}

/// An object's key, read: handed to a key's seed without the dispatch on a value's
/// first byte (a key is always a string).
enum Key<'k, 'de> {
    /// Spelt in the text as it reads.
    Borrowed(&'de str),
    /// Unescaped, in the reader's scratch.
    Copied(&'k str),
}

impl<'de> Deserializer<'de> for Key<'_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Key::Borrowed(text) => visitor.visit_borrowed_str(text),
            Key::Copied(text) => visitor.visit_str(text),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

/// A list's elements or an object's entries, read one by one.
struct Entries<'r, 'de> {
    /// The reader, inside the list or object.
    reader: &'r mut Reader<'de>,
    /// Whether no element or entry was read yet (none is preceded by `,`).
    first: bool,
}

impl<'de> SeqAccess<'de> for Entries<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if !self.reader.more(b']', std::mem::take(&mut self.first))? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.reader).map(Some)
    }
}

impl<'de> MapAccess<'de> for Entries<'_, 'de> {
    type Error = Error;

    /// Inline into each map visitor (`raw::Split`, the request's, `Value`'s): out of line,
    /// a call's prologue and a `Result<Option<K::Value>>` returned through the shadow
    /// stack cost every key read (wasm instructions per typical `validate`: 2% fewer,
    /// virtual-device 178.8k -> 174.7k; the module 1.5 KB larger).
    #[inline(always)]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if !self.reader.more(b'}', std::mem::take(&mut self.first))? {
            return Ok(None);
        }
        self.reader.key_start()?;
        let start = self.reader.at;
        self.reader.at += 1;
        let key = match self.reader.string()? {
            Text::Borrowed(text) => seed.deserialize(Key::Borrowed(text)),
            Text::Scratch => seed.deserialize(Key::Copied(&self.reader.scratch)),
        };
        let key = key.map_err(|e| e.located(start))?;
        self.reader.colon()?;
        Ok(Some(key))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(&mut *self.reader)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `text` answers as core's check: ASCII of every length (the words and the tail),
    /// a byte above 0x7f at every place, valid multibyte text and broken sequences.
    #[test]
    fn text_is_checked_as_core_checks_it() {
        let mut cases: Vec<Vec<u8>> = (0..40).map(|n| vec![b'a'; n]).collect();
        for at in 0..20 {
            for high in [0x80u8, 0xc3, 0xff] {
                let mut case = vec![b'a'; 20];
                case[at] = high;
                cases.push(case);
            }
            let mut valid = vec![b'a'; 20];
            valid.splice(at..at, "é€😀".bytes());
            cases.push(valid);
        }
        for case in cases {
            assert_eq!(text(&case), std::str::from_utf8(&case), "{case:?}");
        }
    }

    /// How many units in the last place apart two finite floats of one sign are.
    fn ulps(a: f64, b: f64) -> u64 {
        a.to_bits().abs_diff(b.to_bits())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Clinger's fast path: digits within 53 bits, exponent within 22, written any way
        /// (a fraction, an exponent, both): exactly `str::parse`'s, correctly rounded.
        #[test]
        fn the_fast_path_is_correctly_rounded(
            mantissa in 0u64..(1 << 53),
            exponent in -15i32..=15,
            point in 0usize..6,
            negative in any::<bool>(),
        ) {
            let digits = mantissa.to_string();
            let point = point.min(digits.len() - 1);
            let (whole, fraction) = digits.split_at(digits.len() - point);
            let shift = i32::try_from(point).unwrap();
            let sign = if negative { "-" } else { "" };
            let text = if point == 0 {
                format!("{sign}{whole}e{exponent}")
            } else {
                format!("{sign}{whole}.{fraction}e{}", exponent + shift)
            };
            prop_assert_eq!(float_of(&text).to_bits(), text.parse::<f64>().unwrap().to_bits(), "{}", text);
        }

        /// Any other float: a few units in the last place from the correctly rounded one
        /// (subnormals, with few digits of their own, aside).
        #[test]
        fn any_float_is_a_few_ulps_off_at_most(
            digits in "[1-9][0-9]{0,24}",
            exponent in -330i32..=310,
        ) {
            let text = format!("{digits}e{exponent}");
            let exact = text.parse::<f64>().unwrap();
            let ours = float_of(&text);
            if exact.is_infinite() || exact < f64::MIN_POSITIVE {
                return Ok(());
            }
            prop_assert!(ulps(ours, exact) <= 16, "{}: {} against {}", text, ours, exact);
        }
    }

    /// The 8-byte scan stops where a byte-by-byte one does: every byte value at every
    /// place of a chunk and of the tail, after plain text of each kind (ASCII, UTF-8).
    #[test]
    fn the_string_scan_stops_at_the_first_quote_backslash_or_control_character() {
        let stops = |byte: u8| byte == b'"' || byte == b'\\' || byte < 0x20;
        for filler in [b'a', b' ', b'!', b'#', b'[', b']', 0x7f, 0x80, 0xe6, 0xff] {
            for byte in 0..=u8::MAX {
                for at in 0..20 {
                    let mut bytes = vec![filler; 21];
                    bytes[at] = byte;
                    for from in [0, 3] {
                        let expected = (from..21).find(|i| stops(bytes[*i])).unwrap_or(21);
                        assert_eq!(
                            string_stop(&bytes, from),
                            expected,
                            "{filler:#x} {byte:#x} at {at}, from {from}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn floats_beyond_range_are_infinite_and_tiny_ones_zero() {
        assert!(float_of("1e309").is_infinite());
        assert!(float_of("-18e307").is_infinite());
        assert_eq!(float_of("1e-400"), 0.0);
        assert_eq!(float_of("0e999999999999"), 0.0);
        assert_eq!(float_of("-0.0").to_bits(), (-0.0f64).to_bits());
        assert_eq!(float_of("1.7976931348623157e308"), f64::MAX);
    }
}
