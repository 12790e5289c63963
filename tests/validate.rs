//! The policy's `validate`, called natively on the fixtures in `test_data/`.
// Test and bench code: helpers fail loudly too (clippy.toml allows this in #[test] functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use agent_mount::copy::COPY_SCRIPT;
use agent_mount::response::{validate, validate_settings};
use kubewarden_policy_sdk::response::ValidationResponse;
use rstest::rstest;
use serde_json::{Value, json};
use support::{fixture, lost_from, ops, payload};

/// Runs `validate` and returns the response and the patch the policy server would send.
fn run(request: &Value, settings: &Value) -> (ValidationResponse, json_patch::Patch) {
    let response = validate(&payload(request, settings));
    let original = &request["object"];
    let patch = match &response.mutated_object {
        Some(mutated) => json_patch::diff(original, mutated),
        None => json_patch::Patch(Vec::new()),
    };
    (response, patch)
}

fn host_path() -> Value {
    json!({"mountMethod": "k8s-host-path"})
}

fn csi_driver() -> Value {
    json!({"mountMethod": "k8s-csi-driver"})
}

fn image_volume() -> Value {
    json!({"mountMethod": "k8s-image-volume", "imageVolume": {"reference": "ghcr.io/example/agents:1.0"}})
}

fn init_container() -> Value {
    json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "ghcr.io/example/agents:1.0"}})
}

fn add(path: &str) -> (String, String) {
    ("add".to_string(), path.to_string())
}

#[rstest]
#[case::virtual_device_typical("pod_typical.json", json!({}), vec![
    add("/spec/containers/0/resources/limits/instrumentation.odigos.io~1generic"),
    add("/spec/containers/0/resources/requests/instrumentation.odigos.io~1generic"),
    add("/spec/containers/2/resources/limits"),
    add("/spec/containers/2/resources/requests/instrumentation.odigos.io~1generic"),
])]
#[case::virtual_device_small("pod_small.json", json!({}), vec![add("/spec/containers/0/resources")])]
#[case::virtual_device_custom_resource("pod_small.json", json!({"resourceName": "example.com/agents"}), vec![add("/spec/containers/0/resources")])]
#[case::host_path_typical("pod_typical.json", host_path(), vec![
    add("/spec/containers/0/volumeMounts/2"),
    add("/spec/containers/2/volumeMounts"),
    add("/spec/volumes/3"),
])]
#[case::host_path_small("pod_small.json", host_path(), vec![
    add("/spec/containers/0/volumeMounts"),
    add("/spec/volumes"),
])]
#[case::host_path_annotation_selects("pod_annotation_unknown_container.json", host_path(), vec![
    add("/spec/containers/0/volumeMounts/2"),
    add("/spec/volumes/3"),
])]
#[case::host_path_node_label_and_into_terms("pod_node_affinity.json",
    json!({"mountMethod": "k8s-host-path", "requiredNodeLabel": {"key": "odigos.io/agents", "value": "true"}}), vec![
    add("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchExpressions/1"),
    add("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/1/matchExpressions/1"),
    add("/spec/containers/0/volumeMounts/2"),
    add("/spec/containers/2/volumeMounts"),
    add("/spec/volumes/3"),
])]
#[case::host_path_node_label_creates_one_term("pod_small.json",
    json!({"mountMethod": "k8s-host-path", "requiredNodeLabel": {"key": "odigos.io/agents", "value": "true"}}), vec![
    add("/spec/affinity"),
    add("/spec/containers/0/volumeMounts"),
    add("/spec/volumes"),
])]
#[case::csi_driver_typical("pod_typical.json", csi_driver(), vec![
    add("/spec/containers/0/volumeMounts/2"),
    add("/spec/containers/2/volumeMounts"),
    add("/spec/volumes/3"),
])]
#[case::csi_driver_node_label("pod_node_affinity.json",
    json!({"mountMethod": "k8s-csi-driver", "requiredNodeLabel": {"key": "odigos.io/agents", "value": "true"}}), vec![
    add("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchExpressions/1"),
    add("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/1/matchExpressions/1"),
    add("/spec/containers/0/volumeMounts/2"),
    add("/spec/containers/2/volumeMounts"),
    add("/spec/volumes/3"),
])]
#[case::image_volume_typical("pod_typical.json", image_volume(), vec![
    add("/spec/containers/0/volumeMounts/2"),
    add("/spec/containers/2/volumeMounts"),
    add("/spec/volumes/3"),
])]
#[case::image_volume_small_per_agent("pod_small.json",
    json!({"mountMethod": "k8s-image-volume", "agentDirectories": ["java", "python"], "imageVolume": {"reference": "a:1", "sourcePath": "/"}}), vec![
    add("/spec/containers/0/volumeMounts"),
    add("/spec/volumes"),
])]
#[case::init_container_small("pod_small.json", init_container(), vec![
    add("/spec/containers/0/volumeMounts"),
    add("/spec/initContainers"),
    add("/spec/volumes"),
])]
fn mutations_are_exact_add_ops(
    #[case] name: &str,
    #[case] settings: Value,
    #[case] expected: Vec<(String, String)>,
) {
    let request = fixture(name);
    let (response, patch) = run(&request, &settings);
    assert!(response.accepted);
    assert_eq!(ops(&patch), expected);
    assert!(
        lost_from(
            &request["object"],
            response.mutated_object.as_ref().unwrap(),
            "",
            &[]
        )
        .is_none()
    );
}

