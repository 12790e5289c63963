//! Command-line flags, each with an environment variable, and their validation.

use agent_mount_common::{DEFAULT_HOST_PATH, DEFAULT_RESOURCE_NAME};
use agent_mount_common::syntax;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The most devices a plugin may advertise; each is a line in every ListAndWatch update.
pub const MAX_DEVICES: i64 = 100_000;
/// The kubelet's device plugin directory.
pub const DEFAULT_PLUGIN_DIR: &str = "/var/lib/kubelet/device-plugins";

/// Kubelet device plugin that mounts the node's agent directory read-only into containers that request it.
#[derive(Parser, Debug)]
#[command(name = "agent-mount-device-plugin", version)]
pub struct Cli {
    /// What to do; without a subcommand, run the plugin.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The plugin's configuration.
    #[command(flatten)]
    pub config: Config,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check gRPC health on the plugin's socket: exit 0 when serving, 1 otherwise (for exec probes).
    Probe {
        /// How long to wait for an answer.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        timeout: Duration,
    },
}

/// How kubelet restarts are detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WatchMode {
    /// inotify on the plugin directory, with polling as a safety net.
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

/// The plugin's configuration.
#[derive(Args, Clone, Debug)]
pub struct Config {
    /// Extended resource to advertise (must match the policy's resourceName).
    #[arg(long, env = "AGENT_MOUNT_RESOURCE_NAME", default_value = DEFAULT_RESOURCE_NAME, value_parser = parse_resource_name)]
    pub resource_name: String,
    /// Agent directory on the node, mounted into containers.
    #[arg(long, env = "AGENT_MOUNT_HOST_PATH", default_value = DEFAULT_HOST_PATH, value_parser = parse_absolute_path)]
    pub host_path: PathBuf,
    /// Where the agent directory appears inside containers.
    #[arg(long, env = "AGENT_MOUNT_CONTAINER_PATH", default_value = DEFAULT_HOST_PATH, value_parser = parse_absolute_path)]
    pub container_path: PathBuf,
    /// The agent directory as this plugin sees it, for health (default: --host-path).
    #[arg(long, env = "AGENT_MOUNT_HEALTH_PATH", value_parser = parse_absolute_path)]
    pub health_path: Option<PathBuf>,
    /// Number of devices to advertise: how many containers per node can use the agents.
    #[arg(long, env = "AGENT_MOUNT_DEVICES", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=MAX_DEVICES))]
    pub devices: u32,
    /// The kubelet's device plugin directory.
    #[arg(long, env = "AGENT_MOUNT_PLUGIN_DIR", default_value = DEFAULT_PLUGIN_DIR, value_parser = parse_absolute_path)]
    pub plugin_dir: PathBuf,
    /// Socket file name in the plugin directory (default: the resource name with '/' as '_').
    #[arg(long, env = "AGENT_MOUNT_SOCKET_NAME", value_parser = parse_socket_name)]
    pub socket_name: Option<String>,
    /// How kubelet restarts are detected.
    #[arg(long, env = "AGENT_MOUNT_WATCH", value_enum, default_value_t = WatchMode::Auto)]
    pub watch: WatchMode,
    /// Polling period for kubelet restarts and health, e.g. 500ms or 1s.
    #[arg(long, env = "AGENT_MOUNT_POLL_INTERVAL", default_value = "500ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Address for Prometheus /metrics and /healthz, e.g. 127.0.0.1:9464 (off when unset).
    #[arg(long, env = "AGENT_MOUNT_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Log format.
    #[arg(long, env = "AGENT_MOUNT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Config {
    /// The directory whose content decides device health.
    pub fn health_path(&self) -> &Path {
        self.health_path.as_deref().unwrap_or(&self.host_path)
    }

    /// The socket file name, given or derived from the resource name.
    pub fn socket_name(&self) -> String {
        self.socket_name
            .clone()
            .unwrap_or_else(|| self.resource_name.replace('/', "_"))
    }

    /// The plugin's own socket.
    pub fn socket_path(&self) -> PathBuf {
        self.plugin_dir.join(self.socket_name())
    }

    /// The kubelet's registration socket.
    pub fn kubelet_socket(&self) -> PathBuf {
        self.plugin_dir.join(crate::api::KUBELET_SOCKET)
    }

    /// Device ID prefix: the name part of the resource, e.g. `generic`.
    pub fn device_prefix(&self) -> &str {
        self.resource_name
            .rsplit('/')
            .next()
            .unwrap_or(&self.resource_name)
    }
}

fn parse_resource_name(value: &str) -> Result<String, String> {
    syntax::extended_resource_name(value).map(|()| value.to_string())
}

fn parse_absolute_path(value: &str) -> Result<PathBuf, String> {
    syntax::absolute_path(value).map(|()| PathBuf::from(value))
}

fn parse_socket_name(value: &str) -> Result<String, String> {
    if value == crate::api::KUBELET_SOCKET {
        return Err("kubelet.sock is the kubelet's own socket".into());
    }
    syntax::path_segment(value).map(|()| value.to_string())
}

/// Parses `500ms`, `2s` or `1m`.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let allowed = "expected a duration such as 500ms, 2s or 1m";
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().map_err(|_| allowed.to_string())?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number * 60),
        _ => return Err(allowed.into()),
    };
    if duration.is_zero() {
        Err(format!("{allowed}, greater than zero"))
    } else {
        Ok(duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(
            std::iter::once("agent-mount-device-plugin").chain(args.iter().copied()),
        )
    }

    #[test]
    fn defaults_are_odigos_compatible() {
        let cli = parse(&[]).unwrap();
        let config = cli.config;
        assert_eq!(config.resource_name, "instrumentation.odigos.io/generic");
        assert_eq!(config.host_path, Path::new("/var/odigos"));
        assert_eq!(config.container_path, Path::new("/var/odigos"));
        assert_eq!(config.health_path(), Path::new("/var/odigos"));
        assert_eq!(config.devices, 1024);
        assert_eq!(
            config.socket_path(),
            Path::new("/var/lib/kubelet/device-plugins/instrumentation.odigos.io_generic")
        );
        assert_eq!(config.device_prefix(), "generic");
        assert_eq!(config.poll_interval, Duration::from_millis(500));
        assert_eq!(config.watch, WatchMode::Auto);
    }

    #[test]
    fn bad_flags_are_rejected_with_the_reason() {
        let cases: [(&[&str], &str); 6] = [
            (
                &["--host-path", "var/odigos"],
                "expected an absolute, normalised path",
            ),
            (&["--devices", "0"], "0 is not in 1..=100000"),
            (
                &["--resource-name", "generic"],
                "expected an extended resource name",
            ),
            (&["--poll-interval", "fast"], "expected a duration"),
            (&["--socket-name", "kubelet.sock"], "kubelet's own socket"),
            (&["--watch", "sometimes"], "invalid value 'sometimes'"),
        ];
        for (args, expected) in cases {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(expected), "{args:?}: {err}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5").is_err());
    }
}
