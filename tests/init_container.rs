//! What the methods add passes Pod Security `restricted`: the copy container, and only
//! restricted volume types (no hostPath) for every method but host-path.
// Test and bench code: helpers fail loudly too (clippy.toml allows this in #[test] functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use agent_mount::response::validate;
use agent_mount_common::MountMethod;
use rstest::rstest;
use serde_json::{Value, json};
use support::{fixture, method_settings, payload};

fn init_settings(extra: Value) -> Value {
    let mut settings = method_settings(MountMethod::InitContainer);
    for (k, v) in extra.as_object().unwrap() {
        settings[k] = v.clone();
    }
    settings
}

fn mutated(name: &str, settings: &Value) -> Value {
    validate(&payload(&fixture(name), settings))
        .mutated_object
        .expect("mutated")
}

/// Volume types PSA `restricted` allows. `image` since Kubernetes 1.33
/// (kubernetes/kubernetes#130394, pod-security-admission's restricted volume check);
/// the Pod Security Standards page lags behind the code.
const RESTRICTED_VOLUMES: [&str; 9] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Every PSA `restricted` (and so `baseline`) rule a container breaks, per the Pod Security Standards.
fn restricted_violations(container: &Value) -> Vec<String> {
    let sc = &container["securityContext"];
    let mut out = Vec::new();
    if sc["privileged"] == true {
        out.push("privileged".into());
    }
    if sc["allowPrivilegeEscalation"] != false {
        out.push("allowPrivilegeEscalation must be false".into());
    }
    if sc["runAsNonRoot"] != true {
        out.push("runAsNonRoot must be true".into());
    }
    if sc["runAsUser"].as_i64().is_none_or(|uid| uid <= 0) {
        out.push("runAsUser must be a non-zero number".into());
    }
    if !matches!(
        sc["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault" | "Localhost")
    ) {
        out.push("seccompProfile.type must be RuntimeDefault or Localhost".into());
    }
    let drop = sc["capabilities"]["drop"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !drop.contains(&json!("ALL")) {
        out.push("capabilities must drop ALL".into());
    }
    let add = sc["capabilities"]["add"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if add.iter().any(|c| c != "NET_BIND_SERVICE") {
        out.push("capabilities may add only NET_BIND_SERVICE".into());
    }
    if sc
        .get("windowsOptions")
        .is_some_and(|w| w["hostProcess"] == true)
    {
        out.push("hostProcess".into());
    }
    if container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p.get("hostPort").is_some())
    {
        out.push("hostPort".into());
    }
    if sc["appArmorProfile"]["type"] == "Unconfined" {
        out.push("appArmorProfile Unconfined".into());
    }
    if sc.get("procMount").is_some_and(|p| p != "Default") {
        out.push("procMount".into());
    }
    out
}

#[rstest]
#[case::defaults(json!({}))]
#[case::per_agent_with_limit(json!({"agentDirectories": ["java"], "initContainer": {"image": "a:1", "sizeLimit": "64Mi"}}))]
fn everything_added_passes_psa_restricted(#[case] extra: Value) {
    let settings = init_settings(extra);
    let pod = mutated("pod_typical.json", &settings);
    let copy = &pod["spec"]["initContainers"][0];
    assert_eq!(copy["name"], "odigos-agent-init");
    assert_eq!(restricted_violations(copy), Vec::<String>::new());
    // The volume it adds is checked with every method's below. The checker is real: the fixture's own istio-init (NET_ADMIN, root) fails it.
    assert!(!restricted_violations(&pod["spec"]["initContainers"][1]).is_empty());
}

#[test]
fn overriding_the_user_keeps_the_rest_of_the_hardening() {
    let settings = init_settings(
        json!({"initContainer": {"image": "a:1", "securityContext": {"runAsUser": 1000}}}),
    );
    let copy = &mutated("pod_small.json", &settings)["spec"]["initContainers"][0];
    assert_eq!(copy["securityContext"]["runAsUser"], 1000);
    assert_eq!(restricted_violations(copy), Vec::<String>::new());
}

/// Every method but host-path adds only volume types PSA `restricted` admits.
#[test]
fn only_restricted_volume_types_are_added() {
    let original = fixture("pod_typical.json");
    let before = original["object"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .len();
    for method in MountMethod::ALL {
        match method {
            // A hostPath volume is that method; PSA baseline refuses it, as the README says.
            MountMethod::HostPath => continue,
            MountMethod::VirtualDevice
            | MountMethod::InitContainer
            | MountMethod::CsiDriver
            | MountMethod::ImageVolume => {}
        }
        let pod = mutated("pod_typical.json", &method_settings(method));
        let volumes = pod["spec"]["volumes"].as_array().unwrap();
        for added in &volumes[before..] {
            let kind = added
                .as_object()
                .unwrap()
                .keys()
                .find(|k| *k != "name")
                .unwrap();
            assert!(
                RESTRICTED_VOLUMES.contains(&kind.as_str()),
                "{method:?}: {kind}"
            );
        }
        assert!(
            volumes.iter().all(|v| v.get("hostPath").is_none()),
            "{method:?}: {volumes:?}"
        );
    }
}

/// The copy container is a Linux container: `windowsOptions` in its securityContext is
/// refused at load (the API server refuses it in a Linux pod, and Windows pods are left
/// alone). Seen failing before: the setting was accepted.
#[test]
fn windows_options_for_the_copy_container_are_refused_at_load() {
    let settings = init_settings(json!({"initContainer": {"image": "a:1",
        "securityContext": {"windowsOptions": {"hostProcess": true}}}}));
    let response =
        agent_mount::response::validate_settings(&serde_json::to_vec(&settings).unwrap());
    assert!(!response.valid);
    let message = response.message.unwrap();
    assert!(
        message.starts_with("initContainer.securityContext.windowsOptions"),
        "{message}"
    );
    assert!(message.contains("Linux container"), "{message}");
}
