#!/usr/bin/env python3
"""Checks that the test build reuses every dependency the demo built.

Usage: check_unified_features.py

`cargo run -p runner -- demo` resolves features for the runner alone; `cargo test
--workspace` for every crate with its dev-dependencies. A dependency whose features
differ between the two is compiled twice, and one difference in a crate that much of
wasmtime depends on (syn, tokio, rustix) rebuilds most of it. runner/Cargo.toml lists
the workspace's features to close that gap; this check fails, naming the crate and both
feature sets, when that list falls behind (a new dependency or feature elsewhere).

It reads cargo's unit graph (`--unit-graph`, which stable cargo prints only with
RUSTC_BOOTSTRAP=1). Nothing is built: the graph is the exact list of compilation units,
each with its features and code-generation settings, that each command would build.
"""

import json
import os
import subprocess
import sys

DEMO = ["build", "-p", "runner"]
TESTS = ["test", "--workspace", "--no-run"]


def host_triple() -> str:
    """rustc's host target, e.g. x86_64-unknown-linux-gnu."""
    out = subprocess.run(["rustc", "-vV"], check=True, capture_output=True, text=True).stdout
    return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("host: "))


def units(command: list[str], host: str) -> dict[tuple[str, str, str, str], set[tuple[str, ...]]]:
    """Every registry dependency's units: (package, target, mode, host or target) -> settings."""
    env = dict(os.environ, RUSTC_BOOTSTRAP="1")
    # --target names the host explicitly so the graph tells host units from target ones.
    out = subprocess.run(
        ["cargo", *command, "--locked", "--target", host, "--unit-graph", "-Z", "unstable-options"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found: dict[tuple[str, str, str, str], set[tuple[str, ...]]] = {}
    for unit in json.loads(out)["units"]:
        if unit["pkg_id"].startswith("path+"):
            continue  # the workspace's own crates are rebuilt for tests anyway
        # Build scripts and proc macros (platform null) are resolved apart from the rest.
        side = "host" if unit["platform"] is None else "target"
        key = (unit["pkg_id"].rsplit("#", 1)[-1], unit["target"]["name"], unit["mode"], side)
        profile = unit["profile"]  # its name (dev, test) is not part of the unit's hash
        settings = (f"opt-level={profile['opt_level']}", f"debuginfo={profile['debuginfo']}")
        found.setdefault(key, set()).add((*settings, *unit["features"]))
    return found


def main() -> int:
    host = host_triple()
    demo, tests = units(DEMO, host), units(TESTS, host)
    missing = [
        (key, features, tests.get(key, set()))
        for key, variants in sorted(demo.items())
        for features in sorted(variants)
        if features not in tests.get(key, set())
    ]
    for (package, target, mode, side), features, theirs in missing:
        print(
            f"{package} ({target}, {mode}, {side}): the demo builds it with {list(features)}, "
            f"the tests with {[list(f) for f in sorted(theirs)] or 'none'}; add the tests' "
            "features to the workspace-hack lists in runner/Cargo.toml",
            file=sys.stderr,
        )
    total = sum(len(v) for v in demo.values())
    print(f"{total - len(missing)} of {total} dependency units of the demo are reused by the tests")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
