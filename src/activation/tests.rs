use super::*;
use crate::activation::env::ToMerge;
use rstest::rstest;
use serde_json::json;

/// Parses an `activation` block as the settings would, with the agents at /var/odigos.
fn parse(value: Value, mounted: &[&str]) -> Result<Activation, SettingsError> {
    let raw = RawActivation::read(value, "activation")?;
    let mounted: Vec<String> = mounted.iter().map(|d| d.to_string()).collect();
    Activation::from_raw(raw, "/var/odigos", &mounted)
}

fn join(name: &str, value: &str, separator: &str) -> EnvEntry {
    EnvEntry::Join {
        name: name.into(),
        value: value.into(),
        separator: separator.into(),
    }
}

#[test]
fn the_built_in_recipes_are_odigos_layout() {
    let activation = parse(json!({}), &[]).unwrap();
    assert_eq!(activation.annotation, "agent-mount.io/agents");
    assert!(activation.env.is_empty());
    let recipes: Vec<(&str, &str, Vec<EnvEntry>)> = activation
        .agents
        .iter()
        .map(|(name, r)| {
            let env = r.env.iter().map(|e| e.entry().clone()).collect();
            (name.as_str(), r.directory.as_str(), env)
        })
        .collect();
    assert_eq!(
        recipes,
        vec![
            (
                "java",
                "java",
                vec![join(
                    "JAVA_TOOL_OPTIONS",
                    "-javaagent:/var/odigos/java/javaagent.jar",
                    " "
                )]
            ),
            (
                "loader",
                "loader",
                vec![join("LD_PRELOAD", "/var/odigos/loader/loader.so", " ")]
            ),
            (
                "nodejs",
                "nodejs-community",
                vec![join(
                    "NODE_OPTIONS",
                    "--require /var/odigos/nodejs-community/autoinstrumentation.js",
                    " "
                )]
            ),
            (
                "python",
                "python",
                vec![join(
                    "PYTHONPATH",
                    "/var/odigos/python:/var/odigos/python/opentelemetry/instrumentation/auto_instrumentation",
                    ":"
                )]
            ),
        ]
    );
}

#[test]
fn dir_expands_to_the_agents_path_in_recipes_and_env() {
    let raw = RawActivation::read(json!({
        "agents": {"java": {"directory": "java", "env": [
            {"name": "JAVA_TOOL_OPTIONS", "value": "-javaagent:{dir}/java/agent.jar -Dx={dir}", "join": " "}]}},
        "env": [{"name": "AGENTS", "value": "{dir}"}]
    }), "activation")
    .unwrap();
    let activation = Activation::from_raw(raw, "/opt/agents", &[]).unwrap();
    assert_eq!(
        activation.agents.get("java").unwrap().env,
        vec![join(
            "JAVA_TOOL_OPTIONS",
            "-javaagent:/opt/agents/java/agent.jar -Dx=/opt/agents",
            " "
        )]
    );
    assert_eq!(
        activation.env,
        vec![EnvEntry::Value {
            name: "AGENTS".into(),
            value: "/opt/agents".into()
        }]
    );
}

#[test]
fn given_recipes_replace_the_built_in_of_that_name_only() {
    let activation = parse(
        json!({"agents": {
            "java": {"directory": "java", "env": [{"name": "JDK_JAVA_OPTIONS", "value": "-javaagent:{dir}/java/javaagent.jar", "join": " "}]},
            "ruby": {"directory": "ruby", "env": [{"name": "RUBYOPT", "value": "-r{dir}/ruby/index.rb", "join": " "}]}
        }}),
        &[],
    )
    .unwrap();
    let names: Vec<&str> = activation.agents.keys().map(String::as_str).collect();
    assert_eq!(names, ["java", "loader", "nodejs", "python", "ruby"]);
    assert_eq!(
        activation.agents.get("java").unwrap().env[0].name(),
        "JDK_JAVA_OPTIONS"
    );
}

