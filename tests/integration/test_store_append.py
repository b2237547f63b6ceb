"""The append path that continues a run this store wrote last (compare-and-set on a held
connection), on SQLite and PostgreSQL: it must judge and fail exactly as the read path does."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from kodr_core import events as ev
from kodr_core.aggregate import project
from kodr_core.errors import ConcurrencyConflict, IllegalTransition, StoreUnavailable
from store.database import open_store
from store.event_store import EventStore
from store.schema import PROJECTION_COLUMNS
from tests.support.stores import write_locked


def changed(frm: str, to: str, trigger: str, **kw: object) -> ev.StateChanged:
    return ev.StateChanged(from_state=frm, to_state=to, trigger=trigger, **kw)


def started(run_id: str, store: EventStore) -> int:
    store.append(run_id, 0, [ev.RunRequested(task="t", workspace="/tmp/ws")])
    store.append(run_id, 1, [changed("requested", "applied", "adopt")])
    store.append(run_id, 2, [changed("applied", "verifying", "verify")])
    return 3


def plan(i: int) -> list[ev.Event]:
    return [ev.PlanRecorded(plan=f"p{i}")]


def assert_intact(store: EventStore, run_id: str, last_seq: int) -> None:
    records = store.load(run_id)
    assert [r.seq for r in records] == list(range(1, last_seq + 1))
    assert store.verify(run_id).ok
    row = store.get_run(run_id)
    assert row is not None and row["last_hash"] == records[-1].hash
    assert {k: row[k] for k in PROJECTION_COLUMNS} == project(run_id, records)


def test_two_stores_on_one_database_take_turns_on_one_run(store):
    """Each store remembers the row it left; the other's appends make that stale every turn."""
    other = open_store(store.url)
    try:
        seq = started("run-1", store)
        for i in range(6):
            writer = (store, other)[i % 2]
            recs = writer.append("run-1", seq, plan(i))
            seq = recs[-1].seq
        # store remembers the row at seq 8, which other has moved on: its compare-and-set
        # misses, and the row read instead says why
        assert store._heads["run-1"].projection["last_seq"] == 8
        with pytest.raises(ConcurrencyConflict, match=r"run-1: expected to append seq 9, but the last seq is 9"):
            store.append("run-1", 8, plan(99))
        store.append("run-1", seq, [changed("verifying", "healing", "heal", heal_turn=1)])
        other.append("run-1", seq + 1, [changed("healing", "installing", "install", heal_turn=1)])
        assert_intact(store, "run-1", seq + 2)
        assert store.get_run("run-1")["state"] == "installing"
    finally:
        other.close()


