//! The mutation: what each mount method adds to a pod.
//!
//! It edits the pod's raw JSON in place and only ever inserts, so every field the
//! policy does not own survives, including fields of Kubernetes versions newer than
//! the policy. What it inserts is built as JSON directly. A conflict aborts the whole
//! mutation with a message saying what to fix; the caller then accepts the pod unchanged.

use crate::activation::env::EnvConflict;
use crate::init_container::CopyContainer;
use crate::message::{echo, shorten};
use crate::raw::CONTAINER_LISTS;
use crate::settings::Settings;
use crate::settings::decode::Keyword;
use crate::settings::method::{AgentMounts, Method};
use crate::settings::raw::NodeLabel;
use crate::write::{OwnJson, Prepared};
use serde_json::{Map, Value, json};
use std::borrow::Cow;

/// The `volumeAttributes` of the CSI volume, so the node plugin knows what it serves.
const CSI_VOLUME_ATTRIBUTES: [(&str, &str); 1] = [("type", "instrumentation")];
/// `spec.os.name` of a Windows pod.
const WINDOWS: &str = "windows";

type Object = Map<String, Value>;

/// Why the policy left a pod unchanged; each message says how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// A field the policy adds to has another JSON type.
    #[error(
        "{path} is {found}, expected {expected}: fix that field in the pod's manifest (agent-mount adds to it)"
    )]
    WrongType {
        /// Where, e.g. `spec.volumes`.
        path: String,
        /// What it is.
        found: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// A container already requests the resource at another amount.
    #[error(
        "container {container:?} already sets resources.{field}[{resource:?}] to {found}, and agent-mount needs \"1\": set it to \"1\" or remove it, or leave the container out with the {annotation:?} annotation"
    )]
    ResourceAmount {
        /// The container.
        container: String,
        /// `limits` or `requests`.
        field: &'static str,
        /// The extended resource.
        resource: String,
        /// The amount found.
        found: String,
        /// The selection annotation.
        annotation: String,
    },
    /// A volume of our name with another source.
    #[error(
        "the pod already has a volume {name:?} with another source ({found}); agent-mount needs {wanted}: rename that volume, or choose a free name with the volumeName setting"
    )]
    ForeignVolume {
        /// The volume name.
        name: String,
        /// Its source.
        found: String,
        /// Ours.
        wanted: String,
    },
    /// The pod mounts our volume name without declaring it; creating it would hand that mount the agents.
    #[error(
        "{list} entry {container:?} mounts volume {volume:?} at {mount_path:?}, but the pod declares no such volume: agent-mount would create it, and that mount would become a view of the agents it does not control. Remove that mount, or choose another name with the volumeName setting"
    )]
    MountOfMissingVolume {
        /// The container list.
        list: &'static str,
        /// The container.
        container: String,
        /// The volume name.
        volume: String,
        /// Where it is mounted.
        mount_path: String,
    },
    /// Something other than our read-only mount sits at our mount path.
    #[error(
        "container {container:?} already has the mount {found}, where agent-mount mounts {wanted}: make that mount exactly ours, remove it, choose another mountPath, or leave the container out with the {annotation:?} annotation"
    )]
    MountAtOurPath {
        /// The container.
        container: String,
        /// The mount found there.
        found: String,
        /// Ours, e.g. `volume "odigos-agent" read-only at "/var/odigos"`.
        wanted: String,
        /// The selection annotation.
        annotation: String,
    },
    /// Our init container's name is taken by another container.
    #[error(
        "the pod already has a container named {name:?} in {list}, the name of agent-mount's copy init container: container names must be unique across containers, initContainers and ephemeralContainers; rename it, or set initContainer.name to a free name"
    )]
    ContainerName {
        /// The name.
        name: String,
        /// The list that has it.
        list: &'static str,
    },
    /// An init container of our name with another image.
    #[error(
        "the pod already has an init container {name:?} with image {found}, and agent-mount's uses {wanted:?}: rename that init container, or set initContainer.name to a free name"
    )]
    InitContainerImage {
        /// The name.
        name: String,
        /// Its image.
        found: String,
        /// Ours.
        wanted: String,
    },
    /// A Windows pod: the agents and the copy container are Linux builds, and the API
    /// server forbids the copy container's Linux security fields in a Windows pod.
    #[error(
        "the pod sets spec.os.name: windows, and agent-mount's agents are Linux builds (the API server would also refuse the copy container's Linux securityContext there): keep Windows pods out of the policy's namespaceSelector or objectSelector"
    )]
    WindowsPod,
    /// A host-process pod: every container must then be a host-process container, and
    /// the copy init container is not one.
    #[error(
        "{list} entry {container:?} is a Windows host-process container (securityContext.windowsOptions.hostProcess: true), and the API server requires every container of such a pod to be one, which agent-mount's copy init container is not: keep this pod out of the policy's selectors"
    )]
    HostProcess {
        /// The container list, or `spec.securityContext` for the pod's own setting.
        list: &'static str,
        /// The container, or the pod.
        container: String,
    },
    /// A block device of the container sits at our mount path.
    #[error(
        "container {container:?} has the volumeDevices entry {found} at {path:?}, where agent-mount mounts the agents (the API server refuses a mountPath that is also a devicePath): move that device, choose another mountPath, or leave the container out with the {annotation:?} annotation"
    )]
    DeviceAtOurPath {
        /// The container.
        container: String,
        /// The device entry found there.
        found: String,
        /// Our mount path.
        path: String,
        /// The selection annotation.
        annotation: String,
    },
    /// Activation could not merge a recipe into a container's `env`.
    #[error(transparent)]
    Activation(#[from] EnvConflict),
}

