//! Test support for the CSI node plugin: a temp node laid out like the kubelet's, the
//! plugin binary in a private mount namespace (so its mounts are real and stay private),
//! and a fake kubelet plugin watcher.
//!
//! The plugin runs as `unshare --mount --propagation private -- agent-mount-node csi …`.
//! Without `--fork`, unshare execs in place, so the child's pid is the plugin's pid, and the
//! test sees the plugin's mounts through `/proc/<pid>/mountinfo` and its files through
//! `/proc/<pid>/root/<path>` ([`CsiPlugin::view`]). As the DaemonSet runs it, the pod
//! directory is `shared` in an outer namespace ([`Witness::shared_pods`]) and the plugin
//! runs in a nested one ([`CsiPlugin::start_nested`]).
//!
//! The process itself is `support::Plugin`, so a test crate including this file also has
//! `mod support;`. For other test crates (e.g. the cross-component test):
//! ```ignore
//! mod support;
//! #[path = "support/csi.rs"]
//! mod csi_support;
//! let node = csi_support::CsiNode::new();            // agents: java/javaagent.jar, python/…
//! let plugin = csi_support::CsiPlugin::start(&node, &[]).await;
//! let target = plugin.publish(&node, "pod-uid", "odigos-agent").await.unwrap();
//! let files = plugin.view(&target);                   // what the container would see
//! ```
#![allow(dead_code)] // each test crate uses its own subset

use crate::support::Plugin;
use agent_mount_node::csi::api::EPHEMERAL_KEY;
use agent_mount_node::csi::api::csi::identity_client::IdentityClient;
use agent_mount_node::csi::api::csi::node_client::NodeClient;
use agent_mount_node::csi::api::csi::volume_capability::{AccessType, MountVolume};
use agent_mount_node::csi::api::csi::{
    NodeGetInfoRequest, NodeGetInfoResponse, NodePublishVolumeRequest, NodeUnpublishVolumeRequest,
    VolumeCapability,
};
use agent_mount_node::csi::api::registration::registration_client::RegistrationClient;
use agent_mount_node::csi::api::registration::{InfoRequest, PluginInfo, RegistrationStatus};
use agent_mount_node::uds;
use notify::Watcher;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// The driver name the tests use (the default).
pub const DRIVER: &str = "odigos.csi.driver";
/// The node name given to the plugin.
pub const NODE_NAME: &str = "node-a";
/// Generous bound for start-up.
pub const STARTUP: Duration = Duration::from_secs(10);
/// The agent files every test node holds, relative to the agent directory.
pub const AGENT_FILES: [(&str, &str); 2] = [
    ("java/javaagent.jar", "jar"),
    ("python/sitecustomize.py", "py"),
];

/// A temp directory laid out like a node: `kubelet/{pods,plugins,plugins_registry}` and `agents/…`.
pub struct CsiNode {
    pub root: tempfile::TempDir,
}

impl CsiNode {
    /// A node with the agents installed.
    pub fn new() -> CsiNode {
        let root = tempfile::tempdir().expect("temp dir");
        for dir in [
            "kubelet/pods",
            "kubelet/plugins",
            "kubelet/plugins_registry",
        ] {
            std::fs::create_dir_all(root.path().join(dir)).expect("kubelet layout");
        }
        let node = CsiNode { root };
        for (file, content) in AGENT_FILES {
            let path = node.agents().join(file);
            std::fs::create_dir_all(path.parent().expect("agent sub-directory")).expect("agents");
            std::fs::write(path, content).expect("agent file");
        }
        node
    }
    pub fn kubelet_dir(&self) -> PathBuf {
        self.root.path().join("kubelet")
    }
    pub fn pods_dir(&self) -> PathBuf {
        self.kubelet_dir().join("pods")
    }
    pub fn registry_dir(&self) -> PathBuf {
        self.kubelet_dir().join("plugins_registry")
    }
    pub fn agents(&self) -> PathBuf {
        self.root.path().join("agents")
    }
    pub fn csi_socket(&self) -> PathBuf {
        self.kubelet_dir()
            .join("plugins")
            .join(DRIVER)
            .join("csi.sock")
    }
    pub fn registration_socket(&self) -> PathBuf {
        self.registry_dir().join(format!("{DRIVER}-reg.sock"))
    }

