//! The settings schema as given in `spec.settings`: every key optional, the default each
//! key takes when absent, and the limits on lists. Serde reads it strictly: an unknown
//! key, a wrong type or an unknown keyword is refused with the key's path.

use super::decode::{Keyword, keyword, mapping_only, present_list, present_mapping};
use crate::activation::RawActivation;
use agent_mount_common::MountMethod;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// A node label that pods must be scheduled on.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct NodeLabel {
    /// Label key, e.g. `odigos.io/agents`.
    pub key: String,
    /// Label value, e.g. `"true"`.
    pub value: String,
}

/// The `initContainer` block as given.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(
    remote = "Self",
    default,
    deny_unknown_fields,
    rename_all = "camelCase"
)]
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
    #[serde(
        deserialize_with = "present_mapping",
        skip_serializing_if = "Option::is_none"
    )]
    pub resources: Option<Value>,
    /// Fields merged over the hardened default securityContext.
    #[serde(
        deserialize_with = "present_mapping",
        skip_serializing_if = "Option::is_none"
    )]
    pub security_context: Option<Value>,
    /// `sizeLimit` of the emptyDir volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<String>,
}

/// The `imageVolume` block as given.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(
    remote = "Self",
    default,
    deny_unknown_fields,
    rename_all = "camelCase"
)]
pub struct RawImageVolume {
    /// The agents image; required for `k8s-image-volume`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// When the kubelet pulls it (default `IfNotPresent`).
    #[serde(with = "keyword", skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
    /// Where the agents sit inside the image (default `/instrumentations`; `/` allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_path: Option<String>,
}

mapping_only!(
    NodeLabel,
    "write `requiredNodeLabel: {key: odigos.io/agents, value: \"true\"}`, or remove the key"
);
mapping_only!(
    RawInitContainer,
    "write `initContainer: {image: ghcr.io/example/agents:1.0}`, or remove the key"
);
mapping_only!(
    RawImageVolume,
    "write `imageVolume: {reference: ghcr.io/example/agents:1.0}`, or remove the key"
);

/// The settings as given in a ClusterAdmissionPolicy's `spec.settings`: every key optional.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSettings {
    /// How the agents reach the containers.
    #[serde(with = "keyword", skip_serializing_if = "Option::is_none")]
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
    #[serde(
        deserialize_with = "present_list",
        skip_serializing_if = "Option::is_none"
    )]
    pub agent_directories: Option<Vec<String>>,
    /// Node label required through node affinity.
    #[serde(
        deserialize_with = "present_mapping",
        skip_serializing_if = "Option::is_none"
    )]
    pub required_node_label: Option<NodeLabel>,
    /// The copy init container.
    #[serde(
        deserialize_with = "present_mapping",
        skip_serializing_if = "Option::is_none"
    )]
    pub init_container: Option<RawInitContainer>,
    /// The CSI driver of the inline volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csi_driver: Option<String>,
    /// The agents image mounted as a volume.
    #[serde(
        deserialize_with = "present_mapping",
        skip_serializing_if = "Option::is_none"
    )]
    pub image_volume: Option<RawImageVolume>,
    /// Containers never instrumented unless the annotation names them.
    #[serde(
        deserialize_with = "present_list",
        skip_serializing_if = "Option::is_none"
    )]
    pub ignored_containers: Option<Vec<String>>,
    /// Pod annotation listing exactly the containers to instrument.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containers_annotation: Option<String>,
    /// Activation (opt-in): the agents also load.
    #[serde(
        deserialize_with = "present_mapping",
        skip_serializing_if = "Option::is_none"
    )]
    pub activation: Option<RawActivation>,
}
