"""The read path on the drivers (store.reader.DriverReader) against the real store, on both backends.

It must read exactly what :class:`store.event_store.EventStore` reads (they share every query),
refuse a schema behind or ahead of this kodr's as ``open_store`` does, and never write.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kodr_core import events as ev
from kodr_core.errors import RunNotFound, StoreCorrupt, StoreUnavailable
from store.errors import BlobNotFound
from store.queries import HEAD_REVISION
from store.reader import DriverReader, open_reading

ROOT = Path(__file__).resolve().parents[2]


def requested(task: str = "t") -> ev.RunRequested:
    return ev.RunRequested(task=task, workspace="/ws")


def moved(frm: str, to: str, trigger: str) -> ev.StateChanged:
    return ev.StateChanged(from_state=frm, to_state=to, trigger=trigger)


def reader_of(store) -> DriverReader:
    return DriverReader(store.url, anchors=store.anchors, audit_key=store.audit_key)


def test_the_reader_reads_what_the_store_reads(store):
    store.append("run-a1", 0, [requested("first"), moved("requested", "applied", "adopt")])
    store.append("run-a2", 0, [requested("second")])
    store.append("run_b", 0, [requested("third")])
    sha = store.put_blob(b"hello")
    with reader_of(store) as r:
        for limit, offset in ((None, 0), (1, 0), (1, 1), (None, 1), (2, 1)):
            assert r.runs(limit=limit, offset=offset) == store.runs(limit=limit, offset=offset)
        assert [row["run_id"] for row in r.runs()] == [row["run_id"] for row in store.runs()]
        assert len(r.runs()) == 3 and r.runs()[0]["task"] in ("first", "second", "third")
        assert r.get_run("run-a1") == store.get_run("run-a1") and r.get_run("nope") is None
        assert r.run_ids() == store.run_ids() == ["run-a1", "run-a2", "run_b"]
        assert r.resolve("last") == store.resolve("last")
        assert r.resolve("run_") == "run_b"  # `_` is not a LIKE wildcard here
        assert r.resolve("run-a1") == "run-a1"
        with pytest.raises(RunNotFound, match="ambiguous"):
            r.resolve("run-a")
        with pytest.raises(RunNotFound, match="no run matches"):
            r.resolve("zzz")
        assert r.load("run-a1") == store.load("run-a1")
        assert list(r.iter_events("run-a1", batch=1)) == store.load("run-a1")
        assert r.load_after("run-a1", 1) == store.load_after("run-a1", 1)
        assert r.get_blob(sha) == b"hello"
        with pytest.raises(BlobNotFound):
            r.get_blob("0" * 64)
        assert r.verify("run-a1") == store.verify("run-a1")
        assert r.audit() == store.audit() and r.audit().ok


def test_a_schema_behind_or_ahead_is_refused_as_open_store_refuses_it(store):
    from store.database import downgrade, open_store, upgrade

    store.append("r1", 0, [requested()])
    url = store.url
    store.close()
    downgrade(url, "0002")
    with pytest.raises(StoreUnavailable) as behind:
        DriverReader(url).runs()
    assert f"is not migrated (at 0002, head is {HEAD_REVISION}): run `kodr db upgrade`" in behind.value.message
    with pytest.raises(StoreUnavailable) as by_store:
        open_store(url, auto_migrate=False)
    assert by_store.value.message == behind.value.message
    upgrade(url)
    assert [r["run_id"] for r in DriverReader(url).runs()] == ["r1"]
    with open_store(url) as s:
        with s.transaction(write=True) as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreUnavailable) as ahead:
        DriverReader(url).resolve("last")
    assert "is at revision 9999, which this kodr does not know" in ahead.value.message


def test_a_missing_table_or_no_alembic_stamp_is_store_unavailable(store):
    url = store.url
    with store.transaction(write=True) as conn:
        conn.exec_driver_sql("DROP TABLE blobs")
    with pytest.raises(StoreUnavailable, match="is not migrated .*blobs"):
        DriverReader(url).get_blob("0" * 64)
    with store.transaction(write=True) as conn:
        conn.exec_driver_sql("DROP TABLE alembic_version")
    with pytest.raises(StoreUnavailable, match=r"is not migrated \(at no revision"):
        DriverReader(url).runs()


def test_sqlite_is_read_only_and_a_missing_file_is_not_created(tmp_path):
    from store.database import open_store

    missing = f"sqlite:///{tmp_path / 'none' / 'kodr.db'}"
    assert open_reading(missing) is None
    with pytest.raises(StoreUnavailable, match="unable to open"):
        DriverReader(missing).runs()
    assert not (tmp_path / "none").exists()
    url = f"sqlite:///{tmp_path / 'kodr.db'}"
    with open_store(url) as s:
        s.append("r1", 0, [requested()])
    before = (tmp_path / "kodr.db").read_bytes()
    with DriverReader(url) as r:
        with pytest.raises(StoreUnavailable, match="readonly"):
            r._fetch("DELETE FROM events")
        assert len(r.load("r1")) == 1
    assert (tmp_path / "kodr.db").read_bytes() == before


def test_a_corrupt_file_and_an_unsupported_url_are_refused(tmp_path):
    junk = tmp_path / "kodr.db"
    junk.write_bytes(b"this is not a database, " * 400)
    with pytest.raises(StoreCorrupt, match="is corrupt: file is not a database"):
        DriverReader(f"sqlite:///{junk}").runs()
    with pytest.raises(StoreUnavailable, match=r"unsupported database URL mysql://u:\*\*\*@h/d"):
        DriverReader("mysql://u:pw@h/d")


def test_sqlite_reads_while_another_process_writes(tmp_path):
    """WAL: a read-only connection reads a store another process is appending to, never blocked."""
    from store.database import open_store

    url = f"sqlite:///{tmp_path / 'kodr.db'}"
    with open_store(url, anchor_dir=tmp_path / "runs") as s:
        s.append("r1", 0, [requested()])
    writer = textwrap.dedent(
        f"""
        from kodr_core import events as ev
        from store.database import open_store
        s = open_store({url!r}, anchor_dir={str(tmp_path / "runs")!r})
        for seq in range(1, 301):
            s.append("r1", seq, [ev.PlanRecorded(plan=str(seq))])
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", writer], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    seen = []
    try:
        with DriverReader(url, anchors=None) as r:
            while proc.poll() is None:
                seen.append(len(r.load("r1")))
                assert r.get_run("r1")["last_seq"] >= seen[-1]  # the projection never lags what was read
                time.sleep(0.005)
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == 0
    assert seen == sorted(seen) and len(set(seen)) > 1, seen  # it read the run as it grew
    with DriverReader(url) as r:
        assert len(r.load("r1")) == 301
        assert r.audit().ok


def test_the_audit_key_and_the_anchors_hold_on_the_read_path(tmp_path, monkeypatch):
    from store.database import open_store

    url = f"sqlite:///{tmp_path / 'kodr.db'}"
    monkeypatch.setenv("KODR_AUDIT_KEY", "k")
    with open_store(url) as s:
        s.append("r1", 0, [requested()])
        anchors = s.anchors
    assert DriverReader(url, anchors=anchors, audit_key=b"k").audit().ok
    unkeyed = DriverReader(url, anchors=anchors).audit()
    assert not unkeyed.ok and "KODR_AUDIT_KEY" in (unkeyed.runs["r1"].problem or "")
    anchors.write("r1", 2, "0" * 64)  # the head says a seq 2 was appended: the tail was cut
    cut = DriverReader(url, anchors=anchors, audit_key=b"k").audit()
    assert not cut.ok and "removed from the tail" in (cut.runs["r1"].problem or "")