    /// The kubelet's target path for a pod's inline CSI volume; creates its parent, as the kubelet does.
    pub fn target(&self, pod_uid: &str, volume: &str) -> PathBuf {
        let parent = self
            .pods_dir()
            .join(pod_uid)
            .join("volumes/kubernetes.io~csi")
            .join(volume);
        std::fs::create_dir_all(&parent).expect("the kubelet's volume directory");
        parent.join("mount")
    }
}

/// The plugin binary in its own mount namespace; SIGTERM on drop, and its output
/// printed when the test fails.
pub struct CsiPlugin {
    pub process: Plugin,
    pub csi_socket: PathBuf,
}

/// The message for a test that cannot make mount namespaces.
const NEED_ROOT: &str = "These tests make real mounts in private mount namespaces, which needs \
    CAP_SYS_ADMIN: run them as root (as CI does), or wrap the test command in \
    `unshare --user --map-root-user --mount` where unprivileged user namespaces are allowed \
    (sysctl kernel.unprivileged_userns_clone=1).";

impl CsiPlugin {
    /// Starts `agent-mount-node csi` for `node` with extra flags, and waits for its CSI socket.
    ///
    /// Fails (never skips) when no private mount namespace can be made.
    pub async fn start(node: &CsiNode, extra: &[&str]) -> CsiPlugin {
        Self::start_with(node, &node.agents(), extra).await
    }

    /// As [`CsiPlugin::start`], with another `--agent-dir`.
    pub async fn start_with(node: &CsiNode, agent_dir: &Path, extra: &[&str]) -> CsiPlugin {
        let unshare = ["unshare", "--mount", "--propagation", "private", "--"].map(String::from);
        Self::launch(&unshare, node, agent_dir, extra).await
    }

    /// Starts the plugin in a mount namespace nested in that of `outer` (e.g.
    /// [`Witness::shared_pods`]), its mounts' propagation unchanged: what it mounts in a
    /// shared directory appears in the outer namespace, as with `mountPropagation: Bidirectional`.
    pub async fn start_nested(outer: &Witness, node: &CsiNode, agent_dir: &Path) -> CsiPlugin {
        let launcher = [
            "nsenter".to_string(),
            format!("--mount=/proc/{}/ns/mnt", outer.pid()),
            "--".to_string(),
            "unshare".to_string(),
            "--mount".to_string(),
            "--propagation".to_string(),
            "unchanged".to_string(),
            "--".to_string(),
        ];
        Self::launch(&launcher, node, agent_dir, &[]).await
    }

    /// Starts the plugin in the mount namespace of process `pid` (e.g. a [`Witness`] of an
    /// earlier plugin), as a restarted DaemonSet pod finds the node's mounts.
    pub async fn start_in_namespace_of(pid: u32, node: &CsiNode) -> CsiPlugin {
        let nsenter = [
            "nsenter".to_string(),
            format!("--mount=/proc/{pid}/ns/mnt"),
            "--".to_string(),
        ];
        Self::launch(&nsenter, node, &node.agents(), &[]).await
    }

