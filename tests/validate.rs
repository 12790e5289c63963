//! The policy's `validate`, called natively on the fixtures in `test_data/`.
// Test and bench code: helpers fail loudly too (clippy.toml allows this in #[test] functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use agent_mount::init_container::COPY_SCRIPT;
use agent_mount::response::{validate, validate_settings};
use agent_mount::settings;
use agent_mount_common::MountMethod;
use kubewarden_policy_sdk::response::ValidationResponse;
use rstest::rstest;
use serde_json::{Value, json};
use support::{AGENTS_IMAGE, fixture, lost_from, method_settings, ops, payload, pod_rules};

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
    method_settings(MountMethod::HostPath)
}

fn init_container() -> Value {
    method_settings(MountMethod::InitContainer)
}

/// `settings` with `extra`'s keys set over them.
fn with(mut settings: Value, extra: Value) -> Value {
    for (key, value) in extra.as_object().into_iter().flatten() {
        settings[key] = value.clone();
    }
    settings
}

/// Each method's settings: the least, and with its optional keys (agent directories,
/// node label, its own options). Exhaustive, so a new method must say what it takes.
fn variants(method: MountMethod) -> Vec<Value> {
    let least = method_settings(method);
    let label = json!({"key": "odigos.io/agents", "value": "true"});
    let full = match method {
        MountMethod::VirtualDevice => {
            with(least.clone(), json!({"resourceName": "example.com/agents"}))
        }
        MountMethod::HostPath | MountMethod::CsiDriver => with(
            least.clone(),
            json!({"agentDirectories": ["java", "python"], "requiredNodeLabel": label}),
        ),
        MountMethod::InitContainer => with(
            least.clone(),
            json!({"agentDirectories": ["java"], "initContainer": {"image": AGENTS_IMAGE, "sizeLimit": "200Mi"}}),
        ),
        MountMethod::ImageVolume => with(
            least.clone(),
            json!({"agentDirectories": ["java"], "requiredNodeLabel": label,
                   "imageVolume": {"reference": AGENTS_IMAGE, "sourcePath": "/"}}),
        ),
    };
    vec![least, full]
}

/// The method that `settings` choose.
fn method_of(settings: &Value) -> MountMethod {
    settings::parse(settings.clone())
        .unwrap_or_else(|e| panic!("{settings}: {e}"))
        .method
        .kind()
}

/// (case, fixture, settings, the patch's ops): at least one case per method.
fn exact_patches() -> Vec<(&'static str, &'static str, Value, Vec<&'static str>)> {
    let label = json!({"requiredNodeLabel": {"key": "odigos.io/agents", "value": "true"}});
    let csi = method_settings(MountMethod::CsiDriver);
    let image = method_settings(MountMethod::ImageVolume);
    let affinity_terms = [
        "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchExpressions/1",
        "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/1/matchExpressions/1",
    ];
    let typical_mounts = [
        "/spec/containers/0/volumeMounts/2",
        "/spec/containers/2/volumeMounts",
        "/spec/volumes/3",
    ];
    let small_mounts = vec!["/spec/containers/0/volumeMounts", "/spec/volumes"];
    vec![
        (
            "virtual_device_typical",
            "pod_typical.json",
            json!({}),
            vec![
                "/spec/containers/0/resources/limits/instrumentation.odigos.io~1generic",
                "/spec/containers/0/resources/requests/instrumentation.odigos.io~1generic",
                "/spec/containers/2/resources/limits",
                "/spec/containers/2/resources/requests/instrumentation.odigos.io~1generic",
            ],
        ),
        (
            "virtual_device_small",
            "pod_small.json",
            json!({}),
            vec!["/spec/containers/0/resources"],
        ),
        (
            "virtual_device_custom_resource",
            "pod_small.json",
            json!({"resourceName": "example.com/agents"}),
            vec!["/spec/containers/0/resources"],
        ),
        (
            "host_path_typical",
            "pod_typical.json",
            host_path(),
            typical_mounts.to_vec(),
        ),
        (
            "host_path_small",
            "pod_small.json",
            host_path(),
            small_mounts.clone(),
        ),
        (
            "host_path_annotation_selects",
            "pod_annotation_unknown_container.json",
            host_path(),
            vec!["/spec/containers/0/volumeMounts/2", "/spec/volumes/3"],
        ),
        (
            "host_path_node_label_and_into_terms",
            "pod_node_affinity.json",
            with(host_path(), label.clone()),
            [affinity_terms.as_slice(), typical_mounts.as_slice()].concat(),
        ),
        (
            "host_path_node_label_creates_one_term",
            "pod_small.json",
            with(host_path(), label.clone()),
            [&["/spec/affinity"][..], small_mounts.as_slice()].concat(),
        ),
        (
            "csi_driver_typical",
            "pod_typical.json",
            csi.clone(),
            typical_mounts.to_vec(),
        ),
        (
            "csi_driver_node_label",
            "pod_node_affinity.json",
            with(csi, label),
            [affinity_terms.as_slice(), typical_mounts.as_slice()].concat(),
        ),
        (
            "image_volume_typical",
            "pod_typical.json",
            image.clone(),
            typical_mounts.to_vec(),
        ),
        (
            "image_volume_small_per_agent",
            "pod_small.json",
            with(
                image,
                json!({"agentDirectories": ["java", "python"], "imageVolume": {"reference": "a:1", "sourcePath": "/"}}),
            ),
            small_mounts.clone(),
        ),
        (
            "init_container_small",
            "pod_small.json",
            init_container(),
            vec![
                "/spec/containers/0/volumeMounts",
                "/spec/initContainers",
                "/spec/volumes",
            ],
        ),
    ]
}

