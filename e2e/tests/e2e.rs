//! End to end across both components (DESIGN §6): the typical pod through the built
//! policy under every method (`MountMethod::ALL`), resolved to the files each container
//! would see, which must be the same for every method.
//!
//! virtual-device: the real plugin binary's `Allocate` answer, as the kubelet applies it;
//! host-path: the added volume and volumeMounts; init-container: the init container's
//! own command run with `sh` into a temp directory standing in for the emptyDir;
//! csi-driver: the running CSI node plugin (in its own mount namespace) publishes the
//! pod's CSI volume with a real read-only bind mount, and the mounts are resolved
//! against the published target path; image-volume: the mounts resolved against a
//! directory standing for the image's root file system, with the agents under `sourcePath`.
// Test and bench code: helpers fail loudly too (clippy.toml allows this in #[test] functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../../node/tests/support/csi.rs"]
mod csi_support;
#[path = "../../node/tests/support/mod.rs"]
mod support;

use agent_mount_common::MountMethod;
use agent_mount_node::device_plugin::api::device_plugin_client::DevicePluginClient;
use agent_mount_node::device_plugin::api::{AllocateRequest, ContainerAllocateRequest};
use agent_mount_node::uds;
use csi_support::{CsiNode, CsiPlugin};
use runner::build::{ensure_built, workspace_root};
use runner::env::{Cluster, effective_env};
use runner::host::PolicyHost;
use runner::input::read_request;
use runner::view::{SeenMount, container_views, files_below, requests_resource};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::{Node, registered_plugin};

/// CSI publishes so far: each gets its own pod UID.
static CSI_PODS: AtomicUsize = AtomicUsize::new(0);

/// Where the agents appear in containers under every method.
const MOUNT_PATH: &str = "/var/odigos";
const RESOURCE: &str = "instrumentation.odigos.io/generic";

/// What a container sees below MOUNT_PATH: (file path in the container, read-only).
type Files = BTreeSet<(String, bool)>;

/// Resolves every container's mounts below MOUNT_PATH to files; `source_dir` maps a mount's source to a directory.
fn seen_files(
    pod: &Value,
    extra: &mut dyn FnMut(&Value) -> Vec<SeenMount>,
    source_dir: &dyn Fn(&str) -> PathBuf,
) -> BTreeMap<String, Files> {
    container_views(pod, extra)
        .into_iter()
        .map(|view| {
            let files = view
                .mounts
                .iter()
                .filter(|m| m.container_path.starts_with(MOUNT_PATH))
                .flat_map(|m| {
                    let dir = source_dir(&m.source);
                    files_below(&dir)
                        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                        .into_iter()
                        .map(|f| (format!("{}/{f}", m.container_path), m.read_only))
                        .collect::<Vec<_>>()
                })
                .collect();
            (view.name, files)
        })
        .collect()
}

/// `host:<path>` → the path.
fn host_source(source: &str) -> PathBuf {
    PathBuf::from(
        source
            .strip_prefix("host:")
            .unwrap_or_else(|| panic!("not a host mount: {source}")),
    )
}

/// The node IP the test's kubelet resolves `status.hostIP` to.
const HOST_IP: &str = "10.0.0.7";

