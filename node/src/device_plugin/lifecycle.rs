//! The device plugin's shell: it looks (sockets, streams, timers), asks [`Plan`] what to do,
//! and does it (serve, register, count). Every decision is in [`super::decide`].

use super::decide::{Action, Plan, Seen, Why};
use super::health;
use super::service::DevicePluginService;
use super::state::{DeviceState, Devices, OPTIONS, Shared};
use crate::api::device_plugin_server::DevicePluginServer;
use crate::api::registration_client::RegistrationClient;
use crate::api::{RegisterRequest, VERSION};
use crate::config::DevicePluginConfig;
use crate::decide::FileId;
use crate::metrics;
use crate::watch::{DirWatch, file_id, sleep_until};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::Server;

/// How long one `Register` call may take; the kubelet dials back inside it.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a stopping server may take before it is aborted (open streams must not hang it).
const STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// Why serving or registering failed; logged, then retried as [`Plan`] says.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The plugin socket could not be bound.
    #[error("cannot serve {}: {source}; check that the directory exists and is writable (--plugin-dir)", socket.display())]
    Serve {
        /// The plugin socket.
        socket: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// `kubelet.sock` did not accept a connection.
    #[error("cannot connect to {}: {source}; is the kubelet running, and --plugin-dir its device plugin directory?", socket.display())]
    Connect {
        /// The kubelet's socket.
        socket: PathBuf,
        /// What the transport said.
        source: tonic::transport::Error,
    },
    /// The kubelet refused `Register`.
    #[error("the kubelet refused Register: {}; check --resource-name and the kubelet's log", status.message())]
    Refused {
        /// The kubelet's answer.
        status: tonic::Status,
    },
    /// `Register` did not answer in time.
    #[error("Register did not answer within {after:?}; the kubelet may be starting or overloaded")]
    Timeout {
        /// The time allowed.
        after: Duration,
    },
}

