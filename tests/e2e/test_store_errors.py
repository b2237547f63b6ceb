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
    assert kodr("db", "upgrade", cwd=workspace).code == 0  # creates and migrates the SQLite file (`runs` creates nothing)
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
