"""The brakes of the heal loop: every rule that stops a run, with its evidence.

A repair loop driven by a model must stop for a reason a user can check, so each
rule returns a :class:`Brake` naming the terminal state, the :class:`Reason`
and the evidence it saw; ``None`` means "go on". The policy is pure: it reads a
per-turn history (:class:`TurnRecord`, built from the fold by
:func:`history_from_run`) and a clock value passed in.

Rules, in the order they are checked after a verification:

1. the test run timed out → ``timed_out/test_timeout``;
2. the full suite passed (``total > 0``, ``failed == 0``, exit code 0) →
   ``passed/verification_passed``; a run of the failing files alone never passes;
3. no test executed → ``failed/no_verification``;
4. the run deadline passed → ``timed_out/run_deadline``;
5. no repair turns allowed (``max_turns == 0``, i.e. no ``--heal``) →
   ``failed/tests_failed``;
6. the last repair edited files outside its allowed paths while tests still
   fail → ``stalled/off_target_edit``. ``strict``: any such edit stops;
   ``lenient``: only a repair whose edits are ALL outside stops (a fix that also
   touches one extra file goes on); ``off``: never. A turn whose allowed paths
   are unknown (empty) is not judged;
7. two consecutive repair turns changed nothing → ``stalled/no_progress``;
8. the last allowed repair turn (``n >= max_turns``) still fails →
   ``failed/budget_exhausted``.

After a repair's writes (before its tests run) only the deadline and
no-progress rules apply: an off-target edit is judged by the tests it leaves
failing. Model failures: :func:`after_model_error` and :func:`after_invalid_output`.

"Changed" means a write altered a file's content (sha256 in the manifests before
and after the writes differ); files that test runs create are not progress.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

from kodr_core.states import OUTCOME_OF, Reason, State

if TYPE_CHECKING:  # the engine adapters below take the fold and the options
    from kodr_core.aggregate import Run
    from kodr_core.options import RunOptions

Strictness = Literal["strict", "lenient", "off"]
Clock = float | datetime


@dataclass(frozen=True)
class Brake:
    """Stop the run: in ``outcome`` (a terminal state), because of ``reason``, seeing ``evidence``."""

    outcome: State
    reason: Reason
    evidence: dict[str, Any] = field(default_factory=dict)


def _brake(reason: Reason, **evidence: Any) -> Brake:
    return Brake(OUTCOME_OF[reason], reason, evidence)


@dataclass(frozen=True)
class TurnRecord:
    """One turn as the brakes see it. Turn 0 is the proposal (or the adopted workspace)."""

    n: int
    manifest_before: Mapping[str, str] = field(default_factory=dict)  # path -> sha256
    manifest_after: Mapping[str, str] = field(default_factory=dict)
    written: tuple[str, ...] = ()  # paths the turn's writes named
    tests_before: Mapping[str, Any] | None = None  # the result the repair was asked to fix
    tests_after: Mapping[str, Any] | None = None  # the verification after the writes
    allowed: frozenset[str] = frozenset()  # failing paths + repair context files
    applied: bool = True  # the writes happened (False while a turn is still proposing)

    @property
    def edits(self) -> tuple[str, ...]:
        """Written paths whose content the writes changed."""
        return tuple(
            p for p in dict.fromkeys(self.written)
            if self.manifest_after.get(p) is None or self.manifest_before.get(p) != self.manifest_after.get(p)
        )  # fmt: skip

    @property
    def changed(self) -> bool:
        return bool(self.edits)


# -- facts about test results -------------------------------------------------------


def verification_passed(tests: Mapping[str, Any] | None) -> bool:
    """An honest pass: the full suite ran, some test executed, none failed, exit code 0."""
    if not tests or tests.get("timedOut"):
        return False
    if tests.get("scope", "full") != "full":
        return False
    total, failed = tests.get("total") or 0, tests.get("failed") or 0
    exit_ok = tests.get("exitCode") in (0, None) and tests.get("ok", True) is not False
    return total > 0 and failed == 0 and not tests.get("failures") and exit_ok


def failure_count(tests: Mapping[str, Any] | None) -> int | None:
    """Failed tests of a result, or None when it tells nothing (no run, timed out, no test)."""
    if not tests or tests.get("timedOut") or not tests.get("total"):
        return None
    return int(tests.get("failed") or 0)


def best_turn(history: Sequence[TurnRecord]) -> int:
    """The turn whose verification had the fewest failures; ties go to the earliest.

    Turns without a telling result (none, timed out, no test) only count when no
    turn has one. An empty history gives 0.
    """
    if not history:
        return 0
    ranked = sorted(
        history,
        key=lambda t: (failure_count(t.tests_after) is None, failure_count(t.tests_after) or 0, t.n),
    )
    return ranked[0].n


def manifest_hash(manifest: Mapping[str, str]) -> str:
    """A stable digest of a workspace manifest, for evidence."""
    canon = json.dumps(sorted(manifest.items()), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


# -- the rules ---------------------------------------------------------------------


def deadline_passed(deadline: Clock | None, now: Clock | None) -> Brake | None:
    """``timed_out/run_deadline`` once ``now`` reaches ``deadline`` (same clock, epoch or datetime)."""
    if deadline is None or now is None or now < deadline:  # type: ignore[operator]
        return None
    return _brake(Reason.RUN_DEADLINE, deadline=_clock(deadline), now=_clock(now))


def _clock(value: Clock) -> float | str:
    return value.isoformat() if isinstance(value, datetime) else round(float(value), 3)


def _no_progress(history: Sequence[TurnRecord]) -> Brake | None:
    repairs = [t for t in history if t.n >= 1 and t.applied]
    if len(repairs) < 2:
        return None
    a, b = repairs[-2], repairs[-1]
    if b.n != a.n + 1 or a.changed or b.changed:
        return None
    return _brake(Reason.NO_PROGRESS, turns=[a.n, b.n], manifest_hash=manifest_hash(b.manifest_after))


def _off_target(last: TurnRecord, strictness: Strictness) -> Brake | None:
    if strictness == "off" or last.n < 1 or not last.applied or not last.allowed:
        return None
    edits = last.edits
    outside = [p for p in edits if p not in last.allowed]
    if not outside or (strictness == "lenient" and len(outside) < len(edits)):
        return None
    return _brake(
        Reason.OFF_TARGET_EDIT,
        turn=last.n,
        paths=sorted(outside),
        allowed=sorted(last.allowed),
        strictness=strictness,
    )


def decide_after_verification(
    history: Sequence[TurnRecord],
    *,
    max_turns: int,
    strictness: Strictness = "strict",
    deadline: Clock | None = None,
    now: Clock | None = None,
) -> Brake | None:
    """Stop or go on after the last turn's verification (``history[-1].tests_after``).

    ``max_turns`` is the number of repair turns allowed (0 when not healing).
    Returns None to start repair turn ``n + 1``, and also when the last result
    is a failing-files-only run that passed (the engine must run the full suite).
    """
    if not history or history[-1].tests_after is None:
        return None
    last = history[-1]
    tests = last.tests_after
    assert tests is not None
    command = tests.get("command")
    if tests.get("timedOut"):
        return _brake(Reason.TEST_TIMEOUT, turn=last.n, command=command, durationMs=tests.get("durationMs"))
    if verification_passed(tests):
        return _brake(Reason.VERIFICATION_PASSED, turn=last.n, passed=tests.get("passed"),
                      total=tests.get("total"), command=command)  # fmt: skip
    if tests.get("scope", "full") != "full" and (tests.get("ok") or not tests.get("total")):
        return None
    if not tests.get("total"):
        return _brake(Reason.NO_VERIFICATION, turn=last.n, command=command, why="no test executed")
    stop = deadline_passed(deadline, now)
    if stop is not None:
        return stop
    if max_turns <= 0:
        return _brake(Reason.TESTS_FAILED, turn=last.n, failed=tests.get("failed"), total=tests.get("total"))
    stop = _off_target(last, strictness) or _no_progress(history)
    if stop is not None:
        return stop
    if last.n >= max_turns:
        per_turn: list[int | None] = [None] * (max(t.n for t in history) + 1)
        for t in history:
            per_turn[t.n] = failure_count(t.tests_after)
        return _brake(Reason.BUDGET_EXHAUSTED, max_turns=max_turns, failures_per_turn=per_turn,
                      best_turn=best_turn(history))  # fmt: skip
    return None


def decide_after_repair(
    history: Sequence[TurnRecord], *, deadline: Clock | None = None, now: Clock | None = None
) -> Brake | None:
    """Stop or go on after a repair's writes, before its tests run: deadline, no progress."""
    return deadline_passed(deadline, now) or _no_progress(history)


