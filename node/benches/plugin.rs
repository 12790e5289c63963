//! Device plugin benchmark: `Allocate` latency over the unix socket, RSS at rest, binary
//! size, and the time from `kubelet.sock` recreation to re-registration in both watch
//! modes. Writes the device-plugin section of BENCHMARKS.md and prints it.

#[path = "../tests/support/mod.rs"]
mod support;

use agent_mount_node::api::device_plugin_client::DevicePluginClient;
use agent_mount_node::api::{AllocateRequest, ContainerAllocateRequest};
use agent_mount_node::uds;
use runner::build::workspace_root;
use runner::report::{machine, write_section};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use support::{FakeKubelet, registered_plugin};

/// Sequential `Allocate` calls measured.
const ALLOCATIONS: usize = 5000;
/// Kubelet restarts measured per watch mode.
const RESTARTS: usize = 10;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// A `/proc/<pid>/status` field in KiB, e.g. VmRSS.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

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
        "| RSS at rest, registered, 1024 devices | {:.1} MiB |",
        rss_idle as f64 / 1024.0
    )
    .unwrap();
    writeln!(
        out,
        "| RSS after {ALLOCATIONS} allocations | {:.1} MiB (peak {:.1} MiB) |",
        rss_after as f64 / 1024.0,
        peak as f64 / 1024.0
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
    writeln!(out, "| re-registration after `kubelet.sock` recreation, `--watch {mode}`, {RESTARTS} restarts: p50 / max | {} / {} |",
        ms(percentile(&times, 0.5)), ms(*times.last().unwrap())).unwrap();
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut out = String::new();
    writeln!(out, "Measured by `cargo bench -p agent-mount-node --bench plugin` (release build) on {}.\n", machine()).unwrap();
    runtime.block_on(async {
        allocation_and_memory(&mut out).await;
        reregistration(&mut out, "auto").await;
        reregistration(&mut out, "poll").await;
    });
    print!("{out}");
    if let Err(e) = write_section(
        &workspace_root().join("BENCHMARKS.md"),
        "device-plugin",
        &out,
    ) {
        eprintln!("not written to BENCHMARKS.md: {e}");
    }
}