#[test]
fn mutations_are_exact_add_ops() {
    let cases = exact_patches();
    for method in MountMethod::ALL {
        assert!(
            cases
                .iter()
                .any(|(_, _, settings, _)| method_of(settings) == method),
            "no exact-patch case for {}",
            method.as_str()
        );
    }
    for (case, name, settings, expected) in cases {
        let request = fixture(name);
        let (response, patch) = run(&request, &settings);
        assert!(response.accepted, "{case}");
        let expected: Vec<(String, String)> = expected
            .into_iter()
            .map(|path| ("add".to_string(), path.to_string()))
            .collect();
        assert_eq!(ops(&patch), expected, "{case}");
        let mutated = response.mutated_object.as_ref().unwrap();
        assert_eq!(
            lost_from(&request["object"], mutated, "", &[]),
            None,
            "{case}"
        );
    }
}

#[rstest]
fn idempotent_on_its_own_output(
    #[values("pod_typical.json", "pod_small.json", "pod_node_affinity.json")] name: &str,
) {
    for settings in MountMethod::ALL.into_iter().flat_map(variants) {
        let mut request = fixture(name);
        let (first, _) = run(&request, &settings);
        request["object"] = first
            .mutated_object
            .unwrap_or_else(|| panic!("{settings}: the first run mutates"));
        let (second, patch) = run(&request, &settings);
        assert!(second.accepted, "{settings}");
        assert!(
            second.mutated_object.is_none(),
            "{settings}: second run changed: {:?}",
            ops(&patch)
        );
    }
}

#[test]
fn future_fields_survive_under_every_method() {
    let request = fixture("pod_future_fields.json");
    let original = &request["object"];
    // lost_from below checks these survive, with every other field.
    for pointer in [
        "/futurePodField",
        "/spec/futureSpecField",
        "/spec/containers/0/futureContainerField",
        "/spec/containers/0/resources/futureResourcesField",
        "/spec/initContainers/0/futureInitField",
    ] {
        assert!(
            original.pointer(pointer).is_some(),
            "fixture lacks {pointer}"
        );
    }
    for method in MountMethod::ALL {
        let (response, patch) = run(&request, &method_settings(method));
        let mutated = response
            .mutated_object
            .unwrap_or_else(|| panic!("{method:?}: not mutated"));
        // The init container goes first, so an index-wise diff shows the others as moved
        // (init_container_goes_first_and_keeps_the_others); every other patch only adds.
        let shifted: &[&str] = match method {
            MountMethod::InitContainer => &["/spec/initContainers"],
            _ => &[],
        };
        assert_eq!(
            lost_from(original, &mutated, "", shifted),
            None,
            "{method:?}"
        );
        if shifted.is_empty() {
            assert!(!ops(&patch).is_empty(), "{method:?}");
            assert!(
                ops(&patch).iter().all(|(op, _)| op == "add"),
                "{method:?}: {:?}",
                ops(&patch)
            );
        }
    }
}

