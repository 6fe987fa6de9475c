#!/usr/bin/env python3
"""Checks that dependencies between the workspace's crates point the right way.

Every workspace member declares its layer in its manifest:

    [package.metadata.sigil]
    layer = "pure"   # or adapter, authority, http, front-end, glue, device, tool

and the check enforces, on NORMAL dependencies only (dev- and build-dependencies do not count),
with every feature of the crate on (an optional dependency is a dependency), followed
transitively and on every target platform:

  pure       no tokio, axum, hyper, sqlx, sqlx-*, rumqttc, reqwest; no non-pure workspace crate
  adapter    (I/O the authority uses: storage, the broker's client) as authority, and no
             authority crate either
  authority  no axum, hyper, reqwest, tower, tower-http; no front-end, http or glue crate
  http       no front-end or glue crate
  front-end  no other front-end crate, no glue crate
  glue       no tool crate (and neither may any layer above: tools such as the test kit are
             dev-dependencies of the product, never normal ones)
  device     (what runs on a device: the agent) no adapter, authority, http, front-end, glue
             or tool crate
  tool       no rules

A member without a layer, or with an unknown one, is an error: every new crate has to say where
it sits.

Each violation is one line with the shortest path to the forbidden crate. A forbidden external
crate reached only through another one (tokio behind axum) is not listed again; what a forbidden
workspace crate brings in is.

Why `cargo tree -p CRATE --all-features` per crate and not the resolve graph of one `cargo
metadata`: that graph has the features of the whole workspace unified, so an optional tokio of a
third-party crate that only the glue crate switches on would show up under the pure crates as
well. Per crate, every feature of the crate itself is on (its own optional dependencies count),
and what it turns on in its dependencies, as `cargo build -p CRATE --all-features` would.

Usage: python3 scripts/check-deps.py [--manifest-path PATH/Cargo.toml] [--locked] [--host-only]

Exit status: 0 clean, 1 violations, 2 the check itself could not run (cargo failed, or printed
nothing it can read; or the crates of other platforms cannot be had and --host-only was not
given: failing closed).
Nothing is compiled: only `cargo metadata --no-deps` and `cargo tree` are run.
"""

import argparse
import json
import os
import re
import subprocess
import sys
from collections import deque
from pathlib import Path

LAYERS = ("pure", "adapter", "authority", "http", "front-end", "glue", "device", "tool")

# Crates that bring I/O, a runtime, a database, MQTT or HTTP: a pure crate may reach none of
# them. A denylist cannot name every such crate; it names the runtimes and clients the
# ecosystem builds on (most others depend on one of these, and are caught through it).
PURE_FORBIDDEN = {
    "tokio", "mio", "async-std", "smol", "axum", "hyper", "tower", "reqwest", "ureq", "isahc",
    "surf", "sqlx", "rusqlite", "postgres", "tokio-postgres", "diesel", "rumqttc", "paho-mqtt",
    "async-nats", "redis", "lapin",
}
PURE_FORBIDDEN_PREFIXES = ("sqlx-", "tokio-", "hyper-", "axum-", "tower-")
# The authority does no HTTP (server or client).
AUTHORITY_FORBIDDEN = {"axum", "hyper", "reqwest", "ureq", "isahc", "surf", "tower"}
AUTHORITY_FORBIDDEN_PREFIXES = ("axum-", "hyper-", "tower-")

# layer -> (forbidden external crate names, forbidden name prefixes, forbidden workspace layers).
# For pure, "every layer but pure" also covers members with no or an unknown layer (fail closed).
RULES = {
    "pure": (PURE_FORBIDDEN, PURE_FORBIDDEN_PREFIXES, None),
    "adapter": (
        AUTHORITY_FORBIDDEN,
        AUTHORITY_FORBIDDEN_PREFIXES,
        {"authority", "front-end", "http", "glue", "device", "tool"},
    ),
    "authority": (
        AUTHORITY_FORBIDDEN,
        AUTHORITY_FORBIDDEN_PREFIXES,
        {"front-end", "http", "glue", "device", "tool"},
    ),
    "http": (set(), (), {"front-end", "glue", "device", "tool"}),
    "front-end": (set(), (), {"front-end", "glue", "device", "tool"}),
    # The product never links a tool (the test kit is a dev-dependency of the product's tests).
    "glue": (set(), (), {"device", "tool"}),
    # What runs on a device (the agent) links none of the server.
    "device": (set(), (), {"adapter", "authority", "http", "front-end", "glue", "tool"}),
}

