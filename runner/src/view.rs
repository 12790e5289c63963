//! What each container of a mutated pod sees: the mounts resolved to their sources.

use serde_json::Value;
use std::path::Path;

/// One mount as the container sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeenMount {
    /// Path inside the container.
    pub container_path: String,
    /// Where the files come from: `host:<path>`, `emptyDir:<volume>/<subPath>`, or `<type>:<volume>`.
    pub source: String,
    /// Whether the mount is read-only.
    pub read_only: bool,
}

/// What one container sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerView {
    /// The container's name.
    pub name: String,
    /// `containers`, `initContainers` or `ephemeralContainers`.
    pub list: &'static str,
    /// Its mounts, sorted by container path.
    pub mounts: Vec<SeenMount>,
}

/// Joins a base path and an optional sub-path.
fn join(base: &str, sub_path: Option<&str>) -> String {
    match sub_path {
        Some(sub) if !sub.is_empty() => format!("{base}/{sub}"),
        _ => base.to_string(),
    }
}

/// Resolves a volumeMount against the pod's volumes.
fn resolve(mount: &Value, volumes: &[Value]) -> Option<SeenMount> {
    let name = mount.get("name")?.as_str()?;
    let sub_path = mount.get("subPath").and_then(Value::as_str);
    let volume = volumes
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(name));
    let source = match volume {
        Some(v) if v.get("hostPath").is_some() => {
            let path = v
                .pointer("/hostPath/path")
                .and_then(Value::as_str)
                .unwrap_or("?");
            format!("host:{}", join(path, sub_path))
        }
        Some(v) if v.get("emptyDir").is_some() => format!("emptyDir:{}", join(name, sub_path)),
        Some(v) if v.get("csi").is_some() => {
            let driver = v
                .pointer("/csi/driver")
                .and_then(Value::as_str)
                .unwrap_or("?");
            format!("csi:{driver}:{}", join("", sub_path))
        }
        Some(v) if v.get("image").is_some() => {
            let reference = v
                .pointer("/image/reference")
                .and_then(Value::as_str)
                .unwrap_or("?");
            format!("image:{reference}:{}", join("", sub_path))
        }
        Some(v) => {
            let kind = v
                .as_object()
                .and_then(|o| o.keys().find(|k| k.as_str() != "name").cloned())
                .unwrap_or_default();
            format!("{kind}:{}", join(name, sub_path))
        }
        None => format!("missing-volume:{name}"),
    };
    Some(SeenMount {
        container_path: mount.get("mountPath")?.as_str()?.to_string(),
        source,
        read_only: mount
            .get("readOnly")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// Resolves every container's volumeMounts, plus `extra(container)` for mounts the kubelet
/// adds outside the pod spec (the device plugin's `Allocate` answer).
pub fn container_views(
    pod: &Value,
    extra: &mut dyn FnMut(&Value) -> Vec<SeenMount>,
) -> Vec<ContainerView> {
    let empty = Vec::new();
    let volumes = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let mut views = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        let containers = pod
            .pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        for container in containers {
            let mounts = container
                .get("volumeMounts")
                .and_then(Value::as_array)
                .unwrap_or(&empty);
            let mut seen: Vec<SeenMount> =
                mounts.iter().filter_map(|m| resolve(m, volumes)).collect();
            seen.extend(extra(container));
            seen.sort();
            views.push(ContainerView {
                name: container
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string(),
                list,
                mounts: seen,
            });
        }
    }
    views
}

/// Whether a container requests `resource` in its limits (so the kubelet calls `Allocate` for it).
pub fn requests_resource(container: &Value, resource: &str) -> bool {
    container
        .pointer("/resources/limits")
        .and_then(|limits| limits.get(resource))
        .is_some()
}

/// Every file below `root`, as sorted paths relative to it: what a mount of `root` shows.
pub fn files_below(root: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(relative) = path.strip_prefix(root) {
                out.push(relative.display().to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}
