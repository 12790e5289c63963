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
mod support;

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
    AGENT_FILES, CsiNode, CsiPlugin, DRIVER, FakeWatcher, NODE_NAME, STARTUP, Witness, mount_in,
    mounts_at, publish_request, view,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{free_addr, http_get, install_version, point_current};
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
    assert_read_only_in(plugin.pid(), target);
}

/// Asserts that the mount namespace of process `pid` has one mount at `target`, `ro`,
/// `nosuid` and `nodev`, showing the agents, and that a write through it fails with
/// `EROFS`; returns its mountinfo line.
fn assert_read_only_in(pid: u32, target: &Path) -> String {
    let mounts = mounts_at(pid, target);
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
        let seen = std::fs::read_to_string(view(pid, &target.join(file)))
            .unwrap_or_else(|e| panic!("{file} in the published volume: {e}"));
        assert_eq!(seen, content, "{file}");
    }
    for write in [target.join("new-file"), target.join(AGENT_FILES[0].0)] {
        let error = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(view(pid, &write))
            .expect_err("a write into the published volume must fail");
        assert_eq!(
            error.raw_os_error(),
            Some(EROFS),
            "{}: {error}",
            write.display()
        );
    }
    mounts[0].clone()
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
    // A plain directory with something in it was not made by publish: left as it is, OK.
    std::fs::create_dir(&never).unwrap();
    std::fs::write(never.join("kept"), "x").unwrap();
    plugin.unpublish(&never).await.unwrap();
    assert!(
        never.join("kept").is_file(),
        "a non-empty directory is left alone"
    );
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
    // A symlink inside the pod directory that leads out of it: one level too deep, and,
    // as the volume's own directory, of the right shape.
    let escape = node.target("pod-2", "escape");
    std::os::unix::fs::symlink(&outside, escape.parent().unwrap().join("link")).unwrap();
    let through_link = escape.parent().unwrap().join("link/mount");
    let linked_volume = node
        .pods_dir()
        .join("pod-5/volumes/kubernetes.io~csi/linked");
    std::fs::create_dir_all(linked_volume.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&outside, &linked_volume).unwrap();
    let linked_pod = node.pods_dir().join("pod-6");
    std::os::unix::fs::symlink(node.pods_dir().join("pod-1"), &linked_pod).unwrap();
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
            "a symlink as the volume's directory",
            with(&path(&linked_volume.join("mount"))),
            Code::FailedPrecondition,
            "symlink",
        ),
        (
            "a symlink as the pod's directory, even to another pod",
            with(&path(
                &linked_pod.join("volumes/kubernetes.io~csi/odigos-agent/mount"),
            )),
            Code::FailedPrecondition,
            "symlink",
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
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing created outside"
    );
    assert!(
        !target.exists(),
        "nothing created through the pod's symlink"
    );
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

/// Asserts that the plugin serves no agents now (`state`): `Probe` not ready, and a
/// publish refused with `FAILED_PRECONDITION`, its message containing every one of
/// `says`, and nothing created.
async fn serves_no_agents(plugin: &CsiPlugin, node: &CsiNode, state: &str, says: &[&str]) {
    assert_eq!(
        probe_ready(plugin).await,
        Some(false),
        "{state}: Probe not ready"
    );
    let status = plugin
        .publish(node, "pod-1", "odigos-agent")
        .await
        .expect_err(state);
    assert_eq!(status.code(), Code::FailedPrecondition, "{state}");
    assert!(
        says.iter().all(|text| status.message().contains(text)),
        "{state}: {}",
        status.message()
    );
    assert!(
        !node.target("pod-1", "odigos-agent").exists(),
        "{state}: nothing created"
    );
}