#[rstest]
#[case::virtual_device(json!({}))]
#[case::host_path(host_path())]
#[case::host_path_per_agent(json!({"mountMethod": "k8s-host-path", "agentDirectories": ["java", "python"],
    "requiredNodeLabel": {"key": "odigos.io/agents", "value": "true"}}))]
#[case::init_container(init_container())]
#[case::init_container_per_agent(json!({"mountMethod": "k8s-init-container", "agentDirectories": ["java"],
    "initContainer": {"image": "ghcr.io/example/agents:1.0", "sizeLimit": "200Mi"}}))]
#[case::csi_driver(csi_driver())]
#[case::csi_driver_per_agent(json!({"mountMethod": "k8s-csi-driver", "agentDirectories": ["java", "python"],
    "requiredNodeLabel": {"key": "odigos.io/agents", "value": "true"}}))]
#[case::image_volume(image_volume())]
#[case::image_volume_per_agent_at_root(json!({"mountMethod": "k8s-image-volume", "agentDirectories": ["java"],
    "imageVolume": {"reference": "a:1", "sourcePath": "/"}, "requiredNodeLabel": {"key": "k", "value": "v"}}))]
fn idempotent_on_its_own_output(
    #[case] settings: Value,
    #[values("pod_typical.json", "pod_small.json", "pod_node_affinity.json")] name: &str,
) {
    let mut request = fixture(name);
    let (first, _) = run(&request, &settings);
    request["object"] = first.mutated_object.expect("the first run mutates");
    let (second, patch) = run(&request, &settings);
    assert!(second.accepted);
    assert!(
        second.mutated_object.is_none(),
        "second run changed: {:?}",
        ops(&patch)
    );
}

#[rstest]
#[case::virtual_device(json!({}))]
#[case::host_path(host_path())]
#[case::csi_driver(csi_driver())]
#[case::image_volume(image_volume())]
fn future_fields_survive_and_the_patch_only_adds(#[case] settings: Value) {
    let request = fixture("pod_future_fields.json");
    let (response, patch) = run(&request, &settings);
    let mutated = response.mutated_object.unwrap();
    assert!(!ops(&patch).is_empty());
    assert!(
        ops(&patch).iter().all(|(op, _)| op == "add"),
        "{:?}",
        ops(&patch)
    );
    assert_eq!(
        mutated["futurePodField"],
        request["object"]["futurePodField"]
    );
    assert_eq!(
        mutated["spec"]["futureSpecField"],
        request["object"]["spec"]["futureSpecField"]
    );
    assert_eq!(
        mutated["spec"]["containers"][0]["futureContainerField"],
        json!({"level": 3})
    );
    assert_eq!(
        mutated["spec"]["containers"][0]["resources"]["futureResourcesField"],
        "kept"
    );
    assert!(
        mutated["spec"]["initContainers"][0]
            .as_object()
            .unwrap()
            .contains_key("futureInitField")
    );
}