/// What a method adds to every pod, built once for its settings (the policy server sends
/// the same settings with every request): the volume, the test that an existing volume of
/// its name is it, and its read-only mounts.
pub struct Additions {
    /// The volume and its test; `None` for virtual-device, which adds no volume.
    volume: Option<(Prepared, IsOurs)>,
    /// The mounts of the volume on each instrumented container.
    mounts: Vec<AgentMount>,
    /// init-container's copy container for a pod without pod-level resources (most).
    copy: Option<Prepared>,
    /// `requiredNodeLabel`'s requirement, and the node selector term of it alone.
    node_label: Option<NodeRequirement>,
}

/// `requiredNodeLabel` as the pod gets it: the requirement ANDed into each node selector
/// term, or a term of it alone where the pod has none.
struct NodeRequirement {
    /// `{"key": …, "operator": "In", "values": [...]}`.
    requirement: Prepared,
    /// `{"matchExpressions": [requirement]}`.
    term: Prepared,
}

impl NodeRequirement {
    /// The requirement and the term for `label`.
    fn of(label: &NodeLabel) -> Self {
        let requirement = json!({"key": label.key, "operator": "In", "values": [label.value]});
        NodeRequirement {
            term: Prepared::new(json!({ "matchExpressions": [requirement.clone()] })),
            requirement: Prepared::new(requirement),
        }
    }
}

impl Additions {
    /// What `method` adds.
    pub fn of(method: &Method) -> Self {
        let node_label = method.node_label().map(NodeRequirement::of);
        let copy = match method {
            Method::InitContainer { copy, .. } => {
                Some(Prepared::new(Value::Object(copy.container(&[]))))
            }
            _ => None,
        };
        match volume(method) {
            Some((volume, is_ours, mounts)) => Additions {
                volume: Some((Prepared::new(Value::Object(volume)), is_ours)),
                mounts: agent_mounts(method, mounts),
                copy,
                node_label,
            },
            None => Additions {
                volume: None,
                mounts: Vec::new(),
                copy,
                node_label,
            },
        }
    }
}

/// Adds what the settings' method needs for the `containers` (sorted indices into
/// `spec.containers`). Returns whether anything changed, or the conflict that stopped it.
pub fn mutate(
    pod: &mut Value,
    containers: &[usize],
    settings: &Settings,
) -> Result<bool, Conflict> {
    let mut own_json = OwnJson::default();
    let additions = Additions::of(&settings.method);
    let changed = mutate_by(pod, containers, settings, &additions, &mut own_json);
    // What went in as JSON text, as the written pod has it.
    own_json.unfold(pod);
    changed
}

