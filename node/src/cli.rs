//! The command line: the subcommands, each with its plugin's flags
//! ([`crate::device_plugin::config`], [`crate::csi::config`]), which flatten the shared
//! ones ([`crate::flags`]), and the installer's ([`crate::install::config`]).

use crate::csi::config::CsiConfig;
use crate::device_plugin::config::DevicePluginConfig;
use crate::flags::parse_duration;
use crate::install::config::AgentsCommand;
use clap::{Args, Parser, Subcommand};
use std::time::Duration;

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
    /// Install the agents tree on the node, or collect old versions (DESIGN §3c).
    #[command(subcommand)]
    Agents(AgentsCommand),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["agent-mount-node"].iter().chain(args))
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
}
