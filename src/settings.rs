//! Policy settings: the keys of `spec.settings`, their defaults and their validation.
//!
//! Every key is optional and the defaults are Odigos-compatible. Parsing never
//! fails with an opaque serde message: errors name the key path, the bad value
//! and what is allowed.

use agent_mount_common::syntax;
use k8s_openapi::api::core::v1::{ResourceRequirements, SecurityContext};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

pub use agent_mount_common::{DEFAULT_HOST_PATH, DEFAULT_RESOURCE_NAME};
/// Default name of the volume the policy adds.
pub const DEFAULT_VOLUME_NAME: &str = "odigos-agent";
/// Default annotation that lists the containers to instrument.
pub const DEFAULT_CONTAINERS_ANNOTATION: &str = "agent-mount.io/containers";
/// Default directory of the agents inside the init container's image.
pub const DEFAULT_SOURCE_PATH: &str = "/instrumentations";
/// Sidecars that are never instrumented unless the annotation names them.
pub const DEFAULT_IGNORED_CONTAINERS: [&str; 6] = [
    "istio-proxy",
    "linkerd-proxy",
    "vault-agent",
    "filebeat",
    "fluentd",
    "akeyless-init",
];

/// How the agent directory reaches the containers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MountMethod {
    /// An extended resource; the device plugin mounts the host directory.
    #[default]
    VirtualDevice,
    /// A hostPath volume and read-only volumeMounts.
    HostPath,
    /// An init container copies the agents from an image into an emptyDir.
    InitContainer,
}

impl MountMethod {
    /// Every method, in the order the documentation lists them.
    pub const ALL: [MountMethod; 3] = [
        MountMethod::VirtualDevice,
        MountMethod::HostPath,
        MountMethod::InitContainer,
    ];

    /// The settings value that selects this method.
    pub fn as_str(self) -> &'static str {
        match self {
            MountMethod::VirtualDevice => "k8s-virtual-device",
            MountMethod::HostPath => "k8s-host-path",
            MountMethod::InitContainer => "k8s-init-container",
        }
    }

    /// The allowed values, generated from [`MountMethod::ALL`], for error messages.
    pub fn allowed_values() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|m| m.as_str()).collect();
        names.join(", ")
    }
}

impl Serialize for MountMethod {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MountMethod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == value)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown value {value:?}, expected one of: {}",
                    Self::allowed_values()
                ))
            })
    }
}

/// A node label that host-path pods must be scheduled on.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeLabel {
    /// Label key, e.g. `odigos.io/agents`.
    pub key: String,
    /// Label value, e.g. `"true"`.
    pub value: String,
}

/// Settings of the copy init container (`k8s-init-container` only).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct InitContainerSettings {
    /// Image holding the agents; required for `k8s-init-container`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Directory of the agents inside the image (default `/instrumentations`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_path: Option<String>,
    /// Init container name (default `<volumeName>-init`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Resources of the init container (default cpu 100m, memory 128Mi as requests and limits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Value>,
    /// Fields merged over the hardened default securityContext.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context: Option<Value>,
    /// `sizeLimit` of the emptyDir volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<String>,
}

/// The policy settings, as given in a ClusterAdmissionPolicy's `spec.settings`.
///
/// Keys that apply to one method only are `Option`s, so that a key set for another
/// method can be rejected instead of silently ignored.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// How the agents reach the containers.
    pub mount_method: MountMethod,
    /// Extended resource requested by instrumented containers (virtual-device).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// Agent directory on the node (host-path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// Where the agents appear in containers (host-path, init-container).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
    /// Name of the added volume (host-path, init-container).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_name: Option<String>,
    /// Agent sub-directories to mount one by one; empty means the whole directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_directories: Option<Vec<String>>,
    /// Node label required through node affinity (host-path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_node_label: Option<NodeLabel>,
    /// The copy init container (init-container).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_container: Option<InitContainerSettings>,
    /// Containers never instrumented unless the annotation names them.
    pub ignored_containers: Vec<String>,
    /// Pod annotation listing exactly the containers to instrument.
    pub containers_annotation: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mount_method: MountMethod::default(),
            resource_name: None,
            host_path: None,
            mount_path: None,
            volume_name: None,
            agent_directories: None,
            required_node_label: None,
            init_container: None,
            ignored_containers: DEFAULT_IGNORED_CONTAINERS.map(String::from).to_vec(),
            containers_annotation: DEFAULT_CONTAINERS_ANNOTATION.to_string(),
        }
    }
}

