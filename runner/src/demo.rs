//! The demo: the bundled example pod through the built policy, under every mount method.

use agent_mount_common::{DEFAULT_HOST_PATH, DEFAULT_RESOURCE_NAME, MountMethod};
use runner::build;
use runner::host::PolicyHost;
use runner::input;
use runner::view::{SeenMount, container_views, requests_resource};
use serde_json::Value;
use std::time::Instant;

/// The example pod, relative to the workspace root.
const EXAMPLE_POD: &str = "examples/typical-pod.yaml";

/// Runs the demo.
pub fn run() -> Result<(), String> {
    let root = build::workspace_root();
    let started = Instant::now();
    println!("Building the policy (cargo build --profile policy --target wasm32-wasip1) ...");
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
    Ok(())
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
