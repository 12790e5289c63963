//! Integration tests: the built `.wasm` in the runner's waPC host, as the policy server runs it.
// Test and bench code: helpers fail loudly too (clippy.toml allows this in #[test] functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

// The policy crate's test helpers, shared rather than written twice.
#[path = "../../tests/support/mod.rs"]
mod support;

use agent_mount_common::MountMethod;
use rstest::rstest;
use runner::host::{Evaluation, with_built_policy as with_host};
use runner::input;
use serde_json::{Value, json};
use support::{fixture, payload};

/// The patch ops as "op path" lines, from the policy tests' own helper.
fn ops(evaluation: &Evaluation) -> Vec<String> {
    support::ops(&evaluation.patch)
        .into_iter()
        .map(|(op, path)| format!("{op} {path}"))
        .collect()
}

/// Each method's settings: those of its ClusterAdmissionPolicy under deploy/.
fn settings(method: MountMethod) -> Value {
    input::overlay_settings(method).unwrap()
}

#[test]
fn protocol_version_is_v1() {
    assert_eq!(with_host(|h| h.protocol_version()).unwrap(), "v1");
}

#[test]
fn settings_errors_come_back_as_responses_not_traps() {
    let cases = [
        (json!({}), true, ""),
        (
            json!({"mountMethod": "VirtualDevice"}),
            false,
            "mountMethod: unknown value \"VirtualDevice\", expected one of: k8s-virtual-device, k8s-host-path, k8s-init-container, k8s-csi-driver, k8s-image-volume",
        ),
        (
            json!({"mountMethod": "k8s-host-path", "hostPath": "relative"}),
            false,
            "hostPath: invalid value \"relative\"",
        ),
        (
            json!({"hostPath": "/var/odigos"}),
            false,
            "hostPath: not allowed with mountMethod \"k8s-virtual-device\"",
        ),
        (
            json!({"mountMethod": 3}),
            false,
            "mountMethod: invalid type: integer `3`, expected a string",
        ),
        (
            json!({"mountMethod": "k8s-init-container"}),
            false,
            "initContainer.image: required",
        ),
        (
            json!({"mountMethod": "k8s-image-volume"}),
            false,
            "imageVolume.reference: required",
        ),
        (
            json!({"mountMethod": "k8s-csi-driver", "csiDriver": "Bad_Driver"}),
            false,
            "csiDriver: invalid value \"Bad_Driver\"",
        ),
        (json!({"typo": 1}), false, "typo: unknown field `typo`"),
    ];
    for (settings, valid, message) in cases {
        let response = with_host(|h| h.validate_settings(&settings)).unwrap();
        assert_eq!(response.valid, valid, "{settings}: {:?}", response.message);
        assert!(
            response.message.unwrap_or_default().starts_with(message),
            "{settings}"
        );
    }
}

#[test]
fn every_method_mutates_the_typical_pod_and_is_idempotent() {
    let request = fixture("pod_typical.json");
    for method in MountMethod::ALL {
        let settings = settings(method);
        let first = with_host(|h| h.validate(&request, &settings)).unwrap();
        assert!(first.response.accepted, "{method:?}");
        assert!(!first.patch.0.is_empty(), "{method:?}");
        if method != MountMethod::InitContainer {
            assert!(
                ops(&first).iter().all(|op| op.starts_with("add ")),
                "{method:?}: {:?}",
                ops(&first)
            );
        }
        let mut again = request.clone();
        again["object"] = first.response.mutated_object.unwrap();
        let second = with_host(|h| h.validate(&again, &settings)).unwrap();
        assert!(
            second.response.mutated_object.is_none(),
            "{method:?}: {:?}",
            ops(&second)
        );
    }
}

#[test]
fn virtual_device_patch_is_exact() {
    let evaluation = with_host(|h| h.validate(&fixture("pod_typical.json"), &json!({}))).unwrap();
    assert_eq!(
        ops(&evaluation),
        [
            "add /spec/containers/0/resources/limits/instrumentation.odigos.io~1generic",
            "add /spec/containers/0/resources/requests/instrumentation.odigos.io~1generic",
            "add /spec/containers/2/resources/limits",
            "add /spec/containers/2/resources/requests/instrumentation.odigos.io~1generic",
        ]
    );
    assert_eq!(evaluation.patch.0.len(), 4);
}

