//! The mutation: what each mount method adds to a pod.
//!
//! It edits the pod's raw JSON in place and only ever inserts, so every field the
//! policy does not own survives, including fields newer than the k8s-openapi build.
//! Typed k8s-openapi values are used only for the objects it inserts. A conflict
//! aborts the whole mutation with a message saying what to fix; the caller then
//! accepts the pod unchanged.

use crate::settings::{MountMethod, NodeLabel, Settings};
use k8s_openapi::api::core::v1::{
    Capabilities, EmptyDirVolumeSource, HostPathVolumeSource, NodeSelectorRequirement,
    ResourceRequirements, SeccompProfile, SecurityContext, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The copy script of the init container; it takes its paths as arguments: `src dst [dir...]`.
pub const COPY_SCRIPT: &str = r#"set -e; src=$1; dst=$2; shift 2; if [ $# -eq 0 ]; then cp -R "$src"/. "$dst"/; else for d in "$@"; do mkdir -p "$dst/$d"; cp -R "$src/$d"/. "$dst/$d"/; done; fi"#;
/// `$0` of the copy script, shown by `ps` and in error messages.
pub const COPY_SCRIPT_NAME: &str = "agent-mount-copy";
/// Where the init container mounts the emptyDir it fills.
pub const COPY_TARGET: &str = "/agent-mount-target";
/// Non-root user of the init container; numeric, because the kubelet refuses
/// `runAsNonRoot` for images whose user is unset, root or a name.
pub const COPY_USER: i64 = 65532;

type Object = Map<String, Value>;

/// Adds what `settings.mount_method` needs for the `containers` (indices into
/// `spec.containers`). Returns whether anything changed, or the conflict that stopped it.
///
/// The pod must have passed [`crate::select::container_names`].
pub fn mutate(pod: &mut Value, containers: &[usize], settings: &Settings) -> Result<bool, String> {
    let spec = pod
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .ok_or("spec is not an object")?;
    let mut changed = false;
    match settings.mount_method {
        MountMethod::VirtualDevice => {
            for container in selected(spec, containers)? {
                changed |= request_resource(container, settings)?;
            }
        }
        MountMethod::HostPath => {
            let source = HostPathVolumeSource {
                path: settings.host_path().to_string(),
                type_: None,
            };
            let volume = volume(settings, "hostPath", &source)?;
            let is_ours =
                |v: &Value| v.pointer("/hostPath/path") == Some(&json!(settings.host_path()));
            changed |= add_volume(spec, volume, is_ours)?;
            if let Some(label) = &settings.required_node_label {
                changed |= require_node_label(spec, label)?;
            }
            for container in selected(spec, containers)? {
                changed |= add_agent_mounts(container, settings)?;
            }
        }
        MountMethod::InitContainer => {
            let init = settings.init_container();
            let source = EmptyDirVolumeSource {
                medium: None,
                size_limit: init.size_limit.clone().map(Quantity),
            };
            let volume = volume(settings, "emptyDir", &source)?;
            changed |= add_volume(spec, volume, |v| {
                v.get("emptyDir").is_some_and(Value::is_object)
            })?;
            changed |= add_init_container(spec, settings)?;
            for container in selected(spec, containers)? {
                changed |= add_agent_mounts(container, settings)?;
            }
        }
    }
    Ok(changed)
}

/// The selected entries of `spec.containers`, as objects.
fn selected<'a>(spec: &'a mut Object, containers: &[usize]) -> Result<Vec<&'a mut Object>, String> {
    let list = spec
        .get_mut("containers")
        .and_then(Value::as_array_mut)
        .ok_or("spec.containers is not an array")?;
    let mut out = Vec::with_capacity(containers.len());
    // One pass in pod order: selections are sorted, so this stays linear for large pods.
    let mut wanted = containers.iter().peekable();
    for (i, container) in list.iter_mut().enumerate() {
        if wanted.next_if_eq(&&i).is_some() {
            out.push(
                container
                    .as_object_mut()
                    .ok_or("a container is not an object")?,
            );
        }
    }
    Ok(out)
}

/// The container's name, for messages.
fn name_of(container: &Object) -> &str {
    container.get("name").and_then(Value::as_str).unwrap_or("?")
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

/// The value under `key` as `T` (via `as_mut`), inserted as `empty` when absent;
/// a value of another type is a conflict that names its path.
fn child_at<'a, T>(
    parent: &'a mut Object,
    key: &str,
    path: &dyn Fn() -> String,
    empty: fn() -> Value,
    as_mut: fn(&mut Value) -> Option<&mut T>,
) -> Result<&'a mut T, String> {
    let value = parent.entry(key).or_insert_with(empty);
    let (found, expected) = (kind_of(value), kind_of(&empty()));
    as_mut(value).ok_or_else(|| format!("{}.{key} is {found}, expected {expected}", path()))
}

