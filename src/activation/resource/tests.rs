use super::*;
use crate::activation::env::ToMerge;
use rstest::rstest;
use serde_json::json;

/// A pod with the given metadata.
fn pod(metadata: Value) -> Value {
    json!({"metadata": metadata, "spec": {"containers": [{"name": "app"}]}})
}

fn owned_by(kind: &str, name: &str) -> Value {
    json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u", "controller": true}])
}

/// The service name order: annotation, label, workload, generateName, pod name.
#[rstest]
#[case::annotation(json!({"annotations": {"resource.opentelemetry.io/service.name": "cart"}, "labels": {"app.kubernetes.io/name": "shop"}, "ownerReferences": owned_by("StatefulSet", "db")}), Some("cart"))]
#[case::label(json!({"labels": {"app.kubernetes.io/name": "shop"}, "ownerReferences": owned_by("StatefulSet", "db")}), Some("shop"))]
#[case::empty_annotation_is_absent(json!({"annotations": {"resource.opentelemetry.io/service.name": ""}, "labels": {"app.kubernetes.io/name": "shop"}}), Some("shop"))]
#[case::deployment(json!({"labels": {"pod-template-hash": "7d9f8b"}, "ownerReferences": owned_by("ReplicaSet", "checkout-7d9f8b"), "generateName": "checkout-7d9f8b-"}), Some("checkout"))]
#[case::replica_set_without_hash(json!({"ownerReferences": owned_by("ReplicaSet", "checkout-7d9f8b")}), Some("checkout-7d9f8b"))]
#[case::stateful_set(json!({"ownerReferences": owned_by("StatefulSet", "db"), "name": "db-0"}), Some("db"))]
#[case::daemon_set(json!({"ownerReferences": owned_by("DaemonSet", "agent")}), Some("agent"))]
#[case::cron_job(json!({"ownerReferences": owned_by("Job", "report-28973520")}), Some("report"))]
#[case::job(json!({"ownerReferences": owned_by("Job", "migrate")}), Some("migrate"))]
#[case::generate_name(json!({"generateName": "worker-"}), Some("worker"))]
#[case::name(json!({"name": "debug"}), Some("debug"))]
#[case::none(json!({}), None)]
fn service_name_order(#[case] metadata: Value, #[case] expected: Option<&str>) {
    assert_eq!(
        describe(&pod(metadata), "shop").service_name.as_deref(),
        expected
    );
}

/// The workload attributes, the direct owner too where it differs.
#[rstest]
#[case::deployment("ReplicaSet", "checkout-7d9f8b", &[("k8s.deployment.name", "checkout"), ("k8s.replicaset.name", "checkout-7d9f8b")])]
#[case::stateful_set("StatefulSet", "db", &[("k8s.statefulset.name", "db")])]
#[case::daemon_set("DaemonSet", "agent", &[("k8s.daemonset.name", "agent")])]
#[case::cron_job("Job", "report-28973520", &[("k8s.cronjob.name", "report"), ("k8s.job.name", "report-28973520")])]
#[case::job("Job", "migrate-x", &[("k8s.job.name", "migrate-x")])]
#[case::unknown_kind("Workflow", "w", &[])]
fn workload_attributes(#[case] kind: &str, #[case] name: &str, #[case] expected: &[(&str, &str)]) {
    let described = describe(
        &pod(
            json!({"labels": {"pod-template-hash": "7d9f8b"}, "ownerReferences": owned_by(kind, name)}),
        ),
        "shop",
    );
    let mut wanted: Vec<(&str, String)> = vec![("k8s.namespace.name", "shop".into())];
    wanted.extend(expected.iter().map(|(k, v)| (*k, v.to_string())));
    assert_eq!(described.attributes, wanted);
}

#[test]
fn the_controller_owner_counts() {
    let owners = json!([{"kind": "ConfigMap", "name": "x"}, {"kind": "StatefulSet", "name": "db", "controller": true}]);
    let described = describe(&pod(json!({"ownerReferences": owners})), "");
    assert_eq!(described.service_name.as_deref(), Some("db"));
    assert_eq!(
        described.attributes,
        [("k8s.statefulset.name", "db".to_string())]
    );
}

fn container(env: Value) -> Map<String, Value> {
    json!({"name": "app", "env": env})
        .as_object()
        .cloned()
        .unwrap()
}

/// Every entry [`entries`] gives the container, the downward ones built as at load.
fn entries_of(described: &PodResource, container: &Map<String, Value>) -> Vec<EnvEntry> {
    entries(described, container, &downward())
        .iter()
        .map(|entry| entry.entry().clone())
        .collect()
}

fn names(entries: &[EnvEntry]) -> Vec<&str> {
    entries.iter().map(EnvEntry::name).collect()
}