/// Activation on with the exporter in `activation.env`, for pods that carry the annotation.
fn activation_settings() -> Value {
    json!({"env": [
        {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://$(HOST_IP):4317"}
    ]})
}

/// Runs the policy; a pod that names agents in `agent-mount.io/agents` runs with activation on.
fn mutate(host: &PolicyHost, request: &Value, mut settings: Value) -> Value {
    if request["object"]["metadata"]["annotations"]["agent-mount.io/agents"].is_string() {
        settings["activation"] = activation_settings();
    }
    assert!(
        host.validate_settings(&settings).unwrap().valid,
        "{settings}"
    );
    let evaluation = host.validate(request, &settings).unwrap();
    assert!(
        evaluation.response.warnings.is_none(),
        "{:?}",
        evaluation.response.warnings
    );
    evaluation
        .response
        .mutated_object
        .expect("the pod is mutated")
}

/// What containers see under virtual-device: `Allocate` on the running plugin for every
/// container that requests the resource, as the kubelet calls it.
async fn virtual_device_view(
    host: &PolicyHost,
    request: &Value,
    node: &Node,
) -> (Value, BTreeMap<String, Files>) {
    let pod = mutate(host, request, json!({}));
    let mut client = DevicePluginClient::new(uds::connect(&node.socket()).await.unwrap());
    let mut allocated: HashMap<String, Vec<SeenMount>> = HashMap::new();
    let containers = pod["spec"]["containers"].as_array().unwrap();
    for (i, container) in containers
        .iter()
        .filter(|c| requests_resource(c, RESOURCE))
        .enumerate()
    {
        let request = AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: vec![format!("generic-{i}")],
            }],
        };
        let response = client.allocate(request).await.unwrap().into_inner();
        let mounts = response.container_responses[0]
            .mounts
            .iter()
            .map(|m| SeenMount {
                container_path: m.container_path.clone(),
                source: format!("host:{}", m.host_path),
                read_only: m.read_only,
            })
            .collect();
        allocated.insert(container["name"].as_str().unwrap().to_string(), mounts);
    }
    assert_eq!(
        allocated.len(),
        2,
        "checkout and cache-warmer request the resource"
    );
    let mut extra = |c: &Value| {
        allocated
            .get(c["name"].as_str().unwrap())
            .cloned()
            .unwrap_or_default()
    };
    let view = seen_files(&pod, &mut extra, &|source| host_source(source));
    (pod, view)
}

fn host_path_view(
    host: &PolicyHost,
    request: &Value,
    node: &Node,
    dirs: &[&str],
) -> (Value, BTreeMap<String, Files>) {
    let settings = json!({"mountMethod": "k8s-host-path", "hostPath": node.agents(), "mountPath": MOUNT_PATH, "agentDirectories": dirs});
    let pod = mutate(host, request, settings);
    let view = seen_files(&pod, &mut |_| Vec::new(), &|source| host_source(source));
    (pod, view)
}

/// Runs the copy init container's command with `sh`: the node's agent tree stands in
/// for the image's /instrumentations, a temp directory for the emptyDir.
fn init_container_view(
    host: &PolicyHost,
    request: &Value,
    node: &Node,
    dirs: &[&str],
) -> (Value, BTreeMap<String, Files>) {
    let settings = json!({"mountMethod": "k8s-init-container", "mountPath": MOUNT_PATH, "agentDirectories": dirs,
        "initContainer": {"image": "ghcr.io/example/agents:1.0"}});
    let pod = mutate(host, request, settings);
    let copy = &pod["spec"]["initContainers"][0];
    assert_eq!(copy["name"], "odigos-agent-init");
    let mut command: Vec<String> = serde_json::from_value(copy["command"].clone()).unwrap();
    assert_eq!(
        (command[4].as_str(), command[5].as_str()),
        ("/instrumentations", "/agent-mount-target")
    );
    let empty_dir = tempfile::Builder::new()
        .prefix("empty-dir-")
        .tempdir_in(node.root.path())
        .unwrap()
        .keep();
    command[4] = node.agents().display().to_string();
    command[5] = empty_dir.display().to_string();
    let status = std::process::Command::new(&command[0])
        .args(&command[1..])
        .status()
        .unwrap();
    assert!(status.success(), "{command:?}");
    let mut view = seen_files(&pod, &mut |_| Vec::new(), &|source| {
        let rest = source
            .strip_prefix("emptyDir:odigos-agent")
            .unwrap_or_else(|| panic!("{source}"));
        empty_dir.join(rest.trim_start_matches('/'))
    });
    // The copy container itself writes to the emptyDir outside MOUNT_PATH, so it sees nothing here.
    assert_eq!(view.remove("odigos-agent-init"), Some(Files::new()));
    (pod, view)
}

