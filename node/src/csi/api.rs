//! The generated CSI v1 and kubelet plugin registration types, from `proto/csi.proto`
//! and `proto/pluginregistration.proto` (see build.rs).

/// CSI v1 (`csi.v1`): the Identity and Node services.
#[allow(missing_docs)] // generated; the messages are described in DESIGN §3b
pub mod csi {
    tonic::include_proto!("csi.v1");
}

/// Kubelet plugin registration (`pluginregistration`): the Registration service.
#[allow(missing_docs)] // generated; the messages are described in DESIGN §3b
pub mod registration {
    tonic::include_proto!("pluginregistration");
}

/// `PluginInfo.type` for a CSI driver.
pub const PLUGIN_TYPE: &str = "CSIPlugin";
/// The CSI versions this plugin speaks, for `PluginInfo.supported_versions`.
pub const SUPPORTED_VERSIONS: [&str; 1] = ["1.0.0"];
/// The volume-context key the kubelet sets for inline volumes when `podInfoOnMount` is on.
pub const EPHEMERAL_KEY: &str = "csi.storage.k8s.io/ephemeral";
