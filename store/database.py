"""Where the store lives, and getting its schema to the head revision.

The default is a SQLite file inside the workspace (``.kodr/kodr.db``), migrated
automatically on first use; ``KODR_DATABASE_URL`` points several workers at one
PostgreSQL instead, whose schema is only changed by ``kodr db upgrade`` (an
operator action), so :func:`open_store` refuses a PostgreSQL schema that is
behind instead of migrating it under running workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kodr_core.errors import StoreUnavailable
from store.engine import DEFAULT_BUSY_TIMEOUT_MS, WRITE, make_engine
from store.errors import mask_url, translated
from store.event_store import EventStore
from store.location import (  # where the store is, found without SQLAlchemy: re-exported here
    ENV_AUDIT_KEY,
    ENV_URL,
    KODR_DIR,
    audit_key,
    database_url,
    default_anchors,
    default_url,
    ensure_kodr_dir,
    normalise_url,
)
from store.queries import HEAD_REVISION, REVISIONS, Sql, schema_refusal
from store.reader import unsupported_url

if TYPE_CHECKING:  # alembic is imported when a schema is checked or migrated: read-only commands start faster
    from alembic.config import Config
    from alembic.script import ScriptDirectory

SUPPORTED = ("sqlite", "postgresql")

__all__ = [
    "ENV_AUDIT_KEY",
    "ENV_URL",
    "KODR_DIR",
    "audit_key",
    "database_url",
    "default_anchors",
    "default_url",
    "downgrade",
    "engine_for",
    "ensure_kodr_dir",
    "head_revision",
    "normalise_url",
    "open_store",
    "status",
    "upgrade",
]


def alembic_config() -> Config:
    """An Alembic config built in code: no alembic.ini is needed at run time."""
    from alembic.config import Config

    import migrations

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.set_main_option("path_separator", "os")
    return cfg


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The code's head revision (:data:`store.queries.HEAD_REVISION`, which a unit test holds to alembic's)."""
    return HEAD_REVISION


def _current(conn: sa.Connection) -> tuple[str, ...]:
    """The schema's revisions, read as alembic stores them: alembic is imported only to migrate."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return ()
    return tuple(str(r[0]) for r in conn.exec_driver_sql(Sql.revision))


def _run_alembic(engine: sa.Engine, action: str, revision: str) -> None:
    cfg = alembic_config()
    with engine.connect() as conn:
        conn.execution_options(**{WRITE: True})  # SQLite: hold the write lock throughout
        with conn.begin():
            if conn.dialect.name == "postgresql":  # one migrator at a time
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('kodr-migrations'))")
            cfg.attributes["connection"] = conn
            from alembic import command

            getattr(command, action)(cfg, revision)


def _is_sqlite(url: sa.URL) -> bool:
    return url.get_backend_name() == "sqlite"


def _prepare_sqlite(url: sa.URL) -> None:
    if url.database and url.database != ":memory:" and "mode=memory" not in str(url):
        try:
            ensure_kodr_dir(Path(url.database).expanduser().resolve().parent)
        except OSError as exc:
            raise StoreUnavailable(
                f"database {mask_url(url)} is unavailable: cannot create its directory ({exc})"
            ) from exc


def engine_for(url: str, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> sa.Engine:
    """A store engine for ``url``; for SQLite, the file's directory is created first."""
    with translated(url):
        parsed = sa.make_url(normalise_url(url))
        if parsed.get_backend_name() not in SUPPORTED:
            raise unsupported_url(parsed.render_as_string(hide_password=False))
        if _is_sqlite(parsed):
            _prepare_sqlite(parsed)
        return make_engine(parsed, busy_timeout_ms)


def _url_of(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def upgrade(url: str, revision: str = "head", *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> None:
    """Run the migrations up to ``revision`` (``kodr db upgrade``)."""
    engine = engine_for(url, busy_timeout_ms)
    try:
        with translated(_url_of(engine), busy_timeout_ms):
            _run_alembic(engine, "upgrade", revision)
    finally:
        engine.dispose()


def downgrade(url: str, revision: str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> None:
    engine = engine_for(url, busy_timeout_ms)
    try:
        with translated(_url_of(engine), busy_timeout_ms):
            _run_alembic(engine, "downgrade", revision)
    finally:
        engine.dispose()


def status(url: str) -> dict[str, Any]:
    """Where the schema is against the code's head, for ``kodr db status``."""
    engine = engine_for(url)
    try:
        with translated(_url_of(engine)), engine.connect() as conn:
            current = _current(conn)
    finally:
        engine.dispose()
    head = head_revision()
    return {
        "url": mask_url(engine.url),
        "current": list(current),
        "head": head,
        "up_to_date": current == (head,),
    }


def open_store(
    url: str,
    *,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    auto_migrate: bool | None = None,
    anchor_dir: str | Path | None = None,
) -> EventStore:
    """An EventStore on ``url`` whose schema is at head.

    ``auto_migrate`` defaults to True for SQLite (a fresh or older file is migrated)
    and False for PostgreSQL (a schema behind head raises StoreUnavailable).
    ``anchor_dir`` is where run heads are kept outside the database (see
    :func:`default_anchors`); ``KODR_AUDIT_KEY`` keys the chain.
    """
    engine = engine_for(url, busy_timeout_ms)
    display = mask_url(engine.url)
    if auto_migrate is None:
        auto_migrate = _is_sqlite(engine.url)
    head = head_revision()
    try:
        with translated(_url_of(engine), busy_timeout_ms):
            with engine.connect() as conn:
                current = _current(conn)
            if current != (head,) and auto_migrate and (not current or set(current) <= set(REVISIONS)):
                _run_alembic(engine, "upgrade", "head")
                with engine.connect() as conn:
                    current = _current(conn)
    except BaseException:
        engine.dispose()
        raise
    refusal = schema_refusal(display, current)  # the read path's words (store.reader), from the same code
    if refusal is not None:
        engine.dispose()
        raise refusal
    return EventStore(
        engine,
        busy_timeout_ms=busy_timeout_ms,
        audit_key=audit_key(),
        anchors=default_anchors(_url_of(engine), anchor_dir),
    )
