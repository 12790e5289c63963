//! The `DevicePlugin` gRPC service: it answers the kubelet from the shared state and never
//! decides lifecycle matters itself; it only reports a `ListAndWatch` stream the kubelet closed.

use super::api::device_plugin_server::DevicePlugin;
use super::api::{
    AllocateRequest, AllocateResponse, ContainerAllocateResponse, DevicePluginOptions, Empty,
    ListAndWatchResponse, Mount, PreStartContainerRequest, PreStartContainerResponse,
    PreferredAllocationRequest, PreferredAllocationResponse,
};
use super::state::{OPTIONS, Shared, StreamClosed};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// The gRPC handlers of one serving generation.
pub struct DevicePluginService {
    shared: Shared,
    mount: Mount,
    stop: watch::Receiver<bool>,
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
            shared: shared.clone(),
            mount: Mount {
                container_path: container_path.display().to_string(),
                host_path: host_path.display().to_string(),
                read_only: true,
            },
            stop,
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
        Ok(Response::new(OPTIONS))
    }

    type ListAndWatchStream = ListStream;

    async fn list_and_watch(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let id = self.shared.streams_opened.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let devices = self.shared.devices.clone();
        let mut state = self.shared.state.clone();
        let mut stop = self.stop.clone();
        let closed = self.shared.closed.clone();
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
            .find(|id| !self.shared.devices.contains(id));
        if let Some(id) = unknown {
            return Err(Status::invalid_argument(format!(
                "unknown device ID {id:?}: this plugin advertises {}",
                self.shared.devices.describe()
            )));
        }
        let container_responses = requests
            .iter()
            .map(|_| ContainerAllocateResponse {
                mounts: vec![self.mount.clone()],
                ..Default::default()
            })
            .collect::<Vec<_>>();
        self.shared
            .counters
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
