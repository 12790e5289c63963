//! What the methods add passes Pod Security `restricted`: the copy container, and only
//! restricted volume types (no hostPath) for every method but host-path.
// Test and bench code: helpers fail loudly too (clippy.toml allows this in #[test] functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use agent_mount::init_container::schema::{Key, Shape};
use agent_mount::response::validate;
use agent_mount::settings::parse;
use agent_mount_common::MountMethod;
use rstest::rstest;
use serde_json::{Value, json};
use support::{fixture, method_settings, payload};

fn init_settings(extra: Value) -> Value {
    let mut settings = method_settings(MountMethod::InitContainer);
    for (k, v) in extra.as_object().unwrap() {
        settings[k] = v.clone();
    }
    settings
}

fn mutated(name: &str, settings: &Value) -> Value {
    validate(&payload(&fixture(name), settings))
        .mutated_object
        .expect("mutated")
}

/// Volume types PSA `restricted` allows. `image` since Kubernetes 1.33
/// (kubernetes/kubernetes#130394, pod-security-admission's restricted volume check);
/// the Pod Security Standards page lags behind the code.
const RESTRICTED_VOLUMES: [&str; 9] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Every PSA `restricted` (and so `baseline`) rule a container breaks, per the Pod Security Standards.
fn restricted_violations(container: &Value) -> Vec<String> {
    let sc = &container["securityContext"];
    let mut out = Vec::new();
    if sc["privileged"] == true {
        out.push("privileged".into());
    }
    if sc["allowPrivilegeEscalation"] != false {
        out.push("allowPrivilegeEscalation must be false".into());
    }
    if sc["runAsNonRoot"] != true {
        out.push("runAsNonRoot must be true".into());
    }
    if sc["runAsUser"].as_i64().is_none_or(|uid| uid <= 0) {
        out.push("runAsUser must be a non-zero number".into());
    }
    if !matches!(
        sc["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault" | "Localhost")
    ) {
        out.push("seccompProfile.type must be RuntimeDefault or Localhost".into());
    }
    let drop = sc["capabilities"]["drop"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !drop.contains(&json!("ALL")) {
        out.push("capabilities must drop ALL".into());
    }
    let add = sc["capabilities"]["add"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if add.iter().any(|c| c != "NET_BIND_SERVICE") {
        out.push("capabilities may add only NET_BIND_SERVICE".into());
    }
    if sc
        .get("windowsOptions")
        .is_some_and(|w| w["hostProcess"] == true)
    {
        out.push("hostProcess".into());
    }
    if container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p.get("hostPort").is_some())
    {
        out.push("hostPort".into());
    }
    if sc["appArmorProfile"]["type"] == "Unconfined" {
        out.push("appArmorProfile Unconfined".into());
    }
    if sc.get("procMount").is_some_and(|p| p != "Default") {
        out.push("procMount".into());
    }
    out
}

#[rstest]
#[case::defaults(json!({}))]
#[case::per_agent_with_limit(json!({"agentDirectories": ["java"], "initContainer": {"image": "a:1", "sizeLimit": "64Mi"}}))]
fn everything_added_passes_psa_restricted(#[case] extra: Value) {
    let settings = init_settings(extra);
    let pod = mutated("pod_typical.json", &settings);
    let copy = &pod["spec"]["initContainers"][0];
    assert_eq!(copy["name"], "odigos-agent-init");
    assert_eq!(restricted_violations(copy), Vec::<String>::new());
    // The volume it adds is checked with every method's below. The checker is real: the fixture's own istio-init (NET_ADMIN, root) fails it.
    assert!(!restricted_violations(&pod["spec"]["initContainers"][1]).is_empty());
}

#[test]
fn overriding_the_user_keeps_the_rest_of_the_hardening() {
    let settings = init_settings(
        json!({"initContainer": {"image": "a:1", "securityContext": {"runAsUser": 1000}}}),
    );
    let copy = &mutated("pod_small.json", &settings)["spec"]["initContainers"][0];
    assert_eq!(copy["securityContext"]["runAsUser"], 1000);
    assert_eq!(restricted_violations(copy), Vec::<String>::new());
}

/// Every method but host-path adds only volume types PSA `restricted` admits.
#[test]
fn only_restricted_volume_types_are_added() {
    let original = fixture("pod_typical.json");
    let before = original["object"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .len();
    for method in MountMethod::ALL {
        match method {
            // A hostPath volume is that method; PSA baseline refuses it, as the README says.
            MountMethod::HostPath => continue,
            MountMethod::VirtualDevice
            | MountMethod::InitContainer
            | MountMethod::CsiDriver
            | MountMethod::ImageVolume => {}
        }
        let pod = mutated("pod_typical.json", &method_settings(method));
        let volumes = pod["spec"]["volumes"].as_array().unwrap();
        for added in &volumes[before..] {
            let kind = added
                .as_object()
                .unwrap()
                .keys()
                .find(|k| *k != "name")
                .unwrap();
            assert!(
                RESTRICTED_VOLUMES.contains(&kind.as_str()),
                "{method:?}: {kind}"
            );
        }
        assert!(
            volumes.iter().all(|v| v.get("hostPath").is_none()),
            "{method:?}: {volumes:?}"
        );
    }
}

/// The copy container is a Linux container: `windowsOptions` in its securityContext is
/// refused at load (the API server refuses it in a Linux pod, and Windows pods are left
/// alone). Seen failing before: the setting was accepted.
#[test]
fn windows_options_for_the_copy_container_are_refused_at_load() {
    let settings = init_settings(json!({"initContainer": {"image": "a:1",
        "securityContext": {"windowsOptions": {"hostProcess": true}}}}));
    let response =
        agent_mount::response::validate_settings(&serde_json::to_vec(&settings).unwrap());
    assert!(!response.valid);
    let message = response.message.unwrap();
    assert!(
        message.starts_with("initContainer.securityContext.windowsOptions"),
        "{message}"
    );
    assert!(message.contains("Linux container"), "{message}");
}

/// The field names a k8s-openapi type reads, as its `Deserialize` hands them to
/// `deserialize_struct`: the key set of that Kubernetes object in the build.
fn k8s_fields<T: serde::de::DeserializeOwned>() -> Vec<&'static str> {
    /// Carries the field list out of the deserializer.
    #[derive(Debug)]
    struct Fields(&'static [&'static str]);
    impl std::fmt::Display for Fields {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }
    impl std::error::Error for Fields {}
    impl serde::de::Error for Fields {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Fields(&[])
        }
    }
    /// A deserializer that only answers `deserialize_struct`, with its fields.
    struct FieldsOf;
    impl<'de> serde::Deserializer<'de> for FieldsOf {
        type Error = Fields;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Fields> {
            Err(Fields(&[]))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Fields> {
            Err(Fields(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let Err(Fields(fields)) = T::deserialize(FieldsOf) else {
        panic!("{} read no struct", std::any::type_name::<T>());
    };
    assert!(
        !fields.is_empty(),
        "{} read no struct",
        std::any::type_name::<T>()
    );
    fields.to_vec()
}

/// The keys of an object of the policy's own schema, by path (`capabilities` for a nested one).
fn schema_keys(keys: &[Key], path: &[&str]) -> Vec<&'static str> {
    let Some((first, rest)) = path.split_first() else {
        return keys.iter().map(|k| k.name).collect();
    };
    match keys.iter().find(|k| k.name == *first).map(|k| &k.shape) {
        Some(Shape::Object(nested) | Shape::Objects(nested)) => schema_keys(nested, rest),
        other => panic!("{first}: not an object in the schema: {other:?}"),
    }
}

/// Issue 24: the settings' nested Kubernetes objects are checked by the policy's own
/// schema, not by k8s-openapi types; their key sets must stay those of k8s-openapi 0.28
/// `latest`, so a key a newer Kubernetes adds (which the old typed check accepted) shows here.
#[test]
fn schema_keys_are_those_of_k8s_openapi() {
    use agent_mount::init_container::schema::{RESOURCE_REQUIREMENTS, SECURITY_CONTEXT};
    use k8s_openapi::api::core::v1 as core;
    let cases: [(&[Key], &[&str], Vec<&str>); 8] = [
        (SECURITY_CONTEXT, &[], k8s_fields::<core::SecurityContext>()),
        (
            SECURITY_CONTEXT,
            &["capabilities"],
            k8s_fields::<core::Capabilities>(),
        ),
        (
            SECURITY_CONTEXT,
            &["seccompProfile"],
            k8s_fields::<core::SeccompProfile>(),
        ),
        (
            SECURITY_CONTEXT,
            &["appArmorProfile"],
            k8s_fields::<core::AppArmorProfile>(),
        ),
        (
            SECURITY_CONTEXT,
            &["seLinuxOptions"],
            k8s_fields::<core::SELinuxOptions>(),
        ),
        (
            SECURITY_CONTEXT,
            &["windowsOptions"],
            k8s_fields::<core::WindowsSecurityContextOptions>(),
        ),
        (
            RESOURCE_REQUIREMENTS,
            &[],
            k8s_fields::<core::ResourceRequirements>(),
        ),
        (
            RESOURCE_REQUIREMENTS,
            &["claims"],
            k8s_fields::<core::ResourceClaim>(),
        ),
    ];
    for (keys, path, mut expected) in cases {
        let mut ours = schema_keys(keys, path);
        ours.sort_unstable();
        expected.sort_unstable();
        assert_eq!(ours, expected, "keys at {path:?}");
    }
}

/// The policy's own schema of `initContainer.resources` and `.securityContext` refuses
/// what the typed check refused, naming the key path: wrong JSON types at every depth,
/// a missing required key, a key of another Kubernetes object; numbers as quantities
/// and `null` as absent are accepted, as the API server accepts them.
#[rstest]
#[case::capabilities_not_a_list(json!({"securityContext": {"capabilities": {"add": "NET_RAW"}}}),
    Some("initContainer.securityContext.capabilities.add: invalid type: string \"NET_RAW\", expected a list"))]
#[case::capability_not_a_string(json!({"securityContext": {"capabilities": {"drop": [1]}}}),
    Some("initContainer.securityContext.capabilities.drop[0]: invalid type"))]
