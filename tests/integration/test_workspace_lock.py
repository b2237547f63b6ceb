"""The workspace's live-run lock names its holder, even to a loser that arrives mid-acquisition."""

from __future__ import annotations

import fcntl
import json
import os
import threading
from pathlib import Path

import pytest

from adapters.leasing import LOCK_FILE, workspace_lock
from kodr_core.errors import WorkspaceBusy


def _hold(root: Path) -> int:
    """Take the lock as a holder does, before it has written its record (the racy moment)."""
    lock = root / ".kodr" / LOCK_FILE
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_a_loser_arriving_before_the_holder_wrote_its_record_still_names_it(tmp_path: Path) -> None:
    fd = _hold(tmp_path)
    record = {"pid": 4242, "host": "builder", "since": "2026-11-26T05:00:00Z"}
    late = threading.Timer(0.1, lambda: os.pwrite(fd, json.dumps(record).encode(), 0))
    late.start()
    try:
        with pytest.raises(WorkspaceBusy) as caught:
            with workspace_lock(tmp_path):
                pass
    finally:
        late.join()
        os.close(fd)
    assert "pid 4242 on builder since 2026-11-26T05:00:00Z" in caught.value.message


def test_a_holder_that_never_writes_its_record_is_owner_unknown(tmp_path: Path) -> None:
    fd = _hold(tmp_path)
    try:
        with pytest.raises(WorkspaceBusy, match="owner unknown"):
            with workspace_lock(tmp_path):
                pass
    finally:
        os.close(fd)


def test_the_lock_is_free_again_after_the_holder_leaves(tmp_path: Path) -> None:
    with workspace_lock(tmp_path):
        pass
    with workspace_lock(tmp_path):
        assert json.loads((tmp_path / ".kodr" / LOCK_FILE).read_text())["pid"] == os.getpid()
