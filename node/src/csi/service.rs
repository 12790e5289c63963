//! The CSI Identity and Node gRPC services: they check the request ([`super::request`]),
//! hand it to [`super::volumes`] off the async thread, and count the outcome.

use super::api::csi::identity_server::Identity;
use super::api::csi::node_server::Node;
use super::api::csi::*;
use super::metrics::{CsiMetrics, Outcome, Outcomes};
use super::mounts::Mounts;
use super::request;
use super::volumes::{Published, Unpublished, VolumeError, Volumes};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tonic::{Request, Response, Status};

/// The Identity service: who we are, and ready while the agents are installed.
pub struct IdentityService {
    driver: String,
    agent_dir: PathBuf,
    metrics: Arc<CsiMetrics>,
}

impl IdentityService {
    /// Identity for `driver`, ready while `agent_dir` is a non-empty directory; a failed
    /// probe task is counted in `metrics`.
    pub fn new(driver: &str, agent_dir: &std::path::Path, metrics: Arc<CsiMetrics>) -> Self {
        IdentityService {
            driver: driver.to_string(),
            agent_dir: agent_dir.to_path_buf(),
            metrics,
        }
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: self.driver.clone(),
            vendor_version: env!("CARGO_PKG_VERSION").to_string(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        // No controller service: inline ephemeral volumes need none.
        Ok(Response::new(GetPluginCapabilitiesResponse::default()))
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        let agent_dir = self.agent_dir.clone();
        let ready =
            match tokio::task::spawn_blocking(move || crate::agents::present(&agent_dir)).await {
                Ok(ready) => ready,
                Err(e) => {
                    // Not ready, but not silently: a panicked or cancelled task is a bug to see.
                    tracing::error!(error = %e, "the probe's check of the agent directory failed");
                    self.metrics.probe_failures.fetch_add(1, Ordering::Relaxed);
                    false
                }
            };
        Ok(Response::new(ProbeResponse { ready: Some(ready) }))
    }
}

/// The Node service: publish and unpublish; nothing staged, no stats, no expansion.
pub struct NodeService<M> {
    node_id: String,
    volumes: Arc<Volumes<M>>,
    metrics: Arc<CsiMetrics>,
}

impl<M: Mounts> NodeService<M> {
    /// The Node service of node `node_id`, confined to the pod directory of `volumes`.
    pub fn new(node_id: &str, volumes: Arc<Volumes<M>>, metrics: Arc<CsiMetrics>) -> Self {
        NodeService {
            node_id: node_id.to_string(),
            volumes,
            metrics,
        }
    }
}

/// Runs a mount operation on the blocking pool: mount calls can stall on a busy node.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, VolumeError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(Status::from),
        Err(e) => Err(Status::internal(format!("the mount task failed: {e}"))),
    }
}

/// Counts a call's outcome in `counters` and passes its result on.
fn count<T>(
    counters: &Outcomes,
    result: Result<T, Status>,
    unchanged: impl Fn(&T) -> bool,
) -> Result<T, Status> {
    let outcome = match &result {
        Ok(done) if unchanged(done) => Outcome::Unchanged,
        Ok(_) => Outcome::Done,
        Err(status) => Outcome::of_code(status.code()),
    };
    counters.add(outcome);
    result
}

#[tonic::async_trait]
impl<M: Mounts> Node for NodeService<M> {
    async fn node_stage_volume(
        &self,
        _: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "NodeStageVolume: this driver has no STAGE_UNSTAGE_VOLUME capability",
        ))
    }

    async fn node_unstage_volume(
        &self,
        _: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "NodeUnstageVolume: this driver has no STAGE_UNSTAGE_VOLUME capability",
        ))
    }

    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let request = request.into_inner();
        let result = match request::check_publish(self.volumes.pods_dirs(), &request) {
            Err(refusal) => Err(Status::from(refusal)),
            Ok(target) => {
                let volumes = self.volumes.clone();
                blocking(move || volumes.publish(&target)).await
            }
        };
        match &result {
            Ok(outcome) if self.volumes.legacy() => {
                tracing::warn!(volume = %request.volume_id, target = %request.target_path, ?outcome, "published with --allow-legacy-mount: bind then remount, read-only in this plugin's copy only")
            }
            Ok(outcome) => {
                tracing::info!(volume = %request.volume_id, target = %request.target_path, ?outcome, "published")
            }
            Err(status) => {
                tracing::warn!(volume = %request.volume_id, target = %request.target_path, code = ?status.code(), error = status.message(), "publish refused")
            }
        }
        count(&self.metrics.publishes, result, |p| {
            *p == Published::AlreadyMounted
        })
        .map(|_| Response::new(NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let request = request.into_inner();
        let result = match request::check_unpublish(self.volumes.pods_dirs(), &request) {
            Err(refusal) => Err(Status::from(refusal)),
            Ok(target) => {
                let volumes = self.volumes.clone();
                blocking(move || volumes.unpublish(&target)).await
            }
        };
        match &result {
            Ok(outcome) => {
                tracing::info!(volume = %request.volume_id, target = %request.target_path, ?outcome, "unpublished")
            }
            Err(status) => {
                tracing::warn!(volume = %request.volume_id, target = %request.target_path, code = ?status.code(), error = status.message(), "unpublish refused")
            }
        }
        count(&self.metrics.unpublishes, result, |u| {
            *u == Unpublished::NotMounted
        })
        .map(|_| Response::new(NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(
        &self,
        _: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        Err(Status::unimplemented(
            "NodeGetVolumeStats: this driver has no GET_VOLUME_STATS capability",
        ))
    }

    async fn node_expand_volume(
        &self,
        _: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "NodeExpandVolume: this driver has no EXPAND_VOLUME capability",
        ))
    }

    async fn node_get_capabilities(
        &self,
        _: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        // Empty: no staging, stats or expansion, so the kubelet calls publish directly.
        Ok(Response::new(NodeGetCapabilitiesResponse::default()))
    }

    async fn node_get_info(
        &self,
        _: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.node_id.clone(),
            max_volumes_per_node: 0,
            accessible_topology: None,
        }))
    }
}