/// [`mutate`] with the [`Additions`] of `settings`' method built already; what it puts in
/// as JSON text is recorded in `own_json`, for the writer.
pub fn mutate_by(
    pod: &mut Value,
    containers: &[usize],
    settings: &Settings,
    additions: &Additions,
    own_json: &mut OwnJson,
) -> Result<bool, Conflict> {
    let spec = pod
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| Conflict::WrongType {
            path: "spec".into(),
            found: "missing or not an object",
            expected: "an object",
        })?;
    // Only spec.os.name tells a Windows pod at admission (validateOS).
    if spec
        .get("os")
        .and_then(|os| os.get("name"))
        .and_then(Value::as_str)
        == Some(WINDOWS)
    {
        return Err(Conflict::WindowsPod);
    }
    let annotation = &settings.containers_annotation;
    let method = &settings.method;
    let Some((volume, is_ours)) = &additions.volume else {
        return request_resources(spec, containers, method, annotation);
    };
    if let Method::InitContainer { .. } = method {
        refuse_host_process(spec)?;
    }
    let mut changed = add_volume(spec, volume, is_ours, own_json)?;
    if let Method::InitContainer { copy, .. } = method {
        changed |= add_init_container(spec, copy, additions.copy.as_ref(), own_json)?;
    }
    if let Some(label) = &additions.node_label {
        changed |= require_node_label(spec, label, own_json)?;
    }
    // One buffer for every container's look-up of our paths, not one each.
    let mut found = Vec::with_capacity(additions.mounts.len());
    for container in selected(spec, containers)? {
        changed |= add_agent_mounts(
            container,
            &additions.mounts,
            &mut found,
            annotation,
            own_json,
        )?;
    }
    Ok(changed)
}

/// A test of whether an existing volume of our name is the one we add.
type IsOurs = Box<dyn Fn(&Value) -> bool>;

/// The volume the method adds, how to recognise it in a pod that already has it, and
/// its mounts; `None` for virtual-device, which adds no volume.
fn volume(method: &Method) -> Option<(Object, IsOurs, &AgentMounts)> {
    let text_at = |pointer: &'static str, wanted: String| -> IsOurs {
        Box::new(move |v: &Value| v.pointer(pointer).and_then(Value::as_str) == Some(&wanted))
    };
    let (mounts, kind, source, is_ours) = match method {
        Method::VirtualDevice { .. } => return None,
        Method::HostPath {
            host_path, mounts, ..
        } => (
            mounts,
            "hostPath",
            json!({ "path": host_path }),
            text_at("/hostPath/path", host_path.clone()),
        ),
        Method::InitContainer { copy, mounts } => (
            mounts,
            "emptyDir",
            match &copy.size_limit {
                Some(limit) => json!({ "sizeLimit": limit }),
                None => json!({}),
            },
            Box::new(|v: &Value| v.get("emptyDir").is_some_and(Value::is_object)) as IsOurs,
        ),
        Method::CsiDriver { driver, mounts, .. } => (
            mounts,
            "csi",
            json!({
                "driver": driver,
                "readOnly": true,
                "volumeAttributes": Map::from_iter(
                    CSI_VOLUME_ATTRIBUTES.map(|(k, v)| (k.to_string(), json!(v)))
                ),
            }),
            text_at("/csi/driver", driver.clone()),
        ),
        Method::ImageVolume { image, mounts, .. } => (
            mounts,
            "image",
            json!({ "pullPolicy": image.pull_policy.as_str(), "reference": image.reference }),
            text_at("/image/reference", image.reference.clone()),
        ),
    };
    let mut volume = Map::new();
    volume.insert("name".into(), json!(mounts.volume_name));
    volume.insert(kind.into(), source);
    Some((volume, is_ours, mounts))
}

/// The selected entries of `spec.containers`, as objects.
fn selected<'a>(
    spec: &'a mut Object,
    containers: &[usize],
) -> Result<Vec<&'a mut Object>, Conflict> {
    let list = array_at(spec, "containers", &|| "spec".into())?;
    let mut out = Vec::with_capacity(containers.len());
    // One pass in pod order: selections are sorted, so this stays linear for large pods.
    let mut wanted = containers.iter().peekable();
    for (i, container) in list.iter_mut().enumerate() {
        if wanted.next_if_eq(&&i).is_some() {
            let found = kind_of(container);
            // `ok_or_else`: the path is formatted only for the error.
            out.push(
                container
                    .as_object_mut()
                    .ok_or_else(|| Conflict::WrongType {
                        path: format!("spec.containers[{i}]"),
                        found,
                        expected: "an object",
                    })?,
            );
        }
    }
    Ok(out)
}

