use super::*;
use crate::write::Prepared;
use rstest::rstest;
use serde_json::json;

/// [`super::merge`], its added entries read back from the JSON text they went in as: the
/// container as the written pod has it.
fn merge<'e>(
    container: &mut Map<String, Value>,
    entries: impl IntoIterator<Item = &'e EnvEntry>,
) -> Result<Merged<'e>, EnvConflict> {
    let mut own_json = OwnJson::default();
    let merged = super::merge(container, entries, &mut own_json);
    container
        .values_mut()
        .for_each(|value| own_json.unfold(value));
    merged
}

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
        source: Prepared::new(json!({"fieldRef": {"fieldPath": "status.hostIP"}})),
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
    Some(json!([{"name": "A", "value": "1"}])),
    json!([{"name": "A", "value": "1"},
           {"name": "JAVA_TOOL_OPTIONS", "value": JAVA},
           {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
           {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://$(HOST_IP):4317"}]),
    &["JAVA_TOOL_OPTIONS", "HOST_IP", "OTEL_EXPORTER_OTLP_ENDPOINT"]
)]
#[case::an_app_entry_exactly_ours_is_referred_to(
    Some(json!([{"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}])),
    json!([{"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
           {"name": "JAVA_TOOL_OPTIONS", "value": JAVA},
           {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://$(HOST_IP):4317"}]),
    &["JAVA_TOOL_OPTIONS", "HOST_IP", "OTEL_EXPORTER_OTLP_ENDPOINT"]
)]
fn merge_rules(#[case] before: Option<Value>, #[case] after: Value, #[case] ours: &[&str]) {
    let mut c = container(before);
    let entries = java_recipe();
    let merged = merge(&mut c, &entries).unwrap();
    assert_eq!(c["env"], after);
    assert_eq!(merged.ours, ours);
    assert!(!merged.env_from);
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
#[case::optional_value_from_on_a_join_variable(
    json!([{"name": "JAVA_TOOL_OPTIONS", "valueFrom": {"configMapKeyRef": {"name": "jvm", "key": "opts", "optional": true}}}]),
    "container \"app\" sets JAVA_TOOL_OPTIONS from an optional valueFrom, which agent-mount cannot read, and the agent needs \"-javaagent:/var/odigos/java/javaagent.jar\" in it: where the source is absent, $(ORIGINAL_JAVA_TOOL_OPTIONS) would stay as text in the value"
)]
#[case::last_duplicate_from_optional_value_from(
    json!([{"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx1g"}, {"name": "JAVA_TOOL_OPTIONS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": true}}}]),
    "sets JAVA_TOOL_OPTIONS from an optional valueFrom"
)]
#[case::original_name_taken(
    json!([{"name": "ORIGINAL_JAVA_TOOL_OPTIONS", "value": "x"}, {"name": "JAVA_TOOL_OPTIONS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]),
    "sets JAVA_TOOL_OPTIONS from valueFrom and also has an entry ORIGINAL_JAVA_TOOL_OPTIONS"
)]
#[case::app_defines_a_referenced_name(
    json!([{"name": "HOST_IP", "value": "10.0.0.1"}]),
    "container \"app\" defines HOST_IP itself, and the value agent-mount writes to OTEL_EXPORTER_OTLP_ENDPOINT refers to $(HOST_IP)"
)]
#[case::app_defines_a_referenced_name_later(
    json!([{"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]),
    "defines HOST_IP itself"
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
fn env_from_activates_and_says_so() {
    let mut c = container(Some(
        json!([{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://c:4317"}]),
    ));
    c.insert("envFrom".into(), json!([{"configMapRef": {"name": "app"}}]));
    let recipe = java_recipe();
    let merged = merge(&mut c, &recipe).unwrap();
    assert!(merged.changed && merged.env_from);
    assert_eq!(merged.ours, ["JAVA_TOOL_OPTIONS", "HOST_IP"]);
    // The same on the already activated container: runs agree.
    let again = merge(&mut c, &recipe).unwrap();
    assert!(!again.changed && again.env_from);
    assert_eq!(again.ours, merged.ours);
    // `envFrom: null` is absent.
    let mut c = container(None);
    c.insert("envFrom".into(), Value::Null);
    assert!(!merge(&mut c, &java_recipe()).unwrap().env_from);
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

/// The env as the kubelet resolves it (earlier entries only, `$$`, unresolvable and
/// unclosed references as written), each `valueFrom` standing for `<fieldPath or key>`.
fn resolved(env: &Value) -> Vec<(String, String)> {
    let mut defined: Vec<(String, String)> = Vec::new();
    for var in env.as_array().unwrap() {
        let name = var["name"].as_str().unwrap().to_string();
        let value = match var.get("valueFrom") {
            Some(source) => format!("<{source}>"),
            None => kubelet_expand(var["value"].as_str().unwrap_or(""), &defined),
        };
        defined.retain(|(n, _)| *n != name);
        defined.push((name, value));
    }
    defined
}

/// k8s.io/kubernetes third_party/forked/golang/expansion, byte for byte.
fn kubelet_expand(input: &str, defined: &[(String, String)]) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => out.push(b'$'),
                b'(' => match bytes[i + 2..].iter().position(|&b| b == b')') {
                    Some(end) => {
                        let name = &input[i + 2..i + 2 + end];
                        match defined.iter().find(|(n, _)| n == name) {
                            Some((_, v)) => out.extend_from_slice(v.as_bytes()),
                            None => out.extend_from_slice(format!("$({name})").as_bytes()),
                        }
                        i += 3 + end;
                        continue;
                    }
                    None => out.extend_from_slice(b"$("),
                },
                other => out.extend_from_slice(&[b'$', other]),
            }
            i += 2;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn value_of(env: &[(String, String)], name: &str) -> String {
    env.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("{name} not in {env:?}"))
}

/// A custom recipe whose joined value refers to another entry of the recipe.
fn jar_recipe() -> Vec<EnvEntry> {
    vec![
        join("JAVA_TOOL_OPTIONS", "-javaagent:$(OTEL_JAVAAGENT_JAR)", " "),
        plain("OTEL_JAVAAGENT_JAR", "$(AGENTS)/java/javaagent.jar"),
        plain("AGENTS", "/var/odigos"),
    ]
}

/// Every `$(NAME)` we write resolves: referenced entries go first, before the app's entry
/// we append to when there is one, and the app's entries keep their order and values.
#[rstest]
#[case::absent(
    json!([{"name": "LOG", "value": "info"}]),
    json!([{"name": "LOG", "value": "info"}, {"name": "AGENTS", "value": "/var/odigos"},
           {"name": "OTEL_JAVAAGENT_JAR", "value": "$(AGENTS)/java/javaagent.jar"},
           {"name": "JAVA_TOOL_OPTIONS", "value": "-javaagent:$(OTEL_JAVAAGENT_JAR)"}])
)]
#[case::appended_to_the_apps(
    json!([{"name": "LOG", "value": "info"}, {"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx1g"}, {"name": "B", "value": "$(LOG)"}]),
    json!([{"name": "LOG", "value": "info"}, {"name": "AGENTS", "value": "/var/odigos"},
           {"name": "OTEL_JAVAAGENT_JAR", "value": "$(AGENTS)/java/javaagent.jar"},
           {"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx1g -javaagent:$(OTEL_JAVAAGENT_JAR)"},
           {"name": "B", "value": "$(LOG)"}])
)]
#[case::set_where_empty(
    json!([{"name": "JAVA_TOOL_OPTIONS", "value": ""}]),
    json!([{"name": "AGENTS", "value": "/var/odigos"},
           {"name": "OTEL_JAVAAGENT_JAR", "value": "$(AGENTS)/java/javaagent.jar"},
           {"name": "JAVA_TOOL_OPTIONS", "value": "-javaagent:$(OTEL_JAVAAGENT_JAR)"}])
)]
#[case::renamed_value_from(
    json!([{"name": "JAVA_TOOL_OPTIONS", "valueFrom": {"configMapKeyRef": {"name": "jvm", "key": "opts"}}}]),
    json!([{"name": "AGENTS", "value": "/var/odigos"},
           {"name": "OTEL_JAVAAGENT_JAR", "value": "$(AGENTS)/java/javaagent.jar"},
           {"name": "ORIGINAL_JAVA_TOOL_OPTIONS", "valueFrom": {"configMapKeyRef": {"name": "jvm", "key": "opts"}}},
           {"name": "JAVA_TOOL_OPTIONS", "value": "$(ORIGINAL_JAVA_TOOL_OPTIONS) -javaagent:$(OTEL_JAVAAGENT_JAR)"}])
)]
fn every_reference_we_write_resolves(#[case] before: Value, #[case] after: Value) {
    let mut c = container(Some(before));
    merge(&mut c, &jar_recipe()).unwrap();
    assert_eq!(c["env"], after);
    let env = resolved(&c["env"]);
    let jto = value_of(&env, "JAVA_TOOL_OPTIONS");
    assert!(
        jto.ends_with("-javaagent:/var/odigos/java/javaagent.jar"),
        "{jto}"
    );
    // Idempotent.
    let mut again = c.clone();
    assert!(!merge(&mut again, &jar_recipe()).unwrap().changed);
    assert_eq!(again, c);
}

