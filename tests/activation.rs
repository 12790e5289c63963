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
use std::collections::HashMap;
use support::kubelet::{FIELDS, expand, holds_whole, resolve, value_of};
use support::{fixture, method_settings, ops, payload, workspace_root};

const JAVA: &str = "-javaagent:/var/odigos/java/javaagent.jar";
const PYTHON: &str =
    "/var/odigos/python:/var/odigos/python/opentelemetry/instrumentation/auto_instrumentation";
const NODE: &str = "--require /var/odigos/nodejs-community/autoinstrumentation.js";

/// `method`'s least settings with activation on and the exporter in `activation.env`,
/// without the resource attributes (the merge rules' cases; [`named`] has them).
fn activated(method: MountMethod) -> Value {
    let mut settings = named(method);
    settings["activation"]["resourceAttributes"] = json!(false);
    settings
}

/// `method`'s least settings with activation on (resource attributes by default) and
/// the exporter in `activation.env`.
fn named(method: MountMethod) -> Value {
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

/// Idempotent: the policy's own output, sent again, is left alone.
fn assert_left_alone_on_its_own_output(
    request: &Value,
    mutated: Value,
    settings: &Value,
    method: MountMethod,
) {
    let mut again = request.clone();
    again["object"] = mutated;
    let second = validate(&payload(&again, settings));
    assert!(second.mutated_object.is_none(), "{method:?}");
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
    &[], &["containers \"app\" have envFrom, and agent-mount set \"JAVA_TOOL_OPTIONS\", \"HOST_IP\", \"OTEL_EXPORTER_OTLP_ENDPOINT\" in their env"])]
#[case::env_and_env_from_null_are_absent("pod_activation_env_null.json",
    vec![(0, json!([var("JAVA_TOOL_OPTIONS", JAVA), host_ip(), endpoint()]))],
    &["/spec/containers/0/env"], &[])]
#[case::value_from_renamed_and_joined("pod_activation_value_from_renamed.json",
    vec![(0, json!([var("LOG_LEVEL", "info"),
        {"name": "ORIGINAL_JAVA_TOOL_OPTIONS", "valueFrom": {"configMapKeyRef": {"name": "jvm", "key": "options"}}},
        var("JAVA_TOOL_OPTIONS", &format!("$(ORIGINAL_JAVA_TOOL_OPTIONS) {JAVA}")), host_ip(), endpoint()]))],
    &["/spec/containers/0/env/1/name"], &[])]
#[case::holding_ours_as_the_jvm_reads_it("pod_activation_holds_ours_as_the_jvm_reads.json",
    vec![(0, json!([var("JAVA_TOOL_OPTIONS", &format!("-Xmx1g\t\"{JAVA}=debug\"\n-Dx=1")), host_ip(), endpoint()]))],
    &[], &[])]
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
        assert_left_alone_on_its_own_output(&request, mutated, &settings, method);
    }
}