/// The recipes stay sorted by name whatever the insertion order, and a name set again
/// replaces its recipe, as the `BTreeMap` they replaced did.
#[test]
fn recipes_are_sorted_by_name_and_set_once() {
    let recipe = |directory: &str| Recipe {
        directory: directory.into(),
        env: Vec::new(),
    };
    let mut recipes = Recipes::default();
    for name in ["m", "z", "a", "q", "m"] {
        recipes.insert(name.into(), recipe(name));
    }
    recipes.insert("q".into(), recipe("again"));
    let names: Vec<&str> = recipes.keys().map(String::as_str).collect();
    assert_eq!(names, ["a", "m", "q", "z"]);
    assert_eq!(
        recipes.get("q").map(|r| r.directory.as_str()),
        Some("again")
    );
    assert_eq!(
        recipes.get_key_value("z").map(|(n, _)| n.as_str()),
        Some("z")
    );
    assert_eq!(recipes.get("b"), None);
}

#[test]
fn only_mounted_agents_are_available() {
    let activation = parse(json!({}), &["java"]).unwrap();
    let names: Vec<&str> = activation.agents.keys().map(String::as_str).collect();
    assert_eq!(names, ["java"]);
    let activation = parse(json!({}), &["nodejs-community", "loader"]).unwrap();
    let names: Vec<&str> = activation.agents.keys().map(String::as_str).collect();
    assert_eq!(names, ["loader", "nodejs"]);
}

#[test]
fn value_from_sources_reach_the_pod_without_nulls() {
    let activation = parse(
        json!({"env": [
            {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "otel", "key": "token", "optional": true}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']", "apiVersion": "v1"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "otel", "key": "endpoint.url"}, "secretKeyRef": null}}
        ]}),
        &[],
    )
    .unwrap();
    let sources: Vec<Value> = activation
        .env
        .iter()
        .map(|e| match e.entry() {
            EnvEntry::ValueFrom { source, .. } => source.value().clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        sources[0],
        json!({"fieldRef": {"fieldPath": "status.hostIP"}})
    );
    assert_eq!(
        sources[4],
        json!({"configMapKeyRef": {"name": "otel", "key": "endpoint.url"}})
    );
    let activation = parse(
        json!({"env": [{"name": "CPUS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": 1}}}]}),
        &[],
    )
    .unwrap();
    let EnvEntry::ValueFrom { source, .. } = activation.env[0].entry() else {
        panic!("{:?}", activation.env);
    };
    assert_eq!(
        source.value(),
        &json!({"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1"}})
    );
}