#[rstest]
#[case::app_defines_the_jar(
    json!([{"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx1g"}, {"name": "OTEL_JAVAAGENT_JAR", "value": "/old.jar"}]),
    "defines OTEL_JAVAAGENT_JAR itself"
)]
#[case::app_defines_a_transitive_name(
    json!([{"name": "AGENTS", "value": "/elsewhere"}]),
    "defines AGENTS itself, and the value agent-mount writes to OTEL_JAVAAGENT_JAR refers to $(AGENTS)"
)]
#[case::app_refers_to_an_inserted_name_after_it(
    json!([{"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx1g"}, {"name": "X", "value": "$(AGENTS)/x"}]),
    "container \"app\": X refers to $(AGENTS), which agent-mount inserts before it"
)]
#[case::app_refers_to_the_renamed_original_after_it(
    json!([{"name": "JAVA_TOOL_OPTIONS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, {"name": "X", "value": "$(ORIGINAL_JAVA_TOOL_OPTIONS)"}]),
    "X refers to $(ORIGINAL_JAVA_TOOL_OPTIONS)"
)]
#[case::unclosed_reference_closed_by_ours(
    json!([{"name": "JAVA_TOOL_OPTIONS", "value": "-Dx=$("}]),
    "container \"app\": JAVA_TOOL_OPTIONS's value ends in an unclosed $( or a $"
)]
fn what_would_resolve_otherwise_is_a_conflict(#[case] env: Value, #[case] expected: &str) {
    let mut c = container(Some(env));
    let before = c.clone();
    let err = merge(&mut c, &jar_recipe()).unwrap_err().to_string();
    assert!(err.contains(expected), "{err}");
    assert_eq!(c, before);
}

