"""The deliberately narrow context of one repair turn.

A local model repairs best when it sees the failures and the few files they
implicate, not the whole project: the failing files, their sibling
implementation or test (``X.test.js ↔ X.js``, ``tests/test_x.py ↔ x.py``), and
the files they import by relative path. Everything is chosen from the workspace
file list and read through a callable, so the choice is pure and a replay
rebuilds the same prompt from the same files.

The byte budget covers file contents and is never exceeded: files are taken in
order of relevance (failing test files, their siblings, implementation frames,
their siblings, imports); a file that does not fit is truncated at a line
boundary when it is a failing file or sibling and enough room is left, and
omitted otherwise. Every omission is recorded with why.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from kodr_core.dependency_dirs import is_dependency_path
from kodr_core.failures import failures_from, is_test_path, short_stack
from kodr_core.import_graph import Closure, import_closure, own_package_name
from kodr_core.import_graph import imports_of as graph_imports
from kodr_core.results import TestResult
from kodr_core.test_cut import cut_to_failing, render

#: A file cut to fit must still show at least this much, or it is omitted instead.
MIN_TRUNCATED_BYTES = 1024
MAX_FAILURES_SHOWN = 10
STACK_LINES = 8

JS_EXTS = (".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx", ".mts", ".cts")
_TEST_DIRS = ("test", "tests", "__tests__", "spec", "specs")
_BUILD_DIRS = {"dist", "build"}  # built output: its source is what a repair should see
_JS_TEST = re.compile(r"^(?P<stem>.+?)[.\-_](?:test|spec)(?P<ext>\.[cm]?[jt]sx?)$")
_JS_TEST_PREFIX = re.compile(r"^test[-_](?P<stem>.+?)(?P<ext>\.[cm]?[jt]sx?)$")  # node's test-X.js
_FENCE_LANG = {".py": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
               ".jsx": "jsx", ".ts": "typescript", ".mts": "typescript", ".cts": "typescript",
               ".tsx": "tsx", ".json": "json", ".toml": "toml", ".md": "markdown"}  # fmt: skip

# -- siblings ------------------------------------------------------------------


def _ext(path: str) -> str:
    return posixpath.splitext(path)[1]


def _skipped(path: str) -> bool:
    parts = path.split("/")
    return is_dependency_path(parts) or not _BUILD_DIRS.isdisjoint(parts)


def _tested_stem(path: str) -> tuple[str, str] | None:
    """(stem, ext) of the module a test file tests, or None for non-tests."""
    d, name = posixpath.split(path)
    if name.endswith(".py"):
        m = re.match(r"^test_(.+)\.py$", name) or re.match(r"^(.+)_test\.py$", name)
        return (m[1], ".py") if m else None
    m = _JS_TEST.match(name) or _JS_TEST_PREFIX.match(name)
    if m:
        return m["stem"], m["ext"]
    if posixpath.basename(d) == "__tests__" and _ext(name) in JS_EXTS:
        return posixpath.splitext(name)[0], _ext(name)
    return None


def _mirror_dirs(d: str) -> list[str]:
    """Where a test directory's code lives: itself, then ``test`` swapped for src/lib/nothing."""
    out = [d]
    parts = d.split("/") if d else []
    for i, part in enumerate(parts):
        if part in _TEST_DIRS:
            head, tail = parts[:i], parts[i + 1 :]
            for swap in (["src"], ["lib"], []):
                out.append("/".join(head + swap + tail))
                if tail:
                    out.append("/".join(head + swap))
    return list(dict.fromkeys(out))


def _impl_exts(ext: str) -> tuple[str, ...]:
    if ext == ".py":
        return (".py",)
    return (ext,) + tuple(e for e in JS_EXTS if e != ext)