/// What containers see under csi-driver: the plugin publishes the pod's CSI volume at the
/// kubelet's target path, for real, and the mounts resolve below what it mounted there.
async fn csi_driver_view(
    host: &PolicyHost,
    request: &Value,
    csi_node: &CsiNode,
    plugin: &CsiPlugin,
    dirs: &[&str],
) -> (Value, BTreeMap<String, Files>) {
    let settings =
        json!({"mountMethod": "k8s-csi-driver", "mountPath": MOUNT_PATH, "agentDirectories": dirs});
    let pod = mutate(host, request, settings);
    let volume = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v.get("csi").is_some())
        .expect("a CSI volume");
    assert_eq!(volume["csi"]["driver"], csi_support::DRIVER);
    let name = volume["name"].as_str().unwrap();
    let uid = format!("pod-{}", CSI_PODS.fetch_add(1, Ordering::Relaxed));
    let target = plugin.publish(csi_node, &uid, name).await.unwrap();
    let published = plugin.view(&target);
    // Read-only for real: the kernel refuses a write through the bind mount.
    let err = std::fs::write(published.join("written-by-a-pod"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(30), "EROFS expected, got {err}");
    let view = seen_files(&pod, &mut |_| Vec::new(), &|source| {
        let sub_path = source
            .strip_prefix(&format!("csi:{}:", csi_support::DRIVER))
            .unwrap_or_else(|| panic!("not our CSI volume: {source}"));
        published.join(sub_path.trim_start_matches('/'))
    });
    plugin.unpublish(&target).await.unwrap();
    (pod, view)
}

/// An image's root file system with the node's agents under `source_path`, as
/// `image-volume` would mount it; `/` puts them at the root.
fn image_volume_view(
    host: &PolicyHost,
    request: &Value,
    node: &Node,
    dirs: &[&str],
    source_path: &str,
) -> (Value, BTreeMap<String, Files>) {
    const REFERENCE: &str = "ghcr.io/example/agents:1.0";
    // A fresh, not yet existing root: `cp -R` then makes it the agents' copy under `/`.
    let image_root = tempfile::Builder::new()
        .prefix("image-")
        .tempdir_in(node.root.path())
        .unwrap()
        .keep()
        .join("root");
    let agents_in_image = image_root.join(source_path.trim_start_matches('/'));
    std::fs::create_dir_all(agents_in_image.parent().unwrap()).unwrap();
    let status = std::process::Command::new("cp")
        .arg("-R")
        .arg(node.agents())
        .arg(&agents_in_image)
        .status()
        .unwrap();
    assert!(status.success());
    let settings = json!({"mountMethod": "k8s-image-volume", "mountPath": MOUNT_PATH, "agentDirectories": dirs,
        "imageVolume": {"reference": REFERENCE, "sourcePath": source_path}});
    let pod = mutate(host, request, settings);
    let view = seen_files(&pod, &mut |_| Vec::new(), &|source| {
        let sub_path = source
            .strip_prefix(&format!("image:{REFERENCE}:"))
            .unwrap_or_else(|| panic!("not the agents image: {source}"));
        image_root.join(sub_path.trim_start_matches('/'))
    });
    (pod, view)
}

/// Every container's view under `method`, with the mutated pod, one per variant of the
/// method (image-volume: each `sourcePath`), labelled. The match is exhaustive: a new method has no view until
/// it is given one here, so it cannot escape this test.
async fn views(
    method: MountMethod,
    host: &PolicyHost,
    request: &Value,
    node: &Node,
    csi: (&CsiNode, &CsiPlugin),
    dirs: &[&str],
) -> Vec<(String, (Value, BTreeMap<String, Files>))> {
    let one = |view| vec![(String::new(), view)];
    match method {
        MountMethod::VirtualDevice if dirs.is_empty() => {
            one(virtual_device_view(host, request, node).await)
        }
        // The device plugin always mounts the whole directory: no agentDirectories.
        MountMethod::VirtualDevice => Vec::new(),
        MountMethod::HostPath => one(host_path_view(host, request, node, dirs)),
        MountMethod::InitContainer => one(init_container_view(host, request, node, dirs)),
        MountMethod::CsiDriver => one(csi_driver_view(host, request, csi.0, csi.1, dirs).await),
        MountMethod::ImageVolume => ["/instrumentations", "/"]
            .into_iter()
            .map(|source_path| {
                (
                    format!(" at sourcePath {source_path}"),
                    image_volume_view(host, request, node, dirs, source_path),
                )
            })
            .collect(),
    }
}

