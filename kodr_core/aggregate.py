"""The run aggregate: fold a run's events into the state the engine decides from.

The fold is the only reader of history. It never trusts anything but events, so
a run restored from the store is exactly the run that wrote them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable

from kodr_core import events as ev
from kodr_core.machine import destination
from kodr_core.states import State


@dataclass(frozen=True)
class Pending:
    """A side effect whose ``…Started`` event has no outcome yet (an interrupted step)."""

    kind: str  # model | writes | install | tests
    key: str
    attempt: int
    turn: int


@dataclass(frozen=True)
class Turn:
    """What happened in one turn: turn 0 is the first proposal, 1.. are repairs."""

    n: int
    model_ms: int | None = None
    model_attempts: int = 0
    rejected: tuple[str, ...] = ()
    proposal: ev.ProposalAccepted | None = None
    writes: ev.WritesApplied | None = None
    install: dict[str, Any] | None = None
    install_skipped: str | None = None
    tests: tuple[dict[str, Any], ...] = ()  # every TestsFinished.result of this turn, in order
    model_error: ev.ModelCallFailed | None = None
    allowed_paths: tuple[str, ...] = ()  # what a repair may touch (failing paths + context)
    manifest_before: dict[str, str] | None = None  # workspace when the turn's writes began
    refused: tuple[str, ...] = ()  # writes refused as unsafe, with why
    model_capabilities: dict[str, Any] | None = None  # what the server accepted on the last call, what was learned

    @property
    def final_tests(self) -> dict[str, Any] | None:
        """The last full-suite result of the turn, or the last result if none was full."""
        full = [t for t in self.tests if t.get("scope", "full") == "full"]
        return (full or list(self.tests) or [None])[-1]


@dataclass(frozen=True)
class Run:
    run_id: str
    last_seq: int = 0
    state: State = State.REQUESTED
    heal_turn: int = 0
    outcome: str | None = None
    reason: str | None = None
    task: str = ""
    workspace: str = ""
    mode: str = "run"
    options: dict[str, Any] = field(default_factory=dict)
    base_snapshot: dict[str, str] = field(default_factory=dict)
    manifest: dict[str, str] = field(default_factory=dict)  # workspace as the events say it is
    created_at: str | None = None
    updated_at: str | None = None
    pending: Pending | None = None
    attempts: dict[str, int] = field(default_factory=dict)  # step key -> attempts started
    turns: tuple[Turn, ...] = ()
    transitions: tuple[ev.StateChanged, ...] = ()
    plan: str | None = None
    resumes: int = 0

    @property
    def turn(self) -> Turn:
        return self.turns[-1] if self.turns else Turn(0)

    def with_turn(self, n: int, **changes: Any) -> "Run":
        turns = list(self.turns)
        while len(turns) <= n:
            turns.append(Turn(len(turns)))
        turns[n] = replace(turns[n], **changes)
        return replace(self, turns=tuple(turns))


def _started(run: Run, kind: str, e: Any) -> Run:
    attempts = dict(run.attempts)
    attempts[e.key] = max(attempts.get(e.key, 0), e.attempt)
    return replace(run, pending=Pending(kind, e.key, e.attempt, e.turn), attempts=attempts)


def apply(run: Run, rec: ev.RecordedEvent) -> Run:
    """Fold one recorded event into the run. Pure; raises on an illegal transition."""
    e = rec.event
    run = replace(run, last_seq=rec.seq, updated_at=rec.recorded_at)
    match e:
        case ev.RunRequested():
            return replace(
                run,
                task=e.task,
                workspace=e.workspace,
                mode=e.mode,
                options=dict(e.options),
                base_snapshot=dict(e.base_snapshot),
                manifest=dict(e.base_snapshot),
                created_at=rec.recorded_at,
                turns=(Turn(0),),
            )
        case ev.StateChanged():
            to = destination(run.state, e.trigger)
            if to.value != e.to_state or run.state.value != e.from_state:
                from kodr_core.errors import IllegalTransition

                raise IllegalTransition(e.from_state, f"{e.trigger} (recorded as → {e.to_state})")
            run = replace(
                run,
                state=to,
                heal_turn=e.heal_turn,
                outcome=e.outcome,
                reason=e.reason,
                transitions=run.transitions + (e,),
            )
            if to is State.HEALING:
                run = run.with_turn(e.heal_turn)
            return run
        case ev.ModelCallStarted():
            if e.allowed_paths:
                run = run.with_turn(e.turn, allowed_paths=tuple(e.allowed_paths))
            return _started(run, "model", e)
        case ev.ModelCallCompleted():
            t = run.with_turn(e.turn).turns[e.turn]
            run = run.with_turn(e.turn, model_ms=e.duration_ms, model_attempts=t.model_attempts + 1,
                                model_capabilities=e.capabilities or t.model_capabilities)
            return replace(run, pending=None)
        case ev.ModelCallFailed():
            t = run.with_turn(e.turn).turns[e.turn]
            run = run.with_turn(e.turn, model_error=e, model_attempts=t.model_attempts + 1,
                                model_capabilities=e.capabilities or t.model_capabilities)
            return replace(run, pending=None)
        case ev.ProposalRejected():
            t = run.with_turn(e.turn).turns[e.turn]
            return run.with_turn(e.turn, rejected=t.rejected + (e.error,))
        case ev.ProposalAccepted():
            if e.purpose == "plan":
                run = replace(run, plan=e.plan)
            return run.with_turn(e.turn, proposal=e)
        case ev.WritesStarted():
            return _started(run, "writes", e)
        case ev.WritesApplied():
            run = run.with_turn(e.turn, writes=e, manifest_before=dict(run.manifest))
            return replace(run, pending=None, manifest=dict(e.manifest))
        case ev.WritesRefused():
            t = run.with_turn(e.turn).turns[e.turn]
            return run.with_turn(e.turn, refused=t.refused + (f"{e.path}: {e.why}",))
        case ev.InstallStarted():
            return _started(run, "install", e)
        case ev.InstallFinished():
            return replace(run.with_turn(e.turn, install=e.result), pending=None)
        case ev.InstallSkipped():
            return run.with_turn(e.turn, install_skipped=e.why)
        case ev.TestsStarted():
            return _started(run, "tests", e)
        case ev.TestsFinished():
            t = run.with_turn(e.turn).turns[e.turn]
            result = dict(e.result, scope=e.scope)
            return replace(run.with_turn(e.turn, tests=t.tests + (result,)), pending=None)
        case ev.PlanRecorded():
            return replace(run, plan=e.plan)
        case ev.RunResumed():
            return replace(run, options={**run.options, **e.overrides}, resumes=run.resumes + 1)
        case ev.WorkspaceRestored():
            return run
    raise ValueError(f"the fold does not know {type(e).__name__}")


def fold(run_id: str, records: Iterable[ev.RecordedEvent]) -> Run:
    run = Run(run_id=run_id)
    for rec in records:
        run = apply(run, rec)
    return run


def project(run_id: str, records: Iterable[ev.RecordedEvent]) -> dict[str, Any]:
    """The ``runs`` projection row, always rebuildable from the events."""
    return projection_of(fold(run_id, records))


def projection_of(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "state": run.state.value,
        "heal_turn": run.heal_turn,
        "outcome": run.outcome,
        "reason": run.reason,
        "last_seq": run.last_seq,
        "task": run.task,
        "workspace": run.workspace,
        "mode": run.mode,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
    }
