use super::keys::applies_to;
use super::method::{AgentMounts, ImageSource};
use super::raw::PullPolicy;
use super::*;
use crate::activation::env::ToMerge;
use agent_mount_common::MountMethod;
use rstest::rstest;
use serde_json::json;

#[test]
fn empty_settings_are_the_odigos_defaults() {
    let settings = parse(json!({})).unwrap();
    assert_eq!(settings, Settings::default());
    assert_eq!(
        settings.method,
        Method::VirtualDevice {
            resource_name: "instrumentation.odigos.io/generic".into(),
            container_path: "/var/odigos".into(),
        }
    );
    assert_eq!(settings.activation, None);
    assert!(settings.ignored_containers.contains("istio-proxy"));
    assert_eq!(settings.containers_annotation, "agent-mount.io/containers");
}

#[test]
fn mount_path_defaults_to_host_path_under_host_path_only() {
    let mounts = |v: Value| parse(v).unwrap().method.mounts().unwrap().clone();
    let s = mounts(json!({"mountMethod": "k8s-host-path", "hostPath": "/opt/agents"}));
    assert_eq!(s.mount_path, "/opt/agents");
    let s = mounts(
        json!({"mountMethod": "k8s-host-path", "hostPath": "/opt/agents", "mountPath": "/agents"}),
    );
    assert_eq!(s.mount_path, "/agents");
    let s = mounts(json!({"mountMethod": "k8s-csi-driver"}));
    assert_eq!(s.mount_path, "/var/odigos");
    assert_eq!(s.volume_name, "odigos-agent");
}

#[test]
fn each_method_gets_its_own_typed_value() {
    let method = |v: Value| parse(v).unwrap().method;
    assert_eq!(
        method(json!({"mountMethod": "k8s-csi-driver", "csiDriver": "agents.example.com"})),
        Method::CsiDriver {
            driver: "agents.example.com".into(),
            mounts: AgentMounts {
                volume_name: "odigos-agent".into(),
                mount_path: "/var/odigos".into(),
                agent_directories: Vec::new(),
            },
            node_label: None,
        }
    );
    let Method::ImageVolume { image, .. } = method(
        json!({"mountMethod": "k8s-image-volume", "imageVolume": {"reference": "agents:1"}}),
    ) else {
        panic!("not an image volume");
    };
    assert_eq!(
        image,
        ImageSource {
            reference: "agents:1".into(),
            pull_policy: PullPolicy::IfNotPresent,
            source_path: "/instrumentations".into(),
        }
    );
    let Method::InitContainer { copy, .. } = method(
        json!({"mountMethod": "k8s-init-container", "volumeName": "agents", "initContainer": {"image": "a:1"}}),
    ) else {
        panic!("not an init container");
    };
    assert_eq!(copy.name, "agents-init");
    assert_eq!(copy.source_path, "/instrumentations");
}

#[rstest]
#[case::whole_dir("/instrumentations", None, Some("instrumentations"))]
#[case::per_dir("/instrumentations", Some("java"), Some("instrumentations/java"))]
#[case::nested("/opt/agents", Some("java"), Some("opt/agents/java"))]
#[case::root_whole("/", None, None)]
#[case::root_per_dir("/", Some("java"), Some("java"))]
fn image_sub_paths(#[case] source: &str, #[case] dir: Option<&str>, #[case] sub: Option<&str>) {
    let image = ImageSource {
        reference: "a".into(),
        pull_policy: PullPolicy::default(),
        source_path: source.into(),
    };
    assert_eq!(image.sub_path(dir).as_deref(), sub);
}

