//! The settings schema as given in `spec.settings`: every key optional, the default each
//! key takes when absent, and the limits on lists. Read strictly (`decode`): an unknown
//! key, a wrong type or an unknown keyword is refused with the key's path. `Serialize`
//! writes the keys that are set, for the documentation checks.

use super::decode::{
    Keyword, OPTIONAL_LIST, fields, keyword, mapping_fields, missing, object, required_text, text,
    texts,
};
use super::errors::SettingsError;
use crate::activation::RawActivation;
use agent_mount_common::MountMethod;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// Default name of the volume the policy adds.
pub const DEFAULT_VOLUME_NAME: &str = "odigos-agent";
/// Default annotation that lists the containers to instrument.
pub const DEFAULT_CONTAINERS_ANNOTATION: &str = "agent-mount.io/containers";
/// Default directory of the agents inside an agents image.
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
/// Most `agentDirectories` entries: each is a mount on every instrumented container.
pub const MAX_AGENT_DIRECTORIES: usize = 64;
/// Most `ignoredContainers` entries.
pub const MAX_IGNORED_CONTAINERS: usize = 256;

impl Keyword for MountMethod {
    const ALL: &'static [Self] = &MountMethod::ALL;
    fn as_str(self) -> &'static str {
        MountMethod::as_str(self)
    }
}

/// When the kubelet pulls the agents image of an image volume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull only when the image is not on the node.
    #[default]
    IfNotPresent,
    /// Pull at every pod start.
    Always,
    /// Never pull; the image must already be on the node.
    Never,
}

impl Keyword for PullPolicy {
    const ALL: &'static [Self] = &[
        PullPolicy::IfNotPresent,
        PullPolicy::Always,
        PullPolicy::Never,
    ];

    fn as_str(self) -> &'static str {
        match self {
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Always => "Always",
            PullPolicy::Never => "Never",
        }
    }
}

/// Writes an optional keyword's spelling (`Serialize`).
fn spelling<S: Serializer, K: Keyword>(
    value: &Option<K>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    value.map(K::as_str).serialize(serializer)
}

/// A node label that pods must be scheduled on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeLabel {
    /// Label key, e.g. `odigos.io/agents`.
    pub key: String,
    /// Label value, e.g. `"true"`.
    pub value: String,
}

impl NodeLabel {
    /// The keys, for the unknown-key message.
    const KEYS: &[&str] = &["key", "value"];

    /// Reads `requiredNodeLabel` at `path`: a mapping with both keys.
    fn read(value: Value, path: &str) -> Result<NodeLabel, SettingsError> {
        let (mut key, mut label_value) = (None, None);
        mapping_fields(
            value,
            path,
            "write `requiredNodeLabel: {key: odigos.io/agents, value: \"true\"}`, or remove the key",
            Self::KEYS,
            &mut |name, value, at| {
                match name {
                    "key" => key = Some(required_text(value, at)?),
                    "value" => label_value = Some(required_text(value, at)?),
                    _ => return Ok(false),
                }
                Ok(true)
            },
        )?;
        Ok(NodeLabel {
            key: key.ok_or_else(|| missing(path, "key"))?,
            value: label_value.ok_or_else(|| missing(path, "value"))?,
        })
    }
}

/// The `initContainer` block as given.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RawInitContainer {
    /// Image holding the agents; required for `k8s-init-container`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Directory of the agents inside the image (default `/instrumentations`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_path: Option<String>,
    /// Init container name (default `<volumeName>-init`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Resources of the init container, replacing the defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Value>,
    /// Fields merged over the hardened default securityContext.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context: Option<Value>,
    /// `sizeLimit` of the emptyDir volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<String>,
}

impl RawInitContainer {
    /// The keys, for the unknown-key message.
    const KEYS: &[&str] = &[
        "image",
        "sourcePath",
        "name",
        "resources",
        "securityContext",
        "sizeLimit",
    ];

    /// Reads `initContainer` at `path`: a mapping, every key optional.
    fn read(value: Value, path: &str) -> Result<RawInitContainer, SettingsError> {
        let mut raw = RawInitContainer::default();
        mapping_fields(
            value,
            path,
            "write `initContainer: {image: ghcr.io/example/agents:1.0}`, or remove the key",
            Self::KEYS,
            &mut |name, value, at| {
                match name {
                    "image" => raw.image = text(value, at)?,
                    "sourcePath" => raw.source_path = text(value, at)?,
                    "name" => raw.name = text(value, at)?,
                    "resources" => raw.resources = Some(object(value, at)?),
                    "securityContext" => raw.security_context = Some(object(value, at)?),
                    "sizeLimit" => raw.size_limit = text(value, at)?,
                    _ => return Ok(false),
                }
                Ok(true)
            },
        )?;
        Ok(raw)
    }
}

