#!/usr/bin/env bash
# Shrinks a module of the `policy` profile with binaryen's wasm-opt (BENCHMARKS.md, issue
# 24, says what it saves and costs). The one place the optimisation is written: the
# runner's build (runner/src/build.rs: tests, demo, bench), test.sh (e2e.bats, the
# release's dist/policy.wasm) and `just policy-wasm` all call it.
#
#   scripts/optimize-wasm.sh IN OUT
#
# wasm-opt is $WASM_OPT when set, else binaryen from npm, pinned, installed once into
# <target>/binaryen-<version>/ (about 100 MB; binaryen compiled to WebAssembly, run by
# Node.js, so nothing to compile). `cargo rustc --profile policy --target wasm32-wasip1
# --lib --crate-type cdylib` alone still gives the unoptimised module.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 IN.wasm OUT.wasm" >&2
  exit 2
fi
in=$1
out=$2
root=$(cd "$(dirname "$0")/.." && pwd)
version=132.0.0

# Up to date: newer than its module and than this script. Every caller (test.sh, the
# runner's build, the Justfile) runs the script after cargo, which may have changed nothing.
if [[ $out -nt $in && $out -nt $0 ]]; then
  exit 0
fi

if [[ -n "${WASM_OPT:-}" ]]; then
  wasm_opt=$WASM_OPT
else
  prefix="${CARGO_TARGET_DIR:-$root/target}/binaryen-$version"
  wasm_opt="$prefix/node_modules/.bin/wasm-opt"
  if [[ ! -x $wasm_opt ]]; then
    # npm from Debian where it is missing, as test.sh installs the agents' tools.
    "$root/scripts/apt-install.sh" npm npm
    echo "optimize-wasm: installing binaryen $version from npm into $prefix" >&2
    # Into a temporary directory renamed at the end: a concurrent or interrupted run
    # never sees half an installation.
    partial=$(mktemp -d "$prefix.partial.XXXXXX")
    npm install --prefix "$partial" --no-audit --no-fund --loglevel=error "binaryen@$version" >&2
    mv -T "$partial" "$prefix" 2>/dev/null || rm -rf "$partial"
  fi
fi

# The features rustc enables for wasm32-wasip1 (`rustc --print cfg --target wasm32-wasip1`),
# no others: wasm-opt must not use an instruction the module did not already rely on.
# After -O2, functions that differ only in constants are merged into one that takes them
# as arguments: 2.4 KB less, no change in `validate`'s time measured (BENCHMARKS.md).
# First, the exports of the policy's own memcmp and bcmp (src/memcmp.rs) and C allocation
# functions (src/allocator.rs): a `#[no_mangle]` function is exported from a cdylib, and
# the host has no use for them.
partial_out=$(mktemp "$out.partial.XXXXXX")
"$wasm_opt" --remove-exports=memcmp,bcmp,malloc,calloc,realloc,free,aligned_alloc -O2 --merge-similar-functions \
  --enable-bulk-memory --enable-bulk-memory-opt --enable-multivalue --enable-mutable-globals \
  --enable-nontrapping-float-to-int --enable-reference-types --enable-sign-ext \
  "$in" -o "$partial_out"
chmod 0644 "$partial_out"
mv "$partial_out" "$out"
