//! Key introspection: which keys are set, where each key applies (derived from
//! [`Method::take`], never listed by hand), and the error for a key set under a method it
//! does not apply to. The documentation checks read the same source.

use super::errors::SettingsError;
use super::method::Method;
use super::raw::{NodeLabel, PullPolicy, RawImageVolume, RawInitContainer, RawSettings};
use crate::activation::{RawActivation, RawEnvVar, RawRecipe};
use agent_mount_common::MountMethod;
use serde_json::Value;

/// Keys every method reads: `Settings::from_raw` takes them, not [`Method::take`].
pub(super) const COMMON_KEYS: [&str; 4] = [
    "mountMethod",
    "ignoredContainers",
    "containersAnnotation",
    "activation",
];
/// The one nested key a method takes: under virtual-device the agents' path in containers.
const CONTAINER_PATH: &str = "activation.containerPath";

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
            activation: Some(RawActivation {
                annotation: text(),
                container_path: text(),
                agents: Some([("x".to_string(), Some(RawRecipe::default()))].into()),
                env: Some(vec![RawEnvVar::default()]),
                resource_attributes: Some(true),
            }),
        }
    }

    /// The top-level keys that are set, in camelCase, and `activation.containerPath`.
    pub(super) fn set_keys(&self) -> Vec<String> {
        // In the order of `KEYS`; a test reads every key back to its field.
        let set = [
            self.mount_method.is_some(),
            self.resource_name.is_some(),
            self.host_path.is_some(),
            self.mount_path.is_some(),
            self.volume_name.is_some(),
            self.agent_directories.is_some(),
            self.required_node_label.is_some(),
            self.init_container.is_some(),
            self.csi_driver.is_some(),
            self.image_volume.is_some(),
            self.ignored_containers.is_some(),
            self.containers_annotation.is_some(),
            self.activation.is_some(),
        ];
        RawSettings::KEYS
            .iter()
            .zip(set)
            .filter(|&(_, set)| set)
            .map(|(key, _)| key.to_string())
            .chain(nested_keys(self.activation.as_ref()))
            .collect()
    }
}

/// The nested keys set in an `activation` block that a method takes by itself:
/// `activation.containerPath`, read by name without serialising the block.
pub(super) fn nested_keys(activation: Option<&RawActivation>) -> Option<String> {
    activation
        .and_then(|a| a.container_path.as_ref())
        .map(|_| CONTAINER_PATH.to_string())
}

/// The methods a settings key applies to, derived from [`Method::take`]; a nested key
/// applies where its top-level key does, unless a method takes it by itself.
pub fn applies_to(key: &str) -> Vec<MountMethod> {
    let key = match key.split_once('.') {
        Some((top, _)) if key != CONTAINER_PATH => top,
        _ => key,
    };
    MountMethod::ALL
        .into_iter()
        .filter(|&kind| {
            let mut raw = RawSettings::every_key();
            let _ = Method::take(kind, &mut raw);
            COMMON_KEYS.contains(&key) || !raw.set_keys().iter().any(|k| k == key)
        })
        .collect()
}

/// The error for `key`, set under `method`, which does not take it.
pub(super) fn not_for_method(key: String, method: MountMethod) -> SettingsError {
    let applies_to = applies_to(&key)
        .into_iter()
        .map(MountMethod::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    SettingsError::NotForMethod {
        hint: misplaced_key_hint(&key, method),
        key,
        method: method.as_str(),
        applies_to,
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
        (CONTAINER_PATH, _) => "; the other methods put the agents at mountPath",
        ("resourceName", _) => {
            "; only k8s-virtual-device requests an extended resource (set the device plugin's --resource-name to match)"
        }
        _ => "",
    }
}