/// The resources the pod names in its pod-level `spec.resources` (requests or limits).
///
/// The API server requires the pod's requests to cover the aggregate of its containers'
/// and no container limit above the pod's (validatePodResourceConsistency), so the copy
/// container takes none of its own for these: the pod's budget covers it.
fn pod_level_resources(spec: &Object) -> Vec<&str> {
    let Some(resources) = spec.get("resources") else {
        // The usual pod: no budget, and nothing allocated to say so.
        return Vec::new();
    };
    ["requests", "limits"]
        .iter()
        .filter_map(|field| resources.get(field)?.as_object())
        .flat_map(|list| list.keys().map(String::as_str))
        .collect()
}

/// Whether a securityContext sets `windowsOptions.hostProcess: true`.
fn is_host_process(security_context: Option<&Value>) -> bool {
    security_context
        .and_then(|s| s.get("windowsOptions"))
        .and_then(|w| w.get("hostProcess"))
        == Some(&Value::Bool(true))
}

/// init-container: a host-process pod is a conflict, since every container of such a
/// pod must be a host-process container (validateWindowsHostProcessPod) and ours is not.
fn refuse_host_process(spec: &Object) -> Result<(), Conflict> {
    if is_host_process(spec.get("securityContext")) {
        return Err(Conflict::HostProcess {
            list: "spec.securityContext",
            container: "the pod".into(),
        });
    }
    match all_containers(spec).find(|(_, c)| is_host_process(c.get("securityContext"))) {
        Some((list, container)) => Err(Conflict::HostProcess {
            list,
            container: name_of(container),
        }),
        None => Ok(()),
    }
}

/// The container's name, for messages.
fn name_of(container: &Object) -> String {
    container.get("name").map_or_else(
        || "?".into(),
        |n| n.as_str().map_or_else(|| echo(n), shorten),
    )
}

/// A short type name of a JSON value, for messages.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The value under `key` as `T` (via `as_mut`), inserted as `empty` when absent or `null`;
/// a value of another type is a conflict that names its path.
fn child_at<'a, T>(
    parent: &'a mut Object,
    key: &str,
    path: &dyn Fn() -> String,
    empty: fn() -> Value,
    as_mut: fn(&mut Value) -> Option<&mut T>,
) -> Result<&'a mut T, Conflict> {
    // `get` and `insert`, not the entry API: see `activation::env::apply`.
    let expected = kind_of(&empty());
    let found = match parent.get(key) {
        Some(value) if !value.is_null() => kind_of(value),
        // `null` is absent, as the API server's decoding reads it (DESIGN §2).
        _ => {
            parent.insert(key.into(), empty());
            expected
        }
    };
    parent
        .get_mut(key)
        .and_then(as_mut)
        .ok_or_else(|| Conflict::WrongType {
            path: format!("{}.{key}", path()),
            found,
            expected,
        })
}

/// The object under `key`, inserted empty when absent.
fn object_at<'a>(
    parent: &'a mut Object,
    key: &str,
    path: &dyn Fn() -> String,
) -> Result<&'a mut Object, Conflict> {
    child_at(
        parent,
        key,
        path,
        || Value::Object(Map::new()),
        Value::as_object_mut,
    )
}

/// The array under `key`, inserted empty when absent.
fn array_at<'a>(
    parent: &'a mut Object,
    key: &str,
    path: &dyn Fn() -> String,
) -> Result<&'a mut Vec<Value>, Conflict> {
    child_at(
        parent,
        key,
        path,
        || Value::Array(Vec::new()),
        Value::as_array_mut,
    )
}

/// virtual-device: the extended resource on every selected container.
fn request_resources(
    spec: &mut Object,
    containers: &[usize],
    method: &Method,
    annotation: &str,
) -> Result<bool, Conflict> {
    let Method::VirtualDevice { resource_name, .. } = method else {
        return Ok(false);
    };
    let mut changed = false;
    for container in selected(spec, containers)? {
        changed |= request_resource(container, resource_name, annotation)?;
    }
    Ok(changed)
}