/// Parses settings from JSON, naming the key path of any type or syntax error, then validates them.
pub fn parse(value: Value) -> Result<Settings, String> {
    // Serde would also read a struct from a JSON array; settings are always a mapping.
    if !value.is_object() {
        return Err(format!(
            "settings: expected a mapping of keys such as {{\"mountMethod\": \"k8s-host-path\"}}, got {value}"
        ));
    }
    let settings: Settings = deserialize_at(value, "")?;
    settings.validate()?;
    Ok(settings)
}

/// Deserialises `value` as `T`, prefixing errors with the key path below `prefix`.
fn deserialize_at<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, String> {
    // Deserialising from a `Value` (not text) keeps "at line 1 column 20" out of the message.
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let full = match (prefix.is_empty(), path == ".") {
            (true, true) => String::new(),
            (true, false) => path,
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{path}"),
        };
        let message = err.into_inner().to_string();
        if full.is_empty() {
            format!("settings: {message}")
        } else {
            format!("{full}: {message}")
        }
    })
}

/// Checks a value with a syntax rule and words the error as "key: bad value: what is allowed".
fn check(key: &str, value: &str, rule: fn(&str) -> Result<(), String>) -> Result<(), String> {
    rule(value).map_err(|allowed| format!("{key}: invalid value {value:?}: {allowed}"))
}

/// What a method-specific key is for, when it is set under a method it does not apply to.
fn misplaced_key_hint(key: &str, method: MountMethod) -> &'static str {
    match (key, method) {
        ("hostPath" | "mountPath", MountMethod::VirtualDevice) => {
            "; under k8s-virtual-device the device plugin mounts the directory: set its --host-path and --container-path flags instead"
        }
        ("agentDirectories", MountMethod::VirtualDevice) => {
            "; the device plugin always mounts the whole directory"
        }
        ("volumeName", MountMethod::VirtualDevice) => "; k8s-virtual-device adds no volume",
        ("resourceName", _) => {
            "; only k8s-virtual-device requests an extended resource (set the device plugin's --resource-name to match)"
        }
        _ => "",
    }
}

impl Settings {
    /// Settings keys that apply to some methods only, whether each is set, and where it applies.
    fn method_specific_keys(&self) -> [(&'static str, bool, &'static [MountMethod]); 7] {
        use MountMethod::*;
        [
            (
                "resourceName",
                self.resource_name.is_some(),
                &[VirtualDevice],
            ),
            ("hostPath", self.host_path.is_some(), &[HostPath]),
            (
                "mountPath",
                self.mount_path.is_some(),
                &[HostPath, InitContainer],
            ),
            (
                "volumeName",
                self.volume_name.is_some(),
                &[HostPath, InitContainer],
            ),
            (
                "agentDirectories",
                self.agent_directories.is_some(),
                &[HostPath, InitContainer],
            ),
            (
                "requiredNodeLabel",
                self.required_node_label.is_some(),
                &[HostPath],
            ),
            (
                "initContainer",
                self.init_container.is_some(),
                &[InitContainer],
            ),
        ]
    }