def _impls_of_test(path: str, files: Collection[str]) -> list[str]:
    tested = _tested_stem(path)
    if tested is None:
        return []
    stem, ext = tested
    found = []
    for d in _mirror_dirs(posixpath.dirname(path)):
        for e in _impl_exts(ext):
            for cand in (f"{stem}{e}", f"{stem}/index{e}" if e != ".py" else f"{stem}/__init__.py"):
                cand = posixpath.join(d, cand) if d else cand
                if cand in files and cand != path and not is_test_path(cand):
                    found.append(cand)
    if found or ext != ".py":
        return list(dict.fromkeys(found))[:2]
    # Python: not beside or mirrored, so search by name (tests/test_x.py -> src/pkg/x.py).
    # JS layouts are conventional enough that a by-name search only finds namesakes.
    names = {f"{stem}{e}" for e in _impl_exts(ext)}
    hits = [f for f in files if posixpath.basename(f) in names and not is_test_path(f) and not _skipped(f)]
    return sorted(hits, key=lambda f: (f.count("/"), f))[:2]


def siblings_of(path: str, files: Collection[str]) -> list[str]:
    """The implementation a test file tests, or the tests of an implementation file.

    ``X.test.js``/``X.spec.ts``/``X-test.mjs`` ↔ ``X.js`` beside it or under the
    mirrored ``src/``, ``lib/`` or root directory (also ``X/index.js``);
    ``tests/test_x.py`` ↔ ``x.py``, found beside, mirrored, or else anywhere by
    name (``<pkg>/x.py``, ``src/<pkg>/x.py``, shallowest first). At most two.
    """
    if _tested_stem(path) is not None:
        return _impls_of_test(path, files)
    stem, ext = posixpath.splitext(posixpath.basename(path))
    if stem in ("index", "__init__"):
        stem = posixpath.basename(posixpath.dirname(path))
    tests = [
        f for f in files
        if (t := _tested_stem(f)) and t[0] == stem and (t[1] == ".py") == (ext == ".py")
        and path in _impls_of_test(f, files)
    ]  # fmt: skip
    here = posixpath.dirname(path)
    return sorted(tests, key=lambda f: (posixpath.dirname(f) != here, f.count("/"), f))[:2]


# -- imports -------------------------------------------------------------------


def imports_of(path: str, text: str, files: Collection[str], read: Callable[[str], bytes | None] | None = None,
               ) -> tuple[list[str], list[str]]:  # fmt: skip
    """Workspace files ``path`` imports (see :mod:`kodr_core.import_graph`), and the paths
    of relative imports that name no file yet (a repair may have to create them)."""
    edges, missing = graph_imports(path, text, files, read, own_package_name(read) if read else None)
    return [e.path for e in edges if not _skipped(e.path)], [m for m in missing if not _skipped(m)]


# -- the context -----------------------------------------------------------------


@dataclass(frozen=True)
class ContextFile:
    path: str
    role: str  # failing | sibling | import
    bytes: int  # bytes shown in the prompt
    size: int  # the file's full size
    truncated: bool
    text: str = field(repr=False, default="")
    cut: str | None = None  # how a truncated view was made: head | excerpt | failing-tests

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "role": self.role, "bytes": self.bytes, "size": self.size,
                               "truncated": self.truncated}  # fmt: skip
        if self.cut:
            out["cut"] = self.cut
        return out


