"""brakes.py: every stop rule, table-driven, and the adapters over the real fold."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from kodr_core import events as ev
from kodr_core.aggregate import fold
from kodr_core.brakes import (
    Brake,
    TurnRecord,
    after_invalid_output,
    after_model_error,
    after_repair,
    after_verification,
    best_turn,
    decide_after_repair,
    decide_after_verification,
    deadline_passed,
    failure_count,
    history_from_run,
    manifest_hash,
    verification_passed,
)
from kodr_core.options import RunOptions
from kodr_core.states import Reason, State

CMD = ["node", "--test"]


def FAIL(k: int, total: int = 4, **kw: Any) -> dict[str, Any]:
    failures = [{"name": f"t{i}", "file": "test/a.test.js", "line": i, "message": "x", "stack": ""}
                for i in range(k)]  # fmt: skip
    return {"command": CMD, "exitCode": 1, "ok": False, "timedOut": False, "passed": total - k,
            "failed": k, "skipped": 0, "total": total, "failures": failures, **kw}  # fmt: skip


PASS = {"command": CMD, "exitCode": 0, "ok": True, "timedOut": False, "passed": 4, "failed": 0,
        "skipped": 0, "total": 4, "failures": []}  # fmt: skip
TIMEOUT = dict(FAIL(0), exitCode=None, timedOut=True, total=0, passed=0)
EMPTY = dict(PASS, total=0, passed=0)
ALLOWED = frozenset({"test/a.test.js", "src/a.js"})
BASE = {"test/a.test.js": "t0", "src/a.js": "a0", "src/other.js": "o0", "package.json": "p0"}


def history(*turns: tuple[dict[str, str] | None, dict[str, Any] | None], allowed=ALLOWED) -> list[TurnRecord]:
    """Turn records from (writes: path -> new content id, or None for no writes event; tests)."""
    out, manifest = [], dict(BASE)
    for n, (writes, tests) in enumerate(turns):
        before = dict(manifest)
        manifest.update(writes or {})
        out.append(TurnRecord(
            n=n, manifest_before=before, manifest_after=dict(manifest), written=tuple(writes or ()),
            tests_before=out[-1].tests_after if out else None, tests_after=tests,
            allowed=allowed if n else frozenset(), applied=writes is not None,
        ))  # fmt: skip
    return out


FIX = {"src/a.js": "a1"}
FIX2 = {"src/a.js": "a2"}
SAME = {"src/a.js": "a0"}  # rewrites the file with its current content: no change
NOTHING: dict[str, str] = {}  # an empty proposal: writes applied, nothing named
OFF = {"src/other.js": "o1"}
MIXED = {"src/a.js": "a9", "src/other.js": "o9"}

NOW = 1_000.0


@pytest.mark.parametrize(
    "label, turns, kw, reason, evidence",
    [
        ("first proposal passes", [({}, PASS)], {}, Reason.VERIFICATION_PASSED,
         {"turn": 0, "passed": 4, "total": 4, "command": CMD}),
        ("a pass wins over an off-target edit", [({}, FAIL(2)), (OFF, PASS)], {},
         Reason.VERIFICATION_PASSED, {"turn": 1}),
        ("a pass wins over a spent deadline", [({}, PASS)], {"deadline": NOW - 1},
         Reason.VERIFICATION_PASSED, {}),
        ("the test run timed out", [({}, TIMEOUT)], {}, Reason.TEST_TIMEOUT, {"turn": 0}),
        ("no test executed", [({}, EMPTY)], {}, Reason.NO_VERIFICATION, {"why": "no test executed"}),
        ("failing-files run passed: the full suite must run", [({}, dict(PASS, scope="failing"))], {},
         None, None),
        ("failing-files run failed: on to repair", [({}, FAIL(1, scope="failing"))], {}, None, None),
        ("failed, turns left", [({}, FAIL(2))], {}, None, None),
        ("exit code 1 with nothing failed is no pass", [({}, dict(PASS, exitCode=1, ok=False))], {},
         None, None),
        ("not healing", [({}, FAIL(2))], {"max_turns": 0}, Reason.TESTS_FAILED,
         {"turn": 0, "failed": 2, "total": 4}),
        ("deadline passed", [({}, FAIL(2))], {"deadline": NOW}, Reason.RUN_DEADLINE,
         {"deadline": NOW, "now": NOW}),
        ("deadline not yet", [({}, FAIL(2))], {"deadline": NOW + 1}, None, None),
        ("budget spent", [({}, FAIL(3)), (FIX, FAIL(2)), (FIX2, FAIL(2)), ({"src/a.js": "a3"}, FAIL(1))],
         {}, Reason.BUDGET_EXHAUSTED, {"max_turns": 3, "failures_per_turn": [3, 2, 2, 1], "best_turn": 3}),
        ("budget spent, ties go to the earliest turn",
         [({}, FAIL(3)), (FIX, FAIL(1)), (FIX2, FAIL(1))], {"max_turns": 2},
         Reason.BUDGET_EXHAUSTED, {"failures_per_turn": [3, 1, 1], "best_turn": 1}),
        ("budget of one turn", [({}, FAIL(3)), (FIX, FAIL(3))], {"max_turns": 1},
         Reason.BUDGET_EXHAUSTED, {"failures_per_turn": [3, 3], "best_turn": 0}),
        ("healing with no turns at all", [({}, FAIL(3))], {"max_turns": 0, "heal": True},
         Reason.TESTS_FAILED, {}),
        ("two turns without change", [({}, FAIL(2)), (SAME, FAIL(2)), (NOTHING, FAIL(2))], {"max_turns": 5},
         Reason.NO_PROGRESS, {"turns": [1, 2]}),
        ("one turn without change is not yet a stall", [({}, FAIL(2)), (SAME, FAIL(2))], {}, None, None),
        ("no change, change, no change", [({}, FAIL(2)), (SAME, FAIL(2)), (FIX, FAIL(2)), (NOTHING, FAIL(2))],
         {"max_turns": 5}, None, None),
        ("no progress beats the budget", [({}, FAIL(2)), (SAME, FAIL(2)), (SAME, FAIL(2))],
         {"max_turns": 2}, Reason.NO_PROGRESS, {"turns": [1, 2]}),
        ("strict: an edit outside the allowed paths", [({}, FAIL(2)), (OFF, FAIL(2))], {},
         Reason.OFF_TARGET_EDIT,
         {"turn": 1, "paths": ["src/other.js"], "allowed": sorted(ALLOWED), "strictness": "strict"}),
        ("strict: one of two edits outside", [({}, FAIL(2)), (MIXED, FAIL(1))], {},
         Reason.OFF_TARGET_EDIT, {"paths": ["src/other.js"]}),
        ("lenient: one of two edits outside goes on", [({}, FAIL(2)), (MIXED, FAIL(1))],
         {"strictness": "lenient"}, None, None),
        ("lenient: every edit outside", [({}, FAIL(2)), (OFF, FAIL(2))], {"strictness": "lenient"},
         Reason.OFF_TARGET_EDIT, {"paths": ["src/other.js"], "strictness": "lenient"}),
        ("off: never", [({}, FAIL(2)), (OFF, FAIL(2))], {"strictness": "off"}, None, None),
        ("an unchanged rewrite outside is no edit", [({}, FAIL(2)), ({"src/other.js": "o0", **FIX}, FAIL(1))],
         {}, None, None),
        ("a new file outside is an edit", [({}, FAIL(2)), ({"src/new.js": "n1"}, FAIL(2))], {},
         Reason.OFF_TARGET_EDIT, {"paths": ["src/new.js"]}),
        ("off-target beats the budget", [({}, FAIL(2)), (OFF, FAIL(2))], {"max_turns": 1},
         Reason.OFF_TARGET_EDIT, {}),
        ("the proposal turn is never off target", [({"src/other.js": "o1"}, FAIL(2))], {}, None, None),
    ],
)
def test_after_verification_rules(label, turns, kw, reason, evidence) -> None:
    kw = dict(kw)
    kw.pop("heal", None)
    kw.setdefault("max_turns", 3)
    if "deadline" in kw:
        kw["now"] = NOW
    brake = decide_after_verification(history(*turns), **kw)
    if reason is None:
        assert brake is None, label
        return
    assert isinstance(brake, Brake), label
    assert brake.reason is reason, label
    assert brake.outcome is {
        Reason.VERIFICATION_PASSED: State.PASSED, Reason.TEST_TIMEOUT: State.TIMED_OUT,
        Reason.RUN_DEADLINE: State.TIMED_OUT, Reason.NO_VERIFICATION: State.FAILED,
        Reason.TESTS_FAILED: State.FAILED, Reason.BUDGET_EXHAUSTED: State.FAILED,
        Reason.NO_PROGRESS: State.STALLED, Reason.OFF_TARGET_EDIT: State.STALLED,
    }[reason]  # fmt: skip
    for key, value in evidence.items():
        assert brake.evidence[key] == value, (label, key)


def test_allowed_paths_unknown_means_no_judgement() -> None:
    turns = history(({}, FAIL(2)), (OFF, FAIL(2)), allowed=frozenset())
    assert decide_after_verification(turns, max_turns=3) is None


def test_no_progress_evidence_names_the_workspace() -> None:
    turns = history(({}, FAIL(2)), (SAME, FAIL(2)), (SAME, FAIL(2)))
    brake = decide_after_verification(turns, max_turns=5)
    assert brake is not None and brake.evidence["manifest_hash"] == manifest_hash(BASE)


def test_nothing_to_decide() -> None:
    assert decide_after_verification([], max_turns=3) is None
    assert decide_after_verification(history((FIX, None)), max_turns=3) is None


@pytest.mark.parametrize(
    "label, turns, kw, reason",
    [
        ("a change goes on to verify", [({}, FAIL(2)), (FIX, None)], {}, None),
        ("the first unchanged turn still verifies", [({}, FAIL(2)), (SAME, None)], {}, None),
        ("the second unchanged turn in a row stops", [({}, FAIL(2)), (SAME, FAIL(2)), (NOTHING, None)], {},
         Reason.NO_PROGRESS),
        ("an off-target edit waits for its tests", [({}, FAIL(2)), (OFF, None)], {}, None),
        ("deadline", [({}, FAIL(2)), (FIX, None)], {"deadline": NOW - 5}, Reason.RUN_DEADLINE),
        ("deadline unknown", [({}, FAIL(2)), (FIX, None)], {"deadline": None}, None),
    ],
)
def test_after_repair_rules(label, turns, kw, reason) -> None:
    brake = decide_after_repair(history(*turns), now=NOW, **kw)
    assert (brake.reason if brake else None) is reason, label


@pytest.mark.parametrize(
    "deadline, now, stops",
    [
        (None, NOW, False),
        (NOW, None, False),
        (NOW + 0.5, NOW, False),
        (NOW, NOW, True),
        (NOW - 100, NOW, True),
        (datetime(2030, 1, 1, tzinfo=timezone.utc), datetime(2029, 12, 31, tzinfo=timezone.utc), False),
        (datetime(2030, 1, 1, tzinfo=timezone.utc), datetime(2030, 1, 1, 0, 1, tzinfo=timezone.utc), True),
    ],
)
def test_deadline(deadline, now, stops: bool) -> None:
    brake = deadline_passed(deadline, now)
    assert (brake is not None) is stops
    if brake:
        assert brake.outcome is State.TIMED_OUT and brake.reason is Reason.RUN_DEADLINE
        assert set(brake.evidence) == {"deadline", "now"}


@pytest.mark.parametrize(
    "tests, passed",
    [
        (PASS, True),
        (dict(PASS, scope="full"), True),
        (dict(PASS, exitCode=None, ok=None), True),  # a parser that reports no exit code
        (dict(PASS, scope="failing"), False),
        (EMPTY, False),
        (TIMEOUT, False),
        (dict(PASS, timedOut=True), False),
        (dict(PASS, exitCode=1), False),
        (dict(PASS, ok=False), False),
        (dict(PASS, failures=[{"name": "x"}]), False),
        (FAIL(1), False),
        (None, False),
        ({}, False),
    ],
)
def test_verification_passed(tests, passed: bool) -> None:
    assert verification_passed(tests) is passed


@pytest.mark.parametrize(
    "results, best",
    [
        ([FAIL(3), FAIL(1), FAIL(2)], 1),
        ([FAIL(2), FAIL(2)], 0),
        ([FAIL(3), FAIL(1), FAIL(1)], 1),
        ([FAIL(3), TIMEOUT, EMPTY], 0),  # results that tell nothing never win
        ([TIMEOUT, FAIL(4)], 1),
        ([None, FAIL(2), FAIL(3)], 1),
        ([None], 0),
        ([], 0),
    ],
)
def test_best_turn(results, best: int) -> None:
    assert best_turn([TurnRecord(n=i, tests_after=r) for i, r in enumerate(results)]) == best


def test_failure_count() -> None:
    assert [failure_count(t) for t in (FAIL(2), PASS, EMPTY, TIMEOUT, None)] == [2, 0, None, None, None]


@pytest.mark.parametrize(
    "kind, state, reason",
    [
        ("timeout", State.TIMED_OUT, Reason.MODEL_TIMEOUT),
        ("unavailable", State.FAILED, Reason.MODEL_UNAVAILABLE),
        ("http", State.FAILED, Reason.MODEL_UNAVAILABLE),
    ],
)
def test_after_model_error(kind: str, state: State, reason: Reason) -> None:
    brake = after_model_error(kind, message="read timed out after 180s", turn=2)
    assert (brake.outcome, brake.reason) == (state, reason)
    assert brake.evidence == {"error": kind, "message": "read timed out after 180s", "turn": 2}


@pytest.mark.parametrize(
    "errors, retries, stops",
    [((), 1, False), (("bad json",), 1, False), (("bad json", "no files"), 1, True),
     (("bad json",), 0, True), (("a", "b"), 2, False)],
)
def test_after_invalid_output(errors, retries: int, stops: bool) -> None:
    brake = after_invalid_output(errors, retries=retries)
    assert (brake is not None) is stops
    if brake:
        assert (brake.outcome, brake.reason) == (State.FAILED, Reason.INVALID_PROPOSAL)
        assert brake.evidence == {"errors": list(errors), "retries": retries}


# -- the adapters over the fold ---------------------------------------------------------

START = datetime(2025, 1, 1, tzinfo=timezone.utc)


class Log:
    """Builds a recorded history for :func:`fold`, one event at a time."""

    def __init__(self, **options: Any) -> None:
        self.records: list[ev.RecordedEvent] = []
        self.add(ev.RunRequested(task="fix", workspace="/ws", mode="heal", options=options,
                                 base_snapshot=dict(BASE)))  # fmt: skip
        self.add(ev.StateChanged(from_state="requested", to_state="applied", trigger="adopt"))
        self.add(ev.StateChanged(from_state="applied", to_state="verifying", trigger="verify"))

    def add(self, event: ev.Event) -> None:
        at = (START + timedelta(seconds=len(self.records))).isoformat()
        self.records.append(ev.RecordedEvent("r1", len(self.records) + 1, event, at))

    def tests(self, n: int, result: dict[str, Any]) -> None:
        self.add(ev.TestsStarted(turn=n, attempt=1, key=f"r1:tests:{n}", command=CMD))
        self.add(ev.TestsFinished(turn=n, attempt=1, key=f"r1:tests:{n}", result=result))

    def repair(self, n: int, writes: dict[str, str], allowed=ALLOWED) -> None:
        self.add(ev.StateChanged(from_state="verifying", to_state="healing", trigger="heal", heal_turn=n))
        self.add(ev.ModelCallStarted(purpose="repair", turn=n, attempt=1, key=f"r1:model:{n}",
                                     request_blob="x", allowed_paths=sorted(allowed)))  # fmt: skip
        self.add(ev.ModelCallCompleted(purpose="repair", turn=n, attempt=1, key=f"r1:model:{n}",
                                       response_blob="y", duration_ms=5))  # fmt: skip
        manifest = dict(self.run().manifest)
        manifest.update(writes)
        files = [{"path": p, "sha256": s, "bytes": 1} for p, s in writes.items()]
        self.add(ev.WritesStarted(turn=n, attempt=1, key=f"r1:writes:{n}", files=files))
        self.add(ev.WritesApplied(turn=n, key=f"r1:writes:{n}", files=files, manifest=manifest))

    def verify(self, n: int) -> None:
        self.add(ev.StateChanged(from_state="healing", to_state="verifying", trigger="verify", heal_turn=n))

    def run(self):
        return fold("r1", self.records)


OPTS = RunOptions(heal=True, max_turns=2)


def test_history_from_the_fold() -> None:
    log = Log(heal=True, max_turns=2)
    log.tests(0, FAIL(3))
    log.repair(1, FIX)
    log.verify(1)
    log.tests(1, FAIL(2))
    hist = history_from_run(log.run())
    assert [t.n for t in hist] == [0, 1]
    assert hist[0].applied is False and hist[0].manifest_after == BASE
    assert hist[1].manifest_before == BASE and hist[1].manifest_after == {**BASE, **FIX}
    assert hist[1].written == ("src/a.js",) and hist[1].edits == ("src/a.js",)
    assert hist[1].allowed == ALLOWED
    assert hist[1].tests_before == dict(FAIL(3), scope="full")
    assert hist[1].tests_after == dict(FAIL(2), scope="full")


def test_adapters_stop_for_no_progress_after_the_second_idle_repair() -> None:
    log = Log(heal=True, max_turns=5)
    opts = RunOptions(heal=True, max_turns=5)
    log.tests(0, FAIL(2))
    log.repair(1, SAME)
    assert after_repair(log.run(), opts) is None
    log.verify(1)
    log.tests(1, FAIL(2))
    assert after_verification(log.run(), opts) is None
    log.repair(2, SAME)
    brake = after_repair(log.run(), opts)
    assert brake is not None and brake.reason is Reason.NO_PROGRESS
    assert brake.evidence["turns"] == [1, 2]


def test_adapters_budget_and_off_target() -> None:
    log = Log(heal=True, max_turns=2)
    log.tests(0, FAIL(3))
    log.repair(1, FIX)
    log.verify(1)
    log.tests(1, FAIL(1))
    assert after_verification(log.run(), OPTS) is None
    log.repair(2, FIX2)
    log.verify(2)
    log.tests(2, FAIL(2))
    brake = after_verification(log.run(), OPTS)
    assert brake is not None and brake.reason is Reason.BUDGET_EXHAUSTED
    assert brake.evidence == {"max_turns": 2, "failures_per_turn": [3, 1, 2], "best_turn": 1}

    log = Log(heal=True, max_turns=2)
    log.tests(0, FAIL(3))
    log.repair(1, OFF)
    log.verify(1)
    log.tests(1, FAIL(3))
    brake = after_verification(log.run(), OPTS)
    assert brake is not None and brake.reason is Reason.OFF_TARGET_EDIT
    assert brake.evidence["paths"] == ["src/other.js"]
    assert after_verification(log.run(), RunOptions(heal=True, max_turns=2, off_target="off")) is None


def test_adapters_deadline_only_with_a_clock() -> None:
    log = Log(heal=True, max_turns=2, run_deadline_s=60)
    log.tests(0, FAIL(3))
    log.repair(1, FIX)
    opts = RunOptions(heal=True, max_turns=2, run_deadline_s=60)
    assert after_repair(log.run(), opts) is None
    assert after_repair(log.run(), opts, now=START.timestamp() + 30) is None
    brake = after_repair(log.run(), opts, now=START.timestamp() + 61)
    assert brake is not None and brake.reason is Reason.RUN_DEADLINE


def test_adapters_without_heal_fail_on_tests() -> None:
    log = Log()
    log.tests(0, FAIL(1))
    brake = after_verification(log.run(), RunOptions())
    assert brake is not None and (brake.outcome, brake.reason) == (State.FAILED, Reason.TESTS_FAILED)
