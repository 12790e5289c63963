//! The policy's JSON writer for a `serde_json::Value`: byte for byte what
//! `serde_json::to_writer` writes (compact), faster over the plain strings a pod is made of.
//!
//! serde_json escapes a string byte by byte through a 256-entry table; the strings a pod
//! holds (names, images, env values, scripts) seldom have a byte to escape, and writing
//! them was most of serde_json's writing cost in `validate` (issue 24, fourth pass). Here
//! a string is scanned eight bytes a step with `u64` arithmetic (native on wasm32 too),
//! and each plain run copied at once. The escapes are serde_json 1.0's: `\"`, `\\`, `\b`,
//! `\f`, `\n`, `\r`, `\t`, every other control character as `\u00XX` in lowercase hex;
//! `/`, DEL and non-ASCII as they are. Numbers are serde_json's own formatting; objects
//! in their `Map`'s order. `tests/write.rs` compares the bytes with serde_json's.
//!
//! The policy's own additions (activation's env entries, the volume, the mounts, the copy
//! container) go into the pod as the JSON text it wrote for them, kept by [`OwnJson`]: see
//! there. [`value_keeping`] writes such a string as the JSON it holds.
//!
//! The writer recurses once per level of nesting: a `Value` read by serde_json is at most
//! 128 levels deep, and the policy adds a few, far from the stack's limit.

use crate::json::string_stops;
use serde_json::Value;

/// Eight copies of a byte in a word.
const EVERY_BYTE: u64 = 0x0101_0101_0101_0101;

/// Appends `value` as compact JSON, as `serde_json::to_writer` would.
pub fn value(out: &mut Vec<u8>, value: &Value) -> Result<(), serde_json::Error> {
    value_keeping(out, value, &OwnJson::NONE)
}

/// [`value`], but a string that `own` kept as the JSON it holds.
pub fn value_keeping(
    out: &mut Vec<u8>,
    value: &Value,
    own: &OwnJson,
) -> Result<(), serde_json::Error> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // serde_json's own formatting (itoa, and its float writer): a pod's numbers are
        // few, and floats are not ours to write by hand.
        Value::Number(number) => serde_json::to_writer(&mut *out, number)?,
        Value::String(text) => own.string(out, text),
        Value::Array(list) => {
            out.push(b'[');
            for (i, item) in list.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                element(out, item, own)?;
            }
            out.push(b']');
        }
        Value::Object(object) => {
            out.push(b'{');
            for (i, (key, item)) in object.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, key);
                out.push(b':');
                element(out, item, own)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// Appends a list's or an object's `item`: a string, most of them, without a call to [`value`].
#[inline(always)]
fn element(out: &mut Vec<u8>, item: &Value, own: &OwnJson) -> Result<(), serde_json::Error> {
    match item {
        Value::String(text) => {
            own.string(out, text);
            Ok(())
        }
        _ => value_keeping(out, item, own),
    }
}

/// Appends `text` as a JSON string, quoted and escaped as serde_json escapes it.
pub fn string(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    // Shorter than a word, as most keys are: checked, and stored, as one word.
    if bytes.len() < 8 {
        let word = padded(bytes);
        if string_stops(word) == 0 {
            return quoted_word(out, word, bytes.len());
        }
    }
    out.push(b'"');
    let mut rest = bytes;
    while let Some((plain, byte, after)) = split_at_escape(rest) {
        out.extend_from_slice(plain);
        escape(out, byte);
        rest = after;
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// Appends the first `len` bytes of `word` (fewer than eight, plain), quoted. Most keys
/// are that short: stored as the whole word, the padding then cut off, they cost no
/// copy of a length known only at run time (a call; `memory.copy` in wasm): 1% of
/// `validate` in wasm with activation on (virtual-device and init-container).
fn quoted_word(out: &mut Vec<u8>, word: u64, len: usize) {
    out.push(b'"');
    let start = out.len();
    out.extend_from_slice(&word.to_le_bytes());
    out.truncate(start + len);
    out.push(b'"');
}

/// `bytes` cut at the first byte JSON must escape: the plain run before it, the byte, and
/// what follows; `None` when every byte is plain.
fn split_at_escape(bytes: &[u8]) -> Option<(&[u8], u8, &[u8])> {
    let (words, _) = bytes.as_chunks::<8>();
    let in_words = words.iter().enumerate().find_map(|(n, word)| {
        let marks = string_stops(u64::from_le_bytes(*word));
        (marks != 0).then(|| n * 8 + first_marked(marks))
    });
    let at = match in_words {
        Some(at) => at,
        None => first_marked_in_tail(bytes)?,
    };
    let (plain, rest) = bytes.split_at_checked(at)?;
    let (&byte, after) = rest.split_first()?;
    Some((plain, byte, after))
}

/// The place of the first escaped byte in `bytes`, whose whole words are plain: it can
/// only be among the last, fewer than eight, bytes.
fn first_marked_in_tail(bytes: &[u8]) -> Option<usize> {
    let (start, word) = match bytes.last_chunk::<8>() {
        // The last eight bytes in one load: those before the tail are plain, so unmarked,
        // and lend no borrow to a byte after them.
        Some(last) => (bytes.len() - 8, u64::from_le_bytes(*last)),
        None => (0, padded(bytes)),
    };
    let marks = string_stops(word);
    (marks != 0).then(|| start + first_marked(marks))
}

/// `short` (fewer than eight bytes) laid out as a word the way `from_le_bytes` lays eight
/// out, padded with spaces, which are plain.
fn padded(short: &[u8]) -> u64 {
    short
        .iter()
        .rev()
        .fold(EVERY_BYTE * u64::from(b' '), |word, &byte| {
            word << 8 | u64::from(byte)
        })
}

/// The index of the first byte marked in `marks` (the lowest: the word is little-endian).
fn first_marked(marks: u64) -> usize {
    (marks.trailing_zeros() / 8) as usize
}

/// Appends the escape of `byte`, one of those [`string_stops`] flags.
fn escape(out: &mut Vec<u8>, byte: u8) {
    let short = match byte {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        _ => {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex(byte >> 4), hex(byte & 0xf)]);
            return;
        }
    };
    out.extend_from_slice(&[b'\\', short]);
}