#[test]
fn future_fields_survive_the_wasm_round_trip() {
    let request = fixture("pod_future_fields.json");
    // The init container goes first, which shifts the others in an index-wise diff.
    for method in MountMethod::ALL
        .into_iter()
        .filter(|m| *m != MountMethod::InitContainer)
    {
        let evaluation = with_host(|h| h.validate(&request, &settings(method))).unwrap();
        let ops = ops(&evaluation);
        assert!(!ops.is_empty());
        assert!(
            ops.iter().all(|op| op.starts_with("add ")),
            "{method:?}: {ops:?}"
        );
        assert!(!ops.iter().any(|op| op.contains("future")), "{ops:?}");
    }
}

#[test]
fn wasm_and_native_answer_the_same() {
    let fixtures = [
        "pod_typical.json",
        "pod_small.json",
        "pod_future_fields.json",
        "pod_node_affinity.json",
        "pod_conflict_resource.json",
        "pod_conflict_volume.json",
        "pod_conflict_mount.json",
        "pod_conflict_init_container.json",
        "pod_conflict_writable_mount.json",
        "pod_update.json",
        "deployment_create.json",
        "pod_unreadable.json",
        "pod_annotation_unknown_container.json",
        "pod_windows.json",
        "pod_level_resources.json",
        "pod_null_fields.json",
    ];
    for name in fixtures {
        for method in MountMethod::ALL {
            let payload = payload(&fixture(name), &settings(method));
            let wasm: Value =
                serde_json::from_slice(&with_host(|h| h.call("validate", &payload)).unwrap())
                    .unwrap();
            let native = serde_json::to_value(agent_mount::response::validate(&payload)).unwrap();
            assert_eq!(wasm, native, "{name} under {method:?}");
        }
    }
}

#[test]
fn conflicts_and_bad_pods_through_wasm() {
    let conflict =
        with_host(|h| h.validate(&fixture("pod_conflict_resource.json"), &json!({}))).unwrap();
    assert!(conflict.response.accepted);
    assert!(conflict.patch.0.is_empty());
    assert!(conflict.response.warnings.unwrap()[0].contains("pod left unchanged"));
    let bad = with_host(|h| h.validate(&fixture("pod_unreadable.json"), &json!({}))).unwrap();
    assert!(!bad.response.accepted);
    assert_eq!(bad.response.code, Some(400));
}

#[test]
fn garbage_payloads_never_trap() {
    for payload in [&b""[..], b"{", b"[]", b"{\"request\": 5}", b"\xff\xfe"] {
        let answer = with_host(|h| h.call("validate", payload)).unwrap();
        let response: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(response["accepted"], false, "{payload:?}");
        assert_eq!(response["code"], 400);
        let answer = with_host(|h| h.call("validate_settings", payload)).unwrap();
        let response: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(response["valid"], false, "{payload:?}");
    }
}

