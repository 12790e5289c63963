//! The admission answer: reads the request, selects containers, mutates, and words the response.
//!
//! Only an object that cannot be read as a pod is rejected (code 400). Every other
//! problem, a conflict included, accepts the pod unchanged with a warning, so that
//! the policy never blocks workloads.
//!
//! The request is read borrowing from the payload: the settings as raw JSON, the pod as a
//! [`Pod`]. An unchanged pod is never written; a changed one is written once,
//! its untouched parts byte for byte.

use crate::activation::{self, annotation};
use crate::message::listing;
use crate::raw::Pod;
use crate::settings::Settings;
use crate::settings::errors::SettingsError;
use crate::{mutate, select, settings};
use kubewarden_policy_sdk::response::ValidationResponse;
use kubewarden_policy_sdk::settings::SettingsValidationResponse;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

/// HTTP code of a rejection: the object is not a pod.
const BAD_REQUEST: u16 = 400;
/// The audit annotation that records the decision, for pods created by controllers
/// whose warnings nobody reads.
pub const AUDIT_KEY: &str = "mutation";

/// The `validate` payload: the policy settings (absent and `null` are both `None`) and
/// the AdmissionRequest.
#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(default, borrow)]
    settings: Option<&'a RawValue>,
    #[serde(borrow)]
    request: AdmissionRequest<'a>,
}

/// The fields of the AdmissionRequest the policy reads; serde skips the rest
/// (userInfo, oldObject, options…) without building them.
#[derive(Deserialize)]
struct AdmissionRequest<'a> {
    #[serde(default)]
    kind: GroupVersionKind,
    #[serde(default)]
    operation: String,
    /// The pod's namespace (its `metadata.namespace` may be unset at admission).
    #[serde(default)]
    namespace: String,
    /// `null` or absent is `None`, rejected as not a JSON object.
    #[serde(default, borrow)]
    object: Option<Pod<'a>>,
}

/// The kind of the object under admission.
#[derive(Default, Deserialize)]
struct GroupVersionKind {
    #[serde(default)]
    group: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    kind: String,
}

impl GroupVersionKind {
    /// Only core `v1` Pods are mutated.
    fn is_core_v1_pod(&self) -> bool {
        self.group.is_empty() && self.version == "v1" && self.kind == "Pod"
    }
}

/// Settings as the policy server sent them (their JSON text), and what they parse to.
struct ReadSettings {
    given: Box<str>,
    parsed: Result<Settings, SettingsError>,
}

thread_local! {
    /// The last settings read. The policy server sends the same settings with every
    /// request to a module instance, so they are read once, not at every admission.
    static LAST_SETTINGS: Cell<Option<Rc<ReadSettings>>> = const { Cell::new(None) };
}

/// `given` read: from [`LAST_SETTINGS`] when they are the same text, else parsed anew.
fn read_settings(given: Option<&RawValue>) -> Rc<ReadSettings> {
    // The policy server sends `null` when spec.settings is omitted: the defaults.
    let given = given.map_or("null", RawValue::get);
    LAST_SETTINGS.with(|last| {
        let read = last
            .take()
            .filter(|last| *last.given == *given)
            .unwrap_or_else(|| {
                let parsed = match serde_json::from_str(given) {
                    Ok(Value::Null) => Ok(Settings::default()),
                    Ok(value) => settings::parse(value),
                    // Not reached: the payload they came in parsed, so they are JSON.
                    Err(_) => Err(SettingsError::NotAMapping(given.to_string())),
                };
                Rc::new(ReadSettings {
                    given: given.into(),
                    parsed,
                })
            });
        last.set(Some(Rc::clone(&read)));
        read
    })
}