# How cargo is allowed to get the dependency graph, tried in order. `--target all` counts
# platform-specific dependencies too, but needs every platform's crates in the local cache:
# offline first (fast, no network), then online. Checking the host platform only would miss a
# dependency of another platform, so it is used only when asked for (--host-only).
MODES = (
    ("offline", ["--offline", "--target", "all"]),
    ("online", ["--target", "all"]),
)
HOST_ONLY_MODES = (("offline, host platform only", ["--offline"]),)


def run_cargo(args):
    env = dict(os.environ, CARGO_TERM_COLOR="never")
    return subprocess.run(["cargo", *args], capture_output=True, text=True, env=env)


def fail(message, stderr=""):
    print(f"check-deps: {message}", file=sys.stderr)
    if stderr:
        print(stderr.rstrip(), file=sys.stderr)
    sys.exit(2)


def workspace_members(manifest, extra):
    """Name -> {id, dir, layer} for every workspace member (no dependency resolution)."""
    base = ["metadata", "--format-version", "1", "--no-deps", "--manifest-path", manifest, *extra]
    out = run_cargo([*base, "--offline"])
    if out.returncode != 0:
        out = run_cargo(base)
    if out.returncode != 0:
        fail("cargo metadata failed", out.stderr)
    meta = json.loads(out.stdout)
    ids = set(meta["workspace_members"])
    members = {}
    for pkg in meta["packages"]:
        if pkg["id"] not in ids:
            continue
        sigil = (pkg.get("metadata") or {}).get("sigil") or {}
        members[pkg["name"]] = {
            "id": pkg["id"],
            "dir": str(Path(pkg["manifest_path"]).parent),
            "manifest": pkg["manifest_path"],
            "layer": sigil.get("layer") if isinstance(sigil, dict) else None,
        }
    return members


class Tree:
    """The normal-dependency graph of one crate, read from `cargo tree --prefix depth`."""

    # "3tokio v1.54.1", "1sigil-domain v0.1.0 (/path/crates/sigil-domain)", "... (*)"
    LINE = re.compile(r"^(\d+)(\S+) (.*?)( \(\*\))?$")

    def __init__(self, text):
        self.names = {}  # node key -> crate name
        self.edges = {}  # node key -> [child node keys]
        self.root = None
        stack = []  # node key at each depth on the current branch
        for line in text.splitlines():
            m = self.LINE.match(line)
            if not m:
                continue
            depth, name, rest = int(m.group(1)), m.group(2), m.group(3)
            # Name, version and source identify a package; "(*)" only marks a repeat.
            key = f"{name} {rest}"
            self.names[key] = name
            self.edges.setdefault(key, [])
            del stack[depth:]
            if depth == 0:
                self.root = key
            else:
                self.edges[stack[-1]].append(key)
            stack.append(key)

    def paths(self, blocked):
        """Shortest path from the root to every node, not walking through `blocked` nodes.

        Blocked nodes are still reached (and get a path); only what lies behind them is not.
        """
        parent = {self.root: None}
        queue = deque([self.root])
        while queue:
            node = queue.popleft()
            if node != self.root and blocked(node):
                continue
            for child in self.edges.get(node, ()):
                if child not in parent:
                    parent[child] = node
                    queue.append(child)
        result = {}
        for node in parent:
            path, step = [], node
            while step is not None:
                path.append(self.names[step])
                step = parent[step]
            result[node] = list(reversed(path))
        return result