/// Issue 8 §1: a mount of our volume name in a pod without the volume would become a
/// view of the agents once we create the volume, under every method that adds one.
#[test]
fn a_mount_of_the_volume_we_would_create_is_a_conflict() {
    let request = fixture("pod_conflict_writable_mount.json");
    for method in MountMethod::ALL {
        let settings = method_settings(method);
        if settings::parse(settings.clone())
            .unwrap()
            .method
            .mounts()
            .is_none()
        {
            continue; // adds no volume
        }
        let (response, _) = run(&request, &settings);
        assert!(
            response.accepted && response.mutated_object.is_none(),
            "{method:?}"
        );
        let warnings = response.warnings.unwrap_or_default();
        assert!(
            warnings.len() == 1
                && warnings[0].contains(
                    "containers entry \"istio-proxy\" mounts volume \"odigos-agent\" at \"/agents-rw\", but the pod declares no such volume"
                ),
            "{method:?}: {warnings:?}"
        );
    }
}

#[test]
fn init_container_goes_first_and_keeps_the_others() {
    let request = fixture("pod_future_fields.json");
    let (response, _) = run(&request, &init_container());
    let mutated = response.mutated_object.unwrap();
    let inits = mutated["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(inits.len(), 2);
    assert_eq!(inits[0]["name"], "odigos-agent-init");
    assert_eq!(inits[0]["image"], AGENTS_IMAGE);
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
    let (first, _) = run(&request, &method_settings(MountMethod::CsiDriver));
    request["object"] = first.mutated_object.unwrap();
    let (second, _) = run(&request, &method_settings(MountMethod::CsiDriver));
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
#[case::trailing_text(b"{\"request\": {}} x".to_vec())]
#[case::too_deep(format!("{{\"request\": {{\"object\": {}}}}}", "[".repeat(200)).into_bytes())]
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
    Some("agentDirectories: invalid type: string \"java\", expected a list"))]
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

/// The settings come with every request and are read once per change: each call still
/// answers for the settings it was given, whatever the previous call's were.
#[test]
fn each_call_answers_for_its_own_settings() {
    let request = fixture("pod_typical.json");
    let invalid = json!({"mountMethod": "k8s-nope"});
    let answers = |settings: &Value| serde_json::to_value(run(&request, settings).0).unwrap();
    let sequence = [
        method_settings(MountMethod::HostPath),
        method_settings(MountMethod::HostPath),
        invalid.clone(),
        method_settings(MountMethod::VirtualDevice),
        Value::Null,
        method_settings(MountMethod::HostPath),
        invalid,
    ];
    // Each answer, computed first in a thread of its own (nothing read before it).
    let alone: Vec<Value> = sequence
        .iter()
        .map(|settings| {
            let settings = settings.clone();
            let request = request.clone();
            std::thread::spawn(move || serde_json::to_value(run(&request, &settings).0).unwrap())
                .join()
                .unwrap()
        })
        .collect();
    for (settings, expected) in sequence.iter().zip(&alone) {
        assert_eq!(&answers(settings), expected, "settings {settings}");
    }
    // They differ, so a stale read would have been seen.
    assert_ne!(alone[0], alone[2]);
    assert_ne!(alone[0], alone[3]);
    assert_eq!(
        alone[3], alone[4],
        "null settings are the defaults (virtual-device)"
    );
}

/// `settings` with activation on (the default annotation, `agent-mount.io/agents`).
fn with_activation(settings: &Value) -> Value {
    with(settings.clone(), json!({"activation": {}}))
}

