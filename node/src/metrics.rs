//! Counters, Prometheus `/metrics` and `/healthz` on `--metrics-addr`.

use crate::service::{DeviceState, Health};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Counters the plugin keeps.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Containers given the agent mount by `Allocate`.
    pub allocations: AtomicU64,
    /// Successful `Register` calls.
    pub registrations: AtomicU64,
    /// Kubelet restarts seen (socket deleted or kubelet.sock recreated).
    pub kubelet_restarts: AtomicU64,
}

impl Metrics {
    /// The Prometheus text exposition of the counters and the device gauge.
    pub fn render(&self, state: DeviceState, devices: u32) -> String {
        let (healthy, unhealthy) = match (state.stopping, state.health) {
            (true, _) => (0, 0),
            (false, Health::Healthy) => (devices, 0),
            (false, Health::Unhealthy) => (0, devices),
        };
        let counter = |name: &str, help: &str, value: &AtomicU64| {
            format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                value.load(Ordering::Relaxed)
            )
        };
        let mut text = String::from(
            "# HELP agent_mount_devices Devices advertised to the kubelet, by health.\n# TYPE agent_mount_devices gauge\n",
        );
        text.push_str(&format!(
            "agent_mount_devices{{health=\"Healthy\"}} {healthy}\n"
        ));
        text.push_str(&format!(
            "agent_mount_devices{{health=\"Unhealthy\"}} {unhealthy}\n"
        ));
        text.push_str(&counter(
            "agent_mount_allocations_total",
            "Containers given the agent mount by Allocate.",
            &self.allocations,
        ));
        text.push_str(&counter(
            "agent_mount_registrations_total",
            "Successful registrations with the kubelet.",
            &self.registrations,
        ));
        text.push_str(&counter(
            "agent_mount_kubelet_restarts_total",
            "Kubelet restarts seen.",
            &self.kubelet_restarts,
        ));
        text
    }
}

/// Serves `/metrics` and `/healthz` until the process ends.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    state: watch::Receiver<DeviceState>,
    devices: u32,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics and /healthz");
    loop {
        let (stream, _) = listener.accept().await?;
        let metrics = metrics.clone();
        let state = state.clone();
        let handler = service_fn(move |request: Request<hyper::body::Incoming>| {
            let current = *state.borrow();
            let response = match request.uri().path() {
                "/metrics" => Response::new(metrics.render(current, devices)),
                "/healthz" if !current.stopping => Response::new("ok\n".to_string()),
                "/healthz" => status(StatusCode::SERVICE_UNAVAILABLE, "stopping\n"),
                _ => status(
                    StatusCode::NOT_FOUND,
                    "not found: try /metrics or /healthz\n",
                ),
            };
            async move { Ok::<_, std::convert::Infallible>(response) }
        });
        tokio::spawn(async move {
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler)
                .await
            {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

fn status(code: StatusCode, body: &str) -> Response<String> {
    let mut response = Response::new(body.to_string());
    *response.status_mut() = code;
    response
}
