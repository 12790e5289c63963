//! The flag types, errors and parsers every node plugin shares: how sockets are watched,
//! metrics, logs, and the checks that refuse a bad value at start.

use agent_mount_common::syntax;
use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A flag value refused at start; clap prefixes the message with the flag's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not an extended resource name.
    #[error(
        "{value:?} is not an extended resource name ({reason}); use a qualified name such as instrumentation.odigos.io/generic"
    )]
    ResourceName {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not an absolute, normalised path.
    #[error(
        "{value:?} is not usable as a path ({reason}); give an absolute path without '.', '..' or '//', such as /var/odigos"
    )]
    Path {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not a single file name.
    #[error(
        "{value:?} is not a socket file name ({reason}); give a single file name such as example.com_agents"
    )]
    SocketName {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The kubelet's own socket name.
    #[error("{value:?} is the kubelet's own registration socket; choose another socket name")]
    KubeletSocket {
        /// The value given.
        value: String,
    },
    /// Not a duration.
    #[error("{value:?} is not a duration ({reason}); use a duration such as 500ms, 2s or 1m")]
    Duration {
        /// The value given.
        value: String,
        /// What the parser said.
        reason: String,
    },
    /// A zero duration, which would make a busy loop.
    #[error("{value:?} is zero; use a duration greater than zero, such as 500ms")]
    ZeroDuration {
        /// The value given.
        value: String,
    },
}

/// How a plugin notices that its sockets were removed or replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WatchMode {
    /// inotify on the socket directories, with polling as a safety net.
    Auto,
    /// Polling only, for nodes where inotify instances are exhausted.
    Poll,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags every node plugin takes; each plugin's flags flatten this struct.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct Common {
    /// How removed or replaced sockets are noticed.
    #[arg(long, env = "AGENT_MOUNT_WATCH", value_enum, default_value_t = WatchMode::Auto)]
    pub watch: WatchMode,
    /// Polling period for sockets and health, e.g. 500ms or 1s.
    #[arg(long, env = "AGENT_MOUNT_POLL_INTERVAL", default_value = "500ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Address for Prometheus /metrics and /healthz, e.g. 127.0.0.1:9464 (off when unset).
    #[arg(long, env = "AGENT_MOUNT_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Log format.
    #[arg(long, env = "AGENT_MOUNT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Parses an absolute, normalised path.
pub fn parse_absolute_path(value: &str) -> Result<PathBuf, ConfigError> {
    syntax::absolute_path(value)
        .map(|()| PathBuf::from(value))
        .map_err(|reason| ConfigError::Path {
            value: value.into(),
            reason,
        })
}

/// Parses a positive duration such as `500ms`, `2s` or `1m` (humantime's syntax, which
/// refuses values that overflow instead of wrapping).
pub fn parse_duration(value: &str) -> Result<Duration, ConfigError> {
    let duration = humantime::parse_duration(value).map_err(|e| ConfigError::Duration {
        value: value.into(),
        reason: e.to_string(),
    })?;
    if duration.is_zero() {
        return Err(ConfigError::ZeroDuration {
            value: value.into(),
        });
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(matches!(
            parse_duration("5"),
            Err(ConfigError::Duration { .. })
        ));
    }
}