@dataclass(frozen=True)
class RepairContext:
    """What one repair turn shows the model, and what it may therefore touch."""

    failures: tuple[dict[str, Any], ...]  # compact, with a short stack, at most MAX_FAILURES_SHOWN
    failing_paths: tuple[str, ...]
    files: tuple[ContextFile, ...]
    budget_bytes: int
    used_bytes: int
    omitted: tuple[dict[str, str], ...]  # {path, role, why}: budget | binary | unreadable | missing
    missing_imports: tuple[str, ...] = ()  # relative imports that name no file yet
    scratchpad: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)  # counts and command of the failing run
    task: str | None = None
    on_target: tuple[str, ...] = ()  # the failing tests' import closure, shown or not
    closure: tuple[dict[str, Any], ...] = ()  # {path, depth, via} for each closure file
    closure_truncated: bool = False

    @property
    def allowed_paths(self) -> frozenset[str]:
        """The off-target brake's map: failing paths, the files shown, missing relative
        imports, and every file in the failing tests' import closure (shown or not)."""
        return (frozenset(self.failing_paths) | {f.path for f in self.files} | set(self.missing_imports)
                | set(self.on_target))  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """``context.json``: everything but the file contents (those are in the prompt)."""
        return {
            "summary": self.summary,
            "failures": list(self.failures),
            "failing_paths": list(self.failing_paths),
            "files": [f.to_json() for f in self.files],
            "budget_bytes": self.budget_bytes,
            "used_bytes": self.used_bytes,
            "omitted": list(self.omitted),
            "missing_imports": list(self.missing_imports),
            "allowed_paths": sorted(self.allowed_paths),
            "onTarget": list(self.on_target),
            "closure": list(self.closure),
            "closureTruncated": self.closure_truncated,
            "scratchpad": self.scratchpad,
            "task": self.task,
        }

    def to_prompt(self, envelope_hint: str | None = None) -> str:
        """The repair request in Markdown: failures, files, and how to answer."""
        s = self.summary
        out = [f"## Task\n{self.task.strip()}\n"] if self.task else []
        out += [
            "## Repair",
            f"The test run `{s.get('command') or 'tests'}` failed: {s.get('failed', '?')} failed, "
            f"{s.get('passed', '?')} passed of {s.get('total', '?')}. Fix the code so that every "
            "test passes. Change only what the failures need; do not weaken or delete tests "
            "unless a test itself is wrong.",
            "",
            "## Failures",
        ]
        for i, f in enumerate(self.failures, 1):
            where = f"{f['file']}:{f['line']}" if f.get("file") and f.get("line") else f.get("file") or ""
            out.append(f"{i}. **{f.get('name') or '(unnamed)'}**" + (f" at `{where}`" if where else ""))
            if f.get("message"):
                out.append(f"   {f['message']}")
            if f.get("stack"):
                out += ["   ```", *(f"   {ln.strip()}" for ln in f["stack"]), "   ```"]
        hidden = int(s.get("failures_total", len(self.failures))) - len(self.failures)
        if hidden > 0:
            out.append(f"({hidden} more failures not shown.)")
        if not self.failures:
            out.append("(The runner reported failures without details; see the files below.)")
        if self.scratchpad:
            out += ["", "## Plan from an earlier turn", self.scratchpad.strip()]
        out += ["", "## Files"]
        for cf in self.files:
            note = ""
            if cf.truncated:
                note = {"excerpt": f", excerpt: {cf.bytes} of {cf.size} bytes around the failing lines",
                        "failing-tests": f", cut to the failing tests: {cf.bytes} of {cf.size} bytes"}.get(
                    cf.cut or "", f", truncated: first {cf.bytes} of {cf.size} bytes")  # fmt: skip
            fence = "`" * max(3, _longest_backtick_run(cf.text) + 1)
            lang = _FENCE_LANG.get(_ext(cf.path), "")
            out += [f"### `{cf.path}` ({cf.role}{note})", f"{fence}{lang}", cf.text.rstrip("\n"), fence]
        if not self.files:
            out.append("(none could be shown)")
        if self.omitted:
            out += ["", "Not shown: " + ", ".join(f"`{o['path']}` ({o['why']})" for o in self.omitted)]
        if self.missing_imports:
            out += ["", "Imported but missing (you may create them): "
                    + ", ".join(f"`{p}`" for p in self.missing_imports)]  # fmt: skip
        out += [
            "",
            "## Answer",
            (
                "Answer with the envelope only, listing only the files that need to change. For a file "
                "shown whole, give its complete new content in `files`, or search/replace hunks in "
                "`edits`. A file shown truncated, cut or as an excerpt can only be changed with `edits`: "
                "each hunk's `search` is text copied exactly from the lines shown, long enough to occur "
                "once in the file, and `replace` is what it becomes. Keep to the files named above and "
                "the modules they import: edits elsewhere can stop the repair loop."
            ),
        ]
        if envelope_hint:
            out.append(envelope_hint)
        return "\n".join(out) + "\n"


def _longest_backtick_run(text: str) -> int:
    return max((len(m) for m in re.findall(r"`+", text)), default=0)


def _decode(data: bytes) -> str | None:
    if b"\x00" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _cut(data: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes, ending at a line boundary (so never inside a UTF-8 character)."""
    head = data[:limit]
    nl = head.rfind(b"\n")
    return head[: nl + 1] if nl >= 0 else b""


#: A failing test file bigger than this share of the budget is cut to its failing tests.
TEST_SHARE = 0.25
#: A file in failing frames bigger than this share of the budget is shown around its frame lines.
FRAME_SHARE = 0.25
#: A cut test file may always use this much, however many failing test files share the budget.
TEST_CUT_MIN = 4096
#: Lines kept around each evidence line of an excerpt, and from a file's head.
EXCERPT_RADIUS = 30
EXCERPT_HEAD = 40
_LOCATION = re.compile(r"(?P<path>[\w./@+-]+\.[A-Za-z]{1,4}):(?P<line>\d+)")
_PY_LOCATION = re.compile(r"""(?P<path>[\w./@+-]+\.py)"?,? line (?P<line>\d+)""")


def _evidence_lines(failures: list[dict[str, Any]], files: Collection[str]) -> dict[str, list[int]]:
    """path -> lines the failures and their stacks point at (1-based)."""
    out: dict[str, list[int]] = {}
    for f in failures:
        if f.get("file") in files and isinstance(f.get("line"), int):
            out.setdefault(f["file"], []).append(f["line"])
        for ln in f.get("stack") or []:
            for m in [*_LOCATION.finditer(str(ln)), *_PY_LOCATION.finditer(str(ln))]:
                if m["path"] in files:
                    out.setdefault(m["path"], []).append(int(m["line"]))
    return out


def _excerpt(text: str, lines: list[int], limit: int, comment: str) -> str | None:
    """The head and windows around ``lines``, within ``limit`` bytes, narrowing the windows as needed."""
    total = text.count("\n") + 1
    for radius in (EXCERPT_RADIUS, 15, 6, 2):
        keep = set(range(1, min(EXCERPT_HEAD, total) + 1))
        for n in lines:
            keep |= set(range(max(1, n - radius), n + radius + 1))
        out = render(text, keep, comment)
        if len(out.encode()) <= limit:
            return out
        keep = set()
        for n in lines:
            keep |= set(range(max(1, n - radius), n + radius + 1))
        out = render(text, keep, comment)
        if len(out.encode()) <= limit:
            return out
    return None