#[test]
fn a_dollar_that_ours_would_escape_is_a_conflict() {
    // `-Dx=$` + `$` + ours would read `$$` as one literal `$`.
    let mut c = container(Some(json!([{"name": "V", "value": "-Dx=$"}])));
    let err = merge(&mut c, &[join("V", "/a.jar", "$")]).unwrap_err();
    assert!(matches!(err, EnvConflict::Unclosed { .. }), "{err}");
    // A `$` before a space stays a `$`: no conflict.
    let mut c = container(Some(json!([{"name": "V", "value": "-Dx=$"}])));
    merge(&mut c, &[join("V", "/a.jar", " ")]).unwrap();
    assert_eq!(c["env"][0]["value"], "-Dx=$ /a.jar");
}

/// A join variable from a source that always exists is renamed and joined after it.
#[rstest]
#[case::field_ref(json!({"fieldRef": {"fieldPath": "metadata.annotations['jvm']"}}))]
#[case::resource_field_ref(json!({"resourceFieldRef": {"resource": "limits.memory"}}))]
#[case::config_map_key(json!({"configMapKeyRef": {"name": "jvm", "key": "opts"}}))]
#[case::secret_key_not_optional(json!({"secretKeyRef": {"name": "jvm", "key": "opts", "optional": false}}))]
fn value_from_that_always_exists_is_renamed(#[case] source: Value) {
    let mut c = container(Some(json!([{"name": "A", "value": "1"},
        {"name": "JAVA_TOOL_OPTIONS", "valueFrom": source}, {"name": "Z", "value": "$(JAVA_TOOL_OPTIONS)"}])));
    let recipe = [join("JAVA_TOOL_OPTIONS", JAVA, " ")];
    let merged = merge(&mut c, &recipe).unwrap();
    assert!(merged.changed);
    assert_eq!(
        c["env"],
        json!([{"name": "A", "value": "1"},
            {"name": "ORIGINAL_JAVA_TOOL_OPTIONS", "valueFrom": source},
            {"name": "JAVA_TOOL_OPTIONS", "value": format!("$(ORIGINAL_JAVA_TOOL_OPTIONS) {JAVA}")},
            {"name": "Z", "value": "$(JAVA_TOOL_OPTIONS)"}])
    );
    let env = resolved(&c["env"]);
    assert_eq!(
        value_of(&env, "JAVA_TOOL_OPTIONS"),
        format!("<{source}> {JAVA}")
    );
    let mut again = c.clone();
    assert!(
        !merge(&mut again, &[join("JAVA_TOOL_OPTIONS", JAVA, " ")])
            .unwrap()
            .changed
    );
    assert_eq!(again, c);
}

