//! agent-mount device plugin: advertises an extended resource to the kubelet and
//! answers `Allocate` with a read-only mount of the node's agent directory.
//!
//! Modules: [`config`] (flags), [`api`] (generated v1beta1 types), [`service`]
//! (the gRPC handlers), [`lifecycle`] (serve, register, re-register after kubelet
//! restarts, shutdown), [`health`] (device health from the agent directory),
//! [`metrics`] (Prometheus and `/healthz`), [`uds`] (gRPC over unix sockets) and
//! [`probe`] (the exec probe).

pub mod api;
pub mod config;
pub mod health;
pub mod lifecycle;
pub mod metrics;
pub mod probe;
pub mod service;
pub mod uds;
