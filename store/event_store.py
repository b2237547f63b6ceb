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
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from kodr_core.aggregate import project, project_onto
from kodr_core.errors import ConcurrencyConflict, IllegalTransition, RunNotFound
from kodr_core.events import Event, RecordedEvent
from store import leases as _leases
from store.anchors import HeadAnchors
from store.engine import DEFAULT_BUSY_TIMEOUT_MS, DURABLE, WRITE, make_engine
from store.errors import driver_errors, driver_of, mask_url, translated, unavailable
from store.hashchain import GENESIS, canonical_bytes, chain_hash
from store.leases import Lease
from store.queries import EVENT_COLUMNS, Sql, event_row, sql_for
from store.reader import StoreReader
from store.schema import PROJECTION_COLUMNS, blobs, runs
from store.schema import events as event_rows

_SET_ONCE = ("task", "workspace", "mode", "created_at")  # set by RunRequested only
#: The hot path of an append is three statements on the driver's cursor: SQLAlchemy's
#: statement machinery cost ~0.5 ms of CPU per append, more than the statements.
_HOT_COLUMNS = (*PROJECTION_COLUMNS, "last_hash", "lease_owner", "lease_epoch")
_ADVANCED = tuple(c for c in PROJECTION_COLUMNS if c != "run_id" and c not in _SET_ONCE)
#: Every column an append writes, in the order its rows are built: the readers' columns
#: (``tests/unit/test_store_queries.py`` holds them to the table).
_EVENT_COLUMNS = EVENT_COLUMNS


@dataclass(frozen=True)
class _HotSQL:
    select: str
    insert: str
    advance: str
    cas: str  # advance only from the row this store last left
    cas_lease: str


_BLOB_INSERT = "INSERT INTO blobs (sha256, size, data, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING"
_CAS_COLUMNS = ("last_seq", "last_hash", "state")  # what the remembered row is recognised by
_LEASE_CAS = " AND lease_owner = {m} AND lease_epoch = {m}"
_PG_TYPES = {"seq": "int", "schema_version": "int", "lease_epoch": "int"}  # the rest are text


def _hot_sql(mark: str) -> _HotSQL:
    advance = (
        f"UPDATE runs SET {', '.join(f'{c} = {mark}' for c in _ADVANCED)}, last_hash = {mark} WHERE run_id = {mark}"
    )
    cas = advance + "".join(f" AND {c} = {mark}" for c in _CAS_COLUMNS)
    return _HotSQL(
        select=f"SELECT {', '.join(_HOT_COLUMNS)} FROM runs WHERE run_id = {mark}",
        insert=f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) VALUES ({', '.join([mark] * len(_EVENT_COLUMNS))})",
        advance=advance,
        cas=cas,
        cas_lease=cas + _LEASE_CAS.format(m=mark),
    )


def _pg_one(sql: _HotSQL, n: int, lease: bool) -> str:
    """PostgreSQL: the compare-and-set and the insert of ``n`` events as one statement.

    The insert takes its rows only if the update matched, so the statement writes all
    or nothing, in one round trip when autocommitted.
    """
    row = "(" + ", ".join(f"%s::{_PG_TYPES.get(c, 'text')}" for c in _EVENT_COLUMNS) + ")"
    return (
        f"WITH adv AS ({sql.cas_lease if lease else sql.cas} RETURNING 1) "
        f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) "
        f"SELECT * FROM (VALUES {', '.join([row] * n)}) AS v WHERE EXISTS (SELECT 1 FROM adv)"
    )


_HEADS = 512  # runs whose row this store remembers after its own appends
_PG_ONE_MAX = 64  # events in one PostgreSQL statement (10 parameters each); larger appends take the read path


@dataclass(frozen=True)
class _Head:
    """A run's ``runs`` row as this process's last append left it (projection and last hash).

    The hash pins the whole history, so while the row still has this last seq, hash and
    state, the projection columns are what this process wrote: an append can check its
    transitions against them and advance the row with a compare-and-set, unread.
    """

    projection: dict[str, Any]
    last_hash: str


class _Held:
    """A driver connection kept by one thread for its appends: no pool or SQLAlchemy per append."""

    __slots__ = ("__weakref__", "conn", "cursor", "pid")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.cursor = conn.cursor()
        self.pid = os.getpid()

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - another thread's SQLite connection: its GC closes it
            pass


def _as_dbapi_error(exc: BaseException, statement: str) -> sa_exc.DBAPIError | None:
    """A driver exception as SQLAlchemy's (IntegrityError, OperationalError…); None if it is none."""
    module = driver_of(exc)
    if module is None:
        return None
    base = __import__(module).Error
    if not isinstance(exc, base):
        return None
    err: sa_exc.DBAPIError = sa_exc.DBAPIError.instance(statement, None, exc, base)
    return err


