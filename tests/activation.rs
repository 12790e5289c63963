//! Activation through the policy's `validate`, natively, on the fixtures in `test_data/`:
//! one AdmissionRequest per merge rule, under every method, and every settings error of
//! `test_data/settings_activation_invalid.json` and `test_data/settings_shapes_invalid.json`.
// Test and bench code: helpers fail loudly too (clippy.toml allows this in #[test] functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use agent_mount::response::{validate, validate_settings};
use agent_mount_common::MountMethod;
use rstest::rstest;
use serde_json::{Value, json};
use support::{fixture, method_settings, ops, payload, workspace_root};

const JAVA: &str = "-javaagent:/var/odigos/java/javaagent.jar";
const PYTHON: &str =
    "/var/odigos/python:/var/odigos/python/opentelemetry/instrumentation/auto_instrumentation";
const NODE: &str = "--require /var/odigos/nodejs-community/autoinstrumentation.js";

/// `method`'s least settings with activation on and the exporter in `activation.env`.
fn activated(method: MountMethod) -> Value {
    let mut settings = method_settings(method);
    settings["activation"] = json!({"env": [
        {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://$(HOST_IP):4317"}
    ]});
    settings
}

fn host_ip() -> Value {
    json!({"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}})
}

fn endpoint() -> Value {
    json!({"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://$(HOST_IP):4317"})
}

fn var(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

/// Each merge rule: the fixture, each container's env afterwards (by index), the patch's
/// `replace` paths (the joins), and a piece of each warning.
#[rstest]
#[case::join_absent_is_set("pod_activation_join_absent.json",
    vec![(0, json!([var("LOG_LEVEL", "info"), var("JAVA_TOOL_OPTIONS", JAVA), host_ip(), endpoint()]))],
    &[], &[])]
#[case::join_empty_is_set("pod_activation_join_empty.json",
    vec![(0, json!([var("JAVA_TOOL_OPTIONS", JAVA), host_ip(), endpoint()]))],
    &["/spec/containers/0/env/0/value"], &[])]
#[case::join_appends_after_the_apps_value("pod_activation_join_append.json",
    vec![(0, json!([var("JAVA_TOOL_OPTIONS", &format!("-Xmx1g -Dfile.encoding=UTF-8 {JAVA}")), host_ip(), endpoint()]))],
    &["/spec/containers/0/env/0/value"], &[])]
#[case::join_holding_ours_is_unchanged("pod_activation_join_holds_ours.json",
    vec![(0, json!([var("JAVA_TOOL_OPTIONS", &format!("-Xmx1g {JAVA} -Dx=1")), host_ip(), endpoint()]))],
    &[], &[])]
#[case::duplicates_join_into_the_last("pod_activation_join_duplicates.json",
    vec![(0, json!([var("JAVA_TOOL_OPTIONS", "-Xmx1g"), var("LOG_LEVEL", "info"), var("JAVA_TOOL_OPTIONS", &format!("-Xss1m {JAVA}")), host_ip(), endpoint()]))],
    &["/spec/containers/0/env/2/value"], &[])]
#[case::plain_entries_only_where_absent("pod_activation_plain_present.json",
    vec![(0, json!([{"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    var("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.observability:4317"),
                    var("JAVA_TOOL_OPTIONS", JAVA)]))],
    &[], &[])]
#[case::env_from_activates_with_a_warning("pod_activation_env_from.json",
    vec![(0, json!([var("LOG_LEVEL", "info"), var("JAVA_TOOL_OPTIONS", JAVA), host_ip(), endpoint()]))],
    &[], &["container \"app\" has envFrom, and agent-mount set \"JAVA_TOOL_OPTIONS\", \"HOST_IP\", \"OTEL_EXPORTER_OTLP_ENDPOINT\" in its env"])]
#[case::pairs_per_container("pod_activation_pairs.json",
    vec![
        (0, json!([var("NODE_OPTIONS", &format!("--max-old-space-size=512 {NODE}")), host_ip(), endpoint()])),
        (1, json!([var("PYTHONPATH", &format!("/app:{PYTHON}")), host_ip(), endpoint()])),
        (2, Value::Null),
        (3, Value::Null),
    ],
    &["/spec/containers/0/env/0/value", "/spec/containers/1/env/0/value"],
    &["items that are not container=agent pairs: \"broken\"",
      "names containers \"checkout\" more than once; the first pair of each counts",
      "names containers that are not instrumented: \"istio-proxy\", \"ghost\"",
      "names agents that are not available: \"native=ruby\""])]
