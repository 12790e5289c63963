//! The API server's pod validation rules that the policy's additions could break,
//! each named after the Kubernetes validation function it mirrors
//! (k8s.io/kubernetes/pkg/apis/core/validation/validation.go, release 1.36, unless another
//! file is named), and the one place rule the API server leaves to the container: two
//! mounts resolving to one path. What the policy adds: volumes, volumeMounts, the
//! extended resource, the copy init container (name, image, command, resources,
//! securityContext, its mount), a node affinity requirement and env entries.

use agent_mount_common::quantity;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

const LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// Every rule violation of a pod, empty when the API server would accept it on these rules.
pub fn violations(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let volumes = validate_volumes(pod, &mut out);
    validate_container_names(pod, &mut out);
    for (list, container) in containers(pod) {
        let name = container["name"].as_str().unwrap_or("?");
        validate_volume_mounts(list, name, container, &volumes, &mut out);
        validate_volume_devices(list, name, container, &mut out);
        validate_resource_requirements(list, name, container, &mut out);
        validate_env(list, name, container, &mut out);
    }
    validate_init_containers(pod, &mut out);
    validate_os(pod, &mut out);
    validate_windows_host_process_pod(pod, &mut out);
    validate_host_users(pod, &mut out);
    validate_pod_resource_consistency(pod, &mut out);
    validate_node_affinity(pod, &mut out);
    out
}

/// validateEnv: each entry has a name that passes IsEnvVarName (apimachinery
/// validation.go: `[-._a-zA-Z][-._a-zA-Z0-9]*`, not `.`, `..` or starting with `..`), and a
/// value or a valueFrom, not both. Duplicate names pass: the API server only warns.
fn validate_env(list: &str, name: &str, container: &Value, out: &mut Vec<String>) {
    for var in container["env"].as_array().into_iter().flatten() {
        let var_name = var["name"].as_str().unwrap_or_default();
        if var_name.is_empty() {
            out.push(format!("{list} {name:?}: env entry without a name"));
        } else if !is_env_var_name(var_name) {
            out.push(format!(
                "{list} {name:?}: env name {var_name:?} is not a valid name"
            ));
        }
        let value = var["value"].as_str().is_some_and(|v| !v.is_empty());
        if value && !var["valueFrom"].is_null() {
            out.push(format!(
                "{list} {name:?}: env {var} has value and valueFrom"
            ));
        }
    }
}

fn containers(pod: &Value) -> impl Iterator<Item = (&'static str, &Value)> {
    LISTS.into_iter().flat_map(move |list| {
        pod["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .map(move |c| (list, c))
    })
}

/// validateVolumes: volume names are unique; an image volume (validateImageVolumeSource)
/// has a reference and a known pullPolicy.
fn validate_volumes<'a>(pod: &'a Value, out: &mut Vec<String>) -> HashSet<&'a str> {
    let mut names = HashSet::new();
    for volume in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let name = volume["name"].as_str().unwrap_or_default();
        if !names.insert(name) {
            out.push(format!("spec.volumes: duplicate name {name:?}"));
        }
        let image = &volume["image"];
        if image.is_object() {
            if image["reference"].as_str().is_none_or(str::is_empty) {
                out.push(format!(
                    "spec.volumes {name:?}: image.reference is required"
                ));
            }
            if !matches!(
                image["pullPolicy"].as_str(),
                None | Some("Always" | "Never" | "IfNotPresent")
            ) {
                out.push(format!("spec.volumes {name:?}: unknown image.pullPolicy"));
            }
        }
    }
    names
}

/// validateContainers / validateInitContainers / validateEphemeralContainers:
/// names are unique across all three lists.
fn validate_container_names(pod: &Value, out: &mut Vec<String>) {
    let mut names = HashSet::new();
    for (list, container) in containers(pod) {
        let name = container["name"].as_str().unwrap_or_default();
        if !names.insert(name) {
            out.push(format!("spec.{list}: duplicate container name {name:?}"));
        }
    }
}