/// Every key of [`RawSettings`] and where it applies, as the documentation must say it.
#[test]
fn keys_apply_where_the_typed_settings_take_them() {
    use MountMethod::*;
    let volume_methods = vec![HostPath, InitContainer, CsiDriver, ImageVolume];
    let expected: [(&str, Vec<MountMethod>); 14] = [
        ("mountMethod", MountMethod::ALL.to_vec()),
        ("resourceName", vec![VirtualDevice]),
        ("hostPath", vec![HostPath]),
        ("mountPath", volume_methods.clone()),
        ("volumeName", volume_methods.clone()),
        ("agentDirectories", volume_methods),
        ("requiredNodeLabel", vec![HostPath, CsiDriver, ImageVolume]),
        ("initContainer", vec![InitContainer]),
        ("csiDriver", vec![CsiDriver]),
        ("imageVolume", vec![ImageVolume]),
        ("ignoredContainers", MountMethod::ALL.to_vec()),
        ("containersAnnotation", MountMethod::ALL.to_vec()),
        ("activation", MountMethod::ALL.to_vec()),
        ("activation.containerPath", vec![VirtualDevice]),
    ];
    let keys = RawSettings::every_key().set_keys();
    assert_eq!(keys.len(), expected.len(), "{keys:?}");
    for (key, methods) in expected {
        assert!(keys.iter().any(|k| k == key), "{key} is not a settings key");
        assert_eq!(applies_to(key), methods, "{key}");
    }
}

#[test]
fn every_key_sets_every_field_serde_knows() {
    // Serde's unknown-field message lists every field: every_key() must set them all,
    // or applies_to() and the documentation checks would miss one.
    let Err(SettingsError::Malformed { message, .. }) = parse(json!({"zzz": 1})) else {
        panic!("unknown key accepted");
    };
    let fields: Vec<&str> = message.split('`').skip(3).step_by(2).collect();
    let mut keys = RawSettings::every_key().set_keys();
    keys.retain(|k| !k.contains('.'));
    keys.sort();
    let mut fields: Vec<String> = fields.into_iter().map(String::from).collect();
    fields.sort();
    assert_eq!(keys, fields, "{message}");
    // The same for the nested activation block.
    let Err(SettingsError::Malformed { message, .. }) = parse(json!({"activation": {"zzz": 1}}))
    else {
        panic!("unknown activation key accepted");
    };
    let every = serde_json::to_value(RawSettings::every_key().activation).unwrap();
    let mut keys: Vec<&String> = every.as_object().unwrap().keys().collect();
    keys.sort();
    let mut fields: Vec<&str> = message.split('`').skip(3).step_by(2).collect();
    fields.sort();
    assert_eq!(keys, fields, "{message}");
}

/// Activation through the whole settings parse: where `{dir}` points under each method.
#[rstest]
#[case::virtual_device_default(json!({"activation": {}}), "-javaagent:/var/odigos/java/javaagent.jar")]
#[case::virtual_device_container_path(json!({"activation": {"containerPath": "/odigos"}}), "-javaagent:/odigos/java/javaagent.jar")]
#[case::host_path_mount_path(json!({"mountMethod": "k8s-host-path", "hostPath": "/opt/agents", "activation": {}}), "-javaagent:/opt/agents/java/javaagent.jar")]
#[case::csi_mount_path(json!({"mountMethod": "k8s-csi-driver", "mountPath": "/agents", "agentDirectories": ["java"], "activation": {}}), "-javaagent:/agents/java/javaagent.jar")]
fn activation_dir_is_where_the_method_puts_the_agents(#[case] settings: Value, #[case] java: &str) {
    let activation = parse(settings).unwrap().activation.unwrap();
    let crate::activation::EnvEntry::Join { value, .. } =
        activation.agents.get("java").unwrap().env[0].entry()
    else {
        panic!("not a join");
    };
    assert_eq!(value, java);
}

#[test]
fn allowed_methods_are_generated_from_the_enum() {
    let err = parse(json!({"mountMethod": "VirtualDevice"})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "mountMethod: unknown value \"VirtualDevice\", expected one of: k8s-virtual-device, k8s-host-path, k8s-init-container, k8s-csi-driver, k8s-image-volume"
    );
    for method in MountMethod::ALL {
        let settings = match method {
            MountMethod::InitContainer => {
                json!({"mountMethod": method.as_str(), "initContainer": {"image": "a"}})
            }
            MountMethod::ImageVolume => {
                json!({"mountMethod": method.as_str(), "imageVolume": {"reference": "a"}})
            }
            _ => json!({"mountMethod": method.as_str()}),
        };
        assert_eq!(parse(settings).unwrap().method.kind(), method);
    }
}

