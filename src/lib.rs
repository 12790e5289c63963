//! agent-mount: a Kubewarden policy that gives instrumented pods the node's observability agents.
//!
//! This file is the only one that knows about waPC: it registers the entry points
//! and delegates each to a pure function of [`response`].

pub mod activation;
pub mod allocator;
pub mod init_container;
pub mod json;
pub mod memcmp;
pub mod message;
pub mod mutate;
pub mod raw;
pub mod response;
pub mod select;
pub mod settings;
pub mod write;

use kubewarden_policy_sdk::protocol_version_guest;
use kubewarden_policy_sdk::wapc_guest::prelude::{CallResult, register_function};

/// Registers the policy's waPC functions; the host calls it once after loading the module.
#[unsafe(no_mangle)]
pub extern "C" fn wapc_init() {
    register_function("validate", validate);
    register_function("validate_settings", validate_settings);
    register_function("protocol_version", protocol_version_guest);
}

fn validate(payload: &[u8]) -> CallResult {
    Ok(response::answer(payload).to_json()?)
}

// Our own entry point, not the SDK's generic one: a deserialisation error becomes
// `valid: false` with the key's name, never a waPC error.
fn validate_settings(payload: &[u8]) -> CallResult {
    Ok(serde_json::to_vec(&response::validate_settings(payload))?)
}