/// `payload` read as UTF-8 text, then as JSON. Checked once here, the text lets serde_json
/// skip checking every string and raw part again (`from_slice` does): 4% of `validate`
/// in wasm on the typical pod. Every parse of the module goes through here or `from_str`,
/// so the module holds one instance of serde_json's parser.
fn from_json_text<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, String> {
    let text = std::str::from_utf8(payload).map_err(|e| e.to_string())?;
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// Answers a `validate_settings` call: always a response, never an error.
pub fn validate_settings(payload: &[u8]) -> SettingsValidationResponse {
    let outcome = match from_json_text::<Value>(payload) {
        Err(e) => Err(format!("settings: not valid JSON: {e}")),
        // The policy server sends `null` when spec.settings is omitted.
        Ok(Value::Null) => Ok(()),
        Ok(value) => settings::parse(value)
            .map(|_| ())
            .map_err(|e| e.to_string()),
    };
    SettingsValidationResponse {
        valid: outcome.is_ok(),
        message: outcome.err(),
    }
}

/// The answer to a `validate` call, as the SDK's [`ValidationResponse`] reads on the wire,
/// with the mutated pod as [`Pod::write`] wrote it.
#[derive(Serialize)]
pub struct Answer {
    accepted: bool,
    message: Option<String>,
    code: Option<u16>,
    audit_annotations: Option<HashMap<String, String>>,
    warnings: Option<Vec<String>>,
    /// Written by [`Answer::to_json`], not serde: it is JSON already.
    #[serde(skip)]
    mutated_object: Option<Vec<u8>>,
}

impl Answer {
    /// The answer's JSON, the pod spliced in as written, never parsed again.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = serde_json::to_vec(self)?;
        // serde_json writes a struct as one object: `{…}` becomes `{…,"mutated_object":…}`.
        out.pop();
        out.extend_from_slice(br#","mutated_object":"#);
        out.extend_from_slice(self.mutated_object.as_deref().unwrap_or(b"null"));
        out.push(b'}');
        Ok(out)
    }
}

impl From<Answer> for ValidationResponse {
    /// The SDK's type, for tests that read the answer: the pod parsed into a `Value`.
    fn from(answer: Answer) -> Self {
        ValidationResponse {
            accepted: answer.accepted,
            message: answer.message,
            code: answer.code,
            mutated_object: answer
                .mutated_object
                .and_then(|object| from_json_text(&object).ok()),
            audit_annotations: answer.audit_annotations,
            warnings: answer.warnings,
        }
    }
}

/// Answers a `validate` call as the SDK's type: [`answer`], the pod parsed.
pub fn validate(payload: &[u8]) -> ValidationResponse {
    answer(payload).into()
}

/// Answers a `validate` call: accept, accept with the mutated pod, or reject an unreadable pod.
pub fn answer(payload: &[u8]) -> Answer {
    let payload: Payload = match from_json_text(payload) {
        Ok(payload) => payload,
        Err(e) => {
            return reject(format!(
                "agent-mount: cannot read the admission request: {e}"
            ));
        }
    };
    let request = payload.request;
    if request.operation != "CREATE" || !request.kind.is_core_v1_pod() {
        return accept(None, Vec::new(), None);
    }
    let read = read_settings(payload.settings);
    let settings = match &read.parsed {
        Ok(settings) => settings,
        Err(e) => {
            let warning = format!(
                "agent-mount: invalid policy settings, pod left unchanged: {e}; fix the ClusterAdmissionPolicy's spec.settings"
            );
            return accept(
                None,
                vec![warning],
                Some("unchanged: invalid policy settings".into()),
            );
        }
    };
    let mut pod = request.object.unwrap_or_else(Pod::not_an_object);
    match decide(&mut pod.value, settings, &request.namespace) {
        Decision::Reject(message) => reject(message),
        Decision::Accept {
            changed: true,
            mut warnings,
            note,
        } => match pod.write() {
            Ok(object) => accept(Some(object), warnings, Some(note)),
            Err(e) => {
                warnings.push(format!(
                    "agent-mount: pod left unchanged: cannot write the mutated pod: {e}"
                ));
                accept(
                    None,
                    warnings,
                    Some("unchanged: cannot write the mutated pod".into()),
                )
            }
        },
        Decision::Accept {
            changed: false,
            warnings,
            note,
        } => accept(None, warnings, Some(note)),
    }
}

/// What the policy decided for a pod it read.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// The object cannot be read as a pod: the message says why.
    Reject(String),
    /// Accepted; `changed` when the policy changed the pod's `Value`.
    Accept {
        /// Whether the pod must be written back.
        changed: bool,
        /// For the admission response.
        warnings: Vec<String>,
        /// The audit annotation's text.
        note: String,
    },
}

