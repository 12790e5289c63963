//! The CSI node plugin binary with real mounts (DESIGN §4 "CSI node plugin tests"): it
//! runs in a private mount namespace, a fake kubelet plugin watcher registers it, and
//! every check looks at the plugin's own mount table and files through `/proc/<pid>/`.
// Test and bench code: helpers fail loudly too (clippy.toml allows this in #[test] functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/csi.rs"]
mod csi_support;

use agent_mount_node::csi::api::EPHEMERAL_KEY;
use agent_mount_node::csi::api::csi::volume_capability::{AccessType, BlockVolume};
use agent_mount_node::csi::api::csi::{
    GetPluginCapabilitiesRequest, GetPluginInfoRequest, NodeExpandVolumeRequest,
    NodeGetCapabilitiesRequest, NodeGetVolumeStatsRequest, NodePublishVolumeRequest,
    NodeStageVolumeRequest, NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest, ProbeRequest,
    VolumeCapability,
};
use agent_mount_node::uds;
use csi_support::{
    AGENT_FILES, CsiNode, CsiPlugin, DRIVER, FakeWatcher, NODE_NAME, STARTUP, Witness, mounts_at,
    publish_request,
};
use std::path::Path;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The kubelet's budget for a socket served again (DESIGN §3b).
const AGAIN_WITHIN: Duration = Duration::from_secs(1);
/// The quiet window in which no further registration may come.
const QUIET: Duration = Duration::from_secs(1);
/// `EROFS`: what a write into the published volume must fail with.
const EROFS: i32 = 30;

/// Waits until `check` holds, polling; panics with `what` after `within`.
async fn eventually(what: &str, within: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Asserts that the plugin sees the agents read-only at `target`, through one mount.
fn assert_published_read_only(plugin: &CsiPlugin, target: &Path) {
    let mounts = plugin.mounts_at(target);
    assert_eq!(
        mounts.len(),
        1,
        "exactly one mount at the target: {mounts:?}"
    );
    let options: Vec<&str> = mounts[0]
        .split(' ')
        .nth(5)
        .unwrap_or_default()
        .split(',')
        .collect();
    for option in ["ro", "nosuid", "nodev"] {
        assert!(options.contains(&option), "{option} in {options:?}");
    }
    for (file, content) in AGENT_FILES {
        let seen = std::fs::read_to_string(plugin.view(&target.join(file)))
            .unwrap_or_else(|e| panic!("{file} in the published volume: {e}"));
        assert_eq!(seen, content, "{file}");
    }
    for write in [target.join("new-file"), target.join(AGENT_FILES[0].0)] {
        let error = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(plugin.view(&write))
            .expect_err("a write into the published volume must fail");
        assert_eq!(
            error.raw_os_error(),
            Some(EROFS),
            "{}: {error}",
            write.display()
        );
    }
}

#[tokio::test]
async fn registers_through_the_plugin_watcher_with_the_csi_endpoint() {
    let node = CsiNode::new();
    let mut watcher = FakeWatcher::start(&node.registry_dir(), true);
    let plugin = CsiPlugin::start(&node, &[]).await;
    let registered = watcher.registered(STARTUP).await;
    assert_eq!(registered.socket, node.registration_socket());
    assert_eq!(registered.info.r#type, "CSIPlugin");
    assert_eq!(registered.info.name, DRIVER);
    assert_eq!(
        registered.info.endpoint,
        node.csi_socket().display().to_string(),
        "the CSI socket's absolute path"
    );
    assert_eq!(registered.info.supported_versions, ["1.0.0"]);
    assert_eq!(registered.node.node_id, NODE_NAME);
    assert_eq!(
        watcher.registrations_during(QUIET).await,
        0,
        "registered once"
    );

    let mut identity = plugin.identity().await;
    let info = identity
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, DRIVER);
    assert_eq!(info.vendor_version, env!("CARGO_PKG_VERSION"));
    let capabilities = identity
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        capabilities.capabilities.is_empty(),
        "no controller service"
    );
    let probe = identity.probe(ProbeRequest {}).await.unwrap().into_inner();
    assert_eq!(probe.ready, Some(true));
    let node_capabilities = plugin
        .node()
        .await
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(node_capabilities.capabilities.is_empty(), "no staging");
    let health = HealthClient::new(uds::connect(&node.csi_socket()).await.unwrap())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);

    // `probe csi` reads the same flags, or the same environment as the DaemonSet sets, and
    // finds the same socket; pointed elsewhere, it fails.
    let probe = |kubelet_dir: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_agent-mount-node"))
            .args(["probe", "csi"])
            .env("AGENT_MOUNT_NODE_NAME", NODE_NAME)
            .env("AGENT_MOUNT_KUBELET_DIR", kubelet_dir)
            .env("AGENT_MOUNT_DRIVER_NAME", DRIVER)
            .output()
            .unwrap()
    };
    let served = probe(&node.kubelet_dir());
    assert!(served.status.success(), "{served:?}");
    let elsewhere = probe(&node.root.path().join("no-kubelet"));
    assert!(!elsewhere.status.success(), "{elsewhere:?}");
    assert!(
        String::from_utf8_lossy(&elsewhere.stderr).contains("cannot connect"),
        "{elsewhere:?}"
    );
}

