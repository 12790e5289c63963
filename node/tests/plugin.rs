//! The plugin binary against a fake kubelet over unix sockets in a temp directory.

mod support;

use agent_mount_node::api::device_plugin_client::DevicePluginClient;
use agent_mount_node::api::{
    AllocateRequest, ContainerAllocateRequest, Mount, PreStartContainerRequest,
    PreferredAllocationRequest,
};
use agent_mount_node::uds;
use std::time::{Duration, Instant};
use support::{FakeKubelet, Node, Plugin, Seen, registered_plugin, wait_for_file};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// The budget for a re-registration after `kubelet.sock` reappears.
const REREGISTER_WITHIN: Duration = Duration::from_secs(1);
/// The quiet window in which no further `Register` may arrive.
const QUIET: Duration = Duration::from_secs(1);
/// Generous bound for start-up events.
const STARTUP: Duration = Duration::from_secs(10);

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
async fn a_thousand_concurrent_allocations_are_all_answered() {
    let (node, _kubelet, _plugin) = registered_plugin(&[]).await;
    let client = client(&node).await;
    let calls: Vec<_> = (0..1000)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { client.allocate(allocate_request(1)).await })
        })
        .collect();
    let mut answered = 0;
    for call in calls {
        let response = call.await.unwrap().unwrap().into_inner();
        assert_eq!(response.container_responses[0].mounts.len(), 1);
        answered += 1;
    }
    assert_eq!(answered, 1000);
}

#[tokio::test]
async fn grpc_health_and_the_probe_subcommand_report_serving() {
    let node = Node::new();
    let mut kubelet = FakeKubelet::start(&node.plugin_dir());
    let plugin_dir = node.plugin_dir();
    let probe = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_agent-mount-node"))
            .arg("--plugin-dir")
            .arg(&plugin_dir)
            .args(["probe", "--timeout", "2s"])
            .output()
            .unwrap()
    };
    let before = probe();
    assert_eq!(before.status.code(), Some(1), "no plugin yet");
    assert!(String::from_utf8_lossy(&before.stderr).contains("cannot connect"));
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

#[tokio::test]
async fn twenty_kubelet_restarts_each_cause_exactly_one_registration() {
    let (_node, mut kubelet, _plugin) = registered_plugin(&[]).await;
    for restart in 1..=20 {
        kubelet = kubelet.restart().await;
        let started = Instant::now();
        kubelet.registered(REREGISTER_WITHIN).await;
        let latency = started.elapsed();
        assert_eq!(
            kubelet.registrations_during(QUIET).await,
            0,
            "restart {restart}: a second Register"
        );
        assert!(
            latency <= REREGISTER_WITHIN,
            "restart {restart}: {latency:?}"
        );
    }
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
    tokio::time::sleep(Duration::from_millis(700)).await;
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = Node::new();
    let mut kubelet = FakeKubelet::start(&node.plugin_dir());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let _plugin = Plugin::start(&node, &["--metrics-addr", &addr, "--devices", "8"]);
    kubelet.registered(STARTUP).await;
    client(&node)
        .await
        .allocate(allocate_request(3))
        .await
        .unwrap();
    let get = |path: &'static str| {
        let addr = addr.clone();
        async move {
            let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut text = String::new();
            stream.read_to_string(&mut text).await.unwrap();
            text
        }
    };
    let metrics = get("/metrics").await;
    for line in [
        "agent_mount_devices{health=\"Healthy\"} 8",
        "agent_mount_allocations_total 3",
        "agent_mount_registrations_total 1",
        "agent_mount_kubelet_restarts_total 0",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
}
