//! Property tests over generated pods, for every method: no panic, idempotence, nothing
//! removed (but the activation joins), valid in → valid out (and no two mounts at one
//! place), and nothing of ours writable. A pod left unchanged must carry a warning or
//! already hold what the policy adds. With activation, the app's own value of a joined
//! variable is still a prefix of the result. Arbitrary JSON is rejected (400) exactly
//! when it cannot be read as a pod.
// Test and bench code: helpers fail loudly too (clippy.toml allows this in #[test] functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use agent_mount::activation::EnvEntry;
use agent_mount::activation::env::{ToMerge, as_json};
use agent_mount::response::validate;
use agent_mount::select;
use agent_mount::settings::{self, method::Method};
use agent_mount_common::MountMethod;
use k8s_openapi::api::core::v1::Pod;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::kubelet;
use support::pod_rules::{self, mounts_at_one_place, resolve};
use support::{lost_from, method_settings, ops, payload};

/// Generated pods per method; the issue asks for at least 10,000.
const CASES: u32 = 10_000;

const NAMES: [&str; 7] = [
    "app",
    "worker",
    "istio-proxy",
    "linkerd-proxy",
    "api",
    "fluentd",
    "odigos-agent-init",
];

fn resource_entry() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(json!("1"))),
        1 => Just(Some(json!("2"))),
    ]
}

fn resources() -> impl Strategy<Value = Option<Value>> {
    (
        any::<bool>(),
        resource_entry(),
        resource_entry(),
        any::<bool>(),
    )
        .prop_map(|(present, limit, request, cpu)| {
            if !present {
                return None;
            }
            let mut limits = Map::new();
            let mut requests = Map::new();
            if cpu {
                requests.insert("cpu".into(), json!("100m"));
                limits.insert("cpu".into(), json!("0.5"));
            }
            if let Some(v) = limit {
                limits.insert("instrumentation.odigos.io/generic".into(), v);
            }
            if let Some(v) = request {
                requests.insert("instrumentation.odigos.io/generic".into(), v);
            }
            Some(json!({"limits": limits, "requests": requests}))
        })
}

/// Mounts, including the attacks: our volume name without readOnly, elsewhere, with another
/// subPath or a subPathExpr, and our path spelt with `..`.
fn mounts() -> impl Strategy<Value = Option<Value>> {
    let mount = prop_oneof![
        6 => Just(json!({"name": "data", "mountPath": "/data"})),
        1 => Just(json!({"name": "odigos-agent", "mountPath": "/var/odigos", "readOnly": true})),
        1 => Just(json!({"name": "odigos-agent", "mountPath": "/var/odigos"})),
        1 => Just(json!({"name": "odigos-agent", "mountPath": "/agents-rw"})),
        1 => Just(json!({"name": "other", "mountPath": "/var/odigos/"})),
        1 => Just(json!({"name": "odigos-agent", "mountPath": "/var/odigos/java", "subPath": "java", "readOnly": true})),
        1 => Just(json!({"name": "odigos-agent", "mountPath": "/var/odigos", "subPath": "instrumentations", "readOnly": true})),
        1 => Just(json!({"name": "odigos-agent", "mountPath": "/var/x/../odigos", "readOnly": true})),
        1 => Just(json!({"name": "data", "mountPath": "/var/x/../odigos", "readOnly": true})),
        1 => Just(json!({"name": "data", "mountPath": "/var/odigos/python/../java"})),
        1 => Just(json!({"name": "odigos-agent", "mountPath": "/var/odigos", "subPathExpr": "$(POD_NAME)", "readOnly": true})),
        1 => Just(json!({"name": "odigos-agent", "mountPath": "/var/odigos/java", "subPathExpr": "java", "readOnly": true})),
    ];
    proptest::option::of(proptest::collection::vec(mount, 0..3).prop_map(Value::Array))
}

/// Env entries, including our variables with other values, empty, without a value, from
/// `valueFrom`, already holding ours, and (by chance) twice.
fn env() -> impl Strategy<Value = Option<Value>> {
    let ours_java = "-javaagent:/var/odigos/java/javaagent.jar";
    let ours_python =
        "/var/odigos/python:/var/odigos/python/opentelemetry/instrumentation/auto_instrumentation";
    let var = prop_oneof![
        Just(json!({"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx1g"})),
        Just(json!({"name": "JAVA_TOOL_OPTIONS", "value": ""})),
        Just(json!({"name": "JAVA_TOOL_OPTIONS"})),
        Just(json!({"name": "JAVA_TOOL_OPTIONS", "value": format!("-Dx=1 {ours_java}")})),
        Just(
            json!({"name": "JAVA_TOOL_OPTIONS", "valueFrom": {"configMapKeyRef": {"name": "jvm", "key": "opts"}}})
        ),
        Just(json!({"name": "PYTHONPATH", "value": "/app"})),
        Just(json!({"name": "PYTHONPATH", "value": format!("{ours_python}:/app")})),
        Just(json!({"name": "NODE_OPTIONS", "value": "--inspect"})),
        Just(json!({"name": "LD_PRELOAD", "value": "/lib/libjemalloc.so"})),
        Just(json!({"name": "HOST_IP", "value": "10.1.2.3"})),
        Just(json!({"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://collector:4317"})),
        Just(json!({"name": "LOG_TARGET", "value": "$(HOST_IP):514"})),
    ];
    let var = prop_oneof![3 => var, 2 => activation_env_entry()];
    proptest::option::weighted(
        0.7,
        proptest::collection::vec(var, 0..4).prop_map(Value::Array),
    )
}

