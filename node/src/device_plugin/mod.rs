//! The kubelet device plugin (`agent-mount-node device-plugin`, DESIGN §3a): advertises an
//! extended resource and answers `Allocate` with a read-only mount of the agent directory.
//!
//! [`state`] (what the parts share), [`service`] (the gRPC handlers), [`decide`] (the
//! lifecycle as a pure function), [`lifecycle`] (its I/O shell), [`health`] (device health
//! from the agent directory).

pub mod decide;
pub mod health;
pub mod lifecycle;
pub mod service;
pub mod state;

pub use lifecycle::run;
