"""The store's read side: runs, events, blobs and the audit, on any connection that runs SQL.

:class:`StoreReader` holds every read of the store once, written against one primitive,
``_fetch(statement, params)``, and the statements of :mod:`store.queries`.
:class:`store.event_store.EventStore` is a StoreReader on its SQLAlchemy engine;
:class:`DriverReader` is one on ``sqlite3`` or ``psycopg`` directly, for the commands that
only read (``kodr runs``, ``show``, ``events``, ``explain``, ``replay``, ``audit verify``):
importing SQLAlchemy costs more than the 0.2 s such a command has to answer in.

A DriverReader creates nothing and migrates nothing: a SQLite file is opened read-only
(``mode=ro``; with WAL, SQLite still uses the ``-shm`` beside it, which a writer keeps),
and a schema behind or ahead of :data:`store.queries.HEAD_REVISION` is refused on the
first query with the same StoreUnavailable as :func:`store.database.open_store`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kodr_core.errors import RunNotFound, StoreCorrupt, StoreUnavailable
from store.errors import BlobNotFound, driver_errors, mask_url
from store.hashchain import ChainReport, verify_chain
from store.location import backend, sqlite_file
from store.queries import EventRow, Sql, decode_event, event_row, like_prefix, run_row, schema_refusal, sql_for

if TYPE_CHECKING:
    from kodr_core.events import RecordedEvent
    from store.anchors import HeadAnchors

#: As :mod:`store.engine`'s (which imports SQLAlchemy); a unit test keeps them equal.
DEFAULT_BUSY_TIMEOUT_MS = 5000
DEFAULT_CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True)
class Audit:
    """What ``kodr audit verify`` found: each run's report, and any blob that lies."""

    runs: dict[str, ChainReport]
    blob_problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.blob_problems and all(r.ok for r in self.runs.values())