#[rstest]
#[case::unknown_key(json!({"anotation": "x"}), &[], "activation.anotation: unknown field `anotation`, expected one of `annotation`, `containerPath`, `agents`, `env`")]
#[case::bad_annotation(json!({"annotation": "not a key"}), &[], "activation.annotation: invalid value \"not a key\": expected a qualified name")]
#[case::recipe_unknown_key(json!({"agents": {"java": {"directory": "java", "env": [], "image": "x"}}}), &[], "activation.agents.java.image: unknown field `image`, expected `directory` or `env`")]
#[case::recipe_without_directory(json!({"agents": {"java": {"env": []}}}), &[], "activation.agents.java: missing field `directory`")]
#[case::recipe_without_env(json!({"agents": {"java": {"directory": "java", "env": []}}}), &[], "activation.agents.java.env: invalid value \"[]\": at least one variable")]
#[case::recipe_bad_name(json!({"agents": {"Java 8": {"directory": "java", "env": [{"name": "A", "value": "b"}]}}}), &[], "activation.agents.Java 8: invalid value \"Java 8\": expected a DNS-1123 label")]
#[case::recipe_bad_directory(json!({"agents": {"java": {"directory": "../etc", "env": [{"name": "A", "value": "b"}]}}}), &[], "activation.agents.java.directory: invalid value \"../etc\": expected a single directory name")]
#[case::recipe_not_mounted(json!({"agents": {"ruby": {"directory": "ruby", "env": [{"name": "RUBYOPT", "value": "x"}]}}}), &["java", "python"], "activation.agents.ruby.directory: invalid value \"ruby\": a mounted agent directory: one of agentDirectories (java, python); add it there, or remove this recipe")]
#[case::env_entry_unknown_key(json!({"env": [{"name": "A", "vaule": "b"}]}), &[], "activation.env[0].vaule: unknown field `vaule`, expected one of `name`, `value`, `join`, `valueFrom`")]
#[case::env_bad_name(json!({"env": [{"name": "1A", "value": "b"}]}), &[], "activation.env[0].name: invalid value \"1A\": expected an environment variable name")]
#[case::env_join(json!({"env": [{"name": "A", "value": "b", "join": " "}]}), &[], "activation.env[0].join: invalid value \" \": join only in a recipe's env")]
#[case::env_value_and_value_from(json!({"env": [{"name": "A", "value": "b", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}]}), &[], "activation.env[0]: invalid value \"A\": either value or valueFrom, not both")]
#[case::env_neither(json!({"env": [{"name": "A"}]}), &[], "activation.env[0]: invalid value \"A\": a value (or a valueFrom source)")]
#[case::env_duplicate(json!({"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}), &[], "activation.env[1].name: duplicate value \"A\"")]
#[case::env_too_many(json!({"env": (0..33).map(|i| json!({"name": format!("V{i}"), "value": "x"})).collect::<Vec<_>>()}), &[], "activation.env: invalid value \"33 entries\": at most 32 entries")]
#[case::join_with_value_from(json!({"agents": {"java": {"directory": "java", "env": [{"name": "A", "join": " ", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}]}}}), &[], "activation.agents.java.env[0].join: invalid value \" \": join only with value")]
#[case::join_empty_separator(json!({"agents": {"java": {"directory": "java", "env": [{"name": "A", "value": "x", "join": ""}]}}}), &[], "activation.agents.java.env[0].join: invalid value \"\": a non-empty separator")]
#[case::join_empty_value(json!({"agents": {"java": {"directory": "java", "env": [{"name": "A", "value": "", "join": " "}]}}}), &[], "activation.agents.java.env[0].value: invalid value \"\": a non-empty value to join")]
#[case::source_unknown_key(json!({"env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP", "path": "x"}}}]}), &[], "activation.env[0].valueFrom.fieldRef.path: unknown key")]
#[case::source_two_kinds(json!({"env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}, "secretKeyRef": {"name": "s", "key": "k"}}}]}), &[], "activation.env[0].valueFrom: invalid value \"fieldRef, secretKeyRef\": exactly one of configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef")]
#[case::source_empty(json!({"env": [{"name": "A", "valueFrom": {}}]}), &[], "activation.env[0].valueFrom: invalid value \"\": exactly one of")]
#[case::source_not_an_object(json!({"env": [{"name": "A", "valueFrom": "status.hostIP"}]}), &[], "activation.env[0].valueFrom: invalid type: string \"status.hostIP\"")]
#[case::field_path(json!({"env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.hostIP"}}}]}), &[], "activation.env[0].valueFrom.fieldRef.fieldPath: invalid value \"spec.hostIP\": one of metadata.name")]
#[case::field_api_version(json!({"env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP", "apiVersion": "v2"}}}]}), &[], "activation.env[0].valueFrom.fieldRef.apiVersion: invalid value \"v2\": v1, or unset")]
#[case::resource(json!({"env": [{"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}}]}), &[], "activation.env[0].valueFrom.resourceFieldRef.resource: invalid value \"limits.gpu\"")]
#[case::divisor(json!({"env": [{"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "lots"}}}]}), &[], "activation.env[0].valueFrom.resourceFieldRef.divisor: invalid value \"lots\"")]
#[case::secret_name(json!({"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "Otel", "key": "k"}}}]}), &[], "activation.env[0].valueFrom.secretKeyRef.name: invalid value \"Otel\": expected a DNS-1123 subdomain")]
#[case::config_map_key(json!({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "otel", "key": "a/b"}}}]}), &[], "activation.env[0].valueFrom.configMapKeyRef.key: invalid value \"a/b\": expected a ConfigMap or Secret key")]
#[case::too_many_agents(json!({"agents": (0..33).map(|i| (format!("a{i}"), json!({"directory": "d", "env": [{"name": "A", "value": "x"}]}))).collect::<serde_json::Map<_, _>>()}), &[], "activation.agents: 33 entries, at most 32 are allowed")]
fn invalid_activation_names_key_value_and_allowed(
    #[case] value: Value,
    #[case] mounted: &[&str],
    #[case] expected: &str,
) {
    let err = parse(value, mounted).unwrap_err().to_string();
    assert!(
        err.contains(expected),
        "error {err:?} should contain {expected:?}"
    );
}

