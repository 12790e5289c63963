//! Packaging: policy.yaml, artifacthub-pkg.yml and questions-ui.yml agree with each other and the code.
// Test and bench code: helpers fail loudly too (clippy.toml allows this in #[test] functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use agent_mount::settings::keys::applies_to;
use agent_mount::settings::raw::RawSettings;
use agent_mount_common::MountMethod;
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

/// Every settings key path, nested keys dotted, from settings with every key set.
fn settings_keys() -> Vec<String> {
    let mut keys = Vec::new();
    let value = serde_json::to_value(RawSettings::every_key()).unwrap();
    for (key, inner) in value.as_object().unwrap() {
        keys.push(key.clone());
        if let Value::Object(nested) = inner {
            keys.extend(nested.keys().map(|k| format!("{key}.{k}")));
        }
    }
    keys
}

/// The methods a (possibly dotted) key applies to, as the settings say it.
fn methods_of(key: &str) -> Vec<MountMethod> {
    applies_to(key)
}

/// A method's name as the documentation shortens it, e.g. `host-path`.
fn short(method: MountMethod) -> &'static str {
    method.as_str().trim_start_matches("k8s-")
}

/// How the README states where a key applies: "every method", or the short names.
fn applies_phrase(key: &str) -> String {
    let methods = methods_of(key);
    if methods.len() == MountMethod::ALL.len() {
        "applies to: every method".into()
    } else {
        let names: Vec<&str> = methods.into_iter().map(short).collect();
        format!("applies to: {}", names.join(", "))
    }
}

#[test]
fn readme_documents_every_setting_where_it_applies() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    for key in settings_keys().iter().filter(|k| !k.contains('.')) {
        let heading = format!("**`{key}`** (");
        let start = readme
            .find(&heading)
            .unwrap_or_else(|| panic!("README.md has no paragraph starting {heading}"));
        let rest = &readme[start..];
        let parenthetical = &rest[..rest.find(")").unwrap()];
        let phrase = applies_phrase(key);
        assert!(
            parenthetical.ends_with(&phrase),
            "README.md: {heading}...) should end with {phrase:?}, found {parenthetical:?}"
        );
    }
}

#[test]
fn questions_ui_shows_each_key_where_it_applies() {
    let questions = document("questions-ui.yml");
    for question in questions["questions"].as_array().unwrap() {
        let variable = question["variable"].as_str().unwrap();
        if variable == "description" {
            continue;
        }
        let methods = methods_of(variable);
        let show_if = question.get("show_if").and_then(Value::as_str);
        match methods.as_slice() {
            [only] => assert_eq!(
                show_if,
                Some(format!("mountMethod={}", only.as_str()).as_str()),
                "{variable}"
            ),
            several => {
                assert_eq!(show_if, None, "{variable} applies to several methods");
                if several.len() < MountMethod::ALL.len() {
                    let description = question["description"].as_str().unwrap();
                    for method in several {
                        assert!(
                            description.contains(short(*method)),
                            "{variable}: the description should name {}",
                            short(*method)
                        );
                    }
                }
            }
        }
    }
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
    assert!(keys.len() >= 20, "{keys:?}");
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
