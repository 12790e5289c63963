//! What the device plugin's parts share: the devices, their health, the counters, and the
//! options the plugin announces. The gRPC handlers read it, the lifecycle and the health
//! watcher write it, and the metrics exporter renders it; none of them imports another.

use super::api::{Device, DevicePluginOptions, ListAndWatchResponse};
use crate::metrics::{self, Exporter};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, watch};

/// The options sent in `RegisterRequest` and answered by `GetDevicePluginOptions`: neither
/// `PreStartContainer` nor `GetPreferredAllocation` is needed, every device is alike.
pub const OPTIONS: DevicePluginOptions = DevicePluginOptions {
    pre_start_required: false,
    get_preferred_allocation_available: false,
};

/// Health of every device: they all stand for the same agent directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// The agent directory is a non-empty directory.
    Healthy,
    /// The agent directory is missing or empty.
    Unhealthy,
}

impl Health {
    /// The value of `Device.health`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Unhealthy => "Unhealthy",
        }
    }
}

/// What `ListAndWatch` streams: device health, or that the plugin is stopping (an empty list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceState {
    /// Current health of the devices.
    pub health: Health,
    /// Set on shutdown: streams send an empty list and end.
    pub stopping: bool,
}

/// The advertised devices: `<prefix>-0` … `<prefix>-<count-1>`, the same on every start, so
/// that the kubelet's checkpoint of allocated IDs stays valid across plugin restarts.
#[derive(Clone, Debug)]
pub struct Devices {
    prefix: String,
    count: u32,
}

impl Devices {
    /// `count` devices named `<prefix>-<n>`.
    pub fn new(prefix: &str, count: u32) -> Self {
        Devices {
            prefix: prefix.to_string(),
            count,
        }
    }

    /// How many devices there are.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Every device ID, in order.
    pub fn ids(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.count).map(|n| format!("{}-{n}", self.prefix))
    }

    /// The range of IDs, for messages: `generic-0 to generic-1023`.
    pub fn describe(&self) -> String {
        format!(
            "{p}-0 to {p}-{}",
            self.count.saturating_sub(1),
            p = self.prefix
        )
    }

    /// Whether `id` is one of ours (no leading zeros, in range).
    pub fn contains(&self, id: &str) -> bool {
        id.strip_prefix(&self.prefix)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|n| n.parse::<u32>().ok().filter(|v| v.to_string() == n))
            .is_some_and(|n| n < self.count)
    }

    /// The list `ListAndWatch` sends for a state.
    pub fn list(&self, state: DeviceState) -> ListAndWatchResponse {
        let devices = if state.stopping {
            Vec::new()
        } else {
            self.ids()
                .map(|id| Device {
                    id,
                    health: state.health.as_str().to_string(),
                    topology: None,
                })
                .collect()
        };
        ListAndWatchResponse { devices }
    }
}

/// Counters the plugin keeps.
#[derive(Debug, Default)]
pub struct Counters {
    /// Containers given the agent mount by `Allocate`.
    pub allocations: AtomicU64,
    /// Successful `Register` calls.
    pub registrations: AtomicU64,
    /// Kubelet restarts seen (our socket removed, or a new `kubelet.sock`).
    pub kubelet_restarts: AtomicU64,
    /// Health checks whose blocking task failed (the devices were reported `Unhealthy`).
    pub health_check_failures: AtomicU64,
}

/// Sent to the lifecycle when the kubelet closes a `ListAndWatch` stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamClosed {
    /// The stream's sequence number (see [`Shared::streams_opened`]).
    pub id: u64,
}

/// Everything the gRPC handlers share with the lifecycle.
#[derive(Clone)]
pub struct Shared {
    /// The advertised devices.
    pub devices: Arc<Devices>,
    /// Device state, published by the health watcher and the shutdown.
    pub state: watch::Receiver<DeviceState>,
    /// Where closed streams are reported.
    pub closed: mpsc::UnboundedSender<StreamClosed>,
    /// Count of `ListAndWatch` streams ever opened; also the next stream's ID.
    pub streams_opened: Arc<AtomicU64>,
    /// Counters.
    pub counters: Arc<Counters>,
}