#[tokio::test]
async fn missing_or_empty_agent_directory_is_a_failed_precondition() {
    let node = CsiNode::new();
    let missing = node.root.path().join("no-agents");
    let plugin = CsiPlugin::start_with(&node, &missing, &[]).await;
    for state in ["missing", "empty"] {
        serves_no_agents(&plugin, &node, state, &["missing or empty", "--agent-dir"]).await;
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
        // Accepting, not only there: the file appears at bind(), before listen().
        eventually(
            &format!("{mode}: the CSI socket served again"),
            AGAIN_WITHIN,
            || std::os::unix::net::UnixStream::connect(&socket).is_ok(),
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

/// Waits until `metrics` shows every line of `lines`.
async fn metrics_show(addr: &str, lines: &[&str]) {
    let deadline = Instant::now() + STARTUP;
    loop {
        let text = http_get(addr, "/metrics").await;
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
    let addr = free_addr();
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
    let text = http_get(&addr, "/metrics").await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("process_resident_memory_bytes ")),
        "the shared process metrics:\n{text}"
    );
    assert!(
        http_get(&addr, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
}

#[tokio::test]
async fn a_foreign_mount_at_the_target_is_neither_reused_nor_unmounted() {
    let node = CsiNode::new();
    let plugin = CsiPlugin::start(&node, &[]).await;
    let other = node.root.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("secret"), "x").unwrap();
    let (other, agents) = (other.as_os_str(), node.agents().into_os_string());
    // A tmpfs, a writable bind of another directory, the agents themselves but
    // writable, and another directory read-only.
    let foreign: [(&str, Vec<&OsStr>, bool); 4] = [
        (
            "pod-1",
            vec!["-t", "tmpfs", "tmpfs"]
                .into_iter()
                .map(OsStr::new)
                .collect(),
            false,
        ),
        ("pod-2", vec![OsStr::new("--bind"), other], false),
        (
            "pod-3",
            vec![OsStr::new("--bind"), agents.as_os_str()],
            false,
        ),
        ("pod-4", vec![OsStr::new("--bind"), other], true),
    ];
    for (pod, args, read_only) in foreign {
        let target = node.target(pod, "odigos-agent");
        std::fs::create_dir(&target).unwrap();
        let mut args = args;
        args.push(target.as_os_str());
        mount_in(plugin.pid(), &args);
        if read_only {
            let remount = ["-o", "remount,bind,ro,nosuid,nodev"].map(OsStr::new);
            mount_in(
                plugin.pid(),
                &[&remount[..], &[target.as_os_str()]].concat(),
            );
        }
        let before = plugin.mounts_at(&target);
        assert_eq!(before.len(), 1, "{pod}: the foreign mount");
        let published = plugin
            .publish(&node, pod, "odigos-agent")
            .await
            .expect_err("a mount that is not ours is not reused");
        let unpublished = plugin
            .unpublish(&target)
            .await
            .expect_err("a mount that is not ours is not unmounted");
        for status in [published, unpublished] {
            assert_eq!(
                status.code(),
                Code::FailedPrecondition,
                "{pod}: {}",
                status.message()
            );
            assert!(
                status.message().contains("not this plugin's"),
                "{pod}: {}",
                status.message()
            );
        }
        assert_eq!(
            plugin.mounts_at(&target),
            before,
            "{pod}: nothing stacked on it, nothing unmounted"
        );
        assert!(
            plugin.view(&target).is_dir(),
            "{pod}: the directory survives"
        );
    }
    // Unmounted by its owner, the target is the plugin's to use.
    let target = node.target("pod-3", "odigos-agent");
    let status = std::process::Command::new("nsenter")
        .arg(format!("--mount=/proc/{}/ns/mnt", plugin.pid()))
        .args(["--", "umount"])
        .arg(&target)
        .status()
        .unwrap();
    assert!(status.success());
    plugin
        .publish(&node, "pod-3", "odigos-agent")
        .await
        .unwrap();
    assert_published_read_only(&plugin, &target);
}

#[tokio::test]
async fn targets_of_the_wrong_shape_are_refused_and_nothing_is_created_or_unmounted() {
    let node = CsiNode::new();
    let plugin = CsiPlugin::start(&node, &[]).await;
    let pod = node.pods_dir().join("pod-1");
    let volumes = pod.join("volumes");
    let empty_dir = volumes.join("kubernetes.io~empty-dir/cache");
    let token = volumes.join("kubernetes.io~projected/kube-api-access-x");
    let csi_volume = volumes.join("kubernetes.io~csi/odigos-agent");
    for dir in [&empty_dir, &token, &csi_volume] {
        std::fs::create_dir_all(dir).unwrap();
    }
    // Another volume's mount, as the kubelet makes a projected token.
    let tmpfs = ["-t", "tmpfs", "tmpfs"].map(OsStr::new);
    mount_in(plugin.pid(), &[&tmpfs[..], &[token.as_os_str()]].concat());
    let listing = |dir: &Path| -> Vec<PathBuf> {
        let mut entries: Vec<PathBuf> = walk(dir);
        entries.sort();
        entries
    };
    let before = listing(&node.pods_dir());
    let wrong = [
        ("a pod's whole directory", pod.clone()),
        ("another volume type's directory", empty_dir.clone()),
        ("a projected token's directory", token.clone()),
        ("a CSI volume's directory", csi_volume.clone()),
        ("one level deeper", csi_volume.join("mount/sub")),
        ("another volume type's mount", empty_dir.join("mount")),
    ];
    for (case, target) in &wrong {
        let published = plugin.publish_at(target).await.expect_err(case);
        let unpublished = plugin.unpublish(target).await.expect_err(case);
        for status in [published, unpublished] {
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{case}: {}",
                status.message()
            );
            assert!(
                status
                    .message()
                    .contains("volumes/kubernetes.io~csi/<volume name>/mount"),
                "{case}: {}",
                status.message()
            );
        }
    }
    assert_eq!(
        listing(&node.pods_dir()),
        before,
        "nothing created or removed"
    );
    assert_eq!(plugin.mounts_at(&token).len(), 1, "the token stays mounted");
    let table = std::fs::read(format!("/proc/{}/mountinfo", plugin.pid())).unwrap();
    let agents_mounted = String::from_utf8_lossy(&table)
        .lines()
        .filter(|l| l.contains(&node.pods_dir().display().to_string()))
        .count();
    assert_eq!(agents_mounted, 1, "only the token is mounted under pods/");
}

/// Every path below `dir` (directories not followed through symlinks).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        found.push(entry.path());
        if entry.file_type().unwrap().is_dir() {
            found.extend(walk(&entry.path()));
        }
    }
    found
}

