//! Policy benchmark: `validate` in the runner's waPC host against the same function called
//! natively, on a small, a typical and a large pod, under every method. Writes the policy
//! section of BENCHMARKS.md and prints it.
// Test and bench code: helpers fail loudly too (clippy.toml allows this in #[test] functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

// The policy tests' helpers (fixtures, payloads), shared rather than written twice.
#[path = "../../tests/support/mod.rs"]
mod support;

use agent_mount::mutate;
use agent_mount::response;
use agent_mount::settings::method::{AgentMounts, Method};
use agent_mount::settings::raw::MAX_AGENT_DIRECTORIES;
use agent_mount::settings::{Settings, parse};
use agent_mount_common::MountMethod;
use report::{measured_by, publish};
use runner::build::{FLOOR_PACKAGE, build_module, ensure_built};
use runner::host::PolicyHost;
use runner::input::overlay_settings;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use support::{fixture, payload};

#[path = "../../common/bench/report.rs"]
mod report;

/// Mean time of `f` over as many runs as fit in `budget` (at least `min_runs`), after a warm-up.
fn mean_time(budget: Duration, min_runs: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..3 {
        f();
    }
    let started = Instant::now();
    let mut runs = 0u32;
    while runs < min_runs || started.elapsed() < budget {
        f();
        runs += 1;
    }
    started.elapsed() / runs
}

/// A duration in microseconds with one decimal.
fn micros(duration: Duration) -> String {
    format!("{:.1} µs", duration.as_secs_f64() * 1e6)
}

/// Time spent measuring each case.
const BUDGET: Duration = Duration::from_millis(700);
/// App containers in the large pod.
const LARGE_COPIES: usize = 200;

/// Directories in the mutation-only scaling case (issue 8 measured 6.6 s here before).
const MANY_DIRECTORIES: usize = 30_000;

/// The activated containers of the typical pod in the activation case.
const ACTIVATION_ANNOTATION: &str = "checkout=java, cache-warmer=python";
/// Alternating off/on rounds in the activation case.
const ROUNDS: usize = 3;
/// The goal for `validate` with activation on, as a ratio to off (issue 17).
const ACTIVATION_GOAL: f64 = 1.15;
/// The large-value case (issue 21): the pod's size, the custom recipe value's, the goal.
const LARGE_POD_BYTES: usize = 300_000;
const RECIPE_VALUE_BYTES: usize = 4096;
const LARGE_VALUE_GOAL: f64 = 1.5;

/// `validate` on a ~300 KB pod whose app sets a ~300 KB `JAVA_TOOL_OPTIONS` (items that
/// nearly match ours everywhere), with a custom java recipe of a 4 KiB value, against the
/// same pod without activation: the "already ours" check must stay linear (issue 21
/// measured 0.9 s with a 12 KB value, 4 s with 30 KB).
fn large_value_section(host: &PolicyHost, typical: &Value) -> String {
    // Our value: the agent, then options up to 4 KiB.
    let mut ours = String::from("-javaagent:{dir}/java/javaagent.jar");
    let mut i = 0;
    while ours.len() + 24 < RECIPE_VALUE_BYTES {
        write!(ours, " -Dotel.bench.opt{i}=on").unwrap();
        i += 1;
    }
    let expanded = ours.replace("{dir}", "/var/odigos");
    // The app's value: all of ours but the last item, then another, again and again.
    let near_miss = expanded.rsplit_once(' ').map_or("", |(head, _)| head);
    let mut app = String::new();
    while app.len() + near_miss.len() < LARGE_POD_BYTES {
        app.push_str(near_miss);
        app.push_str(" -Dother ");
    }
    let mut request = typical.clone();
    request["object"]["metadata"]["annotations"]["agent-mount.io/agents"] = json!("checkout=java");
    request["object"]["spec"]["containers"][0]["env"] =
        json!([{"name": "JAVA_TOOL_OPTIONS", "value": app}]);
    let pod_bytes = serde_json::to_vec(&request).unwrap().len();
    let off = overlay_settings(MountMethod::HostPath).unwrap();
    let mut on = off.clone();
    on["activation"] = json!({"agents": {"java": {"directory": "java", "env": [
        {"name": "JAVA_TOOL_OPTIONS", "value": ours, "join": " "}
    ]}}});
    let (best_off, best_on) = alternating(host, &request, &off, &on, 5);
    format!(
        "\nA {:.0} KB request whose `checkout` container sets a {:.0} KB `JAVA_TOOL_OPTIONS` (every item of ours but the last, then another, repeated), k8s-host-path, without activation and with a custom `java` recipe of a {}-byte value joined on `\" \"`, the best mean of {ROUNDS} alternating rounds:\n\n| activation off | activation on, 4 KiB recipe value | on/off (goal ≤ {LARGE_VALUE_GOAL:.1}×) |\n|---:|---:|---:|\n| {} | {} | {:.2}× |\n",
        pod_bytes as f64 / 1000.0,
        app.len() as f64 / 1000.0,
        expanded.len(),
        micros(best_off),
        micros(best_on),
        best_on.as_secs_f64() / best_off.as_secs_f64()
    )
}