#[test]
fn the_built_ins_pass_the_checks_of_a_given_recipe() {
    let defaults = parse(json!({}), &[]).unwrap();
    for b in &BUILT_IN {
        let given = json!({"agents": {b.name: {"directory": b.directory,
            "env": [{"name": b.variable, "value": b.value, "join": b.join}]}}});
        let activation = parse(given, &[]).unwrap();
        assert_eq!(
            activation.agents.get(b.name).unwrap(),
            defaults.agents.get(b.name).unwrap(),
            "{}",
            b.name
        );
    }
}

/// The agents' path, where a method puts it, holding a character that splits or breaks
/// the variables `{dir}` expands into.
#[rstest]
#[case::space(json!({"mountMethod": "k8s-host-path", "mountPath": "/opt/my agents", "activation": {}}), "mountPath: invalid value \"/opt/my agents\": a space splits JAVA_TOOL_OPTIONS")]
#[case::space_from_host_path(json!({"mountMethod": "k8s-host-path", "hostPath": "/opt/my agents", "activation": {}}), "mountPath: invalid value \"/opt/my agents\": a space")]
#[case::tab(json!({"mountMethod": "k8s-csi-driver", "mountPath": "/opt/a\tb", "activation": {}}), "mountPath: invalid value \"/opt/a\\tb\": a tab splits")]
#[case::newline(json!({"activation": {"containerPath": "/opt/a\nb"}}), "activation.containerPath: invalid value \"/opt/a\\nb\": a newline splits")]
#[case::colon(json!({"activation": {"containerPath": "/opt/a:b"}}), "activation.containerPath: invalid value \"/opt/a:b\": ':' splits PYTHONPATH and LD_PRELOAD")]
#[case::comma(json!({"mountMethod": "k8s-host-path", "mountPath": "/opt/a,b", "activation": {}}), "mountPath: invalid value \"/opt/a,b\": ','")]
#[case::semicolon(json!({"mountMethod": "k8s-host-path", "mountPath": "/opt/a;b", "activation": {}}), "mountPath: invalid value \"/opt/a;b\": ';'")]
#[case::equals(json!({"mountMethod": "k8s-host-path", "mountPath": "/opt/a=b", "activation": {}}), "mountPath: invalid value \"/opt/a=b\": '='")]
#[case::double_quote(json!({"mountMethod": "k8s-host-path", "mountPath": "/opt/a\"b", "activation": {}}), "mountPath: invalid value \"/opt/a\\\"b\": a quote")]
#[case::single_quote(json!({"mountMethod": "k8s-host-path", "mountPath": "/opt/a'b", "activation": {}}), "mountPath: invalid value \"/opt/a'b\": a quote")]
#[case::backslash(json!({"mountMethod": "k8s-host-path", "mountPath": "/opt/a\\b", "activation": {}}), "mountPath: invalid value \"/opt/a\\\\b\": a backslash")]
#[case::control(json!({"mountMethod": "k8s-host-path", "mountPath": "/opt/a\u{7f}b", "activation": {}}), "mountPath: invalid value \"/opt/a\\u{7f}b\": a control character (U+007F)")]
#[case::no_break_space(json!({"mountMethod": "k8s-host-path", "mountPath": "/opt/a\u{a0}b", "activation": {}}), "a space (U+00A0) splits")]
fn the_agents_path_may_not_split_the_variables(#[case] settings: Value, #[case] expected: &str) {
    let err = crate::settings::parse(settings).unwrap_err().to_string();
    assert!(
        err.contains(expected),
        "{err:?} should contain {expected:?}"
    );
}

#[test]
fn without_activation_the_agents_path_may_hold_any_character() {
    let settings = json!({"mountMethod": "k8s-host-path", "mountPath": "/opt/my agents:1"});
    assert!(crate::settings::parse(settings).is_ok());
}

