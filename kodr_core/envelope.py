"""The proposal envelope: the one shape a model must answer with, and its checks.

Pure (no I/O). The pydantic models are the single source for both validation and
the strict JSON Schema sent as ``response_format``, so the two cannot drift.
Validation is lenient where it is harmless (unknown keys are ignored, ``notes``
may be omitted) and strict where it matters (paths, duplicates, sizes); the
schema is strict either way, because servers use it to constrain decoding.
"""

from __future__ import annotations

import copy
import functools
import re
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from kodr_core.errors import KodrError, RefusedInput

MAX_PATH_CHARS = 240
MAX_SEGMENT_CHARS = 120
MAX_FILES = 200
MAX_EDITS = 200
MAX_FILE_BYTES = 512 * 1024
MAX_TOTAL_BYTES = 4 * 1024 * 1024

#: Directories kodr owns or must never touch, matched case-insensitively at any depth.
FORBIDDEN_DIRS = frozenset({".git", ".kodr"})

SCHEMA_NAME = "kodr_proposal"

_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


class InvalidProposal(KodrError):
    """The model answered, but not with a usable envelope.

    ``message`` is written to be quoted back to the model on the retry turn.
    """


def check_relative_path(path: str) -> str:
    """Return ``path`` normalised to ``a/b/c``, or raise RefusedInput saying why.

    Pure string checks only; the workspace adds the checks that need the disk
    (symlinks, existing non-files).
    """
    if not isinstance(path, str) or not path.strip():
        raise RefusedInput("refused path: empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise RefusedInput(f"refused path {path!r}: NUL or control characters")
    if path.startswith(("\\\\", "//")):
        raise RefusedInput(f"refused path {path!r}: absolute (network) paths are not allowed")
    if _WINDOWS_DRIVE.match(path):
        raise RefusedInput(f"refused path {path!r}: absolute (drive) paths are not allowed")
    if path.startswith("/"):
        raise RefusedInput(f"refused path {path!r}: absolute paths are not allowed")
    if "\\" in path:
        raise RefusedInput(f"refused path {path!r}: backslashes are not allowed; use '/'")
    if len(path) > MAX_PATH_CHARS:
        raise RefusedInput(f"refused path {path[:40]!r}...: longer than {MAX_PATH_CHARS} characters")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise RefusedInput(f"refused path {path!r}: names no file")
    if ".." in parts:
        raise RefusedInput(f"refused path {path!r}: '..' escapes the workspace")
    for part in parts:
        if part.lower() in FORBIDDEN_DIRS:
            raise RefusedInput(f"refused path {path!r}: {part}/ is off limits")
        if len(part) > MAX_SEGMENT_CHARS:
            raise RefusedInput(f"refused path {path!r}: a name is longer than {MAX_SEGMENT_CHARS} characters")
    return "/".join(parts)


def _normalised_or_as_written(path: str) -> str:
    """A well-formed path normalised; a hostile one kept as written, so the workspace
    refuses it as an unsafe write (a recorded refusal, not a retry)."""
    try:
        return check_relative_path(path)
    except RefusedInput:
        return path


class FileWrite(BaseModel):
    """One file to write, replaced as a whole."""

    # Docstrings and descriptions here end up in the schema the model sees.
    # Whole-file writes keep replay idempotent.
    model_config = ConfigDict(extra="ignore", frozen=True)

    path: str = Field(description="Path relative to the workspace root, with '/' separators.")
    content: str = Field(description="The complete new content of the file.")

    _path_is_relative = field_validator("path")(_normalised_or_as_written)


class Edit(BaseModel):
    """One search/replace hunk on an existing file, anchored on text that occurs once in it."""

    # Like Aider's SEARCH/REPLACE blocks: the way to change a file too large to show whole.
    model_config = ConfigDict(extra="ignore", frozen=True)

    path: str = Field(description="Path of an existing file, relative to the workspace root.")
    search: str = Field(description="Exact text copied from the file, long enough to occur exactly once.")
    replace: str = Field(description="The text that replaces it.")

    _path_is_relative = field_validator("path")(_normalised_or_as_written)


class Proposal(BaseModel):
    """The proposed change: a summary, whole files to write and search/replace edits."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    summary: str = Field(description="One or two sentences on what the change does.")
    files: list[FileWrite] = Field(description="Every file to create or replace, with its full content.")
    edits: list[Edit] = Field(
        default_factory=list,
        description="Search/replace hunks on existing files, applied in order; [] when none.",
    )
    notes: str | None = Field(default=None, description="Anything the user should know, or null.")

    @model_validator(mode="after")
    def _limits(self) -> Proposal:
        if len(self.files) > MAX_FILES:
            raise ValueError(f"too many files: {len(self.files)} (at most {MAX_FILES})")
        if len(self.edits) > MAX_EDITS:
            raise ValueError(f"too many edits: {len(self.edits)} (at most {MAX_EDITS})")
        whole = {f.path.casefold() for f in self.files}
        for i, e in enumerate(self.edits):
            if e.path.casefold() in whole:
                raise ValueError(f"edits[{i}]: {e.path!r} is also written whole in files; use one or the other")
            if not e.search:
                raise ValueError(f"edits[{i}]: search is empty; copy the text to replace from the file")
            if len(e.search.encode()) + len(e.replace.encode()) > MAX_FILE_BYTES:
                raise ValueError(f"edits[{i}] is over the {MAX_FILE_BYTES}-byte limit")
        seen: dict[str, str] = {}
        total = 0
        for f in self.files:
            key = f.path.casefold()  # a.js and A.js collide on case-insensitive disks
            if key in seen:
                raise ValueError(f"duplicate path {f.path!r} (also written as {seen[key]!r}); write each file once")
            seen[key] = f.path
            size = len(f.content.encode("utf-8"))
            if size > MAX_FILE_BYTES:
                raise ValueError(f"file {f.path!r} is {size} bytes, over the {MAX_FILE_BYTES}-byte limit per file")
            total += size
        if total > MAX_TOTAL_BYTES:
            raise ValueError(f"the files total {total} bytes, over the {MAX_TOTAL_BYTES}-byte limit per proposal")
        return self


def _error_location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "envelope"


def summarize_validation_error(exc: ValidationError, limit: int = 8) -> str:
    """pydantic's errors as short lines a model can act on: ``files[0].path: ...``."""
    lines = []
    for err in exc.errors()[:limit]:
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{_error_location(err['loc'])}: {msg}")
    more = len(exc.errors()) - limit
    if more > 0:
        lines.append(f"... and {more} more")
    return "; ".join(lines)


def parse_proposal(data: Any) -> Proposal:
    """Validate decoded JSON as a Proposal, or raise InvalidProposal with a summary."""
    if not isinstance(data, dict):
        raise InvalidProposal(f"the envelope must be a JSON object, got {type(data).__name__}")
    try:
        return Proposal.model_validate(data)
    except ValidationError as exc:
        raise InvalidProposal(f"the JSON object is not a valid envelope: {summarize_validation_error(exc)}") from None


def _strictify(node: Any, defs: dict[str, Any]) -> Any:
    """Inline $refs, turn Optional into a type list, close every object, require every key."""
    if isinstance(node, list):
        return [_strictify(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _strictify(copy.deepcopy(defs[node["$ref"].split("/")[-1]]), defs)
    node = {k: v for k, v in node.items() if k not in ("title", "default", "$defs")}
    variants = node.get("anyOf")
    if variants and len(variants) == 2 and {"type": "null"} in variants:
        other = next(v for v in variants if v != {"type": "null"})
        if set(other) == {"type"} and isinstance(other["type"], str):
            node.pop("anyOf")
            node["type"] = [other["type"], "null"]
    out = {k: _strictify(v, defs) for k, v in node.items()}
    if out.get("type") == "object" and "properties" in out:
        out["additionalProperties"] = False
        out["required"] = list(out["properties"])
    return out


def proposal_json_schema() -> dict[str, Any]:
    """The envelope's JSON Schema in OpenAI strict form (usable by llama.cpp/vLLM grammars too).

    Built once per process (pydantic takes 1-3 ms, which every model call paid) and handed
    out as a fresh copy, so a caller may change its own.
    """
    return copy.deepcopy(_proposal_json_schema())


@functools.cache
def _proposal_json_schema() -> dict[str, Any]:
    raw = Proposal.model_json_schema()
    schema: dict[str, Any] = _strictify(raw, raw.get("$defs", {}))
    return schema


ENVELOPE_EXAMPLE = (
    '{"summary": "...", "files": [{"path": "src/a.js", "content": "..."}], '
    '"edits": [{"path": "src/big.js", "search": "...", "replace": "..."}], "notes": null}'
)
