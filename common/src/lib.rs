//! What the agent-mount policy and its node binary share: names, defaults and syntax checks.
//!
//! Dependency-free, so the node binary never pulls in the policy SDK or k8s-openapi.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod quantity;
pub mod syntax;

/// Default extended resource the device plugin advertises and the policy requests.
pub const DEFAULT_RESOURCE_NAME: &str = "instrumentation.odigos.io/generic";
/// Default agent directory on the node, and default mount path in containers.
pub const DEFAULT_HOST_PATH: &str = "/var/odigos";
/// Default CSI driver name, shared by the policy's volume and the node plugin's registration.
pub const DEFAULT_CSI_DRIVER: &str = "odigos.csi.driver";
