"""Workspaces that arrive as ``.tar.gz`` uploads, checked as hard as a model's writes.

Every member name passes :func:`kodr_core.envelope.check_relative_path` (no absolute
paths, no ``..``, nothing into ``.git/`` or ``.kodr/``), links are refused outright
(a workspace snapshot holds file contents, never links), so are devices and FIFOs,
and the archive is bounded before a byte is written: compressed size, member count,
each file, and the total unpacked size. Extraction then goes through tarfile's
``data`` filter as a second line. What is refused names the member and why.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

from kodr_core.envelope import check_relative_path
from kodr_core.errors import RefusedInput

MAX_ARCHIVE_BYTES = 64 << 20
MAX_MEMBERS = 20_000
MAX_FILE_BYTES = 16 << 20
MAX_TOTAL_BYTES = 256 << 20
_SKIPPED_DIRS = ("node_modules/", ".venv/", "__pycache__/", ".pytest_cache/")


class UploadRefused(RefusedInput):
    """The archive is refused; ``field`` is the request part it came in."""

    def __init__(self, message: str, field: str = "workspace") -> None:
        super().__init__(message)
        self.field = field


def _members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    chosen: list[tarfile.TarInfo] = []
    total = 0
    for i, m in enumerate(tar):
        if i >= MAX_MEMBERS:
            raise UploadRefused(f"archive has more than {MAX_MEMBERS} members")
        name = m.name.removeprefix("./")
        if name in ("", "."):
            continue
        if m.issym() or m.islnk():
            raise UploadRefused(f"archive member {m.name!r} is a link (to {m.linkname!r}); links are refused")
        if not (m.isfile() or m.isdir()):
            raise UploadRefused(f"archive member {m.name!r} is not a regular file or directory")
        try:
            rel = check_relative_path(name.rstrip("/"))
        except RefusedInput as exc:
            raise UploadRefused(f"archive member {m.name!r}: {exc.message}") from exc
        if any((rel + "/").startswith(d) or f"/{d}" in rel + "/" for d in _SKIPPED_DIRS):
            continue  # installed dependencies and caches are never part of a snapshot
        if m.isfile():
            if m.size > MAX_FILE_BYTES:
                raise UploadRefused(f"archive member {m.name!r} is {m.size} bytes; the cap is {MAX_FILE_BYTES}")
            total += m.size
            if total > MAX_TOTAL_BYTES:
                raise UploadRefused(f"archive unpacks to more than {MAX_TOTAL_BYTES} bytes")
        m.name = rel
        chosen.append(m)
    return chosen


def extract(data: bytes, target: Path) -> int:
    """Unpack a checked ``.tar.gz`` into ``target``; returns the number of files written."""
    if len(data) > MAX_ARCHIVE_BYTES:
        raise UploadRefused(f"archive is {len(data)} bytes; the cap is {MAX_ARCHIVE_BYTES}")
    if not data.startswith(b"\x1f\x8b"):
        raise UploadRefused("workspace is not a gzip-compressed tar archive (.tar.gz)")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = _members(tar)
            target.mkdir(parents=True, exist_ok=True)
            tar.extractall(target, members=members, filter="data")
    except UploadRefused:
        raise
    except (tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError, OSError) as exc:
        raise UploadRefused(f"workspace archive is unreadable: {exc}") from exc
    return sum(1 for m in members if m.isfile())


def pack(root: Path, files: list[str], read: Callable[[str], bytes | None]) -> bytes:
    """A ``.tar.gz`` of ``files`` (relative paths) read through ``read``: for downloads and submits."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for rel in sorted(files):
            data = read(rel)
            if data is None:
                continue
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
