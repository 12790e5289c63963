//! Policy settings: the strict parse of `spec.settings` into one typed value per mount method.
//!
//! Parsing has three steps. Serde reads the keys into [`RawSettings`], refusing unknown
//! keys and naming the key path of a type error. [`Method::take`] then moves the keys
//! the chosen method uses out of the raw settings, so a key left behind does not apply
//! to that method: which key applies to which method is never listed by hand, it is
//! what `take` does ([`applies_to`]). Last, every value is checked; errors name the key,
//! the bad value and what is allowed.

use crate::copy::CopyContainer;
pub use agent_mount_common::MountMethod;
use agent_mount_common::syntax;
use agent_mount_common::{DEFAULT_CSI_DRIVER, DEFAULT_HOST_PATH, DEFAULT_RESOURCE_NAME};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;

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

fn join<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items.into_iter().collect::<Vec<_>>().join(", ")
}

/// An enum written in the settings by its Kubernetes-style spelling.
pub trait Keyword: Copy + 'static {
    /// Every value, in documentation order.
    const ALL: &'static [Self];
    /// The spelling.
    fn as_str(self) -> &'static str;
}

impl Keyword for MountMethod {
    const ALL: &'static [Self] = &MountMethod::ALL;
    fn as_str(self) -> &'static str {
        MountMethod::as_str(self)
    }
}

/// Serde for an optional keyword field (`#[serde(with = "keyword")]`): an unknown value
/// is refused with the list of allowed values, generated from `ALL`.
mod keyword {
    use super::{Keyword, join};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, K: Keyword>(
        value: &Option<K>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(keyword) => serializer.serialize_str(keyword.as_str()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, K: Keyword>(
        deserializer: D,
    ) -> Result<Option<K>, D::Error> {
        let Some(value) = Option::<String>::deserialize(deserializer)? else {
            return Ok(None);
        };
        K::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == value)
            .map(Some)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown value {value:?}, expected one of: {}",
                    join(K::ALL.iter().map(|k| k.as_str()))
                ))
            })
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
#[serde(deny_unknown_fields)]
pub struct NodeLabel {
    /// Label key, e.g. `odigos.io/agents`.
    pub key: String,
    /// Label value, e.g. `"true"`.
    pub value: String,
}

/// The `initContainer` block as given.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
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

/// The `imageVolume` block as given.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
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
}

impl RawSettings {
    /// Settings with every key set, nested keys included: the source of [`applies_to`]
    /// and of the documentation checks.
    pub fn every_key() -> RawSettings {
        let text = || Some(String::from("x"));
        RawSettings {
            mount_method: Some(MountMethod::default()),
            resource_name: text(),
            host_path: text(),
            mount_path: text(),
            volume_name: text(),
            agent_directories: Some(Vec::new()),
            required_node_label: Some(NodeLabel {
                key: "x".into(),
                value: "x".into(),
            }),
            init_container: Some(RawInitContainer {
                image: text(),
                source_path: text(),
                name: text(),
                resources: Some(Value::Object(Default::default())),
                security_context: Some(Value::Object(Default::default())),
                size_limit: text(),
            }),
            csi_driver: text(),
            image_volume: Some(RawImageVolume {
                reference: text(),
                pull_policy: Some(PullPolicy::default()),
                source_path: text(),
            }),
            ignored_containers: Some(Vec::new()),
            containers_annotation: text(),
        }
    }

    /// The top-level keys that are set, in camelCase.
    fn set_keys(&self) -> Vec<String> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }
}

