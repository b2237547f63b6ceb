"""Turning driver errors into kodr errors a user can act on.

A locked SQLite file, a PostgreSQL server that is down, or a schema that was
never migrated must reach the user as :class:`StoreUnavailable` naming the
database (password masked), never as a driver traceback. The same words whether
the error came through SQLAlchemy (:func:`translated`) or straight from
``sqlite3``/``psycopg`` on the read path (:func:`driver_errors`). This module
imports no database library.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import unquote

from kodr_core.errors import KodrError, StoreCorrupt, StoreUnavailable

#: A database URL's userinfo, as SQLAlchemy's ``make_url`` reads it.
_URL = re.compile(r"(?P<head>[\w+]+://)(?:(?P<user>[^:/]*)(?::(?P<password>[^@]*))?@)?(?P<rest>.*)", re.S)


class BlobNotFound(KodrError, KeyError):
    """No blob with that sha256; a KeyError so mapping-style callers can catch it."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


def mask_url(url: object) -> str:
    """The URL for messages and logs: the password replaced by ``***``."""
    text = url.render_as_string(hide_password=False) if hasattr(url, "render_as_string") else str(url)
    m = _URL.fullmatch(text)
    if m is None or m["password"] is None:  # not parseable: mask anything that looks like user:password@
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", text)
    return f"{m['head']}{m['user']}:***@{m['rest']}"


def _password(url: str) -> str | None:
    m = _URL.fullmatch(url)
    return unquote(m["password"]) if m is not None and m["password"] else None


_NOT_MIGRATED = ("no such table", "no such column", "undefinedtable", "undefinedcolumn")
_CORRUPT = ("file is not a database", "malformed", "disk image", "not a database")
_LOCKED = ("database is locked", "database is busy", "lock timeout", "locknotavailable")
_DRIVERS = ("sqlite3", "psycopg")


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def driver_of(exc: BaseException) -> str | None:
    """The driver module (``sqlite3`` or ``psycopg``) an exception class comes from, or None."""
    module = type(exc).__module__.split(".")[0]
    return module if module in _DRIVERS else None


def _dbapi_class_named(exc: BaseException | None, *names: str) -> bool:
    """Whether a DBAPI error is one of PEP 249's classes (by name: sqlite3 and psycopg share them)."""
    return exc is not None and any(c.__name__ in names for c in type(exc).__mro__)


def unavailable(
    exc: BaseException, url: str, busy_timeout_ms: int | None = None
) -> StoreUnavailable | None:  # a StoreCorrupt for a file that is not a database
    """The StoreUnavailable that ``exc`` means, or None if it is not about availability.

    ``exc`` is SQLAlchemy's wrapper of a driver error, or the driver's own error.
    """
    masked = mask_url(url)
    orig = getattr(exc, "orig", None) or (exc if driver_of(exc) is not None else None)
    detail = _first_line(exc)
    password = _password(url)
    if password:
        detail = detail.replace(password, "***")
    probe = f"{type(orig).__name__} {detail}".lower()
    if any(p in probe for p in _NOT_MIGRATED):
        return StoreUnavailable(f"database {masked} is not migrated ({detail}): run `kodr db upgrade`")
    if any(p in probe for p in _CORRUPT):
        return StoreCorrupt(f"database {masked} is corrupt: {detail}")
    if any(p in probe for p in _LOCKED):
        waited = f" for more than {busy_timeout_ms} ms" if busy_timeout_ms is not None else ""
        return StoreUnavailable(
            f"database {masked} is locked: another process held it{waited} ({detail}); retry when it is done"
        )
    if _dbapi_class_named(orig, "OperationalError", "InterfaceError") or getattr(exc, "connection_invalidated", False):
        return StoreUnavailable(f"database {masked} is unavailable: {detail}")
    if type(exc).__name__ in ("ArgumentError", "NoSuchModuleError") and type(exc).__module__.startswith("sqlalchemy"):
        return StoreUnavailable(f"invalid database URL {masked}: {detail}")
    return None


@contextmanager
def translated(url: str, busy_timeout_ms: int | None = None) -> Iterator[None]:
    """Re-raise availability problems as StoreUnavailable; let everything else through."""
    from sqlalchemy import exc as sa_exc  # imported by whoever runs SQLAlchemy: costs nothing more

    try:
        yield
    except KodrError:
        raise
    except (sa_exc.DBAPIError, sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as exc:
        err = unavailable(exc, url, busy_timeout_ms)
        if err is None:
            raise
        raise err from exc


@contextmanager
def driver_errors(url: str, busy_timeout_ms: int | None = None) -> Iterator[None]:
    """As :func:`translated`, for ``sqlite3`` and ``psycopg`` used directly (the read path)."""
    try:
        yield
    except KodrError:
        raise
    except Exception as exc:
        if driver_of(exc) is None:
            raise
        err = unavailable(exc, url, busy_timeout_ms)
        if err is None:
            raise
        raise err from exc