/// One serving generation: a socket we bound and the gRPC server on it.
struct Generation {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Generation {
    /// Binds the plugin socket (replacing a stale file) and serves `DevicePlugin` and gRPC health on it.
    async fn start(
        config: &DevicePluginConfig,
        shared: &Shared,
    ) -> Result<(Self, FileId), LifecycleError> {
        let socket = config.socket_path();
        let serve_error = |source| LifecycleError::Serve {
            socket: socket.clone(),
            source,
        };
        let (listener, file) = crate::uds::bind(&socket).map_err(serve_error)?;
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
            .serve_with_incoming_shutdown(crate::uds::incoming(listener), async move {
                let _ = shutdown.changed().await;
            });
        tracing::info!(socket = %socket.display(), "serving the device plugin");
        let task = tokio::spawn(server);
        Ok((Generation { stop, task }, file))
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
pub async fn register(config: &DevicePluginConfig) -> Result<(), LifecycleError> {
    let socket = config.kubelet_socket();
    let request = RegisterRequest {
        version: VERSION.to_string(),
        endpoint: config.socket_name(),
        resource_name: config.resource_name.clone(),
        options: Some(OPTIONS),
    };
    let call = async {
        let channel =
            crate::uds::connect(&socket)
                .await
                .map_err(|source| LifecycleError::Connect {
                    socket: socket.clone(),
                    source,
                })?;
        RegistrationClient::new(channel)
            .register(request)
            .await
            .map(|_| ())
            .map_err(|status| LifecycleError::Refused { status })
    };
    tokio::time::timeout(REGISTER_TIMEOUT, call)
        .await
        .map_err(|_| LifecycleError::Timeout {
            after: REGISTER_TIMEOUT,
        })?
}

/// The I/O around [`Plan`].
struct Shell {
    config: DevicePluginConfig,
    shared: Shared,
    plan: Plan,
    generation: Option<Generation>,
}

impl Shell {
    /// Feeds `seen` to the plan and does what it says, in order, feeding each outcome back.
    async fn feed(&mut self, seen: Seen) {
        let mut pending = VecDeque::from([seen]);
        while let Some(seen) = pending.pop_front() {
            for action in self.plan.decide(seen, Instant::now().into_std()) {
                if let Some(outcome) = self.act(action).await {
                    pending.push_back(outcome);
                }
            }
        }
    }

    /// Looks at both sockets (after a directory event or at a poll).
    async fn look(&mut self) {
        self.feed(Seen::PluginSocket(file_id(&self.config.socket_path())))
            .await;
        self.feed(Seen::KubeletSocket(file_id(&self.config.kubelet_socket())))
            .await;
    }

    async fn act(&mut self, action: Action) -> Option<Seen> {
        match action {
            Action::Serve | Action::ServeAgain => {
                if let Some(old) = self.generation.take() {
                    // The old socket file is gone; stopping its server must not delay
                    // the new one (an open connection can hold it up to STOP_TIMEOUT).
                    tokio::spawn(old.stop());
                }
                match Generation::start(&self.config, &self.shared).await {
                    Ok((generation, file)) => {
                        self.generation = Some(generation);
                        Some(Seen::Served(file))
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "serving failed; retrying with backoff");
                        Some(Seen::ServeFailed)
                    }
                }
            }
            Action::Register(why) => {
                tracing::info!(reason = why_text(why), "registering with the kubelet");
                // Streams the kubelet opens from here on belong to this registration.
                let first_stream = self.shared.streams_opened.load(Ordering::SeqCst);
                let kubelet = file_id(&self.config.kubelet_socket());
                match register(&self.config).await {
                    Ok(()) => {
                        tracing::info!(resource = %self.config.resource_name, "registered with the kubelet");
                        self.shared
                            .counters
                            .registrations
                            .fetch_add(1, Ordering::Relaxed);
                        Some(Seen::Registered {
                            kubelet,
                            first_stream,
                        })
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "registration failed; retrying with backoff");
                        Some(Seen::RegisterFailed { kubelet })
                    }
                }
            }
            Action::CountRestart => {
                tracing::info!("kubelet restart detected; serving and registering again");
                self.shared
                    .counters
                    .kubelet_restarts
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Stops serving and removes the socket if it is still ours.
    async fn stop(&mut self) {
        if let Some(generation) = self.generation.take() {
            let socket = self.config.socket_path();
            let ours = self.plan.serving().is_some() && file_id(&socket) == self.plan.serving();
            generation.stop().await;
            if ours {
                let _ = std::fs::remove_file(&socket);
            }
        }
    }
}

fn why_text(why: Why) -> &'static str {
    match why {
        Why::Served => "the plugin socket is served anew",
        Why::NewKubelet => "a new kubelet.sock",
        Why::StreamClosed => "the kubelet closed ListAndWatch",
        Why::Retry => "retrying",
    }
}

/// Runs the device plugin until `shutdown` resolves, then sends an empty list, stops
/// serving and removes the socket.
pub async fn run(config: DevicePluginConfig, shutdown: impl std::future::Future<Output = ()>) {
    let initial = DeviceState {
        health: health::check(config.health_path()),
        stopping: false,
    };
    let (state, state_rx) = watch::channel(initial);
    let (closed_tx, mut closed) = mpsc::unbounded_channel();
    let shared = Shared {
        devices: Arc::new(Devices::new(config.device_prefix(), config.devices)),
        state: state_rx,
        closed: closed_tx,
        streams_opened: Arc::default(),
        counters: Arc::default(),
    };
    tracing::info!(
        resource = %config.resource_name, devices = config.devices, host_path = %config.host_path.display(),
        container_path = %config.container_path.display(), health = initial.health.as_str(), "starting"
    );
    let mut background = vec![tokio::spawn(health::watch(
        config.health_path().to_path_buf(),
        config.common.poll_interval,
        state.clone(),
    ))];
    if let Some(addr) = config.common.metrics_addr {
        let exporter = Arc::new(shared.clone());
        background.push(tokio::spawn(async move {
            if let Err(e) = metrics::serve(addr, exporter).await {
                tracing::error!(%addr, error = %e, "cannot serve metrics; fix --metrics-addr");
            }
        }));
    }
    let mut directory = DirWatch::new(
        &[&config.plugin_dir],
        config.common.watch,
        config.common.poll_interval,
    );
    let mut shell = Shell {
        config,
        shared,
        plan: Plan::new(),
        generation: None,
    };
    tokio::pin!(shutdown);
    loop {
        let wake_at = shell.plan.wake_at().map(Instant::from_std);
        // The shutdown may interrupt any step: serving and registering are safe to drop.
        tokio::select! {
            _ = &mut shutdown => break,
            _ = async {
                tokio::select! {
                    Some(stream) = closed.recv() => shell.feed(Seen::StreamClosed { id: stream.id }).await,
                    _ = directory.changed() => shell.look().await,
                    _ = sleep_until(wake_at) => shell.feed(Seen::Timer).await,
                }
            } => {}
        }
    }
    tracing::info!("shutting down: sending an empty device list");
    state.send_modify(|s| s.stopping = true);
    shell.stop().await;
    for task in background {
        task.abort();
    }
    tracing::info!("stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cli, Command};
    use crate::device_plugin::state::Health;
    use clap::Parser;

    fn config(plugin_dir: &std::path::Path) -> DevicePluginConfig {
        let cli = Cli::try_parse_from([
            "agent-mount-node",
            "device-plugin",
            "--plugin-dir",
            &plugin_dir.display().to_string(),
        ])
        .unwrap();
        match cli.command {
            Command::DevicePlugin(config) => config,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn register_without_a_kubelet_is_a_connect_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = register(&config(dir.path())).await.unwrap_err();
        assert!(
            matches!(&err, LifecycleError::Connect { socket, .. } if *socket == dir.path().join("kubelet.sock")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn serving_into_a_missing_directory_is_a_serve_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(&dir.path().join("missing"));
        let shared = Shared {
            devices: Arc::new(Devices::new("generic", 1)),
            state: watch::channel(DeviceState {
                health: Health::Healthy,
                stopping: false,
            })
            .1,
            closed: mpsc::unbounded_channel().0,
            streams_opened: Arc::default(),
            counters: Arc::default(),
        };
        let Err(err) = Generation::start(&config, &shared).await else {
            panic!("served into a missing directory")
        };
        assert!(
            matches!(&err, LifecycleError::Serve { socket, .. } if *socket == config.socket_path()),
            "{err:?}"
        );
    }
}
