"""The service layer: kodr's use cases, for the HTTP API, the workers and the CLI alike.

Each use case takes its dependencies through ports (:class:`kodr_core.ports.RunQueue`,
a :class:`kodr_core.ports.Workspace`), returns typed values, and raises kodr's own
errors, which each entry point maps at its edge (HTTP status, exit code). Nothing
here touches a socket, a file or a process: a run is requested by recording it and
announcing it; a worker, elsewhere, drives it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from kodr_core import events as ev
from kodr_core.aggregate import Run, fold
from kodr_core.engine import Engine
from kodr_core.errors import ConcurrencyConflict, KodrError, UsageError
from kodr_core.explain import explain as explain_run
from kodr_core.options import RunOptions
from kodr_core.patch import unified_diff
from kodr_core.ports import RunQueue, RunRow, Workspace
from kodr_core.replay import check
from kodr_core.states import TERMINAL, Reason, State

Mode = Literal["run", "heal"]


class RunConflict(KodrError):
    """The run is not in a state that allows the request (cancel a finished run, …)."""


class RunListItem(BaseModel):
    """A run as ``GET /api/runs`` lists it."""

    run_id: str
    state: str
    outcome: str | None = None
    reason: str | None = None
    heal_turn: int = 0
    last_seq: int = 0
    task: str = ""
    mode: str = "run"
    created_at: str | None = None
    updated_at: str | None = None
    lease_owner: str | None = None


class RunSummary(RunListItem):
    """A run as ``kodr show --json`` prints it: the list's fields and its settings, facts and lease."""

    workspace: str = ""
    options: dict[str, Any] = Field(default_factory=dict)
    facts: dict[str, Any] = Field(default_factory=dict)
    lease_epoch: int = 0


class RunPage(BaseModel):
    runs: list[RunListItem]
    limit: int
    offset: int


class EventView(BaseModel):
    """One event with its place in the chain and who wrote it."""

    run_id: str
    seq: int
    type: str
    schema_version: int
    recorded_at: str
    data: dict[str, Any]
    prev_hash: str
    hash: str
    writer: str | None = None
    lease_epoch: int | None = None


class TurnDiff(BaseModel):
    turn: int
    files: list[dict[str, Any]]
    diff: str


class ReplayView(BaseModel):
    run_id: str
    events: int
    ok: bool
    state: str | None
    reason: str | None
    illegal: list[dict[str, Any]]
    timeline: list[dict[str, Any]]


class Metrics(BaseModel):
    runs_by_state: dict[str, int]
    queue_depth: int
    heal_turns: int
    step_seconds: dict[str, list[float]]


def summary(run: Run, row: RunRow | None = None) -> RunSummary:
    return RunSummary(
        run_id=run.run_id,
        state=run.state.value,
        outcome=run.outcome,
        reason=run.reason,
        heal_turn=run.heal_turn,
        last_seq=run.last_seq,
        task=run.task,
        mode=run.mode,
        workspace=run.workspace,
        options=dict(run.options),
        created_at=run.created_at,
        updated_at=run.updated_at,
        facts=dict(run.transitions[-1].facts) if run.transitions else {},
        lease_owner=row.lease_owner if row else None,
        lease_epoch=row.lease_epoch if row else 0,
    )


def event_view(rec: ev.RecordedEvent, writer: str | None = None, epoch: int | None = None) -> EventView:
    return EventView(
        run_id=rec.run_id,
        seq=rec.seq,
        type=rec.type,
        schema_version=rec.event.VERSION,
        recorded_at=rec.recorded_at,
        data=rec.event.payload(),
        prev_hash=rec.prev_hash,
        hash=rec.hash,
        writer=writer,
        lease_epoch=epoch,
    )


class _NoToolchain:
    """Recording a request runs nothing; a worker brings the real toolchain."""

    def install(self, *a: Any, **k: Any) -> Any:
        raise KodrError("the service does not install; a worker does")

    def test(self, *a: Any, **k: Any) -> Any:
        raise KodrError("the service does not run tests; a worker does")

    def kill_orphans(self, step_key: str) -> int:
        return 0

    def confinement(self, step: str) -> dict[str, Any]:
        return {"sandbox": "none", "mode": "off", "network": False, "why": "the service runs nothing"}