def after_model_error(kind: str, *, message: str = "", turn: int | None = None) -> Brake:
    """A model call that produced no reply: past its timeout, or the server failed."""
    reason = Reason.MODEL_TIMEOUT if kind == "timeout" else Reason.MODEL_UNAVAILABLE
    return _brake(reason, error=kind, message=message, turn=turn)


def after_invalid_output(errors: Sequence[str], *, retries: int = 1) -> Brake | None:
    """Stop once the model answered invalidly more than ``retries`` times; else retry."""
    if len(errors) <= retries:
        return None
    return _brake(Reason.INVALID_PROPOSAL, errors=list(errors), retries=retries)


# -- the engine's view: the fold in, a brake out ---------------------------------------


def history_from_run(run: "Run") -> list[TurnRecord]:
    """Turn records from the folded run: manifests chained from the base snapshot."""
    out: list[TurnRecord] = []
    current: Mapping[str, str] = run.base_snapshot
    previous_tests: Mapping[str, Any] | None = None
    for t in run.turns:
        before = t.manifest_before if t.manifest_before is not None else current
        after = t.writes.manifest if t.writes is not None else before
        written = tuple(f["path"] for f in t.writes.files) if t.writes is not None else ()
        out.append(TurnRecord(
            n=t.n, manifest_before=before, manifest_after=after, written=written,
            tests_before=previous_tests, tests_after=t.final_tests,
            allowed=frozenset(t.allowed_paths), applied=t.writes is not None,
        ))  # fmt: skip
        current = after
        previous_tests = t.final_tests or previous_tests
    return out


def _deadline(run: "Run", o: "RunOptions") -> float | None:
    if o.run_deadline_s is None or not run.created_at:
        return None
    start = datetime.fromisoformat(run.created_at.replace("Z", "+00:00")).timestamp()
    return start + o.run_deadline_s


def after_verification(run: "Run", o: "RunOptions", now: float | None = None) -> Brake | None:
    """:func:`decide_after_verification` on the fold; ``now`` (epoch seconds) enables the deadline."""
    return decide_after_verification(
        history_from_run(run)[: run.heal_turn + 1],
        max_turns=o.max_turns if o.heal else 0,
        strictness=o.off_target,
        deadline=_deadline(run, o) if now is not None else None,
        now=now,
    )


def after_repair(run: "Run", o: "RunOptions", now: float | None = None) -> Brake | None:
    """:func:`decide_after_repair` on the fold; ``now`` (epoch seconds) enables the deadline."""
    return decide_after_repair(
        history_from_run(run)[: run.heal_turn + 1],
        deadline=_deadline(run, o) if now is not None else None,
        now=now,
    )
