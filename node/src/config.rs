//! Command line: the subcommands and the device plugin's flags, each with an
//! `AGENT_MOUNT_<FLAG>` environment variable; the shared flags are in [`crate::flags`].

use crate::api::KUBELET_SOCKET;
use crate::csi::config::CsiConfig;
use crate::flags::{Common, ConfigError, parse_absolute_path, parse_duration};
use agent_mount_common::syntax;
use agent_mount_common::{DEFAULT_HOST_PATH, DEFAULT_RESOURCE_NAME};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The most devices a plugin may advertise; each is a line in every ListAndWatch update.
pub const MAX_DEVICES: i64 = 100_000;
/// The kubelet's device plugin directory.
pub const DEFAULT_PLUGIN_DIR: &str = "/var/lib/kubelet/device-plugins";

/// agent-mount's node binary: the kubelet plugins that mount the node's agent directory into containers.
#[derive(Parser, Debug)]
#[command(name = "agent-mount-node", version)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the kubelet device plugin (the virtual-device method).
    DevicePlugin(DevicePluginConfig),
    /// Run the CSI node plugin (the csi-driver method).
    Csi(CsiConfig),
    /// Check a plugin's socket through gRPC health: exit 0 when it serves, 1 otherwise (exec probes).
    Probe(ProbeArgs),
}

/// `probe`: which plugin to check, read from the same flags and environment as that plugin.
#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// How long to wait for an answer.
    #[arg(long, global = true, default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The plugin whose socket to check.
    #[command(subcommand)]
    pub target: ProbeTarget,
}

/// The plugins `probe` can check.
#[derive(Subcommand, Debug)]
pub enum ProbeTarget {
    /// The device plugin's socket (`--plugin-dir`/`--socket-name`).
    DevicePlugin(DevicePluginConfig),
    /// The CSI node plugin's CSI socket (`--csi-socket`, or derived from `--kubelet-dir`/`--driver-name`).
    Csi(CsiConfig),
}

/// The device plugin's flags.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct DevicePluginConfig {
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
    /// Flags shared with the other node plugins.
    #[command(flatten)]
    pub common: Common,
}

impl DevicePluginConfig {
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
        self.plugin_dir.join(KUBELET_SOCKET)
    }

    /// Device ID prefix: the name part of the resource, e.g. `generic`.
    pub fn device_prefix(&self) -> &str {
        self.resource_name
            .rsplit('/')
            .next()
            .unwrap_or(&self.resource_name)
    }
}

fn parse_resource_name(value: &str) -> Result<String, ConfigError> {
    syntax::extended_resource_name(value)
        .map(|()| value.to_string())
        .map_err(|reason| ConfigError::ResourceName {
            value: value.into(),
            reason,
        })
}

