//! agent-mount's node binary: the kubelet plugins that mount the node's agent directory
//! read-only into containers.
//!
//! Shared: [`config`] (subcommands), [`flags`] (shared flags and their checks), [`decide`]
//! (pure lifecycle decisions: keep a socket served, react to its directory), [`watch`]
//! (their I/O: inotify, polling, file identity), [`agents`] (whether the agents are installed), [`metrics`] (Prometheus and
//! `/healthz`), [`uds`] (gRPC over unix sockets) and [`probe`] (the exec probe). Per plugin:
//! [`device_plugin`], with [`api`] (its generated v1beta1 types), and [`csi`] (the CSI node
//! plugin).

pub mod agents;
pub mod api;
pub mod config;
pub mod csi;
pub mod decide;
pub mod device_plugin;
pub mod flags;
pub mod metrics;
pub mod probe;
pub mod uds;
pub mod watch;
