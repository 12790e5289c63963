#!/usr/bin/env bash
# Installs a Debian package when its command is missing: the one place the project's
# scripts (test.sh, .ci/run, scripts/optimize-wasm.sh) install what they need from apt.
# Root installs directly; anyone else (a GitHub runner) through sudo.
#
#   scripts/apt-install.sh COMMAND PACKAGE
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 COMMAND PACKAGE" >&2
  exit 2
fi
command -v "$1" >/dev/null && exit 0
if ! command -v apt-get >/dev/null; then
  echo "apt-install: $1 is missing and this machine has no apt-get: install $2 (it gives $1) and run again" >&2
  exit 1
fi
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
echo "apt-install: installing $2 (for $1)" >&2
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2"
