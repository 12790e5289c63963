//! A `valueFrom` of a recipe or `activation.env` entry, checked on its raw JSON as the API
//! server checks a container's env, so that nothing it would refuse reaches a pod.
//!
//! The rules follow kubernetes `pkg/apis/core/validation/validation.go`:
//! `validateEnvVarValueFrom` (exactly one source), `validateObjectFieldSelector` with
//! `validEnvDownwardAPIFieldPathExpressions` (and `ConvertDownwardAPIFieldLabel`, which
//! knows only `v1`), `validateContainerResourceFieldSelector` with
//! `validContainerResourceFieldPathExpressions` and `validateContainerResourceDivisor`
//! (`validContainerResourceDivisorForCPU/Memory/HugePages/EphemeralStorage`), and
//! `validateConfigMapKeySelector`/`validateSecretKeySelector` (`ValidateSecretName`, a
//! DNS subdomain, for both; `IsConfigMapKey` for the key). Names are checked by
//! `syntax::env_var_name` (`ValidateEnv`'s `IsEnvVarName`). No k8s-openapi types: the
//! typed `EnvVarSource` brought 128 KB into the .wasm.

use super::check_field;
use crate::settings::check::check;
use crate::settings::errors::SettingsError;
use agent_mount_common::{quantity, syntax};
use serde_json::{Map, Value};

/// The `valueFrom` sources the API server accepts without a feature gate.
const SOURCES: [&str; 4] = [
    "configMapKeyRef",
    "secretKeyRef",
    "fieldRef",
    "resourceFieldRef",
];

/// Sources the API server accepts only behind a feature gate (`EnvFiles`, 1.34).
const GATED_SOURCES: [&str; 1] = ["fileKeyRef"];

/// The pod fields an env `fieldRef` may name (`validEnvDownwardAPIFieldPathExpressions`),
/// besides labels and annotations by key.
const FIELD_PATHS: [&str; 9] = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// The container resources an env `resourceFieldRef` may name
/// (`validContainerResourceFieldPathExpressions`), besides hugepages.
const RESOURCES: [&str; 6] = [
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
];

/// The hugepages resources, by prefix (`validContainerResourceFieldPathPrefixesWithDownwardAPIHugePages`).
const HUGEPAGES: [&str; 2] = ["limits.hugepages-", "requests.hugepages-"];

/// Divisors of cpu (`validContainerResourceDivisorForCPU`).
const CPU_DIVISORS: [&str; 2] = ["1m", "1"];

/// Divisors of memory, ephemeral storage and hugepages (`validContainerResourceDivisorFor…`).
const BYTE_DIVISORS: [&str; 13] = [
    "1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei",
];

/// The JSON type a field of a source holds.
#[derive(Clone, Copy)]
enum Kind {
    /// A string.
    Text,
    /// A boolean.
    Flag,
    /// A quantity: a string, or a number (YAML `divisor: 1`), which the API server also
    /// reads; kept as a string.
    Quantity,
}

/// Checks a `valueFrom` at `key` and returns it without `null` keys (absent, as the API
/// server decodes them).
pub fn value_from(given: &Value, key: &str) -> Result<Value, SettingsError> {
    let object = mapping(given, key)?;
    let mut set: Vec<&str> = Vec::new();
    for (name, value) in object {
        if value.is_null() {
            continue;
        }
        if GATED_SOURCES.contains(&name.as_str()) {
            return Err(SettingsError::invalid(
                format!("{key}.{name}"),
                name,
                format!("{}: {name} needs a feature gate", allowed_sources()),
            ));
        }
        if !SOURCES.contains(&name.as_str()) {
            return Err(SettingsError::UnknownKey {
                key: format!("{key}.{name}"),
            });
        }
        set.push(name);
    }
    // No sort for the message: a `Map` (no `preserve_order`) gives its keys sorted already.
    let [kind] = set.as_slice() else {
        return Err(SettingsError::invalid(
            key,
            &set.join(", "),
            allowed_sources(),
        ));
    };
    let source_key = format!("{key}.{kind}");
    let given = object.get(*kind).unwrap_or(&Value::Null);
    let fields = match *kind {
        "fieldRef" => field_ref(given, &source_key)?,
        "resourceFieldRef" => resource_field_ref(given, &source_key)?,
        _ => key_ref(given, &source_key)?,
    };
    let mut source = Map::new();
    source.insert(kind.to_string(), Value::Object(fields));
    Ok(Value::Object(source))
}