#[test]
fn a_container_gets_its_name_and_every_attribute() {
    let described = describe(
        &pod(
            json!({"labels": {"pod-template-hash": "h1"}, "ownerReferences": owned_by("ReplicaSet", "web-h1")}),
        ),
        "shop",
    );
    let entries = entries_of(&described, &container(json!([])));
    assert_eq!(
        names(&entries),
        [
            "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME",
            "OTEL_RESOURCE_ATTRIBUTES_POD_NAME",
            "OTEL_RESOURCE_ATTRIBUTES_POD_UID",
            "OTEL_SERVICE_NAME",
            "OTEL_RESOURCE_ATTRIBUTES"
        ]
    );
    assert_eq!(
        entries[3],
        EnvEntry::Value {
            name: SERVICE_NAME.into(),
            value: "web".into()
        }
    );
    assert_eq!(
        entries[4],
        EnvEntry::Join {
            name: RESOURCE_ATTRIBUTES.into(),
            value: "k8s.container.name=app,k8s.deployment.name=web,k8s.namespace.name=shop,k8s.node.name=$(OTEL_RESOURCE_ATTRIBUTES_NODE_NAME),k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME),k8s.pod.uid=$(OTEL_RESOURCE_ATTRIBUTES_POD_UID),k8s.replicaset.name=web-h1".into(),
            separator: ",".into()
        }
    );
    assert_eq!(
        entries[1],
        EnvEntry::ValueFrom {
            name: "OTEL_RESOURCE_ATTRIBUTES_POD_NAME".into(),
            source: Prepared::new(json!({"fieldRef": {"fieldPath": "metadata.name"}}))
        }
    );
}

#[test]
fn the_apps_keys_win() {
    let described = describe(&pod(json!({"name": "p"})), "shop");
    let app = container(json!([{"name": "OTEL_RESOURCE_ATTRIBUTES",
        "value": "service.name=mine, k8s.pod.name=fixed,k8s.node.name=n,k8s.pod.uid=u,team=a"}]));
    let entries = entries_of(&described, &app);
    // No downward entry is referenced, and the app's service.name keeps OTEL_SERVICE_NAME out.
    assert_eq!(
        entries,
        [EnvEntry::Join {
            name: RESOURCE_ATTRIBUTES.into(),
            value: "k8s.container.name=app,k8s.namespace.name=shop".into(),
            separator: ",".into()
        }]
    );
    let all = container(json!([{"name": "OTEL_RESOURCE_ATTRIBUTES",
        "value": "service.name=mine,k8s.container.name=c,k8s.namespace.name=x,k8s.pod.name=fixed,k8s.node.name=n,k8s.pod.uid=u"}]));
    assert_eq!(entries_of(&described, &all), []);
}

#[test]
fn pod_text_is_written_literally() {
    let described = describe(
        &pod(json!({"annotations": {"resource.opentelemetry.io/service.name": "a$(B)$$c"}})),
        "",
    );
    let entries = entries_of(&described, &container(json!([])));
    assert!(entries.contains(&EnvEntry::Value {
        name: SERVICE_NAME.into(),
        value: "a$$(B)$$$$c".into()
    }));
}

#[rstest]
#[case::dns_name("web-1.x", "web-1.x")]
#[case::space_comma_equals_percent("a b,c=d%", "a%20b%2Cc=d%25")]
#[case::quote_backslash_semicolon("\"\\;", "%22%5C%3B")]
#[case::unicode("ü", "%C3%BC")]
#[case::dollar("a$b", "a$$b")]
fn attribute_values_are_percent_encoded(#[case] value: &str, #[case] expected: &str) {
    assert_eq!(percent_encoded(value), expected);
}

/// While resourceAttributes is on, the settings may not set what it writes.
#[rstest]
#[case::in_activation_env(json!({"env": [{"name": "OTEL_SERVICE_NAME", "value": "x"}]}), "activation.env[0].name")]
#[case::in_a_recipe(json!({"agents": {"java": {"directory": "java", "env": [
    {"name": "JAVA_TOOL_OPTIONS", "value": "-javaagent:{dir}/java/javaagent.jar", "join": " "},
    {"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "a=b"}]}}}), "activation.agents.java.env[1].name")]
#[case::a_downward_entry(json!({"env": [{"name": "OTEL_RESOURCE_ATTRIBUTES_POD_UID", "value": "x"}]}), "activation.env[0].name")]
fn settings_may_not_set_what_resource_attributes_writes(#[case] raw: Value, #[case] key: &str) {
    use crate::activation::{Activation, RawActivation};
    let parsed = RawActivation::read(raw.clone(), "activation").unwrap();
    let err = Activation::from_raw(parsed, "/var/odigos", &[])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with(key), "{err}");
    assert!(
        err.contains("set activation.resourceAttributes: false"),
        "{err}"
    );
    let mut off = raw;
    off["resourceAttributes"] = json!(false);
    let parsed = RawActivation::read(off, "activation").unwrap();
    assert!(Activation::from_raw(parsed, "/var/odigos", &[]).is_ok());
}
