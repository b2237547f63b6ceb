"""The append-only event store: events, blobs, the runs projection and leases.

Implements :class:`kodr_core.ports.EventLog`. Every append runs in one write
transaction that reads the run's ``runs`` row (state, last seq, last hash), checks
the expected seq and each transition against it, inserts the chained events and
upserts the projection advanced by the new events only, so the projection can
never disagree with the history it came from and an append costs the same at
seq 10 and at seq 100,000. ``UNIQUE(run_id, seq)`` fences racing writers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite

from kodr_core.aggregate import project, project_onto
from kodr_core.errors import ConcurrencyConflict, RunNotFound
from kodr_core.events import Event, RecordedEvent
from store import leases as _leases
from store.anchors import HeadAnchors
from store.engine import DEFAULT_BUSY_TIMEOUT_MS, WRITE, make_engine
from store.errors import mask_url, translated
from store.hashchain import GENESIS, canonical_bytes, chain_hash
from store.leases import Lease
from store.queries import Sql, event_row, sql_for
from store.reader import StoreReader
from store.schema import PROJECTION_COLUMNS, blobs, runs
from store.schema import events as event_rows

_SET_ONCE = ("task", "workspace", "mode", "created_at")  # set by RunRequested only
#: The hot path of an append is three statements on the driver's cursor: SQLAlchemy's
#: statement machinery cost ~0.5 ms of CPU per append, more than the statements.
_HOT_COLUMNS = (*PROJECTION_COLUMNS, "last_hash", "lease_owner", "lease_epoch")
_ADVANCED = tuple(c for c in PROJECTION_COLUMNS if c != "run_id" and c not in _SET_ONCE)
#: Every column an append writes (``writer`` and ``lease_epoch`` since revision 0003).
_EVENT_COLUMNS = tuple(c.name for c in event_rows.columns if c.name != "id")


@dataclass(frozen=True)
class _HotSQL:
    select: str
    insert: str
    advance: str


def _hot_sql(mark: str) -> _HotSQL:
    return _HotSQL(
        select=f"SELECT {', '.join(_HOT_COLUMNS)} FROM runs WHERE run_id = {mark}",
        insert=f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) VALUES ({', '.join([mark] * len(_EVENT_COLUMNS))})",
        advance=f"UPDATE runs SET {', '.join(f'{c} = {mark}' for c in _ADVANCED)}, "
        f"last_hash = {mark} WHERE run_id = {mark}",
    )


@contextmanager
def _driver_errors(statement: str) -> Iterator[None]:
    """Driver exceptions as SQLAlchemy's (IntegrityError, OperationalError…), so the store's
    conflict handling and :func:`store.errors.translated` treat them as on any other path."""
    try:
        yield
    except Exception as exc:
        module = type(exc).__module__.split(".")[0]
        if module not in ("sqlite3", "psycopg"):
            raise
        base = __import__(module).Error
        if not isinstance(exc, base):
            raise
        raise sa_exc.DBAPIError.instance(statement, None, exc, base) from exc


def utc_iso(dt: datetime) -> str:
    """ISO-8601 UTC with microseconds and a ``Z``: the form stored in ``recorded_at``."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now() -> datetime:
    return datetime.now(UTC)


def _is_unique_violation(exc: sa_exc.IntegrityError) -> bool:
    orig = exc.orig
    return getattr(orig, "sqlstate", None) == "23505" or "unique" in str(orig).lower()


