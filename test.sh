#!/usr/bin/env bash
# Runs every test of the workspace. Needs only the Rust toolchain (rustup) and python3:
# it installs the wasm target and kubernetes-validate (into .venv) itself.
set -euo pipefail
cd "$(dirname "$0")"

if ! rustup target list --installed | grep -qx wasm32-wasip1; then
  echo "test.sh: installing the wasm32-wasip1 target"
  rustup target add wasm32-wasip1
fi

# kubernetes-validate checks deploy/*.yaml offline (runner/tests/manifests.rs).
if ! .venv/bin/kubernetes-validate --version >/dev/null 2>&1; then
  echo "test.sh: installing kubernetes-validate into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check kubernetes-validate
fi
export KUBERNETES_VALIDATE="$PWD/.venv/bin/kubernetes-validate"

# The policy .wasm, with its size settings; the integration tests would build it too.
cargo build --locked --profile policy --target wasm32-wasip1 -p agent-mount
ls -l target/wasm32-wasip1/policy/agent_mount.wasm

log=$(mktemp)
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole workspace, summed over every test binary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "summary: %d passed, %d failed\n", passed, failed }' "$log"
rm -f "$log"
exit "$status"
