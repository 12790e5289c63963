//! The `probe` subcommand: gRPC health on the plugin's socket, for exec liveness and readiness probes.

use crate::config::Config;
use std::time::Duration;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Asks the plugin's socket for its health; `Ok` when it answers SERVING.
pub async fn check(config: &Config, timeout: Duration) -> Result<(), String> {
    let socket = config.socket_path();
    let ask = async {
        let channel = crate::uds::connect(&socket)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|e| format!("health check failed: {e}"))?;
        match answer.into_inner().status() {
            ServingStatus::Serving => Ok(()),
            other => Err(format!("status {}", other.as_str_name())),
        }
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
        .map_err(|e| format!("{}: {e}", socket.display()))
}
