"""The rule book: every rule that ends a run, in the one order production follows.

A run driven by a model must stop for a reason a user can check, so each rule
returns a :class:`Brake` naming the :class:`Reason` (its terminal state follows
from ``OUTCOME_OF``), the evidence it saw, and the turn it judged; ``None``
means "go on". ``decide`` asks :func:`check` at each checkpoint and never
decides a stop itself. The rules are pure: they read a :class:`Situation` built
from the fold (:func:`situation`) and a clock value passed in.

``RULES``, in order (the first that fires wins; each applies at the checkpoints
named):

1. ``run_deadline`` (every checkpoint but ``start``): the run is older than
   ``run_deadline_s`` → ``timed_out``;
2. ``test_command_refused`` (start): ``--test`` is not on the allowlist;
3. ``model_timeout`` / ``model_unavailable`` (model): the call gave no reply;
4. ``invalid_proposal`` (model): more invalid replies than ``invalid_retries``;
5. ``unsafe_write`` (model): the proposal wrote outside the workspace;
6. ``dry_run`` (model, turn 0): a dry run stops at its proposal;
7. ``plan_recorded`` (model, plan mode): the plan is the outcome;
8. ``install_refused`` (applied): no install plan for these manifests;
9. ``install_refused`` / ``install_timeout`` / ``install_failed`` (install);
10. ``test_timeout`` (verification);
11. ``no_verification`` (verification): no test executed, with its cause;
12. ``tests_removed`` (verification): a pass with fewer tests than a repair
    started from is not a pass kodr saw;
13. ``verification_passed`` (verification): the full suite ran, some test
    executed, none failed, exit code 0; a run of the failing files alone never
    passes (nor stops for 11/12: decide then runs the full suite);
14. ``tests_failed`` (verification): tests fail and healing is off;
15. ``off_target_edit`` (verification): the last repair edited files outside
    its allowed paths while tests still fail. ``strict``: any such edit stops;
    ``lenient``: only a repair whose edits are ALL outside; ``off``: never. A
    turn whose allowed paths are unknown (empty) is not judged;
16. ``no_progress`` (verification, repair): two consecutive repair turns
    changed nothing (after a repair's writes, this is the only rule but the
    deadline: an off-target edit is judged by the tests it leaves failing);
17. ``budget_exhausted`` (verification): the last allowed repair still fails.

"Changed" means a write altered a file's content (sha256 before and after the
writes differ); files that test runs create are not progress.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from kodr_core.errors import KodrError
from kodr_core.results import InstallResult, NoVerificationCause, Scope, TestResult
from kodr_core.states import OUTCOME_OF, Reason, State

if TYPE_CHECKING:
    from kodr_core.aggregate import Run
    from kodr_core.options import RunOptions

Strictness = Literal["strict", "lenient", "off"]


class Checkpoint(StrEnum):
    """Where decide asks the rule book: one per point at which a run may end."""

    START = "start"  # requested, nothing run yet
    MODEL = "model"  # a model turn (proposal, repair or plan) before its writes
    APPLIED = "applied"  # writes applied, about to install
    INSTALL = "install"  # an install finished
    VERIFICATION = "verification"  # a test run finished
    REPAIR = "repair"  # a repair's writes applied, before its tests


@dataclass(frozen=True)
class Brake:
    """Stop the run because of ``reason``, seeing ``evidence``; ``turn`` is the turn judged."""

    reason: Reason
    evidence: dict[str, Any] = field(default_factory=dict)
    turn: int | None = None

    @property
    def outcome(self) -> State:
        return OUTCOME_OF[self.reason]


@dataclass(frozen=True)
class ModelFailure:
    error: str  # timeout | unavailable | http
    message: str = ""
    duration_ms: int | None = None
    attempt: int = 1
    retries: tuple[Any, ...] = ()


@dataclass(frozen=True)
class TurnRecord:
    """One turn as the rules see it. Turn 0 is the proposal (or the adopted workspace)."""

    n: int
    manifest_before: Mapping[str, str] = field(default_factory=dict)  # path -> sha256
    manifest_after: Mapping[str, str] = field(default_factory=dict)
    written: tuple[str, ...] = ()  # paths the turn's writes named
    tests_before: TestResult | None = None  # the result the repair was asked to fix
    tests_after: TestResult | None = None  # the turn's final full-suite result
    results: tuple[TestResult, ...] = ()  # every result of the turn, in order
    allowed: frozenset[str] = frozenset()  # on-target paths: failing paths, context, import closure
    applied: bool = True  # the writes happened (False while a turn is still proposing)
    proposed: tuple[str, ...] | None = None  # paths of the accepted proposal, None before one
    rejected: tuple[str, ...] = ()  # invalid replies, quoted
    refused: tuple[str, ...] = ()  # writes refused as unsafe
    model_failure: ModelFailure | None = None
    install: InstallResult | None = None

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

    @property
    def last_result(self) -> TestResult | None:
        return self.results[-1] if self.results else self.tests_after


@dataclass(frozen=True)
class Situation:
    """Everything the rules read: the turns so far (the last is the current one) and the settings."""

    checkpoint: Checkpoint
    history: tuple[TurnRecord, ...]
    max_turns: int = 0  # repair turns allowed (0 when not healing)
    strictness: Strictness = "strict"
    invalid_retries: int = 1
    dry_run: bool = False
    install: bool = False  # --install: dependencies are installed before tests
    plan_mode: bool = False
    plan: str = ""
    test_command: str | None = None
    manifest: Mapping[str, str] = field(default_factory=dict)  # the workspace now: path -> sha256
    deadline_s: float | None = None
    elapsed_s: float | None = None

    @property
    def turn(self) -> TurnRecord:
        return self.history[-1] if self.history else TurnRecord(0)


# -- facts about results -------------------------------------------------------------


def verification_passed(tests: TestResult | None) -> bool:
    """An honest pass: the full suite ran, some test executed, none failed, exit code 0."""
    if tests is None or tests.timed_out or tests.scope is not Scope.FULL:
        return False
    exit_ok = tests.exit_code in (0, None) and tests.ok
    return tests.total > 0 and tests.failed == 0 and not tests.failures and exit_ok


def needs_full_suite(tests: TestResult) -> bool:
    """A failing-files-only run that passed or selected nothing: only the full suite decides."""
    return tests.scope is Scope.FAILING and (tests.ok or not tests.total)


def failure_count(tests: TestResult | None) -> int | None:
    """Failed tests of a result, or None when it tells nothing (no run, timed out, no test)."""
    return None if tests is None else tests.failure_count()


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


def verification_facts(tests: TestResult) -> dict[str, Any]:
    """The facts of a verification every transition after it carries."""
    return {
        "command": tests.command, "exitCode": tests.exit_code, "passed": tests.passed,
        "failed": tests.failed, "skipped": tests.skipped, "total": tests.total,
        "durationMs": tests.duration_ms, "scope": tests.scope.value,
    }  # fmt: skip


def failing_names(tests: TestResult) -> list[str]:
    return [f.name for f in tests.failures][:20]


def no_verification_cause(tests: TestResult) -> tuple[NoVerificationCause, str]:
    """The cause of a result in which no test executed, and one human line for it."""
    if tests.cause is not None:
        return tests.cause, tests.detail or tests.error or tests.cause.value.replace("_", " ")
    error = tests.error or ""  # a result recorded before causes existed: read its error
    if error.startswith("no test command"):
        return NoVerificationCause.NO_COMMAND, error
    if "could be read" in error:
        return NoVerificationCause.OUTPUT_UNREADABLE, error
    return NoVerificationCause.NO_TESTS, error or "no tests ran"


# -- the rules ----------------------------------------------------------------------

Rule = Callable[[Situation], "Brake | None"]


def run_deadline(s: Situation) -> Brake | None:
    if s.deadline_s is None or s.elapsed_s is None or s.elapsed_s <= s.deadline_s:
        return None
    return Brake(Reason.RUN_DEADLINE, {"deadline_s": s.deadline_s, "elapsed_s": round(s.elapsed_s, 3)})


def test_command_refused(s: Situation) -> Brake | None:
    if s.test_command is None:
        return None
    from kodr_core.test_command import parse_test_command  # only when judging a run: `kodr show` starts faster

    try:
        parse_test_command(s.test_command)
    except KodrError as exc:
        return Brake(Reason.TEST_COMMAND_REFUSED, {"command": s.test_command, "why": exc.message})
    return None


def _turn_no(t: TurnRecord) -> int | None:
    return t.n or None


def model_failed(s: Situation) -> Brake | None:
    t = s.turn
    if t.proposed is not None or t.model_failure is None or (s.plan_mode and s.plan):
        return None
    f = t.model_failure
    reason = {"timeout": Reason.MODEL_TIMEOUT, "context_overflow": Reason.CONTEXT_OVERFLOW}.get(
        f.error, Reason.MODEL_UNAVAILABLE
    )
    facts = {"error": f.error, "message": f.message, "duration_ms": f.duration_ms,
             "attempt": f.attempt, "retries": list(f.retries)}  # fmt: skip
    return Brake(reason, facts, _turn_no(t))


def invalid_proposal(s: Situation) -> Brake | None:
    t = s.turn
    if t.proposed is not None or (s.plan_mode and s.plan) or len(t.rejected) <= s.invalid_retries:
        return None
    return Brake(Reason.INVALID_PROPOSAL, {"errors": list(t.rejected)}, _turn_no(t))


def unsafe_write(s: Situation) -> Brake | None:
    t = s.turn
    if t.proposed is None or not t.refused:
        return None
    return Brake(Reason.UNSAFE_WRITE, {"refused": list(t.refused)}, _turn_no(t))


def dry_run(s: Situation) -> Brake | None:
    t = s.turn
    if not s.dry_run or t.n != 0 or t.proposed is None or s.plan_mode:
        return None
    return Brake(Reason.DRY_RUN, {"files": list(t.proposed)})


def plan_recorded(s: Situation) -> Brake | None:
    if not s.plan_mode or not s.plan:
        return None
    return Brake(Reason.PLAN_RECORDED, {"plan_bytes": len(s.plan.encode())})


def no_install_plan(s: Situation) -> Brake | None:
    if not s.install:
        return None
    files = sorted(s.manifest)
    from kodr_core.install_plan import plan_install  # only when judging a run: `kodr show` starts faster

    try:
        plan_install(set(files))
    except KodrError as exc:
        return Brake(Reason.INSTALL_REFUSED, {"why": exc.message, "files": files[:50]})
    return None


def install_outcome(s: Situation) -> Brake | None:
    r = s.turn.install
    if r is None or r.ok:
        return None
    facts: dict[str, Any] = {"exitCode": r.exit_code, "durationMs": r.duration_ms, "command": r.command}
    if r.refused:
        return Brake(Reason.INSTALL_REFUSED, {**facts, "refused": list(r.refused)})
    if r.timed_out:
        return Brake(Reason.INSTALL_TIMEOUT, facts)
    detail = r.first_error_line()
    return Brake(Reason.INSTALL_FAILED, {**facts, "stderrTail": r.stderr_tail[-2000:], "detail": detail})


def _decisive(s: Situation) -> TestResult | None:
    """The verification result the rules judge, or None (none yet, or only the full suite decides)."""
    last = s.turn.last_result
    if last is None or needs_full_suite(last):
        return None
    return last


def test_timeout(s: Situation) -> Brake | None:
    last = s.turn.last_result
    if last is None or not last.timed_out:
        return None
    return Brake(Reason.TEST_TIMEOUT, verification_facts(last))


def no_verification(s: Situation) -> Brake | None:
    last = _decisive(s)
    if last is None or last.total:
        return None
    cause, detail = no_verification_cause(last)
    return Brake(Reason.NO_VERIFICATION, {**verification_facts(last), "why": detail,
                                          "cause": cause.value, "detail": detail})  # fmt: skip


def _most_tests_seen(s: Situation) -> int:
    """The largest full-suite test count of the turns before the current one."""
    return max((t.tests_after.total for t in s.history[:-1]
                if t.tests_after is not None and t.tests_after.scope is Scope.FULL), default=0)  # fmt: skip


def tests_removed(s: Situation) -> Brake | None:
    last = _decisive(s)
    if last is None or not last.ok:
        return None
    before = _most_tests_seen(s)
    if before <= last.total:
        return None
    return Brake(Reason.TESTS_REMOVED, {**verification_facts(last), "total_before": before})


def passed(s: Situation) -> Brake | None:
    last = _decisive(s)
    if not verification_passed(last):
        return None
    assert last is not None
    return Brake(Reason.VERIFICATION_PASSED, verification_facts(last))


def _failing(s: Situation) -> TestResult | None:
    last = _decisive(s)
    return last if last is not None and last.total and not verification_passed(last) else None


def tests_failed(s: Situation) -> Brake | None:
    last = _failing(s)
    if last is None or s.max_turns > 0:
        return None
    return Brake(Reason.TESTS_FAILED, {**verification_facts(last), "failing": failing_names(last)})


def off_target_edit(s: Situation) -> Brake | None:
    last, t = _failing(s), s.turn
    if last is None or s.strictness == "off" or t.n < 1 or not t.applied or not t.allowed:
        return None
    edits = t.edits
    outside = [p for p in edits if p not in t.allowed]
    if not outside or (s.strictness == "lenient" and len(outside) < len(edits)):
        return None
    return Brake(Reason.OFF_TARGET_EDIT, {**verification_facts(last), "failing": failing_names(last),
                 "turn": t.n, "paths": sorted(outside), "allowed": sorted(t.allowed),
                 "strictness": s.strictness})  # fmt: skip


def no_progress(s: Situation) -> Brake | None:
    if s.checkpoint is Checkpoint.VERIFICATION and _failing(s) is None:
        return None
    repairs = [t for t in s.history if t.n >= 1 and t.applied]
    if len(repairs) < 2:
        return None
    a, b = repairs[-2], repairs[-1]
    if b.n != a.n + 1 or a.changed or b.changed:
        return None
    facts = {"turns": [a.n, b.n], "manifest_hash": manifest_hash(b.manifest_after)}
    last = _failing(s)
    if last is not None:
        facts = {**verification_facts(last), "failing": failing_names(last), **facts}
    return Brake(Reason.NO_PROGRESS, facts)


def budget_exhausted(s: Situation) -> Brake | None:
    last = _failing(s)
    if last is None or s.turn.n < s.max_turns:
        return None
    per_turn: list[int | None] = [None] * (max(t.n for t in s.history) + 1)
    for t in s.history:
        per_turn[t.n] = failure_count(t.tests_after)
    return Brake(Reason.BUDGET_EXHAUSTED, {**verification_facts(last), "failing": failing_names(last),
                 "max_turns": s.max_turns, "failures_per_turn": per_turn,
                 "best_turn": best_turn(s.history)})  # fmt: skip


_ALL_BUT_START = frozenset(Checkpoint) - {Checkpoint.START}
C = Checkpoint

#: The rule book: (rule, checkpoints where it applies), in the order they are checked.
RULES: tuple[tuple[Rule, frozenset[Checkpoint]], ...] = (
    (run_deadline, _ALL_BUT_START),
    (test_command_refused, frozenset({C.START})),
    (model_failed, frozenset({C.MODEL})),
    (invalid_proposal, frozenset({C.MODEL})),
    (unsafe_write, frozenset({C.MODEL})),
    (dry_run, frozenset({C.MODEL})),
    (plan_recorded, frozenset({C.MODEL})),
    (no_install_plan, frozenset({C.APPLIED})),
    (install_outcome, frozenset({C.INSTALL})),
    (test_timeout, frozenset({C.VERIFICATION})),
    (no_verification, frozenset({C.VERIFICATION})),
    (tests_removed, frozenset({C.VERIFICATION})),
    (passed, frozenset({C.VERIFICATION})),
    (tests_failed, frozenset({C.VERIFICATION})),
    (off_target_edit, frozenset({C.VERIFICATION})),
    (no_progress, frozenset({C.VERIFICATION, C.REPAIR})),
    (budget_exhausted, frozenset({C.VERIFICATION})),
)


def first_brake(s: Situation) -> Brake | None:
    """The first rule of :data:`RULES` that applies at ``s.checkpoint`` and fires, or None."""
    for rule, where in RULES:
        if s.checkpoint in where:
            stop = rule(s)
            if stop is not None:
                return stop
    return None


# -- the fold's view -------------------------------------------------------------------


def history_from_run(run: Run) -> list[TurnRecord]:
    """Turn records from the folded run: manifests chained from the base snapshot."""
    out: list[TurnRecord] = []
    current: Mapping[str, str] = run.base_snapshot
    previous: TestResult | None = None
    for t in run.turns:
        before = t.manifest_before if t.manifest_before is not None else current
        after = t.writes.manifest if t.writes is not None else before
        results, final = t.tests, t.final_tests
        err = t.model_error
        out.append(TurnRecord(
            n=t.n, manifest_before=before, manifest_after=after,
            written=tuple(f["path"] for f in t.writes.files) if t.writes is not None else (),
            tests_before=previous, tests_after=final, results=results,
            allowed=frozenset(t.allowed_paths), applied=t.writes is not None,
            proposed=tuple(f["path"] for f in t.proposal.files) if t.proposal is not None else None,
            rejected=tuple(t.rejected), refused=tuple(t.refused),
            model_failure=None if err is None else ModelFailure(
                err.error, err.message, err.duration_ms, err.attempt, tuple(err.retries)),
            install=t.install,
        ))  # fmt: skip
        current = after
        previous = final or previous
    return out


def elapsed_s(run: Run, now: float) -> float:
    if not run.created_at:
        return 0.0
    return now - datetime.fromisoformat(run.created_at).timestamp()


def situation(run: Run, o: RunOptions, checkpoint: Checkpoint, now: float | None) -> Situation:
    """The rules' view of a folded run at ``checkpoint``; ``now`` (epoch seconds) enables the deadline."""
    return Situation(
        checkpoint=checkpoint,
        history=tuple(history_from_run(run)[: run.heal_turn + 1]),
        max_turns=o.max_turns if o.heal else 0,
        strictness=o.off_target,
        invalid_retries=o.invalid_retries,
        dry_run=o.dry_run,
        install=o.install,
        plan_mode=run.mode == "plan",
        plan=run.plan or "",
        test_command=o.test_command,
        manifest=run.manifest,
        deadline_s=o.run_deadline_s,
        elapsed_s=elapsed_s(run, now) if now is not None else None,
    )


def check(run: Run, o: RunOptions, checkpoint: Checkpoint, now: float | None) -> Brake | None:
    """Ask the rule book about a folded run: the brake that ends it here, or None to go on."""
    return first_brake(situation(run, o, checkpoint, now))
