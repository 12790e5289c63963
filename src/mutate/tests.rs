use super::*;
use crate::settings;
use rstest::rstest;

fn settings(value: Value) -> Settings {
    settings::parse(value).unwrap()
}

fn host_path() -> Settings {
    settings(json!({"mountMethod": "k8s-host-path"}))
}

fn pod() -> Value {
    json!({"spec": {"containers": [{"name": "app", "image": "app:1"}, {"name": "sidecar"}]}})
}

/// The container has the default extended resource at "1" in limits and requests.
fn assert_requests_the_resource(container: &Value) {
    for field in ["limits", "requests"] {
        assert_eq!(
            container["resources"][field]["instrumentation.odigos.io/generic"], "1",
            "{container}"
        );
    }
}

#[test]
fn virtual_device_sets_limits_and_requests() {
    let mut pod = pod();
    assert_eq!(mutate(&mut pod, &[0], &Settings::default()), Ok(true));
    assert_requests_the_resource(&pod["spec"]["containers"][0]);
    assert!(pod["spec"]["containers"][1].get("resources").is_none());
    assert!(pod["spec"].get("volumes").is_none());
    assert_eq!(mutate(&mut pod, &[0], &Settings::default()), Ok(false));
}

#[test]
fn virtual_device_conflicting_amount() {
    let mut pod = json!({"spec": {"containers": [{"name": "app",
        "resources": {"limits": {"instrumentation.odigos.io/generic": "2"}}}]}});
    assert_eq!(
        mutate(&mut pod, &[0], &Settings::default()),
        Err(Conflict::ResourceAmount {
            container: "app".into(),
            field: "limits",
            resource: "instrumentation.odigos.io/generic".into(),
            found: "\"2\"".into(),
            annotation: "agent-mount.io/containers".into(),
        })
    );
}

#[test]
fn host_path_per_directory_mounts() {
    let s =
        settings(json!({"mountMethod": "k8s-host-path", "agentDirectories": ["java", "python"]}));
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
fn csi_driver_adds_an_inline_read_only_volume() {
    let s = settings(json!({"mountMethod": "k8s-csi-driver"}));
    let mut pod = pod();
    assert_eq!(mutate(&mut pod, &[0], &s), Ok(true));
    assert_eq!(
        pod["spec"]["volumes"],
        json!([{"name": "odigos-agent", "csi": {"driver": "odigos.csi.driver", "readOnly": true,
            "volumeAttributes": {"type": "instrumentation"}}}])
    );
    assert_eq!(
        pod["spec"]["containers"][0]["volumeMounts"],
        json!([{"name": "odigos-agent", "mountPath": "/var/odigos", "readOnly": true}])
    );
    assert_eq!(mutate(&mut pod, &[0], &s), Ok(false));
    // Another driver under our volume name is not ours.
    let other = settings(json!({"mountMethod": "k8s-csi-driver", "csiDriver": "other.csi"}));
    assert!(matches!(
        mutate(&mut pod, &[0], &other),
        Err(Conflict::ForeignVolume { .. })
    ));
}

#[rstest]
#[case::whole_under_source(json!({"reference": "agents:1"}), json!([]),
    json!([{"name": "odigos-agent", "mountPath": "/var/odigos", "subPath": "instrumentations", "readOnly": true}]))]
#[case::per_dir(json!({"reference": "agents:1"}), json!(["java"]),
    json!([{"name": "odigos-agent", "mountPath": "/var/odigos/java", "subPath": "instrumentations/java", "readOnly": true}]))]
#[case::root_whole(json!({"reference": "agents:1", "sourcePath": "/"}), json!([]),
    json!([{"name": "odigos-agent", "mountPath": "/var/odigos", "readOnly": true}]))]
#[case::root_per_dir(json!({"reference": "agents:1", "sourcePath": "/"}), json!(["java"]),
    json!([{"name": "odigos-agent", "mountPath": "/var/odigos/java", "subPath": "java", "readOnly": true}]))]
