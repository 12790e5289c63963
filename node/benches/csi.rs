//! CSI node plugin benchmark (DESIGN §5): `NodePublishVolume` + `NodeUnpublishVolume`
//! latency with real mounts, RSS at rest and after 5,000 publish/unpublish cycles, mounts
//! leaked after the cycles, the flat cost (publish and unpublish with 1 volume published,
//! then with 1,000 volumes and 4,000 unrelated mounts on the node; with a plain agent
//! directory, and with the installer's `<root>/current` and the volumes spread over two
//! versions), and the time from a
//! deleted registration socket to the new one in both watch modes. Runs the plugin in a
//! private mount namespace (root needed, as for tests/csi.rs), prints the figures and
//! writes the CSI section of BENCHMARKS.md.
// Test and bench code: helpers fail loudly too (clippy.toml allows this in #[test] functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../tests/support/csi.rs"]
mod csi_support;
#[path = "common/measure.rs"]
mod measure;
#[path = "../tests/support/mod.rs"]
mod support;

use agent_mount_node::csi::api::csi::node_client::NodeClient;
use agent_mount_node::csi::api::csi::{NodePublishVolumeRequest, NodeUnpublishVolumeRequest};
use csi_support::{AGENT_FILES, CsiNode, CsiPlugin, FakeWatcher, STARTUP, publish_request};
use measure::{mib, ms, percentile, run_bench, short, status_kib, us};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Publish/unpublish cycles measured.
const CYCLES: usize = 5000;
/// Cycles run first and not measured.
const WARM_UP: usize = 100;
/// Registration socket deletions measured per watch mode.
const DELETIONS: usize = 10;
/// Publish/unpublish cycles measured per node size in the flat-cost figures.
const FLAT_CYCLES: usize = 1000;
/// Volumes published besides the measured one on the busy node.
const BUSY_VOLUMES: usize = 1000;
/// Unrelated mounts on the busy node.
const UNRELATED_MOUNTS: usize = 4000;

/// The unpublish request matching `publish`.
fn unpublish_of(publish: &NodePublishVolumeRequest) -> NodeUnpublishVolumeRequest {
    NodeUnpublishVolumeRequest {
        volume_id: publish.volume_id.clone(),
        target_path: publish.target_path.clone(),
    }
}

/// The sorted times of `cycles` publish/unpublish cycles of `publish`.
struct CycleTimes {
    publishes: Vec<Duration>,
    unpublishes: Vec<Duration>,
    /// Publish and unpublish together.
    both: Vec<Duration>,
}

/// `cycles` publish/unpublish cycles of `publish`, timed.
async fn measure_cycles(
    client: &mut NodeClient<tonic::transport::Channel>,
    publish: &NodePublishVolumeRequest,
    cycles: usize,
) -> CycleTimes {
    let unpublish = unpublish_of(publish);
    let mut times = CycleTimes {
        publishes: Vec::with_capacity(cycles),
        unpublishes: Vec::with_capacity(cycles),
        both: Vec::with_capacity(cycles),
    };
    for _ in 0..cycles {
        let started = Instant::now();
        client.node_publish_volume(publish.clone()).await.unwrap();
        let published = Instant::now();
        client
            .node_unpublish_volume(unpublish.clone())
            .await
            .unwrap();
        let done = Instant::now();
        times.publishes.push(published - started);
        times.unpublishes.push(done - published);
        times.both.push(done - started);
    }
    for sorted in [
        &mut times.publishes,
        &mut times.unpublishes,
        &mut times.both,
    ] {
        sorted.sort();
    }
    times
}

/// Where the flat-cost plugin takes the agents from.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// A plain agent directory (`/var/odigos` under Odigos).
    Plain,
    /// The installer's `<root>/current`, switched to a second version half-way through
    /// publishing the busy node's volumes.
    Installed,
}