#[tokio::test]
async fn publish_mounts_read_only_idempotently_and_unpublish_cleans_up() {
    let node = CsiNode::new();
    let plugin = CsiPlugin::start(&node, &[]).await;
    let target = plugin
        .publish(&node, "pod-1", "odigos-agent")
        .await
        .unwrap();
    assert_published_read_only(&plugin, &target);
    assert!(
        mounts_at(std::process::id(), &target).is_empty(),
        "the mount stays in the plugin's private namespace"
    );

    // Again: OK, and still one mount.
    let again = plugin
        .publish(&node, "pod-1", "odigos-agent")
        .await
        .unwrap();
    assert_eq!(again, target);
    assert_published_read_only(&plugin, &target);

    // A second pod gets its own mount.
    let other = plugin
        .publish(&node, "pod-2", "odigos-agent")
        .await
        .unwrap();
    assert_published_read_only(&plugin, &other);

    plugin.unpublish(&target).await.unwrap();
    assert!(plugin.mounts_at(&target).is_empty(), "unmounted");
    assert!(!target.exists(), "the directory publish created is removed");
    assert!(
        target.parent().unwrap().is_dir(),
        "the kubelet's directory stays"
    );
    assert_published_read_only(&plugin, &other);

    // Again, and for a path never published: OK.
    plugin.unpublish(&target).await.unwrap();
    let never = node.target("pod-3", "odigos-agent");
    plugin.unpublish(&never).await.unwrap();
    std::fs::create_dir(&never).unwrap();
    plugin.unpublish(&never).await.unwrap();
    assert!(!never.exists(), "an empty, unmounted target is removed");
    plugin.unpublish(&other).await.unwrap();
    assert!(plugin.mounts_at(&other).is_empty());
}