/// The message for a `valueFrom` without exactly one source.
fn allowed_sources() -> String {
    format!("exactly one of {}", SOURCES.join(", "))
}

/// `configMapKeyRef`/`secretKeyRef`: a DNS-subdomain name and a config key, both required.
fn key_ref(given: &Value, key: &str) -> Result<Map<String, Value>, SettingsError> {
    let fields = known_fields(
        given,
        key,
        &[
            ("name", Kind::Text),
            ("key", Kind::Text),
            ("optional", Kind::Flag),
        ],
    )?;
    check_field(key, ".name", text(&fields, "name"), syntax::subdomain)?;
    check_field(key, ".key", text(&fields, "key"), syntax::config_map_key)?;
    Ok(fields)
}

/// `fieldRef`: apiVersion `v1` (the default) and an env field path.
fn field_ref(given: &Value, key: &str) -> Result<Map<String, Value>, SettingsError> {
    let fields = known_fields(
        given,
        key,
        &[("apiVersion", Kind::Text), ("fieldPath", Kind::Text)],
    )?;
    let version = text(&fields, "apiVersion");
    if !version.is_empty() && version != "v1" {
        return Err(SettingsError::invalid(
            format!("{key}.apiVersion"),
            version,
            "v1, or unset",
        ));
    }
    check_field(
        key,
        ".fieldPath",
        text(&fields, "fieldPath"),
        env_field_path,
    )?;
    Ok(fields)
}

/// `resourceFieldRef`: an env resource, its divisor, and a container name if given.
fn resource_field_ref(given: &Value, key: &str) -> Result<Map<String, Value>, SettingsError> {
    let fields = known_fields(
        given,
        key,
        &[
            ("containerName", Kind::Text),
            ("resource", Kind::Text),
            ("divisor", Kind::Quantity),
        ],
    )?;
    let resource = text(&fields, "resource");
    let hugepages = HUGEPAGES
        .iter()
        .any(|p| resource.len() > p.len() && resource.starts_with(p));
    if !RESOURCES.contains(&resource) && !hugepages {
        return Err(SettingsError::invalid(
            format!("{key}.resource"),
            resource,
            format!(
                "one of {}, or limits.hugepages-<size> / requests.hugepages-<size>",
                RESOURCES.join(", ")
            ),
        ));
    }
    if let Some(divisor) = fields.get("divisor").and_then(Value::as_str) {
        let divisor_key = format!("{key}.divisor");
        check(&divisor_key, divisor, syntax::quantity)?;
        let allowed: &[&str] = if resource.ends_with(".cpu") {
            &CPU_DIVISORS
        } else {
            &BYTE_DIVISORS
        };
        if !canonically_listed(divisor, allowed) {
            return Err(SettingsError::invalid(
                divisor_key,
                divisor,
                format!(
                    "one of {} for {resource} (as the API server writes it: 1000m is 1, 1024Ki is 1Mi)",
                    allowed.join(", ")
                ),
            ));
        }
    }
    // The API server leaves containerName unchecked for env; the kubelet then fails the
    // container when no container has that name. Container names are DNS labels.
    let container = text(&fields, "containerName");
    if !container.is_empty() {
        check_field(key, ".containerName", container, syntax::dns_label)?;
    }
    Ok(fields)
}

/// Nano-units per unit, as `quantity::parse` counts.
const NANO: i128 = 1_000_000_000;