/// The policy's work on a pod's `Value` (select, mutate, activate), changed in place;
/// `namespace` is the request's. Public so that a test can run it on a pod read whole.
pub fn decide(pod: &mut Value, settings: &Settings, namespace: &str) -> Decision {
    let (selection, names, activated, activation_note) = match select::container_names(pod) {
        Ok(names) => {
            let selection = select::instrumented_containers(pod, &names, settings);
            let chosen: Vec<&str> = selection
                .containers
                .iter()
                .filter_map(|&i| names.get(i).copied())
                .collect();
            let chosen = listing(&chosen);
            let activated = settings
                .activation
                .as_ref()
                .map(|a| annotation::choose(pod, &names, &selection.containers, a))
                .unwrap_or_default();
            let pairs: Vec<String> = activated
                .containers
                .iter()
                .filter_map(|c| Some(format!("{}={}", names.get(c.index)?, c.agent)))
                .collect();
            let pairs: Vec<&str> = pairs.iter().map(String::as_str).collect();
            let note = if pairs.is_empty() {
                String::new()
            } else {
                format!("; activated {}", listing(&pairs))
            };
            (selection, chosen, activated, note)
        }
        Err(e) => {
            return Decision::Reject(format!(
                "agent-mount: the object cannot be read as a pod: {e}"
            ));
        }
    };
    let mut warnings = selection.warnings;
    warnings.extend(activated.warnings);
    if selection.containers.is_empty() {
        return Decision::Accept {
            changed: false,
            warnings,
            note: "unchanged: no container selected".into(),
        };
    }
    let method = settings.method.kind().as_str();
    let outcome = mutate::mutate(pod, &selection.containers, settings).and_then(|mounted| {
        let Some(activation) = &settings.activation else {
            return Ok(mounted);
        };
        // After mounting: the merge is all or nothing with the mounts.
        let done = activation::activate(pod, &activated.containers, activation, namespace)?;
        warnings.extend(done.warnings);
        Ok(mounted | done.changed)
    });
    match outcome {
        Ok(changed) => {
            let note = if changed {
                format!("{method}: added the agents to containers {names}{activation_note}")
            } else {
                format!(
                    "unchanged: containers {names} already have the agents by {method}{activation_note}"
                )
            };
            Decision::Accept {
                changed,
                warnings,
                note,
            }
        }
        Err(conflict) => {
            let conflict = conflict.to_string();
            warnings.push(format!("agent-mount: pod left unchanged: {conflict}"));
            Decision::Accept {
                changed: false,
                warnings,
                note: format!("unchanged: {conflict}"),
            }
        }
    }
}

fn accept(
    mutated_object: Option<Vec<u8>>,
    warnings: Vec<String>,
    decision: Option<String>,
) -> Answer {
    Answer {
        accepted: true,
        message: None,
        code: None,
        mutated_object,
        audit_annotations: decision.map(|d| HashMap::from([(AUDIT_KEY.to_string(), d)])),
        warnings: (!warnings.is_empty()).then_some(warnings),
    }
}

fn reject(message: String) -> Answer {
    Answer {
        accepted: false,
        message: Some(message),
        code: Some(BAD_REQUEST),
        mutated_object: None,
        audit_annotations: None,
        warnings: None,
    }
}