#[rstest]
#[case::unknown_key(json!({"mountMetod": "k8s-host-path"}), "mountMetod: unknown field `mountMetod`")]
#[case::wrong_type(json!({"mountMethod": "k8s-host-path", "hostPath": 5}), "hostPath: invalid type: integer `5`, expected a string")]
#[case::relative_path(json!({"mountMethod": "k8s-host-path", "hostPath": "var/odigos"}), "hostPath: invalid value \"var/odigos\": expected an absolute")]
#[case::root_path(json!({"mountMethod": "k8s-host-path", "hostPath": "/"}), "hostPath: invalid value \"/\"")]
#[case::dotdot_path(json!({"mountMethod": "k8s-host-path", "mountPath": "/var/../etc"}), "mountPath: invalid value \"/var/../etc\"")]
#[case::bad_resource(json!({"resourceName": "generic"}), "resourceName: invalid value \"generic\": expected an extended resource name")]
#[case::kubernetes_io_resource(json!({"resourceName": "kubernetes.io/agents"}), "resourceName: invalid value \"kubernetes.io/agents\"")]
#[case::bad_volume(json!({"mountMethod": "k8s-host-path", "volumeName": "Odigos_Agent"}), "volumeName: invalid value \"Odigos_Agent\": expected a DNS-1123 label")]
#[case::slash_dir(json!({"mountMethod": "k8s-host-path", "agentDirectories": ["java", "a/b"]}), "agentDirectories[1]: invalid value \"a/b\"")]
#[case::duplicate_dir(json!({"mountMethod": "k8s-host-path", "agentDirectories": ["java", "java"]}), "agentDirectories[1]: duplicate value \"java\"")]
#[case::too_many_dirs(json!({"mountMethod": "k8s-host-path", "agentDirectories": (0..65).map(|i| format!("d{i}")).collect::<Vec<_>>()}), "agentDirectories: 65 entries, at most 64 are allowed")]
#[case::too_many_ignored(json!({"ignoredContainers": (0..257).map(|i| format!("c{i}")).collect::<Vec<_>>()}), "ignoredContainers: 257 entries, at most 256 are allowed")]
#[case::bad_label_key(json!({"mountMethod": "k8s-host-path", "requiredNodeLabel": {"key": "bad key", "value": "x"}}), "requiredNodeLabel.key: invalid value \"bad key\"")]
#[case::bad_label_value(json!({"mountMethod": "k8s-host-path", "requiredNodeLabel": {"key": "k", "value": "a b"}}), "requiredNodeLabel.value: invalid value \"a b\"")]
#[case::label_unknown_key(json!({"mountMethod": "k8s-host-path", "requiredNodeLabel": {"key": "k", "value": "v", "op": "In"}}), "requiredNodeLabel.op: unknown field `op`, expected `key` or `value`")]
#[case::bad_ignored(json!({"ignoredContainers": ["Istio Proxy"]}), "ignoredContainers[0]: invalid value \"Istio Proxy\"")]
#[case::bad_annotation(json!({"containersAnnotation": "not a key"}), "containersAnnotation: invalid value \"not a key\"")]
#[case::host_path_under_virtual_device(json!({"hostPath": "/var/odigos"}), "hostPath: not allowed with mountMethod \"k8s-virtual-device\": it applies only to k8s-host-path; under k8s-virtual-device the device plugin mounts the directory: set its --host-path and --container-path flags instead")]
#[case::host_path_under_csi(json!({"mountMethod": "k8s-csi-driver", "hostPath": "/var/odigos"}), "hostPath: not allowed with mountMethod \"k8s-csi-driver\": it applies only to k8s-host-path; under k8s-csi-driver the CSI node plugin mounts the directory: set its --agent-dir flag instead")]
#[case::resource_under_host_path(json!({"mountMethod": "k8s-host-path", "resourceName": "example.com/x"}), "resourceName: not allowed with mountMethod \"k8s-host-path\"")]
#[case::label_under_virtual_device(json!({"requiredNodeLabel": {"key": "k", "value": "v"}}), "requiredNodeLabel: not allowed with mountMethod \"k8s-virtual-device\": it applies only to k8s-host-path, k8s-csi-driver, k8s-image-volume")]
#[case::label_under_init_container(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a"}, "requiredNodeLabel": {"key": "k", "value": "v"}}), "requiredNodeLabel: not allowed with mountMethod \"k8s-init-container\"")]
#[case::init_under_host_path(json!({"mountMethod": "k8s-host-path", "initContainer": {"image": "x"}}), "initContainer: not allowed with mountMethod \"k8s-host-path\": it applies only to k8s-init-container")]
#[case::csi_under_host_path(json!({"mountMethod": "k8s-host-path", "csiDriver": "x"}), "csiDriver: not allowed with mountMethod \"k8s-host-path\": it applies only to k8s-csi-driver")]
#[case::image_volume_under_init(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a"}, "imageVolume": {"reference": "a"}}), "imageVolume: not allowed with mountMethod \"k8s-init-container\": it applies only to k8s-image-volume")]
#[case::bad_csi_driver(json!({"mountMethod": "k8s-csi-driver", "csiDriver": "Odigos_CSI"}), "csiDriver: invalid value \"Odigos_CSI\": expected a CSI driver name")]
#[case::image_reference_missing(json!({"mountMethod": "k8s-image-volume"}), "imageVolume.reference: required with mountMethod \"k8s-image-volume\"")]
#[case::image_reference_missing_in_block(json!({"mountMethod": "k8s-image-volume", "imageVolume": {"pullPolicy": "Always"}}), "imageVolume.reference: required with mountMethod \"k8s-image-volume\"")]
#[case::image_reference_spaces(json!({"mountMethod": "k8s-image-volume", "imageVolume": {"reference": "a b"}}), "imageVolume.reference: invalid value \"a b\"")]
#[case::image_pull_policy(json!({"mountMethod": "k8s-image-volume", "imageVolume": {"reference": "a", "pullPolicy": "Sometimes"}}), "imageVolume.pullPolicy: unknown value \"Sometimes\", expected one of: IfNotPresent, Always, Never")]
#[case::image_source_relative(json!({"mountMethod": "k8s-image-volume", "imageVolume": {"reference": "a", "sourcePath": "agents"}}), "imageVolume.sourcePath: invalid value \"agents\"")]
#[case::image_unknown_key(json!({"mountMethod": "k8s-image-volume", "imageVolume": {"reference": "a", "tag": "1"}}), "imageVolume.tag: unknown field `tag`")]
#[case::init_image_missing(json!({"mountMethod": "k8s-init-container"}), "initContainer.image: required with mountMethod \"k8s-init-container\"")]
#[case::init_image_spaces(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a b"}}), "initContainer.image: invalid value \"a b\"")]
#[case::init_unknown_key(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "imagePullPolicy": "Always"}}), "initContainer.imagePullPolicy: unknown field `imagePullPolicy`, expected one of `image`")]
#[case::init_bad_source(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "sourcePath": "instrumentations"}}), "initContainer.sourcePath: invalid value \"instrumentations\"")]
#[case::init_bad_size(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "sizeLimit": "lots"}}), "initContainer.sizeLimit: invalid value \"lots\"")]
#[case::init_negative_size(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "sizeLimit": "-1Gi"}}), "initContainer.sizeLimit: invalid value \"-1Gi\": expected a quantity of 0 or more")]
#[case::init_resources_unknown(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "resources": {"limit": {"cpu": "1"}}}}), "initContainer.resources.limit: unknown key")]
#[case::init_cpu_lots(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "resources": {"limits": {"cpu": "lots"}}}}), "initContainer.resources.limits.cpu: invalid value \"lots\": expected a Kubernetes quantity")]
#[case::init_request_above_limit(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "resources": {"limits": {"memory": "128Mi"}, "requests": {"memory": "1Gi"}}}}), "initContainer.resources.requests.memory: invalid value \"1Gi\": expected at most the limit 128Mi")]
#[case::init_unknown_resource(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "resources": {"limits": {"gpu": "1"}}}}), "initContainer.resources.limits.gpu: invalid value \"gpu\": expected one of: cpu, memory, ephemeral-storage")]
#[case::init_claims(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "resources": {"claims": [{"name": "gpu"}]}}}), "initContainer.resources.claims: invalid value \"gpu\": resource claims are not allowed")]
#[case::init_security_unknown(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "securityContext": {"capabilities": {"drp": ["ALL"]}}}}), "initContainer.securityContext.capabilities.drp: unknown key")]
#[case::init_security_wrong_type(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "securityContext": {"runAsUser": "root"}}}), "initContainer.securityContext.runAsUser: invalid type: string \"root\"")]
#[case::init_negative_uid(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "securityContext": {"runAsUser": -1}}}), "initContainer.securityContext.runAsUser: invalid value \"-1\": expected an ID from 0 to 2147483647")]
#[case::init_huge_gid(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "securityContext": {"runAsGroup": 2147483648_i64}}}), "initContainer.securityContext.runAsGroup: invalid value \"2147483648\"")]
#[case::init_root_but_non_root(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "securityContext": {"runAsUser": 0}}}), "initContainer.securityContext.runAsUser: invalid value \"0\": runAsNonRoot is true")]
#[case::init_bogus_seccomp(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "securityContext": {"seccompProfile": {"type": "Bogus"}}}}), "initContainer.securityContext.seccompProfile.type: invalid value \"Bogus\": expected one of: RuntimeDefault, Localhost, Unconfined")]
#[case::init_localhost_without_profile(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "securityContext": {"seccompProfile": {"type": "Localhost"}}}}), "initContainer.securityContext.seccompProfile.localhostProfile: invalid value \"\": required when type is Localhost")]
#[case::init_profile_without_localhost(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "securityContext": {"appArmorProfile": {"type": "RuntimeDefault", "localhostProfile": "p"}}}}), "initContainer.securityContext.appArmorProfile.localhostProfile: invalid value \"p\": allowed only when type is Localhost")]
#[case::init_bogus_proc_mount(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "securityContext": {"procMount": "Bogus"}}}), "initContainer.securityContext.procMount: invalid value \"Bogus\": expected Default")]
#[case::init_privileged(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "securityContext": {"privileged": true}}}), "initContainer.securityContext.privileged: invalid value \"true\": not allowed while allowPrivilegeEscalation is false")]
#[case::init_sys_admin(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}}), "initContainer.securityContext.capabilities.add: invalid value \"SYS_ADMIN\"")]
fn invalid_settings_name_key_value_and_allowed(#[case] settings: Value, #[case] expected: &str) {
    let err = parse(settings).unwrap_err().to_string();
    assert!(
        err.contains(expected),
        "error {err:?} should contain {expected:?}"
    );
}