/// What each container of the typical pod should see: the instrumented ones the agents
/// (all, or the listed directories), read-only; the sidecar and the init container nothing.
fn expected_view(node: &Node, dirs: &[&str]) -> BTreeMap<String, Files> {
    let agents: Files = files_below(&node.agents())
        .unwrap()
        .into_iter()
        .filter(|f| dirs.is_empty() || dirs.iter().any(|d| f.starts_with(&format!("{d}/"))))
        .map(|f| (format!("{MOUNT_PATH}/{f}"), true))
        .collect();
    [
        ("checkout", agents.clone()),
        ("cache-warmer", agents),
        ("istio-proxy", Files::new()),
        ("istio-init", Files::new()),
    ]
    .into_iter()
    .map(|(name, files)| (name.to_string(), files))
    .collect()
}

#[tokio::test]
async fn every_method_gives_each_container_the_same_read_only_view() {
    let (node, _kubelet, _plugin) = registered_plugin(&[]).await;
    for (file, content) in [
        ("python/opentelemetry/__init__.py", "py"),
        ("nodejs-community/index.js", "js"),
    ] {
        std::fs::create_dir_all(node.agents().join(file).parent().unwrap()).unwrap();
        std::fs::write(node.agents().join(file), content).unwrap();
    }

    let host = PolicyHost::load(&ensure_built().unwrap()).unwrap();
    let request = read_request(&workspace_root().join("test_data/pod_typical.json")).unwrap();
    // The CSI node plugin serves the same agent directory, from its own mount namespace.
    let csi_node = CsiNode::new();
    let csi_plugin = CsiPlugin::start_with(&csi_node, &node.agents(), &[]).await;

    // The whole directory, then agentDirectories (every method but virtual-device).
    for (dirs, files) in [(&[][..], 3), (&["java", "python"][..], 2)] {
        let expected = expected_view(&node, dirs);
        assert_eq!(expected["checkout"].len(), files, "the agent tree");
        let mut seen = Vec::new();
        for method in MountMethod::ALL {
            let csi = (&csi_node, &csi_plugin);
            for (variant, (_, view)) in views(method, &host, &request, &node, csi, dirs).await {
                assert_eq!(
                    view,
                    expected,
                    "{}{variant}, agentDirectories {dirs:?}",
                    method.as_str()
                );
                seen.push(method);
            }
        }
        if dirs.is_empty() {
            assert!(
                MountMethod::ALL.iter().all(|m| seen.contains(m)),
                "{seen:?}"
            );
        }
    }
}

/// The agent tree with every file a built-in recipe names (Odigos's layout).
const RECIPE_FILES: [&str; 4] = [
    "java/javaagent.jar",
    "python/opentelemetry/instrumentation/auto_instrumentation/sitecustomize.py",
    "nodejs-community/autoinstrumentation.js",
    "loader/loader.so",
];

/// The variables the built-in recipes set.
const RECIPE_VARIABLES: [&str; 4] = [
    "JAVA_TOOL_OPTIONS",
    "PYTHONPATH",
    "NODE_OPTIONS",
    "LD_PRELOAD",
];

/// The paths below MOUNT_PATH that an environment's recipe variables name.
fn named_paths(env: &BTreeMap<String, String>) -> Vec<String> {
    RECIPE_VARIABLES
        .iter()
        .filter_map(|v| env.get(*v))
        .flat_map(|value| value.split([' ', ':', '=']))
        .filter(|item| item.starts_with(MOUNT_PATH))
        .map(String::from)
        .collect()
}