/// A settings problem; the message names the key, the bad value and what is allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The settings are not a mapping.
    #[error(
        "settings: expected a mapping of keys such as {{\"mountMethod\": \"k8s-host-path\"}}, got {0}"
    )]
    NotAMapping(String),
    /// A key has the wrong type or is unknown (serde's words, with the key path).
    #[error("{key}: {message}")]
    Malformed {
        /// The key path.
        key: String,
        /// What serde found wrong.
        message: String,
    },
    /// A key set for a method it does not apply to.
    #[error(
        "{key}: not allowed with mountMethod {method:?}: it applies only to {applies_to}{hint}"
    )]
    NotForMethod {
        /// The key.
        key: String,
        /// The chosen method.
        method: &'static str,
        /// The methods the key applies to.
        applies_to: String,
        /// Where the setting belongs instead, if anywhere.
        hint: &'static str,
    },
    /// A key the chosen method needs is missing.
    #[error("{key}: required with mountMethod {method:?}: {example}")]
    Required {
        /// The key.
        key: &'static str,
        /// The chosen method.
        method: &'static str,
        /// What to set, with an example.
        example: &'static str,
    },
    /// A value breaks its rule.
    #[error("{key}: invalid value {value:?}: {allowed}")]
    Invalid {
        /// The key path.
        key: String,
        /// The value as given.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// A list holds a value twice.
    #[error("{key}: duplicate value {value:?}: each may be listed once")]
    Duplicate {
        /// The key path of the second occurrence.
        key: String,
        /// The repeated value.
        value: String,
    },
    /// A list is longer than the policy allows.
    #[error("{key}: {count} entries, at most {max} are allowed")]
    TooMany {
        /// The key.
        key: &'static str,
        /// How many were given.
        count: usize,
        /// The maximum.
        max: usize,
    },
    /// A nested Kubernetes object has a key its type does not know.
    #[error("{key}: unknown key: not a field of this Kubernetes object (check its spelling)")]
    UnknownKey {
        /// The key path.
        key: String,
    },
}

impl SettingsError {
    /// An [`SettingsError::Invalid`] from a syntax rule's answer.
    pub fn invalid(key: impl Into<String>, value: &str, allowed: impl Into<String>) -> Self {
        SettingsError::Invalid {
            key: key.into(),
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }
}

/// What every volume-adding method shares: the volume's name and its read-only mounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentMounts {
    /// Name of the added volume.
    pub volume_name: String,
    /// Where the agents appear in containers.
    pub mount_path: String,
    /// Sub-directories mounted one by one; empty: the whole directory.
    pub agent_directories: Vec<String>,
}

/// The agents image of `k8s-image-volume`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSource {
    /// The image reference.
    pub reference: String,
    /// When the kubelet pulls it.
    pub pull_policy: PullPolicy,
    /// Where the agents sit inside the image.
    pub source_path: String,
}

impl ImageSource {
    /// The `subPath` of the agents inside the image volume: `sourcePath` without its
    /// leading `/`, joined with `dir`; `None` for the image's root.
    pub fn sub_path(&self, dir: Option<&str>) -> Option<String> {
        let base = self.source_path.trim_start_matches('/');
        match (base.is_empty(), dir) {
            (true, None) => None,
            (true, Some(dir)) => Some(dir.to_string()),
            (false, None) => Some(base.to_string()),
            (false, Some(dir)) => Some(format!("{base}/{dir}")),
        }
    }
}

/// The chosen method and everything it needs; keys of other methods cannot be represented.
#[derive(Clone, Debug, PartialEq)]
pub enum Method {
    /// `k8s-virtual-device`.
    VirtualDevice {
        /// The extended resource to request.
        resource_name: String,
    },
    /// `k8s-host-path`.
    HostPath {
        /// The agent directory on the node.
        host_path: String,
        /// The volume and mounts.
        mounts: AgentMounts,
        /// A node label ANDed into the node affinity.
        node_label: Option<NodeLabel>,
    },
    /// `k8s-init-container`.
    InitContainer {
        /// The volume and mounts.
        mounts: AgentMounts,
        /// The copy container.
        copy: CopyContainer,
    },
    /// `k8s-csi-driver`.
    CsiDriver {
        /// The CSI driver name.
        driver: String,
        /// The volume and mounts.
        mounts: AgentMounts,
        /// A node label ANDed into the node affinity.
        node_label: Option<NodeLabel>,
    },
    /// `k8s-image-volume`.
    ImageVolume {
        /// The agents image.
        image: ImageSource,
        /// The volume and mounts.
        mounts: AgentMounts,
        /// A node label ANDed into the node affinity.
        node_label: Option<NodeLabel>,
    },
}

