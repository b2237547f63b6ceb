"""The event store on SQLite and PostgreSQL: appends, concurrency, immutability,
projection, hash chain, blobs, run lookup, availability errors and migrations."""

from __future__ import annotations

import re
import socket
import threading
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from kodr_core import events as ev
from kodr_core.aggregate import project
from kodr_core.errors import (
    ConcurrencyConflict,
    IllegalTransition,
    RunNotFound,
    StoreCorrupt,
    StoreUnavailable,
)
from store.database import (
    database_url,
    default_url,
    downgrade,
    head_revision,
    normalise_url,
    open_store,
    status,
    upgrade,
)
from store.engine import WRITE
from store.errors import BlobNotFound
from store.event_store import EventStore
from store.hashchain import GENESIS, canonical_bytes, chain_hash, verify_chain
from store.schema import PROJECTION_COLUMNS
from store.schema import events as events_table
from tests.support.stores import is_pg, write_locked

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def requested(task: str = "add a greeting") -> ev.RunRequested:
    return ev.RunRequested(task=task, workspace="/tmp/ws", options={"heal": 2})


def changed(frm: str, to: str, trigger: str, **kw) -> ev.StateChanged:
    return ev.StateChanged(from_state=frm, to_state=to, trigger=trigger, **kw)


PROPOSE = changed("requested", "proposing", "propose")


def new_run(store: EventStore, run_id: str = "run-1", task: str = "add a greeting") -> str:
    store.append(run_id, 0, [requested(task)])
    return run_id


def drop_trigger(store: EventStore, name: str) -> None:
    on = " ON events" if is_pg(store) else ""
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TRIGGER {name}{on}")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- appends -------------------------------------------------------------------


def test_append_and_load_round_trip(store):
    recs = store.append("run-1", 0, [requested(), PROPOSE])
    assert [r.seq for r in recs] == [1, 2]
    loaded = store.load("run-1")
    assert loaded == recs
    assert loaded[0].event == requested() and loaded[1].event == PROPOSE
    assert all(ISO.match(r.recorded_at) for r in loaded)
    assert loaded[0].prev_hash == GENESIS and loaded[1].prev_hash == loaded[0].hash
    assert store.load_after("run-1", 1) == recs[1:]
    assert store.load("nobody") == []


def test_body_is_the_canonical_bytes_that_were_hashed(store):
    new_run(store)
    rec = store.load("run-1")[0]
    with store.engine.connect() as conn:
        body = conn.exec_driver_sql("SELECT body FROM events WHERE seq = 1").scalar()
    expected = canonical_bytes("run-1", 1, "RunRequested", 1, rec.recorded_at, requested().payload())
    assert body.encode("utf-8") == expected
    assert rec.hash == chain_hash(GENESIS, expected)


def test_append_at_a_taken_seq_raises_conflict(store):
    new_run(store)
    with pytest.raises(ConcurrencyConflict, match=r"run-1.*seq 1"):
        store.append("run-1", 0, [requested()])
    with pytest.raises(ConcurrencyConflict, match=r"run-1.*last seq is 1"):
        store.append("run-1", 5, [PROPOSE])
    assert len(store.load("run-1")) == 1


def test_racing_writers_exactly_one_wins(store):
    new_run(store)
    n = 4
    barrier = threading.Barrier(n)
    results: list[object] = []

    def writer() -> None:
        barrier.wait()
        try:
            results.append(store.append("run-1", 1, [PROPOSE]))
        except ConcurrencyConflict as exc:
            results.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == n
    assert sum(isinstance(r, list) for r in results) == 1
    assert sum(isinstance(r, ConcurrencyConflict) for r in results) == n - 1
    assert [r.seq for r in store.load("run-1")] == [1, 2]
    assert store.verify("run-1").ok


