//! The roundtrip floor of the policy bench (issue 24): a module built like the policy
//! (`wasm32-wasip1`, the `policy` profile) that reads the whole request into a
//! `serde_json::Value` and accepts it, returning the object as `mutated_object`.
//!
//! Any mutating policy that builds the pod as a `Value` pays at least this much, so the
//! bench reports the policy's `validate` as a ratio to it. Its `noop` answers without
//! reading the request: what the waPC call itself costs (the payload copied in, an
//! answer copied out), the part of the budget no policy can save.

use kubewarden_policy_sdk::response::ValidationResponse;
use kubewarden_policy_sdk::wapc_guest::prelude::{CallResult, register_function};
use serde_json::Value;

/// Registers the two functions the bench calls.
#[unsafe(no_mangle)]
pub extern "C" fn wapc_init() {
    register_function("validate", validate);
    register_function("noop", noop);
}

/// Answers "accepted" without reading the payload.
fn noop(_payload: &[u8]) -> CallResult {
    Ok(br#"{"accepted":true}"#.to_vec())
}

/// Parses the payload and answers "accepted", the request's object as the mutated object.
fn validate(payload: &[u8]) -> CallResult {
    let mut payload: Value = serde_json::from_slice(payload)?;
    let object = payload
        .pointer_mut("/request/object")
        .map(Value::take)
        .unwrap_or_default();
    let response = ValidationResponse {
        accepted: true,
        message: None,
        code: None,
        mutated_object: Some(object),
        audit_annotations: None,
        warnings: None,
    };
    Ok(serde_json::to_vec(&response)?)
}