impl Method {
    /// Moves the keys `kind` uses out of `raw`, with their defaults; keys left in `raw`
    /// do not apply to `kind`. Fails only when a required key is missing.
    pub fn take(kind: MountMethod, raw: &mut RawSettings) -> Result<Method, SettingsError> {
        let mut mounts = |default_mount_path: &str| AgentMounts {
            volume_name: raw
                .volume_name
                .take()
                .unwrap_or_else(|| DEFAULT_VOLUME_NAME.into()),
            mount_path: raw
                .mount_path
                .take()
                .unwrap_or_else(|| default_mount_path.into()),
            agent_directories: raw.agent_directories.take().unwrap_or_default(),
        };
        Ok(match kind {
            MountMethod::VirtualDevice => Method::VirtualDevice {
                resource_name: raw
                    .resource_name
                    .take()
                    .unwrap_or_else(|| DEFAULT_RESOURCE_NAME.into()),
            },
            MountMethod::HostPath => {
                let host_path = raw
                    .host_path
                    .take()
                    .unwrap_or_else(|| DEFAULT_HOST_PATH.into());
                Method::HostPath {
                    mounts: mounts(&host_path),
                    host_path,
                    node_label: raw.required_node_label.take(),
                }
            }
            MountMethod::InitContainer => {
                let mounts = mounts(DEFAULT_HOST_PATH);
                let init = raw.init_container.take().unwrap_or_default();
                let copy = CopyContainer::from_raw(init, &mounts.volume_name).ok_or(
                    SettingsError::Required {
                        key: "initContainer.image",
                        method: kind.as_str(),
                        example: "the image that holds the agents, e.g. initContainer: {image: ghcr.io/example/agents:1.0}",
                    },
                )?;
                Method::InitContainer { mounts, copy }
            }
            MountMethod::CsiDriver => Method::CsiDriver {
                mounts: mounts(DEFAULT_HOST_PATH),
                driver: raw
                    .csi_driver
                    .take()
                    .unwrap_or_else(|| DEFAULT_CSI_DRIVER.into()),
                node_label: raw.required_node_label.take(),
            },
            MountMethod::ImageVolume => {
                let mounts = mounts(DEFAULT_HOST_PATH);
                let node_label = raw.required_node_label.take();
                let given = raw.image_volume.take().unwrap_or_default();
                let reference = given.reference.ok_or(SettingsError::Required {
                    key: "imageVolume.reference",
                    method: kind.as_str(),
                    example: "the agents image to mount, e.g. imageVolume: {reference: ghcr.io/example/agents:1.0}",
                })?;
                Method::ImageVolume {
                    image: ImageSource {
                        reference,
                        pull_policy: given.pull_policy.unwrap_or_default(),
                        source_path: given
                            .source_path
                            .unwrap_or_else(|| DEFAULT_SOURCE_PATH.into()),
                    },
                    mounts,
                    node_label,
                }
            }
        })
    }

    /// The `mountMethod` this value is for.
    pub fn kind(&self) -> MountMethod {
        match self {
            Method::VirtualDevice { .. } => MountMethod::VirtualDevice,
            Method::HostPath { .. } => MountMethod::HostPath,
            Method::InitContainer { .. } => MountMethod::InitContainer,
            Method::CsiDriver { .. } => MountMethod::CsiDriver,
            Method::ImageVolume { .. } => MountMethod::ImageVolume,
        }
    }

    /// The volume and mounts, for every method that adds a volume.
    pub fn mounts(&self) -> Option<&AgentMounts> {
        match self {
            Method::VirtualDevice { .. } => None,
            Method::HostPath { mounts, .. }
            | Method::InitContainer { mounts, .. }
            | Method::CsiDriver { mounts, .. }
            | Method::ImageVolume { mounts, .. } => Some(mounts),
        }
    }