/// virtual-device: `resource: "1"` in the container's limits and requests.
fn request_resource(
    container: &mut Object,
    resource: &str,
    annotation: &str,
) -> Result<bool, Conflict> {
    let name = name_of(container);
    let resources = object_at(container, "resources", &|| format!("container {name:?}"))?;
    let mut changed = false;
    for field in ["limits", "requests"] {
        let list = object_at(resources, field, &|| {
            format!("container {name:?}: resources")
        })?;
        match list.get(resource) {
            None => {
                list.insert(resource.to_string(), json!("1"));
                changed = true;
            }
            Some(Value::String(one)) if one == "1" => {}
            Some(other) => {
                return Err(Conflict::ResourceAmount {
                    container: name,
                    field,
                    resource: resource.to_string(),
                    found: echo(other),
                    annotation: annotation.to_string(),
                });
            }
        }
    }
    Ok(changed)
}

/// Every entry of the three container lists, with its list's name; entries that are not objects are skipped.
fn all_containers(spec: &Object) -> impl Iterator<Item = (&'static str, &Object)> {
    CONTAINER_LISTS.into_iter().flat_map(move |list| {
        spec.get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .map(move |c| (list, c))
    })
}

/// Adds `volume` unless a volume of that name exists; one with another source is a conflict.
///
/// Security: when the volume is created here, any mount of its name that the pod already
/// has would silently become a (possibly writable) view of the agents, so that is a conflict.
fn add_volume(
    spec: &mut Object,
    prepared: &Prepared,
    is_ours: &IsOurs,
    own_json: &mut OwnJson,
) -> Result<bool, Conflict> {
    let volume = prepared.value();
    let name = volume.get("name").cloned().unwrap_or_default();
    let volumes = array_at(spec, "volumes", &|| "spec".into())?;
    if let Some(found) = volumes.iter().find(|v| v.get("name") == Some(&name)) {
        return if is_ours(found) {
            Ok(false)
        } else {
            Err(Conflict::ForeignVolume {
                name: name.as_str().unwrap_or_default().to_string(),
                found: echo(&without_name(found)),
                wanted: without_name(volume).to_string(),
            })
        };
    }
    let mounts_of_name = all_containers(spec).find_map(|(list, container)| {
        container
            .get("volumeMounts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|m| m.get("name") == Some(&name))
            .map(|m| (list, name_of(container), m))
    });
    if let Some((list, container, mount)) = mounts_of_name {
        return Err(Conflict::MountOfMissingVolume {
            list,
            container,
            volume: name.as_str().unwrap_or_default().to_string(),
            mount_path: mount
                .get("mountPath")
                .map_or_else(String::new, |p| shorten(p.as_str().unwrap_or_default())),
        });
    }
    array_at(spec, "volumes", &|| "spec".into())?.push(own_json.copy_of(prepared));
    Ok(true)
}

/// A volume without its name, for messages.
fn without_name(volume: &Value) -> Value {
    match volume {
        Value::Object(v) => {
            let mut v = v.clone();
            v.remove("name");
            Value::Object(v)
        }
        other => other.clone(),
    }
}

/// One read-only mount of the agent volume that the policy adds, built once per settings.
struct AgentMount {
    /// The volume's name.
    name: String,
    /// Where the container sees it.
    mount_path: String,
    /// `mount_path` normalised, as existing mounts are compared with it.
    normal_path: String,
    /// The directory of the volume it shows, if not the whole volume.
    sub_path: Option<String>,
    /// The `volumeMounts` entry, copied into each container that lacks it.
    json: Prepared,
}

impl AgentMount {
    /// The mount of volume `name` at `mount_path`, showing `sub_path` if any.
    fn new(name: &str, mount_path: String, sub_path: Option<String>) -> Self {
        let mut json = Map::new();
        json.insert("mountPath".into(), Value::String(mount_path.clone()));
        json.insert("name".into(), Value::String(name.to_string()));
        json.insert("readOnly".into(), Value::Bool(true));
        if let Some(sub_path) = &sub_path {
            json.insert("subPath".into(), Value::String(sub_path.clone()));
        }
        AgentMount {
            name: name.to_string(),
            normal_path: normalise_path(&mount_path).into_owned(),
            mount_path,
            sub_path,
            json: Prepared::new(Value::Object(json)),
        }
    }
}

/// The read-only mounts of the agent volume: the whole directory, or one per agent directory.
fn agent_mounts(method: &Method, mounts: &AgentMounts) -> Vec<AgentMount> {
    let sub_path = |dir: Option<&String>| match method {
        Method::ImageVolume { image, .. } => image.sub_path(dir.map(String::as_str)),
        _ => dir.cloned(),
    };
    let mount = |mount_path: String, dir: Option<&String>| {
        AgentMount::new(&mounts.volume_name, mount_path, sub_path(dir))
    };
    if mounts.agent_directories.is_empty() {
        vec![mount(mounts.mount_path.clone(), None)]
    } else {
        mounts
            .agent_directories
            .iter()
            .map(|dir| mount(format!("{}/{dir}", mounts.mount_path), Some(dir)))
            .collect()
    }
}

/// A mount path as the container resolves it, for comparison: `//`, `.` segments and a
/// trailing `/` removed, and `..` resolved lexically, so `/var/x/../odigos` is
/// `/var/odigos` (DESIGN §2). `..` at the root stays there; a relative path keeps its
/// leading `..`. A path already in that form (the usual case) is returned as it is.
fn normalise_path(path: &str) -> Cow<'_, str> {
    // Already normal: no empty segment (`//`, a trailing `/`), none starting with `.`
    // (which covers `.` and `..`; `/.hidden` merely takes the long way).
    let normal = !path.is_empty()
        && !path.ends_with('/')
        && !path.starts_with('.')
        && !path.contains("//")
        && !path.contains("/.");
    if normal {
        return Cow::Borrowed(path);
    }
    let absolute = path.starts_with('/');
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." if segments.last().is_some_and(|last| *last != "..") => {
                segments.pop();
            }
            ".." if absolute => {}
            segment => segments.push(segment),
        }
    }
    let joined = segments.join("/");
    Cow::Owned(if absolute {
        format!("/{joined}")
    } else {
        joined
    })
}