def test_stores_racing_from_the_same_remembered_row_give_one_winner(store):
    stores = [store, open_store(store.url), open_store(store.url)]
    try:
        seq = started("run-1", store)
        for s in stores[1:]:  # as if each had written the last append: all take the held path
            s._heads["run-1"] = store._heads["run-1"]
        barrier = threading.Barrier(len(stores))
        results: list[object] = []

        def writer(s: EventStore) -> None:
            barrier.wait()
            try:
                results.append(s.append("run-1", seq, plan(100)))
            except ConcurrencyConflict as exc:
                results.append(exc)

        threads = [threading.Thread(target=writer, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sum(isinstance(r, list) for r in results) == 1, results
        assert sum(isinstance(r, ConcurrencyConflict) for r in results) == len(stores) - 1
        assert_intact(store, "run-1", seq + 1)
    finally:
        for s in stores[1:]:
            s.close()


def test_a_row_edited_behind_the_store_is_judged_as_it_now_stands(store):
    """Last seq and hash unchanged, state changed: the remembered row must not decide."""
    seq = started("run-1", store)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE runs SET state = 'passed' WHERE run_id = 'run-1'")
    with pytest.raises(IllegalTransition):
        store.append("run-1", seq, [changed("verifying", "healing", "heal", heal_turn=1)])
    assert [r.seq for r in store.load("run-1")] == [1, 2, 3]


def test_an_illegal_move_from_the_remembered_row_stores_nothing_and_the_run_goes_on(store):
    seq = started("run-1", store)
    with pytest.raises(IllegalTransition):
        store.append("run-1", seq, [ev.PlanRecorded(plan="x"), changed("verifying", "proposing", "propose")])
    store.append("run-1", seq, plan(1))
    assert_intact(store, "run-1", seq + 1)


def test_a_lock_held_past_the_timeout_on_the_held_path_is_store_unavailable(store):
    impatient = open_store(store.url, busy_timeout_ms=200)
    try:
        seq = started("run-1", impatient)  # the next append takes the held path
        with write_locked(store.url), pytest.raises(StoreUnavailable, match="is locked") as info:
            impatient.append("run-1", seq, plan(1))
        assert "200 ms" in str(info.value)
        impatient.append("run-1", seq, plan(1))  # nothing of the failed one was kept
        assert_intact(store, "run-1", seq + 1)
    finally:
        impatient.close()


def test_the_insert_race_lost_on_the_held_path_is_a_conflict(store):
    """The runs row says seq 3 but seq 4 is already taken: the unique index has the last word."""
    seq = started("run-1", store)
    head = store._heads["run-1"]
    other = open_store(store.url)
    try:
        other.append("run-1", seq, plan(1))
        with other.engine.begin() as conn:  # put the row back as it was: only the index knows
            conn.execute(
                sa.text("UPDATE runs SET last_seq = :s, last_hash = :h WHERE run_id = 'run-1'"),
                {"s": seq, "h": head.last_hash},
            )
        with pytest.raises(ConcurrencyConflict, match=r"run-1: seq 4 was appended by another writer"):
            store.append("run-1", seq, plan(2))
        assert [r.event for r in store.load("run-1")][-1] == plan(1)[0]
    finally:
        other.close()


def test_appends_from_many_threads_on_distinct_runs(store):
    runs = [f"run-{i}" for i in range(4)]
    errors: list[BaseException] = []

    def writer(run_id: str) -> None:
        try:
            seq = started(run_id, store)
            for i in range(20):
                seq = store.append(run_id, seq, plan(i))[-1].seq
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for r in runs:
        assert_intact(store, r, 23)


def test_close_releases_the_held_connections_and_a_later_append_reconnects(store):
    seq = started("run-1", store)
    store.append("run-1", seq, plan(1))
    store.close()
    store.append("run-1", seq + 1, plan(2))
    assert_intact(store, "run-1", seq + 2)


@pytest.mark.postgres
def test_a_held_connection_the_server_dropped_is_replaced(postgres_schema_url):
    from store.database import upgrade

    upgrade(postgres_schema_url)
    s = open_store(postgres_schema_url)
    admin = sa.create_engine(postgres_schema_url, isolation_level="AUTOCOMMIT")
    try:
        seq = started("run-1", s)
        seq = s.append("run-1", seq, plan(1))[-1].seq  # held connection in use
        pid = s._held_connection().conn.info.backend_pid
        with admin.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({pid})").scalar()
        recs = s.append("run-1", seq, plan(2))  # found broken, discarded, done on a fresh one
        assert recs[-1].seq == seq + 1
        assert s._held_connection().conn.info.backend_pid != pid
        s.append("run-1", seq + 1, plan(3))
        assert_intact(s, "run-1", seq + 2)
    finally:
        admin.dispose()
        s.close()


def test_records_a_broken_connection_may_have_committed_are_recognised(store):
    """The statement went out, the reply never came: the row tells whether it committed."""
    seq = started("run-1", store)
    recs = store.append("run-1", seq, plan(1))  # committed; pretend we never heard back
    store._forget("run-1")
    again = store._append_read("run-1", seq, plan(1), None, recs[0].recorded_at, recs)
    assert again == recs
    assert_intact(store, "run-1", seq + 1)
    with pytest.raises(ConcurrencyConflict):  # without that knowledge it is another writer's seq
        store._append_read("run-1", seq, plan(1), None, recs[0].recorded_at, None)


def test_continuing_a_run_takes_no_pooled_connection(store):
    """The point of the held path: after the first append of a run, no pool checkout per append."""
    seq = started("run-1", store)
    checkouts: list[object] = []
    sa.event.listen(store.engine, "checkout", lambda *a: checkouts.append(a))
    for i in range(5):
        seq = store.append("run-1", seq, plan(i))[-1].seq
    assert checkouts == []
    assert_intact(store, "run-1", seq)


def test_a_long_append_on_a_continued_run(store):
    """Beyond one statement's share of parameters on PostgreSQL, the read path takes it."""
    seq = started("run-1", store)
    recs = store.append("run-1", seq, [ev.PlanRecorded(plan=f"p{i}") for i in range(150)])
    assert [r.seq for r in recs] == list(range(seq + 1, seq + 151))
    store.append("run-1", seq + 150, plan(1))
    assert_intact(store, "run-1", seq + 151)
