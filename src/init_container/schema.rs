//! The shape of the Kubernetes objects the copy container's settings nest
//! (`resources`, `securityContext`): each object's exact key set and each value's JSON
//! type, checked on the raw JSON, so no k8s-openapi type is compiled into the policy.
//!
//! The key sets are those of k8s-openapi 0.28 `latest`; a test compares them, so a
//! Kubernetes release that adds a key shows as a failing test, not a silent gap.

use crate::settings::errors::SettingsError;
use serde_json::Value;

/// What a key of a nested Kubernetes object holds.
#[derive(Debug)]
pub enum Shape {
    /// `true` or `false`.
    Bool,
    /// A whole number that fits an `int64`.
    Integer,
    /// A string.
    Text,
    /// A list of strings.
    Texts,
    /// A map of resource names to quantities (strings, or numbers as the API server accepts).
    Quantities,
    /// An object with exactly these keys.
    Object(&'static [Key]),
    /// A list of objects with exactly these keys.
    Objects(&'static [Key]),
}

/// One key of an object: its name, what it holds, and whether the object needs it.
#[derive(Debug)]
pub struct Key {
    /// The key as written.
    pub name: &'static str,
    /// What it holds.
    pub shape: Shape,
    /// Whether it must be present and non-null.
    pub required: bool,
}

/// An optional key.
const fn optional(name: &'static str, shape: Shape) -> Key {
    Key {
        name,
        shape,
        required: false,
    }
}

/// A required key.
const fn required(name: &'static str, shape: Shape) -> Key {
    Key {
        name,
        shape,
        required: true,
    }
}

/// `seccompProfile` and `appArmorProfile`.
const PROFILE: &[Key] = &[
    optional("localhostProfile", Shape::Text),
    required("type", Shape::Text),
];

/// `core/v1` SecurityContext.
pub const SECURITY_CONTEXT: &[Key] = &[
    optional("allowPrivilegeEscalation", Shape::Bool),
    optional("appArmorProfile", Shape::Object(PROFILE)),
    optional(
        "capabilities",
        Shape::Object(&[
            optional("add", Shape::Texts),
            optional("drop", Shape::Texts),
        ]),
    ),
    optional("privileged", Shape::Bool),
    optional("procMount", Shape::Text),
    optional("readOnlyRootFilesystem", Shape::Bool),
    optional("runAsGroup", Shape::Integer),
    optional("runAsNonRoot", Shape::Bool),
    optional("runAsUser", Shape::Integer),
    optional(
        "seLinuxOptions",
        Shape::Object(&[
            optional("level", Shape::Text),
            optional("role", Shape::Text),
            optional("type", Shape::Text),
            optional("user", Shape::Text),
        ]),
    ),
    optional("seccompProfile", Shape::Object(PROFILE)),
    optional(
        "windowsOptions",
        Shape::Object(&[
            optional("gmsaCredentialSpec", Shape::Text),
            optional("gmsaCredentialSpecName", Shape::Text),
            optional("hostProcess", Shape::Bool),
            optional("runAsUserName", Shape::Text),
        ]),
    ),
];

/// `core/v1` ResourceRequirements.
pub const RESOURCE_REQUIREMENTS: &[Key] = &[
    optional(
        "claims",
        Shape::Objects(&[
            required("name", Shape::Text),
            optional("request", Shape::Text),
        ]),
    ),
    optional("limits", Shape::Quantities),
    optional("requests", Shape::Quantities),
];

/// Checks that `value`, at key path `path`, is an object with only the `keys` given, each
/// of its shape; `null` is absent, as the API server decodes it.
pub fn check_object(value: &Value, keys: &[Key], path: &str) -> Result<(), SettingsError> {
    let object = value
        .as_object()
        .ok_or_else(|| wrong_type(value, "a map", path))?;
    for (name, value) in object {
        let child = format!("{path}.{name}");
        let key = keys
            .iter()
            .find(|k| k.name == name)
            .ok_or(SettingsError::UnknownKey { key: child.clone() })?;
        if !value.is_null() {
            check(value, &key.shape, &child)?;
        }
    }
    match keys
        .iter()
        .find(|k| k.required && object.get(k.name).is_none_or(Value::is_null))
    {
        Some(key) => Err(SettingsError::Malformed {
            key: path.to_string(),
            message: format!("missing field `{}`", key.name),
        }),
        None => Ok(()),
    }
}

/// Checks one non-null value against its shape.
fn check(value: &Value, shape: &Shape, path: &str) -> Result<(), SettingsError> {
    let fits = match shape {
        Shape::Bool => value.is_boolean(),
        Shape::Integer => value.is_i64(),
        Shape::Text => value.is_string(),
        Shape::Object(keys) => return check_object(value, keys, path),
        Shape::Texts => {
            return check_list(value, path, |item, at| match item {
                Value::String(_) => Ok(()),
                other => Err(wrong_type(other, "a string", at)),
            });
        }
        Shape::Objects(keys) => {
            return check_list(value, path, |item, at| check_object(item, keys, at));
        }
        Shape::Quantities => {
            let object = value
                .as_object()
                .ok_or_else(|| wrong_type(value, "a map of quantities", path))?;
            return match object
                .iter()
                .find(|(_, amount)| !(amount.is_string() || amount.is_number()))
            {
                Some((name, amount)) => Err(wrong_type(
                    amount,
                    "a quantity such as \"64Mi\"",
                    &format!("{path}.{name}"),
                )),
                None => Ok(()),
            };
        }
    };
    if fits {
        Ok(())
    } else {
        let expected = match shape {
            Shape::Bool => "a boolean",
            Shape::Integer => "an integer",
            _ => "a string",
        };
        Err(wrong_type(value, expected, path))
    }
}

/// Checks a list, each item by `item`, with the item's index in its path.
fn check_list(
    value: &Value,
    path: &str,
    item: impl Fn(&Value, &str) -> Result<(), SettingsError>,
) -> Result<(), SettingsError> {
    let list = value
        .as_array()
        .ok_or_else(|| wrong_type(value, "a list", path))?;
    list.iter()
        .enumerate()
        .try_for_each(|(i, v)| item(v, &format!("{path}[{i}]")))
}

/// A value of the wrong JSON type, in serde's words: `invalid type: string "root", expected an integer`.
fn wrong_type(value: &Value, expected: &str, path: &str) -> SettingsError {
    let found = match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) => format!("number `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "a map".to_string(),
    };
    SettingsError::Malformed {
        key: path.to_string(),
        message: format!("invalid type: {found}, expected {expected}"),
    }
}