def test_writer_losing_the_insert_race_gets_conflict(store):
    """Another transaction inserts seq 2 while our writer appends after seq 1.

    PostgreSQL: the writer read seq 1, then its insert hits the unique index.
    SQLite: the writer waits for the write lock, then finds seq 2 already there.
    """
    new_run(store)
    errors: list[BaseException] = []
    with store.engine.connect() as other:
        other.execution_options(**{WRITE: True})
        tx = other.begin()
        other.exec_driver_sql(
            "INSERT INTO events"
            " (run_id, seq, type, schema_version, recorded_at, body, prev_hash, hash)"
            f" VALUES ('run-1', 2, 'StateChanged', 1, 'x', '{{}}', '{GENESIS}', '{GENESIS}')"
        )

        def writer() -> None:
            try:
                store.append("run-1", 1, [PROPOSE])
            except BaseException as exc:  # noqa: BLE001 - the test inspects it
                errors.append(exc)

        t = threading.Thread(target=writer)
        t.start()
        time.sleep(0.5)  # the writer is now blocked behind the other transaction
        tx.commit()
        t.join(30)
    assert len(errors) == 1 and isinstance(errors[0], ConcurrencyConflict), errors
    assert "run-1" in str(errors[0]) and "seq 2" in str(errors[0])


def test_illegal_transition_is_not_stored(store):
    new_run(store)
    with pytest.raises(IllegalTransition):
        store.append("run-1", 1, [changed("requested", "passed", "succeed")])
    assert len(store.load("run-1")) == 1
    assert store.get_run("run-1")["last_seq"] == 1


# -- immutability and the hash chain ---------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE events SET type = 'Edited' WHERE seq = 1",
        "DELETE FROM events WHERE seq = 1",
        "DELETE FROM events",
    ],
)
def test_database_refuses_update_and_delete(store, sql):
    new_run(store)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with store.engine.begin() as conn:
            conn.exec_driver_sql(sql)
    assert [r.type for r in store.load("run-1")] == ["RunRequested"]


def test_database_refuses_truncate_on_postgres(store):
    if not is_pg(store):
        pytest.skip("SQLite has no TRUNCATE (DELETE without WHERE is covered above)")
    new_run(store)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with store.engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE events")
    assert len(store.load("run-1")) == 1


def test_hash_chain_verifies(store):
    store.append("run-1", 0, [requested(), PROPOSE])
    store.append("run-1", 2, [changed("proposing", "applied", "apply")])
    report = store.verify("run-1")
    assert report.ok and report.checked == 3 and report.first_broken_seq is None
    with pytest.raises(RunNotFound):
        store.verify("nobody")


def test_verify_detects_a_body_edited_behind_the_triggers_back(store):
    store.append("run-1", 0, [requested(), PROPOSE])
    store.append("run-1", 2, [changed("proposing", "applied", "apply")])
    drop_trigger(store, "events_no_update")
    with store.engine.begin() as conn:
        n = conn.exec_driver_sql(
            'UPDATE events SET body = replace(body, \'"trigger":"propose"\', \'"trigger":"adopt"\')'
            " WHERE run_id = 'run-1' AND seq = 2"
        ).rowcount
    assert n == 1
    report = store.verify("run-1")
    assert not report.ok and report.first_broken_seq == 2 and report.checked == 1
    assert "hash" in report.problem


def test_verify_detects_a_column_that_disagrees_with_the_body(store):
    store.append("run-1", 0, [requested(), PROPOSE])
    drop_trigger(store, "events_no_update")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE events SET type = 'PlanRecorded' WHERE seq = 2")
    report = store.verify("run-1")
    assert (report.ok, report.first_broken_seq) == (False, 2)
    assert "column type" in report.problem


def test_verify_detects_events_cut_off_the_tail(store):
    store.append("run-1", 0, [requested(), PROPOSE])
    drop_trigger(store, "events_no_delete")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM events WHERE seq = 2")
    report = store.verify("run-1")
    assert (report.ok, report.first_broken_seq, report.checked) == (False, 2, 1)
    assert "removed" in report.problem


def test_verify_chain_reports_gaps_and_bad_links():
    rows = []
    prev = GENESIS
    for seq in (1, 2, 3):
        body = canonical_bytes("r", seq, "X", 1, "t", {})
        h = chain_hash(prev, body)
        rows.append(
            dict(
                run_id="r",
                seq=seq,
                type="X",
                schema_version=1,
                recorded_at="t",
                body=body.decode(),
                prev_hash=prev,
                hash=h,
            )
        )
        prev = h
    assert verify_chain(rows).ok
    gap = verify_chain([rows[0], rows[2]])
    assert (gap.ok, gap.first_broken_seq, gap.checked) == (False, 2, 1)
    relinked = dict(rows[2], prev_hash=GENESIS)
    assert verify_chain([rows[0], rows[1], relinked]).first_broken_seq == 3
    assert verify_chain([]).ok