fn image_volume_mounts_start_at_the_source_path(
    #[case] image: Value,
    #[case] dirs: Value,
    #[case] mounts: Value,
) {
    let s = settings(
        json!({"mountMethod": "k8s-image-volume", "imageVolume": image, "agentDirectories": dirs}),
    );
    let mut pod = pod();
    assert_eq!(mutate(&mut pod, &[0], &s), Ok(true));
    assert_eq!(
        pod["spec"]["volumes"],
        json!([{"name": "odigos-agent", "image": {"reference": "agents:1", "pullPolicy": "IfNotPresent"}}])
    );
    assert_eq!(pod["spec"]["containers"][0]["volumeMounts"], mounts);
    assert_eq!(mutate(&mut pod, &[0], &s), Ok(false));
}

#[test]
fn image_volume_of_another_reference_is_a_conflict() {
    let s = settings(
        json!({"mountMethod": "k8s-image-volume", "imageVolume": {"reference": "agents:2"}}),
    );
    let mut pod = pod();
    pod["spec"]["volumes"] = json!([{"name": "odigos-agent", "image": {"reference": "agents:1"}}]);
    assert!(matches!(
        mutate(&mut pod, &[0], &s),
        Err(Conflict::ForeignVolume { .. })
    ));
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

/// Issue 8 §2: an empty term matches no node; adding to it would widen the affinity.
#[test]
fn empty_node_selector_terms_are_left_alone() {
    let s = settings(
        json!({"mountMethod": "k8s-csi-driver", "requiredNodeLabel": {"key": "agents", "value": "yes"}}),
    );
    let mut pod = pod();
    let zone = json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]});
    pod["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        zone, {}, {"matchExpressions": []}
    ]}}});
    assert_eq!(mutate(&mut pod, &[0], &s), Ok(true));
    let terms = &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    assert_eq!(terms[0]["matchExpressions"].as_array().unwrap().len(), 2);
    assert_eq!(terms[1], json!({}));
    assert_eq!(terms[2], json!({"matchExpressions": []}));
}

/// Issue 8 §1: a mount of our volume name in a pod without the volume would become
/// a writable view of the node's agents once we create the volume.
#[rstest]
#[case::app_container_elsewhere("containers", 0, json!({"name": "odigos-agent", "mountPath": "/agents-rw"}))]
#[case::app_container_at_our_path_not_read_only("containers", 0, json!({"name": "odigos-agent", "mountPath": "/var/odigos"}))]
#[case::app_container_read_only_elsewhere("containers", 0, json!({"name": "odigos-agent", "mountPath": "/x", "readOnly": true}))]
#[case::ignored_sidecar("containers", 1, json!({"name": "odigos-agent", "mountPath": "/agents-rw"}))]
#[case::init_container("initContainers", 0, json!({"name": "odigos-agent", "mountPath": "/agents-rw"}))]
#[case::ephemeral_container("ephemeralContainers", 0, json!({"name": "odigos-agent", "mountPath": "/agents-rw"}))]
fn a_mount_of_the_volume_we_would_create_is_a_conflict(
    #[case] list: &str,
    #[case] index: usize,
    #[case] mount: Value,
) {
    for method in [
        json!({"mountMethod": "k8s-host-path"}),
        json!({"mountMethod": "k8s-host-path", "agentDirectories": ["java"]}),
        json!({"mountMethod": "k8s-csi-driver"}),
        json!({"mountMethod": "k8s-image-volume", "imageVolume": {"reference": "a:1"}}),
        json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a:1"}}),
    ] {
        let mut pod = pod();
        if list != "containers" {
            pod["spec"][list] = json!([{"name": "other"}]);
        }
        pod["spec"][list][index]["volumeMounts"] = json!([mount.clone()]);
        let err = mutate(&mut pod, &[0], &settings(method.clone())).unwrap_err();
        assert!(
            matches!(err, Conflict::MountOfMissingVolume { .. }),
            "{method}: {err}"
        );
    }
}

