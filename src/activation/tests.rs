use super::*;
use rstest::rstest;
use serde_json::json;

/// Parses an `activation` block as the settings would, with the agents at /var/odigos.
fn parse(value: Value, mounted: &[&str]) -> Result<Activation, SettingsError> {
    let raw: RawActivation = crate::settings::decode::deserialize_at(value, "activation")?;
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
        .map(|(name, r)| (name.as_str(), r.directory.as_str(), r.env.clone()))
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
    let raw: RawActivation = serde_json::from_value(json!({
        "agents": {"java": {"directory": "java", "env": [
            {"name": "JAVA_TOOL_OPTIONS", "value": "-javaagent:{dir}/java/agent.jar -Dx={dir}", "join": " "}]}},
        "env": [{"name": "AGENTS", "value": "{dir}"}]
    }))
    .unwrap();
    let activation = Activation::from_raw(raw, "/opt/agents", &[]).unwrap();
    assert_eq!(
        activation.agents["java"].env,
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
    assert_eq!(activation.agents["java"].env[0].name(), "JDK_JAVA_OPTIONS");
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
        .map(|e| match e {
            EnvEntry::ValueFrom { source, .. } => source.clone(),
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
            activation.agents[b.name], defaults.agents[b.name],
            "{}",
            b.name
        );
    }
}
