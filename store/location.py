"""Where a workspace's store is: its URL, its SQLite file, its head anchors and its audit key.

Plain string work with no database library, so that a read-only command can find the store
(and find that there is none) without importing SQLAlchemy. :mod:`store.database` re-exports
these names.
"""

from __future__ import annotations

import os
from pathlib import Path

from store.anchors import HeadAnchors

ENV_URL = "KODR_DATABASE_URL"
ENV_AUDIT_KEY = "KODR_AUDIT_KEY"
KODR_DIR = ".kodr"


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


def backend(url: str) -> str:
    """The URL's database name without its driver: ``sqlite``, ``postgresql``, ``mysql``…"""
    return url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""


def sqlite_file(url: str) -> Path | None:
    """The file behind a SQLite URL (None for other databases and in-memory ones)."""
    if backend(url) != "sqlite" or "mode=memory" in url:
        return None
    path = url.split(":///", 1)[1].split("?", 1)[0] if ":///" in url else ""
    if not path or path == ":memory:":
        return None
    return Path(path).expanduser()


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


def audit_key() -> bytes | None:
    """``KODR_AUDIT_KEY`` as bytes: when set, the hash chain and head anchors are HMACs."""
    key = os.environ.get(ENV_AUDIT_KEY, "")
    return key.encode("utf-8") if key else None


def default_anchors(url: str, anchor_dir: str | Path | None) -> HeadAnchors | None:
    """Where run heads are anchored: ``anchor_dir``, else ``runs/`` beside a SQLite file.

    Beside the default SQLite file (``.kodr/kodr.db``) that is ``.kodr/runs/``, the
    artifacts directories; there every run must have an anchor. A PostgreSQL store
    anchors only when given a directory, and runs of other workspaces have none there.
    """
    key = audit_key()
    if anchor_dir is not None:
        return HeadAnchors(anchor_dir, key=key, required=backend(url) == "sqlite")
    file = sqlite_file(url)
    if file is not None:
        return HeadAnchors(file.resolve().parent / "runs", key=key)
    return None
