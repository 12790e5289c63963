//! Reads the runner's inputs: settings and pods, as YAML or JSON.

use agent_mount_common::MountMethod;
use serde_json::{Value, json};
use std::path::Path;

/// Parses a YAML or JSON file (YAML is a superset of JSON) into a JSON value.
pub fn read_document(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_yaml::from_str(&text)
        .map_err(|e| format!("{} is not valid YAML or JSON: {e}", path.display()))
}

/// Reads policy settings: a settings object, or a ClusterAdmissionPolicy whose `spec.settings` is used.
pub fn read_settings(path: &Path) -> Result<Value, String> {
    let document = read_document(path)?;
    let settings = if document.get("kind").and_then(Value::as_str) == Some("ClusterAdmissionPolicy")
    {
        document
            .pointer("/spec/settings")
            .cloned()
            .unwrap_or_else(|| json!({}))
    } else {
        document
    };
    match settings {
        Value::Object(_) => Ok(settings),
        Value::Null => Ok(json!({})),
        other => Err(format!(
            "{}: settings must be a mapping of keys (e.g. mountMethod: k8s-host-path), got {other}",
            path.display()
        )),
    }
}

/// Reads an AdmissionRequest, the `request` of an AdmissionReview, or a manifest (wrapped as a CREATE).
pub fn read_request(path: &Path) -> Result<Value, String> {
    let document = read_document(path)?;
    request_from_document(document).map_err(|e| format!("{}: {e}", path.display()))
}

/// Turns a parsed document into an AdmissionRequest.
pub fn request_from_document(document: Value) -> Result<Value, String> {
    if let Some(request) = document.get("request") {
        return Ok(request.clone());
    }
    if document.get("operation").is_some() && document.get("object").is_some() {
        return Ok(document);
    }
    let kind = document.get("kind").and_then(Value::as_str);
    let api_version = document.get("apiVersion").and_then(Value::as_str);
    match (kind, api_version) {
        (Some(kind), Some(api_version)) => Ok(admission_request(kind, api_version, document.clone())),
        _ => Err("expected a Kubernetes manifest (with apiVersion and kind), an AdmissionRequest (with operation and object) or an AdmissionReview (with request)".into()),
    }
}

/// A CREATE AdmissionRequest for a manifest, as the API server would send it.
pub fn admission_request(kind: &str, api_version: &str, object: Value) -> Value {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = format!("{}s", kind.to_lowercase());
    json!({
        "uid": "00000000-0000-0000-0000-000000000000",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "operation": "CREATE",
        "namespace": object.pointer("/metadata/namespace").cloned().unwrap_or(json!("default")),
        "name": object.pointer("/metadata/name").cloned().unwrap_or(json!("")),
        "userInfo": {"username": "runner"},
        "object": object,
    })
}

/// The kustomize overlay of a method under `deploy/`, e.g. `deploy/csi-driver`.
pub fn overlay(method: MountMethod) -> String {
    format!("deploy/{}", method.as_str().trim_start_matches("k8s-"))
}

/// The `spec.settings` of a method's ClusterAdmissionPolicy in its overlay.
pub fn overlay_settings(method: MountMethod) -> Result<Value, String> {
    let path = format!("{}/cluster-admission-policy.yaml", overlay(method));
    read_settings(&crate::build::workspace_root().join(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_from_every_accepted_shape() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": []}});
        let wrapped = request_from_document(pod.clone()).unwrap();
        assert_eq!(wrapped["operation"], "CREATE");
        assert_eq!(
            wrapped["kind"],
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        assert_eq!(wrapped["namespace"], "ns");
        assert_eq!(wrapped["object"], pod);
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment"});
        assert_eq!(
            request_from_document(deployment).unwrap()["kind"]["group"],
            "apps"
        );
        let review = json!({"request": wrapped.clone()});
        assert_eq!(request_from_document(review).unwrap(), wrapped);
        assert_eq!(request_from_document(wrapped.clone()).unwrap(), wrapped);
        let err = request_from_document(json!({"hello": 1})).unwrap_err();
        assert!(err.starts_with("expected a Kubernetes manifest"), "{err}");
    }

    #[test]
    fn settings_from_a_file_or_a_cluster_admission_policy() {
        let dir = std::env::temp_dir().join(format!("runner-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let plain = write("plain.yaml", "mountMethod: k8s-host-path\n");
        assert_eq!(
            read_settings(&plain).unwrap(),
            json!({"mountMethod": "k8s-host-path"})
        );
        let policy = write(
            "cap.yaml",
            "kind: ClusterAdmissionPolicy\nspec:\n  settings:\n    resourceName: example.com/x\n",
        );
        assert_eq!(
            read_settings(&policy).unwrap(),
            json!({"resourceName": "example.com/x"})
        );
        let empty = write("empty.yaml", "");
        assert_eq!(read_settings(&empty).unwrap(), json!({}));
        let list = write("list.yaml", "- a\n");
        assert!(
            read_settings(&list)
                .unwrap_err()
                .contains("settings must be a mapping")
        );
        let broken = write("broken.yaml", "a: [");
        assert!(
            read_settings(&broken)
                .unwrap_err()
                .contains("is not valid YAML or JSON")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