/// Whether `path` is in `files`, read-only: a file, or a directory with files all read-only.
fn read_only_in(files: &Files, path: &str) -> bool {
    let below = format!("{path}/");
    let found: Vec<&(String, bool)> = files
        .iter()
        .filter(|(f, _)| f == path || f.starts_with(&below))
        .collect();
    !found.is_empty() && found.iter().all(|(_, read_only)| *read_only)
}

#[tokio::test]
async fn every_activated_container_finds_what_its_recipe_names_read_only_under_every_method() {
    let (node, _kubelet, _plugin) = registered_plugin(&[]).await;
    for file in RECIPE_FILES {
        std::fs::create_dir_all(node.agents().join(file).parent().unwrap()).unwrap();
        std::fs::write(node.agents().join(file), file).unwrap();
    }
    let host = PolicyHost::load(&ensure_built().unwrap()).unwrap();
    let typical = read_request(&workspace_root().join("test_data/pod_typical.json")).unwrap();
    let csi_node = CsiNode::new();
    let csi_plugin = CsiPlugin::start_with(&csi_node, &node.agents(), &[]).await;
    let cluster = Cluster {
        fields: [
            ("status.hostIP", HOST_IP),
            ("metadata.name", "checkout-7d9c8b6f5-x2x4z"),
            ("metadata.namespace", "shop"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into(),
        ..Cluster::default()
    };
    // (annotation, agentDirectories, paths each container's recipe names)
    let cases: [(&str, &[&str], [usize; 2]); 3] = [
        ("checkout=java, cache-warmer=python", &[], [1, 2]),
        (
            "checkout=java, cache-warmer=python",
            &["java", "python"],
            [1, 2],
        ),
        // checkout keeps its own JAVA_TOOL_OPTIONS, which names the Java agent too.
        ("checkout=nodejs, cache-warmer=loader", &[], [2, 1]),
    ];
    let mut checked = 0;
    for (annotation, dirs, named) in cases {
        let mut request = typical.clone();
        request["object"]["metadata"]["annotations"]["agent-mount.io/agents"] = json!(annotation);
        for method in MountMethod::ALL {
            let csi = (&csi_node, &csi_plugin);
            for (variant, (pod, view)) in views(method, &host, &request, &node, csi, dirs).await {
                let label = format!(
                    "{}{variant}, {annotation:?}, agentDirectories {dirs:?}",
                    method.as_str()
                );
                let containers = pod["spec"]["containers"].as_array().unwrap();
                for (name, count) in ["checkout", "cache-warmer"].into_iter().zip(named) {
                    let container = containers.iter().find(|c| c["name"] == name).unwrap();
                    // The environment as the kubelet resolves it: envFrom, then env in order.
                    let env = effective_env(container, &cluster).unwrap();
                    assert_eq!(
                        env["OTEL_EXPORTER_OTLP_ENDPOINT"],
                        format!("http://{HOST_IP}:4317"),
                        "{label}: {name}"
                    );
                    let paths = named_paths(&env);
                    assert_eq!(paths.len(), count, "{label}: {name} {env:?}");
                    for path in paths {
                        assert!(
                            read_only_in(&view[name], &path),
                            "{label}: {name} names {path}, which it does not see read-only: {:?}",
                            view[name]
                        );
                        checked += 1;
                    }
                }
                // The sidecar is neither mounted nor activated.
                let sidecar = containers
                    .iter()
                    .find(|c| c["name"] == "istio-proxy")
                    .unwrap();
                assert!(named_paths(&effective_env(sidecar, &cluster).unwrap()).is_empty());
            }
        }
    }
    // Per case: every method, image-volume twice; virtual-device only for the whole directory.
    assert_eq!(checked, 3 * 6 + 3 * 5 + 3 * 6, "paths checked");
}
