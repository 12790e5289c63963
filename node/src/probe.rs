//! The `probe` subcommand: gRPC health on a plugin's socket, for exec liveness and readiness probes.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Why a probe failed; the process exits 1 with this message.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Nothing accepts connections on the socket.
    #[error("cannot connect to {}: {source}; the plugin is not serving (check its log, and that the probe's flags and environment match the plugin's)", socket.display())]
    Connect {
        /// The socket probed.
        socket: PathBuf,
        /// What the transport said.
        source: tonic::transport::Error,
    },
    /// The health call failed.
    #[error("health check on {} failed: {}", socket.display(), status.message())]
    Check {
        /// The socket probed.
        socket: PathBuf,
        /// The gRPC status.
        status: tonic::Status,
    },
    /// The plugin answered, but not SERVING.
    #[error("{} answers {status}, not SERVING", socket.display())]
    NotServing {
        /// The socket probed.
        socket: PathBuf,
        /// The status it answered.
        status: &'static str,
    },
    /// No answer in time.
    #[error("no answer from {} within {after:?}; the plugin is hung or overloaded", socket.display())]
    Timeout {
        /// The socket probed.
        socket: PathBuf,
        /// The time allowed.
        after: Duration,
    },
}

/// Asks `socket` for its health (the empty service name: the whole server); `Ok` when SERVING.
pub async fn check(socket: &Path, timeout: Duration) -> Result<(), ProbeError> {
    let ask = async {
        let channel = crate::uds::connect(socket)
            .await
            .map_err(|source| ProbeError::Connect {
                socket: socket.to_path_buf(),
                source,
            })?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|status| ProbeError::Check {
                socket: socket.to_path_buf(),
                status,
            })?;
        match answer.into_inner().status() {
            ServingStatus::Serving => Ok(()),
            other => Err(ProbeError::NotServing {
                socket: socket.to_path_buf(),
                status: other.as_str_name(),
            }),
        }
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| ProbeError::Timeout {
            socket: socket.to_path_buf(),
            after: timeout,
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_socket_is_a_connect_error() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("plugin.sock");
        let err = check(&socket, Duration::from_secs(2)).await.unwrap_err();
        assert!(
            matches!(&err, ProbeError::Connect { socket: s, .. } if *s == socket),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_socket_that_never_answers_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("plugin.sock");
        // Bound and listening, never accepted: the connection waits in the backlog.
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let err = check(&socket, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, ProbeError::Timeout { .. }), "{err:?}");
    }
}