class Service:
    """The use cases over one store. ``actor`` names who acts (recorded on cancels)."""

    def __init__(self, queue: RunQueue, actor: str = "service") -> None:
        self.queue = queue
        self.actor = actor

    # -- writing -------------------------------------------------------------------------
    def request(self, task: str, mode: Mode, options: RunOptions, workspace: Workspace) -> RunSummary:
        """Record the run with the workspace's base snapshot; it waits in ``requested`` for a worker."""
        if not task.strip():
            raise UsageError("task: must not be empty")
        if mode not in ("run", "heal"):
            raise UsageError(f"mode: must be 'run' or 'heal', not {mode!r}")
        if options.dry_run:
            raise UsageError("options.dry_run: a queued run cannot be a dry run; use `kodr run --dry-run`")
        if mode == "heal":
            options = options.model_copy(update={"heal": True})
        run_id = Engine(self.queue, workspace, _NoToolchain(), None).request(task, options, mode=mode)
        self.queue.announce(run_id)
        return self.show(run_id)

    def cancel(self, ref: str) -> RunSummary:
        """End the run as ``failed``/``cancelled``; its worker is fenced at its next append and
        kills the step it was running when it sees its lease gone."""
        run_id = self.queue.resolve(ref)
        for _ in range(5):
            run = fold(run_id, self.queue.load(run_id))
            if run.state in TERMINAL:
                raise RunConflict(f"run {run_id} already ended {run.state.value} ({run.reason}); nothing to cancel")
            event = ev.StateChanged(
                from_state=run.state.value,
                to_state=State.FAILED.value,
                trigger="fail",
                heal_turn=run.heal_turn,
                outcome=State.FAILED.value,
                reason=Reason.CANCELLED.value,
                facts={"by": self.actor, "interrupted": run.pending.key if run.pending else None},
            )
            try:
                self.queue.append_seized(run_id, f"cancel:{self.actor}", run.last_seq, [event])
            except ConcurrencyConflict:
                continue  # the worker appended meanwhile: read again and cancel from there
            self.queue.announce(run_id)
            return self.show(run_id)
        raise RunConflict(f"run {run_id} kept moving; cancel again")

    def resume(self, ref: str, now: float) -> RunSummary:
        """Put an unfinished run whose lease is free or expired back in front of the workers."""
        run_id = self.queue.resolve(ref)
        row = self.queue.get_run(run_id)
        run = fold(run_id, self.queue.load(run_id))
        if run.state in TERMINAL:
            raise RunConflict(f"run {run_id} already ended {run.state.value} ({run.reason}); nothing to resume")
        if row and row.lease_owner and row.lease_expires_at and row.lease_expires_at > now:
            raise RunConflict(f"run {run_id} is being driven by {row.lease_owner}; it needs no resume")
        self.queue.announce(run_id)
        return summary(run, row)

    # -- reading -------------------------------------------------------------------------
    def list_runs(self, state: str | None = None, limit: int = 50, offset: int = 0) -> RunPage:
        if state is not None and state not in {s.value for s in State}:
            raise UsageError(f"state: {state!r} is not a run state ({', '.join(s.value for s in State)})")
        rows = self.queue.list_runs(state, limit, offset)
        items = [
            RunListItem(
                run_id=r.run_id,
                state=r.state,
                outcome=r.outcome,
                reason=r.reason,
                heal_turn=r.heal_turn,
                last_seq=r.last_seq,
                task=r.task,
                mode=r.mode,
                created_at=r.created_at,
                updated_at=r.updated_at,
                lease_owner=r.lease_owner,
            )
            for r in rows
        ]
        return RunPage(runs=items, limit=limit, offset=offset)

    def fold(self, ref: str) -> tuple[list[ev.RecordedEvent], Run]:
        run_id = self.queue.resolve(ref)
        records = self.queue.load(run_id)
        return records, fold(run_id, records)

    def show(self, ref: str) -> RunSummary:
        _, run = self.fold(ref)
        return summary(run, self.queue.get_run(run.run_id))

    def events(self, ref: str, after: int = 0) -> list[EventView]:
        run_id = self.queue.resolve(ref)
        records = self.queue.load_after(run_id, after)
        writers = self.queue.writers(run_id) if records else {}
        return [event_view(r, *((w.owner, w.epoch) if (w := writers.get(r.seq)) else (None, None))) for r in records]

    def explain(self, ref: str) -> dict[str, Any]:
        return explain_run(self.fold(ref)[1])

    def replay(self, ref: str) -> ReplayView:
        records, run = self.fold(ref)
        r = check(run.run_id, records)
        return ReplayView(
            run_id=r.run_id,
            events=r.events,
            ok=r.ok,
            state=r.state,
            reason=r.reason,
            illegal=r.illegal,
            timeline=r.timeline,
        )

    def manifest(self, ref: str, at_seq: int | None = None) -> dict[str, str]:
        """The workspace files (path -> blob sha256) as the history says they were at ``at_seq``."""
        records, run = self.fold(ref)
        chosen = [r for r in records if at_seq is None or r.seq <= at_seq]
        if not chosen:
            raise UsageError(f"at: no event at or before seq {at_seq}")
        return dict(fold(run.run_id, chosen).manifest)

    def turn_diffs(self, ref: str) -> list[TurnDiff]:
        """What each turn wrote, as a unified diff against the workspace before it."""
        _, run = self.fold(ref)
        out = []
        for t in run.turns:
            if t.writes is None:
                continue
            before = t.manifest_before if t.manifest_before is not None else run.base_snapshot
            paths = [f["path"] for f in t.writes.files]
            out.append(
                TurnDiff(
                    turn=t.n,
                    files=list(t.writes.files),
                    diff=unified_diff(before, t.writes.manifest, self.queue.get_blob, paths),
                )
            )
        return out

    def metrics(self) -> Metrics:
        seconds: dict[str, list[float]] = {"model": [], "install": [], "tests": []}
        for t in self.queue.step_timings():
            seconds.setdefault(t.kind, []).append(t.seconds)
        return Metrics(
            runs_by_state=self.queue.count_by_state(),
            queue_depth=self.queue.queue_depth(),
            heal_turns=self.queue.heal_turns(),
            step_seconds=seconds,
        )
