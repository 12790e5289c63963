//! The demo: the bundled example pod through the built policy, under every mount method.

use agent_mount_common::{DEFAULT_HOST_PATH, DEFAULT_RESOURCE_NAME, MountMethod};
use runner::build;
use runner::env::{Cluster, effective_env};
use runner::host::PolicyHost;
use runner::input;
use runner::view::{SeenMount, container_views, requests_resource};
use serde_json::{Value, json};
use std::time::Instant;

/// The example pod, relative to the workspace root.
const EXAMPLE_POD: &str = "examples/typical-pod.yaml";
/// The example pod that asks for activation.
const ACTIVATED_POD: &str = "examples/activated-pod.yaml";
/// The node IP the demo's kubelet resolves `status.hostIP` to.
const DEMO_HOST_IP: &str = "10.0.0.7";
/// The pod fields the demo's kubelet gives the downward API: the pod's name (from
/// its `generateName`), uid and node.
const DEMO_POD_FIELDS: [(&str, &str); 3] = [
    ("metadata.name", "shop-7d9c8b6f5-x2x4z"),
    ("metadata.uid", "0b9d6a44-1c4e-4c43-9b1e-3f8f8f7d2a10"),
    ("spec.nodeName", "node-1"),
];
/// The variables that name the service and its Kubernetes resource.
const NAMING: [&str; 2] = ["OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"];

/// Runs the demo.
pub fn run() -> Result<(), String> {
    let root = build::workspace_root();
    let started = Instant::now();
    println!(
        "Building the policy (cargo rustc --profile policy --target wasm32-wasip1 --crate-type cdylib) ..."
    );
    let wasm = build::ensure_built()?;
    let size = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
    let host = PolicyHost::load(&wasm)?;
    println!(
        "Loaded {} ({} KB) in {:.1} s; protocol version {}",
        wasm.strip_prefix(&root).unwrap_or(&wasm).display(),
        size / 1000,
        started.elapsed().as_secs_f64(),
        host.protocol_version()?
    );
    let request = input::read_request(&root.join(EXAMPLE_POD))?;
    println!(
        "\nExample pod: {EXAMPLE_POD} (app container, istio-proxy sidecar, worker, istio-init)"
    );
    for method in MountMethod::ALL {
        let manifest = format!("{}/cluster-admission-policy.yaml", input::overlay(method));
        let settings = input::overlay_settings(method)?;
        show(&host, method, &manifest, &request, &settings)?;
    }
    show_activation(&host, &root)?;
    show_agents(&root)
}

/// The agents the default agents image carries: their pinned versions in agents/.
fn show_agents(root: &std::path::Path) -> Result<(), String> {
    let read =
        |path: &str| std::fs::read_to_string(root.join(path)).map_err(|e| format!("{path}: {e}"));
    let json = |path: &str| -> Result<Value, String> {
        serde_json::from_str(&read(path)?).map_err(|e| format!("{path}: {e}"))
    };
    let image = input::overlay_settings(MountMethod::ImageVolume)?
        .pointer("/imageVolume/reference")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    let java = json("agents/java.json")?;
    let distro = read("agents/python/requirements.txt")?
        .lines()
        .find_map(|line| line.strip_prefix("opentelemetry-distro=="))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("?")
        .to_string();
    let node = json("agents/nodejs-community/package-lock.json")?;
    let node_version = node
        .pointer("/packages/node_modules~1@opentelemetry~1auto-instrumentations-node/version")
        .and_then(Value::as_str)
        .unwrap_or("?");
    println!("\n==================== the agents ====================");
    println!(
        "{image} (the init-container and image-volume overlays' image) carries, at /instrumentations:"
    );
    println!(
        "    java/              {} {}  (Maven Central, SHA-256 pinned in agents/java.json; Java 8+)",
        java.get("name").and_then(Value::as_str).unwrap_or("?"),
        java.get("version").and_then(Value::as_str).unwrap_or("?")
    );
    println!(
        "    python/            opentelemetry-distro {distro}  (PyPI, agents/python/requirements.txt; Python 3.9-3.13)"
    );
    println!(
        "    nodejs-community/  @opentelemetry/auto-instrumentations-node {node_version}  (npm, agents/nodejs-community/package-lock.json; Node.js 18.19+, 20.6+, 22)"
    );
    println!("    manifest.json      each agent's name, version, source and SHA-256");
    Ok(())
}

