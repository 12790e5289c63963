//! The CSI node plugin (`agent-mount-node csi`, DESIGN §3b): inline ephemeral volumes
//! that bind-mount the node's agent directory read-only into pods.
//!
//! [`config`] (flags), [`api`] (generated types), [`request`] (the pure argument checks),
//! [`mounts`] (the kernel: bind, unmount, mount table), [`volumes`] (publish and unpublish
//! on top of both), [`service`] (the Identity and Node gRPC services), [`registration`]
//! (the kubelet plugin-watcher Registration service), [`metrics`] (counters) and
//! [`lifecycle`] (keeping both sockets served, and shutdown).

pub mod api;
pub mod config;
pub mod lifecycle;
pub mod metrics;
pub mod mounts;
pub mod registration;
pub mod request;
pub mod service;
pub mod volumes;

pub use lifecycle::run;
