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


def units(command: list[str]) -> dict[tuple[str, str, str], set[tuple[str, ...]]]:
    """Every registry dependency's units: (package, target, mode) -> feature sets."""
    env = dict(os.environ, RUSTC_BOOTSTRAP="1")
    out = subprocess.run(
        ["cargo", *command, "--locked", "--unit-graph", "-Z", "unstable-options"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found: dict[tuple[str, str, str], set[tuple[str, ...]]] = {}
    for unit in json.loads(out)["units"]:
        if unit["pkg_id"].startswith("path+"):
            continue  # the workspace's own crates are rebuilt for tests anyway
        key = (unit["pkg_id"].rsplit("#", 1)[-1], unit["target"]["name"], unit["mode"])
        profile = unit["profile"]  # its name (dev, test) is not part of the unit's hash
        settings = (f"opt-level={profile['opt_level']}", f"debuginfo={profile['debuginfo']}")
        found.setdefault(key, set()).add((*settings, *unit["features"]))
    return found


def main() -> int:
    demo, tests = units(DEMO), units(TESTS)
    missing = [
        (key, features, tests.get(key, set()))
        for key, variants in sorted(demo.items())
        for features in sorted(variants)
        if features not in tests.get(key, set())
    ]
    for (package, target, mode), features, theirs in missing:
        print(
            f"{package} ({target}, {mode}): the demo builds it with {list(features)}, "
            f"the tests with {[list(f) for f in sorted(theirs)] or 'none'}; add the tests' "
            "features to the workspace-hack lists in runner/Cargo.toml",
            file=sys.stderr,
        )
    total = sum(len(v) for v in demo.values())
    print(f"{total - len(missing)} of {total} dependency units of the demo are reused by the tests")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
