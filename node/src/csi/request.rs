//! The pure argument checks of `NodePublishVolume` and `NodeUnpublishVolume` (DESIGN §3b
//! "Rules"): no I/O, so every refusal and its gRPC code is table-tested.

use super::api::EPHEMERAL_KEY;
use super::api::csi::volume_capability::AccessType;
use super::api::csi::{NodePublishVolumeRequest, NodeUnpublishVolumeRequest};
use agent_mount_common::syntax;
use std::path::{Path, PathBuf};
use tonic::Code;

/// A request this plugin refuses before touching the node; each message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A required string field is empty.
    #[error("{field} is empty: the kubelet always sends it, so the caller is not a kubelet")]
    Empty {
        /// The field's name in the CSI request.
        field: &'static str,
    },
    /// `target_path` is relative or not normalised.
    #[error(
        "target_path {value:?} is not an absolute, normalised path (no '.', '..', '//' or trailing '/')"
    )]
    NotNormalised {
        /// The path as sent.
        value: String,
    },
    /// `target_path` lies outside the kubelet's pod directory.
    #[error(
        "target_path {value:?} is not under {pods}/: this plugin mounts only into the kubelet's pod volumes (check --kubelet-dir)"
    )]
    OutsidePods {
        /// The path as sent.
        value: String,
        /// `<kubelet-dir>/pods`.
        pods: String,
    },
    /// `volume_capability` is missing.
    #[error("volume_capability is missing: the CSI spec requires it")]
    NoCapability,
    /// A raw block volume was asked for.
    #[error(
        "volume_capability.block: this driver serves only mount volumes (a read-only directory), not block devices"
    )]
    Block,
    /// The kubelet marks the volume as not inline ephemeral.
    #[error(
        "volume_context[{EPHEMERAL_KEY}] is {value:?}: this driver serves only inline ephemeral volumes (a csi volume in the pod spec); use no PersistentVolume with it"
    )]
    NotEphemeral {
        /// The value the kubelet sent.
        value: String,
    },
}

impl Refusal {
    /// The gRPC code the CSI spec gives this refusal.
    pub fn code(&self) -> Code {
        match self {
            Refusal::NotEphemeral { .. } => Code::FailedPrecondition,
            _ => Code::InvalidArgument,
        }
    }
}

impl From<Refusal> for tonic::Status {
    fn from(refusal: Refusal) -> Self {
        tonic::Status::new(refusal.code(), refusal.to_string())
    }
}

/// Checks `volume_id` and `target_path` (shared by publish and unpublish); returns the target.
fn check_target(pods_dir: &Path, volume_id: &str, target_path: &str) -> Result<PathBuf, Refusal> {
    if volume_id.is_empty() {
        return Err(Refusal::Empty { field: "volume_id" });
    }
    if target_path.is_empty() {
        return Err(Refusal::Empty {
            field: "target_path",
        });
    }
    if syntax::absolute_path(target_path).is_err() {
        return Err(Refusal::NotNormalised {
            value: target_path.to_string(),
        });
    }
    let target = PathBuf::from(target_path);
    // `strip_prefix` compares whole components, so `<pods>-evil/x` is outside.
    let inside = target
        .strip_prefix(pods_dir)
        .is_ok_and(|rest| !rest.as_os_str().is_empty());
    if !inside {
        return Err(Refusal::OutsidePods {
            value: target_path.to_string(),
            pods: pods_dir.display().to_string(),
        });
    }
    Ok(target)
}

/// Checks a `NodePublishVolume` request; returns the target path to mount at.
///
/// `readonly` is not checked: the mount is read-only whatever it says.
pub fn check_publish(
    pods_dir: &Path,
    request: &NodePublishVolumeRequest,
) -> Result<PathBuf, Refusal> {
    let target = check_target(pods_dir, &request.volume_id, &request.target_path)?;
    let capability = request
        .volume_capability
        .as_ref()
        .ok_or(Refusal::NoCapability)?;
    if let Some(AccessType::Block(_)) = capability.access_type {
        return Err(Refusal::Block);
    }
    // Absent when the CSIDriver has podInfoOnMount: false (e.g. one made by Odigos); its
    // volumeLifecycleModes: [Ephemeral] already keeps persistent volumes away then.
    match request.volume_context.get(EPHEMERAL_KEY) {
        Some(value) if value != "true" => Err(Refusal::NotEphemeral {
            value: value.clone(),
        }),
        _ => Ok(target),
    }
}

