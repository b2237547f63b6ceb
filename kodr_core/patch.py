"""Unified diffs between two manifests (path -> sha256), contents read from blobs."""

from __future__ import annotations

import difflib
from typing import Callable, Iterable

BlobReader = Callable[[str], bytes]


def _lines(sha: str | None, get_blob: BlobReader) -> list[str] | None:
    if sha is None:
        return []
    data = get_blob(sha)
    if b"\x00" in data[:8000]:
        return None  # binary
    return data.decode("utf-8", "replace").splitlines(keepends=True)


def unified_diff(
    before: dict[str, str], after: dict[str, str], get_blob: BlobReader, paths: Iterable[str] | None = None
) -> str:
    """The patch that turns ``before`` into ``after``, limited to ``paths`` when given."""
    chosen = sorted(set(paths) if paths is not None else set(before) | set(after))
    out: list[str] = []
    for path in chosen:
        a, b = before.get(path), after.get(path)
        if a == b:
            continue
        a_lines, b_lines = _lines(a, get_blob), _lines(b, get_blob)
        if a_lines is None or b_lines is None:
            out.append(f"Binary files a/{path} and b/{path} differ\n")
            continue
        for line in difflib.unified_diff(
            a_lines,
            b_lines,
            fromfile="/dev/null" if a is None else f"a/{path}",
            tofile="/dev/null" if b is None else f"b/{path}",
        ):
            out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)