/// Every method's [`variants`], each with and without activation.
fn every_variant_with_and_without_activation() -> Vec<Value> {
    MountMethod::ALL
        .into_iter()
        .flat_map(variants)
        .flat_map(|s| [with_activation(&s), s])
        .collect()
}

/// Issue 20: a Windows pod is accepted unchanged with a warning and the audit annotation,
/// under every method, with and without activation (before the fix, every method
/// mutated it, and the API server refused init-container's copy container).
#[test]
fn a_windows_pod_is_left_unchanged_under_every_method() {
    let request = fixture("pod_windows.json");
    for settings in every_variant_with_and_without_activation() {
        let (response, _) = run(&request, &settings);
        assert!(response.accepted, "{settings}");
        assert!(response.mutated_object.is_none(), "{settings}: mutated");
        let warnings = response.warnings.unwrap_or_default();
        assert!(
            warnings.len() == 1
                && warnings[0].starts_with(
                    "agent-mount: pod left unchanged: the pod sets spec.os.name: windows"
                ),
            "{settings}: {warnings:?}"
        );
        let decision = &response.audit_annotations.expect("an audit annotation")["mutation"];
        assert!(
            decision.starts_with("unchanged: the pod sets spec.os.name: windows"),
            "{decision}"
        );
    }
}

/// Issue 20: with pod-level resources, the copy container takes no request or limit of
/// its own for the resources the pod names, so the API server's aggregate check holds,
/// with and without activation (before the fix, the copy's 256Mi and 100m broke it).
#[rstest]
#[case::mount_only(init_container())]
#[case::activated(with_activation(&init_container()))]
#[case::resources_set(with(init_container(), json!({"initContainer": {"image": AGENTS_IMAGE,
    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}})))]
fn pod_level_resources_cover_the_copy_container(#[case] settings: Value) {
    let request = fixture("pod_level_resources.json");
    let original = &request["object"];
    assert_eq!(pod_rules::violations(original), Vec::<String>::new());
    let (response, _) = run(&request, &settings);
    let mutated = response.mutated_object.expect("mutated");
    let copy = &mutated["spec"]["initContainers"][0];
    assert_eq!(copy["name"], "odigos-agent-init");
    assert!(copy.get("resources").is_none(), "{copy}");
    assert_eq!(pod_rules::violations(&mutated), Vec::<String>::new());
    if settings.get("activation").is_some() {
        let env = &mutated["spec"]["containers"][0]["env"][0];
        assert_eq!(env["name"], "JAVA_TOOL_OPTIONS");
        assert!(
            env["value"].as_str().unwrap().contains("-javaagent:"),
            "{env}"
        );
    }
}

/// Issue 21 "`null` in the pod is absent" (the fields outside env): a pod whose
/// affinity, volumes, initContainers, securityContext, resources, os, annotations and
/// the container's resources, volumeMounts and securityContext are `null` is mutated
/// as the pod without them, under every method, node label included (before the fix,
/// `affinity: null` left it unchanged with a warning).
#[test]
fn null_fields_are_absent_under_every_method() {
    let request = fixture("pod_null_fields.json");
    for settings in every_variant_with_and_without_activation() {
        let (response, _) = run(&request, &settings);
        assert!(response.accepted, "{settings}");
        assert_eq!(response.warnings, None, "{settings}");
        let mutated = response
            .mutated_object
            .unwrap_or_else(|| panic!("{settings}: unchanged"));
        assert_eq!(pod_rules::violations(&mutated), Vec::<String>::new());
        if settings.get("requiredNodeLabel").is_some() {
            assert_eq!(
                mutated["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                    ["nodeSelectorTerms"],
                json!([{"matchExpressions": [{"key": "odigos.io/agents", "operator": "In", "values": ["true"]}]}]),
                "{settings}"
            );
        }
        let again = run(
            &json!({"kind": request["kind"], "operation": "CREATE", "object": mutated}),
            &settings,
        )
        .0;
        assert!(again.mutated_object.is_none(), "{settings}: not idempotent");
    }
}