/// "Already ours" as the JVM and Node.js read a whitespace-joined value.
#[rstest]
#[case::exactly_ours(JAVA, true)]
#[case::tab(&format!("-Xmx1g\t{JAVA}"), true)]
#[case::newline(&format!("-Xmx1g\n{JAVA}\n"), true)]
#[case::double_quoted(&format!("-Xmx1g \"{JAVA}\""), true)]
#[case::single_quoted(&format!("'{JAVA}' -Xmx1g"), true)]
#[case::with_options(&format!("{JAVA}=debug,x=1"), true)]
#[case::quoted_with_options(&format!("\"{JAVA}=debug\""), true)]
#[case::a_longer_path(&format!("{JAVA}.old"), false)]
#[case::another_jar("-javaagent:/other.jar", false)]
#[case::unbalanced_quote(&format!("\"{JAVA}"), false)]
fn already_ours_as_the_jvm_reads_it(#[case] app: &str, #[case] expected: bool) {
    assert_eq!(holds(app, JAVA, " "), expected, "{app:?}");
}

#[rstest]
#[case::node_two_items_split_by_tabs("--inspect\t--require\n/o/a.js", "--require /o/a.js", true)]
#[case::node_items_apart("--require /x.js /o/a.js", "--require /o/a.js", false)]
#[case::colon_join_exact("/a:/o/p:/o/q", "/o/p:/o/q", true)]
#[case::colon_join_equal("/o/p:/o/q", "/o/p:/o/q", true)]
#[case::node_equal("--require /o/a.js", "--require /o/a.js", true)]
#[case::colon_join_partial("/o/p:/a:/o/q", "/o/p:/o/q", false)]
#[case::repeated_prefix("a a a b", "a a b", true)]
fn runs_of_items(#[case] app: &str, #[case] ours: &str, #[case] expected: bool) {
    let separator = if ours.contains(':') { ":" } else { " " };
    assert_eq!(holds(app, ours, separator), expected);
}