# -- the runs projection --------------------------------------------------------------


def _history(store: EventStore) -> None:
    store.append("run-1", 0, [requested(), PROPOSE])
    store.append("run-1", 2, [changed("proposing", "applied", "apply")])
    store.append("run-1", 3, [changed("applied", "verifying", "verify")])
    store.append(
        "run-1",
        4,
        [changed("verifying", "failed", "fail", outcome="failed", reason="tests_failed")],
    )


def test_projection_rebuilt_from_events_equals_the_stored_one(store):
    _history(store)
    stored = store.get_run("run-1")
    folded = project("run-1", store.load("run-1"))
    assert {k: stored[k] for k in PROJECTION_COLUMNS} == folded
    assert folded["state"] == "failed" and folded["reason"] == "tests_failed" and folded["last_seq"] == 5
    assert store.rebuild_projection("run-1") == folded
    # a damaged projection is repaired from the events, and the lease survives
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE runs SET state = 'passed', last_seq = 99, lease_epoch = 7")
    assert store.rebuild_projection("run-1") == folded
    after = store.get_run("run-1")
    assert {k: after[k] for k in PROJECTION_COLUMNS} == folded and after["lease_epoch"] == 7
    with pytest.raises(RunNotFound):
        store.rebuild_projection("nobody")


def test_runs_listing_and_resolve(store):
    ticks = iter(range(10))  # distinct, increasing recorded_at per run
    store._clock = lambda: datetime(2026, 11, 25, 12, 0, next(ticks), tzinfo=UTC)
    for rid in ("abc111", "abc222", "xyz333"):
        new_run(store, rid, task=f"task {rid}")
    assert [r["run_id"] for r in store.runs()] == ["xyz333", "abc222", "abc111"]
    assert [r["run_id"] for r in store.runs(limit=1)] == ["xyz333"]
    assert store.run_ids() == ["abc111", "abc222", "xyz333"]
    assert store.get_run("abc111")["task"] == "task abc111"
    assert store.get_run("nope") is None
    assert store.resolve("last") == "xyz333"
    assert store.resolve("abc1") == "abc111"
    assert store.resolve("xyz333") == "xyz333"
    with pytest.raises(RunNotFound, match="ambiguous.*abc111, abc222"):
        store.resolve("abc")
    with pytest.raises(RunNotFound, match="no run matches 'q'"):
        store.resolve("q")
    with pytest.raises(RunNotFound):
        store.resolve("a_c")  # LIKE wildcards are literal


def test_resolve_last_on_an_empty_store(store):
    with pytest.raises(RunNotFound, match="no runs yet"):
        store.resolve("last")


# -- blobs --------------------------------------------------------------------------


def test_blob_round_trip_and_dedup(store):
    data = b"\x00\xffbinary\nlog" * 1000
    sha = store.put_blob(data)
    assert re.fullmatch(r"[0-9a-f]{64}", sha)
    assert store.get_blob(sha) == data
    assert store.put_blob(data) == sha
    assert store.get_blob(store.put_blob(b"")) == b""
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM blobs").scalar() == 2
    with pytest.raises(BlobNotFound, match="no blob") as info:
        store.get_blob("0" * 64)
    assert isinstance(info.value, KeyError)