#[test]
fn a_dollar_in_the_agents_path_is_written_twice_wherever_dir_expands() {
    let raw = RawActivation::read(json!({
        "agents": {"java": {"directory": "java", "env": [
            {"name": "JAVA_TOOL_OPTIONS", "value": "-javaagent:{dir}/java/agent.jar", "join": " "}]}},
        "env": [{"name": "AGENTS", "value": "{dir}"}]
    }), "activation")
    .unwrap();
    let activation = Activation::from_raw(raw, "/opt/$(HOME)/a$b", &[]).unwrap();
    assert_eq!(
        activation.agents.get("java").unwrap().env,
        vec![join(
            "JAVA_TOOL_OPTIONS",
            "-javaagent:/opt/$$(HOME)/a$$b/java/agent.jar",
            " "
        )]
    );
    assert_eq!(
        activation.env,
        vec![EnvEntry::Value {
            name: "AGENTS".into(),
            value: "/opt/$$(HOME)/a$$b".into()
        }]
    );
    assert_eq!(
        activation.agents.get("python").unwrap().env,
        vec![join(
            "PYTHONPATH",
            "/opt/$$(HOME)/a$$b/python:/opt/$$(HOME)/a$$b/python/opentelemetry/instrumentation/auto_instrumentation",
            ":"
        )]
    );
}

/// A value of `len` bytes once `{dir}` expands to `path`.
fn value_of(len: usize, path: &str) -> String {
    let dirs = "{dir}".repeat(2);
    format!("{dirs}{}", "x".repeat(len - 2 * path.len()))
}

#[rstest]
#[case::at_the_limit(MAX_VALUE_BYTES, true)]
#[case::one_beyond(MAX_VALUE_BYTES + 1, false)]
fn each_value_is_at_most_4_kib_once_dir_expands(#[case] len: usize, #[case] ok: bool) {
    // `$` is counted once: the limit holds before the kubelet's `$$` escaping.
    let path = "/opt/a$b";
    for (key, settings) in [
        (
            "activation.agents.java.env[0].value",
            json!({"agents": {"java": {"directory": "java", "env": [
                {"name": "JAVA_TOOL_OPTIONS", "value": value_of(len, path), "join": " "}]}}}),
        ),
        (
            "activation.env[0].value",
            json!({"env": [{"name": "A", "value": value_of(len, path)}]}),
        ),
    ] {
        let raw = RawActivation::read(settings, "activation").unwrap();
        match Activation::from_raw(raw, path, &[]) {
            Ok(_) => assert!(ok, "{key}: {len} bytes accepted"),
            Err(err) => {
                assert!(!ok, "{key}: {len} bytes refused: {err}");
                let err = err.to_string();
                assert!(
                    err.starts_with(&format!("{key}: invalid value"))
                        && err.contains("at most 4096 bytes"),
                    "{err}"
                );
            }
        }
    }
}

