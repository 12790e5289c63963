use super::*;
use rstest::rstest;
use serde_json::json;

const JAVA: &str = "-javaagent:/var/odigos/java/javaagent.jar";

fn join(name: &str, value: &str, separator: &str) -> EnvEntry {
    EnvEntry::Join {
        name: name.into(),
        value: value.into(),
        separator: separator.into(),
    }
}

fn plain(name: &str, value: &str) -> EnvEntry {
    EnvEntry::Value {
        name: name.into(),
        value: value.into(),
    }
}

fn from_host_ip(name: &str) -> EnvEntry {
    EnvEntry::ValueFrom {
        name: name.into(),
        source: json!({"fieldRef": {"fieldPath": "status.hostIP"}}),
    }
}

/// The java recipe, then activation.env's HOST_IP and endpoint.
fn java_recipe() -> Vec<EnvEntry> {
    vec![
        join("JAVA_TOOL_OPTIONS", JAVA, " "),
        from_host_ip("HOST_IP"),
        plain("OTEL_EXPORTER_OTLP_ENDPOINT", "http://$(HOST_IP):4317"),
    ]
}

fn container(env: Option<Value>) -> Map<String, Value> {
    let mut c = json!({"name": "app", "image": "app:1"});
    if let Some(env) = env {
        c["env"] = env;
    }
    c.as_object().cloned().unwrap()
}