#[rstest]
#[case::not_a_mapping(json!([]), SettingsError::NotAMapping("[]".into()))]
#[case::required(json!({"mountMethod": "k8s-image-volume"}), SettingsError::Required {
    key: "imageVolume.reference",
    method: "k8s-image-volume",
    example: "the agents image to mount, e.g. imageVolume: {reference: ghcr.io/example/agents:1.0}",
})]
#[case::duplicate(json!({"ignoredContainers": ["a", "a"]}), SettingsError::Duplicate { key: "ignoredContainers[1]".into(), value: "a".into() })]
#[case::too_many(json!({"mountMethod": "k8s-csi-driver", "agentDirectories": (0..100).map(|i| format!("d{i}")).collect::<Vec<_>>()}), SettingsError::TooMany { key: "agentDirectories", count: 100, max: 64 })]
#[case::unknown_nested(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "resources": {"limit": {}}}}), SettingsError::UnknownKey { key: "initContainer.resources.limit".into() })]
fn errors_are_variants(#[case] settings: Value, #[case] expected: SettingsError) {
    assert_eq!(parse(settings), Err(expected));
}

#[rstest]
#[case::exponent(json!({"limits": {"memory": "1e9"}}))]
#[case::signed(json!({"limits": {"memory": "+1Gi"}, "requests": {"memory": "512Mi"}}))]
#[case::equal_in_other_spelling(json!({"limits": {"cpu": "0.1"}, "requests": {"cpu": "100m"}}))]
#[case::requests_only(json!({"requests": {"cpu": "1", "ephemeral-storage": "1Gi"}}))]
fn kubernetes_quantities_are_accepted(#[case] resources: Value) {
    let settings = json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "resources": resources}});
    assert!(parse(settings.clone()).is_ok(), "{settings}");
}

