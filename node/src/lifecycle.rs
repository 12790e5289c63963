//! The lifecycle: serve, register, re-register after kubelet restarts, shut down.
//!
//! One loop decides everything from observed state, so inotify, polling and a closed
//! `ListAndWatch` stream can all fire for the same kubelet restart and still cause
//! exactly one registration: the plugin socket is compared by inode with the one we
//! bound, and `kubelet.sock` by inode with the one we last registered with.

use crate::api::device_plugin_server::DevicePluginServer;
use crate::api::registration_client::RegistrationClient;
use crate::api::{DevicePluginOptions, RegisterRequest, VERSION};
use crate::config::{Config, WatchMode};
use crate::health;
use crate::metrics::{self, Metrics};
use crate::service::{DevicePluginService, DeviceState, Devices, Shared, StreamClosed};
use notify::Watcher;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;

/// How long one `Register` call may take; the kubelet dials back inside it.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(3);
/// First retry delay after a failed `Register`.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest retry delay; a changed `kubelet.sock` still triggers an attempt at once.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a stopping server may take before it is aborted (open streams must not hang it).
const STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// The inode of a file, or `None` when it does not exist.
fn inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// One serving generation: a socket we bound and the gRPC server on it.
struct Generation {
    inode: u64,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Generation {
    /// Binds the plugin socket (replacing a stale file) and serves `DevicePlugin` and gRPC health on it.
    async fn start(config: &Config, shared: &Shared) -> std::io::Result<Self> {
        let path = config.socket_path();
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(&path)?;
        let inode = std::fs::metadata(&path)?.ino();
        let (stop, stopped) = watch::channel(false);
        let service = DevicePluginService::new(
            shared,
            &config.host_path,
            &config.container_path,
            stopped.clone(),
        );
        let (reporter, health_service) = tonic_health::server::health_reporter();
        reporter
            .set_serving::<DevicePluginServer<DevicePluginService>>()
            .await;
        let mut shutdown = stopped;
        let server = Server::builder()
            .add_service(health_service)
            .add_service(DevicePluginServer::new(service))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                let _ = shutdown.changed().await;
            });
        tracing::info!(socket = %path.display(), "serving the device plugin");
        Ok(Generation {
            inode,
            stop,
            task: tokio::spawn(server),
        })
    }

    /// Whether `path` is still the socket this generation bound.
    fn owns(&self, path: &Path) -> bool {
        inode(path) == Some(self.inode)
    }

    /// Stops serving: streams end, then the server, aborted after [`STOP_TIMEOUT`].
    async fn stop(mut self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(STOP_TIMEOUT, &mut self.task)
            .await
            .is_err()
        {
            tracing::warn!("the gRPC server did not stop in time; aborting it");
            self.task.abort();
        }
    }
}

/// Calls the kubelet's `Register` for this plugin.
async fn register(config: &Config) -> Result<(), String> {
    let request = RegisterRequest {
        version: VERSION.to_string(),
        endpoint: config.socket_name(),
        resource_name: config.resource_name.clone(),
        options: Some(DevicePluginOptions {
            pre_start_required: false,
            get_preferred_allocation_available: false,
        }),
    };
    let call = async {
        let channel = crate::uds::connect(&config.kubelet_socket())
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        RegistrationClient::new(channel)
            .register(request)
            .await
            .map(|_| ())
            .map_err(|status| format!("Register failed: {}", status.message()))
    };
    tokio::time::timeout(REGISTER_TIMEOUT, call)
        .await
        .map_err(|_| format!("Register did not answer within {REGISTER_TIMEOUT:?}"))?
}

/// The state the loop reconciles.
struct Lifecycle {
    config: Config,
    shared: Shared,
    generation: Option<Generation>,
    /// The `kubelet.sock` inode of the last successful registration.
    registered_kubelet: Option<u64>,
    /// The `kubelet.sock` inode of the last attempt, to retry at once when it changes.
    attempted_kubelet: Option<u64>,
    /// A registration is owed.
    pending: bool,
    /// Streams with this ID or higher were opened after the last registration began.
    first_current_stream: u64,
    backoff: Duration,
    next_attempt: Instant,
    /// The current re-registration was already counted as a kubelet restart.
    restart_counted: bool,
}

impl Lifecycle {
    fn note_restart(&mut self, reason: &str) {
        tracing::info!(
            reason,
            "kubelet restart detected; serving and registering again"
        );
        if !self.restart_counted {
            self.shared
                .metrics
                .kubelet_restarts
                .fetch_add(1, Ordering::Relaxed);
            self.restart_counted = true;
        }
    }