/// validateVolumeMounts: each mount names a volume, has a non-empty mountPath unique as a
/// string, a subPath and a subPathExpr that pass validateLocalDescendingPath, and not both.
fn validate_volume_mounts(
    list: &str,
    name: &str,
    container: &Value,
    volumes: &HashSet<&str>,
    out: &mut Vec<String>,
) {
    let mut paths = HashSet::new();
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let volume = mount["name"].as_str().unwrap_or_default();
        if !volumes.contains(volume) {
            out.push(format!(
                "{list} {name:?}: mount of missing volume {volume:?}"
            ));
        }
        let path = mount["mountPath"].as_str().unwrap_or_default();
        if path.is_empty() {
            out.push(format!("{list} {name:?}: empty mountPath"));
        }
        if !paths.insert(path) {
            out.push(format!("{list} {name:?}: mountPath {path:?} is not unique"));
        }
        let sub_path = mount["subPath"].as_str().unwrap_or_default();
        let sub_path_expr = mount["subPathExpr"].as_str().unwrap_or_default();
        if !sub_path.is_empty() {
            validate_local_descending_path(sub_path)
                .unwrap_or_else(|e| out.push(format!("{list} {name:?}: subPath {e}")));
        }
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                out.push(format!(
                    "{list} {name:?}: subPathExpr and subPath are mutually exclusive"
                ));
            }
            validate_local_descending_path(sub_path_expr)
                .unwrap_or_else(|e| out.push(format!("{list} {name:?}: subPathExpr {e}")));
        }
    }
}

/// Mounts of one container that land on one place once `..` and `.` are resolved.
///
/// Not an API server rule: validateVolumeMounts compares the `mountPath` strings, so
/// `/var/x/../odigos` beside `/var/odigos` passes it, and the container sees one of the two.
pub fn mounts_at_one_place(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (list, container) in containers(pod) {
        let name = container["name"].as_str().unwrap_or("?");
        let mut places: HashMap<String, &str> = HashMap::new();
        for mount in container["volumeMounts"].as_array().into_iter().flatten() {
            let path = mount["mountPath"].as_str().unwrap_or_default();
            if let Some(first) = places.insert(resolve(path), path) {
                out.push(format!(
                    "{list} {name:?}: mountPath {path:?} is the place of {first:?}"
                ));
            }
        }
    }
    out
}

/// An absolute path with `//`, `.` and a trailing `/` removed and `..` resolved lexically,
/// as the container's file system resolves it (`..` at the root stays at the root).
pub fn resolve(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            segment => segments.push(segment),
        }
    }
    format!("/{}", segments.join("/"))
}

/// validateLocalDescendingPath: relative, without `..` segments.
pub fn validate_local_descending_path(path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        return Err(format!("{path:?} must be relative"));
    }
    if path.split('/').any(|segment| segment == "..") {
        return Err(format!("{path:?} must not contain '..'"));
    }
    Ok(())
}

/// ValidateResourceRequirements: valid, non-negative quantities, requests ≤ limits.
fn validate_resource_requirements(
    list: &str,
    name: &str,
    container: &Value,
    out: &mut Vec<String>,
) {
    let mut amounts: HashMap<(&str, &str), i128> = HashMap::new();
    for field in ["limits", "requests"] {
        let entries = container["resources"][field]
            .as_object()
            .into_iter()
            .flatten();
        for (resource, amount) in entries {
            let text = amount.as_str().unwrap_or_default();
            match quantity::parse(text) {
                Ok(nanos) if nanos >= 0 => {
                    amounts.insert((field, resource.as_str()), nanos);
                }
                _ => out.push(format!(
                    "{list} {name:?}: resources.{field}.{resource} {amount} is not a valid quantity"
                )),
            }
        }
    }
    for ((field, resource), request) in &amounts {
        if *field != "requests" {
            continue;
        }
        if amounts
            .get(&("limits", resource))
            .is_some_and(|limit| request > limit)
        {
            out.push(format!(
                "{list} {name:?}: requests.{resource} must be less than or equal to the limit"
            ));
        }
    }
}

/// IsEnvVarName (k8s.io/apimachinery/pkg/util/validation).
pub fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '-' | '.' | '_'));
    first_ok
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        && name != "."
        && !name.starts_with("..")
}

