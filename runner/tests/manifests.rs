//! Every manifest under deploy/ is valid: core kinds by `kubernetes-validate --strict`,
//! ClusterAdmissionPolicies by the fields the policy server reads and the policy's own
//! `validate_settings`, run in the built `.wasm`.

use runner::build::{ensure_built, workspace_root};
use runner::host::PolicyHost;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `f` with this test thread's policy host (a waPC host is not `Sync`); the
/// `.wasm` is built, or found up to date, once per test binary.
fn with_host<R>(f: impl FnOnce(&PolicyHost) -> R) -> R {
    thread_local! {
        static HOST: PolicyHost = PolicyHost::load(&ensure_built().unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    HOST.with(f)
}

/// The kubernetes-validate executable: $KUBERNETES_VALIDATE, else the one ./test.sh installs.
fn kubernetes_validate() -> PathBuf {
    let path = std::env::var_os("KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/kubernetes-validate"));
    assert!(
        path.is_file(),
        "kubernetes-validate not found at {}: run ./test.sh, which installs it into .venv, or \
         `python3 -m venv .venv && .venv/bin/pip install kubernetes-validate`",
        path.display()
    );
    path
}

/// Validates core-kind manifests strictly (unknown fields and unknown kinds fail).
fn validate_core(path: &Path) -> Result<(), String> {
    let output = Command::new(kubernetes_validate())
        .arg("--strict")
        .arg(path)
        .output()
        .map_err(|e| e.to_string())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() && !text.contains("Couldn't find schema") {
        Ok(())
    } else {
        Err(text)
    }
}

/// Checks a ClusterAdmissionPolicy for what the policy server reads, and its settings with the policy.
fn check_cluster_admission_policy(policy: &Value) -> Result<(), String> {
    let spec = &policy["spec"];
    if policy["apiVersion"] != "policies.kubewarden.io/v1" {
        return Err(format!(
            "apiVersion {} is not policies.kubewarden.io/v1",
            policy["apiVersion"]
        ));
    }
    if !spec["module"]
        .as_str()
        .is_some_and(|m| m.starts_with("registry://") || m.starts_with("https://"))
    {
        return Err(format!(
            "spec.module {} is not a registry:// or https:// reference",
            spec["module"]
        ));
    }
    if spec["mutating"] != true {
        return Err("spec.mutating must be true: the policy mutates pods".into());
    }
    let creates_pods = spec["rules"].as_array().into_iter().flatten().any(|rule| {
        rule["resources"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("pods")))
            && rule["operations"]
                .as_array()
                .is_some_and(|o| o.contains(&json!("CREATE")))
            && rule["apiVersions"]
                .as_array()
                .is_some_and(|v| v.contains(&json!("v1")))
    });
    if !creates_pods {
        return Err("spec.rules must match CREATE of v1 pods".into());
    }
    let settings = spec.get("settings").cloned().unwrap_or(json!({}));
    let verdict = with_host(|h| h.validate_settings(&settings))?;
    if !verdict.valid {
        return Err(format!(
            "spec.settings rejected by the policy: {}",
            verdict.message.unwrap_or_default()
        ));
    }
    Ok(())
}

/// Checks every document of a manifest file.
fn check_file(path: &Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let documents: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(Value::deserialize)
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let policies: Vec<&Value> = documents
        .iter()
        .filter(|d| d["kind"] == "ClusterAdmissionPolicy")
        .collect();
    match policies.len() {
        0 => validate_core(path)?,
        n if n == documents.len() => {
            for policy in policies {
                check_cluster_admission_policy(policy)?;
            }
        }
        _ => return Err("keep ClusterAdmissionPolicies and core kinds in separate files".into()),
    }
    Ok(documents.len())
}

fn temp_manifest(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("agent-mount-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_manifest_under_deploy_is_valid() {
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(workspace_root().join("deploy")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let documents = check_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            checked.push((
                path.file_name().unwrap().to_string_lossy().to_string(),
                documents,
            ));
        }
    }
    checked.sort();
    let names: Vec<&str> = checked.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "cluster-admission-policy-host-path.yaml",
            "cluster-admission-policy-init-container.yaml",
            "cluster-admission-policy-virtual-device.yaml",
            "device-plugin-daemonset.yaml",
        ]
    );
}

#[test]
fn invalid_manifests_fail() {
    let daemonset = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers: [{name: c, image: i, imagePullPolcy: Always}]\n";
    let err = check_file(&temp_manifest("ds.yaml", daemonset)).unwrap_err();
    assert!(err.contains("imagePullPolcy"), "{err}");
    let unknown_kind = "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: x}\n";
    assert!(check_file(&temp_manifest("gadget.yaml", unknown_kind)).is_err());
    let base = "apiVersion: policies.kubewarden.io/v1\nkind: ClusterAdmissionPolicy\nmetadata: {name: x}\nspec:\n  module: registry://example.com/p:v1\n  rules: [{apiGroups: [\"\"], apiVersions: [v1], resources: [pods], operations: [CREATE]}]\n";
    let cases = [
        (
            format!(
                "{base}  mutating: true\n  settings: {{mountMethod: k8s-host-path, hostPath: relative}}\n"
            ),
            "hostPath: invalid value",
        ),
        (
            format!("{base}  settings: {{}}\n"),
            "spec.mutating must be true",
        ),
        (
            format!("{base}  mutating: true\n  settings: {{}}\n").replace("registry://", ""),
            "spec.module",
        ),
        (
            format!("{base}  mutating: true\n").replace("CREATE", "DELETE"),
            "CREATE of v1 pods",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let err = check_file(&temp_manifest(&format!("cap{i}.yaml"), text)).unwrap_err();
        assert!(err.contains(expected), "case {i}: {err}");
    }
}
