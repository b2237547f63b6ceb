"""Which workspace files a failing test run points at.

A repair turn gets narrow context, so it matters which files the failures name.
Runners print them in many spellings: absolute paths, ``file://`` URLs with
percent-escapes, Windows paths, paths relative to the runner's root. Everything
is normalised against the workspace root and kept only when the exact relative
file exists in the workspace. There is deliberately no suffix guessing: a frame
in ``/Users/me/src/project/a.js`` outside the workspace must never become a
phantom ``src/project/a.js`` inside it.

Pure: the caller passes the test result, the raw output, the root and the
workspace file list.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from kodr_core.dependency_dirs import is_dependency_path

if TYPE_CHECKING:
    from kodr_core.results import TestResult

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_WIN_ABS = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # node:, http:, webpack:, … (not C:)

# Locations that name the test file a failure belongs to.
_TEST_LOCATIONS = [
    re.compile(r"^\s*(?:FAILED|ERROR) (?P<p>.+?)(?:::| - |$)"),  # pytest summary
    re.compile(r"^\s*FAIL\s+(?P<p>\S.*?)(?: > .*| \(\d[^)]*\))?\s*$"),  # jest / vitest header
    re.compile(r"^test at (?P<p>.+):\d+:\d+\s*$"),  # node --test "failing tests" section
    re.compile(r"^\s*location: '(?P<p>.+):\d+:\d+'\s*$"),  # node TAP
    re.compile(r"^\s*❯ (?P<p>\S.*?) \(\d+ tests?\b"),  # vitest file summary
]
# Stack frames and error locations: test files or implementation.
_JS_FRAME = re.compile(r"^\s*at (?:async )?(?P<rest>.+?):\d+(?::\d+)?\)?\s*$")
_JS_FRAME_BARE = re.compile(r"^\s*(?:at )?(?P<rest>.+?):\d+:\d+\)?\s*$")  # TAP stacks drop "at"
_VITEST_FRAME = re.compile(r"^\s*❯ (?P<rest>.+?):\d+:\d+\s*$")
_ERROR_HEADER = re.compile(r"^(?P<p>(?:file:/|/|[A-Za-z]:[\\/]|\\\\).+?):\d+\s*$")  # node SyntaxError
_PY_LOCATION = re.compile(r"^(?P<p>\S.*?\.py):\d+:(?:\s|$)")  # pytest long/short tb
_PY_FILE = re.compile(r'File "(?P<p>.+?)", line \d+')  # native traceback
_TOOL_LOCATION = re.compile(r"^(?P<p>[\w./\\-][^:\s]*\.\w+):\d+:\d+\b")  # tsc, eslint, …
_TAP_KEY = re.compile(r"^\s+[A-Za-z_]+: ?(?:\||'|\"|\d|$)")  # a YAML key of a TAP diagnostic
# A new traceback or report section: Python frames before it form one stack.
_SECTION = re.compile(r"^(?:_{3,}|={3,}|-{3,}|Traceback \(most recent|During handling|The above exc)")

_TEST_NAME = re.compile(
    r"(?:^|/)(?:test_[^/]*\.py|[^/]*_test\.py|[^/]+[.\-_](?:test|spec)\.[cm]?[jt]sx?"
    r"|test-[^/]*\.[cm]?[jt]sx?|test\.[cm]?[jt]sx?|conftest\.py)$"
)
_TEST_DIR = re.compile(r"(?:^|/)__tests__/")


def is_test_path(path: str) -> bool:
    """True for files that are tests by their name (helpers in tests/ are not)."""
    return bool(_TEST_NAME.search(path) or _TEST_DIR.search(path))


def _is_windows(path: str) -> bool:
    return bool(_WIN_ABS.match(path))


def _from_url(raw: str) -> str:
    parts = urlsplit(raw)
    path = unquote(parts.path)
    if parts.netloc not in ("", "localhost"):
        return "\\\\" + parts.netloc + path.replace("/", "\\")  # a Windows share
    if re.match(r"^/[A-Za-z]:/", path):
        return path[1:]
    return path


def normalise_path(raw: str, workspace_root: str, existing: Collection[str] | None = None) -> str | None:
    """The workspace-relative POSIX path ``raw`` names, or None.

    ``raw`` may be relative (to the root), absolute POSIX or Windows, or a
    ``file://`` URL. Paths outside the root, in dependency folders, or (when
    ``existing`` is given) not in the workspace file list give None. Windows
    paths compare case-insensitively, as the file system does. On macOS a path
    under ``/private`` matches a root under ``/var`` or ``/tmp``.
    """
    p = raw.strip().strip("'\"")
    if not p:
        return None
    if p.lower().startswith("file:"):
        p = _from_url(p)
    elif _SCHEME.match(p) and not _is_windows(p):
        return None  # node:internal/…, webpack://, http://
    root = workspace_root.rstrip("/\\") or "/"
    windows = _is_windows(p)
    if windows or "\\" in p:
        p = p.replace("\\", "/")
    if windows:
        if not _is_windows(workspace_root):
            return None
        r = root.replace("\\", "/")
        if not p.casefold().startswith(r.casefold() + "/"):
            return None
        rel = p[len(r) + 1 :]
    elif p.startswith("/"):
        if _is_windows(workspace_root):
            return None
        p = posixpath.normpath(p)
        r = posixpath.normpath(root)
        if p.startswith("/private/") and not r.startswith("/private/"):
            p = p[len("/private") :]  # macOS: /private/var/… is /var/…
        if r != "/" and not p.startswith(r + "/"):
            return None
        rel = p[len(r) + 1 :] if r != "/" else p[1:]
    else:
        rel = p
    rel = posixpath.normpath(rel)
    parts = rel.split("/")
    if rel in (".", "") or parts[0] == ".." or is_dependency_path(parts):
        return None
    if existing is None or rel in existing:
        return rel
    if _is_windows(workspace_root):  # NTFS is case-insensitive
        folded = {e.casefold(): e for e in existing}
        return folded.get(rel.casefold())
    return None


@dataclass(frozen=True)
class _Ref:
    raw: tuple[str, ...]  # candidate spellings, most likely first
    test: bool  # the location names a failing test file
    python: bool = False  # a Python frame (printed outermost first)


def _candidates(rest: str) -> tuple[str, ...]:
    """Spellings a JS frame's location may have: ``fn (path``, ``path``, ``fn path``."""
    out = []
    if "(" in rest:
        out.append(rest[rest.index("(") + 1 :])
    out.append(rest)
    if " " in rest:
        out.append(rest.split(" ", 1)[1])
    return tuple(out)