/// Activation: the activated example pod's env before and after, and as the kubelet resolves it.
fn show_activation(host: &PolicyHost, root: &std::path::Path) -> Result<(), String> {
    let request = input::read_request(&root.join(ACTIVATED_POD))?;
    let mut settings = input::overlay_settings(MountMethod::VirtualDevice)?;
    let activation = json!({"env": [
        {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://$(HOST_IP):4317"}
    ]});
    let Some(overlay) = settings.as_object_mut() else {
        return Err("the virtual-device overlay's settings are not an object".to_string());
    };
    overlay.insert("activation".to_string(), activation.clone());
    println!("\n==================== activation ====================");
    println!(
        "Pod {ACTIVATED_POD} (a pod of Deployment shop), annotation agent-mount.io/agents: checkout=java, worker=python"
    );
    println!("Settings: the virtual-device settings plus");
    for line in serde_yaml::to_string(&json!({ "activation": activation }))
        .map_err(|e| e.to_string())?
        .lines()
    {
        println!("    {line}");
    }
    let evaluation = host.validate(&request, &settings)?;
    let response = &evaluation.response;
    for warning in response.warnings.iter().flatten() {
        println!("warning: {warning}");
    }
    let before = request.get("object").unwrap_or(&Value::Null);
    let after = response.mutated_object.as_ref().unwrap_or(before);
    let mut fields: std::collections::BTreeMap<String, String> = DEMO_POD_FIELDS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    fields.insert("status.hostIP".to_string(), DEMO_HOST_IP.to_string());
    let cluster = Cluster {
        fields,
        ..Cluster::default()
    };
    let containers = |pod: &Value| {
        pod.pointer("/spec/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for (old, new) in containers(before).iter().zip(containers(after).iter()) {
        println!("    {}:", new["name"].as_str().unwrap_or("?"));
        println!("        env before: {}", env_lines(old));
        println!("        env after:  {}", env_lines(new));
        let effective = effective_env(new, &cluster)?;
        let shown: Vec<String> = effective.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "        the process sees (node IP {DEMO_HOST_IP}): {}",
            shown.join("  ")
        );
        // The service name and resource attributes: before, after, and as the process sees them.
        if old["env"] == new["env"] {
            continue;
        }
        let before_env = effective_env(old, &cluster)?;
        for name in NAMING {
            let unset = || "(unset)".to_string();
            println!(
                "        {name}: before {}; after {}; the process sees {}",
                before_env.get(name).cloned().unwrap_or_else(unset),
                env_value(new, name).unwrap_or_else(unset),
                effective.get(name).cloned().unwrap_or_else(unset)
            );
        }
    }
    Ok(())
}

/// The value the container's last `name` entry is written with.
fn env_value(container: &Value, name: &str) -> Option<String> {
    container["env"]
        .as_array()?
        .iter()
        .rev()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
        .map(str::to_string)
}

/// A container's env entries on one line, `NAME=value` or `NAME<-source`.
fn env_lines(container: &Value) -> String {
    let entries: Vec<String> = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let name = e["name"].as_str().unwrap_or("?");
            match e.get("valueFrom") {
                Some(source) => format!("{name}<-{source}"),
                None => format!("{name}={}", e["value"].as_str().unwrap_or_default()),
            }
        })
        .collect();
    if entries.is_empty() {
        "(none)".into()
    } else {
        entries.join("  ")
    }
}

fn show(
    host: &PolicyHost,
    method: MountMethod,
    manifest: &str,
    request: &Value,
    settings: &Value,
) -> Result<(), String> {
    println!(
        "\n==================== mountMethod: {} ====================",
        method.as_str()
    );
    println!("Settings (spec.settings of {manifest}):");
    for line in serde_yaml::to_string(settings)
        .map_err(|e| e.to_string())?
        .lines()
    {
        println!("    {line}");
    }
    let verdict = host.validate_settings(settings)?;
    println!("validate_settings: valid = {}", verdict.valid);
    let evaluation = host.validate(request, settings)?;
    let response = &evaluation.response;
    println!(
        "validate: accepted = {}, {} patch operation(s):",
        response.accepted,
        evaluation.patch.0.len()
    );
    let ops = serde_json::to_value(&evaluation.patch).map_err(|e| e.to_string())?;
    for op in ops.as_array().into_iter().flatten() {
        println!(
            "    {} {}",
            op["op"].as_str().unwrap_or("?"),
            op["path"].as_str().unwrap_or("?")
        );
        let value =
            serde_json::to_string(op.get("value").unwrap_or(&Value::Null)).unwrap_or_default();
        println!("        {}", shorten(&value, 150));
    }
    for warning in response.warnings.iter().flatten() {
        println!("warning: {warning}");
    }
    for (key, decision) in response.audit_annotations.iter().flatten() {
        println!("audit annotation {key}: {decision}");
    }
    let Some(mutated) = &response.mutated_object else {
        println!("(pod unchanged)");
        return Ok(());
    };
    let resource = settings
        .get("resourceName")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_RESOURCE_NAME)
        .to_string();
    // The device plugin's answer to Allocate with its default flags: host path, read-only.
    let mut device = |container: &Value| {
        if method == MountMethod::VirtualDevice && requests_resource(container, &resource) {
            vec![SeenMount {
                container_path: DEFAULT_HOST_PATH.into(),
                source: format!("host:{DEFAULT_HOST_PATH} (device plugin Allocate)"),
                read_only: true,
            }]
        } else {
            Vec::new()
        }
    };
    println!("What each container will see:");
    for view in container_views(mutated, &mut device) {
        let kind = if view.list == "containers" {
            ""
        } else {
            " (init)"
        };
        println!("    {}{kind}:", view.name);
        if view.mounts.is_empty() {
            println!("        (no mounts)");
        }
        for mount in &view.mounts {
            let mode = if mount.read_only {
                "read-only"
            } else {
                "read-write"
            };
            println!(
                "        {:<40} <- {} [{mode}]",
                mount.container_path, mount.source
            );
        }
    }
    Ok(())
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{} ...", &text[..cut]),
        None => text.to_string(),
    }
}
