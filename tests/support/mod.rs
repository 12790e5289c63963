//! Helpers shared by the policy's native tests, the runner's wasm tests and the policy
//! bench (which include this file by `#[path]`).
#![allow(dead_code)] // each test crate uses its own subset

pub mod kubelet;
pub mod pod_rules;

use agent_mount_common::MountMethod;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The agents image the test settings name.
pub const AGENTS_IMAGE: &str = "ghcr.io/example/agents:1.0";

/// The workspace root, where `test_data/` is: this crate's folder or one above it
/// (the runner's tests include this file too).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|dir| dir.join("test_data").is_dir())
        .unwrap_or_else(|| panic!("no test_data/ at or above {}", manifest.display()))
        .to_path_buf()
}

/// Reads a fixture AdmissionRequest from `test_data/`.
pub fn fixture(name: &str) -> Value {
    let path = workspace_root().join("test_data").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `validate` payload for a request and settings.
pub fn payload(request: &Value, settings: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "request": request, "settings": settings })).unwrap()
}

/// The least settings that choose `method`: its `mountMethod` and the keys it requires.
/// The match is exhaustive, so a new method does not compile until it is given here.
pub fn method_settings(method: MountMethod) -> Value {
    let mut settings = json!({"mountMethod": method.as_str()});
    match method {
        MountMethod::VirtualDevice | MountMethod::HostPath | MountMethod::CsiDriver => {}
        MountMethod::InitContainer => settings["initContainer"] = json!({"image": AGENTS_IMAGE}),
        MountMethod::ImageVolume => settings["imageVolume"] = json!({"reference": AGENTS_IMAGE}),
    }
    settings
}

/// Says where `original` is not contained in `mutated`: every key kept with a contained
/// value, every array element kept at its index. `shifted` names arrays (JSON pointers)
/// where the mutation inserted one element first, so originals sit one index later.
pub fn lost_from(
    original: &Value,
    mutated: &Value,
    path: &str,
    shifted: &[&str],
) -> Option<String> {
    match (original, mutated) {
        (Value::Object(o), Value::Object(m)) => o.iter().find_map(|(k, v)| match m.get(k) {
            Some(mv) => lost_from(v, mv, &format!("{path}/{k}"), shifted),
            None => Some(format!("{path}/{k} was removed")),
        }),
        (Value::Array(o), Value::Array(m)) => {
            let offset = usize::from(shifted.contains(&path));
            if m.len() < o.len() + offset {
                return Some(format!("{path} lost elements"));
            }
            o.iter()
                .enumerate()
                .find_map(|(i, v)| lost_from(v, &m[i + offset], &format!("{path}/{i}"), shifted))
        }
        (o, m) if o == m => None,
        (o, m) => Some(format!("{path} changed from {o} to {m}")),
    }
}

/// The ops of a JSON patch as (op, path) pairs.
pub fn ops(patch: &json_patch::Patch) -> Vec<(String, String)> {
    let value = serde_json::to_value(patch).unwrap();
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|op| {
            (
                op["op"].as_str().unwrap().to_string(),
                op["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
