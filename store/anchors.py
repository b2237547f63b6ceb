"""Run heads kept outside the database: what lets an audit see a cut tail.

A hash chain proves its middle, never its end: delete a run's last events (and
lower ``runs.last_seq`` to match) and what remains is a valid chain. So after every
append commits, the store also writes the run's head, its last seq and hash, to
``<dir>/<run_id>/head.json`` outside the database (by default the run's artifacts
directory, ``.kodr/runs/<run_id>/``). ``verify`` then requires the events to reach
the anchored seq with the anchored hash. Someone who edits the database without
also editing this file is caught; with ``KODR_AUDIT_KEY`` the file carries an HMAC,
so it cannot be moved forward or pointed at a rewritten history without the key.

What it cannot catch: the file deleted (reported as a missing anchor when the
store requires one) or replaced by an older head of the same run together with
the matching tail cut. The file is written after the commit, in place and not fsynced, so
a crash can leave it one append behind; events beyond the anchor are accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from kodr_core.errors import StoreCorrupt

FILE = "head.json"
_SIZE = 512  # a head record is < 300 bytes; padded so that each write covers the last
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_PATHS = 1024  # run paths remembered per HeadAnchors: a process appends to few runs at a time


@dataclass(frozen=True)
class Head:
    run_id: str
    seq: int
    hash: str


def _mac(key: bytes, run_id: str, seq: int, digest: str) -> str:
    return hmac.new(key, f"{run_id}\n{seq}\n{digest}".encode(), hashlib.sha256).hexdigest()


class HeadAnchors:
    """``head.json`` files under ``root``; ``required`` says every run must have one."""

    def __init__(self, root: str | os.PathLike[str], *, key: bytes | None = None, required: bool = True) -> None:
        self.root = Path(root)
        self.key = key
        self.required = required
        # run id -> its head file as a string, and the id as JSON: an append computes neither
        self._paths: dict[str, tuple[str, str]] = {}

    def path(self, run_id: str) -> Path:
        """The run's directory name is its id when that is a safe name, else its sha256."""
        return Path(self._path(run_id)[0])

    def _path(self, run_id: str) -> tuple[str, str]:
        found = self._paths.get(run_id)
        if found is None:
            name = (
                run_id
                if _SAFE.fullmatch(run_id) and ".." not in run_id
                else ("id-" + hashlib.sha256(run_id.encode()).hexdigest()[:32])
            )
            found = (os.path.join(self.root, name, FILE), json.dumps(run_id))
            if len(self._paths) >= _PATHS:
                self._paths.clear()
            self._paths[run_id] = found
        return found

    def write(self, run_id: str, seq: int, digest: str) -> None:
        """Overwrite the head in place: one open and one write, no rename.

        A rename costs ~2 ms on some filesystems, more than the rest of an append; the
        record is padded to a fixed size so a shorter head never leaves a stale tail. The
        file is not kept open: noticing it deleted or replaced would take a stat, and on
        Linux 6.13+ a stat of a file that is then written makes the next commit's fsync
        ~60 µs slower (``bench/anchor_write.py``).
        """
        path, run_json = self._path(run_id)
        # json.dumps(sort_keys=True) of {hash, hmac?, run_id, seq}, written out (the ids as JSON)
        digest_json = f'"{digest}"' if digest.isascii() and digest.isalnum() else json.dumps(digest)
        mac = f'"hmac": "{_mac(self.key, run_id, seq, digest)}", ' if self.key else ""
        text = f'{{"hash": {digest_json}, {mac}"run_id": {run_json}, "seq": {int(seq)}}}\n'
        data = text.ljust(_SIZE).encode("utf-8")
        try:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.pwrite(fd, data, 0)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreCorrupt(f"cannot write the head anchor {path}: {exc}") from exc

    def read(self, run_id: str) -> Head | None:
        """The anchored head, None when there is no file; StoreCorrupt when it is not valid."""
        path = self.path(run_id)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreCorrupt(f"cannot read the head anchor {path}: {exc}") from exc
        try:
            body = json.loads(text)
            head = Head(str(body["run_id"]), int(body["seq"]), str(body["hash"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreCorrupt(f"head anchor {path} is not valid: {exc}") from exc
        if head.run_id != run_id:
            raise StoreCorrupt(f"head anchor {path} names run {head.run_id!r}, not {run_id!r}")
        if self.key and not hmac.compare_digest(
            str(body.get("hmac", "")), _mac(self.key, head.run_id, head.seq, head.hash)
        ):
            raise StoreCorrupt(f"head anchor {path} has no valid HMAC for KODR_AUDIT_KEY")
        return head

    def run_ids(self) -> list[str]:
        """The runs anchored here: an emptied database still leaves these behind."""
        found = []
        for path in sorted(self.root.glob(f"*/{FILE}")):
            try:
                found.append(str(json.loads(path.read_text(encoding="utf-8"))["run_id"]))
            except (OSError, ValueError, KeyError, TypeError):
                found.append(path.parent.name)
        return found