/// Env entries aimed at activation: values with `$`, `$(`, `$$`, quotes, tabs and
/// newlines; our agent already loaded in the ways the runtimes read; `valueFrom` of every
/// kind, with and without `optional`; the names the policy writes or refers to.
fn activation_env_entry() -> impl Strategy<Value = Value> {
    let java = "-javaagent:/var/odigos/java/javaagent.jar";
    let jto = |value: String| json!({"name": "JAVA_TOOL_OPTIONS", "value": value});
    let from = |name: &str, source: Value| json!({"name": name, "valueFrom": source});
    let cm = |optional: Option<bool>| {
        let mut selector = json!({"name": "jvm", "key": "opts"});
        if let Some(optional) = optional {
            selector["optional"] = json!(optional);
        }
        selector
    };
    let value = prop_oneof![
        Just("-Dcost=5$".to_string()),
        Just("-Dx=$(".to_string()),
        Just("-Dx=$(LOG_LEVEL".to_string()),
        Just("-Dprice=$$(HOST_IP) -Dy=$$".to_string()),
        Just("-Dname=\"a b\"\t-Xss1m\n".to_string()),
        Just(format!("-Xmx1g\t\"{java}=debug\"")),
        Just(format!("'{java}'")),
        Just(format!("{java}=x=1\n-Dz")),
        Just("$(OTEL_JAVAAGENT_JAR)".to_string()),
        "[ -~\t\n]{0,12}",
    ];
    prop_oneof![
        3 => value.prop_map(jto),
        1 => Just(from("JAVA_TOOL_OPTIONS", json!({"configMapKeyRef": cm(None)}))),
        1 => Just(from("JAVA_TOOL_OPTIONS", json!({"secretKeyRef": cm(Some(false))}))),
        1 => Just(from("JAVA_TOOL_OPTIONS", json!({"configMapKeyRef": cm(Some(true))}))),
        1 => Just(from("JAVA_TOOL_OPTIONS", json!({"fieldRef": {"fieldPath": "metadata.annotations['jvm']"}}))),
        1 => Just(from("NODE_OPTIONS", json!({"resourceFieldRef": {"resource": "limits.memory"}}))),
        1 => Just(from("PYTHONPATH", json!({"secretKeyRef": cm(Some(true))}))),
        1 => Just(json!({"name": "ORIGINAL_JAVA_TOOL_OPTIONS", "value": "-Xmx1g"})),
        1 => Just(json!({"name": "OTEL_JAVAAGENT_JAR", "value": "/old/agent.jar"})),
        1 => Just(json!({"name": "OTEL_AGENTS", "value": "/var/odigos"})),
        1 => Just(json!({"name": "LOG_LEVEL", "value": "$(OTEL_JAVAAGENT_JAR)"})),
        1 => Just(json!({"name": "OTEL_SERVICE_NAME", "value": "mine"})),
        1 => Just(json!({"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "team=a,k8s.pod.name=fixed"})),
        1 => Just(json!({"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "service.name=x,k8s.container.name=c,"})),
        1 => Just(json!({"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "team=$("})),
        1 => Just(from("OTEL_RESOURCE_ATTRIBUTES", json!({"configMapKeyRef": cm(None)}))),
        1 => Just(from("OTEL_RESOURCE_ATTRIBUTES_POD_NAME", json!({"fieldRef": {"fieldPath": "metadata.name"}}))),
        1 => Just(json!({"name": "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME", "value": "n"})),
        1 => Just(json!({"name": "DEBUG", "value": "$(OTEL_RESOURCE_ATTRIBUTES_POD_UID)"})),
    ]
}

/// The pod's owner: every workload kind, by the names their controllers give.
fn owner_references() -> impl Strategy<Value = Option<(Value, Option<&'static str>)>> {
    let owner = |kind: &str, name: &str| json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u-1", "controller": true}]);
    proptest::option::weighted(
        0.6,
        prop_oneof![
            Just((owner("ReplicaSet", "checkout-7d9f8b"), Some("7d9f8b"))),
            Just((owner("ReplicaSet", "checkout-7d9f8b"), None)),
            Just((owner("StatefulSet", "db"), None)),
            Just((owner("DaemonSet", "node-agent"), None)),
            Just((owner("Job", "report-28973520"), None)),
            Just((owner("Job", "migrate"), None)),
            Just((owner("Workflow", "w$1"), None)),
            Just((
                json!([{"kind": "ConfigMap", "name": "x"}, {"kind": "StatefulSet", "name": "s"}]),
                None
            )),
        ],
    )
}

fn container(name: &'static str) -> impl Strategy<Value = Value> {
    (resources(), mounts(), any::<bool>(), env(), any::<bool>()).prop_map(
        move |(resources, mounts, future, env, env_from)| {
            let mut c = json!({"name": name, "image": format!("{name}:1")});
            if let Some(r) = resources {
                c["resources"] = r;
            }
            if let Some(m) = mounts {
                c["volumeMounts"] = m;
            }
            if let Some(env) = env {
                c["env"] = env;
            }
            if env_from {
                c["envFrom"] = json!([{"configMapRef": {"name": "app-config"}}]);
            }
            if future {
                c["futureContainerField"] = json!({"x": [1, 2]});
            }
            c
        },
    )
}

fn containers() -> impl Strategy<Value = Vec<Value>> {
    proptest::sample::subsequence(NAMES.to_vec(), 1..=NAMES.len())
        .prop_flat_map(|names| names.into_iter().map(container).collect::<Vec<_>>())
}

/// The pod's volumes: usually the ones the generated mounts use, plus maybe one of our name.
fn volumes() -> impl Strategy<Value = Option<Value>> {
    let ours = prop_oneof![
        3 => Just(None),
        1 => Just(Some(json!({"name": "odigos-agent", "hostPath": {"path": "/var/odigos"}}))),
        1 => Just(Some(json!({"name": "odigos-agent", "emptyDir": {}}))),
        1 => Just(Some(json!({"name": "odigos-agent", "configMap": {"name": "x"}}))),
        1 => Just(Some(json!({"name": "odigos-agent", "csi": {"driver": "odigos.csi.driver", "readOnly": true}}))),
        1 => Just(Some(json!({"name": "odigos-agent", "image": {"reference": "ghcr.io/example/agents:1.0"}}))),
    ];
    (prop_oneof![1 => Just(false), 5 => Just(true)], ours).prop_map(|(declared, ours)| {
        let mut volumes = Vec::new();
        if declared {
            volumes.push(json!({"name": "data", "emptyDir": {}}));
            volumes.push(json!({"name": "other", "emptyDir": {}}));
        }
        volumes.extend(ours);
        (!volumes.is_empty()).then_some(Value::Array(volumes))
    })
}

fn init_containers() -> impl Strategy<Value = Option<Value>> {
    let init = prop_oneof![
        Just(json!({"name": "setup", "image": "setup:1"})),
        Just(
            json!({"name": "setup", "image": "setup:1", "volumeMounts": [{"name": "odigos-agent", "mountPath": "/agents-rw"}]})
        ),
        Just(json!({"name": "odigos-agent-init", "image": "busybox:1.36"})),
        Just(json!({"name": "odigos-agent-init", "image": "ghcr.io/example/agents:1.0"})),
    ];
    proptest::option::of(proptest::collection::vec(init, 0..3).prop_map(Value::Array))
}

fn ephemeral_containers() -> impl Strategy<Value = Option<Value>> {
    let debug = prop_oneof![
        Just(json!({"name": "debug", "image": "busybox:1.36"})),
        Just(
            json!({"name": "debug", "image": "busybox:1.36", "volumeMounts": [{"name": "odigos-agent", "mountPath": "/agents-rw"}]})
        ),
        Just(json!({"name": "odigos-agent-init", "image": "busybox:1.36"})),
    ];
    proptest::option::of(debug.prop_map(|c| json!([c])))
}

fn affinity() -> impl Strategy<Value = Option<Value>> {
    let expression = json!({"key": "zone", "operator": "In", "values": ["a"]});
    prop_oneof![
        Just(None),
        Just(Some(json!({}))),
        Just(Some(
            json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}})
        )),
        Just(Some(
            json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [expression.clone()]}, {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]}
            ]}}})
        )),
        Just(Some(
            json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [expression.clone()]}, {}
            ]}}})
        )),
        Just(Some(json!({"podAntiAffinity": {}}))),
    ]
}

