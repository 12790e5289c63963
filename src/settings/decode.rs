//! Strict decoding of settings values: keyword enums refused with the allowed list, serde
//! errors named by their key path, nested objects and lists read only from their own
//! shape, and unknown keys of nested Kubernetes objects found.

use super::errors::SettingsError;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{DeserializeOwned, Error, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::fmt;
use std::marker::PhantomData;

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

/// A settings object read only from a mapping. Serde's derive also reads a struct from a
/// list, field by field in order (`activation: ["example.com/agents", "/opt"]` would set
/// `annotation` and `containerPath`), and an `Option` from `null` as absent (YAML
/// `activation:` with nothing after it would silently turn activation off).
pub trait Mapping: Sized {
    /// What to write instead, for the message: e.g. "write `activation: {}` to …".
    const WRITE: &'static str;
    /// Reads the fields from a mapping, as serde's derive does.
    fn from_fields<'de, D: Deserializer<'de>>(fields: D) -> Result<Self, D::Error>;
}

/// Implements `Deserialize` for a settings struct derived with `#[serde(remote = "Self")]`
/// so that only a mapping is read ([`Mapping`]), and `Serialize` as derived.
macro_rules! mapping_only {
    ($type:ty, $write:expr) => {
        impl $crate::settings::decode::Mapping for $type {
            const WRITE: &'static str = $write;
            fn from_fields<'de, D: serde::Deserializer<'de>>(fields: D) -> Result<Self, D::Error> {
                // The inherent function `remote = "Self"` generates: the derived reader.
                <$type>::deserialize(fields)
            }
        }
        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::settings::decode::mapping(d)
            }
        }
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                <$type>::serialize(self, s)
            }
        }
    };
}
pub(crate) use mapping_only;

/// Nested Kubernetes objects (`initContainer.resources`, `valueFrom`), kept as JSON.
impl Mapping for Value {
    const WRITE: &'static str = "write the object's fields, or remove the key";
    fn from_fields<'de, D: Deserializer<'de>>(fields: D) -> Result<Self, D::Error> {
        Value::deserialize(fields)
    }
}

/// Reads a `T` from a mapping only; `null`, a list or a scalar is refused with `T::WRITE`.
pub fn mapping<'de, D: Deserializer<'de>, T: Mapping>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(MappingOnly(PhantomData))
}

/// Serde for an optional mapping field (`deserialize_with`, with `default`): absent is
/// `None`, `null` is an error, as in [`mapping`].
pub fn present_mapping<'de, D: Deserializer<'de>, T: Mapping>(d: D) -> Result<Option<T>, D::Error> {
    mapping(d).map(Some)
}

/// Serde for a required list field: `null` or a mapping is refused.
pub fn list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    d.deserialize_any(ListOnly(PhantomData, ""))
}

/// Serde for an optional list field (`deserialize_with`, with `default`): absent is
/// `None`, `null` is an error that says how to write an empty list.
pub fn present_list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    d.deserialize_any(ListOnly(
        PhantomData,
        ": write `[]` for an empty list, or remove the key for the default",
    ))
    .map(Some)
}

/// Visits a mapping only (see [`Mapping`]).
struct MappingOnly<T>(PhantomData<T>);

impl<'de, T: Mapping> Visitor<'de> for MappingOnly<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a mapping: {}", T::WRITE)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_fields(MapAccessDeserializer::new(map))
    }

    fn visit_unit<E: Error>(self) -> Result<T, E> {
        Err(E::invalid_type(Unexpected::Other("null"), &self))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<T, A::Error> {
        Err(A::Error::invalid_type(Unexpected::Other("list"), &self))
    }
}

/// Visits a list only; the text completes the message for `null` or another shape.
struct ListOnly<T>(PhantomData<T>, &'static str);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ListOnly<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a list{}", self.1)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<T>, A::Error> {
        Vec::deserialize(SeqAccessDeserializer::new(seq))
    }

    fn visit_unit<E: Error>(self) -> Result<Vec<T>, E> {
        Err(E::invalid_type(Unexpected::Other("null"), &self))
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

