"""The store's read queries: each one's SQL text and the decoding of its rows, defined once.

Both readers run these statements on their driver's cursor: :class:`store.event_store.EventStore`
(through its SQLAlchemy connection) and :class:`store.reader.DriverReader` (on ``sqlite3`` or
``psycopg`` directly, so that a read-only command imports neither SQLAlchemy nor alembic). This
module imports nothing heavy: the pydantic event models are imported when the first event is
decoded, not to list runs.

Also here: the schema revisions this code reads, so a reader can refuse a database that is behind
or ahead of them without alembic (``tests/unit/test_store_queries.py`` holds :data:`REVISIONS` to
the migrations alembic knows).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

from kodr_core.errors import StoreCorrupt, StoreUnavailable

if TYPE_CHECKING:
    from kodr_core.events import RecordedEvent

#: Every migration revision, oldest first; the last is the head this code reads and writes.
REVISIONS: tuple[str, ...] = ("0001", "0002", "0003")
HEAD_REVISION = REVISIONS[-1]

#: The ``events`` columns a reader selects (all but the surrogate ``id``), in :class:`EventRow`'s order.
EVENT_COLUMNS: tuple[str, ...] = (
    "run_id",
    "seq",
    "type",
    "schema_version",
    "recorded_at",
    "body",
    "prev_hash",
    "hash",
    "writer",
    "lease_epoch",
)

#: The ``runs`` columns, in the table's order: a run's row as :meth:`runs` and ``get_run`` return it.
RUN_COLUMNS: tuple[str, ...] = (
    "run_id",
    "state",
    "heal_turn",
    "outcome",
    "reason",
    "last_seq",
    "task",
    "workspace",
    "mode",
    "created_at",
    "updated_at",
    "last_hash",
    "lease_owner",
    "lease_epoch",
    "lease_expires_at",
)


class EventRow(NamedTuple):
    """One ``events`` row as selected by :attr:`Sql.events`; what :func:`store.hashchain.verify_chain` checks."""

    run_id: str
    seq: int
    type: str
    schema_version: int
    recorded_at: str
    body: str
    prev_hash: str
    hash: str
    writer: str | None
    lease_epoch: int | None


def event_row(row: Any) -> EventRow:
    return EventRow(*row)


def run_row(row: Any) -> dict[str, Any]:
    """A ``runs`` row selected with :data:`RUN_COLUMNS` as a dict keyed by column."""
    return dict(zip(RUN_COLUMNS, row, strict=True))


def decode_event(row: EventRow, where: str) -> RecordedEvent:
    """One stored row as a RecordedEvent; anything undecodable is StoreCorrupt naming run, seq and ``where``."""
    from kodr_core.events import RecordedEvent, decode  # the pydantic models: only when an event is read

    try:
        data = json.loads(row.body)["data"]
        event = decode(row.type, row.schema_version, data)
    except StoreCorrupt as exc:
        raise StoreCorrupt(f"run {row.run_id} seq {row.seq} in {where}: {exc.message}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StoreCorrupt(
            f"run {row.run_id} seq {row.seq} in {where}: cannot decode its {row.type} event ({first})"
        ) from exc
    return RecordedEvent(row.run_id, row.seq, event, row.recorded_at, row.prev_hash, row.hash)


def like_prefix(ref: str) -> str:
    """The LIKE pattern (escape ``\\``) matching ids that start with ``ref``."""
    return ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def schema_refusal(display: str, current: tuple[str, ...]) -> StoreUnavailable | None:
    """Why a database at revisions ``current`` cannot be used by this code, or None when it is at head."""
    if current == (HEAD_REVISION,):
        return None
    if current and not set(current) <= set(REVISIONS):
        return StoreUnavailable(
            f"database {display} is at revision {', '.join(current)}, which this kodr does "
            "not know: it was migrated by a newer kodr; upgrade kodr"
        )
    at = ", ".join(current) or "no revision"
    return StoreUnavailable(
        f"database {display} is not migrated (at {at}, head is {HEAD_REVISION}): run `kodr db upgrade`"
    )


@dataclass(frozen=True)
class Sql:
    """The read statements for one driver: ``mark`` is its positional parameter (``?`` or ``%s``)."""

    mark: str
    sqlite: bool

    def events(self, *, upto: bool = False, limit: bool = False) -> str:
        """A run's events after a seq (params: run_id, after[, upto][, limit]), in order."""
        m = self.mark
        return (
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE run_id = {m} AND seq > {m}"
            + (f" AND seq <= {m}" if upto else "")
            + " ORDER BY seq"
            + (f" LIMIT {m}" if limit else "")
        )

    def runs(self, *, limit: bool = False, offset: bool = False) -> str:
        """Projection rows newest first (params: [limit][, offset])."""
        m = self.mark
        page = f" LIMIT {m}" if limit else (" LIMIT -1" if offset and self.sqlite else "")
        return (
            f"SELECT {', '.join(RUN_COLUMNS)} FROM runs ORDER BY created_at DESC NULLS LAST, run_id DESC"
            + page
            + (f" OFFSET {m}" if offset else "")
        )

    @property
    def run(self) -> str:
        return f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE run_id = {self.mark}"

    @property
    def run_head(self) -> str:
        return f"SELECT last_seq, last_hash FROM runs WHERE run_id = {self.mark}"

    @property
    def run_id(self) -> str:
        return f"SELECT run_id FROM runs WHERE run_id = {self.mark}"

    @property
    def run_ids_like(self) -> str:
        """At most 6 run ids matching a :func:`like_prefix` pattern, sorted."""
        return f"SELECT run_id FROM runs WHERE run_id LIKE {self.mark} ESCAPE '\\' ORDER BY run_id LIMIT 6"

    #: Every run id that has events (the source of truth), sorted.
    event_run_ids = "SELECT DISTINCT run_id FROM events ORDER BY run_id"
    #: Every run id with a projection row.
    projection_run_ids = "SELECT run_id FROM runs"
    #: The schema's alembic revision(s).
    revision = "SELECT version_num FROM alembic_version"

    @property
    def blob(self) -> str:
        return f"SELECT data FROM blobs WHERE sha256 = {self.mark}"

    @property
    def blobs_page(self) -> str:
        """Blobs after a sha256, in sha256 order (params: after, limit)."""
        return f"SELECT sha256, size, data FROM blobs WHERE sha256 > {self.mark} ORDER BY sha256 LIMIT {self.mark}"


@cache
def sql_for(paramstyle: str, dialect: str) -> Sql:
    """The statements for a DBAPI ``paramstyle`` and a dialect name (``sqlite`` or ``postgresql``)."""
    return Sql("?" if paramstyle == "qmark" else "%s", dialect == "sqlite")