#[tokio::test]
async fn a_non_utf8_mount_point_elsewhere_changes_nothing() {
    let node = CsiNode::new();
    let addr = free_addr();
    let plugin = CsiPlugin::start(&node, &["--metrics-addr", &addr]).await;
    let odd = node.root.path().join(OsStr::from_bytes(b"caf\xe9\xff"));
    std::fs::create_dir(&odd).unwrap();
    let tmpfs = ["-t", "tmpfs", "tmpfs"].map(OsStr::new);
    mount_in(plugin.pid(), &[&tmpfs[..], &[odd.as_os_str()]].concat());
    assert_eq!(plugin.mounts_at(&odd).len(), 1, "the odd mount point");
    let target = plugin
        .publish(&node, "pod-1", "odigos-agent")
        .await
        .unwrap();
    assert_published_read_only(&plugin, &target);
    plugin
        .publish(&node, "pod-1", "odigos-agent")
        .await
        .unwrap();
    assert_published_read_only(&plugin, &target);
    metrics_show(&addr, &["agent_mount_csi_volumes_published 1"]).await;
    plugin.unpublish(&target).await.unwrap();
    assert!(plugin.mounts_at(&target).is_empty() && !target.exists());
    metrics_show(&addr, &["agent_mount_csi_volumes_published 0"]).await;
}

