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
use crate::json::{self, Raw};
use crate::message::Listing;
use crate::mutate::Additions;
use crate::raw::{BorrowedKey, NeverRead, Pod, ReadPod};
use crate::settings::Settings;
use crate::settings::errors::SettingsError;
use crate::write;
use crate::write::OwnJson;
use crate::{mutate, select, settings};
use kubewarden_policy_sdk::response::ValidationResponse;
use kubewarden_policy_sdk::settings::SettingsValidationResponse;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

/// Room for an answer's fields but the pod (decision, warnings), usually enough.
const ANSWER_FIELDS_SIZE: usize = 1024;
/// HTTP code of a rejection: the object is not a pod.
const BAD_REQUEST: u16 = 400;
/// The audit annotation that records the decision, for pods created by controllers
/// whose warnings nobody reads.
pub const AUDIT_KEY: &str = "mutation";

/// The `validate` payload: the policy settings (absent and `null` are both `None`) and
/// the AdmissionRequest.
struct Payload<'a> {
    settings: Option<Raw<'a>>,
    request: AdmissionRequest<'a>,
}

/// The fields of the AdmissionRequest the policy reads; the rest (userInfo, oldObject,
/// options…) is skipped without being built.
struct AdmissionRequest<'a> {
    kind: GroupVersionKind,
    operation: String,
    /// The pod's namespace (its `metadata.namespace` may be unset at admission).
    namespace: String,
    /// `null` or absent reads as not an object, and is rejected.
    object: Pod<'a>,
}

/// Reads a [`Payload`], its pod by [`ReadPod`] with these keys kept raw.
///
/// By hand, not derived: serde's derive has no way to hand the keys down to the pod.
/// Like the derived reader it was, it refuses a repeated field and a missing `request`.
struct ReadPayload<'n>(&'n NeverRead);

impl<'de> DeserializeSeed<'de> for ReadPayload<'_> {
    type Value = Payload<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Payload<'de>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ReadPayload<'_> {
    type Value = Payload<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a validate payload: {request, settings}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Payload<'de>, A::Error> {
        let (mut settings, mut request) = (None, None);
        while let Some(key) = map.next_key_seed(BorrowedKey)? {
            match &*key {
                "settings" => once(&mut settings, "settings", map.next_value()?)?,
                "request" => once(
                    &mut request,
                    "request",
                    map.next_value_seed(ReadRequest(self.0))?,
                )?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Payload {
            settings: settings.flatten(),
            request: request.ok_or_else(|| de::Error::missing_field("request"))?,
        })
    }
}

/// Reads an [`AdmissionRequest`], its object by [`ReadPod`] with these keys kept raw.
struct ReadRequest<'n>(&'n NeverRead);