#[test]
fn already_ours_is_linear() {
    // Whitespace-joined 300 KB value against a 4 KiB value of many items, and the reverse:
    // a quadratic comparison would take minutes here.
    let ours = "-Dx=1 ".repeat(680);
    // Near misses everywhere: 679 of the 680 items, then another.
    let app = format!("{}-Dy ", "-Dx=1 ".repeat(679)).repeat(70);
    assert!(!holds(&app, ours.trim(), " "));
    let app = format!("{}{}", "-Dx=1 ".repeat(50_000), ours);
    assert!(holds(&app, ours.trim(), " "));
    let colon = "a:".repeat(150_000);
    assert!(!holds(&colon, &format!("{}b", "a:".repeat(2000)), ":"));
}

#[test]
fn an_inserted_entry_finds_what_it_refers_to_before_it() {
    // The app defines OTEL_AGENTS exactly as ours, but after JAVA_TOOL_OPTIONS, before
    // which the jar's entry goes: there it would not resolve (found by tests/properties.rs).
    let mut c = container(Some(
        json!([{"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx1g"},
        {"name": "AGENTS", "value": "/var/odigos"}]),
    ));
    let err = merge(&mut c, &jar_recipe()).unwrap_err();
    assert!(
        err.to_string().contains("defines AGENTS itself, and the value agent-mount writes to OTEL_JAVAAGENT_JAR refers to $(AGENTS)"),
        "{err}"
    );
    // Before it, it resolves as meant.
    let mut c = container(Some(json!([{"name": "AGENTS", "value": "/var/odigos"},
        {"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx1g"}])));
    merge(&mut c, &jar_recipe()).unwrap();
    assert_eq!(
        value_of(&resolved(&c["env"]), "JAVA_TOOL_OPTIONS"),
        "-Xmx1g -javaagent:/var/odigos/java/javaagent.jar"
    );
}

#[test]
fn joins_given_in_another_order_than_the_apps_entries_find_what_they_refer_to() {
    // Ours join into B, then A; the app has A before B: the new entry both refer to goes
    // before A, the first app entry that needs it, not before B.
    let entries = [
        join("B", "-Db=$(NEW)", " "),
        join("A", "-Da=$(NEW)", " "),
        plain("NEW", "v"),
    ];
    let mut c = container(Some(
        json!([{"name": "A", "value": "a"}, {"name": "B", "value": "b"}]),
    ));
    merge(&mut c, &entries).unwrap();
    let env = resolved(&c["env"]);
    assert_eq!(value_of(&env, "A"), "a -Da=v");
    assert_eq!(value_of(&env, "B"), "b -Db=v");
}

/// The entries the merge adds go in as the JSON text [`entry_json`] writes, kept by the
/// writer's [`OwnJson`]; the app's own entries stay as they came.
#[test]
fn added_entries_go_in_as_their_kept_json() {
    let mut c = container(Some(json!([{"name": "A", "value": "1"}])));
    let entries = java_recipe();
    let mut own_json = OwnJson::default();
    super::merge(&mut c, &entries, &mut own_json).unwrap();
    let env = c["env"].as_array().unwrap();
    assert_eq!(env[0], json!({"name": "A", "value": "1"}));
    let added: Vec<String> = env[1..]
        .iter()
        .map(|entry| entry.as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = entries
        .iter()
        .map(|entry| serde_json::to_string(&as_json(entry)).unwrap())
        .collect();
    assert_eq!(
        added, expected,
        "serde_json's bytes for each entry, in order"
    );
    let mut out = Vec::new();
    write::value_keeping(&mut out, &c["env"], &own_json).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&out).unwrap(),
        json!([{"name": "A", "value": "1"},
               {"name": "JAVA_TOOL_OPTIONS", "value": JAVA},
               {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
               {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://$(HOST_IP):4317"}])
    );
}
