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
  package.json), ``npm install`` otherwise.
* Python: ``uv sync`` (``--frozen`` with a uv.lock, so the lock is used as-is and
  never rewritten) for pyproject.toml; for requirements.txt a workspace ``.venv``
  made by uv and filled by ``uv pip install``. Both land in ``<workspace>/.venv``,
  which is where the process runner looks for ``pytest`` first.
* A workspace with both package.json and a Python manifest installs both, node
  first (kind is the first one found).
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from typing import Callable, Literal, Mapping

from kodr_core.errors import RefusedInput

NODE_MANIFESTS = ("package.json", "package-lock.json", "npm-shrinkwrap.json")
PYTHON_MANIFESTS = ("pyproject.toml", "uv.lock", "requirements.txt")
#: The dependency manifests: a heal turn that changes none of them skips the install.
MANIFESTS = NODE_MANIFESTS + PYTHON_MANIFESTS

NPM_FLAGS = ["--no-audit", "--no-fund", "--ignore-scripts"]


@dataclass(frozen=True)
class InstallPlan:
    commands: list[list[str]]
    kind: Literal["node", "python"]
    manifests: list[str]  # the manifests the plan was chosen from
    why: str


def plan_install(files: set[str]) -> InstallPlan:
    """The install commands for a workspace whose top-level file names are ``files``.

    Raises RefusedInput when no recognised manifest is there.
    """
    top = {f for f in files if "/" not in f}
    commands: list[list[str]] = []
    manifests: list[str] = []
    whys: list[str] = []
    kind: str | None = None

    if "package.json" in top:
        kind = "node"
        lock = next((n for n in ("package-lock.json", "npm-shrinkwrap.json") if n in top), None)
        if lock:
            commands.append(["npm", "ci", *NPM_FLAGS])
            manifests += ["package.json", lock]
            whys.append(f"package.json with {lock}: npm ci (lockfile as-is)")
        else:
            commands.append(["npm", "install", *NPM_FLAGS])
            manifests.append("package.json")
            whys.append("package.json without a lockfile: npm install")

    if "pyproject.toml" in top:
        kind = kind or "python"
        if "uv.lock" in top:
            commands.append(["uv", "sync", "--frozen"])
            manifests += ["pyproject.toml", "uv.lock"]
            whys.append("pyproject.toml with uv.lock: uv sync --frozen")
        else:
            commands.append(["uv", "sync"])
            manifests.append("pyproject.toml")
            whys.append("pyproject.toml without uv.lock: uv sync")
    elif "requirements.txt" in top:
        kind = kind or "python"
        commands += [
            ["uv", "venv", ".venv"],
            ["uv", "pip", "install", "--python", ".venv/bin/python", "-r", "requirements.txt"],
        ]
        manifests.append("requirements.txt")
        whys.append("requirements.txt: uv venv .venv, then uv pip install -r requirements.txt")

    if kind is None:
        raise RefusedInput(
            "no dependency manifest kodr knows how to install: looked for "
            + ", ".join(MANIFESTS)
            + " at the workspace's top level"
        )
    return InstallPlan(commands=commands, kind=kind, manifests=manifests, why="; ".join(whys))  # type: ignore[arg-type]


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