/// The best of `rounds` alternating runs of `first` and `second` (each timing one
/// side): the machine is shared, and load that comes and goes must not land on one side
/// only.
fn best_of_alternating(
    rounds: usize,
    mut first: impl FnMut() -> Duration,
    mut second: impl FnMut() -> Duration,
) -> (Duration, Duration) {
    (0..rounds).fold((Duration::MAX, Duration::MAX), |(a, b), _| {
        (a.min(first()), b.min(second()))
    })
}

/// The best mean time of `validate` on `request` with settings `off` and `on`, over
/// [`ROUNDS`] alternating rounds.
fn alternating(
    host: &PolicyHost,
    request: &Value,
    off: &Value,
    on: &Value,
    min_runs: u32,
) -> (Duration, Duration) {
    let time = |settings: &Value| {
        let payload = payload(request, settings);
        mean_time(BUDGET, min_runs, || {
            std::hint::black_box(host.call("validate", &payload).unwrap());
        })
    };
    best_of_alternating(ROUNDS, || time(off), || time(on))
}

/// `request` with the pod annotated to activate [`ACTIVATION_ANNOTATION`]'s containers.
fn annotated(request: &Value) -> Value {
    let mut annotated = request.clone();
    annotated["object"]["metadata"]["annotations"]["agent-mount.io/agents"] =
        json!(ACTIVATION_ANNOTATION);
    annotated
}