def _refs(text: str, *, stack_field: bool = False) -> Iterator[_Ref]:
    """Every location in ``text``, in order; Python frames of one stack innermost first."""
    pending: list[_Ref] = []
    tap_stack = False  # inside a TAP "stack: |-" block, whose frames have no "at"
    for line in _ANSI.sub("", text).splitlines():
        if _SECTION.match(line):
            yield from reversed(pending)
            pending = []
            continue
        if _TAP_KEY.match(line) or line.strip() == "...":
            tap_stack = line.rstrip().endswith(("stack: |-", "stack: |"))
        ref = _match(line, stack_field or tap_stack)
        if ref is None:
            continue
        if ref.python:
            pending.append(ref)
        else:
            yield ref
    yield from reversed(pending)


def _match(line: str, stack_field: bool) -> _Ref | None:
    for rx in _TEST_LOCATIONS:
        m = rx.match(line)
        if m:
            return _Ref((m["p"],), test=True)
    m = _PY_FILE.search(line)
    if m:
        return _Ref((m["p"],), test=False, python=True)
    m = _PY_LOCATION.match(line)
    if m:
        return _Ref((m["p"],), test=False, python=True)
    m = _JS_FRAME.match(line) or _VITEST_FRAME.match(line)
    if m is None and stack_field:
        m = _JS_FRAME_BARE.match(line)
    if m:
        return _Ref(_candidates(m["rest"]), test=False)
    m = _ERROR_HEADER.match(line) or _TOOL_LOCATION.match(line)
    if m:
        return _Ref((m["p"],), test=False)
    return None


def _resolve(ref: _Ref, root: str, existing: Collection[str]) -> str | None:
    for raw in ref.raw:
        rel = normalise_path(raw, root, existing)
        if rel is not None:
            return rel
    return None