#[tokio::test]
async fn the_kubelet_dir_is_accepted_in_both_spellings() {
    let node = CsiNode::new();
    // --kubelet-dir through a symlink, as on nodes whose /var/lib/kubelet points elsewhere.
    let link = node.root.path().join("kubelet-link");
    std::os::unix::fs::symlink(node.kubelet_dir(), &link).unwrap();
    let plugin = CsiPlugin::start(&node, &["--kubelet-dir", link.to_str().unwrap()]).await;
    let real = node.target("pod-1", "odigos-agent");
    let linked = link.join("pods/pod-1/volumes/kubernetes.io~csi/odigos-agent/mount");
    plugin.publish_at(&linked).await.unwrap();
    assert_published_read_only(&plugin, &real);
    plugin.publish_at(&real).await.unwrap();
    assert_published_read_only(&plugin, &real);
    plugin.unpublish(&real).await.unwrap();
    assert!(!real.exists());
    plugin.publish_at(&real).await.unwrap();
    assert_published_read_only(&plugin, &real);
    plugin.unpublish(&linked).await.unwrap();
    assert!(plugin.mounts_at(&real).is_empty() && !real.exists());
}

#[tokio::test]
async fn as_the_daemonset_runs_it_the_host_sees_the_mount_read_only() {
    let node = CsiNode::new();
    // The kubelet's side: the pod directory shared, the agents writable.
    let host = Witness::shared_pods(&node).await;
    let plugin = CsiPlugin::start_nested(&host, &node, &node.agents()).await;
    let target = plugin
        .publish(&node, "pod-1", "odigos-agent")
        .await
        .unwrap();
    assert_published_read_only(&plugin, &target);
    // Bidirectional propagation: the host's copy, born read-only too.
    let line = assert_read_only_in(host.pid(), &target);
    println!("the host's mountinfo line: {line}");
    std::fs::write(node.agents().join("written-on-the-host"), "x")
        .expect("the agent source itself is writable");
    plugin.unpublish(&target).await.unwrap();
    assert!(
        mounts_at(host.pid(), &target).is_empty(),
        "unmounted on the host too"
    );
}

/// Publishes that race a swapped path component.
const RACE_ATTEMPTS: usize = 400;