/// An `activation.env` entry against the API server's rules for a container's env
/// (kubernetes pkg/apis/core/validation/validation.go); each case names the function it
/// follows. `None`: the API server accepts it, and so do we.
#[rstest]
// ValidateEnv: validation.IsEnvVarName, `[-._a-zA-Z][-._a-zA-Z0-9]*` and not `.`, `..` or `..`-prefixed.
#[case::name_plain(json!({"name": "JAVA_TOOL_OPTIONS", "value": "x"}), None)]
#[case::name_dots_dashes(json!({"name": "my.env-name", "value": "x"}), None)]
#[case::name_leading_dash(json!({"name": "-x", "value": "x"}), None)]
#[case::name_leading_dot(json!({"name": ".x", "value": "x"}), None)]
#[case::name_dot(json!({"name": ".", "value": "x"}), Some("activation.env[0].name: invalid value \".\": expected an environment variable name"))]
#[case::name_dotdot(json!({"name": "..", "value": "x"}), Some("activation.env[0].name: invalid value \"..\""))]
#[case::name_dotdot_prefix(json!({"name": "..x", "value": "x"}), Some("activation.env[0].name: invalid value \"..x\""))]
#[case::name_digit(json!({"name": "1A", "value": "x"}), Some("activation.env[0].name: invalid value \"1A\""))]
#[case::name_equals(json!({"name": "A=B", "value": "x"}), Some("activation.env[0].name: invalid value \"A=B\""))]
#[case::name_empty(json!({"name": "", "value": "x"}), Some("activation.env[0].name: invalid value \"\""))]
// validateEnvVarValueFrom: exactly one source.
#[case::source_none(json!({"name": "A", "valueFrom": {}}), Some("activation.env[0].valueFrom: invalid value \"\": exactly one of"))]
#[case::source_two(json!({"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}, "configMapKeyRef": {"name": "a", "key": "b"}}}), Some("activation.env[0].valueFrom: invalid value \"configMapKeyRef, fieldRef\": exactly one of"))]
#[case::source_null_other(json!({"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}, "configMapKeyRef": null}}), None)]
#[case::source_gated(json!({"name": "A", "valueFrom": {"fileKeyRef": {"path": "a", "key": "b", "volumeName": "v"}}}), Some("activation.env[0].valueFrom.fileKeyRef: invalid value \"fileKeyRef\""))]
// validateObjectFieldSelector with validEnvDownwardAPIFieldPathExpressions.
#[case::field_pod_ips(json!({"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}}), None)]
#[case::field_host_ips(json!({"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIPs", "apiVersion": "v1"}}}), None)]
#[case::field_service_account(json!({"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}}), None)]
#[case::field_not_for_env(json!({"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.restartPolicy"}}}), Some("activation.env[0].valueFrom.fieldRef.fieldPath: invalid value \"spec.restartPolicy\": one of metadata.name"))]
#[case::field_labels_whole(json!({"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"}}}), Some("activation.env[0].valueFrom.fieldRef.fieldPath: invalid value \"metadata.labels\""))]
#[case::field_empty(json!({"name": "A", "valueFrom": {"fieldRef": {}}}), Some("activation.env[0].valueFrom.fieldRef.fieldPath: invalid value \"\""))]
#[case::field_api_version(json!({"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name", "apiVersion": "v2"}}}), Some("activation.env[0].valueFrom.fieldRef.apiVersion: invalid value \"v2\""))]
#[case::field_unknown_key(json!({"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name", "path": "x"}}}), Some("activation.env[0].valueFrom.fieldRef.path: unknown key"))]
// validateObjectFieldSelector: a subscript only on labels and annotations, its key a
// qualified name (ValidateQualifiedName; annotations' key lowercased first).
#[case::label_key(json!({"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app.kubernetes.io/name']"}}}), None)]
#[case::label_key_space(json!({"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['a b']"}}}), Some("activation.env[0].valueFrom.fieldRef.fieldPath: invalid value \"metadata.labels['a b']\": the key in brackets: expected a qualified name"))]
#[case::label_key_upper_prefix(json!({"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['Example.com/app']"}}}), Some("activation.env[0].valueFrom.fieldRef.fieldPath: invalid value \"metadata.labels['Example.com/app']\""))]
#[case::annotation_key_upper_prefix(json!({"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['Example.com/App']"}}}), None)]
#[case::label_key_empty(json!({"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['']"}}}), Some("activation.env[0].valueFrom.fieldRef.fieldPath: invalid value \"metadata.labels['']\""))]
#[case::subscript_on_name(json!({"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name['x']"}}}), Some("activation.env[0].valueFrom.fieldRef.fieldPath: invalid value \"metadata.name['x']\""))]
// validateContainerResourceFieldSelector with validContainerResourceFieldPathExpressions
// (and the hugepages prefixes), then validateContainerResourceDivisor.
#[case::cpu_milli(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}}), None)]
#[case::cpu_one(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1"}}}), None)]
#[case::cpu_three(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "3"}}}), Some("activation.env[0].valueFrom.resourceFieldRef.divisor: invalid value \"3\": one of 1m, 1 for limits.cpu"))]
#[case::cpu_number(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": 1}}}), None)]
#[case::cpu_number_three(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": 3}}}), Some("activation.env[0].valueFrom.resourceFieldRef.divisor: invalid value \"3\": one of 1m, 1 for limits.cpu"))]
#[case::divisor_list(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": ["1"]}}}), Some("activation.env[0].valueFrom.resourceFieldRef.divisor: invalid type: list, expected a quantity"))]
#[case::cpu_thousand_milli(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1000m"}}}), None)]
#[case::cpu_decimal_milli(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "0.001"}}}), None)]
#[case::cpu_exponent_one(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1e0"}}}), None)]
#[case::cpu_exponent_milli(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1e-3"}}}), Some("activation.env[0].valueFrom.resourceFieldRef.divisor: invalid value \"1e-3\""))]
#[case::cpu_zero(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "0"}}}), None)]
#[case::memory_thousand(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1000"}}}), None)]
#[case::memory_1024(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1024"}}}), Some("activation.env[0].valueFrom.resourceFieldRef.divisor: invalid value \"1024\""))]
#[case::memory_1024_ki(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1024Ki"}}}), None)]
#[case::memory_1000_ki(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1000Ki"}}}), Some("activation.env[0].valueFrom.resourceFieldRef.divisor: invalid value \"1000Ki\""))]
#[case::memory_exponent(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1e3"}}}), Some("activation.env[0].valueFrom.resourceFieldRef.divisor: invalid value \"1e3\""))]
#[case::memory_exa(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1E"}}}), None)]
#[case::memory_negative(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "-1"}}}), Some("activation.env[0].valueFrom.resourceFieldRef.divisor: invalid value \"-1\""))]
#[case::cpu_kilo(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1k"}}}), Some("activation.env[0].valueFrom.resourceFieldRef.divisor: invalid value \"1k\""))]
#[case::memory_mebi(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}}), None)]
#[case::memory_milli(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1m"}}}), Some("activation.env[0].valueFrom.resourceFieldRef.divisor: invalid value \"1m\": one of 1, 1k, 1M"))]
#[case::memory_two_ki(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "2Ki"}}}), Some("activation.env[0].valueFrom.resourceFieldRef.divisor: invalid value \"2Ki\""))]
#[case::storage_giga(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "requests.ephemeral-storage", "divisor": "1G"}}}), None)]
#[case::hugepages(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.hugepages-2Mi", "divisor": "1Mi"}}}), None)]
#[case::hugepages_milli(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.hugepages-2Mi", "divisor": "1m"}}}), Some("activation.env[0].valueFrom.resourceFieldRef.divisor: invalid value \"1m\""))]
#[case::divisor_not_a_quantity(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "lots"}}}), Some("activation.env[0].valueFrom.resourceFieldRef.divisor: invalid value \"lots\""))]
#[case::resource_gpu(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.nvidia.com/gpu"}}}), Some("activation.env[0].valueFrom.resourceFieldRef.resource: invalid value \"limits.nvidia.com/gpu\""))]
#[case::resource_empty(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"divisor": "1"}}}), Some("activation.env[0].valueFrom.resourceFieldRef.resource: invalid value \"\""))]
#[case::container_name(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "containerName": "app"}}}), None)]
// Not the API server's: it leaves containerName unchecked for env, but a name that is no
// container's fails the container at start (the kubelet finds no such container).
#[case::container_name_bad(json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "containerName": "App_1"}}}), Some("activation.env[0].valueFrom.resourceFieldRef.containerName: invalid value \"App_1\": expected a DNS-1123 label"))]
// validateConfigMapKeySelector / validateSecretKeySelector: ValidateSecretName (a DNS
// subdomain), validation.IsConfigMapKey.
#[case::config_map(json!({"name": "A", "valueFrom": {"configMapKeyRef": {"name": "otel.config", "key": ".endpoint_url", "optional": false}}}), None)]
#[case::secret_optional(json!({"name": "A", "valueFrom": {"secretKeyRef": {"name": "otel", "key": "token", "optional": true}}}), None)]
#[case::secret_name_upper(json!({"name": "A", "valueFrom": {"secretKeyRef": {"name": "Otel", "key": "k"}}}), Some("activation.env[0].valueFrom.secretKeyRef.name: invalid value \"Otel\": expected a DNS-1123 subdomain"))]
#[case::secret_name_missing(json!({"name": "A", "valueFrom": {"secretKeyRef": {"key": "k"}}}), Some("activation.env[0].valueFrom.secretKeyRef.name: invalid value \"\""))]
#[case::key_slash(json!({"name": "A", "valueFrom": {"configMapKeyRef": {"name": "otel", "key": "a/b"}}}), Some("activation.env[0].valueFrom.configMapKeyRef.key: invalid value \"a/b\": expected a ConfigMap or Secret key"))]
#[case::key_dotdot_prefix(json!({"name": "A", "valueFrom": {"configMapKeyRef": {"name": "otel", "key": "..a"}}}), Some("activation.env[0].valueFrom.configMapKeyRef.key: invalid value \"..a\""))]
#[case::key_too_long(json!({"name": "A", "valueFrom": {"configMapKeyRef": {"name": "otel", "key": "k".repeat(254)}}}), Some("activation.env[0].valueFrom.configMapKeyRef.key: invalid value"))]
#[case::key_missing(json!({"name": "A", "valueFrom": {"configMapKeyRef": {"name": "otel"}}}), Some("activation.env[0].valueFrom.configMapKeyRef.key: invalid value \"\""))]
#[case::optional_text(json!({"name": "A", "valueFrom": {"configMapKeyRef": {"name": "otel", "key": "k", "optional": "yes"}}}), Some("activation.env[0].valueFrom.configMapKeyRef.optional: invalid type: string \"yes\", expected a boolean"))]
#[case::ref_unknown_key(json!({"name": "A", "valueFrom": {"secretKeyRef": {"name": "otel", "key": "k", "namespace": "x"}}}), Some("activation.env[0].valueFrom.secretKeyRef.namespace: unknown key"))]
fn env_entries_are_checked_as_the_api_server_checks_them(
    #[case] entry: Value,
    #[case] error: Option<&str>,
) {
    let result = parse(json!({"env": [entry]}), &[]);
    match (result, error) {
        (Ok(_), None) => {}
        (Err(err), Some(expected)) => {
            let err = err.to_string();
            assert!(
                err.starts_with(expected),
                "{err:?} should start with {expected:?}"
            );
        }
        (Ok(_), Some(expected)) => panic!("accepted; the API server refuses it: {expected}"),
        (Err(err), None) => panic!("refused; the API server accepts it: {err}"),
    }
}