/// validateVolumeDevices (with validateVolumeMounts' side of it): a devicePath is unique
/// in the container and is not also a mountPath, and a volume is not both mounted and
/// used as a device by one container.
fn validate_volume_devices(list: &str, name: &str, container: &Value, out: &mut Vec<String>) {
    let mounts: Vec<&Value> = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let mut paths = HashSet::new();
    for device in container["volumeDevices"].as_array().into_iter().flatten() {
        let path = device["devicePath"].as_str().unwrap_or_default();
        if !paths.insert(path) {
            out.push(format!(
                "{list} {name:?}: devicePath {path:?} is not unique"
            ));
        }
        if mounts.iter().any(|m| m["mountPath"] == path) {
            out.push(format!(
                "{list} {name:?}: devicePath {path:?} must not already exist in volumeMounts"
            ));
        }
        if mounts.iter().any(|m| m["name"] == device["name"]) {
            out.push(format!(
                "{list} {name:?}: volume {} is both mounted and a device",
                device["name"]
            ));
        }
    }
}

/// Whether an init container is a restartable sidecar (`restartPolicy: Always`).
fn is_restartable(container: &Value) -> bool {
    container["restartPolicy"] == "Always"
}

/// validateInitContainers: `restartPolicy` is absent or `Always`; an init container that
/// is not restartable may have no lifecycle hooks and no probes.
fn validate_init_containers(pod: &Value, out: &mut Vec<String>) {
    for init in pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = init["name"].as_str().unwrap_or("?");
        match init.get("restartPolicy") {
            None | Some(Value::Null) => {}
            Some(policy) if policy == "Always" => continue,
            Some(policy) => out.push(format!(
                "initContainers {name:?}: restartPolicy {policy} must be Always or absent"
            )),
        }
        for field in [
            "lifecycle",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
        ] {
            if !init[field].is_null() {
                out.push(format!(
                    "initContainers {name:?}: {field} may not be set for init containers without restartPolicy=Always"
                ));
            }
        }
    }
}

/// The pod's `spec.securityContext` and every container's `securityContext`, with where.
fn security_contexts(pod: &Value) -> impl Iterator<Item = (String, &Value)> {
    std::iter::once((
        "spec.securityContext".to_string(),
        &pod["spec"]["securityContext"],
    ))
    .chain(containers(pod).map(|(list, c)| {
        (
            format!(
                "{list} {:?}: securityContext",
                c["name"].as_str().unwrap_or("?")
            ),
            &c["securityContext"],
        )
    }))
}

/// validateOS (validateLinux, validateWindows): `spec.os.name` is linux or windows; a
/// Linux pod sets no windowsOptions; a Windows pod sets none of the Linux-only fields
/// (in the pod's securityContext or any container's).
fn validate_os(pod: &Value, out: &mut Vec<String>) {
    let os = &pod["spec"]["os"]["name"];
    let forbidden: &[&str] = match os.as_str() {
        None => return,
        Some("linux") => &["windowsOptions"],
        Some("windows") => &[
            "seLinuxOptions",
            "seccompProfile",
            "appArmorProfile",
            "capabilities",
            "readOnlyRootFilesystem",
            "privileged",
            "allowPrivilegeEscalation",
            "procMount",
            "runAsUser",
            "runAsGroup",
            "fsGroup",
            "fsGroupChangePolicy",
            "sysctls",
            "supplementalGroups",
            "supplementalGroupsPolicy",
        ],
        Some(other) => {
            out.push(format!("spec.os.name {other:?} must be linux or windows"));
            return;
        }
    };
    for (place, context) in security_contexts(pod) {
        for field in forbidden {
            if !context[*field].is_null() {
                out.push(format!("{place}.{field} cannot be set for a {os} pod"));
            }
        }
    }
}

/// validateWindowsHostProcessPod: if any container is a host-process one (its own
/// setting, or inherited from the pod's), all are, with the same value where both are
/// set, and the pod uses the host network.
fn validate_windows_host_process_pod(pod: &Value, out: &mut Vec<String>) {
    let host_process = |context: &Value| context["windowsOptions"]["hostProcess"].as_bool();
    let pod_level = host_process(&pod["spec"]["securityContext"]);
    let (mut total, mut host) = (0, 0);
    for (list, container) in containers(pod) {
        total += 1;
        let own = host_process(&container["securityContext"]);
        if let (Some(p), Some(c)) = (pod_level, own)
            && p != c
        {
            out.push(format!(
                "{list} {}: hostProcess {c} differs from the pod's {p}",
                container["name"]
            ));
        }
        if own.or(pod_level) == Some(true) {
            host += 1;
        }
    }
    if host > 0 && host != total {
        out.push("if the pod contains any hostProcess containers then all containers must be HostProcess containers".into());
    }
    if host > 0 && pod["spec"]["hostNetwork"] != true {
        out.push(
            "hostNetwork must be set to true when the pod contains HostProcess containers".into(),
        );
    }
}

