//! Packaging: policy.yaml, artifacthub-pkg.yml and questions-ui.yml agree with each other and the code.

use agent_mount::settings::{InitContainerSettings, MountMethod, NodeLabel, Settings};
use runner::build::workspace_root;
use runner::input::read_document;
use serde_json::{Value, json};

fn document(name: &str) -> Value {
    read_document(&workspace_root().join(name)).unwrap()
}

fn yaml_string(value: &Value) -> Value {
    serde_yaml::from_str(value.as_str().expect("a YAML string")).unwrap()
}

#[test]
fn artifacthub_agrees_with_policy_metadata() {
    let metadata = document("policy.yaml");
    let hub = document("artifacthub-pkg.yml");
    let annotation = |key: &str| metadata["annotations"][key].as_str().unwrap().to_string();
    let version = annotation("io.kubewarden.policy.version");
    assert_eq!(hub["version"], version.as_str());
    assert_eq!(
        version,
        env!("CARGO_PKG_VERSION"),
        "policy.yaml version vs the crates' version"
    );
    assert_eq!(
        hub["name"],
        annotation("io.kubewarden.policy.title").as_str()
    );
    assert_eq!(
        hub["displayName"],
        annotation("io.artifacthub.displayName").as_str()
    );
    assert_eq!(
        hub["description"],
        annotation("io.kubewarden.policy.description").as_str()
    );
    assert_eq!(
        hub["license"],
        annotation("io.kubewarden.policy.license").as_str()
    );
    assert_eq!(
        hub["homeURL"],
        annotation("io.kubewarden.policy.url").as_str()
    );
    let image = format!("{}:v{version}", annotation("io.kubewarden.policy.ociUrl"));
    assert_eq!(hub["containersImages"][0]["image"], image.as_str());
    let keywords: Vec<String> = annotation("io.artifacthub.keywords")
        .split(',')
        .map(|k| k.trim().to_string())
        .collect();
    assert_eq!(hub["keywords"], json!(keywords));
    let hub_annotations = &hub["annotations"];
    assert_eq!(
        hub_annotations["kubewarden/mutation"],
        metadata["mutating"].to_string().as_str()
    );
    assert_eq!(
        hub_annotations["kubewarden/resources"],
        annotation("io.artifacthub.resources").as_str()
    );
    assert_eq!(
        yaml_string(&hub_annotations["kubewarden/rules"]),
        metadata["rules"]
    );
    assert_eq!(
        yaml_string(&hub_annotations["kubewarden/contextAwareResources"]),
        metadata["contextAwareResources"]
    );
    let questions = std::fs::read_to_string(workspace_root().join("questions-ui.yml")).unwrap();
    assert_eq!(
        hub_annotations["kubewarden/questions-ui"],
        questions.as_str()
    );
    assert_eq!(metadata["executionMode"], "kubewarden-wapc");
    assert_eq!(metadata["backgroundAudit"], false);
    for key in [
        "title",
        "description",
        "author",
        "url",
        "source",
        "license",
        "version",
        "severity",
        "category",
    ] {
        assert!(
            metadata["annotations"]
                .get(format!("io.kubewarden.policy.{key}"))
                .is_some(),
            "{key}"
        );
    }
}

/// Every settings key path, taken from fully populated settings structs.
fn settings_keys() -> Vec<String> {
    let full = Settings {
        mount_method: MountMethod::InitContainer,
        resource_name: Some(String::new()),
        host_path: Some(String::new()),
        mount_path: Some(String::new()),
        volume_name: Some(String::new()),
        agent_directories: Some(Vec::new()),
        required_node_label: Some(NodeLabel {
            key: String::new(),
            value: String::new(),
        }),
        init_container: Some(InitContainerSettings {
            image: Some(String::new()),
            source_path: Some(String::new()),
            name: Some(String::new()),
            resources: Some(json!({})),
            security_context: Some(json!({})),
            size_limit: Some(String::new()),
        }),
        ..Settings::default()
    };
    let mut keys = Vec::new();
    let value = serde_json::to_value(full).unwrap();
    for (key, inner) in value.as_object().unwrap() {
        keys.push(key.clone());
        if let Value::Object(nested) = inner {
            keys.extend(nested.keys().map(|k| format!("{key}.{k}")));
        }
    }
    keys
}

#[test]
fn questions_ui_covers_every_setting() {
    let questions = document("questions-ui.yml");
    let variables: Vec<&str> = questions["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["variable"].as_str().unwrap())
        .collect();
    let keys = settings_keys();
    assert!(keys.len() >= 16, "{keys:?}");
    for key in &keys {
        let covered = variables
            .iter()
            .any(|v| v == key || v.starts_with(&format!("{key}.")));
        assert!(
            covered,
            "questions-ui.yml has no entry for settings key {key}"
        );
    }
    let options = questions["questions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["variable"] == "mountMethod")
        .unwrap();
    let methods: Vec<&str> = MountMethod::ALL.iter().map(|m| m.as_str()).collect();
    assert_eq!(options["options"], json!(methods));
    for question in questions["questions"].as_array().unwrap() {
        let allowed = ["string", "boolean", "int", "enum", "array[", "map["];
        assert!(
            allowed.contains(&question["type"].as_str().unwrap()),
            "{question}"
        );
        for field in ["variable", "group", "label", "description", "type"] {
            assert!(
                question.get(field).is_some(),
                "{field} missing in {question}"
            );
        }
    }
}