    /// Schedules the next attempt after a failure, doubling the delay up to [`BACKOFF_MAX`].
    fn back_off(&mut self) {
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// The kubelet closed a stream: if it belongs to the current registration, register again.
    fn stream_closed(&mut self, closed: StreamClosed) {
        if closed.id >= self.first_current_stream && !self.pending {
            tracing::info!(
                stream = closed.id,
                "the kubelet closed ListAndWatch; registering again"
            );
            self.pending = true;
            self.next_attempt = Instant::now();
        }
    }

    /// Brings the world in line: serve if our socket is gone, register if owed.
    async fn reconcile(&mut self) {
        let socket = self.config.socket_path();
        if self.generation.is_none() && Instant::now() < self.next_attempt {
            return; // serving failed last time: wait out the backoff
        }
        if !self.generation.as_ref().is_some_and(|g| g.owns(&socket)) {
            // The kubelet deletes every socket in the directory when it starts.
            if let Some(old) = self.generation.take() {
                self.note_restart("plugin socket removed");
                old.stop().await;
            }
            match Generation::start(&self.config, &self.shared).await {
                Ok(generation) => {
                    self.generation = Some(generation);
                    self.pending = true;
                }
                Err(e) => {
                    tracing::error!(socket = %socket.display(), error = %e, retry_in = ?self.backoff, "cannot serve the plugin socket");
                    self.back_off();
                    return;
                }
            }
        }
        let kubelet = inode(&self.config.kubelet_socket());
        if !self.pending && kubelet.is_some() && kubelet != self.registered_kubelet {
            self.note_restart("kubelet.sock recreated");
            self.pending = true;
            self.next_attempt = Instant::now();
        }
        let due = Instant::now() >= self.next_attempt || kubelet != self.attempted_kubelet;
        let Some(kubelet_inode) = kubelet.filter(|_| self.pending && due) else {
            return; // nothing owed, backing off, or kubelet.sock absent (a watch wakes us)
        };
        self.attempted_kubelet = kubelet;
        self.first_current_stream = self.shared.streams_opened.load(Ordering::SeqCst);
        match register(&self.config).await {
            Ok(()) => {
                tracing::info!(resource = %self.config.resource_name, "registered with the kubelet");
                self.shared
                    .metrics
                    .registrations
                    .fetch_add(1, Ordering::Relaxed);
                self.registered_kubelet = Some(kubelet_inode);
                self.pending = false;
                self.restart_counted = false;
                self.backoff = BACKOFF_START;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?self.backoff, "registration failed");
                self.back_off();
            }
        }
    }
}

/// Watches the plugin directory with inotify; every event wakes the loop, which then looks.
fn watch_directory(
    dir: &Path,
    wake: mpsc::Sender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
        // A full channel already holds a wake-up; the loop re-reads the whole state anyway.
        let _ = wake.try_send(());
    })?;
    watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// Runs the plugin until `shutdown` resolves, then sends an empty list, stops serving and removes the socket.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let metrics = Arc::new(Metrics::default());
    let initial = DeviceState {
        health: health::check(config.health_path()),
        stopping: false,
    };
    let (state, state_rx) = watch::channel(initial);
    let (closed_tx, mut closed) = mpsc::unbounded_channel();
    let shared = Shared {
        devices: Arc::new(Devices::new(config.device_prefix(), config.devices)),
        state: state_rx.clone(),
        closed: closed_tx,
        streams_opened: Arc::new(AtomicU64::new(0)),
        metrics: metrics.clone(),
    };
    tracing::info!(
        resource = %config.resource_name, devices = config.devices, host_path = %config.host_path.display(),
        container_path = %config.container_path.display(), health = initial.health.as_str(), "starting"
    );
    let mut background = vec![tokio::spawn(health::watch(
        config.health_path().to_path_buf(),
        config.poll_interval,
        state.clone(),
    ))];
    if let Some(addr) = config.metrics_addr {
        let (metrics, state_rx, devices) = (metrics.clone(), state_rx.clone(), config.devices);
        background.push(tokio::spawn(async move {
            if let Err(e) = metrics::serve(addr, metrics, state_rx, devices).await {
                tracing::error!(%addr, error = %e, "the metrics server stopped");
            }
        }));
    }
    let (wake_tx, mut wake) = mpsc::channel(1);
    let _watcher = match config.watch {
        WatchMode::Poll => None,
        WatchMode::Auto => match watch_directory(&config.plugin_dir, wake_tx) {
            Ok(watcher) => Some(watcher),
            Err(e) => {
                tracing::warn!(error = %e, "inotify unavailable; detecting kubelet restarts by polling only");
                None
            }
        },
    };
    let mut poll = tokio::time::interval(config.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lifecycle = Lifecycle {
        config,
        shared,
        generation: None,
        registered_kubelet: None,
        attempted_kubelet: None,
        pending: true,
        first_current_stream: 0,
        backoff: BACKOFF_START,
        next_attempt: Instant::now(),
        restart_counted: false,
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = lifecycle.reconcile() => {}
        }
        let retry_at = lifecycle.next_attempt;
        let waiting = lifecycle.pending;
        tokio::select! {
            _ = &mut shutdown => break,
            Some(stream) = closed.recv() => lifecycle.stream_closed(stream),
            Some(()) = wake.recv() => {}
            _ = poll.tick() => {}
            _ = tokio::time::sleep_until(retry_at), if waiting => {}
        }
    }
    tracing::info!("shutting down: sending an empty device list");
    state.send_modify(|s| s.stopping = true);
    if let Some(generation) = lifecycle.generation.take() {
        let socket = lifecycle.config.socket_path();
        let ours = generation.owns(&socket);
        generation.stop().await;
        if ours {
            let _ = std::fs::remove_file(&socket);
        }
    }
    for task in background {
        task.abort();
    }
    tracing::info!("stopped");
    Ok(())
}