    /// The command `launcher… agent-mount-node csi …` for `node`.
    pub fn command(
        launcher: &[String],
        node: &CsiNode,
        agent_dir: &Path,
        extra: &[&str],
    ) -> Command {
        let (program, args) = launcher.split_first().expect("a launcher");
        let mut command = Command::new(program);
        command
            .args(args)
            .arg(crate::support::node_binary())
            .arg("csi");
        // The node's kubelet directory, unless `extra` spells it another way.
        if !extra.contains(&"--kubelet-dir") {
            command.arg("--kubelet-dir").arg(node.kubelet_dir());
        }
        command
            .arg("--agent-dir")
            .arg(agent_dir)
            .args(["--node-name", NODE_NAME, "--poll-interval", "200ms"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        command
    }

    /// Runs `launcher… agent-mount-node csi …`; the launcher execs in place, so the pid is the plugin's.
    async fn launch(
        launcher: &[String],
        node: &CsiNode,
        agent_dir: &Path,
        extra: &[&str],
    ) -> CsiPlugin {
        Self::serving(Self::command(launcher, node, agent_dir, extra), node).await
    }

    /// Runs `command` (a [`CsiPlugin::command`]) and waits until it serves.
    pub async fn serving(command: Command, node: &CsiNode) -> CsiPlugin {
        let mut plugin = CsiPlugin {
            process: Plugin::spawn(command),
            csi_socket: node.csi_socket(),
        };
        plugin.wait_until_serving().await;
        plugin
    }

    /// Waits for the CSI socket; a plugin that exits first failed, most likely in unshare.
    async fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + STARTUP;
        while !self.csi_socket.exists() {
            if let Some(status) = self.exited(Duration::ZERO) {
                // Let the reader threads drain the pipes.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let output = self.stderr();
                if output.contains("unshare") || output.contains("nsenter") {
                    panic!("cannot create a mount namespace ({status}): {output}\n{NEED_ROOT}");
                }
                panic!("the CSI plugin exited before serving ({status}):\n{output}");
            }
            assert!(
                Instant::now() < deadline,
                "no CSI socket at {} within {STARTUP:?}",
                self.csi_socket.display()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ours = std::fs::read_link("/proc/self/ns/mnt").expect("own mount namespace");
        let its = std::fs::read_link(format!("/proc/{}/ns/mnt", self.pid()))
            .expect("the plugin's mount namespace");
        assert_ne!(ours, its, "the plugin must run in its own mount namespace");
    }

    /// The plugin's pid (the launchers exec in place).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// What the plugin has written so far.
    pub fn stderr(&self) -> String {
        self.process.output()
    }

    /// `path` as the plugin's mount namespace shows it (what a container bound there sees).
    pub fn view(&self, path: &Path) -> PathBuf {
        view(self.pid(), path)
    }

    /// The plugin's mount table lines whose mount point is `target`.
    pub fn mounts_at(&self, target: &Path) -> Vec<String> {
        mounts_at(self.pid(), target)
    }

    /// A CSI Node client on the plugin's socket.
    pub async fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(
            uds::connect(&self.csi_socket)
                .await
                .expect("dial the CSI socket"),
        )
    }

    /// A CSI Identity client on the plugin's socket.
    pub async fn identity(&self) -> IdentityClient<Channel> {
        IdentityClient::new(
            uds::connect(&self.csi_socket)
                .await
                .expect("dial the CSI socket"),
        )
    }

    /// Publishes the inline volume `volume` of pod `pod_uid` as the kubelet would; returns
    /// the target path (view it through [`CsiPlugin::view`]).
    pub async fn publish(
        &self,
        node: &CsiNode,
        pod_uid: &str,
        volume: &str,
    ) -> Result<PathBuf, tonic::Status> {
        let target = node.target(pod_uid, volume);
        self.publish_at(&target).await?;
        Ok(target)
    }

    /// Publishes at `target` as it is, creating nothing first.
    pub async fn publish_at(&self, target: &Path) -> Result<(), tonic::Status> {
        self.node()
            .await
            .node_publish_volume(publish_request(target))
            .await
            .map(|_| ())
    }

    /// Unpublishes `target` as the kubelet would.
    pub async fn unpublish(&self, target: &Path) -> Result<(), tonic::Status> {
        self.node()
            .await
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: "csi-test-volume".into(),
                target_path: target.display().to_string(),
            })
            .await
            .map(|_| ())
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.process.terminate();
    }