class EventStore(StoreReader):
    """One database (SQLite file or PostgreSQL schema) holding any number of runs.

    Its reads (:class:`store.reader.StoreReader`) run the statements of :mod:`store.queries`
    on this engine's connections, the same ones a :class:`store.reader.DriverReader` runs.
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        clock: Callable[[], datetime] = _now,
        audit_key: bytes | None = None,
        anchors: HeadAnchors | None = None,
    ) -> None:
        self.engine = engine
        self.url = engine.url.render_as_string(hide_password=False)
        self.display_url = mask_url(self.url)
        self.busy_timeout_ms = busy_timeout_ms
        self._clock = clock
        self.audit_key = audit_key or None
        self._sql: _HotSQL | None = None
        self.anchors = anchors

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        anchors: HeadAnchors | None = None,
        audit_key: bytes | None = None,
    ) -> EventStore:
        """A store on ``url`` without any schema check; prefer :func:`store.database.open_store`.

        The audit key defaults to ``KODR_AUDIT_KEY`` as with ``open_store``: a reader
        without it would report every keyed run as edited.
        """
        from store.location import audit_key as env_audit_key

        with translated(url):
            return cls(
                make_engine(url, busy_timeout_ms),
                busy_timeout_ms=busy_timeout_ms,
                anchors=anchors,
                audit_key=audit_key or env_audit_key(),
            )

    def __repr__(self) -> str:
        return f"EventStore({self.display_url})"

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _hot_sql(self, conn: sa.Connection) -> _HotSQL:
        if self._sql is None:
            self._sql = _hot_sql("?" if conn.dialect.paramstyle == "qmark" else "%s")
        return self._sql

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
        All events of one append share one ``recorded_at``. The cost does not grow with
        the run: the legality of each transition is checked against the ``runs`` row
        (state, last seq and hash), read in the same write transaction.
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
            sql = self._hot_sql(conn)
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with _driver_errors(sql.select):
                cur.execute(sql.select, (run_id,))
                row = cur.fetchone()
            has_row = row is not None
            stored = dict(zip(_HOT_COLUMNS, row, strict=True)) if row is not None else None
            if stored is None or stored["last_hash"] is None:  # no or an old projection row
                stored = self._rebuilt_row(conn, run_id, stored)
            last_seq = stored["last_seq"] if stored else 0
            prev = stored["last_hash"] if stored else GENESIS
            if last_seq != expected_seq:
                raise ConcurrencyConflict(
                    f"run {run_id}: expected to append seq {expected_seq + 1}, but the last seq "
                    f"is {last_seq}; another writer owns the run"
                )
            if lease is not None and (
                stored is None or (stored["lease_owner"], stored["lease_epoch"]) != (lease.owner, lease.epoch)
            ):
                lost = _leases.check_fence(conn, lease)
                if lost is not None:
                    raise ConcurrencyConflict(f"run {run_id}: not appending seq {expected_seq + 1}: {lost.message}")
            rows, records = [], []
            for seq, event in enumerate(new, start=expected_seq + 1):
                body = canonical_bytes(run_id, seq, event.TYPE, event.VERSION, recorded_at, event.payload())
                digest = chain_hash(prev, body, self.audit_key)
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
                        "writer": lease.owner if lease is not None else None,
                        "lease_epoch": lease.epoch if lease is not None else None,
                    }
                )
                records.append(RecordedEvent(run_id, seq, event, recorded_at, prev, digest))
                prev = digest
            projection = project_onto(stored, run_id, records)  # raises on an illegal move
            try:
                with _driver_errors(sql.insert):
                    cur.executemany(sql.insert, [tuple(r[c] for c in _EVENT_COLUMNS) for r in rows])
            except sa_exc.IntegrityError as exc:
                if not _is_unique_violation(exc):
                    raise
                raise ConcurrencyConflict(
                    f"run {run_id}: seq {expected_seq + 1} was appended by another writer; "
                    "this process no longer owns the run"
                ) from exc
            if has_row and stored is not None and all(projection[k] == stored[k] for k in _SET_ONCE):
                with _driver_errors(sql.advance):
                    cur.execute(sql.advance, (*(projection[c] for c in _ADVANCED), prev, run_id))
            else:
                self._upsert_projection(conn, projection, prev)
            cur.close()
        if self.anchors is not None:
            self.anchors.write(run_id, records[-1].seq, prev)
        return records

    def _rebuilt_row(self, conn: sa.Connection, run_id: str, stored: dict[str, Any] | None) -> dict[str, Any] | None:
        """The projection from the events, for a run whose row is missing or predates last_hash.

        The slow path (a fold of the history), taken at most once per such run.
        """
        last = conn.execute(
            sa.select(event_rows.c.seq, event_rows.c.hash)
            .where(event_rows.c.run_id == run_id)
            .order_by(event_rows.c.seq.desc())
            .limit(1)
        ).first()
        if last is None:
            return None
        rebuilt = project(run_id, self._records(conn, run_id))
        lease = stored or {"lease_owner": None, "lease_epoch": 0}
        return {
            **rebuilt,
            "last_hash": last.hash,
            "lease_owner": lease["lease_owner"],
            "lease_epoch": lease["lease_epoch"],
        }

    @property
    def sql(self) -> Sql:
        return sql_for(self.engine.dialect.paramstyle, self.engine.dialect.name)

    def _fetch(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.transaction() as conn:
            return self._fetch_on(conn, statement, params)

    @staticmethod
    def _fetch_on(conn: sa.Connection, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in conn.exec_driver_sql(statement, tuple(params)).all()]

    def _rows(self, conn: sa.Connection, run_id: str, after: int = 0, upto: int | None = None) -> list[Any]:
        """The run's event rows after ``after`` (up to ``upto``), on ``conn`` (e.g. in a write transaction)."""
        params = (run_id, after) if upto is None else (run_id, after, upto)
        return [event_row(r) for r in self._fetch_on(conn, self.sql.events(upto=upto is not None), params)]

    def _records(
        self, conn: sa.Connection, run_id: str, after: int = 0, upto: int | None = None
    ) -> list[RecordedEvent]:
        return [self._decode(row) for row in self._rows(conn, run_id, after, upto)]

    # -- blobs ---------------------------------------------------------------------

    def _insert(self, conn: sa.Connection, table: sa.Table) -> Any:
        return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)

    def put_blob(self, data: bytes) -> str:
        return self.put_blobs([data])[0]

    def put_blobs(self, items: Sequence[bytes]) -> list[str]:
        """Store many blobs in one transaction (one fsync); their sha256s, in order."""
        datas = []
        for data in items:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"blobs are bytes, got {type(data).__name__}")
            datas.append(bytes(data))
        shas = [hashlib.sha256(d).hexdigest() for d in datas]
        if not datas:
            return shas
        created = utc_iso(self._clock())
        unique = {sha: d for sha, d in zip(shas, datas, strict=True)}
        with self.transaction(write=True) as conn:
            conn.execute(
                self._insert(conn, blobs).on_conflict_do_nothing(index_elements=["sha256"]),
                [{"sha256": k, "size": len(d), "data": d, "created_at": created} for k, d in unique.items()],
            )
        return shas

    # -- the runs projection ------------------------------------------------------

    def _upsert_projection(self, conn: sa.Connection, projection: dict[str, Any], last_hash: str) -> None:
        values = {k: projection[k] for k in PROJECTION_COLUMNS} | {"last_hash": last_hash}
        stmt = self._insert(conn, runs).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_id"],
            set_={k: stmt.excluded[k] for k in values if k != "run_id"},
        )
        conn.execute(stmt)

    def rebuild_projection(self, run_id: str) -> dict[str, Any]:
        """Recompute the run's projection from its events and store it (leases kept)."""
        with self.transaction(write=True) as conn:
            records = self._records(conn, run_id)
            if not records:
                raise RunNotFound(f"no events for run {run_id!r} in {self.display_url}")
            projection = project(run_id, records)
            self._upsert_projection(conn, projection, records[-1].hash)
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
