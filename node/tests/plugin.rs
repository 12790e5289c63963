//! The plugin binary against a fake kubelet over unix sockets in a temp directory.
// Test and bench code: helpers fail loudly too (clippy.toml allows this in #[test] functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use agent_mount_node::device_plugin::api::device_plugin_client::DevicePluginClient;
use agent_mount_node::device_plugin::api::{
    AllocateRequest, AllocateResponse, ContainerAllocateRequest, ContainerAllocateResponse, Mount,
    PreStartContainerRequest, PreferredAllocationRequest,
};
use agent_mount_node::uds;
use std::time::{Duration, Instant};
use support::{
    FakeKubelet, Node, Plugin, Seen, free_addr, http_get, install_version, point_current,
    registered_plugin, wait_for_file,
};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// The budget for a re-registration after `kubelet.sock` reappears.
const REREGISTER_WITHIN: Duration = Duration::from_secs(1);
/// The quiet window in which no further `Register` may arrive.
const QUIET: Duration = Duration::from_secs(1);
/// Generous bound for start-up events.
const STARTUP: Duration = Duration::from_secs(10);
/// Kubelet restarts in a row in the restart test.
const RESTARTS: usize = 50;

fn allocate_request(containers: usize) -> AllocateRequest {
    AllocateRequest {
        container_requests: (0..containers)
            .map(|i| ContainerAllocateRequest {
                devices_ids: vec![format!("generic-{i}")],
            })
            .collect(),
    }
}

async fn client(node: &Node) -> DevicePluginClient<tonic::transport::Channel> {
    DevicePluginClient::new(uds::connect(&node.socket()).await.unwrap())
}

#[tokio::test]
async fn registers_then_streams_the_full_healthy_list() {
    let node = Node::new();
    let mut kubelet = FakeKubelet::start(&node.plugin_dir());
    let _plugin = Plugin::start(&node, &[]);
    let (request, options) = kubelet.registered(STARTUP).await;
    assert_eq!(request.version, "v1beta1");
    assert_eq!(request.endpoint, "instrumentation.odigos.io_generic");
    assert_eq!(request.resource_name, "instrumentation.odigos.io/generic");
    assert!(!options.pre_start_required && !options.get_preferred_allocation_available);
    let list = kubelet.list_with(Some("Healthy"), STARTUP).await;
    let ids: Vec<String> = list.devices.iter().map(|d| d.id.clone()).collect();
    let expected: Vec<String> = (0..1024).map(|i| format!("generic-{i}")).collect();
    assert_eq!(ids, expected, "stable IDs generic-0..generic-1023");
    assert_eq!(
        kubelet.registrations_during(QUIET).await,
        0,
        "registered once"
    );
}

