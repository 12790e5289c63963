//! Merging a recipe into a container's `env`, on the raw JSON, never clobbering.
//!
//! - a join entry is set where the variable is absent or empty, left alone where its
//!   value already holds ours as one whole item between separators, and appended after
//!   the app's own value otherwise; a `valueFrom` there is a conflict;
//! - a plain entry is added only where the container has no variable of that name;
//! - new entries go after the container's own, in recipe order;
//! - where a name repeats, the last entry (the one that wins at run time) counts.

use super::EnvEntry;
use crate::message::{echo, listing, shorten};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// Why a container could not be activated; each message says how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvConflict {
    /// `env`, an entry or a value has another JSON type than the API server allows.
    #[error(
        "container {container:?}: {field} is {found}, expected {expected}: fix that field in the pod's manifest (agent-mount adds to it)"
    )]
    WrongType {
        /// The container.
        container: String,
        /// Where, e.g. `env[2].value`.
        field: String,
        /// What it is (shortened).
        found: String,
        /// What it should be.
        expected: &'static str,
    },
    /// A variable agent-mount joins into comes from `valueFrom`, which it cannot read.
    #[error(
        "container {container:?} sets {name} from valueFrom, which agent-mount cannot read, and the agent needs {wanted:?} in it: add that to the ConfigMap, Secret or field it comes from, or set {name} by value in the pod (agent-mount then appends to it), or do not activate this container"
    )]
    ValueFrom {
        /// The container.
        container: String,
        /// The variable.
        name: String,
        /// Our item.
        wanted: String,
    },
}

/// What the merge did to one container.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Merged {
    /// Whether `env` changed.
    pub changed: bool,
    /// The variables that now hold our value: added, appended to, or already ours.
    pub ours: Vec<String>,
    /// The warning for a container with `envFrom`, naming those variables.
    pub warning: Option<String>,
}

/// One planned edit of `env`.
enum Edit {
    /// Set entry `index`'s value (it was absent, empty, or is appended to).
    Set(usize, String),
    /// Append a new entry.
    Add(Value),
}