/// The object under `key`, inserted empty when absent.
fn object_at<'a>(
    parent: &'a mut Object,
    key: &str,
    path: &dyn Fn() -> String,
) -> Result<&'a mut Object, String> {
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
) -> Result<&'a mut Vec<Value>, String> {
    child_at(
        parent,
        key,
        path,
        || Value::Array(Vec::new()),
        Value::as_array_mut,
    )
}

/// Serialises a k8s-openapi value we insert; these types always serialise.
fn to_json<T: Serialize>(value: &T) -> Result<Value, String> {
    serde_json::to_value(value)
        .map_err(|e| format!("internal error serialising an inserted object: {e}"))
}

/// virtual-device: `resourceName: "1"` in the container's limits and requests.
fn request_resource(container: &mut Object, settings: &Settings) -> Result<bool, String> {
    let resource = settings.resource_name();
    let name = name_of(container).to_string();
    let path = || format!("container {name:?}");
    let resources = object_at(container, "resources", &path)?;
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
                return Err(format!(
                    "container {name:?} already sets resources.{field}[{resource:?}] to {other}, and agent-mount needs \"1\": set it to \"1\" or remove it, or leave the container out with the {:?} annotation",
                    settings.containers_annotation
                ));
            }
        }
    }
    Ok(changed)
}

/// The volume `{name: <volumeName>, <kind>: <source>}`.
///
/// Built from the typed source rather than a typed `Volume`: `Volume`'s serialiser
/// covers every volume type (and, through ephemeral volumes, timestamps), which
/// would add a third to the `.wasm`.
fn volume<T: Serialize>(settings: &Settings, kind: &str, source: &T) -> Result<Object, String> {
    let mut volume = Map::new();
    volume.insert("name".into(), json!(settings.volume_name()));
    volume.insert(kind.into(), to_json(source)?);
    Ok(volume)
}

/// Adds `volume` unless a volume of that name exists; one with another source (`!is_ours`) is a conflict.
fn add_volume(
    spec: &mut Object,
    volume: Object,
    is_ours: impl Fn(&Value) -> bool,
) -> Result<bool, String> {
    let name = volume.get("name").cloned().unwrap_or_default();
    let volumes = array_at(spec, "volumes", &|| "spec".into())?;
    match volumes.iter().find(|v| v.get("name") == Some(&name)) {
        None => {
            volumes.push(Value::Object(volume));
            Ok(true)
        }
        Some(found) if is_ours(found) => Ok(false),
        Some(found) => {
            let without_name = |v: &Object| {
                let mut v = v.clone();
                v.remove("name");
                Value::Object(v)
            };
            let has = found
                .as_object()
                .map(without_name)
                .unwrap_or_else(|| found.clone());
            Err(format!(
                "the pod already has a volume {name} with another source ({has}); agent-mount needs {}: rename that volume, or choose a free name with the volumeName setting",
                without_name(&volume)
            ))
        }
    }
}

/// The read-only mounts of the agent volume: the whole directory, or one per agent directory.
fn agent_mounts(settings: &Settings) -> Vec<VolumeMount> {
    let mount = |mount_path: String, sub_path: Option<String>| VolumeMount {
        name: settings.volume_name().to_string(),
        mount_path,
        sub_path,
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let dirs = settings.agent_directories();
    if dirs.is_empty() {
        vec![mount(settings.mount_path().to_string(), None)]
    } else {
        dirs.iter()
            .map(|dir| {
                mount(
                    format!("{}/{dir}", settings.mount_path()),
                    Some(dir.clone()),
                )
            })
            .collect()
    }
}

/// host-path and init-container: adds each agent mount unless one exists at that path.
fn add_agent_mounts(container: &mut Object, settings: &Settings) -> Result<bool, String> {
    let name = name_of(container).to_string();
    let mounts = array_at(container, "volumeMounts", &|| format!("container {name:?}"))?;
    let mut changed = false;
    for wanted in agent_mounts(settings) {
        let existing = mounts
            .iter()
            .find(|m| m.get("mountPath").and_then(Value::as_str) == Some(&wanted.mount_path));
        match existing {
            None => {
                mounts.push(to_json(&wanted)?);
                changed = true;
            }
            Some(found)
                if found.get("name").and_then(Value::as_str) == Some(&wanted.name)
                    && found.get("subPath").and_then(Value::as_str)
                        == wanted.sub_path.as_deref() => {}
            Some(found) => {
                return Err(format!(
                    "container {name:?} already mounts {found} at {:?}, where agent-mount mounts volume {:?}: remove that mount, choose another mountPath, or leave the container out with the {:?} annotation",
                    wanted.mount_path, wanted.name, settings.containers_annotation
                ));
            }
        }
    }
    Ok(changed)
}

/// host-path: ANDs `key In [value]` into every required node selector term, or creates the one term.
///
/// Never appends a term to existing ones: terms are ORed, so that would loosen the affinity.
fn require_node_label(spec: &mut Object, label: &NodeLabel) -> Result<bool, String> {
    let requirement = to_json(&NodeSelectorRequirement {
        key: label.key.clone(),
        operator: "In".into(),
        values: Some(vec![label.value.clone()]),
    })?;
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
        terms.push(json!({ "matchExpressions": [requirement] }));
        return Ok(true);
    }
    let mut changed = false;
    for (i, term) in terms.iter_mut().enumerate() {
        let term = term
            .as_object_mut()
            .ok_or_else(|| format!("{terms_path}.nodeSelectorTerms[{i}] is not an object"))?;
        let expressions = array_at(term, "matchExpressions", &|| {
            format!("{terms_path}.nodeSelectorTerms[{i}]")
        })?;
        if !expressions.contains(&requirement) {
            expressions.push(requirement.clone());
            changed = true;
        }
    }
    Ok(changed)
}

