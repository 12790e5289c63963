//! End to end across both components (DESIGN §6): the typical pod through the built
//! policy under every method (`MountMethod::ALL`), resolved to the files each container
//! would see, which must be the same for every method.
//!
//! The node methods take the agents as the deploy overlays configure them: the real
//! `agent-mount-node agents install` fills an installer root from the agents tree, and the
//! device plugin's `--host-path`, the CSI plugin's `--agent-dir` and the policy's `hostPath`
//! are all `<root>/current` (DESIGN §3c), resolved to `versions/<digest>` when a view is made.
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
use agent_mount_e2e::container::{ViewMount, WROTE_INTO_AGENTS, run_in_view};
use agent_mount_e2e::otlp::{Exported, Receiver};
use agent_mount_e2e::tree::agents_tree;
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
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::{FakeKubelet, Node, Plugin};

/// CSI publishes so far: each gets its own pod UID.
static CSI_PODS: AtomicUsize = AtomicUsize::new(0);

/// Where the agents appear in containers under every method.
const MOUNT_PATH: &str = "/var/odigos";
const RESOURCE: &str = "instrumentation.odigos.io/generic";

/// What a container sees below MOUNT_PATH: (file path in the container, read-only).
type Files = BTreeSet<(String, bool)>;

/// Every container's mounts below MOUNT_PATH, each source resolved to a directory.
type Mounts = BTreeMap<String, Vec<ViewMount>>;

/// What one method gives the pod: the mutated pod, each container's mounts, and the mount
/// namespace whose paths the sources are (a CSI plugin's; `None`: this process's).
struct View {
    pod: Value,
    mounts: Mounts,
    namespace: Option<u32>,
}

impl View {
    /// The directory behind `mount`, as seen from this process.
    fn dir(&self, mount: &ViewMount) -> PathBuf {
        match self.namespace {
            Some(pid) => PathBuf::from(format!("/proc/{pid}/root"))
                .join(mount.source.strip_prefix("/").unwrap()),
            None => mount.source.clone(),
        }
    }