    /// Waits for the process to exit, up to `within`.
    pub fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        self.process.wait(within)
    }

    /// The exit status if the process has exited within `within`.
    pub fn exited(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        match self.process.child.try_wait() {
            Ok(Some(status)) => Some(status),
            _ if within.is_zero() => None,
            _ => self.process.wait(within),
        }
    }
}

/// A process that holds a mount namespace (a plugin's after it exits, or an outer one for
/// a nested plugin); killed on drop.
pub struct Witness(Child);

impl Witness {
    /// Enters the mount namespace of `plugin` and waits there.
    pub async fn of(plugin: &CsiPlugin) -> Witness {
        let namespace = format!("/proc/{}/ns/mnt", plugin.pid());
        let child = Command::new("nsenter")
            .arg(format!("--mount={namespace}"))
            .args(["--", "sleep", "600"])
            .spawn()
            .expect("nsenter (util-linux) into the plugin's mount namespace");
        let witness = Witness(child);
        let deadline = Instant::now() + STARTUP;
        while std::fs::read_link(format!("/proc/{}/ns/mnt", witness.pid())).ok()
            != std::fs::read_link(&namespace).ok()
        {
            assert!(
                Instant::now() < deadline,
                "the witness did not enter {namespace}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        witness
    }

    /// A new mount namespace (the node's, in the test) in which `node`'s pod directory is
    /// a `shared` mount, as the kubelet's is; start the plugin in it with
    /// [`CsiPlugin::start_nested`].
    pub async fn shared_pods(node: &CsiNode) -> Witness {
        let pods = node.pods_dir();
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"mount --bind "$1" "$1" && mount --make-shared "$1" && exec sleep 600"#)
            .arg("sh")
            .arg(&pods)
            .spawn()
            .expect("unshare (util-linux)");
        let mut witness = Witness(child);
        let deadline = Instant::now() + STARTUP;
        while !mounts_at(witness.pid(), &pods)
            .iter()
            .any(|line| line.contains(" shared:"))
        {
            if let Ok(Some(status)) = witness.0.try_wait() {
                panic!(
                    "cannot make a mount namespace with a shared pod directory ({status})\n{NEED_ROOT}"
                );
            }
            assert!(Instant::now() < deadline, "no shared pod directory");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        witness
    }

    /// Its pid: `/proc/<pid>/mountinfo` and `/proc/<pid>/root` show the namespace.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `path` as the mount namespace of process `pid` shows it.
pub fn view(pid: u32, path: &Path) -> PathBuf {
    let relative = path.strip_prefix("/").unwrap_or(path);
    PathBuf::from(format!("/proc/{pid}/root")).join(relative)
}

/// The mount table lines of process `pid` whose mount point is `target` (read as bytes:
/// a mount point elsewhere need not be UTF-8).
pub fn mounts_at(pid: u32, target: &Path) -> Vec<String> {
    let table = std::fs::read(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let target = target.as_os_str().as_bytes();
    table
        .split(|b| *b == b'\n')
        .filter(|line| line.split(|b| *b == b' ').nth(4) == Some(target))
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect()
}

/// Runs `mount <args>` in the mount namespace of process `pid`, as another program on the node would.
pub fn mount_in(pid: u32, args: &[&OsStr]) {
    let status = Command::new("nsenter")
        .arg(format!("--mount=/proc/{pid}/ns/mnt"))
        .args(["--", "mount"])
        .args(args)
        .status()
        .expect("nsenter (util-linux)");
    assert!(status.success(), "mount {args:?}");
}

/// The request the kubelet sends for an inline volume with `podInfoOnMount: true`.
pub fn publish_request(target: &Path) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: "csi-test-volume".into(),
        target_path: target.display().to_string(),
        volume_capability: Some(VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume::default())),
            access_mode: None,
        }),
        // The policy asks for readOnly: true, but the mount must be read-only whatever this says.
        readonly: false,
        volume_context: HashMap::from([
            ("type".to_string(), "instrumentation".to_string()),
            (EPHEMERAL_KEY.to_string(), "true".to_string()),
            ("csi.storage.k8s.io/pod.name".to_string(), "app".to_string()),
        ]),
        ..Default::default()
    }
}