fn annotation() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(
        proptest::sample::subsequence(vec!["app", "istio-proxy", "ghost", " api "], 0..=4)
            .prop_map(|n| n.join(",")),
    )
}

/// The activation annotation in both forms, with unknown agents and containers, a
/// container named twice and an item that is not a pair.
fn agents_annotation() -> impl Strategy<Value = Option<&'static str>> {
    proptest::option::weighted(
        0.8,
        proptest::sample::select(vec![
            "java",
            "python",
            " nodejs ",
            "loader",
            "ruby",
            "app=java,worker=python",
            "app=java, app=python, ghost=java",
            "api=nodejs,worker=loader,broken",
            "worker = java, istio-proxy=python",
        ]),
    )
}

/// The generated pod: the core shapes, then the API server's cross-field shapes, then
/// `null` fields.
fn pod() -> impl Strategy<Value = Value> {
    (core_pod(), api_server_shapes(), null_fields()).prop_map(|(mut pod, shapes, nulls)| {
        shapes.apply(&mut pod);
        set_null_where_absent(&mut pod, &nulls);
        pod
    })
}

fn core_pod() -> impl Strategy<Value = Value> {
    (
        containers(),
        volumes(),
        init_containers(),
        ephemeral_containers(),
        affinity(),
        annotation(),
        any::<bool>(),
        agents_annotation(),
    )
        .prop_map(
            |(containers, volumes, inits, ephemeral, affinity, annotation, future, agents)| {
                let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
                    "spec": {"containers": containers}});
                for (key, value) in [
                    ("volumes", volumes),
                    ("initContainers", inits),
                    ("ephemeralContainers", ephemeral),
                    ("affinity", affinity),
                ] {
                    if let Some(value) = value {
                        pod["spec"][key] = value;
                    }
                }
                if let Some(a) = annotation {
                    pod["metadata"]["annotations"]["agent-mount.io/containers"] = json!(a);
                }
                if let Some(a) = agents {
                    pod["metadata"]["annotations"]["agent-mount.io/agents"] = json!(a);
                }
                if future {
                    pod["futurePodField"] = json!({"enabled": true});
                    pod["spec"]["futureSpecField"] = json!([1.5, "x"]);
                }
                pod
            },
        )
}

/// Issue 20: the pod fields the API server judges across the pod (validateOS,
/// validateWindowsHostProcessPod, validateHostUsers, validatePodResourceConsistency,
/// validateInitContainers, validateVolumeDevices), generated apart from the core pod.
#[derive(Clone, Debug)]
struct ApiServerShapes {
    /// `spec.os`.
    os: Option<Value>,
    /// `spec.resources`.
    pod_resources: Option<Value>,
    /// Restartable sidecars (and a broken one), appended to `initContainers`.
    sidecars: Vec<Value>,
    /// `spec.securityContext`, `spec.hostNetwork`, `spec.hostUsers`, and host-process on
    /// the first container.
    security: Option<Value>,
    host_network: bool,
    host_users: Option<bool>,
    first_container_host_process: bool,
    /// A block device on the first container, at our mount path or elsewhere.
    device_path: Option<&'static str>,
}

impl ApiServerShapes {
    fn apply(self, pod: &mut Value) {
        let spec = &mut pod["spec"];
        if let Some(os) = self.os {
            spec["os"] = os;
        }
        if let Some(resources) = self.pod_resources {
            spec["resources"] = resources;
        }
        if !self.sidecars.is_empty() {
            let mut inits = spec["initContainers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            inits.extend(self.sidecars);
            spec["initContainers"] = Value::Array(inits);
        }
        if let Some(security) = self.security {
            spec["securityContext"] = security;
        }
        if self.host_network {
            spec["hostNetwork"] = json!(true);
        }
        if let Some(host_users) = self.host_users {
            spec["hostUsers"] = json!(host_users);
        }
        if self.first_container_host_process {
            spec["containers"][0]["securityContext"] =
                json!({"windowsOptions": {"hostProcess": true}});
        }
        if let Some(path) = self.device_path {
            spec["containers"][0]["volumeDevices"] = json!([{"name": "disk", "devicePath": path}]);
            let mut volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
            volumes.push(json!({"name": "disk", "persistentVolumeClaim": {"claimName": "disk"}}));
            spec["volumes"] = Value::Array(volumes);
        }
    }
}

/// `spec.os`: absent mostly, Linux, or Windows (one pod in ten).
fn pod_os() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        8 => Just(None),
        1 => Just(Some(json!({"name": "linux"}))),
        1 => Just(Some(json!({"name": "windows"}))),
    ]
}