def test_concurrent_put_blob_is_race_safe(store):
    barrier = threading.Barrier(4)
    shas: list[str] = []

    def put() -> None:
        barrier.wait()
        shas.append(store.put_blob(b"same bytes"))

    threads = [threading.Thread(target=put) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(shas) == 4 and len(set(shas)) == 1


# -- availability --------------------------------------------------------------------------


def test_locked_past_the_busy_timeout_is_store_unavailable(store):
    new_run(store)
    with write_locked(store.url):
        impatient = open_store(store.url, busy_timeout_ms=200)
        start = time.monotonic()
        with pytest.raises(StoreUnavailable, match="is locked") as info:
            impatient.append("run-1", 1, [PROPOSE])
        assert time.monotonic() - start < 4
        assert "200 ms" in str(info.value)
        impatient.close()
    store.append("run-1", 1, [PROPOSE])  # and it works once the lock is gone


def test_unreachable_postgres_is_store_unavailable_with_password_masked():
    url = f"postgresql://kodr:s3cret@127.0.0.1:{closed_port()}/kodr"
    for attempt in (lambda: open_store(url), lambda: upgrade(url)):
        with pytest.raises(StoreUnavailable) as info:
            attempt()
        message = str(info.value)
        assert "127.0.0.1" in message and "***" in message and "s3cret" not in message
        assert "unavailable" in message


def test_sqlite_file_that_cannot_be_created_is_store_unavailable(tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(StoreUnavailable, match="cannot create"):
        open_store(f"sqlite:///{tmp_path / 'a-file' / 'sub' / 'kodr.db'}")


def test_invalid_url_is_store_unavailable():
    with pytest.raises(StoreUnavailable, match="invalid database URL"):
        open_store("not a url at all")
    with pytest.raises(StoreUnavailable, match="unsupported database URL"):
        open_store("nosuchdb://x/y")


def test_not_migrated_is_store_unavailable(db_url):
    with pytest.raises(StoreUnavailable, match=r"not migrated.*kodr db upgrade"):
        open_store(db_url, auto_migrate=False)
    raw = EventStore.from_url(db_url)
    try:
        with pytest.raises(StoreUnavailable, match=r"not migrated.*kodr db upgrade"):
            raw.load("run-1")
    finally:
        raw.close()


def test_open_store_migrates_sqlite_but_not_postgres(db_url):
    if is_pg(db_url):
        with pytest.raises(StoreUnavailable, match="kodr db upgrade"):
            open_store(db_url)
        upgrade(db_url)
    with open_store(db_url) as s:
        new_run(s)
        assert s.verify("run-1").ok
    assert status(db_url)["up_to_date"]


# -- migrations and URLs ---------------------------------------------------------------------


def test_fresh_sqlite_workspace_is_migrated_on_first_use(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    url = default_url(ws)
    assert url == f"sqlite:///{ws.resolve()}/.kodr/kodr.db"
    with open_store(url) as s:
        new_run(s)
        with s.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert (ws / ".kodr" / "kodr.db").is_file()
    assert (ws / ".kodr" / ".gitignore").read_text() == "*\n"
    assert status(url) == {"url": url, "current": [head_revision()], "head": head_revision(), "up_to_date": True}


def test_sqlite_behind_head_is_migrated_on_open(tmp_path):
    url = f"sqlite:///{tmp_path / 'kodr.db'}"
    upgrade(url)
    downgrade(url, "base")  # also proves the downgrade drops triggers and tables
    assert status(url)["current"] == []
    with open_store(url) as s:
        new_run(s)
        assert s.load("run-1")[0].event == requested()


def test_database_url_and_normalisation(tmp_path, monkeypatch):
    monkeypatch.delenv("KODR_DATABASE_URL", raising=False)
    assert database_url(tmp_path) == default_url(tmp_path)
    monkeypatch.setenv("KODR_DATABASE_URL", "postgres://u:p@db:5432/kodr")
    assert database_url(tmp_path) == "postgresql+psycopg://u:p@db:5432/kodr"
    assert normalise_url("postgresql://h/d") == "postgresql+psycopg://h/d"
    assert normalise_url("postgresql+psycopg://h/d") == "postgresql+psycopg://h/d"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


# -- what an undecodable or corrupt store gets: StoreCorrupt (exit 5), one line ------------------


@pytest.mark.parametrize(
    ("type_", "version", "body", "says"),
    [
        ("FromTheFuture", 1, '{"data": {}}', "unknown event type 'FromTheFuture'"),
        ("PlanRecorded", 9, '{"data": {"plan": "p"}}', "PlanRecorded v9 is newer than this kodr"),
        ("PlanRecorded", 1, "not json", "cannot decode its PlanRecorded event"),
        ("PlanRecorded", 1, '{"data": {"plan": 5}}', "cannot decode its PlanRecorded event"),
        ("PlanRecorded", 1, '{"no": "data"}', "cannot decode its PlanRecorded event"),
        ("PlanRecorded", 0, '{"data": {"plan": "p"}}', "PlanRecorded v0 is not a version"),
        ("ProposalAccepted", 1, '{"data": {"purpose": "plan", "turn": 0, "plan": "p"}}', "v1 carries a plan"),
    ],
    ids=["unknown-type", "newer-version", "not-json", "invalid-field", "no-data", "version-0", "v1-with-a-plan"],
)
def test_an_undecodable_event_is_store_corrupt_naming_run_and_seq(store, type_, version, body, says):
    new_run(store)
    with store.transaction(write=True) as conn:
        conn.execute(sa.insert(events_table).values(run_id="run-1", seq=2, type=type_, schema_version=version,
                                                    recorded_at="x", body=body, prev_hash="p", hash="h"))  # fmt: skip
    for read in (lambda: store.load("run-1"), lambda: list(store.iter_events("run-1"))):
        with pytest.raises(StoreCorrupt) as info:
            read()
        assert "run run-1 seq 2" in info.value.message and says in info.value.message
        assert len(info.value.message.splitlines()) == 1


def test_a_corrupt_sqlite_file_is_store_corrupt(tmp_path):
    path = tmp_path / "kodr.db"
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(StoreCorrupt, match="is corrupt: file is not a database"):
        open_store(f"sqlite:///{path}")


@pytest.mark.parametrize("url", ["mysql://u:pw@h/db", "mssql+pyodbc://h/db", "oracle://h/db"])
def test_an_unsupported_url_is_store_unavailable_with_the_password_masked(url):
    with pytest.raises(StoreUnavailable, match="unsupported database URL") as info:
        open_store(url)
    assert "pw" not in info.value.message.replace("mssql+pyodbc", "")


def test_migration_0002_fills_last_hash_and_appends_continue(tmp_path):
    url = f"sqlite:///{tmp_path / 'kodr.db'}"
    with open_store(url) as s:
        new_run(s)
        s.append("run-1", 1, [changed("requested", "applied", "adopt")])
    downgrade(url, "0001")  # the run as 0001 held it: no last_hash column
    upgrade(url)
    with open_store(url) as s:
        assert s.get_run("run-1")["last_hash"] == s.load("run-1")[-1].hash
        s.append("run-1", 2, [changed("applied", "verifying", "verify")])
        assert s.verify("run-1").ok and s.get_run("run-1")["state"] == "verifying"


def test_runs_pages_newest_first(store):
    for i in range(5):
        store.append(f"run-{i}", 0, [requested()])
    every = [r["run_id"] for r in store.runs()]
    assert len(every) == 5
    pages = [[r["run_id"] for r in store.runs(limit=2, offset=o)] for o in (0, 2, 4)]
    assert pages[0] + pages[1] + pages[2] == every and [len(p) for p in pages] == [2, 2, 1]
    assert store.runs(limit=2, offset=10) == []


def test_a_run_moved_by_resume_workspace_lives_in_its_new_workspace(store):
    """`kodr resume RUN -w DIR` records the move in RunResumed; the projection (what `resume --all`
    selects by) and the fold (what `resume` checks) both say DIR from then on, and a rebuild agrees."""
    from kodr_core.aggregate import fold

    store.append("r1", 0, [ev.RunRequested(task="t", workspace="/x", options={})])
    store.append("r1", 1, [ev.StateChanged(from_state="requested", to_state="applied", trigger="adopt")])
    assert store.get_run("r1")["workspace"] == "/x"
    store.append("r1", 2, [ev.RunResumed(owner="me", overrides={"max_turns": 2})])
    assert store.get_run("r1")["workspace"] == "/x"  # a resume that does not move keeps it
    store.append("r1", 3, [ev.RunResumed(owner="me", overrides={"workspace": "/y"})])
    assert store.get_run("r1")["workspace"] == "/y"
    assert fold("r1", store.load("r1")).workspace == "/y"
    assert store.rebuild_projection("r1")["workspace"] == "/y"
