"""``kodr worker``: claim queued runs and expired leases, drive them, heartbeat, drain on SIGTERM.

A worker is N slots (threads), each with its own lease owner id, so every event
names the slot that wrote it. A slot claims the longest-idle run that is not
terminal and has no live lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), makes
its workspace (the run's own directory when it exists here, else one rebuilt from
the store under ``--work-dir``), and drives it with the engine's one loop: ``drive``
for a fresh run, ``resume`` for one another process started. Appends are fenced by
the lease: when it is taken (a cancel, or a takeover after our heartbeats stopped)
the heartbeat notices, the step in flight has its processes killed, and the next
append fails, which ends the slot's hold on the run.

SIGTERM drains: no new claims, the runs in hand finish within ``drain_s``; what is
still running then is handed back (leases released; the next claimant resumes it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from adapters.bootstrap import build_engine, confined_toolchain, model_for
from adapters.leasing import FencedLog
from adapters.toolchain import ProcessToolchain
from adapters.workspace import DiskWorkspace
from kodr_core import events as ev
from kodr_core.aggregate import fold
from kodr_core.errors import ConcurrencyConflict, KodrError, RunLocked
from kodr_core.options import RunOptions
from kodr_core.ports import ChatReply, ChatRequest, ModelError, ModelPort
from kodr_core.states import TERMINAL, Reason, State
from store.event_store import EventStore
from store.leases import Lease, owner_id
from store.queue import RunQueue, Waiter

log = structlog.get_logger("kodr.worker")

LEASE_TTL_S = 15.0
POLL_S = 2.0
MAX_ERRORS = 3  # unexpected errors driving one run before this worker ends it failed/worker_error  # SQLite polls; PostgreSQL also wakes this often to find expired leases


def default_model(options: RunOptions) -> ModelPort | None:
    if not (options.base_url or options.provider != "openai-compatible"):
        return None
    return model_for(options)


class _Hold:
    """A claimed run: its lease kept alive by a heartbeat thread, its step in flight known."""

    def __init__(self, store: EventStore, lease: Lease, ttl_s: float, toolchain: ProcessToolchain) -> None:
        self.store = store
        self.fenced = FencedLog(store, lease)
        self.ttl_s = ttl_s
        self.toolchain = toolchain
        self.step_key: str | None = None
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"kodr-beat-{lease.run_id}", daemon=True)
        self._thread.start()

    def observe(self, rec: ev.RecordedEvent) -> None:
        key = getattr(rec.event, "key", None)
        if rec.type.endswith("Started") and key:
            self.step_key = key
        elif key and key == self.step_key:
            self.step_key = None

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.fenced.lease = self.store.heartbeat(self.fenced.lease, self.ttl_s)
            except KodrError as exc:
                self.lose(str(exc))
                return

    def lose(self, why: str) -> None:
        """The lease is gone: stop the step in flight (its processes); the next append fails."""
        if self.lost.is_set():
            return
        self.lost.set()
        log.warning("lease lost", run_id=self.fenced.lease.run_id, why=why, step=self.step_key)
        if self.step_key:
            self.toolchain.kill_orphans(self.step_key)

    def close(self, release: bool = True) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if release and not self.lost.is_set():
            try:
                self.store.release(self.fenced.lease)
            except KodrError:
                pass


class _Abortable:
    """A model whose call in flight is abandoned the moment the run's lease is lost.

    The HTTP call itself ends at its own deadline in a daemon thread; the engine is
    released at once, and its next append (the failed call) is refused by the fence.
    """

    def __init__(self, model: ModelPort, lost: threading.Event) -> None:
        self.model = model
        self.lost = lost

    def complete(self, request: ChatRequest, *, deadline_s: float | None = None) -> ChatReply:
        box: list[ChatReply | BaseException] = []
        done = threading.Event()

        def call() -> None:
            try:
                box.append(self.model.complete(request, deadline_s=deadline_s))
            except BaseException as exc:  # noqa: BLE001 - handed to the engine's thread below
                box.append(exc)
            finally:
                done.set()

        threading.Thread(target=call, name="kodr-abortable-call", daemon=True).start()
        while not done.wait(0.2):
            if self.lost.is_set():
                raise ModelError("unavailable", "the run's lease was lost (cancelled or taken over)")
        result = box[0]
        if isinstance(result, BaseException):
            raise result
        return result


class Worker:
    def __init__(
        self,
        store: EventStore,
        work_dir: str | Path,
        *,
        concurrency: int = 1,
        ttl_s: float = LEASE_TTL_S,
        poll_s: float = POLL_S,
        model_factory: Callable[[RunOptions], ModelPort | None] = default_model,
        name: str | None = None,
    ) -> None:
        self.store = store
        self.queue = RunQueue(store)
        self.work_dir = Path(work_dir).resolve()
        self.concurrency = max(1, concurrency)
        self.ttl_s = ttl_s
        self.poll_s = poll_s
        self.model_factory = model_factory
        self.name = name or owner_id()
        self.stopping = threading.Event()  # no new claims (SIGTERM)
        self.driven: list[str] = []
        self._holds: dict[int, _Hold] = {}
        self._in_place: set[Path] = set()
        self._errors: dict[
            str, int
        ] = {}  # run id -> unexpected errors while this worker drove it  # run directories a slot is driving in place
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> Worker:
        for i in range(self.concurrency):
            t = threading.Thread(target=self._slot, args=(i,), name=f"kodr-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def drain(self, timeout_s: float = 60.0) -> list[str]:
        """Stop claiming; wait for the runs in hand; hand back what is still running. Returns those ids."""
        self.stopping.set()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        handed = []
        with self._lock:
            for hold in list(self._holds.values()):
                handed.append(hold.fenced.lease.run_id)
                hold.close(release=True)
                hold.lose("handed back at shutdown")
        for run_id in handed:  # wake an idle worker now rather than at its next poll
            try:
                self.queue.announce(run_id)
            except KodrError:
                pass
        return handed

    def run(self, stop: threading.Event, drain_s: float = 60.0) -> list[str]:
        """Serve until ``stop`` is set, then drain."""
        self.start()
        stop.wait()
        return self.drain(drain_s)

    # -- one slot ----------------------------------------------------------------------
    def _slot(self, index: int) -> None:
        owner = f"{self.name}/{index}"
        waiter = Waiter(self.queue)
        try:
            while not self.stopping.is_set():
                try:
                    lease = self.queue.claim_next(owner, self.ttl_s)
                except KodrError as exc:
                    log.warning("claim failed", error=exc.message)
                    lease = None
                if lease is None:
                    waiter.wait(self.poll_s)
                    continue
                self._drive(index, lease)
        finally:
            waiter.close()

    def workspace_for(self, run_workspace: str, run_id: str) -> tuple[Path, bool]:
        """The run's own directory when it is here and no other slot of this worker is in it, else
        ``<work-dir>/<run_id>``, rebuilt from the store. (Two worker processes on one machine can
        still meet in a shared directory: submit such runs as uploads.)"""
        own = Path(run_workspace) if run_workspace else None
        with self._lock:
            if own is not None and own.is_absolute() and own.is_dir() and own not in self._in_place:
                self._in_place.add(own)
                return own, False
        return self.work_dir / run_id, True

    def _drive(self, index: int, lease: Lease) -> None:
        run_id = lease.run_id
        toolchain = ProcessToolchain()
        hold = _Hold(self.store, lease, self.ttl_s, toolchain)
        with self._lock:
            self._holds[index] = hold
        bound = log.bind(run_id=run_id, owner=lease.owner, epoch=lease.epoch)
        root: Path | None = None
        remote = True
        try:
            records = self.store.load(run_id)
            run = fold(run_id, records)
            if run.state in TERMINAL:
                return
            root, remote = self.workspace_for(run.workspace, run_id)
            if remote:
                from adapters.replay import materialize

                materialize(records, self.store.get_blob, root)
            bound.info("driving", state=run.state.value, workspace=str(root), materialized=remote)
            options = RunOptions.of(run.options)
            try:
                model = self.model_factory(options)
            except KodrError as exc:  # the recorded settings name no usable model: the run cannot go on
                self._fail(hold, run_id, Reason.MODEL_UNAVAILABLE, {"error": exc.message})
                return
            try:
                hold.toolchain = confined_toolchain(options)
            except KodrError as exc:  # --sandbox required on a worker that cannot sandbox
                self._fail(hold, run_id, Reason.SANDBOX_UNAVAILABLE, {"error": exc.message})
                return
            if model is not None:
                model = _Abortable(model, hold.lost)
            engine = build_engine(
                hold.fenced,
                DiskWorkspace(root),
                model,
                options,
                store=self.store,
                toolchain=hold.toolchain,
                observer=hold.observe,
            )
            if run.state is State.REQUESTED and run.last_seq == 1:
                result = engine.drive(run_id)
            else:
                result = engine.resume(run_id, lease.owner)
            self.driven.append(run_id)
            bound.info("run ended", state=result.state.value, reason=result.reason)
        except (ConcurrencyConflict, RunLocked) as exc:
            hold.lose(exc.message)
            bound.info("stopped: the run was taken", why=exc.message)
        except Exception as exc:  # noqa: BLE001 - a broken step must not kill the slot; the run stays claimable
            bound.exception("run interrupted", error=str(exc))
            with self._lock:
                self._errors[run_id] = self._errors.get(run_id, 0) + 1
                again = self._errors[run_id]
            if again >= MAX_ERRORS and not hold.lost.is_set():  # a run that breaks us every time must end
                try:
                    self._fail(
                        hold,
                        run_id,
                        Reason.WORKER_ERROR,
                        {"error": f"{type(exc).__name__}: {str(exc)[:500]}", "attempts": again},
                    )
                except KodrError as failed:
                    bound.warning("could not record the failure", error=failed.message)
            time.sleep(min(self.poll_s, 1.0))
        finally:
            hold.close(release=True)
            with self._lock:
                self._holds.pop(index, None)
                if root is not None and not remote:
                    self._in_place.discard(root)

    def _fail(self, hold: _Hold, run_id: str, reason: Reason, facts: dict[str, Any]) -> None:
        run = fold(run_id, self.store.load(run_id))
        event = ev.StateChanged(
            from_state=run.state.value,
            to_state=State.FAILED.value,
            trigger="fail",
            heal_turn=run.heal_turn,
            facts=facts,
            outcome=State.FAILED.value,
            reason=reason.value,
        )
        hold.fenced.append(run_id, run.last_seq, [event])
