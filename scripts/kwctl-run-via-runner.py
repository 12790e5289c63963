#!/usr/bin/env python3
"""A stand-in for `kwctl run`, to check e2e.bats on machines where kwctl cannot be installed.

Usage (as e2e.bats calls kwctl): kwctl-run-via-runner.py run POLICY -r REQUEST --settings-json JSON

It evaluates the request in this repository's waPC host (`runner run`, the same host the
integration tests use) and prints what `kwctl run` prints: an AdmissionResponse with a
base64 JSON patch. Invalid settings exit non-zero with the message, as kwctl does. It checks
the test file's logic and our policy, not kwctl: the release workflow runs e2e.bats with
the real kwctl. `just e2e-tests-local` puts it on PATH as `kwctl`.
"""

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    parser = argparse.ArgumentParser(prog="kwctl")
    parser.add_argument("command", choices=["run"])
    parser.add_argument("policy")
    parser.add_argument("-r", "--request-path", required=True)
    parser.add_argument("--settings-json", default="{}")
    args = parser.parse_args()

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as settings:
        settings.write(args.settings_json)
    runner = os.environ.get("RUNNER", os.path.join(ROOT, "target/debug/runner"))
    try:
        result = subprocess.run(
            [runner, "run", "--policy", args.policy, "--settings", settings.name,
             "--request", args.request_path],
            capture_output=True, text=True,
        )
    finally:
        os.unlink(settings.name)
    # runner: 0 accepted, 2 rejected, anything else an error such as invalid settings.
    if result.returncode not in (0, 2):
        sys.stderr.write(result.stderr)
        return 1
    verdict = json.loads(result.stdout)
    with open(args.request_path, encoding="utf-8") as f:
        request = json.load(f)
    response = {"uid": request.get("uid", ""), "allowed": verdict["accepted"]}
    if verdict.get("patch"):
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(verdict["patch"]).encode()).decode()
    if not verdict["accepted"]:
        response["status"] = {"message": verdict.get("message"), "code": verdict.get("code")}
    if verdict.get("warnings"):
        response["warnings"] = verdict["warnings"]
    print(json.dumps(response, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
