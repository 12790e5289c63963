//! agent-mount's node binary: the kubelet plugins that mount the node's agent directory
//! read-only into containers.
//!
//! Shared by both plugins: [`cli`] (the subcommands), [`flags`] (the shared flags), [`keeper`]
//! (the pure decision that keeps a socket served), [`watch`] (its I/O: inotify, polling,
//! file identity), [`serve`] (one socket served: bind, serve, stop, remove), [`uds`] (gRPC
//! over unix sockets), [`metrics`] (Prometheus and `/healthz`), [`agents`] (the agent
//! directory, resolved again at every call), [`beneath`] (resolution below a descriptor
//! that follows no symlink) and [`probe`] (the exec probe). Per plugin, each with its own
//! flags, generated API, lifecycle and services: [`device_plugin`] and [`csi`].

pub mod agents;
pub mod beneath;
pub mod cli;
pub mod csi;
pub mod device_plugin;
pub mod flags;
pub mod keeper;
pub mod metrics;
pub mod probe;
pub mod serve;
pub mod uds;
pub mod watch;
