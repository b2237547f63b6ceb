"""Canonical bytes and the per-run hash chain.

Each event row stores its canonical JSON as text, exactly the bytes that were
hashed, and ``hash = sha256(prev_hash || canonical)``. A verifier therefore needs
nothing but the rows to prove a run's history was not edited, reordered or cut
in the middle (a cut at the tail needs an outside anchor: see :mod:`store.anchors`).

With an audit key (``KODR_AUDIT_KEY``) the link is ``HMAC-SHA256(key, prev_hash ||
canonical)``: whoever rewrites rows without the key cannot recompute valid hashes.
A verifier with a key accepts only keyed links, so a run written without the key
(or with another one) fails verification once a key is set.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64

#: The body's keys; the first five are also stored as columns and must agree.
BODY_KEYS = frozenset({"run_id", "seq", "type", "schema_version", "recorded_at", "data"})
_COLUMNS = ("run_id", "seq", "type", "schema_version", "recorded_at")


#: One encoder for every call: ``json.dumps`` with these options builds a new one each time.
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def canonical(body: Mapping[str, Any]) -> bytes:
    """The one serialisation that is hashed and stored (sorted keys, no spaces, UTF-8)."""
    return _ENCODE(body).encode("utf-8")


def canonical_bytes(run_id: str, seq: int, type_: str, schema_version: int, recorded_at: str, data: Any) -> bytes:
    return canonical(
        {
            "run_id": run_id,
            "seq": seq,
            "type": type_,
            "schema_version": schema_version,
            "recorded_at": recorded_at,
            "data": data,
        }
    )


def chain_hash(prev_hash: str, body: bytes, key: bytes | None = None) -> str:
    data = prev_hash.encode("ascii") + body
    if key:
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """``checked`` counts the events that verified before the first problem (all, when ok)."""

    ok: bool
    checked: int
    first_broken_seq: int | None = None
    problem: str | None = None
    last_hash: str | None = None  # the hash of the last event that verified


def _get(row: Any, key: str) -> Any:
    if isinstance(row, Mapping):
        return row[key]
    mapping = getattr(row, "_mapping", None)
    return mapping[key] if mapping is not None else getattr(row, key)


def _check_row(row: Any, position: int, prev: str, run_id: Any, key: bytes | None) -> str | None:
    """The first thing wrong with one row, or None."""
    seq = _get(row, "seq")
    if seq != position:
        return f"found seq {seq} where seq {position} was expected (a gap or a reorder)"
    if _get(row, "run_id") != run_id:
        return f"row belongs to run {_get(row, 'run_id')!r}, not {run_id!r}"
    if _get(row, "prev_hash") != prev:
        return "prev_hash does not link to the previous event's hash"
    text = _get(row, "body")
    body_bytes = text.encode("utf-8")
    if not hmac.compare_digest(chain_hash(prev, body_bytes, key), str(_get(row, "hash"))):
        if key:
            return (
                "hash does not match HMAC(KODR_AUDIT_KEY, prev_hash || body): the body or hash "
                "was edited, or the run was written without this key"
            )
        return (
            "hash does not match sha256(prev_hash || body): the body or hash was edited "
            "(or the run was written with KODR_AUDIT_KEY set: set it to verify)"
        )
    try:
        body = json.loads(text)
    except ValueError as exc:
        return f"body is not JSON ({exc})"
    if not isinstance(body, dict) or set(body) != BODY_KEYS:
        return f"body must have exactly the keys {sorted(BODY_KEYS)}"
    for col in _COLUMNS:
        if body[col] != _get(row, col):
            return f"column {col}={_get(row, col)!r} disagrees with the body ({body[col]!r})"
    if canonical(body) != body_bytes:
        return "body is not in canonical form"
    return None


def verify_chain(rows: Iterable[Any], key: bytes | None = None) -> ChainReport:
    """Check one run's event rows (ordered by seq): gapless from 1, linked, hashes, columns.

    Rows may be mappings, SQLAlchemy rows or objects with the events-table columns.
    """
    prev, run_id, checked = GENESIS, None, 0
    for position, row in enumerate(rows, start=1):
        if run_id is None:
            run_id = _get(row, "run_id")
        problem = _check_row(row, position, prev, run_id, key)
        if problem is not None:
            return ChainReport(False, checked, position, f"seq {position}: {problem}")
        prev, checked = _get(row, "hash"), position
    return ChainReport(True, checked, last_hash=prev if checked else None)
