# agent-mount build targets, named as in Kubewarden's own policies (just does not allow
# "." in recipe names, so the policy.wasm and annotated-policy.wasm targets are spelt with "-").
# `just --list` shows them; the README's two commands need no `just`.

set shell := ["bash", "-euo", "pipefail", "-c"]

# OCI repository for `push`, e.g. `just registry=ghcr.io/my-org/policies push`.
registry := "ghcr.io/agent-mount/policies"
version := "0.1.0"
wasm := "target/wasm32-wasip1/policy/agent_mount.wasm"

# Run every test (the default).
default: test

# The optimised policy module, copied to ./policy.wasm.
policy-wasm:
    rustup target add wasm32-wasip1
    cargo build --locked --profile policy --target wasm32-wasip1 -p agent-mount
    cp {{wasm}} policy.wasm
    ls -l policy.wasm

# policy.wasm with the Kubewarden metadata and this README embedded (needs kwctl).
annotated-policy-wasm: policy-wasm
    kwctl annotate -m policy.yaml -u README.md -o annotated-policy.wasm policy.wasm

# Push the annotated policy to an OCI registry (needs kwctl and registry credentials).
push: annotated-policy-wasm
    kwctl push annotated-policy.wasm registry://{{registry}}/agent-mount:v{{version}}

# fmt check, clippy, and every test.
test: lint
    cargo fmt --all --check
    ./test.sh

# End-to-end tests of the annotated policy with `kwctl run` (needs kwctl and bats).
e2e-tests: annotated-policy-wasm
    bats e2e.bats

# Format the code.
fmt:
    cargo fmt --all

# Clippy over the whole workspace, warnings denied.
lint:
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Remove build output.
clean:
    cargo clean
    rm -f policy.wasm annotated-policy.wasm

# Show the policy mutating the example pod with every method.
demo:
    cargo run --locked -p runner -- demo

# Benchmarks: policy (wasm vs native) and device plugin; results in BENCHMARKS.md.
bench:
    cargo bench --locked -p runner --bench policy
    cargo bench --locked -p agent-mount-node --bench plugin