/// One registration the fake plugin watcher completed.
#[derive(Debug)]
pub struct Registered {
    /// The registration socket it dialled.
    pub socket: PathBuf,
    /// `GetInfo`'s answer.
    pub info: PluginInfo,
    /// `NodeGetInfo`'s answer on the advertised endpoint.
    pub node: NodeGetInfoResponse,
}

/// A fake kubelet plugin watcher: for every socket created in the registry directory, it
/// dials it, calls `GetInfo` and `NotifyRegistrationStatus`, then `NodeGetInfo` on the
/// advertised endpoint, like the kubelet's plugin manager.
pub struct FakeWatcher {
    _watcher: notify::RecommendedWatcher,
    registered: mpsc::UnboundedReceiver<Result<Registered, String>>,
}

impl FakeWatcher {
    /// Watches `dir`; `accept` is what it reports in `NotifyRegistrationStatus`.
    pub fn start(dir: &Path, accept: bool) -> FakeWatcher {
        let (created_tx, mut created) = mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event
                    && event.kind.is_create()
                {
                    for path in event.paths {
                        let _ = created_tx.send(path);
                    }
                }
            })
            .expect("inotify for the fake plugin watcher");
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .expect("watch the registry directory");
        let (tx, registered) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(socket) = created.recv().await {
                let _ = tx.send(register(&socket, accept).await);
            }
        });
        FakeWatcher {
            _watcher: watcher,
            registered,
        }
    }

    /// The next completed registration; panics after `within` or on a failed one.
    pub async fn registered(&mut self, within: Duration) -> Registered {
        match tokio::time::timeout(within, self.registered.recv()).await {
            Ok(Some(Ok(registered))) => registered,
            Ok(Some(Err(e))) => panic!("registration failed: {e}"),
            Ok(None) => panic!("the fake plugin watcher stopped"),
            Err(_) => panic!("no registration within {within:?}"),
        }
    }

    /// How many registrations (new registration sockets) came during `window`.
    pub async fn registrations_during(&mut self, window: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + window;
        let mut count = 0;
        while let Ok(Some(_)) = tokio::time::timeout_at(deadline, self.registered.recv()).await {
            count += 1;
        }
        count
    }
}

/// How long the kubelet's plugin manager keeps dialling a new socket (a blocking gRPC dial).
const DIAL_WITHIN: Duration = Duration::from_secs(1);

/// Dials `socket` like the kubelet: inotify reports the socket at bind(), before listen(),
/// so a refused connection is retried until [`DIAL_WITHIN`].
async fn dial(socket: &Path) -> Result<Channel, String> {
    let deadline = Instant::now() + DIAL_WITHIN;
    loop {
        match uds::connect(socket).await {
            Ok(channel) => return Ok(channel),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "dial {} for {DIAL_WITHIN:?}: {e}",
                    socket.display()
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// What the kubelet's plugin manager does with a new socket in its registry directory.
async fn register(socket: &Path, accept: bool) -> Result<Registered, String> {
    let channel = dial(socket).await?;
    let mut client = RegistrationClient::new(channel);
    let info = client
        .get_info(InfoRequest {})
        .await
        .map_err(|e| format!("GetInfo: {e}"))?
        .into_inner();
    client
        .notify_registration_status(RegistrationStatus {
            plugin_registered: accept,
            error: if accept {
                String::new()
            } else {
                "refused by the test".into()
            },
        })
        .await
        .map_err(|e| format!("NotifyRegistrationStatus: {e}"))?;
    let endpoint = dial(Path::new(&info.endpoint)).await?;
    let node = NodeClient::new(endpoint)
        .node_get_info(NodeGetInfoRequest {})
        .await
        .map_err(|e| format!("NodeGetInfo: {e}"))?
        .into_inner();
    Ok(Registered {
        socket: socket.to_path_buf(),
        info,
        node,
    })
}
