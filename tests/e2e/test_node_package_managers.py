"""Slow: `kodr heal --install` on a pnpm project (lockfile present → pnpm install --frozen-lockfile).

pnpm is an npm package: it is installed once, pinned, into the field benchmark's cache
(~/.cache/kodr-field/tools, shared with bench/field.py) and put on PATH, as a user
who has pnpm would have it. The project's tests run with tape through `pnpm test`.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import events_of, kodr
from tests.support.scripted_server import ScriptedServer

pytestmark = pytest.mark.slow

CACHE = Path(os.environ.get("KODR_FIELD_CACHE", Path.home() / ".cache" / "kodr-field"))
PNPM = "9.15.9"


def pnpm_bin() -> str:
    tools = CACHE / "tools"
    bin_dir = tools / "node_modules" / ".bin"
    if not (bin_dir / "pnpm").exists():
        tools.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(tools), "--no-audit", "--no-fund", "--ignore-scripts",
                        f"pnpm@{PNPM}"], check=True, capture_output=True, timeout=600)  # fmt: skip
    return str(bin_dir)


BUGGY = "module.exports = function add (a, b) {\n  return a - b\n}\n"
GOOD = "module.exports = function add (a, b) {\n  return a + b\n}\n"
TEST = "const test = require('tape')\nconst add = require('..')\n\ntest('adds', (t) => {\n  t.equal(add(2, 3), 5)\n  t.end()\n})\n"


def test_pnpm_project_installs_frozen_and_heals(tmp_path: Path) -> None:
    path = pnpm_bin() + os.pathsep + os.environ.get("PATH", "")
    (tmp_path / "package.json").write_text(
        json.dumps(
            {
                "name": "adder",
                "version": "1.0.0",
                "main": "lib/add.js",
                "scripts": {"test": "tape test/*.js"},
                "devDependencies": {"tape": "5.9.0"},
            },
            indent=2,
        )
        + "\n"
    )
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "add.js").write_text(BUGGY)
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "add.js").write_text(TEST)
    subprocess.run(["pnpm", "install", "--lockfile-only", "--ignore-scripts"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=600, env=dict(os.environ, PATH=path))  # fmt: skip
    assert (tmp_path / "pnpm-lock.yaml").is_file()

    seen: list[bool] = []

    def oracle(body: dict[str, Any]) -> dict[str, Any]:
        prompt = "\n".join(str(m.get("content") or "") for m in body.get("messages") or [])
        hit = "`lib/add.js`" in prompt and "return a - b" in prompt  # reached through main, via require('..')
        seen.append(hit)
        edits = [{"path": "lib/add.js", "search": "return a - b", "replace": "return a + b"}] if hit else []
        return {"summary": "fix", "files": [], "edits": edits, "notes": None}

    with ScriptedServer(responder=oracle) as srv:
        r = kodr("heal", "-w", str(tmp_path), "--install", "--test", "pnpm test", "--base-url", srv.base_url,
                 "--model", "oracle", "--max-turns", "2", "--json", "-q", cwd=tmp_path, env={"PATH": path},
                 timeout=900)  # fmt: skip
    out = r.json()
    assert (out["state"], out["reason"]) == ("passed", "verification_passed"), (out, r.err)
    assert seen == [True]
    assert (tmp_path / "lib" / "add.js").read_text() == GOOD
    records = events_of(tmp_path, out["run_id"])
    started = next(rec.event for rec in records if rec.type == "InstallStarted")
    assert started.commands == [["pnpm", "install", "--frozen-lockfile", "--ignore-scripts"]]
    tests = [rec.event.result for rec in records if rec.type == "TestsFinished"]
    assert (tests[0]["total"], tests[0]["failed"]) == (1, 1) and tests[-1]["ok"]
