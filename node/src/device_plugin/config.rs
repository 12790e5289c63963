//! The flags of `agent-mount-node device-plugin` (DESIGN §3a "Interface"), each with an
//! `AGENT_MOUNT_<FLAG>` environment variable; `probe device-plugin` reads the same ones.

use super::api::KUBELET_SOCKET;
use crate::flags::{Common, parse_absolute_path};
use agent_mount_common::syntax;
use agent_mount_common::{DEFAULT_HOST_PATH, DEFAULT_RESOURCE_NAME};
use clap::Args;
use std::path::{Path, PathBuf};

/// The most devices a plugin may advertise; each is a line in every ListAndWatch update.
pub const MAX_DEVICES: i64 = 100_000;
/// The kubelet's device plugin directory.
pub const DEFAULT_PLUGIN_DIR: &str = "/var/lib/kubelet/device-plugins";

/// A flag value of `device-plugin` refused at start; clap prefixes the message with the flag's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DevicePluginConfigError {
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
}

/// The device plugin's flags.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct DevicePluginConfig {
    /// Extended resource to advertise (must match the policy's resourceName).
    #[arg(long, env = "AGENT_MOUNT_RESOURCE_NAME", default_value = DEFAULT_RESOURCE_NAME, value_parser = parse_resource_name)]
    pub resource_name: String,
    /// Agent directory on the node, mounted into containers; with the agents installer,
    /// `<root>/current`, handed to the kubelet as it is, so each container gets the version
    /// current at its start.
    #[arg(long, env = "AGENT_MOUNT_HOST_PATH", default_value = DEFAULT_HOST_PATH, value_parser = parse_absolute_path)]
    pub host_path: PathBuf,
    /// Where the agent directory appears inside containers.
    #[arg(long, env = "AGENT_MOUNT_CONTAINER_PATH", default_value = DEFAULT_HOST_PATH, value_parser = parse_absolute_path)]
    pub container_path: PathBuf,
    /// The agent directory as this plugin sees it, for health, resolved again at every
    /// check (default: --host-path).
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

fn parse_resource_name(value: &str) -> Result<String, DevicePluginConfigError> {
    syntax::extended_resource_name(value)
        .map(|()| value.to_string())
        .map_err(|reason| DevicePluginConfigError::ResourceName {
            value: value.into(),
            reason,
        })
}

fn parse_socket_name(value: &str) -> Result<String, DevicePluginConfigError> {
    if value == KUBELET_SOCKET {
        return Err(DevicePluginConfigError::KubeletSocket {
            value: value.into(),
        });
    }
    syntax::path_segment(value)
        .map(|()| value.to_string())
        .map_err(|reason| DevicePluginConfigError::SocketName {
            value: value.into(),
            reason,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::testing::refusal;

    fn parse(args: &[&str]) -> Result<DevicePluginConfig, clap::Error> {
        crate::flags::testing::parse(args)
    }

    #[test]
    fn defaults_are_odigos_compatible() {
        let config = parse(&[]).unwrap();
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
    }

    #[test]
    fn bad_flags_are_refused_with_the_reason() {
        type Check = fn(&DevicePluginConfigError) -> bool;
        let cases: [(&[&str], Check); 3] = [
            (
                &["--resource-name", "generic"],
                |e| matches!(e, DevicePluginConfigError::ResourceName { value, .. } if value == "generic"),
            ),
            (&["--socket-name", "kubelet.sock"], |e| {
                matches!(e, DevicePluginConfigError::KubeletSocket { .. })
            }),
            (
                &["--socket-name", "a/b"],
                |e| matches!(e, DevicePluginConfigError::SocketName { value, .. } if value == "a/b"),
            ),
        ];
        for (args, check) in cases {
            let refused: DevicePluginConfigError = refusal::<DevicePluginConfig, _>(args);
            assert!(check(&refused), "{args:?}: {refused:?}");
        }
        assert_eq!(
            parse(&["--devices", "0"]).unwrap_err().kind(),
            clap::error::ErrorKind::ValueValidation
        );
    }
}
