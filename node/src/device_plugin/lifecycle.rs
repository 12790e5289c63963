//! The device plugin's shell: it looks (sockets, streams, timers), asks [`Plan`] what to do,
//! and does it (serve, register, count). Every decision is in [`super::plan`].

use super::api::device_plugin_server::DevicePluginServer;
use super::api::registration_client::RegistrationClient;
use super::api::{RegisterRequest, VERSION};
use super::config::DevicePluginConfig;
use super::health;
use super::plan::{Action, Plan, Seen, Why};
use super::service::DevicePluginService;
use super::state::{DeviceState, Devices, OPTIONS, Shared};
use crate::metrics;
use crate::serve::{ServeError, Served};
use crate::watch::{DirWatch, file_id, sleep_until};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tonic::service::Routes;

/// How long one `Register` call may take; the kubelet dials back inside it.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(3);
/// The flags that place the plugin socket, named when it cannot be served.
const SOCKET_FLAGS: &str = "--plugin-dir, --socket-name";

/// Why serving or registering failed; logged, then retried as [`Plan`] says.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The plugin socket could not be bound.
    #[error(transparent)]
    Serve(#[from] ServeError),
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

/// Binds the plugin socket (replacing a stale file) and serves `DevicePlugin` on it, beside
/// the routes every generation shares (gRPC health).
fn serve(
    config: &DevicePluginConfig,
    shared: &Shared,
    health: &Routes,
) -> Result<Served, LifecycleError> {
    let socket = config.socket_path();
    let served = Served::start(&socket, SOCKET_FLAGS, |stopped| {
        let service =
            DevicePluginService::new(shared, &config.host_path, &config.container_path, stopped);
        health.clone().add_service(DevicePluginServer::new(service))
    })?;
    tracing::info!(socket = %socket.display(), "serving the device plugin");
    Ok(served)
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
    /// gRPC health, served by every generation.
    health: Routes,
    plan: Plan,
    served: Option<Served>,
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
                if let Some(old) = self.served.take() {
                    old.retire();
                }
                match serve(&self.config, &self.shared, &self.health) {
                    Ok(served) => {
                        let file = served.file();
                        self.served = Some(served);
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
        if let Some(served) = self.served.take() {
            served.stop_and_remove().await;
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
        shared.counters.clone(),
    ))];
    if let Some(addr) = config.common.metrics_addr {
        background.push(metrics::spawn(addr, Arc::new(shared.clone())));
    }
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<DevicePluginServer<DevicePluginService>>()
        .await;
    let mut directory = DirWatch::new(
        &[&config.plugin_dir],
        config.common.watch,
        config.common.poll_interval,
    );
    let mut shell = Shell {
        config,
        shared,
        health: Routes::new(health),
        plan: Plan::new(),
        served: None,
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
    use crate::cli::{Cli, Command};
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
        let health = Routes::new(tonic_health::server::health_reporter().1);
        let Err(err) = serve(&config, &shared, &health) else {
            panic!("served into a missing directory")
        };
        assert!(
            matches!(&err, LifecycleError::Serve(e) if e.socket == config.socket_path()),
            "{err:?}"
        );
    }
}
