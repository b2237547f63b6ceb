"""The append-only event store: events, blobs, the runs projection and leases.

Implements :class:`kodr_core.ports.EventLog`. Every append runs in one write
transaction that checks the expected seq, reads the previous hash, inserts the
chained events and upserts the ``runs`` projection folded from all of the run's
events, so the projection can never disagree with the history it came from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite

from kodr_core.aggregate import project
from kodr_core.errors import ConcurrencyConflict, RunNotFound
from kodr_core.events import Event, RecordedEvent, decode
from store import leases as _leases
from store.engine import DEFAULT_BUSY_TIMEOUT_MS, WRITE, make_engine
from store.errors import BlobNotFound, mask_url, translated
from store.hashchain import GENESIS, ChainReport, canonical_bytes, chain_hash, verify_chain
from store.leases import Lease
from store.schema import PROJECTION_COLUMNS, blobs, runs
from store.schema import events as event_rows


def utc_iso(dt: datetime) -> str:
    """ISO-8601 UTC with microseconds and a ``Z``: the form stored in ``recorded_at``."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now() -> datetime:
    return datetime.now(UTC)


def _is_unique_violation(exc: sa_exc.IntegrityError) -> bool:
    orig = exc.orig
    return getattr(orig, "sqlstate", None) == "23505" or "unique" in str(orig).lower()


