//! Policy benchmark: `validate` in the runner's waPC host against the same function called
//! natively, on a small, a typical and a large pod, under every method. Writes the policy
//! section of BENCHMARKS.md and prints it.

use agent_mount::response;
use runner::build::{ensure_built, workspace_root};
use runner::host::PolicyHost;
use runner::input::read_request;
use runner::report::{machine, mean_time, micros, write_section};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::time::Duration;

/// Time spent measuring each case.
const BUDGET: Duration = Duration::from_millis(700);
/// App containers in the large pod.
const LARGE_COPIES: usize = 200;

fn settings(method: &str) -> Value {
    match method {
        "k8s-virtual-device" => json!({}),
        "k8s-host-path" => json!({"mountMethod": "k8s-host-path"}),
        _ => {
            json!({"mountMethod": "k8s-init-container", "initContainer": {"image": "ghcr.io/example/agents:1.0"}})
        }
    }
}

/// The typical pod with its containers replaced by LARGE_COPIES copies of the app container.
fn large(typical: &Value) -> Value {
    let mut request = typical.clone();
    let app = typical["object"]["spec"]["containers"][0].clone();
    let containers: Vec<Value> = (0..LARGE_COPIES)
        .map(|i| {
            let mut c = app.clone();
            c["name"] = json!(format!("app-{i}"));
            c
        })
        .collect();
    request["object"]["spec"]["containers"] = json!(containers);
    request
}

fn payload(request: &Value, settings: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"request": request, "settings": settings})).unwrap()
}

struct Row {
    pod: &'static str,
    method: &'static str,
    containers: usize,
    bytes: usize,
    wasm: Duration,
    native: Duration,
    json_floor: Duration,
}

fn main() {
    let wasm_path = ensure_built().expect("build the policy");
    let wasm_size = std::fs::metadata(&wasm_path).unwrap().len();
    let host = PolicyHost::load(&wasm_path).expect("load the policy");
    let data = workspace_root().join("test_data");
    let small = read_request(&data.join("pod_small.json")).unwrap();
    let typical = read_request(&data.join("pod_typical.json")).unwrap();
    let large = large(&typical);

    let mut rows = Vec::new();
    for method in ["k8s-virtual-device", "k8s-host-path", "k8s-init-container"] {
        let settings = settings(method);
        let mutated = host
            .validate(&typical, &settings)
            .unwrap()
            .response
            .mutated_object
            .unwrap();
        let mut already = typical.clone();
        already["object"] = mutated;
        for (pod, request) in [
            ("small", &small),
            ("typical", &typical),
            ("large", &large),
            ("typical, already mutated", &already),
        ] {
            let payload = payload(request, &settings);
            let wasm = mean_time(BUDGET, 20, || {
                std::hint::black_box(host.call("validate", &payload).unwrap());
            });
            // The same function as the wasm export: response::validate, serialised.
            let native = mean_time(BUDGET, 20, || {
                std::hint::black_box(serde_json::to_vec(&response::validate(&payload)).unwrap());
            });
            // The floor of any policy: parse the request, serialise the object back.
            let json_floor = mean_time(BUDGET, 20, || {
                let parsed: Value = serde_json::from_slice(&payload).unwrap();
                std::hint::black_box(serde_json::to_vec(&parsed["request"]["object"]).unwrap());
            });
            let containers = request["object"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len();
            rows.push(Row {
                pod,
                method,
                containers,
                bytes: payload.len(),
                wasm,
                native,
                json_floor,
            });
        }
    }

    let mut out = String::new();
    writeln!(
        out,
        "Measured by `cargo bench -p runner --bench policy` on {}.\n",
        machine()
    )
    .unwrap();
    writeln!(
        out,
        "Policy module: `{}` bytes ({} KB).\n",
        wasm_size,
        wasm_size / 1000
    )
    .unwrap();
    writeln!(out, "| method | pod | containers | request | wasm `validate` | native `validate` | wasm/native | JSON floor (native) |").unwrap();
    writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|").unwrap();
    for r in &rows {
        let ratio = r.wasm.as_secs_f64() / r.native.as_secs_f64();
        writeln!(
            out,
            "| {} | {} | {} | {:.1} KB | {} | {} | {ratio:.2}× | {} |",
            r.method,
            r.pod,
            r.containers,
            r.bytes as f64 / 1000.0,
            micros(r.wasm),
            micros(r.native),
            micros(r.json_floor)
        )
        .unwrap();
    }
    writeln!(
        out,
        "\nScaling (wasm time per container, large pod against typical pod):\n"
    )
    .unwrap();
    writeln!(
        out,
        "| method | typical per container | large per container | large/typical |"
    )
    .unwrap();
    writeln!(out, "|---|---:|---:|---:|").unwrap();
    for method in ["k8s-virtual-device", "k8s-host-path", "k8s-init-container"] {
        let find = |pod: &str| {
            rows.iter()
                .find(|r| r.method == method && r.pod == pod)
                .unwrap()
        };
        let per = |r: &Row| r.wasm.as_secs_f64() / r.containers as f64;
        let (t, l) = (find("typical"), find("large"));
        writeln!(
            out,
            "| {method} | {:.2} µs | {:.2} µs | {:.2}× |",
            per(t) * 1e6,
            per(l) * 1e6,
            per(l) / per(t)
        )
        .unwrap();
    }
    print!("{out}");
    let file = workspace_root().join("BENCHMARKS.md");
    if let Err(e) = write_section(&file, "policy", &out) {
        eprintln!("not written to BENCHMARKS.md: {e}");
    }
}