#[test]
fn init_container_goes_first_and_keeps_the_others() {
    let request = fixture("pod_future_fields.json");
    let (response, _) = run(&request, &init_container());
    let mutated = response.mutated_object.unwrap();
    let inits = mutated["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(inits.len(), 2);
    assert_eq!(inits[0]["name"], "odigos-agent-init");
    assert_eq!(inits[0]["image"], "ghcr.io/example/agents:1.0");
    assert_eq!(
        inits[0]["command"],
        json!([
            "sh",
            "-c",
            COPY_SCRIPT,
            "agent-mount-copy",
            "/instrumentations",
            "/agent-mount-target"
        ])
    );
    assert_eq!(
        inits[0]["volumeMounts"],
        json!([{"name": "odigos-agent", "mountPath": "/agent-mount-target"}])
    );
    assert_eq!(
        inits[0]["resources"],
        json!({"limits": {"cpu": "100m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}})
    );
    let shifted = ["/spec/initContainers"];
    assert_eq!(lost_from(&request["object"], &mutated, "", &shifted), None);
    let volumes = mutated["spec"]["volumes"].as_array().unwrap();
    assert_eq!(
        volumes.last().unwrap(),
        &json!({"name": "odigos-agent", "emptyDir": {}})
    );
    assert_eq!(
        mutated["spec"]["containers"][0]["volumeMounts"][2],
        json!({"name": "odigos-agent", "mountPath": "/var/odigos", "readOnly": true})
    );
}

#[rstest]
#[case::mount_of_missing_volume_host_path(
    "pod_conflict_writable_mount.json",
    host_path(),
    "containers entry \"istio-proxy\" mounts volume \"odigos-agent\" at \"/agents-rw\", but the pod declares no such volume"
)]
#[case::mount_of_missing_volume_csi(
    "pod_conflict_writable_mount.json",
    csi_driver(),
    "but the pod declares no such volume"
)]
#[case::mount_of_missing_volume_image(
    "pod_conflict_writable_mount.json",
    image_volume(),
    "but the pod declares no such volume"
)]
#[case::mount_of_missing_volume_init(
    "pod_conflict_writable_mount.json",
    init_container(),
    "but the pod declares no such volume"
)]
#[case::resource_amount("pod_conflict_resource.json", json!({}), "already sets resources.limits[\"instrumentation.odigos.io/generic\"] to \"2\"")]
#[case::volume_source(
    "pod_conflict_volume.json",
    host_path(),
    "already has a volume \"odigos-agent\" with another source"
)]
#[case::init_volume_source(
    "pod_conflict_volume.json",
    init_container(),
    "already has a volume \"odigos-agent\" with another source"
)]
#[case::mount_path(
    "pod_conflict_mount.json",
    host_path(),
    "container \"cache-warmer\" already has the mount"
)]
#[case::init_container_image(
    "pod_conflict_init_container.json",
    init_container(),
    "init container \"odigos-agent-init\" with image \"busybox:1.36\""
)]
fn conflicts_accept_unchanged_with_a_warning(
    #[case] name: &str,
    #[case] settings: Value,
    #[case] expected: &str,
) {
    let (response, _) = run(&fixture(name), &settings);
    assert!(response.accepted);
    assert!(response.mutated_object.is_none(), "all or nothing");
    let warnings = response.warnings.unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("agent-mount: pod left unchanged: "),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].contains(expected), "{}", warnings[0]);
    let decision = &response.audit_annotations.expect("an audit annotation")["mutation"];
    assert!(decision.starts_with("unchanged: "), "{decision}");
    assert!(decision.contains(expected), "{decision}");
}

#[rstest]
#[case::mutated(
    "pod_typical.json",
    host_path(),
    "k8s-host-path: added the agents to containers \"checkout\", \"cache-warmer\""
)]
#[case::nothing_selected("pod_small.json",
    json!({"ignoredContainers": ["hello"]}),
    "unchanged: no container selected")]
fn the_decision_is_in_the_audit_annotations(
    #[case] name: &str,
    #[case] settings: Value,
    #[case] expected: &str,
) {
    let (response, _) = run(&fixture(name), &settings);
    let decision = &response.audit_annotations.expect("an audit annotation")["mutation"];
    assert!(decision.starts_with(expected), "{decision}");
}

