"""The run queue on the event store: what the service and its workers need beyond appends.

A queued run is nothing but a non-terminal run with no live lease: the service
appends ``RunRequested`` and announces it; a worker claims it with
:func:`store.leases.claim_next` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL). Idle
workers sleep on ``LISTEN`` (PostgreSQL, channel namespaced by the schema, so
tests in separate schemas never wake each other) or poll (SQLite). There is no
broker and no queue table: the ``runs`` projection is the queue, as Procrastinate
and DBOS use their jobs table.

:class:`RunQueue` implements :class:`kodr_core.ports.RunQueue` on an
:class:`store.event_store.EventStore`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from kodr_core.errors import ConcurrencyConflict, RunNotFound
from kodr_core.events import Event, RecordedEvent
from kodr_core.ports import RunRow, StepTiming, Writer
from store.event_store import EventStore
from store.leases import Lease, claimable
from store.schema import events as event_rows
from store.schema import runs

_TIMED = ("InstallFinished", "TestsFinished", "ModelCallCompleted", "ModelCallFailed")


def channel_name(store: EventStore) -> str | None:
    """``kodr_runs_<schema>`` on PostgreSQL (≤ 63 chars, identifier-safe); None on SQLite."""
    if store.engine.dialect.name != "postgresql":
        return None
    with store.transaction() as conn:
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar() or "public"
    return ("kodr_runs_" + re.sub(r"[^a-z0-9_]", "_", schema.lower()))[:63]


def seize(conn: sa.Connection, run_id: str, owner: str, ttl_s: float, now: float | None = None) -> Lease:
    """Take the run's lease whoever holds it (a cancel): the holder's next append is fenced."""
    now = time.time() if now is None else now
    row = conn.execute(sa.select(runs.c.lease_epoch).where(runs.c.run_id == run_id).with_for_update()).first()
    if row is None:
        raise RunNotFound(f"no run {run_id!r}")
    expires = now + ttl_s
    conn.execute(
        runs.update()
        .where(runs.c.run_id == run_id)
        .values(lease_owner=owner, lease_epoch=row.lease_epoch + 1, lease_expires_at=expires)
    )
    return Lease(run_id, owner, row.lease_epoch + 1, expires)


def _row(m: Any) -> RunRow:
    return RunRow(
        run_id=m["run_id"],
        state=m["state"],
        outcome=m["outcome"],
        reason=m["reason"],
        heal_turn=m["heal_turn"],
        last_seq=m["last_seq"],
        task=m["task"],
        mode=m["mode"],
        workspace=m["workspace"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        lease_owner=m["lease_owner"],
        lease_epoch=m["lease_epoch"],
        lease_expires_at=m["lease_expires_at"],
    )


class RunQueue:
    """The store as the service layer sees it: runs, their events, blobs, the queue."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.channel = channel_name(store)

    # -- the EventLog part ------------------------------------------------------------
    def load(self, run_id: str) -> list[RecordedEvent]:
        return self.store.load(run_id)

    def load_after(self, run_id: str, seq: int) -> list[RecordedEvent]:
        return self.store.load_after(run_id, seq)

    def append(self, run_id: str, expected_seq: int, events: Sequence[Event]) -> list[RecordedEvent]:
        return self.store.append(run_id, expected_seq, events)

    def put_blob(self, data: bytes) -> str:
        return self.store.put_blob(data)

    def put_blobs(self, items: Sequence[bytes]) -> list[str]:
        return self.store.put_blobs(items)

    def get_blob(self, sha256: str) -> bytes:
        return self.store.get_blob(sha256)

    def check_intact(self, run_id: str) -> None:
        self.store.check_intact(run_id)

    def resolve(self, ref: str) -> str:
        return self.store.resolve(ref)

    # -- the queue ------------------------------------------------------------------------
    def announce(self, run_id: str) -> None:
        """Wake idle workers (PostgreSQL ``NOTIFY``); on SQLite they poll."""
        if self.channel is None:
            return
        with self.store.transaction(write=True) as conn:
            conn.execute(sa.text("SELECT pg_notify(:ch, :run)"), {"ch": self.channel, "run": run_id})

    def claim_next(self, owner: str, ttl_s: float) -> Lease | None:
        return self.store.claim_next(owner, ttl_s)

    def append_seized(self, run_id: str, owner: str, expected_seq: int, events: Sequence[Event]) -> list[RecordedEvent]:
        """Take the lease from whoever holds it, append under it, release it (a cancel)."""
        with self.store.transaction(write=True) as conn:
            lease = seize(conn, run_id, owner, 30.0)
        try:
            return self.store.append(run_id, expected_seq, events, lease=lease)
        finally:
            self.store.release(lease)

    # -- reading --------------------------------------------------------------------------
    def list_runs(self, state: str | None = None, limit: int = 50, offset: int = 0) -> list[RunRow]:
        q = sa.select(runs).order_by(sa.nulls_last(runs.c.created_at.desc()), runs.c.run_id.desc())
        if state:
            q = q.where(runs.c.state == state)
        with self.store.transaction() as conn:
            return [_row(r._mapping) for r in conn.execute(q.limit(limit).offset(offset))]

    def get_run(self, run_id: str) -> RunRow | None:
        with self.store.transaction() as conn:
            r = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
        return _row(r._mapping) if r is not None else None

    def count_by_state(self) -> dict[str, int]:
        with self.store.transaction() as conn:
            rows = conn.execute(sa.select(runs.c.state, sa.func.count()).group_by(runs.c.state)).all()
        return {state: n for state, n in rows}

    def queue_depth(self, now: float | None = None) -> int:
        """Non-terminal runs nobody holds a live lease on: what a worker would claim next."""
        now = time.time() if now is None else now
        with self.store.transaction() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(runs).where(claimable(now))).scalar() or 0)

    def heal_turns(self) -> int:
        with self.store.transaction() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(runs.c.heal_turn), 0))).scalar() or 0)

    def writers(self, run_id: str) -> dict[int, Writer]:
        """seq -> (writer, lease epoch) for each event of the run."""
        with self.store.transaction() as conn:
            rows = conn.execute(
                sa.select(event_rows.c.seq, event_rows.c.writer, event_rows.c.lease_epoch)
                .where(event_rows.c.run_id == run_id)
                .order_by(event_rows.c.seq)
            ).all()
        return {r.seq: Writer(r.writer, r.lease_epoch) for r in rows}

    def step_timings(self, limit: int = 5000) -> list[StepTiming]:
        """Durations of the latest model calls, installs and test runs (for /metrics)."""
        with self.store.transaction() as conn:
            rows = conn.execute(
                sa.select(event_rows.c.type, event_rows.c.body)
                .where(event_rows.c.type.in_(_TIMED))
                .order_by(event_rows.c.id.desc())
                .limit(limit)
            ).all()
        out = []
        for r in rows:
            data = json.loads(r.body)["data"]
            ms = data.get("duration_ms") if "duration_ms" in data else (data.get("result") or {}).get("durationMs")
            if isinstance(ms, (int, float)):
                kind = {"InstallFinished": "install", "TestsFinished": "tests"}.get(r.type, "model")
                out.append(StepTiming(kind, float(ms) / 1000.0))
        return out


class Waiter:
    """Sleeps until a run is announced (PostgreSQL LISTEN) or ``timeout`` passes."""

    def __init__(self, queue: RunQueue) -> None:
        self.queue = queue
        self._conn: Any = None
        if queue.channel is not None:
            engine = queue.store.engine.execution_options(isolation_level="AUTOCOMMIT")
            self._sa = engine.connect()
            self._conn = self._sa.connection.driver_connection
            self._conn.execute(f'LISTEN "{queue.channel}"')

    def wait(self, timeout: float) -> bool:
        """True when woken by an announcement, False on timeout (always False on SQLite)."""
        if self._conn is None:
            time.sleep(timeout)
            return False
        for _ in self._conn.notifies(timeout=timeout, stop_after=1):
            return True
        return False

    def close(self) -> None:
        if self._conn is not None:
            self._sa.close()
            self._conn = None


def expect_no_conflict(fn: Any, attempts: int = 5) -> Any:
    """Retry ``fn`` when an append raced another writer (the caller re-reads inside fn)."""
    for i in range(attempts):
        try:
            return fn()
        except ConcurrencyConflict:
            if i == attempts - 1:
                raise
            time.sleep(0.05 * (i + 1))
    return None
