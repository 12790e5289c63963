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
use crate::decide::{Backoff, FileId, Keeper, SocketAction, SocketSeen};
use crate::metrics::{self, Exporter};
use crate::watch::{DirWatch, file_id, sleep_until};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::service::Routes;
use tonic::transport::Server;

/// First retry delay after a socket could not be served.
const SERVE_BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest retry delay; a directory event still triggers an attempt at once.
const SERVE_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a stopping server may take before it is aborted (open connections must not hang it).
const STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a socket could not be served; logged, then retried with backoff.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve {}: {source}; check that the directory exists and is writable (--csi-socket, --registration-dir)", socket.display())]
pub struct ServeError {
    /// The socket.
    socket: PathBuf,
    /// What the OS said.
    source: std::io::Error,
}

/// One socket being served: its gRPC server task and the switch that stops it.
struct Served {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Served {
    /// Binds `socket` (replacing a stale file) and serves `routes` on it; returns the file bound.
    fn start(socket: &Path, routes: Routes) -> Result<(Self, FileId), ServeError> {
        let serve_error = |source| ServeError {
            socket: socket.to_path_buf(),
            source,
        };
        let (listener, file) = crate::uds::bind(socket).map_err(serve_error)?;
        let (stop, mut stopped) = watch::channel(false);
        let server = Server::builder()
            .add_routes(routes)
            .serve_with_incoming_shutdown(crate::uds::incoming(listener), async move {
                let _ = stopped.changed().await;
            });
        Ok((
            Served {
                stop,
                task: tokio::spawn(server),
            },
            file,
        ))
    }

    /// Stops serving, aborting after [`STOP_TIMEOUT`].
    async fn stop(mut self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(STOP_TIMEOUT, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// One kept socket: where, what it serves, the keeper's state, and the server.
struct Socket {
    name: &'static str,
    path: PathBuf,
    routes: Routes,
    keeper: Keeper,
    served: Option<Served>,
}

impl Socket {
    fn new(name: &'static str, path: PathBuf, routes: Routes) -> Self {
        Socket {
            name,
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
                // Its file is gone; stopping it must not delay the new one.
                tokio::spawn(old.stop());
            }
            let outcome = match Served::start(&self.path, self.routes.clone()) {
                Ok((served, file)) => {
                    let again = action == SocketAction::ServeAgain;
                    tracing::info!(socket = %self.path.display(), again, "serving the {}", self.name);
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
        let ours = self.keeper.serving().is_some() && file_id(&self.path) == self.keeper.serving();
        if let Some(served) = self.served.take() {
            served.stop().await;
        }
        if ours {
            let _ = std::fs::remove_file(&self.path);
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
    let mut csi = Socket::new("CSI socket", csi_socket, csi_routes);
    let mut registry = Socket::new(
        "registration socket",
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
        background.push(tokio::spawn(async move {
            if let Err(e) = metrics::serve(addr, exporter).await {
                tracing::error!(%addr, error = %e, "cannot serve metrics; fix --metrics-addr");
            }
        }));
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
