#!/usr/bin/env python3
"""Applies a policy's JSON patch to its request, as the API server would apply it to the pod.

Usage: apply_patch.py REQUEST.json < RESPONSE.json > NEW_REQUEST.json

RESPONSE is what `kwctl run` prints (an AdmissionResponse: `patch` is base64 of an RFC 6902
patch). NEW_REQUEST is REQUEST with `object` replaced by the patched pod: e2e.bats inspects
it, and runs the policy on it again to check idempotence. Supports the operations a
`json_patch::diff` produces (add, remove, replace) and fails on any other.
"""

import base64
import json
import sys


def unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def apply(document, operation: dict):
    op, path = operation["op"], operation["path"]
    tokens = [unescape(t) for t in path.split("/")[1:]]
    if not tokens:
        raise ValueError(f"{op} at the document root is not supported")
    parent = document
    for token in tokens[:-1]:
        parent = parent[int(token)] if isinstance(parent, list) else parent[token]
    last = tokens[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op == "add":
            parent.insert(index, operation["value"])
        elif op == "remove":
            del parent[index]
        elif op == "replace":
            parent[index] = operation["value"]
        else:
            raise ValueError(f"unsupported op {op!r} at {path}")
    else:
        if op in ("add", "replace"):
            if op == "replace" and last not in parent:
                raise ValueError(f"replace of a missing member at {path}")
            parent[last] = operation["value"]
        elif op == "remove":
            del parent[last]
        else:
            raise ValueError(f"unsupported op {op!r} at {path}")


def main() -> int:
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} REQUEST.json < RESPONSE.json", file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        request = json.load(f)
    response = json.load(sys.stdin)
    if "patch" in response:
        if response.get("patchType") != "JSONPatch":
            raise ValueError(f"patchType is {response.get('patchType')!r}, not JSONPatch")
        for operation in json.loads(base64.b64decode(response["patch"])):
            apply(request["object"], operation)
    json.dump(request, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
