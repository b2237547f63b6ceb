"""Choose how to install a workspace's dependencies: a fixed allowlist of argv lists.

The plan is derived only from which manifest files exist at the workspace's top
level, never from text a model wrote, so no part of it can smuggle a shell in.

Decisions:

* npm always gets ``--ignore-scripts``: dependencies' ``preinstall``/``postinstall``
  scripts are arbitrary code execution chosen by whoever wrote the manifest (here:
  a model). Packages that need a native build step will then fail at use, which
  the test run reports honestly. ``--no-audit --no-fund`` keep the output about
  the install.
* ``npm ci`` when a lockfile exists (reproducible, fails if it disagrees with
  package.json), ``npm install`` otherwise. The lockfile present picks the package
  manager: ``pnpm install --frozen-lockfile`` for pnpm-lock.yaml, ``yarn install
  --frozen-lockfile`` for yarn.lock (yarn classic; both with ``--ignore-scripts``),
  npm's lockfiles winning when several are there.
* Python: one project environment, ``<workspace>/.venv``, holding the project
  (editable), its test extras/groups/requirements, pytest and the plugins its
  pytest config needs (see :mod:`kodr_core.python_env`): ``uv venv`` then one
  ``uv pip install``; with a uv.lock, ``uv sync --frozen`` (the lock as-is, never
  rewritten) plus the test tools. Not a bare ``uv sync``: it installs neither
  pytest nor test extras, and "succeeds" on a pyproject without ``[project]``.
  The test command then runs in that environment (:mod:`adapters.toolchain`).
* A workspace with both package.json and a Python manifest installs both, node
  first (kind is the first one found).
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from typing import Callable, Collection, Literal, Mapping

from kodr_core.errors import RefusedInput
from kodr_core.python_env import python_env

NODE_MANIFESTS = ("package.json", "package-lock.json", "npm-shrinkwrap.json", "pnpm-lock.yaml", "yarn.lock")
PYTHON_MANIFESTS = ("pyproject.toml", "uv.lock", "requirements.txt", "setup.py", "setup.cfg", "tox.ini")
#: Top-level files that make a workspace a Python project to install.
PYTHON_SOURCES = ("pyproject.toml", "setup.py", "setup.cfg", "requirements.txt", "tox.ini")
#: The dependency manifests: a heal turn that changes none of them skips the install.
MANIFESTS = NODE_MANIFESTS + PYTHON_MANIFESTS

NPM_FLAGS = ["--no-audit", "--no-fund", "--ignore-scripts"]


@dataclass(frozen=True)
class InstallPlan:
    commands: list[list[str]]
    kind: Literal["node", "python"]
    manifests: list[str]  # the manifests the plan was chosen from
    why: str


def plan_install(files: set[str], read: Callable[[str], bytes | None] | None = None) -> InstallPlan:
    """The install commands for a workspace whose file names are ``files``.

    ``read`` gives a manifest's bytes: with it, the Python part is the full plan of
    :func:`kodr_core.python_env.python_env` (extras, groups, pytest, plugins); without
    it (decide works from file names alone) a preview of its shape. Raises
    RefusedInput when no recognised manifest is there, or a Python manifest gives
    nothing to install (a pyproject.toml without ``[project]``).
    """
    top = {f for f in files if "/" not in f}
    commands: list[list[str]] = []
    manifests: list[str] = []
    whys: list[str] = []
    kind: str | None = None

    if "package.json" in top:
        kind = "node"
        lock = next((n for n in ("package-lock.json", "npm-shrinkwrap.json") if n in top), None)
        if lock is None and "pnpm-lock.yaml" in top:
            commands.append(["pnpm", "install", "--frozen-lockfile", "--ignore-scripts"])
            manifests += ["package.json", "pnpm-lock.yaml"]
            whys.append("package.json with pnpm-lock.yaml: pnpm install --frozen-lockfile")
        elif lock is None and "yarn.lock" in top:
            commands.append(["yarn", "install", "--frozen-lockfile", "--ignore-scripts", "--non-interactive"])
            manifests += ["package.json", "yarn.lock"]
            whys.append("package.json with yarn.lock: yarn install --frozen-lockfile")
        elif lock:
            commands.append(["npm", "ci", *NPM_FLAGS])
            manifests += ["package.json", lock]
            whys.append(f"package.json with {lock}: npm ci (lockfile as-is)")
        else:
            commands.append(["npm", "install", *NPM_FLAGS])
            manifests.append("package.json")
            whys.append("package.json without a lockfile: npm install")

    python = [m for m in PYTHON_SOURCES if m in top]
    if python:
        kind = kind or "python"
        if read is None:  # the preview decide records; the engine plans again with the texts
            commands.append(["uv", "venv", "--allow-existing", ".venv"])
            commands.append(["uv", "pip", "install", "--python", ".venv/bin/python", "..."])
            whys.append(f"{', '.join(python)}: a project .venv (what goes in is read from the manifests at install time)")
        else:
            env = python_env(set(files), read)
            commands += env.commands()
            whys.append("python: " + "; ".join(env.why) + (" (dropped: " + "; ".join(env.dropped) + ")" if env.dropped else ""))
        manifests += python

    if kind is None:
        raise RefusedInput(
            "no dependency manifest kodr knows how to install: looked for "
            + ", ".join(MANIFESTS)
            + " at the workspace's top level"
        )
    return InstallPlan(commands=commands, kind=kind, manifests=manifests, why="; ".join(whys))  # type: ignore[arg-type]


#: Lockfiles, by the manifest whose change makes them stale.
LOCKS_OF = {"package.json": ("package-lock.json", "npm-shrinkwrap.json", "pnpm-lock.yaml", "yarn.lock"),
            "pyproject.toml": ("uv.lock",)}  # fmt: skip


def stale_locks(changed: Collection[str]) -> set[str]:
    """Lockfiles a repair left behind its manifest: it changed package.json (pyproject.toml)
    and not the lockfile. A frozen install from them would fail; the plan ignores them, so
    the package manager refreshes the lock (and the install records the new one)."""
    return {lock for m, locks in LOCKS_OF.items() if m in changed for lock in locks if lock not in changed}


def manifests_changed(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """Top-level manifests whose sha differs (added, removed or edited), sorted."""
    return sorted(m for m in MANIFESTS if before.get(m) != after.get(m))


# -- hostile package.json ---------------------------------------------------------

DEPENDENCY_FIELDS = (
    "dependencies",
    "devDependencies",
    "optionalDependencies",
    "peerDependencies",
)
_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|[\w.-]+@[\w.-]+:)", re.I)
_GITHUB_SHORTHAND = re.compile(r"^[\w.-]+/[\w.-]+(?:#.*)?$")
_LOCAL_PREFIXES = ("file:", "link:")


def check_package_json(text: str) -> list[str]:
    """Problems that make kodr refuse to install this package.json ([] when fine).

    Refused: text that is not a JSON object; dependency maps that are not objects of
    strings; specs that fetch code from outside the registry (``http(s):``, ``git…:``,
    ``github:``-style and ``user/repo`` shorthands), since they bypass the registry
    kodr is meant to use and can point anywhere; and ``file:``/``link:``/path specs
    that leave the workspace (absolute, ``~``, or climbing with ``..``). Registry
    versions, ranges, tags and ``npm:`` aliases are allowed; ``overrides`` are
    checked the same way, and ``workspaces`` folders must stay inside. Lifecycle scripts are
    not checked here: the install runs with ``--ignore-scripts``.
    """
    try:
        data = json.loads(text)
    except ValueError as e:
        return [f"package.json is not valid JSON: {e}"]
    if not isinstance(data, dict):
        return ["package.json must be a JSON object"]
    problems: list[str] = []
    for field in DEPENDENCY_FIELDS:
        deps = data.get(field)
        if deps is None:
            continue
        if not isinstance(deps, dict):
            problems.append(f"{field} must be an object")
            continue
        for name, spec in deps.items():
            if not isinstance(spec, str):
                problems.append(f"{field}.{name}: spec must be a string")
                continue
            why = _spec_problem(spec.strip())
            if why:
                problems.append(f"{field}.{name}: {spec!r} {why}")
    problems += _check_overrides(data.get("overrides"), "overrides")
    workspaces = data.get("workspaces")
    if isinstance(workspaces, dict):
        workspaces = workspaces.get("packages")
    for w in workspaces if isinstance(workspaces, list) else []:
        if isinstance(w, str) and _spec_problem("file:" + w):
            problems.append(f"workspaces: {w!r} points outside the workspace")
    return problems


def _check_overrides(node: object, where: str) -> list[str]:
    """npm ``overrides`` nest objects of specs; a spec there fetches code too."""
    if isinstance(node, str):
        why = _spec_problem(node.strip()) if not node.startswith("$") else None
        return [f"{where}: {node!r} {why}"] if why else []
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _check_overrides(v, f"{where}.{k}")]
    return []


def _spec_problem(spec: str) -> str | None:
    local = None
    for prefix in _LOCAL_PREFIXES:
        if spec.startswith(prefix):
            local = spec[len(prefix) :]
    if local is None and spec.startswith(("./", "../", "/", "~")):
        local = spec
    if local is not None:
        if local.startswith(("/", "~")) or re.match(r"^[a-zA-Z]:[\\/]", local):
            return "points outside the workspace"
        norm = posixpath.normpath(local.replace("\\", "/"))
        if norm == ".." or norm.startswith("../"):
            return "points outside the workspace"
        return None
    if spec.startswith("npm:"):  # an alias of a registry package
        return None
    if _REMOTE.match(spec):
        return "fetches code from outside the npm registry (URL or git)"
    if _GITHUB_SHORTHAND.match(spec):
        return "is a GitHub shorthand (fetches code from outside the npm registry)"
    return None


# -- Python manifests ---------------------------------------------------------------

#: pip/uv options that change where code comes from, or read more files.
_REQ_REFUSED_OPTIONS = ("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host",
                        "-e", "--editable", "-r", "--requirement", "-c", "--constraint", "--no-index")
_REQ_REMOTE = re.compile(r"(^|@\s*|\s)(git\+|hg\+|svn\+|bzr\+|https?://|ftp://|file:)", re.I)


def check_requirements_txt(text: str) -> list[str]:
    """Problems that make kodr refuse a requirements.txt ([] when fine).

    Only registry requirements are installed: options that add indexes, find-links
    or other files, editable installs, URL/VCS requirements and local paths are
    refused, for the same reason as package.json's remote specs.
    """
    problems = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        head = line.split()[0].split("=", 1)[0]
        if head.startswith("-"):
            if head in _REQ_REFUSED_OPTIONS or any(head.startswith(o) for o in ("-i", "-f", "-e", "-r", "-c")):
                problems.append(f"requirements.txt line {n}: option {head!r} is refused")
            continue
        if _REQ_REMOTE.search(line):
            problems.append(f"requirements.txt line {n}: {line!r} fetches code from outside the package index")
        elif line.startswith((".", "/", "~")) or re.match(r"^[a-zA-Z]:[\\/]", line):
            problems.append(f"requirements.txt line {n}: {line!r} is a local path")
    return problems


def check_pyproject_toml(text: str) -> list[str]:
    """Problems that make kodr refuse a pyproject.toml for ``uv sync`` ([] when fine).

    Refused: invalid TOML; extra or replacement indexes (``[[tool.uv.index]]``,
    ``index-url``…); ``[tool.uv.sources]`` entries that are git/URL sources or paths
    leaving the workspace; and direct URL references in dependency lists.
    """
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return [f"pyproject.toml is not valid TOML: {e}"]
    problems: list[str] = []
    uv = (data.get("tool") or {}).get("uv") or {}
    for key in ("index", "index-url", "extra-index-url", "find-links"):
        if key in uv:
            problems.append(f"[tool.uv] {key} is refused: only the default package index is used")
    for name, source in (uv.get("sources") or {}).items():
        for s in source if isinstance(source, list) else [source]:
            if not isinstance(s, dict):
                continue
            if "git" in s or "url" in s:
                problems.append(f"[tool.uv.sources] {name}: git/URL sources are refused")
            if "path" in s and _spec_problem("file:" + str(s["path"])):
                problems.append(f"[tool.uv.sources] {name}: path {s['path']!r} points outside the workspace")
    project = data.get("project") or {}
    deps = list(project.get("dependencies") or [])
    for extra in (project.get("optional-dependencies") or {}).values():
        deps += list(extra or [])
    for group in (data.get("dependency-groups") or {}).values():
        deps += [d for d in group or [] if isinstance(d, str)]
    for dep in deps:
        if isinstance(dep, str) and _REQ_REMOTE.search(dep):
            problems.append(f"dependency {dep!r} fetches code from outside the package index")
    return problems


#: The manifest checks kodr runs before an install, by file name.
MANIFEST_CHECKS = {
    "package.json": check_package_json,
    "requirements.txt": check_requirements_txt,
    "pyproject.toml": check_pyproject_toml,
}


def check_manifests(read: Callable[[str], bytes | None]) -> list[str]:
    """Every problem in the workspace's top-level manifests; ``read`` gives a file's bytes."""
    problems: list[str] = []
    for name, check in MANIFEST_CHECKS.items():
        data = read(name)
        if data is not None:
            problems += check(data.decode("utf-8", "replace"))
    return problems
