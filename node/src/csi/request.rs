//! The pure argument checks of `NodePublishVolume` and `NodeUnpublishVolume` (DESIGN §3b
//! "Rules"): no I/O, so every refusal and its gRPC code is table-tested.

use super::api::EPHEMERAL_KEY;
use super::api::csi::volume_capability::AccessType;
use super::api::csi::{NodePublishVolumeRequest, NodeUnpublishVolumeRequest};
use agent_mount_common::syntax;
use std::path::{Path, PathBuf};
use tonic::Code;

/// The kubelet's directory of inline CSI volumes inside a pod's directory.
pub const CSI_VOLUMES: &str = "volumes/kubernetes.io~csi";
/// The last segment of every target path: the kubelet's name for the mount point.
pub const MOUNT: &str = "mount";
/// The one target shape this plugin accepts, for messages.
const SHAPE: &str = "<pods>/<pod uid>/volumes/kubernetes.io~csi/<volume name>/mount";

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
    /// `target_path` is not the kubelet's target of an inline CSI volume.
    #[error(
        "target_path {value:?} is not of the shape {SHAPE} with <pods> = {pods} and <volume name> a DNS-1123 label: this plugin mounts only at the kubelet's inline CSI volume targets (check --kubelet-dir)"
    )]
    Shape {
        /// The path as sent.
        value: String,
        /// `<kubelet-dir>/pods`, in the spellings accepted.
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

/// A target path of the one accepted shape, split into what the kernel steps need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The path as sent, for messages.
    pub path: PathBuf,
    /// The volume's directory below `<kubelet-dir>/pods`: `<uid>/volumes/kubernetes.io~csi/<name>`.
    pub volume_dir: PathBuf,
}

/// Checks `volume_id` and `target_path` (shared by publish and unpublish): the target
/// must be exactly `<pods>/<uid>/volumes/kubernetes.io~csi/<dns-label>/mount`, `<pods>`
/// one of `pods_dirs` (`<kubelet-dir>/pods`, as given and resolved).
fn check_target(
    pods_dirs: &[PathBuf],
    volume_id: &str,
    target_path: &str,
) -> Result<Target, Refusal> {
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
    let shape = || Refusal::Shape {
        value: target_path.to_string(),
        pods: pods_dirs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" or "),
    };
    // `strip_prefix` compares whole components, so `<pods>-evil/…` matches no spelling.
    let rest = pods_dirs
        .iter()
        .find_map(|pods| Path::new(target_path).strip_prefix(pods).ok())
        .and_then(Path::to_str)
        .ok_or_else(shape)?;
    // Normalised above: no empty, `.` or `..` segment, so the uid is one plain segment.
    let segments: Vec<&str> = rest.split('/').collect();
    let [uid, volumes, csi, name, mount] = segments.as_slice() else {
        return Err(shape());
    };
    let volume_dir = format!("{uid}/{volumes}/{csi}/{name}");
    if format!("{volumes}/{csi}") != CSI_VOLUMES
        || *mount != MOUNT
        || syntax::dns_label(name).is_err()
    {
        return Err(shape());
    }
    Ok(Target {
        path: PathBuf::from(target_path),
        volume_dir: PathBuf::from(volume_dir),
    })
}

/// Checks a `NodePublishVolume` request; returns the target to mount at.
///
/// `readonly` is not checked: the mount is read-only whatever it says.
pub fn check_publish(
    pods_dirs: &[PathBuf],
    request: &NodePublishVolumeRequest,
) -> Result<Target, Refusal> {
    let target = check_target(pods_dirs, &request.volume_id, &request.target_path)?;
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

/// Checks a `NodeUnpublishVolume` request; returns the target to unmount.
pub fn check_unpublish(
    pods_dirs: &[PathBuf],
    request: &NodeUnpublishVolumeRequest,
) -> Result<Target, Refusal> {
    check_target(pods_dirs, &request.volume_id, &request.target_path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csi::api::csi::VolumeCapability;
    use crate::csi::api::csi::volume_capability::{BlockVolume, MountVolume};
    use std::collections::HashMap;

    const PODS: &str = "/var/lib/kubelet/pods";
    /// The same directory as the kubelet may spell it, through no symlink.
    const PODS_RESOLVED: &str = "/mnt/disk/kubelet/pods";
    const TARGET: &str = "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~csi/odigos-agent/mount";

    fn pods() -> Vec<PathBuf> {
        vec![PathBuf::from(PODS), PathBuf::from(PODS_RESOLVED)]
    }

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
                "the other spelling of the kubelet directory",
                publish(
                    "/mnt/disk/kubelet/pods/uid-1/volumes/kubernetes.io~csi/odigos-agent/mount",
                    mount(),
                    None,
                ),
                None,
                "",
            ),
            (
                "outside",
                publish("/etc/passwd", mount(), None),
                Some(Code::InvalidArgument),
                "<pods> = /var/lib/kubelet/pods or /mnt/disk/kubelet/pods",
            ),
            (
                "a pod's whole directory",
                publish("/var/lib/kubelet/pods/uid-1", mount(), None),
                Some(Code::InvalidArgument),
                "kubernetes.io~csi/<volume name>/mount",
            ),
            (
                "the pod's volumes directory",
                publish("/var/lib/kubelet/pods/uid-1/volumes", mount(), None),
                Some(Code::InvalidArgument),
                "target_path",
            ),
            (
                "another volume type's directory",
                publish(
                    "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~empty-dir/cache/mount",
                    mount(),
                    None,
                ),
                Some(Code::InvalidArgument),
                "target_path",
            ),
            (
                "a projected token's directory",
                publish(
                    "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~projected/kube-api-access-x",
                    mount(),
                    None,
                ),
                Some(Code::InvalidArgument),
                "target_path",
            ),
            (
                "another CSI volume's directory itself",
                publish(
                    "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~csi/odigos-agent",
                    mount(),
                    None,
                ),
                Some(Code::InvalidArgument),
                "target_path",
            ),
            (
                "one level deeper",
                publish(&format!("{TARGET}/sub"), mount(), None),
                Some(Code::InvalidArgument),
                "target_path",
            ),
            (
                "not named mount",
                publish(
                    "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~csi/odigos-agent/other",
                    mount(),
                    None,
                ),
                Some(Code::InvalidArgument),
                "target_path",
            ),
            (
                "no uid",
                publish(
                    "/var/lib/kubelet/pods/volumes/kubernetes.io~csi/odigos-agent/mount",
                    mount(),
                    None,
                ),
                Some(Code::InvalidArgument),
                "target_path",
            ),
            (
                "volume name not a DNS label",
                publish(
                    "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~csi/Odigos.Agent/mount",
                    mount(),
                    None,
                ),
                Some(Code::InvalidArgument),
                "DNS-1123 label",
            ),
            (
                "a CSI volume of another pod's plugin directory",
                publish(
                    "/var/lib/kubelet/plugins/kubernetes.io/csi/x/mount",
                    mount(),
                    None,
                ),
                Some(Code::InvalidArgument),
                "target_path",
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
            match (check_publish(&pods(), &request), code) {
                (Ok(target), None) => {
                    assert_eq!(target.path, Path::new(&request.target_path), "{case}");
                    assert_eq!(
                        target.volume_dir,
                        Path::new("uid-1/volumes/kubernetes.io~csi/odigos-agent"),
                        "{case}"
                    );
                }
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
            (
                "outside",
                request("v", "/mnt/x"),
                Some("is not of the shape"),
            ),
            (
                "a pod's whole directory",
                request("v", "/var/lib/kubelet/pods/uid-1"),
                Some("is not of the shape"),
            ),
            (
                "another volume type",
                request(
                    "v",
                    "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~projected/token/mount",
                ),
                Some("is not of the shape"),
            ),
            (
                "one level deeper",
                request("v", &format!("{TARGET}/x")),
                Some("is not of the shape"),
            ),
            (
                "not normalised",
                request("v", "/var/lib/kubelet/pods/./x"),
                Some("normalised"),
            ),
        ];
        for (case, request, word) in cases {
            match (check_unpublish(&pods(), &request), word) {
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