#[tokio::test]
async fn every_refusal_has_its_code_and_mounts_nothing() {
    let node = CsiNode::new();
    let plugin = CsiPlugin::start(&node, &[]).await;
    let target = node.target("pod-1", "odigos-agent");
    let outside = node.root.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    // A symlink inside the pod directory that leads out of it.
    let escape = node.target("pod-2", "escape");
    std::os::unix::fs::symlink(&outside, escape.parent().unwrap().join("link")).unwrap();
    let through_link = escape.parent().unwrap().join("link/mount");
    // A file where the target directory should be.
    let file_target = node.target("pod-3", "odigos-agent");
    std::fs::write(&file_target, b"not a directory").unwrap();
    let no_parent = node
        .pods_dir()
        .join("pod-4/volumes/kubernetes.io~csi/v/mount");

    let with = |change: &dyn Fn(&mut NodePublishVolumeRequest)| {
        let mut request = publish_request(&target);
        change(&mut request);
        request
    };
    let path = |p: &Path| {
        let p = p.display().to_string();
        move |r: &mut NodePublishVolumeRequest| r.target_path = p.clone()
    };
    let pods = node.pods_dir().display().to_string();
    let cases: Vec<(&str, NodePublishVolumeRequest, Code, &str)> = vec![
        (
            "empty volume_id",
            with(&|r| r.volume_id.clear()),
            Code::InvalidArgument,
            "volume_id",
        ),
        (
            "empty target_path",
            with(&|r| r.target_path.clear()),
            Code::InvalidArgument,
            "target_path",
        ),
        (
            "relative",
            with(&|r| r.target_path = "pods/x/mount".into()),
            Code::InvalidArgument,
            "target_path",
        ),
        (
            "not normalised",
            with(&|r| r.target_path = format!("{pods}/../pods/x/mount")),
            Code::InvalidArgument,
            "target_path",
        ),
        (
            "outside the pod directory",
            with(&path(&outside.join("mount"))),
            Code::InvalidArgument,
            "target_path",
        ),
        (
            "a sibling of the pod directory",
            with(&|r| r.target_path = format!("{pods}-evil/x/mount")),
            Code::InvalidArgument,
            "target_path",
        ),
        (
            "a symlink out of the pod directory",
            with(&path(&through_link)),
            Code::InvalidArgument,
            "target_path",
        ),
        (
            "block volume",
            with(&|r| {
                r.volume_capability = Some(VolumeCapability {
                    access_type: Some(AccessType::Block(BlockVolume {})),
                    access_mode: None,
                })
            }),
            Code::InvalidArgument,
            "volume_capability",
        ),
        (
            "no volume_capability",
            with(&|r| r.volume_capability = None),
            Code::InvalidArgument,
            "volume_capability",
        ),
        (
            "not inline ephemeral",
            with(&|r| {
                r.volume_context
                    .insert(EPHEMERAL_KEY.into(), "false".into());
            }),
            Code::FailedPrecondition,
            "ephemeral",
        ),
        (
            "target is a file",
            with(&path(&file_target)),
            Code::FailedPrecondition,
            "not a directory",
        ),
        (
            "the kubelet's directory is missing",
            with(&path(&no_parent)),
            Code::FailedPrecondition,
            "parent",
        ),
    ];
    let mut client = plugin.node().await;
    for (case, request, code, word) in cases {
        let status = client.node_publish_volume(request).await.expect_err(case);
        assert_eq!(status.code(), code, "{case}: {}", status.message());
        assert!(
            status.message().contains(word),
            "{case}: {}",
            status.message()
        );
    }
    let unpublish_outside = client
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: "v".into(),
            target_path: outside.join("mount").display().to_string(),
        })
        .await
        .expect_err("unpublish outside the pod directory");
    assert_eq!(unpublish_outside.code(), Code::InvalidArgument);
    let unpublish_empty = client
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: String::new(),
            target_path: target.display().to_string(),
        })
        .await
        .expect_err("unpublish without volume_id");
    assert_eq!(unpublish_empty.code(), Code::InvalidArgument);

    let unimplemented = [
        client
            .node_stage_volume(NodeStageVolumeRequest::default())
            .await
            .map(|_| ()),
        client
            .node_unstage_volume(NodeUnstageVolumeRequest::default())
            .await
            .map(|_| ()),
        client
            .node_get_volume_stats(NodeGetVolumeStatsRequest::default())
            .await
            .map(|_| ()),
        client
            .node_expand_volume(NodeExpandVolumeRequest::default())
            .await
            .map(|_| ()),
    ];
    for result in unimplemented {
        assert_eq!(result.unwrap_err().code(), Code::Unimplemented);
    }

    let table = std::fs::read_to_string(format!("/proc/{}/mountinfo", plugin.pid())).unwrap();
    let root = node.root.path().display().to_string();
    assert!(
        !table.contains(&root),
        "nothing mounted under the node:\n{table}"
    );
    assert!(!outside.join("mount").exists(), "nothing created outside");
    assert!(
        !no_parent.parent().unwrap().exists(),
        "only target_path is ever created"
    );
}

/// What the plugin's `Probe` answers.
async fn probe_ready(plugin: &CsiPlugin) -> Option<bool> {
    let probe = plugin.identity().await.probe(ProbeRequest {}).await;
    probe.unwrap().into_inner().ready
}

#[tokio::test]
async fn missing_or_empty_agent_directory_is_a_failed_precondition() {
    let node = CsiNode::new();
    let missing = node.root.path().join("no-agents");
    let plugin = CsiPlugin::start_with(&node, &missing, &[]).await;
    for state in ["missing", "empty"] {
        let status = plugin
            .publish(&node, "pod-1", "odigos-agent")
            .await
            .expect_err(state);
        assert_eq!(status.code(), Code::FailedPrecondition, "{state}");
        assert!(
            status.message().contains("missing or empty")
                && status.message().contains("--agent-dir"),
            "{state}: {}",
            status.message()
        );
        assert_eq!(
            probe_ready(&plugin).await,
            Some(false),
            "{state}: Probe not ready"
        );
        assert!(
            !node.target("pod-1", "odigos-agent").exists(),
            "{state}: nothing created"
        );
        std::fs::create_dir(&missing).unwrap_or(());
    }
    // Agents installed later: published without a restart.
    std::fs::create_dir_all(missing.join("java")).unwrap();
    std::fs::write(missing.join("java/javaagent.jar"), "late").unwrap();
    assert_eq!(probe_ready(&plugin).await, Some(true));
    let target = plugin
        .publish(&node, "pod-1", "odigos-agent")
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(plugin.view(&target.join("java/javaagent.jar"))).unwrap(),
        "late"
    );
}