/// Checks a `NodeUnpublishVolume` request; returns the target path to unmount.
pub fn check_unpublish(
    pods_dir: &Path,
    request: &NodeUnpublishVolumeRequest,
) -> Result<PathBuf, Refusal> {
    check_target(pods_dir, &request.volume_id, &request.target_path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csi::api::csi::VolumeCapability;
    use crate::csi::api::csi::volume_capability::{BlockVolume, MountVolume};
    use std::collections::HashMap;

    const PODS: &str = "/var/lib/kubelet/pods";
    const TARGET: &str = "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~csi/odigos-agent/mount";

    fn mount() -> Option<VolumeCapability> {
        Some(VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume::default())),
            access_mode: None,
        })
    }

    fn publish(
        target: &str,
        capability: Option<VolumeCapability>,
        ephemeral: Option<&str>,
    ) -> NodePublishVolumeRequest {
        NodePublishVolumeRequest {
            volume_id: "csi-123".into(),
            target_path: target.into(),
            volume_capability: capability,
            readonly: false,
            volume_context: ephemeral
                .map(|v| HashMap::from([(EPHEMERAL_KEY.to_string(), v.to_string())]))
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    #[test]
    fn publish_rules() {
        let block = Some(VolumeCapability {
            access_type: Some(AccessType::Block(BlockVolume {})),
            access_mode: None,
        });
        let no_id = NodePublishVolumeRequest {
            volume_id: String::new(),
            ..publish(TARGET, mount(), Some("true"))
        };
        // (case, request, expected code or None for accepted, a word the message must hold)
        let cases: Vec<(&str, NodePublishVolumeRequest, Option<Code>, &str)> = vec![
            ("inline", publish(TARGET, mount(), Some("true")), None, ""),
            ("no pod info", publish(TARGET, mount(), None), None, ""),
            (
                "readonly true",
                NodePublishVolumeRequest {
                    readonly: true,
                    ..publish(TARGET, mount(), None)
                },
                None,
                "",
            ),
            (
                "empty volume_id",
                no_id,
                Some(Code::InvalidArgument),
                "volume_id",
            ),
            (
                "empty target",
                publish("", mount(), None),
                Some(Code::InvalidArgument),
                "target_path",
            ),
            (
                "relative",
                publish("var/lib/kubelet/pods/u/mount", mount(), None),
                Some(Code::InvalidArgument),
                "target_path",
            ),
            (
                "dotdot",
                publish("/var/lib/kubelet/pods/../../../etc", mount(), None),
                Some(Code::InvalidArgument),
                "target_path",
            ),
            (
                "trailing slash",
                publish("/var/lib/kubelet/pods/u/mount/", mount(), None),
                Some(Code::InvalidArgument),
                "target_path",
            ),
            (
                "outside",
                publish("/etc/passwd", mount(), None),
                Some(Code::InvalidArgument),
                "not under /var/lib/kubelet/pods/",
            ),
            (
                "pods dir itself",
                publish(PODS, mount(), None),
                Some(Code::InvalidArgument),
                "target_path",
            ),
            (
                "sibling prefix",
                publish("/var/lib/kubelet/pods-evil/u/mount", mount(), None),
                Some(Code::InvalidArgument),
                "target_path",
            ),
            (
                "plugins dir",
                publish("/var/lib/kubelet/plugins/x/mount", mount(), None),
                Some(Code::InvalidArgument),
                "target_path",
            ),
            (
                "no capability",
                publish(TARGET, None, None),
                Some(Code::InvalidArgument),
                "volume_capability",
            ),
            (
                "block",
                publish(TARGET, block, None),
                Some(Code::InvalidArgument),
                "volume_capability.block",
            ),
            (
                "persistent",
                publish(TARGET, mount(), Some("false")),
                Some(Code::FailedPrecondition),
                "ephemeral",
            ),
        ];
        for (case, request, code, word) in cases {
            match (check_publish(Path::new(PODS), &request), code) {
                (Ok(target), None) => assert_eq!(target, Path::new(&request.target_path), "{case}"),
                (Err(refusal), Some(code)) => {
                    assert_eq!(refusal.code(), code, "{case}: {refusal}");
                    assert!(refusal.to_string().contains(word), "{case}: {refusal}");
                }
                (result, _) => panic!("{case}: unexpected {result:?}"),
            }
        }
    }

    #[test]
    fn unpublish_rules() {
        let request = |id: &str, target: &str| NodeUnpublishVolumeRequest {
            volume_id: id.into(),
            target_path: target.into(),
        };
        let cases = [
            ("ok", request("v", TARGET), None),
            ("empty volume_id", request("", TARGET), Some("volume_id")),
            ("empty target", request("v", ""), Some("target_path")),
            ("outside", request("v", "/mnt/x"), Some("not under")),
            (
                "not normalised",
                request("v", "/var/lib/kubelet/pods/./x"),
                Some("normalised"),
            ),
        ];
        for (case, request, word) in cases {
            match (check_unpublish(Path::new(PODS), &request), word) {
                (Ok(_), None) => {}
                (Err(refusal), Some(word)) => {
                    assert_eq!(refusal.code(), Code::InvalidArgument, "{case}");
                    assert!(refusal.to_string().contains(word), "{case}: {refusal}");
                }
                (result, _) => panic!("{case}: unexpected {result:?}"),
            }
        }
    }
}