/// The lowercase hex digit of `digit` (below 16).
fn hex(digit: u8) -> u8 {
    if digit < 10 {
        b'0' + digit
    } else {
        b'a' + digit - 10
    }
}

/// A value the policy adds to many pods (a mount, a volume, the copy container, an env
/// entry's source), with its JSON written once, when the settings are read:
/// [`OwnJson::copy_of`] puts it into a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// The value, for the tests that compare with it.
    value: Value,
    /// Its compact JSON; `None` if serde_json could not write it, which it does not.
    json: Option<String>,
}

impl Prepared {
    /// `value`, its JSON written now.
    pub fn new(value: Value) -> Self {
        let mut json = Vec::new();
        let json = self::value(&mut json, &value)
            .ok()
            .and_then(|()| String::from_utf8(json).ok());
        Prepared { value, json }
    }

    /// The value.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// Its compact JSON (`None`: it could not be written, which does not happen).
    pub fn json(&self) -> Option<&str> {
        self.json.as_deref()
    }
}

/// How many strings a usual pod keeps: room reserved at the first.
const USUAL_KEPT: usize = 32;

/// The strings of a pod that hold JSON the policy wrote: each one's address and length.
///
/// An env entry, a mount, a volume or the copy container built as a `Value` costs a map,
/// its strings and their release, then an escaping pass when the pod is written: most of
/// activation's cost (issue 24). [`OwnJson::keep`] puts such an entry's compact JSON into
/// the pod as a `Value::String` and records where that string lives; [`value_keeping`]
/// writes such a string as the JSON it holds.
///
/// A string is taken for JSON only when its heap address and length are the ones
/// recorded: a string read from the request is another allocation, so a request cannot
/// forge one, whatever its bytes. A kept string goes into the pod as it is kept, or the
/// call ends in a conflict and the pod is not written; in the pod it stays until the
/// write (moving it keeps its allocation), since the policy only ever adds to a pod. So no
/// kept string is freed before the write, and its address cannot come to another.
#[derive(Debug, Default)]
pub struct OwnJson {
    /// Address and length of each string [`OwnJson::keep`] handed out, by address: a pod
    /// of 200 containers has 200 mounts kept, and every string written is looked up.
    kept: Vec<(usize, usize)>,
    /// Bit `n` set when a kept string's length is `n` modulo 64: most strings of a pod
    /// (names, values) have a length no kept JSON has, and are told apart by this one test
    /// instead of a binary search of `kept` (with activation, a search of 30 entries for
    /// each string written).
    lengths: u64,
}

impl OwnJson {
    /// None kept: what [`value`] writes with.
    pub const NONE: OwnJson = OwnJson {
        kept: Vec::new(),
        lengths: 0,
    };

    /// `json` (a JSON value the policy wrote, never empty) as the pod's `Value`, recorded
    /// so that [`value_keeping`] writes it as it is.
    pub fn keep(&mut self, json: String) -> Value {
        if self.kept.is_empty() {
            // Room for a usual pod's at once: activation keeps about eight entries per
            // container, and the list would otherwise grow from empty on every call.
            self.kept.reserve(USUAL_KEPT);
        }
        let at = (json.as_ptr().addr(), json.len());
        // Kept in order as they come (a sort would bring its own code into the module).
        let place = self.kept.partition_point(|known| *known < at);
        self.kept.insert(place, at);
        self.lengths |= length_bit(json.len());
        Value::String(json)
    }

    /// A copy of `prepared` for a pod: its JSON kept, one allocation and one copy of its
    /// bytes, where the value would be a map, its strings and their escaping.
    pub fn copy_of(&mut self, prepared: &Prepared) -> Value {
        match &prepared.json {
            Some(json) => self.keep(json.clone()),
            None => prepared.value.clone(),
        }
    }

    /// Whether `text` is one of the strings [`OwnJson::keep`] handed out.
    fn holds(&self, text: &str) -> bool {
        if self.lengths & length_bit(text.len()) == 0 {
            return false;
        }
        let at = (text.as_ptr().addr(), text.len());
        self.kept.binary_search(&at).is_ok()
    }

    /// Writes `text`: as the JSON it holds when kept, else as a JSON string.
    #[inline(always)]
    fn string(&self, out: &mut Vec<u8>, text: &str) {
        if self.holds(text) {
            out.extend_from_slice(text.as_bytes());
        } else {
            string(out, text);
        }
    }

    /// Replaces each kept string in `value` by the value its JSON reads as: the pod as a
    /// request would give it, for code (tests) that reads the pod's `Value` itself. A
    /// string that did not read (the policy writes none) would stay, for a test to see.
    pub fn unfold(&self, value: &mut Value) {
        match value {
            Value::String(json) if self.holds(json) => {
                if let Ok(read) = crate::json::from_str(json) {
                    *value = read;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.unfold(item)),
            Value::Object(map) => map.values_mut().for_each(|item| self.unfold(item)),
            _ => {}
        }
    }
}

/// The bit of [`OwnJson::lengths`] for a string of `len` bytes.
fn length_bit(len: usize) -> u64 {
    1 << (len % 64)
}

#[cfg(test)]
mod tests;
