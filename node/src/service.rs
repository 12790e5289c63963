//! The `DevicePlugin` gRPC service: it answers the kubelet from shared state and never
//! decides lifecycle matters itself; it only reports a `ListAndWatch` stream the kubelet closed.

use crate::api::device_plugin_server::DevicePlugin;
use crate::api::{
    AllocateRequest, AllocateResponse, ContainerAllocateResponse, Device, DevicePluginOptions,
    Empty, ListAndWatchResponse, Mount, PreStartContainerRequest, PreStartContainerResponse,
    PreferredAllocationRequest, PreferredAllocationResponse,
};
use crate::metrics::Metrics;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

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

    /// Every device ID, in order.
    pub fn ids(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.count).map(|n| format!("{}-{n}", self.prefix))
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

/// Sent to the lifecycle when the kubelet closes a `ListAndWatch` stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamClosed {
    /// The stream's sequence number (see [`DevicePluginService::streams_opened`]).
    pub id: u64,
}

/// The gRPC handlers of one serving generation.
pub struct DevicePluginService {
    devices: Arc<Devices>,
    mount: Mount,
    state: watch::Receiver<DeviceState>,
    stop: watch::Receiver<bool>,
    closed: mpsc::UnboundedSender<StreamClosed>,
    streams_opened: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

/// Everything a [`DevicePluginService`] shares with the lifecycle.
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
    pub metrics: Arc<Metrics>,
}

impl DevicePluginService {
    /// A service mounting `host_path` at `container_path`; `stop` ends this generation's streams quietly.
    pub fn new(
        shared: &Shared,
        host_path: &Path,
        container_path: &Path,
        stop: watch::Receiver<bool>,
    ) -> Self {
        DevicePluginService {
            devices: shared.devices.clone(),
            mount: Mount {
                container_path: container_path.display().to_string(),
                host_path: host_path.display().to_string(),
                read_only: true,
            },
            state: shared.state.clone(),
            stop,
            closed: shared.closed.clone(),
            streams_opened: shared.streams_opened.clone(),
            metrics: shared.metrics.clone(),
        }
    }
}

/// Messages queued per stream before backpressure; updates are whole lists, so few are needed.
const STREAM_BUFFER: usize = 4;

type ListStream = Pin<Box<dyn Stream<Item = Result<ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for DevicePluginService {
    async fn get_device_plugin_options(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(DevicePluginOptions {
            pre_start_required: false,
            get_preferred_allocation_available: false,
        }))
    }

    type ListAndWatchStream = ListStream;

    async fn list_and_watch(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let id = self.streams_opened.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let devices = self.devices.clone();
        let mut state = self.state.clone();
        let mut stop = self.stop.clone();
        let closed = self.closed.clone();
        tokio::spawn(async move {
            loop {
                let current = *state.borrow_and_update();
                if tx.send(Ok(devices.list(current))).await.is_err() {
                    let _ = closed.send(StreamClosed { id });
                    return;
                }
                if current.stopping {
                    return; // dropping tx ends the stream after the empty list
                }
                tokio::select! {
                    biased;
                    // State first: on shutdown `stopping` is published before the server
                    // stops, and the kubelet must still get the empty list.
                    changed = state.changed() => if changed.is_err() { return },
                    // This generation was stopped by the lifecycle: end quietly.
                    _ = stop.changed() => return,
                    _ = tx.closed() => {
                        let _ = closed.send(StreamClosed { id });
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_preferred_allocation(
        &self,
        _: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        Ok(Response::new(PreferredAllocationResponse::default()))
    }

    async fn allocate(
        &self,
        request: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        let requests = request.into_inner().container_requests;
        if requests.is_empty() {
            return Err(Status::invalid_argument(
                "Allocate request has no container requests",
            ));
        }
        let unknown = requests
            .iter()
            .flat_map(|r| &r.devices_ids)
            .find(|id| !self.devices.contains(id));
        if let Some(id) = unknown {
            return Err(Status::invalid_argument(format!(
                "unknown device ID {id:?}: this plugin advertises {}-0 to {}-{}",
                self.devices.prefix,
                self.devices.prefix,
                self.devices.count.saturating_sub(1)
            )));
        }
        let container_responses = requests
            .iter()
            .map(|_| ContainerAllocateResponse {
                mounts: vec![self.mount.clone()],
                ..Default::default()
            })
            .collect::<Vec<_>>();
        self.metrics
            .allocations
            .fetch_add(container_responses.len() as u64, Ordering::Relaxed);
        Ok(Response::new(AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        Ok(Response::new(PreStartContainerResponse {}))
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
        let stopping = DeviceState {
            health: Health::Healthy,
            stopping: true,
        };
        assert!(devices.list(stopping).devices.is_empty());
        let unhealthy = DeviceState {
            health: Health::Unhealthy,
            stopping: false,
        };
        assert!(
            devices
                .list(unhealthy)
                .devices
                .iter()
                .all(|d| d.health == "Unhealthy")
        );
    }
}