    /// The node label ANDed into the affinity, for the methods that take one.
    pub fn node_label(&self) -> Option<&NodeLabel> {
        match self {
            Method::HostPath { node_label, .. }
            | Method::CsiDriver { node_label, .. }
            | Method::ImageVolume { node_label, .. } => node_label.as_ref(),
            Method::VirtualDevice { .. } | Method::InitContainer { .. } => None,
        }
    }

    /// Checks every value the method carries.
    fn validate(&self) -> Result<(), SettingsError> {
        // Method keys first: under host-path, mountPath defaults to hostPath and would
        // otherwise take the blame for a bad hostPath.
        self.validate_own_keys()?;
        self.mounts().map_or(Ok(()), AgentMounts::validate)
    }

    fn validate_own_keys(&self) -> Result<(), SettingsError> {
        match self {
            Method::VirtualDevice { resource_name } => check(
                "resourceName",
                resource_name,
                syntax::extended_resource_name,
            ),
            Method::HostPath { host_path, .. } => {
                check("hostPath", host_path, syntax::absolute_path)
            }
            Method::InitContainer { copy, .. } => copy.validate(),
            Method::CsiDriver { driver, .. } => check("csiDriver", driver, syntax::csi_driver_name),
            Method::ImageVolume { image, .. } => {
                check("imageVolume.reference", &image.reference, syntax::image)?;
                check(
                    "imageVolume.sourcePath",
                    &image.source_path,
                    syntax::absolute_path_or_root,
                )
            }
        }?;
        validate_node_label(self.node_label())
    }
}

impl AgentMounts {
    fn validate(&self) -> Result<(), SettingsError> {
        check("mountPath", &self.mount_path, syntax::absolute_path)?;
        check("volumeName", &self.volume_name, syntax::dns_label)?;
        check_list(
            "agentDirectories",
            &self.agent_directories,
            MAX_AGENT_DIRECTORIES,
            syntax::path_segment,
        )
    }
}

fn validate_node_label(label: Option<&NodeLabel>) -> Result<(), SettingsError> {
    if let Some(label) = label {
        check("requiredNodeLabel.key", &label.key, syntax::qualified_name)?;
        check("requiredNodeLabel.value", &label.value, syntax::label_value)?;
    }
    Ok(())
}

/// The methods a top-level settings key applies to, derived from [`Method::take`].
pub fn applies_to(key: &str) -> Vec<MountMethod> {
    MountMethod::ALL
        .into_iter()
        .filter(|&kind| {
            let mut raw = RawSettings::every_key();
            let _ = Method::take(kind, &mut raw);
            // Keys every method reads are taken by `Settings::from_raw`, not by `take`.
            let common = ["mountMethod", "ignoredContainers", "containersAnnotation"];
            common.contains(&key) || !raw.set_keys().iter().any(|k| k == key)
        })
        .collect()
}

/// The parsed policy settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The mount method and its settings.
    pub method: Method,
    /// Containers never instrumented unless the annotation names them.
    pub ignored_containers: BTreeSet<String>,
    /// Pod annotation listing exactly the containers to instrument.
    pub containers_annotation: String,
}

impl Default for Settings {
    /// The Odigos-compatible defaults, the same as parsing `{}`.
    fn default() -> Self {
        Settings {
            method: Method::VirtualDevice {
                resource_name: DEFAULT_RESOURCE_NAME.into(),
            },
            ignored_containers: DEFAULT_IGNORED_CONTAINERS.map(String::from).into(),
            containers_annotation: DEFAULT_CONTAINERS_ANNOTATION.into(),
        }
    }
}