fn merge_rules_under_every_method(
    #[case] name: &str,
    #[case] envs: Vec<(usize, Value)>,
    #[case] replaced: &[&str],
    #[case] warnings: &[&str],
) {
    let request = fixture(name);
    for method in MountMethod::ALL {
        let settings = activated(method);
        let response = validate(&payload(&request, &settings));
        assert!(response.accepted, "{method:?}");
        let mutated = response.mutated_object.expect("mutated");
        for (i, env) in &envs {
            assert_eq!(
                &mutated["spec"]["containers"][i]["env"], env,
                "{method:?}: container {i}"
            );
        }
        // Every op adds, but the joins: one `replace` of the joined value each.
        let patch = json_patch::diff(&request["object"], &mutated);
        let others: Vec<(String, String)> = ops(&patch)
            .into_iter()
            .filter(|(op, _)| op != "add")
            .collect();
        let joins: Vec<(String, String)> = replaced
            .iter()
            .map(|p| ("replace".to_string(), p.to_string()))
            .collect();
        assert_eq!(others, joins, "{method:?}");
        let found = response.warnings.unwrap_or_default();
        assert_eq!(found.len(), warnings.len(), "{method:?}: {found:?}");
        for (found, wanted) in found.iter().zip(warnings) {
            assert!(
                found.contains(wanted),
                "{found:?} should contain {wanted:?}"
            );
        }
        // Idempotent: the policy's own output is left alone.
        let mut again = request.clone();
        again["object"] = mutated;
        let second = validate(&payload(&again, &settings));
        assert!(second.mutated_object.is_none(), "{method:?}");
    }
}

#[rstest]
#[case::value_from_on_a_join_variable(
    "pod_activation_conflict_value_from.json",
    "container \"app\" sets JAVA_TOOL_OPTIONS from valueFrom, which agent-mount cannot read"
)]
fn conflicts_leave_the_whole_pod_unchanged(#[case] name: &str, #[case] expected: &str) {
    for method in MountMethod::ALL {
        let response = validate(&payload(&fixture(name), &activated(method)));
        assert!(response.accepted);
        assert!(
            response.mutated_object.is_none(),
            "{method:?}: all or nothing"
        );
        let warnings = response.warnings.unwrap_or_default();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("agent-mount: pod left unchanged: ")
                && warnings[0].contains(expected),
            "{}",
            warnings[0]
        );
        let decision = &response.audit_annotations.expect("an audit annotation")["mutation"];
        assert!(
            decision.starts_with("unchanged: ") && decision.contains(expected),
            "{decision}"
        );
    }
}

#[test]
fn without_activation_or_annotation_nothing_is_activated() {
    let request = fixture("pod_activation_join_append.json");
    let mut without_annotation = request.clone();
    without_annotation["object"]["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    for method in MountMethod::ALL {
        for (request, settings) in [
            (&request, method_settings(method)),
            (&without_annotation, activated(method)),
        ] {
            let response = validate(&payload(request, &settings));
            let mutated = response.mutated_object.expect("mounted");
            assert_eq!(
                mutated["spec"]["containers"][0]["env"],
                request["object"]["spec"]["containers"][0]["env"],
                "{method:?}"
            );
        }
    }
}

#[test]
fn the_audit_annotation_names_the_activated_containers() {
    let response = validate(&payload(
        &fixture("pod_activation_pairs.json"),
        &activated(MountMethod::HostPath),
    ));
    let decision = &response.audit_annotations.unwrap()["mutation"];
    assert_eq!(
        decision,
        "k8s-host-path: added the agents to containers \"checkout\", \"worker\", \"native\"; activated \"checkout=nodejs\", \"worker=python\""
    );
}

/// The settings errors of a `test_data/settings_*_invalid.json` file.
fn invalid_settings(file: &str) -> Vec<(String, Value, String)> {
    let path = workspace_root().join("test_data").join(file);
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    cases
        .into_iter()
        .map(|c| {
            (
                c["case"].as_str().unwrap().to_string(),
                c["settings"].clone(),
                c["error"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[rstest]
#[case::activation("settings_activation_invalid.json")]
#[case::shapes("settings_shapes_invalid.json")]
fn activation_settings_errors_name_key_value_and_allowed(#[case] file: &str) {
    let cases = invalid_settings(file);
    assert!(cases.len() >= 10, "{file}");
    for (case, settings, error) in cases {
        let response = validate_settings(&serde_json::to_vec(&settings).unwrap());
        assert!(!response.valid, "{case}");
        let message = response.message.unwrap_or_default();
        assert!(
            message.starts_with(&error),
            "{case}: {message:?} should start with {error:?}"
        );
    }
}
