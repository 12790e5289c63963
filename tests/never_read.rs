//! The keys `raw` keeps raw are never read: for every method, activation off and on, a
//! typical pod whose never-read keys under those settings (`NeverRead::of`: spec, every
//! container of the three lists, metadata) hold sentinels of every JSON type gets the
//! same answer from the policy, which never sees them, as the policy's work on the same
//! pod read whole gives; and the answer's pod holds each sentinel byte for byte. The
//! answers come one after the other on one thread, each settings after other ones, so
//! the pod read by the last call's settings is read again whenever they change.
// Test and bench code: helpers fail loudly too (clippy.toml allows this in #[test] functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use agent_mount::raw::{CONTAINER_LISTS, NeverRead};
use agent_mount::response::{AUDIT_KEY, Decision, answer, decide};
use agent_mount::settings;
use agent_mount_common::MountMethod;
use kubewarden_policy_sdk::response::ValidationResponse;
use serde_json::{Value, json};
use support::{fixture, method_settings, payload};

/// A JSON text of its own spelling (serde_json writes it `1.5`): seen in the answer only
/// if the key's value was copied byte for byte.
const RAW_NUMBER: &str = "1.50";
/// Replaced by [`RAW_NUMBER`] in the payload's text.
const PLACEHOLDER: &str = "never-read sentinel";

/// Sets every `never_read` key of `object` to `sentinel`; returns how many it set.
fn set_never_read(object: &mut Value, never_read: &NeverRead, sentinel: &Value) -> usize {
    let set = |target: &mut Value, keys: &[&str]| {
        for key in keys {
            target[*key] = sentinel.clone();
        }
        keys.len()
    };
    let mut count = set(&mut object["metadata"], &never_read.metadata);
    count += set(&mut object["spec"], &never_read.spec);
    for list in CONTAINER_LISTS {
        let keys = if list == "containers" {
            &never_read.app_container
        } else {
            &never_read.other_container
        };
        if let Some(containers) = object["spec"][list].as_array_mut() {
            for container in containers {
                count += set(container, keys);
            }
        }
    }
    count
}

/// The typical pod, its own init container and an ephemeral one, annotated for activation.
fn typical() -> Value {
    let mut request = fixture("pod_typical.json");
    request["object"]["spec"]["ephemeralContainers"] =
        json!([{"name": "debugger", "image": "busybox", "targetContainerName": "checkout"}]);
    request["object"]["metadata"]["annotations"]["agent-mount.io/agents"] =
        json!("checkout=java, cache-warmer=python");
    request
}

/// The settings of `method`, activation on or off.
fn settings_of(method: MountMethod, activation: bool) -> Value {
    let mut settings = method_settings(method);
    if activation {
        settings["activation"] = json!({"env": [
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://collector:4317"}
        ]});
    }
    settings
}

#[test]
fn never_read_keys_change_nothing_the_policy_does_and_come_back_byte_for_byte() {
    let sentinels = [
        json!(null),
        json!(true),
        json!(7),
        json!(PLACEHOLDER),
        json!("sentinel"),
        json!([{"name": "sentinel", "value": "x"}]),
        // What the policy looks for in the objects it reads (Windows pods, host-process
        // containers, pod-level resources, volume sources).
        json!({"name": "windows", "windowsOptions": {"hostProcess": true},
               "requests": {"cpu": "1"}, "limits": {"cpu": "1"}, "emptyDir": {}}),
    ];
    let mut runs = 0;
    for method in MountMethod::ALL {
        for activation in [false, true] {
            let settings = settings_of(method, activation);
            let parsed = settings::parse(settings.clone()).unwrap();
            let never_read = NeverRead::of(&parsed);
            for sentinel in &sentinels {
                let case = format!(
                    "{} activation={activation} sentinel={sentinel}",
                    method.as_str()
                );
                let mut request = typical();
                let count = set_never_read(&mut request["object"], &never_read, sentinel);
                let text = String::from_utf8(payload(&request, &settings))
                    .unwrap()
                    .replace(&format!("\"{PLACEHOLDER}\""), RAW_NUMBER);
                // The policy's work on the pod read whole, the sentinels in it.
                let mut whole: Value = serde_json::from_str(&text).unwrap();
                let mut pod = whole["request"]["object"].take();
                let decision = decide(&mut pod, &parsed, "shop");
                let Decision::Accept {
                    changed,
                    warnings,
                    note,
                } = decision
                else {
                    panic!("{case}: rejected: {decision:?}");
                };
                let answered = answer(text.as_bytes());
                let json = String::from_utf8(answered.to_json().unwrap()).unwrap();
                let response: ValidationResponse = answered.into();
                assert!(response.accepted, "{case}");
                assert_eq!(response.warnings.unwrap_or_default(), warnings, "{case}");
                assert_eq!(
                    response.audit_annotations.unwrap()[AUDIT_KEY],
                    note,
                    "{case}"
                );
                assert!(changed, "{case}: the typical pod is mutated: {note}");
                assert_eq!(response.mutated_object, Some(pod), "{case}");
                if *sentinel == json!(PLACEHOLDER) {
                    assert_eq!(json.matches(RAW_NUMBER).count(), count, "{case}");
                }
                runs += 1;
            }
        }
    }
    assert_eq!(runs, MountMethod::ALL.len() * 2 * sentinels.len());
}
