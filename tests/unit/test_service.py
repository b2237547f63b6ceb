"""The service layer's use cases against in-memory fakes (no database, no HTTP, no processes)."""

from __future__ import annotations

import pytest

from kodr_core import events as ev
from kodr_core.errors import RunNotFound, UsageError
from kodr_core.options import RunOptions
from kodr_core.ports import RunRow, StepTiming, Writer
from kodr_core.service import RunConflict, Service
from tests.unit.fakes import MemoryLog, MemoryWorkspace


class MemoryQueue(MemoryLog):
    """MemoryLog plus the queue's reads; leases are a dict, announcements a list."""

    def __init__(self) -> None:
        super().__init__()
        self.announced: list[str] = []
        self.leases: dict[str, tuple[str, float]] = {}
        self.seized: list[str] = []

    def load_after(self, run_id: str, seq: int) -> list[ev.RecordedEvent]:
        return [r for r in self.load(run_id) if r.seq > seq]

    def resolve(self, ref: str) -> str:
        ids = [k for k in self.runs if k.startswith(ref)] if ref else []
        if len(ids) != 1:
            raise RunNotFound(f"no run matches {ref!r}")
        return ids[0]

    def announce(self, run_id: str) -> None:
        self.announced.append(run_id)

    def append_seized(self, run_id, owner, expected_seq, events):  # type: ignore[no-untyped-def]
        self.seized.append(owner)
        return self.append(run_id, expected_seq, events)

    def get_run(self, run_id: str) -> RunRow | None:
        owner, expires = self.leases.get(run_id, (None, None))
        return RunRow(
            run_id,
            "requested",
            None,
            None,
            0,
            len(self.load(run_id)),
            "",
            "run",
            "",
            None,
            None,
            owner,
            1 if owner else 0,
            expires,
        )

    def list_runs(self, state=None, limit=50, offset=0):  # type: ignore[no-untyped-def]
        return [self.get_run(r) for r in sorted(self.runs)][offset : offset + limit]

    def count_by_state(self) -> dict[str, int]:
        return {"requested": len(self.runs)}

    def queue_depth(self) -> int:
        return len(self.runs)

    def heal_turns(self) -> int:
        return 0

    def writers(self, run_id: str) -> dict[int, Writer]:
        return {r.seq: Writer("w", 1) for r in self.load(run_id)}

    def step_timings(self) -> list[StepTiming]:
        return [StepTiming("model", 1.5), StepTiming("tests", 0.5)]


@pytest.fixture
def q() -> MemoryQueue:
    return MemoryQueue()


def _request(q: MemoryQueue, **kw):  # type: ignore[no-untyped-def]
    svc = Service(q, actor="unit")
    ws = MemoryWorkspace({"calc.js": "module.exports = 1;\n"})
    return svc, svc.request(kw.get("task", "fix it"), kw.get("mode", "heal"), RunOptions(), ws)


def test_request_records_the_snapshot_waits_unowned_and_announces(q):
    svc, s = _request(q)
    assert (s.state, s.mode, s.options["heal"], s.lease_owner) == ("requested", "heal", True, None)
    assert q.announced == [s.run_id]
    first = svc.events(s.run_id)[0]
    assert first.type == "RunRequested" and set(first.data["base_snapshot"]) == {"calc.js"}


@pytest.mark.parametrize(
    "task, mode, options, field",
    [
        ("  ", "run", RunOptions(), "task"),
        ("x", "deploy", RunOptions(), "mode"),
        ("x", "run", RunOptions(dry_run=True), "options.dry_run"),
    ],
)
def test_request_refuses_naming_the_field(q, task, mode, options, field):
    with pytest.raises(UsageError, match=f"^{field}:"):
        Service(q).request(task, mode, options, MemoryWorkspace({}))
    assert q.runs == {} and q.announced == []


def test_cancel_ends_the_run_once_with_who_and_what_was_interrupted(q):
    svc, s = _request(q)
    done = svc.cancel(s.run_id[:6])
    assert (done.state, done.reason, done.facts) == ("failed", "cancelled", {"by": "unit", "interrupted": None})
    assert q.seized == ["cancel:unit"]
    with pytest.raises(RunConflict, match="already ended failed"):
        svc.cancel(s.run_id)
    with pytest.raises(RunConflict):
        svc.resume(s.run_id, now=0)


def test_resume_refuses_a_run_a_live_worker_holds(q):
    svc, s = _request(q)
    q.leases[s.run_id] = ("host:1:abc/0", 100.0)
    with pytest.raises(RunConflict, match="being driven by host:1:abc/0"):
        svc.resume(s.run_id, now=50.0)
    assert svc.resume(s.run_id, now=150.0).run_id == s.run_id  # the lease expired: back in the queue
    assert q.announced == [s.run_id, s.run_id]


def test_reads(q):
    svc, s = _request(q)
    with pytest.raises(UsageError, match="^state:"):
        svc.list_runs("nope")
    assert [r.run_id for r in svc.list_runs().runs] == [s.run_id]
    assert svc.events(s.run_id, after=1) == []
    assert svc.manifest(s.run_id) == svc.events(s.run_id)[0].data["base_snapshot"]
    assert svc.replay(s.run_id).ok
    m = svc.metrics()
    assert (m.queue_depth, m.step_seconds["model"], m.step_seconds["tests"]) == (1, [1.5], [0.5])
    with pytest.raises(RunNotFound):
        svc.show("zzz")
