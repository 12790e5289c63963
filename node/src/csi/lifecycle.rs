//! The CSI plugin's shell: it keeps two sockets served, each with a [`Keeper`] (the pure
//! decision shared with the device plugin), and does what the keepers say.
//!
//! The CSI socket is served first, then the registration socket, because the kubelet
//! dials the advertised endpoint right after `GetInfo`. A removed registration socket is
//! served again, so the kubelet's plugin watcher registers the plugin anew; a removed CSI
//! socket is served again at the same path, and needs no new registration because the
//! kubelet dials the endpoint for every call. On shutdown both sockets are removed and
//! published mounts stay, so running pods keep their agents.

use super::api::csi::identity_server::IdentityServer;
use super::api::csi::node_server::NodeServer;
use super::api::registration::registration_server::RegistrationServer;
use super::config::CsiConfig;
use super::metrics::CsiMetrics;
use super::mounts::{Kernel, Mounts};
use super::registration::RegistrationService;
use super::service::{IdentityService, NodeService};
use super::volumes::{StartError, Volumes};
use crate::keeper::{Backoff, Keeper, SocketAction, SocketSeen};
use crate::metrics::{self, Exporter};
use crate::serve::Served;
use crate::watch::{DirWatch, file_id, sleep_until};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tonic::service::Routes;

/// First retry delay after a socket could not be served.
const SERVE_BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest retry delay; a directory event still triggers an attempt at once.
const SERVE_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// One kept socket: where, what it serves, the keeper's state, and the server.
struct Socket {
    name: &'static str,
    /// The flags that place it, named when it cannot be served.
    flags: &'static str,
    path: PathBuf,
    routes: Routes,
    keeper: Keeper,
    served: Option<Served>,
}

impl Socket {
    fn new(name: &'static str, flags: &'static str, path: PathBuf, routes: Routes) -> Self {
        Socket {
            name,
            flags,
            path,
            routes,
            keeper: Keeper::new(Backoff::new(SERVE_BACKOFF_START, SERVE_BACKOFF_MAX)),
            served: None,
        }
    }

    /// Feeds `seen` to the keeper and does what it says; true while the socket is served.
    fn feed(&mut self, seen: SocketSeen) -> bool {
        let action = self.keeper.decide(seen, Instant::now().into_std());
        if action != SocketAction::Keep {
            if let Some(old) = self.served.take() {
                old.retire();
            }
            let outcome = match Served::start(&self.path, self.flags, |_| self.routes.clone()) {
                Ok(served) => {
                    let again = action == SocketAction::ServeAgain;
                    tracing::info!(socket = %self.path.display(), again, "serving the {}", self.name);
                    let file = served.file();
                    self.served = Some(served);
                    SocketSeen::Served(file)
                }
                Err(e) => {
                    tracing::error!(error = %e, "serving failed; retrying with backoff");
                    SocketSeen::ServeFailed
                }
            };
            self.keeper.decide(outcome, Instant::now().into_std());
        }
        self.keeper.serving().is_some()
    }

    /// Looks at the socket's path (after a directory event or at a poll).
    fn look(&mut self) -> bool {
        self.feed(SocketSeen::At(file_id(&self.path)))
    }

    /// Stops serving and removes the socket if it is still ours.
    async fn stop(&mut self) {
        if let Some(served) = self.served.take() {
            served.stop_and_remove().await;
        }
    }
}

/// What `/metrics` and `/healthz` show.
struct CsiExporter<M> {
    metrics: Arc<CsiMetrics>,
    volumes: Arc<Volumes<M>>,
    stopping: Arc<AtomicBool>,
}

impl<M: Mounts> Exporter for CsiExporter<M> {
    fn render(&self) -> String {
        self.metrics.render(self.volumes.published().ok())
    }

    fn healthy(&self) -> bool {
        !self.stopping.load(Ordering::Relaxed)
    }
}

/// Runs the CSI node plugin until `shutdown` resolves, then stops serving and removes
/// both sockets, leaving published mounts in place; refuses to start on a kernel or a
/// kubelet directory it cannot keep its guarantees on.
pub async fn run(
    config: CsiConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    let metrics = Arc::new(CsiMetrics::default());
    let kernel = Kernel::detect(config.allow_legacy_mount)?;
    let volumes = Arc::new(Volumes::open(
        kernel,
        &config.agent_dir,
        &config.kubelet_dir,
    )?);
    let csi_socket = config.csi_socket();
    tracing::info!(
        driver = %config.driver_name, node = %config.node_name, agent_dir = %config.agent_dir.display(),
        csi_socket = %csi_socket.display(), registration = %config.registration_socket().display(), "starting"
    );
    // The CSI socket's directory is ours (<kubelet-dir>/plugins/<driver>); the registry is the kubelet's.
    let csi_dir = csi_socket.parent().unwrap_or(Path::new("/")).to_path_buf();
    if let Err(e) = std::fs::create_dir_all(&csi_dir) {
        tracing::error!(dir = %csi_dir.display(), error = %e, "cannot create the CSI socket's directory");
    }
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<NodeServer<NodeService<Kernel>>>()
        .await;
    let node = NodeService::new(&config.node_name, volumes.clone(), metrics.clone());
    let csi_routes = Routes::new(health_service)
        .add_service(IdentityServer::new(IdentityService::new(
            &config.driver_name,
            &config.agent_dir,
            metrics.clone(),
        )))
        .add_service(NodeServer::new(node));
    let registration = RegistrationService::new(&config.driver_name, &csi_socket, metrics.clone());
    let registration_routes = Routes::new(RegistrationServer::new(registration));
    let mut csi = Socket::new(
        "CSI socket",
        "--csi-socket, --kubelet-dir, --driver-name",
        csi_socket,
        csi_routes,
    );
    let mut registry = Socket::new(
        "registration socket",
        "--registration-dir, --kubelet-dir",
        config.registration_socket(),
        registration_routes,
    );
    let stopping = Arc::new(AtomicBool::new(false));
    let mut background = Vec::new();
    if let Some(addr) = config.common.metrics_addr {
        let exporter = Arc::new(CsiExporter {
            metrics,
            volumes,
            stopping: stopping.clone(),
        });
        background.push(metrics::spawn(addr, exporter));
    }
    let registration_dir = config.registration_dir();
    let mut directories = DirWatch::new(
        &[&csi_dir, &registration_dir],
        config.common.watch,
        config.common.poll_interval,
    );
    tokio::pin!(shutdown);
    loop {
        let wake_at = [csi.keeper.wake_at(), registry.keeper.wake_at()]
            .into_iter()
            .flatten()
            .min()
            .map(Instant::from_std);
        let seen = tokio::select! {
            _ = &mut shutdown => break,
            _ = directories.changed() => None,
            _ = sleep_until(wake_at) => Some(SocketSeen::Timer),
        };
        let csi_served = match seen {
            Some(timer) => csi.feed(timer),
            None => csi.look(),
        };
        // Registration only once the endpoint it advertises answers.
        if csi_served {
            match seen {
                Some(timer) => registry.feed(timer),
                None => registry.look(),
            };
        }
    }
    tracing::info!("shutting down: removing both sockets, leaving published volumes mounted");
    stopping.store(true, Ordering::Relaxed);
    registry.stop().await;
    csi.stop().await;
    for task in background {
        task.abort();
    }
    tracing::info!("stopped");
    Ok(())
}
