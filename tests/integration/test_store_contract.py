"""One contract for every EventLog: the in-memory fake, SQLite and PostgreSQL.

As ``eventsourcing`` runs one abstract recorder test case against each recorder,
every test here runs against all three, so the 600+ unit tests that drive the
engine on :class:`tests.unit.fakes.MemoryLog` rest on a fake that refuses what the
real store refuses.
"""

from __future__ import annotations

import pytest

from kodr_core import events as ev
from kodr_core.errors import ConcurrencyConflict, IllegalTransition
from store.hashchain import GENESIS, canonical_bytes, chain_hash
from tests.unit.fakes import MemoryLog

LOGS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=LOGS)
def log(request, tmp_path):
    if request.param == "memory":
        yield MemoryLog()
        return
    from store.database import open_store, upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'kodr.db'}"
    else:
        url = request.getfixturevalue("postgres_schema_url")
        upgrade(url)
    s = open_store(url, anchor_dir=tmp_path / "runs")
    yield s
    s.close()


def requested() -> ev.RunRequested:
    return ev.RunRequested(task="add a greeting", workspace="/ws", options={"max_turns": 3})


def moved(frm: str, to: str, trigger: str, **kw) -> ev.StateChanged:
    return ev.StateChanged(from_state=frm, to_state=to, trigger=trigger, **kw)


def started(log, run_id: str = "run-1") -> str:
    log.append(run_id, 0, [requested()])
    log.append(run_id, 1, [moved("requested", "applied", "adopt")])
    return run_id


def test_round_trip_numbers_events_and_shares_recorded_at(log):
    new = [requested(), moved("requested", "applied", "adopt"), ev.PlanRecorded(plan="p")]
    recs = log.append("run-1", 0, new)
    assert [r.seq for r in recs] == [1, 2, 3]
    assert len({r.recorded_at for r in recs}) == 1
    loaded = log.load("run-1")
    assert [r.event for r in loaded] == new
    assert [(r.seq, r.recorded_at, r.hash) for r in loaded] == [(r.seq, r.recorded_at, r.hash) for r in recs]
    assert log.load("no-such-run") == []


def test_hashes_chain_from_genesis_over_the_canonical_bytes(log):
    recs = log.append("run-1", 0, [requested(), moved("requested", "applied", "adopt")])
    prev = GENESIS
    for r in recs:
        body = canonical_bytes("run-1", r.seq, r.type, r.event.VERSION, r.recorded_at, r.event.payload())
        assert (r.prev_hash, r.hash) == (prev, chain_hash(prev, body))
        prev = r.hash
    log.check_intact("run-1")


def test_an_empty_append_writes_nothing(log):
    assert log.append("run-1", 0, []) == []
    assert log.load("run-1") == []


def test_a_taken_seq_is_a_conflict_and_stores_nothing(log):
    started(log)
    with pytest.raises(ConcurrencyConflict):
        log.append("run-1", 1, [ev.PlanRecorded(plan="late")])
    with pytest.raises(ConcurrencyConflict):
        log.append("run-1", 5, [ev.PlanRecorded(plan="gap")])
    with pytest.raises(ConcurrencyConflict):
        log.append("run-2", 1, [ev.PlanRecorded(plan="no run")])
    assert [r.seq for r in log.load("run-1")] == [1, 2]


@pytest.mark.parametrize(
    "bad",
    [
        moved("applied", "passed", "succeed"),  # not from applied
        moved("requested", "verifying", "verify"),  # from_state is not where the run is
        moved("applied", "healing", "verify"),  # verify does not lead to healing
        moved("applied", "failed", "explode"),  # no such trigger
    ],
    ids=["illegal-trigger", "wrong-from", "wrong-to", "unknown-trigger"],
)
def test_an_illegal_transition_is_refused_and_nothing_of_its_append_is_stored(log, bad):
    started(log)
    with pytest.raises(IllegalTransition):
        log.append("run-1", 2, [ev.PlanRecorded(plan="first"), bad])
    assert [r.seq for r in log.load("run-1")] == [1, 2]
    recs = log.append("run-1", 2, [moved("applied", "verifying", "verify")])  # the seq is still free
    assert recs[0].seq == 3


def test_a_terminal_run_moves_no_further(log):
    started(log)
    log.append("run-1", 2, [moved("applied", "failed", "fail", outcome="failed", reason="x")])
    with pytest.raises(IllegalTransition):
        log.append("run-1", 3, [moved("failed", "verifying", "verify")])


def test_bad_arguments_are_refused(log):
    with pytest.raises(ValueError):
        log.append("", 0, [requested()])
    with pytest.raises(ValueError):
        log.append("x" * 65, 0, [requested()])
    with pytest.raises(ValueError):
        log.append("run-1", -1, [requested()])


def test_iter_events_streams_in_order_after_a_seq(log):
    started(log)
    log.append("run-1", 2, [ev.PlanRecorded(plan=str(i)) for i in range(5)])
    assert [r.seq for r in log.iter_events("run-1")] == list(range(1, 8))
    assert [r.seq for r in log.iter_events("run-1", after=4, batch=2)] == [5, 6, 7]


def test_blobs_are_content_addressed_and_idempotent(log):
    one = log.put_blob(b"hello")
    assert log.put_blob(b"hello") == one
    keys = log.put_blobs([b"a", b"b", b"a", b""])
    assert keys[0] == keys[2] and len(set(keys)) == 3
    assert [log.get_blob(k) for k in keys] == [b"a", b"b", b"a", b""]
    assert log.put_blobs([]) == []
    with pytest.raises(KeyError):
        log.get_blob("0" * 64)
    with pytest.raises(TypeError):
        log.put_blobs(["text is not bytes"])
