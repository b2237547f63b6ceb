"""End-to-end fixtures: the real ``kodr`` CLI in a subprocess, against real projects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.workspace import DiskWorkspace
from kodr_core.events import RecordedEvent
from store.database import default_url, open_store

VENV_BIN = str(Path(sys.executable).parent)


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def kodr_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a kodr subprocess gets: the venv's tools first, the embedded store unless told."""
    env = dict(os.environ)
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    env.pop("KODR_DATABASE_URL", None)
    env.update(extra or {})
    return env


def kodr(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> Result:
    p = subprocess.run(
        [sys.executable, "-m", "adapters.cli", *args],
        cwd=cwd,
        env=kodr_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return Result(p.returncode, p.stdout, p.stderr)


def events_of(workspace: Path, run_id: str) -> list[RecordedEvent]:
    return open_store(default_url(workspace)).load(run_id)


def tagged_processes(run_id: str) -> list[int]:
    """Live pids still carrying a step key of this run (KODR_STEP_KEY=<run_id>:…): orphans."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if f"KODR_STEP_KEY={run_id}".encode() in (d / "environ").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


def chain(records: list[RecordedEvent]) -> list[str]:
    """Event types, with each transition written as its trigger: a readable exact sequence."""
    out = []
    for r in records:
        e = r.event
        out.append(f"StateChanged:{e.trigger}" if r.type == "StateChanged" else r.type)
    return out


def envelope(files: dict[str, str], summary: str = "change") -> dict[str, Any]:
    return {"summary": summary, "notes": None, "files": [{"path": p, "content": c} for p, c in files.items()]}


def snapshot(root: Path) -> dict[str, str]:
    return DiskWorkspace(root).snapshot()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws
