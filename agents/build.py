#!/usr/bin/env python3
"""Builds the agents tree (DESIGN §1) in Odigos's layout from the pinned inputs beside this file.

Usage:
  build.py build --out DIR [--java-agent JAR | --java-stand-in JAR]
  build.py check DIR
  build.py lock

build: a fresh tree at DIR (built beside it, then renamed into place):
  java/javaagent.jar   the OpenTelemetry Java agent given with --java-agent, checked against
                       java.json's SHA-256 (Maven Central is not reachable everywhere, so the
                       caller downloads it); --java-stand-in puts a test's jar there instead,
                       listed as "version": "test-stand-in"; neither leaves java/ out;
  python/              `pip install --target --require-hashes` of python/requirements.txt,
                       pure-Python wheels for Python 3.9 (one tree serves 3.9-3.13), and
                       python/sitecustomize.py (OTLP/HTTP unless the app sets a protocol);
  nodejs-community/    `npm ci` of nodejs-community/package-lock.json, without install
                       scripts, .bin links, TypeScript declarations or source maps, and
                       autoinstrumentation.js;
  manifest.json        {"agents": {"<dir>": {"name", "version", "source", "sha256"}}}: the
                       jar's SHA-256, or that of the lock file the directory was installed from.
Modes are normalised (directories 0755, files 0644, or 0755 where executable), owners root
when run as root; then `check` runs on the result.

check: the layout, the manifest, the modes; no setuid, setgid, device, socket or FIFO, and no
symlink that leaves the tree. Exits non-zero naming every problem.

lock: re-resolves python/requirements.in into python/requirements.txt (with hashes) and
nodejs-community/package.json into package-lock.json. Needs PyPI and npm.

Needs python3 (with pip) and npm (Node.js 18 or newer); nothing else.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# One resolution for every interpreter: pure-Python wheels for the oldest one served.
PIP_TARGET = [
    "--only-binary=:all:",
    "--python-version",
    "3.9",
    "--platform",
    "any",
    "--implementation",
    "py",
    "--abi",
    "none",
]
PYTHON_PIN = "opentelemetry-distro"
NODE_PIN = "@opentelemetry/auto-instrumentations-node"
RECIPE_FILES = {
    "java": "java/javaagent.jar",
    "python": "python/opentelemetry/instrumentation/auto_instrumentation/sitecustomize.py",
    "nodejs-community": "nodejs-community/autoinstrumentation.js",
}


class BuildError(Exception):
    """A build or check that cannot go on; the message says what and how to fix it."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run(command: list[str], cwd: Path | None = None) -> None:
    tool = command[0]
    if shutil.which(tool) is None:
        hint = {
            "npm": "install Node.js 18 or newer with npm (Debian: apt-get install nodejs npm)",
            "python3": "install python3 with pip (Debian: apt-get install python3-pip)",
        }.get(tool, f"install {tool}")
        raise BuildError(f"{tool} is not on PATH: {hint}")
    # pip's warning about running as root is noise here: the tree is a build output, not an environment.
    result = subprocess.run(command, cwd=cwd, env=dict(os.environ, PIP_ROOT_USER_ACTION="ignore"))
    if result.returncode != 0:
        raise BuildError(f"{' '.join(command)} failed with status {result.returncode}")


def pinned_version(requirements: Path, name: str) -> str:
    for line in requirements.read_text().splitlines():
        if line.startswith(f"{name}=="):
            return line.split("==", 1)[1].split()[0]
    raise BuildError(f"{requirements}: no pin for {name}")


def build_python(tree: Path) -> dict:
    requirements = HERE / "python/requirements.txt"
    target = tree / "python"
    run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        + ["--no-deps", "--require-hashes", "--no-compile", "--target", str(target)]
        + PIP_TARGET
        + ["-r", str(requirements)]
    )
    # Console scripts carry the build machine's interpreter in their shebang.
    shutil.rmtree(target / "bin", ignore_errors=True)
    shutil.copyfile(HERE / "python/sitecustomize.py", target / "sitecustomize.py")
    return {
        "name": PYTHON_PIN,
        "version": pinned_version(requirements, PYTHON_PIN),
        "source": "https://pypi.org (agents/python/requirements.txt)",
        "sha256": sha256(requirements),
    }


def build_nodejs(tree: Path) -> dict:
    target = tree / "nodejs-community"
    target.mkdir()
    for name in ["package.json", "package-lock.json", "autoinstrumentation.js"]:
        shutil.copyfile(HERE / "nodejs-community" / name, target / name)
    run(
        ["npm", "ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"]
        + ["--loglevel=error", "--cache", str(tree.parent / ".npm-cache")],
        cwd=target,
    )
    # npm links package binaries under .bin; the agents need none of them.
    for bin_dir in target.rglob(".bin"):
        if bin_dir.is_dir() and not bin_dir.is_symlink():
            shutil.rmtree(bin_dir)
    # TypeScript declarations and source maps: Node.js never loads them (source maps only
    # with --enable-source-maps, for stack traces), and they are most of the directory
    # (40 of 74 MB, 10,000 of 16,000 files at 0.81.2).
    for unused in target.joinpath("node_modules").rglob("*"):
        if unused.name.endswith((".d.ts", ".d.mts", ".d.cts", ".map")) and unused.is_file() and not unused.is_symlink():
            unused.unlink()
    lock = json.loads((target / "package-lock.json").read_text())
    version = lock["packages"][f"node_modules/{NODE_PIN}"]["version"]
    return {
        "name": NODE_PIN,
        "version": version,
        "source": "https://registry.npmjs.org (agents/nodejs-community/package-lock.json)",
        "sha256": sha256(HERE / "nodejs-community/package-lock.json"),
    }