#[rstest]
#[case::optional_value_from_on_a_join_variable(
    "pod_activation_conflict_value_from.json",
    "container \"app\" sets JAVA_TOOL_OPTIONS from an optional valueFrom, which agent-mount cannot read"
)]
#[case::original_name_taken(
    "pod_activation_conflict_original_taken.json",
    "container \"app\" sets JAVA_TOOL_OPTIONS from valueFrom and also has an entry ORIGINAL_JAVA_TOOL_OPTIONS"
)]
#[case::app_defines_a_name_our_value_refers_to(
    "pod_activation_conflict_defines_reference.json",
    "container \"app\" defines HOST_IP itself, and the value agent-mount writes to OTEL_EXPORTER_OTLP_ENDPOINT refers to $(HOST_IP)"
)]
#[case::ours_would_close_the_apps_unclosed_reference(
    "pod_activation_conflict_unclosed.json",
    "container \"app\": OTEL_RESOURCE_ATTRIBUTES's value ends in an unclosed $( or a $"
)]
fn conflicts_leave_the_whole_pod_unchanged(#[case] name: &str, #[case] expected: &str) {
    for method in MountMethod::ALL {
        let response = validate(&payload(&fixture(name), &named(method)));
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

/// The note names the containers and the activated pairs, on the first admission and
/// on a second one, which finds its own output.
#[test]
fn the_audit_annotation_names_the_activated_containers() {
    let mut request = fixture("pod_activation_pairs.json");
    let settings = activated(MountMethod::HostPath);
    let response = validate(&payload(&request, &settings));
    let decision = &response.audit_annotations.unwrap()["mutation"];
    assert_eq!(
        decision,
        "k8s-host-path: added the agents to containers \"checkout\", \"worker\", \"native\"; activated \"checkout=nodejs\", \"worker=python\""
    );
    request["object"] = response.mutated_object.expect("mutated");
    let again = validate(&payload(&request, &settings));
    assert_eq!(
        again.audit_annotations.unwrap()["mutation"],
        "unchanged: containers \"checkout\", \"worker\", \"native\" already have the agents by k8s-host-path; activated \"checkout=nodejs\", \"worker=python\""
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

/// A custom recipe whose joined value refers to another entry of the recipe, as in the
/// issue: the JVM got `-javaagent:$(OTEL_JAVAAGENT_JAR)` as text once the app set
/// `JAVA_TOOL_OPTIONS` itself. The jar's entry now goes before the app's.
#[test]
fn a_custom_recipe_refers_to_its_own_entry() {
    let request = fixture("pod_activation_reference_order.json");
    for method in MountMethod::ALL {
        let mut settings = activated(method);
        settings["activation"]["agents"] = json!({"java": {"directory": "java", "env": [
            {"name": "JAVA_TOOL_OPTIONS", "value": "-javaagent:$(OTEL_JAVAAGENT_JAR)", "join": " "},
            {"name": "OTEL_JAVAAGENT_JAR", "value": "{dir}/java/javaagent.jar"}
        ]}});
        let response = validate(&payload(&request, &settings));
        let mutated = response.mutated_object.expect("mutated");
        let container = &mutated["spec"]["containers"][0];
        assert_eq!(
            container["env"],
            json!([
                var("LOG_LEVEL", "info"),
                var("OTEL_JAVAAGENT_JAR", "/var/odigos/java/javaagent.jar"),
                var(
                    "JAVA_TOOL_OPTIONS",
                    "-Xmx1g -javaagent:$(OTEL_JAVAAGENT_JAR)"
                ),
                var("GREETING", "$(LOG_LEVEL)"),
                host_ip(),
                endpoint()
            ]),
            "{method:?}"
        );
        let env = resolve(container);
        assert_eq!(
            value_of(&env, "JAVA_TOOL_OPTIONS"),
            Some(format!("-Xmx1g {JAVA}").as_str())
        );
        assert_left_alone_on_its_own_output(&request, mutated, &settings, method);
    }
}

/// The pod's downward-API value of `path` in these tests.
fn field(path: &str) -> &'static str {
    FIELDS.iter().find(|(p, _)| *p == path).unwrap().1
}

/// A Deployment's pod, as its ReplicaSet creates it: the service is the Deployment, the
/// attributes name both workloads, the app's keys win, and the downward-API entries go
/// before the app's own OTEL_RESOURCE_ATTRIBUTES, which refers to them once joined.
#[test]
fn a_deployments_pod_gets_its_service_name_and_attributes() {
    let request = fixture("pod_activation_resource_deployment.json");
    let downward = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
    for method in MountMethod::ALL {
        let settings = named(method);
        let response = validate(&payload(&request, &settings));
        assert_eq!(response.warnings, None, "{method:?}");
        let mutated = response.mutated_object.expect("mutated");
        let app = &mutated["spec"]["containers"][0];
        assert_eq!(
            app["env"],
            json!([
                downward("OTEL_RESOURCE_ATTRIBUTES_NODE_NAME", "spec.nodeName"),
                downward("OTEL_RESOURCE_ATTRIBUTES_POD_UID", "metadata.uid"),
                var(
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "team=shop,k8s.pod.name=fixed,k8s.container.name=app,k8s.deployment.name=checkout,k8s.namespace.name=shop,k8s.node.name=$(OTEL_RESOURCE_ATTRIBUTES_NODE_NAME),k8s.pod.uid=$(OTEL_RESOURCE_ATTRIBUTES_POD_UID),k8s.replicaset.name=checkout-7d9f8b6c4"
                ),
                var("LOG_LEVEL", "info"),
                var("JAVA_TOOL_OPTIONS", JAVA),
                host_ip(),
                endpoint(),
                var("OTEL_SERVICE_NAME", "checkout"),
            ]),
            "{method:?}"
        );
        let worker = resolve(&mutated["spec"]["containers"][1]);
        // The worker's own service name wins; its attributes come from the pod.
        assert_eq!(value_of(&worker, "OTEL_SERVICE_NAME"), Some("shop-worker"));
        assert_eq!(
            value_of(&worker, "OTEL_RESOURCE_ATTRIBUTES").unwrap(),
            format!(
                "k8s.container.name=worker,k8s.deployment.name=checkout,k8s.namespace.name=shop,k8s.node.name={},k8s.pod.name={},k8s.pod.uid={},k8s.replicaset.name=checkout-7d9f8b6c4",
                field("spec.nodeName"),
                field("metadata.name"),
                field("metadata.uid")
            )
        );
        let app = resolve(app);
        assert_eq!(
            value_of(&app, "OTEL_RESOURCE_ATTRIBUTES").unwrap(),
            format!(
                "team=shop,k8s.pod.name=fixed,k8s.container.name=app,k8s.deployment.name=checkout,k8s.namespace.name=shop,k8s.node.name={},k8s.pod.uid={},k8s.replicaset.name=checkout-7d9f8b6c4",
                field("spec.nodeName"),
                field("metadata.uid")
            )
        );
        assert_left_alone_on_its_own_output(&request, mutated, &settings, method);
    }
}

/// Every workload kind names the service, through each fixture's pod.
#[rstest]
#[case::stateful_set("StatefulSet", "db", "db", "k8s.statefulset.name=db")]
#[case::daemon_set(
    "DaemonSet",
    "node-agent",
    "node-agent",
    "k8s.daemonset.name=node-agent"
)]
#[case::cron_job(
    "Job",
    "report-28973520",
    "report",
    "k8s.cronjob.name=report,k8s.job.name=report-28973520"
)]
#[case::job("Job", "migrate", "migrate", "k8s.job.name=migrate")]
#[case::bare_replica_set("ReplicaSet", "legacy", "legacy", "k8s.replicaset.name=legacy")]
fn each_workload_names_the_service(
    #[case] kind: &str,
    #[case] owner: &str,
    #[case] service: &str,
    #[case] attributes: &str,
) {
    let mut request = fixture("pod_activation_resource_deployment.json");
    request["object"]["metadata"]["ownerReferences"][0]["kind"] = json!(kind);
    request["object"]["metadata"]["ownerReferences"][0]["name"] = json!(owner);
    let response = validate(&payload(&request, &named(MountMethod::HostPath)));
    let mutated = response.mutated_object.expect("mutated");
    let app = resolve(&mutated["spec"]["containers"][0]);
    assert_eq!(value_of(&app, "OTEL_SERVICE_NAME"), Some(service));
    let value = value_of(&app, "OTEL_RESOURCE_ATTRIBUTES").unwrap();
    assert!(value.contains(attributes), "{value}");
}

