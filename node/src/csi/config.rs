//! The flags of `agent-mount-node csi` (DESIGN §3b "Flags"), each with an
//! `AGENT_MOUNT_<FLAG>` environment variable; `probe csi` reads the same ones.

use crate::flags::{Common, parse_absolute_path};
use agent_mount_common::{DEFAULT_CSI_DRIVER, DEFAULT_HOST_PATH, syntax};
use clap::Args;
use std::path::PathBuf;

/// The kubelet's root directory (its `--root-dir`).
pub const DEFAULT_KUBELET_DIR: &str = "/var/lib/kubelet";
/// The CSI socket's file name inside `<kubelet-dir>/plugins/<driver>/`.
pub const CSI_SOCKET_NAME: &str = "csi.sock";

/// A flag value of `csi` refused at start; clap prefixes the message with the flag's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsiConfigError {
    /// Not a CSI driver name.
    #[error(
        "{value:?} is not a CSI driver name ({reason}); it must equal the CSIDriver object's name and the policy's csiDriver"
    )]
    DriverName {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An empty node name.
    #[error(
        "the node name is empty; set it from the pod's spec.nodeName (AGENT_MOUNT_NODE_NAME via the downward API)"
    )]
    EmptyNodeName,
}

/// The CSI node plugin's flags.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct CsiConfig {
    /// CSI driver name (must match the CSIDriver object and the policy's csiDriver).
    #[arg(long, env = "AGENT_MOUNT_DRIVER_NAME", default_value = DEFAULT_CSI_DRIVER, value_parser = parse_driver_name)]
    pub driver_name: String,
    /// The agent directory as this plugin's container sees it: the source of every bind
    /// mount; with the agents installer, `<root>/current`, resolved again at every publish.
    #[arg(long, env = "AGENT_MOUNT_AGENT_DIR", default_value = DEFAULT_HOST_PATH, value_parser = parse_absolute_path)]
    pub agent_dir: PathBuf,
    /// The kubelet's root directory; publishes are confined to its `pods/`.
    #[arg(long, env = "AGENT_MOUNT_KUBELET_DIR", default_value = DEFAULT_KUBELET_DIR, value_parser = parse_absolute_path)]
    pub kubelet_dir: PathBuf,
    /// The CSI socket (default: <kubelet-dir>/plugins/<driver-name>/csi.sock).
    #[arg(long, env = "AGENT_MOUNT_CSI_SOCKET", value_parser = parse_absolute_path)]
    pub csi_socket: Option<PathBuf>,
    /// The kubelet's plugin registry directory (default: <kubelet-dir>/plugins_registry).
    #[arg(long, env = "AGENT_MOUNT_REGISTRATION_DIR", value_parser = parse_absolute_path)]
    pub registration_dir: Option<PathBuf>,
    /// On a kernel without mount_setattr (before 5.12), mount with a bind and a read-only
    /// remount instead of refusing to start; safe only when the DaemonSet mounts the agent
    /// directory read-only.
    #[arg(long, env = "AGENT_MOUNT_ALLOW_LEGACY_MOUNT")]
    pub allow_legacy_mount: bool,
    /// This node's name, answered in NodeGetInfo (the DaemonSet sets it from spec.nodeName).
    #[arg(long, env = "AGENT_MOUNT_NODE_NAME", value_parser = parse_node_name)]
    pub node_name: String,
    /// Flags shared with the other node plugins.
    #[command(flatten)]
    pub common: Common,
}

impl CsiConfig {
    /// The CSI socket: given, or `<kubelet-dir>/plugins/<driver>/csi.sock`.
    pub fn csi_socket(&self) -> PathBuf {
        self.csi_socket.clone().unwrap_or_else(|| {
            self.kubelet_dir
                .join("plugins")
                .join(&self.driver_name)
                .join(CSI_SOCKET_NAME)
        })
    }

    /// The kubelet's plugin registry directory.
    pub fn registration_dir(&self) -> PathBuf {
        self.registration_dir
            .clone()
            .unwrap_or_else(|| self.kubelet_dir.join("plugins_registry"))
    }

    /// The registration socket: `<registration-dir>/<driver>-reg.sock`.
    pub fn registration_socket(&self) -> PathBuf {
        self.registration_dir()
            .join(format!("{}-reg.sock", self.driver_name))
    }
}

fn parse_driver_name(value: &str) -> Result<String, CsiConfigError> {
    syntax::csi_driver_name(value)
        .map(|()| value.to_string())
        .map_err(|reason| CsiConfigError::DriverName {
            value: value.into(),
            reason,
        })
}

fn parse_node_name(value: &str) -> Result<String, CsiConfigError> {
    if value.is_empty() {
        Err(CsiConfigError::EmptyNodeName)
    } else {
        Ok(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::path::Path;

    #[derive(Parser, Debug)]
    struct Wrap {
        #[command(flatten)]
        config: CsiConfig,
    }

    fn parse(args: &[&str]) -> Result<CsiConfig, clap::Error> {
        Wrap::try_parse_from(["csi"].iter().chain(args)).map(|w| w.config)
    }

    #[test]
    fn defaults_follow_the_kubelet_layout() {
        let config = parse(&["--node-name", "n1"]).unwrap();
        assert_eq!(config.driver_name, "odigos.csi.driver");
        assert_eq!(config.agent_dir, Path::new("/var/odigos"));
        assert_eq!(
            config.csi_socket(),
            Path::new("/var/lib/kubelet/plugins/odigos.csi.driver/csi.sock")
        );
        assert_eq!(
            config.registration_socket(),
            Path::new("/var/lib/kubelet/plugins_registry/odigos.csi.driver-reg.sock")
        );
        assert!(!config.allow_legacy_mount);
        let legacy = parse(&["--node-name", "n1", "--allow-legacy-mount"]).unwrap();
        assert!(legacy.allow_legacy_mount);
        let moved = parse(&[
            "--node-name",
            "n1",
            "--kubelet-dir",
            "/data/kubelet",
            "--driver-name",
            "x.example.com",
        ])
        .unwrap();
        assert_eq!(
            moved.csi_socket(),
            Path::new("/data/kubelet/plugins/x.example.com/csi.sock")
        );
        assert_eq!(
            moved.registration_socket(),
            Path::new("/data/kubelet/plugins_registry/x.example.com-reg.sock")
        );
    }

    #[test]
    fn bad_flags_are_refused_with_the_reason() {
        let cases: [(&[&str], &str); 5] = [
            (&[], "--node-name"),
            (&["--node-name", ""], "node name is empty"),
            (
                &["--node-name", "n", "--driver-name", "Odigos_CSI"],
                "not a CSI driver name",
            ),
            (
                &["--node-name", "n", "--kubelet-dir", "var/lib/kubelet"],
                "not usable as a path",
            ),
            (
                &["--node-name", "n", "--csi-socket", "/a/../csi.sock"],
                "not usable as a path",
            ),
        ];
        for (args, expected) in cases {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(expected), "{args:?}: {err}");
        }
    }
}
