"""Decide a run's next step from its folded state alone.

This is the heart of "one loop for run and resume": whatever process folds the
events gets the same answer here, so a resumed run continues exactly where the
history says it stopped. Pure: the clock is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kodr_core import brakes
from kodr_core.aggregate import Run, Turn
from kodr_core.errors import KodrError
from kodr_core.install_plan import manifests_changed, plan_install
from kodr_core.options import RunOptions
from kodr_core.states import OUTCOME_OF, TERMINAL, Reason, State
from kodr_core.test_command import parse_test_command

# -- steps -------------------------------------------------------------------


@dataclass(frozen=True)
class Fire:
    """Append one StateChanged: the trigger, and the facts that justified it."""

    trigger: str
    facts: dict[str, Any] = field(default_factory=dict)
    reason: Reason | None = None
    heal_turn: int | None = None


@dataclass(frozen=True)
class CallModel:
    purpose: str  # propose | repair | plan
    turn: int
    attempt: int
    errors: tuple[str, ...] = ()  # validation errors to quote back on a retry


@dataclass(frozen=True)
class ApplyWrites:
    turn: int
    attempt: int


@dataclass(frozen=True)
class Install:
    turn: int
    attempt: int
    commands: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class SkipInstall:
    turn: int
    why: str


@dataclass(frozen=True)
class RunTests:
    turn: int
    attempt: int
    scope: str = "full"  # full | failing
    files: tuple[str, ...] = ()


Step = Fire | CallModel | ApplyWrites | Install | SkipInstall | RunTests


def step_key(run: Run, kind: str, turn: int, scope: str = "") -> str:
    """Idempotency key of a side effect: stable across attempts of the same step."""
    return f"{run.run_id}:{kind}:{turn}{':' + scope if scope else ''}"


def _attempt(run: Run, key: str) -> int:
    return run.attempts.get(key, 0) + 1


def _finish(reason: Reason, facts: dict[str, Any] | None = None, *, turn: int | None = None) -> Fire:
    trigger = {
        State.PASSED: "succeed",
        State.PROPOSED: "conclude_dry_run",
        State.FAILED: "fail",
        State.STALLED: "stall",
        State.TIMED_OUT: "time_out",
    }[OUTCOME_OF[reason]]
    return Fire(trigger, facts or {}, reason, turn)


def _elapsed_s(run: Run, now: float) -> float:
    if not run.created_at:
        return 0.0
    start = datetime.fromisoformat(run.created_at.replace("Z", "+00:00")).timestamp()
    return now - start


# -- the decision ------------------------------------------------------------


def next_step(run: Run, now: float) -> Step | None:
    """The one thing to do next, or None when the run is over."""
    if run.state in TERMINAL:
        return None
    o = RunOptions.of(run.options)
    if o.run_deadline_s is not None and run.state is not State.REQUESTED:
        elapsed = _elapsed_s(run, now)
        if elapsed > o.run_deadline_s:
            return _finish(
                Reason.RUN_DEADLINE,
                {"deadline_s": o.run_deadline_s, "elapsed_s": round(elapsed, 3)},
            )
    match run.state:
        case State.REQUESTED:
            return _requested(run, o)
        case State.PROPOSING:
            if run.mode == "plan":
                return _plan_turn(run, o)
            return _model_turn(run, o, 0, "propose")
        case State.APPLIED:
            return _applied(run, o)
        case State.INSTALLING:
            return _installing(run)
        case State.VERIFYING:
            return _verifying(run, o, now)
        case State.HEALING:
            return _healing(run, o, now)
    raise AssertionError(f"no decision for state {run.state}")


def _requested(run: Run, o: RunOptions) -> Step:
    if o.test_command is not None:
        try:
            parse_test_command(o.test_command)
        except KodrError as exc:
            return _finish(Reason.TEST_COMMAND_REFUSED, {"command": o.test_command, "why": exc.message})
    if run.mode == "heal":
        return Fire("adopt", {"files": len(run.base_snapshot)})
    return Fire("propose")


def _model_turn(run: Run, o: RunOptions, n: int, purpose: str) -> Step:
    """Propose (turn 0) or repair (turn n): call, retry an invalid reply once, apply."""
    t = run.turns[n] if n < len(run.turns) else Turn(n)
    if t.proposal is None:
        return _call_or_stop(run, o, t, purpose)
    if t.refused:
        return _finish(Reason.UNSAFE_WRITE, {"refused": list(t.refused)}, turn=n if n else None)
    if run.state is State.PROPOSING and o.dry_run:
        return _finish(Reason.DRY_RUN, {"files": [f["path"] for f in t.proposal.files]})
    if t.writes is None:
        return ApplyWrites(n, _attempt(run, step_key(run, "writes", n)))
    return Fire("apply", _after_writes_facts(t))


def _plan_turn(run: Run, o: RunOptions) -> Step:
    """A plan-only run: one model call whose answer is a scratchpad, then `proposed`."""
    if run.plan:
        return _finish(Reason.PLAN_RECORDED, {"plan_bytes": len(run.plan.encode())})
    return _call_or_stop(run, o, run.turns[0], "plan")


def _call_or_stop(run: Run, o: RunOptions, t: Turn, purpose: str) -> Step:
    """Call the model for turn ``t``, unless a failed call or a second invalid reply ends the run."""
    turn = t.n if t.n else None
    if t.model_error is not None:
        err = t.model_error
        reason = {"timeout": Reason.MODEL_TIMEOUT, "context_overflow": Reason.CONTEXT_OVERFLOW}.get(
            err.error, Reason.MODEL_UNAVAILABLE)
        facts = {"error": err.error, "message": err.message, "duration_ms": err.duration_ms,
                 "attempt": err.attempt, "retries": err.retries}
        return _finish(reason, facts, turn=turn)
    if len(t.rejected) > o.invalid_retries:
        return _finish(Reason.INVALID_PROPOSAL, {"errors": list(t.rejected)}, turn=turn)
    return CallModel(purpose, t.n, _attempt(run, step_key(run, "model", t.n)), t.rejected)


def _after_writes_facts(t: Turn) -> dict[str, Any]:
    assert t.writes is not None
    return {"files": [{"path": f["path"], "sha256": f["sha256"], "change": f.get("change")} for f in t.writes.files]}


def _applied(run: Run, o: RunOptions) -> Step:
    if o.install:
        try:
            plan = plan_install(set(run.manifest))
        except KodrError as exc:
            return _finish(Reason.INSTALL_REFUSED, {"why": exc.message, "files": sorted(run.manifest)[:50]})
        return Fire("install", {"commands": plan.commands, "why": plan.why})
    return Fire("verify", {"install": "not requested"})


def _installing(run: Run) -> Step:
    n = run.heal_turn
    t = run.turns[n]
    if t.install is None:
        plan = plan_install(set(run.manifest))
        return Install(n, _attempt(run, step_key(run, "install", n)), tuple(tuple(c) for c in plan.commands))
    r = t.install
    facts = {"exitCode": r.get("exitCode"), "durationMs": r.get("durationMs"), "command": r.get("command")}
    if r.get("ok"):
        return Fire("verify", facts)
    if r.get("refused"):
        return _finish(Reason.INSTALL_REFUSED, {**facts, "refused": r["refused"]})
    if r.get("timedOut"):
        return _finish(Reason.INSTALL_TIMEOUT, facts)
    facts["stderrTail"] = (r.get("stderrTail") or "")[-2000:]
    return _finish(Reason.INSTALL_FAILED, facts)


def _failing_test_files(prev: dict[str, Any] | None, manifest: dict[str, str]) -> tuple[str, ...]:
    """The files of the last failures, when the runner can be narrowed to them (not npm scripts)."""
    if not prev:
        return ()
    try:
        if parse_test_command(prev.get("command") or "").kind == "npm":
            return ()
    except KodrError:
        return ()
    files = []
    for f in prev.get("failures", []):
        path = f.get("file")
        if path and path in manifest and path not in files:
            files.append(path)
    return tuple(files)


def _most_tests_seen(run: Run, n: int) -> int:
    """The largest full-suite test count of the turns before ``n``."""
    totals = [t.final_tests.get("total") or 0 for t in run.turns[:n]
              if t.final_tests and t.final_tests.get("scope", "full") == "full"]
    return max(totals, default=0)


def _verifying(run: Run, o: RunOptions, now: float) -> Step:
    n = run.heal_turn
    t = run.turns[n]
    results = list(t.tests)
    if not results:
        prev = run.turns[n - 1].final_tests if n > 0 else None
        files = _failing_test_files(prev, run.manifest) if o.failing_first and n > 0 else ()
        if files:
            return RunTests(n, _attempt(run, step_key(run, "tests", n, "failing")), "failing", files)
        return RunTests(n, _attempt(run, step_key(run, "tests", n, "full")))
    last = results[-1]
    facts = {k: last.get(k) for k in ("command", "exitCode", "passed", "failed", "skipped", "total", "durationMs")}
    facts["scope"] = last.get("scope", "full")
    if last.get("timedOut"):
        return _finish(Reason.TEST_TIMEOUT, facts)
    if last.get("scope") == "failing" and (last.get("ok") or not last.get("total")):
        # The previously failing files pass (or could not be selected): only a full suite decides.
        return RunTests(n, _attempt(run, step_key(run, "tests", n, "full")))
    if not last.get("total"):
        facts["why"] = "no test executed"
        return _finish(Reason.NO_VERIFICATION, facts)
    if last.get("ok"):
        before = _most_tests_seen(run, n)
        if before > (last.get("total") or 0):
            # A pass with fewer tests than a repair started from is not a pass kodr saw.
            return _finish(Reason.TESTS_REMOVED, {**facts, "total_before": before})
        return _finish(Reason.VERIFICATION_PASSED, facts)
    facts["failing"] = [f.get("name") for f in last.get("failures", [])][:20]
    if not o.heal:
        return _finish(Reason.TESTS_FAILED, facts)
    stop = brakes.after_verification(run, o)
    if stop is not None:
        return _finish(stop.reason, {**facts, **stop.evidence})
    return Fire("heal", facts, heal_turn=n + 1)


def _healing(run: Run, o: RunOptions, now: float) -> Step:
    n = run.heal_turn
    t = run.turns[n] if n < len(run.turns) else Turn(n)
    if t.writes is None:
        return _model_turn(run, o, n, "repair")
    stop = brakes.after_repair(run, o)
    if stop is not None:
        return _finish(stop.reason, stop.evidence)
    changed = manifests_changed(t.manifest_before or {}, run.manifest)
    if o.install and changed:
        return Fire("install", {"manifests_changed": changed})
    if o.install and t.install_skipped is None:
        return SkipInstall(n, "no dependency manifest changed")
    return Fire("verify", {"install": "skipped: no dependency manifest changed" if o.install else "not requested"})
