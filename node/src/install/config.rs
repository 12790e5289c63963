//! The flags of `agents install` and `agents gc`, each with its `AGENT_MOUNT_*` variable.

use super::label::{NodeLabel, parse_label};
use crate::flags::{LogFormat, parse_absolute_path, parse_duration};
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The default `--root`: a directory the project owns on the node.
pub const DEFAULT_ROOT: &str = "/var/lib/agent-mount/agents";

/// `agents`: install the agents tree, or collect old versions.
#[derive(Subcommand, Debug)]
pub enum AgentsCommand {
    /// Install a tree into <root>/versions/<digest> and point <root>/current at it; then collect.
    Install(InstallArgs),
    /// Remove old versions that no mount on the node uses (once, or every --every).
    Gc(GcArgs),
}

/// Flags both subcommands take.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct RootArgs {
    /// The directory the agents are installed into (consumers use <root>/current).
    #[arg(long, env = "AGENT_MOUNT_AGENTS_ROOT", default_value = DEFAULT_ROOT, value_parser = parse_absolute_path)]
    pub root: PathBuf,
    /// An old version replaced less than this ago is kept (a kubelet may have resolved
    /// `current` just before the switch and not mounted yet); `0s` in tests.
    #[arg(long, env = "AGENT_MOUNT_AGENTS_GRACE", default_value = "10m", value_parser = parse_grace)]
    pub grace: Duration,
    /// Log format.
    #[arg(long, env = "AGENT_MOUNT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `agents install`.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct InstallArgs {
    /// The tree to install (the agents image's /instrumentations).
    #[arg(long, env = "AGENT_MOUNT_AGENTS_FROM", value_parser = parse_absolute_path)]
    pub from: PathBuf,
    /// The root and the grace.
    #[command(flatten)]
    pub root: RootArgs,
    /// Set this label on the node once `current` is complete, e.g.
    /// agent-mount.io/agents=installed (with --node-name; the service account needs get
    /// and patch on nodes).
    #[arg(long, env = "AGENT_MOUNT_LABEL_NODE", value_parser = parse_label, requires = "node_name")]
    pub label_node: Option<NodeLabel>,
    /// This node's name (`spec.nodeName` through the downward API), for --label-node.
    #[arg(long, env = "AGENT_MOUNT_NODE_NAME")]
    pub node_name: Option<String>,
    /// Tests only: SIGKILL the installer at this step (each entry copied, the rename, the
    /// new link, the switch), to check that a crash anywhere leaves a complete tree.
    #[arg(long, env = "AGENT_MOUNT_FAULT_KILL_AT_STEP", hide = true)]
    pub fault_kill_at_step: Option<u64>,
}

/// `agents gc`.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct GcArgs {
    /// The root and the grace.
    #[command(flatten)]
    pub root: RootArgs,
    /// Collect again at this period and serve /metrics and /healthz (once, then exit, when unset).
    #[arg(long, env = "AGENT_MOUNT_AGENTS_GC_EVERY", value_parser = parse_duration)]
    pub every: Option<Duration>,
    /// Address for Prometheus /metrics and /healthz with --every, e.g. 0.0.0.0:9464 (off when unset).
    #[arg(long, env = "AGENT_MOUNT_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

/// Parses the grace: a duration such as `10m`, zero allowed.
fn parse_grace(value: &str) -> Result<Duration, crate::flags::ConfigError> {
    match parse_duration(value) {
        Err(crate::flags::ConfigError::ZeroDuration { .. }) => Ok(Duration::ZERO),
        result => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::testing::parse;

    #[test]
    fn defaults_and_a_zero_grace() {
        let gc: GcArgs = parse(&[]).unwrap();
        assert_eq!(gc.root.root, PathBuf::from(DEFAULT_ROOT));
        assert_eq!(gc.root.grace, Duration::from_secs(600));
        assert_eq!(gc.every, None);
        let gc: GcArgs = parse(&["--grace", "0s", "--every", "1h", "--root", "/r"]).unwrap();
        assert_eq!(gc.root.grace, Duration::ZERO);
        assert_eq!(gc.every, Some(Duration::from_secs(3600)));
        assert!(parse::<InstallArgs>(&[]).is_err(), "--from is required");
        assert!(parse::<InstallArgs>(&["--from", "relative/tree"]).is_err());
        assert!(
            parse::<GcArgs>(&["--every", "0s"]).is_err(),
            "a zero period would spin"
        );
    }
}
