//! runner: a native waPC host for the agent-mount policy.
//!
//! It loads the built `.wasm` the way the Kubewarden policy server does (wasmtime,
//! WASI, waPC), and drives the demo, the integration tests and the bench.

pub mod build;
pub mod env;
pub mod host;
pub mod input;
pub mod view;