@contextmanager
def _driver_errors(statement: str) -> Iterator[None]:
    """Driver exceptions as SQLAlchemy's (IntegrityError, OperationalError…), so the store's
    conflict handling and :func:`store.errors.translated` treat them as on any other path."""
    try:
        yield
    except Exception as exc:
        err = _as_dbapi_error(exc, statement)
        if err is None:
            raise
        raise err from exc


def _lost_race(run_id: str, expected_seq: int) -> ConcurrencyConflict:
    return ConcurrencyConflict(
        f"run {run_id}: seq {expected_seq + 1} was appended by another writer; this process no longer owns the run"
    )


@contextmanager
def _lost_insert_race(run_id: str, expected_seq: int) -> Iterator[None]:
    """A unique violation on (run_id, seq): another writer appended that seq first."""
    try:
        yield
    except sa_exc.IntegrityError as exc:
        if not _is_unique_violation(exc):
            raise
        raise _lost_race(run_id, expected_seq) from exc


def utc_iso(dt: datetime) -> str:
    """ISO-8601 UTC with microseconds and a ``Z``: the form stored in ``recorded_at``."""
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


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
        self._heads: dict[str, _Head] = {}
        self._heads_lock = threading.Lock()
        self._local = threading.local()
        self._held: weakref.WeakSet[_Held] = weakref.WeakSet()
        from sqlalchemy.pool import StaticPool

        # One shared connection (an in-memory SQLite) cannot also be held: appends take the pool path.
        self._holds = not isinstance(engine.pool, StaticPool)
        self._pg = engine.dialect.name == "postgresql"
        self._pg_sql: dict[tuple[int, bool], str] = {}

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
        """Close the held append connections and the pool; a later call reconnects."""
        pid = os.getpid()
        for held in list(self._held):
            if held.pid == pid:  # a forked child leaves its parent's connections alone
                held.close()
        self._held = weakref.WeakSet()
        self._local = threading.local()
        with self._heads_lock:
            self._heads.clear()
        self.engine.dispose()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _hot_sql(self) -> _HotSQL:
        if self._sql is None:
            self._sql = _hot_sql("?" if self.engine.dialect.paramstyle == "qmark" else "%s")
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
        (state, last seq and hash), never a fold of the history.

        The usual append continues a run this store appended last: it checks against the
        row it left (:class:`_Head`) and advances it with a compare-and-set on last seq,
        hash, state (and lease), on a driver connection this thread holds: on SQLite one
        ``BEGIN IMMEDIATE`` transaction, on PostgreSQL one autocommitted statement (one
        round trip). Any other append, and a compare-and-set that misses, reads the row in
        a write transaction and is judged against it, raising as that row says.
        """
        new = list(events)
        if not run_id or len(run_id) > 64:
            raise ValueError(f"run id must be 1..64 characters, got {run_id!r}")
        if expected_seq < 0:
            raise ValueError(f"expected_seq must be >= 0, got {expected_seq}")
        if not new:
            return []
        recorded_at = utc_iso(self._clock())
        head = self._heads.get(run_id)
        sent: list[RecordedEvent] | None = None
        if head is not None and self._holds and head.projection["last_seq"] == expected_seq:
            try:
                done = self._append_held(run_id, expected_seq, new, lease, recorded_at, head)
            except BaseException:
                self._forget(run_id)
                raise
            if done is not None and done[0]:
                return done[1]
            self._forget(run_id)
            sent = done[1] if done is not None else None
        try:
            return self._append_read(run_id, expected_seq, new, lease, recorded_at, sent)
        except BaseException:
            self._forget(run_id)
            raise

    def _chained(
        self,
        run_id: str,
        expected_seq: int,
        new: list[Event],
        lease: Lease | None,
        recorded_at: str,
        prev: str,
    ) -> tuple[list[RecordedEvent], list[tuple[Any, ...]]]:
        """The records and their rows (in ``_EVENT_COLUMNS`` order), chained from ``prev``."""
        writer, epoch = (lease.owner, lease.epoch) if lease is not None else (None, None)
        key = self.audit_key
        rows, records = [], []
        for seq, event in enumerate(new, start=expected_seq + 1):
            body = canonical_bytes(run_id, seq, event.TYPE, event.VERSION, recorded_at, event.payload())
            digest = chain_hash(prev, body, key)
            rows.append(
                (run_id, seq, event.TYPE, event.VERSION, recorded_at, body.decode("utf-8"), prev, digest, writer, epoch)
            )
            records.append(RecordedEvent(run_id, seq, event, recorded_at, prev, digest))
            prev = digest
        return records, rows

    def _append_held(
        self,
        run_id: str,
        expected_seq: int,
        new: list[Event],
        lease: Lease | None,
        recorded_at: str,
        head: _Head,
    ) -> tuple[bool, list[RecordedEvent]] | None:
        """The append on this thread's held connection, from the row this store left.

        ``(True, records)`` when committed; None when the row is not the one remembered
        (nothing was written); ``(False, records)`` when the connection broke while the
        statement was out, so it may or may not have committed: the caller then reads the
        row and finds out. Errors come out as :func:`store.errors.translated` makes them.
        """
        records, rows = self._chained(run_id, expected_seq, new, lease, recorded_at, head.last_hash)
        old = head.projection
        try:
            projection = project_onto(old, run_id, records)
        except IllegalTransition:
            return None  # judged again against the row itself: a stale head must not decide
        if any(projection[k] != old[k] for k in _SET_ONCE) or (self._pg and len(rows) > _PG_ONE_MAX):
            return None
        last = records[-1].hash
        cas: tuple[Any, ...] = (*(projection[c] for c in _ADVANCED), last, run_id, expected_seq, head.last_hash)
        cas += (old["state"],) if lease is None else (old["state"], lease.owner, lease.epoch)
        try:
            held = self._held_connection()
            if self._pg:
                done = self._pg_statement(held, cas, rows, lease is not None)
            else:
                done = self._sqlite_transaction(held, cas, rows, lease is not None)
        except Exception as exc:
            err = self._append_error(exc, run_id, expected_seq)
            if err is exc:
                raise
            raise err from exc
        if done is None:
            return False, records
        if not done:
            return None
        self._committed(run_id, projection, last, records)
        return True, records

    def _append_error(self, exc: Exception, run_id: str, expected_seq: int) -> Exception:
        """What an error on the held connection means, as the read path would say it."""
        err = (
            exc if isinstance(exc, sa_exc.SQLAlchemyError) else _as_dbapi_error(exc, getattr(exc, "kodr_statement", ""))
        )
        if err is None:
            return exc
        if isinstance(err, sa_exc.IntegrityError) and _is_unique_violation(err):
            return _lost_race(run_id, expected_seq)
        if isinstance(err, (sa_exc.DBAPIError, sa_exc.ArgumentError, sa_exc.NoSuchModuleError)):
            return unavailable(err, self.url, self.busy_timeout_ms) or err
        return err

    def _sqlite_transaction(self, held: _Held, cas: tuple[Any, ...], rows: list[tuple[Any, ...]], lease: bool) -> bool:
        sql = self._hot_sql()
        conn = held.conn
        cur = held.cursor
        statement = "BEGIN IMMEDIATE"
        try:
            cur.execute(statement)
            statement = sql.cas_lease if lease else sql.cas
            cur.execute(statement, cas)
            if cur.rowcount != 1:
                conn.rollback()
                return False
            statement = sql.insert
            cur.executemany(statement, rows)
            statement = "COMMIT"
            cur.execute(statement)
        except BaseException as exc:
            exc.kodr_statement = statement  # type: ignore[attr-defined]
            if conn.in_transaction:
                try:
                    conn.rollback()
                except Exception:  # noqa: BLE001 - the error being raised says more
                    self._discard(held)
            raise
        return True

    def _pg_statement(self, held: _Held, cas: tuple[Any, ...], rows: list[tuple[Any, ...]], lease: bool) -> bool | None:
        """One autocommitted statement: the compare-and-set and, only if it hit, the insert."""
        key = (len(rows), lease)
        statement = self._pg_sql.get(key)
        if statement is None:
            statement = self._pg_sql[key] = _pg_one(self._hot_sql(), *key)
        conn = held.conn
        cur = held.cursor
        try:
            cur.execute(statement, cas + tuple(v for row in rows for v in row))
        except Exception as exc:
            if conn.closed:  # broken, e.g. the server restarted: the read path reconnects
                self._discard(held)
                return None
            exc.kodr_statement = statement  # type: ignore[attr-defined]
            raise
        return bool(cur.rowcount == len(rows))

    def _held_connection(self) -> _Held:
        """This thread's append connection, from the engine (its connect-time settings applied)."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is not None and held.pid == os.getpid():
            return held
        fairy = self.engine.raw_connection()
        conn: Any = fairy.driver_connection
        fairy.detach()  # ours until close(): it no longer counts against the pool
        if self._pg:
            from psycopg.pq import TransactionStatus

            if conn.info.transaction_status != TransactionStatus.IDLE:
                conn.rollback()
            conn.autocommit = True  # each append is one statement: its own transaction
        held = _Held(conn)
        self._local.held = held
        self._held.add(held)
        return held

    def _discard(self, held: _Held) -> None:
        held.close()
        self._held.discard(held)
        if getattr(self._local, "held", None) is held:
            self._local.held = None

    def _committed(self, run_id: str, projection: dict[str, Any], last_hash: str, records: list[RecordedEvent]) -> None:
        """After the commit: remember the row as left, and anchor the head outside the database."""
        with self._heads_lock:
            self._heads.pop(run_id, None)
            self._heads[run_id] = _Head(projection, last_hash)
            if len(self._heads) > _HEADS:
                del self._heads[next(iter(self._heads))]
        if self.anchors is not None:
            self.anchors.write(run_id, records[-1].seq, last_hash)

    def _forget(self, run_id: str) -> None:
        with self._heads_lock:
            self._heads.pop(run_id, None)

    def _append_read(
        self,
        run_id: str,
        expected_seq: int,
        new: list[Event],
        lease: Lease | None,
        recorded_at: str,
        sent: list[RecordedEvent] | None,
    ) -> list[RecordedEvent]:
        """The append judged against the ``runs`` row read in its write transaction.

        ``sent`` are records a broken connection may have committed: if the row ends at
        their last hash they did, and they are the result.
        """
        with self.transaction(write=True) as conn:
            sql = self._hot_sql()
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
            if sent and stored is not None and (last_seq, prev) == (sent[-1].seq, sent[-1].hash):
                cur.close()
                self._committed(run_id, {k: stored[k] for k in PROJECTION_COLUMNS}, prev, sent)
                return sent
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
            records, rows = self._chained(run_id, expected_seq, new, lease, recorded_at, prev)
            prev = records[-1].hash
            projection = project_onto(stored, run_id, records)  # raises on an illegal move
            with _lost_insert_race(run_id, expected_seq), _driver_errors(sql.insert):
                cur.executemany(sql.insert, rows)
            if has_row and stored is not None and all(projection[k] == stored[k] for k in _SET_ONCE):
                with _driver_errors(sql.advance):
                    cur.execute(sql.advance, (*(projection[c] for c in _ADVANCED), prev, run_id))
            else:
                self._upsert_projection(conn, projection, prev)
            cur.close()
        self._committed(run_id, projection, prev, records)
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
        """The dialect's INSERT (for ON CONFLICT), imported when used: the PostgreSQL dialect
        module costs ~35 ms to import, which a SQLite store never needs."""
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)

    def put_blob(self, data: bytes) -> str:
        return self.put_blobs([data])[0]

    def put_blobs(self, items: Sequence[bytes]) -> list[str]:
        """Store many blobs in one transaction; their sha256s, in order.

        The transaction does not wait for its own flush to disk: a blob is only read through
        an event that names it, and that event's commit is durable (``synchronous = FULL``
        on SQLite, ``synchronous_commit`` on PostgreSQL). Both logs are written in order, so
        the event's flush carries the blobs written before it, and a crash before that loses
        only blobs no event names. A step's blobs and its event thus cost one flush, not two.
        """
        datas = []
        for data in items:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"blobs are bytes, got {type(data).__name__}")
            datas.append(bytes(data))
        shas = [hashlib.sha256(d).hexdigest() for d in datas]
        if not datas:
            return shas
        created = utc_iso(self._clock())
        unique = dict(zip(shas, datas, strict=True))
        rows = [(sha, len(d), d, created) for sha, d in unique.items()]
        if self._holds and not self._pg:
            self._sqlite_blobs(rows)
            return shas
        with self.transaction(write=True) as conn:
            if self._pg:
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            conn.execute(
                self._insert(conn, blobs).on_conflict_do_nothing(index_elements=["sha256"]),
                [{"sha256": sha, "size": size, "data": d, "created_at": at} for sha, size, d, at in rows],
            )
        return shas

    def _sqlite_blobs(self, rows: list[tuple[Any, ...]]) -> None:
        """The blobs' transaction on this thread's held connection, committed at ``synchronous = NORMAL``
        (written to the WAL, not flushed: the next event's commit flushes it)."""
        held = self._held_connection()
        cur = held.cursor
        with driver_errors(self.url, self.busy_timeout_ms):
            try:
                cur.execute("PRAGMA synchronous = NORMAL")
                cur.execute("BEGIN IMMEDIATE")
                cur.executemany(_BLOB_INSERT, rows)
                cur.execute("COMMIT")
            finally:
                try:
                    if held.conn.in_transaction:
                        held.conn.rollback()
                    cur.execute(f"PRAGMA synchronous = {DURABLE}")  # the appends on this connection
                except Exception:  # noqa: BLE001 - a connection that may not be durable is not kept
                    self._discard(held)

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
