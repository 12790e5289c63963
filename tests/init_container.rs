//! The init-container method: PSA `restricted`, no host access, and the copy script itself.

mod support;

use agent_mount::copy::COPY_SCRIPT;
use agent_mount::response::validate;
use agent_mount::settings::{self, Method, Settings};
use rstest::rstest;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{fixture, payload};

fn init_settings(extra: Value) -> Value {
    let mut settings = json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "ghcr.io/example/agents:1.0"}});
    for (k, v) in extra.as_object().unwrap() {
        settings[k] = v.clone();
    }
    settings
}

fn mutated(name: &str, settings: &Value) -> Value {
    validate(&payload(&fixture(name), settings))
        .mutated_object
        .expect("mutated")
}

/// Volume types PSA `restricted` allows. `image` since Kubernetes 1.33
/// (kubernetes/kubernetes#130394, pod-security-admission's restricted volume check);
/// the Pod Security Standards page lags behind the code.
const RESTRICTED_VOLUMES: [&str; 9] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The copy container's command under these settings.
fn copy_command(settings: &Settings) -> Vec<String> {
    let Method::InitContainer { copy, mounts } = &settings.method else {
        panic!("not init-container settings: {settings:?}");
    };
    copy.command(&mounts.agent_directories)
}

/// Every PSA `restricted` (and so `baseline`) rule a container breaks, per the Pod Security Standards.
fn restricted_violations(container: &Value) -> Vec<String> {
    let sc = &container["securityContext"];
    let mut out = Vec::new();
    if sc["privileged"] == true {
        out.push("privileged".into());
    }
    if sc["allowPrivilegeEscalation"] != false {
        out.push("allowPrivilegeEscalation must be false".into());
    }
    if sc["runAsNonRoot"] != true {
        out.push("runAsNonRoot must be true".into());
    }
    if sc["runAsUser"].as_i64().is_none_or(|uid| uid <= 0) {
        out.push("runAsUser must be a non-zero number".into());
    }
    if !matches!(
        sc["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault" | "Localhost")
    ) {
        out.push("seccompProfile.type must be RuntimeDefault or Localhost".into());
    }
    let drop = sc["capabilities"]["drop"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !drop.contains(&json!("ALL")) {
        out.push("capabilities must drop ALL".into());
    }
    let add = sc["capabilities"]["add"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if add.iter().any(|c| c != "NET_BIND_SERVICE") {
        out.push("capabilities may add only NET_BIND_SERVICE".into());
    }
    if sc
        .get("windowsOptions")
        .is_some_and(|w| w["hostProcess"] == true)
    {
        out.push("hostProcess".into());
    }
    if container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p.get("hostPort").is_some())
    {
        out.push("hostPort".into());
    }
    if sc["appArmorProfile"]["type"] == "Unconfined" {
        out.push("appArmorProfile Unconfined".into());
    }
    if sc.get("procMount").is_some_and(|p| p != "Default") {
        out.push("procMount".into());
    }
    out
}

#[rstest]
#[case::defaults(json!({}))]
#[case::per_agent_with_limit(json!({"agentDirectories": ["java"], "initContainer": {"image": "a:1", "sizeLimit": "64Mi"}}))]
fn everything_added_passes_psa_restricted(#[case] extra: Value) {
    let settings = init_settings(extra);
    let pod = mutated("pod_typical.json", &settings);
    let copy = &pod["spec"]["initContainers"][0];
    assert_eq!(copy["name"], "odigos-agent-init");
    assert_eq!(restricted_violations(copy), Vec::<String>::new());
    let added = pod["spec"]["volumes"].as_array().unwrap().last().unwrap();
    let kind = added
        .as_object()
        .unwrap()
        .keys()
        .find(|k| *k != "name")
        .unwrap();
    assert!(RESTRICTED_VOLUMES.contains(&kind.as_str()), "{kind}");
    // The checker is real: the fixture's own istio-init (NET_ADMIN, root) fails it.
    assert!(!restricted_violations(&pod["spec"]["initContainers"][1]).is_empty());
}

#[test]
fn overriding_the_user_keeps_the_rest_of_the_hardening() {
    let settings = init_settings(
        json!({"initContainer": {"image": "a:1", "securityContext": {"runAsUser": 1000}}}),
    );
    let copy = &mutated("pod_small.json", &settings)["spec"]["initContainers"][0];
    assert_eq!(copy["securityContext"]["runAsUser"], 1000);
    assert_eq!(restricted_violations(copy), Vec::<String>::new());
}

/// Every method but host-path adds only volume types PSA `restricted` admits.
#[rstest]
#[case::virtual_device(json!({}))]
#[case::init_container(init_settings(json!({})))]
#[case::csi_driver(json!({"mountMethod": "k8s-csi-driver"}))]
#[case::image_volume(json!({"mountMethod": "k8s-image-volume", "imageVolume": {"reference": "ghcr.io/example/agents:1.0"}}))]
fn only_restricted_volume_types_are_added(#[case] settings: Value) {
    let original = fixture("pod_typical.json");
    let before = original["object"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .len();
    let pod = mutated("pod_typical.json", &settings);
    let volumes = pod["spec"]["volumes"].as_array().unwrap();
    for added in &volumes[before..] {
        let kind = added
            .as_object()
            .unwrap()
            .keys()
            .find(|k| *k != "name")
            .unwrap();
        assert!(RESTRICTED_VOLUMES.contains(&kind.as_str()), "{kind}");
    }
    assert!(
        volumes.iter().all(|v| v.get("hostPath").is_none()),
        "{volumes:?}"
    );
}

/// A fresh directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("agent-mount-copy-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every file below `root`, as sorted relative paths with their contents.
fn tree(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(root).unwrap().display().to_string();
                out.push((relative, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Runs the init container's exact command, with its two paths pointed at temp directories.
fn run_copy(command: &[String], source: &Path, target: &Path) {
    assert_eq!(&command[..4], ["sh", "-c", COPY_SCRIPT, "agent-mount-copy"]);
    let mut args = command.to_vec();
    args[4] = source.display().to_string();
    args[5] = target.display().to_string();
    let status = Command::new(&args[0])
        .args(&args[1..])
        .status()
        .expect("run sh");
    assert!(status.success(), "{args:?}");
}

#[rstest]
#[case::whole_directory(vec![], vec!["dotnet/agent.dll", "java/javaagent.jar", "java/lib/extra.jar", "python/site/otel.py"])]
#[case::per_agent(vec!["java", "python"], vec!["java/javaagent.jar", "java/lib/extra.jar", "python/site/otel.py"])]
fn the_copy_script_copies_the_agent_tree(#[case] dirs: Vec<&str>, #[case] expected: Vec<&str>) {
    let name = if dirs.is_empty() { "whole" } else { "dirs" };
    let image = temp_dir(&format!("{name}-image"));
    let source = image.join("instrumentations");
    for (file, content) in [
        ("java/javaagent.jar", "jar"),
        ("java/lib/extra.jar", "extra"),
        ("python/site/otel.py", "py"),
        ("dotnet/agent.dll", "dll"),
    ] {
        std::fs::create_dir_all(source.join(file).parent().unwrap()).unwrap();
        std::fs::write(source.join(file), content).unwrap();
    }
    let target = temp_dir(&format!("{name}-target"));
    let settings = settings::parse(init_settings(json!({"agentDirectories": dirs}))).unwrap();
    run_copy(&copy_command(&settings), &source, &target);
    let copied: Vec<String> = tree(&target).into_iter().map(|(path, _)| path).collect();
    assert_eq!(copied, expected);
    assert!(
        tree(&target)
            .iter()
            .all(|(path, content)| std::fs::read_to_string(source.join(path)).unwrap() == *content)
    );
    // Running it again (a restarted init container) succeeds and changes nothing.
    run_copy(&copy_command(&settings), &source, &target);
    assert_eq!(tree(&target).len(), expected.len());
    std::fs::remove_dir_all(image).unwrap();
    std::fs::remove_dir_all(target).unwrap();
}

#[test]
fn a_missing_agent_directory_fails_the_copy_loudly() {
    let source = temp_dir("missing-source");
    let target = temp_dir("missing-target");
    let settings = settings::parse(init_settings(json!({"agentDirectories": ["ruby"]}))).unwrap();
    let mut args = copy_command(&settings);
    args[4] = source.display().to_string();
    args[5] = target.display().to_string();
    let status = Command::new(&args[0]).args(&args[1..]).status().unwrap();
    assert!(
        !status.success(),
        "set -e stops on the failed cp, so the pod does not start without its agent"
    );
}
