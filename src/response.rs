//! The admission answer: reads the request, selects containers, mutates, and words the response.
//!
//! Only an object that cannot be read as a pod is rejected (code 400). Every other
//! problem, a conflict included, accepts the pod unchanged with a warning, so that
//! the policy never blocks workloads.

use crate::{mutate, select, settings};
use kubewarden_policy_sdk::response::ValidationResponse;
use kubewarden_policy_sdk::settings::SettingsValidationResponse;
use serde::Deserialize;
use serde_json::Value;

/// HTTP code of a rejection: the object is not a pod.
const BAD_REQUEST: u16 = 400;

/// The `validate` payload: the policy settings and the AdmissionRequest.
#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    settings: Value,
    request: AdmissionRequest,
}

/// The fields of the AdmissionRequest the policy reads; serde skips the rest
/// (userInfo, oldObject, options…) without building them.
#[derive(Deserialize)]
struct AdmissionRequest {
    #[serde(default)]
    kind: GroupVersionKind,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    object: Value,
}

/// The kind of the object under admission.
#[derive(Default, Deserialize)]
struct GroupVersionKind {
    #[serde(default)]
    group: String,
    #[serde(default)]
    kind: String,
}

/// Answers a `validate_settings` call: always a response, never an error.
pub fn validate_settings(payload: &[u8]) -> SettingsValidationResponse {
    let outcome = serde_json::from_slice::<Value>(payload)
        .map_err(|e| format!("settings: not valid JSON: {e}"))
        .and_then(|value| match value {
            // The policy server sends `null` when spec.settings is omitted.
            Value::Null => settings::parse(Value::Object(Default::default())),
            value => settings::parse(value),
        });
    SettingsValidationResponse {
        valid: outcome.is_ok(),
        message: outcome.err(),
    }
}

/// Answers a `validate` call: accept, accept with the mutated pod, or reject an unreadable pod.
pub fn validate(payload: &[u8]) -> ValidationResponse {
    let payload: Payload = match serde_json::from_slice(payload) {
        Ok(payload) => payload,
        Err(e) => {
            return reject(format!(
                "agent-mount: cannot read the admission request: {e}"
            ));
        }
    };
    let settings = match payload.settings {
        Value::Null => Ok(settings::Settings::default()),
        value => settings::parse(value),
    };
    let settings = match settings {
        Ok(settings) => settings,
        Err(e) => {
            let warning = format!("agent-mount: invalid policy settings, pod left unchanged: {e}");
            return accept(None, vec![warning]);
        }
    };
    let request = payload.request;
    if request.operation != "CREATE" || request.kind.kind != "Pod" || !request.kind.group.is_empty()
    {
        return accept(None, Vec::new());
    }
    let mut pod = request.object;
    let selection = match select::container_names(&pod) {
        Ok(names) => select::instrumented_containers(&pod, &names, &settings),
        Err(e) => {
            return reject(format!(
                "agent-mount: the object cannot be read as a pod: {e}"
            ));
        }
    };
    let mut warnings = selection.warnings;
    if selection.containers.is_empty() {
        return accept(None, warnings);
    }
    match mutate::mutate(&mut pod, &selection.containers, &settings) {
        Ok(true) => accept(Some(pod), warnings),
        Ok(false) => accept(None, warnings),
        Err(conflict) => {
            warnings.push(format!("agent-mount: pod left unchanged: {conflict}"));
            accept(None, warnings)
        }
    }
}

fn accept(mutated_object: Option<Value>, warnings: Vec<String>) -> ValidationResponse {
    ValidationResponse {
        accepted: true,
        message: None,
        code: None,
        mutated_object,
        audit_annotations: None,
        warnings: (!warnings.is_empty()).then_some(warnings),
    }
}

fn reject(message: String) -> ValidationResponse {
    ValidationResponse {
        accepted: false,
        message: Some(message),
        code: Some(BAD_REQUEST),
        mutated_object: None,
        audit_annotations: None,
        warnings: None,
    }
}
