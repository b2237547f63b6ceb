"""Blobs commit without their own flush; the event that names them is flushed, and carries them.

Counted as the kernel sees it: a real process under ``strace`` storing a step's blobs and then
appending the event, on a real SQLite file. The appends keep ``synchronous = FULL`` whatever
the blobs did, including when storing them fails.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from itertools import pairwise
from pathlib import Path

import pytest
import sqlalchemy as sa

from kodr_core import events as ev
from kodr_core.errors import StoreUnavailable
from store.database import open_store

ROOT = Path(__file__).resolve().parents[2]


def _is_sync(line: str) -> bool:
    return "fsync(" in line or "fdatasync(" in line


STEP = textwrap.dedent(
    """
    import sys
    from bench.store import run_transitions
    from store.database import open_store

    transitions = run_transitions(3 + int(sys.argv[3]))
    with open_store(f"sqlite:///{sys.argv[1]}", anchor_dir=sys.argv[2]) as s:
        seq = 0
        for i, events in enumerate(transitions):
            if i >= 3:  # a step: its blobs, then its event
                sha = s.put_blobs([b"request %d" % i, b"context %d" % i])[0]
                print("STEP", sha, flush=True)  # strace: the step's syncs follow this write
            s.append("r1", seq, events)
            seq += len(events)
        print("END", flush=True)  # what closing the store flushes (a checkpoint) is not a step's
    """
)


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (.ci/setup installs it)")
def test_a_steps_blobs_and_its_event_cost_one_flush(tmp_path):
    steps = 3
    trace = tmp_path / "trace"
    done = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=fsync,fdatasync,write", "-o", str(trace), sys.executable, "-c", STEP,
         str(tmp_path / "k.db"), str(tmp_path / "runs"), str(steps)],
        cwd=ROOT, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    lines = trace.read_text().splitlines()
    marks = [i for i, line in enumerate(lines) if 'write(1, "STEP' in line]
    assert len(marks) >= steps, lines[-20:]
    bounds = [*marks, next(i for i, line in enumerate(lines) if 'write(1, "END' in line)]
    for turn, (start, end) in enumerate(pairwise(bounds)):
        syncs = [ln for ln in lines[start:end] if _is_sync(ln)]
        assert len(syncs) == 1, f"turn {turn}: {syncs}"  # the event's commit, none for the blobs
    before = [ln for ln in lines[: marks[0]] if _is_sync(ln)]
    assert before, "the first append flushed nothing: the store is not durable at all"
    shas = [line.split()[1] for line in done.stdout.decode().splitlines() if line.startswith("STEP")]
    with open_store(f"sqlite:///{tmp_path / 'k.db'}") as s:  # and the blobs are there
        assert [s.get_blob(sha) for sha in shas] == [b"request %d" % i for i in range(3, 3 + len(shas))]


def _level(store) -> int:
    return int(store._held_connection().cursor.execute("PRAGMA synchronous").fetchone()[0])


def test_the_appends_connection_is_back_to_full_after_blobs(tmp_path):
    with open_store(f"sqlite:///{tmp_path / 'k.db'}") as s:
        s.append("r1", 0, [ev.RunRequested(task="t", workspace="/ws")])
        assert _level(s) == 2  # FULL
        s.put_blobs([b"a", b"b"])
        assert _level(s) == 2


def test_blobs_failing_leave_no_connection_below_full(tmp_path):
    """A locked database refuses the blobs (StoreUnavailable); the append after still flushes."""
    path = tmp_path / "k.db"
    with open_store(f"sqlite:///{path}", busy_timeout_ms=50) as s:
        s.append("r1", 0, [ev.RunRequested(task="t", workspace="/ws")])
        locker = sa.create_engine(f"sqlite:///{path}", connect_args={"isolation_level": None})
        with locker.connect() as c:
            c.exec_driver_sql("BEGIN IMMEDIATE")
            with pytest.raises(StoreUnavailable, match="locked"):
                s.put_blobs([b"a"])
            c.exec_driver_sql("ROLLBACK")
        locker.dispose()
        assert _level(s) == 2
        s.append("r1", 1, [ev.StateChanged(from_state="requested", to_state="applied", trigger="adopt")])


@pytest.mark.postgres
def test_postgres_blobs_skip_only_their_own_flush(postgres_schema_url):
    """``SET LOCAL``: the blobs' transaction alone commits asynchronously; the session stays on."""
    from store.database import upgrade

    upgrade(postgres_schema_url)
    with open_store(postgres_schema_url) as s:
        sha = s.put_blobs([b"a"])[0]
        assert s.get_blob(sha) == b"a"
        with s.transaction() as conn:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