#[tokio::test]
async fn allocate_mounts_the_agent_directory_read_only_for_every_container() {
    let (node, _kubelet, _plugin) = registered_plugin(&[]).await;
    let mut client = client(&node).await;
    let expected = Mount {
        container_path: "/var/odigos".into(),
        host_path: node.agents().display().to_string(),
        read_only: true,
    };
    for containers in [1, 5] {
        let response = client
            .allocate(allocate_request(containers))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.container_responses.len(), containers);
        for container in &response.container_responses {
            assert_eq!(container.mounts, vec![expected.clone()]);
            assert!(container.envs.is_empty() && container.devices.is_empty());
        }
    }
    let unknown = AllocateRequest {
        container_requests: vec![ContainerAllocateRequest {
            devices_ids: vec!["gpu-7".into()],
        }],
    };
    let status = client.allocate(unknown).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("unknown device ID \"gpu-7\""),
        "{}",
        status.message()
    );
    let empty = client
        .allocate(AllocateRequest::default())
        .await
        .unwrap_err();
    assert_eq!(empty.code(), tonic::Code::InvalidArgument);
    let preferred = client
        .get_preferred_allocation(PreferredAllocationRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(preferred.container_responses.is_empty());
    client
        .pre_start_container(PreStartContainerRequest::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_thousand_concurrent_allocations_each_get_the_mount() {
    let (node, _kubelet, _plugin) = registered_plugin(&[]).await;
    let client = client(&node).await;
    let expected = AllocateResponse {
        container_responses: vec![ContainerAllocateResponse {
            mounts: vec![Mount {
                container_path: "/var/odigos".into(),
                host_path: node.agents().display().to_string(),
                read_only: true,
            }],
            ..Default::default()
        }],
    };
    let calls: Vec<_> = (0..1000)
        .map(|i| {
            let mut client = client.clone();
            let request = AllocateRequest {
                container_requests: vec![ContainerAllocateRequest {
                    devices_ids: vec![format!("generic-{i}")],
                }],
            };
            tokio::spawn(async move { client.allocate(request).await })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let response = call.await.unwrap().unwrap().into_inner();
        assert_eq!(response, expected, "call {i}");
    }
}

#[tokio::test]
async fn grpc_health_and_the_probe_subcommand_report_serving() {
    let node = Node::new();
    let mut kubelet = FakeKubelet::start(&node.plugin_dir());
    let plugin_dir = node.plugin_dir();
    // As the DaemonSet's exec probe runs it: flags from the same environment as the plugin's.
    let probe = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_agent-mount-node"))
            .args(["probe", "device-plugin", "--timeout", "2s"])
            .env("AGENT_MOUNT_PLUGIN_DIR", &plugin_dir)
            .output()
            .unwrap()
    };
    assert_eq!(probe().status.code(), Some(1), "no plugin yet");
    let _plugin = Plugin::start(&node, &[]);
    kubelet.registered(STARTUP).await;
    let mut health = HealthClient::new(uds::connect(&node.socket()).await.unwrap());
    for service in ["", "v1beta1.DevicePlugin"] {
        let answer = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.status, 1, "SERVING for {service:?}");
    }
    assert!(probe().status.success());
}

/// DESIGN §3a's restart, 50 times: the Registration server stops, its channels to the
/// plugin close, 200 ms later every socket is deleted, and `kubelet.sock` is served anew
/// (often with the old inode number). Each restart gets one `Register` within 1 s, then
/// none during a quiet second.
#[tokio::test]
async fn fifty_kubelet_restarts_each_cause_exactly_one_registration_within_a_second() {
    let (_node, mut kubelet, _plugin) = registered_plugin(&[]).await;
    let mut slowest = Duration::ZERO;
    for restart in 1..=RESTARTS {
        let dir = kubelet.die().await;
        let recreated = Instant::now();
        kubelet = FakeKubelet::start(&dir);
        kubelet.registered(REREGISTER_WITHIN).await;
        let latency = recreated.elapsed();
        slowest = slowest.max(latency);
        assert!(
            latency <= REREGISTER_WITHIN,
            "restart {restart}: {latency:?}"
        );
        assert_eq!(
            kubelet.registrations_during(QUIET).await,
            0,
            "restart {restart}: a second Register"
        );
    }
    println!("slowest re-registration over {RESTARTS} restarts: {slowest:?}");
}

#[tokio::test]
async fn poll_mode_reregisters_exactly_once_within_a_second() {
    let (_node, mut kubelet, _plugin) = registered_plugin(&["--watch", "poll"]).await;
    for restart in 1..=3 {
        kubelet = kubelet.restart().await;
        kubelet.registered(REREGISTER_WITHIN).await;
        assert_eq!(
            kubelet.registrations_during(QUIET).await,
            0,
            "restart {restart}: a second Register"
        );
    }
}

#[tokio::test]
async fn a_dropped_stream_causes_one_registration() {
    let (_node, mut kubelet, _plugin) = registered_plugin(&[]).await;
    kubelet.list_with(Some("Healthy"), STARTUP).await;
    kubelet.drop_streams();
    kubelet.registered(REREGISTER_WITHIN).await;
    assert_eq!(kubelet.registrations_during(QUIET).await, 0);
}

#[tokio::test]
async fn waits_for_a_kubelet_that_is_absent_at_start() {
    let node = Node::new();
    let _plugin = Plugin::start(&node, &[]);
    wait_for_file(&node.socket(), STARTUP).await;
    let mut kubelet = FakeKubelet::start(&node.plugin_dir());
    kubelet.registered(REREGISTER_WITHIN).await;
    assert_eq!(kubelet.registrations_during(QUIET).await, 0);
}

#[tokio::test]
async fn health_follows_the_agent_directory() {
    let (node, mut kubelet, _plugin) = registered_plugin(&[]).await;
    kubelet.list_with(Some("Healthy"), STARTUP).await;
    std::fs::remove_dir_all(node.agents()).unwrap();
    kubelet
        .list_with(Some("Unhealthy"), Duration::from_secs(3))
        .await;
    std::fs::create_dir_all(node.agents().join("python")).unwrap();
    kubelet
        .list_with(Some("Healthy"), Duration::from_secs(3))
        .await;
}

/// Asserts that every list the kubelet gets during `window` is all `Healthy`.
async fn stays_healthy(kubelet: &mut FakeKubelet, window: Duration) {
    let deadline = Instant::now() + window;
    while let Some(seen) = kubelet
        .next(deadline.saturating_duration_since(Instant::now()))
        .await
    {
        if let Seen::List(list) = seen {
            assert!(
                list.devices.iter().all(|d| d.health == "Healthy"),
                "a list not healthy during a switch: {list:?}"
            );
        }
    }
}

#[tokio::test]
async fn devices_turn_healthy_when_the_first_version_lands_and_follow_every_switch() {
    let node = Node::new();
    // The installer's root, before the first install: nothing in it yet.
    let root = node.root.path().join("installed");
    std::fs::create_dir(&root).unwrap();
    let current = root.join("current");
    let mut kubelet = FakeKubelet::start(&node.plugin_dir());
    let _plugin = Plugin::spawn(Plugin::command_with(
        &node,
        &current,
        &["--poll-interval", "50ms"],
    ));
    kubelet.registered(STARTUP).await;
    kubelet.list_with(Some("Unhealthy"), STARTUP).await;
    // A pod that landed first made `current` an empty directory: still no agents.
    std::fs::create_dir(&current).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    install_version(&root, "v1", &[("java/javaagent.jar", "v1")]);
    kubelet
        .list_with(Some("Healthy"), Duration::from_secs(3))
        .await;
    // The kubelet is handed `current` itself: the runtime resolves it at container start.
    let response = client(&node)
        .await
        .allocate(allocate_request(1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response.container_responses[0].mounts[0].host_path,
        current.display().to_string()
    );
    // A switch, then the old version collected: healthy throughout (nothing pinned v1).
    install_version(&root, "v2", &[("java/javaagent.jar", "v2")]);
    std::fs::remove_dir_all(root.join("versions/v1")).unwrap();
    stays_healthy(&mut kubelet, Duration::from_millis(500)).await;
    // `current` pointing out of versions/ (absolute, even at agents): no agents served.
    point_current(&root, node.agents());
    kubelet
        .list_with(Some("Unhealthy"), Duration::from_secs(3))
        .await;
    point_current(&root, "versions/v2");
    kubelet
        .list_with(Some("Healthy"), Duration::from_secs(3))
        .await;
}

#[tokio::test]
async fn sigterm_with_an_open_stream_sends_an_empty_list_and_removes_the_socket() {
    let (node, mut kubelet, mut plugin) = registered_plugin(&[]).await;
    kubelet.list_with(Some("Healthy"), STARTUP).await;
    let started = Instant::now();
    plugin.terminate();
    let status = plugin
        .wait(Duration::from_secs(2))
        .expect("exit within 2 s");
    assert!(status.success(), "{status:?} after {:?}", started.elapsed());
    kubelet.list_with(None, Duration::from_secs(1)).await;
    assert!(matches!(
        kubelet.next(Duration::from_secs(1)).await,
        Some(Seen::StreamEnded)
    ));
    assert!(!node.socket().exists(), "socket removed");
}

#[tokio::test]
async fn metrics_count_registrations_and_allocations() {
    let node = Node::new();
    let mut kubelet = FakeKubelet::start(&node.plugin_dir());
    let addr = free_addr();
    let _plugin = Plugin::start(&node, &["--metrics-addr", &addr, "--devices", "8"]);
    kubelet.registered(STARTUP).await;
    client(&node)
        .await
        .allocate(allocate_request(3))
        .await
        .unwrap();
    let metrics = http_get(&addr, "/metrics").await;
    for line in [
        "agent_mount_devices{health=\"Healthy\"} 8",
        "agent_mount_allocations_total 3",
        "agent_mount_registrations_total 1",
        "agent_mount_kubelet_restarts_total 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing from:\n{metrics}"
        );
    }
    assert!(
        http_get(&addr, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
}

/// The plugin's file descriptor limit in the EMFILE test: enough to start and register,
/// few enough for a test to exhaust with idle connections.
const FD_LIMIT: u64 = 64;

/// A failed `accept` (here `EMFILE`: out of file descriptors) must not stop `/metrics`
/// and `/healthz` for good.
#[tokio::test]
async fn metrics_survive_running_out_of_file_descriptors() {
    use std::os::unix::process::CommandExt;
    let node = Node::new();
    let mut kubelet = FakeKubelet::start(&node.plugin_dir());
    let addr = free_addr();
    let mut command = Plugin::command(&node, &["--metrics-addr", &addr]);
    // SAFETY: setrlimit(2) is async-signal-safe, and the closure touches no shared state.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: FD_LIMIT,
                rlim_max: FD_LIMIT,
            };
            match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let plugin = Plugin::spawn(command);
    kubelet.registered(STARTUP).await;
    assert!(
        http_get(&addr, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    // Idle connections, each holding one of the plugin's descriptors, until none is left.
    let mut held = Vec::new();
    for _ in 0..FD_LIMIT {
        held.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    plugin
        .logged("cannot accept a metrics connection", STARTUP)
        .await;
    // The gRPC socket meets the same limit: its accept loop pauses instead of spinning.
    let waiting = tokio::net::UnixStream::connect(node.socket())
        .await
        .unwrap();
    plugin.logged("cannot accept a connection", STARTUP).await;
    drop((held, waiting));
    let answer = tokio::time::timeout(STARTUP, http_get(&addr, "/metrics"))
        .await
        .expect("/metrics answers again once descriptors are free");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut health = HealthClient::new(uds::connect(&node.socket()).await.unwrap());
    let serving = health
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(serving.status, 1, "the device plugin serves again");
}