class StoreReader:
    """Every read of the store; a subclass says how to run one statement (``_fetch``)."""

    display_url: str
    audit_key: bytes | None
    anchors: HeadAnchors | None

    @property
    def sql(self) -> Sql:
        """The statements in this connection's parameter style."""
        raise NotImplementedError

    def _fetch(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of one statement, run in its own short read transaction."""
        raise NotImplementedError

    # -- events ------------------------------------------------------------------

    def load(self, run_id: str) -> list[RecordedEvent]:
        return list(self.iter_events(run_id))

    def load_after(self, run_id: str, seq: int) -> list[RecordedEvent]:
        return list(self.iter_events(run_id, after=seq))

    def iter_events(self, run_id: str, *, after: int = 0, batch: int = 1000) -> Iterator[RecordedEvent]:
        """The run's events in order, read in pages of ``batch``: memory stays bounded.

        Each page is its own short read transaction (keyset on seq); the history is
        append-only, so pages never disagree with each other.
        """
        for row in self._iter_rows(run_id, after=after, batch=batch):
            yield self._decode(row)

    def _iter_rows(self, run_id: str, *, after: int = 0, batch: int = 1000) -> Iterator[EventRow]:
        statement = self.sql.events(limit=True)
        while True:
            page = [event_row(r) for r in self._fetch(statement, (run_id, after, batch))]
            yield from page
            if len(page) < batch:
                return
            after = page[-1].seq

    def _decode(self, row: EventRow) -> RecordedEvent:
        """One stored row as a RecordedEvent; anything undecodable is StoreCorrupt."""
        return decode_event(row, self.display_url)

    # -- audit ------------------------------------------------------------------------

    def verify(self, run_id: str) -> ChainReport:
        """The run's hash chain (keyed with the audit key, if any), its projection and anchor.

        Rows are streamed, so a long run is verified in bounded memory.
        """
        found = self._fetch(self.sql.run_head, (run_id,))
        recorded_seq = found[0][0] if found else None
        head = self.anchors.read(run_id) if self.anchors is not None else None
        report = verify_chain(self._iter_rows(run_id), self.audit_key)
        if report.checked == 0 and recorded_seq is None and head is None and report.ok:
            raise RunNotFound(f"no run {run_id!r} in {self.display_url}")
        if not report.ok:
            return report
        n = report.checked

        def broken(problem: str) -> ChainReport:
            return ChainReport(False, n, n + 1, problem)

        if recorded_seq is not None and recorded_seq > n:
            return broken(
                f"events end at seq {n} but the runs projection recorded seq {recorded_seq}: events were removed"
            )
        if head is not None:
            if head.seq > n:
                return broken(
                    f"events end at seq {n} but the run's head anchor "
                    f"({self.anchors.path(run_id) if self.anchors else ''}) recorded seq "
                    f"{head.seq}: events were removed from the tail"
                )
            anchored = next((r for r in self._iter_rows(run_id, after=head.seq - 1, batch=1)), None)
            if anchored is None or anchored.hash != head.hash:
                return ChainReport(
                    False,
                    head.seq - 1,
                    head.seq,
                    f"seq {head.seq}: hash differs from the run's head anchor: the history was rewritten",
                )
        elif self.anchors is not None and self.anchors.required and n:
            return broken(
                f"the run's head anchor {self.anchors.path(run_id)} is missing: a cut tail cannot be ruled out"
            )
        return report

    def check_intact(self, run_id: str) -> None:
        """Raise StoreCorrupt unless the run's history verifies (before resume appends)."""
        report = self.verify(run_id)
        if not report.ok:
            raise StoreCorrupt(
                f"run {run_id}: history does not verify at seq {report.first_broken_seq} "
                f"({report.problem}); refusing to append to it"
            )

    def verify_blobs(self, batch: int = 200) -> list[str]:
        """Every blob's content against its sha256 and size; the problems found."""
        problems: list[str] = []
        after = ""
        while True:
            page = self._fetch(self.sql.blobs_page, (after, batch))
            for sha256, size, data in page:
                data = bytes(data)
                if hashlib.sha256(data).hexdigest() != sha256:
                    problems.append(f"blob {sha256}: content does not match its sha256")
                elif len(data) != size:
                    problems.append(f"blob {sha256}: size {size} recorded, {len(data)} held")
            if len(page) < batch:
                return problems
            after = page[-1][0]

    def audit(self, run_id: str | None = None) -> Audit:
        """``kodr audit verify``: one run (or every run) and every blob.

        Every run means every run with events, a projection row or a head anchor, so an
        emptied database still shows the runs it lost. Nothing at all to verify is
        StoreCorrupt: an audit of an empty or new database must not say ok.
        """
        if run_id is not None:
            ids = [self.resolve(run_id)]
        else:
            found = {r[0] for r in self._fetch(self.sql.event_run_ids)}
            found |= {r[0] for r in self._fetch(self.sql.projection_run_ids)}
            if self.anchors is not None:
                found |= set(self.anchors.run_ids())
            ids = sorted(found)
        if not ids:
            raise StoreCorrupt(
                f"database {self.display_url} holds no runs: nothing to verify (a new, emptied or missing database)"
            )
        reports: dict[str, ChainReport] = {}
        for rid in ids:
            try:
                reports[rid] = self.verify(rid)
            except (RunNotFound, StoreCorrupt) as exc:  # e.g. a forged head anchor
                reports[rid] = ChainReport(False, 0, 1, exc.message)
        return Audit(reports, self.verify_blobs())

    # -- blobs ---------------------------------------------------------------------

    def get_blob(self, sha256: str) -> bytes:
        found = self._fetch(self.sql.blob, (sha256,))
        if not found or found[0][0] is None:
            raise BlobNotFound(f"no blob {sha256} in {self.display_url}")
        return bytes(found[0][0])

    # -- the runs projection ------------------------------------------------------

    def runs(self, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        """Projection rows (with lease columns), newest first; a page with limit/offset."""
        params = ([limit] if limit is not None else []) + ([offset] if offset else [])
        return [run_row(r) for r in self._fetch(self.sql.runs(limit=limit is not None, offset=bool(offset)), params)]

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        found = self._fetch(self.sql.run, (run_id,))
        return run_row(found[0]) if found else None

    def run_ids(self) -> list[str]:
        """Every run id that has events (the source of truth, not the projection), sorted."""
        return [str(r[0]) for r in self._fetch(self.sql.event_run_ids)]

    def resolve(self, ref: str) -> str:
        """A run id from an exact id, a unique prefix, or ``last`` (the newest run)."""
        ref = (ref or "").strip()
        if not ref:
            raise RunNotFound("no run given")
        if ref == "last":
            newest = self.runs(limit=1)
            if not newest:
                raise RunNotFound(f"there are no runs yet in {self.display_url}")
            return str(newest[0]["run_id"])
        if self._fetch(self.sql.run_id, (ref,)):
            return ref
        matches = [str(r[0]) for r in self._fetch(self.sql.run_ids_like, (like_prefix(ref),))]
        if not matches:
            raise RunNotFound(f"no run matches {ref!r} in {self.display_url} (see `kodr runs`)")
        if len(matches) > 1:
            shown = ", ".join(matches[:5]) + (", …" if len(matches) > 5 else "")
            raise RunNotFound(f"run prefix {ref!r} is ambiguous: it matches {shown}; give more characters")
        return matches[0]


def unsupported_url(url: str) -> StoreUnavailable:
    """The refusal of a URL for a database kodr keeps no store in."""
    return StoreUnavailable(
        f"unsupported database URL {mask_url(url)}: kodr keeps its store in SQLite "
        "(sqlite:///PATH) or PostgreSQL (postgresql://...)"
    )


class DriverReader(StoreReader):
    """A StoreReader on ``sqlite3`` (a read-only file) or ``psycopg`` (autocommit), no SQLAlchemy.

    Connects on the first read and checks the schema revision then; every statement is
    its own transaction, as each read of :class:`StoreReader` expects.
    """

    def __init__(
        self,
        url: str,
        *,
        anchors: HeadAnchors | None = None,
        audit_key: bytes | None = None,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    ) -> None:
        kind = backend(url)
        if kind not in ("sqlite", "postgresql"):
            raise unsupported_url(url)
        self.url = url
        self.display_url = mask_url(url)
        self.busy_timeout_ms = busy_timeout_ms
        self.audit_key = audit_key or None
        self.anchors = anchors
        self._sqlite = kind == "sqlite"
        self._sql = sql_for("qmark" if self._sqlite else "format", kind)
        self._conn: Any = None

    def __repr__(self) -> str:
        return f"DriverReader({self.display_url})"

    @property
    def sql(self) -> Sql:
        return self._sql

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> DriverReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _fetch(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = self._connection()
        with driver_errors(self.url, self.busy_timeout_ms):
            cur = conn.execute(statement, tuple(params))
            try:
                return list(cur.fetchall())
            finally:
                cur.close()

    def _connection(self) -> Any:
        if self._conn is None:
            with driver_errors(self.url, self.busy_timeout_ms):
                conn = self._open_sqlite() if self._sqlite else self._open_postgres()
                try:
                    refusal = schema_refusal(self.display_url, self._revision(conn))
                except BaseException:
                    conn.close()
                    raise
            if refusal is not None:
                conn.close()
                raise refusal
            self._conn = conn
        return self._conn

    def _open_sqlite(self) -> Any:
        import sqlite3

        file = sqlite_file(self.url)
        if file is None:
            raise StoreUnavailable(f"database {self.display_url} is not a SQLite file: there is nothing to read")
        uri = Path(file).absolute().as_uri() + "?mode=ro"  # never creates the file, never writes it
        return sqlite3.connect(uri, uri=True, timeout=self.busy_timeout_ms / 1000, isolation_level=None)

    def _open_postgres(self) -> Any:
        import psycopg

        conninfo = "postgresql://" + self.url.split("://", 1)[1]  # the URL without SQLAlchemy's +driver
        extra: dict[str, Any] = {} if "connect_timeout" in conninfo else {"connect_timeout": DEFAULT_CONNECT_TIMEOUT_S}
        conn = psycopg.connect(conninfo, autocommit=True, **extra)
        conn.execute(f"SET lock_timeout = {int(self.busy_timeout_ms)}")
        return conn

    def _revision(self, conn: Any) -> tuple[str, ...]:
        """The schema's alembic revision(s); none when alembic never stamped it."""
        try:
            cur = conn.execute(self.sql.revision)
        except Exception as exc:
            text = f"{type(exc).__name__} {exc}".lower()
            if "alembic_version" in text and ("no such table" in text or "undefinedtable" in text):
                return ()
            raise
        return tuple(str(r[0]) for r in cur.fetchall())


def open_reading(
    url: str, *, anchors: HeadAnchors | None = None, audit_key: bytes | None = None
) -> DriverReader | None:
    """A reader of the store at ``url``, or None when it is a SQLite file that does not exist (yet).

    An in-memory SQLite URL holds no store either. Any other URL gets a DriverReader, which
    refuses one kodr keeps no store in.
    """
    if backend(url) == "sqlite":
        file = sqlite_file(url)
        if file is None or not file.is_file():
            return None
    return DriverReader(url, anchors=anchors, audit_key=audit_key)