/// Pod-level `spec.resources` of every shape: requests only, limits only or both; cpu,
/// memory and hugepages; amounts below the copy container's (100m, 256Mi) or above.
fn pod_level_resources() -> impl Strategy<Value = Option<Value>> {
    let shape = (
        0..3_u8,
        proptest::sample::subsequence(vec!["cpu", "memory", "hugepages-2Mi"], 1..=3),
        any::<bool>(),
    )
        .prop_map(|(fields, names, big)| {
            let amounts: Map<String, Value> = names
                .into_iter()
                .map(|name| {
                    let amount = match (name, big) {
                        ("cpu", false) => "50m",
                        ("cpu", true) => "4",
                        ("memory", false) => "128Mi",
                        ("memory", true) => "8Gi",
                        _ => "4Mi",
                    };
                    (name.to_string(), json!(amount))
                })
                .collect();
            let mut resources = Map::new();
            if fields != 1 {
                resources.insert("requests".into(), Value::Object(amounts.clone()));
            }
            if fields != 0 {
                resources.insert("limits".into(), Value::Object(amounts));
            }
            Value::Object(resources)
        });
    proptest::option::weighted(0.25, shape)
}

/// Restartable sidecars with resources and probes, and an init container with a probe but
/// no `restartPolicy: Always`, which the API server refuses.
fn sidecars() -> impl Strategy<Value = Vec<Value>> {
    let probe = json!({"httpGet": {"path": "/ready", "port": 8080}});
    let sidecar = prop_oneof![
        Just(
            json!({"name": "log-shipper", "image": "shipper:1", "restartPolicy": "Always",
            "resources": {"requests": {"cpu": "200m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
            "readinessProbe": probe.clone(), "startupProbe": probe.clone()})
        ),
        Just(
            json!({"name": "mesh", "image": "mesh:1", "restartPolicy": "Always",
            "resources": {"limits": {"cpu": "1", "memory": "64Mi"}}, "livenessProbe": probe.clone()})
        ),
        Just(json!({"name": "probed-init", "image": "init:1", "readinessProbe": probe})),
    ];
    proptest::collection::vec(sidecar, 0..2)
}

/// Pod security shapes: user namespaces (`hostUsers: false`, with and without the host
/// network), Windows host-process at the pod or on a container, and a block device.
fn api_server_shapes() -> impl Strategy<Value = ApiServerShapes> {
    let security = prop_oneof![
        6 => Just((None, false, None, false)),
        1 => Just((None, false, Some(false), false)),
        1 => Just((None, true, Some(false), false)),
        1 => Just((Some(json!({"windowsOptions": {"hostProcess": true}})), true, None, false)),
        1 => Just((Some(json!({"runAsNonRoot": true, "windowsOptions": {"runAsUserName": "app"}})), false, None, false)),
        1 => Just((None, true, None, true)),
    ];
    let device = proptest::option::weighted(
        0.05,
        proptest::sample::select(vec!["/var/odigos", "/dev/xvda"]),
    );
    (
        pod_os(),
        pod_level_resources(),
        sidecars(),
        security,
        device,
    )
        .prop_map(
            |(
                os,
                pod_resources,
                sidecars,
                (security, host_network, host_users, first),
                device_path,
            )| {
                ApiServerShapes {
                    os,
                    pod_resources,
                    sidecars,
                    security,
                    host_network,
                    host_users,
                    first_container_host_process: first,
                    device_path,
                }
            },
        )
}

/// Fields that may be `null` in a pod, which the API server reads as absent (DESIGN §2).
const NULLABLE: [&str; 10] = [
    "/metadata/annotations",
    "/spec/affinity",
    "/spec/volumes",
    "/spec/initContainers",
    "/spec/securityContext",
    "/spec/resources",
    "/spec/os",
    "/spec/containers/0/resources",
    "/spec/containers/0/volumeMounts",
    "/spec/containers/0/securityContext",
];

/// Some of [`NULLABLE`], most pods none.
fn null_fields() -> impl Strategy<Value = Vec<&'static str>> {
    prop_oneof![
        3 => Just(Vec::new()),
        1 => proptest::sample::subsequence(NULLABLE.to_vec(), 1..=4),
    ]
}

/// Sets each of `pointers` to `null` where the pod does not have it.
fn set_null_where_absent(pod: &mut Value, pointers: &[&str]) {
    for pointer in pointers {
        let Some((parent, key)) = pointer.rsplit_once('/') else {
            continue;
        };
        if let Some(parent) = pod.pointer_mut(parent).and_then(Value::as_object_mut) {
            parent.entry(key).or_insert(Value::Null);
        }
    }
}

/// `value` without its `null` object members: what the API server reads.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Activation off, on with the built-in recipes, or on with the exporter in `activation.env`.
fn activation() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(json!({}))),
        2 => Just(Some(json!({"env": [
            {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://$(HOST_IP):4317"}
        ]}))),
        // A recipe whose joined value refers to its own entries, as the issue's .NET and
        // custom Java recipes do.
        2 => Just(Some(json!({"agents": {"java": {"directory": "java", "env": [
            {"name": "JAVA_TOOL_OPTIONS", "value": "-javaagent:$(OTEL_JAVAAGENT_JAR)", "join": " "},
            {"name": "OTEL_JAVAAGENT_JAR", "value": "$(OTEL_AGENTS)/java/javaagent.jar"},
            {"name": "OTEL_AGENTS", "value": "{dir}"}
        ]}}}))),
        1 => Just(Some(json!({"resourceAttributes": false}))),
    ]
}

/// Settings for `method`, with random agent directories, node label, image source path
/// and activation.
fn settings(method: MountMethod) -> impl Strategy<Value = Value> {
    let dirs = proptest::option::of(proptest::sample::subsequence(
        vec!["java", "python", "nodejs-community"],
        1..=3,
    ));
    (dirs, any::<bool>(), any::<bool>(), activation()).prop_map(
        move |(dirs, label, root, activation)| {
            let mut s = method_settings(method);
            if let Some(activation) = activation {
                s["activation"] = activation;
            }
            let label_key = match method {
                MountMethod::VirtualDevice => return s,
                MountMethod::HostPath | MountMethod::CsiDriver => true,
                MountMethod::InitContainer => false,
                MountMethod::ImageVolume => {
                    if root {
                        s["imageVolume"]["sourcePath"] = json!("/");
                    }
                    true
                }
            };
            if let Some(mut dirs) = dirs {
                // A recipe given in activation.agents needs its directory mounted.
                if s["activation"]["agents"].get("java").is_some() && !dirs.contains(&"java") {
                    dirs.push("java");
                }
                s["agentDirectories"] = json!(dirs);
            }
            if label_key && label {
                s["requiredNodeLabel"] = json!({"key": "odigos.io/agents", "value": "true"});
            }
            s
        },
    )
}

