#!/usr/bin/env bash
# CycloneDX SBOMs (JSON, spec 1.5) of what ships:
#   dist/agent-mount.cdx.json       the policy, resolved for wasm32-wasip1;
#   dist/agent-mount-node.cdx.json  the node binary, resolved for the musl targets.
# Build-time dependencies (build scripts, proto compilers) are left out: they are not in
# the artefacts. Installs cargo-cyclonedx when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo cyclonedx --version >/dev/null 2>&1; then
  echo "sbom.sh: installing cargo-cyclonedx"
  cargo install --locked cargo-cyclonedx
fi

# cargo-cyclonedx writes one file per workspace member, next to its Cargo.toml, whatever
# --manifest-path says: write them under a name of our own, keep the one we want, and
# remove the others.
name="agent-mount-sbom-$$"
members=(. common floor node runner)
# Reproducible output: the timestamp is the commit's, not the clock's.
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH

cleanup() { for member in "${members[@]}"; do rm -f "$member/$name.json"; done; }
trap cleanup EXIT

sbom() { # package directory, target, output file
  local dir=$1 target=$2 out=$3
  cargo cyclonedx --format json --spec-version 1.5 --no-build-deps --target "$target" \
    --override-filename "$name" --quiet
  mv "$dir/$name.json" "$out"
  cleanup
}

mkdir -p dist
sbom . wasm32-wasip1 dist/agent-mount.cdx.json
# The aarch64 build resolves the same dependencies as the x86_64 one.
sbom node x86_64-unknown-linux-musl dist/agent-mount-node.cdx.json
ls -l dist/*.cdx.json