/// Merges `entries` into `container`'s `env`: all of them, or none on a conflict.
pub fn merge<'a>(
    container: &mut Map<String, Value>,
    entries: impl IntoIterator<Item = &'a EnvEntry>,
) -> Result<Merged, EnvConflict> {
    let container_name = container
        .get("name")
        .and_then(Value::as_str)
        .map_or_else(|| "?".into(), shorten);
    let wrong = |field: String, found: &Value, expected| EnvConflict::WrongType {
        container: container_name.clone(),
        field,
        found: echo(found),
        expected,
    };
    let empty = Vec::new();
    let env = match container.get("env") {
        None | Some(Value::Null) => &empty,
        Some(Value::Array(env)) => env,
        Some(other) => return Err(wrong("env".into(), other, "a list")),
    };
    // The last index of each name: a linear pass, then one lookup per entry.
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(env.len());
    for (i, var) in env.iter().enumerate() {
        let name = var.get("name").and_then(Value::as_str);
        let Some(name) = name.filter(|_| var.is_object()) else {
            return Err(wrong(
                format!("env[{i}]"),
                var,
                "an object with a string name",
            ));
        };
        last.insert(name, i);
    }
    let mut edits = Vec::new();
    let mut ours = Vec::new();
    // Names this merge adds, so later entries of the same name see them as present.
    let mut added: HashMap<&str, &EnvEntry> = HashMap::new();
    for entry in entries {
        let name = entry.name();
        if let Some(earlier) = added.get(name) {
            if same(earlier, entry) {
                ours.push(name.to_string());
            }
            continue;
        }
        let existing = last.get(name).and_then(|&i| Some((i, env.get(i)?)));
        match (entry, existing) {
            (_, None) => {
                edits.push(Edit::Add(as_json(entry)));
                added.insert(name, entry);
                ours.push(name.to_string());
            }
            (
                EnvEntry::Join {
                    value, separator, ..
                },
                Some((i, var)),
            ) => {
                if var.get("valueFrom").is_some_and(|v| !v.is_null()) {
                    return Err(EnvConflict::ValueFrom {
                        container: container_name,
                        name: shorten(name),
                        wanted: value.clone(),
                    });
                }
                match var.get("value") {
                    None | Some(Value::Null) => edits.push(Edit::Set(i, value.clone())),
                    Some(Value::String(app)) if app.is_empty() => {
                        edits.push(Edit::Set(i, value.clone()));
                    }
                    Some(Value::String(app)) if holds(app, value, separator) => {}
                    // The app's options first, ours after: the one value agent-mount rewrites.
                    Some(Value::String(app)) => {
                        edits.push(Edit::Set(i, format!("{app}{separator}{value}")));
                    }
                    Some(other) => {
                        return Err(wrong(format!("env[{i}].value"), other, "a string"));
                    }
                }
                ours.push(name.to_string());
            }
            // A plain entry: the app's own setting wins, silently.
            (_, Some((_, var))) => {
                if is_exactly(var, entry) {
                    ours.push(name.to_string());
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    ours.retain(|name| seen.insert(name.clone()));
    let changed = !edits.is_empty();
    if changed {
        apply(container, edits);
    }
    let has_env_from = container
        .get("envFrom")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let warning = (has_env_from && !ours.is_empty()).then(|| {
        let names: Vec<&str> = ours.iter().map(String::as_str).collect();
        format!(
            "agent-mount: container {container_name:?} has envFrom, and agent-mount set {} in its env, which replaces a variable of the same name from envFrom: if a ConfigMap or Secret there sets one of them, move that setting into the pod's env (agent-mount then joins into it)",
            listing(&names)
        )
    });
    Ok(Merged {
        changed,
        ours,
        warning,
    })
}

/// Carries out the planned edits; `merge` checked every type they touch.
fn apply(container: &mut Map<String, Value>, edits: Vec<Edit>) {
    let env = container
        .entry("env")
        .or_insert_with(|| Value::Array(Vec::new()));
    if env.is_null() {
        *env = Value::Array(Vec::new());
    }
    let Some(env) = env.as_array_mut() else {
        return;
    };
    for edit in edits {
        match edit {
            Edit::Set(i, value) => {
                if let Some(var) = env.get_mut(i).and_then(Value::as_object_mut) {
                    var.insert("value".into(), Value::String(value));
                }
            }
            Edit::Add(var) => env.push(var),
        }
    }
}

/// Whether `value` holds `ours` as one whole item: `ours`'s items, consecutive, among
/// `value`'s items split at `separator`.
pub fn holds(value: &str, ours: &str, separator: &str) -> bool {
    let wanted: Vec<&str> = ours.split(separator).collect();
    let items: Vec<&str> = value.split(separator).collect();
    items.windows(wanted.len()).any(|w| w == wanted.as_slice())
}

/// Whether an existing env entry is exactly the plain entry we would add.
fn is_exactly(var: &Value, entry: &EnvEntry) -> bool {
    match entry {
        EnvEntry::Value { value, .. } => {
            var.get("value").and_then(Value::as_str) == Some(value)
                && var.get("valueFrom").is_none_or(Value::is_null)
        }
        EnvEntry::ValueFrom { source, .. } => var.get("valueFrom") == Some(source),
        EnvEntry::Join { .. } => false,
    }
}

/// Whether two entries set the same variable the same way.
fn same(a: &EnvEntry, b: &EnvEntry) -> bool {
    as_json(a) == as_json(b)
}

/// The env entry the pod gets.
pub fn as_json(entry: &EnvEntry) -> Value {
    match entry {
        EnvEntry::Join { name, value, .. } | EnvEntry::Value { name, value } => {
            json!({"name": name, "value": value})
        }
        EnvEntry::ValueFrom { name, source } => json!({"name": name, "valueFrom": source}),
    }
}

#[cfg(test)]
mod tests;