/// Each merge rule: the env before, the env after, and the variables reported as ours.
#[rstest]
#[case::join_absent_is_set(
    None,
    json!([{"name": "JAVA_TOOL_OPTIONS", "value": JAVA},
           {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
           {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://$(HOST_IP):4317"}]),
    &["JAVA_TOOL_OPTIONS", "HOST_IP", "OTEL_EXPORTER_OTLP_ENDPOINT"]
)]
#[case::join_empty_value_is_set(
    Some(json!([{"name": "JAVA_TOOL_OPTIONS", "value": ""}, {"name": "HOST_IP", "value": "x"}, {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "y"}])),
    json!([{"name": "JAVA_TOOL_OPTIONS", "value": JAVA}, {"name": "HOST_IP", "value": "x"}, {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "y"}]),
    &["JAVA_TOOL_OPTIONS"]
)]
#[case::join_missing_value_is_set(
    Some(json!([{"name": "JAVA_TOOL_OPTIONS"}, {"name": "HOST_IP", "value": "x"}, {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "y"}])),
    json!([{"name": "JAVA_TOOL_OPTIONS", "value": JAVA}, {"name": "HOST_IP", "value": "x"}, {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "y"}]),
    &["JAVA_TOOL_OPTIONS"]
)]
#[case::join_appends_after_the_apps_value(
    Some(json!([{"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx1g"}, {"name": "HOST_IP", "value": "x"}, {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "y"}])),
    json!([{"name": "JAVA_TOOL_OPTIONS", "value": format!("-Xmx1g {JAVA}")}, {"name": "HOST_IP", "value": "x"}, {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "y"}]),
    &["JAVA_TOOL_OPTIONS"]
)]
#[case::join_already_holding_ours_is_unchanged(
    Some(json!([{"name": "JAVA_TOOL_OPTIONS", "value": format!("-Dx=1  {JAVA} -Xmx1g")}, {"name": "HOST_IP", "value": "x"}, {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "y"}])),
    json!([{"name": "JAVA_TOOL_OPTIONS", "value": format!("-Dx=1  {JAVA} -Xmx1g")}, {"name": "HOST_IP", "value": "x"}, {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "y"}]),
    &["JAVA_TOOL_OPTIONS"]
)]
#[case::join_ours_only_as_part_of_an_item_is_appended(
    Some(json!([{"name": "JAVA_TOOL_OPTIONS", "value": format!("{JAVA}.old")}, {"name": "HOST_IP", "value": "x"}, {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "y"}])),
    json!([{"name": "JAVA_TOOL_OPTIONS", "value": format!("{JAVA}.old {JAVA}")}, {"name": "HOST_IP", "value": "x"}, {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "y"}]),
    &["JAVA_TOOL_OPTIONS"]
)]
#[case::duplicates_join_into_the_last(
    Some(json!([{"name": "JAVA_TOOL_OPTIONS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, {"name": "JAVA_TOOL_OPTIONS", "value": "-Xss1m"}, {"name": "HOST_IP", "value": "x"}, {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "y"}])),
    json!([{"name": "JAVA_TOOL_OPTIONS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, {"name": "JAVA_TOOL_OPTIONS", "value": format!("-Xss1m {JAVA}")}, {"name": "HOST_IP", "value": "x"}, {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "y"}]),
    &["JAVA_TOOL_OPTIONS"]
)]
#[case::plain_entries_only_where_absent(
    Some(json!([{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://collector:4317"}, {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}])),
    json!([{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://collector:4317"}, {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
           {"name": "JAVA_TOOL_OPTIONS", "value": JAVA}]),
    &["JAVA_TOOL_OPTIONS"]
)]
#[case::new_entries_after_the_apps_in_recipe_order(
    Some(json!([{"name": "A", "value": "1"}, {"name": "HOST_IP", "value": "10.0.0.1"}])),
    json!([{"name": "A", "value": "1"}, {"name": "HOST_IP", "value": "10.0.0.1"},
           {"name": "JAVA_TOOL_OPTIONS", "value": JAVA},
           {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://$(HOST_IP):4317"}]),
    &["JAVA_TOOL_OPTIONS", "OTEL_EXPORTER_OTLP_ENDPOINT"]
)]
fn merge_rules(#[case] before: Option<Value>, #[case] after: Value, #[case] ours: &[&str]) {
    let mut c = container(before);
    let entries = java_recipe();
    let merged = merge(&mut c, &entries).unwrap();
    assert_eq!(c["env"], after);
    assert_eq!(merged.ours, ours);
    assert_eq!(merged.warning, None);
    // Idempotent: the same entries again change nothing and report the same variables.
    let mut again = c.clone();
    let second = merge(&mut again, &entries).unwrap();
    assert!(!second.changed);
    assert_eq!(again, c);
    assert_eq!(second.ours, merged.ours);
}

#[test]
fn merge_reports_whether_env_changed() {
    let mut c = container(None);
    assert!(merge(&mut c, &java_recipe()).unwrap().changed);
    let mut c = container(Some(json!([{"name": "JAVA_TOOL_OPTIONS", "value": JAVA}])));
    assert!(
        !merge(&mut c, &[join("JAVA_TOOL_OPTIONS", JAVA, " ")])
            .unwrap()
            .changed
    );
    assert_eq!(
        c["env"],
        json!([{"name": "JAVA_TOOL_OPTIONS", "value": JAVA}])
    );
}

#[rstest]
#[case::python_colon(
    "/app:/lib",
    "/o/python:/o/python/auto",
    ":",
    "/app:/lib:/o/python:/o/python/auto"
)]
#[case::python_already_inside(
    "/app:/o/python:/o/python/auto:/lib",
    "/o/python:/o/python/auto",
    ":",
    "/app:/o/python:/o/python/auto:/lib"
)]
#[case::python_half_present(
    "/o/python:/lib",
    "/o/python:/o/python/auto",
    ":",
    "/o/python:/lib:/o/python:/o/python/auto"
)]
#[case::node_spaces(
    "--max-old-space-size=512",
    "--require /o/a.js",
    " ",
    "--max-old-space-size=512 --require /o/a.js"
)]
#[case::node_already(
    "--require /o/a.js --inspect",
    "--require /o/a.js",
    " ",
    "--require /o/a.js --inspect"
)]
#[case::loader_other_lib(
    "/usr/lib/libjemalloc.so",
    "/o/loader/loader.so",
    " ",
    "/usr/lib/libjemalloc.so /o/loader/loader.so"
)]
fn joins_keep_the_apps_value_first(
    #[case] app: &str,
    #[case] ours: &str,
    #[case] separator: &str,
    #[case] expected: &str,
) {
    let mut c = container(Some(json!([{"name": "V", "value": app}])));
    merge(&mut c, &[join("V", ours, separator)]).unwrap();
    let result = c["env"][0]["value"].as_str().unwrap();
    assert_eq!(result, expected);
    assert!(result.starts_with(app));
    assert!(holds(result, ours, separator));
}