fn request(pod: &Value) -> Value {
    json!({"uid": "1", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE", "object": pod})
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Every mount of `volume` in every container list, but the copy container's own.
fn mounts_of<'a>(
    pod: &'a Value,
    volume: &'a str,
    copy_container: &'a str,
) -> impl Iterator<Item = &'a Value> {
    ["containers", "initContainers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |list| pod["spec"][list].as_array().into_iter().flatten())
        .filter(move |c| c["name"] != copy_container)
        .flat_map(|c| c["volumeMounts"].as_array().into_iter().flatten())
        .filter(move |m| m["name"] == volume)
}

/// Whether the pod already holds what the policy adds for these settings.
fn already_instrumented(pod: &Value, settings: &settings::Settings) -> bool {
    let Ok(names) = select::container_names(pod) else {
        return false;
    };
    let selected = select::instrumented_containers(pod, &names, settings).containers;
    if selected.is_empty() {
        return true;
    }
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    match &settings.method {
        Method::VirtualDevice { resource_name, .. } => selected.iter().all(|&i| {
            let r = &containers[i]["resources"];
            r["limits"][resource_name] == "1" && r["requests"][resource_name] == "1"
        }),
        method => {
            let mounts = method.mounts().expect("a volume method");
            let has_volume = pod["spec"]["volumes"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v["name"] == mounts.volume_name.as_str()));
            let sub_path = |dir: Option<&str>| match method {
                Method::ImageVolume { image, .. } => image.sub_path(dir),
                _ => dir.map(String::from),
            };
            // (where, subPath) of each mount the policy adds.
            let wanted: Vec<(String, Option<String>)> = if mounts.agent_directories.is_empty() {
                vec![(mounts.mount_path.clone(), sub_path(None))]
            } else {
                mounts
                    .agent_directories
                    .iter()
                    .map(|d| (format!("{}/{d}", mounts.mount_path), sub_path(Some(d))))
                    .collect()
            };
            let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(String::from);
            has_volume
                && selected.iter().all(|&i| {
                    wanted.iter().all(|(path, sub_path)| {
                        containers[i]["volumeMounts"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|m| {
                                m["name"] == mounts.volume_name.as_str()
                                    && m["readOnly"] == true
                                    && m["mountPath"].as_str().map(resolve) == Some(resolve(path))
                                    && text(&m["subPath"]) == *sub_path
                                    && text(&m["subPathExpr"]).is_none()
                            })
                    })
                })
        }
    }
}

/// Generated pods holding a mount path with `..`, and a mount with a subPathExpr.
static WITH_DOTDOT: AtomicUsize = AtomicUsize::new(0);
static WITH_SUB_PATH_EXPR: AtomicUsize = AtomicUsize::new(0);
/// Mutated pods whose env activation changed, and the joins (replaced values) among them.
static ACTIVATED: AtomicUsize = AtomicUsize::new(0);
static JOINED: AtomicUsize = AtomicUsize::new(0);
/// Pods left unchanged by a valueFrom on a joined variable; envFrom warnings.
static VALUE_FROM_CONFLICTS: AtomicUsize = AtomicUsize::new(0);
static ENV_FROM_WARNINGS: AtomicUsize = AtomicUsize::new(0);
/// Activated pods whose app entries moved (insertions, renames), and the values checked
/// by the kubelet's resolution.
static MOVED: AtomicUsize = AtomicUsize::new(0);
static RESOLVED: AtomicUsize = AtomicUsize::new(0);

/// Generated pods of each API-server shape (issue 20), over every method: Windows,
/// pod-level resources, restartable sidecars, `hostUsers: false`, host-process, a block
/// device, `null` fields; and pods with pod-level resources that the API server accepts
/// and init-container mutated.
static WINDOWS_PODS: AtomicUsize = AtomicUsize::new(0);
static POD_RESOURCES: AtomicUsize = AtomicUsize::new(0);
static SIDECARS: AtomicUsize = AtomicUsize::new(0);
static HOST_USERS_FALSE: AtomicUsize = AtomicUsize::new(0);
static HOST_PROCESS: AtomicUsize = AtomicUsize::new(0);
static DEVICES: AtomicUsize = AtomicUsize::new(0);
static NULL_FIELDS: AtomicUsize = AtomicUsize::new(0);
static POD_RESOURCES_COPIED: AtomicUsize = AtomicUsize::new(0);

/// Counts the API-server shapes a generated pod has.
fn count_shapes(pod: &Value) {
    let spec = &pod["spec"];
    let inits = spec["initContainers"].as_array().into_iter().flatten();
    let host_process = |c: &Value| c["securityContext"]["windowsOptions"]["hostProcess"] == true;
    for (counter, has) in [
        (&WINDOWS_PODS, spec["os"]["name"] == "windows"),
        (&POD_RESOURCES, spec["resources"].is_object()),
        (
            &SIDECARS,
            inits.clone().any(|c| c["restartPolicy"] == "Always"),
        ),
        (&HOST_USERS_FALSE, spec["hostUsers"] == false),
        (
            &HOST_PROCESS,
            host_process(spec)
                || spec["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(host_process),
        ),
        (&DEVICES, spec["containers"][0]["volumeDevices"].is_array()),
        (&NULL_FIELDS, *pod != without_nulls(pod)),
    ] {
        if has {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The variables the settings' recipes join into.
fn joined_variables(settings: &settings::Settings) -> Vec<String> {
    settings
        .activation
        .iter()
        .flat_map(|a| a.agents.values())
        .flat_map(|recipe| &recipe.env)
        .filter_map(|entry| match entry.entry() {
            EnvEntry::Join { name, .. } => Some(name.clone()),
            _ => None,
        })
        .chain(
            settings
                .activation
                .iter()
                .filter(|a| a.resource_attributes)
                .map(|_| "OTEL_RESOURCE_ATTRIBUTES".to_string()),
        )
        .collect()
}

/// The changes the policy may make to what the pod had in `env`: a joined variable's
/// value (the app's own value still its prefix), a joined `valueFrom` entry renamed
/// `ORIGINAL_<NAME>` with the joined entry right after it, and its own entries inserted
/// among the app's, whose order stays. Returns `mutated` with the app's entries put back,
/// first and in their order, then the policy's; the JSON pointers of the joined values;
/// and the containers whose app entries moved.
fn undo_joins(
    pod: &Value,
    mutated: &Value,
    joined: &[String],
) -> Result<(Value, Vec<String>, Vec<usize>), TestCaseError> {
    let mut restored = mutated.clone();
    let (mut paths, mut moved) = (Vec::new(), Vec::new());
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, container) in containers.iter().enumerate() {
        let Some(before) = container["env"].as_array() else {
            continue;
        };
        let after = mutated["spec"]["containers"][i]["env"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut taken = vec![false; after.len()];
        let mut at = 0;
        for (j, var) in before.iter().enumerate() {
            let name = var["name"].as_str().unwrap_or_default();
            let is_joined = joined.iter().any(|v| v == name);
            let original = format!("ORIGINAL_{name}");
            let found = after.iter().enumerate().skip(at).find(|(_, new)| {
                *new == var
                    || (is_joined
                        && new["name"] == var["name"]
                        && var.get("valueFrom").is_none_or(Value::is_null))
                    || (is_joined
                        && new["name"] == original.as_str()
                        && new.get("valueFrom") == var.get("valueFrom"))
            });
            let Some((p, new)) = found else {
                return Err(TestCaseError::fail(format!(
                    "container {i}: the app's env[{j}] {var} is not kept in order in {after:?}"
                )));
            };
            if p != j {
                moved.push(i);
            }
            taken[p] = true;
            at = p + 1;
            if new == var {
                continue;
            }
            if new["name"] == original.as_str() {
                // The joined entry right after the renamed one refers to it.
                let next = &after[p + 1];
                prop_assert_eq!(&next["name"], &var["name"]);
                prop_assert!(
                    next["value"]
                        .as_str()
                        .is_some_and(|v| v.starts_with(&format!("$({original})"))),
                    "{}",
                    next
                );
                taken[p + 1] = true;
                at = p + 2;
                moved.push(i);
                continue;
            }
            let before_value = var["value"].as_str().unwrap_or_default();
            let after_value = new["value"].as_str().unwrap_or_default();
            // The app's own value stays first.
            prop_assert!(
                after_value.starts_with(before_value),
                "{name}: {before_value:?} is not a prefix of {after_value:?}"
            );
            // A value that was there is replaced; a missing one is added.
            if var["value"].is_string() {
                paths.push(format!("/spec/containers/{i}/env/{p}/value"));
            }
        }
        let mut env: Vec<Value> = before.clone();
        env.extend(
            after
                .iter()
                .zip(&taken)
                .filter(|(_, taken)| !**taken)
                .map(|(v, _)| v.clone()),
        );
        restored["spec"]["containers"][i]["env"] = Value::Array(env);
    }
    moved.dedup();
    Ok((restored, paths, moved))
}

/// The entries the settings may write, by name, as the pod gets them: every recipe's and
/// `activation.env`'s, and the resource attributes' downward-API entries.
fn our_entries(settings: &settings::Settings) -> HashMap<String, Value> {
    let mut ours: HashMap<String, Value> = settings
        .activation
        .iter()
        .flat_map(|a| a.agents.values().flat_map(|r| &r.env).chain(&a.env))
        // A joined variable is the app's too: no single entry is meant.
        .filter(|e| !matches!(e.entry(), EnvEntry::Join { .. }))
        .map(|e| (e.name().to_string(), as_json(e)))
        .collect();
    for (name, path) in [
        ("OTEL_RESOURCE_ATTRIBUTES_NODE_NAME", "spec.nodeName"),
        ("OTEL_RESOURCE_ATTRIBUTES_POD_NAME", "metadata.name"),
        ("OTEL_RESOURCE_ATTRIBUTES_POD_UID", "metadata.uid"),
    ] {
        ours.insert(
            name.into(),
            json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}),
        );
    }
    ours
}

/// Resolves the container's env before and after as the kubelet does and checks that
/// every value the policy wrote resolves as it meant it: each reference of its part to an
/// entry of its own finds exactly that entry before it, the app's part and its part
/// resolve as they would apart (no `$` construct across the join), and each app entry
/// that refers to nothing the policy changed resolves as before. Returns the values checked.
fn resolves_as_meant(
    before: &Value,
    after: &Value,
    ours: &HashMap<String, Value>,
) -> Result<usize, TestCaseError> {
    let app: Vec<Value> = before["env"].as_array().cloned().unwrap_or_default();
    let env: Vec<Value> = after["env"].as_array().cloned().unwrap_or_default();
    let app_resolved = kubelet::resolve(before);
    let changed: Vec<&str> = env
        .iter()
        .filter(|v| !app.contains(v))
        .filter_map(|v| v["name"].as_str())
        .collect();
    let mut defined: HashMap<String, String> = HashMap::new();
    let mut definer: HashMap<String, usize> = HashMap::new();
    let mut checked = 0;
    for (k, var) in env.iter().enumerate() {
        let name = var["name"].as_str().unwrap_or_default().to_string();
        let value = var["value"].as_str().unwrap_or_default();
        let source = var.get("valueFrom").filter(|v| !v.is_null());
        let resolved = match source {
            Some(source) if value.is_empty() => kubelet::source_value(source),
            _ => kubelet::expand(value, &defined),
        };
        if !app.contains(var) && !value.is_empty() {
            let app_part = app
                .iter()
                .rev()
                .filter(|a| a["name"] == name.as_str())
                .find_map(|a| a["value"].as_str())
                .filter(|p| !p.is_empty() && value.starts_with(p))
                .unwrap_or_default();
            let our_part = &value[app_part.len()..];
            for x in kubelet::references(our_part) {
                let meant = ours.get(&x);
                if meant.is_none() && !x.starts_with("ORIGINAL_") {
                    continue;
                }
                let d = definer.get(&x).copied();
                prop_assert!(
                    d.is_some(),
                    "{name}: $({x}) is not defined before it: {env:?}"
                );
                let d = d.unwrap();
                if let Some(meant) = meant {
                    prop_assert_eq!(
                        &env[d],
                        meant,
                        "{}: $({}) resolves to another entry",
                        name,
                        x
                    );
                }
            }
            prop_assert_eq!(
                &resolved,
                &format!(
                    "{}{}",
                    kubelet::expand(app_part, &defined),
                    kubelet::expand(our_part, &defined)
                ),
                "{}: the join changed how a part reads",
                name
            );
            checked += 1;
        } else if app.contains(var) && source.is_none() {
            let refers_to_changed = kubelet::references(value)
                .iter()
                .any(|x| changed.contains(&x.as_str()));
            let before_value = kubelet::value_of(&app_resolved, &name);
            // A name the app defines twice resolves by the last one: compare single ones.
            let once = app.iter().filter(|a| a["name"] == name.as_str()).count() == 1;
            if !refers_to_changed && once {
                prop_assert_eq!(
                    Some(resolved.as_str()),
                    before_value,
                    "the app's {} resolves otherwise",
                    name
                );
                checked += 1;
            }
        }
        defined.insert(name.clone(), resolved);
        definer.insert(name, k);
    }
    Ok(checked)
}

/// Counts the pods whose mounts hold `needle`, so the run shows it reached those shapes.
fn count_if(pod: &Value, needle: &str, counter: &AtomicUsize) {
    let mounts = ["containers", "initContainers", "ephemeralContainers"]
        .into_iter()
        .flat_map(|list| pod["spec"][list].as_array().into_iter().flatten())
        .flat_map(|c| c["volumeMounts"].as_array().into_iter().flatten());
    if mounts.map(Value::to_string).any(|m| m.contains(needle)) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The properties for one generated pod.
fn check(pod: &Value, settings_json: &Value) -> Result<(), TestCaseError> {
    count_if(pod, "/../", &WITH_DOTDOT);
    count_if(pod, "subPathExpr", &WITH_SUB_PATH_EXPR);
    count_shapes(pod);
    let settings = settings::parse(settings_json.clone()).expect("generated settings are valid");
    let response = validate(&payload(&request(pod), settings_json));
    prop_assert!(response.accepted, "{:?}", response.message);
    for warning in response.warnings.iter().flatten() {
        if warning.contains("from an optional valueFrom, which agent-mount cannot read") {
            VALUE_FROM_CONFLICTS.fetch_add(1, Ordering::Relaxed);
        }
        if warning.contains("have envFrom, and agent-mount set") {
            ENV_FROM_WARNINGS.fetch_add(1, Ordering::Relaxed);
        }
    }
    // A Windows pod is left alone under every method (issue 20).
    if pod["spec"]["os"]["name"] == "windows" {
        prop_assert!(
            response.mutated_object.is_none(),
            "a Windows pod was mutated"
        );
    }
    let Some(mutated) = response.mutated_object else {
        prop_assert!(
            response.warnings.is_some() || already_instrumented(pod, &settings),
            "left unchanged without a warning, yet not instrumented: {}",
            response.audit_annotations.unwrap_or_default()["mutation"]
        );
        return Ok(());
    };
    // Nothing removed: a JSON patch of adds only, except the init container inserted first.
    let inserted_first = matches!(settings.method, Method::InitContainer { .. })
        && pod["spec"]["initContainers"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        && mutated["spec"]["initContainers"].as_array().map(Vec::len)
            > pod["spec"]["initContainers"].as_array().map(Vec::len);
    let shifted: &[&str] = if inserted_first {
        &["/spec/initContainers"]
    } else {
        &[]
    };
    let (restored, joins, moved) = undo_joins(pod, &mutated, &joined_variables(&settings))?;
    // A `null` field is absent: the policy may fill it.
    let read = without_nulls(pod);
    prop_assert_eq!(lost_from(&read, &restored, "", shifted), None);
    if !moved.is_empty() {
        MOVED.fetch_add(1, Ordering::Relaxed);
    }
    let ours = our_entries(&settings);
    let containers = read["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, before) in containers.iter().enumerate() {
        let checked = resolves_as_meant(before, &mutated["spec"]["containers"][i], &ours)?;
        RESOLVED.fetch_add(checked, Ordering::Relaxed);
    }
    let env_of = |p: &Value| {
        p["spec"]["containers"]
            .as_array()
            .map(|cs| cs.iter().map(|c| c["env"].clone()).collect::<Vec<_>>())
    };
    if env_of(pod) != env_of(&mutated) {
        ACTIVATED.fetch_add(1, Ordering::Relaxed);
    }
    JOINED.fetch_add(joins.len(), Ordering::Relaxed);
    if !inserted_first {
        // Adds only, but one `replace` per joined value.
        let patch = json_patch::diff(&read, &mutated);
        // Where the policy inserted entries, the index-wise diff shows the later ones replaced.
        let others: Vec<(String, String)> = ops(&patch)
            .into_iter()
            .filter(|(op, _)| op != "add")
            .filter(|(_, path)| {
                !moved
                    .iter()
                    .any(|i| path.starts_with(&format!("/spec/containers/{i}/env")))
            })
            .collect();
        let expected: Vec<(String, String)> = joins
            .iter()
            .filter(|p| {
                !moved
                    .iter()
                    .any(|i| p.starts_with(&format!("/spec/containers/{i}/env")))
            })
            .map(|p| ("replace".to_string(), p.clone()))
            .collect();
        prop_assert_eq!(others, expected);
    }
    // Valid in, valid out; and still a Pod.
    if pod_rules::violations(pod).is_empty() {
        prop_assert_eq!(pod_rules::violations(&mutated), Vec::<String>::new());
        if pod["spec"]["resources"].is_object()
            && matches!(settings.method, Method::InitContainer { .. })
        {
            POD_RESOURCES_COPIED.fetch_add(1, Ordering::Relaxed);
        }
    }
    // No mount added at a place the container already mounts, however the path is spelt.
    if mounts_at_one_place(pod).is_empty() {
        prop_assert_eq!(mounts_at_one_place(&mutated), Vec::<String>::new());
    }
    prop_assert!(serde_json::from_value::<Pod>(mutated.clone()).is_ok());
    // Nothing of ours writable: when the policy created the volume, every mount of it is read-only.
    if let Some(mounts) = settings.method.mounts() {
        let had_volume = pod["spec"]["volumes"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v["name"] == mounts.volume_name.as_str()));
        if !had_volume {
            let copy_name = match &settings.method {
                Method::InitContainer { copy, .. } => copy.name.as_str(),
                _ => "",
            };
            for mount in mounts_of(&mutated, &mounts.volume_name, copy_name) {
                prop_assert_eq!(&mount["readOnly"], &json!(true), "{}", mount);
            }
        }
    }
    // Idempotent.
    let again = validate(&payload(&request(&mutated), settings_json));
    prop_assert!(again.accepted);
    prop_assert!(again.mutated_object.is_none(), "second run changed the pod");
    prop_assert_eq!(again.warnings, response.warnings);
    Ok(())
}

#[test]
fn generated_pods_under_every_method() {
    for method in MountMethod::ALL {
        runner()
            .run(
                &(pod(), owner_references(), settings(method)),
                |(mut pod, owner, settings)| {
                    if let Some((owners, hash)) = owner {
                        pod["metadata"]["ownerReferences"] = owners;
                        pod["metadata"]["generateName"] = json!("checkout-7d9f8b-");
                        if let Some(hash) = hash {
                            pod["metadata"]["labels"]["pod-template-hash"] = json!(hash);
                        }
                    }
                    check(&pod, &settings)
                },
            )
            .unwrap_or_else(|e| panic!("{}: {e}", method.as_str()));
    }
    let (dotdot, expr) = (
        WITH_DOTDOT.load(Ordering::Relaxed),
        WITH_SUB_PATH_EXPR.load(Ordering::Relaxed),
    );
    eprintln!(
        "{} pods per method; with a `..` mount path: {dotdot}, with a subPathExpr: {expr}",
        CASES
    );
    // The generators must reach both exact-shape defects (DESIGN §2 "Mutation rules").
    assert!(
        dotdot > 0 && expr > 0,
        "dotdot {dotdot}, subPathExpr {expr}"
    );
    let activation = [
        &ACTIVATED,
        &JOINED,
        &VALUE_FROM_CONFLICTS,
        &ENV_FROM_WARNINGS,
        &MOVED,
        &RESOLVED,
    ]
    .map(|c| c.load(Ordering::Relaxed));
    eprintln!(
        "activation: {} pods activated, {} joined values, {} valueFrom conflicts, {} envFrom warnings, {} with entries inserted or renamed, {} values resolved as the kubelet does",
        activation[0], activation[1], activation[2], activation[3], activation[4], activation[5]
    );
    // The generators must reach every activation rule.
    assert!(activation.iter().all(|&n| n > 0), "{activation:?}");
    let shapes = [
        &WINDOWS_PODS,
        &POD_RESOURCES,
        &SIDECARS,
        &HOST_USERS_FALSE,
        &HOST_PROCESS,
        &DEVICES,
        &NULL_FIELDS,
        &POD_RESOURCES_COPIED,
    ]
    .map(|c| c.load(Ordering::Relaxed));
    let pods = CASES as usize * MountMethod::ALL.len();
    eprintln!(
        "API-server shapes in {pods} pods: {} Windows, {} pod-level resources, {} restartable sidecars, {} hostUsers: false, {} host-process, {} block devices, {} with null fields; {} valid pods with pod-level resources mutated under init-container",
        shapes[0], shapes[1], shapes[2], shapes[3], shapes[4], shapes[5], shapes[6], shapes[7]
    );
    // Issue 20: Windows pods and pod-level resources in at least 5% of pods each, every
    // other shape reached.
    assert!(
        shapes[0] * 20 >= pods && shapes[1] * 20 >= pods,
        "{shapes:?}"
    );
    assert!(shapes.iter().all(|&n| n > 0), "{shapes:?}");
}

/// Whether DESIGN §2 says an object can be read as a pod: a JSON object whose
/// `spec.containers` is an array of objects, each with a string `name`.
fn readable_as_pod(object: &Value) -> bool {
    object.is_object()
        && object["spec"]["containers"]
            .as_array()
            .is_some_and(|containers| {
                containers
                    .iter()
                    .all(|c| c.is_object() && c["name"].is_string())
            })
}

#[test]
fn arbitrary_json_is_rejected_exactly_when_it_is_not_a_pod() {
    let (accepted, rejected) = (AtomicUsize::new(0), AtomicUsize::new(0));
    for method in MountMethod::ALL {
        runner()
            .run(
                &(arbitrary_json(), settings(method)),
                |(object, settings)| {
                    let response = validate(&payload(&request(&object), &settings));
                    if readable_as_pod(&object) {
                        prop_assert!(response.accepted, "{:?}", response.message);
                        prop_assert_eq!(response.code, None);
                        accepted.fetch_add(1, Ordering::Relaxed);
                    } else {
                        prop_assert!(!response.accepted, "an unreadable pod was accepted");
                        prop_assert_eq!(response.code, Some(400));
                        rejected.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                },
            )
            .unwrap_or_else(|e| panic!("{}: {e}", method.as_str()));
    }
    let (accepted, rejected) = (accepted.into_inner(), rejected.into_inner());
    eprintln!("arbitrary JSON: {accepted} accepted, {rejected} rejected with 400");
    // Both sides of the property are exercised, or it proves nothing.
    let side = CASES as usize * MountMethod::ALL.len() / 10;
    assert!(
        accepted > side && rejected > side,
        "{accepted} accepted, {rejected} rejected"
    );
}

/// Any JSON value, mostly pod-like so the mutation code is reached, and sometimes not a pod:
/// the whole object, `spec.containers`, a container or its name replaced by any value.
fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z/]{0,8}".prop_map(Value::String),
    ];
    let tree = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("name".to_string()),
                    Just("resources".to_string()),
                    Just("volumeMounts".to_string()),
                    Just("limits".to_string()),
                    Just("affinity".to_string()),
                    "[a-z]{1,4}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let name = prop_oneof![
        6 => "[a-z]{1,3}".prop_map(Value::String),
        1 => tree.clone(),
    ];
    let pod = (tree.clone(), tree.clone(), name).prop_map(|(spec_extra, container_extra, name)| {
        json!({"metadata": {"annotations": {"agent-mount.io/containers": spec_extra.clone()}},
               "spec": {"containers": [{"name": name, "resources": container_extra.clone(), "volumeMounts": container_extra}],
                        "volumes": spec_extra.clone(), "affinity": spec_extra, "initContainers": []}})
    });
    let broken = (pod.clone(), tree.clone(), 0..3_u8).prop_map(|(mut pod, junk, part)| {
        match part {
            0 => pod["spec"]["containers"] = junk,
            1 => pod["spec"]["containers"][0] = junk,
            _ => return junk,
        }
        pod
    });
    prop_oneof![3 => pod, 2 => broken]
}
