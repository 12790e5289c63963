//! The kubelet device plugin API `v1beta1`, generated from `proto/api.proto` by build.rs.
// The generated items carry the proto's comments; the messages are described in DESIGN §3a.
#![allow(missing_docs)]

tonic::include_proto!("v1beta1");

/// The API version sent in `RegisterRequest.version`.
pub const VERSION: &str = "v1beta1";
/// The kubelet's registration socket, inside the plugin directory.
pub const KUBELET_SOCKET: &str = "kubelet.sock";