#[rstest]
#[case::not_read_only(json!({"name": "odigos-agent", "mountPath": "/var/odigos"}))]
#[case::read_only_false(json!({"name": "odigos-agent", "mountPath": "/var/odigos", "readOnly": false}))]
#[case::other_sub_path(json!({"name": "odigos-agent", "mountPath": "/var/odigos", "subPath": "java", "readOnly": true}))]
#[case::other_volume(json!({"name": "data", "mountPath": "/var/odigos", "readOnly": true}))]
#[case::other_volume_trailing_slash(json!({"name": "data", "mountPath": "/var/odigos/", "readOnly": true}))]
#[case::other_volume_double_slash(json!({"name": "data", "mountPath": "//var//odigos", "readOnly": true}))]
#[case::other_volume_dotdot(json!({"name": "data", "mountPath": "/var/x/../odigos", "readOnly": true}))]
#[case::other_volume_dotdot_above_root(json!({"name": "data", "mountPath": "/../var/odigos", "readOnly": true}))]
#[case::sub_path_expr(json!({"name": "odigos-agent", "mountPath": "/var/odigos", "subPathExpr": "$(POD_NAME)", "readOnly": true}))]
#[case::sub_path_expr_beside_empty_sub_path(json!({"name": "odigos-agent", "mountPath": "/var/odigos", "subPath": "", "subPathExpr": "x", "readOnly": true}))]
fn only_exactly_our_mount_counts_as_already_added(#[case] mount: Value) {
    let mut pod = pod();
    pod["spec"]["volumes"] = json!([{"name": "odigos-agent", "hostPath": {"path": "/var/odigos"}},
        {"name": "data", "emptyDir": {}}]);
    pod["spec"]["containers"][0]["volumeMounts"] = json!([mount]);
    let err = mutate(&mut pod, &[0], &host_path()).unwrap_err();
    assert!(matches!(err, Conflict::MountAtOurPath { .. }), "{err}");
}

#[rstest]
#[case::trailing_slash(json!({"name": "odigos-agent", "mountPath": "/var/odigos/", "readOnly": true}))]
#[case::dotdot(json!({"name": "odigos-agent", "mountPath": "/var/x/../odigos", "readOnly": true}))]
#[case::empty_sub_paths(json!({"name": "odigos-agent", "mountPath": "/var/odigos", "subPath": "", "subPathExpr": "", "readOnly": true}))]
fn exactly_our_mount_at_a_spelling_of_our_path_is_already_added(#[case] mount: Value) {
    let mut pod = pod();
    pod["spec"]["volumes"] = json!([{"name": "odigos-agent", "hostPath": {"path": "/var/odigos"}}]);
    pod["spec"]["containers"][0]["volumeMounts"] = json!([mount]);
    assert_eq!(mutate(&mut pod, &[0], &host_path()), Ok(false));
}