/// Whether a valid quantity's canonical form (`Quantity.String()`, which
/// `validateContainerResourceDivisor` looks up in its list) is in `allowed`; zero is
/// unset and allowed. The canonical form keeps the family the quantity was written in:
/// decimal (`1000m` is `1`, `1000` is `1k`), binary (`1024Ki` is `1Mi`; below 1024 it
/// is written as decimal) or exponent (`1e3` stays `1e3`, `1e0` is `1`).
fn canonically_listed(divisor: &str, allowed: &[&str]) -> bool {
    let Ok(value) = quantity::parse(divisor) else {
        return false;
    };
    if value == 0 {
        return true;
    }
    let binary = divisor.ends_with('i');
    let exponent = divisor.ends_with(|c: char| c.is_ascii_digit())
        && divisor
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .trim_end_matches(['+', '-'])
            .ends_with(['e', 'E']);
    let below_1024 = value.abs() < 1024 * NANO;
    allowed.iter().any(|listed| {
        let same_family = if listed.ends_with('i') {
            binary && !below_1024
        } else {
            (!binary && !exponent) || (binary && below_1024) || (exponent && *listed == "1")
        };
        same_family && quantity::parse(listed).ok() == Some(value)
    })
}

/// A field path an env `fieldRef` may name: one of [`FIELD_PATHS`], or a label or
/// annotation by key (`metadata.labels['<key>']`), the key a qualified name
/// (`validateObjectFieldSelector`: annotation keys lowercased first).
fn env_field_path(path: &str) -> Result<(), String> {
    let listed = || {
        format!(
            "one of {}, metadata.labels['<key>'] or metadata.annotations['<key>']",
            FIELD_PATHS.join(", ")
        )
    };
    let checked = match subscripted(path) {
        None if FIELD_PATHS.contains(&path) => return Ok(()),
        None => return Err(listed()),
        Some(("metadata.labels", label)) => syntax::qualified_name(label),
        Some(("metadata.annotations", annotation)) => {
            // ASCII lowering: a qualified name is ASCII anyway, and Unicode's case tables
            // would add 18 KB to the .wasm.
            syntax::qualified_name(&annotation.to_ascii_lowercase())
        }
        Some(_) => {
            return Err(format!(
                "a ['<key>'] subscript only on metadata.labels or metadata.annotations: {}",
                listed()
            ));
        }
    };
    checked.map_err(|e| format!("the key in brackets: {e}"))
}

/// `object['key']` split into its object and key, as `fieldpath.SplitMaybeSubscriptedPath`.
fn subscripted(path: &str) -> Option<(&str, &str)> {
    let (object, key) = path.strip_suffix("']")?.split_once("['")?;
    (!object.is_empty()).then_some((object, key))
}

/// The fields of a source object, `null` ones dropped; an unknown field or a field of the
/// wrong type is refused.
fn known_fields(
    given: &Value,
    key: &str,
    known: &[(&str, Kind)],
) -> Result<Map<String, Value>, SettingsError> {
    let mut fields = Map::new();
    for (name, value) in mapping(given, key)? {
        let field_key = format!("{key}.{name}");
        let Some((_, kind)) = known.iter().find(|(k, _)| k == name) else {
            return Err(SettingsError::UnknownKey { key: field_key });
        };
        let expected = match (kind, value) {
            (_, Value::Null) => continue,
            (Kind::Text | Kind::Quantity, Value::String(_)) | (Kind::Flag, Value::Bool(_)) => {
                fields.insert(name.clone(), value.clone());
                continue;
            }
            (Kind::Quantity, Value::Number(n)) => {
                fields.insert(name.clone(), Value::String(n.to_string()));
                continue;
            }
            (Kind::Text, _) => "a string",
            (Kind::Flag, _) => "a boolean",
            (Kind::Quantity, _) => "a quantity such as \"1Mi\"",
        };
        return Err(SettingsError::Malformed {
            key: field_key,
            message: format!("invalid type: {}, expected {expected}", shape(value)),
        });
    }
    Ok(fields)
}

/// `given` as a JSON object, or an error naming `key`.
fn mapping<'a>(given: &'a Value, key: &str) -> Result<&'a Map<String, Value>, SettingsError> {
    given.as_object().ok_or_else(|| SettingsError::Malformed {
        key: key.to_string(),
        message: format!("invalid type: {}, expected a mapping", shape(given)),
    })
}

/// A JSON value's type, as serde's messages name it.
fn shape(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) => format!("number `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "list".into(),
        Value::Object(_) => "map".into(),
    }
}

/// The string field `name` of `fields`, empty when unset.
fn text<'a>(fields: &'a Map<String, Value>, name: &str) -> &'a str {
    fields.get(name).and_then(Value::as_str).unwrap_or_default()
}