#[tokio::test]
async fn a_deleted_registration_socket_is_served_again_and_registered_once() {
    for mode in ["auto", "poll"] {
        let node = CsiNode::new();
        let mut watcher = FakeWatcher::start(&node.registry_dir(), true);
        let _plugin = CsiPlugin::start(&node, &["--watch", mode]).await;
        watcher.registered(STARTUP).await;
        for round in 0..3 {
            std::fs::remove_file(node.registration_socket()).unwrap();
            let registered = watcher.registered(AGAIN_WITHIN).await;
            assert_eq!(registered.info.name, DRIVER, "{mode} round {round}");
            assert_eq!(registered.node.node_id, NODE_NAME);
            assert_eq!(
                watcher.registrations_during(QUIET).await,
                0,
                "{mode} round {round}: exactly one new registration socket"
            );
        }
    }
}

#[tokio::test]
async fn a_deleted_csi_socket_is_served_again_at_the_same_path() {
    for mode in ["auto", "poll"] {
        let node = CsiNode::new();
        let mut watcher = FakeWatcher::start(&node.registry_dir(), true);
        let plugin = CsiPlugin::start(&node, &["--watch", mode]).await;
        watcher.registered(STARTUP).await;
        std::fs::remove_file(node.csi_socket()).unwrap();
        let socket = node.csi_socket();
        eventually(
            &format!("{mode}: the CSI socket served again"),
            AGAIN_WITHIN,
            || socket.exists(),
        )
        .await;
        let target = plugin
            .publish(&node, "pod-1", "odigos-agent")
            .await
            .unwrap();
        assert_published_read_only(&plugin, &target);
        assert_eq!(
            watcher.registrations_during(QUIET).await,
            0,
            "{mode}: the kubelet dials the endpoint per call; no new registration"
        );
    }
}

#[tokio::test]
async fn sigterm_removes_both_sockets_and_leaves_the_mounts() {
    let node = CsiNode::new();
    let mut watcher = FakeWatcher::start(&node.registry_dir(), true);
    let mut plugin = CsiPlugin::start(&node, &[]).await;
    watcher.registered(STARTUP).await;
    let target = plugin
        .publish(&node, "pod-1", "odigos-agent")
        .await
        .unwrap();
    // A witness in the plugin's mount namespace keeps it alive after the plugin exits.
    let witness = Witness::of(&plugin).await;
    plugin.terminate();
    let status = plugin
        .wait(Duration::from_secs(5))
        .expect("exits after SIGTERM");
    assert!(status.success(), "clean exit: {status}");
    assert!(!node.csi_socket().exists(), "CSI socket removed");
    assert!(
        !node.registration_socket().exists(),
        "registration socket removed"
    );
    let left = mounts_at(witness.pid(), &target);
    assert_eq!(left.len(), 1, "the published mount stays: {left:?}");
    let jar = format!(
        "/proc/{}/root{}/java/javaagent.jar",
        witness.pid(),
        target.display()
    );
    assert_eq!(std::fs::read_to_string(jar).unwrap(), "jar");

    // The next start finds the mount and stays idempotent: still one mount.
    let restarted = CsiPlugin::start_in_namespace_of(witness.pid(), &node).await;
    watcher.registered(STARTUP).await;
    let again = restarted
        .publish(&node, "pod-1", "odigos-agent")
        .await
        .unwrap();
    assert_eq!(again, target);
    assert_published_read_only(&restarted, &target);
    restarted.unpublish(&target).await.unwrap();
    assert!(restarted.mounts_at(&target).is_empty() && !target.exists());
}

