"""The read-only tools a model may call before it answers, and their dispatcher.

Pure: the workspace is reached only through the callables passed in, so the
core decides what a tool may see and the adapter decides how it is read. Every
failure (bad arguments, unknown tool, a path that escapes, a missing file) comes
back as an ``error: ...`` string for the model to act on, never as an exception:
a tool turn must not end a run.

Decisions:

* Only files in the workspace listing (``.gitignore`` and kodr's own dirs
  honoured) can be read, so a model cannot pull an ignored ``.env`` into a
  prompt that may go to a remote provider.
* Local models send numbers as strings (Qwen3-Coder's XML calls always do), so
  digit strings are accepted where an integer is expected.
* Output is capped in bytes, cut at a line boundary, and says how to get the rest.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kodr_core.envelope import check_relative_path
from kodr_core.errors import RefusedInput

MAX_READ_BYTES = 32 * 1024
MAX_LIST_ENTRIES = 400
MAX_SYMBOLS = 300
#: A cached answer repeats the result only when it is this small; larger ones point back.
CACHE_REPEAT_BYTES = 4 * 1024

FilesFn = Callable[[], list[str]]
ReadFn = Callable[[str], "bytes | None"]
SymbolsFn = Callable[[str, bytes], list[dict[str, Any]]]


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
    }


TOOL_SCHEMAS: list[dict[str, Any]] = [
    _tool(
        "list_files",
        "List the workspace's files (relative paths). Optionally filter by a glob such as '*.js' "
        "or 'src/**/*.ts', or by a directory prefix such as 'src/'.",
        {
            "glob": {"type": "string", "description": "shell-style pattern matched against the path"},
            "prefix": {"type": "string", "description": "only paths starting with this, e.g. 'src/'"},
        },
        [],
    ),
    _tool(
        "read_file",
        f"Read a text file from the workspace, whole or a line range (1-based, inclusive). "
        f"Output is capped at {MAX_READ_BYTES // 1024} KiB; use start_line/end_line for the rest.",
        {
            "path": {"type": "string", "description": "relative path, e.g. 'src/index.js'"},
            "start_line": {"type": "integer", "minimum": 1},
            "end_line": {"type": "integer", "minimum": 1},
        },
        ["path"],
    ),
    _tool(
        "inspect_symbols",
        "List the functions, classes and methods defined in a Python, JavaScript or TypeScript "
        "file, with their line ranges, so you can read just the part you need.",
        {"path": {"type": "string", "description": "relative path, e.g. 'app.py'"}},
        ["path"],
    ),
]

TOOL_NAMES: frozenset[str] = frozenset(t["function"]["name"] for t in TOOL_SCHEMAS)

TOOL_HINT = (
    "You may first look at the workspace with the read-only tools list_files, read_file and "
    "inspect_symbols. When you know enough, stop calling tools and answer with the JSON envelope only."
)


class _BadArgs(Exception):
    pass


def _parse_args(arguments: str | dict[str, Any] | None) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    text = (arguments or "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _BadArgs(f"arguments are not valid JSON ({exc.msg} at column {exc.colno}): {text[:200]!r}") from None
    except (ValueError, RecursionError):
        raise _BadArgs(f"arguments are not valid JSON (nested too deep or too large): {text[:200]!r}") from None
    if not isinstance(value, dict):
        raise _BadArgs(f"arguments must be a JSON object, got {type(value).__name__}")
    return value


def _str_arg(args: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = args.get(key)
    if value is None or value == "":
        if required:
            raise _BadArgs(f"missing required argument {key!r} (got keys: {sorted(args) or 'none'})")
        return None
    if not isinstance(value, str):
        raise _BadArgs(f"argument {key!r} must be a string, got {json.dumps(value)[:80]}")
    return value


def _int_arg(args: dict[str, Any], key: str) -> int | None:
    value = args.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 9:
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _BadArgs(f"argument {key!r} must be a whole number >= 1, got {json.dumps(value)[:80]}")
    return value


def canonical_arguments(arguments: str | dict[str, Any] | None) -> str:
    """The arguments as sorted compact JSON (the raw text when they do not parse), for cache keys."""
    try:
        return json.dumps(_parse_args(arguments), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except _BadArgs:
        return str(arguments)


# -- the tools -------------------------------------------------------------------


def _no_dot_slash(text: str) -> str:
    while text.startswith("./"):
        text = text[2:]
    return text


def _list_files(args: dict[str, Any], files: FilesFn) -> str:
    glob = _str_arg(args, "glob")
    prefix = _str_arg(args, "prefix")
    if prefix is not None:
        prefix = "" if prefix in (".", "./") else _no_dot_slash(prefix)
    paths = files()
    if prefix:
        paths = [p for p in paths if p.startswith(prefix)]
    if glob:
        pattern = _no_dot_slash(glob)
        # fnmatch's '*' crosses '/', so 'src/*.js' also finds nested files; a pattern
        # without '/' is matched against the name too, as shells users expect.
        alt = pattern.replace("**/", "")
        paths = [
            p
            for p in paths
            if fnmatch.fnmatchcase(p, pattern)
            or fnmatch.fnmatchcase(p, alt)
            or ("/" not in pattern and fnmatch.fnmatchcase(p.rsplit("/", 1)[-1], pattern))
        ]
    if not paths:
        return "no files match" if (glob or prefix) else "the workspace has no files yet"
    shown = paths[:MAX_LIST_ENTRIES]
    more = len(paths) - len(shown)
    tail = f"\n... and {more} more; narrow with glob or prefix" if more else ""
    return f"{len(paths)} files:\n" + "\n".join(shown) + tail


def _readable(args: dict[str, Any], files: FilesFn, read: ReadFn) -> tuple[str, bytes]:
    raw = _str_arg(args, "path", required=True)
    assert raw is not None
    try:
        rel = check_relative_path(raw)
    except RefusedInput as exc:
        raise _BadArgs(exc.message) from None
    if rel not in set(files()):
        raise _BadArgs(
            f"no file {rel!r} in the workspace (it does not exist, or it is ignored); call list_files to see the files"
        )
    data = read(rel)
    if data is None:
        raise _BadArgs(f"cannot read {rel!r}: it is not a regular file inside the workspace")
    return rel, data


def _read_file(args: dict[str, Any], files: FilesFn, read: ReadFn) -> str:
    start = _int_arg(args, "start_line") or 1
    end = _int_arg(args, "end_line")
    if end is not None and end < start:
        raise _BadArgs(f"end_line ({end}) is before start_line ({start})")
    rel, data = _readable(args, files, read)
    if b"\0" in data[:8192]:
        return f"{rel}: binary file ({len(data)} bytes); not shown"
    lines = data.decode("utf-8", "replace").splitlines(keepends=True)
    total = len(lines)
    if total == 0:
        return f"{rel}: empty file"
    if start > total:
        return f"error: start_line {start} is past the end of {rel!r} ({total} lines)"
    last = min(end or total, total)
    out: list[str] = []
    size = 0
    for i in range(start - 1, last):
        n = len(lines[i].encode())
        if out and size + n > MAX_READ_BYTES:
            last = i  # the lines shown end at index i-1, i.e. line number i
            note = f"\n[truncated at {MAX_READ_BYTES // 1024} KiB: call read_file with start_line={i + 1} for more]"
            break
        out.append(lines[i])
        size += n
    else:
        note = ""
    body = "".join(out)
    if len(body.encode()) > MAX_READ_BYTES:  # one enormous line
        body = body.encode()[:MAX_READ_BYTES].decode("utf-8", "ignore") + "\n[line cut at the size cap]"
    header = f"{rel} (lines {start}-{last} of {total})" if (start, last) != (1, total) else f"{rel} ({total} lines)"
    if not body.endswith("\n"):
        body += "\n"
    return f"{header}\n{body}{note}".rstrip("\n")


def _inspect_symbols(args: dict[str, Any], files: FilesFn, read: ReadFn, symbols: SymbolsFn) -> str:
    rel, data = _readable(args, files, read)
    try:
        found = symbols(rel, data)
    except ValueError as exc:  # unsupported language, syntax error: worth telling the model
        return f"error: {exc}"
    if not found:
        return f"{rel}: no functions or classes found"
    shown = found[:MAX_SYMBOLS]
    result: dict[str, Any] = {"path": rel, "symbols": shown}
    if len(found) > len(shown):
        result["omitted"] = len(found) - len(shown)
    return json.dumps(result, ensure_ascii=False)


def run_tool(
    name: str,
    arguments_json_str: str | dict[str, Any] | None,
    *,
    files: FilesFn,
    read: ReadFn,
    symbols: SymbolsFn,
) -> str:
    """Run one tool call and return its result as text for the model (``error: ...`` on failure)."""
    try:
        args = _parse_args(arguments_json_str)
        if name == "list_files":
            return _list_files(args, files)
        if name == "read_file":
            return _read_file(args, files, read)
        if name == "inspect_symbols":
            return _inspect_symbols(args, files, read, symbols)
        return f"error: unknown tool {name!r}; the tools are {', '.join(sorted(TOOL_NAMES))}"
    except _BadArgs as exc:
        return f"error: {name}: {exc}"


# -- the cache -------------------------------------------------------------------


@dataclass
class ToolCache:
    """Answers a repeated identical call without running it again.

    Keyed by (name, canonical arguments): argument order and spacing do not matter.
    Safe because the tools are read-only and the workspace does not change while a
    model is thinking. Small local models loop on the same call; the answer says it
    was cached so the model can notice.
    """

    entries: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)

    def call(
        self,
        name: str,
        arguments: str | dict[str, Any] | None,
        *,
        step: int,
        files: FilesFn,
        read: ReadFn,
        symbols: SymbolsFn,
    ) -> tuple[str, bool]:
        """(result text, answered from the cache?)."""
        key = (name, canonical_arguments(arguments))
        if key in self.entries:
            first_step, result = self.entries[key]
            note = f"[cached: you already made this exact call at step {first_step}; the result has not changed]"
            if len(result.encode()) <= CACHE_REPEAT_BYTES:
                return f"{note}\n{result}", True
            return f"{note} It is shown above; use it, or ask for a different line range.", True
        result = run_tool(name, arguments, files=files, read=read, symbols=symbols)
        self.entries[key] = (step, result)
        return result, False
