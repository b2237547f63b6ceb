"""Turning driver errors into kodr errors a user can act on.

A locked SQLite file, a PostgreSQL server that is down, or a schema that was
never migrated must reach the user as :class:`StoreUnavailable` naming the
database (password masked), never as a driver traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from kodr_core.errors import KodrError, StoreCorrupt, StoreUnavailable


class BlobNotFound(KodrError, KeyError):
    """No blob with that sha256; a KeyError so mapping-style callers can catch it."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


def mask_url(url: object) -> str:
    """The URL for messages and logs: the password replaced by ``***``."""
    try:
        return sa.make_url(str(url)).render_as_string(hide_password=True)
    except Exception:  # not parseable: mask anything that looks like user:password@
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))


_NOT_MIGRATED = ("no such table", "no such column", "undefinedtable", "undefinedcolumn")
_CORRUPT = ("file is not a database", "malformed", "disk image", "not a database")
_LOCKED = ("database is locked", "database is busy", "lock timeout", "locknotavailable")


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def unavailable(
    exc: BaseException, url: str, busy_timeout_ms: int | None = None
) -> StoreUnavailable | None:  # a StoreCorrupt for a file that is not a database
    """The StoreUnavailable that ``exc`` means, or None if it is not about availability."""
    masked = mask_url(url)
    orig = getattr(exc, "orig", None)
    detail = _first_line(exc)
    try:
        password = sa.make_url(url).password
    except Exception:
        password = None
    if password:
        detail = detail.replace(str(password), "***")
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
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)) or (
        isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
    ):
        return StoreUnavailable(f"database {masked} is unavailable: {detail}")
    if isinstance(exc, (sa_exc.ArgumentError, sa_exc.NoSuchModuleError)):
        return StoreUnavailable(f"invalid database URL {masked}: {detail}")
    return None


@contextmanager
def translated(url: str, busy_timeout_ms: int | None = None) -> Iterator[None]:
    """Re-raise availability problems as StoreUnavailable; let everything else through."""
    try:
        yield
    except KodrError:
        raise
    except (sa_exc.DBAPIError, sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as exc:
        err = unavailable(exc, url, busy_timeout_ms)
        if err is None:
            raise
        raise err from exc