#[test]
fn settings_must_be_a_mapping() {
    for value in [json!([]), json!("k8s-host-path"), json!(3)] {
        let err = parse(value).unwrap_err().to_string();
        assert!(
            err.starts_with("settings: expected a mapping of keys"),
            "{err}"
        );
    }
}

#[test]
fn unknown_top_level_key_lists_the_allowed_keys() {
    let err = parse(json!({"hostpath": "/var/odigos"}))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("hostpath: unknown field `hostpath`, expected one of"),
        "{err}"
    );
    assert!(err.contains("`hostPath`"), "{err}");
}

#[rstest]
#[case::host_path_full(json!({
    "mountMethod": "k8s-host-path", "hostPath": "/opt/agents", "mountPath": "/agents",
    "volumeName": "agents", "agentDirectories": ["java", "python"],
    "requiredNodeLabel": {"key": "odigos.io/agents", "value": "true"},
    "ignoredContainers": [], "containersAnnotation": "example.com/instrument"
}))]
#[case::virtual_device(json!({"resourceName": "example.com/agents"}))]
#[case::init_container(json!({
    "mountMethod": "k8s-init-container", "agentDirectories": ["java"],
    "initContainer": {"image": "ghcr.io/example/agents:1.0", "sourcePath": "/agents", "name": "copy-agents",
        "sizeLimit": "256Mi", "resources": {"limits": {"memory": "64Mi"}},
        "securityContext": {"runAsUser": 1000, "capabilities": {"drop": ["ALL"]}}}
}))]
#[case::csi_driver(json!({"mountMethod": "k8s-csi-driver", "csiDriver": "odigos.csi.driver",
    "requiredNodeLabel": {"key": "odigos.io/agents", "value": "true"}}))]
