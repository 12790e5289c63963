//! Strict reading of settings values from their JSON: keyword enums refused with the
//! allowed list, nested objects and lists read only from their own shape, unknown keys
//! refused, every error named by its key path.
//!
//! A plain walk over the `Value`, not serde's derive: settings are read once per settings
//! text, and the derive's generic readers (with `serde_path_to_error` for the key path)
//! were about 90 KB of the .wasm (BENCHMARKS.md, issue 24). The messages are serde_json's
//! own, made by its error constructors, so they read as they did.
//!
//! The readers and error builders are `#[inline(never)]`: each is called from many keys'
//! arms, and inlined into every one of them they were about 1 KB more of the .wasm. Settings
//! are read once per settings text, so the calls cost nothing that matters.

use super::errors::SettingsError;
use serde::de::{Error, Unexpected};
use serde_json::{Map, Value};

/// An enum written in the settings by its Kubernetes-style spelling.
pub trait Keyword: Copy + 'static {
    /// Every value, in documentation order.
    const ALL: &'static [Self];
    /// The spelling.
    fn as_str(self) -> &'static str;
}

/// What to write instead of `null` in an optional list (`present_list` before).
pub const OPTIONAL_LIST: &str = ": write `[]` for an empty list, or remove the key for the default";

/// What to write instead of a nested Kubernetes object of the wrong shape.
const OBJECT: &str = "write the object's fields, or remove the key";

/// The key path of `key` inside the object at `path` (`""`: the settings themselves).
pub fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A [`SettingsError::Malformed`] at `path`, with serde_json's message; the root is `settings`.
#[inline(never)]
fn malformed(path: &str, error: serde_json::Error) -> SettingsError {
    SettingsError::Malformed {
        key: if path.is_empty() { "settings" } else { path }.to_string(),
        message: error.to_string(),
    }
}

/// Serde's "invalid type" error for `value` at `path`. `shape` is for a mapping or list
/// check, which calls a list `list`; a string or boolean read calls it `sequence`.
#[inline(never)]
fn wrong_type(value: &Value, shape: bool, expected: &str, path: &str) -> SettingsError {
    let found = match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Unexpected::Unsigned(u),
            (None, Some(i)) => Unexpected::Signed(i),
            (None, None) => Unexpected::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) if shape => Unexpected::Other("list"),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    };
    malformed(path, serde_json::Error::invalid_type(found, &expected))
}

/// The error for a required key absent from the object at `path`.
#[inline(never)]
pub fn missing(path: &str, key: &'static str) -> SettingsError {
    malformed(path, serde_json::Error::missing_field(key))
}

/// Reads an optional string: `null` is absent.
#[inline(never)]
pub fn text(value: Value, path: &str) -> Result<Option<String>, SettingsError> {
    match value {
        Value::Null => Ok(None),
        other => required_text(other, path).map(Some),
    }
}

/// Reads a string; `null` too is refused.
#[inline(never)]
pub fn required_text(value: Value, path: &str) -> Result<String, SettingsError> {
    match value {
        Value::String(text) => Ok(text),
        other => Err(wrong_type(&other, false, "a string", path)),
    }
}

/// Reads an optional boolean: `null` is absent.
#[inline(never)]
pub fn flag(value: Value, path: &str) -> Result<Option<bool>, SettingsError> {
    match value {
        Value::Null => Ok(None),
        Value::Bool(flag) => Ok(Some(flag)),
        other => Err(wrong_type(&other, false, "a boolean", path)),
    }
}

/// Reads an optional keyword: `null` is absent, an unknown spelling is refused with the
/// list of allowed values, generated from `ALL`.
pub fn keyword<K: Keyword>(value: Value, path: &str) -> Result<Option<K>, SettingsError> {
    // The generic part only lists the spellings: one body reads every kind of keyword.
    let spellings: Vec<&str> = K::ALL.iter().map(|k| k.as_str()).collect();
    Ok(spelled(value, path, &spellings)?.and_then(|i| K::ALL.get(i).copied()))
}

/// The index in `spellings` of the optional string `value`, or the unknown-value error.
#[inline(never)]
fn spelled(value: Value, path: &str, spellings: &[&str]) -> Result<Option<usize>, SettingsError> {
    let Some(text) = text(value, path)? else {
        return Ok(None);
    };
    match spellings.iter().position(|s| *s == text) {
        Some(index) => Ok(Some(index)),
        None => Err(malformed(
            path,
            serde_json::Error::custom(format!(
                "unknown value {text:?}, expected one of: {}",
                spellings.join(", ")
            )),
        )),
    }
}

/// Reads a mapping only. Serde's derive would also read a struct from a list, field by
/// field in order (`activation: ["example.com/agents", "/opt"]` would set `annotation`
/// and `containerPath`), and an optional one from `null` as absent (YAML `activation:`
/// with nothing after it would silently turn activation off); both are refused, with
/// `write` saying what to write instead.
#[inline(never)]
pub fn mapping(value: Value, path: &str, write: &str) -> Result<Map<String, Value>, SettingsError> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(wrong_type(
            &other,
            true,
            &format!("a mapping: {write}"),
            path,
        )),
    }
}

/// Reads a nested Kubernetes object (`initContainer.resources`, `valueFrom`), kept as
/// JSON: a mapping only.
#[inline(never)]
pub fn object(value: Value, path: &str) -> Result<Value, SettingsError> {
    mapping(value, path, OBJECT).map(Value::Object)
}

/// Reads a list only; `hint` completes the message for `null` or another shape.
#[inline(never)]
pub fn list(value: Value, path: &str, hint: &str) -> Result<Vec<Value>, SettingsError> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(wrong_type(&other, true, &format!("a list{hint}"), path)),
    }
}

/// Reads a list of strings, each named by its index in errors.
#[inline(never)]
pub fn texts(value: Value, path: &str, hint: &str) -> Result<Vec<String>, SettingsError> {
    // A loop, not `collect` into a `Result`: that `collect` was an iterator adapter's code
    // of its own in the .wasm.
    let list = list(value, path, hint)?;
    let mut texts = Vec::with_capacity(list.len());
    for (i, item) in list.into_iter().enumerate() {
        texts.push(required_text(item, &format!("{path}[{i}]"))?);
    }
    Ok(texts)
}

/// Reads a mapping's entries (see [`mapping`] for `write`, [`fields`] for `field`).
pub fn mapping_fields(
    value: Value,
    path: &str,
    write: &str,
    keys: &'static [&'static str],
    field: &mut dyn FnMut(&str, Value, &str) -> Result<bool, SettingsError>,
) -> Result<(), SettingsError> {
    fields(mapping(value, path, write)?, path, keys, field)
}

/// Reads an object's entries in order: each known key goes to `field` with its value and
/// key path; the first unknown key is refused with the list of `keys`, as serde's derive
/// refused it. `field` answers whether it knew the key.
pub fn fields(
    map: Map<String, Value>,
    path: &str,
    keys: &'static [&'static str],
    field: &mut dyn FnMut(&str, Value, &str) -> Result<bool, SettingsError>,
) -> Result<(), SettingsError> {
    for (key, value) in map {
        let at = child(path, &key);
        if !field(&key, value, &at)? {
            return Err(malformed(&at, serde_json::Error::unknown_field(&key, keys)));
        }
    }
    Ok(())
}
