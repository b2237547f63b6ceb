"""Run leases: which worker may drive a run, fenced by an epoch.

A claim bumps ``runs.lease_epoch`` with a conditional UPDATE (``WHERE lease_epoch
= :seen``), so of two claimers that read the same row only one wins. On
PostgreSQL the row is first selected ``FOR UPDATE SKIP LOCKED`` so claimers never
queue behind each other; on SQLite the caller's ``BEGIN IMMEDIATE`` serialises
them (SQLite ignores the FOR UPDATE clause). The epoch is the fencing token: a
heartbeat or release with a superseded epoch fails, and so does an append made
with it. The seq check on append remains the last line of defence.

These functions take a Connection inside a write transaction; use them through
:class:`store.event_store.EventStore`.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from kodr_core.errors import RunLocked, RunNotFound
from kodr_core.states import TERMINAL
from store.schema import runs

_TERMINAL = sorted(s.value for s in TERMINAL)


@dataclass(frozen=True)
class Lease:
    run_id: str
    owner: str
    epoch: int
    expires_at: float  # epoch seconds


def owner_id() -> str:
    """A fresh owner id, ``host:pid:uuid8``: readable, and checkable on the same host."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def is_local_owner_dead(owner: str | None) -> bool:
    """True only when ``owner`` names this host and a pid that no longer exists."""
    if not owner:
        return False
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid <= 0 or os.name == "nt":  # os.kill(pid, 0) is not a probe on Windows
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    return False


def _iso(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _held_message(run_id: str, owner: str, expires_at: float | None, now: float) -> str:
    left = f", {expires_at - now:.0f}s from now" if expires_at is not None else ""
    return (
        f"run {run_id} is leased by {owner} until {_iso(expires_at)}{left}; "
        "wait for that worker to finish or for its lease to expire"
    )


def _free(owner: str | None, expires_at: float | None, claimant: str, now: float) -> bool:
    return owner is None or owner == claimant or expires_at is None or expires_at <= now or is_local_owner_dead(owner)


def _take(conn: sa.Connection, run_id: str, owner: str, seen: int, ttl_s: float, now: float) -> Lease | None:
    expires = now + ttl_s
    result = conn.execute(
        runs.update()
        .where(runs.c.run_id == run_id, runs.c.lease_epoch == seen)
        .values(lease_owner=owner, lease_epoch=seen + 1, lease_expires_at=expires)
    )
    return Lease(run_id, owner, seen + 1, expires) if result.rowcount == 1 else None


def _lease_cols() -> sa.Select[Any]:
    return sa.select(runs.c.run_id, runs.c.lease_owner, runs.c.lease_epoch, runs.c.lease_expires_at)


def claim(conn: sa.Connection, run_id: str, owner: str, ttl_s: float, now: float | None = None) -> Lease:
    now = time.time() if now is None else now
    # A named run waits for a concurrent claim to commit (briefly, under the lock timeout), so the
    # loser can name the winner; SKIP LOCKED is for claim_next, where any free run will do.
    row = conn.execute(_lease_cols().where(runs.c.run_id == run_id).with_for_update()).first()
    if row is None:
        raise RunNotFound(f"no run {run_id!r} to claim")
    if not _free(row.lease_owner, row.lease_expires_at, owner, now):
        raise RunLocked(_held_message(run_id, row.lease_owner, row.lease_expires_at, now))
    lease = _take(conn, run_id, owner, row.lease_epoch, ttl_s, now)
    if lease is None:
        raise RunLocked(f"run {run_id} was claimed by another worker at the same moment")
    return lease


def _lost(conn: sa.Connection, lease: Lease) -> RunLocked:
    row = conn.execute(_lease_cols().where(runs.c.run_id == lease.run_id)).first()
    if row is None:
        return RunLocked(f"lease on run {lease.run_id} lost: the run no longer exists")
    holder = row.lease_owner or "nobody"
    return RunLocked(
        f"lease on run {lease.run_id} lost: {lease.owner} held epoch {lease.epoch}, "
        f"now held by {holder} (epoch {row.lease_epoch}, until {_iso(row.lease_expires_at)})"
    )


def _mine(lease: Lease) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        runs.c.run_id == lease.run_id,
        runs.c.lease_epoch == lease.epoch,
        runs.c.lease_owner == lease.owner,
    )


def heartbeat(conn: sa.Connection, lease: Lease, ttl_s: float, now: float | None = None) -> Lease:
    now = time.time() if now is None else now
    expires = now + ttl_s
    result = conn.execute(runs.update().where(*_mine(lease)).values(lease_expires_at=expires))
    if result.rowcount != 1:
        raise _lost(conn, lease)
    return Lease(lease.run_id, lease.owner, lease.epoch, expires)


def release(conn: sa.Connection, lease: Lease) -> bool:
    """Give the run up; False if the lease had already been taken over (nothing to do)."""
    result = conn.execute(runs.update().where(*_mine(lease)).values(lease_owner=None, lease_expires_at=None))
    return result.rowcount == 1


def check_fence(conn: sa.Connection, lease: Lease) -> RunLocked | None:
    """None if ``lease`` is still the current one, else the error saying who has the run."""
    row = conn.execute(sa.select(runs.c.run_id).where(*_mine(lease))).first()
    return None if row is not None else _lost(conn, lease)


def claimable(now: float) -> sa.ColumnElement[bool]:
    """A run a worker may claim at ``now``: not terminal, and its lease free or expired."""
    return sa.and_(
        runs.c.state.not_in(_TERMINAL),
        sa.or_(
            runs.c.lease_owner.is_(None),
            runs.c.lease_expires_at.is_(None),
            runs.c.lease_expires_at <= now,
        ),
    )


def claim_next(conn: sa.Connection, owner: str, ttl_s: float, now: float | None = None) -> Lease | None:
    """Claim the longest-idle claimable run, if any."""
    now = time.time() if now is None else now
    row = conn.execute(
        _lease_cols()
        .where(claimable(now))
        .order_by(runs.c.updated_at, runs.c.run_id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if row is None:
        return None
    return _take(conn, row.run_id, owner, row.lease_epoch, ttl_s, now)
