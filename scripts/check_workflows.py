#!/usr/bin/env python3
"""Checks GitHub Actions workflows that cannot run here: YAML, pinned actions, shell syntax.

Usage: check_workflows.py WORKFLOW...

- each file parses as YAML and has `on` and `jobs`;
- every remote action is pinned to a full commit SHA with its version in a comment
  (`uses: owner/repo@<40 hex> # v1.2.3`), so a moved tag cannot change what runs;
- every `run:` script passes `bash -n` (with `${{ ... }}` expressions replaced by a word);
- every local reusable workflow (`uses: ./...`) exists and can be called (`workflow_call`).
"""

import os
import re
import subprocess
import sys

import yaml

PINNED = re.compile(r"^\s*(?:-\s+)?uses:\s+[\w.-]+/[\w./-]+@[0-9a-f]{40}\s+#\s+v\d+\.\d+\.\d+\s*$")
EXPRESSION = re.compile(r"\$\{\{.*?\}\}")


def steps(workflow: dict):
    for name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield name, step


def check(path: str) -> list[str]:
    errors = []
    with open(path, encoding="utf-8") as f:
        text = f.read()
    workflow = yaml.safe_load(text)
    # YAML 1.1 reads the key `on` as the boolean true.
    if not isinstance(workflow, dict) or not ({"on", True} & workflow.keys()) or "jobs" not in workflow:
        return [f"{path}: not a workflow (needs `on` and `jobs`)"]
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(r"^\s*(?:-\s+)?uses:", line) and "uses: ./" not in line and not PINNED.match(line):
            errors.append(f"{path}:{number}: not pinned to a commit SHA with a `# vX.Y.Z` comment: {line.strip()}")
    for name, job in workflow["jobs"].items():
        called = job.get("uses", "")
        if called.startswith("./"):
            if not os.path.isfile(called):
                errors.append(f"{path}: job {name} calls {called}, which does not exist")
                continue
            with open(called, encoding="utf-8") as f:
                callee = yaml.safe_load(f)
            triggers = callee.get(True, callee.get("on")) or {}
            if "workflow_call" not in triggers:
                errors.append(f"{path}: job {name} calls {called}, which has no `workflow_call` trigger")
    for job, step in steps(workflow):
        script = step.get("run")
        if script is None:
            continue
        result = subprocess.run(
            ["bash", "-n"], input=EXPRESSION.sub("EXPR", script), text=True, capture_output=True
        )
        if result.returncode != 0:
            errors.append(f"{path}: job {job}, step {step.get('name', '?')!r}: {result.stderr.strip()}")
    return errors


def main() -> int:
    errors = [e for path in sys.argv[1:] for e in check(path)]
    for e in errors:
        print(e, file=sys.stderr)
    if not sys.argv[1:]:
        print(f"usage: {sys.argv[0]} WORKFLOW...", file=sys.stderr)
        return 2
    if not errors:
        print(f"{len(sys.argv) - 1} workflows: YAML, pinned actions and run scripts check out")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