    /// Asserts that every mount is read-only and shows the installed `version`'s directory at
    /// the same place below MOUNT_PATH: the very directory (device and inode), not a copy,
    /// so `<root>/current` was resolved to `versions/<digest>`.
    fn assert_mounts_version(&self, version: &Path, label: &str) {
        use std::os::unix::fs::MetadataExt;
        let identity = |dir: &Path| {
            let meta = std::fs::metadata(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            (meta.dev(), meta.ino())
        };
        for (name, mounts) in &self.mounts {
            for mount in mounts {
                let below = mount.container_path.strip_prefix(MOUNT_PATH).unwrap();
                let installed = version.join(below.trim_start_matches('/'));
                assert!(mount.read_only, "{label}: {name}: {mount:?}");
                assert_eq!(
                    identity(&self.dir(mount)),
                    identity(&installed),
                    "{label}: {name} sees {} at {}, not {}",
                    self.dir(mount).display(),
                    mount.container_path,
                    installed.display()
                );
            }
        }
    }

    /// What each container sees below MOUNT_PATH, file by file.
    fn files(&self) -> BTreeMap<String, Files> {
        self.mounts
            .iter()
            .map(|(name, mounts)| {
                let files = mounts
                    .iter()
                    .flat_map(|m| {
                        let dir = self.dir(m);
                        files_below(&dir)
                            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                            .into_iter()
                            .map(|f| (format!("{}/{f}", m.container_path), m.read_only))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                (name.clone(), files)
            })
            .collect()
    }
}

/// Resolves every container's mounts below MOUNT_PATH; `source_dir` maps a mount's source to a directory.
fn resolved_mounts(
    pod: Value,
    extra: &mut dyn FnMut(&Value) -> Vec<SeenMount>,
    source_dir: &dyn Fn(&str) -> PathBuf,
) -> View {
    let mounts = container_views(&pod, extra)
        .into_iter()
        .map(|view| {
            let mounts = view
                .mounts
                .iter()
                .filter(|m| m.container_path.starts_with(MOUNT_PATH))
                .map(|m| ViewMount {
                    container_path: m.container_path.clone(),
                    source: source_dir(&m.source),
                    read_only: m.read_only,
                })
                .collect();
            (view.name, mounts)
        })
        .collect();
    View {
        pod,
        mounts,
        namespace: None,
    }
}

/// `host:<path>` → the directory the kubelet binds: the path with its symlinks resolved
/// (`<root>/current` → `<root>/versions/<digest>`), as a bind mount resolves them when the
/// container starts; a later switch of `current` leaves the container's view alone.
fn host_source(source: &str) -> PathBuf {
    let path = source
        .strip_prefix("host:")
        .unwrap_or_else(|| panic!("not a host mount: {source}"));
    std::fs::canonicalize(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The node IP the test's kubelet resolves `status.hostIP` to.
const HOST_IP: &str = "10.0.0.7";

/// Activation on with the exporter at `port` of the node in `activation.env`, and `extra` entries.
fn activation_settings(port: u16, extra: &[Value]) -> Value {
    let mut env = vec![
        json!({"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}),
        json!({"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": format!("http://$(HOST_IP):{port}")}),
    ];
    env.extend_from_slice(extra);
    json!({ "env": env })
}

/// What every view needs: the policy, the node with both plugins, its installer root's
/// `current`, and the `activation` settings for pods that name agents in `agent-mount.io/agents`.
struct Setup<'a> {
    host: &'a PolicyHost,
    node: &'a Node,
    current: PathBuf,
    csi_node: &'a CsiNode,
    csi_plugin: &'a CsiPlugin,
    activation: Value,
}

/// The built policy, and a node whose agents tree (`node.agents()`, standing for the agents
/// image's `/instrumentations`) `fill` wrote and `agents install` put under an installer
/// root, with the device plugin (registered with a fake kubelet) and the CSI node plugin (in
/// its own mount namespace) serving the root's `current`, as the deploy overlays run them.
struct Fixture {
    host: PolicyHost,
    node: Node,
    /// The installer's root (`--root`), on the node.
    agents_root: PathBuf,
    _kubelet: FakeKubelet,
    _device_plugin: Plugin,
    csi_node: CsiNode,
    csi_plugin: CsiPlugin,
    /// Holds the installer's root; dropped last, after the plugins that mount it.
    _agents_dir: tempfile::TempDir,
}

impl Fixture {
    async fn start(fill: impl FnOnce(&Path)) -> Fixture {
        let node = Node::new();
        fill(&node.agents());
        // On tmpfs, as node/tests/agents.rs installs: the installed copy of the real tree
        // (59 MB, 7,279 files) then costs no disk writes, nor discards when it is removed.
        let agents_dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let agents_root = agents_dir.path().join("agent-mount-agents");
        install_agents(&node.agents(), &agents_root);
        let current = agents_root.join("current");
        let mut kubelet = FakeKubelet::start(&node.plugin_dir());
        // deploy/virtual-device: AGENT_MOUNT_HOST_PATH `<root>/current`, container path /var/odigos.
        let device_plugin = Plugin::spawn(Plugin::command_with(&node, &current, &[]));
        kubelet.registered(Duration::from_secs(10)).await;
        // deploy/csi-driver: AGENT_MOUNT_AGENT_DIR `<root>/current`.
        let csi_node = CsiNode::new();
        let csi_plugin = CsiPlugin::start_with(&csi_node, &current, &[]).await;
        Fixture {
            host: PolicyHost::load(&ensure_built().unwrap()).unwrap(),
            node,
            agents_root,
            _kubelet: kubelet,
            _device_plugin: device_plugin,
            csi_node,
            csi_plugin,
            _agents_dir: agents_dir,
        }
    }

    /// The version directory `<root>/current` resolves to now.
    fn version(&self) -> PathBuf {
        std::fs::canonicalize(self.agents_root.join("current")).unwrap()
    }

    /// Installs the node's agents tree again (as a rolled agents DaemonSet does); returns
    /// the version directory `current` now points at.
    fn install(&self) -> PathBuf {
        install_agents(&self.node.agents(), &self.agents_root)
    }

    fn setup(&self, activation: Value) -> Setup<'_> {
        Setup {
            host: &self.host,
            node: &self.node,
            current: self.agents_root.join("current"),
            csi_node: &self.csi_node,
            csi_plugin: &self.csi_plugin,
            activation,
        }
    }
}

/// Runs the real `agent-mount-node agents install --from <tree> --root <root>` with the
/// deploy overlay's other settings (the default grace); returns the version directory that
/// `<root>/current` now resolves to, which must be one of `<root>/versions/`.
fn install_agents(tree: &Path, root: &Path) -> PathBuf {
    let output = std::process::Command::new(support::node_binary())
        .args(["agents", "install", "--from"])
        .arg(tree)
        .arg("--root")
        .arg(root)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "agents install: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let version = std::fs::canonicalize(root.join("current")).unwrap();
    assert_eq!(
        version.parent(),
        Some(
            std::fs::canonicalize(root.join("versions"))
                .unwrap()
                .as_path()
        ),
        "current resolves to a version"
    );
    version
}

/// Writes each `(file, content)` below `agents`.
fn write_files<'a>(agents: &Path, files: impl IntoIterator<Item = (&'a str, &'a str)>) {
    for (file, content) in files {
        std::fs::create_dir_all(agents.join(file).parent().unwrap()).unwrap();
        std::fs::write(agents.join(file), content).unwrap();
    }
}

/// Runs the policy; a pod that names agents in `agent-mount.io/agents` runs with activation on.
fn mutate(setup: &Setup, request: &Value, mut settings: Value) -> Value {
    let host = setup.host;
    if request["object"]["metadata"]["annotations"]["agent-mount.io/agents"].is_string() {
        settings["activation"] = setup.activation.clone();
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
async fn virtual_device_view(setup: &Setup<'_>, request: &Value) -> View {
    let pod = mutate(setup, request, json!({}));
    let mut client = DevicePluginClient::new(uds::connect(&setup.node.socket()).await.unwrap());
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
    assert!(
        allocated.contains_key("checkout")
            && allocated.contains_key("cache-warmer")
            && !allocated.contains_key("istio-proxy"),
        "the app containers request the resource, the sidecar does not: {:?}",
        allocated.keys()
    );
    let mut extra = |c: &Value| {
        allocated
            .get(c["name"].as_str().unwrap())
            .cloned()
            .unwrap_or_default()
    };
    resolved_mounts(pod, &mut extra, &|source| host_source(source))
}

fn host_path_view(setup: &Setup<'_>, request: &Value, dirs: &[&str]) -> View {
    let settings = json!({"mountMethod": "k8s-host-path", "hostPath": setup.current, "mountPath": MOUNT_PATH, "agentDirectories": dirs});
    let pod = mutate(setup, request, settings);
    resolved_mounts(pod, &mut |_| Vec::new(), &|source| host_source(source))
}

/// Runs the copy init container's command with `sh`: the node's agent tree stands in
/// for the image's /instrumentations, a temp directory for the emptyDir.
fn init_container_view(setup: &Setup<'_>, request: &Value, dirs: &[&str]) -> View {
    let settings = json!({"mountMethod": "k8s-init-container", "mountPath": MOUNT_PATH, "agentDirectories": dirs,
        "initContainer": {"image": "ghcr.io/example/agents:1.0"}});
    let pod = mutate(setup, request, settings);
    let copy = &pod["spec"]["initContainers"][0];
    assert_eq!(copy["name"], "odigos-agent-init");
    let mut command: Vec<String> = serde_json::from_value(copy["command"].clone()).unwrap();
    assert_eq!(
        (command[4].as_str(), command[5].as_str()),
        ("/instrumentations", "/agent-mount-target")
    );
    let empty_dir = tempfile::Builder::new()
        .prefix("empty-dir-")
        .tempdir_in(setup.node.root.path())
        .unwrap()
        .keep();
    command[4] = setup.node.agents().display().to_string();
    command[5] = empty_dir.display().to_string();
    let status = std::process::Command::new(&command[0])
        .args(&command[1..])
        .status()
        .unwrap();
    assert!(status.success(), "{command:?}");
    let mut view = resolved_mounts(pod, &mut |_| Vec::new(), &|source| {
        let rest = source
            .strip_prefix("emptyDir:odigos-agent")
            .unwrap_or_else(|| panic!("{source}"));
        empty_dir.join(rest.trim_start_matches('/'))
    });
    // The copy container itself writes to the emptyDir outside MOUNT_PATH, so it sees nothing here.
    assert_eq!(view.mounts.remove("odigos-agent-init"), Some(Vec::new()));
    view
}

/// What containers see under csi-driver: the plugin publishes the pod's CSI volume at the
/// kubelet's target path, for real, and the mounts resolve below what it mounted there.
async fn csi_driver_view(setup: &Setup<'_>, request: &Value, dirs: &[&str]) -> View {
    let settings =
        json!({"mountMethod": "k8s-csi-driver", "mountPath": MOUNT_PATH, "agentDirectories": dirs});
    let pod = mutate(setup, request, settings);
    let volume = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v.get("csi").is_some())
        .expect("a CSI volume");
    assert_eq!(volume["csi"]["driver"], csi_support::DRIVER);
    let name = volume["name"].as_str().unwrap();
    let uid = format!("pod-{}", CSI_PODS.fetch_add(1, Ordering::Relaxed));
    let plugin = setup.csi_plugin;
    let target = plugin.publish(setup.csi_node, &uid, name).await.unwrap();
    let published = plugin.view(&target);
    // Read-only for real: the kernel refuses a write through the bind mount.
    let err = std::fs::write(published.join("written-by-a-pod"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(30), "EROFS expected, got {err}");
    // Sources are paths in the plugin's mount namespace, where the volume is published; it
    // stays published (each view has its own pod UID) and goes with the plugin's namespace.
    let mut view = resolved_mounts(pod, &mut |_| Vec::new(), &|source| {
        let sub_path = source
            .strip_prefix(&format!("csi:{}:", csi_support::DRIVER))
            .unwrap_or_else(|| panic!("not our CSI volume: {source}"));
        target.join(sub_path.trim_start_matches('/'))
    });
    view.namespace = Some(plugin.pid());
    view
}

/// An image's root file system with the node's agents under `source_path`, as
/// `image-volume` would mount it; `/` puts them at the root.
fn image_volume_view(setup: &Setup<'_>, request: &Value, dirs: &[&str], source_path: &str) -> View {
    const REFERENCE: &str = "ghcr.io/example/agents:1.0";
    // A fresh, not yet existing root: `cp -R` then makes it the agents' copy under `/`,
    // hard-linked (the mounts are read-only; a real tree is 18,000 files).
    let image_root = tempfile::Builder::new()
        .prefix("image-")
        .tempdir_in(setup.node.root.path())
        .unwrap()
        .keep()
        .join("root");
    let agents_in_image = image_root.join(source_path.trim_start_matches('/'));
    std::fs::create_dir_all(agents_in_image.parent().unwrap()).unwrap();
    let status = std::process::Command::new("cp")
        .args(["-R", "--link"])
        .arg(setup.node.agents())
        .arg(&agents_in_image)
        .status()
        .unwrap();
    assert!(status.success());
    let settings = json!({"mountMethod": "k8s-image-volume", "mountPath": MOUNT_PATH, "agentDirectories": dirs,
        "imageVolume": {"reference": REFERENCE, "sourcePath": source_path}});
    let pod = mutate(setup, request, settings);
    resolved_mounts(pod, &mut |_| Vec::new(), &|source| {
        let sub_path = source
            .strip_prefix(&format!("image:{REFERENCE}:"))
            .unwrap_or_else(|| panic!("not the agents image: {source}"));
        image_root.join(sub_path.trim_start_matches('/'))
    })
}

/// Every container's view under `method`, with the mutated pod, one per variant of the
/// method (image-volume: each `sourcePath`), labelled. The match is exhaustive: a new method has no view until
/// it is given one here, so it cannot escape this test.
async fn views(
    method: MountMethod,
    setup: &Setup<'_>,
    request: &Value,
    dirs: &[&str],
) -> Vec<(String, View)> {
    let one = |view| vec![(String::new(), view)];
    match method {
        MountMethod::VirtualDevice if dirs.is_empty() => {
            one(virtual_device_view(setup, request).await)
        }
        // The device plugin always mounts the whole directory: no agentDirectories.
        MountMethod::VirtualDevice => Vec::new(),
        MountMethod::HostPath => one(host_path_view(setup, request, dirs)),
        MountMethod::InitContainer => one(init_container_view(setup, request, dirs)),
        MountMethod::CsiDriver => one(csi_driver_view(setup, request, dirs).await),
        MountMethod::ImageVolume => ["/instrumentations", "/"]
            .into_iter()
            .map(|source_path| {
                (
                    format!(" at sourcePath {source_path}"),
                    image_volume_view(setup, request, dirs, source_path),
                )
            })
            .collect(),
    }
}

/// What each container of the typical pod should see: the instrumented ones the agents in
/// `agents` (all, or the listed directories), read-only; the sidecar and the init container nothing.
fn expected_view(agents: &Path, dirs: &[&str]) -> BTreeMap<String, Files> {
    let agents: Files = files_below(agents)
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
    let fixture = Fixture::start(|agents| {
        write_files(
            agents,
            [
                ("python/opentelemetry/__init__.py", "py"),
                ("nodejs-community/index.js", "js"),
            ],
        )
    })
    .await;
    let setup = fixture.setup(activation_settings(4318, &[]));
    let request = read_request(&workspace_root().join("test_data/pod_typical.json")).unwrap();
    // The installed version holds the tree as it is (the node methods' views must equal it,
    // the other methods' views come from the tree itself).
    let version = fixture.version();
    assert_eq!(
        files_below(&version).unwrap(),
        files_below(&fixture.node.agents()).unwrap()
    );

    // The whole directory, then agentDirectories (every method but virtual-device).
    for (dirs, files) in [(&[][..], 3), (&["java", "python"][..], 2)] {
        let expected = expected_view(&version, dirs);
        assert_eq!(expected["checkout"].len(), files, "the agent tree");
        let mut seen = Vec::new();
        for method in MountMethod::ALL {
            for (variant, view) in views(method, &setup, &request, dirs).await {
                let label = format!("{}{variant}, agentDirectories {dirs:?}", method.as_str());
                assert_eq!(view.files(), expected, "{label}");
                if NODE_METHODS.contains(&method) {
                    view.assert_mounts_version(&version, &label);
                }
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

/// The methods that mount the node's installed agents.
const NODE_METHODS: [MountMethod; 3] = [
    MountMethod::VirtualDevice,
    MountMethod::HostPath,
    MountMethod::CsiDriver,
];

/// Each node method's views of the whole agent directory, labelled.
async fn node_views(setup: &Setup<'_>, request: &Value) -> Vec<(String, View)> {
    let mut all = Vec::new();
    for method in NODE_METHODS {
        for (variant, view) in views(method, setup, request, &[]).await {
            all.push((format!("{}{variant}", method.as_str()), view));
        }
    }
    all
}

/// An upgrade as the README tells it (DESIGN §3c): after a second install of a changed tree
/// (a file added), a view made before still shows the version it was made from, and a new
/// view the new version, under every node method (the CSI publish a real bind mount, the
/// host path and the device plugin's mount resolved as the kubelet binds them).
#[tokio::test]
async fn a_view_made_before_an_upgrade_keeps_its_version_and_a_new_view_gets_the_new_one() {
    let fixture =
        Fixture::start(|agents| write_files(agents, [("python/opentelemetry/__init__.py", "py")]))
            .await;
    let setup = fixture.setup(activation_settings(4318, &[]));
    let request = read_request(&workspace_root().join("test_data/pod_typical.json")).unwrap();
    let old = fixture.version();
    let before = node_views(&setup, &request).await;

    write_files(
        &fixture.node.agents(),
        [("nodejs-community/index.js", "js")],
    );
    let new = fixture.install();
    assert_ne!(old, new, "a changed tree is a new version");
    let (old_view, new_view) = (expected_view(&old, &[]), expected_view(&new, &[]));
    assert_eq!(
        new_view["checkout"].len(),
        old_view["checkout"].len() + 1,
        "the new version has the added file"
    );

    for (label, view) in &before {
        let label = format!("{label}, made before the upgrade");
        assert_eq!(view.files(), old_view, "{label}");
        view.assert_mounts_version(&old, &label);
    }
    let after = node_views(&setup, &request).await;
    assert_eq!(after.len(), NODE_METHODS.len());
    for (label, view) in &after {
        let label = format!("{label}, made after the upgrade");
        assert_eq!(view.files(), new_view, "{label}");
        view.assert_mounts_version(&new, &label);
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
    let fixture =
        Fixture::start(|agents| write_files(agents, RECIPE_FILES.map(|file| (file, file)))).await;
    let setup = fixture.setup(activation_settings(4318, &[]));
    let typical = read_request(&workspace_root().join("test_data/pod_typical.json")).unwrap();
    let cluster = Cluster {
        fields: [
            ("status.hostIP", HOST_IP),
            ("metadata.name", "checkout-7d9c8b6f5-x2x4z"),
            ("metadata.namespace", "shop"),
            // The resource attributes' downward-API entries (activation's default).
            ("metadata.uid", "0b9d6a44-1c4e-4c43-9b1e-3f8f8f7d2a10"),
            ("spec.nodeName", "node-1"),
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
            for (variant, view) in views(method, &setup, &request, dirs).await {
                let (pod, view) = (&view.pod, view.files());
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
                        format!("http://{HOST_IP}:4318"),
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

/// The apps of the real-agent test, one per runtime.
const PYTHON_APP: &str = r#"import sys, urllib.request
urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=b"hello")).read()
"#;
const NODE_APP: &str = r#"const http = require('http');
const server = http.createServer((request, response) => response.end('ok'));
server.listen(0, '127.0.0.1', () => {
  http.get({host: '127.0.0.1', port: server.address().port, path: '/'}, (response) => {
    response.resume();
    response.on('end', () => server.close());
  });
});
"#;

/// The pod's identity as the kubelet fills in the downward API: `(fieldPath, value)`.
fn pod_fields(uid: &str) -> Cluster {
    Cluster {
        fields: [
            ("status.hostIP", "127.0.0.1"),
            ("metadata.name", "checkout-7d9c8b6f5-x2x4z"),
            ("metadata.namespace", "shop"),
            ("metadata.uid", uid),
            ("spec.nodeName", "node-7"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into(),
        ..Cluster::default()
    }
}

/// What every span of `container` in the typical pod must carry (DESIGN §2: the workload is the
/// Deployment `checkout`, named by its ReplicaSet `checkout-7d9c8b6f5` and the pod-template-hash).
fn expected_resource(container: &str, uid: &str) -> BTreeMap<&'static str, String> {
    [
        ("service.name", "checkout"),
        ("k8s.namespace.name", "shop"),
        ("k8s.pod.name", "checkout-7d9c8b6f5-x2x4z"),
        ("k8s.pod.uid", uid),
        ("k8s.node.name", "node-7"),
        ("k8s.container.name", container),
        ("k8s.deployment.name", "checkout"),
        ("k8s.replicaset.name", "checkout-7d9c8b6f5"),
    ]
    .map(|(k, v)| (k, v.to_string()))
    .into()
}

/// The real agents load (DESIGN §6): for an activated pod under every method, a real
/// `python3` and `node` with the agents that `agents/build.py` installs from PyPI and npm, and
/// a real `java` with a stand-in agent built by `javac` (Maven Central, where the real Java
/// agent comes from, is not reachable here: e2e/java/AgentStandIn.java exports one span from
/// `premain`, with a resource built from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES as
/// the real agent builds it). Each runs in its container's view (its own mount namespace,
/// the agents bound read-only where the method mounts them), with the env the policy wrote
/// as the kubelet resolves it, and must export spans with the pod's identity to the receiver.
#[tokio::test]
async fn real_agents_export_spans_with_the_pods_identity_under_every_method() {
    let tree = agents_tree().unwrap_or_else(|e| panic!("the agents tree: {e}"));
    let receiver = Receiver::start().unwrap();
    // The agents tree holds the built one (the support's placeholder jar goes), hard-linked
    // from the cache; the installer copies it into its root, which the node methods mount.
    let fixture = Fixture::start(|agents| {
        std::fs::remove_dir_all(agents.join("java")).unwrap();
        let status = std::process::Command::new("cp")
            .args(["-a", "--link"])
            .arg(tree.root.join("."))
            .arg(agents)
            .status()
            .unwrap();
        assert!(status.success());
    })
    .await;
    let version = fixture.version();
    // The containers' mount point; each process mounts its own tmpfs over it, in its own namespace.
    std::fs::create_dir_all(MOUNT_PATH).unwrap();
    let apps = tempfile::tempdir().unwrap();
    std::fs::write(apps.path().join("app.py"), PYTHON_APP).unwrap();
    std::fs::write(apps.path().join("app.js"), NODE_APP).unwrap();
    let python = String::from_utf8(
        std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let app_url = format!("http://{}/app", receiver.addr);
    let program = |agent: &str| -> Vec<String> {
        let app = |file: &str| apps.path().join(file).display().to_string();
        match agent {
            "python" => vec![python.clone(), app("app.py"), app_url.clone()],
            "nodejs" => vec!["node".into(), app("app.js")],
            "java" => {
                let class_path = tree.java_app.display().to_string();
                vec!["java".into(), "-cp".into(), class_path, "App".into()]
            }
            other => panic!("no app for {other}"),
        }
    };

    let typical = read_request(&workspace_root().join("test_data/pod_typical.json")).unwrap();
    // Metrics and logs off, and Node.js without the cloud detectors (their metadata lookups
    // wait for time-outs off-cloud): the test is about traces.
    let quiet = ["OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER"]
        .map(|name| json!({"name": name, "value": "none"}));
    let detectors = json!({"name": "OTEL_NODE_RESOURCE_DETECTORS", "value": "env,host,os,process"});
    let setup = fixture.setup(activation_settings(
        receiver.addr.port(),
        &[quiet[0].clone(), quiet[1].clone(), detectors],
    ));

    // The typical pod with a third app container, so that one pod runs all three runtimes.
    let annotation = "checkout=java, cache-warmer=python, worker=nodejs";
    let mut request = typical.clone();
    let containers = request["object"]["spec"]["containers"]
        .as_array_mut()
        .unwrap();
    let mut worker = containers
        .iter()
        .find(|c| c["name"] == "cache-warmer")
        .unwrap()
        .clone();
    worker["name"] = json!("worker");
    containers.push(worker);
    request["object"]["metadata"]["annotations"]["agent-mount.io/agents"] = json!(annotation);
    let mut spans_per_method: BTreeMap<String, usize> = BTreeMap::new();
    let mut runs = 0;
    for dirs in [&[][..], &["java", "python", "nodejs-community"][..]] {
        for method in MountMethod::ALL {
            for (variant, view) in views(method, &setup, &request, dirs).await {
                runs += 1;
                let uid = format!("uid-{runs}");
                let label = format!(
                    "{}{variant}, {annotation:?}, agentDirectories {dirs:?}",
                    method.as_str()
                );
                if NODE_METHODS.contains(&method) {
                    view.assert_mounts_version(&version, &label);
                }
                let containers = view.pod["spec"]["containers"].as_array().unwrap();
                let activated: Vec<(&str, &str)> = annotation
                    .split(',')
                    .map(|pair| pair.trim().split_once('=').unwrap())
                    .collect();
                // Every activated container at once, each in its own view.
                let outputs: Vec<_> = std::thread::scope(|scope| {
                    let handles: Vec<_> = activated
                        .iter()
                        .map(|(name, agent)| {
                            let container = containers.iter().find(|c| c["name"] == *name).unwrap();
                            // The environment as the kubelet resolves it, downward API filled in.
                            let env = effective_env(container, &pod_fields(&uid))
                                .unwrap_or_else(|e| panic!("{label}: {name}: {e}"));
                            let mounts = &view.mounts[*name];
                            let program = program(agent);
                            let namespace = view.namespace;
                            scope.spawn(move || {
                                run_in_view(
                                    MOUNT_PATH,
                                    mounts,
                                    namespace,
                                    &env,
                                    &program,
                                    Duration::from_secs(180),
                                )
                            })
                        })
                        .collect();
                    handles.into_iter().map(|h| h.join().unwrap()).collect()
                });
                for ((name, agent), output) in activated.iter().zip(outputs) {
                    let output = output.unwrap_or_else(|e| panic!("{label}: {name}: {e}"));
                    let stderr = String::from_utf8_lossy(&output.stderr);
                    assert_ne!(
                        output.status.code(),
                        Some(WROTE_INTO_AGENTS),
                        "{label}: {name}: {stderr}"
                    );
                    assert!(
                        output.status.success(),
                        "{label}: {name} ({agent}) failed: {}\n{stderr}",
                        output.status
                    );
                    let language = if *agent == "nodejs" { "nodejs" } else { agent };
                    let expected = expected_resource(name, &uid);
                    // The SDKs export before the process exits; allow for a slow receiver.
                    let deadline = std::time::Instant::now() + Duration::from_secs(10);
                    let mine = loop {
                        let mine: Vec<Exported> = receiver
                            .exported()
                            .into_iter()
                            .filter(|e| {
                                e.resource.get("k8s.container.name").map(String::as_str)
                                    == Some(*name)
                                    && e.resource.get("k8s.pod.uid") == Some(&uid)
                                    && e.resource.get("telemetry.sdk.language").map(String::as_str)
                                        == Some(language)
                            })
                            .collect();
                        if !mine.is_empty() || std::time::Instant::now() > deadline {
                            break mine;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    };
                    assert!(
                        !mine.is_empty(),
                        "{label}: no span from {name} ({agent}) with k8s.pod.uid={uid}; received {:#?}\nundecodable: {:?}\nits stderr: {stderr}",
                        receiver.exported(),
                        receiver.errors()
                    );
                    for exported in &mine {
                        assert!(!exported.spans.is_empty(), "{label}: {name}: {exported:?}");
                        for (key, value) in &expected {
                            assert_eq!(
                                exported.resource.get(*key),
                                Some(value),
                                "{label}: {name} ({agent}): {key} in {:?}",
                                exported.resource
                            );
                        }
                    }
                    *spans_per_method
                        .entry(format!("{}{variant}", method.as_str()))
                        .or_default() += mine.iter().map(|e| e.spans.len()).sum::<usize>();
                }
            }
        }
    }
    eprintln!("spans per method: {spans_per_method:?}");
    // Every method, image-volume twice; virtual-device only for the whole directory.
    assert_eq!(runs, 6 + 5, "views run");
}