    /// Validates every key; the error names the key, the bad value and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        for (key, is_set, applies_to) in self.method_specific_keys() {
            if is_set && !applies_to.contains(&self.mount_method) {
                let methods: Vec<&str> = applies_to.iter().map(|m| m.as_str()).collect();
                return Err(format!(
                    "{key}: not allowed with mountMethod {:?}: it applies only to {}{}",
                    self.mount_method.as_str(),
                    methods.join(", "),
                    misplaced_key_hint(key, self.mount_method)
                ));
            }
        }
        if let Some(name) = &self.resource_name {
            check("resourceName", name, syntax::extended_resource_name)?;
        }
        if let Some(path) = &self.host_path {
            check("hostPath", path, syntax::absolute_path)?;
        }
        if let Some(path) = &self.mount_path {
            check("mountPath", path, syntax::absolute_path)?;
        }
        if let Some(name) = &self.volume_name {
            check("volumeName", name, syntax::dns_label)?;
        }
        for (i, dir) in self.agent_directories().iter().enumerate() {
            check(&format!("agentDirectories[{i}]"), dir, syntax::path_segment)?;
            if self.agent_directories()[..i].contains(dir) {
                return Err(format!(
                    "agentDirectories[{i}]: duplicate value {dir:?}: each directory may be listed once"
                ));
            }
        }
        if let Some(label) = &self.required_node_label {
            check("requiredNodeLabel.key", &label.key, syntax::qualified_name)?;
            check("requiredNodeLabel.value", &label.value, syntax::label_value)?;
        }
        for (i, name) in self.ignored_containers.iter().enumerate() {
            check(&format!("ignoredContainers[{i}]"), name, syntax::dns_label)?;
        }
        check(
            "containersAnnotation",
            &self.containers_annotation,
            syntax::qualified_name,
        )?;
        if self.mount_method == MountMethod::InitContainer {
            self.validate_init_container()?;
        }
        Ok(())
    }

    fn validate_init_container(&self) -> Result<(), String> {
        let init = self.init_container();
        let Some(image) = &init.image else {
            return Err("initContainer.image: required with mountMethod \"k8s-init-container\": the image that holds the agents, e.g. initContainer: {image: ghcr.io/example/agents:1.0}".into());
        };
        check("initContainer.image", image, syntax::image)?;
        if let Some(path) = &init.source_path {
            check("initContainer.sourcePath", path, syntax::absolute_path)?;
        }
        if let Some(name) = &init.name {
            check("initContainer.name", name, syntax::dns_label)?;
        }
        if let Some(limit) = &init.size_limit {
            check("initContainer.sizeLimit", limit, syntax::quantity)?;
        }
        if let Some(resources) = &init.resources {
            typed_without_unknown_keys::<ResourceRequirements>(
                resources,
                "initContainer.resources",
            )?;
        }
        if let Some(context) = &init.security_context {
            typed_without_unknown_keys::<SecurityContext>(
                context,
                "initContainer.securityContext",
            )?;
        }
        Ok(())
    }

    /// The extended resource to request.
    pub fn resource_name(&self) -> &str {
        self.resource_name
            .as_deref()
            .unwrap_or(DEFAULT_RESOURCE_NAME)
    }

    /// The agent directory on the node.
    pub fn host_path(&self) -> &str {
        self.host_path.as_deref().unwrap_or(DEFAULT_HOST_PATH)
    }

    /// Where the agents appear in containers: `mountPath`, else `hostPath`.
    pub fn mount_path(&self) -> &str {
        self.mount_path.as_deref().unwrap_or(self.host_path())
    }

    /// The name of the volume the policy adds.
    pub fn volume_name(&self) -> &str {
        self.volume_name.as_deref().unwrap_or(DEFAULT_VOLUME_NAME)
    }

    /// The agent sub-directories to mount one by one (empty: the whole directory).
    pub fn agent_directories(&self) -> &[String] {
        self.agent_directories.as_deref().unwrap_or_default()
    }

    /// The init container's settings (all unset when the block is absent).
    pub fn init_container(&self) -> &InitContainerSettings {
        const UNSET: &InitContainerSettings = &InitContainerSettings {
            image: None,
            source_path: None,
            name: None,
            resources: None,
            security_context: None,
            size_limit: None,
        };
        self.init_container.as_ref().unwrap_or(UNSET)
    }

    /// The init container's name: `initContainer.name`, else `<volumeName>-init`.
    pub fn init_container_name(&self) -> String {
        match &self.init_container().name {
            Some(name) => name.clone(),
            None => format!("{}-init", self.volume_name()),
        }
    }
}