#[rstest]
#[case::value_from_on_a_join_variable(
    json!([{"name": "JAVA_TOOL_OPTIONS", "valueFrom": {"configMapKeyRef": {"name": "jvm", "key": "opts"}}}]),
    "container \"app\" sets JAVA_TOOL_OPTIONS from valueFrom, which agent-mount cannot read, and the agent needs \"-javaagent:/var/odigos/java/javaagent.jar\" in it: add that to the ConfigMap, Secret or field it comes from, or set JAVA_TOOL_OPTIONS by value in the pod"
)]
#[case::last_duplicate_from_value_from(
    json!([{"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx1g"}, {"name": "JAVA_TOOL_OPTIONS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]),
    "sets JAVA_TOOL_OPTIONS from valueFrom"
)]
#[case::env_not_a_list(json!({"JAVA_TOOL_OPTIONS": "x"}), "container \"app\": env is {\"JAVA_TOOL_OPTIONS\":\"x\"}, expected a list")]
#[case::entry_without_name(json!([{"value": "x"}]), "env[0] is {\"value\":\"x\"}, expected an object with a string name")]
#[case::entry_not_an_object(json!(["A=1"]), "env[0] is \"A=1\", expected an object with a string name")]
#[case::value_not_a_string(json!([{"name": "JAVA_TOOL_OPTIONS", "value": 5}]), "env[0].value is 5, expected a string")]
fn conflicts_leave_the_container_alone(#[case] env: Value, #[case] expected: &str) {
    let mut c = container(Some(env));
    let before = c.clone();
    let err = merge(&mut c, &java_recipe()).unwrap_err().to_string();
    assert!(err.contains(expected), "{err}");
    assert_eq!(c, before);
}

#[test]
fn env_from_activates_and_warns_naming_every_variable() {
    let mut c = container(Some(
        json!([{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://c:4317"}]),
    ));
    c.insert("envFrom".into(), json!([{"configMapRef": {"name": "app"}}]));
    let merged = merge(&mut c, &java_recipe()).unwrap();
    assert!(merged.changed);
    let warning = merged.warning.unwrap();
    assert!(
        warning.contains("container \"app\" has envFrom, and agent-mount set \"JAVA_TOOL_OPTIONS\", \"HOST_IP\" in its env"),
        "{warning}"
    );
    // The same warning on the already activated container: runs agree.
    let again = merge(&mut c, &java_recipe()).unwrap();
    assert!(!again.changed);
    assert_eq!(again.warning.as_deref(), Some(warning.as_str()));
}

#[test]
fn a_name_given_twice_by_the_entries_is_added_once() {
    let mut c = container(None);
    let entries = [
        join("JAVA_TOOL_OPTIONS", JAVA, " "),
        plain("JAVA_TOOL_OPTIONS", "x"),
    ];
    let merged = merge(&mut c, &entries).unwrap();
    assert_eq!(
        c["env"],
        json!([{"name": "JAVA_TOOL_OPTIONS", "value": JAVA}])
    );
    assert_eq!(merged.ours, ["JAVA_TOOL_OPTIONS"]);
}

#[test]
fn huge_values_stay_linear_and_messages_short() {
    let app = "-Dx ".repeat(250_000);
    let mut c = container(Some(json!([{"name": "JAVA_TOOL_OPTIONS", "value": app}])));
    merge(&mut c, &java_recipe()).unwrap();
    assert!(c["env"][0]["value"].as_str().unwrap().ends_with(JAVA));
    let mut c = container(Some(
        json!([{"name": "JAVA_TOOL_OPTIONS", "value": {"x": app}}]),
    ));
    let err = merge(&mut c, &java_recipe()).unwrap_err().to_string();
    assert!(err.len() < 600, "{} bytes", err.len());
}