/// validateHostUsers: with `hostUsers: false` (a user namespace), no host network, PID or
/// IPC namespace. (The restriction of volume types under user namespaces was dropped
/// before 1.33; procMount Unmasked, allowed only there, is refused in our settings.)
fn validate_host_users(pod: &Value, out: &mut Vec<String>) {
    if pod["spec"]["hostUsers"] != false {
        return;
    }
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod["spec"][field] == true {
            out.push(format!(
                "spec.{field} is forbidden when spec.hostUsers is false"
            ));
        }
    }
}

/// One quantity of a resource list, in nano-units; absent or invalid is `None`.
fn amount(list: &Value, resource: &str) -> Option<i128> {
    quantity::parse(list[resource].as_str()?).ok()
}

/// A container's request of `resource`, which defaults to its limit (SetDefaults_Pod).
fn request_of(container: &Value, resource: &str) -> i128 {
    let resources = &container["resources"];
    amount(&resources["requests"], resource)
        .or_else(|| amount(&resources["limits"], resource))
        .unwrap_or(0)
}

/// The aggregate container request of `resource`, by the sidecar formula of
/// AggregateContainerRequests (k8s.io/component-helpers/resource/helpers.go): the larger of
/// the regular containers plus the restartable init containers, and each other init
/// container's request plus the restartable init containers before it.
pub fn aggregate_request(pod: &Value, resource: &str) -> i128 {
    let regular: i128 = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| request_of(c, resource))
        .sum();
    let (mut sidecars, mut peak) = (0, 0);
    for init in pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if is_restartable(init) {
            sidecars += request_of(init, resource);
        } else {
            peak = peak.max(request_of(init, resource) + sidecars);
        }
    }
    (regular + sidecars).max(peak)
}

/// validatePodResourceConsistency (with validatePodResources): for each resource the pod
/// names in `spec.resources`, the pod's request (defaulting to its limit) is at least the
/// aggregate container request, and no container's limit is above the pod's limit.
fn validate_pod_resource_consistency(pod: &Value, out: &mut Vec<String>) {
    let resources = &pod["spec"]["resources"];
    let named: HashSet<&String> = ["requests", "limits"]
        .iter()
        .filter_map(|field| resources[field].as_object())
        .flat_map(|list| list.keys())
        .collect();
    for resource in named {
        let pod_request = amount(&resources["requests"], resource)
            .or_else(|| amount(&resources["limits"], resource));
        let aggregate = aggregate_request(pod, resource);
        if pod_request.is_some_and(|r| r < aggregate) {
            out.push(format!(
                "spec.resources.requests[{resource}] must be greater than or equal to aggregate container requests ({aggregate} nano-units)"
            ));
        }
        let Some(pod_limit) = amount(&resources["limits"], resource) else {
            continue;
        };
        for (list, container) in containers(pod) {
            if amount(&container["resources"]["limits"], resource).is_some_and(|l| l > pod_limit) {
                out.push(format!(
                    "{list} {}: resources.limits[{resource}] must be less than or equal to the pod's limit",
                    container["name"]
                ));
            }
        }
    }
}

/// ValidateNodeSelectorRequirement, for the required node affinity terms: `In` and
/// `NotIn` need values, `Exists` and `DoesNotExist` take none, `Gt` and `Lt` one integer.
fn validate_node_affinity(pod: &Value, out: &mut Vec<String>) {
    let terms = &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    let requirements = terms
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["matchExpressions"].as_array().into_iter().flatten());
    for requirement in requirements {
        let values = requirement["values"].as_array().map_or(0, Vec::len);
        let ok = match requirement["operator"].as_str().unwrap_or_default() {
            "In" | "NotIn" => values > 0,
            "Exists" | "DoesNotExist" => values == 0,
            "Gt" | "Lt" => values == 1,
            _ => false,
        };
        if !ok || requirement["key"].as_str().is_none_or(str::is_empty) {
            out.push(format!(
                "node selector requirement {requirement} is invalid"
            ));
        }
    }
}