#[test]
fn recipe_entries_get_the_same_checks_under_their_own_key() {
    let err = parse(
        json!({"agents": {"java": {"directory": "java", "env": [
            {"name": "JAVA_TOOL_OPTIONS", "value": "-javaagent:{dir}/java/javaagent.jar", "join": " "},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['a b']"}}}]}}}),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("activation.agents.java.env[1].valueFrom.fieldRef.fieldPath: invalid value \"metadata.labels['a b']\""),
        "{err}"
    );
}

/// Every entry the settings hold (the recipes', `activation.env`'s, the downward-API
/// ones) goes into pods as the JSON written when the settings load: it must be, byte for
/// byte, serde_json's compact JSON of the entry the pod gets.
#[test]
fn every_settings_entry_is_prepared_as_serde_json_writes_it() {
    let activation = parse(
        json!({
            "agents": {"ruby": {"directory": "ruby", "env": [
                {"name": "RUBYOPT", "value": "-r{dir}/ruby/index.rb", "join": " "},
                {"name": "QUOTED", "value": "a \"b\"\\\n\u{1}é"}
            ]}},
            "env": [
                {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://collector:4318"},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "otel", "key": "endpoint.url", "optional": true}}}
            ]
        }),
        &[],
    )
    .unwrap();
    let entries: Vec<&PreparedEntry> = activation
        .agents
        .values()
        .flat_map(|recipe| &recipe.env)
        .chain(&activation.env)
        .chain(&activation.downward)
        .collect();
    // The five built-in and given recipes' entries, activation.env's and the downward ones.
    assert_eq!(entries.len(), 6 + 3 + 3);
    for entry in entries {
        assert_eq!(
            entry.json(),
            Some(
                serde_json::to_string(&env::as_json(entry))
                    .unwrap()
                    .as_str()
            ),
            "{entry:?}"
        );
    }
}