#[case::image_volume(json!({"mountMethod": "k8s-image-volume",
    "imageVolume": {"reference": "ghcr.io/example/agents:1.0", "pullPolicy": "Always", "sourcePath": "/"}}))]
fn valid_settings_parse(#[case] settings: Value) {
    let kind = settings["mountMethod"]
        .as_str()
        .unwrap_or("k8s-virtual-device")
        .to_string();
    assert_eq!(parse(settings).unwrap().method.kind().as_str(), kind);
}

/// Each nested settings object given as `null` or a list: serde read `null` as absent and
/// a list as the struct's fields by position.
#[rstest]
#[case::activation_null(json!({"activation": null}), "activation: invalid type: null, expected a mapping: write `activation: {}` to turn activation on with the defaults, or remove the key")]
#[case::activation_list(json!({"activation": ["example.com/agents", "/opt"]}), "activation: invalid type: list, expected a mapping: write `activation: {}` to turn activation on with the defaults")]
#[case::activation_string(json!({"activation": "on"}), "activation: invalid type: string \"on\", expected a mapping")]
#[case::agents_null(json!({"activation": {"agents": null}}), "activation.agents: invalid type: null, expected a mapping")]
#[case::agents_list(json!({"activation": {"agents": [{"directory": "java", "env": []}]}}), "activation.agents: invalid type: list, expected a mapping")]
#[case::recipe_list(json!({"activation": {"agents": {"java": ["java", [{"name": "A", "value": "b"}]]}}}), "activation.agents.java: invalid type: list, expected a mapping")]
#[case::env_entry_list(json!({"activation": {"env": [["A", "b"]]}}), "activation.env[0]: invalid type: list, expected a mapping")]
#[case::activation_env_null(json!({"activation": {"env": null}}), "activation.env: invalid type: null, expected a list")]
#[case::recipe_env_null(json!({"activation": {"agents": {"java": {"directory": "java", "env": null}}}}), "activation.agents.java.env: invalid type: null, expected a list")]
#[case::value_from_list(json!({"activation": {"env": [{"name": "A", "valueFrom": [{"fieldPath": "status.hostIP"}]}]}}), "activation.env[0].valueFrom: invalid type: list, expected a mapping")]
#[case::init_container_null(json!({"mountMethod": "k8s-init-container", "initContainer": null}), "initContainer: invalid type: null, expected a mapping")]
#[case::init_container_list(json!({"mountMethod": "k8s-init-container", "initContainer": ["busybox:1.36"]}), "initContainer: invalid type: list, expected a mapping")]
#[case::init_resources_null(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "resources": null}}), "initContainer.resources: invalid type: null, expected a mapping")]
#[case::init_resources_list(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "resources": [{"cpu": "1"}]}}), "initContainer.resources: invalid type: list, expected a mapping")]
#[case::init_security_null(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "securityContext": null}}), "initContainer.securityContext: invalid type: null, expected a mapping")]
#[case::image_volume_null(json!({"mountMethod": "k8s-image-volume", "imageVolume": null}), "imageVolume: invalid type: null, expected a mapping")]
#[case::image_volume_list(json!({"mountMethod": "k8s-image-volume", "imageVolume": ["agents:1", "Always"]}), "imageVolume: invalid type: list, expected a mapping")]
#[case::node_label_null(json!({"mountMethod": "k8s-host-path", "requiredNodeLabel": null}), "requiredNodeLabel: invalid type: null, expected a mapping")]
#[case::node_label_list(json!({"mountMethod": "k8s-host-path", "requiredNodeLabel": ["odigos.io/agents", "true"]}), "requiredNodeLabel: invalid type: list, expected a mapping")]
#[case::ignored_null(json!({"ignoredContainers": null}), "ignoredContainers: invalid type: null, expected a list: write `[]` for an empty list, or remove the key for the default")]
#[case::directories_null(json!({"mountMethod": "k8s-host-path", "agentDirectories": null}), "agentDirectories: invalid type: null, expected a list")]
#[case::ignored_mapping(json!({"ignoredContainers": {"istio-proxy": true}}), "ignoredContainers: invalid type: map, expected a list")]
fn nested_objects_and_lists_given_as_null_or_the_wrong_shape_are_errors(
    #[case] settings: Value,
    #[case] expected: &str,
) {
    let err = parse(settings).unwrap_err().to_string();
    assert!(
        err.starts_with(expected),
        "{err:?} should start with {expected:?}"
    );
}