/// The hardened default securityContext of the copy container; it passes PSA `restricted`.
fn default_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        run_as_non_root: Some(true),
        run_as_user: Some(COPY_USER),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

/// The default resources of the copy container: cpu 100m, memory 128Mi, as requests and limits.
fn default_resources() -> ResourceRequirements {
    let amounts = BTreeMap::from([
        ("cpu".to_string(), Quantity("100m".into())),
        ("memory".to_string(), Quantity("128Mi".into())),
    ]);
    ResourceRequirements {
        limits: Some(amounts.clone()),
        requests: Some(amounts),
        ..ResourceRequirements::default()
    }
}

/// Merges `overrides` into `base`: objects key by key, anything else replaced.
fn merge(base: &mut Value, overrides: &Value) {
    match (base, overrides) {
        (Value::Object(base), Value::Object(overrides)) => {
            for (key, value) in overrides {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, value) => *base = value.clone(),
    }
}

/// The init container's command: the copy script with its arguments.
pub fn copy_command(settings: &Settings) -> Vec<String> {
    let init = settings.init_container();
    let source = init
        .source_path
        .as_deref()
        .unwrap_or(crate::settings::DEFAULT_SOURCE_PATH);
    let mut command = vec![
        "sh".to_string(),
        "-c".to_string(),
        COPY_SCRIPT.to_string(),
        COPY_SCRIPT_NAME.to_string(),
        source.to_string(),
        COPY_TARGET.to_string(),
    ];
    command.extend(settings.agent_directories().iter().cloned());
    command
}

/// The init container that copies the agents from the image into the volume.
///
/// Assembled from typed parts rather than a typed `Container`, whose serialiser
/// covers probes, lifecycle hooks and every other container field.
pub fn copy_container(settings: &Settings) -> Result<Object, String> {
    let init = settings.init_container();
    // The settings' resources and securityContext were checked to be valid Kubernetes
    // objects when the settings were loaded; they are inserted as given.
    let resources = match &init.resources {
        Some(resources) => resources.clone(),
        None => to_json(&default_resources())?,
    };
    let mut security = to_json(&default_security_context())?;
    if let Some(overrides) = &init.security_context {
        merge(&mut security, overrides);
    }
    let target = VolumeMount {
        name: settings.volume_name().to_string(),
        mount_path: COPY_TARGET.to_string(),
        ..VolumeMount::default()
    };
    let mut container = Map::new();
    container.insert("name".into(), json!(settings.init_container_name()));
    container.insert("image".into(), json!(init.image));
    container.insert("command".into(), json!(copy_command(settings)));
    container.insert("resources".into(), resources);
    container.insert("securityContext".into(), security);
    container.insert("volumeMounts".into(), json!([to_json(&target)?]));
    Ok(container)
}

/// init-container: puts the copy container first in `initContainers`, unless one of that name exists.
fn add_init_container(spec: &mut Object, settings: &Settings) -> Result<bool, String> {
    let container = copy_container(settings)?;
    let (name, image) = (container["name"].clone(), container["image"].clone());
    let inits = array_at(spec, "initContainers", &|| "spec".into())?;
    match inits.iter().find(|c| c.get("name") == Some(&name)) {
        None => {
            // First, so the agents are in place before any other init container runs.
            inits.insert(0, Value::Object(container));
            Ok(true)
        }
        Some(found) if found.get("image") == Some(&image) => Ok(false),
        Some(found) => Err(format!(
            "the pod already has an init container {name} with image {}, and agent-mount's uses {image}: rename that init container, or set initContainer.name to a free name",
            found.get("image").unwrap_or(&Value::Null),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings;

    fn settings(value: Value) -> Settings {
        settings::parse(value).unwrap()
    }

    fn pod() -> Value {
        json!({"spec": {"containers": [{"name": "app", "image": "app:1"}, {"name": "sidecar"}]}})
    }

    #[test]
    fn virtual_device_sets_limits_and_requests() {
        let mut pod = pod();
        assert_eq!(mutate(&mut pod, &[0], &Settings::default()), Ok(true));
        let resources = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(
            resources["limits"]["instrumentation.odigos.io/generic"],
            "1"
        );
        assert_eq!(
            resources["requests"]["instrumentation.odigos.io/generic"],
            "1"
        );
        assert!(pod["spec"]["containers"][1].get("resources").is_none());
        assert!(pod["spec"].get("volumes").is_none());
        assert_eq!(mutate(&mut pod, &[0], &Settings::default()), Ok(false));
    }

    #[test]
    fn virtual_device_conflicting_amount() {
        let mut pod = json!({"spec": {"containers": [{"name": "app",
            "resources": {"limits": {"instrumentation.odigos.io/generic": "2"}}}]}});
        let err = mutate(&mut pod, &[0], &Settings::default()).unwrap_err();
        assert!(err.contains("container \"app\" already sets resources.limits[\"instrumentation.odigos.io/generic\"] to \"2\""), "{err}");
    }

    #[test]
    fn host_path_per_directory_mounts() {
        let s = settings(
            json!({"mountMethod": "k8s-host-path", "agentDirectories": ["java", "python"]}),
        );
        let mut pod = pod();
        assert_eq!(mutate(&mut pod, &[0], &s), Ok(true));
        assert_eq!(
            pod["spec"]["containers"][0]["volumeMounts"],
            json!([
                {"name": "odigos-agent", "mountPath": "/var/odigos/java", "subPath": "java", "readOnly": true},
                {"name": "odigos-agent", "mountPath": "/var/odigos/python", "subPath": "python", "readOnly": true},
            ])
        );
        assert_eq!(
            pod["spec"]["volumes"],
            json!([{"name": "odigos-agent", "hostPath": {"path": "/var/odigos"}}])
        );
    }

    #[test]
    fn node_label_is_anded_into_every_term() {
        let s = settings(
            json!({"mountMethod": "k8s-host-path", "requiredNodeLabel": {"key": "agents", "value": "yes"}}),
        );
        let mut pod = pod();
        pod["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
        ]}}});
        assert_eq!(mutate(&mut pod, &[0], &s), Ok(true));
        let terms = &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"];
        let wanted = json!({"key": "agents", "operator": "In", "values": ["yes"]});
        assert_eq!(terms.as_array().unwrap().len(), 2, "no OR term is added");
        assert_eq!(terms[0]["matchExpressions"][1], wanted);
        assert_eq!(terms[1]["matchExpressions"][0], wanted);
        assert_eq!(terms[1]["matchFields"][0]["key"], "metadata.name");
        assert_eq!(mutate(&mut pod, &[0], &s), Ok(false));
    }

    #[test]
    fn a_field_of_the_wrong_type_is_a_conflict_naming_its_path() {
        let mut pod =
            json!({"spec": {"containers": [{"name": "app", "resources": {"limits": []}}]}});
        let err = mutate(&mut pod, &[0], &Settings::default()).unwrap_err();
        assert_eq!(
            err,
            "container \"app\": resources.limits is an array, expected an object"
        );
        let s = settings(json!({"mountMethod": "k8s-host-path"}));
        let mut pod = json!({"spec": {"volumes": {}, "containers": [{"name": "app"}]}});
        assert_eq!(
            mutate(&mut pod, &[0], &s).unwrap_err(),
            "spec.volumes is an object, expected an array"
        );
    }

    #[test]
    fn security_overrides_merge_over_the_hardened_default() {
        let s = settings(
            json!({"mountMethod": "k8s-init-container", "initContainer": {
            "image": "agents:1", "securityContext": {"runAsUser": 1000, "capabilities": {"add": ["CHOWN"]}}}}),
        );
        let container = copy_container(&s).unwrap();
        let security = &container["securityContext"];
        assert_eq!(security["runAsUser"], 1000);
        assert_eq!(security["runAsNonRoot"], true);
        assert_eq!(
            security["capabilities"],
            json!({"add": ["CHOWN"], "drop": ["ALL"]})
        );
        assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    }
}
