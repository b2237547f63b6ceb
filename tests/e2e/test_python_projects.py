"""Slow: `kodr heal --install` on real small Python projects, installed from PyPI with uv.

Each project has one bug the tests catch; the model is an oracle on loopback that
answers with the fix (an `edits` hunk) only when the prompt holds the broken file
and line. What is checked: --install builds one project .venv holding the project
(editable), its test extra / setup.py extras and pytest; the typed command runs in
it; the file with the bug, reached through the package's __init__ re-export, is in
the repair context; the run passes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import events_of, kodr
from tests.support.scripted_server import ScriptedServer

pytestmark = pytest.mark.slow


def oracle(path: str, bad: str, good: str, seen: list[bool]):
    def respond(body: dict[str, Any]) -> dict[str, Any]:
        prompt = "\n".join(str(m.get("content") or "") for m in body.get("messages") or [])
        hit = f"`{path}`" in prompt and bad.strip() in prompt
        seen.append(hit)
        edits = [{"path": path, "search": bad, "replace": good}] if hit else []
        return {"summary": "fix" if hit else "no change", "files": [], "edits": edits, "notes": None}

    return respond


def heal(ws: Path, command: str, bug: tuple[str, str, str]) -> tuple[dict, list[bool]]:
    seen: list[bool] = []
    with ScriptedServer(responder=oracle(*bug, seen)) as srv:
        r = kodr(
            "heal",
            "-w",
            str(ws),
            "--install",
            "--test",
            command,
            "--base-url",
            srv.base_url,
            "--model",
            "oracle",
            "--max-turns",
            "2",
            "--json",
            "-q",
            cwd=ws,
            timeout=900,
        )
    assert r.out, r.err
    return r.json(), seen


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_uv_project_with_a_test_extra_src_layout_and_a_plugin_in_addopts(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": """[project]
name = "shapes"
version = "0.1.0"
requires-python = ">=3.9"
[project.optional-dependencies]
test = ["pytest-mock>=3"]
docs = ["sphinx"]
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"
[tool.pytest.ini_options]
addopts = "--cov=shapes --cov-report=term"
""",
            "src/shapes/__init__.py": "from .geometry import area\n",
            "src/shapes/geometry.py": "def area(w, h):\n    return w + h\n",
            "tests/test_area.py": "from shapes import area\n\n\ndef test_area(mocker):\n    assert area(2, 3) == 6\n",
        },
    )
    out, seen = heal(tmp_path, "uv run pytest", ("src/shapes/geometry.py", "    return w + h\n", "    return w * h\n"))
    assert (out["state"], out["reason"]) == ("passed", "verification_passed"), out
    assert seen and seen[0]  # the first repair prompt already held geometry.py
    site = next((tmp_path / ".venv" / "lib").glob("python3*/site-packages"))
    for dist in ("pytest_mock", "pytest_cov", "pytest"):  # the extra, the addopts plugin, pytest
        assert list(site.glob(f"{dist}-*.dist-info")), dist
    assert not list(site.glob("sphinx-*.dist-info"))  # not a test extra
    assert not (tmp_path / "uv.lock").exists()  # `uv run` never synced on its own
    records = events_of(tmp_path, out["run_id"])
    started = next(r.event for r in records if r.type == "InstallStarted")
    assert started.commands[-1][:3] == ["uv", "pip", "install"] and "-e" in started.commands[-1]
    context = [r.event for r in records if r.type == "ModelCallStarted"][0]
    assert "src/shapes/geometry.py" in context.allowed_paths


def test_setup_py_only_project(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "setup.py": "from setuptools import setup\n\nsetup(name='tally', version='1.0', py_modules=['tally'],\n"
            "      extras_require={'testing': ['pytest-mock>=3']})\n",
            "tally.py": "def total(xs):\n    return sum(xs) - 1\n",
            "tests/test_tally.py": "import tally\n\n\ndef test_total(mocker):\n    assert tally.total([1, 2]) == 3\n",
        },
    )
    out, seen = heal(tmp_path, "python -m pytest", ("tally.py", "    return sum(xs) - 1\n", "    return sum(xs)\n"))
    assert (out["state"], out["reason"]) == ("passed", "verification_passed"), out
    assert seen[0]
    site = next((tmp_path / ".venv" / "lib").glob("python3*/site-packages"))
    assert list(site.glob("pytest_mock-*.dist-info"))
    records = events_of(tmp_path, out["run_id"])
    done = next(r.event for r in records if r.type == "InstallFinished")
    assert done.result["ok"] and "-e" in done.result["commands"][-1] and ".[testing]" in done.result["commands"][-1]


def test_pyproject_without_project_table_is_refused_with_the_reason(tmp_path: Path) -> None:
    write(
        tmp_path, {"pyproject.toml": "[tool.black]\nline-length = 100\n", "test_x.py": "def test_x():\n    assert 0\n"}
    )
    out, seen = heal(tmp_path, "pytest", ("x.py", "a", "b"))
    assert (out["state"], out["reason"]) == ("failed", "install_refused"), out
    assert "no [project] table" in str(out["facts"]) and seen == []