impl Exporter for Shared {
    fn render(&self) -> String {
        let state = *self.state.borrow();
        let devices = self.devices.count();
        let (healthy, unhealthy) = match (state.stopping, state.health) {
            (true, _) => (0, 0),
            (false, Health::Healthy) => (devices, 0),
            (false, Health::Unhealthy) => (0, devices),
        };
        let mut text = String::new();
        let name = "agent_mount_devices";
        metrics::header(
            &mut text,
            name,
            "gauge",
            "Devices advertised to the kubelet, by health.",
        );
        metrics::sample(&mut text, name, "health=\"Healthy\"", healthy.into());
        metrics::sample(&mut text, name, "health=\"Unhealthy\"", unhealthy.into());
        let counters = &self.counters;
        for (name, help, value) in [
            (
                "agent_mount_allocations_total",
                "Containers given the agent mount by Allocate.",
                &counters.allocations,
            ),
            (
                "agent_mount_registrations_total",
                "Successful registrations with the kubelet.",
                &counters.registrations,
            ),
            (
                "agent_mount_kubelet_restarts_total",
                "Kubelet restarts seen.",
                &counters.kubelet_restarts,
            ),
            (
                "agent_mount_health_check_failures_total",
                "Health checks that failed to run (the devices were reported Unhealthy).",
                &counters.health_check_failures,
            ),
        ] {
            metrics::header(&mut text, name, "counter", help);
            metrics::sample(&mut text, name, "", value.load(Ordering::Relaxed));
        }
        text
    }

    fn healthy(&self) -> bool {
        !self.state.borrow().stopping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_stable_and_checked() {
        let devices = Devices::new("generic", 3);
        assert_eq!(
            devices.ids().collect::<Vec<_>>(),
            ["generic-0", "generic-1", "generic-2"]
        );
        assert_eq!(devices.describe(), "generic-0 to generic-2");
        assert!(devices.contains("generic-2"));
        for bad in [
            "generic-3",
            "generic-01",
            "generic",
            "other-1",
            "generic--1",
            "",
        ] {
            assert!(!devices.contains(bad), "{bad}");
        }
    }

    #[test]
    fn lists_follow_the_state() {
        let devices = Devices::new("generic", 2);
        let list = |health, stopping| {
            devices
                .list(DeviceState { health, stopping })
                .devices
                .into_iter()
                .map(|d| (d.id, d.health))
                .collect::<Vec<_>>()
        };
        let pair = |id: &str, health: &str| (id.to_string(), health.to_string());
        assert_eq!(
            list(Health::Healthy, false),
            [pair("generic-0", "Healthy"), pair("generic-1", "Healthy")]
        );
        assert_eq!(
            list(Health::Unhealthy, false),
            [
                pair("generic-0", "Unhealthy"),
                pair("generic-1", "Unhealthy")
            ]
        );
        assert_eq!(list(Health::Healthy, true), []);
    }

    #[test]
    fn metrics_render_the_state_and_counters() {
        let (state, state_rx) = watch::channel(DeviceState {
            health: Health::Unhealthy,
            stopping: false,
        });
        let shared = Shared {
            devices: Arc::new(Devices::new("generic", 4)),
            state: state_rx,
            closed: mpsc::unbounded_channel().0,
            streams_opened: Arc::default(),
            counters: Arc::default(),
        };
        shared.counters.allocations.store(7, Ordering::Relaxed);
        let text = shared.render();
        for line in [
            "# TYPE agent_mount_devices gauge",
            "agent_mount_devices{health=\"Healthy\"} 0",
            "agent_mount_devices{health=\"Unhealthy\"} 4",
            "# TYPE agent_mount_allocations_total counter",
            "agent_mount_allocations_total 7",
            "agent_mount_registrations_total 0",
            "agent_mount_health_check_failures_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(shared.healthy());
        state.send_modify(|s| s.stopping = true);
        assert!(!shared.healthy());
        assert!(
            shared
                .render()
                .lines()
                .any(|l| l == "agent_mount_devices{health=\"Unhealthy\"} 0")
        );
    }
}
