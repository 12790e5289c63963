//! The kubelet device plugin (`agent-mount-node device-plugin`, DESIGN §3a): advertises an
//! extended resource and answers `Allocate` with a read-only mount of the agent directory.
//!
//! [`config`] (flags), [`api`] (the generated v1beta1 types), [`state`] (what the parts
//! share), [`service`] (the gRPC handlers), [`plan`] (the registration lifecycle as a pure
//! function), [`lifecycle`] (its I/O shell), [`health`] (device health from the agent
//! directory).

pub mod api;
pub mod config;
pub mod health;
pub mod lifecycle;
pub mod plan;
pub mod service;
pub mod state;

pub use lifecycle::run;