/// The flat-cost figures: the same cycles on a node with one volume, then on a busy node.
async fn flat_cost(out: &mut String, layout: Layout) {
    let node = CsiNode::new();
    let root = node.root.path().join("installed");
    let plugin = match layout {
        Layout::Plain => CsiPlugin::start(&node, &[]).await,
        Layout::Installed => {
            support::install_version(&root, "v1", &AGENT_FILES);
            CsiPlugin::start_with(&node, &root.join("current"), &[]).await
        }
    };
    let mut client = plugin.node().await;
    let publish = publish_request(&node.target("flat-pod", "odigos-agent"));
    measure_cycles(&mut client, &publish, WARM_UP).await;
    let alone = measure_cycles(&mut client, &publish, FLAT_CYCLES).await;
    for n in 0..BUSY_VOLUMES {
        if layout == Layout::Installed && n == BUSY_VOLUMES / 2 {
            support::install_version(&root, "v2", &AGENT_FILES);
        }
        let other = publish_request(&node.target(&format!("pod-{n}"), "odigos-agent"));
        client.node_publish_volume(other).await.unwrap();
    }
    // Unrelated mounts, as other pods' volumes on a busy node: one shell, not 4,000 processes.
    let unrelated = node.root.path().join("unrelated");
    let script = format!(
        "for i in $(seq {UNRELATED_MOUNTS}); do mkdir -p {dir}/$i && mount -t tmpfs -o size=4k t {dir}/$i || exit 1; done",
        dir = unrelated.display()
    );
    let status = std::process::Command::new("nsenter")
        .arg(format!("--mount=/proc/{}/ns/mnt", plugin.pid()))
        .args(["--", "sh", "-c", &script])
        .status()
        .unwrap();
    assert!(status.success(), "{UNRELATED_MOUNTS} unrelated mounts");
    let table = std::fs::read(format!("/proc/{}/mountinfo", plugin.pid())).unwrap();
    let lines = table.split(|b| *b == b'\n').count();
    let busy = measure_cycles(&mut client, &publish, FLAT_CYCLES).await;
    let agents = match layout {
        Layout::Plain => "a plain agent directory",
        Layout::Installed => "the installer's `<root>/current`, volumes over 2 versions",
    };
    let row = |out: &mut String, what: &str, alone: &[Duration], busy: &[Duration]| {
        let (p50, p99) = (percentile(alone, 0.5), percentile(alone, 0.99));
        let (busy_p50, busy_p99) = (percentile(busy, 0.5), percentile(busy, 0.99));
        writeln!(
            out,
            "| {what}, {agents}, {FLAT_CYCLES} cycles: p50 / p99 with 1 volume published ; with {BUSY_VOLUMES} volumes and {UNRELATED_MOUNTS} unrelated mounts ({lines} mount table lines) ; ratio p50 / p99 (goal ≤ 1.5×) | {} / {} ; {} / {} ; {:.2}× / {:.2}× |",
            us(p50),
            us(p99),
            us(busy_p50),
            us(busy_p99),
            busy_p50.as_secs_f64() / p50.as_secs_f64(),
            busy_p99.as_secs_f64() / p99.as_secs_f64(),
        )
        .unwrap();
    };
    row(
        out,
        "`NodePublishVolume`",
        &alone.publishes,
        &busy.publishes,
    );
    row(
        out,
        "`NodeUnpublishVolume`",
        &alone.unpublishes,
        &busy.unpublishes,
    );
}