#[test]
fn an_already_mutated_pod_is_recorded_as_unchanged() {
    let mut request = fixture("pod_small.json");
    let (first, _) = run(&request, &csi_driver());
    request["object"] = first.mutated_object.unwrap();
    let (second, _) = run(&request, &csi_driver());
    let decision = &second.audit_annotations.unwrap()["mutation"];
    assert!(
        decision.starts_with("unchanged: containers")
            && decision.ends_with("already have the agents by k8s-csi-driver"),
        "{decision}"
    );
}

#[test]
fn annotation_naming_a_missing_container_warns() {
    let (response, patch) = run(
        &fixture("pod_annotation_unknown_container.json"),
        &json!({}),
    );
    assert_eq!(ops(&patch).len(), 2, "only checkout is instrumented");
    let warnings = response.warnings.unwrap();
    assert!(
        warnings[0].contains("not in the pod: \"ghost\""),
        "{warnings:?}"
    );
}

#[rstest]
#[case::update("pod_update.json")]
#[case::deployment("deployment_create.json")]
fn only_pod_creation_is_mutated(#[case] name: &str) {
    let (response, _) = run(&fixture(name), &json!({}));
    assert!(response.accepted);
    assert!(response.mutated_object.is_none());
    assert!(response.warnings.is_none());
}

/// Issue 8 §4: only core `v1` Pods; a Pod of another version is not ours to read.
#[test]
fn a_pod_of_another_version_is_not_mutated() {
    let mut request = fixture("pod_small.json");
    request["kind"]["version"] = json!("v2alpha1");
    let (response, _) = run(&request, &json!({}));
    assert!(response.accepted);
    assert!(response.mutated_object.is_none());
    assert!(response.warnings.is_none());
}

#[test]
fn an_unreadable_pod_is_rejected_with_400() {
    let (response, _) = run(&fixture("pod_unreadable.json"), &json!({}));
    assert!(!response.accepted);
    assert_eq!(response.code, Some(400));
    let message = response.message.unwrap();
    assert!(
        message.contains("cannot be read as a pod: spec.containers is missing or not an array"),
        "{message}"
    );
}

#[rstest]
#[case::not_json(b"{".to_vec())]
#[case::no_request(b"{\"settings\": {}}".to_vec())]
fn a_malformed_payload_is_rejected_not_trapped(#[case] payload: Vec<u8>) {
    let response = validate(&payload);
    assert!(!response.accepted);
    assert!(
        response
            .message
            .unwrap()
            .starts_with("agent-mount: cannot read the admission request")
    );
}

#[test]
fn invalid_settings_at_validate_time_never_block_the_pod() {
    let (response, _) = run(&fixture("pod_small.json"), &json!({"mountMethod": "nope"}));
    assert!(response.accepted);
    assert!(response.mutated_object.is_none());
    assert!(response.warnings.unwrap()[0].contains("mountMethod: unknown value \"nope\""));
}

#[rstest]
#[case::empty(b"{}".as_slice(), true, None)]
#[case::null(b"null".as_slice(), true, None)]
#[case::unknown_method(br#"{"mountMethod": "VirtualDevice"}"#.as_slice(), false,
    Some("mountMethod: unknown value \"VirtualDevice\", expected one of: k8s-virtual-device, k8s-host-path, k8s-init-container, k8s-csi-driver, k8s-image-volume"))]
#[case::image_reference_missing(br#"{"mountMethod": "k8s-image-volume"}"#.as_slice(), false,
    Some("imageVolume.reference: required with mountMethod \"k8s-image-volume\""))]
#[case::image_volume_under_csi(br#"{"mountMethod": "k8s-csi-driver", "imageVolume": {"reference": "a"}}"#.as_slice(), false,
    Some("imageVolume: not allowed with mountMethod \"k8s-csi-driver\": it applies only to k8s-image-volume"))]
#[case::wrong_type(br#"{"agentDirectories": "java"}"#.as_slice(), false,
    Some("agentDirectories: invalid type: string \"java\", expected a sequence"))]
#[case::not_json(b"nope".as_slice(), false, Some("settings: not valid JSON"))]
fn settings_validation_always_answers(
    #[case] payload: &[u8],
    #[case] valid: bool,
    #[case] message: Option<&str>,
) {
    let response = validate_settings(payload);
    assert_eq!(response.valid, valid, "{:?}", response.message);
    if let Some(expected) = message {
        let got = response.message.unwrap();
        assert!(got.starts_with(expected), "{got}");
    }
}