impl Settings {
    /// Turns raw settings into typed ones and checks every value.
    pub fn from_raw(mut raw: RawSettings) -> Result<Settings, SettingsError> {
        let kind = raw.mount_method.take().unwrap_or_default();
        let ignored = raw.ignored_containers.take();
        let containers_annotation = raw
            .containers_annotation
            .take()
            .unwrap_or_else(|| DEFAULT_CONTAINERS_ANNOTATION.into());
        let method = Method::take(kind, &mut raw)?;
        if let Some(key) = raw.set_keys().into_iter().next() {
            let applies_to = join(applies_to(&key).into_iter().map(MountMethod::as_str));
            return Err(SettingsError::NotForMethod {
                hint: misplaced_key_hint(&key, kind),
                key,
                method: kind.as_str(),
                applies_to,
            });
        }
        method.validate()?;
        let ignored_containers = match ignored {
            None => DEFAULT_IGNORED_CONTAINERS.map(String::from).into(),
            Some(list) => {
                check_list(
                    "ignoredContainers",
                    &list,
                    MAX_IGNORED_CONTAINERS,
                    syntax::dns_label,
                )?;
                list.into_iter().collect()
            }
        };
        check(
            "containersAnnotation",
            &containers_annotation,
            syntax::qualified_name,
        )?;
        Ok(Settings {
            method,
            ignored_containers,
            containers_annotation,
        })
    }
}

/// Where a key set under the wrong method belongs instead.
fn misplaced_key_hint(key: &str, method: MountMethod) -> &'static str {
    match (key, method) {
        ("hostPath" | "mountPath", MountMethod::VirtualDevice) => {
            "; under k8s-virtual-device the device plugin mounts the directory: set its --host-path and --container-path flags instead"
        }
        ("hostPath", MountMethod::CsiDriver) => {
            "; under k8s-csi-driver the CSI node plugin mounts the directory: set its --agent-dir flag instead"
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

/// Parses settings from JSON: the strict read, the method's keys, then every value.
pub fn parse(value: Value) -> Result<Settings, SettingsError> {
    // Serde would also read a struct from a JSON array; settings are always a mapping.
    if !value.is_object() {
        return Err(SettingsError::NotAMapping(value.to_string()));
    }
    Settings::from_raw(deserialize_at(value, "")?)
}

/// Deserialises `value` as `T`, naming the key path below `prefix` in errors.
pub fn deserialize_at<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, SettingsError> {
    // Deserialising from a `Value` (not text) keeps "at line 1 column 20" out of the message.
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let key = match (prefix.is_empty(), path == ".") {
            (true, true) => "settings".to_string(),
            (true, false) => path,
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{path}"),
        };
        SettingsError::Malformed {
            key,
            message: err.into_inner().to_string(),
        }
    })
}

/// Checks a value with a syntax rule.
pub fn check(
    key: &str,
    value: &str,
    rule: fn(&str) -> Result<(), String>,
) -> Result<(), SettingsError> {
    rule(value).map_err(|allowed| SettingsError::invalid(key, value, allowed))
}

/// Checks a list's length, each entry, and that no entry repeats, in n·log n.
fn check_list(
    key: &'static str,
    list: &[String],
    max: usize,
    rule: fn(&str) -> Result<(), String>,
) -> Result<(), SettingsError> {
    if list.len() > max {
        return Err(SettingsError::TooMany {
            key,
            count: list.len(),
            max,
        });
    }
    let mut seen = BTreeSet::new();
    for (i, entry) in list.iter().enumerate() {
        check(&format!("{key}[{i}]"), entry, rule)?;
        if !seen.insert(entry.as_str()) {
            return Err(SettingsError::Duplicate {
                key: format!("{key}[{i}]"),
                value: entry.clone(),
            });
        }
    }
    Ok(())
}

/// Reads a nested Kubernetes object as `T`, rejecting keys that `T` does not know.
///
/// k8s-openapi types ignore unknown keys, so a misspelt key would silently vanish:
/// a key of the input that is missing after a typed round trip is unknown.
pub fn typed_without_unknown_keys<T: DeserializeOwned + Serialize>(
    value: &Value,
    key: &str,
) -> Result<T, SettingsError> {
    let typed: T = deserialize_at(value.clone(), key)?;
    let round_trip = serde_json::to_value(&typed).map_err(|e| SettingsError::Malformed {
        key: key.to_string(),
        message: e.to_string(),
    })?;
    match first_unknown_key(value, &round_trip, key) {
        Some(key) => Err(SettingsError::UnknownKey { key }),
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
mod tests;