/// Every activation fixture: one AdmissionRequest per rule.
fn activation_fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(support::workspace_root().join("test_data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("pod_activation_"))
        .collect();
    names.sort();
    names
}

/// `method`'s overlay settings with activation on (service name and resource attributes
/// by default) and the exporter in `activation.env`.
fn activated(method: MountMethod) -> Value {
    let mut settings = settings(method);
    settings["activation"] = json!({"env": [
        {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://$(HOST_IP):4317"}
    ]});
    settings
}

/// The app's own entries, in order, are all in `after`, in that order, each with its
/// value or (a join) starting with it, or renamed `ORIGINAL_<NAME>` (a `valueFrom` join).
fn app_entries_kept(before: &Value, after: &Value) -> bool {
    let after = after.as_array().cloned().unwrap_or_default();
    let mut at = 0;
    before.as_array().into_iter().flatten().all(|var| {
        let name = var["name"].as_str().unwrap();
        let kept = |new: &Value| {
            let same_name = new["name"] == var["name"]
                || new["name"].as_str() == Some(&format!("ORIGINAL_{name}"));
            let value_kept = match (var["value"].as_str(), new["value"].as_str()) {
                (Some(old), Some(new)) => new.starts_with(old),
                (None, _) => {
                    new.get("valueFrom") == var.get("valueFrom") || new.get("valueFrom").is_none()
                }
                (Some(_), None) => false,
            };
            same_name && value_kept
        };
        match after.iter().skip(at).position(kept) {
            Some(found) => {
                at += found + 1;
                true
            }
            None => false,
        }
    })
}

#[test]
fn activation_under_every_method_keeps_the_apps_entries() {
    let mut mutated_pods = 0;
    for name in activation_fixtures() {
        let request = fixture(&name);
        for method in MountMethod::ALL {
            let settings = activated(method);
            let first = with_host(|h| h.validate(&request, &settings)).unwrap();
            assert!(first.response.accepted, "{name} under {method:?}");
            // The module answers as the native build does, and leaves its own output alone.
            let payload = payload(&request, &settings);
            let wasm: Value =
                serde_json::from_slice(&with_host(|h| h.call("validate", &payload)).unwrap())
                    .unwrap();
            let native = serde_json::to_value(agent_mount::response::validate(&payload)).unwrap();
            assert_eq!(wasm, native, "{name} under {method:?}");
            let Some(mutated) = first.response.mutated_object else {
                continue;
            };
            mutated_pods += 1;
            let containers = request["object"]["spec"]["containers"].as_array().unwrap();
            for (i, before) in containers.iter().enumerate() {
                let after = &mutated["spec"]["containers"][i]["env"];
                assert!(
                    app_entries_kept(&before["env"], after),
                    "{name} under {method:?}: container {i}: {after}"
                );
            }
            let mut again = request.clone();
            again["object"] = mutated;
            let second = with_host(|h| h.validate(&again, &settings)).unwrap();
            assert!(second.patch.0.is_empty(), "{name} under {method:?}");
        }
    }
    assert!(
        mutated_pods >= 12 * MountMethod::ALL.len(),
        "{mutated_pods}"
    );
}

#[rstest]
#[case::activation("settings_activation_invalid.json")]
#[case::shapes("settings_shapes_invalid.json")]
fn activation_settings_errors_through_wasm(#[case] file: &str) {
    let path = support::workspace_root().join("test_data").join(file);
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for case in cases {
        let response = with_host(|h| h.validate_settings(&case["settings"])).unwrap();
        assert!(!response.valid, "{}", case["case"]);
        let message = response.message.unwrap_or_default();
        let error = case["error"].as_str().unwrap();
        assert!(message.starts_with(error), "{}: {message:?}", case["case"]);
    }
}

/// Issue 20 and the pod side of issue 21's `null` rule, through the module, under every
/// method's overlay settings, with and without activation: a Windows pod is left unchanged
/// with a warning; pod-level resources cover the copy container; `null` fields are absent.
#[test]
fn api_server_rules_through_wasm() {
    for method in MountMethod::ALL {
        for settings in [settings(method), activated(method)] {
            let windows =
                with_host(|h| h.validate(&fixture("pod_windows.json"), &settings)).unwrap();
            assert!(
                windows.response.accepted && windows.patch.0.is_empty(),
                "{method:?}"
            );
            let warnings = windows.response.warnings.unwrap_or_default();
            assert!(
                warnings[0].contains("spec.os.name: windows"),
                "{method:?}: {warnings:?}"
            );

            let budgeted =
                with_host(|h| h.validate(&fixture("pod_level_resources.json"), &settings)).unwrap();
            let mutated = budgeted.response.mutated_object.expect("mutated");
            assert_eq!(
                support::pod_rules::violations(&mutated),
                Vec::<String>::new(),
                "{method:?}"
            );
            if method == MountMethod::InitContainer {
                let resources = &mutated["spec"]["initContainers"][0]["resources"];
                assert!(
                    resources.pointer("/requests/cpu").is_none()
                        && resources.pointer("/limits/memory").is_none(),
                    "{resources}"
                );
            }

            let nulls =
                with_host(|h| h.validate(&fixture("pod_null_fields.json"), &settings)).unwrap();
            assert_eq!(nulls.response.warnings, None, "{method:?}");
            let mutated = nulls.response.mutated_object.expect("mutated");
            assert_eq!(
                support::pod_rules::violations(&mutated),
                Vec::<String>::new(),
                "{method:?}"
            );
        }
    }
}

/// A host of the built policy whose memory may not grow past `pages` wasm pages of 64 KiB
/// (an error when the module's initial memory is larger).
fn host_within(wasm: &[u8], pages: usize) -> Result<wapc::WapcHost, wapc::errors::Error> {
    let limits = wasmtime_provider::ResourceLimits {
        max_memory_size: Some(pages * 64 * 1024),
        max_table_elements: None,
    };
    let engine = wasmtime_provider::WasmtimeEngineProviderBuilder::new()
        .module_bytes(wasm)
        .wasi_params(wapc::WasiParams::default())
        .enable_cache(Some(&runner::build::target_dir().join("wasmtime-cache")))
        .enable_resource_limits(limits)
        .build()?;
    wapc::WapcHost::new(Box::new(engine), None)
}

/// The policy's heap reuses what each call frees: 200 admissions of a 200-container pod
/// run in the memory the first one needed (a wasm memory never shrinks, so a heap that
/// did not reuse would grow with every admission until the policy server's limit).
#[test]
fn repeated_calls_need_no_more_memory_than_the_first() {
    let wasm = std::fs::read(runner::build::ensure_built().unwrap()).unwrap();
    let mut request = fixture("pod_typical.json");
    let app = request["object"]["spec"]["containers"][0].clone();
    request["object"]["spec"]["containers"] = (0..200)
        .map(|i| {
            let mut container = app.clone();
            container["name"] = json!(format!("app-{i}"));
            container
        })
        .collect();
    let body = payload(&request, &settings(MountMethod::VirtualDevice));
    let answers = |pages: usize, calls: usize| -> Result<Vec<Vec<u8>>, String> {
        let host = host_within(&wasm, pages).map_err(|e| e.to_string())?;
        (0..calls)
            .map(|_| host.call("validate", &body).map_err(|e| e.to_string()))
            .collect()
    };
    // The fewest pages one call needs: one call fits in 1,024 pages (64 MiB), not in 1.
    let (mut fails, mut fits) = (1, 1024);
    assert!(answers(fits, 1).is_ok() && answers(fails, 1).is_err());
    while fits - fails > 1 {
        let middle = (fails + fits) / 2;
        if answers(middle, 1).is_ok() {
            fits = middle;
        } else {
            fails = middle;
        }
    }
    let repeated = answers(fits, 200).unwrap_or_else(|e| panic!("within {fits} pages: {e}"));
    let first = &repeated[0];
    assert!(String::from_utf8_lossy(first).contains("\"accepted\":true"));
    assert!(repeated.iter().all(|answer| answer == first));
}

/// Issue 24's size goal, as a budget: the annotated module the release publishes (the
/// shipped `.wasm` with the README that `kwctl annotate -u README.md` embeds; estimated,
/// as the issue does, as the two sizes, since kwctl does not run here) within 400 KB. A
/// build that loses LTO, or a README that grows back, fails here rather than in a release.
#[test]
fn the_annotated_module_fits_in_400_kb() {
    const BUDGET: u64 = 400_000;
    let wasm = runner::build::ensure_built().unwrap();
    let readme = runner::build::workspace_root().join("README.md");
    let size = |path: &std::path::Path| std::fs::metadata(path).unwrap().len();
    let (module, manual) = (size(&wasm), size(&readme));
    assert!(
        module + manual <= BUDGET,
        "the .wasm ({module} B) and README.md ({manual} B) make {} B, over the {BUDGET} B \
         budget: see BENCHMARKS.md, \"Policy: size, step by step\"",
        module + manual
    );
}

/// The names a wasm module exports, from its export section (id 7): a count, then each
/// export's name, kind and index, in LEB128 and length-prefixed names.
fn exports(module: &[u8]) -> Vec<String> {
    fn leb(bytes: &[u8], at: &mut usize) -> usize {
        let (mut value, mut shift) = (0usize, 0);
        loop {
            let byte = bytes[*at];
            *at += 1;
            value |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return value;
            }
            shift += 7;
        }
    }
    let mut at = 8; // magic and version
    while at < module.len() {
        let id = module[at];
        at += 1;
        let size = leb(module, &mut at);
        if id != 7 {
            at += size;
            continue;
        }
        let count = leb(module, &mut at);
        let mut names = Vec::with_capacity(count);
        for _ in 0..count {
            let len = leb(module, &mut at);
            names.push(String::from_utf8(module[at..at + len].to_vec()).unwrap());
            at += len + 1; // the name, the kind
            leb(module, &mut at); // the index
        }
        return names;
    }
    Vec::new()
}

/// The shipped module exports what the host calls and nothing else: the policy's own
/// `memcmp` and `bcmp` (src/memcmp.rs), exported by the link as every `#[no_mangle]`
/// function of a cdylib is, are dropped by wasm-opt.
#[test]
fn the_module_exports_only_what_the_host_calls() {
    let wasm = std::fs::read(runner::build::ensure_built().unwrap()).unwrap();
    let mut names = exports(&wasm);
    names.sort();
    assert_eq!(names, ["__guest_call", "memory", "wapc_init"]);
}