/// DESIGN §2: a per-directory mount spelt with `..` is at our place, too.
#[test]
fn a_per_directory_path_spelt_with_dotdot_is_a_conflict() {
    let s = settings(json!({"mountMethod": "k8s-host-path", "agentDirectories": ["java"]}));
    let mut pod = pod();
    pod["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
    pod["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "data", "mountPath": "/var/odigos/python/../java"}]);
    let err = mutate(&mut pod, &[0], &s).unwrap_err();
    assert!(matches!(err, Conflict::MountAtOurPath { .. }), "{err}");
}

/// Issue 8 §3: container names are unique across the three lists.
#[rstest]
#[case::app_container("containers")]
#[case::ephemeral_container("ephemeralContainers")]
fn our_init_container_name_taken_elsewhere_is_a_conflict(#[case] list: &str) {
    let s =
        settings(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a:1"}}));
    let mut pod = pod();
    if list == "containers" {
        pod["spec"]["containers"][1]["name"] = json!("odigos-agent-init");
    } else {
        pod["spec"][list] = json!([{"name": "odigos-agent-init", "image": "a:1"}]);
    }
    assert_eq!(
        mutate(&mut pod, &[0], &s),
        Err(Conflict::ContainerName {
            name: "odigos-agent-init".into(),
            list: if list == "containers" {
                "containers"
            } else {
                "ephemeralContainers"
            },
        })
    );
}

#[test]
fn a_field_of_the_wrong_type_is_a_conflict_naming_its_path() {
    let mut pod = json!({"spec": {"containers": [{"name": "app", "resources": {"limits": []}}]}});
    let err = mutate(&mut pod, &[0], &Settings::default()).unwrap_err();
    assert_eq!(
        err,
        Conflict::WrongType {
            path: "container \"app\": resources.limits".into(),
            found: "an array",
            expected: "an object"
        }
    );
    let mut pod = json!({"spec": {"volumes": "none", "containers": [{"name": "app"}]}});
    let err = mutate(&mut pod, &[0], &host_path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.volumes is a string, expected an array: fix that field in the pod's manifest (agent-mount adds to it)"
    );
}

#[test]
fn long_pod_values_are_cut_in_messages() {
    let mut pod = pod();
    pod["spec"]["volumes"] =
        json!([{"name": "odigos-agent", "configMap": {"name": "x".repeat(100_000)}}]);
    let err = mutate(&mut pod, &[0], &host_path())
        .unwrap_err()
        .to_string();
    assert!(err.len() < 600, "{} bytes", err.len());
}

#[test]
fn security_overrides_merge_over_the_hardened_default() {
    let s = settings(
        json!({"mountMethod": "k8s-init-container", "initContainer": {
        "image": "agents:1", "securityContext": {"runAsUser": 1000, "capabilities": {"add": ["CHOWN"]}}}}),
    );
    let Method::InitContainer { copy, .. } = &s.method else {
        panic!("not init-container");
    };
    let container = copy.container(&[]);
    let security = &container["securityContext"];
    assert_eq!(security["runAsUser"], 1000);
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(
        security["capabilities"],
        json!({"add": ["CHOWN"], "drop": ["ALL"]})
    );
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
}

#[rstest]
#[case("/var/odigos/", "/var/odigos")]
#[case("//var//odigos", "/var/odigos")]
#[case("/var/./odigos", "/var/odigos")]
#[case("/", "/")]
#[case("rel/a/", "rel/a")]
#[case("/var/x/../odigos", "/var/odigos")]
#[case("/var/odigos/java/..", "/var/odigos")]
#[case("/../var/./../odigos", "/odigos")]
#[case("rel/../../a", "../a")]
#[case::already_normal("/var/odigos", "/var/odigos")]
#[case::dot_in_a_name("/var/.agents/java", "/var/.agents/java")]
#[case::relative_dot_name(".agents/java", ".agents/java")]
#[case::relative_dot("./rel", "rel")]
#[case::empty("", "")]
fn paths_are_compared_normalised(#[case] path: &str, #[case] normal: &str) {
    assert_eq!(normalise_path(path), normal);
}

fn init_container() -> Settings {
    settings(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "agents:1"}}))
}

/// Issue 20: a Windows pod (only `spec.os.name` counts) is a conflict under every method.
#[rstest]
#[case::virtual_device(json!({}))]
#[case::host_path(json!({"mountMethod": "k8s-host-path"}))]
#[case::init_container(json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a:1"}}))]
#[case::csi_driver(json!({"mountMethod": "k8s-csi-driver"}))]
#[case::image_volume(json!({"mountMethod": "k8s-image-volume", "imageVolume": {"reference": "a:1"}}))]
fn a_windows_pod_is_a_conflict_under_every_method(#[case] s: Value) {
    let mut windows = pod();
    windows["spec"]["os"] = json!({"name": "windows"});
    let before = windows.clone();
    assert_eq!(
        mutate(&mut windows, &[0], &settings(s.clone())),
        Err(Conflict::WindowsPod)
    );
    assert_eq!(windows, before);
    let mut linux = pod();
    linux["spec"]["os"] = json!({"name": "linux"});
    assert_eq!(mutate(&mut linux, &[0], &settings(s)), Ok(true));
}

/// validateWindowsHostProcessPod: every container of a host-process pod must be one,
/// and the copy container is not; the other methods add no container.
#[rstest]
#[case::pod_level("/spec/securityContext", "spec.securityContext", "the pod")]
#[case::app_container("/spec/containers/1/securityContext", "containers", "sidecar")]
fn a_host_process_pod_is_a_conflict_under_init_container(
    #[case] at: &str,
    #[case] list: &str,
    #[case] container: &str,
) {
    let mut host_process = pod();
    let (parent, key) = at.rsplit_once('/').unwrap();
    host_process.pointer_mut(parent).unwrap()[key] =
        json!({"windowsOptions": {"hostProcess": true}});
    let err = mutate(&mut host_process.clone(), &[0], &init_container()).unwrap_err();
    assert!(
        matches!(&err, Conflict::HostProcess { list: l, container: c } if *l == list && c == container),
        "{err:?}"
    );
    assert_eq!(mutate(&mut host_process, &[0], &host_path()), Ok(true));
}