fn parse_socket_name(value: &str) -> Result<String, ConfigError> {
    if value == KUBELET_SOCKET {
        return Err(ConfigError::KubeletSocket {
            value: value.into(),
        });
    }
    syntax::path_segment(value)
        .map(|()| value.to_string())
        .map_err(|reason| ConfigError::SocketName {
            value: value.into(),
            reason,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::{LogFormat, WatchMode};
    use std::error::Error as _;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["agent-mount-node"].iter().chain(args))
    }

    fn device_plugin(args: &[&str]) -> DevicePluginConfig {
        let args: Vec<&str> = ["device-plugin"].iter().chain(args).copied().collect();
        match parse(&args).unwrap().command {
            Command::DevicePlugin(config) => config,
            other => panic!("{other:?}"),
        }
    }

    /// The [`ConfigError`] behind a refused command line.
    fn config_error(args: &[&str]) -> ConfigError {
        let err = parse(args).unwrap_err();
        err.source()
            .and_then(|s| s.downcast_ref::<ConfigError>())
            .unwrap_or_else(|| panic!("{args:?}: not a ConfigError: {err}"))
            .clone()
    }

    #[test]
    fn defaults_are_odigos_compatible() {
        let config = device_plugin(&[]);
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
        assert_eq!(
            config.common,
            Common {
                watch: WatchMode::Auto,
                poll_interval: Duration::from_millis(500),
                metrics_addr: None,
                log_format: LogFormat::Text,
            }
        );
    }

    #[test]
    fn probe_reads_the_device_plugins_flags() {
        let cli = parse(&[
            "probe",
            "device-plugin",
            "--plugin-dir",
            "/tmp/plugins",
            "--socket-name",
            "x.sock",
            "--timeout",
            "3s",
        ])
        .unwrap();
        let Command::Probe(probe) = cli.command else {
            panic!("{:?}", cli.command)
        };
        assert_eq!(probe.timeout, Duration::from_secs(3));
        let ProbeTarget::DevicePlugin(config) = probe.target else {
            panic!("{:?}", probe.target)
        };
        assert_eq!(config.socket_path(), Path::new("/tmp/plugins/x.sock"));
    }

    #[test]
    fn csi_and_probe_csi_read_the_same_flags() {
        let args = ["--node-name", "n1", "--kubelet-dir", "/k"];
        let run = parse(&[&["csi"][..], &args].concat()).unwrap();
        let Command::Csi(run) = run.command else {
            panic!("{:?}", run.command)
        };
        let probe = parse(&[&["probe", "csi"][..], &args].concat()).unwrap();
        let Command::Probe(probe) = probe.command else {
            panic!("{:?}", probe.command)
        };
        let ProbeTarget::Csi(probed) = probe.target else {
            panic!("{:?}", probe.target)
        };
        assert_eq!(run, probed);
        assert_eq!(
            probed.csi_socket(),
            Path::new("/k/plugins/odigos.csi.driver/csi.sock")
        );
    }

    #[test]
    fn a_subcommand_is_required() {
        assert_eq!(
            parse(&[]).unwrap_err().kind(),
            clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
    }

    #[test]
    fn bad_flags_are_refused_with_the_reason() {
        type Check = fn(&ConfigError) -> bool;
        let cases: [(&[&str], Check); 7] = [
            (
                &["--host-path", "var/odigos"],
                |e| matches!(e, ConfigError::Path { value, .. } if value == "var/odigos"),
            ),
            (
                &["--resource-name", "generic"],
                |e| matches!(e, ConfigError::ResourceName { value, .. } if value == "generic"),
            ),
            (
                &["--poll-interval", "fast"],
                |e| matches!(e, ConfigError::Duration { value, .. } if value == "fast"),
            ),
            (&["--poll-interval", "0s"], |e| {
                matches!(e, ConfigError::ZeroDuration { .. })
            }),
            // `number * 60` overflowed here once; humantime refuses it.
            (&["--poll-interval", "999999999999999999999m"], |e| {
                matches!(e, ConfigError::Duration { .. })
            }),
            (&["--socket-name", "kubelet.sock"], |e| {
                matches!(e, ConfigError::KubeletSocket { .. })
            }),
            (
                &["--socket-name", "a/b"],
                |e| matches!(e, ConfigError::SocketName { value, .. } if value == "a/b"),
            ),
        ];
        for (args, check) in cases {
            let args: Vec<&str> = ["device-plugin"].iter().chain(args).copied().collect();
            let err = config_error(&args);
            assert!(check(&err), "{args:?}: {err:?}");
        }
    }

    #[test]
    fn clap_checks_the_rest() {
        use clap::error::ErrorKind;
        for (args, kind) in [
            (["--devices", "0"], ErrorKind::ValueValidation),
            (["--metrics-addr", "localhost"], ErrorKind::ValueValidation),
            (["--watch", "sometimes"], ErrorKind::InvalidValue),
        ] {
            let args: Vec<&str> = ["device-plugin"].iter().chain(&args).copied().collect();
            assert_eq!(parse(&args).unwrap_err().kind(), kind, "{args:?}");
        }
    }
}