/// The reader's messages whole, as serde's derive (with serde_path_to_error for the key
/// path) wrote them before the plain walk replaced it: every kind of value in every shape
/// of key, unknown and missing keys, indices and agent names in the path.
#[rstest]
#[case(json!({"mountMethod": "k8s-host-path", "agentDirectories": [1]}), "agentDirectories[0]: invalid type: integer `1`, expected a string")]
#[case(json!({"mountMethod": "k8s-host-path", "agentDirectories": [null]}), "agentDirectories[0]: invalid type: null, expected a string")]
#[case(json!({"mountMethod": "k8s-host-path", "agentDirectories": [["java"]]}), "agentDirectories[0]: invalid type: sequence, expected a string")]
#[case(json!({"mountMethod": "k8s-host-path", "agentDirectories": true}), "agentDirectories: invalid type: boolean `true`, expected a list: write `[]` for an empty list, or remove the key for the default")]
#[case(json!({"hostPath": {}}), "hostPath: invalid type: map, expected a string")]
#[case(json!({"hostPath": 0.0}), "hostPath: invalid type: floating point `0.0`, expected a string")]
#[case(json!({"hostPath": 1e20}), "hostPath: invalid type: floating point `1e+20`, expected a string")]
#[case(json!({"hostPath": -5}), "hostPath: invalid type: integer `-5`, expected a string")]
#[case(json!({"mountMethod": 5}), "mountMethod: invalid type: integer `5`, expected a string")]
#[case(json!({"activation": -5}), "activation: invalid type: integer `-5`, expected a mapping: write `activation: {}` to turn activation on with the defaults, or remove the key")]
#[case(json!({"activation": {"resourceAttributes": 1.5}}), "activation.resourceAttributes: invalid type: floating point `1.5`, expected a boolean")]
#[case(json!({"activation": {"resourceAttributes": {}}}), "activation.resourceAttributes: invalid type: map, expected a boolean")]
#[case(json!({"activation": {"zzz": 1}}), "activation.zzz: unknown field `zzz`, expected one of `annotation`, `containerPath`, `agents`, `env`, `resourceAttributes`")]
#[case(json!({"activation": {"agents": {"java": {"directory": "java"}}}}), "activation.agents.java: missing field `env`")]
#[case(json!({"activation": {"agents": {"java": {"env": []}}}}), "activation.agents.java: missing field `directory`")]
#[case(json!({"activation": {"agents": {"java": {"directory": "java", "env": [], "zzz": 1}}}}), "activation.agents.java.zzz: unknown field `zzz`, expected `directory` or `env`")]
#[case(json!({"activation": {"agents": {"java": {"directory": "java", "env": null}}}}), "activation.agents.java.env: invalid type: null, expected a list")]
#[case(json!({"activation": {"agents": {"java": {"directory": "java", "env": [{"value": "x"}]}}}}), "activation.agents.java.env[0]: missing field `name`")]
#[case(json!({"activation": {"env": [{"name": "A", "valueFrom": "x"}]}}), "activation.env[0].valueFrom: invalid type: string \"x\", expected a mapping: write the object's fields, or remove the key")]
#[case(json!({"activation": {"env": [{"name": "A", "zzz": 1}]}}), "activation.env[0].zzz: unknown field `zzz`, expected one of `name`, `value`, `join`, `valueFrom`")]
#[case(json!({"mountMethod": "k8s-host-path", "requiredNodeLabel": {"key": "k"}}), "requiredNodeLabel: missing field `value`")]
#[case(json!({"zzz": 1}), "zzz: unknown field `zzz`, expected one of `mountMethod`, `resourceName`, `hostPath`, `mountPath`, `volumeName`, `agentDirectories`, `requiredNodeLabel`, `initContainer`, `csiDriver`, `imageVolume`, `ignoredContainers`, `containersAnnotation`, `activation`")]
// Keys are read in the map's (alphabetical) order: the first bad one is reported.
#[case(json!({"hostPath": 5, "zzz": 1}), "hostPath: invalid type: integer `5`, expected a string")]
#[case(json!({"aaa": 1, "hostPath": 5}), "aaa: unknown field `aaa`, expected one of `mountMethod`, `resourceName`, `hostPath`, `mountPath`, `volumeName`, `agentDirectories`, `requiredNodeLabel`, `initContainer`, `csiDriver`, `imageVolume`, `ignoredContainers`, `containersAnnotation`, `activation`")]
// Of the keys left for another method, the first in alphabetical order is named.
#[case(json!({"mountPath": "/m", "agentDirectories": []}), "agentDirectories: not allowed with mountMethod \"k8s-virtual-device\": it applies only to k8s-host-path, k8s-init-container, k8s-csi-driver, k8s-image-volume; the device plugin always mounts the whole directory")]
fn reader_messages_are_serdes_byte_for_byte(#[case] settings: Value, #[case] expected: &str) {
    assert_eq!(parse(settings).unwrap_err().to_string(), expected);
}

/// Every key `Serialize` writes is read back into its own field: the reader's keys, its
/// field matching and `set_keys`' order agree.
#[test]
fn every_key_reads_back_into_its_own_field() {
    let every = RawSettings::every_key();
    let Value::Object(map) = serde_json::to_value(&every).unwrap() else {
        panic!("not a mapping");
    };
    for (key, value) in map {
        let alone = RawSettings::read([(key.clone(), value)].into_iter().collect()).unwrap();
        let mut keys = alone.set_keys();
        keys.retain(|k| !k.contains('.'));
        assert_eq!(keys, std::slice::from_ref(&key), "{key}");
    }
    let Value::Object(map) = serde_json::to_value(&every).unwrap() else {
        panic!("not a mapping");
    };
    assert_eq!(RawSettings::read(map).unwrap(), every);
}

#[test]
fn an_agent_given_as_null_removes_the_built_in_recipe() {
    let settings = parse(json!({"activation": {"agents": {"loader": null}}})).unwrap();
    let agents: Vec<String> = settings
        .activation
        .unwrap()
        .agents
        .keys()
        .cloned()
        .collect();
    assert_eq!(agents, ["java", "nodejs", "python"]);
}