/// Reads a nested Kubernetes object as `T`, rejecting keys that `T` does not know.
///
/// k8s-openapi types ignore unknown keys, so a misspelt key would silently vanish:
/// a key of the input that is missing after a typed round trip is unknown.
pub fn typed_without_unknown_keys<T: DeserializeOwned + Serialize>(
    value: &Value,
    key: &str,
) -> Result<T, String> {
    let typed: T = deserialize_at(value.clone(), key)?;
    let round_trip = serde_json::to_value(&typed).map_err(|e| format!("{key}: {e}"))?;
    match first_unknown_key(value, &round_trip, key) {
        Some(path) => Err(format!(
            "{path}: unknown key: not a field of this Kubernetes object (check its spelling)"
        )),
        None => Ok(typed),
    }
}

/// The path of the first key of `given` (non-null) that `known` lacks, recursing into objects and arrays.
fn first_unknown_key(given: &Value, known: &Value, path: &str) -> Option<String> {
    match (given, known) {
        (Value::Object(given), Value::Object(known)) => given.iter().find_map(|(k, v)| {
            let child = format!("{path}.{k}");
            match known.get(k) {
                None if !v.is_null() => Some(child),
                None => None,
                Some(known_v) => first_unknown_key(v, known_v, &child),
            }
        }),
        (Value::Array(given), Value::Array(known)) => given
            .iter()
            .zip(known)
            .enumerate()
            .find_map(|(i, (g, k))| first_unknown_key(g, k, &format!("{path}[{i}]"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    #[test]
    fn empty_settings_are_the_odigos_defaults() {
        let settings = parse(json!({})).unwrap();
        assert_eq!(settings, Settings::default());
        assert_eq!(settings.mount_method, MountMethod::VirtualDevice);
        assert_eq!(
            settings.resource_name(),
            "instrumentation.odigos.io/generic"
        );
        assert_eq!(settings.host_path(), "/var/odigos");
        assert_eq!(settings.mount_path(), "/var/odigos");
        assert_eq!(settings.volume_name(), "odigos-agent");
        assert_eq!(settings.init_container_name(), "odigos-agent-init");
        assert!(
            settings
                .ignored_containers
                .contains(&"istio-proxy".to_string())
        );
    }

    #[test]
    fn mount_path_defaults_to_host_path() {
        let s = parse(json!({"mountMethod": "k8s-host-path", "hostPath": "/opt/agents"})).unwrap();
        assert_eq!(s.mount_path(), "/opt/agents");
        let s = parse(json!({"mountMethod": "k8s-host-path", "hostPath": "/opt/agents", "mountPath": "/agents"})).unwrap();
        assert_eq!(s.mount_path(), "/agents");
    }

    #[test]
    fn allowed_methods_are_generated_from_the_enum() {
        for (i, method) in MountMethod::ALL.iter().enumerate() {
            // A new variant must be added to ALL: as_str's match forces the author here.
            assert_eq!(MountMethod::ALL.iter().position(|m| m == method), Some(i));
            assert!(MountMethod::allowed_values().contains(method.as_str()));
        }
    }

    #[rstest]
    #[case::unknown_method(
        json!({"mountMethod": "VirtualDevice"}),
        "mountMethod: unknown value \"VirtualDevice\", expected one of: k8s-virtual-device, k8s-host-path, k8s-init-container"
    )]
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
    #[case::bad_label_key(json!({"mountMethod": "k8s-host-path", "requiredNodeLabel": {"key": "bad key", "value": "x"}}), "requiredNodeLabel.key: invalid value \"bad key\"")]
    #[case::bad_label_value(json!({"mountMethod": "k8s-host-path", "requiredNodeLabel": {"key": "k", "value": "a b"}}), "requiredNodeLabel.value: invalid value \"a b\"")]
    #[case::label_unknown_key(json!({"mountMethod": "k8s-host-path", "requiredNodeLabel": {"key": "k", "value": "v", "op": "In"}}), "requiredNodeLabel.op: unknown field `op`, expected `key` or `value`")]
    #[case::bad_ignored(json!({"ignoredContainers": ["Istio Proxy"]}), "ignoredContainers[0]: invalid value \"Istio Proxy\"")]
    #[case::bad_annotation(json!({"containersAnnotation": "not a key"}), "containersAnnotation: invalid value \"not a key\"")]
    #[case::host_path_under_virtual_device(json!({"hostPath": "/var/odigos"}), "hostPath: not allowed with mountMethod \"k8s-virtual-device\": it applies only to k8s-host-path; under k8s-virtual-device the device plugin mounts the directory: set its --host-path and --container-path flags instead")]
    #[case::resource_under_host_path(json!({"mountMethod": "k8s-host-path", "resourceName": "example.com/x"}), "resourceName: not allowed with mountMethod \"k8s-host-path\"")]
    #[case::label_under_virtual_device(json!({"requiredNodeLabel": {"key": "k", "value": "v"}}), "requiredNodeLabel: not allowed with mountMethod \"k8s-virtual-device\"")]
    #[case::init_under_host_path(json!({"mountMethod": "k8s-host-path", "initContainer": {"image": "x"}}), "initContainer: not allowed with mountMethod \"k8s-host-path\": it applies only to k8s-init-container")]
    #[case::init_image_missing(json!({"mountMethod": "k8s-init-container"}), "initContainer.image: required with mountMethod \"k8s-init-container\"")]
    #[case::init_image_spaces(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a b"}}), "initContainer.image: invalid value \"a b\"")]
    #[case::init_unknown_key(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "imagePullPolicy": "Always"}}), "initContainer.imagePullPolicy: unknown field `imagePullPolicy`, expected one of `image`")]
    #[case::init_bad_source(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "sourcePath": "instrumentations"}}), "initContainer.sourcePath: invalid value \"instrumentations\"")]
    #[case::init_bad_size(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "sizeLimit": "lots"}}), "initContainer.sizeLimit: invalid value \"lots\"")]
    #[case::init_resources_unknown(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "resources": {"limit": {"cpu": "1"}}}}), "initContainer.resources.limit: unknown key")]
    #[case::init_security_unknown(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "securityContext": {"capabilities": {"drp": ["ALL"]}}}}), "initContainer.securityContext.capabilities.drp: unknown key")]
    #[case::init_security_wrong_type(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a", "securityContext": {"runAsUser": "root"}}}), "initContainer.securityContext.runAsUser: invalid type: string \"root\"")]
    fn invalid_settings_name_key_value_and_allowed(
        #[case] settings: Value,
        #[case] expected: &str,
    ) {
        let err = parse(settings).unwrap_err();
        assert!(
            err.contains(expected),
            "error {err:?} should contain {expected:?}"
        );
    }

    #[test]
    fn settings_must_be_a_mapping() {
        for value in [json!([]), json!("k8s-host-path"), json!(3)] {
            let err = parse(value).unwrap_err();
            assert!(
                err.starts_with("settings: expected a mapping of keys"),
                "{err}"
            );
        }
    }

    #[test]
    fn unknown_top_level_key_lists_the_allowed_keys() {
        let err = parse(json!({"hostpath": "/var/odigos"})).unwrap_err();
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
    fn valid_settings_round_trip(#[case] settings: Value) {
        let parsed = parse(settings).unwrap();
        let again = parse(serde_json::to_value(&parsed).unwrap()).unwrap();
        assert_eq!(parsed, again);
    }
}
