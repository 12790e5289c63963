//! Device plugin benchmark: `Allocate` latency over the unix socket, RSS at rest, binary
//! size, and the time from `kubelet.sock` recreation to re-registration in both watch
//! modes, under DESIGN §3a's restart (channels closed, 200 ms, every socket deleted,
//! `kubelet.sock` served anew). Writes the device-plugin section of BENCHMARKS.md and prints it.
// Test and bench code: helpers fail loudly too (clippy.toml allows this in #[test] functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "common/measure.rs"]
mod measure;
#[path = "../tests/support/mod.rs"]
mod support;

use agent_mount_node::device_plugin::api::device_plugin_client::DevicePluginClient;
use agent_mount_node::device_plugin::api::{AllocateRequest, ContainerAllocateRequest};
use agent_mount_node::uds;
use measure::{mib, ms, percentile, run_bench, status_kib, us};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use support::{FakeKubelet, registered_plugin};

/// Sequential `Allocate` calls measured.
const ALLOCATIONS: usize = 5000;
/// Kubelet restarts measured per watch mode.
const RESTARTS: usize = 20;

async fn allocation_and_memory(out: &mut String) {
    let (node, _kubelet, plugin) = registered_plugin(&[]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = status_kib(plugin.child.id(), "VmRSS");
    let mut client = DevicePluginClient::new(uds::connect(&node.socket()).await.unwrap());
    let request = AllocateRequest {
        container_requests: vec![ContainerAllocateRequest {
            devices_ids: vec!["generic-0".into()],
        }],
    };
    for _ in 0..200 {
        client.allocate(request.clone()).await.unwrap();
    }
    let mut times = Vec::with_capacity(ALLOCATIONS);
    for _ in 0..ALLOCATIONS {
        let started = Instant::now();
        client.allocate(request.clone()).await.unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = status_kib(plugin.child.id(), "VmRSS");
    let peak = status_kib(plugin.child.id(), "VmHWM");
    let size = std::fs::metadata(env!("CARGO_BIN_EXE_agent-mount-node"))
        .unwrap()
        .len();
    writeln!(out, "| figure | value |\n|---|---:|").unwrap();
    writeln!(
        out,
        "| release binary size (not stripped) | {:.1} MB |",
        size as f64 / 1e6
    )
    .unwrap();
    writeln!(
        out,
        "| RSS at rest, registered, 1024 devices | {} |",
        mib(rss_idle)
    )
    .unwrap();
    writeln!(
        out,
        "| RSS after {ALLOCATIONS} allocations | {} (peak {}) |",
        mib(rss_after),
        mib(peak)
    )
    .unwrap();
    writeln!(out, "| `Allocate` p50 / p99 / max, {ALLOCATIONS} sequential calls over the unix socket | {} / {} / {} |",
        us(percentile(&times, 0.5)), us(percentile(&times, 0.99)), us(*times.last().unwrap())).unwrap();
}

async fn reregistration(out: &mut String, mode: &str) {
    let (_node, mut kubelet, _plugin) = registered_plugin(&["--watch", mode]).await;
    let mut times = Vec::with_capacity(RESTARTS);
    for _ in 0..RESTARTS {
        let dir = kubelet.die().await;
        let recreated = Instant::now();
        kubelet = FakeKubelet::start(&dir);
        kubelet.registered(Duration::from_secs(5)).await;
        times.push(recreated.elapsed());
    }
    times.sort();
    writeln!(out, "| re-registration after `kubelet.sock` recreation (restart with the 200 ms gap), `--watch {mode}`, {RESTARTS} restarts: p50 / max | {} / {} |",
        ms(percentile(&times, 0.5)), ms(*times.last().unwrap())).unwrap();
}

fn main() {
    run_bench(
        "device-plugin",
        "cargo bench -p agent-mount-node --bench plugin",
        " (release build)",
        async |out: &mut String| {
            allocation_and_memory(out).await;
            reregistration(out, "auto").await;
            reregistration(out, "poll").await;
        },
    );
}