/// validatePodResourceConsistency: the copy container takes nothing of its own for the
/// resources the pod names in spec.resources, whatever initContainer.resources says.
#[rstest]
#[case::requests_only(json!({"requests": {"memory": "128Mi"}}), json!({"limits": {"cpu": "100m"}, "requests": {"cpu": "100m"}}))]
#[case::limits_only(json!({"limits": {"cpu": "50m"}}), json!({"limits": {"memory": "256Mi"}, "requests": {"memory": "256Mi"}}))]
#[case::both(json!({"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}}), Value::Null)]
#[case::hugepages_only(json!({"limits": {"hugepages-2Mi": "4Mi"}}), json!({"limits": {"cpu": "100m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}}))]
#[case::null_lists(json!({"requests": null, "limits": null}), json!({"limits": {"cpu": "100m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}}))]
fn pod_level_resources_cover_the_copy_container(
    #[case] pod_resources: Value,
    #[case] expected: Value,
) {
    let mut budgeted = pod();
    budgeted["spec"]["resources"] = pod_resources;
    assert_eq!(mutate(&mut budgeted, &[0], &init_container()), Ok(true));
    let copy = &budgeted["spec"]["initContainers"][0];
    assert_eq!(
        copy.get("resources").cloned().unwrap_or(Value::Null),
        expected
    );
}

#[test]
fn pod_level_resources_win_over_the_resources_setting() {
    let s = settings(
        json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "a:1",
        "resources": {"requests": {"cpu": "10m", "ephemeral-storage": "1Gi"}, "limits": {"cpu": "20m"}}}}),
    );
    let mut budgeted = pod();
    budgeted["spec"]["resources"] = json!({"limits": {"cpu": "1"}});
    assert_eq!(mutate(&mut budgeted, &[0], &s), Ok(true));
    assert_eq!(
        budgeted["spec"]["initContainers"][0]["resources"],
        json!({"requests": {"ephemeral-storage": "1Gi"}})
    );
}

/// validateVolumeMounts: a mountPath may not also be a devicePath of the container.
#[rstest]
#[case::same_path("/var/odigos")]
#[case::same_place("/var/x/../odigos/")]
fn a_block_device_at_our_path_is_a_conflict(#[case] device_path: &str) {
    let mut with_device = pod();
    with_device["spec"]["containers"][0]["volumeDevices"] =
        json!([{"name": "disk", "devicePath": device_path}]);
    let err = mutate(&mut with_device, &[0], &host_path()).unwrap_err();
    assert!(matches!(err, Conflict::DeviceAtOurPath { .. }), "{err:?}");
    let mut elsewhere = pod();
    elsewhere["spec"]["containers"][0]["volumeDevices"] =
        json!([{"name": "disk", "devicePath": "/dev/xvda"}]);
    assert_eq!(mutate(&mut elsewhere, &[0], &host_path()), Ok(true));
}