/// Adds each agent mount unless exactly that mount exists; anything else at its path is a
/// conflict. `found` is scratch space, kept between containers.
fn add_agent_mounts(
    container: &mut Object,
    wanted: &[AgentMount],
    found: &mut Vec<Option<usize>>,
    annotation: &str,
    own_json: &mut OwnJson,
) -> Result<bool, Conflict> {
    let name = name_of(container);
    refuse_devices_at(container, wanted, &name, annotation)?;
    let mounts = array_at(container, "volumeMounts", &|| format!("container {name:?}"))?;
    // The last existing mount at each of our paths (the one that wins), found in one pass:
    // our mounts are few (at most agentDirectories' limit), so no map is built per container.
    found.clear();
    found.resize(wanted.len(), None);
    for (i, existing) in mounts.iter().enumerate() {
        let Some(path) = existing.get("mountPath").and_then(Value::as_str) else {
            continue;
        };
        let path = normalise_path(path);
        for (slot, mount) in found.iter_mut().zip(wanted) {
            if mount.normal_path == *path {
                *slot = Some(i);
            }
        }
    }
    // Every mount found at our paths must be exactly ours before anything is added.
    for (mount, at) in wanted.iter().zip(found.iter()) {
        match at.and_then(|i| mounts.get(i)) {
            None => {}
            Some(found) if is_exactly(found, mount) => {}
            Some(found) => {
                let sub_path = mount
                    .sub_path
                    .as_ref()
                    .map_or_else(String::new, |s| format!(" with subPath {s:?}"));
                return Err(Conflict::MountAtOurPath {
                    container: name,
                    found: echo(found),
                    wanted: format!(
                        "volume {:?} read-only at {:?}{sub_path}",
                        mount.name, mount.mount_path
                    ),
                    annotation: annotation.to_string(),
                });
            }
        }
    }
    let mut changed = false;
    for (mount, at) in wanted.iter().zip(found.iter()) {
        if at.is_none() {
            mounts.push(own_json.copy_of(&mount.json));
            changed = true;
        }
    }
    Ok(changed)
}

/// A `volumeDevices` entry at one of our mount paths is a conflict: validateVolumeMounts
/// refuses a mountPath that is also a devicePath of the same container.
fn refuse_devices_at(
    container: &Object,
    wanted: &[AgentMount],
    name: &str,
    annotation: &str,
) -> Result<(), Conflict> {
    let devices = container.get("volumeDevices").and_then(Value::as_array);
    let clash = devices.into_iter().flatten().find_map(|device| {
        let path = device.get("devicePath").and_then(Value::as_str)?;
        let path_normal = normalise_path(path);
        wanted
            .iter()
            .any(|m| m.normal_path == *path_normal)
            .then_some((device, path))
    });
    match clash {
        Some((device, path)) => Err(Conflict::DeviceAtOurPath {
            container: name.to_string(),
            found: echo(device),
            path: shorten(path),
            annotation: annotation.to_string(),
        }),
        None => Ok(()),
    }
}