#[tokio::test]
async fn a_symlink_swapped_in_during_publishes_never_leads_a_mount_out() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let node = CsiNode::new();
    let plugin = CsiPlugin::start(&node, &[]).await;
    let outside = node.root.path().join("outside");
    let pod = node.pods_dir().join("pod-1");
    for n in 0..RACE_ATTEMPTS {
        node.target("pod-1", &format!("v{n}"));
        std::fs::create_dir_all(outside.join(format!("kubernetes.io~csi/v{n}"))).unwrap();
    }
    // `volumes` and a symlink to the outside directory swap names, again and again.
    let decoy = pod.join("decoy");
    std::os::unix::fs::symlink(&outside, &decoy).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicUsize::new(0));
    let swapper = {
        let (stop, swaps) = (stop.clone(), swaps.clone());
        let (a, b) = (
            std::ffi::CString::new(pod.join("volumes").as_os_str().as_bytes()).unwrap(),
            std::ffi::CString::new(decoy.as_os_str().as_bytes()).unwrap(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: two NUL-terminated paths; renameat2 reads them only.
                let done = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                assert_eq!(done, 0, "renameat2: {}", std::io::Error::last_os_error());
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let mut client = plugin.node().await;
    let (mut ok, mut refused) = (0, Vec::new());
    for n in 0..RACE_ATTEMPTS {
        let target = pod.join(format!("volumes/kubernetes.io~csi/v{n}/mount"));
        match client.node_publish_volume(publish_request(&target)).await {
            Ok(_) => ok += 1,
            Err(status) => refused.push(status),
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    println!(
        "{RACE_ATTEMPTS} publishes during {} swaps: {ok} mounted, {} refused",
        swaps.load(Ordering::Relaxed),
        refused.len()
    );
    let table = std::fs::read(format!("/proc/{}/mountinfo", plugin.pid())).unwrap();
    let root = node.root.path().as_os_str().as_bytes();
    let pods = node.pods_dir();
    let mut inside = 0;
    for line in table.split(|b| *b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
        let (Some(point), Some(options)) = (fields.get(4), fields.get(5)) else {
            continue;
        };
        if !point.starts_with(root) {
            continue;
        }
        let point = Path::new(OsStr::from_bytes(point));
        let text = String::from_utf8_lossy(line);
        assert!(point.starts_with(&pods), "a mount outside pods/: {text}");
        let options = String::from_utf8_lossy(options);
        assert!(
            options.split(',').any(|o| o == "ro"),
            "a writable mount: {text}"
        );
        inside += 1;
    }
    assert_eq!(inside, ok, "one mount per publish that answered OK");
    assert_eq!(
        walk(&outside).len(),
        RACE_ATTEMPTS + 1,
        "nothing created outside"
    );
    // Refused only for the symlink met on the way, and the race really ran both ways.
    for status in &refused {
        assert_eq!(
            status.code(),
            Code::FailedPrecondition,
            "{}",
            status.message()
        );
        assert!(status.message().contains("symlink"), "{}", status.message());
    }
    assert!(
        ok > 0 && !refused.is_empty(),
        "the race was run: {ok} mounted, {} refused",
        refused.len()
    );
}

/// Makes `mount_setattr` fail with `ENOSYS` in the process about to exec, as on a kernel
/// before 5.12 (a seccomp filter: load the syscall number, compare, answer).
fn without_mount_setattr(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let filter = [
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0, // offsetof(struct seccomp_data, nr)
        },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_mount_setattr as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    // SAFETY: prctl(2) is async-signal-safe; the filter outlives the calls (the closure owns it).
    unsafe {
        command.pre_exec(move || {
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &program as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[tokio::test]
async fn without_mount_setattr_it_refuses_to_start_unless_legacy_mounts_are_allowed() {
    let node = CsiNode::new();
    let launcher = ["unshare", "--mount", "--propagation", "private", "--"].map(String::from);
    let mut refused = CsiPlugin::command(&launcher, &node, &node.agents(), &[]);
    without_mount_setattr(&mut refused);
    let mut refused = support::Plugin::spawn(refused);
    let status = refused
        .wait(STARTUP)
        .expect("the plugin refuses to start: it exits");
    assert!(!status.success(), "exits with a failure: {status}");
    eventually("the reason in the log", STARTUP, || {
        refused.output().contains("--allow-legacy-mount")
    })
    .await;
    let stderr = refused.output();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    for word in [
        "mount_setattr",
        "5.12",
        release.trim(),
        "--allow-legacy-mount",
    ] {
        assert!(stderr.contains(word), "{word} in {stderr}");
    }
    assert!(!node.csi_socket().exists(), "nothing served");

    let mut allowed =
        CsiPlugin::command(&launcher, &node, &node.agents(), &["--allow-legacy-mount"]);
    without_mount_setattr(&mut allowed);
    let plugin = CsiPlugin::serving(allowed, &node).await;
    let target = plugin
        .publish(&node, "pod-1", "odigos-agent")
        .await
        .unwrap();
    assert_published_read_only(&plugin, &target);
    plugin.unpublish(&target).await.unwrap();
    assert!(plugin.mounts_at(&target).is_empty() && !target.exists());
    let log = plugin.stderr();
    assert!(
        log.contains("WARN") && log.contains("--allow-legacy-mount: mounts are a bind"),
        "a warning at start: {log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("published with --allow-legacy-mount")),
        "a warning in the publish line: {log}"
    );
}

/// The agents of version `name` as the installer lays them out: [`AGENT_FILES`] and a
/// `VERSION` file that tells the versions apart.
fn version_files(name: &str) -> Vec<(&str, &str)> {
    let mut files = AGENT_FILES.to_vec();
    files.push(("VERSION", name));
    files
}

/// Installs version `name` ([`version_files`]) into `root` and switches `current` to it.
fn install(root: &Path, name: &str) {
    install_version(root, name, &version_files(name));
}

/// The version a published volume shows, as the plugin's namespace sees it.
fn version_at(plugin: &CsiPlugin, target: &Path) -> String {
    std::fs::read_to_string(plugin.view(&target.join("VERSION"))).unwrap()
}

/// Publishes pod `pod_uid`'s volume, checks that it is read-only, and returns its target
/// with the version it shows.
async fn publish_checked(plugin: &CsiPlugin, node: &CsiNode, pod_uid: &str) -> (PathBuf, String) {
    let target = plugin.publish(node, pod_uid, "odigos-agent").await.unwrap();
    assert_published_read_only(plugin, &target);
    let version = version_at(plugin, &target);
    (target, version)
}

/// The installer's root in `node` with version `v1` installed.
fn installed_root(node: &CsiNode) -> PathBuf {
    let root = node.root.path().join("installed");
    install(&root, "v1");
    root
}

#[tokio::test]
async fn a_publish_after_a_switch_mounts_the_new_version_and_older_volumes_stay_ours() {
    let node = CsiNode::new();
    let root = installed_root(&node);
    let addr = free_addr();
    let plugin =
        CsiPlugin::start_with(&node, &root.join("current"), &["--metrics-addr", &addr]).await;
    let (old, version) = publish_checked(&plugin, &node, "pod-1").await;
    assert_eq!(version, "v1");

    install(&root, "v2");
    let (new, version) = publish_checked(&plugin, &node, "pod-2").await;
    assert_eq!(version, "v2", "a publish after the switch");
    assert_eq!(
        version_at(&plugin, &old),
        "v1",
        "a running pod keeps its version"
    );
    metrics_show(&addr, &["agent_mount_csi_volumes_published 2"]).await;

    // The kubelet publishing the older volume again: ours, still one mount, still v1.
    let (again, version) = publish_checked(&plugin, &node, "pod-1").await;
    assert_eq!((&again, version.as_str()), (&old, "v1"));

    // Its pod gone, the volume published before the switch unpublishes and is cleaned up.
    plugin.unpublish(&old).await.unwrap();
    assert!(plugin.mounts_at(&old).is_empty(), "unmounted");
    assert!(!old.exists(), "the directory publish created is removed");
    plugin.unpublish(&new).await.unwrap();
    assert!(plugin.mounts_at(&new).is_empty() && !new.exists());
}

#[tokio::test]
async fn probe_and_publish_turn_ready_when_the_first_version_lands() {
    let node = CsiNode::new();
    let root = node.root.path().join("installed");
    std::fs::create_dir(&root).unwrap();
    let current = root.join("current");
    let plugin = CsiPlugin::start_with(&node, &current, &[]).await;
    // Nothing installed yet, then the empty `current` a runtime makes for a missing hostPath.
    for state in ["nothing installed", "an empty directory at current"] {
        serves_no_agents(&plugin, &node, state, &["missing or empty"]).await;
        std::fs::create_dir_all(&current).unwrap();
    }
    install(&root, "v1");
    assert_eq!(probe_ready(&plugin).await, Some(true));
    let (_, version) = publish_checked(&plugin, &node, "pod-1").await;
    assert_eq!(version, "v1");
}

#[tokio::test]
async fn a_current_that_leads_out_of_versions_is_refused() {
    let node = CsiNode::new();
    let root = installed_root(&node);
    // Agents elsewhere on the node, and a version that is itself a link to them.
    std::os::unix::fs::symlink(node.agents(), root.join("versions/linked")).unwrap();
    let plugin = CsiPlugin::start_with(&node, &root.join("current"), &[]).await;
    let links = [
        node.agents(),
        root.join("versions/v1"),
        PathBuf::from("../../agents"),
        PathBuf::from("versions/../../agents"),
        PathBuf::from("versions/v1/java"),
        PathBuf::from("versions/linked"),
    ];
    for link in links {
        point_current(&root, &link);
        let state = link.display().to_string();
        serves_no_agents(
            &plugin,
            &node,
            &state,
            &["only link followed", "--agent-dir"],
        )
        .await;
    }
    // Back to the installer's link: served again.
    point_current(&root, "versions/v1");
    plugin
        .publish(&node, "pod-1", "odigos-agent")
        .await
        .unwrap();
}
