//! What the agent-mount policy and its node binary share: names, defaults and syntax checks.
//!
//! Dependency-free, so the node binary never pulls in the policy SDK or k8s-openapi.

pub mod quantity;
pub mod syntax;

/// Default extended resource the device plugin advertises and the policy requests.
pub const DEFAULT_RESOURCE_NAME: &str = "instrumentation.odigos.io/generic";
/// Default agent directory on the node, and default mount path in containers.
pub const DEFAULT_HOST_PATH: &str = "/var/odigos";
/// Default CSI driver name, shared by the policy's volume and the node plugin's registration.
pub const DEFAULT_CSI_DRIVER: &str = "odigos.csi.driver";

/// How the agent directory reaches the containers: the value of `mountMethod`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum MountMethod {
    /// An extended resource; the device plugin mounts the host directory.
    #[default]
    VirtualDevice,
    /// A hostPath volume and read-only volumeMounts.
    HostPath,
    /// An init container copies the agents from an image into an emptyDir.
    InitContainer,
    /// An inline CSI volume; the CSI node plugin bind-mounts the host directory.
    CsiDriver,
    /// The agents image itself, mounted read-only as an image volume.
    ImageVolume,
}

impl MountMethod {
    /// Every method, in the order the documentation lists them.
    pub const ALL: [MountMethod; 5] = [
        MountMethod::VirtualDevice,
        MountMethod::HostPath,
        MountMethod::InitContainer,
        MountMethod::CsiDriver,
        MountMethod::ImageVolume,
    ];

    /// The settings value that selects this method.
    pub fn as_str(self) -> &'static str {
        match self {
            MountMethod::VirtualDevice => "k8s-virtual-device",
            MountMethod::HostPath => "k8s-host-path",
            MountMethod::InitContainer => "k8s-init-container",
            MountMethod::CsiDriver => "k8s-csi-driver",
            MountMethod::ImageVolume => "k8s-image-volume",
        }
    }
}
