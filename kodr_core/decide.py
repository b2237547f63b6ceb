"""Decide a run's next step from its folded state alone.

This is the heart of "one loop for run and resume": whatever process folds the
events gets the same answer here, so a resumed run continues exactly where the
history says it stopped. Pure: the clock is passed in.

Whether the run ends is never decided here: at every step decide asks the rule
book (:mod:`kodr_core.brakes`, one ordered list of every stop rule) at the
checkpoint the run's state implies, and only chooses the next step when no rule
fires.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kodr_core import brakes
from kodr_core.aggregate import Run, Turn
from kodr_core.errors import KodrError
from kodr_core.install_plan import manifests_changed, plan_install
from kodr_core.options import RunOptions
from kodr_core.results import TestResult
from kodr_core.states import TERMINAL, Reason, State
from kodr_core.test_command import NOT_NARROWABLE, parse_test_command

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


def _finish(stop: brakes.Brake) -> Fire:
    """The StateChanged that ends the run for a brake of the rule book."""
    trigger = {
        State.PASSED: "succeed",
        State.PROPOSED: "conclude_dry_run",
        State.FAILED: "fail",
        State.STALLED: "stall",
        State.TIMED_OUT: "time_out",
    }[stop.outcome]
    return Fire(trigger, stop.evidence, stop.reason, stop.turn)


# -- the decision ------------------------------------------------------------


def next_step(run: Run, now: float) -> Step | None:
    """The one thing to do next, or None when the run is over.

    Whether the run ends here is asked of the rule book (:mod:`kodr_core.brakes`)
    at the checkpoint the state implies; decide only chooses the next step.
    """
    if run.state in TERMINAL:
        return None
    o = RunOptions.of(run.options)
    checkpoint = _checkpoint(run)
    stop = brakes.check(run, o, checkpoint, now)
    if stop is not None:
        return _finish(stop)
    match run.state:
        case State.REQUESTED:
            return Fire("adopt", {"files": len(run.base_snapshot)}) if run.mode == "heal" else Fire("propose")
        case State.PROPOSING:
            if run.mode == "plan":
                return CallModel("plan", 0, _attempt(run, step_key(run, "model", 0)), run.turns[0].rejected)
            return _model_turn(run, 0, "propose")
        case State.APPLIED:
            return _applied(run, o)
        case State.INSTALLING:
            return _installing(run)
        case State.VERIFYING:
            return _verifying(run, o)
        case State.HEALING:
            return _healing(run, o)
        case _:
            raise AssertionError(f"no decision for state {run.state}")


def _checkpoint(run: Run) -> brakes.Checkpoint:
    """Where in the rule book a run in this state is judged."""
    C = brakes.Checkpoint
    match run.state:
        case State.REQUESTED:
            return C.START
        case State.PROPOSING:
            return C.MODEL
        case State.APPLIED:
            return C.APPLIED
        case State.INSTALLING:
            return C.INSTALL
        case State.VERIFYING:
            return C.VERIFICATION
        case State.HEALING:
            n = run.heal_turn
            written = n < len(run.turns) and run.turns[n].writes is not None
            return C.REPAIR if written else C.MODEL
        case _:
            raise AssertionError(f"no checkpoint for state {run.state}")


def _model_turn(run: Run, n: int, purpose: str) -> Step:
    """Propose (turn 0) or repair (turn n): call (again after an invalid reply), then apply."""
    t = run.turns[n] if n < len(run.turns) else Turn(n)
    if t.proposal is None:
        return CallModel(purpose, t.n, _attempt(run, step_key(run, "model", t.n)), t.rejected)
    if t.writes is None:
        return ApplyWrites(n, _attempt(run, step_key(run, "writes", n)))
    return Fire("apply", _after_writes_facts(t))


def _after_writes_facts(t: Turn) -> dict[str, Any]:
    assert t.writes is not None
    return {"files": [{"path": f["path"], "sha256": f["sha256"], "change": f.get("change")} for f in t.writes.files]}


def _applied(run: Run, o: RunOptions) -> Step:
    if o.install:
        plan = plan_install(set(run.manifest))
        return Fire("install", {"commands": plan.commands, "why": plan.why})
    return Fire("verify", {"install": "not requested"})


def _installing(run: Run) -> Step:
    n = run.heal_turn
    t = run.turns[n]
    if t.install is None:
        plan = plan_install(set(run.manifest))
        return Install(n, _attempt(run, step_key(run, "install", n)), tuple(tuple(c) for c in plan.commands))
    r = t.install
    return Fire("verify", {"exitCode": r.exit_code, "durationMs": r.duration_ms, "command": r.command})


def _failing_test_files(prev: TestResult | None, manifest: dict[str, str]) -> tuple[str, ...]:
    """The files of the last failures, when the runner can be narrowed to them (not npm scripts)."""
    if prev is None:
        return ()
    try:
        if parse_test_command(prev.command).kind in NOT_NARROWABLE:
            return ()
    except KodrError:
        return ()
    files: list[str] = []
    for f in prev.failures:
        if f.file and f.file in manifest and f.file not in files:
            files.append(f.file)
    return tuple(files)


def _verifying(run: Run, o: RunOptions) -> Step:
    n = run.heal_turn
    t = run.turns[n]
    if not t.tests:
        prev = run.turns[n - 1].final_tests if n > 0 else None
        files = _failing_test_files(prev, run.manifest) if o.failing_first and n > 0 else ()
        if files:
            return RunTests(n, _attempt(run, step_key(run, "tests", n, "failing")), "failing", files)
        return RunTests(n, _attempt(run, step_key(run, "tests", n, "full")))
    last = t.tests[-1]
    if brakes.needs_full_suite(last):
        return RunTests(n, _attempt(run, step_key(run, "tests", n, "full")))
    # the rule book let a failing verification go on: heal it
    return Fire("heal", {**brakes.verification_facts(last), "failing": brakes.failing_names(last)}, heal_turn=n + 1)


def _healing(run: Run, o: RunOptions) -> Step:
    n = run.heal_turn
    t = run.turns[n] if n < len(run.turns) else Turn(n)
    if t.writes is None:
        return _model_turn(run, n, "repair")
    changed = manifests_changed(t.manifest_before or {}, run.manifest)
    if o.install and changed:
        return Fire("install", {"manifests_changed": changed})
    if o.install and t.install_skipped is None:
        return SkipInstall(n, "no dependency manifest changed")
    return Fire("verify", {"install": "skipped: no dependency manifest changed" if o.install else "not requested"})
