"""Unified diffs between two manifests, and the envelope's search/replace edits.

Edits are resolved into whole-file contents before anything is recorded, so the
writes stay whole files (idempotent on replay) while the model only had to name
the lines it changes.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

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


# -- search/replace edits --------------------------------------------------------------


class EditRefused(ValueError):
    """An edit that cannot be applied exactly; the message says why, to quote back to the model."""


def _lines_match(hay: list[str], needle: list[str]) -> list[tuple[int, str]]:
    """Where ``needle`` matches ``hay`` line by line, ignoring trailing whitespace and one
    uniform difference in leading whitespace: (start index, the indent to add to replacements)."""
    hits = []
    n = len(needle)
    for i in range(len(hay) - n + 1):
        indent: str | None = None
        for a, b in zip(hay[i : i + n], needle, strict=True):
            a, b = a.rstrip(), b.rstrip()
            if not b:
                if a:
                    break
                continue
            if not a.endswith(b.lstrip()) or a.lstrip() != b.lstrip():
                break
            pa, pb = a[: len(a) - len(a.lstrip())], b[: len(b) - len(b.lstrip())]
            if not pa.endswith(pb):
                break
            extra = pa[: len(pa) - len(pb)]
            if indent is None:
                indent = extra
            elif indent != extra:
                break
        else:
            hits.append((i, indent or ""))
    return hits


def apply_edit(text: str, search: str, replace: str) -> tuple[str, str]:
    """``text`` with the one occurrence of ``search`` replaced: (new text, "exact" | "indent").

    Exact first; else line by line, tolerating trailing whitespace and a uniformly
    different indentation (Aider's second strategy), the replacement re-indented
    the same way. Raises EditRefused when the anchor is missing or not unique:
    a fuzzy match could change the wrong place, so none is attempted.
    """
    count = text.count(search)
    if count == 1:
        return text.replace(search, replace, 1), "exact"
    if count > 1:
        raise EditRefused(f"the search text occurs {count} times; include more surrounding lines so it occurs once")
    hay = text.splitlines(keepends=True)
    needle = search.splitlines()
    while needle and not needle[-1].strip():
        needle.pop()
    while needle and not needle[0].strip():
        needle.pop(0)
    hits = _lines_match(hay, needle) if needle else []
    if len(hits) > 1:
        raise EditRefused(f"the search text matches {len(hits)} places (ignoring indentation); include more lines")
    if not hits:
        raise EditRefused("the search text was not found in the file; copy it exactly from the lines shown")
    start, indent = hits[0]
    end = start + len(needle)
    newline = "\n" if not hay[end - 1].endswith("\r\n") else "\r\n"
    body = "".join((indent + ln if ln.strip() else ln) + newline for ln in replace.splitlines())
    return "".join(hay[:start]) + body + "".join(hay[end:]), "indent"


def apply_edits(
    edits: Iterable[tuple[str, str, str]], read: Callable[[str], bytes | None]
) -> dict[str, tuple[str, list[str]]]:
    """Apply (path, search, replace) hunks in order: path -> (new text, how each hunk matched).

    Raises EditRefused naming the hunk (``edits[i]``) and the reason; nothing is
    applied unless every hunk applies.
    """
    out: dict[str, tuple[str, list[str]]] = {}
    for i, (path, search, replace) in enumerate(edits):
        if path in out:
            text, how = out[path]
        else:
            data = read(path)
            if data is None:
                raise EditRefused(f"edits[{i}] ({path}): no such file; create new files whole in `files`")
            if b"\x00" in data[:8192]:
                raise EditRefused(f"edits[{i}] ({path}): a binary file cannot be edited")
            text, how = data.decode("utf-8", "replace"), []
        try:
            text, matched = apply_edit(text, search, replace)
        except EditRefused as exc:
            raise EditRefused(f"edits[{i}] ({path}): {exc}") from None
        out[path] = (text, how + [matched])
    return out


def whole_rewrites_of_cut_files(written: Iterable[str], context: Mapping[str, Any] | None) -> list[str]:
    """Files a repair rewrites whole although its context showed them truncated or cut."""
    cut = {f.get("path") for f in (context or {}).get("files", []) if isinstance(f, dict) and f.get("truncated")}
    return sorted(p for p in written if p in cut)


def proposal_writes(
    proposal: Any, read: Callable[[str], bytes | None], context: Mapping[str, Any] | None = None
) -> list[tuple[str, str, dict[str, Any]]]:
    """The whole-file writes a proposal amounts to: (path, content, facts) for ``files`` then ``edits``.

    Raises :class:`kodr_core.envelope.InvalidProposal` (quoted back to the model)
    when a hunk does not apply exactly, or a file the repair context showed
    truncated is rewritten whole (its unseen part would be lost).
    """
    from kodr_core.envelope import InvalidProposal

    whole = [f.path for f in proposal.files]
    cut = whole_rewrites_of_cut_files(whole, context)
    if cut:
        raise InvalidProposal(
            f"{', '.join(cut)} was shown truncated, so it cannot be rewritten whole: "
            "change it with search/replace hunks in `edits`"
        )
    from kodr_core.envelope import check_relative_path
    from kodr_core.errors import RefusedInput

    out: list[tuple[str, str, dict[str, Any]]] = [(f.path, f.content, {}) for f in proposal.files]
    safe = []
    for e in proposal.edits:
        try:
            check_relative_path(e.path)
        except RefusedInput as exc:  # never read: the workspace refuses the write (an unsafe write)
            out.append((e.path, "", {"via": "edits", "refused": exc.message}))
            continue
        safe.append(e)
    try:
        edited = apply_edits(((e.path, e.search, e.replace) for e in safe), read)
    except EditRefused as exc:
        raise InvalidProposal(f"an edit was refused: {exc}") from None
    out += [(path, text, {"via": "edits", "hunks": how}) for path, (text, how) in edited.items()]
    return out