async fn cycles(out: &mut String) {
    let node = CsiNode::new();
    let mut watcher = FakeWatcher::start(&node.registry_dir(), true);
    let plugin = CsiPlugin::start(&node, &[]).await;
    watcher.registered(STARTUP).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_rest = status_kib(plugin.pid(), "VmRSS");
    let mut client = plugin.node().await;
    let target = node.target("bench-pod", "odigos-agent");
    let publish = publish_request(&target);
    // The first cycles start the blocking-pool thread and size the buffers.
    measure_cycles(&mut client, &publish, WARM_UP).await;
    let rss_warm = status_kib(plugin.pid(), "VmRSS");
    let CycleTimes {
        publishes,
        unpublishes,
        both,
    } = measure_cycles(&mut client, &publish, CYCLES).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = status_kib(plugin.pid(), "VmRSS");
    let peak = status_kib(plugin.pid(), "VmHWM");
    let table = std::fs::read_to_string(format!("/proc/{}/mountinfo", plugin.pid())).unwrap();
    let root = node.root.path().display().to_string();
    let leaked = table.lines().filter(|l| l.contains(&root)).count();
    let left_dirs = target.exists() as usize;
    writeln!(out, "| figure | value |\n|---|---:|").unwrap();
    let row = |out: &mut String, what: &str, times: &[Duration]| {
        writeln!(
            out,
            "| {what}, {CYCLES} sequential cycles, real mounts: p50 / p99 / max | {} / {} / {} |",
            us(percentile(times, 0.5)),
            us(percentile(times, 0.99)),
            us(times.last().copied().unwrap_or_default())
        )
        .unwrap();
    };
    row(out, "`NodePublishVolume`", &publishes);
    row(out, "`NodeUnpublishVolume`", &unpublishes);
    row(out, "publish + unpublish", &both);
    writeln!(out, "| RSS at rest, registered | {} |", mib(rss_rest)).unwrap();
    writeln!(
        out,
        "| RSS after {WARM_UP} warm-up cycles | {} |",
        mib(rss_warm)
    )
    .unwrap();
    writeln!(
        out,
        "| RSS after {CYCLES} publish/unpublish cycles | {} (peak {}) |",
        mib(rss_after),
        mib(peak)
    )
    .unwrap();
    writeln!(
        out,
        "| mounts left after the cycles (must be 0) | {leaked} mounts, {left_dirs} target directories |"
    )
    .unwrap();
    assert_eq!(leaked, 0, "leaked mounts:\n{table}");
}

async fn reregistration(out: &mut String, mode: &str) {
    let node = CsiNode::new();
    let mut watcher = FakeWatcher::start(&node.registry_dir(), true);
    let _plugin = CsiPlugin::start(&node, &["--watch", mode]).await;
    watcher.registered(STARTUP).await;
    let socket = node.registration_socket();
    let (mut served, mut registered) = (Vec::new(), Vec::new());
    for _ in 0..DELETIONS {
        std::fs::remove_file(&socket).unwrap();
        let deleted = Instant::now();
        // Spin: the plugin re-serves within microseconds, below a timer's resolution.
        while !socket.exists() {
            std::thread::yield_now();
        }
        served.push(deleted.elapsed());
        watcher.registered(Duration::from_secs(5)).await;
        registered.push(deleted.elapsed());
    }
    served.sort();
    registered.sort();
    writeln!(
        out,
        "| deleted registration socket → new socket ; → registered by the fake plugin watcher, `--watch {mode}` (`--poll-interval 200ms`), {DELETIONS} deletions: p50 / max | {} / {} ; {} / {} |",
        short(percentile(&served, 0.5)),
        short(served.last().copied().unwrap_or_default()),
        ms(percentile(&registered, 0.5)),
        ms(registered.last().copied().unwrap_or_default())
    )
    .unwrap();
}

fn main() {
    run_bench(
        "csi",
        "cargo bench -p agent-mount-node --bench csi",
        if cfg!(debug_assertions) {
            " (dev build, as root: real mounts in a private mount namespace)"
        } else {
            " (release build, as root: real mounts in a private mount namespace)"
        },
        async |out: &mut String| {
            cycles(out).await;
            flat_cost(out, Layout::Plain).await;
            flat_cost(out, Layout::Installed).await;
            reregistration(out, "auto").await;
            reregistration(out, "poll").await;
        },
    );
}