impl<'de> DeserializeSeed<'de> for ReadRequest<'_> {
    type Value = AdmissionRequest<'de>;

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<AdmissionRequest<'de>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ReadRequest<'_> {
    type Value = AdmissionRequest<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an AdmissionRequest")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AdmissionRequest<'de>, A::Error> {
        let (mut kind, mut operation, mut namespace, mut object) = (None, None, None, None);
        while let Some(key) = map.next_key_seed(BorrowedKey)? {
            match &*key {
                "kind" => once(&mut kind, "kind", map.next_value()?)?,
                "operation" => once(&mut operation, "operation", map.next_value()?)?,
                "namespace" => once(&mut namespace, "namespace", map.next_value()?)?,
                "object" => once(&mut object, "object", map.next_value_seed(ReadPod(self.0))?)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(AdmissionRequest {
            kind: kind.unwrap_or_default(),
            operation: operation.unwrap_or_default(),
            namespace: namespace.unwrap_or_default(),
            object: object.unwrap_or_else(Pod::not_an_object),
        })
    }
}

/// Sets a field read once; a repeated one is an error, as serde's derive makes it.
fn once<T, E: de::Error>(slot: &mut Option<T>, field: &'static str, value: T) -> Result<(), E> {
    match slot.replace(value) {
        Some(_) => Err(E::duplicate_field(field)),
        None => Ok(()),
    }
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

/// Settings as the policy server sent them (their JSON text), what they parse to with
/// what their method adds to every pod, and the keys of a pod the policy under them
/// never reads.
struct ReadSettings {
    given: Box<str>,
    parsed: Result<(Settings, Additions), SettingsError>,
    never_read: NeverRead,
}

thread_local! {
    /// The last settings read. The policy server sends the same settings with every
    /// request to a module instance, so they are read once, not at every admission.
    static LAST_SETTINGS: Cell<Option<Rc<ReadSettings>>> = const { Cell::new(None) };
}

/// The settings of the last call, if any: the policy server's usual next settings.
fn last_settings() -> Option<Rc<ReadSettings>> {
    LAST_SETTINGS.with(|last| {
        let read = last.take();
        last.set(read.clone());
        read
    })
}

/// `given` read: from [`LAST_SETTINGS`] when they are the same text, else parsed anew.
fn read_settings(given: Option<Raw<'_>>) -> Rc<ReadSettings> {
    // The policy server sends `null` when spec.settings is omitted: the defaults.
    let given = given.map_or("null", |given| given.get());
    LAST_SETTINGS.with(|last| {
        let read = last
            .take()
            .filter(|last| *last.given == *given)
            .unwrap_or_else(|| {
                let parsed = match json::from_str(given) {
                    Ok(Value::Null) => Ok(Settings::default()),
                    Ok(value) => settings::parse(value),
                    // Not reached: the payload they came in parsed, so they are JSON.
                    Err(_) => Err(SettingsError::NotAMapping(given.to_string())),
                };
                // Invalid settings leave the pod unread: any keys do.
                let never_read = parsed
                    .as_ref()
                    .map_or_else(|_| NeverRead::fixed(), NeverRead::of);
                Rc::new(ReadSettings {
                    given: given.into(),
                    parsed: parsed.map(|settings| {
                        let additions = Additions::of(&settings.method);
                        (settings, additions)
                    }),
                    never_read,
                })
            });
        last.set(Some(Rc::clone(&read)));
        read
    })
}

/// `payload` read as UTF-8 text, then as JSON by the module's one reader ([`json`]).
/// Checked once here, the text need not be checked again in each string and raw part.
fn from_json_text<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, String> {
    let text = json::text(payload).map_err(|e| e.to_string())?;
    json::from_str(text).map_err(|e| e.to_string())
}

/// The `validate` payload's text read, its pod without the `never_read` keys.
fn read_payload<'a>(text: &'a str, never_read: &NeverRead) -> Result<Payload<'a>, String> {
    json::from_str_seed(text, ReadPayload(never_read)).map_err(|e| e.to_string())
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
pub struct Answer {
    accepted: bool,
    message: Option<String>,
    code: Option<u16>,
    /// The audit annotation's text, under [`AUDIT_KEY`].
    audit_note: Option<String>,
    warnings: Option<Vec<String>>,
    /// JSON already: spliced in by [`Answer::to_json`].
    mutated_object: Option<Vec<u8>>,
}

impl Answer {
    /// The answer's JSON, written by [`write`] (no serde derive: the fields are few and
    /// fixed), the pod spliced in as written, never parsed again. The fields in the SDK's
    /// wire names and serde's order, `null` for what is absent, as serde wrote them.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let object = self.mutated_object.as_deref().unwrap_or(b"null");
        // Sized for the pod once: growing it step by step copied the pod each time.
        let mut out = Vec::with_capacity(object.len() + ANSWER_FIELDS_SIZE);
        out.extend_from_slice(if self.accepted {
            br#"{"accepted":true,"message":"#
        } else {
            br#"{"accepted":false,"message":"#
        });
        or_null(&mut out, self.message.as_deref(), write::string);
        out.extend_from_slice(br#","code":"#);
        match self.code {
            Some(code) => write::value(&mut out, &Value::from(code))?,
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(br#","audit_annotations":"#);
        or_null(&mut out, self.audit_note.as_deref(), |out, note| {
            out.extend_from_slice(br#"{""#);
            out.extend_from_slice(AUDIT_KEY.as_bytes());
            out.extend_from_slice(br#"":"#);
            write::string(out, note);
            out.push(b'}');
        });
        out.extend_from_slice(br#","warnings":"#);
        or_null(&mut out, self.warnings.as_deref(), |out, warnings| {
            out.push(b'[');
            for (i, warning) in warnings.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write::string(out, warning);
            }
            out.push(b']');
        });
        out.extend_from_slice(br#","mutated_object":"#);
        out.extend_from_slice(object);
        out.push(b'}');
        Ok(out)
    }
}

/// Writes `field` by `write_field`, or `null` when it is absent.
fn or_null<T: ?Sized>(
    out: &mut Vec<u8>,
    field: Option<&T>,
    write_field: impl FnOnce(&mut Vec<u8>, &T),
) {
    match field {
        Some(field) => write_field(out, field),
        None => out.extend_from_slice(b"null"),
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
            audit_annotations: answer
                .audit_note
                .map(|note| HashMap::from([(AUDIT_KEY.to_string(), note)])),
            warnings: answer.warnings,
        }
    }
}

/// Answers a `validate` call as the SDK's type: [`answer`], the pod parsed.
pub fn validate(payload: &[u8]) -> ValidationResponse {
    answer(payload).into()
}

/// Answers a `validate` call: accept, accept with the mutated pod, or reject an unreadable pod.
///
/// The settings come after the pod in the payload, so the pod is read by what the last
/// call's settings never read (a host that keeps its module instance), or, in a fresh
/// instance (Kubewarden's policy server makes one for every request), by what no
/// settings read ([`NeverRead::most`]); when that is not this call's settings' list, the
/// keys they read are then read from the raw parts ([`Pod::read_more`]).
pub fn answer(payload: &[u8]) -> Answer {
    let unreadable = |e: String| {
        reject(format!(
            "agent-mount: cannot read the admission request: {e}"
        ))
    };
    let text = match json::text(payload) {
        Ok(text) => text,
        Err(e) => return unreadable(e.to_string()),
    };
    let guess = last_settings();
    let most;
    let first = match &guess {
        Some(guess) => &guess.never_read,
        None => {
            most = NeverRead::most();
            &most
        }
    };
    let payload = match read_payload(text, first) {
        Ok(payload) => payload,
        Err(e) => return unreadable(e),
    };
    if payload.request.operation != "CREATE" || !payload.request.kind.is_core_v1_pod() {
        return accept(None, Vec::new(), None);
    }
    let read = read_settings(payload.settings);
    let request = payload.request;
    let (settings, additions) = match &read.parsed {
        Ok((settings, additions)) => (settings, additions),
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
    let mut pod = request.object;
    // Read by other settings' lists (a fresh instance, or the settings changed): what
    // this call's settings read is read now, from the raw parts, without a second pass.
    if !guess.is_some_and(|guess| Rc::ptr_eq(&guess, &read))
        && let Err(e) = pod.read_more(&read.never_read)
    {
        return unreadable(e.to_string());
    }
    match decide_by(
        &mut pod.value,
        settings,
        additions,
        &request.namespace,
        &mut pod.own_json,
    ) {
        Decision::Reject(message) => reject(message),
        Decision::Accept {
            changed: true,
            mut warnings,
            note,
        } => match pod.write(text) {
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
    let mut own_json = OwnJson::default();
    let decision = decide_by(
        pod,
        settings,
        &Additions::of(&settings.method),
        namespace,
        &mut own_json,
    );
    // The entries the policy added as JSON text, as the written pod has them.
    own_json.unfold(pod);
    decision
}

/// [`decide`] with the [`Additions`] of `settings`' method built already; what the
/// policy adds as JSON text is recorded in `own_json`, for the writer.
fn decide_by(
    pod: &mut Value,
    settings: &Settings,
    additions: &Additions,
    namespace: &str,
    own_json: &mut OwnJson,
) -> Decision {
    // The audit note's parts are written before the pod changes (the names borrow it),
    // into one string: the containers listed, then the activation note.
    let (selection, activated, listed, names_end) = match select::container_names(pod) {
        Ok(names) => {
            let selection = select::instrumented_containers(pod, &names, settings);
            let activated = settings
                .activation
                .as_ref()
                .map(|a| annotation::choose(pod, &names, &selection.containers, a))
                .unwrap_or_default();
            let mut listed = String::with_capacity(NOTE_SIZE);
            let mut containers = Listing::new(&mut listed);
            for name in selection.containers.iter().filter_map(|&i| names.get(i)) {
                containers.push(name);
            }
            containers.finish();
            let names_end = listed.len();
            activation_note(&mut listed, &names, &activated.containers);
            (selection, activated, listed, names_end)
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
    let outcome = mutate::mutate_by(pod, &selection.containers, settings, additions, own_json)
        .and_then(|mounted| {
            let Some(activation) = &settings.activation else {
                return Ok(mounted);
            };
            // After mounting: the merge is all or nothing with the mounts.
            let done =
                activation::activate(pod, &activated.containers, activation, namespace, own_json)?;
            warnings.extend(done.warnings);
            Ok(mounted | done.changed)
        });
    match outcome {
        Ok(changed) => {
            // Pushed, not `format!`ed: this note is written for every pod selected.
            let (names, activation_note) = listed.split_at_checked(names_end).unwrap_or_default();
            let mut note = String::with_capacity(NOTE_SIZE + listed.len());
            if changed {
                note.push_str(method);
                note.push_str(": added the agents to containers ");
                note.push_str(&listed);
            } else {
                note.push_str("unchanged: containers ");
                note.push_str(names);
                note.push_str(" already have the agents by ");
                note.push_str(method);
                note.push_str(activation_note);
            }
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

/// Room for the usual audit note, written once per pod selected: the method, the words
/// around them and a few names.
const NOTE_SIZE: usize = 128;

/// Appends the audit note's "; activated checkout=java, …" part to `out`; nothing when
/// nothing is activated.
fn activation_note(out: &mut String, names: &[&str], activated: &[annotation::Chosen]) {
    let mut pairs = activated
        .iter()
        .filter_map(|chosen| Some((names.get(chosen.index)?, chosen.agent)))
        .peekable();
    if pairs.peek().is_none() {
        return;
    }
    out.push_str("; activated ");
    let mut listed = Listing::new(out);
    // Each pair written into one string, reused: listed as one name, as it is shown.
    let mut pair = String::new();
    for (name, agent) in pairs {
        pair.clear();
        pair.push_str(name);
        pair.push('=');
        pair.push_str(agent);
        listed.push(&pair);
    }
    listed.finish();
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
        audit_note: decision,
        warnings: (!warnings.is_empty()).then_some(warnings),
    }
}

fn reject(message: String) -> Answer {
    Answer {
        accepted: false,
        message: Some(message),
        code: Some(BAD_REQUEST),
        mutated_object: None,
        audit_note: None,
        warnings: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer's bytes for each kind of answer: the fields in the SDK's wire names and
    /// serde's order, `null` for what is absent, strings escaped as serde_json escapes them.
    #[rstest::rstest]
    #[case::accepted_with_the_pod(
        accept(
            Some(br#"{"a":1}"#.to_vec()),
            vec!["w\"1".into(), "w2".into()],
            Some("note \u{1}/é".into())
        ),
        r#"{"accepted":true,"message":null,"code":null,"audit_annotations":{"mutation":"note \u0001/é"},"warnings":["w\"1","w2"],"mutated_object":{"a":1}}"#
    )]
    #[case::accepted_unchanged(
        accept(None, Vec::new(), None),
        r#"{"accepted":true,"message":null,"code":null,"audit_annotations":null,"warnings":null,"mutated_object":null}"#
    )]
    #[case::rejected(
        reject("not a \"pod\"\n".into()),
        r#"{"accepted":false,"message":"not a \"pod\"\n","code":400,"audit_annotations":null,"warnings":null,"mutated_object":null}"#
    )]
    fn the_answer_is_written_as_the_sdk_reads_it(#[case] answer: Answer, #[case] expected: &str) {
        let json = answer.to_json().unwrap();
        assert_eq!(String::from_utf8(json.clone()).unwrap(), expected);
        let read: ValidationResponse = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            serde_json::to_value(read).unwrap(),
            serde_json::to_value(ValidationResponse::from(answer)).unwrap()
        );
    }

    /// The note lists `name=agent` pairs as [`crate::message::listing`] lists names, quotes and cuts included.
    #[test]
    fn the_activation_note_lists_name_agent_pairs() {
        let recipe = crate::activation::Recipe {
            directory: "agents".into(),
            env: Vec::new(),
        };
        let names = ["app", "quo\"te", "side"];
        let chosen = |index, agent| annotation::Chosen {
            index,
            agent,
            recipe: &recipe,
        };
        let activated = [chosen(0, "java"), chosen(1, "node"), chosen(7, "gone")];
        let note = |activated: &[annotation::Chosen]| {
            let mut out = "before".to_string();
            activation_note(&mut out, &names, activated);
            out.split_off("before".len())
        };
        assert_eq!(
            note(&activated),
            format!("; activated \"app=java\", {:?}", "quo\"te=node")
        );
        assert_eq!(note(&[]), "");
    }
}
