"""A database that is gone or locked gets a clear error and an exit code, never a traceback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.e2e.conftest import envelope, kodr
from tests.support.scripted_server import ScriptedServer


def test_unreachable_database_is_a_clear_error(workspace: Path) -> None:
    url = "postgresql://kodr:s3cret@127.0.0.1:1/test"
    r = kodr("runs", cwd=workspace, env={"KODR_DATABASE_URL": url})
    assert r.code == 5
    assert "127.0.0.1:1" in r.err and "s3cret" not in r.err
    assert "Traceback" not in r.err


def test_locked_database_is_a_clear_error_and_loses_nothing(workspace: Path) -> None:
    assert (
        kodr("db", "upgrade", cwd=workspace).code == 0
    )  # creates and migrates the SQLite file (`runs` creates nothing)
    holder = sqlite3.connect(workspace / ".kodr" / "kodr.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with ScriptedServer([envelope({"a.txt": "x"})]) as srv:
            r = kodr("run", "-p", "x", "--base-url", srv.base_url, cwd=workspace)
            assert srv.requests == []  # nothing was asked of the model while the store refused the run
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.code == 5, r.err
    assert "locked" in r.err.lower() and "Traceback" not in r.err
    assert not (workspace / "a.txt").exists()
    assert kodr("runs", "--json", cwd=workspace).json() == []


def _one_line_exit_5(r) -> str:
    assert r.code == 5, (r.code, r.err)
    assert "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1, r.err
    return r.err.strip()


def test_an_event_this_kodr_cannot_decode_is_exit_5_with_one_line(tmp_path: Path) -> None:
    from kodr_core import events as ev
    from store.database import default_url, open_store

    with open_store(default_url(tmp_path)) as s:
        s.append("r1", 0, [ev.RunRequested(task="t", workspace=str(tmp_path))])
    db = sqlite3.connect(tmp_path / ".kodr" / "kodr.db")
    db.execute("INSERT INTO events (run_id, seq, type, schema_version, recorded_at, body, prev_hash, hash) "
               "VALUES ('r1', 2, 'FromTheFuture', 1, 'x', '{\"data\":{}}', 'p', 'h')")  # fmt: skip
    db.commit()
    db.close()
    line = _one_line_exit_5(kodr("show", "r1", cwd=tmp_path))
    assert "run r1 seq 2" in line and "unknown event type 'FromTheFuture'" in line


def test_a_corrupt_sqlite_file_is_exit_5_with_one_line(tmp_path: Path) -> None:
    (tmp_path / ".kodr").mkdir()
    (tmp_path / ".kodr" / "kodr.db").write_bytes(b"this is not a database, " * 400)
    line = _one_line_exit_5(kodr("runs", cwd=tmp_path))
    assert "is corrupt" in line and "file is not a database" in line


def test_an_unsupported_database_url_is_exit_5_with_one_line(tmp_path: Path) -> None:
    r = kodr("runs", cwd=tmp_path, env={"KODR_DATABASE_URL": "mysql://kodr:s3cret@db.example/kodr"})
    line = _one_line_exit_5(r)
    assert "unsupported database URL mysql://kodr:***@db.example/kodr" in line and "s3cret" not in line


def test_a_schema_behind_or_ahead_of_this_kodr_is_exit_5_with_one_line(tmp_path: Path) -> None:
    from store.database import default_url, downgrade, upgrade
    from store.queries import HEAD_REVISION

    url = default_url(tmp_path)
    upgrade(url)
    downgrade(url, "0001")
    for args in (["runs"], ["show", "last"], ["audit", "verify"]):
        line = _one_line_exit_5(kodr(*args, cwd=tmp_path))
        assert f"is not migrated (at 0001, head is {HEAD_REVISION}): run `kodr db upgrade`" in line, args
    upgrade(url)
    db = sqlite3.connect(tmp_path / ".kodr" / "kodr.db")
    db.execute("UPDATE alembic_version SET version_num = 'f00d'")
    db.commit()
    db.close()
    line = _one_line_exit_5(kodr("runs", cwd=tmp_path))
    assert "is at revision f00d, which this kodr does not know" in line and "upgrade kodr" in line


def test_a_missing_table_is_exit_5_with_one_line(tmp_path: Path) -> None:
    from store.database import default_url, upgrade

    upgrade(default_url(tmp_path))
    db = sqlite3.connect(tmp_path / ".kodr" / "kodr.db")
    db.execute("DROP TABLE runs")
    db.commit()
    db.close()
    line = _one_line_exit_5(kodr("runs", cwd=tmp_path))
    assert "is not migrated (no such table: runs): run `kodr db upgrade`" in line