def failing_paths(
    result: TestResult | None, raw_output: str, workspace_root: str, existing: Collection[str]
) -> list[str]:
    """Workspace files the failures point at, most relevant first, each once.

    First the test files where failures are (the result's ``file`` fields, then
    runner summaries, then any test-named file on a stack), then implementation
    frames in stack order (innermost first). Only paths in ``existing`` survive.
    """
    refs: list[_Ref] = []
    for f in result.failures if result is not None else ():
        if f.file:
            refs.append(_Ref((f.file,), test=True))
        refs.extend(_refs(f"{f.stack}\n{f.message}", stack_field=True))
    refs.extend(_refs(raw_output or ""))
    tests: list[str] = []
    frames: list[str] = []
    for ref in refs:
        rel = _resolve(ref, workspace_root, existing)
        if rel is None:
            continue
        bucket = tests if (ref.test or is_test_path(rel)) else frames
        bucket.append(rel)
    return _dedupe(tests + frames)


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _first_line(text: str | None, limit: int = 300) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def failures_from(
    result: TestResult | None,
    workspace_root: str | None = None,
    existing: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """Compact failures: name, file, line and the message's first line.

    With ``workspace_root`` the file becomes workspace-relative when it lies
    inside the workspace (and, with ``existing``, exists); otherwise it is kept
    as the runner wrote it.
    """
    out = []
    for f in result.failures if result is not None else ():
        file = f.file
        if file and workspace_root is not None:
            file = normalise_path(file, workspace_root, existing) or file
        out.append(
            {"name": f.name, "file": file, "line": f.line, "message": _first_line(f.message) or _first_line(f.stack)}
        )
    return out


_NOISE = re.compile(r"node:internal|\(node:|node_modules|site-packages|<anonymous>\)?$|^\s*at (?:new )?Promise")
_PY_KEEP = re.compile(r"^(?:E\s|>\s|\S.*\.py:\d+:)")
_CARETS = re.compile(r"^\s*[\^~]+\s*$")


def short_stack(stack: str | None, limit: int = 8, workspace_root: str | None = None) -> list[str]:
    """A few telling stack lines: no runtime or dependency frames.

    JS stacks keep their first (innermost) ``at`` frames. Python tracebacks (pytest's
    locations, ``>`` source lines and ``E`` lines, or native ``File "…"`` frames)
    keep their last lines, where the innermost frame and the error are. With
    ``workspace_root``, paths inside it are shown relative.
    """
    lines = [ln.rstrip() for ln in _ANSI.sub("", stack or "").splitlines() if ln.strip()]
    if any(ln.startswith("E ") for ln in lines):
        lines = [ln for ln in lines if _PY_KEEP.match(ln) and not _NOISE.search(ln)][-limit:]
    elif any(_PY_FILE.search(ln) for ln in lines):
        lines = _native_frames(lines)[-limit:]
    else:
        lines = [ln for ln in lines if not _NOISE.search(ln)]
        frames = [ln for ln in lines if _JS_FRAME.match(ln) or _VITEST_FRAME.match(ln)]
        lines = (frames or lines)[:limit]  # a message or error properties mixed in are dropped
    if workspace_root:
        lines = [_relative_in(ln, workspace_root) for ln in lines]
    return lines


def _native_frames(lines: list[str]) -> list[str]:
    """A native traceback without dependency frames (and their source lines) or carets."""
    out, skip = [], False
    for ln in lines:
        if _PY_FILE.search(ln):
            skip = bool(_NOISE.search(ln))
        elif not ln.startswith((" ", "\t")):
            skip = False  # the exception and its message
        if not skip and not _CARETS.match(ln) and not ln.startswith("Traceback ("):
            out.append(ln)
    return out


def _relative_in(line: str, root: str) -> str:
    root = root.rstrip("/\\")
    url = quote(root.replace("\\", "/"), safe="/:")
    url = "file://" + (url if url.startswith("/") else "/" + url)
    for prefix in (url + "/", root + "/", root + "\\"):  # the URL first: it contains the root
        line = line.replace(prefix, "")
    return line