class EventStore:
    """One database (SQLite file or PostgreSQL schema) holding any number of runs."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.engine = engine
        self.url = engine.url.render_as_string(hide_password=False)
        self.display_url = mask_url(self.url)
        self.busy_timeout_ms = busy_timeout_ms
        self._clock = clock

    @classmethod
    def from_url(cls, url: str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> EventStore:
        """A store on ``url`` without any schema check; prefer :func:`store.database.open_store`."""
        with translated(url):
            return cls(make_engine(url, busy_timeout_ms), busy_timeout_ms=busy_timeout_ms)

    def __repr__(self) -> str:
        return f"EventStore({self.display_url})"

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[sa.Connection]:
        """A transaction (``BEGIN IMMEDIATE`` on SQLite when ``write``) with errors translated."""
        with translated(self.url, self.busy_timeout_ms):
            with self.engine.connect() as conn:
                if write:
                    conn.execution_options(**{WRITE: True})
                with conn.begin():
                    yield conn

    # -- events ------------------------------------------------------------------

    def append(
        self,
        run_id: str,
        expected_seq: int,
        events: Sequence[Event],
        *,
        lease: Lease | None = None,
    ) -> list[RecordedEvent]:
        """Append after ``expected_seq``; raises ConcurrencyConflict if another writer got there.

        With ``lease``, the append also fails if that lease was taken over (fencing).
        All events of one append share one ``recorded_at``.
        """
        new = list(events)
        if not run_id or len(run_id) > 64:
            raise ValueError(f"run id must be 1..64 characters, got {run_id!r}")
        if expected_seq < 0:
            raise ValueError(f"expected_seq must be >= 0, got {expected_seq}")
        if not new:
            return []
        recorded_at = utc_iso(self._clock())
        with self.transaction(write=True) as conn:
            last = conn.execute(
                sa.select(event_rows.c.seq, event_rows.c.hash)
                .where(event_rows.c.run_id == run_id)
                .order_by(event_rows.c.seq.desc())
                .limit(1)
            ).first()
            last_seq, prev = (last.seq, last.hash) if last else (0, GENESIS)
            if last_seq != expected_seq:
                raise ConcurrencyConflict(
                    f"run {run_id}: expected to append seq {expected_seq + 1}, but the last seq "
                    f"is {last_seq}; another writer owns the run"
                )
            if lease is not None and (lost := _leases.check_fence(conn, lease)) is not None:
                raise ConcurrencyConflict(
                    f"run {run_id}: not appending seq {expected_seq + 1}: {lost.message}"
                )
            rows, records = [], []
            for seq, event in enumerate(new, start=expected_seq + 1):
                body = canonical_bytes(
                    run_id, seq, event.TYPE, event.VERSION, recorded_at, event.payload()
                )
                digest = chain_hash(prev, body)
                rows.append(
                    {
                        "run_id": run_id,
                        "seq": seq,
                        "type": event.TYPE,
                        "schema_version": event.VERSION,
                        "recorded_at": recorded_at,
                        "body": body.decode("utf-8"),
                        "prev_hash": prev,
                        "hash": digest,
                    }
                )
                records.append(RecordedEvent(run_id, seq, event, recorded_at, prev, digest))
                prev = digest
            try:
                conn.execute(event_rows.insert(), rows)
            except sa_exc.IntegrityError as exc:
                if not _is_unique_violation(exc):
                    raise
                raise ConcurrencyConflict(
                    f"run {run_id}: seq {expected_seq + 1} was appended by another writer; "
                    "this process no longer owns the run"
                ) from exc
            history = self._records(conn, run_id, upto=expected_seq) if expected_seq else []
            self._upsert_projection(conn, project(run_id, history + records))
        return records

    def load(self, run_id: str) -> list[RecordedEvent]:
        with self.transaction() as conn:
            return self._records(conn, run_id)

    def load_after(self, run_id: str, seq: int) -> list[RecordedEvent]:
        with self.transaction() as conn:
            return self._records(conn, run_id, after=seq)

    def _rows(self, conn: sa.Connection, run_id: str, after: int = 0, upto: int | None = None):
        q = sa.select(event_rows).where(event_rows.c.run_id == run_id, event_rows.c.seq > after)
        if upto is not None:
            q = q.where(event_rows.c.seq <= upto)
        return conn.execute(q.order_by(event_rows.c.seq)).all()

    def _records(
        self, conn: sa.Connection, run_id: str, after: int = 0, upto: int | None = None
    ) -> list[RecordedEvent]:
        out = []
        for row in self._rows(conn, run_id, after, upto):
            data = json.loads(row.body)["data"]
            event = decode(row.type, row.schema_version, data)
            out.append(
                RecordedEvent(row.run_id, row.seq, event, row.recorded_at, row.prev_hash, row.hash)
            )
        return out

    def verify(self, run_id: str) -> ChainReport:
        """Verify the run's hash chain, and that no events were cut off its tail."""
        with self.transaction() as conn:
            rows = self._rows(conn, run_id)
            recorded = conn.execute(
                sa.select(runs.c.last_seq).where(runs.c.run_id == run_id)
            ).scalar()
        if not rows and recorded is None:
            raise RunNotFound(f"no run {run_id!r} in {self.display_url}")
        report = verify_chain(rows)
        if report.ok and recorded is not None and recorded > report.checked:
            return ChainReport(
                False,
                report.checked,
                report.checked + 1,
                f"events end at seq {report.checked} but the runs projection recorded seq "
                f"{recorded}: events were removed",
            )
        return report

    # -- blobs ---------------------------------------------------------------------

    def _insert(self, conn: sa.Connection, table: sa.Table):
        return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)

    def put_blob(self, data: bytes) -> str:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"blobs are bytes, got {type(data).__name__}")
        data = bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        with self.transaction(write=True) as conn:
            conn.execute(
                self._insert(conn, blobs)
                .values(sha256=sha, size=len(data), data=data, created_at=utc_iso(self._clock()))
                .on_conflict_do_nothing(index_elements=["sha256"])
            )
        return sha

    def get_blob(self, sha256: str) -> bytes:
        with self.transaction() as conn:
            data = conn.execute(sa.select(blobs.c.data).where(blobs.c.sha256 == sha256)).scalar()
        if data is None:
            raise BlobNotFound(f"no blob {sha256} in {self.display_url}")
        return bytes(data)

    def has_blob(self, sha256: str) -> bool:
        with self.transaction() as conn:
            return (
                conn.execute(sa.select(blobs.c.sha256).where(blobs.c.sha256 == sha256)).first()
                is not None
            )

    # -- the runs projection ------------------------------------------------------

    def _upsert_projection(self, conn: sa.Connection, projection: dict[str, Any]) -> None:
        values = {k: projection[k] for k in PROJECTION_COLUMNS}
        stmt = self._insert(conn, runs).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_id"],
            set_={k: stmt.excluded[k] for k in PROJECTION_COLUMNS if k != "run_id"},
        )
        conn.execute(stmt)

    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Projection rows (with lease columns), newest first."""
        q = sa.select(runs).order_by(sa.nulls_last(runs.c.created_at.desc()), runs.c.run_id.desc())
        if limit is not None:
            q = q.limit(limit)
        with self.transaction() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self.transaction() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
        return dict(row._mapping) if row is not None else None

    def run_ids(self) -> list[str]:
        """Every run id that has events (the source of truth, not the projection), sorted."""
        with self.transaction() as conn:
            return list(
                conn.execute(
                    sa.select(event_rows.c.run_id).distinct().order_by(event_rows.c.run_id)
                ).scalars()
            )

    def resolve(self, ref: str) -> str:
        """A run id from an exact id, a unique prefix, or ``last`` (the newest run)."""
        ref = (ref or "").strip()
        if not ref:
            raise RunNotFound("no run given")
        if ref == "last":
            newest = self.runs(limit=1)
            if not newest:
                raise RunNotFound(f"there are no runs yet in {self.display_url}")
            return newest[0]["run_id"]
        escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self.transaction() as conn:
            if conn.execute(sa.select(runs.c.run_id).where(runs.c.run_id == ref)).first():
                return ref
            matches = list(
                conn.execute(
                    sa.select(runs.c.run_id)
                    .where(runs.c.run_id.like(escaped + "%", escape="\\"))
                    .order_by(runs.c.run_id)
                    .limit(6)
                ).scalars()
            )
        if not matches:
            raise RunNotFound(f"no run matches {ref!r} in {self.display_url} (see `kodr runs`)")
        if len(matches) > 1:
            shown = ", ".join(matches[:5]) + (", …" if len(matches) > 5 else "")
            raise RunNotFound(
                f"run prefix {ref!r} is ambiguous: it matches {shown}; give more characters"
            )
        return matches[0]

    def rebuild_projection(self, run_id: str) -> dict[str, Any]:
        """Recompute the run's projection from its events and store it (leases kept)."""
        with self.transaction(write=True) as conn:
            records = self._records(conn, run_id)
            if not records:
                raise RunNotFound(f"no events for run {run_id!r} in {self.display_url}")
            projection = project(run_id, records)
            self._upsert_projection(conn, projection)
        return projection

    # -- leases ----------------------------------------------------------------------

    def claim(self, run_id: str, owner: str, ttl_s: float, now: float | None = None) -> Lease:
        """Lease the run if it is free, ours, expired, or held by a dead local process."""
        with self.transaction(write=True) as conn:
            return _leases.claim(conn, run_id, owner, ttl_s, now)

    def heartbeat(self, lease: Lease, ttl_s: float, now: float | None = None) -> Lease:
        with self.transaction(write=True) as conn:
            return _leases.heartbeat(conn, lease, ttl_s, now)

    def release(self, lease: Lease) -> bool:
        with self.transaction(write=True) as conn:
            return _leases.release(conn, lease)

    def claim_next(self, owner: str, ttl_s: float, now: float | None = None) -> Lease | None:
        with self.transaction(write=True) as conn:
            return _leases.claim_next(conn, owner, ttl_s, now)