/// `GET <path>` on `addr`, the body.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to --metrics-addr");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Waits until `metrics` shows every line of `lines`.
async fn metrics_show(addr: &str, lines: &[&str]) {
    let deadline = Instant::now() + STARTUP;
    loop {
        let text = http_get(addr, "/metrics");
        let missing: Vec<&&str> = lines
            .iter()
            .filter(|l| !text.lines().any(|t| t == **l))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{missing:?} not in\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_refused_registration_is_logged_and_every_outcome_counted() {
    let node = CsiNode::new();
    let addr = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().to_string()
    };
    let mut watcher = FakeWatcher::start(&node.registry_dir(), false);
    let plugin = CsiPlugin::start(&node, &["--metrics-addr", &addr]).await;
    watcher.registered(STARTUP).await;
    eventually("the refusal in the log", STARTUP, || {
        plugin
            .stderr()
            .contains("the kubelet refused the CSI driver")
            && plugin.stderr().contains("refused by the test")
    })
    .await;
    let target = plugin
        .publish(&node, "pod-1", "odigos-agent")
        .await
        .unwrap();
    plugin
        .publish(&node, "pod-1", "odigos-agent")
        .await
        .unwrap();
    let outside = node.root.path().join("outside/mount");
    plugin
        .unpublish(&outside)
        .await
        .expect_err("outside the pod directory");
    metrics_show(
        &addr,
        &[
            "agent_mount_csi_registrations_total{result=\"accepted\"} 0",
            "agent_mount_csi_registrations_total{result=\"refused\"} 1",
            "agent_mount_csi_publishes_total{outcome=\"done\"} 1",
            "agent_mount_csi_publishes_total{outcome=\"unchanged\"} 1",
            "agent_mount_csi_unpublishes_total{outcome=\"refused\"} 1",
            "agent_mount_csi_volumes_published 1",
        ],
    )
    .await;
    plugin.unpublish(&target).await.unwrap();
    plugin.unpublish(&target).await.unwrap();
    metrics_show(
        &addr,
        &[
            "agent_mount_csi_unpublishes_total{outcome=\"done\"} 1",
            "agent_mount_csi_unpublishes_total{outcome=\"unchanged\"} 1",
            "agent_mount_csi_volumes_published 0",
        ],
    )
    .await;
    let text = http_get(&addr, "/metrics");
    assert!(
        text.lines()
            .any(|l| l.starts_with("process_resident_memory_bytes ")),
        "the shared process metrics:\n{text}"
    );
    assert!(http_get(&addr, "/healthz").starts_with("HTTP/1.1 200"));
}

/// Runs `mount <args>` inside the plugin's mount namespace, as another program on the node would.
fn mount_in(plugin: &CsiPlugin, args: &[&Path]) {
    let status = std::process::Command::new("nsenter")
        .arg(format!("--mount=/proc/{}/ns/mnt", plugin.pid()))
        .args(["--", "mount", "--bind"])
        .args(args)
        .status()
        .expect("nsenter (util-linux)");
    assert!(status.success(), "mount --bind {args:?}");
}

#[tokio::test]
async fn a_foreign_or_writable_mount_at_the_target_is_already_exists() {
    let node = CsiNode::new();
    let plugin = CsiPlugin::start(&node, &[]).await;
    let other = node.root.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("secret"), "x").unwrap();
    // Another directory, and the agents themselves but writable.
    for (pod, source) in [("pod-1", &other), ("pod-2", &node.agents())] {
        let target = node.target(pod, "odigos-agent");
        std::fs::create_dir(&target).unwrap();
        mount_in(&plugin, &[source, &target]);
        let status = plugin
            .publish(&node, pod, "odigos-agent")
            .await
            .expect_err("a mount that is not the agents read-only");
        assert_eq!(
            status.code(),
            Code::AlreadyExists,
            "{pod}: {}",
            status.message()
        );
        assert!(
            status
                .message()
                .contains("not the agent directory read-only")
        );
        assert_eq!(
            plugin.mounts_at(&target).len(),
            1,
            "{pod}: nothing stacked on it"
        );
        // The kubelet's unpublish clears the path; a publish then mounts read-only.
        plugin.unpublish(&target).await.unwrap();
        assert!(
            plugin.mounts_at(&target).is_empty() && !target.exists(),
            "{pod}"
        );
    }
    let target = plugin
        .publish(&node, "pod-2", "odigos-agent")
        .await
        .unwrap();
    assert_published_read_only(&plugin, &target);
}
