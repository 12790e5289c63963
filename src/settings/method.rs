//! The chosen mount method as a type: one variant per method, carrying exactly the values
//! that method uses, with their defaults applied and their checks.
//!
//! [`Method::take`] moves the keys a method uses out of the raw settings; a key left
//! behind does not apply to that method, so which key applies where is never listed by
//! hand (`keys::applies_to` derives it from `take`).

use super::check::{check, check_list};
use super::errors::SettingsError;
use super::raw::{
    DEFAULT_SOURCE_PATH, DEFAULT_VOLUME_NAME, MAX_AGENT_DIRECTORIES, NodeLabel, PullPolicy,
    RawSettings,
};
use crate::init_container::CopyContainer;
use agent_mount_common::syntax;
use agent_mount_common::{
    DEFAULT_CSI_DRIVER, DEFAULT_HOST_PATH, DEFAULT_RESOURCE_NAME, MountMethod,
};

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
        /// The agents' path inside containers: the device plugin's `--container-path`
        /// (`activation.containerPath`), where activation's `{dir}` points.
        container_path: String,
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
                container_path: raw
                    .activation
                    .as_mut()
                    .and_then(|a| a.container_path.take())
                    .unwrap_or_else(|| DEFAULT_HOST_PATH.into()),
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
                let copy = CopyContainer::from_raw(
                    init,
                    &mounts.volume_name,
                    &mounts.agent_directories,
                )
                .ok_or(
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

    /// Where the agents are inside containers: activation's `{dir}`.
    pub fn agents_path(&self) -> &str {
        match self {
            Method::VirtualDevice { container_path, .. } => container_path,
            Method::HostPath { mounts, .. }
            | Method::InitContainer { mounts, .. }
            | Method::CsiDriver { mounts, .. }
            | Method::ImageVolume { mounts, .. } => &mounts.mount_path,
        }
    }

    /// The key that sets [`Method::agents_path`], for messages.
    pub fn agents_path_key(&self) -> &'static str {
        match self {
            Method::VirtualDevice { .. } => "activation.containerPath",
            Method::HostPath { .. }
            | Method::InitContainer { .. }
            | Method::CsiDriver { .. }
            | Method::ImageVolume { .. } => "mountPath",
        }
    }

    /// Checks every value the method carries.
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        // Method keys first: under host-path, mountPath defaults to hostPath and would
        // otherwise take the blame for a bad hostPath.
        self.validate_own_keys()?;
        self.mounts().map_or(Ok(()), AgentMounts::validate)
    }

    fn validate_own_keys(&self) -> Result<(), SettingsError> {
        match self {
            Method::VirtualDevice {
                resource_name,
                container_path,
            } => {
                check(
                    "resourceName",
                    resource_name,
                    syntax::extended_resource_name,
                )?;
                check(
                    "activation.containerPath",
                    container_path,
                    syntax::absolute_path,
                )
            }
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
        if let Some(label) = self.node_label() {
            check("requiredNodeLabel.key", &label.key, syntax::qualified_name)?;
            check("requiredNodeLabel.value", &label.value, syntax::label_value)?;
        }
        Ok(())
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
