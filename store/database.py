"""Where the store lives, and getting its schema to the head revision.

The default is a SQLite file inside the workspace (``.kodr/kodr.db``), migrated
automatically on first use; ``KODR_DATABASE_URL`` points several workers at one
PostgreSQL instead, whose schema is only changed by ``kodr db upgrade`` (an
operator action), so :func:`open_store` refuses a PostgreSQL schema that is
behind instead of migrating it under running workers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kodr_core.errors import StoreUnavailable
from store.anchors import HeadAnchors
from store.engine import DEFAULT_BUSY_TIMEOUT_MS, WRITE, make_engine
from store.errors import mask_url, translated
from store.event_store import EventStore

if TYPE_CHECKING:  # alembic is imported when a schema is checked or migrated: read-only commands start faster
    from alembic.config import Config
    from alembic.script import ScriptDirectory

ENV_URL = "KODR_DATABASE_URL"
ENV_AUDIT_KEY = "KODR_AUDIT_KEY"
KODR_DIR = ".kodr"
SUPPORTED = ("sqlite", "postgresql")


def default_url(workspace: str | Path) -> str:
    path = Path(workspace).expanduser().resolve() / KODR_DIR / "kodr.db"
    return f"sqlite:///{path}"


def database_url(workspace: str | Path) -> str:
    """``KODR_DATABASE_URL`` if set, else the workspace's SQLite file."""
    env = os.environ.get(ENV_URL, "").strip()
    return normalise_url(env) if env else default_url(workspace)


def normalise_url(url: str) -> str:
    """Plain ``postgres://``/``postgresql://`` URLs get the psycopg 3 driver."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def ensure_kodr_dir(path: str | Path) -> Path:
    """Create a directory; a ``.kodr`` one gets a ``.gitignore`` of ``*``.

    So the store's directory never lands in the user's commits, whoever creates it first.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    ignore = path / ".gitignore"
    if path.name == KODR_DIR and not ignore.exists():
        ignore.write_text("*\n", encoding="utf-8")
    return path


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


def head_revision() -> str | None:
    return _scripts().get_current_head()


def _current(conn: sa.Connection) -> tuple[str, ...]:
    from alembic.runtime.migration import MigrationContext

    return tuple(MigrationContext.configure(conn).get_current_heads())


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
            raise StoreUnavailable(
                f"unsupported database URL {mask_url(parsed)}: kodr keeps its store in SQLite "
                "(sqlite:///PATH) or PostgreSQL (postgresql://...)"
            )
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


def audit_key() -> bytes | None:
    """``KODR_AUDIT_KEY`` as bytes: when set, the hash chain and head anchors are HMACs."""
    key = os.environ.get(ENV_AUDIT_KEY, "")
    return key.encode("utf-8") if key else None


def default_anchors(url: sa.URL, anchor_dir: str | Path | None) -> HeadAnchors | None:
    """Where run heads are anchored: ``anchor_dir``, else ``runs/`` beside a SQLite file.

    Beside the default SQLite file (``.kodr/kodr.db``) that is ``.kodr/runs/``, the
    artifacts directories; there every run must have an anchor. A PostgreSQL store
    anchors only when given a directory, and runs of other workspaces have none there.
    """
    key = audit_key()
    if anchor_dir is not None:
        return HeadAnchors(anchor_dir, key=key, required=_is_sqlite(url))
    if _is_sqlite(url) and url.database and url.database != ":memory:" and ("mode=memory" not in str(url)):
        return HeadAnchors(Path(url.database).expanduser().resolve().parent / "runs", key=key)
    return None


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
            if current != (head,) and auto_migrate and (not current or set(current) <= _known()):
                _run_alembic(engine, "upgrade", "head")
                with engine.connect() as conn:
                    current = _current(conn)
    except BaseException:
        engine.dispose()
        raise
    if current != (head,):
        engine.dispose()
        if current and not set(current) <= _known():
            raise StoreUnavailable(
                f"database {display} is at revision {', '.join(current)}, which this kodr does "
                "not know: it was migrated by a newer kodr; upgrade kodr"
            )
        at = ", ".join(current) or "no revision"
        raise StoreUnavailable(f"database {display} is not migrated (at {at}, head is {head}): run `kodr db upgrade`")
    return EventStore(
        engine,
        busy_timeout_ms=busy_timeout_ms,
        audit_key=audit_key(),
        anchors=default_anchors(engine.url, anchor_dir),
    )


def _known() -> set[str]:
    return {s.revision for s in _scripts().walk_revisions()}
