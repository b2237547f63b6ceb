"""Writes a run's artifact files under ``<workspace>/.kodr/runs/<run_id>/``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from store.location import ensure_kodr_dir

if TYPE_CHECKING:  # `kodr show` needs only run_dir: the renderer is imported when it renders
    from collections.abc import Sequence

    from kodr_core.artifacts import BlobReader
    from kodr_core.events import RecordedEvent


def run_dir(workspace: str | os.PathLike[str], run_id: str) -> Path:
    return Path(workspace, ".kodr", "runs", run_id)


class ArtifactWriter:
    """Renders the artifact files from the events. The store's run-head anchor
    (``head.json``, :mod:`store.anchors`) shares the directory but is not an artifact:
    it is evidence kept outside the database, so this writer never writes or removes it."""

    def __init__(self, workspace: str | os.PathLike[str], get_blob: BlobReader) -> None:
        """``get_blob`` reads the blobs the events name: a writing store's or a read-only reader's."""
        self.workspace = Path(workspace)
        self.get_blob = get_blob

    def refresh(self, run_id: str, records: Sequence[RecordedEvent]) -> None:
        from kodr_core.artifacts import render

        ensure_kodr_dir(self.workspace / ".kodr")
        base = run_dir(self.workspace, run_id)
        for rel, data in render(run_id, records, self.get_blob).items():
            target = base / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(target.suffix + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
