#!/usr/bin/env python3
"""Checks a CycloneDX SBOM: valid JSON, the format, the described package, its components.

Usage: check_sbom.py FILE PACKAGE [DEPENDENCY...]

PACKAGE must be the SBOM's subject (metadata.component.name), and every DEPENDENCY must be
among its components, so an SBOM of the wrong crate, or of a build without its
dependencies, fails.
"""

import json
import sys


def check(path: str, package: str, dependencies: list[str]) -> str:
    with open(path, encoding="utf-8") as f:
        bom = json.load(f)
    if bom.get("bomFormat") != "CycloneDX":
        raise ValueError(f"bomFormat is {bom.get('bomFormat')!r}, not 'CycloneDX'")
    subject = bom.get("metadata", {}).get("component", {}).get("name")
    if subject != package:
        raise ValueError(f"describes {subject!r}, expected {package!r}")
    components = bom.get("components") or []
    names = {c.get("name") for c in components}
    missing = [d for d in dependencies if d not in names]
    if missing:
        raise ValueError(f"components lack {', '.join(missing)}")
    return f"{path}: CycloneDX {bom.get('specVersion')}, {package}, {len(components)} components"


def main() -> int:
    if len(sys.argv) < 3:
        print(f"usage: {sys.argv[0]} FILE PACKAGE [DEPENDENCY...]", file=sys.stderr)
        return 2
    try:
        print(check(sys.argv[1], sys.argv[2], sys.argv[3:]))
    except (OSError, ValueError, json.JSONDecodeError) as e:
        print(f"{sys.argv[1]}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