/// `validate` in the wasm host on the typical pod that asks for activation, with the
/// setting `activation` on (the exporter in `activation.env`) and off, under every method.
fn activation_section(host: &PolicyHost, typical: &Value) -> String {
    let request = annotated(typical);
    let mut out = measured_by(
        "cargo bench -p runner --bench policy",
        &format!(
            ", the typical pod annotated `agent-mount.io/agents: {ACTIVATION_ANNOTATION}`, each method with its overlay's settings, without and with `activation` (its `env` giving `HOST_IP` and `OTEL_EXPORTER_OTLP_ENDPOINT`; the service name and resource attributes on, as by default), the best mean of {ROUNDS} alternating rounds,"
        ),
    );
    writeln!(
        out,
        "| method | activation off | activation on | on/off (goal ≤ {ACTIVATION_GOAL:.2}×) |\n|---|---:|---:|---:|"
    )
    .unwrap();
    for method in MountMethod::ALL {
        let off = overlay_settings(method).unwrap();
        let mut on = off.clone();
        on["activation"] = json!({"env": [
            {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://$(HOST_IP):4317"}
        ]});
        let (off, on) = alternating(host, &request, &off, &on, 20);
        writeln!(
            out,
            "| {} | {} | {} | {:.2}× |",
            method.as_str(),
            micros(off),
            micros(on),
            on.as_secs_f64() / off.as_secs_f64()
        )
        .unwrap();
    }
    out.push_str(&large_value_section(host, typical));
    out
}

/// Rounds of the floor comparison, policy and floor alternating.
const FLOOR_ROUNDS: usize = 3;
/// The goals of issue 24, as ratios to the roundtrip floor: the typical pod, the large pod.
const FLOOR_GOALS: (f64, f64) = (0.7, 0.8);

/// The settings with `activation` on: the exporter in `activation.env`, as in the activation case.
fn with_activation(settings: &Value) -> Value {
    let mut on = settings.clone();
    on["activation"] = json!({"env": [
        {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://$(HOST_IP):4317"}
    ]});
    on
}

/// The best means of `policy` and `floor` (each a module and the function to call) over
/// [`FLOOR_ROUNDS`] alternating rounds.
fn best_alternating(
    policy: (&PolicyHost, &str),
    floor: (&PolicyHost, &str),
    payload: &[u8],
) -> (Duration, Duration) {
    let time = |(host, function): (&PolicyHost, &str)| {
        mean_time(BUDGET, 20, || {
            std::hint::black_box(host.call(function, payload).unwrap());
        })
    };
    best_of_alternating(FLOOR_ROUNDS, || time(policy), || time(floor))
}

/// The floor module's `noop` (the waPC call alone: the payload in, a fixed answer out)
/// against its `validate`, on the typical and the large pod: what no policy can save.
fn noop_lines(floor: &PolicyHost, typical: &Value, large: &Value) -> String {
    let settings = json!({});
    let mut out = String::from(
        "\nThe waPC call alone (the floor module's `noop`, which answers without reading the payload):\n\n| pod | `noop` | floor `validate` | noop/floor |\n|---|---:|---:|---:|\n",
    );
    for (pod, request) in [("typical", typical), ("large", large)] {
        let (noop, floor_time) = best_alternating(
            (floor, "noop"),
            (floor, "validate"),
            &payload(request, &settings),
        );
        writeln!(
            out,
            "| {pod} | {} | {} | {:.2}× |",
            micros(noop),
            micros(floor_time),
            noop.as_secs_f64() / floor_time.as_secs_f64()
        )
        .unwrap();
    }
    out
}

/// `validate` in the wasm host as a ratio to the roundtrip floor module (floor/: the
/// request read into a `Value`, its object returned), on the same payloads: the typical
/// pod with activation off and, annotated, on; the large pod.
fn floor_section(
    policy: &PolicyHost,
    floor: &PolicyHost,
    typical: &Value,
    large: &Value,
) -> String {
    let annotated = annotated(typical);
    let mut out = measured_by(
        "cargo bench -p runner --bench policy",
        &format!(
            ", each method with its overlay's settings, the policy and the roundtrip floor module (floor/, built with the same target and profile) on the same payloads in the same host, the best mean of {FLOOR_ROUNDS} alternating rounds (the machine is shared),"
        ),
    );
    let (typical_goal, large_goal) = FLOOR_GOALS;
    writeln!(
        out,
        "| method | pod | activation | policy `validate` | floor `validate` | policy/floor (goal ≤ {typical_goal}×, large ≤ {large_goal}×) |\n|---|---|---|---:|---:|---:|"
    )
    .unwrap();
    for method in MountMethod::ALL {
        let off = overlay_settings(method).unwrap();
        let on = with_activation(&off);
        for (pod, activation, request, settings) in [
            ("typical", "off", typical, &off),
            ("typical, annotated", "off", &annotated, &off),
            ("typical, annotated", "on", &annotated, &on),
            ("large", "off", large, &off),
        ] {
            let (wasm, floor_time) = best_alternating(
                (policy, "validate"),
                (floor, "validate"),
                &payload(request, settings),
            );
            writeln!(
                out,
                "| {} | {pod} | {activation} | {} | {} | {:.2}× |",
                method.as_str(),
                micros(wasm),
                micros(floor_time),
                wasm.as_secs_f64() / floor_time.as_secs_f64()
            )
            .unwrap();
        }
    }
    out
}

/// Builds and loads the floor module, checks that it answers with the request's object,
/// and publishes [`floor_section`] with the two modules' sizes.
fn publish_floor_section(policy: &PolicyHost, typical: &Value, large: &Value) {
    let path = build_module(FLOOR_PACKAGE).expect("build the floor module");
    let floor = PolicyHost::load(&path).expect("load the floor module");
    let answer = floor
        .call("validate", &payload(typical, &json!({})))
        .unwrap();
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(
        answer["mutated_object"], typical["object"],
        "the floor's answer"
    );
    let noop = floor.call("noop", &payload(typical, &json!({}))).unwrap();
    assert_eq!(noop, br#"{"accepted":true}"#, "the floor's noop answer");
    let size = std::fs::metadata(&path).unwrap().len();
    publish(
        "policy-floor",
        &format!(
            "{}{}\nFloor module: `{size}` bytes.\n",
            floor_section(policy, &floor, typical, large),
            noop_lines(&floor, typical, large)
        ),
    );
}

/// `n` agent directory names.
fn directories(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("agent-{i}")).collect()
}

/// `validate` with `agentDirectories` at the settings maximum, in the wasm host; and the
/// mutation alone, natively, with `MANY_DIRECTORIES` (past the maximum, so the settings
/// are built directly), to show the cost stays linear.
fn directories_section(host: &PolicyHost, typical: &Value) -> String {
    let at_max = json!({"mountMethod": "k8s-host-path", "agentDirectories": directories(MAX_AGENT_DIRECTORIES)});
    let payload = payload(typical, &at_max);
    let wasm = mean_time(BUDGET, 20, || {
        std::hint::black_box(host.call("validate", &payload).unwrap());
    });
    let native_at = |n: usize| {
        let mut settings: Settings = parse(json!({"mountMethod": "k8s-host-path"})).unwrap();
        if let Method::HostPath { mounts, .. } = &mut settings.method {
            *mounts = AgentMounts {
                agent_directories: directories(n),
                ..mounts.clone()
            };
        }
        mean_time(BUDGET, 3, || {
            let mut pod = typical["object"].clone();
            std::hint::black_box(mutate::mutate(&mut pod, &[0, 2], &settings).unwrap());
        })
    };
    let (few, many) = (
        native_at(MAX_AGENT_DIRECTORIES),
        native_at(MANY_DIRECTORIES),
    );
    let per = |d: Duration, n: usize| d.as_secs_f64() * 1e6 / n as f64;
    format!(
        "\n`agentDirectories` (at most {MAX_AGENT_DIRECTORIES} at load), typical pod, k8s-host-path:\n\n\
         | case | time | per directory |\n|---|---:|---:|\n\
         | wasm `validate`, {MAX_AGENT_DIRECTORIES} directories | {} | {:.2} µs |\n\
         | native mutation only, {MAX_AGENT_DIRECTORIES} directories | {} | {:.2} µs |\n\
         | native mutation only, {MANY_DIRECTORIES} directories | {} | {:.2} µs |\n",
        micros(wasm),
        per(wasm, MAX_AGENT_DIRECTORIES),
        micros(few),
        per(few, MAX_AGENT_DIRECTORIES),
        micros(many),
        per(many, MANY_DIRECTORIES),
    )
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

struct Row {
    pod: &'static str,
    method: MountMethod,
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
    let small = fixture("pod_small.json");
    let typical = fixture("pod_typical.json");
    let large = large(&typical);
    // `cargo bench -p runner --bench policy -- floor` measures the floor comparison only.
    publish_floor_section(&host, &typical, &large);
    if std::env::args().any(|a| a == "floor") {
        return;
    }
    publish("policy-activation", &activation_section(&host, &typical));
    // `cargo bench -p runner --bench policy -- activation` measures activation only.
    if std::env::args().any(|a| a == "activation") {
        return;
    }

    let mut rows = Vec::new();
    for method in MountMethod::ALL {
        let settings = overlay_settings(method).unwrap();
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
            // Alternating rounds, as the other sections: a run's one mean each moved the
            // ratio by 5% from run to run (issue 24's fourth pass).
            let round = BUDGET / u32::try_from(ROUNDS).unwrap();
            let (wasm, native) = best_of_alternating(
                ROUNDS,
                || {
                    mean_time(round, 20, || {
                        std::hint::black_box(host.call("validate", &payload).unwrap());
                    })
                },
                // The same function as the wasm export: response::answer, written.
                || {
                    mean_time(round, 20, || {
                        std::hint::black_box(response::answer(&payload).to_json().unwrap());
                    })
                },
            );
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

    let mut out = measured_by(
        "cargo bench -p runner --bench policy",
        &format!(
            ", each method with the settings of its overlay under deploy/, wasm and native each the best mean of {ROUNDS} alternating rounds,"
        ),
    );
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
            r.method.as_str(),
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
    for method in MountMethod::ALL {
        let find = |pod: &str| {
            rows.iter()
                .find(|r| r.method == method && r.pod == pod)
                .unwrap()
        };
        let per = |r: &Row| r.wasm.as_secs_f64() / r.containers as f64;
        let (t, l) = (find("typical"), find("large"));
        writeln!(
            out,
            "| {} | {:.2} µs | {:.2} µs | {:.2}× |",
            method.as_str(),
            per(t) * 1e6,
            per(l) * 1e6,
            per(l) / per(t)
        )
        .unwrap();
    }
    out.push_str(&directories_section(&host, &typical));
    publish("policy", &out);
}