#[test]
fn resource_attributes_false_turns_them_off() {
    let request = fixture("pod_activation_resource_deployment.json");
    let response = validate(&payload(&request, &activated(MountMethod::HostPath)));
    let mutated = response.mutated_object.expect("mutated");
    let env = resolve(&mutated["spec"]["containers"][0]);
    assert_eq!(
        value_of(&env, "OTEL_RESOURCE_ATTRIBUTES"),
        Some("team=shop,k8s.pod.name=fixed")
    );
    assert_eq!(value_of(&env, "OTEL_SERVICE_NAME"), None);
}

/// One warning for every container with envFrom, cut after 10 names.
#[test]
fn env_from_warns_once_for_the_whole_pod() {
    let response = validate(&payload(
        &fixture("pod_activation_env_from_many.json"),
        &activated(MountMethod::HostPath),
    ));
    let warnings = response.warnings.unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("agent-mount: containers \"app-0\", \"app-1\"")
            && warnings[0].contains("\"app-9\" and 2 more have envFrom, and agent-mount set \"JAVA_TOOL_OPTIONS\", \"HOST_IP\", \"OTEL_EXPORTER_OTLP_ENDPOINT\" in their env"),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].len() < 600, "{}", warnings[0].len());
}

/// Every fixture, activated under every method: each variable the policy wrote resolves,
/// as the kubelet resolves it, to what the policy meant, whole.
#[test]
fn every_value_written_resolves_as_meant() {
    let mut checked = 0;
    for entry in std::fs::read_dir(workspace_root().join("test_data")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.starts_with("pod_activation_") {
            continue;
        }
        let request = fixture(&name);
        for method in MountMethod::ALL {
            let response = validate(&payload(&request, &named(method)));
            let Some(mutated) = response.mutated_object else {
                continue;
            };
            let before = request["object"]["spec"]["containers"].as_array().unwrap();
            for (i, container) in mutated["spec"]["containers"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
            {
                checked += resolves_as_meant(&before[i], container);
            }
        }
    }
    assert!(checked > 50, "{checked}");
}

/// Checks one container: the joined variables hold ours whole and resolved, the
/// variables the policy added resolve to their meant values. Returns the count checked.
fn resolves_as_meant(before: &Value, after: &Value) -> usize {
    let env = resolve(after);
    let app = resolve(before);
    // What the policy's values mean: each of its own references resolved against what
    // it meant them to name (the final values; an app definition is a conflict).
    let meant: HashMap<String, String> = env.iter().cloned().collect();
    let mut checked = 0;
    let joins = [
        ("JAVA_TOOL_OPTIONS", " ", JAVA),
        ("PYTHONPATH", ":", PYTHON),
        ("NODE_OPTIONS", " ", NODE),
        ("OTEL_RESOURCE_ATTRIBUTES", ",", ""),
    ];
    for (name, separator, ours) in joins {
        let Some(value) = value_of(&env, name) else {
            continue;
        };
        assert!(
            !value.contains("$(OTEL_") && !value.contains("$(ORIGINAL_"),
            "{name}={value:?}"
        );
        if !ours.is_empty() {
            assert!(holds_whole(value, ours, separator), "{name}={value:?}");
        }
        checked += 1;
    }
    for (name, value) in &env {
        if value_of(&app, name).is_none() && name != "JAVA_TOOL_OPTIONS" {
            // Added: a value with no reference left to a variable of the container.
            let unresolved = meant.keys().any(|n| value.contains(&format!("$({n})")));
            assert!(!unresolved, "{name}={value:?}");
            checked += 1;
        }
    }
    checked
}

#[test]
fn expansion_as_the_kubelet() {
    let defined = HashMap::from([("A".to_string(), "1".to_string())]);
    for (input, expected) in [
        ("$(A)", "1"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$1"),
        ("$(B)", "$(B)"),
        ("$(A", "$(A"),
        ("x$", "x$"),
        ("$x$(A)", "$x1"),
        ("$()", "$()"),
        ("ü$(A)", "ü1"),
        ("$ü", "$\u{c3}\u{fffd}"),
    ] {
        assert_eq!(expand(input, &defined), expected, "{input}");
    }
}
