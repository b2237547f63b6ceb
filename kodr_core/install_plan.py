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

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Literal

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
            whys.append(
                f"{', '.join(python)}: a project .venv (what goes in is read from the manifests at install time)"
            )
        else:
            env = python_env(set(files), read)
            commands += env.commands()
            whys.append(
                "python: " + "; ".join(env.why) + (" (dropped: " + "; ".join(env.dropped) + ")" if env.dropped else "")
            )
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


# -- hostile manifests: the dependency-source policy lives in kodr_core.sources --------

from kodr_core.sources import (  # noqa: E402,F401 - re-exported for existing callers
    MANIFEST_CHECKS,
    check_manifests,
    check_package_json,
    check_pyproject_toml,
    check_requirements_txt,
)
