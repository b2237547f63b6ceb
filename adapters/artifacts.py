"""Writes a run's artifact files under ``<workspace>/.kodr/runs/<run_id>/``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from kodr_core.artifacts import render
from kodr_core.events import RecordedEvent
from kodr_core.ports import EventLog


def ensure_kodr_dir(workspace: str | os.PathLike[str]) -> Path:
    """``.kodr/`` with its own ``.gitignore``, so it never lands in the user's commits."""
    d = Path(workspace, ".kodr")
    d.mkdir(parents=True, exist_ok=True)
    gi = d / ".gitignore"
    if not gi.exists():
        gi.write_text("*\n")
    return d


def run_dir(workspace: str | os.PathLike[str], run_id: str) -> Path:
    return Path(workspace, ".kodr", "runs", run_id)


class ArtifactWriter:
    def __init__(self, workspace: str | os.PathLike[str], log: EventLog) -> None:
        self.workspace = Path(workspace)
        self.log = log

    def refresh(self, run_id: str, records: Sequence[RecordedEvent]) -> None:
        ensure_kodr_dir(self.workspace)
        base = run_dir(self.workspace, run_id)
        for rel, data in render(run_id, records, self.log.get_blob).items():
            target = base / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(target.suffix + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