/// Whether an existing mount is exactly ours: our volume, read-only, our subPath (an empty
/// one is none), and no subPathExpr, which would mount a sub-directory, not the agents.
fn is_exactly(found: &Value, wanted: &AgentMount) -> bool {
    // An empty string is the API server's "unset"; any other value is set.
    let set = |key: &str| found.get(key).filter(|v| !v.is_null() && *v != "");
    found.get("name").and_then(Value::as_str) == Some(wanted.name.as_str())
        && found.get("readOnly") == Some(&Value::Bool(true))
        && set("subPath").map(Value::as_str) == wanted.sub_path.as_deref().map(Some)
        && set("subPathExpr").is_none()
}

/// ANDs `key In [value]` into every required node selector term that selects something,
/// or creates the one term when there is none.
///
/// Never appends a term to existing ones: terms are ORed, so that would loosen the
/// affinity. Empty terms match no node, and adding to one would make it match, so
/// they are left alone.
fn require_node_label(
    spec: &mut Object,
    label: &NodeRequirement,
    own_json: &mut OwnJson,
) -> Result<bool, Conflict> {
    let requirement = label.requirement.value();
    let affinity = object_at(spec, "affinity", &|| "spec".into())?;
    let node_affinity = object_at(affinity, "nodeAffinity", &|| "spec.affinity".into())?;
    let required = object_at(
        node_affinity,
        "requiredDuringSchedulingIgnoredDuringExecution",
        &|| "spec.affinity.nodeAffinity".into(),
    )?;
    let terms_path = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution";
    let terms = array_at(required, "nodeSelectorTerms", &|| terms_path.into())?;
    if terms.is_empty() {
        terms.push(own_json.copy_of(&label.term));
        return Ok(true);
    }
    let mut changed = false;
    for (i, term) in terms.iter_mut().enumerate() {
        // A `null` term decodes as an empty one, which matches no node: left alone too.
        if term.is_null() {
            continue;
        }
        let path = || format!("{terms_path}.nodeSelectorTerms[{i}]");
        let found = kind_of(term);
        let term = term.as_object_mut().ok_or_else(|| Conflict::WrongType {
            path: path(),
            found,
            expected: "an object",
        })?;
        let selects = ["matchExpressions", "matchFields"].iter().any(|k| {
            term.get(*k)
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        });
        if !selects {
            continue;
        }
        let expressions = array_at(term, "matchExpressions", &path)?;
        if !expressions.contains(requirement) {
            expressions.push(own_json.copy_of(&label.requirement));
            changed = true;
        }
    }
    Ok(changed)
}

/// init-container: puts the copy container first in `initContainers`, unless it is there.
///
/// Its name must be free in every container list: names are unique across all three.
/// The container is copied from the settings only when it is inserted: `prepared` (it
/// without pod-level resources) unless the pod has them.
fn add_init_container(
    spec: &mut Object,
    copy: &CopyContainer,
    prepared: Option<&Prepared>,
    own_json: &mut OwnJson,
) -> Result<bool, Conflict> {
    let clash = all_containers(spec)
        .find(|(_, c)| c.get("name").and_then(Value::as_str) == Some(copy.name.as_str()));
    match clash {
        None => {
            let budgeted = pod_level_resources(spec);
            let container = match prepared {
                Some(prepared) if budgeted.is_empty() => own_json.copy_of(prepared),
                _ => Value::Object(copy.container(&budgeted)),
            };
            // Should this fail, the pod is not written: the kept copy is never looked for.
            let inits = array_at(spec, "initContainers", &|| "spec".into())?;
            // First, so the agents are in place before any other init container runs.
            inits.insert(0, container);
            Ok(true)
        }
        Some(("initContainers", found))
            if found.get("image").and_then(Value::as_str) == Some(copy.image.as_str()) =>
        {
            Ok(false)
        }
        Some(("initContainers", found)) => Err(Conflict::InitContainerImage {
            name: copy.name.clone(),
            found: echo(found.get("image").unwrap_or(&Value::Null)),
            wanted: copy.image.clone(),
        }),
        Some((list, _)) => Err(Conflict::ContainerName {
            name: copy.name.clone(),
            list,
        }),
    }
}

#[cfg(test)]
mod tests;