def build_repair_context(
    tests: TestResult | None,
    failing_paths: Iterable[str],
    files: Collection[str],
    read: Callable[[str], bytes | None],
    scratchpad: str | None = None,
    budget_bytes: int = 48_000,
    *,
    workspace_root: str | None = None,
    task: str | None = None,
) -> RepairContext:
    """Choose and read the files for one repair turn, within ``budget_bytes``.

    ``failing_paths`` comes from :func:`kodr_core.failures.failing_paths`;
    ``files`` is the workspace file list; ``read(path)`` returns a file's bytes
    or None. ``workspace_root`` (optional, recommended) makes failure locations
    and stack paths workspace-relative in the prompt; ``task`` (optional) heads it.

    Ranked by evidence: implementation files in failing frames; the failing test
    files (one bigger than :data:`TEST_SHARE` of the budget is cut to its failing
    tests, and the cut to that share); their siblings; their import closure (see
    :mod:`kodr_core.import_graph`): the files the tests import directly, then the
    rest, smallest first; the frames' siblings. A file that does not fit
    is shown as an excerpt around its failing lines, or its head, when enough room
    is left, and omitted otherwise; every cut and omission is recorded with why.
    """
    failing = list(dict.fromkeys(failing_paths))
    compact = failures_from(tests, workspace_root, files)
    raw = tests.failures if tests is not None else []
    shown = [
        dict(c, stack=short_stack(r.stack, STACK_LINES, workspace_root)) for c, r in zip(compact, raw, strict=True)
    ]
    named = {c["file"] for c in compact if c.get("file") in failing}
    failing_tests = [p for p in failing if p in named or is_test_path(p)]
    frames = [p for p in failing if p not in failing_tests]
    names = [str(c.get("name") or "") for c in compact]
    evidence = _evidence_lines(
        [dict(c, stack=short_stack(r.stack, 200, workspace_root)) for c, r in zip(compact, raw, strict=True)],
        files,
    )

    test_siblings = [s for p in failing_tests for s in siblings_of(p, files)]
    closure: Closure = import_closure([*failing_tests, *test_siblings, *frames], files, read)

    budget = max(0, int(budget_bytes))
    test_share = int(budget * TEST_SHARE) // max(1, len(failing_tests))
    chosen: list[ContextFile] = []
    omitted: list[dict[str, str]] = []
    texts: dict[str, str] = {}

    def take(path: str, role: str) -> None:
        used = sum(f.bytes for f in chosen)
        room = budget - used
        data = read(path) if path in files else None
        text = _decode(data) if data is not None else None
        why = "missing" if path not in files else "unreadable" if data is None else "binary"
        if data is None or text is None:
            omitted.append({"path": path, "role": role, "why": why})
            return
        texts[path] = text
        is_test = path in failing_tests
        frame_share = int(budget * FRAME_SHARE)
        if not is_test and evidence.get(path) and len(data) > frame_share and room >= MIN_TRUNCATED_BYTES:
            # A large file in failing frames: the lines around the frames, leaving room for the rest.
            part_text = _excerpt(text, evidence[path], min(room, frame_share), "#" if path.endswith(".py") else "//")
            if part_text is not None:
                chosen.append(ContextFile(path, role, len(part_text.encode()), len(data), True, part_text, "excerpt"))
                return
        if len(data) <= room and not (is_test and len(data) > test_share):
            chosen.append(ContextFile(path, role, len(data), len(data), False, text))
            return
        if is_test:
            cut = cut_to_failing(path, text, names)
            limit = min(room, max(test_share, TEST_CUT_MIN))
            cut_bytes = _cut(cut.encode(), limit) if cut is not None else b""
            if cut_bytes.strip():
                chosen.append(ContextFile(path, role, len(cut_bytes), len(data), True, cut_bytes.decode(),
                                          "failing-tests"))  # fmt: skip
                return
            if len(data) <= room:
                chosen.append(ContextFile(path, role, len(data), len(data), False, text))
                return
        if evidence.get(path) and room >= MIN_TRUNCATED_BYTES:
            part_text = _excerpt(text, evidence[path], room, "#" if path.endswith(".py") else "//")
            if part_text is not None:
                chosen.append(ContextFile(path, role, len(part_text.encode()), len(data), True, part_text, "excerpt"))
                return
        part = _cut(data, room)
        if len(part) >= min(MIN_TRUNCATED_BYTES, len(data)):
            chosen.append(ContextFile(path, role, len(part), len(data), True, part.decode("utf-8"), "head"))
        else:
            omitted.append({"path": path, "role": role, "why": "budget"})

    order: list[tuple[str, str]] = [(p, "failing") for p in frames]
    order += [(p, "failing") for p in failing_tests]
    order += [(s, "sibling") for s in test_siblings]
    # The closure: what the tests name directly first, then what runs beneath, smallest first,
    # so one large module cannot crowd out the others (a file that does not fit is cut).
    sizes = {p: len(read(p) or b"") for p in closure.paths}
    ranked = sorted(closure.order, key=lambda c: (c[1] > 1, sizes.get(c[0], 0)))
    order += [(p, "source" if via == "source" else "import") for p, _depth, via in ranked]
    order += [(s, "sibling") for p in frames for s in siblings_of(p, files)]
    seen: set[str] = set()
    for path, role in order:
        if path in seen or (role == "import" and _skipped(path) and path not in closure.paths):
            continue
        seen.add(path)
        take(path, "failing" if path in failing else role)

    missing: list[str] = []
    for path in failing:
        if path in texts:
            missing += [m for m in imports_of(path, texts[path], files, read)[1] if m not in files]
    summary = {
        "command": tests.command if tests is not None else None,
        "passed": tests.passed if tests is not None else None,
        "failed": tests.failed if tests is not None else None,
        "total": tests.total if tests is not None else None,
        "failures_total": max(len(raw), tests.failed if tests is not None else 0),
    }
    return RepairContext(
        failures=tuple(shown[:MAX_FAILURES_SHOWN]),
        failing_paths=tuple(failing),
        files=tuple(chosen),
        budget_bytes=budget,
        used_bytes=sum(f.bytes for f in chosen),
        omitted=tuple(omitted),
        missing_imports=tuple(dict.fromkeys(missing)),
        scratchpad=scratchpad,
        summary=summary,
        task=task,
        on_target=tuple(dict.fromkeys([*failing, *test_siblings, *closure.paths])),
        closure=tuple({"path": p, "depth": d, "via": v} for p, d, v in closure.order),
        closure_truncated=closure.truncated,
    )