/// DESIGN §2 "`null` in the pod is absent": each field, set to null, is read as absent.
#[rstest]
#[case::volumes("/spec", "volumes")]
#[case::init_containers("/spec", "initContainers")]
#[case::ephemeral_containers("/spec", "ephemeralContainers")]
#[case::pod_security_context("/spec", "securityContext")]
#[case::pod_resources("/spec", "resources")]
#[case::os("/spec", "os")]
#[case::affinity("/spec", "affinity")]
#[case::node_affinity("/spec/affinity", "nodeAffinity")]
#[case::required(
    "/spec/affinity/nodeAffinity",
    "requiredDuringSchedulingIgnoredDuringExecution"
)]
#[case::terms(
    "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution",
    "nodeSelectorTerms"
)]
#[case::volume_mounts("/spec/containers/0", "volumeMounts")]
#[case::volume_devices("/spec/containers/0", "volumeDevices")]
#[case::resources("/spec/containers/0", "resources")]
#[case::security_context("/spec/containers/0", "securityContext")]
#[case::windows_options("/spec/containers/0/securityContext", "windowsOptions")]
fn a_null_field_is_absent(#[case] parent: &str, #[case] key: &str) {
    for s in [
        host_path(),
        init_container(),
        settings(
            json!({"mountMethod": "k8s-csi-driver", "requiredNodeLabel": {"key": "k", "value": "v"}}),
        ),
    ] {
        let mut expected = pod();
        assert_eq!(mutate(&mut expected, &[0], &s), Ok(true));
        let mut nulls = pod();
        let mut at = &mut nulls;
        for segment in parent.split('/').skip(1) {
            at = match segment.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => at
                    .as_object_mut()
                    .unwrap()
                    .entry(segment)
                    .or_insert(json!({})),
            };
        }
        at[key] = Value::Null;
        assert_eq!(mutate(&mut nulls, &[0], &s), Ok(true), "{parent}/{key}");
        // What the policy adds is there as on the pod without the nulls.
        for pointer in [
            "/spec/volumes",
            "/spec/initContainers/0",
            "/spec/containers/0/volumeMounts",
            "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms",
        ] {
            if let Some(wanted) = expected.pointer(pointer) {
                assert_eq!(
                    nulls.pointer(pointer),
                    Some(wanted),
                    "{parent}/{key}: {pointer}"
                );
            }
        }
        assert_eq!(
            mutate(&mut nulls, &[0], &s),
            Ok(false),
            "{parent}/{key}: idempotent"
        );
    }
}

#[rstest]
#[case::resources("resources")]
#[case::limits("limits")]
#[case::requests("requests")]
fn a_null_resources_field_is_absent_under_virtual_device(#[case] key: &str) {
    let mut nulls = pod();
    match key {
        "resources" => nulls["spec"]["containers"][0]["resources"] = Value::Null,
        list => nulls["spec"]["containers"][0]["resources"] = json!({ list: null }),
    }
    assert_eq!(
        mutate(&mut nulls, &[0], &Settings::default()),
        Ok(true),
        "{key}"
    );
    assert_requests_the_resource(&nulls["spec"]["containers"][0]);
}

/// A null term decodes as an empty term, which matches no node, so it is left alone like
/// one; a null matchExpressions beside matchFields is absent.
#[test]
fn null_node_selector_parts_are_absent() {
    let s = settings(
        json!({"mountMethod": "k8s-host-path", "requiredNodeLabel": {"key": "k", "value": "v"}}),
    );
    let mut p = pod();
    p["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        null, {"matchExpressions": null, "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]}
    ]}}});
    assert_eq!(mutate(&mut p, &[0], &s), Ok(true));
    let terms = &p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    assert_eq!(terms[0], Value::Null);
    assert_eq!(
        terms[1]["matchExpressions"],
        json!([{"key": "k", "operator": "In", "values": ["v"]}])
    );
}

/// The copy container goes in as the JSON kept at settings load when the pod has no
/// pod-level resources, as a map with them; either way what the pod gets is the settings'
/// container, less the budgeted resources.
#[rstest]
#[case::no_pod_level_resources(Value::Null, true)]
#[case::pod_level_resources(json!({"limits": {"cpu": "1"}}), false)]
fn the_copy_container_goes_in_as_kept_json_unless_the_pod_budgets_resources(
    #[case] pod_resources: Value,
    #[case] kept: bool,
) {
    let s = init_container();
    let Method::InitContainer { copy, .. } = &s.method else {
        panic!("init-container settings");
    };
    let mut p = pod();
    p["spec"]["resources"] = pod_resources;
    let budgeted = if kept { vec![] } else { vec!["cpu"] };
    let expected = Value::Object(copy.container(&budgeted));
    let mut own_json = OwnJson::default();
    let changed = mutate_by(&mut p, &[0], &s, &Additions::of(&s.method), &mut own_json);
    assert_eq!(changed, Ok(true));
    let inserted = &mut p["spec"]["initContainers"][0];
    assert_eq!(inserted.is_string(), kept, "{inserted}");
    own_json.unfold(inserted);
    assert_eq!(*inserted, expected);
}