#[case::se_linux_level_number(json!({"securityContext": {"seLinuxOptions": {"level": 3}}}),
    Some("initContainer.securityContext.seLinuxOptions.level: invalid type: number `3`, expected a string"))]
#[case::profile_without_type(json!({"securityContext": {"appArmorProfile": {}}}),
    Some("initContainer.securityContext.appArmorProfile: missing field `type`"))]
#[case::pod_level_key(json!({"securityContext": {"hostUsers": false}}),
    Some("initContainer.securityContext.hostUsers: unknown key"))]
#[case::security_context_a_list(json!({"securityContext": []}),
    Some("initContainer.securityContext: invalid type: list, expected a mapping"))]
#[case::quantity_a_boolean(json!({"resources": {"limits": {"cpu": true}}}),
    Some("initContainer.resources.limits.cpu: invalid type: boolean `true`"))]
#[case::claim_without_name(json!({"resources": {"claims": [{"request": "r"}]}}),
    Some("initContainer.resources.claims[0]: missing field `name`"))]
#[case::number_quantity(json!({"resources": {"limits": {"cpu": 1}, "requests": {"cpu": "500m"}}}), None)]
#[case::number_request_above_limit(json!({"resources": {"limits": {"cpu": 1}, "requests": {"cpu": 2}}}),
    Some("initContainer.resources.requests.cpu: invalid value \"2\": expected at most the limit 1"))]
#[case::null_is_absent(json!({"securityContext": {"runAsGroup": null, "seLinuxOptions": null}}), None)]
fn nested_objects_are_checked_by_shape(#[case] given: Value, #[case] error: Option<&str>) {
    let mut init = json!({"image": "a:1"});
    for (k, v) in given.as_object().unwrap() {
        init[k] = v.clone();
    }
    let outcome = parse(init_settings(json!({ "initContainer": init })));
    match (outcome, error) {
        (Ok(_), None) => {}
        (Err(e), Some(expected)) => {
            assert!(e.to_string().starts_with(expected), "{e}")
        }
        (outcome, _) => panic!("{given}: {outcome:?}"),
    }
}
