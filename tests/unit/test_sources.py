"""The dependency-source policy and the secret scrubber, on real lockfiles and planted values."""

from __future__ import annotations

from pathlib import Path

import pytest

from kodr_core.secrets import Scrubber, looks_secret, secrets_in
from kodr_core.sources import (
    DependencySources,
    check_manifests,
    check_npmrc,
    check_package_lock,
    check_pyproject_toml,
    check_requirements_txt,
    check_uv_lock,
)

FIX = Path(__file__).parent / "fixtures"


def test_real_lockfiles_from_the_public_registries_pass() -> None:
    """Written by `npm install --package-lock-only` and `uv lock` against npmjs.org and PyPI."""
    assert check_package_lock((FIX / "real-package-lock.json").read_text()) == []
    assert check_uv_lock((FIX / "real-uv.lock").read_text()) == []


def test_a_configured_registry_replaces_the_default() -> None:
    mirror = DependencySources.of(
        {"KODR_PYPI_INDEX": "https://mirror.example/simple", "KODR_NPM_REGISTRY": "https://npm.mirror.example"}
    )
    assert mirror.npm_registry == "https://npm.mirror.example/"
    assert check_uv_lock((FIX / "real-uv.lock").read_text(), mirror)  # pypi.org is now someone else's index
    lock = (FIX / "real-uv.lock").read_text().replace("https://pypi.org/simple", "https://mirror.example/simple")
    lock = lock.replace("files.pythonhosted.org", "mirror.example")
    assert check_uv_lock(lock, mirror) == []
    assert DependencySources.of({}) == DependencySources()


@pytest.mark.parametrize("text", ["save-exact=true\n", "# comment\nloglevel=warn\n", "", "fund=false\naudit=false\n"])
def test_harmless_npmrc_passes(text: str) -> None:
    assert check_npmrc(text) == []


@pytest.mark.parametrize(
    "key",
    [
        "global",
        "prefix",
        "registry",
        "cache",
        "userconfig",
        "globalconfig",
        "script-shell",
        "ignore-scripts",
        "node-options",
        "git",
        "bin-links",
        "foreground-scripts",
    ],
)
def test_npmrc_keys_outside_the_allowlist_are_refused(key: str) -> None:
    assert check_npmrc(f"{key}=x\n")


@pytest.mark.parametrize("req", ["six", "six==1.17.0", "six>=1; python_version>'3'", "pytest[testing]>=8"])
def test_index_requirements_pass(req: str) -> None:
    assert check_requirements_txt(req + "\n") == []


@pytest.mark.parametrize(
    "req",
    [
        "pkg @ ../../outside",
        "pkg @ /abs/path",
        "pkg @ file:///x",
        "pkg @ https://x/y.whl",
        "pkg@git+https://x/y",
        "../sibling",
    ],
)
def test_direct_references_leaving_the_index_are_refused(req: str) -> None:
    assert check_requirements_txt(req + "\n")
    assert check_pyproject_toml(f'[project]\nname = "a"\ndependencies = ["{req}"]\n')


def test_workspace_paths_and_build_system_from_the_index_pass() -> None:
    text = (
        '[project]\nname = "a"\ndependencies = ["b"]\n[tool.uv.sources]\nb = { path = "packages/b" }\n'
        '[tool.uv.workspace]\nmembers = ["packages/*"]\n[build-system]\nrequires = ["hatchling"]\n'
        'build-backend = "hatchling.build"\n'
    )
    assert check_pyproject_toml(text) == []


def test_check_manifests_reads_config_files_in_subfolders() -> None:
    files = {"package.json": b'{"name": "a"}', "pkgs/x/.npmrc": b"prefix=/usr\n", "pkgs/x/uv.toml": b""}
    problems = check_manifests(files.get, files)
    assert any("pkgs/x/.npmrc" in p for p in problems) and any("pkgs/x/uv.toml" in p for p in problems)


def test_scrubber_replaces_raw_and_json_escaped_values() -> None:
    env = {
        "KODR_API_KEY": 'sk-abc"def\\ghi',
        "MY_DB_PASSWORD": "hunter2-long",
        "SHORT_TOKEN": "abc",
        "PATH": "/usr/bin",
        "KODR_DATABASE_URL": "postgresql://u:pg-pass-123@h/db",
    }
    found = secrets_in(env)
    assert set(found.values()) == {"KODR_API_KEY", "MY_DB_PASSWORD", "KODR_DATABASE_URL"}  # short ones are kept
    s = Scrubber(found)
    import json

    blob = json.dumps({"k": env["KODR_API_KEY"], "p": "x hunter2-long y", "u": env["KODR_DATABASE_URL"]})
    out = s.text(blob)
    assert "def" not in out and "hunter2" not in out and "pg-pass" not in out
    assert "[secret:KODR_API_KEY]" in out and "[secret:MY_DB_PASSWORD]" in out
    assert s.bytes(b"a hunter2-long b") == b"a [secret:MY_DB_PASSWORD] b"
    assert Scrubber({}).text("unchanged") == "unchanged"


@pytest.mark.parametrize(
    ("path", "secret"),
    [
        (".env", True),
        (".env.local", True),
        ("config/.env.production", True),
        ("certs/server.pem", True),
        ("id_rsa", True),
        ("keys/id_ed25519.pub", True),
        (".netrc", True),
        ("src/env.py", False),
        ("id_utils.py", False),
        ("README.md", False),
        ("environment.yml", False),
    ],
)
def test_secret_looking_files(path: str, secret: bool) -> None:
    assert looks_secret(path) is secret


def test_npmrc_is_secret_looking_only_with_auth_lines() -> None:
    assert looks_secret(".npmrc", {".npmrc": b"//registry.npmjs.org/:_authToken=x\n"}.get)
    assert not looks_secret(".npmrc", {".npmrc": b"save-exact=true\n"}.get)
