"""brakes.py, the rule book: every stop rule, table-driven, its order, and its view of the real fold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kodr_core import events as ev
from kodr_core.aggregate import fold
from kodr_core.brakes import (
    RULES,
    Brake,
    Checkpoint,
    ModelFailure,
    Situation,
    TurnRecord,
    best_turn,
    check,
    failure_count,
    first_brake,
    history_from_run,
    manifest_hash,
    verification_passed,
)
from kodr_core.options import RunOptions
from kodr_core.results import InstallResult, TestResult
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
            tests_before=out[-1].tests_after if out else None, tests_after=_typed(tests),
            results=(_typed(tests),) if tests is not None else (),
            allowed=allowed if n else frozenset(), applied=writes is not None,
        ))  # fmt: skip
    return out


def _typed(tests: dict[str, Any] | None) -> TestResult | None:
    return None if tests is None else TestResult.of(tests)


def decide_after_verification(
    turns: list[TurnRecord],
    *,
    max_turns: int,
    strictness: str = "strict",
    deadline: float | None = None,
    now: float | None = None,
) -> Brake | None:
    """The rule book at the verification checkpoint (deadline as an elapsed time from 0)."""
    return first_brake(
        Situation(
            Checkpoint.VERIFICATION,
            tuple(turns),
            max_turns=max_turns,
            strictness=strictness,
            deadline_s=deadline,
            elapsed_s=now,
        )
    )  # type: ignore[arg-type]


def decide_after_repair(
    turns: list[TurnRecord], *, deadline: float | None = None, now: float | None = None
) -> Brake | None:
    return first_brake(Situation(Checkpoint.REPAIR, tuple(turns), max_turns=3, deadline_s=deadline, elapsed_s=now))


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
        (
            "first proposal passes",
            [({}, PASS)],
            {},
            Reason.VERIFICATION_PASSED,
            {"passed": 4, "total": 4, "command": "node --test", "scope": "full"},
        ),
        ("a pass wins over an off-target edit", [({}, FAIL(2)), (OFF, PASS)], {}, Reason.VERIFICATION_PASSED, {}),
        (
            "a spent deadline wins over a pass (it is checked first, at every checkpoint)",
            [({}, PASS)],
            {"deadline": NOW - 1},
            Reason.RUN_DEADLINE,
            {},
        ),
        ("the test run timed out", [({}, TIMEOUT)], {}, Reason.TEST_TIMEOUT, {"command": "node --test"}),
        (
            "no test executed",
            [({}, EMPTY)],
            {},
            Reason.NO_VERIFICATION,
            {"cause": "no_tests_collected", "detail": "no tests ran"},
        ),
        (
            "no test executed, with the runner's cause",
            [({}, dict(EMPTY, cause="runner_missing", detail="pytest not installed in the project environment"))],
            {},
            Reason.NO_VERIFICATION,
            {"cause": "runner_missing", "detail": "pytest not installed in the project environment"},
        ),
        (
            "an old result whose output was unreadable",
            [({}, dict(EMPTY, parser=None, error="no test results could be read from the output"))],
            {},
            Reason.NO_VERIFICATION,
            {"cause": "output_unreadable"},
        ),
        (
            "a pass with fewer tests than before",
            [({}, FAIL(2, total=6)), (FIX, PASS)],
            {},
            Reason.TESTS_REMOVED,
            {"total_before": 6, "total": 4},
        ),
        (
            "a pass with as many tests as before",
            [({}, FAIL(2, total=4)), (FIX, PASS)],
            {},
            Reason.VERIFICATION_PASSED,
            {},
        ),
        ("failing-files run passed: the full suite must run", [({}, dict(PASS, scope="failing"))], {}, None, None),
        ("failing-files run failed: on to repair", [({}, FAIL(1, scope="failing"))], {}, None, None),
        ("failed, turns left", [({}, FAIL(2))], {}, None, None),
        ("exit code 1 with nothing failed is no pass", [({}, dict(PASS, exitCode=1, ok=False))], {}, None, None),
        (
            "not healing",
            [({}, FAIL(2))],
            {"max_turns": 0},
            Reason.TESTS_FAILED,
            {"failed": 2, "total": 4, "failing": ["t0", "t1"]},
        ),
        (
            "deadline passed",
            [({}, FAIL(2))],
            {"deadline": NOW - 1},
            Reason.RUN_DEADLINE,
            {"deadline_s": NOW - 1, "elapsed_s": NOW},
        ),
        ("deadline reached, not passed", [({}, FAIL(2))], {"deadline": NOW}, None, None),
        ("deadline not yet", [({}, FAIL(2))], {"deadline": NOW + 1}, None, None),
        (
            "budget spent",
            [({}, FAIL(3)), (FIX, FAIL(2)), (FIX2, FAIL(2)), ({"src/a.js": "a3"}, FAIL(1))],
            {},
            Reason.BUDGET_EXHAUSTED,
            {"max_turns": 3, "failures_per_turn": [3, 2, 2, 1], "best_turn": 3},
        ),
        (
            "budget spent, ties go to the earliest turn",
            [({}, FAIL(3)), (FIX, FAIL(1)), (FIX2, FAIL(1))],
            {"max_turns": 2},
            Reason.BUDGET_EXHAUSTED,
            {"failures_per_turn": [3, 1, 1], "best_turn": 1},
        ),
        (
            "budget of one turn",
            [({}, FAIL(3)), (FIX, FAIL(3))],
            {"max_turns": 1},
            Reason.BUDGET_EXHAUSTED,
            {"failures_per_turn": [3, 3], "best_turn": 0},
        ),
        ("healing with no turns at all", [({}, FAIL(3))], {"max_turns": 0, "heal": True}, Reason.TESTS_FAILED, {}),
        (
            "two turns without change",
            [({}, FAIL(2)), (SAME, FAIL(2)), (NOTHING, FAIL(2))],
            {"max_turns": 5},
            Reason.NO_PROGRESS,
            {"turns": [1, 2]},
        ),
        ("one turn without change is not yet a stall", [({}, FAIL(2)), (SAME, FAIL(2))], {}, None, None),
        (
            "no change, change, no change",
            [({}, FAIL(2)), (SAME, FAIL(2)), (FIX, FAIL(2)), (NOTHING, FAIL(2))],
            {"max_turns": 5},
            None,
            None,
        ),
        (
            "no progress beats the budget",
            [({}, FAIL(2)), (SAME, FAIL(2)), (SAME, FAIL(2))],
            {"max_turns": 2},
            Reason.NO_PROGRESS,
            {"turns": [1, 2]},
        ),
        (
            "strict: an edit outside the allowed paths",
            [({}, FAIL(2)), (OFF, FAIL(2))],
            {},
            Reason.OFF_TARGET_EDIT,
            {"turn": 1, "paths": ["src/other.js"], "allowed": sorted(ALLOWED), "strictness": "strict"},
        ),
        (
            "strict: one of two edits outside",
            [({}, FAIL(2)), (MIXED, FAIL(1))],
            {},
            Reason.OFF_TARGET_EDIT,
            {"paths": ["src/other.js"]},
        ),
        (
            "lenient: one of two edits outside goes on",
            [({}, FAIL(2)), (MIXED, FAIL(1))],
            {"strictness": "lenient"},
            None,
            None,
        ),
        (
            "lenient: every edit outside",
            [({}, FAIL(2)), (OFF, FAIL(2))],
            {"strictness": "lenient"},
            Reason.OFF_TARGET_EDIT,
            {"paths": ["src/other.js"], "strictness": "lenient"},
        ),
        ("off: never", [({}, FAIL(2)), (OFF, FAIL(2))], {"strictness": "off"}, None, None),
        (
            "an unchanged rewrite outside is no edit",
            [({}, FAIL(2)), ({"src/other.js": "o0", **FIX}, FAIL(1))],
            {},
            None,
            None,
        ),
        (
            "a new file outside is an edit",
            [({}, FAIL(2)), ({"src/new.js": "n1"}, FAIL(2))],
            {},
            Reason.OFF_TARGET_EDIT,
            {"paths": ["src/new.js"]},
        ),
        ("off-target beats the budget", [({}, FAIL(2)), (OFF, FAIL(2))], {"max_turns": 1}, Reason.OFF_TARGET_EDIT, {}),
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
        Reason.TESTS_FAILED: State.FAILED, Reason.BUDGET_EXHAUSTED: State.FAILED, Reason.TESTS_REMOVED: State.FAILED,
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
    assert decide_after_verification([TurnRecord(0)], max_turns=3) is None
    assert decide_after_verification(history((FIX, None)), max_turns=3) is None


@pytest.mark.parametrize(
    "label, turns, kw, reason",
    [
        ("a change goes on to verify", [({}, FAIL(2)), (FIX, None)], {}, None),
        ("the first unchanged turn still verifies", [({}, FAIL(2)), (SAME, None)], {}, None),
        (
            "the second unchanged turn in a row stops",
            [({}, FAIL(2)), (SAME, FAIL(2)), (NOTHING, None)],
            {},
            Reason.NO_PROGRESS,
        ),
        ("an off-target edit waits for its tests", [({}, FAIL(2)), (OFF, None)], {}, None),
        ("deadline", [({}, FAIL(2)), (FIX, None)], {"deadline": NOW - 5}, Reason.RUN_DEADLINE),
        ("deadline unknown", [({}, FAIL(2)), (FIX, None)], {"deadline": None}, None),
    ],
)
def test_after_repair_rules(label, turns, kw, reason) -> None:
    brake = decide_after_repair(history(*turns), now=NOW if "deadline" in kw else None, **kw)
    assert (brake.reason if brake else None) is reason, label


@pytest.mark.parametrize(
    "deadline, elapsed, stops",
    [(None, NOW, False), (NOW, None, False), (NOW + 0.5, NOW, False), (NOW, NOW, False), (NOW - 100, NOW, True)],
)
def test_deadline_at_every_checkpoint_but_start(deadline, elapsed, stops: bool) -> None:
    for checkpoint in Checkpoint:
        brake = first_brake(Situation(checkpoint, (TurnRecord(0),), deadline_s=deadline, elapsed_s=elapsed))
        assert (brake is not None) is (stops and checkpoint is not Checkpoint.START), checkpoint
        if brake:
            assert brake.outcome is State.TIMED_OUT and brake.reason is Reason.RUN_DEADLINE
            assert set(brake.evidence) == {"deadline_s", "elapsed_s"}


@pytest.mark.parametrize(
    "tests, passed",
    [
        (PASS, True),
        (dict(PASS, scope="full"), True),
        (dict(PASS, exitCode=None), True),  # a parser that reports no exit code
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
    assert verification_passed(_typed(tests)) is passed


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
    assert best_turn([TurnRecord(n=i, tests_after=_typed(r)) for i, r in enumerate(results)]) == best


def test_failure_count() -> None:
    assert [failure_count(_typed(t)) for t in (FAIL(2), PASS, EMPTY, TIMEOUT, None)] == [2, 0, None, None, None]


@pytest.mark.parametrize(
    "kind, state, reason",
    [
        ("timeout", State.TIMED_OUT, Reason.MODEL_TIMEOUT),
        ("unavailable", State.FAILED, Reason.MODEL_UNAVAILABLE),
        ("http", State.FAILED, Reason.MODEL_UNAVAILABLE),
    ],
)
def test_model_failure(kind: str, state: State, reason: Reason) -> None:
    turn = TurnRecord(2, model_failure=ModelFailure(kind, "read timed out after 180s", 180_000))
    brake = first_brake(Situation(Checkpoint.MODEL, (TurnRecord(0), TurnRecord(1), turn)))
    assert brake is not None and (brake.outcome, brake.reason, brake.turn) == (state, reason, 2)
    assert brake.evidence == {"error": kind, "message": "read timed out after 180s", "duration_ms": 180_000,
                              "attempt": 1, "retries": []}  # fmt: skip


@pytest.mark.parametrize(
    "errors, retries, stops",
    [
        ((), 1, False),
        (("bad json",), 1, False),
        (("bad json", "no files"), 1, True),
        (("bad json",), 0, True),
        (("a", "b"), 2, False),
    ],
)
def test_invalid_proposal(errors, retries: int, stops: bool) -> None:
    brake = first_brake(Situation(Checkpoint.MODEL, (TurnRecord(0, rejected=errors),), invalid_retries=retries))
    assert (brake is not None) is stops
    if brake:
        assert (brake.outcome, brake.reason) == (State.FAILED, Reason.INVALID_PROPOSAL)
        assert brake.evidence == {"errors": list(errors)}


RESULT_OF = {
    "ok": InstallResult(ok=True, exit_code=0),
    "refused": InstallResult(refused=["package.json: a script"], error="manifest refused"),
    "timeout": InstallResult(timed_out=True),
    "failed": InstallResult(command="uv sync", exit_code=2, stderr_tail="\nerror: No `project` table found\nmore"),
}


@pytest.mark.parametrize(
    "install, reason",
    [
        ("ok", None),
        ("refused", Reason.INSTALL_REFUSED),
        ("timeout", Reason.INSTALL_TIMEOUT),
        ("failed", Reason.INSTALL_FAILED),
    ],
)
def test_install_outcome(install: str, reason: Reason | None) -> None:
    brake = first_brake(Situation(Checkpoint.INSTALL, (TurnRecord(0, install=RESULT_OF[install]),)))
    assert (brake.reason if brake else None) is reason
    if reason is Reason.INSTALL_FAILED:
        assert brake is not None and brake.evidence["detail"] == "error: No `project` table found"


def test_model_checkpoint_rules() -> None:
    proposed = TurnRecord(0, proposed=("calc.js",))
    assert first_brake(Situation(Checkpoint.MODEL, (proposed,))) is None
    stop = first_brake(Situation(Checkpoint.MODEL, (proposed,), dry_run=True))
    assert stop is not None and (stop.reason, stop.evidence) == (Reason.DRY_RUN, {"files": ["calc.js"]})
    unsafe = TurnRecord(0, proposed=("../x",), refused=("../x: leaves the workspace",))
    stop = first_brake(Situation(Checkpoint.MODEL, (unsafe,), dry_run=True))
    assert stop is not None and stop.reason is Reason.UNSAFE_WRITE  # before the dry run's conclusion
    stop = first_brake(Situation(Checkpoint.MODEL, (TurnRecord(0),), plan_mode=True, plan="# plan"))
    assert stop is not None and (stop.reason, stop.evidence) == (Reason.PLAN_RECORDED, {"plan_bytes": 6})
    assert first_brake(Situation(Checkpoint.MODEL, (TurnRecord(0),), plan_mode=True)) is None


def test_start_and_applied_rules() -> None:
    stop = first_brake(Situation(Checkpoint.START, (), test_command="bash -c 'rm -rf ~'"))
    assert stop is not None and stop.reason is Reason.TEST_COMMAND_REFUSED and "bash" in stop.evidence["command"]
    assert first_brake(Situation(Checkpoint.START, (), test_command="npm test")) is None
    stop = first_brake(Situation(Checkpoint.APPLIED, (TurnRecord(0),), install=True, manifest={"a.js": "x"}))
    assert stop is not None and stop.reason is Reason.INSTALL_REFUSED
    assert first_brake(Situation(Checkpoint.APPLIED, (TurnRecord(0),), install=False, manifest={"a.js": "x"})) is None
    assert first_brake(Situation(Checkpoint.APPLIED, (TurnRecord(0),), install=True,
                                 manifest={"package.json": "p"})) is None  # fmt: skip


def test_the_rule_book_order() -> None:
    """The order the module docstring states is the order production follows."""
    names = [rule.__name__ for rule, _ in RULES]
    assert names == [
        "run_deadline", "test_command_refused", "model_failed", "invalid_proposal", "unsafe_write", "dry_run",
        "plan_recorded", "no_install_plan", "install_outcome", "test_timeout", "no_verification",
        "tests_removed", "passed", "tests_failed", "off_target_edit", "no_progress", "budget_exhausted",
    ]  # fmt: skip
    import kodr_core.brakes as b

    doc = b.__doc__ or ""
    positions = [doc.index(f"``{r.reason}``") for r in (Brake(Reason.RUN_DEADLINE), Brake(Reason.TEST_COMMAND_REFUSED),
                 Brake(Reason.INVALID_PROPOSAL), Brake(Reason.TEST_TIMEOUT), Brake(Reason.NO_VERIFICATION),
                 Brake(Reason.TESTS_REMOVED), Brake(Reason.VERIFICATION_PASSED), Brake(Reason.TESTS_FAILED),
                 Brake(Reason.OFF_TARGET_EDIT), Brake(Reason.NO_PROGRESS), Brake(Reason.BUDGET_EXHAUSTED))]  # fmt: skip
    assert positions == sorted(positions)


def test_decide_ends_runs_only_through_the_rule_book() -> None:
    """decide.py names no Reason: every stop it makes comes from a Brake."""
    import inspect

    import kodr_core.decide as d

    source = inspect.getsource(d)
    assert "Reason." not in source and "OUTCOME_OF" not in source


# -- the adapters over the fold ---------------------------------------------------------

START = datetime(2025, 1, 1, tzinfo=UTC)


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
    assert hist[1].tests_before == TestResult.of(FAIL(3))
    assert hist[1].tests_after == TestResult.of(FAIL(2))


def test_adapters_stop_for_no_progress_after_the_second_idle_repair() -> None:
    log = Log(heal=True, max_turns=5)
    opts = RunOptions(heal=True, max_turns=5)
    log.tests(0, FAIL(2))
    log.repair(1, SAME)
    assert check(log.run(), opts, Checkpoint.REPAIR, None) is None
    log.verify(1)
    log.tests(1, FAIL(2))
    assert check(log.run(), opts, Checkpoint.VERIFICATION, None) is None
    log.repair(2, SAME)
    brake = check(log.run(), opts, Checkpoint.REPAIR, None)
    assert brake is not None and brake.reason is Reason.NO_PROGRESS
    assert brake.evidence["turns"] == [1, 2]


def test_adapters_budget_and_off_target() -> None:
    log = Log(heal=True, max_turns=2)
    log.tests(0, FAIL(3))
    log.repair(1, FIX)
    log.verify(1)
    log.tests(1, FAIL(1))
    assert check(log.run(), OPTS, Checkpoint.VERIFICATION, None) is None
    log.repair(2, FIX2)
    log.verify(2)
    log.tests(2, FAIL(2))
    brake = check(log.run(), OPTS, Checkpoint.VERIFICATION, None)
    assert brake is not None and brake.reason is Reason.BUDGET_EXHAUSTED
    assert {k: brake.evidence[k] for k in ("max_turns", "failures_per_turn", "best_turn", "failed")} == {
        "max_turns": 2,
        "failures_per_turn": [3, 1, 2],
        "best_turn": 1,
        "failed": 2,
    }

    log = Log(heal=True, max_turns=2)
    log.tests(0, FAIL(3))
    log.repair(1, OFF)
    log.verify(1)
    log.tests(1, FAIL(3))
    brake = check(log.run(), OPTS, Checkpoint.VERIFICATION, None)
    assert brake is not None and brake.reason is Reason.OFF_TARGET_EDIT
    assert brake.evidence["paths"] == ["src/other.js"]
    assert check(log.run(), RunOptions(heal=True, max_turns=2, off_target="off"), Checkpoint.VERIFICATION, None) is None


def test_adapters_deadline_only_with_a_clock() -> None:
    log = Log(heal=True, max_turns=2, run_deadline_s=60)
    log.tests(0, FAIL(3))
    log.repair(1, FIX)
    opts = RunOptions(heal=True, max_turns=2, run_deadline_s=60)
    assert check(log.run(), opts, Checkpoint.REPAIR, None) is None
    assert check(log.run(), opts, Checkpoint.REPAIR, START.timestamp() + 30) is None
    brake = check(log.run(), opts, Checkpoint.REPAIR, START.timestamp() + 61)
    assert brake is not None and brake.reason is Reason.RUN_DEADLINE


def test_adapters_without_heal_fail_on_tests() -> None:
    log = Log()
    log.tests(0, FAIL(1))
    brake = check(log.run(), RunOptions(), Checkpoint.VERIFICATION, None)
    assert brake is not None and (brake.outcome, brake.reason) == (State.FAILED, Reason.TESTS_FAILED)
