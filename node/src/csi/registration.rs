//! The kubelet plugin-watcher `Registration` service, served on `<driver>-reg.sock` in the
//! kubelet's registry directory: the kubelet dials it, calls `GetInfo`, then reports the
//! result with `NotifyRegistrationStatus`. No node-driver-registrar sidecar is needed.

use super::api::registration::registration_server::Registration;
use super::api::registration::{
    InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse,
};
use super::api::{PLUGIN_TYPE, SUPPORTED_VERSIONS};
use super::metrics::CsiMetrics;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tonic::{Request, Response, Status};

/// Answers the kubelet's plugin watcher for one driver.
pub struct RegistrationService {
    info: PluginInfo,
    metrics: Arc<CsiMetrics>,
}

impl RegistrationService {
    /// Registration of `driver`, whose CSI socket is `endpoint` (an absolute path the kubelet dials).
    pub fn new(driver: &str, endpoint: &Path, metrics: Arc<CsiMetrics>) -> Self {
        RegistrationService {
            info: PluginInfo {
                r#type: PLUGIN_TYPE.to_string(),
                name: driver.to_string(),
                endpoint: endpoint.display().to_string(),
                supported_versions: SUPPORTED_VERSIONS.map(String::from).to_vec(),
            },
            metrics,
        }
    }
}

#[tonic::async_trait]
impl Registration for RegistrationService {
    async fn get_info(&self, _: Request<InfoRequest>) -> Result<Response<PluginInfo>, Status> {
        Ok(Response::new(self.info.clone()))
    }

    async fn notify_registration_status(
        &self,
        request: Request<RegistrationStatus>,
    ) -> Result<Response<RegistrationStatusResponse>, Status> {
        let status = request.into_inner();
        if status.plugin_registered {
            tracing::info!(driver = %self.info.name, "the kubelet registered the CSI driver");
            self.metrics
                .registrations_accepted
                .fetch_add(1, Ordering::Relaxed);
        } else {
            tracing::error!(driver = %self.info.name, error = %status.error, "the kubelet refused the CSI driver");
            self.metrics
                .registrations_refused
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}