/// The `imageVolume` block as given.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RawImageVolume {
    /// The agents image; required for `k8s-image-volume`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// When the kubelet pulls it (default `IfNotPresent`).
    #[serde(serialize_with = "spelling", skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
    /// Where the agents sit inside the image (default `/instrumentations`; `/` allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_path: Option<String>,
}

impl RawImageVolume {
    /// The keys, for the unknown-key message.
    const KEYS: &[&str] = &["reference", "pullPolicy", "sourcePath"];

    /// Reads `imageVolume` at `path`: a mapping, every key optional.
    fn read(value: Value, path: &str) -> Result<RawImageVolume, SettingsError> {
        let mut raw = RawImageVolume::default();
        mapping_fields(
            value,
            path,
            "write `imageVolume: {reference: ghcr.io/example/agents:1.0}`, or remove the key",
            Self::KEYS,
            &mut |name, value, at| {
                match name {
                    "reference" => raw.reference = text(value, at)?,
                    "pullPolicy" => raw.pull_policy = keyword(value, at)?,
                    "sourcePath" => raw.source_path = text(value, at)?,
                    _ => return Ok(false),
                }
                Ok(true)
            },
        )?;
        Ok(raw)
    }
}

/// The settings as given in a ClusterAdmissionPolicy's `spec.settings`: every key optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RawSettings {
    /// How the agents reach the containers.
    #[serde(serialize_with = "spelling", skip_serializing_if = "Option::is_none")]
    pub mount_method: Option<MountMethod>,
    /// Extended resource requested by instrumented containers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// Agent directory on the node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// Where the agents appear in containers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
    /// Name of the added volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_name: Option<String>,
    /// Agent sub-directories to mount one by one; empty means the whole directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_directories: Option<Vec<String>>,
    /// Node label required through node affinity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_node_label: Option<NodeLabel>,
    /// The copy init container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_container: Option<RawInitContainer>,
    /// The CSI driver of the inline volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csi_driver: Option<String>,
    /// The agents image mounted as a volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_volume: Option<RawImageVolume>,
    /// Containers never instrumented unless the annotation names them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored_containers: Option<Vec<String>>,
    /// Pod annotation listing exactly the containers to instrument.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containers_annotation: Option<String>,
    /// Activation (opt-in): the agents also load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation: Option<RawActivation>,
}

impl RawSettings {
    /// The keys, in this order: the unknown-key message lists them, [`RawSettings::set_keys`] names the set ones.
    pub(super) const KEYS: &[&str] = &[
        "mountMethod",
        "resourceName",
        "hostPath",
        "mountPath",
        "volumeName",
        "agentDirectories",
        "requiredNodeLabel",
        "initContainer",
        "csiDriver",
        "imageVolume",
        "ignoredContainers",
        "containersAnnotation",
        "activation",
    ];

    /// Reads the settings' mapping strictly: an unknown key, a wrong type or an unknown
    /// keyword is refused with the key's path.
    pub fn read(map: Map<String, Value>) -> Result<RawSettings, SettingsError> {
        let mut raw = RawSettings::default();
        fields(map, "", Self::KEYS, &mut |name, value, at| {
            match name {
                "mountMethod" => raw.mount_method = keyword(value, at)?,
                "resourceName" => raw.resource_name = text(value, at)?,
                "hostPath" => raw.host_path = text(value, at)?,
                "mountPath" => raw.mount_path = text(value, at)?,
                "volumeName" => raw.volume_name = text(value, at)?,
                "agentDirectories" => {
                    raw.agent_directories = Some(texts(value, at, OPTIONAL_LIST)?);
                }
                "requiredNodeLabel" => raw.required_node_label = Some(NodeLabel::read(value, at)?),
                "initContainer" => raw.init_container = Some(RawInitContainer::read(value, at)?),
                "csiDriver" => raw.csi_driver = text(value, at)?,
                "imageVolume" => raw.image_volume = Some(RawImageVolume::read(value, at)?),
                "ignoredContainers" => {
                    raw.ignored_containers = Some(texts(value, at, OPTIONAL_LIST)?);
                }
                "containersAnnotation" => raw.containers_annotation = text(value, at)?,
                "activation" => raw.activation = Some(RawActivation::read(value, at)?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(raw)
    }
}
