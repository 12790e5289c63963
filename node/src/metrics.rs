//! Prometheus `/metrics` and `/healthz` on `--metrics-addr`, for any plugin that can render
//! its figures ([`Exporter`]).

use crate::uds::ACCEPT_BACKOFF;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What a plugin publishes.
pub trait Exporter: Send + Sync + 'static {
    /// The Prometheus text exposition of every metric.
    fn render(&self) -> String;
    /// Whether `/healthz` answers 200 (503 otherwise).
    fn healthy(&self) -> bool;
}

/// Appends the `# HELP` and `# TYPE` lines of a metric.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Appends one sample; `labels` is empty or `key="value",…`.
pub fn sample(out: &mut String, name: &str, labels: &str, value: u64) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// The process metrics every plugin shares: resident memory and open file descriptors,
/// from `/proc/self` (a figure that cannot be read is left out).
pub fn process() -> String {
    let mut out = String::new();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kib = status.lines().find_map(|l| {
        l.strip_prefix("VmRSS:")?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
    });
    if let Some(kib) = rss_kib {
        let name = "process_resident_memory_bytes";
        header(&mut out, name, "gauge", "Resident memory size in bytes.");
        sample(&mut out, name, "", kib * 1024);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let name = "process_open_fds";
        header(&mut out, name, "gauge", "Number of open file descriptors.");
        sample(&mut out, name, "", fds.count() as u64);
    }
    out
}

/// Serves `/metrics` and `/healthz` on `addr` in a task of its own (abort it to stop); an
/// address that cannot be bound is logged, and the plugin runs on without metrics.
pub fn spawn(addr: SocketAddr, exporter: Arc<dyn Exporter>) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = serve(addr, exporter).await {
            tracing::error!(%addr, error = %e, "cannot serve metrics; fix --metrics-addr");
        }
    })
}

/// Binds `addr` and serves `/metrics` and `/healthz` until the task is dropped.
async fn serve(addr: SocketAddr, exporter: Arc<dyn Exporter>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics and /healthz");
    accept_loop(listener, exporter).await;
    Ok(())
}

/// Serves every connection on `listener`; a failed `accept` is logged and retried, never fatal.
async fn accept_loop(listener: TcpListener, exporter: Arc<dyn Exporter>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS, ECONNABORTED…: the listener itself still works,
                // and a slot frees up when a connection closes.
                tracing::warn!(error = %e, retry_in = ?ACCEPT_BACKOFF, "cannot accept a metrics connection; retrying");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let exporter = exporter.clone();
        let handler = service_fn(move |request: Request<hyper::body::Incoming>| {
            let response = respond(request.uri().path(), exporter.as_ref());
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

fn respond(path: &str, exporter: &dyn Exporter) -> Response<String> {
    match path {
        "/metrics" => Response::new(exporter.render() + &process()),
        "/healthz" if exporter.healthy() => Response::new("ok\n".to_string()),
        "/healthz" => status(StatusCode::SERVICE_UNAVAILABLE, "stopping\n"),
        _ => status(
            StatusCode::NOT_FOUND,
            "not found: try /metrics or /healthz\n",
        ),
    }
}

fn status(code: StatusCode, body: &str) -> Response<String> {
    let mut response = Response::new(body.to_string());
    *response.status_mut() = code;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Fixed(AtomicBool);

    impl Exporter for Fixed {
        fn render(&self) -> String {
            let mut out = String::new();
            header(&mut out, "x_total", "counter", "Xs.");
            sample(&mut out, "x_total", "", 3);
            sample(&mut out, "x_total", "k=\"v\"", 4);
            out
        }
        fn healthy(&self) -> bool {
            self.0.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn routes() {
        let exporter = Fixed(AtomicBool::new(true));
        let metrics = respond("/metrics", &exporter);
        assert_eq!(metrics.status(), StatusCode::OK);
        assert!(
            metrics.body().starts_with(
                "# HELP x_total Xs.\n# TYPE x_total counter\nx_total 3\nx_total{k=\"v\"} 4\n"
            ),
            "{}",
            metrics.body()
        );
        for shared in ["process_resident_memory_bytes ", "process_open_fds "] {
            assert!(
                metrics.body().lines().any(|l| l.starts_with(shared)),
                "{shared} in {}",
                metrics.body()
            );
        }
        assert_eq!(respond("/healthz", &exporter).status(), StatusCode::OK);
        exporter.0.store(false, Ordering::Relaxed);
        assert_eq!(
            respond("/healthz", &exporter).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(respond("/", &exporter).status(), StatusCode::NOT_FOUND);
    }
}
