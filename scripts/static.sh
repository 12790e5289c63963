#!/usr/bin/env bash
# Static musl builds of agent-mount-node for x86_64 and aarch64, copied to
# dist/agent-mount-node-linux-<amd64|arm64> (the names node/Dockerfile copies per TARGETARCH).
# rust-lld links them (.cargo/config.toml): no musl-tools; a C compiler per target for ring (below).
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A ARCH=([x86_64-unknown-linux-musl]=amd64 [aarch64-unknown-linux-musl]=arm64)
installed=$(rustup target list --installed)
for target in "${!ARCH[@]}"; do
  # rustup does not install targets by itself here (RUSTUP_AUTO_INSTALL=0).
  grep -qx "$target" <<<"$installed" || rustup target add "$target"
done

# ring (rustls's crypto, for `agents install --label-node`) compiles some C and assembly:
# the host gcc for x86_64, Debian's gcc-aarch64-linux-gnu for aarch64 (test.sh installs it).
export CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-gcc}"
export CC_aarch64_unknown_linux_musl="${CC_aarch64_unknown_linux_musl:-aarch64-linux-gnu-gcc}"

targets=()
for target in "${!ARCH[@]}"; do targets+=(--target "$target"); done
# Stripped: neither the image nor the release assets need symbols (about 2 MB less each).
CARGO_PROFILE_RELEASE_STRIP=true cargo build --locked --release -p agent-mount-node "${targets[@]}"

mkdir -p dist
for target in "${!ARCH[@]}"; do
  cp "${CARGO_TARGET_DIR:-target}/$target/release/agent-mount-node" "dist/agent-mount-node-linux-${ARCH[$target]}"
done
ls -l dist/agent-mount-node-linux-*