class TreeRunner:
    """Runs `cargo tree` for one crate, remembering which mode last worked."""

    def __init__(self, manifest, extra, host_only):
        self.manifest = manifest
        self.extra = extra
        self.modes = HOST_ONLY_MODES if host_only else MODES
        self.mode = 0

    def tree(self, package_id):
        # Every feature of the crate itself: an optional dependency is a dependency (some other
        # crate of the build may well switch it on).
        base = ["tree", "--manifest-path", self.manifest, "-e", "normal", "-p", package_id,
                "--all-features", "--prefix", "depth", "--format", "{p}", *self.extra]
        errors = ""
        for i in range(self.mode, len(self.modes)):
            _, flags = self.modes[i]
            out = run_cargo([*base, *flags])
            if out.returncode == 0:
                self.mode = i
                tree = Tree(out.stdout)
                if tree.root is None:
                    fail(f"cargo tree printed nothing this check can read for {package_id}",
                         out.stdout[:2000])
                return tree
            errors = out.stderr
        fail(f"cargo tree failed for {package_id}", errors)


def main():
    default_manifest = Path(__file__).resolve().parent.parent / "Cargo.toml"
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest-path", default=str(default_manifest))
    parser.add_argument("--locked", action="store_true",
                        help="pass --locked to cargo (never rewrite Cargo.lock; for CI)")
    parser.add_argument("--host-only", action="store_true",
                        help="check this platform's dependencies only (offline, when the crates "
                             "of other platforms cannot be had)")
    args = parser.parse_args()
    extra = ["--locked"] if args.locked else []

    members = workspace_members(args.manifest_path, extra)

    def member_of(key, name):
        # A workspace member is known by its name and its path (a registry crate could share
        # the name); cargo prints the path in parentheses after the version.
        m = members.get(name)
        return name if m and f"({m['dir']})" in key else None

    # Printed as found, so that what was found is shown even if cargo fails later on.
    problems = []

    def report(line):
        problems.append(line)
        print(line, flush=True)

    for name, m in sorted(members.items()):
        layer = m["layer"]
        if layer is None:
            report(f"{name}: no layer declared; add [package.metadata.sigil] layer = \"...\" "
                   f"to {m['manifest']} (one of {', '.join(LAYERS)})")
        elif layer not in LAYERS:
            report(f"{name}: unknown layer {layer!r} in {m['manifest']} "
                   f"(one of {', '.join(LAYERS)})")

    runner = TreeRunner(args.manifest_path, extra, args.host_only)
    for name, m in sorted(members.items()):
        layer = m["layer"]
        if layer not in RULES:
            continue
        names, prefixes, layers = RULES[layer]
        tree = runner.tree(m["id"])

        def external(key):
            """The forbidden external crate at this node, if it is one."""
            dep = tree.names[key]
            if member_of(key, dep) is None and (dep in names or dep.startswith(prefixes)):
                return dep
            return None

        def member(key):
            """The forbidden workspace crate at this node, if it is one."""
            dep = member_of(key, tree.names[key])
            if dep is None:
                return None
            dep_layer = members[dep]["layer"]
            # pure: anything but another pure crate (a member without a layer included).
            allowed = dep_layer == "pure" if layers is None else dep_layer not in layers
            return None if allowed else dep

        # Walk past forbidden workspace crates, so that what they drag in is named too, but not
        # past forbidden external crates: tokio behind axum goes away with axum.
        paths = tree.paths(blocked=lambda key: external(key) is not None)
        for key, path in sorted(paths.items(), key=lambda kv: (len(kv[1]), kv[1])):
            if key == tree.root:
                continue
            route = " -> ".join(path)
            if dep := member(key):
                dep_layer = members[dep]["layer"] or "no layer"
                report(f"{name} ({layer}) must not depend on {dep} ({dep_layer}): {route}")
            elif dep := external(key):
                report(f"{name} ({layer}) must not depend on {dep}: {route}")

    if problems:
        print(f"dependency rules: {len(problems)} violation(s)")
        return 1
    print(f"dependency rules: {len(members)} crates checked, all clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
