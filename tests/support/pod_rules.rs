//! The API server's pod validation rules that the policy's additions could break,
//! each named after the Kubernetes validation function it mirrors
//! (k8s.io/kubernetes/pkg/apis/core/validation), and the one place rule the API server
//! leaves to the container: two mounts resolving to one path.

use agent_mount_common::quantity;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

const LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// Every rule violation of a pod, empty when the API server would accept it on these rules.
pub fn violations(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let volumes = validate_volumes(pod, &mut out);
    validate_container_names(pod, &mut out);
    for (list, container) in containers(pod) {
        let name = container["name"].as_str().unwrap_or("?");
        validate_volume_mounts(list, name, container, &volumes, &mut out);
        validate_resource_requirements(list, name, container, &mut out);
        validate_env(list, name, container, &mut out);
    }
    out
}

/// validateEnv: each entry is named, and has a value or a valueFrom, not both.
fn validate_env(list: &str, name: &str, container: &Value, out: &mut Vec<String>) {
    for var in container["env"].as_array().into_iter().flatten() {
        if var["name"].as_str().is_none_or(str::is_empty) {
            out.push(format!("{list} {name:?}: env entry without a name"));
        }
        let value = var["value"].as_str().is_some_and(|v| !v.is_empty());
        if value && !var["valueFrom"].is_null() {
            out.push(format!(
                "{list} {name:?}: env {var} has value and valueFrom"
            ));
        }
    }
}

fn containers(pod: &Value) -> impl Iterator<Item = (&'static str, &Value)> {
    LISTS.into_iter().flat_map(move |list| {
        pod["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .map(move |c| (list, c))
    })
}

/// validateVolumes: volume names are unique.
fn validate_volumes<'a>(pod: &'a Value, out: &mut Vec<String>) -> HashSet<&'a str> {
    let mut names = HashSet::new();
    for volume in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let name = volume["name"].as_str().unwrap_or_default();
        if !names.insert(name) {
            out.push(format!("spec.volumes: duplicate name {name:?}"));
        }
    }
    names
}

/// validateContainers / validateInitContainers / validateEphemeralContainers:
/// names are unique across all three lists.
fn validate_container_names(pod: &Value, out: &mut Vec<String>) {
    let mut names = HashSet::new();
    for (list, container) in containers(pod) {
        let name = container["name"].as_str().unwrap_or_default();
        if !names.insert(name) {
            out.push(format!("spec.{list}: duplicate container name {name:?}"));
        }
    }
}

/// validateVolumeMounts: each mount names a volume, has a non-empty mountPath unique as a
/// string, a subPath and a subPathExpr that pass validateLocalDescendingPath, and not both.
fn validate_volume_mounts(
    list: &str,
    name: &str,
    container: &Value,
    volumes: &HashSet<&str>,
    out: &mut Vec<String>,
) {
    let mut paths = HashSet::new();
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let volume = mount["name"].as_str().unwrap_or_default();
        if !volumes.contains(volume) {
            out.push(format!(
                "{list} {name:?}: mount of missing volume {volume:?}"
            ));
        }
        let path = mount["mountPath"].as_str().unwrap_or_default();
        if path.is_empty() {
            out.push(format!("{list} {name:?}: empty mountPath"));
        }
        if !paths.insert(path) {
            out.push(format!("{list} {name:?}: mountPath {path:?} is not unique"));
        }
        let sub_path = mount["subPath"].as_str().unwrap_or_default();
        let sub_path_expr = mount["subPathExpr"].as_str().unwrap_or_default();
        if !sub_path.is_empty() {
            validate_local_descending_path(sub_path)
                .unwrap_or_else(|e| out.push(format!("{list} {name:?}: subPath {e}")));
        }
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                out.push(format!(
                    "{list} {name:?}: subPathExpr and subPath are mutually exclusive"
                ));
            }
            validate_local_descending_path(sub_path_expr)
                .unwrap_or_else(|e| out.push(format!("{list} {name:?}: subPathExpr {e}")));
        }
    }
}

/// Mounts of one container that land on one place once `..` and `.` are resolved.
///
/// Not an API server rule: validateVolumeMounts compares the `mountPath` strings, so
/// `/var/x/../odigos` beside `/var/odigos` passes it, and the container sees one of the two.
pub fn mounts_at_one_place(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (list, container) in containers(pod) {
        let name = container["name"].as_str().unwrap_or("?");
        let mut places: HashMap<String, &str> = HashMap::new();
        for mount in container["volumeMounts"].as_array().into_iter().flatten() {
            let path = mount["mountPath"].as_str().unwrap_or_default();
            if let Some(first) = places.insert(resolve(path), path) {
                out.push(format!(
                    "{list} {name:?}: mountPath {path:?} is the place of {first:?}"
                ));
            }
        }
    }
    out
}

/// An absolute path with `//`, `.` and a trailing `/` removed and `..` resolved lexically,
/// as the container's file system resolves it (`..` at the root stays at the root).
pub fn resolve(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            segment => segments.push(segment),
        }
    }
    format!("/{}", segments.join("/"))
}

/// validateLocalDescendingPath: relative, without `..` segments.
pub fn validate_local_descending_path(path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        return Err(format!("{path:?} must be relative"));
    }
    if path.split('/').any(|segment| segment == "..") {
        return Err(format!("{path:?} must not contain '..'"));
    }
    Ok(())
}

/// ValidateResourceRequirements: valid, non-negative quantities, requests ≤ limits.
fn validate_resource_requirements(
    list: &str,
    name: &str,
    container: &Value,
    out: &mut Vec<String>,
) {
    let mut amounts: HashMap<(&str, &str), i128> = HashMap::new();
    for field in ["limits", "requests"] {
        let entries = container["resources"][field]
            .as_object()
            .into_iter()
            .flatten();
        for (resource, amount) in entries {
            let text = amount.as_str().unwrap_or_default();
            match quantity::parse(text) {
                Ok(nanos) if nanos >= 0 => {
                    amounts.insert((field, resource.as_str()), nanos);
                }
                _ => out.push(format!(
                    "{list} {name:?}: resources.{field}.{resource} {amount} is not a valid quantity"
                )),
            }
        }
    }
    for ((field, resource), request) in &amounts {
        if *field != "requests" {
            continue;
        }
        if amounts
            .get(&("limits", resource))
            .is_some_and(|limit| request > limit)
        {
            out.push(format!(
                "{list} {name:?}: requests.{resource} must be less than or equal to the limit"
            ));
        }
    }
}
