# agent-mount build targets, named as in Kubewarden's own policies (just does not allow
# "." in recipe names, so the policy.wasm and annotated-policy.wasm targets are spelt with "-").
# `just --list` shows them; the README's two commands need no `just`.

set shell := ["bash", "-euo", "pipefail", "-c"]

# OCI repository for `push`, e.g. `just registry=ghcr.io/my-org/policies push`.
registry := "ghcr.io/agent-mount/policies"
# The release version: policy.yaml is its one source (release.yml checks the tag against it).
version := `sed -n 's/^ *io\.kubewarden\.policy\.version: *//p' policy.yaml`
# cargo's module, and the one wasm-opt makes of it (scripts/optimize-wasm.sh): what ships.
raw_wasm := "target/wasm32-wasip1/policy/agent_mount.wasm"
wasm := "target/wasm32-wasip1/policy/agent_mount.opt.wasm"
# The policy's module: `cargo rustc` for the cdylib alone, since cargo skips LTO for a crate
# that also builds an rlib (runner/src/build.rs, which the tests, demo and bench use).
build_policy := "cargo rustc --locked --profile policy --target wasm32-wasip1 -p agent-mount --lib --crate-type cdylib"

# Run every test (the default).
default: test

# The optimised policy module (cargo's, then wasm-opt: needs npm), copied to ./policy.wasm.
policy-wasm:
    rustup target add wasm32-wasip1
    {{build_policy}}
    scripts/optimize-wasm.sh {{raw_wasm}} {{wasm}}
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

# End-to-end tests of the annotated policy with `kwctl run` (needs kwctl, bats and jq).
e2e-tests: annotated-policy-wasm
    bats e2e.bats

# kwctl's output comes from the workspace's waPC host here (scripts/kwctl-run-via-runner.py).
# e2e.bats without kwctl, as ./test.sh runs it.
e2e-tests-local:
    cargo build --locked -p runner
    {{build_policy}}
    scripts/optimize-wasm.sh {{raw_wasm}} {{wasm}}
    mkdir -p target/kwctl-stand-in
    ln -sf "$PWD/scripts/kwctl-run-via-runner.py" target/kwctl-stand-in/kwctl
    PATH="$PWD/target/kwctl-stand-in:$PATH" POLICY={{wasm}} bats e2e.bats

# Format the code.
fmt:
    cargo fmt --all

# Clippy over the whole workspace, warnings denied.
lint:
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Remove build output.
clean:
    cargo clean
    rm -rf dist policy.wasm annotated-policy.wasm

# Show the policy mutating the example pod with every method.
demo:
    cargo run --locked -p runner -- demo

# Benchmarks: policy (wasm vs native) and device plugin; results in BENCHMARKS.md.
bench:
    cargo bench --locked -p runner --bench policy
    cargo bench --locked -p agent-mount-node --bench plugin
    cargo bench --locked -p agent-mount-node --bench csi
    cargo bench --locked -p agent-mount-node --bench agents

# Static musl builds of the node binary for x86_64 and aarch64: dist/agent-mount-node-linux-*.
static:
    scripts/static.sh

# CycloneDX SBOMs of the policy and the node binary: dist/*.cdx.json.
sbom:
    scripts/sbom.sh

# Checks: architecture, static linking, aarch64 --version under qemu, SBOM contents.
# Every test, then the release artefacts built and checked, as CI does.
release-check:
    ./test.sh --release

# The multi-arch node image from the static binaries (needs docker buildx; push with --push).
image: static
    docker buildx build --platform linux/amd64,linux/arm64 -f node/Dockerfile -t ghcr.io/agent-mount/agent-mount-node:v{{version}} .

# The agents tree in dist/agents-tree (agents/build.py; PyPI and npm). With the Java agent:
# `just agents opentelemetry-javaagent.jar` (downloaded from agents/java.json's source).
agents $JAVA_AGENT="":
    python3 agents/build.py build --out dist/agents-tree ${JAVA_AGENT:+--java-agent "$JAVA_AGENT"}

# The multi-arch agents image from the tree and the static binaries (needs docker buildx).
agents-image JAVA_AGENT: (agents JAVA_AGENT) static
    docker buildx build --platform linux/amd64,linux/arm64 -f agents/Dockerfile -t ghcr.io/agent-mount/agents:v{{version}} .
