//! Strict decoding of settings values: keyword enums refused with the allowed list, serde
//! errors named by their key path, and unknown keys of nested Kubernetes objects found.

use super::errors::SettingsError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// An enum written in the settings by its Kubernetes-style spelling.
pub trait Keyword: Copy + 'static {
    /// Every value, in documentation order.
    const ALL: &'static [Self];
    /// The spelling.
    fn as_str(self) -> &'static str;
}

/// The spellings of every value of `K`, joined by ", ", for messages.
fn spellings<K: Keyword>() -> String {
    K::ALL
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Serde for an optional keyword field (`#[serde(with = "keyword")]`): an unknown value
/// is refused with the list of allowed values, generated from `ALL`.
pub mod keyword {
    use super::{Keyword, spellings};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the keyword's spelling.
    pub fn serialize<S: Serializer, K: Keyword>(
        value: &Option<K>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(keyword) => serializer.serialize_str(keyword.as_str()),
            None => serializer.serialize_none(),
        }
    }

    /// Reads a spelling, refusing one that is not in `K::ALL`.
    pub fn deserialize<'de, D: Deserializer<'de>, K: Keyword>(
        deserializer: D,
    ) -> Result<Option<K>, D::Error> {
        let Some(value) = Option::<String>::deserialize(deserializer)? else {
            return Ok(None);
        };
        K::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == value)
            .map(Some)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown value {value:?}, expected one of: {}",
                    spellings::<K>()
                ))
            })
    }
}

/// Deserialises `value` as `T`, naming the key path below `prefix` in errors.
pub fn deserialize_at<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, SettingsError> {
    // Deserialising from a `Value` (not text) keeps "at line 1 column 20" out of the message.
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let key = match (prefix.is_empty(), path == ".") {
            (true, true) => "settings".to_string(),
            (true, false) => path,
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{path}"),
        };
        SettingsError::Malformed {
            key,
            message: err.into_inner().to_string(),
        }
    })
}

/// Reads a nested Kubernetes object as `T` and returns it as `T` writes it (null keys
/// dropped), rejecting keys that `T` does not know.
///
/// k8s-openapi types ignore unknown keys, so a misspelt key would silently vanish:
/// a key of the input that is missing after a typed round trip is unknown.
pub fn known_keys_only<T: DeserializeOwned + Serialize>(
    value: &Value,
    key: &str,
) -> Result<Value, SettingsError> {
    typed_round_trip::<T>(value, key).map(|(_, round_trip)| round_trip)
}

/// Reads `value` as `T` and writes it back, refusing a key of `value` the round trip lost.
fn typed_round_trip<T: DeserializeOwned + Serialize>(
    value: &Value,
    key: &str,
) -> Result<(T, Value), SettingsError> {
    let typed: T = deserialize_at(value.clone(), key)?;
    let round_trip = serde_json::to_value(&typed).map_err(|e| SettingsError::Malformed {
        key: key.to_string(),
        message: e.to_string(),
    })?;
    match first_unknown_key(value, &round_trip, key) {
        Some(key) => Err(SettingsError::UnknownKey { key }),
        None => Ok((typed, round_trip)),
    }
}

/// The path of the first key of `given` (non-null) that `known` lacks, recursing into objects and arrays.
fn first_unknown_key(given: &Value, known: &Value, path: &str) -> Option<String> {
    match (given, known) {
        (Value::Object(given), Value::Object(known)) => given.iter().find_map(|(k, v)| {
            let child = format!("{path}.{k}");
            match known.get(k) {
                None if !v.is_null() => Some(child),
                None => None,
                Some(known_v) => first_unknown_key(v, known_v, &child),
            }
        }),
        (Value::Array(given), Value::Array(known)) => given
            .iter()
            .zip(known)
            .enumerate()
            .find_map(|(i, (g, k))| first_unknown_key(g, k, &format!("{path}[{i}]"))),
        _ => None,
    }
}