def build_java(tree: Path, jar: Path, stand_in: bool) -> dict:
    pin = json.loads((HERE / "java.json").read_text())
    digest = sha256(jar)
    if not stand_in and digest != pin["sha256"]:
        raise BuildError(
            f"{jar}: SHA-256 {digest}, but agents/java.json pins {pin['sha256']} "
            f"for {pin['name']} {pin['version']} ({pin['source']})"
        )
    (tree / "java").mkdir()
    shutil.copyfile(jar, tree / "java/javaagent.jar")
    if stand_in:
        return {"name": "javac-built stand-in", "version": "test-stand-in", "source": str(jar), "sha256": digest}
    return dict(pin)


def normalise(tree: Path) -> None:
    """Modes as DESIGN §1 says (0755 directories, 0644 or 0755 files), owned by root as root."""
    as_root = os.geteuid() == 0
    for path in [tree, *tree.rglob("*")]:
        mode = path.lstat().st_mode
        if as_root:
            os.lchown(path, 0, 0)
        if stat.S_ISLNK(mode):
            continue
        if stat.S_ISDIR(mode):
            path.chmod(0o755)
        elif stat.S_ISREG(mode):
            path.chmod(0o755 if mode & 0o111 else 0o644)


def problems(tree: Path) -> list[str]:
    """Everything wrong with a built tree, one line each."""
    found = []
    manifest_path = tree / "manifest.json"
    try:
        agents = json.loads(manifest_path.read_text())["agents"]
    except (OSError, ValueError, KeyError) as error:
        return [f"{manifest_path}: not a manifest ({error})"]
    for directory, entry in agents.items():
        missing = {"name", "version", "source", "sha256"} - set(entry)
        if missing:
            found.append(f"manifest.json: {directory} lacks {sorted(missing)}")
        recipe_file = RECIPE_FILES.get(directory)
        if recipe_file and not (tree / recipe_file).is_file():
            found.append(f"{recipe_file}: missing (the built-in recipe names it)")
    for directory in RECIPE_FILES:
        if (tree / directory).exists() and directory not in agents:
            found.append(f"{directory}/: not in manifest.json")
    root = tree.resolve()
    for path in [tree, *tree.rglob("*")]:
        info = path.lstat()
        mode = info.st_mode
        name = path.relative_to(tree)
        if stat.S_ISLNK(mode):
            target = os.readlink(path)
            resolved = path.resolve()
            if os.path.isabs(target) or not resolved.is_relative_to(root):
                found.append(f"{name}: symlink to {target} leaves the tree")
            continue
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            found.append(f"{name}: not a file or directory (mode {oct(mode)})")
            continue
        if mode & (stat.S_ISUID | stat.S_ISGID):
            found.append(f"{name}: setuid or setgid")
        allowed = {0o755} if stat.S_ISDIR(mode) else {0o644, 0o755}
        if stat.S_IMODE(mode) not in allowed:
            found.append(f"{name}: mode {oct(stat.S_IMODE(mode))}, not {' or '.join(map(oct, sorted(allowed)))}")
        if os.geteuid() == 0 and (info.st_uid, info.st_gid) != (0, 0):
            found.append(f"{name}: owned by {info.st_uid}:{info.st_gid}, not root")
    return found


def build(out: Path, jar: Path | None, stand_in: bool) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        tree = staging / "tree"
        tree.mkdir()
        agents = {}
        if jar is not None:
            agents["java"] = build_java(tree, jar, stand_in)
        agents["python"] = build_python(tree)
        agents["nodejs-community"] = build_nodejs(tree)
        (tree / "manifest.json").write_text(json.dumps({"agents": agents}, indent=2) + "\n")
        normalise(tree)
        found = problems(tree)
        if found:
            raise BuildError("the built tree is not right:\n  " + "\n  ".join(found))
        if out.exists():
            shutil.rmtree(out)
        tree.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def lock() -> None:
    with tempfile.TemporaryDirectory() as downloads:
        run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "-d", downloads]
            + PIP_TARGET
            + ["-r", str(HERE / "python/requirements.in")]
        )
        lines = [
            "# Generated by `agents/build.py lock` from requirements.in: every wheel pinned by hash.",
        ]
        for wheel in sorted(Path(downloads).iterdir()):
            name, version = wheel.name.split("-")[:2]
            lines.append(f"{name.replace('_', '-').lower()}=={version} \\\n    --hash=sha256:{sha256(wheel)}")
        (HERE / "python/requirements.txt").write_text("\n".join(lines) + "\n")
    node = HERE / "nodejs-community"
    (node / "package-lock.json").unlink(missing_ok=True)
    run(["npm", "install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=node)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build_command = commands.add_parser("build", help="build the tree")
    build_command.add_argument("--out", type=Path, required=True)
    java = build_command.add_mutually_exclusive_group()
    java.add_argument("--java-agent", type=Path, help="the downloaded opentelemetry-javaagent jar")
    java.add_argument("--java-stand-in", type=Path, help="a test's stand-in jar")
    check_command = commands.add_parser("check", help="check a built tree")
    check_command.add_argument("tree", type=Path)
    commands.add_parser("lock", help="regenerate the lock files")
    args = parser.parse_args()
    try:
        if args.command == "build":
            build(args.out.resolve(), args.java_agent or args.java_stand_in, args.java_stand_in is not None)
        elif args.command == "check":
            found = problems(args.tree)
            if found:
                raise BuildError(f"{args.tree}:\n  " + "\n  ".join(found))
        else:
            lock()
    except BuildError as error:
        print(f"agents/build.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
